//! pydicom's bundled test files, imported with `pacs import` and checked against pydicom itself:
//! every file accounted for exactly once, rejections where pydicom cannot read a usable Part 10
//! object (and only there), every stored instance exported byte for byte, the indexed attributes
//! equal to what pydicom decodes (including the ISO 2022 and other character set test files), and
//! the counts of `stats`, `query` and the derived Number of ... Related ... attributes.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a test failure with its location

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{Pacs, count, pydicom_charset_files, pydicom_test_files, python, require_python, text};
use serde_json::Value;

/// One source file as pydicom sees it (see `tests/python/expected.py`).
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    size: u64,
    sha256: String,
    status: String,
    detail: String,
    attributes: BTreeMap<String, String>,
    /// Attributes pydicom has but whose value cannot be normalised (the archive must omit them).
    invalid: Vec<String>,
}

impl Entry {
    fn attr(&self, keyword: &str) -> Option<&str> {
        self.attributes.get(keyword).map(String::as_str)
    }

    fn sop(&self) -> &str {
        self.attr("SOPInstanceUID").unwrap_or("")
    }

    /// A patient is its (Patient ID, Issuer); studies without a Patient ID have one each.
    fn patient_key(&self) -> (String, String, String) {
        let id = self.attr("PatientID").unwrap_or("");
        let study = if id.is_empty() { self.attr("StudyInstanceUID").unwrap_or("") } else { "" };
        (id.to_owned(), self.attr("IssuerOfPatientID").unwrap_or("").to_owned(), study.to_owned())
    }

    fn name(&self) -> String {
        let root = pydicom_test_files();
        let data = root.parent().unwrap_or(Path::new("/"));
        self.path.strip_prefix(data).unwrap_or(&self.path).display().to_string()
    }
}

fn entries(expected: &Value) -> Vec<Entry> {
    expected["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let mut attributes = BTreeMap::new();
            let mut invalid = Vec::new();
            if let Some(map) = f.get("attributes").and_then(Value::as_object) {
                for (k, v) in map {
                    match v {
                        Value::String(s) => {
                            attributes.insert(k.clone(), s.clone());
                        }
                        Value::Array(list) if k == "_invalid" => invalid.extend(list.iter().filter_map(Value::as_str).map(str::to_owned)),
                        other => panic!("unexpected attribute value {k}: {other}"),
                    }
                }
            }
            Entry {
                path: PathBuf::from(text(f, "path")),
                size: f["size"].as_u64().expect("size"),
                sha256: text(f, "sha256").to_owned(),
                status: text(f, "status").to_owned(),
                detail: text(f, "detail").to_owned(),
                attributes,
                invalid,
            }
        })
        .collect()
}

/// The attributes of each level of the information model as the archive indexes them
/// (derived attributes excluded).
const PATIENT: &[&str] = &["PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex"];
const STUDY: &[&str] = &["StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName"];
const SERIES: &[&str] = &["SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined", "SeriesDate"];
const INSTANCE: &[&str] = &["SOPInstanceUID", "SOPClassUID", "InstanceNumber", "TransferSyntaxUID", "NumberOfFrames", "Rows", "Columns"];

/// A Person Name without trailing empty components and component groups: `A^B^^=` and `A^B` are
/// the same name (PS3.5 6.2.1 lets trailing delimiters be omitted); pydicom's `str()` drops
/// trailing empty groups, the archive keeps the value as written.
fn canonical_pn(value: &str) -> String {
    value
        .split('\\')
        .map(|v| {
            let groups: Vec<String> = v.split('=').map(|g| g.trim_end_matches('^').to_owned()).collect();
            let keep = groups.iter().rposition(|g| !g.is_empty()).map_or(0, |i| i + 1);
            groups[..keep].join("=")
        })
        .collect::<Vec<_>>()
        .join("\\")
}

/// A level of the model: its name, its attributes, and which files belong to the row's entity.
type Level<'a> = (&'static str, &'static [&'static str], Box<dyn Fn(&Entry) -> bool + 'a>);

fn is_pn(keyword: &str) -> bool {
    keyword == "PatientName" || keyword == "ReferringPhysicianName"
}

/// The values of `keywords` in a query row.
fn row_tuple(row: &Value, keywords: &[&str]) -> Vec<Option<String>> {
    keywords.iter().map(|k| row.get(*k).and_then(Value::as_str).map(|v| if is_pn(k) { canonical_pn(v) } else { v.to_owned() })).collect()
}

/// The values of `keywords` that pydicom reads from a file.
fn entry_tuple(entry: &Entry, keywords: &[&str]) -> Vec<Option<String>> {
    keywords.iter().map(|k| entry.attr(k).map(|v| if is_pn(k) { canonical_pn(v) } else { v.to_owned() })).collect()
}

fn show_tuple(keywords: &[&str], values: &[Option<String>]) -> String {
    keywords.iter().zip(values).filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v:?}"))).collect::<Vec<_>>().join(", ")
}

#[test]
fn import_pydicom_test_files_and_compare_with_pydicom() {
    require_python();
    let t0 = Instant::now();
    let mut roots = vec![pydicom_test_files()];
    // pydicom keeps its character set test files (ISO 2022 Japanese and Korean, GB18030, UTF-8,
    // the ISO 8859 parts) in a sibling folder: they are the test of our decoding, import them too.
    let charset_root = pydicom_charset_files();
    roots.extend(charset_root.clone());
    let expected = python("expected.py", &roots);
    let files = entries(&expected);
    println!("pydicom {} reads {} files in {:?}", text(&expected, "pydicom"), files.len(), t0.elapsed());
    assert!(files.len() > 100, "expected pydicom's test files, found {} files under {roots:?}", files.len());

    let pacs = Pacs::new();
    let t1 = Instant::now();
    let (code, report) = pacs.import(&roots, &[]);
    println!("pacs import: {:?}", t1.elapsed());
    let mut failures: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // --- Every file accounted for exactly once. --------------------------------------------
    let rejected: Vec<(PathBuf, String)> =
        report["rejected"].as_array().expect("rejected list").iter().map(|r| (PathBuf::from(text(r, "path")), text(r, "reason").to_owned())).collect();
    let counted = ["imported", "already_present", "kept_existing", "replaced", "refused"].iter().map(|k| count(&report, k)).sum::<u64>();
    assert_eq!(count(&report, "files"), files.len() as u64, "files examined by pacs vs regular files under {roots:?}");
    assert_eq!(
        counted + rejected.len() as u64,
        count(&report, "files"),
        "imported + already_present + kept_existing + replaced + refused + rejected must equal files: {report:#}"
    );
    assert_eq!(count(&report, "refused"), 0, "policy keep refuses nothing");
    assert_eq!(count(&report, "replaced"), 0, "policy keep replaces nothing");
    assert_eq!(code, if rejected.is_empty() { 0 } else { 1 }, "exit code of an import with {} rejections", rejected.len());
    let by_path: HashMap<&Path, &Entry> = files.iter().map(|e| (e.path.as_path(), e)).collect();
    let mut rejected_by_path: HashMap<&Path, &str> = HashMap::new();
    for (path, reason) in &rejected {
        assert!(by_path.contains_key(path.as_path()), "rejected path {} is not one of the source files", path.display());
        assert!(rejected_by_path.insert(path, reason).is_none(), "{} rejected twice", path.display());
        assert!(!reason.trim().is_empty(), "{} rejected without a reason", path.display());
        assert!(!reason.contains('\n'), "the reason for {} is not one line: {reason:?}", path.display());
    }

    // --- Rejected exactly where pydicom cannot read a usable Part 10 object. ----------------
    for e in &files {
        let reason = rejected_by_path.get(e.path.as_path()).copied();
        let wrong = match (e.status.as_str(), reason) {
            ("ok", None) => None,
            ("ok", Some(r)) => Some(format!("pydicom reads it as a valid Part 10 object with all UIDs, pacs rejected it: {r}")),
            (status, None) => Some(format!("pydicom: {status} ({}), but pacs did not reject it", e.detail)),
            ("not_part10", Some(r)) if r.starts_with("not a DICOM file") => None,
            ("truncated", Some(r)) if r.contains("truncated") => None,
            ("missing", Some(r)) if r.starts_with(&format!("missing required attribute {} (", e.detail)) => None,
            ("invalid_uid", Some(r)) if r.starts_with(&format!("invalid {}", e.detail)) => None,
            ("unreadable", Some(_)) => None,
            (status, Some(r)) => Some(format!("pydicom: {status} ({}), pacs rejected it for another reason: {r}", e.detail)),
        };
        if let Some(w) = wrong {
            failures.push(format!("{}: {w}", e.name()));
        }
    }
    // Spot checks of plausible reasons, by name.
    let spot = [
        ("test_files/README.txt", "not a DICOM file"),
        ("test_files/MR_truncated.dcm", "truncated"),
        ("test_files/rtplan_truncated.dcm", "truncated"),
        ("test_files/meta_missing_tsyntax.dcm", "Transfer Syntax UID"),
        ("test_files/JPEGLSNearLossless_08.dcm", "missing required attribute StudyInstanceUID"),
        ("test_files/dicomdirtests/DICOMDIR", "missing required attribute SOPInstanceUID"),
        ("test_files/zipMR.gz", "not a DICOM file"),
    ];
    let data_dir = pydicom_test_files().parent().expect("pydicom data folder").to_path_buf();
    for (name, needle) in spot {
        let path = data_dir.join(name);
        if !path.exists() && name != "test_files/README.txt" && name != "test_files/MR_truncated.dcm" {
            continue; // not in every pydicom release
        }
        match rejected_by_path.get(path.as_path()) {
            Some(r) if r.contains(needle) => {}
            other => failures.push(format!("{name}: expected a rejection mentioning {needle:?}, got {other:?}")),
        }
    }

    // --- Stored instances: one per SOP Instance UID among the readable files. ---------------
    let mut by_sop: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in files.iter().filter(|e| e.status == "ok") {
        by_sop.entry(e.sop()).or_default().push(e);
    }
    assert_eq!(count(&report, "imported"), by_sop.len() as u64, "one instance imported per distinct SOP Instance UID");
    pacs.assert_verify_clean();

    let rows = pacs.json(&["query", "--level", "instance", "--format", "json"]);
    let rows = rows.as_array().expect("an array of instances");
    let row_sops: BTreeSet<&str> = rows.iter().map(|r| text(r, "SOPInstanceUID")).collect();
    assert_eq!(rows.len(), row_sops.len(), "query returned an instance twice");
    assert_eq!(row_sops, by_sop.keys().copied().collect::<BTreeSet<_>>(), "instances in the archive vs SOP Instance UIDs of the readable files");

    // --- Every instance exports byte for byte as one of its source files. -------------------
    let t2 = Instant::now();
    let mut stored: BTreeMap<&str, &Entry> = BTreeMap::new();
    let (mut already_present, mut kept_existing) = (0u64, 0u64);
    for (sop, candidates) in &by_sop {
        let exported = pacs.export_instance(sop);
        let matching: Vec<&&Entry> =
            candidates.iter().filter(|e| e.size == exported.len() as u64 && std::fs::read(&e.path).expect("read source") == exported).collect();
        let Some(source) = matching.first() else {
            failures.push(format!(
                "instance {sop}: the exported {} bytes equal none of its source files ({})",
                exported.len(),
                candidates.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        stored.insert(sop, source);
        let same = candidates.iter().filter(|e| e.sha256 == source.sha256).count() as u64;
        already_present += same - 1;
        kept_existing += candidates.len() as u64 - same;
    }
    println!("{} exports: {:?}", by_sop.len(), t2.elapsed());
    assert_eq!(count(&report, "already_present"), already_present, "files identical to the stored copy of their SOP Instance UID");
    assert_eq!(count(&report, "kept_existing"), kept_existing, "files differing from the stored copy of their SOP Instance UID (policy keep)");

    // --- Counts: stats, study and series queries, derived counts. ---------------------------
    let stored_entries: Vec<&Entry> = stored.values().copied().collect();
    let studies: BTreeSet<&str> = stored_entries.iter().filter_map(|e| e.attr("StudyInstanceUID")).collect();
    let series: BTreeSet<&str> = stored_entries.iter().filter_map(|e| e.attr("SeriesInstanceUID")).collect();
    let patients: BTreeSet<(String, String, String)> = stored_entries.iter().map(|e| e.patient_key()).collect();
    let mut series_studies: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in &stored_entries {
        series_studies.entry(e.attr("SeriesInstanceUID").unwrap_or("")).or_default().insert(e.attr("StudyInstanceUID").unwrap_or(""));
    }
    let split_series: Vec<&&str> = series_studies.iter().filter(|(_, s)| s.len() > 1).map(|(k, _)| k).collect();
    if !split_series.is_empty() {
        notes.push(format!("series whose files name different studies (the archive files them under the first): {split_series:?}"));
    }
    let stats = pacs.stats();
    for (key, want) in [
        ("instances", by_sop.len() as u64),
        ("studies", studies.len() as u64),
        ("series", series.len() as u64),
        ("patients", patients.len() as u64),
        ("bytes", stored_entries.iter().map(|e| e.size).sum()),
    ] {
        if count(&stats, key) != want {
            failures.push(format!("stats: {key} is {}, the stored files have {want}", count(&stats, key)));
        }
    }
    let study_rows = pacs.json(&["query", "--level", "study", "--format", "json"]);
    let study_rows = study_rows.as_array().expect("array");
    if study_rows.len() != studies.len() {
        failures.push(format!("query --level study returned {} rows, the stored files have {} studies", study_rows.len(), studies.len()));
    }
    for row in study_rows {
        let uid = text(row, "StudyInstanceUID");
        let members: Vec<&&Entry> = stored_entries.iter().filter(|e| e.attr("StudyInstanceUID") == Some(uid)).collect();
        let member_series: BTreeSet<&str> = members.iter().filter_map(|e| e.attr("SeriesInstanceUID")).collect();
        for (key, want) in [("NumberOfStudyRelatedInstances", members.len()), ("NumberOfStudyRelatedSeries", member_series.len())] {
            if text(row, key) != want.to_string() {
                failures.push(format!("study {uid}: {key} is {:?}, the stored files have {want}", text(row, key)));
            }
        }
        // Modalities in Study: one Modality per series (files of a series may disagree; the
        // archive keeps one of theirs).
        let ours: BTreeSet<&str> = text(row, "ModalitiesInStudy").split('\\').filter(|m| !m.is_empty()).collect();
        let mut all: BTreeSet<&str> = BTreeSet::new();
        let mut certain: BTreeSet<&str> = BTreeSet::new();
        for s in &member_series {
            let modalities: BTreeSet<&str> = members.iter().filter(|e| e.attr("SeriesInstanceUID") == Some(s)).filter_map(|e| e.attr("Modality")).collect();
            if modalities.len() == 1 {
                certain.extend(&modalities);
            }
            all.extend(modalities);
        }
        if !ours.is_subset(&all) || !certain.is_subset(&ours) {
            failures.push(format!("study {uid}: ModalitiesInStudy is {:?}, the stored files have {all:?}", text(row, "ModalitiesInStudy")));
        }
    }
    let series_rows = pacs.json(&["query", "--level", "series", "--format", "json"]);
    let series_rows = series_rows.as_array().expect("array");
    if series_rows.len() != series.len() {
        failures.push(format!("query --level series returned {} rows, the stored files have {} series", series_rows.len(), series.len()));
    }
    for row in series_rows {
        let uid = text(row, "SeriesInstanceUID");
        let want = stored_entries.iter().filter(|e| e.attr("SeriesInstanceUID") == Some(uid)).count();
        if text(row, "NumberOfSeriesRelatedInstances") != want.to_string() {
            failures.push(format!(
                "series {uid}: NumberOfSeriesRelatedInstances is {:?}, the stored files have {want}",
                text(row, "NumberOfSeriesRelatedInstances")
            ));
        }
    }

    // --- Attributes: the archive's values vs pydicom's, for the file whose bytes are stored. --
    // Patient, study and series attributes are kept once per patient, study and series, from the
    // first file stored: when the files of one study disagree, the row must show the values of
    // one of them (noted), never a value no stored file has.
    let warnings: Vec<(PathBuf, String)> =
        report["warnings"].as_array().expect("warnings").iter().map(|w| (PathBuf::from(text(w, "path")), text(w, "reason").to_owned())).collect();
    let mut pn_trailing: BTreeSet<String> = BTreeSet::new();
    for row in rows {
        let sop = text(row, "SOPInstanceUID");
        let Some(entry) = stored.get(sop) else { continue };
        let name = entry.name();
        // Every returned keyword is an indexed one.
        for key in row.as_object().expect("object").keys() {
            let known = [PATIENT, STUDY, SERIES, INSTANCE].iter().any(|level| level.contains(&key.as_str()));
            if !known {
                failures.push(format!("{name}: query returned an unexpected attribute {key}"));
            }
        }
        // Instance level: exactly the file's values.
        for k in INSTANCE {
            let ours = row.get(*k).and_then(Value::as_str);
            if ours != entry.attr(k) {
                failures.push(format!("{name}: {k} is {ours:?} in the archive, pydicom reads {:?}", entry.attr(k)));
            }
        }
        // Values pydicom has but that cannot be normalised: omitted, with a warning.
        for k in &entry.invalid {
            if row.get(k).is_some() {
                failures.push(format!("{name}: {k} cannot be normalised (pydicom reads it as invalid) but is indexed as {:?}", text(row, k)));
            }
            if !warnings.iter().any(|(p, w)| p == &entry.path && w.contains(k.as_str())) {
                failures.push(format!("{name}: {k} was not indexed but the import report has no warning for it"));
            }
        }
        // Series, study and patient levels.
        let series_uid = text(row, "SeriesInstanceUID");
        if Some(series_uid) != entry.attr("SeriesInstanceUID") {
            failures.push(format!("{name}: SeriesInstanceUID is {series_uid:?}, pydicom reads {:?}", entry.attr("SeriesInstanceUID")));
        }
        let study_uid = text(row, "StudyInstanceUID");
        if Some(study_uid) != entry.attr("StudyInstanceUID") && !split_series.contains(&&series_uid) {
            failures.push(format!("{name}: StudyInstanceUID is {study_uid:?}, pydicom reads {:?}", entry.attr("StudyInstanceUID")));
        }
        let checks: [Level<'_>; 3] = [
            ("series", SERIES, Box::new(|e: &Entry| e.attr("SeriesInstanceUID") == Some(series_uid))),
            ("study", STUDY, Box::new(|e: &Entry| e.attr("StudyInstanceUID") == Some(study_uid))),
            ("patient", PATIENT, {
                let id = text(row, "PatientID");
                let study = if id.is_empty() { text(row, "StudyInstanceUID") } else { "" };
                let key = (id.to_owned(), text(row, "IssuerOfPatientID").to_owned(), study.to_owned());
                Box::new(move |e: &Entry| e.patient_key() == key)
            }),
        ];
        for (level, keywords, same_entity) in &checks {
            let ours = row_tuple(row, keywords);
            let own = entry_tuple(entry, keywords);
            if ours == own {
                continue;
            }
            let from = stored_entries.iter().find(|e| same_entity(e) && entry_tuple(e, keywords) == ours);
            match from {
                Some(other) => notes.push(format!(
                    "{name}: {level} attributes are those of {} (same {level}, stored first): {} instead of {}",
                    other.name(),
                    show_tuple(keywords, &ours),
                    show_tuple(keywords, &own)
                )),
                None => {
                    for (i, k) in keywords.iter().enumerate() {
                        if ours[i] != own[i] {
                            failures.push(format!("{name}: {k} is {:?} in the archive, pydicom reads {:?}", ours[i], own[i]));
                        }
                    }
                }
            }
        }
        // The patient of a study is the patient of one of its files.
        let id = text(row, "PatientID");
        let patient_key = (id.to_owned(), text(row, "IssuerOfPatientID").to_owned(), if id.is_empty() { study_uid.to_owned() } else { String::new() });
        if !stored_entries.iter().any(|e| e.attr("StudyInstanceUID") == Some(study_uid) && e.patient_key() == patient_key) {
            failures.push(format!("{name}: filed under patient {patient_key:?}, which no stored file of study {study_uid} names"));
        }
        for k in ["PatientName", "ReferringPhysicianName"] {
            if let (Some(ours), Some(theirs)) = (row.get(k).and_then(Value::as_str), entry.attr(k))
                && ours != theirs
                && canonical_pn(ours) == canonical_pn(theirs)
            {
                pn_trailing.insert(format!("{name}: {k} {ours:?} (archive) vs {theirs:?} (pydicom)"));
            }
        }
    }

    // The character set files, strictly: the decoded Patient's Name of each stored file.
    if let Some(charset_root) = &charset_root {
        let mut checked = 0;
        for entry in stored_entries.iter().filter(|e| e.path.starts_with(charset_root)) {
            let row = rows.iter().find(|r| text(r, "SOPInstanceUID") == entry.sop()).expect("row");
            let ours = row.get("PatientName").and_then(Value::as_str);
            let theirs = entry.attr("PatientName");
            if ours.map(canonical_pn) != theirs.map(canonical_pn) {
                failures.push(format!("{}: character set decoding: PatientName is {ours:?} in the archive, pydicom decodes {theirs:?}", entry.name()));
            }
            checked += 1;
        }
        assert!(checked >= 10, "expected the character set test files to be stored, {checked} were");
        println!("character set files checked: {checked}");
    }

    for n in &notes {
        println!("note: {n}");
    }
    for n in &pn_trailing {
        println!("note: trailing Person Name delimiters kept: {n}");
    }
    println!("total {:?}", t0.elapsed());
    assert!(failures.is_empty(), "{} discrepancies between pacs and pydicom:\n  {}", failures.len(), failures.join("\n  "));
}
