//! [`KvStore`]: the API a [`Db`] and a [`ShardedDb`] share, so code written for one runs on
//! the other.

use std::ops::RangeBounds;

use bytes::Bytes;
use strata_core::Result;
use strata_wal::{Durability, WriteBatch};

use super::ShardedDb;
use crate::async_write::WriteTicket;
use crate::db::Db;
use crate::snapshot::Iter;

/// The operations common to [`Db`] and [`ShardedDb`]. Each method behaves as the inherent
/// method of the same name on the implementing type.
///
/// ```
/// use strata::{Db, KvStore, Options, ShardedDb, ShardedOptions};
///
/// /// Counts the entries under `prefix`, on any store.
/// fn count_prefix<S: KvStore>(store: &S, prefix: &str) -> strata::Result<usize> {
///     let mut n = 0;
///     for item in store.prefix(prefix.as_bytes()) {
///         item?;
///         n += 1;
///     }
///     Ok(n)
/// }
///
/// fn load<S: KvStore>(store: &S) -> strata::Result<()> {
///     for i in 0..10 {
///         store.put(format!("user/{i}").as_bytes(), b"x")?;
///     }
///     store.delete(b"user/3")
/// }
///
/// let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// let single = Db::open(a.path(), Options::default())?;
/// let sharded = ShardedDb::open(b.path(), ShardedOptions::new(4))?;
/// load(&single)?;
/// load(&sharded)?;
/// assert_eq!(count_prefix(&single, "user/")?, 9);
/// assert_eq!(count_prefix(&sharded, "user/")?, 9);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait KvStore: Send + Sync {
    /// The double-ended iterator scans return.
    type Iter: DoubleEndedIterator<Item = Result<(Bytes, Bytes)>>;

    /// Sets `key` to `value` with the default durability.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    /// The current value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;
    /// Deletes `key` with the default durability.
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// Applies `batch` with the default durability.
    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// Applies `batch` with the given durability.
    fn write_with(&self, batch: WriteBatch, durability: Durability) -> Result<()>;
    /// Queues `batch`; the ticket resolves when it is durable and visible.
    fn write_async(&self, batch: WriteBatch) -> WriteTicket;
    /// The entries in `range`, in key order.
    fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Self::Iter;
    /// The entries whose keys start with `prefix`, in key order.
    fn prefix(&self, prefix: &[u8]) -> Self::Iter;
    /// Every entry, in key order.
    fn iter(&self) -> Self::Iter;
    /// Flushes memtables to tables and waits.
    fn flush(&self) -> Result<()>;
    /// Closes the store.
    fn close(&self) -> Result<()>;
}

impl KvStore for Db {
    type Iter = Iter;

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Db::put(self, key, value)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Db::get(self, key)
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        Db::delete(self, key)
    }
    fn write(&self, batch: WriteBatch) -> Result<()> {
        Db::write(self, batch)
    }
    fn write_with(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        Db::write_with(self, batch, durability)
    }
    fn write_async(&self, batch: WriteBatch) -> WriteTicket {
        Db::write_async(self, batch)
    }
    fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        Db::range(self, range)
    }
    fn prefix(&self, prefix: &[u8]) -> Iter {
        Db::prefix(self, prefix)
    }
    fn iter(&self) -> Iter {
        Db::iter(self)
    }
    fn flush(&self) -> Result<()> {
        Db::flush(self)
    }
    fn close(&self) -> Result<()> {
        Db::close(self)
    }
}

impl KvStore for ShardedDb {
    type Iter = super::ShardedIter;

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        ShardedDb::put(self, key, value)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        ShardedDb::get(self, key)
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        ShardedDb::delete(self, key)
    }
    fn write(&self, batch: WriteBatch) -> Result<()> {
        ShardedDb::write(self, batch)
    }
    fn write_with(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        ShardedDb::write_with(self, batch, durability)
    }
    fn write_async(&self, batch: WriteBatch) -> WriteTicket {
        ShardedDb::write_async(self, batch)
    }
    fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> super::ShardedIter {
        ShardedDb::range(self, range)
    }
    fn prefix(&self, prefix: &[u8]) -> super::ShardedIter {
        ShardedDb::prefix(self, prefix)
    }
    fn iter(&self) -> super::ShardedIter {
        ShardedDb::iter(self)
    }
    fn flush(&self) -> Result<()> {
        ShardedDb::flush(self)
    }
    fn close(&self) -> Result<()> {
        ShardedDb::close(self)
    }
}
