//! Compression on ingest: a [`CompressionPolicy`] of rules (Modality and/or SOP Class UID to a
//! target transfer syntax), off by default.
//!
//! [`Archive::stage`](crate::Archive::stage) applies it once the received object is staged: the
//! staged blob is converted by `pacs-codec` into a new blob, the received one is deleted, and the
//! record keeps the size, SHA-256 and transfer syntax of what was received
//! ([`pacs_core::Original`]) beside those of the stored bytes. A lossy target needs
//! [`CompressionPolicy::allow_lossy`], checked when the policy is built. An object that cannot be
//! converted is stored as received (and logged).
//!
//! The conversion is written whole into a spool before the new blob is staged from it: in
//! memory up to `pacs_codec::spool::SPOOL_MEMORY` (4 MiB), in an unnamed temporary file in the
//! system's temporary folder (`TMPDIR`) beyond, gone once the object is staged. Memory stays
//! bounded for large multi-frame objects, and a conversion that fails leaves nothing (the blob
//! store has no scratch space of its own to use: its staging files are those of the blobs
//! being written, and a remote store has none).
//!
//! The conversion needs the store's `compression` feature (it pulls in `pacs-codec` and its
//! native codecs); without it a policy with rules is refused when it is built.

use pacs_core::{Attribute, Error, InstanceRecord, Result};

/// One rule: objects matching every given criterion are stored in `transfer_syntax`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionRule {
    /// Modality (0008,0060) to match, e.g. `CT`; `None` matches any.
    pub modality: Option<String>,
    /// SOP Class UID (0008,0016) to match; `None` matches any.
    pub sop_class_uid: Option<String>,
    /// The transfer syntax UID to store matching objects in.
    pub transfer_syntax: String,
}

impl CompressionRule {
    fn matches(&self, record: &InstanceRecord) -> bool {
        let modality = self.modality.as_deref().is_none_or(|m| record.get(Attribute::Modality).is_some_and(|v| v.eq_ignore_ascii_case(m.trim())));
        let class = self.sop_class_uid.as_deref().is_none_or(|c| record.sop_class_uid.as_str() == c.trim());
        modality && class
    }
}

/// Which objects to compress on ingest, and into what. The default has no rules: objects are
/// stored exactly as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompressionPolicy {
    rules: Vec<CompressionRule>,
    allow_lossy: bool,
}

impl CompressionPolicy {
    /// A policy of `rules`, the first matching rule winning. Every target must be a transfer
    /// syntax this build writes, and a lossy one (JPEG Baseline, JPEG-LS near-lossless, JPEG 2000
    /// lossy...) needs `allow_lossy`: a lossy conversion also gives the object a new SOP Instance
    /// UID. A rule without criteria matches every object.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the rule.
    ///
    /// # Example
    ///
    /// ```
    /// use pacs_store::compression::{CompressionPolicy, CompressionRule};
    ///
    /// let rule = CompressionRule { modality: Some("CT".into()), sop_class_uid: None, transfer_syntax: "1.2.840.10008.1.2.4.91".into() };
    /// // JPEG 2000 (lossy) needs allow_lossy.
    /// assert!(CompressionPolicy::new(vec![rule], false).is_err());
    /// ```
    pub fn new(rules: Vec<CompressionRule>, allow_lossy: bool) -> Result<Self> {
        for (i, rule) in rules.iter().enumerate() {
            let target = rule.transfer_syntax.trim();
            let invalid = |reason: String| Error::InvalidConfig { reason: format!("compression rule {} ({target}): {reason}", i + 1) };
            check_target(target).map_err(invalid)?;
            if is_lossy(target) && !allow_lossy {
                return Err(invalid("a lossy transfer syntax needs allow_lossy = true".into()));
            }
        }
        let rules = rules.into_iter().map(|r| CompressionRule { transfer_syntax: r.transfer_syntax.trim().to_owned(), ..r }).collect();
        Ok(CompressionPolicy { rules, allow_lossy })
    }

    /// Whether the policy has no rules (nothing is converted).
    pub fn is_off(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether lossy targets were allowed.
    pub fn allow_lossy(&self) -> bool {
        self.allow_lossy
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[CompressionRule] {
        &self.rules
    }

    /// The transfer syntax to store `record`'s object in, when a rule matches and it is not
    /// stored in that syntax already.
    pub fn target_for(&self, record: &InstanceRecord) -> Option<&str> {
        let rule = self.rules.iter().find(|r| r.matches(record))?;
        (rule.transfer_syntax != record.transfer_syntax_uid.as_str()).then_some(rule.transfer_syntax.as_str())
    }
}

#[cfg(feature = "compression")]
fn check_target(uid: &str) -> std::result::Result<(), String> {
    if pacs_codec::can_write(uid) { Ok(()) } else { Err("not a transfer syntax this build writes".into()) }
}

#[cfg(not(feature = "compression"))]
fn check_target(_uid: &str) -> std::result::Result<(), String> {
    Err("this build has no codecs (pacs-store's compression feature)".into())
}

#[cfg(feature = "compression")]
fn is_lossy(uid: &str) -> bool {
    pacs_codec::syntax::is_lossy(uid)
}

#[cfg(not(feature = "compression"))]
fn is_lossy(_uid: &str) -> bool {
    true
}

/// Converts the object read from `source` into `target`; a reader of the whole converted object
/// (see the module), returned only when the conversion succeeded.
#[cfg(feature = "compression")]
pub(crate) fn convert(source: &mut dyn std::io::Read, target: &str) -> std::result::Result<Box<dyn std::io::Read>, String> {
    use pacs_codec::spool::{SPOOL_MEMORY, transcode_to_spool};
    let (spool, _) = transcode_to_spool(source, target, &pacs_codec::TranscodeOptions::default(), SPOOL_MEMORY, None).map_err(|e| e.to_string())?;
    let reader = spool.into_reader().map_err(|e| format!("reading the converted object back: {e}"))?;
    Ok(Box::new(reader))
}

#[cfg(not(feature = "compression"))]
pub(crate) fn convert(_source: &mut dyn std::io::Read, _target: &str) -> std::result::Result<Box<dyn std::io::Read>, String> {
    Err("this build has no codecs".into())
}

#[cfg(all(test, feature = "compression"))]
mod tests {
    use super::*;

    fn rule(modality: Option<&str>, class: Option<&str>, ts: &str) -> CompressionRule {
        CompressionRule { modality: modality.map(Into::into), sop_class_uid: class.map(Into::into), transfer_syntax: ts.into() }
    }

    #[test]
    fn lossy_targets_need_allow_lossy_and_targets_must_be_writable() {
        for lossy in ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"] {
            let err = CompressionPolicy::new(vec![rule(Some("CT"), None, lossy)], false);
            assert!(matches!(err, Err(Error::InvalidConfig { .. })), "{lossy}: {err:?}");
            assert!(CompressionPolicy::new(vec![rule(Some("CT"), None, lossy)], true).is_ok(), "{lossy} allowed");
        }
        for lossless in ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"] {
            assert!(CompressionPolicy::new(vec![rule(None, None, lossless)], false).is_ok(), "{lossless}");
        }
        assert!(matches!(CompressionPolicy::new(vec![rule(None, None, "1.2.3.4")], true), Err(Error::InvalidConfig { .. })));
        assert!(
            matches!(CompressionPolicy::new(vec![rule(None, None, "1.2.840.10008.1.2.4.201")], true), Err(Error::InvalidConfig { .. })),
            "High-Throughput JPEG 2000 is not written"
        );
        assert!(CompressionPolicy::default().is_off());
    }
}
