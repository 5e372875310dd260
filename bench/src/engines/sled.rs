//! sled 0.34 (the current stable release; 1.0 is still alpha): `sled::Config` defaults.
//!
//! sled has no per-write fsync option: its log buffers are written out by a background thread every
//! `flush_every_ms` (500 ms by default) and `Db::flush` makes everything durable. So `sync` calls
//! `flush` after each write, and `buffered`/`none` keep sled's default periodic flushing — sled
//! cannot hand each write to the OS without an fsync, so its `buffered` is weaker than the others'.

use std::path::Path;

use super::{drive_scan, BatchOp, BenchResult, Durability, Engine, EngineConfig, ScanDirection};

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
}
