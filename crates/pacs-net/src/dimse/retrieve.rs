//! Retrieve: the storage sub-operations of C-GET (on the requesting association) and of C-MOVE
//! (to a known AE, on an association of their own). Each instance streams from its blob (data set only, as stored) in PDU-sized
//! fragments; memory stays bounded whatever the study size.
//!
//! When the peer accepted the instance's SOP class but not its stored transfer syntax, the
//! instance is converted (`pacs_codec`) to an accepted syntax on the blocking pool before it is
//! sent, one instance at a time, into a spool (`pacs_codec::spool`): in memory up to
//! `SPOOL_MEMORY` (4 MiB), in an unnamed temporary file in the system's temporary folder
//! (`TMPDIR`) beyond, so that memory stays bounded for large multi-frame objects; the data set
//! then streams from the spool. When no accepted syntax can be produced, or the conversion
//! fails, the sub-operation fails and nothing of the instance is sent.

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use dicom_ul::ClientAssociationOptions;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PDataValueType, Pdu, PresentationContextNegotiated, PresentationContextResultReason};
use pacs_core::scan::data_set_offset;
use pacs_core::{InstanceRecord, Query, QueryLevel, Scope, Uid};
use pacs_store::Archive;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use pacs_codec::spool::{SPOOL_MEMORY, SpoolReader};
use pacs_codec::syntax::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};

use super::command::{Command, CommandField, Priority, status};
use crate::error::{Error, Result};

/// Counts of the storage sub-operations of a retrieve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubOperations {
    /// Not yet attempted.
    pub remaining: u16,
    /// Stored by the destination with success.
    pub completed: u16,
    /// Refused by the destination, or not sendable.
    pub failed: u16,
    /// Stored with a warning.
    pub warning: u16,
}

impl SubOperations {
    /// The status of the final response: success, or 0xB000 when any sub-operation failed or
    /// had a warning.
    pub fn final_status(&self) -> u16 {
        if self.failed > 0 || self.warning > 0 { status::SUB_OPERATIONS_COMPLETE_WITH_FAILURES } else { status::SUCCESS }
    }

    /// Counts one sub-operation's response status; `true` if it failed.
    pub fn record(&mut self, code: u16) -> bool {
        match status::status_kind(code) {
            status::StatusKind::Success => self.completed += 1,
            status::StatusKind::Warning => self.warning += 1,
            _ => {
                self.failed += 1;
                return true;
            }
        }
        false
    }
}

/// The presentation contexts an association accepted, to pick one for each instance.
pub struct AcceptedContexts(Vec<(u8, String, String)>);

impl AcceptedContexts {
    /// From the negotiated presentation contexts.
    pub fn new(negotiated: &[PresentationContextNegotiated]) -> AcceptedContexts {
        AcceptedContexts(
            negotiated
                .iter()
                .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
                .map(|pc| (pc.id, pc.abstract_syntax.trim_end_matches('\0').to_owned(), pc.transfer_syntax.trim_end_matches('\0').to_owned()))
                .collect(),
        )
    }

    /// The context to send the instance on: the one accepted for its SOP class in its stored
    /// transfer syntax, or else one in a syntax it can be converted to (Explicit VR Little
    /// Endian first, then Implicit, then any other).
    pub fn for_record(&self, record: &InstanceRecord) -> Option<u8> {
        let stored = record.transfer_syntax_uid.as_str();
        let for_class = || self.0.iter().filter(|(_, a, _)| a == record.sop_class_uid.as_str());
        if let Some(exact) = for_class().find(|(_, _, t)| t == stored) {
            return Some(exact.0);
        }
        let rank = |t: &str| match t {
            EXPLICIT_VR_LITTLE_ENDIAN => 0,
            IMPLICIT_VR_LITTLE_ENDIAN => 1,
            _ => 2,
        };
        // Never into a lossy syntax: that would be a new instance under the old UID.
        for_class().filter(|(_, _, t)| !pacs_codec::syntax::is_lossy(t) && pacs_codec::can_transcode(stored, t)).min_by_key(|(_, _, t)| rank(t)).map(|c| c.0)
    }

    /// The transfer syntax of an accepted context.
    pub fn transfer_syntax(&self, context: u8) -> Option<&str> {
        self.0.iter().find(|c| c.0 == context).map(|c| c.2.as_str())
    }
}

/// The instances a retrieve identifier designates: the query's keys applied at instance level.
pub fn instances_of(archive: &Archive, query: &Query) -> pacs_core::Result<Vec<InstanceRecord>> {
    if let Some(found) = by_unique_keys(archive, query)? {
        return Ok(found);
    }
    let mut at_instance = query.clone();
    at_instance.level = QueryLevel::Instance;
    at_instance.limit = None;
    at_instance.offset = 0;
    let rows = archive.query(&at_instance)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(uid) = row.get(&pacs_core::Attribute::SopInstanceUid) else { continue };
        let uid = Uid::new(uid)?;
        out.extend(archive.instances(&Scope::Instance(uid))?);
    }
    Ok(out)
}

/// The records of the usual retrieve identifier, in one index read: only unique keys (a single
/// Study or Series Instance UID, one SOP Instance UID or a list of them; anything else universal).
/// `None` for any other identifier, which goes through the general query.
fn by_unique_keys(archive: &Archive, query: &Query) -> pacs_core::Result<Option<Vec<InstanceRecord>>> {
    use pacs_core::{Attribute, Matcher};
    let (mut study, mut series, mut instances): (Option<&str>, Option<&str>, Option<Vec<&str>>) = (None, None, None);
    for key in &query.keys {
        match (key.attribute, &key.matcher) {
            (_, Matcher::Universal) => {}
            (Attribute::StudyInstanceUid, Matcher::Single(uid)) => study = Some(uid),
            (Attribute::SeriesInstanceUid, Matcher::Single(uid)) => series = Some(uid),
            (Attribute::SopInstanceUid, Matcher::Single(uid)) => instances = Some(vec![uid]),
            (Attribute::SopInstanceUid, Matcher::UidList(uids)) => instances = Some(uids.iter().map(String::as_str).collect()),
            _ => return Ok(None),
        }
    }
    let scope = match (&instances, series, study) {
        (Some(list), _, _) if list.len() == 1 => Scope::Instance(Uid::new(list[0])?),
        (_, Some(uid), _) => Scope::Series(Uid::new(uid)?),
        (_, None, Some(uid)) => Scope::Study(Uid::new(uid)?),
        _ => return Ok(None),
    };
    let mut found = archive.instances(&scope)?;
    found.retain(|r| {
        study.is_none_or(|uid| r.study_instance_uid.as_str() == uid)
            && series.is_none_or(|uid| r.series_instance_uid.as_str() == uid)
            && instances.as_ref().is_none_or(|list| list.contains(&r.sop_instance_uid.as_str()))
    });
    Ok(Some(found))
}

/// Bytes read from a blob at a time when an instance is sent as stored.
const READ_BLOCK: usize = 256 * 1024;

/// Streams the data set of `record` in blocks of at most `chunk` bytes.
fn stream_data_set(archive: Arc<Archive>, record: InstanceRecord, chunk: usize) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let result = (|| -> std::io::Result<()> {
            let mut reader = archive.read(&record).map_err(std::io::Error::other)?;
            let mut head = vec![0u8; 64 * 1024];
            let mut filled = 0;
            while filled < head.len() {
                let n = reader.read(&mut head[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            head.truncate(filled);
            let offset = data_set_offset(&head).ok_or_else(|| std::io::Error::other("stored object has no readable File Meta Information"))? as usize;
            let mut pending = head.split_off(offset.min(head.len()));
            loop {
                while pending.len() < chunk {
                    let start = pending.len();
                    pending.resize(chunk, 0);
                    let n = reader.read(&mut pending[start..])?;
                    pending.truncate(start + n);
                    if n == 0 {
                        break;
                    }
                }
                if pending.is_empty() {
                    return Ok(());
                }
                let rest = if pending.len() > chunk { pending.split_off(chunk) } else { Vec::new() };
                if tx.blocking_send(Ok(Bytes::from(std::mem::replace(&mut pending, rest)))).is_err() {
                    return Ok(());
                }
            }
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Converts the data set of `record` to `target` on the blocking pool into a spool (see the
/// module), then streams it in blocks of at most `chunk` bytes; the error says why it could not
/// be converted, and then nothing was sent.
async fn transcoded_data_set(
    archive: Arc<Archive>,
    record: InstanceRecord,
    target: String,
    chunk: usize,
) -> std::result::Result<mpsc::Receiver<std::io::Result<Bytes>>, String> {
    let spool = tokio::task::spawn_blocking(move || -> std::result::Result<SpoolReader, String> {
        let mut reader = BufReader::with_capacity(64 * 1024, archive.read(&record).map_err(|e| e.to_string())?);
        let options = pacs_codec::TranscodeOptions { output: pacs_codec::Output::DataSet, ..Default::default() };
        // Handed over only once the whole conversion succeeded: one that fails sends nothing.
        let (spool, report) = pacs_codec::spool::transcode_to_spool(&mut reader, &target, &options, SPOOL_MEMORY, None).map_err(|e| e.to_string())?;
        tracing::debug!(
            sop_instance_uid = %record.sop_instance_uid, from = %report.source_transfer_syntax, to = %report.target_transfer_syntax,
            frames = report.frames, streamed = report.streamed, bytes = spool.len(), on_disk = spool.is_on_disk(), "converted for sending"
        );
        spool.into_reader().map_err(|e| format!("reading the converted data set back: {e}"))
    })
    .await
    .map_err(|e| format!("conversion task: {e}"))??;
    Ok(stream_spool(spool, chunk))
}

/// Streams the bytes of `spool` in blocks of at most `chunk` bytes, read on the blocking pool.
fn stream_spool(mut spool: SpoolReader, chunk: usize) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        while spool.remaining() > 0 {
            let mut block = vec![0u8; spool.remaining().min(chunk.max(1) as u64) as usize];
            let read = spool.read_exact(&mut block).map(|()| Bytes::from(block));
            let failed = read.is_err();
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Where the storage sub-operations of a C-MOVE go.
#[derive(Clone, Copy, Debug)]
pub struct Destination<'a> {
    /// Our AE title, the calling AE of the storage association.
    pub our_ae: &'a str,
    /// The destination's AE title.
    pub called: &'a str,
    /// The destination's `host:port`.
    pub address: &'a str,
}

/// Sends `records` to `destination` as C-STORE sub-operations of the C-MOVE `message_id` from
/// `originator`, calling `progress` after each one and stopping early once `stop` is set (a
/// C-CANCEL). Returns the final counts and the SOP Instance UIDs that failed.
pub async fn send_all(
    archive: Arc<Archive>,
    records: Vec<InstanceRecord>,
    destination: Destination<'_>,
    originator: &str,
    message_id: u16,
    stop: &AtomicBool,
    progress: &mut (dyn FnMut(SubOperations) + Send),
) -> Result<(SubOperations, Vec<String>)> {
    let mut counts = SubOperations { remaining: records.len() as u16, ..SubOperations::default() };
    let mut failed_uids = Vec::new();
    if records.is_empty() {
        return Ok((counts, failed_uids));
    }
    let Destination { our_ae, called, address } = destination;
    let mut options = ClientAssociationOptions::new().calling_ae_title(our_ae.to_owned()).called_ae_title(called.to_owned());
    // One context per SOP class and stored syntax, and one per SOP class in the uncompressed
    // syntaxes, to convert into when the destination refuses the stored one.
    let mut proposed: Vec<(String, String)> = Vec::new();
    let uncompressed = format!("{EXPLICIT_VR_LITTLE_ENDIAN}+{IMPLICIT_VR_LITTLE_ENDIAN}");
    for r in &records {
        let pair = (r.sop_class_uid.to_string(), r.transfer_syntax_uid.to_string());
        if !proposed.contains(&pair) {
            options = options.with_presentation_context(pair.0.clone(), vec![pair.1.clone()]);
            proposed.push(pair);
        }
        let fallback = (r.sop_class_uid.to_string(), uncompressed.clone());
        if !proposed.contains(&fallback) {
            options = options.with_presentation_context(fallback.0.clone(), vec![EXPLICIT_VR_LITTLE_ENDIAN.to_owned(), IMPLICIT_VR_LITTLE_ENDIAN.to_owned()]);
            proposed.push(fallback);
        }
    }
    let peer = format!("{called}@{address}");
    let mut ul = options.establish_async(address).await.map_err(|source| Error::Association { peer: peer.clone(), source: Box::new(source) })?;
    // Without TCP_NODELAY every sub-operation waits for a delayed ACK (about 40 ms on loopback).
    let _ = ul.inner_stream().set_nodelay(true);
    let accepted = AcceptedContexts::new(ul.presentation_contexts());
    for (i, record) in records.into_iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        counts.remaining -= 1;
        let Some(context) = accepted.for_record(&record) else {
            counts.failed += 1;
            failed_uids.push(record.sop_instance_uid.to_string());
            progress(counts);
            continue;
        };
        let sop = record.sop_instance_uid.to_string();
        let originated = Some((originator, message_id));
        let code = store_one(&mut ul, Arc::clone(&archive), record, context, i as u16 + 1, originated, None).await?;
        if counts.record(code) {
            failed_uids.push(sop);
        }
        progress(counts);
    }
    let _ = ul.release().await;
    Ok((counts, failed_uids))
}

/// Sends one instance as a C-STORE sub-operation on `ul` (presentation context `context`) and
/// returns the status of the peer's C-STORE-RSP. The data set streams from the blob in
/// fragments that fit the peer's maximum PDU length. When the context's transfer syntax is not
/// the stored one, the instance is converted first; if that fails, nothing is sent and the
/// status is 0xA900 (the sub-operation failed).
///
/// On a C-GET association the peer may send a C-CANCEL-RQ before the C-STORE-RSP: with
/// `cancel` = `(C-GET message ID, flag)`, one for that message sets the flag.
pub async fn store_one<A>(
    ul: &mut A,
    archive: Arc<Archive>,
    record: InstanceRecord,
    context: u8,
    message_id: u16,
    move_originator: Option<(&str, u16)>,
    mut cancel: Option<(u16, &mut bool)>,
) -> Result<u16>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    let peer = ul.peer_ae_title().to_owned();
    let ul_error = |source| Error::Association { peer: peer.clone(), source: Box::new(source) };
    let chunk = super::fragment_size(ul.peer_max_pdu_length());
    let sop = record.sop_instance_uid.to_string();
    let mut request = Command::c_store_rq(message_id, record.sop_class_uid.as_str(), &sop, Priority::Medium);
    if let Some((ae, id)) = move_originator {
        request.move_originator_ae_title = Some(ae.to_owned());
        request.move_originator_message_id = Some(id);
    }
    let target = ul
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == context)
        .map(|pc| pc.transfer_syntax.trim_end_matches('\0').to_owned())
        .unwrap_or_else(|| record.transfer_syntax_uid.to_string());
    let mut data = if target == record.transfer_syntax_uid.as_str() {
        // Read in large blocks (few hand-offs between threads), sent in PDU-sized fragments.
        stream_data_set(archive, record, READ_BLOCK.max(chunk))
    } else {
        match transcoded_data_set(archive, record, target.clone(), READ_BLOCK.max(chunk)).await {
            Ok(rx) => rx,
            Err(reason) => {
                tracing::warn!(%peer, sop_instance_uid = %sop, transfer_syntax = %target, %reason, "not sent: cannot convert");
                return Ok(status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
            }
        }
    };
    // The PDUs of each block (the command's with the first) are encoded into one buffer and
    // written at once, at a PDU boundary: one system call per block rather than per PDU.
    let mut out = Vec::with_capacity(READ_BLOCK + READ_BLOCK / chunk.max(1) * 12 + 256);
    super::encode_pdus(&mut out, context, true, &request.encode(), chunk, true);
    let mut next = data.recv().await;
    if next.is_none() {
        AsyncAssociation::inner_stream(ul).write_all(&out).await.map_err(|source| Error::Io { action: format!("sending to {peer}"), source })?;
    }
    while let Some(block) = next {
        let block = block.map_err(|source| Error::Io { action: format!("reading instance {sop}"), source })?;
        next = data.recv().await;
        super::encode_pdus(&mut out, context, false, &block, chunk, next.is_none());
        AsyncAssociation::inner_stream(ul).write_all(&out).await.map_err(|source| Error::Io { action: format!("sending to {peer}"), source })?;
        out.clear();
    }
    let mut bytes = Vec::new();
    loop {
        match AsyncAssociation::receive(ul).await.map_err(ul_error)? {
            Pdu::PData { data } => {
                for value in data {
                    if value.value_type != PDataValueType::Command {
                        return Err(Error::Malformed { reason: "data fragment where a C-STORE-RSP was expected".into() });
                    }
                    bytes.extend_from_slice(&value.data);
                    if value.is_last {
                        let response = Command::decode(&std::mem::take(&mut bytes))?;
                        if let Some((get_id, flag)) = &mut cancel
                            && response.field == CommandField::CCancelRq
                            && response.message_id_responded_to == Some(*get_id)
                        {
                            **flag = true;
                            continue;
                        }
                        if response.field != CommandField::CStoreRsp {
                            return Err(Error::Malformed { reason: format!("{:?} where a C-STORE-RSP was expected", response.field) });
                        }
                        return Ok(response.status.unwrap_or(status::PROCESSING_FAILURE));
                    }
                }
            }
            other => return Err(Error::Malformed { reason: format!("{} where a C-STORE-RSP was expected", other.short_description()) }),
        }
    }
}
