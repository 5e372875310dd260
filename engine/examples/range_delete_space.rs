//! The space a range delete gives back: writes N keys in key order (16-byte keys, 100-byte
//! values, default options), compacts, deletes the last 90% with one `delete_range`,
//! compacts again, and compares the tables' size with that of a database holding only the
//! remaining 10%. Also times the range delete and the compaction that reclaims the space.
//!
//! ```text
//! cargo run --release -p strata --example range_delete_space -- [N]
//! ```
//! Default N = 10,000,000. Uses two temporary directories.

use std::time::Instant;

use strata::{Db, Durability, Options};

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn table_bytes(db: &Db) -> u64 {
    db.metrics().levels.iter().map(|l| l.bytes).sum()
}

fn fill(db: &Db, n: u64) -> strata::Result<()> {
    let value = [7u8; 100];
    for i in 0..n {
        db.put_with(key(i), value, Durability::None)?;
    }
    db.compact()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(10_000_000);
    let keep = n / 10;
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path(), Options::default())?;
    fill(&db, n)?;
    let full = table_bytes(&db);

    let started = Instant::now();
    db.delete_range(key(keep)..key(n))?;
    let delete_time = started.elapsed();
    let started = Instant::now();
    db.compact()?;
    let compact_time = started.elapsed();
    let after = table_bytes(&db);
    let left = db.iter().count() as u64;
    assert_eq!(left, keep, "keys left after the range delete");
    db.close()?;

    let reference_dir = tempfile::tempdir()?;
    let reference = Db::open(reference_dir.path(), Options::default())?;
    fill(&reference, keep)?;
    let needed = table_bytes(&reference);
    reference.close()?;

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("{n} keys: {:.1} MiB of tables", mib(full));
    println!("delete_range of {} keys: {:.1} µs", n - keep, delete_time.as_secs_f64() * 1e6);
    println!("compaction after it: {:.2} s", compact_time.as_secs_f64());
    println!(
        "after: {:.1} MiB; the remaining {keep} keys alone: {:.1} MiB (ratio {:.3})",
        mib(after),
        mib(needed),
        after as f64 / needed.max(1) as f64
    );
    Ok(())
}
