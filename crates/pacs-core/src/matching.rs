//! The reference matcher: DICOM PS3.4 C.2.2.2 attribute matching over normalised values.
//!
//! This module is the executable specification of how a [`Query`] selects records. Every
//! [`Index`](crate::Index) must return exactly the rows for which [`matches()`] is true; the SQL
//! index replicates the rules below, and its tests compare it against this module.
//!
//! # Row values
//!
//! A [`QueryRow`] holds normalised strings: dates `YYYYMMDD`, times `HHMMSS.FFFFFF` (13
//! characters), dates and times `YYYYMMDDHHMMSS.FFFFFF` (21 characters, of attributes outside the
//! index), integers in plain decimal, text trimmed. A multi-valued entry is its values joined
//! with `\` (e.g. ModalitiesInStudy `CT\MR`). An absent entry and an empty string both mean *no
//! value*; likewise an empty component of a multi-valued entry (`CT\`) is an empty value, which is
//! treated as no value.
//!
//! # Rules
//!
//! * **AND over keys.** A row matches a query when every key matches.
//! * **ANY over values.** A key matches a row entry when at least one of its `\`-separated values
//!   matches. An entry with no value is evaluated once, as *no value*.
//! * **Universal** matches always, whether or not the row has a value.
//! * **Empty** (the key `""`) matches iff the value is absent or empty.
//! * **Single** matches iff the value is exactly equal to the operand (byte equality of the
//!   normalised strings). For Person Name attributes ([`ValueKind::PersonName`]) with
//!   [`MatchOptions::case_insensitive_pn`], both sides are first folded with
//!   [`str::to_lowercase`] (full Unicode lower-casing, which may change the number of
//!   characters, e.g. `İ` becomes `i̇`). Every other kind, UIDs included, compares exactly.
//! * **Wildcard** matches iff [`wildcard_matches`] does: `*` matches any run of characters,
//!   possibly empty, `?` exactly one Unicode scalar value; every other character matches itself.
//!   There is no escape character. The Person Name case folding applies as for Single (the
//!   pattern and the value are both lower-cased).
//! * **UidList** matches iff the value is exactly equal to one of the operands.
//! * **Range** `{lo, hi}` matches iff `lo <= value <= hi` by plain string (byte-wise) comparison,
//!   a `None` bound being open. Bounds come padded from [`Matcher::parse`] (lower bounds with `0`,
//!   upper bounds with `9`), so the comparison of normalised values is exact. A reversed range
//!   (`lo > hi`, refused by the parser but constructible) matches nothing.
//! * **No value** (absent or empty) matches only Universal and Empty; Single, Wildcard (even a
//!   pattern made only of `*`), UidList and Range never match it.
//!
//! # Combined date-time matching (PS3.4 C.2.2.2.5.1)
//!
//! When [`MatchOptions::combine_datetime`] is set **and** the query has a [`Matcher::Range`] on
//! both StudyDate and StudyTime, those two keys are not matched independently but together, as
//! one range over the concatenation `date + time` (21 characters `YYYYMMDDHHMMSS.FFFFFF`):
//!
//! * value: StudyDate followed by StudyTime; a missing (or empty) StudyTime counts as
//!   `000000.000000`; a missing StudyDate never matches;
//! * lower bound: `lo_date + lo_time`, with a missing `lo_time` taken as `000000.000000`; if
//!   `lo_date` is open the range is open below (the time lower bound is then ignored);
//! * upper bound: `hi_date + hi_time`, with a missing `hi_time` taken as `999999.999999` (the
//!   padded upper-bound convention, above every valid time); if `hi_date` is open the range is
//!   open above (the time upper bound is then ignored);
//! * should either entry be multi-valued, the pair matches if any (date, time) combination does.
//!
//! So StudyDate `20240101-20240102` with StudyTime `2200-0600` selects the night from
//! 2024-01-01 22:00 to 2024-01-02 06:00, whereas independent matching would require a time both
//! after 22:00 and before 06:00 on either day. If either key is not a Range (for instance a single
//! StudyDate, which parses to [`Matcher::Single`]), or the option is off, both keys are matched
//! independently. Only the StudyDate / StudyTime pair is combined: SeriesDate has no indexed time
//! companion, and PatientBirthDate has none either.

use crate::attribute::{Attribute, ValueKind};
use crate::query::{MatchOptions, Matcher, Query, QueryRow};

/// The time counted for a row without StudyTime in combined date-time matching, and the time
/// lower bound used when the time range is open below.
const TIME_LOWEST: &str = "000000.000000";
/// The time upper bound used in combined date-time matching when the time range is open above.
const TIME_HIGHEST: &str = "999999.999999";

/// Whether `row` matches every key of `query` (logical AND).
///
/// Keys on attributes absent from the row match only [`Matcher::Universal`] and
/// [`Matcher::Empty`]. A multi-valued entry (values joined with `\`) matches a key when any of
/// its values does. With [`MatchOptions::combine_datetime`], Range keys on both StudyDate and
/// StudyTime are matched together as one date-time range (see the module documentation).
pub fn matches(query: &Query, row: &QueryRow) -> bool {
    let options = &query.options;
    let combined = if options.combine_datetime { combined_datetime_bounds(query) } else { None };
    if let Some(bounds) = &combined
        && !combined_datetime_matches(bounds, row)
    {
        return false;
    }
    query.keys.iter().all(|key| {
        if combined.is_some() && matches!(key.attribute, Attribute::StudyDate | Attribute::StudyTime) {
            // Already evaluated together above.
            return true;
        }
        entry_matches(key.attribute, &key.matcher, row.get(&key.attribute).map(String::as_str), options)
    })
}

/// Whether one row entry (possibly multi-valued, possibly absent) matches `matcher`: an entry
/// with no value is evaluated once as no value, otherwise any of its `\`-separated values must
/// match.
fn entry_matches(attribute: Attribute, matcher: &Matcher, entry: Option<&str>, options: &MatchOptions) -> bool {
    match entry {
        None | Some("") => value_matches(attribute, matcher, None, options),
        Some(text) => text.split('\\').any(|value| value_matches(attribute, matcher, Some(value), options)),
    }
}

/// Whether one value matches one matcher (a value is one of the `\`-separated values of a row
/// entry; `None` or an empty string is no value).
///
/// This applies the rules of the module documentation to a single value; it knows nothing of
/// combined date-time matching, which involves two attributes and is done by [`matches()`].
pub fn value_matches(attribute: Attribute, matcher: &Matcher, value: Option<&str>, options: &MatchOptions) -> bool {
    value_matches_kind(attribute.kind(), matcher, value, options)
}

/// [`value_matches`] for a value of `kind`, for attributes that need not be indexed (the kind of
/// their VR, [`ValueKind::for_vr`]): the same rules, Person Name folding included.
pub fn value_matches_kind(kind: ValueKind, matcher: &Matcher, value: Option<&str>, options: &MatchOptions) -> bool {
    let value = value.filter(|v| !v.is_empty());
    let fold = options.case_insensitive_pn && kind == ValueKind::PersonName;
    match (matcher, value) {
        (Matcher::Universal, _) => true,
        (Matcher::Empty, value) => value.is_none(),
        (_, None) => false,
        (Matcher::Single(expected), Some(value)) => {
            if fold {
                expected.to_lowercase() == value.to_lowercase()
            } else {
                expected == value
            }
        }
        (Matcher::Wildcard(pattern), Some(value)) => {
            if fold {
                wildcard_matches(&pattern.to_lowercase(), &value.to_lowercase())
            } else {
                wildcard_matches(pattern, value)
            }
        }
        (Matcher::UidList(uids), Some(value)) => uids.iter().any(|uid| uid == value),
        (Matcher::Range { lo, hi }, Some(value)) => in_range(value, lo.as_deref(), hi.as_deref()),
    }
}

/// Whether the values of one element (normalised, and already split: LT, ST and UT values may
/// hold a backslash) match `matcher`: an element with no value (no values, or only empty ones)
/// is evaluated once as no value, otherwise any value must match, as for multi-valued entries.
pub fn values_match_kind(kind: ValueKind, matcher: &Matcher, values: &[String], options: &MatchOptions) -> bool {
    if values.iter().all(String::is_empty) {
        return value_matches_kind(kind, matcher, None, options);
    }
    values.iter().any(|v| value_matches_kind(kind, matcher, Some(v), options))
}

/// `lo <= value <= hi` by string comparison, `None` bounds being open.
fn in_range(value: &str, lo: Option<&str>, hi: Option<&str>) -> bool {
    lo.is_none_or(|lo| lo <= value) && hi.is_none_or(|hi| value <= hi)
}

/// Wildcard matching: `*` any run (possibly empty) of characters, `?` exactly one character (a
/// Unicode scalar, not a byte); every other character matches itself, with no escape.
///
/// Runs in O(pattern × value) time at worst and O(pattern + value) space, with no exponential
/// backtracking: the classic two-pointer algorithm that, on a mismatch, only backtracks to the
/// most recent `*` (earlier stars never need revisiting).
pub fn wildcard_matches(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let value: Vec<char> = value.chars().collect();
    let (mut p, mut v) = (0usize, 0usize);
    // The position just after the last `*` seen, and the value position it is currently
    // assumed to resume at.
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                star = Some((p, v));
            }
            Some(&c) if c == '?' || c == value[v] => {
                p += 1;
                v += 1;
            }
            _ => match star {
                Some((after_star, resume)) => {
                    // Let the last `*` absorb one more character and retry.
                    p = after_star;
                    v = resume + 1;
                    star = Some((after_star, resume + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The bounds of a combined StudyDate + StudyTime range.
struct DateTimeBounds {
    /// Inclusive lower bound on `date + time`, or open.
    lo: Option<String>,
    /// Inclusive upper bound on `date + time`, or open.
    hi: Option<String>,
}

/// The combined bounds when the query has Range keys on both StudyDate and StudyTime.
fn combined_datetime_bounds(query: &Query) -> Option<DateTimeBounds> {
    let (Matcher::Range { lo: lo_date, hi: hi_date }, Matcher::Range { lo: lo_time, hi: hi_time }) =
        (query.key(Attribute::StudyDate)?, query.key(Attribute::StudyTime)?)
    else {
        return None;
    };
    let lo = lo_date.as_ref().map(|d| format!("{d}{}", lo_time.as_deref().unwrap_or(TIME_LOWEST)));
    let hi = hi_date.as_ref().map(|d| format!("{d}{}", hi_time.as_deref().unwrap_or(TIME_HIGHEST)));
    Some(DateTimeBounds { lo, hi })
}

/// Whether the row's StudyDate + StudyTime falls in the combined range (any combination of
/// values, should either entry be multi-valued).
fn combined_datetime_matches(bounds: &DateTimeBounds, row: &QueryRow) -> bool {
    let values =
        |attribute: Attribute| -> Vec<&str> { row.get(&attribute).map(|text| text.split('\\').filter(|v| !v.is_empty()).collect()).unwrap_or_default() };
    let dates = values(Attribute::StudyDate);
    let mut times = values(Attribute::StudyTime);
    if times.is_empty() {
        times.push(TIME_LOWEST);
    }
    dates.iter().any(|date| {
        times.iter().any(|time| {
            let datetime = format!("{date}{time}");
            in_range(&datetime, bounds.lo.as_deref(), bounds.hi.as_deref())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Key, QueryLevel};
    use proptest::prelude::*;

    const PLAIN: MatchOptions = MatchOptions { case_insensitive_pn: false, combine_datetime: false };
    const FOLD: MatchOptions = MatchOptions { case_insensitive_pn: true, combine_datetime: false };
    const COMBINE: MatchOptions = MatchOptions { case_insensitive_pn: false, combine_datetime: true };

    fn row(entries: &[(Attribute, &str)]) -> QueryRow {
        entries.iter().map(|(a, v)| (*a, (*v).to_owned())).collect()
    }

    fn query_of(keys: Vec<Key>, options: MatchOptions) -> Query {
        Query { keys, options, ..Query::new(QueryLevel::Instance) }
    }

    /// Parses `key` for `attribute`, matches it against a row holding `value` (or nothing), and
    /// checks the result; also checks that `value_matches` agrees for single values.
    fn check(attribute: Attribute, key: &str, value: Option<&str>, options: MatchOptions, expected: bool) {
        let matcher = Matcher::parse(attribute, key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        check_matcher(attribute, matcher, value, options, expected);
    }

    fn check_matcher(attribute: Attribute, matcher: Matcher, value: Option<&str>, options: MatchOptions, expected: bool) {
        let record = value.map(|v| row(&[(attribute, v)])).unwrap_or_default();
        if value.is_none_or(|v| !v.contains('\\')) {
            assert_eq!(value_matches(attribute, &matcher, value, &options), expected, "value_matches {attribute:?} {matcher:?} {value:?} {options:?}");
        }
        let query = query_of(vec![Key { attribute, matcher: matcher.clone() }], options);
        assert_eq!(matches(&query, &record), expected, "matches {attribute:?} {matcher:?} {value:?} {options:?}");
    }

    #[test]
    fn universal_and_empty() {
        use Attribute::*;
        for key in ["", "*", "  "] {
            check(PatientName, key, Some("DOE^JOHN"), PLAIN, true);
            check(PatientName, key, None, PLAIN, true);
            check(StudyDate, key, None, PLAIN, true);
            check(StudyInstanceUid, key, Some("1.2.3"), PLAIN, true);
        }
        check(PatientName, "\"\"", None, PLAIN, true);
        check(PatientName, "\"\"", Some(""), PLAIN, true);
        check(PatientName, "\"\"", Some("DOE"), PLAIN, false);
        check(StudyDate, "\"\"", None, PLAIN, true);
        check(StudyDate, "\"\"", Some("20240101"), PLAIN, false);
        check(ModalitiesInStudy, "\"\"", Some("CT\\MR"), PLAIN, false);
        check(ModalitiesInStudy, "\"\"", Some("CT\\"), PLAIN, true);
    }

    #[test]
    fn single_values() {
        use Attribute::*;
        check(PatientId, "ID1", Some("ID1"), PLAIN, true);
        check(PatientId, "ID1", Some("ID10"), PLAIN, false);
        check(PatientId, "ID1", Some("id1"), FOLD, false); // Text is never folded.
        check(PatientId, "ID1", None, PLAIN, false);
        check(PatientId, "ID1", Some(""), PLAIN, false);
        check(StudyInstanceUid, "1.2.3", Some("1.2.3"), PLAIN, true);
        check(StudyInstanceUid, "1.2.3", Some("1.2.3.4"), PLAIN, false);
        check(StudyInstanceUid, "1.2.3", None, PLAIN, false);
        check(StudyDate, "2024.01.01", Some("20240101"), PLAIN, true);
        check(StudyDate, "20240101", Some("20240102"), PLAIN, false);
        check(SeriesNumber, "007", Some("7"), PLAIN, true);
        check(SeriesNumber, "7", Some("70"), PLAIN, false);
        // A single time is a range at the precision given.
        check(StudyTime, "1030", Some("103059.500000"), PLAIN, true);
        check(StudyTime, "1030", Some("103100.000000"), PLAIN, false);
    }

    #[test]
    fn person_name_case_folding() {
        use Attribute::*;
        check(PatientName, "DOE^JOHN", Some("Doe^John"), PLAIN, false);
        check(PatientName, "DOE^JOHN", Some("Doe^John"), FOLD, true);
        check(PatientName, "DOE^JOHN", Some("DOE^JOHN"), FOLD, true);
        check(PatientName, "DOE^JOHN", Some("DOE^JANE"), FOLD, false);
        check(PatientName, "ÉLODIE", Some("élodie"), PLAIN, false);
        check(PatientName, "ÉLODIE", Some("élodie"), FOLD, true);
        check(ReferringPhysicianName, "smith", Some("SMITH"), FOLD, true);
        check(PatientName, "doe*", Some("DOE^JOHN"), PLAIN, false);
        check(PatientName, "doe*", Some("DOE^JOHN"), FOLD, true);
        check(PatientName, "D?E^*", Some("dóe^x"), FOLD, true);
        // The option only applies to Person Names.
        check(StudyDescription, "head*", Some("HEAD CT"), FOLD, false);
        check(StudyDescription, "HEAD*", Some("HEAD CT"), FOLD, true);
    }

    #[test]
    fn wildcards() {
        use Attribute::*;
        check(PatientName, "DOE^*", Some("DOE^JOHN"), PLAIN, true);
        check(PatientName, "DOE^*", Some("DOE^"), PLAIN, true);
        check(PatientName, "DOE^*", Some("DOE"), PLAIN, false);
        check(PatientName, "*JOHN", Some("DOE^JOHN"), PLAIN, true);
        check(PatientName, "*O*N*", Some("DOE^JOHN"), PLAIN, true);
        check(PatientId, "ID?1", Some("IDx1"), PLAIN, true);
        check(PatientId, "ID?1", Some("IDé1"), PLAIN, true);
        check(PatientId, "ID?1", Some("ID1"), PLAIN, false);
        check(PatientId, "ID?1", Some("IDxx1"), PLAIN, false);
        check(PatientId, "ID?", None, PLAIN, false);
        check_matcher(PatientId, Matcher::Wildcard("**".into()), None, PLAIN, false);
        check_matcher(PatientId, Matcher::Wildcard("**".into()), Some("x"), PLAIN, true);
    }

    #[test]
    fn wildcard_function() {
        for (pattern, value, expected) in [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("?", "", false),
            ("?", "é", true),
            ("??", "é", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("a*b*c*", "aXbYcZ", true),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("*ab", "aab", true),
            ("a*", "*", false),
            ("*", "*?", true),
            ("\\*", "\\x", true),
        ] {
            assert_eq!(wildcard_matches(pattern, value), expected, "{pattern:?} {value:?}");
        }
        // No exponential blow-up on a pathological pattern.
        let value = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(200));
        assert!(!wildcard_matches(&pattern, &value));
    }

    #[test]
    fn uid_lists() {
        use Attribute::*;
        check(SeriesInstanceUid, "1.2.3\\1.2.4", Some("1.2.4"), PLAIN, true);
        check(SeriesInstanceUid, "1.2.3\\1.2.4", Some("1.2.5"), PLAIN, false);
        check(SeriesInstanceUid, "1.2.3\\1.2.4", Some("1.2"), PLAIN, false);
        check(SeriesInstanceUid, "1.2.3\\1.2.4", None, PLAIN, false);
    }

    #[test]
    fn ranges() {
        use Attribute::*;
        let jan = "20240101-20240131";
        check(StudyDate, jan, Some("20240101"), PLAIN, true);
        check(StudyDate, jan, Some("20240115"), PLAIN, true);
        check(StudyDate, jan, Some("20240131"), PLAIN, true);
        check(StudyDate, jan, Some("20231231"), PLAIN, false);
        check(StudyDate, jan, Some("20240201"), PLAIN, false);
        check(StudyDate, jan, None, PLAIN, false);
        check(StudyDate, "-20240101", Some("19000101"), PLAIN, true);
        check(StudyDate, "-20240101", Some("20240102"), PLAIN, false);
        check(StudyDate, "-20240101", None, PLAIN, false);
        check(StudyDate, "20240101-", Some("29991231"), PLAIN, true);
        check(StudyDate, "20240101-", Some("20231231"), PLAIN, false);
        check(PatientBirthDate, "19800101-19891231", Some("19850615"), PLAIN, true);
        check(StudyTime, "0800-12", Some("080000.000000"), PLAIN, true);
        check(StudyTime, "0800-12", Some("125959.999999"), PLAIN, true);
        check(StudyTime, "0800-12", Some("075959.999999"), PLAIN, false);
        check(StudyTime, "0800-12", Some("130000.000000"), PLAIN, false);
        check(StudyTime, "-1030", Some("103059.000000"), PLAIN, true);
        check(StudyTime, "1030-", Some("102959.999999"), PLAIN, false);
        check(StudyTime, "1030-", None, PLAIN, false);
        // A reversed range (refused by the parser) matches nothing.
        let reversed = Matcher::Range { lo: Some("20240201".into()), hi: Some("20240101".into()) };
        check_matcher(StudyDate, reversed, Some("20240115"), PLAIN, false);
    }

    #[test]
    fn multi_valued_entries() {
        use Attribute::*;
        check(ModalitiesInStudy, "MR", Some("CT\\MR"), PLAIN, true);
        check(ModalitiesInStudy, "CT", Some("CT\\MR"), PLAIN, true);
        check(ModalitiesInStudy, "PT", Some("CT\\MR"), PLAIN, false);
        check(ModalitiesInStudy, "C?", Some("MR\\CT"), PLAIN, true);
        check(PatientName, "smith", Some("DOE\\SMITH"), FOLD, true);
        check(StudyDate, "20240101-20240131", Some("20231201\\20240110"), PLAIN, true);
        check(StudyDate, "20240101-20240131", Some("20231201\\20240210"), PLAIN, false);
        check(SeriesInstanceUid, "1.2.3\\1.2.4", Some("1.2.9\\1.2.3"), PLAIN, true);
    }

    #[test]
    fn kinds_outside_the_index_follow_the_same_rules() {
        let parse = |kind, raw: &str| Matcher::parse_as(kind, "Keyword", raw).unwrap_or_else(|e| panic!("{e}"));
        let values = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
        // The same answers as the indexed attributes of the same kind.
        for (attribute, key, value) in [
            (Attribute::PatientName, "doe*", "DOE^JOHN"),
            (Attribute::StudyDate, "20240101-20240131", "20240115"),
            (Attribute::StudyTime, "1030", "103059.000000"),
            (Attribute::SeriesNumber, "007", "7"),
            (Attribute::StudyInstanceUid, "1.2\\1.3", "1.3"),
            (Attribute::StudyDescription, "HEAD*", "HEAD CT"),
        ] {
            for options in [PLAIN, FOLD] {
                let by_attribute = value_matches(attribute, &Matcher::parse(attribute, key).unwrap_or_else(|e| panic!("{e}")), Some(value), &options);
                let by_kind = values_match_kind(attribute.kind(), &parse(attribute.kind(), key), &values(&[value]), &options);
                assert_eq!(by_attribute, by_kind, "{attribute:?} {key} {value} {options:?}");
            }
        }
        // Any value; no value is only matched by universal and empty matching.
        let text = ValueKind::Text;
        assert!(values_match_kind(text, &parse(text, "AXIAL"), &values(&["ORIGINAL", "PRIMARY", "AXIAL"]), &PLAIN));
        assert!(!values_match_kind(text, &parse(text, "LOCALIZER"), &values(&["ORIGINAL", "PRIMARY", "AXIAL"]), &PLAIN));
        assert!(values_match_kind(text, &parse(text, "\"\""), &values(&[]), &PLAIN));
        assert!(values_match_kind(text, &parse(text, "\"\""), &values(&["", ""]), &PLAIN));
        assert!(!values_match_kind(text, &parse(text, "\"\""), &values(&["x"]), &PLAIN));
        assert!(!values_match_kind(text, &parse(text, "*x*"), &values(&[]), &PLAIN));
        // A value with a backslash (LT) stays one value.
        assert!(values_match_kind(text, &parse(text, "a\\b*"), &values(&["a\\bc"]), &PLAIN));
        assert!(Matcher::parse_as(ValueKind::Date, "ContentDate", "2024").expect_err("bad date").to_string().contains("ContentDate"));
    }

    #[test]
    fn keys_are_anded() {
        use Attribute::*;
        let query = Query::new(QueryLevel::Series)
            .with(PatientName, "DOE*")
            .and_then(|q| q.with(Modality, "CT"))
            .and_then(|q| q.with(StudyDate, "20240101-"))
            .unwrap_or_else(|e| panic!("{e}"));
        let full = row(&[(PatientName, "DOE^JOHN"), (Modality, "CT"), (StudyDate, "20240301")]);
        assert!(matches(&query, &full));
        let mut other = full.clone();
        other.insert(Modality, "MR".into());
        assert!(!matches(&query, &other));
        let mut missing = full.clone();
        missing.remove(&StudyDate);
        assert!(!matches(&query, &missing));
        // No keys: everything matches.
        assert!(matches(&Query::new(QueryLevel::Study), &QueryRow::new()));
        // Keys on absent attributes match only Universal and Empty.
        let query = Query::new(QueryLevel::Study).with(AccessionNumber, "").and_then(|q| q.with(StudyId, "\"\"")).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&query, &QueryRow::new()));
    }

    fn datetime_query(date: Matcher, time: Matcher, options: MatchOptions) -> Query {
        query_of(vec![Key { attribute: Attribute::StudyDate, matcher: date }, Key { attribute: Attribute::StudyTime, matcher: time }], options)
    }

    fn range(lo: Option<&str>, hi: Option<&str>) -> Matcher {
        Matcher::Range { lo: lo.map(Into::into), hi: hi.map(Into::into) }
    }

    fn study_at(date: Option<&str>, time: Option<&str>) -> QueryRow {
        let mut row = QueryRow::new();
        if let Some(d) = date {
            row.insert(Attribute::StudyDate, d.into());
        }
        if let Some(t) = time {
            row.insert(Attribute::StudyTime, t.into());
        }
        row
    }

    #[test]
    fn combined_datetime_overnight() {
        // StudyDate 20240101-20240102, StudyTime 2200-0600: the night of 1 to 2 January. The time
        // range is reversed, which the parser refuses alone, so it is built directly.
        let date = range(Some("20240101"), Some("20240102"));
        let time = range(Some("220000.000000"), Some("069999.999999"));
        let combined = datetime_query(date.clone(), time.clone(), COMBINE);
        let independent = datetime_query(date, time, PLAIN);
        for (d, t, expected_combined, expected_independent) in [
            ("20240101", "230000.000000", true, false),
            ("20240101", "220000.000000", true, false),
            ("20240102", "030000.000000", true, false),
            ("20240102", "060000.000000", true, false),
            ("20240102", "065959.999999", true, false),
            ("20240101", "120000.000000", false, false),
            ("20240101", "030000.000000", false, false),
            ("20240102", "230000.000000", false, false),
            ("20240102", "070000.000000", false, false),
            ("20231231", "230000.000000", false, false),
        ] {
            let row = study_at(Some(d), Some(t));
            assert_eq!(matches(&combined, &row), expected_combined, "combined {d} {t}");
            assert_eq!(matches(&independent, &row), expected_independent, "independent {d} {t}");
        }
    }

    #[test]
    fn combined_datetime_differs_from_independent() {
        // 20240101-20240102 with 1000-1200, parsed as usual.
        let parse = |a, k| Matcher::parse(a, k).unwrap_or_else(|e| panic!("{e}"));
        let date = parse(Attribute::StudyDate, "20240101-20240102");
        let time = parse(Attribute::StudyTime, "1000-1200");
        let combined = datetime_query(date.clone(), time.clone(), COMBINE);
        let independent = datetime_query(date, time, PLAIN);
        for (d, t, expected_combined, expected_independent) in [
            ("20240101", Some("110000.000000"), true, true),
            ("20240102", Some("110000.000000"), true, true),
            ("20240101", Some("130000.000000"), true, false),
            ("20240102", Some("080000.000000"), true, false),
            ("20240101", Some("090000.000000"), false, false),
            // `1200` as an upper bound means up to 12:00:59.999999.
            ("20240102", Some("120059.999999"), true, true),
            ("20240102", Some("120100.000000"), false, false),
            // A missing time counts as midnight when combined; never matches independently.
            ("20240102", None, true, false),
            ("20240101", None, false, false),
        ] {
            let row = study_at(Some(d), t);
            assert_eq!(matches(&combined, &row), expected_combined, "combined {d} {t:?}");
            assert_eq!(matches(&independent, &row), expected_independent, "independent {d} {t:?}");
        }
        // A missing date never matches.
        assert!(!matches(&combined, &study_at(None, Some("110000.000000"))));
    }

    #[test]
    fn combined_datetime_open_bounds() {
        let t = range;
        // Open date below: the time lower bound is ignored.
        let q = datetime_query(t(None, Some("20240101")), t(Some("100000.000000"), Some("129999.999999")), COMBINE);
        assert!(matches(&q, &study_at(Some("19990101"), Some("000000.000000"))));
        assert!(matches(&q, &study_at(Some("20240101"), Some("125959.000000"))));
        assert!(!matches(&q, &study_at(Some("20240101"), Some("130000.000000"))));
        // Open date above: the time upper bound is ignored.
        let q = datetime_query(t(Some("20240101"), None), t(Some("100000.000000"), Some("129999.999999")), COMBINE);
        assert!(!matches(&q, &study_at(Some("20240101"), Some("095959.000000"))));
        assert!(matches(&q, &study_at(Some("20240101"), Some("230000.000000"))));
        assert!(matches(&q, &study_at(Some("29991231"), Some("000000.000000"))));
        // Open time bounds: whole days.
        let q = datetime_query(t(Some("20240101"), Some("20240102")), t(Some("100000.000000"), None), COMBINE);
        assert!(matches(&q, &study_at(Some("20240102"), Some("235959.999999"))));
        assert!(!matches(&q, &study_at(Some("20240103"), Some("000000.000000"))));
        let q = datetime_query(t(Some("20240101"), Some("20240102")), t(None, Some("129999.999999")), COMBINE);
        assert!(matches(&q, &study_at(Some("20240101"), Some("000000.000000"))));
        assert!(matches(&q, &study_at(Some("20240101"), None)));
        // Only ranges on both are combined: a single date is matched on its own.
        let q = datetime_query(Matcher::Single("20240101".into()), t(Some("220000.000000"), Some("069999.999999")), COMBINE);
        assert!(!matches(&q, &study_at(Some("20240101"), Some("230000.000000"))));
        // Other keys are still ANDed with the combined range.
        let mut q = datetime_query(t(Some("20240101"), Some("20240102")), t(Some("220000.000000"), Some("069999.999999")), COMBINE);
        q.keys.push(Key { attribute: Attribute::PatientId, matcher: Matcher::Single("P".into()) });
        let mut row = study_at(Some("20240101"), Some("230000.000000"));
        assert!(!matches(&q, &row));
        row.insert(Attribute::PatientId, "P".into());
        assert!(matches(&q, &row));
    }

    /// Oracle: a dynamic-programming table over characters.
    fn wildcard_oracle(pattern: &str, value: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let v: Vec<char> = value.chars().collect();
        // table[i][j]: whether p[..i] matches v[..j].
        let mut table = vec![vec![false; v.len() + 1]; p.len() + 1];
        table[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=v.len() {
                table[i][j] = match p[i - 1] {
                    '*' => table[i - 1][j] || (j > 0 && table[i][j - 1]),
                    '?' => j > 0 && table[i - 1][j - 1],
                    c => j > 0 && v[j - 1] == c && table[i - 1][j - 1],
                };
            }
        }
        table[p.len()][v.len()]
    }

    fn date_strategy() -> impl Strategy<Value = (u32, u32, u32)> {
        (1900u32..2100, 1u32..=12, 1u32..=31)
    }

    fn format_date((y, m, d): (u32, u32, u32), legacy: bool) -> String {
        if legacy { format!("{y:04}.{m:02}.{d:02}") } else { format!("{y:04}{m:02}{d:02}") }
    }

    /// A date and time to the minute, as `(YYYYMMDDHHMM as an integer, its text)`.
    fn minute_strategy() -> impl Strategy<Value = (u64, String)> {
        (1900u64..2100, 1u64..=12, 1u64..=28, 0u64..24, 0u64..60).prop_map(|(y, mo, d, h, mi)| {
            let n = (((y * 100 + mo) * 100 + d) * 100 + h) * 100 + mi;
            (n, format!("{n:012}"))
        })
    }

    /// A UTC offset `&ZZXX`, or none.
    fn offset_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            (any::<bool>(), 0u32..=14, prop::sample::select(vec![0u32, 30, 45]))
                .prop_map(|(plus, h, m)| format!("{}{h:02}{m:02}", if plus { '+' } else { '-' })),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_key_is_parsed_or_refused_and_matching_never_panics(
            attribute in prop::sample::select(Attribute::ALL.to_vec()),
            key in prop_oneof![
                "[0-9\\-+.*?\\\\ ]{0,24}",
                "[0-9]{4,14}([+-][0-9]{4})?(-[0-9]{4,14}([+-][0-9]{4})?)?",
                ".{0,16}",
            ],
            value in prop_oneof!["[0-9.+\\- ]{0,24}", ".{0,12}"],
            fold in any::<bool>(),
            combine in any::<bool>(),
        ) {
            let options = MatchOptions { case_insensitive_pn: fold, combine_datetime: combine };
            for (kind, parsed) in [
                (attribute.kind(), Matcher::parse(attribute, &key).map(|m| (Some(attribute), m))),
                (ValueKind::DateTime, Matcher::parse_as(ValueKind::DateTime, "AcquisitionDateTime", &key).map(|m| (None, m))),
            ] {
                let Ok((attribute, matcher)) = parsed else { continue };
                let _ = value_matches_kind(kind, &matcher, Some(&value), &options);
                let _ = value_matches_kind(kind, &matcher, None, &options);
                if let Some(attribute) = attribute {
                    let query = query_of(vec![Key { attribute, matcher }], options);
                    let _ = matches(&query, &row(&[(attribute, value.as_str())]));
                }
            }
        }

        #[test]
        fn datetime_ranges_with_offsets_agree_with_an_integer_oracle(
            value in minute_strategy(),
            lo in proptest::option::of((minute_strategy(), offset_strategy())),
            hi in proptest::option::of((minute_strategy(), offset_strategy())),
        ) {
            prop_assume!(lo.is_some() || hi.is_some());
            let text = |bound: &Option<((u64, String), String)>| bound.as_ref().map(|((_, t), offset)| format!("{t}{offset}")).unwrap_or_default();
            let key = format!("{}-{}", text(&lo), text(&hi));
            let parsed = Matcher::parse_as(ValueKind::DateTime, "AcquisitionDateTime", &key);
            let (lo, hi) = (lo.map(|((n, _), _)| n), hi.map(|((n, _), _)| n));
            if let (Some(l), Some(h)) = (lo, hi)
                && l > h
            {
                prop_assert!(parsed.is_err(), "{:?} should be refused", key);
                return Ok(());
            }
            let matcher = parsed.map_err(|e| TestCaseError::fail(format!("{key:?}: {e}")))?;
            // Offsets are dropped: values compare as the local times they state.
            let oracle = lo.is_none_or(|l| l <= value.0) && hi.is_none_or(|h| value.0 <= h);
            prop_assert_eq!(value_matches_kind(ValueKind::DateTime, &matcher, Some(&value.1), &PLAIN), oracle, "{:?} {:?}", key, value.1);
        }

        #[test]
        fn wildcard_agrees_with_oracle(pattern in "[ab*?é]{0,8}", value in "[abé]{0,10}") {
            prop_assert_eq!(wildcard_matches(&pattern, &value), wildcard_oracle(&pattern, &value), "{:?} {:?}", pattern, value);
        }

        #[test]
        fn wildcard_agrees_with_oracle_on_longer_strings(pattern in "[a*?]{0,16}", value in "[ab]{0,24}") {
            prop_assert_eq!(wildcard_matches(&pattern, &value), wildcard_oracle(&pattern, &value), "{:?} {:?}", pattern, value);
        }

        #[test]
        fn date_ranges_agree_with_integer_oracle(
            date in date_strategy(),
            lo in proptest::option::of(date_strategy()),
            hi in proptest::option::of(date_strategy()),
            legacy in any::<bool>(),
        ) {
            let as_int = |(y, m, d): (u32, u32, u32)| y * 10_000 + m * 100 + d;
            let key = match (lo, hi) {
                (None, None) => String::new(),
                _ => format!("{}-{}", lo.map(|l| format_date(l, legacy)).unwrap_or_default(), hi.map(|h| format_date(h, legacy)).unwrap_or_default()),
            };
            let parsed = Matcher::parse(Attribute::StudyDate, &key);
            if let (Some(l), Some(h)) = (lo, hi)
                && as_int(l) > as_int(h)
            {
                prop_assert!(parsed.is_err(), "{:?} should be refused", key);
                return Ok(());
            }
            let matcher = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let value = format_date(date, false);
            let oracle = lo.is_none_or(|l| as_int(l) <= as_int(date)) && hi.is_none_or(|h| as_int(date) <= as_int(h));
            prop_assert_eq!(value_matches(Attribute::StudyDate, &matcher, Some(&value), &PLAIN), oracle, "{:?} {:?}", key, value);
        }

        #[test]
        fn multi_valued_entry_is_or_of_values(
            attribute in prop::sample::select(vec![Attribute::ModalitiesInStudy, Attribute::PatientName, Attribute::StudyInstanceUid]),
            key in prop_oneof![Just("\"\"".to_owned()), "[Aa*?]{0,3}", "[Aa]{1,2}(\\\\[Aa]{1,2})?"],
            values in prop::collection::vec("[Aa]{0,2}", 1..4),
            fold in any::<bool>(),
        ) {
            let Ok(matcher) = Matcher::parse(attribute, &key) else {
                // Wildcards in UIDs are refused; nothing to match.
                return Ok(());
            };
            let options = MatchOptions { case_insensitive_pn: fold, combine_datetime: false };
            let query = query_of(vec![Key { attribute, matcher }], options);
            let single = |v: &str| {
                let mut r = QueryRow::new();
                if !v.is_empty() {
                    r.insert(attribute, v.to_owned());
                }
                matches(&query, &r)
            };
            let joined = row(&[(attribute, values.join("\\").as_str())]);
            prop_assert_eq!(matches(&query, &joined), values.iter().any(|v| single(v)), "{:?} {:?}", key, values);
        }
    }
}
