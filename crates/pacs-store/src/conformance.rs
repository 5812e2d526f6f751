//! The shared conformance suites of the [`Index`] and [`BlobStore`] contracts.
//!
//! Every backend runs the same suites, as `object_store` does with its `integration` module:
//! each suite is a plain function taking the backend as a trait object (the traits are blocking),
//! that panics with a message naming the broken clause of the contract. A backend's test file
//! calls each suite on a fresh, empty instance:
//!
//! ```no_run
//! # use pacs_store::{conformance, SqliteIndex};
//! let dir = tempfile::tempdir().expect("temporary folder");
//! let index = SqliteIndex::open(&dir.path().join("index.sqlite")).expect("open");
//! conformance::index_insert_and_find(&index);
//! ```
//!
//! Differences of capability between backends (a store whose objects outlive it, a `sync` that
//! is a no-op) are parameters of the suites, never reasons to skip a check silently.
//!
//! The module also builds synthetic [`InstanceRecord`]s ([`record`] and its family), and holds
//! a model of what the index must answer ([`expected_rows`], [`expected_stats`],
//! [`natural_key`]), which the suites and the property tests compare backends against.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use pacs_core::attribute::Attribute;
use pacs_core::index::{DuplicatePolicy, InsertOutcome, Scope, Stats};
use pacs_core::query::{Query, QueryLevel, QueryRow};
use pacs_core::scan::PixelLayout;
use pacs_core::{BlobKey, BlobStore, Error, Index, InstanceRecord, Uid};

// ---------------------------------------------------------------------------------------------
// Synthetic records
// ---------------------------------------------------------------------------------------------

/// The root of every UID built here (a root reserved for examples and tests).
pub const UID_ROOT: &str = "1.2.826.0.1.3680043.10.543";

/// SOP Class UID of the synthetic records (CT Image Storage).
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

/// Transfer Syntax UID of the synthetic records (Explicit VR Little Endian).
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// Patient names of the synthetic patients, chosen by patient number (non-ASCII on purpose).
const PATIENT_NAMES: &[&str] = &["Müller^Jürgen", "Doe^John", "O'Brien^Siobhán", "Nguyễn^Văn An", "Ström^Åsa"];

/// The Modality of synthetic series `series`: `CT`, `MR`, `US` by `series % 3`.
pub fn modality(series: u32) -> &'static str {
    ["CT", "MR", "US"][(series % 3) as usize]
}

/// A valid UID `1.2.826.0.1.3680043.10.543.{n}`.
pub fn uid(n: u32) -> Uid {
    Uid::new(&format!("{UID_ROOT}.{n}")).expect("synthetic UIDs are valid")
}

/// The Study Instance UID of synthetic study `study`: `{UID_ROOT}.1.{study}`.
pub fn study_uid(study: u32) -> Uid {
    Uid::new(&format!("{UID_ROOT}.1.{study}")).expect("synthetic UIDs are valid")
}

/// The Series Instance UID of synthetic series `series`: `{UID_ROOT}.2.{series}`.
pub fn series_uid(series: u32) -> Uid {
    Uid::new(&format!("{UID_ROOT}.2.{series}")).expect("synthetic UIDs are valid")
}

/// The SOP Instance UID of synthetic instance `n`: `{UID_ROOT}.3.{n}`.
pub fn sop_uid(n: u32) -> Uid {
    Uid::new(&format!("{UID_ROOT}.3.{n}")).expect("synthetic UIDs are valid")
}

/// The Patient ID of synthetic patient `patient`: `PID{patient}`.
pub fn patient_id(patient: u32) -> String {
    format!("PID{patient}")
}

/// The Issuer of Patient ID of synthetic patient `patient`: `ISSUER-A` for even numbers, none
/// (the empty string of [`Scope::Patient`]) for odd ones.
pub fn patient_issuer(patient: u32) -> String {
    if patient.is_multiple_of(2) { "ISSUER-A".to_owned() } else { String::new() }
}

/// A record with only what every instance has: its UIDs, transfer syntax, size, checksum and
/// blob (no patient, study, series or instance attributes, no pixel data).
///
/// Its patient is the one without Patient ID (`Scope::Patient { id: "", issuer: "" }`).
pub fn bare_record(n: u32, study: u32, series: u32) -> InstanceRecord {
    let sop = sop_uid(n);
    let study = study_uid(study);
    let series = series_uid(series);
    let class = Uid::new(CT_IMAGE_STORAGE).expect("valid UID");
    let ts = Uid::new(EXPLICIT_VR_LITTLE_ENDIAN).expect("valid UID");
    let mut attributes = QueryRow::new();
    attributes.insert(Attribute::SopInstanceUid, sop.to_string());
    attributes.insert(Attribute::SopClassUid, class.to_string());
    attributes.insert(Attribute::SeriesInstanceUid, series.to_string());
    attributes.insert(Attribute::StudyInstanceUid, study.to_string());
    attributes.insert(Attribute::TransferSyntaxUid, ts.to_string());
    InstanceRecord {
        sop_instance_uid: sop,
        sop_class_uid: class,
        series_instance_uid: series,
        study_instance_uid: study,
        transfer_syntax_uid: ts,
        attributes,
        pixel: PixelLayout::Unknown,
        frame_size: None,
        size: 1000 + u64::from(n),
        checksum: checksum(u64::from(n)),
        blob: BlobKey::for_id(u128::from(n)),
        original: None,
    }
}

/// A complete synthetic record: instance `n` of series `series` of study `study` of patient
/// `patient`.
///
/// Every attribute is derived from these numbers alone, so that all instances of a series agree
/// on the series attributes, all instances of a study on the study attributes, and so on (the
/// index keeps the parents' attributes of the first instance received; records built here never
/// contradict each other). Values are normalised: dates `YYYYMMDD`, times `HHMMSS.FFFFFF`,
/// integers in decimal. The pixel data is native, 64 × 64 × 16 bits, with a known frame size.
pub fn record(n: u32, patient: u32, study: u32, series: u32) -> InstanceRecord {
    let mut r = bare_record(n, study, series);
    let a = &mut r.attributes;
    let mut set = |attribute: Attribute, value: String| {
        a.insert(attribute, value);
    };
    set(Attribute::PatientId, patient_id(patient));
    let issuer = patient_issuer(patient);
    if !issuer.is_empty() {
        set(Attribute::IssuerOfPatientId, issuer);
    }
    set(Attribute::PatientName, PATIENT_NAMES[patient as usize % PATIENT_NAMES.len()].to_owned());
    set(Attribute::PatientBirthDate, format!("19{:02}{:02}{:02}", 50 + patient % 50, 1 + patient % 12, 1 + patient % 28));
    set(Attribute::PatientSex, ["M", "F", "O"][(patient % 3) as usize].to_owned());
    set(Attribute::StudyDate, format!("2024{:02}{:02}", 1 + study % 12, 1 + study % 28));
    set(Attribute::StudyTime, format!("{:02}{:02}{:02}.{:06}", study % 24, (study * 7) % 60, (study * 13) % 60, study % 1_000_000));
    set(Attribute::AccessionNumber, format!("ACC{study}"));
    set(Attribute::StudyId, format!("S{study}"));
    set(Attribute::StudyDescription, format!("Study {study}"));
    set(Attribute::ReferringPhysicianName, format!("Referrer^{study}"));
    set(Attribute::Modality, modality(series).to_owned());
    set(Attribute::SeriesNumber, series.to_string());
    set(Attribute::SeriesDescription, format!("Series {series}"));
    set(Attribute::BodyPartExamined, ["HEAD", "CHEST", "ABDOMEN"][(series % 3) as usize].to_owned());
    set(Attribute::SeriesDate, format!("2024{:02}{:02}", 1 + study % 12, 1 + study % 28));
    set(Attribute::InstanceNumber, n.to_string());
    set(Attribute::NumberOfFrames, "1".to_owned());
    set(Attribute::Rows, "64".to_owned());
    set(Attribute::Columns, "64".to_owned());
    let frame = 64 * 64 * 2;
    r.pixel = PixelLayout::Native { offset: 1024, length: frame };
    r.frame_size = Some(frame);
    r.size = 1024 + frame + u64::from(n);
    r
}

/// Another object under the same SOP Instance UID as `record`: different bytes (checksum, size
/// and blob, chosen by `variant`, which must not be 0) and a different Instance Number; the same
/// patient, study and series.
pub fn different_copy(record: &InstanceRecord, variant: u32) -> InstanceRecord {
    assert_ne!(variant, 0, "different_copy needs a non-zero variant");
    let mut copy = record.clone();
    let salt = u64::from(variant) << 40;
    copy.checksum = checksum(salt ^ record.size);
    copy.size = record.size + u64::from(variant);
    copy.blob = BlobKey::for_id((u128::from(variant) << 64) | u128::from(record.size));
    let number = record.get(Attribute::InstanceNumber).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    copy.attributes.insert(Attribute::InstanceNumber, (number + 1000 * u64::from(variant)).to_string());
    copy
}

/// A plausible SHA-256 in lowercase hexadecimal, derived from `seed`.
pub fn checksum(seed: u64) -> String {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    format!("{seed:016x}{mixed:016x}{:032x}", u128::from(seed) * 3 + 1)
}

/// A small archive used by several suites: three patients, four studies, seven series and
/// eleven instances, listed in the (shuffled) order they are inserted.
///
/// - Patient 1 (no issuer): study 1 with series 1 (MR, instances 1, 2, 3), series 2 (US,
///   instances 4, 5) and series 4 (MR, instance 6) — ModalitiesInStudy `MR\US`; study 2 with
///   series 3 (CT, instance 7).
/// - Patient 2 (issuer `ISSUER-A`): study 3 with series 5 (US, instances 8, 9) and series 6,
///   whose instance 10 has no Modality.
/// - The patient without Patient ID: study 4 with series 7 holding the [`bare_record`] 11.
pub fn sample_archive() -> Vec<InstanceRecord> {
    let mut without_modality = record(10, 2, 3, 6);
    without_modality.attributes.remove(&Attribute::Modality);
    vec![
        record(3, 1, 1, 1),
        record(5, 1, 1, 2),
        record(8, 2, 3, 5),
        record(1, 1, 1, 1),
        record(7, 1, 2, 3),
        without_modality,
        record(6, 1, 1, 4),
        record(2, 1, 1, 1),
        bare_record(11, 4, 7),
        record(9, 2, 3, 5),
        record(4, 1, 1, 2),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model: what an index must answer
// ---------------------------------------------------------------------------------------------

/// The natural key of a row at `level`: `[PatientID, IssuerOfPatientID]` (empty strings when
/// absent) at Patient level, the level's UID otherwise. Rows are ordered by it.
pub fn natural_key(level: QueryLevel, row: &QueryRow) -> Vec<String> {
    let get = |a: Attribute| row.get(&a).cloned().unwrap_or_default();
    match level {
        QueryLevel::Patient => vec![get(Attribute::PatientId), get(Attribute::IssuerOfPatientId)],
        QueryLevel::Study => vec![get(Attribute::StudyInstanceUid)],
        QueryLevel::Series => vec![get(Attribute::SeriesInstanceUid)],
        QueryLevel::Instance => vec![get(Attribute::SopInstanceUid)],
    }
}

fn record_key(level: QueryLevel, record: &InstanceRecord) -> Vec<String> {
    match level {
        QueryLevel::Patient => {
            let id = record.get(Attribute::PatientId).unwrap_or("");
            // Studies without a Patient ID each have a patient of their own.
            let study = if id.is_empty() { record.study_instance_uid.to_string() } else { String::new() };
            vec![id.to_owned(), record.get(Attribute::IssuerOfPatientId).unwrap_or("").to_owned(), study]
        }
        QueryLevel::Study => vec![record.study_instance_uid.to_string()],
        QueryLevel::Series => vec![record.series_instance_uid.to_string()],
        QueryLevel::Instance => vec![record.sop_instance_uid.to_string()],
    }
}

const LEVELS: [QueryLevel; 4] = [QueryLevel::Patient, QueryLevel::Study, QueryLevel::Series, QueryLevel::Instance];

/// The rows an index must hold at `level` after `records` were inserted in this order (with
/// distinct SOP Instance UIDs, and each study under a single patient), ordered by natural key.
///
/// Each row has every attribute of `level` and the levels above, taken from the first record of
/// the entity it belongs to (the contract keeps the attributes of the first instance received),
/// and every derived attribute of `level` and above: ModalitiesInStudy (the distinct Modality
/// values of the study's series, sorted, joined with `\`, absent when there is none), the
/// numbers of related series and instances. Absent values are not in the map. These are the
/// rows the reference matcher `pacs_core::matching::matches` filters.
pub fn expected_rows(records: &[InstanceRecord], level: QueryLevel) -> Vec<QueryRow> {
    // The first record of each entity, at each level.
    let mut first: BTreeMap<(QueryLevel, Vec<String>), &InstanceRecord> = BTreeMap::new();
    for r in records {
        for l in LEVELS {
            first.entry((l, record_key(l, r))).or_insert(r);
        }
    }
    let mut rows: BTreeMap<Vec<String>, QueryRow> = BTreeMap::new();
    for r in records {
        let key = record_key(level, r);
        if rows.contains_key(&key) {
            continue;
        }
        let mut row = QueryRow::new();
        for &attribute in Attribute::ALL.iter().filter(|a| a.level() <= level && !a.is_derived()) {
            let owner = first[&(attribute.level(), record_key(attribute.level(), r))];
            if let Some(v) = owner.get(attribute).filter(|v| !v.is_empty()) {
                row.insert(attribute, v.to_owned());
            }
        }
        if level >= QueryLevel::Study {
            let study = &r.study_instance_uid;
            let in_study: Vec<&InstanceRecord> = records.iter().filter(|x| &x.study_instance_uid == study).collect();
            let series: BTreeSet<&Uid> = in_study.iter().map(|x| &x.series_instance_uid).collect();
            let modalities: BTreeSet<&str> =
                series.iter().filter_map(|s| first[&(QueryLevel::Series, vec![s.to_string()])].get(Attribute::Modality)).filter(|m| !m.is_empty()).collect();
            if !modalities.is_empty() {
                row.insert(Attribute::ModalitiesInStudy, modalities.into_iter().collect::<Vec<_>>().join("\\"));
            }
            row.insert(Attribute::NumberOfStudyRelatedSeries, series.len().to_string());
            row.insert(Attribute::NumberOfStudyRelatedInstances, in_study.len().to_string());
        }
        if level >= QueryLevel::Series {
            let count = records.iter().filter(|x| x.series_instance_uid == r.series_instance_uid).count();
            row.insert(Attribute::NumberOfSeriesRelatedInstances, count.to_string());
        }
        rows.insert(key, row);
    }
    rows.into_values().collect()
}

/// The [`Stats`] an index must report holding `records` (distinct SOP Instance UIDs).
pub fn expected_stats(records: &[InstanceRecord]) -> Stats {
    let count = |level| records.iter().map(|r| record_key(level, r)).collect::<BTreeSet<_>>().len() as u64;
    Stats {
        patients: count(QueryLevel::Patient),
        studies: count(QueryLevel::Study),
        series: count(QueryLevel::Series),
        instances: count(QueryLevel::Instance),
        bytes: records.iter().map(|r| r.size).sum(),
    }
}

/// Checks that `rows`, returned by `find(query)` without offset or limit, are exactly the
/// `expected` rows (as built by [`expected_rows`]) in natural key order, each holding exactly
/// the expected value of every attribute the query returns.
pub fn assert_rows(context: &str, query: &Query, rows: &[QueryRow], expected: &[&QueryRow]) {
    let got: Vec<Vec<String>> = rows.iter().map(|r| natural_key(query.level, r)).collect();
    let want: Vec<Vec<String>> = expected.iter().map(|r| natural_key(query.level, r)).collect();
    assert_eq!(got, want, "{context}: find returned other records (or another order) than expected at {} level; query {query:?}", query.level);
    for (row, exp) in rows.iter().zip(expected) {
        for attribute in query.return_attributes() {
            assert_eq!(
                row.get(&attribute),
                exp.get(&attribute),
                "{context}: wrong {} in the {} level row {:?}; query {query:?}",
                attribute.keyword(),
                query.level,
                natural_key(query.level, row),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers of the index suites
// ---------------------------------------------------------------------------------------------

/// Records ordered by SOP Instance UID.
fn by_sop_uid(mut records: Vec<InstanceRecord>) -> Vec<InstanceRecord> {
    records.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
    records
}

/// Every record `for_each` visits, ordered by SOP Instance UID.
fn visited(index: &dyn Index) -> Vec<InstanceRecord> {
    let mut seen = Vec::new();
    ok(
        "for_each",
        index.for_each(&mut |r| {
            seen.push(r);
            Ok(())
        }),
    );
    by_sop_uid(seen)
}

fn ok<T>(what: &str, result: pacs_core::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn assert_empty_index(index: &dyn Index, suite: &str) {
    let stats = ok("stats", index.stats());
    assert_eq!(stats, Stats::default(), "{suite} needs an empty index, got {}: {stats:?}", index.describe());
}

fn insert(index: &dyn Index, records: &[InstanceRecord], policy: DuplicatePolicy) -> Vec<InsertOutcome> {
    let outcomes = ok("insert", index.insert(records, policy));
    assert_eq!(outcomes.len(), records.len(), "insert must return one outcome per record");
    outcomes
}

fn insert_new(index: &dyn Index, records: &[InstanceRecord]) {
    for (r, outcome) in records.iter().zip(insert(index, records, DuplicatePolicy::KeepExisting)) {
        assert_eq!(outcome, InsertOutcome::Inserted, "inserting new instance {} must report Inserted", r.sop_instance_uid);
    }
}

fn find(index: &dyn Index, query: &Query) -> Vec<QueryRow> {
    index.find(query).unwrap_or_else(|e| panic!("find {query:?} failed: {e}"))
}

fn query(level: QueryLevel, keys: &[(Attribute, &str)]) -> Query {
    keys.iter().fold(Query::new(level), |q, (a, v)| q.with(*a, v).unwrap_or_else(|e| panic!("query key {}={v:?}: {e}", a.keyword())))
}

/// Checks every level with `find` without keys, and the stats, against the model of `records`.
fn assert_index_holds(index: &dyn Index, records: &[InstanceRecord], context: &str) {
    for level in LEVELS {
        let q = Query::new(level);
        let expected = expected_rows(records, level);
        assert_rows(context, &q, &find(index, &q), &expected.iter().collect::<Vec<_>>());
    }
    assert_eq!(ok("stats", index.stats()), expected_stats(records), "{context}: stats");
}

/// Checks a keyed query against the model, filtering the model rows with `keep`.
fn assert_find(index: &dyn Index, records: &[InstanceRecord], q: &Query, keep: impl Fn(&QueryRow) -> bool, context: &str) {
    let model = expected_rows(records, q.level);
    let expected: Vec<&QueryRow> = model.iter().filter(|r| keep(r)).collect();
    assert_rows(context, q, &find(index, q), &expected);
}

fn sop_uids(records: &[InstanceRecord]) -> Vec<String> {
    records.iter().map(|r| r.sop_instance_uid.to_string()).collect()
}

fn stored(index: &dyn Index, uid: &Uid) -> InstanceRecord {
    ok("instance", index.instance(uid)).unwrap_or_else(|| panic!("instance {uid} must be stored"))
}

// ---------------------------------------------------------------------------------------------
// Index suites
// ---------------------------------------------------------------------------------------------

/// Insert and find at all four levels: every record is returned once at its level, in natural
/// key order, with every returned attribute equal to the first instance's value, and the derived
/// ModalitiesInStudy, NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances and
/// NumberOfSeriesRelatedInstances correct; keyed queries select the right records.
pub fn index_insert_and_find(index: &dyn Index) {
    assert_empty_index(index, "index_insert_and_find");
    assert!(!index.describe().is_empty(), "describe must not be empty");
    for level in LEVELS {
        assert!(find(index, &Query::new(level)).is_empty(), "an empty index must find nothing at {level} level");
    }
    let records = sample_archive();
    let (a, b) = records.split_at(5);
    insert_new(index, a);
    insert_new(index, b);
    assert_index_holds(index, &records, "after inserting the sample archive");

    // Derived attributes, spelled out rather than taken from the model.
    let studies = find(index, &Query::new(QueryLevel::Study));
    let study = |n: u32| {
        let uid = study_uid(n).to_string();
        studies.iter().find(|r| r.get(&Attribute::StudyInstanceUid) == Some(&uid)).unwrap_or_else(|| panic!("study {n} must be found"))
    };
    fn derived(row: &QueryRow, a: Attribute) -> Option<&str> {
        row.get(&a).map(String::as_str)
    }
    for (n, modalities, series, instances) in [(1, Some("MR\\US"), "3", "6"), (2, Some("CT"), "1", "1"), (3, Some("US"), "2", "3"), (4, None, "1", "1")] {
        let row = study(n);
        assert_eq!(derived(row, Attribute::ModalitiesInStudy), modalities, "ModalitiesInStudy of study {n}");
        assert_eq!(derived(row, Attribute::NumberOfStudyRelatedSeries), Some(series), "NumberOfStudyRelatedSeries of study {n}");
        assert_eq!(derived(row, Attribute::NumberOfStudyRelatedInstances), Some(instances), "NumberOfStudyRelatedInstances of study {n}");
    }
    let series = find(index, &Query::new(QueryLevel::Series));
    for (n, count) in [(1, "3"), (2, "2"), (3, "1"), (4, "1"), (5, "2"), (6, "1"), (7, "1")] {
        let uid = series_uid(n).to_string();
        let row = series.iter().find(|r| r.get(&Attribute::SeriesInstanceUid) == Some(&uid)).unwrap_or_else(|| panic!("series {n} must be found"));
        assert_eq!(derived(row, Attribute::NumberOfSeriesRelatedInstances), Some(count), "NumberOfSeriesRelatedInstances of series {n}");
    }

    // Keyed queries at each level.
    let has = |a: Attribute, v: &'static str| move |r: &QueryRow| r.get(&a).is_some_and(|x| x.split('\\').any(|x| x == v));
    let pid1 = patient_id(1);
    let q = query(QueryLevel::Patient, &[(Attribute::PatientId, pid1.as_str())]);
    assert_find(index, &records, &q, |r| r.get(&Attribute::PatientId) == Some(&pid1), "Patient level, single PatientID");
    let q = query(QueryLevel::Patient, &[(Attribute::PatientId, "\"\"")]);
    assert_find(index, &records, &q, |r| !r.contains_key(&Attribute::PatientId), "Patient level, empty PatientID");
    let q = query(QueryLevel::Patient, &[(Attribute::PatientName, "*Bri?n^*")]);
    assert_find(index, &records, &q, has(Attribute::PatientName, "O'Brien^Siobhán"), "Patient level, wildcard PatientName");
    let uid3 = study_uid(3).to_string();
    let q = query(QueryLevel::Study, &[(Attribute::StudyInstanceUid, uid3.as_str())]);
    assert_find(index, &records, &q, |r| r.get(&Attribute::StudyInstanceUid) == Some(&uid3), "Study level, single StudyInstanceUID");
    let q = query(QueryLevel::Study, &[(Attribute::ModalitiesInStudy, "US")]);
    assert_find(index, &records, &q, has(Attribute::ModalitiesInStudy, "US"), "Study level, ModalitiesInStudy US");
    let q = query(QueryLevel::Study, &[(Attribute::ModalitiesInStudy, "\"\"")]);
    assert_find(index, &records, &q, |r| !r.contains_key(&Attribute::ModalitiesInStudy), "Study level, empty ModalitiesInStudy");
    let q = query(QueryLevel::Study, &[(Attribute::NumberOfStudyRelatedSeries, "3")]);
    assert_find(index, &records, &q, has(Attribute::NumberOfStudyRelatedSeries, "3"), "Study level, NumberOfStudyRelatedSeries");
    let q = query(QueryLevel::Series, &[(Attribute::Modality, "MR"), (Attribute::PatientId, pid1.as_str())]);
    assert_find(
        index,
        &records,
        &q,
        |r| has(Attribute::Modality, "MR")(r) && r.get(&Attribute::PatientId) == Some(&pid1),
        "Series level, Modality and PatientID",
    );
    let q = query(QueryLevel::Series, &[(Attribute::NumberOfSeriesRelatedInstances, "2")]);
    assert_find(index, &records, &q, has(Attribute::NumberOfSeriesRelatedInstances, "2"), "Series level, NumberOfSeriesRelatedInstances");
    let s1 = series_uid(1).to_string();
    let q = query(QueryLevel::Instance, &[(Attribute::SeriesInstanceUid, s1.as_str())]);
    assert_find(index, &records, &q, |r| r.get(&Attribute::SeriesInstanceUid) == Some(&s1), "Instance level, SeriesInstanceUID");
    let list = format!("{}\\{}\\{UID_ROOT}.3.999", sop_uid(2), sop_uid(9));
    let q = query(QueryLevel::Instance, &[(Attribute::SopInstanceUid, list.as_str())]);
    let wanted = [sop_uid(2).to_string(), sop_uid(9).to_string()];
    assert_find(index, &records, &q, |r| r.get(&Attribute::SopInstanceUid).is_some_and(|u| wanted.contains(u)), "Instance level, list of SOPInstanceUIDs");
}

/// The attributes of a patient, study and series are those of their first instance: a later
/// instance with other values does not change them (its own instance attributes are kept).
pub fn index_parent_attributes_from_first_instance(index: &dyn Index) {
    assert_empty_index(index, "index_parent_attributes_from_first_instance");
    let first = record(1, 1, 1, 1);
    let mut second = record(2, 1, 1, 1);
    for (a, v) in [
        (Attribute::PatientName, "Other^Name"),
        (Attribute::StudyDescription, "Another description"),
        (Attribute::AccessionNumber, "ACC-OTHER"),
        (Attribute::SeriesDescription, "Another series description"),
        (Attribute::Modality, "OT"),
    ] {
        second.attributes.insert(a, v.to_owned());
    }
    insert_new(index, std::slice::from_ref(&first));
    insert_new(index, std::slice::from_ref(&second));
    let records = [first.clone(), second.clone()];
    assert_index_holds(index, &records, "after a second instance with other parent attributes");
    let series = find(index, &Query::new(QueryLevel::Series));
    assert_eq!(series.len(), 1, "one series");
    assert_eq!(series[0].get(&Attribute::Modality).map(String::as_str), first.get(Attribute::Modality), "the series keeps its first instance's Modality");
    let again = stored(index, &second.sop_instance_uid);
    assert_eq!(again.get(Attribute::InstanceNumber), Some("2"), "the second instance keeps its own Instance Number");
    assert_eq!(again.get(Attribute::StudyDescription), first.get(Attribute::StudyDescription), "the study keeps its first instance's description");
}

/// Re-inserting the same object (same checksum) is idempotent under every policy: the outcome
/// is AlreadyPresent with the stored blob (even when the offered copy has another blob key),
/// and nothing changes.
pub fn index_idempotent_reinsert(index: &dyn Index) {
    assert_empty_index(index, "index_idempotent_reinsert");
    let records = sample_archive();
    insert_new(index, &records);
    let before = ok("stats", index.stats());
    for policy in [DuplicatePolicy::KeepExisting, DuplicatePolicy::Replace, DuplicatePolicy::Reject] {
        for r in &records {
            let outcomes = insert(index, std::slice::from_ref(r), policy);
            assert_eq!(outcomes[0], InsertOutcome::AlreadyPresent { existing: r.blob.clone() }, "re-inserting {} under {policy:?}", r.sop_instance_uid);
            let mut elsewhere = r.clone();
            elsewhere.blob = BlobKey::new(format!("elsewhere/{}.dcm", r.sop_instance_uid)).expect("valid key");
            let outcomes = insert(index, std::slice::from_ref(&elsewhere), policy);
            assert_eq!(
                outcomes[0],
                InsertOutcome::AlreadyPresent { existing: r.blob.clone() },
                "the same bytes under another blob key ({}) under {policy:?} must report the stored blob",
                r.sop_instance_uid
            );
        }
    }
    assert_eq!(ok("stats", index.stats()), before, "idempotent re-inserts must not change the stats");
    for r in &records {
        assert_eq!(&stored(index, &r.sop_instance_uid), r, "an idempotent re-insert must not change the record");
    }
    assert_index_holds(index, &records, "after idempotent re-inserts");
}

/// A different object under a stored SOP Instance UID, under each [`DuplicatePolicy`]:
/// KeepExisting reports KeptExisting and keeps the old record; Replace reports Replaced with the
/// old blob and the new record becomes visible (also when it moves the instance to another
/// study, whose emptied parents are pruned); Reject reports Refused and keeps the old record.
pub fn index_duplicate_policies(index: &dyn Index) {
    assert_empty_index(index, "index_duplicate_policies");
    let keep = record(1, 1, 1, 1);
    let reject = record(2, 1, 1, 1);
    let replace = record(3, 1, 1, 1);
    let moved = record(4, 2, 2, 2);
    insert_new(index, &[keep.clone(), reject.clone(), replace.clone(), moved.clone()]);

    let keep2 = different_copy(&keep, 1);
    let outcomes = insert(index, std::slice::from_ref(&keep2), DuplicatePolicy::KeepExisting);
    assert_eq!(outcomes[0], InsertOutcome::KeptExisting { existing: keep.blob.clone() }, "KeepExisting: outcome");
    assert_eq!(stored(index, &keep.sop_instance_uid), keep, "KeepExisting: the stored record must be unchanged");

    let reject2 = different_copy(&reject, 1);
    let outcomes = insert(index, std::slice::from_ref(&reject2), DuplicatePolicy::Reject);
    assert_eq!(outcomes[0], InsertOutcome::Refused { existing: reject.blob.clone() }, "Reject: outcome");
    assert_eq!(stored(index, &reject.sop_instance_uid), reject, "Reject: the stored record must be unchanged");

    let replace2 = different_copy(&replace, 1);
    let outcomes = insert(index, std::slice::from_ref(&replace2), DuplicatePolicy::Replace);
    assert_eq!(outcomes[0], InsertOutcome::Replaced { old: replace.blob.clone() }, "Replace: outcome");
    assert_eq!(stored(index, &replace.sop_instance_uid), replace2, "Replace: the new record must be visible");

    // Replace an instance by a copy in another patient, study and series: the old ones, left
    // empty, are pruned.
    let mut moved2 = record(4, 3, 3, 3);
    moved2.checksum = checksum(4444);
    moved2.blob = BlobKey::new("moved/4.dcm").expect("valid key");
    let outcomes = insert(index, std::slice::from_ref(&moved2), DuplicatePolicy::Replace);
    assert_eq!(outcomes[0], InsertOutcome::Replaced { old: moved.blob.clone() }, "Replace into another study: outcome");
    assert_eq!(stored(index, &moved.sop_instance_uid), moved2, "Replace into another study: the new record must be visible");

    let records = [keep, reject, replace2, moved2];
    assert_index_holds(index, &records, "after conflicting duplicates");
    let studies: Vec<Vec<String>> = find(index, &Query::new(QueryLevel::Study)).iter().map(|r| natural_key(QueryLevel::Study, r)).collect();
    assert!(!studies.contains(&vec![study_uid(2).to_string()]), "the study emptied by a replacement must be pruned");
}

/// A batch is applied in order: it may hold the same SOP Instance UID twice, the second
/// occurrence seeing the first (AlreadyPresent for the same bytes; KeptExisting, Replaced or
/// Refused for other bytes, by policy). An empty batch is accepted.
pub fn index_batch_with_duplicates(index: &dyn Index) {
    assert_empty_index(index, "index_batch_with_duplicates");
    assert!(insert(index, &[], DuplicatePolicy::KeepExisting).is_empty(), "an empty batch returns no outcome");
    assert_eq!(ok("stats", index.stats()), Stats::default(), "an empty batch changes nothing");

    let same = record(1, 1, 1, 1);
    let outcomes = insert(index, &[same.clone(), same.clone()], DuplicatePolicy::KeepExisting);
    assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::AlreadyPresent { existing: same.blob.clone() }], "batch [a, a]");

    let keep = record(2, 1, 1, 1);
    let keep2 = different_copy(&keep, 1);
    let outcomes = insert(index, &[keep.clone(), keep2], DuplicatePolicy::KeepExisting);
    assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::KeptExisting { existing: keep.blob.clone() }], "batch [b, b'] KeepExisting");
    assert_eq!(stored(index, &keep.sop_instance_uid), keep, "batch [b, b'] KeepExisting keeps b");

    let replace = record(3, 1, 1, 1);
    let replace2 = different_copy(&replace, 1);
    let outcomes = insert(index, &[replace.clone(), replace2.clone()], DuplicatePolicy::Replace);
    assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::Replaced { old: replace.blob.clone() }], "batch [c, c'] Replace");
    assert_eq!(stored(index, &replace.sop_instance_uid), replace2, "batch [c, c'] Replace keeps c'");

    let reject = record(4, 1, 1, 1);
    let reject2 = different_copy(&reject, 1);
    let outcomes = insert(index, &[reject.clone(), reject2], DuplicatePolicy::Reject);
    assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::Refused { existing: reject.blob.clone() }], "batch [d, d'] Reject");
    assert_eq!(stored(index, &reject.sop_instance_uid), reject, "batch [d, d'] Reject keeps d");

    assert_index_holds(index, &[same, keep, replace2, reject], "after batches with duplicates");
}

/// `instance` returns the stored record of a SOP Instance UID, or `None` when it is not stored.
pub fn index_instance_lookup(index: &dyn Index) {
    assert_empty_index(index, "index_instance_lookup");
    assert_eq!(ok("instance", index.instance(&sop_uid(1))), None, "instance of an empty index");
    let records = sample_archive();
    insert_new(index, &records);
    for r in &records {
        assert_eq!(&stored(index, &r.sop_instance_uid), r, "instance {}", r.sop_instance_uid);
    }
    assert_eq!(ok("instance", index.instance(&sop_uid(999))), None, "instance of a missing SOP Instance UID");
    assert_eq!(ok("instance", index.instance(&study_uid(1))), None, "a study UID is not a SOP Instance UID");
}

/// `instances(scope)` for each [`Scope`] variant: exactly the records of the patient (by ID and
/// issuer, the empty strings for none), study, series or instance, equal to what was inserted,
/// grouped by series and ordered by Instance Number within a series; nothing for a missing
/// scope.
pub fn index_instances_by_scope(index: &dyn Index) {
    assert_empty_index(index, "index_instances_by_scope");
    let records = sample_archive();
    insert_new(index, &records);
    let select = |f: &dyn Fn(&InstanceRecord) -> bool| -> Vec<&InstanceRecord> { records.iter().filter(|r| f(r)).collect() };
    let patient = |p: u32| Scope::Patient { id: patient_id(p), issuer: patient_issuer(p) };
    let cases: Vec<(Scope, Vec<&InstanceRecord>)> = vec![
        (patient(1), select(&|r| r.get(Attribute::PatientId) == Some(&patient_id(1)))),
        (patient(2), select(&|r| r.get(Attribute::PatientId) == Some(&patient_id(2)))),
        (Scope::Patient { id: String::new(), issuer: String::new() }, select(&|r| r.get(Attribute::PatientId).is_none())),
        (Scope::Patient { id: patient_id(2), issuer: String::new() }, vec![]),
        (Scope::Patient { id: "nobody".into(), issuer: String::new() }, vec![]),
        (Scope::Study(study_uid(1)), select(&|r| r.study_instance_uid == study_uid(1))),
        (Scope::Study(study_uid(4)), select(&|r| r.study_instance_uid == study_uid(4))),
        (Scope::Study(study_uid(99)), vec![]),
        (Scope::Series(series_uid(1)), select(&|r| r.series_instance_uid == series_uid(1))),
        (Scope::Series(series_uid(99)), vec![]),
        (Scope::Instance(sop_uid(5)), select(&|r| r.sop_instance_uid == sop_uid(5))),
        (Scope::Instance(sop_uid(99)), vec![]),
    ];
    for (scope, expected) in cases {
        let got = ok("instances", index.instances(&scope));
        let mut got_uids = sop_uids(&got);
        got_uids.sort();
        let mut want: Vec<String> = expected.iter().map(|r| r.sop_instance_uid.to_string()).collect();
        want.sort();
        assert_eq!(got_uids, want, "instances({scope:?}) returned other instances");
        for r in &got {
            let inserted = records.iter().find(|x| x.sop_instance_uid == r.sop_instance_uid).expect("known instance");
            assert_eq!(r, inserted, "instances({scope:?}) returned a record different from the inserted one");
        }
        // Grouped by series, ordered by Instance Number within each series.
        let mut seen: Vec<&Uid> = Vec::new();
        for (i, r) in got.iter().enumerate() {
            if i > 0 && got[i - 1].series_instance_uid == r.series_instance_uid {
                let number = |x: &InstanceRecord| x.get(Attribute::InstanceNumber).and_then(|n| n.parse::<i64>().ok());
                assert!(number(&got[i - 1]) <= number(r), "instances({scope:?}) must order a series by Instance Number: {:?}", sop_uids(&got));
            } else {
                assert!(!seen.contains(&&r.series_instance_uid), "instances({scope:?}) must keep each series together: {:?}", sop_uids(&got));
                seen.push(&r.series_instance_uid);
            }
        }
    }
}

/// `remove` at instance, series, study and patient level returns the removed records (equal to
/// those inserted), prunes the series, studies and patients left empty, and the stats count
/// down to zero (bytes included); removing a missing scope removes nothing.
pub fn index_remove(index: &dyn Index) {
    assert_empty_index(index, "index_remove");
    let mut remaining = sample_archive();
    insert_new(index, &remaining);
    let steps: Vec<(Scope, &str)> = vec![
        (Scope::Instance(sop_uid(99)), "a missing instance"),
        (Scope::Study(study_uid(99)), "a missing study"),
        (Scope::Instance(sop_uid(2)), "one instance of a series of three"),
        (Scope::Series(series_uid(1)), "the rest of series 1"),
        (Scope::Instance(sop_uid(7)), "the only instance of study 2 (prunes the study)"),
        (Scope::Series(series_uid(6)), "a series of study 3"),
        (Scope::Study(study_uid(1)), "study 1 (prunes patient 1)"),
        (Scope::Patient { id: patient_id(2), issuer: String::new() }, "patient 2 with the wrong issuer"),
        (Scope::Patient { id: patient_id(2), issuer: patient_issuer(2) }, "patient 2"),
        (Scope::Patient { id: String::new(), issuer: String::new() }, "the patient without ID"),
    ];
    for (scope, what) in steps {
        let in_scope = |r: &InstanceRecord| match &scope {
            Scope::Patient { id, issuer } => r.get(Attribute::PatientId).unwrap_or("") == id && r.get(Attribute::IssuerOfPatientId).unwrap_or("") == issuer,
            Scope::Study(uid) => &r.study_instance_uid == uid,
            Scope::Series(uid) => &r.series_instance_uid == uid,
            Scope::Instance(uid) => &r.sop_instance_uid == uid,
        };
        let (gone, kept): (Vec<InstanceRecord>, Vec<InstanceRecord>) = remaining.into_iter().partition(|r| in_scope(r));
        remaining = kept;
        let removed = ok("remove", index.remove(&scope));
        let mut got = removed.clone();
        got.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
        let mut want = gone.clone();
        want.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
        assert_eq!(got, want, "removing {what}: remove must return exactly the removed records, as inserted");
        for r in &gone {
            assert_eq!(ok("instance", index.instance(&r.sop_instance_uid)), None, "removing {what}: {} must be gone", r.sop_instance_uid);
        }
        assert_index_holds(index, &remaining, &format!("after removing {what}"));
    }
    assert_eq!(ok("stats", index.stats()), Stats::default(), "after removing everything the stats must be zero");
}

/// `stats` counts patients (by Patient ID and issuer, the patient without ID included),
/// studies, series, instances and the sum of the object sizes, before and after inserts.
pub fn index_stats(index: &dyn Index) {
    assert_empty_index(index, "index_stats");
    let records = sample_archive();
    insert_new(index, &records[..4]);
    assert_eq!(ok("stats", index.stats()), expected_stats(&records[..4]), "stats after a first batch");
    insert_new(index, &records[4..]);
    let stats = ok("stats", index.stats());
    assert_eq!(stats, expected_stats(&records), "stats after the whole sample");
    assert_eq!(stats, Stats { patients: 3, studies: 4, series: 7, instances: 11, bytes: records.iter().map(|r| r.size).sum() }, "stats of the sample archive");
}

/// `for_each` visits every record exactly once, equal to what was inserted, and stops with the
/// callback's error when it fails.
pub fn index_for_each(index: &dyn Index) {
    assert_empty_index(index, "index_for_each");
    let mut calls = 0;
    ok(
        "for_each",
        index.for_each(&mut |_| {
            calls += 1;
            Ok(())
        }),
    );
    assert_eq!(calls, 0, "for_each on an empty index must not call back");
    let records = sample_archive();
    insert_new(index, &records);
    let seen = visited(index);
    let want = by_sop_uid(records.clone());
    assert_eq!(sop_uids(&seen), sop_uids(&want), "for_each must visit each record exactly once");
    assert_eq!(seen, want, "for_each must return the records as inserted");
    let mut calls = 0;
    let result = index.for_each(&mut |_| {
        calls += 1;
        Err(Error::Conflict { what: "stop".into() })
    });
    assert!(matches!(result, Err(Error::Conflict { .. })), "for_each must return the callback's error, got {result:?}");
    assert_eq!(calls, 1, "for_each must stop at the callback's first error");
}

/// `limit` and `offset` page through the natural key order: pages hold at most `limit` rows,
/// their concatenation is the unpaged result (nothing lost, nothing repeated), at every level and
/// with a key; `limit` 0 and an offset past the end give nothing; an offset alone skips.
pub fn index_paging(index: &dyn Index) {
    assert_empty_index(index, "index_paging");
    // 23 studies over 11 patients (IDs PID1, PID10, PID11, PID2...: not numeric order), with
    // one to three series each.
    let mut records = Vec::new();
    let mut n = 0;
    for study in 1..=23u32 {
        for series in 0..(1 + study % 3) {
            n += 1;
            records.push(record(n, 1 + study % 11, study, study * 10 + series));
        }
    }
    insert_new(index, &records);
    let queries = [
        Query::new(QueryLevel::Patient),
        Query::new(QueryLevel::Study),
        Query::new(QueryLevel::Series),
        Query::new(QueryLevel::Instance),
        query(QueryLevel::Series, &[(Attribute::Modality, "CT")]),
        query(QueryLevel::Study, &[(Attribute::StudyDate, "20240201-")]),
    ];
    for q in queries {
        let all = find(index, &q);
        let keys: Vec<Vec<String>> = all.iter().map(|r| natural_key(q.level, r)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{q:?}: rows must be in strictly ascending natural key order: {keys:?}");
        for limit in [1usize, 4, 7, 100] {
            let mut paged = Vec::new();
            let mut offset = 0;
            loop {
                let page = find(index, &Query { limit: Some(limit), offset, ..q.clone() });
                assert!(page.len() <= limit, "{q:?}: a page of limit {limit} returned {} rows", page.len());
                let done = page.len() < limit;
                offset += page.len();
                paged.extend(page);
                if done || paged.len() > all.len() {
                    break;
                }
            }
            assert_eq!(paged, all, "{q:?}: pages of {limit} must concatenate to the unpaged result");
        }
        assert!(find(index, &Query { limit: Some(0), ..q.clone() }).is_empty(), "{q:?}: limit 0 returns nothing");
        assert!(find(index, &Query { limit: Some(5), offset: all.len(), ..q.clone() }).is_empty(), "{q:?}: an offset past the end returns nothing");
        let skip = all.len() / 2;
        assert_eq!(find(index, &Query { offset: skip, ..q.clone() }), all[skip..].to_vec(), "{q:?}: an offset without limit skips rows");
    }
}

/// What is stored comes back unchanged: `instance`, `instances` and `for_each` return records
/// equal to those inserted, with every kind of pixel layout (unknown, native, encapsulated with
/// and without fragments), with and without `frame_size`, large offsets, non-ASCII text, SQL
/// and wildcard characters in values, a multi-valued Referring Physician's Name, and a record
/// with only its UIDs.
pub fn index_record_round_trip(index: &dyn Index) {
    assert_empty_index(index, "index_record_round_trip");
    let native = record(1, 1, 1, 1);
    let mut unknown = record(2, 1, 1, 1);
    unknown.pixel = PixelLayout::Unknown;
    unknown.frame_size = None;
    unknown.attributes.remove(&Attribute::NumberOfFrames);
    unknown.attributes.remove(&Attribute::Rows);
    unknown.attributes.remove(&Attribute::Columns);
    let mut encapsulated = record(3, 2, 2, 2);
    encapsulated.pixel = PixelLayout::Encapsulated { fragments: vec![(2048, 1000), (3056, 500), (3564, 2001)], offset_table: vec![0, 1008, 1516] };
    encapsulated.frame_size = None;
    encapsulated.attributes.insert(Attribute::NumberOfFrames, "3".into());
    encapsulated.transfer_syntax_uid = Uid::new("1.2.840.10008.1.2.4.50").expect("valid UID");
    encapsulated.attributes.insert(Attribute::TransferSyntaxUid, "1.2.840.10008.1.2.4.50".into());
    let mut empty_fragments = record(4, 2, 2, 2);
    empty_fragments.pixel = PixelLayout::Encapsulated { fragments: vec![], offset_table: vec![] };
    empty_fragments.frame_size = None;
    let mut large = record(5, 3, 3, 3);
    large.pixel = PixelLayout::Native { offset: u64::from(u32::MAX) + 17, length: 1 << 40 };
    large.frame_size = Some(1 << 38);
    large.attributes.insert(Attribute::NumberOfFrames, "4".into());
    large.attributes.insert(Attribute::Rows, "65535".into());
    large.size = (1 << 40) + 4096;
    let mut text = record(6, 4, 4, 4);
    for (a, v) in [
        (Attribute::PatientName, "Ïñtërnâtiônàl^Zoë=山田^太郎"),
        (Attribute::PatientId, "O'Hara; DROP TABLE patients; --"),
        (Attribute::StudyDescription, "100% [contrast] *not* a ?wildcard"),
        (Attribute::ReferringPhysicianName, "Doe^Jane\\Roe^Richard"),
        (Attribute::SeriesDescription, "tab\tand \"quotes\""),
    ] {
        text.attributes.insert(a, v.to_owned());
    }
    let bare = bare_record(7, 5, 5);
    let records = vec![native, unknown, encapsulated, empty_fragments, large, text, bare];
    insert_new(index, &records);
    for r in &records {
        assert_eq!(&stored(index, &r.sop_instance_uid), r, "instance {} must come back as inserted", r.sop_instance_uid);
        let listed = ok("instances", index.instances(&Scope::Instance(r.sop_instance_uid.clone())));
        assert_eq!(listed, vec![r.clone()], "instances(Instance {}) must come back as inserted", r.sop_instance_uid);
        assert_eq!(r.frame_ranges(), stored(index, &r.sop_instance_uid).frame_ranges(), "frame ranges of {}", r.sop_instance_uid);
    }
    assert_eq!(visited(index), by_sop_uid(records.clone()), "for_each must return the records as inserted");
    assert_index_holds(index, &records, "after the round trip records");
}

/// An index suite: it takes a fresh, empty index and panics on a violation of the contract.
pub type IndexSuite = fn(&dyn Index);

/// Every index suite, by name, for a backend test that runs them all in one go.
pub const INDEX_SUITES: &[(&str, IndexSuite)] = &[
    ("index_insert_and_find", index_insert_and_find),
    ("index_parent_attributes_from_first_instance", index_parent_attributes_from_first_instance),
    ("index_idempotent_reinsert", index_idempotent_reinsert),
    ("index_duplicate_policies", index_duplicate_policies),
    ("index_batch_with_duplicates", index_batch_with_duplicates),
    ("index_instance_lookup", index_instance_lookup),
    ("index_instances_by_scope", index_instances_by_scope),
    ("index_remove", index_remove),
    ("index_stats", index_stats),
    ("index_for_each", index_for_each),
    ("index_paging", index_paging),
    ("index_record_round_trip", index_record_round_trip),
];

// ---------------------------------------------------------------------------------------------
// Blob store suites
// ---------------------------------------------------------------------------------------------

/// Deterministic content: byte `i` of object `seed`.
pub fn content_byte(seed: u8, i: u64) -> u8 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 7) ^ (i >> 19);
    (x >> 24) as u8 ^ seed
}

/// Deterministic content: bytes `range` of object `seed`.
pub fn content(seed: u8, range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(|i| content_byte(seed, i)).collect()
}

fn key(text: &str) -> BlobKey {
    BlobKey::new(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn assert_empty_store(store: &dyn BlobStore, suite: &str) {
    let listed = listing(store);
    assert!(listed.is_empty(), "{suite} needs an empty blob store, {} lists {listed:?}", store.describe());
}

/// Every listed key with its size, checking that no key is listed twice.
fn listing(store: &dyn BlobStore) -> BTreeMap<BlobKey, u64> {
    let mut out = BTreeMap::new();
    let mut twice = Vec::new();
    ok(
        "list",
        store.list(&mut |k, size| {
            if out.insert(k.clone(), size).is_some() {
                twice.push(k);
            }
        }),
    );
    assert!(twice.is_empty(), "list must report each object once; listed twice: {twice:?}");
    out
}

fn size(store: &dyn BlobStore, k: &BlobKey) -> Option<u64> {
    ok("size", store.size(k))
}

/// Writes `len` bytes of content `seed` under `k` in chunks of `chunk` bytes, checking that
/// nothing is visible before `finish`.
fn write_object(store: &dyn BlobStore, k: &BlobKey, seed: u8, len: u64, chunk: u64) {
    let mut w = ok("create", store.create(k));
    let mut at = 0;
    while at < len {
        let end = (at + chunk).min(len);
        ok("write", w.write(&content(seed, at..end)));
        at = end;
    }
    assert_eq!(size(store, k), None, "{k}: nothing may be visible before finish");
    assert!(!listing(store).contains_key(k), "{k}: nothing may be listed before finish");
    ok("finish", w.finish());
}

fn read_all(store: &dyn BlobStore, k: &BlobKey) -> Vec<u8> {
    let mut out = Vec::new();
    ok("open", store.open(k)).read_to_end(&mut out).unwrap_or_else(|e| panic!("reading {k}: {e}"));
    out
}

/// Checks `open` streams exactly content `seed` of length `len`, comparing block by block.
fn assert_stream(store: &dyn BlobStore, k: &BlobKey, seed: u8, len: u64) {
    let mut reader = ok("open", store.open(k));
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap_or_else(|e| panic!("reading {k} at {at}: {e}"));
        if n == 0 {
            break;
        }
        assert!(at + n as u64 <= len, "{k}: open returned more than the {len} bytes written");
        assert!(buf[..n] == content(seed, at..at + n as u64)[..], "{k}: open returned other bytes than written around offset {at}");
        at += n as u64;
    }
    assert_eq!(at, len, "{k}: open returned {at} bytes, {len} were written");
}

fn assert_range(store: &dyn BlobStore, k: &BlobKey, seed: u8, range: std::ops::Range<u64>) {
    let got = ok("read_range", store.read_range(k, range.clone()));
    assert_eq!(got.len() as u64, range.end - range.start, "{k}: read_range {range:?} length");
    assert!(got[..] == content(seed, range.clone())[..], "{k}: read_range {range:?} returned other bytes than written");
}

/// Create, write in several chunks (an empty one included), finish, then `open`, `read_range`
/// and `size` return exactly what was written; nothing is visible before `finish`; a missing key
/// has no size and cannot be opened. An empty object is an object too.
pub fn blob_write_read(store: &dyn BlobStore) {
    assert_empty_store(store, "blob_write_read");
    assert!(!store.describe().is_empty(), "describe must not be empty");
    let k = key("conformance/chunks.dcm");
    let mut w = ok("create", store.create(&k));
    let chunks: [std::ops::Range<u64>; 5] = [0..0, 0..1, 1..1001, 1001..71001, 71001..71100];
    for c in &chunks {
        ok("write", w.write(&content(1, c.clone())));
    }
    assert_eq!(size(store, &k), None, "nothing may be visible before finish");
    ok("finish", w.finish());
    let len = 71100;
    assert_eq!(size(store, &k), Some(len), "size after finish");
    assert!(read_all(store, &k) == content(1, 0..len), "open must return exactly the bytes written");
    for r in [0..1, 0..len, 5..1005, len - 1..len, 1000..1002, 65536..70000] {
        assert_range(store, &k, 1, r);
    }
    let empty = key("conformance/empty.dcm");
    ok("finish", ok("create", store.create(&empty)).finish());
    assert_eq!(size(store, &empty), Some(0), "an empty object has size 0");
    assert!(read_all(store, &empty).is_empty(), "an empty object reads as nothing");
    let nested = BlobKey::for_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    write_object(store, &nested, 2, 4097, 1000);
    assert_eq!(size(store, &nested), Some(4097), "size of an object under nested folders");
    assert_stream(store, &nested, 2, 4097);
    let missing = key("conformance/missing.dcm");
    assert_eq!(size(store, &missing), None, "a missing key has no size");
    assert!(store.open(&missing).is_err(), "opening a missing key must fail");
    assert!(store.read_range(&missing, 0..1).is_err(), "reading a range of a missing key must fail");
}

/// A large object (20 MiB written in 1 MiB chunks: past the inline limit, several multipart
/// parts) reads back exactly, streamed and by ranges across the part boundaries.
pub fn blob_large_object(store: &dyn BlobStore) {
    assert_empty_store(store, "blob_large_object");
    const MIB: u64 = 1024 * 1024;
    let len = 20 * MIB;
    let k = key("conformance/large.dcm");
    write_object(store, &k, 3, len, MIB);
    assert_eq!(size(store, &k), Some(len), "size of the large object");
    assert_stream(store, &k, 3, len);
    for r in [0..10, MIB - 5..MIB + 5, 8 * MIB - 100..8 * MIB + 100, 16 * MIB - 1..16 * MIB + 1, 3 * MIB..11 * MIB, len - 7..len] {
        assert_range(store, &k, 3, r);
    }
    assert_eq!(listing(store).get(&k), Some(&len), "list must report the large object with its size");
    // An object of a size that is not a multiple of the chunk, written in odd chunks.
    let odd = key("conformance/odd.dcm");
    write_object(store, &odd, 4, 3 * MIB + 12345, 777_777);
    assert_eq!(size(store, &odd), Some(3 * MIB + 12345), "size of an object written in odd chunks");
    assert_stream(store, &odd, 4, 3 * MIB + 12345);
    ok("delete", store.delete(&k));
    ok("delete", store.delete(&odd));
}

/// `abort`, and dropping a writer without `finish`, leave nothing: no size, nothing listed,
/// small (buffered) and large (multipart) writes alike; the key can then be written normally.
pub fn blob_abort_and_drop(store: &dyn BlobStore) {
    assert_empty_store(store, "blob_abort_and_drop");
    let mib = 1024 * 1024;
    let cases: [(&str, u64, bool); 4] = [
        ("conformance/abort-small.dcm", 1000, true),
        ("conformance/drop-small.dcm", 1000, false),
        ("conformance/abort-large.dcm", 3 * mib + 5, true),
        ("conformance/drop-large.dcm", 3 * mib + 5, false),
    ];
    for (name, len, abort) in cases {
        let k = key(name);
        let mut w = ok("create", store.create(&k));
        let mut at = 0;
        while at < len {
            let end = (at + mib).min(len);
            ok("write", w.write(&content(5, at..end)));
            at = end;
        }
        if abort {
            w.abort();
        } else {
            drop(w);
        }
        let how = if abort { "abort" } else { "drop without finish" };
        assert_eq!(size(store, &k), None, "{k}: {how} after {len} bytes must leave no object");
        assert!(store.open(&k).is_err(), "{k}: {how} must leave nothing to open");
        assert!(listing(store).is_empty(), "{k}: {how} after {len} bytes must leave nothing listed: {:?}", listing(store));
    }
    let k = key("conformance/abort-small.dcm");
    write_object(store, &k, 6, 2000, 500);
    assert_eq!(size(store, &k), Some(2000), "a key can be written after an aborted write");
    assert_stream(store, &k, 6, 2000);
    ok("delete", store.delete(&k));
    assert!(listing(store).is_empty(), "nothing left at the end");
}

/// `delete` removes an object (no size, not listed, not readable) and leaves the others;
/// deleting it again, or deleting a key never written, is not an error.
pub fn blob_delete(store: &dyn BlobStore) {
    assert_empty_store(store, "blob_delete");
    let a = key("conformance/delete/a.dcm");
    let b = key("conformance/delete/b.dcm");
    write_object(store, &a, 7, 3000, 1000);
    write_object(store, &b, 8, 10, 10);
    ok("delete", store.delete(&a));
    assert_eq!(size(store, &a), None, "a deleted object has no size");
    assert!(store.open(&a).is_err(), "a deleted object cannot be opened");
    let listed = listing(store);
    assert!(!listed.contains_key(&a), "a deleted object must not be listed");
    assert_eq!(listed.get(&b), Some(&10), "deleting an object must leave the others");
    store.delete(&a).unwrap_or_else(|e| panic!("deleting a deleted key must be Ok: {e}"));
    store.delete(&key("conformance/never/written.dcm")).unwrap_or_else(|e| panic!("deleting a missing key must be Ok: {e}"));
    assert_stream(store, &b, 8, 10);
    ok("delete", store.delete(&b));
    assert!(listing(store).is_empty(), "nothing left after deleting everything");
}

/// `list` reports every finished object exactly once with its size (empty objects and nested
/// keys included), and nothing else.
pub fn blob_list(store: &dyn BlobStore) {
    assert_empty_store(store, "blob_list");
    let mut expected = BTreeMap::new();
    for (i, len) in [0u64, 1, 100, 4096, 70_000, 1_500_000].into_iter().enumerate() {
        let k = BlobKey::for_id(((i as u128) << 100) | (i as u128 * 0x1_0001));
        write_object(store, &k, i as u8, len, 300_000);
        expected.insert(k, len);
    }
    for name in ["conformance/list/x.dcm", "conformance/list/deeper/y.dcm", "top-level.dcm"] {
        write_object(store, &key(name), 9, 33, 33);
        expected.insert(key(name), 33);
    }
    // An unfinished write is not listed.
    let mut pending = ok("create", store.create(&key("conformance/list/pending.dcm")));
    ok("write", pending.write(b"not yet"));
    assert_eq!(listing(store), expected, "list must report each finished object once with its size");
    pending.abort();
    assert_eq!(listing(store), expected, "list after an abort");
    for k in expected.keys() {
        ok("delete", store.delete(k));
    }
    assert!(listing(store).is_empty(), "list after deleting everything");
}

/// `sync` of finished objects returns Ok, for no key, a few keys and a large batch (a store may
/// flush a batch at once). When `reopen` is given (a store whose objects outlive it, such as a
/// local folder), a second store opened over the same location sees the synced objects with
/// their bytes; pass `None` for a store that keeps nothing and whose `sync` is a no-op (memory).
pub fn blob_sync(store: &dyn BlobStore, reopen: Option<&dyn Fn() -> Box<dyn BlobStore>>) {
    assert_empty_store(store, "blob_sync");
    ok("sync", store.sync(&[]));
    let keys: Vec<BlobKey> = (0..12u8).map(|i| key(&format!("conformance/sync/{i:02}/object.dcm"))).collect();
    for (i, k) in keys.iter().enumerate() {
        write_object(store, k, i as u8, 1000 + i as u64, 700);
    }
    store.sync(&keys[..3]).unwrap_or_else(|e| panic!("sync of 3 finished objects must be Ok: {e}"));
    store.sync(&keys).unwrap_or_else(|e| panic!("sync of {} finished objects must be Ok: {e}", keys.len()));
    store.sync(&keys[5..6]).unwrap_or_else(|e| panic!("sync of 1 finished object must be Ok: {e}"));
    for (i, k) in keys.iter().enumerate() {
        assert_stream(store, k, i as u8, 1000 + i as u64);
    }
    if let Some(reopen) = reopen {
        let again = reopen();
        let listed = listing(again.as_ref());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(listed.get(k), Some(&(1000 + i as u64)), "{k}: a synced object must be listed by a reopened store");
            assert_stream(again.as_ref(), k, i as u8, 1000 + i as u64);
        }
    }
    for k in &keys {
        ok("delete", store.delete(k));
    }
    assert!(listing(store).is_empty(), "nothing left at the end");
}

/// A blob store suite: it takes a fresh, empty store and panics on a violation of the contract.
pub type BlobSuite = fn(&dyn BlobStore);

/// Every blob store suite that takes only the store, by name (see also [`blob_sync`]).
pub const BLOB_SUITES: &[(&str, BlobSuite)] = &[
    ("blob_write_read", blob_write_read),
    ("blob_large_object", blob_large_object),
    ("blob_abort_and_drop", blob_abort_and_drop),
    ("blob_delete", blob_delete),
    ("blob_list", blob_list),
];
