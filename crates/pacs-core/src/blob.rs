//! The blob storage contract: where the original bytes of each instance are kept.

use std::fmt;
use std::io::Read;
use std::ops::Range;

use bytes::Bytes;

use crate::error::{Error, Result};

/// The key of a stored object: a relative, `/`-separated path without `..`, safe to use as a
/// file path under a root folder or as an object-store key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    /// Validates a key.
    pub fn new(key: impl Into<String>) -> Result<BlobKey> {
        let key = key.into();
        let ok = !key.is_empty()
            && key.len() <= 512
            && !key.starts_with('/')
            && key.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if ok { Ok(BlobKey(key)) } else { Err(Error::Corrupt { what: format!("invalid blob key {key:?}") }) }
    }

    /// A key for a new object named by `id`, a UUIDv7: `YYYY/MM/DD/xx/<32 hex digits>.dcm`, the
    /// date (UTC) taken from the id's timestamp and `xx` from its random bits. A folder holds at
    /// most a 256th of one day's objects, and an import writes into a few hundred folders rather
    /// than creating one per object (as a purely hashed layout does on a new archive).
    pub fn for_id(id: u128) -> BlobKey {
        let hex = format!("{id:032x}");
        let millis = (id >> 80) as u64;
        let (year, month, day) = civil_date(millis / 86_400_000);
        BlobKey(format!("{year:04}/{month:02}/{day:02}/{}/{hex}.dcm", &hex[30..32]))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A streaming writer of one new object. Nothing is visible under the key until
/// [`finish`](BlobWrite::finish) returns; dropping or [`abort`](BlobWrite::abort)ing leaves nothing.
pub trait BlobWrite: Send {
    /// Appends bytes.
    fn write(&mut self, buf: &[u8]) -> Result<()>;
    /// Completes the object: it is then readable under its key (durable only after
    /// [`BlobStore::sync`]).
    fn finish(self: Box<Self>) -> Result<()>;
    /// Discards what was written.
    fn abort(self: Box<Self>);
}

/// Storage of the original bytes of instances.
///
/// # Contract
/// - `create(key)` + `finish` makes the whole object appear atomically under `key`: a reader
///   never sees a partial object, and a crash before `finish` leaves no object under the key
///   (staging leftovers, if any, are not listed).
/// - After `sync(keys)` returns, those objects survive a crash or power loss.
/// - `open` and `read_range` return exactly the bytes written.
/// - `delete` of a missing key is not an error.
/// - `list` reports every finished object once, with its size.
/// - Memory stays bounded whatever the object size: writers and readers stream.
pub trait BlobStore: Send + Sync {
    /// Starts writing a new object under `key`.
    fn create(&self, key: &BlobKey) -> Result<Box<dyn BlobWrite>>;
    /// Makes finished objects durable.
    fn sync(&self, keys: &[BlobKey]) -> Result<()>;
    /// Streams an object's bytes.
    fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>>;
    /// The path of the object's file, for stores that keep each object as a file of its own, so
    /// that callers may read it at offsets or try reads that must not wait for the disk; `None`
    /// for the others, whose objects are read with [`open`](Self::open). The file must only be
    /// read: it is the stored object.
    fn local_path(&self, key: &BlobKey) -> Option<std::path::PathBuf> {
        let _ = key;
        None
    }
    /// Reads `range` of an object.
    fn read_range(&self, key: &BlobKey, range: Range<u64>) -> Result<Bytes>;
    /// The size of an object, or `None` if it does not exist.
    fn size(&self, key: &BlobKey) -> Result<Option<u64>>;
    /// Deletes an object.
    fn delete(&self, key: &BlobKey) -> Result<()>;
    /// Calls `f` with every object's key and size.
    fn list(&self, f: &mut dyn FnMut(BlobKey, u64)) -> Result<()>;
    /// A human description, e.g. `local folder /data/blobs`.
    fn describe(&self) -> String;
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = BlobKey::for_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        // 0x0123456789ab ms since the epoch is 2009-08-23 (UTC).
        assert_eq!(k.as_str(), "2009/08/23/ef/0123456789abcdef0123456789abcdef.dcm");
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_516), (2026, 3, 4));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert!(BlobKey::new(k.as_str()).is_ok());
        for bad in ["", "/a", "a/../b", "a//b", "a b", "a/./b"] {
            assert!(BlobKey::new(bad).is_err(), "{bad}");
        }
    }
}
