//! Automatic splitting of hot shards ([`crate::ShardedOptions::auto_split`]): a watcher
//! thread reads the shards' write rates, and when one shard has stayed hot for a sustained
//! window, splits it with [`crate::ShardedDb::split_shard`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{metrics, ShardedDb, ShardedInner};

/// When to split a shard automatically ([`crate::ShardedOptions::auto_split`]).
///
/// A shard is *hot* when its write rate (key writes per second over the last 10 s, as in
/// [`ShardedDb::hot_shards`]) is above `factor` times the mean of all shards, or above an
/// absolute limit of writes per second; a shard hot at every check for `sustained` is split
/// (the hottest first, one at a time, and not beyond `max_shards`). After a split the
/// watch starts over, so the new shards' rates settle before anything else is split.
///
/// ```
/// use std::time::Duration;
/// use strata::AutoSplit;
/// // "shard H handles 24,000 writes/s, its safe limit is 12,000: split it"
/// let policy = AutoSplit::above_writes_per_sec(12_000.0)
///     .or_hotter_than(3.0)
///     .sustained_for(Duration::from_secs(60))
///     .max_shards(64);
/// assert_eq!(policy.sustained(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AutoSplit {
    factor: Option<f64>,
    limit: Option<f64>,
    sustained: Duration,
    check_every: Duration,
    max_shards: usize,
}

impl AutoSplit {
    fn new(factor: Option<f64>, limit: Option<f64>) -> Self {
        AutoSplit {
            factor,
            limit,
            sustained: Duration::from_secs(30),
            check_every: Duration::from_secs(1),
            max_shards: super::MAX_SHARDS,
        }
    }

    /// Hot means a write rate above `factor` times the mean of all shards.
    pub fn hotter_than(factor: f64) -> Self {
        AutoSplit::new(Some(factor), None)
    }

    /// Hot means above `writes_per_sec` key writes per second.
    pub fn above_writes_per_sec(writes_per_sec: f64) -> Self {
        AutoSplit::new(None, Some(writes_per_sec))
    }

    /// Also hot above `factor` times the mean.
    #[must_use]
    pub fn or_hotter_than(mut self, factor: f64) -> Self {
        self.factor = Some(factor);
        self
    }

    /// Also hot above `writes_per_sec`.
    #[must_use]
    pub fn or_above_writes_per_sec(mut self, writes_per_sec: f64) -> Self {
        self.limit = Some(writes_per_sec);
        self
    }

    /// How long a shard must stay hot before it is split. Default 30 s; at least the 10 s
    /// rate window is sensible, so that a burst does not split.
    #[must_use]
    pub fn sustained_for(mut self, sustained: Duration) -> Self {
        self.sustained = sustained;
        self
    }

    /// How often the watcher checks the rates. Default 1 s.
    #[must_use]
    pub fn check_every(mut self, every: Duration) -> Self {
        self.check_every = every.max(Duration::from_millis(1));
        self
    }

    /// No automatic split beyond this many shards. Default [`super::MAX_SHARDS`].
    #[must_use]
    pub fn max_shards(mut self, max: usize) -> Self {
        self.max_shards = max;
        self
    }

    /// The sustained window.
    pub fn sustained(&self) -> Duration {
        self.sustained
    }

    /// The shards hot under this policy, hottest first.
    fn hot(&self, rates: &[f64]) -> Vec<usize> {
        let mut hot: Vec<usize> = match self.factor {
            Some(f) => metrics::hot(rates, f),
            None => Vec::new(),
        };
        if let Some(limit) = self.limit {
            hot.extend((0..rates.len()).filter(|&i| rates.get(i).is_some_and(|&r| r > limit)));
        }
        hot.sort_unstable();
        hot.dedup();
        let rate = |i: &usize| rates.get(*i).copied().unwrap_or(0.0);
        hot.sort_by(|a, b| rate(b).total_cmp(&rate(a)));
        hot
    }
}

/// Starts the watcher of `db` under `policy`. It holds only a weak reference, and ends
/// when the database closes or drops.
pub(crate) fn start(db: &ShardedDb, policy: AutoSplit) {
    let weak: Weak<ShardedInner> = Arc::downgrade(&db.inner);
    let spawned = std::thread::Builder::new()
        .name("strata-autosplit".into())
        .spawn(move || watch(&weak, &policy));
    // Without the thread nothing splits automatically; the database works as before.
    drop(spawned);
}

fn watch(weak: &Weak<ShardedInner>, policy: &AutoSplit) {
    // Per shard: since when (clock time) it has been hot at every check.
    let mut hot_since: Vec<Option<Duration>> = Vec::new();
    let mut epoch_seen = None;
    loop {
        std::thread::sleep(policy.check_every);
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let db = ShardedDb { inner };
        let routing = db.routing();
        let generation = routing.layout.generation;
        if epoch_seen != Some(generation) || db.resharding().is_some_and(|r| !r.is_finished()) {
            // The shards changed (or are changing): start the watch over.
            epoch_seen = Some(generation);
            hot_since = vec![None; routing.shards.len()];
            continue;
        }
        let clock = db.inner.options.clock.as_ref();
        let now = clock.now();
        let rates: Vec<f64> = routing.shards.iter().map(|s| s.rate.rate(clock)).collect();
        let hot = policy.hot(&rates);
        for (i, since) in hot_since.iter_mut().enumerate() {
            *since = if hot.contains(&i) { Some(since.unwrap_or(now)) } else { None };
        }
        let ripe = hot.iter().copied().find(|&i| {
            hot_since
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|t| now.saturating_sub(t) >= policy.sustained)
        });
        let Some(shard) = ripe else { continue };
        if routing.shards.len() >= policy.max_shards {
            continue;
        }
        drop(routing);
        if db.split_shard(shard).is_ok() {
            db.inner.auto_splits.fetch_add(1, Ordering::Relaxed);
        }
        hot_since.clear();
        epoch_seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_by_factor_or_limit_hottest_first() {
        let p = AutoSplit::hotter_than(2.0);
        assert_eq!(p.hot(&[400.0, 100.0, 100.0, 100.0]), [0]);
        assert!(p.hot(&[200.0, 200.0, 100.0, 100.0, 100.0]).is_empty());
        let p = AutoSplit::above_writes_per_sec(150.0).or_hotter_than(2.0);
        assert_eq!(p.hot(&[160.0, 900.0, 100.0, 100.0]), [1, 0]);
        assert!(AutoSplit::hotter_than(2.0).hot(&[0.0, 0.0]).is_empty());
    }
}
