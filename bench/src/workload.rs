//! The workloads, with RocksDB db_bench's meanings.
//!
//! State carries across the benchmarks of one run, as in db_bench: the `fill*` workloads start from
//! a fresh (empty) database, every other workload runs against whatever the previous ones left.
//!
//! `--num` is the size of the key space and the total operation count of a run; `--threads T`
//! splits the operations across T client threads that share the key space (db_bench instead gives
//! every thread `num` operations).
//!
//! The conditional workloads (`txnrandom`, `txncontended`, `casrandom`) are not db_bench's: each
//! operation increments a counter (see [`crate::counters`]) with an optimistic transaction or a
//! compare-and-swap, retrying every refused attempt, and the run ends by checking that no
//! acknowledged increment was lost.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::counters::{check_no_lost_updates, CounterCodec};
use crate::engines::{
    Attempt, BatchOp, BenchResult, BulkLoad, Durability, Engine, ScanDirection, Transactional,
};
use crate::keys::{KeyCodec, ValueGen};
use crate::stats::ThreadStats;

/// Items read after each seek in `seekrandom` (db_bench's `--seek_nexts`, set to 10 here).
pub const SEEK_NEXTS: usize = 10;
/// db_bench's fillsync writes `num / 1000` keys, each fsynced.
const FILLSYNC_DIVISOR: u64 = 1000;
/// Workers publish progress every this many operations (keeps the shared counter off the hot path).
const PROGRESS_EVERY: u64 = 256;
/// How often the coordinating thread reports progress.
const PROGRESS_TICK: Duration = Duration::from_millis(100);
/// Attempts one conditional operation may make before the run fails: optimistic commits
/// always let someone through, so reaching it means the engine is livelocked or broken.
const MAX_ATTEMPTS: u64 = 100_000;
/// `deleterange` runs `num / DELETE_RANGE_DIVISOR` range deletes ...
pub const DELETE_RANGE_DIVISOR: u64 = 1000;
/// ... each of this many consecutive keys.
pub const DELETE_RANGE_KEYS: u64 = 100;
/// The range deletes `rangetombstones` writes.
pub const RANGE_TOMBSTONES: u64 = 1000;
/// The default `--hot-keys` of `txncontended`.
pub const DEFAULT_HOT_KEYS: u64 = 16;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Benchmark {
    /// Write `num` keys in key order into a fresh database.
    FillSeq,
    /// Write `num` uniformly random keys (with replacement) into a fresh database.
    FillRandom,
    /// fillseq in write batches of `--batch-size`.
    FillBatch,
    /// Write `num / 1000` random keys into a fresh database, each write fsynced.
    FillSync,
    /// Load `num` keys in key order into a fresh database as sorted tables built outside it
    /// and ingested (strata's `TableWriter` and `Db::ingest`; not db_bench's).
    BulkLoad,
    /// Write `num` random keys into the existing database.
    Overwrite,
    /// Delete `num` random keys.
    DeleteRandom,
    /// `num / 1000` range deletes, each of the 100 consecutive keys from a random one.
    DeleteRange,
    /// 1,000 range deletes that cover no key (each between two neighbouring keys): reads
    /// after it show what tombstones cost keys they do not touch.
    RangeTombstones,
    /// Look up `num` random keys of the key space (some miss after fillrandom).
    ReadRandom,
    /// Look up `num` keys that cannot exist.
    ReadMissing,
    /// Scan forward through the database.
    ReadSeq,
    /// Scan backward through the database.
    ReadReverse,
    /// `num` seeks to random keys, each followed by 10 `next`s.
    SeekRandom,
    /// readrandom on T threads while one more thread writes random keys at full speed.
    ReadWhileWriting,
    /// `num` optimistic transactions, each reading one random key and writing it back
    /// incremented (uncontended when the key space is large).
    TxnRandom,
    /// txnrandom on T threads confined to the first `--hot-keys` keys: contended.
    TxnContended,
    /// `num` increments of random keys by a read and a compare-and-swap, retried until it
    /// holds.
    CasRandom,
}

impl Benchmark {
    /// Every workload, in documentation order.
    pub const ALL: [Benchmark; 18] = [
        Benchmark::FillSeq,
        Benchmark::FillRandom,
        Benchmark::FillBatch,
        Benchmark::FillSync,
        Benchmark::BulkLoad,
        Benchmark::Overwrite,
        Benchmark::DeleteRandom,
        Benchmark::DeleteRange,
        Benchmark::RangeTombstones,
        Benchmark::ReadRandom,
        Benchmark::ReadMissing,
        Benchmark::ReadSeq,
        Benchmark::ReadReverse,
        Benchmark::SeekRandom,
        Benchmark::ReadWhileWriting,
        Benchmark::TxnRandom,
        Benchmark::TxnContended,
        Benchmark::CasRandom,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::FillSeq => "fillseq",
            Benchmark::FillRandom => "fillrandom",
            Benchmark::FillBatch => "fillbatch",
            Benchmark::FillSync => "fillsync",
            Benchmark::BulkLoad => "bulkload",
            Benchmark::Overwrite => "overwrite",
            Benchmark::DeleteRandom => "deleterandom",
            Benchmark::DeleteRange => "deleterange",
            Benchmark::RangeTombstones => "rangetombstones",
            Benchmark::ReadRandom => "readrandom",
            Benchmark::ReadMissing => "readmissing",
            Benchmark::ReadSeq => "readseq",
            Benchmark::ReadReverse => "readreverse",
            Benchmark::SeekRandom => "seekrandom",
            Benchmark::ReadWhileWriting => "readwhilewriting",
            Benchmark::TxnRandom => "txnrandom",
            Benchmark::TxnContended => "txncontended",
            Benchmark::CasRandom => "casrandom",
        }
    }

    /// Whether the workload starts from an empty database (db_bench's `fresh_db`).
    pub fn fresh_db(self) -> bool {
        matches!(
            self,
            Benchmark::FillSeq
                | Benchmark::FillRandom
                | Benchmark::FillBatch
                | Benchmark::FillSync
                | Benchmark::BulkLoad
        )
    }

    /// Whether the workload writes (and so has a write amplification).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Benchmark::FillSeq
                | Benchmark::FillRandom
                | Benchmark::FillBatch
                | Benchmark::FillSync
                | Benchmark::BulkLoad
                | Benchmark::Overwrite
                | Benchmark::DeleteRandom
                | Benchmark::DeleteRange
                | Benchmark::RangeTombstones
                | Benchmark::ReadWhileWriting
                | Benchmark::TxnRandom
                | Benchmark::TxnContended
                | Benchmark::CasRandom
        )
    }

    /// Whether the workload needs the engine's range delete.
    pub fn range_deletes(self) -> bool {
        matches!(self, Benchmark::DeleteRange | Benchmark::RangeTombstones)
    }

    /// Whether the workload needs the engine's [`Transactional`] operations (and reports
    /// commits, conflicts and retries).
    pub fn conditional(self) -> bool {
        matches!(self, Benchmark::TxnRandom | Benchmark::TxnContended | Benchmark::CasRandom)
    }

    /// Whether the workload needs data to be meaningful.
    pub fn needs_data(self) -> bool {
        matches!(
            self,
            Benchmark::ReadRandom
                | Benchmark::ReadMissing
                | Benchmark::ReadSeq
                | Benchmark::ReadReverse
                | Benchmark::SeekRandom
                | Benchmark::ReadWhileWriting
                | Benchmark::DeleteRandom
                | Benchmark::DeleteRange
                | Benchmark::RangeTombstones
                | Benchmark::Overwrite
                | Benchmark::TxnRandom
                | Benchmark::CasRandom
        )
    }

    /// Whether the workload reports found/total lookups.
    pub fn counts_found(self) -> bool {
        matches!(
            self,
            Benchmark::ReadRandom
                | Benchmark::ReadMissing
                | Benchmark::SeekRandom
                | Benchmark::ReadWhileWriting
        )
    }

    /// Operations one run performs for a key space of `num`.
    pub fn planned_ops(self, num: u64) -> u64 {
        match self {
            Benchmark::FillSync => (num / FILLSYNC_DIVISOR).max(1),
            Benchmark::DeleteRange => (num / DELETE_RANGE_DIVISOR).max(1),
            Benchmark::RangeTombstones => RANGE_TOMBSTONES,
            _ => num,
        }
    }
}

impl FromStr for Benchmark {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Benchmark::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Benchmark::ALL.iter().map(|b| b.name()).collect();
            format!("unknown benchmark {s:?}: expected one of {}", names.join(", "))
        })
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters shared by every workload of a run.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Key space size and operations per run.
    pub num: u64,
    /// Client threads (readers, for readwhilewriting).
    pub threads: usize,
    /// Key encoding.
    pub codec: KeyCodec,
    /// Value length in bytes.
    pub value_size: usize,
    /// Writes per batch in fillbatch.
    pub batch_size: usize,
    /// Durability of writes (fillsync always syncs).
    pub durability: Durability,
    /// Compressed size / raw size that generated values aim for.
    pub compression_ratio: f64,
    /// Random writes of writer thread `t` go only to keys of shard `t mod shards` (for a
    /// sharded engine; keys are redrawn until one routes there).
    pub shard_affine: bool,
    /// The keys `txncontended` shares among its threads: indexes `0..hot_keys`.
    pub hot_keys: u64,
}

/// The set of keys currently in the database, so space amplification can divide by live data.
pub struct LiveSet {
    bits: Vec<AtomicU64>,
    count: AtomicU64,
}

impl LiveSet {
    /// An empty set over key indexes `0..num`.
    pub fn new(num: u64) -> Self {
        let words = num.div_ceil(64) as usize;
        LiveSet { bits: (0..words).map(|_| AtomicU64::new(0)).collect(), count: AtomicU64::new(0) }
    }

    /// Mark `index` live.
    pub fn insert(&self, index: u64) {
        let bit = 1u64 << (index % 64);
        let old = self.bits[(index / 64) as usize].fetch_or(bit, Ordering::Relaxed);
        if old & bit == 0 {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Mark `index` deleted.
    pub fn remove(&self, index: u64) {
        let bit = 1u64 << (index % 64);
        let old = self.bits[(index / 64) as usize].fetch_and(!bit, Ordering::Relaxed);
        if old & bit != 0 {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Live keys.
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every key (the database was recreated).
    pub fn clear(&self) {
        for word in &self.bits {
            word.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
    }
}

/// The merged outcome of one workload run.
pub struct Measurement {
    /// Merged per-thread stats (histogram, timeline, ops, bytes, found).
    pub stats: ThreadStats,
    /// Wall time from the start until the last measured thread finished.
    pub elapsed: Duration,
    /// Lookups attempted, for found/total (reads only).
    pub lookups: Option<u64>,
    /// User bytes written (key + value per put, key per delete), including an unmeasured writer's.
    pub user_bytes_written: u64,
    /// Conditional workloads: what the commits and refusals came to.
    pub conditional: Option<ConditionalCounts>,
}

/// The outcome of a conditional workload's attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionalCounts {
    /// Acknowledged commits (one per operation).
    pub commits: u64,
    /// Attempts refused with a conflict (another commit changed what the attempt read).
    pub conflicts: u64,
    /// Compare-and-swap attempts whose expected value no longer held (`None` for
    /// transactions, which have no expectation).
    pub condition_failed: Option<u64>,
    /// Attempts made again after a refusal: every refusal is retried.
    pub retries: u64,
}

/// The share `[start, start + count)` of `total` that thread `i` of `threads` takes.
pub fn thread_share(total: u64, threads: usize, i: usize) -> (u64, u64) {
    let threads = threads as u64;
    let i = i as u64;
    let base = total / threads;
    let extra = total % threads;
    let start = i * base + i.min(extra);
    (start, base + u64::from(i < extra))
}

/// Everything one client thread needs.
struct Worker<'a> {
    engine: &'a dyn Engine,
    cfg: &'a WorkloadConfig,
    live: &'a LiveSet,
    progress: &'a AtomicU64,
    stats: ThreadStats,
    rng: SmallRng,
    values: ValueGen,
    key: Vec<u8>,
    unpublished: u64,
    user_bytes_written: u64,
    /// The thread's number among the workload's threads.
    thread: u64,
    /// The run's counters (conditional workloads).
    counters: CounterCodec,
}

impl<'a> Worker<'a> {
    fn new(
        engine: &'a dyn Engine,
        cfg: &'a WorkloadConfig,
        live: &'a LiveSet,
        progress: &'a AtomicU64,
        start: Instant,
        seed: u64,
        i: u64,
    ) -> Self {
        Worker {
            engine,
            cfg,
            live,
            progress,
            stats: ThreadStats::new(start),
            rng: SmallRng::seed_from_u64(
                seed ^ i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            values: ValueGen::new(cfg.value_size, cfg.compression_ratio, seed.wrapping_add(i)),
            key: Vec::with_capacity(cfg.codec.key_size() + 1),
            unpublished: 0,
            user_bytes_written: 0,
            thread: i,
            counters: CounterCodec::new(seed),
        }
    }

    fn tick(&mut self, ops: u64) {
        self.unpublished += ops;
        if self.unpublished >= PROGRESS_EVERY {
            self.progress.fetch_add(self.unpublished, Ordering::Relaxed);
            self.unpublished = 0;
        }
    }

    fn finish(self) -> (ThreadStats, u64) {
        self.progress.fetch_add(self.unpublished, Ordering::Relaxed);
        (self.stats, self.user_bytes_written)
    }

    fn random_index(&mut self) -> u64 {
        self.rng.random_range(0..self.cfg.num)
    }

    fn put_index(&mut self, index: u64, durability: Durability) -> BenchResult<()> {
        self.cfg.codec.encode(index, &mut self.key);
        let value = self.values.next_value();
        let bytes = (self.key.len() + value.len()) as u64;
        let began = Instant::now();
        self.engine.put(&self.key, value, durability)?;
        self.stats.record(began, Instant::now(), 1, bytes);
        self.live.insert(index);
        self.user_bytes_written += bytes;
        self.tick(1);
        Ok(())
    }

    fn fill_seq(&mut self, start: u64, count: u64) -> BenchResult<()> {
        for index in start..start + count {
            self.put_index(index, self.cfg.durability)?;
        }
        Ok(())
    }

    /// A random key index; with `shard_affine`, one whose key routes to this thread's shard.
    fn random_write_index(&mut self) -> u64 {
        loop {
            let index = self.random_index();
            if !self.cfg.shard_affine {
                return index;
            }
            self.cfg.codec.encode(index, &mut self.key);
            match self.engine.shard_of(&self.key) {
                Some((shard, shards)) if shard as u64 != self.thread % shards as u64 => {}
                _ => return index,
            }
        }
    }

    fn fill_random(&mut self, count: u64, durability: Durability) -> BenchResult<()> {
        for _ in 0..count {
            let index = self.random_write_index();
            self.put_index(index, durability)?;
        }
        Ok(())
    }

    /// Keys `start..start + count` in order into one bulk load, finished (and so part of
    /// the database) before this returns. Each put is one measured operation; the finish
    /// (table tail, sync, ingest) counts in the run's time, not in the latencies.
    fn bulk_load(&mut self, loader: &dyn BulkLoad, start: u64, count: u64) -> BenchResult<()> {
        let mut bulk = loader.start_bulk(self.thread)?;
        for index in start..start + count {
            self.cfg.codec.encode(index, &mut self.key);
            let value = self.values.next_value();
            let bytes = (self.key.len() + value.len()) as u64;
            let began = Instant::now();
            bulk.put(&self.key, value)?;
            self.stats.record(began, Instant::now(), 1, bytes);
            self.user_bytes_written += bytes;
            self.tick(1);
        }
        bulk.finish()?;
        for index in start..start + count {
            self.live.insert(index);
        }
        Ok(())
    }

    fn fill_batch(&mut self, start: u64, count: u64) -> BenchResult<()> {
        let batch_size = self.cfg.batch_size.max(1) as u64;
        let key_size = self.cfg.codec.key_size();
        let mut keys = Vec::new();
        let mut vals = Vec::new();
        let mut next = start;
        while next < start + count {
            let n = batch_size.min(start + count - next);
            keys.clear();
            vals.clear();
            for index in next..next + n {
                self.cfg.codec.encode(index, &mut self.key);
                keys.extend_from_slice(&self.key);
                vals.extend_from_slice(self.values.next_value());
            }
            let ops: Vec<BatchOp<'_>> = keys
                .chunks(key_size)
                .zip(vals.chunks(self.cfg.value_size.max(1)))
                .map(|(k, v)| BatchOp::Put(k, v))
                .collect();
            let bytes = (keys.len() + vals.len()) as u64;
            let began = Instant::now();
            self.engine.write_batch(&ops, self.cfg.durability)?;
            self.stats.record(began, Instant::now(), n, bytes);
            for index in next..next + n {
                self.live.insert(index);
            }
            self.user_bytes_written += bytes;
            self.tick(n);
            next += n;
        }
        Ok(())
    }

    fn delete_random(&mut self, count: u64) -> BenchResult<()> {
        for _ in 0..count {
            let index = self.random_index();
            self.cfg.codec.encode(index, &mut self.key);
            let bytes = self.key.len() as u64;
            let began = Instant::now();
            self.engine.delete(&self.key, self.cfg.durability)?;
            self.stats.record(began, Instant::now(), 1, bytes);
            self.live.remove(index);
            self.user_bytes_written += bytes;
            self.tick(1);
        }
        Ok(())
    }

    /// `count` range deletes at random keys: of [`DELETE_RANGE_KEYS`] keys each, or, when
    /// `empty`, of the gap right after the key (`key ++ [0] .. key ++ [1]`: no key of the
    /// codec falls there), so they delete nothing.
    fn delete_ranges(&mut self, count: u64, empty: bool) -> BenchResult<()> {
        let mut end = Vec::new();
        for _ in 0..count {
            let index = self.random_index();
            self.cfg.codec.encode(index, &mut self.key);
            if empty {
                end.clone_from(&self.key);
                self.key.push(0);
                end.push(1);
            } else {
                self.cfg.codec.encode(index + DELETE_RANGE_KEYS, &mut end);
            }
            let bytes = (self.key.len() + end.len()) as u64;
            let began = Instant::now();
            self.engine.delete_range(&self.key, &end, self.cfg.durability)?;
            self.stats.record(began, Instant::now(), 1, bytes);
            if !empty {
                let end = (index + DELETE_RANGE_KEYS).min(self.cfg.num);
                (index..end).for_each(|i| self.live.remove(i));
            }
            self.user_bytes_written += bytes;
            self.tick(1);
        }
        Ok(())
    }

    fn read_random(&mut self, count: u64, missing: bool) -> BenchResult<()> {
        for _ in 0..count {
            let index = self.random_index();
            if missing {
                self.cfg.codec.encode_missing(index, &mut self.key);
            } else {
                self.cfg.codec.encode(index, &mut self.key);
            }
            let began = Instant::now();
            let found = self.engine.get(&self.key)?;
            let bytes = found.map_or(0, |len| (self.key.len() + len) as u64);
            self.stats.record(began, Instant::now(), 1, bytes);
            self.stats.found += u64::from(found.is_some());
            self.tick(1);
        }
        Ok(())
    }

    fn read_scan(&mut self, start: u64, count: u64, direction: ScanDirection) -> BenchResult<()> {
        let first = match direction {
            ScanDirection::Forward => start,
            ScanDirection::Reverse => (start + count).saturating_sub(1),
        };
        self.cfg.codec.encode(first, &mut self.key);
        let mut last = Instant::now();
        let mut read = 0u64;
        let mut unpublished = 0u64;
        let (stats, progress) = (&mut self.stats, self.progress);
        self.engine.scan(Some(&self.key), direction, &mut |k, v| {
            let now = Instant::now();
            stats.record(last, now, 1, (k.len() + v.len()) as u64);
            last = now;
            read += 1;
            unpublished += 1;
            if unpublished >= PROGRESS_EVERY {
                progress.fetch_add(unpublished, Ordering::Relaxed);
                unpublished = 0;
            }
            read < count
        })?;
        self.unpublished += unpublished;
        Ok(())
    }

    fn seek_random(&mut self, count: u64) -> BenchResult<()> {
        for _ in 0..count {
            let index = self.random_index();
            self.cfg.codec.encode(index, &mut self.key);
            let mut bytes = 0u64;
            let mut items = 0usize;
            let began = Instant::now();
            self.engine.scan(Some(&self.key), ScanDirection::Forward, &mut |k, v| {
                bytes += (k.len() + v.len()) as u64;
                items += 1;
                items <= SEEK_NEXTS
            })?;
            self.stats.record(began, Instant::now(), 1, bytes);
            self.stats.found += u64::from(items > 0);
            self.tick(1);
        }
        Ok(())
    }
}

/// Which keys a conditional workload increments.
#[derive(Clone, Copy, Debug)]
enum Keys {
    /// Uniformly from the whole key space.
    All,
    /// Uniformly from the first `n` keys.
    Hot(u64),
}

impl Worker<'_> {
    fn conditional_index(&mut self, keys: Keys) -> u64 {
        match keys {
            Keys::All => self.random_index(),
            Keys::Hot(n) => self.rng.random_range(0..n.clamp(1, self.cfg.num)),
        }
    }

    /// Counts one acknowledged increment of `index` (its first attempt began at `began`).
    fn record_commit(&mut self, index: u64, began: Instant, value_len: usize) {
        let bytes = (self.key.len() + value_len) as u64;
        self.stats.record(began, Instant::now(), 1, bytes);
        self.live.insert(index);
        self.user_bytes_written += bytes;
        self.tick(1);
    }

    /// `count` increments, each one optimistic transaction that reads the counter and writes
    /// it back plus one, retried until it commits. Latency covers every attempt.
    fn txn_increment(
        &mut self,
        engine: &dyn Transactional,
        count: u64,
        keys: Keys,
    ) -> BenchResult<()> {
        for _ in 0..count {
            let index = self.conditional_index(keys);
            self.cfg.codec.encode(index, &mut self.key);
            let counters = self.counters;
            let filler = self.values.next_value();
            let mut value_len = 0;
            let mut increment = |current: Option<&[u8]>| {
                let value = counters.value(counters.count(current) + 1, filler);
                value_len = value.len();
                value
            };
            let began = Instant::now();
            let mut attempts = 0;
            loop {
                attempts += 1;
                match engine.update_in_transaction(
                    &self.key,
                    self.cfg.durability,
                    &mut increment,
                )? {
                    Attempt::Committed => break,
                    Attempt::Conflict => self.stats.conflicts += 1,
                    Attempt::ConditionFailed => {
                        return Err("a transaction without a condition reported a failed one".into())
                    }
                }
                if attempts >= MAX_ATTEMPTS {
                    return Err(format!("a transaction gave up after {attempts} conflicts").into());
                }
            }
            self.record_commit(index, began, value_len);
        }
        Ok(())
    }

    /// `count` increments, each a read of the counter and a compare-and-swap from what was
    /// read to one more, read again and retried until the swap holds.
    fn cas_increment(
        &mut self,
        engine: &dyn Transactional,
        count: u64,
        keys: Keys,
    ) -> BenchResult<()> {
        let mut current = Vec::new();
        for _ in 0..count {
            let index = self.conditional_index(keys);
            self.cfg.codec.encode(index, &mut self.key);
            let filler = self.values.next_value();
            let began = Instant::now();
            let mut attempts = 0;
            let value_len = loop {
                attempts += 1;
                let expected = engine.read_value(&self.key, &mut current)?.then_some(&current[..]);
                let new = self.counters.value(self.counters.count(expected) + 1, filler);
                match engine.compare_and_swap(&self.key, expected, &new, self.cfg.durability)? {
                    Attempt::Committed => break new.len(),
                    Attempt::Conflict => self.stats.conflicts += 1,
                    Attempt::ConditionFailed => self.stats.condition_failed += 1,
                }
                if attempts >= MAX_ATTEMPTS {
                    return Err(
                        format!("a compare-and-swap gave up after {attempts} attempts").into()
                    );
                }
            };
            self.record_commit(index, began, value_len);
        }
        Ok(())
    }
}

/// The sum of the run's counters: over the hot keys for `txncontended`, else over a scan of
/// the whole database (outside the measured time).
fn sum_counters(
    bench: Benchmark,
    engine: &dyn Engine,
    tx: &dyn Transactional,
    cfg: &WorkloadConfig,
    counters: CounterCodec,
) -> BenchResult<u64> {
    let mut sum = 0u64;
    if bench == Benchmark::TxnContended {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for index in 0..cfg.hot_keys.clamp(1, cfg.num) {
            cfg.codec.encode(index, &mut key);
            let found = tx.read_value(&key, &mut value)?;
            sum += counters.count(found.then_some(&value[..]));
        }
    } else {
        engine.scan(None, ScanDirection::Forward, &mut |_, v| {
            sum += counters.count(Some(v));
            true
        })?;
    }
    Ok(sum)
}

/// Increments a counter when dropped, so the coordinator sees a thread finish even if it failed.
struct FinishedGuard<'a>(&'a AtomicUsize);

impl Drop for FinishedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Run `bench` once on `engine`. `seed` makes the random keys of a run reproducible (the runner
/// gives every engine the same seed for the same round, so they see the same keys).
/// `on_progress(done_ops)` is called about every 100 ms from the calling thread.
pub fn run(
    bench: Benchmark,
    engine: &dyn Engine,
    live: &LiveSet,
    cfg: &WorkloadConfig,
    seed: u64,
    on_progress: &mut dyn FnMut(u64),
) -> BenchResult<Measurement> {
    let threads = cfg.threads.max(1);
    let total = bench.planned_ops(cfg.num);
    let bulk: Option<&dyn BulkLoad> = if bench == Benchmark::BulkLoad {
        Some(engine.bulk_load().map_err(|why| format!("{bench} is unsupported: {why}"))?)
    } else {
        None
    };
    let tx: Option<&dyn Transactional> = if bench.conditional() {
        Some(engine.transactional().map_err(|why| format!("{bench} is unsupported: {why}"))?)
    } else {
        None
    };
    let progress = AtomicU64::new(0);
    let finished = AtomicUsize::new(0);
    let stop_writer = AtomicBool::new(false);
    // The writer of readwhilewriting is not measured (db_bench reports the readers only).
    let unmeasured = AtomicU64::new(0);
    let writer_started = AtomicBool::new(false);

    type ThreadOutcome = BenchResult<(ThreadStats, u64, Instant)>;
    let (results, writer_bytes, start): (Vec<ThreadOutcome>, BenchResult<u64>, Instant) =
        std::thread::scope(|scope| {
            let writer = (bench == Benchmark::ReadWhileWriting).then(|| {
                let mut w =
                    Worker::new(engine, cfg, live, &unmeasured, Instant::now(), seed, u64::MAX);
                let (stop, started) = (&stop_writer, &writer_started);
                scope.spawn(move || -> BenchResult<u64> {
                    while !stop.load(Ordering::Relaxed) {
                        let index = w.random_index();
                        w.put_index(index, cfg.durability)?;
                        started.store(true, Ordering::Release);
                    }
                    Ok(w.user_bytes_written)
                })
            });
            // Readers start once the writer is writing, so every read overlaps writes.
            if let Some(handle) = &writer {
                while !writer_started.load(Ordering::Acquire) && !handle.is_finished() {
                    std::thread::yield_now();
                }
            }
            let start = Instant::now();
            let make_worker =
                |i: u64, progress| Worker::new(engine, cfg, live, progress, start, seed, i);
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let mut w = make_worker(i as u64, &progress);
                    let finished = &finished;
                    scope.spawn(move || -> ThreadOutcome {
                        let _done = FinishedGuard(finished);
                        let (first, count) = thread_share(total, threads, i);
                        match bench {
                            Benchmark::FillSeq => w.fill_seq(first, count)?,
                            Benchmark::FillBatch => w.fill_batch(first, count)?,
                            Benchmark::BulkLoad => w.bulk_load(need(bulk)?, first, count)?,
                            Benchmark::FillRandom | Benchmark::Overwrite => {
                                w.fill_random(count, cfg.durability)?
                            }
                            Benchmark::FillSync => w.fill_random(count, Durability::Sync)?,
                            Benchmark::DeleteRandom => w.delete_random(count)?,
                            Benchmark::DeleteRange => w.delete_ranges(count, false)?,
                            Benchmark::RangeTombstones => w.delete_ranges(count, true)?,
                            Benchmark::ReadRandom | Benchmark::ReadWhileWriting => {
                                w.read_random(count, false)?
                            }
                            Benchmark::ReadMissing => w.read_random(count, true)?,
                            Benchmark::ReadSeq => {
                                w.read_scan(first, count, ScanDirection::Forward)?
                            }
                            Benchmark::ReadReverse => {
                                w.read_scan(first, count, ScanDirection::Reverse)?
                            }
                            Benchmark::SeekRandom => w.seek_random(count)?,
                            Benchmark::TxnRandom => w.txn_increment(need(tx)?, count, Keys::All)?,
                            Benchmark::TxnContended => {
                                w.txn_increment(need(tx)?, count, Keys::Hot(cfg.hot_keys))?
                            }
                            Benchmark::CasRandom => w.cas_increment(need(tx)?, count, Keys::All)?,
                        }
                        let end = Instant::now();
                        let (stats, written) = w.finish();
                        Ok((stats, written, end))
                    })
                })
                .collect();
            // Poll in small steps so a short run is not padded by a whole progress tick.
            let mut last_report = Instant::now();
            while finished.load(Ordering::Acquire) < threads {
                std::thread::sleep(Duration::from_millis(2));
                if last_report.elapsed() >= PROGRESS_TICK {
                    on_progress(progress.load(Ordering::Relaxed));
                    last_report = Instant::now();
                }
            }
            on_progress(progress.load(Ordering::Relaxed));
            stop_writer.store(true, Ordering::Relaxed);
            let results = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a client thread panicked".into())))
                .collect();
            let writer_bytes = match writer {
                Some(h) => h.join().unwrap_or_else(|_| Err("the writer thread panicked".into())),
                None => Ok(0),
            };
            (results, writer_bytes, start)
        });

    let mut merged = ThreadStats::new(start);
    let mut user_bytes_written = writer_bytes?;
    let mut last_end = start;
    for result in results {
        let (stats, written, end) = result?;
        merged.merge(&stats);
        user_bytes_written += written;
        last_end = last_end.max(end);
    }
    let lookups = bench.counts_found().then_some(merged.ops);
    let conditional = match tx {
        Some(tx) => {
            let counted = sum_counters(bench, engine, tx, cfg, CounterCodec::new(seed))?;
            check_no_lost_updates(counted, merged.ops)?;
            Some(ConditionalCounts {
                commits: merged.ops,
                conflicts: merged.conflicts,
                condition_failed: (bench == Benchmark::CasRandom)
                    .then_some(merged.condition_failed),
                retries: merged.conflicts + merged.condition_failed,
            })
        }
        None => None,
    };
    Ok(Measurement {
        stats: merged,
        elapsed: last_end - start,
        lookups,
        user_bytes_written,
        conditional,
    })
}

/// The conditional operations a conditional workload's thread was handed.
fn need<T: ?Sized>(capability: Option<&T>) -> BenchResult<&T> {
    capability.ok_or_else(|| "a workload ran without the engine capability it needs".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::memory::MemoryEngine;

    fn config(num: u64, threads: usize) -> WorkloadConfig {
        WorkloadConfig {
            num,
            threads,
            codec: KeyCodec::new(16).unwrap(),
            value_size: 100,
            batch_size: 7,
            durability: Durability::Buffered,
            compression_ratio: 0.5,
            shard_affine: false,
            hot_keys: DEFAULT_HOT_KEYS,
        }
    }

    #[test]
    fn shard_affine_writers_keep_to_their_own_shard() {
        let cfg = WorkloadConfig { shard_affine: true, ..config(3000, 3) };
        let e = MemoryEngine::sharded(3);
        let live = LiveSet::new(cfg.num);
        let m = run_one(Benchmark::FillRandom, &e, &live, &cfg);
        assert_eq!(m.stats.ops, 3000);
        let by_thread = e.shards_by_thread.lock().unwrap();
        let shards: Vec<_> = by_thread.values().cloned().collect();
        assert_eq!(shards.len(), 3, "{by_thread:?}");
        assert!(shards.iter().all(|s| s.len() == 1), "a thread wrote two shards: {by_thread:?}");
        let mut all: Vec<usize> = shards.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2]);

        // Without the flag, every thread writes every shard.
        let cfg = config(3000, 3);
        let e = MemoryEngine::sharded(3);
        run_one(Benchmark::FillRandom, &e, &LiveSet::new(cfg.num), &cfg);
        assert!(e.shards_by_thread.lock().unwrap().values().all(|s| s.len() == 3));
    }

    fn run_one(
        b: Benchmark,
        e: &MemoryEngine,
        live: &LiveSet,
        cfg: &WorkloadConfig,
    ) -> Measurement {
        // A different seed per workload, as the runner gives (readrandom must not replay the keys
        // fillrandom wrote).
        let seed = Benchmark::ALL.iter().position(|x| *x == b).unwrap() as u64;
        run(b, e, live, cfg, seed, &mut |_| {}).unwrap()
    }

    #[test]
    fn thread_shares_cover_the_range_exactly() {
        for (total, threads) in [(10, 3), (3, 5), (1000, 1), (0, 2)] {
            let mut next = 0;
            for i in 0..threads {
                let (start, count) = thread_share(total, threads, i);
                assert_eq!(start, next);
                next += count;
            }
            assert_eq!(next, total);
        }
    }

    #[test]
    fn names_round_trip() {
        for b in Benchmark::ALL {
            assert_eq!(b.name().parse::<Benchmark>().unwrap(), b);
        }
        assert!("fillsequential".parse::<Benchmark>().is_err());
    }

    #[test]
    fn live_set_counts_distinct_keys() {
        let live = LiveSet::new(130);
        for i in [0, 5, 5, 64, 129] {
            live.insert(i);
        }
        assert_eq!(live.len(), 4);
        live.remove(5);
        live.remove(5);
        live.remove(7);
        assert_eq!(live.len(), 3);
        live.clear();
        assert!(live.is_empty());
    }

    #[test]
    fn every_workload_runs_with_the_expected_outcome() {
        let num = 2_000;
        for threads in [1, 3] {
            let cfg = config(num, threads);
            let engine = MemoryEngine::default();
            let live = LiveSet::new(num);

            let m = run_one(Benchmark::FillSeq, &engine, &live, &cfg);
            assert_eq!(m.stats.ops, num);
            assert_eq!(live.len(), num);
            assert_eq!(m.user_bytes_written, num * 116);
            assert_eq!(m.stats.histogram.len(), num);

            let m = run_one(Benchmark::ReadRandom, &engine, &live, &cfg);
            assert_eq!(
                (m.stats.found, m.lookups),
                (num, Some(num)),
                "all keys exist after fillseq"
            );
            assert_eq!(m.stats.bytes, num * 116);

            let m = run_one(Benchmark::ReadMissing, &engine, &live, &cfg);
            assert_eq!((m.stats.found, m.lookups), (0, Some(num)));

            let m = run_one(Benchmark::ReadSeq, &engine, &live, &cfg);
            assert_eq!(m.stats.ops, num, "each key is read once");
            let m = run_one(Benchmark::ReadReverse, &engine, &live, &cfg);
            assert_eq!(m.stats.ops, num);

            let m = run_one(Benchmark::SeekRandom, &engine, &live, &cfg);
            assert_eq!(m.stats.found, num);
            // Each seek reads up to 11 items; only seeks near the end read fewer.
            assert!(m.stats.bytes > num * 116 * 10, "bytes {}", m.stats.bytes);

            let m = run_one(Benchmark::Overwrite, &engine, &live, &cfg);
            assert_eq!(m.stats.ops, num);
            assert_eq!(live.len(), num);

            let m = run_one(Benchmark::DeleteRandom, &engine, &live, &cfg);
            assert_eq!(m.stats.ops, num);
            let remaining = engine.scan(None, ScanDirection::Forward, &mut |_, _| true).unwrap();
            assert_eq!(live.len(), remaining, "the live set tracks the engine's contents");
            assert!(remaining < num / 2, "uniform deletes with replacement remove ~63%");

            let m = run_one(Benchmark::ReadWhileWriting, &engine, &live, &cfg);
            assert_eq!(m.stats.ops, num);
            assert!(m.user_bytes_written > 0, "the writer ran");

            live.clear();
            let fresh = MemoryEngine::default();
            let m = run_one(Benchmark::FillRandom, &fresh, &live, &cfg);
            assert_eq!(m.stats.ops, num);
            let distinct = live.len();
            assert!(distinct > num / 2 && distinct < num, "random with replacement: {distinct}");
            let m = run_one(Benchmark::ReadRandom, &fresh, &live, &cfg);
            // Random lookups (with replacement) find keys in proportion to the live fraction.
            let expected = distinct as f64;
            assert!(
                (m.stats.found as f64 - expected).abs() < expected * 0.1,
                "found {} of {num}, {distinct} live",
                m.stats.found
            );

            let fresh = MemoryEngine::default();
            live.clear();
            let m = run_one(Benchmark::FillBatch, &fresh, &live, &cfg);
            assert_eq!((m.stats.ops, live.len()), (num, num));
            let batches: u64 =
                (0..threads).map(|i| thread_share(num, threads, i).1.div_ceil(7)).sum();
            assert_eq!(m.stats.histogram.len(), batches, "one latency sample per batch");

            let m =
                run_one(Benchmark::FillSync, &MemoryEngine::default(), &LiveSet::new(num), &cfg);
            assert_eq!(m.stats.ops, 2, "fillsync writes num / 1000 keys");
        }
    }

    fn conditional(m: &Measurement) -> ConditionalCounts {
        m.conditional.expect("a conditional workload reports its counts")
    }

    #[test]
    fn conditional_workloads_commit_every_operation_and_check_the_counters() {
        let num = 1_000;
        for threads in [1, 3] {
            let cfg = config(num, threads);
            let engine = MemoryEngine::default();
            let live = LiveSet::new(num);
            // Over a fill: its values hold no counter of these runs, so they count as 0.
            run_one(Benchmark::FillRandom, &engine, &live, &cfg);
            for bench in [Benchmark::TxnRandom, Benchmark::CasRandom, Benchmark::TxnContended] {
                let m = run_one(bench, &engine, &live, &cfg);
                assert_eq!(m.stats.ops, num, "{bench}");
                assert_eq!(m.stats.histogram.len(), num, "{bench}: one latency per increment");
                let c = conditional(&m);
                assert_eq!((c.commits, c.conflicts), (num, 0), "{bench}: nothing conflicts");
                assert_eq!(c.retries, c.condition_failed.unwrap_or(0), "{bench}");
                if threads == 1 {
                    assert_eq!(c.retries, 0, "{bench}: alone, every read is still current");
                }
                assert_eq!(c.condition_failed.is_some(), bench == Benchmark::CasRandom);
                assert_eq!(m.user_bytes_written, num * 116, "{bench}: key + value per commit");
                assert!(m.lookups.is_none());
            }
            // txncontended keeps to its hot keys: their counters hold all its commits.
            let cfg = WorkloadConfig { hot_keys: 4, ..cfg };
            let m = run(Benchmark::TxnContended, &engine, &live, &cfg, 77, &mut |_| {}).unwrap();
            let counters = CounterCodec::new(77);
            let (mut key, mut value, mut per_key) = (Vec::new(), Vec::new(), Vec::new());
            for index in 0..num {
                cfg.codec.encode(index, &mut key);
                let found = engine.read_value(&key, &mut value).unwrap();
                per_key.push(counters.count(found.then_some(&value[..])));
            }
            assert!(per_key[..4].iter().all(|&n| n > 0), "{per_key:?}");
            assert!(per_key[4..].iter().all(|&n| n == 0), "only the hot keys are touched");
            assert_eq!(per_key.iter().sum::<u64>(), conditional(&m).commits);
        }
    }

    #[test]
    fn refused_attempts_are_counted_and_retried() {
        let num = 2_000;
        for threads in [1, 3] {
            let cfg = config(num, threads);
            for (bench, how) in [
                (Benchmark::TxnRandom, Attempt::Conflict),
                (Benchmark::TxnContended, Attempt::Conflict),
                (Benchmark::CasRandom, Attempt::Conflict),
                (Benchmark::CasRandom, Attempt::ConditionFailed),
            ] {
                // Every 4th attempt refused: of a attempts, a/4 fail and 3a/4 commit.
                let engine = MemoryEngine::refusing(4, how);
                let m = run_one(bench, &engine, &LiveSet::new(num), &cfg);
                let c = conditional(&m);
                let refused = c.conflicts + c.condition_failed.unwrap_or(0);
                assert_eq!(c.commits, num, "{bench} {how:?}");
                assert_eq!(c.retries, refused);
                let injected = (num + refused) / 4;
                if threads == 1 {
                    assert_eq!(refused, injected, "{bench} {how:?}: {c:?}");
                    let expected_failed = match how {
                        Attempt::ConditionFailed => refused,
                        _ => 0,
                    };
                    assert_eq!(c.condition_failed.unwrap_or(0), expected_failed, "{bench}");
                } else {
                    // Threads racing on one key add real refusals to the injected ones
                    // (a compare-and-swap whose read was overtaken).
                    assert!(refused >= injected, "{bench} {how:?}: {c:?}");
                }
            }
        }
    }

    #[test]
    fn a_lost_update_fails_the_run_loudly() {
        for bench in [Benchmark::TxnRandom, Benchmark::TxnContended, Benchmark::CasRandom] {
            let cfg = config(500, 2);
            let engine = MemoryEngine::losing_updates(100);
            let err = run(bench, &engine, &LiveSet::new(500), &cfg, 1, &mut |_| {}).err();
            let err = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                err.contains("LOST UPDATES") && err.contains("5 acknowledged"),
                "{bench}: {err}"
            );
        }
    }

    #[test]
    fn a_transaction_refused_with_a_condition_is_an_error() {
        let engine = MemoryEngine::refusing(3, Attempt::ConditionFailed);
        let cfg = config(100, 1);
        let err = run(Benchmark::TxnRandom, &engine, &LiveSet::new(100), &cfg, 1, &mut |_| {});
        assert!(err.err().is_some_and(|e| e.to_string().contains("failed one")));
    }

    #[test]
    fn a_conditional_workload_on_an_engine_without_transactions_says_unsupported() {
        let engine = MemoryEngine::without_transactions();
        let cfg = config(100, 1);
        let err = run(Benchmark::CasRandom, &engine, &LiveSet::new(100), &cfg, 1, &mut |_| {});
        let err = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("casrandom is unsupported: the test double"), "{err}");
    }

    #[test]
    fn the_same_seed_gives_every_engine_the_same_keys() {
        let cfg = config(500, 2);
        let (a, b) = (MemoryEngine::default(), MemoryEngine::default());
        let (la, lb) = (LiveSet::new(500), LiveSet::new(500));
        run_one(Benchmark::FillRandom, &a, &la, &cfg);
        run_one(Benchmark::FillRandom, &b, &lb, &cfg);
        let keys = |e: &MemoryEngine| {
            let mut keys = Vec::new();
            e.scan(None, ScanDirection::Forward, &mut |k, _| {
                keys.push(k.to_vec());
                true
            })
            .unwrap();
            keys
        };
        assert_eq!(keys(&a), keys(&b));
    }
}
