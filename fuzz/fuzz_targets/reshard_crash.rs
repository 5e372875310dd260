//! cargo-fuzz target `reshard_crash`: see `strata_testkit::fuzz::reshard_crash` and docs/testing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_testkit::fuzz::reshard_crash::run(data));
