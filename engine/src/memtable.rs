//! [`MemTable`]: the in-memory, sorted buffer that absorbs writes until it is flushed to a
//! level-0 table.
//!
//! A lock-free skiplist (crossbeam-skiplist) keyed by encoded internal keys in the one
//! internal-key order, so that any number of writers insert concurrently while readers
//! search. Entries are never removed or changed: a memtable only grows, then becomes
//! immutable, is flushed, and is dropped once no reader holds it.
//!
//! Values are `Bytes` slices of the write batch's own buffer: a batch's values share one
//! allocation with the batch, which the memtable keeps alive.
//!
//! Public for benchmarks and tools; a [`crate::Db`] user never needs it.
//!
//! ```
//! use strata::memtable::MemTable;
//! use strata::Bytes;
//! use strata_core::key::ValueKind;
//! let mem = MemTable::new(1);
//! mem.insert(b"k", 7, ValueKind::Put, Bytes::from_static(b"v"));
//! assert_eq!(mem.get(b"k", 7), Some((ValueKind::Put, Bytes::from_static(b"v"))));
//! assert_eq!(mem.get(b"k", 6), None); // not visible below its sequence number
//! ```

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use strata_core::iter::InternalIterator;
use strata_core::key::{InternalKey, SeqNo, ValueKind};
use strata_core::Result;

/// Per-entry bookkeeping the size estimate adds to key and value bytes (skiplist node,
/// tower, key allocation).
const ENTRY_OVERHEAD: usize = 64;

/// A sorted in-memory table of versions.
#[derive(Debug)]
pub struct MemTable {
    map: SkipMap<InternalKey, Bytes>,
    approximate_bytes: AtomicUsize,
    /// Number of the WAL file whose records this memtable holds (0 when logging is off).
    wal_number: u64,
    /// The last sequence number assigned to this memtable once it was made immutable
    /// (`u64::MAX` while it is active): a flush waits until it is visible, which means every
    /// write assigned to this memtable has finished inserting.
    sealed_seq: AtomicU64,
}

impl MemTable {
    /// An empty memtable whose writes are logged in WAL file `wal_number`.
    pub fn new(wal_number: u64) -> Self {
        MemTable {
            map: SkipMap::new(),
            approximate_bytes: AtomicUsize::new(0),
            wal_number,
            sealed_seq: AtomicU64::new(u64::MAX),
        }
    }

    /// The number of the WAL file holding this memtable's writes.
    pub fn wal_number(&self) -> u64 {
        self.wal_number
    }

    /// Inserts one version. Safe to call from many threads at once.
    pub fn insert(&self, user_key: &[u8], seq: SeqNo, kind: ValueKind, value: Bytes) {
        let size = user_key.len() + value.len() + ENTRY_OVERHEAD;
        self.map.insert(InternalKey::new(user_key, seq, kind), value);
        self.approximate_bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// The newest version of `user_key` with sequence `<= seq`.
    pub fn get(&self, user_key: &[u8], seq: SeqNo) -> Option<(ValueKind, Bytes)> {
        let target = InternalKey::new(user_key, seq, ValueKind::FOR_SEEK);
        let entry = self.map.range((Bound::Included(target), Bound::Unbounded)).next()?;
        let parsed = entry.key().parse()?;
        (parsed.user_key == user_key).then(|| (parsed.kind, entry.value().clone()))
    }

    /// Bytes of keys, values and per-entry overhead inserted so far.
    pub fn approximate_bytes(&self) -> usize {
        self.approximate_bytes.load(Ordering::Relaxed)
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Marks the memtable immutable; `last_seq` is the last sequence number any write into
    /// it was given.
    pub(crate) fn seal(&self, last_seq: SeqNo) {
        self.sealed_seq.store(last_seq, Ordering::Release);
    }

    pub(crate) fn sealed_seq(&self) -> SeqNo {
        self.sealed_seq.load(Ordering::Acquire)
    }

    /// Every entry in internal-key order, borrowing the memtable: the cheap way to read it
    /// whole (a flush), without the owned cursor's re-seek per step.
    pub fn entries(&self) -> impl Iterator<Item = (InternalKey, Bytes)> + '_ {
        self.map.iter().map(|e| (e.key().clone(), e.value().clone()))
    }

    /// A cursor over the memtable that keeps it alive.
    pub fn iter(self: &Arc<Self>) -> MemTableIterator {
        MemTableIterator { mem: Arc::clone(self), current: None }
    }
}

/// An [`InternalIterator`] over a memtable.
///
/// crossbeam's entries borrow the map, so the cursor cannot hold one next to the `Arc` that
/// owns the map without `unsafe`. It keeps a copy of the current key and value instead and
/// re-seeks from it to step: O(log n) per step, which is fine for a structure that is at
/// most a few hundred thousand entries and read mostly from its tables after a flush.
pub struct MemTableIterator {
    mem: Arc<MemTable>,
    current: Option<(InternalKey, Bytes)>,
}

fn owned(
    entry: Option<crossbeam_skiplist::map::Entry<'_, InternalKey, Bytes>>,
) -> Option<(InternalKey, Bytes)> {
    entry.map(|e| (e.key().clone(), e.value().clone()))
}

impl InternalIterator for MemTableIterator {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn seek_to_first(&mut self) {
        self.current = owned(self.mem.map.front());
    }

    fn seek_to_last(&mut self) {
        self.current = owned(self.mem.map.back());
    }

    fn seek(&mut self, target: &[u8]) {
        let target = InternalKey::from_encoded(target.to_vec());
        self.current =
            owned(self.mem.map.range((Bound::Included(target), Bound::Unbounded)).next());
    }

    fn next(&mut self) {
        let Some((key, _)) = self.current.take() else { return };
        self.current = owned(self.mem.map.range((Bound::Excluded(key), Bound::Unbounded)).next());
    }

    fn prev(&mut self) {
        let Some((key, _)) = self.current.take() else { return };
        self.current =
            owned(self.mem.map.range((Bound::Unbounded, Bound::Excluded(key))).next_back());
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |(k, _)| k.encoded())
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |(_, v)| v)
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::key::parse_internal_key;

    #[test]
    fn get_sees_newest_version_at_or_below_sequence() {
        let m = MemTable::new(1);
        m.insert(b"k", 1, ValueKind::Put, Bytes::from_static(b"v1"));
        m.insert(b"k", 5, ValueKind::Delete, Bytes::new());
        m.insert(b"k", 9, ValueKind::Put, Bytes::from_static(b"v9"));
        m.insert(b"kk", 2, ValueKind::Put, Bytes::from_static(b"other"));
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"k", 4), Some((ValueKind::Put, Bytes::from_static(b"v1"))));
        assert_eq!(m.get(b"k", 5).map(|x| x.0), Some(ValueKind::Delete));
        assert_eq!(m.get(b"k", 100), Some((ValueKind::Put, Bytes::from_static(b"v9"))));
        assert_eq!(m.get(b"j", 100), None);
    }

    #[test]
    fn iterator_walks_both_ways_in_internal_order() {
        let m = Arc::new(MemTable::new(1));
        for (i, k) in [b"b", b"a", b"c"].iter().enumerate() {
            m.insert(*k, i as u64 + 1, ValueKind::Put, Bytes::from_static(b"v"));
        }
        m.insert(b"b", 10, ValueKind::Put, Bytes::from_static(b"new"));
        let mut it = m.iter();
        it.seek_to_first();
        let mut fwd = Vec::new();
        while it.valid() {
            let p = parse_internal_key(it.key()).unwrap();
            fwd.push((p.user_key.to_vec(), p.seq));
            it.next();
        }
        assert_eq!(
            fwd,
            vec![(b"a".to_vec(), 2), (b"b".to_vec(), 10), (b"b".to_vec(), 1), (b"c".to_vec(), 3)]
        );
        it.seek_to_last();
        let mut back = Vec::new();
        while it.valid() {
            let p = parse_internal_key(it.key()).unwrap();
            back.push((p.user_key.to_vec(), p.seq));
            it.prev();
        }
        fwd.reverse();
        assert_eq!(back, fwd);
        it.seek(InternalKey::new(b"b", 5, ValueKind::FOR_SEEK).encoded());
        assert_eq!(it.value(), b"v");
    }
}
