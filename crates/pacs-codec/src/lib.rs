//! Transcoding of DICOM objects between transfer syntaxes.
//!
//! [`transcode`] reads a Part 10 object, decodes its pixel data when the syntaxes differ in
//! encapsulation, re-encodes it and writes the object with its File Meta Information updated.
//! [`can_transcode`] answers before any byte is read, so that DIMSE egress can choose a
//! presentation context. The codecs are our own where we have them, those of dicom-rs
//! (`dicom-pixeldata` and its transfer syntax registry) otherwise. Ours decode frame by frame,
//! the frames of a multi-frame object on every core: RLE Lossless (any bits per sample, both
//! ways), JPEG through libjpeg-turbo (Baseline and Extended, 8 and 12 bits, both ways; Lossless
//! read), JPEG Lossless written by a pure-Rust encoder (Process 14, first-order prediction),
//! JPEG 2000 through OpenJPEG (read, and written as one J2K codestream per frame: reversible 5/3
//! wavelet for lossless, irreversible 9/7 for lossy) and JPEG-LS through CharLS (read, and
//! colour written sample-interleaved). libjpeg-turbo, CharLS and OpenJPEG are native libraries, compiled in
//! with the `codecs` feature (on by default). Without it only the uncompressed syntaxes and RLE
//! Lossless are read and written, and JPEG Lossless (our own encoder) written.
//!
//! A large multi-frame object (over [`STREAM_THRESHOLD`] of decoded pixel data) between syntaxes
//! our own codecs cover is converted frame by frame, in memory bounded by a batch of frames (into
//! a lossy syntax, its fragments wait in a temporary file for the header, which holds their
//! compression ratio); everything else in memory. See [`transcode_with`] for what each path
//! promises when a conversion fails. [`spool::transcode_to_spool`] converts into a
//! [`spool::Spool`], in memory up to a few MiB and in a temporary file beyond, for callers that
//! must have the whole object converted before they send or store any of it.
//!
//! | syntax | read | written |
//! |---|---|---|
//! | Implicit / Explicit VR Little Endian | ✓ | ✓ |
//! | Explicit VR Big Endian (retired) | ✓ | ✗ |
//! | Deflated Explicit VR Little Endian | `codecs` | `codecs` |
//! | RLE Lossless | ✓ (ours) | ✓ (ours) |
//! | JPEG Baseline | `codecs` (ours) | `codecs` (ours; 8 bits allocated) |
//! | JPEG Extended | `codecs` (ours; 8 and 12 bits) | `codecs` (ours; 8 and 12 bits) |
//! | JPEG Lossless (P14, SV1) | `codecs` (ours; 2 to 16 bits) | ✓ (ours; selection value 1, 8 and 16 bits allocated) |
//! | JPEG-LS lossless, near-lossless | `codecs` (ours) | `codecs` (colour: ours, 8 and 16 bits) |
//! | JPEG 2000 lossless, lossy | `codecs` (ours; J2K and JP2) | `codecs` (ours; 8 and 16 bits allocated) |

mod decode;
pub mod error;
mod frame;
#[cfg(feature = "codecs")]
mod j2k;
#[cfg(feature = "codecs")]
mod jpeg;
mod jpeg_lossless;
#[cfg(feature = "codecs")]
mod jpegls;
pub mod render;
pub mod rle;
pub mod spool;
mod stream;
pub mod syntax;
mod transcode;

pub use error::{Error, Result};
pub use stream::STREAM_THRESHOLD;
pub use syntax::{can_read, can_transcode, can_write};
pub use transcode::{Output, TranscodeOptions, TranscodeReport, transcode, transcode_with};
