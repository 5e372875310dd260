//! The adapter between the model test and the store trait: every call
//! [`crate::model_test`] makes on a store goes through [`StoreUnderTest`], so a change to
//! [`KvStore`] is absorbed in this one file. The store is held as a `Box<dyn KvStore>` and
//! its snapshots as `Box<dyn KvSnapshot>`: the model test runs on any `KvStore`.

use std::ops::Bound;

use strata::{Bytes, Durability, KvIter, KvSnapshot, KvStore, Result, WriteBatch};

/// A store driven by the model test: each method is one call on the store through
/// [`KvStore`], named after the call it makes.
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
/// assert_eq!(snapshot.get(b"k")?.as_deref(), Some(&b"v"[..]));
/// drop(snapshot);
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StoreUnderTest {
    store: Box<dyn KvStore>,
}

impl std::fmt::Debug for StoreUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUnderTest").finish_non_exhaustive()
    }
}

impl StoreUnderTest {
    /// Wraps an open store.
    pub fn new(store: impl KvStore + 'static) -> StoreUnderTest {
        StoreUnderTest { store: Box::new(store) }
    }

    /// `put` with the store's default durability.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.put(key, value)
    }

    /// `delete` with the store's default durability.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.store.delete(key)
    }

    /// `delete_range(start..end)` with the store's default durability.
    pub fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        self.store.delete_range(start, end)
    }

    /// Compacts everything down to the last level and waits.
    pub fn compact(&self) -> Result<()> {
        self.store.compact()
    }

    /// `write` with the store's default durability.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.store.write(batch)
    }

    /// `write_with` an explicit [`Durability::Buffered`].
    pub fn write_buffered(&self, batch: WriteBatch) -> Result<()> {
        self.store.write_with(batch, Durability::Buffered.into())
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
    pub fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> KvIter {
        self.store.range((start, end))
    }

    /// `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> KvIter {
        self.store.prefix(prefix)
    }

    /// `iter`: every entry.
    pub fn iter(&self) -> KvIter {
        self.store.iter()
    }

    /// A snapshot of the current contents.
    pub fn snapshot(&self) -> Box<dyn KvSnapshot> {
        self.store.snapshot()
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
