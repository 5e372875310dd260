//! Per-thread stripes for state that many threads update on every write.
//!
//! A counter that every writer increments is one cache line that the cores hand back and
//! forth: each increment on one core invalidates the line in the other's cache, and the next
//! increment there waits for the line to come back. Two writers on two cores pay that on
//! every write even when they never touch the same key. Splitting such state into a few
//! stripes, each on its own cache line and picked by the calling thread, keeps each writer
//! on its own line; a reader (a metrics snapshot, rarely) adds the stripes up.
//!
//! Threads are numbered in the order they first ask, so that a handful of writer threads
//! land on distinct stripes. More threads than stripes share them, which is still correct:
//! a stripe is an ordinary atomic, only less private.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many stripes striped state has: enough for the writer threads of a typical
/// embedding on a few cores, few enough that summing them stays cheap.
pub const STRIPES: usize = 8;

/// The calling thread's stripe, in `0..STRIPES`; fixed for the thread's life.
///
/// ```
/// use strata_core::stripe::{thread_stripe, STRIPES};
/// let mine = thread_stripe();
/// assert!(mine < STRIPES);
/// assert_eq!(thread_stripe(), mine);
/// ```
pub fn thread_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

/// A value padded to its own pair of cache lines (the adjacent-line prefetcher of x86 pulls
/// lines in pairs, so 64 bytes would still let two stripes disturb each other).
///
/// ```
/// use strata_core::stripe::CachePadded;
/// let pair = [CachePadded(1u64), CachePadded(2u64)];
/// assert_eq!(std::mem::size_of_val(&pair), 256);
/// assert_eq!(pair[1].0, 2);
/// ```
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

/// One `T` per stripe, each on its own cache lines: state that many threads update at once,
/// each through [`Striped::mine`], and that a reader combines over [`Striped::iter`].
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use strata_core::stripe::Striped;
/// let writes: Striped<AtomicU64> = Striped::default();
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| (0..1000).for_each(|_| {
///             writes.mine().fetch_add(1, Ordering::Relaxed);
///         }));
///     }
/// });
/// assert_eq!(writes.iter().map(|w| w.load(Ordering::Relaxed)).sum::<u64>(), 4000);
/// ```
#[derive(Debug, Default)]
pub struct Striped<T> {
    stripes: [CachePadded<T>; STRIPES],
}

impl<T> Striped<T> {
    /// The calling thread's stripe.
    pub fn mine(&self) -> &T {
        &self.stripes[thread_stripe()].0
    }

    /// Every stripe, for a reader that adds them up.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|s| &s.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn threads_keep_their_stripe_and_spread_over_stripes() {
        let stripes: Vec<usize> = (0..STRIPES)
            .map(|_| std::thread::spawn(|| (thread_stripe(), thread_stripe())).join().unwrap())
            .map(|(a, b)| {
                assert_eq!(a, b, "a thread's stripe never changes");
                a
            })
            .collect();
        // Other tests number threads concurrently, so the stripes need not be all distinct,
        // but threads started one after another must not all share one.
        let mut distinct = stripes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 1, "{stripes:?}");
    }

    #[test]
    fn stripes_sit_on_separate_cache_line_pairs() {
        let c: Striped<AtomicU64> = Striped::default();
        let a = std::ptr::addr_of!(c.stripes[0]) as usize;
        let b = std::ptr::addr_of!(c.stripes[1]) as usize;
        assert_eq!(b - a, 128);
        assert_eq!(a % 128, 0);
    }

    #[test]
    fn counts_every_add_from_more_threads_than_stripes() {
        let c: Striped<AtomicU64> = Striped::default();
        std::thread::scope(|s| {
            for t in 0..(2 * STRIPES as u64) {
                let c = &c;
                s.spawn(move || {
                    (0..500).for_each(|_| {
                        c.mine().fetch_add(t + 1, Ordering::Relaxed);
                    })
                });
            }
        });
        let expected: u64 = (1..=2 * STRIPES as u64).map(|t| 500 * t).sum();
        assert_eq!(c.iter().map(|s| s.load(Ordering::Relaxed)).sum::<u64>(), expected);
    }
}
