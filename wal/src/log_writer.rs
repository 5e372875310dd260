//! [`LogWriter`]: one log file written by one thread. It owns the file, writes the file
//! header, frames records into blocks, appends, syncs, issues write-back hints and counts
//! what it wrote; no threads, no locks. The group-commit [`crate::Wal`] does its I/O through
//! one, and the manifest, written by one thread at a time under the engine's version lock,
//! uses one directly.
//!
//! # Failure
//! A failed write, sync or write-back hint may have left any part of the bytes on disk, or
//! dropped dirty pages the kernel will never write again. The writer is then *poisoned*:
//! the call returns the error and every later call fails with [`Error::Poisoned`] without
//! touching the file. Nothing is retried, because a retry that succeeds would prove nothing
//! about the bytes the failed call covered.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_core::fs::{parent_dir, FileSystem, WritableFile};
use strata_core::{Error, IoResultExt, Result};

use crate::format::{file_header, frame_record, BLOCK_SIZE, FILE_HEADER_LEN};

/// Options of a [`LogWriter`].
///
/// ```
/// use strata_wal::LogWriterOptions;
/// assert_eq!(LogWriterOptions::default().bytes_per_sync, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogWriterOptions {
    /// Once this many bytes were written since the last sync or hint, and the write that
    /// crossed the mark does not sync, ask the OS to start writing them back
    /// ([`WritableFile::start_writeback`]), so that dirty log data does not pile up for one
    /// long sync (RocksDB's `wal_bytes_per_sync`). Changes nothing about durability. 0 turns
    /// it off. Default 1 MiB.
    pub bytes_per_sync: u64,
}

impl Default for LogWriterOptions {
    fn default() -> Self {
        LogWriterOptions { bytes_per_sync: 1 << 20 }
    }
}

/// Appends records to one log file, in the format of [`mod@crate::format`], from one thread
/// (`&mut self`). Readable with [`crate::LogReader`].
///
/// Durability is the caller's to ask for: [`LogWriter::add_record`] with `sync` (or a later
/// [`LogWriter::sync`]) returns only once the record is on stable storage. See the module
/// docs for what a failure does.
///
/// ```
/// use std::path::Path;
/// use strata_core::fs::FileSystem;
/// use strata_core::sim::{CrashMode, SimFileSystem};
/// use strata_wal::{LogReader, LogWriter, LogWriterOptions, RecoveryMode};
/// let fs = SimFileSystem::new();
/// fs.create_dir_all(Path::new("/db")).unwrap();
/// let mut log = LogWriter::create(&fs, "/db/MANIFEST-000001", LogWriterOptions::default())?;
/// log.add_record(b"buffered", false)?;
/// log.add_record(b"durable, with everything before it", true)?;
/// assert_eq!(log.synced_len(), log.written_len());
///
/// fs.crash(CrashMode::SyncedOnly);
/// let mut reader =
///     LogReader::open(&fs, Path::new("/db/MANIFEST-000001"), RecoveryMode::Strict)?;
/// assert_eq!(reader.next_record()?.unwrap().payload, b"buffered");
/// # Ok::<(), strata_core::Error>(())
/// ```
pub struct LogWriter {
    path: PathBuf,
    file: Box<dyn WritableFile>,
    options: LogWriterOptions,
    /// Bytes appended, the header included. Fragments never cross a block boundary, so this
    /// modulo [`BLOCK_SIZE`] is where the next record's framing starts in its block.
    written_len: u64,
    synced_len: u64,
    /// End of what was synced or handed to [`WritableFile::start_writeback`].
    hinted_len: u64,
    syncs: u64,
    sync_time: Duration,
    /// The first failed I/O; once set, the file is never touched again.
    failure: Option<Error>,
    /// [`LogWriter::add_record`]'s framing buffer, reused so that records rarely allocate.
    framed: Vec<u8>,
}

impl fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriter")
            .field("path", &self.path)
            .field("written_len", &self.written_len)
            .field("synced_len", &self.synced_len)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Creates the log file at `path` (replacing any file there), writes and `fdatasync`s
    /// the file header and fsyncs the parent directory, so the file and its name survive
    /// power loss before the first record is written. The header's sync counts in
    /// [`LogWriter::sync_count`] and [`LogWriter::sync_time`].
    pub fn create(
        fs: &dyn FileSystem,
        path: impl Into<PathBuf>,
        options: LogWriterOptions,
    ) -> Result<LogWriter> {
        let path = path.into();
        let mut file = fs.create(&path).ctx("create", &path)?;
        file.append(&file_header()).ctx("write", &path)?;
        let started = Instant::now();
        file.sync_data().ctx("fdatasync", &path)?;
        let sync_time = started.elapsed();
        let dir = parent_dir(&path);
        fs.sync_dir(&dir).ctx("fsync directory", &dir)?;
        let header_len = FILE_HEADER_LEN as u64;
        Ok(LogWriter {
            path,
            file,
            options,
            written_len: header_len,
            synced_len: header_len,
            hinted_len: header_len,
            syncs: 1,
            sync_time,
            failure: None,
            framed: Vec::new(),
        })
    }

    /// Frames `payload` as one record and appends it with one write; with `sync`, then
    /// `fdatasync`s the file, so the record and everything before it are durable when this
    /// returns. Without `sync` the record is handed to the OS: it survives a crash of the
    /// process, not power loss.
    ///
    /// A failure poisons the writer (see the module docs).
    pub fn add_record(&mut self, payload: &[u8], sync: bool) -> Result<()> {
        self.check_healthy()?;
        let mut framed = std::mem::take(&mut self.framed);
        framed.clear();
        frame_record(&mut framed, self.block_offset(), payload);
        let outcome = self.write_framed(&framed, sync).map(drop);
        self.framed = framed;
        outcome
    }

    /// `fdatasync`s the file if anything written is not yet synced.
    pub fn sync(&mut self) -> Result<()> {
        self.write_framed(&[], true).map(drop)
    }

    /// Appends bytes already framed (by [`frame_record`]) for this writer's current block
    /// offset, as one write; with `sync`, then syncs if anything is unsynced, and otherwise
    /// gives the write-back hint when one is due. Returns how long the sync took, if one
    /// was made. The group-commit `Wal` frames records as they are queued, long before they
    /// are written, and hands whole groups here.
    pub(crate) fn write_framed(&mut self, framed: &[u8], sync: bool) -> Result<Option<Duration>> {
        self.check_healthy()?;
        let outcome = self.write_framed_unchecked(framed, sync);
        if let Err(e) = &outcome {
            self.failure = Some(e.clone());
        }
        outcome
    }

    fn write_framed_unchecked(&mut self, framed: &[u8], sync: bool) -> Result<Option<Duration>> {
        if !framed.is_empty() {
            self.file.append(framed).ctx("write", &self.path)?;
            self.written_len += framed.len() as u64;
        }
        if sync && self.written_len > self.synced_len {
            let started = Instant::now();
            self.file.sync_data().ctx("fdatasync", &self.path)?;
            let elapsed = started.elapsed();
            self.synced_len = self.written_len;
            self.hinted_len = self.synced_len;
            self.syncs += 1;
            self.sync_time += elapsed;
            return Ok(Some(elapsed));
        }
        let unhinted = self.written_len - self.hinted_len;
        if self.options.bytes_per_sync > 0 && unhinted >= self.options.bytes_per_sync {
            // Start writing back what accumulated, so that the next sync (for the engine's
            // log, at the latest when its memtable is switched out, under the write lock)
            // has little left to write and stalls writers for less.
            self.file
                .start_writeback(self.hinted_len, unhinted)
                .ctx("sync_file_range", &self.path)?;
            self.hinted_len = self.written_len;
        }
        Ok(None)
    }

    fn check_healthy(&self) -> Result<()> {
        match &self.failure {
            Some(e) => Err(e.clone().poisoned()),
            None => Ok(()),
        }
    }

    /// Where in its block the next record's framing starts.
    fn block_offset(&self) -> usize {
        // The remainder is below BLOCK_SIZE, so it fits a usize.
        (self.written_len % BLOCK_SIZE as u64) as usize
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to the file so far: header, framing, padding and payloads.
    pub fn written_len(&self) -> u64 {
        self.written_len
    }

    /// Bytes known to be on stable storage (a prefix of [`LogWriter::written_len`]).
    pub fn synced_len(&self) -> u64 {
        self.synced_len
    }

    /// `fdatasync` calls that succeeded, the header's included.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Total time spent in those `fdatasync` calls.
    pub fn sync_time(&self) -> Duration {
        self.sync_time
    }

    /// The error that poisoned the writer (as [`Error::Poisoned`]), if any.
    pub fn poison(&self) -> Option<Error> {
        self.failure.as_ref().map(|e| e.clone().poisoned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{framed_len, FRAGMENT_HEADER_LEN};
    use crate::{LogReader, RecoveryMode};
    use strata_core::sim::{CrashMode, FaultOp, SimFileSystem};

    const LOG: &str = "/db/MANIFEST-000001";

    fn setup() -> SimFileSystem {
        let fs = SimFileSystem::new();
        fs.create_dir_all(Path::new("/db")).unwrap();
        fs
    }

    fn create(fs: &SimFileSystem, options: LogWriterOptions) -> LogWriter {
        LogWriter::create(fs, LOG, options).unwrap()
    }

    fn records(fs: &SimFileSystem) -> Vec<Vec<u8>> {
        let mut reader = LogReader::open(fs, Path::new(LOG), RecoveryMode::Strict).unwrap();
        let mut out = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            out.push(r.payload.to_vec());
        }
        assert_eq!(reader.dropped_tail(), None);
        out
    }

    fn payload(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 7 + j) as u8).collect()
    }

    #[test]
    fn create_writes_and_syncs_the_header_and_its_name() {
        let fs = setup();
        let log = create(&fs, LogWriterOptions::default());
        assert_eq!(fs.read(Path::new(LOG)).unwrap(), file_header());
        assert_eq!((log.written_len(), log.synced_len()), (16, 16));
        assert_eq!(log.sync_count(), 1);
        assert_eq!(log.path(), Path::new(LOG));
        fs.crash(CrashMode::SyncedOnly);
        assert_eq!(fs.read(Path::new(LOG)).unwrap(), file_header(), "the name was fsynced");
        assert!(records(&fs).is_empty());
    }

    #[test]
    fn create_replaces_an_existing_file() {
        let fs = setup();
        let mut old = create(&fs, LogWriterOptions::default());
        old.add_record(b"stale", true).unwrap();
        let mut log = create(&fs, LogWriterOptions::default());
        log.add_record(b"fresh", true).unwrap();
        assert_eq!(records(&fs), [b"fresh".to_vec()]);
    }

    /// The bytes are exactly the header followed by `frame_record` of each payload at the
    /// running block offset, across block boundaries and trailers too small for a header.
    #[test]
    fn frames_records_across_block_boundaries() {
        let fs = setup();
        let mut log = create(&fs, LogWriterOptions::default());
        // 16 + 7 + (BLOCK_SIZE - 26) leaves 3 bytes in block 0: a zero trailer; the next
        // record spans three blocks, then an empty and a 1-byte record; a last one fills
        // the remainder of its block exactly.
        let sizes = [BLOCK_SIZE - 26, 2 * BLOCK_SIZE + 100, 0, 1];
        let mut payloads: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| payload(i, n)).collect();
        let mut want = file_header().to_vec();
        let mut block_offset = FILE_HEADER_LEN;
        for p in &payloads {
            let before = log.written_len();
            log.add_record(p, false).unwrap();
            assert_eq!(log.written_len() - before, framed_len(block_offset, p.len()) as u64);
            block_offset = frame_record(&mut want, block_offset, p);
        }
        let exact = BLOCK_SIZE - block_offset - FRAGMENT_HEADER_LEN;
        payloads.push(payload(9, exact));
        log.add_record(&payloads[4], true).unwrap();
        frame_record(&mut want, block_offset, &payloads[4]);
        let bytes = fs.read(Path::new(LOG)).unwrap();
        assert_eq!(bytes[BLOCK_SIZE - 3..BLOCK_SIZE], [0, 0, 0], "trailer");
        assert_eq!(bytes.len() % BLOCK_SIZE, 0, "the last record ends a block");
        assert_eq!(bytes, want);
        assert_eq!(log.written_len(), want.len() as u64);
        assert_eq!(records(&fs), payloads);
    }

    #[test]
    fn sync_makes_everything_written_durable_once() {
        let fs = setup();
        let mut log = create(&fs, LogWriterOptions::default());
        log.add_record(b"a", false).unwrap();
        log.add_record(b"b", false).unwrap();
        assert_eq!(fs.synced_len(Path::new(LOG)).unwrap(), 16);
        log.sync().unwrap();
        assert_eq!(log.synced_len(), log.written_len());
        assert_eq!(fs.synced_len(Path::new(LOG)).unwrap(), log.written_len());
        let syncs = fs.op_count(FaultOp::Sync);
        log.sync().unwrap(); // nothing new: no fdatasync
        log.add_record(b"", true).unwrap();
        assert_eq!(fs.op_count(FaultOp::Sync), syncs + 1);
        assert_eq!(log.sync_count(), 3);
        fs.crash(CrashMode::SyncedOnly);
        assert_eq!(records(&fs), [b"a".to_vec(), b"b".to_vec(), Vec::new()]);
    }

    #[test]
    fn writeback_hints_cover_unsynced_bytes_and_skip_syncing_writes() {
        let fs = setup();
        let hinted = || fs.writeback_hinted(Path::new(LOG)).unwrap();
        let mut log = create(&fs, LogWriterOptions { bytes_per_sync: 1000 });
        // 100-byte payloads frame to 107 bytes: the 10th crosses 1000 bytes.
        for i in 0..9 {
            log.add_record(&payload(i, 100), false).unwrap();
        }
        assert_eq!(hinted(), 0);
        log.add_record(&payload(9, 100), false).unwrap();
        assert_eq!(hinted(), 1070);
        // A syncing write is not hinted, and the next hint starts after the sync.
        log.add_record(&payload(10, 2000), true).unwrap();
        assert_eq!(hinted(), 1070);
        log.add_record(&payload(11, 993), false).unwrap();
        assert_eq!(hinted(), 2070);
        let mut off = create(&fs, LogWriterOptions { bytes_per_sync: 0 });
        off.add_record(&payload(0, 5000), false).unwrap();
        assert_eq!(hinted(), 0);
    }

    /// A failed append, sync or create surfaces as an I/O error; after it the writer refuses
    /// everything with `Poisoned` and never touches the file again (no retry).
    #[test]
    fn a_failure_poisons_and_is_never_retried() {
        for op in [FaultOp::Write, FaultOp::Sync] {
            let fs = setup();
            let mut log = create(&fs, LogWriterOptions::default());
            log.add_record(b"kept", true).unwrap();
            fs.fail_nth(op, 1);
            let err = log.add_record(b"failed", true).unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{op:?}: {err}");
            assert!(matches!(log.poison(), Some(Error::Poisoned(_))));
            let ops = (fs.op_count(FaultOp::Write), fs.op_count(FaultOp::Sync));
            let len = fs.file_size(Path::new(LOG)).unwrap();
            for _ in 0..2 {
                assert!(matches!(log.add_record(b"x", false), Err(Error::Poisoned(_))));
                assert!(matches!(log.add_record(b"x", true), Err(Error::Poisoned(_))));
                assert!(matches!(log.sync(), Err(Error::Poisoned(_))));
            }
            assert_eq!((fs.op_count(FaultOp::Write), fs.op_count(FaultOp::Sync)), ops);
            assert_eq!(fs.file_size(Path::new(LOG)).unwrap(), len, "{op:?}");
            fs.crash(CrashMode::SyncedOnly);
            assert_eq!(records(&fs), [b"kept".to_vec()], "{op:?}");
        }

        // A short write on a full disk leaves part of the record: poisoned all the same.
        let fs = setup();
        let mut log = create(&fs, LogWriterOptions::default());
        fs.set_space_budget(Some(10));
        assert!(log.add_record(&[7; 100], false).is_err());
        fs.set_space_budget(None);
        assert!(matches!(log.add_record(b"x", true), Err(Error::Poisoned(_))));

        for op in [FaultOp::Create, FaultOp::Write, FaultOp::Sync] {
            let fs = setup();
            fs.fail_nth(op, 1);
            let err = LogWriter::create(&fs, LOG, LogWriterOptions::default()).unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{op:?}: {err}");
        }
    }

    #[test]
    fn an_unsynced_record_is_lost_on_power_loss_but_never_half_read() {
        let big = payload(1, 3 * BLOCK_SIZE);
        for seed in 0..8 {
            let fs = setup();
            let mut log = create(&fs, LogWriterOptions::default());
            log.add_record(b"durable", true).unwrap();
            log.add_record(&big, false).unwrap();
            fs.crash(CrashMode::TornTail { seed });
            let mut reader = LogReader::open(&fs, Path::new(LOG), RecoveryMode::Strict).unwrap();
            assert_eq!(reader.next_record().unwrap().unwrap().payload, b"durable");
            let rest = reader.next_record().unwrap().map(|r| r.payload.to_vec());
            assert!(rest.is_none() || rest.as_ref() == Some(&big), "seed {seed}");
        }
    }
}
