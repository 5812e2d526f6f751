//! STOW-RS: `POST /studies[/{study}]` with `multipart/related; type="application/dicom"` (or a
//! single `application/dicom` body).
//!
//! Each part streams through a bounded channel into [`Archive::stage`] on a blocking thread, so
//! memory stays at a few chunks whatever the size of the objects; the network waits while the
//! archive is behind. The next part is read while the stages of the parts before it finish (at
//! most two, `FINISHING`), and the answer keeps the order of the parts. Staged objects are
//! committed once the body has been read to its end, by the group commit they share with
//! concurrent requests (and flushed with them): a malformed body (no boundary, truncated, a part
//! that is not `application/dicom`), one over [`WebConfig::max_body`](super::WebConfig::max_body)
//! or one that stalls for [`WebConfig::body_idle_timeout`](super::WebConfig::body_idle_timeout)
//! is refused whole (400, 415, 413 or 408) and its staged blobs are deleted, so nothing of it is
//! stored. At most [`WebConfig::max_stow_requests`](super::WebConfig::max_stow_requests) bodies
//! are read at once; other requests wait for a turn before reading theirs.
//!
//! The answer lists the stored instances (Referenced SOP Sequence) and the failed ones (Failed SOP
//! Sequence, with a Failure Reason and an Error Comment): 200 when all were stored, 202 when some
//! failed, 409 when all failed.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use pacs_core::InsertOutcome;
use pacs_store::{Archive, Staged};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::media::{accepts_json, parse_accept, parse_media_type};
use super::{AppState, uid};
use crate::channel::ChannelReader;
use crate::error::{Error, Result};

/// Failure Reason: processing failure.
pub const PROCESSING_FAILURE: u16 = 0x0110;
/// Failure Reason: a different instance with this SOP Instance UID is stored.
pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
/// Failure Reason: out of resources.
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Warning Reason: elements discarded (here: the whole object, a different one being kept).
pub const ELEMENTS_DISCARDED: u16 = 0xB006;
/// Failure Reason: the instance does not belong to the study of the request.
pub const STUDY_MISMATCH: u16 = 0xA900;
/// Failure Reason: cannot understand (not a DICOM object, or malformed).
pub const CANNOT_UNDERSTAND: u16 = 0xC000;

/// One failed part.
#[derive(Clone, Debug)]
struct Failure {
    sop_class: String,
    sop_instance: String,
    reason: u16,
    comment: String,
}

/// A part being streamed into the archive.
struct Staging {
    tx: Option<mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<pacs_core::Result<Staged>>,
}

impl Staging {
    fn start(archive: &Arc<Archive>) -> Staging {
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let archive = Arc::clone(archive);
        let task = tokio::task::spawn_blocking(move || archive.stage(&mut ChannelReader::new(Bytes::new(), rx)));
        Staging { tx: Some(tx), task }
    }

    async fn send(&mut self, chunk: Bytes) {
        if let Some(tx) = &self.tx
            && tx.send(chunk).await.is_err()
        {
            // The stage ended early (a rejection): the rest of the part is read and dropped.
            self.tx = None;
        }
    }

    /// Says that the part has no more bytes: its stage reads to the end and finishes.
    fn end_of_part(mut self) -> Staging {
        self.tx = None;
        self
    }

    /// Waits for the stage to finish.
    async fn join(self) -> Result<pacs_core::Result<Staged>> {
        self.task.await.map_err(|e| Error::Io { action: "storing an instance".into(), source: io::Error::other(e) })
    }
}

/// Why a request body was cut short by the server.
#[derive(Default)]
struct Cut {
    /// More than the limit arrived.
    over: AtomicBool,
    /// Nothing arrived for the idle time.
    stalled: AtomicBool,
}

/// The request body as a stream that fails once more than `limit` bytes arrived, or when no
/// chunk arrives for `idle`, and says which in `cut`.
fn limited(body: Body, limit: u64, idle: std::time::Duration, cut: Arc<Cut>) -> impl Stream<Item = std::result::Result<Bytes, io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some((body.into_data_stream(), 0u64)), move |state| {
        let cut = Arc::clone(&cut);
        async move {
            let (mut stream, mut seen) = state?;
            let chunk = match tokio::time::timeout(idle, stream.next()).await {
                Ok(None) => return None,
                Ok(Some(chunk)) => chunk.map_err(io::Error::other),
                Err(_) => {
                    cut.stalled.store(true, Ordering::Relaxed);
                    return Some((Err(io::Error::new(io::ErrorKind::TimedOut, "request body stalled")), None));
                }
            };
            let chunk = chunk.and_then(|chunk| {
                seen += chunk.len() as u64;
                if seen > limit {
                    cut.over.store(true, Ordering::Relaxed);
                    return Err(io::Error::other(format!("request body larger than {limit} bytes")));
                }
                Ok(chunk)
            });
            Some((chunk, Some((stream, seen))))
        }
    })
}

/// What the request body is.
enum Framing {
    Multipart { boundary: String },
    Single,
}

fn framing(headers: &HeaderMap) -> Result<Framing> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    let Some(media) = parse_media_type(content_type) else {
        return Err(Error::UnsupportedMediaType { reason: format!("Content-Type {content_type:?}: expected multipart/related; type=\"application/dicom\"") });
    };
    match media.essence.as_str() {
        "multipart/related" => {
            if let Some(t) = media.param("type")
                && !t.eq_ignore_ascii_case("application/dicom")
            {
                return Err(Error::UnsupportedMediaType { reason: format!("multipart/related of type {t:?}: only application/dicom parts are stored") });
            }
            let boundary = media
                .param("boundary")
                .filter(|b| !b.is_empty())
                .ok_or_else(|| Error::BadRequest { reason: "Content-Type multipart/related has no boundary parameter".into() })?;
            Ok(Framing::Multipart { boundary: boundary.to_owned() })
        }
        "application/dicom" => Ok(Framing::Single),
        other => Err(Error::UnsupportedMediaType {
            reason: format!("Content-Type {other}: expected multipart/related; type=\"application/dicom\" or application/dicom"),
        }),
    }
}

/// Parts whose bytes have all been received but whose stage may still be finishing (the end of
/// the hash, closing the file, extracting the record), at most this many beyond the part being
/// received: the next part is read meanwhile instead of the network waiting for each stage.
const FINISHING: usize = 2;

/// Reads the parts of a body into staged objects (or failures), in the order of the parts. On
/// error everything staged is abandoned.
async fn stage_parts(
    archive: &Arc<Archive>,
    framing: Framing,
    body: impl Stream<Item = std::result::Result<Bytes, io::Error>> + Send + 'static,
    cut: &Cut,
    limit: u64,
    idle: std::time::Duration,
) -> Result<Vec<std::result::Result<Staged, Failure>>> {
    let mut parts = Parts { outcomes: Vec::new(), finishing: VecDeque::new() };
    let mut result = read_parts(archive, framing, body, &mut parts).await;
    // Every stage is joined, also after an error, so that none is left writing a blob.
    while let Some(staging) = parts.finishing.pop_front() {
        match staging.join().await {
            Ok(outcome) => parts.outcomes.push(outcome.map_err(|e| failure_of(&e))),
            Err(e) => result = result.and(Err(e)),
        }
    }
    match result {
        Ok(()) => Ok(parts.outcomes),
        Err(e) => {
            let archive = Arc::clone(archive);
            let staged: Vec<Staged> = parts.outcomes.into_iter().filter_map(|o| o.ok()).collect();
            let abandoned = staged.len();
            let _ = tokio::task::spawn_blocking(move || staged.into_iter().for_each(|s| archive.abandon(s))).await;
            tracing::info!(abandoned, "STOW-RS body refused; staged instances discarded");
            if cut.over.load(Ordering::Relaxed) {
                Err(Error::TooLarge { limit })
            } else if cut.stalled.load(Ordering::Relaxed) {
                Err(Error::Stalled { seconds: idle.as_secs() })
            } else {
                Err(e)
            }
        }
    }
}

fn failure_of(e: &pacs_core::Error) -> Failure {
    let reason = match e {
        pacs_core::Error::Rejected(_) => CANNOT_UNDERSTAND,
        pacs_core::Error::Io { .. } | pacs_core::Error::Unavailable { .. } => OUT_OF_RESOURCES,
        _ => PROCESSING_FAILURE,
    };
    if matches!(e, pacs_core::Error::Io { .. }) {
        tracing::warn!(error = %e, "STOW-RS part not stored");
    }
    Failure { sop_class: String::new(), sop_instance: String::new(), reason, comment: crate::error::peer_comment(e) }
}

/// The parts of a body: the outcomes of those whose stage ended, then the stages still finishing.
struct Parts {
    outcomes: Vec<std::result::Result<Staged, Failure>>,
    finishing: VecDeque<Staging>,
}

impl Parts {
    /// Takes a part whose bytes were all sent to its stage; waits for the oldest stages beyond
    /// [`FINISHING`].
    async fn received(&mut self, staging: Staging) -> Result<()> {
        self.finishing.push_back(staging.end_of_part());
        while self.finishing.len() > FINISHING {
            if let Some(oldest) = self.finishing.pop_front() {
                self.outcomes.push(oldest.join().await?.map_err(|e| failure_of(&e)));
            }
        }
        Ok(())
    }
}

async fn read_parts(
    archive: &Arc<Archive>,
    framing: Framing,
    body: impl Stream<Item = std::result::Result<Bytes, io::Error>> + Send + 'static,
    parts: &mut Parts,
) -> Result<()> {
    let boundary = match framing {
        Framing::Single => {
            let mut staging = Staging::start(archive);
            let mut body = std::pin::pin!(body);
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(chunk) => staging.send(chunk).await,
                    Err(e) => {
                        parts.finishing.push_back(staging.end_of_part());
                        return Err(Error::BadRequest { reason: format!("reading the body: {e}") });
                    }
                }
            }
            return parts.received(staging).await;
        }
        Framing::Multipart { boundary } => boundary,
    };
    let mut multipart = multer::Multipart::new(body, boundary);
    let bad = |e: multer::Error| Error::BadRequest { reason: format!("malformed multipart body: {e}") };
    let mut index = 0usize;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(bad(e)),
        };
        index += 1;
        if let Some(content_type) = field.content_type()
            && content_type.essence_str() != "application/dicom"
        {
            return Err(Error::UnsupportedMediaType { reason: format!("part {index} is {content_type}: only application/dicom parts are stored") });
        }
        let mut field = field;
        let mut staging = Staging::start(archive);
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => staging.send(chunk).await,
                Ok(None) => break,
                Err(e) => {
                    parts.finishing.push_back(staging.end_of_part());
                    return Err(bad(e));
                }
            }
        }
        parts.received(staging).await?;
    }
    if index == 0 {
        return Err(Error::BadRequest { reason: "multipart body has no parts".into() });
    }
    Ok(())
}

/// `POST /studies`.
pub(crate) async fn store(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response> {
    store_request(state, headers, None, body).await
}

/// `POST /studies/{study}`: instances of another study fail.
pub(crate) async fn store_in_study(State(state): State<AppState>, Path(study): Path<String>, headers: HeaderMap, body: Body) -> Result<Response> {
    store_request(state, headers, Some(study), body).await
}

async fn store_request(state: AppState, headers: HeaderMap, study: Option<String>, body: Body) -> Result<Response> {
    let accept = parse_accept(headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()));
    if !accepts_json(&accept) {
        return Err(Error::NotAcceptable { reason: "STOW-RS answers application/dicom+json only".into() });
    }
    if let Some(study) = &study {
        uid(study, "StudyInstanceUID")?;
    }
    let framing = framing(&headers)?;
    let limit = state.config.max_body;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|h| h.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::TooLarge { limit });
    }
    // Held until the answer is built, the commit included.
    let _turn = Arc::clone(&state.stow_turns)
        .acquire_owned()
        .await
        .map_err(|e| Error::Io { action: "waiting to read a STOW-RS body".into(), source: io::Error::other(e) })?;
    let cut = Arc::new(Cut::default());
    let idle = state.config.body_idle_timeout;
    let stream = limited(body, limit, idle, Arc::clone(&cut));
    let outcomes = stage_parts(&state.archive, framing, stream, &cut, limit, idle).await?;

    let mut failed: Vec<Failure> = Vec::new();
    let mut to_commit: Vec<Staged> = Vec::new();
    let mut mismatched: Vec<Staged> = Vec::new();
    for outcome in outcomes {
        match outcome {
            Err(f) => failed.push(f),
            Ok(staged) if study.as_deref().is_some_and(|s| staged.record.study_instance_uid.as_str() != s) => mismatched.push(staged),
            Ok(staged) => to_commit.push(staged),
        }
    }
    for staged in &mismatched {
        failed.push(Failure {
            sop_class: staged.record.sop_class_uid.to_string(),
            sop_instance: staged.record.sop_instance_uid.to_string(),
            reason: STUDY_MISMATCH,
            comment: format!("the instance belongs to study {}, not to the study of the request", staged.record.study_instance_uid),
        });
    }
    if !mismatched.is_empty() {
        let archive = Arc::clone(&state.archive);
        let _ = tokio::task::spawn_blocking(move || mismatched.into_iter().for_each(|s| archive.abandon(s))).await;
    }
    // Committed with the instances of concurrent requests (one flush for all of them).
    let committing: Vec<(String, String)> = to_commit.iter().map(|s| (s.record.sop_class_uid.to_string(), s.record.sop_instance_uid.to_string())).collect();
    let committed = if to_commit.is_empty() { Ok(Vec::new()) } else { state.committer().commit_all(to_commit).await };
    let reports = match committed {
        Ok(reports) => reports,
        Err(message) => {
            tracing::error!(error = %message, "STOW-RS commit failed; nothing stored");
            for (sop_class, sop_instance) in committing {
                failed.push(Failure { sop_class, sop_instance, reason: OUT_OF_RESOURCES, comment: message.clone() });
            }
            Vec::new()
        }
    };
    let base_url = state.base_url(&headers);
    let mut referenced: Vec<Json> = Vec::new();
    let mut studies: Vec<String> = Vec::new();
    let mut warned = false;
    for report in reports {
        let r = &report.record;
        if let InsertOutcome::Refused { .. } = report.outcome {
            failed.push(Failure {
                sop_class: r.sop_class_uid.to_string(),
                sop_instance: r.sop_instance_uid.to_string(),
                reason: DUPLICATE_SOP_INSTANCE,
                comment: "a different instance with this SOP Instance UID is stored".into(),
            });
            continue;
        }
        if !studies.contains(&r.study_instance_uid.to_string()) {
            studies.push(r.study_instance_uid.to_string());
        }
        let url = format!("{base_url}/studies/{}/series/{}/instances/{}", r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid);
        let mut item = json!({
            "00081150": {"vr": "UI", "Value": [r.sop_class_uid.as_str()]},
            "00081155": {"vr": "UI", "Value": [r.sop_instance_uid.as_str()]},
            "00081190": {"vr": "UR", "Value": [url]},
        });
        let kept_existing = matches!(report.outcome, InsertOutcome::KeptExisting { .. });
        if kept_existing && let Json::Object(map) = &mut item {
            // The archive kept the different object it already had under this UID (the
            // duplicate policy "keep"): this one was not stored. Warning Reason B006,
            // elements discarded, and the request answers 202.
            map.insert("00081196".into(), json!({"vr": "US", "Value": [ELEMENTS_DISCARDED]}));
            map.insert("00000902".into(), json!({"vr": "LO", "Value": ["a different instance with this UID is kept"]}));
            warned = true;
        } else if !report.warnings.is_empty()
            && let Json::Object(map) = &mut item
        {
            // Warning Reason B000 (coercion of data elements) is not right for values we
            // only failed to index: the stored bytes are untouched. Tell it as a comment.
            map.insert("00000902".into(), json!({"vr": "LO", "Value": [truncate(&report.warnings.join("; "))]}));
        }
        tracing::info!(sop = %r.sop_instance_uid, study = %r.study_instance_uid, outcome = ?report.outcome, "STOW-RS stored");
        referenced.push(item);
    }
    let failed_json: Vec<Json> = failed
        .iter()
        .map(|f| {
            let mut item = serde_json::Map::new();
            let ui = |v: &str| if v.is_empty() { json!({"vr": "UI"}) } else { json!({"vr": "UI", "Value": [v]}) };
            item.insert("00081150".into(), ui(&f.sop_class));
            item.insert("00081155".into(), ui(&f.sop_instance));
            item.insert("00081197".into(), json!({"vr": "US", "Value": [f.reason]}));
            item.insert("00000902".into(), json!({"vr": "LO", "Value": [truncate(&f.comment)]}));
            Json::Object(item)
        })
        .collect();
    for f in &failed {
        tracing::warn!(sop = %f.sop_instance, reason = format!("{:04X}", f.reason), comment = %f.comment, "STOW-RS instance failed");
    }
    let mut body = serde_json::Map::new();
    if let [only] = &studies[..] {
        body.insert("00081190".into(), json!({"vr": "UR", "Value": [format!("{base_url}/studies/{only}")]}));
    } else if let Some(study) = &study {
        body.insert("00081190".into(), json!({"vr": "UR", "Value": [format!("{base_url}/studies/{study}")]}));
    }
    if !failed_json.is_empty() {
        body.insert("00081198".into(), json!({"vr": "SQ", "Value": failed_json}));
    }
    if !referenced.is_empty() {
        body.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) if !warned => StatusCode::OK,
        (false, _) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    let bytes = serde_json::to_vec(&Json::Object(body)).map_err(|e| Error::Io { action: "writing JSON".into(), source: e.into() })?;
    Ok((status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/dicom+json"))], bytes).into_response())
}

/// Error Comment is LO: at most 64 characters.
fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}
