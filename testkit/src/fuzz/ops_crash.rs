//! The `ops_crash` target: database operations (transactions and conditional writes among
//! them), injected I/O errors and power losses on a simulated disk, checked against a model
//! that knows each write's durability and each transaction's snapshot and read set.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Unstructured;
use strata::{
    Compression, Db, Durability, Error, Expect, Options, RecoveryMode, Snapshot, Transaction,
    WriteBatch,
};
use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};

use super::input::byte;
use crate::crash::read_state_probing;
use crate::model::{
    apply, batch_of, CommitHistory, Entry, Model, Mutation, ReadRange, State, TxModel, TxOutcome,
};

/// Most ops one input runs (keeps each execution in the milliseconds).
const MAX_OPS: usize = 300;
/// Where the database lives on the simulated disk.
pub(crate) const DB_DIR: &str = "/db";
/// Distinct short keys; ids beyond map to long keys and the empty key.
const SHORT_KEYS: u8 = 48;
/// Transactions open at once (slots of the transaction ops).
const TX_SLOTS: usize = 4;
/// Op codes without [`OpsConfig::flags`] bit 4, and with it (the transaction ops and the
/// range delete follow; the range delete came last so that older inputs keep their meaning).
const PLAIN_OPS: u8 = 15;
const ALL_OPS: u8 = 26;
// The engine's conflict history (`Options::transaction_history_bytes`, left at its 16 MiB
// default) outgrows what one input writes — at most MAX_OPS batches of 8 keys of 1 KiB — so
// no commit here conflicts for lack of history, and the model need not know that rule.
const _: () = assert!(MAX_OPS * 8 * 1024 < 16 << 20);

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

/// One operation of [`run`]. Encoding: opcode byte (mod 15, or mod 26 with the transaction
/// ops: [`OpsConfig::flags`] bit 4), then one byte per field, in field order. Key ids map to
/// keys as `key_of` does: 48 short keys `k00..k47`, 7 long (1 KiB) keys (ids 248 to 254) and
/// the empty key (255).
///
/// Transactions live in 4 slots (`slot % 4`); a transaction op on an empty slot begins one
/// there first. Their reads must equal the model's snapshot plus own writes, their commits
/// the model's verdict (commit, trivial read-only commit, or `Conflict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// 0: a put.
    Put {
        /// Key id.
        key: u8,
        /// Value length / 16.
        len16: u8,
        /// Durability: `% 3` selects Sync, Buffered, Periodic(2 ms).
        durability: u8,
    },
    /// 1: a delete.
    Delete {
        /// Key id.
        key: u8,
        /// Durability, as for a put.
        durability: u8,
    },
    /// 2: an atomic batch, encoded `[n, (key, len16) * (n % 8 + 1), durability]`.
    Batch {
        /// `(key id, value length / 16)`, 255 for a delete; 1 to 8 of them.
        entries: Vec<(u8, u8)>,
        /// Durability, as for a put.
        durability: u8,
    },
    /// 3: a get, compared with the model.
    Get {
        /// Key id.
        key: u8,
    },
    /// 4: a range scan.
    Scan {
        /// Key id of the start (inclusive).
        lo: u8,
        /// Key id of the end.
        hi: u8,
        /// Bit 0 reverse, bit 1 inclusive end, bit 2 no start, bit 3 no end, bit 4 alternate
        /// ends using `steps` as the pattern.
        flags: u8,
        /// Bit `i % 8` set: step `i` takes from the back (with flags bit 4).
        steps: u8,
    },
    /// 5: take a snapshot (at most 4 live).
    Snapshot,
    /// 6: read a snapshot (a get and a full scan) and compare with its model.
    ReadSnapshot {
        /// Which live snapshot (modulo their number).
        index: u8,
        /// Key id to get.
        key: u8,
    },
    /// 7: drop a snapshot.
    DropSnapshot {
        /// Which live snapshot (modulo their number).
        index: u8,
    },
    /// 8: `db.flush()`.
    Flush,
    /// 9: close and reopen; verify.
    Reopen {
        /// Odd: `db.close()` first; even: just drop the handle.
        how: u8,
    },
    /// 10: power loss now, then reopen and verify.
    PowerLoss {
        /// 0: synced bytes only; else a torn tail seeded by `mode`.
        mode: u8,
    },
    /// 11: the `n % 8 + 1`-th next file-system operation of kind `op % 6` fails.
    Fault {
        /// Read, write, sync, rename, create, remove (`% 6`).
        op: u8,
        /// Which next operation of that kind (`% 8 + 1`).
        n: u8,
    },
    /// 12: appends fail with ENOSPC after `budget * 64` more bytes.
    NoSpace {
        /// Bytes / 64.
        budget: u8,
    },
    /// 13: cancel injected faults.
    ClearFaults,
    /// 14: `db.compact()` or `db.compact_range(lo..=hi)`; it must change nothing visible
    /// (checked by the next reads and the recovery check).
    Compact {
        /// Key id of one end of the range.
        lo: u8,
        /// Key id of the other end.
        hi: u8,
        /// Even: the whole key space.
        whole: u8,
    },
    /// 15: `db.transaction()` in a slot (dropping the transaction there, if any).
    TxBegin {
        /// Slot (`% 4`).
        slot: u8,
    },
    /// 16: a transaction's get.
    TxGet {
        /// Slot (`% 4`).
        slot: u8,
        /// Key id.
        key: u8,
    },
    /// 17: a transaction's put.
    TxPut {
        /// Slot (`% 4`).
        slot: u8,
        /// Key id.
        key: u8,
        /// Value length / 16.
        len16: u8,
    },
    /// 18: a transaction's delete.
    TxDelete {
        /// Slot (`% 4`).
        slot: u8,
        /// Key id.
        key: u8,
    },
    /// 19: a transaction's range scan (forward; the whole range joins its read set however
    /// far it is read).
    TxRange {
        /// Slot (`% 4`).
        slot: u8,
        /// Key id of the start (inclusive).
        lo: u8,
        /// Key id of the end.
        hi: u8,
        /// Bits 1 to 3 as for [`Op::Scan`]; bits 5 to 7: read at most that many entries
        /// (0: all).
        flags: u8,
    },
    /// 20: a transaction's prefix scan.
    TxPrefix {
        /// Slot (`% 4`).
        slot: u8,
        /// Key id whose first bytes are the prefix.
        key: u8,
        /// How many bytes: `len % (key length + 1)`.
        len: u8,
    },
    /// 21: commit a transaction (nothing if the slot is empty).
    TxCommit {
        /// Slot (`% 4`).
        slot: u8,
        /// Durability, as for a put (Buffered through `commit()`, else `commit_with`).
        durability: u8,
    },
    /// 22: discard a transaction (nothing if the slot is empty).
    TxRollback {
        /// Slot (`% 4`).
        slot: u8,
        /// Even: `rollback()`; odd: drop it.
        how: u8,
    },
    /// 23: a batch with expectations, encoded
    /// `[n, (key, expect) * (n % 4 + 1), m, (key, len16) * (m % 9), durability]`: applied iff
    /// every expectation holds on the model's current state, else `ConditionFailed` naming
    /// the first that fails.
    Conditional {
        /// `(key id, kind)`, 1 to 4: kind `% 4` is `Absent`, `Present`, `Value` of the current
        /// value (empty if none), `Value` of bytes the key does not hold.
        expects: Vec<(u8, u8)>,
        /// `(key id, value length / 16)`, 255 for a delete; 0 to 8 of them.
        entries: Vec<(u8, u8)>,
        /// Durability, as for a put.
        durability: u8,
    },
    /// 25: `db.delete_range(key(lo)..key(hi))` with a durability (an inverted or empty range
    /// deletes nothing); the model deletes every key it may hold in the range.
    DeleteRange {
        /// Key id of the start.
        lo: u8,
        /// Key id of the end (excluded).
        hi: u8,
        /// Durability selector, as for puts.
        durability: u8,
    },
    /// 24: `db.compare_and_swap(key, expected, new)`.
    CompareAndSwap {
        /// Key id.
        key: u8,
        /// `% 3`: the current value (it holds), absent, bytes the key does not hold.
        expected: u8,
        /// The new value's length / 16; 255 deletes.
        len16: u8,
    },
}

impl Op {
    fn decode(u: &mut Unstructured<'_>, transactions: bool) -> Op {
        match byte(u) % if transactions { ALL_OPS } else { PLAIN_OPS } {
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
            14 => Op::Compact { lo: byte(u), hi: byte(u), whole: byte(u) },
            15 => Op::TxBegin { slot: byte(u) },
            16 => Op::TxGet { slot: byte(u), key: byte(u) },
            17 => Op::TxPut { slot: byte(u), key: byte(u), len16: byte(u) },
            18 => Op::TxDelete { slot: byte(u), key: byte(u) },
            19 => Op::TxRange { slot: byte(u), lo: byte(u), hi: byte(u), flags: byte(u) },
            20 => Op::TxPrefix { slot: byte(u), key: byte(u), len: byte(u) },
            21 => Op::TxCommit { slot: byte(u), durability: byte(u) },
            22 => Op::TxRollback { slot: byte(u), how: byte(u) },
            23 => {
                let n = byte(u) % 4 + 1;
                let expects = (0..n).map(|_| (byte(u), byte(u))).collect();
                let m = byte(u) % 9;
                let entries = (0..m).map(|_| (byte(u), byte(u))).collect();
                Op::Conditional { expects, entries, durability: byte(u) }
            }
            24 => Op::CompareAndSwap { key: byte(u), expected: byte(u), len16: byte(u) },
            _ => Op::DeleteRange { lo: byte(u), hi: byte(u), durability: byte(u) },
        }
    }

    /// Whether the op decodes only with [`OpsConfig::flags`] bit 4.
    fn is_transactional(&self) -> bool {
        let mut code = Vec::new();
        self.encode(&mut code);
        code[0] >= PLAIN_OPS
    }

    /// The bytes that decode as `self` in a [`run`] input (for seed inputs).
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
            Op::TxBegin { slot } => out.extend([15, *slot]),
            Op::TxGet { slot, key } => out.extend([16, *slot, *key]),
            Op::TxPut { slot, key, len16 } => out.extend([17, *slot, *key, *len16]),
            Op::TxDelete { slot, key } => out.extend([18, *slot, *key]),
            Op::TxRange { slot, lo, hi, flags } => out.extend([19, *slot, *lo, *hi, *flags]),
            Op::TxPrefix { slot, key, len } => out.extend([20, *slot, *key, *len]),
            Op::TxCommit { slot, durability } => out.extend([21, *slot, *durability]),
            Op::TxRollback { slot, how } => out.extend([22, *slot, *how]),
            Op::Conditional { expects, entries, durability } => {
                assert!((1..=4).contains(&expects.len()) && entries.len() <= 8);
                out.extend([23, (expects.len() - 1) as u8]);
                for (k, e) in expects {
                    out.extend([*k, *e]);
                }
                out.push(entries.len() as u8);
                for (k, l) in entries {
                    out.extend([*k, *l]);
                }
                out.push(*durability);
            }
            Op::DeleteRange { lo, hi, durability } => out.extend([25, *lo, *hi, *durability]),
            Op::CompareAndSwap { key, expected, len16 } => {
                out.extend([24, *key, *expected, *len16])
            }
        }
    }
}

/// Database options of one [`run`] input: 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpsConfig {
    /// Memtable size: `4 + b % 61` KiB.
    pub memtable: u8,
    /// Block size: `64 << (b % 7)` bytes.
    pub block: u8,
    /// Bit 0: zstd; bit 1: no bloom filter; bit 2: PointInTime recovery; bit 3: unused (it
    /// chose `background_threads`, an option that changed nothing and is gone; kept so the
    /// committed corpus decodes as before); bit 4: the transaction ops (15 to 24) are in the
    /// op language (inputs from before them have it clear, and decode as they did).
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

/// Encodes a whole [`run`] input.
pub fn encode_ops_input(config: OpsConfig, ops: &[Op]) -> Vec<u8> {
    assert!(
        config.flags & 16 != 0 || !ops.iter().any(Op::is_transactional),
        "transaction ops decode only with OpsConfig::flags bit 4"
    );
    let mut out = Vec::new();
    config.encode(&mut out);
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// A write call as the model remembers it.
#[derive(Debug, Clone)]
struct LoggedWrite {
    mutations: Vec<Mutation>,
    /// The call returned `Ok`. An unacknowledged write (failed with an I/O error) may or may
    /// not have reached the log; the engine then refuses every later write of the session.
    acked: bool,
    durability: Durability,
}

/// What the database must hold after a crash: `base` (durable: what the last open
/// recovered) followed by a prefix of `log`, at least `must` writes long. (What the running
/// database shows, `base` with every acknowledged write, is the harness's [`Model`].)
struct DurableModel {
    base: State,
    log: Vec<LoggedWrite>,
    /// Writes `log[..must]` are known durable (a Sync ack, a successful flush or close).
    must: usize,
    /// A write or flush failed: the database must refuse every further write this session.
    poisoned: bool,
}

impl DurableModel {
    fn new() -> DurableModel {
        DurableModel { base: State::new(), log: Vec::new(), must: 0, poisoned: false }
    }

    /// Checks a recovered state against the prefix property and makes it the new base.
    fn recovered(&mut self, got: &State, history: &str) {
        let mut state = self.base.clone();
        let mut matched = (self.must == 0 && &state == got).then_some(0);
        for (i, w) in self.log.iter().enumerate() {
            apply(&mut state, &w.mutations);
            if i + 1 >= self.must && &state == got {
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
                short_state(got),
                short_state(&self.base),
                summary.join("\n")
            );
        }
        self.base = got.clone();
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

/// Reads the whole database forward, backward and by key (every key the fuzzer can write);
/// all must agree. Every read must succeed: the caller cleared injected faults.
fn read_all(db: &Db) -> State {
    read_state_probing(db, &key_universe()).unwrap_or_else(|e| panic!("after recovery: {e}"))
}

/// Checks an error that a read returned while faults may be injected: never corruption
/// (nothing in this target damages files; torn tails are the engine's to handle).
fn check_read_error(e: &Error, what: &str) {
    assert!(!e.is_corruption(), "{what} reported corruption of undamaged files: {e}");
}

/// An open transaction and what the model says it must read and return.
struct OpenTx {
    tx: Transaction,
    model: TxModel,
}

/// What a write call must return on a healthy database, by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Applied,
    Conflict,
    ConditionFailed(Vec<u8>),
}

/// The value an expectation holds against, and the verdict on it: the model's, not the
/// engine's `Expect::holds`.
fn expectation_holds(expect: &Expect, current: Option<&[u8]>) -> bool {
    match expect {
        Expect::Absent => current.is_none(),
        Expect::Present => current.is_some(),
        Expect::Value(v) => current == Some(v.as_slice()),
    }
}

/// Bytes a key does not hold: its value with one more byte, or anything if it has none.
fn mismatch_of(current: Option<&[u8]>) -> Vec<u8> {
    match current {
        Some(v) => [v, b"!"].concat(),
        None => b"absent".to_vec(),
    }
}

/// The bounds of a scan op: `lo` inclusive unless flags bit 2 (no start), `hi` exclusive,
/// inclusive with bit 1, none with bit 3.
fn scan_bounds(lo: u8, hi: u8, flags: u8) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = if flags & 4 != 0 { Bound::Unbounded } else { Bound::Included(key_of(lo)) };
    let end = if flags & 8 != 0 {
        Bound::Unbounded
    } else if flags & 2 != 0 {
        Bound::Included(key_of(hi))
    } else {
        Bound::Excluded(key_of(hi))
    };
    (start, end)
}

struct Harness {
    fs: SimFileSystem,
    config: OpsConfig,
    db: Option<Db>,
    /// What the running database shows, and what each live snapshot saw.
    view: Model<Snapshot>,
    /// Open transactions, by slot.
    txs: [Option<OpenTx>; TX_SLOTS],
    /// The keys of every commit sequenced this session, for the transactions' verdicts.
    commits: CommitHistory,
    /// What it must hold after a crash.
    durable: DurableModel,
    write_no: u64,
    history: Vec<String>,
    /// The range of the range delete being settled, for the transactions' verdicts (its
    /// mutations name only the keys the model may hold; it writes every key of the range).
    range_write: Option<(Vec<u8>, Vec<u8>)>,
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
        self.view.drop_snapshots();
        self.txs = Default::default();
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
        self.durable.recovered(&got, &history);
        self.view = Model::with_state(got);
        self.db = Some(db);
    }

    fn write(&mut self, mutations: Vec<Mutation>, durability: Durability) {
        let batch = batch_of(&mutations);
        let single = mutations.len() == 1;
        let result = match (&mutations[..], durability) {
            // The plain API calls, with the database's default durability (Buffered).
            ([(k, Some(v))], Durability::Buffered) if single => self.db().put(k, v),
            ([(k, None)], Durability::Buffered) if single => self.db().delete(k),
            _ => self.db().write_with(batch, durability),
        };
        self.settle("write", mutations, durability, result, Verdict::Applied, false);
    }

    /// Checks what a write call returned against the model's `verdict` and records its
    /// effect. `conditional`: the call read the database first (a batch with expectations),
    /// so an I/O error may be a failed read, which writes nothing and poisons nothing.
    fn settle(
        &mut self,
        what: &str,
        mutations: Vec<Mutation>,
        durability: Durability,
        result: Result<(), Error>,
        verdict: Verdict,
        conditional: bool,
    ) {
        self.history.push(format!(
            "{what} {:?} {:?} (model: {verdict:?}) -> {:?}",
            durability,
            short(&mutations),
            result.as_ref().err()
        ));
        match result {
            Ok(()) => {
                assert!(
                    !self.durable.poisoned,
                    "a write was accepted after an earlier write failure\n{}",
                    self.history.join("\n")
                );
                assert_eq!(
                    verdict,
                    Verdict::Applied,
                    "{what} succeeded where the model says otherwise\n{}",
                    self.history.join("\n")
                );
                if mutations.is_empty() {
                    return; // expectations alone: nothing sequenced, nothing logged
                }
                self.view.apply(&mutations);
                self.record_commit(&mutations);
                self.durable.log.push(LoggedWrite { mutations, acked: true, durability });
                if durability == Durability::Sync {
                    self.durable.must = self.durable.log.len();
                }
            }
            Err(Error::InvalidArgument(_)) => {}
            Err(Error::Poisoned(_)) => self.durable.poisoned = true,
            Err(e @ (Error::Conflict | Error::ConditionFailed { .. })) => {
                // Validation runs after the poison check: a refused write is never validated.
                assert!(
                    !self.durable.poisoned,
                    "{what} after a write failure got {e:?} instead of Poisoned"
                );
                let got = match e {
                    Error::ConditionFailed { key } => Verdict::ConditionFailed(key),
                    _ => Verdict::Conflict,
                };
                assert_eq!(
                    got,
                    verdict,
                    "{what}: the engine's verdict is not the model's\n{}",
                    self.history.join("\n")
                );
            }
            Err(e) => {
                assert!(
                    !matches!(e, Error::Closed | Error::Locked(_) | Error::Busy),
                    "unexpected write error {e:?}"
                );
                assert!(!e.is_corruption(), "a write reported corruption: {e}");
                assert!(
                    !self.durable.poisoned,
                    "a write after a failure got {e} instead of Poisoned"
                );
                // An empty batch writes nothing and fails only on a poisoned database: it
                // tells a failed read (nothing written) from a failed write.
                if conditional {
                    match self.db().write(WriteBatch::new()) {
                        Ok(()) => {
                            self.history.push("  (a read failed: nothing written)".into());
                            return;
                        }
                        Err(Error::Poisoned(_)) => {}
                        Err(other) => panic!("an empty write failed with {other:?}"),
                    }
                }
                self.durable.poisoned = true;
                if verdict == Verdict::Applied && !mutations.is_empty() {
                    // It may be in the log: neither acknowledged nor known to be absent.
                    self.record_commit(&mutations);
                    self.durable.log.push(LoggedWrite { mutations, acked: false, durability });
                }
            }
        }
    }

    /// Records a sequenced write in the commit history (with its range, for a range delete).
    fn record_commit(&mut self, mutations: &[Mutation]) {
        match self.range_write.take() {
            Some((start, end)) => self.commits.record_range_delete(mutations, &start, &end),
            None => self.commits.record(mutations),
        }
    }

    /// The transaction in `slot`, begun now if the slot is empty.
    fn tx(&mut self, slot: u8) -> &mut OpenTx {
        let i = usize::from(slot) % TX_SLOTS;
        if self.txs[i].is_none() {
            self.begin(i);
        }
        self.txs[i].as_mut().expect("just begun")
    }

    fn begin(&mut self, i: usize) {
        self.txs[i] = None;
        let tx = self.db().transaction();
        self.history.push(format!("  tx {i} begins at {}", tx.sequence()));
        let model = TxModel::begin(self.view.state(), &self.commits);
        self.txs[i] = Some(OpenTx { tx, model });
    }

    /// Reads a transaction's scan (up to `limit` entries) and compares it with `expected`;
    /// a read may fail (faults), but never shows wrong data, and the scan ends at its error.
    fn check_tx_scan(
        iter: impl Iterator<Item = strata::Result<(strata::Bytes, strata::Bytes)>>,
        expected: &[Entry],
        limit: usize,
        history: &[String],
    ) {
        let mut iter = iter.fuse();
        let mut seen = Vec::new();
        while seen.len() < limit {
            match iter.next() {
                None => break,
                Some(Ok((k, v))) => seen.push((k.to_vec(), v.to_vec())),
                Some(Err(e)) => {
                    check_read_error(&e, "transaction scan");
                    assert!(
                        expected.starts_with(&seen),
                        "a transaction's scan returned wrong data before an error"
                    );
                    let after = iter.next();
                    assert!(
                        after.is_none(),
                        "a transaction's scan continued after an error ({e}): {after:?}\n{}",
                        history.join("\n")
                    );
                    return;
                }
            }
            assert!(
                seen.len() <= expected.len(),
                "a transaction's scan returned more entries than exist: {seen:?} vs {expected:?}"
            );
        }
        let want = &expected[..expected.len().min(limit)];
        assert_eq!(
            seen,
            want,
            "a transaction's scan disagrees with its snapshot and own writes\n{}",
            history.join("\n")
        );
    }

    fn run_tx(&mut self, op: Op) {
        match op {
            Op::TxBegin { slot } => self.begin(usize::from(slot) % TX_SLOTS),
            Op::TxGet { slot, key } => {
                let k = key_of(key);
                let open = self.tx(slot);
                let want = open.model.get(&k);
                let got = open.tx.get(&k);
                match got {
                    Ok(v) => assert_eq!(
                        v.as_deref(),
                        want.as_deref(),
                        "transaction get({}) disagrees with its snapshot and own writes\n{}",
                        abbrev(&k),
                        self.history.join("\n")
                    ),
                    Err(e) => check_read_error(&e, "transaction get"),
                }
            }
            Op::TxPut { slot, key, len16 } => {
                self.write_no += 1;
                let (k, v) = (key_of(key), value_of(self.write_no, key, usize::from(len16) * 16));
                let open = self.tx(slot);
                open.model.put(&k, &v);
                open.tx.put(&k, &v);
            }
            Op::TxDelete { slot, key } => {
                let k = key_of(key);
                let open = self.tx(slot);
                open.model.delete(&k);
                open.tx.delete(&k);
            }
            Op::TxRange { slot, lo, hi, flags } => {
                let (start, end) = scan_bounds(lo, hi, flags);
                let limit = match flags >> 5 {
                    0 => usize::MAX,
                    n => usize::from(n),
                };
                let open = self.tx(slot);
                let expected = open.model.scan(ReadRange::Bounds(start.clone(), end.clone()));
                let iter = open.tx.range((start, end));
                Self::check_tx_scan(iter, &expected, limit, &self.history);
            }
            Op::TxPrefix { slot, key, len } => {
                let mut prefix = key_of(key);
                prefix.truncate(usize::from(len) % (prefix.len() + 1));
                let open = self.tx(slot);
                let expected = open.model.scan(ReadRange::Prefix(prefix.clone()));
                let iter = open.tx.prefix(&prefix);
                Self::check_tx_scan(iter, &expected, usize::MAX, &self.history);
            }
            Op::TxCommit { slot, durability } => {
                let Some(OpenTx { tx, model }) = self.txs[usize::from(slot) % TX_SLOTS].take()
                else {
                    return;
                };
                let durability = durability_of(durability);
                let result = if durability == Durability::Buffered {
                    tx.commit()
                } else {
                    tx.commit_with(durability)
                };
                let verdict = match model.outcome(&self.commits) {
                    TxOutcome::ReadOnly => {
                        // Nothing to write: it commits even on a poisoned database.
                        self.history
                            .push(format!("read-only commit -> {:?}", result.as_ref().err()));
                        assert!(
                            result.is_ok(),
                            "a read-only transaction's commit failed: {result:?}"
                        );
                        return;
                    }
                    TxOutcome::Commits => Verdict::Applied,
                    TxOutcome::Conflict => Verdict::Conflict,
                };
                self.settle("commit", model.mutations(), durability, result, verdict, false);
            }
            Op::TxRollback { slot, how } => {
                if let Some(open) = self.txs[usize::from(slot) % TX_SLOTS].take() {
                    if how % 2 == 0 {
                        open.tx.rollback();
                    }
                }
            }
            Op::Conditional { expects, entries, durability } => {
                self.write_no += 1;
                let n = self.write_no;
                let mut batch = WriteBatch::new();
                let mut verdict = Verdict::Applied;
                for &(id, kind) in &expects {
                    let key = key_of(id);
                    let current = self.view.get(&key);
                    let expect = match kind % 4 {
                        0 => Expect::Absent,
                        1 => Expect::Present,
                        2 => Expect::Value(current.unwrap_or_default().to_vec()),
                        _ => Expect::Value(mismatch_of(current)),
                    };
                    if verdict == Verdict::Applied && !expectation_holds(&expect, current) {
                        verdict = Verdict::ConditionFailed(key.clone());
                    }
                    self.history.push(format!("  expect {} {expect:?}", abbrev(&key)));
                    batch.expect(&key, expect);
                }
                let mutations: Vec<Mutation> = entries
                    .iter()
                    .map(|&(k, l)| {
                        (key_of(k), (l != 255).then(|| value_of(n, k, usize::from(l) * 16)))
                    })
                    .collect();
                for (k, v) in &mutations {
                    match v {
                        Some(v) => batch.put(k, v),
                        None => batch.delete(k),
                    }
                }
                let durability = durability_of(durability);
                let result = if durability == Durability::Buffered {
                    self.db().write(batch)
                } else {
                    self.db().write_with(batch, durability)
                };
                self.settle("conditional batch", mutations, durability, result, verdict, true);
            }
            Op::CompareAndSwap { key, expected, len16 } => {
                self.write_no += 1;
                let k = key_of(key);
                let current = self.view.get(&k).map(<[u8]>::to_vec);
                let expected = match expected % 3 {
                    0 => current.clone(),
                    1 => None,
                    _ => Some(mismatch_of(current.as_deref())),
                };
                let new =
                    (len16 != 255).then(|| value_of(self.write_no, key, usize::from(len16) * 16));
                let verdict = if expected == current {
                    Verdict::Applied
                } else {
                    Verdict::ConditionFailed(k.clone())
                };
                self.history.push(format!(
                    "  compare_and_swap expects {:?}",
                    expected.as_deref().map(abbrev)
                ));
                let result = self.db().compare_and_swap(&k, expected.as_deref(), new.as_deref());
                let mutations = vec![(k, new)];
                self.settle(
                    "compare_and_swap",
                    mutations,
                    Durability::Buffered,
                    result,
                    verdict,
                    true,
                );
            }
            other => unreachable!("not a transaction op: {other:?}"),
        }
    }

    fn scan(&mut self, lo: u8, hi: u8, flags: u8, steps: u8) {
        let (start, end) = scan_bounds(lo, hi, flags);
        let expected =
            self.view.range(start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice));
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
            Op::DeleteRange { lo, hi, durability } => {
                self.write_no += 1;
                let (start, end) = (key_of(lo), key_of(hi));
                // Every key the model can hold in the range goes: deleting an absent key is
                // a no-op, so this is exactly the range delete's effect.
                let mutations: Vec<Mutation> = key_universe()
                    .into_iter()
                    .filter(|k| start <= *k && *k < end)
                    .map(|k| (k, None))
                    .collect();
                let durability = durability_of(durability);
                let result =
                    self.db().delete_range_with(start.as_slice()..end.as_slice(), durability);
                self.range_write = Some((start, end));
                self.settle("delete_range", mutations, durability, result, Verdict::Applied, false);
                self.range_write = None;
            }
            Op::Get { key } => {
                let k = key_of(key);
                match self.db().get(&k) {
                    Ok(v) => assert_eq!(
                        v.as_deref(),
                        self.view.get(&k),
                        "get({}) disagrees with the model\n{}",
                        abbrev(&k),
                        self.history.join("\n")
                    ),
                    Err(e) => check_read_error(&e, "get"),
                }
            }
            Op::Scan { lo, hi, flags, steps } => self.scan(lo, hi, flags, steps),
            Op::Snapshot => {
                if self.view.snapshots().len() < 4 {
                    let snap = self.db().snapshot();
                    self.view.take_snapshot(snap);
                }
            }
            Op::ReadSnapshot { index, key } => {
                let live = self.view.snapshots();
                if live.is_empty() {
                    return;
                }
                let (snap, state) = &live[usize::from(index) % live.len()];
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
                let live = self.view.snapshots().len();
                if live > 0 {
                    self.view.drop_snapshot(usize::from(index) % live);
                }
            }
            Op::Flush => match self.db().flush() {
                Ok(()) => {
                    assert!(
                        !self.durable.poisoned,
                        "flush succeeded on a database that refused writes"
                    );
                    self.durable.must = self.durable.log.len();
                }
                Err(e) => {
                    assert!(!e.is_corruption(), "flush reported corruption: {e}");
                    self.durable.poisoned = true;
                }
            },
            Op::Reopen { how } => {
                if how % 2 == 1 {
                    let db = self.db.take().expect("open");
                    self.view.drop_snapshots();
                    self.txs = Default::default();
                    match db.close() {
                        Ok(()) => {
                            assert!(
                                !self.durable.poisoned,
                                "close succeeded on a poisoned database"
                            );
                            self.durable.must = self.durable.log.len();
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
            op @ (Op::TxBegin { .. }
            | Op::TxGet { .. }
            | Op::TxPut { .. }
            | Op::TxDelete { .. }
            | Op::TxRange { .. }
            | Op::TxPrefix { .. }
            | Op::TxCommit { .. }
            | Op::TxRollback { .. }
            | Op::Conditional { .. }
            | Op::CompareAndSwap { .. }) => self.run_tx(op),
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

/// `ops_crash`: runs up to `MAX_OPS` (300) operations on a database on a [`SimFileSystem`], with
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
///
/// With [`OpsConfig::flags`] bit 4, transactions and conditional writes too: a transaction's
/// gets and scans equal its snapshot in the model plus its own writes; its commit returns
/// what [`TxModel::outcome`] says (`Conflict` iff it read or scanned something and a key it
/// read or wrote, or one in a range it scanned, was written by a commit after its snapshot;
/// blind ones never conflict, read-only ones always commit); a conditional batch or
/// `compare_and_swap` applies iff its expectations hold on the model's current state, else
/// fails with `ConditionFailed` naming the first that does not. A commit is one batch of the
/// durability model above.
pub fn run(data: &[u8]) {
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
        view: Model::new(),
        txs: Default::default(),
        commits: CommitHistory::new(),
        durable: DurableModel::new(),
        write_no: 0,
        history: vec![format!("{config:?}")],
        range_write: None,
    };
    let transactions = config.flags & 16 != 0;
    let mut n = 0;
    while !u.is_empty() && n < MAX_OPS {
        let op = Op::decode(&mut u, transactions);
        h.run(op);
        n += 1;
    }
    // The end of every input is a power loss: what was acknowledged durable must be there.
    h.run(Op::PowerLoss { mode: 0 });
    if let Some(db) = h.db.take() {
        h.view.drop_snapshots();
        h.txs = Default::default();
        let _ = db.close();
    }
}
