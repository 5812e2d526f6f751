//! QIDO-RS: search parameters to a [`Query`], result rows to DICOM JSON.
//!
//! Matching keys are attribute keywords (`PatientName`) or tags (`00100010`) of indexed
//! attributes, with the matching rules of [`pacs_core::query`] (wildcards, ranges, UID lists, `""`
//! for "no value", StudyDate and StudyTime combined). `fuzzymatching=true` makes Person Name
//! matching case-insensitive. `includefield` takes keywords, tags or `all`, comma-separated or
//! repeated; attributes that are valid but not indexed are accepted and not returned. `limit`
//! and `offset` page the results; when more results match than are returned (the client's limit
//! or [`WebConfig::max_results`](super::WebConfig::max_results)), a `Warning: 299` header says so.

use std::sync::Arc;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use pacs_core::{Attribute, MatchOptions, Query, QueryLevel, QueryRow};
use serde_json::{Map, Value as Json, json};

use super::json::person_name_json;
use super::media::{accepts_json, parse_accept};
use super::{AppState, blocking, uid};
use crate::error::{Error, Result};

/// Query parameters as sent, in order (a name may repeat).
pub(crate) type Params = Vec<(String, String)>;

/// A parsed search: the query, and whether to send every indexed attribute.
#[derive(Clone, Debug)]
pub struct Search {
    /// The query (its limit is the number of results to return).
    pub query: Query,
    /// `includefield=all`.
    pub all_fields: bool,
}

/// Whether `name` is a standard keyword or a tag (`GGGGEEEE`) of an attribute, indexed or not.
fn is_known_attribute(name: &str) -> bool {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return true;
    }
    dicom_dictionary_std::StandardDataDictionary.by_name(name).is_some()
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
                    } else if !is_known_attribute(field) {
                        return Err(bad(format!("parameter includefield: unknown attribute {field:?}")));
                    }
                }
            }
            // Paging and output options of other servers that change nothing here.
            "format" | "_" => {}
            key => {
                let Some(attribute) = Attribute::parse(key) else {
                    let why = if is_known_attribute(key) { "is not a searchable (indexed) attribute" } else { "is not an attribute keyword or tag" };
                    return Err(bad(format!("parameter {key}: {why}")));
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
    Ok(Search { query, all_fields })
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
/// has no value), and the Retrieve URL of the record.
pub fn row_json(search: &Search, row: &QueryRow, base_url: &str) -> Json {
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
    Json::Object(out)
}

async fn search(state: AppState, headers: HeaderMap, level: QueryLevel, fixed: Vec<(Attribute, String)>, params: Params) -> Result<Response> {
    let accept = parse_accept(headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()));
    if !accepts_json(&accept) {
        return Err(Error::NotAcceptable { reason: "QIDO-RS answers application/dicom+json only".into() });
    }
    let fixed_refs: Vec<(Attribute, &str)> = fixed.iter().map(|(a, v)| (*a, v.as_str())).collect();
    let search = parse_search(level, &fixed_refs, &params, state.config.max_results)?;
    let returned = search.query.limit.unwrap_or(state.config.max_results);
    let mut probe = search.query.clone();
    // One more than asked for: whether the answer is cut.
    probe.limit = Some(returned.saturating_add(1));
    let archive = Arc::clone(&state.archive);
    let mut rows = blocking(move || archive.query(&probe)).await?;
    let truncated = rows.len() > returned;
    rows.truncate(returned);
    let base_url = state.base_url(&headers);
    let body: Vec<Json> = rows.iter().map(|row| row_json(&search, row, &base_url)).collect();
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
            (vec![("PatientAge", "030Y")], "PatientAge"),
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
    fn rows_are_annex_f() {
        let search = parse_search(QueryLevel::Study, &[], &Params::new(), 10).expect("valid");
        let mut row = QueryRow::new();
        row.insert(Attribute::PatientName, "Yamada^Tarou=山田^太郎".into());
        row.insert(Attribute::StudyInstanceUid, "1.2.3".into());
        row.insert(Attribute::ModalitiesInStudy, "CT\\MR".into());
        row.insert(Attribute::NumberOfStudyRelatedInstances, "3".into());
        row.insert(Attribute::StudyTime, "103000.000000".into());
        let json = row_json(&search, &row, "http://h/dw");
        assert_eq!(json["00100010"], json!({"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]}));
        assert_eq!(json["00080061"], json!({"vr": "CS", "Value": ["CT", "MR"]}));
        assert_eq!(json["00201208"], json!({"vr": "IS", "Value": [3]}));
        assert_eq!(json["00080030"], json!({"vr": "TM", "Value": ["103000"]}));
        assert_eq!(json["00100020"], json!({"vr": "LO"}));
        assert_eq!(json["00081190"], json!({"vr": "UR", "Value": ["http://h/dw/studies/1.2.3"]}));
    }
}
