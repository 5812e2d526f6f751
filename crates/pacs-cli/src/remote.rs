//! The client commands: `pacs send`, `find`, `get`, `move` and `pull`, over
//! `pacs_net::dimse::client`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pacs_core::{Attribute, Query, QueryLevel};
use pacs_net::dimse::client::{self, ClientConfig, FileToSend, Model, Node, PullEvent, PullMethod, RetrieveOutcome, Sent};
use pacs_net::dimse::{DimseServer, ServerConfig};
use pacs_store::Archive;

use crate::import::{self, Failure};
use crate::output;

fn progress_bar(total: u64, show: bool, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// `pacs send`: C-STORE of files and folders over `associations` parallel associations.
pub fn send(config: &ClientConfig, node: &Node, paths: &[PathBuf], associations: usize, json: bool) -> anyhow::Result<ExitCode> {
    let mut failures = Vec::new();
    let files = import::collect(paths, &mut failures);
    let mut sendable = Vec::with_capacity(files.len());
    for path in files {
        match FileToSend::inspect(&path) {
            Ok(f) => sendable.push(f),
            Err(reason) => failures.push(Failure { path, reason }),
        }
    }
    let total = sendable.len() as u64;
    let bar = progress_bar(total, !json && std::io::stderr().is_terminal(), "files");
    let associations = associations.clamp(1, 64).min(sendable.len().max(1));
    // Files of one SOP class and syntax stay together so that each association proposes few
    // contexts; the shares are contiguous runs of the sorted list.
    sendable.sort_by(|a, b| (&a.sop_class, &a.transfer_syntax, &a.path).cmp(&(&b.sop_class, &b.transfer_syntax, &b.path)));
    let share = sendable.len().div_ceil(associations).max(1);
    let results: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::with_capacity(sendable.len())));
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let errors: Vec<String> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for chunk in sendable.chunks(share) {
            let chunk = chunk.to_vec();
            let (config, node, bar, results) = (config.clone(), node.clone(), bar.clone(), Arc::clone(&results));
            tasks.push(tokio::spawn(async move {
                let record = |sent: &Sent| {
                    bar.inc(1);
                    if let Ok(mut r) = results.lock() {
                        r.push(sent.clone());
                    }
                };
                client::store_files(&config, &node, &chunk, &record).await.err().map(|e| e.to_string())
            }));
        }
        let mut errors = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Some(e)) => errors.push(e),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        errors
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let results = results.lock().map(|r| r.clone()).unwrap_or_default();
    let stored: Vec<&Sent> = results.iter().filter(|s| s.stored()).collect();
    let refused: Vec<&Sent> = results.iter().filter(|s| !s.stored()).collect();
    let bytes: u64 = stored.iter().map(|s| s.bytes).sum();
    let unsent = total as usize - results.len();
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "files": total as usize + failures.len(),
            "stored": stored.len(),
            "bytes": bytes,
            "seconds": elapsed,
            "refused": refused.iter().map(|s| serde_json::json!({"path": s.path, "status": s.status, "comment": s.comment})).collect::<Vec<_>>(),
            "not_dicom": failures.iter().map(|f| serde_json::json!({"path": f.path, "reason": f.reason})).collect::<Vec<_>>(),
            "not_sent": unsent,
            "association_errors": errors,
        });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} files: {} stored on {node} ({:.1} MB, {:.0} files/s), {} refused, {} not DICOM, {} not sent",
            total as usize + failures.len(),
            stored.len(),
            bytes as f64 / 1e6,
            stored.len() as f64 / elapsed.max(1e-9),
            refused.len(),
            failures.len(),
            unsent
        )?;
        for s in &refused {
            let code = s.status.map_or("not sent".to_owned(), |c| format!("status {c:#06x}"));
            writeln!(out, "refused {}: {code}{}", s.path.display(), s.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default())?;
        }
        for f in &failures {
            writeln!(out, "not sent {}: {}", f.path.display(), f.reason)?;
        }
        for e in &errors {
            writeln!(out, "association failed: {e}")?;
        }
    }
    let clean = refused.is_empty() && failures.is_empty() && errors.is_empty() && unsent == 0;
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `pacs find`: a C-FIND with the filters of `pacs query`, printed like it.
pub fn find(config: &ClientConfig, node: &Node, query: &Query, format: output::Format) -> anyhow::Result<ExitCode> {
    let model = Model::for_level(query.level);
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    let outcome = runtime.block_on(client::find(config, node, model, query, &mut |row| rows.push(row))).with_context(|| format!("C-FIND on {node}"))?;
    if !matches!(outcome.status, 0x0000 | 0xFE00) {
        bail!("C-FIND on {node} ended with status {:#06x}{}", outcome.status, outcome.comment.map(|c| format!(": {c}")).unwrap_or_default());
    }
    let columns: Vec<Attribute> = client::identifier_attributes(query, model);
    output::write(&mut std::io::stdout().lock(), format, &columns, &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// What to retrieve: the unique keys given, at the level of the lowest one.
pub fn retrieve_query(patient: Option<&str>, study: Option<&str>, series: Option<&str>, instance: Option<&str>) -> anyhow::Result<Query> {
    let level = match (patient, study, series, instance) {
        (_, _, _, Some(_)) => QueryLevel::Instance,
        (_, _, Some(_), None) => QueryLevel::Series,
        (_, Some(_), None, None) => QueryLevel::Study,
        (Some(_), None, None, None) => QueryLevel::Patient,
        _ => bail!("give at least one of --patient, --study, --series or --instance"),
    };
    let mut query = Query::new(level);
    for (attribute, value) in
        [(Attribute::PatientId, patient), (Attribute::StudyInstanceUid, study), (Attribute::SeriesInstanceUid, series), (Attribute::SopInstanceUid, instance)]
    {
        if let Some(v) = value {
            query = query.with(attribute, v)?;
        }
    }
    Ok(query)
}

fn print_retrieve(what: &str, node: &Node, outcome: &RetrieveOutcome, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "status": outcome.status,
            "completed": outcome.completed,
            "failed": outcome.failed,
            "warning": outcome.warning,
            "remaining": outcome.remaining,
            "failed_instances": outcome.failed_instances,
            "stored": outcome.stored,
            "refused": outcome.refused,
            "comment": outcome.comment,
        });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{what} from {node}: status {:#06x}, {} completed, {} failed, {} warning{}",
            outcome.status,
            outcome.completed,
            outcome.failed,
            outcome.warning,
            outcome.comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
        )?;
        for uid in &outcome.failed_instances {
            writeln!(out, "failed {uid}")?;
        }
    }
    let ok = outcome.status == 0 && outcome.failed == 0 && outcome.refused == 0;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `pacs get`: C-GET into the local archive.
pub fn get(config: &ClientConfig, node: &Node, query: &Query, archive: Archive, sop_classes: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let archive = Arc::new(archive);
    let model = Model::for_level(query.level);
    let bar = progress_bar(0, !json && std::io::stderr().is_terminal(), "instances");
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime
        .block_on(client::get(config, node, model, query, archive, sop_classes, &mut |p, _| {
            bar.set_length(u64::from(p.done) + u64::from(p.remaining));
            bar.set_position(u64::from(p.done));
        }))
        .with_context(|| format!("C-GET from {node}"))?;
    bar.finish_and_clear();
    print_retrieve("C-GET", node, &outcome, json)
}

/// Runs a storage SCP named `ae_title` on `listen` over `archive` while `work` runs, so that a
/// C-MOVE to it lands in the local archive.
fn with_receiver<T>(
    archive: Arc<Archive>,
    ae_title: &str,
    listen: Option<SocketAddr>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let Some(address) = listen else { return work.await };
        let config = ServerConfig { ae_title: ae_title.to_owned(), ..ServerConfig::default() };
        let server = DimseServer::bind(address, archive, config).await.with_context(|| format!("cannot listen on {address}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let result = work.await;
        let _ = stop.send(());
        let _ = serving.await;
        result
    })
}

/// `pacs move`: C-MOVE to `destination`; with `listen`, the destination is this archive, served
/// on that address for the duration.
pub fn move_to(
    config: &ClientConfig,
    node: &Node,
    query: &Query,
    destination: &str,
    listen: Option<SocketAddr>,
    archive: Archive,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let model = Model::for_level(query.level);
    let bar = progress_bar(0, !json && std::io::stderr().is_terminal(), "instances");
    let work = async {
        client::move_to(config, node, model, query, destination, &mut |p| {
            bar.set_length(u64::from(p.done) + u64::from(p.remaining));
            bar.set_position(u64::from(p.done));
        })
        .await
        .with_context(|| format!("C-MOVE on {node} to {destination}"))
    };
    let outcome = with_receiver(Arc::new(archive), destination, listen, work)?;
    bar.finish_and_clear();
    print_retrieve("C-MOVE", node, &outcome, json)
}

/// `pacs pull`: migrate the studies of a date range that are missing here.
#[allow(clippy::too_many_arguments)]
pub fn pull(
    config: &ClientConfig,
    node: &Node,
    from: Option<&str>,
    to: Option<&str>,
    destination: Option<&str>,
    listen: Option<SocketAddr>,
    archive: Archive,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let method = match destination {
        Some(d) => PullMethod::Move { destination: d.to_owned() },
        None => PullMethod::Get,
    };
    let local = Arc::new(archive);
    let show = !json && std::io::stderr().is_terminal();
    let bar = progress_bar(0, show, "studies");
    let started = std::time::Instant::now();
    let work = {
        let local = Arc::clone(&local);
        let bar = bar.clone();
        async move {
            client::pull(config, node, local, from, to, &method, &mut |event| match event {
                PullEvent::Listed { studies, .. } => bar.inc_length(*studies as u64),
                PullEvent::Checked { missing, study } => {
                    if *missing == 0 {
                        bar.inc(1);
                    } else {
                        bar.set_message(format!("{study}: {missing} missing"));
                    }
                }
                PullEvent::Retrieved { .. } => bar.inc(1),
                _ => {}
            })
            .await
            .with_context(|| format!("pull from {node}"))
        }
    };
    // With C-MOVE, our own storage SCP receives into the same archive.
    let report = match destination {
        Some(d) => with_receiver(Arc::clone(&local), d, listen, work)?,
        None => tokio::runtime::Runtime::new()?.block_on(work)?,
    };
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "studies": report.studies,
            "complete": report.complete,
            "missing": report.missing,
            "retrieved": report.retrieved,
            "failed": report.failed,
            "errors": report.errors.iter().map(|(s, e)| serde_json::json!({"study": s, "error": e})).collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} studies on {node}: {} already complete here; {} instances were missing, {} retrieved, {} failed; {} studies with errors",
            report.studies,
            report.complete,
            report.missing,
            report.retrieved,
            report.failed,
            report.errors.len()
        )?;
        for (study, error) in &report.errors {
            writeln!(out, "study {study}: {error}")?;
        }
    }
    Ok(if report.failed == 0 && report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
