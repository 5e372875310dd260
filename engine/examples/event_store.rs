//! An event store on strata: aggregates as key prefixes, appends with an expected-version
//! check (retried on conflict), events read back in order by prefix, and an aggregate
//! snapshot every N events so a reader does not replay the whole stream. Runs the same
//! store on a `Db` and on a `ShardedDb` whose range partitioner keeps each aggregate's keys
//! on one shard, with several threads appending to one aggregate without locks of their own.
//!
//! ```text
//! cargo run -p strata --example event_store
//! ```
//!
//! Keys: `agg/{id}/version` (the stream's version), `agg/{id}/event/{version:010}` (one
//! event), `agg/{id}/balance` (the folded state) and `agg/{id}/snapshot`
//! (`{version}:{balance}`, written every `SNAPSHOT_EVERY` events).

use std::sync::Arc;

use strata::{Db, Error, Options, Partitioner, Result, ShardedDb, ShardedOptions, Transaction};

const SNAPSHOT_EVERY: u64 = 10;

/// What the two stores share for this example: a transaction with get and put.
trait Tx {
    fn get(&mut self, key: &str) -> Result<Option<strata::Bytes>>;
    fn put(&mut self, key: &str, value: &str) -> Result<()>;
    fn commit(self) -> Result<()>;
}

impl Tx for Transaction {
    fn get(&mut self, key: &str) -> Result<Option<strata::Bytes>> {
        Transaction::get(self, key)
    }
    fn put(&mut self, key: &str, value: &str) -> Result<()> {
        Transaction::put(self, key, value);
        Ok(())
    }
    fn commit(self) -> Result<()> {
        Transaction::commit(self)
    }
}

impl Tx for strata::ShardedTransaction {
    fn get(&mut self, key: &str) -> Result<Option<strata::Bytes>> {
        strata::ShardedTransaction::get(self, key)
    }
    fn put(&mut self, key: &str, value: &str) -> Result<()> {
        strata::ShardedTransaction::put(self, key, value)
    }
    fn commit(self) -> Result<()> {
        strata::ShardedTransaction::commit(self)
    }
}

fn parse(v: &[u8]) -> u64 {
    std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Appends `amount` as the next event of aggregate `id` if its version is still
/// `expected`; `Ok(None)` when someone else appended first (the caller decides again).
fn append<T: Tx>(mut tx: T, id: u32, expected: u64, amount: i64) -> Result<Option<u64>> {
    let version = tx.get(&format!("agg/{id}/version"))?.map_or(0, |v| parse(&v));
    if version != expected {
        return Ok(None);
    }
    let next = version + 1;
    tx.put(&format!("agg/{id}/event/{next:010}"), &amount.to_string())?;
    tx.put(&format!("agg/{id}/version"), &next.to_string())?;
    // The aggregate's state, folded in the same commit as the event: the snapshot written
    // every SNAPSHOT_EVERY events always matches the events before it.
    let balance = tx.get(&format!("agg/{id}/balance"))?.map_or(0, |v| parse(&v) as i64) + amount;
    tx.put(&format!("agg/{id}/balance"), &balance.to_string())?;
    if next % SNAPSHOT_EVERY == 0 {
        tx.put(&format!("agg/{id}/snapshot"), &format!("{next}:{balance}"))?;
    }
    match tx.commit() {
        Ok(()) => Ok(Some(next)),
        Err(Error::Conflict) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `threads` writers each append `per_thread` deposits of 1 to aggregate 7, reading the
/// version and retrying on conflict; returns the acknowledged appends.
fn run<T, F>(
    begin: Arc<F>,
    get_version: impl Fn() -> Result<u64>,
    threads: usize,
    per_thread: usize,
) -> Result<u64>
where
    F: Fn() -> T + Send + Sync + 'static,
    T: Tx + 'static,
{
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let begin = Arc::clone(&begin);
            std::thread::spawn(move || -> Result<u64> {
                let mut done = 0;
                let mut expected = 0;
                while done < per_thread as u64 {
                    match append(begin(), 7, expected, 1)? {
                        Some(v) => {
                            done += 1;
                            expected = v;
                        }
                        None => {
                            // Read the current version and try again on top of it.
                            let mut tx = begin();
                            expected = tx.get("agg/7/version")?.map_or(0, |v| parse(&v));
                        }
                    }
                }
                Ok(done)
            })
        })
        .collect();
    let mut acknowledged = 0;
    for w in workers {
        acknowledged += w.join().map_err(|_| Error::Internal("a writer panicked".into()))??;
    }
    assert_eq!(get_version()?, acknowledged, "every acknowledged append is in the stream");
    Ok(acknowledged)
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("create a temporary directory", ".", e))?;

    let db = Db::open(dir.path().join("plain"), Options::default())?;
    let handle = db.clone();
    let appended = run(
        Arc::new(move || handle.transaction()),
        || Ok(db.get("agg/7/version")?.map_or(0, |v| parse(&v))),
        4,
        50,
    )?;
    let events: Vec<u64> = db
        .prefix("agg/7/event/")
        .map(|r| r.map(|(k, _)| parse(&k[k.len() - 10..])))
        .collect::<Result<_>>()?;
    assert_eq!(events, (1..=appended).collect::<Vec<_>>(), "events in order, no gaps");
    let snapshot = db.get("agg/7/snapshot")?.map(|s| String::from_utf8_lossy(&s).into_owned());
    if let Some((at, balance)) = snapshot.as_deref().and_then(|s| s.split_once(':')) {
        // Every event is a deposit of 1: the snapshot at version N holds N.
        assert_eq!(at, balance, "the snapshot matches the events before it");
    }
    println!("Db: {appended} appends, {} events, latest snapshot {snapshot:?}", events.len());
    db.close()?;

    // Aggregates 0-4 on shard 0, 5-9 on shard 1: an aggregate's keys never span shards.
    let opts = ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"agg/5".to_vec()]));
    let sharded = ShardedDb::open(dir.path().join("sharded"), opts)?;
    let handle = sharded.clone();
    let appended = run(
        Arc::new(move || handle.transaction()),
        || Ok(sharded.get("agg/7/version")?.map_or(0, |v| parse(&v))),
        4,
        50,
    )?;
    println!(
        "ShardedDb: {appended} appends on shard {}, {} events",
        sharded.shard_of("agg/7/version"),
        sharded.prefix("agg/7/event/").count()
    );
    sharded.close()?;
    Ok(())
}
