//! [`Version`]: the immutable set of live tables per level at one point in the tree's history.

use std::collections::HashSet;
use std::sync::Arc;

use strata_core::{Error, Result};

use crate::file_meta::FileMeta;
use crate::version_edit::VersionEdit;

/// Number of levels of the tree: L0 (flushed memtables, overlapping) and L1 to L6.
pub const NUM_LEVELS: usize = 7;

/// The live tables of the tree, per level. Immutable: [`Version::apply`] makes a new one, so
/// readers keep using the `Arc<Version>` they started with while the tree changes.
///
/// Invariants (checked by [`Version::check_invariants`], after every `apply` in debug builds):
/// * L0 tables may overlap; they are ordered newest first, by `largest_seq` then `number`,
///   both descending, so that a read finds the newest version of a key first.
/// * In L1 and deeper, tables are sorted by smallest key and their user-key ranges are
///   disjoint (no user key spans two tables of one level), so at most one table per level can
///   hold a given key.
/// * A file number appears at most once in the whole version.
///
/// ```
/// use strata_compaction::{FileMeta, Version, VersionEdit};
/// use strata_core::key::{InternalKey, ValueKind};
/// fn table(number: u64, lo: &[u8], hi: &[u8], seq: u64) -> FileMeta {
///     FileMeta {
///         number, file_size: 100,
///         smallest: InternalKey::new(lo, seq, ValueKind::Put),
///         largest: InternalKey::new(hi, seq, ValueKind::Put),
///         smallest_seq: seq, largest_seq: seq, num_entries: 2, num_deletions: 0, global_seq: None,
///         num_range_deletions: 0,
///     }
/// }
/// let mut edit = VersionEdit::default();
/// edit.new_files.push((0, table(9, b"c", b"k", 20)));
/// edit.new_files.push((1, table(4, b"a", b"f", 5)));
/// edit.new_files.push((1, table(5, b"g", b"p", 6)));
/// let v = Version::default().apply(&edit)?;
/// let order: Vec<(usize, u64)> = v.files_for_get(b"h").map(|(l, f)| (l, f.number)).collect();
/// assert_eq!(order, [(0, 9), (1, 5)]);
/// assert_eq!(v.level_bytes(1), 200);
///
/// let mut compaction = VersionEdit::default();
/// compaction.deleted_files.push((0, 9));
/// assert!(v.apply(&compaction)?.files(0).is_empty());
/// assert!(v.apply(&compaction)?.apply(&compaction).is_err()); // already gone
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    levels: [Vec<Arc<FileMeta>>; NUM_LEVELS],
}

impl Version {
    /// The version `edit` makes of this one: its deletions are applied first, then its
    /// additions (so one edit can move a table between levels).
    ///
    /// Fails with [`Error::InvalidArgument`] — and leaves `self` as it was — when the edit
    /// deletes a table that is not at that level, adds a file number that is live (or adds
    /// it twice), adds a table with malformed or reversed bounds, or would make a level of
    /// L1+ overlap. From the engine that is a bug; when replaying a manifest the caller
    /// reports it as corruption of that manifest.
    pub fn apply(&self, edit: &VersionEdit) -> Result<Version> {
        let mut levels = self.levels.clone();
        let mut changed = [false; NUM_LEVELS];
        for &(level, number) in &edit.deleted_files {
            let files = levels.get_mut(level).ok_or_else(|| bad_level(level))?;
            let pos = files.iter().position(|f| f.number == number).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "version edit deletes table {number} which is not in L{level}"
                ))
            })?;
            files.remove(pos);
            changed[level] = true;
        }
        let mut live: HashSet<u64> = levels.iter().flatten().map(|f| f.number).collect();
        for (level, meta) in &edit.new_files {
            let files = levels.get_mut(*level).ok_or_else(|| bad_level(*level))?;
            meta.validate().map_err(Error::InvalidArgument)?;
            if !live.insert(meta.number) {
                return Err(Error::InvalidArgument(format!(
                    "version edit adds table {} to L{level} but that number is already live",
                    meta.number
                )));
            }
            files.push(Arc::new(meta.clone()));
            changed[*level] = true;
        }
        for (level, files) in levels.iter_mut().enumerate() {
            if !changed[level] {
                continue;
            }
            if level == 0 {
                // Newest first: a read must see the latest version of a key before older ones.
                files.sort_by_key(|f| std::cmp::Reverse((f.largest_seq, f.number)));
            } else {
                files.sort_by(|a, b| a.smallest.cmp(&b.smallest));
                check_disjoint(level, files).map_err(Error::InvalidArgument)?;
            }
        }
        let version = Version { levels };
        #[cfg(debug_assertions)]
        if let Err(e) = version.check_invariants() {
            panic!("Version::apply produced a version breaking its invariants: {e}");
        }
        Ok(version)
    }

    /// Verifies every invariant listed on [`Version`]; the message names the first violation.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let mut seen = HashSet::new();
        for (level, files) in self.levels.iter().enumerate() {
            for f in files {
                f.validate()?;
                if !seen.insert(f.number) {
                    return Err(format!("table {} is live twice (again in L{level})", f.number));
                }
            }
            if level == 0 {
                for pair in files.windows(2) {
                    if let [a, b] = pair {
                        if (a.largest_seq, a.number) < (b.largest_seq, b.number) {
                            return Err(format!(
                                "L0 table {} is ordered before newer table {}",
                                a.number, b.number
                            ));
                        }
                    }
                }
            } else {
                for pair in files.windows(2) {
                    if let [a, b] = pair {
                        if a.smallest > b.smallest {
                            return Err(format!(
                                "L{level} table {} is ordered before table {} with a smaller key",
                                a.number, b.number
                            ));
                        }
                    }
                }
                check_disjoint(level, files)?;
            }
        }
        Ok(())
    }

    /// The tables of `level` (L0 newest first; deeper levels by key). Empty for a level
    /// `>= NUM_LEVELS`.
    pub fn files(&self, level: usize) -> &[Arc<FileMeta>] {
        self.levels.get(level).map_or(&[], Vec::as_slice)
    }

    /// The number of tables in `level`.
    pub fn num_files(&self, level: usize) -> usize {
        self.files(level).len()
    }

    /// The total size in bytes of the tables in `level`.
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.files(level).iter().map(|f| f.file_size).sum()
    }

    /// The tables of `level` whose user-key range intersects `smallest_user_key ..=
    /// largest_user_key`, in the level's order. For L0 this is every intersecting table (the
    /// range is not widened to the tables' own ranges); deeper levels use binary search.
    pub fn overlapping_files(
        &self,
        level: usize,
        smallest_user_key: &[u8],
        largest_user_key: &[u8],
    ) -> Vec<Arc<FileMeta>> {
        let files = self.files(level);
        if level == 0 {
            return files
                .iter()
                .filter(|f| f.overlaps_user_range(smallest_user_key, largest_user_key))
                .cloned()
                .collect();
        }
        let start = files.partition_point(|f| f.largest_user_key() < smallest_user_key);
        files
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|f| f.smallest_user_key() <= largest_user_key)
            .cloned()
            .collect()
    }

    /// The tables that may hold `user_key`, in the order a point read must consult them:
    /// every L0 table whose range contains the key, newest first, then at most one table per
    /// deeper level, shallowest first. Yields `(level, table)`.
    pub fn files_for_get<'a>(
        &'a self,
        user_key: &'a [u8],
    ) -> impl Iterator<Item = (usize, &'a Arc<FileMeta>)> + 'a {
        let l0 =
            self.files(0).iter().filter(move |f| f.contains_user_key(user_key)).map(|f| (0, f));
        let deeper = (1..NUM_LEVELS).filter_map(move |level| {
            let files = self.files(level);
            let i = files.partition_point(|f| f.largest_user_key() < user_key);
            files.get(i).filter(|f| f.smallest_user_key() <= user_key).map(|f| (level, f))
        });
        l0.chain(deeper)
    }

    /// The numbers of every live table, level by level.
    pub fn live_file_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.levels.iter().flatten().map(|f| f.number)
    }

    /// An edit that builds this version from an empty one: every table as a new file. The
    /// caller sets the counters before writing it as the first record of a new manifest.
    pub fn snapshot_edit(&self) -> VersionEdit {
        let mut edit = VersionEdit::default();
        for (level, files) in self.levels.iter().enumerate() {
            edit.new_files.extend(files.iter().map(|f| (level, FileMeta::clone(f))));
        }
        edit
    }
}

fn bad_level(level: usize) -> Error {
    Error::InvalidArgument(format!("version edit names level {level} >= {NUM_LEVELS}"))
}

/// Checks that consecutive tables of a sorted L1+ level share no user key.
fn check_disjoint(level: usize, files: &[Arc<FileMeta>]) -> std::result::Result<(), String> {
    for pair in files.windows(2) {
        if let [a, b] = pair {
            if a.largest_user_key() >= b.smallest_user_key() {
                return Err(format!(
                    "L{level} tables {} and {} overlap: {:?} >= {:?}",
                    a.number, b.number, a.largest, b.smallest
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use strata_core::key::{InternalKey, ValueKind};

    fn table(number: u64, lo: u8, hi: u8, seq: u64) -> FileMeta {
        FileMeta {
            number,
            file_size: 10 + number,
            smallest: InternalKey::new(&[lo], seq, ValueKind::Put),
            largest: InternalKey::new(&[hi], seq, ValueKind::Put),
            smallest_seq: seq,
            largest_seq: seq,
            num_entries: 1,
            num_deletions: 0,
            global_seq: None,
            num_range_deletions: 0,
        }
    }

    /// An abstract step; the model turns it into a valid (or deliberately invalid) edit.
    #[derive(Debug, Clone)]
    enum Step {
        Flush { lo: u8, span: u8 },
        Compact { level: usize, pick: usize },
        Move { level: usize, pick: usize },
        DeleteMissing { level: usize, number: u64 },
        AddDuplicate { pick: usize, level: usize },
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..60, 0u8..20).prop_map(|(lo, span)| Step::Flush { lo, span }),
            3 => (0..NUM_LEVELS - 1, any::<usize>()).prop_map(|(level, pick)| Step::Compact { level, pick }),
            1 => (0..NUM_LEVELS - 1, any::<usize>()).prop_map(|(level, pick)| Step::Move { level, pick }),
            1 => (0..NUM_LEVELS, 0u64..200).prop_map(|(level, number)| Step::DeleteMissing { level, number }),
            1 => (any::<usize>(), 0..NUM_LEVELS).prop_map(|(pick, level)| Step::AddDuplicate { pick, level }),
        ]
    }

    /// The model: level -> set of file numbers, and every table's (lo, hi, seq).
    #[derive(Default)]
    struct Model {
        levels: BTreeMap<usize, BTreeSet<u64>>,
        meta: BTreeMap<u64, (u8, u8, u64)>,
        next_number: u64,
        next_seq: u64,
    }

    impl Model {
        fn level(&self, level: usize) -> Vec<u64> {
            self.levels.get(&level).map(|s| s.iter().copied().collect()).unwrap_or_default()
        }
        fn overlapping(&self, level: usize, lo: u8, hi: u8) -> Vec<u64> {
            self.level(level)
                .into_iter()
                .filter(|n| {
                    let (a, b, _) = self.meta[n];
                    a <= hi && lo <= b
                })
                .collect()
        }
        fn meta_of(&self, n: u64) -> FileMeta {
            let (lo, hi, seq) = self.meta[&n];
            table(n, lo, hi, seq)
        }
        /// Expected read order for a key, computed by brute force.
        fn read_order(&self, key: u8) -> Vec<(usize, u64)> {
            let mut l0: Vec<u64> = self.overlapping(0, key, key);
            l0.sort_by_key(|n| std::cmp::Reverse((self.meta[n].2, *n)));
            let mut out: Vec<(usize, u64)> = l0.into_iter().map(|n| (0, n)).collect();
            for level in 1..NUM_LEVELS {
                let hits = self.overlapping(level, key, key);
                assert!(hits.len() <= 1);
                out.extend(hits.into_iter().map(|n| (level, n)));
            }
            out
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn apply_matches_model(steps in proptest::collection::vec(arb_step(), 1..60)) {
            let mut model = Model { next_number: 1, next_seq: 1, ..Model::default() };
            let mut version = Version::default();
            for step in steps {
                let mut edit = VersionEdit::default();
                let mut valid = true;
                let mut adds = Vec::new(); // (level, number, lo, hi, seq)
                let mut dels = Vec::new(); // (level, number)
                match step {
                    Step::Flush { lo, span } => {
                        let hi = lo.saturating_add(span);
                        adds.push((0, model.next_number, lo, hi, model.next_seq));
                        model.next_number += 1;
                        model.next_seq += 1;
                    }
                    Step::Compact { level, pick } => {
                        let files = model.level(level);
                        if files.is_empty() { continue; }
                        let first = files[pick % files.len()];
                        let (lo, hi, _) = model.meta[&first];
                        let mut inputs = vec![(level, first)];
                        let (mut lo2, mut hi2) = (lo, hi);
                        for n in model.overlapping(level + 1, lo, hi) {
                            let (a, b, _) = model.meta[&n];
                            lo2 = lo2.min(a);
                            hi2 = hi2.max(b);
                            inputs.push((level + 1, n));
                        }
                        // The output covers the union, so it overlaps nothing else below.
                        for n in model.overlapping(level + 1, lo2, hi2) {
                            if !inputs.contains(&(level + 1, n)) {
                                let (a, b, _) = model.meta[&n];
                                lo2 = lo2.min(a);
                                hi2 = hi2.max(b);
                                inputs.push((level + 1, n));
                            }
                        }
                        let seq = inputs.iter().map(|(_, n)| model.meta[n].2).max().unwrap_or(0);
                        dels = inputs;
                        adds.push((level + 1, model.next_number, lo2, hi2, seq));
                        model.next_number += 1;
                    }
                    Step::Move { level, pick } => {
                        let files = model.level(level);
                        if files.is_empty() { continue; }
                        let n = files[pick % files.len()];
                        let (lo, hi, seq) = model.meta[&n];
                        valid = model.overlapping(level + 1, lo, hi).is_empty();
                        dels.push((level, n));
                        adds.push((level + 1, n, lo, hi, seq));
                    }
                    Step::DeleteMissing { level, number } => {
                        valid = model.level(level).contains(&number);
                        dels.push((level, number));
                    }
                    Step::AddDuplicate { pick, level } => {
                        let all: Vec<u64> = model.meta.keys().copied().collect();
                        if all.is_empty() { continue; }
                        let n = all[pick % all.len()];
                        let (lo, hi, seq) = model.meta[&n];
                        valid = false;
                        adds.push((level, n, lo, hi, seq));
                    }
                }
                for &(level, n) in &dels {
                    edit.deleted_files.push((level, n));
                }
                for &(level, n, lo, hi, seq) in &adds {
                    edit.new_files.push((level, table(n, lo, hi, seq)));
                }
                let result = version.apply(&edit);
                prop_assert_eq!(result.is_ok(), valid, "edit {:?}", edit);
                if let Ok(next) = result {
                    for (level, n) in dels {
                        model.levels.entry(level).or_default().remove(&n);
                        model.meta.remove(&n);
                    }
                    for (level, n, lo, hi, seq) in adds {
                        model.levels.entry(level).or_default().insert(n);
                        model.meta.insert(n, (lo, hi, seq));
                    }
                    version = next;
                }
                prop_assert_eq!(version.check_invariants(), Ok(()));
                for level in 0..NUM_LEVELS {
                    let mut got: Vec<u64> = version.files(level).iter().map(|f| f.number).collect();
                    got.sort_unstable();
                    prop_assert_eq!(got, model.level(level));
                    for f in version.files(level) {
                        prop_assert_eq!(&**f, &model.meta_of(f.number));
                    }
                    let bytes: u64 = model.level(level).iter().map(|n| 10 + n).sum();
                    prop_assert_eq!(version.level_bytes(level), bytes);
                }
                let mut live: Vec<u64> = version.live_file_numbers().collect();
                live.sort_unstable();
                prop_assert_eq!(live, model.meta.keys().copied().collect::<Vec<_>>());
                for key in (0u8..90).step_by(7) {
                    let got: Vec<(usize, u64)> =
                        version.files_for_get(&[key]).map(|(l, f)| (l, f.number)).collect();
                    prop_assert_eq!(got, model.read_order(key));
                }
                for (lo, hi) in [(0u8, 255u8), (10, 20), (35, 35), (70, 90)] {
                    for level in 0..NUM_LEVELS {
                        let got: BTreeSet<u64> =
                            version.overlapping_files(level, &[lo], &[hi]).iter().map(|f| f.number).collect();
                        let want: BTreeSet<u64> = model.overlapping(level, lo, hi).into_iter().collect();
                        prop_assert_eq!(got, want);
                    }
                }
                let rebuilt = Version::default().apply(&version.snapshot_edit()).ok();
                prop_assert_eq!(rebuilt.as_ref(), Some(&version));
            }
        }
    }

    #[test]
    fn l0_read_order_is_newest_first_with_ties_broken_by_number() {
        let mut edit = VersionEdit::default();
        edit.new_files.push((0, table(3, 0, 9, 5)));
        edit.new_files.push((0, table(8, 0, 9, 5)));
        edit.new_files.push((0, table(2, 0, 9, 7)));
        edit.new_files.push((0, table(4, 5, 9, 9)));
        edit.new_files.push((2, table(1, 0, 3, 1)));
        let v = Version::default().apply(&edit).unwrap();
        let order: Vec<(usize, u64)> = v.files_for_get(&[2]).map(|(l, f)| (l, f.number)).collect();
        assert_eq!(order, [(0, 2), (0, 8), (0, 3), (2, 1)]);
        let all: Vec<u64> = v.files(0).iter().map(|f| f.number).collect();
        assert_eq!(all, [4, 2, 8, 3]);
    }

    #[test]
    fn rejected_edits_leave_the_version_unchanged() {
        let mut edit = VersionEdit::default();
        edit.new_files.push((1, table(1, 0, 9, 1)));
        let v = Version::default().apply(&edit).unwrap();

        let mut overlap = VersionEdit::default();
        overlap.new_files.push((1, table(2, 9, 12, 2)));
        assert!(v.apply(&overlap).unwrap_err().to_string().contains("overlap"));

        let mut reversed = VersionEdit::default();
        reversed.new_files.push((2, table(3, 9, 1, 2)));
        assert!(v.apply(&reversed).is_err());

        let mut twice = VersionEdit::default();
        twice.deleted_files.extend([(1, 1), (1, 1)]);
        assert!(v.apply(&twice).is_err());

        let mut bad_level = VersionEdit::default();
        bad_level.new_files.push((NUM_LEVELS, table(4, 0, 1, 1)));
        assert!(v.apply(&bad_level).is_err());
        assert_eq!(v.num_files(1), 1);
        assert!(v.files(NUM_LEVELS).is_empty());
    }

    #[test]
    fn same_user_key_across_l1_tables_is_an_overlap() {
        let mut edit = VersionEdit::default();
        edit.new_files.push((1, table(1, 0, 5, 9)));
        edit.new_files.push((1, table(2, 5, 7, 3)));
        assert!(Version::default().apply(&edit).is_err());
    }
}
