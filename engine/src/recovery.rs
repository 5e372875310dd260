//! Opening a database: take the lock, read the manifest, replay the logs it does not cover,
//! make the recovered state durable in a fresh manifest, and delete what a crash left.
//!
//! The order is what makes a crash during recovery itself harmless: recovered memtables are
//! written to tables (fsynced, directory fsynced) and a new log is created *before* a new
//! manifest names them and moves the log number past the old logs; the old logs are deleted
//! only after `CURRENT` names that manifest. A crash anywhere before leaves the old manifest
//! and old logs in charge, and the next open simply redoes the work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_compaction::{
    log_file_name, manifest_file_name, parse_file_name, table_file_name, FileKind, Manifest,
    RecoveredState, SealedLog, Version, VersionEdit, CURRENT_FILE_NAME, LOCK_FILE_NAME,
};
use strata_core::fs::{FileLock, FileSystem};
use strata_core::key::{InternalKey, SeqNo};
use strata_core::range_del::RangeTombstone;
use strata_core::{Error, IoResultExt, Result};
use strata_wal::{BatchEncoding, Durability, LogReader, RecoveryMode, Wal, WriteBatch};

use crate::inner::{DbInner, Recovered};
use crate::memtable::MemTable;
use crate::metrics::MetricsRecorder;
use crate::options::Options;
use crate::state::{SuperVersion, VersionState, WriteState};
use crate::table_cache::TableCache;
use crate::version_set::{snapshot_edit, VersionSetParts};
use crate::write::wal_options;

pub(crate) fn open(dir: &Path, opts: Options) -> Result<Arc<DbInner>> {
    opts.validate()?;
    let fs = Arc::clone(&opts.fs);
    let lock = crate::dir::create_and_lock(&*fs, dir, LOCK_FILE_NAME)?;
    crate::dir::refuse_unfinished(&*fs, dir)?;

    let listing = scan_directory(&*fs, dir)?;
    let recovered = recover_manifest(&fs, dir, &listing)?;
    if let Some(r) = &recovered {
        validate(dir, r, &listing)?;
    }
    let mut start = RecoveryStart::new(recovered.as_ref(), &listing);
    let metrics = MetricsRecorder::default();
    let tables = Arc::new(TableCache::new(Arc::clone(&fs), dir, opts.block_cache_size));
    let mut edit = VersionEdit::default();
    let mut next_file = start.next_file;
    // Everything replayed is flushed before the open returns, so it is collected in sorted
    // runs, not memtables: one sort per table is far cheaper than a skiplist search per
    // entry (which took two thirds of a reopen's time).
    let mut flush = |mut run: SortedRun, _last: SeqNo| -> Result<()> {
        let number = next_file;
        next_file += 1;
        let path = tables.table_path(number);
        let range_dels = std::mem::take(&mut run.range_dels);
        let meta = crate::flush::build_table_from(
            &fs,
            &path,
            &opts.table_options(0),
            number,
            run.sorted(),
            range_dels.into_iter(),
        )?;
        if let Some(meta) = meta {
            edit.new_files.push((0, meta));
        }
        Ok(())
    };
    let (run, last_seq) = replay_logs(&*fs, dir, &opts, &start, &metrics, &mut flush)?;
    if !run.is_empty() {
        flush(run, last_seq)?;
    }
    start.next_file = next_file;
    let mut version = start.version.clone();
    if !edit.new_files.is_empty() {
        fs.sync_dir(dir).ctx("fsync directory", dir)?;
        version = version.apply(&edit).map_err(|e| {
            Error::corruption(dir, 0, format!("recovered tables do not fit the manifest: {e}"))
        })?;
    }

    // A fresh log, then a fresh manifest that names the recovered tables and moves the log
    // number past every replayed log.
    let wal_number = start.next_file;
    let manifest_number = start.next_file + 1;
    start.next_file += 2;
    let wal_sync = Arc::clone(&metrics.wal_sync_latency);
    let wal = Wal::create(
        Arc::clone(&fs),
        dir.join(log_file_name(wal_number)),
        wal_options(&opts, &wal_sync),
    )?;
    // The fresh log is the only one left to replay: no sealed log to carry.
    let snapshot =
        snapshot_edit(&version, &start.cursors, wal_number, &[], start.next_file, last_seq);
    let manifest = Manifest::create_new(Arc::clone(&fs), dir, manifest_number, &snapshot)?;

    let parts = Parts {
        dir,
        lock: Some(lock),
        wal: Some(wal),
        manifest: Some(manifest),
        log_number: wal_number,
        mem: Arc::new(MemTable::new(wal_number)),
        imms: Vec::new(),
        version,
        last_seq,
        start,
        tables,
        metrics,
    };
    let inner = assemble(parts, opts);
    if let Durability::Periodic(every) = inner.opts.durability {
        let mut w = inner.commit.lock();
        let handle = w.wal()?.spawn_periodic_sync(every)?;
        w.periodic = Some((every, handle));
    }
    // Replayed logs, old manifests, tables no manifest names (outputs of an interrupted
    // flush or compaction), staging files.
    inner.versions.purge_obsolete_files();
    let _ = fs.remove(&dir.join(strata_compaction::CURRENT_TEMP_FILE_NAME));
    Ok(inner)
}

/// How often [`open_read_only`] reads the directory again when what it read does not fit
/// together while the directory keeps changing (a writer in another process switching logs
/// or compacting between the listing and the manifest read).
const READ_ONLY_ATTEMPTS: usize = 5;

/// Opens the database in `dir` without writing anything: no lock, no new log or manifest,
/// no flush of the replayed logs (they stay in memtables), no purge.
pub(crate) fn open_read_only(dir: &Path, opts: Options) -> Result<Arc<DbInner>> {
    opts.validate()?;
    let fs = Arc::clone(&opts.fs);
    if !fs.exists(dir).ctx("stat", dir)? {
        return Err(Error::InvalidArgument(format!(
            "no database at {} to open read-only",
            dir.display()
        )));
    }
    crate::dir::refuse_unfinished(&*fs, dir)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let listing = scan_directory(&*fs, dir)?;
        match read_only_state(&fs, dir, &opts, &listing) {
            Ok(parts) => return Ok(assemble(parts, opts)),
            // The directory changed under us: what we read may straddle a writer's step.
            // Read it again rather than report damage that is not there.
            Err(_) if attempt < READ_ONLY_ATTEMPTS && scan_directory(&*fs, dir)? != listing => {}
            Err(e) => return Err(e),
        }
    }
}

/// The state a read-only open serves: the manifest's tables plus every replayed log in
/// memtables (the newest is the active one; the others are immutable, newest first).
fn read_only_state<'a>(
    fs: &Arc<dyn FileSystem>,
    dir: &'a Path,
    opts: &Options,
    listing: &DirListing,
) -> Result<Parts<'a>> {
    let recovered = recover_manifest(fs, dir, listing)?.ok_or_else(|| {
        Error::corruption(dir.join(CURRENT_FILE_NAME), 0, "no database here: CURRENT is missing")
    })?;
    validate(dir, &recovered, listing)?;
    let start = RecoveryStart::new(Some(&recovered), listing);
    let metrics = MetricsRecorder::default();
    let mut imms = Vec::new();
    let mut keep = |mem: Arc<MemTable>, sealed: SeqNo| -> Result<()> {
        mem.seal(sealed);
        imms.insert(0, mem);
        Ok(())
    };
    let (mem, last_seq) = replay_logs(&**fs, dir, opts, &start, &metrics, &mut keep)?;
    Ok(Parts {
        dir,
        lock: None,
        wal: None,
        manifest: None,
        log_number: recovered.log_number,
        mem,
        imms,
        version: start.version.clone(),
        last_seq,
        tables: Arc::new(TableCache::new(Arc::clone(fs), dir, opts.block_cache_size)),
        start,
        metrics,
    })
}

/// Where replay starts from: the recovered manifest's state (or a new database's), and the
/// logs on disk that it does not cover, oldest first.
struct RecoveryStart {
    version: Version,
    next_file: u64,
    last_seq: SeqNo,
    logs: Vec<u64>,
    sealed: BTreeMap<u64, SealedLog>,
    cursors: Vec<Option<InternalKey>>,
}

impl RecoveryStart {
    fn new(recovered: Option<&RecoveredState>, listing: &DirListing) -> RecoveryStart {
        let (version, log_number, next_file, last_seq) = match recovered {
            // No table may hold a sequence number the next write could be given: an ingested
            // table's global sequence is above every logged write before it, and a later
            // flush's edit records only its memtable's last sequence, which may be lower.
            Some(r) => (
                r.version.clone(),
                r.log_number,
                r.next_file_number,
                (0..strata_compaction::NUM_LEVELS)
                    .flat_map(|l| r.version.files(l))
                    .map(|f| f.largest_seq)
                    .fold(r.last_sequence, SeqNo::max),
            ),
            None => (Version::default(), 0, 2, 0),
        };
        let mut cursors = vec![None; strata_compaction::NUM_LEVELS];
        for (level, key) in recovered.map(|r| &r.compact_pointers[..]).unwrap_or_default() {
            if let Some(slot) = cursors.get_mut(*level) {
                *slot = Some(key.clone());
            }
        }
        RecoveryStart {
            version,
            // Logs are created between manifest edits, so the numbers on disk also bound
            // the next.
            next_file: next_file.max(listing.max_number.map_or(0, |n| n + 1)),
            last_seq,
            logs: listing.logs.range(log_number..).copied().collect(),
            sealed: recovered
                .map(|r| r.sealed_logs.iter().map(|s| (s.number, *s)).collect())
                .unwrap_or_default(),
            cursors,
        }
    }
}

/// Step 4: replays `start.logs` into memtables, handing each one that fills up to `full`;
/// returns the last, partly filled memtable and the last sequence recovered.
/// Where replayed batches go: a memtable (a read-only open serves them from memory) or a
/// sorted run (a writable open flushes them at once).
trait ReplayTarget {
    fn empty() -> Self;
    fn add(&mut self, batch: &WriteBatch);
    fn bytes(&self) -> usize;
}

impl ReplayTarget for Arc<MemTable> {
    fn empty() -> Self {
        Arc::new(MemTable::new(0))
    }
    fn add(&mut self, batch: &WriteBatch) {
        crate::write::insert_batch(self, batch);
    }
    fn bytes(&self) -> usize {
        self.approximate_bytes()
    }
}

/// Replayed entries in arrival order, sorted once when their table is built.
#[derive(Default)]
struct SortedRun {
    /// Every entry's internal key, then its value.
    bytes: Vec<u8>,
    /// Each entry: the first 8 bytes of its user key (big-endian, zero-padded: they order
    /// as the keys do, so most comparisons of a sort never touch `bytes`), its start in
    /// `bytes`, its key and value lengths.
    entries: Vec<(u64, usize, u32, u32)>,
    /// Replayed range deletes.
    range_dels: Vec<RangeTombstone>,
    range_bytes: usize,
}

impl SortedRun {
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.range_dels.is_empty()
    }

    /// The entries in internal-key order (user key ascending, newest first).
    fn sorted(&mut self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let bytes = &self.bytes;
        let key =
            |&(_, at, k, _): &(u64, usize, u32, u32)| bytes.get(at..at + k as usize).unwrap_or(&[]);
        self.entries.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| strata_core::key::compare_internal(key(a), key(b)))
        });
        self.entries.iter().map(move |&(_, at, k, v)| {
            let (k, v) = (k as usize, v as usize);
            (bytes.get(at..at + k).unwrap_or(&[]), bytes.get(at + k..at + k + v).unwrap_or(&[]))
        })
    }
}

impl ReplayTarget for SortedRun {
    fn empty() -> Self {
        SortedRun::default()
    }
    fn add(&mut self, batch: &WriteBatch) {
        let seq = batch.sequence();
        for (i, e) in batch.iter().enumerate() {
            let Some(kind) = e.kind.point() else {
                let t = RangeTombstone::new(e.key, e.value, seq + i as u64);
                if !t.is_empty() {
                    self.range_bytes += t.start.len() + t.end.len() + 32;
                    self.range_dels.push(t);
                }
                continue;
            };
            let at = self.bytes.len();
            let mut key = Vec::with_capacity(e.key.len() + 8);
            strata_core::key::encode_internal_key(&mut key, e.key, seq + i as u64, kind);
            self.bytes.extend_from_slice(&key);
            self.bytes.extend_from_slice(e.value);
            // Keys and values were size-checked when written (`MAX_KEY_SIZE`, `MAX_VALUE_SIZE`
            // are far below u32::MAX) and again when the batch decoded.
            let mut prefix = [0u8; 8];
            let n = e.key.len().min(8);
            prefix[..n].copy_from_slice(&e.key[..n]);
            let prefix = u64::from_be_bytes(prefix);
            self.entries.push((prefix, at, key.len() as u32, e.value.len() as u32));
        }
    }

    /// About what a memtable would count, so replayed tables come out of the same size.
    fn bytes(&self) -> usize {
        self.bytes.len() + self.entries.len() * 32 + self.range_bytes
    }
}

fn replay_logs<T: ReplayTarget>(
    fs: &dyn FileSystem,
    dir: &Path,
    opts: &Options,
    start: &RecoveryStart,
    metrics: &MetricsRecorder,
    full: &mut dyn FnMut(T, SeqNo) -> Result<()>,
) -> Result<(T, SeqNo)> {
    let logs = &start.logs;
    let mut last_seq = start.last_seq;
    let mut mem = T::empty();
    for (i, &number) in logs.iter().enumerate() {
        let path = dir.join(log_file_name(number));
        let last_log = i + 1 == logs.len();
        let seal = start.sealed.get(&number);
        // Only the newest log may end torn: older ones were synced before the switch, and a
        // sealed one was durable to its recorded length.
        let mode =
            if last_log || seal.is_some() { opts.recovery_mode } else { RecoveryMode::Strict };
        let mut reader = LogReader::open(fs, &path, mode)?;
        let mut log_last_seq = None;
        while let Some(record) = reader.next_record()? {
            let offset = record.offset;
            let batch = WriteBatch::decode(record.payload.to_vec()).map_err(|reason| {
                Error::corruption(&path, offset, format!("bad write batch: {reason}"))
            })?;
            mem.add(&batch);
            let batch_last = batch.sequence() + batch.len() as u64 - 1;
            log_last_seq = Some(batch_last);
            last_seq = last_seq.max(batch_last);
            if mem.bytes() >= opts.memtable_size {
                full(std::mem::replace(&mut mem, T::empty()), last_seq)?;
            }
        }
        if let Some(seal) = seal {
            let size = fs.file_size(&path).ctx("stat", &path)?;
            if let Some(lost) = check_sealed_log(&path, seal, size, &reader, log_last_seq)? {
                if opts.recovery_mode == RecoveryMode::Strict {
                    return Err(lost);
                }
                // Point in time: what follows the loss is not replayed, or it would leave a
                // hole in the history.
                let replayed = reader.dropped_tail().map_or(size, |(at, _)| at);
                let lost_bytes = seal.length.saturating_sub(replayed).max(1);
                metrics.wal_sealed_lost_bytes.fetch_add(lost_bytes, Ordering::Relaxed);
                break;
            }
            continue;
        }
        if let Some((at, len)) = reader.dropped_tail() {
            // Older logs are synced before their memtable is sealed, so only the newest log
            // with records can end torn. Newer logs that hold nothing (a switch or an open
            // that failed right after creating its log) do not count.
            if !last_log && !logs_hold_no_records(fs, dir, &logs[i + 1..])? {
                return Err(Error::corruption(
                    &path,
                    at,
                    "damaged records at the end of a log that is not the newest",
                ));
            }
            metrics.wal_tail_dropped_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }
    Ok((mem, last_seq))
}

/// What [`assemble`] builds a [`DbInner`] from: the recovered state, and the log, manifest
/// and lock of a writable database (all `None` in a read-only one).
struct Parts<'a> {
    dir: &'a Path,
    lock: Option<FileLock>,
    wal: Option<Arc<Wal>>,
    manifest: Option<Manifest>,
    log_number: u64,
    mem: Arc<MemTable>,
    imms: Vec<Arc<MemTable>>,
    version: Version,
    last_seq: SeqNo,
    start: RecoveryStart,
    tables: Arc<TableCache>,
    metrics: MetricsRecorder,
}

/// Builds the [`DbInner`] of both kinds of open from their parts.
fn assemble(p: Parts<'_>, opts: Options) -> Arc<DbInner> {
    let recovered = Recovered {
        dir: p.dir.to_path_buf(),
        lock: p.lock,
        write: WriteState {
            mem: Arc::clone(&p.mem),
            wal: p.wal,
            periodic: None,
            retired_wal_stats: Default::default(),
            unlogged: false,
            logged_seq: p.last_seq,
            conflicts: crate::conflict::ConflictWindow::new(opts.transaction_history_bytes),
        },
        versions: VersionSetParts {
            dir: p.dir.to_path_buf(),
            fs: Arc::clone(&opts.fs),
            tables: Arc::clone(&p.tables),
            max_manifest_size: opts.max_manifest_size,
            state: VersionState {
                manifest: p.manifest,
                log_number: p.log_number,
                handed_out: Vec::new(),
                sealed_logs: Vec::new(),
            },
            view: SuperVersion::new(p.mem, p.imms, Arc::new(p.version)),
            next_file_number: p.start.next_file,
            cursors: p.start.cursors,
        },
        last_seq: p.last_seq,
        tables: p.tables,
        metrics: p.metrics,
    };
    DbInner::new(recovered, opts)
}

/// The database's own files in the directory, by kind (names strata never writes are not
/// listed, and nothing here ever touches them).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DirListing {
    pub(crate) logs: BTreeSet<u64>,
    pub(crate) tables: BTreeSet<u64>,
    pub(crate) manifests: BTreeSet<u64>,
    /// The largest number of any numbered file (temporary ones included).
    pub(crate) max_number: Option<u64>,
}

/// Step 1 of recovery: what the directory holds.
pub(crate) fn scan_directory(fs: &dyn FileSystem, dir: &Path) -> Result<DirListing> {
    let mut listing = DirListing::default();
    for name in fs.list(dir).ctx("list directory", dir)? {
        let number = match parse_file_name(&name) {
            Some(FileKind::Log(n)) => listing.logs.insert(n).then_some(n),
            Some(FileKind::Table(n)) => listing.tables.insert(n).then_some(n),
            Some(FileKind::Manifest(n)) => listing.manifests.insert(n).then_some(n),
            Some(FileKind::Temp(n)) => Some(n),
            _ => None,
        };
        listing.max_number = listing.max_number.max(number);
    }
    Ok(listing)
}

/// Step 2: the state `CURRENT` and its manifest describe; `None` for a new database.
///
/// Without `CURRENT`, the directory is new only if it holds nothing of a database's but what
/// a crash during the very first open can leave (logs without records, a manifest holding an
/// empty snapshot at sequence 0). Anything else — a table, a log with records, a manifest
/// that ever held data — means `CURRENT` was lost, and starting over would replay a fraction
/// of the data and then purge the rest: `Corruption` naming `CURRENT`.
pub(crate) fn recover_manifest(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    listing: &DirListing,
) -> Result<Option<RecoveredState>> {
    if let Some(state) = Manifest::recover(Arc::clone(fs), dir)? {
        return Ok(Some(state));
    }
    let mut found = Vec::new();
    if let Some(&first) = listing.tables.first() {
        found.push(format!("{} tables (e.g. {})", listing.tables.len(), table_file_name(first)));
    }
    for &n in &listing.logs {
        if !log_is_unused(&**fs, &dir.join(log_file_name(n))) {
            found.push(format!("{} with records", log_file_name(n)));
        }
    }
    for &n in &listing.manifests {
        let path = dir.join(manifest_file_name(n));
        if !Manifest::is_unused(&**fs, &path).unwrap_or(false) {
            found.push(manifest_file_name(n));
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    Err(Error::corruption(
        dir.join(CURRENT_FILE_NAME),
        0,
        format!(
            "CURRENT is missing, but the directory holds a database: {}; refusing to start a \
             new database over it (nothing was deleted)",
            found.join(", ")
        ),
    ))
}

/// Whether the log at `path` holds no record and no damage: what a crash right after its
/// creation leaves. Unreadable counts as holding something.
fn log_is_unused(fs: &dyn FileSystem, path: &Path) -> bool {
    let Ok(mut reader) = LogReader::open(fs, path, RecoveryMode::PointInTime) else {
        return false;
    };
    matches!(reader.next_record(), Ok(None)) && !reader.stopped_at_corruption()
}

/// Step 3: refuses a recovered state that the directory proves is missing synced edits, or
/// whose files were lost, before anything is written or deleted.
///
/// A manifest edit is synced before any file it makes obsolete is deleted, so:
/// * the log the state names as `log_number` is deleted only after an edit moved past it:
///   if it is gone, that edit is missing (or the log was deleted from outside);
/// * a table the state names is deleted only after an edit removed it: same;
/// * a sealed log the state records is deleted only after an edit moved past it: same.
///
/// Files the state does not name (tables numbered at or above its counter, a log it does
/// not know) prove nothing: they are the outputs of the flush or compaction the crash
/// interrupted, whose edit was never acknowledged (`docs/design.md`, "What recovery trusts").
pub(crate) fn validate(dir: &Path, state: &RecoveredState, listing: &DirListing) -> Result<()> {
    let refuse = |missing: PathBuf, what: String| {
        let why = format!(
            "{} does not exist, but {what}: the database lost files, or the manifest lost synced \
             edits; refusing to recover an older state (nothing was deleted)",
            missing.display()
        );
        Err(match state.dropped_tail {
            // The dropped "torn" record is the likely culprit: it was synced after all.
            Some((at, _)) => Error::corruption(
                dir.join(manifest_file_name(state.manifest_number)),
                at,
                format!("the last record was dropped as a torn write, but {why}"),
            ),
            None => Error::corruption(&missing, 0, why),
        })
    };
    if !listing.logs.contains(&state.log_number) {
        return refuse(
            dir.join(log_file_name(state.log_number)),
            "the manifest names it as the oldest log holding unflushed writes".into(),
        );
    }
    for seal in &state.sealed_logs {
        if !listing.logs.contains(&seal.number) {
            return refuse(
                dir.join(log_file_name(seal.number)),
                format!(
                    "the manifest records it as sealed with {} bytes through sequence {}",
                    seal.length, seal.last_sequence
                ),
            );
        }
    }
    for number in state.version.live_file_numbers() {
        if !listing.tables.contains(&number) {
            return refuse(
                dir.join(table_file_name(number)),
                "the manifest names it as a live table".into(),
            );
        }
    }
    Ok(())
}

/// Step 4's check of a sealed log once read: it must hold exactly its recorded bytes, all
/// intact, ending at the recorded sequence. Every byte was durable when it was sealed, so a
/// shortfall is lost acknowledged writes, not a torn tail. Returns the corruption to report.
fn check_sealed_log(
    path: &Path,
    seal: &SealedLog,
    size: u64,
    reader: &LogReader,
    last_seq: Option<u64>,
) -> Result<Option<Error>> {
    let sealed = format!(
        "the log was sealed (at a memtable switch or a clean close) with {} bytes through \
         sequence {}, so all of it was durable",
        seal.length, seal.last_sequence
    );
    if let Some((at, len)) = reader.dropped_tail() {
        return Ok(Some(Error::corruption(
            path,
            at,
            format!(
                "{len} bytes from here are damaged or cut short (file is {size} bytes); {sealed}"
            ),
        )));
    }
    if size != seal.length {
        return Ok(Some(Error::corruption(
            path,
            size.min(seal.length),
            format!("the file is {size} bytes; {sealed}"),
        )));
    }
    if last_seq.is_some_and(|s| s != seal.last_sequence) {
        return Ok(Some(Error::corruption(
            path,
            0,
            format!("its last record ends at sequence {last_seq:?}; {sealed}"),
        )));
    }
    Ok(None)
}

impl DbInner {
    /// What a clean close leaves for the next open: the active log (closed, so synced and
    /// final) and every log sealed since the last edit, recorded in one synced manifest edit.
    pub(crate) fn record_clean_close(&self) -> Result<()> {
        let active = {
            let w = self.commit.lock();
            SealedLog {
                number: w.mem.wal_number(),
                length: w.wal()?.written_len(),
                last_sequence: w.logged_seq,
            }
        };
        self.versions.record_clean_close(active)
    }
}

/// Whether none of the logs `numbers` holds a record (each is empty, a bare header, or a
/// torn first record).
fn logs_hold_no_records(fs: &dyn FileSystem, dir: &Path, numbers: &[u64]) -> Result<bool> {
    for &n in numbers {
        let mut reader = LogReader::open(fs, &dir.join(log_file_name(n)), RecoveryMode::Strict)?;
        if reader.next_record()?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A sorted run yields exactly what a memtable fed the same batches yields, in the
        /// same order: the tables a reopen builds do not depend on which one replayed.
        #[test]
        fn a_sorted_run_orders_entries_as_a_memtable_does(
            batches in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::collection::vec(0u8..4, 0..12), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..6)),
                    1..6,
                ),
                1..20,
            )
        ) {
            let (mut mem, mut run) = (Arc::new(MemTable::new(0)), SortedRun::default());
            let mut seq = 1;
            for entries in &batches {
                let mut b = WriteBatch::new();
                for (k, put, v) in entries {
                    if *put { b.put(k, v) } else { b.delete(k) }
                }
                b.set_sequence(seq);
                seq += entries.len() as u64;
                mem.add(&b);
                run.add(&b);
            }
            let from_mem: Vec<(Vec<u8>, Vec<u8>)> =
                mem.entries().map(|e| (e.key().to_vec(), e.value().to_vec())).collect();
            let from_run: Vec<(Vec<u8>, Vec<u8>)> =
                run.sorted().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(from_mem, from_run);
        }
    }
}
