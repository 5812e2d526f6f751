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
