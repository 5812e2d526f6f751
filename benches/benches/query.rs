//! Study-level query latency on a large index: by PatientID and by a StudyDate range.
//!
//! The index is filled directly with synthetic records (no files): 1,000,000 instances in
//! `cargo bench` (`PACS_BENCH_INSTANCES` changes it), 20,000 when the bench runs as a test.
//! Run: `cargo bench -p pacs-benches --bench query`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pacs_benches::record;
use pacs_core::{Attribute, DuplicatePolicy, Index, Query, QueryLevel};
use pacs_store::SqliteIndex;

fn instances() -> u64 {
    let benching = std::env::args().any(|a| a == "--bench");
    match std::env::var("PACS_BENCH_INSTANCES") {
        Ok(v) => v.parse().expect("PACS_BENCH_INSTANCES must be a number"),
        Err(_) if benching => 1_000_000,
        Err(_) => 20_000,
    }
}

fn query(c: &mut Criterion) {
    let n = instances();
    let dir = tempfile::tempdir().expect("tempdir");
    let index = SqliteIndex::open(&dir.path().join("index.sqlite")).expect("index");
    let started = std::time::Instant::now();
    let mut next = 0u64;
    while next < n {
        let batch: Vec<_> = (next..(next + 10_000).min(n)).map(record).collect();
        index.insert(&batch, DuplicatePolicy::KeepExisting).expect("insert");
        next += batch.len() as u64;
    }
    let stats = index.stats().expect("stats");
    eprintln!("index: {} instances, {} studies, {} patients, filled in {:.1?}", stats.instances, stats.studies, stats.patients, started.elapsed());
    let patients = stats.patients.max(1);
    let mut group = c.benchmark_group(format!("study_query_{n}"));
    let mut i = 0u64;
    group.bench_function("by_patient_id", |b| {
        b.iter(|| {
            i = (i * 7919 + 13) % patients;
            let q = Query::new(QueryLevel::Study).with(Attribute::PatientId, &format!("PID{i:07}")).expect("query");
            let rows = index.find(&q).expect("find");
            assert!(!rows.is_empty());
            black_box(rows)
        })
    });
    let mut d = 0u32;
    group.bench_function("by_study_date_range_7_days", |b| {
        b.iter(|| {
            d = (d * 31 + 7) % 1700;
            let lo = pacs_benches::date_of(d);
            let hi = pacs_benches::date_of(d + 6);
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            let q = Query::new(QueryLevel::Study).with(Attribute::StudyDate, &format!("{lo}-{hi}")).expect("query");
            black_box(index.find(&q).expect("find"))
        })
    });
    group.finish();
}

criterion_group!(benches, query);
criterion_main!(benches);
