//! Per-operation measurements: latency histograms, per-second throughput timelines, and the
//! median-of-repeats logic.
//!
//! Each client thread records into its own [`ThreadStats`] (no sharing on the hot path); the runner
//! merges them when the benchmark ends.

use std::time::Instant;

use hdrhistogram::Histogram;

/// Latencies are recorded in nanoseconds with 3 significant digits; the histogram grows as needed.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits is always a valid precision.
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is valid")
}

/// One client thread's measurements.
pub struct ThreadStats {
    start: Instant,
    /// Latency of each operation, nanoseconds.
    pub histogram: Histogram<u64>,
    /// Operations completed in each one-second bucket since `start`.
    pub timeline: Vec<u64>,
    /// Operations done (a batch of `n` writes counts `n`; a scanned item counts one).
    pub ops: u64,
    /// User bytes (key + value) the operations moved.
    pub bytes: u64,
    /// Lookups that found their key (reads only).
    pub found: u64,
    /// Transactional workloads: attempts refused because another commit got there first.
    pub conflicts: u64,
    /// Compare-and-swap workloads: attempts whose expected value no longer held.
    pub condition_failed: u64,
}

impl ThreadStats {
    /// Stats whose timeline buckets count from `start` (shared by all threads of a run).
    pub fn new(start: Instant) -> Self {
        ThreadStats {
            start,
            histogram: new_histogram(),
            timeline: Vec::new(),
            ops: 0,
            bytes: 0,
            found: 0,
            conflicts: 0,
            condition_failed: 0,
        }
    }

    /// Record one measured operation that began at `began`, ended at `now`, and did `ops` ops.
    pub fn record(&mut self, began: Instant, now: Instant, ops: u64, bytes: u64) {
        let nanos = u64::try_from(now.duration_since(began).as_nanos()).unwrap_or(u64::MAX);
        // `record` grows the auto-resizing histogram; it can only fail past its u64 range, where
        // saturating is the right answer (a benchmark must not fail over one absurd sample).
        if self.histogram.record(nanos.max(1)).is_err() {
            self.histogram.saturating_record(nanos.max(1));
        }
        let bucket = now.duration_since(self.start).as_secs() as usize;
        if self.timeline.len() <= bucket {
            self.timeline.resize(bucket + 1, 0);
        }
        self.timeline[bucket] += ops;
        self.ops += ops;
        self.bytes += bytes;
    }

    /// Fold another thread's stats into this one.
    pub fn merge(&mut self, other: &ThreadStats) {
        // Both histograms auto-resize, so adding cannot fail on range.
        self.histogram.add(&other.histogram).expect("auto-resizing histograms merge");
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            *mine += theirs;
        }
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.found += other.found;
        self.conflicts += other.conflicts;
        self.condition_failed += other.condition_failed;
    }
}

/// The percentiles the latency chart plots, as quantiles.
pub const CHART_QUANTILES: [f64; 6] = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

/// Latency at quantile `q` in microseconds (`q = 1.0` is the maximum).
pub fn quantile_us(histogram: &Histogram<u64>, q: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    let nanos = if q >= 1.0 { histogram.max() } else { histogram.value_at_quantile(q) };
    nanos as f64 / 1000.0
}

/// Median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

/// Median of the values that are present; `None` if none is (e.g. write-amp of a read run).
pub fn median_of_present(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.into_iter().flatten().collect();
    median(&present)
}

/// Index of the run whose `key` is the median (the lower middle for an even count): the run whose
/// timeline and latency curve the report draws.
pub fn median_index(keys: &[f64]) -> Option<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    order.get(keys.len().saturating_sub(1) / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn median_of_present_skips_missing() {
        assert_eq!(median_of_present([None, Some(2.0), Some(4.0), None]), Some(3.0));
        assert_eq!(median_of_present([None, None]), None);
    }

    #[test]
    fn median_index_picks_the_middle_run() {
        assert_eq!(median_index(&[30.0, 10.0, 20.0]), Some(2));
        assert_eq!(median_index(&[40.0, 10.0, 30.0, 20.0]), Some(3));
        assert_eq!(median_index(&[5.0]), Some(0));
        assert_eq!(median_index(&[]), None);
    }

    #[test]
    fn records_merge_across_threads() {
        let start = Instant::now();
        let mut a = ThreadStats::new(start);
        let mut b = ThreadStats::new(start);
        for i in 1..=100u64 {
            a.record(start, start + Duration::from_micros(i), 1, 10);
        }
        b.record(start, start + Duration::from_millis(1500), 3, 30);
        b.found = 2;
        (a.conflicts, b.conflicts, b.condition_failed) = (1, 4, 5);
        a.merge(&b);
        assert_eq!((a.ops, a.bytes, a.found), (103, 1030, 2));
        assert_eq!((a.conflicts, a.condition_failed), (5, 5));
        assert_eq!(a.timeline, vec![100, 3]);
        let q = |q| quantile_us(&a.histogram, q);
        assert!((q(0.5) - 51.0).abs() < 1.0, "p50 {}", q(0.5));
        assert!((q(1.0) - 1_500_000.0).abs() < 2000.0, "max {}", q(1.0));
        assert!(q(0.5) <= q(0.99) && q(0.99) <= q(0.999) && q(0.999) <= q(1.0));
    }
}
