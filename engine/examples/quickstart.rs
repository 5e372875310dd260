//! A tour of strata: open a database, write with each durability, batch, read, scan both
//! ways, take a snapshot, flush, and print the metrics.
//!
//! `cargo run --release -p strata --example quickstart [DIR]`

use std::time::Instant;

use strata::{Db, Durability, Options, WriteBatch};

fn main() -> strata::Result<()> {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().map_err(|e| strata::Error::io("create temp dir", "/tmp", e))?;
    let path = dir.unwrap_or_else(|| tmp.path().join("quickstart"));
    let db = Db::open(&path, Options::default().memtable_size(4 << 20))?;

    let n = 200_000u32;
    let started = Instant::now();
    let mut batch = WriteBatch::new();
    for i in 0..n {
        batch.put(format!("user/{i:08}"), format!("{{\"id\":{i},\"name\":\"user {i}\"}}"));
        if batch.len() == 1000 {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    db.write(batch)?;
    let secs = started.elapsed().as_secs_f64();
    println!("wrote {n} keys in batches of 1000: {:.0} keys/s", f64::from(n) / secs);

    db.put_with("config/mode", "safe", Durability::Sync)?;
    db.write_with(
        {
            let mut b = WriteBatch::new();
            b.put("balance/alice", "90");
            b.put("balance/bob", "110");
            b
        },
        Durability::Sync,
    )?;

    let snapshot = db.snapshot();
    db.delete("user/00000042")?;
    println!("user 42 now: {:?}", db.get("user/00000042")?);
    println!(
        "user 42 in the snapshot: {:?}",
        snapshot.get("user/00000042")?.map(|v| String::from_utf8_lossy(&v).into_owned())
    );

    let first: Vec<_> =
        db.prefix("user/").take(3).map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    let last: Vec<_> =
        db.prefix("user/").rev().take(3).map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    println!("first users: {first:?}\nlast users: {last:?}");
    println!("balances: {:?}", db.prefix("balance/").collect::<Result<Vec<_>, _>>()?);

    db.flush()?;
    println!("\n{}", db.metrics());
    db.close()
}
