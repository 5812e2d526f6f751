//! Specific Character Set (0008,0005) decoding of text values.
//!
//! DICOM text values (PN, SH, LO, ST, LT, UT, UC, …) are stored as bytes whose meaning depends on
//! the Specific Character Set of the data set (PS3.3 C.12.1.1.2, PS3.5 6.1). This module turns
//! those bytes into UTF-8 so that non-ASCII patient names are stored and matched correctly.
//!
//! Three families of defined terms are handled:
//!
//! * single-byte repertoires without code extensions (`ISO_IR 100`, `ISO_IR 144`, `ISO_IR 13`, …);
//! * multi-byte repertoires without code extensions (`ISO_IR 192` = UTF-8, `GB18030`, `GBK`),
//!   which are decoded as a whole;
//! * ISO 2022 code extensions (`ISO 2022 IR 6`, `ISO 2022 IR 100`, …, `ISO 2022 IR 87`,
//!   `ISO 2022 IR 159`, `ISO 2022 IR 149`, `ISO 2022 IR 58`), where escape sequences designate
//!   the G0 (bytes below 0x80) and G1 (bytes from 0x80) repertoires inside the value and the
//!   state returns to the initial one at every delimiter (PS3.5 6.1.2.5.3).
//!
//! Decoding is lenient and never fails: bytes that cannot be decoded become U+FFFD, bytes from
//! 0x80 without a G1 repertoire are read as Latin-1, unknown defined terms fall back to Latin-1,
//! escape sequences of the supported repertoires are honoured even when the corresponding term is
//! missing from (0008,0005), and an unrecognised escape sequence becomes a single U+FFFD. The
//! underlying code pages come from `encoding_rs`.

use std::sync::OnceLock;

use encoding_rs::Encoding;

/// The escape byte that starts an ISO 2022 escape sequence.
const ESC: u8 = 0x1B;

/// What undecodable bytes turn into.
const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// Which delimiters re-initialise ISO 2022 code extensions, per PS3.5 6.1.2.5.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// PN: `^`, `=` and `\` reset to the initial state; component groups (separated by `=`) are
    /// alphabetic, ideographic, phonetic.
    PersonName,
    /// SH, LO, ST, LT, UT, UC and the like: `\` (and for ST/LT/UT CR, LF, FF, TAB) reset.
    Text,
}

impl TextKind {
    /// Whether `byte`, met while G0 holds a single-byte repertoire, returns the state to the
    /// initial one.
    fn is_delimiter(self, byte: u8) -> bool {
        match self {
            TextKind::PersonName => matches!(byte, b'^' | b'=' | b'\\'),
            TextKind::Text => matches!(byte, b'\\' | b'\r' | b'\n' | 0x0C | b'\t'),
        }
    }
}

/// A single-byte (96 or 94 character) repertoire that can be designated to G1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sbcs {
    /// ISO-IR 100, ISO 8859-1.
    Latin1,
    /// ISO-IR 101, ISO 8859-2.
    Latin2,
    /// ISO-IR 109, ISO 8859-3.
    Latin3,
    /// ISO-IR 110, ISO 8859-4.
    Latin4,
    /// ISO-IR 144, ISO 8859-5.
    Cyrillic,
    /// ISO-IR 127, ISO 8859-6.
    Arabic,
    /// ISO-IR 126, ISO 8859-7.
    Greek,
    /// ISO-IR 138, ISO 8859-8.
    Hebrew,
    /// ISO-IR 148, ISO 8859-9.
    Latin5,
    /// ISO-IR 203, ISO 8859-15.
    Latin9,
    /// ISO-IR 166, TIS-620.
    Thai,
    /// ISO-IR 13, JIS X 0201 katakana.
    Katakana,
}

/// Number of [`Sbcs`] repertoires whose upper half comes from an `encoding_rs` table.
const TABLE_COUNT: usize = 10;

impl Sbcs {
    /// The table slot and `encoding_rs` code page of the repertoires not computed directly.
    fn code_page(self) -> Option<(usize, &'static Encoding)> {
        Some(match self {
            Sbcs::Latin1 | Sbcs::Katakana => return None,
            Sbcs::Latin2 => (0, encoding_rs::ISO_8859_2),
            Sbcs::Latin3 => (1, encoding_rs::ISO_8859_3),
            Sbcs::Latin4 => (2, encoding_rs::ISO_8859_4),
            Sbcs::Cyrillic => (3, encoding_rs::ISO_8859_5),
            Sbcs::Arabic => (4, encoding_rs::ISO_8859_6),
            Sbcs::Greek => (5, encoding_rs::ISO_8859_7),
            Sbcs::Hebrew => (6, encoding_rs::ISO_8859_8),
            // encoding_rs only has windows-1254, which agrees with ISO 8859-9 on 0xA0..=0xFF
            // (0x80..=0x9F never reach the table).
            Sbcs::Latin5 => (7, encoding_rs::WINDOWS_1254),
            Sbcs::Latin9 => (8, encoding_rs::ISO_8859_15),
            // Likewise windows-874 for TIS-620.
            Sbcs::Thai => (9, encoding_rs::WINDOWS_874),
        })
    }

    /// Decodes one byte from 0x80 through this repertoire in G1.
    fn decode_high(self, byte: u8) -> char {
        match self {
            Sbcs::Latin1 => char::from(byte),
            Sbcs::Katakana => match byte {
                // Half-width katakana U+FF61..=U+FF9F.
                0xA1..=0xDF => char::from_u32(0xFF61 + u32::from(byte - 0xA1)).unwrap_or(REPLACEMENT),
                _ => REPLACEMENT,
            },
            // The C1 area of an ISO 8859 / TIS-620 code: control characters, as in Latin-1 (and
            // not the windows code page's printable characters).
            _ if byte < 0xA0 => char::from(byte),
            _ => match self.code_page() {
                Some((slot, encoding)) => upper_half(slot, encoding).get(usize::from(byte - 0xA0)).copied().unwrap_or(REPLACEMENT),
                None => REPLACEMENT,
            },
        }
    }
}

/// The characters of bytes 0xA0..=0xFF of an `encoding_rs` single-byte code page, built once.
fn upper_half(slot: usize, encoding: &'static Encoding) -> &'static [char; 96] {
    static TABLES: [OnceLock<[char; 96]>; TABLE_COUNT] = [const { OnceLock::new() }; TABLE_COUNT];
    static FALLBACK: [char; 96] = [REPLACEMENT; 96];
    match TABLES.get(slot) {
        Some(cell) => cell.get_or_init(|| {
            let mut table = [REPLACEMENT; 96];
            for (byte, entry) in (0xA0..=0xFFu8).zip(table.iter_mut()) {
                let single = [byte];
                let (text, had_errors) = encoding.decode_without_bom_handling(&single);
                if !had_errors {
                    let mut chars = text.chars();
                    if let (Some(c), None) = (chars.next(), chars.next()) {
                        *entry = c;
                    }
                }
            }
            table
        }),
        None => &FALLBACK,
    }
}

/// A double-byte (94 × 94) repertoire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dbcs {
    /// ISO-IR 87, JIS X 0208.
    JisX0208,
    /// ISO-IR 159, JIS X 0212.
    JisX0212,
    /// ISO-IR 149, KS X 1001.
    KsX1001,
    /// ISO-IR 58, GB 2312.
    Gb2312,
}

impl Dbcs {
    /// Decodes one two-byte character, given with or without the high bits set, by mapping it to
    /// the EUC form of the repertoire and decoding that with a fresh decoder, so that each pair
    /// yields its character or U+FFFD and never disturbs the bytes around it.
    fn decode_pair(self, first: u8, second: u8, out: &mut String) {
        let (first, second) = (first | 0x80, second | 0x80);
        let gr = |b: u8| (0xA1..=0xFE).contains(&b);
        let (encoding, valid) = match self {
            Dbcs::JisX0208 | Dbcs::JisX0212 => (encoding_rs::EUC_JP, gr(first) && gr(second)),
            // Lenient: the code pages' extensions (UHC, GBK) beyond the 94 x 94 sets are kept.
            Dbcs::KsX1001 => (encoding_rs::EUC_KR, (0x81..=0xFE).contains(&first)),
            Dbcs::Gb2312 => (encoding_rs::GBK, (0x81..=0xFE).contains(&first)),
        };
        if !valid {
            out.push(REPLACEMENT);
            return;
        }
        // EUC-JP code set 3 is single shift 3 (0x8F) followed by the JIS X 0212 bytes.
        let euc = [0x8F, first, second];
        let bytes: &[u8] = if self == Dbcs::JisX0212 { &euc } else { euc.get(1..).unwrap_or_default() };
        out.push_str(&encoding.decode_without_bom_handling(bytes).0);
    }
}

/// What G0 (bytes 0x21..=0x7E) currently holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum G0 {
    /// ISO 646 (ASCII); JIS X 0201 romaji is decoded as ASCII too.
    Ascii,
    /// A double-byte repertoire: bytes come in pairs.
    Dbcs(Dbcs),
}

/// What G1 (bytes 0x80..=0xFF) currently holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum G1 {
    /// Nothing designated; bytes are read as Latin-1 to be lenient.
    None,
    /// A single-byte repertoire.
    Sbcs(Sbcs),
    /// A double-byte repertoire (EUC style, both bytes with the high bit set).
    Dbcs(Dbcs),
}

/// The ISO 2022 designations in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    g0: G0,
    g1: G1,
}

/// What an escape sequence designates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Designation {
    G0(G0),
    G1(G1),
}

/// The outcome of reading an escape sequence.
enum Escape {
    /// A supported designation, and the length of the sequence including ESC.
    Known(Designation, usize),
    /// A syntactically complete but unsupported sequence, and its length including ESC.
    Unknown(usize),
    /// ESC not followed by a complete sequence.
    Incomplete,
}

/// Reads the escape sequence whose ESC has already been seen; `rest` follows the ESC.
fn parse_escape(rest: &[u8]) -> Escape {
    let intermediates = rest.iter().take_while(|b| (0x20..=0x2F).contains(*b)).count();
    let Some(&final_byte) = rest.get(intermediates) else {
        return Escape::Incomplete;
    };
    if !(0x30..=0x7E).contains(&final_byte) {
        return Escape::Incomplete;
    }
    let length = intermediates + 2;
    let intermediate = rest.get(..intermediates).unwrap_or_default();
    let sbcs = |set| Some(Designation::G1(G1::Sbcs(set)));
    let designation = match (intermediate, final_byte) {
        // ISO-IR 6 ASCII, ISO-IR 14 JIS X 0201 romaji.
        (b"(", b'B' | b'J') => Some(Designation::G0(G0::Ascii)),
        (b")", b'I') => sbcs(Sbcs::Katakana),
        (b"-", b'A') => sbcs(Sbcs::Latin1),
        (b"-", b'B') => sbcs(Sbcs::Latin2),
        (b"-", b'C') => sbcs(Sbcs::Latin3),
        (b"-", b'D') => sbcs(Sbcs::Latin4),
        (b"-", b'L') => sbcs(Sbcs::Cyrillic),
        (b"-", b'G') => sbcs(Sbcs::Arabic),
        (b"-", b'F') => sbcs(Sbcs::Greek),
        (b"-", b'H') => sbcs(Sbcs::Hebrew),
        (b"-", b'M') => sbcs(Sbcs::Latin5),
        (b"-", b'b') => sbcs(Sbcs::Latin9),
        (b"-", b'T') => sbcs(Sbcs::Thai),
        // ESC $ @ is the 1978 edition of JIS X 0208, close enough to decode the same way.
        (b"$" | b"$(", b'B' | b'@') => Some(Designation::G0(G0::Dbcs(Dbcs::JisX0208))),
        (b"$(", b'D') => Some(Designation::G0(G0::Dbcs(Dbcs::JisX0212))),
        (b"$(", b'C') => Some(Designation::G0(G0::Dbcs(Dbcs::KsX1001))),
        (b"$" | b"$(", b'A') => Some(Designation::G0(G0::Dbcs(Dbcs::Gb2312))),
        (b"$)", b'B' | b'@') => Some(Designation::G1(G1::Dbcs(Dbcs::JisX0208))),
        (b"$)", b'D') => Some(Designation::G1(G1::Dbcs(Dbcs::JisX0212))),
        (b"$)", b'C') => Some(Designation::G1(G1::Dbcs(Dbcs::KsX1001))),
        (b"$)", b'A') => Some(Designation::G1(G1::Dbcs(Dbcs::Gb2312))),
        _ => None,
    };
    match designation {
        Some(designation) => Escape::Known(designation, length),
        None => Escape::Unknown(length),
    }
}

/// How a whole value is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// ISO 2022 state machine (also used for the single-byte terms without extensions), starting
    /// with ASCII in G0 and the given repertoire in G1.
    Iso2022 { initial_g1: G1 },
    /// `ISO_IR 192`.
    Utf8,
    /// `GB18030`.
    Gb18030,
    /// `GBK`.
    Gbk,
}

/// A recognised defined term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Term {
    /// A term handled by the ISO 2022 state machine; as first value it puts this in G1.
    Iso2022(G1),
    /// A term whose repertoire covers the whole value (no code extensions).
    Whole(Mode),
}

/// Recognises a defined term, tolerating the usual misspellings (case, `_`, `-` and spaces, as
/// in `ISO-IR 144` or `ISO IR 192`).
fn classify(term: &str) -> Option<Term> {
    let key: String = term.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).map(|c| c.to_ascii_uppercase()).collect();
    match key.as_str() {
        "GB18030" => return Some(Term::Whole(Mode::Gb18030)),
        "GBK" => return Some(Term::Whole(Mode::Gbk)),
        _ => {}
    }
    let rest = key.strip_prefix("ISO")?;
    let rest = rest.strip_prefix("2022").unwrap_or(rest);
    let number = rest.strip_prefix("IR")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sbcs = |set| Some(Term::Iso2022(G1::Sbcs(set)));
    match number.trim_start_matches('0') {
        // JIS X 0208 and JIS X 0212 live in G0 and are only reached by escape sequences; as a
        // (non-conformant) first value they leave the initial state at ASCII.
        "6" | "87" | "159" => Some(Term::Iso2022(G1::None)),
        "100" => sbcs(Sbcs::Latin1),
        "101" => sbcs(Sbcs::Latin2),
        "109" => sbcs(Sbcs::Latin3),
        "110" => sbcs(Sbcs::Latin4),
        "144" => sbcs(Sbcs::Cyrillic),
        "127" => sbcs(Sbcs::Arabic),
        "126" => sbcs(Sbcs::Greek),
        "138" => sbcs(Sbcs::Hebrew),
        "148" => sbcs(Sbcs::Latin5),
        "203" => sbcs(Sbcs::Latin9),
        "166" => sbcs(Sbcs::Thai),
        "13" => sbcs(Sbcs::Katakana),
        "149" => Some(Term::Iso2022(G1::Dbcs(Dbcs::KsX1001))),
        "58" => Some(Term::Iso2022(G1::Dbcs(Dbcs::Gb2312))),
        "192" => Some(Term::Whole(Mode::Utf8)),
        _ => None,
    }
}

/// Bytes as Latin-1 text (never fails).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

/// A parsed Specific Character Set.
///
/// The first defined term fixes how a value starts (or, for `ISO_IR 192`, `GB18030` and `GBK`,
/// how the whole value is decoded); further terms only announce code extensions, and every
/// supported escape sequence is honoured whether or not its term is listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecificCharacterSet {
    mode: Mode,
    unknown: Vec<String>,
}

impl Default for SpecificCharacterSet {
    /// Same as [`SpecificCharacterSet::default_repertoire`].
    fn default() -> Self {
        Self::default_repertoire()
    }
}

impl SpecificCharacterSet {
    /// The default repertoire (`ISO_IR 6`, ASCII), used when (0008,0005) is absent.
    #[must_use]
    pub fn default_repertoire() -> Self {
        SpecificCharacterSet { mode: Mode::Iso2022 { initial_g1: G1::None }, unknown: Vec::new() }
    }

    /// Parses the raw value of (0008,0005): backslash-separated defined terms, possibly with an
    /// empty first value (meaning ISO 2022 IR 6 as G0), padded with spaces/NUL.
    /// Unknown terms are kept (see `unknown_terms`) and decoding falls back to treating them as
    /// Latin-1 rather than failing, so that nothing is ever dropped.
    #[must_use]
    pub fn from_raw(raw: &[u8]) -> Self {
        let mut set = Self::default_repertoire();
        for (index, term) in raw.split(|&b| b == b'\\').enumerate() {
            let term = trim_padding(term);
            if term.is_empty() {
                // An empty first value is ISO 2022 IR 6 (the default); later empty values
                // carry no information.
                continue;
            }
            let text = latin1(term);
            match classify(&text) {
                Some(recognised) if index == 0 => {
                    set.mode = match recognised {
                        Term::Iso2022(initial_g1) => Mode::Iso2022 { initial_g1 },
                        Term::Whole(mode) => mode,
                    };
                }
                // Later terms: ISO 2022 escapes are honoured anyway; UTF-8, GB18030 and GBK
                // cannot be code extensions and are ignored there.
                Some(_) => {}
                None => set.unknown.push(text),
            }
        }
        set
    }

    /// The defined terms this set did not recognise (empty when all were understood).
    #[must_use]
    pub fn unknown_terms(&self) -> &[String] {
        &self.unknown
    }

    /// Decodes a text value's raw bytes to UTF-8. Trailing padding (spaces, NUL) is NOT removed here (the caller trims).
    #[must_use]
    pub fn decode(&self, bytes: &[u8], kind: TextKind) -> String {
        match self.mode {
            Mode::Iso2022 { initial_g1 } => {
                if bytes.iter().all(|&b| b < 0x80 && b != ESC) {
                    // Plain ASCII: the initial G0 is always ASCII.
                    return latin1(bytes);
                }
                decode_iso2022(bytes, State { g0: G0::Ascii, g1: initial_g1 }, kind)
            }
            Mode::Utf8 => encoding_rs::UTF_8.decode_without_bom_handling(bytes).0.into_owned(),
            Mode::Gb18030 => encoding_rs::GB18030.decode_without_bom_handling(bytes).0.into_owned(),
            Mode::Gbk => encoding_rs::GBK.decode_without_bom_handling(bytes).0.into_owned(),
        }
    }
}

/// Removes spaces (and other ASCII whitespace) and NUL bytes at both ends.
fn trim_padding(mut bytes: &[u8]) -> &[u8] {
    loop {
        let before = bytes.len();
        bytes = bytes.trim_ascii_start().trim_ascii_end();
        if let [0, rest @ ..] = bytes {
            bytes = rest;
        }
        if let [rest @ .., 0] = bytes {
            bytes = rest;
        }
        if bytes.len() == before {
            return bytes;
        }
    }
}

/// Runs the ISO 2022 state machine over one value.
fn decode_iso2022(bytes: &[u8], initial: State, kind: TextKind) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    let mut state = initial;
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let next = bytes.get(index + 1).copied();
        if byte == ESC {
            match parse_escape(bytes.get(index + 1..).unwrap_or_default()) {
                Escape::Known(Designation::G0(g0), length) => {
                    state.g0 = g0;
                    index += length;
                }
                Escape::Known(Designation::G1(g1), length) => {
                    state.g1 = g1;
                    index += length;
                }
                Escape::Unknown(length) => {
                    out.push(REPLACEMENT);
                    index += length;
                }
                Escape::Incomplete => {
                    out.push(REPLACEMENT);
                    index += 1;
                }
            }
            continue;
        }
        if byte >= 0x80 {
            index += decode_g1(state.g1, byte, next, &mut out);
            continue;
        }
        match state.g0 {
            G0::Dbcs(set) if (0x21..=0x7E).contains(&byte) => match next {
                Some(second) if (0x21..=0x7E).contains(&second) => {
                    set.decode_pair(byte, second, &mut out);
                    index += 2;
                }
                _ => {
                    out.push(REPLACEMENT);
                    index += 1;
                }
            },
            // ASCII in G0, or space and control characters (always ASCII) under a double-byte
            // G0.
            _ => {
                out.push(char::from(byte));
                if kind.is_delimiter(byte) {
                    state = initial;
                }
                index += 1;
            }
        }
    }
    out
}

/// Decodes the character starting with `byte` (from 0x80) through G1; returns the number of
/// bytes used.
fn decode_g1(g1: G1, byte: u8, next: Option<u8>, out: &mut String) -> usize {
    match g1 {
        G1::None => {
            out.push(char::from(byte));
            1
        }
        G1::Sbcs(set) => {
            out.push(set.decode_high(byte));
            1
        }
        G1::Dbcs(set) => match next {
            Some(second) if second >= 0x80 => {
                set.decode_pair(byte, second, out);
                2
            }
            _ => {
                out.push(REPLACEMENT);
                1
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `bytes` under the (0008,0005) value `charset_raw` and compares with `expected`.
    fn check(charset_raw: &[u8], bytes: &[u8], kind: TextKind, expected: &str) {
        let set = SpecificCharacterSet::from_raw(charset_raw);
        let decoded = set.decode(bytes, kind);
        assert_eq!(decoded, expected, "charset {:?}, bytes {:02x?}, {:?}", String::from_utf8_lossy(charset_raw), bytes, kind);
    }

    type Case = (&'static [u8], &'static [u8], TextKind, &'static str);

    fn check_all(cases: &[Case]) {
        for &(charset_raw, bytes, kind, expected) in cases {
            check(charset_raw, bytes, kind, expected);
        }
    }

    use TextKind::{PersonName as PN, Text};

    #[test]
    fn japanese_annex_h() {
        check_all(&[
            // PS3.5 H.3.1: value 1 absent, ISO 2022 IR 87.
            (
                b"\\ISO 2022 IR 87",
                b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
                PN,
                "Yamada^Tarou=山田^太郎=やまだ^たろう",
            ),
            // PS3.5 H.3.2: ISO 2022 IR 13 first, katakana in G1 without escape.
            (
                b"ISO 2022 IR 13\\ISO 2022 IR 87",
                b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
                PN,
                "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
            ),
            // Same bytes as a text value: no reset at ^ and =, but the escapes restore ASCII.
            (b"\\ISO 2022 IR 87", b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B", Text, "Yamada^Tarou=山田^太郎"),
            // JIS X 0212 (ISO 2022 IR 159), from pydicom's encoder test.
            (
                b"ISO 2022 IR 6\\ISO 2022 IR 87\\ISO 2022 IR 159",
                b"Mori^Ogai=\x1b$B?9\x1b(B^\x1b$(Dl?\x1b$B30\x1b(B=\x1b$B$b$j\x1b(B^\x1b$B$*$&$,$$\x1b(B",
                PN,
                "Mori^Ogai=森^鷗外=もり^おうがい",
            ),
            // All Japanese designations in one value.
            (b"ISO 2022 IR 13\\ISO 2022 IR 87\\ISO 2022 IR 159", b"\x1b$B$\"\x1b(Ja\x1b)I\xb1\x1b$B%\"\x1b$(DmN\x1b(J", Text, "あaｱア齩"),
            // ISO_IR 13 without extensions.
            (b"ISO_IR 13", b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3", PN, "ﾔﾏﾀﾞ^ﾀﾛｳ"),
            // Long text, line breaks reset; the second line has kanji without closing escape.
            (b"\\ISO 2022 IR 87", b"\x1b$B;3ED\x1b(B\r\n\x1b$BB@O:\r\nabc", Text, "山田\r\n太郎\r\nabc"),
            // JIS X 0208 in G1 (EUC-JP style).
            (b"\\ISO 2022 IR 87", b"a\x1b$)B\xbb\xb3b", Text, "a山b"),
        ]);
    }

    #[test]
    fn korean_annex_i() {
        check_all(&[
            // PS3.5 I.2.
            (
                b"\\ISO 2022 IR 149",
                b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
                PN,
                "Hong^Gildong=洪^吉洞=홍^길동",
            ),
            // PS3.5 I.3: the escape is repeated after each line break.
            (
                b"\\ISO 2022 IR 149",
                b"\x1b$)CThe first line includes \xc7\xd1\xb1\xdb.\r\n\x1b$)CThe second line includes \xc7\xd1\xb1\xdb, too.\r\nThe third line",
                Text,
                "The first line includes 한글.\r\nThe second line includes 한글, too.\r\nThe third line",
            ),
            // ^ resets for PN only: the bytes after it fall back to Latin-1.
            (b"\\ISO 2022 IR 149", b"\x1b$)C\xc8\xab^\xb1\xe6", Text, "홍^길"),
            (b"\\ISO 2022 IR 149", b"\x1b$)C\xc8\xab^\xb1\xe6", PN, "홍^±æ"),
            // ISO 2022 IR 149 as first value: G1 is KS X 1001 from the start.
            (b"ISO 2022 IR 149", b"\xb1\xe8\xc8\xf1\xc1\xdf", PN, "김희중"),
            // KS X 1001 in G0 (ESC $ ( C).
            (b"\\ISO 2022 IR 149", b"\x1b$(CH+\x1b(B", PN, "홍"),
        ]);
    }

    #[test]
    fn chinese_annex_j_and_k() {
        check_all(&[
            // PS3.5 J.1 (UTF-8).
            (
                b"ISO_IR 192",
                b"Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=",
                PN,
                "Wang^XiaoDong=王^小東=",
            ),
            // PS3.5 J.3 (GB18030), and the same bytes as GBK.
            (
                b"GB18030",
                b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
                PN,
                "Wang^XiaoDong=王^小东=",
            ),
            (b"GBK", b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=", PN, "Wang^XiaoDong=王^小东="),
            // PS3.5 J.4 (GB18030 long text).
            (
                b"GB18030",
                b"The first line includes \xd6\xd0\xce\xc4.\r\nThe second line includes \xd6\xd0\xce\xc4, too.\r\nThe third line.\r\n",
                Text,
                "The first line includes 中文.\r\nThe second line includes 中文, too.\r\nThe third line.\r\n",
            ),
            // GB18030 four-byte sequence: 0x81 0x30 0x81 0x30 is U+0080.
            (b"GB18030", b"\x81\x30\x81\x30", Text, "\u{80}"),
            // PS3.5 K.2 (ISO 2022 IR 58), trailing padding kept.
            (
                b"\\ISO 2022 IR 58",
                b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab= ",
                PN,
                "Zhang^XiaoDong=张^小东= ",
            ),
            // PS3.5 K.3 (long text, one escape per line).
            (
                b"\\ISO 2022 IR 58",
                b"1.\x1b$)A\xb5\xda\xd2\xbb\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n2.\x1b$)A\xb5\xda\xb6\xfe\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n3.\x1b$)A\xb5\xda\xc8\xfd\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n",
                Text,
                "1.第一行文字。\r\n2.第二行文字。\r\n3.第三行文字。\r\n",
            ),
        ]);
    }

    #[test]
    fn gbk_trail_byte_is_not_a_delimiter() {
        // 0x95 0x5C is one GBK character whose second byte is a backslash.
        for charset in [&b"GBK"[..], b"GB18030"] {
            let decoded = SpecificCharacterSet::from_raw(charset).decode(b"\x95\x5c", Text);
            assert_eq!(decoded.chars().count(), 1, "{decoded:?}");
            assert!(!decoded.contains('\\') && !decoded.contains(REPLACEMENT), "{decoded:?}");
        }
    }

    #[test]
    fn single_byte_repertoires() {
        check_all(&[
            (b"ISO_IR 100", b"Buc^J\xe9r\xf4me", PN, "Buc^Jérôme"),
            (b"ISO_IR 100", b"\xc4neas^R\xfcdiger", PN, "Äneas^Rüdiger"),
            // Latin-1 is not windows-1252: 0x80..=0x9F are C1 controls.
            (b"ISO_IR 100", b"\x80\x93\x9f", Text, "\u{80}\u{93}\u{9f}"),
            (b"ISO_IR 101", b"Wa\xb3\xeasa", PN, "Wałęsa"),
            (b"ISO_IR 109", b"anta\xfdnomo", PN, "antaŭnomo"),
            (b"ISO_IR 110", b"v\xe0rds", PN, "vārds"),
            (b"ISO_IR 144", b"\xbb\xee\xdace\xdc\xd1yp\xd3", PN, "Люкceмбypг"),
            (b"ISO_IR 127", b"\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1", PN, "قباني^لنزار"),
            (b"ISO_IR 126", b"\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", PN, "Διονυσιος"),
            (b"ISO_IR 138", b"\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4", PN, "שרון^דבורה"),
            (b"ISO_IR 148", b"\xc7avu\xfeo\xf0lu", PN, "Çavuşoğlu"),
            // ISO 8859-9 keeps C1 controls where windows-1254 has printable characters.
            (b"ISO_IR 148", b"\x80", Text, "\u{80}"),
            (b"ISO_IR 203", b"\xa4 \xbc\xbd", Text, "€ Œœ"),
            (b"ISO_IR 166", b"\xb9\xd2\xc1\xca\xa1\xd8\xc5", PN, "นามสกุล"),
            // Unassigned positions become U+FFFD.
            (b"ISO_IR 127", b"\xa1", Text, "\u{fffd}"),
            // Default repertoire: ASCII, high bytes leniently as Latin-1.
            (b"", b"Smith^John", PN, "Smith^John"),
            (b"ISO_IR 6", b"M\xfcller", PN, "Müller"),
            // Padding is left to the caller.
            (b"ISO_IR 100", b"Buc^J\xe9r\xf4me \0", PN, "Buc^Jérôme \0"),
        ]);
    }

    #[test]
    fn utf8() {
        check_all(&[
            (b"ISO_IR 192", b"Buc^J\xc3\xa9r\xc3\xb4me", PN, "Buc^Jérôme"),
            (b"ISO_IR 192", "Διονυσιος=Люкceмбypг".as_bytes(), PN, "Διονυσιος=Люкceмбypг"),
            // Invalid UTF-8 becomes U+FFFD.
            (b"ISO_IR 192", b"\xc4\xe9\xef", PN, "\u{fffd}\u{fffd}\u{fffd}"),
            // Code extensions are not allowed with UTF-8 and are ignored.
            (b"ISO_IR 192\\ISO 2022 IR 100", b"J\xc3\xa9r\xc3\xb4me", PN, "Jérôme"),
        ]);
    }

    #[test]
    fn single_byte_code_extensions() {
        // pydicom's test vectors for every single-byte extension, after an ASCII prefix.
        check_all(&[
            (b"\\ISO 2022 IR 13", b"ASCII+\x1b)I\xd4\xcf\xc0\xde^\x1b)I\xc0\xdb\xb3", PN, "ASCII+ﾔﾏﾀﾞ^ﾀﾛｳ"),
            (b"\\ISO 2022 IR 100", b"ASCII+\x1b-ABuc^\x1b-AJ\xe9r\xf4me", PN, "ASCII+Buc^Jérôme"),
            (b"\\ISO 2022 IR 101", b"ASCII+\x1b-BWa\xb3\xeasa", PN, "ASCII+Wałęsa"),
            (b"\\ISO 2022 IR 109", b"ASCII+\x1b-Canta\xfdnomo", PN, "ASCII+antaŭnomo"),
            (b"\\ISO 2022 IR 110", b"ASCII+\x1b-Dv\xe0rds", PN, "ASCII+vārds"),
            (b"\\ISO 2022 IR 127", b"ASCII+\x1b-G\xe2\xc8\xc7\xe6\xea^\x1b-G\xe4\xe6\xd2\xc7\xd1", PN, "ASCII+قباني^لنزار"),
            (b"\\ISO 2022 IR 126", b"ASCII+\x1b-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", PN, "ASCII+Διονυσιος"),
            (b"\\ISO 2022 IR 138", b"ASCII+\x1b-H\xf9\xf8\xe5\xef^\x1b-H\xe3\xe1\xe5\xf8\xe4", PN, "ASCII+שרון^דבורה"),
            (b"\\ISO 2022 IR 144", b"ASCII+\x1b-L\xbb\xee\xdace\xdc\xd1yp\xd3", PN, "ASCII+Люкceмбypг"),
            (b"\\ISO 2022 IR 148", b"ASCII+\x1b-M\xc7avu\xfeo\xf0lu", PN, "ASCII+Çavuşoğlu"),
            (b"\\ISO 2022 IR 203", b"ASCII+\x1b-b\xa4", PN, "ASCII+€"),
            (b"\\ISO 2022 IR 166", b"ASCII+\x1b-T\xb9\xd2\xc1\xca\xa1\xd8\xc5", PN, "ASCII+นามสกุล"),
            // Missing escape after a delimiter: back to the initial state (Latin-1 leniency).
            (b"\\ISO 2022 IR 13", b"ASCII+\x1b)I\xd4\xcf\xc0\xde^\xc0\xdb\xb3", PN, "ASCII+ﾔﾏﾀﾞ^ÀÛ³"),
            // The first value's repertoire is in force without any escape.
            (b"ISO 2022 IR 100\\ISO 2022 IR 144", b"Buc^J\xe9r\xf4me", PN, "Buc^Jérôme"),
            (b"ISO 2022 IR 100\\ISO 2022 IR 144", b"R\xf6ntgenaufnahme", Text, "Röntgenaufnahme"),
            // Component groups in different repertoires.
            (b"ISO 2022 IR 100\\ISO 2022 IR 126", b"Dionysios=\x1b-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", PN, "Dionysios=Διονυσιος"),
            // Change inside a text value.
            (b"ISO 2022 IR 100\\ISO 2022 IR 126", b"Dionysios is \x1b-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", Text, "Dionysios is Διονυσιος"),
            // Multiple values, each starting again in Latin-1.
            (
                b"ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126",
                b"Buc^J\xe9r\xf4me\\\x1b-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2\\\x1b-L\xbb\xee\xdace\xdc\xd1yp\xd3\\\xe9",
                Text,
                "Buc^Jérôme\\Διονυσιος\\Люкceмбypг\\é",
            ),
            // ^ does not reset a text value, but a line break does.
            (b"ISO 2022 IR 100\\ISO 2022 IR 126", b"\x1b-F\xc4^\xc4\n\xc4", Text, "Δ^Δ\nÄ"),
        ]);
    }

    #[test]
    fn unknown_terms() {
        let set = SpecificCharacterSet::from_raw(b"ISO_IR 999 ");
        assert_eq!(set.unknown_terms(), ["ISO_IR 999".to_owned()]);
        assert_eq!(set.decode(b"Buc^J\xe9r\xf4me", PN), "Buc^Jérôme");

        let set = SpecificCharacterSet::from_raw(b"ISO 2022 IR 100\\ISO 2022 IR 146\\\xff");
        assert_eq!(set.unknown_terms(), ["ISO 2022 IR 146".to_owned(), "\u{ff}".to_owned()]);
        assert_eq!(set.decode(b"J\xe9r\xf4me", PN), "Jérôme");

        check_all(&[
            (b"UNSUPPORTED", b"CompressedSamples^CT1", PN, "CompressedSamples^CT1"),
            (b"UNSUPPORTED", b"\xc4", PN, "Ä"),
            // Escapes still work with an unknown first value.
            (b"KOI8\\ISO 2022 IR 87", b"\x1b$B;3ED\x1b(B", PN, "山田"),
        ]);
    }

    #[test]
    fn parsing_of_the_attribute_value() {
        let default = SpecificCharacterSet::default();
        assert_eq!(default, SpecificCharacterSet::default_repertoire());
        for raw in [&b""[..], b" ", b"\0", b"ISO_IR 6", b"ISO 2022 IR 6", b"\\", b"ISO_IR 6 \0"] {
            let set = SpecificCharacterSet::from_raw(raw);
            assert_eq!(set, default, "{raw:?}");
            assert!(set.unknown_terms().is_empty());
        }
        // Padding and common misspellings.
        for raw in [&b"ISO_IR 100 "[..], b"ISO_IR 100\0", b" ISO_IR 100", b"ISO-IR 100", b"iso_ir_100"] {
            let set = SpecificCharacterSet::from_raw(raw);
            assert!(set.unknown_terms().is_empty(), "{raw:?}");
            assert_eq!(set.decode(b"J\xe9r\xf4me", PN), "Jérôme", "{raw:?}");
        }
        for raw in [&b"ISO IR 192"[..], b"ISO_IR 192 ", b"ISO_IR192"] {
            let set = SpecificCharacterSet::from_raw(raw);
            assert!(set.unknown_terms().is_empty(), "{raw:?}");
            assert_eq!(set.decode(b"J\xc3\xa9r\xc3\xb4me", PN), "Jérôme", "{raw:?}");
        }
        assert_eq!(SpecificCharacterSet::from_raw(b"ISO_IR 100"), SpecificCharacterSet::from_raw(b"ISO 2022 IR 100"));
        assert!(SpecificCharacterSet::from_raw(b"\\ISO 2022 IR 87 ").unknown_terms().is_empty());
    }

    #[test]
    fn garbage_does_not_panic() {
        check_all(&[
            // Truncated or unknown escape sequences: U+FFFD, nothing else lost.
            (b"\\ISO 2022 IR 87", b"\x1b", PN, "\u{fffd}"),
            (b"\\ISO 2022 IR 87", b"a\x1b$", PN, "a\u{fffd}$"),
            (b"\\ISO 2022 IR 87", b"a\x1b$)", PN, "a\u{fffd}$)"),
            (b"ISO_IR 100", b"\x1b-Zabc", PN, "\u{fffd}abc"),
            (b"ISO_IR 100", b"\x1b\x80", PN, "\u{fffd}\u{80}"),
            // Odd byte in a double-byte G0, then a stray escape.
            (b"\\ISO 2022 IR 87", b"\x1b$B;", PN, "\u{fffd}"),
            (b"\\ISO 2022 IR 87", b"\x1b$B;\x1b(Ba", PN, "\u{fffd}a"),
            // Unmapped JIS pair.
            (b"\\ISO 2022 IR 87", b"\x1b$B\x7e\x7e\x1b(B", PN, "\u{fffd}"),
            // Lone lead byte in a double-byte G1 before ASCII.
            (b"\\ISO 2022 IR 149", b"\x1b$)C\xc8a", PN, "\u{fffd}a"),
            (b"\\ISO 2022 IR 58", b"\x1b$)A\xff\xff\xd5", PN, "\u{fffd}\u{fffd}"),
            // Truncated GB18030 four-byte sequences (WHATWG behaviour of encoding_rs).
            (b"GB18030", b"\x81\x30A", Text, "\u{fffd}0A"),
            (b"GB18030", b"\x81\x30", Text, "\u{fffd}"),
        ]);
        let garbage: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for raw in [&b""[..], b"ISO_IR 192", b"GB18030", b"GBK", b"\\ISO 2022 IR 87\\ISO 2022 IR 159"] {
            let set = SpecificCharacterSet::from_raw(raw);
            for kind in [PN, Text] {
                let _ = set.decode(&garbage, kind);
            }
        }
    }

    /// Every supported defined term, plus oddities.
    const CHARSETS: &[&[u8]] = &[
        b"",
        b"ISO_IR 6",
        b"ISO_IR 100",
        b"ISO_IR 101",
        b"ISO_IR 109",
        b"ISO_IR 110",
        b"ISO_IR 144",
        b"ISO_IR 127",
        b"ISO_IR 126",
        b"ISO_IR 138",
        b"ISO_IR 148",
        b"ISO_IR 203",
        b"ISO_IR 13",
        b"ISO_IR 166",
        b"ISO_IR 192",
        b"GB18030",
        b"GBK",
        b"\\ISO 2022 IR 87",
        b"ISO 2022 IR 13\\ISO 2022 IR 87\\ISO 2022 IR 159",
        b"\\ISO 2022 IR 149",
        b"\\ISO 2022 IR 58",
        b"ISO 2022 IR 149",
        b"ISO 2022 IR 58",
        b"ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126\\ISO 2022 IR 203\\ISO 2022 IR 166",
        b"UNKNOWN",
    ];

    /// Byte strings rich in escape sequences, delimiters and high bytes.
    fn tricky_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            (0x80..=0xFFu8).prop_map(|b| vec![b]),
            prop::sample::select(vec![
                &b"\x1b$B"[..],
                b"\x1b$(D",
                b"\x1b$)C",
                b"\x1b$)A",
                b"\x1b$(C",
                b"\x1b$)B",
                b"\x1b(B",
                b"\x1b(J",
                b"\x1b)I",
                b"\x1b-A",
                b"\x1b-F",
                b"\x1b-T",
                b"\x1b",
                b"\x1b$",
                b"^",
                b"=",
                b"\\",
                b"\r\n",
            ])
            .prop_map(<[u8]>::to_vec),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn decode_never_panics(
            which in 0..CHARSETS.len(),
            bytes in tricky_bytes(),
            person_name in any::<bool>(),
        ) {
            let set = SpecificCharacterSet::from_raw(CHARSETS.get(which).copied().unwrap_or_default());
            let kind = if person_name { PN } else { Text };
            let decoded = set.decode(&bytes, kind);
            // Escape sequences never leak into the output of the ISO 2022 decoder.
            if matches!(set.mode, Mode::Iso2022 { .. }) {
                prop_assert!(!decoded.contains('\u{1b}'), "{:?}", decoded);
            }
        }

        #[test]
        fn arbitrary_charset_never_panics(raw in prop::collection::vec(any::<u8>(), 0..48), bytes in tricky_bytes()) {
            let set = SpecificCharacterSet::from_raw(&raw);
            let _ = set.decode(&bytes, PN);
            let _ = set.decode(&bytes, Text);
        }

        #[test]
        fn ascii_is_unchanged(which in 0..CHARSETS.len(), text in "[ -~\r\n\t]{0,40}", person_name in any::<bool>()) {
            let set = SpecificCharacterSet::from_raw(CHARSETS.get(which).copied().unwrap_or_default());
            let kind = if person_name { PN } else { Text };
            prop_assert_eq!(set.decode(text.as_bytes(), kind), text);
        }
    }
}
