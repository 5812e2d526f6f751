//! Frame-by-frame conversion of multi-frame objects: the streamed output decodes to the same
//! pixels as the in-memory conversion, with the same attributes but for the expected changes,
//! for every pair of the syntaxes streamed (native, RLE, JPEG-LS lossless, JPEG 2000 lossless,
//! JPEG Lossless), whole frames or frames over several fragments; DCMTK's dcmdump and pydicom
//! read it; a corrupt frame is an error, with nothing written when it is in the first batch.
//! Lossy targets (JPEG Baseline and Extended, JPEG-LS near-lossless, JPEG 2000) stream too, with
//! the attributes and fragments of the in-memory path but a SOP Instance UID of their own, read
//! by DCMTK's dcmdjpeg and dcmdjpls and by pydicom within the loss of the codec; nothing is
//! written when any of their frames fails.
//!
//! DCMTK, and Python 3 with pydicom, numpy and pylibjpeg, are required: `scripts/test.sh`
//! installs them.

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
                let source = split_fragments(&encoded, table);
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
    // Lossy targets stream too (their fragments wait for the header in a temporary file); but
    // signed monochrome JPEG-LS near-lossless is dicom-rs's, in memory.
    let (_, report) = run(&ct(3), JPEG_EXTENDED, true).unwrap();
    assert!(report.streamed && report.new_sop_instance_uid.is_some());
    let (_, report) = run(&signed, JPEG_LS_NEAR_LOSSLESS, true).unwrap();
    assert!(!report.streamed && report.new_sop_instance_uid.is_some(), "signed monochrome JPEG-LS near-lossless");
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

/// Converts with the streaming path forced (`stream`) or ruled out, at `quality`.
fn run_lossy(source: &[u8], target: &str, quality: Option<u8>, stream: bool) -> pacs_codec::Result<(Vec<u8>, TranscodeReport)> {
    let options = TranscodeOptions { quality, stream_threshold: Some(if stream { 0 } else { u64::MAX }), ..TranscodeOptions::default() };
    let mut out = Vec::new();
    let report = transcode_with(&mut Cursor::new(source), target, &options, &mut out)?;
    Ok((out, report))
}

/// The samples of native little-endian pixel data of `bits_allocated` bits, as numbers.
fn samples(bytes: &[u8], bits_allocated: i64) -> Vec<i64> {
    if bits_allocated == 8 { bytes.iter().map(|&b| i64::from(b)).collect() } else { words(bytes).into_iter().map(i64::from).collect() }
}

/// The Basic Offset Table of a Part 10 object's encapsulated Pixel Data.
fn offset_table(bytes: &[u8]) -> Vec<u32> {
    let object = open(bytes);
    object.element(tags::PIXEL_DATA).unwrap().value().offset_table().map(|t| t.to_vec()).unwrap_or_default()
}

#[test]
fn lossy_targets_stream_with_the_attributes_of_the_in_memory_path() {
    let dir = tempfile::tempdir().unwrap();
    // (source, target, quality, the method recorded, DCMTK's decoder, the largest error against
    // the original and the mean error; JPEG 2000 is read by pydicom only, DCMTK has no decoder).
    type Case = (&'static str, &'static str, Option<u8>, &'static str, Option<&'static str>, i64, f64);
    let cases: [Case; 9] = [
        ("ct", JPEG_EXTENDED, None, "ISO_10918_1", Some("dcmdjpeg"), 32, 4.0),
        // NEAR = 2^(12 - 4) × (100 - 90) / 100 = 25: no sample further off than that.
        ("ct", JPEG_LS_NEAR_LOSSLESS, Some(90), "ISO_14495_1", Some("dcmdjpls"), 25, 8.0),
        ("ct", JPEG_2000, Some(95), "ISO_15444_1", None, 80, 10.0),
        // The synthetic colour frames wrap around 255 in sharp edges, which 4:2:2 chroma blurs.
        ("rgb", JPEG_BASELINE, None, "ISO_10918_1", Some("dcmdjpeg"), 160, 6.0),
        ("rgb", JPEG_EXTENDED, Some(70), "ISO_10918_1", Some("dcmdjpeg"), 180, 6.5),
        // NEAR = 2^(8 - 4) × (100 - 80) / 100 = 3.
        ("rgb", JPEG_LS_NEAR_LOSSLESS, Some(80), "ISO_14495_1", Some("dcmdjpls"), 3, 2.5),
        ("rgb", JPEG_2000, Some(90), "ISO_15444_1", None, 20, 1.0),
        // The default quality of JPEG-LS near-lossless is lossless: a new instance all the same,
        // without ratio nor method.
        ("ct", JPEG_LS_NEAR_LOSSLESS, None, "", Some("dcmdjpls"), 0, 0.0),
        ("rgb", JPEG_LS_NEAR_LOSSLESS, None, "", Some("dcmdjpls"), 0, 0.0),
    ];
    let natives = [("ct", ct(7)), ("rgb", rgb(6))];
    for (name, target, quality, method, dcmtk, max_error, mean_error) in cases {
        let native = &natives.iter().find(|(n, _)| *n == name).unwrap().1;
        let bits_allocated = number(native, tags::BITS_ALLOCATED);
        let original = samples(&decode(native).1, bits_allocated);
        // From native samples, and from RLE (decoded frame by frame on the way).
        let rle = run(native, RLE_LOSSLESS, false).unwrap().0;
        for (from, source) in [(EXPLICIT_VR_LITTLE_ENDIAN, native), (RLE_LOSSLESS, &rle)] {
            let label = format!("{name} from {from} to {target} (quality {quality:?})");
            let (memory, memory_report) = run_lossy(source, target, quality, false).unwrap_or_else(|e| panic!("{label}, in memory: {e}"));
            let (streamed, report) = run_lossy(source, target, quality, true).unwrap_or_else(|e| panic!("{label}, streamed: {e}"));
            assert!(report.streamed && !memory_report.streamed, "{label}");
            assert_eq!(report.frames, memory_report.frames, "{label}");
            assert!(report.pixel_data_reencoded, "{label}");

            // A new instance each, in the data set and the File Meta Information.
            let (old, new) = report.new_sop_instance_uid.clone().unwrap_or_else(|| panic!("{label}: a new SOP Instance UID"));
            let (memory_old, memory_new) = memory_report.new_sop_instance_uid.clone().unwrap();
            assert_eq!((old.as_str(), memory_old.as_str()), ("2.25.1234", "2.25.1234"), "{label}");
            assert_ne!(new, memory_new, "{label}: every conversion makes its own instance");
            assert_eq!(text(&streamed, tags::SOP_INSTANCE_UID), new, "{label}");
            assert_eq!(open(&streamed).meta().media_storage_sop_instance_uid().trim_end_matches('\0'), new, "{label}");
            assert_eq!(open(&streamed).meta().transfer_syntax().trim_end_matches('\0'), target, "{label}");

            // The attributes of the in-memory path, but for the SOP Instance UID.
            let without_uid = |bytes: &[u8]| -> Vec<(Tag, String)> {
                attributes(bytes).into_iter().filter(|(tag, _)| *tag != tags::SOP_INSTANCE_UID && *tag != tags::MEDIA_STORAGE_SOP_INSTANCE_UID).collect()
            };
            assert_eq!(without_uid(&streamed), without_uid(&memory), "{label}: attributes");
            assert_eq!(text(&streamed, tags::LOSSY_IMAGE_COMPRESSION), "01", "{label}");
            let object = open(&streamed);
            if method.is_empty() {
                assert!(object.element(tags::LOSSY_IMAGE_COMPRESSION_RATIO).is_err(), "{label}: no ratio when lossless");
                assert!(object.element(tags::LOSSY_IMAGE_COMPRESSION_METHOD).is_err(), "{label}: no method when lossless");
            } else {
                assert_eq!(text(&streamed, tags::LOSSY_IMAGE_COMPRESSION_METHOD), method, "{label}");
                let ratio: f64 = text(&streamed, tags::LOSSY_IMAGE_COMPRESSION_RATIO).parse().unwrap();
                let memory_ratio: f64 = text(&memory, tags::LOSSY_IMAGE_COMPRESSION_RATIO).parse().unwrap();
                assert!((ratio - memory_ratio).abs() < 1e-4, "{label}: ratio {ratio} streamed, {memory_ratio} in memory");
                // The ratio is that of the whole pixel data.
                let compressed: usize = fragments(&streamed).iter().map(Vec::len).sum();
                let decoded = (decode(native).1.len()) as f64;
                assert!((ratio - decoded / compressed as f64).abs() < 0.01 * ratio, "{label}: ratio {ratio}, {decoded} bytes in {compressed}");
                assert!(ratio > 1.2, "{label}: ratio {ratio}");
            }

            // The fragments and the Basic Offset Table of the in-memory path.
            assert_eq!(fragments(&streamed).len(), report.frames as usize, "{label}: one fragment per frame");
            assert!(fragments(&streamed) == fragments(&memory), "{label}: other fragments than in memory");
            assert_eq!(offset_table(&streamed), offset_table(&memory), "{label}: Basic Offset Table");
            assert_eq!(offset_table(&streamed).len(), report.frames as usize, "{label}: a Basic Offset Table");

            // Decoded by us, DCMTK and pydicom: within the codec's loss of the original.
            let (_, ours) = decode(&streamed);
            let ours = samples(&ours, bits_allocated);
            let (max, mean) = errors(&original, &ours);
            println!("{label}: error max {max}, mean {mean:.3}");
            assert!(max <= max_error && mean <= mean_error, "{label}: error max {max} (at most {max_error}), mean {mean:.3} (at most {mean_error})");
            let path = dir.path().join(format!("{name}-{from}-{target}-{quality:?}.dcm"));
            std::fs::write(&path, &streamed).unwrap();
            if let Some(tool) = dcmtk {
                let theirs = samples(&dcmtk_pixels(tool, &path), bits_allocated);
                let (max, _) = errors(&ours, &theirs);
                assert!(max <= 1, "{label}: {tool} differs from us by {max}");
            }
            let (_, theirs) = pydicom_pixels(&path);
            let (max, mean) = errors(&ours, &samples(&theirs, bits_allocated));
            // pylibjpeg-libjpeg upsamples 4:2:2 chroma otherwise than libjpeg at the sharp edges.
            let bound = if text(&streamed, tags::PHOTOMETRIC_INTERPRETATION) == "YBR_FULL_422" { 24 } else { 2 };
            assert!(max <= bound && mean < 0.5, "{label}: pydicom differs from us by {max} at most, {mean:.3} on average");
        }
    }
}

#[test]
fn a_failed_lossy_conversion_writes_nothing() {
    let original = ct(12);
    let encoded = run(&original, RLE_LOSSLESS, false).unwrap().0;
    let options = TranscodeOptions { stream_threshold: Some(0), ..TranscodeOptions::default() };
    // A corrupt frame in the first batch and in the last one: nothing written either way.
    for frame in [0, 11] {
        let mut replaced = fragments(&encoded);
        replaced[frame] = vec![0xAB; 64];
        let corrupt = with_fragments(&encoded, Vec::new(), replaced);
        for target in [JPEG_EXTENDED, JPEG_2000, JPEG_LS_NEAR_LOSSLESS] {
            let mut out = Vec::new();
            match transcode_with(&mut Cursor::new(&corrupt), target, &options, &mut out) {
                Err(Error::PixelData { reason, .. }) => {
                    assert!(reason.contains(&format!("frame {}", frame + 1)), "{reason}");
                    assert!(!reason.contains("incomplete"), "{reason}");
                }
                other => panic!("frame {} to {target}: {other:?}", frame + 1),
            }
            assert!(out.is_empty(), "frame {} to {target}: {} bytes written", frame + 1, out.len());
        }
    }
    // An input cut short in its last frames.
    let cut = &original[..original.len() - original.len() / 8];
    let mut out = Vec::new();
    match transcode_with(&mut Cursor::new(cut), JPEG_EXTENDED, &options, &mut out) {
        Err(Error::Invalid { reason }) => assert!(!reason.contains("incomplete"), "{reason}"),
        other => panic!("a truncated input: {other:?}"),
    }
    assert!(out.is_empty(), "{} bytes written", out.len());
    // A temporary folder that does not exist: an error before anything is read or written.
    let nowhere = TranscodeOptions { temp_dir: Some("/nonexistent/folder".into()), ..options.clone() };
    let mut out = Vec::new();
    let result = transcode_with(&mut Cursor::new(&original), JPEG_EXTENDED, &nowhere, &mut out);
    assert!(matches!(result, Err(Error::TempFile { action: "creating", .. })), "{result:?}");
    assert!(out.is_empty());
}

#[test]
fn the_temporary_file_of_a_lossy_conversion_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let options = TranscodeOptions { stream_threshold: Some(0), temp_dir: Some(dir.path().to_owned()), ..TranscodeOptions::default() };
    let mut out = Vec::new();
    let report = transcode_with(&mut Cursor::new(ct(5)), JPEG_EXTENDED, &options, &mut out).unwrap();
    assert!(report.streamed);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the temporary file is gone");
    // The data set alone: the streamed file's data set but for the SOP Instance UID.
    let data_set = TranscodeOptions { output: pacs_codec::Output::DataSet, ..options };
    let mut alone = Vec::new();
    let report = transcode_with(&mut Cursor::new(ct(5)), JPEG_EXTENDED, &data_set, &mut alone).unwrap();
    assert!(report.streamed);
    assert!(!alone.windows(4).take(200).any(|w| w == b"DICM"), "no File Meta Information");
    let new = report.new_sop_instance_uid.unwrap().1;
    assert!(alone.windows(new.len()).any(|w| w == new.as_bytes()), "the new SOP Instance UID");
    let whole_tail = &out[out.len() - 4096..];
    assert!(alone.ends_with(whole_tail), "the same pixel data as the whole file");
}
