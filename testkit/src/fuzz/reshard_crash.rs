//! The `reshard_crash` target: writes of every kind on a [`ShardedDb`] on a simulated disk,
//! interleaved with online reshardings (`split_shard`, `split_shard_at`, `add_shard`,
//! `move_shard`) that are waited for, cancelled at a chosen [`ReshardStep`] or cut short by a
//! power cut at one, with writes made *during* them (from the step hook, so at a chosen step),
//! flushes, power cuts and reopens; checked against a model of what was acknowledged.
//!
//! # What a power cut may drop
//! Each shard is a database with its own log, so the model keeps every write as its parts,
//! one per shard (named by the shard's directory when the write was made), in order. After
//! a power cut, with `possible(k)` the writes whose value of key `k` is the recovered one
//! (values are unique per write; the state before the session counts as a write before all):
//! * `possible(k)` is never empty: nothing appears that was never written, and a deleted key
//!   comes back only as a value that some write allowed (an older one, if the delete may be
//!   lost);
//! * a write known durable is not lost: for the last durable write `d` to `k`, some write
//!   in `possible(k)` is `d` or later. Durable: a part acknowledged with `Sync`, every part
//!   before it on the same shard (one log, written in order), and everything before a
//!   successful `flush` or close;
//! * a part that certainly survived (some key holds a value only it wrote) survived with
//!   every part before it on its shard, itself included: each of their keys holds its value
//!   or a later one. That is the engine's rule for one database (a lost `Buffered` write is
//!   lost with everything after it in the log) and it makes each one-shard part
//!   all-or-nothing. A resharding must keep it: the keys it copies to the new shard carry
//!   the sources' state as of the cut-over, so that state must be durable on the sources too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use arbitrary::Unstructured;
use strata::testing::ReshardStep;
use strata::{
    Durability, Error, Options, Partitioner, ReshardPhase, Resharding, ShardedDb, ShardedOptions,
};
use strata_core::sim::{CrashMode, SimFileSystem};

use super::input::byte;
use crate::model::{apply, batch_of, range_of, Entry, Mutation, State};

/// Most ops one input runs.
const MAX_OPS: usize = 120;
/// Most reshardings one input starts (each copies, flushes, maybe reopens).
const MAX_RESHARDS: usize = 10;
/// No resharding grows the database beyond this many shards.
const MAX_SHARDS: usize = 6;
/// Most [`Op::Fill`]s one input runs.
const MAX_FILLS: usize = 3;
/// Where the database lives on the simulated disk.
const ROOT: &str = "/db";
/// Distinct short keys `k00..k47`.
const SHORT_KEYS: u8 = 48;

/// The steps of a resharding, in order; a step byte selects one modulo 9.
const STEPS: [ReshardStep; 9] = [
    ReshardStep::Journaled,
    ReshardStep::Capturing,
    ReshardStep::CopiedBatch,
    ReshardStep::CaughtUp,
    ReshardStep::Flushed,
    ReshardStep::Fenced,
    ReshardStep::CutOver,
    ReshardStep::CleanedBatch,
    ReshardStep::Cleaned,
];
/// Index of `Fenced` in [`STEPS`]: the hook runs under the sources' gates there, so writes
/// planned for it run at the cut-over instead (they would wait for the gates forever).
const FENCED: usize = 5;
/// Index of `CutOver`: a power cut from here on finds the new layout.
const CUT_OVER: usize = 6;

fn key_of(id: u8) -> Vec<u8> {
    format!("k{:02}", id % SHORT_KEYS).into_bytes()
}

/// Fill keys sort between the short keys (`k05/0012`), so they spread over range shards.
fn fill_key(i: usize) -> Vec<u8> {
    format!("k{:02}/{:04}", i % usize::from(SHORT_KEYS), i / usize::from(SHORT_KEYS)).into_bytes()
}

/// A value unique to write `write_no` and key `key_id`, at least `len` bytes.
fn value_of(write_no: u64, key_id: u8, len: usize) -> Vec<u8> {
    let mut v = format!("w{write_no}/k{key_id}/").into_bytes();
    if v.len() < len {
        v.resize(len, b'a' + (write_no % 26) as u8);
    }
    v
}

fn durability_of(b: u8) -> Durability {
    if b.is_multiple_of(2) {
        Durability::Sync
    } else {
        Durability::Buffered
    }
}

/// A write, at top level or during a resharding. Encoding: opcode (`% 6` here; 0 to 5 at
/// top level), then one byte per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// 0: a put (`len16`: value length / 16; durability `% 2`: Sync, Buffered).
    Put {
        /// Key id (`% 48`).
        key: u8,
        /// Value length / 16.
        len16: u8,
        /// `% 2`: Sync, Buffered.
        durability: u8,
    },
    /// 1: a delete.
    Delete {
        /// Key id.
        key: u8,
        /// As for a put.
        durability: u8,
    },
    /// 2: a batch, `[n, (key, len16 or 255: delete) * (n % 6 + 1), durability]`, split per
    /// shard by the database (each part atomic on its shard).
    Batch {
        /// 1 to 6 entries.
        entries: Vec<(u8, u8)>,
        /// As for a put.
        durability: u8,
    },
    /// 3: the same through `write_async_with`, waited for.
    Async {
        /// 1 to 6 entries.
        entries: Vec<(u8, u8)>,
        /// As for a put.
        durability: u8,
    },
    /// 4: a transaction: get `key`, put it, and put (`len16` even) or delete `other` if it
    /// lives on the same shard (else that call must fail with `CrossShard`); commit.
    Transaction {
        /// Key id read and written.
        key: u8,
        /// Second key id.
        other: u8,
        /// Value length / 16.
        len16: u8,
        /// As for a put.
        durability: u8,
    },
    /// 5: `compare_and_swap(key, expected, new)`.
    CompareAndSwap {
        /// Key id.
        key: u8,
        /// `% 3`: the current value (holds), absent, a value the key does not hold.
        expected: u8,
        /// New value length / 16; 255 deletes.
        len16: u8,
    },
}

impl WriteOp {
    fn decode_code(code: u8, u: &mut Unstructured<'_>) -> WriteOp {
        let entries = |u: &mut Unstructured<'_>| {
            let n = byte(u) % 6 + 1;
            (0..n).map(|_| (byte(u), byte(u))).collect()
        };
        match code % 6 {
            0 => WriteOp::Put { key: byte(u), len16: byte(u), durability: byte(u) },
            1 => WriteOp::Delete { key: byte(u), durability: byte(u) },
            2 => WriteOp::Batch { entries: entries(u), durability: byte(u) },
            3 => WriteOp::Async { entries: entries(u), durability: byte(u) },
            4 => WriteOp::Transaction {
                key: byte(u),
                other: byte(u),
                len16: byte(u),
                durability: byte(u),
            },
            _ => WriteOp::CompareAndSwap { key: byte(u), expected: byte(u), len16: byte(u) },
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let entries = |out: &mut Vec<u8>, e: &[(u8, u8)]| {
            assert!((1..=6).contains(&e.len()));
            out.push((e.len() - 1) as u8);
            for (k, l) in e {
                out.extend([*k, *l]);
            }
        };
        match self {
            WriteOp::Put { key, len16, durability } => out.extend([0, *key, *len16, *durability]),
            WriteOp::Delete { key, durability } => out.extend([1, *key, *durability]),
            WriteOp::Batch { entries: e, durability } => {
                out.push(2);
                entries(out, e);
                out.push(*durability);
            }
            WriteOp::Async { entries: e, durability } => {
                out.push(3);
                entries(out, e);
                out.push(*durability);
            }
            WriteOp::Transaction { key, other, len16, durability } => {
                out.extend([4, *key, *other, *len16, *durability])
            }
            WriteOp::CompareAndSwap { key, expected, len16 } => {
                out.extend([5, *key, *expected, *len16])
            }
        }
    }
}

/// A resharding op (opcode 9): `[9, kind, shard, at, action, step, mode, n, (step,
/// write op) * (n % 4)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshardOp {
    /// `% 4`: split_shard, split_shard_at, add_shard, move_shard.
    pub kind: u8,
    /// Shard index (`% shard count`).
    pub shard: u8,
    /// Key id of `split_shard_at`'s split point.
    pub at: u8,
    /// `% 3`: wait for it; cancel it at `step`; power cut at `step` (then reopen).
    pub action: u8,
    /// `% 9` the step (in [`ReshardStep`] order: Journaled, Capturing, CopiedBatch,
    /// CaughtUp, Flushed, Fenced, CutOver, CleanedBatch, Cleaned), `/ 9 % 3 + 1` which
    /// occurrence of it. A power cut at a step that never comes happens after the end.
    pub step: u8,
    /// Power cut: 0 keeps synced bytes only, else a torn tail seeded by it.
    pub mode: u8,
    /// Writes made from the step hook at the first occurrence of their step (`% 9`; Fenced
    /// counts as CutOver), before the cancel or power cut of that step.
    pub during: Vec<(u8, WriteOp)>,
}

/// One operation of [`run`]: opcode byte `% 14`, then its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// 0 to 5: a write ([`WriteOp`], same encoding).
    Write(WriteOp),
    /// 6: a get, compared with the model.
    Get {
        /// Key id.
        key: u8,
    },
    /// 7: a range scan from `key_of(lo)` to `key_of(hi)` (bit 0: reverse; bit 1: no start;
    /// bit 2: no end), compared with the model.
    Scan {
        /// Key id of the start.
        lo: u8,
        /// Key id of the end (exclusive).
        hi: u8,
        /// Flags.
        flags: u8,
    },
    /// 8: one batch putting `(count % 6 + 1) * 250` new keys (spread over the short keys'
    /// ranges), so that copies and cleanups take several batches.
    Fill {
        /// Size.
        count: u8,
        /// As for a put.
        durability: u8,
    },
    /// 9: a resharding.
    Reshard(ReshardOp),
    /// 10: `db.flush()`.
    Flush,
    /// 11: power cut now (0: synced only; else torn tail seeded by it), reopen, verify.
    PowerCut {
        /// Mode.
        mode: u8,
    },
    /// 12: close and reopen (odd: wait for a running cleanup first), verify.
    Reopen {
        /// How.
        how: u8,
    },
    /// 13: wait for the resharding running or last run (a resumed cleanup), check the
    /// layout.
    WaitCleanup,
}

impl Op {
    fn decode(u: &mut Unstructured<'_>) -> Op {
        match byte(u) % 14 {
            code @ 0..=5 => Op::Write(WriteOp::decode_code(code, u)),
            6 => Op::Get { key: byte(u) },
            7 => Op::Scan { lo: byte(u), hi: byte(u), flags: byte(u) },
            8 => Op::Fill { count: byte(u), durability: byte(u) },
            9 => {
                let (kind, shard, at) = (byte(u), byte(u), byte(u));
                let (action, step, mode) = (byte(u), byte(u), byte(u));
                let n = byte(u) % 4;
                let during = (0..n)
                    .map(|_| {
                        let step = byte(u);
                        let code = byte(u);
                        (step, WriteOp::decode_code(code, u))
                    })
                    .collect();
                Op::Reshard(ReshardOp { kind, shard, at, action, step, mode, during })
            }
            10 => Op::Flush,
            11 => Op::PowerCut { mode: byte(u) },
            12 => Op::Reopen { how: byte(u) },
            _ => Op::WaitCleanup,
        }
    }

    /// The bytes that decode as `self` (for seeds).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Write(w) => w.encode(out),
            Op::Get { key } => out.extend([6, *key]),
            Op::Scan { lo, hi, flags } => out.extend([7, *lo, *hi, *flags]),
            Op::Fill { count, durability } => out.extend([8, *count, *durability]),
            Op::Reshard(r) => {
                assert!(r.during.len() < 4);
                out.extend([9, r.kind, r.shard, r.at, r.action, r.step, r.mode]);
                out.push(r.during.len() as u8);
                for (step, w) in &r.during {
                    out.push(*step);
                    w.encode(out);
                }
            }
            Op::Flush => out.push(10),
            Op::PowerCut { mode } => out.extend([11, *mode]),
            Op::Reopen { how } => out.extend([12, *how]),
            Op::WaitCleanup => out.push(13),
        }
    }
}

/// The database of one input: 3 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReshardConfig {
    /// `(b & 3) % 3 + 1` shards at creation; bit 2: range-partitioned (split points `k16`, `k32`
    /// moved up by `(b >> 3) % 8`), else hash.
    pub layout: u8,
    /// Memtable size: `8 + b % 57` KiB.
    pub memtable: u8,
    /// Bit 0: every reopen waits for the resumed cleanup before going on.
    pub flags: u8,
}

impl ReshardConfig {
    fn shards(&self) -> usize {
        usize::from(self.layout & 3) % 3 + 1
    }

    fn partitioner(&self) -> Partitioner {
        if self.layout & 4 == 0 {
            return Partitioner::Hash;
        }
        let n = self.shards() as u8;
        let step = SHORT_KEYS / n;
        let shift = (self.layout >> 3) % 8;
        Partitioner::Range((1..n).map(|i| key_of(i * step + shift)).collect())
    }

    /// The bytes that decode as this config.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend([self.layout, self.memtable, self.flags]);
    }
}

/// Encodes a whole [`run`] input.
pub fn encode_reshard_input(config: ReshardConfig, ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    config.encode(&mut out);
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// A part's index and the value it left for a key (`None`: deleted).
type KeyEvent<'a> = (usize, Option<&'a [u8]>);

/// One shard's part of an acknowledged write.
#[derive(Debug, Clone)]
struct Part {
    /// The shard's directory when the write was made.
    shard: PathBuf,
    mutations: Vec<Mutation>,
    sync: bool,
}

/// What the database must show and what it must hold after a power cut.
#[derive(Debug, Default)]
struct Tracked {
    /// Every acknowledged write applied: what the running database shows.
    view: State,
    /// What the last open recovered.
    base: State,
    /// The parts acknowledged since, in order.
    parts: Vec<Part>,
    /// `parts[..flushed]` are durable (a flush or close succeeded after them).
    flushed: usize,
    write_no: u64,
    history: Vec<String>,
}

/// The state a resharding's step hook shares with the harness.
#[derive(Default)]
struct HookShared {
    state: Mutex<HookState>,
    armed: Condvar,
}

#[derive(Default)]
struct HookState {
    /// A resharding the harness started is (about to be) running: the hook acts.
    pending: bool,
    /// The harness stored the handle and the plan: the hook may go on.
    armed: bool,
    db: Option<ShardedDb>,
    job: Option<Resharding>,
    fs: Option<SimFileSystem>,
    /// The model, lent to the hook while the harness waits.
    tracked: Option<Tracked>,
    /// Writes still to make, with their step index.
    during: Vec<(usize, WriteOp)>,
    /// What to do at the nth occurrence of a step.
    act: Option<(usize, u64, Action)>,
    seen: [u64; 9],
    crashed_at: Option<usize>,
    /// A check that failed on the hook's thread (re-raised by the harness).
    failure: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Cancel,
    Crash(CrashMode),
}

fn lock(shared: &HookShared) -> MutexGuard<'_, HookState> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The step hook installed in every open.
fn on_step(shared: &HookShared, step: ReshardStep) {
    let mut st = lock(shared);
    if !st.pending {
        return; // a cleanup resumed at open
    }
    while !st.armed {
        st = shared.armed.wait(st).unwrap_or_else(|p| p.into_inner());
    }
    let Some(i) = STEPS.iter().position(|s| *s == step) else { return };
    if st.crashed_at.is_some() || st.failure.is_some() {
        return;
    }
    st.seen[i] += 1;
    // Under the fence (Fenced) a write to a source would wait for the hook's own thread.
    if st.seen[i] == 1 && i != FENCED {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.during)
            .into_iter()
            .partition(|(s, _)| *s == i || (*s == FENCED && i == CUT_OVER));
        st.during = later;
        let st = &mut *st;
        if let (Some(db), Some(tracked)) = (st.db.as_ref(), st.tracked.as_mut()) {
            for (_, w) in now {
                tracked.history.push(format!("  during {step:?}: {w:?}"));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    tracked.write(db, &w);
                }));
                if let Err(p) = r {
                    st.failure = Some(panic_message(&p));
                    return;
                }
            }
        }
    }
    if let Some((s, nth, action)) = st.act {
        if s == i && st.seen[i] == nth {
            match action {
                Action::Cancel => {
                    if let Some(job) = &st.job {
                        job.cancel();
                    }
                }
                Action::Crash(mode) => {
                    if let Some(fs) = &st.fs {
                        fs.crash(mode);
                    }
                    st.crashed_at = Some(i);
                }
            }
            if let Some(t) = st.tracked.as_mut() {
                t.history.push(format!("  {action:?} at {step:?} #{nth}"));
            }
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// What a write must return, by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Applied,
    ConditionFailed(Vec<u8>),
}

fn abbrev(b: &[u8]) -> String {
    String::from_utf8_lossy(b.get(..20).unwrap_or(b)).into_owned()
}

impl Tracked {
    fn fail(&self, what: String) -> ! {
        panic!("{what}\nhistory:\n{}", self.history.join("\n"))
    }

    /// The parts `mutations` make under the routing in force, by shard directory.
    fn parts_of(db: &ShardedDb, mutations: &[Mutation]) -> Vec<(PathBuf, Vec<Mutation>)> {
        let mut parts: Vec<(PathBuf, Vec<Mutation>)> = Vec::new();
        for m in mutations {
            let shard = db.shard(db.shard_of(&m.0)).expect("routed shard exists");
            let path = shard.path().to_path_buf();
            match parts.iter_mut().find(|(p, _)| *p == path) {
                Some((_, ms)) => ms.push(m.clone()),
                None => parts.push((path, vec![m.clone()])),
            }
        }
        parts
    }

    fn entries(&self, n: u64, entries: &[(u8, u8)]) -> Vec<Mutation> {
        entries
            .iter()
            .map(|&(k, l)| (key_of(k), (l != 255).then(|| value_of(n, k, usize::from(l) * 16))))
            .collect()
    }

    /// Makes the write `op` on `db` and checks what it returned.
    fn write(&mut self, db: &ShardedDb, op: &WriteOp) {
        self.write_no += 1;
        let n = self.write_no;
        let (mutations, durability, verdict, result) = match op {
            WriteOp::Put { key, len16, durability } => {
                let (k, v) = (key_of(*key), value_of(n, *key, usize::from(*len16) * 16));
                let d = durability_of(*durability);
                let parts = vec![(k.clone(), Some(v.clone()))];
                let r =
                    if d == Durability::Buffered { db.put(&k, &v) } else { db.put_with(&k, &v, d) };
                (parts, d, Verdict::Applied, r)
            }
            WriteOp::Delete { key, durability } => {
                let k = key_of(*key);
                let d = durability_of(*durability);
                (vec![(k.clone(), None)], d, Verdict::Applied, db.delete_with(&k, d))
            }
            WriteOp::Batch { entries, durability } => {
                let m = self.entries(n, entries);
                let d = durability_of(*durability);
                let r = db.write_with(batch_of(&m), d);
                (m, d, Verdict::Applied, r)
            }
            WriteOp::Async { entries, durability } => {
                let m = self.entries(n, entries);
                let d = durability_of(*durability);
                let r = db.write_async_with(batch_of(&m), d).wait();
                (m, d, Verdict::Applied, r)
            }
            WriteOp::Transaction { key, other, len16, durability } => {
                let (k1, k2) = (key_of(*key), key_of(*other));
                let d = durability_of(*durability);
                let mut tx = db.transaction();
                match tx.get(&k1) {
                    Ok(v) => {
                        if v.as_deref() != self.view.get(&k1).map(Vec::as_slice) {
                            self.fail(format!("transaction get({}) disagrees", abbrev(&k1)));
                        }
                    }
                    Err(e) => self.fail(format!("transaction get failed: {e}")),
                }
                let v1 = value_of(n, *key, usize::from(*len16) * 16);
                tx.put(&k1, &v1).unwrap_or_else(|e| self.fail(format!("tx put: {e}")));
                let mut m = vec![(k1.clone(), Some(v1))];
                if k2 != k1 {
                    let same = db.shard_of(&k2) == db.shard_of(&k1);
                    let v2 = (len16 % 2 == 0).then(|| value_of(n, *other, 16));
                    let r = match &v2 {
                        Some(v) => tx.put(&k2, v),
                        None => tx.delete(&k2),
                    };
                    match (same, r) {
                        (true, Ok(())) => m.push((k2, v2)),
                        (false, Err(Error::CrossShard { .. })) => {}
                        (_, r) => self
                            .fail(format!("tx write of a second key: {r:?} (same shard: {same})")),
                    }
                }
                let r = tx.commit_with(d);
                (m, d, Verdict::Applied, r)
            }
            WriteOp::CompareAndSwap { key, expected, len16 } => {
                let k = key_of(*key);
                let current = self.view.get(&k).cloned();
                let expected = match expected % 3 {
                    0 => current.clone(),
                    1 => None,
                    _ => Some(match &current {
                        Some(v) => [v.as_slice(), b"!"].concat(),
                        None => b"absent".to_vec(),
                    }),
                };
                let new = (*len16 != 255).then(|| value_of(n, *key, usize::from(*len16) * 16));
                let verdict = if expected == current {
                    Verdict::Applied
                } else {
                    Verdict::ConditionFailed(k.clone())
                };
                let r = db.compare_and_swap(&k, expected.as_deref(), new.as_deref());
                (vec![(k, new)], Durability::Buffered, verdict, r)
            }
        };
        let parts = Self::parts_of(db, &mutations);
        self.settle(&format!("{op:?}"), mutations, parts, durability, verdict, result);
    }

    fn settle(
        &mut self,
        what: &str,
        mutations: Vec<Mutation>,
        parts: Vec<(PathBuf, Vec<Mutation>)>,
        durability: Durability,
        verdict: Verdict,
        result: strata::Result<()>,
    ) {
        self.history.push(format!(
            "{} -> {:?} ({} parts)",
            what.get(..what.len().min(120)).unwrap_or(what),
            result.as_ref().err(),
            parts.len()
        ));
        match result {
            Ok(()) => {
                if verdict != Verdict::Applied {
                    self.fail(format!("{what} succeeded where the model says {verdict:?}"));
                }
                apply(&mut self.view, &mutations);
                let sync = durability == Durability::Sync;
                for (shard, mutations) in parts {
                    self.parts.push(Part { shard, mutations, sync });
                }
            }
            Err(Error::ConditionFailed { key })
                if verdict == Verdict::ConditionFailed(key.clone()) => {}
            Err(e) => self.fail(format!("{what} failed: {e:?} (model: {verdict:?})")),
        }
    }

    /// Checks a state recovered after a power cut (see the module docs) and makes it the
    /// new base.
    fn recovered(&mut self, got: &State) {
        let mut last_sync: HashMap<&Path, usize> = HashMap::new();
        for (i, p) in self.parts.iter().enumerate() {
            if p.sync {
                last_sync.insert(&p.shard, i);
            }
        }
        let durable = |i: usize| {
            i < self.flushed
                || last_sync.get(self.parts[i].shard.as_path()).is_some_and(|&j| i <= j)
        };
        // Per key: the value each part left (its last entry for the key), in order.
        let mut events: BTreeMap<&[u8], Vec<KeyEvent<'_>>> = BTreeMap::new();
        for (i, p) in self.parts.iter().enumerate() {
            for (k, v) in &p.mutations {
                let list = events.entry(k.as_slice()).or_default();
                if list.last().is_some_and(|(j, _)| *j == i) {
                    list.pop();
                }
                list.push((i, v.as_deref()));
            }
        }
        let keys: BTreeSet<&[u8]> = self
            .base
            .keys()
            .chain(got.keys())
            .map(Vec::as_slice)
            .chain(events.keys().copied())
            .collect();
        // Part indices shifted by one; 0 is the base.
        let mut possible: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for k in keys {
            let now = got.get(k).map(Vec::as_slice);
            let list = events.get(k).map_or(&[][..], Vec::as_slice);
            let mut ok: Vec<usize> = Vec::new();
            if self.base.get(k).map(Vec::as_slice) == now {
                ok.push(0);
            }
            ok.extend(list.iter().filter(|(_, v)| *v == now).map(|(i, _)| i + 1));
            if ok.is_empty() {
                self.fail(format!(
                    "after a power cut {} holds {:?}, which no write left there",
                    abbrev(k),
                    now.map(abbrev)
                ));
            }
            let floor = list.iter().filter(|(i, _)| durable(*i)).map(|(i, _)| i + 1).max();
            if let Some(floor) = floor {
                if ok.iter().max().is_some_and(|&m| m < floor) {
                    self.fail(format!(
                        "after a power cut {} holds {:?}: durable part #{} ({:?}) was lost",
                        abbrev(k),
                        now.map(abbrev),
                        floor - 1,
                        self.parts[floor - 1].shard
                    ));
                }
            }
            possible.insert(k, ok);
        }
        // A part that certainly survived survived with every earlier part of its shard.
        for (j, p) in self.parts.iter().enumerate() {
            let survived = p.mutations.iter().any(|(k, _)| possible[k.as_slice()] == [j + 1]);
            if !survived {
                continue;
            }
            for (i, q) in self.parts.iter().enumerate().take(j + 1) {
                if q.shard != p.shard {
                    continue;
                }
                for (k, _) in &q.mutations {
                    if possible[k.as_slice()].iter().max().is_some_and(|&m| m < i + 1) {
                        self.fail(format!(
                            "after a power cut part #{j} on {:?} survived but part #{i} of the \
                             same shard did not: {} holds {:?} from before it ({})",
                            p.shard,
                            abbrev(k),
                            got.get(k).map(|v| abbrev(v)),
                            if i == j { "a partial one-shard batch" } else { "out of log order" }
                        ));
                    }
                }
            }
        }
        self.history.push(format!(
            "recovered {} keys, {} parts checked",
            got.len(),
            self.parts.len()
        ));
        self.base = got.clone();
        self.view = got.clone();
        self.parts.clear();
        self.flushed = 0;
    }

    /// Every key the model knows of (for gets after recovery).
    fn probes(&self) -> BTreeSet<Vec<u8>> {
        let mut keys: BTreeSet<Vec<u8>> = (0..SHORT_KEYS).map(key_of).collect();
        keys.extend(self.view.keys().cloned());
        keys.extend(self.parts.iter().flat_map(|p| p.mutations.iter().map(|(k, _)| k.clone())));
        keys
    }
}

fn scan(
    items: impl Iterator<Item = strata::Result<(strata::Bytes, strata::Bytes)>>,
) -> Result<Vec<Entry>, Error> {
    items.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect()
}

struct Harness {
    fs: SimFileSystem,
    config: ReshardConfig,
    hook: Arc<HookShared>,
    db: Option<ShardedDb>,
    tracked: Tracked,
    /// The shard count the database must have.
    shards: usize,
    reshards: usize,
    fills: usize,
    fill_keys: usize,
    new_dirs: u64,
}

impl Harness {
    fn options(&self) -> ShardedOptions {
        let hook = Arc::clone(&self.hook);
        ShardedOptions::new(self.config.shards())
            .partitioner(self.config.partitioner())
            .engine(
                Options::default()
                    .file_system(Arc::new(self.fs.process()))
                    .durability(Durability::Buffered)
                    .memtable_size((8 + usize::from(self.config.memtable % 57)) << 10),
            )
            .on_reshard_step(move |step| on_step(&hook, step))
    }

    fn db(&self) -> &ShardedDb {
        self.db.as_ref().expect("open between ops")
    }

    fn fail(&self, what: String) -> ! {
        self.tracked.fail(what)
    }

    /// Reads everything forward, backward and by key; all must agree, no key twice.
    fn read_all(&self, db: &ShardedDb) -> State {
        let forward = scan(db.iter()).unwrap_or_else(|e| self.fail(format!("scan: {e}")));
        let mut backward =
            scan(db.iter().rev()).unwrap_or_else(|e| self.fail(format!("reverse scan: {e}")));
        if !forward.windows(2).all(|w| w[0].0 < w[1].0) {
            self.fail("a scan saw a key twice or out of order".into());
        }
        backward.reverse();
        if forward != backward {
            self.fail(format!(
                "forward ({}) and reverse ({}) scans disagree",
                forward.len(),
                backward.len()
            ));
        }
        let state: State = forward.into_iter().collect();
        for k in state.keys().cloned().chain(self.tracked.probes()) {
            let got = db.get(&k).unwrap_or_else(|e| self.fail(format!("get: {e}")));
            if got.as_deref() != state.get(&k).map(Vec::as_slice) {
                self.fail(format!("get({}) = {got:?} disagrees with the scan", abbrev(&k)));
            }
        }
        state
    }

    /// The running database shows exactly the model.
    fn check_view(&self) {
        let got = self.read_all(self.db());
        if got != self.tracked.view {
            let diff = got
                .iter()
                .zip(self.tracked.view.iter())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("{} vs model {}", abbrev(a.0), abbrev(b.0)));
            self.fail(format!(
                "the database ({} keys) disagrees with the model ({} keys): {diff:?}",
                got.len(),
                self.tracked.view.len()
            ));
        }
    }

    /// Whether no cleanup is pending or running (then no stale copy may remain).
    fn clean(db: &ShardedDb) -> bool {
        db.resharding().is_none_or(|r| {
            r.is_finished()
                && matches!(r.progress().phase, ReshardPhase::Done | ReshardPhase::RolledBack)
        })
    }

    /// Once clean, every key lives on the shard `shard_of` names, and the count is right.
    fn check_layout(&self) {
        let db = self.db();
        if db.shard_count() != self.shards {
            self.fail(format!("{} shards, expected {}", db.shard_count(), self.shards));
        }
        if !Self::clean(db) {
            return;
        }
        for i in 0..db.shard_count() {
            let shard = db.shard(i).expect("shard");
            for r in shard.iter() {
                let (k, _) = r.unwrap_or_else(|e| self.fail(format!("shard scan: {e}")));
                if db.shard_of(&k) != i {
                    self.fail(format!(
                        "{} is on shard {i} but routes to shard {} (a stale copy survived cleanup)",
                        abbrev(&k),
                        db.shard_of(&k)
                    ));
                }
            }
        }
    }

    fn wait_cleanup(&mut self) {
        if let Some(job) = self.db().resharding() {
            let r = job.wait();
            self.tracked.history.push(format!("wait cleanup -> {r:?} {:?}", job.progress().phase));
            if let Err(e) = r {
                if !(matches!(e, Error::Cancelled)) {
                    self.fail(format!("a resumed cleanup failed: {e}"));
                }
            }
        }
    }

    /// Opens after a power cut or close; the shard count must be one of `allowed`.
    fn reopen_and_verify(&mut self, allowed: &[usize]) {
        self.db = None;
        let db = ShardedDb::open(ROOT, self.options())
            .unwrap_or_else(|e| self.fail(format!("open after a crash failed: {e}")));
        let n = db.shard_count();
        self.tracked.history.push(format!("reopened: {n} shards (allowed {allowed:?})"));
        if !allowed.contains(&n) {
            self.fail(format!("reopened with {n} shards, allowed {allowed:?}"));
        }
        self.shards = n;
        self.db = Some(db);
        if self.config.flags & 1 != 0 {
            self.wait_cleanup();
        }
        let got = self.read_all(self.db());
        self.tracked.recovered(&got);
        self.check_layout();
    }

    fn power_cut(&mut self, mode: u8, allowed: &[usize]) {
        let mode = if mode == 0 {
            CrashMode::SyncedOnly
        } else {
            CrashMode::TornTail { seed: u64::from(mode) }
        };
        self.tracked.history.push(format!("power cut {mode:?}"));
        self.fs.crash(mode);
        self.reopen_and_verify(allowed);
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Write(w) => {
                self.tracked.history.push(format!("{w:?}"));
                let db = self.db().clone();
                self.tracked.write(&db, &w);
            }
            Op::Get { key } => {
                let k = key_of(key);
                let got = self.db().get(&k).unwrap_or_else(|e| self.fail(format!("get: {e}")));
                if got.as_deref() != self.tracked.view.get(&k).map(Vec::as_slice) {
                    self.fail(format!("get({}) disagrees with the model", abbrev(&k)));
                }
            }
            Op::Scan { lo, hi, flags } => {
                let start =
                    if flags & 2 != 0 { Bound::Unbounded } else { Bound::Included(key_of(lo)) };
                let end =
                    if flags & 4 != 0 { Bound::Unbounded } else { Bound::Excluded(key_of(hi)) };
                let bounds = (start.clone(), end.clone());
                let mut want = range_of(
                    &self.tracked.view,
                    start.as_ref().map(Vec::as_slice),
                    end.as_ref().map(Vec::as_slice),
                );
                let iter = self.db().range(bounds);
                let got = if flags & 1 != 0 {
                    want.reverse();
                    scan(iter.rev())
                } else {
                    scan(iter)
                };
                match got {
                    Ok(got) if got == want => {}
                    other => self.fail(format!(
                        "scan {:?} disagrees with the model: {} entries vs {}",
                        (start, end),
                        other.map_or(0, |g| g.len()),
                        want.len()
                    )),
                }
            }
            Op::Fill { count, durability } => {
                if self.fills >= MAX_FILLS {
                    return;
                }
                self.fills += 1;
                self.tracked.write_no += 1;
                let n = self.tracked.write_no;
                let size = (usize::from(count % 6) + 1) * 250;
                let mutations: Vec<Mutation> = (self.fill_keys..self.fill_keys + size)
                    .map(|i| (fill_key(i), Some(format!("w{n}/f{i}").into_bytes())))
                    .collect();
                self.fill_keys += size;
                let d = durability_of(durability);
                let db = self.db().clone();
                let parts = Tracked::parts_of(&db, &mutations);
                let r = db.write_with(batch_of(&mutations), d);
                self.tracked.settle(
                    &format!("fill {size} {d:?}"),
                    mutations,
                    parts,
                    d,
                    Verdict::Applied,
                    r,
                );
            }
            Op::Reshard(r) => self.reshard(r),
            Op::Flush => {
                let r = self.db().flush();
                self.tracked.history.push(format!("flush -> {r:?}"));
                if let Err(e) = r {
                    self.fail(format!("flush failed: {e}"));
                }
                self.tracked.flushed = self.tracked.parts.len();
            }
            Op::PowerCut { mode } => {
                let n = self.shards;
                self.power_cut(mode, &[n]);
            }
            Op::Reopen { how } => {
                if how % 2 == 1 {
                    self.wait_cleanup();
                }
                let db = self.db.take().expect("open");
                let r = db.close();
                self.tracked.history.push(format!("close -> {r:?}"));
                if let Err(e) = r {
                    self.fail(format!("close failed: {e}"));
                }
                drop(db);
                self.tracked.flushed = self.tracked.parts.len();
                let view = self.tracked.view.clone();
                let n = self.shards;
                self.reopen_and_verify(&[n]);
                if self.tracked.view != view {
                    self.fail("a clean reopen lost or changed acknowledged writes".into());
                }
            }
            Op::WaitCleanup => {
                self.wait_cleanup();
                self.check_layout();
            }
        }
    }

    fn reshard(&mut self, op: ReshardOp) {
        self.tracked.history.push(format!("{op:?}"));
        let grows = op.kind % 4 != 3;
        let old = self.shards;
        if self.reshards >= MAX_RESHARDS || (grows && old >= MAX_SHARDS) {
            return;
        }
        self.reshards += 1;
        let db = self.db().clone();
        let shard = usize::from(op.shard) % old;
        let at = key_of(op.at);
        let step = usize::from(op.step % 9);
        let nth = u64::from(op.step / 9 % 3) + 1;
        let crash_mode = if op.mode == 0 {
            CrashMode::SyncedOnly
        } else {
            CrashMode::TornTail { seed: u64::from(op.mode) }
        };
        let action = match op.action % 3 {
            0 => None,
            1 => Some(Action::Cancel),
            _ => Some(Action::Crash(crash_mode)),
        };
        // Whether a start may be refused as Busy: a cleanup is pending.
        let last = db.resharding();
        let must_busy = last
            .as_ref()
            .is_some_and(|r| r.is_finished() && r.progress().phase == ReshardPhase::Failed);
        let may_busy = must_busy || last.as_ref().is_some_and(|r| !r.is_finished());
        {
            let mut st = lock(&self.hook);
            *st = HookState {
                pending: true,
                db: Some(db.clone()),
                fs: Some(self.fs.clone()),
                tracked: Some(std::mem::take(&mut self.tracked)),
                during: op.during.iter().map(|(s, w)| (usize::from(s % 9), w.clone())).collect(),
                act: action.map(|a| (step, nth, a)),
                ..HookState::default()
            };
        }
        self.new_dirs += 1;
        let started = match op.kind % 4 {
            0 => db.split_shard(shard),
            1 => db.split_shard_at(shard, &at),
            2 => db.add_shard(format!("added-{}", self.new_dirs)),
            _ => db.move_shard(shard, format!("/moved/{}", self.new_dirs)),
        };
        let job = match started {
            Ok(job) => job,
            Err(e) => {
                let mut st = lock(&self.hook);
                self.tracked = st.tracked.take().unwrap_or_default();
                *st = HookState::default();
                drop(st);
                self.tracked.history.push(format!("  refused: {e:?}"));
                self.reshards -= 1;
                let ok = match &e {
                    Error::Busy => may_busy,
                    Error::InvalidArgument(_) => {
                        !must_busy && self.may_refuse(&db, op.kind % 4, shard, &at)
                    }
                    _ => false,
                };
                if !ok {
                    self.fail(format!("resharding refused: {e:?} (cleanup pending: {must_busy})"));
                }
                return;
            }
        };
        if must_busy {
            self.fail("a resharding started while a cleanup was pending".into());
        }
        {
            let mut st = lock(&self.hook);
            st.job = Some(job.clone());
            st.armed = true;
            self.hook.armed.notify_all();
        }
        let result = job.wait();
        let phase = job.progress().phase;
        let (crashed_at, failure) = {
            let mut st = lock(&self.hook);
            self.tracked = st.tracked.take().unwrap_or_default();
            let out = (st.crashed_at, st.failure.take());
            *st = HookState::default();
            out
        };
        drop(job);
        if let Some(f) = failure {
            panic!("during the resharding: {f}");
        }
        self.tracked.history.push(format!("  -> {result:?} {phase:?} (crashed at {crashed_at:?})"));
        let new = old + usize::from(grows);
        let ended_with = match (&result, phase) {
            (Ok(()), ReshardPhase::Done) => new,
            (Err(Error::Cancelled), ReshardPhase::RolledBack) => old,
            // Cancelled during cleanup: the new layout is in force, its cleanup pending.
            (Err(Error::Cancelled), ReshardPhase::Failed) => new,
            (r, phase) if crashed_at.is_none() => {
                self.fail(format!("resharding ended with {r:?} in {phase:?} without a crash"))
            }
            _ => old, // unused: the power went out
        };
        drop(db);
        match (crashed_at, action) {
            (Some(i), _) => {
                let allowed = if i >= CUT_OVER { new } else { old };
                self.db = None;
                self.reopen_and_verify(&[allowed]);
            }
            (None, Some(Action::Crash(mode))) => {
                // The step never came: the power goes out after the end.
                self.shards = ended_with;
                self.tracked.history.push(format!("  step never came: power cut {mode:?} now"));
                self.fs.crash(mode);
                self.reopen_and_verify(&[ended_with]);
            }
            _ => {
                self.shards = ended_with;
                self.check_view();
                self.check_layout();
            }
        }
    }

    /// Whether `InvalidArgument` is a right answer to a resharding request.
    fn may_refuse(&self, db: &ShardedDb, kind: u8, shard: usize, at: &[u8]) -> bool {
        match (kind, db.partitioner()) {
            // Too few ring points or shard keys to split.
            (0 | 2, _) => true,
            (1, Partitioner::Hash) => true,
            (1, Partitioner::Range(splits)) => {
                let lo = shard.checked_sub(1).and_then(|i| splits.get(i));
                let hi = splits.get(shard);
                let inside = lo.is_none_or(|lo| at > lo.as_slice())
                    && hi.is_none_or(|hi| at < hi.as_slice());
                !inside
            }
            _ => false,
        }
    }
}

/// `reshard_crash`: runs up to 120 ops ([`Op`]) after a 3-byte [`ReshardConfig`] on a
/// [`ShardedDb`] on a [`SimFileSystem`] and checks, after every reopen and at the end (a
/// power cut and a reopen, then the resumed cleanup awaited):
/// * the recovered state against the write log as the module docs say (no acknowledged
///   durable write lost, nothing never written, no deleted key back from the dead, no
///   one-shard part applied partially or out of its shard's log order);
/// * forward and reverse scans equal, strictly ascending (no key twice), gets agree;
/// * a clean reopen shows every acknowledged write;
/// * the shard count is the one the reshardings that completed (or were cut at or after
///   their cut-over) left, and once no cleanup is pending every key is on the shard
///   `shard_of` names.
///
/// While running: every write of every kind is acknowledged (or fails a condition the model
/// says fails); gets and scans equal the model; a resharding ends `Done`, or `Cancelled`
/// and rolled back (or, cancelled during its cleanup, with the new layout in force); its
/// request is refused only when the model allows (`Busy` while a cleanup is pending,
/// `InvalidArgument` for a split that cannot be made).
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let config =
        ReshardConfig { layout: byte(&mut u), memtable: byte(&mut u), flags: byte(&mut u) };
    let fs = SimFileSystem::new();
    let mut h = Harness {
        fs,
        config,
        hook: Arc::new(HookShared::default()),
        db: None,
        tracked: Tracked::default(),
        shards: config.shards(),
        reshards: 0,
        fills: 0,
        fill_keys: 0,
        new_dirs: 0,
    };
    h.tracked.history.push(format!("{config:?} {:?}", config.partitioner()));
    let db = ShardedDb::open(ROOT, h.options()).expect("open a new database");
    h.db = Some(db);
    let mut n = 0;
    while !u.is_empty() && n < MAX_OPS {
        let op = Op::decode(&mut u);
        h.run(op);
        n += 1;
    }
    // The end of every input: a power cut, then the resumed cleanup, then the layout.
    let n = h.shards;
    h.power_cut(0, &[n]);
    h.wait_cleanup();
    h.check_layout();
    h.check_view();
    if std::env::var_os("STRATA_FUZZ_TRACE").is_some() {
        eprintln!("{}", h.tracked.history.join("\n"));
    }
    if let Some(db) = h.db.take() {
        let _ = db.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffered batch on one shard whose keys a split separates, then a power cut right
    /// after the cut-over: the batch must survive whole or not at all.
    #[test]
    fn a_split_keeps_a_buffered_one_shard_batch_whole_across_a_power_cut() {
        for kind in [0u8, 2] {
            let config = ReshardConfig { layout: 4, memtable: 0, flags: 0 };
            let ops = vec![
                Op::Fill { count: 5, durability: 0 },
                Op::Write(WriteOp::Batch { entries: vec![(5, 1), (40, 1)], durability: 1 }),
                Op::Reshard(ReshardOp {
                    kind,
                    shard: 0,
                    at: 0,
                    action: 2,
                    step: CUT_OVER as u8,
                    mode: 0,
                    during: vec![],
                }),
            ];
            run(&encode_reshard_input(config, &ops));
        }
    }
}
