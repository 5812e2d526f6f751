//! The client commands (`pacs send`, `find`, `get`, `move`, `pull`) against nodes we did not
//! write (DCMTK's storescp and dcmqrscp), and `pacs serve` driven by pynetdicom as SCU.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;

/// A DCMTK server process, killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts DCMTK's storescp as `ae` on a free port, accepting every transfer syntax and writing
/// what it receives, bit-preserving, to `dir`.
fn storescp(ae: &str, dir: &Path) -> (Peer, u16) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let port = free_port();
    let child = Command::new("/usr/bin/storescp")
        .args(["-aet", ae, "+xa", "+B", "-od"])
        .arg(dir)
        .arg(port.to_string())
        .env("TCP_NODELAY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp");
    let peer = Peer(child);
    assert!(wait_for_port(port), "storescp did not start");
    (peer, port)
}

/// The files under `dir` by the SOP Instance UID of their File Meta Information.
fn by_sop_instance(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        if let Some(meta) = pacs_core::scan::file_meta(&bytes) {
            out.insert(meta.sop_instance, path);
        }
    }
    out
}

fn corpus(dir: &Path, count: usize) -> Vec<Value> {
    let manifest = python("make_corpus.py", &[dir.as_os_str(), std::ffi::OsStr::new(&count.to_string())]);
    manifest["files"].as_array().expect("files").clone()
}

#[test]
fn send_to_storescp_is_byte_exact_in_every_transfer_syntax() {
    require_python();
    let pacs = Pacs::new();
    let dir = pacs.scratch("to-send");
    corpus(&dir.join("corpus"), 30);
    // Files of other syntaxes, compressed ones included, each sent as it is.
    // (Each with its own SOP Instance UID: storescp names files by it.)
    let others = ["CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "JPEGLSNearLossless_08.dcm", "JPEG-lossy.dcm"];
    for name in others {
        copy_to(&pydicom_file(name), &dir.join("others"), name);
    }
    std::fs::write(dir.join("others/notes.txt"), "not DICOM").expect("write");
    let received = pacs.scratch("received");
    let (_storescp, port) = storescp("DEST", &received);

    let (code, report) = pacs.json_status(&["send", &format!("DEST@127.0.0.1:{port}"), dir.to_str().expect("utf-8"), "-j", "3", "--json"]);
    assert_eq!(code, 1, "a file that is not DICOM makes the exit status 1: {report}");
    assert_eq!(report["stored"], 36, "{report}");
    assert_eq!(report["not_dicom"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["refused"].as_array().map(Vec::len), Some(0), "{report}");

    // What storescp wrote is, data set for data set, the bytes we sent.
    let arrived = by_sop_instance(&received);
    assert_eq!(arrived.len(), 36);
    let mut sent = 0;
    for path in import_files(&dir) {
        let bytes = std::fs::read(&path).expect("read");
        let Some(meta) = pacs_core::scan::file_meta(&bytes) else { continue };
        let got = arrived.get(&meta.sop_instance).unwrap_or_else(|| panic!("{} did not arrive", path.display()));
        assert!(data_set_bytes(&path) == data_set_bytes(got), "{} arrived changed", path.display());
        let got_meta = pacs_core::scan::file_meta(&std::fs::read(got).expect("read")).expect("meta");
        assert_eq!(got_meta.transfer_syntax, meta.transfer_syntax, "{} was sent in another syntax", path.display());
        sent += 1;
    }
    assert_eq!(sent, 36);

    // A node that does not answer is a clear error.
    let out = pacs.run(&["send", &format!("DEST@127.0.0.1:{}", free_port()), dir.to_str().expect("utf-8")]);
    assert_eq!(exit_code(&out), 1, "{}", describe(&out));
    assert!(stdout(&out).contains("association failed"), "{}", describe(&out));
}

/// Regular files under `dir`, recursively.
fn import_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out.sort();
    out
}

/// DCMTK's dcmqrscp as `QR` on a free port, its database holding `files` (indexed in place by
/// dcmqridx), with `PACSRCV` at `receive_port` as its only known move destination.
fn dcmqrscp(work: &Path, files: &[Value], receive_port: u16) -> (Peer, u16) {
    let db = work.join("db");
    std::fs::create_dir_all(&db).expect("mkdir");
    let port = free_port();
    let config = format!(
        "NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\
         HostTable BEGIN\nreceiver = (PACSRCV, 127.0.0.1, {receive_port})\nHostTable END\n\
         VendorTable BEGIN\nVendorTable END\n\
         AETable BEGIN\nQR {} RW (200, 1024mb) ANY\nAETable END\n",
        db.display()
    );
    let config_path = work.join("dcmqrscp.cfg");
    std::fs::write(&config_path, config).expect("write config");
    let mut index = Command::new("/usr/bin/dcmqridx");
    index.arg(&db);
    for f in files {
        index.arg(text(f, "path"));
    }
    let out = index.output().expect("dcmqridx");
    assert!(out.status.success(), "dcmqridx: {}", describe(&out));
    let child = Command::new("/usr/bin/dcmqrscp")
        .arg("-c")
        .arg(&config_path)
        .env("TCP_NODELAY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dcmqrscp");
    let peer = Peer(child);
    assert!(wait_for_port(port), "dcmqrscp did not start");
    (peer, port)
}

/// Asserts that the archive holds exactly `expected` (manifest entries), each the same data set.
fn assert_holds(pacs: &Pacs, expected: &[&Value]) {
    assert_eq!(pacs.stats()["instances"], expected.len(), "{}", pacs.stats());
    for f in expected {
        let sop = text(f, "SOPInstanceUID");
        let exported = pacs.scratch("exported.dcm");
        std::fs::write(&exported, pacs.export_instance(sop)).expect("write");
        assert!(data_set_bytes(Path::new(text(f, "path"))) == data_set_bytes(&exported), "{sop} changed on the way");
    }
}

#[test]
fn find_get_move_and_pull_against_dcmqrscp() {
    require_python();
    let pacs = Pacs::new();
    let files = corpus(&pacs.scratch("corpus"), 24);
    let receive_port = free_port();
    let (_qr, port) = dcmqrscp(&pacs.scratch("qr"), &files, receive_port);
    let node = format!("QR@127.0.0.1:{port}");
    let uids = |key: &str, rows: &Value| -> BTreeSet<String> { rows.as_array().expect("rows").iter().map(|r| text(r, key).to_owned()).collect() };
    let of = |key: &str, filter: &dyn Fn(&Value) -> bool| -> BTreeSet<String> { files.iter().filter(|f| filter(f)).map(|f| text(f, key).to_owned()).collect() };

    // pacs find: every level, single value, wildcard, range, limit.
    let rows = pacs.json(&["find", &node, "--format", "json"]);
    assert_eq!(uids("StudyInstanceUID", &rows), of("StudyInstanceUID", &|_| true));
    let rows = pacs.json(&["find", &node, "--patient-name", "Crash^Patient1", "--format", "json"]);
    assert_eq!(uids("StudyInstanceUID", &rows), of("StudyInstanceUID", &|f| text(f, "PatientID") == "CRASH1"), "{rows}");
    let rows = pacs.json(&["find", &node, "--patient-name", "Crash^P*", "--format", "json"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(6), "{rows}");
    let rows = pacs.json(&["find", &node, "--study-date", "20240110-20240112", "--format", "json"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(3), "study dates are 20240110 to 20240115: {rows}");
    let rows = pacs.json(&["find", &node, "--limit", "2", "--format", "json"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    let study = text(&files[0], "StudyInstanceUID").to_owned();
    let series = text(&files[0], "SeriesInstanceUID").to_owned();
    let rows = pacs.json(&["find", &node, "-l", "series", "--study-uid", &study, "--format", "json"]);
    assert_eq!(uids("SeriesInstanceUID", &rows), of("SeriesInstanceUID", &|f| text(f, "StudyInstanceUID") == study));
    let rows = pacs.json(&["find", &node, "-l", "instance", "--study-uid", &study, "--series-uid", &series, "--format", "json"]);
    assert_eq!(uids("SOPInstanceUID", &rows), of("SOPInstanceUID", &|f| text(f, "SeriesInstanceUID") == series));
    let rows = pacs.json(&["find", &node, "-l", "patient", "--format", "json"]);
    assert_eq!(uids("PatientID", &rows), of("PatientID", &|_| true));

    // pacs get of a study, then pacs move of another into the same archive.
    let in_study: Vec<&Value> = files.iter().filter(|f| text(f, "StudyInstanceUID") == study).collect();
    let out = pacs.run(&["get", &node, "--study", &study]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_holds(&pacs, &in_study);
    let other = text(&files[2], "StudyInstanceUID").to_owned();
    assert_ne!(other, study);
    let listen = format!("127.0.0.1:{receive_port}");
    let out = pacs.run(&["move", &node, "--study", &other, "--dest", "PACSRCV", "--listen", &listen]);
    assert!(out.status.success(), "{}", describe(&out));
    let both: Vec<&Value> = files.iter().filter(|f| [&study, &other].contains(&&text(f, "StudyInstanceUID").to_owned())).collect();
    assert_holds(&pacs, &both);
    let out = pacs.run(&["move", &node, "--study", &other, "--dest", "NOWHERE"]);
    assert_eq!(exit_code(&out), 1, "{}", describe(&out));
    assert!(stdout(&out).contains("0xa801"), "move destination unknown: {}", describe(&out));

    // pacs pull: everything of January, then after losing a series, only that series.
    let migrated = Pacs::new();
    let pull = |extra: &[&str]| -> Value {
        let mut args = vec!["pull", node.as_str(), "--from", "20240101", "--to", "20240131", "--json"];
        args.extend_from_slice(extra);
        migrated.json(&args)
    };
    let report = pull(&[]);
    assert_eq!((report["studies"].as_u64(), report["retrieved"].as_u64(), report["failed"].as_u64()), (Some(6), Some(24), Some(0)), "{report}");
    let all: Vec<&Value> = files.iter().collect();
    assert_holds(&migrated, &all);
    let out = migrated.run(&["delete", "--series", &series]);
    assert!(out.status.success(), "{}", describe(&out));
    let report = pull(&[]);
    let lost = files.iter().filter(|f| text(f, "SeriesInstanceUID") == series).count() as u64;
    assert_eq!((report["missing"].as_u64(), report["retrieved"].as_u64(), report["complete"].as_u64()), (Some(lost), Some(lost), Some(5)), "{report}");
    let report = pull(&[]);
    assert_eq!((report["missing"].as_u64(), report["complete"].as_u64()), (Some(0), Some(6)), "nothing left to pull: {report}");
    assert_holds(&migrated, &all);

    // The same by C-MOVE into our own storage SCP, over an open date range.
    let by_move = Pacs::new();
    let report = by_move.json(&["pull", &node, "--dest", "PACSRCV", "--listen", &listen, "--json"]);
    assert_eq!(report["retrieved"].as_u64(), Some(24), "{report}");
    assert_holds(&by_move, &all);
}

#[test]
fn pynetdicom_as_scu_against_pacs_serve() {
    require_python();
    let pacs = Pacs::new();
    let moved = pacs.scratch("moved");
    let (_storescp, dest_port) = storescp("DEST", &moved);
    let remote = format!("DEST=127.0.0.1:{dest_port}");
    let server = Server::start(&pacs, &["--remote", &remote]);
    let files = corpus(&pacs.scratch("corpus"), 240);
    let study = text(&files[0], "StudyInstanceUID").to_owned();
    let series = text(&files[0], "SeriesInstanceUID").to_owned();
    let mut args: Vec<String> = vec![server.port.to_string(), "PACS".into()];
    args.extend(files.iter().map(|f| text(f, "path").to_owned()));
    args.extend(["--move-to".into(), "DEST".into(), "--study".into(), study.clone(), "--series".into(), series.clone()]);
    let result = python("pynetdicom_scu.py", &args);

    assert_eq!(result["echo"], 0, "{result}");
    let stores = result["store"].as_array().expect("store");
    assert_eq!(stores.len(), 240);
    assert!(stores.iter().all(|s| s == 0), "every C-STORE succeeds: {stores:?}");
    assert_eq!(pacs.stats()["instances"], 240);

    // C-FIND: each study once, with its count; each patient once.
    let studies = result["find_studies"].as_array().expect("studies");
    let counted: BTreeMap<&str, u64> = studies.iter().map(|s| (text(s, "StudyInstanceUID"), s["count"].as_u64().expect("count"))).collect();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &files {
        *expected.entry(text(f, "StudyInstanceUID")).or_default() += 1;
    }
    assert_eq!(counted, expected);
    assert_eq!(result["find_studies_final"], 0);
    let patients: BTreeSet<&str> = files.iter().map(|f| text(f, "PatientID")).collect();
    let found: BTreeSet<&str> = result["find_patients"].as_array().expect("patients").iter().filter_map(Value::as_str).collect();
    assert_eq!(found, patients);
    // A cancelled C-FIND ends with Cancel before all matches, or (if the cancel came too late)
    // with Success after all of them; never with an error.
    let cancelled = &result["cancelled_find"];
    let matches = cancelled["matches"].as_u64().expect("matches");
    match cancelled["final"].as_u64() {
        Some(0xFE00) => assert!(matches < 240, "{cancelled}"),
        Some(0) => assert_eq!(matches, 240, "{cancelled}"),
        other => panic!("cancelled C-FIND ended with {other:?}: {cancelled}"),
    }

    // C-GET of a series: exactly its instances, the same data sets.
    let get = &result["get"];
    assert_eq!(get["final"]["status"], 0, "{get}");
    let received: BTreeSet<&str> = get["received"].as_object().expect("received").keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = files.iter().filter(|f| text(f, "SeriesInstanceUID") == series).map(|f| text(f, "SOPInstanceUID")).collect();
    assert_eq!(received, want);
    for f in files.iter().filter(|f| text(f, "SeriesInstanceUID") == series) {
        use sha2::Digest;
        let sent = hex(&sha2::Sha256::digest(data_set_bytes(Path::new(text(f, "path")))));
        assert_eq!(text(&get["received"], text(f, "SOPInstanceUID")), sent, "what C-GET delivered differs from what was stored");
    }

    // A C-GET cancelled after its first sub-operation stops with Cancel and the remaining count.
    let cancelled = &result["cancelled_get"];
    assert_eq!(cancelled["status"], 0xFE00, "{cancelled}");
    assert!(cancelled["remaining"].as_u64().is_some_and(|r| r > 0), "{cancelled}");

    // C-MOVE of the study to storescp: every instance arrives.
    let in_study = files.iter().filter(|f| text(f, "StudyInstanceUID") == study).count();
    assert_eq!(result["move"]["status"], 0, "{result}");
    assert_eq!(result["move"]["completed"].as_u64(), Some(in_study as u64));
    let arrived = by_sop_instance(&moved);
    assert_eq!(arrived.len(), in_study);
    assert!(server.echo("PACS"), "the server still serves");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
