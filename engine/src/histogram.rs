//! [`Histogram`]: a lock-free latency histogram cheap enough to record on every write.
//!
//! Buckets are log-linear: each power of two of nanoseconds is split into 8 linear
//! sub-buckets, so a reported percentile is within 12.5% of the true value. Recording is a
//! few relaxed atomic increments; no lock is taken on the write path. The histogram every
//! write records into is striped per thread ([`Histogram::striped`]): its counters would
//! otherwise be cache lines that two writers on two cores take from each other on every
//! write.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_core::stripe::{thread_stripe, CachePadded, STRIPES};

const SUB_BUCKET_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
const BUCKETS: usize = 64 * SUB_BUCKETS;

/// A concurrent histogram of durations.
pub struct Histogram {
    /// One set of counters, or one per thread stripe; a summary adds them up.
    stripes: Box<[CachePadded<Counters>]>,
}

struct Counters {
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            max_nanos: AtomicU64::new(0),
        }
    }
}

/// One set of counters: for histograms recorded rarely (syncs, flushes).
impl Default for Histogram {
    fn default() -> Self {
        Histogram { stripes: vec![CachePadded::default()].into_boxed_slice() }
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS as u64 {
        return nanos as usize;
    }
    let magnitude = 63 - nanos.leading_zeros(); // >= SUB_BUCKET_BITS
    let sub = (nanos >> (magnitude - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    ((magnitude - SUB_BUCKET_BITS + 1) as usize) * SUB_BUCKETS + sub
}

/// The largest value that falls in `bucket` (an upper bound for percentiles).
fn bucket_upper(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let magnitude = (bucket / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS - 1;
    let sub = (bucket % SUB_BUCKETS) as u64;
    let base = 1u64 << magnitude;
    let width = 1u64 << (magnitude - SUB_BUCKET_BITS);
    base.saturating_add((sub + 1) * width - 1)
}

impl Histogram {
    /// A histogram with one set of counters per thread stripe (about 4 KiB each), for one
    /// that many threads record into all the time.
    pub fn striped() -> Self {
        Histogram { stripes: (0..STRIPES).map(|_| CachePadded::default()).collect() }
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let c = &self.stripes[thread_stripe() % self.stripes.len()].0;
        if let Some(count) = c.counts.get(bucket_of(nanos)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        c.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        if c.max_nanos.load(Ordering::Relaxed) < nanos {
            c.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// A point-in-time copy for reporting.
    pub fn summary(&self) -> HistogramSummary {
        let mut counts = vec![0u64; BUCKETS];
        let (mut sum_nanos, mut max_nanos) = (0u64, 0u64);
        for stripe in self.stripes.iter() {
            for (total, c) in counts.iter_mut().zip(stripe.0.counts.iter()) {
                *total += c.load(Ordering::Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(stripe.0.sum_nanos.load(Ordering::Relaxed));
            max_nanos = max_nanos.max(stripe.0.max_nanos.load(Ordering::Relaxed));
        }
        let total: u64 = counts.iter().sum();
        let max = Duration::from_nanos(max_nanos);
        let percentile = |p: f64| -> Duration {
            if total == 0 {
                return Duration::ZERO;
            }
            let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (b, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_nanos(bucket_upper(b));
                }
            }
            max
        };
        HistogramSummary {
            count: total,
            mean: Duration::from_nanos(sum_nanos.checked_div(total).unwrap_or(0)),
            p50: percentile(50.0).min(max),
            p99: percentile(99.0).min(max),
            p999: percentile(99.9).min(max),
            max,
        }
    }
}

/// Percentiles of a latency histogram at one moment (each within 12.5% of the true value).
///
/// ```
/// let m = strata::Db::open(tempfile::tempdir()?.path(), strata::Options::default())?.metrics();
/// assert_eq!(m.write_latency.count, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSummary {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl fmt::Display for HistogramSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50={:.1?} p99={:.1?} p99.9={:.1?} max={:.1?}",
            self.count, self.p50, self.p99, self.p999, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for n in (0..100_000u64).chain([1 << 40, u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(n);
            assert!(b >= last || n > 100_000, "bucket order at {n}");
            last = b;
            assert!(b < BUCKETS);
            let upper = bucket_upper(b);
            assert!(upper >= n, "upper {upper} < {n}");
            assert!(upper as f64 <= (n as f64) * 1.125 + 1.0, "bucket of {n} too wide: {upper}");
        }
    }

    #[test]
    fn percentiles_of_uniform_samples() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        let within = |d: Duration, us: f64| {
            let got = d.as_nanos() as f64 / 1000.0;
            got >= us * 0.99 && got <= us * 1.13
        };
        assert!(within(s.p50, 500.0), "{s:?}");
        assert!(within(s.p99, 990.0), "{s:?}");
        assert_eq!(s.max, Duration::from_micros(1000));
    }

    #[test]
    fn a_striped_histogram_sums_what_every_thread_recorded() {
        let h = Histogram::striped();
        std::thread::scope(|s| {
            for t in 1..=12u64 {
                let h = &h;
                s.spawn(move || (0..100).for_each(|_| h.record(Duration::from_micros(t))));
            }
        });
        let s = h.summary();
        assert_eq!(s.count, 1200);
        assert_eq!(s.max, Duration::from_micros(12));
        assert_eq!(s.mean, Duration::from_nanos(6500)); // mean of 1..=12 µs
        let p50_us = s.p50.as_nanos() as f64 / 1000.0;
        assert!((6.0..=6.0 * 1.13).contains(&p50_us), "{s:?}");
    }
}
