//! `Db::verify`: a full check of a live database finds damage that no read has touched yet,
//! and names the file.

use std::path::Path;
use std::sync::Arc;

use strata::{Compression, Db, Error, Options};
use strata_core::fs::FileSystem;
use strata_core::sim::SimFileSystem;

fn options(fs: &SimFileSystem) -> Options {
    Options::default()
        .file_system(Arc::new(fs.clone()))
        .block_size(256)
        .compression(Compression::None)
}

/// A database with three tables (two in level 0, one compacted into L6), 3,000 entries.
fn build(fs: &SimFileSystem) -> Db {
    let db = Db::open("/db", options(fs)).unwrap();
    for round in 0..3u32 {
        for i in 0..1000u32 {
            db.put(format!("key{:06}", i * 3 + round), format!("value {round} {i}")).unwrap();
        }
        db.flush().unwrap();
        if round == 0 {
            db.compact().unwrap();
        }
    }
    // Settled: no background job runs (or purges) while a test damages files.
    db.wait_for_compaction().unwrap();
    db
}

fn tables(fs: &SimFileSystem) -> Vec<String> {
    let mut names: Vec<_> =
        fs.list(Path::new("/db")).unwrap().into_iter().filter(|n| n.ends_with(".sst")).collect();
    names.sort();
    names
}

/// Rewrites the file `/db/name` with `damage` applied to its bytes.
fn rewrite(fs: &SimFileSystem, name: &str, damage: impl FnOnce(&mut Vec<u8>)) {
    let path = Path::new("/db").join(name);
    let mut bytes = fs.read(&path).unwrap();
    damage(&mut bytes);
    fs.overwrite(&path, bytes).unwrap();
}

fn assert_corruption_in(err: Error, name: &str) {
    match &err {
        Error::Corruption { file, .. } => {
            assert!(file.ends_with(name), "corruption names {file:?}, expected {name}: {err}")
        }
        other => panic!("expected Corruption in {name}, got {other}"),
    }
}

#[test]
fn verify_of_a_healthy_database_reads_every_table_and_entry() {
    let fs = SimFileSystem::new();
    let db = build(&fs);
    let report = db.verify().unwrap();
    assert_eq!(report.tables, 3);
    assert_eq!(report.entries, 3000);
    assert!(report.data_blocks >= 3 * 1000 * 20 / 256, "{report:?}");
    assert!(report.unreferenced_tables.is_empty());
    // Verify does not disturb the database.
    assert_eq!(db.get("key000004").unwrap().as_deref(), Some(&b"value 1 1"[..]));
}

/// A flipped byte in a data block that no read has touched: `open` checks only a table's
/// metadata blocks, so before `verify` nothing found this until a read reached that key.
#[test]
fn verify_finds_damage_in_a_block_no_read_touched() {
    let fs = SimFileSystem::new();
    let db = build(&fs);
    let victim = tables(&fs).pop().unwrap();
    rewrite(&fs, &victim, |bytes| bytes[300] ^= 0x01); // inside the second data block
    assert_corruption_in(db.verify().unwrap_err(), &victim);
}

#[test]
fn verify_finds_a_missing_table() {
    let fs = SimFileSystem::new();
    let db = build(&fs);
    let victim = tables(&fs).remove(0);
    fs.remove(&Path::new("/db").join(&victim)).unwrap();
    let err = db.verify().unwrap_err();
    assert_corruption_in(err.clone(), &victim);
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn verify_finds_a_table_of_the_wrong_size() {
    let fs = SimFileSystem::new();
    let db = build(&fs);
    let victim = tables(&fs).remove(1);
    rewrite(&fs, &victim, |bytes| bytes.push(0));
    assert_corruption_in(db.verify().unwrap_err(), &victim);
}

#[test]
fn verify_finds_a_damaged_manifest() {
    let fs = SimFileSystem::new();
    let db = build(&fs);
    let manifest =
        fs.list(Path::new("/db")).unwrap().into_iter().find(|n| n.starts_with("MANIFEST")).unwrap();
    rewrite(&fs, &manifest, |bytes| {
        let at = bytes.len() - 3;
        bytes[at] ^= 0x40;
    });
    assert_corruption_in(db.verify().unwrap_err(), &manifest);
}

#[test]
fn verify_lists_stray_tables_without_failing() {
    let fs = SimFileSystem::new();
    let db = build(&fs);
    // Number 1 is below every allocated number and never used: left by a crash, say.
    // A number above every allocated one is newer than the check and not reported.
    for name in ["000001.sst", "999999.sst"] {
        let mut f = fs.create(&Path::new("/db").join(name)).unwrap();
        f.append(b"not a table").unwrap();
    }
    assert_eq!(db.verify().unwrap().unreferenced_tables, [1]);
}

#[test]
fn sharded_verify_checks_every_shard() {
    let fs = SimFileSystem::new();
    let opts = strata::ShardedOptions::new(3).engine(options(&fs));
    let db = strata::ShardedDb::open("/sharded", opts).unwrap();
    for i in 0..3000u32 {
        db.put(format!("key{i:06}"), "value").unwrap();
    }
    db.flush().unwrap();
    db.wait_for_compaction().unwrap();
    let reports = db.verify().unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports.iter().map(|r| r.entries).sum::<u64>(), 3000);
    assert!(reports.iter().all(|r| r.tables == 1));
}
