//! [`Snapshot`] (a consistent view at one sequence number) and [`Iter`] (the double-ended
//! iterator over a key range that `Db` and `Snapshot` hand out).

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;
use strata_core::key::SeqNo;
use strata_core::{Error, Result};

use crate::db_iter::{ForwardCursor, KeyRange, ReverseCursor};
use crate::inner::DbInner;
use crate::state::SuperVersion;
use strata_core::merge::MergingIterator;

pub(crate) fn owned_range<K: AsRef<[u8]>, R: RangeBounds<K>>(range: &R) -> KeyRange {
    let own = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    KeyRange { start: own(range.start_bound()), end: own(range.end_bound()) }
}

/// Keeps a snapshot's sequence number registered, so that compaction keeps every version
/// it can see; shared by the snapshot and the iterators made from it.
struct Registration {
    db: Arc<DbInner>,
    seq: SeqNo,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.db.snapshots.lock().release(self.seq);
    }
}

/// A consistent, read-only view of a database at one sequence number, from
/// [`crate::Db::snapshot`]. Flushes and compactions keep every version a live snapshot
/// can see.
///
/// ```
/// use strata::{Db, Options};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("a", "1")?;
/// let snap = db.snapshot();
/// db.put("b", "2")?;
/// db.delete("a")?;
/// db.flush()?; // the snapshot's view survives flushes
/// assert_eq!(snap.get("a")?.as_deref(), Some(&b"1"[..]));
/// assert_eq!(snap.iter().count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Snapshot {
    reg: Arc<Registration>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.reg.seq).finish()
    }
}

impl Snapshot {
    pub(crate) fn new(db: Arc<DbInner>) -> Self {
        let seq = {
            let mut snaps = db.snapshots.lock();
            // Read under the registry lock, so a compaction choosing what to keep sees
            // either this snapshot or a visible sequence no older than it.
            let seq = db.commit.visible();
            snaps.register(seq);
            seq
        };
        Snapshot { reg: Arc::new(Registration { db, seq }) }
    }

    /// A snapshot at `seq`, which must be visible (or about to be: the caller waits for it
    /// before reading). Registering a sequence above the compaction horizon is safe: what
    /// lies above the horizon is kept whole anyway.
    pub(crate) fn at(db: Arc<DbInner>, seq: SeqNo) -> Self {
        db.snapshots.lock().register(seq);
        Snapshot { reg: Arc::new(Registration { db, seq }) }
    }

    /// The entries in `range` as of the snapshot.
    pub(crate) fn range_of(&self, range: KeyRange) -> Iter {
        Iter::new(Arc::clone(&self.reg.db), Some(Arc::clone(&self.reg)), self.reg.seq, range)
    }

    /// The sequence number the snapshot reads at.
    pub fn sequence(&self) -> SeqNo {
        self.reg.seq
    }

    /// The value of `key` as of the snapshot; [`Error::Closed`] once the database is
    /// closed, even though the snapshot outlives the close.
    ///
    /// ```
    /// use strata::{Db, Error, Options};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// db.put("k", "v")?;
    /// let snap = db.snapshot();
    /// assert_eq!(snap.get("k")?.as_deref(), Some(&b"v"[..]));
    /// db.close()?;
    /// assert!(matches!(snap.get("k"), Err(Error::Closed)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.reg.db.check_open()?;
        let view = self.reg.db.current_view();
        self.reg.db.get_at(&view, key.as_ref(), self.reg.seq)
    }

    /// The entries in `range` as of the snapshot (double-ended).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        Iter::new(
            Arc::clone(&self.reg.db),
            Some(Arc::clone(&self.reg)),
            self.reg.seq,
            owned_range(&range),
        )
    }

    /// The entries whose keys start with `prefix`, as of the snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        Iter::new(
            Arc::clone(&self.reg.db),
            Some(Arc::clone(&self.reg)),
            self.reg.seq,
            KeyRange::prefix(prefix.as_ref()),
        )
    }

    /// Every entry as of the snapshot.
    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }
}

/// An iterator over `(key, value)` pairs of a key range, in key order, from one consistent
/// state of the database. Double-ended: `next_back` walks from the end, and the two ends
/// stop where they meet.
///
/// It pins the memtables and tables it reads, so files it needs are not deleted under it;
/// drop it when done. Errors (corruption met while reading) are yielded once, then the
/// iterator ends. Once the database is closed, the next step from either end yields
/// [`Error::Closed`] (once, then `None`) and releases the pins, however far the iterator
/// had got: an iterator never returns data after `close`.
///
/// ```
/// use strata::{Db, Error, Options};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// for k in ["a", "b", "c"] { db.put(k, k)?; }
/// let mut it = db.iter();
/// assert_eq!(&it.next().unwrap()?.0[..], b"a");
/// db.close()?;
/// assert!(matches!(it.next(), Some(Err(Error::Closed))));
/// assert!(it.next().is_none());
/// assert!(it.next_back().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Iter {
    db: Arc<DbInner>,
    /// `None` once the iterator saw the database closed (or was made after close): what it
    /// pinned is released then, not when the iterator is dropped.
    view: Option<Arc<SuperVersion>>,
    seq: SeqNo,
    range: KeyRange,
    front: Option<ForwardCursor<MergingIterator>>,
    back: Option<ReverseCursor<MergingIterator>>,
    front_last: Option<Bytes>,
    back_last: Option<Bytes>,
    done: bool,
    _registration: Option<Arc<Registration>>,
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("seq", &self.seq)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl Iter {
    fn new(
        db: Arc<DbInner>,
        registration: Option<Arc<Registration>>,
        seq: SeqNo,
        range: KeyRange,
    ) -> Self {
        let view = db.check_open().ok().map(|()| db.current_view());
        Iter {
            db,
            view,
            seq,
            range,
            front: None,
            back: None,
            front_last: None,
            back_last: None,
            done: false,
            _registration: registration,
        }
    }

    pub(crate) fn for_db(db: Arc<DbInner>, seq: SeqNo, range: KeyRange) -> Self {
        Iter::new(db, None, seq, range)
    }

    pub(crate) fn db_closed(&self) -> bool {
        self.db.check_open().is_err()
    }

    /// Ends the iterator with [`Error::Closed`], dropping the cursors and the view: it stops
    /// pinning old memtables and tables now (the `DbInner` it shares, with its current view
    /// and table cache, lives until the iterator drops).
    fn closed(&mut self) -> Option<Result<(Bytes, Bytes)>> {
        self.front = None;
        self.back = None;
        self.view = None;
        self.finish(Some(Err(Error::Closed)))
    }

    fn finish(&mut self, item: Option<Result<(Bytes, Bytes)>>) -> Option<Result<(Bytes, Bytes)>> {
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl Iterator for Iter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // One load per step: a close between two steps ends the iterator at the next.
        if self.db_closed() {
            return self.closed();
        }
        if self.front.is_none() {
            let Some(view) = &self.view else { return self.closed() };
            match self.db.merged_source(view) {
                Ok((it, tombstones)) => {
                    self.front =
                        Some(ForwardCursor::new(it, self.seq, self.range.clone(), tombstones))
                }
                Err(e) => return self.finish(Some(Err(e))),
            }
        }
        let item = self.front.as_mut()?.next_entry();
        if let Some(Ok((k, _))) = &item {
            if self.back_last.as_ref().is_some_and(|b| k >= b) {
                return self.finish(None);
            }
            self.front_last = Some(k.clone());
        }
        self.finish(item)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.db_closed() {
            return self.closed();
        }
        if self.back.is_none() {
            let Some(view) = &self.view else { return self.closed() };
            match self.db.merged_source(view) {
                Ok((it, tombstones)) => {
                    self.back =
                        Some(ReverseCursor::new(it, self.seq, self.range.clone(), tombstones))
                }
                Err(e) => return self.finish(Some(Err(e))),
            }
        }
        let item = self.back.as_mut()?.next_entry();
        if let Some(Ok((k, _))) = &item {
            if self.front_last.as_ref().is_some_and(|f| k <= f) {
                return self.finish(None);
            }
            self.back_last = Some(k.clone());
        }
        self.finish(item)
    }
}
