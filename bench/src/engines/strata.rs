//! strata: a plain `Db`, or a `ShardedDb` of `--shards N` (hash partitioner), driven through
//! strata's own object-safe [`KvStore`]: the harness needs no store abstraction of its own.
//! Compare-and-swap goes through it too (a `WriteBatch` with an expectation, which is what
//! `compare_and_swap` commits, with the run's durability); transactions are not in
//! `KvStore` (`Db::transaction` and `ShardedDb::transaction` return different types), so the
//! adapter reaches them through its own [`Transact`]. The `bulkload` workload builds tables
//! with `TableWriter` in a staging directory beside the database and ingests them
//! (`Db::ingest`, `ShardedDb::ingest`, through [`Ingest`]).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strata::{
    Db, Error, Expect, IngestFile, KvStore, Options, ShardedDb, ShardedOptions, TableWriter,
    WriteBatch, WriteOptions,
};

use super::{
    drive_scan, Attempt, BatchOp, BenchResult, BulkLoad, BulkWriter, Durability, Engine,
    EngineConfig, ScanDirection, Transactional, Update,
};

/// A bulk load starts a new table once the current one reaches this size (strata's default
/// `target_file_size`).
const BULK_TABLE_BYTES: u64 = 64 << 20;

fn strata_durability(d: Durability) -> strata::Durability {
    match d {
        Durability::Sync => strata::Durability::Sync,
        Durability::Buffered => strata::Durability::Buffered,
        Durability::None => strata::Durability::None,
    }
}

fn write_options(d: Durability) -> WriteOptions {
    strata_durability(d).into()
}

/// What the report reads that differs between a `Db` and a `ShardedDb` (their metrics
/// types differ); every operation goes through [`KvStore`].
trait Report: Send + Sync {
    /// The engine's metrics table.
    fn table(&self) -> String;
    /// Bytes written by the engine's own count, where it keeps a total.
    fn bytes_written(&self) -> Option<u64>;
    /// Time writers spent stalled.
    fn stall_time(&self) -> Duration;
    /// The shard of `key` and the shard count, when sharded.
    fn shard_of(&self, key: &[u8]) -> Option<(usize, usize)>;
}

impl Report for Db {
    fn table(&self) -> String {
        self.metrics().to_string()
    }
    fn bytes_written(&self) -> Option<u64> {
        // The same sum as `Metrics::write_amplification`: log, flushes, compaction output,
        // ingested tables.
        let m = self.metrics();
        let compaction: u64 = m.levels.iter().skip(1).map(|l| l.written_bytes).sum();
        Some(m.wal_bytes + m.flush_bytes + compaction + m.ingested_bytes)
    }
    fn stall_time(&self) -> Duration {
        self.metrics().stall_time()
    }
    fn shard_of(&self, _key: &[u8]) -> Option<(usize, usize)> {
        None
    }
}

impl Report for ShardedDb {
    fn table(&self) -> String {
        self.metrics().to_string()
    }
    fn bytes_written(&self) -> Option<u64> {
        // `ShardedMetrics` has no byte counters; the harness's /proc/self/io figure stands.
        None
    }
    fn stall_time(&self) -> Duration {
        self.metrics().shards.iter().map(|s| s.stall_time).sum()
    }
    fn shard_of(&self, key: &[u8]) -> Option<(usize, usize)> {
        Some((self.shard_of(key), self.shard_count()))
    }
}

/// A one-key read-modify-write transaction on a `Db` or a `ShardedDb` (a sharded
/// transaction binds to the key's shard).
trait Transact: Send + Sync {
    /// Begin, read `key`, put `update(current)`, commit as `options` say.
    fn read_modify_write(
        &self,
        key: &[u8],
        options: WriteOptions,
        update: Update<'_>,
    ) -> strata::Result<()>;
}

impl Transact for Db {
    fn read_modify_write(
        &self,
        key: &[u8],
        options: WriteOptions,
        update: Update<'_>,
    ) -> strata::Result<()> {
        let mut tx = self.transaction();
        let new = update(tx.get(key)?.as_deref());
        tx.put(key, new);
        tx.commit_with(options)
    }
}

impl Transact for ShardedDb {
    fn read_modify_write(
        &self,
        key: &[u8],
        options: WriteOptions,
        update: Update<'_>,
    ) -> strata::Result<()> {
        let mut tx = self.transaction();
        let new = update(tx.get(key)?.as_deref());
        tx.put(key, new)?;
        tx.commit_with(options)
    }
}

/// Ingesting finished tables into a `Db` or a `ShardedDb` (their `ingest` differ in what
/// they return).
trait Ingest: Send + Sync {
    fn ingest_files(&self, files: &[IngestFile]) -> strata::Result<()>;
}

impl Ingest for Db {
    fn ingest_files(&self, files: &[IngestFile]) -> strata::Result<()> {
        self.ingest(files).map(|_| ())
    }
}

impl Ingest for ShardedDb {
    fn ingest_files(&self, files: &[IngestFile]) -> strata::Result<()> {
        self.ingest(files).map(|_| ())
    }
}

/// One bulk load: tables of up to [`BULK_TABLE_BYTES`] written in the staging directory,
/// ingested in one call by `finish`, then their staging names removed.
struct StrataBulk<'a> {
    engine: &'a StrataEngine,
    part: u64,
    writer: Option<TableWriter>,
    files: Vec<IngestFile>,
}

impl BulkWriter for StrataBulk<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let path =
                    self.engine.staging.join(format!("{}-{}.sst", self.part, self.files.len()));
                self.writer.insert(TableWriter::create(path, &self.engine.options)?)
            }
        };
        writer.put(key, value)?;
        if writer.estimated_file_size() >= BULK_TABLE_BYTES {
            if let Some(w) = self.writer.take() {
                self.files.push(w.finish()?);
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> BenchResult<()> {
        if let Some(w) = self.writer.take() {
            self.files.push(w.finish()?);
        }
        let result = self.engine.ingest.ingest_files(&self.files);
        for f in &self.files {
            let _ = std::fs::remove_file(f.path());
        }
        Ok(result?)
    }
}

/// An optimistic attempt's result as an [`Attempt`]; other errors stay errors.
fn attempt(result: strata::Result<()>) -> BenchResult<Attempt> {
    match result {
        Ok(()) => Ok(Attempt::Committed),
        Err(Error::Conflict) => Ok(Attempt::Conflict),
        Err(Error::ConditionFailed { .. }) => Ok(Attempt::ConditionFailed),
        Err(e) => Err(e.into()),
    }
}

/// strata opened with `Options::default()`, the run's durability and `--memtable-mib`.
pub struct StrataEngine {
    store: Arc<dyn KvStore>,
    /// The same database as `store` (handles are shared): its metrics.
    report: Box<dyn Report>,
    /// The same database again: its transactions.
    transact: Box<dyn Transact>,
    /// And its ingest, with the options tables for it are built with and where they are
    /// built (a directory beside the database's, on the same file system).
    ingest: Box<dyn Ingest>,
    options: Options,
    staging: PathBuf,
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
        type Handles = (Arc<dyn KvStore>, Box<dyn Report>, Box<dyn Transact>, Box<dyn Ingest>);
        let (store, report, transact, ingest): Handles = match config.shards {
            None => {
                let db = Db::open(dir, opts.clone())?;
                (Arc::new(db.clone()), Box::new(db.clone()), Box::new(db.clone()), Box::new(db))
            }
            Some(n) => {
                let db = ShardedDb::open(dir, ShardedOptions::new(n).engine(opts.clone()))?;
                (Arc::new(db.clone()), Box::new(db.clone()), Box::new(db.clone()), Box::new(db))
            }
        };
        let mut staging = dir.as_os_str().to_owned();
        staging.push(".bulk");
        let staging = PathBuf::from(staging);
        std::fs::create_dir_all(&staging)?;
        Ok(StrataEngine {
            store,
            report,
            transact,
            ingest,
            options: opts,
            staging,
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
        Ok(self.store.put_with(key, value, write_options(durability))?)
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<usize>> {
        Ok(self.store.get(key)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], durability: Durability) -> BenchResult<()> {
        Ok(self.store.delete_with(key, write_options(durability))?)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], durability: Durability) -> BenchResult<()> {
        Ok(self.store.write_with(Self::batch_of(ops), write_options(durability))?)
    }

    fn delete_range(&self, start: &[u8], end: &[u8], durability: Durability) -> BenchResult<()> {
        Ok(self.store.delete_range_with(start, end, write_options(durability))?)
    }

    fn range_delete_support(&self) -> Result<(), String> {
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
        let iter = match (direction, start) {
            (ScanDirection::Forward, Some(s)) => {
                self.store.range((Bound::Included(s), Bound::Unbounded))
            }
            (ScanDirection::Reverse, Some(s)) => {
                self.store.range((Bound::Unbounded, Bound::Included(s)))
            }
            (_, None) => self.store.iter(),
        };
        drive_scan(iter, direction, each)
    }

    fn settle(&self) -> BenchResult<()> {
        self.store.flush()?;
        self.store.wait_for_compaction()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        let _ = std::fs::remove_dir_all(&self.staging);
        Ok(self.store.close()?)
    }

    fn shard_of(&self, key: &[u8]) -> Option<(usize, usize)> {
        self.report.shard_of(key)
    }

    fn metrics(&self) -> Option<String> {
        Some(self.report.table())
    }

    fn bytes_written(&self) -> Option<u64> {
        self.report.bytes_written()
    }

    fn stall_time(&self) -> Option<Duration> {
        Some(self.report.stall_time())
    }

    fn transactional(&self) -> Result<&dyn Transactional, String> {
        Ok(self)
    }

    fn bulk_load(&self) -> Result<&dyn BulkLoad, String> {
        Ok(self)
    }
}

impl BulkLoad for StrataEngine {
    fn start_bulk(&self, part: u64) -> BenchResult<Box<dyn BulkWriter + '_>> {
        Ok(Box::new(StrataBulk { engine: self, part, writer: None, files: Vec::new() }))
    }
}

impl Transactional for StrataEngine {
    fn update_in_transaction(
        &self,
        key: &[u8],
        durability: Durability,
        update: Update<'_>,
    ) -> BenchResult<Attempt> {
        attempt(self.transact.read_modify_write(key, write_options(durability), update))
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        durability: Durability,
    ) -> BenchResult<Attempt> {
        let mut batch = WriteBatch::new();
        batch.expect(key, expected.map_or(Expect::Absent, |v| Expect::Value(v.to_vec())));
        batch.put(key, new);
        attempt(self.store.write_with(batch, write_options(durability)))
    }

    fn read_value(&self, key: &[u8], value: &mut Vec<u8>) -> BenchResult<bool> {
        Ok(super::copy_found(self.store.get(key)?, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(shards: Option<usize>) -> EngineConfig {
        EngineConfig {
            durability: Durability::Buffered,
            shards,
            memtable_mib: None,
            compression_per_level: None,
        }
    }

    /// A bulk load through `TableWriter` and ingest leaves every key readable, on a plain
    /// and a sharded store, and removes its staging tables.
    #[test]
    fn a_bulk_load_ingests_every_key_and_cleans_up() {
        for shards in [None, Some(3)] {
            let dir = tempfile::tempdir().unwrap();
            let db_dir = dir.path().join("db");
            let engine = StrataEngine::open(&db_dir, &config(shards)).unwrap();
            let mut bulk = engine.start_bulk(0).unwrap();
            for i in 0..1000u32 {
                bulk.put(&i.to_be_bytes(), b"value").unwrap();
            }
            bulk.finish().unwrap();
            assert_eq!(engine.get(&7u32.to_be_bytes()).unwrap(), Some(5));
            let n = engine.scan(None, ScanDirection::Forward, &mut |_, _| true).unwrap();
            assert_eq!(n, 1000);
            assert_eq!(std::fs::read_dir(&engine.staging).unwrap().count(), 0);
            Box::new(engine).close().unwrap();
        }
    }

    /// The adapter drives a plain and a sharded store alike through `dyn KvStore`.
    #[test]
    fn the_adapter_runs_on_a_plain_and_a_sharded_store() {
        for shards in [None, Some(3)] {
            let dir = tempfile::tempdir().unwrap();
            let engine = Box::new(StrataEngine::open(dir.path(), &config(shards)).unwrap());
            for k in [b"a", b"b", b"c", b"d"] {
                engine.put(k, b"v", Durability::Buffered).unwrap();
            }
            engine.put(b"e", b"synced", Durability::Sync).unwrap();
            engine.delete(b"a", Durability::None).unwrap();
            engine
                .write_batch(&[BatchOp::Put(b"f", b"x"), BatchOp::Delete(b"b")], Durability::Sync)
                .unwrap();
            assert_eq!(engine.get(b"e").unwrap(), Some(6));
            assert_eq!(engine.get(b"a").unwrap(), None);
            let mut seen = Vec::new();
            let n = engine
                .scan(Some(b"c"), ScanDirection::Forward, &mut |k, _| {
                    seen.push(k.to_vec());
                    seen.len() < 3
                })
                .unwrap();
            assert_eq!((n, seen), (3, vec![b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]));
            let mut back = Vec::new();
            engine
                .scan(Some(b"d"), ScanDirection::Reverse, &mut |k, _| {
                    back.push(k.to_vec());
                    true
                })
                .unwrap();
            assert_eq!(back, [b"d".to_vec(), b"c".to_vec()]);
            engine.settle().unwrap();
            assert_eq!(engine.shard_of(b"k").map(|(_, n)| n), shards);
            assert!(engine.metrics().is_some_and(|m| !m.is_empty()));
            assert!(engine.stall_time().is_some());
            assert_eq!(engine.bytes_written().is_some(), shards.is_none());
            engine.close().unwrap();
        }
    }

    /// A transaction whose key another commit changes between its read and its commit is
    /// refused with a conflict and writes nothing; a compare-and-swap from a stale value is
    /// refused with its condition.
    #[test]
    fn conflicts_and_failed_conditions_are_attempts_not_errors() {
        for shards in [None, Some(3)] {
            let dir = tempfile::tempdir().unwrap();
            let engine = StrataEngine::open(dir.path(), &config(shards)).unwrap();
            let tx = engine.transactional().unwrap();
            let d = Durability::Buffered;
            let mut value = Vec::new();

            let mut set = |_: Option<&[u8]>| b"1".to_vec();
            assert_eq!(tx.update_in_transaction(b"k", d, &mut set).unwrap(), Attempt::Committed);
            let mut overtaken = |current: Option<&[u8]>| {
                assert_eq!(current, Some(&b"1"[..]));
                engine.put(b"k", b"other", d).unwrap(); // commits after the snapshot
                b"2".to_vec()
            };
            let outcome = tx.update_in_transaction(b"k", d, &mut overtaken).unwrap();
            assert_eq!(outcome, Attempt::Conflict);
            assert!(tx.read_value(b"k", &mut value).unwrap());
            assert_eq!(value, b"other", "the refused transaction wrote nothing");

            let stale = tx.compare_and_swap(b"k", Some(b"1"), b"3", Durability::Sync).unwrap();
            assert_eq!(stale, Attempt::ConditionFailed);
            let swapped = tx.compare_and_swap(b"k", Some(b"other"), b"3", d).unwrap();
            assert_eq!(swapped, Attempt::Committed);
            assert_eq!(tx.compare_and_swap(b"new", None, b"x", d).unwrap(), Attempt::Committed);
            assert_eq!(
                tx.compare_and_swap(b"new", None, b"y", d).unwrap(),
                Attempt::ConditionFailed,
                "absent expected, present found"
            );
            assert!(tx.read_value(b"k", &mut value).unwrap());
            assert_eq!(value, b"3");
            assert!(!tx.read_value(b"missing", &mut value).unwrap());
            assert!(value.is_empty());
            Box::new(engine).close().unwrap();
        }
    }

    /// The conditional workloads on strata itself, plain and sharded, with threads
    /// contending on few keys: every increment lands (the run checks the counters).
    #[test]
    fn conditional_workloads_lose_no_update_on_strata() {
        for shards in [None, Some(2)] {
            let dir = tempfile::tempdir().unwrap();
            let engine = StrataEngine::open(dir.path(), &config(shards)).unwrap();
            let what = format!("strata with {shards:?} shards");
            crate::engines::assert_conditional_workloads_lose_nothing(&engine, 600, &what);
            Box::new(engine).close().unwrap();
        }
    }
}
