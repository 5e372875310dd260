//! [`MergingIterator`]: one sorted cursor over many sorted sources (memtables, level-0
//! tables, levels, compaction inputs), in internal-key order, in both directions.
//!
//! Children must never hold the same internal key (in the engine every version lives in
//! exactly one source: a flush swaps the immutable memtable for its table atomically); that
//! is what lets a direction switch reposition the other children with a plain seek.

use std::cmp::Ordering;

use crate::iter::InternalIterator;
use crate::key::compare_internal;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Reverse,
}

/// A k-way merge of [`InternalIterator`]s.
///
/// ```
/// use strata_core::iter::{InternalIterator, VecIterator};
/// use strata_core::key::{InternalKey, ValueKind};
/// use strata_core::merge::MergingIterator;
/// let a = VecIterator::new(vec![(InternalKey::new(b"a", 1, ValueKind::Put).into_encoded(), b"1".to_vec())]);
/// let b = VecIterator::new(vec![(InternalKey::new(b"b", 2, ValueKind::Put).into_encoded(), b"2".to_vec())]);
/// let mut m = MergingIterator::new(vec![Box::new(b), Box::new(a)]);
/// m.seek_to_first();
/// assert_eq!(m.value(), b"1");
/// m.next();
/// assert_eq!(m.value(), b"2");
/// ```
///
/// Finding the next child is a linear scan: a read view has a handful of sources (one
/// memtable, a couple of immutable ones, the level-0 tables, one cursor per deeper level),
/// where a scan of contiguous keys beats a heap's pointer chasing.
pub struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    current: Option<usize>,
    direction: Direction,
}

impl MergingIterator {
    /// Merges `children` (their positions do not matter: every seek repositions all).
    pub fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        MergingIterator { children, current: None, direction: Direction::Forward }
    }

    fn pick(&mut self, want: Ordering) {
        let mut best: Option<usize> = None;
        for (i, child) in self.children.iter().enumerate() {
            if !child.valid() {
                // A child that failed would silently drop its keys from the merge: stop
                // the whole merge instead, and let `status` report it.
                if child.status().is_err() {
                    self.current = None;
                    return;
                }
                continue;
            }
            best = match best {
                Some(b) if compare_internal(child.key(), self.children[b].key()) != want => Some(b),
                _ => Some(i),
            };
        }
        self.current = best;
    }

    fn pick_smallest(&mut self) {
        self.direction = Direction::Forward;
        self.pick(Ordering::Less);
    }

    fn pick_largest(&mut self) {
        self.direction = Direction::Reverse;
        self.pick(Ordering::Greater);
    }
}

impl InternalIterator for MergingIterator {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn seek_to_first(&mut self) {
        for c in &mut self.children {
            c.seek_to_first();
        }
        self.pick_smallest();
    }

    fn seek_to_last(&mut self) {
        for c in &mut self.children {
            c.seek_to_last();
        }
        self.pick_largest();
    }

    fn seek(&mut self, target: &[u8]) {
        for c in &mut self.children {
            c.seek(target);
        }
        self.pick_smallest();
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        for c in &mut self.children {
            c.seek_for_prev(target);
        }
        self.pick_largest();
    }

    fn next(&mut self) {
        let Some(cur) = self.current else { return };
        if self.direction == Direction::Reverse {
            // Every other child sits before the current key; move each to its first entry
            // after it.
            let key = self.children[cur].key().to_vec();
            for (i, c) in self.children.iter_mut().enumerate() {
                if i != cur {
                    c.seek(&key);
                    if c.valid() && compare_internal(c.key(), &key).is_eq() {
                        c.next();
                    }
                }
            }
        }
        self.children[cur].next();
        self.pick_smallest();
    }

    fn prev(&mut self) {
        let Some(cur) = self.current else { return };
        if self.direction == Direction::Forward {
            let key = self.children[cur].key().to_vec();
            for (i, c) in self.children.iter_mut().enumerate() {
                if i != cur {
                    c.seek_for_prev(&key);
                    if c.valid() && compare_internal(c.key(), &key).is_eq() {
                        c.prev();
                    }
                }
            }
        }
        self.children[cur].prev();
        self.pick_largest();
    }

    fn key(&self) -> &[u8] {
        self.current.map_or(&[], |c| self.children[c].key())
    }

    fn value(&self) -> &[u8] {
        self.current.map_or(&[], |c| self.children[c].value())
    }

    fn status(&self) -> Result<()> {
        self.children.iter().try_for_each(|c| c.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::VecIterator;
    use crate::key::{InternalKey, ValueKind};
    use proptest::prelude::*;

    fn entries(keys: &[(u8, u64)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        keys.iter()
            .map(|&(k, s)| (InternalKey::new(&[k], s, ValueKind::Put).into_encoded(), vec![k]))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// The merge equals one sorted list of all children's entries, walked in any mix of
        /// directions.
        #[test]
        fn merge_matches_sorted_union(
            sources in proptest::collection::vec(proptest::collection::vec((0u8..20, 0u64..1000), 0..15), 0..5),
            moves in proptest::collection::vec(any::<bool>(), 0..60),
            seek in (0u8..22, 0u64..1000),
        ) {
            // Make internal keys unique across sources, as in the engine.
            let mut seen = std::collections::BTreeSet::new();
            let sources: Vec<Vec<(u8, u64)>> = sources.into_iter()
                .map(|s| s.into_iter().filter(|e| seen.insert(*e)).collect()).collect();
            let all = VecIterator::new(sources.iter().flat_map(|s| entries(s)).collect());
            let children: Vec<Box<dyn InternalIterator>> = sources.iter()
                .map(|s| Box::new(VecIterator::new(entries(s))) as Box<dyn InternalIterator>).collect();
            let mut merged = MergingIterator::new(children);
            let mut model = all;
            let target = InternalKey::new(&[seek.0], seek.1, ValueKind::Put);
            merged.seek(target.encoded());
            model.seek(target.encoded());
            for forward in moves {
                prop_assert_eq!(merged.valid(), model.valid());
                if !model.valid() { break; }
                prop_assert_eq!(merged.key(), model.key());
                prop_assert_eq!(merged.value(), model.value());
                if forward { merged.next(); model.next(); } else { merged.prev(); model.prev(); }
            }
            merged.seek_for_prev(target.encoded());
            model.seek_for_prev(target.encoded());
            prop_assert_eq!(merged.valid(), model.valid());
            if model.valid() { prop_assert_eq!(merged.key(), model.key()); }
        }
    }
}
