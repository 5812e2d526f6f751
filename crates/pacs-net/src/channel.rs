//! Bytes arriving over the network, handed to the archive's blocking API.

use std::io::{self, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

/// A blocking [`Read`] over chunks sent through a bounded channel: a C-STORE data set or a
/// STOW-RS part streams into `Archive::stage` on a blocking thread while the network task
/// receives it, and the network waits when the archive is behind (backpressure). The end of the
/// channel is the end of the data.
pub(crate) struct ChannelReader {
    current: Bytes,
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelReader {
    /// Reads `first`, then the chunks of `rx`.
    pub(crate) fn new(first: Bytes, rx: mpsc::Receiver<Bytes>) -> ChannelReader {
        ChannelReader { current: first, rx }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
