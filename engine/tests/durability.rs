//! The four durability levels, each against what a power cut (the simulated file system's
//! `SyncedOnly` crash) leaves behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{Db, Durability, Options};
use strata_core::fs::FileSystem;
use strata_core::sim::{CrashMode, SimFileSystem};

fn open(disk: &SimFileSystem, durability: Durability) -> Db {
    let opts = Options::default().file_system(Arc::new(disk.process())).durability(durability);
    Db::open("/db", opts).expect("open")
}

/// Writes `k` with `durability`, optionally waits, cuts the power, and reports whether the
/// write survived.
fn survives_power_cut(durability: Durability, wait: impl FnOnce(&SimFileSystem)) -> bool {
    let disk = SimFileSystem::new();
    let db = open(&disk, Durability::Buffered);
    db.write_with(
        {
            let mut b = strata::WriteBatch::new();
            b.put("k", "v");
            b
        },
        durability,
    )
    .expect("write");
    wait(&disk);
    disk.crash(CrashMode::SyncedOnly);
    drop(db);
    let db = open(&disk, Durability::Buffered);
    db.get("k").expect("get").is_some()
}

#[test]
fn sync_writes_survive_power_loss() {
    assert!(survives_power_cut(Durability::Sync, |_| {}));
}

#[test]
fn buffered_and_unlogged_writes_do_not_survive_power_loss() {
    // The contract is "survives kill -9, not power loss": nothing syncs them, so a power cut
    // right after the call loses them (a test that they are not synced behind our back).
    assert!(!survives_power_cut(Durability::Buffered, |_| {}));
    assert!(!survives_power_cut(Durability::None, |_| {}));
}

#[test]
fn periodic_writes_are_synced_within_the_interval() {
    let every = Duration::from_millis(20);
    let survived = survives_power_cut(Durability::Periodic(every), |disk| {
        // Wait until every live log is synced to its end (the background sync ran), with a
        // generous bound for a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs: Vec<_> = disk
                .files()
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            let synced = logs.iter().all(|p| disk.synced_len(p).ok() == disk.file_size(p).ok());
            if synced || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(every);
        }
    });
    assert!(survived);
}

#[test]
fn unlogged_writes_survive_a_clean_close() {
    let disk = SimFileSystem::new();
    let db = open(&disk, Durability::None);
    db.put("k", "v").unwrap();
    db.close().unwrap();
    disk.crash(CrashMode::SyncedOnly);
    let db = open(&disk, Durability::Buffered);
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A write whose log append or fsync fails is never visible, not even to the process that
/// made it: the memtable takes it in while the log is written, and must give it back
/// before its sequence numbers are published. Covers a single put and a batch of several.
#[test]
fn a_write_whose_log_fails_is_never_visible() {
    use strata_core::sim::FaultOp;
    for (op, durability) in
        [(FaultOp::Write, Durability::Buffered), (FaultOp::Sync, Durability::Sync)]
    {
        for entries in [1usize, 3] {
            let disk = SimFileSystem::new();
            let db = open(&disk, Durability::Buffered);
            db.put("before", "1").expect("put");
            disk.fail_nth(op, 1);
            let mut b = strata::WriteBatch::new();
            for i in 0..entries {
                b.put(format!("failed{i}"), "x");
            }
            assert!(db.write_with(b, durability).is_err(), "{op:?}: the write must fail");
            for i in 0..entries {
                let key = format!("failed{i}");
                assert_eq!(db.get(&key).expect("reads still work"), None, "{op:?} {key}");
            }
            let keys: Vec<_> = db.iter().map(|kv| kv.expect("scan").0).collect();
            assert_eq!(keys, [&b"before"[..]], "{op:?}, {entries} entries");
            assert!(db.put("after", "1").is_err(), "poisoned after {op:?}");
        }
    }
}
