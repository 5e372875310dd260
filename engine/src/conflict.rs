//! [`ConflictWindow`]: which keys were written after the snapshot of each open transaction,
//! so that a transaction's commit can tell whether anything it read (or wrote) changed
//! under it — optimistic concurrency control.
//!
//! The window lives under the commit lock (in `WriteState`): every commit sequenced while a
//! transaction is open records its keys here *when it is sequenced*, before it is applied
//! or logged, so a validating commit sees writes that are still in flight without waiting
//! for them. When no transaction is open nothing is recorded, so plain writes pay one
//! branch.
//!
//! History is bounded ([`ConflictWindow::new`]'s capacity, in bytes of memory it holds): when it would
//! grow past it, the oldest writes are forgotten and every transaction whose snapshot
//! precedes a forgotten write gets [`Error::Conflict`] at commit — a spurious retry, never
//! a wrong answer (as RocksDB's optimistic transactions fail when memtable history is
//! gone). A long-open transaction therefore costs bounded memory and never blocks a flush
//! or a compaction.

use std::collections::{BTreeMap, VecDeque};

use strata_core::key::SeqNo;
use strata_core::{Error, Result};
use strata_wal::WriteBatch;

use crate::db_iter::KeyRange;

/// A key range written as a whole.
#[derive(Debug, Clone)]
struct WrittenRange {
    lo: Vec<u8>,
    hi: Vec<u8>,
    /// `lo ..= hi` (an ingest) rather than `lo .. hi` (a range delete).
    hi_included: bool,
    seq: SeqNo,
}

impl WrittenRange {
    fn contains(&self, key: &[u8]) -> bool {
        self.lo.as_slice() <= key
            && (key < self.hi.as_slice() || (self.hi_included && key == self.hi.as_slice()))
    }

    /// Whether some key of `r` lies in this range.
    fn meets(&self, r: &KeyRange) -> bool {
        use std::ops::Bound;
        let (lo, hi) = (self.lo.as_slice(), self.hi.as_slice());
        // The smallest key of `r` that may lie in the range, and whether it is in it.
        let starts_by_hi = match &r.start {
            Bound::Included(s) => s.as_slice() < hi || (self.hi_included && s.as_slice() == hi),
            // The smallest key after `s` is `s ++ [0]`.
            Bound::Excluded(s) => {
                let next = strata_core::range_del::successor(s);
                next.as_slice() < hi || (self.hi_included && next.as_slice() == hi)
            }
            Bound::Unbounded => true,
        };
        let ends_from_lo = match &r.end {
            Bound::Included(e) => e.as_slice() >= lo,
            Bound::Excluded(e) => e.as_slice() > lo,
            Bound::Unbounded => true,
        };
        starts_by_hi && ends_from_lo && (self.hi_included || lo < hi)
    }
}

/// What a transaction read (and, unless it is blind, wrote): what its commit validates.
#[derive(Default, Debug, Clone)]
pub(crate) struct ReadSet {
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) ranges: Vec<KeyRange>,
}

impl ReadSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

pub(crate) struct ConflictWindow {
    /// Snapshots of open transactions, with a count each.
    open: BTreeMap<SeqNo, usize>,
    /// Per key, the last sequence number that wrote it (since the oldest open snapshot).
    written: BTreeMap<Vec<u8>, SeqNo>,
    /// Every recorded write in sequence order, to forget the oldest first.
    history: VecDeque<(SeqNo, Vec<u8>)>,
    /// Memory the recorded writes hold, as [`footprint`] counts it.
    bytes: usize,
    capacity: usize,
    /// The newest sequence number forgotten for lack of room (0: none).
    forgotten: SeqNo,
    /// Key ranges written as a whole, with no key list: by an ingest (`lo ..= hi`) or a
    /// range delete (`lo .. hi`), with the sequence number.
    ranges: Vec<WrittenRange>,
}

impl ConflictWindow {
    /// A window holding up to about `capacity` bytes of recorded writes.
    pub(crate) fn new(capacity: usize) -> Self {
        ConflictWindow {
            open: BTreeMap::new(),
            written: BTreeMap::new(),
            history: VecDeque::new(),
            bytes: 0,
            capacity,
            forgotten: 0,
            ranges: Vec::new(),
        }
    }

    /// Registers a transaction reading at `snapshot` (the last sequence number assigned,
    /// taken under the commit lock, so every later commit is recorded).
    pub(crate) fn open(&mut self, snapshot: SeqNo) {
        *self.open.entry(snapshot).or_insert(0) += 1;
    }

    /// Unregisters a transaction and forgets what no open transaction needs any more.
    pub(crate) fn close(&mut self, snapshot: SeqNo) {
        if let Some(n) = self.open.get_mut(&snapshot) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&snapshot);
            }
        }
        match self.open.keys().next().copied() {
            None => {
                self.written.clear();
                self.history.clear();
                self.bytes = 0;
                self.forgotten = 0;
                self.ranges.clear();
            }
            Some(oldest) => {
                self.ranges.retain(|w| w.seq > oldest);
                // Writes at or below the oldest open snapshot happened before every open
                // transaction began: none can conflict with them.
                while self.history.front().is_some_and(|(seq, _)| *seq <= oldest) {
                    self.pop_oldest();
                }
            }
        }
    }

    /// Whether any transaction is open (so commits must be recorded).
    pub(crate) fn is_tracking(&self) -> bool {
        !self.open.is_empty()
    }

    /// Records the keys of `batch`, sequenced from `first_seq`.
    pub(crate) fn record(&mut self, batch: &WriteBatch, first_seq: SeqNo) {
        if !self.is_tracking() {
            return;
        }
        for (i, e) in batch.iter().enumerate() {
            let seq = first_seq + i as u64;
            if e.kind == strata_wal::EntryKind::DeleteRange {
                if e.key < e.value {
                    self.ranges.push(WrittenRange {
                        lo: e.key.to_vec(),
                        hi: e.value.to_vec(),
                        hi_included: false,
                        seq,
                    });
                }
                continue;
            }
            self.written.insert(e.key.to_vec(), seq);
            self.history.push_back((seq, e.key.to_vec()));
            self.bytes += footprint(e.key);
        }
        while self.bytes > self.capacity {
            if let Some(seq) = self.pop_oldest() {
                self.forgotten = self.forgotten.max(seq);
            }
        }
    }

    /// Records that every key in `lo ..= hi` was written at `seq` (an ingested table).
    pub(crate) fn record_range(&mut self, lo: &[u8], hi: &[u8], seq: SeqNo) {
        if self.is_tracking() {
            self.ranges.push(WrittenRange {
                lo: lo.to_vec(),
                hi: hi.to_vec(),
                hi_included: true,
                seq,
            });
        }
    }

    /// Whether a write sequenced after `after` may have touched a key in `lo ..= hi` (one
    /// did, or history after `after` was forgotten). Meaningful while a transaction at
    /// `after` or older is open.
    pub(crate) fn wrote_into(&self, lo: &[u8], hi: &[u8], after: SeqNo) -> bool {
        use std::ops::Bound::Included;
        let probe = KeyRange { start: Included(lo.to_vec()), end: Included(hi.to_vec()) };
        self.forgotten > after
            || self
                .written
                .range::<[u8], _>((Included(lo), Included(hi)))
                .any(|(_, seq)| *seq > after)
            || self.ranges.iter().any(|w| w.seq > after && w.meets(&probe))
    }

    fn pop_oldest(&mut self) -> Option<SeqNo> {
        let (seq, key) = self.history.pop_front()?;
        self.bytes -= footprint(&key);
        if self.written.get(&key) == Some(&seq) {
            self.written.remove(&key);
        }
        Some(seq)
    }

    /// [`Error::Conflict`] if a key or range of `reads`, or one of the `written` keys, was
    /// written after `snapshot`, or if a write after `snapshot` was forgotten (it may have
    /// touched one).
    pub(crate) fn validate<'k>(
        &self,
        snapshot: SeqNo,
        reads: &ReadSet,
        mut written: impl Iterator<Item = &'k [u8]>,
    ) -> Result<()> {
        if self.forgotten > snapshot {
            return Err(Error::Conflict);
        }
        let newer = |seq: &SeqNo| *seq > snapshot;
        if self.written.is_empty() && self.ranges.is_empty() {
            return Ok(()); // nothing was written after any open snapshot
        }
        let ranges = || self.ranges.iter().filter(|w| newer(&w.seq));
        let written_after =
            |k: &[u8]| self.written.get(k).is_some_and(newer) || ranges().any(|w| w.contains(k));
        if reads.keys.iter().any(|k| written_after(k)) || written.any(written_after) {
            return Err(Error::Conflict);
        }
        // A range that holds no key cannot have been written into.
        for r in reads.ranges.iter().filter(|r| !r.is_empty()) {
            if self.written.range::<[u8], _>(r.bounds()).any(|(_, seq)| newer(seq))
                || ranges().any(|w| w.meets(r))
            {
                return Err(Error::Conflict);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl ConflictWindow {
    fn validate_reads(&self, snapshot: SeqNo, reads: &ReadSet) -> Result<()> {
        self.validate(snapshot, reads, std::iter::empty())
    }
}

/// What one recorded write holds: the key twice (map and history) and, per copy, a vector
/// header and its share of a B-tree node or deque slot.
fn footprint(key: &[u8]) -> usize {
    2 * key.len() + 2 * (std::mem::size_of::<Vec<u8>>() + std::mem::size_of::<SeqNo>())
}

#[cfg(test)]
mod tests {
    use super::{ConflictWindow, ReadSet};
    use crate::db_iter::KeyRange;
    use std::ops::Bound;
    use strata_core::Error;
    use strata_wal::WriteBatch;

    fn batch(keys: &[&str]) -> WriteBatch {
        let mut b = WriteBatch::new();
        keys.iter().for_each(|k| b.put(k, "v"));
        b
    }

    fn reads(keys: &[&str], ranges: &[(&str, &str)]) -> ReadSet {
        ReadSet {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            ranges: ranges
                .iter()
                .map(|(a, b)| KeyRange {
                    start: Bound::Included(a.as_bytes().to_vec()),
                    end: Bound::Excluded(b.as_bytes().to_vec()),
                })
                .collect(),
        }
    }

    #[test]
    fn only_writes_after_the_snapshot_conflict() {
        let mut w = ConflictWindow::new(1 << 20);
        w.open(10);
        w.record(&batch(&["a"]), 11);
        w.open(11);
        w.record(&batch(&["b"]), 12);
        assert!(matches!(w.validate_reads(10, &reads(&["a"], &[])), Err(Error::Conflict)));
        assert!(
            w.validate_reads(11, &reads(&["a"], &[])).is_ok(),
            "a was written at 11, not after"
        );
        assert!(matches!(w.validate_reads(11, &reads(&["b"], &[])), Err(Error::Conflict)));
        assert!(w.validate_reads(11, &reads(&["c"], &[])).is_ok());
    }

    #[test]
    fn a_write_into_a_scanned_range_is_a_conflict() {
        let mut w = ConflictWindow::new(1 << 20);
        w.open(5);
        w.record(&batch(&["user/2"]), 6);
        assert!(matches!(
            w.validate_reads(5, &reads(&[], &[("user/", "user0")])),
            Err(Error::Conflict)
        ));
        assert!(w.validate_reads(5, &reads(&[], &[("user/3", "user0")])).is_ok());
        assert!(w.validate_reads(5, &reads(&[], &[("a", "user/2")])).is_ok(), "end is excluded");
    }

    #[test]
    fn nothing_is_recorded_without_an_open_transaction_and_closing_forgets() {
        let mut w = ConflictWindow::new(1 << 20);
        w.record(&batch(&["a"]), 1);
        w.open(1);
        assert!(w.validate_reads(0, &reads(&["a"], &[])).is_ok(), "recorded while nobody tracked");
        w.record(&batch(&["b"]), 2);
        w.open(2);
        w.record(&batch(&["c"]), 3);
        w.close(1);
        // The oldest open snapshot is 2 now: the write at 2 can no longer matter.
        assert_eq!(w.history.len(), 1);
        assert!(matches!(w.validate_reads(2, &reads(&["c"], &[])), Err(Error::Conflict)));
        w.close(2);
        assert!(!w.is_tracking() && w.history.is_empty() && w.written.is_empty());
    }

    #[test]
    fn an_ingested_range_conflicts_with_older_reads_of_keys_and_ranges_inside_it() {
        let mut w = ConflictWindow::new(1 << 20);
        w.open(5);
        w.record_range(b"k10", b"k20", 6);
        assert!(matches!(w.validate_reads(5, &reads(&["k15"], &[])), Err(Error::Conflict)));
        assert!(matches!(w.validate_reads(5, &reads(&["k10"], &[])), Err(Error::Conflict)));
        assert!(w.validate_reads(5, &reads(&["k21", "k0"], &[])).is_ok());
        assert!(matches!(w.validate_reads(5, &reads(&[], &[("k19", "z")])), Err(Error::Conflict)));
        assert!(matches!(w.validate_reads(5, &reads(&[], &[("a", "k100")])), Err(Error::Conflict)));
        assert!(w.validate_reads(5, &reads(&[], &[("a", "k10")])).is_ok(), "end is excluded");
        assert!(w.validate_reads(5, &reads(&[], &[("k200", "z")])).is_ok());
        assert!(w.validate_reads(6, &reads(&["k15"], &[])).is_ok(), "the snapshot saw the ingest");
        assert!(
            matches!(
                w.validate(5, &reads(&[], &[]), [&b"k12"[..]].into_iter()),
                Err(Error::Conflict)
            ),
            "a key the transaction wrote, ingested after its snapshot: first committer wins"
        );
        assert!(w.validate(5, &reads(&[], &[]), [&b"k30"[..]].into_iter()).is_ok());
        w.open(6);
        w.close(5);
        assert!(w.ranges.is_empty(), "no open snapshot predates the ingest");
    }

    #[test]
    fn forgotten_history_fails_older_transactions_safely() {
        let mut w = ConflictWindow::new(4 * super::footprint(b"a")); // four one-byte keys
        w.open(0);
        w.record(&batch(&["a", "b", "c", "d"]), 1);
        assert!(w.validate_reads(0, &reads(&["z"], &[])).is_ok());
        w.record(&batch(&["e"]), 5); // forgets "a" (seq 1)
        assert!(
            matches!(w.validate_reads(0, &reads(&["z"], &[])), Err(Error::Conflict)),
            "a write after the snapshot was forgotten: it might have been z"
        );
        assert!(
            w.validate_reads(1, &reads(&["z"], &[])).is_ok(),
            "the forgotten write is not newer"
        );
    }
}
