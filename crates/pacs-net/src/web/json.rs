//! The DICOM JSON model (PS3.18 Annex F) of stored objects.
//!
//! [`parse`] walks a stored Part 10 object from its blob (every element, sequences included) into
//! a [`DataSet`] whose values are still raw bytes: small values are kept, large binary values and
//! Pixel Data only as their position ([`Value::Bulk`]), so that the metadata of a 2 GB object costs
//! no more than its header. [`to_json`] turns that into Annex F: PN as
//! `Alphabetic`/`Ideographic`/`Phonetic` objects, IS/DS and binary numbers as JSON numbers, AT as
//! `GGGGEEEE`, small binary values as `InlineBinary`, bulk values as `BulkDataURI`, and empty
//! values as an element without `Value` (an empty item of a multi-valued element is `null`).
//!
//! Text is decoded with the object's Specific Character Set by [`pacs_core::charset`], which knows
//! the ISO 2022 code extensions. The walker is ours rather than dicom-object's because that one
//! keeps pixel data in memory and knows no byte offsets; it follows the same rules as
//! [`pacs_core::scan`] (implicit and explicit VR, big endian, deflate, undefined lengths, VR UN).

use std::io::{self, Read};

use dicom_core::Tag as DicomTag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use pacs_core::charset::{SpecificCharacterSet, TextKind};
use pacs_core::scan::{DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE};
use serde_json::{Map, Value as Json, json};

/// A DICOM tag as `(group, element)`.
pub type Tag = (u16, u16);

/// Pixel Data (7FE0,0010).
pub const PIXEL_DATA: Tag = (0x7FE0, 0x0010);
const ITEM: Tag = (0xFFFE, 0xE000);
const ITEM_END: Tag = (0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = (0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;
const SPECIFIC_CHARACTER_SET: Tag = (0x0008, 0x0005);
const MAX_DEPTH: usize = 64;
/// Text values longer than this are not kept (they become bulk data).
const MAX_TEXT: u32 = 16 * 1024 * 1024;

/// One element of a parsed data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Element {
    /// The tag.
    pub tag: Tag,
    /// The VR (from the stream, or from the dictionary for implicit VR).
    pub vr: [u8; 2],
    /// The value.
    pub value: Value,
}

/// The value of an element.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// The raw value bytes, in the object's byte order.
    Bytes(Vec<u8>),
    /// The items of a sequence.
    Items(Vec<DataSet>),
    /// A value too large to keep (or Pixel Data), left in the stored object.
    Bulk,
}

/// A parsed data set: its elements in stream order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataSet {
    /// The elements.
    pub elements: Vec<Element>,
}

impl DataSet {
    /// The element with `tag`, if present.
    pub fn get(&self, tag: Tag) -> Option<&Element> {
        self.elements.iter().find(|e| e.tag == tag)
    }
}

/// A parsed object.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// Transfer Syntax UID (0002,0010).
    pub transfer_syntax: String,
    /// Whether binary values are big endian.
    pub big_endian: bool,
    /// The data set (without the File Meta Information).
    pub data_set: DataSet,
}

/// Where a bulk value sits: the (sequence tag, item index) steps to its data set, then its tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BulkPath {
    /// Sequences and item indices (0-based) leading to the element.
    pub steps: Vec<(Tag, usize)>,
    /// The element's tag.
    pub tag: Tag,
}

impl BulkPath {
    /// The path as URL segments: `SSSSSSSS/0/GGGGEEEE` (tags as 8 hexadecimal digits).
    pub fn to_url(&self) -> String {
        let mut out = String::new();
        for (tag, index) in &self.steps {
            out.push_str(&format!("{:04X}{:04X}/{index}/", tag.0, tag.1));
        }
        out.push_str(&format!("{:04X}{:04X}", self.tag.0, self.tag.1));
        out
    }

    /// Parses URL segments written by [`to_url`](Self::to_url).
    pub fn parse(text: &str) -> Option<BulkPath> {
        let segments: Vec<&str> = text.trim_matches('/').split('/').collect();
        if segments.len() % 2 != 1 {
            return None;
        }
        let mut steps = Vec::new();
        for pair in segments[..segments.len() - 1].chunks(2) {
            steps.push((parse_hex_tag(pair[0])?, pair[1].parse().ok()?));
        }
        Some(BulkPath { steps, tag: parse_hex_tag(segments[segments.len() - 1])? })
    }
}

/// Parses a tag written as 8 hexadecimal digits.
pub fn parse_hex_tag(text: &str) -> Option<Tag> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((u16::from_str_radix(&text[..4], 16).ok()?, u16::from_str_radix(&text[4..], 16).ok()?))
}

/// What [`parse`] keeps.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// Binary values longer than this many bytes are not kept ([`Value::Bulk`]).
    pub inline_limit: u32,
    /// Stop at top-level Pixel Data (when nothing follows it in the object).
    pub stop_at_pixel_data: bool,
    /// Keep this element's value whatever its size (for `/bulkdata`).
    pub capture: Option<BulkPath>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { inline_limit: 1024, stop_at_pixel_data: true, capture: None }
    }
}

/// Why an object could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The stored bytes are not what we expect; the reason names the offset.
    #[error("malformed object at byte {offset}: {what}")]
    Malformed {
        /// Offset in the (inflated) stream.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Reading failed.
    #[error("reading the object: {0}")]
    Io(#[from] io::Error),
}

struct Source<'a> {
    inner: &'a mut dyn Read,
    pos: u64,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct Parser<'a, 'o> {
    src: Source<'a>,
    explicit: bool,
    big_endian: bool,
    options: &'o ParseOptions,
    path: Vec<(Tag, usize)>,
    pixel_representation: u16,
}

fn is_long_vr(vr: &[u8; 2]) -> bool {
    matches!(vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV")
}

fn is_binary_vr(vr: &[u8; 2]) -> bool {
    matches!(vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"UN")
}

/// The VR of a tag in the standard dictionary, resolving the context-dependent ones.
fn dictionary_vr(tag: Tag, pixel_representation: u16) -> Option<[u8; 2]> {
    if tag.1 == 0x0000 {
        return Some(*b"UL");
    }
    if tag.0 % 2 == 1 {
        // Private creators are LO; other private elements are unknown.
        return (0x0010..=0x00FF).contains(&tag.1).then_some(*b"LO");
    }
    let entry = dicom_dictionary_std::StandardDataDictionary.by_tag(DicomTag(tag.0, tag.1))?;
    let vr = match entry.vr() {
        VirtualVr::Exact(vr) => vr.to_bytes(),
        VirtualVr::Xs => {
            if pixel_representation == 1 {
                *b"SS"
            } else {
                *b"US"
            }
        }
        VirtualVr::Px | VirtualVr::Ox => *b"OW",
        VirtualVr::Lt => *b"OW",
        _ => *b"UN",
    };
    Some(vr)
}

impl Parser<'_, '_> {
    fn malformed<T>(&self, what: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError::Malformed { offset: self.src.pos, what: what.into() })
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end before any byte.
    fn read_or_end(&mut self, buf: &mut [u8]) -> Result<bool, ParseError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.src.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return self.malformed("truncated"),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ParseError> {
        if self.read_or_end(buf)? { Ok(()) } else { self.malformed("truncated") }
    }

    fn skip(&mut self, n: u64) -> Result<(), ParseError> {
        let copied = io::copy(&mut (&mut self.src).take(n), &mut io::sink())?;
        if copied < n { self.malformed("truncated value") } else { Ok(()) }
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

    fn explicit_length(&mut self, vr: [u8; 2]) -> Result<u32, ParseError> {
        if is_long_vr(&vr) {
            let mut b = [0u8; 6];
            self.read_exact(&mut b)?;
            Ok(self.u32([b[2], b[3], b[4], b[5]]))
        } else {
            let mut b = [0u8; 2];
            self.read_exact(&mut b)?;
            Ok(u32::from(self.u16(b)))
        }
    }

    /// Elements until the end of the stream (depth 0), of a defined-length item, or an item
    /// delimiter.
    fn data_set(&mut self, depth: usize, end: Option<u64>, mut first: Option<[u8; 4]>) -> Result<DataSet, ParseError> {
        let mut out = DataSet::default();
        let mut probe = depth == 0;
        loop {
            if let Some(end) = end
                && self.src.pos >= end
            {
                return Ok(out);
            }
            let tag_bytes = match first.take() {
                Some(b) => b,
                None => {
                    let mut b = [0u8; 4];
                    if !self.read_or_end(&mut b)? {
                        return if depth == 0 { Ok(out) } else { self.malformed("truncated item") };
                    }
                    b
                }
            };
            let tag = self.tag_of(tag_bytes);
            if tag.0 == 0xFFFE {
                let mut b = [0u8; 4];
                self.read_exact(&mut b)?;
                match tag {
                    ITEM_END if depth > 0 && end.is_none() => return Ok(out),
                    ITEM_END | SEQUENCE_END if depth == 0 => continue,
                    _ => return self.malformed(format!("unexpected ({:04X},{:04X}) in a data set", tag.0, tag.1)),
                }
            }
            let (vr, len) = if self.explicit {
                let mut vr = [0u8; 2];
                self.read_exact(&mut vr)?;
                if probe && !vr.iter().all(u8::is_ascii_uppercase) && !self.big_endian {
                    // An implicit VR data set labelled explicit (read anyway, as the scanner does).
                    self.explicit = false;
                    let mut rest = [0u8; 2];
                    self.read_exact(&mut rest)?;
                    (dictionary_vr(tag, self.pixel_representation).unwrap_or(*b"UN"), self.u32([vr[0], vr[1], rest[0], rest[1]]))
                } else {
                    if !vr.iter().all(u8::is_ascii_uppercase) {
                        return self.malformed(format!("invalid VR bytes {:02X} {:02X}", vr[0], vr[1]));
                    }
                    (vr, self.explicit_length(vr)?)
                }
            } else {
                let mut b = [0u8; 4];
                self.read_exact(&mut b)?;
                let vr = if tag == PIXEL_DATA { *b"OW" } else { dictionary_vr(tag, self.pixel_representation).unwrap_or(*b"UN") };
                (vr, self.u32(b))
            };
            probe = false;
            let element = self.element(depth, tag, vr, len)?;
            let stop = element.is_none();
            if let Some(element) = element {
                if tag == (0x0028, 0x0103)
                    && let Value::Bytes(b) = &element.value
                    && b.len() >= 2
                {
                    self.pixel_representation = self.u16([b[0], b[1]]);
                }
                out.elements.push(element);
            }
            if stop {
                out.elements.push(Element { tag, vr, value: Value::Bulk });
                return Ok(out);
            }
        }
    }

    /// One element's value; `None` to stop (top-level Pixel Data when asked to).
    fn element(&mut self, depth: usize, tag: Tag, vr: [u8; 2], len: u32) -> Result<Option<Element>, ParseError> {
        let captured = self.options.capture.as_ref().is_some_and(|c| c.tag == tag && c.steps == self.path);
        if depth == 0 && tag == PIXEL_DATA && !captured {
            if self.options.stop_at_pixel_data {
                return Ok(None);
            }
            if len == UNDEFINED {
                self.fragments()?;
            } else {
                self.skip(u64::from(len))?;
            }
            return Ok(Some(Element { tag, vr, value: Value::Bulk }));
        }
        let implicit_dictionary_sq = !self.explicit && vr == *b"SQ";
        if len == UNDEFINED {
            if vr == *b"SQ" || vr == *b"UN" || !self.explicit {
                let implicit_items = !self.explicit || vr == *b"UN";
                let items = self.sequence(depth, tag, None, implicit_items)?;
                return Ok(Some(Element { tag, vr: *b"SQ", value: Value::Items(items) }));
            }
            // Encapsulated data outside Pixel Data: kept in the object.
            self.fragments()?;
            return Ok(Some(Element { tag, vr, value: Value::Bulk }));
        }
        if vr == *b"SQ" || implicit_dictionary_sq {
            let end = self.src.pos + u64::from(len);
            let items = self.sequence(depth, tag, Some(end), !self.explicit)?;
            if self.src.pos != end {
                return self.malformed("sequence overruns its length");
            }
            return Ok(Some(Element { tag, vr: *b"SQ", value: Value::Items(items) }));
        }
        // A VR UN of a tag the dictionary knows is read as that VR (as pydicom does): its
        // value is Implicit VR Little Endian.
        if vr == *b"UN"
            && let Some(known) = dictionary_vr(tag, self.pixel_representation)
            && known != *b"UN"
            && tag.0.is_multiple_of(2)
        {
            if known == *b"SQ" {
                let saved = (self.explicit, self.big_endian);
                (self.explicit, self.big_endian) = (false, false);
                let end = self.src.pos + u64::from(len);
                let items = self.sequence(depth, tag, Some(end), true);
                (self.explicit, self.big_endian) = saved;
                return Ok(Some(Element { tag, vr: known, value: Value::Items(items?) }));
            }
            let value = self.value(tag, known, len, captured)?;
            return Ok(Some(Element { tag, vr: known, value }));
        }
        let value = self.value(tag, vr, len, captured)?;
        Ok(Some(Element { tag, vr, value }))
    }

    fn value(&mut self, _tag: Tag, vr: [u8; 2], len: u32, captured: bool) -> Result<Value, ParseError> {
        let limit = if is_binary_vr(&vr) { self.options.inline_limit } else { MAX_TEXT };
        if len > limit && !captured {
            self.skip(u64::from(len))?;
            return Ok(Value::Bulk);
        }
        let mut bytes = vec![0u8; len as usize];
        self.read_exact(&mut bytes)?;
        Ok(Value::Bytes(bytes))
    }

    fn sequence(&mut self, depth: usize, tag: Tag, end: Option<u64>, implicit: bool) -> Result<Vec<DataSet>, ParseError> {
        if depth + 1 > MAX_DEPTH {
            return self.malformed(format!("sequences nested deeper than {MAX_DEPTH}"));
        }
        let saved = self.explicit;
        if implicit {
            self.explicit = false;
        }
        let mut items = Vec::new();
        let result = loop {
            if let Some(end) = end
                && self.src.pos >= end
            {
                break Ok(());
            }
            let mut b = [0u8; 8];
            if let Err(e) = self.read_exact(&mut b) {
                break Err(e);
            }
            let item_tag = self.tag_of([b[0], b[1], b[2], b[3]]);
            let len = self.u32([b[4], b[5], b[6], b[7]]);
            match item_tag {
                SEQUENCE_END => break Ok(()),
                ITEM => {
                    self.path.push((tag, items.len()));
                    let item_end = (len != UNDEFINED).then(|| self.src.pos + u64::from(len));
                    let item = self.data_set(depth + 1, item_end, None);
                    self.path.pop();
                    match item {
                        Ok(item) => items.push(item),
                        Err(e) => break Err(e),
                    }
                }
                _ => break self.malformed(format!("expected an item, found ({:04X},{:04X})", item_tag.0, item_tag.1)),
            }
        };
        self.explicit = saved;
        result.map(|()| items)
    }

    fn fragments(&mut self) -> Result<(), ParseError> {
        loop {
            let mut b = [0u8; 8];
            self.read_exact(&mut b)?;
            let tag = self.tag_of([b[0], b[1], b[2], b[3]]);
            let len = self.u32([b[4], b[5], b[6], b[7]]);
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if len != UNDEFINED => self.skip(u64::from(len))?,
                _ => return self.malformed("malformed encapsulated value"),
            }
        }
    }
}

/// Parses a stored Part 10 object (preamble optional) into its data set.
pub fn parse(source: &mut dyn Read, options: &ParseOptions) -> Result<Parsed, ParseError> {
    let mut src = Source { inner: source, pos: 0 };
    let mut head = [0u8; 132];
    let mut filled = 0;
    while filled < 4 {
        let n = src.read(&mut head[filled..4])?;
        if n == 0 {
            return Err(ParseError::Malformed { offset: 0, what: "empty object".into() });
        }
        filled += n;
    }
    if &head[..4] != b"DICM" {
        io::Read::read_exact(&mut src, &mut head[4..132]).map_err(|_| ParseError::Malformed { offset: 4, what: "not a Part 10 object".into() })?;
        if &head[128..132] != b"DICM" {
            return Err(ParseError::Malformed { offset: 128, what: "no DICM prefix".into() });
        }
    }
    let mut transfer_syntax = String::new();
    let first = loop {
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = src.read(&mut b[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            break None;
        }
        if got < 4 {
            return Err(ParseError::Malformed { offset: src.pos, what: "truncated file meta".into() });
        }
        let tag = (u16::from_le_bytes([b[0], b[1]]), u16::from_le_bytes([b[2], b[3]]));
        if tag.0 != 0x0002 {
            break Some(b);
        }
        let mut vr = [0u8; 2];
        io::Read::read_exact(&mut src, &mut vr)?;
        let len = if is_long_vr(&vr) {
            let mut l = [0u8; 6];
            io::Read::read_exact(&mut src, &mut l)?;
            u32::from_le_bytes([l[2], l[3], l[4], l[5]])
        } else {
            let mut l = [0u8; 2];
            io::Read::read_exact(&mut src, &mut l)?;
            u32::from(u16::from_le_bytes(l))
        };
        if len > 64 * 1024 {
            return Err(ParseError::Malformed { offset: src.pos, what: "file meta element too long".into() });
        }
        let mut value = vec![0u8; len as usize];
        io::Read::read_exact(&mut src, &mut value)?;
        if tag.1 == 0x0010 {
            transfer_syntax = String::from_utf8_lossy(&value).trim_end_matches(['\0', ' ']).trim().to_owned();
        }
    };
    let big_endian = transfer_syntax == EXPLICIT_VR_BE;
    let explicit = transfer_syntax != IMPLICIT_VR_LE;
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LE {
        let head: Vec<u8> = first.map(|b| b.to_vec()).unwrap_or_default();
        let mut inflater = flate2::read::DeflateDecoder::new((&head[..]).chain(src));
        let mut parser =
            Parser { src: Source { inner: &mut inflater, pos: 0 }, explicit: true, big_endian: false, options, path: Vec::new(), pixel_representation: 0 };
        let data_set = parser.data_set(0, None, None)?;
        return Ok(Parsed { transfer_syntax, big_endian: false, data_set });
    }
    let mut parser = Parser { src, explicit, big_endian, options, path: Vec::new(), pixel_representation: 0 };
    let data_set = parser.data_set(0, None, first)?;
    Ok(Parsed { transfer_syntax, big_endian, data_set })
}

/// Writes bulk data URIs: `base` + `/bulkdata/` + the element's path.
pub struct JsonOptions<'a> {
    /// The instance's URL (`.../studies/S/series/S/instances/I`), or `None` to write large values
    /// as absent.
    pub instance_url: Option<&'a str>,
    /// Whether the object's binary values are big endian.
    pub big_endian: bool,
}

/// The DICOM JSON (Annex F) object of a data set.
pub fn to_json(data_set: &DataSet, options: &JsonOptions<'_>) -> Json {
    let charset = SpecificCharacterSet::default_repertoire();
    Json::Object(data_set_json(data_set, &charset, options, &mut Vec::new()))
}

fn data_set_json(data_set: &DataSet, inherited: &SpecificCharacterSet, options: &JsonOptions<'_>, path: &mut Vec<(Tag, usize)>) -> Map<String, Json> {
    let own;
    let charset = match data_set.get(SPECIFIC_CHARACTER_SET) {
        Some(Element { value: Value::Bytes(raw), .. }) => {
            own = SpecificCharacterSet::from_raw(raw);
            &own
        }
        _ => inherited,
    };
    let mut out = Map::new();
    for element in &data_set.elements {
        if element.tag.0 == 0x0002 {
            continue;
        }
        let key = format!("{:04X}{:04X}", element.tag.0, element.tag.1);
        out.insert(key, element_json(element, charset, options, path));
    }
    out
}

fn element_json(element: &Element, charset: &SpecificCharacterSet, options: &JsonOptions<'_>, path: &mut Vec<(Tag, usize)>) -> Json {
    let vr = String::from_utf8_lossy(&element.vr).into_owned();
    let mut out = Map::new();
    out.insert("vr".into(), Json::String(vr));
    match &element.value {
        Value::Items(items) => {
            let values: Vec<Json> = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    path.push((element.tag, i));
                    let json = data_set_json(item, charset, options, path);
                    path.pop();
                    Json::Object(json)
                })
                .collect();
            if !values.is_empty() {
                out.insert("Value".into(), Json::Array(values));
            }
        }
        Value::Bulk => {
            if let Some(base) = options.instance_url {
                let bulk = BulkPath { steps: path.clone(), tag: element.tag };
                out.insert("BulkDataURI".into(), Json::String(format!("{base}/bulkdata/{}", bulk.to_url())));
            }
        }
        Value::Bytes(bytes) => {
            if let Some((key, value)) = value_json(&element.vr, bytes, charset, options.big_endian) {
                out.insert(key.into(), value);
            }
        }
    }
    Json::Object(out)
}

fn trim_text(text: &str) -> &str {
    text.trim_end_matches([' ', '\0'])
}

fn number_from_f64(v: f64) -> Json {
    serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)
}

/// The `Value` (or `InlineBinary`) of a non-sequence element; `None` when it is empty.
fn value_json(vr: &[u8; 2], bytes: &[u8], charset: &SpecificCharacterSet, big_endian: bool) -> Option<(&'static str, Json)> {
    if bytes.is_empty() {
        return None;
    }
    macro_rules! numbers {
        ($ty:ty, $n:literal, $conv:expr) => {{
            let values: Vec<Json> = bytes
                .chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    let v = if big_endian { <$ty>::from_be_bytes(a) } else { <$ty>::from_le_bytes(a) };
                    #[allow(clippy::redundant_closure_call)]
                    $conv(v)
                })
                .collect();
            if values.is_empty() { None } else { Some(("Value", Json::Array(values))) }
        }};
    }
    match vr {
        b"SQ" => None,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"UN" => Some(("InlineBinary", Json::String(base64(bytes)))),
        b"US" => numbers!(u16, 2, |v: u16| json!(v)),
        b"SS" => numbers!(i16, 2, |v: i16| json!(v)),
        b"UL" => numbers!(u32, 4, |v: u32| json!(v)),
        b"SL" => numbers!(i32, 4, |v: i32| json!(v)),
        b"UV" => numbers!(u64, 8, |v: u64| json!(v)),
        b"SV" => numbers!(i64, 8, |v: i64| json!(v)),
        b"FL" => numbers!(f32, 4, |v: f32| number_from_f64(f64::from(v))),
        b"FD" => numbers!(f64, 8, number_from_f64),
        b"AT" => {
            let values: Vec<Json> = bytes
                .chunks_exact(4)
                .map(|c| {
                    let (g, e) = if big_endian {
                        (u16::from_be_bytes([c[0], c[1]]), u16::from_be_bytes([c[2], c[3]]))
                    } else {
                        (u16::from_le_bytes([c[0], c[1]]), u16::from_le_bytes([c[2], c[3]]))
                    };
                    Json::String(format!("{g:04X}{e:04X}"))
                })
                .collect();
            (!values.is_empty()).then_some(("Value", Json::Array(values)))
        }
        b"PN" => {
            let text = charset.decode(bytes, TextKind::PersonName);
            let text = trim_text(&text);
            if text.is_empty() {
                return None;
            }
            let values = text.split('\\').map(person_name_json).collect();
            Some(("Value", Json::Array(values)))
        }
        _ => {
            let text = charset.decode(bytes, TextKind::Text);
            let text = trim_text(&text);
            if text.is_empty() {
                return None;
            }
            let single = matches!(vr, b"LT" | b"ST" | b"UT" | b"UR");
            let parts: Vec<&str> = if single { vec![text] } else { text.split('\\').collect() };
            let values = parts.into_iter().map(|p| string_value_json(vr, p)).collect();
            Some(("Value", Json::Array(values)))
        }
    }
}

fn string_value_json(vr: &[u8; 2], raw: &str) -> Json {
    let value = match vr {
        b"LT" | b"ST" | b"UT" | b"UR" | b"UC" | b"LO" | b"SH" => trim_text(raw),
        _ => raw.trim_matches([' ', '\0']),
    };
    if value.is_empty() {
        return Json::Null;
    }
    match vr {
        b"IS" => value.parse::<i64>().map(Json::from).or_else(|_| value.parse::<f64>().map(number_from_f64)).unwrap_or_else(|_| Json::String(value.into())),
        b"DS" => value.parse::<f64>().map(number_from_f64).unwrap_or_else(|_| Json::String(value.into())),
        _ => Json::String(value.into()),
    }
}

/// A PN value as an object of its component groups (empty groups after the first omitted).
pub fn person_name_json(value: &str) -> Json {
    let value = trim_text(value);
    if value.is_empty() {
        return Json::Null;
    }
    let mut out = Map::new();
    for (group, name) in value.split('=').zip(["Alphabetic", "Ideographic", "Phonetic"]) {
        let group = trim_text(group);
        if !group.is_empty() || name == "Alphabetic" {
            out.insert(name.into(), Json::String(group.into()));
        }
    }
    Json::Object(out)
}

/// Standard base64 with padding (RFC 4648), as InlineBinary needs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The value of a (top-level) element as trimmed text, for attributes the web face reads itself.
pub fn text(data_set: &DataSet, tag: Tag) -> Option<String> {
    match &data_set.get(tag)?.value {
        Value::Bytes(b) => Some(trim_text(&String::from_utf8_lossy(b)).trim().to_owned()),
        _ => None,
    }
}

/// The first value of a US element.
pub fn us(data_set: &DataSet, tag: Tag, big_endian: bool) -> Option<u16> {
    match &data_set.get(tag)?.value {
        Value::Bytes(b) if b.len() >= 2 => Some(if big_endian { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) }),
        _ => None,
    }
}

/// The numbers of a DS or IS element.
pub fn decimals(data_set: &DataSet, tag: Tag) -> Vec<f64> {
    text(data_set, tag).map(|t| t.split('\\').filter_map(|v| v.trim().parse().ok()).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(tag: Tag, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        pacs_testkit::element(tag.0, tag.1, vr, value)
    }

    fn object(body: &[u8], ts: &str) -> Vec<u8> {
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        let mut ts = ts.as_bytes().to_vec();
        if ts.len() % 2 == 1 {
            ts.push(0);
        }
        out.extend_from_slice(&element((0x0002, 0x0010), b"UI", &ts));
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (input, expected) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn annex_f_values() {
        let mut body = Vec::new();
        body.extend(element((0x0008, 0x0005), b"CS", b"ISO_IR 192"));
        body.extend(element((0x0010, 0x0010), b"PN", "Yamada^Tarou=山田^太郎=やまだ^たろう ".as_bytes()));
        body.extend(element((0x0010, 0x1010), b"AS", b""));
        body.extend(element((0x0018, 0x0050), b"DS", b"1.5\\\\-2 "));
        body.extend(element((0x0020, 0x0013), b"IS", b" 12 "));
        body.extend(element((0x0028, 0x0010), b"US", &[4, 0]));
        body.extend(element((0x0028, 0x0009), b"AT", &[0x18, 0x00, 0x63, 0x10]));
        body.extend(element((0x0029, 0x0010), b"LO", b"ACME"));
        let mut item = element((0x0008, 0x1150), b"UI", b"1.2.3\0");
        item.extend(element((0x0008, 0x1155), b"UI", b"1.2.4\0"));
        let mut seq_value = Vec::new();
        seq_value.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        seq_value.extend_from_slice(&(item.len() as u32).to_le_bytes());
        seq_value.extend(item);
        body.extend(element((0x0008, 0x1140), b"SQ", &seq_value));
        body.extend(element((0x0008, 0x1141), b"SQ", b""));
        body.extend(element((0x7FE0, 0x0010), b"OW", &[0u8; 16]));
        let bytes = object(&body, "1.2.840.10008.1.2.1");
        let parsed = parse(&mut &bytes[..], &ParseOptions::default()).expect("parse");
        let json = to_json(&parsed.data_set, &JsonOptions { instance_url: Some("http://x/i"), big_endian: false });
        let expected = json!({
            "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]},
            "00101010": {"vr": "AS"},
            "00180050": {"vr": "DS", "Value": [1.5, null, -2.0]},
            "00200013": {"vr": "IS", "Value": [12]},
            "00280010": {"vr": "US", "Value": [4]},
            "00280009": {"vr": "AT", "Value": ["00181063"]},
            "00290010": {"vr": "LO", "Value": ["ACME"]},
            "00081140": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": ["1.2.3"]}, "00081155": {"vr": "UI", "Value": ["1.2.4"]}}]},
            "00081141": {"vr": "SQ"},
            "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/i/bulkdata/7FE00010"},
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn implicit_vr_uses_the_dictionary() {
        let mut body = Vec::new();
        for (tag, value) in [((0x0010u16, 0x0010u16), &b"DOE^J "[..]), ((0x0028, 0x0010), &[2, 0][..])] {
            body.extend_from_slice(&tag.0.to_le_bytes());
            body.extend_from_slice(&tag.1.to_le_bytes());
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(value);
        }
        let bytes = object(&body, IMPLICIT_VR_LE);
        let parsed = parse(&mut &bytes[..], &ParseOptions::default()).expect("parse");
        let json = to_json(&parsed.data_set, &JsonOptions { instance_url: None, big_endian: false });
        assert_eq!(json, json!({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^J"}]}, "00280010": {"vr": "US", "Value": [2]}}));
    }

    #[test]
    fn bulk_paths_round_trip() {
        let path = BulkPath { steps: vec![((0x0054, 0x0016), 2)], tag: (0x0018, 0x1078) };
        assert_eq!(path.to_url(), "00540016/2/00181078");
        assert_eq!(BulkPath::parse("00540016/2/00181078"), Some(path));
        assert_eq!(BulkPath::parse("7FE00010").map(|p| p.tag), Some(PIXEL_DATA));
        assert_eq!(BulkPath::parse("00540016/x/00181078"), None);
        assert_eq!(BulkPath::parse("0054001"), None);
    }

    #[test]
    fn truncated_objects_are_errors_not_panics() {
        let bytes = object(&element((0x0010, 0x0010), b"PN", b"DOE^JOHN"), "1.2.840.10008.1.2.1");
        for cut in 0..bytes.len() {
            let _ = parse(&mut &bytes[..cut], &ParseOptions::default());
        }
    }
}
