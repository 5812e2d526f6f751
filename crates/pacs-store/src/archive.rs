//! The [`Archive`]: the index and the blob store composed into the API that every face of the
//! engine (the command line, DIMSE, DICOMweb) calls.
//!
//! Ingest order is what makes the archive crash-safe:
//! 1. the bytes stream into a new blob under a fresh key while the header is scanned and hashed;
//! 2. the record is extracted (a rejection deletes the blob: nothing is kept);
//! 3. the blob is made durable (`BlobStore::sync`, one `syncfs` for a whole batch);
//! 4. the index rows are committed in one transaction;
//! 5. only then is success reported. Blobs made redundant (an identical re-ingest, a replaced
//!    instance) are deleted after the commit.
//!
//! A crash between 3 and 4 leaves an orphan blob, never an index row without its bytes;
//! [`Archive::verify`] finds orphans and re-indexes them.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use pacs_core::extract::{self, Stored};
use pacs_core::index::{DuplicatePolicy, InsertOutcome, Scope, Stats};
use pacs_core::scan::{self, ScanError, ScanLimits};
use pacs_core::{BlobKey, BlobStore, BlobWrite, Error, Index, InstanceRecord, Original, Query, QueryRow, Result, Uid};
use sha2::{Digest, Sha256};

use crate::blob::ObjectBlobStore;
use crate::compression::{self, CompressionPolicy};
use crate::sqlite::SqliteIndex;

/// Size of read buffers: below the allocator's mmap threshold, so that buffers are recycled
/// rather than mapped and unmapped for every small object.
const READ_BUFFER: usize = 64 * 1024;

/// Settings of an [`Archive`].
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// What to do with a different object under an already stored SOP Instance UID.
    pub duplicate_policy: DuplicatePolicy,
    /// Limits applied to every scanned object.
    pub scan_limits: ScanLimits,
    /// Compression on ingest; off (objects stored exactly as received) by default.
    pub compression: CompressionPolicy,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig { duplicate_policy: DuplicatePolicy::KeepExisting, scan_limits: ScanLimits::default(), compression: CompressionPolicy::default() }
    }
}

/// An object whose bytes are in the blob store (not yet durable) and whose record is ready to be
/// committed with [`Archive::commit`].
#[derive(Debug)]
pub struct Staged {
    /// The record to index.
    pub record: InstanceRecord,
    /// Values that could not be indexed (they stay in the stored bytes).
    pub warnings: Vec<String>,
}

/// The outcome of ingesting one object.
#[derive(Clone, Debug)]
pub struct IngestReport {
    /// The instance's record as indexed (or as offered, when it was not indexed).
    pub record: InstanceRecord,
    /// What the index did with it.
    pub outcome: InsertOutcome,
    /// Values that could not be indexed.
    pub warnings: Vec<String>,
}

/// What [`Archive::verify`] checks and repairs.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Read every blob and compare its SHA-256 with the index (otherwise sizes only).
    pub checksums: bool,
    /// Re-index orphan blobs, and delete orphans that duplicate an indexed instance.
    pub repair: bool,
}

/// What [`Archive::verify`] found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Index rows checked.
    pub checked: u64,
    /// Index rows whose blob is missing.
    pub missing: Vec<(Uid, BlobKey)>,
    /// Index rows whose blob has the wrong size or checksum, with what differs.
    pub corrupt: Vec<(Uid, BlobKey, String)>,
    /// Blobs no index row refers to (before repair).
    pub orphans: Vec<BlobKey>,
    /// Orphans re-indexed by the repair.
    pub reindexed: Vec<Uid>,
    /// Orphans deleted by the repair because the same instance is indexed.
    pub removed: Vec<BlobKey>,
    /// Orphans that could not be re-indexed, with the reason.
    pub unrepairable: Vec<(BlobKey, String)>,
}

impl VerifyReport {
    /// Whether the archive is consistent (after the repair, if one was asked for).
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.unrepairable.is_empty() && self.orphans.len() == self.reindexed.len() + self.removed.len()
    }
}

/// The archive: an [`Index`] and a [`BlobStore`] kept consistent.
///
/// Every method blocks; from asynchronous code call it through `spawn_blocking`.
pub struct Archive {
    index: Arc<dyn Index>,
    blobs: Arc<dyn BlobStore>,
    config: ArchiveConfig,
}

/// Reads from a source while writing every byte to a hash and, when given, a blob.
struct Tee<'a> {
    source: &'a mut dyn Read,
    blob: Option<&'a mut dyn BlobWrite>,
    hash: Sha256,
    size: u64,
    failed: Option<Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read(buf)?;
        if n > 0 {
            self.hash.update(&buf[..n]);
            self.size += n as u64;
            if let Some(Err(e)) = self.blob.as_mut().map(|b| b.write(&buf[..n])) {
                let message = e.to_string();
                self.failed = Some(e);
                return Err(io::Error::other(message));
            }
        }
        Ok(n)
    }
}

/// The lowercase hexadecimal SHA-256 of a stream.
pub fn sha256_hex(source: &mut dyn Read) -> io::Result<String> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn scan_error(e: ScanError) -> Error {
    match e {
        ScanError::Rejected(r) => Error::Rejected(r),
        ScanError::Io(source) => Error::Io { action: "reading", target: "the object".into(), source },
    }
}

impl Archive {
    /// Composes an archive from any index and blob store.
    pub fn new(index: Arc<dyn Index>, blobs: Arc<dyn BlobStore>, config: ArchiveConfig) -> Archive {
        Archive { index, blobs, config }
    }

    /// Opens the embedded default in `data_dir`: a SQLite index `index.sqlite` and a local blob
    /// folder `blobs/`, both created if missing.
    pub fn open(data_dir: &Path, config: ArchiveConfig) -> Result<Archive> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io { action: "creating data folder", target: data_dir.display().to_string(), source })?;
        let index = SqliteIndex::open(&data_dir.join("index.sqlite"))?;
        let blobs = ObjectBlobStore::local(&data_dir.join("blobs"))?;
        Ok(Archive::new(Arc::new(index), Arc::new(blobs), config))
    }

    /// The index.
    pub fn index(&self) -> &dyn Index {
        self.index.as_ref()
    }

    /// The blob store.
    pub fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }

    /// Streams one object into a new blob while scanning its header, and extracts its record.
    /// The blob is not durable and not indexed until [`commit`](Archive::commit).
    ///
    /// A malformed object is [`Error::Rejected`] and leaves nothing behind. When the
    /// [`CompressionPolicy`] of the configuration names a target for the object, the staged blob
    /// is then converted into a new blob (see [`compression`]).
    pub fn stage(&self, source: &mut dyn Read) -> Result<Staged> {
        let staged = self.stage_as_received(source)?;
        match self.config.compression.target_for(&staged.record) {
            Some(target) => {
                let target = target.to_owned();
                self.compress(staged, &target)
            }
            None => Ok(staged),
        }
    }

    /// Converts a staged object into `target` in a new blob and deletes the received one; the
    /// record keeps what was received as its [`Original`]. A conversion that fails leaves the
    /// object as received.
    fn compress(&self, staged: Staged, target: &str) -> Result<Staged> {
        let from = staged.record.transfer_syntax_uid.clone();
        let uid = staged.record.sop_instance_uid.clone();
        // Into a spool (memory, then a temporary file), handed over only once the whole
        // conversion succeeded: one that fails late leaves nothing.
        let converted = self.blobs.open(&staged.record.blob).and_then(|reader| {
            compression::convert(&mut BufReader::with_capacity(READ_BUFFER, reader), target).map_err(|reason| Error::Corrupt { what: reason })
        });
        let mut converted = match converted {
            Ok(converted) => converted,
            Err(e) => {
                tracing::warn!(sop_instance_uid = %uid, from = %from, to = target, error = %e, "compression on ingest failed; stored as received");
                return Ok(staged);
            }
        };
        // Reading the spool back can fail (its temporary file): the object is then kept as
        // received too.
        let mut again = match self.stage_as_received(&mut converted) {
            Ok(again) => again,
            Err(e) => {
                tracing::warn!(sop_instance_uid = %uid, from = %from, to = target, error = %e, "staging the compressed object failed; stored as received");
                return Ok(staged);
            }
        };
        let original = Original { size: staged.record.size, checksum: staged.record.checksum.clone(), transfer_syntax_uid: from.clone() };
        tracing::info!(
            sop_instance_uid = %uid, stored_as = %again.record.sop_instance_uid, from = %from, to = target,
            received = original.size, stored = again.record.size, "compressed on ingest"
        );
        again.record.original = Some(original);
        again.warnings.extend(staged.warnings);
        again.warnings.dedup();
        self.discard(&staged.record.blob);
        Ok(again)
    }

    fn stage_as_received(&self, source: &mut dyn Read) -> Result<Staged> {
        let key = BlobKey::for_id(uuid::Uuid::now_v7().as_u128());
        let mut writer = self.blobs.create(&key)?;
        let mut tee = Tee { source, blob: Some(writer.as_mut()), hash: Sha256::new(), size: 0, failed: None };
        let scanned = scan::scan(&mut BufReader::with_capacity(READ_BUFFER, &mut tee), &extract::wanted, self.config.scan_limits);
        let (hash, size, failed) = (tee.hash, tee.size, tee.failed);
        let scanned = match (scanned, failed) {
            (_, Some(e)) => {
                writer.abort();
                return Err(e);
            }
            (Err(e), None) => {
                writer.abort();
                return Err(scan_error(e));
            }
            (Ok(s), None) => s,
        };
        writer.finish()?;
        let stored = Stored { blob: key.clone(), size, checksum: hex(&hash.finalize()) };
        match extract::extract(&scanned, stored) {
            Ok((record, warnings)) => Ok(Staged { record, warnings }),
            Err(rejection) => {
                self.discard(&key);
                Err(Error::Rejected(rejection))
            }
        }
    }

    /// Gives up a staged object that will not be committed: its blob is deleted.
    pub fn abandon(&self, staged: Staged) {
        self.discard(&staged.record.blob);
    }

    fn discard(&self, key: &BlobKey) {
        if let Err(e) = self.blobs.delete(key) {
            tracing::warn!(blob = %key, error = %e, "could not delete a redundant blob; verify will report it as an orphan");
        }
    }

    /// Makes staged objects durable and indexes them in one transaction (a group commit), then
    /// deletes the blobs the index did not keep. Returns one report per staged object, in order.
    pub fn commit(&self, staged: Vec<Staged>) -> Result<Vec<IngestReport>> {
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<BlobKey> = staged.iter().map(|s| s.record.blob.clone()).collect();
        let records: Vec<InstanceRecord> = staged.iter().map(|s| s.record.clone()).collect();
        let result = self.blobs.sync(&keys).and_then(|()| self.index.insert(&records, self.config.duplicate_policy));
        let outcomes = match result {
            Ok(o) => o,
            Err(e) => {
                for key in &keys {
                    self.discard(key);
                }
                return Err(e);
            }
        };
        let mut reports = Vec::with_capacity(staged.len());
        for (s, outcome) in staged.into_iter().zip(outcomes) {
            match &outcome {
                InsertOutcome::Inserted => {}
                InsertOutcome::Replaced { old } => self.discard(old),
                InsertOutcome::AlreadyPresent { .. } | InsertOutcome::KeptExisting { .. } | InsertOutcome::Refused { .. } => self.discard(&s.record.blob),
            }
            reports.push(IngestReport { record: s.record, outcome, warnings: s.warnings });
        }
        Ok(reports)
    }

    /// Ingests one object durably: [`stage`](Archive::stage) then [`commit`](Archive::commit).
    pub fn ingest(&self, source: &mut dyn Read) -> Result<IngestReport> {
        let staged = self.stage(source)?;
        let mut reports = self.commit(vec![staged])?;
        reports.pop().ok_or_else(|| Error::Corrupt { what: "commit returned no report".into() })
    }

    /// Runs a query against the index.
    pub fn query(&self, query: &Query) -> Result<Vec<QueryRow>> {
        self.index.find(query)
    }

    /// The records of every instance in `scope`.
    pub fn instances(&self, scope: &Scope) -> Result<Vec<InstanceRecord>> {
        self.index.instances(scope)
    }

    /// Streams the stored bytes of an instance, exactly as received.
    pub fn read(&self, record: &InstanceRecord) -> Result<Box<dyn Read + Send>> {
        self.blobs.open(&record.blob)
    }

    /// The path of the file that holds the stored bytes of `record`, when the blob store keeps
    /// each object as a file (see [`BlobStore::local_path`]); to be read only.
    pub fn local_path(&self, record: &InstanceRecord) -> Option<std::path::PathBuf> {
        self.blobs.local_path(&record.blob)
    }

    /// The record and a stream of the stored bytes of one instance.
    pub fn retrieve(&self, sop_instance_uid: &Uid) -> Result<(InstanceRecord, Box<dyn Read + Send>)> {
        let record = self.index.instance(sop_instance_uid)?.ok_or_else(|| Error::NotFound { what: format!("instance {sop_instance_uid}") })?;
        let reader = self.blobs.open(&record.blob)?;
        Ok((record, reader))
    }

    /// The bytes of frame `number` (1-based) of an instance, read without the rest of the object.
    pub fn read_frame(&self, record: &InstanceRecord, number: u32) -> Result<Bytes> {
        let ranges = record.frame_ranges().ok_or_else(|| Error::NotFound { what: format!("frame offsets of {}", record.sop_instance_uid) })?;
        let pieces = number
            .checked_sub(1)
            .and_then(|i| ranges.get(i as usize))
            .ok_or_else(|| Error::NotFound { what: format!("frame {number} of {} ({} frames)", record.sop_instance_uid, ranges.len()) })?;
        if let [(offset, length)] = pieces.as_slice() {
            return self.blobs.read_range(&record.blob, *offset..offset + length);
        }
        let mut out = Vec::new();
        for (offset, length) in pieces {
            out.extend_from_slice(&self.blobs.read_range(&record.blob, *offset..offset + length)?);
        }
        Ok(Bytes::from(out))
    }

    /// Deletes every instance in `scope`: the index rows first (durably), then the blobs, so that
    /// a crash in between leaves orphans, never rows without bytes. Returns the removed records.
    pub fn delete(&self, scope: &Scope) -> Result<Vec<InstanceRecord>> {
        let removed = self.index.remove(scope)?;
        for r in &removed {
            self.discard(&r.blob);
        }
        Ok(removed)
    }

    /// Counts.
    pub fn stats(&self) -> Result<Stats> {
        self.index.stats()
    }

    /// Checks that every index row has its blob (of the right size, and checksum if asked) and
    /// that every blob has its row; re-indexes orphans when asked to repair.
    pub fn verify(&self, options: VerifyOptions, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport> {
        let mut blobs: HashMap<BlobKey, u64> = HashMap::new();
        self.blobs.list(&mut |key, size| {
            blobs.insert(key, size);
        })?;
        let mut report = VerifyReport::default();
        self.index.for_each(&mut |record| {
            report.checked += 1;
            progress(report.checked);
            match blobs.remove(&record.blob) {
                None => report.missing.push((record.sop_instance_uid, record.blob)),
                Some(size) if size != record.size => {
                    let what = format!("size {size} bytes, index says {}", record.size);
                    report.corrupt.push((record.sop_instance_uid, record.blob, what));
                }
                Some(_) if options.checksums => {
                    let actual = self
                        .blobs
                        .open(&record.blob)
                        .and_then(|mut r| sha256_hex(&mut r).map_err(|source| Error::Io { action: "reading blob", target: record.blob.to_string(), source }))?;
                    if actual != record.checksum {
                        let what = format!("SHA-256 {actual}, index says {}", record.checksum);
                        report.corrupt.push((record.sop_instance_uid, record.blob, what));
                    }
                }
                Some(_) => {}
            }
            Ok(())
        })?;
        let mut orphans: Vec<BlobKey> = blobs.into_keys().collect();
        orphans.sort();
        report.orphans = orphans.clone();
        if options.repair {
            for key in orphans {
                match self.reindex(&key) {
                    Ok(Some(uid)) => report.reindexed.push(uid),
                    Ok(None) => {
                        self.discard(&key);
                        report.removed.push(key);
                    }
                    Err(e) => report.unrepairable.push((key, e.to_string())),
                }
            }
        }
        Ok(report)
    }

    /// Indexes an orphan blob in place. `Ok(None)` when the same instance is already indexed.
    fn reindex(&self, key: &BlobKey) -> Result<Option<Uid>> {
        let mut reader = self.blobs.open(key)?;
        let mut counted = Tee { source: &mut reader, blob: None, hash: Sha256::new(), size: 0, failed: None };
        let scanned = scan::scan(&mut BufReader::with_capacity(READ_BUFFER, &mut counted), &extract::wanted, self.config.scan_limits).map_err(scan_error)?;
        let stored = Stored { blob: key.clone(), size: counted.size, checksum: hex(&counted.hash.finalize()) };
        let (record, _) = extract::extract(&scanned, stored).map_err(Error::Rejected)?;
        let uid = record.sop_instance_uid.clone();
        // An orphan never replaces what the index holds.
        match self.index.insert(&[record], DuplicatePolicy::KeepExisting)?.pop() {
            Some(InsertOutcome::Inserted) => Ok(Some(uid)),
            _ => Ok(None),
        }
    }
}
