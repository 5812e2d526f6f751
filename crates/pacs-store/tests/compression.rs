//! Compression on ingest, on pydicom's bundled CT (Explicit VR Little Endian): a CT rule stores
//! it in the target syntax with the same pixels and keeps the received checksum; without a policy
//! the bytes are stored as received.

use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::process::Command;

use dicom_object::OpenFileOptions;
use dicom_object::file::ReadPreamble;
use pacs_core::Uid;
use pacs_core::index::Scope;
use pacs_store::archive::sha256_hex;
use pacs_store::{Archive, ArchiveConfig, CompressionPolicy, CompressionRule, VerifyOptions};
use pacs_testkit::{element, monochrome16, padded, part10_header};

const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";

fn test_file(name: &str) -> PathBuf {
    let out = Command::new("python3").args(["-c", "import pydicom.data, os; print(os.path.dirname(pydicom.data.__file__))"]).output().expect("python3 runs");
    assert!(out.status.success(), "pydicom is installed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("test_files").join(name)
}

fn policy(modality: &str, target: &str) -> ArchiveConfig {
    let rule = CompressionRule { modality: Some(modality.into()), sop_class_uid: None, transfer_syntax: target.into() };
    ArchiveConfig { compression: CompressionPolicy::new(vec![rule], false).expect("a lossless policy"), ..ArchiveConfig::default() }
}

/// The transfer syntax and the native pixel data of an object (decoded by pacs-codec first).
fn pixels(bytes: &[u8]) -> (String, Vec<u8>) {
    let ts = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Auto)
        .from_reader(Cursor::new(bytes))
        .expect("readable")
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_owned();
    let mut native = Vec::new();
    pacs_codec::transcode(&mut Cursor::new(bytes), EXPLICIT_VR_LITTLE_ENDIAN, &mut native).expect("decodable");
    let object = OpenFileOptions::new().read_preamble(ReadPreamble::Auto).from_reader(Cursor::new(native)).expect("readable");
    let data = object.element(dicom_dictionary_std::tags::PIXEL_DATA).expect("Pixel Data").to_bytes().expect("bytes").to_vec();
    (ts, data)
}

fn stored_bytes(archive: &Archive, uid: &Uid) -> Vec<u8> {
    let (_, mut reader) = archive.retrieve(uid).expect("stored");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).expect("readable blob");
    bytes
}

#[test]
fn a_ct_rule_stores_the_target_syntax_with_the_same_pixels_and_the_original_checksum() {
    let path = test_file("CT_small.dcm");
    let received = std::fs::read(&path).expect("readable");
    let (ts, expected) = pixels(&received);
    assert_eq!(ts, EXPLICIT_VR_LITTLE_ENDIAN);
    for target in [JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS] {
        let dir = tempfile::tempdir().expect("temp dir");
        let uid = {
            let archive = Archive::open(dir.path(), policy("CT", target)).expect("opens");
            let report = archive.ingest(&mut received.as_slice()).expect("ingests");
            let record = &report.record;
            assert_eq!(record.transfer_syntax_uid.as_str(), target);
            let original = record.original.as_ref().expect("the original is recorded");
            assert_eq!(original.checksum, sha256_hex(&mut received.as_slice()).expect("hash"));
            assert_eq!(original.size, received.len() as u64);
            assert_eq!(original.transfer_syntax_uid.as_str(), EXPLICIT_VR_LITTLE_ENDIAN);
            assert!(record.size < original.size, "{target}: compressed");
            record.sop_instance_uid.clone()
        };
        // Reopened: the index kept it all, the stored bytes match the stored checksum and hold the
        // same pixels, and there is no orphan (the received blob was removed).
        let archive = Archive::open(dir.path(), ArchiveConfig::default()).expect("reopens");
        let records = archive.instances(&Scope::Instance(uid.clone())).expect("indexed");
        let record = records.first().expect("one record");
        let original = record.original.as_ref().expect("the original survives a reopen");
        assert_eq!(original.checksum, sha256_hex(&mut received.as_slice()).expect("hash"));
        let stored = stored_bytes(&archive, &uid);
        assert_eq!(record.checksum, sha256_hex(&mut stored.as_slice()).expect("hash"));
        let (ts, actual) = pixels(&stored);
        assert_eq!(ts, target);
        assert!(actual == expected, "{target}: pixels changed");
        let report = archive.verify(VerifyOptions { checksums: true, repair: false }, &mut |_| {}).expect("verifies");
        assert!(report.is_clean() && report.orphans.is_empty() && report.checked == 1, "{target}: {report:?}");
    }
}

#[test]
fn objects_no_rule_matches_and_archives_without_a_policy_keep_the_received_bytes() {
    let ct = std::fs::read(test_file("CT_small.dcm")).expect("readable");
    let mr = std::fs::read(test_file("MR_small.dcm")).expect("readable");
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = Archive::open(dir.path(), ArchiveConfig::default()).expect("opens");
    assert!(archive.config().compression.is_off());
    let report = archive.ingest(&mut ct.as_slice()).expect("ingests");
    assert_eq!(report.record.original, None);
    assert!(stored_bytes(&archive, &report.record.sop_instance_uid) == ct, "stored exactly as received");

    let dir = tempfile::tempdir().expect("temp dir");
    let archive = Archive::open(dir.path(), policy("CT", JPEG_LS_LOSSLESS)).expect("opens");
    let report = archive.ingest(&mut mr.as_slice()).expect("ingests");
    assert_eq!(report.record.original, None, "an MR under a CT rule");
    assert!(stored_bytes(&archive, &report.record.sop_instance_uid) == mr);
}

#[test]
fn a_lossy_target_without_allow_lossy_is_refused_when_configured() {
    let rule = CompressionRule { modality: Some("CT".into()), sop_class_uid: None, transfer_syntax: "1.2.840.10008.1.2.4.91".into() };
    let err = CompressionPolicy::new(vec![rule.clone()], false).expect_err("refused");
    assert!(err.to_string().contains("allow_lossy"), "{err}");
    assert!(CompressionPolicy::new(vec![rule], true).is_ok_and(|p| p.allow_lossy()));
}

/// A CT of `frames` frames of 256 × 256 samples (16 bits, 12 stored) in RLE Lossless, as received.
fn large_rle_ct(frames: u32) -> Vec<u8> {
    let (class, sop) = ("1.2.840.10008.5.1.4.1.1.2", "2.25.9001");
    let pixels: Vec<u8> = (0..frames * 256 * 256).flat_map(|i| ((((i % 256) * 3 + i / 256 + i % 17) % 4096) as u16).to_le_bytes()).collect();
    let native = [
        part10_header(class, sop, EXPLICIT_VR_LITTLE_ENDIAN),
        element(8, 0x16, b"UI", &padded(class, 0)),
        element(8, 0x18, b"UI", &padded(sop, 0)),
        element(8, 0x60, b"CS", &padded("CT", b' ')),
        element(0x20, 0x0D, b"UI", &padded("2.25.9002", 0)),
        element(0x20, 0x0E, b"UI", &padded("2.25.9003", 0)),
        monochrome16(256, 256, frames, 12),
        element(0x7FE0, 0x10, b"OW", &pixels),
    ]
    .concat();
    let options = pacs_codec::TranscodeOptions { stream_threshold: Some(u64::MAX), ..Default::default() };
    let mut rle = Vec::new();
    pacs_codec::transcode_with(&mut native.as_slice(), "1.2.840.10008.1.2.5", &options, &mut rle).expect("RLE");
    rle
}

#[test]
fn large_multi_frame_objects_are_compressed_through_a_spool_or_kept_whole() {
    // 144 frames, 18 MiB decoded: converted frame by frame into a spool that goes to disk.
    let received = large_rle_ct(144);
    let (_, expected) = pixels(&received);
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = Archive::open(dir.path(), policy("CT", JPEG_LS_LOSSLESS)).expect("opens");
    let report = archive.ingest(&mut received.as_slice()).expect("ingests");
    assert_eq!(report.record.transfer_syntax_uid.as_str(), JPEG_LS_LOSSLESS);
    assert_eq!(report.record.original.as_ref().map(|o| o.size), Some(received.len() as u64));
    let stored = stored_bytes(&archive, &report.record.sop_instance_uid);
    assert_eq!(report.record.checksum, sha256_hex(&mut stored.as_slice()).expect("hash"));
    let (ts, actual) = pixels(&stored);
    assert_eq!(ts, JPEG_LS_LOSSLESS);
    assert!(actual == expected, "pixels changed");

    // The last frame corrupt: the streamed conversion fails after writing most of the object;
    // the object is stored as received, and nothing else is left.
    let mut corrupt = received.clone();
    let start = corrupt.windows(12).position(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]).expect("encapsulated");
    let (mut at, mut last) = (start + 12, 0);
    while corrupt[at..at + 4] == [0xFE, 0xFF, 0x00, 0xE0] {
        last = at + 8;
        at += 8 + u32::from_le_bytes([corrupt[at + 4], corrupt[at + 5], corrupt[at + 6], corrupt[at + 7]]) as usize;
    }
    corrupt[last..last + 64].fill(0xAB);
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = Archive::open(dir.path(), policy("CT", JPEG_LS_LOSSLESS)).expect("opens");
    let report = archive.ingest(&mut corrupt.as_slice()).expect("ingests");
    assert_eq!(report.record.transfer_syntax_uid.as_str(), "1.2.840.10008.1.2.5", "kept as received");
    assert_eq!(report.record.original, None);
    assert!(stored_bytes(&archive, &report.record.sop_instance_uid) == corrupt, "the received bytes");
    let verified = archive.verify(VerifyOptions { checksums: true, repair: false }, &mut |_| {}).expect("verifies");
    assert!(verified.is_clean() && verified.orphans.is_empty() && verified.checked == 1, "{verified:?}");
}
