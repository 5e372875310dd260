//! The model-based property test: a random sequence of [`Op`]s run against a store and a
//! [`Model`], with every read compared, on any store the adapter [`StoreUnderTest`] drives
//! (a [`strata::Db`], a hash- or range-partitioned [`strata::ShardedDb`]).
//!
//! Keys come from two families, so that one sequence exercises both what a single database
//! and what a sharded one must get right: `k{nn}/{id}` keys share 16 prefixes (prefix scans,
//! shared-prefix compression in blocks), and short keys over `a..=h` fall on both sides of
//! range-partition split points such as `c`, `e` and `eg`.
//!
//! What [`run`] checks:
//! * after every step: gets (present and absent keys); range scans forward, backward and
//!   draining both ends of one iterator in a random pattern (they meet without loss or
//!   overlap); prefix scans (the empty prefix included); snapshot gets and full scans in both
//!   directions, against what the model saw when the snapshot was taken;
//! * every write path agrees: `put`, `delete`, `write`, `write_with` (Buffered) and
//!   `write_async` (batches split across shards on a sharded store);
//! * range deletes hide exactly the keys in their range, from reads and scans but not
//!   from older snapshots;
//! * flushes and full compactions change nothing visible; a close and reopen keeps every
//!   write;
//! * at the end: full scans forward, backward and alternating ends, and every live snapshot
//!   (forward, backward, gets of keys it holds and of keys it must not see).

use std::collections::VecDeque;
use std::ops::Bound;

use proptest::prelude::*;
use strata::{Bytes, KvSnapshot, KvStore};

use crate::model::{batch_of, Entry, Model, Mutation, State};
use crate::store::StoreUnderTest;

/// One step of the model test.
#[derive(Debug, Clone)]
pub enum Op {
    /// `put(key, value)`.
    Put(Vec<u8>, Vec<u8>),
    /// `delete(key)`.
    Delete(Vec<u8>),
    /// `write(batch)` with the default durability.
    Batch(Vec<Mutation>),
    /// `write_with(batch, Durability::Buffered)`.
    BufferedBatch(Vec<Mutation>),
    /// `write_async(batch)`, then wait for it.
    AsyncBatch(Vec<Mutation>),
    /// `get(key)`.
    Get(Vec<u8>),
    /// A scan of `[start, end)` (unbounded where `None`): forward, backward, then one
    /// iterator drained from the front where `ends` is true and from the back where it is
    /// false (then from the front).
    Scan {
        /// Inclusive start.
        start: Option<Vec<u8>>,
        /// Exclusive end.
        end: Option<Vec<u8>>,
        /// Which end of the iterator each step takes from.
        ends: Vec<bool>,
    },
    /// `prefix(p)`.
    Prefix(Vec<u8>),
    /// Takes a snapshot.
    TakeSnapshot,
    /// Reads a live snapshot (`index` modulo their number): a get of `key`, full scans both
    /// ways.
    ReadSnapshot {
        /// Which snapshot.
        index: usize,
        /// The key to get.
        key: Vec<u8>,
    },
    /// Drops a live snapshot (`index` modulo their number).
    DropSnapshot {
        /// Which snapshot.
        index: usize,
    },
    /// `delete_range(start..end)` (in any order: an inverted range deletes nothing).
    DeleteRange(Vec<u8>, Vec<u8>),
    /// `flush()`.
    Flush,
    /// `compact()`: everything down to the last level.
    Compact,
    /// Drops the snapshots, `close()`s the store and opens it again.
    Reopen,
}

/// A key of either family: `k{id % 16:02}/{id}`, or 1 to 3 letters of `a..=h`.
pub fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u8>().prop_map(|id| format!("k{:02}/{id}", id % 16).into_bytes()),
        prop::collection::vec(prop::sample::select(b"abcdefgh".to_vec()), 1..4),
    ]
}

/// A prefix of either family: `k{nn}/`, or 0 or 1 letters (the empty prefix is every key).
pub fn prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..16).prop_map(|p| format!("k{p:02}/").into_bytes()),
        prop::collection::vec(prop::sample::select(b"abcdefgh".to_vec()), 0..2),
    ]
}

/// A value of up to 39 bytes.
pub fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

/// The entries of a batch: 1 to 11 puts (three in four) and deletes.
pub fn batch() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec((key(), prop::option::weighted(0.75, value())), 1..12)
}

/// One [`Op`], writes the most likely.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        7 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => key().prop_map(Op::Delete),
        2 => batch().prop_map(Op::Batch),
        1 => batch().prop_map(Op::BufferedBatch),
        2 => batch().prop_map(Op::AsyncBatch),
        4 => key().prop_map(Op::Get),
        3 => (
            prop::option::of(key()),
            prop::option::of(key()),
            prop::collection::vec(any::<bool>(), 0..40)
        )
            .prop_map(|(start, end, ends)| Op::Scan { start, end, ends }),
        1 => prefix().prop_map(Op::Prefix),
        1 => Just(Op::TakeSnapshot),
        2 => (any::<usize>(), key()).prop_map(|(index, key)| Op::ReadSnapshot { index, key }),
        1 => any::<usize>().prop_map(|index| Op::DropSnapshot { index }),
        1 => (key(), key()).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// A sequence of up to `max_len - 1` (at least one) [`Op`]s.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..max_len)
}

fn entries(items: impl Iterator<Item = strata::Result<(Bytes, Bytes)>>, what: &str) -> Vec<Entry> {
    items
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn reversed(mut list: Vec<Entry>) -> Vec<Entry> {
    list.reverse();
    list
}

/// Drains `iter` taking from the front where `ends` is true and from the back where it is
/// false, then from the front; each step must yield the model's next entry at that end.
fn drain_both_ends(
    mut iter: impl DoubleEndedIterator<Item = strata::Result<(Bytes, Bytes)>>,
    want: Vec<Entry>,
    ends: &[bool],
    what: &str,
) {
    let mut want: VecDeque<Entry> = want.into();
    let then_front = std::iter::repeat_n(&true, want.len() + 1);
    for (step, &front) in ends.iter().chain(then_front).enumerate() {
        let (got, expected) = if front {
            (iter.next(), want.pop_front())
        } else {
            (iter.next_back(), want.pop_back())
        };
        let got = got.map(|r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap_or_else(|e| panic!("{what}: {e}"))
        });
        assert_eq!(
            got,
            expected,
            "{what}: step {step} from the {}",
            if front { "front" } else { "back" }
        );
        if got.is_none() {
            return;
        }
    }
}

fn bound(key: &Option<Vec<u8>>, inclusive: bool) -> Bound<&[u8]> {
    match key {
        None => Bound::Unbounded,
        Some(k) if inclusive => Bound::Included(k),
        Some(k) => Bound::Excluded(k),
    }
}

/// Checks a snapshot's full scans (both directions) and the gets of `keys` against `seen`.
fn check_snapshot<'k>(
    snapshot: &dyn KvSnapshot,
    seen: &State,
    keys: impl IntoIterator<Item = &'k [u8]>,
) {
    let want: Vec<Entry> = seen.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(entries(snapshot.iter(), "snapshot scan"), want, "snapshot scan");
    assert_eq!(entries(snapshot.iter().rev(), "reverse snapshot scan"), reversed(want));
    for key in keys {
        let got = snapshot.get(key).unwrap_or_else(|e| panic!("snapshot get: {e}"));
        assert_eq!(
            got.as_deref(),
            seen.get(key).map(Vec::as_slice),
            "snapshot get({})",
            String::from_utf8_lossy(key)
        );
    }
}

/// Runs `ops` against the store `open` opens (and reopens on [`Op::Reopen`], after closing
/// it) and a [`Model`], panicking at the first disagreement. `open` must open the same store
/// each time, empty the first time.
///
/// ```
/// use std::sync::Arc;
/// use strata::{Db, Options};
/// use strata_core::sim::SimFileSystem;
/// use strata_testkit::model_test::{run, Op};
///
/// let fs = SimFileSystem::new();
/// let open = || Db::open("/db", Options::default().file_system(Arc::new(fs.clone()))).unwrap();
/// run(
///     open,
///     vec![
///         Op::Put(b"a".to_vec(), b"1".to_vec()),
///         Op::TakeSnapshot,
///         Op::Delete(b"a".to_vec()),
///         Op::ReadSnapshot { index: 0, key: b"a".to_vec() },
///         Op::Reopen,
///         Op::Get(b"a".to_vec()),
///     ],
/// );
/// ```
pub fn run<S: KvStore + 'static>(open: impl Fn() -> S, ops: Vec<Op>) {
    let mut store = StoreUnderTest::new(open());
    let mut model: Model<Box<dyn KvSnapshot>> = Model::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.put(&k, &v).unwrap_or_else(|e| panic!("put: {e}"));
                model.apply(&[(k, Some(v))]);
            }
            Op::Delete(k) => {
                store.delete(&k).unwrap_or_else(|e| panic!("delete: {e}"));
                model.apply(&[(k, None)]);
            }
            Op::Batch(mutations) => {
                store.write(batch_of(&mutations)).unwrap_or_else(|e| panic!("write: {e}"));
                model.apply(&mutations);
            }
            Op::BufferedBatch(mutations) => {
                store
                    .write_buffered(batch_of(&mutations))
                    .unwrap_or_else(|e| panic!("write_with: {e}"));
                model.apply(&mutations);
            }
            Op::AsyncBatch(mutations) => {
                store
                    .write_async_and_wait(batch_of(&mutations))
                    .unwrap_or_else(|e| panic!("write_async: {e}"));
                model.apply(&mutations);
            }
            Op::Get(k) => {
                let got = store.get(&k).unwrap_or_else(|e| panic!("get: {e}"));
                assert_eq!(got.as_deref(), model.get(&k), "get({})", String::from_utf8_lossy(&k));
            }
            Op::Scan { start, end, ends } => {
                let (start, end) = (bound(&start, true), bound(&end, false));
                let want = model.range(start, end);
                let what = format!("scan {start:?}..{end:?}");
                assert_eq!(entries(store.range(start, end), &what), want, "{what}");
                assert_eq!(
                    entries(store.range(start, end).rev(), &what),
                    reversed(want.clone()),
                    "reverse {what}"
                );
                drain_both_ends(store.range(start, end), want, &ends, &what);
            }
            Op::Prefix(p) => {
                let what = format!("prefix({})", String::from_utf8_lossy(&p));
                assert_eq!(entries(store.prefix(&p), &what), model.prefix(&p), "{what}");
                assert_eq!(
                    entries(store.prefix(&p).rev(), &what),
                    reversed(model.prefix(&p)),
                    "reverse {what}"
                );
            }
            Op::TakeSnapshot => model.take_snapshot(store.snapshot()),
            Op::ReadSnapshot { index, key } => {
                let live = model.snapshots();
                if let Some((snapshot, seen)) = live.get(index % live.len().max(1)) {
                    check_snapshot(snapshot.as_ref(), seen, [key.as_slice()]);
                }
            }
            Op::DropSnapshot { index } => {
                let n = model.snapshots().len().max(1);
                model.drop_snapshot(index % n);
            }
            Op::DeleteRange(start, end) => {
                store.delete_range(&start, &end).unwrap_or_else(|e| panic!("delete_range: {e}"));
                model.delete_range(&start, &end);
            }
            Op::Flush => store.flush().unwrap_or_else(|e| panic!("flush: {e}")),
            Op::Compact => store.compact().unwrap_or_else(|e| panic!("compact: {e}")),
            Op::Reopen => {
                model.drop_snapshots();
                store.close().unwrap_or_else(|e| panic!("close: {e}"));
                store = StoreUnderTest::new(open());
            }
        }
    }

    let all = model.entries();
    assert_eq!(entries(store.iter(), "full scan"), all, "full scan");
    assert_eq!(entries(store.iter().rev(), "reverse full scan"), reversed(all.clone()));
    let alternating: Vec<bool> = (0..all.len() + 1).map(|i| i % 2 == 0).collect();
    drain_both_ends(store.iter(), all, &alternating, "full scan from both ends");
    for (snapshot, seen) in model.snapshots() {
        // Keys the snapshot holds, and keys written after it that it must not see.
        let held = seen.keys().take(5).map(Vec::as_slice);
        let later = model.state().keys().filter(|k| !seen.contains_key(*k)).take(5);
        check_snapshot(snapshot.as_ref(), seen, held.chain(later.map(Vec::as_slice)));
    }
    model.drop_snapshots();
    store.close().unwrap_or_else(|e| panic!("final close: {e}"));
}
