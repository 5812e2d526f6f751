//! DIMSE: the DICOM message service over dicom-ul associations.
//!
//! - [`client`]: the SCU side: C-ECHO, C-STORE of files, C-FIND, C-GET, C-MOVE and `pull`.
//! - [`command`]: command sets (always Implicit VR Little Endian) and statuses.
//! - [`find`]: C-FIND identifiers to queries, and result rows to response identifiers.
//! - [`meta`]: the File Meta Information put in front of a received data set.
//! - [`retrieve`]: the storage sub-operations of C-GET and C-MOVE, converted when the peer
//!   did not accept the stored syntax.
//! - [`server`]: the SCP, one tokio task per association.

pub mod client;
pub mod command;
pub mod find;
pub mod meta;
pub mod retrieve;
pub mod server;
mod storage;

pub use server::{DimseServer, Event, ServerConfig};

/// The largest data fragment for a peer that takes PDUs of at most `max_pdu` bytes (0: no limit,
/// then 64 KiB): a P-DATA-TF spends 6 bytes on its PDU header and 6 on the PDV header.
pub(crate) fn fragment_size(max_pdu: u32) -> usize {
    if max_pdu == 0 { 64 * 1024 } else { (max_pdu as usize).saturating_sub(12).max(1024) }
}

/// Appends to `out` the encoding of `data` as P-DATA-TF PDUs of one fragment each, at most
/// `fragment` bytes, PDVs of a command set or of a data set; the last fragment is marked last
/// when `last` (a data set may continue in later calls). Encoding several PDUs into one buffer
/// lets them go out in one system call; PS3.8 9.3.5 and E.2 give the layout.
pub(crate) fn encode_pdus(out: &mut Vec<u8>, context: u8, command: bool, data: &[u8], fragment: usize, last: bool) {
    let count = data.len().div_ceil(fragment).max(1);
    let mut pieces = data.chunks(fragment);
    for i in 0..count {
        let piece = pieces.next().unwrap_or(&[]);
        let item_length = 2 + piece.len() as u32;
        out.reserve(12 + piece.len());
        out.extend_from_slice(&[0x04, 0x00]);
        out.extend_from_slice(&(4 + item_length).to_be_bytes());
        out.extend_from_slice(&item_length.to_be_bytes());
        out.push(context);
        out.push(u8::from(command) | if last && i + 1 == count { 0x02 } else { 0x00 });
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::{PDataValueType, Pdu};

    #[test]
    fn encoded_pdus_are_what_dicom_ul_reads() {
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        encode_pdus(&mut out, 5, false, &data, 1024, true);
        encode_pdus(&mut out, 5, true, b"cmd", 1024, true);
        let mut buf: &[u8] = &out;
        let mut values = Vec::new();
        while !buf.is_empty() {
            match dicom_ul::pdu::read_pdu(&mut buf, 1 << 20, true).expect("a PDU") {
                Some(Pdu::PData { data }) => values.extend(data),
                other => panic!("{other:?}"),
            }
        }
        let summary: Vec<(u8, bool, bool, usize)> =
            values.iter().map(|v| (v.presentation_context_id, v.value_type == PDataValueType::Command, v.is_last, v.data.len())).collect();
        assert_eq!(summary, [(5, false, false, 1024), (5, false, false, 1024), (5, false, true, 452), (5, true, true, 3)]);
        let joined: Vec<u8> = values[..3].iter().flat_map(|v| v.data.clone()).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn fragments_fit_the_peer_maximum() {
        assert_eq!(fragment_size(16384), 16372);
        assert_eq!(fragment_size(0), 64 * 1024);
        assert_eq!(fragment_size(100), 1024, "a tiny maximum still leaves 1 KiB fragments");
    }
}
