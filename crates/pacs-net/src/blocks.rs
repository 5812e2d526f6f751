//! Read blocks shared between the blob readers and the network writers.
//!
//! A fresh 256 KiB allocation per block read from a blob costs a `memset` and, as new pages, a
//! page fault and a clearing per 4 KiB: together about a fifth of the server's time while it sent
//! a CT study over WADO-RS. Blocks are therefore taken from a small pool and go back to it when
//! the bytes have been written (the `Bytes` made from them is dropped).

use std::io::Read;
use std::sync::Mutex;

use bytes::Bytes;

/// The size of a pooled block.
pub(crate) const BLOCK: usize = 256 * 1024;

/// Blocks kept for reuse: 8 MiB, enough for the channels of a few transfers in flight.
const POOLED_BLOCKS: usize = 32;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A block of [`BLOCK`] initialised bytes, of which the first `len` are content.
pub(crate) struct PooledBlock {
    block: Vec<u8>,
    len: usize,
}

impl PooledBlock {
    /// A block from the pool, or a new one.
    pub(crate) fn take() -> PooledBlock {
        let reused = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
        PooledBlock { block: reused.unwrap_or_else(|| vec![0; BLOCK]), len: 0 }
    }

    /// Reads from `reader` until the block holds `want` bytes (at most [`BLOCK`]) or the reader
    /// ends; returns the bytes held.
    pub(crate) fn fill(&mut self, reader: &mut dyn Read, want: usize) -> std::io::Result<usize> {
        let want = want.min(BLOCK);
        while self.len < want {
            match reader.read(&mut self.block[self.len..want]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.len)
    }

    /// Reads from `file` at `offset` onwards into the block (its content continuing the bytes
    /// held, which came from `offset` on) until it holds `want` bytes or the file ends; returns
    /// the bytes held.
    pub(crate) fn fill_at(&mut self, file: &std::fs::File, offset: u64, want: usize) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = want.min(BLOCK);
        while self.len < want {
            match file.read_at(&mut self.block[self.len..want], offset + self.len as u64) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.len)
    }

    /// Calls `read` with the free part of the block up to `want` bytes, and keeps the bytes it
    /// says it read.
    pub(crate) fn read_with<E>(&mut self, want: usize, read: impl FnOnce(&mut [u8]) -> Result<usize, E>) -> Result<usize, E> {
        let end = want.clamp(self.len, BLOCK);
        let n = read(&mut self.block[self.len..end])?;
        self.len += n.min(end - self.len);
        Ok(n)
    }

    /// The number of bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The content, as bytes that return the block to the pool once dropped.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBlock {
    fn as_ref(&self) -> &[u8] {
        &self.block[..self.len]
    }
}

impl Drop for PooledBlock {
    fn drop(&mut self) {
        let block = std::mem::take(&mut self.block);
        if block.len() != BLOCK {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOLED_BLOCKS {
            pool.push(block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_what_was_read_and_are_reused_clean_of_length() {
        let data: Vec<u8> = (0..BLOCK + 10).map(|i| i as u8).collect();
        let mut reader: &[u8] = &data;
        let mut first = PooledBlock::take();
        assert_eq!(first.fill(&mut reader, BLOCK + 10).expect("read"), BLOCK);
        let bytes = first.freeze();
        assert_eq!(&bytes[..], &data[..BLOCK]);
        drop(bytes);
        let mut second = PooledBlock::take();
        assert_eq!(second.fill(&mut reader, 100).expect("read"), 10, "the reader ends after 10 more bytes");
        assert_eq!(second.freeze().as_ref(), &data[BLOCK..]);
    }
}
