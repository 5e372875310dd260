//! Leveled compaction through the public API: automatic compaction keeps level 0 bounded,
//! deletes vanish at the bottom, iterators and snapshots keep their view across
//! compactions, and a randomized run against a model with snapshots and reopens.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use strata::{Compression, Db, Options, WriteBatch};
use strata_core::sim::SimFileSystem;

/// Key to value: what the database must hold.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn small(fs: &SimFileSystem) -> Options {
    Options::default()
        .file_system(Arc::new(fs.clone()))
        .memtable_size(16 << 10)
        .block_size(512)
        .l0_compaction_trigger(2)
        .level_base_bytes(64 << 10)
        .target_file_size(16 << 10)
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

#[test]
fn automatic_compaction_bounds_level0_and_keeps_data() {
    let fs = SimFileSystem::new();
    let db = Db::open("/db", small(&fs)).unwrap();
    for round in 0..4u32 {
        let mut b = WriteBatch::new();
        for i in 0..3000u32 {
            b.put(format!("key{:06}", (i * 7919) % 3000), value(i, round));
            if b.len() == 50 {
                db.write(std::mem::take(&mut b)).unwrap();
            }
        }
    }
    db.flush().unwrap();
    db.wait_for_compaction().unwrap();
    let m = db.metrics();
    assert!(m.compactions > 0, "{m}");
    assert!(m.levels[0].files < 2, "L0 not compacted: {m}");
    assert!(m.levels.iter().skip(1).any(|l| l.files > 0), "{m}");
    assert_eq!(db.iter().count(), 3000);
    for i in (0..3000u32).step_by(97) {
        let k = format!("key{:06}", (i * 7919) % 3000);
        assert_eq!(db.get(&k).unwrap().as_deref(), Some(&value(i, 3)[..]), "{k}");
    }
}

#[test]
fn deleting_everything_and_compacting_leaves_no_tables() {
    let fs = SimFileSystem::new();
    let db = Db::open("/db", small(&fs)).unwrap();
    for i in 0..5000u32 {
        db.put(i.to_be_bytes(), value(i, 0)).unwrap();
    }
    for i in 0..5000u32 {
        db.delete(i.to_be_bytes()).unwrap();
    }
    db.compact().unwrap();
    let m = db.metrics();
    assert_eq!(m.table_bytes(), 0, "{m}");
    assert_eq!(db.iter().count(), 0);
}

#[test]
fn iterators_and_snapshots_keep_their_view_across_compactions() {
    let fs = SimFileSystem::new();
    let db = Db::open("/db", small(&fs)).unwrap();
    for i in 0..2000u32 {
        db.put(i.to_be_bytes(), value(i, 0)).unwrap();
    }
    db.flush().unwrap();
    let snap = db.snapshot();
    let mut iter = db.iter();
    let first = iter.next().unwrap().unwrap();
    for i in 0..2000u32 {
        if i % 2 == 0 {
            db.delete(i.to_be_bytes()).unwrap();
        } else {
            db.put(i.to_be_bytes(), value(i, 1)).unwrap();
        }
    }
    db.compact().unwrap();
    // The iterator's tables were replaced and purged from the directory's view, but it
    // still reads them.
    let rest: Vec<_> = iter.map(|r| r.unwrap()).collect();
    assert_eq!(rest.len() + 1, 2000);
    assert_eq!(&first.1[..], &value(0, 0)[..]);
    for (k, v) in &rest {
        let i = u32::from_be_bytes(k[..].try_into().unwrap());
        assert_eq!(&v[..], &value(i, 0)[..]);
    }
    // The snapshot still sees the old values after a full compaction.
    assert_eq!(snap.iter().count(), 2000);
    assert_eq!(snap.get(4u32.to_be_bytes()).unwrap().as_deref(), Some(&value(4, 0)[..]));
    assert_eq!(db.get(4u32.to_be_bytes()).unwrap(), None);
    assert_eq!(db.iter().count(), 1000);
    drop(snap);
    db.compact().unwrap();
    assert_eq!(db.iter().count(), 1000);
}

/// Writes, overwrites, deletes, snapshots held and released, reopens, manual and automatic
/// compactions interleaved: the result always equals a model, and open snapshots keep
/// their view.
#[test]
fn randomized_against_model() {
    for seed in 0..4u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let fs = SimFileSystem::new();
        let dir = Path::new("/db");
        let mut db = Db::open(dir, small(&fs)).unwrap();
        let mut model: Model = BTreeMap::new();
        let mut snaps: Vec<(strata::Snapshot, Model)> = Vec::new();
        for step in 0..3000u32 {
            let k = format!("k{:04}", rng.random_range(0..600u32)).into_bytes();
            match rng.random_range(0..100u32) {
                0..=59 => {
                    let v = value(step, rng.random_range(0..3));
                    db.put(&k, &v).unwrap();
                    model.insert(k, v);
                }
                60..=79 => {
                    db.delete(&k).unwrap();
                    model.remove(&k);
                }
                80..=82 => snaps.push((db.snapshot(), model.clone())),
                83..=85 => {
                    if !snaps.is_empty() {
                        let i = rng.random_range(0..snaps.len());
                        snaps.swap_remove(i);
                    }
                }
                86 => db.compact().unwrap(),
                87 => {
                    let lo = format!("k{:04}", rng.random_range(0..600u32));
                    db.compact_range(lo.as_str()..).unwrap();
                }
                88 => {
                    snaps.clear();
                    db.close().unwrap();
                    db = Db::open(dir, small(&fs)).unwrap();
                }
                _ => {
                    assert_eq!(db.get(&k).unwrap().map(|v| v.to_vec()), model.get(&k).cloned());
                }
            }
            if step % 500 == 499 {
                let all: Vec<_> =
                    db.iter().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
                assert_eq!(
                    all,
                    model.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(),
                    "seed {seed} step {step}"
                );
                for (snap, seen) in &snaps {
                    let all: Vec<_> = snap
                        .iter()
                        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                        .collect();
                    assert_eq!(
                        all,
                        seen.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(),
                        "snapshot, seed {seed} step {step}"
                    );
                }
            }
        }
        db.wait_for_compaction().unwrap();
    }
}

/// Level 0 raw, zstd below.
fn level0_raw() -> Vec<Compression> {
    vec![Compression::None, Compression::Zstd { level: 1 }]
}

/// A value of `4 * repeats` bytes that compresses about `repeats`-fold.
fn compressible(i: u32, repeats: usize) -> Vec<u8> {
    format!("{i:04}").repeat(repeats).into_bytes()
}

/// Writes `n` keys with `compressible(i, repeats)` values.
fn fill_compressible(db: &Db, n: u32, repeats: usize) {
    for i in 0..n {
        db.put(format!("key{i:05}"), compressible(i, repeats)).unwrap();
    }
}

/// Every 97th of the `n` keys reads back its value.
fn check_compressible(db: &Db, n: u32, repeats: usize) {
    for i in (0..n).step_by(97) {
        let got = db.get(format!("key{i:05}")).unwrap();
        assert_eq!(got.as_deref(), Some(&compressible(i, repeats)[..]));
    }
}

#[test]
fn compression_per_level_leaves_level0_raw_and_compresses_below() {
    let fs = SimFileSystem::new();
    let opts =
        Options::default().file_system(Arc::new(fs.clone())).compression_per_level(level0_raw());
    let db = Db::open(Path::new("/db"), opts).unwrap();
    // 1,000 values of 1 KiB that compress about 100-fold.
    fill_compressible(&db, 1000, 256);
    db.flush().unwrap();
    let l0 = db.metrics().levels[0].bytes;
    assert!(l0 > 1000 * 1024, "level 0 is stored raw: {l0} bytes");

    db.compact().unwrap();
    let m = db.metrics();
    assert_eq!(m.levels[0].files, 0);
    let below: u64 = m.levels[1..].iter().map(|l| l.bytes).sum();
    assert!(below < l0 / 10, "compaction output is compressed: {below} vs {l0} bytes");
    check_compressible(&db, 1000, 256);
}

#[test]
fn an_invalid_compression_level_is_refused_at_open() {
    let fs = SimFileSystem::new();
    let opts = Options::default()
        .file_system(Arc::new(fs))
        .compression_per_level(vec![Compression::None, Compression::Zstd { level: 99 }]);
    match Db::open(Path::new("/db"), opts) {
        Err(strata::Error::InvalidArgument(msg)) => assert!(msg.contains("zstd level 99"), "{msg}"),
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_table_moving_to_a_level_with_other_compression_is_rewritten_not_moved() {
    // Sequential keys make disjoint level-0 tables, which would otherwise move down to
    // level 1 unchanged (a trivial move), still raw.
    let fs = SimFileSystem::new();
    let opts = small(&fs)
        .memtable_size(64 << 10)
        .level_base_bytes(64 << 20)
        .compression_per_level(level0_raw());
    let db = Db::open(Path::new("/db"), opts).unwrap();
    fill_compressible(&db, 2000, 64);
    db.flush().unwrap();
    db.wait_for_compaction().unwrap();
    let m = db.metrics();
    let below: u64 = m.levels[1..].iter().map(|l| l.bytes).sum();
    assert!(m.levels[1].files > 0, "compaction ran: {:?}", m.levels);
    assert!(below < 2000 * 256 / 5, "level 1 is compressed: {below} bytes");
    check_compressible(&db, 2000, 64);
}
