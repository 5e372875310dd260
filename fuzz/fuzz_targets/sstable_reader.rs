//! cargo-fuzz target `sstable_reader`: see `strata_testkit::fuzz::sstable_reader` and docs/testing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_testkit::fuzz::sstable_reader::run(data));
