//! DIMSE: the DICOM message service over dicom-ul associations.
//!
//! - [`command`]: command sets (always Implicit VR Little Endian) and statuses.
//! - [`meta`]: the File Meta Information put in front of a received data set.
//! - [`server`]: the SCP, one tokio task per association.

pub mod command;
pub mod meta;
pub mod server;

pub use server::{DimseServer, Event, ServerConfig};
