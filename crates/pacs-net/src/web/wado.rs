//! WADO-RS and WADO-URI: instances (streamed from their blobs in `multipart/related`), metadata
//! (DICOM JSON with `BulkDataURI`), frames (only the asked frames' bytes, by the offsets recorded
//! at ingest), bulk data, and the single-object WADO-URI request.
//!
//! Frames are sent as stored (`image/jls`, `image/jp2`, `image/dicom-rle`... in the stored
//! syntax; native little endian as `application/octet-stream`), or decoded to native little
//! endian samples when the client asks for `application/octet-stream` (with Explicit or Implicit
//! VR Little Endian, `*` or no `transfer-syntax`) and the object is compressed or big endian:
//! each frame decoded alone by `pacs_codec` from the object's header and that frame's fragments,
//! giving the samples that the object converted whole to Explicit VR Little Endian holds (colour
//! JPEG, JPEG-LS and JPEG 2000 frames as RGB). The first frame is decoded before the response
//! starts, the others as it streams. Re-encoding frames into another compressed syntax is not
//! offered (406, saying what is).
//!
//! An instance sent in another transfer syntax is converted whole before its part (or the
//! WADO-URI response) starts, into a spool (`pacs_codec::spool`): in memory up to
//! `SPOOL_MEMORY` (4 MiB), in an unnamed temporary file in the system's temporary folder
//! (`TMPDIR`) beyond, so that memory stays bounded for large multi-frame objects; the part then
//! streams from the spool. A conversion that fails sends nothing of that object: before the
//! response starts (the first conversion of a multipart response, the WADO-URI one) it is an
//! error status, later it cuts the response as below.
//!
//! Stored objects sent as they are, from a blob store that keeps files, are read by the task
//! that writes the response (module `web::stored`); other bodies are made on a blocking thread
//! and handed over a bounded channel.
//!
//! A multipart response whose part fails while it streams (the conversion or the decoding of a
//! corrupt object, a blob that cannot be read) ends with an error instead of its closing
//! boundary: the chunked body is not terminated and the connection is dropped, so that clients
//! report an incomplete response (curl exits with 18, requests and dicomweb-client raise
//! `ChunkedEncodingError`; 52 and `RemoteDisconnected` when nothing was written yet) rather than
//! taking fewer parts for the whole. The reason is in the server's log only; what was gathered
//! just before the failure may not reach the client.

use std::io::{BufReader, Read};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use pacs_codec::render::ImageFormat;
use pacs_codec::spool::{SPOOL_MEMORY, SpoolReader};
use pacs_core::scan::PixelLayout;
use pacs_core::{InstanceRecord, Scope};
use pacs_store::Archive;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::json::{self, BulkPath, DataSet, JsonOptions, ParseOptions, Value};
use super::media::{self, MediaRange, accepts_json, frame_media_type, parse_accept};
use super::qido::Params;
use super::stored::{StoredBody, StoredPart};
use super::{AppState, blocking, codec_error, render, uid};
use crate::blocks::PooledBlock;
use crate::error::{Error, Result};

/// Bytes read from a blob per chunk of a streamed response.
const CHUNK: usize = 64 * 1024;

/// The records of a study, a series of it, or an instance of that series; 404 when none.
pub(crate) async fn records(state: &AppState, study: &str, series: Option<&str>, instance: Option<&str>) -> Result<Vec<InstanceRecord>> {
    let study_uid = uid(study, "StudyInstanceUID")?;
    let series_uid = series.map(|s| uid(s, "SeriesInstanceUID")).transpose()?;
    let instance_uid = instance.map(|i| uid(i, "SOPInstanceUID")).transpose()?;
    let scope = match (&series_uid, &instance_uid) {
        (_, Some(i)) => Scope::Instance(i.clone()),
        (Some(s), None) => Scope::Series(s.clone()),
        (None, None) => Scope::Study(study_uid.clone()),
    };
    let archive = Arc::clone(&state.archive);
    let mut found = blocking(move || archive.instances(&scope)).await?;
    found.retain(|r| r.study_instance_uid == study_uid && series_uid.as_ref().is_none_or(|s| r.series_instance_uid == *s));
    if found.is_empty() {
        let what = match (series, instance) {
            (Some(s), Some(i)) => format!("instance {i} of series {s} of study {study}"),
            (Some(s), None) => format!("series {s} of study {study}"),
            _ => format!("study {study}"),
        };
        return Err(pacs_core::Error::NotFound { what }.into());
    }
    Ok(found)
}

fn accept_of(headers: &HeaderMap) -> Vec<MediaRange> {
    parse_accept(headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()))
}

/// The transfer syntax in which each of `records` is sent, from the `Accept` ranges (best
/// first): `None` as stored, `Some(uid)` transcoded.
///
/// A range's `transfer-syntax` parameter: `*` is as stored; a UID is that syntax (every instance
/// must convert into it); no parameter is Explicit VR Little Endian (PS3.18 8.7.3.5.2), except
/// that a wildcard range (`*/*`, `multipart/*`) takes an instance whose syntax cannot be decoded
/// as stored. The first range all instances can be sent in wins; 406 when none.
fn choose_syntaxes(accept: &[MediaRange], records: &[InstanceRecord]) -> Result<Vec<Option<String>>> {
    let explicit = pacs_codec::syntax::EXPLICIT_VR_LITTLE_ENDIAN;
    let mut refused = Vec::new();
    for range in accept {
        let wildcard = match range.essence.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" if range.param("type").is_none_or(|t| matches!(t, "application/dicom" | "application/*" | "*/*")) => {
                range.param("type").is_none_or(|t| t != "application/dicom")
            }
            "application/dicom" => false,
            _ => continue,
        };
        let asked = range.param("transfer-syntax");
        let mut targets = Vec::with_capacity(records.len());
        for record in records {
            let stored = record.transfer_syntax_uid.as_str();
            let target = match asked {
                Some("*") => None,
                Some(ts) if ts == stored => None,
                Some(ts) if pacs_codec::can_transcode(stored, ts) => Some(ts.to_owned()),
                Some(ts) => {
                    refused.push(format!("{} from {stored} to {ts}", record.sop_instance_uid));
                    break;
                }
                None if stored == explicit => None,
                None if pacs_codec::can_transcode(stored, explicit) => Some(explicit.to_owned()),
                None if wildcard => None,
                None => {
                    refused.push(format!("{} from {stored} to {explicit} (the default)", record.sop_instance_uid));
                    break;
                }
            };
            targets.push(target);
        }
        if targets.len() == records.len() {
            return Ok(targets);
        }
    }
    let reason = if refused.is_empty() {
        "instances are sent as multipart/related; type=\"application/dicom\"".to_owned()
    } else {
        format!("transcoding {} is not possible in this build", refused.join("; "))
    };
    Err(Error::NotAcceptable { reason })
}

/// Converts a stored object to `target` (blocking) into a spool, in memory up to
/// [`SPOOL_MEMORY`] and in a temporary file in the system's temporary folder beyond; returned,
/// ready to be read from its first byte, only once the whole conversion succeeded. A conversion
/// the codecs refuse is 406; a stored object that cannot be read, or whose pixel data does not
/// decode, is 500, and so is a temporary file that cannot be written.
fn transcode_record(archive: &Archive, record: &InstanceRecord, target: &str) -> Result<SpoolReader> {
    let reader = archive.read(record)?;
    let options = pacs_codec::TranscodeOptions::default();
    let converted = pacs_codec::spool::transcode_to_spool(&mut BufReader::with_capacity(CHUNK, reader), target, &options, SPOOL_MEMORY, None);
    let (spool, report) = converted.map_err(|e| match e {
        // The stored object is unreadable, or its pixel data does not decode (or contradicts
        // its attributes): a fault of the archive, not of the request.
        pacs_codec::Error::Invalid { .. } | pacs_codec::Error::Write { .. } | pacs_codec::Error::PixelData { .. } => {
            Error::from(pacs_core::Error::Corrupt { what: format!("stored object of {} cannot be read: {e}", record.sop_instance_uid) })
        }
        pacs_codec::Error::TempFile { source, .. } => {
            Error::Io { action: format!("converting {} to {target} into a temporary file", record.sop_instance_uid), source }
        }
        other => Error::NotAcceptable { reason: format!("transcoding {} to {target} is not possible: {other}", record.sop_instance_uid) },
    })?;
    tracing::debug!(
        sop = %record.sop_instance_uid, from = %report.source_transfer_syntax, to = target, bytes = spool.len(), on_disk = spool.is_on_disk(),
        streamed = report.streamed, "transcoded for WADO"
    );
    spool.into_reader().map_err(|source| Error::Io { action: format!("reading the conversion of {} back", record.sop_instance_uid), source })
}

/// What a streamed part is made of.
enum PartSource {
    /// A whole stored object.
    Object(InstanceRecord),
    /// A byte range of a stored object.
    Range(InstanceRecord, u64, u64),
    /// One frame of an instance.
    Frame(InstanceRecord, u32),
    /// One frame of an instance, decoded to native samples before its part starts (so that a
    /// frame that fails to decode cuts the response between parts).
    DecodedFrame(InstanceRecord, u32),
    /// Bytes already in memory.
    Bytes(Bytes),
    /// A stored object converted already, read from its spool.
    Spooled(SpoolReader),
    /// A stored object converted to a transfer syntax before its part starts (so that a failed
    /// conversion cuts the response between parts, never inside an object).
    Transcoded(InstanceRecord, String),
}

/// A `multipart/related` body whose parts are read on a blocking thread and streamed through a
/// bounded channel (memory: a few chunks, whatever the size of the objects).
fn multipart_body(archive: Arc<Archive>, parts: Vec<(String, PartSource)>, boundary: String) -> Body {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        // Small pieces (part headers, small objects) are gathered into chunks of about CHUNK
        // bytes: one hand-off and one write for many parts of a study of small instances.
        let pending = std::cell::RefCell::new(BytesMut::new());
        let flush = || {
            let chunk = pending.borrow_mut().split().freeze();
            chunk.is_empty() || tx.blocking_send(Ok(chunk)).is_ok()
        };
        let send = |chunk: Bytes| {
            if chunk.len() >= CHUNK {
                // Large pieces go as they are, after what was gathered.
                return flush() && tx.blocking_send(Ok(chunk)).is_ok();
            }
            pending.borrow_mut().extend_from_slice(&chunk);
            pending.borrow().len() < CHUNK || flush()
        };
        for (i, (content_type, source)) in parts.into_iter().enumerate() {
            let source = match source {
                PartSource::Transcoded(record, target) => match transcode_record(&archive, &record, &target) {
                    Ok(spool) => PartSource::Spooled(spool),
                    Err(e) => {
                        tracing::error!(error = %e, "transcoding for a WADO response failed; the response is cut short");
                        let _ = flush();
                        let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                        return;
                    }
                },
                PartSource::DecodedFrame(record, n) => match decode_frame(&archive, &record, n) {
                    Ok(bytes) => PartSource::Bytes(bytes),
                    Err(e) => {
                        tracing::error!(error = %corrupt_frame(&record, n, &e), "decoding a frame for a WADO response failed; the response is cut short");
                        let _ = flush();
                        let _ = tx.blocking_send(Err(std::io::Error::other(corrupt_frame(&record, n, &e).to_string())));
                        return;
                    }
                },
                other => other,
            };
            if i > 0 && !send(Bytes::from_static(media::PART_END)) {
                return;
            }
            if !send(media::part_header(&boundary, &content_type, &[])) {
                return;
            }
            let result: pacs_core::Result<bool> = (|| match source {
                PartSource::Bytes(b) => Ok(send(b)),
                PartSource::Spooled(spool) => send_spool(spool, &send),
                PartSource::Frame(record, n) => Ok(send(archive.read_frame(&record, n)?)),
                PartSource::Transcoded(..) | PartSource::DecodedFrame(..) => Ok(true),
                PartSource::Object(record) => {
                    let reader = archive.read(&record)?;
                    copy_chunks(reader, record.size, &send, &record)
                }
                PartSource::Range(record, offset, length) => {
                    let mut reader = archive.read(&record)?;
                    let skipped = std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink()).map_err(|source| pacs_core::Error::Io {
                        action: "reading blob",
                        target: record.blob.to_string(),
                        source,
                    })?;
                    if skipped < offset {
                        return Err(pacs_core::Error::Corrupt { what: format!("blob of {} is shorter than its index says", record.sop_instance_uid) });
                    }
                    copy_chunks(reader, length, &send, &record)
                }
            })();
            match result {
                Ok(true) => {}
                Ok(false) => return, // the client went away
                Err(e) => {
                    tracing::error!(error = %e, "streaming a WADO response failed; the response is cut short");
                    let _ = flush();
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
        }
        if send(media::closing(&boundary)) {
            let _ = flush();
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Bytes read from a blob at a time: large reads into pooled blocks, handed over without a copy.
const READ_BLOCK: usize = crate::blocks::BLOCK;

/// Sends the next `remaining` bytes of `reader`; `Ok(false)` when the client went away. A blob
/// shorter than that is an error: the part (and the `Content-Length` of the response) promised
/// those bytes.
fn copy_chunks(mut reader: Box<dyn Read + Send>, mut remaining: u64, send: &dyn Fn(Bytes) -> bool, record: &InstanceRecord) -> pacs_core::Result<bool> {
    while remaining > 0 {
        let want = remaining.min(READ_BLOCK as u64) as usize;
        let mut block = PooledBlock::take();
        let read = block.fill(&mut reader, want).map_err(|source| pacs_core::Error::Io { action: "reading blob", target: record.blob.to_string(), source })?;
        if read < want {
            return Err(pacs_core::Error::Corrupt { what: format!("blob of {} is shorter than its index says", record.sop_instance_uid) });
        }
        remaining -= want as u64;
        if !send(block.freeze()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sends the bytes of a converted object from its spool, in blocks; `Ok(false)` when the client
/// went away.
fn send_spool(mut spool: SpoolReader, send: &dyn Fn(Bytes) -> bool) -> pacs_core::Result<bool> {
    while spool.remaining() > 0 {
        let mut block = BytesMut::zeroed(spool.remaining().min(READ_BLOCK as u64) as usize);
        spool.read_exact(&mut block).map_err(|source| pacs_core::Error::Io {
            action: "reading a converted object back",
            target: "its temporary file".into(),
            source,
        })?;
        if !send(block.freeze()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The exact length of the multipart body of `parts` when every part's size is known before it
/// is read (stored objects sent as they are, byte ranges, bytes in memory): the response then
/// carries a `Content-Length`, which clients read in one go and show progress with. `None` when a
/// part is converted or decoded on the way (but not when converted already).
fn known_length(parts: &[(String, PartSource)], boundary: &str) -> Option<u64> {
    let mut total = media::closing(boundary).len() as u64;
    for (i, (content_type, source)) in parts.iter().enumerate() {
        let content = match source {
            PartSource::Object(record) => record.size,
            PartSource::Range(_, _, length) => *length,
            PartSource::Bytes(bytes) => bytes.len() as u64,
            PartSource::Spooled(spool) => spool.remaining(),
            PartSource::Frame(..) | PartSource::DecodedFrame(..) | PartSource::Transcoded(..) => return None,
        };
        let separator = if i > 0 { media::PART_END.len() as u64 } else { 0 };
        total += separator + media::part_header(boundary, content_type, &[]).len() as u64 + content;
    }
    Some(total)
}

/// The parts as objects read in place from their files ([`StoredBody`]), when every part is a
/// whole stored object kept as a file; the parts unchanged otherwise.
fn stored_parts(archive: &Archive, parts: Vec<(String, PartSource)>, boundary: &str) -> std::result::Result<Vec<StoredPart>, Vec<(String, PartSource)>> {
    let paths: Option<Vec<std::path::PathBuf>> = parts
        .iter()
        .map(|(_, source)| match source {
            PartSource::Object(record) => archive.local_path(record),
            _ => None,
        })
        .collect();
    let Some(paths) = paths else { return Err(parts) };
    let mut stored = Vec::with_capacity(parts.len());
    for (i, ((content_type, source), path)) in parts.into_iter().zip(paths).enumerate() {
        if let PartSource::Object(record) = source {
            let header = media::part_header(boundary, &content_type, &[]);
            let prefix = if i == 0 { header } else { [media::PART_END, &header[..]].concat().into() };
            stored.push(StoredPart::new(prefix, &record, path));
        }
    }
    Ok(stored)
}

fn multipart_response(archive: Arc<Archive>, part_type: &str, parts: Vec<(String, PartSource)>) -> Response {
    let boundary = media::boundary();
    let content_type = format!("multipart/related; type=\"{part_type}\"; boundary={boundary}");
    let length = known_length(&parts, &boundary);
    let body = match stored_parts(&archive, parts, &boundary) {
        Ok(stored) => Body::from_stream(StoredBody::new(stored, media::closing(&boundary))),
        Err(parts) => multipart_body(archive, parts, boundary),
    };
    let mut response = Response::new(body);
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    if let Some(length) = length {
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

async fn retrieve(state: AppState, headers: HeaderMap, study: String, series: Option<String>, instance: Option<String>) -> Result<Response> {
    let found = records(&state, &study, series.as_deref(), instance.as_deref()).await?;
    let targets = choose_syntaxes(&accept_of(&headers), &found)?;
    tracing::debug!(%study, instances = found.len(), transcoded = targets.iter().flatten().count(), "WADO-RS retrieve");
    let mut parts: Vec<(String, PartSource)> = Vec::with_capacity(found.len());
    let mut checked = false;
    for (record, target) in found.into_iter().zip(targets) {
        let content_type = format!("application/dicom; transfer-syntax={}", target.as_deref().unwrap_or(record.transfer_syntax_uid.as_str()));
        let source = match target {
            None => PartSource::Object(record),
            // The first conversion is made before the response starts, so that an object that
            // cannot be converted is a 406; the others are made as the response streams.
            Some(target) if !checked => {
                checked = true;
                let archive = Arc::clone(&state.archive);
                PartSource::Spooled(blocking(move || Ok(transcode_record(&archive, &record, &target))).await??)
            }
            Some(target) => PartSource::Transcoded(record, target),
        };
        parts.push((content_type, source));
    }
    Ok(multipart_response(Arc::clone(&state.archive), "application/dicom", parts))
}

/// `GET /studies/{study}`.
pub(crate) async fn retrieve_study(State(state): State<AppState>, Path(study): Path<String>, headers: HeaderMap) -> Result<Response> {
    retrieve(state, headers, study, None, None).await
}

/// `GET /studies/{study}/series/{series}`.
pub(crate) async fn retrieve_series(State(state): State<AppState>, Path((study, series)): Path<(String, String)>, headers: HeaderMap) -> Result<Response> {
    retrieve(state, headers, study, Some(series), None).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}`.
pub(crate) async fn retrieve_instance(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    retrieve(state, headers, study, Some(series), Some(instance)).await
}

/// Whether nothing but Pixel Data's value follows Pixel Data in the stored object (so that a
/// header read can stop there).
pub(crate) fn pixel_data_ends_object(record: &InstanceRecord) -> bool {
    match &record.pixel {
        PixelLayout::Native { offset, length } => offset + length >= record.size,
        PixelLayout::Encapsulated { fragments, .. } => fragments.last().is_some_and(|(offset, length)| offset + u64::from(*length) + 8 >= record.size),
        PixelLayout::Unknown => false,
    }
}

/// The URL of an instance under `base_url`.
pub(crate) fn instance_url(base_url: &str, record: &InstanceRecord) -> String {
    format!("{base_url}/studies/{}/series/{}/instances/{}", record.study_instance_uid, record.series_instance_uid, record.sop_instance_uid)
}

/// Parses the stored object of `record` (blocking).
pub(crate) fn parse_record(archive: &Archive, record: &InstanceRecord, options: &ParseOptions) -> pacs_core::Result<json::Parsed> {
    let reader = archive.read(record)?;
    json::parse(&mut BufReader::with_capacity(CHUNK, reader), options)
        .map_err(|e| pacs_core::Error::Corrupt { what: format!("stored object of {} cannot be parsed: {e}", record.sop_instance_uid) })
}

async fn metadata(state: AppState, headers: HeaderMap, study: String, series: Option<String>, instance: Option<String>) -> Result<Response> {
    if !accepts_json(&accept_of(&headers)) {
        return Err(Error::NotAcceptable { reason: "metadata is sent as application/dicom+json only".into() });
    }
    let found = records(&state, &study, series.as_deref(), instance.as_deref()).await?;
    let base_url = state.base_url(&headers);
    let archive = Arc::clone(&state.archive);
    let threshold = state.config.bulk_threshold;
    let body = blocking(move || {
        let mut out = Vec::with_capacity(found.len());
        for record in &found {
            let options = ParseOptions { inline_limit: threshold, stop_at_pixel_data: pixel_data_ends_object(record), capture: None };
            let parsed = parse_record(&archive, record, &options)?;
            let url = instance_url(&base_url, record);
            out.push(json::to_json(&parsed.data_set, &JsonOptions { instance_url: Some(&url), big_endian: parsed.big_endian }));
        }
        serde_json::to_vec(&Json::Array(out)).map_err(|e| pacs_core::Error::Corrupt { what: format!("writing JSON: {e}") })
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/dicom+json"))], body).into_response())
}

/// `GET /studies/{study}/metadata`.
pub(crate) async fn study_metadata(State(state): State<AppState>, Path(study): Path<String>, headers: HeaderMap) -> Result<Response> {
    metadata(state, headers, study, None, None).await
}

/// `GET /studies/{study}/series/{series}/metadata`.
pub(crate) async fn series_metadata(State(state): State<AppState>, Path((study, series)): Path<(String, String)>, headers: HeaderMap) -> Result<Response> {
    metadata(state, headers, study, Some(series), None).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/metadata`.
pub(crate) async fn instance_metadata(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    metadata(state, headers, study, Some(series), Some(instance)).await
}

/// Parses a frame list (`1,3,5`): 1-based numbers, each at most `count`.
pub(crate) fn parse_frame_list(text: &str, count: u32, sop: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for piece in text.split(',').map(str::trim) {
        let n: u32 = piece.parse().map_err(|_| Error::BadRequest { reason: format!("frame list: {piece:?} is not a frame number") })?;
        if n == 0 {
            return Err(Error::BadRequest { reason: "frame list: frame numbers start at 1".into() });
        }
        if n > count {
            return Err(pacs_core::Error::NotFound { what: format!("frame {n} of {sop} ({count} frames)") }.into());
        }
        out.push(n);
    }
    Ok(out)
}

/// How the frames of an instance are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameOutput {
    /// As stored, in the media type of the stored transfer syntax.
    Stored(&'static str),
    /// Decoded to native little endian samples: `application/octet-stream` in Explicit VR Little
    /// Endian.
    Decoded,
}

/// Whether `asked` (a `transfer-syntax` parameter) takes native little endian frames: their
/// bytes are the same in implicit and explicit VR.
fn native_syntax_ok(asked: Option<&str>) -> bool {
    matches!(asked, None | Some("*") | Some(pacs_core::scan::EXPLICIT_VR_LE) | Some(pacs_core::scan::IMPLICIT_VR_LE))
}

/// How the frames of `record` are sent, from the `Accept` ranges (best first).
///
/// A range names a part type (`multipart/related; type="image/jls"`, or the type alone) and
/// maybe a `transfer-syntax`. The first range that one of these answers satisfies wins, tried in
/// this order: the frames as stored (a part type covering the stored syntax's media type, and its
/// syntax, `*` or none; native little endian frames in either VR); decoded to native samples
/// (a part type covering `application/octet-stream`, and Explicit or Implicit VR Little Endian,
/// `*` or none) when the stored syntax is compressed (or big endian) and this build reads it.
/// Re-encoding frames into another compressed syntax is not offered: 406 names what is.
fn negotiate_frames(accept: &[MediaRange], record: &InstanceRecord) -> Result<FrameOutput> {
    let ts = record.transfer_syntax_uid.as_str();
    let stored = frame_media_type(ts);
    let native = stored == Some("application/octet-stream");
    let decodable = !native && pacs_codec::can_read(ts);
    for range in accept {
        let (part_types, asked) = match range.essence.as_str() {
            "*/*" | "multipart/*" => (None, range.param("transfer-syntax")),
            "multipart/related" => (range.param("type").map(|t| parse_accept(Some(t))), range.param("transfer-syntax")),
            _ => (Some(vec![range.clone()]), range.param("transfer-syntax")),
        };
        let covers = |media_type: &str| part_types.as_ref().is_none_or(|types| types.iter().any(|t| t.covers(media_type)));
        if let Some(media_type) = stored
            && covers(media_type)
            && (matches!(asked, None | Some("*")) || asked == Some(ts) || (native && native_syntax_ok(asked)))
        {
            return Ok(FrameOutput::Stored(media_type));
        }
        if decodable && covers("application/octet-stream") && native_syntax_ok(asked) {
            return Ok(FrameOutput::Decoded);
        }
    }
    let stored_as = match stored {
        Some(media_type) => format!("frames of this object are stored as {media_type} (transfer syntax {ts})"),
        None => format!("frames of this object (transfer syntax {ts}) cannot be sent as stored"),
    };
    let decoded = if decodable {
        "or decoded as application/octet-stream (transfer-syntax=1.2.840.10008.1.2.1)"
    } else if native {
        "and are native already"
    } else {
        "and cannot be decoded by this build"
    };
    Err(Error::NotAcceptable { reason: format!("{stored_as}, {decoded}; re-encoding frames into another syntax is not supported") })
}

/// Decodes frame `n` of a compressed `record` alone (blocking): the object's header and the
/// frame's own bytes are read, nothing else.
fn decode_frame(archive: &Archive, record: &InstanceRecord, n: u32) -> std::result::Result<Bytes, DecodeError> {
    let encoded = archive.read_frame(record, n)?;
    let mut header = BufReader::with_capacity(CHUNK, archive.read(record)?);
    Ok(Bytes::from(pacs_codec::render::decode_encoded_frame(&mut header, encoded.to_vec())?))
}

/// Decodes frames `numbers` of `record` from the whole object (blocking), for objects whose
/// frames cannot be read alone.
fn decode_whole(archive: &Archive, record: &InstanceRecord, numbers: &[u32]) -> std::result::Result<Vec<Bytes>, DecodeError> {
    let mut reader = BufReader::with_capacity(CHUNK, archive.read(record)?);
    Ok(pacs_codec::render::decode_frames(&mut reader, numbers)?.into_iter().map(Bytes::from).collect())
}

/// Why a frame could not be decoded: reading the archive, or the codecs.
#[derive(Debug)]
enum DecodeError {
    /// Reading the stored object failed.
    Archive(pacs_core::Error),
    /// The codecs refused or failed.
    Codec(pacs_codec::Error),
}

impl From<pacs_core::Error> for DecodeError {
    fn from(e: pacs_core::Error) -> Self {
        DecodeError::Archive(e)
    }
}

impl From<pacs_codec::Error> for DecodeError {
    fn from(e: pacs_codec::Error) -> Self {
        DecodeError::Codec(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Archive(e) => e.into(),
            DecodeError::Codec(e) => codec_error(e),
        }
    }
}

/// A frame that fails to decode while the response streams: the stored object is at fault.
fn corrupt_frame(record: &InstanceRecord, n: u32, error: &DecodeError) -> pacs_core::Error {
    match error {
        DecodeError::Archive(e) => pacs_core::Error::Corrupt { what: format!("frame {n} of {}: {e}", record.sop_instance_uid) },
        DecodeError::Codec(e) => pacs_core::Error::Corrupt { what: format!("frame {n} of {} cannot be decoded: {e}", record.sop_instance_uid) },
    }
}

/// `GET .../instances/{instance}/frames/{list}`: each frame read alone from the blob, as stored,
/// or decoded to native samples (see [`negotiate_frames`]).
pub(crate) async fn frames(
    State(state): State<AppState>,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let record = records(&state, &study, Some(&series), Some(&instance)).await?.remove(0);
    let numbers = parse_frame_list(&list, record.frame_count(), &instance)?;
    let archive = Arc::clone(&state.archive);
    match negotiate_frames(&accept_of(&headers), &record)? {
        FrameOutput::Stored(media_type) => {
            if record.frame_ranges().is_none() {
                return Err(Error::NotImplemented {
                    reason: format!("the frames of {instance} cannot be located in the stored object (no offsets recorded for its pixel data)"),
                });
            }
            let syntax = if media_type == "application/octet-stream" { pacs_core::scan::EXPLICIT_VR_LE } else { record.transfer_syntax_uid.as_str() };
            let content_type = format!("{media_type}; transfer-syntax={syntax}");
            let parts = numbers.into_iter().map(|n| (content_type.clone(), PartSource::Frame(record.clone(), n))).collect();
            Ok(multipart_response(archive, media_type, parts))
        }
        FrameOutput::Decoded => {
            let media_type = "application/octet-stream";
            let content_type = format!("{media_type}; transfer-syntax={}", pacs_core::scan::EXPLICIT_VR_LE);
            tracing::debug!(sop = %record.sop_instance_uid, ts = %record.transfer_syntax_uid, frames = numbers.len(), "WADO-RS frames decoded");
            let alone = matches!(record.pixel, PixelLayout::Encapsulated { .. }) && record.frame_ranges().is_some();
            let parts: Vec<(String, PartSource)> = if alone && let Some((&first, rest)) = numbers.split_first() {
                // The first frame is decoded before the response starts, so that an object that
                // cannot be decoded is an error status; the others as the response streams.
                let of_first = record.clone();
                let first = blocking(move || Ok(decode_frame(&archive, &of_first, first))).await?.map_err(Error::from)?;
                let mut parts = vec![(content_type.clone(), PartSource::Bytes(first))];
                parts.extend(rest.iter().map(|&n| (content_type.clone(), PartSource::DecodedFrame(record.clone(), n))));
                parts
            } else {
                let whole = record.clone();
                let decoded = blocking(move || Ok(decode_whole(&archive, &whole, &numbers))).await?.map_err(Error::from)?;
                decoded.into_iter().map(|bytes| (content_type.clone(), PartSource::Bytes(bytes))).collect()
            };
            Ok(multipart_response(Arc::clone(&state.archive), media_type, parts))
        }
    }
}

fn find_bulk<'a>(data_set: &'a DataSet, path: &BulkPath) -> Option<&'a Value> {
    let mut current = data_set;
    for (tag, index) in &path.steps {
        match &current.get(*tag)?.value {
            Value::Items(items) => current = items.get(*index)?,
            _ => return None,
        }
    }
    Some(&current.get(path.tag)?.value)
}

/// `GET .../instances/{instance}/bulkdata/{path}`: one bulk value, as the `BulkDataURI`s of
/// `/metadata` name them.
pub(crate) async fn bulkdata(State(state): State<AppState>, Path((study, series, instance, path)): Path<(String, String, String, String)>) -> Result<Response> {
    let bulk = BulkPath::parse(&path).ok_or_else(|| Error::BadRequest { reason: format!("bulk data path {path:?}: expected TAG or SEQTAG/ITEM/.../TAG") })?;
    let record = records(&state, &study, Some(&series), Some(&instance)).await?.remove(0);
    let archive = Arc::clone(&state.archive);
    if bulk.steps.is_empty() && bulk.tag == json::PIXEL_DATA {
        match &record.pixel {
            PixelLayout::Native { offset, length } => {
                let (offset, length) = (*offset, *length);
                let parts = vec![("application/octet-stream".to_owned(), PartSource::Range(record, offset, length))];
                return Ok(multipart_response(archive, "application/octet-stream", parts));
            }
            PixelLayout::Encapsulated { .. } if record.frame_ranges().is_some() => {
                let media_type = frame_media_type(record.transfer_syntax_uid.as_str()).unwrap_or("application/octet-stream");
                let content_type = format!("{media_type}; transfer-syntax={}", record.transfer_syntax_uid);
                let parts = (1..=record.frame_count()).map(|n| (content_type.clone(), PartSource::Frame(record.clone(), n))).collect();
                return Ok(multipart_response(archive, media_type, parts));
            }
            _ => {}
        }
    }
    let what = format!("bulk data {path} of {instance}");
    let value = blocking(move || {
        let options = ParseOptions { inline_limit: 0, stop_at_pixel_data: bulk.tag != json::PIXEL_DATA, capture: Some(bulk.clone()) };
        let parsed = parse_record(&archive, &record, &options)?;
        match find_bulk(&parsed.data_set, &bulk) {
            Some(Value::Bytes(b)) => Ok(Bytes::from(b.clone())),
            _ => Err(pacs_core::Error::NotFound { what }),
        }
    })
    .await?;
    let parts = vec![("application/octet-stream".to_owned(), PartSource::Bytes(value))];
    Ok(multipart_response(Arc::clone(&state.archive), "application/octet-stream", parts))
}

/// A body of the bytes of `reader`, read on a blocking thread and streamed through a bounded
/// channel; a read error cuts the response.
fn reader_body(mut reader: impl Read + Send + 'static) -> Body {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// `GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=&contentType=` (WADO-URI, PS3.18
/// chapter 9): the object as `application/dicom`, or rendered as `image/jpeg` (the default) or
/// `image/png`.
pub(crate) async fn wado_uri(State(state): State<AppState>, UrlQuery(params): UrlQuery<Params>) -> Result<Response> {
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    match get("requestType") {
        Some("WADO") => {}
        Some(other) => return Err(Error::BadRequest { reason: format!("parameter requestType: expected WADO, got {other:?}") }),
        None => return Err(Error::BadRequest { reason: "parameter requestType is missing".into() }),
    }
    let required = |name: &str| get(name).ok_or_else(|| Error::BadRequest { reason: format!("parameter {name} is missing") });
    let (study, series, object) = (required("studyUID")?, required("seriesUID")?, required("objectUID")?);
    let content_type = get("contentType").unwrap_or("image/jpeg").split(',').next().unwrap_or("image/jpeg").trim().to_owned();
    let record = records(&state, study, Some(series), Some(object)).await?.remove(0);
    match content_type.as_str() {
        "application/dicom" => {
            // PS3.18 9.1.2.5: transferSyntax, Explicit VR Little Endian by default (as stored
            // when that cannot be decoded and none was asked for).
            let stored = record.transfer_syntax_uid.as_str();
            let explicit = pacs_codec::syntax::EXPLICIT_VR_LITTLE_ENDIAN;
            let target = match get("transferSyntax").map(str::trim) {
                Some("*") => None,
                Some(ts) if ts == stored => None,
                Some(ts) if pacs_codec::can_transcode(stored, ts) => Some(ts.to_owned()),
                Some(ts) => return Err(Error::NotAcceptable { reason: format!("transcoding {object} from {stored} to {ts} is not possible in this build") }),
                None if stored != explicit && pacs_codec::can_transcode(stored, explicit) => Some(explicit.to_owned()),
                None => None,
            };
            let archive = Arc::clone(&state.archive);
            let dicom = (header::CONTENT_TYPE, HeaderValue::from_static("application/dicom"));
            if let Some(target) = target {
                // Converted whole before the response starts: a failure is an error status.
                let spool = blocking(move || Ok(transcode_record(&archive, &record, &target))).await??;
                let length = (header::CONTENT_LENGTH, HeaderValue::from(spool.remaining()));
                return Ok((StatusCode::OK, [dicom, length], reader_body(spool)).into_response());
            }
            if let Some(path) = archive.local_path(&record) {
                // Opened before the response starts, so that a missing blob is an error status.
                let mut part = StoredPart::new(Bytes::new(), &record, path.clone());
                let key = record.blob.clone();
                part.file = Some(blocking(move || pacs_store::blob::open_file(&path, &key)).await?);
                let length = (header::CONTENT_LENGTH, HeaderValue::from(record.size));
                let body = StoredBody::new(vec![part], Bytes::new());
                return Ok((StatusCode::OK, [dicom, length], Body::from_stream(body)).into_response());
            }
            let reader = blocking(move || archive.read(&record)).await?;
            Ok((StatusCode::OK, [dicom], reader_body(reader)).into_response())
        }
        "image/jpeg" | "image/png" | "image/*" | "*/*" => {
            let format = if content_type == "image/png" { ImageFormat::Png } else { ImageFormat::Jpeg };
            let frame = match get("frameNumber") {
                Some(n) => n.trim().parse().map_err(|_| Error::BadRequest { reason: format!("parameter frameNumber: not a number: {n:?}") })?,
                None => 1,
            };
            let window = match (get("windowCenter"), get("windowWidth")) {
                (Some(c), Some(w)) => Some(render::parse_window(&format!("{c},{w},linear"))?),
                (None, None) => None,
                _ => return Err(Error::BadRequest { reason: "parameters windowCenter and windowWidth go together".into() }),
            };
            let options = render::RenderOptions { format, frame, window, viewport: None, quality: 90 };
            render::render_record(&state, record, options).await
        }
        other => Err(Error::NotAcceptable { reason: format!("parameter contentType: {other:?} is not offered (application/dicom, image/jpeg, image/png)") }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(parse_frame_list("1, 3,2", 3, "1.2").expect("valid"), [1, 3, 2]);
        for (text, status) in [("0", 400), ("1,,2", 400), ("x", 400), ("-1", 400), ("4", 404), ("", 400)] {
            let e = parse_frame_list(text, 3, "1.2").expect_err(text);
            assert_eq!(super::super::http_status(&e).as_u16(), status, "{text:?}: {e}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_frame_list_is_read_or_refused(text in prop_oneof![".{0,20}", "[0-9, +-]{0,20}"], count in 0u32..20) {
            match parse_frame_list(&text, count, "1.2") {
                Ok(frames) => {
                    prop_assert!(!frames.is_empty());
                    prop_assert!(frames.iter().all(|&n| (1..=count).contains(&n)), "{:?} -> {:?}", text, frames);
                }
                Err(e) => prop_assert!(matches!(super::super::http_status(&e).as_u16(), 400 | 404), "{:?}: {}", text, e),
            }
        }

        #[test]
        fn written_frame_lists_read_back(frames in proptest::collection::vec(1u32..50, 1..8)) {
            let text = frames.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_frame_list(&text, 50, "1.2").expect("valid"), frames);
        }
    }
}
