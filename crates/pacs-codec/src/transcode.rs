//! Conversion of a whole Part 10 object from one transfer syntax to another.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::adapters::EncodeOptions;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::decode;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::rle::{self, FrameLayout};
use crate::stream;
use crate::syntax::{self, EXPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS};

/// What to write: a whole Part 10 file, or the data set alone (as a C-STORE sends it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Preamble, `DICM`, File Meta Information and data set.
    #[default]
    File,
    /// The data set only, in the target transfer syntax.
    DataSet,
}

/// Settings of a conversion.
#[derive(Clone, Debug, Default)]
pub struct TranscodeOptions {
    /// Quality of lossy encoders, 0 to 100 (JPEG Baseline and Extended: 85 by default, 0 taken as
    /// 1; JPEG-LS near-lossless: 100, that is lossless, by default; JPEG 2000: 85 by default, a
    /// compression ratio of 1 + (100 - quality) / 2, and 100 is lossless).
    pub quality: Option<u8>,
    /// What to write.
    pub output: Output,
    /// The decoded size of the pixel data above which a multi-frame object is converted frame
    /// by frame (see [`transcode_with`]); [`STREAM_THRESHOLD`](crate::STREAM_THRESHOLD) when
    /// `None`. `Some(u64::MAX)` keeps every conversion in memory, all or nothing.
    pub stream_threshold: Option<u64>,
    /// The folder of the temporary file in which a lossy conversion streamed frame by frame
    /// keeps its encoded frames until its header can be written (see [`transcode_with`]): the
    /// system's temporary folder ([`std::env::temp_dir`], `TMPDIR` on Unix) when `None`. The
    /// file has no name (it is removed as soon as it is created, on Unix) and is gone when the
    /// conversion returns.
    pub temp_dir: Option<PathBuf>,
}

/// What a conversion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscodeReport {
    /// The transfer syntax of the input.
    pub source_transfer_syntax: String,
    /// The transfer syntax written.
    pub target_transfer_syntax: String,
    /// Frames of pixel data (0 without pixel data).
    pub frames: u32,
    /// Whether the pixel data was decoded and re-encoded (otherwise only the data set encoding
    /// changed, or nothing did).
    pub pixel_data_reencoded: bool,
    /// The new SOP Instance UID given to the object because the conversion was lossy, with the
    /// old one: `(old, new)`.
    pub new_sop_instance_uid: Option<(String, String)>,
    /// Whether the object was converted frame by frame, in bounded memory (see
    /// [`transcode_with`]).
    pub streamed: bool,
}

/// Reads a Part 10 object from `input`, converts it to `target_ts` and writes it to `out`.
/// See [`transcode_with`].
pub fn transcode(input: &mut dyn Read, target_ts: &str, out: &mut dyn Write) -> Result<TranscodeReport> {
    transcode_with(input, target_ts, &TranscodeOptions::default(), out)
}

/// Reads a Part 10 object from `input` (with or without the 128-byte preamble), converts it to
/// `target_ts` and writes it to `out` as `options.output` says.
///
/// The File Meta Information follows (transfer syntax, and the Media Storage SOP Instance UID
/// when that changes). Encapsulated output has one fragment per frame, and a Basic Offset Table
/// when converted in memory or into a lossy syntax.
/// Into a lossy syntax from pixel data that was not lossy yet, the object gets a new SOP Instance
/// UID and Lossy Image Compression `01`.
///
/// Two paths, chosen once the data set up to its Pixel Data has been read:
///
/// - **Frame by frame** (bounded memory): a multi-frame object whose decoded pixel data is above
///   `options.stream_threshold` ([`STREAM_THRESHOLD`](crate::STREAM_THRESHOLD), 8 MiB, by
///   default), from Implicit or Explicit VR Little Endian or a syntax one of our decoders reads,
///   to Implicit or Explicit VR Little Endian or a syntax one of our encoders writes (RLE, JPEG
///   Lossless, JPEG-LS lossless and near-lossless, JPEG 2000 lossless and lossy, JPEG Baseline
///   and Extended; not signed monochrome JPEG-LS, which dicom-rs encodes). The frames are read,
///   converted on every core and written a batch of about two per core at a time, so memory is
///   a few frames, whatever the size of the object. JPEG Lossless takes each frame's sample
///   precision from that frame.
///   - Into a **lossless or native** syntax, frames are written as they are converted:
///     encapsulated output has an empty Basic Offset Table (PS3.5 A.4). What the attributes or
///     the first batch of frames make impossible fails with nothing written; **but a frame that
///     fails to decode after the first batch fails the conversion with a partial object already
///     written to `out`** (the error says so). A caller that must not keep partial output
///     writes to a buffer or a temporary file it discards on error, or sets `stream_threshold`
///     to `Some(u64::MAX)`.
///   - Into a **lossy** syntax, the Lossy Image Compression Ratio must be in the header, before
///     the pixel data, and is known only once every frame is compressed: the fragments go to an
///     unnamed temporary file in `options.temp_dir` (the system's temporary folder by default),
///     then the header is written with the same attributes as the in-memory path (ratio,
///     method, Lossy Image Compression, new SOP Instance UID) and a Basic Offset Table, then the
///     fragments are copied from the file. Nothing is written to `out` before every frame is
///     encoded and the input read, so any failure of the conversion leaves nothing written
///     (beyond an I/O error of `out` itself); the disk holds the compressed object meanwhile
///     ([`Error::TempFile`] when it cannot).
/// - **In memory** (everything else: single frames, smaller objects, Deflated and Big Endian,
///   dicom-rs's codecs): the whole object is in memory, its decoded pixel data included. Nothing
///   is written unless the conversion succeeded, so a failure never leaves a partial object in
///   `out` (beyond what the writer itself buffers for an I/O error).
///
/// A decoder that panics on corrupt data is reported as [`Error::PixelData`].
///
/// # Example
///
/// ```no_run
/// let mut input = std::fs::File::open("ct_jpeg_ls.dcm")?;
/// let mut out = std::fs::File::create("ct_explicit.dcm")?;
/// let report = pacs_codec::transcode(&mut input, pacs_codec::syntax::EXPLICIT_VR_LITTLE_ENDIAN, &mut out)?;
/// println!("{} frames", report.frames);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn transcode_with(input: &mut dyn Read, target_ts: &str, options: &TranscodeOptions, out: &mut dyn Write) -> Result<TranscodeReport> {
    let target = target_ts.trim_end_matches('\0').trim();
    let read = match stream::transcode(input, target, options, out)? {
        stream::Outcome::Done(report) => return Ok(report),
        stream::Outcome::Declined(read) => read,
    };
    // In memory: the bytes the streaming path read, then the rest of the input.
    let mut input = std::io::Cursor::new(read).chain(input);
    let (object, report) = convert(&mut input, target_ts, options)?;
    // Sized for the pixel data up front: growing a buffer of tens of megabytes by doubling copies
    // it several times.
    let mut buffer = Vec::with_capacity(pixel_data_len(&object).saturating_add(64 * 1024));
    let written = match options.output {
        Output::File => object.write_all(&mut buffer),
        Output::DataSet => object.write_dataset(&mut buffer),
    };
    written.map_err(|e| Error::PixelData {
        sop_instance_uid: sop_instance_uid(&object),
        from: report.source_transfer_syntax.clone(),
        to: report.target_transfer_syntax.clone(),
        reason: format!("encoding the data set: {e}"),
    })?;
    out.write_all(&buffer).map_err(|source| Error::Write { source })?;
    Ok(report)
}

/// Reads and converts, returning the converted object in memory.
fn convert(input: &mut dyn Read, target_ts: &str, options: &TranscodeOptions) -> Result<(DefaultDicomObject, TranscodeReport)> {
    let target_ts = target_ts.trim_end_matches('\0').trim();
    let Some(target) = TransferSyntaxRegistry.get(target_ts) else {
        return Err(Error::UnknownTransferSyntax { uid: target_ts.to_owned() });
    };
    let mut object = catch_unwind(AssertUnwindSafe(|| OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(input)))
        .map_err(|_| Error::Invalid { reason: "the parser panicked".into() })?
        .map_err(|e| Error::Invalid { reason: e.to_string() })?;
    let from = object.meta().transfer_syntax().trim_end_matches('\0').to_owned();
    let unsupported = |reason: &str| Error::Unsupported { from: from.clone(), to: target_ts.to_owned(), reason: reason.to_owned() };
    if !syntax::can_read(&from) && from != target_ts {
        return Err(unsupported("the source transfer syntax cannot be decoded by this build"));
    }
    if !syntax::can_write(target_ts) && from != target_ts {
        return Err(unsupported("the target transfer syntax cannot be encoded by this build"));
    }
    let has_pixels = object.get(tags::PIXEL_DATA).is_some();
    let frames = if has_pixels { int(&object, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) } else { 0 };
    let mut report = TranscodeReport {
        source_transfer_syntax: from.clone(),
        target_transfer_syntax: target_ts.to_owned(),
        frames,
        pixel_data_reencoded: false,
        new_sop_instance_uid: None,
        streamed: false,
    };
    if from == target_ts {
        return Ok((object, report));
    }
    if from == syntax::EXPLICIT_VR_BIG_ENDIAN && has_pixels {
        wide_samples_in_order(&mut object);
    }
    let source_encapsulated = TransferSyntaxRegistry.get(&from).is_some_and(|ts| ts.is_encapsulated_pixel_data());
    report.pixel_data_reencoded = has_pixels && (source_encapsulated || target.is_encapsulated_pixel_data());
    if has_pixels && target_ts == syntax::JPEG_BASELINE && int(&object, tags::BITS_ALLOCATED) != Some(8) {
        return Err(unsupported("JPEG Baseline holds 8-bit samples only"));
    }
    let own = if has_pixels {
        let samples_per_pixel = int(&object, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        own_encoder(target_ts, samples_per_pixel, options.quality).or_else(|| {
            let signed = int(&object, tags::PIXEL_REPRESENTATION) == Some(1);
            monochrome_jpeg_ls(target_ts, samples_per_pixel, &photometric(&object), signed, options.quality, false)
        })
    } else {
        None
    };
    let pixel_error = |object: &DefaultDicomObject, reason: String| Error::PixelData {
        sop_instance_uid: sop_instance_uid(object),
        from: from.clone(),
        to: target_ts.to_owned(),
        reason,
    };
    let was_lossy = already_lossy(&object, &from);
    let encode_options = {
        let mut o = EncodeOptions::default();
        o.quality = options.quality;
        o
    };
    let result = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<(), String> {
        // Our decoders first; dicom-rs decodes what they do not cover.
        if has_pixels && let Some(plan) = decode::plan(&object, &from).map_err(|e| e.to_string())? {
            decode_to_native(&mut object, &plan)?;
        }
        if let Some(encoder) = own {
            let explicit = TransferSyntaxRegistry.get(EXPLICIT_VR_LITTLE_ENDIAN).ok_or("no Explicit VR Little Endian")?;
            object.transcode(explicit).map_err(|e| e.to_string())?;
            encode_frames(&mut object, encoder)?;
            object.update_meta(|meta| meta.set_transfer_syntax(target));
            Ok(())
        } else {
            object.transcode_with_options(target, encode_options).map_err(|e| e.to_string())?;
            if has_pixels && source_encapsulated && !target.is_encapsulated_pixel_data() {
                check_native_length(&object)?;
            }
            Ok(())
        }
    }));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Err(pixel_error(&object, reason)),
        Err(_) => return Err(pixel_error(&object, "the codec panicked (corrupt pixel data?)".into())),
    }
    if !has_pixels {
        object.update_meta(|meta| meta.set_transfer_syntax(target));
    }
    if has_pixels && syntax::is_lossy(target_ts) && !was_lossy {
        report.new_sop_instance_uid = Some(mark_new_lossy_instance(&mut object, target_ts));
    }
    Ok((object, report))
}

/// Makes `object`, converted into the lossy syntax `target_ts` from pixel data that was not
/// lossy yet, a new instance (PS3.3 C.7.6.1.1.5): a new SOP Instance UID (in the File Meta
/// Information too) and Lossy Image Compression `01`. Returns the old and the new UID. The
/// streaming path makes the same changes to the header it writes.
pub(crate) fn mark_new_lossy_instance(object: &mut DefaultDicomObject, target_ts: &str) -> (String, String) {
    let old = sop_instance_uid(object);
    let new = new_uid();
    object.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, new.as_str()));
    object.put(DataElement::new(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01"));
    object.update_meta(|meta| meta.media_storage_sop_instance_uid = new.clone());
    tracing::info!(%old, %new, to = target_ts, "lossy conversion: new SOP Instance UID");
    (old, new)
}

/// Puts the words of 32- and 64-bit native samples of an Explicit VR Big Endian object in
/// little endian order before it is written in another syntax (see
/// [`crate::render::words_in_sample_order`]): otherwise a sample `0x00130EE8` comes out as
/// `0x0EE80013`.
fn wide_samples_in_order(object: &mut DefaultDicomObject) {
    let Some(bits) = int(object, tags::BITS_ALLOCATED).and_then(|b| u16::try_from(b).ok()).filter(|b| *b == 32 || *b == 64) else {
        return;
    };
    let Some(element) = object.get(tags::PIXEL_DATA) else { return };
    if element.vr() != VR::OW {
        return;
    }
    let Ok(bytes) = element.to_bytes() else { return };
    let mut bytes = bytes.into_owned();
    crate::render::words_in_sample_order(&mut bytes, bits);
    let words: Vec<u16> = bytes.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect();
    object.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(words.into())));
}

/// The bytes of the Pixel Data value: native, or fragments with their item headers.
fn pixel_data_len(object: &DefaultDicomObject) -> usize {
    let Some(value) = object.get(tags::PIXEL_DATA).map(|e| e.value()) else { return 0 };
    match value.fragments() {
        Some(fragments) => fragments.iter().map(|f| f.len() + 8).sum::<usize>() + 8 + value.offset_table().map_or(0, |t| t.len() * 4),
        None => value.primitive().map_or(0, |p| p.calculate_byte_len()),
    }
}

/// Whether the pixel data had already been through lossy compression.
pub(crate) fn already_lossy(object: &DefaultDicomObject, from: &str) -> bool {
    syntax::is_lossy(from) || object.get(tags::LOSSY_IMAGE_COMPRESSION).and_then(|e| e.to_str().ok()).is_some_and(|v| v.trim() == "01")
}

/// The layout of one native frame of `object`.
pub(crate) fn frame_layout(object: &DefaultDicomObject) -> std::result::Result<FrameLayout, String> {
    let rows = int(object, tags::ROWS).ok_or("no Rows")? as usize;
    let columns = int(object, tags::COLUMNS).ok_or("no Columns")? as usize;
    let samples_per_pixel = int(object, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize;
    let bits_allocated = int(object, tags::BITS_ALLOCATED).ok_or("no Bits Allocated")? as usize;
    if bits_allocated == 0 || !bits_allocated.is_multiple_of(8) {
        return Err(format!("encoding needs whole bytes per sample, not Bits Allocated {bits_allocated}"));
    }
    let planar = int(object, tags::PLANAR_CONFIGURATION) == Some(1);
    Ok(FrameLayout { rows, columns, samples_per_pixel, bytes_per_sample: bits_allocated / 8, planar })
}

/// Replaces encapsulated Pixel Data by native pixel data (Explicit VR Little Endian, samples
/// interleaved) decoded by our own decoders, every frame in parallel; the Photometric
/// Interpretation follows what the decoder gives (colour lossy JPEG: RGB).
fn decode_to_native(object: &mut DefaultDicomObject, plan: &decode::Plan) -> std::result::Result<(), String> {
    let fragments = object.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()).ok_or("Pixel Data is not encapsulated")?;
    let decoded = decode::decode_frames(plan, fragments).map_err(|e| e.to_string())?;
    let mut native = decoded.native;
    if !native.len().is_multiple_of(2) {
        native.push(0);
    }
    let vr = if plan.pixel.bits_allocated == 8 { VR::OB } else { VR::OW };
    object.put(DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::from(native)));
    mark_decoded(object, plan.pixel.samples_per_pixel, decoded.photometric);
    let explicit = TransferSyntaxRegistry.get(EXPLICIT_VR_LITTLE_ENDIAN).ok_or("no Explicit VR Little Endian")?;
    object.update_meta(|meta| meta.set_transfer_syntax(explicit));
    Ok(())
}

/// Checks that native Pixel Data holds every frame: a decoder that stopped early is an error,
/// not a short object.
fn check_native_length(object: &DefaultDicomObject) -> std::result::Result<(), String> {
    let Ok(layout) = frame_layout(object) else { return Ok(()) };
    let subsampled =
        object.get(tags::PHOTOMETRIC_INTERPRETATION).and_then(|e| e.to_str().ok()).is_some_and(|p| p.trim_end_matches('\0').trim() == "YBR_FULL_422");
    let frame_len = if subsampled { layout.rows * layout.columns * 2 * layout.bytes_per_sample } else { layout.frame_len() };
    let frames = int(object, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let len = object.get(tags::PIXEL_DATA).and_then(|e| e.value().primitive()).map_or(0, |p| p.calculate_byte_len());
    if len < frame_len * frames {
        return Err(format!("the decoded Pixel Data has {len} bytes, {frames} frames of {frame_len} expected"));
    }
    Ok(())
}

/// The attribute changes of decoding encapsulated pixel data to native: samples interleaved
/// (Planar Configuration 0), the Photometric Interpretation the decoder gives when it changed,
/// and no more offset tables. The streaming path makes the same changes to the header it writes.
pub(crate) fn mark_decoded(object: &mut DefaultDicomObject, samples_per_pixel: u32, photometric: Option<&str>) {
    if samples_per_pixel > 1 {
        object.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
    }
    if let Some(photometric) = photometric {
        object.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric));
    }
    remove_encapsulation_attributes(object);
}

/// Removes what describes fragments that are gone: the Extended Offset Table, its lengths and
/// the Encapsulated Pixel Data Value Total Length.
fn remove_encapsulation_attributes(object: &mut DefaultDicomObject) {
    for tag in [tags::EXTENDED_OFFSET_TABLE, tags::EXTENDED_OFFSET_TABLE_LENGTHS, tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH] {
        object.remove_element(tag);
    }
}

/// One of our own encoders, chosen for a target syntax (the others are dicom-rs's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum OwnEncoder {
    /// RLE Lossless (`rle.rs`).
    Rle,
    /// JPEG Lossless, selection value 1, for both JPEG Lossless syntaxes (`jpeg_lossless.rs`).
    JpegLossless,
    /// JPEG-LS of colour frames, sample-interleaved, with this NEAR (`jpegls.rs`).
    #[cfg(feature = "codecs")]
    JpegLs {
        /// 0 for lossless.
        near: Option<i32>,
        /// The quality asked for, when NEAR depends on Bits Stored.
        quality: Option<u8>,
    },
    /// JPEG 2000 (`j2k.rs`).
    #[cfg(feature = "codecs")]
    J2k(crate::j2k::Mode),
    /// Lossy JPEG of this quality, 8 bits (Baseline) or 12 (Extended) (`jpeg.rs`).
    #[cfg(feature = "codecs")]
    Jpeg {
        /// 1 to 100.
        quality: u8,
    },
}

/// The quality of lossy JPEG when none is asked for.
#[cfg(feature = "codecs")]
const JPEG_QUALITY: u8 = 85;

/// Whether one of our encoders writes `target_ts` for pixel data of `samples_per_pixel` samples.
pub(crate) fn own_encoder(target_ts: &str, samples_per_pixel: u32, quality: Option<u8>) -> Option<OwnEncoder> {
    #[cfg(not(feature = "codecs"))]
    let _ = (samples_per_pixel, quality);
    match target_ts {
        RLE_LOSSLESS => Some(OwnEncoder::Rle),
        syntax::JPEG_LOSSLESS | syntax::JPEG_LOSSLESS_SV1 => Some(OwnEncoder::JpegLossless),
        #[cfg(feature = "codecs")]
        syntax::JPEG_LS_LOSSLESS if samples_per_pixel > 1 => Some(OwnEncoder::JpegLs { near: Some(0), quality: None }),
        #[cfg(feature = "codecs")]
        syntax::JPEG_LS_NEAR_LOSSLESS if samples_per_pixel > 1 => Some(OwnEncoder::JpegLs { near: None, quality }),
        #[cfg(feature = "codecs")]
        syntax::JPEG_2000_LOSSLESS => Some(OwnEncoder::J2k(crate::j2k::Mode::Lossless)),
        #[cfg(feature = "codecs")]
        syntax::JPEG_2000 if quality == Some(100) => Some(OwnEncoder::J2k(crate::j2k::Mode::Lossless)),
        #[cfg(feature = "codecs")]
        syntax::JPEG_2000 => Some(OwnEncoder::J2k(crate::j2k::Mode::Lossy { ratio: crate::j2k::ratio_for_quality(quality) })),
        #[cfg(feature = "codecs")]
        syntax::JPEG_BASELINE | syntax::JPEG_EXTENDED => Some(OwnEncoder::Jpeg { quality: quality.unwrap_or(JPEG_QUALITY).clamp(1, 100) }),
        _ => None,
    }
}

/// Encodes one native frame into one fragment.
pub(crate) type FrameEncoder = Box<dyn Fn(&[u8]) -> std::result::Result<Vec<u8>, String> + Send + Sync>;

/// Our JPEG-LS encoder for unsigned MONOCHROME1 or MONOCHROME2 frames, which [`own_encoder`]
/// leaves to dicom-rs: near-lossless in both paths (dicom-rs would record the compression ratio
/// of the last frame only, and no Lossy Image Compression Method), lossless only when
/// `streaming` (in memory, dicom-rs's encoder writes lossless monochrome JPEG-LS). Signed samples
/// and other photometric interpretations stay with dicom-rs, in memory.
#[cfg_attr(not(feature = "codecs"), allow(unused_variables))]
pub(crate) fn monochrome_jpeg_ls(
    target_ts: &str,
    samples_per_pixel: u32,
    photometric: &str,
    signed: bool,
    quality: Option<u8>,
    streaming: bool,
) -> Option<OwnEncoder> {
    if samples_per_pixel != 1 || signed || !matches!(photometric, "MONOCHROME1" | "MONOCHROME2") {
        return None;
    }
    match target_ts {
        #[cfg(feature = "codecs")]
        syntax::JPEG_LS_NEAR_LOSSLESS => Some(OwnEncoder::JpegLs { near: None, quality }),
        #[cfg(feature = "codecs")]
        syntax::JPEG_LS_LOSSLESS if streaming => Some(OwnEncoder::JpegLs { near: Some(0), quality: None }),
        _ => None,
    }
}

/// One of our encoders made ready for the frames of an object, with the attribute changes its
/// encoding makes.
pub(crate) struct EncoderSetup {
    /// Encodes one native frame.
    pub encode: FrameEncoder,
    /// The Lossy Image Compression Method to record, for a lossy encoding.
    pub lossy_method: Option<&'static str>,
    /// The Photometric Interpretation of the encoded frames, when it changes.
    pub photometric: Option<&'static str>,
    /// The Bits Stored of the encoded frames, when it changes.
    pub bits_stored: Option<u32>,
}

/// Makes `encoder` ready for native frames of `layout`, `photometric`, `bits_stored` and
/// signedness `signed`; an error when the encoder cannot hold such frames. JPEG Lossless takes
/// its sample precision from `samples` (every frame) when given, from each frame otherwise.
pub(crate) fn encoder_setup(
    encoder: OwnEncoder,
    layout: FrameLayout,
    photometric: &str,
    bits_stored: u32,
    signed: bool,
    samples: Option<&[u8]>,
) -> std::result::Result<EncoderSetup, String> {
    let photometric = photometric.to_owned();
    #[cfg_attr(not(feature = "codecs"), allow(unused_mut))]
    let mut lossy_method = None;
    // What the encoding changes in the image pixel module: Photometric Interpretation, Bits Stored.
    #[cfg_attr(not(feature = "codecs"), allow(unused_mut))]
    let mut photometric_out: Option<&'static str> = None;
    #[cfg_attr(not(feature = "codecs"), allow(unused_mut))]
    let mut bits_stored_out: Option<u32> = None;
    let encode: FrameEncoder = match encoder {
        OwnEncoder::Rle => {
            if photometric.starts_with("YBR") && photometric != "YBR_FULL" {
                return Err(format!("RLE Lossless cannot hold {photometric} (subsampled) pixel data"));
            }
            Box::new(move |frame| rle::encode_frame(frame, layout).ok_or_else(|| "more than 15 RLE segments per frame".to_owned()))
        }
        OwnEncoder::JpegLossless => {
            if !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2" | "PALETTE COLOR" | "RGB" | "YBR_FULL") {
                return Err(format!("JPEG Lossless encoding of {photometric} pixel data"));
            }
            let bits_allocated = layout.bytes_per_sample as u32 * 8;
            match samples {
                Some(samples) => {
                    let precision = crate::jpeg_lossless::precision(samples, bits_allocated, bits_stored)?;
                    Box::new(move |samples| crate::jpeg_lossless::encode_frame(&Frame::new(samples, layout, bits_stored, signed), precision))
                }
                None => {
                    // Checked once here so that an impossible Bits Stored fails before any frame.
                    crate::jpeg_lossless::precision(&[], bits_allocated, bits_stored)?;
                    Box::new(move |samples| {
                        // Each frame is a JPEG stream of its own: its precision is its own too.
                        let precision = crate::jpeg_lossless::precision(samples, bits_allocated, bits_stored)?;
                        crate::jpeg_lossless::encode_frame(&Frame::new(samples, layout, bits_stored, signed), precision)
                    })
                }
            }
        }
        #[cfg(feature = "codecs")]
        OwnEncoder::JpegLs { near, quality } => {
            let monochrome = layout.samples_per_pixel == 1 && matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2");
            if photometric != "RGB" && photometric != "YBR_FULL" && !monochrome {
                return Err(format!("JPEG-LS encoding of {photometric} pixel data"));
            }
            let near = near.unwrap_or_else(|| crate::jpegls::near_for_quality(quality, bits_stored));
            if near > 0 {
                lossy_method = Some("ISO_14495_1");
            }
            Box::new(move |samples| crate::jpegls::encode_frame(&Frame::new(samples, layout, bits_stored, signed), near))
        }
        #[cfg(feature = "codecs")]
        OwnEncoder::J2k(mode) => {
            let lossless = mode == crate::j2k::Mode::Lossless;
            match photometric.as_str() {
                "MONOCHROME1" | "MONOCHROME2" | "RGB" | "YBR_FULL" => {}
                "PALETTE COLOR" if lossless => {}
                other => return Err(format!("JPEG 2000 encoding of {other} pixel data{}", if lossless { "" } else { " (lossy)" })),
            }
            if !lossless {
                lossy_method = Some("ISO_15444_1");
            }
            Box::new(move |samples| crate::j2k::encode_frame(&Frame::new(samples, layout, bits_stored, signed), mode))
        }
        #[cfg(feature = "codecs")]
        OwnEncoder::Jpeg { quality } => {
            if !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2" | "RGB" | "YBR_FULL") {
                return Err(format!("lossy JPEG encoding of {photometric} pixel data"));
            }
            let precision = crate::jpeg::lossy_precision(layout.bytes_per_sample as u32 * 8).map_err(|e| e.to_string())?;
            lossy_method = Some("ISO_10918_1");
            bits_stored_out = Some(precision);
            if layout.samples_per_pixel > 1 {
                photometric_out = Some(crate::jpeg::COLOUR_PHOTOMETRIC);
            }
            Box::new(move |samples| {
                crate::jpeg::encode_frame(&Frame::new(samples, layout, bits_stored, signed), &photometric, quality).map_err(|e| e.to_string())
            })
        }
    };
    Ok(EncoderSetup { encode, lossy_method, photometric: photometric_out, bits_stored: bits_stored_out })
}

/// The attribute changes of encoding native frames with `setup`: samples interleaved (Planar
/// Configuration 0), the Photometric Interpretation and Bits Stored the encoder writes, no
/// offset tables of the old pixel data, and for a lossy encoding its `ratio` and method. The
/// streaming path makes the same changes to the header it writes.
pub(crate) fn mark_encoded(object: &mut DefaultDicomObject, samples_per_pixel: usize, setup: &EncoderSetup, ratio: Option<f64>) {
    remove_encapsulation_attributes(object);
    if samples_per_pixel > 1 {
        object.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
    }
    if let Some(photometric) = setup.photometric {
        object.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric));
    }
    if let Some(bits) = setup.bits_stored {
        object.put(DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(bits as u16)));
        object.put(DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(bits as u16 - 1)));
    }
    if let Some(method) = setup.lossy_method {
        // PS3.3 C.7.6.1.1.5: the ratio and method of each lossy step, appended to earlier ones.
        let ratio = format!("{:.4}", ratio.unwrap_or(1.0));
        append_value(object, tags::LOSSY_IMAGE_COMPRESSION_RATIO, VR::DS, &ratio);
        append_value(object, tags::LOSSY_IMAGE_COMPRESSION_METHOD, VR::CS, method);
    }
}

/// The Photometric Interpretation of `object` (empty when absent).
pub(crate) fn photometric(object: &DefaultDicomObject) -> String {
    object.get(tags::PHOTOMETRIC_INTERPRETATION).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches('\0').trim().to_owned()).unwrap_or_default()
}

/// Bits Stored (Bits Allocated when absent) and Pixel Representation 1 of `object`.
pub(crate) fn bits_stored_and_sign(object: &DefaultDicomObject, layout: FrameLayout) -> (u32, bool) {
    (int(object, tags::BITS_STORED).unwrap_or(layout.bytes_per_sample as u32 * 8), int(object, tags::PIXEL_REPRESENTATION) == Some(1))
}

/// Replaces the native Pixel Data of `object` by fragments of `encoder`, one per frame, with a
/// Basic Offset Table when there are several frames.
fn encode_frames(object: &mut DefaultDicomObject, encoder: OwnEncoder) -> std::result::Result<(), String> {
    let layout = frame_layout(object)?;
    let photometric = photometric(object);
    let frames = int(object, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let pixels = object.get(tags::PIXEL_DATA).ok_or("no Pixel Data")?.to_bytes().map_err(|e| e.to_string())?;
    let frame_len = layout.frame_len();
    if frame_len == 0 || pixels.len() < frame_len * frames {
        return Err(format!("Pixel Data has {} bytes, {frames} frames of {frame_len} expected", pixels.len()));
    }
    let (bits_stored, signed) = bits_stored_and_sign(object, layout);
    let setup = encoder_setup(encoder, layout, &photometric, bits_stored, signed, Some(&pixels[..frame_len * frames]))?;
    // Frames are independent: a multi-frame object is encoded on every core.
    let encoded: Vec<Vec<u8>> = {
        use rayon::prelude::*;
        pixels[..frame_len * frames]
            .par_chunks_exact(frame_len)
            .enumerate()
            .map(|(i, frame)| (setup.encode)(frame).map_err(|e| if frames > 1 { format!("frame {}: {e}", i + 1) } else { e }))
            .collect::<std::result::Result<_, _>>()?
    };
    let mut fragments = Vec::with_capacity(frames);
    let mut offsets = Vec::with_capacity(frames);
    let mut offset = 0u32;
    let mut compressed = 0usize;
    for fragment in encoded {
        offsets.push(offset);
        let len = u32::try_from(fragment.len()).map_err(|_| "a fragment over 4 GiB")?;
        offset = offset.checked_add(len).and_then(|o| o.checked_add(8)).ok_or("encapsulated pixel data over 4 GiB")?;
        compressed += fragment.len();
        fragments.push(fragment);
    }
    if frames == 1 {
        offsets.clear();
    }
    object.put(DataElement::new_with_len(tags::PIXEL_DATA, VR::OB, Length::UNDEFINED, PixelFragmentSequence::new(offsets, fragments)));
    let ratio = (frame_len * frames) as f64 / compressed.max(1) as f64;
    mark_encoded(object, layout.samples_per_pixel, &setup, Some(ratio));
    Ok(())
}

/// Adds a value to a multi-valued text attribute (creating it).
fn append_value(object: &mut DefaultDicomObject, tag: dicom_core::Tag, vr: VR, value: &str) {
    let mut values: Vec<String> = object
        .get(tag)
        .and_then(|e| e.to_multi_str().ok())
        .map(|v| v.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    values.push(value.to_owned());
    object.put(DataElement::new(tag, vr, PrimitiveValue::Strs(values.into())));
}

/// An attribute of `object` as an unsigned number.
pub(crate) fn int(object: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    object.get(tag).and_then(|e| e.to_int::<u32>().ok())
}

/// The SOP Instance UID of `object` (empty when absent).
pub(crate) fn sop_instance_uid(object: &DefaultDicomObject) -> String {
    object.get(tags::SOP_INSTANCE_UID).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches('\0').trim().to_owned()).unwrap_or_default()
}

/// A new UID under the `2.25` root (PS3.5 B.2), from a random UUID.
fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}
