//! Helpers of the examples in this folder (see `embed_archive.rs`).

/// A tiny valid DICOM Part 10 object (Explicit VR Little Endian, no pixel data), so the
/// examples run without any file at hand.
pub fn tiny_object() -> Vec<u8> {
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    let mut element = |group: u16, elem: u16, vr: &[u8; 2], value: &[u8]| {
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    };
    element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
    element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
    element(0x0008, 0x0018, b"UI", b"1.2.826.0.1.3680043.10.543.99.1");
    element(0x0008, 0x0060, b"CS", b"OT");
    element(0x0010, 0x0010, b"PN", b"DOE^JANE");
    element(0x0010, 0x0020, b"LO", b"EX001 ");
    element(0x0020, 0x000D, b"UI", b"1.2.826.0.1.3680043.10.543.99.2");
    element(0x0020, 0x000E, b"UI", b"1.2.826.0.1.3680043.10.543.99.3");
    out
}
