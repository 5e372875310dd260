//! `strata-bench`: a db_bench-style benchmark harness for strata and its peers.
//!
//! See docs/benchmarks.md for the workloads, the metrics and the peers' settings.

#![forbid(unsafe_code)]

mod counters;
mod disk;
mod engines;
mod keys;
mod report;
mod runner;
mod stats;
mod svg;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::counters::COUNTER_BYTES;
use crate::engines::{Durability, EngineConfig, EngineKind};
use crate::keys::KeyCodec;
use crate::report::RunContext;
use crate::runner::Plan;
use crate::workload::{Benchmark, WorkloadConfig};

/// Run db_bench-style workloads against strata and, when built with their features, against
/// RocksDB, fjall, sled and redb, interleaved in one run.
#[derive(Parser, Debug)]
#[command(name = "strata-bench", version, about, long_about = None)]
struct Cli {
    /// Comma-separated workloads, run in order; state carries from one to the next (fills start
    /// from an empty database). One of: fillseq, fillrandom, fillbatch, fillsync, bulkload,
    /// overwrite, deleterandom, deleterange, rangetombstones, readrandom, readmissing, readseq,
    /// readreverse, seekrandom, readwhilewriting, txnrandom, txncontended, casrandom.
    #[arg(long, value_delimiter = ',', default_value = "fillseq,fillrandom,readrandom")]
    benchmarks: Vec<Benchmark>,
    /// Key space size and operations per benchmark run (split across --threads).
    #[arg(long, default_value_t = 1_000_000)]
    num: u64,
    /// Comma-separated engines: strata, rocksdb, fjall, sled, redb (peers need their cargo feature).
    #[arg(long, value_delimiter = ',', default_value = "strata")]
    engine: Vec<EngineKind>,
    /// Run strata as a ShardedDb of N shards (hash partitioner); without it, a plain Db.
    #[arg(long)]
    shards: Option<usize>,
    /// With --shards: writer thread t writes only keys of shard t mod N (random keys, redrawn
    /// until one routes there), so that writers do not share shards. For fillrandom,
    /// overwrite and fillsync.
    #[arg(long)]
    shard_affine: bool,
    /// strata only: memtable size in MiB (db_bench's --write_buffer_size); default: strata's 64.
    #[arg(long)]
    memtable_mib: Option<usize>,
    /// strata only: block compression per level, comma-separated, `none`, `lz4` or `zstd:LEVEL`,
    /// the last repeating for deeper levels (RocksDB's compression_per_level); e.g.
    /// `none,zstd:1` leaves level 0 raw. Default: lz4 everywhere.
    #[arg(long, value_parser = parse_compression_per_level)]
    compression_per_level: Option<CompressionPerLevel>,
    /// Client threads sharing the key space (readers, for readwhilewriting).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Key length in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Writes per batch in fillbatch.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Keys txncontended's threads share (the first N keys of the key space).
    #[arg(long, default_value_t = workload::DEFAULT_HOT_KEYS)]
    hot_keys: u64,
    /// Durability of each write: sync (fsync per write), buffered (log handed to the OS), none.
    #[arg(long, default_value = "buffered")]
    durability: Durability,
    /// Directory for the databases (one subdirectory per engine; wiped at start).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Rounds; engines run interleaved and medians are reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Print one JSON object per result line instead of the table.
    #[arg(long)]
    json: bool,
    /// Write an SVG report (throughput over time and latency percentiles) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Compressed size / raw size that values aim for (db_bench's --compression_ratio).
    #[arg(long, default_value_t = 0.5)]
    compression_ratio: f64,
    /// Seed of the random keys (the same for every engine).
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
}

/// The parsed `--compression-per-level` (a newtype, so that clap takes it as one value).
#[derive(Clone, Debug)]
struct CompressionPerLevel(Vec<strata::Compression>);

/// Parses `none,lz4,zstd:1,...`.
fn parse_compression_per_level(s: &str) -> Result<CompressionPerLevel, String> {
    let levels = s
        .split(',')
        .map(|part| match part.trim() {
            "none" => Ok(strata::Compression::None),
            "lz4" => Ok(strata::Compression::Lz4),
            other => other
                .strip_prefix("zstd:")
                .and_then(|level| level.parse().ok())
                .map(|level| strata::Compression::Zstd { level })
                .ok_or_else(|| format!("'{other}' is none of none, lz4, zstd:LEVEL")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompressionPerLevel(levels))
}

fn validate(cli: &Cli) -> Result<(), String> {
    if cli.num == 0 {
        return Err("--num must be at least 1".into());
    }
    if cli.threads == 0 || cli.repeat == 0 || cli.batch_size == 0 || cli.value_size == 0 {
        return Err("--threads, --repeat, --batch-size and --value-size must be at least 1".into());
    }
    if let Some(mib) = cli.memtable_mib {
        if mib == 0 || mib.checked_mul(1 << 20).is_none() {
            return Err("--memtable-mib must be at least 1 and fit in memory".into());
        }
    }
    if cli.shards == Some(0) {
        return Err("--shards must be at least 1".into());
    }
    if cli.shard_affine && cli.shards.is_none() {
        return Err("--shard-affine needs --shards".into());
    }
    if !(0.0..=1.0).contains(&cli.compression_ratio) {
        return Err("--compression-ratio must be within 0..=1".into());
    }
    if cli.benchmarks.iter().any(|b| b.conditional()) && cli.value_size < COUNTER_BYTES {
        return Err(format!(
            "--value-size must be at least {COUNTER_BYTES} for txnrandom, txncontended and \
             casrandom (a value holds a {COUNTER_BYTES}-byte counter)"
        ));
    }
    if cli.benchmarks.contains(&Benchmark::TxnContended)
        && (cli.hot_keys == 0 || cli.hot_keys > cli.num)
    {
        return Err("--hot-keys must be between 1 and --num".into());
    }
    if cli.benchmarks.is_empty() || cli.engine.is_empty() {
        return Err("--benchmarks and --engine must name at least one".into());
    }
    let mut seen = Vec::new();
    for e in &cli.engine {
        if seen.contains(e) {
            return Err(format!("engine {e} is listed twice"));
        }
        seen.push(*e);
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    validate(&cli)?;
    let codec = KeyCodec::new(cli.key_size)?;
    if cli.shards.is_some() && cli.engine.iter().any(|e| *e != EngineKind::Strata) {
        eprintln!("note: --shards applies to strata only; the peers run as single databases");
    }
    if cli.memtable_mib.is_some() && cli.engine.iter().any(|e| *e != EngineKind::Strata) {
        eprintln!("note: --memtable-mib applies to strata only; the peers keep their defaults");
    }
    if cli.compression_per_level.is_some() && cli.engine.iter().any(|e| *e != EngineKind::Strata) {
        eprintln!(
            "note: --compression-per-level applies to strata only; the peers keep their defaults"
        );
    }
    let db_dir = cli.db.clone().unwrap_or_else(|| std::env::temp_dir().join("strata-bench"));
    let plan = Plan {
        engines: cli.engine.clone(),
        benchmarks: cli.benchmarks.clone(),
        workload: WorkloadConfig {
            num: cli.num,
            threads: cli.threads,
            codec,
            value_size: cli.value_size,
            batch_size: cli.batch_size,
            durability: cli.durability,
            compression_ratio: cli.compression_ratio,
            shard_affine: cli.shard_affine,
            hot_keys: cli.hot_keys,
        },
        engine: EngineConfig {
            durability: cli.durability,
            shards: cli.shards,
            memtable_mib: cli.memtable_mib,
            compression_per_level: cli.compression_per_level.clone().map(|c| c.0),
        },
        db_dir: db_dir.clone(),
        repeat: cli.repeat,
        seed: cli.seed,
        progress: !cli.json && runner::terminal_attached(),
        verbose: !cli.json,
    };
    let (results, settings) = runner::run(&plan)?;
    let ctx = RunContext {
        threads: cli.threads,
        shards: cli.shards,
        num: cli.num,
        key_size: cli.key_size,
        value_size: cli.value_size,
        durability: cli.durability.to_string(),
    };
    let summaries = report::summarize(&results, &settings, &ctx);
    if cli.json {
        print!("{}", report::json_lines(&summaries));
    } else {
        println!(
            "strata-bench: num {} threads {} key {} B value {} B durability {} db {}\n",
            cli.num,
            cli.threads,
            cli.key_size,
            cli.value_size,
            cli.durability,
            db_dir.display()
        );
        print!("{}", report::table(&summaries, &settings));
    }
    if let Some(path) = &cli.report {
        let panels = svg::panels(&summaries, &results);
        let title = format!(
            "strata-bench: num {} threads {} value {} B durability {}",
            cli.num, cli.threads, cli.value_size, cli.durability
        );
        std::fs::write(path, svg::render(&title, &panels))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        if !cli.json {
            eprintln!("report written to {}", path.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_per_level_parses_none_lz4_and_zstd_levels() {
        let parsed = parse_compression_per_level("none, zstd:3,lz4").unwrap().0;
        assert_eq!(
            parsed,
            vec![
                strata::Compression::None,
                strata::Compression::Zstd { level: 3 },
                strata::Compression::Lz4
            ]
        );
        for bad in ["", "zstd", "zstd:x", "lz4:1", "none,,zstd:1"] {
            assert!(parse_compression_per_level(bad).is_err(), "{bad:?} accepted");
        }
    }
}
