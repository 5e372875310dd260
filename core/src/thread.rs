//! Starting strata's background threads, and what a panic in one turns into.
//!
//! Every thread strata starts (flush, compaction, periodic log sync, async write worker)
//! goes through [`spawn`], so that a thread the OS refuses is an error of the call that
//! needed it, never a panic and never a silently missing thread; and so that tests can make
//! a spawn fail ([`fail_nth_spawn_on_this_thread`]), since a real refusal needs a process
//! at its thread limit.

use std::any::Any;
use std::cell::Cell;
use std::io;
use std::thread::JoinHandle;

use crate::Error;

thread_local! {
    /// Spawns from this thread left before the injected failure; 0: none injected.
    static FAIL_IN: Cell<u64> = const { Cell::new(0) };
}

/// Starts a thread named `name` running `f`; the OS's refusal is returned, not panicked on.
///
/// ```
/// let t = strata_core::thread::spawn("strata-example", || 6 * 7)?;
/// assert_eq!(t.join().unwrap(), 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let injected = FAIL_IN.with(|n| match n.get() {
        0 => false,
        1 => {
            n.set(0);
            true
        }
        k => {
            n.set(k - 1);
            false
        }
    });
    if injected {
        return Err(io::Error::other(format!("injected failure to spawn {name}")));
    }
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}

/// Test-only fault injection: the `n`-th next [`spawn`] called from the current thread
/// fails (`n` = 1: the very next one; 0 clears it). Thread-local, so tests running in
/// parallel do not see each other's faults. Not part of the supported API.
///
/// ```
/// strata_core::thread::fail_nth_spawn_on_this_thread(1);
/// assert!(strata_core::thread::spawn("strata-example", || ()).is_err());
/// assert!(strata_core::thread::spawn("strata-example", || ()).is_ok());
/// ```
#[doc(hidden)]
pub fn fail_nth_spawn_on_this_thread(n: u64) {
    FAIL_IN.with(|c| c.set(n));
}

/// The [`Error::Panicked`] for a panic with `payload` (what `catch_unwind` returned) in the
/// thread doing `thread`'s work.
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("bad {}", 7)).unwrap_err();
/// let e = strata_core::thread::panic_error("flush", payload.as_ref());
/// assert_eq!(e.to_string(), "a panic in the flush thread: bad 7");
/// ```
pub fn panic_error(thread: &'static str, payload: &(dyn Any + Send)) -> Error {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    };
    Error::Panicked { thread, message }
}
