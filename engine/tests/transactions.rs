//! Optimistic transactions and conditional writes: no lost updates under contention, a
//! conflict exactly when something read changed, conditions checked atomically, and a
//! model test in which every committed history is serializable and every conflict is
//! justified.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use strata::WriteBatch;
use strata::{Db, Durability, Error, Expect, Options, Partitioner, ShardedDb, ShardedOptions};

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    (dir, db)
}

fn counter(v: Option<strata::Bytes>) -> u64 {
    v.map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

/// The lost-update case: 8 threads × 500 increments of one counter. Every acknowledged
/// commit must be in the final value.
#[test]
fn concurrent_increments_through_transactions_lose_nothing() {
    let (_dir, db) = open();
    let conflicts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (db, conflicts) = (db.clone(), Arc::clone(&conflicts));
            std::thread::spawn(move || {
                let mut acknowledged = 0;
                while acknowledged < 500 {
                    let mut tx = db.transaction();
                    let n = counter(tx.get("counter").unwrap());
                    tx.put("counter", (n + 1).to_string());
                    match tx.commit() {
                        Ok(()) => acknowledged += 1,
                        Err(Error::Conflict) => {
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(counter(db.get("counter").unwrap()), 4000);
}

#[test]
fn concurrent_increments_through_compare_and_swap_lose_nothing() {
    let (_dir, db) = open();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut acknowledged = 0;
                while acknowledged < 500 {
                    let current = db.get("counter").unwrap();
                    let next = (counter(current.clone()) + 1).to_string();
                    match db.compare_and_swap("counter", current.as_deref(), Some(next.as_bytes()))
                    {
                        Ok(()) => acknowledged += 1,
                        Err(Error::ConditionFailed { key }) => assert_eq!(key, b"counter"),
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(counter(db.get("counter").unwrap()), 4000);
}

#[test]
fn a_conflict_needs_a_write_to_something_read_after_the_snapshot() {
    let (_dir, db) = open();
    db.put("a", "1").unwrap();
    // Written before the snapshot: no conflict.
    let mut tx = db.transaction();
    assert_eq!(tx.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    db.put("b", "other key").unwrap();
    tx.put("a", "2");
    tx.commit().unwrap();
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"2"[..]));

    // A read key written after the snapshot: conflict, nothing applied.
    let mut tx = db.transaction();
    tx.get("a").unwrap();
    tx.put("c", "from tx");
    db.put("a", "3").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));
    assert_eq!(db.get("c").unwrap(), None);

    // A delete counts as a write.
    let mut tx = db.transaction();
    tx.get("a").unwrap();
    tx.put("c", "x");
    db.delete("a").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));

    // A key the transaction read and wrote, written by someone else: first committer wins.
    let mut tx = db.transaction();
    tx.get("z").unwrap();
    tx.put("b", "tx");
    db.put("b", "plain").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"plain"[..]));
}

#[test]
fn blind_writes_never_conflict_and_read_only_transactions_always_commit() {
    let (_dir, db) = open();
    let mut blind = db.transaction();
    blind.put("k", "tx");
    db.put("k", "plain").unwrap();
    blind.commit().unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"tx"[..]), "last committer wins");

    let mut reader = db.transaction();
    reader.get("k").unwrap();
    db.put("k", "changed").unwrap();
    reader.commit().unwrap(); // it wrote nothing: it read one consistent snapshot
}

#[test]
fn a_write_into_a_scanned_range_is_a_conflict_outside_it_is_not() {
    let (_dir, db) = open();
    for k in ["user/1", "user/3", "vendor/1"] {
        db.put(k, "v").unwrap();
    }
    let mut tx = db.transaction();
    assert_eq!(tx.prefix("user/").count(), 2);
    tx.put("summary", "2 users");
    db.put("vendor/2", "v").unwrap();
    tx.commit().unwrap();

    let mut tx = db.transaction();
    assert_eq!(tx.range("user/".."user0").count(), 2);
    tx.put("summary", "2 users");
    db.put("user/2", "phantom").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));
}

#[test]
fn reads_merge_own_writes_over_the_snapshot() {
    let (_dir, db) = open();
    for k in ["a", "b", "c"] {
        db.put(k, "stored").unwrap();
    }
    let mut tx = db.transaction();
    db.put("d", "after the snapshot").unwrap();
    tx.delete("b");
    tx.put("c", "own");
    tx.put("bb", "own");
    assert_eq!(tx.get("b").unwrap(), None);
    let got: Vec<(String, String)> = tx
        .range::<&str, _>(..)
        .map(|r| {
            let (k, v) = r.unwrap();
            (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())
        })
        .collect();
    let want = [("a", "stored"), ("bb", "own"), ("c", "own")];
    assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
    tx.rollback();
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"stored"[..]), "rollback wrote nothing");
}

/// The conflicting write leaves the memtable (flush, then compaction) before the commit:
/// validation does not depend on where the write lives.
#[test]
fn a_conflict_is_found_after_flush_and_after_compaction() {
    for compact in [false, true] {
        let (_dir, db) = open();
        db.put("k", "0").unwrap();
        let mut tx = db.transaction();
        tx.get("k").unwrap();
        tx.put("k", "tx");
        db.put("k", "1").unwrap();
        db.flush().unwrap();
        if compact {
            db.compact().unwrap();
        }
        assert!(matches!(tx.commit(), Err(Error::Conflict)), "compact {compact}");
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"1"[..]));
    }
}

/// A transaction left open while more than the history bound is written fails safely
/// with a conflict, and flushes and compactions run meanwhile.
#[test]
fn a_long_open_transaction_costs_bounded_history_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().transaction_history_bytes(1024).memtable_size(64 << 10);
    let db = Db::open(dir.path(), opts).unwrap();
    let mut old = db.transaction();
    old.get("unrelated").unwrap();
    old.put("x", "1");
    for i in 0..5000u32 {
        db.put(i.to_be_bytes(), [0u8; 100]).unwrap();
    }
    db.flush().unwrap();
    db.compact().unwrap();
    assert!(db.metrics().flushes > 1, "flushes ran while the transaction was open");
    assert!(matches!(old.commit(), Err(Error::Conflict)), "history was forgotten: must retry");
    let mut fresh = db.transaction();
    fresh.get("unrelated").unwrap();
    fresh.put("x", "1");
    fresh.commit().unwrap();
}

#[test]
fn conditional_batches_apply_all_or_nothing() {
    let (_dir, db) = open();
    let mut create = WriteBatch::new();
    create.expect("stream/1/version", Expect::Absent);
    create.put("stream/1/version", "1");
    create.put("stream/1/event/1", "created");
    db.write(create.clone()).unwrap();
    match db.write(create) {
        Err(Error::ConditionFailed { key }) => assert_eq!(key, b"stream/1/version"),
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    let mut append = WriteBatch::new();
    append.expect("stream/1/version", Expect::Value(b"1".to_vec()));
    append.expect("stream/1/event/1", Expect::Present);
    append.put("stream/1/version", "2");
    append.put("stream/1/event/2", "renamed");
    db.write_with(append.clone(), Durability::Sync).unwrap();
    assert!(matches!(db.write(append), Err(Error::ConditionFailed { .. })));
    assert_eq!(db.get("stream/1/event/2").unwrap().as_deref(), Some(&b"renamed"[..]));
    assert_eq!(db.prefix("stream/1/event/").count(), 2, "the failed batch wrote nothing");

    let mut check_only = WriteBatch::new();
    check_only.expect("stream/1/version", Expect::Value(b"2".to_vec()));
    db.write(check_only).unwrap();
    let mut check_only = WriteBatch::new();
    check_only.expect("nothing", Expect::Present);
    assert!(matches!(db.write(check_only), Err(Error::ConditionFailed { .. })));

    // Queued writes check each conditional batch on its own.
    let mut a = WriteBatch::new();
    a.expect("q", Expect::Absent);
    a.put("q", "first");
    let mut b = a.clone();
    b.put("q2", "second");
    let (ta, tb) = (db.write_async(a), db.write_async(b));
    ta.wait().unwrap();
    assert!(matches!(tb.wait(), Err(Error::ConditionFailed { .. })));
    assert_eq!(db.get("q2").unwrap(), None);
}

#[test]
fn sharded_transactions_and_conditions_stay_on_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"m".to_vec()]));
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    let mut tx = db.transaction();
    assert_eq!(tx.get("a/version").unwrap(), None);
    tx.put("a/event/1", "e").unwrap();
    assert!(matches!(tx.put("z", "x"), Err(Error::CrossShard { bound: 0, other: 1 })));
    assert!(matches!(tx.range::<&str, _>(..), Err(Error::CrossShard { .. })));
    assert_eq!(tx.prefix("a/").unwrap().count(), 1);
    tx.put("a/version", "1").unwrap();
    tx.commit().unwrap();
    assert_eq!(db.get("a/version").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get("z").unwrap(), None);

    let mut tx = db.transaction();
    tx.get("a/version").unwrap();
    tx.put("a/version", "2").unwrap();
    db.put("a/version", "other").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));

    let mut spanning = WriteBatch::new();
    spanning.expect("a/version", Expect::Present);
    spanning.put("z", "x");
    assert!(matches!(db.write(spanning), Err(Error::CrossShard { .. })));
    assert_eq!(db.get("z").unwrap(), None);
    db.compare_and_swap("z", None, Some(b"1")).unwrap();
    assert!(db.compare_and_swap("z", None, Some(b"2")).is_err());
}

/// One step of a single-threaded interleaving of transactions and plain writes.
#[derive(Debug, Clone)]
enum Step {
    Begin(usize),
    Get(usize, u8),
    Scan(usize, u8, u8),
    Put(usize, u8, u8),
    Commit(usize),
    PlainPut(u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    let tx = 0..3usize;
    let key = 0..6u8;
    prop_oneof![
        tx.clone().prop_map(Step::Begin),
        (tx.clone(), key.clone()).prop_map(|(t, k)| Step::Get(t, k)),
        (tx.clone(), key.clone(), key.clone()).prop_map(|(t, a, b)| Step::Scan(
            t,
            a.min(b),
            a.max(b)
        )),
        (tx.clone(), key.clone(), any::<u8>()).prop_map(|(t, k, v)| Step::Put(t, k, v)),
        tx.prop_map(Step::Commit),
        (key, any::<u8>()).prop_map(|(k, v)| Step::PlainPut(k, v)),
    ]
}

/// Key-value pairs a scan returned.
type Scanned = Vec<(u8, u8)>;

/// What the model knows of an open transaction: when it began (in model commits) and what
/// it read, scanned and wrote.
struct Open {
    tx: strata::Transaction,
    began: usize,
    reads: Vec<(u8, Option<u8>)>,
    /// (first key, last key, what the scan returned).
    scans: Vec<(u8, u8, Scanned)>,
    writes: BTreeMap<u8, u8>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every committed transaction read exactly what the serial history (commit order) had
    /// at its commit — so the history is serializable — and every conflict is justified by
    /// a commit after its snapshot to a key it read or wrote, or into a range it scanned.
    #[test]
    fn committed_histories_are_serializable_and_conflicts_justified(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let (_dir, db) = open();
        let mut model: BTreeMap<u8, u8> = BTreeMap::new();
        // Every commit's written keys, in commit order.
        let mut history: Vec<Vec<u8>> = Vec::new();
        let mut open: BTreeMap<usize, Open> = BTreeMap::new();
        let k = |k: u8| [b'k', k];
        for s in steps {
            match s {
                Step::Begin(t) => {
                    open.insert(t, Open { tx: db.transaction(), began: history.len(), reads: vec![], scans: vec![], writes: BTreeMap::new() });
                }
                Step::Get(t, key) => if let Some(o) = open.get_mut(&t) {
                    let v = o.tx.get(k(key)).unwrap().map(|v| v[0]);
                    if !o.writes.contains_key(&key) { o.reads.push((key, v)); }
                    prop_assert_eq!(v, o.writes.get(&key).copied().or(v));
                },
                Step::Scan(t, a, b) => if let Some(o) = open.get_mut(&t) {
                    let got: Vec<(u8, u8)> = o.tx.range(k(a)..=k(b)).map(|r| { let (kk, v) = r.unwrap(); (kk[1], v[0]) }).collect();
                    o.scans.push((a, b, got));
                },
                Step::Put(t, key, v) => if let Some(o) = open.get_mut(&t) {
                    o.tx.put(k(key), [v]);
                    o.writes.insert(key, v);
                },
                Step::PlainPut(key, v) => {
                    db.put(k(key), [v]).unwrap();
                    model.insert(key, v);
                    history.push(vec![key]);
                }
                Step::Commit(t) => if let Some(o) = open.remove(&t) {
                    let blind = o.reads.is_empty() && o.scans.is_empty();
                    let touched = |key: u8| {
                        o.reads.iter().any(|(r, _)| *r == key)
                            || (!blind && o.writes.contains_key(&key))
                            || o.scans.iter().any(|(a, b, _)| (*a..=*b).contains(&key))
                    };
                    let justified = !o.writes.is_empty()
                        && history[o.began..].iter().flatten().any(|&key| touched(key));
                    match o.tx.commit() {
                        Ok(()) => {
                            // Serializable at its commit point: what it read is what the
                            // serial history holds now.
                            if !blind && !o.writes.is_empty() {
                                for (key, v) in &o.reads {
                                    prop_assert_eq!(model.get(key).copied(), *v, "read of {} is stale", key);
                                }
                                for (a, b, got) in &o.scans {
                                    let now: Vec<(u8, u8)> = model.range(*a..=*b).map(|(k, v)| (*k, *v))
                                        .filter(|(k, _)| !o.writes.contains_key(k)).collect();
                                    let seen: Vec<(u8, u8)> = got.iter().copied().filter(|(k, _)| !o.writes.contains_key(k)).collect();
                                    prop_assert_eq!(now, seen, "scan {}..={} is stale", a, b);
                                }
                            }
                            if !o.writes.is_empty() {
                                history.push(o.writes.keys().copied().collect());
                                model.extend(o.writes.iter().map(|(k, v)| (*k, *v)));
                            }
                        }
                        Err(Error::Conflict) => prop_assert!(justified, "an unjustified conflict"),
                        Err(e) => panic!("{e}"),
                    }
                },
            }
        }
        for (key, v) in &model {
            prop_assert_eq!(db.get(k(*key)).unwrap().map(|v| v[0]), Some(*v));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A transaction's scan is the snapshot merged with its own writes, whichever ends it is
    /// read from and in whatever alternation.
    #[test]
    fn transaction_scans_merge_own_writes_from_both_ends(
        stored in proptest::collection::btree_map(0..20u8, any::<u8>(), 0..12),
        own in proptest::collection::btree_map(0..20u8, proptest::option::of(any::<u8>()), 0..12),
        ends in proptest::collection::vec(any::<bool>(), 0..40),
        lo in 0..20u8,
        span in 0..20u8,
    ) {
        let (_dir, db) = open();
        for (k, v) in &stored {
            db.put([*k], [*v]).unwrap();
        }
        let mut tx = db.transaction();
        let mut model = stored.clone();
        for (k, v) in &own {
            match v {
                Some(v) => { tx.put([*k], [*v]); model.insert(*k, *v); }
                None => { tx.delete([*k]); model.remove(k); }
            }
        }
        let hi = lo.saturating_add(span);
        let mut want: std::collections::VecDeque<(u8, u8)> =
            model.range(lo..hi).map(|(k, v)| (*k, *v)).collect();
        let mut it = tx.range([lo]..[hi]);
        for from_front in ends.iter().copied().chain(std::iter::repeat_n(true, 40)) {
            let got = if from_front { it.next() } else { it.next_back() };
            let got = got.map(|r| { let (k, v) = r.unwrap(); (k[0], v[0]) });
            let expected = if from_front { want.pop_front() } else { want.pop_back() };
            prop_assert_eq!(got, expected);
        }
    }
}
