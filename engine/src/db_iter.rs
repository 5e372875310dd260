//! The user-visible view of a merged stream of versions: for each user key, the newest
//! version at or below the read's sequence number, with tombstones and everything outside
//! the requested bounds hidden.
//!
//! A [`ForwardCursor`] and a [`ReverseCursor`] each walk one direction over their own merged
//! source; a double-ended user iterator holds one of each and stops where they meet, so
//! neither cursor ever has to switch direction.

use std::ops::Bound;

use std::sync::Arc;

use bytes::Bytes;
use strata_core::iter::InternalIterator;
use strata_core::key::{parse_internal_key, InternalKey, SeqNo, ValueKind, MAX_SEQ};
use strata_core::range_del::RangeTombstones;
use strata_core::{Error, Result};

/// Bounds on user keys, owned.
#[derive(Debug, Clone)]
pub(crate) struct KeyRange {
    pub(crate) start: Bound<Vec<u8>>,
    pub(crate) end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// The bounds as slices, for `BTreeMap::range` over byte keys.
    pub(crate) fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        fn slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
            b.as_ref().map(Vec::as_slice)
        }
        (slice(&self.start), slice(&self.end))
    }

    /// Whether no key can lie in the range (its start is after its end, or they meet and
    /// one excludes the key): such a range is scanned as empty, never handed to
    /// `BTreeMap::range`, which panics on it.
    pub(crate) fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
            _ => false,
        }
    }

    pub(crate) fn above_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key > e.as_slice(),
            Bound::Excluded(e) => key >= e.as_slice(),
            Bound::Unbounded => false,
        }
    }

    pub(crate) fn below_start(&self, key: &[u8]) -> bool {
        match &self.start {
            Bound::Included(s) => key < s.as_slice(),
            Bound::Excluded(s) => key <= s.as_slice(),
            Bound::Unbounded => false,
        }
    }

    /// The range of keys that start with `prefix`.
    pub(crate) fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        // The smallest key greater than every key with this prefix: drop trailing 0xff
        // bytes and increment the last remaining one; all-0xff prefixes have no end.
        while end.last() == Some(&0xff) {
            end.pop();
        }
        let end = match end.last_mut() {
            Some(last) => {
                *last += 1;
                Bound::Excluded(end)
            }
            None => Bound::Unbounded,
        };
        KeyRange { start: Bound::Included(prefix.to_vec()), end }
    }
}

fn corrupt_key(key: &[u8]) -> Error {
    Error::corruption("<merged read>", 0, format!("malformed internal key {key:?}"))
}

/// Walks user entries in ascending key order.
pub(crate) struct ForwardCursor<I> {
    iter: I,
    seq: SeqNo,
    range: KeyRange,
    /// The view's range tombstones, a few fragmented sets (none, nearly always).
    tombstones: Vec<Arc<RangeTombstones>>,
    started: bool,
    /// The last user key emitted or found deleted: its older versions are skipped. A
    /// reused buffer (`has_skip` says whether it holds a key), not a fresh `Vec` per entry.
    skip: Vec<u8>,
    has_skip: bool,
    done: bool,
}

/// Whether a range tombstone visible at `seq` deletes the version `(key, version)`.
fn covered(tombstones: &[Arc<RangeTombstones>], key: &[u8], version: SeqNo, seq: SeqNo) -> bool {
    tombstones.iter().any(|t| t.max_cover(key, seq) > Some(version))
}

impl<I: InternalIterator> ForwardCursor<I> {
    pub(crate) fn new(
        iter: I,
        seq: SeqNo,
        range: KeyRange,
        tombstones: Vec<Arc<RangeTombstones>>,
    ) -> Self {
        ForwardCursor {
            iter,
            seq,
            range,
            tombstones,
            started: false,
            skip: Vec::new(),
            has_skip: false,
            done: false,
        }
    }

    fn start(&mut self) {
        self.started = true;
        match &self.range.start {
            Bound::Unbounded => self.iter.seek_to_first(),
            Bound::Included(k) | Bound::Excluded(k) => {
                let target = InternalKey::new(k, MAX_SEQ, ValueKind::FOR_SEEK);
                self.iter.seek(target.encoded());
            }
        }
    }

    /// The next visible entry, or `None` at the end.
    pub(crate) fn next_entry(&mut self) -> Option<Result<(Bytes, Bytes)>> {
        if self.done {
            return None;
        }
        if !self.started {
            self.start();
        } else if self.iter.valid() {
            self.iter.next();
        }
        loop {
            if !self.iter.valid() {
                self.done = true;
                return self.iter.status().err().map(Err);
            }
            let Some(p) = parse_internal_key(self.iter.key()) else {
                self.done = true;
                return Some(Err(corrupt_key(self.iter.key())));
            };
            if self.range.above_end(p.user_key) {
                self.done = true;
                return None;
            }
            let hidden = p.seq > self.seq
                || (self.has_skip && self.skip == p.user_key)
                || self.range.below_start(p.user_key);
            if !hidden {
                self.skip.clear();
                self.skip.extend_from_slice(p.user_key);
                self.has_skip = true;
                // A key's newest visible version decides it: covered by a range tombstone,
                // it is deleted like a point tombstone would delete it.
                if p.kind == ValueKind::Put
                    && !covered(&self.tombstones, p.user_key, p.seq, self.seq)
                {
                    let key = Bytes::copy_from_slice(p.user_key);
                    return Some(Ok((key, Bytes::copy_from_slice(self.iter.value()))));
                }
            }
            self.iter.next();
        }
    }
}

/// Walks user entries in descending key order.
pub(crate) struct ReverseCursor<I> {
    iter: I,
    seq: SeqNo,
    range: KeyRange,
    tombstones: Vec<Arc<RangeTombstones>>,
    started: bool,
    done: bool,
}

impl<I: InternalIterator> ReverseCursor<I> {
    pub(crate) fn new(
        iter: I,
        seq: SeqNo,
        range: KeyRange,
        tombstones: Vec<Arc<RangeTombstones>>,
    ) -> Self {
        ReverseCursor { iter, seq, range, tombstones, started: false, done: false }
    }

    fn start(&mut self) {
        self.started = true;
        match &self.range.end {
            Bound::Unbounded => self.iter.seek_to_last(),
            // The last internal key of user key k is (k, seq 0, Delete).
            Bound::Included(k) | Bound::Excluded(k) => {
                let target = InternalKey::new(k, 0, ValueKind::Delete);
                self.iter.seek_for_prev(target.encoded());
            }
        }
    }

    /// The previous visible entry, or `None` at the start.
    ///
    /// Walking backwards meets a key's versions oldest first, so the cursor keeps the newest
    /// visible version seen for the current key and decides only when it reaches a smaller
    /// key (or the end).
    pub(crate) fn next_entry(&mut self) -> Option<Result<(Bytes, Bytes)>> {
        if self.done {
            return None;
        }
        if !self.started {
            self.start();
        }
        let mut candidate: Option<(Vec<u8>, ValueKind, Bytes)> = None;
        loop {
            if !self.iter.valid() {
                self.done = true;
                if let Err(e) = self.iter.status() {
                    return Some(Err(e));
                }
                break;
            }
            let Some(p) = parse_internal_key(self.iter.key()) else {
                self.done = true;
                return Some(Err(corrupt_key(self.iter.key())));
            };
            if self.range.below_start(p.user_key) {
                self.done = true;
                break;
            }
            if let Some((key, kind, _)) = &candidate {
                if p.user_key != key.as_slice() && *kind == ValueKind::Put {
                    break; // the iterator now sits on the previous key: resume from here
                }
            }
            if p.seq <= self.seq && !self.range.above_end(p.user_key) {
                let kind = if covered(&self.tombstones, p.user_key, p.seq, self.seq) {
                    ValueKind::Delete
                } else {
                    p.kind
                };
                let value = match kind {
                    ValueKind::Put => Bytes::copy_from_slice(self.iter.value()),
                    ValueKind::Delete => Bytes::new(),
                };
                candidate = Some((p.user_key.to_vec(), kind, value));
            }
            self.iter.prev();
        }
        match candidate {
            Some((key, ValueKind::Put, value)) => Some(Ok((Bytes::from(key), value))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use strata_core::iter::VecIterator;

    /// Builds versions of keys 0..n with random kinds and sequences, and checks both cursors
    /// against a model that resolves each key's newest visible version.
    fn check(versions: Vec<(u8, u64, bool)>, seq: SeqNo, lo: Bound<u8>, hi: Bound<u8>) {
        let mut seen = std::collections::BTreeSet::new();
        let versions: Vec<_> = versions.into_iter().filter(|v| seen.insert((v.0, v.1))).collect();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = versions
            .iter()
            .map(|&(k, s, put)| {
                let kind = if put { ValueKind::Put } else { ValueKind::Delete };
                (
                    InternalKey::new(&[k], s, kind).into_encoded(),
                    if put { vec![k, s as u8] } else { vec![] },
                )
            })
            .collect();
        let mut newest: BTreeMap<u8, (u64, bool)> = BTreeMap::new();
        for &(k, s, put) in &versions {
            if s <= seq && newest.get(&k).is_none_or(|&(ns, _)| s > ns) {
                newest.insert(k, (s, put));
            }
        }
        let model: Vec<(Vec<u8>, Vec<u8>)> = newest
            .range((lo, hi))
            .filter(|(_, (_, put))| *put)
            .map(|(&k, &(s, _))| (vec![k], vec![k, s as u8]))
            .collect();
        let range = KeyRange { start: lo.map(|b| vec![b]), end: hi.map(|b| vec![b]) };
        let mut fwd =
            ForwardCursor::new(VecIterator::new(entries.clone()), seq, range.clone(), Vec::new());
        let mut got = Vec::new();
        while let Some(e) = fwd.next_entry() {
            let (k, v) = e.unwrap();
            got.push((k.to_vec(), v.to_vec()));
        }
        assert_eq!(got, model);
        let mut rev = ReverseCursor::new(VecIterator::new(entries), seq, range, Vec::new());
        let mut got = Vec::new();
        while let Some(e) = rev.next_entry() {
            let (k, v) = e.unwrap();
            got.push((k.to_vec(), v.to_vec()));
        }
        got.reverse();
        assert_eq!(got, model);
    }

    fn bound() -> impl Strategy<Value = Bound<u8>> {
        prop_oneof![
            Just(Bound::Unbounded),
            (0u8..12).prop_map(Bound::Included),
            (0u8..12).prop_map(Bound::Excluded)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn cursors_match_model(versions in proptest::collection::vec((0u8..10, 1u64..40, any::<bool>()), 0..40),
                               seq in 0u64..45, lo in bound(), hi in bound()) {
            // BTreeMap::range panics on inverted ranges; the cursors just yield nothing.
            let inverted = match (lo, hi) {
                (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a > b || (a == b && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_)))),
                _ => false,
            };
            prop_assume!(!inverted);
            check(versions, seq, lo, hi);
        }
    }

    #[test]
    fn prefix_range_covers_exactly_the_prefix() {
        let r = KeyRange::prefix(b"ab\xff");
        assert!(!r.below_start(b"ab\xff") && !r.above_end(b"ab\xff\xff\x00"));
        assert!(r.above_end(b"ac"));
        assert!(r.below_start(b"ab\xfe"));
        assert!(matches!(KeyRange::prefix(b"\xff\xff").end, Bound::Unbounded));
        assert!(matches!(KeyRange::prefix(b"").end, Bound::Unbounded));
    }
}
