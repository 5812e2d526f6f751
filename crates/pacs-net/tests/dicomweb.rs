//! The DICOMweb face against real clients: the Python `dicomweb-client` package (with pydicom as
//! the reference reading the same files) for every service, and `curl` for raw HTTP cases.
//!
//! Python 3 with pydicom, numpy and dicomweb-client, and curl, are required: `scripts/test.sh`
//! installs them. Missing tools fail the tests, they never skip them.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use pacs_net::web::WebConfig;
use pacs_testkit::{SmallDisk, element, monochrome16, padded, part10_header};
use serde_json::Value;

use common::*;

fn python(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/web.py");
    let argv: Vec<&OsStr> = std::iter::once(script.as_os_str()).chain(args.iter().map(OsStr::new)).collect();
    let output = pacs_testkit::python3(&argv, "pydicom, numpy and dicomweb-client");
    serde_json::from_slice(&output).unwrap_or_else(|e| panic!("web.py {}: not JSON ({e})", args.first().unwrap_or(&"")))
}

/// One test object.
#[derive(Clone, Debug)]
struct Fixture {
    path: PathBuf,
    study: String,
    series: String,
    sop: String,
    frames: u64,
}

/// The test objects, made once by pydicom.
fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<(tempfile::TempDir, Vec<Fixture>)> = OnceLock::new();
    &FIXTURES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let listing = python(&["fixtures", dir.path().to_str().unwrap()]);
            let fixtures = listing
                .as_array()
                .unwrap()
                .iter()
                .map(|f| Fixture {
                    path: PathBuf::from(f["path"].as_str().unwrap()),
                    study: f["study"].as_str().unwrap().into(),
                    series: f["series"].as_str().unwrap().into(),
                    sop: f["sop"].as_str().unwrap().into(),
                    frames: f["frames"].as_u64().unwrap(),
                })
                .collect();
            (dir, fixtures)
        })
        .1
}

fn paths(fixtures: &[Fixture]) -> Vec<String> {
    fixtures.iter().map(|f| f.path.to_str().unwrap().to_owned()).collect()
}

/// A `multipart/related; type="application/dicom"` body of `parts` (content type, bytes).
fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (content_type, bytes) in parts {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// POSTs `body` (written to a file) to `path` with `content_type`.
fn post(web: &Web, path: &str, content_type: &str, body: &[u8], extra: &[&str]) -> Reply {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let file = web.dir.path().join(format!("post-{}.bin", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::write(&file, body).unwrap();
    let data = format!("@{}", file.display());
    let header = format!("Content-Type: {content_type}");
    let mut args = vec!["-X", "POST", "-H", &header, "--data-binary", &data];
    args.extend_from_slice(extra);
    web.curl(path, &args)
}

const DICOM_MULTIPART: &str = "multipart/related; type=\"application/dicom\"; boundary=XyZ";

/// Native objects of series `{study}.1`, one per number in `numbers`, each SOP Instance UID
/// `{study}.1.{number}`, with `frames` frames of 256 x 256.
fn native_series(study: &str, numbers: std::ops::Range<u32>, frames: u32) -> Vec<Vec<u8>> {
    let series = format!("{study}.1");
    numbers.map(|n| large_native(study, &series, &format!("{series}.{n}"), frames)).collect()
}

/// A `multipart/related` body (boundary `XyZ`) of `objects`, each an `application/dicom` part.
fn dicom_parts(objects: &[Vec<u8>]) -> Vec<u8> {
    multipart("XyZ", &objects.iter().map(|o| ("application/dicom", o.as_slice())).collect::<Vec<_>>())
}

/// A connection on which the head of a STOW-RS request with a body of `length` bytes was sent
/// (`Connection: close`, reads time out after 30 s): the test sends the body itself, in pieces.
fn stow_by_hand(web: &Web, length: usize) -> std::net::TcpStream {
    use std::io::Write;
    let mut socket = std::net::TcpStream::connect(web.address).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /dicom-web/studies HTTP/1.1\r\nHost: {}\r\nContent-Type: {DICOM_MULTIPART}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        web.address
    );
    socket.write_all(head.as_bytes()).unwrap();
    socket
}

#[test]
fn dicomweb_client_stores_searches_and_retrieves() {
    let web = Web::start(WebConfig::default());
    let fixtures = fixtures();
    let mut args = vec!["store".to_owned(), web.url()];
    args.extend(paths(fixtures));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stored = python(&args);
    let referenced = stored["00081199"]["Value"].as_array().unwrap();
    assert_eq!(referenced.len(), fixtures.len(), "{stored:#}");
    assert!(stored.get("00081198").is_none(), "no failures expected: {stored:#}");
    assert_eq!(web.instances(), fixtures.len() as u64);

    let found = python(&["search", &web.url()]);
    let studies: BTreeSet<&str> = fixtures.iter().map(|f| f.study.as_str()).collect();
    let as_set = |v: &Value| v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect::<BTreeSet<String>>();
    let owned = |set: BTreeSet<&str>| set.into_iter().map(str::to_owned).collect::<BTreeSet<String>>();
    assert_eq!(as_set(&found["studies"]), owned(studies.clone()));
    let study_a = fixtures[0].study.clone();
    let study_b = fixtures.iter().find(|f| f.frames > 1).unwrap().study.clone();
    assert_eq!(as_set(&found["studies_doe"]), BTreeSet::from([study_a.clone()]));
    assert_eq!(as_set(&found["studies_fuzzy"]), BTreeSet::from([study_b.clone()]), "fuzzymatching matches roe^jane with ROE*");
    assert!(as_set(&found["studies_not_fuzzy"]).is_empty(), "without fuzzymatching names match case-sensitively");
    assert_eq!(as_set(&found["studies_by_tag"]), BTreeSet::from([study_a.clone()]));
    assert_eq!(found["studies_limit"], 2);
    let count_of = |study: &str| fixtures.iter().filter(|f| f.study == study).count();
    assert_eq!(found["study_counts"][&study_a], serde_json::json!([count_of(&study_a), ["CT", "MR"]]));
    assert_eq!(found["study_counts"][&study_b], serde_json::json!([count_of(&study_b), ["OT", "XC"]]));
    for study in &studies {
        let series: BTreeSet<&str> = fixtures.iter().filter(|f| f.study == *study).map(|f| f.series.as_str()).collect();
        assert_eq!(as_set(&found["series_of"][study]), owned(series), "series of {study}");
        let instances: BTreeSet<&str> = fixtures.iter().filter(|f| f.study == *study).map(|f| f.sop.as_str()).collect();
        assert_eq!(as_set(&found["study_instances"][study]), owned(instances), "instances of {study}");
    }
    for f in fixtures {
        let instances: BTreeSet<&str> = fixtures.iter().filter(|g| g.series == f.series).map(|g| g.sop.as_str()).collect();
        assert_eq!(as_set(&found["series_instances"][&f.series]), owned(instances), "instances of series {}", f.series);
    }
    assert_eq!(as_set(&found["all_series"]), owned(fixtures.iter().map(|f| f.series.as_str()).collect()));
    assert_eq!(as_set(&found["series_ct"]), BTreeSet::from([fixtures[0].series.clone()]));
    assert_eq!(as_set(&found["all_instances"]), owned(fixtures.iter().map(|f| f.sop.as_str()).collect()));
    assert_eq!(found["name_c"], serde_json::json!({"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}));

    let mut args = vec!["retrieve".to_owned(), web.url()];
    args.extend(paths(fixtures));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = python(&args);
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["checked"]["instances"], fixtures.len());
    assert_eq!(report["checked"]["studies"], studies.len());
    assert!(report["checked"]["frames"].as_u64().unwrap() >= 8, "{report:#}");
    assert!(report["checked"]["rendered"].as_u64().unwrap() >= 10, "{report:#}");
}

#[test]
fn metadata_is_pydicom_to_json_dict() {
    // dicomweb-client sends `Host` without the port, so the BulkDataURIs it follows must be built
    // from the configured public URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let public_url = format!("http://127.0.0.1:{port}/dicom-web");
    let web = Web::start_on(([127, 0, 0, 1], port).into(), WebConfig { public_url: Some(public_url), ..WebConfig::default() });
    let mut files: Vec<PathBuf> = fixtures().iter().map(|f| f.path.clone()).collect();
    for name in [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "rtplan.dcm",
        "JPEG2000.dcm",
        "image_dfl.dcm",
        "chrH31.dcm",
        "chrX1.dcm",
        "chrFrenMulti.dcm",
        "examples_overlay.dcm",
    ] {
        files.push(pydicom_test_file(name));
    }
    for f in &files {
        web.ingest(f);
    }
    let mut args = vec!["metadata".to_owned(), web.url()];
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = python(&args);
    let mut report = report.as_object().unwrap().clone();
    let bulk = report.remove("bulk data checked").unwrap();
    let problems: BTreeMap<String, Value> =
        report.iter().filter(|(_, p)| p.as_array().is_some_and(|p| !p.is_empty())).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(problems.is_empty(), "metadata differs from pydicom's to_json_dict: {problems:#?}");
    assert_eq!(report.len(), files.len());
    // The overlay data and the private OB value of examples_overlay.dcm went by BulkDataURI.
    assert!(bulk.as_array().unwrap().len() >= 2, "{bulk:#}");
}

#[test]
fn stored_bytes_come_back_byte_for_byte() {
    let web = Web::start(WebConfig::default());
    let fixtures = fixtures();
    let originals: Vec<Vec<u8>> = fixtures.iter().map(|f| std::fs::read(&f.path).unwrap()).collect();
    let parts: Vec<(&str, &[u8])> = originals.iter().map(|b| ("application/dicom", b.as_slice())).collect();
    let reply = post(&web, "/studies", DICOM_MULTIPART, &multipart("XyZ", &parts), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type").as_deref(), Some("application/dicom+json"));
    assert_eq!(reply.json()["00081199"]["Value"].as_array().unwrap().len(), fixtures.len());

    // Whole studies, streamed back: the exact bytes.
    let by_sop: BTreeMap<&str, &Vec<u8>> = fixtures.iter().zip(&originals).map(|(f, b)| (f.sop.as_str(), b)).collect();
    let studies: BTreeSet<&str> = fixtures.iter().map(|f| f.study.as_str()).collect();
    let mut seen = 0;
    for study in studies {
        let reply = web.curl(&format!("/studies/{study}"), &["-H", "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*"]);
        assert_eq!(reply.status, 200, "{}", reply.text());
        // Objects sent as stored: the length is known before the first byte, and announced.
        assert_eq!(reply.header("content-length"), Some(reply.body.len().to_string()), "study {study}");
        assert_eq!(reply.header("transfer-encoding"), None, "study {study}");
        for (_, content) in reply.parts() {
            assert!(by_sop.values().any(|b| **b == content), "a part of study {study} is not one of the stored files");
            seen += 1;
        }
    }
    assert_eq!(seen, fixtures.len());

    // Frames, each read alone: the bytes pydicom finds in Pixel Data.
    let multi = fixtures.iter().find(|f| f.frames > 1).unwrap();
    let expected = python(&["frames", multi.path.to_str().unwrap()]);
    let url = format!("/studies/{}/series/{}/instances/{}/frames/3,1", multi.study, multi.series, multi.sop);
    let reply = web.curl(&url, &["-H", "Accept: multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1"]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let hashes: Vec<String> = reply.parts().iter().map(|(_, c)| sha256(c)).collect();
    assert_eq!(hashes, vec![expected[2].as_str().unwrap().to_owned(), expected[0].as_str().unwrap().to_owned()]);

    // Bulk data of Pixel Data: the whole value.
    let url = format!("/studies/{}/series/{}/instances/{}/bulkdata/7FE00010", multi.study, multi.series, multi.sop);
    let reply = web.curl(&url, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let parts = reply.parts();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].1.len() as u64, 4 * 5 * 6);
    assert_eq!(reply.header("content-length"), Some(reply.body.len().to_string()));

    // WADO-URI: the object itself.
    let f = &fixtures[0];
    let uri = format!("/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}&contentType=application%2Fdicom", f.study, f.series, f.sop);
    let reply = web.curl(&uri, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body, originals[0]);
    let uri = format!("/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}", f.study, f.series, f.sop);
    let reply = web.curl(&uri, &[]);
    assert_eq!((reply.status, reply.header("content-type").as_deref()), (200, Some("image/jpeg")), "WADO-URI renders JPEG by default");
    assert_eq!(&reply.body[..2], &[0xFF, 0xD8]);
}

fn sha256(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(|mut child| {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(bytes)?;
        child.wait_with_output()
    });
    String::from_utf8_lossy(&out.unwrap().stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn stow_bad_input_is_refused_whole_and_the_server_keeps_serving() {
    let web = Web::start(WebConfig { max_body: 64 * 1024, ..WebConfig::default() });
    let good = std::fs::read(&fixtures()[0].path).unwrap();
    let other = std::fs::read(&fixtures()[1].path).unwrap();
    let body = multipart("XyZ", &[("application/dicom", &good), ("application/dicom", &other)]);

    // No boundary.
    let reply = post(&web, "/studies", "multipart/related; type=\"application/dicom\"", &body, &[]);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("boundary"), "{}", reply.text());
    // Truncated body: the first part is complete, the second is cut; nothing is stored.
    let reply = post(&web, "/studies", DICOM_MULTIPART, &body[..good.len() + 200], &[]);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("multipart"), "{}", reply.text());
    // A part that is not application/dicom.
    let mixed = multipart("XyZ", &[("application/dicom", &good), ("application/json", b"{}")]);
    let reply = post(&web, "/studies", DICOM_MULTIPART, &mixed, &[]);
    assert_eq!(reply.status, 415, "{}", reply.text());
    assert!(reply.text().contains("part 2"), "{}", reply.text());
    // A request type we do not take, and a body that is not multipart at all.
    let reply = post(&web, "/studies", "multipart/related; type=\"application/dicom+json\"; boundary=XyZ", &body, &[]);
    assert_eq!(reply.status, 415, "{}", reply.text());
    let reply = post(&web, "/studies", "text/plain", b"hello", &[]);
    assert_eq!(reply.status, 415, "{}", reply.text());
    // Larger than the limit: declared, and streamed without a length.
    let big = vec![0u8; 100 * 1024];
    let reply = post(&web, "/studies", DICOM_MULTIPART, &multipart("XyZ", &[("application/dicom", &good), ("application/dicom", &big)]), &[]);
    assert_eq!(reply.status, 413, "{}", reply.text());
    let reply = post(
        &web,
        "/studies",
        DICOM_MULTIPART,
        &multipart("XyZ", &[("application/dicom", &good), ("application/dicom", &big)]),
        &["-H", "Transfer-Encoding: chunked"],
    );
    assert_eq!(reply.status, 413, "{}", reply.text());
    // An Accept we cannot answer.
    let reply = post(&web, "/studies", DICOM_MULTIPART, &body, &["-H", "Accept: application/dicom+xml"]);
    assert_eq!(reply.status, 406, "{}", reply.text());
    assert_eq!(web.instances(), 0, "nothing of a refused request is stored");
    web.assert_no_orphans();
    web.assert_healthy();

    // A non-DICOM part alone: 409 with the reason; with a good one: 202, the good one stored.
    let reply = post(&web, "/studies", DICOM_MULTIPART, &multipart("XyZ", &[("application/dicom", b"not dicom at all")]), &[]);
    assert_eq!(reply.status, 409, "{}", reply.text());
    let failed = &reply.json()["00081198"]["Value"][0];
    assert_eq!(failed["00081197"]["Value"][0], 0xC000, "{failed:#}");
    assert!(failed["00000902"]["Value"][0].as_str().unwrap().to_lowercase().contains("dicom"), "{failed:#}");
    let reply = post(&web, "/studies", DICOM_MULTIPART, &multipart("XyZ", &[("application/dicom", &good), ("application/dicom", b"not dicom")]), &[]);
    assert_eq!(reply.status, 202, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["00081199"]["Value"].as_array().unwrap().len(), 1);
    assert_eq!(answer["00081198"]["Value"].as_array().unwrap().len(), 1);
    assert_eq!(web.instances(), 1);
    // An instance of another study than the request's fails; a single application/dicom body is taken.
    let reply = post(&web, "/studies/1.2.3.4", DICOM_MULTIPART, &multipart("XyZ", &[("application/dicom", &other)]), &[]);
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert_eq!(reply.json()["00081198"]["Value"][0]["00081197"]["Value"][0], 0xA900);
    let reply = post(&web, &format!("/studies/{}", fixtures()[1].study), "application/dicom", &other, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(web.instances(), 2);
    web.assert_healthy();
}

#[test]
fn stow_answers_list_the_parts_in_order_and_a_cut_body_leaves_nothing() {
    let web = Web::start(WebConfig::default());
    let study = "1.2.826.0.1.3680043.10.1999.9";
    // Seven parts, two of them not DICOM: the stages of several parts overlap while the next
    // parts arrive, and the answer still follows the order of the body.
    let good = native_series(study, 0..5, 1);
    let parts: Vec<&[u8]> = vec![&good[0], b"not dicom", &good[1], &good[2], b"neither", &good[3], &good[4]];
    let body = multipart("XyZ", &parts.iter().map(|p| ("application/dicom", *p)).collect::<Vec<_>>());
    let reply = post(&web, "/studies", DICOM_MULTIPART, &body, &[]);
    assert_eq!(reply.status, 202, "{}", reply.text());
    let answer = reply.json();
    let stored: Vec<&str> = answer["00081199"]["Value"].as_array().unwrap().iter().map(|i| i["00081155"]["Value"][0].as_str().unwrap()).collect();
    assert_eq!(stored, (0..5).map(|n| format!("{study}.1.{n}")).collect::<Vec<_>>(), "{answer:#}");
    assert_eq!(answer["00081198"]["Value"].as_array().unwrap().len(), 2, "{answer:#}");
    assert_eq!(web.instances(), 5);

    // The same parts under other UIDs, the body cut inside the last part: the five complete
    // parts before it were staged, and are all discarded with it.
    let again = native_series(study, 10..16, 1);
    let body = dicom_parts(&again);
    let cut = body.len() - again[5].len() / 2;
    let reply = post(&web, "/studies", DICOM_MULTIPART, &body[..cut], &[]);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(web.instances(), 5, "nothing of the cut body is stored");
    web.assert_no_orphans();
    web.assert_healthy();
}

#[test]
fn a_client_gone_in_the_middle_of_a_stow_request_leaves_nothing() {
    use std::io::Write;
    let web = Web::start(WebConfig::default());
    let objects = native_series("1.2.826.0.1.3680043.10.1999.10", 0..6, 2);
    let body = dicom_parts(&objects);
    // Four whole parts and half of the fifth are sent; then the connection is closed, with the
    // body's declared length not reached.
    let sent = body.len() - objects[5].len() - objects[4].len() / 2;
    let mut socket = stow_by_hand(&web, body.len());
    socket.write_all(&body[..sent]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(socket);
    // The stages of the parts received finish in the background: wait, a bounded while, until
    // the blob folder has had no file at all (staged or renamed) for a second.
    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| entries.flatten().map(|e| if e.path().is_dir() { files(&e.path()) } else { 1 }).sum())
    }
    let blobs = web.dir.path().join("data").join("blobs");
    let mut empty_since = None;
    let clean = (0..200).any(|i| {
        std::thread::sleep(Duration::from_millis(50));
        match (files(&blobs), empty_since) {
            (0, None) => empty_since = Some(i),
            (0, Some(since)) => return i - since >= 20,
            _ => empty_since = None,
        }
        false
    });
    assert!(clean, "the parts of the broken request were left in the archive: {} files", files(&blobs));
    assert_eq!(web.instances(), 0);
    web.assert_no_orphans();
    web.assert_healthy();
}

#[test]
fn stow_requests_beyond_the_limit_wait_their_turn() {
    use std::io::{Read, Write};
    let web = Web::start(WebConfig { max_stow_requests: 1, ..WebConfig::default() });
    let objects = native_series("1.2.826.0.1.3680043.10.1999.12", 1..3, 1);
    let (first, second) = (&objects[..1], &objects[1..]);
    // The first request sends half of its body and waits: it holds the only turn.
    let body = dicom_parts(first);
    let mut socket = stow_by_hand(&web, body.len());
    socket.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::thread::scope(|scope| {
        let (done_tx, done) = std::sync::mpsc::channel();
        let web = &web;
        scope.spawn(move || {
            let reply = post(web, "/studies", DICOM_MULTIPART, &dicom_parts(second), &[]);
            let _ = done_tx.send(reply.status);
        });
        // The second request waits while the first holds the turn...
        assert!(done.recv_timeout(Duration::from_millis(1500)).is_err(), "the second request was served beside the first");
        assert_eq!(web.instances(), 0);
        // ...and is served once the first is complete.
        socket.write_all(&body[body.len() / 2..]).unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(done.recv_timeout(Duration::from_secs(30)).expect("the second request is answered"), 200);
    });
    assert_eq!(web.instances(), 2);
    web.assert_healthy();
}

#[test]
fn a_stalled_upload_is_cut_and_gives_its_turn_back() {
    use std::io::{Read, Write};
    let web = Web::start(WebConfig { max_stow_requests: 1, body_idle_timeout: Duration::from_secs(1), ..WebConfig::default() });
    let objects = native_series("1.2.826.0.1.3680043.10.1999.13", 0..3, 1);
    // Two whole parts and half of the third, then nothing: the request fails after the idle
    // time, with nothing of it stored.
    let body = dicom_parts(&objects);
    let sent = body.len() - objects[2].len() / 2;
    let mut socket = stow_by_hand(&web, body.len());
    socket.write_all(&body[..sent]).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    assert_eq!(web.instances(), 0);
    web.assert_no_orphans();
    // The turn it held is free again.
    let reply = post(&web, "/studies", DICOM_MULTIPART, &dicom_parts(&objects[..1]), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(web.instances(), 1);
}

/// STOW-RS onto a full disk: the archive on a 3 MiB tmpfs (mounting needs root, which the test
/// script has), four parts of 1 MiB each.
#[test]
fn stow_onto_a_full_disk_fails_the_parts_that_do_not_fit_and_loses_nothing() {
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&base.path().join("small"), "3M") else {
        println!("not root: cannot mount a small tmpfs, the full-disk test does not apply");
        return;
    };
    let web = Web::start_in(&disk.path().join("data"), WebConfig::default());
    let study = "1.2.826.0.1.3680043.10.1999.11";
    let objects = native_series(study, 0..4, 8);
    assert!(objects.iter().all(|o| o.len() > 1 << 20));
    let body = dicom_parts(&objects);
    let reply = post(&web, "/studies", DICOM_MULTIPART, &body, &[]);
    assert!(matches!(reply.status, 202 | 409), "a full disk fails some parts: {} {}", reply.status, reply.text());
    let answer = reply.json();
    let list = |sequence: &str| answer[sequence]["Value"].as_array().cloned().unwrap_or_default();
    let (stored, failed) = (list("00081199"), list("00081198"));
    assert_eq!(stored.len() + failed.len(), 4, "{answer:#}");
    assert!(!failed.is_empty(), "4 MiB cannot fit on 3 MiB: {answer:#}");
    for item in &failed {
        assert_eq!(item["00081197"]["Value"][0], 0xA700, "out of resources: {item:#}");
        assert!(item["00000902"]["Value"][0].as_str().unwrap().to_lowercase().contains("space"), "{item:#}");
    }
    println!(
        "full disk: HTTP {}, {} stored, {} failed: {:?}",
        reply.status,
        stored.len(),
        failed.len(),
        failed.iter().map(|f| f["00000902"]["Value"][0].clone()).collect::<Vec<_>>()
    );
    // What the answer lists as stored is stored, whole; nothing else is left behind.
    assert_eq!(web.instances(), stored.len() as u64);
    web.assert_no_orphans();
    web.assert_healthy();

    // Once there is room again, the archive takes objects as before.
    disk.resize("32M");
    let reply = post(&web, "/studies", DICOM_MULTIPART, &dicom_parts(&objects[3..]), &[]);
    assert!(matches!(reply.status, 200 | 202), "{} {}", reply.status, reply.text());
    assert_eq!(web.instances(), stored.len() as u64 + u64::from(!stored.iter().any(|i| i["00081155"]["Value"][0] == format!("{study}.1.3"))));
    web.assert_no_orphans();
}

#[test]
fn concurrent_stow_requests_each_get_their_own_answer() {
    let web = Web::start(WebConfig::default());
    let study = "1.2.826.0.1.3680043.10.1999.8";
    // 8 requests of 3 instances each, sent at once; the last request repeats an instance of the
    // first with other bytes: whichever is committed second is not stored (the default duplicate
    // policy keeps the first, with a warning in the answer).
    let requests: Vec<Vec<(String, Vec<u8>)>> = (0..8)
        .map(|r| {
            (0..3)
                .map(|i| {
                    let series = format!("{study}.{r}");
                    let sop = if r == 7 && i == 2 { format!("{study}.0.0") } else { format!("{series}.{i}") };
                    let bytes = large_native(study, &series, &sop, 1 + i);
                    (sop, bytes)
                })
                .collect()
        })
        .collect();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|parts| {
                let web = &web;
                scope.spawn(move || {
                    let body = multipart("XyZ", &parts.iter().map(|(_, b)| ("application/dicom", b.as_slice())).collect::<Vec<_>>());
                    let reply = post(web, "/studies", DICOM_MULTIPART, &body, &[]);
                    (reply.status, reply.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sops_in = |answer: &Value, sequence: &str| -> BTreeSet<String> {
        answer[sequence]["Value"]
            .as_array()
            .map(|items| items.iter().map(|i| i["00081155"]["Value"][0].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let mut kept_existing = 0;
    for (parts, (status, answer)) in requests.iter().zip(&answers) {
        let sent: BTreeSet<String> = parts.iter().map(|(sop, _)| sop.clone()).collect();
        // Each answer names exactly the instances of its own request, all stored.
        assert_eq!(sops_in(answer, "00081199"), sent, "{answer:#}");
        assert!(answer.get("00081198").is_none(), "{answer:#}");
        let warned = answer["00081199"]["Value"].as_array().unwrap().iter().filter(|i| i["00081196"]["Value"][0] == 0xB006).count();
        kept_existing += warned;
        assert_eq!(*status, if warned == 0 { 200 } else { 202 }, "{answer:#}");
    }
    assert_eq!(kept_existing, 1, "the second of the two objects with the same UID is not stored");
    assert_eq!(web.instances(), 23);
    web.assert_healthy();
}

#[test]
fn retrieve_and_search_bad_input() {
    let web = Web::start(WebConfig::default());
    let f = &fixtures()[0];
    web.ingest(&f.path);
    let compressed = pydicom_test_file("JPEG2000.dcm");
    web.ingest(&compressed);
    let j2k = python(&["uids", compressed.to_str().unwrap()])[0].clone();
    let j2k_instance =
        format!("/studies/{}/series/{}/instances/{}", j2k["study"].as_str().unwrap(), j2k["series"].as_str().unwrap(), j2k["sop"].as_str().unwrap());
    let instance = format!("/studies/{}/series/{}/instances/{}", f.study, f.series, f.sop);
    let check = |path: &str, args: &[&str], status: u16, needle: &str| {
        let reply = web.curl(path, args);
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert!(reply.text().contains(needle), "{path}: {:?} should mention {needle:?}", reply.text());
    };
    // Unknown UIDs.
    check("/studies/1.2.3.999", &[], 404, "1.2.3.999");
    check(&format!("/studies/{}/series/1.2.3.999", f.study), &[], 404, "1.2.3.999");
    check(&format!("/studies/{}/series/{}/instances/1.2.3.999/metadata", f.study, f.series), &[], 404, "1.2.3.999");
    check(&format!("/studies/1.2.3.999/series/{}/instances/{}", f.series, f.sop), &[], 404, "1.2.3.999");
    check("/studies/1.2.x.3", &[], 400, "StudyInstanceUID");
    // Invalid parameters and tags name the parameter.
    check("/studies?limit=ten", &[], 400, "limit");
    check("/studies?offset=-1", &[], 400, "offset");
    check("/studies?fuzzymatching=yes", &[], 400, "fuzzymatching");
    check("/studies?includefield=NotAnAttribute", &[], 400, "includefield");
    check("/studies?0010001=x", &[], 400, "0010001");
    check("/studies?NotAnAttribute=x", &[], 400, "NotAnAttribute");
    check("/studies?StudyDate=2024", &[], 400, "StudyDate");
    check("/studies?Modality=CT", &[], 400, "Modality");
    check(&format!("{instance}/frames/0"), &[], 400, "frame");
    check(&format!("{instance}/frames/1,x"), &[], 400, "frame");
    check(&format!("{instance}/frames/2"), &[], 404, "frame 2");
    check(&format!("{instance}/bulkdata/zz"), &[], 400, "bulk data path");
    check("/wado?studyUID=1", &[], 400, "requestType");
    check(&format!("/wado?requestType=WADO&studyUID={}&seriesUID={}", f.study, f.series), &[], 400, "objectUID");
    check(&format!("{instance}/rendered?window=40"), &[], 400, "window");
    // Unsupported Accept.
    check("/studies", &["-H", "Accept: application/dicom+xml"], 406, "application/dicom+json");
    check(&format!("{instance}/metadata"), &["-H", "Accept: application/dicom+xml"], 406, "json");
    check(&instance, &["-H", "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50"], 406, "transcoding");
    check(&format!("{instance}/rendered"), &["-H", "Accept: image/gif"], 406, "image/jpeg");
    // Frames as stored or decoded: re-encoding into another syntax is not offered.
    check(&format!("{j2k_instance}/frames/1"), &["-H", "Accept: multipart/related; type=\"image/jls\""], 406, "image/jp2");
    check(
        &format!("{j2k_instance}/frames/1"),
        &["-H", "Accept: multipart/related; type=\"image/jp2\"; transfer-syntax=1.2.840.10008.1.2.4.90"],
        406,
        "re-encoding",
    );
    check(
        &format!("{j2k_instance}/frames/1"),
        &["-H", "Accept: multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.2"],
        406,
        "decoded",
    );
    // Compressed objects are rendered through the codecs (dicomweb_render.rs compares them).
    let reply = web.curl(&format!("{j2k_instance}/rendered"), &[]);
    assert_eq!((reply.status, reply.header("content-type").as_deref()), (200, Some("image/jpeg")), "{}", reply.text());
    // Their frames come as they are stored.
    let reply = web.curl(&format!("{j2k_instance}/frames/1"), &["-H", "Accept: multipart/related; type=\"image/jp2\""]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.parts()[0].0.contains("image/jp2"));
    check("/no/such/path", &[], 404, "");
    web.assert_healthy();
}

#[test]
fn qido_paging_warns_when_results_are_cut() {
    let web = Web::start(WebConfig { max_results: 4, ..WebConfig::default() });
    for f in fixtures() {
        web.ingest(&f.path);
    }
    let all = fixtures().len();
    let reply = web.curl("/instances", &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().as_array().unwrap().len(), 4);
    let warning = reply.header("warning").expect("a Warning header when the server cuts the results");
    assert!(warning.starts_with("299 "), "{warning}");
    let mut seen = BTreeSet::new();
    for offset in (0..all).step_by(2) {
        let reply = web.curl(&format!("/instances?limit=2&offset={offset}"), &[]);
        let rows = reply.json();
        assert_eq!(reply.header("warning").is_some(), offset + 2 < all, "offset {offset}");
        for row in rows.as_array().unwrap() {
            seen.insert(row["00080018"]["Value"][0].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, fixtures().iter().map(|f| f.sop.clone()).collect::<BTreeSet<_>>());
    let reply = web.curl("/studies?includefield=all&PatientID=PID-A", &[]);
    let rows = reply.json();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["00201206"], serde_json::json!({"vr": "IS", "Value": [2]}), "{rows:#}");
    assert_eq!(rows[0]["00100010"]["Value"][0]["Alphabetic"], "Doe^John^^Dr");
    assert!(rows[0]["00081190"]["Value"][0].as_str().unwrap().ends_with(&format!("/dicom-web/studies/{}", fixtures()[0].study)));
}

#[test]
fn cors_health_and_thumbnails() {
    let web = Web::start(WebConfig { cors_origins: vec!["https://viewer.example".into()], ..WebConfig::default() });
    let f = fixtures().iter().find(|f| f.frames > 1).unwrap();
    web.ingest(&f.path);
    let reply = web.curl("/health", &["-H", "Origin: https://viewer.example"]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "ok\n");
    assert_eq!(reply.header("access-control-allow-origin").as_deref(), Some("https://viewer.example"));
    let reply = web.curl("/studies", &["-X", "OPTIONS", "-H", "Origin: https://viewer.example", "-H", "Access-Control-Request-Method: GET"]);
    assert!(reply.status == 200 || reply.status == 204, "preflight: {}", reply.status);
    assert!(reply.header("access-control-allow-methods").is_some_and(|m| m.contains("GET")));
    let reply = web.curl("/health", &["-H", "Origin: https://other.example"]);
    assert_eq!(reply.header("access-control-allow-origin"), None);

    for (path, args) in [
        (format!("/studies/{}/thumbnail", f.study), vec!["-H", "Accept: image/png"]),
        (format!("/studies/{}/series/{}/thumbnail?viewport=3,2", f.study, f.series), vec!["-H", "Accept: image/png"]),
        (format!("/studies/{}/series/{}/instances/{}/frames/2/rendered", f.study, f.series, f.sop), vec!["-H", "Accept: image/png"]),
    ] {
        let reply = web.curl(&path, &args);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(&reply.body[1..4], b"PNG", "{path}");
        // Width and height of the IHDR chunk.
        let (w, h) = (u32::from_be_bytes(reply.body[16..20].try_into().unwrap()), u32::from_be_bytes(reply.body[20..24].try_into().unwrap()));
        if path.contains("viewport") {
            assert_eq!((w, h), (2, 2), "{path}: fits 3x2 keeping 6:5");
        } else {
            assert_eq!((w, h), (6, 5), "{path}");
        }
    }
    let reply = web.curl(&format!("/studies/{}/rendered", f.study), &[]);
    assert_eq!(reply.status, 501, "{}", reply.text());
}

/// The record of the instance `sop`, and the path of its blob in the server's folder.
fn stored_blob(web: &Web, sop: &str) -> (pacs_core::InstanceRecord, PathBuf) {
    let record = web.archive.instances(&pacs_core::Scope::Instance(pacs_core::Uid::new(sop).unwrap())).unwrap().remove(0);
    let path = web.dir.path().join("data").join("blobs").join(record.blob.as_str());
    assert!(path.is_file(), "blob of {sop} at {}", path.display());
    (record, path)
}

#[test]
fn qido_matches_and_returns_attributes_outside_the_index() {
    let web = Web::start(WebConfig::default());
    let fixtures = fixtures();
    for f in fixtures {
        web.ingest(&f.path);
    }
    let mut args = vec!["headers".to_owned(), web.url()];
    args.extend(paths(fixtures));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = python(&args);
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    // Rows per case of web.py's list (the reference selects the same ones): none of them vacuous.
    assert_eq!(report["counts"], serde_json::json!([3, 1, 2, 3, 1, 1, 0, 3, 3, 1, 1, 2, 1, 3, 5, 7, 2, 1, 4, 1, 3, 1]), "{report:#}");
    assert_eq!(report["includefield all"], fixtures.len());

    // The representative of a study is the first instance by number of its first series (a1_3,
    // the last by UID); with a key outside the index, the first instance that matches.
    let study_a = &fixtures[0].study;
    let content_date = |path: &str| {
        let reply = web.curl(path, &[]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let rows = reply.json();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{path}: {rows:#}");
        rows[0]["00080023"].clone()
    };
    assert_eq!(content_date(&format!("/studies?StudyInstanceUID={study_a}&includefield=ContentDate")), serde_json::json!({"vr": "DA", "Value": ["20240113"]}));
    assert_eq!(content_date(&format!("/studies?StudyInstanceUID={study_a}&ContentDate=20240112")), serde_json::json!({"vr": "DA", "Value": ["20240112"]}));
    assert_eq!(
        content_date(&format!("/series?SeriesInstanceUID={}&includefield=00080023", fixtures[0].series)),
        serde_json::json!({"vr": "DA", "Value": ["20240113"]})
    );
    let b = fixtures.iter().find(|f| f.frames > 1).unwrap();
    assert_eq!(
        content_date(&format!("/instances?SOPInstanceUID={}&includefield=ContentDate", b.sop)),
        serde_json::json!({"vr": "DA"}),
        "asked and absent: empty"
    );

    // Paging counts the rows that match the keys outside the index.
    let mut seen = BTreeSet::new();
    for (offset, rows, warned) in [(0, 2, true), (2, 1, false)] {
        let reply = web.curl(&format!("/instances?Manufacturer=ACME&limit=2&offset={offset}"), &[]);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let json = reply.json();
        assert_eq!(json.as_array().unwrap().len(), rows, "offset {offset}: {json:#}");
        assert_eq!(reply.header("warning").is_some(), warned, "offset {offset}");
        seen.extend(json.as_array().unwrap().iter().map(|r| r["00080018"]["Value"][0].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen, fixtures.iter().filter(|f| f.series == fixtures[0].series).map(|f| f.sop.clone()).collect::<BTreeSet<_>>());

    // Keys that cannot be matched name the attribute.
    for (query, needle) in [
        ("ReferencedImageSequence=1.2", "ReferencedImageSequence"),
        ("ContentDate=2024", "ContentDate"),
        ("AcquisitionDateTime=2024013", "AcquisitionDateTime"),
        ("00081140.00081155=1.2", "sequence matching"),
    ] {
        let reply = web.curl(&format!("/instances?{query}"), &[]);
        assert_eq!(reply.status, 400, "{query}: {}", reply.text());
        assert!(reply.text().contains(needle), "{query}: {}", reply.text());
    }

    // Headers are read up to Pixel Data, never past it: an object cut right after its Pixel Data
    // header is still matched, and its attributes returned.
    let (record, blob) = stored_blob(&web, &b.sop);
    let pacs_core::scan::PixelLayout::Native { offset, .. } = record.pixel else { panic!("{:?}", record.pixel) };
    let file = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
    file.set_len(offset).unwrap();
    drop(file);
    let reply = web.curl(&format!("/instances?SOPInstanceUID={}&Manufacturer=%22%22&includefield=BitsAllocated", b.sop), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let rows = reply.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows:#}");
    assert_eq!(rows[0]["00280100"], serde_json::json!({"vr": "US", "Value": [8]}));
    web.assert_healthy();
}

#[test]
fn qido_on_stored_headers_is_bounded() {
    let web = Web::start(WebConfig { max_header_reads: 3, ..WebConfig::default() });
    let fixtures = fixtures();
    for f in fixtures {
        web.ingest(&f.path);
    }
    let (a, b) = (&fixtures[0], fixtures.iter().find(|f| f.frames > 1).unwrap());
    // More candidate instances than the limit: 413, naming the attribute and the limit.
    for path in ["/instances?Manufacturer=ACME".to_owned(), "/studies?Manufacturer=ACME".to_owned(), "/studies?PatientID=PID-A&Manufacturer=ACME".to_owned()] {
        let reply = web.curl(&path, &[]);
        assert_eq!(reply.status, 413, "{path}: {}", reply.text());
        assert!(reply.text().contains("Manufacturer") && reply.text().contains("limit of 3"), "{path}: {}", reply.text());
    }
    // Narrowed by indexed keys to at most 3 instances: answered.
    for (path, rows) in [
        (format!("/studies/{}/series/{}/instances?Manufacturer=ACME", a.study, a.series), 3),
        ("/studies?PatientID=PID-B&Manufacturer=ACME".to_owned(), 0),
        ("/series?Modality=CT&Manufacturer=ACME".to_owned(), 1),
        (format!("/studies/{}/series?Manufacturer=%22%22", b.study), 2),
        // Returning attributes outside the index reads one header per row returned: not bounded
        // by the limit on searches.
        ("/instances?includefield=Manufacturer".to_owned(), fixtures.len()),
    ] {
        let reply = web.curl(&path, &[]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.json().as_array().unwrap().len(), rows, "{path}");
    }
    web.assert_healthy();
}

#[test]
fn frames_are_decoded_or_sent_as_stored() {
    // Two archives: some of pydicom's files share their UIDs.
    for (names, expected_as_stored) in [
        (
            &[
                "MR_small_jpeg_ls_lossless.dcm",
                "SC_rgb_rle_2frame.dcm",
                "rtdose_rle.dcm",
                "GDCMJ2K_TextGBR.dcm",
                "693_J2KI.dcm",
                "SC_rgb_dcmtk_+eb+cr.dcm",
                "SC_rgb_small_odd_big_endian.dcm",
            ][..],
            9,
        ),
        (&["MR_small_jp2klossless.dcm", "rtdose_expb.dcm", "SC_rgb_rle_16bit_2frame.dcm", "examples_ybr_color.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm"][..], 7),
    ] {
        let web = Web::start(WebConfig::default());
        let files: Vec<PathBuf> = names.iter().map(|n| pydicom_test_file(n)).collect();
        for f in &files {
            web.ingest(f);
        }
        let mut args = vec!["decoded".to_owned(), web.url()];
        args.extend(files.iter().map(|f| f.to_str().unwrap().to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = python(&args);
        assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
        // Every file's frames (up to three of each) were decoded, and the compressed ones' sent
        // as stored too.
        assert_eq!(
            (&report["checked"]["decoded"], &report["checked"]["as stored"]),
            (&serde_json::json!(10), &serde_json::json!(expected_as_stored)),
            "{report:#}"
        );
    }

    // With curl: the part headers, what is offered for a JPEG-LS object, and 406 for the rest.
    let web = Web::start(WebConfig::default());
    let jls = pydicom_test_file("MR_small_jpeg_ls_lossless.dcm");
    web.ingest(&jls);
    let uids = python(&["uids", jls.to_str().unwrap()])[0].clone();
    let frames = format!(
        "/studies/{}/series/{}/instances/{}/frames/1",
        uids["study"].as_str().unwrap(),
        uids["series"].as_str().unwrap(),
        uids["sop"].as_str().unwrap()
    );
    for (accept, status, part_type) in [
        ("multipart/related; type=\"application/octet-stream\"", 200, "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"),
        (
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2",
            200,
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
        ),
        ("*/*", 200, "image/jls; transfer-syntax=1.2.840.10008.1.2.4.80"),
        ("multipart/related; type=\"image/jls\"; transfer-syntax=1.2.840.10008.1.2.4.80", 200, "image/jls; transfer-syntax=1.2.840.10008.1.2.4.80"),
        ("multipart/related; type=\"image/jp2\", multipart/related; type=\"application/octet-stream\";q=0.5", 200, "application/octet-stream"),
        ("multipart/related; type=\"image/jls\"; transfer-syntax=1.2.840.10008.1.2.4.81", 406, "image/jls (transfer syntax 1.2.840.10008.1.2.4.80)"),
        ("multipart/related; type=\"image/jp2\"", 406, "re-encoding"),
        ("multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.80", 406, "decoded as application/octet-stream"),
    ] {
        let reply = web.curl(&frames, &["-H", &format!("Accept: {accept}")]);
        assert_eq!(reply.status, status, "{accept}: {}", String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]));
        if status == 200 {
            let parts = reply.parts();
            assert_eq!(parts.len(), 1, "{accept}");
            assert!(parts[0].0.contains(part_type), "{accept}: {}", parts[0].0);
            assert_eq!(parts[0].1.len() == 64 * 64 * 2, part_type.starts_with("application/octet-stream"), "{accept}: {} bytes", parts[0].1.len());
        } else {
            assert!(reply.text().contains(part_type), "{accept}: {}", reply.text());
        }
    }
}

/// curl against `url` with its exit status: (status, HTTP code, body, stderr).
fn curl_status(url: &str, args: &[&str], scratch: &Path) -> (i32, u16, Vec<u8>, String) {
    let body = scratch.join("curl-status.body");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl ({e})"));
    let code = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    let bytes = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&body);
    (output.status.code().unwrap_or(-1), code, bytes, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// What curl got of a multipart response cut by a failed part: an error exit, with the 200
/// and the parts before the failure (18, partial transfer), or, when the server had not written
/// them yet as it dropped the connection, nothing (52, empty reply); never a closing boundary
/// nor the delimiter of the failed part (it fails before its part starts).
fn assert_cut(exit: i32, code: u16, body: &[u8], stderr: &str, all: usize) {
    assert!(matches!((exit, code), (18, 200) | (52, 0)), "curl must see the cut: exit {exit}, HTTP {code}: {stderr}");
    let text = String::from_utf8_lossy(body);
    let delimiters = text.matches("\r\n--pacs-").count() + usize::from(text.starts_with("--pacs-"));
    assert!(delimiters < all, "{delimiters} delimiters for {all} parts: the failed part was started");
    assert!(!text.trim_end().ends_with("--"), "a closing boundary after a failed part");
}

#[test]
fn a_part_that_fails_midway_cuts_the_response_visibly() {
    let web = Web::start(WebConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let listing = python(&["corrupt", dir.path().to_str().unwrap()]);
    let objects: Vec<(String, String)> =
        listing.as_array().unwrap().iter().map(|o| (o["path"].as_str().unwrap().to_owned(), o["sop"].as_str().unwrap().to_owned())).collect();
    for (path, _) in &objects {
        web.ingest(Path::new(path));
    }
    let study = listing[0]["study"].as_str().unwrap().to_owned();
    let series = listing[0]["series"].as_str().unwrap().to_owned();
    let explicit = "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1";

    // The whole study in Explicit VR Little Endian: the first object converts before the response
    // starts (200), the second one fails as it streams. The chunked body is not terminated, and
    // curl says so (see assert_cut); no closing boundary came.
    let (exit, code, body, stderr) = curl_status(&format!("{}/studies/{study}", web.url()), &["-H", explicit], web.dir.path());
    assert_cut(exit, code, &body, &stderr, objects.len());

    // dicomweb-client (requests) raises instead of returning fewer instances.
    let report = python(&["cut", &web.url(), &study]);
    let error = report["error"].as_str().unwrap_or_else(|| panic!("dicomweb-client took the cut response as complete: {report}"));
    assert!(error.starts_with("ChunkedEncodingError") || error.contains("RemoteDisconnected"), "{error}");

    // Alone, the corrupt object fails its conversion before the response starts: a fault of the
    // stored object (500, with the reason), not a conversion the request cannot have (406).
    let alone = format!("{}/studies/{study}/series/{series}/instances/{}", web.url(), objects[1].1);
    let (exit, code, body, _) = curl_status(&alone, &["-H", explicit], web.dir.path());
    assert_eq!((exit, code), (0, 500), "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("7 segments"), "{}", String::from_utf8_lossy(&body));

    // As stored, the same study streams whole, closing boundary included.
    let reply = web.curl(&format!("/studies/{study}"), &["-H", "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*"]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.parts().len(), objects.len());

    // Decoded frames: a first frame that cannot be decoded is an error status with the reason;
    // a later one cuts the response the same way.
    let frames = |sop: &str, list: &str| format!("{}/studies/{study}/series/{series}/instances/{sop}/frames/{list}", web.url());
    let octet = "Accept: multipart/related; type=\"application/octet-stream\"";
    let (exit, code, body, _) = curl_status(&frames(&objects[1].1, "1"), &["-H", octet], web.dir.path());
    assert_eq!((exit, code), (0, 500), "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("7 segments"), "{}", String::from_utf8_lossy(&body));
    let (exit, code, body, stderr) = curl_status(&frames(&objects[2].1, "1,2"), &["-H", octet], web.dir.path());
    assert_cut(exit, code, &body, &stderr, 2);
    let (exit, code, _, stderr) = curl_status(&frames(&objects[2].1, "1"), &["-H", octet], web.dir.path());
    assert_eq!((exit, code), (0, 200), "{stderr}");
    web.assert_healthy();
}

#[test]
fn stored_objects_stream_whole_and_a_missing_or_short_blob_cuts_the_response() {
    let web = Web::start(WebConfig::default());
    let (study, series) = ("1.2.826.0.1.3680043.10.1999.7", "1.2.826.0.1.3680043.10.1999.7.1");
    // Objects of 0.5 MiB and more: several blocks each, the last one partial.
    let objects: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|n| {
            let sop = format!("{series}.{n}");
            let bytes = large_native(study, series, &sop, 4 + n);
            (sop, bytes)
        })
        .collect();
    for (sop, bytes) in &objects {
        let path = web.dir.path().join(format!("{sop}.dcm"));
        std::fs::write(&path, bytes).unwrap();
        web.ingest(&path);
    }
    let as_stored = "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*";
    let study_url = format!("{}/studies/{study}", web.url());

    // Whole, with a Content-Length, each part the stored bytes.
    let reply = web.curl(&format!("/studies/{study}"), &["-H", as_stored]);
    assert_eq!(reply.status, 200);
    let parts = reply.parts();
    assert_eq!(parts.len(), 3);
    for (sop, bytes) in &objects {
        assert!(parts.iter().any(|(_, body)| body == bytes), "{sop} not sent as stored");
    }
    let headers = web.dir.path().join("headers.txt");
    let (exit, code, body, _) = curl_status(&study_url, &["-H", as_stored, "-D", headers.to_str().unwrap()], web.dir.path());
    assert_eq!((exit, code), (0, 200));
    let head = std::fs::read_to_string(&headers).unwrap().to_ascii_lowercase();
    assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");

    // WADO-URI sends one object with its Content-Length.
    let uri = |sop: &str| {
        format!("{}/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application/dicom&transferSyntax=*", web.url())
    };
    let (exit, code, body, stderr) = curl_status(&uri(&objects[0].0), &[], web.dir.path());
    assert_eq!((exit, code), (0, 200), "{stderr}");
    assert_eq!(body, objects[0].1);

    // A blob cut short on disk (the index says more): the response is cut, visibly.
    let blob = |sop: &str| {
        let (record, path) = stored_blob(&web, sop);
        assert_eq!(web.archive.local_path(&record), Some(path.clone()), "the blob store's own path");
        path
    };
    let short = blob(&objects[1].0);
    std::fs::OpenOptions::new().write(true).open(&short).unwrap().set_len(objects[1].1.len() as u64 - 1000).unwrap();
    let (exit, code, body, stderr) = curl_status(&study_url, &["-H", as_stored], web.dir.path());
    assert_cut(exit, code, &body, &stderr, 4);
    let (exit, code, _, stderr) = curl_status(&uri(&objects[1].0), &[], web.dir.path());
    assert!(matches!((exit, code), (18, 200) | (52, 0)), "curl must see the cut: exit {exit}, HTTP {code}: {stderr}");

    // A missing blob: the study response is cut; WADO-URI of that object is a 404 before any byte.
    std::fs::write(&short, &objects[1].1).unwrap();
    std::fs::remove_file(blob(&objects[2].0)).unwrap();
    let (exit, code, body, stderr) = curl_status(&study_url, &["-H", as_stored], web.dir.path());
    assert_cut(exit, code, &body, &stderr, 4);
    let (exit, code, body, _) = curl_status(&uri(&objects[2].0), &[], web.dir.path());
    assert_eq!((exit, code), (0, 404), "{}", String::from_utf8_lossy(&body));
    let (exit, code, body, _) = curl_status(&uri(&objects[1].0), &[], web.dir.path());
    assert_eq!((exit, code), (0, 200));
    assert_eq!(body, objects[1].1, "the restored blob is sent whole");
    web.assert_healthy();
}

/// A native multi-frame CT-like object in Explicit VR Little Endian: `frames` frames of 256 × 256
/// samples of 16 bits (12 stored), a ramp with a block of noise-like values per frame.
fn large_native(study: &str, series: &str, sop: &str, frames: u32) -> Vec<u8> {
    let (class, ts) = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1");
    let mut pixels = Vec::with_capacity(256 * 256 * 2 * frames as usize);
    for f in 0..frames {
        for i in 0..256 * 256u32 {
            let (x, y) = (i % 256, i / 256);
            let v = if x < 32 { (x * 7919 + y * 104_729 + f * 31) % 4096 } else { (x * 3 + y + f * 5) % 4096 };
            pixels.extend_from_slice(&(v as u16).to_le_bytes());
        }
    }
    [
        part10_header(class, sop, ts),
        element(8, 0x16, b"UI", &padded(class, 0)),
        element(8, 0x18, b"UI", &padded(sop, 0)),
        element(8, 0x60, b"CS", &padded("CT", b' ')),
        element(0x10, 0x20, b"LO", &padded("LARGE", b' ')),
        element(0x20, 0x0D, b"UI", &padded(study, 0)),
        element(0x20, 0x0E, b"UI", &padded(series, 0)),
        monochrome16(256, 256, frames, 12),
        element(0x7FE0, 0x10, b"OW", &pixels),
    ]
    .concat()
}

#[test]
fn large_multi_frame_objects_are_converted_through_a_spool() {
    let web = Web::start(WebConfig::default());
    let (study, series, sop) = ("2.25.7001", "2.25.7002", "2.25.7003");
    // 144 frames, 18 MiB of pixel data: converted frame by frame (over 8 MiB decoded), into a
    // spool that goes to a temporary file (over 4 MiB).
    let native = large_native(study, series, sop, 144);
    let mut rle = Vec::new();
    let options = pacs_codec::TranscodeOptions { stream_threshold: Some(u64::MAX), ..Default::default() };
    pacs_codec::transcode_with(&mut native.as_slice(), pacs_codec::syntax::RLE_LOSSLESS, &options, &mut rle).unwrap();
    let stored = web.dir.path().join("large_rle.dcm");
    std::fs::write(&stored, &rle).unwrap();
    web.ingest(&stored);
    // What the conversion back to Explicit VR Little Endian gives, made here frame by frame too.
    let mut expected = Vec::new();
    let report = pacs_codec::transcode(&mut rle.as_slice(), pacs_codec::syntax::EXPLICIT_VR_LITTLE_ENDIAN, &mut expected).unwrap();
    assert!(report.streamed);
    assert!(expected.len() > pacs_codec::spool::SPOOL_MEMORY && expected.ends_with(&native[native.len() - 256 * 256 * 2 * 144..]));

    // WADO-RS: one part, the converted object byte for byte, with the length known up front.
    let accept = "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1";
    let reply = web.curl(&format!("/studies/{study}/series/{series}/instances/{sop}"), &["-H", accept]);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]));
    let parts = reply.parts();
    assert_eq!(parts.len(), 1);
    assert!(parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"), "{}", parts[0].0);
    assert!(parts[0].1 == expected, "WADO-RS: {} bytes, {} expected, or other bytes", parts[0].1.len(), expected.len());
    assert_eq!(reply.header("content-length").and_then(|l| l.parse().ok()), Some(reply.body.len()), "the length of the spooled part is known");

    // WADO-URI: the same bytes.
    let uri = format!(
        "/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application%2Fdicom&transferSyntax=1.2.840.10008.1.2.1"
    );
    let reply = web.curl(&uri, &[]);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]));
    assert!(reply.body == expected, "WADO-URI: {} bytes, {} expected, or other bytes", reply.body.len(), expected.len());
    assert_eq!(reply.header("content-length").and_then(|l| l.parse().ok()), Some(expected.len()));

    // Lossy, streamed and spooled too: a new instance that pydicom decodes, 144 frames.
    let accept = "Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.51";
    let reply = web.curl(&format!("/studies/{study}/series/{series}/instances/{sop}"), &["-H", accept]);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]));
    let parts = reply.parts();
    let lossy = web.dir.path().join("lossy.dcm");
    std::fs::write(&lossy, &parts[0].1).unwrap();
    let script = "import sys, json, pydicom, numpy\nds = pydicom.dcmread(sys.argv[1])\na = ds.pixel_array.astype(numpy.int64)\nprint(json.dumps({'ts': str(ds.file_meta.TransferSyntaxUID), 'uid': str(ds.SOPInstanceUID), 'lossy': ds.LossyImageCompression, 'method': ds.LossyImageCompressionMethod, 'ratio': float(ds.LossyImageCompressionRatio), 'shape': list(a.shape), 'first': int(a[0, 100, 100]), 'last': int(a[-1, 200, 200])}))";
    let output = Command::new("python3").arg("-c").arg(script).arg(&lossy).output().expect("python3 runs: scripts/test.sh installs it");
    assert!(output.status.success(), "pydicom reads the lossy part: {}", String::from_utf8_lossy(&output.stderr));
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["ts"], "1.2.840.10008.1.2.4.51");
    assert_ne!(read["uid"], sop, "a lossy conversion makes a new instance");
    assert_eq!((read["lossy"].as_str(), read["method"].as_str()), (Some("01"), Some("ISO_10918_1")));
    assert!(read["ratio"].as_f64().unwrap() > 2.0, "{read}");
    assert_eq!(read["shape"], serde_json::json!([144, 256, 256]));
    // Ramp values: (100 × 3 + 100) and (200 × 3 + 200 + 143 × 5) modulo 4096, within JPEG's loss.
    assert!((read["first"].as_i64().unwrap() - 400).abs() <= 16, "{read}");
    assert!((read["last"].as_i64().unwrap() - 1515).abs() <= 16, "{read}");
    web.assert_healthy();
}
