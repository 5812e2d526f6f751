//! What this build reads and writes: the transfer syntax registry of dicom-rs (with the codec
//! features compiled in) plus our own decoders (RLE Lossless; with the `codecs` feature JPEG,
//! JPEG-LS and JPEG 2000) and encoders (RLE Lossless, JPEG Lossless; with `codecs` JPEG Baseline
//! and Extended, JPEG 2000, colour JPEG-LS).

use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Implicit VR Little Endian.
pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Deflated Explicit VR Little Endian.
pub const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";
/// Explicit VR Big Endian (retired): read, never written.
pub const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
/// RLE Lossless.
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// JPEG Baseline (Process 1), lossy.
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
/// JPEG Extended (Process 2 & 4), lossy.
pub const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
/// JPEG Lossless, Non-Hierarchical (Process 14).
pub const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.57";
/// JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, Selection Value 1).
pub const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
/// JPEG-LS Lossless.
pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
/// JPEG-LS Lossy (Near-Lossless).
pub const JPEG_LS_NEAR_LOSSLESS: &str = "1.2.840.10008.1.2.4.81";
/// JPEG 2000 (Lossless Only).
pub const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
/// JPEG 2000 (lossless or lossy).
pub const JPEG_2000: &str = "1.2.840.10008.1.2.4.91";

/// The transfer syntaxes whose encoding loses information (PS3.5 8.2): converting into one of
/// them makes a new SOP instance (PS3.3 C.7.6.1.1.5). JPEG-LS near-lossless and JPEG 2000 count
/// as lossy because they may be, and we cannot know.
const LOSSY: &[&str] = &[
    JPEG_BASELINE,
    JPEG_EXTENDED,
    "1.2.840.10008.1.2.4.53",
    "1.2.840.10008.1.2.4.55",
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000,
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.4.112",
];

/// Whether converting into `uid` may lose information.
pub fn is_lossy(uid: &str) -> bool {
    LOSSY.contains(&uid)
}

/// Whether objects in transfer syntax `uid` can be read, pixel data included.
pub fn can_read(uid: &str) -> bool {
    crate::decode::Decoder::for_syntax(uid).is_some()
        || TransferSyntaxRegistry.get(uid).is_some_and(|ts| ts.can_decode_all() && (!ts.is_encapsulated_pixel_data() || has_decoder(ts.codec())))
}

/// Whether objects can be written in transfer syntax `uid`.
pub fn can_write(uid: &str) -> bool {
    // Our own encoders in pure Rust (`rle.rs`, `jpeg_lossless.rs`, selection value 1 for both
    // JPEG Lossless syntaxes).
    if uid == RLE_LOSSLESS || uid == JPEG_LOSSLESS || uid == JPEG_LOSSLESS_SV1 {
        return true;
    }
    // Our own encoders on the codecs' native libraries: OpenJPEG (`j2k.rs`), libjpeg-turbo
    // (`jpeg.rs`).
    if cfg!(feature = "codecs") && (uid == JPEG_2000_LOSSLESS || uid == JPEG_2000 || uid == JPEG_BASELINE || uid == JPEG_EXTENDED) {
        return true;
    }
    if uid == EXPLICIT_VR_BIG_ENDIAN {
        return false;
    }
    let Some(ts) = TransferSyntaxRegistry.get(uid) else { return false };
    match ts.codec() {
        Codec::None => true,
        Codec::Dataset(adapter) => adapter.is_some(),
        Codec::EncapsulatedPixelData(_, writer) => writer.is_some(),
    }
}

/// Whether an object in transfer syntax `from` can be converted to `to`: the same syntax always
/// can; otherwise we must read `from` and write `to`.
pub fn can_transcode(from: &str, to: &str) -> bool {
    from == to || (can_read(from) && can_write(to))
}

fn has_decoder<D, R, W>(codec: &Codec<D, R, W>) -> bool {
    matches!(codec, Codec::EncapsulatedPixelData(Some(_), _))
}

/// The name of a transfer syntax, or its UID when it is not known.
pub fn name(uid: &str) -> String {
    TransferSyntaxRegistry.get(uid).map(|ts| ts.name().to_owned()).unwrap_or_else(|| uid.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncompressed_syntaxes_convert_into_each_other() {
        for from in [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN] {
            assert!(can_read(from), "{from}");
            assert!(can_transcode(from, IMPLICIT_VR_LITTLE_ENDIAN));
            assert!(can_transcode(from, EXPLICIT_VR_LITTLE_ENDIAN));
        }
        assert!(!can_write(EXPLICIT_VR_BIG_ENDIAN));
        assert!(!can_transcode("1.2.3.4", EXPLICIT_VR_LITTLE_ENDIAN));
        assert!(can_transcode("1.2.3.4", "1.2.3.4"));
        assert!(!can_write("1.2.3.4"));
    }

    #[cfg(feature = "codecs")]
    #[test]
    fn the_codecs_read_and_write_what_the_readme_says() {
        // Every syntax we convert is both read and written.
        for uid in [
            DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
            RLE_LOSSLESS,
            JPEG_BASELINE,
            JPEG_EXTENDED,
            JPEG_LOSSLESS,
            JPEG_LOSSLESS_SV1,
            JPEG_LS_LOSSLESS,
            JPEG_LS_NEAR_LOSSLESS,
            JPEG_2000_LOSSLESS,
            JPEG_2000,
        ] {
            assert!(can_read(uid), "read {uid}");
            assert!(can_write(uid), "write {uid}");
        }
        // Retired JPEG processes and JPEG-XL are not written.
        for uid in ["1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55", "1.2.840.10008.1.2.4.110"] {
            assert!(!can_write(uid), "write {uid}");
        }
    }

    #[cfg(not(feature = "codecs"))]
    #[test]
    fn without_codecs_only_the_uncompressed_syntaxes_and_rle_are_read() {
        assert!(can_read(RLE_LOSSLESS));
        assert!(!can_write(JPEG_2000_LOSSLESS));
        assert!(!can_read(JPEG_LS_LOSSLESS));
        assert!(!can_read(JPEG_2000_LOSSLESS));
    }
}
