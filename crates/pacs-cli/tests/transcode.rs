//! `pacs transcode`, and transcoding on egress: a C-GET peer that accepts only Implicit VR Little
//! Endian receives compressed stored instances converted, with the same pixels.

mod common;

use std::path::Path;

use common::*;

/// pydicom's view of a file: transfer syntax, SOP Instance UID and a digest of the decoded pixels.
const DESCRIBE: &str = r#"
import sys, json, hashlib, pydicom
out = []
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    out.append({"ts": str(ds.file_meta.TransferSyntaxUID), "uid": str(ds.SOPInstanceUID), "shape": list(a.shape),
                "pixels": hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()})
print(json.dumps(out))
"#;

fn describe_files(paths: &[&Path]) -> Vec<serde_json::Value> {
    python_inline(DESCRIBE, paths).as_array().expect("a list").clone()
}

#[test]
fn transcode_converts_and_refuses_the_impossible() {
    require_python();
    let pacs = Pacs::new();
    let source = pydicom_file("MR_small_jpeg_ls_lossless.dcm");
    let out = pacs.scratch("mr_rle.dcm");
    let run = pacs.run(&["transcode".as_ref(), source.as_os_str(), out.as_os_str(), "--transfer-syntax".as_ref(), "1.2.840.10008.1.2.5".as_ref()]);
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    let both = describe_files(&[&source, &out]);
    assert_eq!(both[1]["ts"], "1.2.840.10008.1.2.5");
    assert_eq!(both[0]["pixels"], both[1]["pixels"]);
    assert_eq!(both[0]["uid"], both[1]["uid"]);

    // JPEG Extended, 12 bits (16 allocated, 12 stored): a new, lossy instance that pydicom reads.
    let twelve = pydicom_file("examples_overlay.dcm");
    let extended = pacs.scratch("extended.dcm");
    let run = pacs.run(&["transcode".as_ref(), twelve.as_os_str(), extended.as_os_str(), "-t".as_ref(), "1.2.840.10008.1.2.4.51".as_ref()]);
    assert_eq!(exit_code(&run), 0, "{}", describe(&run));
    let both = describe_files(&[&twelve, &extended]);
    assert_eq!(both[1]["ts"], "1.2.840.10008.1.2.4.51");
    assert_eq!(both[0]["shape"], both[1]["shape"]);
    assert_ne!(both[0]["uid"], both[1]["uid"], "a lossy conversion makes a new instance");

    // Signed samples beyond 12 bits do not fit in JPEG Extended: refused, nothing written.
    let refused = pacs.scratch("refused.dcm");
    let run = pacs.run(&["transcode".as_ref(), source.as_os_str(), refused.as_os_str(), "-t".as_ref(), "1.2.840.10008.1.2.4.51".as_ref()]);
    assert_error(&run, &["does not fit in the 12 bits of lossy JPEG"]);
    assert!(!refused.exists(), "no output after a refused conversion");

    // A syntax this build does not write (Explicit VR Big Endian, retired): refused up front.
    let run = pacs.run(&["transcode".as_ref(), source.as_os_str(), refused.as_os_str(), "-t".as_ref(), "1.2.840.10008.1.2.2".as_ref()]);
    assert_error(&run, &["cannot transcode", "1.2.840.10008.1.2.2", "cannot be encoded by this build"]);
    assert!(!refused.exists(), "no output after a refused conversion");
}

#[test]
fn get_into_implicit_only_peer_converts_compressed_instances() {
    require_python();
    let pacs = Pacs::new();
    let sources = [pydicom_file("MR_small_jp2klossless.dcm"), pydicom_file("SC_rgb_rle_2frame.dcm"), pydicom_file("rtdose_rle_1frame.dcm")];
    let (code, report) = pacs.import(&sources, &[]);
    assert_eq!(code, 0, "{report:#}");
    let server = Server::start(&pacs, &["--no-web"]);
    let expected = describe_files(&sources.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    let received = pacs.scratch("got");
    std::fs::create_dir_all(&received).expect("mkdir");
    let received_text = received.to_string_lossy().to_string();
    for source in &expected {
        let uid = source["uid"].as_str().expect("uid");
        let key = format!("SOPInstanceUID={uid}");
        let out =
            server.dcmtk("getscu", &["-aet", "TESTSCU", "-aec", "PACS", "-P", "+xi", "-od", &received_text, "-k", "QueryRetrieveLevel=IMAGE", "-k", &key], &[]);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "getscu failed: {said}");
    }
    let mut files: Vec<_> = std::fs::read_dir(&received).expect("listing").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert_eq!(files.len(), expected.len(), "one file per instance: {files:?}");
    let got = describe_files(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    for source in &expected {
        let arrived = got.iter().find(|g| g["uid"] == source["uid"]).unwrap_or_else(|| panic!("{} not received", source["uid"]));
        // getscu accepted Implicit VR Little Endian only (+xi) and writes files in Explicit VR
        // Little Endian: arriving at all means the instance was converted.
        assert!(arrived["ts"] == "1.2.840.10008.1.2.1" || arrived["ts"] == "1.2.840.10008.1.2", "{arrived}");
        assert_eq!(arrived["shape"], source["shape"]);
        assert_eq!(arrived["pixels"], source["pixels"], "pixels of {}", source["uid"]);
    }
}

#[test]
fn the_ingest_policy_of_pacs_toml_compresses_what_it_matches() {
    require_python();
    let pacs = Pacs::new();
    std::fs::create_dir_all(pacs.data_dir()).expect("mkdir");
    std::fs::write(pacs.data_dir().join("pacs.toml"), "[[ingest.compress]]\nmodality = \"CT\"\ntransfer_syntax = \"1.2.840.10008.1.2.4.80\"\n")
        .expect("write pacs.toml");
    let ct = pydicom_file("CT_small.dcm");
    let mr = pydicom_file("MR_small.dcm");
    let (code, report) = pacs.import(&[&ct, &mr], &[]);
    assert_eq!(code, 0, "{report}");
    let rows = pacs.json(&["query", "-l", "instance", "-k", "TransferSyntaxUID", "-k", "Modality", "--format", "json"]);
    let syntax_of = |modality: &str| {
        let row = rows.as_array().expect("rows").iter().find(|r| text(r, "Modality") == modality).unwrap_or_else(|| panic!("no {modality} in {rows}"));
        (text(row, "TransferSyntaxUID").to_owned(), text(row, "SOPInstanceUID").to_owned())
    };
    let (ct_syntax, ct_uid) = syntax_of("CT");
    let (mr_syntax, mr_uid) = syntax_of("MR");
    assert_eq!(ct_syntax, "1.2.840.10008.1.2.4.80", "the CT matches the rule");
    assert_eq!(mr_syntax, "1.2.840.10008.1.2.1", "the MR matches none and is kept as received");
    // The stored CT has the pixels of the original; the MR is the received bytes.
    let ct_out = pacs.scratch("ct.dcm");
    std::fs::write(&ct_out, pacs.export_instance(&ct_uid)).expect("write");
    let described = describe_files(&[&ct, &ct_out]);
    assert_eq!(described[0]["pixels"], described[1]["pixels"], "{described:?}");
    assert_eq!(described[1]["ts"], "1.2.840.10008.1.2.4.80");
    assert_eq!(pacs.export_instance(&mr_uid), std::fs::read(&mr).expect("read"));
    pacs.assert_verify_clean();

    // A lossy target without allow_lossy is refused before anything runs.
    std::fs::write(pacs.data_dir().join("pacs.toml"), "[[ingest.compress]]\nmodality = \"CT\"\ntransfer_syntax = \"1.2.840.10008.1.2.4.50\"\n")
        .expect("write pacs.toml");
    assert_error(&pacs.run(&["stats"]), &["allow_lossy"]);
}
