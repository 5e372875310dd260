//! [`RateLimiter`]: a token bucket bounding the bytes per second background work writes.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket shared by the threads it throttles (wrap it in an `Arc`).
///
/// Tokens (bytes) accrue at `bytes_per_second`, up to a burst of a tenth of a second's
/// worth (at least 64 KiB). [`RateLimiter::request`] takes its bytes at once, possibly
/// going into debt, and then sleeps until the debt would be repaid: callers are paced
/// without a queue, and a request larger than the burst is still granted, just paid for by
/// a longer sleep. Threads sharing the limiter share the rate.
///
/// ```
/// use strata_compaction::RateLimiter;
/// let limiter = RateLimiter::new(1 << 30);
/// limiter.request(4096); // well within the burst: returns at once
/// assert_eq!(limiter.bytes_per_second(), 1 << 30);
/// assert_eq!(limiter.total_bytes(), 4096);
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: u64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens available; negative while in debt.
    tokens: f64,
    refilled_at: Instant,
    total: u64,
}

impl RateLimiter {
    /// A limiter granting `bytes_per_second` (at least 1) on average.
    pub fn new(bytes_per_second: u64) -> Self {
        let bytes_per_second = bytes_per_second.max(1);
        let burst = (bytes_per_second as f64 / 10.0).max(64.0 * 1024.0);
        RateLimiter {
            bytes_per_second,
            burst,
            state: Mutex::new(Bucket { tokens: burst, refilled_at: Instant::now(), total: 0 }),
        }
    }

    /// The configured rate.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Bytes granted so far.
    pub fn total_bytes(&self) -> u64 {
        self.state.lock().total
    }

    /// Takes `bytes` tokens, sleeping (without holding any lock) while the bucket is in debt.
    pub fn request(&self, bytes: u64) {
        let wait = {
            let mut b = self.state.lock();
            let now = Instant::now();
            let elapsed = now.duration_since(b.refilled_at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.bytes_per_second as f64).min(self.burst);
            b.refilled_at = now;
            b.tokens -= bytes as f64;
            b.total = b.total.saturating_add(bytes);
            if b.tokens < 0.0 {
                Duration::from_secs_f64(-b.tokens / self.bytes_per_second as f64)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_burst_are_paced() {
        // 1 MiB/s, burst 104857 bytes: 5 requests of 64 KiB need ~(320 KiB - burst) / rate.
        let limiter = RateLimiter::new(1 << 20);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.request(64 << 10);
        }
        let expected = ((5.0 * 65536.0) - (1 << 20) as f64 / 10.0) / (1 << 20) as f64;
        assert!(start.elapsed().as_secs_f64() >= expected * 0.9, "{:?}", start.elapsed());
        assert_eq!(limiter.total_bytes(), 5 * (64 << 10));
    }

    #[test]
    fn shared_between_threads_the_rate_is_shared() {
        let limiter = std::sync::Arc::new(RateLimiter::new(2 << 20));
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let l = limiter.clone();
                std::thread::spawn(move || (0..4).for_each(|_| l.request(128 << 10)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // 1 MiB in total at 2 MiB/s, minus one burst (~205 KiB).
        let expected = ((1 << 20) as f64 - (2 << 20) as f64 / 10.0) / (2 << 20) as f64;
        assert!(start.elapsed().as_secs_f64() >= expected * 0.9, "{:?}", start.elapsed());
    }
}
