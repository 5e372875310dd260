//! sled 0.34 (the current stable release; 1.0 is still alpha): `sled::Config` defaults.
//!
//! sled has no per-write fsync option: its log buffers are written out by a background thread every
//! `flush_every_ms` (500 ms by default) and `Db::flush` makes everything durable. So `sync` calls
//! `flush` after each write, and `buffered`/`none` keep sled's default periodic flushing — sled
//! cannot hand each write to the OS without an fsync, so its `buffered` is weaker than the others'.
//!
//! Conditional workloads: sled's own `compare_and_swap`, and its transactions
//! (`Tree::transaction`), whose closure sled re-runs after a conflict; the adapter makes a
//! re-run abort instead, so one call is one attempt and every conflict is counted.

use std::cell::{Cell, RefCell};
use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    drive_scan, Attempt, BatchOp, BenchResult, Durability, Engine, EngineConfig, ScanDirection,
    Transactional, Update,
};

/// Why a sled transaction aborted: sled was about to re-run it after a conflict.
#[derive(Debug)]
struct Overtaken;

/// A sled database.
pub struct SledEngine {
    db: sled::Db,
    default_durability: Durability,
}

impl SledEngine {
    /// Open (or create) a sled database in `dir`.
    pub fn open(dir: &Path, config: &EngineConfig) -> BenchResult<Self> {
        let db = sled::Config::new().path(dir).open()?;
        Ok(SledEngine { db, default_durability: config.durability })
    }

    fn after_write(&self, durability: Durability) -> BenchResult<()> {
        if durability == Durability::Sync {
            self.db.flush()?;
        }
        Ok(())
    }
}

impl Engine for SledEngine {
    fn settings(&self) -> String {
        format!(
            "sled 0.34.7: Config::default() (1 GiB cache, flush_every_ms 500, LowSpace mode); \
             durability {}: {}",
            self.default_durability,
            match self.default_durability {
                Durability::Sync => "Db::flush (fsync) after each write",
                Durability::Buffered | Durability::None => {
                    "sled's periodic flush every 500 ms; no per-write handoff to the OS exists"
                }
            }
        )
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> BenchResult<()> {
        self.db.insert(key, value)?;
        self.after_write(durability)
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<usize>> {
        Ok(self.db.get(key)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], durability: Durability) -> BenchResult<()> {
        self.db.remove(key)?;
        self.after_write(durability)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], durability: Durability) -> BenchResult<()> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.insert(k, v),
                BatchOp::Delete(k) => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        self.after_write(durability)
    }

    fn scan(
        &self,
        start: Option<&[u8]>,
        direction: ScanDirection,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> BenchResult<u64> {
        let iter = match (direction, start) {
            (ScanDirection::Forward, Some(s)) => self.db.range(s..),
            (ScanDirection::Reverse, Some(s)) => self.db.range(..=s),
            (_, None) => self.db.iter(),
        };
        drive_scan(iter, direction, |item: sled::Result<(sled::IVec, sled::IVec)>| {
            let (k, v) = item?;
            Ok(visit(&k, &v))
        })
    }

    fn settle(&self) -> BenchResult<()> {
        self.db.flush()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.db.flush()?;
        drop(self.db);
        Ok(())
    }

    fn transactional(&self) -> Result<&dyn Transactional, String> {
        Ok(self)
    }
}

impl Transactional for SledEngine {
    fn update_in_transaction(
        &self,
        key: &[u8],
        durability: Durability,
        update: Update<'_>,
    ) -> BenchResult<Attempt> {
        // sled's closure is `Fn` and may run more than once: the first run does the work,
        // a second one means the first conflicted.
        let (update, runs) = (RefCell::new(update), Cell::new(0u32));
        let outcome = self.db.transaction(|tx| {
            runs.set(runs.get() + 1);
            if runs.get() > 1 {
                return Err(ConflictableTransactionError::Abort(Overtaken));
            }
            let current = tx.get(key)?;
            let new = (update.borrow_mut())(current.as_deref());
            tx.insert(key, new)?;
            Ok(())
        });
        match outcome {
            Ok(()) => {
                self.after_write(durability)?;
                Ok(Attempt::Committed)
            }
            Err(TransactionError::Abort(Overtaken)) => Ok(Attempt::Conflict),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        durability: Durability,
    ) -> BenchResult<Attempt> {
        match self.db.compare_and_swap(key, expected, Some(new))? {
            Ok(()) => {
                self.after_write(durability)?;
                Ok(Attempt::Committed)
            }
            Err(_) => Ok(Attempt::ConditionFailed),
        }
    }

    fn read_value(&self, key: &[u8], value: &mut Vec<u8>) -> BenchResult<bool> {
        Ok(super::copy_found(self.db.get(key)?, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_and_failed_conditions_are_attempts_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path(), &crate::engines::test_config()).unwrap();
        let d = Durability::Buffered;
        let mut value = Vec::new();
        engine.put(b"k", b"1", d).unwrap();
        let stale = engine.compare_and_swap(b"k", Some(b"0"), b"2", d).unwrap();
        assert_eq!(stale, Attempt::ConditionFailed);
        assert!(engine.read_value(b"k", &mut value).unwrap());
        assert_eq!(value, b"1", "the failed swap wrote nothing");
        let swapped = engine.compare_and_swap(b"k", Some(b"1"), b"2", Durability::Sync).unwrap();
        assert_eq!(swapped, Attempt::Committed);
        assert_eq!(engine.compare_and_swap(b"n", None, b"x", d).unwrap(), Attempt::Committed);
        assert_eq!(engine.compare_and_swap(b"n", None, b"y", d).unwrap(), Attempt::ConditionFailed);
        let mut bump = |current: Option<&[u8]>| {
            assert_eq!(current, Some(&b"2"[..]));
            b"3".to_vec()
        };
        assert_eq!(engine.update_in_transaction(b"k", d, &mut bump).unwrap(), Attempt::Committed);
        assert!(engine.read_value(b"k", &mut value).unwrap());
        assert_eq!(value, b"3");
    }

    #[test]
    fn conditional_workloads_lose_no_update_on_sled() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path(), &crate::engines::test_config()).unwrap();
        crate::engines::assert_conditional_workloads_lose_nothing(&engine, 600, "sled");
    }
}
