//! `WriteOptions::no_wait`: a write that would wait for backpressure fails with
//! `Error::Busy` instead, having logged and applied nothing — a synchronous write stalled by
//! a full set of memtables or by level 0, an asynchronous one by a full submission queue —
//! while the same write without `no_wait` waits and then succeeds.
//!
//! The stalls are made deterministic by [`GatedFs`]: table files cannot be created while
//! its gate is closed, so flushes and compactions stand still until the test opens it.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use strata::fs::FileSystem;
use strata::{Db, Durability, Error, Options, WriteBatch, WriteOptions};
use strata_core::sim::{InterceptCreate, SimFileSystem};

/// Long enough for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A simulated disk on which only `allowed` more table files may be created; the next
/// creation blocks until [`GatedFs::open`].
struct GatedFs {
    gate: Arc<Gate>,
    fs: Arc<dyn FileSystem>,
}

struct Gate {
    allowed: Mutex<Option<usize>>,
    opened: Condvar,
}

impl Gate {
    /// Waits until this table creation may go ahead.
    fn pass(&self) {
        let mut allowed = self.allowed.lock();
        loop {
            match allowed.as_mut() {
                None => return,
                Some(0) => self.opened.wait(&mut allowed),
                Some(n) => {
                    *n -= 1;
                    return;
                }
            }
        }
    }
}

impl GatedFs {
    fn new(disk: &SimFileSystem, allowed_tables: usize) -> Arc<GatedFs> {
        let gate =
            Arc::new(Gate { allowed: Mutex::new(Some(allowed_tables)), opened: Condvar::new() });
        let held = Arc::clone(&gate);
        let fs = InterceptCreate::new(Arc::new(disk.process()), move |path, inner| {
            if path.extension().is_some_and(|e| e == "sst") {
                held.pass();
            }
            inner.create(path)
        });
        Arc::new(GatedFs { gate, fs: Arc::new(fs) })
    }

    /// Lets every table creation through from now on.
    fn open(&self) {
        *self.gate.allowed.lock() = None;
        self.gate.opened.notify_all();
    }
}

fn no_wait() -> WriteOptions {
    WriteOptions::default().no_wait(true)
}

fn batch(key: &str) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(key, [7u8; 100]);
    b
}

/// Small memtables, one of which may wait for flush: the second full one stalls writers.
fn memtable_limited(fs: &Arc<GatedFs>) -> Options {
    Options::default()
        .file_system(Arc::clone(&fs.fs))
        .memtable_size(4096)
        .max_immutable_memtables(1)
        .write_queue_depth(1)
}

/// Runs `f` on another thread; the receiver gets its result.
fn in_background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// `f`'s result, or a failure (not a hung test) if it waits: no-wait calls never block.
fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_background(f).recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("{what} blocked"))
}

/// Writes `fill/N` keys with `no_wait` until one is refused; returns its key.
fn fill_until_busy(db: &Db) -> String {
    let db = db.clone();
    promptly("a no-wait write", move || {
        for i in 0..10_000 {
            let key = format!("fill/{i:05}");
            match db.write_with(batch(&key), no_wait()) {
                Ok(()) => {}
                Err(Error::Busy) => return key,
                Err(e) => panic!("{key}: {e}"),
            }
        }
        panic!("the memtables never filled");
    })
}

#[test]
fn a_write_stalled_by_full_memtables_is_busy_with_no_wait_and_waits_without() {
    let disk = SimFileSystem::new();
    let fs = GatedFs::new(&disk, 0); // no flush can finish
    let db = Db::open("/db", memtable_limited(&fs)).unwrap();
    let refused = fill_until_busy(&db);
    let before = db.metrics();
    // Every no-wait entry point is refused the same way, and none logs or applies anything.
    assert!(matches!(db.put_with("busy/put", "v", no_wait()), Err(Error::Busy)));
    assert!(matches!(db.delete_with("fill/00000", no_wait()), Err(Error::Busy)));
    let sync_no_wait = WriteOptions::from(Durability::Sync).no_wait(true);
    assert!(matches!(db.write_with(batch("busy/sync"), sync_no_wait), Err(Error::Busy)));
    let after = db.metrics();
    assert_eq!(after.wal_bytes, before.wal_bytes, "a refused write logged something");
    assert_eq!((after.puts, after.deletes), (before.puts, before.deletes));
    assert_eq!(after.last_sequence, before.last_sequence, "a refused write took a sequence");
    assert!(db.get(&refused).unwrap().is_none());
    assert!(db.get("fill/00000").unwrap().is_some());

    // The same write without no_wait waits for the flush the gate holds back...
    let waiting = {
        let db = db.clone();
        in_background(move || db.put("waited", "v"))
    };
    assert!(
        waiting.recv_timeout(Duration::from_millis(200)).is_err(),
        "a write went through while no memtable could be flushed"
    );
    // ... and succeeds once it can.
    fs.open();
    waiting.recv_timeout(PATIENCE).expect("the stalled write never resumed").unwrap();
    db.put_with("after", "v", no_wait()).unwrap();
    db.close().unwrap();

    let db = Db::open("/db", Options::default().file_system(Arc::new(disk.process()))).unwrap();
    assert!(db.get(&refused).unwrap().is_none(), "a refused write was recovered");
    assert!(db.get("busy/sync").unwrap().is_none());
    assert!(db.get("fill/00000").unwrap().is_some(), "the refused delete was applied");
    assert!(db.get("waited").unwrap().is_some());
    assert!(db.get("after").unwrap().is_some());
}

#[test]
fn a_write_slowed_or_stopped_by_level_0_is_busy_with_no_wait() {
    let disk = SimFileSystem::new();
    // Two flushes may write their tables; the compaction that would merge them may not.
    let fs = GatedFs::new(&disk, 2);
    let opts = Options::default()
        .file_system(Arc::clone(&fs.fs))
        .l0_compaction_trigger(2)
        .l0_slowdown_trigger(2)
        .l0_stop_trigger(2);
    let db = Db::open("/db", opts).unwrap();
    // Two overlapping level-0 tables: their compaction must write (no trivial move).
    for round in ["1", "2"] {
        db.put("a", round).unwrap();
        db.put("z", round).unwrap();
        db.flush().unwrap();
    }
    assert_eq!(db.metrics().levels[0].files, 2);
    let before = db.metrics();
    let (put, write) = {
        let db = db.clone();
        promptly("a no-wait write", move || {
            (db.put_with("k", "v", no_wait()), db.write_with(batch("b"), no_wait()))
        })
    };
    assert!(matches!(put, Err(Error::Busy)), "{put:?}");
    assert!(matches!(write, Err(Error::Busy)), "{write:?}");
    let after = db.metrics();
    assert_eq!(after.wal_bytes, before.wal_bytes, "a refused write logged something");
    assert_eq!(after.last_sequence, before.last_sequence);
    assert!(db.get("k").unwrap().is_none());

    // Without no_wait the write stops at the stop trigger until compaction catches up.
    let waiting = {
        let db = db.clone();
        in_background(move || db.put("k", "waited"))
    };
    assert!(
        waiting.recv_timeout(Duration::from_millis(200)).is_err(),
        "a write went through at the level-0 stop trigger"
    );
    fs.open();
    waiting.recv_timeout(PATIENCE).expect("the stopped write never resumed").unwrap();
    db.wait_for_compaction().unwrap();
    db.put_with("after", "v", no_wait()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"waited"[..]));
}

#[test]
fn a_no_wait_async_write_is_busy_on_a_full_queue_at_once_and_on_a_stall_through_its_ticket() {
    let disk = SimFileSystem::new();
    let fs = GatedFs::new(&disk, 0);
    let db = Db::open("/db", memtable_limited(&fs)).unwrap();
    fill_until_busy(&db);

    // The queue has room, the engine is stalled: the worker's write is refused, and the
    // ticket says so.
    let stalled = db.write_async_with(batch("async/stalled"), no_wait());
    let r = promptly("a no-wait async write", move || stalled.wait());
    assert!(matches!(r, Err(Error::Busy)), "{r:?}");

    // A waiting submission occupies the worker (stalled), the next one the queue's only
    // slot: a no-wait submission now finds the queue full and is resolved before it returns.
    let first = db.write_async(batch("async/first"));
    let second = db.write_async(batch("async/second")); // waits until the worker takes `first`
    let full = db.write_async_with(batch("async/refused"), no_wait());
    assert!(full.is_done(), "a no-wait submission blocked");
    assert!(matches!(full.wait(), Err(Error::Busy)));
    assert!(!first.is_done() && !second.is_done());
    assert_eq!(db.async_queue_len(), 1);

    fs.open();
    first.wait().unwrap();
    second.wait().unwrap();
    db.write_async_with(batch("async/after"), no_wait()).wait().unwrap();
    for (key, present) in [
        ("async/stalled", false),
        ("async/first", true),
        ("async/second", true),
        ("async/refused", false),
        ("async/after", true),
    ] {
        assert_eq!(db.get(key).unwrap().is_some(), present, "{key}");
    }
}
