//! The query model: levels, keys and the matching kinds of DICOM PS3.4 C.2.2.2.
//!
//! A [`Query`] is what every face of the archive (the `pacs query` command, C-FIND, QIDO-RS)
//! builds and what every [`Index`](crate::Index) answers. Values are parsed once, here, into a
//! [`Matcher`] with normalised operands, so that the reference matcher in [`crate::matching`] and
//! the SQL index compare exactly the same strings.

use std::collections::BTreeMap;
use std::fmt;

use crate::attribute::{Attribute, ValueKind};
use crate::error::{Error, Result};

/// A level of the Patient / Study / Series / Instance information model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryLevel {
    /// Patient level: one record per (PatientID, IssuerOfPatientID).
    Patient,
    /// Study level: one record per StudyInstanceUID.
    Study,
    /// Series level: one record per SeriesInstanceUID.
    Series,
    /// Instance (IMAGE) level: one record per SOPInstanceUID.
    Instance,
}

impl QueryLevel {
    /// The value of Query/Retrieve Level (0008,0052) for this level.
    pub const fn as_dicom(self) -> &'static str {
        match self {
            QueryLevel::Patient => "PATIENT",
            QueryLevel::Study => "STUDY",
            QueryLevel::Series => "SERIES",
            QueryLevel::Instance => "IMAGE",
        }
    }

    /// Parses `PATIENT`, `STUDY`, `SERIES`, `IMAGE` or `INSTANCE` (any case).
    pub fn parse(text: &str) -> Result<QueryLevel> {
        match text.trim().to_ascii_uppercase().as_str() {
            "PATIENT" => Ok(QueryLevel::Patient),
            "STUDY" => Ok(QueryLevel::Study),
            "SERIES" => Ok(QueryLevel::Series),
            "IMAGE" | "INSTANCE" => Ok(QueryLevel::Instance),
            other => Err(Error::InvalidQuery { reason: format!("unknown query level {other:?}") }),
        }
    }
}

impl fmt::Display for QueryLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_dicom())
    }
}

/// One matching kind of PS3.4 C.2.2.2, with normalised operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Universal matching: an empty key value, or `*`. Matches every record.
    Universal,
    /// Empty value matching: the key value `""` matches records whose value is empty or absent.
    Empty,
    /// Single value matching: the record value equals the operand.
    Single(String),
    /// Wildcard matching: `*` matches any run of characters, `?` exactly one.
    Wildcard(String),
    /// List of UID matching: the record value equals one of the operands.
    UidList(Vec<String>),
    /// Range matching of dates or times, bounds inclusive and normalised; `None` is open.
    /// Lower bounds are padded with `0`, upper bounds with `9`, so that a plain string
    /// comparison against normalised record values is correct (`-1030` includes `10:30:59`).
    Range {
        /// Inclusive lower bound, or open.
        lo: Option<String>,
        /// Inclusive upper bound, or open.
        hi: Option<String>,
    },
}

impl Matcher {
    /// Parses a key value for `attribute` following the matching rules of its value kind.
    ///
    /// Errors name the attribute and say what is wrong (an invalid date, a wildcard in a UID...).
    pub fn parse(attribute: Attribute, raw: &str) -> Result<Matcher> {
        Matcher::parse_as(attribute.kind(), attribute.keyword(), raw)
    }

    /// Parses a key value by the matching rules of values of `kind`, for an attribute that need
    /// not be indexed (its kind from its VR, [`ValueKind::for_vr`]); errors name `keyword`.
    pub fn parse_as(kind: ValueKind, keyword: &str, raw: &str) -> Result<Matcher> {
        let invalid = |reason: String| Error::InvalidQuery { reason: format!("{keyword}: {reason}") };
        let value = raw.trim_matches(|c| c == ' ' || c == '\0');
        if value.is_empty() || value == "*" {
            return Ok(Matcher::Universal);
        }
        if value == "\"\"" {
            return Ok(Matcher::Empty);
        }
        match kind {
            ValueKind::Uid => {
                if value.contains(['*', '?']) {
                    return Err(invalid(format!("wildcards are not allowed in UIDs: {value:?}")));
                }
                let uids: Vec<String> = value.split('\\').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
                match uids.len() {
                    0 => Ok(Matcher::Universal),
                    1 => Ok(Matcher::Single(uids.into_iter().next().unwrap_or_default())),
                    _ => Ok(Matcher::UidList(uids)),
                }
            }
            ValueKind::Date | ValueKind::Time | ValueKind::DateTime => {
                let normalise = |text: &str, pad: char| -> Result<String> {
                    let (normalised, what) = match kind {
                        ValueKind::Date => (normalize_date(text), "date"),
                        ValueKind::Time => (normalize_time(text, pad), "time"),
                        _ => (normalize_datetime(text, pad), "date and time"),
                    };
                    normalised.ok_or_else(|| invalid(format!("not a valid {what}: {text:?}")))
                };
                if value.contains(['*', '?']) {
                    return Err(invalid(format!("wildcards are not allowed in dates and times: {value:?}")));
                }
                if kind == ValueKind::DateTime {
                    return datetime_matcher(value, |text, pad| normalise(text, pad).ok(), invalid);
                }
                match value.split_once('-') {
                    Some((lo, hi)) => {
                        let (lo, hi) = (lo.trim(), hi.trim());
                        if lo.is_empty() && hi.is_empty() {
                            return Err(invalid("a range needs at least one bound".into()));
                        }
                        let lo = if lo.is_empty() { None } else { Some(normalise(lo, '0')?) };
                        let hi = if hi.is_empty() { None } else { Some(normalise(hi, '9')?) };
                        if let (Some(l), Some(h)) = (&lo, &hi)
                            && l > h
                        {
                            return Err(invalid(format!("range is reversed: {value:?}")));
                        }
                        Ok(Matcher::Range { lo, hi })
                    }
                    None if kind != ValueKind::Date => {
                        // A single time matches that time at the precision it was given: the
                        // date and time `2024` is the whole year.
                        Ok(Matcher::Range { lo: Some(normalise(value, '0')?), hi: Some(normalise(value, '9')?) })
                    }
                    None => Ok(Matcher::Single(normalise(value, '0')?)),
                }
            }
            ValueKind::Integer => {
                let n: i64 = value.parse().map_err(|_| invalid(format!("not an integer: {value:?}")))?;
                Ok(Matcher::Single(n.to_string()))
            }
            ValueKind::PersonName => {
                let value = normalize_person_name(value);
                if value.contains(['*', '?']) { Ok(Matcher::Wildcard(value)) } else { Ok(Matcher::Single(value)) }
            }
            ValueKind::Text => {
                if value.contains(['*', '?']) {
                    Ok(Matcher::Wildcard(value.to_owned()))
                } else {
                    Ok(Matcher::Single(value.to_owned()))
                }
            }
        }
    }
}

impl Matcher {
    /// The key value that expresses this matcher in a C-FIND identifier (the inverse of
    /// [`Matcher::parse`] up to normalisation): an empty value for universal matching, two
    /// quotation marks for empty value matching, `lo-hi` for ranges.
    pub fn to_dicom(&self) -> String {
        match self {
            Matcher::Universal => String::new(),
            Matcher::Empty => "\"\"".into(),
            Matcher::Single(v) | Matcher::Wildcard(v) => v.clone(),
            Matcher::UidList(uids) => uids.join("\\"),
            Matcher::Range { lo, hi } => format!("{}-{}", lo.as_deref().unwrap_or(""), hi.as_deref().unwrap_or("")),
        }
    }
}

/// Normalises a Person Name value: empty trailing components (`^`) and component groups (`=`)
/// are insignificant (PS3.5 6.2.1), so `Wang^XiaoDong=王^小東=` becomes `Wang^XiaoDong=王^小東`.
pub fn normalize_person_name(value: &str) -> String {
    let groups: Vec<&str> = value.split('=').map(|g| g.trim_end_matches([' ', '^'])).collect();
    let keep = groups.iter().rposition(|g| !g.is_empty()).map_or(0, |i| i + 1);
    groups[..keep].join("=")
}

/// Normalises a DICOM date (`YYYYMMDD`, or the legacy `YYYY.MM.DD`) to `YYYYMMDD`.
///
/// Returns `None` when the text is not a plausible date.
pub fn normalize_date(text: &str) -> Option<String> {
    let digits: String = text.trim().chars().filter(|c| *c != '.').collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u32 = digits[4..6].parse().ok()?;
    let day: u32 = digits[6..8].parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(digits)
}

/// Normalises a DICOM time (`HH`, `HHMM`, `HHMMSS`, `HHMMSS.F...`, or the legacy `HH:MM:SS`) to
/// `HHMMSS.FFFFFF`, padding the missing digits with `pad` (`'0'` for a lower bound or a stored
/// value, `'9'` for an upper bound).
///
/// Returns `None` when the text is not a plausible time.
pub fn normalize_time(text: &str, pad: char) -> Option<String> {
    let text: String = text.trim().chars().filter(|c| *c != ':').collect();
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text.as_str(), None),
    };
    if whole.is_empty() || whole.len() > 6 || whole.len() % 2 != 0 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac
        && (whole.len() != 6 || f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let hour: u32 = whole[0..2].parse().ok()?;
    if hour > 23 {
        return None;
    }
    let mut out = String::with_capacity(13);
    out.push_str(whole);
    while out.len() < 6 {
        out.push(pad);
    }
    out.push('.');
    let frac = frac.unwrap_or("");
    out.push_str(frac);
    while out.len() < 13 {
        out.push(pad);
    }
    Some(out)
}

/// The matcher of a date and time key: a range `lo-hi` (either bound may be missing), or a single
/// value matching the period it names (`2024` is the whole year). A `-` is also the sign of a UTC
/// offset (`20240101120000-0500`), so the range separator is the first `-` that leaves a valid
/// date and time (or nothing) on both sides, in order; a text that is no such range is a single
/// value.
fn datetime_matcher(value: &str, normalise: impl Fn(&str, char) -> Option<String>, invalid: impl Fn(String) -> Error) -> Result<Matcher> {
    let mut reversed = false;
    for (at, _) in value.match_indices('-') {
        let (lo, hi) = (value[..at].trim(), value[at + 1..].trim());
        if lo.is_empty() && hi.is_empty() {
            continue;
        }
        // `Some(None)`: an open bound; `None`: not a date and time.
        let lo = if lo.is_empty() { Some(None) } else { normalise(lo, '0').map(Some) };
        let hi = if hi.is_empty() { Some(None) } else { normalise(hi, '9').map(Some) };
        let (Some(lo), Some(hi)) = (lo, hi) else { continue };
        if let (Some(l), Some(h)) = (&lo, &hi)
            && l > h
        {
            reversed = true;
            continue;
        }
        return Ok(Matcher::Range { lo, hi });
    }
    match (normalise(value, '0'), normalise(value, '9')) {
        (Some(lo), Some(hi)) => Ok(Matcher::Range { lo: Some(lo), hi: Some(hi) }),
        _ if reversed => Err(invalid(format!("range is reversed: {value:?}"))),
        _ if value.trim() == "-" => Err(invalid("a range needs at least one bound".into())),
        _ => Err(invalid(format!("not a valid date and time, nor a range of them: {value:?}"))),
    }
}

/// Normalises a DICOM date and time (`YYYY[MM[DD[HH[MM[SS[.F...]]]]]]`, with an optional UTC
/// offset `&ZZXX`) to `YYYYMMDDHHMMSS.FFFFFF`, padding the missing digits with `pad` (`'0'` for a
/// lower bound or a stored value, `'9'` for an upper bound). The offset is dropped: values are
/// compared as the local times they state.
///
/// Returns `None` when the text is not a plausible date and time.
pub fn normalize_datetime(text: &str, pad: char) -> Option<String> {
    let text = text.trim();
    // A UTC offset is the last five characters, a sign and four digits, after at least a year.
    let text = match text.len().checked_sub(5) {
        Some(at) if at >= 4 && text.is_char_boundary(at) => {
            let (value, offset) = text.split_at(at);
            // `&ZZXX`: hours up to 14 (offsets run from -1200 to +1400), minutes up to 59.
            let signed = offset.starts_with(['+', '-']) && offset[1..].bytes().all(|b| b.is_ascii_digit());
            if signed && offset[1..3] <= *"14" && offset[3..5] <= *"59" { value } else { text }
        }
        _ => text,
    };
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    if !matches!(whole.len(), 4 | 6 | 8 | 10 | 12 | 14) || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac
        && (whole.len() != 14 || f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let field = |range: std::ops::Range<usize>| whole.get(range).and_then(|d| d.parse::<u32>().ok());
    let valid = field(4..6).is_none_or(|m| (1..=12).contains(&m))
        && field(6..8).is_none_or(|d| (1..=31).contains(&d))
        && field(8..10).is_none_or(|h| h <= 23)
        && field(10..12).is_none_or(|m| m <= 59)
        && field(12..14).is_none_or(|s| s <= 60);
    if !valid {
        return None;
    }
    let mut out = String::with_capacity(21);
    out.push_str(whole);
    // Missing components: the lower bound is the first month, day and instant, the upper bound
    // anything up to the last (`9` sorts after every valid digit).
    let minimum = "0101000000";
    while out.len() < 14 {
        let next = if pad == '0' { minimum.as_bytes()[out.len() - 4] as char } else { pad };
        out.push(next);
    }
    out.push('.');
    out.push_str(frac.unwrap_or(""));
    while out.len() < 21 {
        out.push(pad);
    }
    Some(out)
}

/// One query key: an attribute and how to match it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The attribute matched.
    pub attribute: Attribute,
    /// How it is matched.
    pub matcher: Matcher,
}

/// Options of the matching rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchOptions {
    /// Match Person Name values without regard to case (PS3.4 C.2.2.2.1 allows it; QIDO-RS
    /// `fuzzymatching=true` turns it on).
    pub case_insensitive_pn: bool,
    /// When both StudyDate and StudyTime are given as ranges, match them as one combined
    /// date-time range (PS3.4 C.2.2.2.5.1, Relational-queries off, "combined" matching).
    pub combine_datetime: bool,
}

/// A query over the index at one level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The level of the records returned.
    pub level: QueryLevel,
    /// The matching keys; all must match (logical AND). At most one key per attribute.
    pub keys: Vec<Key>,
    /// Options of the matching rules.
    pub options: MatchOptions,
    /// At most this many records are returned.
    pub limit: Option<usize>,
    /// This many matching records are skipped first (records are ordered by their level's
    /// natural key, so paging is stable).
    pub offset: usize,
    /// Attributes to return besides the keys and the level's defaults.
    pub include: Vec<Attribute>,
    /// Compute only the derived attributes (counts of related records, ModalitiesInStudy,
    /// SOPClassesInStudy...) that a key names or `include` lists, not every one of the level.
    /// They are the costly part of a study or series query. C-FIND answers only what its
    /// identifier asks for, so it sets this; QIDO-RS returns the level's defaults and does not.
    pub requested_derived_only: bool,
}

impl Query {
    /// An empty query at `level`: it matches every record of that level.
    pub fn new(level: QueryLevel) -> Query {
        Query { level, keys: Vec::new(), options: MatchOptions::default(), limit: None, offset: 0, include: Vec::new(), requested_derived_only: false }
    }

    /// Adds a key parsed from its DICOM string form, replacing any key on the same attribute.
    ///
    /// Keys on levels below the query level are refused, as in C-FIND.
    pub fn with(mut self, attribute: Attribute, raw: &str) -> Result<Query> {
        if attribute.level() > self.level {
            return Err(Error::InvalidQuery {
                reason: format!("{} is a {} level attribute and cannot be matched in a {} level query", attribute.keyword(), attribute.level(), self.level),
            });
        }
        let matcher = Matcher::parse(attribute, raw)?;
        self.keys.retain(|k| k.attribute != attribute);
        self.keys.push(Key { attribute, matcher });
        Ok(self)
    }

    /// The key on `attribute`, if any.
    pub fn key(&self, attribute: Attribute) -> Option<&Matcher> {
        self.keys.iter().find(|k| k.attribute == attribute).map(|k| &k.matcher)
    }

    /// The attributes returned for each record: the level's defaults and those of the levels
    /// above, the matching keys, and the included attributes, without duplicates, in table order.
    /// With [`requested_derived_only`](Query::requested_derived_only), a derived attribute is
    /// among them only when a key names it or `include` lists it.
    pub fn return_attributes(&self) -> Vec<Attribute> {
        let mut out: Vec<Attribute> = Attribute::ALL
            .iter()
            .copied()
            .filter(|a| a.level() <= self.level)
            .filter(|a| {
                !a.is_derived()
                    || (a.level() == self.level && !self.requested_derived_only)
                    || self.include.contains(a)
                    || (self.requested_derived_only && self.key(*a).is_some())
            })
            .collect();
        out.dedup();
        out
    }
}

/// One record returned by a query: attribute values as normalised strings, multi-valued
/// attributes joined with `\`. Absent or empty values are not present in the map.
pub type QueryRow = BTreeMap<Attribute, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_normalise_with_their_padding() {
        assert_eq!(normalize_datetime("2024", '0').as_deref(), Some("20240101000000.000000"));
        assert_eq!(normalize_datetime("2024", '9').as_deref(), Some("20249999999999.999999"));
        assert_eq!(normalize_datetime("202402", '0').as_deref(), Some("20240201000000.000000"));
        assert_eq!(normalize_datetime("20240229", '0').as_deref(), Some("20240229000000.000000"));
        assert_eq!(normalize_datetime("20240229101530.25", '0').as_deref(), Some("20240229101530.250000"));
        assert_eq!(normalize_datetime("20240229101530.25-0500", '0').as_deref(), Some("20240229101530.250000"));
        assert_eq!(normalize_datetime("2024022910+0100", '9').as_deref(), Some("20240229109999.999999"));
        for bad in ["", "24", "20241", "20241301", "20240132", "2024013124", "202401311060", "20240131.5", "2024013110153.5", "2024x1"] {
            assert_eq!(normalize_datetime(bad, '0'), None, "{bad:?}");
        }
        let range = Matcher::parse_as(ValueKind::DateTime, "AcquisitionDateTime", "2023-2024").expect("a range of years");
        assert_eq!(range, Matcher::Range { lo: Some("20230101000000.000000".into()), hi: Some("20249999999999.999999".into()) });
        let single = Matcher::parse_as(ValueKind::DateTime, "AcquisitionDateTime", "20240131").expect("a day");
        assert_eq!(single, Matcher::Range { lo: Some("20240131000000.000000".into()), hi: Some("20240131999999.999999".into()) });
        assert!(Matcher::parse_as(ValueKind::DateTime, "AcquisitionDateTime", "2024*").is_err(), "no wildcards");
        assert!(Matcher::parse_as(ValueKind::DateTime, "AcquisitionDateTime", "2025-2024").is_err(), "reversed");
    }

    #[test]
    fn date_and_time_ranges_tell_the_separator_from_a_negative_offset() {
        let dt = |text: &str| Matcher::parse_as(ValueKind::DateTime, "AcquisitionDateTime", text);
        let range = |lo: Option<&str>, hi: Option<&str>| Matcher::Range { lo: lo.map(Into::into), hi: hi.map(Into::into) };
        let day = |d: &str| range(Some(&format!("{d}000000.000000")), Some(&format!("{d}999999.999999")));
        // Single values with an offset: the period they name, the offset dropped.
        assert_eq!(dt("20240131-0500").expect("single"), day("20240131"));
        assert_eq!(dt("20240131+1400").expect("single"), day("20240131"));
        assert_eq!(dt("20240131103000-0330").expect("single"), range(Some("20240131103000.000000"), Some("20240131103000.999999")));
        // Ranges whose bounds carry offsets, closed and open.
        let both = range(Some("20240101120000.000000"), Some("20240102120000.999999"));
        assert_eq!(dt("20240101120000-0500-20240102120000-0500").expect("range"), both);
        assert_eq!(dt("20240101120000+0100-20240102120000+0100").expect("range"), both);
        assert_eq!(dt("20240101120000-0500-20240102120000+0100").expect("range"), both);
        assert_eq!(dt("-20240102120000-0500").expect("open below"), range(None, Some("20240102120000.999999")));
        assert_eq!(dt("20240101120000-0500-").expect("open above"), range(Some("20240101120000.000000"), None));
        // A plain range still splits at its only dash.
        assert_eq!(dt("20240101-20240102").expect("range"), range(Some("20240101000000.000000"), Some("20240102999999.999999")));
        // `-2024` is no offset (hours past 14): a reversed range, not a year with an offset.
        let reversed = dt("2025-2024").expect_err("reversed").to_string();
        assert!(reversed.contains("reversed"), "{reversed}");
        for bad in ["-", "2024-01-31", "20240131-05", "20240131-0560-", "x-2024"] {
            let error = dt(bad).expect_err(bad).to_string();
            assert!(error.contains("AcquisitionDateTime"), "{bad}: {error}");
        }
    }

    #[test]
    fn to_dicom_is_parsed_back_to_the_same_matcher() {
        let cases = [
            (Attribute::PatientName, "DOE^J*"),
            (Attribute::PatientName, "Doe^John^^^"),
            (Attribute::PatientId, "\"\""),
            (Attribute::PatientId, ""),
            (Attribute::StudyInstanceUid, "1.2.3\\1.2.4"),
            (Attribute::StudyDate, "20240101-"),
            (Attribute::StudyDate, "-2024.01.31"),
            (Attribute::StudyDate, "20240101"),
            (Attribute::StudyTime, "1030"),
            (Attribute::StudyTime, "0800-1200"),
            (Attribute::SeriesNumber, "007"),
        ];
        for (attribute, raw) in cases {
            let matcher = Matcher::parse(attribute, raw).expect(raw);
            assert_eq!(Matcher::parse(attribute, &matcher.to_dicom()).expect(raw), matcher, "{attribute:?} {raw:?}");
        }
    }

    fn check(attribute: Attribute, input: &str, expected: Matcher) {
        assert_eq!(Matcher::parse(attribute, input).expect(input), expected, "{input}");
    }

    fn range(lo: Option<&str>, hi: Option<&str>) -> Matcher {
        Matcher::Range { lo: lo.map(Into::into), hi: hi.map(Into::into) }
    }

    #[test]
    fn matcher_kinds() {
        check(Attribute::PatientName, "", Matcher::Universal);
        check(Attribute::PatientName, "*", Matcher::Universal);
        check(Attribute::PatientName, "\"\"", Matcher::Empty);
        check(Attribute::PatientName, "DOE^*", Matcher::Wildcard("DOE^*".into()));
        check(Attribute::PatientId, "ID?1", Matcher::Wildcard("ID?1".into()));
        check(Attribute::PatientId, "ID 1 ", Matcher::Single("ID 1".into()));
        check(Attribute::StudyInstanceUid, "1.2.3", Matcher::Single("1.2.3".into()));
        check(Attribute::StudyInstanceUid, "1.2.3\\1.2.4", Matcher::UidList(vec!["1.2.3".into(), "1.2.4".into()]));
        check(Attribute::StudyDate, "20240101", Matcher::Single("20240101".into()));
        check(Attribute::StudyDate, "2024.01.01", Matcher::Single("20240101".into()));
        check(Attribute::StudyDate, "20240101-20240131", range(Some("20240101"), Some("20240131")));
        check(Attribute::StudyDate, "-20240101", range(None, Some("20240101")));
        check(Attribute::StudyDate, "20240101-", range(Some("20240101"), None));
        check(Attribute::StudyTime, "1030", range(Some("103000.000000"), Some("103099.999999")));
        check(Attribute::StudyTime, "0800-12", range(Some("080000.000000"), Some("129999.999999")));
        check(Attribute::SeriesNumber, "007", Matcher::Single("7".into()));
    }

    #[test]
    fn invalid_values_are_refused() {
        for (attribute, input) in [
            (Attribute::StudyDate, "2024"),
            (Attribute::StudyDate, "20241301"),
            (Attribute::StudyDate, "20240201-20240101"),
            (Attribute::StudyDate, "-"),
            (Attribute::StudyDate, "2024*"),
            (Attribute::StudyTime, "25"),
            (Attribute::StudyTime, "123"),
            (Attribute::StudyInstanceUid, "1.2.*"),
            (Attribute::SeriesNumber, "x"),
        ] {
            let err = Matcher::parse(attribute, input).expect_err(input);
            assert!(err.to_string().contains(attribute.keyword()), "{err}");
        }
    }

    #[test]
    fn normalised_person_names() {
        for (input, expected) in
            [("Wang^XiaoDong=王^小東=", "Wang^XiaoDong=王^小東"), ("DOE^JOHN^^^", "DOE^JOHN"), ("=Yamada", "=Yamada"), ("^^", ""), ("A^B=^=", "A^B")]
        {
            assert_eq!(normalize_person_name(input), expected, "{input}");
        }
        check(Attribute::PatientName, "DOE^JOHN^", Matcher::Single("DOE^JOHN".into()));
    }

    #[test]
    fn normalised_times() {
        assert_eq!(normalize_time("10", '0').as_deref(), Some("100000.000000"));
        assert_eq!(normalize_time("10:30:15", '0').as_deref(), Some("103015.000000"));
        assert_eq!(normalize_time("103015.5", '9').as_deref(), Some("103015.599999"));
        assert_eq!(normalize_time("103015.", '0'), None);
        assert_eq!(normalize_time("1030.5", '0'), None);
    }

    #[test]
    fn keys_below_the_level_are_refused() {
        let err = Query::new(QueryLevel::Study).with(Attribute::Modality, "CT").expect_err("series key at study level");
        assert!(err.to_string().contains("Modality"));
        let q = Query::new(QueryLevel::Series).with(Attribute::Modality, "CT").and_then(|q| q.with(Attribute::PatientId, "X"));
        assert!(q.is_ok());
    }

    #[test]
    fn derived_attributes_are_returned_by_default_or_when_asked_for() {
        let q = Query::new(QueryLevel::Study).with(Attribute::ModalitiesInStudy, "").expect("a universal key");
        let all = q.return_attributes();
        assert!(all.contains(&Attribute::NumberOfStudyRelatedInstances) && all.contains(&Attribute::ModalitiesInStudy));
        let asked = Query { requested_derived_only: true, ..q };
        let some = asked.return_attributes();
        assert!(some.contains(&Attribute::ModalitiesInStudy), "a key names it");
        assert!(!some.contains(&Attribute::NumberOfStudyRelatedInstances) && !some.contains(&Attribute::NumberOfStudyRelatedSeries));
        assert!(some.contains(&Attribute::StudyInstanceUid) && some.contains(&Attribute::PatientId), "plain attributes stay");
        let included = Query { include: vec![Attribute::NumberOfStudyRelatedSeries], ..asked };
        assert!(included.return_attributes().contains(&Attribute::NumberOfStudyRelatedSeries));
    }
}
