//! Bit rot: flips bytes in every kind of file of a closed database (write-ahead log, tables,
//! manifest, `CURRENT`) on the simulated disk, reopens it and reads everything back.
//!
//! What is asserted, per flipped byte:
//! * never a panic, and never wrong data: every `get` returns the right value or an
//!   `Error::Corruption` naming the damaged file; a scan (either direction) returns exactly the
//!   first entries of the right answer, then possibly one such error, then ends;
//! * `open` either succeeds or fails with `Error::Corruption` naming the damaged file (for
//!   `CURRENT`: `CURRENT` itself, or the manifest name it now holds);
//! * a flip anywhere in the log fails the open (Strict recovery): the database was closed
//!   cleanly, so its log is sealed in the manifest with its length and last sequence, and
//!   even damage to the last record is not a torn tail. (After a crash, the one tolerated
//!   loss is a torn last record of the newest, unsealed log; the checker still accepts that
//!   outcome, with dropped bytes reported in `Metrics::wal_tail_dropped_bytes`.)
//! * A flip in the manifest must never lose acknowledged data either: its last record is an
//!   edit that was synced before the flush that wrote it returned (see the ignored test below
//!   for what happens today).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::{Compression, Db, Durability, Error, Options, WriteBatch};
use strata_core::fs::FileSystem;
use strata_core::sim::SimFileSystem;
use strata_wal::{LogReader, RecoveryMode};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(fs: &SimFileSystem) -> Options {
    Options::default()
        .file_system(Arc::new(fs.clone()))
        .memtable_size(1 << 20)
        .block_size(256)
        .compression(Compression::None)
        .recovery_mode(RecoveryMode::Strict)
}

/// A closed database with two flushed tables and three batches left in its log. Returns the
/// disk, the final state and the state without the last logged batch.
fn build() -> (SimFileSystem, State, State) {
    let fs = SimFileSystem::new();
    let db = Db::open("/db", options(&fs)).unwrap();
    let mut state = State::new();
    let write = |db: &Db, state: &mut State, muts: Vec<(String, Option<String>)>| {
        let mut b = WriteBatch::new();
        for (k, v) in &muts {
            match v {
                Some(v) => {
                    b.put(k, v);
                    state.insert(k.clone().into_bytes(), v.clone().into_bytes());
                }
                None => {
                    b.delete(k);
                    state.remove(k.as_bytes());
                }
            }
        }
        db.write_with(b, Durability::Sync).unwrap();
    };
    write(
        &db,
        &mut state,
        (0..120)
            .map(|i| (format!("key{i:04}"), Some(format!("first {i} {}", "x".repeat(i % 40)))))
            .collect(),
    );
    db.flush().unwrap();
    write(
        &db,
        &mut state,
        (0..120)
            .step_by(3)
            .map(|i| (format!("key{i:04}"), (i % 2 == 0).then(|| format!("second {i}"))))
            .collect(),
    );
    db.flush().unwrap();
    for round in 0..3 {
        let muts = (0..10)
            .map(|i| (format!("key{:04}", i * 7 + round), Some(format!("logged {round}/{i}"))))
            .collect();
        if round == 2 {
            // Keep the state before the last batch: the one a torn-tail reading may yield.
            let before = state.clone();
            write(&db, &mut state, muts);
            db.close().unwrap();
            return (fs, state, before);
        }
        write(&db, &mut state, muts);
    }
    unreachable!()
}

/// Every live file's bytes.
fn files_of(fs: &SimFileSystem) -> Vec<(PathBuf, Vec<u8>)> {
    fs.files()
        .into_iter()
        .map(|p| {
            let bytes = fs.read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// A fresh disk holding `files`, with `flip` applied (durably, as a bit flip at rest).
fn disk(files: &[(PathBuf, Vec<u8>)], flip: Option<(&Path, usize, u8)>) -> SimFileSystem {
    let fs = SimFileSystem::new();
    fs.create_dir_all(Path::new("/db")).unwrap();
    for (path, bytes) in files {
        let mut bytes = bytes.clone();
        if let Some((p, at, mask)) = flip {
            if p == path {
                bytes[at] ^= mask;
            }
        }
        drop(fs.create(path).unwrap());
        fs.overwrite(path, bytes).unwrap();
    }
    fs.sync_dir(Path::new("/db")).unwrap();
    fs
}

/// Offset of the last record of a log file.
fn last_record_offset(bytes: &[u8]) -> u64 {
    let fs = disk(&[(PathBuf::from("/db/x.log"), bytes.to_vec())], None);
    let mut r = LogReader::open(&fs, Path::new("/db/x.log"), RecoveryMode::Strict).unwrap();
    let mut last = 0;
    while let Some(rec) = r.next_record().unwrap() {
        last = rec.offset;
    }
    last
}

fn names_file(e: &Error, allowed: &dyn Fn(&Path) -> bool) -> bool {
    matches!(e, Error::Corruption { file, .. } if allowed(file))
}

/// What one flipped byte led to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    OpenFailed,
    AllCorrect,
    LastLogBatchLost,
    ReadErrors,
}

/// Opens the damaged disk and reads everything; panics on wrong data or a misnamed error.
fn check_flip(
    files: &[(PathBuf, Vec<u8>)],
    target: &Path,
    at: usize,
    mask: u8,
    full: &State,
    without_last: Option<&State>,
    scan_prefix_checked: bool,
) -> Outcome {
    let fs = disk(files, Some((target, at, mask)));
    let what = format!("flip {mask:#04x} at {} offset {at}", target.display());
    let is_current = target.ends_with("CURRENT");
    let allowed = |file: &Path| {
        file == target
            || (is_current
                && (file.ends_with("CURRENT")
                    || file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("MANIFEST-"))))
    };
    let db = match Db::open("/db", options(&fs)) {
        Ok(db) => db,
        Err(e) => {
            assert!(names_file(&e, &allowed), "{what}: open failed without naming the file: {e:?}");
            return Outcome::OpenFailed;
        }
    };
    // The states the database may legitimately show.
    let mut candidates = vec![full];
    if let Some(w) = without_last {
        candidates.push(w);
    }
    let mut errors = 0;
    let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut complete = true;
    for item in db.iter() {
        match item {
            Ok((k, v)) => seen.push((k.to_vec(), v.to_vec())),
            Err(e) => {
                assert!(
                    names_file(&e, &allowed),
                    "{what}: scan error does not name the file: {e:?}"
                );
                errors += 1;
                complete = false;
                break;
            }
        }
    }
    candidates.retain(|c| {
        let list: Vec<_> = c.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if complete {
            list == seen
        } else {
            !scan_prefix_checked || list.starts_with(&seen)
        }
    });
    if candidates.is_empty() {
        let expected: Vec<_> = full.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let diverge = seen
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(seen.len().min(expected.len()));
        panic!(
            "{what}: forward scan returned wrong data: {} entries (complete: {complete}), first difference at #{diverge}: got {:?} expected {:?}",
            seen.len(),
            seen.get(diverge).map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            expected.get(diverge).map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
        );
    }
    let mut back: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut back_complete = true;
    for item in db.iter().rev() {
        match item {
            Ok((k, v)) => back.push((k.to_vec(), v.to_vec())),
            Err(e) => {
                assert!(
                    names_file(&e, &allowed),
                    "{what}: reverse scan error does not name the file: {e:?}"
                );
                errors += 1;
                back_complete = false;
                break;
            }
        }
    }
    candidates.retain(|c| {
        let list: Vec<_> = c.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        if back_complete {
            list == back
        } else {
            !scan_prefix_checked || list.starts_with(&back)
        }
    });
    assert!(!candidates.is_empty(), "{what}: reverse scan returned wrong data");
    let keys: Vec<Vec<u8>> = (0..130).map(|i| format!("key{i:04}").into_bytes()).collect();
    for k in &keys {
        match db.get(k) {
            Ok(v) => {
                candidates.retain(|c| c.get(k).map(Vec::as_slice) == v.as_deref());
                assert!(
                    !candidates.is_empty(),
                    "{what}: get({}) returned wrong data {v:?}",
                    String::from_utf8_lossy(k)
                );
            }
            Err(e) => {
                assert!(
                    names_file(&e, &allowed),
                    "{what}: get error does not name the file: {e:?}"
                );
                errors += 1;
            }
        }
    }
    if errors > 0 {
        return Outcome::ReadErrors;
    }
    if candidates.iter().any(|c| std::ptr::eq(*c, full)) {
        return Outcome::AllCorrect;
    }
    assert!(
        db.metrics().wal_tail_dropped_bytes > 0,
        "{what}: the last logged batch vanished without the engine reporting a dropped tail"
    );
    Outcome::LastLogBatchLost
}

/// Deterministic positions to flip: the first and last bytes, and a spread in between.
fn positions(len: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut out: Vec<usize> = (0..len.min(20)).chain(len.saturating_sub(20)..len).collect();
    let mut x = seed;
    for _ in 0..count {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.push((x >> 33) as usize % len.max(1));
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn kind_of(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(".log") {
        "log"
    } else if name.ends_with(".sst") {
        "table"
    } else if name.starts_with("MANIFEST-") {
        "manifest"
    } else if name == "CURRENT" {
        "current"
    } else {
        "other"
    }
}

/// Flips bytes of one kind of file; returns the outcomes seen. `scan_prefix_checked`: a scan
/// that ends in an error must have returned exactly the first entries before it.
fn flip_kind(kind: &str, per_file: usize, scan_prefix_checked: bool) -> Vec<Outcome> {
    let (fs, full, without_last) = build();
    let files = files_of(&fs);
    let mut outcomes = Vec::new();
    let targets: Vec<&(PathBuf, Vec<u8>)> =
        files.iter().filter(|(p, _)| kind_of(p) == kind).collect();
    assert!(
        !targets.is_empty(),
        "the database has no {kind} file: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (path, bytes) in targets {
        let last_record = (kind == "log").then(|| last_record_offset(bytes));
        for (i, at) in positions(bytes.len(), per_file, bytes.len() as u64).into_iter().enumerate()
        {
            let mask = [0x01, 0x80, 0xff, 0x10][i % 4];
            let tolerated = last_record.filter(|&l| at as u64 >= l).map(|_| &without_last);
            let outcome = check_flip(&files, path, at, mask, &full, tolerated, scan_prefix_checked);
            if kind == "log" && outcome == Outcome::AllCorrect {
                // Only bytes no record covers (block padding) may be flipped without effect;
                // this log holds no padding, so every flip must be noticed.
                panic!("flip at {} offset {at} of the log went unnoticed", path.display());
            }
            outcomes.push(outcome);
        }
    }
    outcomes
}

fn count(outcomes: &[Outcome], o: Outcome) -> usize {
    outcomes.iter().filter(|x| **x == o).count()
}

// BUG (engine recovery, issue 14): a flip in the last record of the closed database's log
// read as a torn tail, and the open succeeded without the last acknowledged batch.
#[test]
fn flipped_log_bytes_of_a_closed_database_fail_open() {
    let outcomes = flip_kind("log", 60, true);
    assert!(outcomes.iter().all(|o| *o == Outcome::OpenFailed), "{outcomes:?}");
}

/// Gets return the right value or an error naming the table; a scan that completes is
/// right. (What a scan returns before its error is checked by the ignored test below.)
#[test]
fn flipped_table_bytes_are_reported_never_returned() {
    let outcomes = flip_kind("table", 60, false);
    assert!(count(&outcomes, Outcome::ReadErrors) > 0, "{outcomes:?}");
    assert_eq!(count(&outcomes, Outcome::LastLogBatchLost), 0);
}

/// BUG (core `MergingIterator`): when one child (a table) fails, `pick` skips the invalid
/// child and the merge goes on with the other children's entries; the error surfaces only
/// when the whole merge ends. So a scan returns a listing with the damaged table's keys
/// silently missing (or older versions from other tables in their place) before the error.
#[test]

fn flipped_table_bytes_scans_stop_at_the_error() {
    let outcomes = flip_kind("table", 60, true);
    assert!(count(&outcomes, Outcome::ReadErrors) > 0, "{outcomes:?}");
}

#[test]
fn flipped_current_bytes_fail_open() {
    let outcomes = flip_kind("current", 0, true);
    assert!(outcomes.iter().all(|o| *o == Outcome::OpenFailed), "{outcomes:?}");
}

/// The manifest's records before the last one: a flip must fail the open (or, in bytes that
/// no record uses, change nothing).
#[test]
fn flipped_manifest_bytes_fail_open_or_change_nothing() {
    let (fs, full, _) = build();
    let files = files_of(&fs);
    let (path, bytes) = files.iter().find(|(p, _)| kind_of(p) == "manifest").unwrap();
    let last = last_record_offset(bytes) as usize;
    for (i, at) in positions(last, 60, 3).into_iter().enumerate() {
        let outcome =
            check_flip(&files, path, at, [0x01, 0x80, 0xff, 0x10][i % 4], &full, None, true);
        assert_ne!(outcome, Outcome::LastLogBatchLost);
    }
}

/// BUG (manifest recovery): a flip inside the manifest's LAST record (the edit of the last
/// flush, synced before that flush returned) is taken for a torn tail and dropped silently:
/// the database opens without the flushed table, whose log was already deleted, so
/// acknowledged writes vanish without any error.
#[test]

fn flipped_last_manifest_record_never_loses_data() {
    let (fs, full, _) = build();
    let files = files_of(&fs);
    let (path, bytes) = files.iter().find(|(p, _)| kind_of(p) == "manifest").unwrap();
    let last = last_record_offset(bytes) as usize;
    for at in last..bytes.len() {
        check_flip(&files, path, at, 0x01, &full, None, true);
    }
}
