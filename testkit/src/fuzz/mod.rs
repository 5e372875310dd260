//! The logic of strata's cargo-fuzz targets, as plain functions.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` calls `<name>::run` here, and
//! `engine/tests/fuzz_corpus_replay.rs` replays every committed corpus file
//! (`fuzz/corpus/<name>/*`) through [`run_target`], so an ordinary `cargo test` runs the
//! targets' exact logic on their corpora without a fuzzer.
//!
//! Every target panics on a finding (a failed assertion), which libFuzzer reports as a crash.
//! The input formats are hand-rolled byte layouts read through [`arbitrary::Unstructured`], so
//! that [`seed_corpus`] can write valid seeds (see docs/testing.md for the layouts).
//!
//! * [`ops_crash`]: a sequence of database operations, injected I/O errors and power losses,
//!   checked against a model that knows each write's durability.
//! * [`reshard_crash`]: writes on a sharded database interleaved with online reshardings
//!   (waited for, cancelled or cut short by a power cut at a chosen step, with writes made
//!   during them), flushes, power cuts and reopens, checked against a per-shard write log.
//! * [`wal_reader`], [`sstable_reader`], [`manifest_reader`]: arbitrary bytes as a log, a table,
//!   a manifest: the reader returns data or `Error::Corruption` naming the file — no panic, no
//!   hang, no allocation beyond a fixed bound.

mod input;
pub mod manifest_reader;
pub mod ops_crash;
pub mod reshard_crash;
mod seeds;
pub mod sstable_reader;
pub mod wal_reader;

pub use seeds::seed_corpus;

/// The fuzz targets, by name (also the names of their corpus directories).
pub const TARGETS: [&str; 5] =
    ["ops_crash", "reshard_crash", "wal_reader", "sstable_reader", "manifest_reader"];

/// Runs the target called `name` on `data`, as its fuzz target does (panicking on a
/// finding, and on an unknown name).
///
/// ```
/// use strata_testkit::fuzz::{run_target, TARGETS};
///
/// for target in TARGETS {
///     run_target(target, b""); // every target accepts the empty input
/// }
/// ```
pub fn run_target(name: &str, data: &[u8]) {
    match name {
        "ops_crash" => ops_crash::run(data),
        "reshard_crash" => reshard_crash::run(data),
        "wal_reader" => wal_reader::run(data),
        "sstable_reader" => sstable_reader::run(data),
        "manifest_reader" => manifest_reader::run(data),
        other => panic!("unknown fuzz target {other}"),
    }
}
