//! Multi-frame objects through our per-frame decoders: in each syntax we decode ourselves (RLE,
//! JPEG-LS, JPEG 2000, JPEG Lossless, JPEG Extended and Baseline), objects written by our own
//! encoders from known native multi-frame objects, and pydicom's multi-frame files, decode to
//! exactly the expected pixels, also when each frame spans several fragments (found through the
//! Basic Offset Table, or by the markers without one), whole or one frame at a time. Corrupt
//! frames (truncated, garbage, empty) are errors, never panics.
//!
//! DCMTK, and Python 3 with pydicom, are required: `scripts/test.sh` installs them.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::*;
use dicom_dictionary_std::tags;
use pacs_codec::render;
use pacs_codec::syntax::*;
use pacs_codec::{Error, Result};

/// A CT-like series as one native multi-frame object: 16 bits allocated, 12 stored.
fn ct_frames(frames: u16) -> Vec<u8> {
    let samples = (0..usize::from(frames)).flat_map(|f| ct_phantom(128, f * 3, 7)).collect();
    Synthetic { frames, ..Synthetic::mono(128, 128, 16, 12, samples) }.bytes()
}

/// The decoded frames of an object one at a time, through rendering's frame decoder.
fn frame_by_frame(bytes: &[u8]) -> Vec<u8> {
    let object = open(bytes);
    (1..=render::frame_count(&object)).flat_map(|frame| render::decode_frame(&object, frame).unwrap_or_else(|e| panic!("frame {frame}: {e}")).1).collect()
}

/// Checks that `converted` decodes to `expected`: whole, frame by frame, and with its frames
/// split over several fragments (with and without a Basic Offset Table).
fn check_frames(name: &str, converted: &[u8], expected: &[u8]) {
    let frames = number(converted, tags::NUMBER_OF_FRAMES);
    assert_eq!(fragments(converted).len() as i64, frames, "{name}: one fragment per frame");
    let (_, ours) = decode(converted);
    assert!(ours == expected, "{name}: the frames decode to other pixels");
    assert!(frame_by_frame(converted) == expected, "{name}: frame by frame, other pixels");
    let ts = open(converted).meta().transfer_syntax().trim_end_matches('\0').to_owned();
    if ts == RLE_LOSSLESS {
        return; // An RLE frame is one fragment (PS3.5 A.4.2).
    }
    for table in [true, false] {
        let split = split_fragments(converted, table);
        assert_eq!(fragments(&split).len() as i64, 3 * frames);
        let (_, ours) = decode(&split);
        assert!(ours == expected, "{name} in three fragments per frame (offset table: {table}): other pixels");
        assert!(frame_by_frame(&split) == expected, "{name} in three fragments per frame (offset table: {table}), frame by frame: other pixels");
    }
}

#[test]
fn multi_frame_objects_decode_to_the_expected_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    let ct = ct_frames(6);
    let rgb = pydicom_file("SC_rgb_rle_2frame.dcm");
    let rgb16 = pydicom_file("SC_rgb_rle_16bit_2frame.dcm");
    let mut checked = 0;
    for (name, source) in [("ct", &ct), ("SC_rgb_rle_2frame", &rgb), ("SC_rgb_rle_16bit_2frame", &rgb16)] {
        let (_, original) = decode(source);
        for target in [RLE_LOSSLESS, JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_LOSSLESS_SV1] {
            let converted = convert(source, target).unwrap_or_else(|e| panic!("{name} to {target}: {e}"));
            check_frames(&format!("{name} as {target}"), &converted, &original);
            checked += 1;
        }
    }
    // Lossy: the frames decode to what DCMTK's dcmdjpeg gives for the same streams.
    for (name, source, target) in [("ct", &ct, JPEG_EXTENDED), ("SC_rgb_rle_2frame", &rgb, JPEG_BASELINE)] {
        let converted = convert(source, target).unwrap();
        let path = tmp.path().join(format!("{name}.{target}.dcm"));
        std::fs::write(&path, &converted).unwrap();
        let dcmtk = dcmtk_pixels("dcmdjpeg", &path);
        let (_, ours) = decode(&converted);
        let max = if name == "ct" {
            words(&ours).iter().zip(words(&dcmtk)).map(|(a, b)| a.abs_diff(b)).max()
        } else {
            ours.iter().zip(&dcmtk).map(|(a, b)| u16::from(a.abs_diff(*b))).max()
        };
        assert!(max.unwrap_or(0) <= 1, "{name} as {target}: dcmdjpeg differs by {max:?}");
        check_frames(&format!("{name} as {target}"), &converted, &ours);
        checked += 1;
    }
    assert_eq!(checked, 14);
}

#[test]
fn pydicom_multi_frame_files_decode_to_the_expected_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    // RLE: 15 frames of 32-bit doses, 2 frames of 8 and 16-bit colour; against DCMTK's dcmdrle.
    for name in ["rtdose_rle.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_rle_16bit_2frame.dcm"] {
        let path = test_files().join(name);
        let copy = tmp.path().join(name);
        std::fs::copy(&path, &copy).unwrap();
        check_frames(name, &pydicom_file(name), &dcmtk_pixels("dcmdrle", &copy));
    }
    // JPEG Baseline, 30 frames of YBR_FULL_422: decoded to RGB as dcmdjpeg does.
    let name = "examples_ybr_color.dcm";
    let source = pydicom_file(name);
    let copy = tmp.path().join(name);
    std::fs::write(&copy, &source).unwrap();
    let dcmtk = dcmtk_pixels("dcmdjpeg", &copy);
    let (_, ours) = decode(&source);
    assert_eq!(ours.len(), 30 * 240 * 320 * 3);
    let max = ours.iter().zip(&dcmtk).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    assert!(max <= 1, "{name}: dcmdjpeg differs by {max}");
    let native = convert(&source, EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
    assert_eq!(text(&native, tags::PHOTOMETRIC_INTERPRETATION), "RGB");
    check_frames(name, &source, &ours);
}

/// Asserts a decoding error that is not a caught panic.
fn assert_clean_error<T: std::fmt::Debug>(what: &str, result: Result<T>) {
    match result {
        Err(Error::PixelData { reason, .. }) => assert!(!reason.contains("panicked"), "{what}: a panic: {reason}"),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn corrupt_frames_are_errors_never_panics() {
    let ct = ct_frames(3);
    let grey8 = Synthetic { frames: 3, ..Synthetic::mono(64, 64, 8, 8, noise(3 * 64 * 64, 6, 3)) }.bytes();
    for (source, target) in
        [(&ct, RLE_LOSSLESS), (&ct, JPEG_LS_LOSSLESS), (&ct, JPEG_2000_LOSSLESS), (&ct, JPEG_LOSSLESS_SV1), (&ct, JPEG_EXTENDED), (&grey8, JPEG_BASELINE)]
    {
        let converted = convert(source, target).unwrap();
        let good = fragments(&converted);
        let second = &good[1];
        let garbage: Vec<u8> = noise(second.len(), 8, 11).into_iter().map(|b| b as u8).collect();
        // Garbage after the frame's own first bytes (SOI and the first marker).
        let scrambled: Vec<u8> = second[..16].iter().copied().chain(garbage[16..].iter().copied()).collect();
        for (what, bad) in
            [("truncated", second[..(second.len() / 2) & !1].to_vec()), ("garbage", garbage.clone()), ("scrambled", scrambled), ("empty", Vec::new())]
        {
            let label = format!("{target}, frame 2 {what}");
            let mut replaced = good.clone();
            replaced[1] = bad;
            let corrupt = with_fragments(&converted, Vec::new(), replaced);
            let mut out = Vec::new();
            let result = pacs_codec::transcode(&mut std::io::Cursor::new(&corrupt), EXPLICIT_VR_LITTLE_ENDIAN, &mut out);
            if what == "scrambled" && result.is_ok() {
                // A decoder may read scrambled entropy-coded data as other pixels; what matters
                // is that it neither panics nor aborts.
                continue;
            }
            assert_clean_error(&label, result);
            assert!(out.is_empty(), "{label}: nothing written");
            let object = open(&corrupt);
            assert_clean_error(&format!("{label}, rendered"), render::decode_frame(&object, 2));
            if what != "empty" {
                // (An empty item is dropped when the object is read: two fragments for three
                // frames, which is an error for every frame.)
                assert!(render::decode_frame(&object, 1).is_ok(), "{label}: frame 1 still decodes");
            }
        }
    }
}
