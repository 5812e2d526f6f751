//! The index contract: the database of instance records that queries run against.

use crate::blob::BlobKey;
use crate::error::Result;
use crate::model::InstanceRecord;
use crate::query::{Query, QueryRow};
use crate::uid::Uid;

/// What to do when an instance arrives whose SOP Instance UID is already stored with different
/// bytes (an identical object is always an idempotent success).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DuplicatePolicy {
    /// Keep the stored instance and discard the new one (the default; reported as such).
    #[default]
    KeepExisting,
    /// Replace the stored instance with the new one.
    Replace,
    /// Refuse the new instance with an error status.
    Reject,
}

/// The outcome of inserting one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new instance was recorded.
    Inserted,
    /// The same bytes (same checksum) were already stored: nothing changed.
    AlreadyPresent {
        /// The blob holding the stored copy; the new blob is redundant.
        existing: BlobKey,
    },
    /// Different bytes were stored under this SOP Instance UID and were kept.
    KeptExisting {
        /// The blob holding the stored copy.
        existing: BlobKey,
    },
    /// Different bytes were stored and were replaced; the old blob is no longer referenced.
    Replaced {
        /// The blob that held the replaced copy.
        old: BlobKey,
    },
    /// Different bytes were stored and the policy refused the new instance.
    Refused {
        /// The blob holding the stored copy.
        existing: BlobKey,
    },
}

/// What a removal or a listing applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every instance of a patient, by Patient ID and Issuer of Patient ID (empty if none).
    Patient {
        /// Patient ID.
        id: String,
        /// Issuer of Patient ID.
        issuer: String,
    },
    /// Every instance of a study.
    Study(Uid),
    /// Every instance of a series.
    Series(Uid),
    /// One instance.
    Instance(Uid),
}

/// Counts over the whole index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Number of patients.
    pub patients: u64,
    /// Number of studies.
    pub studies: u64,
    /// Number of series.
    pub series: u64,
    /// Number of instances.
    pub instances: u64,
    /// Sum of the stored object sizes in bytes.
    pub bytes: u64,
}

/// The index of stored instances.
///
/// # Contract
/// - `insert` applies a batch in one transaction: when it returns `Ok`, every outcome is durable;
///   on `Err`, nothing of the batch is recorded. Records are applied in order, so a batch may
///   hold the same SOP Instance UID twice.
/// - Patient, study and series records are created with their first instance and removed with
///   their last; their attributes are those of the first instance received. A patient is its
///   (Patient ID, Issuer of Patient ID); a study keeps the patient it was created under; studies
///   without a Patient ID each get a patient of their own rather than being merged.
/// - `find` applies the matching rules of [`crate::matching`] exactly: for any query and set of
///   records, it returns the records the reference matcher accepts, ordered by the natural key of
///   the level (Patient ID, Study Instance UID, ...), then `offset` and `limit` are applied.
/// - `remove` returns the records it removed, so that the caller can delete their blobs after
///   the removal is durable.
pub trait Index: Send + Sync {
    /// Inserts records in one transaction, following `policy` for conflicting duplicates.
    fn insert(&self, records: &[InstanceRecord], policy: DuplicatePolicy) -> Result<Vec<InsertOutcome>>;
    /// Runs a query.
    fn find(&self, query: &Query) -> Result<Vec<QueryRow>>;
    /// The full record of one instance.
    fn instance(&self, sop_instance_uid: &Uid) -> Result<Option<InstanceRecord>>;
    /// The full records of every instance in `scope`, ordered by series then instance number.
    fn instances(&self, scope: &Scope) -> Result<Vec<InstanceRecord>>;
    /// Removes every instance in `scope` (and the patient, study and series left empty).
    fn remove(&self, scope: &Scope) -> Result<Vec<InstanceRecord>>;
    /// Counts.
    fn stats(&self) -> Result<Stats>;
    /// Calls `f` with every instance record, in no particular order, without loading them all.
    fn for_each(&self, f: &mut dyn FnMut(InstanceRecord) -> Result<()>) -> Result<()>;
    /// A human description, e.g. `SQLite index /data/index.sqlite`.
    fn describe(&self) -> String;
}
