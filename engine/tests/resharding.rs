//! Online resharding: `split_shard`, `add_shard` and `move_shard` while writers and readers
//! keep going, and power cuts at every step of it on the simulated disk.
//!
//! What must hold (issue 17): a key stays readable throughout and is never seen twice in a
//! scan; no acknowledged write is lost and no deleted key comes back; after a crash at any
//! step, the reopened database has one consistent layout (the old or the new) with every
//! acknowledged write present exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use strata::testing::ReshardStep;
use strata::{
    Durability, Error, Options, Partitioner, ReshardPhase, ShardedDb, ShardedOptions, WriteBatch,
};
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};

const BASE_KEYS: usize = 5000;

fn base_key(i: usize) -> String {
    format!("base/{i:05}")
}

/// The state a writer thread was told is durable, key by key (`None`: deleted), plus the
/// keys whose last write was neither acknowledged nor refused (a crash hit it), which may
/// hold either state.
#[derive(Default, Debug)]
struct Acked {
    state: BTreeMap<String, Option<String>>,
    uncertain: BTreeMap<String, Option<String>>,
}

/// A writer that puts, deletes, batches, async-writes and transacts on its own keys until
/// `stop`, recording what was acknowledged. `crash_ok`: an error ends it quietly (the power
/// is out), otherwise an error fails the test.
fn spawn_writer(
    db: &ShardedDb,
    t: usize,
    durability: Durability,
    stop: Arc<AtomicBool>,
    crash_ok: bool,
) -> JoinHandle<Acked> {
    let db = db.clone();
    std::thread::spawn(move || {
        let mut acked = Acked::default();
        let key = |i: u64| format!("w{t}/{:03}", i % 60);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) && i < 20_000 {
            i += 1;
            let value = format!("{t}:{i}");
            let (keys, r): (Vec<(String, Option<String>)>, _) = match i % 6 {
                0 => (vec![(key(i * 7), None)], db.delete_with(key(i * 7), durability)),
                1 => {
                    let ks = [key(i), key(i + 1), key(i + 2)];
                    let mut b = WriteBatch::new();
                    for k in &ks {
                        b.put(k, &value);
                    }
                    let ops = ks.iter().map(|k| (k.clone(), Some(value.clone()))).collect();
                    (ops, db.write_with(b, durability))
                }
                2 => {
                    let mut b = WriteBatch::new();
                    b.put(key(i), &value);
                    (vec![(key(i), Some(value.clone()))], db.write_async_with(b, durability).wait())
                }
                3 => {
                    let mut tx = db.transaction();
                    let r = tx
                        .get(key(i))
                        .and_then(|_| tx.put(key(i), &value))
                        .and_then(|()| tx.commit_with(durability));
                    match r {
                        Err(Error::Conflict) => continue, // nothing applied
                        r => (vec![(key(i), Some(value.clone()))], r),
                    }
                }
                _ => (vec![(key(i), Some(value.clone()))], db.put_with(key(i), &value, durability)),
            };
            match r {
                Ok(()) => {
                    for (k, v) in keys {
                        acked.uncertain.remove(&k);
                        acked.state.insert(k, v);
                    }
                }
                Err(e) if crash_ok => {
                    let _ = e;
                    for (k, v) in keys {
                        acked.uncertain.insert(k, v);
                    }
                    break;
                }
                Err(e) => panic!("writer {t}: {e}"),
            }
        }
        acked
    })
}

/// Checks `db` against the base keys and the writers' acknowledged states: every key as
/// acknowledged (or as its uncertain write), every scan strictly ascending (no key twice),
/// nothing else present.
fn check(db: &ShardedDb, writers: &[Acked]) {
    for i in (0..BASE_KEYS).step_by(7) {
        assert_eq!(db.get(base_key(i)).unwrap().as_deref(), Some(&b"base"[..]), "{}", base_key(i));
    }
    let mut expected: BTreeSet<String> = (0..BASE_KEYS).map(base_key).collect();
    for (t, w) in writers.iter().enumerate() {
        for (k, v) in &w.state {
            let got = db.get(k).unwrap().map(|b| String::from_utf8(b.to_vec()).unwrap());
            let alt = w.uncertain.get(k);
            assert!(
                got == *v || alt.is_some_and(|a| *a == got),
                "writer {t}: {k} is {got:?}, acknowledged {v:?} (uncertain {alt:?})"
            );
            if got.is_some() {
                expected.insert(k.clone());
            }
        }
        for (k, v) in &w.uncertain {
            let got = db.get(k).unwrap().map(|b| String::from_utf8(b.to_vec()).unwrap());
            if !w.state.contains_key(k) && got.is_some() {
                assert_eq!(got, *v, "writer {t}: unacknowledged {k} holds a value never written");
                expected.insert(k.clone());
            }
        }
    }
    let keys: Vec<String> =
        db.iter().map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "a scan saw a key twice or out of order");
    let back: Vec<String> =
        db.iter().rev().map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap()).collect();
    assert!(back.windows(2).all(|w| w[0] > w[1]), "a reverse scan saw a key twice");
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), expected);
}

fn load_base(db: &ShardedDb) {
    let mut b = WriteBatch::new();
    for i in 0..BASE_KEYS {
        b.put(base_key(i), "base");
    }
    db.write(b).unwrap();
}

/// Readers that, while the resharding runs, check that every base key stays readable and
/// that scans of the base keys see each exactly once.
fn spawn_readers(db: &ShardedDb, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let db = db.clone();
    std::thread::spawn(move || {
        let mut rounds = 0u64;
        while !stop.load(Ordering::Relaxed) {
            rounds += 1;
            for i in (rounds as usize % 13..BASE_KEYS).step_by(97) {
                assert!(db.get(base_key(i)).unwrap().is_some(), "{} vanished", base_key(i));
            }
            let keys: Vec<_> = db.prefix("base/").map(|r| r.unwrap().0).collect();
            assert_eq!(keys.len(), BASE_KEYS, "a scan of the base keys saw {}", keys.len());
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "a scan saw a base key twice");
        }
        rounds
    })
}

/// Runs `reshard` on a loaded database while 3 writers and a reader work, then checks.
fn under_load(
    opts: ShardedOptions,
    reshard: impl FnOnce(&ShardedDb) -> strata::Resharding,
) -> (ShardedDb, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    load_base(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> =
        (0..3).map(|t| spawn_writer(&db, t, Durability::Buffered, stop.clone(), false)).collect();
    let reader = spawn_readers(&db, stop.clone());
    let job = reshard(&db);
    job.wait().unwrap();
    assert_eq!(job.progress().phase, ReshardPhase::Done);
    assert!(job.progress().copied > 0);
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Acked> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(reader.join().unwrap() > 0);
    check(&db, &acked);
    (db, dir)
}

#[test]
fn range_split_under_load_keeps_every_key_once() {
    let opts = ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"m".to_vec()]));
    let (db, _dir) = under_load(opts, |db| db.split_shard(0).unwrap());
    assert_eq!(db.shard_count(), 3);
    let Partitioner::Range(splits) = db.partitioner() else { panic!("range") };
    assert_eq!(splits.len(), 2);
    // Each shard holds only what the router sends it: cleanup removed the moved copies.
    for i in 0..3 {
        for r in db.shard(i).unwrap().iter() {
            assert_eq!(db.shard_of(r.unwrap().0), i);
        }
    }
}

#[test]
fn hash_split_under_load_moves_about_half_of_one_shard() {
    let (db, _dir) = under_load(ShardedOptions::new(2), |db| {
        let before = db.shard(1).unwrap().iter().count();
        let job = db.split_shard(1).unwrap();
        job.wait().unwrap();
        let (kept, took) =
            (db.shard(1).unwrap().iter().count(), db.shard(2).unwrap().iter().count());
        let share = took as f64 / (kept + took) as f64;
        assert!((0.35..0.65).contains(&share), "the new shard took {share:.2} of {before}");
        job
    });
    assert_eq!(db.shard_count(), 3);
    for i in 0..3 {
        for r in db.shard(i).unwrap().iter() {
            assert_eq!(db.shard_of(r.unwrap().0), i);
        }
    }
}

#[test]
fn adding_a_hash_shard_moves_about_one_in_n_plus_one_keys_only_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), ShardedOptions::new(3)).unwrap();
    load_base(&db);
    let before: Vec<usize> = (0..BASE_KEYS).map(|i| db.shard_of(base_key(i))).collect();
    db.add_shard("extra").unwrap().wait().unwrap();
    assert_eq!(db.shard_count(), 4);
    let mut moved = 0;
    for (i, &b) in before.iter().enumerate() {
        let now = db.shard_of(base_key(i));
        if now != b {
            assert_eq!(now, 3, "a key moved between old shards");
            moved += 1;
        }
    }
    let share = moved as f64 / BASE_KEYS as f64;
    assert!((0.15..0.35).contains(&share), "moved {share:.3}, ideal 0.25");
    assert_eq!(db.shard(3).unwrap().iter().count(), moved);
    assert_eq!(db.shard(3).unwrap().path(), dir.path().join("extra"));
    check(&db, &[]);
}

#[test]
fn adding_a_range_shard_splits_the_largest() {
    let opts = ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"a".to_vec()]));
    let (db, _dir) = under_load(opts, |db| db.add_shard("extra").unwrap());
    assert_eq!(db.shard_count(), 3);
    // "base/..." and "w.../..." all sort above "a": shard 1 was the largest and gave half.
    assert_eq!(db.shard(2).unwrap().path(), db.path().join("extra"));
    assert!(db.shard(2).unwrap().iter().count() > 0);
}

#[test]
fn moving_a_shard_under_load_then_reopening_finds_it_in_its_new_home() {
    let opts = || ShardedOptions::new(2);
    let (db, dir) = under_load(opts(), |db| db.move_shard(0, db.path().join("moved")).unwrap());
    let old = db.path().join("shard-000");
    assert_eq!(db.shard(0).unwrap().path(), dir.path().join("moved"));
    let snapshot_keys = db.snapshot().iter().count();
    // The old home waits for the close, but does not block another resharding.
    db.split_shard(1).unwrap().wait().unwrap();
    assert_eq!(db.shard_count(), 3);
    assert!(std::fs::read_dir(&old).unwrap().count() > 0);
    db.close().unwrap();
    // The old home was emptied at close.
    assert!(std::fs::read_dir(&old).map(|d| d.count()).unwrap_or(0) == 0);
    let db = ShardedDb::open(dir.path(), opts()).unwrap();
    assert_eq!((db.iter().count(), db.shard_count()), (snapshot_keys, 3));
    assert_eq!(db.shard(0).unwrap().path(), dir.path().join("moved"));
}

#[test]
fn a_resharded_database_reopens_with_its_creation_options_and_keeps_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || ShardedOptions::new(1).partitioner(Partitioner::Range(vec![]));
    let db = ShardedDb::open(dir.path(), opts()).unwrap();
    load_base(&db);
    db.split_shard(0).unwrap().wait().unwrap();
    let splits = db.partitioner();
    db.close().unwrap();
    let db = ShardedDb::open(dir.path(), opts()).unwrap();
    assert_eq!((db.shard_count(), db.partitioner()), (2, splits));
    check(&db, &[]);
    db.close().unwrap();
    assert!(matches!(
        ShardedDb::open(dir.path(), ShardedOptions::new(2)),
        Err(Error::InvalidArgument(_))
    ));
    let ro = ShardedDb::open_read_only(dir.path(), opts()).unwrap();
    assert_eq!(ro.shard_count(), 2);
    assert!(matches!(ro.split_shard(0), Err(Error::ReadOnly)));
}

/// A hook that blocks the resharding at `at` until released.
fn gate_at(at: ReshardStep) -> (ShardedOptions, Arc<(Mutex<bool>, std::sync::Condvar)>) {
    let (opts, gate, _) = gate_reporting(at);
    (opts, gate)
}

/// [`gate_at`], with a flag set once the resharding got to `at`.
#[allow(clippy::type_complexity)]
fn gate_reporting(
    at: ReshardStep,
) -> (ShardedOptions, Arc<(Mutex<bool>, std::sync::Condvar)>, Arc<AtomicBool>) {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let reached = Arc::new(AtomicBool::new(false));
    let (g, seen) = (gate.clone(), reached.clone());
    let opts = ShardedOptions::new(1).partitioner(Partitioner::Range(vec![])).on_reshard_step(
        move |step| {
            if step == at {
                seen.store(true, Ordering::Release);
                let (open, cv) = &*g;
                let mut o = open.lock().unwrap();
                while !*o {
                    o = cv.wait(o).unwrap();
                }
            }
        },
    );
    (opts, gate, reached)
}

/// Waits until the resharding got to the gate.
fn wait_for(reached: &AtomicBool) {
    while !reached.load(Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn release(gate: &(Mutex<bool>, std::sync::Condvar)) {
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

#[test]
fn one_resharding_at_a_time_and_a_cancelled_one_leaves_nothing() {
    let (opts, gate) = gate_at(ReshardStep::Capturing);
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    load_base(&db);
    let job = db.split_shard(0).unwrap();
    assert!(matches!(db.split_shard(0), Err(Error::Busy)));
    assert!(matches!(db.add_shard("x"), Err(Error::Busy)));
    db.put("base/00001", "changed during the copy").unwrap();
    job.cancel();
    release(&gate);
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    assert_eq!(job.progress().phase, ReshardPhase::RolledBack);
    assert_eq!(db.shard_count(), 1);
    assert_eq!(db.get("base/00001").unwrap().as_deref(), Some(&b"changed during the copy"[..]));
    // The new shard's directory was emptied; a later split works.
    let new_dir = dir.path().join("shard-001");
    assert_eq!(std::fs::read_dir(&new_dir).map(|d| d.count()).unwrap_or(0), 0);
    db.split_shard(0).unwrap().wait().unwrap();
    assert_eq!(db.shard_count(), 2);
    assert_eq!(db.prefix("base/").count(), BASE_KEYS);
}

#[test]
fn a_transaction_spanning_the_cut_over_conflicts_and_its_retry_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), ShardedOptions::new(2)).unwrap();
    load_base(&db);
    let mut tx = db.transaction();
    let v = tx.get("base/00007").unwrap();
    assert_eq!(v.as_deref(), Some(&b"base"[..]));
    tx.put("base/00007", "tx").unwrap();
    db.split_shard(db.shard_of("base/00007")).unwrap().wait().unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));
    assert_eq!(db.get("base/00007").unwrap().as_deref(), Some(&b"base"[..]));
    let mut tx = db.transaction();
    tx.put("base/00007", "tx").unwrap();
    tx.commit().unwrap();
    assert_eq!(db.get("base/00007").unwrap().as_deref(), Some(&b"tx"[..]));
}

/// Between the cut-over and the cleanup the source still holds the moved keys: point reads
/// and scans (from the new routing, and from a snapshot taken before) must not show them
/// twice.
#[test]
fn between_cut_over_and_cleanup_scans_skip_the_stale_copies() {
    let handle: Arc<OnceLock<ShardedDb>> = Arc::new(OnceLock::new());
    let checked = Arc::new(AtomicU64::new(0));
    let (h, c) = (handle.clone(), checked.clone());
    let opts = ShardedOptions::new(1).partitioner(Partitioner::Range(vec![])).on_reshard_step(
        move |step| {
            if step == ReshardStep::CutOver {
                let db = h.get().unwrap();
                // The source still holds every key; the new shard holds the moved ones.
                let on_source = db.shard(0).unwrap().prefix("base/").count();
                assert_eq!(on_source, BASE_KEYS);
                assert!(db.shard(1).unwrap().prefix("base/").count() > 0);
                let keys: Vec<_> = db.prefix("base/").map(|r| r.unwrap().0).collect();
                assert_eq!(keys.len(), BASE_KEYS);
                let back: Vec<_> = db.prefix("base/").rev().map(|r| r.unwrap().0).collect();
                assert_eq!(back.len(), BASE_KEYS);
                assert_eq!(db.snapshot().prefix("base/").count(), BASE_KEYS);
                c.fetch_add(1, Ordering::SeqCst);
            }
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    handle.set(db.clone()).unwrap();
    load_base(&db);
    let before = db.snapshot();
    db.split_shard(0).unwrap().wait().unwrap();
    assert_eq!(checked.load(Ordering::SeqCst), 1);
    assert_eq!(before.prefix("base/").count(), BASE_KEYS);
    assert_eq!(before.get("base/04999").unwrap().as_deref(), Some(&b"base"[..]));
}

/// One shard takes 4x the writes of each other shard; the watcher splits it once it stayed
/// hot for the sustained window, and the hottest shard's share of writes about halves.
#[test]
fn auto_split_halves_the_hottest_shards_share_of_a_skewed_workload() {
    use std::time::Duration;
    use strata::testing::ManualClock;
    use strata::AutoSplit;
    let clock = Arc::new(ManualClock::default());
    let policy = AutoSplit::hotter_than(1.8)
        .sustained_for(Duration::from_secs(20))
        .check_every(Duration::from_millis(2));
    let splits = vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()];
    let opts = ShardedOptions::new(4)
        .partitioner(Partitioner::Range(splits))
        .clock(clock.clone())
        .auto_split(policy);
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    let hottest_share = |db: &ShardedDb| {
        let m = db.metrics();
        let rates: Vec<f64> = m.shards.iter().map(|s| s.writes_per_sec).collect();
        let total: f64 = rates.iter().sum();
        (rates.iter().cloned().fold(0.0, f64::max) / total, rates)
    };
    let mut second = 0u64;
    let mut one_second = |db: &ShardedDb| {
        second += 1;
        let mut b = WriteBatch::new();
        for j in 0..400u64 {
            b.put(format!("a{:04}", (second * 400 + j) % 4000), "v");
        }
        for p in ["b", "c", "d"] {
            for j in 0..100u64 {
                b.put(format!("{p}{:04}", (second * 100 + j) % 4000), "v");
            }
        }
        db.write(b).unwrap();
        clock.advance(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(10)); // the watcher looks
    };
    for _ in 0..12 {
        one_second(&db);
    }
    let (before, rates_before) = hottest_share(&db);
    assert_eq!(db.metrics().auto_splits, 0, "split before the sustained window");
    for _ in 0..200 {
        if db.metrics().auto_splits > 0 {
            break;
        }
        one_second(&db);
    }
    assert_eq!(db.metrics().auto_splits, 1, "the hot shard was not split");
    db.resharding().unwrap().wait().unwrap();
    assert_eq!(db.shard_count(), 5);
    for _ in 0..12 {
        one_second(&db); // the rate windows forget the time before the split
    }
    let (after, rates_after) = hottest_share(&db);
    println!("hottest share of writes: {before:.3} {rates_before:?} -> {after:.3} {rates_after:?}");
    assert!((0.35..0.65).contains(&(after / before)), "share {before:.3} -> {after:.3}");
    // No second split: no shard is hot any more.
    for _ in 0..25 {
        one_second(&db);
    }
    assert_eq!(db.metrics().auto_splits, 1);
}

// ---- power cuts at every step, on the simulated disk ----

fn sim_options(
    sim: &SimFileSystem,
    hook: impl Fn(ReshardStep) + Send + Sync + 'static,
) -> ShardedOptions {
    ShardedOptions::new(2)
        .engine(Options::default().memtable_size(64 << 10).file_system(Arc::new(sim.process())))
        .on_reshard_step(hook)
}

fn plain_sim_options(sim: &SimFileSystem) -> ShardedOptions {
    ShardedOptions::new(2)
        .engine(Options::default().memtable_size(64 << 10).file_system(Arc::new(sim.process())))
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Split,
    Add,
    Move,
}

/// Cuts the power at the `nth` occurrence of `at` during `op`, with synced writers running,
/// then reopens and checks that the layout is one of the two and every acknowledged write
/// is there exactly once.
fn crash_at(op: Op, at: ReshardStep, nth: u64, seed: u64) {
    let sim = SimFileSystem::new();
    let seen = Arc::new(AtomicU64::new(0));
    let crashed = Arc::new(AtomicBool::new(false));
    let (s, c, fs) = (seen.clone(), crashed.clone(), sim.clone());
    let opts = sim_options(&sim, move |step| {
        if step == at && s.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            fs.crash(CrashMode::TornTail { seed });
            c.store(true, Ordering::SeqCst);
        } else {
            // Let the writers in between the steps.
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    });
    let db = ShardedDb::open("/db", opts).unwrap();
    let mut b = WriteBatch::new();
    for i in 0..BASE_KEYS {
        b.put(base_key(i), "base");
    }
    db.write_with(b, Durability::Sync).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> =
        (0..2).map(|t| spawn_writer(&db, t, Durability::Sync, stop.clone(), true)).collect();
    // The writers get going before the resharding starts.
    while db.metrics().shards.iter().map(|s| s.engine.wal_syncs).sum::<u64>() < 50 {
        std::thread::yield_now();
    }
    let job = match op {
        Op::Split => db.split_shard(0),
        Op::Add => db.add_shard("extra"),
        Op::Move => db.move_shard(1, "/elsewhere/s1"),
    }
    .unwrap();
    let _ = job.wait();
    let reached = crashed.load(Ordering::SeqCst);
    if !reached {
        sim.crash(CrashMode::TornTail { seed }); // the step came fewer than nth times
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Acked> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    drop(job);
    drop(db);
    let db = ShardedDb::open("/db", plain_sim_options(&sim)).unwrap();
    let shards = db.shard_count();
    match op {
        Op::Split | Op::Add => assert!(shards == 2 || shards == 3, "{shards} shards"),
        Op::Move => assert_eq!(shards, 2),
    }
    // A cleanup the crash interrupted resumes at open: let it finish, then check again.
    check(&db, &acked);
    if let Some(job) = db.resharding() {
        job.wait().unwrap();
    }
    check(&db, &acked);
    for i in 0..shards {
        for r in db.shard(i).unwrap().iter() {
            assert_eq!(db.shard_of(r.unwrap().0), i, "a stale copy survived cleanup");
        }
    }
    if let Op::Move = op {
        // Whichever home shard 1 has now, the other holds no files.
        let other = if db.shard(1).unwrap().path() == Path::new("/db/shard-001") {
            "/elsewhere/s1"
        } else {
            "/db/shard-001"
        };
        let left: Vec<_> = sim.files().into_iter().filter(|p| p.starts_with(other)).collect();
        assert!(left.is_empty(), "{at:?}: {left:?}");
    }
    db.close().unwrap();
}

const STEPS: [(ReshardStep, u64); 9] = [
    (ReshardStep::Journaled, 1),
    (ReshardStep::Capturing, 1),
    (ReshardStep::CopiedBatch, 1),
    (ReshardStep::CaughtUp, 1),
    (ReshardStep::Flushed, 1),
    (ReshardStep::Fenced, 1),
    (ReshardStep::CutOver, 1),
    (ReshardStep::CleanedBatch, 1),
    (ReshardStep::Cleaned, 1),
];

#[test]
fn power_cut_at_every_step_of_a_split() {
    for (n, (step, nth)) in STEPS.into_iter().enumerate() {
        crash_at(Op::Split, step, nth, n as u64);
    }
}

#[test]
fn power_cut_at_every_step_of_an_add() {
    for (n, (step, nth)) in STEPS.into_iter().enumerate() {
        crash_at(Op::Add, step, nth, 100 + n as u64);
    }
}

#[test]
fn power_cut_at_every_step_of_a_move() {
    for (n, (step, nth)) in STEPS.into_iter().enumerate() {
        crash_at(Op::Move, step, nth, 200 + n as u64);
    }
}

/// A failed layout write at the cut-over may or may not have reached the disk: the
/// database refuses writes from then on, and the reopen finds one consistent layout.
#[test]
fn a_failed_layout_write_at_the_cut_over_poisons_and_reopen_decides() {
    for op in [FaultOp::Rename, FaultOp::Sync] {
        let sim = SimFileSystem::new();
        let fs = sim.clone();
        let opts = sim_options(&sim, move |step| {
            if step == ReshardStep::Fenced {
                // The final catch-up (nothing noted) writes nothing, so the next rename is
                // the layout's, and the next sync the layout file's own.
                fs.fail_nth(op, 1);
            }
        });
        let db = ShardedDb::open("/db", opts).unwrap();
        load_base(&db);
        db.flush().unwrap();
        let job = db.split_shard(0).unwrap();
        assert!(job.wait().is_err());
        assert_eq!(job.progress().phase, ReshardPhase::Failed);
        assert!(matches!(db.put("k", "v"), Err(Error::Poisoned(_))), "{op:?}");
        assert!(db.get("base/00001").unwrap().is_some());
        db.close().unwrap();
        let db = ShardedDb::open("/db", plain_sim_options(&sim)).unwrap();
        check(&db, &[]);
        db.put("k", "v").unwrap();
    }
}

/// A crash while copying leaves the new shard's directory behind: the reopen empties it.
#[test]
fn reopen_after_a_crash_mid_copy_rolls_back_and_empties_the_new_directory() {
    let sim = SimFileSystem::new();
    let fs = sim.clone();
    let opts = sim_options(&sim, move |step| {
        if step == ReshardStep::Flushed {
            fs.crash(CrashMode::SyncedOnly);
        }
    });
    let db = ShardedDb::open("/db", opts).unwrap();
    load_base(&db);
    db.flush().unwrap();
    let _ = db.split_shard(0).unwrap().wait();
    drop(db);
    let db = ShardedDb::open("/db", plain_sim_options(&sim)).unwrap();
    assert_eq!(db.shard_count(), 2);
    let leftovers: Vec<_> =
        sim.files().into_iter().filter(|p| p.starts_with(Path::new("/db/shard-002"))).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    check(&db, &[]);
}

/// A range delete cannot be replayed key by key on the new shard, so while a resharding
/// copies it is `Busy` (alone or in a batch); before and after, it deletes on every shard.
#[test]
fn range_deletes_wait_for_a_copying_resharding() {
    let (opts, gate, reached) = gate_reporting(ReshardStep::Capturing);
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path(), opts).unwrap();
    load_base(&db);
    let before = db.iter().count();
    let job = db.split_shard(0).unwrap();
    wait_for(&reached);
    assert!(matches!(db.delete_range("base/".."base0"), Err(Error::Busy)));
    let mut batch = WriteBatch::new();
    batch.delete_range("base/", "base0");
    assert!(matches!(db.write(batch), Err(Error::Busy)));
    db.put("base/00002", "written during the copy").unwrap();
    release(&gate);
    job.wait().unwrap();
    assert_eq!(db.shard_count(), 2);
    assert_eq!(db.iter().count(), before, "the refused range deletes deleted nothing");
    db.delete_range("base/".."base0").unwrap();
    assert_eq!(db.prefix("base/").count(), 0);
    db.close().unwrap();
}

/// An ingest refuses while a resharding runs (the split of its input follows one routing),
/// and works once it ended.
#[test]
fn a_sharded_ingest_waits_for_a_resharding() {
    let (opts, gate, reached) = gate_reporting(ReshardStep::Capturing);
    let dir = tempfile::tempdir().unwrap();
    let db = ShardedDb::open(dir.path().join("db"), opts).unwrap();
    load_base(&db);
    let mut writer =
        strata::TableWriter::create(dir.path().join("load.sst"), &Options::default()).unwrap();
    for i in 0..100u32 {
        writer.put(format!("load/{i:03}"), "x").unwrap();
    }
    let file = writer.finish().unwrap();
    let job = db.split_shard(0).unwrap();
    wait_for(&reached);
    assert!(matches!(db.ingest([file.path()]), Err(Error::Busy)));
    release(&gate);
    job.wait().unwrap();
    db.ingest([file.path()]).unwrap();
    assert_eq!(db.prefix("load/").count(), 100);
    db.close().unwrap();
}
