//! `Db::checkpoint` and `ShardedDb::checkpoint`: consistent under concurrent writes,
//! independent of the source once made, and never a half-made copy that opens, whatever
//! step a crash or a failed operation interrupts (simulated disk).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata::{Db, Durability, Error, Options, ShardedDb, ShardedOptions};
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};

fn key(t: usize, c: u64) -> String {
    format!("w{t}/{c:07}")
}

/// Writers append `w{t}/{counter}` in order; a checkpoint taken meanwhile must hold, per
/// writer, exactly the counters `0..n` for some `n` at least what was acknowledged before
/// the call: a prefix of each writer's history, never a hole.
#[test]
fn a_checkpoint_under_concurrent_writes_is_a_prefix_and_lives_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::default().memtable_size(256 << 10);
    let db = Db::open(dir.path().join("live"), opts()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<std::sync::atomic::AtomicU64>> =
        (0..3).map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0))).collect();
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (db, stop, acked) = (db.clone(), stop.clone(), acked[t].clone());
            std::thread::spawn(move || {
                let mut c = 0u64;
                while !stop.load(Ordering::Relaxed) && c < 200_000 {
                    db.put(key(t, c), format!("{t}:{c}")).unwrap();
                    c += 1;
                    acked.store(c, Ordering::Release);
                }
            })
        })
        .collect();
    while acked.iter().any(|a| a.load(Ordering::Acquire) < 5_000) {
        std::thread::yield_now();
    }
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::Acquire)).collect();
    let info = db.checkpoint(dir.path().join("copy")).unwrap();
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert!(info.tables > 0);
    assert_eq!(info.copied, 0, "one file system: hard links");

    let copy = Db::open(dir.path().join("copy"), opts()).unwrap();
    for (t, &b) in before.iter().enumerate() {
        let keys: Vec<String> = copy
            .prefix(format!("w{t}/"))
            .map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap())
            .collect();
        let n = keys.len() as u64;
        assert!(n >= b, "writer {t}: {n} keys, {b} acknowledged before the checkpoint");
        for (c, k) in keys.iter().enumerate() {
            assert_eq!(*k, key(t, c as u64), "writer {t}: a hole in the checkpoint");
        }
        assert_eq!(copy.get(key(t, 0)).unwrap().as_deref(), Some(format!("{t}:0").as_bytes()));
    }
    // Independent: writes to one are not seen by the other, and compaction of the source
    // does not take the copy's tables away.
    copy.put("only-in-copy", "x").unwrap();
    db.put("only-in-source", "y").unwrap();
    db.compact().unwrap();
    assert!(db.get("only-in-copy").unwrap().is_none());
    assert!(copy.get("only-in-source").unwrap().is_none());
    copy.compact().unwrap();
    assert_eq!(copy.get(key(0, 1)).unwrap().as_deref(), Some(&b"0:1"[..]));
    copy.close().unwrap();
    db.close().unwrap();
    let copy = Db::open(dir.path().join("copy"), opts()).unwrap();
    assert_eq!(copy.get("only-in-copy").unwrap().as_deref(), Some(&b"x"[..]));
}

#[test]
fn a_checkpoint_needs_an_empty_directory_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("live"), Options::default()).unwrap();
    db.put("k", "v").unwrap();
    assert!(matches!(db.checkpoint(dir.path().join("live")), Err(Error::InvalidArgument(_))));
    std::fs::create_dir_all(dir.path().join("full")).unwrap();
    std::fs::write(dir.path().join("full/x"), b"x").unwrap();
    assert!(matches!(db.checkpoint(dir.path().join("full")), Err(Error::InvalidArgument(_))));
    // An empty directory is fine, twice no.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    db.checkpoint(dir.path().join("empty")).unwrap();
    assert!(matches!(db.checkpoint(dir.path().join("empty")), Err(Error::InvalidArgument(_))));
}

fn sim_options(sim: &SimFileSystem) -> Options {
    Options::default().memtable_size(16 << 10).file_system(Arc::new(sim.process()))
}

/// The source's contents: 300 synced keys in tables, 100 synced keys in the memtable.
fn sim_source(sim: &SimFileSystem) -> (Db, BTreeMap<String, String>) {
    let db = Db::open("/src", sim_options(sim)).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..400u32 {
        let (k, v) = (format!("k{i:04}"), format!("v{i}"));
        db.put_with(&k, &v, Durability::Sync).unwrap();
        model.insert(k, v);
        if i == 299 {
            db.flush().unwrap();
        }
    }
    (db, model)
}

fn assert_holds(db: &Db, model: &BTreeMap<String, String>) {
    let got: BTreeMap<String, String> = db
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())
        })
        .collect();
    assert_eq!(&got, model);
}

/// Every operation a checkpoint makes is made to fail in turn (then the power is cut): the
/// source reopens with everything, and the checkpoint directory either is refused, holds
/// nothing, or is the whole copy.
#[test]
fn a_failure_or_power_cut_at_every_step_never_leaves_a_half_checkpoint_that_opens() {
    let mut cases = 0;
    for op in [FaultOp::Create, FaultOp::Write, FaultOp::Sync, FaultOp::Remove, FaultOp::Rename] {
        for n in 1.. {
            let sim = SimFileSystem::new();
            let (db, model) = sim_source(&sim);
            sim.fail_nth(op, n);
            let result = db.checkpoint("/cp");
            sim.clear_faults();
            sim.crash(CrashMode::TornTail { seed: n });
            drop(db);
            cases += 1;
            let src = Db::open("/src", sim_options(&sim)).unwrap();
            assert_holds(&src, &model);
            drop(src);
            let has_files = sim.files().iter().any(|p| p.starts_with("/cp"));
            match Db::open("/cp", sim_options(&sim)) {
                Ok(copy) if has_files => assert_holds(&copy, &model),
                Ok(_) => {} // nothing of it reached the disk: an empty directory
                Err(Error::InvalidArgument(m)) => assert!(m.contains("unfinished"), "{m}"),
                Err(e) => panic!("{op:?} #{n}: the checkpoint fails to open with {e}"),
            }
            if result.is_ok() {
                break; // the n-th such operation is past the checkpoint's last one
            }
        }
    }
    assert!(cases > 15, "only {cases} cases");
}

#[test]
fn a_sharded_checkpoint_reopens_with_every_shard_and_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path().join("live"), ShardedOptions::new(2)).unwrap();
    for i in 0..500u32 {
        db.put(format!("k{i:04}"), "v").unwrap();
    }
    db.split_shard(0).unwrap().wait().unwrap();
    let infos = db.checkpoint(dir.path().join("copy")).unwrap();
    assert_eq!(infos.len(), 3);
    db.put("after", "x").unwrap();
    let copy = ShardedDb::open(dir.path().join("copy"), ShardedOptions::new(2)).unwrap();
    assert_eq!(copy.shard_count(), 3);
    assert_eq!(copy.iter().count(), 500);
    assert!(copy.get("after").unwrap().is_none());
    for i in 0..3 {
        assert_eq!(copy.shard(i).unwrap().path(), dir.path().join(format!("copy/shard-{i:03}")));
    }
    // An interrupted sharded checkpoint is refused at the root.
    let marker = dir.path().join("half/CHECKPOINT-UNFINISHED");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, b"").unwrap();
    let err = ShardedDb::open(dir.path().join("half"), ShardedOptions::new(2)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(Path::new(&marker).exists());
}
