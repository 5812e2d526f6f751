//! The File Meta Information written in front of a data set received over the network, so that
//! every stored object is a complete Part 10 file: the data set bytes follow exactly as received.

/// Implementation Class UID of this archive (under the UID root of its project).
pub const IMPLEMENTATION_CLASS_UID: &str = "1.2.826.0.1.3680043.10.543.1";
/// Implementation Version Name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("PACS_RS_", env!("CARGO_PKG_VERSION"));

fn push_element(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8], padding: u8) {
    let odd = value.len() % 2 == 1;
    let len = value.len() + usize::from(odd);
    out.extend_from_slice(&0x0002u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    if vr == b"OB" {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
    if odd {
        out.push(padding);
    }
}

/// The 128-byte preamble, `DICM` and the File Meta Information group for a data set of
/// `sop_class` / `sop_instance` encoded in `transfer_syntax`, received from `source_ae`.
pub fn part10_header(sop_class: &str, sop_instance: &str, transfer_syntax: &str, source_ae: &str) -> Vec<u8> {
    let mut group = Vec::with_capacity(256);
    push_element(&mut group, 0x0001, b"OB", &[0, 1], 0);
    push_element(&mut group, 0x0002, b"UI", sop_class.as_bytes(), 0);
    push_element(&mut group, 0x0003, b"UI", sop_instance.as_bytes(), 0);
    push_element(&mut group, 0x0010, b"UI", transfer_syntax.as_bytes(), 0);
    push_element(&mut group, 0x0012, b"UI", IMPLEMENTATION_CLASS_UID.as_bytes(), 0);
    push_element(&mut group, 0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.as_bytes(), b' ');
    if !source_ae.is_empty() {
        push_element(&mut group, 0x0016, b"AE", source_ae.trim().as_bytes(), b' ');
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    push_element(&mut out, 0x0000, b"UL", &(group.len() as u32).to_le_bytes(), 0);
    out.extend_from_slice(&group);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacs_core::scan::{ScanLimits, scan};

    #[test]
    fn header_is_read_back_by_the_scanner() {
        let mut bytes = part10_header("1.2.840.10008.5.1.4.1.1.7", "1.2.3.45", "1.2.840.10008.1.2", "MODALITY");
        // An implicit VR data set with one element, as a C-STORE would carry.
        bytes.extend_from_slice(&[0x08, 0x00, 0x18, 0x00, 8, 0, 0, 0]);
        bytes.extend_from_slice(b"1.2.3.45");
        let scanned = scan(&mut &bytes[..], &|_| true, ScanLimits::default()).expect("scan");
        assert_eq!(scanned.transfer_syntax, "1.2.840.10008.1.2");
        assert_eq!(scanned.media_sop_class, "1.2.840.10008.5.1.4.1.1.7");
        assert_eq!(scanned.media_sop_instance, "1.2.3.45");
        assert_eq!(scanned.elements[&(0x0008, 0x0018)].bytes, b"1.2.3.45");
        assert!(IMPLEMENTATION_VERSION_NAME.len() <= 16);
    }
}
