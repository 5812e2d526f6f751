//! C-FIND identifiers: from a request's data set to a [`Query`], and from result rows back to
//! response data sets (PS3.4 C.4.1).

use std::io::Read;

use pacs_core::attribute::{Attribute, ValueKind};
use pacs_core::charset::{SpecificCharacterSet, TextKind};
use pacs_core::scan::{IMPLICIT_VR_LE, ScanError, ScanLimits, ScannedObject, scan};
use pacs_core::{MatchOptions, Query, QueryLevel, QueryRow};

use super::meta::part10_header;
use crate::error::{Error, Result};

const SPECIFIC_CHARACTER_SET: (u16, u16) = (0x0008, 0x0005);
const QUERY_RETRIEVE_LEVEL: (u16, u16) = (0x0008, 0x0052);

/// A key of the request, returned in every response (with a value when it is indexed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedKey {
    /// The tag.
    pub tag: (u16, u16),
    /// The VR as sent (explicit VR requests) or from the indexed attribute table.
    pub vr: [u8; 2],
    /// The indexed attribute, if the tag is one.
    pub attribute: Option<Attribute>,
}

/// A parsed C-FIND request identifier.
#[derive(Clone, Debug)]
pub struct FindRequest {
    /// The query to run.
    pub query: Query,
    /// The keys to return, in tag order.
    pub keys: Vec<RequestedKey>,
}

/// The VR of an indexed attribute.
pub fn vr_of(attribute: Attribute) -> [u8; 2] {
    use Attribute::*;
    match attribute {
        PatientName | ReferringPhysicianName => *b"PN",
        PatientBirthDate | StudyDate | SeriesDate => *b"DA",
        StudyTime => *b"TM",
        StudyInstanceUid | SeriesInstanceUid | SopInstanceUid | SopClassUid | TransferSyntaxUid => *b"UI",
        Rows | Columns => *b"US",
        NumberOfFrames | SeriesNumber | InstanceNumber | NumberOfStudyRelatedSeries | NumberOfStudyRelatedInstances | NumberOfSeriesRelatedInstances => *b"IS",
        AccessionNumber | StudyId => *b"SH",
        PatientSex | ModalitiesInStudy | Modality | BodyPartExamined => *b"CS",
        _ => *b"LO",
    }
}

/// Scans an identifier (a data set without File Meta Information, as DIMSE carries it) encoded in
/// `transfer_syntax`, keeping the top-level elements `wanted`.
pub fn scan_identifier(data: &[u8], transfer_syntax: &str, wanted: &dyn Fn((u16, u16)) -> bool) -> Result<ScannedObject, ScanError> {
    let header = part10_header("", "", transfer_syntax, "");
    scan(&mut header.as_slice().chain(data), wanted, ScanLimits::default())
}

/// Parses a C-FIND identifier encoded in `transfer_syntax`.
///
/// Errors (a level missing or unknown, a key below the level, an invalid value) are
/// [`Error::Malformed`] naming the attribute; the caller answers with status 0xA900.
pub fn parse_identifier(data: &[u8], transfer_syntax: &str) -> Result<FindRequest> {
    let malformed = |reason: String| Error::Malformed { reason };
    let scanned = scan_identifier(data, transfer_syntax, &|_| true).map_err(|e| malformed(format!("identifier: {e}")))?;
    let charset = scanned.elements.get(&SPECIFIC_CHARACTER_SET).map(|e| SpecificCharacterSet::from_raw(&e.bytes)).unwrap_or_default();
    let text = |bytes: &[u8], kind: TextKind| charset.decode(bytes, kind).trim_matches([' ', '\0']).to_owned();
    let level = match scanned.elements.get(&QUERY_RETRIEVE_LEVEL) {
        Some(e) => QueryLevel::parse(&text(&e.bytes, TextKind::Text)).map_err(|e| malformed(e.to_string()))?,
        None => return Err(malformed("identifier has no QueryRetrieveLevel (0008,0052)".into())),
    };
    let mut query = Query::new(level);
    query.options = MatchOptions { case_insensitive_pn: false, combine_datetime: true };
    // Only what the identifier asks for is returned: the index computes no other derived value.
    query.requested_derived_only = true;
    let mut keys = Vec::new();
    for (&tag, element) in &scanned.elements {
        if tag == SPECIFIC_CHARACTER_SET || tag == QUERY_RETRIEVE_LEVEL || tag.0 == 0x0002 {
            continue;
        }
        let attribute = Attribute::ALL.iter().copied().find(|a| a.tag() == tag && a.tag().0 != 0x0002);
        let vr = match (element.vr, attribute) {
            (Some(vr), _) => vr,
            (None, Some(a)) => vr_of(a),
            (None, None) => *b"UN",
        };
        keys.push(RequestedKey { tag, vr, attribute });
        let Some(attribute) = attribute else { continue };
        if attribute.level() > level {
            return Err(malformed(format!("{} is below the {level} level of the query", attribute.keyword())));
        }
        let kind = if attribute.kind() == ValueKind::PersonName { TextKind::PersonName } else { TextKind::Text };
        let value = if vr_of(attribute) == *b"US" { String::new() } else { text(&element.bytes, kind) };
        query = query.with(attribute, &value).map_err(|e| malformed(e.to_string()))?;
    }
    Ok(FindRequest { query, keys })
}

/// Appends one element (Little Endian, explicit VR or implicit) to `out`.
pub(crate) fn push(out: &mut Vec<u8>, explicit: bool, tag: (u16, u16), vr: [u8; 2], value: &[u8]) {
    out.extend_from_slice(&tag.0.to_le_bytes());
    out.extend_from_slice(&tag.1.to_le_bytes());
    if explicit {
        out.extend_from_slice(&vr);
        if matches!(&vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV") {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
    } else {
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// The bytes of a string value, padded to even length as its VR requires.
pub(crate) fn padded(value: &str, vr: [u8; 2]) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(if &vr == b"UI" { 0 } else { b' ' });
    }
    bytes
}

/// Encodes one response identifier (Little Endian, explicit VR unless `transfer_syntax` is
/// Implicit VR Little Endian): the Specific Character Set (ISO_IR 192) when a value is not ASCII,
/// the level, and every requested key with its value from `row` (empty when not indexed).
pub fn encode_response(level: QueryLevel, keys: &[RequestedKey], row: &QueryRow, transfer_syntax: &str) -> Vec<u8> {
    let explicit = transfer_syntax != IMPLICIT_VR_LE;
    let mut out = Vec::with_capacity(512);
    let values: Vec<(&RequestedKey, Option<&String>)> = keys.iter().map(|k| (k, k.attribute.and_then(|a| row.get(&a)))).collect();
    if values.iter().any(|(_, v)| v.is_some_and(|v| !v.is_ascii())) {
        push(&mut out, explicit, SPECIFIC_CHARACTER_SET, *b"CS", b"ISO_IR 192");
    }
    push(&mut out, explicit, QUERY_RETRIEVE_LEVEL, *b"CS", &padded(level.as_dicom(), *b"CS"));
    for (key, value) in values {
        let bytes = match (value, key.attribute) {
            (Some(v), Some(a)) if vr_of(a) == *b"US" => v.parse::<u16>().map(|n| n.to_le_bytes().to_vec()).unwrap_or_default(),
            (Some(v), _) => padded(v, key.vr),
            (None, _) => Vec::new(),
        };
        let vr = key.attribute.map_or(key.vr, vr_of);
        push(&mut out, explicit, key.tag, vr, &bytes);
    }
    out
}

/// The identifier of a final C-MOVE or C-GET response that lists the SOP Instances whose
/// sub-operations failed: Failed SOP Instance UID List (0008,0058). A list longer than one
/// element can hold (64 KiB in explicit VR) is cut, and the cut is logged.
pub fn failed_instances_identifier(failed: &[String], transfer_syntax: &str) -> Vec<u8> {
    let mut list = String::new();
    for (i, uid) in failed.iter().enumerate() {
        if list.len() + uid.len() + 1 > 65_000 {
            tracing::warn!(listed = i, failed = failed.len(), "Failed SOP Instance UID List cut to fit one element");
            break;
        }
        if i > 0 {
            list.push('\\');
        }
        list.push_str(uid);
    }
    let mut out = Vec::new();
    push(&mut out, transfer_syntax != IMPLICIT_VR_LE, (0x0008, 0x0058), *b"UI", &padded(&list, *b"UI"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacs_core::Matcher;
    use pacs_core::scan::EXPLICIT_VR_LE;

    /// One element of a hand-made identifier: tag, VR, value.
    type Element<'a> = ((u16, u16), &'a [u8; 2], &'a [u8]);

    fn identifier(elements: &[Element<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, vr, value) in elements {
            push(&mut out, true, *tag, **vr, value);
        }
        out
    }

    #[test]
    fn study_identifier_round_trip() {
        let data = identifier(&[
            ((0x0008, 0x0020), b"DA", b"20240101-20240131"),
            ((0x0008, 0x0052), b"CS", b"STUDY "),
            ((0x0008, 0x0061), b"CS", b""),
            ((0x0010, 0x0010), b"PN", b"DOE^*"),
            ((0x0010, 0x1010), b"AS", b""),
            ((0x0020, 0x000D), b"UI", b""),
        ]);
        let request = parse_identifier(&data, EXPLICIT_VR_LE).expect("parse");
        assert_eq!(request.query.level, QueryLevel::Study);
        assert_eq!(request.query.key(Attribute::PatientName), Some(&Matcher::Wildcard("DOE^*".into())));
        assert_eq!(request.query.key(Attribute::StudyDate), Some(&Matcher::Range { lo: Some("20240101".into()), hi: Some("20240131".into()) }));
        assert_eq!(request.keys.len(), 5);
        let mut row = QueryRow::new();
        row.insert(Attribute::PatientName, "Müller^Jürgen".into());
        row.insert(Attribute::StudyDate, "20240115".into());
        row.insert(Attribute::StudyInstanceUid, "1.2.3".into());
        row.insert(Attribute::ModalitiesInStudy, "CT\\MR".into());
        let response = encode_response(QueryLevel::Study, &request.keys, &row, EXPLICIT_VR_LE);
        let scanned = scan_identifier(&response, EXPLICIT_VR_LE, &|_| true).expect("scan response");
        assert_eq!(scanned.elements[&(0x0008, 0x0005)].bytes, b"ISO_IR 192");
        assert_eq!(scanned.elements[&(0x0010, 0x0010)].bytes, "Müller^Jürgen ".as_bytes());
        assert_eq!(scanned.elements[&(0x0020, 0x000D)].bytes, b"1.2.3\0");
        assert_eq!(scanned.elements[&(0x0008, 0x0061)].bytes, b"CT\\MR ");
        assert_eq!(scanned.elements[&(0x0010, 0x1010)].bytes, b"", "unindexed keys come back empty");
    }

    #[test]
    fn bad_identifiers_are_refused_with_the_reason() {
        let check = |data: Vec<u8>, needle: &str| {
            let err = parse_identifier(&data, EXPLICIT_VR_LE).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        };
        check(identifier(&[((0x0010, 0x0020), b"LO", b"X ")]), "QueryRetrieveLevel");
        check(identifier(&[((0x0008, 0x0052), b"CS", b"GALAXY")]), "GALAXY");
        check(identifier(&[((0x0008, 0x0052), b"CS", b"STUDY "), ((0x0008, 0x0060), b"CS", b"CT")]), "Modality");
        check(identifier(&[((0x0008, 0x0020), b"DA", b"2024"), ((0x0008, 0x0052), b"CS", b"STUDY ")]), "StudyDate");
    }
}
