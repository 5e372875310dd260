//! [`Metrics`]: the write-path health of a database — what it absorbed, what it wrote, where
//! it waited — as a snapshot of counters and latency histograms.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_compaction::NUM_LEVELS;

use strata_core::stripe::Striped;

use crate::histogram::{Histogram, HistogramSummary};

/// Why a writer waited. Every stall is counted under its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StallCause {
    /// The immutable memtables waiting for flush reached `max_immutable_memtables`.
    MemtableLimit,
    /// Level 0 reached `l0_slowdown_trigger`: each write was delayed a little.
    L0Slowdown,
    /// Level 0 reached `l0_stop_trigger`: writes stopped until compaction caught up.
    L0Stop,
    /// The live logs reached `max_total_wal_size`: writes waited for a flush to retire one.
    WalLimit,
}

pub(crate) const STALL_CAUSES: [StallCause; 4] =
    [StallCause::MemtableLimit, StallCause::L0Slowdown, StallCause::L0Stop, StallCause::WalLimit];

/// What every write counts, one set per thread stripe: two writers on two cores would
/// otherwise take these lines from each other on every write.
#[derive(Default)]
pub(crate) struct WriteCounts {
    puts: AtomicU64,
    deletes: AtomicU64,
    batches: AtomicU64,
    user_bytes: AtomicU64,
}

/// Totals of [`WriteCounts`] over all stripes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriteTotals {
    pub(crate) puts: u64,
    pub(crate) deletes: u64,
    pub(crate) batches: u64,
    pub(crate) user_bytes: u64,
}

/// Live counters, updated with relaxed atomics (no lock on the write path).
pub(crate) struct MetricsRecorder {
    writes: Striped<WriteCounts>,
    pub(crate) flush_bytes: AtomicU64,
    pub(crate) ingested_files: AtomicU64,
    pub(crate) ingested_bytes: AtomicU64,
    pub(crate) stall_counts: [AtomicU64; STALL_CAUSES.len()],
    pub(crate) stall_nanos: [AtomicU64; STALL_CAUSES.len()],
    pub(crate) wal_tail_dropped_bytes: AtomicU64,
    pub(crate) wal_sealed_lost_bytes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) level_read_bytes: [AtomicU64; NUM_LEVELS],
    pub(crate) level_written_bytes: [AtomicU64; NUM_LEVELS],
    pub(crate) level_compactions: [AtomicU64; NUM_LEVELS],
    pub(crate) level_compaction_nanos: [AtomicU64; NUM_LEVELS],
    pub(crate) write_latency: Histogram,
    pub(crate) wal_sync_latency: std::sync::Arc<Histogram>,
    pub(crate) flush_duration: Histogram,
}

impl Default for MetricsRecorder {
    fn default() -> Self {
        MetricsRecorder {
            writes: Striped::default(),
            flush_bytes: AtomicU64::default(),
            ingested_files: AtomicU64::default(),
            ingested_bytes: AtomicU64::default(),
            stall_counts: Default::default(),
            stall_nanos: Default::default(),
            wal_tail_dropped_bytes: AtomicU64::default(),
            wal_sealed_lost_bytes: AtomicU64::default(),
            compactions: AtomicU64::default(),
            level_read_bytes: Default::default(),
            level_written_bytes: Default::default(),
            level_compactions: Default::default(),
            level_compaction_nanos: Default::default(),
            write_latency: Histogram::striped(),
            wal_sync_latency: Default::default(),
            flush_duration: Histogram::default(),
        }
    }
}

impl MetricsRecorder {
    /// Counts one finished write batch.
    pub(crate) fn wrote(&self, puts: u64, deletes: u64, user_bytes: u64, took: Duration) {
        let c = self.writes.mine();
        c.puts.fetch_add(puts, Ordering::Relaxed);
        c.deletes.fetch_add(deletes, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.user_bytes.fetch_add(user_bytes, Ordering::Relaxed);
        self.write_latency.record(took);
    }

    /// Counts tables added by an ingest: their keys and values as user bytes (what the
    /// user wrote, like a batch's), their files as bytes written.
    pub(crate) fn ingested(&self, files: u64, user_bytes: u64, file_bytes: u64) {
        self.writes.mine().user_bytes.fetch_add(user_bytes, Ordering::Relaxed);
        self.ingested_files.fetch_add(files, Ordering::Relaxed);
        self.ingested_bytes.fetch_add(file_bytes, Ordering::Relaxed);
    }

    pub(crate) fn write_totals(&self) -> WriteTotals {
        self.writes.iter().fold(WriteTotals::default(), |t, c| WriteTotals {
            puts: t.puts + c.puts.load(Ordering::Relaxed),
            deletes: t.deletes + c.deletes.load(Ordering::Relaxed),
            batches: t.batches + c.batches.load(Ordering::Relaxed),
            user_bytes: t.user_bytes + c.user_bytes.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn stall(&self, cause: StallCause, waited: Duration) {
        let i = STALL_CAUSES.iter().position(|c| *c == cause).unwrap_or(0);
        if let (Some(count), Some(nanos)) = (self.stall_counts.get(i), self.stall_nanos.get(i)) {
            count.fetch_add(1, Ordering::Relaxed);
            nanos.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// Per-level shape and compaction work of the tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelMetrics {
    /// Tables in the level.
    pub files: usize,
    /// Bytes of those tables.
    pub bytes: u64,
    /// How urgently the level needs compaction: size / target (L0: files / trigger);
    /// compaction runs at 1 and above.
    pub score: f64,
    /// Bytes compactions read from this level (as their input level or as the overlap of
    /// the level above).
    pub read_bytes: u64,
    /// Bytes written into this level (flushes for L0, compaction output otherwise).
    pub written_bytes: u64,
    /// Compactions whose output went to this level.
    pub compactions: u64,
    /// Time those compactions took.
    pub compaction_time: Duration,
}

/// A snapshot of a database's counters, from [`crate::Db::metrics`]. `Display` prints it as
/// a table, like RocksDB's statistics dump.
///
/// ```
/// use strata::{Db, Options};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put(b"k", b"v")?;
/// let m = db.metrics();
/// assert_eq!(m.puts, 1);
/// assert_eq!(m.user_bytes, 2);
/// println!("{m}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Keys put (in batches or alone).
    pub puts: u64,
    /// Keys deleted.
    pub deletes: u64,
    /// Write calls (each `put`, `delete` or `write` is one batch).
    pub batches: u64,
    /// Bytes of keys and values written by the user (ingested tables' included).
    pub user_bytes: u64,
    /// Bytes appended to write-ahead logs (records and framing).
    pub wal_bytes: u64,
    /// Write calls to the log (one per commit group).
    pub wal_writes: u64,
    /// `fdatasync` calls on the log.
    pub wal_syncs: u64,
    /// Bytes of torn log tails dropped at recovery (writes that were never acknowledged).
    pub wal_tail_dropped_bytes: u64,
    /// Bytes of sealed logs (durable at a memtable switch or a clean close, so acknowledged)
    /// that `RecoveryMode::PointInTime` recovery found damaged, cut short or unreadable and did
    /// not replay: lost writes. Always 0 under `Strict`, which refuses to open instead.
    pub wal_sealed_lost_bytes: u64,
    /// Memtables flushed to level-0 tables.
    pub flushes: u64,
    /// Bytes of tables written by flushes.
    pub flush_bytes: u64,
    /// Tables added by `Db::ingest`.
    pub ingested_files: u64,
    /// Bytes of those tables (written by their `TableWriter`, linked or copied in).
    pub ingested_bytes: u64,
    /// Compactions finished.
    pub compactions: u64,
    /// Stalls per cause: (cause, count, total time).
    pub stalls: Vec<(StallCause, u64, Duration)>,
    /// Bytes in the active memtable.
    pub memtable_bytes: u64,
    /// Immutable memtables waiting for flush, and their bytes.
    pub immutable_memtables: usize,
    /// Bytes in immutable memtables.
    pub immutable_bytes: u64,
    /// Shape and work of each level, L0 first.
    pub levels: Vec<LevelMetrics>,
    /// Block cache hits.
    pub block_cache_hits: u64,
    /// Block cache misses.
    pub block_cache_misses: u64,
    /// Table lookups the bloom filters answered "absent" without reading a block.
    pub bloom_saved_lookups: u64,
    /// Latency of write calls (queueing, log, memtable, publication; stalls included).
    pub write_latency: HistogramSummary,
    /// Latency of log `fdatasync` calls.
    pub wal_sync_latency: HistogramSummary,
    /// Duration of flushes.
    pub flush_duration: HistogramSummary,
    /// The highest sequence number visible to reads.
    pub last_sequence: u64,
}

impl Metrics {
    /// Total stall count over all causes.
    pub fn stall_count(&self) -> u64 {
        self.stalls.iter().map(|s| s.1).sum()
    }

    /// Total time writers spent stalled, over all causes.
    pub fn stall_time(&self) -> Duration {
        self.stalls.iter().map(|s| s.2).sum()
    }

    /// Bytes written to disk by the engine (log, flushes, compactions, ingested tables) per
    /// byte the user wrote; 0 before any write.
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes == 0 {
            return 0.0;
        }
        let compaction: u64 = self.levels.iter().skip(1).map(|l| l.written_bytes).sum();
        let written = self.wal_bytes + self.flush_bytes + compaction + self.ingested_bytes;
        written as f64 / self.user_bytes as f64
    }

    /// Bytes of all live tables.
    pub fn table_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.bytes).sum()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "writes: {} puts, {} deletes, {} batches, {:.1} MiB user data, last seq {}",
            self.puts,
            self.deletes,
            self.batches,
            mib(self.user_bytes),
            self.last_sequence
        )?;
        writeln!(
            f,
            "wal: {:.1} MiB in {} writes, {} syncs (sync {}), torn tail dropped at recovery: {} B",
            mib(self.wal_bytes),
            self.wal_writes,
            self.wal_syncs,
            self.wal_sync_latency,
            self.wal_tail_dropped_bytes
        )?;
        writeln!(
            f,
            "memtables: active {:.1} MiB, {} immutable ({:.1} MiB)",
            mib(self.memtable_bytes),
            self.immutable_memtables,
            mib(self.immutable_bytes)
        )?;
        writeln!(
            f,
            "flush: {} flushes, {:.1} MiB ({}); compactions: {}; ingested: {} tables, {:.1} MiB",
            self.flushes,
            mib(self.flush_bytes),
            self.flush_duration,
            self.compactions,
            self.ingested_files,
            mib(self.ingested_bytes)
        )?;
        write!(f, "stalls:")?;
        for (cause, n, t) in &self.stalls {
            write!(f, " {cause:?} {n} ({t:.1?})")?;
        }
        writeln!(f)?;
        writeln!(f, "write latency: {}", self.write_latency)?;
        writeln!(
            f,
            "block cache: {} hits, {} misses; bloom filter saved {} lookups",
            self.block_cache_hits, self.block_cache_misses, self.bloom_saved_lookups
        )?;
        writeln!(
            f,
            "{:<5} {:>6} {:>10} {:>6} {:>10} {:>10} {:>6} {:>6} {:>9}",
            "level",
            "files",
            "size MiB",
            "score",
            "read MiB",
            "write MiB",
            "w-amp",
            "comps",
            "comp time"
        )?;
        for (i, l) in self.levels.iter().enumerate() {
            let wamp = if i == 0 || l.read_bytes == 0 {
                0.0
            } else {
                l.written_bytes as f64 / l.read_bytes.max(1) as f64
            };
            writeln!(
                f,
                "L{:<4} {:>6} {:>10.1} {:>6.2} {:>10.1} {:>10.1} {:>6.2} {:>6} {:>9.1?}",
                i,
                l.files,
                mib(l.bytes),
                l.score,
                mib(l.read_bytes),
                mib(l.written_bytes),
                wamp,
                l.compactions,
                l.compaction_time
            )?;
        }
        write!(f, "overall write amplification: {:.2}", self.write_amplification())
    }
}
