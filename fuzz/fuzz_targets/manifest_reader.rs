//! cargo-fuzz target `manifest_reader`: see `strata_testkit::fuzz::manifest_reader` and docs/testing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_testkit::fuzz::manifest_reader::run(data));
