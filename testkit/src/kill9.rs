//! The kill -9 crash-recovery campaign, in the spirit of RocksDB's `db_crashtest`: run by
//! `engine/examples/crashtest.rs` (long campaigns) and `engine/tests/crash_kill9.rs` (CI).
//!
//! Each round starts a writer CHILD process (the caller's binary re-executed, with
//! [`ChildArgs`] in its environment; it runs [`child_main`]): several threads write the
//! [`crate::crash`] workload, puts, deletes and batches with `Durability::Sync` and
//! `Durability::Buffered`, into one database until the parent kills the child with SIGKILL at
//! a random moment. The parent then reopens the database and verifies it. Rounds accumulate
//! in one database (flushes happen: the memtable is small; manual and automatic compactions
//! too), so every round also recovers what earlier crashes left.
//!
//! # What is verified
//! Before each write call the child appends `A {counter}` ("attempted") to the thread's
//! expected-state file, after the call returned `Ok` it appends `K {counter}`
//! ("acknowledged"), each with one `write(2)`. After the kill:
//! * the recovered progress counter `p` of each thread lies between its last `K` and its last
//!   `A`: every acknowledged write is present (both durabilities: Buffered writes reached the
//!   OS before the call returned, and a process crash does not lose them) and nothing that
//!   was never attempted appears. A lost last line is harmless: a write may be in the
//!   database without its `K` line (allowed), and without an `A` line it never started;
//! * the thread's keys equal the previous round's state with exactly the thread's writes
//!   `1..=p` applied: batches whole, no write skipped, no value never written;
//! * no key outside the threads' key ranges; forward scan = reverse scan = point gets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::Db;

use crate::crash::{check_round, mix, options, read_state, write_for};
use crate::model::State;

/// Configuration of a campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Database directory (created; removed first).
    pub dir: PathBuf,
    /// Kill/reopen rounds.
    pub rounds: u64,
    /// Seed of the operations and kill times.
    pub seed: u64,
    /// Writer threads in the child.
    pub threads: usize,
    /// The child is killed after a random delay in `min_ms..=max_ms`.
    pub min_ms: u64,
    /// See `min_ms`.
    pub max_ms: u64,
}

/// What a child needs to know, passed through environment variables.
#[derive(Debug, Clone)]
pub struct ChildArgs {
    /// Database directory.
    pub dir: PathBuf,
    /// Round number (from 1).
    pub round: u64,
    /// Seed of the operations.
    pub seed: u64,
    /// Writer threads.
    pub threads: usize,
}

impl ChildArgs {
    /// Sets the environment variables [`ChildArgs::from_env`] reads.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("STRATA_CRASHTEST_DIR", &self.dir)
            .env("STRATA_CRASHTEST_ROUND", self.round.to_string())
            .env("STRATA_CRASHTEST_SEED", self.seed.to_string())
            .env("STRATA_CRASHTEST_THREADS", self.threads.to_string());
    }

    /// The child's arguments, if this process was started as a child.
    pub fn from_env() -> Option<ChildArgs> {
        let var = |name: &str| std::env::var(name).ok();
        Some(ChildArgs {
            dir: PathBuf::from(var("STRATA_CRASHTEST_DIR")?),
            round: var("STRATA_CRASHTEST_ROUND")?.parse().ok()?,
            seed: var("STRATA_CRASHTEST_SEED")?.parse().ok()?,
            threads: var("STRATA_CRASHTEST_THREADS")?.parse().ok()?,
        })
    }
}

fn expected_file(dir: &Path, round: u64, thread: usize) -> PathBuf {
    dir.join(format!("expected-r{round}-t{thread}"))
}

/// The child: writes until killed. Never returns normally; exits with status 3 if a write
/// fails (the parent reports it).
pub fn child_main(args: &ChildArgs) -> ! {
    let db = match Db::open(args.dir.join("db"), options()) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("crashtest child: open failed: {e}");
            std::process::exit(3);
        }
    };
    let failed = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let db = db.clone();
        let args = args.clone();
        let failed = Arc::clone(&failed);
        handles.push(std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(expected_file(&args.dir, args.round, t))
                .expect("expected-state file");
            for counter in 1.. {
                let w = write_for(args.seed, args.round, t, counter);
                // One write(2) per line: a kill leaves whole lines (at worst the last is lost).
                log.write_all(format!("A {counter}\n").as_bytes()).expect("write attempt line");
                if let Err(e) = db.write_with(w.batch(), w.durability) {
                    eprintln!("crashtest child: thread {t} write {counter} failed: {e}");
                    failed.store(true, Ordering::SeqCst);
                    return;
                }
                log.write_all(format!("K {counter}\n").as_bytes()).expect("write ack line");
            }
        }));
    }
    // Explicit flushes now and then, besides those the small memtable triggers.
    let mut rounds = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if failed.load(Ordering::SeqCst) {
            std::process::exit(3);
        }
        rounds += 1;
        let dice = mix(args.seed ^ args.round ^ rounds) % 16;
        let result = match dice {
            0 | 1 => db.flush(),
            2 => db.compact(),
            _ => Ok(()),
        };
        if let Err(e) = result {
            eprintln!("crashtest child: flush/compaction failed: {e}");
            std::process::exit(3);
        }
    }
}

/// The last attempted and acknowledged counters recorded in an expected-state file.
fn read_expected(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut attempted, mut acked) = (0, 0);
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("A", c)) => attempted = attempted.max(c.parse().unwrap_or(0)),
            Some(("K", c)) => acked = acked.max(c.parse().unwrap_or(0)),
            _ => {} // a torn last line
        }
    }
    (attempted, acked)
}

/// Runs a campaign; `child` makes the command that starts a child (this binary with
/// `--child`, or a test binary re-executing itself). Returns the number of writes verified.
///
/// ```no_run
/// use std::process::Command;
/// use strata_testkit::kill9::{child_main, run_campaign, Campaign, ChildArgs};
///
/// // One binary is both: started with the child's environment, it writes until killed.
/// if let Some(args) = ChildArgs::from_env() {
///     child_main(&args);
/// }
/// let campaign = Campaign {
///     dir: "/tmp/strata-crash".into(),
///     rounds: 20,
///     seed: 1,
///     threads: 3,
///     min_ms: 30,
///     max_ms: 250,
/// };
/// let exe = std::env::current_exe()?;
/// let verified = run_campaign(&campaign, &|| Command::new(&exe))?;
/// println!("{verified} acknowledged writes verified");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_campaign(c: &Campaign, child: &dyn Fn() -> Command) -> Result<u64, String> {
    let _ = std::fs::remove_dir_all(&c.dir);
    std::fs::create_dir_all(&c.dir).map_err(|e| format!("create {}: {e}", c.dir.display()))?;
    let mut state = State::new();
    let mut verified = 0;
    let started = Instant::now();
    for round in 1..=c.rounds {
        let args = ChildArgs { dir: c.dir.clone(), round, seed: c.seed, threads: c.threads };
        let mut cmd = child();
        args.apply(&mut cmd);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let mut proc = cmd.spawn().map_err(|e| format!("spawn child: {e}"))?;
        let span = c.max_ms.saturating_sub(c.min_ms) + 1;
        let delay = c.min_ms + mix(c.seed ^ mix(round)) % span;
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = proc.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("round {round}: the child exited by itself with {status}"));
        }
        proc.kill().map_err(|e| format!("kill: {e}"))?; // SIGKILL
        proc.wait().map_err(|e| e.to_string())?;

        let db = Db::open(c.dir.join("db"), options())
            .map_err(|e| format!("round {round}: reopen failed: {e}"))?;
        let got = read_state(&db).map_err(|e| format!("round {round}: {e}"))?;
        let (mut lower, mut upper) = (Vec::new(), Vec::new());
        for t in 0..c.threads {
            let (attempted, acked) = read_expected(&expected_file(&c.dir, round, t));
            upper.push(attempted);
            lower.push(acked);
        }
        let progress = check_round(&got, &state, c.seed, round, &lower, &upper)?;
        db.close().map_err(|e| format!("round {round}: close failed: {e}"))?;
        verified += progress.iter().sum::<u64>();
        state = got;
        for t in 0..c.threads {
            let _ = std::fs::remove_file(expected_file(&c.dir, round, t));
        }
        if c.rounds >= 100 && round % 100 == 0 {
            println!(
                "round {round}: {verified} writes verified, {} keys, {:?}",
                state.len(),
                started.elapsed()
            );
        }
    }
    Ok(verified)
}
