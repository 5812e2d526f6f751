//! Round trips on pydicom's bundled test files: every lossless conversion is pixel-identical, our
//! decoding equals pydicom's, and what we write is read by DCMTK and pydicom (JPEG 2000: pydicom
//! with OpenJPEG, as DCMTK has no JPEG 2000 codec).

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use common::{convert, decode, first_fragment, test_files};
use dicom_object::OpenFileOptions;
use dicom_object::file::ReadPreamble;
use pacs_codec::syntax::*;
use pacs_codec::{Error, Output, TranscodeOptions, transcode, transcode_with};

/// Lossless sources, in every syntax we read.
const SOURCES: &[&str] = &[
    "MR_small.dcm",
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "image_dfl.dcm",
    "examples_jpeg2k.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "rtdose_rle.dcm",
    "rtdose_expb.dcm",
];

/// Lossless targets we write.
const TARGETS: &[&str] = &[
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    RLE_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_2000_LOSSLESS,
];

fn bits_allocated(bytes: &[u8]) -> u16 {
    attribute(bytes, dicom_dictionary_std::tags::BITS_ALLOCATED)
}

fn attribute(bytes: &[u8], tag: dicom_core::Tag) -> u16 {
    let object = OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(Cursor::new(bytes)).expect("readable object");
    object.element(tag).expect("attribute present").to_int().expect("a number")
}

/// pydicom's decoded pixels of a file, as little-endian bytes.
fn pydicom_pixels(path: &Path) -> Vec<u8> {
    let script =
        "import sys, pydicom\nds = pydicom.dcmread(sys.argv[1])\na = ds.pixel_array\nsys.stdout.buffer.write(a.astype(a.dtype.newbyteorder('<')).tobytes())";
    let out = Command::new("python3").arg("-c").arg(script).arg(path).output().expect("python3 runs");
    assert!(out.status.success(), "pydicom decodes {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn lossless_conversions_are_pixel_identical() {
    let dir = test_files();
    let mut checked = 0;
    for name in SOURCES {
        let source = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (from, first) = decode(&source);
        for &target in TARGETS {
            let result = convert(&source, target);
            if (target == JPEG_LOSSLESS_SV1 || target == JPEG_LS_LOSSLESS || target == JPEG_2000_LOSSLESS) && bits_allocated(&source) > 16 {
                // JPEG Lossless and JPEG-LS hold 16 bits at most; OpenJPEG's lossless path, 16 here too.
                assert!(matches!(result, Err(Error::PixelData { .. } | Error::Unsupported { .. })), "{name} to {target}: {result:?}");
                continue;
            }
            let converted = result.unwrap_or_else(|e| panic!("{name} ({from}) to {target}: {e}"));
            let (ts, second) = decode(&converted);
            assert_eq!(ts, target, "{name}");
            assert!(first == second, "{name}: {from} to {target} changed the pixels");
            // And back, through the target's decoder.
            let back = convert(&converted, EXPLICIT_VR_LITTLE_ENDIAN).unwrap_or_else(|e| panic!("{name} from {target}: {e}"));
            assert!(decode(&back).1 == first, "{name}: {target} back to Explicit VR LE changed the pixels");
            checked += 1;
        }
    }
    assert!(checked >= SOURCES.len() * 4, "{checked} conversions checked");
}

#[test]
fn decoded_pixels_equal_pydicom() {
    let dir = test_files();
    // Lossy sources too: the same compressed stream must decode to the same pixels.
    let lossy = [
        "JPEGLSNearLossless_08.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_rgb_jls_lossy_sample.dcm",
        "JPEG2000.dcm",
        "SC_rgb_gdcm_KY.dcm",
        "693_J2KI.dcm",
        "GDCMJ2K_TextGBR.dcm",
        "J2K_pixelrep_mismatch.dcm",
    ];
    for name in SOURCES.iter().chain(lossy.iter()) {
        let path = dir.join(name);
        let source = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (from, ours) = decode(&source);
        let theirs = pydicom_pixels(&path);
        assert_eq!(ours.len(), theirs.len(), "{name} ({from}): decoded lengths");
        let stored = attribute(&source, dicom_dictionary_std::tags::BITS_STORED);
        if bits_allocated(&source) == 16 && stored < 16 {
            // pydicom sign-extends signed samples above Bits Stored; we keep the stored bits as
            // the stream gives them (J2K_pixelrep_mismatch.dcm: unsigned 13-bit components).
            let mask = (1u16 << stored) - 1;
            let same = ours
                .chunks_exact(2)
                .zip(theirs.chunks_exact(2))
                .all(|(a, b)| (u16::from_le_bytes([a[0], a[1]]) ^ u16::from_le_bytes([b[0], b[1]])) & mask == 0);
            assert!(same, "{name} ({from}): our pixels differ from pydicom's in the stored bits");
        } else {
            assert!(ours == theirs, "{name} ({from}): our pixels differ from pydicom's");
        }
    }
}

#[test]
fn what_we_write_is_read_by_dcmtk_and_pydicom() {
    let dir = test_files();
    let tmp = tempfile::tempdir().expect("temp dir");
    // DCMTK has no JPEG 2000 decoder: pydicom (with OpenJPEG) checks those alone.
    for (name, target, decompressor) in [
        ("MR_small.dcm", RLE_LOSSLESS, Some("dcmdrle")),
        ("SC_rgb_rle_16bit_2frame.dcm", RLE_LOSSLESS, Some("dcmdrle")),
        ("rtdose_rle.dcm", RLE_LOSSLESS, Some("dcmdrle")),
        ("MR_small.dcm", JPEG_LS_LOSSLESS, Some("dcmdjpls")),
        ("MR_small_jp2klossless.dcm", JPEG_LS_LOSSLESS, Some("dcmdjpls")),
        ("SC_rgb_rle.dcm", JPEG_LS_LOSSLESS, Some("dcmdjpls")),
        ("SC_rgb_rle_2frame.dcm", JPEG_LS_LOSSLESS, Some("dcmdjpls")),
        ("SC_rgb_rle_16bit_2frame.dcm", JPEG_LS_LOSSLESS, Some("dcmdjpls")),
        ("SC_rgb_jpeg_gdcm.dcm", JPEG_LS_LOSSLESS, Some("dcmdjpls")),
        ("CT_small.dcm", JPEG_LOSSLESS_SV1, Some("dcmdjpeg")),
        ("SC_rgb_rle_2frame.dcm", JPEG_LOSSLESS_SV1, Some("dcmdjpeg")),
        ("MR_small.dcm", JPEG_2000_LOSSLESS, None),
        ("CT_small.dcm", JPEG_2000_LOSSLESS, None),
        ("MR_small_jpeg_ls_lossless.dcm", JPEG_2000_LOSSLESS, None),
        ("SC_rgb_rle_2frame.dcm", JPEG_2000_LOSSLESS, None),
        ("SC_rgb_rle_16bit_2frame.dcm", JPEG_2000_LOSSLESS, None),
        ("examples_jpeg2k.dcm", JPEG_2000_LOSSLESS, None),
    ] {
        let source = std::fs::read(dir.join(name)).expect("readable test file");
        let (_, expected) = decode(&source);
        let written = tmp.path().join(format!("{name}.{target}.dcm"));
        std::fs::write(&written, convert(&source, target).expect("converts")).expect("written");
        let dump = Command::new("dcmdump").arg(&written).output().expect("dcmdump runs");
        assert!(dump.status.success(), "dcmdump {name} as {target}: {}", String::from_utf8_lossy(&dump.stderr));
        if let Some(decompressor) = decompressor {
            let plain = tmp.path().join(format!("{name}.{target}.plain.dcm"));
            let out = Command::new(decompressor).arg(&written).arg(&plain).output().expect("DCMTK runs");
            assert!(out.status.success(), "{decompressor} {name} as {target}: {}", String::from_utf8_lossy(&out.stderr));
            let (ts, dcmtk) = decode(&std::fs::read(&plain).expect("DCMTK wrote"));
            assert_eq!(ts, EXPLICIT_VR_LITTLE_ENDIAN);
            assert!(dcmtk == expected, "{name} as {target}: DCMTK's decoding differs");
        }
        assert!(pydicom_pixels(&written) == expected, "{name} as {target}: pydicom's decoding differs");
    }
}

#[test]
fn colour_jpeg_ls_is_sample_interleaved() {
    let source = std::fs::read(test_files().join("SC_rgb_rle.dcm")).expect("readable");
    let fragment = first_fragment(&convert(&source, JPEG_LS_LOSSLESS).expect("converts"));
    // SOS: FF DA, length, component count 3, 3 × (id, table), NEAR, ILV.
    let sos = fragment.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a scan");
    assert_eq!(fragment[sos + 4], 3, "one scan with the three components");
    assert_eq!(fragment[sos + 5 + 6 + 1], 2, "ILV: sample interleaved");
}

#[test]
fn jpeg_2000_frames_are_codestreams_with_the_stored_precision() {
    let dir = test_files();
    for (name, precision, signed) in [("MR_small.dcm", 16, true), ("CT_small.dcm", 16, true), ("SC_rgb_rle_2frame.dcm", 8, false)] {
        let source = std::fs::read(dir.join(name)).expect("readable");
        let converted = convert(&source, JPEG_2000_LOSSLESS).expect("converts");
        let fragment = first_fragment(&converted);
        // SOC, then SIZ (FF 51): Lsiz (2), Rsiz (2), sizes (8 × 4), Csiz (2), then Ssiz per component.
        assert_eq!(&fragment[..4], &[0xFF, 0x4F, 0xFF, 0x51], "{name}: a J2K codestream");
        let ssiz = fragment[4 + 2 + 2 + 32 + 2];
        assert_eq!((ssiz & 0x7F) + 1, precision, "{name}: precision");
        assert_eq!(ssiz & 0x80 != 0, signed, "{name}: signedness");
        assert_eq!(fragment.len() % 2, 0, "{name}: even fragment");
        let end = if fragment.last() == Some(&0) { fragment.len() - 1 } else { fragment.len() };
        assert_eq!(&fragment[end - 2..end], &[0xFF, 0xD9], "{name}: ends with EOC (and the padding to an even length)");
    }
}

#[test]
fn lossy_jpeg_2000_is_close_smaller_and_a_new_instance() {
    let dir = test_files();
    let path = dir.join("CT_small.dcm");
    let source = std::fs::read(&path).expect("readable");
    let options = TranscodeOptions { quality: Some(80), ..TranscodeOptions::default() };
    let mut out = Vec::new();
    let report = transcode_with(&mut Cursor::new(&source), JPEG_2000, &options, &mut out).expect("converts");
    assert!(report.new_sop_instance_uid.is_some());
    let lossless = convert(&source, JPEG_2000_LOSSLESS).expect("converts");
    assert!(first_fragment(&out).len() * 3 < first_fragment(&lossless).len(), "lossy is much smaller");
    let object = OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(Cursor::new(&out)).expect("readable");
    let method = object.element(dicom_dictionary_std::tags::LOSSY_IMAGE_COMPRESSION_METHOD).expect("method").to_str().expect("text").to_string();
    assert_eq!(method.trim(), "ISO_15444_1");
    let written = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(written.path(), &out).expect("written");
    let theirs = pydicom_pixels(written.path());
    let (_, ours) = decode(&out);
    assert!(theirs == ours, "pydicom and dicom-rs decode the same lossy stream alike");
    let (_, original) = decode(&source);
    let values = |b: &[u8]| b.chunks_exact(2).map(|s| i32::from(i16::from_le_bytes([s[0], s[1]]))).collect::<Vec<_>>();
    let (a, b) = (values(&original), values(&ours));
    assert_eq!(a.len(), b.len());
    let mean = a.iter().zip(&b).map(|(x, y)| f64::from((x - y).abs())).sum::<f64>() / a.len() as f64;
    assert!(mean > 0.0 && mean < 20.0, "mean absolute error {mean}");
}

#[test]
fn lossy_conversion_makes_a_new_instance_and_lossless_keeps_it() {
    let source = std::fs::read(test_files().join("SC_rgb_rle.dcm")).expect("readable");
    let mut out = Vec::new();
    let report = transcode(&mut Cursor::new(&source), JPEG_BASELINE, &mut out).expect("converts");
    let (old, new) = report.new_sop_instance_uid.expect("a new SOP Instance UID");
    assert_ne!(old, new);
    let object = OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(Cursor::new(&out)).expect("readable");
    assert_eq!(object.meta().media_storage_sop_instance_uid().trim_end_matches('\0'), new);
    let uid = object.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID).expect("uid").to_str().expect("text").trim_end_matches('\0').to_owned();
    assert_eq!(uid, new);
    let lossy = object.element(dicom_dictionary_std::tags::LOSSY_IMAGE_COMPRESSION).expect("flag").to_str().expect("text").to_string();
    assert_eq!(lossy.trim(), "01");
    let source = std::fs::read(test_files().join("MR_small.dcm")).expect("readable");
    let report = transcode(&mut Cursor::new(&source), RLE_LOSSLESS, &mut Vec::new()).expect("converts");
    assert_eq!(report.new_sop_instance_uid, None);
    assert_eq!(report.frames, 1);
    assert!(report.pixel_data_reencoded);
}

#[test]
fn data_set_output_has_no_file_meta() {
    let source = std::fs::read(test_files().join("MR_small_RLE.dcm")).expect("readable");
    let mut out = Vec::new();
    let options = TranscodeOptions { output: Output::DataSet, ..TranscodeOptions::default() };
    transcode_with(&mut Cursor::new(&source), IMPLICIT_VR_LITTLE_ENDIAN, &options, &mut out).expect("converts");
    // Implicit VR LE: the first element is a group 0008 tag, no preamble, no DICM.
    assert_eq!(&out[0..2], &[0x08, 0x00]);
    assert!(!out.windows(4).take(200).any(|w| w == b"DICM"));
}

#[test]
fn corrupt_or_impossible_input_is_a_clear_error() {
    let dir = test_files();
    for name in ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm"] {
        let mut source = std::fs::read(dir.join(name)).expect("readable");
        // Scramble the compressed stream after the header region, keeping its length.
        let start = source.len() - source.len() / 3;
        for (i, b) in source[start..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        let mut out = Vec::new();
        let result = transcode(&mut Cursor::new(&source), EXPLICIT_VR_LITTLE_ENDIAN, &mut out);
        if let Err(e) = &result {
            assert!(matches!(e, Error::PixelData { .. } | Error::Invalid { .. }), "{name}: {e}");
            assert!(out.is_empty(), "{name}: nothing written after an error");
        }
        // Truncated in the middle of the pixel data: never a partial object.
        let truncated = &source[..source.len() - source.len() / 4];
        let mut out = Vec::new();
        let result = transcode(&mut Cursor::new(truncated), EXPLICIT_VR_LITTLE_ENDIAN, &mut out);
        assert!(result.is_err(), "{name}: truncated input must fail");
        assert!(out.is_empty(), "{name}: nothing written after an error");
    }
    let source = std::fs::read(dir.join("MR_small.dcm")).expect("readable");
    assert!(matches!(convert(&source, "1.2.3.4"), Err(Error::UnknownTransferSyntax { .. })));
    let rgb32 = std::fs::read(dir.join("SC_rgb_rle_32bit_2frame.dcm")).expect("readable");
    assert!(matches!(convert(&rgb32, JPEG_2000_LOSSLESS), Err(Error::PixelData { .. })), "32-bit samples into JPEG 2000");
    assert!(matches!(convert(&source, JPEG_BASELINE), Err(Error::Unsupported { .. })), "16-bit into JPEG Baseline");
    assert!(matches!(convert(b"not dicom at all", EXPLICIT_VR_LITTLE_ENDIAN), Err(Error::Invalid { .. })));
}
