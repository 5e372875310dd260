//! [`KvStore`] and [`KvSnapshot`]: the API a [`Db`] and a [`ShardedDb`] share, as traits
//! that can be used as `dyn` objects, so code written for one runs on the other — chosen at
//! run time if need be.

use std::ops::Bound;

use bytes::Bytes;
use strata_core::Result;
use strata_wal::WriteBatch;

use super::{ShardedDb, ShardedSnapshot};
use crate::async_write::WriteTicket;
use crate::db::Db;
use crate::options::WriteOptions;
use crate::snapshot::Snapshot;

/// The iterator of a [`KvStore`] or [`KvSnapshot`] scan: `(key, value)` pairs in key order,
/// double-ended, as the inherent [`crate::Iter`] and [`crate::ShardedIter`] it boxes.
///
/// ```
/// use strata::{KvIter, KvStore, ShardedDb, ShardedOptions};
/// let dir = tempfile::tempdir()?;
/// let store = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
/// for k in ["a", "b", "c"] { store.put(k, k)?; }
/// let mut it: KvIter = KvStore::iter(&store);
/// assert_eq!(&it.next_back().unwrap()?.0[..], b"c");
/// assert_eq!(it.count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type KvIter = Box<dyn DoubleEndedIterator<Item = Result<(Bytes, Bytes)>> + Send>;

/// A key range for [`KvStore::range`] and [`KvSnapshot::range`]: the start and end bounds.
/// Any range the inherent `range` methods take converts with [`std::ops::RangeBounds`]'s
/// `start_bound` and `end_bound`.
///
/// ```
/// use std::ops::{Bound, RangeBounds};
/// use strata::{Db, KeyBounds, KvStore, Options};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// for k in ["a", "b", "c", "d"] { db.put(k, k)?; }
/// let store: &dyn KvStore = &db;
/// let b_to_c: KeyBounds = (Bound::Included(b"b"), Bound::Included(b"c"));
/// assert_eq!(store.range(b_to_c).count(), 2);
/// let r = &b"b"[..]..;
/// assert_eq!(store.range((r.start_bound().cloned(), r.end_bound().cloned())).count(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The operations common to [`Db`] and [`ShardedDb`]. Each method behaves as the inherent
/// method of the same name on the implementing type.
///
/// The trait is object safe: `&dyn KvStore`, `Box<dyn KvStore>` and `Arc<dyn KvStore>` work,
/// so a program can pick a plain or a sharded store at run time and hold either behind one
/// type. Object safety forbids generic methods, so where the inherent methods take
/// `impl AsRef<[u8]>` keys and any `RangeBounds` range, the trait takes `&[u8]` keys, a
/// [`KeyBounds`] pair of bounds, and a [`WriteOptions`] (not `impl Into<WriteOptions>`); scans
/// return a boxed [`KvIter`], since the two stores' iterator types differ. `b"key"` and
/// `"key".as_bytes()` are `&[u8]`s already; use the inherent methods where the concrete type
/// is known.
///
/// ```
/// use std::ops::Bound;
/// use strata::{Db, Durability, KvStore, Options, ShardedDb, ShardedOptions};
///
/// /// Counts the entries under `prefix`, on any store.
/// fn count_prefix(store: &dyn KvStore, prefix: &str) -> strata::Result<usize> {
///     let mut n = 0;
///     for item in store.prefix(prefix.as_bytes()) {
///         item?;
///         n += 1;
///     }
///     Ok(n)
/// }
///
/// fn load(store: &dyn KvStore) -> strata::Result<()> {
///     for i in 0..10 {
///         store.put(format!("user/{i}").as_bytes(), b"x")?;
///     }
///     store.delete_with(b"user/3", Durability::Sync.into())
/// }
///
/// let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// let stores: Vec<Box<dyn KvStore>> = vec![
///     Box::new(Db::open(a.path(), Options::default())?),
///     Box::new(ShardedDb::open(b.path(), ShardedOptions::new(4))?),
/// ];
/// for store in &stores {
///     load(store.as_ref())?;
///     assert_eq!(count_prefix(store.as_ref(), "user/")?, 9);
///     let after_5 = (Bound::Excluded(&b"user/5"[..]), Bound::Unbounded);
///     assert_eq!(store.range(after_5).count(), 4);
///     store.close()?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait KvStore: Send + Sync {
    /// Sets `key` to `value` with the default durability.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Sets `key` to `value` as `options` say.
    fn put_with(&self, key: &[u8], value: &[u8], options: WriteOptions) -> Result<()>;
    /// The current value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;
    /// Deletes `key` with the default durability.
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// Deletes `key` as `options` say.
    fn delete_with(&self, key: &[u8], options: WriteOptions) -> Result<()>;
    /// Deletes every key in `start..end` with the default durability (see
    /// [`Db::delete_range`], [`ShardedDb::delete_range`]).
    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()>;
    /// Deletes every key in `start..end` as `options` say.
    fn delete_range_with(&self, start: &[u8], end: &[u8], options: WriteOptions) -> Result<()>;
    /// Applies `batch` with the default durability.
    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// Applies `batch` as `options` say.
    fn write_with(&self, batch: WriteBatch, options: WriteOptions) -> Result<()>;
    /// Queues `batch`; the ticket resolves when it is durable and visible.
    fn write_async(&self, batch: WriteBatch) -> WriteTicket;
    /// Queues `batch` as `options` say (with [`WriteOptions::no_wait`], a full queue
    /// resolves the ticket at once with [`crate::Error::Busy`]).
    fn write_async_with(&self, batch: WriteBatch, options: WriteOptions) -> WriteTicket;
    /// The entries in `range`, in key order.
    fn range(&self, range: KeyBounds<'_>) -> KvIter;
    /// The entries whose keys start with `prefix`, in key order.
    fn prefix(&self, prefix: &[u8]) -> KvIter;
    /// Every entry, in key order.
    fn iter(&self) -> KvIter;
    /// A consistent, read-only view of the store as it is now (per shard for a
    /// [`ShardedDb`]: see [`ShardedDb::snapshot`]).
    fn snapshot(&self) -> Box<dyn KvSnapshot>;
    /// Flushes memtables to tables and waits.
    fn flush(&self) -> Result<()>;
    /// Compacts everything down to the last level and waits.
    fn compact(&self) -> Result<()>;
    /// Waits until no flush or compaction is pending or running.
    fn wait_for_compaction(&self) -> Result<()>;
    /// Closes the store.
    fn close(&self) -> Result<()>;
}

/// A snapshot of a [`KvStore`], from [`KvStore::snapshot`]: a [`Snapshot`] or a
/// [`ShardedSnapshot`]. Object safe, with the same `&[u8]` arguments as [`KvStore`].
///
/// ```
/// use strata::{Db, KvStore, Options};
/// let dir = tempfile::tempdir()?;
/// let store: Box<dyn KvStore> = Box::new(Db::open(dir.path(), Options::default())?);
/// store.put(b"k", b"old")?;
/// let snap = store.snapshot();
/// store.put(b"k", b"new")?;
/// assert_eq!(snap.get(b"k")?.as_deref(), Some(&b"old"[..]));
/// assert_eq!(snap.iter().count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait KvSnapshot: Send + Sync {
    /// The value of `key` as of the snapshot.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;
    /// The entries in `range` as of the snapshot, in key order.
    fn range(&self, range: KeyBounds<'_>) -> KvIter;
    /// The entries whose keys start with `prefix` as of the snapshot, in key order.
    fn prefix(&self, prefix: &[u8]) -> KvIter;
    /// Every entry as of the snapshot, in key order.
    fn iter(&self) -> KvIter;
}

impl KvStore for Db {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Db::put(self, key, value)
    }
    fn put_with(&self, key: &[u8], value: &[u8], options: WriteOptions) -> Result<()> {
        Db::put_with(self, key, value, options)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Db::get(self, key)
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        Db::delete(self, key)
    }
    fn delete_with(&self, key: &[u8], options: WriteOptions) -> Result<()> {
        Db::delete_with(self, key, options)
    }
    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        Db::delete_range(self, start..end)
    }
    fn delete_range_with(&self, start: &[u8], end: &[u8], options: WriteOptions) -> Result<()> {
        Db::delete_range_with(self, start..end, options)
    }
    fn write(&self, batch: WriteBatch) -> Result<()> {
        Db::write(self, batch)
    }
    fn write_with(&self, batch: WriteBatch, options: WriteOptions) -> Result<()> {
        Db::write_with(self, batch, options)
    }
    fn write_async(&self, batch: WriteBatch) -> WriteTicket {
        Db::write_async(self, batch)
    }
    fn write_async_with(&self, batch: WriteBatch, options: WriteOptions) -> WriteTicket {
        Db::write_async_with(self, batch, options)
    }
    fn range(&self, range: KeyBounds<'_>) -> KvIter {
        Box::new(Db::range::<&[u8], _>(self, range))
    }
    fn prefix(&self, prefix: &[u8]) -> KvIter {
        Box::new(Db::prefix(self, prefix))
    }
    fn iter(&self) -> KvIter {
        Box::new(Db::iter(self))
    }
    fn snapshot(&self) -> Box<dyn KvSnapshot> {
        Box::new(Db::snapshot(self))
    }
    fn flush(&self) -> Result<()> {
        Db::flush(self)
    }
    fn compact(&self) -> Result<()> {
        Db::compact(self)
    }
    fn wait_for_compaction(&self) -> Result<()> {
        Db::wait_for_compaction(self)
    }
    fn close(&self) -> Result<()> {
        Db::close(self)
    }
}

impl KvStore for ShardedDb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        ShardedDb::put(self, key, value)
    }
    fn put_with(&self, key: &[u8], value: &[u8], options: WriteOptions) -> Result<()> {
        ShardedDb::put_with(self, key, value, options)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        ShardedDb::get(self, key)
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        ShardedDb::delete(self, key)
    }
    fn delete_with(&self, key: &[u8], options: WriteOptions) -> Result<()> {
        ShardedDb::delete_with(self, key, options)
    }
    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        ShardedDb::delete_range(self, start..end)
    }
    fn delete_range_with(&self, start: &[u8], end: &[u8], options: WriteOptions) -> Result<()> {
        ShardedDb::delete_range_with(self, start..end, options)
    }
    fn write(&self, batch: WriteBatch) -> Result<()> {
        ShardedDb::write(self, batch)
    }
    fn write_with(&self, batch: WriteBatch, options: WriteOptions) -> Result<()> {
        ShardedDb::write_with(self, batch, options)
    }
    fn write_async(&self, batch: WriteBatch) -> WriteTicket {
        ShardedDb::write_async(self, batch)
    }
    fn write_async_with(&self, batch: WriteBatch, options: WriteOptions) -> WriteTicket {
        ShardedDb::write_async_with(self, batch, options)
    }
    fn range(&self, range: KeyBounds<'_>) -> KvIter {
        Box::new(ShardedDb::range::<&[u8], _>(self, range))
    }
    fn prefix(&self, prefix: &[u8]) -> KvIter {
        Box::new(ShardedDb::prefix(self, prefix))
    }
    fn iter(&self) -> KvIter {
        Box::new(ShardedDb::iter(self))
    }
    fn snapshot(&self) -> Box<dyn KvSnapshot> {
        Box::new(ShardedDb::snapshot(self))
    }
    fn flush(&self) -> Result<()> {
        ShardedDb::flush(self)
    }
    fn compact(&self) -> Result<()> {
        ShardedDb::compact(self)
    }
    fn wait_for_compaction(&self) -> Result<()> {
        ShardedDb::wait_for_compaction(self)
    }
    fn close(&self) -> Result<()> {
        ShardedDb::close(self)
    }
}

impl KvSnapshot for Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Snapshot::get(self, key)
    }
    fn range(&self, range: KeyBounds<'_>) -> KvIter {
        Box::new(Snapshot::range::<&[u8], _>(self, range))
    }
    fn prefix(&self, prefix: &[u8]) -> KvIter {
        Box::new(Snapshot::prefix(self, prefix))
    }
    fn iter(&self) -> KvIter {
        Box::new(Snapshot::iter(self))
    }
}

impl KvSnapshot for ShardedSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        ShardedSnapshot::get(self, key)
    }
    fn range(&self, range: KeyBounds<'_>) -> KvIter {
        Box::new(ShardedSnapshot::range::<&[u8], _>(self, range))
    }
    fn prefix(&self, prefix: &[u8]) -> KvIter {
        Box::new(ShardedSnapshot::prefix(self, prefix))
    }
    fn iter(&self) -> KvIter {
        Box::new(ShardedSnapshot::iter(self))
    }
}
