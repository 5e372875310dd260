//! What the API refuses, and that it refuses it before anything reaches a file: entries over
//! the size limits, empty paths. And the other side of the size boundary: the largest entry
//! it accepts must flush, recover and compact like any other.

use std::sync::Arc;
use std::time::Duration;

use strata::{
    Db, Durability, Error, Options, ShardedDb, ShardedOptions, WriteBatch, WriteOptions,
    MAX_KEY_SIZE, MAX_VALUE_SIZE,
};
use strata_core::sim::SimFileSystem;

fn opts(disk: &SimFileSystem) -> Options {
    Options::default().file_system(Arc::new(disk.process()))
}

/// Bytes that would show a shifted or truncated copy, and that zstd still shrinks (the
/// simulated disk keeps every file in memory).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// Before, `put` accepted values up to 256 MiB while a table takes 128 MiB per entry, key and
// trailer included: such a value poisoned the database at its flush, and every later open
// failed in recovery's flush, in every recovery mode.
#[test]
fn the_largest_accepted_entry_survives_flush_recovery_and_compaction() {
    let disk = SimFileSystem::new();
    let key = vec![b'k'; MAX_KEY_SIZE];
    let value = pattern(MAX_VALUE_SIZE);
    {
        let db = Db::open("/db", opts(&disk)).unwrap();
        db.put("a", "small").unwrap();
        db.put(&key, &value).unwrap();
        db.put("z", "small").unwrap();
        db.close().unwrap(); // the entry is only in the log: the next open flushes it
    }
    {
        let db = Db::open("/db", opts(&disk)).unwrap();
        assert!(db.metrics().levels[0].files > 0, "recovery flushed the log to tables");
        assert!(db.get(&key).unwrap().as_deref() == Some(&value[..]));
        db.compact().unwrap();
        assert_eq!(db.metrics().levels[6].files, 1);
        db.put("b", "small").unwrap();
        db.flush().unwrap(); // and the flush thread's path, with the big table below
        db.close().unwrap();
    }
    let db = Db::open("/db", opts(&disk)).unwrap();
    assert!(db.get(&key).unwrap().as_deref() == Some(&value[..]));
    let keys: Vec<_> = db.iter().map(|r| r.unwrap().0.len()).collect();
    assert_eq!(keys, [1, 1, MAX_KEY_SIZE, 1]);
}

/// Log bytes written so far by every shard (or the one database) behind `wal_bytes`.
fn logged(wal_bytes: impl IntoIterator<Item = u64>) -> u64 {
    wal_bytes.into_iter().sum()
}

// Before, a value one byte over what a table stores was accepted and logged (the API limit
// was 256 MiB), so the flush failed and the log could never be recovered.
#[test]
fn a_value_one_byte_over_the_limit_is_refused_on_every_path_before_it_is_logged() {
    let disk = SimFileSystem::new();
    let too_big = vec![7u8; MAX_VALUE_SIZE + 1];
    let refused = |r: strata::Result<()>, path: &str| {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{path}: {r:?}");
    };
    let batch = |keys: &[&str]| {
        let mut b = WriteBatch::new();
        for k in keys {
            b.put(k, "small");
        }
        b.put("huge", &too_big);
        b
    };

    let db = Db::open("/db", opts(&disk)).unwrap();
    db.put("before", "v").unwrap();
    let before = db.metrics().wal_bytes;
    refused(db.put("huge", &too_big), "put");
    refused(db.write(batch(&["a", "b"])), "write");
    refused(db.write_with(batch(&["a"]), Durability::Sync), "write_with");
    refused(db.write_async(batch(&["a"])).wait(), "write_async");
    refused(db.put_with("huge", &too_big, Durability::Sync), "put_with");
    let no_wait = WriteOptions::default().no_wait(true);
    refused(db.write_async_with(batch(&["a"]), no_wait).wait(), "write_async_with no_wait");
    assert_eq!(db.metrics().wal_bytes, before, "nothing was logged");
    db.put("after", "v").unwrap();
    db.close().unwrap();
    let db = Db::open("/db", opts(&disk)).unwrap();
    let keys: Vec<_> = db.iter().map(|r| r.unwrap().0).collect();
    assert_eq!(keys, [&b"after"[..], b"before"]);
    db.close().unwrap();

    let sharded = ShardedOptions::new(4).engine(opts(&disk));
    let db = ShardedDb::open("/sharded", sharded.clone()).unwrap();
    // Keys on several shards: no shard may log its part when another's part is refused.
    let keys: Vec<String> = (0..32).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let wal = |db: &ShardedDb| logged((0..4).map(|i| db.shard(i).unwrap().metrics().wal_bytes));
    let before = wal(&db);
    refused(db.put("huge", &too_big), "sharded put");
    refused(db.write(batch(&keys)), "sharded write");
    refused(db.write_async(batch(&keys)).wait(), "sharded write_async");
    refused(db.put_with("huge", &too_big, Durability::Sync), "sharded put_with");
    refused(db.write_with(batch(&keys), Durability::Sync), "sharded write_with");
    let no_wait = WriteOptions::default().no_wait(true);
    refused(db.write_async_with(batch(&keys), no_wait).wait(), "sharded write_async_with no_wait");
    assert_eq!(wal(&db), before, "no shard logged anything");
    db.close().unwrap();
    let db = ShardedDb::open("/sharded", sharded).unwrap();
    assert_eq!(db.iter().count(), 0);
}

// Before, `Db::open("")` locked `LOCK` in the working directory and then failed with a
// confusing error about the directory; `ShardedDb::open("")` did the same with its lock.
#[test]
fn an_empty_path_is_refused_before_any_file_is_touched() {
    let disk = SimFileSystem::new();
    let r = Db::open("", opts(&disk));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let r = ShardedDb::open("", ShardedOptions::new(2).engine(opts(&disk)));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let with_empty_shard = ShardedOptions::new(2).engine(opts(&disk)).shard_paths(["/s0", ""]);
    let r = ShardedDb::open("/root", with_empty_shard);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(disk.files(), Vec::<std::path::PathBuf>::new(), "no file was created");
}

// Before, `Options::validate` never asked the compaction policy's own check, so
// `target_file_size(0)` (and `level_base_bytes(0)`) opened a database whose compactions would
// cut a new table after every entry; and `ShardedDb::open` created the root and `SHARDS`
// before its first shard refused the engine options.
#[test]
fn option_rules_are_checked_at_open_before_any_file_is_touched() {
    let disk = SimFileSystem::new();
    let bad = [
        ("target_file_size 0", opts(&disk).target_file_size(0)),
        ("level_base_bytes 0", opts(&disk).level_base_bytes(0)),
        ("level_multiplier 1", opts(&disk).level_multiplier(1)),
        ("block_size 0", opts(&disk).block_size(0)),
        ("Periodic(0)", opts(&disk).durability(Durability::Periodic(Duration::ZERO))),
    ];
    for (what, options) in bad {
        let r = Db::open("/db", options.clone());
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: {r:?}");
        let r = ShardedDb::open("/sharded", ShardedOptions::new(2).engine(options));
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "sharded {what}: {r:?}");
    }
    assert_eq!(disk.files(), Vec::<std::path::PathBuf>::new(), "no file was created");
}

// The `Periodic(0)` rule is one function, applied to the default at open and to the
// durability a write names, on every write path, before anything is logged.
#[test]
fn a_write_naming_a_zero_periodic_interval_is_refused_on_every_path() {
    let disk = SimFileSystem::new();
    let zero = WriteOptions::from(Durability::Periodic(Duration::ZERO));
    let refused = |r: strata::Result<()>, path: &str| {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{path}: {r:?}");
    };
    let batch = || {
        let mut b = WriteBatch::new();
        for i in 0..16 {
            b.put(format!("k{i}"), "v");
        }
        b
    };
    let db = Db::open("/db", opts(&disk)).unwrap();
    let before = db.metrics().wal_bytes;
    refused(db.put_with("k", "v", zero), "put_with");
    refused(db.delete_with("k", zero), "delete_with");
    refused(db.write_with(batch(), zero), "write_with");
    refused(db.write_async_with(batch(), zero).wait(), "write_async_with");
    assert_eq!(db.metrics().wal_bytes, before, "nothing was logged");
    db.close().unwrap();
    let db = ShardedDb::open("/sharded", ShardedOptions::new(4).engine(opts(&disk))).unwrap();
    let wal = |db: &ShardedDb| logged((0..4).map(|i| db.shard(i).unwrap().metrics().wal_bytes));
    let before = wal(&db);
    refused(db.put_with("k", "v", zero), "sharded put_with");
    refused(db.write_with(batch(), zero), "sharded write_with");
    refused(db.write_async_with(batch(), zero).wait(), "sharded write_async_with");
    assert_eq!(wal(&db), before, "no shard logged anything");
}
