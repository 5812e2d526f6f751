//! Test support: DICOM elements and Part 10 objects written byte by byte, in Explicit VR Little
//! Endian, so that tests and benchmarks can build exactly the bytes they need (odd lengths,
//! truncations, large multi-frame objects written a frame at a time) without a DICOM library in
//! between.
//!
//! ```
//! use pacs_testkit::{element, padded, part10};
//!
//! let data_set = [element(0x0008, 0x0060, b"CS", &padded("CT", b' '))].concat();
//! let file = part10("1.2.840.10008.5.1.4.1.1.2", "2.25.1", "1.2.840.10008.1.2.1", &data_set);
//! assert_eq!(&file[128..132], b"DICM");
//! ```
//!
//! Also [`python3`], which runs the Python scripts that tests compare against (pydicom,
//! dicomweb-client), and [`SmallDisk`], a tiny file system for full-disk tests.

/// Whether a VR has the 4-byte length of PS3.5 Table 7.1-1 (after two reserved bytes).
pub fn is_long_vr(vr: &[u8; 2]) -> bool {
    matches!(vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV")
}

/// One element in Explicit VR Little Endian: tag, VR, length and `value` as given (pad it to an
/// even length with [`padded`] where the test wants a valid one).
pub fn element(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + value.len());
    push_element(&mut out, group, elem, vr, value);
    out
}

/// [`element`], appended to `out`.
pub fn push_element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if is_long_vr(vr) {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// `text` as a value of even length, padded with `pad` (`0` for UIDs, a space for text).
pub fn padded(text: &str, pad: u8) -> Vec<u8> {
    let mut value = text.as_bytes().to_vec();
    if value.len() % 2 == 1 {
        value.push(pad);
    }
    value
}

/// The preamble, `DICM` and File Meta Information (group length, version, SOP Class and
/// Instance UIDs, Transfer Syntax UID) of an object, to which its data set is appended.
pub fn part10_header(sop_class: &str, sop_instance: &str, transfer_syntax: &str) -> Vec<u8> {
    let meta = [
        element(0x0002, 0x0001, b"OB", &[0, 1]),
        element(0x0002, 0x0002, b"UI", &padded(sop_class, 0)),
        element(0x0002, 0x0003, b"UI", &padded(sop_instance, 0)),
        element(0x0002, 0x0010, b"UI", &padded(transfer_syntax, 0)),
    ]
    .concat();
    [vec![0u8; 128], b"DICM".to_vec(), element(0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes()), meta].concat()
}

/// A whole Part 10 object: [`part10_header`] followed by `data_set`.
pub fn part10(sop_class: &str, sop_instance: &str, transfer_syntax: &str, data_set: &[u8]) -> Vec<u8> {
    let mut out = part10_header(sop_class, sop_instance, transfer_syntax);
    out.extend_from_slice(data_set);
    out
}

/// The Image Pixel module of unsigned 16-bit MONOCHROME2 pixels with `bits_stored` bits stored:
/// Samples per Pixel, Photometric Interpretation, Number of Frames, Rows, Columns, Bits
/// Allocated, Stored and High Bit, Pixel Representation, in tag order (Pixel Data not included).
pub fn monochrome16(rows: u16, columns: u16, frames: u32, bits_stored: u16) -> Vec<u8> {
    let us = |v: u16| v.to_le_bytes();
    [
        element(0x0028, 0x0002, b"US", &us(1)),
        element(0x0028, 0x0004, b"CS", &padded("MONOCHROME2", b' ')),
        element(0x0028, 0x0008, b"IS", &padded(&frames.to_string(), b' ')),
        element(0x0028, 0x0010, b"US", &us(rows)),
        element(0x0028, 0x0011, b"US", &us(columns)),
        element(0x0028, 0x0100, b"US", &us(16)),
        element(0x0028, 0x0101, b"US", &us(bits_stored)),
        element(0x0028, 0x0102, b"US", &us(bits_stored.saturating_sub(1))),
        element(0x0028, 0x0103, b"US", &us(0)),
    ]
    .concat()
}

/// `n` pseudo-random values of `bits` bits (at most 32; xorshift), the same for the same seed:
/// samples that compress badly, for codec tests.
pub fn noise(n: usize, bits: u32, seed: u64) -> Vec<u32> {
    let mask = if bits >= 32 { u32::MAX } else { (1u32 << bits) - 1 };
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 20) as u32 & mask
        })
        .collect()
}

/// Runs `python3` with `args` (a script's path, or `-c` and its text, then its arguments), its
/// standard input closed, and returns its standard output. Panics when Python cannot be started or
/// the script fails, with the script's standard error and `needs`: what `scripts/test.sh`
/// installs for it (`"pydicom and numpy"`).
pub fn python3(args: &[&std::ffi::OsStr], needs: &str) -> Vec<u8> {
    let output = std::process::Command::new("python3")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): scripts/test.sh installs Python 3 and {needs}"));
    // The script and its first argument (often a subcommand).
    let what = match args {
        [flag, ..] if *flag == "-c" => "an inline script".to_owned(),
        [script, first, ..] => format!("{} {}", script.to_string_lossy(), first.to_string_lossy()),
        [script] => script.to_string_lossy().into_owned(),
        [] => "python3".to_owned(),
    };
    assert!(output.status.success(), "{what} failed (scripts/test.sh installs {needs}):\n{}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// A small tmpfs mounted for a test that needs a full disk, unmounted when dropped (lazily if it
/// is still busy).
pub struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`"2M"`) at `path`, created if missing. `None` when the test does
    /// not run as root, which mounting needs (the test script runs as root); panics when root
    /// cannot mount.
    pub fn mount(path: &std::path::Path, size: &str) -> Option<SmallDisk> {
        let uid = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let disk = SmallDisk { path: path.to_path_buf() };
        disk.run(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]);
        Some(disk)
    }

    /// Makes it `size` large, keeping what it holds.
    pub fn resize(&self, size: &str) {
        self.run(&["-o", &format!("remount,size={size}")]);
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn run(&self, args: &[&str]) {
        let output = std::process::Command::new("mount").args(args).arg(&self.path).output().unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(output.status.success(), "mount {args:?} {}: {}", self.path.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_elements() {
        assert_eq!(element(0x0010, 0x0020, b"LO", b"AB"), [0x10, 0, 0x20, 0, b'L', b'O', 2, 0, b'A', b'B']);
        assert_eq!(element(0x7FE0, 0x0010, b"OW", &[1, 2]), [0xE0, 0x7F, 0x10, 0, b'O', b'W', 0, 0, 2, 0, 0, 0, 1, 2]);
        assert_eq!(padded("1.2.3", 0), b"1.2.3\0");
        assert_eq!(padded("CT", b' '), b"CT");
    }

    #[test]
    fn the_header_holds_its_group_length() {
        let header = part10_header("1.2", "1.2.3", "1.2.840.10008.1.2.1");
        assert_eq!(&header[128..132], b"DICM");
        let length = u32::from_le_bytes([header[140], header[141], header[142], header[143]]) as usize;
        assert_eq!(header.len(), 144 + length);
    }
}
