//! `TableWriter` and `Db::ingest`: ingested tables read like writes made at the ingest's
//! sequence number — newer than what they overlap, invisible to older snapshots — through
//! flushes, compactions and reopens; bad input is refused; a failed operation or power cut
//! at any step leaves all of an ingest or none; transactions that read an ingested key
//! from an older snapshot conflict.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::{Db, Durability, Error, IngestFile, Options, Snapshot, TableWriter};
use strata_core::fs::FileSystem;
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn small_options() -> Options {
    Options::default()
        .memtable_size(16 << 10)
        .block_size(512)
        .target_file_size(16 << 10)
        .level_base_bytes(64 << 10)
        .level_multiplier(4)
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

/// Builds a table at `path` from `entries` (in key order; `None` is a tombstone) and
/// applies it to `model` as the ingest will.
fn build(
    path: &Path,
    opts: &Options,
    entries: &[(Vec<u8>, Option<Vec<u8>>)],
    model: &mut Model,
) -> IngestFile {
    let mut w = TableWriter::create(path, opts).unwrap();
    for (k, v) in entries {
        match v {
            Some(v) => {
                w.put(k, v).unwrap();
                model.insert(k.clone(), v.clone());
            }
            None => {
                w.delete(k).unwrap();
                model.remove(k);
            }
        }
    }
    w.finish().unwrap()
}

/// What a reader sees, by every read path: point gets of every model key and of keys
/// around them, full scans both ways, and a bounded range both ways.
trait Reader {
    fn get(&self, k: &[u8]) -> Option<Vec<u8>>;
    fn scan(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)>;
}

fn collect(
    it: impl Iterator<Item = strata::Result<(bytes::Bytes, bytes::Bytes)>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
}

/// The entries of a double-ended scan, read forwards or backwards (then in reverse order).
fn collect_ordered(
    it: impl DoubleEndedIterator<Item = strata::Result<(bytes::Bytes, bytes::Bytes)>>,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if rev {
        collect(it.rev())
    } else {
        collect(it)
    }
}

impl Reader for Db {
    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        Db::get(self, k).unwrap().map(|v| v.to_vec())
    }
    fn scan(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        collect_ordered(self.range((lo, hi)), rev)
    }
}

impl Reader for Snapshot {
    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        Snapshot::get(self, k).unwrap().map(|v| v.to_vec())
    }
    fn scan(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        collect_ordered(self.range((lo, hi)), rev)
    }
}

fn assert_reads(r: &dyn Reader, model: &Model, what: &str) {
    for (k, v) in model {
        assert_eq!(r.get(k).as_ref(), Some(v), "{what}: get {:?}", String::from_utf8_lossy(k));
    }
    for i in (0..2000).step_by(7) {
        let k = key(i);
        assert_eq!(r.get(&k), model.get(&k).cloned(), "{what}: get k{i:05}");
    }
    let all: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(r.scan(Bound::Unbounded, Bound::Unbounded, false), all, "{what}: forward scan");
    let mut rev = all.clone();
    rev.reverse();
    assert_eq!(r.scan(Bound::Unbounded, Bound::Unbounded, true), rev, "{what}: reverse scan");
    let (lo, hi) = (key(450), key(1210));
    let part: Vec<_> = model
        .range::<Vec<u8>, _>((Bound::Included(&lo), Bound::Excluded(&hi)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let bounds = || (Bound::Included(lo.clone()), Bound::Excluded(hi.clone()));
    assert_eq!(r.scan(bounds().0, bounds().1, false), part, "{what}: range");
    let mut part_rev = part;
    part_rev.reverse();
    assert_eq!(r.scan(bounds().0, bounds().1, true), part_rev, "{what}: range reversed");
}

fn puts(db: &Db, model: &mut Model, keys: impl Iterator<Item = u32>, tag: &str) {
    for i in keys {
        let v = format!("{tag}{i}").into_bytes();
        db.put(key(i), &v).unwrap();
        model.insert(key(i), v);
    }
}

#[test]
fn ingested_tables_read_like_newer_writes_through_snapshots_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options();
    let db = Db::open(dir.path().join("db"), opts.clone()).unwrap();
    let mut model = Model::new();
    puts(&db, &mut model, 0..1000, "w");
    db.flush().unwrap();
    db.compact().unwrap();
    puts(&db, &mut model, (500..700).step_by(3), "m"); // in the memtable (and L0)
    let s0 = db.snapshot();
    let m0 = model.clone();

    // Over keys the tree and the memtable hold: the memtable must be flushed first.
    let mut m1 = model.clone();
    let over: Vec<_> = (550..650).map(|i| (key(i), Some(format!("i1-{i}").into_bytes()))).collect();
    let a = build(&dir.path().join("a.sst"), &opts, &over, &mut m1);
    // Beyond everything: straight to the last level.
    let beyond: Vec<_> =
        (1500..1800).map(|i| (key(i), Some(format!("i1-{i}").into_bytes()))).collect();
    let b = build(&dir.path().join("b.sst"), &opts, &beyond, &mut m1);
    let info = db.ingest([&b, &a]).unwrap();
    assert!(info.flushed_memtables, "the memtable held keys of a.sst");
    assert_eq!(info.levels[0], 6, "nothing overlaps b.sst: the last level");
    assert!(info.levels[1] < 6, "a.sst lies over older data");
    assert!(info.sequence > s0.sequence());
    model = m1;
    assert_reads(&db, &model, "after the first ingest");
    assert_reads(&s0, &m0, "a snapshot from before the ingest");

    // Tombstones and puts over the first ingest and over plain writes, with the memtable
    // holding none of them (no flush), then writes over the ingested keys.
    let s1 = db.snapshot();
    let m_s1 = model.clone();
    puts(&db, &mut model, 1900..1950, "x");
    let mut m2 = model.clone();
    let mixed: Vec<_> = (600..900)
        .map(|i| (key(i), if i % 4 == 0 { None } else { Some(format!("i2-{i}").into_bytes()) }))
        .collect();
    let c = build(&dir.path().join("c.sst"), &opts, &mixed, &mut m2);
    let info = db.ingest([c.path()]).unwrap();
    assert!(!info.flushed_memtables, "the memtable holds only 1900..1950");
    model = m2;
    puts(&db, &mut model, (610..660).step_by(5), "after");
    let s2 = db.snapshot();
    let m_s2 = model.clone();
    assert_reads(&db, &model, "after the second ingest");
    assert_reads(&s1, &m_s1, "a snapshot between the ingests");

    // Compaction rewrites the ingested tables; the snapshots keep what they saw.
    db.compact().unwrap();
    assert_reads(&db, &model, "after compaction");
    assert_reads(&s0, &m0, "the first snapshot after compaction");
    assert_reads(&s1, &m_s1, "the second snapshot after compaction");
    assert_reads(&s2, &m_s2, "the third snapshot after compaction");
    let report = db.verify().unwrap();
    assert!(report.tables > 0);
    drop((s0, s1, s2));

    // And a new ingest after a reopen is still newer than everything before.
    db.close().unwrap();
    let db = Db::open(dir.path().join("db"), opts.clone()).unwrap();
    assert_reads(&db, &model, "after reopening");
    let mut m3 = model.clone();
    let last: Vec<_> = (640..660).map(|i| (key(i), Some(b"i3".to_vec()))).collect();
    let d = build(&dir.path().join("d.sst"), &opts, &last, &mut m3);
    db.ingest([d]).unwrap();
    puts(&db, &mut m3, 655..657, "final");
    assert_reads(&db, &m3, "an ingest after reopening");
    db.close().unwrap();
    let db = Db::open(dir.path().join("db"), opts).unwrap();
    assert_reads(&db, &m3, "reopened again");
    db.verify().unwrap();
}

#[test]
fn an_ingest_before_compaction_reopens_with_its_sequence_above_later_flushes() {
    // A flush after the ingest records a smaller last sequence in the manifest: the reopen
    // must still give new writes numbers above the ingested table's.
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options();
    let db = Db::open(dir.path().join("db"), opts.clone()).unwrap();
    let mut model = Model::new();
    puts(&db, &mut model, 0..10, "a");
    let entries: Vec<_> = (100..110).map(|i| (key(i), Some(b"ingested".to_vec()))).collect();
    let f = build(&dir.path().join("f.sst"), &opts, &entries, &mut model);
    let seq = db.ingest([f]).unwrap().sequence;
    db.flush().unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path().join("db"), opts).unwrap();
    assert!(db.metrics().last_sequence >= seq);
    db.put(key(105), "newer").unwrap();
    db.flush().unwrap();
    assert_eq!(Db::get(&db, key(105)).unwrap().as_deref(), Some(&b"newer"[..]));
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default();
    let db = Db::open(dir.path().join("db"), opts.clone()).unwrap();
    let mut w = TableWriter::create(dir.path().join("t.sst"), &opts).unwrap();
    w.put("b", "1").unwrap();
    assert!(matches!(w.put("a", "0"), Err(Error::InvalidArgument(_))), "out of order");
    assert!(matches!(w.put("b", "0"), Err(Error::InvalidArgument(_))), "a repeated key");
    assert!(matches!(w.delete("b"), Err(Error::InvalidArgument(_))), "a repeated key");
    let big_key = vec![0u8; strata::MAX_KEY_SIZE + 1];
    assert!(matches!(w.put(&big_key, "v"), Err(Error::InvalidArgument(_))));
    w.put("c", "2").unwrap(); // still usable after refusals
    let t = w.finish().unwrap();
    assert_eq!(t.entries(), 2);

    let empty = TableWriter::create(dir.path().join("empty.sst"), &opts).unwrap();
    assert!(matches!(empty.finish(), Err(Error::InvalidArgument(_))));
    assert!(!dir.path().join("empty.sst").exists(), "an empty table is removed");
    let dropped = TableWriter::create(dir.path().join("dropped.sst"), &opts).unwrap();
    drop(dropped);
    assert!(!dir.path().join("dropped.sst").exists(), "an unfinished table is removed");

    let mut w = TableWriter::create(dir.path().join("u.sst"), &opts).unwrap();
    w.put("c", "x").unwrap(); // overlaps t.sst (b..c)
    let u = w.finish().unwrap();
    assert!(matches!(db.ingest([&t, &u]), Err(Error::InvalidArgument(m)) if m.contains("overlap")));
    assert!(matches!(db.ingest(Vec::<PathBuf>::new()), Err(Error::InvalidArgument(_))));
    assert!(db.ingest([dir.path().join("missing.sst")]).is_err());

    // A damaged byte anywhere and a cut-short file are corruption, named by file.
    let mut w = TableWriter::create(
        dir.path().join("big.sst"),
        &opts.clone().compression(strata::Compression::None),
    )
    .unwrap();
    for i in 0..5000u32 {
        w.put(key(i), [b'v'; 50]).unwrap();
    }
    let big = w.finish().unwrap();
    let bytes = std::fs::read(big.path()).unwrap();
    for (name, damaged) in [
        ("flipped.sst", {
            let mut b = bytes.clone();
            b[bytes.len() / 3] ^= 0x40; // a data block
            b
        }),
        ("truncated.sst", bytes[..bytes.len() - 10].to_vec()),
        ("footless.sst", bytes[..bytes.len() / 2].to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, damaged).unwrap();
        match db.ingest([&path]) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, path, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Nothing of the refused calls is in the database, and it still ingests.
    assert_eq!(db.iter().count(), 0);
    db.ingest([&t]).unwrap();
    assert_eq!(db.iter().count(), 2);
    db.ingest([&big]).unwrap();
    assert_eq!(db.iter().count(), 5002);
    assert!(db.verify().unwrap().unreferenced_tables.is_empty());
}

#[test]
fn a_transaction_that_read_an_ingested_key_from_before_the_ingest_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default();
    let db = Db::open(dir.path().join("db"), opts.clone()).unwrap();
    db.put("k5", "old").unwrap();
    let mut reader = db.transaction();
    assert_eq!(reader.get("k5").unwrap().as_deref(), Some(&b"old"[..]));
    reader.put("out", "1");
    let mut scanner = db.transaction();
    assert_eq!(scanner.range("k0".."k9").count(), 1);
    scanner.put("out", "2");
    let mut elsewhere = db.transaction();
    assert_eq!(elsewhere.get("z").unwrap(), None);
    elsewhere.put("z", "3");

    let mut w = db.table_writer(dir.path().join("t.sst")).unwrap();
    w.put("k3", "ingested").unwrap();
    w.put("k5", "ingested").unwrap();
    db.ingest([w.finish().unwrap()]).unwrap();

    assert!(matches!(reader.commit(), Err(Error::Conflict)), "read k5 before the ingest");
    assert!(matches!(scanner.commit(), Err(Error::Conflict)), "scanned k3..k5 before it");
    elsewhere.commit().unwrap();
    let mut after = db.transaction();
    assert_eq!(after.get("k5").unwrap().as_deref(), Some(&b"ingested"[..]));
    after.put("k5", "updated");
    after.commit().unwrap();
    assert_eq!(db.get("k5").unwrap().as_deref(), Some(&b"updated"[..]));
}

#[test]
fn ingest_metrics_count_the_tables_and_write_amplification_stays_near_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().compression(strata::Compression::None);
    let db = Db::open(dir.path().join("db"), opts.clone()).unwrap();
    let mut w = db.table_writer(dir.path().join("t.sst")).unwrap();
    for i in 0..20_000u32 {
        w.put(format!("{i:016}"), [b'x'; 100]).unwrap();
    }
    let info = db.ingest([w.finish().unwrap()]).unwrap();
    let m = db.metrics();
    assert_eq!(m.ingested_files, 1);
    assert_eq!(m.ingested_bytes, info.bytes);
    assert_eq!(m.user_bytes, 20_000 * 116);
    let amp = m.write_amplification();
    assert!((1.0..1.3).contains(&amp), "write amplification {amp}");
    assert_eq!(m.levels[6].files, 1);
}

fn sim_options(sim: &SimFileSystem) -> Options {
    Options::default().memtable_size(16 << 10).block_size(512).file_system(Arc::new(sim.process()))
}

fn sim_state(db: &Db) -> Model {
    db.iter().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
}

/// Every operation an ingest makes is made to fail in turn, then the power is cut: the
/// database reopens every time, holding exactly the state before the ingest or after it
/// (after it whenever the ingest returned `Ok`).
#[test]
fn a_failure_or_power_cut_at_every_step_of_an_ingest_leaves_all_or_nothing() {
    let mut cases = 0;
    let mut saw = (false, false);
    for op in [
        FaultOp::Read,
        FaultOp::Create,
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Remove,
        FaultOp::Rename,
    ] {
        for n in 1.. {
            let sim = SimFileSystem::new();
            let opts = sim_options(&sim);
            let db = Db::open("/db", opts.clone()).unwrap();
            let mut before = Model::new();
            for i in 0..300u32 {
                db.put_with(key(i), format!("w{i}"), Durability::Sync).unwrap();
                before.insert(key(i), format!("w{i}").into_bytes());
                if i == 199 {
                    db.flush().unwrap();
                }
            }
            let mut after = before.clone();
            let over: Vec<_> =
                (250..350).map(|i| (key(i), Some(format!("i{i}").into_bytes()))).collect();
            let beyond: Vec<_> =
                (900..1000).map(|i| (key(i), Some(format!("i{i}").into_bytes()))).collect();
            sim.create_dir_all(Path::new("/in")).unwrap();
            let a = build(Path::new("/in/a.sst"), &opts, &over, &mut after);
            let b = build(Path::new("/in/b.sst"), &opts, &beyond, &mut after);
            sim.fail_nth(op, n);
            let result = db.ingest([&a, &b]);
            sim.clear_faults();
            sim.crash(CrashMode::TornTail { seed: n });
            drop(db);
            cases += 1;
            let db = Db::open("/db", sim_options(&sim))
                .unwrap_or_else(|e| panic!("{op:?} #{n}: the database fails to open: {e}"));
            let state = sim_state(&db);
            if state == after {
                saw.1 = true;
            } else {
                assert!(result.is_err(), "{op:?} #{n}: acknowledged, then lost");
                assert!(state == before, "{op:?} #{n}: a state neither before nor after");
                saw.0 = true;
            }
            let report = db.verify().unwrap();
            assert!(report.unreferenced_tables.is_empty(), "{op:?} #{n}: orphans stay");
            drop(db);
            if result.is_ok() {
                break;
            }
        }
    }
    assert!(saw.0 && saw.1, "both outcomes occur");
    assert!(cases > 15, "only {cases} cases");
}

fn sharded_model_check(db: &strata::ShardedDb, model: &Model) {
    let got: Model = db.iter().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
    assert_eq!(&got, model);
    for (k, v) in model {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(&v[..]));
    }
    for i in 0..db.shard_count() {
        for r in db.shard(i).unwrap().iter() {
            let (k, _) = r.unwrap();
            assert_eq!(db.shard_of(&k), i, "{:?} lives on the wrong shard", k);
        }
    }
}

/// Range partitioning: a file inside one shard is linked as it is, one spanning shards is
/// split; hash partitioning splits every file. Reads agree with the model, every key lives
/// on its shard, and ingested data is newer than the writes it overlaps.
#[test]
fn sharded_ingest_routes_every_key_to_its_shard_under_ranges_and_hashing() {
    for partitioner in
        [strata::Partitioner::Range(vec![key(500), key(1000)]), strata::Partitioner::Hash]
    {
        let dir = tempfile::tempdir().unwrap();
        let opts =
            strata::ShardedOptions::new(3).partitioner(partitioner.clone()).engine(small_options());
        let db = strata::ShardedDb::open(dir.path().join("db"), opts).unwrap();
        let mut model = Model::new();
        for i in (0..1500).step_by(2) {
            db.put(key(i), b"w").unwrap();
            model.insert(key(i), b"w".to_vec());
        }
        let engine = small_options();
        let inside: Vec<_> = (100..400).map(|i| (key(i), Some(b"inside".to_vec()))).collect();
        let a = build(&dir.path().join("a.sst"), &engine, &inside, &mut model);
        let spanning: Vec<_> = (400..1300)
            .map(|i| (key(i), if i % 10 == 0 { None } else { Some(b"span".to_vec()) }))
            .collect();
        let b = build(&dir.path().join("b.sst"), &engine, &spanning, &mut model);
        let parts = db.ingest([&a, &b]).unwrap();
        let shards: Vec<usize> = parts.iter().map(|(s, _)| *s).collect();
        assert_eq!(shards, [0, 1, 2], "{partitioner:?}");
        sharded_model_check(&db, &model);
        let leftovers: Vec<_> = (0..3)
            .flat_map(|i| std::fs::read_dir(db.shard(i).unwrap().path()).unwrap())
            .filter(|e| {
                e.as_ref().unwrap().file_name().to_string_lossy().starts_with("ingest-split")
            })
            .collect();
        assert!(leftovers.is_empty(), "temporary tables are removed");
        let mut w = TableWriter::create(dir.path().join("c.sst"), &engine).unwrap();
        w.put(key(350), "x").unwrap();
        let c = w.finish().unwrap();
        assert!(matches!(db.ingest([&a, &c]), Err(Error::InvalidArgument(_))), "overlap");
        db.compact().unwrap();
        sharded_model_check(&db, &model);
        db.close().unwrap();
        let db = strata::ShardedDb::open(
            dir.path().join("db"),
            strata::ShardedOptions::new(3).partitioner(partitioner).engine(small_options()),
        )
        .unwrap();
        sharded_model_check(&db, &model);
    }
}

/// Writers keep writing keys of the ingested range while ingests run: no ingest or write is
/// lost or reordered behind an older one. Each key ends with the writer's last value if
/// that write began after the last ingest returned, else with it or the last ingest's —
/// never an older ingest's or an older write's — and the state survives a reopen.
#[test]
fn writes_racing_ingests_into_the_same_range_keep_the_newest_value() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options();
    let db = Db::open(dir.path().join("db"), opts.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ingests_done = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2u32)
        .map(|t| {
            let (db, stop, done) = (db.clone(), stop.clone(), ingests_done.clone());
            std::thread::spawn(move || {
                // Per key: (last value written, the ingests finished when that put began).
                let mut last: BTreeMap<u32, (Vec<u8>, u64)> = BTreeMap::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let i = (n * 7 + u64::from(t)) % 200 * 2 + u64::from(t);
                    let before = done.load(Ordering::Acquire);
                    let v = format!("w{t}-{n}").into_bytes();
                    db.put(key(i as u32), &v).unwrap();
                    last.insert(i as u32, (v, before));
                    n += 1;
                }
                last
            })
        })
        .collect();
    let rounds = 6u64;
    for r in 0..rounds {
        let entries: Vec<_> =
            (0..400).map(|i| (key(i), Some(format!("ingest-{r}").into_bytes()))).collect();
        let f = build(&dir.path().join(format!("r{r}.sst")), &opts, &entries, &mut Model::new());
        db.ingest([f]).unwrap();
        ingests_done.store(r + 1, Ordering::Release);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    stop.store(true, Ordering::Release);
    let last: BTreeMap<u32, (Vec<u8>, u64)> =
        writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let final_ingest = format!("ingest-{}", rounds - 1).into_bytes();
    let mut state = Model::new();
    for i in 0..400u32 {
        let got = Db::get(&db, key(i)).unwrap().map(|v| v.to_vec()).unwrap();
        match last.get(&i) {
            Some((w, began_after)) if *began_after == rounds => {
                assert_eq!(&got, w, "k{i}: a write after the last ingest is lost")
            }
            Some((w, _)) => assert!(got == *w || got == final_ingest, "k{i}: stale {got:?}"),
            None => assert_eq!(got, final_ingest, "k{i}"),
        }
        state.insert(key(i), got);
    }
    db.verify().unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path().join("db"), opts).unwrap();
    assert_eq!(sim_state(&db), state, "the same after a reopen");
}

/// A crash in the middle of a sharded ingest can leave its per-shard parts behind under
/// their temporary names; the next open removes them (and nothing else).
#[test]
fn a_sharded_open_removes_parts_a_crashed_ingest_left() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let db = strata::ShardedDb::open(&root, strata::ShardedOptions::new(2)).unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let shard_dir = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a shard directory");
    let leftover = shard_dir.join("ingest-split-4242-7.sst");
    let unrelated = shard_dir.join("notes-ingest-split.txt");
    std::fs::write(&leftover, b"partial table").unwrap();
    std::fs::write(&unrelated, b"kept").unwrap();
    let db = strata::ShardedDb::open(&root, strata::ShardedOptions::new(2)).unwrap();
    assert!(!leftover.exists(), "the leftover part is removed");
    assert!(unrelated.exists(), "other files stay");
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
}
