//! `pacs serve` as a DICOM node, driven by DCMTK's echoscu and storescu (called by absolute path,
//! so that pynetdicom's tools of the same name are never used by mistake).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Writes `count` small objects under `dir`; returns (path, SOP Instance UID) pairs.
fn corpus(dir: &Path, count: usize) -> Vec<(String, String)> {
    let manifest = python("make_corpus.py", &[dir.as_os_str(), std::ffi::OsStr::new(&count.to_string())]);
    let files: Vec<(String, String)> =
        manifest["files"].as_array().expect("files").iter().map(|f| (text(f, "path").to_owned(), text(f, "SOPInstanceUID").to_owned())).collect();
    assert_eq!(files.len(), count);
    files
}

/// Compares two files' data sets with pydicom (the file meta is ours after a network transfer).
fn same_data_set(a: &Path, b: &Path) {
    let verdict = python_inline(
        "import sys, json, pydicom\n\
         a = pydicom.dcmread(sys.argv[1]); b = pydicom.dcmread(sys.argv[2])\n\
         print(json.dumps({'equal': a == b, 'ts': str(b.file_meta.TransferSyntaxUID)}))",
        &[a.as_os_str(), b.as_os_str()],
    );
    assert_eq!(verdict["equal"], true, "{} and {} differ", a.display(), b.display());
}

/// Writes `count` small objects and sends them to `server` with storescu; returns the manifest.
fn store_corpus(server: &Server, pacs: &Pacs, count: usize) -> serde_json::Value {
    let dir = pacs.scratch("corpus");
    let manifest = python("make_corpus.py", &[dir.as_os_str(), std::ffi::OsStr::new(&count.to_string())]);
    let dir_text = dir.to_string_lossy().to_string();
    let out = server.dcmtk("storescu", &["-aet", "TESTSCU", "-aec", "PACS", "--scan-directories", "--recurse"], &[&dir_text]);
    assert!(out.status.success(), "storescu failed: {}", describe(&out));
    manifest
}

/// Asserts that `received` holds exactly the `expected` manifest entries, each the same data set.
fn assert_arrived(received: &Path, expected: &[&serde_json::Value]) {
    let arrived: Vec<std::path::PathBuf> = std::fs::read_dir(received).expect("read").map(|e| e.expect("entry").path()).collect();
    assert_eq!(arrived.len(), expected.len(), "{arrived:?}");
    for f in expected {
        let sop = text(f, "SOPInstanceUID");
        let got = arrived
            .iter()
            .find(|p| python_inline("import sys, json, pydicom; print(json.dumps(pydicom.dcmread(sys.argv[1]).SOPInstanceUID))", &[p.as_os_str()]) == sop)
            .unwrap_or_else(|| panic!("{sop} did not arrive"));
        same_data_set(Path::new(text(f, "path")), got);
    }
}

#[test]
fn echo_and_store_with_dcmtk() {
    require_python();
    let pacs = Pacs::new();
    let server = Server::start(&pacs, &[]);
    assert!(server.echo("PACS"), "C-ECHO to PACS");
    assert!(!server.echo("OTHER"), "an association to another called AE title must be rejected");
    // Our own SCU, against our server.
    let node = format!("PACS@127.0.0.1:{}", server.port);
    let out = pacs.run(&["echo", &node]);
    assert!(out.status.success() && stdout(&out).contains("answered C-ECHO"), "{}", describe(&out));
    assert_error(&pacs.run(&["echo", &format!("OTHER@127.0.0.1:{}", server.port)]), &["C-ECHO to OTHER@"]);

    let dir = pacs.scratch("corpus");
    let files = corpus(&dir, 30);
    let options = ["-aet", "TESTSCU", "-aec", "PACS", "--scan-directories", "--recurse"];
    let dir_text = dir.to_string_lossy().to_string();
    let out = server.dcmtk("storescu", &options, &[&dir_text]);
    assert!(out.status.success(), "storescu failed: {}", describe(&out));

    // Every instance is stored and reads back as the same data set.
    let rows = pacs.json(&["query", "--level", "instance", "--format", "json"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(30), "{rows}");
    for (file, sop) in &files {
        let exported = pacs.scratch("exported.dcm");
        std::fs::write(&exported, pacs.export_instance(sop)).expect("write export");
        same_data_set(Path::new(file), &exported);
    }
    pacs.assert_verify_clean();

    // Sending the same files again is an idempotent success.
    let again = server.dcmtk("storescu", &options, &[&dir_text]);
    assert!(again.status.success(), "second storescu failed: {}", describe(&again));
    assert_eq!(pacs.stats()["instances"], 30);

    // The same `pacs serve` answers DICOMweb: QIDO-RS lists the studies C-STORE brought.
    let web = server.web.clone().expect("DICOMweb is on by default");
    let found = python_inline(
        "import sys, json, urllib.request\n\
         r = urllib.request.urlopen(sys.argv[1] + '/studies')\n\
         print(json.dumps({'type': r.headers['Content-Type'], 'studies': sorted(s['0020000D']['Value'][0] for s in json.load(r))}))",
        &[&web],
    );
    assert!(text(&found, "type").starts_with("application/dicom+json"), "{found}");
    let rows = pacs.json(&["query", "--format", "json"]);
    let mut studies: Vec<&str> = rows.as_array().expect("rows").iter().map(|r| text(r, "StudyInstanceUID")).collect();
    studies.sort_unstable();
    assert_eq!(found["studies"], serde_json::json!(studies));
}

#[test]
fn compressed_transfer_syntax_is_stored_as_received() {
    require_python();
    let pacs = Pacs::new();
    let server = Server::start(&pacs, &[]);
    let source = pydicom_file("JPEG2000.dcm");
    // -xw: propose JPEG 2000 (1.2.840.10008.1.2.4.91), the syntax the file is in.
    let out = server.dcmtk("storescu", &["-aet", "TESTSCU", "-aec", "PACS", "-xw"], &[source.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "storescu of a JPEG 2000 file failed: {}", describe(&out));
    let rows = pacs.json(&["query", "--level", "instance", "-k", "TransferSyntaxUID", "--format", "json"]);
    let row = &rows[0];
    assert_eq!(text(row, "TransferSyntaxUID"), "1.2.840.10008.1.2.4.91", "stored in the syntax it was sent in: {row}");
    let exported = pacs.scratch("j2k.dcm");
    std::fs::write(&exported, pacs.export_instance(text(row, "SOPInstanceUID"))).expect("write export");
    same_data_set(&source, &exported);

    // A server limited to the uncompressed syntaxes refuses the context, and stores nothing.
    let limited_pacs = Pacs::new();
    let limited = Server::start(&limited_pacs, &["--transfer-syntax", "1.2.840.10008.1.2.1", "--transfer-syntax", "1.2.840.10008.1.2"]);
    let out = limited.dcmtk("storescu", &["-aet", "TESTSCU", "-aec", "PACS", "-xw"], &[source.to_str().expect("utf-8 path")]);
    assert!(!out.status.success(), "a JPEG 2000 context must be refused: {}", describe(&out));
    assert_eq!(limited_pacs.stats()["instances"], 0);
    let plain = pydicom_file("CT_small.dcm");
    let out = limited.dcmtk("storescu", &["-aet", "TESTSCU", "-aec", "PACS"], &[plain.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "Explicit VR Little Endian is accepted: {}", describe(&out));
    assert_eq!(limited_pacs.stats()["instances"], 1);
}

#[test]
fn garbage_and_broken_associations_leave_the_server_serving() {
    require_python();
    let pacs = Pacs::new();
    let server = Server::start(&pacs, &[]);
    // Garbage instead of an A-ASSOCIATE-RQ.
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    drop(s);
    // A PDU header announcing far more than allowed.
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.write_all(&[0x01, 0x00, 0x7f, 0xff, 0xff, 0xff]).expect("write");
    drop(s);
    assert!(server.echo("PACS"), "the server still answers after garbage");

    // A C-STORE cut in the middle: storescu is killed while sending a large object.
    let dir = pacs.scratch("big");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let big = dir.join("big.dcm");
    python("fixtures.py", &[std::ffi::OsStr::new("big"), big.as_os_str(), std::ffi::OsStr::new("64")]);
    let port = server.port.to_string();
    let mut sender = Command::new("/usr/bin/storescu")
        .args(["-aet", "TESTSCU", "-aec", "PACS", "--max-send-pdu", "16384", "127.0.0.1", &port])
        .arg(&big)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescu");
    std::thread::sleep(std::time::Duration::from_millis(150));
    let _ = sender.kill();
    let _ = sender.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(server.echo("PACS"), "the server still answers after a broken association");
    drop(server);
    // Nothing partial is stored: either the whole object arrived before the kill, or nothing.
    let stats = pacs.stats();
    let verify = pacs.json(&["verify", "--checksums", "--json"]);
    assert_eq!(verify["missing"].as_array().map(Vec::len), Some(0), "{verify}");
    assert_eq!(verify["corrupt"].as_array().map(Vec::len), Some(0), "{verify}");
    assert_eq!(verify["orphans"].as_array().map(Vec::len), Some(0), "an aborted C-STORE left a blob: {verify}");
    assert!(stats["instances"] == 0 || stats["instances"] == 1, "{stats}");
}

/// Runs findscu with `keys`, extracting the responses; returns them read by pydicom as JSON
/// (one object per response, keyword → string).
fn findscu(server: &Server, pacs: &Pacs, model: &str, keys: &[&str]) -> Vec<serde_json::Value> {
    let out_dir = pacs.scratch(&format!("find-{}", keys.join("_").replace(['/', '^', '*', '='], "-")));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let out_text = out_dir.to_string_lossy().to_string();
    let mut options = vec!["-aet", "TESTSCU", "-aec", "PACS", model, "-X", "-od", &out_text];
    for k in keys {
        options.push("-k");
        options.push(k);
    }
    let out = server.dcmtk("findscu", &options, &[]);
    assert!(out.status.success(), "findscu {keys:?} failed: {}", describe(&out));
    let read = python_inline(
        "import sys, json, glob, pydicom\n\
         rows = []\n\
         for f in sorted(glob.glob(sys.argv[1] + '/rsp*.dcm')):\n\
         \x20   ds = pydicom.dcmread(f, force=True)\n\
         \x20   rows.append({e.keyword: str(e.value) for e in ds if e.keyword})\n\
         print(json.dumps(rows))",
        &[&out_text],
    );
    read.as_array().expect("rows").clone()
}

#[test]
fn find_with_dcmtk() {
    require_python();
    let pacs = Pacs::new();
    let server = Server::start(&pacs, &[]);
    let manifest = store_corpus(&server, &pacs, 24);
    let files = manifest["files"].as_array().expect("files");
    let studies: std::collections::BTreeSet<&str> = files.iter().map(|f| text(f, "StudyInstanceUID")).collect();

    // Study root, STUDY level, universal: every study once, with the derived counts.
    let rows = findscu(&server, &pacs, "-S", &["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "NumberOfStudyRelatedInstances", "PatientName"]);
    let got: std::collections::BTreeSet<&str> = rows.iter().map(|r| text(r, "StudyInstanceUID")).collect();
    assert_eq!(got, studies, "{rows:?}");
    let total: u64 = rows.iter().map(|r| text(r, "NumberOfStudyRelatedInstances").parse::<u64>().expect("count")).sum();
    assert_eq!(total, 24);

    // Single value matching on one study, at SERIES and IMAGE level.
    let study = files[0]["StudyInstanceUID"].as_str().expect("uid");
    let in_study: Vec<&serde_json::Value> = files.iter().filter(|f| text(f, "StudyInstanceUID") == study).collect();
    let key = format!("StudyInstanceUID={study}");
    let rows = findscu(&server, &pacs, "-S", &["QueryRetrieveLevel=IMAGE", &key, "SOPInstanceUID"]);
    let got: std::collections::BTreeSet<&str> = rows.iter().map(|r| text(r, "SOPInstanceUID")).collect();
    let want: std::collections::BTreeSet<&str> = in_study.iter().map(|f| text(f, "SOPInstanceUID")).collect();
    assert_eq!(got, want);
    let rows = findscu(&server, &pacs, "-S", &["QueryRetrieveLevel=SERIES", &key, "SeriesInstanceUID"]);
    let want: std::collections::BTreeSet<&str> = in_study.iter().map(|f| text(f, "SeriesInstanceUID")).collect();
    assert_eq!(rows.iter().map(|r| text(r, "SeriesInstanceUID")).collect::<std::collections::BTreeSet<_>>(), want);

    // Patient root, PATIENT level, wildcard on the name: compared with the archive's own query.
    let expected = pacs.json(&["query", "--level", "patient", "--patient-name", "*", "--format", "json"]);
    let rows = findscu(&server, &pacs, "-P", &["QueryRetrieveLevel=PATIENT", "PatientName=*", "PatientID"]);
    assert_eq!(rows.len(), expected.as_array().map_or(0, Vec::len), "{rows:?} vs {expected}");

    // A key below the level is refused, and the server keeps serving.
    let out_dir = pacs.scratch("bad-find");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let out = server.dcmtk("findscu", &["-v", "-aet", "TESTSCU", "-aec", "PACS", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "Modality=CT"], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("Final Find Response (Error: DataSetDoesNotMatchSOPClass)"), "expected status A900: {said}");
    assert!(server.echo("PACS"));
}

#[test]
fn move_to_a_storescp_with_dcmtk() {
    require_python();
    let pacs = Pacs::new();
    let dest_port = free_port();
    let remote = format!("DEST=127.0.0.1:{dest_port}");
    let server = Server::start(&pacs, &["--remote", &remote]);
    let manifest = store_corpus(&server, &pacs, 12);
    let files = manifest["files"].as_array().expect("files");

    // The destination: DCMTK's storescp, writing what it receives to a folder.
    let received = pacs.scratch("received");
    std::fs::create_dir_all(&received).expect("mkdir");
    let mut storescp = Command::new("/usr/bin/storescp")
        .args(["-aet", "DEST", "-od"])
        .arg(&received)
        .arg(dest_port.to_string())
        .env("TCP_NODELAY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp");
    // Wait (bounded) until storescp listens.
    let listening = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        TcpStream::connect(("127.0.0.1", dest_port)).is_ok()
    });
    assert!(listening, "storescp did not start");
    // pacs echo against DCMTK's storescp, a peer we did not write.
    let out = pacs.run(&["echo", &format!("DEST@127.0.0.1:{dest_port}"), "--aet", "PACS"]);
    assert!(out.status.success(), "pacs echo to storescp: {}", describe(&out));

    let study = text(&files[0], "StudyInstanceUID");
    let in_study: Vec<&serde_json::Value> = files.iter().filter(|f| text(f, "StudyInstanceUID") == study).collect();
    let key = format!("StudyInstanceUID={study}");
    let out = server.dcmtk("movescu", &["-v", "-aet", "TESTSCU", "-aec", "PACS", "-aem", "DEST", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", &key], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "movescu failed: {said}");
    assert!(said.contains("Received Final Move Response (Success)"), "{said}");

    // With an allow-list, only known calling AEs may associate.
    let strict = Server::start(&Pacs::new(), &["--remote", &remote, "--known-callers-only"]);
    assert!(!strict.echo("PACS"), "TESTSCU is not a known AE: the association must be rejected");
    let out = strict.dcmtk("echoscu", &["-aet", "DEST", "-aec", "PACS"], &[]);
    assert!(out.status.success(), "DEST is known: {}", describe(&out));
    drop(strict);

    // A move to an unknown destination is refused with 0xA801.
    let out = server.dcmtk("movescu", &["-v", "-aet", "TESTSCU", "-aec", "PACS", "-aem", "NOWHERE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", &key], &[]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("MoveDestinationUnknown") || said.contains("a801") || said.contains("A801"), "{said}");
    let _ = storescp.kill();
    let _ = storescp.wait();

    // What arrived is exactly the study's instances, each the same data set as sent.
    assert_arrived(&received, &in_study);
}

#[test]
fn get_with_dcmtk() {
    require_python();
    let pacs = Pacs::new();
    let server = Server::start(&pacs, &[]);
    let manifest = store_corpus(&server, &pacs, 12);
    let files = manifest["files"].as_array().expect("files");

    let series = text(&files[0], "SeriesInstanceUID");
    let in_series: Vec<&serde_json::Value> = files.iter().filter(|f| text(f, "SeriesInstanceUID") == series).collect();
    let received = pacs.scratch("got");
    std::fs::create_dir_all(&received).expect("mkdir");
    let received_text = received.to_string_lossy().to_string();
    let key = format!("SeriesInstanceUID={series}");
    let study_key = format!("StudyInstanceUID={}", text(&files[0], "StudyInstanceUID"));
    let out = server.dcmtk(
        "getscu",
        &["-v", "-aet", "TESTSCU", "-aec", "PACS", "-S", "-od", &received_text, "-k", "QueryRetrieveLevel=SERIES", "-k", &study_key, "-k", &key],
        &[],
    );
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "getscu failed: {said}");
    assert!(said.contains("Received C-GET Response (Success)"), "{said}");
    assert_arrived(&received, &in_series);
    assert!(server.echo("PACS"));
}

#[test]
fn get_of_a_series_with_an_unreadable_blob_fails_only_that_instance() {
    require_python();
    let pacs = Pacs::new();
    let server = Server::start(&pacs, &[]);
    let manifest = store_corpus(&server, &pacs, 36);
    let files = manifest["files"].as_array().expect("files");
    let series = text(&files[0], "SeriesInstanceUID");
    let in_series: Vec<&serde_json::Value> = files.iter().filter(|f| text(f, "SeriesInstanceUID") == series).collect();
    assert!(in_series.len() >= 3, "the corpus puts several instances in a series");

    // The blob of the series' second instance disappears (a disk that lost it, an operator's
    // mistake): its index row stays.
    let lost = text(in_series[1], "SOPInstanceUID");
    let removed = python_inline(
        "import sys, os, json, pydicom\n\
         for root, _, names in os.walk(sys.argv[1]):\n\
         \x20   for n in names:\n\
         \x20       p = os.path.join(root, n)\n\
         \x20       if pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == sys.argv[2]:\n\
         \x20           os.remove(p); print(json.dumps(p)); sys.exit(0)\n\
         print(json.dumps(None))",
        &[pacs.data_dir().join("blobs").as_os_str(), std::ffi::OsStr::new(lost)],
    );
    assert!(removed.is_string(), "the blob of {lost} was found and removed");

    // pynetdicom's C-GET of the series: every other instance arrives, the lost one is a failed
    // sub-operation named in the final response, and the association ends normally.
    let got = python_inline(
        "import sys, json, hashlib\n\
         from pydicom.dataset import Dataset\n\
         from pynetdicom import AE, build_role, evt, StoragePresentationContexts\n\
         from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet\n\
         received = []\n\
         def on_store(event):\n\
         \x20   received.append(str(event.request.AffectedSOPInstanceUID)); return 0x0000\n\
         ae = AE(ae_title='TESTSCU')\n\
         ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)\n\
         for c in StoragePresentationContexts[:120]: ae.add_requested_context(c.abstract_syntax)\n\
         roles = [build_role(c.abstract_syntax, scp_role=True) for c in StoragePresentationContexts[:120]]\n\
         assoc = ae.associate('127.0.0.1', int(sys.argv[1]), ae_title='PACS', ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])\n\
         assert assoc.is_established\n\
         q = Dataset(); q.QueryRetrieveLevel = 'SERIES'; q.StudyInstanceUID = sys.argv[2]; q.SeriesInstanceUID = sys.argv[3]\n\
         final = None\n\
         for status, identifier in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet):\n\
         \x20   if status and status.Status != 0xFF00:\n\
         \x20       failed = identifier.get('FailedSOPInstanceUIDList', []) if identifier is not None else []\n\
         \x20       failed = [failed] if isinstance(failed, str) else [str(u) for u in failed]\n\
         \x20       final = {'status': status.Status, 'completed': status.get('NumberOfCompletedSuboperations'), 'failed': status.get('NumberOfFailedSuboperations'), 'uids': failed}\n\
         assoc.release()\n\
         print(json.dumps({'final': final, 'received': sorted(received), 'released': assoc.is_released}))",
        &[server.port.to_string(), text(&files[0], "StudyInstanceUID").to_owned(), series.to_owned()],
    );
    let expected: Vec<&str> = {
        let mut uids: Vec<&str> = in_series.iter().map(|f| text(f, "SOPInstanceUID")).filter(|u| *u != lost).collect();
        uids.sort_unstable();
        uids
    };
    let received: Vec<&str> = got["received"].as_array().expect("received").iter().map(|v| v.as_str().expect("uid")).collect();
    assert_eq!(received, expected, "{got}");
    let final_response = &got["final"];
    assert_eq!(final_response["status"], 0xB000, "sub-operations complete, one or more failures: {got}");
    assert_eq!(final_response["failed"], 1, "{got}");
    assert_eq!(final_response["completed"], expected.len(), "{got}");
    assert_eq!(final_response["uids"], serde_json::json!([lost]), "{got}");
    assert_eq!(got["released"], true, "{got}");
    assert!(server.echo("PACS"), "the server keeps serving");
}
