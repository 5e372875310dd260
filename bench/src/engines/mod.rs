//! The storage engines the harness can drive, behind one object-safe trait.
//!
//! Each peer lives in its own file and is compiled only with its cargo feature, so the default
//! build stays light; strata itself is always built.

#[cfg(feature = "fjall")]
mod fjall;
#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "rocksdb")]
mod rocksdb;
#[cfg(feature = "sled")]
mod sled;
mod strata;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Errors from engines and the harness: every peer has its own error type, so they are boxed.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
/// Result with a boxed engine error.
pub type BenchResult<T> = Result<T, BenchError>;

/// How durable a write must be when the call returns (the `--durability` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The write is in the log and the log is fsynced (fdatasync) before the call returns.
    Sync,
    /// The write is in the log and handed to the OS (no fsync): survives a process crash only.
    Buffered,
    /// The engine's weakest mode: the log may be buffered in user space or skipped entirely.
    None,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Durability::Sync),
            "buffered" => Ok(Durability::Buffered),
            "none" => Ok(Durability::None),
            other => Err(format!("unknown durability {other:?}: expected sync, buffered or none")),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Sync => "sync",
            Durability::Buffered => "buffered",
            Durability::None => "none",
        })
    }
}

/// Which engine to run (the `--engine` list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// strata: a plain `Db`, or a `ShardedDb` with `--shards N`.
    Strata,
    /// RocksDB through the `rocksdb` crate (feature `rocksdb`).
    RocksDb,
    /// fjall (feature `fjall`).
    Fjall,
    /// sled (feature `sled`).
    Sled,
    /// redb (feature `redb`).
    Redb,
    /// A `BTreeMap` behind a mutex: the test double for the harness's own tests.
    #[cfg(test)]
    Memory,
    /// The test double without transactions, like a peer that has none.
    #[cfg(test)]
    MemoryWithoutTransactions,
}

impl EngineKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Strata => "strata",
            EngineKind::RocksDb => "rocksdb",
            EngineKind::Fjall => "fjall",
            EngineKind::Sled => "sled",
            EngineKind::Redb => "redb",
            #[cfg(test)]
            EngineKind::Memory => "memory",
            #[cfg(test)]
            EngineKind::MemoryWithoutTransactions => "memory-without-transactions",
        }
    }
}

impl FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strata" => Ok(EngineKind::Strata),
            "rocksdb" => Ok(EngineKind::RocksDb),
            "fjall" => Ok(EngineKind::Fjall),
            "sled" => Ok(EngineKind::Sled),
            "redb" => Ok(EngineKind::Redb),
            other => Err(format!(
                "unknown engine {other:?}: expected strata, rocksdb, fjall, sled or redb"
            )),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an engine is opened: the same for every engine in a run.
// Read by the engine adapters, none of which is compiled into the default build.
#[cfg_attr(
    not(any(feature = "rocksdb", feature = "fjall", feature = "sled", feature = "redb")),
    allow(dead_code)
)]
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Default durability of writes (a workload may ask for more per write, e.g. fillsync).
    pub durability: Durability,
    /// strata only: `Some(n)` opens a `ShardedDb` of `n` shards; peers ignore it.
    pub shards: Option<usize>,
    /// strata only: the memtable size in MiB (each shard's, when sharded); peers ignore it.
    pub memtable_mib: Option<usize>,
    /// strata only: `Options::compression_per_level`; peers ignore it.
    pub compression_per_level: Option<Vec<::strata::Compression>>,
}

/// One operation of a write batch.
// The workloads batch puts only; `Delete` completes the engine interface (and adapters read the
// fields only when a peer is compiled in).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub enum BatchOp<'a> {
    /// Insert or overwrite `key` with `value`.
    Put(&'a [u8], &'a [u8]),
    /// Delete `key` (a no-op if absent).
    Delete(&'a [u8]),
}

/// Direction of a range scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanDirection {
    /// Ascending keys, starting at the first key `>= start` (or the first key).
    Forward,
    /// Descending keys, starting at the last key `<= start` (or the last key).
    Reverse,
}

/// What one optimistic attempt (a transaction's commit, or a compare-and-swap) came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Applied, as durable as asked.
    Committed,
    /// Refused because another commit changed what the attempt read after it read it
    /// (strata's `Error::Conflict`, fjall's `Conflict`): nothing applied, retry.
    Conflict,
    /// Compare-and-swap only: the current value was not the expected one (strata's
    /// `Error::ConditionFailed`): nothing applied, read again and retry.
    ConditionFailed,
}

/// The new value a transaction writes, made from the current one (`None`: absent).
pub type Update<'a> = &'a mut dyn FnMut(Option<&[u8]>) -> Vec<u8>;

/// The conditional writes of the `txnrandom`, `txncontended` and `casrandom` workloads, as
/// each engine natively offers them. Not part of [`Engine`]: not every peer has them.
pub trait Transactional: Send + Sync {
    /// One optimistic transaction: begin, read `key` (so that the commit validates it), write
    /// `update(current)` to it, commit with `durability`. Exactly one attempt: a refused
    /// commit is [`Attempt::Conflict`], never retried here.
    fn update_in_transaction(
        &self,
        key: &[u8],
        durability: Durability,
        update: Update<'_>,
    ) -> BenchResult<Attempt>;
    /// Set `key` to `new` only if its current value is `expected` (`None`: absent),
    /// atomically, with `durability`.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        durability: Durability,
    ) -> BenchResult<Attempt>;
    /// The current value of `key`, copied into `value`; whether the key exists.
    fn read_value(&self, key: &[u8], value: &mut Vec<u8>) -> BenchResult<bool>;
}

/// A bulk load in progress ([`BulkLoad::start_bulk`]): entries in strictly increasing
/// key order, applied when [`BulkWriter::finish`] returns.
pub trait BulkWriter {
    /// Adds the next entry (its key sorts after the previous one's).
    fn put(&mut self, key: &[u8], value: &[u8]) -> BenchResult<()>;
    /// Makes every entry part of the database, durably.
    fn finish(self: Box<Self>) -> BenchResult<()>;
}

/// The `bulkload` workload's path: sorted data built outside the database and added whole
/// (strata's `TableWriter` + `Db::ingest`). Not part of [`Engine`]: not every peer has it.
pub trait BulkLoad: Send + Sync {
    /// Starts a load; `part` tells concurrent loads of one run apart.
    fn start_bulk(&self, part: u64) -> BenchResult<Box<dyn BulkWriter + '_>>;
}

/// Copies a looked-up value into `value` (cleared first) for [`Transactional::read_value`];
/// whether there was one.
pub(crate) fn copy_found(found: Option<impl AsRef<[u8]>>, value: &mut Vec<u8>) -> bool {
    value.clear();
    match found {
        Some(v) => {
            value.extend_from_slice(v.as_ref());
            true
        }
        None => false,
    }
}

/// The settings the peer adapters' own tests open their engine with.
#[cfg(all(test, any(feature = "fjall", feature = "sled", feature = "redb")))]
pub(crate) fn test_config() -> EngineConfig {
    EngineConfig {
        durability: Durability::Buffered,
        shards: None,
        memtable_mib: None,
        compression_per_level: None,
    }
}

/// Runs the three conditional workloads on `engine` with 3 threads contending on 2 hot keys
/// (`num` ops each) and checks that every op committed once — the run itself fails on a lost
/// update — and that retries add up to conflicts plus failed conditions; returns each
/// workload's counts. For the adapters' own tests.
#[cfg(test)]
pub(crate) fn assert_conditional_workloads_lose_nothing(
    engine: &dyn Engine,
    num: u64,
    what: &str,
) -> Vec<(crate::workload::Benchmark, crate::workload::ConditionalCounts)> {
    use crate::keys::KeyCodec;
    use crate::workload::{self, Benchmark, LiveSet, WorkloadConfig};
    let cfg = WorkloadConfig {
        num,
        threads: 3,
        codec: KeyCodec::new(16).unwrap(),
        value_size: 100,
        batch_size: 1,
        durability: Durability::Buffered,
        compression_ratio: 0.5,
        shard_affine: false,
        hot_keys: 2,
    };
    let live = LiveSet::new(cfg.num);
    let mut all = Vec::new();
    for (seed, bench) in [Benchmark::TxnContended, Benchmark::TxnRandom, Benchmark::CasRandom]
        .into_iter()
        .enumerate()
    {
        let m = workload::run(bench, engine, &live, &cfg, seed as u64, &mut |_| {})
            .unwrap_or_else(|e| panic!("{bench} on {what}: {e}"));
        let counts = m.conditional.unwrap();
        assert_eq!((m.stats.ops, counts.commits), (num, num), "{bench} on {what}");
        assert_eq!(
            counts.retries,
            counts.conflicts + counts.condition_failed.unwrap_or(0),
            "{bench} on {what}"
        );
        all.push((bench, counts));
    }
    all
}

/// The operations every benchmarked engine provides. All methods take `&self`: client threads share
/// one handle, as they would share a database in an application.
pub trait Engine: Send + Sync {
    /// A one-line description of the settings this engine was opened with (printed and documented).
    fn settings(&self) -> String;
    /// Insert or overwrite one key.
    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> BenchResult<()>;
    /// Point lookup; returns the value's length when found. The adapter reads the value through the
    /// engine's zero-copy handle where it has one, so no engine pays for a copy the others skip.
    fn get(&self, key: &[u8]) -> BenchResult<Option<usize>>;
    /// Delete one key.
    fn delete(&self, key: &[u8], durability: Durability) -> BenchResult<()>;
    /// Apply `ops` atomically.
    fn write_batch(&self, ops: &[BatchOp<'_>], durability: Durability) -> BenchResult<()>;
    /// Scan from `start` (or the first/last key when `None`) in `direction`, calling `visit` with
    /// each key and value until it returns `false` or the keys run out. Returns the items visited.
    fn scan(
        &self,
        start: Option<&[u8]>,
        direction: ScanDirection,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> BenchResult<u64>;
    /// Make all writes durable and let background work (memtable flushes, compactions) settle, so
    /// the bytes written and the size on disk that follow are the steady state.
    fn settle(&self) -> BenchResult<()>;
    /// Close the engine, releasing its files.
    fn close(self: Box<Self>) -> BenchResult<()>;
    /// Bytes the engine wrote to disk by its own count, if it keeps one (strata). The harness's
    /// `write_amp` uses the process's `/proc/self/io` for every engine alike (this count only where
    /// that is unavailable) and reports this one as `engine_write_amp`.
    fn bytes_written(&self) -> Option<u64> {
        None
    }
    /// Cumulative time writers were stalled by the engine's back-pressure, if it reports it.
    fn stall_time(&self) -> Option<Duration> {
        None
    }
    /// The engine's metrics table, if it has one (strata's `db.metrics()`).
    fn metrics(&self) -> Option<String> {
        None
    }
    /// For an engine that shards its key space (strata's `ShardedDb`): the shard `key` goes
    /// to, and the number of shards.
    fn shard_of(&self, _key: &[u8]) -> Option<(usize, usize)> {
        None
    }
    /// The engine's transactions and compare-and-swap, or why the adapter has none (the
    /// runner skips the workloads that need them, saying so).
    fn transactional(&self) -> Result<&dyn Transactional, String> {
        Err("this adapter has no transactions or compare-and-swap".into())
    }
    /// Deletes every key in `start..end`; only where [`Engine::range_delete_support`] is
    /// `Ok`.
    fn delete_range(&self, _start: &[u8], _end: &[u8], _durability: Durability) -> BenchResult<()> {
        Err("this adapter has no range delete".into())
    }
    /// Whether the adapter has a range delete, or why not (the runner skips `deleterange`
    /// and `rangetombstones` then, saying so).
    fn range_delete_support(&self) -> Result<(), String> {
        Err("this adapter has no range delete".into())
    }
    /// The engine's bulk load of sorted data, or why the adapter has none (the runner skips
    /// `bulkload` then, saying so).
    fn bulk_load(&self) -> Result<&dyn BulkLoad, String> {
        Err("this adapter has no bulk load of sorted tables".into())
    }
}

/// Open `kind` in `dir` (created if missing).
pub fn open_engine(
    kind: EngineKind,
    dir: &Path,
    config: &EngineConfig,
) -> BenchResult<Box<dyn Engine>> {
    match kind {
        EngineKind::Strata => Ok(Box::new(strata::StrataEngine::open(dir, config)?)),
        #[cfg(feature = "rocksdb")]
        EngineKind::RocksDb => Ok(Box::new(rocksdb::RocksDbEngine::open(dir, config)?)),
        #[cfg(feature = "fjall")]
        EngineKind::Fjall => Ok(Box::new(fjall::FjallEngine::open(dir, config)?)),
        #[cfg(feature = "sled")]
        EngineKind::Sled => Ok(Box::new(sled::SledEngine::open(dir, config)?)),
        #[cfg(feature = "redb")]
        EngineKind::Redb => Ok(Box::new(redb::RedbEngine::open(dir, config)?)),
        #[cfg(test)]
        EngineKind::Memory => Ok(Box::new(memory::MemoryEngine::default())),
        #[cfg(test)]
        EngineKind::MemoryWithoutTransactions => {
            Ok(Box::new(memory::MemoryEngine::without_transactions()))
        }
        #[allow(unreachable_patterns)]
        other => {
            Err(format!("engine {other} is not compiled in: rebuild with `--features {other}`")
                .into())
        }
    }
}

/// Walks a double-ended scan in `direction`, handing each item to `each` until it returns
/// `false`; returns how many items it handed over. Every adapter's `scan` ends here, so the
/// engines differ only in how they open the range and unpack an item.
pub(crate) fn drive_scan<I: DoubleEndedIterator>(
    iter: I,
    direction: ScanDirection,
    mut each: impl FnMut(I::Item) -> BenchResult<bool>,
) -> BenchResult<u64> {
    let mut n = 0;
    let mut step = |item| {
        n += 1;
        each(item)
    };
    match direction {
        ScanDirection::Forward => {
            for item in iter {
                if !step(item)? {
                    break;
                }
            }
        }
        ScanDirection::Reverse => {
            for item in iter.rev() {
                if !step(item)? {
                    break;
                }
            }
        }
    }
    Ok(n)
}

/// The `BTreeMap` test double: never selectable from the command line.
#[cfg(test)]
pub mod memory {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::ops::Bound;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::thread::ThreadId;

    /// An in-memory engine for the harness's tests.
    #[derive(Default)]
    pub struct MemoryEngine {
        map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        /// Pretend to shard keys by their last byte over this many shards.
        shards: Option<usize>,
        /// With `shards`: the shards each thread put keys into.
        pub shards_by_thread: Mutex<HashMap<ThreadId, BTreeSet<usize>>>,
        /// Every this many conditional attempts, refuse the attempt this way instead.
        refuse: Option<(u64, Attempt)>,
        /// Every this many commits, acknowledge without writing: a lost update.
        lose_every: Option<u64>,
        attempts: AtomicU64,
        commits: AtomicU64,
        /// Without conditional operations, like a peer that has none.
        no_transactions: bool,
    }

    impl MemoryEngine {
        /// An engine that shards keys by their last byte over `shards` shards.
        pub fn sharded(shards: usize) -> Self {
            MemoryEngine { shards: Some(shards), ..MemoryEngine::default() }
        }

        /// An engine that refuses every `every`-th conditional attempt with `how`.
        pub fn refusing(every: u64, how: Attempt) -> Self {
            MemoryEngine { refuse: Some((every, how)), ..MemoryEngine::default() }
        }

        /// An engine that acknowledges every `every`-th commit without applying it.
        pub fn losing_updates(every: u64) -> Self {
            MemoryEngine { lose_every: Some(every), ..MemoryEngine::default() }
        }

        /// An engine without transactions or compare-and-swap.
        pub fn without_transactions() -> Self {
            MemoryEngine { no_transactions: true, ..MemoryEngine::default() }
        }

        /// The injected refusal due at this attempt, if any.
        fn refusal(&self) -> Option<Attempt> {
            let n = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
            self.refuse.and_then(|(every, how)| n.is_multiple_of(every).then_some(how))
        }

        /// Apply a commit of `value` to `key`, unless this is one it loses.
        fn apply(&self, map: &mut BTreeMap<Vec<u8>, Vec<u8>>, key: &[u8], value: Vec<u8>) {
            let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
            if self.lose_every.is_some_and(|every| n.is_multiple_of(every)) {
                return;
            }
            map.insert(key.to_vec(), value);
        }
    }

    /// Each operation holds the map's lock throughout, so it is serializable by
    /// construction; refusals only come from the injection.
    impl Transactional for MemoryEngine {
        fn update_in_transaction(
            &self,
            key: &[u8],
            _: Durability,
            update: Update<'_>,
        ) -> BenchResult<Attempt> {
            if let Some(how) = self.refusal() {
                return Ok(how);
            }
            let mut map = self.map.lock().unwrap();
            let new = update(map.get(key).map(Vec::as_slice));
            self.apply(&mut map, key, new);
            Ok(Attempt::Committed)
        }

        fn compare_and_swap(
            &self,
            key: &[u8],
            expected: Option<&[u8]>,
            new: &[u8],
            _: Durability,
        ) -> BenchResult<Attempt> {
            if let Some(how) = self.refusal() {
                return Ok(how);
            }
            let mut map = self.map.lock().unwrap();
            if map.get(key).map(Vec::as_slice) != expected {
                return Ok(Attempt::ConditionFailed);
            }
            self.apply(&mut map, key, new.to_vec());
            Ok(Attempt::Committed)
        }

        fn read_value(&self, key: &[u8], value: &mut Vec<u8>) -> BenchResult<bool> {
            value.clear();
            let map = self.map.lock().unwrap();
            let found = map.get(key);
            value.extend_from_slice(found.map_or(&[][..], Vec::as_slice));
            Ok(found.is_some())
        }
    }

    impl Engine for MemoryEngine {
        fn settings(&self) -> String {
            "BTreeMap test double".into()
        }
        fn put(&self, key: &[u8], value: &[u8], _: Durability) -> BenchResult<()> {
            if let Some((shard, _)) = self.shard_of(key) {
                let thread = std::thread::current().id();
                self.shards_by_thread.lock().unwrap().entry(thread).or_default().insert(shard);
            }
            self.map.lock().unwrap().insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        fn get(&self, key: &[u8]) -> BenchResult<Option<usize>> {
            Ok(self.map.lock().unwrap().get(key).map(Vec::len))
        }
        fn delete(&self, key: &[u8], _: Durability) -> BenchResult<()> {
            self.map.lock().unwrap().remove(key);
            Ok(())
        }
        fn write_batch(&self, ops: &[BatchOp<'_>], _: Durability) -> BenchResult<()> {
            let mut map = self.map.lock().unwrap();
            for op in ops {
                match *op {
                    BatchOp::Put(k, v) => {
                        map.insert(k.to_vec(), v.to_vec());
                    }
                    BatchOp::Delete(k) => {
                        map.remove(k);
                    }
                }
            }
            Ok(())
        }
        fn scan(
            &self,
            start: Option<&[u8]>,
            direction: ScanDirection,
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> BenchResult<u64> {
            let map = self.map.lock().unwrap();
            let each = |(k, v): (&Vec<u8>, &Vec<u8>)| Ok(visit(k, v));
            match (direction, start) {
                (ScanDirection::Forward, Some(s)) => drive_scan(
                    map.range::<[u8], _>((Bound::Included(s), Bound::Unbounded)),
                    direction,
                    each,
                ),
                (ScanDirection::Reverse, Some(s)) => drive_scan(
                    map.range::<[u8], _>((Bound::Unbounded, Bound::Included(s))),
                    direction,
                    each,
                ),
                (_, None) => drive_scan(map.iter(), direction, each),
            }
        }
        fn settle(&self) -> BenchResult<()> {
            Ok(())
        }
        fn close(self: Box<Self>) -> BenchResult<()> {
            Ok(())
        }
        fn shard_of(&self, key: &[u8]) -> Option<(usize, usize)> {
            let shards = self.shards?;
            Some((usize::from(*key.last()?) % shards, shards))
        }
        fn transactional(&self) -> Result<&dyn Transactional, String> {
            if self.no_transactions {
                return Err("the test double was built without them".into());
            }
            Ok(self)
        }
        fn bulk_load(&self) -> Result<&dyn BulkLoad, String> {
            Ok(self)
        }
    }

    /// Entries gathered, then applied at once.
    struct MemoryBulk<'a> {
        engine: &'a MemoryEngine,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl BulkWriter for MemoryBulk<'_> {
        fn put(&mut self, key: &[u8], value: &[u8]) -> BenchResult<()> {
            if self.entries.last().is_some_and(|(last, _)| last.as_slice() >= key) {
                return Err("bulk load keys out of order".into());
            }
            self.entries.push((key.to_vec(), value.to_vec()));
            Ok(())
        }
        fn finish(self: Box<Self>) -> BenchResult<()> {
            let mut map = self.engine.map.lock().unwrap();
            map.extend(self.entries);
            Ok(())
        }
    }

    impl BulkLoad for MemoryEngine {
        fn start_bulk(&self, _part: u64) -> BenchResult<Box<dyn BulkWriter + '_>> {
            Ok(Box::new(MemoryBulk { engine: self, entries: Vec::new() }))
        }
    }
}
