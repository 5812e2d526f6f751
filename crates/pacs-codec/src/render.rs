//! Rendering of one frame of a DICOM object to an 8-bit image, JPEG or PNG: what `/rendered`,
//! `/thumbnail`, WADO-URI and `pacs render` show.
//!
//! The frame is decoded from any transfer syntax this build reads ([`crate::can_read`]): native
//! pixel data as it is, RLE Lossless, JPEG, JPEG-LS and JPEG 2000 by our own decoders (only that
//! frame's fragments), what they do not cover by dicom-pixeldata. Then, as PS3.3 C.11 and PS3.4
//! N.2 order it:
//!
//! 1. grayscale (MONOCHROME1, MONOCHROME2; 1, 8, 16 or 32 bits allocated, signed or not): the
//!    Modality LUT (the Modality LUT Sequence's table, else Rescale Slope and Intercept), the VOI
//!    transformation (the window asked for, linear; else, as [`VoiChoice`] says, the object's
//!    first Window Center and Width with its VOI LUT Function, LINEAR, LINEAR_EXACT or SIGMOID,
//!    or one of its VOI LUT Sequence's tables, its output scaled to 8 bits as DCMTK scales it;
//!    else the frame's range), MONOCHROME1 inverted. 1-bit pixels are packed from the least
//!    significant bit, frames one after the other (a frame may start mid-byte); without a
//!    window or a VOI LUT, 0 is black and 1 white (MONOCHROME2);
//! 2. colour: RGB, YBR_FULL and YBR_FULL_422 (to RGB with the PS3.3 C.7.6.3.1.2 equations),
//!    PALETTE COLOR (through the Red, Green and Blue Palette Color Lookup Tables, segmented ones
//!    expanded: discrete, linear and indirect segments, C.7.9.2), either planar configuration;
//!    samples of more than 8 bits are scaled to 8;
//! 3. the viewport: the image fitted within a width and height, keeping its aspect ratio (an
//!    area average when shrinking);
//! 4. [`encode`] as baseline JPEG or 8-bit PNG.
//!
//! A lookup table that contradicts its descriptor (data of another length, no entries, a
//! descriptor without three values or with bits per entry outside 8 to 16, segments that do not
//! expand to its entries) is an [`Error::Invalid`] naming the table. YBR_PARTIAL and the other
//! photometric interpretations are answered [`Error::Unsupported`]; the Presentation LUT Shape
//! and presentation states are not applied.
//!
//! ```no_run
//! use pacs_codec::render::{self, ImageFormat, RenderOptions};
//!
//! let mut input = std::fs::File::open("ct.dcm")?;
//! let options = RenderOptions { window: Some((40.0, 400.0)), viewport: Some((256, 256)), ..RenderOptions::default() };
//! let image = render::render(&mut input, &options)?;
//! std::fs::write("ct.png", render::encode(&image, ImageFormat::Png, 90)?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::decode;
use crate::error::{Error, Result};
use crate::syntax;

mod lut;

/// What [`Error::Unsupported`] names as the target of a rendering.
const RENDERED: &str = "a rendered image";

/// The output image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// `image/jpeg`: baseline, 8 bits.
    Jpeg,
    /// `image/png`: 8 bits, gray or RGB.
    Png,
}

impl ImageFormat {
    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }

    /// The format a file name's extension names (`.png`, `.jpg`, `.jpeg`; any case).
    pub fn from_extension(path: &std::path::Path) -> Option<ImageFormat> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "png" => Some(ImageFormat::Png),
            "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
            _ => None,
        }
    }
}

/// How to render one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// The frame, from 1.
    pub frame: u32,
    /// The VOI window (center, width) in modality units, overriding the object's.
    pub window: Option<(f64, f64)>,
    /// Fit the image within (width, height) pixels, keeping its aspect ratio.
    pub viewport: Option<(u32, u32)>,
    /// Whether the viewport may also enlarge the image (otherwise it only shrinks it, as
    /// DICOMweb thumbnails do).
    pub enlarge: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { frame: 1, window: None, viewport: None, enlarge: false }
    }
}

/// An 8-bit image ready to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel: 1 (gray) or 3 (RGB).
    pub channels: u8,
    /// The pixels, row by row, channels interleaved.
    pub pixels: Vec<u8>,
}

/// A lookup table: a Modality LUT (PS3.3 C.11.1), a VOI LUT (C.11.2) or one of the three
/// Palette Color Lookup Tables (C.7.6.3.1.5, segmented ones expanded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lut {
    /// The first input value mapped (values below map to the first entry, values past the last
    /// entry to the last).
    pub first_mapped: i64,
    /// Bits per entry: 8 to 16.
    pub bits: u16,
    /// The entries, never empty in the tables this module reads.
    pub entries: Vec<u16>,
}

impl Lut {
    /// The entry for input `x`, clamped to the first and the last entry (0 for an empty table).
    pub fn get(&self, x: i64) -> u16 {
        let last = self.entries.len().saturating_sub(1) as i64;
        let at = x.saturating_sub(self.first_mapped).clamp(0, last) as usize;
        self.entries.get(at).copied().unwrap_or(0)
    }

    /// An entry scaled to 8 bits as DCMTK scales a VOI LUT's output: `value * 256 / 2^bits`,
    /// truncated (the high byte of 16-bit entries).
    pub fn to_8_bits(&self, value: u16) -> u8 {
        let bits = u32::from(self.bits.clamp(1, 16));
        ((u32::from(value) << 8) >> bits).min(255) as u8
    }
}

/// One of the three Palette Color Lookup Tables (PS3.3 C.7.6.3.1.5).
pub type PaletteLut = Lut;

/// The VOI LUT Function (0028,1056) applying a window (PS3.3 C.11.2.1.2, C.11.2.1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VoiFunction {
    /// `LINEAR`, the default: C.11.2.1.2.1, the window's ends at center - 0.5 ± (width - 1) / 2.
    #[default]
    Linear,
    /// `LINEAR_EXACT`: C.11.2.1.3.2, the window's ends at center ± width / 2.
    LinearExact,
    /// `SIGMOID`: C.11.2.1.3.1, `255 / (1 + exp(-4 (x - center) / width))`.
    Sigmoid,
}

/// The grayscale transformations of an object that [`FrameDescription`] does not hold (it has
/// the rescale and the first window): the Modality LUT Sequence (0028,3000), the VOI LUT
/// Sequence (0028,3010) and the VOI LUT Function (0028,1056), from the top level of the object,
/// else from the frame's functional groups (see [`grayscale_luts`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GrayscaleLuts {
    /// The Modality LUT, used instead of Rescale Slope and Intercept when present.
    pub modality: Option<Lut>,
    /// The VOI LUTs, in the order of the sequence.
    pub voi: Vec<Lut>,
    /// The function of the object's windows (a window given to the renderer is linear).
    pub function: VoiFunction,
}

/// Which VOI transformation renders a grayscale frame when no window is given to the renderer
/// (a window given always wins).
///
/// DCMTK's `dcm2pnm` applies none unless told (`+Wi n`, the n-th window; `+Wl n`, the n-th VOI
/// LUT); PS3.4 N.2.4 leaves the choice to the application when an object has both. We prefer the
/// window, as DCMTK's viewers do, and render the object's VOI LUTs when asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VoiChoice {
    /// The object's first window (with its VOI LUT Function), else its first VOI LUT, else the
    /// frame's range (0 to 1 for 1-bit pixels).
    #[default]
    Auto,
    /// The n-th VOI LUT (from 1) of the VOI LUT Sequence, even when the object has a window; an
    /// error when there is no such LUT.
    Lut(u32),
}

/// What the header says about the pixels of a decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameDescription {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Bits Allocated.
    pub bits_allocated: u16,
    /// Bits Stored.
    pub bits_stored: u16,
    /// Pixel Representation 1 (two's complement).
    pub signed: bool,
    /// Samples per Pixel.
    pub samples: u16,
    /// Planar Configuration 1 (colour by plane).
    pub planar: bool,
    /// Photometric Interpretation, e.g. `MONOCHROME2`.
    pub photometric: String,
    /// Rescale Slope (1 when absent).
    pub slope: f64,
    /// Rescale Intercept (0 when absent).
    pub intercept: f64,
    /// The first Window Center and Width of the object, if any.
    pub window: Option<(f64, f64)>,
    /// Whether samples of more than 8 bits are big endian (Explicit VR Big Endian, read in
    /// place); decoded frames are little endian.
    pub big_endian: bool,
    /// Red, green and blue lookup tables of PALETTE COLOR.
    pub palette: Option<Box<[PaletteLut; 3]>>,
}

/// Reads a Part 10 object from `input` and renders one frame of it (see the module).
pub fn render(input: &mut dyn Read, options: &RenderOptions) -> Result<Image> {
    render_with(input, options, VoiChoice::Auto)
}

/// [`render`], with the VOI transformation chosen when `options` gives no window.
pub fn render_with(input: &mut dyn Read, options: &RenderOptions, voi: VoiChoice) -> Result<Image> {
    let object = catch_unwind(AssertUnwindSafe(|| OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(input)))
        .map_err(|_| Error::Invalid { reason: "the parser panicked".into() })?
        .map_err(|e| Error::Invalid { reason: e.to_string() })?;
    render_object_with(&object, options, voi)
}

/// Renders one frame of an object already in memory (see the module).
pub fn render_object(object: &DefaultDicomObject, options: &RenderOptions) -> Result<Image> {
    render_object_with(object, options, VoiChoice::Auto)
}

/// [`render_object`], with the VOI transformation chosen when `options` gives no window.
pub fn render_object_with(object: &DefaultDicomObject, options: &RenderOptions, voi: VoiChoice) -> Result<Image> {
    let (description, frame) = decode_frame(object, options.frame)?;
    let luts = if description.photometric.starts_with("MONOCHROME") { grayscale_luts(object, options.frame)? } else { GrayscaleLuts::default() };
    let image = frame_to_image_with(&description, &luts, &frame, options.window, voi)?;
    Ok(match options.viewport {
        Some(viewport) => fit(image, viewport, options.enlarge),
        None => image,
    })
}

/// The number of frames of an object (1 without Number of Frames, 0 without Pixel Data).
pub fn frame_count(object: &DefaultDicomObject) -> u32 {
    if object.get(tags::PIXEL_DATA).is_none() {
        return 0;
    }
    int(object, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1)
}

/// Decodes frame `frame` (from 1) of `object`: its description, and its native samples (little
/// endian unless [`FrameDescription::big_endian`]).
///
/// Compressed pixel data comes back pixel-interleaved, with the description's Photometric
/// Interpretation saying what the decoder left: lossy JPEG colour frames and JPEG 2000 YBR_RCT
/// and YBR_ICT frames as RGB, the others as they were coded. Native 1-bit pixels (Bits
/// Allocated 1) come back packed as stored, eight to a byte from the least significant bit, the
/// frame moved to start at the first bit of its first byte (a frame of a multi-frame object may
/// start mid-byte), the bits past its last pixel zero.
pub fn decode_frame(object: &DefaultDicomObject, frame: u32) -> Result<(FrameDescription, Vec<u8>)> {
    let ts = object.meta().transfer_syntax().trim_end_matches('\0').to_owned();
    let count = frame_count(object);
    if count == 0 {
        return Err(Error::Invalid { reason: format!("{} has no Pixel Data: nothing to render", sop_instance_uid(object)) });
    }
    if frame == 0 || frame > count {
        return Err(Error::Invalid { reason: format!("frame {frame} of {} ({count} frames)", sop_instance_uid(object)) });
    }
    if !syntax::can_read(&ts) {
        return Err(Error::Unsupported { from: ts, to: RENDERED.into(), reason: "the transfer syntax cannot be decoded by this build".into() });
    }
    let mut description = describe(object, frame)?;
    let pixel_error = |reason: String| Error::PixelData { sop_instance_uid: sop_instance_uid(object), from: ts.clone(), to: RENDERED.into(), reason };
    if let Some(plan) = decode::plan(object, &ts).map_err(|e| pixel_error(e.to_string()))? {
        // Our own decoders: this frame's fragments only.
        let fragments = object.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()).ok_or_else(|| pixel_error("Pixel Data is not encapsulated".into()))?;
        let range = plan.frames.get(frame as usize - 1).cloned().ok_or_else(|| pixel_error(format!("no fragments for frame {frame}")))?;
        let mut data = Vec::new();
        let len = plan.pixel.frame_len();
        data.try_reserve_exact(len).map_err(|_| pixel_error(format!("a frame of {len} bytes cannot be allocated")))?;
        data.resize(len, 0);
        let photometric =
            plan.decoder.decode(&decode::frame_data(fragments, range), &plan.pixel, &mut data).map_err(|e| pixel_error(format!("frame {frame}: {e}")))?;
        if let Some(photometric) = photometric {
            description.photometric = photometric.to_owned();
        }
        description.planar = false;
        description.big_endian = false;
        return Ok((description, data));
    }
    let encapsulated = TransferSyntaxRegistry.get(&ts).is_some_and(|t| t.is_encapsulated_pixel_data());
    if !encapsulated {
        // Native pixel data: the frame's bytes as stored.
        let bytes = object.get(tags::PIXEL_DATA).and_then(|e| e.to_bytes().ok()).ok_or_else(|| pixel_error("Pixel Data has no bytes".into()))?;
        if description.bits_allocated == 1 {
            let pixels = description.rows as usize * description.columns as usize * usize::from(description.samples);
            let data = bit_frame(&bytes, pixels, frame).map_err(pixel_error)?;
            return Ok((description, data));
        }
        let frame_len = native_frame_len(&description)?;
        let start = frame_len * (frame as usize - 1);
        let data = bytes
            .get(start..start + frame_len)
            .ok_or_else(|| pixel_error(format!("Pixel Data has {} bytes, frame {frame} ends at {}", bytes.len(), start + frame_len)))?;
        // dicom-object holds OW values read in big endian as numbers, written back little endian:
        // 16-bit words, so that wider samples need their words put in order.
        description.big_endian = false;
        let mut data = data.to_vec();
        if ts == syntax::EXPLICIT_VR_BIG_ENDIAN {
            words_in_sample_order(&mut data, description.bits_allocated);
        }
        return Ok((description, data));
    }
    // What our decoders do not cover, dicom-rs decodes.
    let decoded = catch_unwind(AssertUnwindSafe(|| object.decode_pixel_data_frame(frame - 1).map(|d| d.to_owned())))
        .map_err(|_| pixel_error("the codec panicked (corrupt pixel data?)".into()))?
        .map_err(|e| pixel_error(e.to_string()))?;
    description.photometric = decoded.photometric_interpretation().as_str().to_owned();
    description.planar = decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst;
    description.big_endian = false;
    if let Ok([rescale, ..]) = decoded.rescale() {
        (description.slope, description.intercept) = (rescale.slope, rescale.intercept);
    }
    if let Ok(Some([window, ..])) = decoded.window()
        && window.width >= 1.0
    {
        description.window = Some((window.center, window.width));
    }
    Ok((description, decoded.into_data()))
}

/// Puts the 16-bit words of each sample of `bits_allocated` (32 or 64; others are left alone) in
/// little endian order, in native pixel data read from Explicit VR Big Endian: dicom-object reads
/// an OW value there as 16-bit words, which keeps a wider sample's words in big endian order.
pub(crate) fn words_in_sample_order(bytes: &mut [u8], bits_allocated: u16) {
    let words = match bits_allocated {
        32 => 2,
        64 => 4,
        _ => return,
    };
    for sample in bytes.chunks_exact_mut(words * 2) {
        for i in 0..words / 2 {
            let j = words - 1 - i;
            for k in 0..2 {
                sample.swap(2 * i + k, 2 * j + k);
            }
        }
    }
}

/// Decodes frames `frames` (from 1) of the Part 10 object read from `input`, whole: the native
/// samples of each, as [`decode_frame`] gives them, and as a conversion of the object to Explicit
/// VR Little Endian holds them (1-bit frames each moved to start on a byte, see
/// [`decode_frame`]). For objects whose frames cannot be read alone (native big endian pixel
/// data, 1-bit pixels, encapsulated frames without offsets); [`decode_encoded_frame`] reads less.
pub fn decode_frames(input: &mut dyn Read, frames: &[u32]) -> Result<Vec<Vec<u8>>> {
    let object = catch_unwind(AssertUnwindSafe(|| OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(input)))
        .map_err(|_| Error::Invalid { reason: "the parser panicked".into() })?
        .map_err(|e| Error::Invalid { reason: e.to_string() })?;
    frames.iter().map(|&frame| decode_frame(&object, frame).map(|(_, samples)| samples)).collect()
}

/// Decodes one frame of an object stored in an encapsulated transfer syntax without reading the
/// other frames: `header` is the stored object, of which only the part before Pixel Data is read,
/// and `encoded` the frame's compressed bytes (its fragments concatenated, as WADO-RS `/frames`
/// reads them by the offsets recorded at ingest). Returns the native samples as [`decode_frame`]
/// does (colour JPEG, JPEG-LS and JPEG 2000 frames as RGB, pixel-interleaved), which are the
/// samples of that frame in the object converted to Explicit VR Little Endian.
pub fn decode_encoded_frame(header: &mut dyn Read, encoded: Vec<u8>) -> Result<Vec<u8>> {
    use dicom_core::value::PixelFragmentSequence;
    use dicom_core::{DataElement, Length, VR};
    let mut object =
        catch_unwind(AssertUnwindSafe(|| OpenFileOptions::new().read_preamble(ReadPreamble::Auto).read_until(tags::PIXEL_DATA).from_reader(header)))
            .map_err(|_| Error::Invalid { reason: "the parser panicked".into() })?
            .map_err(|e| Error::Invalid { reason: e.to_string() })?;
    let ts = object.meta().transfer_syntax().trim_end_matches('\0').to_owned();
    if !TransferSyntaxRegistry.get(&ts).is_some_and(|t| t.is_encapsulated_pixel_data()) && ts != crate::syntax::RLE_LOSSLESS {
        return Err(Error::Invalid { reason: format!("{} is not encapsulated ({ts}): its frames are not decoded alone", sop_instance_uid(&object)) });
    }
    object.put(DataElement::new_with_len(tags::PIXEL_DATA, VR::OB, Length::UNDEFINED, PixelFragmentSequence::new(Vec::<u32>::new(), vec![encoded])));
    object.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, "1"));
    decode_frame(&object, 1).map(|(_, samples)| samples)
}

/// The attributes of `object` that rendering frame `frame` (from 1) needs: rescale and window
/// from the top level, else from the frame's Per-frame Functional Groups, else from the Shared
/// Functional Groups (enhanced multi-frame objects).
fn describe(object: &DefaultDicomObject, frame: u32) -> Result<FrameDescription> {
    let missing = |name: &str| Error::Invalid { reason: format!("{} has no {name}: nothing to render", sop_instance_uid(object)) };
    let rows = int(object, tags::ROWS).ok_or_else(|| missing("Rows"))?;
    let columns = int(object, tags::COLUMNS).ok_or_else(|| missing("Columns"))?;
    let bits_allocated = int(object, tags::BITS_ALLOCATED).ok_or_else(|| missing("Bits Allocated"))? as u16;
    let bits_stored = int(object, tags::BITS_STORED).map_or(bits_allocated, |b| b as u16).clamp(1, bits_allocated.max(1));
    let photometric = text(object, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
    let value = |sequence: Tag, tag: Tag| decimal(object, tag).or_else(|| functional_group_value(object, frame, sequence, tag));
    // A linear window is at least 1 wide (PS3.3 C.11.2.1.2.1); the other functions' more than 0.
    let min_width = if voi_function(object, frame) == VoiFunction::Linear { 1.0 } else { f64::MIN_POSITIVE };
    let window = match (value(tags::FRAME_VOILUT_SEQUENCE, tags::WINDOW_CENTER), value(tags::FRAME_VOILUT_SEQUENCE, tags::WINDOW_WIDTH)) {
        (Some(c), Some(w)) if w >= min_width => Some((c, w)),
        _ => None,
    };
    let palette = if photometric == "PALETTE COLOR" { Some(Box::new(palette(object)?)) } else { None };
    Ok(FrameDescription {
        rows,
        columns,
        bits_allocated,
        bits_stored,
        signed: int(object, tags::PIXEL_REPRESENTATION) == Some(1),
        samples: int(object, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
        planar: int(object, tags::PLANAR_CONFIGURATION) == Some(1),
        photometric,
        slope: value(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tags::RESCALE_SLOPE).unwrap_or(1.0),
        intercept: value(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
        window,
        big_endian: false,
        palette,
    })
}

/// The three Palette Color Lookup Tables of `object`: each the Palette Color Lookup Table Data,
/// else the Segmented Palette Color Lookup Table Data expanded (PS3.3 C.7.9.2).
fn palette(object: &DefaultDicomObject) -> Result<[PaletteLut; 3]> {
    // A first mapped value is US, or SS when the pixels are signed.
    let signed = int(object, tags::PIXEL_REPRESENTATION) == Some(1);
    let one = |descriptor: Tag, data: Tag, segmented: Tag, colour: &str| -> Result<PaletteLut> {
        let invalid = |reason: String| Error::Invalid { reason: format!("{}: the {colour} Palette Color Lookup Table: {reason}", sop_instance_uid(object)) };
        let descriptor = lut::descriptor(object, descriptor).map_err(invalid)?;
        let entries = match (lut::data(object, data), lut::data(object, segmented)) {
            (Some(bytes), _) => lut::entries(&bytes, &descriptor),
            (None, Some(bytes)) => lut::expand_segmented(&bytes, descriptor.bits, descriptor.entries).map_err(|e| format!("segmented data: {e}")),
            (None, None) => Err("no Palette Color Lookup Table Data, segmented or not".into()),
        }
        .map_err(invalid)?;
        Ok(PaletteLut { first_mapped: descriptor.first_mapped(signed), bits: descriptor.bits, entries })
    };
    Ok([
        one(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "Red",
        )?,
        one(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "Green",
        )?,
        one(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "Blue",
        )?,
    ])
}

/// The Modality LUT, VOI LUTs and VOI LUT Function that render frame `frame` (from 1) of a
/// grayscale `object`: from its top level, else from the frame's Per-frame Functional Groups
/// (the Pixel Value Transformation and Frame VOI LUT Sequences), else from the Shared Functional
/// Groups. A malformed table is an [`Error::Invalid`] naming it.
///
/// A Modality LUT's first value mapped is signed when the pixels are (Pixel Representation 1);
/// a VOI LUT's when the values it maps can be negative: no Modality LUT, and the rescaled range of
/// the stored values reaching below 0.
pub fn grayscale_luts(object: &DefaultDicomObject, frame: u32) -> Result<GrayscaleLuts> {
    let d = describe(object, frame)?;
    let invalid = |what: String, reason: String| Error::Invalid { reason: format!("{}: {what}: {reason}", sop_instance_uid(object)) };
    let items = |group: Tag, sequence: Tag| -> &[dicom_object::InMemDicomObject] {
        holder(object, frame, group, sequence).and_then(|o| o.get(sequence)).and_then(|e| e.items()).unwrap_or(&[])
    };
    let modality = match items(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tags::MODALITY_LUT_SEQUENCE) {
        [] => None,
        [item, ..] => Some(lut::read(item, d.signed).map_err(|e| invalid("the Modality LUT Sequence".into(), e))?),
    };
    let voi_signed = modality.is_none() && {
        let stored = u32::from(d.bits_stored.clamp(1, 32));
        let (lo, hi) = if d.signed { (-(2f64.powi(stored as i32 - 1)), 2f64.powi(stored as i32 - 1) - 1.0) } else { (0.0, 2f64.powi(stored as i32) - 1.0) };
        f64::min(lo * d.slope + d.intercept, hi * d.slope + d.intercept) < 0.0
    };
    let voi = items(tags::FRAME_VOILUT_SEQUENCE, tags::VOILUT_SEQUENCE)
        .iter()
        .enumerate()
        .map(|(i, item)| lut::read(item, voi_signed).map_err(|e| invalid(format!("item {} of the VOI LUT Sequence", i + 1), e)))
        .collect::<Result<Vec<_>>>()?;
    Ok(GrayscaleLuts { modality, voi, function: voi_function(object, frame) })
}

/// The VOI LUT Function of frame `frame`: `LINEAR` when absent or not known (as DCMTK does).
fn voi_function(object: &DefaultDicomObject, frame: u32) -> VoiFunction {
    let text = holder(object, frame, tags::FRAME_VOILUT_SEQUENCE, tags::VOILUT_FUNCTION)
        .and_then(|o| o.get(tags::VOILUT_FUNCTION))
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches('\0').trim().to_ascii_uppercase());
    match text.as_deref() {
        Some("SIGMOID") => VoiFunction::Sigmoid,
        Some("LINEAR_EXACT") => VoiFunction::LinearExact,
        _ => VoiFunction::Linear,
    }
}

/// Where `tag` of frame `frame` is: the top level of `object`, else the first item of `group` in
/// the frame's Per-frame Functional Groups item, else in the Shared Functional Groups item.
fn holder(object: &DefaultDicomObject, frame: u32, group: Tag, tag: Tag) -> Option<&dicom_object::InMemDicomObject> {
    if object.get(tag).is_some() {
        return Some(&**object);
    }
    let per_frame = object.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items()).and_then(|items| items.get(frame as usize - 1));
    let shared = object.get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items()).and_then(|items| items.first());
    per_frame.and_then(|groups| group_item(groups, group, tag)).or_else(|| shared.and_then(|groups| group_item(groups, group, tag)))
}

/// The first item of `group` in a functional groups item, if it holds `tag`.
fn group_item(groups: &dicom_object::InMemDicomObject, group: Tag, tag: Tag) -> Option<&dicom_object::InMemDicomObject> {
    groups.get(group)?.items()?.first().filter(|item| item.get(tag).is_some())
}

/// The bits of frame `frame` (from 1) of `pixels` 1-bit samples in native `bytes` (frames follow
/// each other without padding, PS3.5 8.1.1), moved to start at the first bit of the first byte.
fn bit_frame(bytes: &[u8], pixels: usize, frame: u32) -> std::result::Result<Vec<u8>, String> {
    let start = pixels.checked_mul(frame as usize - 1).ok_or("the frame is out of range")?;
    let end = start.checked_add(pixels).ok_or("the frame is out of range")?;
    if bytes.len().saturating_mul(8) < end {
        return Err(format!("Pixel Data has {} bytes, frame {frame} ends at bit {end}", bytes.len()));
    }
    let (first, shift) = (start / 8, start % 8);
    let mut out: Vec<u8> = (0..pixels.div_ceil(8))
        .map(|k| {
            let low = bytes.get(first + k).map_or(0, |b| b >> shift);
            let high = if shift == 0 { 0 } else { bytes.get(first + k + 1).map_or(0, |b| b << (8 - shift)) };
            low | high
        })
        .collect();
    if let Some(last) = out.last_mut()
        && !pixels.is_multiple_of(8)
    {
        *last &= (1u8 << (pixels % 8)) - 1;
    }
    Ok(out)
}

/// The bytes of one native frame.
fn native_frame_len(d: &FrameDescription) -> Result<usize> {
    let pixels = d.rows as usize * d.columns as usize;
    if d.bits_allocated == 0 || !d.bits_allocated.is_multiple_of(8) {
        return Err(unsupported_pixels(d));
    }
    let bytes = usize::from(d.bits_allocated / 8);
    Ok(if d.photometric == "YBR_FULL_422" { pixels * 2 * bytes } else { pixels * usize::from(d.samples) * bytes })
}

fn unsupported_pixels(d: &FrameDescription) -> Error {
    Error::Unsupported {
        from: d.photometric.clone(),
        to: RENDERED.into(),
        reason: format!("{} samples per pixel of {} bits allocated are not supported", d.samples, d.bits_allocated),
    }
}

/// The VOI transformation of one grayscale frame.
#[derive(Clone, Copy, Debug)]
enum Voi<'a> {
    /// A window (center, width) and its function.
    Window(f64, f64, VoiFunction),
    /// A VOI LUT.
    Lut(&'a Lut),
}

/// The VOI function `function` of the window (`center`, `width`) at `x`, to 0..=255 (PS3.3
/// C.11.2.1.2 and C.11.2.1.3, rounded).
pub fn voi_value(x: f64, center: f64, width: f64, function: VoiFunction) -> u8 {
    match function {
        VoiFunction::Linear => window_value(x, center, width),
        VoiFunction::LinearExact => {
            if x <= center - width / 2.0 {
                0
            } else if x > center + width / 2.0 {
                255
            } else {
                (((x - center) / width + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8
            }
        }
        VoiFunction::Sigmoid => (255.0 / (1.0 + (-4.0 * (x - center) / width).exp())).round().clamp(0.0, 255.0) as u8,
    }
}

/// The linear VOI function of PS3.3 C.11.2.1.2.1, to 0..=255.
pub fn window_value(x: f64, center: f64, width: f64) -> u8 {
    let lo = center - 0.5 - (width - 1.0) / 2.0;
    let hi = center - 0.5 + (width - 1.0) / 2.0;
    if x <= lo {
        0
    } else if x > hi || width <= 1.0 {
        255
    } else {
        (((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8
    }
}

/// Reads sample `i` of a frame of `bytes_per`-byte samples as an integer, masked to `stored` bits
/// and sign-extended when `signed`.
fn sample(frame: &[u8], i: usize, bytes_per: usize, big_endian: bool, stored: u32, signed: bool) -> i64 {
    let c = &frame[i * bytes_per..(i + 1) * bytes_per];
    let raw: u64 = match (bytes_per, big_endian) {
        (1, _) => u64::from(c[0]),
        (2, false) => u64::from(u16::from_le_bytes([c[0], c[1]])),
        (2, true) => u64::from(u16::from_be_bytes([c[0], c[1]])),
        (_, false) => u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        (_, true) => u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
    };
    let mask: u64 = if stored >= 32 { u64::from(u32::MAX) } else { (1u64 << stored) - 1 };
    let raw = raw & mask;
    if signed && stored > 0 && raw & (1 << (stored - 1)) != 0 { raw as i64 - (1i64 << stored) } else { raw as i64 }
}

/// Turns one decoded frame into an 8-bit image (grayscale through the Modality LUT and the VOI
/// window `window`, else the description's, else the frame's range; colour to RGB).
///
/// This is [`frame_to_image_with`] without the object's lookup tables: what the description
/// holds (rescale, first window) renders the frame.
pub fn frame_to_image(d: &FrameDescription, frame: &[u8], window: Option<(f64, f64)>) -> Result<Image> {
    frame_to_image_with(d, &GrayscaleLuts::default(), frame, window, VoiChoice::Auto)
}

/// Turns one decoded frame into an 8-bit image. Grayscale goes through the Modality LUT (`luts`'
/// table, else the description's rescale), then the VOI transformation: `window` when given
/// (linear), else as `voi` chooses among the description's window (with `luts`' function) and
/// `luts`' VOI LUTs (their output scaled to 8 bits as DCMTK does), then MONOCHROME1 is inverted.
/// Colour goes to RGB.
pub fn frame_to_image_with(d: &FrameDescription, luts: &GrayscaleLuts, frame: &[u8], window: Option<(f64, f64)>, voi: VoiChoice) -> Result<Image> {
    let count = d.rows as usize * d.columns as usize;
    if d.bits_allocated == 1 {
        // 1-bit pixels, packed from the least significant bit: one byte each, then as 8 bits.
        let samples = count * usize::from(d.samples);
        if frame.len() < samples.div_ceil(8) {
            return Err(Error::Invalid {
                reason: format!("the frame has {} bytes, {} expected for {samples} 1-bit samples", frame.len(), samples.div_ceil(8)),
            });
        }
        let unpacked: Vec<u8> = (0..samples).map(|i| (frame[i / 8] >> (i % 8)) & 1).collect();
        let d = FrameDescription { bits_allocated: 8, bits_stored: 1, signed: false, big_endian: false, ..d.clone() };
        return frame_to_image_with(&d, luts, &unpacked, window, voi);
    }
    let bytes_per = match d.bits_allocated {
        8 => 1,
        16 => 2,
        32 => 4,
        _ => return Err(unsupported_pixels(d)),
    };
    let short = |expected: usize| Error::Invalid { reason: format!("the frame has {} bytes, {expected} expected", frame.len()) };
    let stored = u32::from(d.bits_stored.min(32));
    match (d.photometric.as_str(), d.samples) {
        ("MONOCHROME1" | "MONOCHROME2", 1) => {
            if frame.len() < count * bytes_per {
                return Err(short(count * bytes_per));
            }
            let modality = |raw: i64| match &luts.modality {
                Some(lut) => f64::from(lut.get(raw)),
                None => raw as f64 * d.slope + d.intercept,
            };
            let values: Vec<f64> = (0..count).map(|i| modality(sample(frame, i, bytes_per, d.big_endian, stored, d.signed))).collect();
            let voi = match (window, voi) {
                (Some((center, width)), _) => Voi::Window(center, width, VoiFunction::Linear),
                (None, VoiChoice::Lut(n)) => {
                    let lut = luts.voi.get((n as usize).wrapping_sub(1)).ok_or_else(|| Error::Invalid {
                        reason: format!("VOI LUT {n} asked for; the object has {} in its VOI LUT Sequence", luts.voi.len()),
                    })?;
                    Voi::Lut(lut)
                }
                (None, VoiChoice::Auto) => match (d.window, luts.voi.first()) {
                    (Some((center, width)), _) => Voi::Window(center, width, luts.function),
                    (None, Some(lut)) => Voi::Lut(lut),
                    (None, None) => {
                        // The frame's range; 1-bit pixels the range of their two values.
                        let (lo, hi) = if d.bits_stored == 1 {
                            let (a, b) = (modality(0), modality(1));
                            (a.min(b), a.max(b))
                        } else {
                            values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
                        };
                        let (center, width) = if values.is_empty() { (0.0, 1.0) } else { ((lo + hi + 1.0) / 2.0, (hi - lo + 1.0).max(1.0)) };
                        Voi::Window(center, width, VoiFunction::Linear)
                    }
                },
            };
            let invert = d.photometric == "MONOCHROME1";
            let pixels = values
                .iter()
                .map(|v| {
                    let g = match voi {
                        Voi::Window(center, width, function) => voi_value(*v, center, width, function),
                        Voi::Lut(lut) => lut.to_8_bits(lut.get(v.round() as i64)),
                    };
                    if invert { 255 - g } else { g }
                })
                .collect();
            Ok(Image { width: d.columns, height: d.rows, channels: 1, pixels })
        }
        ("PALETTE COLOR", 1) => {
            let Some(luts) = &d.palette else {
                return Err(Error::Invalid { reason: "PALETTE COLOR without lookup tables".into() });
            };
            if frame.len() < count * bytes_per {
                return Err(short(count * bytes_per));
            }
            let mut pixels = Vec::with_capacity(count * 3);
            for i in 0..count {
                let index = sample(frame, i, bytes_per, d.big_endian, stored, d.signed);
                for lut in luts.iter() {
                    pixels.push(lut.to_8_bits(lut.get(index)));
                }
            }
            Ok(Image { width: d.columns, height: d.rows, channels: 3, pixels })
        }
        ("RGB" | "YBR_FULL" | "YBR_FULL_422", 3) => {
            let subsampled = d.photometric == "YBR_FULL_422";
            let expected = if subsampled { count * 2 * bytes_per } else { count * 3 * bytes_per };
            if frame.len() < expected {
                return Err(short(expected));
            }
            // Samples of more than 8 bits are scaled to 8.
            let max = if stored >= 32 { f64::from(u32::MAX) } else { ((1u64 << stored) - 1) as f64 };
            let to8 = |i: usize| -> f64 {
                let v = sample(frame, i, bytes_per, d.big_endian, stored, false) as f64;
                if stored == 8 { v } else { v * 255.0 / max }
            };
            let mut pixels = Vec::with_capacity(count * 3);
            let columns = d.columns as usize;
            for i in 0..count {
                let (a, b, c) = if subsampled {
                    // Two pixels of a row share Cb and Cr: Y0 Y1 Cb Cr (PS3.3 C.7.6.3.1.2).
                    let (row, col) = (i / columns, i % columns);
                    let pair = (row * columns.div_ceil(2) + col / 2) * 4;
                    (to8(pair + (col % 2)), to8(pair + 2), to8(pair + 3))
                } else if d.planar {
                    (to8(i), to8(count + i), to8(2 * count + i))
                } else {
                    (to8(3 * i), to8(3 * i + 1), to8(3 * i + 2))
                };
                let clamp = |v: f64| v.round().clamp(0.0, 255.0) as u8;
                if d.photometric == "RGB" {
                    pixels.extend_from_slice(&[clamp(a), clamp(b), clamp(c)]);
                } else {
                    let (y, cb, cr) = (a, b - 128.0, c - 128.0);
                    pixels.extend_from_slice(&[clamp(y + 1.402 * cr), clamp(y - 0.344_136 * cb - 0.714_136 * cr), clamp(y + 1.772 * cb)]);
                }
            }
            Ok(Image { width: d.columns, height: d.rows, channels: 3, pixels })
        }
        (other, samples) => Err(Error::Unsupported {
            from: other.to_owned(),
            to: RENDERED.into(),
            reason: format!("{other} with {samples} samples per pixel is not supported"),
        }),
    }
}

/// Fits an image within `(width, height)` keeping its aspect ratio: shrunk by averaging the
/// source pixels each output pixel covers; enlarged (nearest neighbour) only when `enlarge`.
pub fn fit(image: Image, (max_w, max_h): (u32, u32), enlarge: bool) -> Image {
    if image.width == 0 || image.height == 0 || max_w == 0 || max_h == 0 {
        return image;
    }
    let fits = image.width <= max_w && image.height <= max_h;
    if fits && !enlarge {
        return image;
    }
    let scale = f64::min(f64::from(max_w) / f64::from(image.width), f64::from(max_h) / f64::from(image.height));
    let w = ((f64::from(image.width) * scale).round() as u32).clamp(1, max_w);
    let h = ((f64::from(image.height) * scale).round() as u32).clamp(1, max_h);
    if (w, h) == (image.width, image.height) {
        return image;
    }
    let ch = usize::from(image.channels);
    let (sw, sh) = (image.width as usize, image.height as usize);
    let mut pixels = Vec::with_capacity(w as usize * h as usize * ch);
    let span = |i: u32, out: u32, len: usize| -> (usize, usize) {
        let start = (u64::from(i) * len as u64 / u64::from(out)) as usize;
        let end = ((u64::from(i) + 1) * len as u64 / u64::from(out)) as usize;
        (start.min(len - 1), end.clamp(start + 1, len))
    };
    for y in 0..h {
        let (y0, y1) = span(y, h, sh);
        for x in 0..w {
            let (x0, x1) = span(x, w, sw);
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            for c in 0..ch {
                let mut sum = 0u64;
                for sy in y0..y1 {
                    let row = sy * sw;
                    for sx in x0..x1 {
                        sum += u64::from(image.pixels[(row + sx) * ch + c]);
                    }
                }
                pixels.push(((sum + n / 2) / n) as u8);
            }
        }
    }
    Image { width: w, height: h, channels: image.channels, pixels }
}

/// Encodes an image as JPEG (quality 1 to 100) or PNG.
pub fn encode(image: &Image, format: ImageFormat, quality: u8) -> Result<Vec<u8>> {
    let failed = |e: String| Error::Write { source: std::io::Error::other(e) };
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            let (Ok(w), Ok(h)) = (u16::try_from(image.width), u16::try_from(image.height)) else {
                return Err(Error::Unsupported {
                    from: format!("{}x{}", image.width, image.height),
                    to: "image/jpeg".into(),
                    reason: "JPEG output is limited to 65535 pixels a side; ask for a viewport".into(),
                });
            };
            let color = if image.channels == 3 { jpeg_encoder::ColorType::Rgb } else { jpeg_encoder::ColorType::Luma };
            jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100)).encode(&image.pixels, w, h, color).map_err(|e| failed(e.to_string()))?;
        }
        ImageFormat::Png => {
            let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
            encoder.set_color(if image.channels == 3 { png::ColorType::Rgb } else { png::ColorType::Grayscale });
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| failed(e.to_string()))?;
            writer.write_image_data(&image.pixels).map_err(|e| failed(e.to_string()))?;
            writer.finish().map_err(|e| failed(e.to_string()))?;
        }
    }
    Ok(out)
}

fn int(object: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    object.get(tag).and_then(|e| e.to_int::<u32>().ok())
}

fn decimal(object: &DefaultDicomObject, tag: Tag) -> Option<f64> {
    object.get(tag).and_then(|e| e.to_multi_float64().ok()).and_then(|v| v.first().copied()).filter(|v| v.is_finite())
}

/// The first value of `tag` in the first item of `sequence` in the Per-frame Functional Groups
/// item of `frame` (from 1), else in the Shared Functional Groups item.
fn functional_group_value(object: &DefaultDicomObject, frame: u32, sequence: Tag, tag: Tag) -> Option<f64> {
    let in_group = |group: &dicom_object::InMemDicomObject| {
        group.get(sequence)?.items()?.first()?.get(tag)?.to_multi_float64().ok()?.first().copied().filter(|v| v.is_finite())
    };
    let per_frame = object.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items()).and_then(|items| items.get(frame as usize - 1));
    let shared = object.get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items()).and_then(|items| items.first());
    per_frame.and_then(in_group).or_else(|| shared.and_then(in_group))
}

fn text(object: &DefaultDicomObject, tag: Tag) -> Option<String> {
    object.get(tag).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches('\0').trim().to_owned()).filter(|s| !s.is_empty())
}

fn sop_instance_uid(object: &DefaultDicomObject) -> String {
    text(object, tags::SOP_INSTANCE_UID).unwrap_or_else(|| "the object".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_big_endian_samples_get_their_words_in_order() {
        // 0x00130EE8 read from big endian as the words 0x0013, 0x0EE8, written little endian.
        let mut bytes = vec![0x13, 0x00, 0xE8, 0x0E, 0x01, 0x00, 0x02, 0x00];
        words_in_sample_order(&mut bytes, 32);
        assert_eq!(bytes, 0x0013_0EE8u32.to_le_bytes().into_iter().chain(0x0001_0002u32.to_le_bytes()).collect::<Vec<u8>>());
        let mut wide = 0x0102_0304_0506_0708u64.to_be_bytes().chunks(2).flat_map(|w| [w[1], w[0]]).collect::<Vec<u8>>();
        words_in_sample_order(&mut wide, 64);
        assert_eq!(wide, 0x0102_0304_0506_0708u64.to_le_bytes());
        let mut narrow = vec![1, 2, 3, 4];
        words_in_sample_order(&mut narrow, 16);
        assert_eq!(narrow, [1, 2, 3, 4]);
    }

    fn gray(photometric: &str, bits: u16, stored: u16, signed: bool, window: Option<(f64, f64)>) -> FrameDescription {
        FrameDescription {
            rows: 1,
            columns: 2,
            bits_allocated: bits,
            bits_stored: stored,
            signed,
            samples: 1,
            planar: false,
            photometric: photometric.into(),
            slope: 1.0,
            intercept: 0.0,
            window,
            big_endian: false,
            palette: None,
        }
    }

    #[test]
    fn linear_window() {
        assert_eq!(window_value(-1000.0, 40.0, 400.0), 0);
        assert_eq!(window_value(1000.0, 40.0, 400.0), 255);
        assert_eq!(window_value(40.0, 40.0, 400.0), 128);
    }

    #[test]
    fn monochrome1_is_inverted_and_signed_values_extended() {
        let d = gray("MONOCHROME1", 16, 12, true, Some((0.0, 100.0)));
        // 0xFFF is -1 in 12 bits; 0x032 is 50.
        let image = frame_to_image(&d, &[0xFF, 0x0F, 0x32, 0x00], None).expect("render");
        assert_eq!(image.pixels, vec![255 - window_value(-1.0, 0.0, 100.0), 0]);
    }

    #[test]
    fn rescale_comes_before_the_window() {
        let d = FrameDescription { slope: 2.0, intercept: -100.0, ..gray("MONOCHROME2", 8, 8, false, None) };
        let image = frame_to_image(&d, &[50, 100], Some((0.0, 200.0))).expect("render");
        assert_eq!(image.pixels, vec![window_value(0.0, 0.0, 200.0), window_value(100.0, 0.0, 200.0)]);
    }

    #[test]
    fn palette_and_ybr_full_422() {
        let lut = |scale: u16| PaletteLut { first_mapped: 10, bits: 16, entries: (0..4).map(|i| i * scale * 256).collect() };
        let d = FrameDescription { palette: Some(Box::new([lut(1), lut(2), lut(3)])), ..gray("PALETTE COLOR", 8, 8, false, None) };
        let image = frame_to_image(&d, &[9, 12], None).expect("render");
        assert_eq!(image.pixels, vec![0, 0, 0, 2, 4, 6]);
        // Y0 Y1 Cb Cr, gray: both pixels keep their own luminance.
        let d = FrameDescription { samples: 3, ..gray("YBR_FULL_422", 8, 8, false, None) };
        let image = frame_to_image(&d, &[10, 200, 128, 128], None).expect("render");
        assert_eq!(image.pixels, vec![10, 10, 10, 200, 200, 200]);
    }

    #[test]
    fn voi_functions() {
        let check = |x: f64, function: VoiFunction, expected: u8| assert_eq!(voi_value(x, 40.0, 400.0, function), expected, "{function:?} at {x}");
        check(-160.0, VoiFunction::LinearExact, 0);
        check(-159.0, VoiFunction::LinearExact, 1);
        check(40.0, VoiFunction::LinearExact, 128);
        check(240.0, VoiFunction::LinearExact, 255);
        check(40.0, VoiFunction::Sigmoid, 128);
        check(140.0, VoiFunction::Sigmoid, (255.0 / (1.0 + (-1.0f64).exp())).round() as u8);
        check(-1000.0, VoiFunction::Sigmoid, 0);
        check(40.0, VoiFunction::Linear, window_value(40.0, 40.0, 400.0));
    }

    #[test]
    fn luts_clamp_and_scale_to_8_bits() {
        let lut = Lut { first_mapped: -2, bits: 16, entries: vec![100, 0x1234, 0xFFFF] };
        assert_eq!([-100, -2, -1, 0, 100].map(|x| lut.get(x)), [100, 100, 0x1234, 0xFFFF, 0xFFFF]);
        assert_eq!(lut.to_8_bits(0x1234), 0x12);
        assert_eq!(Lut { bits: 12, ..lut.clone() }.to_8_bits(0xFFF), 0xFF);
        assert_eq!(Lut { bits: 8, ..lut.clone() }.to_8_bits(0x80), 0x80);
        assert_eq!(Lut { entries: Vec::new(), ..lut }.get(5), 0, "an empty table does not panic");
    }

    #[test]
    fn modality_and_voi_luts() {
        let d = gray("MONOCHROME2", 8, 8, false, Some((40.0, 400.0)));
        let modality = Lut { first_mapped: 0, bits: 16, entries: vec![1000, 2000] };
        let voi = |first: i64| Lut { first_mapped: first, bits: 8, entries: vec![10, 20, 30] };
        let luts = GrayscaleLuts { modality: Some(modality), voi: vec![voi(1000), voi(1999)], function: VoiFunction::Sigmoid };
        // The Modality LUT replaces the rescale; the window (and its function) comes first.
        let image = frame_to_image_with(&d, &luts, &[0, 7], None, VoiChoice::Auto).expect("render");
        assert_eq!(image.pixels, vec![voi_value(1000.0, 40.0, 400.0, VoiFunction::Sigmoid), voi_value(2000.0, 40.0, 400.0, VoiFunction::Sigmoid)]);
        // The VOI LUT asked for; the first one without a window.
        let image = frame_to_image_with(&d, &luts, &[0, 7], None, VoiChoice::Lut(2)).expect("render");
        assert_eq!(image.pixels, vec![10, 20]);
        let no_window = FrameDescription { window: None, ..d.clone() };
        assert_eq!(frame_to_image_with(&no_window, &luts, &[0, 7], None, VoiChoice::Auto).expect("render").pixels, vec![10, 30]);
        // A window given wins, linear.
        let image = frame_to_image_with(&d, &luts, &[0, 7], Some((1500.0, 1000.0)), VoiChoice::Lut(2)).expect("render");
        assert_eq!(image.pixels, vec![window_value(1000.0, 1500.0, 1000.0), window_value(2000.0, 1500.0, 1000.0)]);
        let error = frame_to_image_with(&d, &luts, &[0, 7], None, VoiChoice::Lut(3)).expect_err("no third LUT");
        assert!(error.to_string().contains("VOI LUT 3 asked for; the object has 2"), "{error}");
    }

    #[test]
    fn one_bit_frames() {
        // Frames of 5 pixels: the second starts at bit 5 of the first byte.
        let bytes = [0b1010_0110, 0b0000_0011];
        assert_eq!(bit_frame(&bytes, 5, 1), Ok(vec![0b0_0110]));
        assert_eq!(bit_frame(&bytes, 5, 2), Ok(vec![0b1_1101]));
        assert_eq!(bit_frame(&bytes, 5, 3), Ok(vec![0]), "bits 10 to 14, in the second byte");
        assert!(bit_frame(&bytes, 5, 4).expect_err("past the end").contains("frame 4 ends at bit 20"));
        assert_eq!(bit_frame(&bytes, 16, 1), Ok(bytes.to_vec()));
        let d = FrameDescription { rows: 1, columns: 5, ..gray("MONOCHROME2", 1, 1, false, None) };
        assert_eq!(frame_to_image(&d, &[0b0_0110], None).expect("render").pixels, vec![0, 255, 255, 0, 0]);
        let d = FrameDescription { photometric: "MONOCHROME1".into(), ..d };
        assert_eq!(frame_to_image(&d, &[0b1_1111], None).expect("render").pixels, vec![0; 5], "all ones, black");
        assert!(frame_to_image(&d, &[], None).is_err());
    }

    #[test]
    fn fit_keeps_the_aspect_ratio_and_averages() {
        let image = Image { width: 400, height: 200, channels: 1, pixels: vec![7; 400 * 200] };
        let small = fit(image.clone(), (128, 128), false);
        assert_eq!((small.width, small.height), (128, 64));
        assert!(small.pixels.iter().all(|p| *p == 7));
        assert_eq!(fit(image.clone(), (800, 800), false), image);
        let large = fit(image, (800, 800), true);
        assert_eq!((large.width, large.height), (800, 400));
        let checker = Image { width: 2, height: 2, channels: 1, pixels: vec![0, 255, 255, 0] };
        assert_eq!(fit(checker, (1, 1), false).pixels, vec![128]);
    }

    #[test]
    fn formats_from_extensions() {
        assert_eq!(ImageFormat::from_extension("a/b.PNG".as_ref()), Some(ImageFormat::Png));
        assert_eq!(ImageFormat::from_extension("b.jpeg".as_ref()), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::from_extension("b.gif".as_ref()), None);
    }
}
