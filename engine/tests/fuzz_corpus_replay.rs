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
fn reshard_crash_corpus() {
    replay("reshard_crash");
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
