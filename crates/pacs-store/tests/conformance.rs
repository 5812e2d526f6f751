//! Runs the shared conformance suites of `pacs_store::conformance` against every backend of this
//! crate: the [`SqliteIndex`] on a real SQLite file, and the [`ObjectBlobStore`] on a local
//! folder and in memory. Each test gets a fresh, empty backend.

use pacs_core::{BlobStore, Index};
use pacs_store::conformance;
use pacs_store::{ObjectBlobStore, SqliteIndex};

/// Runs an index suite on a new SQLite index file in a temporary folder.
fn on_sqlite(suite: fn(&dyn Index)) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let index = SqliteIndex::open(&dir.path().join("index.sqlite")).unwrap_or_else(|e| panic!("opening the SQLite index: {e}"));
    suite(&index);
}

/// Runs a blob suite on a local folder store (in a temporary folder).
fn on_local(suite: fn(&dyn BlobStore)) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = ObjectBlobStore::local(&dir.path().join("blobs")).unwrap_or_else(|e| panic!("opening the local store: {e}"));
    suite(&store);
}

/// Runs a blob suite on an in-memory store.
fn on_memory(suite: fn(&dyn BlobStore)) {
    let store = ObjectBlobStore::in_memory().unwrap_or_else(|e| panic!("opening the memory store: {e}"));
    suite(&store);
}

macro_rules! suites {
    ($runner:ident: $($suite:ident),* $(,)?) => {
        $(
            #[test]
            fn $suite() {
                $runner(conformance::$suite);
            }
        )*
    };
}

mod sqlite_index {
    use super::*;

    suites!(on_sqlite:
        index_insert_and_find,
        index_parent_attributes_from_first_instance,
        index_idempotent_reinsert,
        index_duplicate_policies,
        index_batch_with_duplicates,
        index_instance_lookup,
        index_instances_by_scope,
        index_remove,
        index_stats,
        index_for_each,
        index_paging,
        index_record_round_trip,
    );

    /// Every suite listed in `INDEX_SUITES` has a test above.
    #[test]
    fn every_suite_is_run() {
        assert_eq!(conformance::INDEX_SUITES.len(), 12, "a suite was added to INDEX_SUITES: add its test here");
    }
}

mod local_blobs {
    use super::*;

    suites!(on_local: blob_write_read, blob_large_object, blob_abort_and_drop, blob_delete, blob_list);

    /// A local folder keeps its objects: a store reopened over the same folder sees them.
    #[test]
    fn blob_sync() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().join("blobs");
        let open = || -> Box<dyn BlobStore> { Box::new(ObjectBlobStore::local(&root).unwrap_or_else(|e| panic!("opening the local store: {e}"))) };
        let store = open();
        conformance::blob_sync(store.as_ref(), Some(&open));
    }

    #[test]
    fn every_suite_is_run() {
        assert_eq!(conformance::BLOB_SUITES.len(), 5, "a suite was added to BLOB_SUITES: add its test here and in memory_blobs");
    }
}

mod memory_blobs {
    use super::*;

    suites!(on_memory: blob_write_read, blob_large_object, blob_abort_and_drop, blob_delete, blob_list);

    /// Memory keeps nothing beyond the store and its sync is a no-op: no reopen check.
    #[test]
    fn blob_sync() {
        let store = ObjectBlobStore::in_memory().unwrap_or_else(|e| panic!("opening the memory store: {e}"));
        conformance::blob_sync(&store, None);
    }
}
