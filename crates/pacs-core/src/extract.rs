//! Attribute extraction: from a scanned object to an [`InstanceRecord`], or a [`Rejection`].

use crate::attribute::{Attribute, ValueKind};
use crate::blob::BlobKey;
use crate::charset::{SpecificCharacterSet, TextKind};
use crate::model::InstanceRecord;
use crate::query::{QueryRow, normalize_date, normalize_datetime, normalize_person_name, normalize_time};
use crate::scan::{PixelLayout, RawElement, ScannedObject, Tag};
use crate::uid::Uid;

const SPECIFIC_CHARACTER_SET: Tag = (0x0008, 0x0005);
const SAMPLES_PER_PIXEL: Tag = (0x0028, 0x0002);
const BITS_ALLOCATED: Tag = (0x0028, 0x0100);

/// Why an object was refused. Nothing of a refused object is stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The bytes are not a DICOM Part 10 object.
    #[error("not a DICOM file: {0}")]
    NotDicom(String),
    /// The object ends early.
    #[error("truncated at byte {offset}: {what}")]
    Truncated {
        /// Where the data ran out.
        offset: u64,
        /// What was being read.
        what: String,
    },
    /// The object's structure is broken.
    #[error("malformed at byte {offset}: {what}")]
    Malformed {
        /// Where the problem was found.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A required attribute is missing or empty.
    #[error("missing required attribute {keyword} ({group:04X},{element:04X})")]
    MissingAttribute {
        /// The attribute keyword.
        keyword: &'static str,
        /// Its group.
        group: u16,
        /// Its element.
        element: u16,
    },
    /// A required attribute has an invalid value.
    #[error("invalid {keyword}: {reason}")]
    InvalidAttribute {
        /// The attribute keyword.
        keyword: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

/// Whether the scanner should keep a top-level element for extraction.
pub fn wanted(tag: Tag) -> bool {
    tag == SPECIFIC_CHARACTER_SET
        || tag == SAMPLES_PER_PIXEL
        || tag == BITS_ALLOCATED
        || Attribute::ALL.iter().any(|a| a.tag() == tag && !a.is_derived() && a.tag().0 != 0x0002)
}

/// Where and how the bytes of an instance were stored.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The blob key.
    pub blob: BlobKey,
    /// The size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hexadecimal.
    pub checksum: String,
}

/// Builds the instance record of a scanned object: decodes text with the object's Specific
/// Character Set, normalises values for matching and checks the required UIDs.
///
/// Values that cannot be normalised (an impossible date, say) are left out of the index and
/// reported in the returned warnings; the stored bytes keep them as received.
pub fn extract(scanned: &ScannedObject, stored: Stored) -> Result<(InstanceRecord, Vec<String>), Rejection> {
    let mut warnings = Vec::new();
    let charset = scanned.elements.get(&SPECIFIC_CHARACTER_SET).map(|e| SpecificCharacterSet::from_raw(&e.bytes)).unwrap_or_default();
    if !charset.unknown_terms().is_empty() {
        warnings.push(format!("unknown Specific Character Set terms {:?}, decoded as Latin-1", charset.unknown_terms()));
    }
    let mut attributes = QueryRow::new();
    for &attribute in Attribute::ALL {
        if attribute.is_derived() || attribute == Attribute::TransferSyntaxUid {
            continue;
        }
        let Some(element) = scanned.elements.get(&attribute.tag()) else { continue };
        match value_of(attribute, element, &charset, scanned.big_endian) {
            Ok(Some(value)) => {
                attributes.insert(attribute, value);
            }
            Ok(None) => {}
            Err(reason) => warnings.push(format!("{} not indexed: {reason}", attribute.keyword())),
        }
    }
    let ts = scanned.transfer_syntax.as_str();
    let transfer_syntax_uid = Uid::new(ts).map_err(|e| Rejection::InvalidAttribute { keyword: "TransferSyntaxUID", reason: e.to_string() })?;
    attributes.insert(Attribute::TransferSyntaxUid, transfer_syntax_uid.to_string());
    let uid = |attribute: Attribute| -> Result<Uid, Rejection> {
        let (group, element) = attribute.tag();
        let raw = attributes.get(&attribute).ok_or(Rejection::MissingAttribute { keyword: attribute.keyword(), group, element })?;
        Uid::new(raw).map_err(|e| Rejection::InvalidAttribute { keyword: attribute.keyword(), reason: e.to_string() })
    };
    let sop_instance_uid = uid(Attribute::SopInstanceUid)?;
    let sop_class_uid = uid(Attribute::SopClassUid)?;
    let study_instance_uid = uid(Attribute::StudyInstanceUid)?;
    let series_instance_uid = uid(Attribute::SeriesInstanceUid)?;
    if !scanned.media_sop_instance.is_empty() && scanned.media_sop_instance != sop_instance_uid.as_str() {
        warnings.push(format!("MediaStorageSOPInstanceUID {} differs from SOPInstanceUID {}", scanned.media_sop_instance, sop_instance_uid));
    }
    let number = |tag: Tag| scanned.elements.get(&tag).and_then(|e| binary_u16(e, scanned.big_endian)).map(u64::from);
    let frame_size = match scanned.pixel {
        PixelLayout::Native { .. } => {
            let rows = attributes.get(&Attribute::Rows).and_then(|v| v.parse::<u64>().ok());
            let columns = attributes.get(&Attribute::Columns).and_then(|v| v.parse::<u64>().ok());
            let samples = number(SAMPLES_PER_PIXEL).unwrap_or(1);
            let bits = number(BITS_ALLOCATED);
            match (rows, columns, bits) {
                (Some(r), Some(c), Some(b)) if b % 8 == 0 => Some(r * c * samples * (b / 8)),
                _ => None,
            }
        }
        _ => None,
    };
    let record = InstanceRecord {
        sop_instance_uid,
        sop_class_uid,
        series_instance_uid,
        study_instance_uid,
        transfer_syntax_uid,
        attributes,
        pixel: scanned.pixel.clone(),
        frame_size,
        size: stored.size,
        checksum: stored.checksum,
        blob: stored.blob,
        original: None,
    };
    Ok((record, warnings))
}

fn binary_u16(element: &RawElement, big_endian: bool) -> Option<u16> {
    let b: [u8; 2] = element.bytes.get(..2)?.try_into().ok()?;
    Some(if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
}

/// The normalised index value of one element, `None` when empty.
fn value_of(attribute: Attribute, element: &RawElement, charset: &SpecificCharacterSet, big_endian: bool) -> Result<Option<String>, String> {
    let binary = match element.vr {
        Some(vr) => &vr == b"US" || &vr == b"SS",
        // Implicit VR: the attributes of VR US in the table.
        None => matches!(attribute, Attribute::Rows | Attribute::Columns),
    };
    if binary {
        return binary_u16(element, big_endian).map(|v| Some(v.to_string())).ok_or_else(|| "binary value shorter than 2 bytes".to_owned());
    }
    let kind = match attribute.kind() {
        ValueKind::PersonName => TextKind::PersonName,
        _ => TextKind::Text,
    };
    let text = charset.decode(&element.bytes, kind);
    let values: Vec<&str> = text.split('\\').map(|v| v.trim_matches([' ', '\0'])).collect();
    if values.iter().all(|v| v.is_empty()) {
        return Ok(None);
    }
    let normalised: Result<Vec<String>, String> = values.iter().map(|v| normalize_value(attribute.kind(), v)).collect();
    Ok(Some(normalised?.join("\\")))
}

/// Normalises one decoded value (trimmed of padding) of `kind` as the index keeps it and the
/// matching rules compare it: dates `YYYYMMDD`, times `HHMMSS.FFFFFF`, integers in plain decimal,
/// person names without insignificant trailing separators, other text as it is. The error says
/// what is invalid.
pub fn normalize_value(kind: ValueKind, value: &str) -> Result<String, String> {
    match kind {
        ValueKind::Date => normalize_date(value).ok_or_else(|| format!("invalid date {value:?}")),
        ValueKind::Time => normalize_time(value, '0').ok_or_else(|| format!("invalid time {value:?}")),
        ValueKind::DateTime => normalize_datetime(value, '0').ok_or_else(|| format!("invalid date and time {value:?}")),
        ValueKind::Integer => value.trim().parse::<i64>().map(|n| n.to_string()).map_err(|_| format!("invalid integer {value:?}")),
        ValueKind::PersonName => Ok(normalize_person_name(value)),
        ValueKind::Text | ValueKind::Uid => Ok(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::tests::Builder;
    use crate::scan::{EXPLICIT_VR_LE, IMPLICIT_VR_LE, ScanLimits, scan};

    fn stored() -> Stored {
        Stored { blob: BlobKey::for_id(1), size: 0, checksum: String::new() }
    }

    fn object(ts: &str, extra: &[(Tag, &[u8; 2], &[u8])]) -> Vec<u8> {
        let mut b = Builder::new(ts);
        let mut elements: Vec<(Tag, &[u8; 2], &[u8])> = vec![
            ((0x0008, 0x0016), b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
            ((0x0008, 0x0018), b"UI", b"1.2.3.4"),
            ((0x0020, 0x000D), b"UI", b"1.2.3"),
            ((0x0020, 0x000E), b"UI", b"1.2.3.1\0"),
        ];
        elements.extend_from_slice(extra);
        elements.sort_by_key(|e| e.0);
        for (tag, vr, value) in elements {
            b.element(tag, vr, value);
        }
        b.bytes
    }

    fn record(bytes: &[u8]) -> Result<(InstanceRecord, Vec<String>), Rejection> {
        let scanned = scan(&mut &bytes[..], &wanted, ScanLimits::default()).map_err(|e| match e {
            crate::scan::ScanError::Rejected(r) => r,
            other => panic!("{other}"),
        })?;
        extract(&scanned, stored())
    }

    #[test]
    fn values_are_decoded_and_normalised() {
        let bytes = object(
            EXPLICIT_VR_LE,
            &[
                ((0x0008, 0x0005), b"CS", b"ISO_IR 100"),
                ((0x0008, 0x0020), b"DA", b"2024.01.31"),
                ((0x0008, 0x0030), b"TM", b"1030"),
                ((0x0010, 0x0010), b"PN", b"Buc^J\xe9r\xf4me"),
                ((0x0020, 0x0013), b"IS", b" 0012 "),
                ((0x0028, 0x0010), b"US", &[0, 2]),
                ((0x0008, 0x0021), b"DA", b"20241399"),
            ],
        );
        let (r, warnings) = record(&bytes).expect("accepted");
        assert_eq!(r.sop_instance_uid.as_str(), "1.2.3.4");
        assert_eq!(r.series_instance_uid.as_str(), "1.2.3.1");
        assert_eq!(r.get(Attribute::StudyDate), Some("20240131"));
        assert_eq!(r.get(Attribute::StudyTime), Some("103000.000000"));
        assert_eq!(r.get(Attribute::PatientName), Some("Buc^Jérôme"));
        assert_eq!(r.get(Attribute::InstanceNumber), Some("12"));
        assert_eq!(r.get(Attribute::Rows), Some("512"));
        assert_eq!(r.get(Attribute::TransferSyntaxUid), Some(EXPLICIT_VR_LE));
        assert_eq!(r.get(Attribute::SeriesDate), None);
        assert!(warnings.iter().any(|w| w.contains("SeriesDate")), "{warnings:?}");
    }

    #[test]
    fn implicit_vr_binary_values() {
        let bytes = object(IMPLICIT_VR_LE, &[((0x0028, 0x0011), b"US", &[0, 1])]);
        let (r, _) = record(&bytes).expect("accepted");
        assert_eq!(r.get(Attribute::Columns), Some("256"));
    }

    #[test]
    fn missing_or_invalid_uids_are_rejected() {
        let mut b = Builder::new(EXPLICIT_VR_LE);
        b.element((0x0008, 0x0016), b"UI", b"1.2\0").element((0x0008, 0x0018), b"UI", b"1.2.3.4");
        let err = record(&b.bytes).expect_err("no study uid");
        assert_eq!(err.to_string(), "missing required attribute StudyInstanceUID (0020,000D)");
        let bytes = object(EXPLICIT_VR_LE, &[((0x0008, 0x0018), b"UI", b"1.2.x.4\0")]);
        // The duplicate tag replaces the valid one: the last value wins in the scan.
        let err = record(&bytes).expect_err("bad uid");
        assert!(err.to_string().starts_with("invalid SOPInstanceUID"), "{err}");
    }
}
