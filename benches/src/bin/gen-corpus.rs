//! Writes a synthetic corpus for the load scripts.
//!
//! `gen-corpus small DIR` (10,000 instances of 64x64), `gen-corpus ct DIR` (200 slices of
//! 512x512), `gen-corpus multiframe DIR MEGABYTES` (one multi-frame object of about that size).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;

use pacs_benches::{InstanceSpec, corpus, write_instance};

fn write_all(dir: &Path, specs: &[InstanceSpec]) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut total = 0;
    for s in specs {
        let sub = dir.join(format!("s{}", s.series));
        std::fs::create_dir_all(&sub)?;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(sub.join(format!("{}.dcm", s.instance)))?);
        total += write_instance(&mut out, s)?;
    }
    Ok(total)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["small", dir] => write_all(Path::new(dir), &corpus(100, 2, 5, 10, 64)),
        ["ct", dir] => write_all(Path::new(dir), &corpus(2, 2, 1, 50, 512)),
        ["multiframe", dir, megabytes] => match megabytes.parse::<u64>() {
            Ok(mb) => {
                let frames = (mb * 1_000_000 / (512 * 512 * 2)).max(1) as u32;
                let spec = InstanceSpec { patient: 9, study: 900, series: 900, instance: 900_000, size: 512, frames, modality: "XA" };
                write_all(Path::new(dir), &[spec])
            }
            Err(_) => Err(std::io::Error::other("MEGABYTES must be a number")),
        },
        _ => Err(std::io::Error::other("usage: gen-corpus small DIR | ct DIR | multiframe DIR MEGABYTES")),
    };
    match result {
        Ok(bytes) => {
            println!("{bytes}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-corpus: error: {e}");
            ExitCode::from(2)
        }
    }
}
