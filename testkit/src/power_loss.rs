//! The power-loss campaign on the simulated disk: writer threads (Sync and Buffered) load a
//! database with small memtables (so flushes run) while the power is cut after a random number
//! of acknowledgements (`SimFileSystem::crash` with a torn tail). The database is dropped (its
//! handles fail after the crash), reopened on the same disk and verified:
//! * every Sync-acknowledged write is present;
//! * batches are all-or-nothing and nothing unwritten appears (each thread's keys equal the
//!   previous state plus exactly its writes `1..=p`, `p` its recovered progress counter:
//!   [`Workload::check_round`]);
//! * the prefix property across threads: a write that survived implies every write
//!   acknowledged before it started survived too (the log is ordered);
//! * the dead process changed nothing on the disk after the power cut;
//! * scans (both directions) and gets agree.
//!
//! Rounds accumulate in one database, so each also recovers what earlier crashes left.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{Db, Durability, Options};
use strata_core::sim::{CrashMode, SimFileSystem};

use crate::crash::{mix, read_state, write_for, Workload};
use crate::model::State;

/// Writer threads of a round.
pub const THREADS: usize = 3;

/// Most writes a thread attempts in a round.
const MAX_WRITES: u64 = 300;

/// The campaign's database options on `sim`: [`crate::crash::options`] with a 16 KiB memtable.
pub fn options(sim: &SimFileSystem) -> Options {
    crate::crash::options().memtable_size(16 << 10).file_system(Arc::new(sim.clone()))
}

/// `opts` without automatic compaction: level 0 only grows (and never stalls writers).
pub fn without_compaction(opts: Options) -> Options {
    opts.l0_compaction_trigger(1 << 20).l0_slowdown_trigger(1 << 20).l0_stop_trigger(1 << 20)
}

/// One attempted write of a thread: its counter, durability, the logical time it started
/// and (if acknowledged) the time its call returned `Ok`.
struct Attempt {
    counter: u64,
    durability: Durability,
    start: u64,
    ack: Option<u64>,
}

/// Runs one round on `sim`: load, power cut, reopen, verify (panicking on a finding).
/// `prev` is what the previous round recovered; returns what this one recovered.
///
/// ```
/// use strata_core::sim::SimFileSystem;
/// use strata_testkit::model::State;
/// use strata_testkit::power_loss::run_round;
///
/// let sim = SimFileSystem::new();
/// let first = run_round(&sim, 1, 1, &State::new(), true);
/// let second = run_round(&sim, 1, 2, &first, true);
/// assert!(!second.is_empty());
/// ```
pub fn run_round(
    sim: &SimFileSystem,
    seed: u64,
    round: u64,
    prev: &State,
    compaction: bool,
) -> State {
    // The disk as this process sees it: fenced at the power cut, so the database's threads
    // still running then cannot touch the rebooted disk.
    let mut opts = options(sim).file_system(Arc::new(sim.process()));
    if !compaction {
        opts = without_compaction(opts);
    }
    let db = Db::open("/db", opts).unwrap_or_else(|e| panic!("round {round}: open failed: {e}"));
    let clock = Arc::new(AtomicU64::new(1));
    let acks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..THREADS {
        let (db, clock, acks, stop) = (db.clone(), clock.clone(), acks.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut attempts = Vec::new();
            for counter in 1..=MAX_WRITES {
                if stop.load(Ordering::SeqCst) && counter % 16 == 0 {
                    break;
                }
                let w = write_for(seed, round, t, counter);
                let start = clock.fetch_add(1, Ordering::SeqCst);
                let result = db.write_with(w.batch(), w.durability);
                let ack = result.as_ref().ok().map(|()| clock.fetch_add(1, Ordering::SeqCst));
                attempts.push(Attempt { counter, durability: w.durability, start, ack });
                match result {
                    Ok(()) => {
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        assert!(!e.is_corruption(), "a write reported corruption: {e}");
                        break;
                    }
                }
            }
            attempts
        }));
    }
    let cut_after = 20 + mix(seed ^ round) % (THREADS as u64 * MAX_WRITES);
    // Writers that stop making progress are an engine hang (a deadlock): fail, don't hang CI.
    let (mut last_acks, mut last_progress) = (0, Instant::now());
    while acks.load(Ordering::SeqCst) < cut_after && !writers.iter().all(|w| w.is_finished()) {
        let now = acks.load(Ordering::SeqCst);
        if now != last_acks {
            (last_acks, last_progress) = (now, Instant::now());
        }
        assert!(
            last_progress.elapsed() < Duration::from_secs(20),
            "round {round}: writers made no progress for 20 s (engine deadlock?) after {now} acknowledgements"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    sim.crash(CrashMode::TornTail { seed: mix(seed ^ round ^ 7) });
    stop.store(true, Ordering::SeqCst);
    let after_crash = sim.files();
    let attempts: Vec<Vec<Attempt>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    drop(db);
    assert_eq!(
        sim.files(),
        after_crash,
        "round {round}: the dead process changed the disk after the power cut"
    );

    let reopen_opts = options(sim).file_system(Arc::new(sim.process()));
    let reopen_opts = if compaction { reopen_opts } else { without_compaction(reopen_opts) };
    let db = Db::open("/db", reopen_opts)
        .unwrap_or_else(|e| panic!("round {round}: reopen after power loss failed: {e}"));
    let got = read_state(&db).unwrap_or_else(|e| panic!("round {round}: {e}"));
    let lower: Vec<u64> = attempts
        .iter()
        .map(|a| {
            a.iter()
                .filter(|a| a.ack.is_some() && a.durability == Durability::Sync)
                .map(|a| a.counter)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let upper: Vec<u64> = attempts.iter().map(|a| a.last().map_or(0, |a| a.counter)).collect();
    let progress = Workload::Thread
        .check_round(&got, prev, seed, round, &lower, &upper)
        .unwrap_or_else(|e| panic!("{e}"));
    // Prefix property across threads: the latest start among surviving writes bounds what
    // must have survived.
    let latest_survivor_start = (0..THREADS)
        .filter(|&t| progress[t] > 0)
        .map(|t| attempts[t][progress[t] as usize - 1].start)
        .max()
        .unwrap_or(0);
    for (t, list) in attempts.iter().enumerate() {
        for a in list {
            if a.ack.is_some_and(|ack| ack < latest_survivor_start) {
                assert!(
                    a.counter <= progress[t],
                    "round {round}: thread {t} write {} was acknowledged before a surviving write started, \
                     but is lost (progress {progress:?})",
                    a.counter
                );
            }
        }
    }
    db.close().unwrap();
    got
}

/// Runs `rounds` rounds for each of `seeds`, each seed on a fresh disk; with `compaction`
/// false, level 0 only grows (flushes only, no compaction).
pub fn run_campaign(seeds: &[u64], rounds: u64, compaction: bool) {
    for &seed in seeds {
        let sim = SimFileSystem::new();
        let mut state = State::new();
        for round in 1..=rounds {
            state = run_round(&sim, seed, round, &state, compaction);
        }
        assert!(!state.is_empty(), "seed {seed}: nothing survived {rounds} rounds");
    }
}
