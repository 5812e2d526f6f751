//! JPEG through libjpeg-turbo: pydicom's 12-bit JPEG Extended files decode to what DCMTK's
//! `dcmdjpeg` (IJG) gives; what we write in JPEG Baseline and JPEG Extended (8 and 12 bits,
//! grayscale and colour) is read by `dcmdjpeg` and by pydicom (pylibjpeg-libjpeg) within a small
//! error of the original, as a new instance; JPEG Lossless decodes to the same pixels as
//! dicom-rs's decoder gave before.
//!
//! DCMTK, and Python 3 with pydicom, numpy and pylibjpeg, are required: `scripts/test.sh`
//! installs them. Missing tools fail the tests, they never skip them.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::*;
use dicom_dictionary_std::tags;
use dicom_pixeldata::PixelDecoder;
use pacs_codec::syntax::*;
use pacs_codec::{Error, TranscodeOptions, transcode_with};

/// The SOF marker, sample precision and component count of a JPEG stream.
fn frame_header(stream: &[u8]) -> (u8, u8, u8) {
    assert_eq!(&stream[..2], &[0xFF, 0xD8], "SOI");
    let sof = stream.windows(2).position(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xC3)).expect("a SOF marker");
    (stream[sof + 1], stream[sof + 4], stream[sof + 9])
}

#[test]
fn pydicom_12_bit_extended_files_decode_like_dcmtk() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["JPEG-lossy.dcm", "JPGExtended.dcm"] {
        let path = test_files().join(name);
        let source = std::fs::read(&path).unwrap();
        assert_eq!(frame_header(&first_fragment(&source)), (0xC1, 12, 1), "{name}: SOF1, 12 bits, grayscale");
        let (ts, ours) = decode(&source);
        assert_eq!(ts, JPEG_EXTENDED);
        assert_eq!(ours.len(), 1024 * 256 * 2, "{name}: 1024 x 256 samples of 16 bits");
        let copy = tmp.path().join(name);
        std::fs::write(&copy, &source).unwrap();
        let theirs = dcmtk_pixels("dcmdjpeg", &copy);
        assert!(ours == theirs, "{name}: our pixels differ from dcmdjpeg's");
        assert!(words(&ours).iter().all(|&v| v < 4096), "{name}: 12-bit values");
        assert!(words(&ours).iter().any(|&v| v > 255), "{name}: not an 8-bit image");
    }
    // pydicom reads JPGExtended.dcm (pylibjpeg-libjpeg; JPEG-lossy.dcm has SOS parameters its
    // libjpeg refuses): a decoder of another lineage, within one grey level.
    let path = test_files().join("JPGExtended.dcm");
    let (dtype, theirs) = pydicom_pixels(&path);
    assert_eq!(dtype, "<u2");
    let (_, ours) = decode(&std::fs::read(&path).unwrap());
    let as_i64 = |b: &[u8]| words(b).into_iter().map(i64::from).collect::<Vec<_>>();
    let (max, mean) = errors(&as_i64(&ours), &as_i64(&theirs));
    assert!(max <= 1 && mean < 0.05, "JPGExtended.dcm: pydicom differs by {max} at most, {mean:.4} on average");
}

/// Checks a lossy conversion of `source` into `target`: attributes of a new lossy instance,
/// the stream's header, and decoding by us, DCMTK and pydicom within `max` and `mean` of the
/// original samples (read as `signed` values of Bits Stored). Returns the converted object.
fn check_lossy(name: &str, source: &[u8], target: &str, sof: (u8, u8, u8), bounds: (i64, f64), dir: &std::path::Path) -> Vec<u8> {
    let mut converted = Vec::new();
    let report = transcode_with(&mut std::io::Cursor::new(source), target, &TranscodeOptions::default(), &mut converted)
        .unwrap_or_else(|e| panic!("{name} to {target}: {e}"));
    let (old, new) = report.new_sop_instance_uid.clone().unwrap_or_else(|| panic!("{name}: a new SOP Instance UID"));
    assert_ne!(old, new);
    assert_eq!(text(&converted, tags::SOP_INSTANCE_UID), new, "{name}");
    assert_eq!(open(&converted).meta().media_storage_sop_instance_uid().trim_end_matches('\0'), new, "{name}");
    assert_eq!(text(&converted, tags::LOSSY_IMAGE_COMPRESSION), "01", "{name}");
    assert_eq!(text(&converted, tags::LOSSY_IMAGE_COMPRESSION_METHOD), "ISO_10918_1", "{name}");
    let ratio: f64 = text(&converted, tags::LOSSY_IMAGE_COMPRESSION_RATIO).parse().unwrap();
    assert!(ratio > 2.0, "{name}: compression ratio {ratio}");
    let frames = fragments(&converted);
    assert_eq!(frames.len(), usize::try_from(report.frames).unwrap(), "{name}: one fragment per frame");
    for fragment in &frames {
        assert_eq!(frame_header(fragment), sof, "{name}: SOF, precision, components");
        assert_eq!(fragment.len() % 2, 0);
    }
    let samples_per_pixel = number(source, tags::SAMPLES_PER_PIXEL);
    let expected_photometric = if samples_per_pixel == 3 { "YBR_FULL_422" } else { "MONOCHROME2" };
    assert_eq!(text(&converted, tags::PHOTOMETRIC_INTERPRETATION), expected_photometric, "{name}");
    let precision = i64::from(sof.1);
    assert_eq!((number(&converted, tags::BITS_STORED), number(&converted, tags::HIGH_BIT)), (precision, precision - 1), "{name}");

    let signed = number(source, tags::PIXEL_REPRESENTATION) == 1;
    let bits_allocated = number(source, tags::BITS_ALLOCATED);
    // Values of `bits` bits stored, signed or not, from native little-endian samples.
    let values = |bytes: &[u8], bits: u32| -> Vec<i64> {
        let raw: Vec<u32> = if bits_allocated == 8 { bytes.iter().map(|&b| u32::from(b)).collect() } else { words(bytes).into_iter().map(u32::from).collect() };
        let shift = 32 - bits;
        raw.into_iter().map(|r| if signed { i64::from(((r << shift) as i32) >> shift) } else { i64::from((r << shift) >> shift) }).collect()
    };
    let (_, original) = decode(source);
    let original = values(&original, number(source, tags::BITS_STORED) as u32);
    let (ts, ours) = decode(&converted);
    assert_eq!(ts, target);
    let ours = values(&ours, precision as u32);
    let (max, mean) = errors(&original, &ours);
    println!("{name} as {target}: max {max}, mean {mean:.3}, ratio {ratio:.2}");
    assert!(
        max <= bounds.0 && mean <= bounds.1 && mean > 0.0,
        "{name} as {target}: error max {max} (at most {}), mean {mean:.3} (at most {})",
        bounds.0,
        bounds.1
    );

    let written = dir.join(format!("{name}.{target}.dcm"));
    std::fs::write(&written, &converted).unwrap();
    // DCMTK's IJG decoder and libjpeg-turbo compute the same accurate integer IDCT.
    let dcmtk = values(&dcmtk_pixels("dcmdjpeg", &written), precision as u32);
    let (max, _) = errors(&ours, &dcmtk);
    assert!(max <= 1, "{name} as {target}: dcmdjpeg differs from us by {max}");
    // pydicom (pylibjpeg-libjpeg, another decoder) sign-extends signed samples itself.
    let (dtype, theirs) = pydicom_pixels(&written);
    let theirs: Vec<i64> = match dtype.as_str() {
        "|u1" => theirs.iter().map(|&b| i64::from(b)).collect(),
        "<u2" => words(&theirs).into_iter().map(i64::from).collect(),
        "<i2" => words(&theirs).into_iter().map(|w| i64::from(w as i16)).collect(),
        other => panic!("{name}: pydicom gives {other}"),
    };
    let (max, mean) = errors(&ours, &theirs);
    assert!(max <= 2 && mean < 0.5, "{name} as {target}: pydicom differs from us by {max} at most, {mean:.3} on average");
    converted
}

#[test]
fn what_we_write_in_jpeg_extended_and_baseline_is_read_by_dcmtk_and_pydicom() {
    let tmp = tempfile::tempdir().unwrap();
    // CT: 16 bits allocated, 12 stored, unsigned; two frames.
    let ct = Synthetic { frames: 2, ..Synthetic::mono(256, 256, 16, 12, [ct_phantom(256, 0, 1), ct_phantom(256, 5, 1)].concat()) };
    check_lossy("ct12", &ct.bytes(), JPEG_EXTENDED, (0xC1, 12, 1), (64, 4.0), tmp.path());
    // Signed, 12 bits stored (values -1900 to -100: no wrap of the bit pattern inside the image).
    let signed: Vec<u32> = ct_phantom(128, 3, 2).into_iter().map(|v| u32::from((-1900 + v as i32 * 1800 / 4095) as i16 as u16)).collect();
    let signed = Synthetic { signed: true, ..Synthetic::mono(128, 128, 16, 12, signed) };
    check_lossy("signed12", &signed.bytes(), JPEG_EXTENDED, (0xC1, 12, 1), (64, 4.0), tmp.path());
    // 16 bits stored whose values fit in 12 bits: Bits Stored becomes 12.
    let wide = Synthetic::mono(64, 96, 16, 16, ct_phantom(96, 1, 3).into_iter().take(64 * 96).collect());
    check_lossy("ct16", &wide.bytes(), JPEG_EXTENDED, (0xC1, 12, 1), (64, 5.0), tmp.path());
    // 8-bit grayscale and colour, in both syntaxes (8-bit Extended is a baseline stream).
    let rgb = pydicom_file("SC_rgb_rle.dcm");
    let grey = pydicom_file("image_dfl.dcm");
    let colour_frames = pydicom_file("SC_rgb_rle_2frame.dcm");
    for target in [JPEG_BASELINE, JPEG_EXTENDED] {
        check_lossy("SC_rgb_rle", &rgb, target, (0xC0, 8, 3), (32, 1.5), tmp.path());
        check_lossy("SC_rgb_rle_2frame", &colour_frames, target, (0xC0, 8, 3), (32, 1.5), tmp.path());
        check_lossy("image_dfl", &grey, target, (0xC0, 8, 1), (32, 1.0), tmp.path());
    }
    // The quality is honoured: 50 is smaller and further off than 95.
    let source = ct.bytes();
    let low = convert_with(&source, JPEG_EXTENDED, Some(50)).unwrap();
    let high = convert_with(&source, JPEG_EXTENDED, Some(95)).unwrap();
    assert!(low.len() * 2 < high.len(), "quality 50 ({} bytes) against 95 ({} bytes)", low.len(), high.len());
}

#[test]
fn what_lossy_jpeg_cannot_hold_is_a_clear_error() {
    // 16 bits stored with values above 4095.
    let wide = Synthetic::mono(8, 8, 16, 16, (0..64).map(|i| i * 1000).collect()).bytes();
    let result = convert(&wide, JPEG_EXTENDED);
    assert!(matches!(result, Err(Error::PixelData { ref reason, .. }) if reason.contains("12 bits")), "{result:?}");
    // 16 bits into JPEG Baseline, 32 bits into JPEG Extended.
    let ct = Synthetic::mono(8, 8, 16, 12, vec![100; 64]).bytes();
    assert!(matches!(convert(&ct, JPEG_BASELINE), Err(Error::Unsupported { .. })));
    let rtdose = pydicom_file("rtdose.dcm");
    assert!(matches!(convert(&rtdose, JPEG_EXTENDED), Err(Error::PixelData { .. })));
    // PALETTE COLOR is not coded lossily.
    let palette = pydicom_file("examples_palette.dcm");
    let result = convert(&palette, JPEG_BASELINE);
    assert!(matches!(result, Err(Error::PixelData { ref reason, .. }) if reason.contains("PALETTE COLOR")), "{result:?}");
}

#[test]
fn jpeg_lossless_decodes_to_the_pixels_dicom_rs_gave() {
    let mut sources: Vec<(String, Vec<u8>)> = vec![("SC_rgb_jpeg_gdcm.dcm".into(), pydicom_file("SC_rgb_jpeg_gdcm.dcm"))];
    for name in ["CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "image_dfl.dcm", "SC_rgb_rle_16bit_2frame.dcm", "examples_rgb_color.dcm"] {
        for target in [JPEG_LOSSLESS_SV1, JPEG_LOSSLESS] {
            sources.push((format!("{name} as {target}"), convert(&pydicom_file(name), target).unwrap()));
        }
    }
    let signed12: Vec<u32> = noise(31 * 17, 12, 9).into_iter().map(|s| u32::from(((s as i32) << 20 >> 20) as i16 as u16)).collect();
    let signed12 = Synthetic { signed: true, ..Synthetic::mono(31, 17, 16, 12, signed12) };
    sources.push(("signed12".into(), convert(&signed12.bytes(), JPEG_LOSSLESS_SV1).unwrap()));
    for (name, source) in &sources {
        let (_, ours) = decode(source);
        let object = open(source);
        let dicom_rs = object.decode_pixel_data().unwrap_or_else(|e| panic!("{name}: dicom-rs decodes: {e}"));
        assert!(ours == dicom_rs.data(), "{name}: libjpeg-turbo and dicom-rs decode other pixels");
    }
}

#[test]
fn rgb_streams_without_colour_markers_are_read_as_rgb() {
    // JPEG Baseline labelled RGB with neither JFIF nor Adobe marker: libjpeg alone would guess
    // YCbCr from the component identifiers; DCMTK and pydicom read RGB.
    let tmp = tempfile::tempdir().unwrap();
    for name in ["SC_jpeg_no_color_transform.dcm", "SC_jpeg_no_color_transform_2.dcm", "SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_jpeg_app14_dcmd.dcm"] {
        let source = pydicom_file(name);
        let (_, ours) = decode(&source);
        let copy = tmp.path().join(name);
        std::fs::write(&copy, &source).unwrap();
        let dcmtk = dcmtk_pixels("dcmdjpeg", &copy);
        let max = ours.iter().zip(&dcmtk).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert_eq!(ours.len(), dcmtk.len());
        assert!(max <= 1, "{name}: dcmdjpeg differs by {max}");
        let native = convert(&source, EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        assert_eq!(text(&native, tags::PHOTOMETRIC_INTERPRETATION), "RGB", "{name}");
    }
}
