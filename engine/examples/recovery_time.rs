//! How long `Db::open` takes after a kill -9: writes N random keys (16-byte keys, 100-byte
//! values, default options unless told) in a child process that then dies without closing
//! (`abort`, which runs no destructor: what kill -9 leaves), then times the reopen and
//! reports the log bytes it replayed.
//!
//! ```text
//! cargo run --release -p strata --example recovery_time -- [N] [MEMTABLE_MIB] [DIR]
//! ```
//! Defaults: N = 10,000,000, the default memtable size, a temporary directory.
//! `recovery_time --open DIR [MEMTABLE_MIB]` only reopens (and aborts again, keeping the
//! logs), for profiling the open alone.

use std::process::Command;
use std::time::Instant;

use strata::{Db, Options};

fn options(memtable_mib: Option<usize>) -> Options {
    match memtable_mib {
        Some(m) => Options::default().memtable_size(m << 20),
        None => Options::default(),
    }
}

fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        // The writer: fill, then die as kill -9 would.
        let dir = args.get(2).ok_or("child needs a directory")?;
        let n: u64 = args.get(3).ok_or("child needs N")?.parse()?;
        let mib = args.get(4).and_then(|s| s.parse().ok());
        let db = Db::open(dir, options(mib))?;
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let value = [b'v'; 100];
        for _ in 0..n {
            // xorshift: random keys, as fillrandom's
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&x.to_be_bytes());
            key[8..].copy_from_slice(&(x.rotate_left(29)).to_be_bytes());
            db.put(key, value)?;
        }
        std::process::abort();
    }
    if args.get(1).map(String::as_str) == Some("--open") {
        // Only the reopen of a database a child left (for profiling it).
        let dir = args.get(2).ok_or("--open needs a directory")?;
        let opened = Instant::now();
        let _db = Db::open(dir, options(args.get(3).and_then(|s| s.parse().ok())))?;
        println!("Db::open: {:.2?}", opened.elapsed());
        std::process::abort(); // leave the logs for the next try
    }
    let n: u64 = args.get(1).map_or(Ok(10_000_000), |s| s.parse())?;
    let mib: Option<usize> = args.get(2).map(|s| s.parse()).transpose()?;
    let tmp = tempfile::tempdir()?;
    let dir = args.get(3).map_or_else(|| tmp.path().join("db"), Into::into);
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?);
    child.arg("--child").arg(&dir).arg(n.to_string());
    if let Some(m) = mib {
        child.arg(m.to_string());
    }
    let status = child.status()?;
    println!("wrote {n} keys in {:.1?} (child exit: {status})", started.elapsed());
    let logs = log_bytes(&dir);
    let opened = Instant::now();
    let db = Db::open(&dir, options(mib))?;
    let took = opened.elapsed();
    let m = db.metrics();
    println!(
        "Db::open after kill -9: {took:.2?}; live log bytes before open {logs} ({:.1} MiB); \
         memtable {} MiB; tables after open {}",
        logs as f64 / (1 << 20) as f64,
        mib.unwrap_or(64),
        m.levels.iter().map(|l| l.files).sum::<usize>()
    );
    db.close()?;
    Ok(())
}
