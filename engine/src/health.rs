//! [`Health`]: whether a database is open, and the first error that made it stop accepting
//! writes (the *poison*). Owned by `DbInner`; every part asks it before doing work, none
//! keeps its own flag.
//!
//! Poisoning is for errors after which no later write may be acknowledged on top of what
//! the failed one left (a failed log write or fsync, a failed flush or compaction, a panic
//! in a background job): the database turns read-only until it is reopened, and recovery
//! finds out what truly reached the disk.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use strata_core::{Error, Result};

#[derive(Default)]
pub(crate) struct Health {
    closed: AtomicBool,
    /// Mirrors `error.is_some()` so the hot path checks one atomic, not a lock.
    poisoned: AtomicBool,
    /// The first error that poisoned the database (a leaf lock).
    error: Mutex<Option<Error>>,
}

impl Health {
    /// [`Error::Closed`] once the database is closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Fails once closed, and with [`Error::Poisoned`] (wrapping the first error) once
    /// poisoned.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        match self.error() {
            Some(e) => Err(e.poisoned()),
            None => Ok(()),
        }
    }

    /// Marks the database closed; `false` if it already was.
    pub(crate) fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// The first error that poisoned the database, if any.
    pub(crate) fn error(&self) -> Option<Error> {
        if !self.is_poisoned() {
            return None;
        }
        self.error.lock().clone()
    }

    /// Records `error` as the poison unless an earlier one is already recorded (the first
    /// error is the cause; later ones are usually its consequences). An
    /// [`Error::Poisoned`] is unwrapped, so the cause is never nested twice.
    pub(crate) fn poison(&self, error: &Error) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(match error {
                Error::Poisoned(inner) => (**inner).clone(),
                e => e.clone(),
            });
        }
        self.poisoned.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::Health;
    use strata_core::Error;

    #[test]
    fn the_first_error_wins_and_is_never_nested() {
        let health = Health::default();
        assert!(health.check_writable().is_ok());
        health.poison(&Error::Closed.poisoned());
        health.poison(&Error::Busy);
        assert!(matches!(health.error(), Some(Error::Closed)));
        match health.check_writable() {
            Err(Error::Poisoned(cause)) => assert!(matches!(*cause, Error::Closed)),
            other => panic!("expected Poisoned(Closed), got {other:?}"),
        }
        assert!(health.check_open().is_ok(), "poisoned is not closed");
    }

    #[test]
    fn closing_is_reported_once() {
        let health = Health::default();
        assert!(health.close());
        assert!(!health.close());
        assert!(matches!(health.check_open(), Err(Error::Closed)));
        assert!(matches!(health.check_writable(), Err(Error::Closed)));
    }
}
