//! Frame-by-frame conversion of large multi-frame objects, in memory bounded by a batch of frames.
//!
//! The data set is read up to its Pixel Data element (that header is kept in memory, it is
//! small), the frames are then read from the input a batch at a time (about two per core),
//! decoded and encoded on every core, and written before the next batch is read. The output is
//! the File Meta Information and header in the target syntax, then Pixel Data: native with its
//! defined length (frames × frame length, padded to even), or encapsulated with one fragment per
//! frame and an empty Basic Offset Table (PS3.5 A.4 allows it: the offsets are not known before
//! the fragments are written); then what followed the Pixel Data in the input.
//!
//! A lossy target is the exception: its Lossy Image Compression Ratio, in the header, is known
//! only once every frame is compressed. Its fragments go to a temporary file (see
//! [`TranscodeOptions::temp_dir`]) as the batches are encoded, their sizes summed; then the
//! header is written with the ratio, the method, Lossy Image Compression `01` and a new SOP
//! Instance UID exactly as the in-memory path writes them, with a Basic Offset Table (the sizes
//! are known by then), and the fragments are copied from the file. Memory is still a batch of
//! frames; the disk holds the compressed object for the time of the conversion.
//!
//! What is streamed (anything else is converted in memory by `transcode.rs`): a multi-frame
//! object whose decoded pixel data is above the threshold, in Implicit or Explicit VR Little
//! Endian or in an encapsulated syntax one of our decoders reads (RLE, JPEG, JPEG-LS, JPEG 2000;
//! see `decode.rs`), into Implicit or Explicit VR Little Endian or a syntax one of our encoders
//! writes: RLE, JPEG Lossless, JPEG-LS lossless and near-lossless (but of signed monochrome
//! samples), JPEG 2000 lossless and lossy, JPEG Baseline and Extended. Not Deflated and Big
//! Endian inputs or outputs, nor native YBR_FULL_422 frames.
//!
//! The first batch is decoded and encoded before anything is written, so that what the
//! attributes or the first frames make impossible is an error with nothing written. A later
//! frame that fails to decode leaves a partial object in the writer (see
//! [`transcode_with`](crate::transcode_with)), but for a lossy target, where nothing is written
//! before every frame is encoded and the input read to its end.

use std::io::{BufWriter, Cursor, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::decode::{self, Decoder};
use crate::error::{Error, Result};
use crate::frame::PixelModule;
use crate::rle::FrameLayout;
use crate::syntax::{self, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use crate::transcode::{self, EncoderSetup, Output, OwnEncoder, TranscodeOptions, TranscodeReport};

/// The decoded size of the pixel data of a multi-frame object above which
/// [`transcode_with`](crate::transcode_with) converts it frame by frame, unless
/// [`TranscodeOptions::stream_threshold`] says otherwise: 8 MiB. Below it the object is
/// converted in memory, where a failure writes nothing; the memory of that path (several times
/// the object) is no concern at that size. Above it streaming is also the faster path: a
/// 100-frame 512x512 RLE object decodes in 0.14 s and 16 MB instead of 0.35 s and 165 MB,
/// because nothing the size of the object is allocated, filled and copied.
pub const STREAM_THRESHOLD: u64 = 8 << 20;

/// The largest header (everything before the Pixel Data) or trailer (everything after it) we
/// keep in memory; an object with a larger one is converted in memory.
const HEADER_LIMIT: usize = 64 << 20;

/// An undefined length.
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// What [`transcode`] did.
pub(crate) enum Outcome {
    /// The object was streamed to the writer.
    Done(TranscodeReport),
    /// The object is not one to stream: these bytes were read from the input, which goes on
    /// after them.
    Declined(Vec<u8>),
}

/// Where the Pixel Data element is in the bytes read.
struct Head {
    /// The offset of the Pixel Data element's tag.
    pixel_start: usize,
    /// The length of the Pixel Data element's value (`UNDEFINED` when encapsulated).
    pixel_len: u32,
    /// Whether the data set is in Explicit VR.
    explicit: bool,
}

/// How the frames come in.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// Native, each frame `frame_len` bytes.
    Native,
    /// Encapsulated, decoded by this decoder.
    Encapsulated(Decoder),
}

/// How the frames go out.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Native, in Explicit VR (`true`) or Implicit VR Little Endian.
    Native(bool),
    /// Encapsulated, by this encoder of ours.
    Encoded(OwnEncoder),
}

/// Converts the object read from `input` frame by frame into `out`, or declines it (nothing
/// written) when it is not one to stream (see the module).
pub(crate) fn transcode(input: &mut dyn Read, target_ts: &str, options: &TranscodeOptions, out: &mut dyn Write) -> Result<Outcome> {
    let mut bytes = Vec::new();
    let head = read_head(input, &mut bytes).map_err(|e| Error::Invalid { reason: e.to_string() })?;
    let Some(head) = head else { return Ok(Outcome::Declined(bytes)) };
    let Some(mut header) = parse_header(&bytes[..head.pixel_start]) else { return Ok(Outcome::Declined(bytes)) };
    let from = header.meta().transfer_syntax().trim_end_matches('\0').to_owned();
    let threshold = options.stream_threshold.unwrap_or(STREAM_THRESHOLD);
    let Some((source, target, pixel, layout, frames)) = plan(&header, &head, &from, target_ts, options, threshold) else {
        return Ok(Outcome::Declined(bytes));
    };
    let lossy = syntax::is_lossy(target_ts);
    tracing::info!(from = %from, to = target_ts, frames, frame_len = layout.frame_len(), lossy, "converting frame by frame");
    let sop_instance_uid = transcode::sop_instance_uid(&header);
    let pixel_error = |reason: String| Error::PixelData { sop_instance_uid: sop_instance_uid.clone(), from: from.clone(), to: target_ts.to_owned(), reason };
    let Some(target_syntax) = TransferSyntaxRegistry.get(target_ts) else {
        return Err(Error::UnknownTransferSyntax { uid: target_ts.to_owned() });
    };
    // Checked before the pixel data changes the header, as in memory.
    let was_lossy = transcode::already_lossy(&header, &from);
    let frame_len = layout.frame_len();
    let mut frames_in = match source {
        Source::Native => Frames::Native { len: head.pixel_len as u64, frame_len },
        Source::Encapsulated(decoder) => Frames::Encapsulated(FragmentReader::start(input, decoder, frames).map_err(|e| e.into_error(&pixel_error, false))?),
    };
    let batch = (2 * rayon::current_num_threads()).max(2);
    let mut out = BufWriter::with_capacity(1 << 20, out);
    // A lossy conversion keeps its fragments in a temporary file until their sizes give the
    // compression ratio of the header.
    let mut deferred = if lossy { Some(Deferred::new(options)?) } else { None };
    let mut setup: Option<EncoderSetup> = None;
    let mut done = 0usize;
    let mut header_written = false;
    let mut first_photometric = None;
    while done < frames {
        let count = batch.min(frames - done);
        let mut compressed = Vec::with_capacity(count);
        for i in 0..count {
            let frame = frames_in.next(input).map_err(|e| e.into_error(&pixel_error, header_written))?;
            let Some(frame) = frame else {
                return Err(pixel_error(format!("{} frames found, {frames} expected{}", done + i, partial(header_written))));
            };
            compressed.push(frame);
        }
        // Decode, then encode, the frames of the batch on every core.
        let (native, photometric) = match source {
            Source::Native => (compressed, None),
            Source::Encapsulated(decoder) => {
                decode_batch(decoder, &pixel, compressed, done).map_err(|e| pixel_error(format!("{e}{}", partial(header_written))))?
            }
        };
        if done > 0 {
            if photometric != first_photometric {
                return Err(pixel_error(format!("the frames decode to different photometric interpretations{}", partial(header_written))));
            }
        } else {
            first_photometric = photometric;
            if let Source::Encapsulated(_) = source {
                transcode::mark_decoded(&mut header, pixel.samples_per_pixel, photometric);
            }
            if let Target::Encoded(encoder) = target {
                let (bits_stored, signed) = transcode::bits_stored_and_sign(&header, layout);
                let photometric = transcode::photometric(&header);
                let ready = transcode::encoder_setup(
                    encoder,
                    FrameLayout { planar: layout.planar && matches!(source, Source::Native), ..layout },
                    &photometric,
                    bits_stored,
                    signed,
                    None,
                )
                .map_err(pixel_error)?;
                if deferred.is_none() {
                    transcode::mark_encoded(&mut header, layout.samples_per_pixel, &ready, None);
                }
                setup = Some(ready);
            }
        }
        let encoded = match &setup {
            Some(setup) => encode_batch(setup, &native, done, frames).map_err(|e| pixel_error(format!("{e}{}", partial(header_written))))?,
            None => native,
        };
        if let Some(deferred) = &mut deferred {
            for frame in &encoded {
                deferred.push(frame)?;
            }
        } else {
            if !header_written {
                header.update_meta(|meta| meta.set_transfer_syntax(target_syntax));
                write_header(&header, options.output, target, frames * frame_len, &[], layout, &mut out)
                    .map_err(|e| pixel_error(format!("encoding the header: {e}")))?;
                header_written = true;
            }
            for frame in &encoded {
                write_frame(target, frame, &mut out)?;
            }
        }
        done += count;
    }
    let trailer = frames_in.finish(input, frames).map_err(|e| e.into_error(&pixel_error, header_written))?;
    // The elements after Pixel Data, in the target's VR.
    let explicit_out = !matches!(target, Target::Native(false));
    let trailer = if trailer.is_empty() || head.explicit == explicit_out {
        trailer
    } else {
        reencode(&trailer, &from, target_ts).map_err(|reason| pixel_error(format!("the elements after Pixel Data: {reason}{}", partial(header_written))))?
    };
    let mut new_sop_instance_uid = None;
    if let Some(deferred) = deferred {
        // Every frame is encoded: the header, as the in-memory path writes it, then the
        // fragments, with a Basic Offset Table since their sizes are known.
        if let Some(setup) = &setup {
            let ratio = (frame_len * frames) as f64 / deferred.compressed.max(1) as f64;
            transcode::mark_encoded(&mut header, layout.samples_per_pixel, setup, Some(ratio));
        }
        if !was_lossy {
            new_sop_instance_uid = Some(transcode::mark_new_lossy_instance(&mut header, target_ts));
        }
        header.update_meta(|meta| meta.set_transfer_syntax(target_syntax));
        let offsets = deferred.offsets();
        write_header(&header, options.output, target, frames * frame_len, &offsets, layout, &mut out)
            .map_err(|e| pixel_error(format!("encoding the header: {e}")))?;
        deferred.copy_to(&mut out)?;
    }
    match target {
        Target::Native(_) => {
            if (frames * frame_len) % 2 == 1 {
                out.write_all(&[0]).map_err(|source| Error::Write { source })?;
            }
        }
        Target::Encoded(_) => out.write_all(&item(0xE0DD, 0)).map_err(|source| Error::Write { source })?,
    }
    out.write_all(&trailer).map_err(|source| Error::Write { source })?;
    out.flush().map_err(|source| Error::Write { source })?;
    Ok(Outcome::Done(TranscodeReport {
        source_transfer_syntax: from.clone(),
        target_transfer_syntax: target_ts.to_owned(),
        frames: frames as u32,
        pixel_data_reencoded: matches!(source, Source::Encapsulated(_)) || matches!(target, Target::Encoded(_)),
        new_sop_instance_uid,
        streamed: true,
    }))
}

/// The fragments of a lossy conversion, kept in a temporary file until the header is written.
struct Deferred {
    /// The items (header, fragment padded to even), in order.
    file: BufWriter<std::fs::File>,
    /// The length of each item's value.
    lengths: Vec<u32>,
    /// The sum of the fragments' lengths, as the encoder gave them: what the compression ratio
    /// is computed from, as in memory.
    compressed: u64,
}

impl Deferred {
    /// An empty temporary file in the folder of `options` (the system's by default).
    fn new(options: &TranscodeOptions) -> Result<Deferred> {
        let file = match &options.temp_dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
        .map_err(|source| Error::TempFile { action: "creating", source })?;
        Ok(Deferred { file: BufWriter::with_capacity(1 << 20, file), lengths: Vec::new(), compressed: 0 })
    }

    /// Appends the item of one encoded frame.
    fn push(&mut self, fragment: &[u8]) -> Result<()> {
        write_item(fragment, &mut self.file).map_err(|source| Error::TempFile { action: "writing", source })?;
        // The item's length, which `write_item` checked fits in 32 bits.
        self.lengths.push(fragment.len().next_multiple_of(2) as u32);
        self.compressed += fragment.len() as u64;
        Ok(())
    }

    /// The Basic Offset Table of the items: empty when an offset does not fit in 32 bits.
    fn offsets(&self) -> Vec<u32> {
        let mut offsets = Vec::with_capacity(self.lengths.len());
        let mut offset = 0u64;
        for len in &self.lengths {
            let Ok(at) = u32::try_from(offset) else { return Vec::new() };
            offsets.push(at);
            offset += 8 + u64::from(*len);
        }
        offsets
    }

    /// Copies the items to `out`.
    fn copy_to(self, out: &mut dyn Write) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let temp = |action| move |source| Error::TempFile { action, source };
        let mut file = self.file.into_inner().map_err(|e| Error::TempFile { action: "writing", source: e.into_error() })?;
        file.seek(SeekFrom::Start(0)).map_err(temp("reading"))?;
        // Read in large blocks; a failure to read is the temporary file's, one to write is `out`'s.
        let mut block = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut block).map_err(temp("reading"))?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&block[..n]).map_err(|source| Error::Write { source })?;
        }
    }
}

/// What an error after the first bytes were written adds to its message.
fn partial(written: bool) -> &'static str {
    if written { " (the object written so far is incomplete)" } else { "" }
}

/// Whether and how to stream: the source and target, the image pixel module, the frame layout
/// and the number of frames.
fn plan(
    header: &DefaultDicomObject,
    head: &Head,
    from: &str,
    target_ts: &str,
    options: &TranscodeOptions,
    threshold: u64,
) -> Option<(Source, Target, PixelModule, FrameLayout, usize)> {
    if from == target_ts {
        return None;
    }
    let frames = transcode::int(header, tags::NUMBER_OF_FRAMES).unwrap_or(1) as usize;
    if frames < 2 {
        return None;
    }
    let pixel = decode::pixel_module(header)?;
    let layout = transcode::frame_layout(header).ok()?;
    if !(pixel.bits_allocated == 8 || pixel.bits_allocated == 16) || !(pixel.samples_per_pixel == 1 || pixel.samples_per_pixel == 3) {
        return None;
    }
    let frame_len = layout.frame_len();
    let total = (frame_len as u64).checked_mul(frames as u64)?;
    if frame_len == 0 || total <= threshold {
        return None;
    }
    let source = match from {
        IMPLICIT_VR_LITTLE_ENDIAN | EXPLICIT_VR_LITTLE_ENDIAN => {
            if pixel.photometric == "YBR_FULL_422" || head.pixel_len == UNDEFINED || u64::from(head.pixel_len) < total {
                return None;
            }
            Source::Native
        }
        _ => {
            let decoder = Decoder::for_syntax(from)?;
            let encapsulated = TransferSyntaxRegistry.get(from).is_some_and(|ts| ts.is_encapsulated_pixel_data());
            if !encapsulated || !decoder.covers(&pixel) || head.pixel_len != UNDEFINED {
                return None;
            }
            Source::Encapsulated(decoder)
        }
    };
    let target = match target_ts {
        IMPLICIT_VR_LITTLE_ENDIAN | EXPLICIT_VR_LITTLE_ENDIAN => {
            // Native Pixel Data has a 32-bit defined length.
            if total >= u64::from(UNDEFINED - 1) {
                return None;
            }
            Target::Native(target_ts == EXPLICIT_VR_LITTLE_ENDIAN)
        }
        _ => {
            // Monochrome JPEG-LS lossless, which the in-memory path leaves to dicom-rs: ours too
            // when streaming (one component), but for signed samples (kept in memory).
            let encoder = transcode::own_encoder(target_ts, pixel.samples_per_pixel, options.quality)
                .or_else(|| transcode::monochrome_jpeg_ls(target_ts, pixel.samples_per_pixel, &pixel.photometric, pixel.signed, options.quality, true))?;
            Target::Encoded(encoder)
        }
    };
    Some((source, target, pixel, layout, frames))
}

/// Reads the preamble, File Meta Information and data set of `input` into `bytes`, up to and
/// including the header of the top-level Pixel Data element. `None` when the object is not one
/// we can walk (no `DICM`, a syntax other than Implicit or Explicit VR Little Endian or an
/// encapsulated one, a header over [`HEADER_LIMIT`], no Pixel Data).
fn read_head(input: &mut dyn Read, bytes: &mut Vec<u8>) -> std::io::Result<Option<Head>> {
    if !fill(input, bytes, 132)? {
        return Ok(None);
    }
    let meta_start = if &bytes[128..132] == b"DICM" {
        132
    } else if &bytes[..4] == b"DICM" {
        4
    } else {
        return Ok(None);
    };
    if !fill(input, bytes, meta_start + 12)? || bytes[meta_start..meta_start + 6] != [2, 0, 0, 0, b'U', b'L'] {
        return Ok(None);
    }
    let meta_end = meta_start + 12 + u32_at(bytes, meta_start + 8) as usize;
    if meta_end > HEADER_LIMIT || !fill(input, bytes, meta_end)? {
        return Ok(None);
    }
    let mut magic_and_meta = b"DICM".to_vec();
    magic_and_meta.extend_from_slice(&bytes[meta_start..meta_end]);
    let Ok(meta) = dicom_object::meta::FileMetaTable::from_reader(Cursor::new(magic_and_meta)) else { return Ok(None) };
    let ts = meta.transfer_syntax().to_owned();
    let explicit = match ts.as_str() {
        IMPLICIT_VR_LITTLE_ENDIAN => false,
        EXPLICIT_VR_LITTLE_ENDIAN => true,
        other if TransferSyntaxRegistry.get(other).is_some_and(|t| t.is_encapsulated_pixel_data()) => true,
        _ => return Ok(None),
    };
    // Element by element, skipping values; sequences and items of undefined length are walked
    // into (their depth counted), items of defined length skipped whole.
    let mut position = meta_end;
    let mut depth = 0usize;
    loop {
        if position + 12 > HEADER_LIMIT || !fill(input, bytes, position + 8)? {
            return Ok(None);
        }
        let tag = Tag(u16_at(bytes, position), u16_at(bytes, position + 2));
        if tag.0 == 0xFFFE {
            let len = u32_at(bytes, position + 4);
            position += 8;
            match tag.1 {
                0xE000 if len != UNDEFINED => position += len as usize,
                0xE000 | 0xE00D => {}
                0xE0DD => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            }
            if position > HEADER_LIMIT || !fill(input, bytes, position)? {
                return Ok(None);
            }
            continue;
        }
        let (len, header_len, vr) = if explicit {
            let vr = [bytes[position + 4], bytes[position + 5]];
            if matches!(&vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV") {
                if !fill(input, bytes, position + 12)? {
                    return Ok(None);
                }
                (u32_at(bytes, position + 8), 12, Some(vr))
            } else {
                (u32::from(u16_at(bytes, position + 6)), 8, Some(vr))
            }
        } else {
            (u32_at(bytes, position + 4), 8, None)
        };
        if depth == 0 && tag == tags::PIXEL_DATA {
            return Ok(Some(Head { pixel_start: position, pixel_len: len, explicit }));
        }
        position += header_len;
        if len == UNDEFINED {
            if vr == Some(*b"UN") {
                // An explicit UN of undefined length holds implicit VR elements: not walked.
                return Ok(None);
            }
            depth += 1;
        } else {
            position += len as usize;
            if position > HEADER_LIMIT || !fill(input, bytes, position)? {
                return Ok(None);
            }
        }
    }
}

/// Reads from `input` until `bytes` holds `len` bytes; `false` at the end of the input first.
fn fill(input: &mut dyn Read, bytes: &mut Vec<u8>, len: usize) -> std::io::Result<bool> {
    if bytes.len() < len {
        let want = (len - bytes.len()) as u64;
        input.take(want).read_to_end(bytes)?;
    }
    Ok(bytes.len() >= len)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The header (everything before Pixel Data), parsed; `None` when dicom-object cannot read it.
fn parse_header(bytes: &[u8]) -> Option<DefaultDicomObject> {
    catch_unwind(AssertUnwindSafe(|| OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(Cursor::new(bytes)))).ok()?.ok()
}

/// An item or delimiter header: tag (FFFE,`element`) and length.
fn item(element: u16, len: u32) -> [u8; 8] {
    let mut header = [0xFE, 0xFF, 0, 0, 0, 0, 0, 0];
    header[2..4].copy_from_slice(&element.to_le_bytes());
    header[4..].copy_from_slice(&len.to_le_bytes());
    header
}

/// Writes the header of the output and the Pixel Data element's header (native: of `pixel_len`
/// bytes; encapsulated: with a Basic Offset Table of `offsets`, empty when there are none).
fn write_header(
    header: &DefaultDicomObject,
    output: Output,
    target: Target,
    pixel_len: usize,
    offsets: &[u32],
    layout: FrameLayout,
    out: &mut dyn Write,
) -> std::result::Result<(), String> {
    match output {
        Output::File => header.write_all(&mut *out),
        Output::DataSet => header.write_dataset(&mut *out),
    }
    .map_err(|e| e.to_string())?;
    let mut element = Vec::with_capacity(20);
    element.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00]);
    match target {
        Target::Native(explicit) => {
            let len = pixel_len.next_multiple_of(2) as u32;
            if explicit {
                element.extend_from_slice(if layout.bytes_per_sample == 1 { b"OB" } else { b"OW" });
                element.extend_from_slice(&[0, 0]);
            }
            element.extend_from_slice(&len.to_le_bytes());
        }
        Target::Encoded(_) => {
            element.extend_from_slice(b"OB\0\0");
            element.extend_from_slice(&UNDEFINED.to_le_bytes());
            element.extend_from_slice(&item(0xE000, (offsets.len() * 4) as u32));
            element.extend(offsets.iter().flat_map(|o| o.to_le_bytes()));
        }
    }
    out.write_all(&element).map_err(|e| e.to_string())
}

/// Writes one frame: its bytes (native), or an item of its fragment padded to even.
fn write_frame(target: Target, frame: &[u8], out: &mut dyn Write) -> Result<()> {
    match target {
        Target::Encoded(_) => write_item(frame, out),
        Target::Native(_) => out.write_all(frame),
    }
    .map_err(|source| Error::Write { source })
}

/// Writes an item of `fragment`, padded to even.
fn write_item(fragment: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
    let len = u32::try_from(fragment.len().next_multiple_of(2)).map_err(|_| std::io::Error::other("a fragment over 4 GiB"))?;
    out.write_all(&item(0xE000, len))?;
    out.write_all(fragment)?;
    if fragment.len() % 2 == 1 {
        out.write_all(&[0])?;
    }
    Ok(())
}

/// Decodes a batch of frames (the first is frame `first` + 1) on every core; with the
/// Photometric Interpretation they decode to when it changed.
fn decode_batch(decoder: Decoder, pixel: &PixelModule, compressed: Vec<Vec<u8>>, first: usize) -> Result<(Vec<Vec<u8>>, Option<&'static str>)> {
    use rayon::prelude::*;
    let frame_len = pixel.frame_len();
    let results: Vec<Result<(Vec<u8>, Option<&'static str>)>> = compressed
        .par_iter()
        .enumerate()
        .map(|(i, data)| {
            let mut out = vec![0u8; frame_len];
            let decoded = catch_unwind(AssertUnwindSafe(|| decoder.decode(data, pixel, &mut out)));
            match decoded {
                Ok(Ok(photometric)) => Ok((out, photometric)),
                Ok(Err(e)) => Err(Error::Codec { codec: "pixel data", reason: format!("frame {}: {e}", first + i + 1) }),
                Err(_) => Err(Error::Codec { codec: "pixel data", reason: format!("frame {}: the codec panicked (corrupt pixel data?)", first + i + 1) }),
            }
        })
        .collect();
    let mut frames = Vec::with_capacity(results.len());
    let mut photometric = None;
    for (i, result) in results.into_iter().enumerate() {
        let (frame, p) = result?;
        if i == 0 {
            photometric = p;
        } else if p != photometric {
            return Err(Error::Codec { codec: "pixel data", reason: "the frames decode to different photometric interpretations".into() });
        }
        frames.push(frame);
    }
    Ok((frames, photometric))
}

/// Encodes a batch of native frames (the first is frame `first` + 1 of `total`) on every core.
fn encode_batch(setup: &EncoderSetup, native: &[Vec<u8>], first: usize, total: usize) -> std::result::Result<Vec<Vec<u8>>, String> {
    use rayon::prelude::*;
    native
        .par_iter()
        .enumerate()
        .map(|(i, frame)| match catch_unwind(AssertUnwindSafe(|| (setup.encode)(frame))) {
            Ok(Ok(encoded)) => Ok(encoded),
            Ok(Err(e)) => Err(if total > 1 { format!("frame {}: {e}", first + i + 1) } else { e }),
            Err(_) => Err(format!("frame {}: the codec panicked", first + i + 1)),
        })
        .collect()
}

/// The elements after Pixel Data in `from`, re-encoded in `to`.
fn reencode(trailer: &[u8], from: &str, to: &str) -> std::result::Result<Vec<u8>, String> {
    let from = TransferSyntaxRegistry.get(from).ok_or("unknown transfer syntax")?;
    let to = TransferSyntaxRegistry.get(to).ok_or("unknown transfer syntax")?;
    let elements = InMemDicomObject::read_dataset_with_ts(Cursor::new(trailer), from).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    elements.write_dataset_with_ts(&mut out, to).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A failure while reading the frames: of the input, or of its pixel data.
enum ReadError {
    /// Reading the input failed, or it ended early.
    Io(std::io::Error),
    /// The pixel data is not what its attributes say.
    Data(String),
}

impl ReadError {
    /// The error of the conversion, saying whether part of the object was `written` already.
    fn into_error(self, pixel_error: &dyn Fn(String) -> Error, written: bool) -> Error {
        match self {
            ReadError::Io(e) => Error::Invalid { reason: format!("reading the pixel data: {e}{}", partial(written)) },
            ReadError::Data(reason) => pixel_error(format!("{reason}{}", partial(written))),
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// The frames of the input, read one at a time.
enum Frames {
    /// Native: the Pixel Data value is `len` bytes, each frame `frame_len`.
    Native {
        /// The length of the value.
        len: u64,
        /// The length of one frame.
        frame_len: usize,
    },
    /// Encapsulated.
    Encapsulated(FragmentReader),
}

impl Frames {
    /// The next frame's bytes (native, or compressed), `None` after the last one.
    fn next(&mut self, input: &mut dyn Read) -> std::result::Result<Option<Vec<u8>>, ReadError> {
        match self {
            Frames::Native { len, frame_len } => {
                if (*len) < *frame_len as u64 {
                    return Ok(None);
                }
                let mut frame = vec![0u8; *frame_len];
                input.read_exact(&mut frame)?;
                *len -= *frame_len as u64;
                Ok(Some(frame))
            }
            Frames::Encapsulated(reader) => reader.next_frame(input),
        }
    }

    /// Reads what is left of the Pixel Data after `frames` frames, then what follows it: the
    /// trailing elements, returned.
    fn finish(self, input: &mut dyn Read, frames: usize) -> std::result::Result<Vec<u8>, ReadError> {
        match self {
            Frames::Native { len, .. } => {
                let skipped = std::io::copy(&mut input.take(len), &mut std::io::sink())?;
                if skipped < len {
                    return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Frames::Encapsulated(mut reader) => {
                if let Some(_extra) = reader.next_frame(input)? {
                    return Err(ReadError::Data(format!("more fragments than the {frames} frames")));
                }
            }
        }
        let mut trailer = Vec::new();
        input.take(HEADER_LIMIT as u64 + 1).read_to_end(&mut trailer)?;
        if trailer.len() > HEADER_LIMIT {
            return Err(ReadError::Data("over 64 MiB of elements after Pixel Data".into()));
        }
        Ok(trailer)
    }
}

/// How the fragments of the input make frames.
enum Grouping {
    /// By the Basic Offset Table: the offset of each frame's first item.
    Offsets(Vec<u64>),
    /// One fragment per frame (RLE).
    One,
    /// By the markers (JPEG family): a frame begins with a fragment that starts one, after a
    /// fragment that ends one.
    Markers,
}

/// Reads the items of encapsulated Pixel Data, grouped into frames, as `decode.rs` groups them.
struct FragmentReader {
    /// The decoder, for its markers.
    decoder: Decoder,
    /// How fragments make frames.
    grouping: Grouping,
    /// The offset of the next item from the first item after the Basic Offset Table.
    position: u64,
    /// A fragment read ahead, with its offset: the first of the next frame.
    pending: Option<(u64, Vec<u8>)>,
    /// The sequence delimiter was read.
    ended: bool,
    /// Frames handed out.
    frame: usize,
}

impl FragmentReader {
    /// Reads the Basic Offset Table of Pixel Data with `frames` frames.
    fn start(input: &mut dyn Read, decoder: Decoder, frames: usize) -> std::result::Result<FragmentReader, ReadError> {
        let mut reader = FragmentReader { decoder, grouping: Grouping::One, position: 0, pending: None, ended: false, frame: 0 };
        let Some(table) = reader.read_item(input)? else {
            return Err(ReadError::Data("no Basic Offset Table item".into()));
        };
        reader.position = 0;
        let offsets: Vec<u64> = table.chunks_exact(4).map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect();
        reader.grouping = if offsets.len() == frames && offsets.first() == Some(&0) && offsets.windows(2).all(|w| w[0] < w[1]) {
            Grouping::Offsets(offsets)
        } else if decoder == Decoder::Rle {
            Grouping::One
        } else {
            Grouping::Markers
        };
        Ok(reader)
    }

    /// The next item's value, `None` at the sequence delimiter; `position` moves past it.
    fn read_item(&mut self, input: &mut dyn Read) -> std::result::Result<Option<Vec<u8>>, ReadError> {
        if self.ended {
            return Ok(None);
        }
        let mut header = [0u8; 8];
        input.read_exact(&mut header)?;
        let (tag, len) = (Tag(u16_at(&header, 0), u16_at(&header, 2)), u32_at(&header, 4));
        match tag {
            Tag(0xFFFE, 0xE0DD) => {
                self.ended = true;
                Ok(None)
            }
            Tag(0xFFFE, 0xE000) if len != UNDEFINED => {
                if len as usize > HEADER_LIMIT.max(1 << 30) {
                    return Err(ReadError::Data(format!("a fragment of {len} bytes")));
                }
                let mut value = vec![0u8; len as usize];
                input.read_exact(&mut value)?;
                self.position += 8 + u64::from(len);
                Ok(Some(value))
            }
            other => Err(ReadError::Data(format!("{other} in the encapsulated Pixel Data, an item expected"))),
        }
    }

    /// The next fragment with its offset: the one read ahead, or the next item.
    fn next_fragment(&mut self, input: &mut dyn Read) -> std::result::Result<Option<(u64, Vec<u8>)>, ReadError> {
        if let Some(pending) = self.pending.take() {
            return Ok(Some(pending));
        }
        let offset = self.position;
        Ok(self.read_item(input)?.map(|fragment| (offset, fragment)))
    }

    /// The compressed bytes of the next frame, `None` after the last fragment.
    fn next_frame(&mut self, input: &mut dyn Read) -> std::result::Result<Option<Vec<u8>>, ReadError> {
        let Some((offset, mut data)) = self.next_fragment(input)? else { return Ok(None) };
        let index = self.frame;
        self.frame += 1;
        match &self.grouping {
            Grouping::One => {}
            Grouping::Offsets(offsets) => {
                if offsets.get(index) != Some(&offset) {
                    return Err(ReadError::Data(format!("the Basic Offset Table does not match the fragments at frame {}", index + 1)));
                }
                let end = offsets.get(index + 1).copied();
                let mut last_ends = decode::ends_with_end_marker(&data);
                while let Some((next_offset, fragment)) = self.next_fragment(input)? {
                    match end {
                        Some(end) if next_offset == end => {
                            self.pending = Some((next_offset, fragment));
                            break;
                        }
                        Some(end) if next_offset > end && self.decoder != Decoder::Rle => {
                            // An offset that is no item: the table is wrong, the markers tell the
                            // frames apart from here on, as `decode.rs` does.
                            tracing::debug!(frame = index + 1, "the Basic Offset Table does not match the fragments: frames by markers");
                            self.grouping = Grouping::Markers;
                            if last_ends && self.decoder.starts_frame(&fragment) {
                                self.pending = Some((next_offset, fragment));
                                break;
                            }
                            data.extend_from_slice(&fragment);
                            return self.rest_by_markers(input, data).map(Some);
                        }
                        _ => {}
                    }
                    last_ends = decode::ends_with_end_marker(&fragment);
                    data.extend_from_slice(&fragment);
                }
            }
            Grouping::Markers => {
                if !self.decoder.starts_frame(&data) {
                    return Err(ReadError::Data(format!("frame {} does not begin with a marker of its codec", index + 1)));
                }
                return self.rest_by_markers(input, data).map(Some);
            }
        }
        Ok(Some(data))
    }

    /// The fragments that continue the frame of `data` (up to one that starts a frame after one
    /// that ends one), appended to it.
    fn rest_by_markers(&mut self, input: &mut dyn Read, mut data: Vec<u8>) -> std::result::Result<Vec<u8>, ReadError> {
        let mut last_ends = decode::ends_with_end_marker(&data);
        while let Some((next_offset, fragment)) = self.next_fragment(input)? {
            if last_ends && self.decoder.starts_frame(&fragment) {
                self.pending = Some((next_offset, fragment));
                break;
            }
            last_ends = decode::ends_with_end_marker(&fragment);
            data.extend_from_slice(&fragment);
        }
        Ok(data)
    }
}
