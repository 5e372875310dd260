//! Background work: starting and stopping the flush and compaction threads (a panic in
//! either poisons the database), and the installation of new versions with the cleanup of
//! files no version reads. The flush itself is [`crate::flush`]; compaction is
//! [`crate::compaction`].
//!
//! One thread is reserved for flushes, so a flush never waits behind a long compaction.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_compaction::{parse_file_name, FileKind, VersionEdit};
use strata_core::{Error, Result};

use crate::db::{DbInner, SuperVersion};
use crate::memtable::MemTable;

/// Starts the flush and compaction threads. If the OS refuses one, the error is returned
/// and the caller must [`DbInner::close`] the database, which stops the one that started.
pub(crate) fn start(db: &Arc<DbInner>) -> Result<()> {
    let flusher = Arc::clone(db);
    let handle = strata_core::thread::spawn("strata-flush", move || {
        guard_thread(&flusher, "flush", crate::flush::flush_loop)
    })
    .map_err(|e| Error::io("spawn the flush thread", &db.dir, e))?;
    db.threads.lock().push(handle);
    let compactor = Arc::clone(db);
    let handle = strata_core::thread::spawn("strata-compact", move || {
        guard_thread(&compactor, "compaction", crate::compaction::compaction_loop)
    })
    .map_err(|e| Error::io("spawn the compaction thread", &db.dir, e))?;
    db.threads.lock().push(handle);
    Ok(())
}

/// Runs `job`, turning a panic in it into [`Error::Panicked`]. Each background job runs
/// under this, so that a panic resets the job's bookkeeping like any other failure and
/// poisons the database: every writer, `flush` and `wait_for_compaction` waiting for that
/// thread then fails with [`Error::Poisoned`] instead of waiting forever.
pub(crate) fn catch_panic<T>(thread: &'static str, job: impl FnOnce() -> Result<T>) -> Result<T> {
    // Unwind safety: the shared state a job touches is behind parking_lot locks (released,
    // not poisoned, by the unwind), and the caller poisons the database, so no write, flush
    // or compaction builds on whatever the half-done job left; reopening recovers.
    std::panic::catch_unwind(AssertUnwindSafe(job))
        .unwrap_or_else(|payload| Err(strata_core::thread::panic_error(thread, payload.as_ref())))
}

/// Backstop for a panic outside any job (in a loop's own bookkeeping): the thread ends, and
/// the database is poisoned so that nothing waits for it.
fn guard_thread(db: &Arc<DbInner>, thread: &'static str, body: fn(&Arc<DbInner>)) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| body(db))) {
        db.poison(&strata_core::thread::panic_error(thread, payload.as_ref()));
    }
}

pub(crate) fn stop(db: &DbInner) {
    db.bg.lock().shutdown = true;
    db.bg_cv.notify_all();
    db.publish_cv.notify_all();
    let threads: Vec<_> = db.threads.lock().drain(..).collect();
    for t in threads {
        let _ = t.join();
    }
}

/// The first record of a new MANIFEST: everything recovery needs to rebuild the state
/// without the manifests before it (tables, compaction cursors, counters, sealed logs).
pub(crate) fn snapshot_edit(
    version: &strata_compaction::Version,
    cursors: &[Option<strata_core::key::InternalKey>],
    log_number: u64,
    sealed_logs: &[strata_compaction::SealedLog],
    next_file_number: u64,
    last_sequence: strata_core::key::SeqNo,
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

impl DbInner {
    /// Logs `edit` in the manifest and installs the version it makes; with `flushed`, also
    /// retires that (oldest) immutable memtable, whose log then becomes obsolete.
    pub(crate) fn install(
        &self,
        mut edit: VersionEdit,
        flushed: Option<&Arc<MemTable>>,
    ) -> Result<()> {
        let mut vs = self.versions.lock();
        let view = self.current_view();
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
        if flushed.is_some() {
            // Counted before the swap: a `flush()` waiter returns as soon as it sees it.
            self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
        }
        let retired = {
            let mut current = self.view.write();
            let imms = current
                .imms
                .iter()
                .filter(|m| flushed.is_none_or(|f| !Arc::ptr_eq(m, f)))
                .cloned()
                .collect::<Vec<_>>();
            let retired = imms.len() < current.imms.len();
            self.l0_files.store(version.num_files(0), Ordering::Release);
            *current = Arc::new(SuperVersion { mem: Arc::clone(&current.mem), imms, version });
            retired
        };
        if retired {
            // `bg` is taken after `view` is released: the order is bg -> view everywhere.
            let _bg = self.bg.lock();
            self.imm_count.fetch_sub(1, Ordering::AcqRel);
        }
        self.bg_cv.notify_all();
        if vs.manifest()?.size_bytes() > self.opts.max_manifest_size {
            let number = self.next_file_number.fetch_add(1, Ordering::SeqCst);
            let snapshot = snapshot_edit(
                &self.current_view().version,
                &self.compact_cursors.lock(),
                vs.log_number,
                &vs.sealed_logs,
                self.next_file_number.load(Ordering::SeqCst),
                edit.last_sequence.unwrap_or(self.visible_seq.load(Ordering::Acquire)),
            );
            vs.manifest()?.rotate(number, &snapshot)?;
        }
        Ok(())
    }

    /// Allocates the number of a table about to be written and registers it as a pending
    /// output, atomically with respect to [`DbInner::purge_obsolete_files`].
    pub(crate) fn allocate_table_number(&self) -> u64 {
        let mut pending = self.pending_outputs.lock();
        let number = self.next_file_number.fetch_add(1, Ordering::SeqCst);
        pending.push(number);
        number
    }

    /// Deletes tables no version reads, logs older than the manifest's log number, old
    /// manifests and temporary files. Failures are harmless (the file is garbage and the
    /// next purge or open retries), so they are ignored.
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
    /// ([`DbInner::allocate_table_number`]), so a number below that bound is either in the
    /// live set already or garbage.
    pub(crate) fn purge_obsolete_files(&self) {
        let (live, log_number, manifest_number, allocated_below) = {
            let mut vs = self.versions.lock();
            vs.handed_out.retain(|w| w.strong_count() > 0);
            let mut live: HashSet<u64> = HashSet::new();
            for v in vs.handed_out.iter().filter_map(|w| w.upgrade()) {
                live.extend(v.live_file_numbers());
            }
            let pending = self.pending_outputs.lock();
            live.extend(pending.iter().copied());
            let allocated_below = self.next_file_number.load(Ordering::SeqCst);
            // A read-only database deletes nothing: the files belong to their writer.
            let Some(manifest) = &vs.manifest else { return };
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
