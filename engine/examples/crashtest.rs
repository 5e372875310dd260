//! `crashtest`: a long kill -9 crash-recovery campaign (`strata_testkit::kill9`, in the spirit
//! of RocksDB's `db_crashtest`; its module docs say what each round verifies).
//!
//! ```text
//! cargo run --release -p strata --example crashtest -- --rounds 20 --dir /tmp/strata-crash
//! cargo run --release -p strata --example crashtest -- --rounds 100000 --dir /tmp/x --max-ms 2000
//! cargo run --release -p strata --example crashtest -- --sharded --rounds 300 --dir /tmp/y
//! ```
//!
//! Options: `--dir`, `--rounds` (20), `--seed` (the time), `--threads` (4), `--min-ms` (50),
//! `--max-ms` (1000): each round's writer child (this binary with `--child`) is killed after a
//! random delay between the two. `--sharded` runs the campaign of
//! `strata_testkit::kill9_sharded` instead: a `ShardedDb` split, grown and moved while it is
//! written. The same campaigns run in CI as `engine/tests/crash_kill9.rs` (short rounds).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use strata_testkit::kill9::{child_main, run_campaign, Campaign, ChildArgs};
use strata_testkit::kill9_sharded;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--child") {
        let child = ChildArgs::from_env().expect("child started without its environment");
        child_main(&child);
    }
    let flag =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num =
        |name: &str, default: u64| flag(name).map_or(default, |v| v.parse().expect("a number"));
    let campaign = Campaign {
        dir: PathBuf::from(flag("--dir").unwrap_or_else(|| "/tmp/strata-crashtest".into())),
        rounds: num("--rounds", 20),
        seed: num(
            "--seed",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
        ),
        threads: num("--threads", 4) as usize,
        min_ms: num("--min-ms", 50),
        max_ms: num("--max-ms", 1000),
    };
    println!("crashtest: {campaign:?}");
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let child = || {
        let mut cmd = Command::new(&exe);
        cmd.arg("--child");
        cmd
    };
    let outcome = if args.iter().any(|a| a == "--sharded") {
        kill9_sharded::run_campaign(&campaign, &child).map(|report| {
            let r = report.reshards;
            format!(
                "{} acknowledged writes verified; reshardings: {} completed, {} cancelled, \
                 killed after the cut-over {} (completed at reopen), killed before it {} \
                 (rolled back at reopen), {} refused; last step reached by those killed: {:?}",
                report.verified,
                r.completed,
                r.cancelled,
                r.killed_after_cut_over,
                r.killed_before_cut_over,
                r.refused,
                r.killed_at
            )
        })
    } else {
        run_campaign(&campaign, &child).map(|v| format!("{v} acknowledged writes verified"))
    };
    match outcome {
        Ok(summary) => println!(
            "crashtest: {} rounds passed, {summary} in {:?} (seed {})",
            campaign.rounds,
            started.elapsed(),
            campaign.seed
        ),
        Err(e) => {
            eprintln!("crashtest FAILED (seed {}): {e}", campaign.seed);
            std::process::exit(1);
        }
    }
}
