//! The network faces of the PACS engine: DICOM networking (C-ECHO, C-STORE, C-FIND, C-MOVE,
//! C-GET as SCP and SCU) and DICOMweb (STOW-RS, QIDO-RS, WADO-RS, WADO-URI), in [`web`].
//!
//! Both faces call the `Archive` API of `pacs-store` and nothing behind it. `dicom-ul` provides
//! PDUs and association negotiation; the DIMSE message layer above it (command sets, message
//! assembly, statuses) is ours, in [`dimse`], because dicom-ul has none.

mod blocks;
mod channel;
mod commit;
pub mod dimse;
pub mod error;
pub mod web;

pub use error::{Error, Result};
