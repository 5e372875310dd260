//! The periodic sync thread behind [`crate::Durability::Periodic`]: [`Wal::spawn_periodic_sync`]
//! starts it, dropping the returned [`PeriodicSync`] stops it. It uses only the `Wal`'s
//! public calls (`has_unsynced`, `sync`), so it adds no state to the group commit.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use strata_core::{Error, Result};

use crate::Wal;

impl Wal {
    /// Starts a background thread that syncs the log at least every `every` while it holds
    /// unsynced records ([`crate::Durability::Periodic`]). The thread holds only a weak
    /// reference; it stops when the returned handle drops, when the log is closed or dropped,
    /// or after a failed sync (which poisons the log like any other failed sync).
    ///
    /// Fails with [`Error::Io`] if the OS refuses the thread: the caller must not carry on
    /// as if the log were synced periodically.
    ///
    /// ```
    /// # use std::{path::Path, sync::Arc, time::Duration};
    /// # use strata_core::{fs::FileSystem, sim::SimFileSystem};
    /// # use strata_wal::{Wal, WalOptions};
    /// # let fs = Arc::new(SimFileSystem::new());
    /// # fs.create_dir_all(Path::new("/db")).unwrap();
    /// let wal = Wal::create(fs, "/db/000001.log", WalOptions::default())?;
    /// let syncer = wal.spawn_periodic_sync(Duration::from_millis(100))?;
    /// wal.append(b"buffered now, durable within ~100 ms", false)?;
    /// drop(syncer); // stops and joins the thread
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn spawn_periodic_sync(self: &Arc<Self>, every: Duration) -> Result<PeriodicSync> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak: Weak<Wal> = Arc::downgrade(self);
        let thread_stop = stop.clone();
        let thread = strata_core::thread::spawn("strata-wal-sync", move || {
            periodic_sync_loop(weak, every, thread_stop)
        })
        .map_err(|e| Error::io("spawn the periodic sync thread", self.path(), e))?;
        Ok(PeriodicSync { stop, thread: Some(thread) })
    }
}

fn periodic_sync_loop(wal: Weak<Wal>, every: Duration, stop: Arc<(Mutex<bool>, Condvar)>) {
    loop {
        {
            let mut stopped = stop.0.lock();
            if !*stopped {
                stop.1.wait_for(&mut stopped, every);
            }
            if *stopped {
                return;
            }
        }
        let Some(wal) = wal.upgrade() else { return };
        if wal.is_closed() || wal.poison().is_some() {
            return;
        }
        if wal.has_unsynced() && wal.sync().is_err() {
            // The failure poisoned the log; every writer will see it.
            return;
        }
    }
}

/// The background syncer of [`Wal::spawn_periodic_sync`]; dropping it stops the thread and
/// waits for it.
#[derive(Debug)]
pub struct PeriodicSync {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl PeriodicSync {
    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for PeriodicSync {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread may hold the last strong reference to the Wal for a moment; if this
            // drop runs on that very thread, joining would deadlock.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use strata_core::sim::CrashMode;

    // The group-commit tests' log on a simulated disk.
    use crate::group_commit::tests::{file_len, records, setup, synced};

    fn poll(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn periodic_sync_makes_buffered_records_durable() {
        let (fs, wal) = setup();
        let syncer = wal.spawn_periodic_sync(Duration::from_millis(10)).unwrap();
        wal.append(b"eventually durable", false).unwrap();
        assert!(poll(|| synced(&fs) == file_len(&fs)), "never synced");
        wal.append(b"again", false).unwrap();
        assert!(poll(|| synced(&fs) == file_len(&fs)), "never synced");
        assert!(syncer.is_running());
        drop(syncer); // joins
        fs.crash(CrashMode::SyncedOnly);
        assert_eq!(records(&*fs).len(), 2);
    }

    // Before, a refused thread was dropped silently: `Durability::Periodic` quietly became
    // `Buffered`, with nothing synced until the next switch.
    #[test]
    fn a_periodic_sync_thread_that_cannot_start_is_an_error() {
        let (_fs, wal) = setup();
        strata_core::thread::fail_nth_spawn_on_this_thread(1);
        let err = wal.spawn_periodic_sync(Duration::from_millis(5)).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(wal.spawn_periodic_sync(Duration::from_millis(5)).unwrap().is_running());
    }

    #[test]
    fn periodic_sync_stops_when_log_closes_or_drops() {
        let (_fs, wal) = setup();
        let syncer = wal.spawn_periodic_sync(Duration::from_millis(5)).unwrap();
        wal.close().unwrap();
        assert!(poll(|| !syncer.is_running()));
        let (_fs, wal) = setup();
        let syncer = wal.spawn_periodic_sync(Duration::from_millis(5)).unwrap();
        drop(wal);
        assert!(poll(|| !syncer.is_running()));
    }
}
