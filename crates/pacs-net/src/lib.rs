//! The network faces of the PACS engine: DICOM networking (C-ECHO, C-STORE, C-FIND, C-MOVE,
//! C-GET as SCP and SCU) and DICOMweb (STOW-RS, QIDO-RS, WADO-RS, WADO-URI).
//!
//! Both faces call the `Archive` API of `pacs-store` and nothing behind it. This crate is a
//! placeholder until the networking services land; it exists now so that the dependency
//! direction (net → store → core) is fixed from the start.
