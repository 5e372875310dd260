//! A background thread that fails must fail the callers waiting for it: a panic in the flush
//! or compaction thread poisons the database with the panic's message, and a thread the OS
//! will not start fails `Db::open`.
//!
//! The panic comes from a user-supplied component that runs on those threads, the file
//! system: [`PanickingFs`] panics when the named thread creates a table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use strata::{Db, Durability, Error, Options};
use strata_core::fs::FileSystem;
use strata_core::sim::{InterceptCreate, SimFileSystem};

/// Long enough for a loaded machine; a hang (the old behaviour) never ends.
const PATIENCE: Duration = Duration::from_secs(30);

/// A simulated disk whose named thread panics when it next creates a table, once armed.
struct PanickingFs {
    armed: Arc<AtomicBool>,
    fs: Arc<dyn FileSystem>,
}

fn panicking_fs(disk: &SimFileSystem, thread: &'static str) -> PanickingFs {
    let armed = Arc::new(AtomicBool::new(false));
    let trigger = Arc::clone(&armed);
    let fs = InterceptCreate::new(Arc::new(disk.process()), move |path, inner| {
        let is_table = path.extension().is_some_and(|e| e == "sst");
        if is_table
            && std::thread::current().name() == Some(thread)
            && trigger.swap(false, Ordering::SeqCst)
        {
            panic!("injected panic creating {}", path.display());
        }
        inner.create(path)
    });
    PanickingFs { armed, fs: Arc::new(fs) }
}

/// Runs `f` on another thread and returns its result, or panics if it does not finish.
fn within_patience<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("{what} hung"))
}

fn assert_poisoned_by_panic(r: &strata::Result<()>, thread: &str) {
    match r {
        Err(Error::Poisoned(inner)) => match &**inner {
            Error::Panicked { thread: t, message } => {
                assert_eq!(*t, thread);
                assert!(message.contains("injected panic creating"), "{message}");
            }
            other => panic!("poisoned by {other:?}, not by the panic"),
        },
        other => panic!("expected Poisoned(Panicked), got {other:?}"),
    }
}

// Before, the flush thread died with the panic and nothing noticed: a writer stalled for
// room waited forever, re-checking every 50 ms, and so did `flush()` and `close()`.
#[test]
fn a_panic_in_the_flush_thread_poisons_instead_of_hanging_writers() {
    let disk = SimFileSystem::new();
    let fs = panicking_fs(&disk, "strata-flush");
    let opts = Options::default()
        .file_system(Arc::clone(&fs.fs))
        .memtable_size(4096)
        .max_immutable_memtables(1);
    let db = Db::open("/db", opts).unwrap();
    db.put("durable", "v").unwrap();
    db.flush().unwrap();
    fs.armed.store(true, Ordering::SeqCst);
    let writer = db.clone();
    // Enough writes to fill the memtable twice: the writer must stall behind the flush that
    // panics, and then be released by the poison.
    let writes = within_patience("a writer stalled behind the panicked flush", move || {
        let mut last = Ok(());
        for i in 0..10_000u32 {
            last = writer.put(i.to_be_bytes(), [0u8; 100]);
            if last.is_err() {
                break;
            }
        }
        last
    });
    assert_poisoned_by_panic(&writes, "flush");
    let flusher = db.clone();
    assert_poisoned_by_panic(&within_patience("flush()", move || flusher.flush()), "flush");
    let closer = db.clone();
    assert_poisoned_by_panic(&within_patience("close()", move || closer.close()), "flush");
    drop(db);

    let db = Db::open("/db", Options::default().file_system(Arc::new(disk.process()))).unwrap();
    assert!(db.get("durable").unwrap().is_some(), "acknowledged writes survive reopening");
}

// Before, the compaction thread died with the panic and `wait_for_compaction` waited forever
// for a compaction that would never run.
#[test]
fn a_panic_in_the_compaction_thread_poisons_instead_of_hanging_waiters() {
    let disk = SimFileSystem::new();
    let fs = panicking_fs(&disk, "strata-compact");
    fs.armed.store(true, Ordering::SeqCst);
    let opts = Options::default().file_system(Arc::clone(&fs.fs)).l0_compaction_trigger(2);
    let db = Db::open("/db", opts).unwrap();
    // Two overlapping level-0 tables: a real merge (a trivial move creates no table).
    for round in 0..2u32 {
        let mut b = strata::WriteBatch::new();
        b.put("a", round.to_be_bytes());
        b.put("b", round.to_be_bytes());
        db.write_with(b, Durability::Sync).unwrap();
        db.flush().unwrap();
    }
    let waiter = db.clone();
    let waited = within_patience("wait_for_compaction", move || waiter.wait_for_compaction());
    assert_poisoned_by_panic(&waited, "compaction");
    assert_poisoned_by_panic(&db.put("later", "v"), "compaction");
    let closer = db.clone();
    assert_poisoned_by_panic(&within_patience("close()", move || closer.close()), "compaction");
    drop(db);

    let db = Db::open("/db", Options::default().file_system(Arc::new(disk.process()))).unwrap();
    assert_eq!(db.iter().count(), 2);
}

// Before, a refused background thread panicked inside `Db::open` (`expect`), with the
// directory lock left to the unwinding.
#[test]
fn a_background_thread_that_cannot_start_fails_open() {
    let disk = SimFileSystem::new();
    let opts = || Options::default().file_system(Arc::new(disk.process()));
    // The flush thread is the first spawn of an open, the compaction thread the second:
    // refusing the second also checks that the first is stopped again.
    for nth in [1, 2] {
        strata_core::thread::fail_nth_spawn_on_this_thread(nth);
        let r = Db::open("/db", opts());
        strata_core::thread::fail_nth_spawn_on_this_thread(0);
        assert!(matches!(r, Err(Error::Io { .. })), "spawn {nth}: {r:?}");
    }
    let db = Db::open("/db", opts()).expect("the lock was released");
    db.put("k", "v").unwrap();
}

// Before, a refused periodic-sync thread was ignored: `Durability::Periodic` silently became
// `Buffered`, and writes were not synced until the next memtable switch.
#[test]
fn a_periodic_sync_thread_that_cannot_start_fails_open_and_writes() {
    let disk = SimFileSystem::new();
    let periodic = Durability::Periodic(Duration::from_millis(10));
    let opts = || Options::default().file_system(Arc::new(disk.process()));
    // The two background threads start after recovery's periodic syncer: it is the first.
    strata_core::thread::fail_nth_spawn_on_this_thread(1);
    let r = Db::open("/db", opts().durability(periodic));
    strata_core::thread::fail_nth_spawn_on_this_thread(0);
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");

    // A write asking for `Periodic` on a database opened without it starts the syncer.
    let db = Db::open("/db", opts()).unwrap();
    let mut b = strata::WriteBatch::new();
    b.put("k", "v");
    strata_core::thread::fail_nth_spawn_on_this_thread(1);
    let r = db.write_with(b.clone(), periodic);
    strata_core::thread::fail_nth_spawn_on_this_thread(0);
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert_eq!(db.get("k").unwrap(), None, "the refused write was not applied");
    db.write_with(b, periodic).unwrap();
}
