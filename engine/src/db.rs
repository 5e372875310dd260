//! [`Db`]: the embedded database's public API — open, reads, writes (async ones included),
//! snapshots, maintenance, metrics and close. It sits on top: the state it drives is
//! [`DbInner`] (`inner.rs`, which lists the parts and the lock order), and each concern over
//! that state has its own file (`write.rs`, `flush.rs`, `compaction.rs`, `read.rs`,
//! `recovery.rs`, ...). Nothing below imports this file.

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use strata_compaction::NUM_LEVELS;
use strata_core::{Error, Result};
use strata_wal::{Expect, WriteBatch};

use crate::async_write::{AsyncWriter, BatchSink, WriteTicket};
use crate::inner::DbInner;
use crate::metrics::{LevelMetrics, Metrics, STALL_CAUSES};
use crate::options::{Options, WriteOptions};
use crate::snapshot::{Iter, Snapshot};
use crate::transaction::Transaction;

/// Closes the database when the last user handle drops (background threads hold the
/// inner state, not this).
struct HandleToken(Arc<DbInner>);

impl Drop for HandleToken {
    fn drop(&mut self) {
        let _ = close(&self.0);
    }
}

/// An embedded, write-optimized LSM-tree key-value store.
///
/// `Db` is a cheap handle: clone it to share the database across threads (it is `Send +
/// Sync`). The database closes when [`Db::close`] is called or the last handle drops.
///
/// ```
/// use strata::{Db, Options, WriteBatch, Durability};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put(b"apple", b"red")?;
/// db.put(b"banana", b"yellow")?;
/// let mut batch = WriteBatch::new();
/// batch.put(b"cherry", b"dark red");
/// batch.delete(b"apple");
/// db.write_with(batch, Durability::Sync)?;
/// assert_eq!(db.get(b"apple")?, None);
/// assert_eq!(db.get(b"cherry")?.as_deref(), Some(&b"dark red"[..]));
/// let keys: Vec<_> = db.iter().map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, [&b"banana"[..], b"cherry"]);
/// db.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
    _handle: Arc<HandleToken>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

impl Db {
    /// Opens the database in `path`, creating the directory and an empty database if
    /// missing, and recovering from the logs whatever the last run left unflushed.
    ///
    /// Fails with [`Error::Locked`] if another handle, in this process or another, has it
    /// open; with [`Error::Corruption`] if its files are damaged (see
    /// [`Options::recovery_mode`]); with [`Error::InvalidArgument`] for an empty `path` or
    /// bad options, before touching any file; with [`Error::Io`] if a background thread
    /// cannot be started (the directory lock is released again).
    ///
    /// ```
    /// use strata::{Db, Options, Error};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// assert!(matches!(Db::open(dir.path(), Options::default()), Err(Error::Locked(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        let path = path.as_ref();
        crate::dir::check_path(path)?;
        let inner = crate::recovery::open(path, options)?;
        if let Err(e) = start_background(&inner) {
            // Stops the thread that did start and releases the lock.
            let _ = close(&inner);
            return Err(e);
        }
        Ok(Db { _handle: Arc::new(HandleToken(Arc::clone(&inner))), inner })
    }

    /// Opens the database in `path` for reading only, without taking its lock: another
    /// process (or handle) may have it open for writing meanwhile. Nothing is written to
    /// the directory — no log, no manifest, no flush of the recovered logs (they are
    /// replayed into memory), no purge — and no background thread runs. Every write, flush
    /// and compaction returns [`Error::ReadOnly`]; reads, snapshots, iterators and
    /// [`Db::verify`] work as usual.
    ///
    /// The handle sees the database as it was when it opened, never later writes. While a
    /// writer keeps working, the tables that handle reads may be compacted away by the
    /// writer: a read that opens such a table for the first time fails with
    /// [`Error::Io`]; reopen to see the current state. A directory that holds no database
    /// is an error, never created. Damage is reported as by [`Db::open`] with the same
    /// [`Options::recovery_mode`].
    ///
    /// ```
    /// use strata::{Db, Error, Options};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// db.put("k", "v")?;
    /// let reader = Db::open_read_only(dir.path(), Options::default())?; // db still open
    /// assert_eq!(reader.get("k")?.as_deref(), Some(&b"v"[..]));
    /// assert!(matches!(reader.put("k", "w"), Err(Error::ReadOnly)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        crate::dir::check_path(path.as_ref())?;
        let inner = crate::recovery::open_read_only(path.as_ref(), options)?;
        Ok(Db { _handle: Arc::new(HandleToken(Arc::clone(&inner))), inner })
    }

    /// Whether this handle was opened with [`Db::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Sets `key` to `value` with the default durability.
    ///
    /// Keys may be up to [`crate::MAX_KEY_SIZE`] (64 KiB) and values up to
    /// [`crate::MAX_VALUE_SIZE`] (128 MiB − 64 KiB − 8); larger is
    /// [`Error::InvalidArgument`], and nothing is logged.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("k", "v")?;
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.put_with(key, value, WriteOptions::default())
    }

    /// Sets `key` to `value` as `options` say: a [`crate::Durability`], or a [`WriteOptions`].
    ///
    /// ```
    /// use strata::{Db, Durability, Options};
    /// # let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// db.put_with("k", "v", Durability::Sync)?; // on stable storage when this returns
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: impl Into<WriteOptions>,
    ) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        // Sized exactly: one allocation, never regrown.
        let mut b = WriteBatch::with_capacity(WriteBatch::put_len(key, value));
        b.put(key, value);
        self.write_with(b, options)
    }

    /// Deletes every key in `range` (`start..end`, the end excluded) with the default
    /// durability: one log record and one memtable entry however many keys the range
    /// covers. Keys written afterwards are visible again; snapshots taken before still see
    /// the old keys. Compaction drops the covered versions and, at the bottom level, the
    /// range tombstone itself. An empty range (`start >= end`) deletes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// for i in 0..100u32 { db.put(format!("tenant/7/{i:03}"), "x")?; }
    /// db.put("tenant/8/000", "kept")?;
    /// let before = db.snapshot();
    /// db.delete_range("tenant/7/".."tenant/8")?;
    /// assert_eq!(db.prefix("tenant/").count(), 1);
    /// assert_eq!(before.prefix("tenant/7/").count(), 100); // the snapshot still sees them
    /// db.put("tenant/7/050", "back")?; // written after the delete: visible
    /// assert_eq!(db.get("tenant/7/050")?.as_deref(), Some(&b"back"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_range<K: AsRef<[u8]>>(&self, range: std::ops::Range<K>) -> Result<()> {
        self.delete_range_with(range, WriteOptions::default())
    }

    /// [`Db::delete_range`] with the durability and stall behaviour `options` ask for.
    ///
    /// ```
    /// use strata::Durability;
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("a", "1")?;
    /// db.delete_range_with("a".."b", Durability::Sync)?; // durable on return
    /// assert!(db.get("a")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_range_with<K: AsRef<[u8]>>(
        &self,
        range: std::ops::Range<K>,
        options: impl Into<WriteOptions>,
    ) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete_range(range.start, range.end);
        self.write_with(b, options)
    }

    /// Deletes `key` (writes a tombstone) with the default durability.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("k", "v")?;
    /// db.delete("k")?;
    /// assert!(db.get("k")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.delete_with(key, WriteOptions::default())
    }

    /// Deletes `key` as `options` say.
    ///
    /// ```
    /// use strata::{Db, Error, Options, WriteOptions};
    /// # let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// match db.delete_with("k", WriteOptions::default().no_wait(true)) {
    ///     Ok(()) | Err(Error::Busy) => {} // Busy: the engine is behind, nothing was written
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_with(
        &self,
        key: impl AsRef<[u8]>,
        options: impl Into<WriteOptions>,
    ) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write_with(b, options)
    }

    /// Applies `batch` atomically with the default durability: readers see all of it or
    /// none of it, and after a crash it is recovered whole or not at all.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_with(batch, WriteOptions::default())
    }

    /// Applies `batch` atomically as `options` say: with their durability (see
    /// [`crate::Durability`]), and failing with [`Error::Busy`] instead of stalling if they ask for
    /// [`WriteOptions::no_wait`].
    ///
    /// ```
    /// use strata::{Db, Durability, Options, WriteBatch};
    /// # let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut b = WriteBatch::new();
    /// b.put("balance/alice", "90");
    /// b.put("balance/bob", "110");
    /// db.write_with(b, Durability::Sync)?; // on stable storage when this returns
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_with(&self, batch: WriteBatch, options: impl Into<WriteOptions>) -> Result<()> {
        self.inner.write(batch, options.into().mode(self.inner.opts.durability))
    }

    /// Begins an optimistic transaction: its reads see the database as of now plus its own
    /// writes, and its commit fails with [`Error::Conflict`] if another commit changed what
    /// it read meanwhile (see [`Transaction`] for the retry loop).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// let mut tx = db.transaction();
    /// let n = tx.get("counter")?.map_or(0, |v| v[0]);
    /// tx.put("counter", [n + 1]);
    /// tx.commit()?;
    /// assert_eq!(db.get("counter")?.as_deref(), Some(&[1u8][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transaction(&self) -> Transaction {
        Transaction::begin(Arc::clone(&self.inner))
    }

    /// Sets `key` to `new` (`None`: deletes it) only if its current value is `expected`
    /// (`None`: absent), atomically: no write lands between the comparison and the swap.
    /// Fails with [`Error::ConditionFailed`] (nothing written) when the value differs.
    ///
    /// ```
    /// use strata::{Db, Error, Options};
    /// # let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// db.compare_and_swap("leader", None, Some(b"node-1"))?; // claim it if free
    /// let lost = db.compare_and_swap("leader", None, Some(b"node-2"));
    /// assert!(matches!(lost, Err(Error::ConditionFailed { .. })));
    /// db.compare_and_swap("leader", Some(b"node-1"), None)?; // release it
    /// assert!(db.get("leader")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<()> {
        self.write(compare_and_swap_batch(key.as_ref(), expected, new))
    }

    /// The current value of `key`, if any.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.inner.check_open()?;
        let seq = self.inner.commit.visible();
        let view = self.inner.current_view();
        self.inner.get_at(&view, key.as_ref(), seq)
    }

    /// The entries whose keys fall in `range`, in key order; the iterator is double-ended
    /// and reads one consistent state of the database (it takes an implicit snapshot).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// for k in ["a", "b", "c", "d"] { db.put(k, k)?; }
    /// let keys: Vec<_> = db.range("b".."d").map(|r| r.unwrap().0).collect();
    /// assert_eq!(keys, ["b", "c"]);
    /// let last = db.range("a"..="d").next_back().unwrap()?;
    /// assert_eq!(&last.0[..], b"d");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let seq = self.inner.commit.visible();
        Iter::for_db(Arc::clone(&self.inner), seq, crate::snapshot::owned_range(&range))
    }

    /// The entries whose keys start with `prefix`, in key order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("user/1", "ann")?;
    /// db.put("user/2", "bo")?;
    /// db.put("vendor/1", "acme")?;
    /// assert_eq!(db.prefix("user/").count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let seq = self.inner.commit.visible();
        let range = crate::db_iter::KeyRange::prefix(prefix.as_ref());
        Iter::for_db(Arc::clone(&self.inner), seq, range)
    }

    /// Every entry, in key order (`range(..)` cannot infer its key type).
    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }

    /// A consistent, read-only view of the database as it is now; it stays unchanged by
    /// later writes, flushes and compactions for as long as it lives.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("k", "old")?;
    /// let snap = db.snapshot();
    /// db.put("k", "new")?;
    /// assert_eq!(snap.get("k")?.as_deref(), Some(&b"old"[..]));
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"new"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(Arc::clone(&self.inner))
    }

    /// Flushes the active memtable to a level-0 table and waits for it (and every memtable
    /// waiting before it) to be durable in the table set.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_and_wait()
    }

    /// Compacts the whole database down to the last level and waits: afterwards every key
    /// lives in one table of L6, shadowed versions no snapshot sees and tombstones are gone.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// for i in 0..100u32 { db.put(i.to_be_bytes(), "v")?; }
    /// for i in 0..100u32 { db.delete(i.to_be_bytes())?; }
    /// db.compact()?;
    /// assert_eq!(db.metrics().table_bytes(), 0); // the tombstones reached the bottom and vanished
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact(&self) -> Result<()> {
        self.inner.compact_range_and_wait(None, None)
    }

    /// Compacts the tables overlapping `range` down to the last level and waits.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("a", "1")?;
    /// db.compact_range("a".."b")?;
    /// assert_eq!(db.metrics().levels[6].files, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact_range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<()> {
        let (lo, hi) = crate::compaction::range_to_inclusive(&range);
        self.inner.compact_range_and_wait(lo.as_deref(), hi.as_deref())
    }

    /// Waits until no flush or compaction is pending or running (like RocksDB's
    /// `WaitForCompact`): for benchmarks and tests that need a settled tree.
    pub fn wait_for_compaction(&self) -> Result<()> {
        self.inner.check_open()?;
        if self.inner.read_only {
            return Ok(()); // no background work ever runs
        }
        self.inner.wait_for_compaction()
    }

    /// A snapshot of the database's counters and latency histograms. It stays readable
    /// after [`Db::close`] (it holds no user data), giving the final counters.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("k", "v")?;
    /// db.close()?;
    /// assert_eq!(db.metrics().puts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> Metrics {
        collect_metrics(&self.inner)
    }

    /// Closes the database: waits for in-flight writes, syncs the log, flushes memtables
    /// that hold unlogged writes, stops background work and releases the directory lock.
    ///
    /// Afterwards every read and write on every clone of the handle fails with
    /// [`Error::Closed`]: `get`, `put`, `delete`, `write*`, `flush`, `compact*`,
    /// `wait_for_compaction`, `snapshot().get()`, and the first step of any iterator. A
    /// [`Snapshot`] or [`Iter`] made before the close and still alive fails the same way on
    /// its next call (an iterator yields `Err(Closed)` once, then `None`), so none of them
    /// reads the directory after another handle reopened it. Only [`Db::metrics`],
    /// [`Db::path`], [`Db::is_read_only`] and [`Snapshot::sequence`] still answer. Closing again returns `Ok`.
    /// Dropping the last handle closes too, ignoring errors; call `close` to see them.
    ///
    /// ```
    /// use strata::{Db, Error, Options};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// db.put("k", "v")?;
    /// let (other, snap, mut it) = (db.clone(), db.snapshot(), db.iter());
    /// db.close()?;
    /// assert!(matches!(other.get("k"), Err(Error::Closed)));
    /// assert!(matches!(other.iter().next(), Some(Err(Error::Closed))));
    /// assert!(matches!(snap.get("k"), Err(Error::Closed)));
    /// assert!(matches!(it.next(), Some(Err(Error::Closed))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        close(&self.inner)
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }
}

/// Asynchronous writes: a queue and one worker in front of the write path
/// (`engine/src/async_write.rs`).
impl Db {
    fn async_writer(&self) -> Result<&AsyncWriter> {
        if let Some(w) = self.inner.async_writer.get() {
            return Ok(w);
        }
        self.inner.check_writable()?;
        let sink: Weak<dyn BatchSink> = Arc::downgrade(&self.inner) as Weak<dyn BatchSink>;
        let started = AsyncWriter::start(sink, self.inner.opts.write_queue_depth)?;
        // If another thread won the race, ours is dropped: its worker sees the shutdown
        // flag and exits.
        Ok(self.inner.async_writer.get_or_init(|| started))
    }

    /// Queues `batch` for writing with the default durability and returns at once with a
    /// ticket; blocks only while the submission queue ([`crate::Options::write_queue_depth`]
    /// batches) is full. Errors — including [`Error::Closed`] — arrive through the ticket.
    ///
    /// Batches queued by `write_async` are applied in submission order, each atomically.
    /// They are not ordered against concurrent synchronous writes until their ticket is
    /// waited on. `close` waits for queued batches to be applied first.
    ///
    /// ```
    /// use strata::{Db, Options, WriteBatch};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut b = WriteBatch::new();
    /// b.put("a", "1");
    /// let t = db.write_async(b);
    /// // ... other work ...
    /// t.wait()?;
    /// assert!(db.get("a")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_async(&self, batch: WriteBatch) -> WriteTicket {
        self.write_async_with(batch, WriteOptions::default())
    }

    /// [`Db::write_async`] as `options` say. With [`WriteOptions::no_wait`] it never blocks:
    /// a full submission queue resolves the ticket at once with [`Error::Busy`] (nothing is
    /// queued), and the queued write fails with `Busy` rather than stall (see
    /// [`WriteOptions`]).
    ///
    /// ```
    /// use strata::{Db, Durability, Error, Options, WriteBatch, WriteOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut b = WriteBatch::new();
    /// b.put("k", "v");
    /// let options = WriteOptions::default().durability(Durability::Sync).no_wait(true);
    /// match db.write_async_with(b, options).wait() {
    ///     Ok(()) => {}
    ///     Err(Error::Busy) => { /* back off and retry */ }
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
        if batch.is_empty() {
            return WriteTicket::resolved(self.inner.check_writable());
        }
        // Refused here rather than by the worker: an invalid write never takes a queue
        // slot, and the worker's merged group never has to be split up again for it.
        if let Err(e) =
            crate::write::validate(&batch).and_then(|_| options.resolve(self.inner.opts.durability))
        {
            return WriteTicket::resolved(Err(e));
        }
        let writer = match self.async_writer() {
            Ok(w) => w,
            Err(e) => return WriteTicket::resolved(Err(e)),
        };
        let permit = if options.no_wait {
            writer.try_reserve()
        } else {
            writer.reserve().ok_or(Error::Closed)
        };
        match permit {
            Ok(permit) => permit.submit(batch, options),
            Err(e) => WriteTicket::resolved(Err(e)),
        }
    }

    /// Submissions waiting in this database's async write queue (0 if it never started).
    pub fn async_queue_len(&self) -> usize {
        self.inner.async_writer.get().map_or(0, AsyncWriter::queued)
    }

    /// Makes every write applied so far durable: one `fdatasync` of the active log (older
    /// logs were synced when their memtables were sealed), or a flush if the memtable holds
    /// writes that skipped the log (`Durability::None`). A failure poisons the database.
    pub(crate) fn sync_log(&self) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let w = inner.commit.lock();
        if w.unlogged {
            drop(w);
            return self.flush();
        }
        match w.wal.as_ref() {
            Some(wal) => wal.sync().inspect_err(|e| inner.poison(e)),
            None => Ok(()),
        }
    }

    /// Waits until every write queued with [`Db::write_async`] before this call is applied
    /// (for resharding's catch-up, which must read what those writes left).
    pub(crate) fn async_barrier(&self) {
        if let Some(w) = self.inner.async_writer.get() {
            w.barrier();
        }
    }

    /// The async writer, started on first use (for the sharded layer's reservations).
    pub(crate) fn async_writer_for_shard(&self) -> Result<&AsyncWriter> {
        self.async_writer()
    }
}

/// The async writer's worker applies batches through the ordinary write path.
impl BatchSink for DbInner {
    fn write(&self, batch: WriteBatch, options: &WriteOptions) -> Result<()> {
        DbInner::write(self, batch, options.mode(self.opts.durability))
    }
}

/// Starts the flush and compaction threads, each poisoning the database if it panics. If
/// the OS refuses one, the error is returned and the caller must [`close`] the database,
/// which stops the one that started.
fn start_background(db: &Arc<DbInner>) -> Result<()> {
    type Loop = fn(&Arc<DbInner>);
    let threads: [(&str, &'static str, &'static str, Loop); 2] = [
        ("strata-flush", "flush", "spawn the flush thread", crate::flush::flush_loop),
        (
            "strata-compact",
            "compaction",
            "spawn the compaction thread",
            crate::compaction::compaction_loop,
        ),
    ];
    for (name, job, spawning, body) in threads {
        let worker = Arc::clone(db);
        db.background
            .spawn(name, move || guard_thread(&worker, job, body))
            .map_err(|e| Error::io(spawning, &db.dir, e))?;
    }
    Ok(())
}

/// Backstop for a panic outside any job (in a loop's own bookkeeping): the thread ends, and
/// the database is poisoned so that nothing waits for it.
fn guard_thread(db: &Arc<DbInner>, thread: &'static str, body: fn(&Arc<DbInner>)) {
    let run = std::panic::AssertUnwindSafe(|| body(db));
    if let Err(payload) = std::panic::catch_unwind(run) {
        db.poison(&strata_core::thread::panic_error(thread, payload.as_ref()));
    }
}

/// Closes `db`: applies queued async writes, refuses new ones, flushes unlogged writes,
/// closes the log, stops the threads, seals the log in the manifest, releases the lock.
fn close(db: &DbInner) -> Result<()> {
    // Apply the queued `write_async` batches before refusing writes.
    if let Some(w) = db.async_writer.get() {
        w.shutdown();
    }
    if !db.health.close() {
        return Ok(());
    }
    let mut result = Ok(());
    // Writes made without the log are durable only in a table: flush them first.
    let unlogged = db.commit.lock().unlogged;
    if unlogged && !db.health.is_poisoned() {
        result = db.flush_all();
    }
    // Writers that got past `check_open` finish first: the commit lock orders us after
    // their enqueue, and closing the log writes and syncs their groups.
    if let Some(Err(e)) = db.commit.lock().wal.as_ref().map(|wal| wal.close()) {
        if result.is_ok() {
            result = Err(e);
        }
    }
    db.background.stop();
    db.commit.notify_all();
    // Only a log whose every byte is durable may be sealed; the next open holds it to
    // that length.
    if result.is_ok() && !db.health.is_poisoned() && !db.read_only {
        result = db.record_clean_close();
    }
    db.lock_file.lock().take();
    db.tables.clear();
    if let Some(e) = db.health.error() {
        if result.is_ok() {
            result = Err(e.poisoned());
        }
    }
    result
}

/// Reads every part's counters into one [`Metrics`].
fn collect_metrics(db: &DbInner) -> Metrics {
    let m = &db.metrics;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let wal = db.commit.lock().wal_totals();
    let view = db.current_view();
    let config = db.compaction_config();
    let levels = (0..NUM_LEVELS)
        .map(|l| LevelMetrics {
            files: view.version.num_files(l),
            bytes: view.version.level_bytes(l),
            score: strata_compaction::level_score(&config, &view.version, l),
            read_bytes: load(&m.level_read_bytes[l]),
            written_bytes: load(&m.level_written_bytes[l]),
            compactions: load(&m.level_compactions[l]),
            compaction_time: std::time::Duration::from_nanos(load(&m.level_compaction_nanos[l])),
        })
        .collect();
    let writes = m.write_totals();
    Metrics {
        puts: writes.puts,
        deletes: writes.deletes,
        batches: writes.batches,
        user_bytes: writes.user_bytes,
        wal_bytes: wal.bytes_written,
        wal_writes: wal.write_calls,
        wal_syncs: wal.syncs,
        wal_tail_dropped_bytes: load(&m.wal_tail_dropped_bytes),
        wal_sealed_lost_bytes: load(&m.wal_sealed_lost_bytes),
        flushes: db.versions.flushes(),
        flush_bytes: load(&m.flush_bytes),
        ingested_files: load(&m.ingested_files),
        ingested_bytes: load(&m.ingested_bytes),
        compactions: load(&m.compactions),
        stalls: STALL_CAUSES
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    *c,
                    load(&m.stall_counts[i]),
                    std::time::Duration::from_nanos(load(&m.stall_nanos[i])),
                )
            })
            .collect(),
        memtable_bytes: view.mem.approximate_bytes() as u64,
        immutable_memtables: view.imms.len(),
        immutable_bytes: view.imms.iter().map(|i| i.approximate_bytes() as u64).sum(),
        levels,
        block_cache_hits: db.tables.block_cache().hits(),
        block_cache_misses: db.tables.block_cache().misses(),
        bloom_saved_lookups: db.tables.stats().bloom_negatives(),
        write_latency: m.write_latency.summary(),
        wal_sync_latency: m.wal_sync_latency.summary(),
        flush_duration: m.flush_duration.summary(),
        last_sequence: db.commit.visible(),
    }
}

/// The conditional batch of a compare-and-swap (shared with the sharded layer).
pub(crate) fn compare_and_swap_batch(
    key: &[u8],
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.expect(key, expected.map_or(Expect::Absent, |v| Expect::Value(v.to_vec())));
    match new {
        Some(v) => batch.put(key, v),
        None => batch.delete(key),
    }
    batch
}
