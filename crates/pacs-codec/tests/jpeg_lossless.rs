//! Our JPEG Lossless encoder (Process 14, selection value 1) against three decoders: our own
//! (libjpeg-turbo, through our conversion back to Explicit VR Little Endian), DCMTK's `dcmdjpeg`
//! and pydicom with pylibjpeg-libjpeg. On pydicom's bundled test files and on synthetic frames:
//! all zeros, full-range noise, 1x1, odd widths, 12 bits stored in 16 (unsigned and
//! sign-extended signed), colour and several frames.
//!
//! DCMTK, and Python 3 with pydicom, numpy and pylibjpeg-libjpeg, are required: `scripts/test.sh`
//! installs them. Missing tools fail the tests, they never skip them.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use dicom_dictionary_std::tags;
use pacs_codec::Error;
use pacs_codec::syntax::*;

/// The SOF3 precision and component count, and SOS Ss, Se and Ah/Al, of a JPEG stream.
fn header(stream: &[u8]) -> (u8, u8, [u8; 3]) {
    assert_eq!(&stream[..2], &[0xFF, 0xD8], "SOI");
    let sof = stream.windows(2).position(|w| w == [0xFF, 0xC3]).expect("SOF3");
    let sos = stream.windows(2).position(|w| w == [0xFF, 0xDA]).expect("SOS");
    let ls = usize::from(u16::from_be_bytes([stream[sos + 2], stream[sos + 3]]));
    let end = sos + 2 + ls;
    (stream[sof + 4], stream[sof + 9], [stream[end - 3], stream[end - 2], stream[end - 1]])
}

/// Writes `bytes` as JPEG Lossless in `target`, and checks that we, DCMTK and pydicom all
/// decode it to the pixels of the source; then that decoding it and encoding it again gives the
/// same pixels once more. Returns the converted object.
fn check(name: &str, source: &[u8], target: &str, dir: &Path) -> Vec<u8> {
    let (_, expected) = decode(source);
    let converted = convert(source, target).unwrap_or_else(|e| panic!("{name} to {target}: {e}"));
    let (ts, ours) = decode(&converted);
    assert_eq!(ts, target, "{name}");
    assert!(ours == expected, "{name} as {target}: we decode other pixels");
    let written = dir.join(format!("{name}.{target}.dcm"));
    std::fs::write(&written, &converted).unwrap();
    assert!(dcmtk_pixels("dcmdjpeg", &written) == expected, "{name} as {target}: DCMTK decodes other pixels");
    let original = dir.join(format!("{name}.source.dcm"));
    std::fs::write(&original, source).unwrap();
    assert_eq!(pydicom_pixels(&written), pydicom_pixels(&original), "{name} as {target}: pydicom decodes other pixels");
    // Decode, encode again, decode: the same pixels.
    let native = convert(&converted, EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
    let again = convert(&native, JPEG_LOSSLESS_SV1).unwrap();
    assert!(decode(&again).1 == expected, "{name}: the second round trip changed the pixels");
    converted
}

#[test]
fn pydicom_files_decode_alike_in_dicom_rs_dcmtk_and_pydicom() {
    let files = test_files();
    let tmp = tempfile::tempdir().unwrap();
    // 16-bit signed (CT, MR), decoded from RLE and JPEG-LS first, 12 bits stored in 16, 8-bit
    // monochrome (deflated) and PALETTE COLOR, RGB (3x3, from RLE, two
    // frames, 16 bits): the expected SOF3 precision and number of components.
    for (name, precision, components) in [
        ("CT_small.dcm", 16, 1),
        ("MR_small.dcm", 16, 1),
        ("MR_small_RLE.dcm", 16, 1),
        ("MR_small_jpeg_ls_lossless.dcm", 16, 1),
        ("examples_overlay.dcm", 12, 1),
        ("image_dfl.dcm", 8, 1),
        ("examples_palette.dcm", 8, 1),
        ("SC_rgb_small_odd.dcm", 8, 3),
        ("examples_rgb_color.dcm", 8, 3),
        ("SC_rgb_rle.dcm", 8, 3),
        ("SC_rgb_rle_2frame.dcm", 8, 3),
        ("SC_rgb_rle_16bit_2frame.dcm", 16, 3),
    ] {
        let source = std::fs::read(files.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for target in [JPEG_LOSSLESS_SV1, JPEG_LOSSLESS] {
            let converted = check(name, &source, target, tmp.path());
            let (p, nf, scan) = header(&first_fragment(&converted));
            assert_eq!((p, nf), (precision, components), "{name}: SOF3 precision and components");
            assert_eq!(scan, [1, 0, 0], "{name}: predictor 1, Se 0, no point transform");
        }
    }
}

#[test]
fn synthetic_edge_cases_decode_alike() {
    let tmp = tempfile::tempdir().unwrap();
    // Sign-extended 12-bit samples in 16 bits: -2048 to 2047.
    let signed12: Vec<u32> = noise(31 * 17, 12, 9).into_iter().map(|s| (((s as i32) << 20 >> 20) as u16).into()).collect();
    let cases = [
        ("zeros16", Synthetic::mono(16, 16, 16, 16, vec![0; 256]), 16),
        ("zeros8", Synthetic::mono(9, 7, 8, 8, vec![0; 63]), 8),
        ("noise16", Synthetic::mono(33, 47, 16, 16, noise(33 * 47, 16, 1)), 16),
        ("extremes16", Synthetic::mono(8, 8, 16, 16, (0..64).map(|i| if (i + i / 8) % 2 == 0 { 0 } else { 0xFFFF }).collect()), 16),
        ("noise8", Synthetic::mono(21, 13, 8, 8, noise(21 * 13, 8, 2)), 8),
        ("one8", Synthetic::mono(1, 1, 8, 8, vec![200]), 8),
        ("one16", Synthetic::mono(1, 1, 16, 16, vec![0xFFFF]), 16),
        ("odd16", Synthetic::mono(3, 7, 16, 12, noise(21, 12, 3)), 12),
        ("twelve", Synthetic::mono(64, 63, 16, 12, noise(64 * 63, 12, 4)), 12),
        ("signed12", Synthetic { signed: true, ..Synthetic::mono(31, 17, 16, 12, signed12) }, 16),
        ("signed8", Synthetic { signed: true, ..Synthetic::mono(5, 5, 8, 8, noise(25, 8, 5)) }, 8),
        ("rgb_odd", Synthetic { samples_per_pixel: 3, ..Synthetic::mono(5, 3, 8, 8, noise(45, 8, 6)) }, 8),
        ("rgb_1x1", Synthetic { samples_per_pixel: 3, ..Synthetic::mono(1, 1, 8, 8, vec![255, 0, 255]) }, 8),
        ("frames16", Synthetic { frames: 3, ..Synthetic::mono(7, 5, 16, 16, noise(105, 16, 7)) }, 16),
    ];
    for (name, synthetic, precision) in cases {
        let converted = check(name, &synthetic.bytes(), JPEG_LOSSLESS_SV1, tmp.path());
        assert_eq!(header(&first_fragment(&converted)).0, precision, "{name}: SOF3 precision");
        let fragments = open(&converted).element(tags::PIXEL_DATA).unwrap().value().fragments().unwrap().len();
        assert_eq!(fragments, usize::from(synthetic.frames), "{name}: one fragment per frame");
    }
}

#[test]
fn what_cannot_be_coded_is_a_clear_error() {
    let files = test_files();
    for name in ["rtdose.dcm", "SC_rgb_rle_32bit_2frame.dcm"] {
        let source = std::fs::read(files.join(name)).unwrap();
        let result = convert(&source, JPEG_LOSSLESS_SV1);
        assert!(matches!(result, Err(Error::PixelData { ref reason, .. }) if reason.contains("not 32")), "{name}: {result:?}");
    }
    let bits32 = Synthetic::mono(2, 2, 32, 32, vec![1, 2, 3, 4]).bytes();
    assert!(matches!(convert(&bits32, JPEG_LOSSLESS), Err(Error::PixelData { .. })));
    let one_bit = Synthetic::mono(4, 4, 8, 1, vec![1; 16]).bytes();
    assert!(matches!(convert(&one_bit, JPEG_LOSSLESS_SV1), Err(Error::PixelData { .. })), "1 bit stored");
    // Pixel Data shorter than Rows x Columns says.
    let mut short = Synthetic::mono(8, 8, 16, 16, vec![7; 64]);
    short.rows = 64;
    let result = convert(&short.bytes(), JPEG_LOSSLESS_SV1);
    assert!(matches!(result, Err(Error::PixelData { .. })), "{result:?}");
}
