//! Flush: the thread that turns immutable memtables into level-0 tables, and
//! [`build_table`], which recovery shares to write the memtables it replays.
//!
//! A flush writes and fdatasyncs the table, fsyncs the directory, and only then installs a
//! version naming it (one manifest edit that also retires the memtable's log); a table whose
//! build or directory fsync failed is removed, so a full disk is not kept full by it.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use strata_compaction::{FileMeta, VersionEdit};
use strata_core::fs::FileSystem;
use strata_core::range_del::RangeTombstone;
use strata_core::{IoResultExt, Result};
use strata_sstable::{TableBuilder, TableOptions};

use crate::background::catch_panic;
use crate::inner::DbInner;
use crate::memtable::MemTable;

/// The flush thread: flushes the oldest immutable memtable whenever there is one, until
/// shutdown; a failed (or panicking) flush poisons the database.
pub(crate) fn flush_loop(db: &Arc<DbInner>) {
    loop {
        let imm = {
            let mut bg = db.background.lock();
            loop {
                if bg.shutdown {
                    return;
                }
                if !db.health.is_poisoned() {
                    if let Some(imm) = db.current_view().imms.last().cloned() {
                        bg.flush_running = true;
                        break imm;
                    }
                }
                db.background.wait(&mut bg, None);
            }
        };
        let result = catch_panic("flush", || db.flush_memtable(&imm));
        db.background.lock().flush_running = false;
        match result {
            Err(e) => db.poison(&e),
            Ok(()) => db.background.notify(),
        }
    }
}

/// Writes every entry of `mem` to the table at `path`; `None` (and no file) if it is empty.
/// The table is fdatasynced; its directory entry is not: the caller syncs the directory
/// once for all its outputs, before the manifest names them. On failure no file is left
/// (best effort): on a full disk, a partial table would hold the space a retry needs.
pub(crate) fn build_table(
    fs: &Arc<dyn FileSystem>,
    path: &Path,
    options: &TableOptions,
    number: u64,
    mem: &MemTable,
) -> Result<Option<FileMeta>> {
    let range_dels = mem.range_tombstones();
    let range_dels = range_dels.iter().flat_map(|set| set.iter());
    let entries = mem.entries().map(|e| (e.key(), e.value()));
    build_table_from(fs, path, options, number, entries, range_dels)
}

/// [`build_table`] from `(internal key, value)` pairs in internal-key order and range
/// tombstones (any order).
pub(crate) fn build_table_from<'a>(
    fs: &Arc<dyn FileSystem>,
    path: &Path,
    options: &TableOptions,
    number: u64,
    entries: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    mut range_dels: impl Iterator<Item = RangeTombstone>,
) -> Result<Option<FileMeta>> {
    let mut builder = TableBuilder::new(&**fs, path, options)?;
    let mut added = Ok(());
    for (key, value) in entries {
        added = builder.add(key, value);
        if added.is_err() {
            break;
        }
    }
    if added.is_ok() {
        added = range_dels.try_for_each(|t| builder.add_range_tombstone(t));
    }
    if let Err(e) = added {
        let _ = builder.abandon();
        return Err(e);
    }
    if builder.is_empty() {
        builder.abandon()?;
        return Ok(None);
    }
    let props = builder.finish()?;
    Ok(Some(FileMeta::from_properties(number, props)))
}

impl DbInner {
    /// Flushes the oldest immutable memtable `imm` to a level-0 table and installs it.
    fn flush_memtable(&self, imm: &Arc<MemTable>) -> Result<()> {
        // Every write assigned to this memtable must have finished inserting.
        self.wait_visible(imm.sealed_seq());
        let started = Instant::now();
        let number = self.versions.allocate_table_number();
        let result = (|| {
            let path = self.tables.table_path(number);
            let meta = build_table(&self.fs, &path, &self.opts.table_options(0), number, imm)?;
            if let Err(e) = self.fs.sync_dir(&self.dir).ctx("fsync directory", &self.dir) {
                // No manifest names the table yet, so removing it is safe; once `install`
                // has started, the manifest on disk may name it and it must stay.
                let _ = self.fs.remove(&path);
                return Err(e);
            }
            let mut edit = VersionEdit::default();
            if let Some(meta) = &meta {
                self.metrics.flush_bytes.fetch_add(meta.file_size, Ordering::Relaxed);
                self.metrics.level_written_bytes[0].fetch_add(meta.file_size, Ordering::Relaxed);
                edit.new_files.push((0, meta.clone()));
            }
            edit.last_sequence = Some(imm.sealed_seq());
            self.metrics.flush_duration.record(started.elapsed());
            self.install(edit, Some(imm))
        })();
        self.versions.release_outputs(&[number]);
        result?;
        self.versions.purge_obsolete_files();
        Ok(())
    }
}
