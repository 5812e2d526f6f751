//! Fuzzes the streaming scanner and attribute extraction: any bytes must give a record or a
//! rejection, never a panic, and the scan must not depend on how the input is chunked.

#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use pacs_core::extract::{self, Stored};
use pacs_core::scan::{ScanLimits, scan};
use pacs_core::BlobKey;

/// Hands out the input in small, uneven reads, as a network peer would.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step = self.step % 7 + 1;
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = ScanLimits::default();
    let whole = scan(&mut &data[..], &extract::wanted, limits);
    let trickled = scan(&mut Trickle { data, step: 0 }, &extract::wanted, limits);
    match (&whole, &trickled) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.elements, b.elements);
            assert_eq!(a.pixel, b.pixel);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("chunking changed the outcome: {whole:?} vs {trickled:?}"),
    }
    if let Ok(scanned) = whole {
        let stored = Stored { blob: BlobKey::for_id(1), size: data.len() as u64, checksum: String::new() };
        if let Ok((record, _)) = extract::extract(&scanned, stored) {
            let _ = record.frame_ranges();
        }
    }
});
