//! Summaries of the runs (medians over `--repeat` rounds) as a text table or JSON lines.

use std::fmt::Write as _;

use serde::Serialize;

use crate::engines::EngineKind;
use crate::runner::RunResult;
use crate::stats::{self, median, median_of_present};
use crate::workload::ConditionalCounts;

/// Bytes per "MB" in MB/s, as db_bench computes it (MiB).
const MB: f64 = 1_048_576.0;

/// Parameters of the whole run, repeated in every summary so each JSON line stands alone.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// Client threads.
    pub threads: usize,
    /// strata shards (`None` for a plain `Db`).
    pub shards: Option<usize>,
    /// Key space size.
    pub num: u64,
    /// Key length.
    pub key_size: usize,
    /// Value length.
    pub value_size: usize,
    /// Durability name.
    pub durability: String,
}

/// One (engine, benchmark) line of the report: each number is the median over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Engine name.
    pub engine: String,
    /// Workload name.
    pub benchmark: String,
    /// Client threads.
    pub threads: usize,
    /// strata shards; null for a plain `Db` and for peers.
    pub shards: Option<usize>,
    /// Key space size.
    pub num: u64,
    /// Operations done.
    pub ops: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// User data (key + value) per second, MiB/s as db_bench.
    pub mb_per_sec: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Maximum latency, µs.
    pub max_us: f64,
    /// Lookups that found their key (reads).
    pub found: Option<u64>,
    /// Lookups attempted (reads).
    pub lookups: Option<u64>,
    /// Acknowledged commits (conditional workloads).
    pub commits: Option<u64>,
    /// Attempts refused with a conflict (conditional workloads).
    pub conflicts: Option<u64>,
    /// Compare-and-swap attempts whose expected value no longer held (casrandom).
    pub condition_failed: Option<u64>,
    /// Attempts made again after a refusal (conditional workloads).
    pub retries: Option<u64>,
    /// Disk bytes written / user bytes written, after settling (writes).
    pub write_amp: Option<f64>,
    /// The engine's own count of bytes written / user bytes written (strata), else null.
    pub engine_write_amp: Option<f64>,
    /// Size on disk / live user data.
    pub space_amp: Option<f64>,
    /// Seconds writers were stalled (engines that report it).
    pub stall_secs: Option<f64>,
    /// Seconds spent settling flushes/compactions after the run (writes; not in `secs`).
    pub settle_secs: Option<f64>,
    /// Rounds the medians are taken over.
    pub repeats: usize,
    /// Key length.
    pub key_size: usize,
    /// Value length.
    pub value_size: usize,
    /// Durability of writes.
    pub durability: String,
    /// Engine settings description.
    pub settings: String,
    /// The engine's metrics table after the median run (strata), else null.
    pub metrics: Option<String>,
}

/// One summary with the index (into the results) of its median-throughput run, whose timeline and
/// latency curve the SVG report draws.
pub struct Summarized {
    /// The medians.
    pub summary: Summary,
    /// Index of the representative run.
    pub representative: usize,
}

/// Group runs by (benchmark position, engine), in run order, and take medians over rounds.
pub fn summarize(
    results: &[RunResult],
    settings: &[(EngineKind, String)],
    ctx: &RunContext,
) -> Vec<Summarized> {
    let mut groups: Vec<((usize, EngineKind), Vec<usize>)> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let key = (r.position, r.engine);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|((_, engine), members)| {
            let runs: Vec<&RunResult> = members.iter().map(|&i| &results[i]).collect();
            let per_sec: Vec<f64> = runs.iter().map(|r| r.ops as f64 / r.secs.max(1e-9)).collect();
            let mb: Vec<f64> =
                runs.iter().map(|r| r.bytes as f64 / MB / r.secs.max(1e-9)).collect();
            let of = |f: &dyn Fn(&RunResult) -> f64| -> f64 {
                median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(0.0)
            };
            let of_opt = |f: &dyn Fn(&RunResult) -> Option<f64>| -> Option<f64> {
                median_of_present(runs.iter().map(|r| f(r)))
            };
            let of_count = |f: &dyn Fn(&ConditionalCounts) -> Option<u64>| -> Option<u64> {
                of_opt(&|r| r.conditional.as_ref().and_then(f).map(|n| n as f64))
                    .map(|n| n.round() as u64)
            };
            let representative = members[stats::median_index(&per_sec).unwrap_or(0)];
            let rep = &results[representative];
            let summary = Summary {
                engine: engine.name().to_string(),
                benchmark: runs[0].benchmark.name().to_string(),
                threads: ctx.threads,
                shards: if engine == EngineKind::Strata { ctx.shards } else { None },
                num: ctx.num,
                ops: of(&|r| r.ops as f64).round() as u64,
                secs: of(&|r| r.secs),
                ops_per_sec: median(&per_sec).unwrap_or(0.0),
                mb_per_sec: median(&mb).unwrap_or(0.0),
                p50_us: of(&|r| stats::quantile_us(&r.histogram, 0.5)),
                p99_us: of(&|r| stats::quantile_us(&r.histogram, 0.99)),
                p999_us: of(&|r| stats::quantile_us(&r.histogram, 0.999)),
                max_us: of(&|r| stats::quantile_us(&r.histogram, 1.0)),
                found: of_opt(&|r| r.found.map(|f| f as f64)).map(|f| f.round() as u64),
                lookups: of_opt(&|r| r.lookups.map(|f| f as f64)).map(|f| f.round() as u64),
                commits: of_count(&|c| Some(c.commits)),
                conflicts: of_count(&|c| Some(c.conflicts)),
                condition_failed: of_count(&|c| c.condition_failed),
                retries: of_count(&|c| Some(c.retries)),
                write_amp: of_opt(&|r| r.write_amp),
                engine_write_amp: of_opt(&|r| r.engine_write_amp),
                space_amp: of_opt(&|r| r.space_amp),
                stall_secs: of_opt(&|r| r.stall_secs),
                settle_secs: of_opt(&|r| r.settle_secs),
                repeats: runs.len(),
                key_size: ctx.key_size,
                value_size: ctx.value_size,
                durability: ctx.durability.clone(),
                settings: settings
                    .iter()
                    .find(|(k, _)| *k == engine)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default(),
                metrics: rep.metrics.clone(),
            };
            Summarized { summary, representative }
        })
        .collect()
}

/// One JSON object per line.
pub fn json_lines(summaries: &[Summarized]) -> String {
    let mut out = String::new();
    for s in summaries {
        // Serializing a struct of numbers and strings cannot fail.
        out.push_str(&serde_json::to_string(&s.summary).expect("summary serializes"));
        out.push('\n');
    }
    out
}

fn opt(v: Option<f64>, precision: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.precision$}"))
}

/// The last column of a conditional workload's line: what its attempts came to.
fn conditional_detail(commits: u64, s: &Summary) -> String {
    let mut detail = format!("commits {commits}, conflicts {}", s.conflicts.unwrap_or(0));
    if let Some(failed) = s.condition_failed {
        let _ = write!(detail, ", condition failed {failed}");
    }
    let _ = write!(detail, ", retries {} (no lost updates)", s.retries.unwrap_or(0));
    detail
}

/// The human-readable table, then the engines' settings and metrics.
pub fn table(summaries: &[Summarized], settings: &[(EngineKind, String)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Engines:");
    for (kind, s) in settings {
        let _ = writeln!(out, "  {:<8} {s}", kind.name());
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<8} {:>10} {:>8} {:>12} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8} found / commits",
        "benchmark",
        "engine",
        "ops",
        "secs",
        "ops/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "w-amp",
        "s-amp",
        "stall s",
    );
    for s in summaries.iter().map(|s| &s.summary) {
        let found = match (s.found, s.lookups, s.commits) {
            (Some(f), Some(n), _) if n > 0 => {
                format!("{f}/{n} ({:.1}%)", 100.0 * f as f64 / n as f64)
            }
            (_, _, Some(commits)) => conditional_detail(commits, s),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:>10} {:>8.2} {:>12.0} {:>8.1} {:>9.2} {:>9.2} {:>9.2} {:>10.1} {:>8} {:>8} {:>8} {}",
            s.benchmark,
            s.engine,
            s.ops,
            s.secs,
            s.ops_per_sec,
            s.mb_per_sec,
            s.p50_us,
            s.p99_us,
            s.p999_us,
            s.max_us,
            opt(s.write_amp, 2),
            opt(s.space_amp, 2),
            opt(s.stall_secs, 2),
            found
        );
    }
    if let Some(s) = summaries.first() {
        if s.summary.repeats > 1 {
            let _ = writeln!(out, "\n(medians over {} interleaved rounds)", s.summary.repeats);
        }
    }
    for s in summaries.iter().map(|s| &s.summary) {
        if let Some(metrics) = &s.metrics {
            let _ = writeln!(out, "\n{} metrics after {}:\n{metrics}", s.engine, s.benchmark);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::new_histogram;
    use crate::workload::Benchmark;

    pub(crate) fn result(
        engine: EngineKind,
        bench: Benchmark,
        round: usize,
        ops_per_sec: f64,
    ) -> RunResult {
        let mut histogram = new_histogram();
        for i in 1..=1000u64 {
            histogram.record(i * 1000 * (round as u64 + 1)).unwrap();
        }
        RunResult {
            engine,
            benchmark: bench,
            position: 0,
            ops: 1000,
            secs: 1000.0 / ops_per_sec,
            bytes: 116_000,
            found: bench.counts_found().then_some(900),
            lookups: bench.counts_found().then_some(1000),
            histogram,
            timeline: vec![400, 600],
            write_amp: bench.writes().then_some(2.0 + round as f64),
            engine_write_amp: None,
            space_amp: Some(1.5),
            stall_secs: None,
            settle_secs: None,
            metrics: None,
            conditional: bench.conditional().then_some(ConditionalCounts {
                commits: 1000,
                conflicts: 10 * (round as u64 + 1),
                condition_failed: (bench == Benchmark::CasRandom).then_some(3),
                retries: 10 * (round as u64 + 1) + 3 * u64::from(bench == Benchmark::CasRandom),
            }),
        }
    }

    pub(crate) fn ctx() -> RunContext {
        RunContext {
            threads: 1,
            shards: None,
            num: 1000,
            key_size: 16,
            value_size: 100,
            durability: "buffered".into(),
        }
    }

    #[test]
    fn medians_over_rounds_per_engine() {
        let results = vec![
            result(EngineKind::Memory, Benchmark::FillRandom, 0, 100.0),
            result(EngineKind::Strata, Benchmark::FillRandom, 0, 1000.0),
            result(EngineKind::Memory, Benchmark::FillRandom, 1, 300.0),
            result(EngineKind::Strata, Benchmark::FillRandom, 1, 3000.0),
            result(EngineKind::Memory, Benchmark::FillRandom, 2, 200.0),
            result(EngineKind::Strata, Benchmark::FillRandom, 2, 2000.0),
        ];
        let s = summarize(&results, &[], &ctx());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].summary.engine, "memory");
        assert_eq!(s[0].summary.repeats, 3);
        assert!((s[0].summary.ops_per_sec - 200.0).abs() < 1e-6);
        assert!((s[1].summary.ops_per_sec - 2000.0).abs() < 1e-6);
        // The representative run is the median-throughput one (round 2 of each engine).
        assert_eq!(s[0].representative, 4);
        assert_eq!(s[1].representative, 5);
        // write_amp rounds are 2, 3, 4: median 3.
        assert_eq!(s[0].summary.write_amp, Some(3.0));
        // p50 of the rounds are ~500, ~1000, ~1500 µs: median ~1000.
        assert!((s[0].summary.p50_us - 1000.0).abs() < 5.0, "{}", s[0].summary.p50_us);
    }

    #[test]
    fn json_lines_have_the_documented_fields() {
        let results = vec![
            result(EngineKind::Memory, Benchmark::FillRandom, 0, 100.0),
            result(EngineKind::Memory, Benchmark::ReadRandom, 0, 100.0),
        ];
        let mut results = results;
        results[1].position = 1;
        let text = json_lines(&summarize(&results, &[(EngineKind::Memory, "x".into())], &ctx()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in [
                "engine",
                "benchmark",
                "threads",
                "shards",
                "num",
                "ops",
                "secs",
                "ops_per_sec",
                "mb_per_sec",
                "p50_us",
                "p99_us",
                "p999_us",
                "write_amp",
                "space_amp",
            ] {
                assert!(v.get(field).is_some(), "missing {field} in {line}");
            }
            assert!(v["shards"].is_null());
            assert_eq!(v["settings"], "x");
        }
        let fill: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let read: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(fill["benchmark"], "fillrandom");
        assert_eq!(fill["write_amp"], 2.0);
        assert!(fill["found"].is_null());
        assert!(read["write_amp"].is_null(), "reads have no write amplification");
        assert_eq!((read["found"].as_u64(), read["lookups"].as_u64()), (Some(900), Some(1000)));
        let mb = read["mb_per_sec"].as_f64().unwrap();
        assert!((mb - 116_000.0 / MB / 10.0).abs() < 1e-9);
    }

    #[test]
    fn conditional_counts_reach_json_and_the_table() {
        let mut results: Vec<RunResult> = (0..3)
            .map(|round| result(EngineKind::Memory, Benchmark::CasRandom, round, 100.0))
            .collect();
        results.push(result(EngineKind::Memory, Benchmark::TxnContended, 0, 100.0));
        results[3].position = 1;
        let summaries = summarize(&results, &[], &ctx());
        let text = json_lines(&summaries);
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // Conflicts of the three rounds are 10, 20, 30: the median is 20.
        assert_eq!(lines[0]["commits"], 1000);
        assert_eq!(lines[0]["conflicts"], 20);
        assert_eq!(lines[0]["condition_failed"], 3);
        assert_eq!(lines[0]["retries"], 23);
        assert!(lines[1]["condition_failed"].is_null(), "transactions have no condition");
        assert_eq!(lines[1]["retries"], 10);
        let table = table(&summaries, &[]);
        assert!(
            table.contains("commits 1000, conflicts 20, condition failed 3, retries 23"),
            "{table}"
        );
        assert!(table.contains("commits 1000, conflicts 10, retries 10"), "{table}");
        // Other workloads carry none of it.
        let plain = json_lines(&summarize(
            &[result(EngineKind::Memory, Benchmark::FillRandom, 0, 100.0)],
            &[],
            &ctx(),
        ));
        let plain: serde_json::Value = serde_json::from_str(plain.trim()).unwrap();
        for field in ["commits", "conflicts", "condition_failed", "retries"] {
            assert!(plain[field].is_null(), "{field} on fillrandom");
        }
    }

    #[test]
    fn table_lists_every_line() {
        let results = vec![result(EngineKind::Memory, Benchmark::ReadRandom, 0, 100.0)];
        let t = table(&summarize(&results, &[], &ctx()), &[]);
        assert!(t.contains("readrandom"));
        assert!(t.contains("900/1000 (90.0%)"));
    }
}
