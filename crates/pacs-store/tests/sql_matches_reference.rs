//! The SQL index answers every query exactly as the reference matcher does.
//!
//! Property: for any set of records over a small value domain (mixed case and non-ASCII names,
//! a few dates and times, absent attributes, multi-valued Referring Physician's Names) and any
//! query at any level built from the matching kinds of PS3.4 C.2.2.2 (universal, empty, single
//! value, wildcard, list of UIDs, date and time ranges, open ended, with or without case
//! folding of person names and combined date-time matching), `SqliteIndex::find` returns the
//! rows that `pacs_core::matching::matches` accepts among the rows built from the records by
//! `conformance::expected_rows`, in natural key order, with the same values; and a page of it
//! (`limit`, `offset`) is the corresponding slice.

use pacs_core::attribute::{Attribute, ValueKind};
use pacs_core::matching::matches;
use pacs_core::query::{MatchOptions, Query, QueryLevel, QueryRow};
use pacs_core::scan::PixelLayout;
use pacs_core::{BlobKey, Index, InstanceRecord, Uid};
use pacs_store::SqliteIndex;
use pacs_store::conformance::{UID_ROOT, checksum, expected_rows, natural_key};
use proptest::prelude::*;
use proptest::sample::{Index as Pick, select};
use proptest::test_runner::TestCaseError;

const PATIENT_IDS: &[&str] = &["P1", "p1", "P2", "PX-7", "Ü-7"];
const ISSUERS: &[&str] = &["HOSP", "hosp"];
const PERSON_NAMES: &[&str] = &["Müller^Jürgen", "müller^jürgen", "MÜLLER^JÜRGEN", "Doe^John", "DOE^JOHN", "doe^john", "İnce^Ayşe", "Ström^Åsa"];
/// Referring Physician's Name has VM 1-n: some values are multi-valued, one with an empty value.
const REFERRING: &[&str] = &["Doe^John", "doe^john", "Müller^Jürgen", "Doe^John\\Müller^Jürgen", "müller^jürgen\\Roe^Rick", "Roe^Rick\\"];
const BIRTH_DATES: &[&str] = &["19500101", "19800615", "20000229"];
const SEXES: &[&str] = &["M", "F", "O"];
const DATES: &[&str] = &["19991231", "20240101", "20240102", "20240103", "20240104", "20240105"];
const TIMES: &[&str] = &["000000.000000", "083015.500000", "103000.000000", "103059.999999", "120000.000000", "220000.000000", "235959.999999"];
const ACCESSIONS: &[&str] = &["A1", "a1", "A2", "A10", "B-1"];
const STUDY_IDS: &[&str] = &["1", "S1", "s1"];
const DESCRIPTIONS: &[&str] = &["Head [contrast]", "head", "CT*Thorax", "Abdomen ?", "Ünïcode"];
const MODALITIES: &[&str] = &["CT", "MR", "US"];
const SERIES_DESCRIPTIONS: &[&str] = &["Axial", "axial", "Sag 2mm"];
const BODY_PARTS: &[&str] = &["HEAD", "CHEST", "head"];
const SOP_CLASSES: &[&str] = &["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"];
const TRANSFER_SYNTAXES: &[&str] = &["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"];
const INTEGERS: &[&str] = &["1", "2", "3", "4"];
const FRAMES: &[&str] = &["1", "3"];
const ROWS: &[&str] = &["256", "512"];

/// Key operands of time attributes (any precision), for single values and range bounds.
const TIME_OPERANDS: &[&str] = &["00", "08", "0830", "083015", "10", "1030", "103059", "103059.9", "12", "2200", "235959.999999"];
/// Key operands of date attributes (one in the legacy form).
const DATE_OPERANDS: &[&str] = &["19991231", "20240101", "2024.01.02", "20240103", "20240105", "20241231"];
/// Key operands of integer attributes (leading zeros included).
const INTEGER_OPERANDS: &[&str] = &["0", "1", "2", "007", "3", "4", "6", "512"];

#[derive(Clone, Debug)]
struct PatientGen {
    id: Option<&'static str>,
    issuer: Option<&'static str>,
    name: Option<&'static str>,
    birth: Option<&'static str>,
    sex: Option<&'static str>,
}

#[derive(Clone, Debug)]
struct StudyGen {
    patient: usize,
    date: Option<&'static str>,
    time: Option<&'static str>,
    accession: Option<&'static str>,
    study_id: Option<&'static str>,
    description: Option<&'static str>,
    referring: Option<&'static str>,
}

#[derive(Clone, Debug)]
struct SeriesGen {
    study: usize,
    modality: Option<&'static str>,
    number: Option<&'static str>,
    description: Option<&'static str>,
    body_part: Option<&'static str>,
    date: Option<&'static str>,
}

#[derive(Clone, Debug)]
struct InstanceGen {
    series: usize,
    number: Option<&'static str>,
    frames: Option<&'static str>,
    rows: Option<&'static str>,
    class: &'static str,
    ts: &'static str,
}

fn some(values: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::weighted(0.8, select(values))
}

fn patient() -> impl Strategy<Value = PatientGen> {
    (some(PATIENT_IDS), proptest::option::of(select(ISSUERS)), some(PERSON_NAMES), some(BIRTH_DATES), some(SEXES))
        .prop_map(|(id, issuer, name, birth, sex)| PatientGen { id, issuer, name, birth, sex })
}

fn study() -> impl Strategy<Value = StudyGen> {
    (any::<usize>(), some(DATES), some(TIMES), some(ACCESSIONS), some(STUDY_IDS), some(DESCRIPTIONS), some(REFERRING)).prop_map(
        |(patient, date, time, accession, study_id, description, referring)| StudyGen { patient, date, time, accession, study_id, description, referring },
    )
}

fn series() -> impl Strategy<Value = SeriesGen> {
    (any::<usize>(), some(MODALITIES), some(INTEGERS), some(SERIES_DESCRIPTIONS), some(BODY_PARTS), some(DATES))
        .prop_map(|(study, modality, number, description, body_part, date)| SeriesGen { study, modality, number, description, body_part, date })
}

fn instance() -> impl Strategy<Value = InstanceGen> {
    (any::<usize>(), some(INTEGERS), some(FRAMES), some(ROWS), select(SOP_CLASSES), select(TRANSFER_SYNTAXES))
        .prop_map(|(series, number, frames, rows, class, ts)| InstanceGen { series, number, frames, rows, class, ts })
}

#[derive(Clone, Debug)]
struct World {
    patients: Vec<PatientGen>,
    studies: Vec<StudyGen>,
    series: Vec<SeriesGen>,
    instances: Vec<InstanceGen>,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(patient(), 1..=5),
        prop::collection::vec(study(), 1..=12),
        prop::collection::vec(series(), 1..=16),
        prop::collection::vec(instance(), 30..=60),
    )
        .prop_map(|(patients, studies, series, instances)| World { patients, studies, series, instances })
}

fn study_uid(j: usize) -> String {
    format!("{UID_ROOT}.1.{}", j + 1)
}

fn series_uid(i: usize) -> String {
    format!("{UID_ROOT}.2.{}", i + 1)
}

fn sop_uid(k: usize) -> String {
    format!("{UID_ROOT}.3.{}", k + 1)
}

fn valid(uid: &str) -> Uid {
    Uid::new(uid).unwrap_or_else(|e| panic!("{e}"))
}

/// The records of a world, in insertion order. Every instance carries the attributes of its
/// series, study and patient, so that a study is under one patient.
fn records(world: &World) -> Vec<InstanceRecord> {
    world
        .instances
        .iter()
        .enumerate()
        .map(|(k, inst)| {
            let i = inst.series % world.series.len();
            let se = &world.series[i];
            let j = se.study % world.studies.len();
            let st = &world.studies[j];
            let p = &world.patients[st.patient % world.patients.len()];
            let mut attributes = QueryRow::new();
            let mut put = |a: Attribute, v: Option<&str>| {
                if let Some(v) = v {
                    attributes.insert(a, v.to_owned());
                }
            };
            put(Attribute::PatientId, p.id);
            put(Attribute::IssuerOfPatientId, p.issuer);
            put(Attribute::PatientName, p.name);
            put(Attribute::PatientBirthDate, p.birth);
            put(Attribute::PatientSex, p.sex);
            put(Attribute::StudyInstanceUid, Some(&study_uid(j)));
            put(Attribute::StudyDate, st.date);
            put(Attribute::StudyTime, st.time);
            put(Attribute::AccessionNumber, st.accession);
            put(Attribute::StudyId, st.study_id);
            put(Attribute::StudyDescription, st.description);
            put(Attribute::ReferringPhysicianName, st.referring);
            put(Attribute::SeriesInstanceUid, Some(&series_uid(i)));
            put(Attribute::Modality, se.modality);
            put(Attribute::SeriesNumber, se.number);
            put(Attribute::SeriesDescription, se.description);
            put(Attribute::BodyPartExamined, se.body_part);
            put(Attribute::SeriesDate, se.date);
            put(Attribute::SopInstanceUid, Some(&sop_uid(k)));
            put(Attribute::SopClassUid, Some(inst.class));
            put(Attribute::InstanceNumber, inst.number);
            put(Attribute::TransferSyntaxUid, Some(inst.ts));
            put(Attribute::NumberOfFrames, inst.frames);
            put(Attribute::Rows, inst.rows);
            put(Attribute::Columns, inst.rows);
            InstanceRecord {
                sop_instance_uid: valid(&sop_uid(k)),
                sop_class_uid: valid(inst.class),
                series_instance_uid: valid(&series_uid(i)),
                study_instance_uid: valid(&study_uid(j)),
                transfer_syntax_uid: valid(inst.ts),
                attributes,
                pixel: PixelLayout::Native { offset: 1024, length: 4096 },
                frame_size: None,
                size: 5000 + k as u64,
                checksum: checksum(k as u64),
                blob: BlobKey::for_id(k as u128 + 1),
                original: None,
            }
        })
        .collect()
}

/// One generated key: which attribute (among those the level allows), which matching kind, and
/// two picks for its operands.
#[derive(Clone, Debug)]
struct KeyGen {
    attribute: Pick,
    kind: u8,
    a: Pick,
    b: Pick,
}

#[derive(Clone, Debug)]
struct QueryGen {
    level: Pick,
    keys: Vec<KeyGen>,
    case_insensitive_pn: bool,
    combine_datetime: bool,
    /// Keys on both StudyDate and StudyTime (below Patient level), the case that combined
    /// date-time matching changes: shapes and operands of the date and of the time.
    datetime: Option<(u8, Pick, Pick, u8, Pick, Pick)>,
    page: (usize, usize),
}

fn query_gen() -> impl Strategy<Value = QueryGen> {
    let key = (any::<Pick>(), any::<u8>(), any::<Pick>(), any::<Pick>()).prop_map(|(attribute, kind, a, b)| KeyGen { attribute, kind, a, b });
    let datetime = proptest::option::weighted(0.3, (any::<u8>(), any::<Pick>(), any::<Pick>(), any::<u8>(), any::<Pick>(), any::<Pick>()));
    (any::<Pick>(), prop::collection::vec(key, 0..=3), any::<bool>(), any::<bool>(), datetime, (any::<usize>(), any::<usize>())).prop_map(
        |(level, keys, case_insensitive_pn, combine_datetime, datetime, page)| QueryGen { level, keys, case_insensitive_pn, combine_datetime, datetime, page },
    )
}

const LEVELS: [QueryLevel; 4] = [QueryLevel::Patient, QueryLevel::Study, QueryLevel::Series, QueryLevel::Instance];

/// The attributes a query at `level` may match: those at or above it, derived ones at their own
/// level only.
fn allowed(level: QueryLevel) -> Vec<Attribute> {
    Attribute::ALL.iter().copied().filter(|a| a.level() <= level && (!a.is_derived() || a.level() == level)).collect()
}

/// The single values of a text or person name attribute (the components of multi-valued ones).
fn text_domain(attribute: Attribute) -> Vec<&'static str> {
    let values: &[&'static str] = match attribute {
        Attribute::PatientId => PATIENT_IDS,
        Attribute::IssuerOfPatientId => ISSUERS,
        Attribute::PatientName => PERSON_NAMES,
        Attribute::PatientSex => SEXES,
        Attribute::AccessionNumber => ACCESSIONS,
        Attribute::StudyId => STUDY_IDS,
        Attribute::StudyDescription => DESCRIPTIONS,
        Attribute::ReferringPhysicianName => REFERRING,
        Attribute::ModalitiesInStudy | Attribute::Modality => MODALITIES,
        Attribute::SeriesDescription => SERIES_DESCRIPTIONS,
        Attribute::BodyPartExamined => BODY_PARTS,
        _ => &["X"],
    };
    let mut out: Vec<&'static str> = values.iter().flat_map(|v| v.split('\\')).filter(|v| !v.is_empty()).collect();
    out.push("ZZ-none");
    out
}

/// A wildcard pattern derived from `value`, in one of several shapes chosen by `shape`.
fn wildcard(value: &str, shape: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let take = |r: std::ops::Range<usize>| chars[r].iter().collect::<String>();
    match shape % 7 {
        0 => format!("{}*", take(0..n.min(2))),
        1 => format!("*{}", take(n.saturating_sub(3)..n)),
        2 if n > 1 => format!("{}?{}", take(0..1), take(2..n)),
        3 => format!("*{}*", take(n / 2..(n / 2 + 1).min(n))),
        4 => "**".to_owned(),
        5 => format!("{}*?", take(0..1)),
        _ => format!("?{}", take(1.min(n)..n)),
    }
}

fn uid_domain(attribute: Attribute, world: &World) -> Vec<String> {
    let mut out: Vec<String> = match attribute {
        Attribute::StudyInstanceUid => (0..world.studies.len()).map(study_uid).collect(),
        Attribute::SeriesInstanceUid => (0..world.series.len()).map(series_uid).collect(),
        Attribute::SopInstanceUid => (0..world.instances.len()).map(sop_uid).collect(),
        Attribute::SopClassUid => SOP_CLASSES.iter().map(|s| s.to_string()).collect(),
        Attribute::TransferSyntaxUid => TRANSFER_SYNTAXES.iter().map(|s| s.to_string()).collect(),
        _ => vec![],
    };
    out.push(format!("{UID_ROOT}.9.9"));
    out
}

/// The raw key value (as a C-FIND identifier or a QIDO-RS parameter would carry it), or
/// candidates to try in order (a range whose bounds came out reversed is tried the other way).
fn raw_values(attribute: Attribute, key: &KeyGen, world: &World) -> Vec<String> {
    let kind = key.kind % 16;
    if kind == 0 {
        return vec![if key.a.index(2) == 0 { String::new() } else { "*".to_owned() }];
    }
    if kind == 1 {
        return vec!["\"\"".to_owned()];
    }
    match attribute.kind() {
        ValueKind::Text | ValueKind::PersonName => {
            let domain = text_domain(attribute);
            let value = *key.a.get(&domain);
            if kind < 8 { vec![value.to_owned()] } else { vec![wildcard(value, key.b.index(1000))] }
        }
        ValueKind::Uid => {
            let domain = uid_domain(attribute, world);
            let first = key.a.get(&domain).clone();
            if kind < 9 {
                vec![first]
            } else {
                let second = key.b.get(&domain).clone();
                let third = domain[(key.a.index(domain.len()) + key.b.index(domain.len()) + 1) % domain.len()].clone();
                vec![format!("{first}\\{second}\\{third}")]
            }
        }
        ValueKind::Date | ValueKind::Time => date_or_time(attribute, kind, &key.a, &key.b),
        ValueKind::Integer => vec![(*key.a.get(INTEGER_OPERANDS)).to_owned()],
        // No indexed attribute is a date and time (DT): those are matched from headers only.
        ValueKind::DateTime => unreachable!("{attribute:?} is indexed and of VR DT"),
    }
}

/// A date or time key: a single value or a range (closed, open below, open above).
fn date_or_time(attribute: Attribute, shape: u8, a: &Pick, b: &Pick) -> Vec<String> {
    let operands = if attribute.kind() == ValueKind::Date { DATE_OPERANDS } else { TIME_OPERANDS };
    let lo = *a.get(operands);
    let hi = *b.get(operands);
    match shape % 4 {
        0 => vec![lo.to_owned()],
        1 => vec![format!("{lo}-{hi}"), format!("{hi}-{lo}")],
        2 => vec![format!("-{hi}")],
        _ => vec![format!("{lo}-")],
    }
}

fn build_query(spec: &QueryGen, world: &World) -> Query {
    let level = *spec.level.get(&LEVELS);
    let attributes = allowed(level);
    let mut query = Query::new(level);
    for key in &spec.keys {
        let attribute = *key.attribute.get(&attributes);
        for raw in raw_values(attribute, key, world) {
            if let Ok(q) = query.clone().with(attribute, &raw) {
                query = q;
                break;
            }
        }
    }
    if let Some((date_shape, da, db, time_shape, ta, tb)) = &spec.datetime
        && level >= QueryLevel::Study
    {
        // Mostly ranges on both (the combined case); a single date now and then.
        let date_shape = if date_shape % 5 == 0 { 0 } else { 1 + date_shape % 3 };
        for (attribute, raws) in [
            (Attribute::StudyDate, date_or_time(Attribute::StudyDate, date_shape, da, db)),
            (Attribute::StudyTime, date_or_time(Attribute::StudyTime, *time_shape, ta, tb)),
        ] {
            for raw in raws {
                if let Ok(q) = query.clone().with(attribute, &raw) {
                    query = q;
                    break;
                }
            }
        }
    }
    query.options = MatchOptions { case_insensitive_pn: spec.case_insensitive_pn, combine_datetime: spec.combine_datetime };
    query
}

/// Compares what the index returns with what the reference matcher accepts.
fn check(index: &SqliteIndex, model: &[Vec<QueryRow>; 4], query: &Query, page: (usize, usize)) -> Result<(), TestCaseError> {
    let level = LEVELS.iter().position(|l| *l == query.level).unwrap_or(0);
    let expected: Vec<&QueryRow> = model[level].iter().filter(|row| matches(query, row)).collect();
    let got = index.find(query).map_err(|e| TestCaseError::fail(format!("find {query:?}: {e}")))?;
    let got_keys: Vec<Vec<String>> = got.iter().map(|r| natural_key(query.level, r)).collect();
    let want_keys: Vec<Vec<String>> = expected.iter().map(|r| natural_key(query.level, r)).collect();
    if got_keys != want_keys {
        let only_sql: Vec<_> = got.iter().filter(|r| !want_keys.contains(&natural_key(query.level, r))).collect();
        let only_reference: Vec<_> = expected.iter().filter(|r| !got_keys.contains(&natural_key(query.level, r))).collect();
        return Err(TestCaseError::fail(format!(
            "SQL and the reference matcher disagree on {query:#?}\n\nonly in SQL: {only_sql:#?}\n\nonly in the reference: {only_reference:#?}\n\nSQL keys: {got_keys:?}\nreference keys: {want_keys:?}"
        )));
    }
    for (row, exp) in got.iter().zip(&expected) {
        for attribute in query.return_attributes() {
            prop_assert_eq!(row.get(&attribute), exp.get(&attribute), "{} of {:?} for {:?}", attribute.keyword(), natural_key(query.level, row), query);
        }
    }
    // A page of the result is the corresponding slice.
    let limit = page.0 % 5 + 1;
    let offset = page.1 % (got.len() + 2);
    let paged = index.find(&Query { limit: Some(limit), offset, ..query.clone() }).map_err(|e| TestCaseError::fail(format!("find page: {e}")))?;
    let slice: Vec<QueryRow> = got.iter().skip(offset).take(limit).cloned().collect();
    prop_assert_eq!(paged, slice, "page limit {} offset {} of {:?}", limit, offset, query);
    Ok(())
}

/// 64 cases by default (a few seconds in debug builds); `PROPTEST_CASES` sets another number for
/// a deeper search. Failures are not persisted to files: the minimal case is printed.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sql_matches_reference(world in world(), queries in prop::collection::vec(query_gen(), 24)) {
        let records = records(&world);
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let index = SqliteIndex::open(&dir.path().join("index.sqlite")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Two batches, in order.
        let (first, second) = records.split_at(records.len() / 2);
        for batch in [first, second] {
            index.insert(batch, pacs_core::DuplicatePolicy::KeepExisting).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let model = LEVELS.map(|level| expected_rows(&records, level));
        for spec in &queries {
            let query = build_query(spec, &world);
            check(&index, &model, &query, spec.page)?;
        }
    }
}

/// Hand-picked queries that the generator might reach only rarely: multi-valued Referring
/// Physician's Names (VM 1-n) are matched value by value (PS3.4 C.2.2.3), an empty value among
/// them matches the empty key, and folding applies to each value.
#[test]
fn multi_valued_referring_physician() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let index = SqliteIndex::open(&dir.path().join("index.sqlite")).expect("open");
    let world = World {
        patients: vec![PatientGen { id: Some("P1"), issuer: None, name: Some("Doe^John"), birth: None, sex: None }],
        studies: REFERRING
            .iter()
            .map(|r| StudyGen { patient: 0, date: None, time: None, accession: None, study_id: None, description: None, referring: Some(r) })
            .collect(),
        series: vec![],
        instances: vec![],
    };
    // One series and one instance per study.
    let world = World {
        series: (0..world.studies.len())
            .map(|j| SeriesGen { study: j, modality: None, number: None, description: None, body_part: None, date: None })
            .collect(),
        instances: (0..world.studies.len())
            .map(|i| InstanceGen { series: i, number: None, frames: None, rows: None, class: SOP_CLASSES[0], ts: TRANSFER_SYNTAXES[0] })
            .collect(),
        ..world
    };
    let records = records(&world);
    index.insert(&records, pacs_core::DuplicatePolicy::KeepExisting).expect("insert");
    let model = LEVELS.map(|level| expected_rows(&records, level));
    for (raw, fold, count) in [
        ("Roe^Rick", false, 2),
        ("Müller^Jürgen", false, 2),
        ("müller^jürgen", true, 3),
        ("Roe*", false, 2),
        ("*John", false, 2),
        ("*john", true, 3),
        ("\"\"", false, 1),
        ("Doe^John", false, 2),
    ] {
        let mut query = Query::new(QueryLevel::Study).with(Attribute::ReferringPhysicianName, raw).expect("valid key");
        query.options.case_insensitive_pn = fold;
        let reference = model[1].iter().filter(|row| matches(&query, row)).count();
        assert_eq!(reference, count, "the reference matcher on {raw:?} (fold {fold})");
        check(&index, &model, &query, (0, 0)).unwrap_or_else(|e| panic!("{e}"));
    }
}
