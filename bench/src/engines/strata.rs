//! strata: a plain `Db`, or a `ShardedDb` of `--shards N` (hash partitioner).

use std::path::Path;
use std::time::Duration;

use strata::{Db, Options, ShardedDb, ShardedOptions, WriteBatch};

use super::{drive_scan, BatchOp, BenchResult, Durability, Engine, EngineConfig, ScanDirection};

fn strata_durability(d: Durability) -> strata::Durability {
    match d {
        Durability::Sync => strata::Durability::Sync,
        Durability::Buffered => strata::Durability::Buffered,
        Durability::None => strata::Durability::None,
    }
}

/// A plain or sharded strata database; both expose the same methods.
enum Handle {
    Plain(Db),
    Sharded(ShardedDb),
}

/// Call the same method on whichever handle is open.
macro_rules! with_db {
    ($handle:expr, $db:ident => $body:expr) => {
        match $handle {
            Handle::Plain($db) => $body,
            Handle::Sharded($db) => $body,
        }
    };
}

/// strata opened with `Options::default()`, the run's durability and `--memtable-mib`.
pub struct StrataEngine {
    handle: Handle,
    default_durability: Durability,
    shards: Option<usize>,
    memtable_mib: Option<usize>,
    compression_per_level: Option<Vec<::strata::Compression>>,
}

impl StrataEngine {
    /// Open (or create) strata in `dir`.
    pub fn open(dir: &Path, config: &EngineConfig) -> BenchResult<Self> {
        let mut opts = Options::default().durability(strata_durability(config.durability));
        if let Some(mib) = config.memtable_mib {
            opts = opts.memtable_size(mib << 20);
        }
        if let Some(levels) = &config.compression_per_level {
            opts = opts.compression_per_level(levels.clone());
        }
        let handle = match config.shards {
            None => Handle::Plain(Db::open(dir, opts)?),
            Some(n) => Handle::Sharded(ShardedDb::open(dir, ShardedOptions::new(n).engine(opts))?),
        };
        Ok(StrataEngine {
            handle,
            default_durability: config.durability,
            shards: config.shards,
            memtable_mib: config.memtable_mib,
            compression_per_level: config.compression_per_level.clone(),
        })
    }

    fn batch_of(ops: &[BatchOp<'_>]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.put(k, v),
                BatchOp::Delete(k) => batch.delete(k),
            }
        }
        batch
    }
}

impl Engine for StrataEngine {
    fn settings(&self) -> String {
        format!(
            "strata {}: Options::default(){}{}; durability {}",
            match self.shards {
                None => "Db".to_string(),
                Some(n) => format!("ShardedDb of {n} shards (hash partitioner)"),
            },
            match self.memtable_mib {
                None => String::new(),
                Some(mib) => format!(", memtable {mib} MiB"),
            },
            match &self.compression_per_level {
                None => String::new(),
                Some(levels) => format!(", compression per level {levels:?}"),
            },
            self.default_durability
        )
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> BenchResult<()> {
        if durability == self.default_durability {
            with_db!(&self.handle, db => db.put(key, value))?;
        } else {
            // A single-write batch carries a durability other than the database's default.
            let batch = Self::batch_of(&[BatchOp::Put(key, value)]);
            with_db!(&self.handle, db => db.write_with(batch, strata_durability(durability)))?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<usize>> {
        Ok(with_db!(&self.handle, db => db.get(key)?.map(|v| v.len())))
    }

    fn delete(&self, key: &[u8], durability: Durability) -> BenchResult<()> {
        if durability == self.default_durability {
            with_db!(&self.handle, db => db.delete(key))?;
        } else {
            let batch = Self::batch_of(&[BatchOp::Delete(key)]);
            with_db!(&self.handle, db => db.write_with(batch, strata_durability(durability)))?;
        }
        Ok(())
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], durability: Durability) -> BenchResult<()> {
        let batch = Self::batch_of(ops);
        with_db!(&self.handle, db => db.write_with(batch, strata_durability(durability)))?;
        Ok(())
    }

    fn scan(
        &self,
        start: Option<&[u8]>,
        direction: ScanDirection,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> BenchResult<u64> {
        let each = |item: strata::Result<(strata::Bytes, strata::Bytes)>| {
            let (k, v) = item?;
            Ok(visit(&k, &v))
        };
        with_db!(&self.handle, db => match (direction, start) {
            (ScanDirection::Forward, Some(s)) => drive_scan(db.range(s..), direction, each),
            (ScanDirection::Reverse, Some(s)) => drive_scan(db.range(..=s), direction, each),
            (_, None) => drive_scan(db.iter(), direction, each),
        })
    }

    fn settle(&self) -> BenchResult<()> {
        with_db!(&self.handle, db => {
            db.flush()?;
            db.wait_for_compaction()?;
        });
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        with_db!(self.handle, db => db.close())?;
        Ok(())
    }

    fn shard_of(&self, key: &[u8]) -> Option<(usize, usize)> {
        match &self.handle {
            Handle::Plain(_) => None,
            Handle::Sharded(db) => Some((db.shard_for(key), db.shard_count())),
        }
    }

    fn metrics(&self) -> Option<String> {
        Some(with_db!(&self.handle, db => db.metrics().to_string()))
    }

    fn bytes_written(&self) -> Option<u64> {
        match &self.handle {
            // The same sum as `Metrics::write_amplification`: log, flushes, compaction output.
            Handle::Plain(db) => {
                let m = db.metrics();
                let compaction: u64 = m.levels.iter().skip(1).map(|l| l.written_bytes).sum();
                Some(m.wal_bytes + m.flush_bytes + compaction)
            }
            // `ShardedMetrics` has no byte counters; the harness's /proc/self/io figure stands.
            Handle::Sharded(_) => None,
        }
    }

    fn stall_time(&self) -> Option<Duration> {
        Some(match &self.handle {
            Handle::Plain(db) => db.metrics().stall_time(),
            Handle::Sharded(db) => db.metrics().shards.iter().map(|s| s.stall_time).sum(),
        })
    }
}
