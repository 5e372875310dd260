//! The logic of strata's cargo-fuzz targets, as plain functions.
//!
//! Each `fuzz_targets/<name>.rs` calls the function of the same name here. The same file is
//! compiled into the engine's integration test `engine/tests/fuzz_corpus_replay.rs` (through
//! `#[path]`), which replays every committed corpus file in an ordinary `cargo test`; so this
//! file may only use crates that the engine's tests can use (the strata crates and
//! `arbitrary`), must not refer to `crate::` paths, and must stay one file.
//!
//! Every target panics on a finding (a failed assertion), which libFuzzer reports as a crash.
//! The input formats are hand-rolled byte layouts read through [`arbitrary::Unstructured`], so
//! that [`seed_corpus`] can write valid seeds (see docs/testing.md for the layouts).
//!
//! * [`ops_crash`]: a sequence of database operations, injected I/O errors and power losses,
//!   checked against a model that knows each write's durability.
//! * [`wal_reader`], [`sstable_reader`], [`manifest_reader`]: arbitrary bytes as a log, a table,
//!   a manifest: the reader returns data or `Error::Corruption` naming the file — no panic, no
//!   hang, no allocation beyond a fixed bound.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use strata::{Compression, Db, Durability, Error, Options, WriteBatch};
use strata_compaction::{manifest_file_name, Manifest, CURRENT_FILE_NAME};
use strata_core::fs::FileSystem;
use strata_core::iter::InternalIterator;
use strata_core::key::{parse_internal_key, MAX_SEQ};
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};
use strata_sstable::{BlockCache, Table, TableStats};
use strata_wal::{BatchEncoding, LogReader, RecoveryMode, Wal, WalOptions};

/// The fuzz targets, by name (also the names of the corpus directories).
pub const TARGETS: [&str; 4] = ["ops_crash", "wal_reader", "sstable_reader", "manifest_reader"];

/// Runs the target called `name` on `data` (for corpus replay).
pub fn run_target(name: &str, data: &[u8]) {
    match name {
        "ops_crash" => ops_crash(data),
        "wal_reader" => wal_reader(data),
        "sstable_reader" => sstable_reader(data),
        "manifest_reader" => manifest_reader(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Reads one byte (0 once the input is exhausted, as `arbitrary` does).
fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

fn u16_le(u: &mut Unstructured<'_>) -> u16 {
    u16::from_le_bytes([byte(u), byte(u)])
}

/// Reads `[len u16 LE][len bytes]` records until the input ends (the last one may be short).
fn length_prefixed(u: &mut Unstructured<'_>, limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < limit {
        let len = usize::from(u16_le(u)).min(u.len());
        out.push(u.bytes(len).map(<[u8]>::to_vec).unwrap_or_default());
    }
    out
}

fn put_length_prefixed(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("seed payloads fit a u16 length");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A fresh simulated disk holding `bytes` at `path` (durably, as on a real disk at rest).
fn disk_with_file(path: &Path, bytes: &[u8]) -> SimFileSystem {
    let fs = SimFileSystem::new();
    let dir = strata_core::fs::parent_dir(path);
    fs.create_dir_all(&dir).expect("sim mkdir");
    write_file(&fs, path, bytes);
    fs
}

fn write_file(fs: &SimFileSystem, path: &Path, bytes: &[u8]) {
    drop(fs.create(path).expect("sim create"));
    fs.overwrite(path, bytes.to_vec()).expect("sim overwrite");
    fs.sync_dir(&strata_core::fs::parent_dir(path)).expect("sim sync_dir");
}

/// Every error a reader returns for bad bytes on a healthy (simulated) disk must be a
/// corruption naming the file that was read.
fn assert_corruption_of(e: &Error, path: &Path) {
    match e {
        Error::Corruption { file, .. } => {
            assert_eq!(file, path, "corruption names the wrong file: {e}")
        }
        other => panic!("reading {} gave a non-corruption error: {other:?}", path.display()),
    }
}

// ------------------------------------------------------------------------------------------
// wal_reader
// ------------------------------------------------------------------------------------------

const WAL_PATH: &str = "/db/000009.log";

/// `wal_reader`: bytes as a log file, read to the end in both recovery modes.
///
/// Layout: `flags u8`, then
/// * raw mode (flags bit 2 clear): the file's bytes, after the valid 16-byte file header if
///   bit 1 is set;
/// * framed mode (bit 2 set): `[cut u16]` if bit 3, `[flip_at u16, mask u8]` if bit 4, then
///   payloads as `[len u16 LE][bytes]`, each stretched by cycling to 16 × `len` bytes if bit 5
///   (records spanning blocks). The harness writes them with [`Wal`], then cuts the file at
///   `cut` (a torn tail) and xors the byte at `flip_at` with `mask`.
///
/// Checks: no panic and termination; errors are corruption naming the log; both modes read
/// the same records and PointInTime never fails after open; in framed mode the records read
/// are a prefix of those written (all of them without damage); every record that decodes as
/// a write batch iterates without panic.
pub fn wal_reader(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let path = Path::new(WAL_PATH);
    let (file, written) = if flags & 4 == 0 {
        let mut file = Vec::new();
        if flags & 2 != 0 {
            file.extend_from_slice(&strata_wal::format::file_header());
        }
        file.extend_from_slice(u.take_rest());
        (file, None)
    } else {
        let cut = (flags & 8 != 0).then(|| usize::from(u16_le(&mut u)));
        let flip = (flags & 16 != 0).then(|| (usize::from(u16_le(&mut u)), byte(&mut u)));
        let mut payloads = length_prefixed(&mut u, 64);
        if flags & 32 != 0 {
            for p in &mut payloads {
                let want = p.len() * 16;
                let stretched: Vec<u8> = p.iter().copied().cycle().take(want).collect();
                *p = stretched;
            }
        }
        let fs = SimFileSystem::new();
        fs.create_dir_all(Path::new("/db")).expect("sim mkdir");
        let wal =
            Wal::create(Arc::new(fs.clone()), path, WalOptions::default()).expect("create log");
        for p in &payloads {
            wal.append(p, false).expect("append to log");
        }
        wal.close().expect("close log");
        let mut file = fs.read(path).expect("read log back");
        let damaged = cut.is_some_and(|c| c < file.len())
            || flip.is_some_and(|(at, m)| m != 0 && at < file.len());
        if let Some(c) = cut {
            file.truncate(c);
        }
        if let Some((at, mask)) = flip {
            if let Some(b) = file.get_mut(at) {
                *b ^= mask;
            }
        }
        (file, Some((payloads, damaged)))
    };

    let strict = read_log(&file, RecoveryMode::Strict);
    let pit = read_log(&file, RecoveryMode::PointInTime);
    match (&strict, &pit) {
        (Err(a), Err(b)) => {
            assert_corruption_of(a, path);
            assert_eq!(a.to_string(), b.to_string(), "open fails differently per mode");
        }
        (Ok(s), Ok(p)) => {
            assert_eq!(s.records, p.records, "the modes read different records");
            assert!(p.error.is_none(), "PointInTime failed after open: {:?}", p.error);
            if let Some(e) = &s.error {
                assert_corruption_of(e, path);
                assert!(
                    p.stopped_at_corruption,
                    "Strict saw corruption, PointInTime did not report it"
                );
            }
            for r in &s.records {
                if let Ok(batch) = WriteBatch::decode(r.clone()) {
                    let n = batch.iter().count();
                    assert_eq!(n, batch.len(), "batch count disagrees with its entries");
                }
            }
            if let Some((payloads, damaged)) = &written {
                assert!(
                    payloads.starts_with(&s.records),
                    "log reader returned data that was never written"
                );
                if !damaged {
                    assert_eq!(&s.records, payloads, "undamaged log lost records");
                    assert!(s.error.is_none() && s.dropped.is_none());
                }
            }
        }
        (a, b) => {
            panic!("open succeeds in one mode only: strict {:?} / pit {:?}", a.is_ok(), b.is_ok())
        }
    }
}

struct LogOutcome {
    records: Vec<Vec<u8>>,
    error: Option<Error>,
    dropped: Option<(u64, u64)>,
    stopped_at_corruption: bool,
}

fn read_log(file: &[u8], mode: RecoveryMode) -> Result<LogOutcome, Error> {
    let path = Path::new(WAL_PATH);
    let fs = disk_with_file(path, file);
    let mut reader = LogReader::open(&fs, path, mode)?;
    let mut records = Vec::new();
    let mut error = None;
    // Every record takes at least a 7-byte fragment header: more iterations is a hang.
    let bound = file.len() / 7 + 2;
    let mut last_offset = None;
    loop {
        assert!(records.len() <= bound, "log reader does not terminate");
        match reader.next_record() {
            Ok(Some(r)) => {
                assert!(r.offset < file.len() as u64, "record offset past the end");
                assert!(last_offset.is_none_or(|o| r.offset > o), "record offsets do not increase");
                assert!(r.payload.len() <= file.len(), "record larger than the file");
                last_offset = Some(r.offset);
                records.push(r.payload.to_vec());
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    // The end is sticky.
    match (&error, reader.next_record()) {
        (None, Ok(None)) | (Some(_), Err(_)) => {}
        (e, again) => {
            panic!("end of log not sticky: {e:?} then {:?}", again.map(|r| r.map(|r| r.offset)))
        }
    }
    if let Some((at, len)) = reader.dropped_tail() {
        assert!(
            at.checked_add(len).is_some_and(|end| end <= file.len() as u64),
            "dropped tail outside the file"
        );
    }
    Ok(LogOutcome {
        records,
        error,
        dropped: reader.dropped_tail(),
        stopped_at_corruption: reader.stopped_at_corruption(),
    })
}

// ------------------------------------------------------------------------------------------
// sstable_reader
// ------------------------------------------------------------------------------------------

const TABLE_PATH: &str = "/db/000011.sst";

/// CRC-32 (IEEE), as crc32fast computes it (the sstable format's checksum).
fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

/// Recomputes the footer CRC and the trailer CRCs of the three metadata blocks the footer
/// names, so that mutations reach the block parsers behind the checksums.
fn fix_table_checksums(file: &mut [u8]) {
    let len = file.len();
    let Some(footer_at) = len.checked_sub(64) else { return };
    let read_u64 = |f: &[u8], at: usize| -> u64 {
        f.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
    };
    for h in 0..3 {
        let offset = read_u64(file, footer_at + 16 * h);
        let size = read_u64(file, footer_at + 16 * h + 8);
        let (Ok(offset), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
            continue;
        };
        let Some(end) =
            offset.checked_add(size).filter(|e| e.checked_add(5).is_some_and(|t| t <= footer_at))
        else {
            continue;
        };
        let ty = file[end];
        let crc = crc32(&[&file[offset..end], &[ty]]);
        file[end + 1..end + 5].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32(&[&file[footer_at..footer_at + 52]]);
    file[footer_at + 52..footer_at + 56].copy_from_slice(&crc.to_le_bytes());
}

/// `sstable_reader`: bytes as a table file: open, iterate forward and backward, seek, get.
///
/// Layout: `flags u8` (bit 0: with a block cache; bit 1: recompute the footer's and the
/// metadata blocks' checksums first, so that mutations reach the parsers behind them), then
/// the file.
///
/// Checks: no panic, termination, bounded allocation (run with `-malloc_limit_mb`); every
/// error is corruption naming the table; iteration ends after an error.
pub fn sstable_reader(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let mut file = u.take_rest().to_vec();
    if flags & 2 != 0 {
        fix_table_checksums(&mut file);
    }
    let path = Path::new(TABLE_PATH);
    let fs = disk_with_file(path, &file);
    let cache = (flags & 1 != 0).then(|| BlockCache::new(1 << 20));
    let table = match Table::open(&fs, path, 11, cache, Arc::new(TableStats::default())) {
        Ok(t) => t,
        Err(e) => return assert_corruption_of(&e, path),
    };
    let _ = table.properties();
    // Entries are bounded by what the blocks can decompress to; this only catches a cursor
    // that stops moving.
    const MAX_STEPS: usize = 2_000_000;
    let mut it = table.iter();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    it.seek_to_first();
    let mut steps = 0;
    while it.valid() {
        steps += 1;
        assert!(steps < MAX_STEPS, "table iterator does not terminate");
        if keys.len() < 32 {
            keys.push(it.key().to_vec());
        }
        let _ = it.value();
        it.next();
    }
    if let Err(e) = it.status() {
        assert_corruption_of(&e, path);
    }
    it.seek_to_last();
    steps = 0;
    while it.valid() {
        steps += 1;
        assert!(steps < MAX_STEPS, "table iterator does not terminate backwards");
        it.prev();
    }
    if let Err(e) = it.status() {
        assert_corruption_of(&e, path);
    }
    for key in &keys {
        let mut it = table.iter();
        it.seek(key);
        if let Err(e) = it.status() {
            assert_corruption_of(&e, path);
        }
        it.seek_for_prev(key);
        if let Some(parsed) = parse_internal_key(key) {
            for seq in [MAX_SEQ, parsed.seq, parsed.seq.saturating_sub(1)] {
                if let Err(e) = table.get(parsed.user_key, seq) {
                    assert_corruption_of(&e, path);
                }
            }
        }
    }
    for probe in [&b""[..], b"a", b"key", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff"] {
        if let Err(e) = table.get(probe, MAX_SEQ) {
            assert_corruption_of(&e, path);
        }
        let _ = table.may_contain(probe);
    }
}

// ------------------------------------------------------------------------------------------
// manifest_reader
// ------------------------------------------------------------------------------------------

const MANIFEST_NUMBER: u64 = 7;

/// `manifest_reader`: bytes as a manifest (and optionally as `CURRENT`), recovered.
///
/// Layout: `flags u8`, then `[len u8][CURRENT bytes]` if bit 1 (else `CURRENT` names
/// `MANIFEST-000007`), then
/// * raw mode (bit 0 clear): the manifest file's bytes;
/// * framed mode (bit 0 set): `[cut u16]` if bit 3, `[flip_at u16, mask u8]` if bit 4, then
///   records as `[len u16 LE][bytes]`, the first prefixed with the manifest magic and version
///   if bit 2, written with the log writer (so edits reach the decoder behind the checksums).
///
/// Checks: no panic; errors are corruption (naming `CURRENT` or a manifest); a recovered
/// state satisfies the version's invariants and survives a round trip through a fresh
/// manifest unchanged.
pub fn manifest_reader(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let dir = Path::new("/db");
    let current_bytes = if flags & 2 != 0 {
        let n = usize::from(byte(&mut u)).min(u.len());
        u.bytes(n).map(<[u8]>::to_vec).unwrap_or_default()
    } else {
        format!("{}\n", manifest_file_name(MANIFEST_NUMBER)).into_bytes()
    };
    let manifest_path = dir.join(manifest_file_name(MANIFEST_NUMBER));
    let fs = SimFileSystem::new();
    fs.create_dir_all(dir).expect("sim mkdir");
    if flags & 1 == 0 {
        write_file(&fs, &manifest_path, u.take_rest());
    } else {
        let cut = (flags & 8 != 0).then(|| usize::from(u16_le(&mut u)));
        let flip = (flags & 16 != 0).then(|| (usize::from(u16_le(&mut u)), byte(&mut u)));
        let mut records = length_prefixed(&mut u, 64);
        if flags & 4 != 0 {
            let first = records.first().cloned().unwrap_or_default();
            let mut with_header = strata_compaction::MANIFEST_MAGIC.to_vec();
            with_header
                .extend_from_slice(&strata_compaction::MANIFEST_FORMAT_VERSION.to_le_bytes());
            with_header.extend_from_slice(&first);
            match records.first_mut() {
                Some(r) => *r = with_header,
                None => records.push(with_header),
            }
        }
        let wal = Wal::create(Arc::new(fs.clone()), &manifest_path, WalOptions::default())
            .expect("create");
        for r in &records {
            wal.append(r, false).expect("append");
        }
        wal.close().expect("close");
        let mut bytes = fs.read(&manifest_path).expect("read back");
        if let Some(c) = cut {
            bytes.truncate(c);
        }
        if let Some((at, mask)) = flip {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= mask;
            }
        }
        write_file(&fs, &manifest_path, &bytes);
    }
    write_file(&fs, &dir.join(CURRENT_FILE_NAME), &current_bytes);

    let state = match Manifest::recover(Arc::new(fs.clone()), dir) {
        Ok(Some(state)) => state,
        Ok(None) => panic!("recover ignored an existing CURRENT"),
        Err(Error::Corruption { file, .. }) => {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert!(
                name == CURRENT_FILE_NAME || name.starts_with("MANIFEST-"),
                "corruption names neither CURRENT nor a manifest: {}",
                file.display()
            );
            return;
        }
        Err(other) => panic!("manifest recovery gave a non-corruption error: {other:?}"),
    };
    if let Err(e) = state.version.check_invariants() {
        panic!("recovered version breaks its invariants: {e}");
    }
    // Round trip: a fresh manifest holding the recovered state recovers to the same state.
    let fresh = SimFileSystem::new();
    fresh.create_dir_all(dir).expect("sim mkdir");
    let number = state.manifest_number;
    if let Err(e) =
        Manifest::create_new(Arc::new(fresh.clone()), dir, number, &state.snapshot_edit())
    {
        panic!("a recovered state cannot be written as a new manifest: {e}");
    }
    let again = Manifest::recover(Arc::new(fresh), dir)
        .expect("recover fresh manifest")
        .expect("CURRENT written");
    assert_eq!(again.version, state.version);
    assert_eq!(
        (again.log_number, again.next_file_number, again.last_sequence, &again.compact_pointers),
        (state.log_number, state.next_file_number, state.last_sequence, &state.compact_pointers),
        "recovered state changed in a round trip"
    );
}

// ------------------------------------------------------------------------------------------
// ops_crash
// ------------------------------------------------------------------------------------------

/// Most ops one input runs (keeps each execution in the milliseconds).
const MAX_OPS: usize = 300;
const DB_DIR: &str = "/db";
/// Distinct short keys; ids beyond map to long keys and the empty key.
const SHORT_KEYS: u8 = 48;

/// The key for a key id: 48 short keys, 7 long (1 KiB) keys and the empty key.
fn key_of(id: u8) -> Vec<u8> {
    match id {
        255 => Vec::new(),
        248..=254 => {
            let mut k = format!("long{id}-").into_bytes();
            k.resize(1024, b'L');
            k
        }
        _ => format!("k{:02}", id % SHORT_KEYS).into_bytes(),
    }
}

/// Every key the fuzzer can write.
fn key_universe() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..SHORT_KEYS).chain(248..=255).map(key_of).collect();
    keys.sort();
    keys
}

/// A value unique to write number `write_no`, `len` bytes at least as long as its tag.
fn value_of(write_no: u64, key_id: u8, len: usize) -> Vec<u8> {
    let mut v = format!("w{write_no}/k{key_id}/").into_bytes();
    let fill = (write_no % 251) as u8;
    if v.len() < len {
        v.resize(len, fill);
    }
    v
}

/// The durability byte of a write: Sync, Buffered or Periodic (the fuzzer does not use
/// `Durability::None`, whose writes may be lost independently of the log order).
fn durability_of(b: u8) -> Durability {
    match b % 3 {
        0 => Durability::Sync,
        1 => Durability::Buffered,
        _ => Durability::Periodic(Duration::from_millis(2)),
    }
}

/// One operation of [`ops_crash`]. Encoding: opcode byte (mod 15), then the listed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// 0: `[key, value_len/16, durability]`: a put.
    Put { key: u8, len16: u8, durability: u8 },
    /// 1: `[key, durability]`: a delete.
    Delete { key: u8, durability: u8 },
    /// 2: `[n, (key, value_len/16 or 255 = delete) * (n % 8 + 1), durability]`: an atomic batch.
    Batch { entries: Vec<(u8, u8)>, durability: u8 },
    /// 3: `[key]`: a get, compared with the model.
    Get { key: u8 },
    /// 4: `[lo, hi, flags, steps]`: a range scan (flags bit 0 reverse, bit 1 inclusive end,
    /// bit 2 no start, bit 3 no end, bit 4 alternate ends using `steps` as the pattern).
    Scan { lo: u8, hi: u8, flags: u8, steps: u8 },
    /// 5: take a snapshot (at most 4 live).
    Snapshot,
    /// 6: `[index, key]`: read a snapshot (a get and a full scan) and compare with its model.
    ReadSnapshot { index: u8, key: u8 },
    /// 7: `[index]`: drop a snapshot.
    DropSnapshot { index: u8 },
    /// 8: `db.flush()`.
    Flush,
    /// 9: `[how]`: close (`how` odd: `db.close()`, even: drop) and reopen; verify.
    Reopen { how: u8 },
    /// 10: `[mode]`: power loss now (0: synced bytes only, else a torn tail seeded by
    /// `mode`), then reopen and verify.
    PowerLoss { mode: u8 },
    /// 11: `[op, n]`: the `n % 8 + 1`-th next file-system operation of kind `op % 6` fails.
    Fault { op: u8, n: u8 },
    /// 12: `[budget]`: appends fail with ENOSPC after `budget * 64` more bytes.
    NoSpace { budget: u8 },
    /// 13: cancel injected faults.
    ClearFaults,
    /// 14: `[lo, hi, whole]`: `db.compact()` (`whole` even) or `db.compact_range(lo..=hi)`;
    /// it must change nothing visible (checked by the next reads and the recovery check).
    Compact { lo: u8, hi: u8, whole: u8 },
}

impl Op {
    fn decode(u: &mut Unstructured<'_>) -> Op {
        match byte(u) % 15 {
            0 => Op::Put { key: byte(u), len16: byte(u), durability: byte(u) },
            1 => Op::Delete { key: byte(u), durability: byte(u) },
            2 => {
                let n = byte(u) % 8 + 1;
                let entries = (0..n).map(|_| (byte(u), byte(u))).collect();
                Op::Batch { entries, durability: byte(u) }
            }
            3 => Op::Get { key: byte(u) },
            4 => Op::Scan { lo: byte(u), hi: byte(u), flags: byte(u), steps: byte(u) },
            5 => Op::Snapshot,
            6 => Op::ReadSnapshot { index: byte(u), key: byte(u) },
            7 => Op::DropSnapshot { index: byte(u) },
            8 => Op::Flush,
            9 => Op::Reopen { how: byte(u) },
            10 => Op::PowerLoss { mode: byte(u) },
            11 => Op::Fault { op: byte(u), n: byte(u) },
            12 => Op::NoSpace { budget: byte(u) },
            13 => Op::ClearFaults,
            _ => Op::Compact { lo: byte(u), hi: byte(u), whole: byte(u) },
        }
    }

    /// The bytes [`Op::decode`] reads back as `self` (for seed inputs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Put { key, len16, durability } => out.extend([0, *key, *len16, *durability]),
            Op::Delete { key, durability } => out.extend([1, *key, *durability]),
            Op::Batch { entries, durability } => {
                assert!((1..=8).contains(&entries.len()));
                out.extend([2, (entries.len() - 1) as u8]);
                for (k, l) in entries {
                    out.extend([*k, *l]);
                }
                out.push(*durability);
            }
            Op::Get { key } => out.extend([3, *key]),
            Op::Scan { lo, hi, flags, steps } => out.extend([4, *lo, *hi, *flags, *steps]),
            Op::Snapshot => out.push(5),
            Op::ReadSnapshot { index, key } => out.extend([6, *index, *key]),
            Op::DropSnapshot { index } => out.extend([7, *index]),
            Op::Flush => out.push(8),
            Op::Reopen { how } => out.extend([9, *how]),
            Op::PowerLoss { mode } => out.extend([10, *mode]),
            Op::Fault { op, n } => out.extend([11, *op, *n]),
            Op::NoSpace { budget } => out.extend([12, *budget]),
            Op::ClearFaults => out.push(13),
            Op::Compact { lo, hi, whole } => out.extend([14, *lo, *hi, *whole]),
        }
    }
}

/// Database options of one [`ops_crash`] input: 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpsConfig {
    /// Memtable size: `4 + b % 61` KiB.
    pub memtable: u8,
    /// Block size: `64 << (b % 7)` bytes.
    pub block: u8,
    /// Bit 0: zstd; bit 1: no bloom filter; bit 2: PointInTime recovery; bit 3: unused (it
    /// chose `background_threads`, an option that changed nothing and is gone; kept so the
    /// committed corpus decodes as before).
    pub flags: u8,
    /// `max_immutable_memtables = b % 3 + 1`.
    pub imms: u8,
}

impl OpsConfig {
    fn options(&self, fs: &SimFileSystem) -> Options {
        Options::default()
            .file_system(Arc::new(fs.clone()))
            .durability(Durability::Buffered)
            .memtable_size((4 + usize::from(self.memtable % 61)) << 10)
            .block_size(64 << (self.block % 7))
            .compression(if self.flags & 1 != 0 {
                Compression::Zstd { level: 1 }
            } else {
                Compression::None
            })
            .bloom_bits_per_key(if self.flags & 2 != 0 { 0 } else { 10 })
            .recovery_mode(if self.flags & 4 != 0 {
                RecoveryMode::PointInTime
            } else {
                RecoveryMode::Strict
            })
            .max_immutable_memtables(usize::from(self.imms % 3) + 1)
            .block_cache_size(256 << 10)
            // Automatic compactions run (level-0 trigger 4), but writers never stall on
            // level 0: a compaction that fails must not turn into a hang of the fuzzer.
            .l0_compaction_trigger(4)
            .l0_slowdown_trigger(1 << 20)
            .l0_stop_trigger(1 << 20)
    }

    /// The bytes that decode as this config.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend([self.memtable, self.block, self.flags, self.imms]);
    }
}

/// Encodes a whole [`ops_crash`] input.
pub fn encode_ops_input(config: OpsConfig, ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    config.encode(&mut out);
    for op in ops {
        op.encode(&mut out);
    }
    out
}

type State = BTreeMap<Vec<u8>, Vec<u8>>;
/// One write: `(key, Some(value))` for a put, `(key, None)` for a delete.
type Mutation = (Vec<u8>, Option<Vec<u8>>);

/// A write call as the model remembers it.
#[derive(Debug, Clone)]
struct LoggedWrite {
    mutations: Vec<Mutation>,
    /// The call returned `Ok`. An unacknowledged write (failed with an I/O error) may or may
    /// not have reached the log; the engine then refuses every later write of the session.
    acked: bool,
    durability: Durability,
}

fn apply(state: &mut State, mutations: &[Mutation]) {
    for (k, v) in mutations {
        match v {
            Some(v) => state.insert(k.clone(), v.clone()),
            None => state.remove(k),
        };
    }
}

/// What the database must hold: `base` (durable: what the last open recovered) followed by a
/// prefix of `log`, at least `must` writes long.
struct Model {
    base: State,
    log: Vec<LoggedWrite>,
    /// Writes `log[..must]` are known durable (a Sync ack, a successful flush or close).
    must: usize,
    /// What the running database shows: `base` + every acknowledged write.
    current: State,
    /// A write or flush failed: the database must refuse every further write this session.
    poisoned: bool,
}

impl Model {
    fn new() -> Model {
        Model {
            base: State::new(),
            log: Vec::new(),
            must: 0,
            current: State::new(),
            poisoned: false,
        }
    }

    /// Checks a recovered state against the prefix property and makes it the new base.
    fn recovered(&mut self, got: State, history: &str) {
        let mut state = self.base.clone();
        let mut matched = (self.must == 0 && state == got).then_some(0);
        for (i, w) in self.log.iter().enumerate() {
            apply(&mut state, &w.mutations);
            if i + 1 >= self.must && state == got {
                matched = Some(i + 1);
            }
        }
        if matched.is_none() {
            let summary: Vec<String> = self
                .log
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    format!("#{i} {:?} acked={} {:?}", w.durability, w.acked, short(&w.mutations))
                })
                .collect();
            panic!(
                "recovered state is no allowed prefix of the write log (must keep {} of {} writes)\n\
                 recovered: {:?}\nbase: {:?}\nlog:\n{}\nhistory:\n{history}",
                self.must,
                self.log.len(),
                short_state(&got),
                short_state(&self.base),
                summary.join("\n")
            );
        }
        self.base = got.clone();
        self.current = got;
        self.log.clear();
        self.must = 0;
        self.poisoned = false;
    }
}

fn short(bytes_list: &[Mutation]) -> Vec<(String, Option<String>)> {
    bytes_list.iter().map(|(k, v)| (abbrev(k), v.as_deref().map(abbrev))).collect()
}

fn short_state(s: &State) -> Vec<(String, String)> {
    s.iter().map(|(k, v)| (abbrev(k), abbrev(v))).collect()
}

fn abbrev(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b.get(..24).unwrap_or(b)).into_owned();
    if b.len() > 24 {
        format!("{s}..({})", b.len())
    } else {
        s
    }
}

/// Reads the whole database forward, backward and by key; all three must agree. Every read
/// must succeed: the caller cleared injected faults.
fn read_all(db: &Db) -> State {
    let forward: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("full scan failed after recovery: {e}"));
    let mut backward: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter()
        .rev()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reverse scan failed after recovery: {e}"));
    backward.reverse();
    assert_eq!(forward, backward, "forward and reverse scans disagree");
    assert!(forward.windows(2).all(|w| w[0].0 < w[1].0), "scan not strictly ordered");
    let state: State = forward.into_iter().collect();
    for key in key_universe() {
        let got = db.get(&key).unwrap_or_else(|e| panic!("get failed after recovery: {e}"));
        assert_eq!(
            got.as_deref(),
            state.get(&key).map(Vec::as_slice),
            "get({}) disagrees with the scan",
            abbrev(&key)
        );
    }
    state
}

/// Checks an error that a read returned while faults may be injected: never corruption
/// (nothing in this target damages files; torn tails are the engine's to handle).
fn check_read_error(e: &Error, what: &str) {
    assert!(!e.is_corruption(), "{what} reported corruption of undamaged files: {e}");
}

struct Harness {
    fs: SimFileSystem,
    config: OpsConfig,
    db: Option<Db>,
    model: Model,
    snapshots: Vec<(strata::Snapshot, State)>,
    write_no: u64,
    history: Vec<String>,
}

impl Harness {
    /// Options for a new process: a fresh, live view of the disk.
    fn new_process_options(&mut self) -> Options {
        self.config.options(&self.fs).file_system(Arc::new(self.fs.process()))
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("database is open between ops")
    }

    /// Opens the database after a close or crash and verifies what it recovered. An open may
    /// fail while faults are injected (never with corruption); the harness then simulates the
    /// power loss that ends the failed process, clears the faults and opens again.
    fn reopen_and_verify(&mut self) {
        self.snapshots.clear();
        self.db = None;
        let mut attempts = 0;
        let db = loop {
            match Db::open(DB_DIR, self.new_process_options()) {
                Ok(db) => break db,
                Err(e) => {
                    assert!(
                        !e.is_corruption(),
                        "open reported corruption after a crash: {e}\n{}",
                        self.history.join("\n")
                    );
                    attempts += 1;
                    assert!(attempts < 3, "open keeps failing without injected faults: {e}");
                    self.history.push(format!("open failed: {e}; power loss, clear faults, retry"));
                    self.fs.crash(CrashMode::TornTail { seed: attempts });
                    self.fs.clear_faults();
                }
            }
        };
        self.fs.clear_faults();
        let got = read_all(&db);
        let history = self.history.join("\n");
        // A read-only open beside the recovered writer replays what the writer left in its
        // log and must see exactly what the writer sees. The writer is settled first: a
        // compaction may otherwise delete a table the reader has yet to open.
        let _ = db.wait_for_compaction();
        let reader = Db::open_read_only(DB_DIR, self.config.options(&self.fs))
            .unwrap_or_else(|e| panic!("read-only open beside the writer failed: {e}\n{history}"));
        assert!(
            read_all(&reader) == got,
            "a read-only open disagrees with the writer's recovery\n{history}"
        );
        drop(reader);
        self.model.recovered(got, &history);
        self.db = Some(db);
    }

    fn write(&mut self, mutations: Vec<Mutation>, durability: Durability) {
        let mut batch = WriteBatch::new();
        for (k, v) in &mutations {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        let single = mutations.len() == 1;
        let result = match (&mutations[..], durability) {
            // The plain API calls, with the database's default durability (Buffered).
            ([(k, Some(v))], Durability::Buffered) if single => self.db().put(k, v),
            ([(k, None)], Durability::Buffered) if single => self.db().delete(k),
            _ => self.db().write_with(batch, durability),
        };
        self.history.push(format!(
            "write {:?} {:?} -> {:?}",
            durability,
            short(&mutations),
            result.as_ref().err()
        ));
        match result {
            Ok(()) => {
                assert!(
                    !self.model.poisoned,
                    "a write was accepted after an earlier write failure\n{}",
                    self.history.join("\n")
                );
                apply(&mut self.model.current, &mutations);
                self.model.log.push(LoggedWrite { mutations, acked: true, durability });
                if durability == Durability::Sync {
                    self.model.must = self.model.log.len();
                }
            }
            Err(Error::InvalidArgument(_)) => {}
            Err(Error::Poisoned(_)) => self.model.poisoned = true,
            Err(e) => {
                assert!(
                    !matches!(e, Error::Closed | Error::Locked(_) | Error::Busy),
                    "unexpected write error {e:?}"
                );
                assert!(!e.is_corruption(), "a write reported corruption: {e}");
                assert!(
                    !self.model.poisoned,
                    "a write after a failure got {e} instead of Poisoned"
                );
                self.model.poisoned = true;
                // It may be in the log: neither acknowledged nor known to be absent.
                self.model.log.push(LoggedWrite { mutations, acked: false, durability });
            }
        }
    }

    fn scan(&mut self, lo: u8, hi: u8, flags: u8, steps: u8) {
        let (lo_key, hi_key) = (key_of(lo), key_of(hi));
        let start = if flags & 4 != 0 { Bound::Unbounded } else { Bound::Included(lo_key) };
        let end = if flags & 8 != 0 {
            Bound::Unbounded
        } else if flags & 2 != 0 {
            Bound::Included(hi_key)
        } else {
            Bound::Excluded(hi_key)
        };
        let expected: Vec<(Vec<u8>, Vec<u8>)> = match (&start, &end) {
            // BTreeMap::range panics on an inverted range; the engine yields nothing.
            (Bound::Included(a), Bound::Included(b) | Bound::Excluded(b)) if a > b => Vec::new(),
            (Bound::Included(a), Bound::Excluded(b)) if a == b => Vec::new(),
            _ => self
                .model
                .current
                .range((start.clone(), end.clone()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut iter = self.db().range((start, end));
        let (mut front, mut back) = (Vec::new(), Vec::new());
        let mut step = 0u32;
        loop {
            let from_back =
                if flags & 16 != 0 { (steps >> (step % 8)) & 1 == 1 } else { flags & 1 != 0 };
            step += 1;
            let item = if from_back { iter.next_back() } else { iter.next() };
            match item {
                None => break,
                Some(Ok((k, v))) => {
                    let entry = (k.to_vec(), v.to_vec());
                    if from_back {
                        back.push(entry)
                    } else {
                        front.push(entry)
                    }
                }
                Some(Err(e)) => {
                    check_read_error(&e, "scan");
                    assert!(
                        iter.next().is_none() && iter.next_back().is_none(),
                        "iterator continued after an error"
                    );
                    // Up to the error, each end must have shown exactly the model's entries.
                    assert!(
                        expected.starts_with(&front),
                        "scan returned wrong data before an error"
                    );
                    let rev: Vec<_> = expected.iter().rev().cloned().collect();
                    assert!(
                        rev.starts_with(&back),
                        "reverse scan returned wrong data before an error"
                    );
                    return;
                }
            }
            assert!(
                front.len() + back.len() <= expected.len(),
                "scan returned more entries than exist: {front:?} {back:?} vs {expected:?}"
            );
        }
        back.reverse();
        front.extend(back);
        assert_eq!(front, expected, "scan disagrees with the model\n{}", self.history.join("\n"));
    }

    fn run(&mut self, op: Op) {
        self.history.push(format!("{op:?}"));
        match op {
            Op::Put { key, len16, durability } => {
                self.write_no += 1;
                let v = value_of(self.write_no, key, usize::from(len16) * 16);
                self.write(vec![(key_of(key), Some(v))], durability_of(durability));
            }
            Op::Delete { key, durability } => {
                self.write_no += 1;
                self.write(vec![(key_of(key), None)], durability_of(durability));
            }
            Op::Batch { entries, durability } => {
                self.write_no += 1;
                let n = self.write_no;
                let mutations = entries
                    .iter()
                    .map(|&(k, l)| {
                        (key_of(k), (l != 255).then(|| value_of(n, k, usize::from(l) * 16)))
                    })
                    .collect();
                self.write(mutations, durability_of(durability));
            }
            Op::Get { key } => {
                let k = key_of(key);
                match self.db().get(&k) {
                    Ok(v) => assert_eq!(
                        v.as_deref(),
                        self.model.current.get(&k).map(Vec::as_slice),
                        "get({}) disagrees with the model\n{}",
                        abbrev(&k),
                        self.history.join("\n")
                    ),
                    Err(e) => check_read_error(&e, "get"),
                }
            }
            Op::Scan { lo, hi, flags, steps } => self.scan(lo, hi, flags, steps),
            Op::Snapshot => {
                if self.snapshots.len() < 4 {
                    let snap = self.db().snapshot();
                    self.snapshots.push((snap, self.model.current.clone()));
                }
            }
            Op::ReadSnapshot { index, key } => {
                if self.snapshots.is_empty() {
                    return;
                }
                let (snap, state) = &self.snapshots[usize::from(index) % self.snapshots.len()];
                let k = key_of(key);
                match snap.get(&k) {
                    Ok(v) => assert_eq!(
                        v.as_deref(),
                        state.get(&k).map(Vec::as_slice),
                        "snapshot get disagrees"
                    ),
                    Err(e) => check_read_error(&e, "snapshot get"),
                }
                let mut seen = Vec::new();
                for item in snap.iter() {
                    match item {
                        Ok((k, v)) => seen.push((k.to_vec(), v.to_vec())),
                        Err(e) => {
                            check_read_error(&e, "snapshot scan");
                            let expected: Vec<_> = state.clone().into_iter().collect();
                            assert!(
                                expected.starts_with(&seen),
                                "snapshot scan returned wrong data before an error"
                            );
                            return;
                        }
                    }
                }
                let expected: Vec<_> = state.clone().into_iter().collect();
                assert_eq!(seen, expected, "snapshot scan disagrees with its model");
            }
            Op::DropSnapshot { index } => {
                if !self.snapshots.is_empty() {
                    let i = usize::from(index) % self.snapshots.len();
                    self.snapshots.remove(i);
                }
            }
            Op::Flush => match self.db().flush() {
                Ok(()) => {
                    assert!(
                        !self.model.poisoned,
                        "flush succeeded on a database that refused writes"
                    );
                    self.model.must = self.model.log.len();
                }
                Err(e) => {
                    assert!(!e.is_corruption(), "flush reported corruption: {e}");
                    self.model.poisoned = true;
                }
            },
            Op::Reopen { how } => {
                if how % 2 == 1 {
                    let db = self.db.take().expect("open");
                    self.snapshots.clear();
                    match db.close() {
                        Ok(()) => {
                            assert!(!self.model.poisoned, "close succeeded on a poisoned database");
                            self.model.must = self.model.log.len();
                        }
                        Err(e) => assert!(!e.is_corruption(), "close reported corruption: {e}"),
                    }
                    drop(db);
                }
                self.reopen_and_verify();
            }
            Op::PowerLoss { mode } => {
                let mode = if mode == 0 {
                    CrashMode::SyncedOnly
                } else {
                    CrashMode::TornTail { seed: u64::from(mode) }
                };
                self.fs.crash(mode);
                self.reopen_and_verify();
            }
            Op::Fault { op, n } => {
                let kind = [
                    FaultOp::Read,
                    FaultOp::Write,
                    FaultOp::Sync,
                    FaultOp::Rename,
                    FaultOp::Create,
                    FaultOp::Remove,
                ][usize::from(op % 6)];
                self.fs.fail_nth(kind, u64::from(n % 8) + 1);
            }
            Op::NoSpace { budget } => self.fs.set_space_budget(Some(u64::from(budget) * 64)),
            Op::ClearFaults => self.fs.clear_faults(),
            Op::Compact { lo, hi, whole } => {
                let result = if whole % 2 == 0 {
                    self.db().compact()
                } else {
                    let (a, b) = (key_of(lo), key_of(hi));
                    let (a, b) = if a <= b { (a, b) } else { (b, a) };
                    self.db().compact_range(a..=b)
                };
                self.history.push(format!("compact -> {:?}", result.as_ref().err()));
                if let Err(e) = result {
                    assert!(
                        !e.is_corruption(),
                        "compaction reported corruption of undamaged files: {e}"
                    );
                }
            }
        }
    }
}

/// `ops_crash`: runs up to [`MAX_OPS`] operations on a database on a [`SimFileSystem`], with
/// injected I/O errors, ENOSPC and power losses, against a model that knows each write's
/// durability. Layout: [`OpsConfig`] (4 bytes), then [`Op`]s.
///
/// Checks, after every reopen (a clean close, a drop, or a power loss):
/// * the recovered state equals the model after some prefix `k` of the session's write log
///   with `k >=` the last write known durable (a `Sync` ack, a successful `flush` or
///   `close`): every such write is present, batches are all-or-nothing, nothing unwritten
///   appears, later writes survive only with every earlier one;
/// * full scans forward and backward and gets of every key agree;
/// * no corruption is ever reported (nothing here damages files), open fails only while
///   faults are injected and succeeds once they are cleared.
///
/// While running: gets, scans (both directions, mixed) and snapshot reads agree with the
/// model or fail with a non-corruption error; after a write or flush fails, every later
/// write fails (the database is poisoned: no silent retry), and flush/close fail too.
pub fn ops_crash(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let config = OpsConfig {
        memtable: byte(&mut u),
        block: byte(&mut u),
        flags: byte(&mut u),
        imms: byte(&mut u),
    };
    let fs = SimFileSystem::new();
    let db = Db::open(DB_DIR, config.options(&fs).file_system(Arc::new(fs.process())))
        .expect("open a new database");
    let mut h = Harness {
        fs,
        config,
        db: Some(db),
        model: Model::new(),
        snapshots: Vec::new(),
        write_no: 0,
        history: vec![format!("{config:?}")],
    };
    let mut n = 0;
    while !u.is_empty() && n < MAX_OPS {
        let op = Op::decode(&mut u);
        h.run(op);
        n += 1;
    }
    // The end of every input is a power loss: what was acknowledged durable must be there.
    h.run(Op::PowerLoss { mode: 0 });
    if let Some(db) = h.db.take() {
        h.snapshots.clear();
        let _ = db.close();
    }
}

// ------------------------------------------------------------------------------------------
// Seed corpus
// ------------------------------------------------------------------------------------------

/// A small database's files, for seeds: `(file name, bytes)` of its logs, tables, manifest.
fn sample_database(compression: Compression) -> Vec<(String, Vec<u8>)> {
    let fs = SimFileSystem::new();
    let opts = Options::default()
        .file_system(Arc::new(fs.clone()))
        .compression(compression)
        .block_size(256)
        .memtable_size(1 << 20);
    let db = Db::open(DB_DIR, opts).expect("open");
    for round in 0..3u32 {
        let mut batch = WriteBatch::new();
        for i in 0..40u32 {
            let key = format!("key{:04}", i * 3 + round);
            batch.put(&key, format!("value {round}/{i} {}", "x".repeat((i % 7) as usize * 5)));
            if i % 9 == 0 {
                batch.delete(format!("key{:04}", i + 1));
            }
        }
        db.write_with(batch, Durability::Sync).expect("write");
        if round < 2 {
            db.flush().expect("flush");
        }
    }
    db.put("last", "in the log only").expect("put");
    db.close().expect("close");
    let mut files = Vec::new();
    for path in fs.files() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.ends_with(".log") || name.ends_with(".sst") || name.starts_with("MANIFEST-") {
            files.push((name, fs.read(&path).expect("read")));
        }
    }
    files
}

fn log_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let path = PathBuf::from(WAL_PATH);
    let fs = disk_with_file(&path, bytes);
    let mut reader = LogReader::open(&fs, &path, RecoveryMode::Strict).expect("open log");
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().expect("read log") {
        out.push(r.payload.to_vec());
    }
    out
}

/// The committed seed corpus: `(target, file name, bytes)`. Generated by
/// `STRATA_WRITE_FUZZ_CORPUS=1 cargo test -p strata --test fuzz_corpus_replay` (see
/// docs/testing.md); each is small (valid files of each kind, a few op sequences).
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (tag, compression) in [("raw", Compression::None), ("zstd", Compression::Zstd { level: 1 })]
    {
        for (name, bytes) in sample_database(compression) {
            if name.ends_with(".sst") {
                for (flags, what) in [(0u8, "plain"), (1, "cached"), (2, "fixcrc")] {
                    let mut input = vec![flags];
                    input.extend_from_slice(&bytes);
                    seeds.push(("sstable_reader", format!("{tag}-{name}-{what}"), input));
                }
            } else if name.ends_with(".log") && tag == "raw" {
                let mut raw = vec![0u8];
                raw.extend_from_slice(&bytes);
                seeds.push(("wal_reader", format!("{name}-raw"), raw));
                let mut framed = vec![4u8];
                for r in log_records(&bytes) {
                    put_length_prefixed(&mut framed, &r);
                }
                seeds.push(("wal_reader", format!("{name}-framed"), framed));
            } else if name.starts_with("MANIFEST-") && tag == "raw" {
                let mut raw = vec![0u8];
                raw.extend_from_slice(&bytes);
                seeds.push(("manifest_reader", format!("{name}-raw"), raw));
                let mut framed = vec![1u8];
                for r in log_records(&bytes) {
                    put_length_prefixed(&mut framed, &r);
                }
                seeds.push(("manifest_reader", format!("{name}-framed"), framed));
            }
        }
    }
    // Logs with damage, a torn tail, a record spanning blocks.
    let mut torn = vec![4 | 8, 200, 0];
    for i in 0..8u8 {
        put_length_prefixed(&mut torn, &[i; 40]);
    }
    seeds.push(("wal_reader", "framed-torn".into(), torn));
    let mut flipped = vec![4 | 16, 100, 0, 0x20];
    for i in 0..8u8 {
        put_length_prefixed(&mut flipped, &[i; 40]);
    }
    seeds.push(("wal_reader", "framed-flipped".into(), flipped));
    let mut spanning = vec![4 | 32];
    put_length_prefixed(&mut spanning, &[7u8; 3000]);
    put_length_prefixed(&mut spanning, b"short");
    seeds.push(("wal_reader", "framed-spanning".into(), spanning));
    seeds.push(("wal_reader", "header-only".into(), vec![2]));
    seeds.push((
        "manifest_reader",
        "bad-current".into(),
        [&[2u8, 9][..], b"MANIFEST-", &[0u8][..]].concat(),
    ));

    let small = OpsConfig { memtable: 0, block: 0, flags: 0, imms: 0 };
    let zstd = OpsConfig { memtable: 4, block: 3, flags: 1 | 8, imms: 1 };
    let put = |key, len16, durability| Op::Put { key, len16, durability };
    let mut basic = Vec::new();
    for i in 0..40u8 {
        basic.push(put(i, 20 + i, i % 3));
        if i % 7 == 0 {
            basic.push(Op::Delete { key: i / 2, durability: 0 });
        }
        if i % 10 == 9 {
            basic.push(Op::Scan { lo: 3, hi: 30, flags: 16, steps: 0b1010_0110 });
        }
    }
    basic.push(Op::Get { key: 5 });
    basic.push(Op::PowerLoss { mode: 17 });
    basic.push(Op::Scan { lo: 0, hi: 0, flags: 4 | 8 | 1, steps: 0 });
    seeds.push(("ops_crash", "puts-powerloss".into(), encode_ops_input(small, &basic)));

    let batches = vec![
        Op::Batch { entries: vec![(1, 10), (2, 10), (3, 255)], durability: 0 },
        Op::Snapshot,
        Op::Batch {
            entries: vec![(1, 255), (4, 200), (5, 200), (6, 200), (7, 200)],
            durability: 1,
        },
        Op::Flush,
        Op::ReadSnapshot { index: 0, key: 1 },
        Op::Batch { entries: vec![(8, 250), (9, 250), (250, 3), (255, 1)], durability: 2 },
        Op::Reopen { how: 0 },
        Op::Put { key: 10, len16: 100, durability: 1 },
        Op::Reopen { how: 1 },
        Op::Scan { lo: 2, hi: 9, flags: 2 | 1, steps: 0 },
        Op::PowerLoss { mode: 0 },
    ];
    seeds.push(("ops_crash", "batches-snapshots-reopen".into(), encode_ops_input(zstd, &batches)));

    let faults = vec![
        put(1, 10, 0),
        Op::Fault { op: 2, n: 0 },
        put(2, 10, 0),
        put(3, 10, 1),
        Op::Flush,
        Op::Get { key: 1 },
        Op::PowerLoss { mode: 3 },
        put(4, 10, 1),
        Op::NoSpace { budget: 4 },
        put(5, 40, 0),
        put(6, 40, 0),
        Op::ClearFaults,
        Op::Reopen { how: 1 },
        Op::Fault { op: 1, n: 2 },
        put(7, 10, 1),
        put(8, 10, 1),
        put(9, 10, 1),
        Op::PowerLoss { mode: 9 },
        Op::Fault { op: 0, n: 0 },
        Op::Get { key: 4 },
        Op::Fault { op: 4, n: 0 },
        Op::Reopen { how: 0 },
    ];
    seeds.push(("ops_crash", "faults".into(), encode_ops_input(small, &faults)));

    let mut flushes = Vec::new();
    for i in 0..60u8 {
        flushes.push(put(i % 20, 255, 1));
        if i % 15 == 14 {
            flushes.push(Op::Fault { op: 2, n: i % 5 });
        }
        if i % 20 == 19 {
            flushes.push(Op::PowerLoss { mode: i });
            flushes.push(Op::ClearFaults);
        }
    }
    seeds.push(("ops_crash", "flushes-under-faults".into(), encode_ops_input(small, &flushes)));

    let mut compactions = Vec::new();
    for i in 0..80u8 {
        compactions.push(put(i % 30, 128, i % 3));
        if i % 9 == 0 {
            compactions.push(Op::Delete { key: i % 30, durability: 1 });
        }
        if i % 20 == 10 {
            compactions.push(Op::Snapshot);
        }
        if i % 20 == 19 {
            compactions.push(Op::Compact { lo: 3, hi: 20, whole: i / 20 });
            compactions.push(Op::ReadSnapshot { index: i, key: 5 });
            compactions.push(Op::Scan { lo: 0, hi: 29, flags: 16, steps: i });
        }
        if i == 50 {
            compactions.push(Op::PowerLoss { mode: 77 });
        }
    }
    compactions.push(Op::Fault { op: 2, n: 3 });
    compactions.push(Op::Compact { lo: 0, hi: 0, whole: 0 });
    compactions.push(Op::Reopen { how: 1 });
    seeds.push(("ops_crash", "compactions".into(), encode_ops_input(small, &compactions)));
    seeds
}
