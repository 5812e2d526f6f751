//! Frame-by-frame conversion of multi-frame objects: the streamed output decodes to the same
//! pixels as the in-memory conversion, with the same attributes but for the expected changes,
//! for every pair of the syntaxes streamed (native, RLE, JPEG-LS lossless, JPEG 2000 lossless,
//! JPEG Lossless), whole frames or frames over several fragments; DCMTK's dcmdump and pydicom
//! read it; a corrupt frame is an error, with nothing written when it is in the first batch.
//!
//! DCMTK, and Python 3 with pydicom, are required: `scripts/test.sh` installs them.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::Cursor;
use std::process::Command;

use common::*;
use dicom_core::Tag;
use dicom_core::header::Header;
use dicom_dictionary_std::tags;
use pacs_codec::syntax::*;
use pacs_codec::{Error, TranscodeOptions, TranscodeReport, transcode_with};

/// Converts with the streaming path forced (`stream`) or ruled out.
fn run(source: &[u8], target: &str, stream: bool) -> pacs_codec::Result<(Vec<u8>, TranscodeReport)> {
    let options = TranscodeOptions { stream_threshold: Some(if stream { 0 } else { u64::MAX }), ..TranscodeOptions::default() };
    let mut out = Vec::new();
    let report = transcode_with(&mut Cursor::new(source), target, &options, &mut out)?;
    Ok((out, report))
}

/// A CT-like series: 16 bits allocated, 12 stored, `frames` frames of 64 × 48.
fn ct(frames: u16) -> Vec<u8> {
    let samples = (0..usize::from(frames)).flat_map(|f| ct_phantom(64, f * 3, 5)[..64 * 48].to_vec()).collect();
    Synthetic { frames, ..Synthetic::mono(48, 64, 16, 12, samples) }.bytes()
}

/// An RGB series, 8 bits, `frames` frames of 40 × 30.
fn rgb(frames: u16) -> Vec<u8> {
    let samples = (0..u32::from(frames)).flat_map(|f| (0..30 * 40 * 3u32).map(move |i| (i / 3 % 40) * 5 + i / 120 + f * 7 + (i % 3) * 30)).collect();
    Synthetic { frames, samples_per_pixel: 3, ..Synthetic::mono(30, 40, 8, 8, samples) }.bytes()
}

/// Every fragment cut into three, with a Basic Offset Table of the new fragments when `table`.
fn split(bytes: &[u8], table: bool) -> Vec<u8> {
    let (mut pieces, mut offsets, mut offset) = (Vec::new(), Vec::new(), 0u32);
    for fragment in fragments(bytes) {
        offsets.push(offset);
        let third = (fragment.len() / 3) & !1;
        for piece in [&fragment[..third], &fragment[third..2 * third], &fragment[2 * third..]] {
            offset += 8 + piece.len() as u32;
            pieces.push(piece.to_vec());
        }
    }
    with_fragments(bytes, if table { offsets } else { Vec::new() }, pieces)
}

/// The attributes of an object as text, but Pixel Data and the group lengths.
fn attributes(bytes: &[u8]) -> Vec<(Tag, String)> {
    let object = open(bytes);
    let text = |v: Result<std::borrow::Cow<'_, str>, _>| v.map(|s| s.trim_end_matches('\0').trim().to_owned()).unwrap_or_default();
    let meta = object.meta().to_element_iter().filter(|e| e.tag().element() != 0).map(|e| (e.tag(), text(e.to_str())));
    let mut out: Vec<(Tag, String)> =
        meta.chain(object.iter().filter(|e| e.tag() != tags::PIXEL_DATA && e.tag().element() != 0).map(|e| (e.tag(), text(e.to_str())))).collect();
    out.sort_by_key(|(tag, _)| *tag);
    out
}

/// Checks that DCMTK's dcmdump and pydicom read a streamed file, pydicom to `expected`.
fn external_readers(name: &str, bytes: &[u8], expected: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamed.dcm");
    std::fs::write(&path, bytes).unwrap();
    let dump = Command::new("/usr/bin/dcmdump").arg("-E").arg(&path).output().expect("dcmdump runs: scripts/test.sh installs DCMTK");
    assert!(dump.status.success(), "{name}: dcmdump: {}", String::from_utf8_lossy(&dump.stderr));
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("(7fe0,0010)"), "{name}: dcmdump shows no Pixel Data");
    let (_, pixels) = pydicom_pixels(&path);
    assert!(pixels == expected, "{name}: pydicom decodes other pixels");
}

#[test]
fn streamed_and_in_memory_conversions_agree_for_every_pair() {
    let native = [("ct", ct(7)), ("rgb", rgb(6))];
    let targets = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS, JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_LOSSLESS_SV1];
    let mut streamed_count = 0;
    for (name, original) in &native {
        let (_, expected) = decode(original);
        // The sources: the native object, and it encoded (in memory) in each target syntax.
        let mut sources = vec![(EXPLICIT_VR_LITTLE_ENDIAN.to_owned(), original.clone())];
        for target in &targets[1..] {
            sources.push(((*target).to_owned(), run(original, target, false).unwrap().0));
        }
        for (from, source) in &sources {
            for target in targets {
                if *from == target {
                    continue;
                }
                let label = format!("{name}: {from} to {target}");
                let (memory, memory_report) = run(source, target, false).unwrap_or_else(|e| panic!("{label}, in memory: {e}"));
                let (streamed, report) = run(source, target, true).unwrap_or_else(|e| panic!("{label}, streamed: {e}"));
                assert!(!memory_report.streamed, "{label}: the threshold keeps it in memory");
                assert!(report.streamed, "{label}: streamed");
                assert_eq!(report.frames, memory_report.frames, "{label}");
                assert_eq!(report.pixel_data_reencoded, memory_report.pixel_data_reencoded, "{label}");
                assert_eq!(report.new_sop_instance_uid, None, "{label}: lossless");
                assert_eq!(open(&streamed).meta().transfer_syntax().trim_end_matches('\0'), target, "{label}");
                assert!(decode(&streamed).1 == expected, "{label}: the streamed object decodes to other pixels");
                assert!(decode(&memory).1 == expected, "{label}: the object converted in memory decodes to other pixels");
                let mut memory_attributes = attributes(&memory);
                if target == JPEG_LS_LOSSLESS && *name == "ct" {
                    // dicom-rs's monochrome JPEG-LS encoder, in memory, also writes Lossy Image
                    // Compression 00 and the Encapsulated Pixel Data Value Total Length, which a
                    // stream does not know before its end.
                    memory_attributes.retain(|(tag, _)| *tag != tags::LOSSY_IMAGE_COMPRESSION && *tag != tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH);
                }
                assert_eq!(attributes(&streamed), memory_attributes, "{label}: attributes");
                streamed_count += 1;
                let object = open(&streamed);
                let pixel_data = object.element(tags::PIXEL_DATA).unwrap();
                if let Some(fragments) = pixel_data.value().fragments() {
                    assert_eq!(fragments.len() as i64, number(&streamed, tags::NUMBER_OF_FRAMES), "{label}: one fragment per frame");
                    assert!(pixel_data.value().offset_table().is_none_or(|t| t.is_empty()), "{label}: an empty Basic Offset Table");
                } else {
                    // Native output holds the in-memory path's bytes (OB or OW for 8 bits).
                    let memory_pixels = open(&memory).element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().into_owned();
                    assert!(pixel_data.to_bytes().unwrap() == memory_pixels, "{label}: other pixel bytes than in memory");
                }
                if *from == EXPLICIT_VR_LITTLE_ENDIAN {
                    external_readers(&label, &streamed, &expected);
                }
            }
        }
    }
    // 2 natives × 6 sources × 5 targets each.
    assert_eq!(streamed_count, 2 * 6 * 5);
}

#[test]
fn frames_over_several_fragments_are_streamed() {
    for (name, original) in [("ct", ct(5)), ("rgb", rgb(5))] {
        let (_, expected) = decode(&original);
        for from in [JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_LOSSLESS_SV1] {
            let encoded = run(&original, from, false).unwrap().0;
            for table in [true, false] {
                let source = split(&encoded, table);
                assert_eq!(fragments(&source).len(), 15);
                for target in [EXPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS] {
                    let label = format!("{name}: {from} in three fragments per frame (offset table: {table}) to {target}");
                    let (streamed, report) = run(&source, target, true).unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert!(report.streamed, "{label}");
                    assert!(decode(&streamed).1 == expected, "{label}: other pixels");
                }
            }
        }
    }
}

#[test]
fn elements_after_pixel_data_are_kept() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut object = open(&ct(3));
    object.put(DataElement::new(Tag(0xFFFC, 0xFFFC), VR::OB, PrimitiveValue::from(vec![0u8; 6])));
    let mut source = Vec::new();
    object.write_all(&mut source).unwrap();
    for target in [IMPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS] {
        let (streamed, report) = run(&source, target, true).unwrap();
        assert!(report.streamed);
        let (memory, _) = run(&source, target, false).unwrap();
        assert_eq!(attributes(&streamed), attributes(&memory), "{target}");
        assert!(open(&streamed).element(Tag(0xFFFC, 0xFFFC)).is_ok(), "{target}: the trailing padding is kept");
        assert!(decode(&streamed).1 == decode(&source).1);
    }
}

#[test]
fn a_corrupt_frame_fails_the_streamed_conversion() {
    // 12 frames: more than one batch (two frames per core).
    let original = ct(12);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let encoded = run(&original, RLE_LOSSLESS, false).unwrap().0;
    for (frame, written) in [(0, false), (11, true)] {
        if written && 2 * threads.max(1) >= 12 {
            continue; // One batch holds every frame on this machine.
        }
        let mut replaced = fragments(&encoded);
        replaced[frame] = vec![0xAB; 64];
        let corrupt = with_fragments(&encoded, Vec::new(), replaced);
        let options = TranscodeOptions { stream_threshold: Some(0), ..TranscodeOptions::default() };
        let mut out = Vec::new();
        let result = transcode_with(&mut Cursor::new(&corrupt), EXPLICIT_VR_LITTLE_ENDIAN, &options, &mut out);
        match result {
            Err(Error::PixelData { reason, .. }) => {
                assert!(reason.contains(&format!("frame {}", frame + 1)), "{reason}");
                assert_eq!(reason.contains("incomplete"), written, "{reason}");
            }
            other => panic!("frame {}: {other:?}", frame + 1),
        }
        assert_eq!(!out.is_empty(), written, "frame {}: written before the failure", frame + 1);
    }
    // An input cut short in its last frames: an error that says the output is incomplete.
    if 2 * threads < 12 {
        let native = original.clone();
        let cut = &native[..native.len() - native.len() / 8];
        let options = TranscodeOptions { stream_threshold: Some(0), ..TranscodeOptions::default() };
        let mut out = Vec::new();
        match transcode_with(&mut Cursor::new(cut), RLE_LOSSLESS, &options, &mut out) {
            Err(Error::Invalid { reason }) => assert!(reason.contains("incomplete"), "{reason}"),
            other => panic!("a truncated input: {other:?}"),
        }
        assert!(!out.is_empty());
    }
    // Fewer fragments than frames: an error too.
    let mut short = fragments(&encoded);
    short.truncate(10);
    let corrupt = with_fragments(&encoded, Vec::new(), short);
    assert!(matches!(run(&corrupt, EXPLICIT_VR_LITTLE_ENDIAN, true), Err(Error::PixelData { .. })));
}

#[test]
fn small_and_single_frame_objects_stay_in_memory() {
    let (_, report) = run(&ct(3), RLE_LOSSLESS, false).unwrap();
    assert!(!report.streamed);
    let mut out = Vec::new();
    let report = pacs_codec::transcode(&mut Cursor::new(ct(3)), RLE_LOSSLESS, &mut out).unwrap();
    assert!(!report.streamed, "below the default threshold");
    let (_, report) = run(&ct(1), RLE_LOSSLESS, true).unwrap();
    assert!(!report.streamed, "one frame");
    // Signed monochrome JPEG-LS is left to dicom-rs's encoder, in memory.
    let signed = Synthetic { frames: 3, signed: true, ..Synthetic::mono(16, 16, 16, 16, noise(3 * 256, 16, 9)) }.bytes();
    let (_, report) = run(&signed, JPEG_LS_LOSSLESS, true).unwrap();
    assert!(!report.streamed, "signed monochrome JPEG-LS");
    let (_, report) = run(&signed, RLE_LOSSLESS, true).unwrap();
    assert!(report.streamed, "signed samples to RLE");
    // Lossy targets are converted in memory: their compression ratio is in the header.
    let (_, report) = run(&ct(3), JPEG_EXTENDED, true).unwrap();
    assert!(!report.streamed && report.new_sop_instance_uid.is_some());
}

#[test]
fn the_data_set_alone_is_streamed_too() {
    use pacs_codec::Output;
    let source = run(&ct(5), RLE_LOSSLESS, false).unwrap().0;
    let data_set = |target: &str, stream: bool| {
        let options = TranscodeOptions { stream_threshold: Some(if stream { 0 } else { u64::MAX }), output: Output::DataSet, ..TranscodeOptions::default() };
        let mut out = Vec::new();
        let report = transcode_with(&mut Cursor::new(&source), target, &options, &mut out).unwrap();
        assert_eq!(report.streamed, stream);
        out
    };
    // Native: the same bytes as in memory.
    let streamed = data_set(EXPLICIT_VR_LITTLE_ENDIAN, true);
    assert!(streamed == data_set(EXPLICIT_VR_LITTLE_ENDIAN, false), "the same data set as in memory");
    assert!(!streamed.starts_with(&[0; 128]) && !streamed.windows(4).take(200).any(|w| w == b"DICM"), "no preamble nor File Meta");
    // Encapsulated: the data set of the whole streamed file.
    let whole = run(&source, JPEG_2000_LOSSLESS, true).unwrap().0;
    let alone = data_set(JPEG_2000_LOSSLESS, true);
    assert!(whole.ends_with(&alone) && alone.len() < whole.len(), "the streamed file's data set");
}

#[test]
fn lossy_colour_jpeg_streams_to_rgb() {
    // pydicom's 30 frames of JPEG Baseline YBR_FULL_422: decoded to RGB, as in memory.
    let source = pydicom_file("examples_ybr_color.dcm");
    for target in [EXPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS, JPEG_2000_LOSSLESS] {
        let (streamed, report) = run(&source, target, true).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert!(report.streamed, "{target}");
        let (memory, _) = run(&source, target, false).unwrap();
        assert_eq!(text(&streamed, tags::PHOTOMETRIC_INTERPRETATION), "RGB", "{target}");
        assert_eq!(attributes(&streamed), attributes(&memory), "{target}: attributes");
        assert!(decode(&streamed).1 == decode(&memory).1, "{target}: other pixels than in memory");
    }
}
