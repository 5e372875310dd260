//! Range tombstones: "every key in `[start, end)` older than sequence `seq` is deleted".
//!
//! A range delete is one record however many keys it covers. The memtable, the tables and
//! compaction keep range tombstones apart from point versions and ask one question of
//! them: for key `k` read at sequence `r`, what is the newest tombstone at or below `r`
//! that covers `k` ([`RangeTombstones::max_cover`])? A point version of `k` older than that
//! is deleted; one newer is visible.
//!
//! To answer in one binary search, [`RangeTombstones`] keeps the tombstones *fragmented*:
//! cut at every start and end into pieces that never overlap, each listing the sequence
//! numbers of the tombstones that cover it. Fragmenting is idempotent, so tables store the
//! fragments and readers fragment them again for free.

use std::cmp::Ordering;

use crate::key::SeqNo;

/// One range delete: every version of a key in `start..end` with a sequence number below
/// `seq` is deleted. `end` is exclusive; a tombstone with `start >= end` covers nothing.
///
/// ```
/// use strata_core::range_del::RangeTombstone;
/// let t = RangeTombstone::new("b", "d", 9);
/// assert!(t.covers(b"b") && t.covers(b"c\xff") && !t.covers(b"d"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeTombstone {
    /// The first key covered.
    pub start: Vec<u8>,
    /// The first key after the range (not covered).
    pub end: Vec<u8>,
    /// The sequence number of the delete.
    pub seq: SeqNo,
}

impl RangeTombstone {
    /// A tombstone over `start..end` at `seq`.
    pub fn new(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>, seq: SeqNo) -> Self {
        RangeTombstone { start: start.as_ref().to_vec(), end: end.as_ref().to_vec(), seq }
    }

    /// Whether `key` lies in `start..end`.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && key < self.end.as_slice()
    }

    /// Whether the range holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

/// A piece of the keyspace and the tombstones covering all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fragment {
    start: Vec<u8>,
    end: Vec<u8>,
    /// Sequence numbers of the covering tombstones, newest first, without duplicates.
    seqs: Vec<SeqNo>,
}

/// A set of range tombstones, fragmented for lookups.
///
/// ```
/// use strata_core::range_del::{RangeTombstone, RangeTombstones};
/// let set = RangeTombstones::new([
///     RangeTombstone::new("a", "m", 5),
///     RangeTombstone::new("k", "z", 9),
/// ]);
/// assert_eq!(set.max_cover(b"c", 100), Some(5));
/// assert_eq!(set.max_cover(b"l", 100), Some(9)); // both cover "l": the newer wins
/// assert_eq!(set.max_cover(b"l", 7), Some(5));   // a reader at 7 does not see the one at 9
/// assert_eq!(set.max_cover(b"z", 100), None);    // ends are exclusive
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeTombstones {
    fragments: Vec<Fragment>,
    /// The prefix every fragment's start shares, and each start's next 8 bytes as a
    /// big-endian word (parallel to `fragments`): the lookup's binary search compares
    /// words, and whole keys only on a tie (the index's trick, `strata_sstable::Index`).
    shared: Vec<u8>,
    words: Vec<u64>,
    /// Each end's word after `shared`, or `None` for an end without that prefix.
    end_words: Vec<Option<u64>>,
}

/// The 8 bytes of `key` from `skip` on, big-endian, zero-padded: for keys agreeing on their
/// first `skip` bytes, a smaller word means a smaller key; equal words decide nothing.
fn word_after(key: &[u8], skip: usize) -> u64 {
    let rest = key.get(skip..).unwrap_or_default();
    let mut word = [0u8; 8];
    let n = rest.len().min(8);
    word[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(word)
}

impl RangeTombstones {
    /// Fragments `tombstones` (any order, overlaps allowed; empty ranges are ignored).
    pub fn new(tombstones: impl IntoIterator<Item = RangeTombstone>) -> Self {
        let mut tombstones: Vec<RangeTombstone> =
            tombstones.into_iter().filter(|t| !t.is_empty()).collect();
        if tombstones.is_empty() {
            return RangeTombstones::default();
        }
        tombstones.sort_by(|a, b| a.start.cmp(&b.start));
        let mut points: Vec<&[u8]> = Vec::with_capacity(tombstones.len() * 2);
        for t in &tombstones {
            points.push(&t.start);
            points.push(&t.end);
        }
        points.sort_unstable();
        points.dedup();
        let mut fragments: Vec<Fragment> = Vec::new();
        let mut active: Vec<(&[u8], SeqNo)> = Vec::new();
        let mut next = 0;
        for w in points.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            while next < tombstones.len() && tombstones[next].start.as_slice() <= lo {
                active.push((&tombstones[next].end, tombstones[next].seq));
                next += 1;
            }
            active.retain(|&(end, _)| end > lo);
            if active.is_empty() {
                continue;
            }
            let mut seqs: Vec<SeqNo> = active.iter().map(|&(_, s)| s).collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            seqs.dedup();
            match fragments.last_mut() {
                // Neighbours with the same coverage are one fragment.
                Some(last) if last.end == lo && last.seqs == seqs => last.end = hi.to_vec(),
                _ => fragments.push(Fragment { start: lo.to_vec(), end: hi.to_vec(), seqs }),
            }
        }
        let (first, last) = match (fragments.first(), fragments.last()) {
            (Some(f), Some(l)) => (&f.start, &l.start),
            _ => return RangeTombstones::default(),
        };
        let shared_len = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let shared = first[..shared_len].to_vec();
        let words = fragments.iter().map(|f| word_after(&f.start, shared_len)).collect();
        let end_words = fragments
            .iter()
            .map(|f| f.end.starts_with(&shared).then(|| word_after(&f.end, shared_len)))
            .collect();
        RangeTombstones { fragments, shared, words, end_words }
    }

    /// The newest sequence number of any tombstone in the set (0 when empty): a version
    /// at or above it is deleted by none of them.
    pub fn max_seq(&self) -> SeqNo {
        self.fragments.iter().filter_map(|f| f.seqs.first()).copied().max().unwrap_or(0)
    }

    /// Whether the set holds no tombstone.
    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }

    /// The newest sequence number `<= read_seq` of a tombstone covering `key`, if any.
    #[inline]
    pub fn max_cover(&self, key: &[u8], read_seq: SeqNo) -> Option<SeqNo> {
        let (below, word) = self.fragments_at_or_below(key);
        let i = below.checked_sub(1)?;
        let f = self.fragments.get(i)?;
        // key < end: decided by the words when both share the prefix and they differ.
        let before_end = match (word, self.end_words.get(i).copied().flatten()) {
            (Some(w), Some(end)) if w != end => w < end,
            _ => key < f.end.as_slice(),
        };
        if !before_end {
            return None;
        }
        f.seqs.iter().copied().find(|&s| s <= read_seq)
    }

    /// The number of fragments whose start is `<= key`, and the key's word after the
    /// shared prefix if it has that prefix.
    #[inline]
    fn fragments_at_or_below(&self, key: &[u8]) -> (usize, Option<u64>) {
        let skip = self.shared.len();
        if key.get(..skip) != Some(&self.shared[..]) {
            // Every start begins with `shared`: a key that does not is below or above all.
            return (if key < &self.shared[..] { 0 } else { self.fragments.len() }, None);
        }
        let word = word_after(key, skip);
        let (mut lo, mut hi) = (0, self.fragments.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let start_at_or_below = match self.words[mid].cmp(&word) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => self.fragments[mid].start.as_slice() <= key,
            };
            if start_at_or_below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo, Some(word))
    }

    /// Whether some tombstone covers part of `start..=end` (both inclusive).
    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        let i = self.fragments.partition_point(|f| f.end.as_slice() <= start);
        self.fragments.get(i).is_some_and(|f| f.start.as_slice() <= end)
    }

    /// The smallest start and the largest end of the set (`None` when empty).
    pub fn extent(&self) -> Option<(&[u8], &[u8])> {
        Some((&self.fragments.first()?.start, &self.fragments.last()?.end))
    }

    /// The tombstones as fragments: one tombstone per fragment and covering sequence
    /// number, in start order (what a table stores). Fragmenting them again gives this set.
    pub fn iter(&self) -> impl Iterator<Item = RangeTombstone> + '_ {
        self.fragments.iter().flat_map(|f| {
            f.seqs.iter().map(|&seq| RangeTombstone {
                start: f.start.clone(),
                end: f.end.clone(),
                seq,
            })
        })
    }

    /// Number of (fragment, sequence) pairs, i.e. of items [`RangeTombstones::iter`] yields.
    pub fn len(&self) -> usize {
        self.fragments.iter().map(|f| f.seqs.len()).sum()
    }

    /// The fragments cut to `lo..hi` (`None`: unbounded on that side), keeping only the
    /// sequence numbers `keep` accepts: what one output table of a compaction carries.
    pub fn clipped(
        &self,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        mut keep: impl FnMut(&RangeTombstone) -> bool,
    ) -> Vec<RangeTombstone> {
        let mut out = Vec::new();
        for t in self.iter() {
            let start = match lo {
                Some(lo) if lo > t.start.as_slice() => lo.to_vec(),
                _ => t.start.clone(),
            };
            let end = match hi {
                Some(hi) if hi < t.end.as_slice() => hi.to_vec(),
                _ => t.end.clone(),
            };
            let piece = RangeTombstone { start, end, seq: t.seq };
            if !piece.is_empty() && keep(&piece) {
                out.push(piece);
            }
        }
        out
    }
}

/// The inclusive user-key bound of a tombstone ending (exclusively) at `end`, for a
/// table's key range: `end` without its trailing zero byte when it has one (the exact last
/// covered key, since `k ++ [0]` is the key right after `k`), else `end` itself, which
/// overstates the range by that one key — harmless, a table range may be wider than its
/// contents.
///
/// ```
/// use strata_core::range_del::inclusive_end;
/// assert_eq!(inclusive_end(b"k\0"), b"k");
/// assert_eq!(inclusive_end(b"m"), b"m");
/// ```
pub fn inclusive_end(end: &[u8]) -> &[u8] {
    match end.split_last() {
        Some((0, rest)) => rest,
        _ => end,
    }
}

/// The smallest key after `key`: `key ++ [0]`.
///
/// ```
/// assert_eq!(strata_core::range_del::successor(b"k"), b"k\0");
/// ```
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

/// Orders tombstones by start, then end, then newest first (a stable order for encoding).
pub fn compare(a: &RangeTombstone, b: &RangeTombstone) -> Ordering {
    a.start.cmp(&b.start).then_with(|| a.end.cmp(&b.end)).then_with(|| b.seq.cmp(&a.seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(ts: &[RangeTombstone], key: &[u8], read: SeqNo) -> Option<SeqNo> {
        ts.iter().filter(|t| t.covers(key) && t.seq <= read).map(|t| t.seq).max()
    }

    proptest! {
        #[test]
        fn fragments_answer_like_the_raw_list(
            raw in proptest::collection::vec((0u8..20, 0u8..20, 1u64..30), 0..12),
            read in 0u64..32,
            prefix in proptest::collection::vec(0u8..3, 0..10),
        ) {
            // Keys share `prefix` (the lookup skips what all starts share) or do not.
            let with = |k: &[u8]| [&prefix[..], k].concat();
            let shared: Vec<_> = raw.iter().map(|&(a, b, s)| RangeTombstone::new(with(&[a]), with(&[b]), s)).collect();
            let shared_set = RangeTombstones::new(shared.clone());
            for k in 0u8..21 {
                for probe in [with(&[k]), with(&[k, 7]), vec![k], with(&[]), with(&[k, 0, 0, 0, 0, 0, 0, 0, 0, 1])] {
                    prop_assert_eq!(shared_set.max_cover(&probe, read), naive(&shared, &probe, read));
                }
            }
            let ts: Vec<_> = raw.iter().map(|&(a, b, s)| RangeTombstone::new([a], [b], s)).collect();
            let set = RangeTombstones::new(ts.clone());
            for k in 0u8..21 {
                prop_assert_eq!(set.max_cover(&[k], read), naive(&ts, &[k], read));
                prop_assert_eq!(set.max_cover(&[k, 7], read), naive(&ts, &[k, 7], read));
            }
            // Idempotent: the stored form fragments to the same set.
            prop_assert_eq!(RangeTombstones::new(set.iter()), set.clone());
            prop_assert_eq!(set.iter().count(), set.len());
            for lo in 0u8..21 {
                for hi in lo..21 {
                    let any = ts.iter().any(|t| !t.is_empty() && t.start.as_slice() <= &[hi][..] && &[lo][..] < t.end.as_slice());
                    prop_assert_eq!(set.overlaps(&[lo], &[hi]), any);
                }
            }
            // Clipping keeps exactly the coverage inside the bounds.
            let cut = RangeTombstones::new(set.clipped(Some(&[5]), Some(&[12]), |_| true));
            for k in 0u8..21 {
                let want = if (5..12).contains(&k) { naive(&ts, &[k], read) } else { None };
                prop_assert_eq!(cut.max_cover(&[k], read), want);
            }
        }
    }

    #[test]
    fn empty_ranges_cover_nothing() {
        let set = RangeTombstones::new([
            RangeTombstone::new("b", "b", 3),
            RangeTombstone::new("c", "a", 3),
        ]);
        assert!(set.is_empty());
        assert_eq!(set.extent(), None);
    }
}
