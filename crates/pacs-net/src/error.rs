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
    /// A request that cannot be made as given (a malformed node address, an invalid option).
    #[error("{reason}")]
    Usage {
        /// What is wrong.
        reason: String,
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
    /// An HTTP request is malformed (a bad parameter, multipart body or path); the reason names
    /// the parameter or part.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong, naming the parameter.
        reason: String,
    },
    /// None of the media types an HTTP request accepts can be produced.
    #[error("not acceptable: {reason}")]
    NotAcceptable {
        /// What was asked and what is available.
        reason: String,
    },
    /// The media type of an HTTP request body is not one we take.
    #[error("unsupported media type: {reason}")]
    UnsupportedMediaType {
        /// What was sent and what is taken.
        reason: String,
    },
    /// An HTTP request body is larger than the configured limit; nothing of it was stored.
    #[error("request body larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// An HTTP request body stopped arriving for longer than the configured idle time; nothing
    /// of it was stored.
    #[error("request body stalled: no byte for {seconds} s")]
    Stalled {
        /// The idle time allowed, in seconds.
        seconds: u64,
    },
    /// A search would read more stored headers than the configured limit allows; the reason
    /// names the attributes and the limit.
    #[error("query too broad: {reason}")]
    QueryTooBroad {
        /// What would be read, and how to narrow the search.
        reason: String,
    },
    /// The request is valid but asks for something not implemented (yet), e.g. rendering of a
    /// compressed object.
    #[error("not implemented: {reason}")]
    NotImplemented {
        /// What is missing.
        reason: String,
    },
}

/// The result type of the network crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a peer is told of an archive error (a DIMSE or STOW-RS Error Comment): for an I/O error
/// the action and its cause, without the server's paths, which would also take up the 64
/// characters of the comment; other errors as they display.
pub(crate) fn peer_comment(e: &pacs_core::Error) -> String {
    match e {
        pacs_core::Error::Io { action, source, .. } => format!("{action}: {source}"),
        _ => e.to_string(),
    }
}
