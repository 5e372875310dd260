//! [`OwnWrites`]: a transaction's buffered writes, kept as the very batch its commit logs,
//! so that committing copies nothing and a small transaction allocates little. A key index
//! is added once the batch is too long to search for the transaction's own reads.

use std::collections::BTreeMap;

use bytes::Bytes;
use strata_wal::{BatchEntry, EntryKind, WriteBatch};

use crate::db_iter::KeyRange;

/// Writes a transaction can hold before its own reads stop searching the batch and use an
/// index: a linear search of a few entries is cheaper than building a map.
const SEARCH_LIMIT: usize = 16;

/// A transaction's writes in the order it made them; a later write of a key wins.
#[derive(Default)]
pub(crate) struct OwnWrites {
    batch: WriteBatch,
    /// The last write of each key (`None`: a delete), once the batch is past
    /// [`SEARCH_LIMIT`] entries.
    index: Option<BTreeMap<Vec<u8>, Option<Bytes>>>,
}

impl OwnWrites {
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) {
        self.batch.put(key, value);
        self.noted(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: &[u8]) {
        self.batch.delete(key);
        self.noted(key, None);
    }

    fn noted(&mut self, key: &[u8], value: Option<&[u8]>) {
        match &mut self.index {
            Some(index) => {
                index.insert(key.to_vec(), value.map(Bytes::copy_from_slice));
                // Rewrites of the same keys: keep the batch within twice what it must hold.
                if self.batch.len() > 2 * index.len() + SEARCH_LIMIT {
                    self.batch = batch_of(index);
                }
            }
            None if self.batch.len() > SEARCH_LIMIT => {
                let mut index = BTreeMap::new();
                for e in &self.batch {
                    index.insert(e.key.to_vec(), value_of(&e));
                }
                self.index = Some(index);
            }
            None => {}
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Distinct keys written.
    pub(crate) fn len(&self) -> usize {
        match &self.index {
            Some(index) => index.len(),
            None => self.sorted(None).len(),
        }
    }

    /// The transaction's last write of `key`: `Some(None)` if it deleted it, `None` if it
    /// did not write it.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<Bytes>> {
        match &self.index {
            Some(index) => index.get(key).cloned(),
            None => self.batch.iter().filter(|e| e.key == key).last().map(|e| value_of(&e)),
        }
    }

    /// The last write of each key in `range` (all keys without one), in key order.
    pub(crate) fn in_range(&self, range: &KeyRange) -> Vec<(Bytes, Option<Bytes>)> {
        match &self.index {
            Some(index) => index
                .range::<[u8], _>(range.bounds())
                .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone()))
                .collect(),
            None => self.sorted(Some(range)),
        }
    }

    fn sorted(&self, range: Option<&KeyRange>) -> Vec<(Bytes, Option<Bytes>)> {
        let within = |key: &[u8]| range.is_none_or(|r| !r.below_start(key) && !r.above_end(key));
        let mut entries: Vec<(usize, BatchEntry<'_>)> =
            self.batch.iter().enumerate().filter(|(_, e)| within(e.key)).collect();
        // Newest write of a key first, so that `dedup_by` keeps it.
        entries.sort_by(|(i, a), (j, b)| a.key.cmp(b.key).then(j.cmp(i)));
        entries.dedup_by(|(_, later), (_, kept)| later.key == kept.key);
        entries.iter().map(|(_, e)| (Bytes::copy_from_slice(e.key), value_of(e))).collect()
    }

    /// The keys written (a key written twice may appear twice).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.batch.iter().map(|e| e.key)
    }

    /// The batch to commit: every write, a key's last write last.
    pub(crate) fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }
}

fn value_of(e: &BatchEntry<'_>) -> Option<Bytes> {
    // A transaction's batch holds puts and deletes only (it offers no range delete).
    match e.kind {
        EntryKind::Put => Some(Bytes::copy_from_slice(e.value)),
        EntryKind::Delete | EntryKind::DeleteRange => None,
    }
}

fn batch_of(index: &BTreeMap<Vec<u8>, Option<Bytes>>) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (key, value) in index {
        match value {
            Some(v) => batch.put(key, v),
            None => batch.delete(key),
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::{OwnWrites, SEARCH_LIMIT};
    use crate::db_iter::KeyRange;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::ops::Bound;

    proptest! {
        /// Searched or indexed, the own writes answer like a map of last writes, and the
        /// batch applied in order leaves the same map.
        #[test]
        fn own_writes_agree_with_a_map(
            ops in proptest::collection::vec((0u8..24, proptest::option::of(0u8..4)), 0..120),
            lo in 0u8..24, hi in 0u8..24,
        ) {
            let mut own = OwnWrites::default();
            let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            for (i, (k, v)) in ops.iter().enumerate() {
                let key = vec![b'k', *k];
                match v {
                    Some(v) => { own.put(&key, &[*v]); model.insert(key.clone(), Some(vec![*v])); }
                    None => { own.delete(&key); model.insert(key.clone(), None); }
                }
                prop_assert_eq!(own.get(&key).map(|v| v.map(|b| b.to_vec())), model.get(&key).cloned(), "after op {}", i);
            }
            prop_assert_eq!(own.len(), model.len());
            prop_assert!(own.batch.len() <= 2 * model.len() + SEARCH_LIMIT + 1);
            let range = KeyRange { start: Bound::Included(vec![b'k', lo]), end: Bound::Excluded(vec![b'k', hi]) };
            if !range.is_empty() {
                let got: Vec<_> = own.in_range(&range).into_iter().map(|(k, v)| (k.to_vec(), v.map(|b| b.to_vec()))).collect();
                let want: Vec<_> = model.range(vec![b'k', lo]..vec![b'k', hi]).map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(got, want);
            }
            let mut applied = BTreeMap::new();
            for e in own.batch_mut().iter() {
                let value = (e.kind == strata_wal::EntryKind::Put).then(|| e.value.to_vec());
                applied.insert(e.key.to_vec(), value);
            }
            prop_assert_eq!(applied, model);
        }
    }
}
