//! [`MemTable`]: the in-memory, sorted buffer that absorbs writes until it is flushed to a
//! level-0 table.
//!
//! A lock-free skiplist (`skiplist`) keyed by encoded internal keys in the one
//! internal-key order, so that any number of writers insert concurrently while readers
//! search. Entries are never changed: a memtable only grows, then becomes immutable, is
//! flushed, and is dropped once no reader holds it.
//!
//! Each entry (skiplist tower, key and value) is one piece of an `arena`: an insert
//! costs a bump of an offset and a copy instead of heap allocations, a search step touches
//! usually one cache line per node, and dropping a flushed memtable frees a few large chunks rather
//! than every entry. This replaced crossbeam-skiplist, whose node-per-allocation design
//! had a flush spend about a third of its time in `free` (see `docs/design.md`).
//!
//! Private to the engine; the criterion benchmarks reach it through the hidden
//! `strata::__bench` (which the examples below use, since doctests are outside the crate).
//!
//! ```
//! use strata::__bench::MemTable;
//! use strata_core::key::ValueKind;
//! let mem = MemTable::new(1);
//! mem.insert(b"k", 7, ValueKind::Put, b"v");
//! assert_eq!(mem.get(b"k", 7), Some((ValueKind::Put, strata::Bytes::from_static(b"v"))));
//! assert_eq!(mem.get(b"k", 6), None); // not visible below its sequence number
//! ```

mod arena;
mod skiplist;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use strata_core::iter::InternalIterator;
use strata_core::key::{parse_internal_key, write_internal_key, SeqNo, ValueKind, TRAILER_LEN};
use strata_core::range_del::{RangeTombstone, RangeTombstones};
use strata_core::Result;

use skiplist::{Node, SkipList};

/// A sorted in-memory table of versions.
#[derive(Debug)]
pub struct MemTable {
    list: SkipList,
    /// Number of the WAL file whose records this memtable holds (0 when logging is off).
    wal_number: u64,
    /// The last sequence number assigned to this memtable once it was made immutable
    /// (`u64::MAX` while it is active): a flush waits until it is visible, which means every
    /// write assigned to this memtable has finished inserting.
    sealed_seq: AtomicU64,
    /// Bytes of its log, set when it is sealed (0 while active).
    log_bytes: AtomicU64,
    /// Range deletes, apart from the skiplist: they are few, and a point read asks them
    /// one question (`range_del_cover`). `has_range_dels` lets reads skip the lock when
    /// there are none, which is nearly always.
    range_dels: RwLock<MemRangeDels>,
    has_range_dels: AtomicBool,
    range_del_bytes: AtomicUsize,
}

/// A memtable's range tombstones as inserted, and fragmented for reads.
#[derive(Debug, Default)]
struct MemRangeDels {
    raw: Vec<RangeTombstone>,
    /// Fragments of `raw`, rebuilt by the first read after an insert or removal (so that a
    /// run of range deletes costs one rebuild, not one each); shared with scans that took
    /// it.
    fragments: Arc<RangeTombstones>,
    stale: bool,
}

/// A small encoded internal key on the stack, for searches.
struct SeekKey {
    len: usize,
    inline: [u8; 64],
    heap: Vec<u8>,
}

impl SeekKey {
    fn new(user_key: &[u8], seq: SeqNo, kind: ValueKind) -> Self {
        let len = user_key.len() + TRAILER_LEN;
        let mut key = SeekKey { len, inline: [0; 64], heap: Vec::new() };
        if len <= key.inline.len() {
            write_internal_key(&mut key.inline[..len], user_key, seq, kind);
        } else {
            key.heap = vec![0; len];
            write_internal_key(&mut key.heap, user_key, seq, kind);
        }
        key
    }

    fn encoded(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

impl MemTable {
    /// An empty memtable whose writes are logged in WAL file `wal_number`.
    pub fn new(wal_number: u64) -> Self {
        MemTable {
            list: SkipList::new(),
            wal_number,
            sealed_seq: AtomicU64::new(u64::MAX),
            log_bytes: AtomicU64::new(0),
            range_dels: RwLock::new(MemRangeDels::default()),
            has_range_dels: AtomicBool::new(false),
            range_del_bytes: AtomicUsize::new(0),
        }
    }

    /// Inserts a range delete of `start..end` at `seq`. Safe beside concurrent inserts and
    /// reads; an empty range is kept (it covers nothing) so that `remove_range_delete`
    /// finds what was inserted.
    ///
    /// ```
    /// use strata::__bench::MemTable;
    /// use strata_core::key::ValueKind;
    /// let mem = MemTable::new(1);
    /// mem.insert(b"b", 3, ValueKind::Put, b"v");
    /// mem.insert_range_delete(b"a", b"c", 5);
    /// assert_eq!(mem.range_del_cover(b"b", 10), Some(5)); // the put at 3 is deleted
    /// assert_eq!(mem.range_del_cover(b"b", 4), None);     // not for a reader at 4
    /// ```
    pub fn insert_range_delete(&self, start: &[u8], end: &[u8], seq: SeqNo) {
        let mut dels = self.range_dels.write();
        dels.raw.push(RangeTombstone::new(start, end, seq));
        dels.stale = true;
        self.range_del_bytes.fetch_add(start.len() + end.len() + 32, Ordering::Relaxed);
        self.has_range_dels.store(true, Ordering::Release);
    }

    /// Takes out a range delete that was never visible (as [`MemTable::remove`]).
    pub(crate) fn remove_range_delete(&self, start: &[u8], end: &[u8], seq: SeqNo) {
        let mut dels = self.range_dels.write();
        if let Some(i) =
            dels.raw.iter().position(|t| t.seq == seq && t.start == start && t.end == end)
        {
            dels.raw.swap_remove(i);
            dels.stale = true;
        }
    }

    /// The newest sequence number `<= seq` of a range delete covering `user_key`.
    #[inline]
    pub fn range_del_cover(&self, user_key: &[u8], seq: SeqNo) -> Option<SeqNo> {
        if !self.has_range_dels.load(Ordering::Acquire) {
            return None;
        }
        {
            let dels = self.range_dels.read();
            if !dels.stale {
                return dels.fragments.max_cover(user_key, seq);
            }
        }
        self.fragments().max_cover(user_key, seq)
    }

    /// The range deletes, fragmented (`None` when there are none).
    pub fn range_tombstones(&self) -> Option<Arc<RangeTombstones>> {
        if !self.has_range_dels.load(Ordering::Acquire) {
            return None;
        }
        let fragments = self.fragments();
        (!fragments.is_empty()).then_some(fragments)
    }

    /// The current fragments, rebuilt first if inserts made them stale.
    fn fragments(&self) -> Arc<RangeTombstones> {
        {
            let dels = self.range_dels.read();
            if !dels.stale {
                return Arc::clone(&dels.fragments);
            }
        }
        let mut dels = self.range_dels.write();
        if dels.stale {
            dels.fragments = Arc::new(RangeTombstones::new(dels.raw.iter().cloned()));
            dels.stale = false;
        }
        Arc::clone(&dels.fragments)
    }

    /// The number of the WAL file holding this memtable's writes.
    pub fn wal_number(&self) -> u64 {
        self.wal_number
    }

    /// Inserts one version, copying key and value. Safe to call from many threads at once;
    /// `(user_key, seq)` must be new to this memtable.
    pub fn insert(&self, user_key: &[u8], seq: SeqNo, kind: ValueKind, value: &[u8]) {
        self.list.insert(user_key.len() + TRAILER_LEN, value, |out| {
            write_internal_key(out, user_key, seq, kind);
        });
    }

    /// Takes out a version that was never visible (its batch's log write failed). It keeps
    /// its memory until the memtable drops.
    pub(crate) fn remove(&self, user_key: &[u8], seq: SeqNo, kind: ValueKind) {
        self.list.mark_removed(SeekKey::new(user_key, seq, kind).encoded());
    }

    /// The newest version of `user_key` with sequence `<= seq` (range deletes are not
    /// applied: see [`MemTable::range_del_cover`]).
    pub fn get(&self, user_key: &[u8], seq: SeqNo) -> Option<(ValueKind, Bytes)> {
        self.get_version(user_key, seq).map(|(kind, _, value)| (kind, value))
    }

    /// [`MemTable::get`] with the version's sequence number.
    pub(crate) fn get_version(
        &self,
        user_key: &[u8],
        seq: SeqNo,
    ) -> Option<(ValueKind, SeqNo, Bytes)> {
        let target = SeekKey::new(user_key, seq, ValueKind::FOR_SEEK);
        let node = self.list.seek(target.encoded())?;
        let parsed = parse_internal_key(node.key())?;
        (parsed.user_key == user_key)
            .then(|| (parsed.kind, parsed.seq, Bytes::copy_from_slice(node.value())))
    }

    /// Bytes the entries take: keys, values and their skiplist nodes, and range deletes.
    pub fn approximate_bytes(&self) -> usize {
        self.list.memory_usage() + self.range_del_bytes.load(Ordering::Relaxed)
    }

    /// Whether nothing was inserted (or everything inserted was removed).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.range_dels.read().raw.is_empty()
    }

    /// Marks the memtable immutable; `last_seq` is the last sequence number any write into
    /// it was given.
    pub(crate) fn seal(&self, last_seq: SeqNo) {
        self.sealed_seq.store(last_seq, Ordering::Release);
    }

    /// Records the size of its (sealed) log.
    pub(crate) fn set_log_bytes(&self, bytes: u64) {
        self.log_bytes.store(bytes, Ordering::Release);
    }

    /// The size of its log once sealed.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn sealed_seq(&self) -> SeqNo {
        self.sealed_seq.load(Ordering::Acquire)
    }

    /// Every entry in internal-key order, borrowing the memtable: the cheap way to read it
    /// whole (a flush).
    ///
    /// ```
    /// use strata::__bench::MemTable;
    /// use strata_core::key::{InternalKey, ValueKind};
    /// let mem = MemTable::new(1);
    /// mem.insert(b"b", 1, ValueKind::Put, b"2");
    /// mem.insert(b"a", 2, ValueKind::Put, b"1");
    /// let first = mem.entries().next().unwrap();
    /// assert_eq!(first.key(), InternalKey::new(b"a", 2, ValueKind::Put).encoded());
    /// assert_eq!(first.value(), b"1");
    /// ```
    pub fn entries(&self) -> impl Iterator<Item = MemEntry<'_>> + '_ {
        std::iter::successors(self.list.first(), |n| n.successor()).map(MemEntry)
    }

    /// A cursor over the memtable that keeps it alive.
    pub fn iter(self: &Arc<Self>) -> MemTableIterator {
        MemTableIterator { mem: Arc::clone(self), current: None }
    }
}

/// One entry of [`MemTable::entries`], borrowed from the memtable.
///
/// ```
/// use strata::__bench::MemTable;
/// use strata_core::key::{parse_internal_key, ValueKind};
/// let mem = MemTable::new(1);
/// mem.insert(b"k", 3, ValueKind::Delete, b"");
/// let entry = mem.entries().next().unwrap();
/// let key = parse_internal_key(entry.key()).unwrap();
/// assert_eq!((key.user_key, key.seq, key.kind), (&b"k"[..], 3, ValueKind::Delete));
/// assert!(entry.value().is_empty());
/// ```
pub struct MemEntry<'a>(Node<'a>);

impl<'a> MemEntry<'a> {
    /// The encoded internal key.
    pub fn key(&self) -> &'a [u8] {
        self.0.key()
    }

    /// The value (empty for a deletion).
    pub fn value(&self) -> &'a [u8] {
        self.0.value()
    }
}

/// An [`InternalIterator`] over a memtable: O(1) per step forward, O(log n) back (the
/// skiplist links only forward).
///
/// ```
/// use std::sync::Arc;
/// use strata::__bench::MemTable;
/// use strata_core::iter::InternalIterator;
/// use strata_core::key::{InternalKey, ValueKind};
/// let mem = Arc::new(MemTable::new(1));
/// mem.insert(b"a", 1, ValueKind::Put, b"1");
/// mem.insert(b"b", 2, ValueKind::Put, b"2");
/// let mut it = mem.iter();
/// it.seek(InternalKey::new(b"b", 9, ValueKind::FOR_SEEK).encoded());
/// assert_eq!(it.value(), b"2");
/// it.prev();
/// assert_eq!(it.value(), b"1");
/// ```
pub struct MemTableIterator {
    mem: Arc<MemTable>,
    /// The current node, of `mem`'s skiplist.
    current: Option<NonNull<u8>>,
}

// SAFETY: `current` points into the arena of the memtable held by `mem` (Send + Sync); the
// iterator reads through it only while holding `mem`, from whichever thread owns it.
unsafe impl Send for MemTableIterator {}
// SAFETY: as above; `&self` methods only read immutable node bytes and atomics.
unsafe impl Sync for MemTableIterator {}

impl MemTableIterator {
    fn node(&self) -> Option<Node<'_>> {
        // SAFETY: `current` only ever holds `Node::as_raw` of a node of `self.mem.list`
        // (every assignment below), and `self.mem` keeps that list alive.
        self.current.map(|p| unsafe { self.mem.list.node(p) })
    }
}

impl InternalIterator for MemTableIterator {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn seek_to_first(&mut self) {
        self.current = self.mem.list.first().map(Node::as_raw);
    }

    fn seek_to_last(&mut self) {
        self.current = self.mem.list.seek_before(None).map(Node::as_raw);
    }

    fn seek(&mut self, target: &[u8]) {
        self.current = self.mem.list.seek(target).map(Node::as_raw);
    }

    fn next(&mut self) {
        let next = self.node().and_then(Node::successor).map(Node::as_raw);
        self.current = next;
    }

    fn prev(&mut self) {
        let prev = self.node().and_then(|n| self.mem.list.seek_before(Some(n.key())));
        self.current = prev.map(Node::as_raw);
    }

    fn key(&self) -> &[u8] {
        self.node().map_or(&[], |n| n.key())
    }

    fn value(&self) -> &[u8] {
        self.node().map_or(&[], |n| n.value())
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use strata_core::key::InternalKey;

    fn v(s: &'static [u8]) -> Option<(ValueKind, Bytes)> {
        Some((ValueKind::Put, Bytes::from_static(s)))
    }

    type Versions = Vec<(Vec<u8>, u64)>;

    /// (user key, seq) of every entry, walking forward then backward.
    fn walk(mem: &Arc<MemTable>) -> (Versions, Versions) {
        let parse = |k: &[u8]| {
            let p = parse_internal_key(k).unwrap();
            (p.user_key.to_vec(), p.seq)
        };
        let mut it = mem.iter();
        let (mut fwd, mut back) = (Vec::new(), Vec::new());
        it.seek_to_first();
        while it.valid() {
            fwd.push(parse(it.key()));
            it.next();
        }
        it.seek_to_last();
        while it.valid() {
            back.push(parse(it.key()));
            it.prev();
        }
        back.reverse();
        (fwd, back)
    }

    #[test]
    fn get_sees_newest_version_at_or_below_sequence() {
        let m = MemTable::new(1);
        m.insert(b"k", 1, ValueKind::Put, b"v1");
        m.insert(b"k", 5, ValueKind::Delete, b"");
        m.insert(b"k", 9, ValueKind::Put, b"v9");
        m.insert(b"kk", 2, ValueKind::Put, b"other");
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"k", 4), v(b"v1"));
        assert_eq!(m.get(b"k", 5).map(|x| x.0), Some(ValueKind::Delete));
        assert_eq!(m.get(b"k", 100), v(b"v9"));
        assert_eq!(m.get(b"j", 100), None);
    }

    #[test]
    fn keys_of_every_length_sort_like_internal_keys() {
        // Around the 64-byte stack buffer of seek keys, sharing prefixes; plus a value large
        // enough to get an arena chunk of its own.
        let m = Arc::new(MemTable::new(1));
        let mut internal = Vec::new();
        let big = vec![7u8; 600 << 10];
        for len in [0usize, 1, 8, 23, 24, 55, 56, 57, 100, 4000] {
            for fill in [b'a', b'b'] {
                for seq in [1u64, 7] {
                    let user = vec![fill; len];
                    let value: &[u8] = if len == 100 && seq == 7 { &big } else { &user };
                    m.insert(&user, seq, ValueKind::Put, value);
                    internal.push(InternalKey::new(&user, seq, ValueKind::Put));
                }
            }
        }
        internal.sort();
        let keys: Vec<&[u8]> = m.entries().map(|e| e.key()).collect();
        assert_eq!(keys, internal.iter().map(InternalKey::encoded).collect::<Vec<_>>());
        assert_eq!(m.get(&[b'b'; 100], 10).unwrap().1.len(), big.len());
        assert_eq!(m.get(&[b'a'; 57], 3).unwrap().1, vec![b'a'; 57]);
        assert_eq!(m.get(&[b'a'; 4000], 3).unwrap().1.len(), 4000);
        assert_eq!(m.get(&[b'a'; 50], 10), None);
        assert!(m.approximate_bytes() > big.len());
    }

    #[test]
    fn iterator_walks_both_ways_in_internal_order() {
        let m = Arc::new(MemTable::new(1));
        for (i, k) in [b"b", b"a", b"c"].iter().enumerate() {
            m.insert(*k, i as u64 + 1, ValueKind::Put, b"v");
        }
        m.insert(b"b", 10, ValueKind::Put, b"new");
        let (fwd, back) = walk(&m);
        assert_eq!(
            fwd,
            vec![(b"a".to_vec(), 2), (b"b".to_vec(), 10), (b"b".to_vec(), 1), (b"c".to_vec(), 3)]
        );
        assert_eq!(back, fwd);
        let mut it = m.iter();
        it.seek(InternalKey::new(b"b", 5, ValueKind::FOR_SEEK).encoded());
        assert_eq!(it.value(), b"v");
        it.seek(InternalKey::new(b"d", 5, ValueKind::FOR_SEEK).encoded());
        assert!(!it.valid());
    }

    #[test]
    fn removed_entries_are_skipped_by_every_read() {
        let m = Arc::new(MemTable::new(1));
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            m.insert(*k, 10 + i as u64, ValueKind::Put, b"v");
        }
        m.insert(b"b", 20, ValueKind::Put, b"failed");
        m.remove(b"b", 20, ValueKind::Put);
        m.remove(b"a", 10, ValueKind::Put);
        m.remove(b"d", 13, ValueKind::Put);
        assert_eq!(m.get(b"b", 30), v(b"v"));
        assert_eq!(m.get(b"a", 30), None);
        let (fwd, back) = walk(&m);
        assert_eq!(fwd, vec![(b"b".to_vec(), 11), (b"c".to_vec(), 12)]);
        assert_eq!(back, fwd);
        assert_eq!(m.entries().count(), 2);
        m.remove(b"b", 11, ValueKind::Put);
        m.remove(b"c", 12, ValueKind::Put);
        assert!(m.is_empty());
        assert_eq!(walk(&m).0, vec![]);
    }

    #[test]
    fn concurrent_inserts_and_readers_see_a_sorted_list() {
        let (writers, per_writer) = if cfg!(miri) { (3, 60) } else { (4, 20_000) };
        let m = Arc::new(MemTable::new(1));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (m, done) = (Arc::clone(&m), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut passes = 0;
                while !done.load(Ordering::Acquire) || passes == 0 {
                    let keys: Vec<&[u8]> = m.entries().map(|e| e.key()).collect();
                    assert!(keys
                        .windows(2)
                        .all(|w| { strata_core::key::compare_internal(w[0], w[1]).is_lt() }));
                    passes += 1;
                }
            })
        };
        let handles: Vec<_> = (0..writers)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..per_writer {
                        let key = format!("{:08}", i * writers + t);
                        let seq = (i * writers + t) as u64 + 1;
                        m.insert(key.as_bytes(), seq, ValueKind::Put, key.as_bytes());
                        let got = m.get(key.as_bytes(), seq).map(|(_, v)| v);
                        assert_eq!(got.as_deref(), Some(key.as_bytes()));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        done.store(true, Ordering::Release);
        reader.join().unwrap();
        let (fwd, back) = walk(&m);
        let expected: Vec<(Vec<u8>, u64)> = (0..writers * per_writer)
            .map(|n| (format!("{n:08}").into_bytes(), n as u64 + 1))
            .collect();
        assert_eq!(fwd, expected);
        assert_eq!(back, expected);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, bool, Vec<u8>),
        RemoveLast,
        Get(Vec<u8>, u64),
        Seek(Vec<u8>, u64),
    }

    fn small_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(0u8..4, 0..4),
            proptest::collection::vec(any::<u8>(), 0..80),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (small_key(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(k, put, v)| Op::Insert(k, put, v)),
            1 => Just(Op::RemoveLast),
            2 => (small_key(), 0u64..300).prop_map(|(k, s)| Op::Get(k, s)),
            2 => (small_key(), 0u64..300).prop_map(|(k, s)| Op::Seek(k, s)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

        /// The memtable against a `BTreeMap` of internal keys: point reads, seeks, and full
        /// walks both ways, with inserts and removals interleaved.
        #[test]
        fn behaves_like_a_sorted_map(ops in proptest::collection::vec(op(), 1..200)) {
            let m = Arc::new(MemTable::new(1));
            let mut model: BTreeMap<InternalKey, Vec<u8>> = BTreeMap::new();
            let mut last: Option<InternalKey> = None;
            let mut seq = 0u64;
            for op in ops {
                match op {
                    Op::Insert(k, put, value) => {
                        seq += 1;
                        let kind = if put { ValueKind::Put } else { ValueKind::Delete };
                        m.insert(&k, seq, kind, &value);
                        let ikey = InternalKey::new(&k, seq, kind);
                        model.insert(ikey.clone(), value);
                        last = Some(ikey);
                    }
                    Op::RemoveLast => {
                        if let Some(ikey) = last.take() {
                            let p = parse_internal_key(ikey.encoded()).unwrap();
                            m.remove(p.user_key, p.seq, p.kind);
                            model.remove(&ikey);
                        }
                    }
                    Op::Get(k, at) => {
                        let target = InternalKey::new(&k, at, ValueKind::FOR_SEEK);
                        let want = model.range(target..).next().and_then(|(ik, v)| {
                            let p = parse_internal_key(ik.encoded()).unwrap();
                            (p.user_key == k.as_slice()).then(|| (p.kind, Bytes::from(v.clone())))
                        });
                        prop_assert_eq!(m.get(&k, at), want);
                    }
                    Op::Seek(k, at) => {
                        let target = InternalKey::new(&k, at, ValueKind::FOR_SEEK);
                        let mut it = m.iter();
                        it.seek(target.encoded());
                        let mut want = model.range(target.clone()..);
                        for _ in 0..3 {
                            match want.next() {
                                Some((ik, v)) => {
                                    prop_assert!(it.valid());
                                    prop_assert_eq!(it.key(), ik.encoded());
                                    prop_assert_eq!(it.value(), v.as_slice());
                                }
                                None => prop_assert!(!it.valid()),
                            }
                            it.next();
                        }
                        // The entry before `target`: one step back from the seek, or the last
                        // entry when the seek ran off the end.
                        it.seek(target.encoded());
                        if it.valid() {
                            it.prev();
                        } else {
                            it.seek_to_last();
                        }
                        match model.range(..target).next_back() {
                            Some((ik, _)) => prop_assert_eq!(it.key(), ik.encoded()),
                            None => prop_assert!(!it.valid()),
                        }
                    }
                }
            }
            let want: Vec<&[u8]> = model.keys().map(InternalKey::encoded).collect();
            let got: Vec<&[u8]> = m.entries().map(|e| e.key()).collect();
            prop_assert_eq!(&got, &want);
            let mut it = m.iter();
            it.seek_to_last();
            let mut back = Vec::new();
            while it.valid() {
                back.push(it.key().to_vec());
                it.prev();
            }
            back.reverse();
            prop_assert_eq!(back, want.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
            prop_assert_eq!(m.is_empty(), model.is_empty());
        }
    }
}
