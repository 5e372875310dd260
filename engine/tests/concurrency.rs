//! Many writers and readers at once: readers never see part of a batch, a thread's writes
//! never appear out of order, and the visible sequence number never goes backwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use strata::{Db, Durability, Options, WriteBatch};

const WRITERS: u32 = 6;
const BATCHES: u32 = 400;

fn counter(v: &[u8]) -> u32 {
    u32::from_be_bytes(v.try_into().expect("4-byte value"))
}

#[test]
fn readers_never_see_torn_batches() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .memtable_size(32 << 10)
        .l0_slowdown_trigger(10_000)
        .l0_stop_trigger(10_000);
    let db = Db::open(dir.path(), opts).unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let db = db.clone();
            thread::spawn(move || {
                for i in 1..=BATCHES {
                    // Each batch sets both keys of the thread to the same counter.
                    let mut b = WriteBatch::new();
                    b.put(format!("a/{t}"), i.to_be_bytes());
                    b.put(format!("b/{t}"), i.to_be_bytes());
                    let durability =
                        if i % 50 == 0 { Durability::Sync } else { Durability::Buffered };
                    db.write_with(b, durability).unwrap();
                }
            })
        })
        .collect();

    let readers: Vec<_> = (0..3)
        .map(|_| {
            let db = db.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut last_seq = 0;
                let mut last_seen = vec![0u32; WRITERS as usize];
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) || rounds < 10 {
                    rounds += 1;
                    let seq = db.metrics().last_sequence;
                    assert!(seq >= last_seq, "visible sequence went backwards");
                    last_seq = seq;
                    // A scan reads one state: both keys of a thread agree.
                    let entries: Vec<_> = db.iter().map(|r| r.unwrap()).collect();
                    for t in 0..WRITERS {
                        let a = entries.iter().find(|(k, _)| k[..] == *format!("a/{t}").as_bytes());
                        let b = entries.iter().find(|(k, _)| k[..] == *format!("b/{t}").as_bytes());
                        match (a, b) {
                            (Some(a), Some(b)) => {
                                assert_eq!(a.1, b.1, "torn batch seen by a scan");
                                let c = counter(&a.1);
                                assert!(
                                    c >= last_seen[t as usize],
                                    "writes of one thread went backwards"
                                );
                                last_seen[t as usize] = c;
                            }
                            (None, None) => {}
                            _ => panic!("half a batch visible to a scan"),
                        }
                    }
                    // A snapshot reads one state too.
                    let snap = db.snapshot();
                    for t in 0..WRITERS {
                        let a = snap.get(format!("a/{t}")).unwrap();
                        let b = snap.get(format!("b/{t}")).unwrap();
                        assert_eq!(a, b, "torn batch seen through a snapshot");
                    }
                }
            })
        })
        .collect();

    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    for t in 0..WRITERS {
        assert_eq!(counter(&db.get(format!("a/{t}")).unwrap().unwrap()), BATCHES);
    }
    let m = db.metrics();
    assert_eq!(m.batches, u64::from(WRITERS * BATCHES));
    assert!(m.flushes > 0, "{m}");
}

#[test]
fn a_second_process_gets_locked() {
    // The child half: opened by the parent below with the directory in an env var.
    if let Ok(dir) = std::env::var("STRATA_LOCK_TEST_DIR") {
        match Db::open(&dir, Options::default()) {
            Err(strata::Error::Locked(_)) => std::process::exit(42),
            other => {
                eprintln!("expected Error::Locked, got {other:?}");
                std::process::exit(1);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let _db = Db::open(dir.path(), Options::default()).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_second_process_gets_locked", "--nocapture", "--test-threads=1"])
        .env("STRATA_LOCK_TEST_DIR", dir.path())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(42), "the child process must see Error::Locked");
}
