//! Leveled compaction policy: which level compacts next, which tables it takes, and the
//! [`VersionEdit`] that installs the result. The merge itself is in [`crate::run_compaction`].
//!
//! The reasoning behind the choices (scores, round-robin cursors, L0 closure, trivial moves,
//! manual compactions) is in `docs/compaction.md`.

use std::sync::Arc;

use strata_core::key::InternalKey;
use strata_core::{Error, Result};

use crate::file_meta::FileMeta;
use crate::version::{Version, NUM_LEVELS};
use crate::version_edit::VersionEdit;

/// The shape the tree is kept in. `Default` gives the issue's defaults: L0 compacts at 4
/// tables, L1 targets 256 MiB, each deeper level 10 times more, 64 MiB output tables, and an
/// output table stops growing once it overlaps 10 x 64 MiB of the level below its own.
///
/// ```
/// use strata_compaction::{level_target_bytes, CompactionConfig};
/// let config = CompactionConfig::default();
/// assert_eq!(level_target_bytes(&config, 1), 256 << 20);
/// assert_eq!(level_target_bytes(&config, 3), 100 * (256 << 20));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionConfig {
    /// Number of L0 tables at which L0 compacts into L1 (score 1.0). At least 1.
    pub l0_compaction_trigger: usize,
    /// Target size of L1 in bytes. At least 1.
    pub level_base_bytes: u64,
    /// Each level below L1 targets this many times the level above. At least 1.
    pub level_multiplier: u64,
    /// Compaction output is split into tables of about this size. At least 1.
    pub target_file_size: u64,
    /// An output table is closed once the tables of the level below its own (the
    /// "grandparents") that it overlaps add up to more than this, so that a later compaction
    /// of that table does not have to rewrite too much of the next level. A trivial move is
    /// refused above this overlap for the same reason.
    pub max_grandparent_overlap: u64,
    /// Upper bound on the input bytes of one manual compaction step at L1+ (the picker
    /// takes a prefix of the range's tables; the engine loops). L0 steps take every
    /// overlapping L0 table regardless, because they cannot be split. At least 1.
    pub max_manual_compaction_bytes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            l0_compaction_trigger: 4,
            level_base_bytes: 256 << 20,
            level_multiplier: 10,
            target_file_size: 64 << 20,
            max_grandparent_overlap: 10 * (64 << 20),
            max_manual_compaction_bytes: 25 * (64 << 20),
        }
    }
}

impl CompactionConfig {
    /// Rejects zero triggers, sizes and multipliers with [`Error::InvalidArgument`].
    pub fn validate(&self) -> Result<()> {
        let zero = [
            ("l0_compaction_trigger", self.l0_compaction_trigger as u64),
            ("level_base_bytes", self.level_base_bytes),
            ("level_multiplier", self.level_multiplier),
            ("target_file_size", self.target_file_size),
            ("max_manual_compaction_bytes", self.max_manual_compaction_bytes),
        ];
        for (name, value) in zero {
            if value == 0 {
                return Err(Error::InvalidArgument(format!(
                    "compaction option {name} must be > 0"
                )));
            }
        }
        Ok(())
    }
}

/// The target size in bytes of `level` (>= 1): `level_base_bytes * level_multiplier^(level-1)`,
/// saturating. L0 has no byte target (it is scored by table count); it returns
/// `level_base_bytes`.
pub fn level_target_bytes(config: &CompactionConfig, level: usize) -> u64 {
    let mut target = config.level_base_bytes;
    for _ in 1..level {
        target = target.saturating_mul(config.level_multiplier);
    }
    target
}

/// How urgently `level` needs compacting: `>= 1.0` means it must.
///
/// L0: table count / `l0_compaction_trigger` (L0 tables overlap, so every one costs each
/// read a lookup, whatever its size). L1+: level bytes / [`level_target_bytes`]. The last
/// level has nowhere to go and always scores 0.
///
/// ```
/// use strata_compaction::{level_score, CompactionConfig, Version};
/// let config = CompactionConfig::default();
/// assert_eq!(level_score(&config, &Version::default(), 0), 0.0);
/// ```
pub fn level_score(config: &CompactionConfig, version: &Version, level: usize) -> f64 {
    if level + 1 >= NUM_LEVELS {
        return 0.0;
    }
    if level == 0 {
        return version.num_files(0) as f64 / config.l0_compaction_trigger.max(1) as f64;
    }
    version.level_bytes(level) as f64 / level_target_bytes(config, level).max(1) as f64
}

/// Why a compaction was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionReason {
    /// L0 held `l0_compaction_trigger` tables or more.
    Level0FileCount,
    /// An L1+ level exceeded its target size.
    LevelSize,
    /// [`pick_manual`]: the user asked (`compact`, `compact_range`).
    Manual,
}

/// One compaction: tables of `level` (`inputs`) merged with the tables of `output_level` they
/// overlap (`overlapping`), written as new tables of `output_level`.
///
/// Produced by [`pick_compaction`] and [`pick_manual`]. Either installed as a
/// [trivial move](Compaction::is_trivial_move) with [`Compaction::trivial_move_edit`], or
/// run with [`crate::run_compaction`] and installed with [`Compaction::edit_for`].
#[derive(Debug, Clone)]
pub struct Compaction {
    /// The level compacted.
    pub level: usize,
    /// Where the output goes: `level + 1`.
    pub output_level: usize,
    /// The tables taken from `level` (L0: newest first; L1+: by key).
    pub inputs: Vec<Arc<FileMeta>>,
    /// The tables of `output_level` whose user-key range overlaps the inputs', by key.
    pub overlapping: Vec<Arc<FileMeta>>,
    /// The tables of `output_level + 1` overlapping the whole compaction's range, by key:
    /// they steer output splitting (see [`CompactionConfig::max_grandparent_overlap`]).
    pub grandparents: Vec<Arc<FileMeta>>,
    /// The score of `level` when picked (0 for manual compactions).
    pub score: f64,
    /// Why it was picked.
    pub reason: CompactionReason,
    /// The grandparent overlap limit of the config it was picked with.
    pub max_grandparent_overlap: u64,
    /// The output table size of the config it was picked with.
    pub target_file_size: u64,
}

impl Compaction {
    fn new(
        version: &Version,
        config: &CompactionConfig,
        level: usize,
        inputs: Vec<Arc<FileMeta>>,
        score: f64,
        reason: CompactionReason,
    ) -> Compaction {
        let output_level = level + 1;
        let (lo, hi) = user_range(&inputs);
        let overlapping = version.overlapping_files(output_level, &lo, &hi);
        let (lo, hi) = user_range(inputs.iter().chain(&overlapping));
        let grandparents = version.overlapping_files(output_level + 1, &lo, &hi);
        Compaction {
            level,
            output_level,
            inputs,
            overlapping,
            grandparents,
            score,
            reason,
            max_grandparent_overlap: config.max_grandparent_overlap,
            target_file_size: config.target_file_size,
        }
    }

    /// The numbers of every table the compaction reads (inputs, then overlapping).
    pub fn input_file_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.inputs.iter().chain(&self.overlapping).map(|f| f.number)
    }

    /// Every table the compaction reads with its level: `(level, table)`.
    pub fn all_inputs(&self) -> impl Iterator<Item = (usize, &Arc<FileMeta>)> + '_ {
        let inputs = self.inputs.iter().map(|f| (self.level, f));
        inputs.chain(self.overlapping.iter().map(|f| (self.output_level, f)))
    }

    /// Total size in bytes of the tables read.
    pub fn input_bytes(&self) -> u64 {
        self.all_inputs().map(|(_, f)| f.file_size).sum()
    }

    /// The smallest and largest user keys of everything read.
    pub fn user_key_range(&self) -> (Vec<u8>, Vec<u8>) {
        user_range(self.inputs.iter().chain(&self.overlapping))
    }

    /// Whether the compaction can be installed by moving its one input table to
    /// `output_level` unchanged ([`Compaction::trivial_move_edit`]), without reading or
    /// writing it: a single input, nothing overlapping in `output_level`, at most
    /// `max_grandparent_overlap` bytes of grandparents under it (so that it will not make a
    /// later compaction expensive), and not a manual compaction (those are asked for to drop
    /// tombstones and shadowed versions, which only a rewrite does). A table with
    /// tombstones is not moved into the last level either: there nothing lies below, so a
    /// rewrite can drop them.
    pub fn is_trivial_move(&self) -> bool {
        let [input] = self.inputs.as_slice() else { return false };
        self.reason != CompactionReason::Manual
            && self.overlapping.is_empty()
            && self.grandparents.iter().map(|f| f.file_size).sum::<u64>()
                <= self.max_grandparent_overlap
            && !(self.output_level + 1 == NUM_LEVELS && input.num_deletions > 0)
    }

    /// The edit installing a trivial move: each input deleted from `level` and added,
    /// unchanged (same number and file), to `output_level`; plus the compaction cursor.
    pub fn trivial_move_edit(&self) -> VersionEdit {
        let mut edit = VersionEdit::default();
        for f in &self.inputs {
            edit.deleted_files.push((self.level, f.number));
            edit.new_files.push((self.output_level, FileMeta::clone(f)));
        }
        self.set_cursor(&mut edit);
        edit
    }

    /// The edit installing a run of the compaction: every input and overlapping table
    /// deleted, `outputs` (from [`crate::CompactionOutput::files`]) added to `output_level`,
    /// and the compaction cursor of `level` advanced to the largest input key (L1+), so that
    /// the next pick at this level starts after it. Apply with [`Version::apply`] and log
    /// in the manifest as one edit; the engine keeps its cursors with
    /// [`apply_compact_pointers`].
    ///
    /// ```
    /// # use strata_compaction::{pick_compaction, CompactionConfig, FileMeta, Version, VersionEdit};
    /// # use strata_core::key::{InternalKey, ValueKind};
    /// # fn t(number: u64, lo: &[u8], hi: &[u8], seq: u64) -> FileMeta {
    /// #     FileMeta { number, file_size: 100, smallest: InternalKey::new(lo, seq, ValueKind::Put),
    /// #         largest: InternalKey::new(hi, seq, ValueKind::Put), smallest_seq: seq,
    /// #         largest_seq: seq, num_entries: 2, num_deletions: 0, global_seq: None, num_range_deletions: 0 }
    /// # }
    /// let mut edit = VersionEdit::default();
    /// edit.new_files.push((0, t(1, b"a", b"m", 1)));
    /// edit.new_files.push((0, t(2, b"c", b"z", 2)));
    /// edit.new_files.push((1, t(3, b"b", b"d", 0)));
    /// let version = Version::default().apply(&edit)?;
    /// let config = CompactionConfig { l0_compaction_trigger: 2, ..CompactionConfig::default() };
    /// let c = pick_compaction(&version, &config, &[]).expect("L0 is full");
    /// assert_eq!(c.input_file_numbers().collect::<Vec<_>>(), [2, 1, 3]);
    /// // ... run_compaction(...) writes table 4 ...
    /// let after = version.apply(&c.edit_for(&[t(4, b"a", b"z", 2)]))?;
    /// assert_eq!((after.num_files(0), after.num_files(1)), (0, 1));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn edit_for(&self, outputs: &[FileMeta]) -> VersionEdit {
        let mut edit = VersionEdit::default();
        for (level, f) in self.all_inputs() {
            edit.deleted_files.push((level, f.number));
        }
        for f in outputs {
            edit.new_files.push((self.output_level, f.clone()));
        }
        self.set_cursor(&mut edit);
        edit
    }

    fn set_cursor(&self, edit: &mut VersionEdit) {
        // L0 picks do not use a cursor (see pick_level0).
        if self.level == 0 {
            return;
        }
        if let Some(largest) = self.inputs.iter().map(|f| &f.largest).max() {
            edit.compact_pointers.push((self.level, largest.clone()));
        }
    }
}

/// Records the compaction cursors an edit carries into `cursors` (indexed by level), which
/// is what [`pick_compaction`] takes. The engine calls it after installing each edit, and
/// seeds `cursors` from `RecoveredState::compact_pointers` at open; when it rotates the
/// manifest it must copy the cursors into the snapshot edit (`Version::snapshot_edit` knows
/// only tables).
pub fn apply_compact_pointers(cursors: &mut [Option<InternalKey>], edit: &VersionEdit) {
    for (level, key) in &edit.compact_pointers {
        if let Some(slot) = cursors.get_mut(*level) {
            *slot = Some(key.clone());
        }
    }
}

/// Picks the compaction the tree needs most: the level with the highest [`level_score`],
/// if that is `>= 1.0`; `None` when every level is within its target.
///
/// * L0: the oldest L0 table, with every L0 table overlapping it, widened until no other L0
///   table overlaps the set's key range (so no newer L0 version of a key stays above an
///   older one moved down), plus the L1 tables overlapping that range.
/// * L1+: the first table after the level's cursor (`cursors[level]`, the largest key of the
///   previous compaction of that level; wraps to the first table), plus the tables of the
///   next level it overlaps. Round robin spreads the work over the key space.
///
/// `cursors` is indexed by level; missing entries count as `None`. The picker assumes it is
/// the only compaction running (the engine runs one at a time): it does not know which
/// tables another running compaction holds.
pub fn pick_compaction(
    version: &Version,
    config: &CompactionConfig,
    cursors: &[Option<InternalKey>],
) -> Option<Compaction> {
    let (level, score) = (0..NUM_LEVELS - 1)
        .map(|level| (level, level_score(config, version, level)))
        .fold(None, |best: Option<(usize, f64)>, (level, score)| match best {
            Some((_, s)) if s >= score => best,
            _ => Some((level, score)),
        })?;
    if score < 1.0 {
        return None;
    }
    if level == 0 {
        let seed = version.files(0).last()?;
        let inputs = level0_closure(version, seed.smallest_user_key(), seed.largest_user_key());
        return Some(Compaction::new(
            version,
            config,
            0,
            inputs,
            score,
            CompactionReason::Level0FileCount,
        ));
    }
    let files = version.files(level);
    let cursor = cursors.get(level).and_then(Option::as_ref);
    let chosen = cursor
        .and_then(|c| files.iter().find(|f| f.smallest_user_key() > c.user_key()))
        .or_else(|| files.first())?;
    Some(Compaction::new(
        version,
        config,
        level,
        vec![chosen.clone()],
        score,
        CompactionReason::LevelSize,
    ))
}

/// Picks one step of a manual compaction of the user keys `lo ..= hi` (`None` = unbounded)
/// at `level` into `level + 1`, or `None` when no table of `level` overlaps the range (or
/// `level` is the last level, which has nowhere to go).
///
/// * L0: every L0 table overlapping the range, widened like [`pick_compaction`]'s L0 pick.
/// * L1+: the level's tables overlapping the range, in key order, as long as they add up to
///   at most `max_manual_compaction_bytes` (at least one table).
///
/// Manual compactions are never trivial moves (see [`Compaction::is_trivial_move`]).
///
/// # How the engine drives `db.compact_range(lo, hi)` (and `db.compact()` = unbounded)
///
/// ```text
/// for level in 0..NUM_LEVELS - 1 {
///     while let Some(c) = pick_manual(&current_version(), level, lo, hi, &config) {
///         let out = run_compaction(&c, ...)?;   // never a trivial move
///         install(c.edit_for(&out.files))?;    // the inputs leave `level`
///     }
/// }
/// ```
///
/// Each step removes the tables it read from `level`, so the inner loop ends once no table
/// of `level` overlaps the range (new flushes into L0 may extend it; the engine may bound
/// the L0 step by running it once). When the outer loop ends, the range's data lives in the
/// last level only, rewritten once per level it passed, with shadowed versions and
/// tombstones dropped wherever no snapshot needs them.
///
/// ```
/// # use strata_compaction::{pick_manual, CompactionConfig, FileMeta, Version, VersionEdit};
/// # use strata_core::key::{InternalKey, ValueKind};
/// # fn t(number: u64, lo: &[u8], hi: &[u8]) -> FileMeta {
/// #     FileMeta { number, file_size: 100, smallest: InternalKey::new(lo, 1, ValueKind::Put),
/// #         largest: InternalKey::new(hi, 1, ValueKind::Put), smallest_seq: 1,
/// #         largest_seq: 1, num_entries: 2, num_deletions: 0, global_seq: None, num_range_deletions: 0 }
/// # }
/// let mut edit = VersionEdit::default();
/// edit.new_files.push((2, t(1, b"a", b"c")));
/// edit.new_files.push((2, t(2, b"d", b"f")));
/// edit.new_files.push((2, t(3, b"g", b"k")));
/// let version = Version::default().apply(&edit)?;
/// let c = pick_manual(&version, 2, Some(b"e"), Some(b"h"), &CompactionConfig::default()).unwrap();
/// assert_eq!(c.input_file_numbers().collect::<Vec<_>>(), [2, 3]);
/// assert!(!c.is_trivial_move());
/// assert!(pick_manual(&version, 1, None, None, &CompactionConfig::default()).is_none());
/// # Ok::<(), strata_core::Error>(())
/// ```
pub fn pick_manual(
    version: &Version,
    level: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    config: &CompactionConfig,
) -> Option<Compaction> {
    if level + 1 >= NUM_LEVELS {
        return None;
    }
    let in_range = |f: &&Arc<FileMeta>| {
        lo.is_none_or(|lo| f.largest_user_key() >= lo)
            && hi.is_none_or(|hi| f.smallest_user_key() <= hi)
    };
    let files: Vec<&Arc<FileMeta>> = version.files(level).iter().filter(in_range).collect();
    if files.is_empty() {
        return None;
    }
    let inputs = if level == 0 {
        let (lo, hi) = user_range(files.iter().copied());
        level0_closure(version, &lo, &hi)
    } else {
        let mut total = 0u64;
        let mut inputs = Vec::new();
        for f in files {
            total = total.saturating_add(f.file_size);
            if !inputs.is_empty() && total > config.max_manual_compaction_bytes {
                break;
            }
            inputs.push(f.clone());
        }
        inputs
    };
    Some(Compaction::new(version, config, level, inputs, 0.0, CompactionReason::Manual))
}

/// Every L0 table overlapping `lo ..= hi`, with the range widened to the tables taken until
/// no further L0 table overlaps it. L0 order (newest first) is kept.
fn level0_closure(version: &Version, lo: &[u8], hi: &[u8]) -> Vec<Arc<FileMeta>> {
    let (mut lo, mut hi) = (lo.to_vec(), hi.to_vec());
    loop {
        let files = version.overlapping_files(0, &lo, &hi);
        if files.is_empty() {
            return files;
        }
        let (new_lo, new_hi) = user_range(&files);
        let (new_lo, new_hi) = (new_lo.min(lo.clone()), new_hi.max(hi.clone()));
        if new_lo == lo && new_hi == hi {
            return files;
        }
        (lo, hi) = (new_lo, new_hi);
    }
}

/// The smallest and largest user keys of `files` (empty keys for no files).
fn user_range<'a>(files: impl IntoIterator<Item = &'a Arc<FileMeta>>) -> (Vec<u8>, Vec<u8>) {
    let mut range: Option<(&[u8], &[u8])> = None;
    for f in files {
        let (lo, hi) = (f.smallest_user_key(), f.largest_user_key());
        range = Some(match range {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }
    range.map_or((Vec::new(), Vec::new()), |(a, b)| (a.to_vec(), b.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_core::key::ValueKind;

    fn table(number: u64, lo: &[u8], hi: &[u8], seq: u64, size: u64) -> FileMeta {
        FileMeta {
            number,
            file_size: size,
            smallest: InternalKey::new(lo, seq, ValueKind::Put),
            largest: InternalKey::new(hi, seq, ValueKind::Put),
            smallest_seq: seq,
            largest_seq: seq,
            num_entries: 2,
            num_deletions: 0,
            global_seq: None,
            num_range_deletions: 0,
        }
    }

    fn version(files: &[(usize, FileMeta)]) -> Version {
        let mut edit = VersionEdit::default();
        edit.new_files.extend(files.iter().cloned());
        Version::default().apply(&edit).unwrap()
    }

    fn numbers(files: &[Arc<FileMeta>]) -> Vec<u64> {
        files.iter().map(|f| f.number).collect()
    }

    fn small_config() -> CompactionConfig {
        CompactionConfig {
            l0_compaction_trigger: 2,
            level_base_bytes: 1000,
            level_multiplier: 10,
            target_file_size: 100,
            max_grandparent_overlap: 1000,
            max_manual_compaction_bytes: 250,
        }
    }

    #[test]
    fn targets_and_scores() {
        let c = small_config();
        assert_eq!(level_target_bytes(&c, 1), 1000);
        assert_eq!(level_target_bytes(&c, 2), 10_000);
        assert_eq!(level_target_bytes(&c, 6), 100_000_000);
        let huge = CompactionConfig { level_multiplier: u64::MAX, ..c.clone() };
        assert_eq!(level_target_bytes(&huge, 6), u64::MAX);
        let v = version(&[
            (0, table(1, b"a", b"b", 9, 10)),
            (1, table(2, b"a", b"b", 1, 500)),
            (2, table(3, b"a", b"b", 1, 30_000)),
            (6, table(4, b"a", b"b", 1, u64::MAX / 2)),
        ]);
        assert_eq!(level_score(&c, &v, 0), 0.5);
        assert_eq!(level_score(&c, &v, 1), 0.5);
        assert_eq!(level_score(&c, &v, 2), 3.0);
        assert_eq!(level_score(&c, &v, 6), 0.0, "the last level never compacts");
        let picked = pick_compaction(&v, &c, &[]).unwrap();
        assert_eq!((picked.level, picked.output_level, picked.score), (2, 3, 3.0));
        assert_eq!(picked.reason, CompactionReason::LevelSize);
        assert!(CompactionConfig { level_base_bytes: 0, ..c }.validate().is_err());
    }

    #[test]
    fn l0_trigger_threshold() {
        let c = small_config();
        let one = version(&[(0, table(1, b"a", b"c", 1, 10))]);
        assert!(pick_compaction(&one, &c, &[]).is_none(), "1 of 2 tables: score 0.5");
        let two = version(&[(0, table(1, b"a", b"c", 1, 10)), (0, table(2, b"b", b"d", 2, 10))]);
        let picked = pick_compaction(&two, &c, &[]).unwrap();
        assert_eq!(picked.reason, CompactionReason::Level0FileCount);
        assert_eq!(numbers(&picked.inputs), [2, 1]);
        assert!(pick_compaction(&Version::default(), &c, &[]).is_none());
    }

    #[test]
    fn l0_pick_takes_overlap_closure_and_overlapping_l1() {
        let c = small_config();
        // Oldest L0 table 1 [c,e]; 2 [d,g] overlaps it, 3 [g,h] overlaps 2 only; 4 [x,z] is apart.
        let v = version(&[
            (0, table(1, b"c", b"e", 1, 10)),
            (0, table(2, b"d", b"g", 2, 10)),
            (0, table(3, b"g", b"h", 3, 10)),
            (0, table(4, b"x", b"z", 4, 10)),
            (1, table(10, b"a", b"b", 0, 10)),
            (1, table(11, b"b1", b"d", 0, 10)),
            (1, table(12, b"h", b"m", 0, 10)),
            (1, table(13, b"n", b"w", 0, 10)),
            (2, table(20, b"a", b"k", 0, 10)),
            (2, table(21, b"l", b"z", 0, 10)),
        ]);
        let picked = pick_compaction(&v, &c, &[]).unwrap();
        assert_eq!(numbers(&picked.inputs), [3, 2, 1]);
        assert_eq!(numbers(&picked.overlapping), [11, 12]);
        assert_eq!(numbers(&picked.grandparents), [20, 21]);
        assert!(!picked.is_trivial_move());
        assert!(picked.edit_for(&[]).compact_pointers.is_empty());
        let after = v.apply(&picked.edit_for(&[table(30, b"b1", b"m", 3, 10)])).unwrap();
        assert_eq!(numbers(after.files(0)), [4]);
        assert_eq!(numbers(after.files(1)), [10, 30, 13]);
    }

    #[test]
    fn round_robin_rotates_through_the_level() {
        let c = CompactionConfig { level_base_bytes: 10, ..small_config() };
        let v = version(&[
            (1, table(1, b"a", b"b", 1, 10)),
            (1, table(2, b"c", b"d", 1, 10)),
            (1, table(3, b"e", b"f", 1, 10)),
            (2, table(4, b"d", b"e", 1, 10)),
        ]);
        let mut cursors: Vec<Option<InternalKey>> = vec![None; NUM_LEVELS];
        let mut seen = Vec::new();
        for _ in 0..7 {
            let picked = pick_compaction(&v, &c, &cursors).unwrap();
            assert_eq!(picked.level, 1);
            seen.push(picked.inputs[0].number);
            let overlap = numbers(&picked.overlapping);
            assert_eq!(overlap.is_empty(), picked.inputs[0].number == 1);
            // Trivial moves also advance the cursor.
            let edit = if picked.is_trivial_move() {
                picked.trivial_move_edit()
            } else {
                picked.edit_for(&[])
            };
            apply_compact_pointers(&mut cursors, &edit);
        }
        assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn trivial_moves() {
        let c = CompactionConfig {
            level_base_bytes: 10,
            max_grandparent_overlap: 15,
            ..small_config()
        };
        // Table 1 overlaps nothing in L2 and 10 bytes of L3: a move.
        let v = version(&[
            (1, table(1, b"a", b"c", 1, 10)),
            (2, table(2, b"x", b"y", 1, 10)),
            (3, table(3, b"b", b"b", 1, 10)),
        ]);
        let picked = pick_compaction(&v, &c, &[]).unwrap();
        assert!(picked.is_trivial_move());
        let after = v.apply(&picked.trivial_move_edit()).unwrap();
        assert_eq!(numbers(after.files(2)), [1, 2]);
        assert_eq!(*after.files(2)[0], *v.files(1)[0]);
        // Too much grandparent overlap: rewrite.
        let v = version(&[
            (1, table(1, b"a", b"c", 1, 10)),
            (3, table(3, b"a", b"a", 1, 10)),
            (3, table(4, b"c", b"c", 1, 10)),
        ]);
        assert!(!pick_compaction(&v, &c, &[]).unwrap().is_trivial_move());
        // A single L0 table overlapping nothing moves too.
        let v = version(&[(0, table(1, b"a", b"c", 1, 10)), (0, table(2, b"d", b"e", 2, 10))]);
        let picked = pick_compaction(&v, &c, &[]).unwrap();
        assert_eq!(numbers(&picked.inputs), [1]);
        assert!(picked.is_trivial_move());
        // Tombstones are not moved into the last level.
        let mut with_deletes = table(1, b"a", b"c", 1, 10);
        with_deletes.num_deletions = 1;
        let v = version(&[(5, with_deletes)]);
        let c5 = CompactionConfig { level_base_bytes: 1, level_multiplier: 1, ..c };
        let picked = pick_compaction(&v, &c5, &[]).unwrap();
        assert_eq!(picked.output_level, 6);
        assert!(!picked.is_trivial_move());
    }

    #[test]
    fn manual_picks_cover_the_range_in_steps() {
        let c = small_config(); // max_manual_compaction_bytes 250
        let mut files = Vec::new();
        for i in 0..10u8 {
            files.push((1, table(u64::from(i) + 1, &[b'a' + 2 * i], &[b'a' + 2 * i + 1], 1, 100)));
        }
        files.push((0, table(50, b"a", b"b", 9, 10)));
        files.push((0, table(51, b"b", b"e", 10, 10)));
        files.push((0, table(52, b"x", b"z", 11, 10)));
        let mut v = version(&files);
        assert!(pick_manual(&v, 6, None, None, &c).is_none());
        assert!(pick_manual(&v, 3, None, None, &c).is_none());
        // L0 range [a, a] reaches table 51 through table 50.
        let picked = pick_manual(&v, 0, Some(b"a"), Some(b"a"), &c).unwrap();
        assert_eq!(numbers(&picked.inputs), [51, 50]);
        assert_eq!(numbers(&picked.overlapping), [1, 2, 3]);
        assert!(!picked.is_trivial_move());
        // L1 range [c, p]: tables 2..=8 ("cd" .. "op"), in steps of at most 250 bytes.
        let mut steps = Vec::new();
        let mut next_number = 100;
        while let Some(p) = pick_manual(&v, 1, Some(b"c"), Some(b"p"), &c) {
            assert_eq!(p.reason, CompactionReason::Manual);
            steps.push(numbers(&p.inputs));
            let (lo, hi) = p.user_key_range();
            next_number += 1;
            v = v.apply(&p.edit_for(&[table(next_number, &lo, &hi, 1, 100)])).unwrap();
        }
        assert_eq!(steps, [vec![2, 3], vec![4, 5], vec![6, 7], vec![8]]);
        assert_eq!(numbers(v.files(1)), [1, 9, 10]);
    }

    /// A random tree: (level, lo, span, size) per table; L1+ tables that would overlap are
    /// skipped.
    fn arb_version() -> impl Strategy<Value = Version> {
        proptest::collection::vec((0..NUM_LEVELS, 0u8..100, 0u8..20, 1u64..400), 0..40).prop_map(
            |specs| {
                let mut v = Version::default();
                for (i, (level, lo, span, size)) in specs.into_iter().enumerate() {
                    let hi = lo.saturating_add(span);
                    let mut edit = VersionEdit::default();
                    edit.new_files
                        .push((level, table(i as u64 + 1, &[lo], &[hi], i as u64 + 1, size)));
                    if let Ok(next) = v.apply(&edit) {
                        v = next;
                    }
                }
                v
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Every pick, installed with one output spanning its whole range (the widest output
        /// a run can make) or as a move, leaves a valid version; picks repeat until done.
        #[test]
        fn installed_picks_keep_the_version_valid(v in arb_version(), manual in any::<bool>(),
                                                 lo in 0u8..120, span in 0u8..60) {
            let c = CompactionConfig {
                l0_compaction_trigger: 2, level_base_bytes: 300, level_multiplier: 3,
                target_file_size: 100, max_grandparent_overlap: 300, max_manual_compaction_bytes: 500,
            };
            let mut v = v;
            let mut cursors = vec![None; NUM_LEVELS];
            let mut next_number = 1000;
            let hi = lo.saturating_add(span);
            let mut steps = 0;
            let mut level = 0;
            loop {
                steps += 1;
                prop_assert!(steps < 500, "picking does not converge");
                let picked = if manual {
                    match pick_manual(&v, level, Some(&[lo]), Some(&[hi]), &c) {
                        Some(p) => p,
                        None if level + 2 < NUM_LEVELS => { level += 1; continue; }
                        None => break,
                    }
                } else {
                    match pick_compaction(&v, &c, &cursors) { Some(p) => p, None => break }
                };
                prop_assert!(picked.score >= 1.0 || manual);
                prop_assert_eq!(picked.output_level, picked.level + 1);
                // Everything of the output level overlapping the inputs is taken.
                let (ilo, ihi) = user_range(&picked.inputs);
                prop_assert_eq!(numbers(&picked.overlapping), numbers(&v.overlapping_files(picked.output_level, &ilo, &ihi)));
                if picked.level == 0 {
                    // No L0 table left behind overlaps the L0 inputs.
                    for f in v.files(0) {
                        if !picked.inputs.iter().any(|i| i.number == f.number) {
                            prop_assert!(!f.overlaps_user_range(&ilo, &ihi));
                        }
                    }
                }
                let edit = if picked.is_trivial_move() {
                    picked.trivial_move_edit()
                } else {
                    let (lo, hi) = picked.user_key_range();
                    let seq = picked.all_inputs().map(|(_, f)| f.largest_seq).max().unwrap_or(0);
                    let size = picked.input_bytes().max(1);
                    next_number += 1;
                    picked.edit_for(&[table(next_number, &lo, &hi, seq, size)])
                };
                apply_compact_pointers(&mut cursors, &edit);
                v = v.apply(&edit).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(v.check_invariants(), Ok(()));
            }
            if !manual {
                for level in 0..NUM_LEVELS {
                    prop_assert!(level_score(&c, &v, level) < 1.0);
                }
            } else {
                for level in 0..NUM_LEVELS - 1 {
                    prop_assert!(v.overlapping_files(level, &[lo], &[hi]).is_empty());
                }
            }
        }
    }
}
