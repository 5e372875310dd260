//! Micro-benchmarks of the engine's hot paths: memtable insert and lookup, internal-key
//! comparison, and the merging iterator.
//!
//! `cargo bench -p strata --bench hot_paths`

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata::__bench::MemTable;
use strata_core::iter::{InternalIterator, VecIterator};
use strata_core::key::{compare_internal, InternalKey, ValueKind};
use strata_core::merge::MergingIterator;

const N: u64 = 100_000;

fn key(i: u64) -> [u8; 16] {
    // Spread like random keys, fixed width like db_bench's.
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn filled_memtable() -> Arc<MemTable> {
    let mem = Arc::new(MemTable::new(1));
    let value = [7u8; 100];
    for i in 0..N {
        mem.insert(&key(i), i + 1, ValueKind::Put, &value);
    }
    mem
}

fn memtable(c: &mut Criterion) {
    let mut g = c.benchmark_group("memtable");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    let value = [7u8; 100];
    g.bench_function("insert 100k (16 B keys, 100 B values)", |b| {
        b.iter_batched(
            || MemTable::new(1),
            |mem| {
                for i in 0..N {
                    mem.insert(&key(i), i + 1, ValueKind::Put, &value);
                }
                mem
            },
            BatchSize::LargeInput,
        )
    });
    let mem = filled_memtable();
    g.bench_function("read all 100k in order (a flush's pass)", |b| {
        b.iter(|| mem.entries().map(|e| e.key().len() + e.value().len()).sum::<usize>())
    });
    g.throughput(Throughput::Elements(1));
    g.sample_size(50);
    let mut i = 0u64;
    g.bench_function("get hit (of 100k)", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(mem.get(&key(i), u64::MAX >> 8))
        })
    });
    g.bench_function("get miss (of 100k)", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(mem.get(&key(i + N), u64::MAX >> 8))
        })
    });
    g.finish();
}

fn internal_key_compare(c: &mut Criterion) {
    let keys: Vec<InternalKey> =
        (0..1024).map(|i| InternalKey::new(&key(i), i, ValueKind::Put)).collect();
    let mut g = c.benchmark_group("internal key");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("compare (16 B user keys)", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(compare_internal(keys[i].encoded(), keys[(i * 7) & 1023].encoded()))
        })
    });
    g.finish();
}

fn merging_iterator(c: &mut Criterion) {
    // 8 sources of 12.5k entries each, interleaved in key order: a scan over a memtable,
    // two immutable memtables and five tables.
    let sources: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..8u64)
        .map(|s| {
            (0..N / 8)
                .map(|j| {
                    let i = j * 8 + s;
                    (
                        InternalKey::new(&i.to_be_bytes(), i + 1, ValueKind::Put).into_encoded(),
                        vec![1u8; 100],
                    )
                })
                .collect()
        })
        .collect();
    let mut g = c.benchmark_group("merging iterator");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("forward scan, 8 sources, 100k entries", |b| {
        b.iter_batched(
            || {
                let children: Vec<Box<dyn InternalIterator>> = sources
                    .iter()
                    .map(|s| Box::new(VecIterator::new(s.clone())) as Box<dyn InternalIterator>)
                    .collect();
                MergingIterator::new(children)
            },
            |mut m| {
                m.seek_to_first();
                let mut n = 0u64;
                while m.valid() {
                    n += m.value().len() as u64;
                    m.next();
                }
                n
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, memtable, internal_key_compare, merging_iterator);
criterion_main!(benches);
