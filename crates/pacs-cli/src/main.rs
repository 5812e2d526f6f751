//! `pacs`: the command line of the PACS engine. It parses arguments and composes the crates;
//! the work is done by `pacs_store::Archive`.

mod config;
mod import;
mod output;
mod remote;
mod render;
mod transcode;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use pacs_core::{Attribute, MatchOptions, Query, QueryLevel, Scope, Uid};
use pacs_store::{Archive, VerifyOptions};

/// A vendor-neutral DICOM archive.
#[derive(Parser)]
#[command(name = "pacs", version, about, long_about = None)]
struct Cli {
    /// Data directory holding the index (index.sqlite) and the original files (blobs/).
    /// Default: $XDG_DATA_HOME/pacs or ~/.local/share/pacs.
    #[arg(long, global = true, env = "PACS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML config file (default: pacs.toml in the data directory, if present).
    #[arg(long, global = true, env = "PACS_CONFIG")]
    config: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import DICOM files and folders (recursively) into the archive.
    Import {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print a JSON report on standard output instead of a summary.
        #[arg(long)]
        json: bool,
        /// Parallel workers.
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// What to do with a different object under a stored SOP Instance UID: keep, replace, reject.
        #[arg(long)]
        policy: Option<String>,
    },
    /// Query the index.
    Query(QueryArgs),
    /// Copy the stored files of a patient, study, series or instance to a folder, byte for byte.
    Export {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Destination folder (created if missing); each file is named after its SOP Instance UID, plus ".dcm".
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Delete a patient, study, series or instance from the archive.
    Delete {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Check that index and stored files agree; optionally repair (re-index orphan files).
    Verify {
        /// Read every file and compare its SHA-256 with the index (slower; sizes are always checked).
        #[arg(long)]
        checksums: bool,
        /// Re-index orphan files, and delete orphans that duplicate an indexed instance.
        #[arg(long)]
        repair: bool,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Run the archive as a DICOM node (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) and a DICOMweb
    /// server (STOW-RS, QIDO-RS, WADO-RS, WADO-URI) until stopped.
    Serve {
        /// Our AE title [config: dimse.ae_title; default PACS].
        #[arg(long)]
        ae_title: Option<String>,
        /// Address to listen on [dimse.bind; default 127.0.0.1].
        #[arg(long)]
        bind: Option<String>,
        /// DICOM port [dimse.port; default 11112].
        #[arg(long)]
        port: Option<u16>,
        /// Associations served at once [dimse.max_associations; default 100].
        #[arg(long)]
        max_associations: Option<usize>,
        /// A known remote AE (C-MOVE destination), AE=host:port; repeatable [dimse.remote_aes].
        #[arg(long = "remote")]
        remotes: Vec<String>,
        /// Accept associations only from the known remote AEs [dimse.known_callers_only].
        #[arg(long)]
        known_callers_only: bool,
        /// A transfer syntax UID to accept; repeatable [dimse.transfer_syntaxes; default: all].
        #[arg(long = "transfer-syntax")]
        transfer_syntaxes: Vec<String>,
        /// DICOMweb HTTP port [web.port; default 8080].
        #[arg(long)]
        http_port: Option<u16>,
        /// Do not serve DICOMweb [web.enabled = false].
        #[arg(long)]
        no_web: bool,
    },
    /// Check that a remote DICOM node answers (C-ECHO).
    Echo {
        /// The node: AE@host:port (e.g. ORTHANC@127.0.0.1:4242).
        node: String,
        #[command(flatten)]
        us: Calling,
    },
    /// Send DICOM files and folders (recursively) to a remote node (C-STORE).
    Send {
        /// The node: AE@host:port.
        node: String,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Associations in parallel.
        #[arg(long, short = 'j', default_value_t = 4)]
        associations: usize,
        /// Print a JSON report instead of a summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        us: Calling,
    },
    /// Query a remote node (C-FIND) with the filters and output formats of `pacs query`.
    Find {
        /// The node: AE@host:port.
        node: String,
        #[command(flatten)]
        query: QueryArgs,
        #[command(flatten)]
        us: Calling,
    },
    /// Retrieve from a remote node into this archive (C-GET on the same association).
    Get {
        /// The node: AE@host:port.
        node: String,
        #[command(flatten)]
        what: RetrieveArgs,
        /// A storage SOP class UID to accept (repeatable; default: the common image classes).
        #[arg(long = "sop-class")]
        sop_classes: Vec<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        us: Calling,
    },
    /// Ask a remote node to send to an AE (C-MOVE); with --listen, that AE is this archive.
    Move {
        /// The node: AE@host:port.
        node: String,
        #[command(flatten)]
        what: RetrieveArgs,
        /// Destination AE title (the remote node must know its address) [default: --aet].
        #[arg(long)]
        dest: Option<String>,
        /// Receive the instances into this archive, listening on this address (host:port) as
        /// the destination AE while the move runs.
        #[arg(long)]
        listen: Option<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        us: Calling,
    },
    /// Migrate from a remote archive: every study of a date range not yet complete here is
    /// retrieved (C-GET, or C-MOVE with --dest/--listen). Run it again to resume.
    Pull {
        /// The node: AE@host:port.
        node: String,
        /// First study date (YYYYMMDD); open when omitted.
        #[arg(long)]
        from: Option<String>,
        /// Last study date (YYYYMMDD); open when omitted.
        #[arg(long)]
        to: Option<String>,
        /// Retrieve by C-MOVE to this AE title instead of C-GET.
        #[arg(long, requires = "listen")]
        dest: Option<String>,
        /// With --dest: receive into this archive, listening on this address (host:port).
        #[arg(long)]
        listen: Option<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        us: Calling,
    },
    /// Convert a DICOM file to another transfer syntax.
    Transcode(transcode::TranscodeArgs),
    /// Render a frame of a DICOM file as a PNG or JPEG image (window, frame, size).
    Render(render::RenderArgs),
    /// Show counts of patients, studies, series, instances and bytes.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Our side of an association with a remote node.
#[derive(Args)]
struct Calling {
    /// Our (calling) AE title.
    #[arg(long, default_value = "PACS")]
    aet: String,
    /// Seconds to wait for the remote node's next message.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

impl Calling {
    fn config(&self) -> anyhow::Result<pacs_net::dimse::client::ClientConfig> {
        pacs_core::AeTitle::new(&self.aet)?;
        Ok(pacs_net::dimse::client::ClientConfig {
            ae_title: self.aet.clone(),
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
            ..Default::default()
        })
    }
}

/// What a C-GET or C-MOVE retrieves: the unique keys down to the level wanted.
#[derive(Args)]
struct RetrieveArgs {
    /// Patient ID (alone: the whole patient, Patient Root).
    #[arg(long)]
    patient: Option<String>,
    /// Study Instance UID.
    #[arg(long)]
    study: Option<String>,
    /// Series Instance UID (give --study too for strict nodes).
    #[arg(long)]
    series: Option<String>,
    /// SOP Instance UID(s), backslash-separated (give --study and --series too for strict nodes).
    #[arg(long)]
    instance: Option<String>,
}

impl RetrieveArgs {
    fn query(&self) -> anyhow::Result<Query> {
        remote::retrieve_query(self.patient.as_deref(), self.study.as_deref(), self.series.as_deref(), self.instance.as_deref())
    }
}

fn listen_address(listen: Option<&str>) -> anyhow::Result<Option<std::net::SocketAddr>> {
    listen.map(|l| l.parse().with_context(|| format!("--listen {l:?}: expected host:port, e.g. 127.0.0.1:11113"))).transpose()
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ScopeArgs {
    /// A patient, by Patient ID (with --issuer if needed).
    #[arg(long)]
    patient: Option<String>,
    /// A study, by Study Instance UID.
    #[arg(long)]
    study: Option<String>,
    /// A series, by Series Instance UID.
    #[arg(long)]
    series: Option<String>,
    /// An instance, by SOP Instance UID.
    #[arg(long)]
    instance: Option<String>,
}

#[derive(Args)]
struct QueryArgs {
    /// Level of the records returned: patient, study, series or instance.
    #[arg(long, short, default_value = "study")]
    level: String,
    /// Patient ID (wildcards * and ? allowed).
    #[arg(long)]
    patient_id: Option<String>,
    /// Patient's name, e.g. 'DOE^*'.
    #[arg(long)]
    patient_name: Option<String>,
    /// Study date or range: 20240101, 20240101-20240131, -20240101, 20240101-.
    #[arg(long)]
    study_date: Option<String>,
    /// Modality (at study level: matches Modalities in Study).
    #[arg(long)]
    modality: Option<String>,
    /// Accession number.
    #[arg(long)]
    accession: Option<String>,
    /// Study Instance UID(s), backslash-separated.
    #[arg(long)]
    study_uid: Option<String>,
    /// Series Instance UID(s), backslash-separated.
    #[arg(long)]
    series_uid: Option<String>,
    /// Generic key as in DCMTK's findscu: -k Keyword=Value, -k GGGG,EEEE=Value, or -k Keyword to return it.
    #[arg(short = 'k', long = "key")]
    keys: Vec<String>,
    /// Match person names without regard to case.
    #[arg(long)]
    fuzzy: bool,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// Skip this many records first.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = output::Format::Table)]
    format: output::Format,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) => {
            // The reader of our output went away (`pacs query | head`): not an error.
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut message = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("pacs: error: {}", message.replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn open_archive(settings: &config::Settings) -> anyhow::Result<Archive> {
    let config = settings.archive_config();
    Archive::open(&settings.data_dir, config).with_context(|| format!("cannot open the archive in {}", settings.data_dir.display()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut settings = config::resolve(cli.data_dir.as_deref(), cli.config.as_deref())?;
    match cli.command {
        Command::Import { paths, json, jobs, policy } => {
            if let Some(p) = policy {
                settings.duplicate_policy = config::parse_policy(&p)?;
            }
            let archive = open_archive(&settings)?;
            let show = !json && std::io::stderr().is_terminal();
            let report = import::run(&archive, &paths, jobs.unwrap_or(settings.jobs), settings.batch, show)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{} files: {} imported ({:.1} MB), {} already present, {} kept existing, {} replaced, {} rejected",
                    report.files,
                    report.imported,
                    report.bytes as f64 / 1e6,
                    report.already_present,
                    report.kept_existing,
                    report.replaced,
                    report.rejected.len()
                )?;
                for f in &report.rejected {
                    writeln!(out, "rejected {}: {}", f.path.display(), f.reason)?;
                }
                for w in &report.warnings {
                    tracing::info!(path = %w.path.display(), "{}", w.reason);
                }
            }
            Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Query(args) => {
            let archive = open_archive(&settings)?;
            let query = build_query(&args)?;
            let rows = archive.query(&query)?;
            let columns = query.return_attributes();
            output::write(&mut std::io::stdout().lock(), args.format, &columns, &rows)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { scope, out } => {
            let archive = open_archive(&settings)?;
            let scope = scope.resolve()?;
            let records = archive.instances(&scope)?;
            if records.is_empty() {
                bail!("nothing stored for {}", describe(&scope));
            }
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let progress = if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(records.len() as u64) } else { indicatif::ProgressBar::hidden() };
            for record in &records {
                let target = out.join(format!("{}.dcm", record.sop_instance_uid));
                let mut reader = archive.read(record)?;
                let mut file = std::fs::File::create(&target).with_context(|| format!("cannot create {}", target.display()))?;
                let copied = std::io::copy(&mut reader, &mut file).with_context(|| format!("cannot write {}", target.display()))?;
                if copied != record.size {
                    bail!("stored object {} has {copied} bytes, the index says {}: run `pacs verify`", record.sop_instance_uid, record.size);
                }
                progress.inc(1);
            }
            progress.finish_and_clear();
            println!("exported {} instances to {}", records.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { scope } => {
            let archive = open_archive(&settings)?;
            let scope = scope.resolve()?;
            let removed = archive.delete(&scope)?;
            if removed.is_empty() {
                bail!("nothing stored for {}", describe(&scope));
            }
            println!("deleted {} instances of {}", removed.len(), describe(&scope));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { checksums, repair, json } => {
            let archive = open_archive(&settings)?;
            let total = archive.stats()?.instances;
            let progress = if !json && std::io::stderr().is_terminal() { indicatif::ProgressBar::new(total) } else { indicatif::ProgressBar::hidden() };
            let report = archive.verify(VerifyOptions { checksums, repair }, &mut |n| progress.set_position(n))?;
            progress.finish_and_clear();
            let mut out = std::io::stdout().lock();
            if json {
                let value = serde_json::json!({
                    "checked": report.checked,
                    "missing": report.missing.iter().map(|(u, k)| serde_json::json!({"sop_instance_uid": u.as_str(), "blob": k.as_str()})).collect::<Vec<_>>(),
                    "corrupt": report.corrupt.iter().map(|(u, k, w)| serde_json::json!({"sop_instance_uid": u.as_str(), "blob": k.as_str(), "problem": w})).collect::<Vec<_>>(),
                    "orphans": report.orphans.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "reindexed": report.reindexed.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                    "removed": report.removed.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "unrepairable": report.unrepairable.iter().map(|(k, w)| serde_json::json!({"blob": k.as_str(), "problem": w})).collect::<Vec<_>>(),
                    "clean": report.is_clean(),
                });
                serde_json::to_writer_pretty(&mut out, &value)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "checked {} instances: {} missing files, {} corrupt, {} orphan files ({} re-indexed, {} redundant removed, {} unrepairable)",
                    report.checked,
                    report.missing.len(),
                    report.corrupt.len(),
                    report.orphans.len(),
                    report.reindexed.len(),
                    report.removed.len(),
                    report.unrepairable.len()
                )?;
                for (uid, key) in &report.missing {
                    writeln!(out, "missing file {key} of instance {uid}")?;
                }
                for (uid, key, what) in &report.corrupt {
                    writeln!(out, "corrupt file {key} of instance {uid}: {what}")?;
                }
                if !repair {
                    for key in &report.orphans {
                        writeln!(out, "orphan file {key} (run with --repair to re-index)")?;
                    }
                }
                for (key, why) in &report.unrepairable {
                    writeln!(out, "unrepairable orphan {key}: {why}")?;
                }
            }
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Serve { ae_title, bind, port, max_associations, remotes, known_callers_only, transfer_syntaxes, http_port, no_web } => {
            let archive = std::sync::Arc::new(open_archive(&settings)?);
            let d = &settings.dimse;
            let defaults = pacs_net::dimse::ServerConfig::default();
            let config = pacs_net::dimse::ServerConfig {
                ae_title: ae_title.or(d.ae_title.clone()).unwrap_or(defaults.ae_title),
                max_associations: max_associations.or(d.max_associations).unwrap_or(defaults.max_associations),
                max_pdu_length: d.max_pdu_length.unwrap_or(defaults.max_pdu_length),
                timeout: d.timeout_seconds.map_or(defaults.timeout, std::time::Duration::from_secs),
                remote_aes: d.remote_aes.clone(),
                known_callers_only: known_callers_only || d.known_callers_only.unwrap_or(false),
                transfer_syntaxes: if transfer_syntaxes.is_empty() { d.transfer_syntaxes.clone() } else { transfer_syntaxes },
            };
            for ts in &config.transfer_syntaxes {
                Uid::new(ts).with_context(|| format!("transfer syntax {ts:?}"))?;
            }
            let mut config = config;
            for remote in remotes {
                let (ae, address) = remote.split_once('=').with_context(|| format!("--remote {remote:?}: expected AE=host:port"))?;
                config.remote_aes.insert(ae.trim().to_owned(), address.trim().to_owned());
            }
            for (ae, address) in &config.remote_aes {
                pacs_core::AeTitle::new(ae)?;
                if address.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                    bail!("remote AE {ae}: {address:?} is not host:port");
                }
            }
            pacs_core::AeTitle::new(&config.ae_title)?;
            let host = bind.or(d.bind.clone()).unwrap_or_else(|| "127.0.0.1".into());
            let port = port.or(d.port).unwrap_or(11112);
            let address = socket_address(&host, port)?;
            let w = &settings.web;
            let web = if no_web || w.enabled == Some(false) {
                None
            } else {
                let defaults = pacs_net::web::WebConfig::default();
                let config = pacs_net::web::WebConfig {
                    base_path: w.base_path.clone().unwrap_or(defaults.base_path),
                    max_body: w.max_body_mb.map_or(defaults.max_body, |mb| mb.saturating_mul(1024 * 1024)),
                    max_results: w.max_results.unwrap_or(defaults.max_results),
                    max_header_reads: w.max_header_reads.unwrap_or(defaults.max_header_reads),
                    max_stow_requests: w.max_stow_requests.unwrap_or(defaults.max_stow_requests),
                    body_idle_timeout: w.body_idle_timeout_s.map_or(defaults.body_idle_timeout, std::time::Duration::from_secs),
                    cors_origins: w.cors_origins.clone(),
                    public_url: w.public_url.clone(),
                    ..defaults
                };
                let web_host = w.bind.clone().unwrap_or_else(|| host.clone());
                Some((socket_address(&web_host, http_port.or(w.port).unwrap_or(8080))?, config))
            };
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let server = pacs_net::dimse::DimseServer::bind(address, std::sync::Arc::clone(&archive), config.clone()).await?;
                let local = server.local_addr()?;
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let web_task = match web {
                    Some((web_address, web_config)) => {
                        let base = web_config.base_path.clone();
                        let web = pacs_net::web::WebServer::bind(web_address, archive, web_config).await?;
                        let web_local = web.local_addr()?;
                        // One line each on stdout, for scripts and tests waiting for the server.
                        println!("listening on {local} as {}", config.ae_title);
                        println!("DICOMweb on http://{web_local}{base}");
                        Some(tokio::spawn(web.serve(until_stopped(stopped.clone()))))
                    }
                    None => {
                        println!("listening on {local} as {}", config.ae_title);
                        None
                    }
                };
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = stop.send(true);
                });
                server.serve(until_stopped(stopped)).await?;
                if let Some(task) = web_task {
                    task.await??;
                }
                tracing::info!("stopped by a signal");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Echo { node, us } => {
            let config = us.config()?;
            let node = pacs_net::dimse::client::Node::parse(&node)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let started = std::time::Instant::now();
            let code = runtime.block_on(pacs_net::dimse::client::echo(&config, &node)).with_context(|| format!("C-ECHO to {node}"))?;
            if code != 0 {
                bail!("C-ECHO to {node} answered status {code:#06x}");
            }
            println!("{node} answered C-ECHO in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { node, paths, associations, json, us } => {
            let node = pacs_net::dimse::client::Node::parse(&node)?;
            remote::send(&us.config()?, &node, &paths, associations, json)
        }
        Command::Find { node, query, us } => {
            let node = pacs_net::dimse::client::Node::parse(&node)?;
            let format = query.format;
            remote::find(&us.config()?, &node, &build_query(&query)?, format)
        }
        Command::Get { node, what, sop_classes, json, us } => {
            let node = pacs_net::dimse::client::Node::parse(&node)?;
            for class in &sop_classes {
                Uid::new(class)?;
            }
            remote::get(&us.config()?, &node, &what.query()?, open_archive(&settings)?, &sop_classes, json)
        }
        Command::Move { node, what, dest, listen, json, us } => {
            let node = pacs_net::dimse::client::Node::parse(&node)?;
            let destination = dest.unwrap_or_else(|| us.aet.clone());
            pacs_core::AeTitle::new(&destination)?;
            let listen = listen_address(listen.as_deref())?;
            remote::move_to(&us.config()?, &node, &what.query()?, &destination, listen, open_archive(&settings)?, json)
        }
        Command::Pull { node, from, to, dest, listen, json, us } => {
            let node = pacs_net::dimse::client::Node::parse(&node)?;
            if let Some(d) = &dest {
                pacs_core::AeTitle::new(d)?;
            }
            let listen = listen_address(listen.as_deref())?;
            remote::pull(&us.config()?, &node, from.as_deref(), to.as_deref(), dest.as_deref(), listen, open_archive(&settings)?, json)
        }
        Command::Transcode(args) => transcode::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Stats { json } => {
            let archive = open_archive(&settings)?;
            let s = archive.stats()?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"patients": s.patients, "studies": s.studies, "series": s.series, "instances": s.instances, "bytes": s.bytes, "data_dir": settings.data_dir})
                );
            } else {
                println!("data directory  {}", settings.data_dir.display());
                println!("patients        {}", s.patients);
                println!("studies         {}", s.studies);
                println!("series          {}", s.series);
                println!("instances       {}", s.instances);
                println!("bytes           {} ({:.1} MB)", s.bytes, s.bytes as f64 / 1e6);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A socket address from a host (IPv4 or IPv6 literal) and a port.
fn socket_address(host: &str, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    format!("{host}:{port}").parse().or_else(|_| format!("[{host}]:{port}").parse()).with_context(|| format!("invalid bind address {host:?}"))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what service managers send).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

impl ScopeArgs {
    fn resolve(&self) -> anyhow::Result<Scope> {
        let uid = |text: &str| Uid::new(text).map_err(|e| anyhow!("{e}"));
        Ok(match (&self.patient, &self.study, &self.series, &self.instance) {
            (Some(id), ..) => Scope::Patient { id: id.clone(), issuer: String::new() },
            (_, Some(u), ..) => Scope::Study(uid(u)?),
            (_, _, Some(u), _) => Scope::Series(uid(u)?),
            (_, _, _, Some(u)) => Scope::Instance(uid(u)?),
            _ => bail!("give one of --patient, --study, --series or --instance"),
        })
    }
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Patient { id, .. } => format!("patient {id:?}"),
        Scope::Study(u) => format!("study {u}"),
        Scope::Series(u) => format!("series {u}"),
        Scope::Instance(u) => format!("instance {u}"),
    }
}

/// The keyword and tag of a standard DICOM attribute named by keyword or tag, for messages.
fn standard_attribute(name: &str) -> Option<String> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    let entry = match pacs_core::attribute::parse_tag(name) {
        Some((g, e)) => dictionary.by_tag(dicom_core::Tag(g, e)),
        None => dictionary.by_name(name),
    }?;
    let tag = entry.tag_range().inner();
    Some(format!("{} ({:04X},{:04X})", entry.alias(), tag.0, tag.1))
}

/// Builds the query from friendly filters and generic `-k` keys.
fn build_query(args: &QueryArgs) -> anyhow::Result<Query> {
    let mut level = QueryLevel::parse(&args.level)?;
    let mut keys: Vec<(Attribute, Option<String>)> = Vec::new();
    for key in &args.keys {
        let (name, value) = match key.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.to_owned())),
            None => (key.trim(), None),
        };
        if name == "QueryRetrieveLevel" || name.eq_ignore_ascii_case("0008,0052") || name.eq_ignore_ascii_case("00080052") {
            level = QueryLevel::parse(value.as_deref().unwrap_or(""))?;
            continue;
        }
        let attribute = Attribute::parse(name).ok_or_else(|| {
            let indexed = Attribute::ALL.iter().map(|a| a.keyword()).collect::<Vec<_>>().join(", ");
            match standard_attribute(name) {
                Some(known) => anyhow!("-k {name}: {known} is not an indexed attribute (indexed: {indexed})"),
                None => anyhow!("-k {name}: not an indexed attribute, nor a keyword or tag of the DICOM dictionary (indexed: {indexed})"),
            }
        })?;
        keys.push((attribute, value));
    }
    let modality = if level == QueryLevel::Study || level == QueryLevel::Patient { Attribute::ModalitiesInStudy } else { Attribute::Modality };
    for (attribute, value) in [
        (Attribute::PatientId, &args.patient_id),
        (Attribute::PatientName, &args.patient_name),
        (Attribute::StudyDate, &args.study_date),
        (modality, &args.modality),
        (Attribute::AccessionNumber, &args.accession),
        (Attribute::StudyInstanceUid, &args.study_uid),
        (Attribute::SeriesInstanceUid, &args.series_uid),
    ] {
        if let Some(v) = value {
            keys.push((attribute, Some(v.clone())));
        }
    }
    let mut query = Query::new(level);
    query.options = MatchOptions { case_insensitive_pn: args.fuzzy, combine_datetime: true };
    query.limit = args.limit;
    query.offset = args.offset;
    for (attribute, value) in keys {
        match value {
            Some(v) => query = query.with(attribute, &v)?,
            None => {
                if attribute.level() > level {
                    bail!("{} is a {} level attribute and cannot be returned at {} level", attribute.keyword(), attribute.level(), level);
                }
                query.include.push(attribute);
            }
        }
    }
    Ok(query)
}
