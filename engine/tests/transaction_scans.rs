//! Edge cases of transaction scans found by the `ops_crash` fuzz target: ranges that hold no
//! key (they panicked in `BTreeMap::range`), and scans that fail part-way (they went on
//! yielding the transaction's own writes). The corpus files `fuzz/corpus/ops_crash/found-tx-*`
//! replay the same findings through the fuzz logic.

use std::ops::Bound;
use std::sync::Arc;

use strata::{Db, Options};
use strata_core::sim::{FaultOp, SimFileSystem};

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    (dir, db)
}

#[test]
fn an_inverted_range_beside_own_writes_holds_nothing() {
    let (_dir, db) = open();
    db.put("a", "1").unwrap();
    assert_eq!(db.range("b".."a").count(), 0, "a plain scan of it yields nothing");
    let mut tx = db.transaction();
    tx.put("c", "3");
    assert_eq!(tx.range("b".."a").count(), 0);
    assert_eq!(tx.range::<&str, _>((Bound::Excluded("b"), Bound::Excluded("b"))).count(), 0);
    tx.commit().unwrap();
    assert_eq!(db.get("c").unwrap().as_deref(), Some(&b"3"[..]));
}

#[test]
fn a_commit_that_scanned_an_inverted_range_validates_it_as_empty() {
    let (_dir, db) = open();
    let mut tx = db.transaction();
    assert_eq!(tx.range("z".."y").count(), 0);
    db.put("q", "written after the snapshot").unwrap();
    tx.put("d", "4");
    // Nothing can have been written into a range that holds no key: no conflict.
    tx.commit().unwrap();
    assert_eq!(db.get("d").unwrap().as_deref(), Some(&b"4"[..]));
}

#[test]
fn a_transaction_scan_ends_at_its_first_error() {
    let fs = SimFileSystem::new();
    let db = Db::open("/db", Options::default().file_system(Arc::new(fs.process()))).unwrap();
    db.put("k03", "stored").unwrap();
    let mut tx = db.transaction();
    tx.put("k25", "own");
    db.flush().unwrap();
    // The scan opens the new table first: that read fails.
    fs.fail_nth(FaultOp::Read, 1);
    let items: Vec<_> = tx.range("k00".."k30").collect();
    let error = items.iter().position(Result::is_err).expect("the injected read error surfaces");
    assert_eq!(error + 1, items.len(), "entries after the error: {items:?}");
    fs.clear_faults();
    let keys: Vec<_> = tx.range("k00".."k30").map(|r| r.unwrap().0).collect();
    assert_eq!(keys, ["k03", "k25"]);
}
