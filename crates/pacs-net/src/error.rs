//! The error type of the network crate.

/// Errors of the DIMSE and DICOMweb faces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DIMSE command set or message is malformed; the reason names the element.
    #[error("malformed DIMSE message: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The association failed (negotiation, PDU exchange, abort by the peer).
    #[error("association with {peer}: {source}")]
    Association {
        /// The peer (AE title and address when known).
        peer: String,
        /// The cause (boxed: dicom-ul's error is large).
        #[source]
        source: Box<dicom_ul::association::Error>,
    },
    /// A socket operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The archive refused or failed.
    #[error(transparent)]
    Archive(#[from] pacs_core::Error),
}

/// The result type of the network crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
