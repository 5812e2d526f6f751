//! Validated identifiers: DICOM UIDs and AE titles.

use std::fmt;

use crate::error::{Error, Result};

/// A DICOM unique identifier (VR UI): at most 64 characters, digits separated by dots.
///
/// Leading zeros in a component are tolerated (they are common in the wild and the archive must
/// keep what it receives), but empty components, other characters and over-long values are not.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    /// Validates `text` (trailing NUL and spaces, the DICOM padding, are removed).
    pub fn new(text: &str) -> Result<Uid> {
        let value = text.trim_end_matches(['\0', ' ']).trim_start_matches(' ');
        let invalid = |reason| Err(Error::InvalidUid { value: value.to_owned(), reason });
        if value.is_empty() {
            return invalid("empty");
        }
        if value.len() > 64 {
            return invalid("longer than 64 characters");
        }
        if !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return invalid("only digits and dots are allowed");
        }
        if value.split('.').any(str::is_empty) {
            return invalid("empty component");
        }
        Ok(Uid(value.to_owned()))
    }

    /// The UID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Uid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An Application Entity title: 1 to 16 characters of the default repertoire, no backslash and
/// no control characters, not only spaces. Leading and trailing spaces are not significant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AeTitle(String);

impl AeTitle {
    /// Validates `text`.
    pub fn new(text: &str) -> Result<AeTitle> {
        let value = text.trim_matches([' ', '\0']);
        let invalid = |reason| Err(Error::InvalidAeTitle { value: text.to_owned(), reason });
        if value.is_empty() {
            return invalid("empty");
        }
        if value.len() > 16 {
            return invalid("longer than 16 characters");
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
            return invalid("only printable ASCII without backslash is allowed");
        }
        Ok(AeTitle(value.to_owned()))
    }

    /// The AE title as text, without padding.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids() {
        assert_eq!(Uid::new("1.2.840.10008.1.2.1\0").map(|u| u.to_string()).ok().as_deref(), Some("1.2.840.10008.1.2.1"));
        assert!(Uid::new("1.2.03").is_ok());
        for bad in ["", "1..2", "1.2.", "1.2.a", &"1.".repeat(40)] {
            assert!(Uid::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ae_titles() {
        assert_eq!(AeTitle::new(" PACS  ").map(|a| a.to_string()).ok().as_deref(), Some("PACS"));
        for bad in ["", "    ", "A\\B", "ABCDEFGHIJKLMNOPQ", "A\nB"] {
            assert!(AeTitle::new(bad).is_err(), "{bad:?}");
        }
    }
}
