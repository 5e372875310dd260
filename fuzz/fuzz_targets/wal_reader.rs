//! cargo-fuzz target `wal_reader`: see `strata_testkit::fuzz::wal_reader` and docs/testing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_testkit::fuzz::wal_reader::run(data));
