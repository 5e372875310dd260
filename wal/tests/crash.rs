//! Simulated power loss and injected faults against the WAL: whatever happens, recovery must
//! return only records that were written, in order, never a torn one, and every record
//! acknowledged under `Sync` must survive.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use strata_core::fs::FileSystem;
use strata_core::key::ValueKind;
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};
use strata_core::Error;
use strata_wal::{BatchEncoding, LogReader, RecoveryMode, Wal, WalOptions, WriteBatch};

const LOG: &str = "/db/000007.log";
const THREADS: usize = 4;

fn new_fs() -> Arc<SimFileSystem> {
    let fs = Arc::new(SimFileSystem::new());
    fs.create_dir_all(Path::new("/db")).unwrap();
    fs
}

/// The batch thread `t` writes as its `i`-th record: its content is a function of `(t, i)`,
/// so recovery can check every byte.
fn batch(t: usize, i: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.set_sequence(i);
    let key = format!("t{t:02}-{i:012}");
    // Mostly small values, now and then one spanning blocks.
    let len = match i % 17 {
        0 => 40_000 + (i as usize % 5000),
        _ => (i as usize * 13) % 400,
    };
    let value: Vec<u8> = (0..len).map(|j| (j as u64 ^ i ^ t as u64) as u8).collect();
    b.put(key.as_bytes(), &value);
    if i.is_multiple_of(3) {
        b.delete(format!("gone-{t}-{i}"));
    }
    b
}

/// Reads the log back and checks it: every payload is a well-formed batch equal to what its
/// thread wrote, and each thread's records are its first `n` in order. Returns `n` per thread.
fn recover(fs: &dyn FileSystem) -> Vec<u64> {
    let mut reader = LogReader::open(fs, Path::new(LOG), RecoveryMode::Strict).unwrap();
    let mut count = vec![0u64; THREADS];
    while let Some(record) = reader.next_record().unwrap() {
        let got = WriteBatch::decode(record.payload.to_vec()).unwrap();
        let first = got.iter().next().unwrap();
        assert_eq!(first.kind.point(), Some(ValueKind::Put));
        let key = std::str::from_utf8(first.key).unwrap();
        let t: usize = key[1..3].parse().unwrap();
        assert_eq!(got.sequence(), count[t], "thread {t}: records out of order or missing");
        assert_eq!(got.as_bytes(), batch(t, count[t]).as_bytes(), "record content differs");
        count[t] += 1;
    }
    count
}

enum CrashTrigger {
    /// Crash after a random short time.
    Sleep(Duration),
    /// Crash once this many appends reached the file system.
    AfterWrites(u64),
}

/// Threads append with mixed durability until a crash; returns, per thread, the number of
/// records up to and including the last one acknowledged under `Sync`.
fn run_until_crash(
    fs: &Arc<SimFileSystem>,
    seed: u64,
    mode: CrashMode,
    trigger: CrashTrigger,
) -> Vec<u64> {
    let wal = Wal::create(
        fs.clone(),
        LOG,
        WalOptions { max_group_bytes: 64 * 1024, ..WalOptions::default() },
    )
    .unwrap();
    let must_survive = Arc::new(Mutex::new(vec![0u64; THREADS]));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (wal, must_survive, stop) = (wal.clone(), must_survive.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed * 100 + t as u64);
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let sync = rng.random_bool(0.4);
                    match wal.append(batch(t, i).as_bytes(), sync) {
                        Ok(()) if sync => must_survive.lock()[t] = i + 1,
                        Ok(()) => {}
                        // The crash killed the file handle: the log is poisoned from now on.
                        Err(_) => {
                            assert!(wal.append(b"x", false).is_err());
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    match trigger {
        CrashTrigger::Sleep(d) => std::thread::sleep(d),
        CrashTrigger::AfterWrites(n) => {
            while fs.op_count(FaultOp::Write) < n {
                std::thread::yield_now();
            }
        }
    }
    fs.crash(mode);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = must_survive.lock().clone();
    acked
}

/// Returns how many synced records were acknowledged (to show the check was not vacuous).
fn check_crash(seed: u64, mode: CrashMode, trigger: CrashTrigger) -> u64 {
    let fs = new_fs();
    let must_survive = run_until_crash(&fs, seed, mode, trigger);
    let recovered = recover(&*fs);
    for t in 0..THREADS {
        assert!(
            recovered[t] >= must_survive[t],
            "seed {seed} {mode:?}: thread {t} lost a synced record: recovered {} < acknowledged {}",
            recovered[t],
            must_survive[t]
        );
    }
    must_survive.iter().sum()
}

#[test]
fn crash_at_random_moments_keeps_synced_records() {
    let mut acknowledged = 0;
    for seed in 0..12 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let delay = Duration::from_micros(rng.random_range(0..3000));
        acknowledged += check_crash(seed, CrashMode::SyncedOnly, CrashTrigger::Sleep(delay));
        acknowledged += check_crash(seed, CrashMode::TornTail { seed }, CrashTrigger::Sleep(delay));
    }
    assert!(acknowledged > 0);
}

#[test]
fn crash_after_n_writes_keeps_synced_records() {
    let mut acknowledged = 0;
    for seed in 0..12 {
        // Write #1 is the file header.
        let n = 1 + seed * 7 % 40;
        acknowledged += check_crash(seed, CrashMode::SyncedOnly, CrashTrigger::AfterWrites(n));
        acknowledged += check_crash(
            seed,
            CrashMode::TornTail { seed: seed + 1000 },
            CrashTrigger::AfterWrites(n),
        );
    }
    assert!(acknowledged > 0);
}

/// The torn-tail crash really does produce torn records the reader must drop, so the check
/// above is not vacuous.
#[test]
fn torn_tail_crash_drops_a_partial_record() {
    let mut dropped = 0;
    for seed in 0..30 {
        let fs = new_fs();
        let wal = Wal::create(fs.clone(), LOG, WalOptions::default()).unwrap();
        wal.append(batch(0, 0).as_bytes(), true).unwrap();
        wal.append(batch(0, 1).as_bytes(), false).unwrap(); // 40 KB spanning two blocks, unsynced
        fs.crash(CrashMode::TornTail { seed });
        let mut reader = LogReader::open(&*fs, Path::new(LOG), RecoveryMode::Strict).unwrap();
        let mut n = 0;
        while let Some(r) = reader.next_record().unwrap() {
            assert_eq!(r.payload, batch(0, n).as_bytes());
            n += 1;
        }
        assert!(n >= 1);
        if let Some((offset, bytes)) = reader.dropped_tail() {
            assert!(bytes > 0 && n == 1);
            assert_eq!(offset + bytes, fs.file_size(Path::new(LOG)).unwrap());
            dropped += 1;
        }
    }
    assert!(dropped > 10, "only {dropped} of 30 crashes tore the record");
}

#[test]
fn crash_before_header_sync_leaves_no_log_or_an_empty_one() {
    let fs = new_fs();
    fs.fail_nth(FaultOp::Sync, 1);
    let err = Wal::create(fs.clone(), LOG, WalOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { op: "fdatasync", .. }), "{err}");
    fs.crash(CrashMode::TornTail { seed: 3 });
    // The name was never made durable.
    assert!(!fs.exists(Path::new(LOG)).unwrap());
}

#[test]
fn failed_sync_fails_the_whole_group_and_poisons() {
    let fs = new_fs();
    let wal = Wal::create(fs.clone(), LOG, WalOptions::default()).unwrap();
    wal.append(batch(0, 0).as_bytes(), true).unwrap();
    // One group of five records, two of which ask for a sync; the sync fails.
    let tickets: Vec<_> =
        (1..6).map(|i| wal.enqueue(batch(0, i).as_bytes(), i % 2 == 0).unwrap()).collect();
    fs.fail_nth(FaultOp::Sync, 1);
    for t in tickets {
        let err = t.wait().unwrap_err();
        assert!(
            matches!(err, Error::Io { op: "fdatasync", .. }),
            "every writer of the group sees the sync error: {err}"
        );
    }
    assert!(matches!(wal.enqueue(b"x", false), Err(Error::Poisoned(_))));
    assert!(matches!(wal.append(b"x", true), Err(Error::Poisoned(_))));
    assert!(matches!(wal.sync(), Err(Error::Poisoned(_))));
    assert!(matches!(wal.close(), Err(Error::Poisoned(_))));
    assert!(wal.poison().is_some());
    // The failed sync is not retried: no later sync reached the file system.
    let syncs = fs.op_count(FaultOp::Sync);
    let _ = wal.sync();
    assert_eq!(fs.op_count(FaultOp::Sync), syncs);

    fs.crash(CrashMode::SyncedOnly);
    assert_eq!(recover(&*fs), vec![1, 0, 0, 0], "only the truly synced record survives");
}

#[test]
fn queued_groups_behind_a_failure_are_poisoned() {
    let fs = new_fs();
    let wal =
        Wal::create(fs.clone(), LOG, WalOptions { max_group_bytes: 100, ..WalOptions::default() })
            .unwrap();
    // Three groups (each record exceeds the bound); the first one's write fails.
    let tickets: Vec<_> = (0..3).map(|i| wal.enqueue(&[i; 200], false).unwrap()).collect();
    fs.fail_nth(FaultOp::Write, 1);
    let results: Vec<_> = tickets.into_iter().map(|t| t.wait()).collect();
    assert!(matches!(results[0], Err(Error::Io { op: "write", .. })));
    assert!(matches!(results[1], Err(Error::Poisoned(_))));
    assert!(matches!(results[2], Err(Error::Poisoned(_))));
    assert_eq!(wal.stats().write_calls, 0);
}

#[test]
fn disk_full_poisons_and_recovery_drops_the_short_write() {
    let fs = new_fs();
    let wal = Wal::create(fs.clone(), LOG, WalOptions::default()).unwrap();
    wal.append(batch(1, 0).as_bytes(), false).unwrap();
    fs.set_space_budget(Some(50));
    let err = wal.append(batch(1, 1).as_bytes(), true).unwrap_err();
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(28)),
        other => panic!("expected ENOSPC, got {other}"),
    }
    fs.set_space_budget(None);
    assert!(matches!(wal.append(b"later", false), Err(Error::Poisoned(_))));
    // Without a crash the file holds the first record plus 50 bytes of the second: the
    // reader drops the partial record as a torn tail.
    let mut reader = LogReader::open(&*fs, Path::new(LOG), RecoveryMode::Strict).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().payload, batch(1, 0).as_bytes());
    assert!(reader.next_record().unwrap().is_none());
    let (_, dropped) = reader.dropped_tail().unwrap();
    assert_eq!(dropped, 50);
}
