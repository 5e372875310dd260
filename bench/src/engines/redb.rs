//! redb: `Database::create` defaults (a copy-on-write B-tree; it has no write-ahead log).
//!
//! Every write is one write transaction. `sync` commits with `Durability::Immediate` (fsync per
//! commit, redb's default); `buffered` and `none` commit with `Durability::None`, which redb makes
//! durable only at the next `Immediate` commit — redb has no "in the OS but not fsynced" mode.
//!
//! redb's write transactions are serializable by exclusion (one at a time): the conditional
//! workloads' transactions and compare-and-swaps are write transactions that read, compare and
//! write, and never conflict — a concurrent writer waits in `begin_write` instead.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    drive_scan, Attempt, BatchOp, BenchResult, Durability, Engine, EngineConfig, ScanDirection,
    Transactional, Update,
};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

/// A redb database file `dir/bench.redb`.
pub struct RedbEngine {
    db: Database,
    default_durability: Durability,
}

impl RedbEngine {
    /// Open (or create) a redb database in `dir`.
    pub fn open(dir: &Path, config: &EngineConfig) -> BenchResult<Self> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("bench.redb"))?;
        // Create the table so readers of an empty database find it.
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(RedbEngine { db, default_durability: config.durability })
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut redb::Table<'_, &[u8], &[u8]>) -> Result<(), redb::StorageError>,
    ) -> BenchResult<()> {
        self.write_if(durability, |table| f(table).map(|()| true)).map(drop)
    }

    /// One write transaction: `f` writes to the table and says whether to commit (`false`
    /// aborts, writing nothing). Returns what `f` said.
    fn write_if(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut redb::Table<'_, &[u8], &[u8]>) -> Result<bool, redb::StorageError>,
    ) -> BenchResult<bool> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(match durability {
            Durability::Sync => redb::Durability::Immediate,
            Durability::Buffered | Durability::None => redb::Durability::None,
        })?;
        let commit = {
            let mut table = txn.open_table(TABLE)?;
            f(&mut table)?
        };
        if commit {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(commit)
    }
}

impl Engine for RedbEngine {
    fn settings(&self) -> String {
        format!(
            "redb 4: Database::create defaults (default cache, copy-on-write B-tree, no WAL); one \
             write transaction per write; durability {}: {}",
            self.default_durability,
            match self.default_durability {
                Durability::Sync => "commit with Durability::Immediate",
                Durability::Buffered | Durability::None => "commit with Durability::None",
            }
        )
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> BenchResult<()> {
        self.write(durability, |t| t.insert(key, value).map(drop))
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<usize>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().len()))
    }

    fn delete(&self, key: &[u8], durability: Durability) -> BenchResult<()> {
        self.write(durability, |t| t.remove(key).map(drop))
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], durability: Durability) -> BenchResult<()> {
        self.write(durability, |t| {
            for op in ops {
                match *op {
                    BatchOp::Put(k, v) => {
                        t.insert(k, v)?;
                    }
                    BatchOp::Delete(k) => {
                        t.remove(k)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn scan(
        &self,
        start: Option<&[u8]>,
        direction: ScanDirection,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> BenchResult<u64> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let range = match (direction, start) {
            (ScanDirection::Forward, Some(s)) => table.range::<&[u8]>(s..)?,
            (ScanDirection::Reverse, Some(s)) => table.range::<&[u8]>(..=s)?,
            (_, None) => table.range::<&[u8]>(..)?,
        };
        type Item<'a> = Result<
            (redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, &'static [u8]>),
            redb::StorageError,
        >;
        drive_scan(range, direction, |item: Item<'_>| {
            let (k, v) = item?;
            Ok(visit(k.value(), v.value()))
        })
    }

    fn settle(&self) -> BenchResult<()> {
        // An empty Immediate commit makes every earlier `Durability::None` commit durable.
        let txn = self.db.begin_write()?;
        txn.commit()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        drop(self.db);
        Ok(())
    }

    fn transactional(&self) -> Result<&dyn Transactional, String> {
        Ok(self)
    }
}

impl Transactional for RedbEngine {
    fn update_in_transaction(
        &self,
        key: &[u8],
        durability: Durability,
        update: Update<'_>,
    ) -> BenchResult<Attempt> {
        self.write_if(durability, |t| {
            let new = update(t.get(key)?.as_ref().map(|v| v.value()));
            t.insert(key, new.as_slice())?;
            Ok(true)
        })?;
        Ok(Attempt::Committed)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        durability: Durability,
    ) -> BenchResult<Attempt> {
        let swapped = self.write_if(durability, |t| {
            if t.get(key)?.as_ref().map(|v| v.value()) != expected {
                return Ok(false);
            }
            t.insert(key, new)?;
            Ok(true)
        })?;
        Ok(if swapped { Attempt::Committed } else { Attempt::ConditionFailed })
    }

    fn read_value(&self, key: &[u8], value: &mut Vec<u8>) -> BenchResult<bool> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let found = table.get(key)?;
        Ok(super::copy_found(found.as_ref().map(|v| v.value()), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_holds_only_on_the_expected_value() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RedbEngine::open(dir.path(), &crate::engines::test_config()).unwrap();
        let d = Durability::Buffered;
        let mut value = Vec::new();
        let mut set = |current: Option<&[u8]>| {
            assert_eq!(current, None);
            b"1".to_vec()
        };
        assert_eq!(engine.update_in_transaction(b"k", d, &mut set).unwrap(), Attempt::Committed);
        let stale = engine.compare_and_swap(b"k", Some(b"0"), b"2", d).unwrap();
        assert_eq!(stale, Attempt::ConditionFailed);
        assert!(engine.read_value(b"k", &mut value).unwrap());
        assert_eq!(value, b"1", "the failed swap wrote nothing");
        let swapped = engine.compare_and_swap(b"k", Some(b"1"), b"2", Durability::Sync).unwrap();
        assert_eq!(swapped, Attempt::Committed);
        assert_eq!(engine.compare_and_swap(b"n", None, b"x", d).unwrap(), Attempt::Committed);
        assert_eq!(engine.compare_and_swap(b"n", None, b"y", d).unwrap(), Attempt::ConditionFailed);
        assert!(engine.read_value(b"k", &mut value).unwrap());
        assert_eq!(value, b"2");
        assert!(!engine.read_value(b"missing", &mut value).unwrap());
    }

    #[test]
    fn conditional_workloads_lose_no_update_on_redb() {
        use crate::workload::Benchmark;
        let dir = tempfile::tempdir().unwrap();
        let engine = RedbEngine::open(dir.path(), &crate::engines::test_config()).unwrap();
        for (bench, counts) in
            crate::engines::assert_conditional_workloads_lose_nothing(&engine, 300, "redb")
        {
            if bench != Benchmark::CasRandom {
                assert_eq!(counts.conflicts, 0, "{bench}: redb's writers exclude each other");
            }
        }
    }
}
