//! The harness shared by the integration tests of the `pacs` binary: a throw-away archive, the
//! binary run in it, and Python (pydicom) as the independent reference.
//!
//! Python 3 with pydicom and numpy is required: a missing interpreter or package is a test
//! failure with a message saying how to install them (`scripts/test.sh` does), never a skip.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The `pacs` binary built by Cargo for these tests.
pub const PACS: &str = env!("CARGO_BIN_EXE_pacs");

/// Environment variables of `pacs` that must not leak from the caller into a test.
const PACS_ENV: &[&str] = &["PACS_DATA_DIR", "PACS_CONFIG", "PACS_DUPLICATE_POLICY", "PACS_IMPORT_JOBS", "RUST_LOG"];

/// An archive in a temporary folder, and the `pacs` binary run against it.
pub struct Pacs {
    /// The temporary folder (removed on drop); the data directory is inside, or elsewhere.
    pub dir: tempfile::TempDir,
    data_dir: PathBuf,
}

impl Pacs {
    /// A fresh, empty archive in `<tempdir>/data`.
    pub fn new() -> Pacs {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let data_dir = dir.path().join("data");
        Pacs { dir, data_dir }
    }

    /// An archive whose data directory is `data_dir` (e.g. on a small file system).
    pub fn with_data_dir(data_dir: &Path) -> Pacs {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        Pacs { dir, data_dir: data_dir.to_path_buf() }
    }

    /// The data directory (`index.sqlite`, `blobs/`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A scratch path inside the temporary folder (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The command `pacs --data-dir <data dir> ARGS`, with a clean environment for `pacs`.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(PACS);
        command.arg("--data-dir").arg(&self.data_dir).args(args).stdin(Stdio::null());
        for var in PACS_ENV {
            command.env_remove(var);
        }
        command
    }

    /// Runs `pacs ARGS` to completion. Panics if it could not be started or if it panicked.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let output = self.command(args).output().unwrap_or_else(|e| panic!("cannot run {PACS}: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "pacs {} panicked:\n{}", show_args(args), describe(&output));
        output
    }

    /// Runs `pacs ARGS`, which must exit 0, and parses its standard output as JSON.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let (code, value) = self.json_status(args);
        assert_eq!(code, 0, "pacs {} exited {code}", show_args(args));
        value
    }

    /// Runs `pacs ARGS` and parses its standard output as JSON whatever the exit code (0 or 1).
    pub fn json_status<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, Value) {
        let output = self.run(args);
        let code = exit_code(&output);
        assert!(code == 0 || code == 1, "pacs {} failed:\n{}", show_args(args), describe(&output));
        let value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("pacs {}: standard output is not JSON ({e}):\n{}", show_args(args), describe(&output)));
        (code, value)
    }

    /// `pacs import --json PATHS...` (plus `extra` flags): the exit code and the report.
    pub fn import<P: AsRef<OsStr>>(&self, paths: &[P], extra: &[&str]) -> (i32, Value) {
        let mut args: Vec<&OsStr> = vec![OsStr::new("import"), OsStr::new("--json")];
        args.extend(extra.iter().map(OsStr::new));
        args.extend(paths.iter().map(AsRef::as_ref));
        self.json_status(&args)
    }

    /// Exports one instance and returns its bytes (exactly one file must be written).
    pub fn export_instance(&self, sop_instance_uid: &str) -> Vec<u8> {
        let out = tempfile::tempdir().expect("create a temporary folder");
        let output = self.run(&[OsStr::new("export"), OsStr::new("--instance"), OsStr::new(sop_instance_uid), OsStr::new("--out"), out.path().as_os_str()]);
        assert_eq!(exit_code(&output), 0, "export of {sop_instance_uid} failed:\n{}", describe(&output));
        let files: Vec<PathBuf> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).collect();
        let expected = out.path().join(format!("{sop_instance_uid}.dcm"));
        assert_eq!(files, vec![expected.clone()], "export of {sop_instance_uid} must write exactly <SOPInstanceUID>.dcm");
        std::fs::read(&expected).unwrap()
    }

    /// `pacs stats --json`.
    pub fn stats(&self) -> Value {
        self.json(&["stats", "--json"])
    }

    /// `pacs verify --checksums --json`: asserts exit 0, `clean`, and no missing, corrupt or
    /// orphan entries. Returns the report.
    pub fn assert_verify_clean(&self) -> Value {
        let (code, report) = self.json_status(&["verify", "--checksums", "--json"]);
        assert_eq!(report["clean"], Value::Bool(true), "verify --checksums is not clean: {report:#}");
        for list in ["missing", "corrupt", "orphans", "unrepairable"] {
            assert_eq!(report[list].as_array().map(Vec::len), Some(0), "verify reports {list}: {report:#}");
        }
        assert_eq!(code, 0, "verify --checksums exited {code} although clean: {report:#}");
        report
    }
}

impl Default for Pacs {
    fn default() -> Self {
        Pacs::new()
    }
}

fn show_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

/// The exit code; panics if the process was killed by a signal.
pub fn exit_code(output: &Output) -> i32 {
    output.status.code().unwrap_or_else(|| panic!("pacs was killed by a signal:\n{}", describe(output)))
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Status, standard output and standard error, for failure messages.
pub fn describe(output: &Output) -> String {
    format!("status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}", output.status, stdout(output), stderr(output))
}

/// Asserts that `output` is an error: exit code 2 and exactly one line on standard error,
/// `pacs: error: ...`, containing every one of `needles` (case-insensitive). Returns the line.
pub fn assert_error(output: &Output, needles: &[&str]) -> String {
    assert_eq!(exit_code(output), 2, "expected exit code 2:\n{}", describe(output));
    let err = stderr(output);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on standard error:\n{}", describe(output));
    let line = lines[0];
    assert!(line.starts_with("pacs: error: "), "the error line must start with `pacs: error: `: {line:?}");
    for needle in needles {
        assert!(line.to_lowercase().contains(&needle.to_lowercase()), "the error line must mention {needle:?}: {line:?}");
    }
    line.to_owned()
}

/// Python 3 with pydicom (3.x) and numpy, checked once. Panics with instructions if missing.
pub fn require_python() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let output = Command::new("python3")
            .args(["-c", "import pydicom, numpy; assert int(pydicom.__version__.split('.')[0]) >= 3, 'pydicom ' + pydicom.__version__ + ' is too old'"])
            .output();
        match output {
            Err(e) => Err(format!("cannot run python3: {e}")),
            Ok(o) if !o.status.success() => Err(format!("python3 cannot import pydicom (3.x) and numpy:\n{}", String::from_utf8_lossy(&o.stderr))),
            Ok(_) => Ok(()),
        }
    });
    if let Err(why) = result {
        panic!(
            "these tests need python3 with pydicom 3 and numpy, as the independent reference: {why}\n\
             install them with `scripts/test.sh` (or `python3 -m pip install pydicom numpy`)"
        );
    }
}

/// pydicom's data folder (`.../site-packages/pydicom/data`).
pub fn pydicom_data_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = python_inline("import pydicom.data, os, json; print(json.dumps(os.path.dirname(pydicom.data.__file__)))", &[] as &[&str]);
        PathBuf::from(out.as_str().expect("a path"))
    })
    .clone()
}

/// pydicom's bundled test files folder (`pydicom/data/test_files`).
pub fn pydicom_test_files() -> PathBuf {
    let dir = pydicom_data_dir().join("test_files");
    assert!(dir.is_dir(), "pydicom's test files folder {} is missing", dir.display());
    dir
}

/// pydicom's character set test files (`pydicom/data/charset_files`), if this pydicom has them.
pub fn pydicom_charset_files() -> Option<PathBuf> {
    Some(pydicom_data_dir().join("charset_files")).filter(|d| d.is_dir())
}

/// One of pydicom's test files by name; panics if it is missing.
pub fn pydicom_file(name: &str) -> PathBuf {
    let path = pydicom_test_files().join(name);
    assert!(path.is_file(), "pydicom test file {} is missing", path.display());
    path
}

/// A script of `tests/python/`.
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

fn run_python(mut command: Command, what: &str) -> Value {
    require_python();
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run python3 for {what}: {e}"));
    assert!(output.status.success(), "python3 {what} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("python3 {what}: standard output is not JSON ({e}):\n{}", String::from_utf8_lossy(&output.stdout)))
}

/// Runs `python3 tests/python/<script> ARGS` and parses its JSON standard output.
pub fn python<S: AsRef<OsStr>>(script: &str, args: &[S]) -> Value {
    let path = python_script(script);
    assert!(path.is_file(), "missing Python script {}", path.display());
    let mut command = Command::new("python3");
    command.arg(&path).args(args);
    run_python(command, script)
}

/// Runs `python3 -c CODE ARGS` and parses its JSON standard output.
pub fn python_inline<S: AsRef<OsStr>>(code: &str, args: &[S]) -> Value {
    let mut command = Command::new("python3");
    command.arg("-c").arg(code).args(args);
    run_python(command, "-c")
}

/// Whether the tests run with the privileges of root (file permissions do not stop reads).
pub fn privileged() -> bool {
    static PRIVILEGED: OnceLock<bool> = OnceLock::new();
    *PRIVILEGED.get_or_init(|| Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false))
}

/// Copies `src` into `dir` (created if missing) under `name`; returns the new path.
pub fn copy_to(src: &Path, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
    dst
}

/// A string field of a JSON object, or "".
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A count field of an import report or stats.
pub fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("no count {key:?} in {value:#}"))
}

/// A running `pacs serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// The DICOM port it listens on.
    pub port: u16,
    /// The DICOMweb base URL, unless started with `--no-web`.
    pub web: Option<String>,
}

impl Server {
    pub fn start(pacs: &Pacs, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--port", "0", "--http-port", "0", "--ae-title", "PACS"];
        args.extend_from_slice(extra);
        let mut child = pacs.command(&args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start pacs serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let port_of = |line: &str| -> Option<u16> {
            line.split_whitespace().find_map(|w| w.trim_end_matches(|c: char| !c.is_ascii_digit()).rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        };
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the listening line");
        let port = port_of(&line).unwrap_or_else(|| panic!("no port in {line:?}"));
        let mut web = None;
        if !extra.contains(&"--no-web") {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read the DICOMweb line");
            let url = line.trim().strip_prefix("DICOMweb on ").unwrap_or_else(|| panic!("no DICOMweb line: {line:?}")).to_owned();
            web = Some(url);
        }
        Server { child, port, web }
    }

    /// Runs a DCMTK tool as `tool OPTIONS 127.0.0.1 PORT OPERANDS`.
    pub fn dcmtk(&self, tool: &str, options: &[&str], operands: &[&str]) -> std::process::Output {
        let port = self.port.to_string();
        Command::new(format!("/usr/bin/{tool}"))
            .args(options)
            .args(["127.0.0.1", &port])
            .args(operands)
            .env("TCP_NODELAY", "1")
            .output()
            .unwrap_or_else(|e| panic!("run /usr/bin/{tool}: {e}"))
    }

    pub fn echo(&self, called: &str) -> bool {
        self.dcmtk("echoscu", &["-aet", "TESTSCU", "-aec", called], &[]).status.success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The data set bytes of a Part 10 file: what travels in a C-STORE, after the File Meta
/// Information (which each receiver writes anew).
pub fn data_set_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let offset = pacs_core::scan::data_set_offset(&bytes).unwrap_or_else(|| panic!("{} has no File Meta Information", path.display()));
    bytes[offset as usize..].to_vec()
}

/// Waits (bounded, 10 s) until something listens on `port` of 127.0.0.1.
pub fn wait_for_port(port: u16) -> bool {
    (0..200).any(|_| {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    })
}
