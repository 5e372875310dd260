//! Model-based property test (`strata_testkit::model_test`): one random operation sequence
//! (writes through every write path, gets, scans from both ends, prefix scans, snapshots,
//! flushes, close and reopen) run against each kind of store through `strata::KvStore`,
//! agreeing with a `BTreeMap` after every step:
//! * a `Db` on the simulated file system;
//! * a hash-partitioned `ShardedDb` (4 shards) and a range-partitioned one (split at `c`, `e`
//!   and `eg`), on a real directory; and both again routed by a shard key (a 3-byte prefix
//!   under hashing; the bytes before `/` under ranges, which does not keep key order, so
//!   scans must merge every shard).
//!
//! Every store has tiny memtables and blocks, so flushes happen and scans cross tables.
//! `STRATA_LONG_TESTS=1` runs 20 times as many cases.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use strata::{Db, Durability, Options, Partitioner, ShardKey, ShardedDb, ShardedOptions};
use strata_core::sim::SimFileSystem;
use strata_testkit::model_test::{ops, run};

fn engine_options() -> Options {
    Options::default()
        .memtable_size(4096)
        .block_size(256)
        .l0_slowdown_trigger(10_000)
        .l0_stop_trigger(10_000)
        .durability(Durability::Buffered)
}

/// `default` proptest cases, or 20 times as many with `STRATA_LONG_TESTS=1`.
fn cases(default: u32) -> u32 {
    if std::env::var_os("STRATA_LONG_TESTS").is_some() {
        default * 20
    } else {
        default
    }
}

fn sharded(
    partitioner: Partitioner,
    shard_key: ShardKey,
    dir: &Path,
) -> impl Fn() -> ShardedDb + '_ {
    let shards = match &partitioner {
        Partitioner::Hash => 4,
        Partitioner::Range(splits) => splits.len() + 1,
    };
    move || {
        let options = ShardedOptions::new(shards)
            .partitioner(partitioner.clone())
            .shard_key(shard_key.clone())
            .engine(engine_options());
        ShardedDb::open(dir, options).expect("open sharded")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn db_matches_a_btreemap(ops in ops(300)) {
        let fs = SimFileSystem::new();
        run(|| Db::open("/db", engine_options().file_system(Arc::new(fs.clone()))).expect("open"), ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]

    #[test]
    fn hash_sharded_matches_a_btreemap(ops in ops(60)) {
        let dir = tempfile::tempdir().unwrap();
        run(sharded(Partitioner::Hash, ShardKey::Whole, dir.path()), ops);
    }

    #[test]
    fn range_sharded_matches_a_btreemap(ops in ops(60)) {
        let dir = tempfile::tempdir().unwrap();
        let splits = vec![b"c".to_vec(), b"e".to_vec(), b"eg".to_vec()];
        run(sharded(Partitioner::Range(splits), ShardKey::Whole, dir.path()), ops);
    }

    #[test]
    fn hash_sharded_by_a_prefix_matches_a_btreemap(ops in ops(60)) {
        let dir = tempfile::tempdir().unwrap();
        run(sharded(Partitioner::Hash, ShardKey::Prefix(3), dir.path()), ops);
    }

    #[test]
    fn range_sharded_by_a_segment_matches_a_btreemap(ops in ops(60)) {
        let dir = tempfile::tempdir().unwrap();
        let splits = vec![b"c".to_vec(), b"k05".to_vec(), b"k10".to_vec()];
        run(sharded(Partitioner::Range(splits), ShardKey::UntilByte(b'/'), dir.path()), ops);
    }
}
