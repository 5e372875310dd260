//! [`Transaction`]: optimistic, serializable read-modify-write transactions, and the
//! conditional writes built on the same validation ([`strata_wal::WriteBatch::expect`],
//! `Db::compare_and_swap`).
//!
//! A transaction reads a snapshot taken when it began, plus its own writes, and buffers
//! its writes. Its commit is one batch, committed through the commit pipeline with a check
//! run under the commit lock: if any key it read (or wrote, unless it read nothing) or any
//! range it scanned was written by a commit sequenced after its snapshot, the commit fails
//! with [`Error::Conflict`] and nothing is applied. What "written after" means is kept by
//! the [`crate::conflict::ConflictWindow`]. Readers that use no transaction pay nothing;
//! writers pay one branch while no transaction is open.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;
use strata_core::key::SeqNo;
use strata_core::{Error, Result};
use strata_wal::WriteBatch;

use crate::commit::CommitMode;
use crate::conflict::ReadSet;
use crate::db_iter::KeyRange;
use crate::inner::DbInner;
use crate::options::WriteOptions;
use crate::own_writes::OwnWrites;
use crate::snapshot::{owned_range, Iter, Snapshot};
use crate::state::WriteState;

/// How often a conditional write re-reads its keys when a concurrent commit changed one of
/// them between its read and its commit, before giving up with [`Error::Conflict`].
const CONDITION_ATTEMPTS: usize = 64;

impl DbInner {
    /// Opens a conflict window at the last sequence number assigned, and waits until it is
    /// visible, so that a snapshot there sees every commit sequenced before it.
    pub(crate) fn begin_tracking(&self) -> SeqNo {
        let seq = {
            let mut w = self.commit.lock();
            let seq = w.last_assigned();
            w.conflicts.open(seq);
            seq
        };
        self.commit.wait_visible(seq);
        seq
    }

    pub(crate) fn end_tracking(&self, seq: SeqNo) {
        self.commit.lock().conflicts.close(seq);
    }

    /// Commits `batch` if nothing in `reads` (nor, with `validate_written`, any key of the
    /// batch) was written after `snapshot` (checked under the commit lock) and `extra`
    /// passes too; a batch without entries only checks. The
    /// conflict window opened at `snapshot` is closed on return whatever the outcome —
    /// under the same commit lock as the check when the check runs, so an uncontended
    /// commit takes the lock once and its own keys are not recorded for nobody.
    fn commit_closing(
        &self,
        batch: &mut WriteBatch,
        mode: CommitMode,
        snapshot: SeqNo,
        reads: &ReadSet,
        validate_written: bool,
        extra: Result<()>,
    ) -> Result<()> {
        let closed = Cell::new(false);
        let check = |w: &mut WriteState, batch: &WriteBatch| {
            let written = validate_written.then_some(batch).into_iter().flat_map(WriteBatch::iter);
            let verdict = w.conflicts.validate(snapshot, reads, written.map(|e| e.key)).and(extra);
            w.conflicts.close(snapshot);
            closed.set(true);
            verdict
        };
        let result = if batch.is_empty() {
            self.check_open().and_then(|()| check(&mut self.commit.lock(), batch))
        } else {
            self.write_checked(batch, mode, check)
        };
        if !closed.get() {
            self.end_tracking(snapshot); // refused before the check ran
        }
        result
    }

    /// A batch with expectations: read each expected key at a fresh tracked snapshot, then
    /// commit with those keys as the read set, so that no write can slip in between the
    /// check and the batch. A key changed meanwhile means reading again.
    pub(crate) fn write_conditional(&self, mut batch: WriteBatch, mode: CommitMode) -> Result<()> {
        self.check_writable()?;
        let reads = ReadSet {
            keys: batch.expectations().iter().map(|(k, _)| k.clone()).collect(),
            ranges: Vec::new(),
        };
        for _ in 0..CONDITION_ATTEMPTS {
            let seq = self.begin_tracking();
            let view = self.current_view();
            let mut verdict = Ok(());
            for (key, expect) in batch.expectations() {
                match self.get_at(&view, key, seq) {
                    Ok(current) if expect.holds(current.as_deref()) => {}
                    Ok(_) => {
                        verdict = Err(Error::ConditionFailed { key: key.clone() });
                        break;
                    }
                    Err(e) => {
                        self.end_tracking(seq);
                        return Err(e);
                    }
                }
            }
            drop(view);
            match self.commit_closing(&mut batch, mode, seq, &reads, false, verdict) {
                Err(Error::Conflict) => continue,
                other => return other,
            }
        }
        Err(Error::Conflict)
    }
}

/// An optimistic transaction on a [`crate::Db`], from [`crate::Db::transaction`].
///
/// Reads see the database as of the moment the transaction began, plus the transaction's
/// own writes; writes are buffered until [`Transaction::commit`], which applies them all
/// atomically (one log record) — or fails with [`Error::Conflict`] if another commit wrote
/// a key this transaction read, or into a range it scanned, after it began. Isolation is
/// serializable for what it read. A transaction that only writes (reads nothing) never
/// conflicts: the last committer wins, as with a plain batch. Dropping it (or
/// [`Transaction::rollback`]) writes nothing.
///
/// The retry loop of an event store's expected-version append:
///
/// ```
/// use strata::{Db, Error, Options};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// let append = |event: &str| -> strata::Result<u64> {
///     loop {
///         let mut tx = db.transaction();
///         let version = match tx.get("acct/7/version")? {
///             Some(v) => std::str::from_utf8(&v).unwrap().parse::<u64>().unwrap(),
///             None => 0,
///         };
///         let next = version + 1;
///         tx.put(format!("acct/7/event/{next:010}"), event);
///         tx.put("acct/7/version", next.to_string());
///         match tx.commit() {
///             Ok(()) => return Ok(next),
///             Err(Error::Conflict) => continue, // someone appended first: read again
///             Err(e) => return Err(e),
///         }
///     }
/// };
/// assert_eq!(append("opened")?, 1);
/// assert_eq!(append("deposited")?, 2);
/// assert_eq!(db.prefix("acct/7/event/").count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Transaction {
    db: Arc<DbInner>,
    snapshot: Snapshot,
    /// Buffered writes: the batch the commit logs.
    writes: OwnWrites,
    reads: ReadSet,
    /// Committed or rolled back: the conflict window is closed.
    finished: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot", &self.snapshot.sequence())
            .field("writes", &self.writes.len())
            .field("read_keys", &self.reads.keys.len())
            .field("read_ranges", &self.reads.ranges.len())
            .finish()
    }
}

impl Transaction {
    pub(crate) fn begin(db: Arc<DbInner>) -> Self {
        let seq = db.begin_tracking();
        let snapshot = Snapshot::at(Arc::clone(&db), seq);
        Transaction {
            db,
            snapshot,
            writes: OwnWrites::default(),
            reads: ReadSet::default(),
            finished: false,
        }
    }

    /// The sequence number the transaction reads at.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("k", "v")?;
    /// let tx = db.transaction();
    /// assert_eq!(tx.sequence(), db.metrics().last_sequence);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sequence(&self) -> SeqNo {
        self.snapshot.sequence()
    }

    /// The keys the transaction writes (for resharding's catch-up of a commit).
    pub(crate) fn written_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.writes.keys()
    }

    /// The value of `key`: the transaction's own write if it made one, else the value as of
    /// its snapshot (and then the key joins what the commit validates).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("k", "old")?;
    /// let mut tx = db.transaction();
    /// db.put("k", "newer")?; // after the snapshot: the transaction does not see it
    /// assert_eq!(tx.get("k")?.as_deref(), Some(&b"old"[..]));
    /// tx.put("k", "mine");
    /// assert_eq!(tx.get("k")?.as_deref(), Some(&b"mine"[..]));
    /// assert!(matches!(tx.commit(), Err(strata::Error::Conflict)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        if let Some(own) = self.writes.get(key) {
            return Ok(own);
        }
        self.reads.keys.push(key.to_vec());
        self.snapshot.get(key)
    }

    /// Sets `key` to `value` when the transaction commits.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// let mut tx = db.transaction();
    /// tx.put("k", "v");
    /// assert!(db.get("k")?.is_none()); // buffered until commit
    /// tx.commit()?;
    /// assert!(db.get("k")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.writes.put(key.as_ref(), value.as_ref());
    }

    /// Deletes `key` when the transaction commits.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("k", "v")?;
    /// let mut tx = db.transaction();
    /// tx.delete("k");
    /// assert!(tx.get("k")?.is_none()); // its own delete
    /// tx.commit()?;
    /// assert!(db.get("k")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.writes.delete(key.as_ref());
    }

    /// The entries in `range` as of the snapshot, merged with the transaction's own writes,
    /// in key order. The whole range joins what the commit validates (a write into it by
    /// another commit after the snapshot is a conflict: no phantoms), however far the
    /// iterator is read.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("acct/7/a", "1")?;
    /// db.put("acct/7/c", "3")?;
    /// let mut tx = db.transaction();
    /// tx.put("acct/7/b", "2");
    /// tx.delete("acct/7/c");
    /// let keys: Vec<_> = tx.range("acct/7/".."acct/70").map(|r| r.unwrap().0).collect();
    /// assert_eq!(keys, ["acct/7/a", "acct/7/b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&mut self, range: R) -> TransactionIter {
        self.scan(owned_range(&range))
    }

    /// The entries whose keys start with `prefix`, merged with the transaction's own
    /// writes; the prefix joins what the commit validates.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// db.put("user/1", "ann")?;
    /// let mut tx = db.transaction();
    /// tx.put("user/2", "bo");
    /// assert_eq!(tx.prefix("user/").count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefix(&mut self, prefix: impl AsRef<[u8]>) -> TransactionIter {
        self.scan(KeyRange::prefix(prefix.as_ref()))
    }

    pub(crate) fn scan(&mut self, range: KeyRange) -> TransactionIter {
        let own: Vec<(Bytes, Option<Bytes>)> =
            if range.is_empty() { Vec::new() } else { self.writes.in_range(&range) };
        let stored = self.snapshot.range_of(range.clone());
        self.reads.ranges.push(range);
        TransactionIter::new(stored, own)
    }

    /// Commits with the database's default durability: every write at once, or
    /// [`Error::Conflict`] (nothing applied; retry on a new transaction). A transaction
    /// that wrote nothing commits trivially: it read one consistent snapshot.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// let mut tx = db.transaction();
    /// tx.get("k")?;
    /// tx.put("k", "1");
    /// db.put("k", "someone else")?;
    /// assert!(matches!(tx.commit(), Err(strata::Error::Conflict))); // nothing applied
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"someone else"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self) -> Result<()> {
        self.commit_with(WriteOptions::default())
    }

    /// [`Transaction::commit`] as `options` say (see [`crate::Db::write_with`]): a
    /// [`crate::Durability`], or [`WriteOptions`] with `no_wait`.
    ///
    /// ```
    /// use strata::{Db, Durability, Options};
    /// # let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut tx = db.transaction();
    /// tx.put("k", "v");
    /// tx.commit_with(Durability::Sync)?; // on stable storage when this returns
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_with(mut self, options: impl Into<WriteOptions>) -> Result<()> {
        self.finished = true; // `try_commit` closes the conflict window on every path
        self.try_commit(options.into().mode(self.db.opts.durability))
    }

    fn try_commit(&mut self, mode: CommitMode) -> Result<()> {
        let seq = self.snapshot.sequence();
        if let Err(e) = self.db.check_open() {
            self.db.end_tracking(seq);
            return Err(e);
        }
        if self.writes.is_empty() {
            self.db.end_tracking(seq);
            return Ok(());
        }
        let batch = self.writes.batch_mut();
        if self.reads.is_empty() {
            // Blind writes: last committer wins, as with a plain batch.
            self.db.end_tracking(seq);
            return self.db.write(std::mem::take(batch), mode);
        }
        // The written keys are validated too: first committer wins on a key both wrote.
        self.db.commit_closing(batch, mode, seq, &self.reads, true, Ok(()))
    }

    /// Discards the transaction: nothing is written (the same as dropping it).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// let mut tx = db.transaction();
    /// tx.put("k", "v");
    /// tx.rollback();
    /// assert!(db.get("k")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rollback(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.db.end_tracking(self.snapshot.sequence());
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The iterator of [`Transaction::range`] and [`Transaction::prefix`]: the snapshot's
/// entries merged with the transaction's own writes (which win, and whose deletes hide), in
/// key order; double-ended like [`Iter`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let db = strata::Db::open(dir.path(), strata::Options::default())?;
/// db.put("a", "1")?;
/// let mut tx = db.transaction();
/// tx.put("b", "2");
/// let last = tx.range::<&str, _>(..).next_back().unwrap()?;
/// assert_eq!(&last.0[..], b"b");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TransactionIter {
    stored: Iter,
    /// A stored entry taken from the front (back) of `stored` and not yet yielded. Once
    /// `stored` is exhausted, one end's entry is the other end's last candidate too.
    front: Option<(Bytes, Bytes)>,
    back: Option<(Bytes, Bytes)>,
    own: VecDeque<(Bytes, Option<Bytes>)>,
    /// After an error the iterator ends, like [`Iter`].
    failed: bool,
}

impl std::fmt::Debug for TransactionIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionIter").finish_non_exhaustive()
    }
}

/// Which end a [`TransactionIter`] step takes from.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Front,
    Back,
}

impl TransactionIter {
    fn new(stored: Iter, own: Vec<(Bytes, Option<Bytes>)>) -> Self {
        TransactionIter { stored, front: None, back: None, own: own.into(), failed: false }
    }

    fn step(&mut self, end: End) -> Option<Result<(Bytes, Bytes)>> {
        if self.failed {
            return None;
        }
        loop {
            let (mine, other) = match end {
                End::Front => (&mut self.front, &mut self.back),
                End::Back => (&mut self.back, &mut self.front),
            };
            if mine.is_none() {
                let next = match end {
                    End::Front => self.stored.next(),
                    End::Back => self.stored.next_back(),
                };
                match next {
                    Some(Ok(kv)) => *mine = Some(kv),
                    Some(Err(e)) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                    None => *mine = other.take(),
                }
            }
            let own = match end {
                End::Front => self.own.front(),
                End::Back => self.own.back(),
            };
            let take_own = match (&*mine, own) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((stored, _)), Some((key, _))) => match end {
                    End::Front => key <= stored,
                    End::Back => key >= stored,
                },
            };
            if !take_own {
                return mine.take().map(Ok);
            }
            let (key, value) = match end {
                End::Front => self.own.pop_front(),
                End::Back => self.own.pop_back(),
            }?;
            if mine.as_ref().is_some_and(|(stored, _)| *stored == key) {
                *mine = None; // shadowed by the transaction's own write
            }
            if let Some(v) = value {
                return Some(Ok((key, v)));
            }
        }
    }
}

impl Iterator for TransactionIter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(End::Front)
    }
}

impl DoubleEndedIterator for TransactionIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(End::Back)
    }
}
