//! kill -9 crash tests (CI-sized): the campaigns of `strata_testkit::kill9` (a `Db`, 20 short
//! rounds) and `strata_testkit::kill9_sharded` (a `ShardedDb` resharded while it is written,
//! 16 rounds), which `examples/crashtest.rs` runs for long campaigns. The writer child is this
//! test binary re-executed with `--exact child_entry` and the child's arguments in
//! environment variables; `child_entry` does nothing in a normal run.
//!
//! Long campaigns: `cargo run --release -p strata --example crashtest -- [--sharded] --rounds
//! 100000 --dir /tmp/x` (docs/testing.md). `STRATA_LONG_TESTS=1` runs 200 rounds of each here.

use std::process::Command;

use strata_testkit::kill9::{child_main, run_campaign, Campaign, ChildArgs};
use strata_testkit::kill9_sharded;

#[test]
fn child_entry() {
    if let Some(args) = ChildArgs::from_env() {
        child_main(&args);
    }
}

fn long() -> bool {
    std::env::var_os("STRATA_LONG_TESTS").is_some()
}

fn campaign(dir: &tempfile::TempDir, rounds: u64, threads: usize, min_ms: u64) -> Campaign {
    Campaign {
        dir: dir.path().join("crash"),
        rounds: if long() { 200 } else { rounds },
        seed: std::env::var("STRATA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED),
        threads,
        min_ms,
        max_ms: if long() { 1000 } else { 250 },
    }
}

/// This test binary, re-executed as a writer child.
fn child_command() -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads", "1"]);
    cmd
}

#[test]
fn kill9_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = campaign(&dir, 20, 3, 30);
    let verified = run_campaign(&campaign, &child_command)
        .unwrap_or_else(|e| panic!("kill -9 campaign failed (seed {}): {e}", campaign.seed));
    println!("{} rounds, {verified} acknowledged writes verified", campaign.rounds);
    assert!(verified > 0, "the children never got to write");
}

/// Splits, adds and moves running while the child is killed: every acknowledged write
/// present exactly once after each reopen, the layout one the child saw or the target of
/// the resharding it ran (`strata_testkit::kill9_sharded` says what is checked).
#[test]
fn kill9_sharded_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = campaign(&dir, 16, 3, 60);
    let report = kill9_sharded::run_campaign(&campaign, &child_command).unwrap_or_else(|e| {
        panic!("sharded kill -9 campaign failed (seed {}): {e}", campaign.seed)
    });
    println!("{} rounds: {report:?}", campaign.rounds);
    assert!(report.verified > 0, "the children never got to write");
    let r = report.reshards;
    assert!(
        r.completed + r.killed_after_cut_over > 0,
        "no resharding completed: the campaign tested nothing of them ({r:?})"
    );
}
