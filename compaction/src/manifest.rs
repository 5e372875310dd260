//! [`Manifest`]: the on-disk history of the tree's versions, and `CURRENT`, which names the
//! live manifest. The byte layout is in `docs/format/manifest.md`.
//!
//! # Durability protocol
//! A manifest is a log file in the WAL's record framing (crate `strata-wal`: checksummed
//! fragments in 32 KiB blocks), written by one thread at a time (the engine holds its version
//! lock) with a plain [`LogWriter`], one append and one fdatasync per record. Its first
//! record is a header plus a full snapshot of the tree; every later record is one
//! [`VersionEdit`].
//!
//! * [`Manifest::create_new`] writes `MANIFEST-n` with the snapshot, fdatasyncs it, fsyncs the
//!   directory (the name `MANIFEST-n` is now durable), then switches `CURRENT` atomically:
//!   writes `CURRENT.tmp` = `"MANIFEST-n\n"`, fdatasyncs it, renames it over `CURRENT` and
//!   fsyncs the directory. A crash before the rename is durable leaves `CURRENT` naming the
//!   previous manifest (or no `CURRENT`: a new database); after it, the new one. Either holds
//!   the same tree.
//! * [`Manifest::log_edit`] appends the edit as one record and fdatasyncs before returning.
//!   A crash before the sync completes may leave a torn last record, which recovery drops:
//!   that edit was never acknowledged. Every edit whose `log_edit` returned `Ok` survives.
//! * The caller's half of the contract: an edit may reference a table only after the table
//!   file was fdatasynced and its directory fsynced, and the engine installs the new
//!   [`Version`] only after `log_edit` returned `Ok`. Files an edit deletes may be removed
//!   from disk only after `log_edit` returned `Ok` (and no reader uses them any more).
//! * A failed write or sync poisons the manifest: the bytes may or may not reach the disk,
//!   so every later call returns [`Error::Poisoned`]. The database must be reopened.
//! * [`Manifest::recover`] is read-only. After recovery the engine must start a fresh
//!   manifest with [`Manifest::create_new`] (number from `next_file_number`, snapshot from
//!   [`RecoveredState::snapshot_edit`]), never append to the recovered one: a dropped torn tail
//!   followed by new records would read as mid-file corruption.
//! * Rotation: when [`Manifest::size_bytes`] exceeds the engine's limit, it calls
//!   [`Manifest::rotate`] (or `create_new` itself) with a snapshot of the current version;
//!   once that returns, older manifests are obsolete and may be deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::fs::FileSystem;
use strata_core::key::{InternalKey, SeqNo};
use strata_core::{Error, IoResultExt, Result};
use strata_wal::{LogReader, LogWriter, LogWriterOptions, RecoveryMode, TornTail};

use crate::file_name::{
    manifest_file_name, parse_file_name, FileKind, CURRENT_FILE_NAME, CURRENT_TEMP_FILE_NAME,
};
use crate::version::{Version, NUM_LEVELS};
use crate::version_edit::{SealedLog, VersionEdit};

/// The first 8 bytes of a manifest's first record.
pub const MANIFEST_MAGIC: [u8; 8] = *b"STRATMAN";

/// The manifest format version this crate writes (bytes 8..12 of the first record).
///
/// 2 added the sealed-log field (tag 7); 3 added ingested files (tag 8, a new file with a
/// global sequence number). Versions 1 and 2 are still read: they simply record no sealed
/// logs or no ingested files. Older readers refuse a newer version by this number rather
/// than by an unknown tag in some later record.
pub const MANIFEST_FORMAT_VERSION: u32 = 4;

/// The oldest manifest format version this crate reads.
const OLDEST_READABLE_FORMAT_VERSION: u32 = 1;

const HEADER_LEN: usize = MANIFEST_MAGIC.len() + 4;

/// The state of the tree rebuilt from the manifest by [`Manifest::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredState {
    /// The live tables.
    pub version: Version,
    /// WAL files numbered below this are fully flushed; replay those numbered `>=` it.
    pub log_number: u64,
    /// The next unused file number. At least one more than every live table number and the
    /// manifest's own number, even if an edit recorded a smaller counter.
    pub next_file_number: u64,
    /// The largest sequence number in the tables; WAL replay continues after it.
    pub last_sequence: SeqNo,
    /// The number of the manifest that `CURRENT` names.
    pub manifest_number: u64,
    /// The last compaction cursor recorded per level, sorted by level (at most one each).
    pub compact_pointers: Vec<(usize, InternalKey)>,
    /// A torn last record that was dropped: `(offset, bytes)` (for the engine's log).
    pub dropped_tail: Option<(u64, u64)>,
    /// The sealed logs numbered `>= log_number` (the ones WAL replay reads), by number, with
    /// the latest record for each.
    pub sealed_logs: Vec<SealedLog>,
}

impl RecoveredState {
    /// The snapshot edit that rebuilds this state: the first record of the next manifest.
    pub fn snapshot_edit(&self) -> VersionEdit {
        let mut edit = self.version.snapshot_edit();
        edit.log_number = Some(self.log_number);
        edit.next_file_number = Some(self.next_file_number);
        edit.last_sequence = Some(self.last_sequence);
        edit.compact_pointers = self.compact_pointers.clone();
        edit.sealed_logs = self.sealed_logs.clone();
        edit
    }
}

/// The open, live manifest: appends [`VersionEdit`]s durably. See the module docs for the
/// durability protocol.
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use strata_compaction::{Manifest, VersionEdit};
/// use strata_core::sim::SimFileSystem;
/// use strata_core::fs::FileSystem;
/// let fs = Arc::new(SimFileSystem::new());
/// let dir = Path::new("/db");
/// fs.create_dir_all(dir).unwrap();
/// assert!(Manifest::recover(fs.clone(), dir)?.is_none()); // a new database
///
/// let mut snapshot = VersionEdit::default();
/// snapshot.log_number = Some(0);
/// snapshot.next_file_number = Some(2);
/// snapshot.last_sequence = Some(0);
/// let mut manifest = Manifest::create_new(fs.clone(), dir, 1, &snapshot)?;
///
/// let mut edit = VersionEdit::default();
/// edit.last_sequence = Some(42);
/// manifest.log_edit(&edit)?;
///
/// let state = Manifest::recover(fs.clone(), dir)?.expect("CURRENT exists");
/// assert_eq!((state.manifest_number, state.last_sequence), (1, 42));
/// # Ok::<(), strata_core::Error>(())
/// ```
pub struct Manifest {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    number: u64,
    path: PathBuf,
    log: LogWriter,
    poisoned: Option<Error>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// Writes `MANIFEST-{manifest_number}` holding `snapshot` and makes `CURRENT` name it,
    /// durably, in the order given in the module docs. Used to start a database, after every
    /// recovery, and to rotate a manifest that grew too large.
    ///
    /// `snapshot` must describe the whole tree: no deletions, and `log_number`,
    /// `next_file_number` (greater than `manifest_number`) and `last_sequence` set; otherwise
    /// [`Error::InvalidArgument`], as is a `manifest_number` that `CURRENT` already names
    /// (recreating the live manifest would truncate it). A leftover file of that number that
    /// `CURRENT` does not name (from a crash during an earlier `create_new`) is replaced.
    /// On an I/O error before the rename of `CURRENT.tmp`, the new file is garbage that no
    /// `CURRENT` names; after it, either manifest may be the live one after a crash. So the
    /// caller must treat a failed `create_new` during rotation as poisoning the old manifest
    /// too ([`Manifest::rotate`] does).
    pub fn create_new(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        manifest_number: u64,
        snapshot: &VersionEdit,
    ) -> Result<Manifest> {
        check_snapshot(manifest_number, snapshot)?;
        let current = dir.join(CURRENT_FILE_NAME);
        if fs.exists(&current).ctx("stat", &current)? {
            let content = fs.read(&current).ctx("read", &current)?;
            if parse_current(&content) == Some(manifest_number) {
                // Recreating the live manifest would truncate it: the tree would be lost.
                return Err(Error::InvalidArgument(format!(
                    "{} is the live manifest; a new manifest needs a new number",
                    manifest_file_name(manifest_number)
                )));
            }
        }
        let path = dir.join(manifest_file_name(manifest_number));
        let mut record = Vec::with_capacity(HEADER_LEN + 64 * snapshot.new_files.len());
        record.extend_from_slice(&MANIFEST_MAGIC);
        record.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
        snapshot.encode(&mut record);

        let mut log = LogWriter::create(&*fs, &path, LogWriterOptions::default())?;
        log.add_record(&record, true)?;
        // The manifest's bytes are durable; now its name, before CURRENT may point at it.
        fs.sync_dir(dir).ctx("fsync directory", dir)?;
        set_current(&*fs, dir, manifest_number)?;
        Ok(Manifest {
            fs,
            dir: dir.to_path_buf(),
            number: manifest_number,
            path,
            log,
            poisoned: None,
        })
    }

    /// Reads `CURRENT` in `dir` and replays the manifest it names. `Ok(None)` if there is no
    /// `CURRENT` (a new database; a crash during the very first `create_new` also leaves
    /// none).
    ///
    /// A torn last record (a crash during a `log_edit` that therefore never returned `Ok`)
    /// is dropped and reported in [`RecoveredState::dropped_tail`]. Everything else is
    /// [`Error::Corruption`] naming the file and offset: a `CURRENT` that does not hold a
    /// manifest name, a missing manifest, a bad header, damage followed by intact records, an
    /// edit that does not decode or does not apply, counters never recorded.
    pub fn recover(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Option<RecoveredState>> {
        let current = dir.join(CURRENT_FILE_NAME);
        if !fs.exists(&current).ctx("stat", &current)? {
            return Ok(None);
        }
        let content = fs.read(&current).ctx("read", &current)?;
        let manifest_number = parse_current(&content).ok_or_else(|| {
            Error::corruption(
                &current,
                0,
                format!(
                    "CURRENT does not hold a manifest name and newline: {:?}",
                    String::from_utf8_lossy(content.get(..64).unwrap_or(&content))
                ),
            )
        })?;
        let path = dir.join(manifest_file_name(manifest_number));
        if !fs.exists(&path).ctx("stat", &path)? {
            return Err(Error::corruption(&path, 0, "manifest named by CURRENT does not exist"));
        }
        let mut reader = LogReader::open(&*fs, &path, RecoveryMode::Strict)?;
        let mut version = Version::default();
        let (mut log_number, mut next_file_number, mut last_sequence) = (None, None, None);
        let mut compact_pointers: [Option<InternalKey>; NUM_LEVELS] = Default::default();
        let mut sealed_logs = std::collections::BTreeMap::new();
        let mut first = true;
        while let Some(record) = reader.next_record()? {
            let at = record.offset;
            let mut payload = record.payload;
            if first {
                payload = check_header(&path, at, payload)?;
            }
            let edit = VersionEdit::decode(payload).map_err(|reason| {
                Error::corruption(&path, at, format!("bad version edit: {reason}"))
            })?;
            if first && !edit.deleted_files.is_empty() {
                return Err(Error::corruption(
                    &path,
                    at,
                    "first record is not a snapshot: it deletes tables",
                ));
            }
            version = version.apply(&edit).map_err(|e| {
                Error::corruption(&path, at, format!("version edit does not apply: {e}"))
            })?;
            log_number = edit.log_number.or(log_number);
            next_file_number = edit.next_file_number.or(next_file_number);
            last_sequence = edit.last_sequence.or(last_sequence);
            for (level, key) in edit.compact_pointers {
                if let Some(slot) = compact_pointers.get_mut(level) {
                    *slot = Some(key);
                }
            }
            for log in edit.sealed_logs {
                sealed_logs.insert(log.number, log);
            }
            first = false;
        }
        if first {
            return Err(Error::corruption(&path, 0, "manifest holds no snapshot record"));
        }
        check_torn_tail(&path, &reader)?;
        let missing =
            |field: &str| Error::corruption(&path, 0, format!("manifest never recorded {field}"));
        let log_number = log_number.ok_or_else(|| missing("log_number"))?;
        let next_file_number = next_file_number.ok_or_else(|| missing("next_file_number"))?;
        let last_sequence = last_sequence.ok_or_else(|| missing("last_sequence"))?;
        // Never hand out a number that is in use, whatever the counter said.
        let next_file_number = version
            .live_file_numbers()
            .chain([manifest_number])
            .map(|n| n.saturating_add(1))
            .fold(next_file_number, u64::max);
        Ok(Some(RecoveredState {
            version,
            log_number,
            next_file_number,
            last_sequence,
            manifest_number,
            compact_pointers: compact_pointers
                .into_iter()
                .enumerate()
                .filter_map(|(level, key)| Some((level, key?)))
                .collect(),
            dropped_tail: reader.dropped_tail(),
            // Logs below log_number are flushed and may be gone: their seals mean nothing.
            sealed_logs: sealed_logs.split_off(&log_number).into_values().collect(),
        }))
    }

    /// Whether the manifest at `path`, which no `CURRENT` names, is what a crash during the
    /// very first [`Manifest::create_new`] of a database can leave: no record at all (a torn
    /// or missing first record included), or exactly one snapshot of an empty tree at
    /// sequence 0. Anything else in it (tables, later edits, sequence numbers in use,
    /// unreadable bytes) means a database lived here: its `CURRENT` is missing, and the
    /// directory must not be taken for a new one.
    ///
    /// ```
    /// use std::path::Path;
    /// use std::sync::Arc;
    /// use strata_compaction::{Manifest, VersionEdit};
    /// use strata_core::fs::FileSystem;
    /// use strata_core::sim::SimFileSystem;
    /// let fs = Arc::new(SimFileSystem::new());
    /// let dir = Path::new("/db");
    /// fs.create_dir_all(dir).unwrap();
    /// let mut snapshot = VersionEdit::default();
    /// snapshot.log_number = Some(2);
    /// snapshot.next_file_number = Some(4);
    /// snapshot.last_sequence = Some(0);
    /// let mut manifest = Manifest::create_new(fs.clone(), dir, 3, &snapshot)?;
    /// let path = dir.join("MANIFEST-000003");
    /// assert!(Manifest::is_unused(&*fs, &path)?);
    /// let mut edit = VersionEdit::default();
    /// edit.last_sequence = Some(9);
    /// manifest.log_edit(&edit)?;
    /// assert!(!Manifest::is_unused(&*fs, &path)?);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn is_unused(fs: &dyn FileSystem, path: &Path) -> Result<bool> {
        let Ok(mut reader) = LogReader::open(fs, path, RecoveryMode::PointInTime) else {
            return Ok(false);
        };
        let Some(record) = reader.next_record()? else {
            return Ok(!reader.stopped_at_corruption());
        };
        let (at, payload) = (record.offset, record.payload);
        let Ok(edit) = check_header(path, at, payload).map(VersionEdit::decode) else {
            return Ok(false);
        };
        let empty_snapshot = edit.is_ok_and(|e| {
            e.new_files.is_empty() && e.deleted_files.is_empty() && e.last_sequence == Some(0)
        });
        Ok(empty_snapshot && reader.next_record()?.is_none() && !reader.stopped_at_corruption())
    }

    /// Appends `edit` as one record and fdatasyncs it. Only after `Ok` may the engine install
    /// the version the edit makes (see the module docs for what must precede the call).
    ///
    /// A failure poisons the manifest: this call returns the error, every later call
    /// [`Error::Poisoned`].
    pub fn log_edit(&mut self, edit: &VersionEdit) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone().poisoned());
        }
        let mut record = Vec::new();
        edit.encode(&mut record);
        if let Err(e) = self.log.add_record(&record, true) {
            self.poisoned = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    /// Replaces this manifest by a new one, `MANIFEST-{new_number}`, that starts with
    /// `snapshot` (a snapshot of the current tree, as for [`Manifest::create_new`]). On
    /// success the old manifest file is obsolete and may be deleted. On an I/O failure this
    /// manifest is poisoned, because `CURRENT` may already name the new file; a refused
    /// argument ([`Error::InvalidArgument`], nothing written) leaves it usable.
    pub fn rotate(&mut self, new_number: u64, snapshot: &VersionEdit) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone().poisoned());
        }
        check_snapshot(new_number, snapshot)?;
        match Manifest::create_new(self.fs.clone(), &self.dir, new_number, snapshot) {
            Ok(new) => {
                *self = new;
                Ok(())
            }
            // Refused before anything was written: this manifest is still the live one.
            Err(e @ Error::InvalidArgument(_)) => Err(e),
            Err(e) => {
                self.poisoned = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The number of this manifest (`MANIFEST-{number}`).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The path of this manifest.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes written to the manifest file so far, for the rotation decision.
    pub fn size_bytes(&self) -> u64 {
        self.log.written_len()
    }

    /// Whether an earlier failure poisoned the manifest.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }
}

fn check_snapshot(manifest_number: u64, snapshot: &VersionEdit) -> Result<()> {
    let invalid = |what: &str| Err(Error::InvalidArgument(format!("manifest snapshot {what}")));
    if !snapshot.deleted_files.is_empty() {
        return invalid("must not delete tables");
    }
    if snapshot.log_number.is_none() || snapshot.last_sequence.is_none() {
        return invalid("must set log_number and last_sequence");
    }
    match snapshot.next_file_number {
        Some(next) if next > manifest_number => {}
        _ => return invalid("must set next_file_number above the manifest's own number"),
    }
    Version::default().apply(snapshot)?;
    Ok(())
}

/// Points `CURRENT` at `MANIFEST-{number}` atomically and durably.
fn set_current(fs: &dyn FileSystem, dir: &Path, number: u64) -> Result<()> {
    let tmp = dir.join(CURRENT_TEMP_FILE_NAME);
    let current = dir.join(CURRENT_FILE_NAME);
    let mut file = fs.create(&tmp).ctx("create", &tmp)?;
    file.append(format!("{}\n", manifest_file_name(number)).as_bytes()).ctx("write", &tmp)?;
    // The content must be durable before the rename can make it visible under CURRENT.
    file.sync_data().ctx("fdatasync", &tmp)?;
    drop(file);
    fs.rename(&tmp, &current).ctx("rename", &tmp)?;
    fs.sync_dir(dir).ctx("fsync directory", dir)
}

fn parse_current(content: &[u8]) -> Option<u64> {
    let name = std::str::from_utf8(content.strip_suffix(b"\n")?).ok()?;
    match parse_file_name(name)? {
        FileKind::Manifest(n) => Some(n),
        _ => None,
    }
}

/// Verifies that what the log reader dropped as a torn tail can be one: the fragments of a
/// single record cut short, with no intact fragment after the break.
///
/// Every `log_edit` syncs before returning and edits are never written concurrently, so a
/// crash can tear only the last record, and only by cutting it short. The reader's own scan
/// cannot always tell (when damage hits a fragment's length field in the last block it
/// cannot find the records after it); its byte-by-byte examination, affordable because it
/// runs only when a tail was dropped, turns "acknowledged edits silently lost" into
/// `Error::Corruption` (found by the corruption tests: a flipped bit in the last edit
/// silently dropped the last flush).
fn check_torn_tail(path: &Path, reader: &LogReader) -> Result<()> {
    match reader.examine_torn_tail() {
        None | Some(TornTail::CutShort) => Ok(()),
        Some(TornTail::DamagedRecord { at }) => Err(Error::corruption(
            path,
            at,
            "the last record is complete on disk but its checksum or header is damaged: \
             not a torn write",
        )),
        Some(TornTail::IntactFragmentAfter { at, intact_at }) => Err(Error::corruption(
            path,
            at,
            format!(
                "damaged record followed by an intact fragment at offset {intact_at}: \
                 not a torn tail"
            ),
        )),
    }
}

fn check_header<'a>(path: &Path, at: u64, payload: &'a [u8]) -> Result<&'a [u8]> {
    if payload.get(..MANIFEST_MAGIC.len()) != Some(&MANIFEST_MAGIC[..]) {
        return Err(Error::corruption(path, at, "first record lacks the manifest magic"));
    }
    let version = payload
        .get(MANIFEST_MAGIC.len()..HEADER_LEN)
        .and_then(|v| v.try_into().ok())
        .map(u32::from_le_bytes);
    if !version
        .is_some_and(|v| (OLDEST_READABLE_FORMAT_VERSION..=MANIFEST_FORMAT_VERSION).contains(&v))
    {
        return Err(Error::corruption(
            path,
            at,
            format!("unsupported manifest format version {version:?}"),
        ));
    }
    Ok(payload.get(HEADER_LEN..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_meta::FileMeta;
    use std::io;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use strata_core::fs::{FileBytes, FileLock, WritableFile};
    use strata_core::key::ValueKind;
    use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};
    use strata_wal::format::BLOCK_SIZE;
    use strata_wal::{Wal, WalOptions};

    /// A file system over a [`SimFileSystem`] on which the power fails after a budget of
    /// mutating operations (create, append, sync, rename, remove): from then on every one
    /// fails, so a crash "between any two steps" can be simulated by `sim.crash()` afterwards.
    #[derive(Debug)]
    struct PowerCut {
        sim: SimFileSystem,
        /// Operations left; negative means unlimited.
        budget: Arc<AtomicI64>,
        /// Set once an operation was refused.
        refused: Arc<AtomicBool>,
    }

    impl PowerCut {
        fn new(sim: &SimFileSystem) -> Arc<PowerCut> {
            Arc::new(PowerCut {
                sim: sim.clone(),
                budget: Arc::new(AtomicI64::new(-1)),
                refused: Arc::new(AtomicBool::new(false)),
            })
        }
        fn arm(&self, ops: i64) {
            self.budget.store(ops, Ordering::SeqCst);
        }
        fn was_cut(&self) -> bool {
            self.refused.load(Ordering::SeqCst)
        }
    }

    fn spend(budget: &AtomicI64, refused: &AtomicBool) -> io::Result<()> {
        let r = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
            b if b < 0 => Some(b),
            0 => None,
            b => Some(b - 1),
        });
        r.map(|_| ()).map_err(|_| {
            refused.store(true, Ordering::SeqCst);
            io::Error::other("power cut")
        })
    }

    struct CutFile {
        inner: Box<dyn WritableFile>,
        budget: Arc<AtomicI64>,
        refused: Arc<AtomicBool>,
    }

    impl WritableFile for CutFile {
        fn append(&mut self, buf: &[u8]) -> io::Result<()> {
            spend(&self.budget, &self.refused)?;
            self.inner.append(buf)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            spend(&self.budget, &self.refused)?;
            self.inner.sync_data()
        }
        fn len(&self) -> u64 {
            self.inner.len()
        }
    }

    impl FileSystem for PowerCut {
        fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
            spend(&self.budget, &self.refused)?;
            let inner = self.sim.create(path)?;
            Ok(Box::new(CutFile {
                inner,
                budget: self.budget.clone(),
                refused: self.refused.clone(),
            }))
        }
        fn map(&self, path: &Path) -> io::Result<FileBytes> {
            self.sim.map(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            spend(&self.budget, &self.refused)?;
            self.sim.rename(from, to)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            spend(&self.budget, &self.refused)?;
            self.sim.remove(path)
        }
        fn exists(&self, path: &Path) -> io::Result<bool> {
            self.sim.exists(path)
        }
        fn file_size(&self, path: &Path) -> io::Result<u64> {
            self.sim.file_size(path)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.sim.list(dir)
        }
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.sim.create_dir_all(dir)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            spend(&self.budget, &self.refused)?;
            self.sim.sync_dir(dir)
        }
        fn lock(&self, path: &Path) -> io::Result<FileLock> {
            self.sim.lock(path)
        }
    }

    const DIR: &str = "/db";

    fn dir() -> &'static Path {
        Path::new(DIR)
    }

    fn setup() -> SimFileSystem {
        let sim = SimFileSystem::new();
        sim.create_dir_all(dir()).unwrap();
        sim
    }

    fn table(number: u64, lo: &[u8], hi: &[u8], seq: u64) -> FileMeta {
        FileMeta {
            number,
            file_size: 1000 + number,
            smallest: InternalKey::new(lo, seq, ValueKind::Put),
            largest: InternalKey::new(hi, seq, ValueKind::Delete),
            smallest_seq: seq,
            largest_seq: seq,
            num_entries: 7,
            num_deletions: 1,
            global_seq: None,
            num_range_deletions: 0,
        }
    }

    fn initial_snapshot() -> VersionEdit {
        let mut e = VersionEdit {
            log_number: Some(2),
            next_file_number: Some(10),
            last_sequence: Some(100),
            ..VersionEdit::default()
        };
        e.new_files.push((0, table(3, b"a", b"m", 100)));
        e.new_files.push((1, table(4, b"a", b"f", 50)));
        e.new_files.push((1, table(5, b"g", b"z", 60)));
        e
    }

    /// The i-th edit of a deterministic history: a flush, then a compaction, alternating.
    fn edit(i: u64) -> VersionEdit {
        let number = 10 + i;
        let mut e = VersionEdit {
            log_number: Some(number),
            next_file_number: Some(number + 1),
            last_sequence: Some(100 + i),
            ..VersionEdit::default()
        };
        // Each edit adds a new L0 table, deletes the previous edit's, and moves a cursor.
        e.new_files.push((0, table(number, b"k", b"p", 100 + i)));
        if i > 0 {
            e.deleted_files.push((0, number - 1));
        }
        e.compact_pointers.push(((i % 3) as usize + 1, InternalKey::new(b"q", i, ValueKind::Put)));
        e
    }

    /// The state the manifest should recover after the snapshot and `edits` edits.
    fn expected(manifest_number: u64, edits: u64) -> RecoveredState {
        let mut version = Version::default().apply(&initial_snapshot()).unwrap();
        let mut pointers: [Option<InternalKey>; NUM_LEVELS] = Default::default();
        let mut state = (2, 10, 100);
        for i in 0..edits {
            let e = edit(i);
            version = version.apply(&e).unwrap();
            for (l, k) in e.compact_pointers {
                pointers[l] = Some(k);
            }
            state = (e.log_number.unwrap(), e.next_file_number.unwrap(), e.last_sequence.unwrap());
        }
        RecoveredState {
            version,
            log_number: state.0,
            next_file_number: state.1.max(manifest_number + 1),
            last_sequence: state.2,
            manifest_number,
            compact_pointers: pointers
                .into_iter()
                .enumerate()
                .filter_map(|(l, k)| Some((l, k?)))
                .collect(),
            dropped_tail: None,
            sealed_logs: Vec::new(),
        }
    }

    /// Recovers and compares everything but the informational `dropped_tail`.
    fn recover_state(fs: &SimFileSystem) -> Option<RecoveredState> {
        let mut s = Manifest::recover(Arc::new(fs.clone()), dir()).unwrap()?;
        s.dropped_tail = None;
        Some(s)
    }

    fn crash_modes() -> Vec<CrashMode> {
        let mut modes = vec![CrashMode::SyncedOnly];
        modes.extend((0..4).map(|seed| CrashMode::TornTail { seed }));
        modes
    }

    #[test]
    fn recover_equals_applied_state() {
        let sim = setup();
        let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
        let mut m = Manifest::create_new(fs.clone(), dir(), 1, &initial_snapshot()).unwrap();
        assert_eq!(recover_state(&sim), Some(expected(1, 0)));
        for i in 0..20 {
            m.log_edit(&edit(i)).unwrap();
        }
        assert_eq!(recover_state(&sim), Some(expected(1, 20)));
        sim.crash(CrashMode::SyncedOnly);
        let state = recover_state(&sim).unwrap();
        assert_eq!(state, expected(1, 20));
        assert_eq!(state.compact_pointers.len(), 3);
        // The snapshot of a recovered state rebuilds it in a new manifest.
        let n = state.next_file_number;
        let mut snapshot = state.snapshot_edit();
        snapshot.next_file_number = Some(n + 1);
        let _m2 = Manifest::create_new(fs, dir(), n, &snapshot).unwrap();
        assert_eq!(recover_state(&sim), Some(expected(n, 20)));
    }

    #[test]
    fn large_snapshot_spanning_blocks_round_trips() {
        let sim = setup();
        let mut snap = initial_snapshot();
        snap.new_files.clear();
        for n in 0..2000u64 {
            let key = format!("key{n:08}");
            snap.new_files
                .push((3, table(100 + n, key.as_bytes(), format!("{key}x").as_bytes(), n)));
        }
        snap.next_file_number = Some(5000);
        Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &snap).unwrap();
        sim.crash(CrashMode::SyncedOnly);
        let state = recover_state(&sim).unwrap();
        assert_eq!(state.version.num_files(3), 2000);
        assert_eq!(state.version, Version::default().apply(&snap).unwrap());
    }

    /// Runs `step` on a fresh copy of the history with the power cut after `ops` mutating
    /// operations, for every `ops` until `step` completes, crashing in every mode.
    /// `prepare` builds the durable state before the step; `check` judges the recovery.
    fn crash_at_every_step(
        prepare: impl Fn(&Arc<PowerCut>) -> Option<Manifest>,
        step: impl Fn(&Arc<PowerCut>, Option<Manifest>) -> Result<()>,
        check: impl Fn(Option<RecoveredState>, bool),
    ) {
        for mode in crash_modes() {
            for ops in 0.. {
                let sim = setup();
                let fs = PowerCut::new(&sim);
                let manifest = prepare(&fs);
                fs.arm(ops);
                let result = step(&fs, manifest);
                let cut = fs.was_cut();
                assert_eq!(result.is_ok(), !cut, "ops {ops}: {result:?}");
                sim.crash(mode);
                check(recover_state(&sim), result.is_ok());
                if !cut {
                    assert!(result.is_ok(), "step failed without a power cut: {result:?}");
                    assert!(ops > 3, "the step should take several operations");
                    break;
                }
            }
        }
    }

    #[test]
    fn crash_during_first_create_new_leaves_no_database_or_the_snapshot() {
        crash_at_every_step(
            |_| None,
            |fs, _| Manifest::create_new(fs.clone(), dir(), 1, &initial_snapshot()).map(drop),
            |state, acked| match state {
                None => assert!(!acked, "create_new returned Ok but recovery found no database"),
                Some(s) => assert_eq!(s, expected(1, 0)),
            },
        );
    }

    #[test]
    fn crash_during_log_edit_keeps_old_or_new_state_and_acked_edits() {
        for prior in [0u64, 3] {
            crash_at_every_step(
                |fs| {
                    let mut m =
                        Manifest::create_new(fs.clone(), dir(), 1, &initial_snapshot()).unwrap();
                    for i in 0..prior {
                        m.log_edit(&edit(i)).unwrap();
                    }
                    Some(m)
                },
                |_, m| {
                    let mut m = m.unwrap();
                    m.log_edit(&edit(prior))?;
                    m.log_edit(&edit(prior + 1))
                },
                |state, acked| {
                    let s = state.expect("the database existed before the step");
                    let candidates =
                        [expected(1, prior), expected(1, prior + 1), expected(1, prior + 2)];
                    assert!(candidates.contains(&s), "recovered a state that never existed: {s:?}");
                    if acked {
                        assert_eq!(s, expected(1, prior + 2));
                    }
                },
            );
        }
    }

    #[test]
    fn crash_during_rotation_keeps_old_or_new_manifest_with_the_same_tree() {
        crash_at_every_step(
            |fs| {
                let mut m =
                    Manifest::create_new(fs.clone(), dir(), 1, &initial_snapshot()).unwrap();
                for i in 0..5 {
                    m.log_edit(&edit(i)).unwrap();
                }
                Some(m)
            },
            |_, m| {
                let mut m = m.unwrap();
                let snapshot = expected(30, 5).snapshot_edit();
                m.rotate(30, &snapshot)?;
                assert_eq!(m.number(), 30);
                // The rotated manifest takes edits too.
                m.log_edit(&edit(5))
            },
            |state, acked| {
                let s = state.expect("the database existed before the step");
                let ok = [expected(1, 5), expected(30, 5), expected(30, 6)];
                assert!(ok.contains(&s), "recovered a state that never existed: {s:?}");
                if acked {
                    assert_eq!(s, expected(30, 6));
                }
            },
        );
    }

    #[test]
    fn failed_sync_poisons_the_manifest() {
        let sim = setup();
        let mut m =
            Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &initial_snapshot()).unwrap();
        m.log_edit(&edit(0)).unwrap();
        sim.fail_nth(FaultOp::Sync, 1);
        let err = m.log_edit(&edit(1)).unwrap_err();
        assert!(matches!(err, Error::Io { .. } | Error::Poisoned(_)), "{err}");
        assert!(m.is_poisoned());
        assert!(matches!(m.log_edit(&edit(1)), Err(Error::Poisoned(_))));
        assert!(matches!(m.rotate(50, &expected(50, 1).snapshot_edit()), Err(Error::Poisoned(_))));
        sim.crash(CrashMode::SyncedOnly);
        assert_eq!(recover_state(&sim), Some(expected(1, 1)));
    }

    #[test]
    fn failed_rotation_poisons_the_old_manifest() {
        let sim = setup();
        let mut m =
            Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &initial_snapshot()).unwrap();
        sim.fail_nth(FaultOp::Rename, 1);
        assert!(m.rotate(20, &expected(20, 0).snapshot_edit()).is_err());
        assert!(matches!(m.log_edit(&edit(0)), Err(Error::Poisoned(_))));
        assert_eq!(m.number(), 1);
    }

    #[test]
    fn bad_snapshots_are_refused() {
        let sim = setup();
        let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
        let mut no_counter = initial_snapshot();
        no_counter.last_sequence = None;
        let mut low_counter = initial_snapshot();
        low_counter.next_file_number = Some(7);
        let mut deletes = initial_snapshot();
        deletes.deleted_files.push((1, 4));
        for bad in [no_counter, low_counter, deletes] {
            let err = Manifest::create_new(fs.clone(), dir(), 7, &bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        }
        assert!(sim.files().is_empty(), "nothing may be written for a refused snapshot");
        let mut m = Manifest::create_new(fs.clone(), dir(), 1, &initial_snapshot()).unwrap();
        m.log_edit(&edit(0)).unwrap();
        let err = Manifest::create_new(fs.clone(), dir(), 1, &initial_snapshot()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(m.rotate(1, &expected(1, 1).snapshot_edit()).is_err());
        assert_eq!(recover_state(&sim), Some(expected(1, 1)), "the live manifest was touched");
        m.log_edit(&edit(1)).unwrap(); // a refused rotation does not poison
        assert_eq!(recover_state(&sim), Some(expected(1, 2)));
    }

    fn assert_corruption_in(err: Error, file: &str) {
        match err {
            Error::Corruption { file: f, .. } => {
                assert_eq!(f, dir().join(file), "corruption names the wrong file");
            }
            other => panic!("expected corruption in {file}, got {other}"),
        }
    }

    #[test]
    fn current_naming_a_missing_manifest_is_corruption() {
        let sim = setup();
        Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &initial_snapshot()).unwrap();
        sim.remove(&dir().join("MANIFEST-000001")).unwrap();
        let err = Manifest::recover(Arc::new(sim), dir()).unwrap_err();
        assert_corruption_in(err, "MANIFEST-000001");
    }

    #[test]
    fn garbage_current_is_corruption() {
        for content in
            [&b""[..], b"MANIFEST-000001", b"MANIFEST-1\n", b"000001.sst\n", b"\xff\xfe\n"]
        {
            let sim = setup();
            Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &initial_snapshot()).unwrap();
            sim.overwrite(&dir().join("CURRENT"), content.to_vec()).unwrap();
            let err = Manifest::recover(Arc::new(sim), dir()).unwrap_err();
            assert_corruption_in(err, "CURRENT");
        }
    }

    #[test]
    fn damaged_manifest_is_corruption_with_file_and_offset() {
        let sim = setup();
        let path = dir().join("MANIFEST-000001");
        let mut m =
            Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &initial_snapshot()).unwrap();
        for i in 0..3 {
            m.log_edit(&edit(i)).unwrap();
        }
        let last_record_at = sim.file_size(&path).unwrap() as usize;
        m.log_edit(&edit(3)).unwrap();
        let good = sim.read(&path).unwrap();
        // Flip bytes inside every record but the last (damage there is indistinguishable from
        // a torn write): intact records follow the damage.
        let mut corrupt_offsets = 0;
        for at in 16..last_record_at {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            sim.overwrite(&path, bad).unwrap();
            match Manifest::recover(Arc::new(sim.clone()), dir()) {
                Err(Error::Corruption { file, offset, .. }) => {
                    assert_eq!(file, path);
                    assert!(offset <= at as u64);
                    corrupt_offsets += 1;
                }
                Err(other) => panic!("flip at {at}: expected corruption, got {other}"),
                Ok(s) => panic!("flip at {at}: damage went unnoticed: {s:?}"),
            }
        }
        assert!(corrupt_offsets > 10);
    }

    #[test]
    fn wrong_magic_or_empty_manifest_is_corruption() {
        // A valid log whose first record is not a manifest header.
        let sim = setup();
        let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
        let log =
            Wal::create(fs.clone(), dir().join("MANIFEST-000001"), WalOptions::default()).unwrap();
        log.append(b"NOTAMANIFEST", true).unwrap();
        set_current(&*fs, dir(), 1).unwrap();
        let err = Manifest::recover(fs.clone(), dir()).unwrap_err();
        assert_corruption_in(err, "MANIFEST-000001");

        // A log with no record at all.
        let _empty =
            Wal::create(fs.clone(), dir().join("MANIFEST-000002"), WalOptions::default()).unwrap();
        set_current(&*fs, dir(), 2).unwrap();
        let err = Manifest::recover(fs, dir()).unwrap_err();
        assert_corruption_in(err, "MANIFEST-000002");
    }

    #[test]
    fn torn_record_spanning_blocks_is_dropped_not_corruption() {
        let sim = setup();
        let path = dir().join("MANIFEST-000001");
        let mut m =
            Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &initial_snapshot()).unwrap();
        m.log_edit(&edit(0)).unwrap();
        let before = sim.file_size(&path).unwrap() as usize;
        let mut big = VersionEdit::default();
        for n in 0..1500u64 {
            let key = format!("big{n:08}");
            big.new_files.push((4, table(1000 + n, key.as_bytes(), key.as_bytes(), 1)));
        }
        m.log_edit(&big).unwrap();
        let full = sim.read(&path).unwrap();
        assert!(full.len() - before > 2 * BLOCK_SIZE, "the record must span blocks");
        // Cut the big record at many points, including inside its later fragments (its first
        // fragments are then intact), and also replace its tail with garbage.
        for cut in (before + 1..full.len()).step_by(997) {
            for garbage in [false, true] {
                let mut torn = full[..cut].to_vec();
                if garbage {
                    torn.extend(std::iter::repeat_n(0xA5, 100));
                }
                sim.overwrite(&path, torn).unwrap();
                let state = Manifest::recover(Arc::new(sim.clone()), dir())
                    .unwrap_or_else(|e| panic!("cut at {cut}, garbage {garbage}: {e}"))
                    .unwrap();
                assert_eq!(state.dropped_tail.map(|(at, _)| at), Some(before as u64));
                let mut state = state;
                state.dropped_tail = None;
                assert_eq!(state, expected(1, 1));
            }
        }
    }

    #[test]
    fn sealed_logs_at_or_above_the_log_number_are_recovered_and_carried_by_snapshots() {
        let sim = setup();
        let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
        let mut m = Manifest::create_new(fs.clone(), dir(), 1, &initial_snapshot()).unwrap();
        let seal = |number, length| SealedLog { number, length, last_sequence: number * 10 };
        let e = VersionEdit {
            sealed_logs: vec![seal(1, 100), seal(2, 200), seal(3, 300)],
            ..VersionEdit::default()
        };
        m.log_edit(&e).unwrap();
        // A later record for the same log wins.
        let e = VersionEdit { sealed_logs: vec![seal(3, 333)], ..VersionEdit::default() };
        m.log_edit(&e).unwrap();
        sim.crash(CrashMode::SyncedOnly);
        // initial_snapshot() has log_number 2: log 1 is flushed, its seal is dropped.
        let state = recover_state(&sim).unwrap();
        assert_eq!(state.sealed_logs, vec![seal(2, 200), seal(3, 333)]);
        let n = state.next_file_number;
        let mut snapshot = state.snapshot_edit();
        snapshot.next_file_number = Some(n + 1);
        Manifest::create_new(fs, dir(), n, &snapshot).unwrap();
        assert_eq!(recover_state(&sim).unwrap().sealed_logs, state.sealed_logs);
    }

    #[test]
    fn format_version_1_and_2_manifests_still_open() {
        // Manifests as earlier releases wrote them: header version 1 (no sealed logs) and
        // 2 (sealed logs, no ingested files); the records themselves are unchanged.
        for version in [1u32, 2] {
            let sim = setup();
            let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
            let path = dir().join("MANIFEST-000001");
            let log = Wal::create(fs.clone(), path, WalOptions::default()).unwrap();
            let mut record = MANIFEST_MAGIC.to_vec();
            record.extend_from_slice(&version.to_le_bytes());
            initial_snapshot().encode(&mut record);
            log.append(&record, true).unwrap();
            let mut edit_record = Vec::new();
            edit(0).encode(&mut edit_record);
            log.append(&edit_record, true).unwrap();
            set_current(&*fs, dir(), 1).unwrap();
            assert_eq!(recover_state(&sim), Some(expected(1, 1)), "version {version}");
        }
    }

    #[test]
    fn a_manifest_format_version_from_the_future_is_refused() {
        let sim = setup();
        let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
        // A version from the future is refused by its number.
        let mut future = MANIFEST_MAGIC.to_vec();
        future.extend_from_slice(&(MANIFEST_FORMAT_VERSION + 1).to_le_bytes());
        initial_snapshot().encode(&mut future);
        let log =
            Wal::create(fs.clone(), dir().join("MANIFEST-000002"), WalOptions::default()).unwrap();
        log.append(&future, true).unwrap();
        set_current(&*fs, dir(), 2).unwrap();
        let err = Manifest::recover(fs, dir()).unwrap_err();
        assert!(err.to_string().contains("format version"), "{err}");
    }

    #[test]
    fn only_an_empty_first_snapshot_counts_as_an_unused_manifest() {
        let sim = setup();
        let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
        let path = dir().join("MANIFEST-000001");
        let mut empty = initial_snapshot();
        empty.new_files.clear();
        empty.last_sequence = Some(0);
        let mut m = Manifest::create_new(fs.clone(), dir(), 1, &empty).unwrap();
        let full = sim.read(&path).unwrap();
        for cut in [0, 10, 16, 20, full.len() - 1, full.len()] {
            sim.overwrite(&path, full[..cut].to_vec()).unwrap();
            assert!(Manifest::is_unused(&*fs, &path).unwrap(), "cut at {cut}");
        }
        m.log_edit(&edit(0)).unwrap();
        assert!(!Manifest::is_unused(&*fs, &path).unwrap(), "a later edit");
        Manifest::create_new(fs.clone(), dir(), 2, &initial_snapshot()).unwrap();
        let path2 = dir().join("MANIFEST-000002");
        assert!(!Manifest::is_unused(&*fs, &path2).unwrap(), "tables and sequences");
        sim.overwrite(&path2, b"garbage, not a log".to_vec()).unwrap();
        assert!(!Manifest::is_unused(&*fs, &path2).unwrap(), "unreadable");
    }

    #[test]
    fn next_file_number_never_falls_below_live_numbers() {
        let sim = setup();
        let mut m =
            Manifest::create_new(Arc::new(sim.clone()), dir(), 1, &initial_snapshot()).unwrap();
        let mut e = VersionEdit::default();
        e.new_files.push((2, table(77, b"x", b"y", 1)));
        m.log_edit(&e).unwrap();
        assert_eq!(recover_state(&sim).unwrap().next_file_number, 78);
    }
}
