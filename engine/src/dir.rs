//! The directory a database (or a sharded database's root) lives in: the checks and steps
//! every open takes before it reads a file, written once for `Db` and `ShardedDb`.

use std::path::Path;

use strata_core::fs::{parent_dir, FileLock, FileSystem};
use strata_core::{Error, IoResultExt, Result};

/// Refuses an empty path before anything touches the file system: `"".join("LOCK")` is
/// `LOCK`, so an empty path would lock (and fill) the working directory.
pub(crate) fn check_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidArgument("the database path is empty".into()));
    }
    Ok(())
}

/// Creates `dir` if it is missing (durably: its parent is fsynced, so the new entry survives
/// a power cut), then takes the exclusive lock file `lock_name` in it, held for as long as
/// the returned lock lives. Another holder, in this process or another, is
/// [`Error::Locked`].
pub(crate) fn create_and_lock(
    fs: &dyn FileSystem,
    dir: &Path,
    lock_name: &str,
) -> Result<FileLock> {
    if !fs.exists(dir).ctx("stat", dir)? {
        fs.create_dir_all(dir).ctx("create directory", dir)?;
        let parent = parent_dir(dir);
        fs.sync_dir(&parent).ctx("fsync directory", &parent)?;
    }
    let lock_path = dir.join(lock_name);
    fs.lock(&lock_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked(dir.to_path_buf())
        } else {
            Error::io("lock", &lock_path, e)
        }
    })
}

/// The marker of a checkpoint being made (`checkpoint.rs`): while it exists the directory
/// is not a database.
pub(crate) const UNFINISHED_MARKER: &str = "CHECKPOINT-UNFINISHED";

/// Refuses to open `dir` if a checkpoint into it was interrupted.
pub(crate) fn refuse_unfinished(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let marker = dir.join(UNFINISHED_MARKER);
    if fs.exists(&marker).ctx("stat", &marker)? {
        return Err(Error::InvalidArgument(format!(
            "{} holds an unfinished checkpoint (the process or machine stopped while it was \
             made): delete the directory and make the checkpoint again",
            dir.display()
        )));
    }
    Ok(())
}

/// Links `from` to `to`, or copies it (and syncs the copy) where a link is impossible (as
/// across file systems), for checkpoints and ingests. Returns whether it copied.
pub(crate) fn link_or_copy(fs: &dyn FileSystem, from: &Path, to: &Path) -> Result<bool> {
    if fs.hard_link(from, to).is_ok() {
        return Ok(false);
    }
    let bytes = fs.map(from).ctx("read", from)?;
    let mut f = fs.create(to).ctx("create", to)?;
    f.append(&bytes).ctx("write", to)?;
    f.sync_data().ctx("fdatasync", to)?;
    Ok(true)
}
