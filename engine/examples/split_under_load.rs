//! Splits a hot shard while writers keep writing, and reports what it cost them: the
//! split's duration, the fence (how long writes to the shard waited at the cut-over), and
//! the writers' throughput before, during and after.
//!
//! ```text
//! cargo run --release -p strata --example split_under_load -- [KEYS] [WRITERS] [DIR]
//! ```
//! Defaults: 1,000,000 keys of 16 bytes with 100-byte values on one range shard, 2 writer
//! threads writing random keys with the default durability, a temporary directory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{Partitioner, ShardedDb, ShardedOptions, WriteBatch};

fn key(i: u64) -> [u8; 16] {
    // Spread over the key space like fillrandom's keys, but reproducible.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&h.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let writers: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir = args.next().map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let db = ShardedDb::open(&dir, ShardedOptions::new(1).partitioner(Partitioner::Range(vec![])))?;
    let value = [7u8; 100];
    let load = Instant::now();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let mut b = WriteBatch::new();
        for &i in chunk {
            b.put(key(i), value);
        }
        db.write(b)?;
    }
    db.flush()?;
    println!("loaded {keys} keys in {:.2?}", load.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..writers as u64)
        .map(|t| {
            let (db, stop, written) = (db.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || -> strata::Result<()> {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    db.put(key(i.wrapping_mul(2_654_435_761) % keys), value)?;
                    written.fetch_add(1, Ordering::Relaxed);
                    i += writers as u64;
                }
                Ok(())
            })
        })
        .collect();
    let rate = |d: Duration| {
        let before = written.load(Ordering::Relaxed);
        std::thread::sleep(d);
        (written.load(Ordering::Relaxed) - before) as f64 / d.as_secs_f64()
    };
    let before = rate(Duration::from_secs(3));
    let started = Instant::now();
    let split = db.split_shard(0)?;
    let mut during = Vec::new();
    while !split.is_finished() && started.elapsed() < Duration::from_secs(600) {
        during.push(rate(Duration::from_millis(500)));
    }
    split.wait()?;
    let took = started.elapsed();
    let after = rate(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "a writer panicked")??;
    }
    let p = split.progress();
    during.sort_by(f64::total_cmp);
    let median = during.get(during.len() / 2).copied().unwrap_or(0.0);
    let worst = during.first().copied().unwrap_or(0.0);
    println!(
        "split of {keys} keys with {writers} writers: {took:.2?}; copied {}, caught up {}, \
         cleaned {}; fence {:.2?}",
        p.copied,
        p.caught_up,
        p.cleaned,
        p.fence.unwrap_or_default()
    );
    println!(
        "writes/s: before {before:.0}, during (median of 0.5 s windows) {median:.0}, \
         worst window {worst:.0}, after {after:.0}"
    );
    let counts: Vec<usize> =
        (0..db.shard_count()).map(|i| db.shard(i).map_or(0, |s| s.iter().count())).collect();
    println!("keys per shard after the split: {counts:?}");
    db.close()?;
    Ok(())
}
