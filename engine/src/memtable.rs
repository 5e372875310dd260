//! [`MemTable`]: the in-memory, sorted buffer that absorbs writes until it is flushed to a
//! level-0 table.
//!
//! A lock-free skiplist (crossbeam-skiplist) keyed by encoded internal keys in the one
//! internal-key order, so that any number of writers insert concurrently while readers
//! search. Entries are never removed or changed: a memtable only grows, then becomes
//! immutable, is flushed, and is dropped once no reader holds it.
//!
//! Keys of up to [`INLINE_KEY_LEN`] encoded bytes live inside the skiplist node
//! ([`MemKey`]): an insert or a search compares keys at every step down the skiplist, and a
//! key behind a pointer costs a second cache miss per step (and an allocation per entry).
//! Values are `Bytes`; the write path gives each a buffer of its own or, for a batch of
//! several entries, a slice of the batch's one buffer.
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

use std::cmp::Ordering as KeyOrdering;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use strata_core::iter::InternalIterator;
use strata_core::key::{
    compare_internal, encode_internal_key, pack_trailer, SeqNo, ValueKind, TRAILER_LEN,
};
use strata_core::Result;

/// Per-entry bookkeeping the size estimate adds to key and value bytes (skiplist node with
/// its inline key and tower, the value's allocation).
const ENTRY_OVERHEAD: usize = 80;

/// Encoded internal keys up to this length (user keys up to 24 bytes) are stored inside the
/// skiplist node.
pub const INLINE_KEY_LEN: usize = 32;

/// An encoded internal key as the memtable stores it: inline when short, boxed otherwise.
/// Ordered by [`compare_internal`].
///
/// ```
/// use strata::memtable::MemKey;
/// use strata_core::key::{InternalKey, ValueKind};
/// let short = MemKey::new(b"k", 7, ValueKind::Put);
/// let long = MemKey::new(&[b'k'; 100], 7, ValueKind::Put);
/// assert_eq!(short.encoded(), InternalKey::new(b"k", 7, ValueKind::Put).encoded());
/// assert!(short < long);
/// ```
#[derive(Clone)]
pub struct MemKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    /// `bytes[..len]` is the encoded key (`len <= INLINE_KEY_LEN`).
    Inline { len: u8, bytes: [u8; INLINE_KEY_LEN] },
    /// A key longer than [`INLINE_KEY_LEN`].
    Heap(Box<[u8]>),
}

impl MemKey {
    /// Encodes `(user_key, seq, kind)`.
    #[inline]
    pub fn new(user_key: &[u8], seq: SeqNo, kind: ValueKind) -> Self {
        let len = user_key.len() + TRAILER_LEN;
        if len <= INLINE_KEY_LEN {
            let mut bytes = [0u8; INLINE_KEY_LEN];
            bytes[..user_key.len()].copy_from_slice(user_key);
            bytes[user_key.len()..len].copy_from_slice(&pack_trailer(seq, kind).to_le_bytes());
            MemKey(KeyRepr::Inline { len: len as u8, bytes })
        } else {
            let mut v = Vec::with_capacity(len);
            encode_internal_key(&mut v, user_key, seq, kind);
            MemKey(KeyRepr::Heap(v.into_boxed_slice()))
        }
    }

    /// Copies an already-encoded internal key.
    pub fn from_encoded(encoded: &[u8]) -> Self {
        match encoded.len() {
            len @ 0..=INLINE_KEY_LEN => {
                let mut bytes = [0u8; INLINE_KEY_LEN];
                bytes[..len].copy_from_slice(encoded);
                MemKey(KeyRepr::Inline { len: len as u8, bytes })
            }
            _ => MemKey(KeyRepr::Heap(encoded.into())),
        }
    }

    /// The encoded internal key.
    #[inline]
    pub fn encoded(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyRepr::Heap(b) => b,
        }
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.encoded() == other.encoded()
    }
}

impl Eq for MemKey {}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<KeyOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for MemKey {
    #[inline]
    fn cmp(&self, other: &Self) -> KeyOrdering {
        compare_internal(self.encoded(), other.encoded())
    }
}

impl std::fmt::Debug for MemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemKey({:?})", self.encoded())
    }
}

/// A sorted in-memory table of versions.
#[derive(Debug)]
pub struct MemTable {
    map: SkipMap<MemKey, Bytes>,
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
        self.insert_key(MemKey::new(user_key, seq, kind), value);
    }

    /// Inserts one version whose key is already built.
    pub(crate) fn insert_key(&self, key: MemKey, value: Bytes) {
        let size = key.encoded().len() + value.len() + ENTRY_OVERHEAD;
        self.map.insert(key, value);
        self.approximate_bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Takes out a version that was never visible (its batch's log write failed). The size
    /// estimate keeps counting it.
    pub(crate) fn remove(&self, key: &MemKey) {
        self.map.remove(key);
    }

    /// The newest version of `user_key` with sequence `<= seq`.
    pub fn get(&self, user_key: &[u8], seq: SeqNo) -> Option<(ValueKind, Bytes)> {
        let target = MemKey::new(user_key, seq, ValueKind::FOR_SEEK);
        let entry = self.map.range((Bound::Included(target), Bound::Unbounded)).next()?;
        let parsed = strata_core::key::parse_internal_key(entry.key().encoded())?;
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
    /// whole (a flush), without the owned cursor's re-seek per step and without copying.
    ///
    /// ```
    /// use strata::memtable::MemTable;
    /// use strata::Bytes;
    /// use strata_core::key::{InternalKey, ValueKind};
    /// let mem = MemTable::new(1);
    /// mem.insert(b"b", 1, ValueKind::Put, Bytes::from_static(b"2"));
    /// mem.insert(b"a", 2, ValueKind::Put, Bytes::from_static(b"1"));
    /// let first = mem.entries().next().unwrap();
    /// assert_eq!(first.key(), InternalKey::new(b"a", 2, ValueKind::Put).encoded());
    /// assert_eq!(first.value(), &Bytes::from_static(b"1"));
    /// ```
    pub fn entries(&self) -> impl Iterator<Item = MemEntry<'_>> + '_ {
        self.map.iter().map(MemEntry)
    }

    /// A cursor over the memtable that keeps it alive.
    pub fn iter(self: &Arc<Self>) -> MemTableIterator {
        MemTableIterator { mem: Arc::clone(self), current: None }
    }
}

/// One entry of [`MemTable::entries`], borrowed from the memtable.
pub struct MemEntry<'a>(crossbeam_skiplist::map::Entry<'a, MemKey, Bytes>);

impl MemEntry<'_> {
    /// The encoded internal key.
    pub fn key(&self) -> &[u8] {
        self.0.key().encoded()
    }

    /// The value (empty for a deletion).
    pub fn value(&self) -> &Bytes {
        self.0.value()
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
    current: Option<(MemKey, Bytes)>,
}

fn owned(
    entry: Option<crossbeam_skiplist::map::Entry<'_, MemKey, Bytes>>,
) -> Option<(MemKey, Bytes)> {
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
        let target = MemKey::from_encoded(target);
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
    use strata_core::key::{parse_internal_key, InternalKey};

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
    fn inline_and_boxed_keys_sort_like_internal_keys() {
        // User keys around the inline limit (24 bytes), sharing prefixes.
        let mut mem_keys = Vec::new();
        let mut internal = Vec::new();
        for len in [0usize, 1, 8, 23, 24, 25, 40] {
            for fill in [b'a', b'b'] {
                for seq in [1u64, 7] {
                    let user = vec![fill; len];
                    mem_keys.push(MemKey::new(&user, seq, ValueKind::Put));
                    internal.push(InternalKey::new(&user, seq, ValueKind::Put));
                    assert_eq!(
                        MemKey::from_encoded(internal.last().unwrap().encoded()).encoded(),
                        internal.last().unwrap().encoded()
                    );
                }
            }
        }
        mem_keys.sort();
        internal.sort();
        let a: Vec<&[u8]> = mem_keys.iter().map(MemKey::encoded).collect();
        let b: Vec<&[u8]> = internal.iter().map(InternalKey::encoded).collect();
        assert_eq!(a, b);

        let m = MemTable::new(1);
        let long = [b'x'; 100];
        m.insert(&long, 3, ValueKind::Put, Bytes::from_static(b"long"));
        m.insert(&long[..20], 4, ValueKind::Put, Bytes::from_static(b"short"));
        assert_eq!(m.get(&long, 10).map(|x| x.1), Some(Bytes::from_static(b"long")));
        assert_eq!(m.get(&long[..20], 10).map(|x| x.1), Some(Bytes::from_static(b"short")));
        assert_eq!(m.get(&long[..50], 10), None);
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
