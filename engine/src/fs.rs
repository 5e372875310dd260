//! The file layer strata runs on, for [`Options::file_system`](crate::Options::file_system):
//! every file the engine creates, writes, syncs, renames, maps or deletes goes through a
//! [`FileSystem`]. The default is [`OsFileSystem`], the real one; implement the trait (and
//! [`WritableFile`] for its files) to put strata on something else — to count or throttle
//! I/O, to inject faults — and pass it as an `Arc<dyn FileSystem>`.
//!
//! What strata assumes of an implementation (what `fdatasync`, a directory sync and a
//! rename must guarantee) is written on [`FileSystem`] and in `docs/design.md`.
//!
//! With the `sim` cargo feature, `strata::fs::sim` adds `SimFileSystem`: an in-memory file system
//! that simulates power loss and injects I/O errors, for crash tests of programs built on
//! strata. Without the feature it is not compiled (nor is its random-number dependency).
//!
//! ```
//! use std::io;
//! use std::path::Path;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use strata::fs::{FileBytes, FileLock, FileSystem, OsFileSystem, WritableFile};
//! use strata::{Db, Options};
//!
//! /// The real file system, counting the files strata creates.
//! #[derive(Debug, Default)]
//! struct Counting {
//!     created: AtomicU64,
//! }
//!
//! impl FileSystem for Counting {
//!     fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
//!         self.created.fetch_add(1, Ordering::Relaxed);
//!         OsFileSystem.create(path)
//!     }
//!     fn map(&self, path: &Path) -> io::Result<FileBytes> { OsFileSystem.map(path) }
//!     fn rename(&self, from: &Path, to: &Path) -> io::Result<()> { OsFileSystem.rename(from, to) }
//!     fn remove(&self, path: &Path) -> io::Result<()> { OsFileSystem.remove(path) }
//!     fn exists(&self, path: &Path) -> io::Result<bool> { OsFileSystem.exists(path) }
//!     fn file_size(&self, path: &Path) -> io::Result<u64> { OsFileSystem.file_size(path) }
//!     fn list(&self, dir: &Path) -> io::Result<Vec<String>> { OsFileSystem.list(dir) }
//!     fn create_dir_all(&self, dir: &Path) -> io::Result<()> { OsFileSystem.create_dir_all(dir) }
//!     fn sync_dir(&self, dir: &Path) -> io::Result<()> { OsFileSystem.sync_dir(dir) }
//!     fn lock(&self, path: &Path) -> io::Result<FileLock> { OsFileSystem.lock(path) }
//! }
//!
//! let fs = Arc::new(Counting::default());
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::default().file_system(fs.clone()))?;
//! db.put("k", "v")?;
//! db.close()?;
//! assert!(fs.created.load(Ordering::Relaxed) > 0); // a log, a manifest, CURRENT, ...
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use strata_core::fs::{FileBytes, FileLock, FileSystem, OsFileSystem, WritableFile};

#[cfg(feature = "sim")]
pub mod sim {
    //! The simulated file system (cargo feature `sim`): [`SimFileSystem`] keeps files in
    //! memory, tracks which bytes and names are durable, and on [`SimFileSystem::crash`]
    //! keeps only what a power cut would; [`SimFileSystem::fail_nth`] injects I/O errors.
    //!
    //! ```
    //! use std::sync::Arc;
    //! use strata::fs::sim::{CrashMode, SimFileSystem};
    //! use strata::{Db, Durability, Options};
    //!
    //! let disk = SimFileSystem::new();
    //! let opts = || Options::default().file_system(Arc::new(disk.process()));
    //! let db = Db::open("/db", opts())?;
    //! db.put_with("synced", "1", Durability::Sync)?;
    //! db.put_with("buffered", "2", Durability::Buffered)?;
    //! disk.crash(CrashMode::SyncedOnly); // power cut: only synced bytes survive
    //! drop(db);
    //! let db = Db::open("/db", opts())?;
    //! assert!(db.get("synced")?.is_some());
    //! assert!(db.get("buffered")?.is_none());
    //! # Ok::<(), Box<dyn std::error::Error>>(())
    //! ```

    pub use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};
}
