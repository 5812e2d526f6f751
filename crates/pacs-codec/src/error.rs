//! The error type of the codec crate.

/// Errors of transcoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a readable DICOM Part 10 object (no File Meta Information, a truncated or
    /// malformed data set).
    #[error("not a readable DICOM object: {reason}")]
    Invalid {
        /// What could not be read.
        reason: String,
    },
    /// A transfer syntax UID that is not known.
    #[error("unknown transfer syntax {uid}")]
    UnknownTransferSyntax {
        /// The UID.
        uid: String,
    },
    /// The conversion is not supported (a syntax we cannot read or write, or pixel data the
    /// target syntax cannot hold); nothing was written.
    #[error("cannot transcode from {from} to {to}: {reason}")]
    Unsupported {
        /// The source transfer syntax UID.
        from: String,
        /// The target transfer syntax UID.
        to: String,
        /// Why not.
        reason: String,
    },
    /// The pixel data could not be decoded or encoded (corrupt compressed data, attributes that
    /// contradict the pixel data); nothing was written.
    #[error("pixel data of {sop_instance_uid} ({from} to {to}): {reason}")]
    PixelData {
        /// The SOP Instance UID of the object.
        sop_instance_uid: String,
        /// The source transfer syntax UID.
        from: String,
        /// The target transfer syntax UID.
        to: String,
        /// What failed.
        reason: String,
    },
    /// One of our own codecs could not encode or decode one frame (corrupt or truncated
    /// compressed data, a stream that contradicts the image pixel attributes, samples the codec
    /// cannot hold). Conversions and renderings report it as [`Error::PixelData`], with the object
    /// it came from.
    #[error("{codec}: {reason}")]
    Codec {
        /// The codec: `JPEG`, `JPEG-LS`, `JPEG 2000`, `RLE`.
        codec: &'static str,
        /// What failed.
        reason: String,
    },
    /// The temporary file that holds the encoded frames of a streamed lossy conversion until its
    /// header can be written could not be created, written or read back; nothing was written.
    #[error("temporary file of the encoded frames: {action}: {source}")]
    TempFile {
        /// What was done: `creating`, `writing`, `reading`.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the transcoded object failed.
    #[error("writing the transcoded object: {source}")]
    Write {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The result type of the codec crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
