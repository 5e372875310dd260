//! Model-based tests of `ShardedDb` against a `BTreeMap`, under both partitioners: point
//! reads, scans from both ends (and both at once), split batches, async writes, snapshots
//! and reopening.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use proptest::prelude::*;
use strata::{Bytes, Durability, Options, Partitioner, ShardedDb, ShardedOptions, WriteBatch};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    AsyncBatch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Get(Vec<u8>),
    /// Scan [lo, hi) (or from/to unbounded when None), taking from the front when the
    /// pattern bit is true and from the back otherwise.
    Scan(Option<Vec<u8>>, Option<Vec<u8>>, Vec<bool>),
    Prefix(Vec<u8>),
    Snapshot,
    Flush,
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"abcdefgh".to_vec()), 1..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

fn entries() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    prop::collection::vec((key(), prop::option::weighted(0.8, value())), 1..12)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Delete),
        3 => entries().prop_map(Op::Batch),
        2 => entries().prop_map(Op::AsyncBatch),
        3 => key().prop_map(Op::Get),
        3 => (prop::option::of(key()), prop::option::of(key()), prop::collection::vec(any::<bool>(), 0..40))
            .prop_map(|(a, b, p)| Op::Scan(a, b, p)),
        1 => prop::collection::vec(prop::sample::select(b"abcdefgh".to_vec()), 0..2).prop_map(Op::Prefix),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

fn options(partitioner: &Partitioner) -> ShardedOptions {
    let shards = match partitioner {
        Partitioner::Hash => 4,
        Partitioner::Range(s) => s.len() + 1,
    };
    ShardedOptions::new(shards)
        .partitioner(partitioner.clone())
        .engine(Options::default().memtable_size(4096))
}

fn to_batch(entries: &[(Vec<u8>, Option<Vec<u8>>)], model: &mut Model) -> WriteBatch {
    let mut b = WriteBatch::new();
    for (k, v) in entries {
        match v {
            Some(v) => {
                b.put(k, v);
                model.insert(k.clone(), v.clone());
            }
            None => {
                b.delete(k);
                model.remove(k);
            }
        }
    }
    b
}

fn pairs(items: impl Iterator<Item = strata::Result<(Bytes, Bytes)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    items.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan error")).collect()
}

/// Drains `it` taking from the front or back per `pattern` (then front), as the model does.
fn drain_both_ends(
    mut it: impl DoubleEndedIterator<Item = strata::Result<(Bytes, Bytes)>>,
    model: Vec<(Vec<u8>, Vec<u8>)>,
    pattern: &[bool],
) -> Result<(), TestCaseError> {
    let mut expected: VecDeque<_> = model.into();
    for &front in pattern.iter().chain(std::iter::repeat_n(&true, expected.len() + 1)) {
        let (got, want) = if front {
            (it.next(), expected.pop_front())
        } else {
            (it.next_back(), expected.pop_back())
        };
        let got = got.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan error"));
        prop_assert_eq!(got.clone(), want);
        if got.is_none() {
            break;
        }
    }
    Ok(())
}

fn run(partitioner: Partitioner, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut db = ShardedDb::open(dir.path(), options(&partitioner)).unwrap();
    let mut model = Model::new();
    let mut snapshots = Vec::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                db.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            Op::Delete(k) => {
                db.delete(&k).unwrap();
                model.remove(&k);
            }
            Op::Batch(e) => db.write_with(to_batch(&e, &mut model), Durability::Buffered).unwrap(),
            Op::AsyncBatch(e) => db.write_async(to_batch(&e, &mut model)).wait().unwrap(),
            Op::Get(k) => {
                prop_assert_eq!(db.get(&k).unwrap().map(|v| v.to_vec()), model.get(&k).cloned())
            }
            Op::Scan(lo, hi, pattern) => {
                let bounds = (
                    lo.clone().map_or(Bound::Unbounded, Bound::Included),
                    hi.clone().map_or(Bound::Unbounded, Bound::Excluded),
                );
                if let (Some(lo), Some(hi)) = (&lo, &hi) {
                    if lo > hi {
                        continue; // BTreeMap panics on inverted ranges
                    }
                }
                let want: Vec<_> =
                    model.range(bounds.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(
                    pairs(db.range(bounds.clone()).rev()),
                    want.iter().rev().cloned().collect::<Vec<_>>()
                );
                drain_both_ends(db.range(bounds), want, &pattern)?;
            }
            Op::Prefix(p) => {
                let want: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(pairs(db.prefix(&p)), want);
            }
            Op::Snapshot => snapshots.push((db.snapshot(), model.clone())),
            Op::Flush => db.flush().unwrap(),
            Op::Reopen => {
                snapshots.clear();
                db.close().unwrap();
                db = ShardedDb::open(dir.path(), options(&partitioner)).unwrap();
            }
        }
    }
    let all: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    prop_assert_eq!(pairs(db.iter()), all);
    for (snap, m) in &snapshots {
        let want: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(pairs(snap.iter()), want.clone());
        prop_assert_eq!(pairs(snap.iter().rev()), want.into_iter().rev().collect::<Vec<_>>());
        for k in m.keys().take(5) {
            prop_assert_eq!(snap.get(k).unwrap().map(|v| v.to_vec()), m.get(k).cloned());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn hash_sharded_matches_a_btreemap(ops in prop::collection::vec(op(), 1..60)) {
        run(Partitioner::Hash, ops)?;
    }

    #[test]
    fn range_sharded_matches_a_btreemap(ops in prop::collection::vec(op(), 1..60)) {
        run(Partitioner::Range(vec![b"c".to_vec(), b"e".to_vec(), b"eg".to_vec()]), ops)?;
    }
}
