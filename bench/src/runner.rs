//! Runs the benchmark list against every engine, interleaved, and measures what happens around
//! each run: bytes written to disk (write amplification), size on disk (space amplification),
//! stall time and metrics.
//!
//! Order: for each round (`--repeat`), for each benchmark of the list, for each engine — so with two
//! engines A and B a noisy machine's slow phases hit both alike (A B A B ...). All engines stay
//! open for the whole run, each in its own directory `--db/<engine>`, so state carries from one
//! benchmark to the next as in db_bench; `fill*` benchmarks recreate their engine's database.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::disk;
use crate::engines::{open_engine, BenchResult, Engine, EngineConfig, EngineKind};
use crate::workload::{self, Benchmark, ConditionalCounts, LiveSet, WorkloadConfig};

/// A progress bar appears only for runs longer than this.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// Each engine's settings description, in plan order.
pub type Settings = Vec<(EngineKind, String)>;

/// Everything a run needs, from the command line.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Engines, in interleaving order.
    pub engines: Vec<EngineKind>,
    /// Benchmarks, in order (state carries from one to the next).
    pub benchmarks: Vec<Benchmark>,
    /// Workload parameters.
    pub workload: WorkloadConfig,
    /// How engines are opened.
    pub engine: EngineConfig,
    /// Parent directory of the engines' databases.
    pub db_dir: PathBuf,
    /// Rounds through the whole list.
    pub repeat: usize,
    /// Base seed of the random keys.
    pub seed: u64,
    /// Draw progress bars (a terminal, not `--json`).
    pub progress: bool,
    /// Print one line per finished run on stderr.
    pub verbose: bool,
}

/// The measurements of one benchmark run on one engine.
pub struct RunResult {
    /// Engine measured.
    pub engine: EngineKind,
    /// Workload run.
    pub benchmark: Benchmark,
    /// Position of the benchmark in the list (a benchmark may appear twice).
    pub position: usize,
    /// Operations done.
    pub ops: u64,
    /// Wall time of the measured operations.
    pub secs: f64,
    /// User bytes (key + value) moved by the measured operations.
    pub bytes: u64,
    /// Lookups that found their key, if the workload looks up keys.
    pub found: Option<u64>,
    /// Lookups attempted.
    pub lookups: Option<u64>,
    /// Per-operation latency, nanoseconds.
    pub histogram: Histogram<u64>,
    /// Operations completed per one-second bucket.
    pub timeline: Vec<u64>,
    /// Bytes written to disk / user bytes written, after settling (write workloads only).
    pub write_amp: Option<f64>,
    /// Engine-counted bytes written / user bytes written (engines that count them: strata).
    pub engine_write_amp: Option<f64>,
    /// Size on disk / live user data.
    pub space_amp: Option<f64>,
    /// Time writers were stalled during the run (engines that report it).
    pub stall_secs: Option<f64>,
    /// Time spent settling background work after the run (write workloads).
    pub settle_secs: Option<f64>,
    /// The engine's metrics table after the run (strata).
    pub metrics: Option<String>,
    /// Conditional workloads: commits, conflicts and retries.
    pub conditional: Option<ConditionalCounts>,
}

struct Slot {
    kind: EngineKind,
    dir: PathBuf,
    engine: Option<Box<dyn Engine>>,
    live: LiveSet,
}

impl Slot {
    fn engine(&self) -> BenchResult<&dyn Engine> {
        self.engine.as_deref().ok_or_else(|| format!("{} is not open", self.kind).into())
    }

    /// Close the engine and delete its database, then open a new, empty one.
    fn recreate(&mut self, config: &EngineConfig) -> BenchResult<()> {
        if let Some(engine) = self.engine.take() {
            engine.close()?;
        }
        remove_dir(&self.dir)?;
        std::fs::create_dir_all(&self.dir)?;
        self.engine = Some(open_engine(self.kind, &self.dir, config)?);
        self.live.clear();
        Ok(())
    }
}

fn remove_dir(dir: &std::path::Path) -> BenchResult<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", dir.display()).into()),
    }
}

/// Bytes written so far by the process (the same yardstick for every engine), else by the
/// engine's own count.
fn bytes_written(engine: &dyn Engine) -> Option<u64> {
    disk::process_bytes_written().or_else(|| engine.bytes_written())
}

/// `after - before` over user bytes, when both counts exist and something was written.
fn amplification(before: Option<u64>, after: Option<u64>, user_bytes: u64) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if user_bytes > 0 => {
            Some(after.saturating_sub(before) as f64 / user_bytes as f64)
        }
        _ => None,
    }
}

/// Whether progress bars can be drawn (stderr is a terminal).
pub fn terminal_attached() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// Run the plan. Returns every run's result and each engine's settings description.
pub fn run(plan: &Plan) -> BenchResult<(Vec<RunResult>, Settings)> {
    let mut slots = Vec::new();
    for &kind in &plan.engines {
        let mut slot = Slot {
            kind,
            dir: plan.db_dir.join(kind.name()),
            engine: None,
            live: LiveSet::new(plan.workload.num),
        };
        // Like db_bench without --use_existing_db: every run starts from an empty database.
        slot.recreate(&plan.engine)?;
        slots.push(slot);
    }
    let settings = slots
        .iter()
        .map(|s| Ok((s.kind, s.engine()?.settings())))
        .collect::<BenchResult<Vec<_>>>()?;

    let mut results = Vec::new();
    let mut skipped: Vec<(Benchmark, EngineKind)> = Vec::new();
    for round in 0..plan.repeat {
        for (position, &bench) in plan.benchmarks.iter().enumerate() {
            // Same seed for every engine in a round: they see the same keys.
            let seed = plan.seed
                ^ ((round as u64) << 32 | position as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
            for slot in &mut slots {
                // Workloads that need more than the plain engine interface.
                let unsupported = if bench == Benchmark::BulkLoad {
                    slot.engine()?.bulk_load().err()
                } else if bench.conditional() {
                    slot.engine()?.transactional().err()
                } else if bench.range_deletes() {
                    slot.engine()?.range_delete_support().err()
                } else {
                    None
                };
                if let Some(why) = unsupported {
                    if !skipped.contains(&(bench, slot.kind)) {
                        eprintln!("note: {bench} is unsupported on {}: {why}; skipped", slot.kind);
                        skipped.push((bench, slot.kind));
                    }
                    continue;
                }
                let result = run_one(plan, slot, bench, position, seed)?;
                if plan.verbose {
                    eprintln!(
                        "round {}/{} {:<16} {:<8} {:>12.0} ops/s",
                        round + 1,
                        plan.repeat,
                        bench.name(),
                        slot.kind.name(),
                        result.ops as f64 / result.secs.max(1e-9)
                    );
                }
                results.push(result);
            }
        }
    }
    for slot in slots {
        if let Some(engine) = slot.engine {
            engine.close()?;
        }
    }
    Ok((results, settings))
}

fn run_one(
    plan: &Plan,
    slot: &mut Slot,
    bench: Benchmark,
    position: usize,
    seed: u64,
) -> BenchResult<RunResult> {
    if bench.fresh_db() {
        slot.recreate(&plan.engine)?;
    } else if bench.needs_data() && slot.live.is_empty() {
        eprintln!(
            "warning: {bench} on an empty {} database: like db_bench, benchmarks run against the \
             database the previous ones left; put a fill (e.g. fillrandom) before it in --benchmarks",
            slot.kind
        );
    }
    let engine = slot.engine()?;
    let written_before = bytes_written(engine);
    let engine_written_before = engine.bytes_written();
    let stall_before = engine.stall_time();

    let bar = ProgressBar::with_draw_target(
        Some(bench.planned_ops(plan.workload.num)),
        ProgressDrawTarget::hidden(),
    );
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {human_pos}/{human_len} ops (eta {eta})")
            .map_err(|e| format!("progress template: {e}"))?
            .progress_chars("=> "),
    );
    bar.set_message(format!("{bench} {}", slot.kind));
    let started = Instant::now();
    let mut shown = false;
    let mut on_progress = |done: u64| {
        if plan.progress && !shown && started.elapsed() > PROGRESS_AFTER {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        bar.set_position(done);
    };
    let m = workload::run(bench, engine, &slot.live, &plan.workload, seed, &mut on_progress)
        .map_err(|e| format!("{bench} on {}: {e}", slot.kind))?;
    bar.finish_and_clear();

    let stall_secs = match (stall_before, engine.stall_time()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before).as_secs_f64()),
        _ => None,
    };
    let (write_amp, engine_write_amp, settle_secs) = if bench.writes() {
        let settle_start = Instant::now();
        engine.settle()?;
        let settle_secs = settle_start.elapsed().as_secs_f64();
        let user = m.user_bytes_written;
        (
            amplification(written_before, bytes_written(engine), user),
            amplification(engine_written_before, engine.bytes_written(), user),
            Some(settle_secs),
        )
    } else {
        (None, None, None)
    };
    let live_bytes =
        slot.live.len() * (plan.workload.codec.key_size() as u64 + plan.workload.value_size as u64);
    let space_amp = if live_bytes > 0 {
        Some(disk::dir_size_on_disk(&slot.dir)? as f64 / live_bytes as f64)
    } else {
        None
    };
    Ok(RunResult {
        engine: slot.kind,
        benchmark: bench,
        position,
        ops: m.stats.ops,
        secs: m.elapsed.as_secs_f64(),
        bytes: m.stats.bytes,
        found: m.lookups.map(|_| m.stats.found),
        lookups: m.lookups,
        histogram: m.stats.histogram,
        timeline: m.stats.timeline,
        write_amp,
        engine_write_amp,
        space_amp,
        stall_secs,
        settle_secs,
        metrics: engine.metrics(),
        conditional: m.conditional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::Durability;
    use crate::keys::KeyCodec;
    use crate::report::{self, RunContext};
    use crate::svg;

    #[test]
    fn a_plan_runs_end_to_end_into_json_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan_of(
            dir.path(),
            vec![Benchmark::FillRandom, Benchmark::ReadRandom, Benchmark::ReadSeq],
        );
        plan.repeat = 2;
        let (results, settings) = run(&plan).unwrap();
        assert_eq!(results.len(), 6, "3 benchmarks x 2 rounds");
        assert_eq!(settings, vec![(EngineKind::Memory, "BTreeMap test double".to_string())]);
        let fill = &results[0];
        assert!(fill.settle_secs.is_some());
        assert!(fill.space_amp.is_some(), "keys are live after a fill");
        assert!(results[1].write_amp.is_none(), "reads have no write amplification");
        assert_eq!(results[1].lookups, Some(1000));
        let ctx = RunContext {
            threads: 2,
            shards: None,
            num: 1000,
            key_size: 16,
            value_size: 50,
            durability: "buffered".into(),
        };
        let summaries = report::summarize(&results, &settings, &ctx);
        assert_eq!(summaries.len(), 3);
        assert!(summaries.iter().all(|s| s.summary.repeats == 2));
        assert_eq!(report::json_lines(&summaries).lines().count(), 3);
        let panels = svg::panels(&summaries, &results);
        assert_eq!(panels.len(), 3);
        let doc = svg::render("t", &panels);
        assert_eq!(doc.matches("<polyline").count(), 6, "two charts per benchmark, one engine");
    }

    #[test]
    fn conditional_workloads_run_in_a_plan_with_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan_of(
            dir.path(),
            vec![
                Benchmark::FillRandom,
                Benchmark::TxnRandom,
                Benchmark::TxnContended,
                Benchmark::CasRandom,
            ],
        );
        plan.repeat = 2;
        let (results, _) = run(&plan).unwrap();
        assert_eq!(results.len(), 8);
        for r in results.iter().filter(|r| r.benchmark.conditional()) {
            let counts = r.conditional.unwrap_or_else(|| panic!("{} has no counts", r.benchmark));
            assert_eq!((r.ops, counts.commits), (1000, 1000));
            assert!(r.settle_secs.is_some(), "conditional runs write, so the engine settles");
        }
        assert!(results
            .iter()
            .filter(|r| !r.benchmark.conditional())
            .all(|r| r.conditional.is_none()));
    }

    #[test]
    fn an_engine_without_transactions_skips_only_the_conditional_workloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan_of(
            dir.path(),
            vec![Benchmark::FillRandom, Benchmark::TxnRandom, Benchmark::ReadRandom],
        );
        plan.engines = vec![EngineKind::MemoryWithoutTransactions, EngineKind::Memory];
        plan.repeat = 2;
        let (results, _) = run(&plan).unwrap();
        let ran: Vec<(EngineKind, Benchmark)> =
            results.iter().map(|r| (r.engine, r.benchmark)).collect();
        let without = EngineKind::MemoryWithoutTransactions;
        let round = [
            (without, Benchmark::FillRandom),
            (EngineKind::Memory, Benchmark::FillRandom),
            (EngineKind::Memory, Benchmark::TxnRandom),
            (without, Benchmark::ReadRandom),
            (EngineKind::Memory, Benchmark::ReadRandom),
        ];
        assert_eq!(ran, [round, round].concat());
    }

    fn plan_of(dir: &std::path::Path, benchmarks: Vec<Benchmark>) -> Plan {
        Plan {
            engines: vec![EngineKind::Memory],
            benchmarks,
            workload: WorkloadConfig {
                num: 1000,
                threads: 2,
                codec: KeyCodec::new(16).unwrap(),
                value_size: 50,
                batch_size: 10,
                durability: Durability::Buffered,
                compression_ratio: 0.5,
                shard_affine: false,
                hot_keys: crate::workload::DEFAULT_HOT_KEYS,
            },
            engine: EngineConfig {
                durability: Durability::Buffered,
                shards: None,
                memtable_mib: None,
                compression_per_level: None,
            },
            db_dir: dir.to_path_buf(),
            repeat: 1,
            seed: 1,
            progress: false,
            verbose: false,
        }
    }
}
