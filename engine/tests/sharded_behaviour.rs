//! `ShardedDb` behaviour: layout persistence and conflicting reopens, shard paths, many
//! concurrent writers, async-write backpressure, hot-shard detection with an injected clock.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use strata::testing::ManualClock;
use strata::{
    Db, Durability, Error, KvIter, KvStore, Options, Partitioner, ShardKey, ShardedDb,
    ShardedOptions, WriteBatch, WriteOptions,
};

fn range3() -> Partitioner {
    Partitioner::Range(vec![b"h".to_vec(), b"p".to_vec()])
}

#[test]
fn reopening_with_conflicting_settings_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), ShardedOptions::new(3).partitioner(range3())).unwrap();
    db.put("a", "1").unwrap();
    db.put("z", "2").unwrap();
    db.close().unwrap();

    let invalid = |o: ShardedOptions| {
        matches!(ShardedDb::open(dir.path(), o), Err(Error::InvalidArgument(_)))
    };
    assert!(invalid(ShardedOptions::new(4).partitioner(Partitioner::Range(vec![
        b"h".to_vec(),
        b"p".to_vec(),
        b"t".to_vec()
    ]))));
    assert!(invalid(ShardedOptions::new(3)), "hash instead of range");
    assert!(invalid(
        ShardedOptions::new(3).partitioner(Partitioner::Range(vec![b"h".to_vec(), b"q".to_vec()]))
    ));
    assert!(invalid(ShardedOptions::new(3).partitioner(range3()).shard_paths(["x", "y", "z"])));

    let db = ShardedDb::open(dir.path(), ShardedOptions::new(3).partitioner(range3())).unwrap();
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get("z").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.shard(0).unwrap().get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.shard(2).unwrap().get("z").unwrap().as_deref(), Some(&b"2"[..]));
    // A second open of the same root is refused while this one lives.
    assert!(matches!(
        ShardedDb::open(dir.path(), ShardedOptions::new(3).partitioner(range3())),
        Err(Error::Locked(_))
    ));
}

#[test]
fn invalid_options_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let bad =
        |o: ShardedOptions| matches!(ShardedDb::open(&root, o), Err(Error::InvalidArgument(_)));
    assert!(bad(ShardedOptions::new(0)));
    assert!(bad(ShardedOptions::new(3).partitioner(Partitioner::Range(vec![b"a".to_vec()]))));
    assert!(bad(
        ShardedOptions::new(3).partitioner(Partitioner::Range(vec![b"b".to_vec(), b"a".to_vec()]))
    ));
    assert!(bad(ShardedOptions::new(2).shard_paths(["only-one"])));
    assert!(bad(ShardedOptions::new(2).shard_paths(["same", "same"])));
    assert!(!root.join("SHARDS").exists());
}

#[test]
fn shards_live_where_shard_paths_say_and_reopen_without_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("disk-a/s0"), dir.path().join("disk-b/s1"));
    let root = dir.path().join("root");
    let db =
        ShardedDb::open(&root, ShardedOptions::new(2).shard_paths([a.clone(), b.clone()])).unwrap();
    for i in 0..200u32 {
        db.put(i.to_be_bytes(), "v").unwrap();
    }
    db.close().unwrap();
    assert!(a.join("CURRENT").exists() || a.join("LOCK").exists());
    assert!(b.join("LOCK").exists());
    assert!(root.join("SHARDS").exists());
    // Each shard is a plain database: it opens on its own and holds its share of the keys.
    let n0 = Db::open(&a, Options::default()).unwrap().iter().count();
    let n1 = Db::open(&b, Options::default()).unwrap().iter().count();
    assert_eq!(n0 + n1, 200);
    assert!(n0 > 50 && n1 > 50, "{n0} / {n1}");
    let db = ShardedDb::open(&root, ShardedOptions::new(2)).unwrap();
    assert_eq!(db.iter().count(), 200);
}

#[test]
fn a_damaged_layout_file_is_corruption_not_a_new_layout() {
    let dir = tempfile::tempdir().unwrap();
    ShardedDb::open(dir.path(), ShardedOptions::new(2)).unwrap().close().unwrap();
    let path = dir.path().join("SHARDS");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    match ShardedDb::open(dir.path(), ShardedOptions::new(2)) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn range_scans_only_open_the_shards_they_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), ShardedOptions::new(3).partitioner(range3())).unwrap();
    for k in ["a", "g", "h", "o", "p", "z"] {
        db.put(k, k).unwrap();
    }
    fn keys(
        it: impl Iterator<Item = strata::Result<(strata::Bytes, strata::Bytes)>>,
    ) -> Vec<String> {
        it.map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap()).collect()
    }
    assert_eq!(keys(db.range("g".."p")), ["g", "h", "o"]);
    assert_eq!(keys(db.range("g"..="p").rev()), ["p", "o", "h", "g"]);
    assert_eq!(keys(db.iter()), ["a", "g", "h", "o", "p", "z"]);
    assert_eq!(format!("{:?}", db.range("h".."i")), "ShardedIter { shards: 1, ordered: true }");
    assert_eq!(format!("{:?}", db.range("a".."z")), "ShardedIter { shards: 3, ordered: true }");
}

#[test]
fn many_threads_write_disjoint_and_shared_keys_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardedOptions::new(4)
        .engine(Options::default().memtable_size(32 << 10).write_queue_depth(8));
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..300u32 {
                    match i % 3 {
                        0 => db.put(format!("t{t}/{i:04}"), format!("{i}")).unwrap(),
                        1 => {
                            let mut b = WriteBatch::new();
                            b.put(format!("t{t}/{i:04}"), format!("{i}"));
                            b.put(format!("shared/{}", i % 17), format!("{t}"));
                            db.write(b).unwrap();
                        }
                        _ => {
                            let mut b = WriteBatch::new();
                            b.put(format!("t{t}/{i:04}"), format!("{i}"));
                            db.write_async(b).wait().unwrap();
                            // Read-your-writes once the ticket resolves.
                            assert!(db.get(format!("t{t}/{i:04}")).unwrap().is_some());
                        }
                    }
                }
            })
        })
        .collect();
    // Readers scan while the writers run: every scan is sorted and duplicate-free.
    for _ in 0..5 {
        let keys: Vec<_> = db.iter().map(|r| r.unwrap().0).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..8 {
        assert_eq!(db.prefix(format!("t{t}/")).count(), 300);
        assert_eq!(db.prefix(format!("t{t}/")).rev().count(), 300);
    }
    assert_eq!(db.prefix("shared/").count(), 17);
    let m = db.metrics();
    assert_eq!(m.shards.iter().map(|s| s.engine.puts).sum::<u64>(), 8 * 300 + 8 * 100);
    println!("{m}");
}

#[test]
fn a_no_wait_write_async_refuses_a_batch_whole_when_a_shard_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardedOptions::new(2)
        .partitioner(Partitioner::Range(vec![b"m".to_vec()]))
        .engine(Options::default().write_queue_depth(1));
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    // Keep shard 1's single slot busy: a Sync write of a big batch takes a while, and a
    // second submission waits in the queue behind it.
    let mut stalled = Vec::new();
    let mut busy = false;
    for _ in 0..200 {
        let mut b = WriteBatch::new();
        b.put("a-key", "left");
        b.put("z-key", "right");
        let t = db.write_async_with(b, WriteOptions::from(Durability::Sync).no_wait(true));
        if !t.is_done() {
            stalled.push(t);
            continue;
        }
        match t.wait() {
            Ok(()) => {}
            Err(Error::Busy) => {
                busy = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy, "a queue of depth 1 never filled");
    for t in stalled {
        t.wait().unwrap();
    }
    // Refused batches queued nothing: both halves of every accepted batch are present, and
    // the shards agree on how many were accepted.
    assert_eq!(db.get("a-key").unwrap().as_deref(), Some(&b"left"[..]));
    let (m0, m1) = (db.shard(0).unwrap().metrics(), db.shard(1).unwrap().metrics());
    assert_eq!(m0.puts, m1.puts);
}

#[test]
fn hot_shards_flags_a_skewed_workload_and_not_a_uniform_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let splits = vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()];
    let opts = ShardedOptions::new(4).partitioner(Partitioner::Range(splits)).clock(clock.clone());
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    // Uniform: 50 writes per shard per second for 5 seconds.
    for _ in 0..5 {
        for i in 0..50 {
            for p in ["a", "b", "c", "d"] {
                db.put(format!("{p}{i}"), "v").unwrap();
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    assert!(db.hot_shards(1.5).is_empty(), "{}", db.metrics());
    // Twenty seconds later the window has forgotten that; now shard 2 gets 10x the rest.
    clock.advance(Duration::from_secs(20));
    for _ in 0..3 {
        for i in 0..20 {
            for p in ["a", "b", "d"] {
                db.put(format!("{p}{i}"), "v").unwrap();
            }
        }
        let mut b = WriteBatch::new();
        for i in 0..200 {
            b.put(format!("c{i}"), "v");
        }
        db.write(b).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(db.hot_shards(1.5), [2]);
    let m = db.metrics();
    assert_eq!(m.hot_shards(1.5), [2]);
    // 600 writes in the last 10 s.
    assert!((m.shards[2].writes_per_sec - 60.0).abs() < 1e-9, "{m}");
    let shown = m.to_string();
    assert_eq!(shown.lines().count(), 5, "{shown}"); // header + one row per shard
}

#[test]
fn compaction_and_flush_run_on_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), ShardedOptions::new(3)).unwrap();
    for i in 0..300u32 {
        db.put(i.to_be_bytes(), "v").unwrap();
    }
    db.flush().unwrap();
    assert!(db.metrics().shards.iter().all(|s| s.engine.flushes == 1 && s.l0_files == 1));
    for i in 0..300u32 {
        db.delete(i.to_be_bytes()).unwrap();
    }
    db.compact().unwrap();
    db.wait_for_compaction().unwrap();
    assert_eq!(db.iter().count(), 0);
    assert!(db.metrics().shards.iter().all(|s| s.engine.table_bytes() == 0));
    db.compact_range(0u32.to_be_bytes()..10u32.to_be_bytes()).unwrap();
}

/// The same calls through `&dyn KvStore` on a `Db` and a `ShardedDb` (so the trait is
/// object safe, and both stores answer alike).
#[test]
fn both_stores_behave_alike_behind_dyn_kv_store() {
    fn exercise(store: &dyn KvStore) -> Vec<Vec<u8>> {
        let mut b = WriteBatch::new();
        b.put(b"k1", b"1");
        b.put(b"k2", b"2");
        b.put(b"k3", b"3");
        store.write_with(b, Durability::Sync.into()).unwrap();
        store.put_with(b"k4", b"4", WriteOptions::default().no_wait(true)).unwrap();
        store.delete(b"k2").unwrap();
        let snap = store.snapshot();
        store.put(b"k5", b"5").unwrap();
        store.delete_with(b"k6", Durability::Sync.into()).unwrap();
        store.write_async_with(WriteBatch::new(), Durability::Sync.into()).wait().unwrap();
        store.flush().unwrap();
        store.compact().unwrap();
        store.wait_for_compaction().unwrap();
        let keys = |it: KvIter| it.map(|r| r.unwrap().0.to_vec()).collect::<Vec<_>>();
        assert_eq!(keys(snap.iter()), [&b"k1"[..], b"k3", b"k4"], "the snapshot saw k5");
        assert_eq!(snap.get(b"k5").unwrap(), None);
        assert_eq!(snap.get(b"k4").unwrap().as_deref(), Some(&b"4"[..]));
        assert_eq!(keys(snap.prefix(b"k3")), [&b"k3"[..]]);
        assert_eq!(keys(snap.range((Bound::Excluded(&b"k1"[..]), Bound::Unbounded))).len(), 2);
        assert_eq!(store.get(b"k5").unwrap().as_deref(), Some(&b"5"[..]));
        assert_eq!(keys(store.prefix(b"k")).len(), 4);
        assert_eq!(keys(store.iter()).len(), 4);
        keys(Box::new(
            store.range((Bound::Included(&b"k1"[..]), Bound::Excluded(&b"k9"[..]))).rev(),
        ))
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stores: Vec<Box<dyn KvStore>> = vec![
        Box::new(Db::open(a.path(), Options::default()).unwrap()),
        Box::new(ShardedDb::open(b.path(), ShardedOptions::new(3)).unwrap()),
    ];
    let seen: Vec<_> = stores.iter().map(|s| exercise(s.as_ref())).collect();
    assert_eq!(seen[0], [&b"k5"[..], b"k4", b"k3", b"k1"]);
    assert_eq!(seen[0], seen[1]);
    for store in &stores {
        store.close().unwrap();
        assert!(matches!(store.put(b"x", b"y"), Err(Error::Closed)));
        assert!(matches!(store.snapshot().get(b"k1"), Err(Error::Closed)));
        assert!(matches!(store.write_async(WriteBatch::new()).wait(), Err(Error::Closed)));
    }
}

/// A shard key keeps an entity's keys on one shard: a batch over them is written to that
/// shard alone (so it is atomic), and scans over any partitioner still see every key once,
/// in order.
#[test]
fn a_shard_key_keeps_an_entity_on_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || ShardedOptions::new(4).shard_key(ShardKey::UntilByte(b'/'));
    let db = ShardedDb::open(dir.path(), opts()).unwrap();
    for user in 0..20u32 {
        let mut b = WriteBatch::new();
        for item in 0..10u32 {
            b.put(format!("user{user:02}/item/{item}"), "v");
        }
        db.write(b).unwrap();
        let home = db.shard_of(format!("user{user:02}"));
        for i in 0..db.shard_count() {
            let here = db.shard(i).unwrap().prefix(format!("user{user:02}/")).count();
            assert_eq!(here, if i == home { 10 } else { 0 }, "user {user} on shard {i}");
        }
    }
    let spread: Vec<usize> =
        (0..4).map(|i| db.shard(i).unwrap().iter().count()).collect::<Vec<_>>();
    assert!(spread.iter().filter(|&&n| n > 0).count() >= 3, "entities spread: {spread:?}");
    let keys: Vec<_> = db.iter().map(|r| r.unwrap().0).collect();
    assert_eq!(keys.len(), 200);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "a sorted, duplicate-free scan");
    db.close().unwrap();

    // The shard key is part of the layout: reopening needs the same one.
    let other = ShardedOptions::new(4).shard_key(ShardKey::Prefix(4));
    assert!(matches!(ShardedDb::open(dir.path(), other), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        ShardedDb::open(dir.path(), ShardedOptions::new(4)),
        Err(Error::InvalidArgument(_))
    ));
    let db = ShardedDb::open(dir.path(), opts()).unwrap();
    assert_eq!(db.get("user07/item/3").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A custom shard key is recorded by name; under a range partitioner a key order it does
/// not keep still gives ordered, complete scans (every shard is merged).
#[test]
fn a_custom_shard_key_is_matched_by_name_and_scans_stay_ordered() {
    let dir = tempfile::tempdir().unwrap();
    // Route by the tenant: the segment after the first '/'.
    let tenant = || {
        ShardKey::custom("tenant", |key: &[u8]| {
            let start = key.iter().position(|&b| b == b'/').map_or(key.len(), |i| i + 1);
            start..key.len().min(start + 3)
        })
    };
    let opts = |key| {
        ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"m".to_vec()])).shard_key(key)
    };
    let db = ShardedDb::open(dir.path(), opts(tenant())).unwrap();
    for (k, shard) in [("orders/acme/1", 0), ("orders/zeta/1", 1), ("users/acme/9", 0)] {
        db.put(k, "v").unwrap();
        assert_eq!(db.shard_of(k), shard, "{k}");
    }
    let keys: Vec<_> = db.prefix("orders/").map(|r| r.unwrap().0).collect();
    assert_eq!(keys, ["orders/acme/1", "orders/zeta/1"]);
    let all: Vec<_> = db.iter().rev().map(|r| r.unwrap().0).collect();
    assert_eq!(all, ["users/acme/9", "orders/zeta/1", "orders/acme/1"]);
    db.close().unwrap();
    let renamed = ShardKey::custom("tenant-v2", |key: &[u8]| 0..key.len());
    assert!(matches!(ShardedDb::open(dir.path(), opts(renamed)), Err(Error::InvalidArgument(_))));
    ShardedDb::open(dir.path(), opts(tenant())).unwrap();
}
