//! Domain types of the PACS engine: identifiers, the indexed attributes, the streaming header
//! scanner and attribute extraction, the query model and its matching rules, and the traits that
//! the storage backends implement.
//!
//! This crate does no I/O of its own. [`scan::scan`] reads an object from any [`std::io::Read`]
//! that its caller supplies (a file, a DIMSE association, an HTTP body), and the [`Index`] and
//! [`BlobStore`] traits are implemented by `pacs-store`. Everything here can therefore be tested
//! with plain values and reused by any embedding program.

pub mod attribute;
pub mod blob;
pub mod charset;
pub mod error;
pub mod extract;
pub mod index;
pub mod matching;
pub mod model;
pub mod query;
pub mod scan;
pub mod uid;

pub use attribute::{Attribute, ValueKind};
pub use blob::{BlobKey, BlobStore, BlobWrite};
pub use error::{Error, Result};
pub use extract::Rejection;
pub use index::{DuplicatePolicy, Index, InsertOutcome, Scope, Stats};
pub use model::{InstanceRecord, Original};
pub use query::{Key, MatchOptions, Matcher, Query, QueryLevel, QueryRow};
pub use uid::{AeTitle, Uid};
