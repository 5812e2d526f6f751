//! Crash safety of `pacs import`: an import killed with SIGKILL at random moments never leaves an
//! index row without its bytes nor a checksum mismatch (orphan blobs are allowed); `verify
//! --repair` and a re-import then bring the archive to exactly the corpus, byte for byte.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a test failure with its location

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Pacs, count, exit_code, python, require_python, text};
use serde_json::Value;

const FILES: usize = 300;
const KILLS: u64 = 4;

/// splitmix64: a small deterministic generator, seeded per use.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn list_len(report: &Value, key: &str) -> usize {
    report[key].as_array().unwrap_or_else(|| panic!("no list {key:?} in {report:#}")).len()
}

#[test]
fn killed_imports_leave_a_consistent_archive() {
    require_python();
    let t0 = Instant::now();
    let pacs = Pacs::new();
    let corpus = pacs.scratch("corpus");
    let manifest = python("make_corpus.py", &[corpus.as_os_str(), OsStr::new(&FILES.to_string())]);
    let files: Vec<(PathBuf, String, String)> = manifest["files"]
        .as_array()
        .expect("manifest")
        .iter()
        .map(|f| (PathBuf::from(text(f, "path")), text(f, "SOPInstanceUID").to_owned(), text(f, "StudyInstanceUID").to_owned()))
        .collect();
    assert_eq!(files.len(), FILES);
    println!("corpus of {FILES} files written in {:?}", t0.elapsed());

    let mut interrupted = 0;
    for i in 0..KILLS {
        let delay = Duration::from_millis(20 + SplitMix(i + 1).below(381));
        let mut child =
            pacs.command(&[OsStr::new("import"), corpus.as_os_str()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start pacs import");
        let started = Instant::now();
        std::thread::sleep(delay);
        let finished_first = child.try_wait().expect("poll the import").is_some();
        let _ = child.kill(); // SIGKILL; an error only means it had already exited
        let status = child.wait().expect("wait for the killed import");
        if !finished_first {
            interrupted += 1;
        }
        let (code, report) = pacs.json_status(&["verify", "--checksums", "--json"]);
        println!(
            "kill {} after {delay:?} ({:?} elapsed, {}): verify exit {code}, {} indexed, {} orphans",
            i + 1,
            started.elapsed(),
            if finished_first { format!("the import had already finished: {status}") } else { format!("killed: {status}") },
            report["checked"],
            list_len(&report, "orphans"),
        );
        assert_eq!(list_len(&report, "missing"), 0, "after kill {}: index rows without their blob: {report:#}", i + 1);
        assert_eq!(list_len(&report, "corrupt"), 0, "after kill {}: blobs whose size or checksum differs from the index: {report:#}", i + 1);
    }

    assert!(interrupted > 0, "no kill landed while the import ran (each finished within its delay): the test proved nothing");

    // Repair: orphans are re-indexed or removed, none is left unrepairable.
    let repair = pacs.run(&["verify", "--repair", "--checksums", "--json"]);
    let report: Value = serde_json::from_slice(&repair.stdout).expect("verify --repair --json prints JSON");
    println!(
        "repair: {} orphans, {} re-indexed, {} removed, {} unrepairable",
        list_len(&report, "orphans"),
        list_len(&report, "reindexed"),
        list_len(&report, "removed"),
        list_len(&report, "unrepairable")
    );
    assert_eq!(exit_code(&repair), 0, "verify --repair must leave a clean archive: {report:#}");
    assert_eq!(report["clean"], Value::Bool(true), "{report:#}");

    // A full re-import completes the archive.
    let (code, report) = pacs.import(&[&corpus], &[]);
    assert_eq!(code, 0, "re-import after the crashes: {report:#}");
    assert_eq!(list_len(&report, "rejected"), 0, "{report:#}");
    assert_eq!(count(&report, "files"), FILES as u64);
    assert_eq!(count(&report, "imported") + count(&report, "already_present"), FILES as u64, "{report:#}");
    assert_eq!(count(&report, "kept_existing") + count(&report, "replaced"), 0, "{report:#}");
    let stats = pacs.stats();
    assert_eq!(count(&stats, "instances"), FILES as u64, "{stats}");
    assert_eq!(count(&stats, "studies"), 6, "{stats}");
    assert_eq!(count(&stats, "series"), 12, "{stats}");
    assert_eq!(count(&stats, "patients"), 3, "{stats}");
    let total: u64 = files.iter().map(|(p, ..)| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!(count(&stats, "bytes"), total, "bytes stored vs the corpus");
    let report = pacs.assert_verify_clean();
    assert_eq!(count(&report, "checked"), FILES as u64);

    // Every file exports byte for byte: all of them through study exports...
    let out = pacs.scratch("export-all");
    let mut by_study: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, study) in &files {
        *by_study.entry(study.as_str()).or_default() += 1;
    }
    for study in by_study.keys() {
        let output = pacs.run(&[OsStr::new("export"), OsStr::new("--study"), OsStr::new(study), OsStr::new("--out"), out.as_os_str()]);
        assert_eq!(exit_code(&output), 0, "export --study {study}:\n{}", common::describe(&output));
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), FILES, "files exported");
    for (path, sop, _) in &files {
        let exported = std::fs::read(out.join(format!("{sop}.dcm"))).unwrap_or_else(|e| panic!("exported {sop}: {e}"));
        assert!(exported == std::fs::read(path).unwrap(), "{} exports different bytes", path.display());
    }
    // ...and a sample of 20 one by one.
    let mut rng = SplitMix(0xC0FFEE);
    for _ in 0..20 {
        let (path, sop, _) = &files[rng.below(FILES as u64) as usize];
        assert!(pacs.export_instance(sop) == std::fs::read(path).unwrap(), "{} exports different bytes", path.display());
    }
    println!("total {:?}", t0.elapsed());
}
