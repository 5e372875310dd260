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
//!
//! The same machinery runs the sharded campaign of [`crate::kill9_sharded`], against a
//! [`strata::ShardedDb`] resharded while the writers write: what differs (the store, the
//! workload, what the child does beside its writers, what the parent checks beyond the
//! writes) is a `Subject`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{Db, KvStore};

use crate::crash::{mix, options, read_state, Workload};
use crate::kill9_sharded::ShardedSubject;
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

/// Which store a child writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A [`Db`] ([`run_campaign`]).
    Db,
    /// A resharded [`strata::ShardedDb`] ([`crate::kill9_sharded::run_campaign`]).
    Sharded,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Db => "db",
            Target::Sharded => "sharded",
        }
    }
}

/// What a child needs to know, passed through environment variables.
#[derive(Debug, Clone)]
pub struct ChildArgs {
    /// The campaign's directory.
    pub dir: PathBuf,
    /// Round number (from 1).
    pub round: u64,
    /// Seed of the operations.
    pub seed: u64,
    /// Writer threads.
    pub threads: usize,
    /// The store it writes to.
    pub target: Target,
}

impl ChildArgs {
    /// Sets the environment variables [`ChildArgs::from_env`] reads.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("STRATA_CRASHTEST_DIR", &self.dir)
            .env("STRATA_CRASHTEST_ROUND", self.round.to_string())
            .env("STRATA_CRASHTEST_SEED", self.seed.to_string())
            .env("STRATA_CRASHTEST_THREADS", self.threads.to_string())
            .env("STRATA_CRASHTEST_TARGET", self.target.name());
    }

    /// The child's arguments, if this process was started as a child.
    pub fn from_env() -> Option<ChildArgs> {
        let var = |name: &str| std::env::var(name).ok();
        let target = match var("STRATA_CRASHTEST_TARGET").as_deref() {
            None | Some("db") => Target::Db,
            Some("sharded") => Target::Sharded,
            Some(_) => return None,
        };
        Some(ChildArgs {
            dir: PathBuf::from(var("STRATA_CRASHTEST_DIR")?),
            round: var("STRATA_CRASHTEST_ROUND")?.parse().ok()?,
            seed: var("STRATA_CRASHTEST_SEED")?.parse().ok()?,
            threads: var("STRATA_CRASHTEST_THREADS")?.parse().ok()?,
            target,
        })
    }
}

/// What differs between the campaigns run by [`run_rounds`]: the store, its workload, what
/// the child does beside its writers, what the parent checks beyond the writes.
pub(crate) trait Subject {
    /// The store the child writes to and the parent reopens.
    type Store: KvStore + Clone + 'static;
    /// Which [`Target`] a child must be told to run this subject.
    const TARGET: Target;
    /// The shape of the writes.
    fn workload(&self) -> Workload;
    /// The directory of the store round `args.round` writes to (rounds writing to the same
    /// one accumulate there).
    fn store_dir(&self, args: &ChildArgs) -> PathBuf;
    /// Opens (or creates) the store of round `args.round`: in the child, and in the parent
    /// after the kill (where the open recovers).
    fn open(&self, args: &ChildArgs) -> strata::Result<Self::Store>;
    /// In the child, every tick (about 20 ms), after the flush or compaction the tick may
    /// have made; an error ends the child with status 3.
    fn child_tick(
        &mut self,
        _store: &Self::Store,
        _args: &ChildArgs,
        _tick: u64,
    ) -> Result<(), String> {
        Ok(())
    }
    /// In the parent, after the reopened store's writes were checked (`got` is what it
    /// holds): what else must hold.
    fn verify(
        &mut self,
        _store: &Self::Store,
        _got: &State,
        _args: &ChildArgs,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// The plain campaign: one [`Db`], flushed and compacted now and then.
struct PlainDb;

impl Subject for PlainDb {
    type Store = Db;
    const TARGET: Target = Target::Db;

    fn workload(&self) -> Workload {
        Workload::Thread
    }

    fn store_dir(&self, args: &ChildArgs) -> PathBuf {
        args.dir.join("db")
    }

    fn open(&self, args: &ChildArgs) -> strata::Result<Db> {
        Db::open(self.store_dir(args), options())
    }
}

fn expected_file(dir: &Path, round: u64, thread: usize) -> PathBuf {
    dir.join(format!("expected-r{round}-t{thread}"))
}

/// Appends `line` to `file` (created if missing) with one `write(2)`, so that a kill leaves
/// whole lines (at worst the last one lost).
pub(crate) fn append_line(file: &mut std::fs::File, line: &str) -> std::io::Result<()> {
    file.write_all(format!("{line}\n").as_bytes())
}

/// Opens `path` for [`append_line`].
pub(crate) fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// The child: writes until killed. Never returns normally; exits with status 3 if a write
/// fails (the parent reports it).
pub fn child_main(args: &ChildArgs) -> ! {
    match args.target {
        Target::Db => child_run(PlainDb, args),
        Target::Sharded => child_run(ShardedSubject::child(), args),
    }
}

fn child_run<S: Subject>(mut subject: S, args: &ChildArgs) -> ! {
    let db = match subject.open(args) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("crashtest child: open failed: {e}");
            std::process::exit(3);
        }
    };
    let workload = subject.workload();
    let failed = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let db = db.clone();
        let args = args.clone();
        let failed = Arc::clone(&failed);
        handles.push(std::thread::spawn(move || {
            let mut log =
                open_log(&expected_file(&args.dir, args.round, t)).expect("expected-state file");
            for counter in 1.. {
                let w = workload.write(args.seed, args.round, t, counter);
                append_line(&mut log, &format!("A {counter}")).expect("write attempt line");
                if let Err(e) = db.write_with(w.batch(), w.durability.into()) {
                    eprintln!("crashtest child: thread {t} write {counter} failed: {e}");
                    failed.store(true, Ordering::SeqCst);
                    return;
                }
                append_line(&mut log, &format!("K {counter}")).expect("write ack line");
            }
        }));
    }
    // Explicit flushes now and then, besides those the small memtable triggers.
    let mut tick = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if failed.load(Ordering::SeqCst) {
            std::process::exit(3);
        }
        tick += 1;
        let dice = mix(args.seed ^ args.round ^ tick) % 16;
        let result = match dice {
            0 | 1 => db.flush(),
            2 => db.compact(),
            _ => Ok(()),
        };
        if let Err(e) = result {
            eprintln!("crashtest child: flush/compaction failed: {e}");
            std::process::exit(3);
        }
        if let Err(e) = subject.child_tick(&db, args, tick) {
            eprintln!("crashtest child: {e}");
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

/// Runs a campaign against a [`Db`]; `child` makes the command that starts a child (this
/// binary with `--child`, or a test binary re-executing itself). Returns the number of
/// writes verified.
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
    run_rounds(c, &mut PlainDb, child)
}

/// The parent's loop: each round starts a child, kills it, reopens the store and verifies
/// it (the writes, then whatever else `subject` checks). Returns the writes verified.
pub(crate) fn run_rounds<S: Subject>(
    c: &Campaign,
    subject: &mut S,
    child: &dyn Fn() -> Command,
) -> Result<u64, String> {
    let _ = std::fs::remove_dir_all(&c.dir);
    std::fs::create_dir_all(&c.dir).map_err(|e| format!("create {}: {e}", c.dir.display()))?;
    // What each store held after the last round that wrote to it.
    let mut states: std::collections::HashMap<PathBuf, State> = Default::default();
    let mut verified = 0;
    let started = Instant::now();
    for round in 1..=c.rounds {
        let args = ChildArgs {
            dir: c.dir.clone(),
            round,
            seed: c.seed,
            threads: c.threads,
            target: S::TARGET,
        };
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

        let db = subject.open(&args).map_err(|e| format!("round {round}: reopen failed: {e}"))?;
        let got = read_state(&db).map_err(|e| format!("round {round}: {e}"))?;
        let (mut lower, mut upper) = (Vec::new(), Vec::new());
        for t in 0..c.threads {
            let (attempted, acked) = read_expected(&expected_file(&c.dir, round, t));
            upper.push(attempted);
            lower.push(acked);
        }
        let state = states.entry(subject.store_dir(&args)).or_default();
        let progress =
            subject.workload().check_round(&got, state, c.seed, round, &lower, &upper)?;
        subject.verify(&db, &got, &args).map_err(|e| format!("round {round}: {e}"))?;
        db.close().map_err(|e| format!("round {round}: close failed: {e}"))?;
        verified += progress.iter().sum::<u64>();
        *state = got;
        for t in 0..c.threads {
            let _ = std::fs::remove_file(expected_file(&c.dir, round, t));
        }
        if c.rounds >= 100 && round % 100 == 0 {
            let keys: usize = states.values().map(State::len).sum();
            println!(
                "round {round}: {verified} writes verified, {keys} keys, {:?}",
                started.elapsed()
            );
        }
    }
    Ok(verified)
}
