//! `Db::open_read_only` and `ShardedDb::open_read_only`: inspection of a database another
//! handle may be writing, without a lock and without writing a byte to its directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::{Db, Error, Options, ShardedDb, ShardedOptions, WriteBatch};
use strata_core::fs::FileSystem;
use strata_core::sim::SimFileSystem;

fn options(fs: &SimFileSystem) -> Options {
    Options::default().file_system(Arc::new(fs.clone())).memtable_size(64 << 10)
}

/// Every file under `/` with its length: what "nothing was written" is checked against.
fn disk(fs: &SimFileSystem) -> BTreeMap<PathBuf, u64> {
    fs.files().into_iter().map(|p| (p.clone(), fs.file_size(&p).unwrap())).collect()
}

/// A database with flushed tables and, in its logs, more than one memtable's worth of
/// writes that were never flushed. Returns the writer (still open) and the expected state.
fn writer_with_unflushed_logs(fs: &SimFileSystem) -> (Db, BTreeMap<String, String>) {
    let db = Db::open("/db", options(fs)).unwrap();
    let mut state = BTreeMap::new();
    for i in 0..2000 {
        let (k, v) = (format!("key{i:05}"), format!("flushed {i}"));
        db.put(&k, &v).unwrap();
        state.insert(k, v);
    }
    db.flush().unwrap();
    db.wait_for_compaction().unwrap();
    // About 150 KiB more: the writer flushes the memtables that fill up, the rest stays in
    // its log only.
    for i in (0..3000).step_by(2) {
        let (k, v) = (format!("key{i:05}"), format!("logged {i} {}", "x".repeat(60)));
        db.put(&k, &v).unwrap();
        state.insert(k, v);
    }
    let mut b = WriteBatch::new();
    b.delete("key00001");
    db.write(b).unwrap();
    state.remove("key00001");
    // Quiet, so that what changes on disk from here on is the test's doing.
    db.wait_for_compaction().unwrap();
    (db, state)
}

fn contents(db: &Db) -> BTreeMap<String, String> {
    db.iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())
        })
        .collect()
}

#[test]
fn read_only_open_beside_a_writer_sees_everything_and_writes_nothing() {
    let fs = SimFileSystem::new();
    let (writer, state) = writer_with_unflushed_logs(&fs);
    let before = disk(&fs);
    // Small memtables, so the log replays into several of them, all kept in memory.
    let reader = Db::open_read_only("/db", options(&fs).memtable_size(8 << 10)).unwrap();
    assert!(reader.is_read_only() && !writer.is_read_only());
    assert!(reader.metrics().immutable_memtables > 0);
    assert_eq!(contents(&reader), state);
    assert_eq!(
        reader.get("key00002").unwrap().as_deref(),
        state.get("key00002").map(|v| v.as_bytes())
    );
    assert_eq!(reader.get("key00001").unwrap(), None);
    let backwards: Vec<_> =
        reader.range("key00010".."key00020").rev().map(|r| r.unwrap().0).collect();
    assert_eq!(backwards.len(), 10);
    assert_eq!(&backwards[0][..], b"key00019");
    let snap = reader.snapshot();
    assert_eq!(
        snap.get("key00004").unwrap().as_deref(),
        state.get("key00004").map(|v| v.as_bytes())
    );
    // No lock, no new log, no manifest, no flush of the replayed logs, no purge.
    assert_eq!(disk(&fs), before);
    reader.close().unwrap();
    assert_eq!(disk(&fs), before);
    drop(snap);
    writer.close().unwrap();
}

#[test]
fn read_only_handle_refuses_every_write_path() {
    let fs = SimFileSystem::new();
    let (writer, _) = writer_with_unflushed_logs(&fs);
    let reader = Db::open_read_only("/db", options(&fs)).unwrap();
    let read_only = |r: strata::Result<()>| assert!(matches!(r, Err(Error::ReadOnly)), "{r:?}");
    read_only(reader.put("k", "v"));
    read_only(reader.delete("k"));
    let mut b = WriteBatch::new();
    b.put("k", "v");
    read_only(reader.write_with(b, strata::Durability::Sync));
    read_only(reader.flush());
    read_only(reader.compact());
    read_only(reader.compact_range("a".."b"));
    reader.wait_for_compaction().unwrap(); // nothing runs, so nothing to wait for
    assert_eq!(reader.get("k").unwrap(), None);
    drop(writer);
}

#[test]
fn read_only_handle_sees_the_database_as_it_was_when_opened() {
    let fs = SimFileSystem::new();
    let (writer, state) = writer_with_unflushed_logs(&fs);
    let reader = Db::open_read_only("/db", options(&fs)).unwrap();
    writer.put("key00002", "rewritten").unwrap();
    writer.put("zzz", "new").unwrap();
    writer.flush().unwrap();
    assert_eq!(
        reader.get("key00002").unwrap().as_deref(),
        state.get("key00002").map(|v| v.as_bytes())
    );
    assert_eq!(reader.get("zzz").unwrap(), None);
    let fresh = Db::open_read_only("/db", options(&fs)).unwrap();
    assert_eq!(fresh.get("zzz").unwrap().as_deref(), Some(&b"new"[..]));
}

#[test]
fn read_only_handle_takes_no_lock() {
    let fs = SimFileSystem::new();
    let (writer, state) = writer_with_unflushed_logs(&fs);
    writer.close().unwrap();
    let reader = Db::open_read_only("/db", options(&fs)).unwrap();
    let second_reader = Db::open_read_only("/db", options(&fs)).unwrap();
    let writer = Db::open("/db", options(&fs)).unwrap(); // not Locked by the readers
    assert_eq!(contents(&reader), state);
    assert_eq!(contents(&second_reader), state);
    writer.close().unwrap();
}

/// After a power cut a reader must not "repair" anything: the torn tail stays on disk for
/// the writer's own recovery, and the reader serves what the writer would recover.
#[test]
fn read_only_open_after_a_crash_repairs_nothing() {
    let fs = SimFileSystem::new();
    let (writer, _) = writer_with_unflushed_logs(&fs);
    writer.put("last", "unsynced").unwrap();
    fs.crash(strata_core::sim::CrashMode::TornTail { seed: 7 });
    drop(writer);
    let before = disk(&fs);
    let reader = Db::open_read_only("/db", options(&fs)).unwrap();
    let seen = contents(&reader);
    reader.close().unwrap();
    assert_eq!(disk(&fs), before);
    let recovered = Db::open("/db", options(&fs)).unwrap();
    assert_eq!(contents(&recovered), seen);
}

#[test]
fn read_only_open_of_no_database_creates_nothing() {
    let fs = SimFileSystem::new();
    assert!(matches!(Db::open_read_only("", options(&fs)), Err(Error::InvalidArgument(_))));
    let sharded = ShardedOptions::new(2).engine(options(&fs));
    assert!(matches!(ShardedDb::open_read_only("", sharded), Err(Error::InvalidArgument(_))));
    assert!(fs.files().is_empty());
    assert!(matches!(Db::open_read_only("/nothing", options(&fs)), Err(Error::InvalidArgument(_))));
    assert!(!fs.exists(Path::new("/nothing")).unwrap());
    fs.create_dir_all(Path::new("/empty")).unwrap();
    let err = Db::open_read_only("/empty", options(&fs)).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(fs.list(Path::new("/empty")).unwrap().is_empty());
}

#[test]
fn read_only_handle_verifies_what_it_loaded() {
    let fs = SimFileSystem::new();
    let (writer, _) = writer_with_unflushed_logs(&fs);
    let reader = Db::open_read_only("/db", options(&fs)).unwrap();
    let report = reader.verify().unwrap();
    assert_eq!(report.manifest_number, None);
    assert!(report.tables > 0 && report.entries >= 2000, "{report:?}");
    assert!(report.unreferenced_tables.is_empty());
    assert!(writer.verify().unwrap().manifest_number.is_some());
}

#[test]
fn sharded_read_only_open_beside_a_writer() {
    let fs = SimFileSystem::new();
    let opts = || ShardedOptions::new(3).engine(options(&fs));
    let writer = ShardedDb::open("/sharded", opts()).unwrap();
    for i in 0..1000 {
        writer.put(format!("key{i:04}"), format!("v{i}")).unwrap();
    }
    writer.flush().unwrap();
    writer.put("key0007", "logged").unwrap();
    writer.wait_for_compaction().unwrap();
    let before = disk(&fs);
    let reader = ShardedDb::open_read_only("/sharded", opts()).unwrap();
    assert_eq!(reader.iter().count(), 1000);
    assert_eq!(reader.get("key0007").unwrap().as_deref(), Some(&b"logged"[..]));
    assert!(matches!(reader.put("k", "v"), Err(Error::ReadOnly)));
    assert!(matches!(reader.flush(), Err(Error::ReadOnly)));
    assert!(matches!(
        ShardedDb::open_read_only("/sharded", ShardedOptions::new(4).engine(options(&fs))),
        Err(Error::InvalidArgument(_))
    ));
    reader.close().unwrap();
    assert_eq!(disk(&fs), before);
    assert!(matches!(ShardedDb::open_read_only("/none", opts()), Err(Error::InvalidArgument(_))));
    writer.close().unwrap();
}
