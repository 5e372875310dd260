//! Table benchmarks: build throughput, point lookups (hits, and misses the bloom filter
//! rejects) and full scans, each with compression off and on.
//!
//! 100k entries of 16-byte user keys (24-byte internal keys) and 100-byte values, half
//! random and half repetitive, so zstd has something to do. Run with
//! `nice cargo bench -p strata-sstable`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use strata_core::fs::{FileSystem, OsFileSystem};
use strata_core::iter::InternalIterator;
use strata_core::key::{InternalKey, ValueKind};
use strata_sstable::{BlockCache, Compression, Table, TableBuilder, TableOptions, TableStats};

const ENTRIES: u64 = 100_000;

fn user_key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(b"user-key");
    k[8..].copy_from_slice(&(i * 2).to_be_bytes()); // even numbers present, odd absent
    k
}

fn dataset() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    (0..ENTRIES)
        .map(|i| {
            let key = InternalKey::new(&user_key(i), 1000 + i, ValueKind::Put).into_encoded();
            let mut value = vec![b'v'; 100];
            rng.fill(&mut value[..50]);
            (key, value)
        })
        .collect()
}

fn raw_bytes(data: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

fn build(fs: &dyn FileSystem, path: &Path, data: &[(Vec<u8>, Vec<u8>)], opts: &TableOptions) {
    let mut b = TableBuilder::new(fs, path, opts).expect("builder");
    for (k, v) in data {
        b.add(k, v).expect("add");
    }
    b.finish().expect("finish");
}

fn variants() -> [(&'static str, TableOptions); 2] {
    [
        ("none", TableOptions::default().with_compression(Compression::None)),
        ("zstd1", TableOptions::default().with_compression(Compression::Zstd { level: 1 })),
    ]
}

fn benches(c: &mut Criterion) {
    let data = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = OsFileSystem;

    let mut g = c.benchmark_group("build");
    g.throughput(Throughput::Bytes(raw_bytes(&data)));
    g.sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for (name, opts) in variants() {
        let path = dir.path().join(format!("build-{name}.sst"));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| build(&fs, &path, &data, &opts))
        });
    }
    g.finish();

    let mut lookups = c.benchmark_group("get");
    lookups.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    let mut scans = Vec::new();
    for (name, opts) in variants() {
        let path = dir.path().join(format!("read-{name}.sst"));
        build(&fs, &path, &data, &opts);
        let stats = Arc::new(TableStats::default());
        let cache = BlockCache::new(64 << 20);
        let table = Table::open(&fs, &path, 1, Some(cache), stats.clone()).expect("open");
        println!("{name}: file {} bytes, {:?}", table.file_size(), table.properties().compression);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        lookups.bench_function(BenchmarkId::new("hit", name), |b| {
            b.iter_batched(
                || user_key(rng.random_range(0..ENTRIES)),
                |k| table.get(&k, u64::MAX >> 8).expect("get").expect("present"),
                BatchSize::SmallInput,
            )
        });
        lookups.bench_function(BenchmarkId::new("miss", name), |b| {
            b.iter_batched(
                || {
                    let mut k = user_key(rng.random_range(0..ENTRIES));
                    k[15] |= 1; // odd: never stored
                    k
                },
                |k| table.get(&k, u64::MAX >> 8).expect("get"),
                BatchSize::SmallInput,
            )
        });
        println!(
            "{name}: bloom checks {}, negatives {} (lookups saved)",
            stats.bloom_checks(),
            stats.bloom_negatives()
        );
        scans.push((name, table));
    }
    lookups.finish();

    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(raw_bytes(&data)));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (name, table) in &scans {
        for (cache_name, cached) in [("cached", true), ("uncached", false)] {
            let table = if cached {
                table.clone()
            } else {
                Table::open(&fs, table.path(), 2, None, Arc::new(TableStats::default()))
                    .expect("open")
            };
            g.bench_function(BenchmarkId::new(*name, cache_name), |b| {
                b.iter(|| {
                    let mut it = table.iter();
                    it.seek_to_first();
                    let mut n = 0u64;
                    while it.valid() {
                        n += it.value().len() as u64;
                        it.next();
                    }
                    it.status().expect("scan");
                    n
                })
            });
        }
    }
    g.finish();
}

criterion_group!(table_benches, benches);
criterion_main!(table_benches);
