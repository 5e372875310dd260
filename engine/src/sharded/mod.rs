//! [`ShardedDb`]: the keyspace split across N fully independent [`Db`] instances — each with
//! its own directory (possibly on its own disk), WAL, memtables, flush and compaction
//! threads — so writes to different shards never contend.
//!
//! See [`ShardedDb`] for what holds across shards.
//!
//! The layout (shard count, partitioner, split points or ring points, shard key, shard paths)
//! is persisted in the `SHARDS` file at the root (`docs/format/shards.md`); reopening with
//! conflicting settings fails with [`Error::InvalidArgument`] instead of silently routing keys
//! elsewhere. Shards can be split, added and moved while the database is in use
//! ([`ShardedDb::split_shard`], [`ShardedDb::add_shard`], [`ShardedDb::move_shard`]; the
//! protocol is in `reshard.rs`).

mod auto_split;
mod ingest;
mod iter;
mod layout;
mod metrics;
mod partitioner;
mod reshard;
mod store;
mod transaction;

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use strata_core::fs::FileLock;
use strata_core::key::SeqNo;
use strata_core::{Error, Result};
use strata_wal::{EntryKind, WriteBatch};

use crate::async_write::WriteTicket;
use crate::db::Db;
use crate::db_iter::KeyRange;
use crate::options::{Options, WriteOptions};
use crate::snapshot::{owned_range, Snapshot};

pub use auto_split::AutoSplit;
pub use iter::ShardedIter;
use layout::{Layout, Migration, ShardKeySpec};
use metrics::RateWindow;
pub use metrics::{Clock, ManualClock, ShardMetrics, ShardedMetrics};
use partitioner::Router;
pub use partitioner::{CustomShardKey, HashRing, Partitioner, ShardKey, DEFAULT_VNODES_PER_SHARD};
pub use reshard::{ReshardPhase, ReshardProgress, ReshardStep, Resharding};
pub use store::{KeyBounds, KvIter, KvSnapshot, KvStore};
pub use transaction::ShardedTransaction;

/// The most shards a database may have.
pub const MAX_SHARDS: usize = 4096;
const ROOT_LOCK_FILE_NAME: &str = "LOCK";

/// Configuration of a [`ShardedDb`]: the layout (fixed when the database is created) and
/// the [`Options`] every shard's engine uses.
///
/// ```
/// use strata::{Options, Partitioner, ShardedOptions, Durability};
/// let opts = ShardedOptions::new(3)
///     .partitioner(Partitioner::Range(vec![b"h".to_vec(), b"q".to_vec()]))
///     .shard_paths(["/mnt/a/s0", "/mnt/b/s1", "/mnt/c/s2"])
///     .engine(Options::default().durability(Durability::Sync));
/// assert_eq!(opts.shard_count(), 3);
/// ```
#[derive(Clone)]
pub struct ShardedOptions {
    shards: usize,
    partitioner: Partitioner,
    shard_key: ShardKey,
    shard_paths: Option<Vec<PathBuf>>,
    engine: Options,
    clock: Arc<dyn Clock>,
    reshard_hook: Option<ReshardHook>,
    auto_split: Option<AutoSplit>,
}

/// A function called at every step of a resharding ([`ShardedOptions::on_reshard_step`]).
type ReshardHook = Arc<dyn Fn(ReshardStep) + Send + Sync>;

impl std::fmt::Debug for ShardedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedOptions")
            .field("shards", &self.shards)
            .field("partitioner", &self.partitioner)
            .field("shard_key", &self.shard_key)
            .field("shard_paths", &self.shard_paths)
            .field("engine", &self.engine)
            .field("auto_split", &self.auto_split)
            .finish_non_exhaustive()
    }
}

impl ShardedOptions {
    /// `shards` shards (1 to [`MAX_SHARDS`]), hash-partitioned, living in `shard-000`,
    /// `shard-001`, ... under the root, with default engine options.
    pub fn new(shards: usize) -> Self {
        ShardedOptions {
            shards,
            partitioner: Partitioner::Hash,
            shard_key: ShardKey::Whole,
            shard_paths: None,
            engine: Options::default(),
            clock: metrics::system_clock(),
            reshard_hook: None,
            auto_split: None,
        }
    }

    /// How keys map to shards. Default [`Partitioner::Hash`].
    #[must_use]
    pub fn partitioner(mut self, partitioner: Partitioner) -> Self {
        self.partitioner = partitioner;
        self
    }

    /// Which part of each key the partitioner routes on. Default [`ShardKey::Whole`]. With
    /// `ShardKey::UntilByte(b'/')`, `user/42/...` routes by `user/42`'s first segment, so all
    /// of one entity's keys live on one shard: a [`WriteBatch`] or a
    /// [`ShardedDb::transaction`] over them is atomic on that shard. Persisted; reopening
    /// with another is [`Error::InvalidArgument`] (a custom one is matched by name).
    ///
    /// ```
    /// use strata::{ShardKey, ShardedDb, ShardedOptions, WriteBatch};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(4).shard_key(ShardKey::UntilByte(b'/')))?;
    /// let mut b = WriteBatch::new();
    /// b.put("acct7/version", "2");
    /// b.put("acct7/event/2", "deposit");
    /// db.write(b)?; // one shard: atomic
    /// assert_eq!(db.shard_of("acct7/version"), db.shard_of("acct7/event/2"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn shard_key(mut self, shard_key: ShardKey) -> Self {
        self.shard_key = shard_key;
        self
    }

    /// Where each shard lives, one directory per shard (put them on different disks to
    /// spread I/O). Relative paths are relative to the root. Default `<root>/shard-NNN`.
    /// On reopen it may be omitted (the stored paths are used); if given it must match.
    #[must_use]
    pub fn shard_paths<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.shard_paths = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// The engine options of every shard (its file system is also used for the root).
    #[must_use]
    pub fn engine(mut self, options: Options) -> Self {
        self.engine = options;
        self
    }

    /// The clock of the write-rate windows behind [`ShardedDb::hot_shards`]. Default: the
    /// system's monotonic clock. It exists so that tests can move time by hand with a
    /// [`ManualClock`] (see [`crate::testing`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use strata::testing::ManualClock;
    /// use strata::ShardedOptions;
    /// let clock = Arc::new(ManualClock::default());
    /// let opts = ShardedOptions::new(2).clock(clock.clone());
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `hook` on the resharding thread at every step of a resharding
    /// ([`ReshardStep`]), before the next one: a testing aid, to cut the power of a
    /// simulated disk at that point or to let other threads act in between.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use strata::testing::ReshardStep;
    /// use strata::{Partitioner, ShardedDb, ShardedOptions};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let opts = ShardedOptions::new(1)
    ///     .partitioner(Partitioner::Range(vec![]))
    ///     .on_reshard_step(move |step| log.lock().unwrap().push(step));
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), opts)?;
    /// db.put("a", "1")?;
    /// db.put("b", "2")?;
    /// db.split_shard(0)?.wait()?;
    /// let seen = seen.lock().unwrap();
    /// assert_eq!(seen.first(), Some(&ReshardStep::Journaled));
    /// assert!(seen.contains(&ReshardStep::CutOver));
    /// assert_eq!(seen.last(), Some(&ReshardStep::Cleaned));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn on_reshard_step(mut self, hook: impl Fn(ReshardStep) + Send + Sync + 'static) -> Self {
        self.reshard_hook = Some(Arc::new(hook));
        self
    }

    /// Splits hot shards automatically, as `policy` says (see [`AutoSplit`]): a watcher
    /// thread checks the shards' write rates and calls [`ShardedDb::split_shard`] on a shard
    /// that stayed hot for the sustained window. [`ShardedMetrics::auto_splits`] counts them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{AutoSplit, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let policy = AutoSplit::hotter_than(2.0).sustained_for(Duration::from_secs(30));
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(4).auto_split(policy))?;
    /// db.put("k", "v")?;
    /// assert_eq!(db.metrics().auto_splits, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn auto_split(mut self, policy: AutoSplit) -> Self {
        self.auto_split = Some(policy);
        self
    }

    /// The configured shard count.
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// Checks the layout settings and the engine options, before any file is touched (the
    /// engine's own rules are [`Options`]'s; each shard's open applies them again).
    fn validate(&self) -> Result<()> {
        self.engine.validate()?;
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(Error::InvalidArgument(format!(
                "shard count must be 1 to {MAX_SHARDS}, got {}",
                self.shards
            )));
        }
        partitioner::validate(&self.partitioner, self.shards)?;
        if let Some(paths) = &self.shard_paths {
            if paths.len() != self.shards {
                return Err(Error::InvalidArgument(format!(
                    "{} shard paths given for {} shards",
                    paths.len(),
                    self.shards
                )));
            }
            if paths.iter().any(|p| p.as_os_str().is_empty()) {
                return Err(Error::InvalidArgument("a shard path is empty".into()));
            }
        }
        Ok(())
    }

    /// The layout a new database gets, or the check of an existing one against these
    /// options. Once a database has been resharded (generation above 0) its shard count,
    /// split points and paths are the layout's own: only the partitioner kind and the shard
    /// key must still match.
    fn reconcile(&self, stored: Option<Layout>) -> Result<(Layout, bool)> {
        let Some(stored) = stored else {
            let paths = match &self.shard_paths {
                Some(p) => p.clone(),
                None => (0..self.shards).map(|i| PathBuf::from(format!("shard-{i:03}"))).collect(),
            };
            let layout = Layout::new(
                self.partitioner.clone(),
                DEFAULT_VNODES_PER_SHARD,
                ShardKeySpec::of(&self.shard_key),
                paths,
            );
            return Ok((layout, true));
        };
        let conflict = |what: String| {
            Err(Error::InvalidArgument(format!("sharded database exists with {what}")))
        };
        let same_kind = std::mem::discriminant(&stored.partitioner)
            == std::mem::discriminant(&self.partitioner);
        if stored.generation > 0 && !same_kind {
            return conflict(format!(
                "partitioner {:?}, not {:?}",
                stored.partitioner, self.partitioner
            ));
        }
        if stored.generation == 0 {
            if stored.shards() != self.shards {
                return conflict(format!("{} shards, not {}", stored.shards(), self.shards));
            }
            if stored.partitioner != self.partitioner {
                return conflict(format!(
                    "partitioner {:?}, not {:?}",
                    stored.partitioner, self.partitioner
                ));
            }
        }
        if stored.shard_key != ShardKeySpec::of(&self.shard_key) {
            return conflict(format!(
                "shard key {:?}, not {:?} (pass the one it was created with to \
                 ShardedOptions::shard_key)",
                stored.shard_key, self.shard_key
            ));
        }
        if let Some(paths) = &self.shard_paths {
            if stored.generation == 0 && *paths != stored.paths {
                return conflict(format!("shard paths {:?}, not {:?}", stored.paths, paths));
            }
        }
        Ok((stored, false))
    }
}

/// One shard of the routing: its database, the gate that writers hold while they write to
/// it (a resharding closes it for a moment to cut over, so no write lands on the old owner
/// of a key after the switch), and its write-rate window.
pub(crate) struct Shard {
    pub(crate) db: Db,
    gate: RwLock<()>,
    rate: RateWindow,
}

impl Shard {
    fn new(db: Db, clock: &dyn Clock) -> Arc<Shard> {
        Arc::new(Shard { db, gate: RwLock::new(()), rate: RateWindow::new(clock) })
    }
}

/// Where keys go: the layout in force, its router and the shards. Never changed in place; a
/// resharding swaps in a new one, and every operation re-checks `epoch` after it has acted
/// on a shard, so none completes against a routing that a cut-over replaced meanwhile.
pub(crate) struct Routing {
    /// Bumped by every swap.
    epoch: u64,
    layout: Layout,
    router: Router,
    shards: Vec<Arc<Shard>>,
    /// Shards that may still hold keys the router sends elsewhere (copied away, not yet
    /// deleted): their scans skip such keys.
    dirty: Vec<bool>,
    /// While a resharding copies: the keys written since its copy began, to catch up on.
    capture: Option<Arc<reshard::Capture>>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("epoch", &self.epoch)
            .field("generation", &self.layout.generation)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Routing {
    fn shard(&self, i: usize) -> Result<&Arc<Shard>> {
        // The router yields only indices below the shard count.
        self.shards.get(i).ok_or_else(|| {
            Error::Internal(format!("the router chose shard {i}, which does not exist"))
        })
    }

    fn is_dirty(&self, i: usize) -> bool {
        self.dirty.get(i).copied().unwrap_or(false)
    }
}

struct ShardedInner {
    root: PathBuf,
    options: ShardedOptions,
    routing: ArcSwap<Routing>,
    /// The epoch of `routing`, stored after each swap: one load tells an operation whether
    /// the routing it used is still in force.
    epoch: std::sync::atomic::AtomicU64,
    read_only: bool,
    root_lock: Mutex<Option<FileLock>>,
    /// Shared with every [`ShardedIter`], which checks it on each step; iterators hold no
    /// handle, so they do not keep the database open.
    closed: Arc<AtomicBool>,
    /// The resharding running, if any (one at a time).
    reshard: Mutex<Option<Resharding>>,
    /// Databases of shards that left the layout ([`ShardedDb::move_shard`]): kept open for
    /// the snapshots and iterators that may still read them, removed at close.
    retired: Mutex<Vec<Db>>,
    /// Shards split by the [`AutoSplit`] watcher.
    auto_splits: std::sync::atomic::AtomicU64,
    /// Set when a layout write failed during a cut-over: what the disk holds is unknown
    /// until a reopen decides, so writes are refused. The flag is what writers check.
    poisoned: Mutex<Option<Error>>,
    is_poisoned: AtomicBool,
}

impl Drop for ShardedInner {
    fn drop(&mut self) {
        // The last handle is gone and the shards close as the routing drops: iterators still
        // alive must see that without reaching the shards.
        self.closed.store(true, Ordering::Release);
    }
}

/// A key-value store whose keyspace is split across independent [`Db`] shards. It has the
/// same methods as [`Db`] (and implements [`KvStore`]).
///
/// # What holds across shards
/// * **Single keys** (`put`, `delete`, `get`) touch one shard and behave exactly as on a
///   [`Db`].
/// * **Batches** are split per shard (entry order preserved within each part). Each part is
///   atomic on its shard; parts on different shards are written concurrently through the
///   shards' write queues, and there is **no atomicity across shards**. If the call returns
///   `Ok`, every part is applied with the requested durability. If it returns an error, or
///   the process or machine crashes before it returns, any subset of the parts may be
///   applied (and, for parts whose durability was reached, survive the crash) while the
///   others are not; nothing is rolled back. A cross-shard atomic batch is future work.
/// * **Snapshots and scans** are consistent per shard, not across shards: each shard's part
///   reflects one moment of that shard, but a multi-shard batch written concurrently may be
///   seen on one shard and not yet on another.
///
///
/// `ShardedDb` is a cheap handle: clone it to share it across threads. It closes when
/// [`ShardedDb::close`] is called or the last handle drops.
///
/// ```
/// use strata::{Options, Partitioner, ShardedDb, ShardedOptions, WriteBatch};
/// let dir = tempfile::tempdir()?;
/// let db = ShardedDb::open(dir.path(), ShardedOptions::new(4).partitioner(Partitioner::Hash))?;
/// db.put("apple", "red")?;
/// let mut batch = WriteBatch::new(); // split per shard; each part atomic on its shard
/// batch.put("banana", "yellow");
/// batch.put("cherry", "dark red");
/// db.write(batch)?;
/// assert_eq!(db.get("banana")?.as_deref(), Some(&b"yellow"[..]));
/// let keys: Vec<_> = db.iter().map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, [&b"apple"[..], b"banana", b"cherry"]);
/// db.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ShardedDb {
    inner: Arc<ShardedInner>,
}

impl std::fmt::Debug for ShardedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedDb")
            .field("root", &self.inner.root)
            .field("shards", &self.shard_count())
            .field("partitioner", &self.partitioner())
            .finish_non_exhaustive()
    }
}

/// The shard directories of `layout`, each distinct and none the root itself.
fn shard_dirs(root: &Path, layout: &Layout) -> Result<Vec<PathBuf>> {
    let dirs: Vec<PathBuf> =
        (0..layout.shards()).filter_map(|i| layout.shard_dir(root, i)).collect();
    let mut seen = std::collections::HashSet::new();
    for d in &dirs {
        if *d == root || !seen.insert(d.clone()) {
            return Err(Error::InvalidArgument(format!(
                "shard directory {} used twice",
                d.display()
            )));
        }
    }
    Ok(dirs)
}

/// Opens every shard with `open`; on a failure, closes those already open.
fn open_shards(dirs: &[PathBuf], open: impl Fn(&Path) -> Result<Db>) -> Result<Vec<Db>> {
    let mut shards = Vec::with_capacity(dirs.len());
    for d in dirs {
        match open(d) {
            Ok(db) => shards.push(db),
            Err(e) => {
                for db in &shards {
                    let _ = db.close();
                }
                return Err(e);
            }
        }
    }
    Ok(shards)
}

impl ShardedDb {
    /// Opens the sharded database at `root`, creating it (root directory, `SHARDS` layout
    /// file, one database per shard) if missing. An existing database must be opened with
    /// the same shard count and partitioner (and shard paths, if given); anything else is
    /// [`Error::InvalidArgument`].
    ///
    /// ```
    /// use strata::{Error, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// ShardedDb::open(dir.path(), ShardedOptions::new(4))?.close()?;
    /// let wrong = ShardedDb::open(dir.path(), ShardedOptions::new(5));
    /// assert!(matches!(wrong, Err(Error::InvalidArgument(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(root: impl AsRef<Path>, options: ShardedOptions) -> Result<ShardedDb> {
        options.validate()?;
        let root = root.as_ref().to_path_buf();
        crate::dir::check_path(&root)?;
        let fs = Arc::clone(&options.engine.fs);
        let root_lock = crate::dir::create_and_lock(&*fs, &root, ROOT_LOCK_FILE_NAME)?;
        crate::dir::refuse_unfinished(&*fs, &root)?;
        let (layout, created) = options.reconcile(Layout::load(fs.as_ref(), &root)?)?;
        let dirs = shard_dirs(&root, &layout)?;
        if created {
            // The layout is durable before any shard exists, so no shard ever holds data
            // routed by a layout that a crash could forget.
            layout.store(fs.as_ref(), &root)?;
        }
        // A resharding a crash interrupted is undone (still copying) or its cleanup resumed.
        let layout = reshard::recover(fs.as_ref(), &root, layout)?;
        for dir in &dirs {
            ingest::remove_split_leftovers(fs.as_ref(), dir)?;
        }
        let shards = open_shards(&dirs, |d| Db::open(d, options.engine.clone()))?;
        let auto = options.auto_split.clone();
        let db = ShardedDb::assemble(root, layout, shards, Some(root_lock), options, false);
        db.resume_cleanup();
        if let Some(policy) = auto {
            auto_split::start(&db, policy);
        }
        Ok(db)
    }

    /// Opens the sharded database at `root` for reading only, as [`Db::open_read_only`]
    /// opens each shard: no lock (another process may be writing), nothing written, no
    /// background threads; writes return [`Error::ReadOnly`]. The layout must exist and
    /// match `options` as for [`ShardedDb::open`]; each shard shows its state when it was
    /// opened (shards are opened one after the other, so this is per shard, like
    /// [`ShardedDb::snapshot`]).
    ///
    /// ```
    /// use strata::{Error, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// db.put("k", "v")?;
    /// let reader = ShardedDb::open_read_only(dir.path(), ShardedOptions::new(2))?;
    /// assert_eq!(reader.get("k")?.as_deref(), Some(&b"v"[..]));
    /// assert!(matches!(reader.put("k", "w"), Err(Error::ReadOnly)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(root: impl AsRef<Path>, options: ShardedOptions) -> Result<ShardedDb> {
        options.validate()?;
        let root = root.as_ref().to_path_buf();
        crate::dir::check_path(&root)?;
        let fs = Arc::clone(&options.engine.fs);
        crate::dir::refuse_unfinished(&*fs, &root)?;
        let Some(stored) = Layout::load(fs.as_ref(), &root)? else {
            return Err(Error::InvalidArgument(format!(
                "no sharded database at {} to open read-only",
                root.display()
            )));
        };
        let (mut layout, _) = options.reconcile(Some(stored))?;
        // An interrupted copy is ignored (its target never took effect); nothing is undone
        // or cleaned up, as a read-only open writes nothing.
        if matches!(layout.migration, Some(Migration::Copying { .. })) {
            layout.migration = None;
        }
        let dirs = shard_dirs(&root, &layout)?;
        let shards = open_shards(&dirs, |d| Db::open_read_only(d, options.engine.clone()))?;
        Ok(ShardedDb::assemble(root, layout, shards, None, options, true))
    }

    fn assemble(
        root: PathBuf,
        layout: Layout,
        shards: Vec<Db>,
        root_lock: Option<FileLock>,
        options: ShardedOptions,
        read_only: bool,
    ) -> ShardedDb {
        let clock = options.clock.as_ref();
        let shards: Vec<Arc<Shard>> = shards.into_iter().map(|db| Shard::new(db, clock)).collect();
        let routing = Routing {
            epoch: 0,
            router: Router::new(&layout, options.shard_key.clone()),
            dirty: reshard::dirty_flags(&layout),
            layout,
            shards,
            capture: None,
        };
        ShardedDb {
            inner: Arc::new(ShardedInner {
                root,
                options,
                routing: ArcSwap::from_pointee(routing),
                epoch: std::sync::atomic::AtomicU64::new(0),
                read_only,
                root_lock: Mutex::new(root_lock),
                closed: Arc::new(AtomicBool::new(false)),
                reshard: Mutex::new(None),
                retired: Mutex::new(Vec::new()),
                poisoned: Mutex::new(None),
                is_poisoned: AtomicBool::new(false),
                auto_splits: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The routing in force.
    fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.inner.routing.load()
    }

    /// Whether the routing `r` is still the one in force.
    fn still(&self, r: &Routing) -> bool {
        self.inner.epoch.load(Ordering::Acquire) == r.epoch
    }

    /// The root directory (holding `SHARDS`).
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.routing().shards.len()
    }

    /// The partitioner in force: the one the database was created with, with the split
    /// points resharding has added since.
    pub fn partitioner(&self) -> Partitioner {
        self.routing().layout.partitioner.clone()
    }

    /// The shard that owns `key` (routed by its [`ShardKey`]): for users who route work to
    /// shard-local threads.
    ///
    /// ```
    /// use strata::{Partitioner, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"m".to_vec()])))?;
    /// assert_eq!(db.shard_of("apple"), 0);
    /// assert_eq!(db.shard_of("melon"), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shard_of(&self, key: impl AsRef<[u8]>) -> usize {
        self.routing().router.shard_for(key.as_ref())
    }

    /// Begins an optimistic transaction whose keys must all live on one shard (see
    /// [`ShardedTransaction`]).
    pub fn transaction(&self) -> ShardedTransaction {
        ShardedTransaction::begin(self)
    }

    /// [`Db::compare_and_swap`] on the key's shard.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::ShardedDb::open(dir.path(), strata::ShardedOptions::new(3))?;
    /// db.compare_and_swap("k", None, Some(b"1"))?;
    /// assert!(db.compare_and_swap("k", None, Some(b"2")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<()> {
        self.write(crate::db::compare_and_swap_batch(key.as_ref(), expected, new))
    }

    /// Shard `i`'s database, for per-shard inspection (its metrics or path). Writes made
    /// through it bypass the routing (and a resharding's catch-up): use the `ShardedDb`'s
    /// own methods to write.
    pub fn shard(&self, i: usize) -> Option<Db> {
        self.routing().shards.get(i).map(|s| s.db.clone())
    }

    /// Runs `write` on the shard that owns `key`, holding the shard's gate so that no
    /// cut-over happens meanwhile, and tells a resharding that is copying about the key.
    fn write_key<T>(&self, key: &[u8], write: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        loop {
            self.check_writable()?;
            let routing = self.routing();
            let i = routing.router.shard_for(key);
            let shard = routing.shard(i)?;
            let _gate = shard.gate.read();
            if !self.still(&routing) {
                continue; // a cut-over or a copy began: route again
            }
            shard.rate.record(self.inner.options.clock.as_ref(), 1);
            let r = write(&shard.db);
            if let Some(capture) = &routing.capture {
                capture.note(i, key);
            }
            return r;
        }
    }

    /// Splits `batch` per shard under the routing in force and hands the parts to `write`
    /// while holding the gates of every shard they touch (ascending, so concurrent callers
    /// and a cut-over never deadlock); then tells a copying resharding about their keys.
    fn write_routed<T>(
        &self,
        batch: WriteBatch,
        options: &WriteOptions,
        write: impl FnOnce(&Routing, Vec<(usize, WriteBatch)>) -> Result<T>,
    ) -> Result<T> {
        crate::write::validate(&batch)?;
        if let Some(first) = self.routing().shards.first() {
            options.resolve(first.db.inner.opts.durability)?;
        }
        loop {
            self.check_writable()?;
            let routing = self.routing();
            let routes = routes(&routing.router, routing.shards.len(), &batch)?;
            if routing.capture.is_some() && batch.has_range_deletes() {
                // A copying resharding catches up key by key; a range delete it cannot
                // replay on the new shard, so it waits for the resharding to end.
                return Err(Error::Busy);
            }
            let mut touched = routes.clone();
            touched.sort_unstable();
            touched.dedup();
            let mut gates = Vec::with_capacity(touched.len());
            for &i in &touched {
                gates.push(routing.shard(i)?.gate.read());
            }
            if !self.still(&routing) {
                continue;
            }
            let noted: Vec<(usize, Vec<u8>)> = match &routing.capture {
                Some(_) => batch.iter().zip(&routes).map(|(e, &s)| (s, e.key.to_vec())).collect(),
                None => Vec::new(),
            };
            let clock = self.inner.options.clock.as_ref();
            for &i in &touched {
                let n = routes.iter().filter(|&&s| s == i).count();
                routing.shard(i)?.rate.record(clock, n as u64);
            }
            let r = write(&routing, split(batch, &routes, touched.len(), routing.shards.len()));
            if let Some(capture) = &routing.capture {
                noted.iter().for_each(|(s, k)| capture.note(*s, k));
            }
            drop(gates);
            return r;
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        if !self.inner.is_poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self.inner.poisoned.lock() {
            Some(e) => Err(e.clone().poisoned()),
            None => Err(Error::Internal("poisoned without an error".into())),
        }
    }

    /// Sets `key` to `value` with the default durability, on its shard.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.put_with(key, value, WriteOptions::default())
    }

    /// Sets `key` to `value` on its shard as `options` say (see [`Db::put_with`]).
    ///
    /// ```
    /// use strata::{Durability, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// db.put_with("k", "v", Durability::Sync)?;
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: impl Into<WriteOptions>,
    ) -> Result<()> {
        self.check_open()?;
        let options = options.into();
        self.write_key(key.as_ref(), |db| db.put_with(key.as_ref(), value, options))
    }

    /// Deletes `key` with the default durability, on its shard.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.delete_with(key, WriteOptions::default())
    }

    /// Deletes `key` on its shard as `options` say (see [`Db::delete_with`]).
    ///
    /// ```
    /// use strata::{Durability, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// db.put("k", "v")?;
    /// db.delete_with("k", Durability::Sync)?;
    /// assert!(db.get("k")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_with(
        &self,
        key: impl AsRef<[u8]>,
        options: impl Into<WriteOptions>,
    ) -> Result<()> {
        self.check_open()?;
        let options = options.into();
        self.write_key(key.as_ref(), |db| db.delete_with(key.as_ref(), options))
    }

    /// Deletes every key in `range` (`start..end`, the end excluded) on every shard the
    /// range can touch (under `Range` partitioning with an order-preserving shard key,
    /// only the shards whose ranges it meets; under hashing, all). Atomic on each shard,
    /// not across shards: a reader of several shards may see it done on one and not yet on
    /// another. [`Error::Busy`] while a resharding copies keys (a range delete cannot be
    /// replayed key by key on the new shard): retry after it ends. Inside a
    /// [`WriteBatch`], a range delete must stay within one shard.
    ///
    /// ```
    /// use strata::{ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(4))?;
    /// for i in 0..50u32 { db.put(format!("user/{i:02}"), "x")?; }
    /// db.delete_range("user/10".."user/40")?;
    /// assert_eq!(db.prefix("user/").count(), 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_range<K: AsRef<[u8]>>(&self, range: std::ops::Range<K>) -> Result<()> {
        self.delete_range_with(range, WriteOptions::default())
    }

    /// [`ShardedDb::delete_range`] with the durability `options` ask for on every shard.
    ///
    /// ```
    /// use strata::{Durability, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// db.put("a", "1")?;
    /// db.delete_range_with("a".."b", Durability::Sync)?;
    /// assert!(db.get("a")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_range_with<K: AsRef<[u8]>>(
        &self,
        range: std::ops::Range<K>,
        options: impl Into<WriteOptions>,
    ) -> Result<()> {
        self.check_open()?;
        let options = options.into();
        let (start, end) = (range.start.as_ref(), range.end.as_ref());
        let mut probe = WriteBatch::new();
        probe.delete_range(start, end);
        crate::write::validate(&probe)?;
        let keys =
            KeyRange { start: Bound::Included(start.to_vec()), end: Bound::Excluded(end.to_vec()) };
        loop {
            self.check_writable()?;
            let routing = self.routing();
            if routing.capture.is_some() {
                return Err(Error::Busy);
            }
            let touched = routing.router.shards_for_range(routing.shards.len(), &keys);
            let mut gates = Vec::with_capacity(touched.len());
            for &i in &touched {
                gates.push(routing.shard(i)?.gate.read());
            }
            if !self.still(&routing) {
                continue;
            }
            for &i in &touched {
                routing.shard(i)?.db.delete_range_with(start..end, options)?;
            }
            drop(gates);
            return Ok(());
        }
    }

    /// The current value of `key`, read from its one shard.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.check_open()?;
        let key = key.as_ref();
        loop {
            let routing = self.routing();
            let r = routing.shard(routing.router.shard_for(key))?.db.get(key);
            // A cut-over meanwhile may have moved the key (and cleanup deleted it here).
            if self.still(&routing) {
                return r;
            }
        }
    }

    /// Applies `batch` with each shard's default durability (that of the engine options).
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_with(batch, WriteOptions::default())
    }

    /// Applies `batch` split per shard: each part atomically on its shard as `options` say,
    /// parts on different shards concurrently. Not atomic across shards: see [`ShardedDb`]
    /// for what an error or a crash can leave. With [`WriteOptions::no_wait`], a part that
    /// would wait (for a full shard queue, or a stalled shard) fails with [`Error::Busy`]
    /// instead; a full queue refuses the batch whole, a stall only the stalled part.
    ///
    /// ```
    /// use strata::{Durability, ShardedDb, ShardedOptions, WriteBatch};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(4))?;
    /// let mut b = WriteBatch::new();
    /// for i in 0..100u32 { b.put(i.to_be_bytes(), "v"); }
    /// db.write_with(b, Durability::Sync)?; // every part fsynced on its shard
    /// assert_eq!(db.iter().count(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_with(&self, batch: WriteBatch, options: impl Into<WriteOptions>) -> Result<()> {
        let options = options.into();
        self.check_open()?;
        if batch.is_empty() && batch.expectations().is_empty() {
            return self.check_writable();
        }
        self.write_routed(batch, &options, |routing, mut parts| {
            if parts.len() <= 1 {
                let Some((i, part)) = parts.pop() else { return Ok(()) };
                return routing.shard(i)?.db.write_with(part, options);
            }
            // Several shards: hand the parts to the shards' write queues so their log
            // writes and fsyncs overlap, then wait for all.
            submit_parts(routing, parts, options)?.wait()
        })
    }

    /// Queues `batch` (split per shard) with the default durability and returns at once;
    /// blocks only while a shard's queue ([`Options::write_queue_depth`]) is full. The
    /// ticket resolves when every part is durable and visible; errors arrive through it.
    /// Each shard applies its parts in submission order; async writes are not ordered
    /// against synchronous single-key writes until their ticket has been waited on.
    ///
    /// ```
    /// use strata::{ShardedDb, ShardedOptions, WriteBatch};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// let mut b = WriteBatch::new();
    /// b.put("x", "1");
    /// b.put("y", "2");
    /// let ticket = db.write_async(b);
    /// ticket.wait()?; // read-your-writes from here on
    /// assert_eq!(db.get("y")?.as_deref(), Some(&b"2"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_async(&self, batch: WriteBatch) -> WriteTicket {
        self.write_async_with(batch, WriteOptions::default())
    }

    /// [`ShardedDb::write_async`] as `options` say. With [`WriteOptions::no_wait`] it never
    /// blocks: if any shard the batch touches has a full queue, no part is queued and the
    /// ticket resolves at once with [`Error::Busy`].
    ///
    /// ```
    /// use strata::{Error, ShardedDb, ShardedOptions, WriteBatch, WriteOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// let mut b = WriteBatch::new();
    /// b.put("x", "1");
    /// b.put("y", "2");
    /// match db.write_async_with(b, WriteOptions::default().no_wait(true)).wait() {
    ///     Ok(()) | Err(Error::Busy) => {}
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_async_with(
        &self,
        batch: WriteBatch,
        options: impl Into<WriteOptions>,
    ) -> WriteTicket {
        let options = options.into();
        if let Err(e) = self.check_open() {
            return WriteTicket::resolved(Err(e));
        }
        if batch.is_empty() && batch.expectations().is_empty() {
            return WriteTicket::resolved(self.check_writable());
        }
        self.write_routed(batch, &options, |routing, parts| submit_parts(routing, parts, options))
            .unwrap_or_else(|e| WriteTicket::resolved(Err(e)))
    }

    fn scan(&self, range: KeyRange) -> ShardedIter {
        let routing = self.inner.routing.load_full();
        let bounds = || (range.start.clone(), range.end.clone());
        let children = routing
            .router
            .shards_for_range(routing.shards.len(), &range)
            .into_iter()
            .filter_map(|i| routing.shards.get(i).map(|s| (i, s.db.range(bounds()))))
            .collect();
        ShardedIter::new(children, &routing, Arc::clone(&self.inner.closed))
    }

    /// The entries in `range`, in key order, double-ended. Under [`Partitioner::Hash`] every
    /// shard is scanned and the streams merged; under [`Partitioner::Range`] only the
    /// shards the range overlaps, one after the other. Each shard's part reads one
    /// consistent state of that shard.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> ShardedIter {
        self.scan(owned_range(&range))
    }

    /// The entries whose keys start with `prefix`, in key order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::ShardedDb::open(dir.path(), strata::ShardedOptions::new(3))?;
    /// db.put("user/1", "ann")?;
    /// db.put("user/2", "bo")?;
    /// db.put("vendor/1", "acme")?;
    /// assert_eq!(db.prefix("user/").count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> ShardedIter {
        self.scan(KeyRange::prefix(prefix.as_ref()))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> ShardedIter {
        self.range::<&[u8], _>(..)
    }

    /// A snapshot on every shard. Each shard's part is a consistent view of that shard;
    /// across shards the snapshots are taken one after the other, so a multi-shard batch
    /// committing meanwhile may be in some shards' views and not others'.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::ShardedDb::open(dir.path(), strata::ShardedOptions::new(3))?;
    /// db.put("k", "old")?;
    /// let snap = db.snapshot();
    /// db.put("k", "new")?;
    /// assert_eq!(snap.get("k")?.as_deref(), Some(&b"old"[..]));
    /// assert_eq!(snap.iter().count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> ShardedSnapshot {
        let routing = self.inner.routing.load_full();
        ShardedSnapshot {
            snaps: routing.shards.iter().map(|s| s.db.snapshot()).collect(),
            routing,
            db: self.clone(),
        }
    }

    /// A checkpoint of every shard ([`Db::checkpoint`]) under `dir`, which must not exist or
    /// be empty, plus the layout: an independent sharded database that opens with
    /// [`ShardedDb::open`] (and the same shard key). Its shards live in `dir/shard-NNN`
    /// whatever their paths here. Consistent per shard, like [`ShardedDb::snapshot`]: each
    /// shard's part is a prefix of that shard's history holding every write acknowledged
    /// before the call, but a multi-shard batch written during the call may be in one
    /// shard's part and not another's. A crash during the call leaves a directory that
    /// `open` refuses.
    ///
    /// ```
    /// use strata::{ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path().join("live"), ShardedOptions::new(3))?;
    /// for i in 0..100u32 { db.put(i.to_be_bytes(), "v")?; }
    /// let infos = db.checkpoint(dir.path().join("backup"))?;
    /// assert_eq!(infos.len(), 3);
    /// let copy = ShardedDb::open(dir.path().join("backup"), ShardedOptions::new(3))?;
    /// assert_eq!(copy.iter().count(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<Vec<crate::CheckpointInfo>> {
        self.check_writable()?;
        let dir = dir.as_ref();
        let fs = self.inner.options.engine.fs.as_ref();
        let routing = self.inner.routing.load_full();
        crate::checkpoint::start_target(fs, dir)?;
        let mut infos = Vec::with_capacity(routing.shards.len());
        let mut layout = routing.layout.clone();
        layout.orphans.clear();
        for (i, shard) in routing.shards.iter().enumerate() {
            let name = PathBuf::from(format!("shard-{i:03}"));
            infos.push(shard.db.checkpoint(dir.join(&name))?);
            if let Some(p) = layout.paths.get_mut(i) {
                *p = name;
            }
        }
        layout.store(fs, dir)?;
        crate::checkpoint::finish_target(fs, dir)?;
        Ok(infos)
    }

    /// Flushes every shard's memtables and waits.
    pub fn flush(&self) -> Result<()> {
        self.each_shard(Db::flush)
    }

    /// Compacts every shard fully (see [`Db::compact`]) and waits.
    pub fn compact(&self) -> Result<()> {
        self.each_shard(Db::compact)
    }

    /// Compacts, on the shards `range` overlaps, the tables overlapping it (see
    /// [`Db::compact_range`]) and waits.
    pub fn compact_range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<()> {
        self.check_open()?;
        let range = owned_range(&range);
        let routing = self.routing();
        for i in routing.router.shards_for_range(routing.shards.len(), &range) {
            routing.shard(i)?.db.compact_range((range.start.clone(), range.end.clone()))?;
        }
        Ok(())
    }

    /// Waits until no shard has a flush or compaction pending or running.
    pub fn wait_for_compaction(&self) -> Result<()> {
        self.each_shard(Db::wait_for_compaction)
    }

    fn each_shard(&self, f: impl Fn(&Db) -> Result<()>) -> Result<()> {
        self.check_open()?;
        self.routing().shards.iter().try_for_each(|s| f(&s.db))
    }

    /// Per-shard write rates, queue depths and engine metrics; still readable after
    /// [`ShardedDb::close`] (see [`Db::metrics`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::ShardedDb::open(dir.path(), strata::ShardedOptions::new(2))?;
    /// db.put("k", "v")?;
    /// db.close()?;
    /// assert_eq!(db.metrics().shards.iter().map(|s| s.engine.puts).sum::<u64>(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> ShardedMetrics {
        let clock = self.inner.options.clock.as_ref();
        let shards = self
            .routing()
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                ShardMetrics::new(i, s.rate.rate(clock), s.db.async_queue_len(), s.db.metrics())
            })
            .collect();
        ShardedMetrics { shards, auto_splits: self.inner.auto_splits.load(Ordering::Relaxed) }
    }

    /// The shards whose write rate (key writes per second over the last 10 seconds)
    /// exceeds `factor` times the mean rate of all shards.
    ///
    /// ```
    /// use strata::{ShardedDb, ShardedOptions, Partitioner};
    /// let dir = tempfile::tempdir()?;
    /// let opts = ShardedOptions::new(4)
    ///     .partitioner(Partitioner::Range(vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]));
    /// let db = ShardedDb::open(dir.path(), opts)?;
    /// for i in 0..100u32 { db.put(format!("a{i}"), "v")?; } // all on shard 0
    /// db.put("b", "v")?;
    /// assert_eq!(db.hot_shards(2.0), [0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hot_shards(&self, factor: f64) -> Vec<usize> {
        let clock = self.inner.options.clock.as_ref();
        let rates: Vec<f64> = self.routing().shards.iter().map(|s| s.rate.rate(clock)).collect();
        metrics::hot(&rates, factor)
    }

    /// Closes every shard (each first applies its queued async writes; see [`Db::close`])
    /// and releases the root lock. Returns the first error.
    ///
    /// Afterwards every read and write on every clone fails with [`Error::Closed`], and so
    /// does every [`ShardedSnapshot`] read and the next step of every [`ShardedIter`], made
    /// before the close or after (an iterator yields `Err(Closed)` once, then `None`). Only
    /// [`ShardedDb::metrics`], [`ShardedDb::hot_shards`] and the layout accessors still
    /// answer. Dropping the last handle (and snapshot) closes too, ignoring errors.
    ///
    /// ```
    /// use strata::{Error, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(3))?;
    /// for k in ["a", "b", "c"] { db.put(k, k)?; }
    /// let (other, mut it) = (db.clone(), db.iter());
    /// assert!(it.next().unwrap().is_ok());
    /// db.close()?;
    /// assert!(matches!(other.iter().next(), Some(Err(Error::Closed))));
    /// assert!(matches!(it.next(), Some(Err(Error::Closed))));
    /// assert!(it.next().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // No resharding can start now. One still copying is cancelled and rolled back; one
        // cleaning up stops where it is (the next open resumes it). Either way it ends
        // before the shards close.
        let running = self.inner.reshard.lock().take();
        if let Some(job) = running {
            job.cancel();
            let _ = job.wait();
        }
        let mut result = Ok(());
        let retired = std::mem::take(&mut *self.inner.retired.lock());
        let routing = self.routing();
        for db in routing.shards.iter().map(|s| &s.db).chain(&retired) {
            if let Err(e) = db.close() {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        if !retired.is_empty() && !self.inner.read_only {
            let r =
                reshard::remove_orphans(self.inner.options.engine.fs.as_ref(), &self.inner.root);
            if let (Err(e), true) = (r, result.is_ok()) {
                result = Err(e);
            }
        }
        self.inner.root_lock.lock().take();
        result
    }
}

/// A snapshot on every shard of a [`ShardedDb`], from [`ShardedDb::snapshot`]: consistent
/// per shard, not across shards.
///
/// ```
/// use strata::{ShardedDb, ShardedOptions};
/// let dir = tempfile::tempdir()?;
/// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
/// db.put("a", "1")?;
/// let snap = db.snapshot();
/// db.delete("a")?;
/// assert!(db.get("a")?.is_none());
/// assert_eq!(snap.get("a")?.as_deref(), Some(&b"1"[..]));
/// assert_eq!(snap.sequences().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShardedSnapshot {
    snaps: Vec<Snapshot>,
    /// The routing the snapshots were taken under: it says where each key was then.
    routing: Arc<Routing>,
    db: ShardedDb,
}

impl std::fmt::Debug for ShardedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedSnapshot").field("sequences", &self.sequences()).finish()
    }
}

impl ShardedSnapshot {
    /// Each shard's snapshot sequence number, in shard order.
    pub fn sequences(&self) -> Vec<SeqNo> {
        self.snaps.iter().map(Snapshot::sequence).collect()
    }

    /// The value of `key` as of the snapshot of its shard; [`Error::Closed`] once the
    /// database is closed.
    ///
    /// ```
    /// use strata::{Error, ShardedDb, ShardedOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
    /// db.put("k", "v")?;
    /// let snap = db.snapshot();
    /// db.close()?;
    /// assert!(matches!(snap.get("k"), Err(Error::Closed)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.db.check_open()?;
        let i = self.routing.router.shard_for(key.as_ref());
        self.snaps.get(i).ok_or(Error::Closed)?.get(key)
    }

    fn scan(&self, range: KeyRange) -> ShardedIter {
        let bounds = || (range.start.clone(), range.end.clone());
        let children = self
            .routing
            .router
            .shards_for_range(self.snaps.len(), &range)
            .into_iter()
            .filter_map(|i| self.snaps.get(i).map(|s| (i, s.range(bounds()))))
            .collect();
        ShardedIter::new(children, &self.routing, Arc::clone(&self.db.inner.closed))
    }

    /// The entries in `range` as of the snapshot (double-ended).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> ShardedIter {
        self.scan(owned_range(&range))
    }

    /// The entries whose keys start with `prefix`, as of the snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> ShardedIter {
        self.scan(KeyRange::prefix(prefix.as_ref()))
    }

    /// Every entry as of the snapshot.
    pub fn iter(&self) -> ShardedIter {
        self.range::<&[u8], _>(..)
    }
}

/// Reserves a queue slot on every shard the parts touch (waiting, or with
/// [`WriteOptions::no_wait`] failing with [`Error::Busy`] and queueing nothing), then
/// submits every part.
fn submit_parts(
    routing: &Routing,
    parts: Vec<(usize, WriteBatch)>,
    options: WriteOptions,
) -> Result<WriteTicket> {
    let mut permits = Vec::with_capacity(parts.len());
    // Shard order: every caller reserves in the same order.
    for (i, _) in &parts {
        let writer = routing.shard(*i)?.db.async_writer_for_shard()?;
        let permit = if options.no_wait {
            writer.try_reserve()?
        } else {
            writer.reserve().ok_or(Error::Closed)?
        };
        permits.push(permit);
    }
    let tickets = parts
        .into_iter()
        .zip(permits)
        .map(|((_, part), permit)| permit.submit(part, options))
        .collect();
    Ok(WriteTicket::join(tickets))
}

/// The shard of every entry of `batch`; a conditional batch must have all its keys (written
/// and expected) on one shard, since a condition is checked atomically only there.
///
/// A range delete in a batch must fall within one shard (it then goes with the batch,
/// atomically); one spanning shards is `InvalidArgument` — [`ShardedDb::delete_range`]
/// deletes across shards, one shard at a time.
fn routes(router: &Router, shards: usize, batch: &WriteBatch) -> Result<Vec<usize>> {
    let route = |e: strata_wal::BatchEntry<'_>| match e.kind {
        EntryKind::DeleteRange => {
            let range = KeyRange {
                start: Bound::Included(e.key.to_vec()),
                end: Bound::Excluded(e.value.to_vec()),
            };
            match router.shards_for_range(shards, &range)[..] {
                [one] => Ok(one),
                [] => Ok(router.shard_for(e.key)), // an empty range: deletes nothing
                _ => Err(Error::InvalidArgument(
                    "a range delete in a batch must stay within one shard; \
                     ShardedDb::delete_range deletes across shards"
                        .into(),
                )),
            }
        }
        _ => Ok(router.shard_for(e.key)),
    };
    let routes: Vec<usize> = batch.iter().map(route).collect::<Result<_>>()?;
    if let Some((key, _)) = batch.expectations().first() {
        let bound = router.shard_for(key);
        let expected = batch.expectations().iter().map(|(k, _)| router.shard_for(k));
        if let Some(other) = routes.iter().copied().chain(expected).find(|&s| s != bound) {
            return Err(Error::CrossShard { bound, other });
        }
        if routes.is_empty() {
            return Ok(vec![bound]);
        }
    }
    Ok(routes)
}

/// Splits `batch` by `routes` into one batch per shard, in shard order, preserving entry
/// order within each part; a batch whose entries all go to one shard is passed on as is.
fn split(
    batch: WriteBatch,
    routes: &[usize],
    touched: usize,
    shards: usize,
) -> Vec<(usize, WriteBatch)> {
    let Some(&first) = routes.first() else { return Vec::new() };
    if touched == 1 {
        return vec![(first, batch)];
    }
    let mut parts: Vec<Option<WriteBatch>> = (0..shards).map(|_| None).collect();
    for (e, &s) in batch.iter().zip(routes) {
        if let Some(slot) = parts.get_mut(s) {
            let part = slot.get_or_insert_with(WriteBatch::new);
            match e.kind {
                EntryKind::Put => part.put(e.key, e.value),
                EntryKind::Delete => part.delete(e.key),
                EntryKind::DeleteRange => part.delete_range(e.key, e.value),
            }
        }
    }
    parts.into_iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))).collect()
}
