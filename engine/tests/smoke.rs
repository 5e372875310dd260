//! Basic behaviour of the public API on a real directory.

use strata::{Db, Durability, Error, Options, WriteBatch};

#[test]
fn put_get_delete_flush_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        for i in 0..1000u32 {
            db.put(format!("key{i:05}"), format!("value{i}")).unwrap();
        }
        db.delete("key00007").unwrap();
        db.flush().unwrap();
        db.put("after-flush", "x").unwrap();
        assert_eq!(db.get("key00042").unwrap().as_deref(), Some(&b"value42"[..]));
        assert!(db.get("key00007").unwrap().is_none());
        assert_eq!(db.iter().count(), 1000);
        assert_eq!(db.metrics().flushes, 1);
        db.close().unwrap();
        assert!(matches!(db.put("x", "y"), Err(Error::Closed)));
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("key00999").unwrap().as_deref(), Some(&b"value999"[..]));
    assert_eq!(db.get("after-flush").unwrap().as_deref(), Some(&b"x"[..]));
    assert!(db.get("key00007").unwrap().is_none());
    let rev: Vec<_> = db.range("key00010".."key00013").rev().map(|r| r.unwrap().0).collect();
    assert_eq!(rev, ["key00012", "key00011", "key00010"]);
}

#[test]
fn small_memtables_flush_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        Options::default().memtable_size(64 << 10).l0_slowdown_trigger(1000).l0_stop_trigger(1000);
    let db = Db::open(dir.path(), opts).unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..20_000u32 {
        batch.put(i.to_be_bytes(), [7u8; 100]);
        if batch.len() == 100 {
            db.write(std::mem::take(&mut batch)).unwrap();
        }
    }
    db.flush().unwrap();
    let m = db.metrics();
    assert!(m.flushes > 5, "{m}");
    assert_eq!(db.iter().count(), 20_000);
    assert_eq!(db.iter().rev().count(), 20_000);
    assert_eq!(db.get(12_345u32.to_be_bytes()).unwrap().as_deref(), Some(&[7u8; 100][..]));
    println!("{m}");
}

#[test]
fn oversized_keys_and_values_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let big_key = vec![0u8; strata::MAX_KEY_SIZE + 1];
    assert!(matches!(db.put(&big_key, "v"), Err(Error::InvalidArgument(_))));
    db.put(vec![1u8; strata::MAX_KEY_SIZE], "v").unwrap();
}

#[test]
fn unlogged_writes_survive_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default().durability(Durability::None)).unwrap();
        db.put("k", "v").unwrap();
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}
