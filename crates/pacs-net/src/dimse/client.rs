//! The client side (SCU) of the DIMSE services.

use dicom_ul::ClientAssociationOptions;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

use super::command::{Command, CommandField, VERIFICATION_SOP_CLASS_UID};
use crate::error::{Error, Result};

/// Sends a C-ECHO from `calling` to `called` at `address` (`host:port`) and returns the status
/// of the response; the association is released afterwards.
pub async fn echo(calling: &str, called: &str, address: &str) -> Result<u16> {
    let peer = format!("{called}@{address}");
    let association = |source| Error::Association { peer: peer.clone(), source: Box::new(source) };
    let mut ul = ClientAssociationOptions::new()
        .calling_ae_title(calling.to_owned())
        .called_ae_title(called.to_owned())
        .with_abstract_syntax(VERIFICATION_SOP_CLASS_UID)
        .establish_async(address)
        .await
        .map_err(association)?;
    let context = ul
        .presentation_contexts()
        .first()
        .map(|pc| pc.id)
        .ok_or_else(|| Error::Malformed { reason: format!("{peer} accepted no presentation context for Verification") })?;
    let request = PDataValue { presentation_context_id: context, value_type: PDataValueType::Command, is_last: true, data: Command::c_echo_rq(1).encode() };
    AsyncAssociation::send(&mut ul, &Pdu::PData { data: vec![request] }).await.map_err(association)?;
    let mut bytes = Vec::new();
    let response = loop {
        match AsyncAssociation::receive(&mut ul).await.map_err(association)? {
            Pdu::PData { data } => {
                let mut done = None;
                for value in data {
                    bytes.extend_from_slice(&value.data);
                    if value.is_last {
                        done = Some(Command::decode(&bytes)?);
                    }
                }
                if let Some(command) = done {
                    break command;
                }
            }
            other => return Err(Error::Malformed { reason: format!("{} where a C-ECHO-RSP was expected", other.short_description()) }),
        }
    };
    let _ = ul.release().await;
    if response.field != CommandField::CEchoRsp {
        return Err(Error::Malformed { reason: format!("{:?} where a C-ECHO-RSP was expected", response.field) });
    }
    Ok(response.status.unwrap_or(super::command::status::PROCESSING_FAILURE))
}
