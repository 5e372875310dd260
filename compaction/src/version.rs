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
///         smallest_seq: seq, largest_seq: seq, num_entries: 2, num_deletions: 0,
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
                files.sort_by(|a, b| {
                    (b.largest_seq, b.number).cmp(&(a.largest_seq, a.number))
                });
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
        let l0 = self.files(0).iter().filter(move |f| f.contains_user_key(user_key)).map(|f| (0, f));
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
