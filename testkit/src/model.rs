//! The reference model: a `BTreeMap` of what a store must hold, and what each live snapshot
//! saw when it was taken.
//!
//! The model test ([`crate::model_test`]) and the `ops_crash` fuzz target
//! ([`crate::fuzz::ops_crash`]) apply every acknowledged write to a [`Model`] and compare the
//! store's reads with it; the crash checks ([`crate::crash`]) build [`State`]s with [`apply`].

use std::collections::BTreeMap;
use std::ops::Bound;

use strata::WriteBatch;

/// The contents of a store: key to value.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// One entry of a write: `(key, Some(value))` is a put, `(key, None)` a delete.
pub type Mutation = (Vec<u8>, Option<Vec<u8>>);

/// One key-value pair as a scan returns it.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Applies `mutations` to `state` in order, as one batch does.
///
/// ```
/// use strata_testkit::model::{apply, State};
///
/// let mut state = State::new();
/// apply(&mut state, &[(b"a".to_vec(), Some(b"1".to_vec())), (b"a".to_vec(), None)]);
/// assert!(state.is_empty());
/// ```
pub fn apply(state: &mut State, mutations: &[Mutation]) {
    for (k, v) in mutations {
        match v {
            Some(v) => state.insert(k.clone(), v.clone()),
            None => state.remove(k),
        };
    }
}

/// The write batch holding `mutations`, in order.
///
/// ```
/// let batch = strata_testkit::model::batch_of(&[(b"a".to_vec(), Some(b"1".to_vec()))]);
/// assert_eq!(batch.len(), 1);
/// ```
pub fn batch_of(mutations: &[Mutation]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (k, v) in mutations {
        match v {
            Some(v) => batch.put(k, v),
            None => batch.delete(k),
        }
    }
    batch
}

/// Whether `(start, end)` holds no key at all. `BTreeMap::range` panics on such inverted
/// ranges, where a store's scan yields nothing.
pub fn is_empty_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
    }
}

/// The entries of `state` in `(start, end)`, in key order (none for an inverted range).
pub fn range_of(state: &State, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Entry> {
    if is_empty_range(start, end) {
        return Vec::new();
    }
    state.range::<[u8], _>((start, end)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// What a store must show: the current contents, and for each live snapshot its handle `H`
/// (the store's snapshot, or `()` where there is none) with the contents it saw.
///
/// ```
/// use std::ops::Bound;
/// use strata_testkit::model::Model;
///
/// let mut model = Model::new();
/// model.apply(&[(b"a".to_vec(), Some(b"1".to_vec()))]);
/// model.take_snapshot("the store's snapshot handle");
/// model.apply(&[(b"a".to_vec(), None), (b"b".to_vec(), Some(b"2".to_vec()))]);
/// assert_eq!(model.range(Bound::Unbounded, Bound::Unbounded), [(b"b".to_vec(), b"2".to_vec())]);
/// let (handle, seen) = &model.snapshots()[0];
/// assert_eq!((*handle, seen.get(&b"a"[..]).cloned()), ("the store's snapshot handle", Some(b"1".to_vec())));
/// ```
#[derive(Debug)]
pub struct Model<H> {
    current: State,
    snapshots: Vec<(H, State)>,
}

impl<H> Default for Model<H> {
    fn default() -> Self {
        Model::new()
    }
}

impl<H> Model<H> {
    /// An empty store without snapshots.
    pub fn new() -> Model<H> {
        Model { current: State::new(), snapshots: Vec::new() }
    }

    /// A store holding `state`, without snapshots (what a reopened store recovered).
    pub fn with_state(state: State) -> Model<H> {
        Model { current: state, snapshots: Vec::new() }
    }

    /// Applies an acknowledged write.
    pub fn apply(&mut self, mutations: &[Mutation]) {
        apply(&mut self.current, mutations);
    }

    /// The current contents.
    pub fn state(&self) -> &State {
        &self.current
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.current.get(key).map(Vec::as_slice)
    }

    /// The current entries in `(start, end)`, in key order.
    pub fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Entry> {
        range_of(&self.current, start, end)
    }

    /// The current entries whose keys start with `prefix`, in key order.
    pub fn prefix(&self, prefix: &[u8]) -> Vec<Entry> {
        self.current
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every current entry, in key order.
    pub fn entries(&self) -> Vec<Entry> {
        self.current.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Records a snapshot taken now: `handle` must show the current contents from now on.
    pub fn take_snapshot(&mut self, handle: H) {
        self.snapshots.push((handle, self.current.clone()));
    }

    /// The live snapshots, oldest first, each with the contents it must show.
    pub fn snapshots(&self) -> &[(H, State)] {
        &self.snapshots
    }

    /// Drops the snapshot at `index` (oldest first), if there is one.
    pub fn drop_snapshot(&mut self, index: usize) -> Option<H> {
        (index < self.snapshots.len()).then(|| self.snapshots.remove(index).0)
    }

    /// Drops every snapshot (before the store closes).
    pub fn drop_snapshots(&mut self) {
        self.snapshots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Mutation {
        (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn inverted_and_empty_ranges_hold_nothing() {
        let mut state = State::new();
        apply(&mut state, &[put("a", "1"), put("b", "2"), put("c", "3")]);
        let (a, b) = (&b"a"[..], &b"b"[..]);
        assert!(range_of(&state, Bound::Included(b), Bound::Included(a)).is_empty());
        assert!(range_of(&state, Bound::Included(b), Bound::Excluded(b)).is_empty());
        assert!(range_of(&state, Bound::Excluded(b), Bound::Included(b)).is_empty());
        assert_eq!(range_of(&state, Bound::Included(b), Bound::Included(b)).len(), 1);
        assert_eq!(range_of(&state, Bound::Excluded(a), Bound::Unbounded).len(), 2);
    }

    #[test]
    fn prefix_stops_at_the_first_key_outside() {
        let mut model: Model<()> = Model::new();
        model.apply(&[put("a", "1"), put("ab", "2"), put("abc", "3"), put("b", "4")]);
        let keys: Vec<_> = model.prefix(b"ab").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [b"ab".to_vec(), b"abc".to_vec()]);
        assert_eq!(model.prefix(b"").len(), 4);
    }

    #[test]
    fn snapshots_keep_what_they_saw() {
        let mut model = Model::new();
        model.take_snapshot(0);
        model.apply(&[put("a", "1")]);
        model.take_snapshot(1);
        model.apply(&[(b"a".to_vec(), None)]);
        assert!(model.snapshots()[0].1.is_empty());
        assert_eq!(model.snapshots()[1].1.get(&b"a"[..]), Some(&b"1".to_vec()));
        assert_eq!(model.drop_snapshot(0), Some(0));
        assert_eq!(model.drop_snapshot(5), None);
        model.drop_snapshots();
        assert!(model.snapshots().is_empty() && model.state().is_empty());
    }
}
