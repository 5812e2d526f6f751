//! DIMSE: the DICOM message service over dicom-ul associations.
//!
//! - [`client`]: the SCU side (C-ECHO so far).
//! - [`command`]: command sets (always Implicit VR Little Endian) and statuses.
//! - [`find`]: C-FIND identifiers to queries, and result rows to response identifiers.
//! - [`meta`]: the File Meta Information put in front of a received data set.
//! - [`retrieve`]: the storage sub-operations of C-MOVE.
//! - [`server`]: the SCP, one tokio task per association.

pub mod client;
pub mod command;
pub mod find;
pub mod meta;
pub mod retrieve;
pub mod server;
mod storage;

pub use server::{DimseServer, Event, ServerConfig};
