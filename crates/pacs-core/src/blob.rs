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

    /// A key for a new object, laid out under two levels of 256 folders chosen by `id`, so that
    /// no folder grows unbounded: `ab/cd/<32 hex digits>.dcm`.
    pub fn for_id(id: u128) -> BlobKey {
        let hex = format!("{id:032x}");
        // The low bits of a UUIDv7 are random; use them to spread the folders.
        BlobKey(format!("{}/{}/{hex}.dcm", &hex[30..32], &hex[28..30]))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = BlobKey::for_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(k.as_str(), "ef/cd/0123456789abcdef0123456789abcdef.dcm");
        assert!(BlobKey::new(k.as_str()).is_ok());
        for bad in ["", "/a", "a/../b", "a//b", "a b", "a/./b"] {
            assert!(BlobKey::new(bad).is_err(), "{bad}");
        }
    }
}
