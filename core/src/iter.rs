//! [`InternalIterator`]: the cursor interface shared by every sorted source of versions —
//! memtables, table blocks, whole tables, levels — so that one merge can combine them.

use crate::key::compare_internal;
use crate::Result;

/// A bidirectional cursor over encoded internal keys in [`compare_internal`] order.
///
/// Positioning methods leave the iterator either on an entry (`valid()`) or off the end. An
/// I/O error or corruption met while moving makes it invalid and is reported by `status()`;
/// callers must check `status()` whenever `valid()` turns false, or an error would look like
/// the end of the data.
///
/// ```
/// use strata_core::iter::{InternalIterator, VecIterator};
/// use strata_core::key::{InternalKey, ValueKind};
/// let mut it = VecIterator::new(vec![
///     (InternalKey::new(b"a", 2, ValueKind::Put).into_encoded(), b"1".to_vec()),
///     (InternalKey::new(b"b", 1, ValueKind::Put).into_encoded(), b"2".to_vec()),
/// ]);
/// it.seek(InternalKey::new(b"b", 9, ValueKind::Put).encoded());
/// assert!(it.valid());
/// assert_eq!(it.value(), b"2");
/// it.prev();
/// assert_eq!(it.value(), b"1");
/// ```
pub trait InternalIterator: Send {
    /// Whether the iterator is on an entry.
    fn valid(&self) -> bool;
    /// Moves to the first entry.
    fn seek_to_first(&mut self);
    /// Moves to the last entry.
    fn seek_to_last(&mut self);
    /// Moves to the first entry whose key is `>= target` (an encoded internal key).
    fn seek(&mut self, target: &[u8]);
    /// Moves to the next entry. Requires `valid()`.
    fn next(&mut self);
    /// Moves to the previous entry. Requires `valid()`.
    fn prev(&mut self);
    /// The current encoded internal key. Requires `valid()`.
    fn key(&self) -> &[u8];
    /// The current value (empty for tombstones). Requires `valid()`.
    fn value(&self) -> &[u8];
    /// The first error met, if any.
    fn status(&self) -> Result<()>;

    /// Moves to the last entry whose key is `<= target`.
    fn seek_for_prev(&mut self, target: &[u8]) {
        self.seek(target);
        if !self.valid() {
            if self.status().is_ok() {
                self.seek_to_last();
            }
        } else if compare_internal(self.key(), target).is_gt() {
            self.prev();
        }
    }
}

impl<I: InternalIterator + ?Sized> InternalIterator for Box<I> {
    fn valid(&self) -> bool {
        (**self).valid()
    }
    fn seek_to_first(&mut self) {
        (**self).seek_to_first()
    }
    fn seek_to_last(&mut self) {
        (**self).seek_to_last()
    }
    fn seek(&mut self, target: &[u8]) {
        (**self).seek(target)
    }
    fn next(&mut self) {
        (**self).next()
    }
    fn prev(&mut self) {
        (**self).prev()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
    fn status(&self) -> Result<()> {
        (**self).status()
    }
    fn seek_for_prev(&mut self, target: &[u8]) {
        (**self).seek_for_prev(target)
    }
}

/// An [`InternalIterator`] over owned, sorted entries: for tests and small in-memory sources.
#[derive(Debug, Clone)]
pub struct VecIterator {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pos: Option<usize>,
}

impl VecIterator {
    /// Sorts `entries` by internal key and iterates them.
    pub fn new(mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        entries.sort_by(|a, b| compare_internal(&a.0, &b.0));
        VecIterator { entries, pos: None }
    }

    fn entry(&self) -> &(Vec<u8>, Vec<u8>) {
        match self.pos.and_then(|p| self.entries.get(p)) {
            Some(e) => e,
            None => panic!("VecIterator used while not valid"),
        }
    }
}

impl InternalIterator for VecIterator {
    fn valid(&self) -> bool {
        self.pos.is_some_and(|p| p < self.entries.len())
    }
    fn seek_to_first(&mut self) {
        self.pos = (!self.entries.is_empty()).then_some(0);
    }
    fn seek_to_last(&mut self) {
        self.pos = self.entries.len().checked_sub(1);
    }
    fn seek(&mut self, target: &[u8]) {
        let i = self.entries.partition_point(|e| compare_internal(&e.0, target).is_lt());
        self.pos = (i < self.entries.len()).then_some(i);
    }
    fn next(&mut self) {
        self.pos = self.pos.map(|p| p + 1).filter(|&p| p < self.entries.len());
    }
    fn prev(&mut self) {
        self.pos = self.pos.and_then(|p| p.checked_sub(1));
    }
    fn key(&self) -> &[u8] {
        &self.entry().0
    }
    fn value(&self) -> &[u8] {
        &self.entry().1
    }
    fn status(&self) -> Result<()> {
        Ok(())
    }
}
