//! Group-commit throughput: appends of 116-byte records (16-byte key, 100-byte value, as a
//! `WriteBatch` payload) from 1, 4 and 16 threads, with and without `fdatasync`, on the real
//! file system. Reported as appends per second (criterion "elements").
//!
//! Run with `nice cargo bench -p strata-wal`. Group commit should make 16-thread `Sync`
//! throughput at least 10x the 1-thread figure, since one `fdatasync` serves a whole group.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_core::fs::{FileSystem, OsFileSystem};
use strata_wal::{BatchEncoding, Wal, WalOptions, WriteBatch};

fn payload(thread: usize, i: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    let key = format!("k{thread:03}{i:012}");
    debug_assert_eq!(key.len(), 16);
    batch.put(key.as_bytes(), [b'v'; 100]);
    batch.set_sequence(i);
    batch
}

/// Runs `total` appends spread over `threads` threads; returns the time from the start
/// barrier until the last append returned.
fn run(wal: &Arc<Wal>, threads: usize, total: u64, sync: bool) -> Duration {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (wal, start) = (wal.clone(), start.clone());
            let n = total / threads as u64 + u64::from((t as u64) < total % threads as u64);
            std::thread::spawn(move || {
                let batches: Vec<WriteBatch> = (0..n).map(|i| payload(t, i)).collect();
                start.wait();
                for b in &batches {
                    wal.append(b.as_bytes(), sync).expect("append");
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for h in handles {
        h.join().expect("writer thread");
    }
    began.elapsed()
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
    let mut group = c.benchmark_group("wal_append_116B");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    let mut file_no = 0;
    for (mode, sync) in [("sync", true), ("buffered", false)] {
        for threads in [1usize, 4, 16] {
            file_no += 1;
            let path = dir.path().join(format!("{file_no:06}.log"));
            let wal = Wal::create(fs.clone(), path, WalOptions::default()).expect("create log");
            group.bench_function(format!("{mode}/{threads}t"), |b| {
                b.iter_custom(|iters| run(&wal, threads, iters, sync));
            });
            wal.close().expect("close");
            let s = wal.stats();
            if s.records == 0 {
                continue; // filtered out on the command line
            }
            eprintln!(
                "{mode}/{threads}t: {} records in {} write calls ({:.1} records/write), {} syncs, mean sync {:?}",
                s.records,
                s.write_calls,
                s.records as f64 / s.write_calls.max(1) as f64,
                s.syncs,
                s.sync_time / s.syncs.max(1) as u32,
            );
        }
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
