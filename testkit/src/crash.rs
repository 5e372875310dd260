//! The crash workload and the check of what a database recovered, shared by the kill -9
//! campaign ([`crate::kill9`]) and the power-loss campaign ([`crate::power_loss`]).
//!
//! Every write of thread `t` is one atomic batch that also sets the thread's progress key
//! `t{t}/~progress` to `r{round} c{counter}`; the operations are a pure function of
//! `(seed, round, thread, counter)` ([`Workload::write`]). So the recovered progress counter
//! `p` of a thread says exactly which of its writes survived, and [`Workload::check_round`]
//! can demand that the thread's keys equal the previous round's state with exactly its
//! writes `1..=p` applied: batches whole, no write skipped, no value never written.
//!
//! That is [`Workload::Thread`], for a [`strata::Db`]. For a [`strata::ShardedDb`],
//! [`Workload::Entities`] gives each thread several entities, each with its own progress key,
//! and makes every write touch one entity only, so that under [`ENTITY_SHARD_KEY`] a write
//! lies on one shard and is atomic there; the thread's progress is the highest counter among
//! its entities, and the check is the same.

use strata::{Durability, KvStore, Options, ShardKey, WriteBatch};

use crate::model::{apply, batch_of, Entry, Mutation, State};

/// Keys per thread: few, so writes overwrite and delete each other's keys.
pub const KEYS_PER_THREAD: u64 = 200;

/// splitmix64: a deterministic hash, so every party derives the same operations from a seed.
///
/// ```
/// use strata_testkit::crash::mix;
/// assert_eq!(mix(7), mix(7));
/// assert_ne!(mix(7), mix(8));
/// ```
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The progress key of `thread` under [`Workload::Thread`].
pub fn progress_key(thread: usize) -> Vec<u8> {
    progress_key_under(&thread_prefix(thread))
}

fn progress_key_under(prefix: &[u8]) -> Vec<u8> {
    [prefix, b"~progress"].concat()
}

/// The value of the progress key after write `counter` of `round`.
pub fn progress_value(round: u64, counter: u64) -> Vec<u8> {
    format!("r{round} c{counter}").into_bytes()
}

fn parse_progress(value: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(value).ok()?;
    let (r, c) = s.split_once(' ')?;
    Some((r.strip_prefix('r')?.parse().ok()?, c.strip_prefix('c')?.parse().ok()?))
}

fn thread_prefix(thread: usize) -> Vec<u8> {
    format!("t{thread:02}/").into_bytes()
}

fn entity_prefix(thread: usize, entity: u64) -> Vec<u8> {
    format!("t{thread:02}/e{entity:02}/").into_bytes()
}

/// The shard key under which every write of [`Workload::Entities`] lies on one shard: the
/// entity, `t{thread:02}/e{entity:02}` (7 bytes).
pub const ENTITY_SHARD_KEY: ShardKey = ShardKey::Prefix(7);

/// Most entities per thread under [`Workload::Entities`] (two digits in the key).
pub const MAX_ENTITIES: u64 = 100;

/// How each thread's writes are shaped.
///
/// ```
/// use strata_testkit::crash::Workload;
///
/// let w = Workload::Entities(8).write(1, 1, 0, 1);
/// let entity = &w.mutations[0].0[..8]; // `t00/eNN/`
/// assert!(w.mutations.iter().all(|(k, _)| k.starts_with(entity)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Keys `t{t}/k{NNNN}`; a batch spans any of the thread's keys and sets its progress key
    /// `t{t}/~progress`: one atomic write on a [`strata::Db`].
    Thread,
    /// The thread's keys belong to this many entities (at most [`MAX_ENTITIES`]), keys
    /// `t{t}/e{e}/k{NNNN}`; a write touches one entity and sets its progress key
    /// `t{t}/e{e}/~progress`, so under [`ENTITY_SHARD_KEY`] it is atomic on one shard.
    Entities(u64),
}

/// One write of the workload: the entries of its batch and its durability.
#[derive(Debug, Clone)]
pub struct PlannedWrite {
    /// The batch's puts and deletes, in order; the last sets the progress key.
    pub mutations: Vec<Mutation>,
    /// Sync or Buffered.
    pub durability: Durability,
}

impl PlannedWrite {
    /// The write batch of this write.
    pub fn batch(&self) -> WriteBatch {
        batch_of(&self.mutations)
    }
}

/// Write `counter` (from 1) of `thread` in `round` under [`Workload::Thread`] (see
/// [`Workload::write`]).
///
/// ```
/// use strata_testkit::crash::{progress_key, progress_value, write_for};
///
/// let w = write_for(1, 2, 0, 3);
/// assert_eq!(w.mutations.last(), Some(&(progress_key(0), Some(progress_value(2, 3)))));
/// assert_eq!(w.mutations, write_for(1, 2, 0, 3).mutations);
/// ```
pub fn write_for(seed: u64, round: u64, thread: usize, counter: u64) -> PlannedWrite {
    Workload::Thread.write(seed, round, thread, counter)
}

impl Workload {
    /// Write `counter` (from 1) of `thread` in `round`: a put, a delete or a batch of up to
    /// 8 entries, plus the progress key; values encode `(round, thread, counter)`. One in
    /// three is `Sync`, the others `Buffered`.
    ///
    /// ```
    /// use strata_testkit::crash::Workload;
    ///
    /// let w = Workload::Entities(4).write(1, 2, 0, 3);
    /// assert_eq!(w.mutations, Workload::Entities(4).write(1, 2, 0, 3).mutations);
    /// ```
    pub fn write(self, seed: u64, round: u64, thread: usize, counter: u64) -> PlannedWrite {
        let mut h = mix(seed ^ mix(round ^ mix(thread as u64 ^ mix(counter))));
        let mut next = || {
            h = mix(h);
            h
        };
        let kind = next() % 10;
        let n = match kind {
            0..=4 => 1,
            _ => 1 + next() % 8,
        };
        let (prefix, keys) = match self {
            Workload::Thread => (thread_prefix(thread), KEYS_PER_THREAD),
            Workload::Entities(entities) => {
                let entities = entities.clamp(1, MAX_ENTITIES);
                (entity_prefix(thread, next() % entities), (KEYS_PER_THREAD / entities).max(1))
            }
        };
        let mut mutations = Vec::new();
        for i in 0..n {
            let key = [&prefix[..], format!("k{:04}", next() % keys).as_bytes()].concat();
            if next() % 4 == 0 {
                mutations.push((key, None));
            } else {
                let len = (next() % 300) as usize;
                let mut value = format!("r{round}/t{thread}/c{counter}/{i}:").into_bytes();
                value.resize(value.len() + len, b'a' + (counter % 26) as u8);
                mutations.push((key, Some(value)));
            }
        }
        mutations.push((progress_key_under(&prefix), Some(progress_value(round, counter))));
        let durability = if next() % 3 == 0 { Durability::Sync } else { Durability::Buffered };
        PlannedWrite { mutations, durability }
    }

    /// The state after writes `1..=count` of `thread` in `round`, applied to `prev`.
    pub fn state_after(
        self,
        prev: &State,
        seed: u64,
        round: u64,
        thread: usize,
        count: u64,
    ) -> State {
        let mut state = prev.clone();
        for c in 1..=count {
            apply(&mut state, &self.write(seed, round, thread, c).mutations);
        }
        state
    }

    /// The progress counter of `thread` in `round` found in `state` (0: no write of the
    /// round): the highest among the thread's progress keys that carry the round.
    pub fn progress_of(self, state: &State, round: u64, thread: usize) -> u64 {
        let keys: Vec<Vec<u8>> = match self {
            Workload::Thread => vec![progress_key(thread)],
            Workload::Entities(entities) => (0..entities.clamp(1, MAX_ENTITIES))
                .map(|e| progress_key_under(&entity_prefix(thread, e)))
                .collect(),
        };
        keys.iter()
            .filter_map(|k| state.get(k).and_then(|v| parse_progress(v)))
            .filter(|&(r, _)| r == round)
            .map(|(_, c)| c)
            .max()
            .unwrap_or(0)
    }

    /// Checks that `got` holds, for each thread, exactly `prev` with the thread's writes
    /// `1..=p` of `round` applied, `p` being its recovered progress counter, with
    /// `lower[t] <= p <= upper[t]` (the last write that must have survived, the last one
    /// attempted), and no key outside the threads' key ranges. Returns each thread's `p`.
    ///
    /// ```
    /// use strata_testkit::crash::Workload;
    /// use strata_testkit::model::State;
    ///
    /// let w = Workload::Entities(4);
    /// let got = w.state_after(&State::new(), 9, 1, 0, 5);
    /// assert_eq!(w.check_round(&got, &State::new(), 9, 1, &[3], &[6]), Ok(vec![5]));
    /// assert!(w.check_round(&got, &State::new(), 9, 1, &[6], &[6]).is_err(), "write 6 was lost");
    /// ```
    pub fn check_round(
        self,
        got: &State,
        prev: &State,
        seed: u64,
        round: u64,
        lower: &[u64],
        upper: &[u64],
    ) -> Result<Vec<u64>, String> {
        let threads = lower.len();
        let mut progress = Vec::new();
        let mut expected = prev.clone();
        for t in 0..threads {
            let p = self.progress_of(got, round, t);
            if p < lower[t] {
                return Err(format!(
                    "thread {t} round {round}: write {} must have survived but only {p} writes did",
                    lower[t]
                ));
            }
            if p > upper[t] {
                return Err(format!(
                    "thread {t} round {round}: progress {p} but only {} writes were attempted",
                    upper[t]
                ));
            }
            for c in 1..=p {
                apply(&mut expected, &self.write(seed, round, t, c).mutations);
            }
            progress.push(p);
        }
        if got != &expected {
            let first_diff = got
                .iter()
                .zip(expected.iter())
                .find(|(a, b)| a != b)
                .map(|(a, b)| {
                    format!(
                        "got {}={} expected {}={}",
                        String::from_utf8_lossy(a.0),
                        String::from_utf8_lossy(a.1),
                        String::from_utf8_lossy(b.0),
                        String::from_utf8_lossy(b.1)
                    )
                })
                .unwrap_or_else(|| format!("{} keys vs {} expected", got.len(), expected.len()));
            return Err(format!(
                "round {round}: recovered state is not the expected prefix state ({first_diff}); \
                 progress {progress:?}"
            ));
        }
        for k in got.keys() {
            if !(0..threads).any(|t| k.starts_with(&thread_prefix(t))) {
                return Err(format!("key {} was never written", String::from_utf8_lossy(k)));
            }
        }
        Ok(progress)
    }
}

/// Database options of the campaigns: small memtables, so that flushes (and, with the default
/// level-0 trigger of 4 tables, automatic compactions) happen in every round.
pub fn options() -> Options {
    Options::default()
        .memtable_size(64 << 10)
        .durability(Durability::Buffered)
        .level_base_bytes(1 << 20)
}

fn scan(
    items: impl Iterator<Item = strata::Result<(strata::Bytes, strata::Bytes)>>,
) -> strata::Result<Vec<Entry>> {
    items.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect()
}

/// Reads the whole store (a [`strata::Db`] or a [`strata::ShardedDb`]) forward, backward and
/// by key, and checks that they agree: both scans are equal and strictly ordered (no key
/// twice), and a get of every scanned key returns its value.
pub fn read_state(db: &dyn KvStore) -> Result<State, String> {
    read_state_probing(db, &[])
}

/// [`read_state`], and also a get of each of `probes` (present or not), which must agree
/// with the scan.
///
/// ```
/// use strata::{Db, Options};
/// use strata_testkit::crash::read_state_probing;
///
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("a", "1")?;
/// let state = read_state_probing(&db, &[b"a".to_vec(), b"missing".to_vec()])?;
/// assert_eq!(state.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_state_probing(db: &dyn KvStore, probes: &[Vec<u8>]) -> Result<State, String> {
    let forward = scan(db.iter()).map_err(|e| format!("scan failed: {e}"))?;
    let mut backward = scan(db.iter().rev()).map_err(|e| format!("reverse scan failed: {e}"))?;
    backward.reverse();
    if forward != backward {
        return Err("forward and reverse scans disagree".into());
    }
    if !forward.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err("scan is not strictly ordered".into());
    }
    let state: State = forward.into_iter().collect();
    for key in state.keys().chain(probes) {
        let got = db.get(key).map_err(|e| format!("get failed: {e}"))?;
        if got.as_deref() != state.get(key).map(Vec::as_slice) {
            return Err(format!(
                "get({}) = {got:?} disagrees with the scan",
                String::from_utf8_lossy(key)
            ));
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verifier itself: a state missing a write that must have survived, holding one never
    /// attempted, an invented value or a key nobody wrote, is rejected.
    #[test]
    fn check_round_rejects_lost_and_invented_writes() {
        let seed = 9;
        let state = Workload::Thread.state_after(&State::new(), seed, 1, 0, 5);
        assert_eq!(
            Workload::Thread.check_round(&state, &State::new(), seed, 1, &[5], &[6]).unwrap(),
            vec![5]
        );
        assert!(
            Workload::Thread.check_round(&state, &State::new(), seed, 1, &[6], &[6]).is_err(),
            "lost acked write accepted"
        );
        assert!(
            Workload::Thread.check_round(&state, &State::new(), seed, 1, &[0], &[4]).is_err(),
            "unattempted write accepted"
        );
        let mut invented = state.clone();
        invented.insert(b"t00/k0001".to_vec(), b"never written".to_vec());
        assert!(
            Workload::Thread.check_round(&invented, &State::new(), seed, 1, &[0], &[6]).is_err(),
            "invented value accepted"
        );
        let mut stray = state.clone();
        stray.insert(b"zzz".to_vec(), b"x".to_vec());
        assert!(
            Workload::Thread.check_round(&stray, &State::new(), seed, 1, &[0], &[6]).is_err(),
            "stray key accepted"
        );
    }

    /// Under entities the thread's progress is its highest entity's, and a write lost on
    /// another entity (another shard) below it is a hole the check finds.
    #[test]
    fn entity_check_finds_a_write_lost_on_another_entity() {
        let (seed, w) = (9, Workload::Entities(4));
        let writes: Vec<PlannedWrite> = (1..=6).map(|c| w.write(seed, 1, 0, c)).collect();
        for write in &writes {
            let entity = &write.mutations[0].0[..8];
            assert!(write.mutations.iter().all(|(k, _)| k.starts_with(entity)), "{write:?}");
        }
        let state = w.state_after(&State::new(), seed, 1, 0, 6);
        assert_eq!(w.check_round(&state, &State::new(), seed, 1, &[6], &[6]).unwrap(), vec![6]);
        // Write 6 applied, but not the last earlier write to another entity (so that
        // entity's progress key is stale).
        let entity_of = |c: u64| &writes[c as usize - 1].mutations[0].0[..8];
        let other = (1..=5)
            .find(|&c| (c + 1..=6).all(|later| entity_of(later) != entity_of(c)))
            .expect("two entities among six writes");
        let mut holed = State::new();
        for c in (1..=6).filter(|&c| c != other) {
            apply(&mut holed, &writes[c as usize - 1].mutations);
        }
        assert!(
            w.check_round(&holed, &State::new(), seed, 1, &[0], &[6]).is_err(),
            "write {other} lost below write 6 accepted"
        );
    }

    #[test]
    fn progress_is_read_back_for_its_round_only() {
        let state = Workload::Thread.state_after(&State::new(), 3, 2, 1, 4);
        assert_eq!(Workload::Thread.progress_of(&state, 2, 1), 4);
        assert_eq!(Workload::Thread.progress_of(&state, 3, 1), 0);
        assert_eq!(Workload::Thread.progress_of(&state, 2, 0), 0);
    }
}
