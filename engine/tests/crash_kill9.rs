//! kill -9 crash test (CI-sized): the campaign of `strata_testkit::kill9` (which
//! `examples/crashtest.rs` runs for long campaigns) with 20 short rounds. The writer child is
//! this test binary re-executed with `--exact child_entry` and the child's arguments in
//! environment variables; `child_entry` does nothing in a normal run.
//!
//! Long campaign: `cargo run --release -p strata --example crashtest -- --rounds 100000 --dir /tmp/x`
//! (docs/testing.md). `STRATA_LONG_TESTS=1` runs 200 rounds here.

use std::process::Command;

use strata_testkit::kill9::{child_main, run_campaign, Campaign, ChildArgs};

#[test]
fn child_entry() {
    if let Some(args) = ChildArgs::from_env() {
        child_main(&args);
    }
}

#[test]
fn kill9_campaign() {
    let long = std::env::var_os("STRATA_LONG_TESTS").is_some();
    let dir = tempfile::tempdir().unwrap();
    let campaign = Campaign {
        dir: dir.path().join("crash"),
        rounds: if long { 200 } else { 20 },
        seed: std::env::var("STRATA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED),
        threads: 3,
        min_ms: 30,
        max_ms: if long { 1000 } else { 250 },
    };
    let exe = std::env::current_exe().unwrap();
    let verified = run_campaign(&campaign, &|| {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads", "1"]);
        cmd
    })
    .unwrap_or_else(|e| panic!("kill -9 campaign failed (seed {}): {e}", campaign.seed));
    println!("{} rounds, {verified} acknowledged writes verified", campaign.rounds);
    assert!(verified > 0, "the children never got to write");
}
