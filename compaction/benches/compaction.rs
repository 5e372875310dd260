//! Compaction job throughput: four overlapping L0 tables (100k versions in total, 16-byte
//! user keys, 100-byte values, a quarter of the keys overwritten) merged into L1 tables of
//! 4 MiB on the real file system, with and without zstd. Throughput is input bytes (keys +
//! values) per second. Run with `nice cargo bench -p strata-compaction`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use strata_compaction::{
    pick_compaction, run_compaction, CompactionConfig, CompactionContext, FileMeta, Version,
    VersionEdit,
};
use strata_core::fs::{FileSystem, OsFileSystem};
use strata_core::iter::InternalIterator;
use strata_core::key::{InternalKey, ValueKind, MAX_SEQ};
use strata_sstable::{Compression, Table, TableBuilder, TableOptions, TableStats};

const TABLES: u64 = 4;
const PER_TABLE: u64 = 25_000;
const KEY_SPACE: u64 = 80_000;

fn build_inputs(fs: &dyn FileSystem, dir: &Path, opts: &TableOptions) -> (Version, u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let mut edit = VersionEdit::default();
    let mut raw = 0u64;
    for t in 0..TABLES {
        let mut keys: Vec<u64> = (0..PER_TABLE).map(|_| rng.random_range(0..KEY_SPACE)).collect();
        keys.sort_unstable();
        keys.dedup();
        let path = dir.join(strata_compaction::table_file_name(t + 1));
        let mut b = TableBuilder::new(fs, &path, opts).expect("builder");
        let seq = 1 + t * PER_TABLE;
        for k in &keys {
            let mut user = b"user-key".to_vec();
            user.extend_from_slice(&k.to_be_bytes());
            let mut value = vec![b'v'; 100];
            rng.fill(&mut value[..50]);
            let key = InternalKey::new(&user, seq + k % PER_TABLE, ValueKind::Put);
            raw += (key.encoded().len() + value.len()) as u64;
            b.add(key.encoded(), &value).expect("add");
        }
        let props = b.finish().expect("finish");
        edit.new_files.push((0, FileMeta::from_properties(t + 1, props)));
    }
    (Version::default().apply(&edit).expect("version"), raw)
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("compaction_job");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, compression) in
        [("none", Compression::None), ("zstd1", Compression::Zstd { level: 1 })]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = OsFileSystem;
        let opts = TableOptions::default().with_compression(compression);
        let (version, raw) = build_inputs(&fs, dir.path(), &opts);
        let config = CompactionConfig { target_file_size: 4 << 20, ..CompactionConfig::default() };
        let compaction = pick_compaction(&version, &config, &[]).expect("L0 is full");
        let stats = Arc::new(TableStats::default());
        group.throughput(Throughput::Bytes(raw));
        let mut next = 1000;
        group.bench_function(BenchmarkId::new("l0_to_l1", name), |b| {
            b.iter(|| {
                let inputs: Vec<Box<dyn InternalIterator>> = compaction
                    .input_file_numbers()
                    .map(|n| {
                        let path = dir.path().join(strata_compaction::table_file_name(n));
                        let table = Table::open(&fs, &path, n, None, stats.clone()).expect("open");
                        Box::new(table.iter()) as Box<dyn InternalIterator>
                    })
                    .collect();
                let out = run_compaction(
                    &compaction,
                    inputs,
                    &version,
                    CompactionContext {
                        snapshots: &[],
                        horizon: MAX_SEQ,
                        range_tombstones: &Default::default(),
                        fs: &fs,
                        dir: dir.path(),
                        table_options: &opts,
                        new_file_number: &mut || {
                            next += 1;
                            next
                        },
                        rate_limiter: None,
                        should_stop: &|| false,
                    },
                )
                .expect("compaction");
                for f in &out.files {
                    fs.remove(&dir.path().join(strata_compaction::table_file_name(f.number)))
                        .expect("remove");
                }
                out.entries_written
            })
        });
    }
    group.finish();
}

criterion_group!(compaction, benches);
criterion_main!(compaction);
