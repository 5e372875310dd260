//! [`run_compaction`]: merges a compaction's input tables into new output tables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::fs::FileSystem;
use strata_core::iter::InternalIterator;
use strata_core::key::{parse_internal_key, SeqNo};
use strata_core::merge::MergingIterator;
use strata_core::range_del::{inclusive_end, successor, RangeTombstone, RangeTombstones};
use strata_core::{Error, IoResultExt, Result};
use strata_sstable::{TableBuilder, TableOptions};

use crate::file_meta::FileMeta;
use crate::file_name::table_file_name;
use crate::picker::Compaction;
use crate::rate_limiter::RateLimiter;
use crate::retention::{Retention, Verdict};
use crate::version::{Version, NUM_LEVELS};

/// Output bytes charged to the rate limiter at a time.
const RATE_LIMIT_CHUNK: u64 = 64 << 10;
/// Entries between two checks of `should_stop`.
const STOP_CHECK_INTERVAL: u64 = 1024;

/// What [`run_compaction`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionOutput {
    /// The new tables, in key order, for [`Compaction::edit_for`]. Each is fdatasynced and
    /// its directory entry is durable. Empty if every input version was dropped.
    pub files: Vec<FileMeta>,
    /// Total size of the input tables (from their metadata).
    pub bytes_read: u64,
    /// Total size of the output tables.
    pub bytes_written: u64,
    /// Versions read from the inputs.
    pub entries_read: u64,
    /// Versions written.
    pub entries_written: u64,
    /// Versions dropped (shadowed versions and tombstones).
    pub entries_dropped: u64,
    /// Of `entries_dropped`, tombstones dropped because nothing below needed them.
    pub tombstones_dropped: u64,
    /// Of `entries_dropped`, versions deleted by a range tombstone that every reader who
    /// could see them also sees.
    pub covered_dropped: u64,
    /// Range tombstone parts written to the outputs (one tombstone cut at an output
    /// boundary counts once per output).
    pub range_tombstones_written: u64,
    /// Range tombstones (fragments) dropped at the bottom: every reader sees them and no
    /// level below holds a key they cover.
    pub range_tombstones_dropped: u64,
}

/// Everything [`run_compaction`] needs besides the compaction and its input iterators.
///
/// ```
/// # use std::path::Path;
/// # use strata_compaction::CompactionContext;
/// # use strata_core::sim::SimFileSystem;
/// # use strata_sstable::TableOptions;
/// let fs = SimFileSystem::new();
/// let mut next = 100;
/// let mut numbers = || { next += 1; next };
/// let never = || false;
/// let ctx = CompactionContext {
///     snapshots: &[],
///     horizon: 42,
///     range_tombstones: &Default::default(),
///     fs: &fs,
///     dir: Path::new("/db"),
///     table_options: &TableOptions::default(),
///     new_file_number: &mut numbers,
///     rate_limiter: None,
///     should_stop: &never,
/// };
/// # let _ = ctx;
/// ```
pub struct CompactionContext<'a> {
    /// Sequence numbers of the live snapshots, ascending.
    pub snapshots: &'a [SeqNo],
    /// The visible sequence number when the compaction started: every version newer than
    /// it is kept, and a reader at it must see the same data afterwards.
    pub horizon: SeqNo,
    /// The range tombstones of the input tables: versions they delete for every reader are
    /// dropped, and they are carried to the outputs (cut at output boundaries) unless they
    /// are dropped at the bottom.
    pub range_tombstones: &'a RangeTombstones,
    /// Where the output tables are written.
    pub fs: &'a dyn FileSystem,
    /// The database directory (outputs are `dir/{number:06}.sst`).
    pub dir: &'a Path,
    /// How the output tables are built.
    pub table_options: &'a TableOptions,
    /// Allocates the number of the next output table. The engine registers it as a pending
    /// output (so its cleanup does not delete the file) before returning it; the file is
    /// created right after the call.
    pub new_file_number: &'a mut dyn FnMut() -> u64,
    /// Paces output writes, if set.
    pub rate_limiter: Option<&'a RateLimiter>,
    /// Polled every few thousand entries and between outputs; `true` (engine shutdown)
    /// abandons the compaction.
    pub should_stop: &'a dyn Fn() -> bool,
}

/// Runs `compaction`: merges `inputs` (the engine opens them: one iterator per L0 table,
/// and for a sorted level one per table or one concatenating iterator — any split works),
/// drops what no reader can see, and writes the rest as new tables of the output level.
///
/// What is dropped (see `docs/compaction.md`): with readers at the `snapshots` and at or
/// after `horizon`, a version is dropped when a newer version of the same key lies in the
/// same snapshot stripe, and a tombstone when every reader sees it and no level below
/// `compaction.output_level` in `version` holds a table whose range contains its key.
/// `version` must be the version the compaction was picked from (or one with the same
/// levels below the output level).
///
/// Outputs are split when a table reaches the target file size, or when it overlaps more
/// than the grandparent limit of the level below the output; never between two versions of
/// one user key, so the outputs are sorted and have disjoint user-key ranges.
///
/// Durability: each output is fdatasynced by `TableBuilder::finish`, and the directory is
/// fsynced once after the last output, before returning, so the engine may name the
/// outputs in the manifest right away.
///
/// Errors: on any error (input corruption, I/O, a failed fsync) every output created is
/// removed (best effort) and the error is returned; the engine keeps the old version.
/// When `should_stop` returns true, outputs are removed likewise and [`Error::Closed`] is
/// returned. The engine should not treat `Closed` as a reason to poison itself.
///
/// ```
/// # use std::path::Path;
/// # use std::sync::Arc;
/// # use strata_compaction::*;
/// # use strata_core::fs::FileSystem;
/// # use strata_core::iter::{InternalIterator, VecIterator};
/// # use strata_core::key::{InternalKey, ValueKind};
/// # use strata_core::sim::SimFileSystem;
/// # use strata_sstable::TableOptions;
/// # fn t(number: u64, lo: &[u8], hi: &[u8], seq: u64) -> FileMeta {
/// #     FileMeta { number, file_size: 100, smallest: InternalKey::new(lo, seq, ValueKind::Put),
/// #         largest: InternalKey::new(hi, seq, ValueKind::Put), smallest_seq: seq,
/// #         largest_seq: seq, num_entries: 2, num_deletions: 0, global_seq: None, num_range_deletions: 0 }
/// # }
/// let fs = SimFileSystem::new();
/// fs.create_dir_all(Path::new("/db"))?;
/// let mut edit = VersionEdit::default();
/// edit.new_files.push((0, t(1, b"a", b"b", 1)));
/// edit.new_files.push((0, t(2, b"a", b"b", 2)));
/// let version = Version::default().apply(&edit)?;
/// let config = CompactionConfig { l0_compaction_trigger: 2, ..Default::default() };
/// let c = pick_compaction(&version, &config, &[]).unwrap();
///
/// let put = |k: &[u8], seq| InternalKey::new(k, seq, ValueKind::Put).into_encoded();
/// let del = |k: &[u8], seq| InternalKey::new(k, seq, ValueKind::Delete).into_encoded();
/// let inputs: Vec<Box<dyn InternalIterator>> = vec![
///     Box::new(VecIterator::new(vec![(del(b"a", 2), vec![]), (put(b"b", 2), b"new".to_vec())])),
///     Box::new(VecIterator::new(vec![(put(b"a", 1), b"x".to_vec()), (put(b"b", 1), b"old".to_vec())])),
/// ];
/// let mut next = 2;
/// let out = run_compaction(&c, inputs, &version, CompactionContext {
///     snapshots: &[], horizon: 2, range_tombstones: &Default::default(), fs: &fs, dir: Path::new("/db"),
///     table_options: &TableOptions::default(),
///     new_file_number: &mut || { next += 1; next },
///     rate_limiter: None, should_stop: &|| false,
/// })?;
/// // "a" is deleted and nothing lies below L1; "b" keeps only its newest version.
/// assert_eq!(out.files.len(), 1);
/// assert_eq!((out.entries_written, out.entries_dropped, out.tombstones_dropped), (1, 3, 1));
/// let after = version.apply(&c.edit_for(&out.files))?;
/// assert_eq!(after.files(1)[0].number, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_compaction(
    compaction: &Compaction,
    inputs: Vec<Box<dyn InternalIterator>>,
    version: &Version,
    ctx: CompactionContext<'_>,
) -> Result<CompactionOutput> {
    let CompactionContext {
        snapshots,
        horizon,
        range_tombstones,
        fs,
        dir,
        table_options,
        new_file_number,
        rate_limiter,
        should_stop,
    } = ctx;
    let mut writer = OutputWriter {
        fs,
        dir,
        table_options,
        new_file_number,
        rate_limiter,
        current: None,
        finished: Vec::new(),
        uncharged: 0,
        tombstones: Vec::new(),
        lower: None,
        last_user_key: Vec::new(),
    };
    let mut output =
        CompactionOutput { bytes_read: compaction.input_bytes(), ..Default::default() };
    let retention = Retention::new(snapshots, horizon);
    writer.tombstones =
        surviving_tombstones(range_tombstones, &retention, version, compaction, &mut output);
    let result = merge_into(
        compaction,
        inputs,
        version,
        retention,
        range_tombstones,
        should_stop,
        &mut writer,
        &mut output,
    );
    match result.and_then(|()| writer.finish_all()) {
        Ok(files) => {
            output.bytes_written = files.iter().map(|f| f.file_size).sum();
            output.range_tombstones_written = files.iter().map(|f| f.num_range_deletions).sum();
            output.files = files;
            Ok(output)
        }
        Err(e) => {
            writer.abandon_all();
            Err(e)
        }
    }
}

/// The range tombstones the outputs carry: all of the inputs' but those every reader sees
/// (stripe 0) with no level below the output holding a key they cover — the versions they
/// delete are dropped by this compaction, so nothing is left for them to hide.
fn surviving_tombstones(
    tombstones: &RangeTombstones,
    retention: &Retention,
    version: &Version,
    compaction: &Compaction,
    output: &mut CompactionOutput,
) -> Vec<RangeTombstone> {
    let mut keep = Vec::new();
    for t in tombstones.iter() {
        let below = (compaction.output_level + 1..NUM_LEVELS).any(|level| {
            !version.overlapping_files(level, &t.start, inclusive_end(&t.end)).is_empty()
        });
        if retention.seen_by_all(t.seq) && !below {
            output.range_tombstones_dropped += 1;
        } else {
            keep.push(t);
        }
    }
    keep
}

#[allow(clippy::too_many_arguments)]
fn merge_into(
    compaction: &Compaction,
    inputs: Vec<Box<dyn InternalIterator>>,
    version: &Version,
    mut retention: Retention,
    range_tombstones: &RangeTombstones,
    should_stop: &dyn Fn() -> bool,
    writer: &mut OutputWriter<'_>,
    output: &mut CompactionOutput,
) -> Result<()> {
    let mut merged = MergingIterator::new(inputs);
    let mut below = LevelsBelow::new(version, compaction.output_level);
    let mut splitter = Splitter::new(&compaction.grandparents, compaction.max_grandparent_overlap);
    // The user key of the last version read; a split may only happen before a new one.
    let mut last_user_key: Option<Vec<u8>> = None;
    merged.seek_to_first();
    while merged.valid() {
        if output.entries_read.is_multiple_of(STOP_CHECK_INTERVAL) && should_stop() {
            return Err(Error::Closed);
        }
        output.entries_read += 1;
        let key = merged.key();
        let parsed = parse_internal_key(key).ok_or_else(|| {
            Error::corruption(
                format!(
                    "compaction input of L{} and L{}",
                    compaction.level, compaction.output_level
                ),
                0,
                format!("malformed internal key {key:?}"),
            )
        })?;
        let new_user_key = last_user_key.as_deref() != Some(parsed.user_key);
        if new_user_key {
            let split_for_grandparents = splitter.should_split_before(parsed.user_key);
            let split_for_size = writer
                .current
                .as_ref()
                .is_some_and(|b| b.estimated_file_size() >= compaction.target_file_size);
            if split_for_grandparents || split_for_size {
                writer.finish_current(false)?;
                splitter.reset();
            }
            match &mut last_user_key {
                Some(k) => {
                    k.clear();
                    k.extend_from_slice(parsed.user_key);
                }
                None => last_user_key = Some(parsed.user_key.to_vec()),
            }
        }
        let verdict =
            retention.decide(parsed.user_key, parsed.seq, parsed.kind, |k| below.may_hold(k));
        // A range tombstone newer than the version in the version's own stripe deletes it
        // for every reader that could see it.
        let covered = verdict == Verdict::Keep
            && !range_tombstones.is_empty()
            && retention.stripe_top(parsed.seq).is_some_and(|top| {
                range_tombstones.max_cover(parsed.user_key, top).is_some_and(|t| t > parsed.seq)
            });
        match verdict {
            Verdict::Keep if covered => {
                output.entries_dropped += 1;
                output.covered_dropped += 1;
            }
            Verdict::Keep => {
                writer.add(key, merged.value())?;
                output.entries_written += 1;
            }
            Verdict::DropShadowed => output.entries_dropped += 1,
            Verdict::DropTombstone => {
                output.entries_dropped += 1;
                output.tombstones_dropped += 1;
            }
        }
        merged.next();
    }
    merged.status()?;
    if should_stop() {
        return Err(Error::Closed);
    }
    Ok(())
}

/// Answers "may a level below the output hold this key?" for keys asked in ascending order,
/// with one forward-only cursor per level (LevelDB's `IsBaseLevelForKey` trick).
struct LevelsBelow<'v> {
    levels: Vec<(&'v [Arc<FileMeta>], usize)>,
}

impl<'v> LevelsBelow<'v> {
    fn new(version: &'v Version, output_level: usize) -> Self {
        LevelsBelow {
            levels: (output_level + 1..NUM_LEVELS).map(|l| (version.files(l), 0)).collect(),
        }
    }

    fn may_hold(&mut self, user_key: &[u8]) -> bool {
        for (files, pos) in &mut self.levels {
            while let Some(f) = files.get(*pos) {
                if f.largest_user_key() < user_key {
                    *pos += 1;
                    continue;
                }
                if f.smallest_user_key() <= user_key {
                    return true;
                }
                break;
            }
        }
        false
    }
}

/// Decides where grandparent overlap forces an output split (keys asked in ascending order).
struct Splitter<'c> {
    grandparents: &'c [Arc<FileMeta>],
    max_overlap: u64,
    index: usize,
    overlapped: u64,
    seen_key: bool,
}

impl<'c> Splitter<'c> {
    fn new(grandparents: &'c [Arc<FileMeta>], max_overlap: u64) -> Self {
        Splitter { grandparents, max_overlap, index: 0, overlapped: 0, seen_key: false }
    }

    /// Called with each new user key: whether the current output should end before it.
    fn should_split_before(&mut self, user_key: &[u8]) -> bool {
        // Grandparents entirely before the key are overlapped by the current output, which
        // spans from its first key to here.
        while let Some(g) = self.grandparents.get(self.index) {
            if g.largest_user_key() >= user_key {
                break;
            }
            if self.seen_key {
                self.overlapped = self.overlapped.saturating_add(g.file_size);
            }
            self.index += 1;
        }
        self.seen_key = true;
        self.overlapped > self.max_overlap
    }

    /// A new output begins.
    fn reset(&mut self) {
        self.overlapped = 0;
    }
}

/// The output tables: the one being built and those finished.
struct OutputWriter<'a> {
    fs: &'a dyn FileSystem,
    dir: &'a Path,
    table_options: &'a TableOptions,
    new_file_number: &'a mut dyn FnMut() -> u64,
    rate_limiter: Option<&'a RateLimiter>,
    current: Option<Builder<'a>>,
    finished: Vec<FileMeta>,
    /// Bytes written since the last charge to the rate limiter.
    uncharged: u64,
    /// The range tombstones to carry, each output taking the part between its lower bound
    /// and the key after its last entry, so that the outputs' ranges stay disjoint.
    tombstones: Vec<RangeTombstone>,
    /// Where the next output's part of the tombstones begins (`None`: from the first).
    lower: Option<Vec<u8>>,
    /// The user key of the last entry added to the current output.
    last_user_key: Vec<u8>,
}

struct Builder<'a> {
    number: u64,
    table: TableBuilder<'a>,
    charged_size: u64,
}

impl Builder<'_> {
    fn estimated_file_size(&self) -> u64 {
        self.table.estimated_file_size()
    }
}

impl<'a> OutputWriter<'a> {
    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(table_file_name(number))
    }

    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let builder = match &mut self.current {
            Some(b) => b,
            None => {
                let number = (self.new_file_number)();
                let table = TableBuilder::new(self.fs, &self.path(number), self.table_options)?;
                self.current.insert(Builder { number, table, charged_size: 0 })
            }
        };
        builder.table.add(key, value)?;
        self.last_user_key.clear();
        self.last_user_key.extend_from_slice(strata_core::key::user_key(key));
        if let Some(limiter) = self.rate_limiter {
            let size = builder.table.estimated_file_size();
            self.uncharged += size.saturating_sub(builder.charged_size);
            builder.charged_size = builder.charged_size.max(size);
            if self.uncharged >= RATE_LIMIT_CHUNK {
                limiter.request(self.uncharged);
                self.uncharged = 0;
            }
        }
        Ok(())
    }

    /// Finishes the current output; `last` says no output follows, so it takes every
    /// tombstone part left.
    fn finish_current(&mut self, last: bool) -> Result<()> {
        let upper = (!last).then(|| successor(&self.last_user_key));
        if self.current.is_none() {
            let left = self
                .tombstones
                .iter()
                .any(|t| self.lower.as_deref().is_none_or(|lo| t.end.as_slice() > lo));
            if !last || !left {
                return Ok(());
            }
            // Only tombstones remain (every entry after the last split was dropped, or
            // there were none): they get an output of their own.
            let number = (self.new_file_number)();
            let table = TableBuilder::new(self.fs, &self.path(number), self.table_options)?;
            self.current = Some(Builder { number, table, charged_size: 0 });
        }
        let Some(Builder { number, mut table, .. }) = self.current.take() else { return Ok(()) };
        let parts = RangeTombstones::new(self.tombstones.iter().cloned());
        for part in parts.clipped(self.lower.as_deref(), upper.as_deref(), |_| true) {
            if let Err(e) = table.add_range_tombstone(part) {
                let _ = table.abandon();
                return Err(e);
            }
        }
        self.lower = upper;
        // `finish` removes the partial file itself when it fails.
        let props = table.finish()?;
        self.finished.push(FileMeta::from_properties(number, props));
        Ok(())
    }

    fn finish_all(&mut self) -> Result<Vec<FileMeta>> {
        self.finish_current(true)?;
        if let (Some(limiter), true) = (self.rate_limiter, self.uncharged > 0) {
            limiter.request(self.uncharged);
            self.uncharged = 0;
        }
        if !self.finished.is_empty() {
            // Makes the new names durable before the manifest may name them.
            self.fs.sync_dir(self.dir).ctx("fsync directory", self.dir)?;
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Removes every output created (best effort: an unreferenced table left behind is
    /// deleted by the engine's cleanup at the next open).
    fn abandon_all(&mut self) {
        if let Some(b) = self.current.take() {
            let _ = b.table.abandon();
        }
        for f in std::mem::take(&mut self.finished) {
            let _ = self.fs.remove(&self.path(f.number));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picker::CompactionReason;
    use crate::version_edit::VersionEdit;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use strata_core::iter::VecIterator;
    use strata_core::key::{InternalKey, ValueKind, MAX_SEQ};
    use strata_core::range_del::{inclusive_end, RangeTombstone, RangeTombstones};
    use strata_core::sim::{FaultOp, SimFileSystem};
    use strata_sstable::{Table, TableStats};

    const DIR: &str = "/db";

    fn meta(number: u64, lo: &[u8], hi: &[u8], size: u64) -> FileMeta {
        FileMeta {
            number,
            file_size: size,
            smallest: InternalKey::new(lo, 1, ValueKind::Put),
            largest: InternalKey::new(hi, 1, ValueKind::Put),
            smallest_seq: 1,
            largest_seq: 1,
            num_entries: 1,
            num_deletions: 0,
            global_seq: None,
            num_range_deletions: 0,
        }
    }

    fn compaction(
        target_file_size: u64,
        grandparents: Vec<Arc<FileMeta>>,
        max_gp: u64,
    ) -> Compaction {
        Compaction {
            level: 0,
            output_level: 1,
            inputs: Vec::new(),
            overlapping: Vec::new(),
            grandparents,
            score: 1.0,
            reason: CompactionReason::Level0FileCount,
            max_grandparent_overlap: max_gp,
            target_file_size,
        }
    }

    type Entry = (Vec<u8>, SeqNo, ValueKind, Vec<u8>);

    fn encode(entries: &[Entry]) -> Vec<(Vec<u8>, Vec<u8>)> {
        entries
            .iter()
            .map(|(k, s, kind, v)| (InternalKey::new(k, *s, *kind).into_encoded(), v.clone()))
            .collect()
    }

    /// Runs a compaction of `sources` and reads every output back.
    #[allow(clippy::type_complexity)]
    fn run(
        fs: &SimFileSystem,
        c: &Compaction,
        sources: Vec<Vec<Entry>>,
        version: &Version,
        snapshots: &[SeqNo],
        horizon: SeqNo,
        stop: &dyn Fn() -> bool,
    ) -> Result<(CompactionOutput, Vec<Vec<Entry>>)> {
        let none = RangeTombstones::default();
        let (out, tables, _) =
            run_with_tombstones(fs, c, sources, &none, version, snapshots, horizon, stop)?;
        Ok((out, tables))
    }

    /// [`run`] with the inputs' range tombstones; also returns each output's tombstones.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn run_with_tombstones(
        fs: &SimFileSystem,
        c: &Compaction,
        sources: Vec<Vec<Entry>>,
        range_tombstones: &RangeTombstones,
        version: &Version,
        snapshots: &[SeqNo],
        horizon: SeqNo,
        stop: &dyn Fn() -> bool,
    ) -> Result<(CompactionOutput, Vec<Vec<Entry>>, Vec<Vec<RangeTombstone>>)> {
        fs.create_dir_all(Path::new(DIR)).unwrap();
        let inputs: Vec<Box<dyn InternalIterator>> = sources
            .iter()
            .map(|s| Box::new(VecIterator::new(encode(s))) as Box<dyn InternalIterator>)
            .collect();
        let mut next = 100;
        let mut numbers = || {
            next += 1;
            next
        };
        let options = TableOptions::default().with_block_size(256);
        let out = run_compaction(
            c,
            inputs,
            version,
            CompactionContext {
                snapshots,
                horizon,
                range_tombstones,
                fs,
                dir: Path::new(DIR),
                table_options: &options,
                new_file_number: &mut numbers,
                rate_limiter: None,
                should_stop: stop,
            },
        )?;
        let mut tables = Vec::new();
        let mut tombstones = Vec::new();
        for f in &out.files {
            let path = Path::new(DIR).join(table_file_name(f.number));
            let table = Table::open(fs, &path, f.number, None, Arc::new(TableStats::default()))?;
            let mut it = table.iter();
            it.seek_to_first();
            let mut entries = Vec::new();
            while it.valid() {
                let p = parse_internal_key(it.key()).unwrap();
                entries.push((p.user_key.to_vec(), p.seq, p.kind, it.value().to_vec()));
                it.next();
            }
            it.status()?;
            assert_eq!(entries.len() as u64, f.num_entries);
            assert_eq!(table.file_size(), f.file_size);
            tables.push(entries);
            tombstones.push(table.properties().range_tombstones.clone());
        }
        Ok((out, tables, tombstones))
    }

    /// The value a reader at `seq` sees for `key` among `versions` (newest first), falling
    /// through to `deeper` (what levels below hold).
    fn visible(versions: &[&Entry], seq: SeqNo, deeper: bool) -> Option<Vec<u8>> {
        match versions.iter().find(|e| e.1 <= seq) {
            Some((_, _, ValueKind::Put, v)) => Some(v.clone()),
            Some((_, _, ValueKind::Delete, _)) => None,
            None => deeper.then(|| b"deep".to_vec()),
        }
    }

    fn by_key(entries: &[Entry]) -> BTreeMap<Vec<u8>, Vec<&Entry>> {
        let mut map: BTreeMap<Vec<u8>, Vec<&Entry>> = BTreeMap::new();
        for e in entries {
            map.entry(e.0.clone()).or_default().push(e);
        }
        for versions in map.values_mut() {
            versions.sort_by_key(|e| std::cmp::Reverse(e.1));
        }
        map
    }

    /// (key, seq, is put, value byte, source) per version.
    type RawVersions = Vec<(u8, u16, bool, u8, usize)>;
    /// (level, first key, span) per table below the output level.
    type BelowTables = Vec<(usize, u8, u8)>;
    /// Versions, snapshots, horizon, tables below, target file size.
    type Case = (RawVersions, Vec<u16>, u16, BelowTables, u64);

    fn arb_case() -> impl Strategy<Value = Case> {
        (
            proptest::collection::vec(
                (0u8..16, 1u16..300, any::<bool>(), any::<u8>(), 0usize..4),
                0..200,
            ),
            proptest::collection::vec(0u16..300, 0..5),
            0u16..320,
            proptest::collection::vec((2usize..NUM_LEVELS, 0u8..16, 0u8..3), 0..6),
            prop_oneof![Just(1u64), Just(300), Just(1 << 30)],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Against a model: the output keeps exactly the versions some reader (a snapshot, or
        /// any reader at or after the horizon) can see, minus tombstones every reader sees with
        /// nothing below, and every reader sees the same data before and after.
        #[test]
        fn drop_rules_match_the_model((raw, snaps, horizon, below, target) in arb_case()) {
            let horizon = SeqNo::from(horizon);
            let mut snapshots: Vec<SeqNo> = snaps.into_iter().map(SeqNo::from).filter(|&s| s <= horizon).collect();
            snapshots.sort_unstable();
            snapshots.dedup();
            // Unique (key, seq): one version per internal key across all sources.
            let mut seen = BTreeSet::new();
            let mut sources: Vec<Vec<Entry>> = vec![Vec::new(); 4];
            let mut all: Vec<Entry> = Vec::new();
            for (k, seq, put, v, src) in raw {
                if !seen.insert((k, seq)) { continue; }
                let kind = if put { ValueKind::Put } else { ValueKind::Delete };
                let value = if put { vec![v, k] } else { Vec::new() };
                let e = (vec![b'k', k], SeqNo::from(seq), kind, value);
                sources[src].push(e.clone());
                all.push(e);
            }
            // Tables below the output level (L1): disjoint ranges per level.
            let mut version = Version::default();
            for (i, (level, lo, span)) in below.into_iter().enumerate() {
                let mut edit = VersionEdit::default();
                edit.new_files.push((level, meta(i as u64 + 1, &[b'k', lo], &[b'k', lo + span], 10)));
                if let Ok(v) = version.apply(&edit) { version = v; }
            }
            let deeper = |k: &[u8]| (2..NUM_LEVELS).any(|l| version.files(l).iter().any(|f| f.contains_user_key(k)));

            let fs = SimFileSystem::new();
            let c = compaction(target, Vec::new(), u64::MAX);
            let (out, tables) = run(&fs, &c, sources, &version, &snapshots, horizon, &|| false).unwrap();
            prop_assert_eq!(out.entries_read, all.len() as u64);
            prop_assert_eq!(out.entries_read, out.entries_written + out.entries_dropped);

            // Outputs: sorted, disjoint user-key ranges, no key split across two tables.
            for pair in out.files.windows(2) {
                prop_assert!(pair[0].largest_user_key() < pair[1].smallest_user_key());
            }
            if target == 1 {
                let keys: BTreeSet<&Vec<u8>> = tables.iter().flatten().map(|e| &e.0).collect();
                prop_assert_eq!(keys.len(), out.files.len(), "one table per user key at a 1-byte target");
            }
            let output: Vec<Entry> = tables.into_iter().flatten().collect();
            prop_assert_eq!(output.len() as u64, out.entries_written);

            // Exactly the model's kept versions.
            let boundaries: Vec<SeqNo> = snapshots.iter().copied().chain([horizon]).collect();
            let before = by_key(&all);
            let mut expected: Vec<Entry> = Vec::new();
            for (key, versions) in &before {
                for (i, e) in versions.iter().enumerate() {
                    let newest_for_some_reader = boundaries.iter().any(|&b| {
                        e.1 <= b && versions[..i].iter().all(|newer| newer.1 > b)
                    });
                    let keep = e.1 > horizon || newest_for_some_reader;
                    let droppable_tombstone = e.2 == ValueKind::Delete && e.1 <= boundaries[0] && !deeper(key);
                    if keep && !droppable_tombstone {
                        expected.push((*e).clone());
                    }
                }
            }
            let mut got = output.clone();
            got.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            prop_assert_eq!(&got, &output, "output is in internal-key order");
            prop_assert_eq!(got, expected);

            // Every reader sees the same data.
            let after = by_key(&output);
            for key in before.keys() {
                let empty = Vec::new();
                let after_versions = after.get(key).unwrap_or(&empty);
                for s in boundaries.iter().copied().chain([MAX_SEQ]) {
                    prop_assert_eq!(
                        visible(&before[key], s, deeper(key)),
                        visible(after_versions, s, deeper(key)),
                        "key {:?} at {}", key, s
                    );
                }
            }
        }
    }

    /// What a reader at `seq` sees for `key`: its newest version at or below `seq` unless a
    /// range tombstone at or below `seq` is newer; failing a version, what lies deeper
    /// (older than everything here) unless a tombstone covers it.
    fn visible_with(
        versions: &[&Entry],
        tombstones: &RangeTombstones,
        key: &[u8],
        seq: SeqNo,
        deeper: bool,
    ) -> Option<Vec<u8>> {
        let cover = tombstones.max_cover(key, seq);
        match versions.iter().find(|e| e.1 <= seq) {
            Some(e) if cover.is_some_and(|c| c > e.1) => None,
            Some(_) => visible(versions, seq, false),
            None => (deeper && cover.is_none()).then(|| b"deep".to_vec()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// With range tombstones among the inputs: outputs stay disjoint (their ranges span
        /// the tombstone parts they carry), no output version is one a tombstone deletes for
        /// every reader that could see it, and every reader — each snapshot, the horizon,
        /// the newest — sees for every key what it saw before.
        #[test]
        fn range_tombstones_keep_every_reader_s_view(
            (raw, snaps, horizon, below, target) in arb_case(),
            raw_tombstones in proptest::collection::vec((0u8..17, 1u8..6, 1u16..320), 0..6),
        ) {
            let horizon = SeqNo::from(horizon);
            let mut snapshots: Vec<SeqNo> = snaps.into_iter().map(SeqNo::from).filter(|&s| s <= horizon).collect();
            snapshots.sort_unstable();
            snapshots.dedup();
            let mut seen = BTreeSet::new();
            let mut sources: Vec<Vec<Entry>> = vec![Vec::new(); 4];
            let mut all: Vec<Entry> = Vec::new();
            for (k, seq, put, v, src) in raw {
                if !seen.insert((k, seq)) { continue; }
                let kind = if put { ValueKind::Put } else { ValueKind::Delete };
                let value = if put { vec![v, k] } else { Vec::new() };
                let e = (vec![b'k', k], SeqNo::from(seq), kind, value);
                sources[src].push(e.clone());
                all.push(e);
            }
            let input_tombstones = RangeTombstones::new(raw_tombstones.iter().map(|&(lo, span, seq)| {
                RangeTombstone::new([b'k', lo], [b'k', lo + span], SeqNo::from(seq))
            }));
            let mut version = Version::default();
            for (i, (level, lo, span)) in below.into_iter().enumerate() {
                let mut edit = VersionEdit::default();
                edit.new_files.push((level, meta(i as u64 + 1, &[b'k', lo], &[b'k', lo + span], 10)));
                if let Ok(v) = version.apply(&edit) { version = v; }
            }
            let deeper = |k: &[u8]| (2..NUM_LEVELS).any(|l| version.files(l).iter().any(|f| f.contains_user_key(k)));

            let fs = SimFileSystem::new();
            let c = compaction(target, Vec::new(), u64::MAX);
            let (out, tables, tombstones) = run_with_tombstones(
                &fs, &c, sources, &input_tombstones, &version, &snapshots, horizon, &|| false,
            ).unwrap();
            prop_assert_eq!(out.entries_read, out.entries_written + out.entries_dropped);
            for pair in out.files.windows(2) {
                prop_assert!(pair[0].largest_user_key() < pair[1].smallest_user_key(), "{:?}", out.files);
            }
            for (f, parts) in out.files.iter().zip(&tombstones) {
                prop_assert_eq!(f.num_range_deletions, parts.len() as u64);
                for t in parts {
                    prop_assert!(f.smallest_user_key() <= t.start.as_slice());
                    prop_assert!(inclusive_end(&t.end) <= f.largest_user_key());
                }
            }
            let output_tombstones = RangeTombstones::new(tombstones.into_iter().flatten());
            if out.range_tombstones_dropped == input_tombstones.len() as u64 {
                prop_assert_eq!(out.range_tombstones_written, 0);
            }
            let output: Vec<Entry> = tables.into_iter().flatten().collect();

            let boundaries: Vec<SeqNo> = snapshots.iter().copied().chain([horizon]).collect();
            let (before, after) = (by_key(&all), by_key(&output));
            let empty = Vec::new();
            for k in 0u8..24 {
                let key = vec![b'k', k];
                let (b, a) = (before.get(&key).unwrap_or(&empty), after.get(&key).unwrap_or(&empty));
                for s in boundaries.iter().copied().chain([MAX_SEQ]) {
                    prop_assert_eq!(
                        visible_with(b, &input_tombstones, &key, s, deeper(&key)),
                        visible_with(a, &output_tombstones, &key, s, deeper(&key)),
                        "key {:?} at {}", key, s
                    );
                }
            }
        }
    }

    fn puts(n: usize, value_len: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| (format!("key{i:05}").into_bytes(), 10, ValueKind::Put, vec![b'v'; value_len]))
            .collect()
    }

    #[test]
    fn splits_at_the_target_size_but_never_inside_a_user_key() {
        let fs = SimFileSystem::new();
        // Every key has 20 versions kept by 20 snapshots: a table must hold them all.
        let mut entries = Vec::new();
        for i in 0..50 {
            for s in 1..=20 {
                entries.push((
                    format!("key{i:03}").into_bytes(),
                    s,
                    ValueKind::Put,
                    vec![b'x'; 50],
                ));
            }
        }
        let snapshots: Vec<SeqNo> = (1..=20).collect();
        let (out, tables) = run(
            &fs,
            &compaction(2000, Vec::new(), u64::MAX),
            vec![entries],
            &Version::default(),
            &snapshots,
            20,
            &|| false,
        )
        .unwrap();
        assert_eq!(out.entries_written, 1000);
        assert!(out.files.len() >= 10, "{} outputs", out.files.len());
        for t in &tables {
            assert_eq!(t.len() % 20, 0, "a key's versions stay together");
        }
        for pair in out.files.windows(2) {
            assert!(pair[0].largest_user_key() < pair[1].smallest_user_key());
        }
        let edit = compaction(2000, Vec::new(), u64::MAX).edit_for(&out.files);
        Version::default().apply(&edit).unwrap();
    }

    #[test]
    fn grandparent_overlap_splits_outputs() {
        let fs = SimFileSystem::new();
        // 100 grandparent tables of 10 bytes, 10 keys each; at most 50 bytes of overlap.
        let grandparents: Vec<Arc<FileMeta>> = (0..100)
            .map(|g| {
                Arc::new(meta(
                    g + 1,
                    format!("key{:05}", g * 10).as_bytes(),
                    format!("key{:05}", g * 10 + 9).as_bytes(),
                    10,
                ))
            })
            .collect();
        let c = compaction(1 << 30, grandparents.clone(), 50);
        let (out, _) =
            run(&fs, &c, vec![puts(1000, 10)], &Version::default(), &[], 10, &|| false).unwrap();
        assert!(out.files.len() >= 10, "{} outputs", out.files.len());
        for f in &out.files {
            let overlap: u64 = grandparents
                .iter()
                .filter(|g| g.overlaps_user_range(f.smallest_user_key(), f.largest_user_key()))
                .map(|g| g.file_size)
                .sum();
            assert!(overlap <= 50 + 2 * 10, "output {} overlaps {overlap} bytes", f.number);
        }
        // Without the limit: one output.
        let c = compaction(1 << 30, grandparents, u64::MAX);
        let (out, _) =
            run(&fs, &c, vec![puts(1000, 10)], &Version::default(), &[], 10, &|| false).unwrap();
        assert_eq!(out.files.len(), 1);
    }

    #[test]
    fn stop_request_removes_outputs() {
        let fs = SimFileSystem::new();
        let calls = std::sync::atomic::AtomicU64::new(0);
        let stop = || calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 3;
        let err = run(
            &fs,
            &compaction(1000, Vec::new(), u64::MAX),
            vec![puts(5000, 10)],
            &Version::default(),
            &[],
            10,
            &stop,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Closed), "{err}");
        assert!(fs.files().is_empty(), "{:?}", fs.files());
    }

    #[test]
    fn failed_sync_removes_outputs_and_reports() {
        for nth in 1..=4 {
            let fs = SimFileSystem::new();
            fs.create_dir_all(Path::new(DIR)).unwrap();
            fs.fail_nth(FaultOp::Sync, nth);
            let result = run(
                &fs,
                &compaction(2000, Vec::new(), u64::MAX),
                vec![puts(300, 10)],
                &Version::default(),
                &[],
                10,
                &|| false,
            );
            let err = result.unwrap_err();
            assert!(
                err.to_string().contains("fsync") || err.to_string().contains("fdatasync"),
                "{err}"
            );
            assert!(fs.files().is_empty(), "sync #{nth}: {:?}", fs.files());
        }
    }

    #[test]
    fn outputs_and_directory_are_durable_on_return() {
        let fs = SimFileSystem::new();
        let (out, _) = run(
            &fs,
            &compaction(2000, Vec::new(), u64::MAX),
            vec![puts(300, 10)],
            &Version::default(),
            &[],
            10,
            &|| false,
        )
        .unwrap();
        assert!(out.files.len() > 1);
        fs.crash(strata_core::sim::CrashMode::SyncedOnly);
        for f in &out.files {
            let path = Path::new(DIR).join(table_file_name(f.number));
            Table::open(&fs, &path, f.number, None, Arc::new(TableStats::default())).unwrap();
        }
    }

    #[test]
    fn corrupt_input_is_reported_and_outputs_removed() {
        let fs = SimFileSystem::new();
        let mut entries = encode(&puts(300, 10));
        entries.push((b"zzz".to_vec(), Vec::new())); // shorter than a trailer: sorts last
        let inputs: Vec<Box<dyn InternalIterator>> = vec![Box::new(VecIterator::new(entries))];
        fs.create_dir_all(Path::new(DIR)).unwrap();
        let mut n = 0;
        let err = run_compaction(
            &compaction(100, Vec::new(), u64::MAX),
            inputs,
            &Version::default(),
            CompactionContext {
                snapshots: &[],
                horizon: 10,
                range_tombstones: &Default::default(),
                fs: &fs,
                dir: Path::new(DIR),
                table_options: &TableOptions::default(),
                new_file_number: &mut || {
                    n += 1;
                    n
                },
                rate_limiter: None,
                should_stop: &|| false,
            },
        )
        .unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(fs.files().is_empty(), "{:?}", fs.files());
    }

    #[test]
    fn rate_limiter_is_charged_for_output_bytes() {
        let fs = SimFileSystem::new();
        fs.create_dir_all(Path::new(DIR)).unwrap();
        let limiter = RateLimiter::new(1 << 30);
        let inputs: Vec<Box<dyn InternalIterator>> =
            vec![Box::new(VecIterator::new(encode(&puts(2000, 100))))];
        let mut n = 0;
        let out = run_compaction(
            &compaction(1 << 30, Vec::new(), u64::MAX),
            inputs,
            &Version::default(),
            CompactionContext {
                snapshots: &[],
                horizon: 10,
                range_tombstones: &Default::default(),
                fs: &fs,
                dir: Path::new(DIR),
                table_options: &TableOptions::default()
                    .with_compression(strata_sstable::Compression::None),
                new_file_number: &mut || {
                    n += 1;
                    n
                },
                rate_limiter: Some(&limiter),
                should_stop: &|| false,
            },
        )
        .unwrap();
        let charged = limiter.total_bytes();
        assert!(
            charged >= out.bytes_written * 9 / 10 && charged <= out.bytes_written * 11 / 10,
            "{charged} vs {}",
            out.bytes_written
        );
    }
}
