//! The reference model: a `BTreeMap` of what a store must hold, what each live snapshot
//! saw when it was taken, and what an optimistic transaction must read and whether its commit
//! conflicts ([`TxModel`], against a [`CommitHistory`]).
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

    /// Applies an acknowledged range delete of `start..end`.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        self.current.retain(|k, _| k.as_slice() < start || k.as_slice() >= end);
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

/// Which keys the store's commits wrote, numbered in commit order: what decides whether a
/// transaction conflicts ([`TxModel::outcome`]). Record every batch the store sequences
/// (acknowledged or not), and nothing it refused.
///
/// ```
/// use strata_testkit::model::CommitHistory;
///
/// let mut history = CommitHistory::new();
/// history.record(&[(b"a".to_vec(), None)]);
/// assert_eq!(history.len(), 1);
/// assert!(history.written_after(b"a", 0) && !history.written_after(b"a", 1));
/// ```
#[derive(Debug, Default, Clone)]
pub struct CommitHistory {
    commits: u64,
    /// Per key, the number of the last commit that wrote it.
    last_write: BTreeMap<Vec<u8>, u64>,
    /// Range deletes (`start .. end`) with the number of their commit: they write every
    /// key of the range, present or not.
    ranges: Vec<(Vec<u8>, Vec<u8>, u64)>,
}

impl CommitHistory {
    /// No commit yet.
    pub fn new() -> CommitHistory {
        CommitHistory::default()
    }

    /// Records one commit (one batch) writing `mutations`.
    pub fn record(&mut self, mutations: &[Mutation]) {
        self.commits += 1;
        for (k, _) in mutations {
            self.last_write.insert(k.clone(), self.commits);
        }
    }

    /// Records one commit writing `mutations` and deleting every key in `start..end`.
    ///
    /// ```
    /// use std::ops::Bound::{Excluded, Included};
    /// use strata_testkit::model::{CommitHistory, ReadRange};
    ///
    /// let mut history = CommitHistory::new();
    /// history.record_range_delete(&[], b"b", b"d");
    /// assert!(history.written_after(b"c", 0) && !history.written_after(b"d", 0));
    /// let scan = ReadRange::Bounds(Included(b"c\xff".to_vec()), Excluded(b"z".to_vec()));
    /// assert!(history.range_written_after(&scan, 0));
    /// assert!(!history.range_written_after(&ReadRange::Prefix(b"d".to_vec()), 0));
    /// ```
    pub fn record_range_delete(&mut self, mutations: &[Mutation], start: &[u8], end: &[u8]) {
        self.record(mutations);
        if start < end {
            self.ranges.push((start.to_vec(), end.to_vec(), self.commits));
        }
    }

    /// How many commits were recorded.
    pub fn len(&self) -> u64 {
        self.commits
    }

    /// Whether no commit was recorded.
    pub fn is_empty(&self) -> bool {
        self.commits == 0
    }

    /// Whether a commit after the first `after` wrote `key`.
    pub fn written_after(&self, key: &[u8], after: u64) -> bool {
        self.last_write.get(key).is_some_and(|&n| n > after)
            || self
                .ranges
                .iter()
                .any(|(s, e, n)| *n > after && s.as_slice() <= key && key < e.as_slice())
    }

    /// Whether a commit after the first `after` wrote a key in `range` (a range delete
    /// writes every key of its range, so it counts if the two ranges share any key).
    pub fn range_written_after(&self, range: &ReadRange, after: u64) -> bool {
        self.last_write.iter().any(|(k, &n)| n > after && range.contains(k))
            || self.ranges.iter().any(|(s, e, n)| *n > after && range.meets(s, e))
    }
}

/// A range a transaction scanned: bounds, or every key with a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRange {
    /// The keys between two bounds (none if they are inverted).
    Bounds(Bound<Vec<u8>>, Bound<Vec<u8>>),
    /// The keys that start with these bytes.
    Prefix(Vec<u8>),
}

impl ReadRange {
    /// Whether some key lies both in the range and in `start..end`.
    fn meets(&self, start: &[u8], end: &[u8]) -> bool {
        // The smallest key of the range (`None`: it has none) and its end.
        let (lo, hi): (Vec<u8>, Bound<Vec<u8>>) = match self {
            ReadRange::Prefix(p) => {
                let mut next = p.clone();
                while next.last() == Some(&0xff) {
                    next.pop();
                }
                let hi = match next.last_mut() {
                    Some(b) => {
                        *b += 1;
                        Bound::Excluded(next)
                    }
                    None => Bound::Unbounded,
                };
                (p.clone(), hi)
            }
            ReadRange::Bounds(s, e) => {
                let lo = match s {
                    Bound::Included(s) => s.clone(),
                    Bound::Excluded(s) => [s.as_slice(), &[0]].concat(),
                    Bound::Unbounded => Vec::new(),
                };
                (lo, e.clone())
            }
        };
        // The smallest key of both is the larger of the two starts.
        let first = if lo.as_slice() > start { lo } else { start.to_vec() };
        let in_range = match &hi {
            Bound::Included(e) => first <= *e,
            Bound::Excluded(e) => first < *e,
            Bound::Unbounded => true,
        };
        in_range && first.as_slice() < end
    }

    /// Whether `key` lies in the range.
    ///
    /// ```
    /// use std::ops::Bound;
    /// use strata_testkit::model::ReadRange;
    ///
    /// assert!(ReadRange::Prefix(b"ab".to_vec()).contains(b"abc"));
    /// let inverted = ReadRange::Bounds(Bound::Included(b"b".to_vec()), Bound::Included(b"a".to_vec()));
    /// assert!(!inverted.contains(b"a") && !inverted.contains(b"b"));
    /// ```
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            ReadRange::Prefix(p) => key.starts_with(p),
            ReadRange::Bounds(start, end) => {
                let above_start = match start {
                    Bound::Included(s) => key >= s.as_slice(),
                    Bound::Excluded(s) => key > s.as_slice(),
                    Bound::Unbounded => true,
                };
                let below_end = match end {
                    Bound::Included(e) => key <= e.as_slice(),
                    Bound::Excluded(e) => key < e.as_slice(),
                    Bound::Unbounded => true,
                };
                above_start && below_end
            }
        }
    }
}

/// What a transaction's commit must return, by [`TxModel::outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// It wrote nothing: it commits (even on a store that refuses writes), writing nothing.
    ReadOnly,
    /// It commits its writes, as one batch.
    Commits,
    /// `Error::Conflict`: something it read or wrote changed after its snapshot.
    Conflict,
}

/// An optimistic transaction as the reference sees it: the contents at its snapshot, its own
/// buffered writes, what it read (point reads that its own writes did not answer) and the
/// ranges it scanned. Its commit conflicts iff it read or scanned anything and a key it read
/// or wrote, or a key in a range it scanned, was written by a commit after its snapshot;
/// blind transactions (no reads) never conflict, read-only ones commit trivially.
///
/// ```
/// use strata_testkit::model::{CommitHistory, State, TxModel, TxOutcome};
///
/// let mut history = CommitHistory::new();
/// let mut tx = TxModel::begin(&State::new(), &history);
/// assert_eq!(tx.get(b"n"), None);
/// tx.put(b"n", b"1");
/// assert_eq!(tx.get(b"n").as_deref(), Some(&b"1"[..]));
/// assert_eq!(tx.outcome(&history), TxOutcome::Commits);
/// history.record(&[(b"n".to_vec(), Some(b"7".to_vec()))]); // another commit wrote "n"
/// assert_eq!(tx.outcome(&history), TxOutcome::Conflict);
/// ```
#[derive(Debug, Clone)]
pub struct TxModel {
    snapshot: State,
    /// Commits recorded when it began: later ones are after its snapshot.
    began_after: u64,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    read_keys: Vec<Vec<u8>>,
    read_ranges: Vec<ReadRange>,
}

impl TxModel {
    /// A transaction beginning now, on a store holding `state` after `history`'s commits.
    pub fn begin(state: &State, history: &CommitHistory) -> TxModel {
        TxModel {
            snapshot: state.clone(),
            began_after: history.len(),
            writes: BTreeMap::new(),
            read_keys: Vec::new(),
            read_ranges: Vec::new(),
        }
    }

    /// What a point read returns: its own write, else the snapshot's value (and then the key
    /// joins the read set).
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(own) = self.writes.get(key) {
            return own.clone();
        }
        self.read_keys.push(key.to_vec());
        self.snapshot.get(key).cloned()
    }

    /// Buffers a put.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Buffers a delete.
    pub fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    /// What a scan of `range` returns, in key order: the snapshot's entries merged with its own
    /// writes. The range joins the read set.
    pub fn scan(&mut self, range: ReadRange) -> Vec<Entry> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.snapshot.iter().filter(|(k, _)| range.contains(k)).map(clone_entry).collect();
        for (k, v) in self.writes.iter().filter(|(k, _)| range.contains(k)) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        self.read_ranges.push(range);
        merged.into_iter().collect()
    }

    /// The batch its commit writes: its writes in key order (the last one per key).
    pub fn mutations(&self) -> Vec<Mutation> {
        self.writes.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// What its commit must return on a healthy store that has since made `history`'s
    /// commits.
    pub fn outcome(&self, history: &CommitHistory) -> TxOutcome {
        if self.writes.is_empty() {
            return TxOutcome::ReadOnly;
        }
        if self.read_keys.is_empty() && self.read_ranges.is_empty() {
            return TxOutcome::Commits;
        }
        let after = self.began_after;
        let key_changed = self
            .read_keys
            .iter()
            .chain(self.writes.keys())
            .any(|k| history.written_after(k, after));
        let range_changed = self.read_ranges.iter().any(|r| history.range_written_after(r, after));
        if key_changed || range_changed {
            TxOutcome::Conflict
        } else {
            TxOutcome::Commits
        }
    }
}

fn clone_entry((k, v): (&Vec<u8>, &Vec<u8>)) -> Entry {
    (k.clone(), v.clone())
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

    #[test]
    fn a_transaction_conflicts_only_on_what_it_read_or_wrote_after_it_began() {
        let k = |s: &str| s.as_bytes().to_vec();
        let mut history = CommitHistory::new();
        let mut state = State::new();
        apply(&mut state, &[put("a", "1"), put("m", "2")]);
        history.record(&[put("a", "1"), put("m", "2")]);
        let mut reader = TxModel::begin(&state, &history);
        let mut blind = TxModel::begin(&state, &history);
        let mut scanner = TxModel::begin(&state, &history);
        assert_eq!(reader.get(b"a"), Some(k("1")));
        reader.put(b"z", b"9");
        blind.put(b"a", b"blind");
        scanner.put(b"q", b"0");
        let inverted = ReadRange::Bounds(Bound::Included(k("m")), Bound::Excluded(k("b")));
        assert!(scanner.scan(inverted).is_empty());
        let seen = scanner.scan(ReadRange::Bounds(Bound::Excluded(k("a")), Bound::Unbounded));
        assert_eq!(seen, [(k("m"), k("2")), (k("q"), k("0"))]);
        // A write outside everything read leaves all three committing.
        history.record(&[put("0", "x")]);
        for tx in [&reader, &blind, &scanner] {
            assert_eq!(tx.outcome(&history), TxOutcome::Commits);
        }
        // A write to a key written (not read) by the reader: a conflict, since it read too.
        history.record(&[put("z", "other")]);
        assert_eq!(reader.outcome(&history), TxOutcome::Conflict);
        // A write into the scanned range; the blind one still never conflicts.
        history.record(&[(k("n"), None), put("a", "2")]);
        assert_eq!(scanner.outcome(&history), TxOutcome::Conflict);
        assert_eq!(blind.outcome(&history), TxOutcome::Commits);
        // Reads served by its own writes are not in the read set.
        let mut own = TxModel::begin(&state, &history);
        own.delete(b"a");
        assert_eq!(own.get(b"a"), None);
        assert_eq!(own.scan(ReadRange::Prefix(k("a"))), []);
        assert_eq!(own.mutations(), [(k("a"), None)]);
        history.record(&[put("a", "3")]);
        assert_eq!(own.outcome(&history), TxOutcome::Conflict, "it scanned and wrote \"a\"");
        let read_only = TxModel::begin(&state, &CommitHistory::new());
        assert_eq!(read_only.outcome(&history), TxOutcome::ReadOnly);
    }
}
