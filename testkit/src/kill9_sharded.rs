//! The kill -9 campaign against a [`ShardedDb`] resharded while its writers write: the
//! machinery of [`crate::kill9`] (a writer child killed with SIGKILL at a random moment, the
//! parent reopening and verifying, rounds accumulating), with
//! * the [`Workload::Entities`] workload under the shard key [`ENTITY_SHARD_KEY`]: every
//!   write (a put, a delete or a batch, `Sync` or `Buffered`) touches one entity and its
//!   progress key, so it lies on one shard and is atomic there;
//! * in the child, besides the writers, online reshardings started at random moments:
//!   `split_shard` (at the median or at a random entity's shard key), `add_shard` and
//!   `move_shard` to fresh directories in the campaign directory, now and then cancelled;
//!   splits and adds only while the database has fewer than [`MAX_SHARDS`] shards. So kills
//!   land before, during and after cut-overs;
//! * rounds alternating between a hash-partitioned and a range-partitioned database (each
//!   lives [`ROUNDS_PER_STORE`] rounds, then a fresh pair starts, so that long campaigns
//!   keep splitting instead of only moving).
//!
//! # What is verified after each kill
//! The reopen rolls back a resharding the kill caught before its cut-over and resumes the
//! cleanup of one it caught after. Then:
//! * every acknowledged write is present exactly once and nothing else: the check of
//!   [`crate::kill9`] (forward scan = reverse scan = point gets, no key twice, each thread's
//!   keys exactly the previous state plus its writes `1..=p`, so no resurrected delete);
//! * the layout is one the child saw or the target of the resharding it was running: the
//!   child logs, with one `write(2)` per line, a fingerprint of the layout (shard
//!   directories and partitioner) before it starts a resharding (`S`) and after each ends
//!   (`D`, `C` when cancelled; `E` when the start was refused), and each [`strata::testing::ReshardStep`] the
//!   running one reaches (`P`, from [`ShardedOptions::on_reshard_step`], which runs before
//!   the step after it). Without one running, the reopened layout must be the last logged;
//!   with one running it must be the one before (rolled back), or a new one with the shard
//!   count the operation gives (completed). Rolled back: it had not reached `CutOver`.
//!   Completed: it had reached `Fenced` (the target layout is written under the fence);
//! * once the resumed cleanup is done: the contents are unchanged, every key lies on the
//!   shard it routes to, and every shard directory not in the layout (a rolled-back
//!   target, a moved shard's old home) holds no file.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use strata::{Error, Partitioner, ReshardPhase, Resharding, ShardedDb, ShardedOptions};

use crate::crash::{mix, options, read_state, Workload, ENTITY_SHARD_KEY};
use crate::kill9::{append_line, open_log, run_rounds, Campaign, ChildArgs, Subject, Target};
use crate::model::State;

/// No split or add grows a database beyond this many shards (moves go on).
pub const MAX_SHARDS: usize = 8;
/// Entities per writer thread.
pub const ENTITIES: u64 = 8;
/// Rounds a pair of databases (one hash, one range) lives before a fresh pair starts.
pub const ROUNDS_PER_STORE: u64 = 40;

/// What became of the reshardings of a campaign.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReshardTally {
    /// Finished in the child before the kill (`Done`).
    pub completed: u64,
    /// Cancelled in the child (rolled back, or cleanup cut short and resumed at the reopen).
    pub cancelled: u64,
    /// Running at the kill (or not yet seen finished) and found completed by the reopen: it
    /// had cut over, and the reopen resumed its cleanup.
    pub killed_after_cut_over: u64,
    /// Running at the kill before the cut-over: the reopen rolled it back.
    pub killed_before_cut_over: u64,
    /// Refused at the start (a range shard with a single shard key cannot split, a split
    /// point outside the shard, a cleanup still pending).
    pub refused: u64,
    /// For the reshardings running at a kill: how many had last reached each step
    /// (`ReshardStep`'s name; `Started`: none yet).
    pub killed_at: BTreeMap<String, u64>,
}

/// The result of [`run_campaign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedReport {
    /// Acknowledged writes verified.
    pub verified: u64,
    /// What became of the reshardings.
    pub reshards: ReshardTally,
}

/// Runs the sharded campaign; `child` makes the command that starts a child, as for
/// [`crate::kill9::run_campaign`] (the child runs [`crate::kill9::child_main`], which reads
/// from its environment that it is a sharded child).
///
/// ```no_run
/// use std::process::Command;
/// use strata_testkit::kill9::{child_main, Campaign, ChildArgs};
/// use strata_testkit::kill9_sharded::run_campaign;
///
/// if let Some(args) = ChildArgs::from_env() {
///     child_main(&args);
/// }
/// let campaign = Campaign {
///     dir: "/tmp/strata-crash-sharded".into(),
///     rounds: 15,
///     seed: 1,
///     threads: 3,
///     min_ms: 50,
///     max_ms: 300,
/// };
/// let exe = std::env::current_exe()?;
/// let report = run_campaign(&campaign, &|| Command::new(&exe))?;
/// println!("{} writes verified, reshardings: {:?}", report.verified, report.reshards);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_campaign(c: &Campaign, child: &dyn Fn() -> Command) -> Result<ShardedReport, String> {
    let mut subject = ShardedSubject::default();
    let verified = run_rounds(c, &mut subject, child)?;
    Ok(ShardedReport { verified, reshards: subject.tally })
}

/// The sharded campaign's [`Subject`]: the child's resharding state, the parent's record
/// of each database's layout and the tally.
#[derive(Default)]
pub(crate) struct ShardedSubject {
    /// Whether this is the child (which logs the steps of its reshardings).
    child: bool,
    /// Child: the resharding it started and has not seen end.
    running: Option<Resharding>,
    /// Child: its resharding log, shared with the step hook.
    log: Arc<Mutex<Option<std::fs::File>>>,
    /// Child: fresh directories made so far.
    fresh: u64,
    /// Parent: the fingerprint of each database's layout after the last round.
    layouts: std::collections::HashMap<PathBuf, u64>,
    tally: ReshardTally,
}

fn is_hash_round(round: u64) -> bool {
    round % 2 == 1
}

fn store_name(round: u64) -> String {
    let kind = if is_hash_round(round) { "hash" } else { "range" };
    format!("{kind}-{}", (round - 1) / ROUNDS_PER_STORE)
}

fn reshard_log(args: &ChildArgs) -> PathBuf {
    args.dir.join(format!("reshards-r{}", args.round))
}

/// A fingerprint of the layout in force: the partitioner and every shard's directory. Each
/// resharding changes it (a split or an add adds a directory, a move replaces one).
fn fingerprint(db: &ShardedDb) -> u64 {
    let mut text = format!("{:?}", db.partitioner());
    for i in 0..db.shard_count() {
        if let Some(s) = db.shard(i) {
            text.push('|');
            text.push_str(&s.path().display().to_string());
        }
    }
    text.bytes().fold(0, |h, b| mix(h ^ u64::from(b)))
}

/// The resharding operations, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Split,
    Add,
    Move,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Split => "split",
            Op::Add => "add",
            Op::Move => "move",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        [Op::Split, Op::Add, Op::Move].into_iter().find(|op| op.name() == s)
    }

    /// The shard count after the operation completed on `n` shards.
    fn shards_after(self, n: usize) -> usize {
        match self {
            Op::Split | Op::Add => n + 1,
            Op::Move => n,
        }
    }
}

/// Appends `line` to the resharding log of round `args.round`, opening it first.
fn log_line(
    log: &Mutex<Option<std::fs::File>>,
    args: &ChildArgs,
    line: &str,
) -> Result<(), String> {
    let path = reshard_log(args);
    let mut log = log.lock().map_err(|_| "resharding log lock poisoned".to_string())?;
    if log.is_none() {
        *log = Some(open_log(&path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    match log.as_mut() {
        Some(f) => append_line(f, line).map_err(|e| format!("{}: {e}", path.display())),
        None => Ok(()),
    }
}

impl ShardedSubject {
    /// The child's subject.
    pub(crate) fn child() -> ShardedSubject {
        ShardedSubject { child: true, ..ShardedSubject::default() }
    }

    fn log(&mut self, args: &ChildArgs, line: &str) -> Result<(), String> {
        log_line(&self.log, args, line)
    }

    /// Starts a resharding chosen by `dice`, logging it; a refusal is logged too.
    fn start(&mut self, db: &ShardedDb, args: &ChildArgs, dice: u64) -> Result<(), String> {
        let n = db.shard_count();
        let op = match dice % 4 {
            _ if n >= MAX_SHARDS => Op::Move,
            0 | 1 => Op::Split,
            2 => Op::Add,
            _ => Op::Move,
        };
        let shard = (mix(dice) % n as u64) as usize;
        self.fresh += 1;
        let fresh = args.dir.join(format!(
            "{}-extra-r{}-{}",
            store_name(args.round),
            args.round,
            self.fresh
        ));
        self.log(args, &format!("S {} {n} {}", op.name(), fingerprint(db)))?;
        let started = match op {
            Op::Split if !is_hash_round(args.round) && dice % 8 < 4 => {
                let (t, e) = (mix(dice ^ 1) % args.threads as u64, mix(dice ^ 2) % ENTITIES);
                db.split_shard_at(shard, format!("t{t:02}/e{e:02}"))
            }
            Op::Split => db.split_shard(shard),
            Op::Add => db.add_shard(fresh),
            Op::Move => db.move_shard(shard, fresh),
        };
        match started {
            Ok(job) => {
                self.running = Some(job);
                Ok(())
            }
            Err(Error::InvalidArgument(_) | Error::Busy) => self.log(args, "E"),
            Err(e) => Err(format!("{} of shard {shard} failed to start: {e}", op.name())),
        }
    }
}

impl Subject for ShardedSubject {
    type Store = ShardedDb;
    const TARGET: Target = Target::Sharded;

    fn workload(&self) -> Workload {
        Workload::Entities(ENTITIES)
    }

    fn store_dir(&self, args: &ChildArgs) -> PathBuf {
        args.dir.join(store_name(args.round))
    }

    fn open(&self, args: &ChildArgs) -> strata::Result<ShardedDb> {
        let partitioner = if is_hash_round(args.round) {
            Partitioner::Hash
        } else {
            Partitioner::Range(vec![format!("t{:02}", args.threads / 2).into_bytes()])
        };
        let mut opts = ShardedOptions::new(2)
            .partitioner(partitioner)
            .shard_key(ENTITY_SHARD_KEY)
            .engine(options());
        if self.child {
            let (log, args) = (Arc::clone(&self.log), args.clone());
            opts = opts.on_reshard_step(move |step| {
                // The parent's check relies on every step being logged.
                if let Err(e) = log_line(&log, &args, &format!("P {step:?}")) {
                    eprintln!("crashtest child: {e}");
                    std::process::exit(3);
                }
            });
        }
        ShardedDb::open(self.store_dir(args), opts)
    }

    fn child_tick(&mut self, db: &ShardedDb, args: &ChildArgs, tick: u64) -> Result<(), String> {
        let dice = mix(args.seed ^ mix(args.round ^ mix(tick ^ 0x5EA4D)));
        if let Some(job) = self.running.clone() {
            if !job.is_finished() {
                if dice.is_multiple_of(24) {
                    job.cancel();
                }
                return Ok(());
            }
            self.running = None;
            let result = job.wait();
            let phase = job.progress().phase;
            let code = match (&result, phase) {
                (Ok(()), ReshardPhase::Done) => "D",
                (Err(Error::Cancelled), _) => "C",
                _ => return Err(format!("a resharding ended in {phase:?}: {result:?}")),
            };
            return self.log(args, &format!("{code} {}", fingerprint(db)));
        }
        if dice.is_multiple_of(2) {
            self.start(db, args, dice >> 1)?;
        }
        Ok(())
    }

    fn verify(&mut self, db: &ShardedDb, got: &State, args: &ChildArgs) -> Result<(), String> {
        let store = self.store_dir(args);
        self.check_layout_history(db, args, &store)?;
        if let Some(job) = db.resharding() {
            job.wait().map_err(|e| format!("the resumed cleanup failed: {e}"))?;
        }
        if read_state(db)? != *got {
            return Err("the contents changed during the resumed cleanup".into());
        }
        check_placement(db)?;
        check_directories(db, &args.dir, &store)?;
        self.layouts.insert(store, fingerprint(db));
        remove_retired_stores(args);
        Ok(())
    }
}

impl ShardedSubject {
    /// Replays the child's resharding log against the reopened layout (module docs).
    fn check_layout_history(
        &mut self,
        db: &ShardedDb,
        args: &ChildArgs,
        store: &Path,
    ) -> Result<(), String> {
        let text = std::fs::read_to_string(reshard_log(args)).unwrap_or_default();
        let _ = std::fs::remove_file(reshard_log(args));
        let mut expected = self.layouts.get(store).copied();
        // The resharding running: its operation, shard count and layout before, and the
        // steps it reached (whether `Fenced`, whether `CutOver`, the last).
        let mut running: Option<(Op, usize, u64)> = None;
        let (mut fenced, mut cut_over, mut last_step) = (false, false, "Started".to_string());
        let parse_fp = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
        for line in text.lines() {
            let mut words = line.split(' ');
            match words.next() {
                Some("S") => {
                    let (Some(op), Some(n), Some(fp)) = (
                        words.next().and_then(Op::parse),
                        words.next().and_then(|n| n.parse().ok()),
                        parse_fp(words.next()),
                    ) else {
                        continue; // a torn last line: the resharding never started
                    };
                    if expected.is_some_and(|e| e != fp) {
                        return Err(format!(
                            "the child started a {} on a layout it never had",
                            op.name()
                        ));
                    }
                    running = Some((op, n, fp));
                    (fenced, cut_over, last_step) = (false, false, "Started".to_string());
                }
                Some("P") => {
                    let Some(step) = words.next() else { continue };
                    fenced |= step == "Fenced";
                    cut_over |= step == "CutOver";
                    last_step = step.to_string();
                }
                Some("E") => {
                    self.tally.refused += 1;
                    running = None;
                }
                Some(code @ ("D" | "C")) => {
                    let Some(fp) = parse_fp(words.next()) else { continue };
                    if code == "D" {
                        self.tally.completed += 1;
                    } else {
                        self.tally.cancelled += 1;
                    }
                    expected = Some(fp);
                    running = None;
                }
                _ => {} // a torn last line
            }
        }
        let now = fingerprint(db);
        if running.is_some() {
            *self.tally.killed_at.entry(last_step.clone()).or_default() += 1;
        }
        match running {
            Some((op, n, before)) if now == before => {
                self.tally.killed_before_cut_over += 1;
                if cut_over {
                    return Err(format!(
                        "a {} that had cut over was rolled back (last step {last_step})",
                        op.name()
                    ));
                }
                if db.shard_count() != n {
                    return Err(format!(
                        "rolled back to the old layout with {} shards, not {n}",
                        db.shard_count()
                    ));
                }
            }
            Some((op, n, _)) => {
                self.tally.killed_after_cut_over += 1;
                if !fenced {
                    return Err(format!(
                        "a {} took effect before its fence (last step {last_step})",
                        op.name()
                    ));
                }
                if db.shard_count() != op.shards_after(n) {
                    return Err(format!(
                        "a {} of {n} shards completed with {} shards",
                        op.name(),
                        db.shard_count()
                    ));
                }
            }
            None if expected.is_some_and(|e| e != now) => {
                return Err("the layout changed with no resharding running".into());
            }
            None => {}
        }
        Ok(())
    }
}

/// Once a new pair of databases has started, removes the pair before it (disk space).
fn remove_retired_stores(args: &ChildArgs) {
    let index = (args.round - 1) / ROUNDS_PER_STORE;
    if index == 0 || (args.round - 1) % ROUNDS_PER_STORE > 1 {
        return;
    }
    let retired = store_name(args.round - ROUNDS_PER_STORE);
    let _ = std::fs::remove_dir_all(args.dir.join(&retired));
    let extras = format!("{retired}-extra-");
    for entry in std::fs::read_dir(&args.dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&extras) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Every key lies on the shard it routes to (no stale copy survived the cleanup).
fn check_placement(db: &ShardedDb) -> Result<(), String> {
    for i in 0..db.shard_count() {
        let shard = db.shard(i).ok_or_else(|| format!("no shard {i}"))?;
        for item in shard.iter() {
            let (k, _) = item.map_err(|e| format!("scan of shard {i}: {e}"))?;
            if db.shard_of(&k) != i {
                return Err(format!(
                    "{} lies on shard {i} but routes to shard {}",
                    String::from_utf8_lossy(&k),
                    db.shard_of(&k)
                ));
            }
        }
    }
    Ok(())
}

/// Every shard directory of `store` that the layout does not name (under the root, or a
/// fresh directory of the campaign) holds no file.
fn check_directories(db: &ShardedDb, campaign: &Path, store: &Path) -> Result<(), String> {
    let live: Vec<PathBuf> =
        (0..db.shard_count()).filter_map(|i| db.shard(i)).map(|s| s.path().to_path_buf()).collect();
    let extra_prefix =
        format!("{}-extra-", store.file_name().and_then(|n| n.to_str()).unwrap_or(""));
    let mut candidates = Vec::new();
    for (dir, only_extra) in [(store, false), (campaign, true)] {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("list {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() && (!only_extra || name.starts_with(&extra_prefix)) {
                candidates.push(path);
            }
        }
    }
    for dir in candidates.iter().filter(|d| !live.contains(d)) {
        let files = std::fs::read_dir(dir).map_err(|e| format!("list {}: {e}", dir.display()))?;
        if let Some(f) = files.flatten().next() {
            return Err(format!(
                "{} is no shard's directory but still holds {}",
                dir.display(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child_args(dir: &Path) -> ChildArgs {
        ChildArgs { dir: dir.to_path_buf(), round: 1, seed: 1, threads: 2, target: Target::Sharded }
    }

    fn with_log(args: &ChildArgs, text: &str) {
        std::fs::write(reshard_log(args), text).unwrap();
    }

    /// The verifier itself: a layout that does not follow from the child's log is rejected.
    #[test]
    fn layout_history_rejects_what_the_log_does_not_allow() {
        let dir = tempfile::tempdir().unwrap();
        let args = child_args(dir.path());
        let mut subject = ShardedSubject::default();
        let store = subject.store_dir(&args);
        let db = subject.open(&args).unwrap();
        let before = fingerprint(&db);

        with_log(&args, &format!("S split 2 {before}\nP Journaled\n"));
        subject.check_layout_history(&db, &args, &store).unwrap();
        assert_eq!(subject.tally.killed_before_cut_over, 1);
        assert_eq!(subject.tally.killed_at.get("Journaled"), Some(&1));

        with_log(&args, &format!("S split 2 {before}\nP Fenced\nP CutOver\n"));
        let err = subject.check_layout_history(&db, &args, &store).unwrap_err();
        assert!(err.contains("had cut over was rolled back"), "{err}");

        subject.layouts.insert(store.clone(), before ^ 1);
        with_log(&args, "");
        let err = subject.check_layout_history(&db, &args, &store).unwrap_err();
        assert!(err.contains("no resharding running"), "{err}");
        subject.layouts.insert(store.clone(), before);

        db.split_shard(0).unwrap().wait().unwrap();
        with_log(&args, &format!("S split 2 {before}\nP Journaled\nP Flushed\n"));
        let err = subject.check_layout_history(&db, &args, &store).unwrap_err();
        assert!(err.contains("before its fence"), "{err}");
        with_log(&args, &format!("S move 2 {before}\nP Fenced\n"));
        let err = subject.check_layout_history(&db, &args, &store).unwrap_err();
        assert!(err.contains("completed with 3 shards"), "{err}");
        // The rejected rounds above were tallied too: a resharding ran in each.
        let tallied = subject.tally.killed_after_cut_over;
        with_log(&args, &format!("S split 2 {before}\nP Fenced\nP CutOver\nP Cleaned\n"));
        subject.check_layout_history(&db, &args, &store).unwrap();
        assert_eq!(subject.tally.killed_after_cut_over, tallied + 1);
        assert_eq!(subject.tally.killed_at.get("Cleaned"), Some(&1));
        db.close().unwrap();
    }

    /// A key on a shard it does not route to, and a file in a directory no shard owns, are
    /// found.
    #[test]
    fn stale_copies_and_leftover_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let args = child_args(dir.path());
        let subject = ShardedSubject::default();
        let store = subject.store_dir(&args);
        let db = subject.open(&args).unwrap();
        check_placement(&db).unwrap();
        check_directories(&db, dir.path(), &store).unwrap();

        let key = b"t00/e00/k0001";
        let wrong = 1 - db.shard_of(key);
        db.shard(wrong).unwrap().put(key, "stale").unwrap();
        let err = check_placement(&db).unwrap_err();
        assert!(err.contains("routes to shard"), "{err}");

        let leftover = dir.path().join(format!("{}-extra-r1-1", store_name(1)));
        std::fs::create_dir_all(&leftover).unwrap();
        check_directories(&db, dir.path(), &store).unwrap();
        std::fs::write(leftover.join("000001.log"), "x").unwrap();
        let err = check_directories(&db, dir.path(), &store).unwrap_err();
        assert!(err.contains("no shard's directory"), "{err}");
        db.close().unwrap();
    }
}
