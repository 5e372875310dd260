//! Model-based and fault tests of building and reading tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use strata_core::fs::{FileSystem, OsFileSystem};
use strata_core::iter::InternalIterator;
use strata_core::key::{InternalKey, SeqNo, ValueKind, MAX_SEQ};
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};
use strata_core::Error;
use strata_sstable::{BlockCache, Compression, Table, TableBuilder, TableOptions, TableStats};

type Model = BTreeMap<InternalKey, Vec<u8>>;

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

fn sim() -> SimFileSystem {
    let fs = SimFileSystem::new();
    fs.create_dir_all(&dir()).unwrap();
    fs
}

fn build(fs: &dyn FileSystem, path: &Path, model: &Model, opts: &TableOptions) {
    let mut b = TableBuilder::new(fs, path, opts).unwrap();
    for (k, v) in model {
        b.add(k.encoded(), v).unwrap();
    }
    let props = b.finish().unwrap();
    fs.sync_dir(&strata_core::fs::parent_dir(path)).unwrap();
    assert_eq!(props.num_entries, model.len() as u64);
    assert_eq!(props.file_size, fs.file_size(path).unwrap());
}

fn open(fs: &dyn FileSystem, path: &Path, cache: bool) -> strata_core::Result<Arc<Table>> {
    let cache = cache.then(|| BlockCache::new(1 << 20));
    Table::open(fs, path, 7, cache, Arc::new(TableStats::default()))
}

/// The model's answer to `get(user_key, seq)`.
fn model_get(model: &Model, user_key: &[u8], seq: SeqNo) -> Option<(ValueKind, SeqNo, Bytes)> {
    let target = InternalKey::new(user_key, seq, ValueKind::FOR_SEEK);
    let (k, v) = model.range(target..).next()?;
    let p = k.parse().unwrap();
    (p.user_key == user_key).then(|| match p.kind {
        ValueKind::Put => (ValueKind::Put, p.seq, Bytes::from(v.clone())),
        ValueKind::Delete => (ValueKind::Delete, p.seq, Bytes::new()),
    })
}

fn collect_forward(it: &mut dyn InternalIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    it.seek_to_first();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next();
    }
    out
}

fn collect_backward(it: &mut dyn InternalIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    it.seek_to_last();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.prev();
    }
    out.reverse();
    out
}

fn model_entries(model: &Model) -> Vec<(Vec<u8>, Vec<u8>)> {
    model.iter().map(|(k, v)| (k.encoded().to_vec(), v.clone())).collect()
}

fn entry_strategy() -> impl Strategy<Value = (Vec<u8>, SeqNo, bool, Vec<u8>)> {
    let user_key = prop_oneof![
        1 => Just(Vec::new()),
        8 => proptest::collection::vec(0u8..4, 0..4),
        2 => proptest::collection::vec(any::<u8>(), 0..40),
    ];
    let value = prop_oneof![
        20 => proptest::collection::vec(any::<u8>(), 0..30),
        5 => proptest::collection::vec(0u8..2, 0..2000),
        1 => (0usize..=(1 << 20)).prop_map(|n| vec![b'x'; n]),
    ];
    (user_key, prop_oneof![0u64..8, Just(MAX_SEQ)], any::<bool>(), value)
}

fn options_strategy() -> impl Strategy<Value = TableOptions> {
    (
        prop_oneof![Just(1usize), Just(64), Just(4096), Just(1 << 20)],
        1usize..20,
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Lz4),
            (-5i32..4).prop_map(|level| Compression::Zstd { level })
        ],
        prop_oneof![Just(0u32), Just(10), Just(3)],
    )
        .prop_map(|(block_size, restart, compression, bits)| {
            TableOptions::default()
                .with_block_size(block_size)
                .with_restart_interval(restart)
                .with_compression(compression)
                .with_bloom_bits_per_key(bits)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn tables_agree_with_a_btreemap_model(
        entries in proptest::collection::vec(entry_strategy(), 0..250),
        opts in options_strategy(),
        probes in proptest::collection::vec((proptest::collection::vec(0u8..4, 0..4), 0u64..10), 1..40),
        cached in any::<bool>(),
    ) {
        let mut model = Model::new();
        for (uk, seq, del, value) in entries {
            let kind = if del { ValueKind::Delete } else { ValueKind::Put };
            let value = if del { Vec::new() } else { value };
            model.insert(InternalKey::new(&uk, seq, kind), value);
        }
        let fs = sim();
        let path = dir().join("000001.sst");
        build(&fs, &path, &model, &opts);
        let table = open(&fs, &path, cached).unwrap();
        let props = table.properties();
        prop_assert_eq!(props.num_entries, model.len() as u64);
        prop_assert_eq!(props.num_deletions,
            model.keys().filter(|k| k.parse().unwrap().kind == ValueKind::Delete).count() as u64);
        prop_assert_eq!(&props.smallest_key[..], model.keys().next().map_or(&[][..], |k| k.encoded()));
        prop_assert_eq!(&props.largest_key[..], model.keys().last().map_or(&[][..], |k| k.encoded()));

        let expect = model_entries(&model);
        let mut it = table.iter();
        prop_assert_eq!(collect_forward(&mut it), expect.clone());
        it.status().unwrap();
        prop_assert_eq!(collect_backward(&mut it), expect.clone());
        it.status().unwrap();

        // Every stored user key at several snapshots, plus probes of (mostly) absent keys.
        let mut user_keys: Vec<Vec<u8>> = model.keys().map(|k| k.user_key().to_vec()).collect();
        user_keys.extend(probes.iter().map(|(k, _)| k.clone()));
        for uk in &user_keys {
            for seq in [0, 1, 3, 7, MAX_SEQ] {
                prop_assert_eq!(table.get(uk, seq).unwrap(), model_get(&model, uk, seq));
            }
        }
        // Seeks, then steps both ways, against the model.
        for (uk, seq) in &probes {
            let target = InternalKey::new(uk, *seq, ValueKind::FOR_SEEK);
            let pos = model.range(..&target).count();
            it.seek(target.encoded());
            match expect.get(pos) {
                Some((k, v)) => {
                    prop_assert!(it.valid());
                    prop_assert_eq!((it.key(), it.value()), (&k[..], &v[..]));
                    it.prev();
                    match pos.checked_sub(1).and_then(|p| expect.get(p)) {
                        Some((k, _)) => prop_assert_eq!(it.key(), &k[..]),
                        None => prop_assert!(!it.valid()),
                    }
                }
                None => prop_assert!(!it.valid()),
            }
            it.seek(target.encoded());
            if it.valid() {
                it.next();
                match expect.get(pos + 1) {
                    Some((k, _)) => prop_assert_eq!(it.key(), &k[..]),
                    None => prop_assert!(!it.valid()),
                }
            }
            it.seek_for_prev(target.encoded());
            match pos.checked_sub(1).and_then(|p| expect.get(p)) {
                // seek_for_prev lands on the last key <= target; target itself is never a
                // stored key here unless it equals one (kind Put at that seq).
                Some((k, _)) if expect.get(pos).is_none_or(|(k2, _)| k2[..] != *target.encoded()) => {
                    prop_assert_eq!(it.key(), &k[..]);
                }
                _ => {}
            }
            it.status().unwrap();
        }
    }
}

fn numbered_model(n: u32, value_len: usize) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        let kind = if i % 7 == 3 { ValueKind::Delete } else { ValueKind::Put };
        let value = if kind == ValueKind::Delete {
            Vec::new()
        } else {
            format!("value-{i}-").repeat(value_len / 8 + 1).into_bytes()
        };
        model.insert(
            InternalKey::new(format!("key{:06}", i / 2).as_bytes(), u64::from(100 - i % 2), kind),
            value,
        );
    }
    model
}

#[test]
fn bloom_false_positive_rate_is_within_twice_the_configured_one() {
    let fs = sim();
    let path = dir().join("bloom.sst");
    let mut model = Model::new();
    for i in 0..20_000u32 {
        model.insert(
            InternalKey::new(format!("present{i}").as_bytes(), 1, ValueKind::Put),
            b"v".to_vec(),
        );
    }
    build(&fs, &path, &model, &TableOptions::default());
    let stats = Arc::new(TableStats::default());
    let table = Table::open(&fs, &path, 1, None, stats.clone()).unwrap();
    let probes = 100_000u32;
    let mut false_positives = 0;
    for i in 0..probes {
        let key = format!("absent{i}");
        if table.may_contain(key.as_bytes()) {
            false_positives += 1;
        }
        assert_eq!(table.get(key.as_bytes(), 5).unwrap(), None);
    }
    let rate = f64::from(false_positives) / f64::from(probes);
    // 10 bits per key, 7 hash functions: (1 - e^(-7/10))^7 ≈ 0.82%; the configured target is 1%.
    assert!(rate > 0.005 && rate < 0.02, "false-positive rate {rate}");
    assert_eq!(stats.bloom_checks(), u64::from(probes));
    assert_eq!(stats.bloom_negatives(), u64::from(probes - false_positives));
    // No false negatives.
    assert!((0..20_000).all(|i| table.may_contain(format!("present{i}").as_bytes())));
}

#[test]
fn the_serialized_table_is_reproducible_apart_from_its_creation_time() {
    let model = numbered_model(500, 20);
    let fs = sim();
    let (a, b) = (dir().join("a.sst"), dir().join("b.sst"));
    build(&fs, &a, &model, &TableOptions::default());
    build(&fs, &b, &model, &TableOptions::default());
    let (ta, tb) = (open(&fs, &a, false).unwrap(), open(&fs, &b, false).unwrap());
    let data_and_filter = ta.properties().data_bytes + ta.properties().filter_bytes;
    let (ba, bb) = (fs.read(&a).unwrap(), fs.read(&b).unwrap());
    assert_eq!(ba[..data_and_filter as usize], bb[..data_and_filter as usize]);
    assert_eq!(tb.properties().file_size, ta.properties().file_size);
}

/// Reads everything from a (possibly damaged) table: every answer must be the model's or a
/// corruption error. Returns how many reads reported corruption.
fn read_all_checked(fs: &dyn FileSystem, path: &Path, model: &Model, cached: bool) -> usize {
    let table = match open(fs, path, cached) {
        Ok(t) => t,
        Err(e) => {
            assert!(e.is_corruption(), "open failed with a non-corruption error: {e}");
            assert!(matches!(&e, Error::Corruption { file, .. } if file == path));
            return 1;
        }
    };
    let mut corrupt = 0;
    for k in model.keys() {
        let uk = k.user_key();
        match table.get(uk, 100) {
            Ok(got) => assert_eq!(got, model_get(model, uk, 100), "wrong answer for {k:?}"),
            Err(e) => {
                assert!(e.is_corruption(), "{e}");
                corrupt += 1;
            }
        }
    }
    let expect = model_entries(model);
    for backward in [false, true] {
        let mut it = table.iter();
        let got = if backward { collect_backward(&mut it) } else { collect_forward(&mut it) };
        match it.status() {
            Ok(()) => assert_eq!(got, expect),
            Err(e) => {
                assert!(e.is_corruption(), "{e}");
                corrupt += 1;
                // What was returned before the error is a correct run of entries.
                if backward {
                    assert!(expect.ends_with(&got));
                } else {
                    assert!(expect.starts_with(&got));
                }
            }
        }
    }
    corrupt
}

#[test]
fn flipped_bytes_give_right_answers_or_corruption_errors() {
    let model = numbered_model(600, 30);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    for (compression, block_size) in
        [(Compression::None, 256), (Compression::Zstd { level: 3 }, 512)]
    {
        let fs = sim();
        let path = dir().join("flip.sst");
        let opts =
            TableOptions::default().with_compression(compression).with_block_size(block_size);
        build(&fs, &path, &model, &opts);
        let original = fs.read(&path).unwrap();
        let mut detected = 0;
        let trials = 250;
        for trial in 0..trials {
            let mut damaged = original.clone();
            // Bias a third of the flips into the metadata tail (footer, properties, index).
            let at = if trial % 3 == 0 {
                rng.random_range(original.len().saturating_sub(400)..original.len())
            } else {
                rng.random_range(0..original.len())
            };
            damaged[at] ^= rng.random_range(1..=255u8);
            fs.overwrite(&path, damaged).unwrap();
            if read_all_checked(&fs, &path, &model, trial % 2 == 0) > 0 {
                detected += 1;
            }
        }
        // Every block is read by the full scans, so every flip is detected.
        assert_eq!(detected, trials, "{compression:?}");
    }
}

#[test]
fn truncated_tables_are_corruption() {
    let model = numbered_model(200, 10);
    let fs = sim();
    let path = dir().join("trunc.sst");
    build(&fs, &path, &model, &TableOptions::default().with_block_size(128));
    let original = fs.read(&path).unwrap();
    for len in (0..original.len()).step_by(7).chain([original.len() - 1]) {
        fs.overwrite(&path, original[..len].to_vec()).unwrap();
        let err = open(&fs, &path, false).unwrap_err();
        assert!(err.is_corruption(), "len {len}: {err}");
    }
    // Garbage appended after the footer is detected too.
    let mut longer = original.clone();
    longer.extend_from_slice(&[0; 10]);
    fs.overwrite(&path, longer).unwrap();
    assert!(open(&fs, &path, false).unwrap_err().is_corruption());
}

#[test]
fn a_real_file_through_the_mmap_path_reads_back_and_detects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let fs = OsFileSystem;
    let path = dir.path().join("000009.sst");
    let model = numbered_model(3000, 100);
    build(&fs, &path, &model, &TableOptions::default().with_compression(Compression::None));
    assert_eq!(read_all_checked(&fs, &path, &model, true), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 1;
    let damaged = dir.path().join("000010.sst");
    std::fs::write(&damaged, bytes).unwrap();
    assert!(read_all_checked(&fs, &damaged, &model, true) > 0);
}

#[test]
fn builder_rejects_bad_input_and_stays_usable() {
    let fs = sim();
    let path = dir().join("bad.sst");
    let mut b = TableBuilder::new(&fs, &path, &TableOptions::default()).unwrap();
    let k5 = InternalKey::new(b"k", 5, ValueKind::Put);
    b.add(k5.encoded(), b"v").unwrap();
    let older_smaller = InternalKey::new(b"a", 9, ValueKind::Put);
    assert!(matches!(b.add(older_smaller.encoded(), b""), Err(Error::InvalidArgument(_))));
    assert!(matches!(b.add(k5.encoded(), b""), Err(Error::InvalidArgument(_))), "duplicates");
    let newer_same_key = InternalKey::new(b"k", 6, ValueKind::Put);
    assert!(matches!(b.add(newer_same_key.encoded(), b""), Err(Error::InvalidArgument(_))));
    assert!(matches!(b.add(b"short", b""), Err(Error::InvalidArgument(_))));
    b.add(InternalKey::new(b"k", 4, ValueKind::Delete).encoded(), b"").unwrap();
    assert_eq!(b.num_entries(), 2);
    let props = b.finish().unwrap();
    assert_eq!(
        (props.num_entries, props.num_deletions, props.smallest_seq, props.largest_seq),
        (2, 1, 4, 5)
    );

    assert!(TableBuilder::new(&fs, &path, &TableOptions::default().with_block_size(0)).is_err());
    assert!(
        TableBuilder::new(&fs, &path, &TableOptions::default().with_restart_interval(0)).is_err()
    );
    assert!(TableBuilder::new(&fs, &path, &TableOptions::default().with_bloom_bits_per_key(1000))
        .is_err());
    let zstd_bad = TableOptions::default().with_compression(Compression::Zstd { level: 99 });
    assert!(TableBuilder::new(&fs, &path, &zstd_bad).is_err());
}

#[test]
fn abandon_removes_the_partial_file() {
    let fs = sim();
    let path = dir().join("partial.sst");
    let mut b =
        TableBuilder::new(&fs, &path, &TableOptions::default().with_block_size(64)).unwrap();
    for (k, v) in &numbered_model(100, 10) {
        b.add(k.encoded(), v).unwrap();
    }
    assert!(fs.exists(&path).unwrap());
    b.abandon().unwrap();
    assert!(!fs.exists(&path).unwrap());
}

#[test]
fn write_and_sync_failures_surface_and_poison_the_builder() {
    let model = numbered_model(2000, 100);
    // A failed write: the error sticks, later adds return it.
    let fs = sim();
    let path = dir().join("eio.sst");
    let mut b =
        TableBuilder::new(&fs, &path, &TableOptions::default().with_compression(Compression::None))
            .unwrap();
    fs.fail_nth(FaultOp::Write, 1);
    let mut first_err = None;
    for (k, v) in &model {
        if let Err(e) = b.add(k.encoded(), v) {
            first_err.get_or_insert(e);
        }
    }
    let e = first_err.expect("the injected write error surfaced");
    assert!(matches!(e, Error::Io { op: "write", .. }), "{e}");
    assert!(b.finish().is_err());
    assert!(!fs.exists(&path).unwrap(), "finish removed the partial file");

    // A failed fdatasync fails finish.
    let fs = sim();
    let mut b = TableBuilder::new(&fs, &path, &TableOptions::default()).unwrap();
    for (k, v) in &model {
        b.add(k.encoded(), v).unwrap();
    }
    fs.fail_nth(FaultOp::Sync, 1);
    let e = b.finish().unwrap_err();
    assert!(matches!(e, Error::Io { op: "fdatasync", .. }), "{e}");
}

#[test]
fn power_loss_before_and_after_finish() {
    let model = numbered_model(1500, 50);
    let opts = TableOptions::default();
    for seed in 0..6 {
        // Crash mid-build, after the directory entry was made durable: whatever survives is
        // a partial file that must not open as a table.
        let fs = sim();
        let path = dir().join("000005.sst");
        let mut b = TableBuilder::new(&fs, &path, &opts).unwrap();
        fs.sync_dir(&dir()).unwrap();
        for (k, v) in model.iter().take(700) {
            b.add(k.encoded(), v).unwrap();
        }
        fs.crash(CrashMode::TornTail { seed });
        let err = open(&fs, &path, false).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        drop(b);

        // Finished but the directory not synced: the name may vanish — never a bad table.
        let fs = sim();
        let mut b = TableBuilder::new(&fs, &path, &opts).unwrap();
        for (k, v) in &model {
            b.add(k.encoded(), v).unwrap();
        }
        b.finish().unwrap();
        fs.crash(CrashMode::TornTail { seed });
        assert!(!fs.exists(&path).unwrap());

        // Finished and the directory synced: the table survives intact.
        let fs = sim();
        build(&fs, &path, &model, &opts);
        fs.crash(CrashMode::TornTail { seed });
        assert_eq!(read_all_checked(&fs, &path, &model, seed % 2 == 0), 0);
    }
}

#[test]
fn block_cache_counts_hits_and_stays_bounded() {
    let fs = sim();
    let path = dir().join("cache.sst");
    let model = numbered_model(4000, 100);
    build(&fs, &path, &model, &TableOptions::default());
    let cache = BlockCache::new(64 << 10);
    let stats = Arc::new(TableStats::default());
    let table = Table::open(&fs, &path, 1, Some(cache.clone()), stats.clone()).unwrap();
    assert!(table.properties().num_data_blocks > 50);
    let key = model.keys().nth(10).unwrap().user_key().to_vec();
    table.get(&key, 100).unwrap().unwrap();
    let (h0, m0) = (cache.hits(), cache.misses());
    assert_eq!(m0, 1);
    table.get(&key, 100).unwrap().unwrap();
    assert_eq!((cache.hits(), cache.misses()), (h0 + 1, m0));
    let mut it = table.iter();
    assert_eq!(collect_forward(&mut it).len(), model.len());
    assert!(cache.usage_bytes() <= cache.capacity(), "{cache:?}");
    assert!(stats.block_reads() >= table.properties().num_data_blocks);
    drop(it);
    drop(table);
    assert!(cache.len() <= 1, "a dropped table forgets its blocks: {cache:?}");
}

#[test]
fn compression_applies_only_when_it_pays() {
    let fs = sim();
    let compressible = numbered_model(2000, 200);
    for codec in [Compression::Zstd { level: 1 }, Compression::Lz4] {
        let path = dir().join("z.sst");
        build(&fs, &path, &compressible, &TableOptions::default().with_compression(codec));
        let t = open(&fs, &path, false).unwrap();
        let p = t.properties().clone();
        assert_eq!(p.compression, codec);
        assert!(p.data_bytes * 3 < p.raw_key_bytes + p.raw_value_bytes, "{codec:?}: {p:?}");
        assert_eq!(collect_forward(&mut t.iter()), model_entries(&compressible));
        fs.remove(&path).unwrap();
    }

    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut random = Model::new();
    for i in 0..500u32 {
        let v: Vec<u8> = (0..200).map(|_| rng.random()).collect();
        random.insert(InternalKey::new(&i.to_be_bytes(), 1, ValueKind::Put), v);
    }
    let path = dir().join("r.sst");
    build(&fs, &path, &random, &TableOptions::default());
    let stats = Arc::new(TableStats::default());
    let t = Table::open(&fs, &path, 1, None, stats.clone()).unwrap();
    let decompressed_at_open = stats.decompressed_blocks(); // the index block compresses
    let p = t.properties();
    assert!(p.data_bytes >= p.raw_value_bytes, "incompressible blocks are stored raw: {p:?}");
    assert_eq!(collect_forward(&mut t.iter()), model_entries(&random));
    assert_eq!(stats.decompressed_blocks(), decompressed_at_open);
}

#[test]
fn estimated_file_size_tracks_the_real_size() {
    let fs = sim();
    let path = dir().join("est.sst");
    let mut b = TableBuilder::new(&fs, &path, &TableOptions::default()).unwrap();
    for (k, v) in &numbered_model(5000, 100) {
        b.add(k.encoded(), v).unwrap();
    }
    let estimate = b.estimated_file_size();
    let actual = b.finish().unwrap().file_size;
    assert!(
        estimate as f64 > actual as f64 * 0.9 && (estimate as f64) < actual as f64 * 1.1,
        "{estimate} vs {actual}"
    );
}

#[test]
fn empty_table_round_trips() {
    let fs = sim();
    let path = dir().join("empty.sst");
    build(&fs, &path, &Model::new(), &TableOptions::default());
    let t = open(&fs, &path, true).unwrap();
    assert_eq!(t.properties().num_entries, 0);
    assert_eq!(t.get(b"x", MAX_SEQ).unwrap(), None);
    let mut it = t.iter();
    it.seek_to_first();
    assert!(!it.valid());
    it.seek_to_last();
    assert!(!it.valid());
    it.seek(InternalKey::new(b"", MAX_SEQ, ValueKind::Put).encoded());
    assert!(!it.valid());
    it.status().unwrap();
}

#[test]
fn iterator_is_send_and_owns_its_table() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let fs = sim();
    let path = dir().join("own.sst");
    let model = numbered_model(100, 10);
    build(&fs, &path, &model, &TableOptions::default());
    let mut it = open(&fs, &path, false).unwrap().iter();
    assert_send(&it);
    it.seek_to_last();
    assert_eq!(it.value_bytes(), model_entries(&model).last().unwrap().1);
    let handle = std::thread::spawn(move || collect_forward(&mut it));
    assert_eq!(handle.join().unwrap(), model_entries(&model));
}

#[test]
fn concurrent_readers_share_a_table_and_a_cache() {
    let fs = sim();
    let path = dir().join("shared.sst");
    let model = numbered_model(3000, 40);
    build(&fs, &path, &model, &TableOptions::default());
    let cache = BlockCache::new(32 << 10);
    let table =
        Table::open(&fs, &path, 1, Some(cache.clone()), Arc::new(TableStats::default())).unwrap();
    let model = Arc::new(model);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (table, model) = (table.clone(), model.clone());
            std::thread::spawn(move || {
                for (i, k) in model.keys().enumerate().filter(|(i, _)| i % 4 == t) {
                    let uk = k.user_key();
                    assert_eq!(table.get(uk, 100).unwrap(), model_get(&model, uk, 100), "{i}");
                }
                assert_eq!(collect_forward(&mut table.iter()), model_entries(&model));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(cache.hits() > 0 && cache.usage_bytes() <= cache.capacity());
}

/// Replaces the stored bytes of the block at `[offset, offset + size)` with `garbage` of the
/// same length and recomputes its trailer CRC (type raw), as a crafted file could.
fn forge_block(file: &mut [u8], offset: usize, size: usize, garbage: &[u8]) {
    file[offset..offset + size].copy_from_slice(garbage);
    file[offset + size] = 0;
    let mut h = crc32fast::Hasher::new();
    h.update(&file[offset..offset + size]);
    h.update(&[0]);
    file[offset + size + 1..offset + size + 5].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Exercises every read path; only corruption errors are allowed, answers are not checked
/// (garbage with a valid CRC is a lying file, not a detectable accident).
fn read_everything_tolerantly(fs: &dyn FileSystem, path: &Path, model: &Model) {
    let table = match open(fs, path, true) {
        Ok(t) => t,
        Err(e) => return assert!(e.is_corruption(), "{e}"),
    };
    for k in model.keys() {
        if let Err(e) = table.get(k.user_key(), 100) {
            assert!(e.is_corruption(), "{e}");
        }
    }
    let mut it = table.iter();
    let _ = collect_forward(&mut it);
    let _ = collect_backward(&mut it);
    for k in model.keys().step_by(17) {
        it.seek(k.encoded());
        if it.valid() {
            it.prev();
        }
    }
    if let Err(e) = it.status() {
        assert!(e.is_corruption(), "{e}");
    }
}

#[test]
fn forged_blocks_with_valid_checksums_never_panic() {
    let model = numbered_model(300, 10);
    let fs = sim();
    let path = dir().join("forged.sst");
    // One big raw data block at offset 0, so its handle is known from the footer alone.
    let opts = TableOptions::default().with_compression(Compression::None).with_block_size(1 << 20);
    build(&fs, &path, &model, &opts);
    let original = fs.read(&path).unwrap();
    let footer = &original[original.len() - 64..];
    let u64_at =
        |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().unwrap()) as usize;
    let (filter, index, props) =
        ((u64_at(0), u64_at(1)), (u64_at(2), u64_at(3)), (u64_at(4), u64_at(5)));
    let data = (0, filter.0 - 5);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
    for (offset, size) in [data, filter, index, props] {
        for trial in 0..40 {
            let mut forged = original.clone();
            let mut garbage = forged[offset..offset + size].to_vec();
            match trial % 3 {
                // Fully random contents.
                0 => rng.fill(&mut garbage[..]),
                // A few random bytes changed: mostly-valid structure with lying fields.
                1 => {
                    for _ in 0..3 {
                        let i = rng.random_range(0..size);
                        garbage[i] = rng.random();
                    }
                }
                // Huge varints / counts planted at random positions.
                _ => {
                    let i = rng.random_range(0..size);
                    let end = (i + 5).min(size);
                    garbage[i..end].fill(0xff);
                }
            }
            forge_block(&mut forged, offset, size, &garbage);
            fs.overwrite(&path, forged).unwrap();
            read_everything_tolerantly(&fs, &path, &model);
        }
    }
}

/// Tables written by older format versions (committed in `tests/fixtures`, each written by
/// the builder of its version: 300 keys `key0000..key0299` at sequence i + 1, every tenth
/// from the fourth a tombstone, 512-byte blocks) still open, verify and read back under the
/// current version: version 1 (zstd 1; raw and zstd blocks only), version 2 (LZ4 blocks;
/// both with the plain kind-1 bloom filter that version 3 no longer writes) and version 3
/// (LZ4, the blocked filter; its properties block has no range tombstones, which version 4
/// added).
#[test]
fn tables_of_format_versions_1_to_3_still_open_and_read() {
    for (file, compression) in [
        ("format_v1_zstd.sst", Compression::Zstd { level: 1 }),
        ("format_v2_lz4.sst", Compression::Lz4),
        ("format_v3_lz4.sst", Compression::Lz4),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
        let fs = OsFileSystem;
        let stats = Arc::new(TableStats::default());
        let t = Table::open(&fs, &path, 1, Some(BlockCache::new(1 << 20)), stats.clone()).unwrap();
        assert_eq!(t.properties().compression, compression, "{file}");
        assert_eq!(t.verify().unwrap().entries, 300, "{file}");
        assert!(stats.decompressed_blocks() > 1, "{file} holds compressed blocks");
        assert!(t.range_tombstones().is_none(), "{file}");
        let mut expected = Vec::new();
        for i in 0..300u32 {
            let key = format!("key{i:04}");
            let (kind, value) = if i % 10 == 3 {
                (ValueKind::Delete, String::new())
            } else {
                (ValueKind::Put, format!("value-{i}-").repeat(4))
            };
            let found = t.get(key.as_bytes(), MAX_SEQ).unwrap().unwrap();
            assert_eq!(
                (found.0, found.1, &found.2[..]),
                (kind, u64::from(i) + 1, value.as_bytes()),
                "{file}"
            );
            assert_eq!(t.get(key.as_bytes(), u64::from(i)).unwrap(), None, "older than its write");
            let internal = InternalKey::new(key.as_bytes(), u64::from(i) + 1, kind);
            expected.push((internal.into_encoded(), value.into_bytes()));
        }
        let misses = (300..1300u32)
            .filter(|i| t.get(format!("key{i:04}").as_bytes(), MAX_SEQ).unwrap().is_some());
        assert_eq!(misses.count(), 0, "{file}: absent keys are absent");
        assert_eq!(collect_forward(&mut t.iter()), expected, "{file}");
        assert_eq!(collect_backward(&mut t.iter()), expected, "{file}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A table opened with a global sequence number reads exactly like the same entries
    /// stored at that number: every seek, point lookup and step in both directions.
    #[test]
    fn an_ingested_table_reads_like_its_entries_at_the_global_sequence(
        keys in proptest::collection::btree_set(proptest::collection::vec(0u8..4, 1..4), 1..60),
        deletes in proptest::collection::vec(any::<bool>(), 60),
        global in 1u64..1000,
        probes in proptest::collection::vec((proptest::collection::vec(0u8..4, 0..4), 0u64..1100, any::<bool>()), 1..40),
    ) {
        let fs = sim();
        let (stored, logical): (Model, Model) = keys
            .iter()
            .zip(&deletes)
            .map(|(k, &del)| {
                let kind = if del { ValueKind::Delete } else { ValueKind::Put };
                let v = if del { Vec::new() } else { k.clone() };
                ((InternalKey::new(k, 0, kind), v.clone()), (InternalKey::new(k, global, kind), v))
            })
            .unzip();
        let path = dir().join("ingested.sst");
        build(&fs, &path, &stored, &TableOptions::default().with_block_size(64));
        let table =
            Table::open_ingested(&fs, &path, 9, None, Arc::new(TableStats::default()), global)
                .unwrap();
        prop_assert_eq!(table.global_seq(), Some(global));
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            logical.iter().map(|(k, v)| (k.encoded().to_vec(), v.clone())).collect();
        let mut it = table.iter();
        prop_assert_eq!(collect_forward(&mut it), entries.clone());
        let mut back = Vec::new();
        it.seek_to_last();
        while it.valid() {
            back.push((it.key().to_vec(), it.value().to_vec()));
            it.prev();
        }
        back.reverse();
        prop_assert_eq!(back, entries);
        for (user_key, seq, put) in probes {
            let kind = if put { ValueKind::Put } else { ValueKind::Delete };
            let target = InternalKey::new(&user_key, seq.min(MAX_SEQ), kind);
            it.seek(target.encoded());
            let want = logical.range(target.clone()..).next().map(|(k, _)| k.encoded().to_vec());
            prop_assert_eq!(it.valid().then(|| it.key().to_vec()), want, "seek");
            it.seek_for_prev(target.encoded());
            let want = logical.range(..=target).next_back().map(|(k, _)| k.encoded().to_vec());
            prop_assert_eq!(it.valid().then(|| it.key().to_vec()), want, "seek_for_prev");
            prop_assert_eq!(table.get(&user_key, seq).unwrap(), model_get(&logical, &user_key, seq));
        }
    }
}

/// Version 4 tables carry range tombstones in their properties block: they survive the
/// round trip fragmented, count in the sequence range, and a table may hold nothing else.
#[test]
fn range_tombstones_round_trip_and_may_be_all_a_table_holds() {
    use strata_core::range_del::RangeTombstone;
    let fs = sim();
    let path = dir().join("000009.sst");
    let mut b = TableBuilder::new(&fs, &path, &TableOptions::default()).unwrap();
    b.add_range_tombstone(RangeTombstone::new("k", "p", 12)).unwrap();
    b.add_range_tombstone(RangeTombstone::new("a", "m", 7)).unwrap();
    assert!(b.add_range_tombstone(RangeTombstone::new("z", "z", 3)).is_err(), "empty range");
    let props = b.finish().unwrap();
    assert_eq!((props.num_entries, props.smallest_seq, props.largest_seq), (0, 7, 12));
    // Fragmented: [a,k)@7, [k,m)@{12,7}, [m,p)@12.
    assert_eq!(props.range_tombstones.len(), 4);
    fs.sync_dir(&dir()).unwrap();
    let t = Table::open(&fs, &path, 9, None, Arc::new(TableStats::default())).unwrap();
    assert_eq!(t.properties().range_tombstones, props.range_tombstones);
    assert_eq!(t.range_del_cover(b"l", 100), Some(12));
    assert_eq!(t.range_del_cover(b"l", 10), Some(7));
    assert_eq!(t.range_del_cover(b"b", 6), None);
    assert_eq!(t.range_del_cover(b"p", 100), None);
    assert_eq!(t.get(b"l", 100).unwrap(), None, "no point entries");
    assert_eq!(collect_forward(&mut t.iter()), Vec::<(Vec<u8>, Vec<u8>)>::new());
    assert_eq!(t.verify().unwrap().entries, 0);
}
