//! [`Db::checkpoint`]: a consistent, openable copy of the database in another directory,
//! made of hard links to its tables (copies where links are impossible) and a fresh
//! manifest.
//!
//! # How
//! 1. The memtables are flushed ([`Db::flush`]): writers wait only for the memtable switch,
//!    and every write before the switch is then in a table. The view taken right after
//!    (held until the end, so no purge deletes its tables) is a consistent prefix of the
//!    history: memtables flush oldest first, and each holds a contiguous run of sequence
//!    numbers.
//! 2. The target directory gets a marker file, `CHECKPOINT-UNFINISHED`, synced before
//!    anything else, so that a crash at any later point leaves a directory that
//!    [`Db::open`] refuses with a clear error instead of opening it (empty, or as a
//!    half-made tree).
//! 3. Each table of the view is linked (or copied and synced) into the target.
//! 4. An empty log, then a new MANIFEST holding one snapshot edit of the view (tables,
//!    compaction cursors, counters; that empty log as the one to replay) and `CURRENT` are
//!    written and synced, with the directory.
//! 5. The marker is removed and the directory synced: from here the checkpoint is a
//!    database.
//!
//! Tables are immutable and never reused under a name, so a hard link shares their bytes
//! safely: the source may later delete its name (after a compaction), the checkpoint keeps
//! its own.

use std::path::Path;

use strata_compaction::{log_file_name, table_file_name, Manifest};
use strata_core::fs::{parent_dir, FileSystem};
use strata_core::{Error, IoResultExt, Result};

use crate::db::Db;
use crate::dir::{link_or_copy, UNFINISHED_MARKER};

/// Makes `dir` the empty target of a checkpoint, marked unfinished: it must not exist or
/// be empty.
pub(crate) fn start_target(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    if fs.exists(dir).ctx("stat", dir)? && !fs.list(dir).ctx("list", dir)?.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "checkpoint directory {} exists and is not empty",
            dir.display()
        )));
    }
    fs.create_dir_all(dir).ctx("create directory", dir)?;
    let parent = parent_dir(dir);
    fs.sync_dir(&parent).ctx("fsync directory", &parent)?;
    let marker = dir.join(UNFINISHED_MARKER);
    let mut f = fs.create(&marker).ctx("create", &marker)?;
    f.sync_data().ctx("fdatasync", &marker)?;
    fs.sync_dir(dir).ctx("fsync directory", dir)
}

/// Removes the marker: `dir` is a finished checkpoint once this returns.
pub(crate) fn finish_target(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let marker = dir.join(UNFINISHED_MARKER);
    fs.remove(&marker).ctx("remove", &marker)?;
    fs.sync_dir(dir).ctx("fsync directory", dir)
}

/// What [`Db::checkpoint`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// Tables in the checkpoint.
    pub tables: usize,
    /// Of those, the ones copied because a hard link was impossible (another file system).
    pub copied: usize,
    /// Bytes of the tables (shared with the source where linked).
    pub table_bytes: u64,
}

impl Db {
    /// Writes a consistent copy of the database into `dir`, which must not exist or be
    /// empty, and returns when it is durable (files and directories fsynced). The copy holds
    /// every write made before the call (and possibly some made during it, always a prefix
    /// of the history: never a later write without an earlier one) and opens as an
    /// independent database with [`Db::open`]. Tables are hard links to the source's where
    /// the file system allows (so the checkpoint costs almost no space or time), copies
    /// otherwise. Writers wait only for one memtable switch.
    ///
    /// A crash while it runs never corrupts the source and never leaves a directory that
    /// opens: an interrupted checkpoint is refused by [`Db::open`] until the directory is
    /// deleted.
    ///
    /// ```
    /// use strata::{Db, Options};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path().join("live"), Options::default())?;
    /// db.put("k", "before")?;
    /// let info = db.checkpoint(dir.path().join("backup"))?;
    /// db.put("k", "after")?;
    /// let copy = Db::open(dir.path().join("backup"), Options::default())?;
    /// assert_eq!(copy.get("k")?.as_deref(), Some(&b"before"[..]));
    /// assert_eq!(info.copied, 0); // hard links on one file system
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let dir = dir.as_ref();
        let inner = &self.inner;
        inner.check_writable()?;
        if dir == inner.dir {
            return Err(Error::InvalidArgument("a checkpoint needs another directory".into()));
        }
        let fs = inner.fs.as_ref();
        self.flush()?;
        // Held to the end: its tables stay on disk while they are linked.
        let view = inner.versions.current();
        let last_sequence = inner.commit.visible();
        start_target(fs, dir)?;
        let mut info = CheckpointInfo { tables: 0, copied: 0, table_bytes: 0 };
        for level in 0..strata_compaction::NUM_LEVELS {
            for file in view.version.files(level) {
                let name = table_file_name(file.number);
                if link_or_copy(fs, &inner.dir.join(&name), &dir.join(&name))? {
                    info.copied += 1;
                }
                info.tables += 1;
                info.table_bytes += file.file_size;
            }
        }
        fs.sync_dir(dir).ctx("fsync directory", dir)?;
        // Numbers from the source's counter: unique there, and above every table's.
        let manifest_number = inner.versions.allocate_file_number();
        let log_number = inner.versions.allocate_file_number();
        // The tables hold everything: the log the manifest names is empty (recovery wants
        // the log it names to exist).
        let log = dir.join(log_file_name(log_number));
        let mut f = fs.create(&log).ctx("create", &log)?;
        f.sync_data().ctx("fdatasync", &log)?;
        drop(f);
        fs.sync_dir(dir).ctx("fsync directory", dir)?;
        let snapshot = crate::version_set::snapshot_edit(
            &view.version,
            &inner.versions.cursors(),
            log_number,
            &[],
            log_number + 1,
            last_sequence,
        );
        Manifest::create_new(std::sync::Arc::clone(&inner.fs), dir, manifest_number, &snapshot)?;
        finish_target(fs, dir)?;
        Ok(info)
    }
}
