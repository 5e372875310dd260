//! cargo-fuzz target `ops_crash`: see `strata_testkit::fuzz::ops_crash` and docs/testing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_testkit::fuzz::ops_crash::run(data));
