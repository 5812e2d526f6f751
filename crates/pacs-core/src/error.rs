//! The error type of the core crate.

/// Errors raised by the domain types, the parser and the traits the other crates implement.
///
/// Variants name what a caller can act on; backends map their own errors to
/// [`Error::Unavailable`] or [`Error::Io`] and keep the cause as `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A UID is not a valid DICOM UID.
    #[error("invalid UID {value:?}: {reason}")]
    InvalidUid {
        /// The offending text.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// An AE title is not valid.
    #[error("invalid AE title {value:?}: {reason}")]
    InvalidAeTitle {
        /// The offending text.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A query is malformed; the reason names the attribute or parameter.
    #[error("invalid query: {reason}")]
    InvalidQuery {
        /// What is wrong, naming the attribute.
        reason: String,
    },
    /// The data is not an acceptable DICOM object; nothing was stored.
    #[error(transparent)]
    Rejected(#[from] crate::Rejection),
    /// A setting is invalid (a compression rule naming a lossy syntax without allowing lossy
    /// compression, an unknown transfer syntax); nothing was started.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong, naming the setting.
        reason: String,
    },
    /// A record or blob that was asked for does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// An instance with this SOP Instance UID exists and the policy refused the new one.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicts with what.
        what: String,
    },
    /// An I/O error while doing `action` on `target`.
    #[error("{action} {target}: {source}")]
    Io {
        /// What was being done, e.g. "writing blob".
        action: &'static str,
        /// What it was done to (a path, a key).
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A backend (index database, object store) failed or is unreachable.
    #[error("{backend} unavailable while {action}: {source}")]
    Unavailable {
        /// The backend, e.g. "SQLite index at /data/index.sqlite".
        backend: String,
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Stored data is inconsistent (a corrupt index, a checksum mismatch).
    #[error("corrupt: {what}")]
    Corrupt {
        /// What is inconsistent.
        what: String,
    },
}

/// The result type of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
