//! A streaming scanner of DICOM Part 10 objects.
//!
//! [`scan`] reads an object once, front to back, from any [`Read`]: it parses the File Meta
//! Information, walks the data set (nested sequences included, without keeping them), keeps the
//! raw bytes of the few top-level elements asked for, and records where Pixel Data and each of its
//! fragments start. It never holds more than one small element value at a time, so a 2 GB
//! multi-frame object is scanned in constant memory; the caller tees the same bytes to storage.
//!
//! Values are kept raw (undecoded) so that text can be decoded with the object's own Specific
//! Character Set by [`crate::charset`], including the ISO 2022 code extensions that generic
//! parsers lack.
//!
//! The scanner is deliberately not a general DICOM parser: dicom-rs does that well, but it loads
//! the whole object (pixel data included) and does not report byte offsets, which frame-level
//! retrieval needs.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::extract::Rejection;

/// A DICOM tag as `(group, element)`.
pub type Tag = (u16, u16);

/// Pixel Data (7FE0,0010).
pub const PIXEL_DATA: Tag = (0x7FE0, 0x0010);
const ITEM: Tag = (0xFFFE, 0xE000);
const ITEM_END: Tag = (0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = (0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Implicit VR Little Endian.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Deflated Explicit VR Little Endian.
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// Explicit VR Big Endian (retired).
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

/// Limits that keep a hostile object from costing memory or stack.
#[derive(Clone, Copy, Debug)]
pub struct ScanLimits {
    /// Values of wanted elements longer than this are not kept (the element is skipped).
    pub max_value_len: u32,
    /// Deepest sequence nesting accepted.
    pub max_depth: usize,
    /// Largest Basic Offset Table kept, in bytes.
    pub max_offset_table: u32,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits { max_value_len: 64 * 1024, max_depth: 64, max_offset_table: 4 * 1024 * 1024 }
    }
}

/// The raw value of one element, as found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawElement {
    /// The VR as written (explicit VR) or `None` (implicit VR).
    pub vr: Option<[u8; 2]>,
    /// The value bytes, undecoded.
    pub bytes: Vec<u8>,
}

/// Where the pixel data sits in the object, for frame-level reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PixelLayout {
    /// No Pixel Data, or offsets are not meaningful (deflated data set).
    #[default]
    Unknown,
    /// Native pixel data: the value starts at `offset` and is `length` bytes long.
    Native {
        /// Offset of the first value byte in the object.
        offset: u64,
        /// Length of the value.
        length: u64,
    },
    /// Encapsulated pixel data: fragments as `(offset of value, length)` and the Basic Offset
    /// Table (offsets of the first item of each frame, relative to the first fragment's item tag).
    Encapsulated {
        /// Every fragment after the Basic Offset Table item.
        fragments: Vec<(u64, u32)>,
        /// The Basic Offset Table; empty when the encoder left it empty.
        offset_table: Vec<u32>,
    },
}

/// What [`scan`] found.
#[derive(Clone, Debug, Default)]
pub struct ScannedObject {
    /// Transfer Syntax UID (0002,0010), trimmed.
    pub transfer_syntax: String,
    /// Media Storage SOP Class UID (0002,0002), trimmed.
    pub media_sop_class: String,
    /// Media Storage SOP Instance UID (0002,0003), trimmed.
    pub media_sop_instance: String,
    /// The wanted top-level elements found, by tag.
    pub elements: BTreeMap<Tag, RawElement>,
    /// Whether the data set is big endian (values of binary VRs must be swapped).
    pub big_endian: bool,
    /// Where the pixel data is.
    pub pixel: PixelLayout,
}

/// An error of the scanner: either the object is unacceptable, or reading the source failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The object is not acceptable; the reason says why.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Reading the source failed (the source, not the object, is at fault).
    #[error("reading the object failed: {0}")]
    Io(#[source] io::Error),
}

struct Counting<'a> {
    inner: &'a mut dyn Read,
    pos: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct Walker<'a, 'w> {
    src: Counting<'a>,
    explicit: bool,
    big_endian: bool,
    wanted: &'w dyn Fn(Tag) -> bool,
    limits: ScanLimits,
    out: ScannedObject,
    scratch: Vec<u8>,
}

/// Scans a DICOM Part 10 object (128-byte preamble, `DICM`, File Meta Information, data set)
/// from `source` to its end, keeping the top-level elements for which `wanted` is true.
///
/// A source that starts directly with `DICM` (no preamble) is accepted too. Anything else, a
/// truncated object or a malformed element is a [`Rejection`] naming the byte offset.
pub fn scan(source: &mut dyn Read, wanted: &dyn Fn(Tag) -> bool, limits: ScanLimits) -> Result<ScannedObject, ScanError> {
    let mut walker = Walker {
        src: Counting { inner: source, pos: 0 },
        explicit: true,
        big_endian: false,
        wanted,
        limits,
        out: ScannedObject::default(),
        scratch: Vec::new(),
    };
    let first = walker.meta()?;
    let ts = walker.out.transfer_syntax.clone();
    match ts.as_str() {
        IMPLICIT_VR_LE => walker.explicit = false,
        EXPLICIT_VR_BE => walker.big_endian = true,
        _ => {}
    }
    walker.out.big_endian = walker.big_endian;
    if ts == DEFLATED_EXPLICIT_VR_LE {
        let Walker { src, wanted, limits, out, .. } = walker;
        // The first four bytes of the deflated stream were read while looking for the end of
        // the file meta: put them back in front.
        let head = first.unwrap_or_default();
        let head = &head[..if first.is_some() { 4 } else { 0 }];
        let mut inflater = flate2::read::DeflateDecoder::new(head.chain(src.inner));
        let mut inner = Walker { src: Counting { inner: &mut inflater, pos: 0 }, explicit: true, big_endian: false, wanted, limits, out, scratch: Vec::new() };
        inner.dataset(0, None, None)?;
        // Offsets inside the inflated stream do not address the stored bytes.
        inner.out.pixel = PixelLayout::Unknown;
        let out = inner.out;
        // Whatever follows the deflate stream is read too, so that a tee sees the whole object.
        let mut rest = inflater.into_inner().into_inner().1;
        io::copy(&mut rest, &mut io::sink()).map_err(ScanError::Io)?;
        return Ok(out);
    }
    walker.dataset(0, None, first)?;
    Ok(walker.out)
}

impl Walker<'_, '_> {
    fn fail<T>(&self, what: impl Into<String>) -> Result<T, ScanError> {
        Err(Rejection::Malformed { offset: self.src.pos, what: what.into() }.into())
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of stream before any byte.
    fn read_or_end(&mut self, buf: &mut [u8]) -> Result<bool, ScanError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.src.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(Rejection::Truncated { offset: self.src.pos, what: "element header".into() }.into()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(true)
    }

    fn io(&self, e: io::Error) -> ScanError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => Rejection::Truncated { offset: self.src.pos, what: "value".into() }.into(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
                Rejection::Malformed { offset: self.src.pos, what: format!("undecodable data: {e}") }.into()
            }
            _ => ScanError::Io(e),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), ScanError> {
        if self.read_or_end(buf)? { Ok(()) } else { Err(Rejection::Truncated { offset: self.src.pos, what: what.into() }.into()) }
    }

    fn skip(&mut self, mut n: u64) -> Result<(), ScanError> {
        if self.scratch.len() < 64 * 1024 {
            self.scratch.resize(64 * 1024, 0);
        }
        while n > 0 {
            let want = n.min(self.scratch.len() as u64) as usize;
            match self.src.read(&mut self.scratch[..want]) {
                Ok(0) => return Err(Rejection::Truncated { offset: self.src.pos, what: format!("{n} bytes of value missing") }.into()),
                Ok(k) => n -= k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    }

    fn tag_of(&self, b: [u8; 4]) -> Tag {
        (self.u16([b[0], b[1]]), self.u16([b[2], b[3]]))
    }

    /// Preamble and File Meta Information. Returns the first data set tag if it was read while
    /// looking for the end of group 0002.
    fn meta(&mut self) -> Result<Option<[u8; 4]>, ScanError> {
        let mut head = [0u8; 4];
        if !self.read_or_end(&mut head)? {
            return Err(Rejection::NotDicom("empty input".into()).into());
        }
        if &head != b"DICM" {
            let mut rest = [0u8; 128];
            let got = read_up_to(&mut self.src, &mut rest).map_err(ScanError::Io)?;
            if got < 128 || &rest[124..128] != b"DICM" {
                return Err(Rejection::NotDicom("no DICM prefix at byte 128 (not a DICOM Part 10 file)".into()).into());
            }
        }
        loop {
            let mut tag_bytes = [0u8; 4];
            if !self.read_or_end(&mut tag_bytes)? {
                break;
            }
            let tag = (u16::from_le_bytes([tag_bytes[0], tag_bytes[1]]), u16::from_le_bytes([tag_bytes[2], tag_bytes[3]]));
            if tag.0 != 0x0002 {
                if self.out.transfer_syntax.is_empty() {
                    return Err(Rejection::NotDicom("File Meta Information has no Transfer Syntax UID (0002,0010)".into()).into());
                }
                return Ok(Some(tag_bytes));
            }
            let (_vr, len) = self.explicit_header()?;
            if len == UNDEFINED || len > self.limits.max_value_len {
                return self.fail(format!("file meta element ({:04X},{:04X}) has length {len:#x}", tag.0, tag.1));
            }
            let mut value = vec![0u8; len as usize];
            self.read_exact(&mut value, "file meta value")?;
            let text = || String::from_utf8_lossy(&value).trim_end_matches(['\0', ' ']).trim().to_owned();
            match tag.1 {
                0x0002 => self.out.media_sop_class = text(),
                0x0003 => self.out.media_sop_instance = text(),
                0x0010 => self.out.transfer_syntax = text(),
                _ => {}
            }
        }
        if self.out.transfer_syntax.is_empty() {
            return Err(Rejection::NotDicom("File Meta Information has no Transfer Syntax UID (0002,0010)".into()).into());
        }
        Ok(None)
    }

    /// VR and length of an explicit VR element whose tag was just read.
    fn explicit_header(&mut self) -> Result<([u8; 2], u32), ScanError> {
        let mut vr = [0u8; 2];
        self.read_exact(&mut vr, "VR")?;
        Ok((vr, self.explicit_length(vr)?))
    }

    /// The length of an explicit VR element whose VR was just read.
    fn explicit_length(&mut self, vr: [u8; 2]) -> Result<u32, ScanError> {
        if !vr.iter().all(u8::is_ascii_uppercase) {
            return self.fail(format!("invalid VR bytes {:02X} {:02X}", vr[0], vr[1]));
        }
        let long = matches!(&vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV");
        if long {
            let mut b = [0u8; 6];
            self.read_exact(&mut b, "element length")?;
            Ok(self.u32([b[2], b[3], b[4], b[5]]))
        } else {
            let mut b = [0u8; 2];
            self.read_exact(&mut b, "element length")?;
            Ok(u32::from(self.u16(b)))
        }
    }

    /// Walks elements until the end of the stream (depth 0), the end of a defined-length item
    /// (`end`), or an item delimiter.
    fn dataset(&mut self, depth: usize, end: Option<u64>, mut first: Option<[u8; 4]>) -> Result<(), ScanError> {
        let mut probe = depth == 0;
        loop {
            if let Some(end) = end
                && self.src.pos >= end
            {
                if self.src.pos > end {
                    return self.fail("element overruns its item");
                }
                return Ok(());
            }
            let tag_bytes = match first.take() {
                Some(b) => b,
                None => {
                    let mut b = [0u8; 4];
                    let got = self.read_or_end(&mut b)?;
                    if !got {
                        if depth == 0 {
                            return Ok(());
                        }
                        return Err(Rejection::Truncated { offset: self.src.pos, what: "sequence item".into() }.into());
                    }
                    b
                }
            };
            let tag = self.tag_of(tag_bytes);
            if tag.0 == 0xFFFE {
                let mut b = [0u8; 4];
                self.read_exact(&mut b, "delimiter length")?;
                match tag {
                    ITEM_END if depth > 0 && end.is_none() => return Ok(()),
                    ITEM_END | SEQUENCE_END if depth == 0 => continue, // stray delimiter: tolerated
                    _ => return self.fail(format!("unexpected ({:04X},{:04X}) inside a data set", tag.0, tag.1)),
                }
            }
            let (vr, len) = if self.explicit {
                let mut vr = [0u8; 2];
                self.read_exact(&mut vr, "VR")?;
                if probe && !vr.iter().all(u8::is_ascii_uppercase) && !self.big_endian {
                    // Some writers label an implicit VR data set as explicit (pydicom and
                    // others read it anyway): the two bytes begin a 4-byte implicit length.
                    self.explicit = false;
                    let mut rest = [0u8; 2];
                    self.read_exact(&mut rest, "element length")?;
                    (None, self.u32([vr[0], vr[1], rest[0], rest[1]]))
                } else {
                    (Some(vr), self.explicit_length(vr)?)
                }
            } else {
                let mut b = [0u8; 4];
                self.read_exact(&mut b, "element length")?;
                (None, self.u32(b))
            };
            probe = false;
            if depth == 0 && tag == PIXEL_DATA {
                self.pixel_data(len)?;
                continue;
            }
            if len == UNDEFINED {
                let implicit_items = !self.explicit || vr == Some(*b"UN");
                match vr {
                    Some(v) if &v != b"SQ" && &v != b"UN" => self.fragments(false)?,
                    _ => self.sequence(depth + 1, implicit_items)?,
                }
                continue;
            }
            if depth == 0 && (self.wanted)(tag) && len <= self.limits.max_value_len && vr != Some(*b"SQ") {
                let mut bytes = vec![0u8; len as usize];
                self.read_exact(&mut bytes, "element value")?;
                self.out.elements.insert(tag, RawElement { vr, bytes });
            } else {
                self.skip(u64::from(len))?;
            }
        }
    }

    /// Items of an undefined-length sequence, up to its delimiter. `implicit` is set for
    /// sequences of VR UN, whose content is Implicit VR Little Endian (PS3.5 6.2.2).
    fn sequence(&mut self, depth: usize, implicit: bool) -> Result<(), ScanError> {
        if depth > self.limits.max_depth {
            return self.fail(format!("sequences nested deeper than {}", self.limits.max_depth));
        }
        let saved = (self.explicit, self.big_endian);
        if implicit {
            self.explicit = false;
        }
        let result = (|| loop {
            let mut b = [0u8; 8];
            self.read_exact(&mut b, "sequence item")?;
            let tag = self.tag_of([b[0], b[1], b[2], b[3]]);
            let len = self.u32([b[4], b[5], b[6], b[7]]);
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if len == UNDEFINED => self.dataset(depth, None, None)?,
                ITEM => self.skip(u64::from(len))?,
                _ => return self.fail(format!("expected an item in a sequence, found ({:04X},{:04X})", tag.0, tag.1)),
            }
        })();
        (self.explicit, self.big_endian) = saved;
        result
    }

    fn pixel_data(&mut self, len: u32) -> Result<(), ScanError> {
        if len != UNDEFINED {
            self.out.pixel = PixelLayout::Native { offset: self.src.pos, length: u64::from(len) };
            return self.skip(u64::from(len));
        }
        self.fragments(true)
    }

    /// Items of encapsulated data up to the sequence delimiter; recorded when `record`.
    fn fragments(&mut self, record: bool) -> Result<(), ScanError> {
        let mut fragments = Vec::new();
        let mut offset_table = Vec::new();
        let mut first = true;
        loop {
            let mut b = [0u8; 8];
            self.read_exact(&mut b, "pixel data item")?;
            let tag = self.tag_of([b[0], b[1], b[2], b[3]]);
            let len = self.u32([b[4], b[5], b[6], b[7]]);
            match tag {
                SEQUENCE_END => break,
                ITEM if len == UNDEFINED => return self.fail("pixel data fragment of undefined length"),
                ITEM if first && record && len <= self.limits.max_offset_table && len.is_multiple_of(4) => {
                    let mut table = vec![0u8; len as usize];
                    self.read_exact(&mut table, "basic offset table")?;
                    offset_table = table.chunks_exact(4).map(|c| self.u32([c[0], c[1], c[2], c[3]])).collect();
                }
                ITEM if first => self.skip(u64::from(len))?,
                ITEM => {
                    fragments.push((self.src.pos, len));
                    self.skip(u64::from(len))?;
                }
                _ => return self.fail(format!("expected a pixel data item, found ({:04X},{:04X})", tag.0, tag.1)),
            }
            first = false;
        }
        if record {
            self.out.pixel = PixelLayout::Encapsulated { fragments, offset_table };
        }
        Ok(())
    }
}

/// The offset of the data set in a Part 10 object, from its first bytes (preamble and File Meta
/// Information, which is always explicit VR little endian): what follows is the data set exactly
/// as it would travel in a C-STORE. `None` if `head` is not a Part 10 header or is too short.
pub fn data_set_offset(head: &[u8]) -> Option<u64> {
    file_meta(head).map(|m| m.data_set_offset)
}

/// The File Meta Information of a Part 10 object: what a sender needs before it opens an
/// association (which SOP class in which transfer syntax) and where the data set starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileMeta {
    /// Media Storage SOP Class UID (0002,0002), trimmed.
    pub sop_class: String,
    /// Media Storage SOP Instance UID (0002,0003), trimmed.
    pub sop_instance: String,
    /// Transfer Syntax UID (0002,0010), trimmed.
    pub transfer_syntax: String,
    /// Offset of the data set: the bytes a C-STORE sends start here.
    pub data_set_offset: u64,
}

/// Reads the File Meta Information from the first bytes of a Part 10 object (with or without
/// the 128-byte preamble). `None` if `head` is not a Part 10 header or ends inside it.
pub fn file_meta(head: &[u8]) -> Option<FileMeta> {
    let mut at = if head.get(128..132) == Some(b"DICM") {
        132
    } else if head.get(..4) == Some(b"DICM") {
        4
    } else {
        return None;
    };
    let mut meta = FileMeta::default();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim_matches([' ', '\0']).to_owned();
    loop {
        let group = u16::from_le_bytes(head.get(at..at + 2)?.try_into().ok()?);
        if group != 0x0002 {
            meta.data_set_offset = at as u64;
            return Some(meta);
        }
        let element = u16::from_le_bytes(head.get(at + 2..at + 4)?.try_into().ok()?);
        let vr = head.get(at + 4..at + 6)?;
        let (header, len) = if matches!(vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV") {
            (12, u32::from_le_bytes(head.get(at + 8..at + 12)?.try_into().ok()?) as usize)
        } else {
            (8, usize::from(u16::from_le_bytes(head.get(at + 6..at + 8)?.try_into().ok()?)))
        };
        let value = at.checked_add(header)?;
        let end = value.checked_add(len)?;
        match element {
            0x0002 => meta.sop_class = text(head.get(value..end)?),
            0x0003 => meta.sop_instance = text(head.get(value..end)?),
            0x0010 => meta.transfer_syntax = text(head.get(value..end)?),
            _ => {}
        }
        at = end;
    }
}

fn read_up_to(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a small Part 10 object by hand: explicit VR little endian unless `ts` says otherwise.
    pub(crate) struct Builder {
        pub bytes: Vec<u8>,
        big_endian: bool,
        explicit: bool,
    }

    impl Builder {
        pub fn new(ts: &str) -> Builder {
            let mut bytes = vec![0u8; 128];
            bytes.extend_from_slice(b"DICM");
            let mut b = Builder { bytes, big_endian: false, explicit: true };
            let mut ts_value = ts.as_bytes().to_vec();
            if ts_value.len() % 2 == 1 {
                ts_value.push(0);
            }
            b.element((0x0002, 0x0010), b"UI", &ts_value);
            b.big_endian = ts == EXPLICIT_VR_BE;
            b.explicit = ts != IMPLICIT_VR_LE;
            b
        }

        fn u16(&mut self, v: u16) {
            let b = if self.big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
            self.bytes.extend_from_slice(&b);
        }

        fn u32(&mut self, v: u32) {
            let b = if self.big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
            self.bytes.extend_from_slice(&b);
        }

        pub fn header(&mut self, tag: Tag, vr: &[u8; 2], len: u32) -> &mut Self {
            self.u16(tag.0);
            self.u16(tag.1);
            if self.explicit || tag.0 == 0x0002 {
                self.bytes.extend_from_slice(vr);
                if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
                    self.bytes.extend_from_slice(&[0, 0]);
                    self.u32(len);
                } else {
                    self.u16(len as u16);
                }
            } else {
                self.u32(len);
            }
            self
        }

        pub fn element(&mut self, tag: Tag, vr: &[u8; 2], value: &[u8]) -> &mut Self {
            self.header(tag, vr, value.len() as u32);
            self.bytes.extend_from_slice(value);
            self
        }

        pub fn item(&mut self, tag: Tag, len: u32) -> &mut Self {
            self.u16(tag.0);
            self.u16(tag.1);
            self.u32(len);
            self
        }
    }

    fn all(_: Tag) -> bool {
        true
    }

    fn run(bytes: &[u8]) -> Result<ScannedObject, ScanError> {
        scan(&mut &bytes[..], &all, ScanLimits::default())
    }

    #[test]
    fn explicit_little_endian_with_sequence_and_native_pixels() {
        let mut b = Builder::new(EXPLICIT_VR_LE);
        b.element((0x0008, 0x0018), b"UI", b"1.2.3\0");
        // An undefined-length sequence with one undefined-length item holding a nested element.
        b.header((0x0008, 0x1140), b"SQ", UNDEFINED).item(ITEM, UNDEFINED);
        b.element((0x0008, 0x1155), b"UI", b"9.9\0");
        b.item(ITEM_END, 0).item(SEQUENCE_END, 0);
        b.element((0x0010, 0x0010), b"PN", b"DOE^JOHN");
        b.header(PIXEL_DATA, b"OW", 8);
        let pixel_offset = b.bytes.len() as u64;
        b.bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let out = run(&b.bytes).expect("scan");
        assert_eq!(out.transfer_syntax, EXPLICIT_VR_LE);
        assert_eq!(out.elements[&(0x0010, 0x0010)].bytes, b"DOE^JOHN");
        assert!(!out.elements.contains_key(&(0x0008, 0x1155)), "nested elements are not top level");
        assert_eq!(out.pixel, PixelLayout::Native { offset: pixel_offset, length: 8 });
    }

    #[test]
    fn data_set_offsets() {
        let mut b = Builder::new(EXPLICIT_VR_LE);
        let offset = b.bytes.len() as u64;
        b.element((0x0008, 0x0018), b"UI", b"1.2.3\0");
        assert_eq!(data_set_offset(&b.bytes), Some(offset));
        assert_eq!(data_set_offset(&b.bytes[..offset as usize - 1]), None);
        assert_eq!(data_set_offset(b"not dicom at all"), None);
    }

    #[test]
    fn implicit_and_big_endian() {
        for ts in [IMPLICIT_VR_LE, EXPLICIT_VR_BE] {
            let mut b = Builder::new(ts);
            b.element((0x0028, 0x0010), b"US", &if ts == EXPLICIT_VR_BE { 512u16.to_be_bytes() } else { 512u16.to_le_bytes() });
            b.header((0x0040, 0x0275), b"SQ", UNDEFINED).item(ITEM, 6);
            b.bytes.extend_from_slice(&[0; 6]);
            b.item(SEQUENCE_END, 0);
            b.element((0x0010, 0x0020), b"LO", b"ID1 ");
            let out = run(&b.bytes).expect(ts);
            assert_eq!(out.elements[&(0x0010, 0x0020)].bytes, b"ID1 ", "{ts}");
            assert_eq!(out.big_endian, ts == EXPLICIT_VR_BE);
        }
    }

    #[test]
    fn encapsulated_fragments_are_recorded() {
        let mut b = Builder::new("1.2.840.10008.1.2.4.50");
        b.header(PIXEL_DATA, b"OB", UNDEFINED);
        b.item(ITEM, 8);
        b.bytes.extend_from_slice(&[0, 0, 0, 0, 12, 0, 0, 0]);
        b.item(ITEM, 4);
        let first = b.bytes.len() as u64;
        b.bytes.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xD9]);
        b.item(ITEM, 2);
        let second = b.bytes.len() as u64;
        b.bytes.extend_from_slice(&[1, 2]);
        b.item(SEQUENCE_END, 0);
        let out = run(&b.bytes).expect("scan");
        assert_eq!(out.pixel, PixelLayout::Encapsulated { fragments: vec![(first, 4), (second, 2)], offset_table: vec![0, 12] });
    }

    #[test]
    fn rejections_name_the_problem() {
        let check = |bytes: &[u8], expected: &str| {
            let err = run(bytes).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        };
        check(b"", "empty input");
        check(b"hello world, not dicom", "not a DICOM Part 10 file");
        let mut b = Builder::new(EXPLICIT_VR_LE);
        b.header((0x0010, 0x0010), b"PN", 20);
        b.bytes.extend_from_slice(b"DOE");
        check(&b.bytes, "truncated");
        let mut b = Builder::new(EXPLICIT_VR_LE);
        b.element((0x0008, 0x0016), b"UI", b"1.2\0");
        b.bytes.extend_from_slice(&[0x10, 0, 0x10, 0, b'x', b'1', 0, 0]);
        check(&b.bytes, "invalid VR");
        let mut b = Builder::new(EXPLICIT_VR_LE);
        b.header((0x0008, 0x1140), b"SQ", UNDEFINED).item((0x0010, 0x0010), 0);
        check(&b.bytes, "expected an item");
        let mut deep = Builder::new(IMPLICIT_VR_LE);
        for _ in 0..100 {
            deep.header((0x0008, 0x1140), b"SQ", UNDEFINED).item(ITEM, UNDEFINED);
        }
        let err = scan(&mut &deep.bytes[..], &all, ScanLimits::default()).expect_err("deep");
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }
}
