//! redb: `Database::create` defaults (a copy-on-write B-tree; it has no write-ahead log).
//!
//! Every write is one write transaction. `sync` commits with `Durability::Immediate` (fsync per
//! commit, redb's default); `buffered` and `none` commit with `Durability::None`, which redb makes
//! durable only at the next `Immediate` commit — redb has no "in the OS but not fsynced" mode.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{drive_scan, BatchOp, BenchResult, Durability, Engine, EngineConfig, ScanDirection};

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
        let mut txn = self.db.begin_write()?;
        txn.set_durability(match durability {
            Durability::Sync => redb::Durability::Immediate,
            Durability::Buffered | Durability::None => redb::Durability::None,
        })?;
        {
            let mut table = txn.open_table(TABLE)?;
            f(&mut table)?;
        }
        txn.commit()?;
        Ok(())
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
}
