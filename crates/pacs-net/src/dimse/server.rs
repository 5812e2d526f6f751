//! The DIMSE server (SCP): one tokio task per association, each C-STORE data set streamed into
//! `Archive::stage` as it arrives, the response sent only after the instance is durable.
//!
//! Services so far: Verification (C-ECHO), Storage (C-STORE) of any SOP class in any transfer
//! syntax the peer offers (the object is stored as received), and Query (C-FIND, Patient and
//! Study Root, every level), and retrieval by C-MOVE to a known AE and by C-GET on the same
//! association, each stopped by a C-CANCEL from the peer.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dicom_ul::ServerAssociationOptions;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason, AssociationRJSource, PDataValue, PDataValueType, Pdu,
    PresentationContextResultReason,
};
use pacs_core::InsertOutcome;
use pacs_store::Archive;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};

use super::command::{Command, CommandField, status};
use super::storage::{Received, Receiving};
use super::{find, retrieve};
use crate::commit::Committer;
use crate::error::{Error, Result};

/// Settings of the DIMSE server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Our AE title; associations calling another title are rejected.
    pub ae_title: String,
    /// Associations served at once; more are rejected (transient, local limit exceeded).
    pub max_associations: usize,
    /// The largest PDU we accept (and announce).
    pub max_pdu_length: u32,
    /// How long to wait for a peer's next PDU before giving up on the association.
    pub timeout: Duration,
    /// Known remote AEs, C-MOVE destinations: AE title → `host:port`.
    pub remote_aes: HashMap<String, String>,
    /// Accept only associations whose calling AE title is one of `remote_aes` (an allow-list);
    /// otherwise any calling AE is accepted.
    pub known_callers_only: bool,
    /// The transfer syntaxes accepted for presentation contexts, by UID; empty accepts every
    /// syntax the DICOM dictionary knows (instances are stored as received, whatever the syntax).
    pub transfer_syntaxes: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ae_title: "PACS".into(),
            max_associations: 100,
            max_pdu_length: 256 * 1024,
            timeout: Duration::from_secs(60),
            remote_aes: HashMap::new(),
            known_callers_only: false,
            transfer_syntaxes: Vec::new(),
        }
    }
}

/// What the server tells subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An association was accepted.
    AssociationOpened {
        /// Calling AE title.
        calling: String,
        /// Peer address.
        peer: SocketAddr,
    },
    /// An instance was stored (durably) over C-STORE.
    InstanceStored {
        /// Calling AE title.
        calling: String,
        /// SOP Instance UID.
        sop_instance_uid: String,
        /// Study Instance UID.
        study_instance_uid: String,
    },
    /// An association ended (released, aborted or failed).
    AssociationClosed {
        /// Calling AE title.
        calling: String,
        /// Peer address.
        peer: SocketAddr,
        /// Instances stored on it.
        stored: u64,
    },
}

/// A DIMSE server bound to a socket, serving an [`Archive`].
pub struct DimseServer {
    listener: TcpListener,
    archive: Arc<Archive>,
    config: Arc<ServerConfig>,
    events: broadcast::Sender<Event>,
}

impl DimseServer {
    /// Binds the server to `address` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    pub async fn bind(address: SocketAddr, archive: Arc<Archive>, config: ServerConfig) -> Result<DimseServer> {
        let listener = TcpListener::bind(address).await.map_err(|source| Error::Io { action: format!("listening on {address}"), source })?;
        let (events, _) = broadcast::channel(1024);
        Ok(DimseServer { listener, archive, config: Arc::new(config), events })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Io { action: "reading the listening address".into(), source })
    }

    /// A receiver of the server's [`Event`]s (events sent while nobody listens are dropped).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Serves associations until `shutdown` completes; associations in progress finish on their own.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let limit = Arc::new(Semaphore::new(self.config.max_associations));
        let committer = Committer::start(Arc::clone(&self.archive));
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                tokio::spawn(refuse(stream, peer, self.config.max_pdu_length));
                continue;
            };
            let association = Association {
                archive: Arc::clone(&self.archive),
                committer: committer.clone(),
                config: Arc::clone(&self.config),
                events: self.events.clone(),
                peer,
            };
            tokio::spawn(async move {
                association.run(stream).await;
                drop(permit);
            });
        }
    }
}

/// Reads the A-ASSOCIATE-RQ of a connection over the limit and rejects it.
async fn refuse(mut stream: TcpStream, peer: SocketAddr, max_pdu_length: u32) {
    use tokio::io::AsyncWriteExt;
    let mut buffer = BytesMut::new();
    let read = tokio::time::timeout(Duration::from_secs(10), dicom_ul::association::read_pdu_from_wire_async(&mut stream, &mut buffer, max_pdu_length, false));
    if !matches!(read.await, Ok(Ok(Pdu::AssociationRQ(_)))) {
        return;
    }
    let reject = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(AssociationRJServiceProviderPresentationReason::LocalLimitExceeded),
    });
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &reject).is_ok() {
        let _ = stream.write_all(&out).await;
    }
    tracing::warn!(%peer, "association rejected: too many associations at once");
}

/// Where the data set of the message being received goes.
enum Incoming {
    /// A C-STORE data set streaming into the archive.
    Store(Receiving),
    /// A C-FIND or C-MOVE identifier, collected (it is small; bounded by `MAX_IDENTIFIER`).
    Identifier(Vec<u8>),
    /// A data set of a request we do not serve: read and dropped.
    Discard,
}

/// The message being received on an association.
enum State {
    Idle,
    Command { context: u8, bytes: Vec<u8> },
    Data { context: u8, command: Box<Command>, incoming: Incoming },
}

struct Association {
    archive: Arc<Archive>,
    committer: Committer,
    config: Arc<ServerConfig>,
    events: broadcast::Sender<Event>,
    peer: SocketAddr,
}

type Ul = dicom_ul::association::server::AsyncServerAssociation<TcpStream>;

const MAX_COMMAND: usize = 64 * 1024;
const MAX_IDENTIFIER: usize = 1024 * 1024;

impl Association {
    async fn run(self, stream: TcpStream) {
        let access = Access { known: self.config.known_callers_only.then(|| self.config.remote_aes.keys().cloned().collect()) };
        let mut options = ServerAssociationOptions::new()
            .ae_access_control(access)
            .ae_title(self.config.ae_title.clone())
            .promiscuous(true)
            .with_negotiation(AcceptRoles)
            .max_pdu_length(self.config.max_pdu_length)
            .read_timeout(self.config.timeout)
            .write_timeout(self.config.timeout);
        for ts in &self.config.transfer_syntaxes {
            options = options.with_transfer_syntax(ts.clone());
        }
        let mut ul = match options.establish_async(stream).await {
            Ok(ul) => ul,
            Err(e) => {
                let message = e.to_string();
                if message.contains("closed by peer") {
                    // A port check (connect, then close): nothing was asked.
                    tracing::debug!(peer = %self.peer, "connection closed before an association request");
                } else {
                    tracing::warn!(peer = %self.peer, error = %message, "association refused");
                }
                return;
            }
        };
        let calling = dicom_ul::association::Association::peer_ae_title(&ul).trim().to_owned();
        let contexts: HashMap<u8, (String, String)> = ul
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| (pc.id, (pc.abstract_syntax.trim_end_matches('\0').to_owned(), pc.transfer_syntax.trim_end_matches('\0').to_owned())))
            .collect();
        tracing::info!(peer = %self.peer, %calling, contexts = contexts.len(), "association accepted");
        let _ = self.events.send(Event::AssociationOpened { calling: calling.clone(), peer: self.peer });
        let mut stored = 0u64;
        let outcome = self.serve(&mut ul, &calling, &contexts, &mut stored).await;
        match outcome {
            Ok(()) => tracing::info!(peer = %self.peer, %calling, stored, "association released"),
            Err(e) => {
                tracing::warn!(peer = %self.peer, %calling, stored, error = %e, "association ended abnormally");
                let _ = ul.abort().await;
            }
        }
        let _ = self.events.send(Event::AssociationClosed { calling, peer: self.peer, stored });
    }

    async fn serve(&self, ul: &mut Ul, calling: &str, contexts: &HashMap<u8, (String, String)>, stored: &mut u64) -> Result<()> {
        let mut state = State::Idle;
        let failed = |reason: String| Error::Malformed { reason };
        loop {
            let pdu = ul.receive().await.map_err(|source| Error::Association { peer: format!("{calling}@{}", self.peer), source: Box::new(source) })?;
            let values = match pdu {
                Pdu::PData { data } => data,
                Pdu::ReleaseRQ => {
                    if !matches!(state, State::Idle) {
                        return Err(failed("release requested in the middle of a message".into()));
                    }
                    ul.send(&Pdu::ReleaseRP).await.map_err(|source| Error::Association { peer: calling.to_owned(), source: Box::new(source) })?;
                    return Ok(());
                }
                Pdu::AbortRQ { .. } => return Err(failed("aborted by the peer".into())),
                other => return Err(failed(format!("unexpected {}", other.short_description()))),
            };
            for value in values {
                state = self.on_value(ul, calling, contexts, state, value, stored).await?;
            }
        }
    }

    async fn on_value(
        &self,
        ul: &mut Ul,
        calling: &str,
        contexts: &HashMap<u8, (String, String)>,
        state: State,
        value: PDataValue,
        stored: &mut u64,
    ) -> Result<State> {
        let failed = |reason: String| Error::Malformed { reason };
        let context = value.presentation_context_id;
        let Some((_, transfer_syntax)) = contexts.get(&context) else {
            return Err(failed(format!("presentation context {context} was not accepted")));
        };
        match (state, value.value_type) {
            (State::Idle, PDataValueType::Command) => {
                let bytes = value.data;
                if value.is_last { self.on_command(ul, calling, transfer_syntax, context, &bytes).await } else { Ok(State::Command { context, bytes }) }
            }
            (State::Command { context: c, mut bytes }, PDataValueType::Command) if c == context => {
                bytes.extend_from_slice(&value.data);
                if bytes.len() > MAX_COMMAND {
                    return Err(failed(format!("command set longer than {MAX_COMMAND} bytes")));
                }
                if value.is_last { self.on_command(ul, calling, transfer_syntax, context, &bytes).await } else { Ok(State::Command { context, bytes }) }
            }
            (State::Data { context: c, command, mut incoming }, PDataValueType::Data) if c == context => {
                if let Incoming::Identifier(bytes) = &mut incoming {
                    bytes.extend_from_slice(&value.data);
                    if bytes.len() > MAX_IDENTIFIER {
                        return Err(failed(format!("C-FIND identifier longer than {MAX_IDENTIFIER} bytes")));
                    }
                }
                let is_last = value.is_last;
                if let Incoming::Store(receiving) = &mut incoming {
                    // Backpressure: the network waits while the archive is behind.
                    receiving.push(value.data).await;
                }
                if !is_last {
                    return Ok(State::Data { context, command, incoming });
                }
                self.on_data_end(ul, calling, context, *command, incoming, stored).await?;
                Ok(State::Idle)
            }
            (_, kind) => Err(failed(format!("unexpected {kind:?} fragment on presentation context {context}"))),
        }
    }

    async fn on_command(&self, ul: &mut Ul, calling: &str, transfer_syntax: &str, context: u8, bytes: &[u8]) -> Result<State> {
        let command = Command::decode(bytes)?;
        match command.field {
            CommandField::CEchoRq => {
                let response = Command::c_echo_rsp(command.message_id.unwrap_or(0), status::SUCCESS);
                self.respond(ul, context, &response).await?;
                Ok(State::Idle)
            }
            CommandField::CStoreRq if command.has_data_set => {
                let sop_class = command.affected_sop_class_uid.clone().unwrap_or_default();
                let sop_instance = command.affected_sop_instance_uid.clone().unwrap_or_default();
                let receiving = Receiving::start(&self.archive, &sop_class, &sop_instance, transfer_syntax, calling);
                Ok(State::Data { context, command: Box::new(command), incoming: Incoming::Store(receiving) })
            }
            CommandField::CFindRq | CommandField::CMoveRq | CommandField::CGetRq if command.has_data_set => {
                Ok(State::Data { context, command: Box::new(command), incoming: Incoming::Identifier(Vec::new()) })
            }
            CommandField::CCancelRq => {
                // A cancel that arrives after its request was answered has nothing to stop.
                tracing::debug!(peer = %self.peer, responded_to = ?command.message_id_responded_to, "C-CANCEL of a finished request ignored");
                Ok(State::Idle)
            }
            _ if command.has_data_set => Ok(State::Data { context, command: Box::new(command), incoming: Incoming::Discard }),
            _ => {
                self.unrecognised(ul, context, &command).await?;
                Ok(State::Idle)
            }
        }
    }

    async fn unrecognised(&self, ul: &mut Ul, context: u8, command: &Command) -> Result<()> {
        tracing::warn!(peer = %self.peer, field = ?command.field, "request not served (yet)");
        let Some(field) = response_field(command.field) else { return Ok(()) };
        let response = Command {
            message_id_responded_to: command.message_id,
            affected_sop_class_uid: command.affected_sop_class_uid.clone().or_else(|| command.requested_sop_class_uid.clone()),
            status: Some(status::UNRECOGNIZED_OPERATION),
            ..Command::new(field)
        };
        self.respond(ul, context, &response).await
    }

    async fn on_data_end(&self, ul: &mut Ul, calling: &str, context: u8, command: Command, incoming: Incoming, stored: &mut u64) -> Result<()> {
        let receiving = match incoming {
            Incoming::Store(receiving) => receiving,
            Incoming::Identifier(identifier) if command.field == CommandField::CMoveRq => {
                return self.c_move(ul, calling, context, &command, &identifier).await;
            }
            Incoming::Identifier(identifier) if command.field == CommandField::CGetRq => {
                return self.c_get(ul, calling, context, &command, &identifier).await;
            }
            Incoming::Identifier(identifier) => return self.find(ul, context, &command, &identifier).await,
            Incoming::Discard => return self.unrecognised(ul, context, &command).await,
        };
        let sop_class = command.affected_sop_class_uid.clone().unwrap_or_default();
        let sop_instance = command.affected_sop_instance_uid.clone().unwrap_or_default();
        let message_id = command.message_id.unwrap_or(0);
        let Received { code, comment, report } = receiving.finish(&self.archive, &self.committer).await?;
        match (&report, code) {
            (Some(report), status::SUCCESS) if matches!(report.outcome, InsertOutcome::Inserted | InsertOutcome::Replaced { .. }) => {
                *stored += 1;
                let _ = self.events.send(Event::InstanceStored {
                    calling: calling.to_owned(),
                    sop_instance_uid: report.record.sop_instance_uid.to_string(),
                    study_instance_uid: report.record.study_instance_uid.to_string(),
                });
            }
            (Some(report), status::SUCCESS | status::ELEMENTS_DISCARDED) => {
                tracing::info!(sop = %sop_instance, outcome = ?report.outcome, "C-STORE of an instance already stored")
            }
            _ => {
                tracing::warn!(peer = %self.peer, %calling, sop = %sop_instance, status = format!("{code:#06x}"), reason = comment.as_deref().unwrap_or(""), "C-STORE refused")
            }
        }
        let mut response = Command::c_store_rsp(message_id, &sop_class, &sop_instance, code);
        // Error Comment is LO: at most 64 characters.
        response.error_comment = comment.map(|c| c.chars().take(64).collect());
        self.respond(ul, context, &response).await
    }

    /// Answers a C-FIND: one pending response per match, then the final status. Matches are read
    /// from the index a page at a time, so a query matching the whole archive holds one page in
    /// memory; a C-CANCEL from the peer ends it with status Cancel.
    async fn find(&self, ul: &mut Ul, context: u8, command: &Command, identifier: &[u8]) -> Result<()> {
        const PAGE: usize = 500;
        let message_id = command.message_id.unwrap_or(0);
        let sop_class = command.affected_sop_class_uid.clone().unwrap_or_default();
        let transfer_syntax = context_transfer_syntax(ul, context);
        let request = match find::parse_identifier(identifier, &transfer_syntax) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "C-FIND refused");
                let mut response = Command::c_find_rsp(message_id, &sop_class, status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, false);
                response.error_comment = Some(e.to_string().chars().take(64).collect());
                return self.respond(ul, context, &response).await;
            }
        };
        let pending = Command::c_find_rsp(message_id, &sop_class, status::PENDING, true);
        let mut sent = 0usize;
        loop {
            let archive = Arc::clone(&self.archive);
            let mut page = request.query.clone();
            page.offset = sent;
            page.limit = Some(PAGE);
            let rows = tokio::task::spawn_blocking(move || archive.query(&page))
                .await
                .map_err(|e| Error::Io { action: "running a query".into(), source: io::Error::other(e) })?;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(peer = %self.peer, error = %e, "C-FIND failed");
                    let mut response = Command::c_find_rsp(message_id, &sop_class, status::UNABLE_TO_PROCESS, false);
                    response.error_comment = Some(e.to_string().chars().take(64).collect());
                    return self.respond(ul, context, &response).await;
                }
            };
            for row in &rows {
                if self.cancel_requested(ul, message_id).await? {
                    tracing::info!(peer = %self.peer, level = %request.query.level, sent, "C-FIND cancelled by the peer");
                    return self.respond(ul, context, &Command::c_find_rsp(message_id, &sop_class, status::CANCEL, false)).await;
                }
                let data = find::encode_response(request.query.level, &request.keys, row, &transfer_syntax);
                self.send_data(ul, context, Some(&pending), &data).await?;
                sent += 1;
            }
            if rows.len() < PAGE {
                break;
            }
        }
        tracing::debug!(peer = %self.peer, level = %request.query.level, matches = sent, "C-FIND");
        self.respond(ul, context, &Command::c_find_rsp(message_id, &sop_class, status::SUCCESS, false)).await
    }

    /// Whether the peer has sent a C-CANCEL-RQ for `message_id`, checked without waiting: the
    /// PDUs already received are read, and nothing else is expected while a request is served.
    async fn cancel_requested(&self, ul: &mut Ul, message_id: u16) -> Result<bool> {
        use std::task::Poll;
        let peer = || self.peer.to_string();
        let mut cancelled = false;
        loop {
            // One poll of `receive`: dicom-ul reads into the association's own buffer, so
            // dropping the future keeps whatever part of a PDU has arrived.
            let polled = {
                let mut receive = std::pin::pin!(ul.receive());
                std::future::poll_fn(|cx| Poll::Ready(receive.as_mut().poll(cx))).await
            };
            let pdu = match polled {
                Poll::Pending => return Ok(cancelled),
                Poll::Ready(pdu) => pdu.map_err(|source| Error::Association { peer: peer(), source: Box::new(source) })?,
            };
            match pdu {
                Pdu::PData { data } => {
                    for value in data {
                        let command = (value.value_type == PDataValueType::Command && value.is_last).then(|| Command::decode(&value.data)).transpose()?;
                        match command {
                            Some(c) if c.field == CommandField::CCancelRq && c.message_id_responded_to == Some(message_id) => cancelled = true,
                            Some(c) if c.field == CommandField::CCancelRq => {
                                tracing::debug!(peer = %self.peer, responded_to = ?c.message_id_responded_to, "C-CANCEL of another message ignored");
                            }
                            _ => return Err(Error::Malformed { reason: "a new message arrived while a request was being served".into() }),
                        }
                    }
                }
                Pdu::AbortRQ { .. } => return Err(Error::Malformed { reason: "aborted by the peer".into() }),
                other => return Err(Error::Malformed { reason: format!("unexpected {} while a request was being served", other.short_description()) }),
            }
        }
    }

    /// Sends the final response of a C-MOVE or C-GET: with the Failed SOP Instance UID List
    /// (0008,0058) as its identifier when sub-operations failed.
    async fn respond_final(&self, ul: &mut Ul, context: u8, mut response: Command, failed: &[String]) -> Result<()> {
        if failed.is_empty() {
            return self.respond(ul, context, &response).await;
        }
        response.has_data_set = true;
        self.respond(ul, context, &response).await?;
        let identifier = find::failed_instances_identifier(failed, &context_transfer_syntax(ul, context));
        self.send_data(ul, context, None, &identifier).await
    }

    /// Answers a C-MOVE: the matching instances are sent to the destination AE on an
    /// association of their own, with a pending response after each, then the final counts.
    async fn c_move(&self, ul: &mut Ul, calling: &str, context: u8, command: &Command, identifier: &[u8]) -> Result<()> {
        let message_id = command.message_id.unwrap_or(0);
        let sop_class = command.affected_sop_class_uid.clone().unwrap_or_default();
        let final_status = |code: u16, comment: Option<String>| {
            let mut response = Command::c_move_rsp(message_id, &sop_class, code, None, 0, 0, 0);
            response.error_comment = comment.map(|c| c.chars().take(64).collect());
            response
        };
        let destination = command.move_destination.clone().unwrap_or_default().trim().to_owned();
        let Some(address) = self.config.remote_aes.get(&destination).cloned() else {
            tracing::warn!(peer = %self.peer, %calling, %destination, "C-MOVE to an unknown destination");
            let comment = format!("unknown move destination {destination:?}");
            return self.respond(ul, context, &final_status(status::MOVE_DESTINATION_UNKNOWN, Some(comment))).await;
        };
        let records = match self.retrieve_targets(ul, context, identifier).await? {
            Ok(r) => r,
            Err((code, comment)) => return self.respond(ul, context, &final_status(code, Some(comment))).await,
        };
        tracing::info!(peer = %self.peer, %calling, %destination, instances = records.len(), "C-MOVE");
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let archive = Arc::clone(&self.archive);
        let our_ae = self.config.ae_title.clone();
        let originator = calling.to_owned();
        let stop = Arc::clone(&cancel);
        let send = async move {
            let mut progress = move |counts| {
                let _ = progress_tx.send(counts);
            };
            let target = retrieve::Destination { our_ae: &our_ae, called: &destination, address: &address };
            retrieve::send_all(archive, records, target, &originator, message_id, &stop, &mut progress).await
        };
        let pending = async {
            while let Some(c) = progress_rx.recv().await {
                let c: retrieve::SubOperations = c;
                if !cancel.load(std::sync::atomic::Ordering::Relaxed) && self.cancel_requested(ul, message_id).await? {
                    tracing::info!(peer = %self.peer, "C-MOVE cancelled by the peer");
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if c.remaining > 0 {
                    let response = Command::c_move_rsp(message_id, &sop_class, status::PENDING, Some(c.remaining), c.completed, c.failed, c.warning);
                    self.respond(ul, context, &response).await?;
                }
            }
            Ok::<(), Error>(())
        };
        let (sent, pending) = tokio::join!(send, pending);
        pending?;
        match sent {
            Ok((c, failed)) => {
                if !failed.is_empty() {
                    tracing::warn!(failed = ?failed, "C-MOVE sub-operations failed");
                }
                let cancelled = cancel.load(std::sync::atomic::Ordering::Relaxed) && c.remaining > 0;
                let (code, remaining) = if cancelled { (status::CANCEL, Some(c.remaining)) } else { (c.final_status(), None) };
                let response = Command::c_move_rsp(message_id, &sop_class, code, remaining, c.completed, c.failed, c.warning);
                self.respond_final(ul, context, response, &failed).await
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "C-MOVE could not reach its destination");
                self.respond(ul, context, &final_status(status::UNABLE_TO_PROCESS, Some(e.to_string()))).await
            }
        }
    }

    /// The instances a C-MOVE or C-GET identifier designates, or the failure status and comment
    /// to answer with (an identifier that does not parse, an archive failure).
    async fn retrieve_targets(&self, ul: &Ul, context: u8, identifier: &[u8]) -> Result<std::result::Result<Vec<pacs_core::InstanceRecord>, (u16, String)>> {
        let request = match find::parse_identifier(identifier, &context_transfer_syntax(ul, context)) {
            Ok(r) => r,
            Err(e) => return Ok(Err((status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, e.to_string()))),
        };
        let archive = Arc::clone(&self.archive);
        let records = tokio::task::spawn_blocking(move || retrieve::instances_of(&archive, &request.query))
            .await
            .map_err(|e| Error::Io { action: "finding instances to retrieve".into(), source: io::Error::other(e) })?;
        Ok(records.map_err(|e| (status::UNABLE_TO_PROCESS, e.to_string())))
    }

    /// Answers a C-GET: the matching instances are sent back on this association as C-STORE
    /// sub-operations (the peer took the SCP role for their SOP classes at negotiation), with a
    /// pending response after each, then the final counts. A C-CANCEL stops it after the
    /// sub-operation in progress.
    async fn c_get(&self, ul: &mut Ul, calling: &str, context: u8, command: &Command, identifier: &[u8]) -> Result<()> {
        let message_id = command.message_id.unwrap_or(0);
        let sop_class = command.affected_sop_class_uid.clone().unwrap_or_default();
        let records = match self.retrieve_targets(ul, context, identifier).await? {
            Ok(r) => r,
            Err((code, comment)) => {
                let mut response = Command::c_get_rsp(message_id, &sop_class, code, None, 0, 0, 0);
                response.error_comment = Some(comment.chars().take(64).collect());
                return self.respond(ul, context, &response).await;
            }
        };
        tracing::info!(peer = %self.peer, %calling, instances = records.len(), "C-GET");
        let mut counts = retrieve::SubOperations { remaining: records.len() as u16, ..Default::default() };
        let instances = retrieve::Prefetch::new(Arc::clone(&self.archive), retrieve::AcceptedContexts::new(ul.presentation_contexts()), records);
        let mut failed = Vec::new();
        let mut cancelled = false;
        let mut i: u16 = 0;
        for next in instances {
            if cancelled || self.cancel_requested(ul, message_id).await? {
                cancelled = true;
                tracing::info!(peer = %self.peer, remaining = counts.remaining, "C-GET cancelled by the peer");
                break;
            }
            counts.remaining -= 1;
            i = i.wrapping_add(1);
            let (sop, code) = match next {
                Ok(outgoing) => {
                    let sop = outgoing.record().sop_instance_uid.to_string();
                    let id = message_id.wrapping_add(i);
                    (sop, retrieve::send(ul, Arc::clone(&self.archive), outgoing, id, None, Some((message_id, &mut cancelled))).await?)
                }
                // No accepted context for this SOP class in its stored syntax or in one we can
                // convert it to.
                Err(record) => (record.sop_instance_uid.to_string(), status::SOP_CLASS_NOT_SUPPORTED),
            };
            if counts.record(code) {
                failed.push(sop);
            }
            if counts.remaining > 0 && !cancelled {
                let pending =
                    Command::c_get_rsp(message_id, &sop_class, status::PENDING, Some(counts.remaining), counts.completed, counts.failed, counts.warning);
                self.respond(ul, context, &pending).await?;
            }
        }
        if !failed.is_empty() {
            tracing::warn!(peer = %self.peer, failed = ?failed, "C-GET sub-operations failed");
        }
        let (code, remaining) = if cancelled && counts.remaining > 0 { (status::CANCEL, Some(counts.remaining)) } else { (counts.final_status(), None) };
        let response = Command::c_get_rsp(message_id, &sop_class, code, remaining, counts.completed, counts.failed, counts.warning);
        self.respond_final(ul, context, response, &failed).await
    }

    /// Sends a data set in P-DATA fragments that fit the peer's maximum PDU length, after
    /// `response` when there is one, in one write: one packet for a C-FIND match, not two.
    async fn send_data(&self, ul: &mut Ul, context: u8, response: Option<&Command>, data: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let fragment = super::fragment_size(dicom_ul::association::Association::requestor_max_pdu_length(ul));
        let mut out = Vec::with_capacity(data.len() + 512);
        if let Some(response) = response {
            super::encode_pdus(&mut out, context, true, &response.encode(), fragment, true);
        }
        super::encode_pdus(&mut out, context, false, data, fragment, true);
        ul.inner_stream().write_all(&out).await.map_err(|source| Error::Io { action: format!("sending to {}", self.peer), source })
    }

    async fn respond(&self, ul: &mut Ul, context: u8, response: &Command) -> Result<()> {
        let pdu = Pdu::PData {
            data: vec![PDataValue { presentation_context_id: context, value_type: PDataValueType::Command, is_last: true, data: response.encode() }],
        };
        ul.send(&pdu).await.map_err(|source| Error::Association { peer: self.peer.to_string(), source: Box::new(source) })
    }
}

/// The transfer syntax negotiated for a presentation context.
fn context_transfer_syntax(ul: &Ul, context: u8) -> String {
    ul.presentation_contexts().iter().find(|pc| pc.id == context).map(|pc| pc.transfer_syntax.trim_end_matches('\0').to_owned()).unwrap_or_default()
}

/// Who may associate: the called AE title must be ours, and with an allow-list the calling AE
/// title must be on it.
struct Access {
    known: Option<std::collections::HashSet<String>>,
}

impl dicom_ul::association::server::AccessControl for Access {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&dicom_ul::pdu::UserIdentity>,
    ) -> std::result::Result<(), dicom_ul::pdu::AssociationRJServiceUserReason> {
        use dicom_ul::pdu::AssociationRJServiceUserReason as Reason;
        if this_ae_title.trim() != called_ae_title.trim() {
            return Err(Reason::CalledAETitleNotRecognized);
        }
        match &self.known {
            Some(known) if !known.contains(calling_ae_title.trim()) => Err(Reason::CallingAETitleNotRecognized),
            _ => Ok(()),
        }
    }
}

/// Accepts the SCU/SCP roles a requestor proposes: a C-GET requestor takes the SCP role of the
/// storage SOP classes it wants to receive.
struct AcceptRoles;

impl dicom_ul::association::server::Negotiation for AcceptRoles {
    fn negotiate_roles(&self, _sop_class_uid: &str, scu_role: bool, scp_role: bool) -> Option<dicom_ul::pdu::RequestorRoles> {
        Some(dicom_ul::pdu::RequestorRoles { scu: scu_role, scp: scp_role })
    }
}

/// The response field of a request field.
fn response_field(field: CommandField) -> Option<CommandField> {
    Some(match field {
        CommandField::CStoreRq => CommandField::CStoreRsp,
        CommandField::CFindRq => CommandField::CFindRsp,
        CommandField::CMoveRq => CommandField::CMoveRsp,
        CommandField::CGetRq => CommandField::CGetRsp,
        CommandField::CEchoRq => CommandField::CEchoRsp,
        _ => return None,
    })
}
