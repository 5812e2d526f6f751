//! Storage of the PACS engine: the [`SqliteIndex`] (the embedded default index), the
//! [`ObjectBlobStore`] (original bytes through `object_store`: a local folder by default), and
//! the [`Archive`] that composes an index and a blob store into the API every face calls.
//!
//! Errors are `pacs_core::Error`: backend details (SQLite codes, object store errors) are mapped
//! to its kinds in one place per backend and kept as the `source`.

pub mod archive;
pub mod blob;
pub mod compression;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod sqlite;

pub use archive::{Archive, ArchiveConfig, IngestReport, Staged, VerifyOptions, VerifyReport};
pub use blob::ObjectBlobStore;
pub use compression::{CompressionPolicy, CompressionRule};
pub use sqlite::SqliteIndex;

/// The README's Rust snippets, compiled as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
