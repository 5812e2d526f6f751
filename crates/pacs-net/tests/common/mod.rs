//! The harness shared by the DICOMweb tests: a `WebServer` over a throw-away archive, `curl`
//! against it, and pydicom's bundled test files.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pacs_net::web::{WebConfig, WebServer};
use pacs_store::{Archive, ArchiveConfig, VerifyOptions};
use serde_json::Value;

/// A `WebServer` on 127.0.0.1 over an archive in a temporary folder, stopped when dropped.
pub struct Web {
    pub runtime: tokio::runtime::Runtime,
    pub address: SocketAddr,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<pacs_net::Result<()>>>,
    pub archive: Arc<Archive>,
    pub dir: tempfile::TempDir,
}

impl Web {
    pub fn start(config: WebConfig) -> Web {
        Web::start_on("127.0.0.1:0".parse().unwrap(), config)
    }

    pub fn start_on(bind: SocketAddr, config: WebConfig) -> Web {
        Web::serve(bind, None, config)
    }

    /// A server over an archive in `data` (the scratch folder stays a temporary one).
    pub fn start_in(data: &Path, config: WebConfig) -> Web {
        Web::serve("127.0.0.1:0".parse().unwrap(), Some(data), config)
    }

    fn serve(bind: SocketAddr, data: Option<&Path>, config: WebConfig) -> Web {
        let dir = tempfile::tempdir().unwrap();
        let data = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let archive = Arc::new(Archive::open(&data, ArchiveConfig::default()).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(WebServer::bind(bind, Arc::clone(&archive), config)).unwrap();
        let address = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Web { runtime, address, shutdown: Some(tx), task: Some(task), archive, dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}/dicom-web", self.address)
    }

    pub fn instances(&self) -> u64 {
        self.archive.stats().unwrap().instances
    }

    pub fn ingest(&self, path: &Path) {
        self.archive.ingest(&mut std::fs::File::open(path).unwrap()).unwrap_or_else(|e| panic!("ingest {}: {e}", path.display()));
    }

    /// `curl` against `path` (under the base URL) with extra arguments.
    pub fn curl(&self, path: &str, args: &[&str]) -> Reply {
        curl(&format!("{}{path}", self.url()), args, self.dir.path())
    }

    /// Asserts that every blob of the archive has its index row and every row its intact blob.
    pub fn assert_no_orphans(&self) {
        let report = self.archive.verify(VerifyOptions { checksums: true, repair: false }, &mut |_| {}).unwrap();
        assert!(report.is_clean() && report.orphans.is_empty(), "the archive is not clean: {report:?}");
    }

    /// Asserts the server still answers.
    pub fn assert_healthy(&self) {
        let reply = self.curl("/health", &[]);
        assert_eq!(reply.status, 200, "health after bad input: {}", reply.text());
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
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().rev().find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned()))
    }

    /// The parts of a `multipart/related` answer: (headers, content).
    pub fn parts(&self) -> Vec<(String, Vec<u8>)> {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("multipart/related"), "not multipart: {content_type}");
        let boundary = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).unwrap().trim_matches('"').to_owned();
        let delimiter = format!("--{boundary}").into_bytes();
        let mut parts = Vec::new();
        let positions: Vec<usize> = (0..self.body.len().saturating_sub(delimiter.len()) + 1).filter(|&i| self.body[i..].starts_with(&delimiter)).collect();
        for pair in positions.windows(2) {
            let part = &self.body[pair[0] + delimiter.len() + 2..pair[1] - 2];
            let split = (0..part.len()).find(|&i| part[i..].starts_with(b"\r\n\r\n")).unwrap();
            parts.push((String::from_utf8_lossy(&part[..split]).into_owned(), part[split + 4..].to_vec()));
        }
        assert!(self.body[*positions.last().unwrap()..].starts_with(format!("--{boundary}--").as_bytes()), "no closing delimiter");
        parts
    }
}

pub fn curl(url: &str, args: &[&str], scratch: &Path) -> Reply {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (body, headers) = (scratch.join(format!("curl-{n}.body")), scratch.join(format!("curl-{n}.headers")));
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl ({e}): scripts/test.sh installs it"));
    let status = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    let reply = Reply { status, headers: std::fs::read_to_string(&headers).unwrap_or_default(), body: std::fs::read(&body).unwrap_or_default() };
    let _ = (std::fs::remove_file(&body), std::fs::remove_file(&headers));
    reply
}

/// One of pydicom's bundled files (`chr*` from its charset files, the others from its test files).
pub fn pydicom_test_file(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let out = Command::new("python3").args(["-c", "import pydicom.data, os; print(os.path.dirname(pydicom.data.__file__))"]).output().unwrap();
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    });
    let path = if name.starts_with("chr") { dir.join("charset_files").join(name) } else { dir.join("test_files").join(name) };
    assert!(path.is_file(), "pydicom test file {} is missing", path.display());
    path
}
