//! Bounded spinning before sleeping, for waits that are usually over in microseconds.
//!
//! A writer that waits for another thread's `write(2)` or memtable insert usually waits a
//! few microseconds. Sleeping on a condition variable costs a futex sleep and a futex wake,
//! and the sleeper reaches a CPU again only after the scheduler lets it, which can take
//! longer than the wait itself. Checking an atomic for a little while first makes most of
//! these waits end without a system call on either side. The spin is bounded in time, so a
//! wait that turns out long (an `fdatasync`, a descheduled thread) still ends in a sleep.

use std::time::{Duration, Instant};

/// How long [`spin_until`] spins by default: longer than a small `write(2)` or a batch's
/// memtable insert, short against a scheduler time slice.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Spins until `done()` returns true or `budget` has passed; returns the last `done()`.
///
/// The caller must hold no lock the awaited thread needs, and must fall back to a blocking
/// wait when this returns false.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// use strata_core::spin::spin_until;
/// let flag = AtomicBool::new(false);
/// assert!(!spin_until(Duration::from_micros(5), || flag.load(Ordering::Acquire)));
/// flag.store(true, Ordering::Release);
/// assert!(spin_until(Duration::from_micros(5), || flag.load(Ordering::Acquire)));
/// ```
pub fn spin_until(budget: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        // Reading the clock costs about as much as a few dozen pause instructions, so it
        // is read once per round.
        for _ in 0..32 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= budget {
            return done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn sees_a_store_from_another_thread() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = {
            let flag = Arc::clone(&flag);
            std::thread::spawn(move || flag.store(true, Ordering::Release))
        };
        setter.join().unwrap();
        assert!(spin_until(Duration::from_secs(5), || flag.load(Ordering::Acquire)));
    }

    #[test]
    fn gives_up_after_its_budget() {
        let start = Instant::now();
        assert!(!spin_until(Duration::from_millis(2), || false));
        assert!(start.elapsed() >= Duration::from_millis(2));
    }
}
