//! What recovery refuses and what it still tolerates, on the simulated disk:
//! * a directory that lost `CURRENT` is not a new database;
//! * a manifest whose dropped "torn" tail the rest of the directory proves was synced;
//! * a cleanly closed (sealed) log that is damaged, cut short or deleted.
//!
//! And, on the other side, the torn tails a real crash leaves, which must still open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::{Db, Durability, Error, Options, WriteBatch};
use strata_core::fs::FileSystem;
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};
use strata_wal::{LogReader, RecoveryMode};

fn options(fs: &SimFileSystem, mode: RecoveryMode) -> Options {
    Options::default()
        .file_system(Arc::new(fs.process()))
        .memtable_size(64 << 10)
        .recovery_mode(mode)
}

fn open(fs: &SimFileSystem) -> strata::Result<Db> {
    Db::open("/db", options(fs, RecoveryMode::Strict))
}

fn key(i: u32) -> String {
    format!("key{i:05}")
}

/// Writes keys `from..to` as synced batches of 10.
fn fill(db: &Db, from: u32, to: u32) {
    for start in (from..to).step_by(10) {
        let mut b = WriteBatch::new();
        for i in start..(start + 10).min(to) {
            b.put(key(i), format!("value {i} {}", "v".repeat(40)));
        }
        db.write_with(b, Durability::Sync).unwrap();
    }
}

fn count_present(db: &Db, to: u32) -> u32 {
    (0..to).filter(|&i| db.get(key(i)).unwrap().is_some()).count() as u32
}

fn files_of_kind(fs: &SimFileSystem, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs
        .files()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if ext == "MANIFEST" {
                name.starts_with("MANIFEST-")
            } else {
                p.extension().is_some_and(|e| e == ext)
            }
        })
        .collect();
    v.sort();
    v
}

fn snapshot(fs: &SimFileSystem) -> Vec<(PathBuf, Vec<u8>)> {
    fs.files().into_iter().map(|p| (p.clone(), fs.read(&p).unwrap())).collect()
}

fn assert_corruption_naming(result: strata::Result<Db>, name: &str) -> String {
    match result {
        Err(Error::Corruption { file, reason, .. }) => {
            assert!(
                file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(name)),
                "corruption names {} ({reason}), expected {name}",
                file.display()
            );
            reason
        }
        Err(other) => panic!("expected corruption naming {name}, got {other}"),
        Ok(_) => panic!("expected corruption naming {name}, but the database opened"),
    }
}

/// A closed database: 3,000 keys flushed to tables (some compacted), 500 more in its log.
fn closed_database() -> SimFileSystem {
    let fs = SimFileSystem::new();
    let db = open(&fs).unwrap();
    for round in 0..3 {
        fill(&db, round * 1000, round * 1000 + 1000);
        db.flush().unwrap();
    }
    fill(&db, 3000, 3500);
    db.close().unwrap();
    fs
}

/// Offsets of the records of a log file.
fn record_offsets(fs: &SimFileSystem, path: &Path) -> Vec<u64> {
    let mut r = LogReader::open(fs, path, RecoveryMode::Strict).unwrap();
    let mut offsets = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        offsets.push(rec.offset);
    }
    offsets
}

// ---- 2. A missing CURRENT --------------------------------------------------------------

// Before the fix: the directory was taken for a new one; 500 logged keys came back and the
// purge deleted every table and the old manifest.
#[test]
fn missing_current_is_corruption_and_deletes_nothing() {
    let fs = closed_database();
    let current = fs.read(Path::new("/db/CURRENT")).unwrap();
    fs.remove(Path::new("/db/CURRENT")).unwrap();
    let before = snapshot(&fs);
    let reason = assert_corruption_naming(open(&fs), "CURRENT");
    assert!(reason.contains("CURRENT is missing"), "{reason}");
    assert_eq!(snapshot(&fs), before, "a refused open must not touch a file");
    // Put back, everything is there.
    let mut f = fs.create(Path::new("/db/CURRENT")).unwrap();
    f.append(&current).unwrap();
    drop(f);
    let db = open(&fs).unwrap();
    assert_eq!(count_present(&db, 3500), 3500);
}

/// The legitimate CURRENT-less directory: a crash during the very first open, after its log
/// and manifest were created but before CURRENT was. It must open as a new database, and
/// files strata does not recognise are left alone.
#[test]
fn crash_during_the_first_open_still_opens_as_a_new_database() {
    for fail_rename in [true, false] {
        let fs = SimFileSystem::new();
        fs.create_dir_all(Path::new("/db")).unwrap();
        let mut notes = fs.create(Path::new("/db/notes.txt")).unwrap();
        notes.append(b"operator notes").unwrap();
        notes.sync_data().unwrap();
        drop(notes);
        fs.sync_dir(Path::new("/db")).unwrap();
        if fail_rename {
            fs.fail_nth(FaultOp::Rename, 1);
        } else {
            // The manifest's first record is never synced: it is torn.
            fs.fail_nth(FaultOp::Sync, 3);
        }
        assert!(open(&fs).is_err());
        fs.crash(CrashMode::TornTail { seed: 7 });
        fs.clear_faults();
        assert!(!fs.exists(Path::new("/db/CURRENT")).unwrap());
        let db = open(&fs).unwrap_or_else(|e| panic!("fail_rename {fail_rename}: {e}"));
        db.put("k", "v").unwrap();
        db.close().unwrap();
        let db = open(&fs).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(fs.read(Path::new("/db/notes.txt")).unwrap(), b"operator notes");
    }
}

// ---- 3. A truncated MANIFEST -----------------------------------------------------------

/// A database that crashed right after flushes (no clean close): the manifest's last record
/// is the last flush's edit, and the logs that flush covered are deleted.
/// With `compact`, the rounds overwrite one key range and a manual compaction merges them
/// (and moves the result down level by level).
fn crashed_after_flush(compact: bool) -> SimFileSystem {
    let fs = SimFileSystem::new();
    // No automatic compaction: its trivial moves would come last (dropping one loses
    // nothing, and recovery rightly accepts that).
    let opts = options(&fs, RecoveryMode::Strict)
        .l0_compaction_trigger(100)
        .l0_slowdown_trigger(100)
        .l0_stop_trigger(100);
    let db = Db::open("/db", opts).unwrap();
    for round in 0..4 {
        let from = if compact { 0 } else { round * 1000 };
        fill(&db, from, from + 1000);
        db.flush().unwrap();
    }
    if compact {
        db.compact().unwrap();
    }
    db.wait_for_compaction().unwrap();
    // The purge's removals reach the disk with the next directory fsync (any file creation);
    // without one the crash would bring the deleted logs back.
    fs.sync_dir(Path::new("/db")).unwrap();
    fs.crash(CrashMode::SyncedOnly);
    drop(db);
    fs
}

// Before the fix: the last (synced) flush edit was dropped as a torn write, the older state
// was recovered without the last table, and the purge deleted that table (1,000 keys lost).
#[test]
fn truncated_manifest_with_deleted_log_is_corruption() {
    for cut_to_half in [false, true] {
        let fs = crashed_after_flush(false);
        let manifest = files_of_kind(&fs, "MANIFEST").pop().unwrap();
        let bytes = fs.read(&manifest).unwrap();
        let keep = if cut_to_half { bytes.len() / 2 } else { bytes.len() - 1 };
        fs.overwrite(&manifest, bytes[..keep].to_vec()).unwrap();
        let before = snapshot(&fs);
        let reason = assert_corruption_naming(open(&fs), "MANIFEST-");
        assert!(reason.contains("dropped as a torn write"), "{reason}");
        assert_eq!(snapshot(&fs), before, "a refused open must not touch a file");
        // With the manifest restored, nothing was lost.
        fs.overwrite(&manifest, bytes).unwrap();
        assert_eq!(count_present(&open(&fs).unwrap(), 4000), 4000);
    }
}

// Before the fix: the manifest cut inside the edit of the merge (and the moves after it)
// recovered the state before the merge, whose inputs had been deleted: the open succeeded
// and every read of those tables failed.
#[test]
fn truncated_manifest_after_compaction_is_corruption() {
    let fs = crashed_after_flush(true);
    let manifest = files_of_kind(&fs, "MANIFEST").pop().unwrap();
    let bytes = fs.read(&manifest).unwrap();
    let merge_at = {
        let mut r = LogReader::open(&fs, &manifest, RecoveryMode::Strict).unwrap();
        let mut found = None;
        while let Some(rec) = r.next_record().unwrap() {
            let edit = strata_compaction::VersionEdit::decode(rec.payload);
            if edit.is_ok_and(|e| e.deleted_files.len() > 1) {
                found = Some(rec.offset as usize);
                break;
            }
        }
        found.expect("a merge of the level-0 tables")
    };
    fs.overwrite(&manifest, bytes[..merge_at + 10].to_vec()).unwrap();
    let before = snapshot(&fs);
    assert_corruption_naming(open(&fs), "MANIFEST-");
    assert_eq!(snapshot(&fs), before);
}

/// The legitimate torn manifest tail: a flush's table is synced, its edit is written but the
/// power fails before the edit's sync, so the record is torn. The table exists unnamed, and
/// the log it came from still exists and covers it: recovery must open with every write.
#[test]
fn torn_flush_edit_with_its_log_present_still_recovers() {
    for cut in [1, 5, 20] {
        let fs = SimFileSystem::new();
        // One memtable holds everything: no flush but the one whose edit is torn.
        let db =
            Db::open("/db", options(&fs, RecoveryMode::Strict).memtable_size(4 << 20)).unwrap();
        fill(&db, 0, 1000);
        db.flush().unwrap();
        fill(&db, 1000, 2000);
        // The flush's syncs (the old log holds only synced writes): new log header and
        // directory, the table, the directory, the manifest edit (fails).
        fs.fail_nth(FaultOp::Sync, 5);
        assert!(db.flush().is_err());
        let manifest = files_of_kind(&fs, "MANIFEST").pop().unwrap();
        let written = fs.read(&manifest).unwrap();
        let synced = fs.synced_len(&manifest).unwrap() as usize;
        assert!(written.len() > synced, "the edit was written, not synced");
        fs.crash(CrashMode::SyncedOnly);
        drop(db);
        fs.clear_faults();
        // The crash kept part of the unsynced edit: a torn record.
        let keep = (written.len() - cut).max(synced + 1);
        fs.overwrite(&manifest, written[..keep].to_vec()).unwrap();
        let db = open(&fs).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(count_present(&db, 2000), 2000, "cut {cut}");
    }
}

// ---- 4. The log of a cleanly closed database -------------------------------------------

// Before the fix: a flipped bit in the last record of the closed database's log read as a
// torn tail; the open succeeded without the last acknowledged batch.
#[test]
fn flipped_bit_in_cleanly_closed_log_is_corruption() {
    let fs = closed_database();
    let log = files_of_kind(&fs, "log").pop().unwrap();
    let mut bytes = fs.read(&log).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x04;
    fs.overwrite(&log, bytes).unwrap();
    assert_corruption_naming(open(&fs), &log_name(&log));
    // PointInTime opens without the damaged batch and says how much it lost.
    let db = Db::open("/db", options(&fs, RecoveryMode::PointInTime)).unwrap();
    assert_eq!(count_present(&db, 3500), 3490);
    assert!(db.metrics().wal_sealed_lost_bytes > 0);
}

fn log_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

// Before the fix: a log cut at a record boundary (or to 0 bytes) ended cleanly: the open
// succeeded without its last batches, or without all of them, and reported nothing.
#[test]
fn truncated_log_of_clean_close_is_corruption() {
    for (cut_last, cut, lost) in [(true, 0, 10), (false, 16, 500), (false, 0, 500)] {
        let fs = closed_database();
        let log = files_of_kind(&fs, "log").pop().unwrap();
        let bytes = fs.read(&log).unwrap();
        let cut = if cut_last { *record_offsets(&fs, &log).last().unwrap() as usize } else { cut };
        fs.overwrite(&log, bytes[..cut].to_vec()).unwrap();
        assert_corruption_naming(open(&fs), &log_name(&log));
        let db = Db::open("/db", options(&fs, RecoveryMode::PointInTime)).unwrap();
        assert_eq!(count_present(&db, 3500), 3500 - lost, "cut at {cut}");
        assert!(db.metrics().wal_sealed_lost_bytes > 0, "cut at {cut}");
    }
}

// Before the fix: the deleted log's 500 keys were silently gone after the open.
#[test]
fn deleted_log_of_clean_close_is_corruption() {
    let fs = closed_database();
    let log = files_of_kind(&fs, "log").pop().unwrap();
    fs.remove(&log).unwrap();
    let before = snapshot(&fs);
    assert_corruption_naming(open(&fs), &log_name(&log));
    // PointInTime cannot tell a deleted log from a lost manifest edit either: it refuses.
    assert_corruption_naming(
        Db::open("/db", options(&fs, RecoveryMode::PointInTime)),
        &log_name(&log),
    );
    assert_eq!(snapshot(&fs), before);
}

/// A clean close followed by a clean reopen and close: each close seals its own log, and an
/// open with nothing written seals an empty one.
#[test]
fn repeated_clean_closes_reopen() {
    let fs = closed_database();
    for _ in 0..3 {
        let db = open(&fs).unwrap();
        assert_eq!(count_present(&db, 3500), 3500);
        db.close().unwrap();
    }
    let db = open(&fs).unwrap();
    fill(&db, 3500, 3600);
    drop(db); // the last handle's drop closes cleanly too
    let db = open(&fs).unwrap();
    assert_eq!(count_present(&db, 3600), 3600);
}

/// After a crash the newest log has no seal: its torn tail of unsynced records is still
/// dropped and counted, as before.
#[test]
fn torn_tail_of_the_unsealed_log_after_a_crash_still_recovers() {
    let fs = SimFileSystem::new();
    let db = open(&fs).unwrap();
    fill(&db, 0, 100);
    db.write_with(
        {
            let mut b = WriteBatch::new();
            b.put("buffered", "x".repeat(300));
            b
        },
        Durability::Buffered,
    )
    .unwrap();
    let log = files_of_kind(&fs, "log").pop().unwrap();
    let written = fs.read(&log).unwrap();
    fs.crash(CrashMode::SyncedOnly);
    drop(db);
    fs.overwrite(&log, written[..written.len() - 100].to_vec()).unwrap();
    let db = open(&fs).unwrap();
    assert_eq!(count_present(&db, 100), 100);
    assert_eq!(db.get("buffered").unwrap(), None);
    assert!(db.metrics().wal_tail_dropped_bytes > 0);
    assert_eq!(db.metrics().wal_sealed_lost_bytes, 0);
}
