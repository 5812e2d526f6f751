//! A conversion held whole before it is used, in bounded memory: the first bytes in memory, the
//! rest in a temporary file.
//!
//! A caller that must not send or store part of an object (a WADO response, a C-STORE
//! sub-operation, a compressed blob) cannot hand the writer of [`transcode_with`] its
//! destination: a conversion streamed frame by frame may fail after writing. Converting into a
//! `Vec` keeps it all or nothing but holds the whole converted object in memory. A [`Spool`]
//! keeps the first [`SPOOL_MEMORY`] bytes in memory, so a small object never touches the disk,
//! and moves to an unnamed temporary file beyond; [`transcode_to_spool`] converts into one and
//! hands it over only when the conversion succeeded (a failed one is dropped with its file).
//!
//! The temporary file is in the folder given, the system's temporary folder
//! ([`std::env::temp_dir`], `TMPDIR` on Unix) by default. It has no name (on Unix it is removed
//! as soon as it is created) and is gone when the spool is dropped.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use tempfile::SpooledTempFile;

use crate::error::{Error, Result};
use crate::transcode::{TranscodeOptions, TranscodeReport, transcode_with};

/// The bytes a [`Spool`] keeps in memory before it moves to a temporary file: 4 MiB, several
/// single-frame images, a small part of a large multi-frame object.
pub const SPOOL_MEMORY: usize = 4 << 20;

/// Bytes written in memory up to a limit, in an unnamed temporary file beyond it, then read back
/// from the start (see the module).
#[derive(Debug)]
pub struct Spool {
    /// The bytes.
    data: SpooledTempFile,
    /// How many were written.
    len: u64,
}

impl Spool {
    /// An empty spool that keeps up to `memory` bytes in memory and moves to a temporary file in
    /// `dir` (the system's temporary folder when `None`) beyond.
    pub fn new(memory: usize, dir: Option<&Path>) -> Spool {
        let data = match dir {
            Some(dir) => SpooledTempFile::new_in(memory, dir),
            None => SpooledTempFile::new(memory),
        };
        Spool { data, len: 0 }
    }

    /// The number of bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the bytes went to a temporary file (they were more than the memory limit).
    pub fn is_on_disk(&self) -> bool {
        self.data.is_rolled()
    }

    /// A reader of the bytes written, from the first; [`len`](Spool::len) bytes long.
    ///
    /// # Errors
    ///
    /// The temporary file could not be rewound.
    pub fn into_reader(mut self) -> std::io::Result<SpoolReader> {
        self.data.seek(SeekFrom::Start(0))?;
        Ok(SpoolReader { data: self.data, remaining: self.len })
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.data.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.data.flush()
    }
}

/// The bytes of a [`Spool`], read from the first.
#[derive(Debug)]
pub struct SpoolReader {
    /// The bytes, positioned at the next one to read.
    data: SpooledTempFile,
    /// How many are left.
    remaining: u64,
}

impl SpoolReader {
    /// The number of bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}

/// Converts the object read from `input` into `target_ts` (see [`transcode_with`]) into a new
/// [`Spool`] that keeps `memory` bytes in memory and moves to a temporary file in `dir` (the
/// system's temporary folder when `None`) beyond. The spool is returned only when the whole
/// conversion succeeded: on error it is dropped, its temporary file with it, and nothing of the
/// object is left anywhere. Memory is what the conversion takes (a batch of frames when it
/// streams) plus at most `memory` bytes.
///
/// # Errors
///
/// Those of [`transcode_with`]; a temporary file that cannot be created or written is
/// [`Error::TempFile`].
///
/// # Example
///
/// ```no_run
/// use std::io::Read;
///
/// let mut input = std::fs::File::open("ct_jpeg_ls.dcm")?;
/// let options = pacs_codec::TranscodeOptions::default();
/// let (spool, report) = pacs_codec::spool::transcode_to_spool(
///     &mut input,
///     pacs_codec::syntax::EXPLICIT_VR_LITTLE_ENDIAN,
///     &options,
///     pacs_codec::spool::SPOOL_MEMORY,
///     None,
/// )?;
/// println!("{} frames, {} bytes", report.frames, spool.len());
/// let mut converted = spool.into_reader()?;
/// std::io::copy(&mut converted, &mut std::io::sink())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn transcode_to_spool(
    input: &mut dyn Read,
    target_ts: &str,
    options: &TranscodeOptions,
    memory: usize,
    dir: Option<&Path>,
) -> Result<(Spool, TranscodeReport)> {
    let mut spool = Spool::new(memory, dir);
    // The frames of a lossy conversion wait in the same folder.
    let mut options = options.clone();
    if options.temp_dir.is_none() {
        options.temp_dir = dir.map(Path::to_owned);
    }
    // Large writes: the conversion writes through a buffer of its own when it streams, small
    // pieces otherwise.
    let mut writer = std::io::BufWriter::with_capacity(256 * 1024, &mut spool);
    let report = match transcode_with(input, target_ts, &options, &mut writer) {
        Ok(report) => report,
        // The spool is the writer: its failure is the temporary file's.
        Err(Error::Write { source }) => return Err(Error::TempFile { action: "writing", source }),
        Err(e) => return Err(e),
    };
    writer.flush().map_err(|source| Error::TempFile { action: "writing", source })?;
    drop(writer);
    Ok((spool, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_spools_stay_in_memory_and_large_ones_go_to_disk() {
        for (len, on_disk) in [(0usize, false), (10, false), (100, false), (101, true), (1000, true)] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut spool = Spool::new(100, None);
            for piece in bytes.chunks(7) {
                spool.write_all(piece).expect("written");
            }
            assert_eq!((spool.len(), spool.is_empty(), spool.is_on_disk()), (len as u64, len == 0, on_disk), "{len} bytes");
            let mut reader = spool.into_reader().expect("rewound");
            assert_eq!(reader.remaining(), len as u64);
            let mut back = Vec::new();
            reader.read_to_end(&mut back).expect("read");
            assert_eq!(back, bytes, "{len} bytes");
            assert_eq!(reader.remaining(), 0);
        }
    }

    #[test]
    fn a_failed_conversion_returns_no_spool() {
        let result = transcode_to_spool(&mut &b"not DICOM"[..], crate::syntax::EXPLICIT_VR_LITTLE_ENDIAN, &TranscodeOptions::default(), 16, None);
        assert!(matches!(result, Err(Error::Invalid { .. })), "{result:?}");
    }
}
