//! QIDO-RS: search parameters to a [`Query`], result rows to DICOM JSON.
//!
//! Matching keys are attribute keywords (`PatientName`) or tags (`00100010`), with the matching
//! rules of [`pacs_core::query`] (wildcards, ranges, UID lists, `""` for "no value", StudyDate and
//! StudyTime combined). `fuzzymatching=true` makes Person Name matching case-insensitive.
//! `includefield` takes keywords, tags or `all`, comma-separated or repeated. `limit` and `offset`
//! page the results; when more results match than are returned (the client's limit or
//! [`WebConfig::max_results`](super::WebConfig::max_results)), a `Warning: 299` header says so.
//!
//! Keys and fields on indexed attributes are answered by the index alone. Keys and fields on any
//! other attribute of the standard dictionary (or a `GGGGEEEE` tag) are answered from the stored
//! headers, as [`super::headers`] describes: the indexed keys narrow the candidates, then their
//! headers are read (up to Pixel Data) and matched, within
//! [`WebConfig::max_header_reads`](super::WebConfig::max_header_reads) (413 beyond it); at study
//! and series level such a key matches when any instance of the study or series matches, and the
//! values returned are those of a representative instance. Indexed attributes of a level below
//! the search's (`Modality` in a study search) stay refused, as in C-FIND: `ModalitiesInStudy`
//! is the study-level key for that. Sequence matching (`00081250.0020000D`) is not supported.

use std::sync::Arc;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use pacs_core::{Attribute, MatchOptions, Query, QueryLevel, QueryRow};
use serde_json::{Map, Value as Json, json};

use super::headers::{self, HeaderFields, HeaderSearch, RowWithHeader};
use super::json::person_name_json;
use super::media::{accepts_json, parse_accept};
use super::{AppState, blocking, uid};
use crate::error::{Error, Result};

/// Query parameters as sent, in order (a name may repeat).
pub(crate) type Params = Vec<(String, String)>;

/// A parsed search: the query on the index, and what is read from stored headers.
#[derive(Clone, Debug)]
pub struct Search {
    /// The query (its limit is the number of results to return).
    pub query: Query,
    /// `includefield=all`.
    pub all_fields: bool,
    /// Keys and fields on attributes that the index does not hold.
    pub headers: HeaderFields,
}

/// The DICOM VR of an indexed attribute, from the standard dictionary.
pub fn vr_of(attribute: Attribute) -> String {
    let (g, e) = attribute.tag();
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(g, e))
        .and_then(|entry| entry.vr().exact())
        .map_or_else(|| "UN".to_owned(), |vr| vr.to_string().to_owned())
}

/// Parses QIDO-RS parameters into a search at `level`, with `fixed` keys from the path.
pub fn parse_search(level: QueryLevel, fixed: &[(Attribute, &str)], params: &Params, max_results: usize) -> Result<Search> {
    let bad = |reason: String| Error::BadRequest { reason };
    let mut query = Query::new(level);
    query.options = MatchOptions { case_insensitive_pn: false, combine_datetime: true };
    let mut all_fields = false;
    let mut header_fields = HeaderFields::default();
    let mut limit = max_results;
    for (name, value) in params {
        match name.as_str() {
            "limit" => limit = value.trim().parse().map_err(|_| bad(format!("parameter limit: not a number: {value:?}")))?,
            "offset" => query.offset = value.trim().parse().map_err(|_| bad(format!("parameter offset: not a number: {value:?}")))?,
            "fuzzymatching" => {
                query.options.case_insensitive_pn = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => return Err(bad(format!("parameter fuzzymatching: expected true or false, got {other:?}"))),
                }
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field == "all" {
                        all_fields = true;
                    } else if let Some(attribute) = Attribute::parse(field) {
                        if !query.include.contains(&attribute) {
                            query.include.push(attribute);
                        }
                    } else if let Some(attribute) = headers::lookup(field) {
                        if attribute.tag.0 == 0x0002 {
                            return Err(bad(format!("parameter includefield: {field} is a File Meta Information element, not returned by searches")));
                        }
                        if !header_fields.include.contains(&attribute) {
                            header_fields.include.push(attribute);
                        }
                    } else {
                        return Err(bad(format!("parameter includefield: unknown attribute {field:?}")));
                    }
                }
            }
            // Paging and output options of other servers that change nothing here.
            "format" | "_" => {}
            key => {
                let Some(attribute) = Attribute::parse(key) else {
                    if key.contains('.') {
                        return Err(bad(format!("parameter {key}: sequence matching is not supported")));
                    }
                    let Some(attribute) = headers::lookup(key) else {
                        return Err(bad(format!("parameter {key}: is not an attribute keyword or tag")));
                    };
                    let header_key = headers::parse_key(attribute, value)?;
                    header_fields.keys.retain(|k| k.attribute.tag != header_key.attribute.tag);
                    header_fields.keys.push(header_key);
                    continue;
                };
                if fixed.iter().any(|(a, _)| *a == attribute) {
                    return Err(bad(format!("parameter {key}: already given by the path")));
                }
                query = query.with(attribute, value).map_err(|e| bad(format!("parameter {key}: {e}")))?;
            }
        }
    }
    for (attribute, value) in fixed {
        uid(value, attribute.keyword())?;
        query = query.with(*attribute, value).map_err(|e| bad(e.to_string()))?;
    }
    if all_fields {
        query.include = Attribute::ALL.to_vec();
    }
    query.limit = Some(limit.min(max_results));
    header_fields.all = all_fields;
    Ok(Search { query, all_fields, headers: header_fields })
}

/// The DICOM JSON value of an indexed attribute's normalised value.
fn attribute_json(attribute: Attribute, vr: &str, value: &str) -> Json {
    let values: Vec<Json> = match vr {
        "PN" => value.split('\\').map(person_name_json).collect(),
        "IS" | "US" | "UL" | "SS" | "SL" => value.split('\\').map(|v| v.trim().parse::<i64>().map_or_else(|_| Json::String(v.into()), Json::from)).collect(),
        "TM" => value.split('\\').map(|v| Json::String(v.strip_suffix(".000000").unwrap_or(v).into())).collect(),
        _ if attribute == Attribute::ModalitiesInStudy || vr == "CS" || vr == "UI" => value.split('\\').map(|v| Json::String(v.into())).collect(),
        _ => vec![Json::String(value.into())],
    };
    json!({"vr": vr, "Value": values})
}

/// One result row as a DICOM JSON object: every attribute the query returns (empty when the row
/// has no value), the values read from the row's stored header (`from_header`, for attributes
/// that the index does not hold), and the Retrieve URL of the record.
pub fn row_json(search: &Search, row: &QueryRow, from_header: Map<String, Json>, base_url: &str) -> Json {
    let mut out = Map::new();
    let mut attributes = search.query.return_attributes();
    for a in &search.query.include {
        if !attributes.contains(a) && a.level() <= search.query.level {
            attributes.push(*a);
        }
    }
    for attribute in attributes {
        if attribute == Attribute::TransferSyntaxUid && !search.query.include.contains(&attribute) {
            continue;
        }
        let (g, e) = attribute.tag();
        let vr = vr_of(attribute);
        let value = match row.get(&attribute) {
            Some(v) if !v.is_empty() => attribute_json(attribute, &vr, v),
            _ => json!({"vr": vr}),
        };
        out.insert(format!("{g:04X}{e:04X}"), value);
    }
    let study = row.get(&Attribute::StudyInstanceUid);
    let series = row.get(&Attribute::SeriesInstanceUid);
    let instance = row.get(&Attribute::SopInstanceUid);
    let url = match (search.query.level, study, series, instance) {
        (QueryLevel::Study, Some(st), _, _) => Some(format!("{base_url}/studies/{st}")),
        (QueryLevel::Series, Some(st), Some(se), _) => Some(format!("{base_url}/studies/{st}/series/{se}")),
        (QueryLevel::Instance, Some(st), Some(se), Some(i)) => Some(format!("{base_url}/studies/{st}/series/{se}/instances/{i}")),
        _ => None,
    };
    if let Some(url) = url {
        out.insert("00081190".into(), json!({"vr": "UR", "Value": [url]}));
    }
    for (key, value) in from_header {
        out.entry(key).or_insert(value);
    }
    Json::Object(out)
}

/// The rows of a search (at most `returned`, after its offset) with the values read from their
/// headers, and whether more matched: from the index alone when every key is indexed, else from
/// the candidates that the indexed keys select, matched on their headers (within
/// [`WebConfig::max_header_reads`](super::WebConfig::max_header_reads)).
async fn find(state: &AppState, search: &Search, level: QueryLevel, returned: usize, base_url: &str) -> Result<(Vec<RowWithHeader>, bool)> {
    let header_search = HeaderSearch {
        fields: search.headers.clone(),
        level,
        options: search.query.options,
        base_url: base_url.to_owned(),
        bulk_threshold: state.config.bulk_threshold,
    };
    let archive = Arc::clone(&state.archive);
    if search.headers.keys.is_empty() {
        let mut probe = search.query.clone();
        // One more than asked for: whether the answer is cut.
        probe.limit = Some(returned.saturating_add(1));
        let read_headers = search.headers.needed();
        return blocking(move || {
            let mut rows = archive.query(&probe)?;
            let truncated = rows.len() > returned;
            rows.truncate(returned);
            let values = if read_headers { header_search.fill(&archive, &rows)? } else { vec![Map::new(); rows.len()] };
            Ok((rows.into_iter().zip(values).collect::<Vec<_>>(), truncated))
        })
        .await;
    }
    // The candidates that the indexed keys select, counted before any header is read.
    let cap = state.config.max_header_reads;
    let mut candidates = search.query.clone();
    (candidates.offset, candidates.limit) = (0, Some(cap.saturating_add(1)));
    let rows = blocking(move || archive.query(&candidates)).await?;
    let instances = headers::candidate_instances(level, &rows);
    if instances > cap {
        return Err(headers::too_broad(&search.headers.keys, instances, cap));
    }
    tracing::debug!(level = %level, candidates = rows.len(), instances, keys = %headers::key_names(&search.headers.keys), "QIDO-RS on stored headers");
    let offset = search.query.offset;
    let archive = Arc::clone(&state.archive);
    blocking(move || header_search.filter(&archive, rows, offset, returned)).await
}

async fn search(state: AppState, headers: HeaderMap, level: QueryLevel, fixed: Vec<(Attribute, String)>, params: Params) -> Result<Response> {
    let accept = parse_accept(headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()));
    if !accepts_json(&accept) {
        return Err(Error::NotAcceptable { reason: "QIDO-RS answers application/dicom+json only".into() });
    }
    let fixed_refs: Vec<(Attribute, &str)> = fixed.iter().map(|(a, v)| (*a, v.as_str())).collect();
    let search = parse_search(level, &fixed_refs, &params, state.config.max_results)?;
    let returned = search.query.limit.unwrap_or(state.config.max_results);
    let base_url = state.base_url(&headers);
    let (rows, truncated) = find(&state, &search, level, returned, &base_url).await?;
    let body: Vec<Json> = rows.into_iter().map(|(row, values)| row_json(&search, &row, values, &base_url)).collect();
    tracing::debug!(level = %level, results = body.len(), truncated, "QIDO-RS");
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/dicom+json"))],
        serde_json::to_vec(&Json::Array(body)).map_err(|e| Error::Io { action: "writing JSON".into(), source: e.into() })?,
    )
        .into_response();
    if truncated {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("pacs");
        let warning = format!("299 {host} \"The number of results exceeded the limit; more can be requested with offset={}\"", search.query.offset + returned);
        if let Ok(value) = HeaderValue::from_str(&warning) {
            response.headers_mut().insert(header::WARNING, value);
        }
    }
    Ok(response)
}

/// `GET /studies`.
pub(crate) async fn search_studies(State(state): State<AppState>, headers: HeaderMap, UrlQuery(params): UrlQuery<Params>) -> Result<Response> {
    search(state, headers, QueryLevel::Study, Vec::new(), params).await
}

/// `GET /series`.
pub(crate) async fn search_all_series(State(state): State<AppState>, headers: HeaderMap, UrlQuery(params): UrlQuery<Params>) -> Result<Response> {
    search(state, headers, QueryLevel::Series, Vec::new(), params).await
}

/// `GET /instances`.
pub(crate) async fn search_all_instances(State(state): State<AppState>, headers: HeaderMap, UrlQuery(params): UrlQuery<Params>) -> Result<Response> {
    search(state, headers, QueryLevel::Instance, Vec::new(), params).await
}

/// `GET /studies/{study}/series`.
pub(crate) async fn search_series(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    search(state, headers, QueryLevel::Series, vec![(Attribute::StudyInstanceUid, study)], params).await
}

/// `GET /studies/{study}/instances`.
pub(crate) async fn search_study_instances(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    search(state, headers, QueryLevel::Instance, vec![(Attribute::StudyInstanceUid, study)], params).await
}

/// `GET /studies/{study}/series/{series}/instances`.
pub(crate) async fn search_instances(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<Params>,
) -> Result<Response> {
    let fixed = vec![(Attribute::StudyInstanceUid, study), (Attribute::SeriesInstanceUid, series)];
    search(state, headers, QueryLevel::Instance, fixed, params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn parameters_become_a_query() {
        let search = parse_search(
            QueryLevel::Study,
            &[],
            &params(&[
                ("PatientName", "doe*"),
                ("00080020", "20240101-"),
                ("fuzzymatching", "true"),
                ("includefield", "NumberOfStudyRelatedInstances,PatientAge"),
                ("limit", "5"),
            ]),
            100,
        )
        .expect("valid");
        assert!(search.query.options.case_insensitive_pn);
        assert!(search.query.key(Attribute::PatientName).is_some());
        assert!(search.query.key(Attribute::StudyDate).is_some());
        assert_eq!(search.query.limit, Some(5));
        assert_eq!(search.query.include, vec![Attribute::NumberOfStudyRelatedInstances]);
        assert_eq!(search.headers.include.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["PatientAge"]);
        let capped = parse_search(QueryLevel::Study, &[], &params(&[("limit", "500")]), 100).expect("valid");
        assert_eq!(capped.query.limit, Some(100));
    }

    #[test]
    fn bad_parameters_name_the_parameter() {
        for (pairs, needle) in [
            (vec![("limit", "x")], "limit"),
            (vec![("offset", "-1")], "offset"),
            (vec![("fuzzymatching", "maybe")], "fuzzymatching"),
            (vec![("includefield", "NoSuchThing")], "includefield"),
            (vec![("NoSuchThing", "1")], "NoSuchThing"),
            (vec![("ContentDate", "2024")], "ContentDate"),
            (vec![("ReferencedImageSequence", "1.2")], "ReferencedImageSequence"),
            (vec![("00081140.00081155", "1.2")], "sequence matching"),
            (vec![("includefield", "TransferSyntaxUID,MediaStorageSOPClassUID")], "MediaStorageSOPClassUID"),
            (vec![("StudyDate", "2024")], "StudyDate"),
            (vec![("Modality", "CT")], "Modality"),
            (vec![("0008002", "x")], "0008002"),
        ] {
            let err = parse_search(QueryLevel::Study, &[], &params(&pairs), 100).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
        let err = parse_search(QueryLevel::Series, &[(Attribute::StudyInstanceUid, "1.2.x")], &Params::new(), 10).expect_err("bad uid");
        assert!(err.to_string().contains("StudyInstanceUID"), "{err}");
    }

    #[test]
    fn keys_outside_the_index_are_read_from_headers() {
        let search = parse_search(
            QueryLevel::Study,
            &[],
            &params(&[("PatientName", "Doe*"), ("InstitutionName", "ACME*"), ("00180050", "1.25"), ("includefield", "StationName,00081030")]),
            100,
        )
        .expect("valid");
        assert!(search.query.key(Attribute::PatientName).is_some(), "indexed keys narrow the candidates");
        assert_eq!(search.query.keys.len(), 1);
        let names: Vec<&str> = search.headers.keys.iter().map(|k| k.attribute.name.as_str()).collect();
        assert_eq!(names, ["InstitutionName", "SliceThickness"]);
        assert_eq!(search.query.include, vec![Attribute::StudyDescription]);
        assert_eq!(search.headers.include.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["StationName"]);
        assert!(search.headers.needed());
        let plain = parse_search(QueryLevel::Study, &[], &params(&[("PatientName", "Doe*")]), 100).expect("valid");
        assert!(!plain.headers.needed());
        // Header values complete a row without replacing what the index answered.
        let mut row = QueryRow::new();
        row.insert(Attribute::StudyInstanceUid, "1.2.3".into());
        let mut from_header = Map::new();
        from_header.insert("00080080".into(), json!({"vr": "LO", "Value": ["ACME"]}));
        from_header.insert("0020000D".into(), json!({"vr": "UI", "Value": ["9.9"]}));
        let json = row_json(&search, &row, from_header, "http://h");
        assert_eq!(json["00080080"]["Value"][0], "ACME");
        assert_eq!(json["0020000D"]["Value"][0], "1.2.3");
    }

    #[test]
    fn rows_are_annex_f() {
        let search = parse_search(QueryLevel::Study, &[], &Params::new(), 10).expect("valid");
        let mut row = QueryRow::new();
        row.insert(Attribute::PatientName, "Yamada^Tarou=山田^太郎".into());
        row.insert(Attribute::StudyInstanceUid, "1.2.3".into());
        row.insert(Attribute::ModalitiesInStudy, "CT\\MR".into());
        row.insert(Attribute::NumberOfStudyRelatedInstances, "3".into());
        row.insert(Attribute::StudyTime, "103000.000000".into());
        let json = row_json(&search, &row, Map::new(), "http://h/dw");
        assert_eq!(json["00100010"], json!({"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]}));
        assert_eq!(json["00080061"], json!({"vr": "CS", "Value": ["CT", "MR"]}));
        assert_eq!(json["00201208"], json!({"vr": "IS", "Value": [3]}));
        assert_eq!(json["00080030"], json!({"vr": "TM", "Value": ["103000"]}));
        assert_eq!(json["00100020"], json!({"vr": "LO"}));
        assert_eq!(json["00081190"], json!({"vr": "UR", "Value": ["http://h/dw/studies/1.2.3"]}));
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_parameters_give_a_search_or_a_bad_request(
            level in proptest::sample::select(vec![QueryLevel::Patient, QueryLevel::Study, QueryLevel::Series, QueryLevel::Instance]),
            pairs in proptest::collection::vec((
                prop_oneof![
                    proptest::sample::select(vec![
                        "limit", "offset", "fuzzymatching", "includefield", "PatientName", "PatientID", "StudyDate",
                        "StudyTime", "ModalitiesInStudy", "00100010", "0020000D", "00080061", "PatientAge",
                        "AcquisitionDateTime", "SOPClassUID", "00191001", "(0010,0010)",
                    ]).prop_map(str::to_owned),
                    ".{0,12}",
                ],
                prop_oneof!["[0-9*?\\\\,.+-]{0,16}", ".{0,12}", "[A-Za-z^ ]{0,10}"],
            ), 0..5),
        ) {
            let params: Params = pairs;
            if let Err(e) = parse_search(level, &[], &params, 100) {
                prop_assert_eq!(super::super::http_status(&e).as_u16(), 400, "{:?}: {}", params, e);
            }
        }
    }
}
