//! Range deletes (`Db::delete_range`, `WriteBatch::delete_range`, `ShardedDb::delete_range`):
//! what readers see wherever the tombstone and the keys it covers live (memtable, L0,
//! deeper levels, across a reopen), what snapshots keep, what compaction drops, the space
//! that comes back, and transactions that read what a range delete removed.

use std::sync::Arc;

use strata::{Db, Durability, Error, Options, Partitioner, ShardedDb, ShardedOptions, WriteBatch};
use strata_core::sim::{CrashMode, SimFileSystem};

fn small() -> Options {
    Options::default().memtable_size(16 << 10).block_size(512).durability(Durability::Buffered)
}

fn key(i: u32) -> String {
    format!("key{i:06}")
}

fn keys_of(db: &Db) -> Vec<String> {
    db.iter().map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap()).collect()
}

fn total_bytes(db: &Db) -> u64 {
    db.metrics().levels.iter().map(|l| l.bytes).sum()
}

/// The keys `0..n` with the ranges `dead` removed.
fn expected(n: u32, dead: &[(u32, u32)]) -> Vec<String> {
    (0..n).filter(|i| !dead.iter().any(|&(a, b)| (a..b).contains(i))).map(key).collect()
}

#[test]
fn reads_agree_wherever_the_tombstone_and_its_keys_live() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for i in 0..2000 {
        db.put(key(i), format!("v{i}")).unwrap();
    }
    db.compact().unwrap(); // the keys at the bottom
    db.delete_range(key(100)..key(300)).unwrap(); // the tombstone in the memtable
    let check = |db: &Db, dead: &[(u32, u32)], what: &str| {
        assert_eq!(keys_of(db), expected(2000, dead), "{what}: forward");
        let mut back = db.iter().rev().map(|r| r.unwrap().0.to_vec()).collect::<Vec<_>>();
        back.reverse();
        let back: Vec<String> = back.into_iter().map(|k| String::from_utf8(k).unwrap()).collect();
        assert_eq!(back, expected(2000, dead), "{what}: backward");
        for i in [0, 99, 100, 150, 299, 300, 1000, 1500, 1999] {
            let dead_here = dead.iter().any(|&(a, b)| (a..b).contains(&i));
            assert_eq!(db.get(key(i)).unwrap().is_none(), dead_here, "{what}: get {i}");
        }
        let in_range: Vec<_> = db.range(key(250)..key(350)).map(|r| r.unwrap().0).collect();
        let want = expected(2000, dead).into_iter().filter(|k| *k >= key(250) && *k < key(350));
        assert_eq!(in_range.len(), want.count(), "{what}: range");
    };
    check(&db, &[(100, 300)], "memtable over the bottom");
    db.flush().unwrap();
    check(&db, &[(100, 300)], "L0 over the bottom");
    db.delete_range(key(1000)..key(1600)).unwrap();
    db.put(key(1500), "back").unwrap(); // written after: visible
    db.flush().unwrap();
    let dead = [(100, 300), (1000, 1500), (1501, 1600)];
    check(&db, &dead, "two tables of tombstones");
    assert_eq!(db.get(key(1500)).unwrap().as_deref(), Some(&b"back"[..]));
    db.compact().unwrap();
    check(&db, &dead, "after a full compaction");
    db.close().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    check(&db, &dead, "after a reopen");
    db.close().unwrap();
}

#[test]
fn a_batch_orders_its_range_delete_among_its_other_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    db.put("b", "old").unwrap();
    let mut batch = WriteBatch::new();
    batch.put("c", "before"); // earlier in the batch: deleted by it
    batch.delete_range("a", "m");
    batch.put("d", "after"); // later in the batch: survives
    batch.put("z", "outside");
    db.write(batch).unwrap();
    assert_eq!(keys_of(&db), ["d", "z"]);
    // An empty or inverted range deletes nothing.
    db.delete_range("q".."q").unwrap();
    db.delete_range("z".."a").unwrap();
    assert_eq!(keys_of(&db), ["d", "z"]);
    db.flush().unwrap();
    assert_eq!(keys_of(&db), ["d", "z"]);
    db.close().unwrap();
}

#[test]
fn snapshots_keep_what_they_saw_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for i in 0..1000 {
        db.put(key(i), "v").unwrap();
    }
    db.flush().unwrap();
    let before = db.snapshot();
    db.delete_range(key(0)..key(900)).unwrap();
    let after = db.snapshot();
    db.put(key(5), "new").unwrap();
    db.compact().unwrap();
    assert_eq!(before.iter().count(), 1000);
    assert_eq!(before.get(key(10)).unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(after.iter().count(), 100);
    assert_eq!(after.get(key(5)).unwrap(), None);
    assert_eq!(db.iter().count(), 101);
    drop((before, after));
    db.compact().unwrap();
    assert_eq!(db.iter().count(), 101);
    assert_eq!(db.get(key(5)).unwrap().as_deref(), Some(&b"new"[..]));
    db.close().unwrap();
}

/// The space claim at a test's scale: after deleting 90% of the keys with one
/// range delete and compacting, the tree holds about what the remaining 10% need.
#[test]
fn space_returns_after_a_range_delete_and_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    let value = vec![7u8; 100];
    for i in 0..20_000 {
        db.put(key(i), &value).unwrap();
    }
    db.compact().unwrap();
    let full = total_bytes(&db);
    db.delete_range(key(2000)..key(20_000)).unwrap();
    db.compact().unwrap();
    let after = total_bytes(&db);

    let reference_dir = tempfile::tempdir().unwrap();
    let reference = Db::open(reference_dir.path(), small()).unwrap();
    for i in 0..2000 {
        reference.put(key(i), &value).unwrap();
    }
    reference.compact().unwrap();
    let needed = total_bytes(&reference);
    assert_eq!(db.iter().count(), 2000);
    assert!(after <= needed + needed / 10, "{after} bytes left, the 10% alone take {needed}");
    assert!(after * 5 < full, "{after} of {full} bytes left");
    db.close().unwrap();
    reference.close().unwrap();
}

#[test]
fn a_transaction_that_read_a_range_deleted_key_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    db.put("acct/1", "10").unwrap();
    db.put("acct/2", "20").unwrap();
    let mut tx = db.transaction();
    assert!(tx.get("acct/1").unwrap().is_some());
    tx.put("total", "30");
    db.delete_range("acct/".."acct0").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));

    // A scan over the range conflicts too, even if it saw nothing.
    let mut tx = db.transaction();
    assert_eq!(tx.prefix("acct/").count(), 0);
    tx.put("scanned", "1");
    db.delete_range("acct/".."acct0").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));

    // Elsewhere: no conflict.
    let mut tx = db.transaction();
    tx.get("other").unwrap();
    tx.put("other", "1");
    db.delete_range("acct/".."acct0").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
}

#[test]
fn oversized_bounds_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    let huge = vec![b'x'; strata::MAX_KEY_SIZE + 1];
    assert!(matches!(db.delete_range(&b"a"[..]..&huge[..]), Err(Error::InvalidArgument(_))));
    assert!(matches!(db.delete_range(&huge[..]..&b"z"[..]), Err(Error::InvalidArgument(_))));
    db.close().unwrap();
}

/// A synced range delete survives a power cut; an unsynced one is there whole or not at
/// all, never half (it is one log record).
#[test]
fn range_deletes_survive_power_loss_whole() {
    for (sync, seed) in [(true, 0), (false, 1), (false, 2), (false, 3), (false, 4), (false, 5)] {
        let fs = SimFileSystem::new();
        let opts = || small().file_system(Arc::new(fs.clone()));
        let db = Db::open("/db", opts()).unwrap();
        for i in 0..500 {
            db.put_with(key(i), "v", Durability::Sync).unwrap();
        }
        db.flush().unwrap();
        let durability = if sync { Durability::Sync } else { Durability::None };
        db.delete_range_with(key(100)..key(400), durability).unwrap();
        fs.crash(if sync { CrashMode::SyncedOnly } else { CrashMode::TornTail { seed } });
        drop(db);
        let db = Db::open("/db", opts()).unwrap();
        let left = db.iter().count();
        if sync {
            assert_eq!(left, 200);
        } else {
            assert!(left == 200 || left == 500, "{left} keys: a range delete applied in part");
        }
        db.close().unwrap();
    }
}

#[test]
fn sharded_range_deletes_reach_every_shard_they_touch() {
    for partitioner in [Partitioner::Hash, Partitioner::Range(vec![key(300).into_bytes()])] {
        let dir = tempfile::tempdir().unwrap();
        let options =
            ShardedOptions::new(if matches!(partitioner, Partitioner::Hash) { 4 } else { 2 })
                .partitioner(partitioner.clone())
                .engine(small());
        let db = ShardedDb::open(dir.path(), options).unwrap();
        for i in 0..600 {
            db.put(key(i), "v").unwrap();
        }
        db.delete_range(key(200)..key(400)).unwrap();
        assert_eq!(db.iter().count(), 400, "{partitioner:?}");
        assert!(db.get(key(250)).unwrap().is_none());
        assert!(db.get(key(350)).unwrap().is_none());
        // In a batch, a range delete must stay on one shard.
        let mut batch = WriteBatch::new();
        batch.delete_range(key(0), key(600));
        let spanning = db.write(batch);
        assert!(matches!(spanning, Err(Error::InvalidArgument(_))), "{spanning:?}");
        if let Partitioner::Range(_) = partitioner {
            let mut batch = WriteBatch::new();
            batch.delete_range(key(0), key(100)); // within shard 0
            batch.put(key(50), "kept");
            db.write(batch).unwrap();
            assert_eq!(db.iter().count(), 301);
        }
        db.close().unwrap();
    }
}
