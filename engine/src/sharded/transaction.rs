//! [`ShardedTransaction`]: a [`Transaction`] on the one shard its keys live on.
//!
//! Shards are independent databases with their own logs, so a commit is atomic only within
//! one shard. A sharded transaction begins a transaction on every shard (so its snapshot
//! is taken when it begins, as on a `Db`), binds to the shard of the first key or range it
//! touches, and refuses anything on another shard with [`Error::CrossShard`] at that call —
//! never a commit that would be silently non-atomic. Route an entity's keys to one shard
//! (a range partitioner over an entity prefix) to keep its transactions on one shard.

use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;
use strata_core::{Error, Result};

use crate::db_iter::KeyRange;
use crate::options::WriteOptions;
use crate::snapshot::owned_range;
use crate::transaction::{Transaction, TransactionIter};

use super::{Routing, ShardedDb};

/// An optimistic transaction on a [`ShardedDb`] whose keys all live on one shard, from
/// [`ShardedDb::transaction`]. Same API and guarantees as [`Transaction`], plus
/// [`Error::CrossShard`] for a key or range on a second shard.
///
/// ```
/// use strata::{Error, Partitioner, ShardedDb, ShardedOptions};
/// let dir = tempfile::tempdir()?;
/// let opts = ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"m".to_vec()]));
/// let db = ShardedDb::open(dir.path(), opts)?;
/// let mut tx = db.transaction();
/// tx.put("acct/1/version", "1")?; // binds the transaction to shard 0
/// assert!(matches!(tx.put("zed", "x"), Err(Error::CrossShard { bound: 0, other: 1 })));
/// tx.commit()?;
/// assert_eq!(db.get("acct/1/version")?.as_deref(), Some(&b"1"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ShardedTransaction {
    db: ShardedDb,
    /// The routing in force at begin: a commit after a cut-over changed it is a conflict
    /// (the keys may have moved to another shard meanwhile).
    routing: Arc<Routing>,
    /// One transaction per shard, begun together; all but the bound one are dropped at
    /// binding.
    shards: Vec<Option<Transaction>>,
    bound: Option<usize>,
}

impl ShardedTransaction {
    pub(crate) fn begin(db: &ShardedDb) -> Self {
        let routing = db.inner.routing.load_full();
        let shards = routing.shards.iter().map(|s| Some(s.db.transaction())).collect();
        ShardedTransaction { db: db.clone(), routing, shards, bound: None }
    }

    /// The shard the transaction is bound to, once it touched a key.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let db = strata::ShardedDb::open(dir.path(), strata::ShardedOptions::new(3))?;
    /// let mut tx = db.transaction();
    /// assert_eq!(tx.shard(), None);
    /// tx.get("k")?;
    /// assert_eq!(tx.shard(), Some(db.shard_of("k")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shard(&self) -> Option<usize> {
        self.bound
    }

    fn on(&mut self, shard: usize) -> Result<&mut Transaction> {
        match self.bound {
            Some(bound) if bound != shard => return Err(Error::CrossShard { bound, other: shard }),
            Some(_) => {}
            None => {
                self.bound = Some(shard);
                for (i, slot) in self.shards.iter_mut().enumerate() {
                    if i != shard {
                        slot.take(); // closes its conflict window
                    }
                }
            }
        }
        self.shards
            .get_mut(shard)
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::Internal(format!("transaction on missing shard {shard}")))
    }

    fn for_key(&mut self, key: &[u8]) -> Result<&mut Transaction> {
        let shard = self.routing.router.shard_for(key);
        self.on(shard)
    }

    fn for_range(&mut self, range: &KeyRange) -> Result<&mut Transaction> {
        let shards = self.routing.router.shards_for_range(self.shards.len(), range);
        let first = self.bound.or(shards.first().copied()).unwrap_or(0);
        if let Some(&other) = shards.iter().find(|&&s| s != first) {
            return Err(Error::CrossShard { bound: first, other });
        }
        self.on(first)
    }

    /// [`Transaction::get`] on the key's shard.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.for_key(key.as_ref())?.get(key)
    }

    /// [`Transaction::put`] on the key's shard.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.for_key(key.as_ref())?.put(key, value);
        Ok(())
    }

    /// [`Transaction::delete`] on the key's shard.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<()> {
        self.for_key(key.as_ref())?.delete(key);
        Ok(())
    }

    /// [`Transaction::range`], when every key the range can hold lives on one shard.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &mut self,
        range: R,
    ) -> Result<TransactionIter> {
        let range = owned_range(&range);
        Ok(self.for_range(&range)?.scan(range))
    }

    /// [`Transaction::prefix`], when every key with the prefix lives on one shard.
    pub fn prefix(&mut self, prefix: impl AsRef<[u8]>) -> Result<TransactionIter> {
        let range = KeyRange::prefix(prefix.as_ref());
        Ok(self.for_range(&range)?.scan(range))
    }

    /// [`Transaction::commit`] on the bound shard (a transaction that touched nothing
    /// commits trivially).
    pub fn commit(self) -> Result<()> {
        self.commit_with(WriteOptions::default())
    }

    /// [`Transaction::commit_with`] on the bound shard. If a resharding changed where keys
    /// live since the transaction began, the commit is [`Error::Conflict`]: retry it.
    pub fn commit_with(mut self, options: impl Into<WriteOptions>) -> Result<()> {
        let options = options.into();
        let Some(bound) = self.bound else { return Ok(()) };
        let Some(tx) = self.shards.get_mut(bound).and_then(Option::take) else { return Ok(()) };
        loop {
            self.db.check_writable()?;
            let current = self.db.routing();
            if current.layout.generation != self.routing.layout.generation {
                return Err(Error::Conflict);
            }
            // Same generation: the same shards at the same indices.
            let shard = current.shard(bound)?;
            let _gate = shard.gate.read();
            if !self.db.still(&current) {
                continue;
            }
            let written: Vec<Vec<u8>> = match &current.capture {
                Some(_) => tx.written_keys().map(<[u8]>::to_vec).collect(),
                None => Vec::new(),
            };
            let r = tx.commit_with(options);
            if let Some(capture) = &current.capture {
                written.iter().for_each(|k| capture.note(bound, k));
            }
            return r;
        }
    }

    /// Discards the transaction: nothing is written.
    pub fn rollback(self) {}
}
