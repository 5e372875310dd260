//! [`SimFileSystem`]: an in-memory [`FileSystem`] that simulates power loss and injects I/O
//! errors, for crash tests, fuzz targets and fault-injection tests.
//!
//! # The model
//! * Every file is an inode with its bytes and the length that the last successful
//!   `sync_data` made durable. Inodes are append-only: `create` on an existing name makes a
//!   new inode, as `O_TRUNC` followed by appends looks after a crash.
//! * Names live in two tables: the *live* table (what the running process sees) and the
//!   *durable* table (what survives a crash). `sync_dir(d)` copies the live entries of `d`
//!   into the durable table, so creations, renames and removals in `d` become durable
//!   together, as on a journaling file system.
//! * [`SimFileSystem::crash`] is a power cut: every durable name keeps its inode's synced
//!   bytes, plus — with [`CrashMode::TornTail`] — a random prefix of any length of the
//!   unsynced tail. Names never made durable vanish; removals and renames not made durable
//!   are undone. Every file handle of the "old process" then fails with an error, so a
//!   database that is still running stops writing, as it would when the machine dies.
//! * Directories are durable as soon as they are created (a simplification: strata creates
//!   a database directory once, before any file in it matters).
//!
//! # Faults
//! [`SimFileSystem::fail_nth`] makes the n-th next operation of a kind fail with `EIO`;
//! [`SimFileSystem::set_space_budget`] makes appends fail with `ENOSPC` once that many more
//! bytes were appended. A failed `sync_data` leaves the file's durable length unchanged and
//! the unsynced bytes droppable by a later crash, like a kernel that dropped dirty pages.
//!
//! ```
//! use std::path::Path;
//! use strata_core::fs::FileSystem;
//! use strata_core::sim::{CrashMode, SimFileSystem};
//! let fs = SimFileSystem::new();
//! fs.create_dir_all(Path::new("/db"))?;
//! let mut f = fs.create(Path::new("/db/log"))?;
//! f.append(b"durable")?;
//! f.sync_data()?;
//! fs.sync_dir(Path::new("/db"))?;
//! f.append(b" lost")?;
//! fs.crash(CrashMode::SyncedOnly);
//! assert_eq!(fs.read(Path::new("/db/log"))?, b"durable");
//! assert!(f.append(b"x").is_err()); // the old process is gone
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

use crate::fs::{parent_dir, FileBytes, FileLock, FileSystem, WritableFile};

/// What a simulated power cut keeps of unsynced data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every file keeps exactly its synced bytes.
    SyncedOnly,
    /// Every file keeps its synced bytes plus a prefix, of random length (possibly all or
    /// none), of its unsynced tail; the lengths are drawn from `seed`.
    TornTail {
        /// Seed of the random prefix lengths, so a failing case can be replayed.
        seed: u64,
    },
}

/// A kind of operation that [`SimFileSystem::fail_nth`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultOp {
    /// `map` and `read`.
    Read,
    /// `append`.
    Write,
    /// `sync_data` and `sync_dir`.
    Sync,
    /// `rename`.
    Rename,
    /// `create`.
    Create,
    /// `remove`.
    Remove,
}

#[derive(Debug)]
struct Inode {
    data: Vec<u8>,
    synced_len: usize,
    /// Bytes named in writeback hints: counted only, since a hint makes nothing durable.
    writeback_hinted: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every crash; handles from an older epoch belong to a dead process.
    epoch: u64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    /// Ops counted per kind since the file system was made.
    op_counts: HashMap<FaultOp, u64>,
    /// For each kind, the op counts (absolute) at which an op fails.
    fail_at: HashMap<FaultOp, BTreeSet<u64>>,
    space_left: Option<u64>,
}

impl State {
    fn count(&mut self, op: FaultOp) -> io::Result<()> {
        let n = self.op_counts.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        if self.fail_at.get_mut(&op).is_some_and(|set| set.remove(&n)) {
            return Err(io::Error::other(format!("injected EIO on {op:?} #{n}")));
        }
        Ok(())
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.live.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        let dir = parent_dir(path);
        if self.dirs.contains(&dir) {
            Ok(())
        } else {
            Err(not_found(&dir))
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn dead_process() -> io::Error {
    io::Error::other("simulated crash: this handle belongs to a process that died")
}

/// The simulated file system; clones share the same state (one "disk").
///
/// A handle from [`SimFileSystem::process`] is the disk as one process sees it: once a
/// crash "kills" that process, every operation through the handle fails, so threads of a
/// database still running after the simulated power cut (a flush, a compaction) cannot
/// touch the rebooted disk — a dead machine does nothing.
#[derive(Debug, Clone, Default)]
pub struct SimFileSystem {
    state: Arc<Mutex<State>>,
    /// For a [`SimFileSystem::process`] handle: the epoch of the process it belongs to.
    process_epoch: Option<u64>,
}

impl SimFileSystem {
    /// An empty disk holding only the root directory `/`.
    pub fn new() -> Self {
        let fs = SimFileSystem::default();
        fs.state.lock().dirs.insert(PathBuf::from("/"));
        fs
    }

    /// A handle to this disk for the process running now: it stops working at the next
    /// [`SimFileSystem::crash`]. Give it to the database under test; reopen after a crash
    /// with a new one.
    ///
    /// ```
    /// use std::path::Path;
    /// use strata_core::fs::FileSystem;
    /// use strata_core::sim::{CrashMode, SimFileSystem};
    /// let disk = SimFileSystem::new();
    /// let old = disk.process();
    /// disk.crash(CrashMode::SyncedOnly);
    /// assert!(old.create_dir_all(Path::new("/db")).is_err()); // the old process is dead
    /// assert!(disk.process().create_dir_all(Path::new("/db")).is_ok());
    /// ```
    pub fn process(&self) -> SimFileSystem {
        let epoch = self.state.lock().epoch;
        SimFileSystem { state: Arc::clone(&self.state), process_epoch: Some(epoch) }
    }

    /// The state, if this handle's process is alive.
    fn live(&self) -> io::Result<parking_lot::MutexGuard<'_, State>> {
        let st = self.state.lock();
        match self.process_epoch {
            Some(e) if e != st.epoch => Err(dead_process()),
            _ => Ok(st),
        }
    }

    /// Simulates a power cut (see the module docs), then "reboots": the disk holds what
    /// survived, locks are released and every old handle fails from now on.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.lock();
        let mut rng = match mode {
            CrashMode::SyncedOnly => None,
            CrashMode::TornTail { seed } => Some(rand::rngs::SmallRng::seed_from_u64(seed)),
        };
        let durable = st.durable.clone();
        let mut survivors = HashMap::new();
        for ino in durable.values() {
            if survivors.contains_key(ino) {
                continue;
            }
            let Some(inode) = st.inodes.get(ino) else { continue };
            let unsynced = inode.data.len() - inode.synced_len;
            let keep = match rng.as_mut() {
                Some(rng) if unsynced > 0 => rng.random_range(0..=unsynced),
                _ => 0,
            };
            let data = inode.data[..inode.synced_len + keep].to_vec();
            let synced_len = data.len();
            survivors.insert(*ino, Inode { data, synced_len, writeback_hinted: 0 });
        }
        st.inodes = survivors;
        st.live = durable;
        st.locks.clear();
        st.epoch += 1;
    }

    /// Makes the `n`-th next operation of kind `op` (1 = the very next) fail with `EIO`.
    pub fn fail_nth(&self, op: FaultOp, n: u64) {
        assert!(n >= 1, "n counts from 1");
        let mut st = self.state.lock();
        let at = st.op_counts.get(&op).copied().unwrap_or(0) + n;
        st.fail_at.entry(op).or_default().insert(at);
    }

    /// Appends fail with `ENOSPC` once `bytes` more bytes were appended (`None`: no limit).
    pub fn set_space_budget(&self, bytes: Option<u64>) {
        self.state.lock().space_left = bytes;
    }

    /// Cancels every pending injected fault and the space budget.
    pub fn clear_faults(&self) {
        let mut st = self.state.lock();
        st.fail_at.clear();
        st.space_left = None;
    }

    /// How many operations of kind `op` were attempted so far.
    pub fn op_count(&self, op: FaultOp) -> u64 {
        self.state.lock().op_counts.get(&op).copied().unwrap_or(0)
    }

    /// Replaces the bytes of an existing file, durably and without counting as an operation:
    /// for corruption tests that flip bytes "on the platter".
    pub fn overwrite(&self, path: &Path, data: Vec<u8>) -> io::Result<()> {
        let mut st = self.state.lock();
        let ino = st.inode_of(path)?;
        let synced_len = data.len();
        st.inodes.insert(ino, Inode { data, synced_len, writeback_hinted: 0 });
        Ok(())
    }

    /// The durable length of a file (bytes a crash now would keep at least).
    pub fn synced_len(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let ino = st.inode_of(path)?;
        Ok(st.inodes.get(&ino).map_or(0, |i| i.synced_len as u64))
    }

    /// Bytes of `path` named in [`WritableFile::start_writeback`] hints so far. A hint
    /// changes nothing else here: like on a real disk, only a sync makes data durable.
    pub fn writeback_hinted(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let ino = st.inode_of(path)?;
        Ok(st.inodes.get(&ino).map_or(0, |i| i.writeback_hinted))
    }

    /// Every live file path, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.lock().live.keys().cloned().collect()
    }
}

struct SimWritableFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    epoch: u64,
    len: u64,
}

impl SimWritableFile {
    fn with_inode<T>(
        &self,
        op: FaultOp,
        f: impl FnOnce(&mut State) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut st = self.state.lock();
        if st.epoch != self.epoch {
            return Err(dead_process());
        }
        st.count(op)?;
        f(&mut st)
    }
}

impl WritableFile for SimWritableFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let ino = self.ino;
        self.with_inode(FaultOp::Write, |st| {
            if let Some(left) = st.space_left.as_mut() {
                if (buf.len() as u64) > *left {
                    // Like a real short write on a full disk: what fits is written.
                    let fit = *left as usize;
                    *left = 0;
                    if let Some(inode) = st.inodes.get_mut(&ino) {
                        inode.data.extend_from_slice(&buf[..fit]);
                    }
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
                *left -= buf.len() as u64;
            }
            let inode = st.inodes.get_mut(&ino).ok_or_else(dead_process)?;
            inode.data.extend_from_slice(buf);
            Ok(())
        })?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let ino = self.ino;
        self.with_inode(FaultOp::Sync, |st| {
            let inode = st.inodes.get_mut(&ino).ok_or_else(dead_process)?;
            inode.synced_len = inode.data.len();
            Ok(())
        })
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn start_writeback(&mut self, _offset: u64, len: u64) -> io::Result<()> {
        // Not counted as an operation for fault injection: the faults tests aim at the
        // writes and syncs that decide durability, and a hint is neither.
        let mut st = self.state.lock();
        if st.epoch != self.epoch {
            return Err(dead_process());
        }
        let inode = st.inodes.get_mut(&self.ino).ok_or_else(dead_process)?;
        inode.writeback_hinted += len;
        Ok(())
    }
}

struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    epoch: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        // After a crash the lock table was cleared; a new process may hold this path now.
        if st.epoch == self.epoch {
            st.locks.remove(&self.path);
        }
    }
}

impl FileSystem for SimFileSystem {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut st = self.live()?;
        st.count(FaultOp::Create)?;
        st.check_parent(path)?;
        let ino = st.next_inode;
        st.next_inode += 1;
        st.inodes.insert(ino, Inode { data: Vec::new(), synced_len: 0, writeback_hinted: 0 });
        st.live.insert(path.to_path_buf(), ino);
        let epoch = st.epoch;
        Ok(Box::new(SimWritableFile { state: self.state.clone(), ino, epoch, len: 0 }))
    }

    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        Ok(FileBytes::from_vec(self.read(path)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut st = self.live()?;
        st.count(FaultOp::Read)?;
        let ino = st.inode_of(path)?;
        Ok(st.inodes.get(&ino).map(|i| i.data.clone()).unwrap_or_default())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        st.count(FaultOp::Rename)?;
        st.check_parent(to)?;
        let ino = st.live.remove(from).ok_or_else(|| not_found(from))?;
        st.live.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        st.count(FaultOp::Create)?;
        st.check_parent(to)?;
        if st.live.contains_key(to) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, to.display().to_string()));
        }
        let ino = *st.live.get(from).ok_or_else(|| not_found(from))?;
        st.live.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        st.count(FaultOp::Remove)?;
        st.live.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let st = self.live()?;
        Ok(st.live.contains_key(path) || st.dirs.contains(path))
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let st = self.live()?;
        let ino = st.inode_of(path)?;
        Ok(st.inodes.get(&ino).map_or(0, |i| i.data.len() as u64))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.live()?;
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let files = st.live.keys().filter(|p| p.parent() == Some(dir));
        let dirs = st.dirs.iter().filter(|p| p.parent() == Some(dir));
        Ok(files
            .chain(dirs)
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                st.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        st.count(FaultOp::Sync)?;
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable.retain(|p, _| !in_dir(p));
        let entries: Vec<(PathBuf, u64)> =
            st.live.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
        st.durable.extend(entries);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<FileLock> {
        let mut st = self.live()?;
        if !st.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked", path.display()),
            ));
        }
        let guard =
            SimLock { state: self.state.clone(), path: path.to_path_buf(), epoch: st.epoch };
        Ok(FileLock::new(Box::new(guard)))
    }
}

/// How an [`InterceptCreate`] creates a file: given the path and the file system it wraps.
pub type CreateHook =
    dyn Fn(&Path, &dyn FileSystem) -> io::Result<Box<dyn WritableFile>> + Send + Sync;

/// A file system that hands every `create` to a hook and every other call to the file
/// system it wraps: for tests that must hold up, fail, panic in or wrap the creation of
/// some files (a table the flush writes, a log's appends) while the rest runs as usual.
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use strata_core::fs::FileSystem;
/// use strata_core::sim::{InterceptCreate, SimFileSystem};
/// let disk = SimFileSystem::new();
/// disk.create_dir_all(Path::new("/db")).unwrap();
/// let fs = InterceptCreate::new(Arc::new(disk.process()), |path, inner| {
///     if path.extension().is_some_and(|e| e == "sst") {
///         return Err(std::io::Error::other("no tables today"));
///     }
///     inner.create(path)
/// });
/// assert!(fs.create(Path::new("/db/000007.sst")).is_err());
/// assert!(fs.create(Path::new("/db/000008.log")).is_ok());
/// ```
pub struct InterceptCreate {
    inner: Arc<dyn FileSystem>,
    hook: Box<CreateHook>,
}

impl InterceptCreate {
    /// Wraps `inner`, creating files through `hook`.
    pub fn new(
        inner: Arc<dyn FileSystem>,
        hook: impl Fn(&Path, &dyn FileSystem) -> io::Result<Box<dyn WritableFile>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        InterceptCreate { inner, hook: Box::new(hook) }
    }
}

impl std::fmt::Debug for InterceptCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterceptCreate").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl FileSystem for InterceptCreate {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        (self.hook)(path, &*self.inner)
    }
    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        self.inner.map(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.hard_link(from, to)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<FileLock> {
        self.inner.lock(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn setup() -> SimFileSystem {
        let fs = SimFileSystem::new();
        fs.create_dir_all(&p("/d")).unwrap();
        fs
    }

    #[test]
    fn unsynced_name_vanishes_on_crash_even_if_data_synced() {
        let fs = setup();
        let mut f = fs.create(&p("/d/a")).unwrap();
        f.append(b"abc").unwrap();
        f.sync_data().unwrap();
        fs.crash(CrashMode::SyncedOnly);
        assert!(!fs.exists(&p("/d/a")).unwrap());
    }

    #[test]
    fn rename_is_undone_without_dir_sync() {
        let fs = setup();
        let mut f = fs.create(&p("/d/tmp")).unwrap();
        f.append(b"v1").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        fs.rename(&p("/d/tmp"), &p("/d/CURRENT")).unwrap();
        assert!(fs.exists(&p("/d/CURRENT")).unwrap());
        fs.crash(CrashMode::SyncedOnly);
        assert!(!fs.exists(&p("/d/CURRENT")).unwrap());
        assert_eq!(fs.read(&p("/d/tmp")).unwrap(), b"v1");
    }

    #[test]
    fn removal_is_undone_without_dir_sync() {
        let fs = setup();
        let mut f = fs.create(&p("/d/a")).unwrap();
        f.append(b"x").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        fs.remove(&p("/d/a")).unwrap();
        fs.crash(CrashMode::SyncedOnly);
        assert_eq!(fs.read(&p("/d/a")).unwrap(), b"x");
    }

    #[test]
    fn torn_tail_keeps_a_prefix_of_unsynced_bytes() {
        let mut seen = BTreeSet::new();
        for seed in 0..200 {
            let fs = setup();
            let mut f = fs.create(&p("/d/a")).unwrap();
            f.append(b"sync").unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(&p("/d")).unwrap();
            f.append(b"0123456789").unwrap();
            fs.crash(CrashMode::TornTail { seed });
            let data = fs.read(&p("/d/a")).unwrap();
            assert!(b"sync0123456789".starts_with(&data) && data.len() >= 4);
            seen.insert(data.len());
        }
        assert!(seen.contains(&4) && seen.contains(&14) && seen.len() > 5, "{seen:?}");
    }

    #[test]
    fn injected_faults_hit_the_nth_op() {
        let fs = setup();
        let mut f = fs.create(&p("/d/a")).unwrap();
        fs.fail_nth(FaultOp::Sync, 2);
        f.sync_data().unwrap();
        assert!(f.sync_data().is_err());
        f.sync_data().unwrap();
        fs.fail_nth(FaultOp::Write, 1);
        assert!(f.append(b"x").is_err());
        f.append(b"y").unwrap();
    }

    #[test]
    fn failed_sync_leaves_data_unsynced() {
        let fs = setup();
        let mut f = fs.create(&p("/d/a")).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.append(b"x").unwrap();
        fs.fail_nth(FaultOp::Sync, 1);
        assert!(f.sync_data().is_err());
        assert_eq!(fs.synced_len(&p("/d/a")).unwrap(), 0);
        fs.crash(CrashMode::SyncedOnly);
        assert!(fs.read(&p("/d/a")).unwrap().is_empty());
    }

    #[test]
    fn space_budget_gives_enospc_with_short_write() {
        let fs = setup();
        let mut f = fs.create(&p("/d/a")).unwrap();
        fs.set_space_budget(Some(5));
        f.append(b"abc").unwrap();
        let err = f.append(b"defg").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(fs.read(&p("/d/a")).unwrap(), b"abcde");
    }

    #[test]
    fn locks_are_exclusive_and_released_by_crash() {
        let fs = setup();
        let held = fs.lock(&p("/d/LOCK")).unwrap();
        assert_eq!(fs.lock(&p("/d/LOCK")).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        fs.crash(CrashMode::SyncedOnly);
        let new_holder = fs.lock(&p("/d/LOCK")).unwrap();
        drop(held); // the dead process's guard must not release the new holder's lock
        assert!(fs.lock(&p("/d/LOCK")).is_err());
        drop(new_holder);
        fs.lock(&p("/d/LOCK")).unwrap();
    }

    #[test]
    fn list_shows_live_names_in_dir_only() {
        let fs = setup();
        fs.create_dir_all(&p("/d/sub")).unwrap();
        drop(fs.create(&p("/d/a")).unwrap());
        drop(fs.create(&p("/d/sub/b")).unwrap());
        let mut names = fs.list(&p("/d")).unwrap();
        names.sort();
        assert_eq!(names, vec!["a".to_string(), "sub".to_string()]);
    }
}
