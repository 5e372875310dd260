//! fjall: `Database::builder(dir)` defaults and one keyspace with `KeyspaceCreateOptions::default()`
//! (LZ4 compression, bloom filters, leveled compaction: fjall's own defaults).
//!
//! The database is opened as fjall's `OptimisticTxDatabase` (the same builder and defaults,
//! plus its optimistic-transaction oracle), so that the conditional workloads run on the
//! data the others wrote. The plain workloads go to the `Database` and `Keyspace` it wraps,
//! as they would on a plain `Database`: routing them through `OptimisticTxKeyspace::insert`
//! would make every plain write a transaction, measuring the oracle instead of the write.
//! A write that bypasses the transactions is invisible to their conflict checks, which is
//! harmless here: no workload mixes plain writes with transactions.

use std::path::Path;
use std::time::{Duration, Instant};

use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticTxKeyspace,
    PersistMode, Readable,
};

use super::{
    drive_scan, Attempt, BatchOp, BenchResult, Durability, Engine, EngineConfig, ScanDirection,
    Transactional, Update,
};

/// How long `settle` waits for background flushes and compactions before giving up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A fjall database with one keyspace.
pub struct FjallEngine {
    /// The transactional handle (conditional workloads).
    tx_db: OptimisticTxDatabase,
    tx_keyspace: OptimisticTxKeyspace,
    /// The plain handles it wraps (every other workload).
    db: Database,
    keyspace: Keyspace,
    default_durability: Durability,
}

impl FjallEngine {
    /// Open (or create) a fjall database in `dir`.
    pub fn open(dir: &Path, config: &EngineConfig) -> BenchResult<Self> {
        // fjall's default hands each write's journal entry to the OS (PersistMode::Buffer); in
        // `none` mode the journal stays in fjall's user-space buffer until something persists it.
        let manual = config.durability == Durability::None;
        let tx_db = OptimisticTxDatabase::builder(dir).manual_journal_persist(manual).open()?;
        let tx_keyspace = tx_db.keyspace("bench", KeyspaceCreateOptions::default)?;
        // fjall's escape hatch from the transactional context (`inner`, hidden from its docs
        // but public): the very `Database` and `Keyspace` a plain open would give.
        let db = tx_db.inner().clone();
        let keyspace = tx_keyspace.inner().clone();
        Ok(FjallEngine { tx_db, tx_keyspace, db, keyspace, default_durability: config.durability })
    }

    /// The journal persistence a commit asks for, as `write_batch` and transactions take it.
    fn persist_mode(durability: Durability) -> Option<PersistMode> {
        match durability {
            Durability::Sync => Some(PersistMode::SyncData),
            Durability::Buffered => Some(PersistMode::Buffer),
            Durability::None => None,
        }
    }

    fn write_tx(&self, durability: Durability) -> BenchResult<fjall::OptimisticWriteTx> {
        Ok(self.tx_db.write_tx()?.durability(Self::persist_mode(durability)))
    }

    /// Bring the journal up to `durability` after a write fjall has already applied.
    fn persist(&self, durability: Durability) -> BenchResult<()> {
        match durability {
            // fdatasync, as RocksDB's and strata's sync writes do.
            Durability::Sync => self.db.persist(PersistMode::SyncData)?,
            // Without manual persist, every write already reached the OS.
            Durability::Buffered if self.default_durability == Durability::None => {
                self.db.persist(PersistMode::Buffer)?
            }
            Durability::Buffered | Durability::None => {}
        }
        Ok(())
    }
}

impl Engine for FjallEngine {
    fn settings(&self) -> String {
        format!(
            "fjall 3: Database::builder defaults (cache, worker threads, journal limits) + one keyspace \
             with KeyspaceCreateOptions::default() (LZ4, bloom filters, leveled compaction), opened \
             as an OptimisticTxDatabase (plain operations bypass its transactions; conditional ones \
             are its write transactions); journal on; durability {}: {}",
            self.default_durability,
            match self.default_durability {
                Durability::Sync => "each write then Database::persist(SyncData)",
                Durability::Buffered => "journal flushed to the OS per write (fjall's default)",
                Durability::None => "manual_journal_persist(true): journal buffered in user space",
            }
        )
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> BenchResult<()> {
        self.keyspace.insert(key, value)?;
        self.persist(durability)
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<usize>> {
        Ok(self.keyspace.get(key)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], durability: Durability) -> BenchResult<()> {
        self.keyspace.remove(key)?;
        self.persist(durability)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], durability: Durability) -> BenchResult<()> {
        let mut batch = self.db.batch().durability(Self::persist_mode(durability));
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.insert(&self.keyspace, k, v),
                BatchOp::Delete(k) => batch.remove(&self.keyspace, k),
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn scan(
        &self,
        start: Option<&[u8]>,
        direction: ScanDirection,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> BenchResult<u64> {
        let iter = match (direction, start) {
            (ScanDirection::Forward, Some(s)) => self.keyspace.range(s..),
            (ScanDirection::Reverse, Some(s)) => self.keyspace.range(..=s),
            (_, None) => self.keyspace.iter(),
        };
        drive_scan(iter, direction, |guard: fjall::Guard| {
            let (k, v) = guard.into_inner()?;
            Ok(visit(&k, &v))
        })
    }

    fn settle(&self) -> BenchResult<()> {
        self.db.persist(PersistMode::SyncAll)?;
        // Flush the memtable (as RocksDB's `flush` does) so write amplification counts it.
        self.keyspace.rotate_memtable_and_wait()?;
        // fjall has no public "wait for compaction": poll its counters until they stay idle.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut idle_polls = 0;
        while idle_polls < 10 && Instant::now() < deadline {
            if self.db.outstanding_flushes() == 0 && self.db.active_compactions() == 0 {
                idle_polls += 1;
            } else {
                idle_polls = 0;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.db.persist(PersistMode::SyncAll)?;
        drop(self.keyspace);
        drop(self.tx_keyspace);
        drop(self.db);
        drop(self.tx_db);
        Ok(())
    }

    fn transactional(&self) -> Result<&dyn Transactional, String> {
        Ok(self)
    }
}

/// fjall's optimistic write transactions: a commit that another commit overtook returns
/// `Ok(Err(Conflict))`. fjall has no compare-and-swap outside a transaction, so one is a
/// write transaction that reads, compares and writes (its own `fetch_update` retries
/// conflicts inside, hiding them, so it is not used).
impl Transactional for FjallEngine {
    fn update_in_transaction(
        &self,
        key: &[u8],
        durability: Durability,
        update: Update<'_>,
    ) -> BenchResult<Attempt> {
        let mut tx = self.write_tx(durability)?;
        let new = update(tx.get(&self.tx_keyspace, key)?.as_deref());
        tx.insert(&self.tx_keyspace, key, new);
        Ok(match tx.commit()? {
            Ok(()) => Attempt::Committed,
            Err(fjall::Conflict) => Attempt::Conflict,
        })
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        durability: Durability,
    ) -> BenchResult<Attempt> {
        let mut tx = self.write_tx(durability)?;
        if tx.get(&self.tx_keyspace, key)?.as_deref() != expected {
            tx.rollback();
            return Ok(Attempt::ConditionFailed);
        }
        tx.insert(&self.tx_keyspace, key, new);
        Ok(match tx.commit()? {
            Ok(()) => Attempt::Committed,
            Err(fjall::Conflict) => Attempt::Conflict,
        })
    }

    fn read_value(&self, key: &[u8], value: &mut Vec<u8>) -> BenchResult<bool> {
        Ok(super::copy_found(self.keyspace.get(key)?, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_and_failed_conditions_are_attempts_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), &crate::engines::test_config()).unwrap();
        let d = Durability::Buffered;
        let mut value = Vec::new();
        engine.put(b"k", b"1", d).unwrap();
        // Another transaction commits to the key between this one's read and its commit.
        let mut overtaken = |current: Option<&[u8]>| {
            assert_eq!(current, Some(&b"1"[..]));
            let mut other = |_: Option<&[u8]>| b"other".to_vec();
            assert_eq!(
                engine.update_in_transaction(b"k", d, &mut other).unwrap(),
                Attempt::Committed
            );
            b"2".to_vec()
        };
        assert_eq!(
            engine.update_in_transaction(b"k", d, &mut overtaken).unwrap(),
            Attempt::Conflict
        );
        assert!(engine.read_value(b"k", &mut value).unwrap());
        assert_eq!(value, b"other", "the refused transaction wrote nothing");

        assert_eq!(
            engine.compare_and_swap(b"k", Some(b"1"), b"3", d).unwrap(),
            Attempt::ConditionFailed
        );
        assert_eq!(
            engine.compare_and_swap(b"k", Some(b"other"), b"3", Durability::Sync).unwrap(),
            Attempt::Committed
        );
        assert_eq!(engine.compare_and_swap(b"new", None, b"x", d).unwrap(), Attempt::Committed);
        assert_eq!(
            engine.compare_and_swap(b"new", None, b"y", d).unwrap(),
            Attempt::ConditionFailed
        );
        assert_eq!(engine.get(b"k").unwrap(), Some(1), "plain reads see transactional writes");
        Box::new(engine).close().unwrap();
    }

    #[test]
    fn conditional_workloads_lose_no_update_on_fjall() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path(), &crate::engines::test_config()).unwrap();
        crate::engines::assert_conditional_workloads_lose_nothing(&engine, 600, "fjall");
        Box::new(engine).close().unwrap();
    }
}
