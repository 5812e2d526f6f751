//! Embedding the archive: open it, ingest an object, query it, and read it back.
//!
//! Run with `cargo run -p pacs-examples --example embed_archive -- FILE.dcm [DATA_DIR]`;
//! without arguments it ingests a small generated object into a temporary folder.

use std::io::Read;

use pacs_core::{Attribute, Query, QueryLevel};
use pacs_store::{Archive, ArchiveConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(args.first().map(String::as_str), args.get(1).map(String::as_str))
}

fn run(file: Option<&str>, data_dir: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let temporary = data_dir.is_none();
    let data_dir = match data_dir {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("pacs-example-{}", std::process::id())),
    };
    let bytes = match file {
        Some(path) => std::fs::read(path)?,
        None => pacs_examples::tiny_object(),
    };

    // 1. Open the embedded default: a SQLite index and a local blob folder.
    let archive = Archive::open(&data_dir, ArchiveConfig::default())?;

    // 2. Ingest: streamed, checksummed, durable when `ingest` returns.
    let report = archive.ingest(&mut &bytes[..])?;
    println!("stored {} ({:?})", report.record.sop_instance_uid, report.outcome);

    // 3. Query at study level with the DICOM matching rules.
    let query = Query::new(QueryLevel::Study).with(Attribute::PatientName, "*")?;
    for row in archive.query(&query)? {
        println!("study {} of {}", row[&Attribute::StudyInstanceUid], row.get(&Attribute::PatientName).map_or("(no name)", String::as_str));
    }

    // 4. Retrieve the original bytes, exactly as received.
    let (record, mut reader) = archive.retrieve(&report.record.sop_instance_uid)?;
    let mut stored = Vec::new();
    reader.read_to_end(&mut stored)?;
    assert_eq!(stored, bytes, "the archive returns the bytes it received");
    println!("retrieved {} bytes, SHA-256 {}", stored.len(), record.checksum);

    if temporary {
        std::fs::remove_dir_all(&data_dir)?;
    }
    Ok(())
}

#[test]
fn example_runs() {
    run(None, None).expect("the example runs on its generated object");
}
