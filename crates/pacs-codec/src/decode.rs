//! Our decoding of encapsulated pixel data, frame by frame, shared by transcoding and rendering.
//!
//! Each frame's compressed bytes (one fragment, or several) go to one of our decoders: RLE
//! Lossless (`rle.rs`, any whole number of bytes per sample), the JPEG processes DICOM uses
//! (`jpeg.rs`, libjpeg-turbo: Baseline, Extended 8 and 12 bits, Lossless), JPEG-LS (`jpegls.rs`,
//! CharLS) and JPEG 2000 (`j2k.rs`, OpenJPEG); the last three with the `codecs` feature. Every
//! decoder gives the native frame: little endian, samples interleaved, Bits Allocated wide. The
//! frames of a multi-frame object are independent, so [`decode_frames`] decodes them on every
//! core.
//!
//! A frame's fragments are found (PS3.5 A.4) as one fragment per frame when there are as many
//! fragments as frames, all fragments for a single frame, else through the Basic Offset Table
//! or the Extended Offset Table, else (JPEG family) by the markers: a frame starts with a fragment
//! that begins with SOI (JPEG, JPEG-LS), SOC and SIZ (J2K) or the JP2 signature, after a fragment
//! that ends with EOI (or EOC). What [`plan`] does not cover (another syntax, Bits Allocated or
//! sample count, frames that cannot be told apart) is left to dicom-rs by the callers.

use std::borrow::Cow;
use std::ops::Range;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::error::{Error, Result};
use crate::frame::PixelModule;
use crate::rle::{self, FrameLayout};
use crate::syntax;

/// One of our decoders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// RLE Lossless.
    Rle,
    /// JPEG Baseline, Extended and Lossless (libjpeg-turbo).
    #[cfg(feature = "codecs")]
    Jpeg,
    /// JPEG-LS lossless and near-lossless (CharLS).
    #[cfg(feature = "codecs")]
    JpegLs,
    /// JPEG 2000 lossless and lossy (OpenJPEG).
    #[cfg(feature = "codecs")]
    J2k,
}

impl Decoder {
    /// Our decoder of transfer syntax `uid`, if we have one.
    pub(crate) fn for_syntax(uid: &str) -> Option<Decoder> {
        match uid {
            syntax::RLE_LOSSLESS => Some(Decoder::Rle),
            #[cfg(feature = "codecs")]
            syntax::JPEG_BASELINE | syntax::JPEG_EXTENDED | syntax::JPEG_LOSSLESS | syntax::JPEG_LOSSLESS_SV1 => Some(Decoder::Jpeg),
            #[cfg(feature = "codecs")]
            syntax::JPEG_LS_LOSSLESS | syntax::JPEG_LS_NEAR_LOSSLESS => Some(Decoder::JpegLs),
            #[cfg(feature = "codecs")]
            syntax::JPEG_2000_LOSSLESS | syntax::JPEG_2000 => Some(Decoder::J2k),
            _ => None,
        }
    }

    /// Whether frames of `pixel` are ours to decode.
    pub(crate) fn covers(self, pixel: &PixelModule) -> bool {
        if pixel.rows == 0 || pixel.columns == 0 {
            return false;
        }
        match self {
            Decoder::Rle => pixel.bits_allocated > 0 && pixel.bits_allocated.is_multiple_of(8) && pixel.photometric != "YBR_FULL_422",
            #[cfg(feature = "codecs")]
            _ => (pixel.samples_per_pixel == 1 || pixel.samples_per_pixel == 3) && (pixel.bits_allocated == 8 || pixel.bits_allocated == 16),
        }
    }

    /// Decodes the compressed bytes of one frame into `out`, exactly one native frame of `pixel`
    /// long. Returns the Photometric Interpretation of the decoded samples when it is not
    /// `pixel.photometric` any more.
    pub(crate) fn decode(self, data: &[u8], pixel: &PixelModule, out: &mut [u8]) -> Result<Option<&'static str>> {
        match self {
            Decoder::Rle => {
                let layout = FrameLayout {
                    rows: pixel.rows as usize,
                    columns: pixel.columns as usize,
                    samples_per_pixel: pixel.samples_per_pixel as usize,
                    bytes_per_sample: pixel.bits_allocated as usize / 8,
                    planar: false,
                };
                let decoded = rle::decode_frame(data, layout).map_err(|reason| Error::Codec { codec: "RLE", reason })?;
                if decoded.len() != out.len() {
                    return Err(Error::Codec { codec: "RLE", reason: format!("{} bytes decoded, {} expected", decoded.len(), out.len()) });
                }
                out.copy_from_slice(&decoded);
                Ok(None)
            }
            #[cfg(feature = "codecs")]
            Decoder::Jpeg => crate::jpeg::decode_frame(data, pixel, out),
            #[cfg(feature = "codecs")]
            Decoder::JpegLs => crate::jpegls::decode_frame(data, pixel, out),
            #[cfg(feature = "codecs")]
            Decoder::J2k => crate::j2k::decode_frame(data, pixel, out),
        }
    }

    /// Whether a fragment begins a compressed frame of this codec.
    pub(crate) fn starts_frame(self, fragment: &[u8]) -> bool {
        #[cfg(not(feature = "codecs"))]
        let _ = fragment;
        match self {
            Decoder::Rle => false,
            #[cfg(feature = "codecs")]
            Decoder::Jpeg | Decoder::JpegLs => fragment.starts_with(&[0xFF, 0xD8]),
            #[cfg(feature = "codecs")]
            Decoder::J2k => fragment.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) || fragment.starts_with(&[0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]),
        }
    }
}

/// How to decode the encapsulated Pixel Data of an object ourselves.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The decoder of the object's transfer syntax.
    pub decoder: Decoder,
    /// What the frames are.
    pub pixel: PixelModule,
    /// The fragments of each frame, as ranges of fragment indices.
    pub frames: Vec<Range<usize>>,
}

/// Our plan for decoding `object`, whose transfer syntax is `ts`: `None` when the syntax is not
/// encapsulated, when we have no decoder for it or for its frames, or when several fragments
/// per frame cannot be told apart by the offset tables or markers (dicom-rs then decodes, or
/// says why not). Fewer fragments than frames, or RLE fragments that are not one per frame, are
/// an error.
pub(crate) fn plan(object: &DefaultDicomObject, ts: &str) -> Result<Option<Plan>> {
    let Some(decoder) = Decoder::for_syntax(ts) else { return Ok(None) };
    if !TransferSyntaxRegistry.get(ts).is_some_and(|t| t.is_encapsulated_pixel_data()) {
        return Ok(None);
    }
    let Some(pixel) = pixel_module(object).filter(|pixel| decoder.covers(pixel)) else { return Ok(None) };
    let Some(element) = object.get(tags::PIXEL_DATA) else { return Ok(None) };
    let Some(fragments) = element.value().fragments() else { return Ok(None) };
    let offsets = element.value().offset_table().unwrap_or_default();
    let count = int(object, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    if fragments.len() < count || (decoder == Decoder::Rle && fragments.len() != count) {
        return Err(Error::Codec { codec: "pixel data", reason: format!("{} fragments for {count} frames", fragments.len()) });
    }
    let extended = object
        .get(tags::EXTENDED_OFFSET_TABLE)
        .and_then(|e| e.to_bytes().ok())
        .map(|bytes| bytes.chunks_exact(8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).collect::<Vec<_>>());
    let Some(frames) = frame_ranges(decoder, offsets, extended.as_deref(), fragments, count) else {
        tracing::debug!(fragments = fragments.len(), frames = count, "frames of the pixel data not found: left to dicom-rs");
        return Ok(None);
    };
    Ok(Some(Plan { decoder, pixel, frames }))
}

/// The image pixel module of `object`, when it has Rows, Columns and Bits Allocated.
pub(crate) fn pixel_module(object: &DefaultDicomObject) -> Option<PixelModule> {
    let bits_allocated = int(object, tags::BITS_ALLOCATED)?;
    Some(PixelModule {
        rows: int(object, tags::ROWS)?,
        columns: int(object, tags::COLUMNS)?,
        samples_per_pixel: int(object, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
        bits_allocated,
        bits_stored: int(object, tags::BITS_STORED).unwrap_or(bits_allocated),
        signed: int(object, tags::PIXEL_REPRESENTATION) == Some(1),
        photometric: object
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches('\0').trim().to_owned())
            .unwrap_or_else(|| "MONOCHROME2".into()),
    })
}

/// The fragments of each of `count` frames (see the module).
pub(crate) fn frame_ranges(decoder: Decoder, offsets: &[u32], extended: Option<&[u64]>, fragments: &[Vec<u8>], count: usize) -> Option<Vec<Range<usize>>> {
    let n = fragments.len();
    if count == 0 || n < count {
        return None;
    }
    if n == count {
        return Some((0..n).map(|i| i..i + 1).collect());
    }
    if count == 1 {
        return Some(std::iter::once(0..n).collect());
    }
    let table: Option<Vec<u64>> =
        if offsets.len() == count { Some(offsets.iter().map(|&o| u64::from(o)).collect()) } else { extended.filter(|e| e.len() == count).map(<[u64]>::to_vec) };
    if let Some(ranges) = table.and_then(|table| ranges_from_offsets(&table, fragments)) {
        return Some(ranges);
    }
    // By markers: a frame begins with a fragment that starts one, after a fragment that ends one.
    let starts: Vec<usize> = (0..n).filter(|&i| i == 0 || (decoder.starts_frame(&fragments[i]) && ends_with_end_marker(&fragments[i - 1]))).collect();
    if starts.len() != count || !decoder.starts_frame(&fragments[0]) {
        return None;
    }
    Some(to_ranges(&starts, n))
}

/// Frames from an offset table: the byte offset of each frame's first item, counted from the
/// first item's tag (each item is 8 bytes of tag and length, then the fragment).
fn ranges_from_offsets(table: &[u64], fragments: &[Vec<u8>]) -> Option<Vec<Range<usize>>> {
    let mut positions = Vec::with_capacity(fragments.len());
    let mut position = 0u64;
    for fragment in fragments {
        positions.push(position);
        position += 8 + fragment.len() as u64;
    }
    let starts: Vec<usize> = table.iter().map(|offset| positions.binary_search(offset).ok()).collect::<Option<_>>()?;
    if starts.first() != Some(&0) || starts.windows(2).any(|w| w[0] >= w[1]) {
        return None;
    }
    Some(to_ranges(&starts, fragments.len()))
}

fn to_ranges(starts: &[usize], n: usize) -> Vec<Range<usize>> {
    starts.iter().enumerate().map(|(i, &start)| start..starts.get(i + 1).copied().unwrap_or(n)).collect()
}

/// Whether compressed data ends with EOI (JPEG, JPEG-LS) or EOC (JPEG 2000), both `FF D9`,
/// before the padding to an even length (a zero byte, or `FF` from some writers).
pub(crate) fn ends_with_end_marker(data: &[u8]) -> bool {
    let end = data.iter().rposition(|&b| b != 0 && b != 0xFF).map_or(0, |i| i + 1);
    end >= 2 && data[end - 2..end] == [0xFF, 0xD9]
}

/// The compressed bytes of one frame: its fragment, or its fragments one after the other.
pub(crate) fn frame_data(fragments: &[Vec<u8>], range: Range<usize>) -> Cow<'_, [u8]> {
    match &fragments[range] {
        [one] => Cow::Borrowed(one.as_slice()),
        several => Cow::Owned(several.concat()),
    }
}

/// The native pixel data of every frame, and the Photometric Interpretation it has now when that
/// changed.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The frames one after the other.
    pub native: Vec<u8>,
    /// The new Photometric Interpretation, if any.
    pub photometric: Option<&'static str>,
}

/// Decodes every frame of `plan` from `fragments`, frames in parallel on every core.
pub(crate) fn decode_frames(plan: &Plan, fragments: &[Vec<u8>]) -> Result<Decoded> {
    let codec = |reason: String| Error::Codec { codec: "pixel data", reason };
    let frame_len = plan.pixel.frame_len();
    let total = frame_len.checked_mul(plan.frames.len()).ok_or_else(|| codec("the decoded frames would not fit in memory".into()))?;
    if frame_len == 0 {
        return Err(codec("empty frames".into()));
    }
    let mut native = Vec::new();
    native.try_reserve_exact(total + 1).map_err(|_| codec(format!("{total} bytes of decoded frames cannot be allocated")))?;
    native.resize(total, 0);
    let photometrics: Vec<Option<&'static str>> = {
        use rayon::prelude::*;
        let several = plan.frames.len() > 1;
        native
            .par_chunks_mut(frame_len)
            .zip(plan.frames.par_iter())
            .enumerate()
            .map(|(i, (out, range))| {
                plan.decoder.decode(&frame_data(fragments, range.clone()), &plan.pixel, out).map_err(|e| match e {
                    Error::Codec { codec, reason } if several => Error::Codec { codec, reason: format!("frame {}: {reason}", i + 1) },
                    other => other,
                })
            })
            .collect::<Result<_>>()?
    };
    let photometric = photometrics.first().copied().flatten();
    if photometrics.iter().any(|p| *p != photometric) {
        return Err(codec("the frames decode to different photometric interpretations".into()));
    }
    Ok(Decoded { native, photometric })
}

fn int(object: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    object.get(tag).and_then(|e| e.to_int::<u32>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "codecs")]
    fn jpeg(body: &[u8]) -> Vec<u8> {
        [&[0xFF, 0xD8][..], body, &[0xFF, 0xD9]].concat()
    }

    #[test]
    fn frames_are_found_by_count_offsets_and_markers() {
        #[cfg(feature = "codecs")]
        let decoder = Decoder::Jpeg;
        #[cfg(not(feature = "codecs"))]
        let decoder = Decoder::Rle;
        let one = vec![vec![1, 2], vec![3, 4]];
        assert_eq!(frame_ranges(decoder, &[], None, &one, 2), Some(vec![0..1, 1..2]));
        assert_eq!(frame_ranges(decoder, &[], None, &one, 1), Some(std::iter::once(0..2).collect()));
        assert_eq!(frame_ranges(decoder, &[], None, &one, 3), None);
        // Two frames of two and one fragments: the offsets are 0 and 8 + 4 + 8 + 2.
        let three = vec![vec![0xFF, 0xD8, 0, 0], vec![0xFF, 0xD9], vec![0xFF, 0xD8, 0xFF, 0xD9]];
        assert_eq!(frame_ranges(decoder, &[0, 22], None, &three, 2), Some(vec![0..2, 2..3]));
        assert_eq!(frame_ranges(decoder, &[], Some(&[0, 22]), &three, 2), Some(vec![0..2, 2..3]));
        // An offset that is no item falls back to the markers.
        #[cfg(feature = "codecs")]
        assert_eq!(frame_ranges(decoder, &[0, 21], None, &three, 2), Some(vec![0..2, 2..3]));
        #[cfg(feature = "codecs")]
        {
            let frames = vec![jpeg(&[1, 2, 3])[..4].to_vec(), vec![3, 0xFF, 0xD9, 0], jpeg(&[5]), jpeg(&[6, 7])];
            assert_eq!(frame_ranges(Decoder::Jpeg, &[], None, &frames, 3), Some(vec![0..2, 2..3, 3..4]));
            assert_eq!(frame_ranges(Decoder::Jpeg, &[], None, &frames, 2), None);
            // A fragment starting with SOI after one that does not end a frame continues it.
            let continued = vec![vec![0xFF, 0xD8, 1, 2], vec![0xFF, 0xD8, 0xFF, 0xD9], jpeg(&[])];
            assert_eq!(frame_ranges(Decoder::Jpeg, &[], None, &continued, 2), Some(vec![0..2, 2..3]));
        }
        // RLE frames are one fragment each: no markers to go by.
        assert_eq!(frame_ranges(Decoder::Rle, &[], None, &three, 2), None);
    }

    /// An object of `frames` RGB frames of 8 bits in transfer syntax `ts`, each frame encoded by
    /// `encode` and cut into `pieces` fragments (with a Basic Offset Table when `table`).
    #[cfg(feature = "codecs")]
    fn object(ts: &str, frames: &[Vec<u8>], encode: &dyn Fn(&[u8]) -> Vec<u8>, pieces: usize, table: bool) -> DefaultDicomObject {
        use dicom_core::value::PixelFragmentSequence;
        use dicom_core::{DataElement, Length, PrimitiveValue, VR};
        use dicom_object::InMemDicomObject;
        use dicom_object::meta::FileMetaTableBuilder;
        let mut object = InMemDicomObject::new_empty();
        for (tag, value) in [(tags::ROWS, 24u16), (tags::COLUMNS, 40), (tags::SAMPLES_PER_PIXEL, 3), (tags::BITS_ALLOCATED, 8), (tags::BITS_STORED, 8)] {
            object.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
        }
        object.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"));
        object.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, frames.len().to_string()));
        let (mut fragments, mut offsets, mut offset) = (Vec::new(), Vec::new(), 0u32);
        for frame in frames {
            let stream = encode(frame);
            offsets.push(offset);
            let size = stream.len().div_ceil(pieces).next_multiple_of(2);
            for piece in stream.chunks(size) {
                offset += 8 + piece.len() as u32;
                fragments.push(piece.to_vec());
            }
        }
        if !table {
            offsets.clear();
        }
        object.put(DataElement::new_with_len(tags::PIXEL_DATA, VR::OB, Length::UNDEFINED, PixelFragmentSequence::new(offsets, fragments)));
        let meta =
            FileMetaTableBuilder::new().transfer_syntax(ts).media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7").media_storage_sop_instance_uid("2.25.1");
        object.with_meta(meta).expect("meta")
    }

    #[cfg(feature = "codecs")]
    #[test]
    fn every_codec_decodes_multi_frame_objects_in_fragments() {
        use crate::frame::Frame;
        // Smooth ramps, another per frame and per component.
        let frames: Vec<Vec<u8>> = (0..5u32).map(|f| (0..24 * 40 * 3).map(|i| ((i / 3 % 40) * 4 + i / 120 + f * 9 + (i % 3) * 20) as u8).collect()).collect();
        fn frame(samples: &[u8]) -> Frame<'_> {
            Frame { samples, rows: 24, columns: 40, samples_per_pixel: 3, bits_allocated: 8, bits_stored: 8, signed: false, planar: false }
        }
        let layout = FrameLayout { rows: 24, columns: 40, samples_per_pixel: 3, bytes_per_sample: 1, planar: false };
        type Encoder = Box<dyn Fn(&[u8]) -> Vec<u8>>;
        let lossless: [(&str, Decoder, Encoder); 4] = [
            (syntax::RLE_LOSSLESS, Decoder::Rle, Box::new(move |s| rle::encode_frame(s, layout).expect("RLE"))),
            (syntax::JPEG_LOSSLESS_SV1, Decoder::Jpeg, Box::new(move |s| crate::jpeg_lossless::encode_frame(&frame(s), 8).expect("JPEG Lossless"))),
            (syntax::JPEG_LS_LOSSLESS, Decoder::JpegLs, Box::new(move |s| crate::jpegls::encode_frame(&frame(s), 0).expect("JPEG-LS"))),
            (syntax::JPEG_2000_LOSSLESS, Decoder::J2k, Box::new(move |s| crate::j2k::encode_frame(&frame(s), crate::j2k::Mode::Lossless).expect("JPEG 2000"))),
        ];
        let expected = frames.concat();
        for (ts, decoder, encode) in &lossless {
            for (pieces, table) in [(1, false), (3, true), (3, false)] {
                if *decoder == Decoder::Rle && pieces > 1 {
                    continue;
                }
                let object = object(ts, &frames, encode, pieces, table);
                let plan = plan(&object, ts).expect("consistent").unwrap_or_else(|| panic!("{ts} in {pieces} pieces is ours"));
                assert_eq!((plan.decoder, plan.frames.len()), (*decoder, 5));
                let fragments = object.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()).expect("fragments");
                let decoded = decode_frames(&plan, fragments).expect("decodes");
                assert_eq!(decoded.photometric, None);
                assert!(decoded.native == expected, "{ts} in {pieces} pieces (offset table: {table})");
            }
        }
        // Lossy JPEG: the same pixels as each frame decoded on its own, and RGB.
        let encode = |s: &[u8]| crate::jpeg::encode_frame(&frame(s), "RGB", 90).expect("JPEG");
        let whole = object(syntax::JPEG_EXTENDED, &frames, &encode, 1, false);
        let plan_whole = plan(&whole, syntax::JPEG_EXTENDED).expect("consistent").expect("ours");
        let fragments = whole.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()).expect("fragments");
        let reference = decode_frames(&plan_whole, fragments).expect("decodes");
        assert_eq!(reference.photometric, Some("RGB"));
        let split = object(syntax::JPEG_EXTENDED, &frames, &encode, 4, false);
        let plan_split = plan(&split, syntax::JPEG_EXTENDED).expect("consistent").expect("ours");
        let fragments = split.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()).expect("fragments");
        assert!(decode_frames(&plan_split, fragments).expect("decodes").native == reference.native);
        let max = reference.native.iter().zip(&expected).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert!(max <= 12, "lossy error {max}");
    }

    #[test]
    fn frame_data_borrows_one_fragment_and_joins_several() {
        let fragments = vec![vec![1, 2], vec![3], vec![4, 5]];
        assert!(matches!(frame_data(&fragments, 0..1), Cow::Borrowed(&[1, 2])));
        assert_eq!(frame_data(&fragments, 1..3).into_owned(), vec![3, 4, 5]);
    }
}
