//! `pacs import`: recursive, parallel, group-committed ingest of files and folders.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use pacs_core::InsertOutcome;
use pacs_store::{Archive, Staged};
use rayon::prelude::*;
use serde::Serialize;

/// Stage at most this many bytes before committing a batch early.
const BATCH_BYTES: u64 = 256 * 1024 * 1024;

/// One file that was not stored, and why.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// The file or folder.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The outcome of an import.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Paths examined: regular files found, plus entries that could not be read.
    pub files: u64,
    /// New instances stored.
    pub imported: u64,
    /// Identical instances already stored.
    pub already_present: u64,
    /// Different objects under a stored SOP Instance UID, not stored (policy keep).
    pub kept_existing: u64,
    /// Stored instances replaced by a new object (policy replace).
    pub replaced: u64,
    /// Different objects under a stored SOP Instance UID, refused (policy reject).
    pub refused: u64,
    /// Bytes of the new instances.
    pub bytes: u64,
    /// Files not stored: rejected as not DICOM or malformed, unreadable, or failed to store.
    pub rejected: Vec<Failure>,
    /// Values that could not be indexed, by file.
    pub warnings: Vec<Failure>,
}

/// Collects the regular files under `paths`, recursively, sorted; unreadable entries are failures.
pub fn collect(paths: &[PathBuf], failures: &mut Vec<Failure>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(path) = stack.pop() {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(&path) {
                Ok(entries) => {
                    let mut children = Vec::new();
                    for entry in entries {
                        match entry {
                            Ok(e) => children.push(e.path()),
                            Err(e) => failures.push(Failure { path: path.clone(), reason: format!("cannot list folder: {e}") }),
                        }
                    }
                    children.sort();
                    stack.extend(children.into_iter().rev());
                }
                Err(e) => failures.push(Failure { path, reason: format!("cannot read folder: {e}") }),
            },
            Ok(m) if m.is_file() => files.push(path),
            Ok(_) => failures.push(Failure { path, reason: "not a regular file (a pipe, socket or device)".into() }),
            Err(e) => failures.push(Failure { path, reason: format!("cannot access: {e}") }),
        }
    }
    files
}

/// Imports `paths` into `archive` with `jobs` workers, committing `batch` objects at a time.
pub fn run(archive: &Archive, paths: &[PathBuf], jobs: usize, batch: usize, show_progress: bool) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let files = collect(paths, &mut report.rejected);
    // Every path reported on counts, including those that could not be read.
    report.files = (files.len() + report.rejected.len()) as u64;
    let progress = if show_progress { ProgressBar::new(files.len() as u64) } else { ProgressBar::hidden() };
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shared = Mutex::new(report);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).thread_name(|i| format!("pacs-import-{i}")).build()?;
    pool.install(|| {
        files.par_chunks(batch).for_each(|chunk| {
            let mut staged: Vec<(PathBuf, Staged)> = Vec::new();
            let mut staged_bytes = 0u64;
            for path in chunk {
                match stage(archive, path) {
                    Ok(s) => {
                        staged_bytes += s.record.size;
                        staged.push((path.clone(), s));
                    }
                    Err(reason) => lock(&shared).rejected.push(Failure { path: path.clone(), reason }),
                }
                if staged_bytes >= BATCH_BYTES {
                    commit(archive, std::mem::take(&mut staged), &shared);
                    staged_bytes = 0;
                }
                progress.inc(1);
            }
            commit(archive, staged, &shared);
        });
    });
    progress.finish_and_clear();
    let mut report = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    report.rejected.sort_by(|a, b| a.path.cmp(&b.path));
    report.warnings.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

fn lock(report: &Mutex<Report>) -> std::sync::MutexGuard<'_, Report> {
    report.lock().unwrap_or_else(|p| p.into_inner())
}

fn stage(archive: &Archive, path: &Path) -> Result<Staged, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    archive.stage(&mut file).map_err(|e| e.to_string())
}

fn commit(archive: &Archive, staged: Vec<(PathBuf, Staged)>, shared: &Mutex<Report>) {
    if staged.is_empty() {
        return;
    }
    let paths: Vec<PathBuf> = staged.iter().map(|(p, _)| p.clone()).collect();
    match archive.commit(staged.into_iter().map(|(_, s)| s).collect()) {
        Ok(reports) => {
            let mut report = lock(shared);
            for (path, r) in paths.into_iter().zip(reports) {
                match r.outcome {
                    InsertOutcome::Inserted => {
                        report.imported += 1;
                        report.bytes += r.record.size;
                    }
                    InsertOutcome::AlreadyPresent { .. } => report.already_present += 1,
                    InsertOutcome::KeptExisting { .. } => report.kept_existing += 1,
                    InsertOutcome::Replaced { .. } => {
                        report.replaced += 1;
                        report.bytes += r.record.size;
                    }
                    InsertOutcome::Refused { .. } => {
                        report.refused += 1;
                        report.rejected.push(Failure {
                            path: path.clone(),
                            reason: format!("a different instance with SOP Instance UID {} is stored (policy reject)", r.record.sop_instance_uid),
                        });
                    }
                }
                for w in r.warnings {
                    report.warnings.push(Failure { path: path.clone(), reason: w });
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, files = paths.len(), "committing a batch failed");
            let mut report = lock(shared);
            for path in paths {
                report.rejected.push(Failure { path, reason: format!("not stored: {e}") });
            }
        }
    }
}
