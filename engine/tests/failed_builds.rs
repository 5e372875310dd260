//! A flush or compaction whose table cannot be written must not leave the partial table in
//! the directory: on a full disk it would hold the space the retry after a reopen needs.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use strata::{Compression, Db, Options};
use strata_core::fs::FileSystem;
use strata_core::sim::SimFileSystem;

fn tables(disk: &SimFileSystem) -> BTreeSet<String> {
    let names = disk.list(Path::new("/db")).unwrap();
    names.into_iter().filter(|n| n.ends_with(".sst")).collect()
}

fn opts(disk: &SimFileSystem) -> Options {
    // Uncompressed, so the bytes written are the bytes put and the budget below bites
    // in the middle of the table.
    Options::default().file_system(Arc::new(disk.process())).compression(Compression::None)
}

/// Puts 64 values of 4 KiB under `prefix`: a table of about 256 KiB, several write buffers.
fn fill(db: &Db, prefix: &str) {
    for i in 0..64u32 {
        let value: Vec<u8> = (0..4096u32).map(|j| (i * 7 + j) as u8).collect();
        db.put(format!("{prefix}{i:03}"), value).unwrap();
    }
}

// Before, a flush whose table ran out of space while its entries were added dropped the
// builder without removing the file: the partial table stayed until the next open.
#[test]
fn a_flush_that_runs_out_of_space_leaves_no_partial_table() {
    let disk = SimFileSystem::new();
    let db = Db::open("/db", opts(&disk)).unwrap();
    fill(&db, "k");
    disk.set_space_budget(Some(100 << 10));
    assert!(db.flush().is_err());
    assert_eq!(tables(&disk), BTreeSet::new());
    drop(db);
    disk.set_space_budget(None);
    let db = Db::open("/db", opts(&disk)).unwrap();
    assert_eq!(db.iter().count(), 64, "the retry at reopen flushes everything");
}

// A compaction already removed its outputs when one failed; this keeps it that way.
#[test]
fn a_compaction_that_runs_out_of_space_leaves_no_partial_table() {
    let disk = SimFileSystem::new();
    let db = Db::open("/db", opts(&disk).l0_compaction_trigger(8)).unwrap();
    for round in 0..2 {
        fill(&db, if round == 0 { "a" } else { "b" });
        fill(&db, "k"); // overlapping tables: a merge, not a trivial move
        db.flush().unwrap();
    }
    let inputs = tables(&disk);
    assert_eq!(inputs.len(), 2);
    disk.set_space_budget(Some(100 << 10));
    assert!(db.compact().is_err());
    assert_eq!(tables(&disk), inputs, "only the inputs remain");
    drop(db);
    disk.set_space_budget(None);
    let db = Db::open("/db", opts(&disk)).unwrap();
    assert_eq!(db.iter().count(), 192);
}
