//! What every handle, snapshot and iterator does after `close`: it fails with
//! `Error::Closed`, and never returns data — neither the closed database's, nor what a new
//! handle that reopened the directory wrote since. For `Db` and `ShardedDb`, on the
//! simulated file system.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;
use strata::{Db, Error, Options, Partitioner, ShardedDb, ShardedOptions, WriteBatch};
use strata_core::sim::SimFileSystem;

type Item = strata::Result<(Bytes, Bytes)>;

fn options(disk: &SimFileSystem) -> Options {
    Options::default().file_system(Arc::new(disk.clone()))
}

fn open(disk: &SimFileSystem) -> Db {
    Db::open("/db", options(disk)).expect("open")
}

fn open_sharded(disk: &SimFileSystem, partitioner: Partitioner) -> ShardedDb {
    let opts = ShardedOptions::new(3).partitioner(partitioner).engine(options(disk));
    ShardedDb::open("/sharded", opts).expect("open")
}

fn ranges() -> [Partitioner; 2] {
    [Partitioner::Hash, Partitioner::Range(vec![b"k3".to_vec(), b"k6".to_vec()])]
}

#[track_caller]
fn assert_closed<T: Debug>(r: strata::Result<T>) {
    assert!(matches!(r, Err(Error::Closed)), "expected Err(Closed), got {r:?}");
}

/// The first step yields `Err(Closed)`, and the iterator is over from both ends.
#[track_caller]
fn assert_iter_closed<I: DoubleEndedIterator<Item = Item>>(mut it: I, from_back: bool) {
    let first = if from_back { it.next_back() } else { it.next() };
    match first {
        Some(r) => assert_closed(r),
        None => panic!("expected Some(Err(Closed)), got None"),
    }
    assert!(it.next().is_none(), "an iterator goes on after Err(Closed)");
    assert!(it.next_back().is_none(), "an iterator goes on after Err(Closed)");
}

fn fill(put: impl Fn(&str, &str)) {
    for i in 0..9 {
        put(&format!("k{i}"), "old");
    }
}

// Before the fix, `iter`, `range`, `prefix` and `snapshot().get()` on a clone kept returning
// the closed database's data; only `get` and the writes failed.
#[test]
fn reads_on_other_clones_after_close_fail_with_closed() {
    let disk = SimFileSystem::new();
    let db = open(&disk);
    fill(|k, v| db.put(k, v).unwrap());
    db.flush().unwrap();
    db.put("k9", "in the memtable").unwrap();
    let other = db.clone();
    db.close().unwrap();

    assert_closed(other.get("k1"));
    assert_closed(other.put("k1", "new"));
    assert_closed(other.delete("k1"));
    assert_closed(other.write(WriteBatch::new()));
    assert_closed(other.snapshot().get("k1"));
    for from_back in [false, true] {
        assert_iter_closed(other.iter(), from_back);
        assert_iter_closed(other.range("k1".."k5"), from_back);
        assert_iter_closed(other.prefix("k"), from_back);
        assert_iter_closed(other.snapshot().iter(), from_back);
        assert_iter_closed(other.snapshot().prefix("k"), from_back);
    }
    assert_closed(other.flush());
    assert_closed(other.compact());
    assert_closed(other.wait_for_compaction()); // returned Ok before the fix
    assert!(other.close().is_ok(), "a second close is a no-op");
    assert_eq!(other.metrics().puts, 10, "metrics stay readable");
}

// Before the fix, iterators and snapshots made before `close` went on reading: the iterator
// yielded its remaining entries and the snapshot answered `get`.
#[test]
fn iterators_and_snapshots_made_before_close_fail_on_their_next_step() {
    let disk = SimFileSystem::new();
    let db = open(&disk);
    fill(|k, v| db.put(k, v).unwrap());
    db.flush().unwrap();
    let snap = db.snapshot();
    let fresh = db.iter();
    let mut started = db.range("k0"..="k8");
    assert_eq!(&started.next().unwrap().unwrap().0[..], b"k0");
    assert_eq!(&started.next_back().unwrap().unwrap().0[..], b"k8");
    let mut snap_iter = snap.iter();
    assert_eq!(&snap_iter.next().unwrap().unwrap().0[..], b"k0");
    db.close().unwrap();

    assert_closed(snap.get("k1"));
    assert_iter_closed(fresh, false);
    assert_iter_closed(started, true);
    assert_iter_closed(snap_iter, false);
    assert_iter_closed(snap.range("k1".."k3"), true);
}

// Before the fix, an iterator or snapshot of the closed handle still read the directory
// after a new handle had reopened it and rewritten the keys: it returned stale values.
#[test]
fn old_handle_never_reads_the_reopened_directory() {
    let disk = SimFileSystem::new();
    let db = open(&disk);
    fill(|k, v| db.put(k, v).unwrap());
    db.flush().unwrap();
    db.put("k9", "old").unwrap();
    let snap = db.snapshot();
    let mut it = db.iter();
    assert_eq!(&it.next().unwrap().unwrap().0[..], b"k0");
    let mut back = db.iter();
    let other = db.clone();
    db.close().unwrap();

    let new = open(&disk);
    fill(|k, _| new.put(k, "new").unwrap());
    new.put("k9", "new").unwrap();
    new.compact().unwrap(); // the old handle's tables are deleted
    assert_eq!(new.get("k1").unwrap().as_deref(), Some(&b"new"[..]));

    assert_closed(it.next().transpose());
    assert!(it.next().is_none());
    assert_closed(back.next_back().transpose());
    assert!(back.next_back().is_none());
    assert_closed(snap.get("k1"));
    assert_closed(snap.get("k9"));
    assert_iter_closed(snap.iter(), false);
    assert_closed(other.get("k1"));
    assert_iter_closed(other.iter(), true);
    assert_closed(other.snapshot().get("k9"));
    new.close().unwrap();
}

// Before the fix, `ShardedDb`'s scans and snapshots on a clone kept returning the shards'
// data after `close`.
#[test]
fn sharded_reads_on_other_clones_after_close_fail_with_closed() {
    for partitioner in ranges() {
        let disk = SimFileSystem::new();
        let db = open_sharded(&disk, partitioner);
        fill(|k, v| db.put(k, v).unwrap());
        db.flush().unwrap();
        let other = db.clone();
        db.close().unwrap();

        assert_closed(other.get("k1"));
        assert_closed(other.put("k1", "new"));
        assert_closed(other.write(WriteBatch::new()));
        assert_closed(other.write_async(WriteBatch::new()).wait());
        assert_closed(other.flush());
        assert_closed(other.snapshot().get("k1"));
        for from_back in [false, true] {
            assert_iter_closed(other.iter(), from_back);
            assert_iter_closed(other.range("k1".."k5"), from_back);
            assert_iter_closed(other.range("k5".."k1"), from_back); // reads no shard
            assert_iter_closed(other.prefix("k"), from_back);
            assert_iter_closed(other.snapshot().iter(), from_back);
        }
        assert!(other.close().is_ok());
    }
}

// Before the fix, a `ShardedIter` made before `close` went on yielding entries — first those
// it had read ahead from every shard, then the rest — and a `ShardedSnapshot` answered `get`.
#[test]
fn sharded_iterators_and_snapshots_made_before_close_fail_on_their_next_step() {
    for partitioner in ranges() {
        let disk = SimFileSystem::new();
        let db = open_sharded(&disk, partitioner);
        fill(|k, v| db.put(k, v).unwrap());
        let snap = db.snapshot();
        let fresh = db.iter();
        // Under hash partitioning one step reads ahead one entry on every shard.
        let mut started = db.iter();
        assert_eq!(&started.next().unwrap().unwrap().0[..], b"k0");
        assert_eq!(&started.next_back().unwrap().unwrap().0[..], b"k8");
        let mut snap_iter = snap.iter();
        assert_eq!(&snap_iter.next().unwrap().unwrap().0[..], b"k0");
        db.close().unwrap();

        assert_closed(snap.get("k1"));
        assert_iter_closed(fresh, true);
        assert_iter_closed(started, false);
        assert_iter_closed(snap_iter, true);
        assert_iter_closed(snap.prefix("k"), false);
    }
}

// Before the fix, the sharded iterator and snapshot of a closed handle returned stale values
// after a new handle had reopened the root and rewritten the keys.
#[test]
fn sharded_old_handle_never_reads_the_reopened_directory() {
    for partitioner in ranges() {
        let disk = SimFileSystem::new();
        let db = open_sharded(&disk, partitioner.clone());
        fill(|k, v| db.put(k, v).unwrap());
        db.flush().unwrap();
        let snap = db.snapshot();
        let mut it = db.iter();
        assert_eq!(&it.next().unwrap().unwrap().0[..], b"k0");
        let other = db.clone();
        db.close().unwrap();

        let new = open_sharded(&disk, partitioner);
        fill(|k, _| new.put(k, "new").unwrap());
        new.compact().unwrap();

        assert_iter_closed(it, false);
        assert_closed(snap.get("k1"));
        assert_iter_closed(snap.iter(), true);
        assert_closed(other.get("k1"));
        assert_iter_closed(other.iter(), false);
        new.close().unwrap();
    }
}

// Before the fix, a `ShardedIter` that outlived the last handle (whose drop closes the
// shards) went on yielding the entries it had read ahead.
#[test]
fn sharded_iter_outliving_the_last_handle_fails_with_closed() {
    let disk = SimFileSystem::new();
    let db = open_sharded(&disk, Partitioner::Hash);
    fill(|k, v| db.put(k, v).unwrap());
    let mut it = db.iter();
    assert_eq!(&it.next().unwrap().unwrap().0[..], b"k0");
    drop(db);
    assert_iter_closed(it, false);
    // The drop really closed it: the root can be opened again.
    open_sharded(&disk, Partitioner::Hash).close().unwrap();
}
