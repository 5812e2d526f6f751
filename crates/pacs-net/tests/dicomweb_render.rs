//! DICOMweb rendering and transcoding of compressed objects: `/rendered`, `/thumbnail` and
//! WADO-URI of an object stored compressed give the same image as a native copy of the same
//! pixels; WADO-RS honours the `transfer-syntax` parameter of `Accept`, and what it sends decodes
//! (with pydicom) to the stored pixels.
//!
//! Python 3 with pydicom, numpy and pylibjpeg, dicomweb-client, and curl are required:
//! `scripts/test.sh` installs them. Missing tools fail the tests, they never skip them.

#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pacs_codec::syntax::{EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE, JPEG_LS_LOSSLESS, RLE_LOSSLESS};
use pacs_net::web::{WebConfig, WebServer};
use pacs_store::{Archive, ArchiveConfig};
use serde_json::Value;

/// A `WebServer` on 127.0.0.1 over an archive in a temporary folder, stopped when dropped.
struct Web {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<pacs_net::Result<()>>>,
    archive: Arc<Archive>,
    dir: tempfile::TempDir,
}

impl Web {
    fn start() -> Web {
        let dir = tempfile::tempdir().unwrap();
        let archive = Arc::new(Archive::open(&dir.path().join("data"), ArchiveConfig::default()).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(WebServer::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&archive), WebConfig::default())).unwrap();
        let address = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Web { runtime, address, shutdown: Some(tx), task: Some(task), archive, dir }
    }

    fn url(&self) -> String {
        format!("http://{}/dicom-web", self.address)
    }

    fn ingest(&self, path: &Path) {
        self.archive.ingest(&mut std::fs::File::open(path).unwrap()).unwrap_or_else(|e| panic!("ingest {}: {e}", path.display()));
    }

    /// `curl` against `path` (under the base URL) with extra arguments.
    fn curl(&self, path: &str, args: &[&str]) -> Reply {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (body, headers) = (self.dir.path().join(format!("curl-{n}.body")), self.dir.path().join(format!("curl-{n}.headers")));
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "60", "-o"])
            .arg(&body)
            .arg("-D")
            .arg(&headers)
            .args(["-w", "%{http_code}"])
            .args(args)
            .arg(format!("{}{path}", self.url()))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl ({e}): scripts/test.sh installs it"));
        let status = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
        Reply { status, headers: std::fs::read_to_string(&headers).unwrap_or_default(), body: std::fs::read(&body).unwrap_or_default() }
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

/// An HTTP answer.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().rev().find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned()))
    }

    /// The parts of a `multipart/related` answer: (headers, content).
    fn parts(&self) -> Vec<(String, Vec<u8>)> {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("multipart/related"), "not multipart: {content_type}");
        let boundary = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).unwrap().trim_matches('"').to_owned();
        let delimiter = format!("--{boundary}").into_bytes();
        let positions: Vec<usize> = (0..self.body.len().saturating_sub(delimiter.len()) + 1).filter(|&i| self.body[i..].starts_with(&delimiter)).collect();
        let mut parts = Vec::new();
        for pair in positions.windows(2) {
            let part = &self.body[pair[0] + delimiter.len() + 2..pair[1] - 2];
            let split = (0..part.len()).find(|&i| part[i..].starts_with(b"\r\n\r\n")).unwrap();
            parts.push((String::from_utf8_lossy(&part[..split]).into_owned(), part[split + 4..].to_vec()));
        }
        assert!(self.body[*positions.last().unwrap()..].starts_with(format!("--{boundary}--").as_bytes()), "no closing delimiter");
        parts
    }
}

fn pydicom_test_file(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import pydicom.data, os; print(os.path.dirname(pydicom.data.__file__))"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): scripts/test.sh installs Python 3 and pydicom"));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("test_files")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "pydicom test file {} is missing", path.display());
    path
}

/// pydicom's reading of `path`: its UIDs, transfer syntax and a hash of its decoded pixels.
fn pydicom(path: &Path) -> Value {
    let script = "import sys, json, hashlib, pydicom\n\
ds = pydicom.dcmread(sys.argv[1])\n\
a = ds.pixel_array\n\
print(json.dumps({'study': ds.StudyInstanceUID, 'series': ds.SeriesInstanceUID, 'sop': ds.SOPInstanceUID,\n\
 'ts': str(ds.file_meta.TransferSyntaxUID), 'shape': list(a.shape), 'pixels': hashlib.sha256(a.astype(a.dtype.newbyteorder('<')).tobytes()).hexdigest()}))\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): scripts/test.sh installs pydicom, numpy and pylibjpeg"));
    assert!(output.status.success(), "pydicom {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn instance_path(info: &Value) -> String {
    format!("/studies/{}/series/{}/instances/{}", info["study"].as_str().unwrap(), info["series"].as_str().unwrap(), info["sop"].as_str().unwrap())
}

/// A native (Explicit VR Little Endian) copy of `path`, by pacs-codec.
fn native_copy(path: &Path, dir: &Path) -> PathBuf {
    let out = dir.join(format!("native-{}", path.file_name().unwrap().to_string_lossy()));
    let mut bytes = Vec::new();
    pacs_codec::transcode(&mut std::fs::File::open(path).unwrap(), EXPLICIT_VR_LITTLE_ENDIAN, &mut bytes).unwrap();
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn compressed_objects_render_like_their_native_copy() {
    let scratch = tempfile::tempdir().unwrap();
    let names = ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_jp2klossless.dcm"];
    for name in names {
        let path = pydicom_test_file(name);
        let info = pydicom(&path);
        // pydicom's files share UIDs: a pair of archives for each.
        let (compressed, native) = (Web::start(), Web::start());
        compressed.ingest(&path);
        native.ingest(&native_copy(&path, scratch.path()));
        let instance = instance_path(&info);
        let (study, series, sop) = (info["study"].as_str().unwrap(), info["series"].as_str().unwrap(), info["sop"].as_str().unwrap());
        let last_frame =
            if info["shape"].as_array().unwrap().len() == 4 || (info["shape"].as_array().unwrap().len() == 3 && name.contains("2frame")) { 2 } else { 1 };
        for (path, accept) in [
            (format!("{instance}/rendered"), "image/png"),
            (format!("{instance}/rendered?window=600,1600"), "image/png"),
            (format!("{instance}/rendered"), "image/jpeg"),
            (format!("{instance}/thumbnail?viewport=32,32"), "image/png"),
            (format!("{instance}/frames/{last_frame}/rendered"), "image/png"),
            (format!("/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=image%2Fpng"), ""),
        ] {
            let args = ["-H", &format!("Accept: {accept}")];
            let args: &[&str] = if accept.is_empty() { &[] } else { &args };
            let (ours, reference) = (compressed.curl(&path, args), native.curl(&path, args));
            assert_eq!(ours.status, 200, "{name} {path}: {}", ours.text());
            assert_eq!(reference.status, 200, "{name} {path} (native copy): {}", reference.text());
            let media = if accept.is_empty() { "image/png" } else { accept };
            assert_eq!(ours.header("content-type").as_deref(), Some(media), "{name} {path}");
            assert!(ours.body == reference.body, "{name} {path}: the compressed object renders otherwise than its native copy");
            if path.contains("thumbnail") {
                let (w, h) = (u32::from_be_bytes(ours.body[16..20].try_into().unwrap()), u32::from_be_bytes(ours.body[20..24].try_into().unwrap()));
                assert!(w <= 32 && h <= 32 && (w == 32 || h == 32), "{name}: thumbnail {w}x{h} fits 32x32");
            }
        }
    }
}

#[test]
fn wado_rs_honours_the_transfer_syntax_parameter() {
    let web = Web::start();
    let scratch = tempfile::tempdir().unwrap();
    let ct = pydicom_test_file("CT_small.dcm");
    let rle = pydicom_test_file("MR_small_RLE.dcm");
    let j2k = pydicom_test_file("JPEG2000.dcm");
    for path in [&ct, &rle, &j2k] {
        web.ingest(path);
    }
    let retrieve = |original: &Path, accept: &str, expected_ts: &str| {
        let info = pydicom(original);
        let reply = web.curl(&instance_path(&info), &["-H", &format!("Accept: {accept}")]);
        assert_eq!(reply.status, 200, "{} as {accept}: {}", original.display(), reply.text());
        let parts = reply.parts();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].0.contains(&format!("transfer-syntax={expected_ts}")), "{}: part headers {}", original.display(), parts[0].0);
        let got = scratch.path().join("got.dcm");
        std::fs::write(&got, &parts[0].1).unwrap();
        let got_info = pydicom(&got);
        assert_eq!(got_info["ts"], expected_ts, "{} as {accept}", original.display());
        assert_eq!((&got_info["shape"], &got_info["pixels"]), (&info["shape"], &info["pixels"]), "{} as {accept}: other pixels", original.display());
        parts[0].1.clone()
    };
    let dicom = |ts: &str| format!("multipart/related; type=\"application/dicom\"; transfer-syntax={ts}");
    // Compressed to native, native to compressed, compressed to compressed.
    retrieve(&rle, &dicom(EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN);
    retrieve(&j2k, &dicom(EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN);
    retrieve(&ct, &dicom(RLE_LOSSLESS), RLE_LOSSLESS);
    retrieve(&ct, &dicom(JPEG_LS_LOSSLESS), JPEG_LS_LOSSLESS);
    retrieve(&rle, &dicom(JPEG_LS_LOSSLESS), JPEG_LS_LOSSLESS);
    // No parameter: Explicit VR Little Endian (PS3.18); `*`: as stored, byte for byte.
    retrieve(&rle, "multipart/related; type=\"application/dicom\"", EXPLICIT_VR_LITTLE_ENDIAN);
    let stored = retrieve(&rle, &dicom("*"), RLE_LOSSLESS);
    assert_eq!(stored, std::fs::read(&rle).unwrap(), "transfer-syntax=* sends the stored bytes");
    // A second choice in the Accept header is taken when the first is impossible.
    retrieve(&ct, &format!("{}, {};q=0.5", dicom("1.2.3.4"), dicom(RLE_LOSSLESS)), RLE_LOSSLESS);

    // Impossible conversions: 406 with a message, never a corrupt object.
    let info = pydicom(&ct);
    for (ts, needle) in [(JPEG_BASELINE, "8-bit"), ("1.2.3.4", "1.2.3.4")] {
        let reply = web.curl(&instance_path(&info), &["-H", &format!("Accept: {}", dicom(ts))]);
        assert_eq!(reply.status, 406, "{ts}: {}", reply.text());
        assert!(reply.text().contains("transcoding") && reply.text().contains(needle), "{ts}: {}", reply.text());
    }
    // A whole study of mixed syntaxes, converted part by part.
    let study = info["study"].as_str().unwrap();
    let reply = web.curl(&format!("/studies/{study}"), &["-H", &format!("Accept: {}", dicom(EXPLICIT_VR_LITTLE_ENDIAN))]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.parts().iter().all(|(h, _)| h.contains(EXPLICIT_VR_LITTLE_ENDIAN)));

    // WADO-URI: transferSyntax.
    let rle_info = pydicom(&rle);
    let uri = format!(
        "/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}&contentType=application%2Fdicom&transferSyntax={EXPLICIT_VR_LITTLE_ENDIAN}",
        rle_info["study"].as_str().unwrap(),
        rle_info["series"].as_str().unwrap(),
        rle_info["sop"].as_str().unwrap()
    );
    let reply = web.curl(&uri, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let got = scratch.path().join("uri.dcm");
    std::fs::write(&got, &reply.body).unwrap();
    let got_info = pydicom(&got);
    assert_eq!((got_info["ts"].as_str(), &got_info["pixels"]), (Some(EXPLICIT_VR_LITTLE_ENDIAN), &rle_info["pixels"]));
    let reply = web.curl(&uri.replace(EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE), &[]);
    assert_eq!(reply.status, 406, "{}", reply.text());
}

#[test]
fn dicomweb_client_retrieves_in_the_asked_transfer_syntax() {
    let web = Web::start();
    let rle = pydicom_test_file("MR_small_RLE.dcm");
    web.ingest(&rle);
    let info = pydicom(&rle);
    let script = r#"
import sys, json, hashlib, pydicom
from dicomweb_client.api import DICOMwebClient
c = DICOMwebClient(sys.argv[1])
out = {}
for ts in sys.argv[5:]:
    ds = c.retrieve_instance(sys.argv[2], sys.argv[3], sys.argv[4], media_types=(("application/dicom", ts),))
    a = ds.pixel_array
    out[ts] = [str(ds.file_meta.TransferSyntaxUID), hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()]
print(json.dumps(out))
"#;
    let output = Command::new("python3")
        .args(["-c", script, &web.url(), info["study"].as_str().unwrap(), info["series"].as_str().unwrap(), info["sop"].as_str().unwrap()])
        .args([EXPLICIT_VR_LITTLE_ENDIAN, JPEG_LS_LOSSLESS, "*"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): scripts/test.sh installs dicomweb-client"));
    assert!(output.status.success(), "dicomweb-client: {}", String::from_utf8_lossy(&output.stderr));
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    for (ts, expected) in [(EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN), (JPEG_LS_LOSSLESS, JPEG_LS_LOSSLESS), ("*", RLE_LOSSLESS)] {
        assert_eq!(got[ts][0], expected, "{got}");
        assert_eq!(got[ts][1], info["pixels"], "{ts}: other pixels");
    }
}
