//! [`ShardedIter`]: one ordered, double-ended stream over the per-shard iterators of a scan.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use strata_core::{Error, Result};

use super::Routing;
use crate::snapshot::Iter;

type Entry = (Bytes, Bytes);

/// One shard's stream with the entries peeked from either end but not yet emitted.
struct Child {
    iter: Iter,
    /// Set when the shard may still hold keys a resharding moved elsewhere: the routing
    /// and this shard's index in it, to skip keys routed to another shard.
    only_own: Option<(Arc<Routing>, usize)>,
    front: Option<Entry>,
    back: Option<Entry>,
    /// The shard iterator's ends met: nothing remains but the peeked entries.
    exhausted: bool,
}

/// The entries of a key range across the shards of a [`crate::ShardedDb`] (or a
/// [`crate::ShardedSnapshot`]), in key order, double-ended.
///
/// Every key lives on exactly one shard, so the streams are disjoint: the front yields the
/// smallest entry any shard has left and the back the largest. Under
/// [`crate::Partitioner::Range`] the shards hold ascending, disjoint ranges, and the
/// iterator only opens a shard when the shards before it (or after it, from the back) are
/// exhausted. Each shard's part is consistent with itself; see [`crate::ShardedDb::snapshot`]
/// for what holds across shards. An error is yielded once, then the iterator ends. Once the
/// database is closed (or a shard it reads), the next step yields [`Error::Closed`], entries
/// already read ahead from the shards included: see [`crate::ShardedDb::close`].
///
/// ```
/// use strata::{ShardedDb, ShardedOptions};
/// let dir = tempfile::tempdir()?;
/// let db = ShardedDb::open(dir.path(), ShardedOptions::new(4))?;
/// for k in ["a", "b", "c", "d", "e"] { db.put(k, k)?; }
/// let mut it = db.range("b"..="d");
/// assert_eq!(&it.next().unwrap()?.0[..], b"b");
/// assert_eq!(&it.next_back().unwrap()?.0[..], b"d");
/// assert_eq!(&it.next().unwrap()?.0[..], b"c");
/// assert!(it.next().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShardedIter {
    children: Vec<Child>,
    ordered: bool,
    done: bool,
    /// The sharded database's flag, set by its close or its last handle's drop: an iterator
    /// that reads no shard (an empty range) must fail too.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for ShardedIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedIter")
            .field("shards", &self.children.len())
            .field("ordered", &self.ordered)
            .finish()
    }
}

#[derive(Clone, Copy)]
enum End {
    Front,
    Back,
}

impl ShardedIter {
    /// The iterators of the shards `(index, iterator)` of `routing`, in shard order.
    pub(crate) fn new(
        iters: Vec<(usize, Iter)>,
        routing: &Arc<Routing>,
        closed: Arc<AtomicBool>,
    ) -> Self {
        let children = iters
            .into_iter()
            .map(|(i, iter)| Child {
                iter,
                only_own: routing.is_dirty(i).then(|| (Arc::clone(routing), i)),
                front: None,
                back: None,
                exhausted: false,
            })
            .collect();
        ShardedIter { children, ordered: routing.router.is_ordered(), done: false, closed }
    }

    /// Makes sure child `i` shows its smallest (front) or largest (back) remaining entry,
    /// if any: the peeked entry of that end, or — when the shard iterator is exhausted —
    /// the one the other end peeked (it is then the only one left). Returns an error met.
    fn fill(&mut self, i: usize, end: End) -> Result<()> {
        let Some(c) = self.children.get_mut(i) else { return Ok(()) };
        let has = match end {
            End::Front => c.front.is_some(),
            End::Back => c.back.is_some(),
        };
        if has || c.exhausted {
            return Ok(());
        }
        let next = loop {
            let next = match end {
                End::Front => c.iter.next(),
                End::Back => c.iter.next_back(),
            };
            match (&next, &c.only_own) {
                (Some(Ok((k, _))), Some((routing, i))) if routing.router.shard_for(k) != *i => {}
                _ => break next,
            }
        };
        match next {
            Some(Ok(e)) => match end {
                End::Front => c.front = Some(e),
                End::Back => c.back = Some(e),
            },
            Some(Err(e)) => return Err(e),
            None => c.exhausted = true,
        }
        Ok(())
    }

    /// The key child `i` offers to `end`: its own peeked entry, else the other end's.
    fn candidate(&self, i: usize, end: End) -> Option<&Bytes> {
        let c = self.children.get(i)?;
        let (own, other) = match end {
            End::Front => (&c.front, &c.back),
            End::Back => (&c.back, &c.front),
        };
        match own {
            Some((k, _)) => Some(k),
            None if c.exhausted => other.as_ref().map(|(k, _)| k),
            None => None,
        }
    }

    fn take(&mut self, i: usize, end: End) -> Option<Entry> {
        let c = self.children.get_mut(i)?;
        let (own, other) = match end {
            End::Front => (&mut c.front, &mut c.back),
            End::Back => (&mut c.back, &mut c.front),
        };
        own.take().or_else(|| other.take())
    }

    /// Ends the iterator with [`Error::Closed`], releasing the shard iterators (and what
    /// they pin) now rather than at drop.
    fn fail_closed(&mut self) -> Option<Result<Entry>> {
        self.done = true;
        self.children.clear();
        Some(Err(Error::Closed))
    }

    fn step(&mut self, end: End) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        if self.closed.load(Ordering::Acquire) {
            return self.fail_closed();
        }
        let n = self.children.len();
        let order: Vec<usize> = match end {
            End::Front => (0..n).collect(),
            End::Back => (0..n).rev().collect(),
        };
        let mut best: Option<usize> = None;
        for i in order {
            if let Err(e) = self.fill(i, end) {
                self.done = true;
                return Some(Err(e));
            }
            let Some(k) = self.candidate(i, end) else { continue };
            let better = match best.and_then(|b| self.candidate(b, end)) {
                None => true,
                Some(bk) => match end {
                    End::Front => k < bk,
                    End::Back => k > bk,
                },
            };
            if better {
                best = Some(i);
            }
            // Ordered shards: the first non-empty shard from this end holds the answer, and
            // the shards beyond it are not opened yet.
            if self.ordered {
                break;
            }
        }
        // The entry may have been read ahead before its shard closed (alone, through
        // `ShardedDb::shard`): the shards that were stepped checked themselves, this one
        // is checked here, so a step costs one more load, not one per shard.
        if best.and_then(|b| self.children.get(b)).is_some_and(|c| c.iter.db_closed()) {
            return self.fail_closed();
        }
        match best.and_then(|b| self.take(b, end)) {
            Some(e) => Some(Ok(e)),
            None => {
                self.done = true;
                None
            }
        }
    }
}

impl Iterator for ShardedIter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(End::Front)
    }
}

impl DoubleEndedIterator for ShardedIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(End::Back)
    }
}
