//! The attributes the archive indexes, with their tag, keyword, level and matching kind.
//!
//! Every indexed attribute is one variant of [`Attribute`]. The table below is the single source of
//! truth for which tag goes where: extraction, the query model, the SQL index and the command line
//! all read it, so adding an indexed attribute is one row here plus a column in the index.

use crate::QueryLevel;

/// How values of an attribute are compared by the matching rules (PS3.4 C.2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Free text (LO, SH, CS, LT...): single value and wildcard matching, case-sensitive.
    Text,
    /// Person Name (PN): as text, optionally case-insensitive.
    PersonName,
    /// Date (DA), normalised to `YYYYMMDD`; supports range matching.
    Date,
    /// Time (TM), normalised to `HHMMSS.FFFFFF`; supports range matching.
    Time,
    /// Date and time (DT), normalised to `YYYYMMDDHHMMSS.FFFFFF` (a UTC offset dropped: values are
    /// compared as the local times they state); supports range matching. Only attributes outside
    /// the index have this kind.
    DateTime,
    /// Unique identifier (UI): single value or list-of-UID matching, no wildcards.
    Uid,
    /// Integer string or count (IS, US, derived counts): exact single value matching.
    Integer,
}

impl ValueKind {
    /// The kind by which values of an attribute of Value Representation `vr` (`"PN"`, `"DA"`...)
    /// are matched, for attributes outside the index; `None` for the VRs the matching rules do
    /// not cover (sequences, binary and floating point values, attribute tags).
    ///
    /// DS is matched as text (its values as written, trimmed), like the other string VRs.
    pub fn for_vr(vr: &str) -> Option<ValueKind> {
        Some(match vr {
            "PN" => ValueKind::PersonName,
            "DA" => ValueKind::Date,
            "TM" => ValueKind::Time,
            "DT" => ValueKind::DateTime,
            "UI" => ValueKind::Uid,
            "IS" | "US" | "UL" | "SS" | "SL" | "UV" | "SV" => ValueKind::Integer,
            "AE" | "AS" | "CS" | "DS" | "LO" | "LT" | "SH" | "ST" | "UC" | "UR" | "UT" => ValueKind::Text,
            _ => return None,
        })
    }
}

macro_rules! attributes {
    ($( $(#[$doc:meta])* $variant:ident = ($group:literal, $elem:literal, $keyword:literal, $level:ident, $kind:ident), )*) => {
        /// An attribute kept in the index and usable as a query key or return key.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Attribute {
            $( $(#[$doc])* $variant, )*
        }

        impl Attribute {
            /// Every indexed attribute, in table order.
            pub const ALL: &'static [Attribute] = &[ $( Attribute::$variant, )* ];

            /// The DICOM tag as `(group, element)`.
            pub const fn tag(self) -> (u16, u16) {
                match self { $( Attribute::$variant => ($group, $elem), )* }
            }

            /// The DICOM keyword, e.g. `PatientName`.
            pub const fn keyword(self) -> &'static str {
                match self { $( Attribute::$variant => $keyword, )* }
            }

            /// The lowest level of the information model that holds this attribute.
            pub const fn level(self) -> QueryLevel {
                match self { $( Attribute::$variant => QueryLevel::$level, )* }
            }

            /// How values of this attribute are matched.
            pub const fn kind(self) -> ValueKind {
                match self { $( Attribute::$variant => ValueKind::$kind, )* }
            }
        }
    };
}

attributes! {
    /// Patient ID (0010,0020).
    PatientId = (0x0010, 0x0020, "PatientID", Patient, Text),
    /// Issuer of Patient ID (0010,0021).
    IssuerOfPatientId = (0x0010, 0x0021, "IssuerOfPatientID", Patient, Text),
    /// Patient's Name (0010,0010).
    PatientName = (0x0010, 0x0010, "PatientName", Patient, PersonName),
    /// Patient's Birth Date (0010,0030).
    PatientBirthDate = (0x0010, 0x0030, "PatientBirthDate", Patient, Date),
    /// Patient's Sex (0010,0040).
    PatientSex = (0x0010, 0x0040, "PatientSex", Patient, Text),
    /// Study Instance UID (0020,000D).
    StudyInstanceUid = (0x0020, 0x000D, "StudyInstanceUID", Study, Uid),
    /// Study Date (0008,0020).
    StudyDate = (0x0008, 0x0020, "StudyDate", Study, Date),
    /// Study Time (0008,0030).
    StudyTime = (0x0008, 0x0030, "StudyTime", Study, Time),
    /// Accession Number (0008,0050).
    AccessionNumber = (0x0008, 0x0050, "AccessionNumber", Study, Text),
    /// Study ID (0020,0010).
    StudyId = (0x0020, 0x0010, "StudyID", Study, Text),
    /// Study Description (0008,1030).
    StudyDescription = (0x0008, 0x1030, "StudyDescription", Study, Text),
    /// Referring Physician's Name (0008,0090).
    ReferringPhysicianName = (0x0008, 0x0090, "ReferringPhysicianName", Study, PersonName),
    /// Modalities in Study (0008,0061), derived from the series of the study.
    ModalitiesInStudy = (0x0008, 0x0061, "ModalitiesInStudy", Study, Text),
    /// Number of Study Related Series (0020,1206), derived.
    NumberOfStudyRelatedSeries = (0x0020, 0x1206, "NumberOfStudyRelatedSeries", Study, Integer),
    /// Number of Study Related Instances (0020,1208), derived.
    NumberOfStudyRelatedInstances = (0x0020, 0x1208, "NumberOfStudyRelatedInstances", Study, Integer),
    /// Series Instance UID (0020,000E).
    SeriesInstanceUid = (0x0020, 0x000E, "SeriesInstanceUID", Series, Uid),
    /// Modality (0008,0060).
    Modality = (0x0008, 0x0060, "Modality", Series, Text),
    /// Series Number (0020,0011).
    SeriesNumber = (0x0020, 0x0011, "SeriesNumber", Series, Integer),
    /// Series Description (0008,103E).
    SeriesDescription = (0x0008, 0x103E, "SeriesDescription", Series, Text),
    /// Body Part Examined (0018,0015).
    BodyPartExamined = (0x0018, 0x0015, "BodyPartExamined", Series, Text),
    /// Series Date (0008,0021).
    SeriesDate = (0x0008, 0x0021, "SeriesDate", Series, Date),
    /// Number of Series Related Instances (0020,1209), derived.
    NumberOfSeriesRelatedInstances = (0x0020, 0x1209, "NumberOfSeriesRelatedInstances", Series, Integer),
    /// SOP Instance UID (0008,0018).
    SopInstanceUid = (0x0008, 0x0018, "SOPInstanceUID", Instance, Uid),
    /// SOP Class UID (0008,0016).
    SopClassUid = (0x0008, 0x0016, "SOPClassUID", Instance, Uid),
    /// Instance Number (0020,0013).
    InstanceNumber = (0x0020, 0x0013, "InstanceNumber", Instance, Integer),
    /// Transfer Syntax UID (0002,0010) of the stored object.
    TransferSyntaxUid = (0x0002, 0x0010, "TransferSyntaxUID", Instance, Uid),
    /// Number of Frames (0028,0008).
    NumberOfFrames = (0x0028, 0x0008, "NumberOfFrames", Instance, Integer),
    /// Rows (0028,0010).
    Rows = (0x0028, 0x0010, "Rows", Instance, Integer),
    /// Columns (0028,0011).
    Columns = (0x0028, 0x0011, "Columns", Instance, Integer),
}

impl Attribute {
    /// Looks an attribute up by keyword (case-sensitive, as in the standard) or by tag written
    /// as `GGGGEEEE`, `(GGGG,EEEE)` or `GGGG,EEEE` (hexadecimal, either case).
    pub fn parse(name: &str) -> Option<Attribute> {
        let name = name.trim();
        if let Some(found) = Attribute::ALL.iter().find(|a| a.keyword() == name) {
            return Some(*found);
        }
        let tag = parse_tag(name)?;
        Attribute::ALL.iter().find(|a| a.tag() == tag).copied()
    }

    /// Whether the attribute is derived by the index rather than read from an instance.
    pub const fn is_derived(self) -> bool {
        matches!(
            self,
            Attribute::ModalitiesInStudy
                | Attribute::NumberOfStudyRelatedSeries
                | Attribute::NumberOfStudyRelatedInstances
                | Attribute::NumberOfSeriesRelatedInstances
        )
    }

    /// The attributes returned by default at a query level: the keys of that level and of the
    /// levels above it that identify the record.
    pub fn defaults_for(level: QueryLevel) -> Vec<Attribute> {
        Attribute::ALL.iter().copied().filter(|a| a.level() == level).collect()
    }
}

/// Parses a tag written as `GGGGEEEE`, `(GGGG,EEEE)` or `GGGG,EEEE`.
pub fn parse_tag(text: &str) -> Option<(u16, u16)> {
    let t = text.trim().trim_start_matches('(').trim_end_matches(')');
    let (g, e) = match t.split_once(',') {
        Some((g, e)) => (g.trim(), e.trim()),
        None if t.len() == 8 && t.is_char_boundary(4) => t.split_at(4),
        None => return None,
    };
    // Exactly four hexadecimal digits each (`from_str_radix` alone would take a sign).
    let hex = |s: &str| if s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()) { u16::from_str_radix(s, 16).ok() } else { None };
    Some((hex(g)?, hex(e)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_eight_hexadecimal_digits() {
        assert_eq!(parse_tag("(0010,0010)"), Some((0x0010, 0x0010)));
        assert_eq!(parse_tag("7FE00010"), Some((0x7FE0, 0x0010)));
        assert_eq!(parse_tag("0010, 0020"), Some((0x0010, 0x0020)));
        // Eight bytes that are not eight characters, signs, and short or long parts are no tags.
        for text in ["$g\u{b3936}\u{468}", "+FFF0010", "0010,+010", "001,00010", "00100010 0", "é0100010"] {
            assert_eq!(parse_tag(text), None, "{text:?}");
        }
    }

    #[test]
    fn parse_by_keyword_and_tag() {
        let check = |input: &str, expected: Option<Attribute>| assert_eq!(Attribute::parse(input), expected, "{input}");
        check("PatientName", Some(Attribute::PatientName));
        check("00100010", Some(Attribute::PatientName));
        check("(0010,0010)", Some(Attribute::PatientName));
        check("0020,000d", Some(Attribute::StudyInstanceUid));
        check("patientname", None);
        check("0010001", None);
        check("(7FE0,0010)", None);
    }

    #[test]
    fn table_agrees_with_the_standard_dictionary() {
        use dicom_core::Tag;
        use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, TagRange};
        let dictionary = dicom_dictionary_std::StandardDataDictionary;
        for a in Attribute::ALL {
            let entry = dictionary.by_name(a.keyword()).unwrap_or_else(|| panic!("{} is not a standard keyword", a.keyword()));
            assert_eq!(entry.tag_range(), TagRange::Single(Tag(a.tag().0, a.tag().1)), "{}", a.keyword());
        }
    }

    #[test]
    fn kinds_of_value_representations() {
        assert_eq!(ValueKind::for_vr("PN"), Some(ValueKind::PersonName));
        assert_eq!(ValueKind::for_vr("US"), Some(ValueKind::Integer));
        assert_eq!(ValueKind::for_vr("LO"), Some(ValueKind::Text));
        assert_eq!(ValueKind::for_vr("DT"), Some(ValueKind::DateTime));
        for vr in ["SQ", "OB", "FD", "AT", "XX"] {
            assert_eq!(ValueKind::for_vr(vr), None, "{vr}");
        }
        // The table's attributes are matched as their VR says (derived counts and the modality
        // list aside).
        use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
        for a in Attribute::ALL.iter().filter(|a| !a.is_derived()) {
            let entry = dicom_dictionary_std::StandardDataDictionary.by_name(a.keyword()).unwrap_or_else(|| panic!("{}", a.keyword()));
            let vr = entry.vr().exact().map(|vr| vr.to_string()).unwrap_or("US");
            assert_eq!(ValueKind::for_vr(vr), Some(a.kind()), "{}", a.keyword());
        }
    }

    #[test]
    fn tags_are_unique() {
        let mut tags: Vec<_> = Attribute::ALL.iter().map(|a| a.tag()).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), Attribute::ALL.len());
    }
}
