//! Online resharding: splitting a shard, adding one, moving one to another directory, while
//! reads and writes go on.
//!
//! # The protocol
//! A resharding moves a set of keys (the *moved keys*) from source shards to one new
//! shard, then switches the routing. Every step that changes what a reopen would do is
//! journaled in the `SHARDS` file first (`docs/format/shards.md`):
//!
//! 1. **Journal.** `SHARDS` is rewritten with the old layout still in force and a
//!    `Copying` record naming the target layout and the new shard's directory. The new
//!    shard is created empty.
//! 2. **Capture.** For an instant the sources' gates are closed (writers of those shards
//!    wait), and the routing is swapped for one that carries a *capture*: from then on every
//!    write to a moved key, on its way through the facade, notes the key. Async writes
//!    queued before are waited for, then a snapshot of each source is taken. Every write is
//!    thus either in the snapshot or noted.
//! 3. **Copy.** The snapshot's moved keys are written to the new shard in batches, without
//!    its log (the new shard is flushed before it is referenced).
//! 4. **Catch up.** The noted keys are taken and their *current* values read from the
//!    sources (after the sources' async queues drained what was queued before) and written
//!    to the new shard; rounds repeat while many keys were noted. Reading the current value
//!    instead of replaying the noted write makes the order of notes irrelevant.
//! 5. **Flush** the new shard: everything copied so far is in synced tables. The writes
//!    made meanwhile are caught up through the new shard's log, each round ending with a
//!    synced write. Sources that keep keys (a split, an add) have their logs synced too,
//!    and again under the fence (step 6): the new shard holds their state as of the fence
//!    durably, so that state must be durable on them as well, or a power cut could keep
//!    part of a one-shard batch (found by the `reshard_crash` fuzz target).
//! 6. **Cut over.** The sources' gates are closed (the brief fence: writes to the sources
//!    wait; reads never do), async queues drained, the last noted keys copied with a synced
//!    write, and `SHARDS` rewritten with the target layout in force and a `Cleanup` record
//!    naming the sources that still hold moved keys. Then the routing is swapped and the
//!    gates open: writes to moved keys go to the new shard.
//! 7. **Clean up.** The moved keys are deleted from the sources (scans skip them meanwhile:
//!    the sources are marked dirty), the sources flushed, and `SHARDS` rewritten without the
//!    record. A moved shard's old directory is emptied when the database closes (snapshots
//!    and iterators made before the cut-over may still read it until then).
//!
//! # Crash analysis
//! * Before step 6's rename of `SHARDS`: a reopen finds `Copying`, empties the new shard's
//!   directory and drops the record. No acknowledged write is lost: until the cut-over
//!   every write went to the sources, through their own logs.
//! * After it: a reopen finds the target layout in force with `Cleanup`. The new shard
//!   holds every moved key as of the fence: the copies of steps 3-4 are in tables synced by
//!   step 5, and the final catch-up was a synced write, both before the rename. Writes after
//!   the cut-over went to the new shard's own log. Stale copies on the sources are never
//!   read (point reads route away from them, scans skip them) and cleanup resumes.
//! * A failed write of `SHARDS` during the cut-over leaves the disk holding either layout:
//!   the database refuses writes from then on (poisoned) so that neither can miss one, and
//!   the reopen decides as above.
//!
//! Reads stay correct throughout: a point read re-checks, after reading, that the routing
//! it used is still in force (and retries if not), so it never trusts a shard that a
//! cut-over or cleanup changed underneath it; iterators and snapshots read a fixed state of
//! the shards of the routing they were made under.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLockWriteGuard};
use strata_core::fs::FileSystem;
use strata_core::{Error, IoResultExt, Result};
use strata_wal::{Durability, WriteBatch};

use super::layout::{resolve, Layout, Migration, MigrationKind};
use super::partitioner::{halve_runs, Partitioner, PointRun, Router};
use super::{Routing, Shard, ShardedDb};
use crate::db::Db;

/// Entries per copy or cleanup batch.
const BATCH_ENTRIES: usize = 1024;
/// Bytes per copy batch (keys and values).
const BATCH_BYTES: usize = 1 << 20;
/// Catch-up rounds before the cut-over takes the rest under the fence.
const MAX_CATCH_UP_ROUNDS: usize = 8;
/// A round that noted fewer keys than this is the last before the fence.
const SMALL_ROUND: usize = 1024;

/// A point of a resharding where a test can act (cut the power, say): see
/// [`crate::ShardedOptions::on_reshard_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReshardStep {
    /// The `Copying` record is durable; the new shard is not created yet.
    Journaled,
    /// Writes to moved keys are being noted; the sources' snapshots are taken.
    Capturing,
    /// One more batch of the snapshot was copied to the new shard.
    CopiedBatch,
    /// One catch-up round was copied.
    CaughtUp,
    /// The new shard was flushed.
    Flushed,
    /// The fence is up: writes to the sources wait.
    Fenced,
    /// The target layout is durable and in force; the fence is down.
    CutOver,
    /// One batch of moved keys was deleted from a source.
    CleanedBatch,
    /// Cleanup is done and journaled.
    Cleaned,
}

/// What a resharding is doing, from [`Resharding::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReshardPhase {
    /// Copying the sources' snapshot to the new shard.
    Copying,
    /// Copying what was written to moved keys during the copy.
    CatchingUp,
    /// Switching the routing (writes to the sources wait for a moment).
    CuttingOver,
    /// The new layout is in force; the moved keys are being deleted from the sources.
    CleaningUp,
    /// Finished: the new layout is in force and clean.
    Done,
    /// Cancelled, or failed before the cut-over: rolled back, the old layout is in force.
    RolledBack,
    /// Failed after the cut-over (the new layout is in force; cleanup resumes at the next
    /// open), or failed to roll back (the next open does).
    Failed,
}

/// A snapshot of a resharding's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReshardProgress {
    /// Where it is.
    pub phase: ReshardPhase,
    /// Entries copied from the sources' snapshots.
    pub copied: u64,
    /// Keys copied again because they were written during the copy.
    pub caught_up: u64,
    /// Moved keys deleted from the sources.
    pub cleaned: u64,
    /// How long writes to the sources waited at the cut-over (the fence), once it is past.
    pub fence: Option<std::time::Duration>,
}

/// A running (or finished) resharding of a [`ShardedDb`]: from [`ShardedDb::split_shard`],
/// [`ShardedDb::add_shard`], [`ShardedDb::move_shard`]. Reads and writes continue while it
/// runs; [`Resharding::wait`] blocks until it ends. A cheap handle: clone it freely.
///
/// ```
/// use strata::{Partitioner, ReshardPhase, ShardedDb, ShardedOptions};
/// let dir = tempfile::tempdir()?;
/// let opts = ShardedOptions::new(1).partitioner(Partitioner::Range(vec![]));
/// let db = ShardedDb::open(dir.path(), opts)?;
/// for i in 0..1000u32 { db.put(format!("k{i:04}"), "v")?; }
/// let split = db.split_shard(0)?; // at the shard's median key
/// db.put("k0001", "written during the split")?;
/// split.wait()?;
/// assert_eq!(split.progress().phase, ReshardPhase::Done);
/// assert_eq!(db.shard_count(), 2);
/// assert_eq!(db.iter().count(), 1000);
/// assert_eq!(db.get("k0001")?.as_deref(), Some(&b"written during the split"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Resharding {
    job: Arc<Job>,
}

impl std::fmt::Debug for Resharding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resharding").field("progress", &self.progress()).finish()
    }
}

#[derive(Default)]
struct Job {
    state: Mutex<JobState>,
    ended: Condvar,
    cancel: AtomicBool,
    copied: AtomicU64,
    caught_up: AtomicU64,
    cleaned: AtomicU64,
    fence: Mutex<Option<std::time::Duration>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct JobState {
    phase: ReshardPhase,
    result: Option<Result<()>>,
}

impl Default for JobState {
    fn default() -> Self {
        JobState { phase: ReshardPhase::Copying, result: None }
    }
}

impl Job {
    fn set_phase(&self, phase: ReshardPhase) {
        self.state.lock().phase = phase;
    }

    fn finish(&self, phase: ReshardPhase, result: Result<()>) {
        let mut s = self.state.lock();
        s.phase = phase;
        s.result = Some(result);
        self.ended.notify_all();
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancel.load(Ordering::Acquire) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

impl Resharding {
    /// Where the resharding is and how many keys it has handled.
    pub fn progress(&self) -> ReshardProgress {
        ReshardProgress {
            phase: self.job.state.lock().phase,
            copied: self.job.copied.load(Ordering::Relaxed),
            caught_up: self.job.caught_up.load(Ordering::Relaxed),
            cleaned: self.job.cleaned.load(Ordering::Relaxed),
            fence: *self.job.fence.lock(),
        }
    }

    /// Whether it has ended (done, rolled back or failed).
    pub fn is_finished(&self) -> bool {
        self.job.state.lock().result.is_some()
    }

    /// Blocks until the resharding ends. `Ok` once the new layout is in force and clean;
    /// [`Error::Cancelled`] if it was cancelled (the old layout is in force); otherwise the
    /// error that stopped it (see [`ReshardPhase::Failed`] for where that leaves the
    /// layout).
    pub fn wait(&self) -> Result<()> {
        let mut s = self.job.state.lock();
        loop {
            if let Some(r) = &s.result {
                let r = r.clone();
                drop(s);
                if let Some(t) = self.job.thread.lock().take() {
                    let _ = t.join();
                }
                return r;
            }
            self.job.ended.wait(&mut s);
        }
    }

    /// Asks the resharding to stop. Before the cut-over it rolls back (nothing of it
    /// remains); once the new layout is in force, cancelling has no effect on routing and
    /// only stops the cleanup early (the next open resumes it).
    ///
    /// ```
    /// use strata::{Error, Partitioner, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let opts = ShardedOptions::new(1).partitioner(Partitioner::Range(vec![]));
    /// let db = ShardedDb::open(dir.path(), opts)?;
    /// for i in 0..100u32 { db.put(format!("k{i:03}"), "v")?; }
    /// let split = db.split_shard(0)?;
    /// split.cancel();
    /// match split.wait() {
    ///     Err(Error::Cancelled) => assert_eq!(db.shard_count(), 1), // rolled back
    ///     Ok(()) => assert_eq!(db.shard_count(), 2),                // it was quicker
    ///     Err(e) => return Err(e.into()),
    /// }
    /// assert_eq!(db.iter().count(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) {
        self.job.cancel.store(true, Ordering::Release);
    }
}

/// Which keys leave their shard.
#[derive(Debug, Clone)]
enum Moves {
    /// Keys whose shard under the target router is not the source's own index there
    /// (`old_to_new[source]`): a split or an added shard.
    Route { target: Router, old_to_new: Vec<usize> },
    /// Every key of this shard: a move.
    Whole(usize),
}

impl Moves {
    fn moves(&self, shard: usize, key: &[u8]) -> bool {
        match self {
            Moves::Route { target, old_to_new } => {
                old_to_new.get(shard).is_some_and(|&own| target.shard_for(key) != own)
            }
            Moves::Whole(s) => *s == shard,
        }
    }
}

/// The writes a copying resharding must catch up on: every key written to a moved key of a
/// source since its snapshot, with the source it was written to.
pub(crate) struct Capture {
    moves: Moves,
    noted: Mutex<BTreeMap<Vec<u8>, usize>>,
}

impl Capture {
    /// Notes a write of `key` on `shard` (under the routing that carries this capture).
    pub(crate) fn note(&self, shard: usize, key: &[u8]) {
        if self.moves.moves(shard, key) {
            self.noted.lock().insert(key.to_vec(), shard);
        }
    }

    fn take(&self) -> BTreeMap<Vec<u8>, usize> {
        std::mem::take(&mut *self.noted.lock())
    }
}

/// A resharding worked out: the layout it leads to and which keys go where.
struct Plan {
    kind: MigrationKind,
    /// The layout after the cut-over (its migration record is set then).
    target: Layout,
    /// Shards (by index before the cut-over) that give up keys.
    sources: Vec<usize>,
    /// The new shard's index in the target, and its directory as recorded.
    new_index: usize,
    new_path: PathBuf,
    moves: Moves,
}

/// The dirty flags of a layout's routing: the shards its cleanup record names.
pub(crate) fn dirty_flags(layout: &Layout) -> Vec<bool> {
    let mut dirty = vec![false; layout.shards()];
    if let Some(Migration::Cleanup { dirty: d }) = &layout.migration {
        for &i in d {
            if let Some(f) = dirty.get_mut(i as usize) {
                *f = true;
            }
        }
    }
    dirty
}

/// Deletes every file of a shard directory that is leaving (an interrupted copy's target,
/// a moved shard's old home) and syncs the directory. The empty directory stays.
fn empty_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    if !fs.exists(dir).ctx("stat", dir)? {
        return Ok(());
    }
    for name in fs.list(dir).ctx("list", dir)? {
        let path = dir.join(&name);
        fs.remove(&path).ctx("remove", &path)?;
    }
    fs.sync_dir(dir).ctx("fsync directory", dir)
}

/// At open: finishes what a crash interrupted. A `Copying` record is rolled back (the
/// new shard's directory emptied, the record dropped); orphaned directories are emptied; a
/// `Cleanup` record stays (its dirty shards are cleaned once the shards are open).
pub(crate) fn recover(fs: &dyn FileSystem, root: &Path, mut layout: Layout) -> Result<Layout> {
    match layout.migration.take() {
        None => {}
        Some(Migration::Copying { new_dirs, .. }) => {
            for d in &new_dirs {
                empty_dir(fs, &resolve(root, d))?;
            }
            layout.store(fs, root)?;
        }
        Some(cleanup @ Migration::Cleanup { .. }) => layout.migration = Some(cleanup),
    }
    if !layout.orphans.is_empty() {
        for d in &layout.orphans {
            empty_dir(fs, &resolve(root, d))?;
        }
        layout.orphans.clear();
        layout.store(fs, root)?;
    }
    Ok(layout)
}

/// At close: empties the directories of shards that left the layout and drops them from
/// the layout file (their databases must be closed).
pub(crate) fn remove_orphans(fs: &dyn FileSystem, root: &Path) -> Result<()> {
    let Some(mut layout) = Layout::load(fs, root)? else { return Ok(()) };
    if layout.orphans.is_empty() {
        return Ok(());
    }
    for d in &layout.orphans {
        empty_dir(fs, &resolve(root, d))?;
    }
    layout.orphans.clear();
    layout.store(fs, root)
}

/// A free default directory name for a new shard: `shard-NNN`, the first NNN no shard
/// uses and no non-empty directory holds.
fn free_shard_path(fs: &dyn FileSystem, root: &Path, layout: &Layout) -> Result<PathBuf> {
    for n in 0.. {
        let p = PathBuf::from(format!("shard-{n:03}"));
        if layout.paths.contains(&p) {
            continue;
        }
        let dir = root.join(&p);
        if !fs.exists(&dir).ctx("stat", &dir)? || fs.list(&dir).ctx("list", &dir)?.is_empty() {
            return Ok(p);
        }
    }
    Err(Error::Internal("no free shard directory name".into()))
}

/// The most a shard count may grow to.
fn check_room(layout: &Layout) -> Result<()> {
    if layout.shards() >= super::MAX_SHARDS {
        return Err(Error::InvalidArgument(format!(
            "a sharded database has at most {} shards",
            super::MAX_SHARDS
        )));
    }
    Ok(())
}

impl ShardedDb {
    /// Splits shard `shard` in two while reads and writes continue, in the background.
    /// Under [`Partitioner::Range`] it splits at the shard's median shard key (the shards
    /// after it are renumbered up by one); under [`Partitioner::Hash`] the new shard
    /// (numbered last) takes half of the shard's ring points, hence about half its keys. The
    /// new shard lives in a new `shard-NNN` directory under the root.
    ///
    /// Returns at once with a handle to await, watch or cancel the split. One resharding
    /// runs at a time: another while one runs is [`Error::Busy`]. See the module
    /// documentation of `reshard.rs` (and `docs/design.md`) for the protocol and what a
    /// crash at any step leaves. Writes to the shard pause for a moment at the cut-over;
    /// reads never do. A transaction that spans the cut-over gets [`Error::Conflict`].
    ///
    /// ```
    /// use strata::{ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?; // hash-partitioned
    /// for i in 0..2000u32 { db.put(i.to_be_bytes(), "v")?; }
    /// let before = db.shard(0).unwrap().iter().count();
    /// db.split_shard(0)?.wait()?;
    /// assert_eq!(db.shard_count(), 3);
    /// let (kept, took) = (db.shard(0).unwrap().iter().count(), db.shard(2).unwrap().iter().count());
    /// assert_eq!(kept + took, before);
    /// assert_eq!(db.iter().count(), 2000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn split_shard(&self, shard: usize) -> Result<Resharding> {
        self.start_reshard(|db, routing| db.plan_split(routing, shard, None))
    }

    /// [`ShardedDb::split_shard`] at a chosen shard key, under [`Partitioner::Range`]:
    /// keys whose shard key is at or above `at` go to the new shard (numbered `shard + 1`).
    /// `at` must lie strictly inside the shard's range; under `Hash` this is
    /// [`Error::InvalidArgument`].
    ///
    /// ```
    /// use strata::{Partitioner, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"m".to_vec()])))?;
    /// db.split_shard_at(1, "t")?.wait()?;
    /// assert_eq!(db.partitioner(), Partitioner::Range(vec![b"m".to_vec(), b"t".to_vec()]));
    /// assert_eq!(db.shard_of("u"), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn split_shard_at(&self, shard: usize, at: impl AsRef<[u8]>) -> Result<Resharding> {
        let at = at.as_ref().to_vec();
        self.start_reshard(move |db, routing| db.plan_split(routing, shard, Some(at)))
    }

    /// Adds a shard in directory `path` (relative paths are relative to the root), in the
    /// background. Under [`Partitioner::Hash`] the new shard gets a fresh set of ring points
    /// as many as an average shard's, so it takes about 1/(N+1) of the keys, evenly from
    /// every shard; under [`Partitioner::Range`] it takes the upper half of the largest
    /// shard (by bytes), split at its median. `path` must not hold anything yet.
    ///
    /// ```
    /// use strata::{ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(3))?;
    /// for i in 0..3000u32 { db.put(i.to_be_bytes(), "v")?; }
    /// db.add_shard(dir.path().join("extra"))?.wait()?;
    /// assert_eq!(db.shard_count(), 4);
    /// let moved = db.shard(3).unwrap().iter().count();
    /// assert!(moved > 300 && moved < 1500, "{moved}"); // about a quarter
    /// assert_eq!(db.iter().count(), 3000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_shard(&self, path: impl Into<PathBuf>) -> Result<Resharding> {
        let path = path.into();
        self.start_reshard(move |db, routing| db.plan_add(routing, path))
    }

    /// Moves shard `shard` to directory `path` (another disk, say), in the background: its
    /// keys are copied there, the routing switches, and the old directory is emptied when
    /// the database closes (until then snapshots and iterators made before the switch may
    /// still read it). `path` must not hold anything yet.
    ///
    /// ```
    /// use strata::{ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// for i in 0..100u32 { db.put(i.to_be_bytes(), "v")?; }
    /// let elsewhere = dir.path().join("fast-disk");
    /// db.move_shard(1, &elsewhere)?.wait()?;
    /// assert_eq!(db.shard(1).unwrap().path(), elsewhere);
    /// assert_eq!(db.iter().count(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn move_shard(&self, shard: usize, path: impl Into<PathBuf>) -> Result<Resharding> {
        let path = path.into();
        self.start_reshard(move |db, routing| db.plan_move(routing, shard, path))
    }

    /// The resharding running or last run, if any.
    pub fn resharding(&self) -> Option<Resharding> {
        self.inner.reshard.lock().clone()
    }

    fn start_reshard(
        &self,
        plan: impl FnOnce(&ShardedDb, &Routing) -> Result<Plan>,
    ) -> Result<Resharding> {
        self.check_writable()?;
        let mut slot = self.inner.reshard.lock();
        if slot.as_ref().is_some_and(|r| !r.is_finished()) {
            return Err(Error::Busy);
        }
        let routing = self.routing();
        if routing.layout.migration.is_some() {
            return Err(Error::Busy); // the previous one's cleanup is still pending
        }
        let plan = plan(self, &routing)?;
        check_room(&routing.layout)?;
        let fs = Arc::clone(&self.inner.options.engine.fs);
        let new_dir = resolve(&self.inner.root, &plan.new_path);
        if fs.exists(&new_dir).ctx("stat", &new_dir)?
            && !fs.list(&new_dir).ctx("list", &new_dir)?.is_empty()
        {
            return Err(Error::InvalidArgument(format!(
                "the new shard's directory {} is not empty",
                new_dir.display()
            )));
        }
        if routing.shards.iter().any(|s| s.db.path() == new_dir) {
            return Err(Error::InvalidArgument(format!(
                "{} is already a shard's directory",
                new_dir.display()
            )));
        }
        let mut journal = routing.layout.clone();
        journal.migration = Some(Migration::Copying {
            kind: plan.kind,
            target: Box::new(plan.target.clone()),
            new_dirs: vec![plan.new_path.clone()],
        });
        journal.store(fs.as_ref(), &self.inner.root)?;
        drop(routing);
        let job = Arc::new(Job::default());
        let handle = Resharding { job: Arc::clone(&job) };
        let db = self.clone();
        let thread = std::thread::Builder::new()
            .name("strata-reshard".into())
            .spawn(move || db.run_reshard(plan, new_dir, &job))
            .map_err(|e| Error::io("spawn resharding thread", &self.inner.root, e))?;
        *handle.job.thread.lock() = Some(thread);
        *slot = Some(handle.clone());
        Ok(handle)
    }

    fn plan_split(&self, routing: &Routing, shard: usize, at: Option<Vec<u8>>) -> Result<Plan> {
        let layout = &routing.layout;
        if shard >= layout.shards() {
            return Err(Error::InvalidArgument(format!(
                "no shard {shard}: the database has {}",
                layout.shards()
            )));
        }
        let fs = self.inner.options.engine.fs.as_ref();
        let new_path = free_shard_path(fs, &self.inner.root, layout)?;
        let mut target = layout.clone();
        target.generation += 1;
        target.migration = None;
        let n = layout.shards();
        let (new_index, old_to_new) = match &layout.partitioner {
            Partitioner::Hash => {
                if at.is_some() {
                    return Err(Error::InvalidArgument(
                        "a hash-partitioned shard splits by ring points, not at a key".into(),
                    ));
                }
                let runs = layout.ring.get(shard).map_or(&[][..], Vec::as_slice);
                let Some((keep, give)) = halve_runs(runs) else {
                    return Err(Error::InvalidArgument(format!(
                        "shard {shard} owns a single ring point and cannot split"
                    )));
                };
                target.ring[shard] = keep;
                target.ring.push(give);
                target.paths.push(new_path.clone());
                (n, (0..n).collect())
            }
            Partitioner::Range(splits) => {
                let lo = shard.checked_sub(1).and_then(|i| splits.get(i));
                let hi = splits.get(shard);
                let at = match at {
                    Some(at) => at,
                    None => self.median_shard_key(routing, shard)?,
                };
                let inside = lo.is_none_or(|lo| at > *lo) && hi.is_none_or(|hi| at < *hi);
                if at.is_empty() || !inside {
                    return Err(Error::InvalidArgument(format!(
                        "split point {at:?} is not strictly inside shard {shard}'s range"
                    )));
                }
                let mut new_splits = splits.clone();
                new_splits.insert(shard, at);
                target.partitioner = Partitioner::Range(new_splits);
                target.paths.insert(shard + 1, new_path.clone());
                (shard + 1, (0..n).map(|i| if i <= shard { i } else { i + 1 }).collect())
            }
        };
        let moves = Moves::Route {
            target: Router::new(&target, self.inner.options.shard_key.clone()),
            old_to_new,
        };
        Ok(Plan {
            kind: MigrationKind::Split,
            target,
            sources: vec![shard],
            new_index,
            new_path,
            moves,
        })
    }

    /// The shard key of shard `shard`'s median key (by count), above the shard's first
    /// shard key, so that a split there leaves keys on both sides.
    fn median_shard_key(&self, routing: &Routing, shard: usize) -> Result<Vec<u8>> {
        let db = &routing.shard(shard)?.db;
        let snap = db.snapshot();
        let mut count = 0usize;
        for item in snap.iter() {
            item?;
            count += 1;
        }
        let mut first: Option<Vec<u8>> = None;
        for (i, item) in snap.iter().enumerate() {
            let (k, _) = item?;
            let sk = routing.router.shard_key_of(&k).to_vec();
            match &first {
                None => first = Some(sk),
                Some(f) if i >= count / 2 && sk > *f => return Ok(sk),
                Some(_) => {}
            }
        }
        Err(Error::InvalidArgument(format!(
            "shard {shard} holds {count} keys with fewer than two shard keys: nothing to split"
        )))
    }

    fn plan_add(&self, routing: &Routing, path: PathBuf) -> Result<Plan> {
        let layout = &routing.layout;
        if let Partitioner::Range(_) = layout.partitioner {
            // The largest shard by bytes gives its upper half.
            let size = |s: &Arc<Shard>| {
                let m = s.db.metrics();
                m.table_bytes() + m.memtable_bytes + m.immutable_bytes
            };
            let largest = (0..routing.shards.len())
                .max_by_key(|&i| routing.shards.get(i).map_or(0, size))
                .unwrap_or(0);
            let mut plan = self.plan_split(routing, largest, None)?;
            plan.kind = MigrationKind::Add;
            if let Some(p) = plan.target.paths.get_mut(plan.new_index) {
                *p = path.clone();
            }
            plan.new_path = path;
            return Ok(plan);
        }
        let n = layout.shards();
        let total: u64 = layout.ring.iter().flatten().map(|r| u64::from(r.count)).sum();
        let count = u32::try_from((total / n as u64).max(1)).unwrap_or(u32::MAX);
        let seed = layout.ring.iter().flatten().map(|r| r.seed).max().map_or(0, |s| s + 1);
        let mut target = layout.clone();
        target.generation += 1;
        target.migration = None;
        target.ring.push(vec![PointRun { seed, first: 0, count }]);
        target.paths.push(path.clone());
        let moves = Moves::Route {
            target: Router::new(&target, self.inner.options.shard_key.clone()),
            old_to_new: (0..n).collect(),
        };
        Ok(Plan {
            kind: MigrationKind::Add,
            target,
            sources: (0..n).collect(),
            new_index: n,
            new_path: path,
            moves,
        })
    }

    fn plan_move(&self, routing: &Routing, shard: usize, path: PathBuf) -> Result<Plan> {
        let layout = &routing.layout;
        if shard >= layout.shards() {
            return Err(Error::InvalidArgument(format!(
                "no shard {shard}: the database has {}",
                layout.shards()
            )));
        }
        let mut target = layout.clone();
        target.generation += 1;
        target.migration = None;
        if let Some(p) = target.paths.get_mut(shard) {
            *p = path.clone();
        }
        Ok(Plan {
            kind: MigrationKind::Move,
            target,
            sources: vec![shard],
            new_index: shard,
            new_path: path,
            moves: Moves::Whole(shard),
        })
    }

    /// The resharding thread: copy and cut over, then clean up; roll back on a failure
    /// before the cut-over.
    fn run_reshard(&self, plan: Plan, new_dir: PathBuf, job: &Job) {
        self.step(ReshardStep::Journaled);
        let new_db = match Db::open(&new_dir, self.inner.options.engine.clone()) {
            Ok(db) => db,
            Err(e) => return self.roll_back(None, &new_dir, job, e),
        };
        match self.copy_and_cut_over(&plan, &new_db, job) {
            Ok(()) => {}
            Err(CutOverError::Before(e)) => return self.roll_back(Some(&new_db), &new_dir, job, e),
            Err(CutOverError::Unknown(e)) => return job.finish(ReshardPhase::Failed, Err(e)),
        }
        job.set_phase(ReshardPhase::CleaningUp);
        match self.clean_up(job) {
            Ok(()) => job.finish(ReshardPhase::Done, Ok(())),
            Err(e) => job.finish(ReshardPhase::Failed, Err(e)),
        }
    }

    fn step(&self, step: ReshardStep) {
        if let Some(hook) = &self.inner.options.reshard_hook {
            hook(step);
        }
    }

    /// Undoes a resharding that failed or was cancelled before its cut-over.
    fn roll_back(&self, new_db: Option<&Db>, new_dir: &Path, job: &Job, e: Error) {
        // Writers may still note keys into the capture; nobody reads it any more.
        let routing = self.routing();
        self.swap_routing(&routing, |r| r.capture = None);
        let fs = self.inner.options.engine.fs.as_ref();
        let undone =
            new_db.map_or(Ok(()), Db::close).and_then(|()| empty_dir(fs, new_dir)).and_then(|()| {
                let mut layout = routing.layout.clone();
                layout.migration = None;
                layout.store(fs, &self.inner.root)
            });
        match undone {
            Ok(()) => job.finish(ReshardPhase::RolledBack, Err(e)),
            // The journal still says `Copying`: the next open rolls back.
            Err(_) => job.finish(ReshardPhase::Failed, Err(e)),
        }
    }

    /// Publishes a routing made from `from` by `change`, with the next epoch.
    fn swap_routing(&self, from: &Routing, change: impl FnOnce(&mut Routing)) {
        let mut next = Routing {
            epoch: from.epoch + 1,
            layout: from.layout.clone(),
            router: from.router.clone(),
            shards: from.shards.clone(),
            dirty: from.dirty.clone(),
            capture: from.capture.clone(),
        };
        change(&mut next);
        let epoch = next.epoch;
        self.inner.routing.store(Arc::new(next));
        self.inner.epoch.store(epoch, Ordering::Release);
    }

    /// Closes the gates of `sources` (ascending): writers of those shards wait until the
    /// guards drop. Async writes already queued on them are waited for.
    fn fence<'a>(routing: &'a Routing, sources: &[usize]) -> Result<Vec<RwLockWriteGuard<'a, ()>>> {
        let mut gates = Vec::with_capacity(sources.len());
        for &i in sources {
            gates.push(routing.shard(i)?.gate.write());
        }
        for &i in sources {
            routing.shard(i)?.db.async_barrier();
        }
        Ok(gates)
    }

    fn copy_and_cut_over(
        &self,
        plan: &Plan,
        new_db: &Db,
        job: &Job,
    ) -> std::result::Result<(), CutOverError> {
        let before = CutOverError::Before;
        // Capture: from the swap on, every write to a moved key is noted.
        let capture = Arc::new(Capture { moves: plan.moves.clone(), noted: Mutex::default() });
        let snapshots = {
            let routing = self.routing();
            let gates = Self::fence(&routing, &plan.sources).map_err(before)?;
            self.swap_routing(&routing, |r| r.capture = Some(Arc::clone(&capture)));
            drop(gates);
            plan.sources
                .iter()
                .map(|&i| routing.shard(i).map(|s| (i, s.db.snapshot())))
                .collect::<Result<Vec<_>>>()
                .map_err(before)?
        };
        self.step(ReshardStep::Capturing);
        // Copy the snapshots' moved keys.
        let mut batch = WriteBatch::new();
        for (i, snap) in &snapshots {
            // Under an ordered range router the moved keys of a split lie at or above the
            // split point (a shard key never sorts above its key): skip what stays.
            let from = match (&plan.moves, &plan.target.partitioner) {
                (Moves::Route { target, .. }, Partitioner::Range(_)) => {
                    target.owned_range(plan.new_index).and_then(|(lo, _)| lo.map(<[u8]>::to_vec))
                }
                _ => None,
            };
            let iter = match from {
                Some(from) => snap.range(from..),
                None => snap.iter(),
            };
            for item in iter {
                let (k, v) = item.map_err(before)?;
                if !plan.moves.moves(*i, &k) {
                    continue;
                }
                batch.put(&k, &v);
                if batch.len() >= BATCH_ENTRIES || batch.size_in_bytes() >= BATCH_BYTES {
                    self.copy_batch(new_db, &mut batch, Durability::None, &job.copied)
                        .map_err(before)?;
                    self.step(ReshardStep::CopiedBatch);
                    job.check_cancelled().map_err(before)?;
                }
            }
        }
        self.copy_batch(new_db, &mut batch, Durability::None, &job.copied).map_err(before)?;
        drop(snapshots);
        // Catch up with the writes made meanwhile, while they are many.
        job.set_phase(ReshardPhase::CatchingUp);
        self.catch_up_rounds(plan, &capture, new_db, Durability::None, SMALL_ROUND, job)
            .map_err(before)?;
        new_db.flush().map_err(before)?;
        // Sources that keep some of their keys make their writes durable too, here and
        // (what came since) under the fence: see `sync_sources`.
        self.sync_sources(plan).map_err(before)?;
        self.step(ReshardStep::Flushed);
        job.check_cancelled().map_err(before)?;
        // The writes made during the flush, now through the new shard's log (a synced last
        // batch per round), so that the fence has only the last moments' writes left.
        self.catch_up_rounds(plan, &capture, new_db, Durability::Sync, SMALL_ROUND / 8, job)
            .map_err(before)?;
        // Cut over under the fence.
        job.set_phase(ReshardPhase::CuttingOver);
        let routing = self.routing();
        let fenced_at = std::time::Instant::now();
        let gates = Self::fence(&routing, &plan.sources).map_err(before)?;
        self.step(ReshardStep::Fenced);
        let noted = capture.take();
        self.catch_up(&routing, noted, new_db, Durability::Sync, job).map_err(before)?;
        self.sync_sources(plan).map_err(before)?;
        let mut shards = routing.shards.clone();
        let new_shard = Shard::new(new_db.clone(), self.inner.options.clock.as_ref());
        let mut retired = None;
        let dirty: Vec<u32> = match &plan.moves {
            Moves::Whole(i) => {
                retired = shards.get(*i).map(|s| s.db.clone());
                if let Some(slot) = shards.get_mut(*i) {
                    *slot = new_shard;
                }
                Vec::new()
            }
            Moves::Route { old_to_new, .. } => {
                shards.insert(plan.new_index.min(shards.len()), new_shard);
                plan.sources.iter().filter_map(|&s| old_to_new.get(s)).map(|&i| i as u32).collect()
            }
        };
        let mut target = plan.target.clone();
        target.orphans = routing.layout.orphans.clone();
        if let (Moves::Whole(_), Some(old)) =
            (&plan.moves, routing.layout.paths.get(plan.new_index))
        {
            target.orphans.push(old.clone());
        }
        target.migration = (!dirty.is_empty()).then_some(Migration::Cleanup { dirty });
        if let Err(e) = target.store(self.inner.options.engine.fs.as_ref(), &self.inner.root) {
            // Either layout may be on disk now: refuse writes until a reopen decides.
            *self.inner.poisoned.lock() = Some(e.clone());
            self.inner.is_poisoned.store(true, Ordering::Release);
            self.swap_routing(&routing, |r| r.capture = None);
            drop(gates);
            return Err(CutOverError::Unknown(e));
        }
        let dirty = dirty_flags(&target);
        self.swap_routing(&routing, |r| {
            r.router = Router::new(&target, self.inner.options.shard_key.clone());
            r.layout = target;
            r.shards = shards;
            r.dirty = dirty;
            r.capture = None;
        });
        drop(gates);
        *job.fence.lock() = Some(fenced_at.elapsed());
        if let Some(db) = retired {
            self.inner.retired.lock().push(db);
        }
        self.step(ReshardStep::CutOver);
        Ok(())
    }

    /// Makes everything written to the sources so far durable (one log sync each), when
    /// they keep some keys (a split or an add). The new shard gets the moved keys' state as of the fence durably,
    /// unsynced source writes included; without this, a power cut after the cut-over could
    /// keep a `Buffered` write's moved keys and lose its other keys from the source's log
    /// tail: half of a one-shard batch, or a later write without an earlier one. A move
    /// takes the whole shard, so its source needs nothing.
    fn sync_sources(&self, plan: &Plan) -> Result<()> {
        if let Moves::Route { .. } = plan.moves {
            let routing = self.routing();
            for &i in &plan.sources {
                routing.shard(i)?.db.sync_log()?;
            }
        }
        Ok(())
    }

    /// Catch-up rounds (sources' async queues drained first, then the noted keys copied
    /// with `durability`) until a round notes fewer than `small` keys, at most
    /// [`MAX_CATCH_UP_ROUNDS`].
    fn catch_up_rounds(
        &self,
        plan: &Plan,
        capture: &Capture,
        new_db: &Db,
        durability: Durability,
        small: usize,
        job: &Job,
    ) -> Result<()> {
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            let routing = self.routing();
            let noted = capture.take();
            let n = noted.len();
            for &i in &plan.sources {
                routing.shard(i)?.db.async_barrier();
            }
            self.catch_up(&routing, noted, new_db, durability, job)?;
            self.step(ReshardStep::CaughtUp);
            job.check_cancelled()?;
            if n < small {
                break;
            }
        }
        Ok(())
    }

    /// Writes the batch (if any) to the new shard and counts it.
    fn copy_batch(
        &self,
        new_db: &Db,
        batch: &mut WriteBatch,
        durability: Durability,
        counter: &AtomicU64,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(batch);
        let n = b.len() as u64;
        new_db.write_with(b, durability)?;
        counter.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Copies the current value of every noted key (or its absence) from its source.
    fn catch_up(
        &self,
        routing: &Routing,
        noted: BTreeMap<Vec<u8>, usize>,
        new_db: &Db,
        durability: Durability,
        job: &Job,
    ) -> Result<()> {
        let mut batch = WriteBatch::new();
        let total = noted.len();
        for (n, (key, source)) in noted.into_iter().enumerate() {
            match routing.shard(source)?.db.get(&key)? {
                Some(v) => batch.put(&key, &v),
                None => batch.delete(&key),
            }
            let last = n + 1 == total;
            if last || batch.len() >= BATCH_ENTRIES || batch.size_in_bytes() >= BATCH_BYTES {
                // Only the last batch needs the requested durability: a synced write makes
                // the log durable up to it.
                let d = match durability {
                    Durability::None => Durability::None,
                    _ if last => durability,
                    _ => Durability::Buffered,
                };
                self.copy_batch(new_db, &mut batch, d, &job.caught_up)?;
            }
        }
        Ok(())
    }

    /// Deletes from every dirty shard the keys the router sends elsewhere, flushes it, and
    /// journals the clean layout.
    fn clean_up(&self, job: &Job) -> Result<()> {
        let routing = self.inner.routing.load_full();
        let dirty: Vec<usize> =
            (0..routing.shards.len()).filter(|&i| routing.is_dirty(i)).collect();
        for &i in &dirty {
            let db = &routing.shard(i)?.db;
            let mut batch = WriteBatch::new();
            let snap = db.snapshot();
            // Under an ordered range router only keys outside the shard's own range can be
            // foreign: scan below and above it, not through it.
            let scans: Vec<crate::Iter> = match routing.router.owned_range(i) {
                Some((lo, hi)) => {
                    let below = lo.map(|lo| snap.range(..lo.to_vec()));
                    let above = hi.map(|hi| snap.range(hi.to_vec()..));
                    below.into_iter().chain(above).collect()
                }
                None => vec![snap.iter()],
            };
            for item in scans.into_iter().flatten() {
                let (k, _) = item?;
                if routing.router.shard_for(&k) == i {
                    continue;
                }
                batch.delete(&k);
                if batch.len() >= BATCH_ENTRIES {
                    self.copy_batch(db, &mut batch, Durability::None, &job.cleaned)?;
                    self.step(ReshardStep::CleanedBatch);
                    job.check_cancelled()?;
                }
            }
            self.copy_batch(db, &mut batch, Durability::None, &job.cleaned)?;
            db.flush()?;
        }
        let mut layout = routing.layout.clone();
        if layout.migration.take().is_some() {
            layout.store(self.inner.options.engine.fs.as_ref(), &self.inner.root)?;
        }
        let current = self.routing();
        self.swap_routing(&current, |r| {
            r.dirty = vec![false; r.shards.len()];
            r.layout = layout;
        });
        self.step(ReshardStep::Cleaned);
        Ok(())
    }

    /// At open: resumes the cleanup a crash interrupted, in the background.
    pub(crate) fn resume_cleanup(&self) {
        let routing = self.routing();
        if !routing.dirty.iter().any(|&d| d) || self.inner.read_only {
            return;
        }
        drop(routing);
        let job = Arc::new(Job::default());
        job.set_phase(ReshardPhase::CleaningUp);
        let handle = Resharding { job: Arc::clone(&job) };
        let db = self.clone();
        let spawned = std::thread::Builder::new().name("strata-reshard".into()).spawn(move || {
            match db.clean_up(&job) {
                Ok(()) => job.finish(ReshardPhase::Done, Ok(())),
                Err(e) => job.finish(ReshardPhase::Failed, Err(e)),
            }
        });
        match spawned {
            Ok(t) => *handle.job.thread.lock() = Some(t),
            // Reads skip the stale keys anyway; the next open tries again.
            Err(e) => handle.job.finish(
                ReshardPhase::Failed,
                Err(Error::io("spawn resharding thread", &self.inner.root, e)),
            ),
        }
        *self.inner.reshard.lock() = Some(handle);
    }
}

/// How a copy-and-cut-over failed: before the cut-over (roll back), or while writing the
/// layout (the disk may hold either).
enum CutOverError {
    Before(Error),
    Unknown(Error),
}
