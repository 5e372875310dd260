//! The file layer: every file the engine creates, writes, syncs, renames, maps or deletes goes
//! through a [`FileSystem`].
//!
//! The layer is deliberately narrow — append-only writable files, whole-file read-only maps,
//! and directory operations — because that is all an LSM tree needs, and because a narrow
//! layer is one that a test implementation (`sim::SimFileSystem`, feature `sim`) can simulate
//! exactly, including what a power cut leaves behind.
//!
//! # What strata assumes of the real file system
//! * `fdatasync` on a file makes its written bytes, and the size needed to read them back,
//!   durable; a failed `fdatasync` may have dropped dirty pages, so the data is never assumed
//!   safe afterwards (callers poison themselves, they do not retry).
//! * A new file name, a rename or a removal is durable only after the parent directory is
//!   fsynced ([`FileSystem::sync_dir`]).
//! * Writes are not assumed atomic at any granularity: a crash may leave any prefix of the
//!   unsynced tail of a file. Formats detect torn tails with checksums.
//! * `rename` within one directory atomically replaces the target.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file system strata can run on: [`OsFileSystem`], the simulated `sim::SimFileSystem`
/// (feature `sim`), or one of your own.
///
/// ```
/// use strata_core::fs::{FileSystem, OsFileSystem};
/// let dir = tempfile::tempdir()?;
/// let fs = OsFileSystem;
/// let path = dir.path().join("hello");
/// let mut f = fs.create(&path)?;
/// f.append(b"hello")?;
/// f.sync_data()?;
/// fs.sync_dir(dir.path())?;
/// assert_eq!(&fs.map(&path)?[..], b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` (truncating any existing file) for appending. The new name is not
    /// durable until [`FileSystem::sync_dir`] on its directory.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;

    /// Maps the whole of an existing file read-only. Only for files that nobody writes any
    /// more (finished tables, logs at recovery): see [`FileBytes`].
    fn map(&self, path: &Path) -> io::Result<FileBytes>;

    /// Reads a small file (CURRENT, a manifest) whole.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        Ok(self.map(path)?.to_vec())
    }

    /// Renames `from` to `to`, atomically replacing `to`. Durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file. Durable after `sync_dir`.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// The size of a file in bytes.
    fn file_size(&self, path: &Path) -> io::Result<u64>;

    /// The names (not paths) of the entries directly in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Makes the names in `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Makes `to` a second name of the existing file `from` (a hard link), so that both
    /// name the same bytes. Durable after `sync_dir` on `to`'s directory. File systems that
    /// cannot link (or two paths on different devices) return an error, and callers copy
    /// instead; the default does exactly that.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Err(io::Error::new(io::ErrorKind::Unsupported, "hard links are not supported"))
    }

    /// Takes an exclusive advisory lock on `path` (created if missing), held until the
    /// returned guard drops. Fails with `io::ErrorKind::WouldBlock` when another handle, in
    /// this or another process, holds it.
    fn lock(&self, path: &Path) -> io::Result<FileLock>;
}

/// A file open for appending, from [`FileSystem::create`].
pub trait WritableFile: Send + Sync {
    /// Appends all of `buf` (one `write` call where the OS allows).
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`: makes every appended byte durable. After an error, nothing appended since
    /// the last successful sync may be assumed durable, and retrying proves nothing.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// Whether nothing was appended yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Asks the OS to start writing the appended bytes `[offset, offset + len)` to the
    /// device, without waiting for them (Linux's `sync_file_range` with
    /// `SYNC_FILE_RANGE_WRITE`). Only a hint: it makes nothing durable and orders nothing,
    /// but a later [`WritableFile::sync_data`] finds that much less to write. An error is
    /// still an I/O error of the file. The default does nothing.
    ///
    /// ```
    /// use strata_core::fs::{FileSystem, OsFileSystem};
    /// let dir = tempfile::tempdir()?;
    /// let mut log = OsFileSystem.create(&dir.path().join("log"))?;
    /// log.append(&[0u8; 1 << 20])?;
    /// log.start_writeback(0, 1 << 20)?; // returns at once; nothing is durable yet
    /// log.sync_data()?;                 // now it is, and this sync had less to do
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn start_writeback(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// A held lock from [`FileSystem::lock`]; dropping it releases the lock.
pub struct FileLock {
    _guard: Box<dyn Send + Sync>,
}

impl FileLock {
    /// Wraps whatever releases the lock when dropped.
    pub fn new(guard: Box<dyn Send + Sync>) -> Self {
        FileLock { _guard: guard }
    }
}

impl fmt::Debug for FileLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileLock")
    }
}

/// The bytes of a whole file, shared and read-only: a memory map on a real disk, an
/// in-memory copy in the simulator. Cheap to clone.
///
/// ```
/// let bytes = strata_core::fs::FileBytes::from_vec(b"abc".to_vec());
/// assert_eq!(&bytes[1..], b"bc");
/// ```
#[derive(Clone)]
pub struct FileBytes(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl FileBytes {
    /// File bytes held in memory.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        FileBytes(Arc::new(bytes))
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

/// The real file system, through `std::fs` and `memmap2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFileSystem;

struct OsWritableFile {
    file: File,
    len: u64,
}

impl WritableFile for OsWritableFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> u64 {
        self.len
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Ok(()); // beyond any real file: nothing to start
        };
        // SAFETY: `sync_file_range` takes no pointers, so it cannot touch our memory; the
        // descriptor is owned by `self.file`, which is borrowed (so open) for the call.
        let rc = unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

struct MappedFile(memmap2::Mmap);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl FileSystem for OsFileSystem {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(OsWritableFile { file, len: 0 }))
    }

    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            // mmap(2) rejects empty mappings.
            return Ok(FileBytes::from_vec(Vec::new()));
        }
        // SAFETY: a mapping is undefined behaviour only if the file changes underneath it.
        // strata maps only files that no writer has open: finished tables (immutable once
        // `finish` returned, never reopened for writing; names are never reused) and logs at
        // recovery (before any writer starts). The engine holds the directory's LOCK file for
        // as long as it lives, so no other strata process writes them either. The one
        // exception is a read-only handle (`Db::open_read_only`), which takes no lock and may
        // map the log another process is appending to: a `WritableFile` can only append, so
        // the bytes inside the mapping (whose length is fixed when it is made) never change,
        // and strata never truncates a log. Modification by a foreign process is outside
        // strata's contract, as it is for every mmap-based engine (docs/design.md).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(FileBytes(Arc::new(MappedFile(map))))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn lock(&self, path: &Path) -> io::Result<FileLock> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(FileLock::new(Box::new(file))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked", path.display()),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The parent directory of `path` (`.` for a bare file name), for `sync_dir` after a create.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFileSystem;
        let lock = fs.lock(&dir.path().join("LOCK")).unwrap();
        let err = fs.lock(&dir.path().join("LOCK")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(lock);
        fs.lock(&dir.path().join("LOCK")).unwrap();
    }

    #[test]
    fn os_map_of_empty_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFileSystem;
        let path = dir.path().join("empty");
        drop(fs.create(&path).unwrap());
        assert!(fs.map(&path).unwrap().is_empty());
    }

    #[test]
    fn os_rename_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFileSystem;
        let a = dir.path().join("a");
        let mut f = fs.create(&a).unwrap();
        f.append(b"xyz").unwrap();
        assert_eq!(f.len(), 3);
        drop(f);
        fs.rename(&a, &dir.path().join("b")).unwrap();
        assert_eq!(fs.list(dir.path()).unwrap(), vec!["b".to_string()]);
        assert_eq!(fs.file_size(&dir.path().join("b")).unwrap(), 3);
        fs.remove(&dir.path().join("b")).unwrap();
        assert!(!fs.exists(&dir.path().join("b")).unwrap());
    }

    #[test]
    fn os_writeback_hint_leaves_the_file_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFileSystem;
        let path = dir.path().join("log");
        let mut f = fs.create(&path).unwrap();
        f.append(&[7u8; 10_000]).unwrap();
        f.start_writeback(0, 10_000).unwrap();
        f.start_writeback(4096, 1 << 40).unwrap(); // past the end: nothing to start
        f.append(b"tail").unwrap();
        f.sync_data().unwrap();
        drop(f);
        let bytes = fs.map(&path).unwrap();
        assert_eq!(bytes.len(), 10_004);
        assert!(bytes[..10_000].iter().all(|&b| b == 7));
        assert_eq!(&bytes[10_000..], b"tail");
    }
}
