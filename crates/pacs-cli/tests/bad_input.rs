//! Every rejection and error path of the `pacs` binary: the exit code, a one-line human message,
//! and that nothing already stored is damaged (each test first stores a good instance, then
//! offers the bad input, then checks `verify --checksums` is clean and the good instance still
//! exports byte for byte).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a test failure with its location

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Pacs, assert_error, count, describe, exit_code, privileged, pydicom_file, python, require_python, stdout, text};
use pacs_testkit::SmallDisk;

/// A good instance stored in a fresh archive.
struct Stored {
    pacs: Pacs,
    path: PathBuf,
    bytes: Vec<u8>,
    sop: String,
}

impl Stored {
    /// A fresh archive holding pydicom's CT_small.dcm.
    fn new() -> Stored {
        Stored::in_archive(Pacs::new())
    }

    fn in_archive(pacs: Pacs) -> Stored {
        require_python();
        let path = common::copy_to(&pydicom_file("CT_small.dcm"), &pacs.scratch("good"), "CT_small.dcm");
        let bytes = std::fs::read(&path).unwrap();
        let sop = python("fixtures.py", &[OsStr::new("uids"), path.as_os_str()])["SOPInstanceUID"].as_str().unwrap().to_owned();
        let (code, report) = pacs.import(&[&path], &[]);
        assert_eq!((code, count(&report, "imported")), (0, 1), "storing the good file: {report:#}");
        Stored { pacs, path, bytes, sop }
    }

    /// Nothing stored is damaged: verify is clean, the good instance exports identical, and the
    /// archive holds `instances` instances.
    fn assert_intact(&self, instances: u64) {
        self.pacs.assert_verify_clean();
        assert!(self.pacs.export_instance(&self.sop) == self.bytes, "the good instance must export byte for byte");
        assert_eq!(count(&self.pacs.stats(), "instances"), instances, "instances stored");
    }
}

/// Runs a plain-text import of `paths`: asserts exit code 1, and that each path has exactly one
/// `rejected <path>: <reason>` line, one line, containing `needle`. Returns the reasons.
fn assert_rejected(pacs: &Pacs, paths: &[&Path], needle: &str) -> Vec<String> {
    assert_rejected_with(pacs, paths, &[], needle)
}

/// [`assert_rejected`] with extra import flags.
fn assert_rejected_with(pacs: &Pacs, paths: &[&Path], flags: &[&str], needle: &str) -> Vec<String> {
    let mut args: Vec<&OsStr> = vec![OsStr::new("import")];
    args.extend(flags.iter().map(OsStr::new));
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let output = pacs.run(&args);
    assert_eq!(exit_code(&output), 1, "an import with rejections exits 1:\n{}", describe(&output));
    let out = stdout(&output);
    let mut reasons = Vec::new();
    for path in paths {
        let prefix = format!("rejected {}: ", path.display());
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(lines.len(), 1, "expected one `{prefix}...` line:\n{}", describe(&output));
        let reason = &lines[0][prefix.len()..];
        assert!(reason.to_lowercase().contains(&needle.to_lowercase()), "the reason for {} must mention {needle:?}: {reason:?}", path.display());
        reasons.push(reason.to_owned());
    }
    assert!(!common::stderr(&output).contains("pacs: error"), "a rejection is not an error:\n{}", describe(&output));
    // The same through --json: the report lists the same paths with the same reasons.
    let (code, report) = pacs.import(paths, flags);
    assert_eq!(code, 1);
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), paths.len(), "rejected list: {report:#}");
    for (path, reason) in paths.iter().zip(&reasons) {
        assert!(
            rejected.iter().any(|r| Path::new(text(r, "path")) == *path && text(r, "reason") == reason),
            "the JSON report must reject {} for {reason:?}: {report:#}",
            path.display()
        );
    }
    reasons
}

#[test]
fn not_a_dicom_file() {
    let s = Stored::new();
    let bad = s.pacs.scratch("notes.txt");
    std::fs::write(&bad, "This is a text file, not a DICOM object.\n".repeat(10)).unwrap();
    let empty = s.pacs.scratch("empty.dcm");
    std::fs::write(&empty, b"").unwrap();
    assert_rejected(&s.pacs, &[&bad], "not a DICOM file");
    assert_rejected(&s.pacs, &[&empty], "not a DICOM file");
    s.assert_intact(1);
}

#[test]
fn truncated_in_pixel_data() {
    let s = Stored::new();
    let source = pydicom_file("MR_small.dcm");
    let pixel = python("fixtures.py", &[OsStr::new("pixel"), source.as_os_str()]);
    let (offset, length) = (pixel["offset"].as_u64().unwrap(), pixel["length"].as_u64().unwrap());
    assert!(length > 2, "MR_small has pixel data: {pixel}");
    let bytes = std::fs::read(&source).unwrap();
    let cut = (offset + length / 2) as usize;
    let bad = s.pacs.scratch("MR_small_cut.dcm");
    std::fs::write(&bad, &bytes[..cut]).unwrap();
    let reasons = assert_rejected(&s.pacs, &[&bad], "truncated");
    println!("truncated at {cut} of {}: {}", bytes.len(), reasons[0]);
    s.assert_intact(1);
}

#[test]
fn missing_study_instance_uid() {
    let s = Stored::new();
    let bad = s.pacs.scratch("no_study_uid.dcm");
    python("fixtures.py", &[OsStr::new("without"), OsStr::new("StudyInstanceUID"), pydicom_file("MR_small.dcm").as_os_str(), bad.as_os_str()]);
    assert_rejected(&s.pacs, &[&bad], "missing required attribute StudyInstanceUID");
    s.assert_intact(1);
}

/// Paths that cannot be read even by root: a symbolic link loop (ELOOP) and a dangling link, in
/// a folder and given directly; and, when permissions apply, a folder without read permission.
#[test]
fn unreadable_paths() {
    let s = Stored::new();
    let folder = s.pacs.scratch("folder");
    std::fs::create_dir_all(&folder).unwrap();
    let good_copy = common::copy_to(&pydicom_file("MR_small.dcm"), &folder, "MR_small.dcm");
    let looping = folder.join("loop");
    std::os::unix::fs::symlink(&looping, &looping).unwrap();
    let dangling = folder.join("dangling");
    std::os::unix::fs::symlink(folder.join("no-such-target"), &dangling).unwrap();

    // Given directly.
    assert_rejected(&s.pacs, &[&looping], "symbolic link");
    assert_rejected(&s.pacs, &[&dangling], "No such file or directory");

    // Met while walking a folder: the other file of the folder is still imported.
    let (code, report) = s.pacs.import(&[&folder], &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(count(&report, "imported"), 1, "the readable file of the folder is imported: {report:#}");
    let rejected = report["rejected"].as_array().unwrap();
    let reason_of = |p: &Path| rejected.iter().find(|r| Path::new(text(r, "path")) == p).map(|r| text(r, "reason").to_owned());
    assert!(reason_of(&looping).is_some_and(|r| r.to_lowercase().contains("symbolic link")), "{report:#}");
    assert!(reason_of(&dangling).is_some_and(|r| r.contains("No such file or directory")), "{report:#}");
    assert_eq!(rejected.len(), 2, "{report:#}");
    std::fs::remove_file(&good_copy).unwrap();

    // A folder without permissions: only meaningful when permissions stop us (not as root).
    let locked = s.pacs.scratch("locked");
    common::copy_to(&pydicom_file("CT_small.dcm"), &locked, "CT_small.dcm");
    set_mode(&locked, 0o000);
    let blocked = std::fs::read_dir(&locked).is_err();
    if blocked {
        assert_rejected(&s.pacs, &[&locked], "permission denied");
    } else {
        assert!(privileged(), "read_dir of a mode 000 folder succeeded without privileges");
        println!("running with root privileges: mode 000 does not stop reads, tested symbolic link loops instead");
    }
    set_mode(&locked, 0o755);
    s.assert_intact(2);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A FIFO named on the command line is not a file the archive can import: it must be reported
/// (and not block the import waiting for a writer), never silently skipped.
#[test]
fn fifo_is_reported() {
    let s = Stored::new();
    let fifo = s.pacs.scratch("pipe.dcm");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let (code, report) = s.pacs.import(&[&fifo], &[]);
    let rejected = report["rejected"].as_array().unwrap();
    assert!(
        code == 1 && rejected.iter().any(|r| Path::new(text(r, "path")) == fifo && !text(r, "reason").is_empty()),
        "importing a FIFO given by name must reject it with a reason (exit 1); got exit {code}: {report:#}"
    );
    s.assert_intact(1);
}

/// The import report accounts for every path exactly once: `files` equals imported +
/// already_present + kept_existing + replaced + refused + rejected, also when some paths could
/// not be accessed (a dangling link met in a folder, a path that does not exist).
#[test]
fn report_accounts_for_every_path() {
    let s = Stored::new();
    let folder = s.pacs.scratch("folder");
    common::copy_to(&pydicom_file("MR_small.dcm"), &folder, "MR_small.dcm");
    std::os::unix::fs::symlink(folder.join("no-such-target"), folder.join("dangling")).unwrap();
    let missing = s.pacs.scratch("missing.dcm");
    let (code, report) = s.pacs.import(&[&folder, &missing], &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(count(&report, "imported"), 1, "{report:#}");
    let rejected = report["rejected"].as_array().unwrap().len() as u64;
    assert_eq!(rejected, 2, "{report:#}");
    let accounted: u64 = ["imported", "already_present", "kept_existing", "replaced", "refused"].iter().map(|k| count(&report, k)).sum::<u64>() + rejected;
    assert_eq!(count(&report, "files"), accounted, "`files` must count every path reported, rejected ones included: {report:#}");
    s.assert_intact(2);
}

#[test]
fn nonexistent_path() {
    let s = Stored::new();
    let missing = s.pacs.scratch("does/not/exist.dcm");
    assert_rejected(&s.pacs, &[&missing], "No such file or directory");
    s.assert_intact(1);
}

/// A full disk: the data directory on a 1 MiB tmpfs (needs root to mount; CI runs as root).
#[test]
fn disk_full() {
    require_python();
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&base.path().join("small"), "1M") else {
        println!("not root: cannot mount a small tmpfs, the full-disk test does not apply");
        return;
    };
    let mount_point = disk.path().to_path_buf();
    let s = Stored::in_archive(Pacs::with_data_dir(&mount_point.join("data")));
    let big = s.pacs.scratch("big.dcm");
    python("fixtures.py", &[OsStr::new("big"), big.as_os_str(), OsStr::new("2")]);
    let size = std::fs::metadata(&big).unwrap().len();
    assert!(size > 1 << 20, "the big object ({size} bytes) must not fit in 1 MiB");

    let output = s.pacs.run(&[OsStr::new("import"), big.as_os_str()]);
    let code = exit_code(&output);
    assert_ne!(code, 0, "storing {size} bytes on a 1 MiB file system cannot succeed:\n{}", describe(&output));
    let all = format!("{}{}", stdout(&output), common::stderr(&output));
    assert!(all.to_lowercase().contains("space"), "the message must say the disk is full:\n{}", describe(&output));
    let message_lines: Vec<&str> = all.lines().filter(|l| l.to_lowercase().contains("space")).collect();
    println!("full disk, exit {code}: {message_lines:?}");
    assert!(!message_lines.is_empty());
    if code == 2 {
        assert_error(&output, &["space"]);
    }
    s.assert_intact(1);
    // And the archive still works once there is room: a small object imports.
    let (code, report) = s.pacs.import(&[pydicom_file("MR_small.dcm")], &[]);
    assert_eq!((code, count(&report, "imported")), (0, 1), "after a full disk, a small import must work: {report:#}");
    s.assert_intact(2);
}

/// Not bad, but the input size at which the blob store switches to a streamed multipart write
/// (objects over 1 MiB, parts of 8 MiB): a 20 MiB object imports, verifies and exports intact,
/// and a panic there would lose the whole import batch.
#[test]
fn large_object() {
    let s = Stored::new();
    let big = s.pacs.scratch("big20.dcm");
    let made = python("fixtures.py", &[OsStr::new("big"), big.as_os_str(), OsStr::new("20")]);
    let bytes = std::fs::read(&big).unwrap();
    assert!(bytes.len() > 16 << 20, "{} bytes", bytes.len());
    let output = s.pacs.run(&[OsStr::new("import"), big.as_os_str()]);
    assert_eq!(exit_code(&output), 0, "importing a {} byte object:\n{}", bytes.len(), describe(&output));
    s.assert_intact(2);
    assert!(s.pacs.export_instance(made["SOPInstanceUID"].as_str().unwrap()) == bytes, "the large object exports byte for byte");
}

/// A corrupt index: every command fails with one line naming the index, and does not panic.
#[test]
fn corrupt_index() {
    let s = Stored::new();
    let index = s.pacs.data_dir().join("index.sqlite");
    let size = std::fs::metadata(&index).unwrap().len() as usize;
    let garbage: Vec<u8> = b"this is not an SQLite database, it was overwritten by a test. ".iter().copied().cycle().take(size.max(8192)).collect();
    std::fs::write(&index, garbage).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(s.pacs.data_dir().join(format!("index.sqlite{suffix}")));
    }
    let out = s.pacs.scratch("out");
    let commands: Vec<Vec<&OsStr>> = vec![
        vec![OsStr::new("stats")],
        vec![OsStr::new("stats"), OsStr::new("--json")],
        vec![OsStr::new("query"), OsStr::new("--level"), OsStr::new("instance")],
        vec![OsStr::new("verify"), OsStr::new("--checksums")],
        vec![OsStr::new("export"), OsStr::new("--instance"), OsStr::new(&s.sop), OsStr::new("--out"), out.as_os_str()],
        vec![OsStr::new("delete"), OsStr::new("--instance"), OsStr::new(&s.sop)],
        vec![OsStr::new("import"), s.path.as_os_str()],
    ];
    for args in &commands {
        let output = s.pacs.run(args);
        let line = assert_error(&output, &["index"]);
        println!("{}: {line}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    }
}

#[test]
fn invalid_queries() {
    let s = Stored::new();
    assert_error(&s.pacs.run(&["query", "--study-date", "2024"]), &["StudyDate"]);
    assert_error(&s.pacs.run(&["query", "-k", "Foo=1"]), &["not an indexed attribute"]);
    assert_error(&s.pacs.run(&["query", "-k", "PatientAge=030Y"]), &["PatientAge (0010,1010) is not an indexed attribute"]);
    assert_error(&s.pacs.run(&["query", "--level", "galaxy"]), &["galaxy"]);
    assert_error(&s.pacs.run(&["import", "--policy", "sometimes", s.path.to_str().unwrap()]), &["policy"]);
    s.assert_intact(1);
}

#[test]
fn duplicate_policies() {
    let s = Stored::new();
    let variant = s.pacs.scratch("variant.dcm");
    let made = python("fixtures.py", &[OsStr::new("variant"), s.path.as_os_str(), variant.as_os_str(), OsStr::new("Changed^Name")]);
    assert_eq!(made["SOPInstanceUID"].as_str(), Some(s.sop.as_str()), "the variant keeps the SOP Instance UID");
    let variant_bytes = std::fs::read(&variant).unwrap();
    assert!(variant_bytes != s.bytes, "the variant differs");
    let name = |pacs: &Pacs| -> String {
        let rows = pacs.json(&["query", "--level", "instance", "--format", "json"]);
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        text(&rows[0], "PatientName").to_owned()
    };
    let original_name = name(&s.pacs);

    // The same bytes again: already present, whatever the policy.
    for policy in ["keep", "reject", "replace"] {
        let (code, report) = s.pacs.import(&[&s.path], &["--policy", policy]);
        assert_eq!((code, count(&report, "already_present")), (0, 1), "identical re-import with policy {policy}: {report:#}");
    }

    // keep (the default): not stored, not an error.
    let (code, report) = s.pacs.import(&[&variant], &[]);
    assert_eq!((code, count(&report, "kept_existing")), (0, 1), "{report:#}");
    s.assert_intact(1);

    // reject: exit 1, a reason naming the UID and the policy, the stored object unchanged.
    let reasons = assert_rejected_with(&s.pacs, &[&variant], &["--policy", "reject"], &s.sop);
    assert!(reasons[0].contains("reject"), "{reasons:?}");
    let (code, report) = s.pacs.import(&[&variant], &["--policy", "reject"]);
    assert_eq!((code, count(&report, "refused")), (1, 1), "{report:#}");
    s.assert_intact(1);
    assert_eq!(name(&s.pacs), original_name);

    // replace: the new bytes are stored and exported, the index shows the new values.
    let (code, report) = s.pacs.import(&[&variant], &["--policy", "replace"]);
    assert_eq!((code, count(&report, "replaced")), (0, 1), "{report:#}");
    s.pacs.assert_verify_clean();
    assert!(s.pacs.export_instance(&s.sop) == variant_bytes, "after replace, the new object is exported");
    assert_eq!(count(&s.pacs.stats(), "instances"), 1);
    assert_eq!(name(&s.pacs), "Changed^Name", "after replace, the index holds the new object's values");
}
