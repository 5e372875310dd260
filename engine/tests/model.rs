//! Model-based property test: random operations on a `Db` (on the simulated file system,
//! with tiny memtables so flushes happen) agree with a `BTreeMap` after every step,
//! including snapshots, scans in both directions, flushes and close/reopen cycles.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use strata::{Db, Durability, Options, WriteBatch};
use strata_core::sim::SimFileSystem;

/// Key to value: what the database must hold.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Batch(Vec<(u8, Option<Vec<u8>>)>),
    Get(u8),
    Scan { lo: Option<u8>, hi: Option<u8>, reverse: bool },
    Prefix(u8),
    TakeSnapshot,
    ReadSnapshot(u8),
    DropSnapshot,
    Flush,
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    // Keys share prefixes, so prefix scans and shared-prefix compression are exercised.
    format!("k{:02}/{}", k % 16, k).into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    let value = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        8 => (any::<u8>(), value.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => any::<u8>().prop_map(Op::Delete),
        2 => proptest::collection::vec((any::<u8>(), proptest::option::of(value)), 1..8).prop_map(Op::Batch),
        4 => any::<u8>().prop_map(Op::Get),
        2 => (proptest::option::of(any::<u8>()), proptest::option::of(any::<u8>()), any::<bool>())
            .prop_map(|(lo, hi, reverse)| Op::Scan { lo, hi, reverse }),
        1 => (0u8..16).prop_map(Op::Prefix),
        1 => Just(Op::TakeSnapshot),
        2 => any::<u8>().prop_map(Op::ReadSnapshot),
        1 => Just(Op::DropSnapshot),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

fn open(fs: &SimFileSystem, dir: &Path) -> Db {
    let opts = Options::default()
        .file_system(Arc::new(fs.clone()))
        .memtable_size(4096)
        .block_size(256)
        .l0_slowdown_trigger(10_000)
        .l0_stop_trigger(10_000)
        .durability(Durability::Buffered);
    Db::open(dir, opts).expect("open")
}

fn collect(
    iter: impl Iterator<Item = strata::Result<(strata::Bytes, strata::Bytes)>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<Result<_, _>>().expect("scan")
}

fn run(ops: Vec<Op>) {
    let fs = SimFileSystem::new();
    let dir = Path::new("/db");
    let mut db = open(&fs, dir);
    let mut model: Model = BTreeMap::new();
    let mut snapshots: Vec<(strata::Snapshot, Model)> = Vec::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                db.put(key(k), &v).unwrap();
                model.insert(key(k), v);
            }
            Op::Delete(k) => {
                db.delete(key(k)).unwrap();
                model.remove(&key(k));
            }
            Op::Batch(entries) => {
                let mut b = WriteBatch::new();
                for (k, v) in entries {
                    match v {
                        Some(v) => {
                            b.put(key(k), &v);
                            model.insert(key(k), v);
                        }
                        None => {
                            b.delete(key(k));
                            model.remove(&key(k));
                        }
                    }
                }
                db.write(b).unwrap();
            }
            Op::Get(k) => {
                assert_eq!(
                    db.get(key(k)).unwrap().map(|v| v.to_vec()),
                    model.get(&key(k)).cloned()
                );
            }
            Op::Scan { lo, hi, reverse } => {
                let (lo, hi) = (lo.map(key), hi.map(key));
                if matches!((&lo, &hi), (Some(a), Some(b)) if a > b) {
                    continue;
                }
                let bounds = (
                    lo.clone().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included),
                    hi.clone().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                );
                let mut expect: Vec<_> =
                    model.range(bounds.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                let mut got = if reverse {
                    collect(db.range(bounds).rev())
                } else {
                    collect(db.range(bounds))
                };
                if reverse {
                    got.reverse();
                }
                if expect != got {
                    expect.truncate(50);
                    panic!("scan mismatch (reverse={reverse}): expected {expect:?}\n got {got:?}");
                }
            }
            Op::Prefix(p) => {
                let prefix = format!("k{p:02}/").into_bytes();
                let expect: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(collect(db.prefix(&prefix)), expect);
            }
            Op::TakeSnapshot => snapshots.push((db.snapshot(), model.clone())),
            Op::ReadSnapshot(k) => {
                if let Some((snap, seen)) = snapshots.last() {
                    assert_eq!(
                        snap.get(key(k)).unwrap().map(|v| v.to_vec()),
                        seen.get(&key(k)).cloned()
                    );
                    let all = collect(snap.iter());
                    assert_eq!(
                        all,
                        seen.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
                    );
                }
            }
            Op::DropSnapshot => {
                snapshots.pop();
            }
            Op::Flush => db.flush().unwrap(),
            Op::Reopen => {
                snapshots.clear();
                db.close().unwrap();
                drop(db);
                db = open(&fs, dir);
            }
        }
    }
    // Double-ended iteration from both ends meets in the middle without loss or overlap.
    let mut it = db.iter();
    let (mut front, mut back) = (Vec::new(), Vec::new());
    loop {
        match it.next() {
            Some(r) => front.push(r.unwrap().0.to_vec()),
            None => break,
        }
        match it.next_back() {
            Some(r) => back.push(r.unwrap().0.to_vec()),
            None => break,
        }
    }
    back.reverse();
    front.extend(back);
    assert_eq!(front, model.keys().cloned().collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn db_matches_btreemap(ops in proptest::collection::vec(op(), 1..300)) {
        run(ops);
    }
}
