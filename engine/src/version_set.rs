//! [`VersionSet`]: the table set and everything numbered with it — the current view,
//! versions handed out, the MANIFEST, file numbers, pending outputs, log seals, compaction
//! cursors — with the three operations that change them: [`VersionSet::install`],
//! table-number allocation, and [`VersionSet::purge_obsolete_files`].
//!
//! The view ([`SuperVersion`]) changes in one function, [`VersionSet::swap_view`], which also
//! updates its two mirrors (the level-0 table count the write path stalls on, and the count
//! of immutable memtables), so they never disagree with it for longer than that call.
//! Whoever swaps notifies the background part afterwards (`DbInner::view_changed`), so that
//! threads sleeping on what the view shows wake up.
//!
//! Locks, in order: the version lock (`state`) → `view` (held only to read or swap the
//! `Arc`); `pending_outputs`, `unrecorded_seals` and `cursors` are leaves, each taken alone
//! or under the version lock.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};
use strata_compaction::{
    apply_compact_pointers, parse_file_name, FileKind, SealedLog, Version, VersionEdit,
};
use strata_core::fs::FileSystem;
use strata_core::key::{InternalKey, SeqNo};
use strata_core::Result;

use crate::memtable::MemTable;
use crate::state::{SuperVersion, VersionState};
use crate::table_cache::TableCache;

pub(crate) struct VersionSet {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    tables: Arc<TableCache>,
    max_manifest_size: u64,
    state: Mutex<VersionState>,
    view: RwLock<Arc<SuperVersion>>,
    next_file_number: AtomicU64,
    /// Table numbers being written (not yet in a version): never purged as garbage.
    pending_outputs: Mutex<Vec<u64>>,
    /// Logs sealed by a memtable switch and not yet recorded in the manifest: the next edit
    /// carries them.
    unrecorded_seals: Mutex<Vec<SealedLog>>,
    /// Per level, where the next compaction of that level starts (round robin).
    cursors: Mutex<Vec<Option<InternalKey>>>,
    /// Mirror of the view: tables in level 0, for the write path's stall check (so that
    /// writers need not take the view's lock on every write).
    l0_files: AtomicUsize,
    /// Mirror of the view: immutable memtables waiting for flush.
    imm_count: AtomicUsize,
    /// Flushed memtables retired by an install.
    flushes: AtomicU64,
    /// Bytes of the sealed logs whose memtables are not flushed yet: with the active log,
    /// what a recovery would replay ([`crate::Options::max_total_wal_size`]).
    sealed_log_bytes: AtomicU64,
    /// Set by the write path when writers must wait for a flush because of the log
    /// bound, not the memtable count.
    wal_stall: std::sync::atomic::AtomicBool,
}

/// What a [`VersionSet`] starts from.
pub(crate) struct VersionSetParts {
    pub(crate) dir: PathBuf,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) tables: Arc<TableCache>,
    pub(crate) max_manifest_size: u64,
    pub(crate) state: VersionState,
    pub(crate) view: SuperVersion,
    pub(crate) next_file_number: u64,
    pub(crate) cursors: Vec<Option<InternalKey>>,
}

impl VersionSet {
    pub(crate) fn new(p: VersionSetParts) -> Self {
        let mut state = p.state;
        state.handed_out.push(Arc::downgrade(&p.view.version));
        VersionSet {
            l0_files: AtomicUsize::new(p.view.version.num_files(0)),
            imm_count: AtomicUsize::new(p.view.imms.len()),
            view: RwLock::new(Arc::new(p.view)),
            dir: p.dir,
            fs: p.fs,
            tables: p.tables,
            max_manifest_size: p.max_manifest_size,
            state: Mutex::new(state),
            next_file_number: AtomicU64::new(p.next_file_number),
            pending_outputs: Mutex::new(Vec::new()),
            unrecorded_seals: Mutex::new(Vec::new()),
            cursors: Mutex::new(p.cursors),
            flushes: AtomicU64::new(0),
            sealed_log_bytes: AtomicU64::new(0),
            wal_stall: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// What reads see now.
    pub(crate) fn current(&self) -> Arc<SuperVersion> {
        Arc::clone(&self.view.read())
    }

    /// The version lock, for reading the persistent state consistently (verify).
    pub(crate) fn lock(&self) -> MutexGuard<'_, VersionState> {
        self.state.lock()
    }

    /// Replaces the view with `next(current)` and updates its mirrors, under the view's lock.
    pub(crate) fn swap_view(&self, next: impl FnOnce(&SuperVersion) -> SuperVersion) {
        let mut view = self.view.write();
        let new = next(&view);
        self.l0_files.store(new.version.num_files(0), Ordering::Release);
        self.imm_count.store(new.imms.len(), Ordering::Release);
        *view = Arc::new(new);
    }

    pub(crate) fn l0_files(&self) -> usize {
        self.l0_files.load(Ordering::Acquire)
    }

    pub(crate) fn imm_count(&self) -> usize {
        self.imm_count.load(Ordering::Acquire)
    }

    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// A fresh file number (for a log or a manifest: tables use
    /// [`VersionSet::allocate_table_number`]).
    /// Counts a log sealed by a memtable switch until its memtable is flushed.
    pub(crate) fn add_sealed_log_bytes(&self, bytes: u64) {
        self.sealed_log_bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// The write path found the live logs at their bound.
    pub(crate) fn note_wal_stall(&self) {
        self.wal_stall.store(true, Ordering::Release);
    }

    /// Whether the last stall was for the log bound (and forget it).
    pub(crate) fn take_wal_stall(&self) -> bool {
        self.wal_stall.swap(false, Ordering::AcqRel)
    }

    /// Bytes of sealed logs still needed (their memtables wait for flush).
    pub(crate) fn sealed_log_bytes(&self) -> u64 {
        self.sealed_log_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn allocate_file_number(&self) -> u64 {
        self.next_file_number.fetch_add(1, Ordering::SeqCst)
    }

    /// Allocates the number of a table about to be written and registers it as a pending
    /// output, atomically with respect to [`VersionSet::purge_obsolete_files`]; the writer
    /// calls [`VersionSet::release_outputs`] when the table is installed or abandoned.
    pub(crate) fn allocate_table_number(&self) -> u64 {
        let mut pending = self.pending_outputs.lock();
        let number = self.next_file_number.fetch_add(1, Ordering::SeqCst);
        pending.push(number);
        number
    }

    pub(crate) fn release_outputs(&self, numbers: &[u64]) {
        self.pending_outputs.lock().retain(|n| !numbers.contains(n));
    }

    /// Records the seal of a log a memtable switch retired; the next edit carries it.
    pub(crate) fn add_seal(&self, seal: SealedLog) {
        self.unrecorded_seals.lock().push(seal);
    }

    /// The compaction cursors, per level.
    pub(crate) fn cursors(&self) -> Vec<Option<InternalKey>> {
        self.cursors.lock().clone()
    }

    /// Logs `edit` in the manifest and installs the version it makes; with `flushed`, also
    /// retires that (oldest) immutable memtable, whose log then becomes obsolete. The edit's
    /// compaction pointers advance the cursors. `visible_seq` is what a manifest rotation
    /// records when the edit names no last sequence.
    pub(crate) fn install(
        &self,
        edit: VersionEdit,
        flushed: Option<&Arc<MemTable>>,
        visible_seq: SeqNo,
    ) -> Result<()> {
        self.install_with(|_| Ok(edit), flushed, visible_seq).map(|_| ())
    }

    /// [`VersionSet::install`] of the edit `make` builds from the current version, under the
    /// version lock, so that no other install changes the version between the look and the
    /// edit (an ingest places its tables by what the levels hold). Returns the edit.
    pub(crate) fn install_with(
        &self,
        make: impl FnOnce(&Version) -> Result<VersionEdit>,
        flushed: Option<&Arc<MemTable>>,
        visible_seq: SeqNo,
    ) -> Result<VersionEdit> {
        let mut vs = self.state.lock();
        let view = self.current();
        let mut edit = make(&view.version)?;
        if let Some(imm) = flushed {
            // Logs older than the next-oldest memtable's are fully in tables now.
            let remaining = view.imms.iter().filter(|m| !Arc::ptr_eq(m, imm));
            let oldest_log = remaining.chain([&view.mem]).map(|m| m.wal_number()).min();
            edit.log_number = oldest_log;
        }
        edit.next_file_number = Some(self.next_file_number.load(Ordering::SeqCst));
        edit.sealed_logs = self.take_unrecorded_seals(edit.log_number.unwrap_or(vs.log_number));
        let version = Arc::new(view.version.apply(&edit)?);
        vs.manifest()?.log_edit(&edit)?;
        if let Some(log) = edit.log_number {
            vs.log_number = log;
        }
        vs.sealed_logs.extend_from_slice(&edit.sealed_logs);
        let log_number = vs.log_number;
        vs.sealed_logs.retain(|s| s.number >= log_number);
        vs.handed_out.push(Arc::downgrade(&version));
        apply_compact_pointers(&mut self.cursors.lock(), &edit);
        if let Some(imm) = flushed {
            let bytes = imm.log_bytes();
            let _ = self.sealed_log_bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(bytes))
            });
            // Counted before the swap: a `flush()` waiter returns as soon as it sees it.
            self.flushes.fetch_add(1, Ordering::AcqRel);
        }
        self.swap_view(|current| {
            let imms = current
                .imms
                .iter()
                .filter(|m| flushed.is_none_or(|f| !Arc::ptr_eq(m, f)))
                .cloned()
                .collect();
            SuperVersion::new(Arc::clone(&current.mem), imms, version)
        });
        if vs.manifest()?.size_bytes() > self.max_manifest_size {
            let number = self.allocate_file_number();
            let snapshot = snapshot_edit(
                &self.current().version,
                &self.cursors.lock(),
                vs.log_number,
                &vs.sealed_logs,
                self.next_file_number.load(Ordering::SeqCst),
                edit.last_sequence.unwrap_or(visible_seq),
            );
            vs.manifest()?.rotate(number, &snapshot)?;
        }
        Ok(edit)
    }

    /// What a clean close leaves for the next open: the active log's seal (`active`: closed,
    /// so synced and final) and every log sealed since the last edit, in one synced edit.
    pub(crate) fn record_clean_close(&self, active: SealedLog) -> Result<()> {
        let mut vs = self.state.lock();
        let mut edit = VersionEdit {
            sealed_logs: self.take_unrecorded_seals(vs.log_number),
            ..VersionEdit::default()
        };
        edit.sealed_logs.push(active);
        vs.manifest()?.log_edit(&edit)?;
        vs.sealed_logs.extend_from_slice(&edit.sealed_logs);
        Ok(())
    }

    /// The seals of memtable switches not yet in the manifest, for the edit about to be
    /// written; those below `log_number` (flushed by that edit or earlier) are dropped.
    fn take_unrecorded_seals(&self, log_number: u64) -> Vec<SealedLog> {
        let mut seals = std::mem::take(&mut *self.unrecorded_seals.lock());
        seals.retain(|s| s.number >= log_number);
        seals
    }

    /// The tables some version handed out or some running job still uses, and the bound
    /// below which every number was allocated before this look (`vs` is the version lock).
    pub(crate) fn tables_in_use(&self, vs: &mut VersionState) -> (HashSet<u64>, u64) {
        vs.handed_out.retain(|w| w.strong_count() > 0);
        let mut live: HashSet<u64> = HashSet::new();
        for v in vs.handed_out.iter().filter_map(|w| w.upgrade()) {
            live.extend(v.live_file_numbers());
        }
        let pending = self.pending_outputs.lock();
        live.extend(pending.iter().copied());
        // Read under the pending lock: allocation registers under it too.
        (live, self.next_file_number.load(Ordering::SeqCst))
    }

    /// Deletes tables no version reads, logs older than the manifest's log number, old
    /// manifests and temporary files. Failures are harmless (the file is garbage and the
    /// next purge or open retries), so they are ignored.
    ///
    /// Nothing is deleted once the manifest failed an append or sync: the edit may have
    /// reached the disk, naming tables no version of this process holds (seen as a
    /// concurrent flush's purge deleting a failed compaction's outputs).
    ///
    /// Only what the live state proves obsolete goes, and only files of this database's
    /// own canonical names ([`parse_file_name`]): anything else in the directory is never
    /// touched. At open this runs only after recovery validated the state against the
    /// directory, so a state that lost synced edits (whose tables a purge would delete) never
    /// gets here.
    ///
    /// The directory is listed after the live set is computed, so it may show files born
    /// in between: only numbers allocated before the live set was taken are candidates.
    /// Allocation and registration as a pending output happen under one lock
    /// ([`VersionSet::allocate_table_number`]), so a number below that bound is either in the
    /// live set already or garbage.
    pub(crate) fn purge_obsolete_files(&self) {
        let (live, log_number, manifest_number, allocated_below) = {
            let mut vs = self.state.lock();
            let (live, allocated_below) = self.tables_in_use(&mut vs);
            // A read-only database deletes nothing: the files belong to their writer.
            let Some(manifest) = &vs.manifest else { return };
            // Nor does one whose manifest failed: the failed edit may be on disk, naming
            // outputs that no version here holds. The next open decides what is garbage.
            if manifest.is_poisoned() {
                return;
            }
            (live, vs.log_number, manifest.number(), allocated_below)
        };
        let Ok(mut names) = self.fs.list(&self.dir) else { return };
        // Oldest first: if this purge stops part way, the log an older manifest state names
        // is gone before any newer one, and recovery refuses that state instead of
        // replaying around a hole (`docs/design.md`, "What recovery trusts").
        names.sort_by_key(|name| {
            parse_file_name(name).map(|kind| match kind {
                FileKind::Log(n)
                | FileKind::Table(n)
                | FileKind::Manifest(n)
                | FileKind::Temp(n) => n,
                _ => u64::MAX,
            })
        });
        for name in names {
            let obsolete = match parse_file_name(&name) {
                Some(FileKind::Table(n)) => n < allocated_below && !live.contains(&n),
                Some(FileKind::Log(n)) => n < log_number,
                Some(FileKind::Manifest(n)) => n < manifest_number,
                Some(FileKind::Temp(n)) => n < allocated_below,
                _ => false,
            };
            if obsolete {
                if let Some(FileKind::Table(n)) = parse_file_name(&name) {
                    self.tables.evict(n);
                }
                let _ = self.fs.remove(&self.dir.join(&name));
            }
        }
    }
}

/// The first record of a new MANIFEST: everything recovery needs to rebuild the state
/// without the manifests before it (tables, compaction cursors, counters, sealed logs).
pub(crate) fn snapshot_edit(
    version: &Version,
    cursors: &[Option<InternalKey>],
    log_number: u64,
    sealed_logs: &[SealedLog],
    next_file_number: u64,
    last_sequence: SeqNo,
) -> VersionEdit {
    let mut snapshot = version.snapshot_edit();
    snapshot.compact_pointers =
        cursors.iter().enumerate().filter_map(|(l, k)| Some((l, k.clone()?))).collect();
    snapshot.log_number = Some(log_number);
    snapshot.sealed_logs = sealed_logs.to_vec();
    snapshot.next_file_number = Some(next_file_number);
    snapshot.last_sequence = Some(last_sequence);
    snapshot
}
