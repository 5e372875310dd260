//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through the fuzz
//! targets' logic, so an ordinary `cargo test` covers them without a fuzzer.
//!
//! The targets' logic is `strata_testkit::fuzz`, which the cargo-fuzz targets in `fuzz/` call
//! too. `STRATA_WRITE_FUZZ_CORPUS=1` regenerates the seed files from `seed_corpus()` first
//! (see docs/testing.md).

use std::path::{Path, PathBuf};

use strata_testkit::fuzz::{run_target, seed_corpus, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Corpus files whose replay fails because of a known, reported engine bug:
/// `(target, file name, reason)`. [`replay`] skips them; each is replayed by its own ignored
/// test below, beside the engine test that shows the same bug. Fixing the bug means removing
/// the entry and its ignored test.
const KNOWN_FAILURES: &[(&str, &str, &str)] = &[
    (
        "ops_crash",
        "found-tx-inverted-range-scan",
        "bug: Transaction::range with its start after its end panics beside buffered writes \
         (see transaction_scans::an_inverted_range_beside_own_writes_holds_nothing)",
    ),
    (
        "ops_crash",
        "found-tx-inverted-range-commit",
        "bug: a commit that scanned a range with its start after its end panics in validation \
         (see transaction_scans::a_commit_that_scanned_an_inverted_range_validates_it_as_empty)",
    ),
    (
        "ops_crash",
        "found-tx-scan-goes-on-after-error",
        "bug: a transaction's scan yields its own writes after a read error \
         (see transaction_scans::a_transaction_scan_ends_at_its_first_error)",
    ),
];

fn is_known_failure(target: &str, file: &Path) -> bool {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    KNOWN_FAILURES.iter().any(|(t, n, _)| *t == target && *n == name)
}

fn replay_known_failure(index: usize) {
    let (target, name, reason) = KNOWN_FAILURES[index];
    println!("{target}/{name}: {reason}");
    let data = std::fs::read(corpus_dir(target).join(name)).unwrap();
    run_target(target, &data);
}

#[test]
#[ignore = "bug: Transaction::range with its start after its end panics beside buffered writes"]
fn known_failure_ops_crash_tx_inverted_range_scan() {
    replay_known_failure(0);
}

#[test]
#[ignore = "bug: a commit that scanned a range with its start after its end panics in validation"]
fn known_failure_ops_crash_tx_inverted_range_commit() {
    replay_known_failure(1);
}

#[test]
#[ignore = "bug: a transaction's scan yields its own writes after a read error"]
fn known_failure_ops_crash_tx_scan_goes_on_after_error() {
    replay_known_failure(2);
}

fn replay(target: &str) {
    if std::env::var_os("STRATA_WRITE_FUZZ_CORPUS").is_some() {
        for (t, name, bytes) in seed_corpus().into_iter().filter(|(t, _, _)| *t == target) {
            let dir = corpus_dir(t);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|file| !is_known_failure(target, file))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    let mut replayed = 0;
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| run_target(target, &data));
        if let Err(panic) = outcome {
            std::panic::resume_unwind(Box::new(format!(
                "{target} fails on corpus file {}: {}",
                file.display(),
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )));
        }
        replayed += 1;
    }
    println!("{target}: replayed {replayed} corpus files");
}

#[test]
fn ops_crash_corpus() {
    replay("ops_crash");
}

#[test]
fn wal_reader_corpus() {
    replay("wal_reader");
}

#[test]
fn sstable_reader_corpus() {
    replay("sstable_reader");
}

#[test]
fn manifest_reader_corpus() {
    replay("manifest_reader");
}

#[test]
fn seed_corpus_is_small_and_committed() {
    let seeds = seed_corpus();
    let total: usize = seeds.iter().map(|(_, _, b)| b.len()).sum();
    assert!(total < 1 << 20, "seed corpus of {total} bytes is too large");
    for target in TARGETS {
        assert!(seeds.iter().any(|(t, _, _)| *t == target), "no seeds for {target}");
    }
}
