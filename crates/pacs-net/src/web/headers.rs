//! QIDO-RS beyond the index: matching and returning attributes that the index does not hold,
//! read from the stored headers of the instances (PS3.18 8.3.4 lets an origin server match any
//! attribute).
//!
//! - **Matching** on a valid attribute that is not indexed (`InstitutionName=ACME*`,
//!   `00180050=1.25`) narrows the candidates with the indexed keys first, then reads the header of
//!   each candidate instance, up to Pixel Data and never past it, with [`json::parse`], and applies
//!   the rules of [`pacs_core::matching`] to its values: single value, wildcard, range (DA, TM and
//!   DT; a DT's UTC offset is ignored), list of UIDs, empty value, universal; case-insensitive
//!   person names with `fuzzymatching`. The kind of matching follows the attribute's VR
//!   ([`ValueKind::for_vr`]): sequences, binary and floating point values and AT cannot be matched
//!   (400); IS values are compared as integers, DS values as written (PS3.4 C.2.2.2.1 leaves their
//!   matching to the implementation). A study or series matches when **any**
//!   of its instances matches every non-indexed key. Elements after Pixel Data are not read.
//! - **Bounded**: the instances such a search would read (those of the studies, series or
//!   instances that the indexed keys select) are counted before any header is read; more than
//!   [`WebConfig::max_header_reads`](super::WebConfig::max_header_reads) is answered 413 naming the
//!   attribute, rather than reading the whole archive. Reading stops as soon as the page asked for
//!   (`offset` + `limit`, and one more to know whether results are cut) is complete.
//! - **Returning** a non-indexed attribute (`includefield=InstitutionName`, the non-indexed keys
//!   of the search, and `includefield=all`) takes its value from one *representative* instance of
//!   each returned row, as Orthanc and dcm4chee do: at instance level the instance itself; at
//!   series level its first instance by Instance Number; at study level the first instance by
//!   Instance Number of its first series by Series Number (ties by UID). When the search has
//!   non-indexed keys, the representative is the first instance in that order that matched them.
//!   Headers are read only for the rows returned (after `offset` and `limit`). `includefield=all`
//!   adds the patient and study attributes of the representative header at study level
//!   ([`STUDY_FIELDS`]), the series attributes at series level ([`SERIES_FIELDS`]), and every
//!   element of the header (Pixel Data aside) at instance level. Large binary values are sent as
//!   `BulkDataURI`, as `/metadata` does.
//!
//! An instance whose header cannot be read (a missing or corrupt blob) does not match, and gives
//! no values; it is logged, and the search goes on.

use std::collections::BTreeMap;

use dicom_core::Tag as DicomTag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use pacs_core::charset::{SpecificCharacterSet, TextKind};
use pacs_core::extract::normalize_value;
use pacs_core::matching::values_match_kind;
use pacs_core::{Attribute, InstanceRecord, MatchOptions, Matcher, QueryLevel, QueryRow, Scope, Uid, ValueKind};
use pacs_store::Archive;
use serde_json::{Map, Value as Json, json};

use super::json::{self, DataSet, Element, JsonOptions, ParseOptions, Parsed, Tag, Value};
use super::wado::{instance_url, parse_record};
use crate::error::{Error, Result};

/// Specific Character Set (0008,0005).
const SPECIFIC_CHARACTER_SET: Tag = (0x0008, 0x0005);

/// Study-level attributes (Patient, Patient Study and General Study modules) that
/// `includefield=all` adds at study level from the representative header, besides the indexed
/// ones (PS3.18 10.6.3, table 10.6.3-3, and PS3.4 C.6.1.1.2-3).
pub const STUDY_FIELDS: &[&str] = &[
    "PatientBirthTime",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "EthnicGroup",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "IssuerOfPatientIDQualifiersSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "Occupation",
    "AdditionalPatientHistory",
    "MedicalAlerts",
    "Allergies",
    "SmokingStatus",
    "PregnancyStatus",
    "PatientSexNeutered",
    "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence",
    "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "RequestingService",
    "ProcedureCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
    "ReferencedStudySequence",
    "StudyIDIssuer",
    "TimezoneOffsetFromUTC",
];

/// Series-level attributes (General Series, Frame of Reference and General Equipment modules)
/// that `includefield=all` adds at series level from the representative header, besides the
/// indexed ones (PS3.18 10.6.3, table 10.6.3-4, and PS3.4 C.6.1.1.4).
pub const SERIES_FIELDS: &[&str] = &[
    "Laterality",
    "SeriesTime",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "ProtocolName",
    "SeriesDescriptionCodeSequence",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "ReferencedPerformedProcedureStepSequence",
    "RelatedSeriesSequence",
    "AnatomicalOrientationType",
    "PatientPosition",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "RequestAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepDescription",
    "PerformedProtocolCodeSequence",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Manufacturer",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "InstitutionalDepartmentName",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "SoftwareVersions",
    "TimezoneOffsetFromUTC",
];

/// A search parameter naming an attribute that the index does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderAttribute {
    /// The tag.
    pub tag: Tag,
    /// The keyword, or the tag as `GGGGEEEE` for one the dictionary does not know.
    pub name: String,
    /// The VR of the standard dictionary (`UN` when unknown), for an answer without a value.
    pub vr: String,
}

/// A matching key on an attribute that the index does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderKey {
    /// The attribute.
    pub attribute: HeaderAttribute,
    /// How its values are compared.
    pub kind: ValueKind,
    /// The key value, parsed.
    pub matcher: Matcher,
}

/// Looks up a keyword or a `GGGGEEEE` tag that is not indexed; `None` when it names no attribute.
pub fn lookup(name: &str) -> Option<HeaderAttribute> {
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    let vr_of = |vr: VirtualVr| match vr {
        VirtualVr::Exact(vr) => vr.to_string().to_owned(),
        VirtualVr::Xs => "US".to_owned(),
        _ => "OW".to_owned(),
    };
    if let Some(tag) = json::parse_hex_tag(name) {
        return Some(match dictionary.by_tag(DicomTag(tag.0, tag.1)) {
            Some(entry) => HeaderAttribute { tag, name: entry.alias().to_owned(), vr: vr_of(entry.vr()) },
            None => HeaderAttribute { tag, name: name.to_ascii_uppercase(), vr: "UN".to_owned() },
        });
    }
    let entry = dictionary.by_name(name)?;
    let tag = entry.tag();
    Some(HeaderAttribute { tag: (tag.0, tag.1), name: entry.alias().to_owned(), vr: vr_of(entry.vr()) })
}

/// Parses a matching key on a non-indexed attribute; the error names it.
pub fn parse_key(attribute: HeaderAttribute, raw: &str) -> Result<HeaderKey> {
    let bad = |why: String| Error::BadRequest { reason: format!("parameter {}: {why}", attribute.name) };
    if attribute.tag.0 == 0x0002 {
        return Err(bad("File Meta Information elements cannot be matched".into()));
    }
    let Some(kind) = ValueKind::for_vr(&attribute.vr) else {
        return Err(bad(format!("attributes of VR {} cannot be matched (sequences, binary and floating point values, AT)", attribute.vr)));
    };
    let matcher = Matcher::parse_as(kind, &attribute.name, raw).map_err(|e| bad(e.to_string()))?;
    Ok(HeaderKey { attribute, kind, matcher })
}

/// The non-indexed attributes a search reads from headers.
#[derive(Clone, Debug, Default)]
pub struct HeaderFields {
    /// Matching keys on attributes the index does not hold.
    pub keys: Vec<HeaderKey>,
    /// `includefield` attributes the index does not hold.
    pub include: Vec<HeaderAttribute>,
    /// `includefield=all`.
    pub all: bool,
}

impl HeaderFields {
    /// Whether the rows of a search need a header read for their answer.
    pub fn needed(&self) -> bool {
        !self.keys.is_empty() || !self.include.is_empty() || self.all
    }
}

/// The values of a top-level element, decoded with the data set's character set and normalised
/// as the index normalises values of `kind`: no values when the element is absent, empty, a
/// sequence or bulk, or holds a value that cannot be normalised (as the index leaves such values
/// out).
pub fn element_values(data_set: &DataSet, tag: Tag, kind: ValueKind, big_endian: bool) -> Vec<String> {
    let Some(Element { vr, value: Value::Bytes(bytes), .. }) = data_set.get(tag) else {
        return Vec::new();
    };
    macro_rules! numbers {
        ($ty:ty, $n:literal) => {
            bytes
                .chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    (if big_endian { <$ty>::from_be_bytes(a) } else { <$ty>::from_le_bytes(a) }).to_string()
                })
                .collect()
        };
    }
    let raw: Vec<String> = match vr {
        b"US" => numbers!(u16, 2),
        b"SS" => numbers!(i16, 2),
        b"UL" => numbers!(u32, 4),
        b"SL" => numbers!(i32, 4),
        b"UV" => numbers!(u64, 8),
        b"SV" => numbers!(i64, 8),
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"UN" | b"FL" | b"FD" | b"AT" | b"SQ" => return Vec::new(),
        _ => {
            let charset = match data_set.get(SPECIFIC_CHARACTER_SET) {
                Some(Element { value: Value::Bytes(raw), .. }) => SpecificCharacterSet::from_raw(raw),
                _ => SpecificCharacterSet::default_repertoire(),
            };
            let text = charset.decode(bytes, if vr == b"PN" { TextKind::PersonName } else { TextKind::Text });
            let single = matches!(vr, b"LT" | b"ST" | b"UT" | b"UR");
            let values: Vec<&str> = if single { vec![text.as_str()] } else { text.split('\\').collect() };
            values.into_iter().map(|v| v.trim_matches([' ', '\0']).to_owned()).collect()
        }
    };
    if raw.iter().all(String::is_empty) {
        return Vec::new();
    }
    raw.iter().map(|v| if v.is_empty() { Ok(String::new()) } else { normalize_value(kind, v) }).collect::<std::result::Result<Vec<_>, _>>().unwrap_or_default()
}

/// Whether a parsed header matches every key.
pub fn header_matches(keys: &[HeaderKey], parsed: &Parsed, options: &MatchOptions) -> bool {
    keys.iter().all(|key| {
        let values = element_values(&parsed.data_set, key.attribute.tag, key.kind, parsed.big_endian);
        values_match_kind(key.kind, &key.matcher, &values, options)
    })
}

/// The instance order in which representatives are chosen: Series Number, Series Instance UID,
/// Instance Number, SOP Instance UID (numbers missing or invalid last).
fn representative_order(record: &InstanceRecord) -> (i64, String, i64, String) {
    let number = |a: Attribute| record.get(a).and_then(|v| v.parse::<i64>().ok()).unwrap_or(i64::MAX);
    (number(Attribute::SeriesNumber), record.series_instance_uid.to_string(), number(Attribute::InstanceNumber), record.sop_instance_uid.to_string())
}

/// The instances of a result row, in representative order.
fn instances_of(archive: &Archive, level: QueryLevel, row: &QueryRow) -> pacs_core::Result<Vec<InstanceRecord>> {
    let attribute = match level {
        QueryLevel::Patient | QueryLevel::Study => Attribute::StudyInstanceUid,
        QueryLevel::Series => Attribute::SeriesInstanceUid,
        QueryLevel::Instance => Attribute::SopInstanceUid,
    };
    let Some(uid) = row.get(&attribute).and_then(|u| Uid::new(u).ok()) else {
        return Ok(Vec::new());
    };
    let scope = match level {
        QueryLevel::Patient | QueryLevel::Study => Scope::Study(uid),
        QueryLevel::Series => Scope::Series(uid),
        QueryLevel::Instance => Scope::Instance(uid),
    };
    let mut records = archive.instances(&scope)?;
    records.sort_by_cached_key(representative_order);
    Ok(records)
}

/// The representative instance of a row: at study level, the first instance of the study's first
/// series by Series Number (so that only that series' records are loaded), otherwise the first
/// of [`instances_of`].
fn representative(archive: &Archive, level: QueryLevel, row: &QueryRow) -> pacs_core::Result<Option<InstanceRecord>> {
    if level <= QueryLevel::Study
        && let Some(study) = row.get(&Attribute::StudyInstanceUid)
    {
        let series = archive.query(&pacs_core::Query::new(QueryLevel::Series).with(Attribute::StudyInstanceUid, study)?)?;
        let number = |row: &QueryRow| row.get(&Attribute::SeriesNumber).and_then(|v| v.parse::<i64>().ok()).unwrap_or(i64::MAX);
        let first = series.iter().min_by_key(|s| (number(s), s.get(&Attribute::SeriesInstanceUid).cloned().unwrap_or_default()));
        return match first {
            Some(first) => Ok(instances_of(archive, QueryLevel::Series, first)?.into_iter().next()),
            None => Ok(None),
        };
    }
    Ok(instances_of(archive, level, row)?.into_iter().next())
}

/// How many instances the candidates of a search on non-indexed keys hold (each row at least
/// one): the indexed count of a study or series, one for an instance.
pub fn candidate_instances(level: QueryLevel, rows: &[QueryRow]) -> usize {
    let count = match level {
        QueryLevel::Patient | QueryLevel::Study => Some(Attribute::NumberOfStudyRelatedInstances),
        QueryLevel::Series => Some(Attribute::NumberOfSeriesRelatedInstances),
        QueryLevel::Instance => None,
    };
    rows.iter().map(|row| count.and_then(|a| row.get(&a)).and_then(|n| n.parse::<usize>().ok()).unwrap_or(1).max(1)).fold(0, usize::saturating_add)
}

/// A result row and the values read from its representative header.
pub type RowWithHeader = (QueryRow, Map<String, Json>);

/// What a search reads from headers, with what it needs to write their values.
pub struct HeaderSearch {
    /// The attributes.
    pub fields: HeaderFields,
    /// The level of the rows.
    pub level: QueryLevel,
    /// Matching options (`fuzzymatching`).
    pub options: MatchOptions,
    /// The base URL, for `BulkDataURI`s.
    pub base_url: String,
    /// Binary values longer than this are sent as `BulkDataURI`.
    pub bulk_threshold: u32,
}

impl HeaderSearch {
    fn read(&self, archive: &Archive, record: &InstanceRecord) -> Option<Parsed> {
        let options = ParseOptions { inline_limit: self.bulk_threshold, stop_at_pixel_data: true, capture: None };
        match parse_record(archive, record, &options) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                tracing::warn!(sop = %record.sop_instance_uid, error = %e, "QIDO-RS: the stored header cannot be read; the instance is left out");
                None
            }
        }
    }

    /// The non-indexed attributes of a row, from the representative's header: asked ones
    /// without a value as empty elements.
    fn values(&self, record: &InstanceRecord, parsed: &Parsed) -> Map<String, Json> {
        let url = instance_url(&self.base_url, record);
        let Json::Object(header) = json::to_json(&parsed.data_set, &JsonOptions { instance_url: Some(&url), big_endian: parsed.big_endian }) else {
            return Map::new();
        };
        let mut out = Map::new();
        let key = |tag: Tag| format!("{:04X}{:04X}", tag.0, tag.1);
        if self.fields.all {
            match self.level {
                QueryLevel::Instance => {
                    out.extend(header.iter().filter(|(k, _)| k.as_str() != "7FE00010").map(|(k, v)| (k.clone(), v.clone())));
                }
                level => {
                    let list = if level == QueryLevel::Series { SERIES_FIELDS } else { STUDY_FIELDS };
                    for attribute in list.iter().filter_map(|name| lookup(name)) {
                        if let Some(value) = header.get(&key(attribute.tag)) {
                            out.insert(key(attribute.tag), value.clone());
                        }
                    }
                }
            }
        }
        let asked = self.fields.include.iter().chain(self.fields.keys.iter().map(|k| &k.attribute));
        for attribute in asked {
            let k = key(attribute.tag);
            let value = header.get(&k).cloned().unwrap_or_else(|| json!({ "vr": attribute.vr }));
            out.insert(k, value);
        }
        out
    }

    /// The header values of rows found by the index (no non-indexed keys): one representative
    /// header per row.
    pub fn fill(&self, archive: &Archive, rows: &[QueryRow]) -> pacs_core::Result<Vec<Map<String, Json>>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let record = representative(archive, self.level, row)?;
            let values = record.and_then(|record| self.read(archive, &record).map(|parsed| self.values(&record, &parsed)));
            out.push(values.unwrap_or_else(|| self.values_without_header()));
        }
        Ok(out)
    }

    /// The asked attributes as empty elements, for a row whose header cannot be read.
    fn values_without_header(&self) -> Map<String, Json> {
        let asked = self.fields.include.iter().chain(self.fields.keys.iter().map(|k| &k.attribute));
        asked.map(|a| (format!("{:04X}{:04X}", a.tag.0, a.tag.1), json!({ "vr": a.vr }))).collect()
    }

    /// Filters candidate rows (in index order) by the non-indexed keys: skips `offset` matches,
    /// returns at most `limit` with their header values, and whether more matched.
    pub fn filter(&self, archive: &Archive, candidates: Vec<QueryRow>, offset: usize, limit: usize) -> pacs_core::Result<(Vec<RowWithHeader>, bool)> {
        let mut out = Vec::new();
        let mut skipped = 0;
        let mut read = 0usize;
        for row in candidates {
            let mut hit = None;
            for record in instances_of(archive, self.level, &row)? {
                read += 1;
                let Some(parsed) = self.read(archive, &record) else { continue };
                if header_matches(&self.fields.keys, &parsed, &self.options) {
                    hit = Some(self.values(&record, &parsed));
                    break;
                }
            }
            let Some(values) = hit else { continue };
            if skipped < offset {
                skipped += 1;
                continue;
            }
            if out.len() == limit {
                tracing::debug!(read, "QIDO-RS on stored headers: page complete, more match");
                return Ok((out, true));
            }
            out.push((row, values));
        }
        tracing::debug!(read, matched = out.len(), "QIDO-RS on stored headers");
        Ok((out, false))
    }
}

/// The names of the non-indexed keys, for messages.
pub fn key_names(keys: &[HeaderKey]) -> String {
    let names: BTreeMap<&str, ()> = keys.iter().map(|k| (k.attribute.name.as_str(), ())).collect();
    names.into_keys().collect::<Vec<_>>().join(", ")
}

/// The error of a search whose candidates are more than `cap` instances.
pub fn too_broad(keys: &[HeaderKey], at_least: usize, cap: usize) -> Error {
    Error::QueryTooBroad {
        reason: format!(
            "matching on {} (not indexed) would read the stored headers of {}{at_least} instances, more than the limit of {cap}; narrow the search with indexed keys (PatientID, StudyDate, Modality, StudyInstanceUID...)",
            key_names(keys),
            if at_least > cap { "at least " } else { "" },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_all_name_standard_attributes() {
        for name in STUDY_FIELDS.iter().chain(SERIES_FIELDS) {
            let attribute = lookup(name).unwrap_or_else(|| panic!("{name} is not a standard keyword"));
            assert_eq!(attribute.name, *name);
            assert!(Attribute::parse(name).is_none(), "{name} is indexed: it is returned from the index");
        }
    }

    #[test]
    fn keys_name_their_attribute() {
        let key = parse_key(lookup("InstitutionName").expect("known"), "ACME*").expect("valid");
        assert_eq!((key.kind, key.matcher.clone()), (ValueKind::Text, Matcher::Wildcard("ACME*".into())));
        let key = parse_key(lookup("00180050").expect("known"), "1.25").expect("valid");
        assert_eq!((key.attribute.name.as_str(), key.attribute.vr.as_str()), ("SliceThickness", "DS"));
        assert_eq!(lookup("00091001").map(|a| a.vr), Some("UN".to_owned()));
        for (name, value, needle) in [
            ("ContentDate", "2024", "ContentDate"),
            ("ReferencedImageSequence", "x", "VR SQ"),
            ("00091001", "x", "VR UN"),
            ("MediaStorageSOPClassUID", "1.2", "File Meta"),
            ("AcquisitionDateTime", "2024-13", "date and time"),
        ] {
            let err = parse_key(lookup(name).expect(name), value).expect_err(name).to_string();
            assert!(err.contains(needle) && err.contains(&lookup(name).expect(name).name), "{err}");
        }
    }

    fn data_set(elements: &[(Tag, &[u8; 2], &[u8])]) -> Parsed {
        let elements = elements.iter().map(|(tag, vr, value)| Element { tag: *tag, vr: **vr, value: Value::Bytes(value.to_vec()) }).collect();
        Parsed { transfer_syntax: String::new(), big_endian: false, data_set: DataSet { elements } }
    }

    #[test]
    fn header_values_are_decoded_and_normalised() {
        let parsed = data_set(&[
            (SPECIFIC_CHARACTER_SET, b"CS", b"ISO_IR 100"),
            ((0x0008, 0x0008), b"CS", b"ORIGINAL\\PRIMARY\\AXIAL "),
            ((0x0008, 0x0080), b"LO", b"St\xe4dtisches Klinikum"),
            ((0x0008, 0x0023), b"DA", b"2024.01.31"),
            ((0x0008, 0x0033), b"TM", b"1030"),
            ((0x0028, 0x0002), b"US", &[3, 0]),
            ((0x0020, 0x4000), b"LT", b"a\\b "),
            ((0x0008, 0x0022), b"DA", b"20241399"),
            ((0x0008, 0x1070), b"PN", b"Smith^J^^^"),
            ((0x0008, 0x002A), b"DT", b"20240131103000.5+0100"),
        ]);
        let values = |tag, kind| element_values(&parsed.data_set, tag, kind, false);
        assert_eq!(values((0x0008, 0x0008), ValueKind::Text), ["ORIGINAL", "PRIMARY", "AXIAL"]);
        assert_eq!(values((0x0008, 0x0080), ValueKind::Text), ["Städtisches Klinikum"]);
        assert_eq!(values((0x0008, 0x0023), ValueKind::Date), ["20240131"]);
        assert_eq!(values((0x0008, 0x0033), ValueKind::Time), ["103000.000000"]);
        assert_eq!(values((0x0028, 0x0002), ValueKind::Integer), ["3"]);
        assert_eq!(values((0x0020, 0x4000), ValueKind::Text), ["a\\b"]);
        assert!(values((0x0008, 0x0022), ValueKind::Date).is_empty(), "an invalid date is no value");
        assert_eq!(values((0x0008, 0x1070), ValueKind::PersonName), ["Smith^J"]);
        assert!(values((0x0008, 0x1010), ValueKind::Text).is_empty());
        assert_eq!(values((0x0008, 0x002A), ValueKind::DateTime), ["20240131103000.500000"], "the UTC offset is dropped");

        let key = |name: &str, raw: &str| parse_key(lookup(name).expect(name), raw).expect(raw);
        let plain = MatchOptions::default();
        let fold = MatchOptions { case_insensitive_pn: true, combine_datetime: true };
        assert!(header_matches(&[key("ImageType", "AXIAL"), key("InstitutionName", "St*")], &parsed, &plain));
        assert!(!header_matches(&[key("ImageType", "AXIAL"), key("InstitutionName", "X*")], &parsed, &plain));
        assert!(header_matches(&[key("ContentDate", "20240101-20240131"), key("ContentTime", "10-11")], &parsed, &plain));
        assert!(header_matches(&[key("AcquisitionDateTime", "2024")], &parsed, &plain), "a year is a range of the whole year");
        assert!(header_matches(&[key("AcquisitionDateTime", "202401311030-202401311031")], &parsed, &plain));
        assert!(header_matches(&[key("AcquisitionDateTime", "-20240131")], &parsed, &plain), "an upper bound includes the whole day");
        assert!(!header_matches(&[key("AcquisitionDateTime", "20240201-")], &parsed, &plain));
        assert!(!header_matches(&[key("ContentDate", "-20231231")], &parsed, &plain));
        assert!(header_matches(&[key("AcquisitionDate", "\"\""), key("StationName", "\"\"")], &parsed, &plain));
        assert!(header_matches(&[key("SamplesPerPixel", "03")], &parsed, &plain));
        assert!(!header_matches(&[key("OperatorsName", "smith*")], &parsed, &plain));
        assert!(header_matches(&[key("OperatorsName", "smith*")], &parsed, &fold));
    }

    #[test]
    fn candidates_count_instances() {
        let row = |a: Attribute, n: &str| QueryRow::from([(a, n.to_owned())]);
        let studies = [row(Attribute::NumberOfStudyRelatedInstances, "40"), row(Attribute::NumberOfStudyRelatedInstances, "2"), QueryRow::new()];
        assert_eq!(candidate_instances(QueryLevel::Study, &studies), 43);
        assert_eq!(candidate_instances(QueryLevel::Series, &[row(Attribute::NumberOfSeriesRelatedInstances, "7")]), 7);
        assert_eq!(candidate_instances(QueryLevel::Instance, &studies), 3);
    }
}
