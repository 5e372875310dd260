//! [`ShardedDb`]: the keyspace split across N fully independent [`Db`] instances — each with
//! its own directory (possibly on its own disk), WAL, memtables, flush and compaction
//! threads — so writes to different shards never contend.
//!
//! See [`ShardedDb`] for what holds across shards.
//!
//! The layout (shard count, partitioner, split points, shard paths) is persisted in the
//! `SHARDS` file at the root (`docs/format/shards.md`); reopening with conflicting settings
//! fails with [`Error::InvalidArgument`] instead of silently routing keys elsewhere.

mod iter;
mod layout;
mod metrics;
mod partitioner;
mod store;
mod transaction;

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_core::fs::FileLock;
use strata_core::key::SeqNo;
use strata_core::{Error, Result};
use strata_wal::WriteBatch;

use crate::async_write::WriteTicket;
use crate::db::Db;
use crate::db_iter::KeyRange;
use crate::options::{Options, WriteOptions};
use crate::snapshot::{owned_range, Snapshot};

pub use iter::ShardedIter;
use layout::{Layout, ShardKeySpec};
use metrics::RateWindow;
pub use metrics::{Clock, ManualClock, ShardMetrics, ShardedMetrics};
use partitioner::Router;
pub use partitioner::{CustomShardKey, HashRing, Partitioner, ShardKey, DEFAULT_VNODES_PER_SHARD};
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
}

impl std::fmt::Debug for ShardedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedOptions")
            .field("shards", &self.shards)
            .field("partitioner", &self.partitioner)
            .field("shard_key", &self.shard_key)
            .field("shard_paths", &self.shard_paths)
            .field("engine", &self.engine)
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
    /// options.
    fn reconcile(&self, stored: Option<Layout>) -> Result<(Layout, bool)> {
        let Some(stored) = stored else {
            let paths = match &self.shard_paths {
                Some(p) => p.clone(),
                None => (0..self.shards).map(|i| PathBuf::from(format!("shard-{i:03}"))).collect(),
            };
            let vnodes = match self.partitioner {
                Partitioner::Hash => DEFAULT_VNODES_PER_SHARD,
                Partitioner::Range(_) => 0,
            };
            return Ok((
                Layout {
                    partitioner: self.partitioner.clone(),
                    vnodes_per_shard: vnodes,
                    shard_key: ShardKeySpec::of(&self.shard_key),
                    paths,
                },
                true,
            ));
        };
        let conflict = |what: String| {
            Err(Error::InvalidArgument(format!("sharded database exists with {what}")))
        };
        if stored.shards() != self.shards {
            return conflict(format!("{} shards, not {}", stored.shards(), self.shards));
        }
        if stored.partitioner != self.partitioner {
            return conflict(format!(
                "partitioner {:?}, not {:?}",
                stored.partitioner, self.partitioner
            ));
        }
        if stored.shard_key != ShardKeySpec::of(&self.shard_key) {
            return conflict(format!(
                "shard key {:?}, not {:?} (pass the one it was created with to \
                 ShardedOptions::shard_key)",
                stored.shard_key, self.shard_key
            ));
        }
        if let Some(paths) = &self.shard_paths {
            if *paths != stored.paths {
                return conflict(format!("shard paths {:?}, not {:?}", stored.paths, paths));
            }
        }
        Ok((stored, false))
    }
}

struct ShardedInner {
    root: PathBuf,
    layout: Layout,
    router: Router,
    shards: Vec<Db>,
    rates: Vec<RateWindow>,
    clock: Arc<dyn Clock>,
    root_lock: Mutex<Option<FileLock>>,
    /// Shared with every [`ShardedIter`], which checks it on each step; iterators hold no
    /// handle, so they do not keep the database open.
    closed: Arc<AtomicBool>,
}

impl Drop for ShardedInner {
    fn drop(&mut self) {
        // The last handle is gone and the shards close as `shards` drops: iterators still
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
            .field("shards", &self.inner.shards.len())
            .field("partitioner", &self.inner.layout.partitioner)
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
        let (layout, created) = options.reconcile(Layout::load(fs.as_ref(), &root)?)?;
        let dirs = shard_dirs(&root, &layout)?;
        if created {
            // The layout is durable before any shard exists, so no shard ever holds data
            // routed by a layout that a crash could forget.
            layout.store(fs.as_ref(), &root)?;
        }
        let shards = open_shards(&dirs, |d| Db::open(d, options.engine.clone()))?;
        Ok(ShardedDb::assemble(root, layout, shards, Some(root_lock), options))
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
        let Some(stored) = Layout::load(fs.as_ref(), &root)? else {
            return Err(Error::InvalidArgument(format!(
                "no sharded database at {} to open read-only",
                root.display()
            )));
        };
        let (layout, _) = options.reconcile(Some(stored))?;
        let dirs = shard_dirs(&root, &layout)?;
        let shards = open_shards(&dirs, |d| Db::open_read_only(d, options.engine.clone()))?;
        Ok(ShardedDb::assemble(root, layout, shards, None, options))
    }

    fn assemble(
        root: PathBuf,
        layout: Layout,
        shards: Vec<Db>,
        root_lock: Option<FileLock>,
        options: ShardedOptions,
    ) -> ShardedDb {
        let (clock, shard_key) = (options.clock, options.shard_key);
        let rates = shards.iter().map(|_| RateWindow::new(clock.as_ref())).collect();
        let router =
            Router::new(&layout.partitioner, layout.shards(), layout.vnodes_per_shard, shard_key);
        ShardedDb {
            inner: Arc::new(ShardedInner {
                root,
                layout,
                router,
                shards,
                rates,
                clock,
                root_lock: Mutex::new(root_lock),
                closed: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// The root directory (holding `SHARDS`).
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The partitioner the database was created with.
    pub fn partitioner(&self) -> &Partitioner {
        &self.inner.layout.partitioner
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
        self.inner.router.shard_for(key.as_ref())
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

    /// Shard `i`'s database, for per-shard inspection (e.g. its metrics or path).
    pub fn shard(&self, i: usize) -> Option<&Db> {
        self.inner.shards.get(i)
    }

    fn db_for(&self, key: &[u8]) -> (usize, &Db) {
        let i = self.shard_of(key);
        // The router only yields indices below the shard count.
        let db = self.inner.shards.get(i).or_else(|| self.inner.shards.first());
        (i, db.unwrap_or_else(|| unreachable!("a sharded database has at least one shard")))
    }

    fn record(&self, shard: usize, writes: u64) {
        if let Some(w) = self.inner.rates.get(shard) {
            w.record(self.inner.clock.as_ref(), writes);
        }
    }

    /// Splits `batch` into one batch per shard, in shard order, preserving entry order
    /// within each part; a batch whose entries all go to one shard is passed on as is.
    /// Sizes and the durability `options` ask for are checked first: an invalid write must
    /// fail whole before any shard logs a part of it.
    fn split(&self, batch: WriteBatch, options: &WriteOptions) -> Result<Vec<(usize, WriteBatch)>> {
        crate::write::validate(&batch)?;
        if let Some(db) = self.inner.shards.first() {
            options.resolve(db.inner.opts.durability)?;
        }
        let routes: Vec<usize> = batch.iter().map(|e| self.shard_of(e.key)).collect();
        if let Some((key, _)) = batch.expectations().first() {
            // A condition is checked atomically with the writes only on one shard.
            let bound = self.shard_of(key);
            let expected = batch.expectations().iter().map(|(k, _)| self.shard_of(k));
            if let Some(other) = routes.iter().copied().chain(expected).find(|&s| s != bound) {
                return Err(Error::CrossShard { bound, other });
            }
            return Ok(vec![(bound, batch)]);
        }
        let Some(&first) = routes.first() else { return Ok(Vec::new()) };
        if routes.iter().all(|&s| s == first) {
            return Ok(vec![(first, batch)]);
        }
        let mut parts: Vec<Option<WriteBatch>> =
            (0..self.inner.shards.len()).map(|_| None).collect();
        for (e, &s) in batch.iter().zip(&routes) {
            if let Some(slot) = parts.get_mut(s) {
                let part = slot.get_or_insert_with(WriteBatch::new);
                match e.kind {
                    strata_core::key::ValueKind::Put => part.put(e.key, e.value),
                    strata_core::key::ValueKind::Delete => part.delete(e.key),
                }
            }
        }
        Ok(parts.into_iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))).collect())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
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
        let (i, db) = self.db_for(key.as_ref());
        self.record(i, 1);
        db.put_with(key, value, options)
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
        let (i, db) = self.db_for(key.as_ref());
        self.record(i, 1);
        db.delete_with(key, options)
    }

    /// The current value of `key`, read from its one shard.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.db_for(key.as_ref()).1.get(key)
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
        let mut parts = self.split(batch, &options)?;
        if parts.len() <= 1 {
            let Some((i, part)) = parts.pop() else { return Ok(()) };
            self.record(i, part.len() as u64);
            return self.shard_db(i)?.write_with(part, options);
        }
        // Several shards: hand the parts to the shards' write queues so their log writes
        // and fsyncs overlap, then wait for all.
        self.submit_parts(parts, options)?.wait()
    }

    fn shard_db(&self, i: usize) -> Result<&Db> {
        // The router yields only indices below the shard count.
        self.inner.shards.get(i).ok_or_else(|| {
            Error::Internal(format!("the router chose shard {i}, which does not exist"))
        })
    }

    /// Reserves a queue slot on every shard the parts touch (waiting, or with
    /// [`WriteOptions::no_wait`] failing with [`Error::Busy`] and queueing nothing), then
    /// submits every part.
    fn submit_parts(
        &self,
        parts: Vec<(usize, WriteBatch)>,
        options: WriteOptions,
    ) -> Result<WriteTicket> {
        let mut permits = Vec::with_capacity(parts.len());
        // Shard order: every caller reserves in the same order.
        for (i, _) in &parts {
            let writer = self.shard_db(*i)?.async_writer_for_shard()?;
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
            .map(|((i, part), permit)| {
                self.record(i, part.len() as u64);
                permit.submit(part, options)
            })
            .collect();
        Ok(WriteTicket::join(tickets))
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
        self.split(batch, &options)
            .and_then(|parts| self.submit_parts(parts, options))
            .unwrap_or_else(|e| WriteTicket::resolved(Err(e)))
    }

    fn scan(&self, range: KeyRange) -> ShardedIter {
        let shards = self.inner.router.shards_for_range(self.inner.shards.len(), &range);
        let iters = shards
            .into_iter()
            .filter_map(|i| self.inner.shards.get(i))
            .map(|db| db.range((range.start.clone(), range.end.clone())))
            .collect();
        ShardedIter::new(iters, self.inner.router.is_ordered(), Arc::clone(&self.inner.closed))
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
        ShardedSnapshot {
            snaps: self.inner.shards.iter().map(Db::snapshot).collect(),
            db: self.clone(),
        }
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
        for i in self.inner.router.shards_for_range(self.inner.shards.len(), &range) {
            self.shard_db(i)?.compact_range((range.start.clone(), range.end.clone()))?;
        }
        Ok(())
    }

    /// Waits until no shard has a flush or compaction pending or running.
    pub fn wait_for_compaction(&self) -> Result<()> {
        self.each_shard(Db::wait_for_compaction)
    }

    fn each_shard(&self, f: impl Fn(&Db) -> Result<()>) -> Result<()> {
        self.check_open()?;
        self.inner.shards.iter().try_for_each(f)
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
        let clock = self.inner.clock.as_ref();
        let shards = self
            .inner
            .shards
            .iter()
            .zip(&self.inner.rates)
            .enumerate()
            .map(|(i, (db, rate))| {
                ShardMetrics::new(i, rate.rate(clock), db.async_queue_len(), db.metrics())
            })
            .collect();
        ShardedMetrics { shards }
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
        let clock = self.inner.clock.as_ref();
        metrics::hot(&self.inner.rates.iter().map(|r| r.rate(clock)).collect::<Vec<_>>(), factor)
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
        let mut result = Ok(());
        for db in &self.inner.shards {
            if let Err(e) = db.close() {
                if result.is_ok() {
                    result = Err(e);
                }
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
        let i = self.db.shard_of(key.as_ref());
        self.snaps.get(i).ok_or(Error::Closed)?.get(key)
    }

    fn scan(&self, range: KeyRange) -> ShardedIter {
        let router = &self.db.inner.router;
        let iters = router
            .shards_for_range(self.snaps.len(), &range)
            .into_iter()
            .filter_map(|i| self.snaps.get(i))
            .map(|s| s.range((range.start.clone(), range.end.clone())))
            .collect();
        ShardedIter::new(iters, router.is_ordered(), Arc::clone(&self.db.inner.closed))
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
