//! The client side (SCU) of the DIMSE services: C-ECHO, C-STORE of files, C-FIND, C-GET into an
//! [`Archive`], and C-MOVE.
//!
//! Each function opens its association, does its work and releases it. Data sets stream: files
//! are sent in fragments read from disk, and instances received by C-GET stream into the archive
//! as they arrive.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::ClientAssociationOptions;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use pacs_core::attribute::{Attribute, ValueKind};
use pacs_core::charset::{SpecificCharacterSet, TextKind};
use pacs_core::scan::{EXPLICIT_VR_LE, IMPLICIT_VR_LE, file_meta};
use pacs_core::{Query, QueryLevel, QueryRow};
use pacs_store::{Archive, IngestReport};
use tokio::net::TcpStream;

use super::command::{Command, CommandField, Priority, VERIFICATION_SOP_CLASS_UID, status};
use super::find::{padded, push, scan_identifier, vr_of};
use super::storage::Receiving;
use crate::commit::Committer;
use crate::error::{Error, Result};

/// A remote DICOM node: its AE title and `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's AE title (the called AE title).
    pub ae_title: String,
    /// `host:port` of its DICOM port.
    pub address: String,
}

impl Node {
    /// Parses `AE@host:port`.
    pub fn parse(text: &str) -> Result<Node> {
        let malformed = || Error::Usage { reason: format!("{text:?}: a node is written AE@host:port") };
        let (ae, address) = text.split_once('@').ok_or_else(malformed)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(malformed)?;
        if ae.trim().is_empty() || host.is_empty() || port.parse::<u16>().is_err() {
            return Err(malformed());
        }
        pacs_core::AeTitle::new(ae.trim()).map_err(|e| Error::Usage { reason: e.to_string() })?;
        Ok(Node { ae_title: ae.trim().to_owned(), address: address.to_owned() })
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.ae_title, self.address)
    }
}

/// Settings of our side of an association.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Our (calling) AE title.
    pub ae_title: String,
    /// The largest PDU we accept.
    pub max_pdu_length: u32,
    /// How long to wait for the peer's next PDU.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { ae_title: "PACS".into(), max_pdu_length: 256 * 1024, timeout: Duration::from_secs(60) }
    }
}

/// The information model of a query or retrieve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Model {
    /// Patient Root: levels PATIENT, STUDY, SERIES, IMAGE.
    PatientRoot,
    /// Study Root: levels STUDY, SERIES, IMAGE.
    #[default]
    StudyRoot,
}

impl Model {
    /// The information model for a query at `level`: Patient Root for PATIENT, else Study Root.
    pub fn for_level(level: QueryLevel) -> Model {
        if level == QueryLevel::Patient { Model::PatientRoot } else { Model::StudyRoot }
    }

    fn find_sop_class(self) -> &'static str {
        match self {
            Model::PatientRoot => "1.2.840.10008.5.1.4.1.2.1.1",
            Model::StudyRoot => "1.2.840.10008.5.1.4.1.2.2.1",
        }
    }

    fn move_sop_class(self) -> &'static str {
        match self {
            Model::PatientRoot => "1.2.840.10008.5.1.4.1.2.1.2",
            Model::StudyRoot => "1.2.840.10008.5.1.4.1.2.2.2",
        }
    }

    fn get_sop_class(self) -> &'static str {
        match self {
            Model::PatientRoot => "1.2.840.10008.5.1.4.1.2.1.3",
            Model::StudyRoot => "1.2.840.10008.5.1.4.1.2.2.3",
        }
    }
}

/// The transfer syntaxes proposed for storage contexts a C-GET receives on: the uncompressed
/// ones and the common compressed ones, each in a context of its own so that the peer can send
/// every instance as it is stored.
pub const RETRIEVE_TRANSFER_SYNTAXES: &[&str] = &[
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    "1.2.840.10008.1.2.1.99", // Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50", // JPEG Baseline
    "1.2.840.10008.1.2.4.70", // JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80", // JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91", // JPEG 2000
    "1.2.840.10008.1.2.5",    // RLE Lossless
];

/// The storage SOP classes a C-GET offers to receive when the caller names none: the common
/// image and document classes (with [`RETRIEVE_TRANSFER_SYNTAXES`], 126 presentation contexts,
/// under the limit of 128).
pub const COMMON_STORAGE_SOP_CLASSES: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.2",     // CT Image
    "1.2.840.10008.5.1.4.1.1.4",     // MR Image
    "1.2.840.10008.5.1.4.1.1.1",     // Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",   // Digital X-Ray Image (presentation)
    "1.2.840.10008.5.1.4.1.1.1.2",   // Digital Mammography X-Ray Image (presentation)
    "1.2.840.10008.5.1.4.1.1.6.1",   // Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",   // Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",     // Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.128",   // PET Image
    "1.2.840.10008.5.1.4.1.1.20",    // Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.12.1",  // X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.2.1",   // Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.88.22", // Enhanced SR
    "1.2.840.10008.5.1.4.1.1.104.1", // Encapsulated PDF
];

/// An open association as requestor, with the message layer on top of dicom-ul's PDUs.
struct Scu {
    ul: AsyncClientAssociation<TcpStream>,
    peer: String,
    pending: VecDeque<PDataValue>,
    message_id: u16,
}

/// A message received: its presentation context and command.
struct Message {
    context: u8,
    command: Command,
}

impl Scu {
    async fn open(config: &ClientConfig, node: &Node, options: ClientAssociationOptions<'_>) -> Result<Scu> {
        let peer = node.to_string();
        let mut ul = options
            .calling_ae_title(config.ae_title.clone())
            .called_ae_title(node.ae_title.clone())
            .max_pdu_length(config.max_pdu_length)
            .read_timeout(config.timeout)
            .write_timeout(config.timeout)
            .establish_async(node.address.as_str())
            .await
            .map_err(|source| Error::Association { peer: peer.clone(), source: Box::new(source) })?;
        // Without TCP_NODELAY each small response waits for a delayed ACK.
        let _ = ul.inner_stream().set_nodelay(true);
        Ok(Scu { ul, peer, pending: VecDeque::new(), message_id: 0 })
    }

    fn ul_error(&self) -> impl Fn(dicom_ul::association::Error) -> Error + use<> {
        let peer = self.peer.clone();
        move |source| Error::Association { peer: peer.clone(), source: Box::new(source) }
    }

    fn next_message_id(&mut self) -> u16 {
        self.message_id = self.message_id.wrapping_add(1).max(1);
        self.message_id
    }

    /// The accepted context for `abstract_syntax`, preferring `transfer_syntax` when given.
    fn context(&self, abstract_syntax: &str, transfer_syntax: Option<&str>) -> Option<(u8, String)> {
        self.ul
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance && pc.abstract_syntax.trim_end_matches('\0') == abstract_syntax)
            .find(|pc| transfer_syntax.is_none_or(|ts| pc.transfer_syntax.trim_end_matches('\0') == ts))
            .map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches('\0').to_owned()))
    }

    async fn send_command(&mut self, context: u8, command: &Command) -> Result<()> {
        let value = PDataValue { presentation_context_id: context, value_type: PDataValueType::Command, is_last: true, data: command.encode() };
        let e = self.ul_error();
        self.ul.send(&Pdu::PData { data: vec![value] }).await.map_err(e)
    }

    /// The largest data fragment the peer takes.
    fn fragment_size(&self) -> usize {
        super::fragment_size(self.ul.acceptor_max_pdu_length())
    }

    async fn send_data(&mut self, context: u8, data: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut out = Vec::with_capacity(data.len() + 512);
        super::encode_pdus(&mut out, context, false, data, self.fragment_size(), true);
        let peer = &self.peer;
        self.ul.inner_stream().write_all(&out).await.map_err(|source| Error::Io { action: format!("sending to {peer}"), source })
    }

    /// Streams a data set from `reader` (blocking reads, on the blocking pool) in fragments.
    async fn send_data_from(&mut self, context: u8, reader: Box<dyn Read + Send>, what: &str) -> Result<()> {
        let chunk = self.fragment_size();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
        tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut sent_any = false;
            loop {
                let mut piece = vec![0u8; chunk];
                let mut filled = 0;
                while filled < chunk {
                    match reader.read(&mut piece[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
                piece.truncate(filled);
                // Only non-empty fragments, except for an empty data set (one empty fragment).
                if (filled > 0 || !sent_any) && tx.blocking_send(Ok(piece)).is_err() {
                    return;
                }
                sent_any = true;
                if filled < chunk {
                    return;
                }
            }
        });
        let mut next = rx.recv().await;
        while let Some(piece) = next {
            let piece = piece.map_err(|source| Error::Io { action: format!("reading {what}"), source })?;
            next = rx.recv().await;
            let value = PDataValue { presentation_context_id: context, value_type: PDataValueType::Data, is_last: next.is_none(), data: piece };
            let e = self.ul_error();
            self.ul.send(&Pdu::PData { data: vec![value] }).await.map_err(e)?;
        }
        Ok(())
    }

    /// The next presentation data value, receiving a PDU when none is left.
    async fn next_value(&mut self) -> Result<PDataValue> {
        loop {
            if let Some(value) = self.pending.pop_front() {
                return Ok(value);
            }
            let e = self.ul_error();
            match self.ul.receive().await.map_err(e)? {
                Pdu::PData { data } => self.pending.extend(data),
                Pdu::AbortRQ { source } => return Err(Error::Malformed { reason: format!("{} aborted the association ({source:?})", self.peer) }),
                other => return Err(Error::Malformed { reason: format!("{} sent {} in the middle of an exchange", self.peer, other.short_description()) }),
            }
        }
    }

    /// Receives the next command.
    async fn receive_command(&mut self) -> Result<Message> {
        let mut bytes = Vec::new();
        loop {
            let value = self.next_value().await?;
            if value.value_type != PDataValueType::Command {
                return Err(Error::Malformed { reason: format!("{} sent a data fragment where a command was expected", self.peer) });
            }
            bytes.extend_from_slice(&value.data);
            if value.is_last {
                return Ok(Message { context: value.presentation_context_id, command: Command::decode(&bytes)? });
            }
        }
    }

    /// Receives a small data set (an identifier) whole.
    async fn receive_identifier(&mut self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        loop {
            let value = self.next_value().await?;
            if value.value_type != PDataValueType::Data {
                return Err(Error::Malformed { reason: format!("{} sent a command fragment where a data set was expected", self.peer) });
            }
            bytes.extend_from_slice(&value.data);
            if bytes.len() > 4 * 1024 * 1024 {
                return Err(Error::Malformed { reason: format!("{} sent an identifier larger than 4 MiB", self.peer) });
            }
            if value.is_last {
                return Ok(bytes);
            }
        }
    }

    async fn release(self) {
        if let Err(e) = self.ul.release().await {
            tracing::debug!(peer = %self.peer, error = %e, "release failed");
        }
    }
}

/// Sends a C-ECHO to `node` and returns the status of the response.
pub async fn echo(config: &ClientConfig, node: &Node) -> Result<u16> {
    let mut scu = Scu::open(config, node, ClientAssociationOptions::new().with_abstract_syntax(VERIFICATION_SOP_CLASS_UID)).await?;
    let (context, _) = scu
        .context(VERIFICATION_SOP_CLASS_UID, None)
        .ok_or_else(|| Error::Malformed { reason: format!("{node} accepted no presentation context for Verification") })?;
    let id = scu.next_message_id();
    scu.send_command(context, &Command::c_echo_rq(id)).await?;
    let response = scu.receive_command().await?.command;
    scu.release().await;
    if response.field != CommandField::CEchoRsp {
        return Err(Error::Malformed { reason: format!("{:?} where a C-ECHO-RSP was expected", response.field) });
    }
    Ok(response.status.unwrap_or(status::PROCESSING_FAILURE))
}

/// A DICOM file to send: its path and what its File Meta Information says.
#[derive(Clone, Debug)]
pub struct FileToSend {
    /// The file.
    pub path: PathBuf,
    /// SOP Class UID.
    pub sop_class: String,
    /// SOP Instance UID.
    pub sop_instance: String,
    /// Transfer syntax of the data set.
    pub transfer_syntax: String,
    /// Where the data set starts in the file.
    pub data_set_offset: u64,
    /// File size in bytes.
    pub size: u64,
}

impl FileToSend {
    /// Reads the File Meta Information of `path`; the error says why a file cannot be sent.
    pub fn inspect(path: &Path) -> std::result::Result<FileToSend, String> {
        let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let size = file.metadata().map_err(|e| format!("cannot read its size: {e}"))?.len();
        let mut head = vec![0u8; 16 * 1024];
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read: {e}")),
            }
        }
        head.truncate(filled);
        let meta = file_meta(&head).ok_or("not a DICOM Part 10 file (no DICM prefix and File Meta Information)")?;
        if meta.sop_class.is_empty() || meta.sop_instance.is_empty() || meta.transfer_syntax.is_empty() {
            return Err("File Meta Information lacks the SOP Class, SOP Instance or Transfer Syntax UID".into());
        }
        Ok(FileToSend {
            path: path.to_owned(),
            sop_class: meta.sop_class,
            sop_instance: meta.sop_instance,
            transfer_syntax: meta.transfer_syntax,
            data_set_offset: meta.data_set_offset,
            size,
        })
    }
}

/// The outcome of one C-STORE.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The file.
    pub path: PathBuf,
    /// The response status, or `None` when the instance could not be sent (no accepted context).
    pub status: Option<u16>,
    /// The peer's Error Comment, or why the file was not sent.
    pub comment: Option<String>,
    /// Bytes of the file.
    pub bytes: u64,
}

impl Sent {
    /// Whether the peer stored the instance (success or warning).
    pub fn stored(&self) -> bool {
        self.status.is_some_and(|s| matches!(status::status_kind(s), status::StatusKind::Success | status::StatusKind::Warning))
    }
}

/// Sends `files` to `node` on one association, calling `progress` after each C-STORE.
///
/// The association proposes one presentation context per (SOP class, transfer syntax) pair of
/// the files, at most 128; files whose pair was not accepted are reported as not sent. A failed
/// association (refused, aborted) is an error; the files sent before it are reported through
/// `progress`.
pub async fn store_files(config: &ClientConfig, node: &Node, files: &[FileToSend], progress: &(dyn Fn(&Sent) + Sync)) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for f in files {
        let pair = (f.sop_class.as_str(), f.transfer_syntax.as_str());
        if !pairs.contains(&pair) && pairs.len() < 128 {
            pairs.push(pair);
        }
    }
    let mut options = ClientAssociationOptions::new();
    for (class, ts) in &pairs {
        options = options.with_presentation_context(class.to_string(), vec![ts.to_string()]);
    }
    let mut scu = Scu::open(config, node, options).await?;
    for file in files {
        let Some((context, _)) = scu.context(&file.sop_class, Some(&file.transfer_syntax)) else {
            progress(&Sent {
                path: file.path.clone(),
                status: None,
                comment: Some(format!("{node} accepted no context for SOP class {} in {}", file.sop_class, file.transfer_syntax)),
                bytes: file.size,
            });
            continue;
        };
        let mut reader = std::fs::File::open(&file.path).map_err(|source| Error::Io { action: format!("opening {}", file.path.display()), source })?;
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(file.data_set_offset))
            .map_err(|source| Error::Io { action: format!("reading {}", file.path.display()), source })?;
        let id = scu.next_message_id();
        scu.send_command(context, &Command::c_store_rq(id, &file.sop_class, &file.sop_instance, Priority::Medium)).await?;
        scu.send_data_from(context, Box::new(std::io::BufReader::with_capacity(256 * 1024, reader)), &file.path.display().to_string()).await?;
        let response = scu.receive_command().await?.command;
        if response.field != CommandField::CStoreRsp {
            return Err(Error::Malformed { reason: format!("{:?} where a C-STORE-RSP was expected", response.field) });
        }
        progress(&Sent { path: file.path.clone(), status: response.status, comment: response.error_comment, bytes: file.size });
    }
    scu.release().await;
    Ok(())
}

/// The attributes an identifier for `query` carries in `model`, in tag order: the keys, the
/// defaults of the query level and `query.include`, and of the levels above only their unique
/// keys, as the hierarchical search of PS3.4 C.4.1.2.2.1 asks (in the Study Root model the
/// patient attributes belong to the STUDY level), in table order. Attributes of the file meta
/// group are left out.
pub fn identifier_attributes(query: &Query, model: Model) -> Vec<Attribute> {
    let level_of = |a: Attribute| if model == Model::StudyRoot && a.level() == QueryLevel::Patient { QueryLevel::Study } else { a.level() };
    let unique = [Attribute::PatientId, Attribute::StudyInstanceUid, Attribute::SeriesInstanceUid, Attribute::SopInstanceUid];
    let mut attributes: Vec<Attribute> = query
        .return_attributes()
        .into_iter()
        .filter(|a| level_of(*a) == query.level || unique.contains(a) || query.include.contains(a))
        .filter(|a| !(model == Model::StudyRoot && *a == Attribute::PatientId && query.level > QueryLevel::Study))
        .collect();
    attributes.extend(query.keys.iter().map(|k| k.attribute));
    attributes.retain(|a| a.tag().0 != 0x0002);
    attributes.sort();
    attributes.dedup();
    attributes
}

/// The identifier of a C-FIND, C-MOVE or C-GET request for `query` in `model`: the level, every
/// key with its value, and empty return keys for the other [`identifier_attributes`].
pub fn encode_identifier(query: &Query, model: Model, transfer_syntax: &str) -> Vec<u8> {
    let explicit = transfer_syntax != IMPLICIT_VR_LE;
    let mut values: Vec<(Attribute, String)> =
        identifier_attributes(query, model).into_iter().map(|a| (a, query.key(a).map(|m| m.to_dicom()).unwrap_or_default())).collect();
    values.sort_by_key(|(a, _)| a.tag());
    let mut out = Vec::new();
    let non_ascii = values.iter().any(|(_, v)| !v.is_ascii());
    if non_ascii {
        push(&mut out, explicit, (0x0008, 0x0005), *b"CS", b"ISO_IR 192");
    }
    let mut level_written = false;
    for (attribute, value) in values {
        if !level_written && attribute.tag() > (0x0008, 0x0052) {
            push(&mut out, explicit, (0x0008, 0x0052), *b"CS", &padded(query.level.as_dicom(), *b"CS"));
            level_written = true;
        }
        let vr = vr_of(attribute);
        // US values are binary; a C-FIND key of a US attribute is only a return key.
        let bytes = if vr == *b"US" { Vec::new() } else { padded(&value, vr) };
        push(&mut out, explicit, attribute.tag(), vr, &bytes);
    }
    if !level_written {
        push(&mut out, explicit, (0x0008, 0x0052), *b"CS", &padded(query.level.as_dicom(), *b"CS"));
    }
    out
}

/// Decodes a C-FIND response identifier into a row of the indexed attributes it holds, text
/// decoded with its Specific Character Set.
pub fn decode_identifier(data: &[u8], transfer_syntax: &str) -> Result<QueryRow> {
    let scanned = scan_identifier(data, transfer_syntax, &|_| true).map_err(|e| Error::Malformed { reason: format!("response identifier: {e}") })?;
    let charset = scanned.elements.get(&(0x0008, 0x0005)).map(|e| SpecificCharacterSet::from_raw(&e.bytes)).unwrap_or_default();
    let mut row = QueryRow::new();
    for attribute in Attribute::ALL {
        let Some(element) = scanned.elements.get(&attribute.tag()) else { continue };
        let value = if vr_of(*attribute) == *b"US" {
            match element.bytes[..] {
                [a, b, ..] => {
                    let n = if scanned.big_endian { u16::from_be_bytes([a, b]) } else { u16::from_le_bytes([a, b]) };
                    n.to_string()
                }
                _ => String::new(),
            }
        } else {
            let kind = if attribute.kind() == ValueKind::PersonName { TextKind::PersonName } else { TextKind::Text };
            charset.decode(&element.bytes, kind).trim_matches([' ', '\0']).to_owned()
        };
        if !value.is_empty() {
            row.insert(*attribute, value);
        }
    }
    Ok(row)
}

/// What a C-FIND ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindOutcome {
    /// Matches received.
    pub matches: usize,
    /// The final status (Cancel when `query.limit` was reached and the query was cancelled).
    pub status: u16,
    /// The peer's Error Comment, if any.
    pub comment: Option<String>,
}

/// Runs `query` as a C-FIND on `node` in the information model `model`, calling `on_match` with
/// each match as it arrives. With `query.limit` set, a C-CANCEL is sent once that many matches
/// have arrived. `query.offset` is applied here, by skipping matches.
pub async fn find(config: &ClientConfig, node: &Node, model: Model, query: &Query, on_match: &mut (dyn FnMut(QueryRow) + Send)) -> Result<FindOutcome> {
    let mut finder = Finder::open(config, node, model).await?;
    let outcome = finder.find(query, on_match).await?;
    finder.close().await;
    Ok(outcome)
}

/// An association for C-FINDs, kept open across queries (walking a remote archive date by date
/// costs one association, not one per date).
pub struct Finder {
    scu: Scu,
    model: Model,
    context: u8,
    transfer_syntax: String,
}

impl Finder {
    /// Opens an association to `node` for C-FIND in `model`.
    pub async fn open(config: &ClientConfig, node: &Node, model: Model) -> Result<Finder> {
        let sop_class = model.find_sop_class();
        let options = ClientAssociationOptions::new().with_presentation_context(sop_class, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
        let scu = Scu::open(config, node, options).await?;
        let (context, transfer_syntax) =
            scu.context(sop_class, None).ok_or_else(|| Error::Malformed { reason: format!("{node} does not accept C-FIND in the {model:?} model") })?;
        Ok(Finder { scu, model, context, transfer_syntax })
    }

    /// Runs one query, as [`find`] does.
    pub async fn find(&mut self, query: &Query, on_match: &mut (dyn FnMut(QueryRow) + Send)) -> Result<FindOutcome> {
        let (scu, context) = (&mut self.scu, self.context);
        let sop_class = self.model.find_sop_class();
        let id = scu.next_message_id();
        let mut request = Command::c_find_rq(id, sop_class, Priority::Medium);
        request.has_data_set = true;
        scu.send_command(context, &request).await?;
        scu.send_data(context, &encode_identifier(query, self.model, &self.transfer_syntax)).await?;
        let mut seen = 0usize;
        let mut cancelled = false;
        loop {
            let response = scu.receive_command().await?.command;
            if response.field != CommandField::CFindRsp {
                return Err(Error::Malformed { reason: format!("{:?} where a C-FIND-RSP was expected", response.field) });
            }
            let code = response.status.unwrap_or(status::PROCESSING_FAILURE);
            let data = if response.has_data_set { Some(scu.receive_identifier().await?) } else { None };
            if matches!(code, status::PENDING | status::PENDING_WARNING) {
                if let Some(data) = data {
                    seen += 1;
                    let wanted = seen > query.offset && query.limit.is_none_or(|l| seen - query.offset <= l);
                    if wanted {
                        on_match(decode_identifier(&data, &self.transfer_syntax)?);
                    }
                    if !cancelled && query.limit.is_some_and(|l| seen - query.offset.min(seen) >= l) {
                        scu.send_command(context, &Command::c_cancel_rq(id)).await?;
                        cancelled = true;
                    }
                }
                continue;
            }
            let matches = seen.saturating_sub(query.offset).min(query.limit.unwrap_or(usize::MAX));
            return Ok(FindOutcome { matches, status: code, comment: response.error_comment });
        }
    }

    /// Releases the association.
    pub async fn close(self) {
        self.scu.release().await;
    }
}

/// What a C-GET or C-MOVE ended with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetrieveOutcome {
    /// The final status.
    pub status: u16,
    /// The peer's Error Comment, if any.
    pub comment: Option<String>,
    /// Completed sub-operations, as counted by the peer.
    pub completed: u16,
    /// Failed sub-operations, as counted by the peer.
    pub failed: u16,
    /// Sub-operations with a warning, as counted by the peer.
    pub warning: u16,
    /// Sub-operations not done (after a cancel or a failure).
    pub remaining: u16,
    /// The Failed SOP Instance UID List of the final response.
    pub failed_instances: Vec<String>,
    /// Instances received and stored here (C-GET; new ones and ones already present).
    pub stored: u64,
    /// Instances received here that the archive refused (C-GET).
    pub refused: u64,
}

/// Progress of a retrieve: the counts of the last response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetrieveProgress {
    /// Sub-operations left.
    pub remaining: u16,
    /// Sub-operations done so far (completed, failed or warning).
    pub done: u16,
}

fn counts_of(command: &Command) -> (u16, u16, u16, u16) {
    (
        command.remaining_suboperations.unwrap_or(0),
        command.completed_suboperations.unwrap_or(0),
        command.failed_suboperations.unwrap_or(0),
        command.warning_suboperations.unwrap_or(0),
    )
}

fn failed_list(data: &[u8], transfer_syntax: &str) -> Vec<String> {
    match scan_identifier(data, transfer_syntax, &|t| t == (0x0008, 0x0058)) {
        Ok(s) => s
            .elements
            .get(&(0x0008, 0x0058))
            .map(|e| String::from_utf8_lossy(&e.bytes).trim_matches([' ', '\0']).split('\\').filter(|u| !u.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable identifier in a final retrieve response");
            Vec::new()
        }
    }
}

/// Retrieves what `query` designates from `node` by C-GET, storing every instance received into
/// `archive` (the response to each storage sub-operation is sent after the instance is
/// durable). `sop_classes` are the storage SOP classes offered (empty: the
/// [`COMMON_STORAGE_SOP_CLASSES`]), each with every [`RETRIEVE_TRANSFER_SYNTAXES`] entry.
pub async fn get(
    config: &ClientConfig,
    node: &Node,
    model: Model,
    query: &Query,
    archive: Arc<Archive>,
    sop_classes: &[String],
    progress: &mut (dyn FnMut(RetrieveProgress, Option<&IngestReport>) + Send),
) -> Result<RetrieveOutcome> {
    let get_class = model.get_sop_class();
    let mut options = ClientAssociationOptions::new().with_presentation_context(get_class, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
    let classes: Vec<String> = if sop_classes.is_empty() { COMMON_STORAGE_SOP_CLASSES.iter().map(|s| s.to_string()).collect() } else { sop_classes.to_vec() };
    let per_class = (127 / classes.len().max(1)).clamp(1, RETRIEVE_TRANSFER_SYNTAXES.len());
    let mut offered = 1;
    for class in &classes {
        for ts in &RETRIEVE_TRANSFER_SYNTAXES[..per_class] {
            if offered >= 128 {
                break;
            }
            options = options.with_presentation_context(class.clone(), vec![ts.to_string()]);
            offered += 1;
        }
        options = options.with_role_selection(class.clone(), false, true);
    }
    let mut scu = Scu::open(config, node, options).await?;
    let (context, transfer_syntax) =
        scu.context(get_class, None).ok_or_else(|| Error::Malformed { reason: format!("{node} does not accept C-GET in the {model:?} model") })?;
    let id = scu.next_message_id();
    let mut request = Command::c_get_rq(id, get_class, Priority::Medium);
    request.has_data_set = true;
    scu.send_command(context, &request).await?;
    scu.send_data(context, &encode_identifier(query, model, &transfer_syntax)).await?;
    let committer = Committer::start(Arc::clone(&archive));
    let contexts: Vec<(u8, String)> = scu.ul.presentation_contexts().iter().map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches('\0').to_owned())).collect();
    let mut outcome = RetrieveOutcome::default();
    let mut counted = RetrieveProgress::default();
    loop {
        let Message { context: incoming, command } = scu.receive_command().await?;
        match command.field {
            CommandField::CStoreRq => {
                let sop_class = command.affected_sop_class_uid.clone().unwrap_or_default();
                let sop_instance = command.affected_sop_instance_uid.clone().unwrap_or_default();
                let ts = contexts.iter().find(|(c, _)| *c == incoming).map(|(_, t)| t.clone()).unwrap_or_default();
                let mut receiving = Receiving::start(&archive, &sop_class, &sop_instance, &ts, &node.ae_title);
                loop {
                    let value = scu.next_value().await?;
                    if value.value_type != PDataValueType::Data {
                        return Err(Error::Malformed { reason: format!("{node} sent a command in the middle of a C-STORE data set") });
                    }
                    let last = value.is_last;
                    receiving.push(value.data).await;
                    if last {
                        break;
                    }
                }
                let received = receiving.finish(&archive, &committer).await?;
                if matches!(received.code, status::SUCCESS | status::ELEMENTS_DISCARDED) {
                    outcome.stored += 1;
                } else {
                    outcome.refused += 1;
                    tracing::warn!(sop = %sop_instance, status = format!("{:#06x}", received.code), reason = received.comment.as_deref().unwrap_or(""), "instance refused");
                }
                let mut response = Command::c_store_rsp(command.message_id.unwrap_or(0), &sop_class, &sop_instance, received.code);
                response.error_comment = received.comment.map(|c| c.chars().take(64).collect());
                scu.send_command(incoming, &response).await?;
                progress(counted, received.report.as_ref());
            }
            CommandField::CGetRsp => {
                let code = command.status.unwrap_or(status::PROCESSING_FAILURE);
                let (remaining, completed, failed, warning) = counts_of(&command);
                let data = if command.has_data_set { Some(scu.receive_identifier().await?) } else { None };
                if matches!(code, status::PENDING | status::PENDING_WARNING) {
                    counted = RetrieveProgress { remaining, done: completed + failed + warning };
                    progress(counted, None);
                    continue;
                }
                outcome.status = code;
                outcome.comment = command.error_comment;
                (outcome.remaining, outcome.completed, outcome.failed, outcome.warning) = (remaining, completed, failed, warning);
                outcome.failed_instances = data.map(|d| failed_list(&d, &transfer_syntax)).unwrap_or_default();
                scu.release().await;
                return Ok(outcome);
            }
            other => return Err(Error::Malformed { reason: format!("{node} sent {other:?} during a C-GET") }),
        }
    }
}

/// Asks `node` to send what `query` designates to the AE `destination` (C-MOVE), calling
/// `progress` with each pending response.
pub async fn move_to(
    config: &ClientConfig,
    node: &Node,
    model: Model,
    query: &Query,
    destination: &str,
    progress: &mut (dyn FnMut(RetrieveProgress) + Send),
) -> Result<RetrieveOutcome> {
    let move_class = model.move_sop_class();
    let options = ClientAssociationOptions::new().with_presentation_context(move_class, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
    let mut scu = Scu::open(config, node, options).await?;
    let (context, transfer_syntax) =
        scu.context(move_class, None).ok_or_else(|| Error::Malformed { reason: format!("{node} does not accept C-MOVE in the {model:?} model") })?;
    let id = scu.next_message_id();
    let mut request = Command::c_move_rq(id, move_class, Priority::Medium, destination);
    request.has_data_set = true;
    scu.send_command(context, &request).await?;
    scu.send_data(context, &encode_identifier(query, model, &transfer_syntax)).await?;
    loop {
        let command = scu.receive_command().await?.command;
        if command.field != CommandField::CMoveRsp {
            return Err(Error::Malformed { reason: format!("{:?} where a C-MOVE-RSP was expected", command.field) });
        }
        let code = command.status.unwrap_or(status::PROCESSING_FAILURE);
        let (remaining, completed, failed, warning) = counts_of(&command);
        let data = if command.has_data_set { Some(scu.receive_identifier().await?) } else { None };
        if matches!(code, status::PENDING | status::PENDING_WARNING) {
            progress(RetrieveProgress { remaining, done: completed + failed + warning });
            continue;
        }
        scu.release().await;
        return Ok(RetrieveOutcome {
            status: code,
            comment: command.error_comment,
            completed,
            failed,
            warning,
            remaining,
            failed_instances: data.map(|d| failed_list(&d, &transfer_syntax)).unwrap_or_default(),
            stored: 0,
            refused: 0,
        });
    }
}

/// How [`pull`] retrieves what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullMethod {
    /// C-GET on the query association's node; instances are stored into the archive directly.
    Get,
    /// C-MOVE to this AE title, which must be a storage SCP feeding the archive (the remote
    /// node must know its address).
    Move {
        /// The destination AE title.
        destination: String,
    },
}

/// What [`pull`] reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullEvent {
    /// The remote studies of one date (or of the whole range) were listed.
    Listed {
        /// The StudyDate key queried.
        date: String,
        /// Studies found.
        studies: usize,
    },
    /// A study was compared with the archive.
    Checked {
        /// Study Instance UID.
        study: String,
        /// Instances the remote node has and the archive lacks.
        missing: usize,
    },
    /// A retrieve of missing instances ended.
    Retrieved {
        /// Study Instance UID.
        study: String,
        /// Sub-operations completed.
        completed: u16,
        /// Sub-operations failed.
        failed: u16,
    },
}

/// The outcome of a [`pull`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Remote studies in the date range.
    pub studies: usize,
    /// Studies the archive already held completely.
    pub complete: usize,
    /// Instances missing here when the pull began.
    pub missing: u64,
    /// Instances retrieved (sub-operations completed or with a warning).
    pub retrieved: u64,
    /// Instances whose retrieve failed, or were not sent.
    pub failed: u64,
    /// Studies with an error, and the error.
    pub errors: Vec<(String, String)>,
}

/// The dates of `from..=to` (both `YYYYMMDD`), or `None` when the range is open or longer than
/// `max_days`: the whole range is then queried at once.
fn days(from: Option<&str>, to: Option<&str>, max_days: usize) -> Option<Vec<String>> {
    let parse = |d: &str| -> Option<(i32, u32, u32)> { Some((d.get(0..4)?.parse().ok()?, d.get(4..6)?.parse().ok()?, d.get(6..8)?.parse().ok()?)) };
    let (mut y, mut m, mut d) = parse(from?)?;
    let end = parse(to?)?;
    let mut out = Vec::new();
    while (y, m, d) <= end {
        if out.len() >= max_days {
            return None;
        }
        out.push(format!("{y:04}{m:02}{d:02}"));
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let last = match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        d += 1;
        if d > last {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
    Some(out)
}

/// Migrates from a remote archive: lists the studies of `node` whose StudyDate falls in
/// `from`..`to` (a date at a time when the range is closed and under ten years, else at once),
/// compares each with `archive` at instance level, and retrieves the instances missing here.
///
/// Interrupted, it resumes where it stopped when run again: what arrived is in the archive and
/// is not asked for twice. Errors on one study are reported and the walk goes on; a failure to
/// list is an error.
pub async fn pull(
    config: &ClientConfig,
    node: &Node,
    archive: Arc<Archive>,
    from: Option<&str>,
    to: Option<&str>,
    method: &PullMethod,
    progress: &mut (dyn FnMut(&PullEvent) + Send),
) -> Result<PullReport> {
    let mut report = PullReport::default();
    let normalise = |d: Option<&str>| -> Result<Option<String>> {
        d.map(|d| pacs_core::query::normalize_date(d).ok_or_else(|| Error::Usage { reason: format!("{d:?} is not a date (YYYYMMDD)") })).transpose()
    };
    let (from, to) = (normalise(from)?, normalise(to)?);
    let dates = match days(from.as_deref(), to.as_deref(), 3660) {
        Some(days) => days,
        None if from.is_none() && to.is_none() => vec![String::new()],
        None => vec![format!("{}-{}", from.as_deref().unwrap_or(""), to.as_deref().unwrap_or(""))],
    };
    let mut finder = Finder::open(config, node, Model::StudyRoot).await?;
    for date in dates {
        let mut query = Query::new(QueryLevel::Study);
        query = query.with(Attribute::StudyDate, &date)?;
        let mut studies = Vec::new();
        let listed = finder.find(&query, &mut |row| studies.push(row)).await?;
        if listed.status != status::SUCCESS {
            let comment = listed.comment.map(|c| format!(": {c}")).unwrap_or_default();
            return Err(Error::Malformed { reason: format!("listing the studies of {date:?} ended with status {:#06x}{comment}", listed.status) });
        }
        progress(&PullEvent::Listed { date: date.clone(), studies: studies.len() });
        report.studies += studies.len();
        for study in studies {
            let Some(uid) = study.get(&Attribute::StudyInstanceUid).cloned() else { continue };
            match pull_study(config, node, &mut finder, &archive, &uid, &study, method, progress).await {
                Ok((missing, retrieved, failed)) => {
                    if missing == 0 {
                        report.complete += 1;
                    }
                    report.missing += missing;
                    report.retrieved += retrieved;
                    report.failed += failed;
                }
                Err(e) => {
                    tracing::warn!(study = %uid, error = %e, "pull of a study failed");
                    report.errors.push((uid, e.to_string()));
                }
            }
        }
    }
    finder.close().await;
    Ok(report)
}

/// Pulls the missing instances of one study; returns (missing, retrieved, failed).
#[allow(clippy::too_many_arguments)]
async fn pull_study(
    config: &ClientConfig,
    node: &Node,
    finder: &mut Finder,
    archive: &Arc<Archive>,
    uid: &str,
    remote: &QueryRow,
    method: &PullMethod,
    progress: &mut (dyn FnMut(&PullEvent) + Send),
) -> Result<(u64, u64, u64)> {
    let study_uid = pacs_core::Uid::new(uid)?;
    let local: Vec<pacs_core::InstanceRecord> = {
        let archive = Arc::clone(archive);
        let scope = pacs_core::Scope::Study(study_uid.clone());
        tokio::task::spawn_blocking(move || archive.instances(&scope))
            .await
            .map_err(|e| Error::Io { action: "reading the archive".into(), source: std::io::Error::other(e) })??
    };
    // The study's count, when the remote node gives it, saves the instance-level listing.
    let remote_count = remote.get(&Attribute::NumberOfStudyRelatedInstances).and_then(|n| n.parse::<usize>().ok());
    if remote_count.is_some_and(|n| n > 0 && local.len() >= n) {
        progress(&PullEvent::Checked { study: uid.to_owned(), missing: 0 });
        return Ok((0, 0, 0));
    }
    let have: HashSet<String> = local.iter().map(|r| r.sop_instance_uid.to_string()).collect();
    let mut listing = Query::new(QueryLevel::Instance).with(Attribute::StudyInstanceUid, uid)?;
    listing.include.push(Attribute::SeriesInstanceUid);
    let mut missing: Vec<(String, String)> = Vec::new();
    finder
        .find(&listing, &mut |row| {
            if let (Some(series), Some(sop)) = (row.get(&Attribute::SeriesInstanceUid), row.get(&Attribute::SopInstanceUid))
                && !have.contains(sop)
            {
                missing.push((series.clone(), sop.clone()));
            }
        })
        .await?;
    progress(&PullEvent::Checked { study: uid.to_owned(), missing: missing.len() });
    if missing.is_empty() {
        return Ok((0, 0, 0));
    }
    // One retrieve per series, naming the missing instances (the whole series when none of it
    // is here).
    let mut series: Vec<&str> = missing.iter().map(|(s, _)| s.as_str()).collect();
    series.sort_unstable();
    series.dedup();
    let (mut retrieved, mut failed) = (0u64, 0u64);
    for s in series {
        let sops: Vec<&str> = missing.iter().filter(|(x, _)| x == s).map(|(_, sop)| sop.as_str()).collect();
        let mut query = Query::new(QueryLevel::Instance).with(Attribute::StudyInstanceUid, uid)?.with(Attribute::SeriesInstanceUid, s)?;
        query = query.with(Attribute::SopInstanceUid, &sops.join("\\"))?;
        let outcome = match method {
            PullMethod::Get => get(config, node, Model::StudyRoot, &query, Arc::clone(archive), &[], &mut |_, _| {}).await?,
            PullMethod::Move { destination } => move_to(config, node, Model::StudyRoot, &query, destination, &mut |_| {}).await?,
        };
        retrieved += u64::from(outcome.completed) + u64::from(outcome.warning);
        let not_done = sops.len() as u64 - (u64::from(outcome.completed) + u64::from(outcome.warning)).min(sops.len() as u64);
        failed += not_done;
        progress(&PullEvent::Retrieved { study: uid.to_owned(), completed: outcome.completed, failed: outcome.failed });
    }
    Ok((missing.len() as u64, retrieved, failed))
}
