//! Settings: defaults, then the TOML config file, then environment variables, then flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pacs_core::DuplicatePolicy;
use pacs_store::{CompressionPolicy, CompressionRule};
use serde::Deserialize;

/// The config file, all fields optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory (index and blobs).
    pub data_dir: Option<PathBuf>,
    /// `keep` (default), `replace` or `reject`.
    pub duplicate_policy: Option<String>,
    /// Import settings.
    #[serde(default)]
    pub import: ImportConfig,
    /// DICOM network settings of `pacs serve`.
    #[serde(default)]
    pub dimse: DimseConfig,
    /// DICOMweb settings of `pacs serve`.
    #[serde(default)]
    pub web: WebConfig,
    /// The `[ingest]` table: compression on ingest.
    #[serde(default)]
    pub ingest: IngestConfig,
}

/// The `[ingest]` table: `[[ingest.compress]]` rules, tried in order; none by default (objects
/// stored exactly as received).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Whether a rule may name a lossy transfer syntax (default false).
    pub allow_lossy: Option<bool>,
    /// The rules.
    #[serde(default)]
    pub compress: Vec<CompressConfig>,
}

/// One `[[ingest.compress]]` rule: objects of this Modality and/or SOP Class UID are stored in
/// `transfer_syntax`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressConfig {
    /// Modality to match, e.g. `"CT"`.
    pub modality: Option<String>,
    /// SOP Class UID to match.
    pub sop_class_uid: Option<String>,
    /// The transfer syntax UID to store matching objects in.
    pub transfer_syntax: String,
}

/// The `[web]` table: the DICOMweb face of `pacs serve`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Serve DICOMweb at all (default true).
    pub enabled: Option<bool>,
    /// Address to listen on (default: the `[dimse]` bind address, else 127.0.0.1).
    pub bind: Option<String>,
    /// HTTP port (default 8080).
    pub port: Option<u16>,
    /// Path every endpoint is under (default /dicom-web).
    pub base_path: Option<String>,
    /// Largest STOW-RS body accepted, in megabytes (default 4096).
    pub max_body_mb: Option<u64>,
    /// Most results of a QIDO-RS search (default 1000).
    pub max_results: Option<usize>,
    /// Most stored headers a QIDO-RS search on attributes outside the index may read (default
    /// 10000); a broader one is answered 413.
    pub max_header_reads: Option<usize>,
    /// STOW-RS requests whose bodies are read at once; more wait their turn (default 32).
    pub max_stow_requests: Option<usize>,
    /// Seconds a STOW-RS body may send nothing before the request fails with 408 (default 60).
    pub body_idle_timeout_s: Option<u64>,
    /// Origins allowed by CORS (default none; "*" for any).
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// URL the base path is reached at by clients (default: from the request's Host header).
    pub public_url: Option<String>,
}

/// The `[dimse]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimseConfig {
    /// Our AE title (default PACS).
    pub ae_title: Option<String>,
    /// Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface).
    pub bind: Option<String>,
    /// DICOM port (default 11112).
    pub port: Option<u16>,
    /// Associations served at once (default 100).
    pub max_associations: Option<usize>,
    /// Largest PDU accepted, in bytes (default 262144).
    pub max_pdu_length: Option<u32>,
    /// Seconds to wait for a peer before giving up on an association (default 60).
    pub timeout_seconds: Option<u64>,
    /// Known remote AEs (C-MOVE destinations): AE title = "host:port".
    #[serde(default)]
    pub remote_aes: std::collections::HashMap<String, String>,
    /// Accept only calling AE titles listed in `remote_aes` (default false: any caller).
    pub known_callers_only: Option<bool>,
    /// Transfer syntax UIDs accepted for presentation contexts (default: every syntax known).
    #[serde(default)]
    pub transfer_syntaxes: Vec<String>,
}

/// The `[import]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// Parallel workers (default: twice the number of cores, at least 4: a worker spends much of
    /// its time waiting for the file system).
    pub jobs: Option<usize>,
    /// Objects committed together (default 64).
    pub batch: Option<usize>,
}

/// The settings in force.
#[derive(Debug)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Duplicate policy.
    pub duplicate_policy: DuplicatePolicy,
    /// Import workers.
    pub jobs: usize,
    /// Import batch size.
    pub batch: usize,
    /// The `[dimse]` table as read.
    pub dimse: DimseConfig,
    /// The `[web]` table as read.
    pub web: WebConfig,
    /// Compression on ingest, from the `[ingest]` table (checked: a lossy target needs
    /// `allow_lossy = true`).
    pub compression: CompressionPolicy,
}

impl Settings {
    /// The archive settings: the duplicate policy and compression on ingest.
    pub fn archive_config(&self) -> pacs_store::ArchiveConfig {
        pacs_store::ArchiveConfig { duplicate_policy: self.duplicate_policy, compression: self.compression.clone(), ..pacs_store::ArchiveConfig::default() }
    }
}

/// The default data directory: `$XDG_DATA_HOME/pacs`, else `~/.local/share/pacs`, else `./pacs-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("pacs");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/pacs"),
        None => PathBuf::from("pacs-data"),
    }
}

/// Parses a duplicate policy name.
pub fn parse_policy(text: &str) -> anyhow::Result<DuplicatePolicy> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "keep" | "keep-existing" => DuplicatePolicy::KeepExisting,
        "replace" => DuplicatePolicy::Replace,
        "reject" => DuplicatePolicy::Reject,
        other => bail!("unknown duplicate policy {other:?} (expected keep, replace or reject)"),
    })
}

/// Resolves the settings. `data_dir` and `config` come from flags or their environment variables
/// (`PACS_DATA_DIR`, `PACS_CONFIG`); `PACS_DUPLICATE_POLICY` and `PACS_IMPORT_JOBS` override
/// the file. Without `--config`, `pacs.toml` in the data directory is read if it exists.
pub fn resolve(data_dir: Option<&Path>, config: Option<&Path>) -> anyhow::Result<Settings> {
    let file_path = match (config, data_dir) {
        (Some(c), _) => Some(c.to_path_buf()),
        (None, Some(d)) => Some(d.join("pacs.toml")).filter(|p| p.exists()),
        (None, None) => Some(default_data_dir().join("pacs.toml")).filter(|p| p.exists()),
    };
    let file: FileConfig = match &file_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let data_dir = data_dir.map(Path::to_path_buf).or(file.data_dir).unwrap_or_else(default_data_dir);
    let policy_text = std::env::var("PACS_DUPLICATE_POLICY").ok().or(file.duplicate_policy);
    let duplicate_policy = match policy_text {
        Some(p) => parse_policy(&p)?,
        None => DuplicatePolicy::KeepExisting,
    };
    let jobs = match std::env::var("PACS_IMPORT_JOBS").ok() {
        Some(j) => j.parse().with_context(|| format!("PACS_IMPORT_JOBS={j:?} is not a number"))?,
        None => file.import.jobs.unwrap_or_else(|| (2 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)).max(4)),
    };
    let rules = file
        .ingest
        .compress
        .into_iter()
        .map(|c| CompressionRule { modality: c.modality, sop_class_uid: c.sop_class_uid, transfer_syntax: c.transfer_syntax })
        .collect();
    let compression = CompressionPolicy::new(rules, file.ingest.allow_lossy.unwrap_or(false)).context("invalid [ingest] table")?;
    Ok(Settings { data_dir, duplicate_policy, jobs: jobs.max(1), batch: file.import.batch.unwrap_or(64).max(1), dimse: file.dimse, web: file.web, compression })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_config(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pacs.toml");
        std::fs::write(&path, text)?;
        resolve(Some(dir.path()), Some(&path))
    }

    #[test]
    fn ingest_compression_is_off_by_default_and_lossy_needs_allow_lossy() {
        assert!(with_config("").expect("valid").compression.is_off());
        let lossless = "[[ingest.compress]]\nmodality = \"CT\"\ntransfer_syntax = \"1.2.840.10008.1.2.4.80\"\n";
        let settings = with_config(lossless).expect("valid");
        assert_eq!(settings.archive_config().compression.rules().len(), 1);
        let lossy = "[[ingest.compress]]\nmodality = \"CT\"\ntransfer_syntax = \"1.2.840.10008.1.2.4.91\"\n";
        let err = with_config(lossy).expect_err("refused");
        assert!(format!("{err:#}").contains("allow_lossy"), "{err:#}");
        assert!(with_config(&format!("[ingest]\nallow_lossy = true\n{lossy}")).is_ok());
    }

    #[test]
    fn the_web_table_takes_every_documented_key() {
        let text = "[web]\nenabled = true\nbind = \"127.0.0.1\"\nport = 8081\nbase_path = \"/dw\"\nmax_body_mb = 10\nmax_results = 50\nmax_header_reads = 100\nmax_stow_requests = 4\nbody_idle_timeout_s = 5\ncors_origins = [\"*\"]\npublic_url = \"https://pacs.example/dw\"\n";
        let settings = with_config(text).expect("valid");
        assert_eq!(settings.web.max_stow_requests, Some(4));
        assert_eq!(settings.web.body_idle_timeout_s, Some(5));
        assert_eq!(settings.web.max_body_mb, Some(10));
        assert!(with_config("[web]\nmax_stow_request = 4\n").is_err(), "a misspelt key is an error");
    }
}
