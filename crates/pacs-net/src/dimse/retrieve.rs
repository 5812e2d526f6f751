//! Retrieve: the storage sub-operations of C-GET (on the requesting association) and of C-MOVE
//! (to a known AE, on an association of their own). Each instance streams from its blob (data
//! set only, as stored) in blocks of PDU-sized fragments; memory stays bounded whatever the study
//! size. The next instance's blob is opened and read ahead ([`Prefetch`]) while the current one
//! is sent and its response awaited. A blob that cannot be read fails that sub-operation only
//! (its SOP Instance UID goes to the failed list); one that breaks off mid-transfer ends the
//! association, since part of its data set is already sent.
//!
//! When the peer accepted the instance's SOP class but not its stored transfer syntax, the
//! instance is converted (`pacs_codec`) to an accepted syntax on the blocking pool before it is
//! sent, one instance at a time, into a spool (`pacs_codec::spool`): in memory up to
//! `SPOOL_MEMORY` (4 MiB), in an unnamed temporary file in the system's temporary folder
//! (`TMPDIR`) beyond, so that memory stays bounded for large multi-frame objects; the data set
//! then streams from the spool. When no accepted syntax can be produced, or the conversion
//! fails, the sub-operation fails and nothing of the instance is sent.

use std::io::BufReader;
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
use crate::blocks::{BLOCK, PooledBlock};
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

/// An instance about to go out as a C-STORE sub-operation, on the presentation context chosen
/// for it; when it is sent as stored, its data set is already being read.
pub struct Outgoing {
    record: InstanceRecord,
    context: u8,
    /// The context's transfer syntax, when it is not the stored one (converted when sent).
    convert_to: Option<String>,
    data: Option<mpsc::Receiver<Piece>>,
}

impl Outgoing {
    /// Prepares `record` for `context`, whose transfer syntax is `syntax`: when that is the
    /// stored one, the blob's data set starts streaming now (a few blocks ahead).
    pub fn new(archive: &Arc<Archive>, record: InstanceRecord, context: u8, syntax: &str) -> Outgoing {
        if syntax == record.transfer_syntax_uid.as_str() {
            let data = Some(stream_data_set(Arc::clone(archive), record.clone()));
            Outgoing { record, context, convert_to: None, data }
        } else {
            Outgoing { record, context, convert_to: Some(syntax.to_owned()), data: None }
        }
    }

    /// The instance.
    pub fn record(&self) -> &InstanceRecord {
        &self.record
    }
}

/// The instances of a retrieve, each with the context it goes out on, prepared one ahead: the
/// next instance's blob is opened and read while the current one is sent and its response
/// awaited, so that no sub-operation waits for its file.
pub struct Prefetch {
    archive: Arc<Archive>,
    accepted: AcceptedContexts,
    records: std::vec::IntoIter<InstanceRecord>,
    ahead: Option<std::result::Result<Outgoing, InstanceRecord>>,
}

impl Prefetch {
    /// Over `records`, for an association that accepted `accepted`.
    pub fn new(archive: Arc<Archive>, accepted: AcceptedContexts, records: Vec<InstanceRecord>) -> Prefetch {
        Prefetch { archive, accepted, records: records.into_iter(), ahead: None }
    }

    fn prepare(&mut self) -> Option<std::result::Result<Outgoing, InstanceRecord>> {
        let record = self.records.next()?;
        let prepared = match self.accepted.for_record(&record) {
            Some(context) => {
                let syntax = self.accepted.transfer_syntax(context).unwrap_or(record.transfer_syntax_uid.as_str()).to_owned();
                Ok(Outgoing::new(&self.archive, record, context, &syntax))
            }
            None => Err(record),
        };
        Some(prepared)
    }
}

/// The next instance: `Ok` ready to send, `Err` with its record when the association accepted no
/// context it can be sent on. Taking one starts preparing the one after.
impl Iterator for Prefetch {
    type Item = std::result::Result<Outgoing, InstanceRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let current = match self.ahead.take() {
            Some(ready) => ready,
            None => self.prepare()?,
        };
        self.ahead = self.prepare();
        Some(current)
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

/// A piece of a data set on its way out, and whether it is the last.
type Piece = std::io::Result<(Bytes, bool)>;

/// Streams the data set of `record`, as stored, in blocks read into pooled buffers; each piece
/// says whether it is the last, from the size in the index, so that the writer sends a block as
/// soon as it is read. A blob shorter than its index says is an error. Reading starts at once:
/// the caller may open the stream of the next instance while the current one is being sent.
fn stream_data_set(archive: Arc<Archive>, record: InstanceRecord) -> mpsc::Receiver<Piece> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let short = || std::io::Error::other(format!("blob of {} is shorter than its index says", record.sop_instance_uid));
        let result = (|| -> std::io::Result<()> {
            let mut reader = archive.read(&record).map_err(std::io::Error::other)?;
            let mut remaining = record.size;
            let mut first = true;
            while remaining > 0 || first {
                let want = remaining.min(BLOCK as u64) as usize;
                let mut block = PooledBlock::take();
                if block.fill(&mut reader, want)? < want {
                    return Err(short());
                }
                remaining -= want as u64;
                let mut piece = block.freeze();
                if first {
                    first = false;
                    let offset = data_set_offset(&piece).ok_or_else(|| std::io::Error::other("stored object has no readable File Meta Information"))? as usize;
                    piece = piece.slice(offset.min(piece.len())..);
                }
                if tx.blocking_send(Ok((piece, remaining == 0))).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Converts the data set of `record` to `target` on the blocking pool into a spool (see the
/// module), then streams it in pooled blocks; the error says why it could not
/// be converted, and then nothing was sent.
async fn transcoded_data_set(archive: Arc<Archive>, record: InstanceRecord, target: String) -> std::result::Result<mpsc::Receiver<Piece>, String> {
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
    Ok(stream_spool(spool))
}

/// Streams the bytes of `spool` in pooled blocks, read on the blocking pool.
fn stream_spool(mut spool: SpoolReader) -> mpsc::Receiver<Piece> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        while spool.remaining() > 0 {
            let want = spool.remaining().min(BLOCK as u64) as usize;
            let mut block = PooledBlock::take();
            let read = match block.fill(&mut spool, want) {
                Ok(n) if n == want => Ok((block.freeze(), spool.remaining() == 0)),
                Ok(_) => Err(std::io::Error::other("the converted data set ended early")),
                Err(e) => Err(e),
            };
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
    let instances = Prefetch::new(Arc::clone(&archive), AcceptedContexts::new(ul.presentation_contexts()), records);
    let mut i: u16 = 0;
    for next in instances {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        counts.remaining -= 1;
        i = i.wrapping_add(1);
        let outgoing = match next {
            Ok(outgoing) => outgoing,
            Err(record) => {
                counts.failed += 1;
                failed_uids.push(record.sop_instance_uid.to_string());
                progress(counts);
                continue;
            }
        };
        let sop = outgoing.record.sop_instance_uid.to_string();
        let originated = Some((originator, message_id));
        let code = send(&mut ul, Arc::clone(&archive), outgoing, i, originated, None).await?;
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
    cancel: Option<(u16, &mut bool)>,
) -> Result<u16>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    let syntax = ul
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == context)
        .map(|pc| pc.transfer_syntax.trim_end_matches('\0').to_owned())
        .unwrap_or_else(|| record.transfer_syntax_uid.to_string());
    let outgoing = Outgoing::new(&archive, record, context, &syntax);
    send(ul, archive, outgoing, message_id, move_originator, cancel).await
}

/// Sends one prepared instance as a C-STORE sub-operation (see [`store_one`]). A blob that
/// cannot be read before anything of the instance was sent fails the sub-operation (0x0110,
/// processing failure); one that fails later ends with an error, the data set being cut.
pub async fn send<A>(
    ul: &mut A,
    archive: Arc<Archive>,
    outgoing: Outgoing,
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
    let Outgoing { record, context, convert_to, data } = outgoing;
    let sop = record.sop_instance_uid.to_string();
    let mut request = Command::c_store_rq(message_id, record.sop_class_uid.as_str(), &sop, Priority::Medium);
    if let Some((ae, id)) = move_originator {
        request.move_originator_ae_title = Some(ae.to_owned());
        request.move_originator_message_id = Some(id);
    }
    let mut data = match (data, convert_to) {
        (Some(data), _) => data,
        (None, Some(target)) => match transcoded_data_set(archive, record, target.clone()).await {
            Ok(rx) => rx,
            Err(reason) => {
                tracing::warn!(%peer, sop_instance_uid = %sop, transfer_syntax = %target, %reason, "not sent: cannot convert");
                return Ok(status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);
            }
        },
        (None, None) => stream_data_set(archive, record),
    };
    // The PDUs of each block (the command's with the first) are encoded into one buffer and
    // written at once, at a PDU boundary: one system call per block rather than per PDU.
    let mut out = Vec::with_capacity(BLOCK + BLOCK / chunk.max(1) * 12 + 256);
    super::encode_pdus(&mut out, context, true, &request.encode(), chunk, true);
    let mut sent_any = false;
    loop {
        let (block, last) = match data.recv().await {
            Some(Ok(piece)) => piece,
            Some(Err(source)) if !sent_any => {
                tracing::error!(%peer, sop_instance_uid = %sop, error = %source, "not sent: the stored object cannot be read");
                return Ok(status::PROCESSING_FAILURE);
            }
            Some(Err(source)) => return Err(Error::Io { action: format!("reading instance {sop}"), source }),
            // Nothing (more) to send: a conversion gave an empty data set, or the reader ended.
            None if !sent_any => {
                AsyncAssociation::inner_stream(ul).write_all(&out).await.map_err(|source| Error::Io { action: format!("sending to {peer}"), source })?;
                break;
            }
            None => return Err(Error::Io { action: format!("reading instance {sop}"), source: std::io::Error::other("the data set ended early") }),
        };
        super::encode_pdus(&mut out, context, false, &block, chunk, last);
        AsyncAssociation::inner_stream(ul).write_all(&out).await.map_err(|source| Error::Io { action: format!("sending to {peer}"), source })?;
        sent_any = true;
        out.clear();
        if last {
            break;
        }
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
