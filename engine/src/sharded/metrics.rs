//! Per-shard health of a [`crate::ShardedDb`]: write rates over a sliding window (to find hot
//! shards), queue depths, and each shard's engine metrics.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::stripe::Striped;

use crate::metrics::Metrics;

/// A monotonic time source for the write-rate windows of a [`crate::ShardedDb`] (see
/// [`crate::ShardedOptions::clock`]). The system's monotonic clock is the default; tests
/// inject a [`ManualClock`] to move time without sleeping.
///
/// ```
/// use std::time::Duration;
/// use strata::testing::Clock;
///
/// /// A clock that stands still at one minute.
/// #[derive(Debug)]
/// struct Frozen;
/// impl Clock for Frozen {
///     fn now(&self) -> Duration {
///         Duration::from_secs(60)
///     }
/// }
/// assert_eq!(Frozen.now(), Frozen.now());
/// ```
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since an arbitrary fixed origin; never decreases.
    fn now(&self) -> Duration;
}

/// The real monotonic clock ([`Instant`]), the default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock { origin: Instant::now() }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to, for tests of rate windows.
///
/// ```
/// use std::time::Duration;
/// use strata::testing::{Clock, ManualClock};
/// let c = ManualClock::default();
/// c.advance(Duration::from_secs(3));
/// assert_eq!(c.now(), Duration::from_secs(3));
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// Length of the write-rate window, in one-second buckets.
pub(crate) const RATE_WINDOW_SECS: u64 = 10;

/// Writes counted per second over the last [`RATE_WINDOW_SECS`] seconds: a ring of
/// one-second buckets; a bucket from an older second is reset when reused.
///
/// Every write of every thread to the shard lands here, so a bucket is one atomic word
/// (the second in the high half, the count in the low half) updated with a
/// compare-and-swap: no lock for writers to queue on. Each thread stripe has its own ring
/// (`strata_core::stripe`), so that writers on different cores do not take the ring's cache
/// line from each other on every write; the rate adds the rings up.
#[derive(Debug)]
pub(crate) struct RateWindow {
    buckets: Striped<[AtomicU64; RATE_WINDOW_SECS as usize]>,
    created_sec: u64,
}

/// A bucket's word: `(second + 1) << 32 | count`; 0 is a bucket never used.
fn pack_bucket(sec: u64, count: u64) -> u64 {
    ((sec + 1) << 32) | count.min(u64::from(u32::MAX))
}

/// The second a used bucket counts (`None` for an unused one) and its count.
fn unpack_bucket(word: u64) -> (Option<u64>, u64) {
    ((word >> 32).checked_sub(1), word & u64::from(u32::MAX))
}

impl RateWindow {
    pub(crate) fn new(clock: &dyn Clock) -> Self {
        RateWindow { buckets: Striped::default(), created_sec: clock.now().as_secs() }
    }

    pub(crate) fn record(&self, clock: &dyn Clock, writes: u64) {
        // Seconds past 2^32 - 2 (136 years) would not fit the bucket's high half.
        let sec = clock.now().as_secs().min(u64::from(u32::MAX) - 1);
        let Some(bucket) = self.buckets.mine().get((sec % RATE_WINDOW_SECS) as usize) else {
            return;
        };
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let next = match unpack_bucket(current) {
                (Some(s), count) if s == sec => pack_bucket(sec, count.saturating_add(writes)),
                _ => pack_bucket(sec, writes),
            };
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Writes per second over the window (or over the time since creation, if shorter).
    pub(crate) fn rate(&self, clock: &dyn Clock) -> f64 {
        let now = clock.now().as_secs();
        let oldest = now.saturating_sub(RATE_WINDOW_SECS - 1);
        let total: u64 = self
            .buckets
            .iter()
            .flatten()
            .filter_map(|b| match unpack_bucket(b.load(Ordering::Relaxed)) {
                (Some(s), count) if s >= oldest && s <= now => Some(count),
                _ => None,
            })
            .sum();
        let span = (now - self.created_sec.min(now) + 1).min(RATE_WINDOW_SECS);
        total as f64 / span as f64
    }
}

/// The health of one shard, from [`crate::ShardedDb::metrics`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShardMetrics {
    /// The shard's index.
    pub shard: usize,
    /// Key writes (puts and deletes) per second routed to the shard, over the last 10 s.
    pub writes_per_sec: f64,
    /// Batches waiting in the shard's async write queue.
    pub queue_depth: usize,
    /// Bytes in the shard's active memtable.
    pub memtable_bytes: u64,
    /// Level-0 tables of the shard.
    pub l0_files: usize,
    /// Total time the shard's writers stalled.
    pub stall_time: Duration,
    /// Median and 99th percentile WAL `fdatasync` latency.
    pub wal_sync_p50: Duration,
    /// See `wal_sync_p50`.
    pub wal_sync_p99: Duration,
    /// Median and 99th percentile flush duration.
    pub flush_p50: Duration,
    /// See `flush_p50`.
    pub flush_p99: Duration,
    /// Every engine metric of the shard.
    pub engine: Metrics,
}

impl ShardMetrics {
    pub(crate) fn new(
        shard: usize,
        writes_per_sec: f64,
        queue_depth: usize,
        engine: Metrics,
    ) -> Self {
        ShardMetrics {
            shard,
            writes_per_sec,
            queue_depth,
            memtable_bytes: engine.memtable_bytes,
            l0_files: engine.levels.first().map_or(0, |l| l.files),
            stall_time: engine.stall_time(),
            wal_sync_p50: engine.wal_sync_latency.p50,
            wal_sync_p99: engine.wal_sync_latency.p99,
            flush_p50: engine.flush_duration.p50,
            flush_p99: engine.flush_duration.p99,
            engine,
        }
    }
}

/// Per-shard metrics of a [`crate::ShardedDb`]; `Display` prints one row per shard.
///
/// ```
/// use strata::{ShardedDb, ShardedOptions};
/// let dir = tempfile::tempdir()?;
/// let db = ShardedDb::open(dir.path(), ShardedOptions::new(2))?;
/// db.put("k", "v")?;
/// let m = db.metrics();
/// assert_eq!(m.shards.len(), 2);
/// assert_eq!(m.shards.iter().map(|s| s.engine.puts).sum::<u64>(), 1);
/// println!("{m}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShardedMetrics {
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardMetrics>,
    /// Shards split automatically ([`crate::ShardedOptions::auto_split`]) since open.
    pub auto_splits: u64,
}

impl ShardedMetrics {
    /// The shards whose write rate exceeds `factor` times the mean rate (none when idle).
    pub fn hot_shards(&self, factor: f64) -> Vec<usize> {
        hot(&self.shards.iter().map(|s| s.writes_per_sec).collect::<Vec<_>>(), factor)
    }
}

pub(crate) fn hot(rates: &[f64], factor: f64) -> Vec<usize> {
    if rates.is_empty() {
        return Vec::new();
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    if mean <= 0.0 {
        return Vec::new();
    }
    rates.iter().enumerate().filter(|(_, r)| **r > factor * mean).map(|(i, _)| i).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for ShardedMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>5} {:>10} {:>6} {:>10} {:>4} {:>9} {:>16} {:>16}",
            "shard",
            "writes/s",
            "queue",
            "mem MiB",
            "L0",
            "stall ms",
            "wal sync p50/99",
            "flush p50/99 ms"
        )?;
        for s in &self.shards {
            writeln!(
                f,
                "{:>5} {:>10.1} {:>6} {:>10.2} {:>4} {:>9.1} {:>7.3}/{:<8.3} {:>7.1}/{:<8.1}",
                s.shard,
                s.writes_per_sec,
                s.queue_depth,
                s.memtable_bytes as f64 / (1024.0 * 1024.0),
                s.l0_files,
                ms(s.stall_time),
                ms(s.wal_sync_p50),
                ms(s.wal_sync_p99),
                ms(s.flush_p50),
                ms(s.flush_p99),
            )?;
        }
        Ok(())
    }
}

/// The default clock, shared.
pub(crate) fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_writes_older_than_ten_seconds() {
        let clock = ManualClock::default();
        let w = RateWindow::new(&clock);
        w.record(&clock, 100);
        assert_eq!(w.rate(&clock), 100.0); // one second of history so far
        clock.advance(Duration::from_secs(9));
        w.record(&clock, 100);
        assert_eq!(w.rate(&clock), 20.0); // 200 writes over 10 s
        clock.advance(Duration::from_secs(1));
        assert_eq!(w.rate(&clock), 10.0); // the first second left the window
        clock.advance(Duration::from_secs(30));
        assert_eq!(w.rate(&clock), 0.0);
    }

    #[test]
    fn concurrent_records_lose_no_count_and_reused_buckets_restart() {
        let clock = ManualClock::default();
        let w = RateWindow::new(&clock);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..10_000).for_each(|_| w.record(&clock, 1)));
            }
        });
        assert_eq!(w.rate(&clock), 40_000.0);
        // Second 10 reuses second 0's bucket: it counts afresh, it does not add.
        clock.advance(Duration::from_secs(10));
        w.record(&clock, 5);
        assert_eq!(w.rate(&clock), 0.5); // 5 writes over the 10-second window
    }

    #[test]
    fn hot_means_above_factor_times_mean() {
        assert_eq!(hot(&[10.0, 10.0, 10.0, 100.0], 2.0), [3]);
        assert!(hot(&[10.0, 11.0, 9.0, 10.0], 1.5).is_empty());
        assert!(hot(&[0.0, 0.0], 2.0).is_empty());
    }
}
