//! [`Background`]: the background part of a database — the flush and compaction threads'
//! bookkeeping, the condition variable everyone who waits on background work sleeps on, the
//! threads themselves, and what compactions share (one at a time, one rate limit). The
//! thread bodies are [`crate::flush`] and [`crate::compaction`]; `Db::open` starts them.
//!
//! One thread is reserved for flushes, so a flush never waits behind a long compaction.
//!
//! Every change that a sleeper may wait for — a new view (flush installed, memtable
//! switched, tables compacted), a job finished, the database poisoned or shutting down —
//! is followed by [`Background::notify`], which takes the lock before notifying: a sleeper
//! checks its condition under that lock, so the wakeup cannot slip in between its check and
//! its sleep. Waits still carry a timeout where a lost wakeup would hang a user's call.
//!
//! Locks: `compaction_lock` is taken first (it is held for a whole compaction step, through
//! the version lock and everything below it); `state` comes after the commit and version
//! locks and before the view; `threads` is a leaf.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use strata_compaction::RateLimiter;
use strata_core::Result;

/// Background-work bookkeeping, guarded by [`Background`]'s lock.
#[derive(Default)]
pub(crate) struct BgState {
    pub(crate) shutdown: bool,
    pub(crate) flush_running: bool,
    pub(crate) compaction_running: bool,
}

pub(crate) struct Background {
    state: Mutex<BgState>,
    changed: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Held for the whole of each compaction step: one compaction at a time.
    pub(crate) compaction_lock: Mutex<()>,
    pub(crate) rate_limiter: Option<RateLimiter>,
}

impl Background {
    pub(crate) fn new(rate_limiter: Option<RateLimiter>) -> Self {
        Background {
            state: Mutex::new(BgState::default()),
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            compaction_lock: Mutex::new(()),
            rate_limiter,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, BgState> {
        self.state.lock()
    }

    /// Sleeps until notified (or `timeout` passed, if given), releasing `guard` meanwhile.
    pub(crate) fn wait(&self, guard: &mut MutexGuard<'_, BgState>, timeout: Option<Duration>) {
        match timeout {
            Some(t) => {
                self.changed.wait_for(guard, t);
            }
            None => self.changed.wait(guard),
        }
    }

    /// Wakes every sleeper; see the module docs for why the lock is taken first.
    pub(crate) fn notify(&self) {
        let _state = self.state.lock();
        self.changed.notify_all();
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.state.lock().shutdown
    }

    /// Sets the compaction-running flag that `wait_for_compaction` watches.
    pub(crate) fn set_compaction_running(&self, running: bool) {
        let mut state = self.state.lock();
        state.compaction_running = running;
        self.changed.notify_all();
    }

    /// Starts a background thread named `name`; the caller makes `body` poison the database
    /// on a panic.
    pub(crate) fn spawn(
        &self,
        name: &str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = strata_core::thread::spawn(name, body)?;
        self.threads.lock().push(handle);
        Ok(())
    }

    /// Asks every thread to stop and waits for them.
    pub(crate) fn stop(&self) {
        self.state.lock().shutdown = true;
        self.changed.notify_all();
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Runs `job`, turning a panic in it into [`strata_core::Error::Panicked`]. Each background
/// job runs under this, so that a panic resets the job's bookkeeping like any other failure
/// and poisons the database: every writer, `flush` and `wait_for_compaction` waiting for
/// that thread then fails with [`strata_core::Error::Poisoned`] instead of waiting forever.
pub(crate) fn catch_panic<T>(thread: &'static str, job: impl FnOnce() -> Result<T>) -> Result<T> {
    // Unwind safety: the shared state a job touches is behind parking_lot locks (released,
    // not poisoned, by the unwind), and the caller poisons the database, so no write, flush
    // or compaction builds on whatever the half-done job left; reopening recovers.
    std::panic::catch_unwind(AssertUnwindSafe(job))
        .unwrap_or_else(|payload| Err(strata_core::thread::panic_error(thread, payload.as_ref())))
}
