//! The adapter between the model test and the store trait: every call
//! [`crate::model_test`] makes on a store goes through [`StoreUnderTest`], so a change to
//! [`KvStore`] is absorbed in this one file.
//!
//! Today's [`KvStore`] has no `snapshot()`, so [`TakeSnapshot`] supplies it from the inherent
//! methods of [`Db`] and [`ShardedDb`]. Once the trait has `snapshot()`, `TakeSnapshot` goes,
//! [`StoreUnderTest::snapshot`] calls the trait and the model test runs on any `KvStore`.

use std::ops::Bound;

use strata::{
    Bytes, Db, Durability, KvStore, Result, ShardedDb, ShardedIter, ShardedSnapshot, Snapshot,
    WriteBatch,
};

/// A store's consistent read view, as the model test reads it.
pub trait SnapshotReads {
    /// The double-ended iterator a snapshot scan returns.
    type Iter: DoubleEndedIterator<Item = Result<(Bytes, Bytes)>>;

    /// The value of `key` as of the snapshot.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// Every entry as of the snapshot.
    fn iter(&self) -> Self::Iter;
}

impl SnapshotReads for Snapshot {
    type Iter = strata::Iter;

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Snapshot::get(self, key)
    }

    fn iter(&self) -> strata::Iter {
        Snapshot::iter(self)
    }
}

impl SnapshotReads for ShardedSnapshot {
    type Iter = ShardedIter;

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        ShardedSnapshot::get(self, key)
    }

    fn iter(&self) -> ShardedIter {
        ShardedSnapshot::iter(self)
    }
}

/// The snapshot a store takes, until [`KvStore`] has its own `snapshot()`.
pub trait TakeSnapshot {
    /// The store's snapshot type.
    type Snapshot: SnapshotReads;

    /// A snapshot of the store's current contents.
    fn snapshot(&self) -> Self::Snapshot;
}

impl TakeSnapshot for Db {
    type Snapshot = Snapshot;

    fn snapshot(&self) -> Snapshot {
        Db::snapshot(self)
    }
}

impl TakeSnapshot for ShardedDb {
    type Snapshot = ShardedSnapshot;

    fn snapshot(&self) -> ShardedSnapshot {
        ShardedDb::snapshot(self)
    }
}

/// A store driven by the model test: each method is one call on the store through
/// [`KvStore`] (or [`TakeSnapshot`]), named after the call it makes.
///
/// ```
/// use strata::{Db, Options};
/// use strata_testkit::store::StoreUnderTest;
///
/// let dir = tempfile::tempdir()?;
/// let store = StoreUnderTest::new(Db::open(dir.path(), Options::default())?);
/// store.put(b"k", b"v")?;
/// let snapshot = store.snapshot();
/// store.delete(b"k")?;
/// assert_eq!(store.get(b"k")?, None);
/// assert_eq!(strata_testkit::store::SnapshotReads::get(&snapshot, b"k")?.as_deref(), Some(&b"v"[..]));
/// drop(snapshot);
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StoreUnderTest<S> {
    store: S,
}

impl<S: KvStore + TakeSnapshot> StoreUnderTest<S> {
    /// Wraps an open store.
    pub fn new(store: S) -> StoreUnderTest<S> {
        StoreUnderTest { store }
    }

    /// `put` with the store's default durability.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.put(key, value)
    }

    /// `delete` with the store's default durability.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.store.delete(key)
    }

    /// `write` with the store's default durability.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.store.write(batch)
    }

    /// `write_with` an explicit [`Durability::Buffered`].
    pub fn write_buffered(&self, batch: WriteBatch) -> Result<()> {
        self.store.write_with(batch, Durability::Buffered)
    }

    /// `write_async`, waiting for its ticket.
    pub fn write_async_and_wait(&self, batch: WriteBatch) -> Result<()> {
        self.store.write_async(batch).wait()
    }

    /// `get`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.store.get(key)
    }

    /// `range` over `(start, end)`.
    pub fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> S::Iter {
        self.store.range::<&[u8], _>((start, end))
    }

    /// `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> S::Iter {
        self.store.prefix(prefix)
    }

    /// `iter`: every entry.
    pub fn iter(&self) -> S::Iter {
        self.store.iter()
    }

    /// A snapshot of the current contents.
    pub fn snapshot(&self) -> S::Snapshot {
        TakeSnapshot::snapshot(&self.store)
    }

    /// `flush`.
    pub fn flush(&self) -> Result<()> {
        self.store.flush()
    }

    /// `close`, then drops the store.
    pub fn close(self) -> Result<()> {
        self.store.close()
    }
}
