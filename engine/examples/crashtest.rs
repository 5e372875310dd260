//! `crashtest`: a kill -9 crash-recovery campaign, in the spirit of RocksDB's `db_crashtest`.
//!
//! ```text
//! cargo run --release -p strata --example crashtest -- --rounds 20 --dir /tmp/strata-crash
//! cargo run --release -p strata --example crashtest -- --rounds 100000 --dir /tmp/x --max-ms 2000
//! ```
//!
//! Each round re-executes this binary as a writer CHILD (`--child`): several threads write
//! puts, deletes and batches with `Durability::Sync` and `Durability::Buffered` into one
//! database, until the parent kills the child with SIGKILL at a random moment. The parent then
//! reopens the database and verifies it. Rounds accumulate in one database (flushes happen:
//! the memtable is small; manual and automatic compactions too), so every round also recovers
//! what earlier crashes left.
//!
//! # What is verified
//! Every write of thread `t` is one atomic batch that also sets the thread's progress key
//! `t{t}/~progress` to `r{round} c{counter}`; the operations are a pure function of
//! `(seed, round, thread, counter)` ([`write_for`]). Before each call the child appends
//! `A {counter}` ("attempted") to the thread's expected-state file, after the call returned
//! `Ok` it appends `K {counter}` ("acknowledged"), each with one `write(2)`. After the kill:
//! * the recovered progress counter `p` of each thread lies between its last `K` and its last
//!   `A`: every acknowledged write is present (both durabilities: Buffered writes reached the
//!   OS before the call returned, and a process crash does not lose them) and nothing that
//!   was never attempted appears. A lost last line is harmless: a write may be in the
//!   database without its `K` line (allowed), and without an `A` line it never started;
//! * the thread's keys equal the previous round's state with exactly the thread's writes
//!   `1..=p` applied: batches whole, no write skipped, no value never written;
//! * no key outside the threads' key ranges; forward scan = reverse scan = point gets.
//!
//! The same logic runs in CI as `engine/tests/crash_kill9.rs` (about 20 short rounds).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{Db, Durability, Options, WriteBatch};

/// The recovered (or expected) contents of a database.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keys per thread: small, so writes overwrite and delete each other's keys.
pub const KEYS_PER_THREAD: u64 = 200;

/// splitmix64: a deterministic hash, so parent and child derive the same operations.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The progress key of thread `t`.
pub fn progress_key(thread: usize) -> Vec<u8> {
    format!("t{thread:02}/~progress").into_bytes()
}

/// The value of the progress key after write `counter` of `round`.
pub fn progress_value(round: u64, counter: u64) -> Vec<u8> {
    format!("r{round} c{counter}").into_bytes()
}

fn parse_progress(value: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(value).ok()?;
    let (r, c) = s.split_once(' ')?;
    Some((r.strip_prefix('r')?.parse().ok()?, c.strip_prefix('c')?.parse().ok()?))
}

fn thread_prefix(thread: usize) -> Vec<u8> {
    format!("t{thread:02}/").into_bytes()
}

/// One write: the mutations of its batch and its durability.
#[derive(Debug, Clone)]
pub struct PlannedWrite {
    /// `(key, Some(value))` puts, `(key, None)` deletes, in batch order.
    pub mutations: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Sync or Buffered.
    pub durability: Durability,
}

/// Write `counter` (from 1) of `thread` in `round`: a put, a delete or a batch of up to 8
/// mutations, plus the progress key; values encode `(round, thread, counter)`.
pub fn write_for(seed: u64, round: u64, thread: usize, counter: u64) -> PlannedWrite {
    let mut h = mix(seed ^ mix(round ^ mix(thread as u64 ^ mix(counter))));
    let mut next = || {
        h = mix(h);
        h
    };
    let kind = next() % 10;
    let n = match kind {
        0..=4 => 1,
        _ => 1 + next() % 8,
    };
    let mut mutations = Vec::new();
    for i in 0..n {
        let key = format!("t{thread:02}/k{:04}", next() % KEYS_PER_THREAD).into_bytes();
        if next() % 4 == 0 {
            mutations.push((key, None));
        } else {
            let len = (next() % 300) as usize;
            let mut value = format!("r{round}/t{thread}/c{counter}/{i}:").into_bytes();
            value.resize(value.len() + len, b'a' + (counter % 26) as u8);
            mutations.push((key, Some(value)));
        }
    }
    mutations.push((progress_key(thread), Some(progress_value(round, counter))));
    let durability = if next() % 3 == 0 { Durability::Sync } else { Durability::Buffered };
    PlannedWrite { mutations, durability }
}

/// The batch of a planned write.
pub fn batch_of(w: &PlannedWrite) -> WriteBatch {
    let mut b = WriteBatch::new();
    for (k, v) in &w.mutations {
        match v {
            Some(v) => b.put(k, v),
            None => b.delete(k),
        }
    }
    b
}

/// Small memtables so that flushes (and, with the default level-0 trigger of 4 tables,
/// automatic compactions) happen in every round.
pub fn options() -> Options {
    Options::default()
        .memtable_size(64 << 10)
        .durability(Durability::Buffered)
        .level_base_bytes(1 << 20)
}

/// Reads the whole database forward, backward and by key, and checks they agree.
pub fn read_state(db: &Db) -> Result<State, String> {
    let forward: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("scan failed: {e}"))?;
    let mut backward: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter()
        .rev()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reverse scan failed: {e}"))?;
    backward.reverse();
    if forward != backward {
        return Err("forward and reverse scans disagree".into());
    }
    if !forward.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err("scan is not strictly ordered".into());
    }
    for (k, v) in &forward {
        let got = db.get(k).map_err(|e| format!("get failed: {e}"))?;
        if got.as_deref() != Some(v.as_slice()) {
            return Err(format!(
                "get({}) = {got:?} but the scan shows a value",
                String::from_utf8_lossy(k)
            ));
        }
    }
    Ok(forward.into_iter().collect())
}

/// The progress counter of `thread` in `round` found in `state` (0: no write of the round).
pub fn progress_of(state: &State, round: u64, thread: usize) -> u64 {
    match state.get(&progress_key(thread)).and_then(|v| parse_progress(v)) {
        Some((r, c)) if r == round => c,
        _ => 0,
    }
}

/// Checks that `got` holds, for each thread, exactly `prev` with the thread's writes
/// `1..=p` of `round` applied, `p` being the recovered progress counter, and that
/// `lower[t] <= p <= upper[t]`. Returns each thread's `p`.
pub fn check_round(
    got: &State,
    prev: &State,
    seed: u64,
    round: u64,
    lower: &[u64],
    upper: &[u64],
) -> Result<Vec<u64>, String> {
    let threads = lower.len();
    let mut progress = Vec::new();
    let mut expected = prev.clone();
    for t in 0..threads {
        let p = progress_of(got, round, t);
        if p < lower[t] {
            return Err(format!(
                "thread {t} round {round}: write {} was acknowledged (durably) but only {p} writes survived",
                lower[t]
            ));
        }
        if p > upper[t] {
            return Err(format!(
                "thread {t} round {round}: progress {p} but only {} writes were attempted",
                upper[t]
            ));
        }
        for c in 1..=p {
            for (k, v) in write_for(seed, round, t, c).mutations {
                match v {
                    Some(v) => expected.insert(k, v),
                    None => expected.remove(&k),
                };
            }
        }
        progress.push(p);
    }
    if got != &expected {
        let first_diff = got
            .iter()
            .zip(expected.iter())
            .find(|(a, b)| a != b)
            .map(|(a, b)| {
                format!(
                    "got {}={} expected {}={}",
                    String::from_utf8_lossy(a.0),
                    String::from_utf8_lossy(a.1),
                    String::from_utf8_lossy(b.0),
                    String::from_utf8_lossy(b.1)
                )
            })
            .unwrap_or_else(|| format!("{} keys vs {} expected", got.len(), expected.len()));
        return Err(format!("round {round}: recovered state is not the expected prefix state ({first_diff}); progress {progress:?}"));
    }
    for k in got.keys() {
        if !(0..threads).any(|t| k.starts_with(&thread_prefix(t))) {
            return Err(format!("key {} was never written", String::from_utf8_lossy(k)));
        }
    }
    Ok(progress)
}

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
                if let Err(e) = db.write_with(batch_of(&w), w.durability) {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--child") {
        let child = ChildArgs::from_env().expect("child started without its environment");
        child_main(&child);
    }
    let flag =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num =
        |name: &str, default: u64| flag(name).map_or(default, |v| v.parse().expect("a number"));
    let campaign = Campaign {
        dir: PathBuf::from(flag("--dir").unwrap_or_else(|| "/tmp/strata-crashtest".into())),
        rounds: num("--rounds", 20),
        seed: num(
            "--seed",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
        ),
        threads: num("--threads", 4) as usize,
        min_ms: num("--min-ms", 50),
        max_ms: num("--max-ms", 1000),
    };
    println!("crashtest: {campaign:?}");
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    match run_campaign(&campaign, &|| {
        let mut cmd = Command::new(&exe);
        cmd.arg("--child");
        cmd
    }) {
        Ok(verified) => println!(
            "crashtest: {} rounds passed, {verified} acknowledged writes verified in {:?} (seed {})",
            campaign.rounds,
            started.elapsed(),
            campaign.seed
        ),
        Err(e) => {
            eprintln!("crashtest FAILED (seed {}): {e}", campaign.seed);
            std::process::exit(1);
        }
    }
}
