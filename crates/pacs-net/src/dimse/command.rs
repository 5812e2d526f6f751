//! DIMSE command sets (DICOM PS3.7 section 9.3 and annex E) and DIMSE statuses (PS3.7 annex C).
//!
//! A command set is always encoded in Implicit VR Little Endian, whatever transfer syntax the
//! presentation context negotiated for the data set, and holds group 0000 elements only:
//! (0000,0000) CommandGroupLength (UL) first, giving the number of bytes of the elements that
//! follow it, then the other elements in ascending tag order. UI values are padded to an even
//! length with NUL (0x00), AE and LO values with a space, as every implementation does (this
//! encoder is checked byte for byte against pydicom in the tests).
//!
//! [`Command`] holds the elements of the C-services this archive speaks (C-ECHO, C-STORE,
//! C-FIND, C-MOVE, C-GET, C-CANCEL); [`Command::encode`] and [`Command::decode`] turn it into
//! bytes and back. Decoding never panics: bad input gives [`Error::Malformed`] naming the
//! offending element.

use std::fmt;

use crate::error::{Error, Result};

/// The Verification SOP Class UID, the Affected SOP Class of C-ECHO.
pub const VERIFICATION_SOP_CLASS_UID: &str = "1.2.840.10008.1.1";

/// (0000,0800) CommandDataSetType value meaning "no data set follows".
pub const DATA_SET_ABSENT: u16 = 0x0101;

/// (0000,0800) CommandDataSetType value this encoder writes when a data set follows.
///
/// PS3.7 only says "any value other than 0x0101"; 0x0001 is what DCMTK
/// (`DIMSE_DATASET_PRESENT`) and pynetdicom send, so it is what peers expect to see. On decode,
/// every value other than [`DATA_SET_ABSENT`] means a data set follows.
pub const DATA_SET_PRESENT: u16 = 0x0001;

/// The element numbers (group 0000) of the command set.
mod tag {
    pub const GROUP_LENGTH: u16 = 0x0000;
    pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
    pub const REQUESTED_SOP_CLASS_UID: u16 = 0x0003;
    pub const COMMAND_FIELD: u16 = 0x0100;
    pub const MESSAGE_ID: u16 = 0x0110;
    pub const MESSAGE_ID_RESPONDED_TO: u16 = 0x0120;
    pub const MOVE_DESTINATION: u16 = 0x0600;
    pub const PRIORITY: u16 = 0x0700;
    pub const DATA_SET_TYPE: u16 = 0x0800;
    pub const STATUS: u16 = 0x0900;
    pub const OFFENDING_ELEMENT: u16 = 0x0901;
    pub const ERROR_COMMENT: u16 = 0x0902;
    pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
    pub const REQUESTED_SOP_INSTANCE_UID: u16 = 0x1001;
    pub const REMAINING_SUBOPERATIONS: u16 = 0x1020;
    pub const COMPLETED_SUBOPERATIONS: u16 = 0x1021;
    pub const FAILED_SUBOPERATIONS: u16 = 0x1022;
    pub const WARNING_SUBOPERATIONS: u16 = 0x1023;
    pub const MOVE_ORIGINATOR_AE_TITLE: u16 = 0x1030;
    pub const MOVE_ORIGINATOR_MESSAGE_ID: u16 = 0x1031;

    /// The keyword of a group 0000 element, for error messages.
    pub fn keyword(element: u16) -> &'static str {
        match element {
            GROUP_LENGTH => "CommandGroupLength",
            AFFECTED_SOP_CLASS_UID => "AffectedSOPClassUID",
            REQUESTED_SOP_CLASS_UID => "RequestedSOPClassUID",
            COMMAND_FIELD => "CommandField",
            MESSAGE_ID => "MessageID",
            MESSAGE_ID_RESPONDED_TO => "MessageIDBeingRespondedTo",
            MOVE_DESTINATION => "MoveDestination",
            PRIORITY => "Priority",
            DATA_SET_TYPE => "CommandDataSetType",
            STATUS => "Status",
            OFFENDING_ELEMENT => "OffendingElement",
            ERROR_COMMENT => "ErrorComment",
            AFFECTED_SOP_INSTANCE_UID => "AffectedSOPInstanceUID",
            REQUESTED_SOP_INSTANCE_UID => "RequestedSOPInstanceUID",
            REMAINING_SUBOPERATIONS => "NumberOfRemainingSuboperations",
            COMPLETED_SUBOPERATIONS => "NumberOfCompletedSuboperations",
            FAILED_SUBOPERATIONS => "NumberOfFailedSuboperations",
            WARNING_SUBOPERATIONS => "NumberOfWarningSuboperations",
            MOVE_ORIGINATOR_AE_TITLE => "MoveOriginatorApplicationEntityTitle",
            MOVE_ORIGINATOR_MESSAGE_ID => "MoveOriginatorMessageID",
            _ => "(unknown)",
        }
    }

    /// `(0000,eeee) Keyword`, the way errors name an element.
    pub fn name(element: u16) -> String {
        format!("(0000,{element:04X}) {}", keyword(element))
    }
}

/// The Command Field (0000,0100) values this archive uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandField {
    /// C-STORE-RQ (0x0001).
    CStoreRq,
    /// C-STORE-RSP (0x8001).
    CStoreRsp,
    /// C-GET-RQ (0x0010).
    CGetRq,
    /// C-GET-RSP (0x8010).
    CGetRsp,
    /// C-FIND-RQ (0x0020).
    CFindRq,
    /// C-FIND-RSP (0x8020).
    CFindRsp,
    /// C-MOVE-RQ (0x0021).
    CMoveRq,
    /// C-MOVE-RSP (0x8021).
    CMoveRsp,
    /// C-ECHO-RQ (0x0030).
    CEchoRq,
    /// C-ECHO-RSP (0x8030).
    CEchoRsp,
    /// C-CANCEL-RQ (0x0FFF).
    CCancelRq,
}

impl CommandField {
    /// Every command field this archive speaks.
    pub const ALL: [CommandField; 11] = [
        CommandField::CStoreRq,
        CommandField::CStoreRsp,
        CommandField::CGetRq,
        CommandField::CGetRsp,
        CommandField::CFindRq,
        CommandField::CFindRsp,
        CommandField::CMoveRq,
        CommandField::CMoveRsp,
        CommandField::CEchoRq,
        CommandField::CEchoRsp,
        CommandField::CCancelRq,
    ];

    /// The value of (0000,0100) for this command.
    pub fn code(self) -> u16 {
        match self {
            CommandField::CStoreRq => 0x0001,
            CommandField::CStoreRsp => 0x8001,
            CommandField::CGetRq => 0x0010,
            CommandField::CGetRsp => 0x8010,
            CommandField::CFindRq => 0x0020,
            CommandField::CFindRsp => 0x8020,
            CommandField::CMoveRq => 0x0021,
            CommandField::CMoveRsp => 0x8021,
            CommandField::CEchoRq => 0x0030,
            CommandField::CEchoRsp => 0x8030,
            CommandField::CCancelRq => 0x0FFF,
        }
    }

    /// The command of a (0000,0100) value; `None` for the codes this archive does not speak
    /// (the DIMSE-N services, for instance).
    pub fn from_code(code: u16) -> Option<Self> {
        CommandField::ALL.into_iter().find(|field| field.code() == code)
    }

    /// Whether this is a response (bit 15 of the code set).
    pub fn is_response(self) -> bool {
        self.code() & 0x8000 != 0
    }

    /// The name PS3.7 gives the message, such as `C-STORE-RQ`.
    pub fn name(self) -> &'static str {
        match self {
            CommandField::CStoreRq => "C-STORE-RQ",
            CommandField::CStoreRsp => "C-STORE-RSP",
            CommandField::CGetRq => "C-GET-RQ",
            CommandField::CGetRsp => "C-GET-RSP",
            CommandField::CFindRq => "C-FIND-RQ",
            CommandField::CFindRsp => "C-FIND-RSP",
            CommandField::CMoveRq => "C-MOVE-RQ",
            CommandField::CMoveRsp => "C-MOVE-RSP",
            CommandField::CEchoRq => "C-ECHO-RQ",
            CommandField::CEchoRsp => "C-ECHO-RSP",
            CommandField::CCancelRq => "C-CANCEL-RQ",
        }
    }
}

impl fmt::Display for CommandField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Priority (0000,0700) of a C-STORE, C-FIND, C-MOVE or C-GET request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Priority {
    /// MEDIUM (0x0000).
    #[default]
    Medium,
    /// HIGH (0x0001).
    High,
    /// LOW (0x0002).
    Low,
}

impl Priority {
    /// The value of (0000,0700).
    pub fn code(self) -> u16 {
        match self {
            Priority::Medium => 0x0000,
            Priority::High => 0x0001,
            Priority::Low => 0x0002,
        }
    }

    /// The priority of a (0000,0700) value; `None` for values PS3.7 does not define.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            0x0000 => Some(Priority::Medium),
            0x0001 => Some(Priority::High),
            0x0002 => Some(Priority::Low),
            _ => None,
        }
    }
}

/// A DIMSE command set. Fields that a given command does not use are `None`.
///
/// String values are held without their padding. The encoder writes them as given: callers pass
/// the default character repertoire (ASCII) that PS3.7 prescribes for command sets, UIDs of at
/// most 64 characters, AE titles of at most 16 and error comments of at most 64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// (0000,0100) CommandField.
    pub field: CommandField,
    /// (0000,0110) MessageID (US), in requests.
    pub message_id: Option<u16>,
    /// (0000,0120) MessageIDBeingRespondedTo (US), in responses and C-CANCEL-RQ.
    pub message_id_responded_to: Option<u16>,
    /// (0000,0002) AffectedSOPClassUID (UI).
    pub affected_sop_class_uid: Option<String>,
    /// (0000,0003) RequestedSOPClassUID (UI), used by the DIMSE-N services.
    pub requested_sop_class_uid: Option<String>,
    /// (0000,1000) AffectedSOPInstanceUID (UI).
    pub affected_sop_instance_uid: Option<String>,
    /// (0000,1001) RequestedSOPInstanceUID (UI), used by the DIMSE-N services.
    pub requested_sop_instance_uid: Option<String>,
    /// (0000,0700) Priority (US).
    pub priority: Option<Priority>,
    /// (0000,0800) CommandDataSetType (US): whether a data set follows the command. Encoded as
    /// [`DATA_SET_PRESENT`] (0x0001) or [`DATA_SET_ABSENT`] (0x0101); on decode any value but
    /// 0x0101 means present, and a missing element means absent.
    pub has_data_set: bool,
    /// (0000,0900) Status (US), in responses; see [`status`].
    pub status: Option<u16>,
    /// (0000,0901) OffendingElement (AT): the (group, element) tags a failure is about.
    pub offending_element: Option<Vec<(u16, u16)>>,
    /// (0000,0902) ErrorComment (LO): free text about a failure, at most 64 characters.
    pub error_comment: Option<String>,
    /// (0000,0600) MoveDestination (AE), in C-MOVE-RQ.
    pub move_destination: Option<String>,
    /// (0000,1030) MoveOriginatorApplicationEntityTitle (AE), in the C-STORE-RQ sub-operations
    /// of a C-MOVE.
    pub move_originator_ae_title: Option<String>,
    /// (0000,1031) MoveOriginatorMessageID (US), in the C-STORE-RQ sub-operations of a C-MOVE.
    pub move_originator_message_id: Option<u16>,
    /// (0000,1020) NumberOfRemainingSuboperations (US), in C-MOVE-RSP and C-GET-RSP.
    pub remaining_suboperations: Option<u16>,
    /// (0000,1021) NumberOfCompletedSuboperations (US), in C-MOVE-RSP and C-GET-RSP.
    pub completed_suboperations: Option<u16>,
    /// (0000,1022) NumberOfFailedSuboperations (US), in C-MOVE-RSP and C-GET-RSP.
    pub failed_suboperations: Option<u16>,
    /// (0000,1023) NumberOfWarningSuboperations (US), in C-MOVE-RSP and C-GET-RSP.
    pub warning_suboperations: Option<u16>,
}

impl Command {
    /// A command with only `field` set and no data set: build the rest with struct update syntax.
    pub fn new(field: CommandField) -> Command {
        Command {
            field,
            message_id: None,
            message_id_responded_to: None,
            affected_sop_class_uid: None,
            requested_sop_class_uid: None,
            affected_sop_instance_uid: None,
            requested_sop_instance_uid: None,
            priority: None,
            has_data_set: false,
            status: None,
            offending_element: None,
            error_comment: None,
            move_destination: None,
            move_originator_ae_title: None,
            move_originator_message_id: None,
            remaining_suboperations: None,
            completed_suboperations: None,
            failed_suboperations: None,
            warning_suboperations: None,
        }
    }

    /// A C-ECHO-RQ (Verification SOP Class, no data set).
    pub fn c_echo_rq(message_id: u16) -> Command {
        Command { message_id: Some(message_id), affected_sop_class_uid: Some(VERIFICATION_SOP_CLASS_UID.to_owned()), ..Command::new(CommandField::CEchoRq) }
    }

    /// A C-ECHO-RSP (Verification SOP Class, no data set).
    pub fn c_echo_rsp(responded_to: u16, status: u16) -> Command {
        Command {
            message_id_responded_to: Some(responded_to),
            affected_sop_class_uid: Some(VERIFICATION_SOP_CLASS_UID.to_owned()),
            status: Some(status),
            ..Command::new(CommandField::CEchoRsp)
        }
    }

    /// A C-STORE-RQ; the data set (the instance) follows.
    pub fn c_store_rq(message_id: u16, sop_class: &str, sop_instance: &str, priority: Priority) -> Command {
        Command {
            message_id: Some(message_id),
            affected_sop_class_uid: Some(sop_class.to_owned()),
            affected_sop_instance_uid: Some(sop_instance.to_owned()),
            priority: Some(priority),
            has_data_set: true,
            ..Command::new(CommandField::CStoreRq)
        }
    }

    /// A C-STORE-RSP (no data set).
    pub fn c_store_rsp(responded_to: u16, sop_class: &str, sop_instance: &str, status: u16) -> Command {
        Command {
            message_id_responded_to: Some(responded_to),
            affected_sop_class_uid: Some(sop_class.to_owned()),
            affected_sop_instance_uid: Some(sop_instance.to_owned()),
            status: Some(status),
            ..Command::new(CommandField::CStoreRsp)
        }
    }

    /// A C-FIND-RQ; the identifier (the query) follows.
    pub fn c_find_rq(message_id: u16, sop_class: &str, priority: Priority) -> Command {
        Command {
            message_id: Some(message_id),
            affected_sop_class_uid: Some(sop_class.to_owned()),
            priority: Some(priority),
            has_data_set: true,
            ..Command::new(CommandField::CFindRq)
        }
    }

    /// A C-FIND-RSP; pending responses carry a match (`has_data_set`), the final one none.
    pub fn c_find_rsp(responded_to: u16, sop_class: &str, status: u16, has_data_set: bool) -> Command {
        Command {
            message_id_responded_to: Some(responded_to),
            affected_sop_class_uid: Some(sop_class.to_owned()),
            status: Some(status),
            has_data_set,
            ..Command::new(CommandField::CFindRsp)
        }
    }

    /// A C-CANCEL-RQ for the request `responded_to` (no data set).
    pub fn c_cancel_rq(responded_to: u16) -> Command {
        Command { message_id_responded_to: Some(responded_to), ..Command::new(CommandField::CCancelRq) }
    }

    /// A C-MOVE-RQ sending the matches to the AE title `destination`; the identifier follows.
    pub fn c_move_rq(message_id: u16, sop_class: &str, priority: Priority, destination: &str) -> Command {
        Command {
            message_id: Some(message_id),
            affected_sop_class_uid: Some(sop_class.to_owned()),
            priority: Some(priority),
            move_destination: Some(destination.to_owned()),
            has_data_set: true,
            ..Command::new(CommandField::CMoveRq)
        }
    }

    /// A C-GET-RQ; the identifier follows.
    pub fn c_get_rq(message_id: u16, sop_class: &str, priority: Priority) -> Command {
        Command {
            message_id: Some(message_id),
            affected_sop_class_uid: Some(sop_class.to_owned()),
            priority: Some(priority),
            has_data_set: true,
            ..Command::new(CommandField::CGetRq)
        }
    }

    /// A C-MOVE-RSP with its sub-operation counts (`remaining` is left out of final responses),
    /// without data set (set `has_data_set` for a failed SOP Instance UID list).
    pub fn c_move_rsp(responded_to: u16, sop_class: &str, status: u16, remaining: Option<u16>, completed: u16, failed: u16, warning: u16) -> Command {
        Command { field: CommandField::CMoveRsp, ..Command::c_get_rsp(responded_to, sop_class, status, remaining, completed, failed, warning) }
    }

    /// A C-GET-RSP with its sub-operation counts (`remaining` is left out of final responses),
    /// without data set (set `has_data_set` for a failed SOP Instance UID list).
    pub fn c_get_rsp(responded_to: u16, sop_class: &str, status: u16, remaining: Option<u16>, completed: u16, failed: u16, warning: u16) -> Command {
        Command {
            message_id_responded_to: Some(responded_to),
            affected_sop_class_uid: Some(sop_class.to_owned()),
            status: Some(status),
            remaining_suboperations: remaining,
            completed_suboperations: Some(completed),
            failed_suboperations: Some(failed),
            warning_suboperations: Some(warning),
            ..Command::new(CommandField::CGetRsp)
        }
    }

    /// Encodes the command set: Implicit VR Little Endian, (0000,0000) CommandGroupLength
    /// first, then the elements that are set in ascending tag order. CommandField and
    /// CommandDataSetType are always written.
    pub fn encode(&self) -> Vec<u8> {
        const NUL: u8 = 0x00;
        const SPACE: u8 = b' ';
        let mut body = Vec::with_capacity(192);
        let b = &mut body;
        put_text(b, tag::AFFECTED_SOP_CLASS_UID, self.affected_sop_class_uid.as_deref(), NUL);
        put_text(b, tag::REQUESTED_SOP_CLASS_UID, self.requested_sop_class_uid.as_deref(), NUL);
        put_us(b, tag::COMMAND_FIELD, Some(self.field.code()));
        put_us(b, tag::MESSAGE_ID, self.message_id);
        put_us(b, tag::MESSAGE_ID_RESPONDED_TO, self.message_id_responded_to);
        put_text(b, tag::MOVE_DESTINATION, self.move_destination.as_deref(), SPACE);
        put_us(b, tag::PRIORITY, self.priority.map(Priority::code));
        put_us(b, tag::DATA_SET_TYPE, Some(if self.has_data_set { DATA_SET_PRESENT } else { DATA_SET_ABSENT }));
        put_us(b, tag::STATUS, self.status);
        if let Some(tags) = &self.offending_element {
            put_header(b, tag::OFFENDING_ELEMENT, tags.len().saturating_mul(4));
            for (group, element) in tags {
                b.extend_from_slice(&group.to_le_bytes());
                b.extend_from_slice(&element.to_le_bytes());
            }
        }
        // LO in the default repertoire: at most 64 characters, ASCII.
        let comment = self.error_comment.as_deref().map(|c| c.chars().take(64).map(|ch| if ch.is_ascii() { ch } else { '?' }).collect::<String>());
        put_text(b, tag::ERROR_COMMENT, comment.as_deref(), SPACE);
        put_text(b, tag::AFFECTED_SOP_INSTANCE_UID, self.affected_sop_instance_uid.as_deref(), NUL);
        put_text(b, tag::REQUESTED_SOP_INSTANCE_UID, self.requested_sop_instance_uid.as_deref(), NUL);
        put_us(b, tag::REMAINING_SUBOPERATIONS, self.remaining_suboperations);
        put_us(b, tag::COMPLETED_SUBOPERATIONS, self.completed_suboperations);
        put_us(b, tag::FAILED_SUBOPERATIONS, self.failed_suboperations);
        put_us(b, tag::WARNING_SUBOPERATIONS, self.warning_suboperations);
        put_text(b, tag::MOVE_ORIGINATOR_AE_TITLE, self.move_originator_ae_title.as_deref(), SPACE);
        put_us(b, tag::MOVE_ORIGINATOR_MESSAGE_ID, self.move_originator_message_id);

        let mut out = Vec::with_capacity(12 + body.len());
        put_header(&mut out, tag::GROUP_LENGTH, 4);
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a command set (Implicit VR Little Endian, group 0000 only).
    ///
    /// Elements this codec does not know are skipped: unknown group 0000 elements are legal
    /// (retired ones, DIMSE-N ones). The elements may come in any order. Text values lose their
    /// padding (leading and trailing spaces and NULs); a zero-length US element counts as absent.
    /// A CommandGroupLength announcing more bytes than follow is an error (a truncated command
    /// set); one announcing fewer is only logged, and the whole buffer is decoded.
    ///
    /// Errors ([`Error::Malformed`], naming the element): a truncated element, an element outside
    /// group 0000 or of undefined length, a value of the wrong length for its VR, a known element
    /// given twice, a missing or unsupported CommandField.
    pub fn decode(bytes: &[u8]) -> Result<Command> {
        decode_command(bytes).map_err(|reason| Error::Malformed { reason })
    }
}

/// The body of [`Command::decode`]; errors are the reasons of [`Error::Malformed`].
fn decode_command(bytes: &[u8]) -> std::result::Result<Command, String> {
    let mut decoded = Decoded::default();
    let mut rest = bytes;
    let mut group_length: Option<(u32, usize)> = None;
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let Some((header, after)) = rest.split_first_chunk::<8>() else {
            return Err(format!("truncated element header at byte {offset}: {} bytes left, 8 needed", rest.len()));
        };
        let group = u16::from_le_bytes([header[0], header[1]]);
        let element = u16::from_le_bytes([header[2], header[3]]);
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if group != 0x0000 {
            return Err(format!("element ({group:04X},{element:04X}) at byte {offset} is outside the command group 0000"));
        }
        if length == u32::MAX {
            return Err(format!("{} has an undefined length", tag::name(element)));
        }
        let (value, next) = usize::try_from(length)
            .ok()
            .and_then(|length| after.split_at_checked(length))
            .ok_or_else(|| format!("{}: value length {length} at byte {offset} exceeds the {} bytes left", tag::name(element), after.len()))?;
        rest = next;
        if element == tag::GROUP_LENGTH {
            if group_length.is_some() {
                return Err(duplicate(element));
            }
            let Ok(value) = <[u8; 4]>::try_from(value) else {
                return Err(format!("{}: value length {length}, 4 expected (UL)", tag::name(element)));
            };
            group_length = Some((u32::from_le_bytes(value), bytes.len() - rest.len()));
        } else {
            decoded.element(element, value)?;
        }
    }
    if let Some((announced, end)) = group_length {
        let following = bytes.len() - end;
        match usize::try_from(announced) {
            Ok(announced) if announced == following => {}
            Ok(announced) if announced < following => {
                tracing::debug!(announced, following, "DIMSE CommandGroupLength smaller than the command set; decoding all of it");
            }
            _ => {
                return Err(format!("{}: {announced} bytes announced but only {following} follow (truncated command set)", tag::name(tag::GROUP_LENGTH)));
            }
        }
    }
    decoded.finish()
}

/// The elements decoded so far.
#[derive(Default)]
struct Decoded {
    field: Option<u16>,
    data_set_type: Option<u16>,
    priority: Option<u16>,
    message_id: Option<u16>,
    message_id_responded_to: Option<u16>,
    affected_sop_class_uid: Option<String>,
    requested_sop_class_uid: Option<String>,
    affected_sop_instance_uid: Option<String>,
    requested_sop_instance_uid: Option<String>,
    status: Option<u16>,
    offending_element: Option<Vec<(u16, u16)>>,
    error_comment: Option<String>,
    move_destination: Option<String>,
    move_originator_ae_title: Option<String>,
    move_originator_message_id: Option<u16>,
    remaining_suboperations: Option<u16>,
    completed_suboperations: Option<u16>,
    failed_suboperations: Option<u16>,
    warning_suboperations: Option<u16>,
}

impl Decoded {
    /// Takes the value of the element `element`; unknown elements are skipped.
    fn element(&mut self, element: u16, value: &[u8]) -> std::result::Result<(), String> {
        let slot_us = match element {
            tag::COMMAND_FIELD => &mut self.field,
            tag::DATA_SET_TYPE => &mut self.data_set_type,
            tag::PRIORITY => &mut self.priority,
            tag::MESSAGE_ID => &mut self.message_id,
            tag::MESSAGE_ID_RESPONDED_TO => &mut self.message_id_responded_to,
            tag::STATUS => &mut self.status,
            tag::MOVE_ORIGINATOR_MESSAGE_ID => &mut self.move_originator_message_id,
            tag::REMAINING_SUBOPERATIONS => &mut self.remaining_suboperations,
            tag::COMPLETED_SUBOPERATIONS => &mut self.completed_suboperations,
            tag::FAILED_SUBOPERATIONS => &mut self.failed_suboperations,
            tag::WARNING_SUBOPERATIONS => &mut self.warning_suboperations,
            tag::AFFECTED_SOP_CLASS_UID
            | tag::REQUESTED_SOP_CLASS_UID
            | tag::AFFECTED_SOP_INSTANCE_UID
            | tag::REQUESTED_SOP_INSTANCE_UID
            | tag::MOVE_DESTINATION
            | tag::MOVE_ORIGINATOR_AE_TITLE
            | tag::ERROR_COMMENT => return self.text(element, value),
            tag::OFFENDING_ELEMENT => {
                if self.offending_element.is_some() {
                    return Err(duplicate(element));
                }
                if !value.len().is_multiple_of(4) {
                    return Err(format!("{}: value length {} is not a multiple of 4 (AT)", tag::name(element), value.len()));
                }
                let tags = value.chunks_exact(4).map(|at| (u16::from_le_bytes([at[0], at[1]]), u16::from_le_bytes([at[2], at[3]]))).collect();
                self.offending_element = Some(tags);
                return Ok(());
            }
            _ => {
                tracing::trace!(element = %format_args!("(0000,{element:04X})"), length = value.len(), "skipping a DIMSE command element");
                return Ok(());
            }
        };
        if slot_us.is_some() {
            return Err(duplicate(element));
        }
        match value.len() {
            0 => {}
            2 => *slot_us = Some(u16::from_le_bytes([value[0], value[1]])),
            n => return Err(format!("{}: value length {n}, 2 expected (US)", tag::name(element))),
        }
        Ok(())
    }

    /// Takes the value of a text (UI, AE, LO) element.
    fn text(&mut self, element: u16, value: &[u8]) -> std::result::Result<(), String> {
        let slot = match element {
            tag::AFFECTED_SOP_CLASS_UID => &mut self.affected_sop_class_uid,
            tag::REQUESTED_SOP_CLASS_UID => &mut self.requested_sop_class_uid,
            tag::AFFECTED_SOP_INSTANCE_UID => &mut self.affected_sop_instance_uid,
            tag::REQUESTED_SOP_INSTANCE_UID => &mut self.requested_sop_instance_uid,
            tag::MOVE_DESTINATION => &mut self.move_destination,
            tag::MOVE_ORIGINATOR_AE_TITLE => &mut self.move_originator_ae_title,
            _ => &mut self.error_comment,
        };
        if slot.is_some() {
            return Err(duplicate(element));
        }
        *slot = Some(text_value(value));
        Ok(())
    }

    fn finish(self) -> std::result::Result<Command, String> {
        let name = tag::name(tag::COMMAND_FIELD);
        let code = self.field.ok_or_else(|| format!("{name} is missing"))?;
        let field = CommandField::from_code(code).ok_or_else(|| format!("{name}: 0x{code:04X} is not a command this archive supports"))?;
        let priority = self.priority.map(|code| {
            Priority::from_code(code).unwrap_or_else(|| {
                tracing::debug!(code, "DIMSE Priority of an undefined value, taken as MEDIUM");
                Priority::Medium
            })
        });
        Ok(Command {
            field,
            message_id: self.message_id,
            message_id_responded_to: self.message_id_responded_to,
            affected_sop_class_uid: self.affected_sop_class_uid,
            requested_sop_class_uid: self.requested_sop_class_uid,
            affected_sop_instance_uid: self.affected_sop_instance_uid,
            requested_sop_instance_uid: self.requested_sop_instance_uid,
            priority,
            has_data_set: self.data_set_type.is_some_and(|kind| kind != DATA_SET_ABSENT),
            status: self.status,
            offending_element: self.offending_element,
            error_comment: self.error_comment,
            move_destination: self.move_destination,
            move_originator_ae_title: self.move_originator_ae_title,
            move_originator_message_id: self.move_originator_message_id,
            remaining_suboperations: self.remaining_suboperations,
            completed_suboperations: self.completed_suboperations,
            failed_suboperations: self.failed_suboperations,
            warning_suboperations: self.warning_suboperations,
        })
    }
}

/// A text value without its padding: UTF-8 when it is (ASCII always is), else read as Latin-1
/// so that no byte is lost or refused.
fn text_value(value: &[u8]) -> String {
    let text = match std::str::from_utf8(value) {
        Ok(text) => text.to_owned(),
        Err(_) => value.iter().map(|&byte| char::from(byte)).collect(),
    };
    let trimmed = text.trim_matches(['\0', ' ']);
    if trimmed.len() == text.len() { text } else { trimmed.to_owned() }
}

/// The reason of a decoding error: a known element given twice.
fn duplicate(element: u16) -> String {
    format!("{} appears twice", tag::name(element))
}

/// Writes the tag and length of an Implicit VR element of group 0000.
fn put_header(out: &mut Vec<u8>, element: u16, length: usize) {
    out.extend_from_slice(&0x0000u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes());
}

/// Writes a US element, if there is a value.
fn put_us(out: &mut Vec<u8>, element: u16, value: Option<u16>) {
    if let Some(value) = value {
        put_header(out, element, 2);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Writes a text element padded to an even length with `padding`, if there is a value.
fn put_text(out: &mut Vec<u8>, element: u16, value: Option<&str>, padding: u8) {
    let Some(value) = value else { return };
    let odd = value.len() % 2 == 1;
    put_header(out, element, value.len() + usize::from(odd));
    out.extend_from_slice(value.as_bytes());
    if odd {
        out.push(padding);
    }
}

/// DIMSE status codes (PS3.7 annex C, and the service-specific ones of PS3.4) and their
/// classification.
///
/// Several services give one value different meanings; each value has one constant here, and its
/// documentation names the other meanings.
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Pending: the operation goes on (C-FIND match, C-MOVE / C-GET progress).
    pub const PENDING: u16 = 0xFF00;
    /// Pending, with a warning: C-FIND matches for which one or more optional keys were not
    /// supported.
    pub const PENDING_WARNING: u16 = 0xFF01;
    /// Cancel: the operation ended after a C-CANCEL-RQ.
    pub const CANCEL: u16 = 0xFE00;

    /// Warning: requested optional attributes are not supported.
    pub const OPTIONAL_ATTRIBUTES_NOT_SUPPORTED: u16 = 0x0001;
    /// Warning: attribute list error.
    pub const ATTRIBUTE_LIST_ERROR: u16 = 0x0107;
    /// Warning: attribute value out of range.
    pub const ATTRIBUTE_VALUE_OUT_OF_RANGE: u16 = 0x0116;
    /// Warning (0xB000): C-MOVE / C-GET sub-operations complete, one or more failures or
    /// warnings; for C-STORE the same value means "coercion of data elements" (the SCP changed
    /// some values).
    pub const SUB_OPERATIONS_COMPLETE_WITH_FAILURES: u16 = 0xB000;
    /// Warning (C-STORE): the data set does not match the SOP Class; it was stored anyway.
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: u16 = 0xB007;
    /// Warning (C-STORE): elements discarded.
    pub const ELEMENTS_DISCARDED: u16 = 0xB006;

    /// Failure: out of resources (C-STORE, C-FIND, C-MOVE, C-GET; any 0xA7xx for C-STORE).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Failure (C-MOVE, C-GET): out of resources, unable to calculate the number of matches.
    pub const OUT_OF_RESOURCES_NUMBER_OF_MATCHES: u16 = 0xA701;
    /// Failure (C-MOVE, C-GET): out of resources, unable to perform the sub-operations.
    pub const OUT_OF_RESOURCES_SUB_OPERATIONS: u16 = 0xA702;
    /// Failure (C-MOVE): move destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    /// Failure (0xA900): data set does not match SOP Class (C-STORE); for C-FIND, C-MOVE and
    /// C-GET the same value means "identifier does not match SOP Class". Any 0xA9xx for C-STORE.
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    /// Failure (C-STORE): cannot understand (any 0xCxxx for C-STORE).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Failure (C-FIND, C-MOVE, C-GET): unable to process. PS3.4 gives the whole 0xCxxx range
    /// this meaning (classify with [`status_kind`]); this constant is 0xC001 because 0xC000 is
    /// [`CANNOT_UNDERSTAND`].
    pub const UNABLE_TO_PROCESS: u16 = 0xC001;

    /// Failure: no such attribute.
    pub const NO_SUCH_ATTRIBUTE: u16 = 0x0105;
    /// Failure: invalid attribute value.
    pub const INVALID_ATTRIBUTE_VALUE: u16 = 0x0106;
    /// Failure: processing failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Failure: duplicate SOP Instance.
    pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
    /// Failure: no such SOP Instance.
    pub const NO_SUCH_SOP_INSTANCE: u16 = 0x0112;
    /// Failure: no such event type.
    pub const NO_SUCH_EVENT_TYPE: u16 = 0x0113;
    /// Failure: no such argument.
    pub const NO_SUCH_ARGUMENT: u16 = 0x0114;
    /// Failure: invalid argument value.
    pub const INVALID_ARGUMENT_VALUE: u16 = 0x0115;
    /// Failure: invalid object instance.
    pub const INVALID_OBJECT_INSTANCE: u16 = 0x0117;
    /// Failure: no such SOP Class.
    pub const NO_SUCH_SOP_CLASS: u16 = 0x0118;
    /// Failure: class-instance conflict.
    pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;
    /// Failure: missing attribute.
    pub const MISSING_ATTRIBUTE: u16 = 0x0120;
    /// Failure: missing attribute value.
    pub const MISSING_ATTRIBUTE_VALUE: u16 = 0x0121;
    /// Failure (refused): SOP Class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Failure (refused): not authorized.
    pub const NOT_AUTHORIZED: u16 = 0x0124;
    /// Failure: duplicate invocation (the Message ID is in use).
    pub const DUPLICATE_INVOCATION: u16 = 0x0210;
    /// Failure: unrecognized operation.
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    /// Failure: mistyped argument.
    pub const MISTYPED_ARGUMENT: u16 = 0x0212;
    /// Failure: resource limitation.
    pub const RESOURCE_LIMITATION: u16 = 0x0213;

    /// The class of a status code (PS3.7 annex C).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum StatusKind {
        /// 0x0000.
        Success,
        /// 0x0001, 0x0107, 0x0116 and 0xBxxx.
        Warning,
        /// Every other code.
        Failure,
        /// 0xFE00.
        Cancel,
        /// 0xFF00 and 0xFF01.
        Pending,
    }

    /// Classifies a status code: 0x0000 success; 0xFF00 and 0xFF01 pending; 0xFE00 cancel;
    /// 0x0001, 0x0107, 0x0116 and 0xB000–0xBFFF warning; every other code failure.
    pub fn status_kind(code: u16) -> StatusKind {
        match code {
            SUCCESS => StatusKind::Success,
            PENDING | PENDING_WARNING => StatusKind::Pending,
            CANCEL => StatusKind::Cancel,
            OPTIONAL_ATTRIBUTES_NOT_SUPPORTED | ATTRIBUTE_LIST_ERROR | ATTRIBUTE_VALUE_OUT_OF_RANGE | 0xB000..=0xBFFF => StatusKind::Warning,
            _ => StatusKind::Failure,
        }
    }
}

pub use status::{StatusKind, status_kind};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const INSTANCE: &str = "1.2.826.0.1.3680043.8.498.12345";
    const FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
    const MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
    const GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

    // Compatibility vectors written by pydicom 3.0.2 (`pydicom.filewriter.write_dataset` to a
    // `DicomBytesIO` with `is_little_endian = True, is_implicit_VR = True`, CommandGroupLength
    // computed from a first pass), for the commands of the tests below.

    /// pydicom: C-ECHO-RQ, MessageID 1.
    const C_ECHO_RQ: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x12, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x31, 0x2E, 0x31, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x00, //
        0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, //
        0x00, 0x00, 0x01, 0x01,
    ];
    /// pydicom: C-ECHO-RSP to 1, Success.
    const C_ECHO_RSP: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x12, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x31, 0x2E, 0x31, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x80, //
        0x00, 0x00, 0x20, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, //
        0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// pydicom: C-STORE-RQ, MessageID 7, CT Image Storage, MEDIUM.
    const C_STORE_RQ: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x72, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x1A, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x35, 0x2E, 0x31, 0x2E, 0x34, 0x2E, 0x31, 0x2E, 0x31, 0x2E, 0x32, 0x00, 0x00, 0x00, //
        0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, //
        0x07, 0x00, 0x00, 0x00, 0x00, 0x07, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, //
        0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x00, 0x00, 0x00, 0x31, 0x2E, //
        0x32, 0x2E, 0x38, 0x32, 0x36, 0x2E, 0x30, 0x2E, 0x31, 0x2E, 0x33, 0x36, 0x38, 0x30, 0x30, 0x34, //
        0x33, 0x2E, 0x38, 0x2E, 0x34, 0x39, 0x38, 0x2E, 0x31, 0x32, 0x33, 0x34, 0x35, 0x00,
    ];
    /// pydicom: C-STORE-RQ sub-operation of a C-MOVE, MessageID 3, LOW, originator VIEWER / 12.
    const C_STORE_RQ_SUB_OPERATION: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x8A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x1A, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x35, 0x2E, 0x31, 0x2E, 0x34, 0x2E, 0x31, 0x2E, 0x31, 0x2E, 0x32, 0x00, 0x00, 0x00, //
        0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, //
        0x03, 0x00, 0x00, 0x00, 0x00, 0x07, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x08, //
        0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x00, 0x00, 0x00, 0x31, 0x2E, //
        0x32, 0x2E, 0x38, 0x32, 0x36, 0x2E, 0x30, 0x2E, 0x31, 0x2E, 0x33, 0x36, 0x38, 0x30, 0x30, 0x34, //
        0x33, 0x2E, 0x38, 0x2E, 0x34, 0x39, 0x38, 0x2E, 0x31, 0x32, 0x33, 0x34, 0x35, 0x00, 0x00, 0x00, //
        0x30, 0x10, 0x06, 0x00, 0x00, 0x00, 0x56, 0x49, 0x45, 0x57, 0x45, 0x52, 0x00, 0x00, 0x31, 0x10, //
        0x02, 0x00, 0x00, 0x00, 0x0C, 0x00,
    ];
    /// pydicom: C-STORE-RSP to 7, Success.
    const C_STORE_RSP: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x72, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x1A, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x35, 0x2E, 0x31, 0x2E, 0x34, 0x2E, 0x31, 0x2E, 0x31, 0x2E, 0x32, 0x00, 0x00, 0x00, //
        0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x20, 0x01, 0x02, 0x00, 0x00, 0x00, //
        0x07, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x09, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x00, 0x00, 0x00, 0x31, 0x2E, //
        0x32, 0x2E, 0x38, 0x32, 0x36, 0x2E, 0x30, 0x2E, 0x31, 0x2E, 0x33, 0x36, 0x38, 0x30, 0x30, 0x34, //
        0x33, 0x2E, 0x38, 0x2E, 0x34, 0x39, 0x38, 0x2E, 0x31, 0x32, 0x33, 0x34, 0x35, 0x00,
    ];
    /// pydicom: C-STORE-RSP to 7, 0xA900, OffendingElement (0008,0018) (0010,0020), ErrorComment.
    const C_STORE_RSP_FAILURE: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xA4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x1A, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x35, 0x2E, 0x31, 0x2E, 0x34, 0x2E, 0x31, 0x2E, 0x31, 0x2E, 0x32, 0x00, 0x00, 0x00, //
        0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x20, 0x01, 0x02, 0x00, 0x00, 0x00, //
        0x07, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x09, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0xA9, 0x00, 0x00, 0x01, 0x09, 0x08, 0x00, 0x00, 0x00, 0x08, 0x00, //
        0x18, 0x00, 0x10, 0x00, 0x20, 0x00, 0x00, 0x00, 0x02, 0x09, 0x1A, 0x00, 0x00, 0x00, 0x53, 0x4F, //
        0x50, 0x20, 0x49, 0x6E, 0x73, 0x74, 0x61, 0x6E, 0x63, 0x65, 0x20, 0x55, 0x49, 0x44, 0x20, 0x6D, //
        0x69, 0x73, 0x6D, 0x61, 0x74, 0x63, 0x68, 0x20, 0x00, 0x00, 0x00, 0x10, 0x20, 0x00, 0x00, 0x00, //
        0x31, 0x2E, 0x32, 0x2E, 0x38, 0x32, 0x36, 0x2E, 0x30, 0x2E, 0x31, 0x2E, 0x33, 0x36, 0x38, 0x30, //
        0x30, 0x34, 0x33, 0x2E, 0x38, 0x2E, 0x34, 0x39, 0x38, 0x2E, 0x31, 0x32, 0x33, 0x34, 0x35, 0x00,
    ];
    /// pydicom: C-FIND-RSP to 5, Pending, with a data set (Study Root FIND).
    const C_FIND_RSP_PENDING: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x4C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x1C, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x35, 0x2E, 0x31, 0x2E, 0x34, 0x2E, 0x31, 0x2E, 0x32, 0x2E, 0x32, 0x2E, 0x31, 0x00, //
        0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x20, 0x80, 0x00, 0x00, 0x20, 0x01, 0x02, 0x00, //
        0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, //
        0x00, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0xFF,
    ];
    /// pydicom: C-MOVE-RQ, MessageID 9, Study Root MOVE, HIGH, destination ARCHIVE (odd: padded).
    const C_MOVE_RQ: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x5C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x1C, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x35, 0x2E, 0x31, 0x2E, 0x34, 0x2E, 0x31, 0x2E, 0x32, 0x2E, 0x32, 0x2E, 0x32, 0x00, //
        0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02, 0x00, //
        0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x06, 0x08, 0x00, 0x00, 0x00, 0x41, 0x52, 0x43, 0x48, //
        0x49, 0x56, 0x45, 0x20, 0x00, 0x00, 0x00, 0x07, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, //
        0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00,
    ];
    /// pydicom: C-GET-RSP to 11, Pending, 3 remaining, 5 completed, 1 failed, 0 warning.
    const C_GET_RSP_PENDING: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x74, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, //
        0x1C, 0x00, 0x00, 0x00, 0x31, 0x2E, 0x32, 0x2E, 0x38, 0x34, 0x30, 0x2E, 0x31, 0x30, 0x30, 0x30, //
        0x38, 0x2E, 0x35, 0x2E, 0x31, 0x2E, 0x34, 0x2E, 0x31, 0x2E, 0x32, 0x2E, 0x32, 0x2E, 0x33, 0x00, //
        0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x10, 0x80, 0x00, 0x00, 0x20, 0x01, 0x02, 0x00, //
        0x00, 0x00, 0x0B, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, //
        0x00, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0xFF, 0x00, 0x00, 0x20, 0x10, 0x02, 0x00, 0x00, 0x00, //
        0x03, 0x00, 0x00, 0x00, 0x21, 0x10, 0x02, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x22, 0x10, //
        0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x23, 0x10, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// pydicom: C-CANCEL-RQ for 5.
    const C_CANCEL_RQ: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x1E, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x02, 0x00, 0x00, 0x00, 0xFF, 0x0F, 0x00, 0x00, 0x20, 0x01, 0x02, 0x00, 0x00, 0x00, 0x05, 0x00, //
        0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01,
    ];

    /// The pydicom vectors and the commands they encode.
    fn vectors() -> Vec<(&'static str, &'static [u8], Command)> {
        vec![
            ("C-ECHO-RQ", C_ECHO_RQ, Command::c_echo_rq(1)),
            ("C-ECHO-RSP", C_ECHO_RSP, Command::c_echo_rsp(1, status::SUCCESS)),
            ("C-STORE-RQ", C_STORE_RQ, Command::c_store_rq(7, CT, INSTANCE, Priority::Medium)),
            (
                "C-STORE-RQ sub-operation",
                C_STORE_RQ_SUB_OPERATION,
                Command {
                    move_originator_ae_title: Some("VIEWER".into()),
                    move_originator_message_id: Some(12),
                    ..Command::c_store_rq(3, CT, INSTANCE, Priority::Low)
                },
            ),
            ("C-STORE-RSP", C_STORE_RSP, Command::c_store_rsp(7, CT, INSTANCE, status::SUCCESS)),
            (
                "C-STORE-RSP failure",
                C_STORE_RSP_FAILURE,
                Command {
                    offending_element: Some(vec![(0x0008, 0x0018), (0x0010, 0x0020)]),
                    error_comment: Some("SOP Instance UID mismatch".into()),
                    ..Command::c_store_rsp(7, CT, INSTANCE, status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
                },
            ),
            ("C-FIND-RSP pending", C_FIND_RSP_PENDING, Command::c_find_rsp(5, FIND, status::PENDING, true)),
            ("C-MOVE-RQ", C_MOVE_RQ, Command::c_move_rq(9, MOVE, Priority::High, "ARCHIVE")),
            ("C-GET-RSP pending", C_GET_RSP_PENDING, Command::c_get_rsp(11, GET, status::PENDING, Some(3), 5, 1, 0)),
            ("C-CANCEL-RQ", C_CANCEL_RQ, Command::c_cancel_rq(5)),
        ]
    }

    #[test]
    fn error_comments_are_sent_as_64_ascii_characters_at_most() {
        let long = format!("writing blob: {} – no space", "x".repeat(80));
        let command = Command { error_comment: Some(long.clone()), ..Command::c_store_rsp(7, CT, INSTANCE, status::OUT_OF_RESOURCES) };
        let sent = Command::decode(&command.encode()).expect("decodes").error_comment.expect("a comment");
        assert_eq!(sent.chars().count(), 64, "{sent:?}");
        assert!(sent.is_ascii() && long.starts_with(&sent), "{sent:?}");
        let short = Command { error_comment: Some("disque plein – réessayer".into()), ..Command::c_store_rsp(7, CT, INSTANCE, status::OUT_OF_RESOURCES) };
        let sent = Command::decode(&short.encode()).expect("decodes").error_comment.expect("a comment");
        assert_eq!(sent, "disque plein ? r?essayer");
    }

    #[test]
    fn encode_matches_pydicom() {
        for (name, bytes, command) in vectors() {
            assert_eq!(command.encode(), bytes, "{name}");
        }
    }

    #[test]
    fn decode_of_pydicom_bytes() {
        for (name, bytes, command) in vectors() {
            assert_eq!(Command::decode(bytes).expect(name), command, "{name}");
        }
    }

    #[test]
    fn every_constructor_round_trips() {
        let commands = [
            Command::c_echo_rq(1),
            Command::c_echo_rsp(1, status::SUCCESS),
            Command::c_store_rq(2, CT, INSTANCE, Priority::High),
            Command::c_store_rsp(2, CT, INSTANCE, status::DUPLICATE_SOP_INSTANCE),
            Command::c_find_rq(3, FIND, Priority::Low),
            Command::c_find_rsp(3, FIND, status::PENDING, true),
            Command::c_find_rsp(3, FIND, status::SUCCESS, false),
            Command::c_cancel_rq(3),
            Command::c_move_rq(4, MOVE, Priority::Medium, "STORESCU"),
            Command::c_move_rsp(4, MOVE, status::PENDING, Some(10), 2, 0, 1),
            Command::c_move_rsp(4, MOVE, status::SUB_OPERATIONS_COMPLETE_WITH_FAILURES, None, 10, 2, 1),
            Command::c_get_rq(5, GET, Priority::Medium),
            Command::c_get_rsp(5, GET, status::SUCCESS, None, 3, 0, 0),
            Command::new(CommandField::CStoreRsp),
            Command {
                requested_sop_class_uid: Some("1.2.3".into()),
                requested_sop_instance_uid: Some("1.2.3.4".into()),
                offending_element: Some(vec![]),
                error_comment: Some(String::new()),
                ..Command::new(CommandField::CEchoRsp)
            },
        ];
        for command in commands {
            let bytes = command.encode();
            assert_eq!(bytes.len() % 2, 0, "{command:?}");
            assert_eq!(Command::decode(&bytes).expect("decodes"), command);
        }
        // The constructors set what PS3.7 requires of each message.
        assert!(Command::c_store_rq(1, CT, INSTANCE, Priority::Medium).has_data_set);
        assert!(!Command::c_store_rsp(1, CT, INSTANCE, 0).has_data_set);
        assert_eq!(Command::c_move_rsp(1, MOVE, 0, None, 1, 2, 3).field, CommandField::CMoveRsp);
        assert_eq!(Command::c_echo_rq(1).affected_sop_class_uid.as_deref(), Some(VERIFICATION_SOP_CLASS_UID));
    }

    #[test]
    fn command_field_codes() {
        for field in CommandField::ALL {
            assert_eq!(CommandField::from_code(field.code()), Some(field));
            assert_eq!(field.is_response(), field.name().ends_with("-RSP"), "{field}");
        }
        assert_eq!(CommandField::from_code(0x0140), None, "N-CREATE-RQ is not spoken");
        assert_eq!(CommandField::CCancelRq.code(), 0x0FFF);
        for priority in [Priority::Medium, Priority::High, Priority::Low] {
            assert_eq!(Priority::from_code(priority.code()), Some(priority));
        }
        assert_eq!(Priority::default(), Priority::Medium);
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_kind(status::SUCCESS), StatusKind::Success);
        assert_eq!(status_kind(status::PENDING), StatusKind::Pending);
        assert_eq!(status_kind(status::PENDING_WARNING), StatusKind::Pending);
        assert_eq!(status_kind(status::CANCEL), StatusKind::Cancel);
        for warning in [0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007, 0xBFFF] {
            assert_eq!(status_kind(warning), StatusKind::Warning, "{warning:04X}");
        }
        for failure in [
            status::OUT_OF_RESOURCES,
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            status::CANNOT_UNDERSTAND,
            status::UNABLE_TO_PROCESS,
            status::DUPLICATE_SOP_INSTANCE,
            status::SOP_CLASS_NOT_SUPPORTED,
            status::MOVE_DESTINATION_UNKNOWN,
            status::PROCESSING_FAILURE,
            status::UNRECOGNIZED_OPERATION,
            0xA7FF,
            0xCFFF,
            0xFF02,
        ] {
            assert_eq!(status_kind(failure), StatusKind::Failure, "{failure:04X}");
        }
    }

    fn reason_in(result: Result<Command>) -> String {
        match result {
            Err(Error::Malformed { reason }) => reason,
            other => panic!("expected Error::Malformed, got {other:?}"),
        }
    }

    /// An element header of group 0000.
    fn element(element: u16, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0];
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    /// A command set of `elements` with its group length.
    fn with_group_length(elements: &[Vec<u8>]) -> Vec<u8> {
        let body = elements.concat();
        let mut out = element(0x0000, &(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn decode_skips_unknown_elements() {
        let bytes = with_group_length(&[
            element(0x0002, b"1.2.840.10008.1.1\0"),
            element(0x0100, &0x0030u16.to_le_bytes()),
            element(0x0110, &1u16.to_le_bytes()),
            // (0000,0200) Initiator, retired: skipped.
            element(0x0200, b"SOMEWHERE "),
            // (0000,0800) CommandDataSetType.
            element(0x0800, &0x0101u16.to_le_bytes()),
            // (0000,5010) Message Set ID, retired: skipped.
            element(0x5010, b"X "),
        ]);
        assert_eq!(Command::decode(&bytes).expect("decodes"), Command::c_echo_rq(1));
        // Without a group length, with space-padded UIDs (some peers do) and any data set value.
        let bytes = [
            element(0x0002, b" 1.2.840.10008.5.1.4.1.1.2"),
            element(0x0100, &0x0001u16.to_le_bytes()),
            element(0x0110, &2u16.to_le_bytes()),
            element(0x0700, &0u16.to_le_bytes()),
            element(0x0800, &0xFEFEu16.to_le_bytes()),
            element(0x1000, b"1.2.826.0.1.3680043.8.498.12345\0"),
        ]
        .concat();
        assert_eq!(Command::decode(&bytes).expect("decodes"), Command::c_store_rq(2, CT, INSTANCE, Priority::Medium));
    }

    #[test]
    fn decode_rejects_truncated_buffers() {
        let bytes = Command::c_store_rq(7, CT, INSTANCE, Priority::Medium).encode();
        for cut in 1..bytes.len() {
            let reason = reason_in(Command::decode(&bytes[..cut]));
            assert!(reason.contains("(0000,") || reason.contains("truncated element header"), "cut at {cut}: {reason}");
        }
        // Cut inside the value of AffectedSOPInstanceUID: the element is named.
        let reason = reason_in(Command::decode(&bytes[..bytes.len() - 3]));
        assert!(reason.contains("(0000,1000) AffectedSOPInstanceUID"), "{reason}");
        // Cut at an element boundary: the group length tells.
        let reason = reason_in(Command::decode(&bytes[..bytes.len() - 40]));
        assert!(reason.contains("(0000,0000) CommandGroupLength"), "{reason}");
    }

    #[test]
    fn decode_rejects_missing_or_unknown_command_field() {
        let bytes = with_group_length(&[element(0x0110, &1u16.to_le_bytes()), element(0x0800, &0x0101u16.to_le_bytes())]);
        let reason = reason_in(Command::decode(&bytes));
        assert!(reason.contains("(0000,0100) CommandField") && reason.contains("missing"), "{reason}");

        let bytes = with_group_length(&[element(0x0100, &0x0140u16.to_le_bytes()), element(0x0800, &0x0101u16.to_le_bytes())]);
        let reason = reason_in(Command::decode(&bytes));
        assert!(reason.contains("(0000,0100) CommandField") && reason.contains("0x0140"), "{reason}");

        assert!(reason_of(&[]).contains("(0000,0100) CommandField"));
    }

    fn reason_of(bytes: &[u8]) -> String {
        reason_in(Command::decode(bytes))
    }

    #[test]
    fn decode_rejects_malformed_elements() {
        let field = element(0x0100, &0x0030u16.to_le_bytes());
        // US of the wrong length.
        assert!(reason_of(&[field.clone(), element(0x0110, &[1, 0, 0, 0])].concat()).contains("(0000,0110) MessageID"));
        // UL group length of the wrong length.
        assert!(reason_of(&[element(0x0000, &[1, 0]), field.clone()].concat()).contains("(0000,0000) CommandGroupLength"));
        // AT not a multiple of 4.
        assert!(reason_of(&[field.clone(), element(0x0901, &[8, 0, 0x18])].concat()).contains("(0000,0901) OffendingElement"));
        // A known element twice.
        assert!(reason_of(&[field.clone(), field.clone()].concat()).contains("appears twice"));
        // An element of another group.
        let mut foreign = element(0x0010, b"1\0");
        foreign[0] = 0x08;
        assert!(reason_of(&[field.clone(), foreign].concat()).contains("(0008,0010)"));
        // Undefined length.
        let mut undefined = element(0x0902, b"");
        undefined[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(reason_of(&[field.clone(), undefined].concat()).contains("(0000,0902) ErrorComment"));
        // A group length larger than what follows is a truncation, a smaller one is tolerated.
        let mut bytes = Command::c_echo_rq(1).encode();
        bytes[8] += 2;
        assert!(reason_of(&bytes).contains("truncated"));
        bytes[8] -= 4;
        assert_eq!(Command::decode(&bytes).expect("tolerated"), Command::c_echo_rq(1));
    }

    #[test]
    fn decode_takes_undefined_priority_as_medium() {
        let bytes = with_group_length(&[element(0x0100, &0x0020u16.to_le_bytes()), element(0x0700, &7u16.to_le_bytes())]);
        assert_eq!(Command::decode(&bytes).expect("decodes").priority, Some(Priority::Medium));
    }

    fn uid() -> impl Strategy<Value = String> {
        "[0-9.]{1,64}"
    }

    /// Printable ASCII without backslash, trimmed, of `min..=max` characters.
    fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[ -\\[\\]-~]{{{min},{max}}}"))
            .expect("valid regex")
            .prop_map(|s| s.trim().to_owned())
            .prop_filter("long enough once trimmed", move |s| s.len() >= min)
    }

    fn ae_title() -> impl Strategy<Value = String> {
        text(1, 16)
    }

    fn command() -> impl Strategy<Value = Command> {
        let field = proptest::sample::select(CommandField::ALL.to_vec());
        let priority = proptest::sample::select(vec![Priority::Medium, Priority::High, Priority::Low]);
        let ids = (
            field,
            any::<Option<u16>>(),
            any::<Option<u16>>(),
            proptest::option::of(uid()),
            proptest::option::of(uid()),
            proptest::option::of(uid()),
            proptest::option::of(uid()),
            proptest::option::of(priority),
            any::<bool>(),
            any::<Option<u16>>(),
        );
        let rest = (
            proptest::option::of(vec(any::<(u16, u16)>(), 0..6)),
            proptest::option::of(text(0, 64)),
            proptest::option::of(ae_title()),
            proptest::option::of(ae_title()),
            any::<Option<u16>>(),
            any::<[Option<u16>; 4]>(),
        );
        (ids, rest).prop_map(
            |(
                (
                    field,
                    message_id,
                    message_id_responded_to,
                    affected_class,
                    requested_class,
                    affected_instance,
                    requested_instance,
                    priority,
                    has_data_set,
                    status,
                ),
                (offending_element, error_comment, move_destination, move_originator_ae_title, move_originator_message_id, counts),
            )| Command {
                field,
                message_id,
                message_id_responded_to,
                affected_sop_class_uid: affected_class,
                requested_sop_class_uid: requested_class,
                affected_sop_instance_uid: affected_instance,
                requested_sop_instance_uid: requested_instance,
                priority,
                has_data_set,
                status,
                offending_element,
                error_comment,
                move_destination,
                move_originator_ae_title,
                move_originator_message_id,
                remaining_suboperations: counts[0],
                completed_suboperations: counts[1],
                failed_suboperations: counts[2],
                warning_suboperations: counts[3],
            },
        )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(command in command()) {
            let bytes = command.encode();
            prop_assert_eq!(bytes.len() % 2, 0);
            prop_assert_eq!(&bytes[8..12], &((bytes.len() - 12) as u32).to_le_bytes()[..]);
            prop_assert_eq!(Command::decode(&bytes).expect("round trip"), command);
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
            let _ = Command::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_damaged_commands(
            command in command(),
            damage in vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = command.encode();
            for (at, byte) in damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let keep = cut.index(bytes.len() + 1);
            let _ = Command::decode(&bytes[..keep]);
            let _ = Command::decode(&bytes);
        }
    }
}
