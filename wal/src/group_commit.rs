//! [`Wal`]: one log file shared by many writer threads, with group commit. This module owns
//! the queue, leader election and waking the waiters; the leader's I/O (append, sync,
//! write-back hints) goes through the [`LogWriter`] it holds, and the periodic sync thread
//! is in `periodic_sync.rs`.
//!
//! # Group commit
//! Writers [`Wal::enqueue`] framed records into a queue of *groups* (no I/O, under a short
//! queue lock). A writer that then waits for its [`CommitTicket`] while no other thread is
//! writing becomes the *leader*: it takes the oldest group out of the queue, releases the
//! queue lock, writes the whole group with one
//! [`WritableFile::append`](strata_core::fs::WritableFile::append) and — if any record of
//! the group asked for it — one `sync_data`, then publishes the outcome and wakes the
//! waiters. Records enqueued meanwhile collect in the next group, so no writer waits for
//! more than the group in flight plus its own (unless its group filled up to
//! [`WalOptions::max_group_bytes`]). A waiter whose own record needs no sync first spins
//! for a few microseconds (see [`strata_core::spin`]): a group without a sync is one small
//! `write(2)`, usually over before a futex sleep and wake would be. Waiters for a sync, and
//! spinners whose wait runs long, sleep on a condition variable.
//!
//! # Failure
//! A failed write or `sync_data` may have left any part of the group on disk, or dropped
//! dirty pages the kernel will never write again: the error goes to every writer of that
//! group and the log is *poisoned* — every later call fails with [`Error::Poisoned`].
//! Nothing is retried, because a retry that succeeds would prove nothing about the bytes
//! the failed call covered. Reopening (recovery) finds what truly reached the disk.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use strata_core::fs::FileSystem;
use strata_core::spin::{spin_until, DEFAULT_SPIN};
use strata_core::{Error, Result};

use crate::format::{frame_record, framed_len, BLOCK_SIZE};
use crate::log_writer::{LogWriter, LogWriterOptions};

/// Options of a [`Wal`].
#[derive(Clone)]
pub struct WalOptions {
    /// Upper bound on the bytes (framing included) one group commit writes; a single record
    /// larger than this forms a group of its own. Default 1 MiB.
    pub max_group_bytes: usize,
    /// Called by the leader after every successful `sync_data` with its duration (for the
    /// engine's latency histogram). It runs on a writer's thread: keep it short.
    pub on_sync: Option<Arc<dyn Fn(Duration) + Send + Sync>>,
    /// Once this many bytes were written since the last sync or hint, the leader asks the
    /// OS to start writing them back
    /// ([`WritableFile::start_writeback`](strata_core::fs::WritableFile::start_writeback)),
    /// so that dirty log data does not pile up for one long sync (RocksDB's
    /// `wal_bytes_per_sync`; the [`LogWriterOptions::bytes_per_sync`] of the log writer
    /// underneath). Changes nothing about durability. 0 turns it off. Default 1 MiB.
    pub bytes_per_sync: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { max_group_bytes: 1 << 20, on_sync: None, bytes_per_sync: 1 << 20 }
    }
}

impl fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalOptions")
            .field("max_group_bytes", &self.max_group_bytes)
            .field("on_sync", &self.on_sync.as_ref().map(|_| "Fn(Duration)"))
            .field("bytes_per_sync", &self.bytes_per_sync)
            .finish()
    }
}

/// Counters of a [`Wal`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written to the file.
    pub records: u64,
    /// Payload bytes of those records.
    pub payload_bytes: u64,
    /// Bytes written to the file: file header, framing, padding and payloads.
    pub bytes_written: u64,
    /// Group commits, i.e. `write` calls after the header (empty sync-only groups excluded).
    pub write_calls: u64,
    /// `sync_data` calls that succeeded, the header's included.
    pub syncs: u64,
    /// Total time spent in those `sync_data` calls.
    pub sync_time: Duration,
}

/// Records framed and waiting to be written together.
struct Group {
    id: u64,
    buf: Vec<u8>,
    sync: bool,
    records: u64,
    payload_bytes: u64,
}

struct QueueState {
    /// Groups not yet taken by a leader, oldest first, with consecutive ids.
    groups: VecDeque<Group>,
    next_group_id: u64,
    /// Position in its block of the end of everything enqueued: where the next record's
    /// framing starts. Enqueue order is file order, so framing can be done at enqueue.
    block_offset: usize,
    /// Every group with an id `<=` this one is written (and synced if asked).
    done_through: u64,
    /// Whether a leader is writing a group right now (with the queue lock released).
    leader_active: bool,
    /// The group whose write or sync failed and the error: the log is poisoned.
    failure: Option<(u64, Error)>,
    closed: bool,
    written_len: u64,
    synced_len: u64,
    stats: WalStats,
    /// Buffers of written groups, kept for reuse so that enqueue rarely allocates.
    spare_bufs: Vec<Vec<u8>>,
}

/// How many written group buffers are kept for reuse.
const SPARE_BUFS: usize = 4;

struct Shared {
    path: PathBuf,
    options: WalOptions,
    queue: Mutex<QueueState>,
    /// Signalled whenever a leader finishes a group.
    group_done: Condvar,
    /// Bumped (under the queue lock) whenever a leader finishes or fails a group: what a
    /// spinning waiter watches instead of taking the queue lock.
    groups_finished: AtomicU64,
    /// Locked only by the leader (there is at most one), so never contended; the lock
    /// exists to give the leader `&mut` access.
    log: Mutex<LogWriter>,
}

/// One write-ahead log file, shared by all writers (`Send + Sync`).
///
/// Records are opaque byte strings (the engine writes [`crate::WriteBatch`] payloads, the
/// manifest its edits); they reach the file in the order of the [`Wal::enqueue`] calls and
/// read back with [`crate::LogReader`].
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use strata_core::fs::FileSystem;
/// use strata_core::sim::{CrashMode, SimFileSystem};
/// use strata_wal::{BatchEncoding, LogReader, RecoveryMode, Wal, WalOptions, WriteBatch};
/// let fs = Arc::new(SimFileSystem::new());
/// fs.create_dir_all(Path::new("/db")).unwrap();
/// let wal = Wal::create(fs.clone(), "/db/000003.log", WalOptions::default())?;
///
/// let mut batch = WriteBatch::new();
/// batch.put("key", "value");
/// batch.set_sequence(1);
/// wal.append(batch.as_bytes(), true)?; // durable when this returns
///
/// fs.crash(CrashMode::SyncedOnly);
/// let mut reader = LogReader::open(&*fs, Path::new("/db/000003.log"), RecoveryMode::Strict)?;
/// let record = reader.next_record()?.unwrap();
/// assert_eq!(record.payload, batch.as_bytes());
/// # Ok::<(), strata_core::Error>(())
/// ```
pub struct Wal {
    shared: Arc<Shared>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

/// A record's place in the queue, from [`Wal::enqueue`]; [`CommitTicket::wait`] for it.
#[must_use = "the record is only known to be written once the ticket is waited for"]
pub struct CommitTicket {
    shared: Arc<Shared>,
    group: u64,
    /// Whether this record asked for a sync (its wait is milliseconds, not worth a spin).
    sync: bool,
}

impl fmt::Debug for CommitTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitTicket").field("group", &self.group).finish()
    }
}

impl CommitTicket {
    /// Returns when the record's group is written (and synced, if any record of the group
    /// asked for a sync), leading the write itself if no other thread is writing. An error
    /// of the group's own write or sync is returned as is; a record queued behind a failed
    /// group gets [`Error::Poisoned`].
    pub fn wait(self) -> Result<()> {
        self.shared.wait_for(self.group, !self.sync)
    }
}

impl Wal {
    /// Creates the log file at `path` (replacing any file there), writes and syncs the file
    /// header and fsyncs the parent directory, so the file and its name survive power loss
    /// before the first record is acknowledged.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        path: impl Into<PathBuf>,
        options: WalOptions,
    ) -> Result<Arc<Wal>> {
        let path = path.into();
        let log_options = LogWriterOptions { bytes_per_sync: options.bytes_per_sync };
        let log = LogWriter::create(&*fs, path.clone(), log_options)?;
        let header_len = log.written_len();
        let stats = WalStats {
            bytes_written: header_len,
            syncs: log.sync_count(),
            sync_time: log.sync_time(),
            ..WalStats::default()
        };
        let queue = QueueState {
            groups: VecDeque::new(),
            next_group_id: 1,
            // Below BLOCK_SIZE, so the cast is exact.
            block_offset: (header_len % BLOCK_SIZE as u64) as usize,
            done_through: 0,
            leader_active: false,
            failure: None,
            closed: false,
            written_len: header_len,
            synced_len: log.synced_len(),
            stats,
            spare_bufs: Vec::new(),
        };
        Ok(Arc::new(Wal {
            shared: Arc::new(Shared {
                path,
                options,
                queue: Mutex::new(queue),
                group_done: Condvar::new(),
                groups_finished: AtomicU64::new(0),
                log: Mutex::new(log),
            }),
        }))
    }

    /// Frames `payload` as one record and copies it into the queue, without I/O. Records
    /// reach the file in the order of `enqueue` calls (the engine calls this under its own
    /// lock right after assigning sequence numbers, so log order is sequence order).
    /// `sync`: the record's group is `fdatasync`ed before its ticket's `wait` returns.
    ///
    /// The record is written when its ticket, a later record's ticket, [`Wal::sync`] or
    /// [`Wal::close`] is waited for; dropping the ticket does not cancel the record.
    ///
    /// Fails with [`Error::Poisoned`] after an earlier write failure and [`Error::Closed`]
    /// after [`Wal::close`].
    ///
    /// ```
    /// # use std::{path::Path, sync::Arc};
    /// # use strata_core::{fs::FileSystem, sim::SimFileSystem};
    /// # use strata_wal::{Wal, WalOptions};
    /// # let fs = Arc::new(SimFileSystem::new());
    /// # fs.create_dir_all(Path::new("/db")).unwrap();
    /// let wal = Wal::create(fs, "/db/000001.log", WalOptions::default())?;
    /// let a = wal.enqueue(b"a", false)?;
    /// let b = wal.enqueue(b"b", true)?;
    /// b.wait()?; // one write and one sync for both records
    /// a.wait()?;
    /// assert_eq!((wal.stats().write_calls, wal.stats().records), (1, 2));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn enqueue(&self, payload: &[u8], sync: bool) -> Result<CommitTicket> {
        let mut q = self.shared.queue.lock();
        check_open(&q)?;
        let max = self.shared.options.max_group_bytes;
        let needed = framed_len(q.block_offset, payload.len());
        let start_new = match q.groups.back() {
            None => true,
            Some(g) => !g.buf.is_empty() && g.buf.len() + needed > max,
        };
        if start_new {
            let id = q.next_group_id;
            q.next_group_id += 1;
            let mut buf = q.spare_bufs.pop().unwrap_or_default();
            buf.reserve(needed);
            q.groups.push_back(Group { id, buf, sync: false, records: 0, payload_bytes: 0 });
        }
        let block_offset = q.block_offset;
        let Some(group) = q.groups.back_mut() else {
            return Err(Error::Internal("the write-ahead log has no open group".into()));
        };
        let new_offset = frame_record(&mut group.buf, block_offset, payload);
        group.sync |= sync;
        group.records += 1;
        group.payload_bytes += payload.len() as u64;
        let id = group.id;
        q.block_offset = new_offset;
        Ok(CommitTicket { shared: self.shared.clone(), group: id, sync })
    }

    /// [`Wal::enqueue`] and wait: returns when the record is written (handed to the OS) and,
    /// with `sync`, durable.
    pub fn append(&self, payload: &[u8], sync: bool) -> Result<()> {
        self.enqueue(payload, sync)?.wait()
    }

    /// Returns when every record enqueued before the call is written and `fdatasync`ed.
    pub fn sync(&self) -> Result<()> {
        let group = {
            let mut q = self.shared.queue.lock();
            check_open(&q)?;
            match sync_group(&mut q) {
                Some(group) => group,
                None => return Ok(()),
            }
        };
        self.shared.wait_for(group, false)
    }

    /// Writes and syncs everything queued, then refuses new records with [`Error::Closed`].
    /// Closing twice is fine; closing a poisoned log returns the poisoning error.
    pub fn close(&self) -> Result<()> {
        let group = {
            let mut q = self.shared.queue.lock();
            if let Some((_, err)) = &q.failure {
                return Err(err.clone().poisoned());
            }
            q.closed = true;
            sync_group(&mut q)
        };
        match group {
            Some(group) => self.shared.wait_for(group, false),
            None => Ok(()),
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> WalStats {
        self.shared.queue.lock().stats
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Whether records were enqueued or written but not yet synced.
    pub fn has_unsynced(&self) -> bool {
        let q = self.shared.queue.lock();
        q.written_len > q.synced_len || !q.groups.is_empty() || q.leader_active
    }

    /// Bytes written to the file so far (header included).
    pub fn written_len(&self) -> u64 {
        self.shared.queue.lock().written_len
    }

    /// Whether [`Wal::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.queue.lock().closed
    }

    /// The error that poisoned the log, if any.
    pub fn poison(&self) -> Option<Error> {
        self.shared.queue.lock().failure.as_ref().map(|(_, e)| e.clone().poisoned())
    }
}

fn check_open(q: &QueueState) -> Result<()> {
    if let Some((_, err)) = &q.failure {
        return Err(err.clone().poisoned());
    }
    if q.closed {
        return Err(Error::Closed);
    }
    Ok(())
}

/// Marks the newest queued group as needing a sync (or queues an empty one) and returns the
/// group to wait for; `None` when everything written is already synced.
fn sync_group(q: &mut QueueState) -> Option<u64> {
    if let Some(last) = q.groups.back_mut() {
        last.sync = true;
        return Some(last.id);
    }
    if q.written_len == q.synced_len && !q.leader_active {
        return None;
    }
    let id = q.next_group_id;
    q.next_group_id += 1;
    q.groups.push_back(Group { id, buf: Vec::new(), sync: true, records: 0, payload_bytes: 0 });
    Some(id)
}

/// What a leader did with one group.
struct GroupOutcome {
    bytes: u64,
    sync_time: Option<Duration>,
    synced_len: u64,
}

impl Shared {
    /// Waits until `group` is written (leading the write if nobody is); `spin`: spin once
    /// for a finished group before sleeping.
    fn wait_for(&self, group: u64, mut spin: bool) -> Result<()> {
        let max_group_bytes = self.options.max_group_bytes;
        let mut q = self.queue.lock();
        loop {
            if let Some((failed, err)) = &q.failure {
                if group >= *failed {
                    return Err(if group == *failed {
                        err.clone()
                    } else {
                        err.clone().poisoned()
                    });
                }
            }
            if q.done_through >= group {
                return Ok(());
            }
            if q.leader_active {
                if std::mem::take(&mut spin) {
                    // Any finished group changes what this waiter should do (return, lead,
                    // or wait on): watch the counter, then look again under the lock.
                    let seen = self.groups_finished.load(Ordering::Acquire);
                    MutexGuard::unlocked(&mut q, || {
                        spin_until(DEFAULT_SPIN, || {
                            self.groups_finished.load(Ordering::Acquire) != seen
                        })
                    });
                } else {
                    self.group_done.wait(&mut q);
                }
                continue;
            }
            // Lead: take the oldest group (ours or one before it).
            q.leader_active = true;
            if q.groups.front().is_some_and(|g| g.sync) {
                // The writers of the group that just completed were woken together with us
                // and are about to enqueue their next records. Give them one scheduler turn
                // to join this group before it is sealed: a yield costs microseconds, the
                // fdatasync it shares costs milliseconds, and without it the writers split
                // into two cohorts that alternate, halving the records per sync.
                MutexGuard::unlocked(&mut q, std::thread::yield_now);
            }
            let Some(taken) = q.groups.pop_front() else {
                q.leader_active = false;
                return Err(Error::Internal(format!(
                    "write-ahead log group {group} is neither queued nor done"
                )));
            };
            let outcome = MutexGuard::unlocked(&mut q, || self.write_group(&taken));
            q.leader_active = false;
            match outcome {
                Ok(o) => {
                    let mut buf = taken.buf;
                    if q.spare_bufs.len() < SPARE_BUFS
                        && buf.capacity() <= 2 * max_group_bytes.max(BLOCK_SIZE)
                    {
                        buf.clear();
                        q.spare_bufs.push(buf);
                    }
                    q.done_through = taken.id;
                    q.written_len += o.bytes;
                    q.synced_len = o.synced_len;
                    let stats = &mut q.stats;
                    stats.records += taken.records;
                    stats.payload_bytes += taken.payload_bytes;
                    stats.bytes_written += o.bytes;
                    if o.bytes > 0 {
                        stats.write_calls += 1;
                    }
                    if let Some(t) = o.sync_time {
                        stats.syncs += 1;
                        stats.sync_time += t;
                    }
                }
                Err(e) => {
                    // Poison: groups queued behind this one are never written.
                    q.failure = Some((taken.id, e));
                    q.groups.clear();
                }
            }
            self.groups_finished.fetch_add(1, Ordering::Release);
            self.group_done.notify_all();
        }
    }

    /// The leader's I/O, with the queue unlocked so other writers keep enqueuing. Groups
    /// are written in id order and each was framed where the previous one ends, so the
    /// group starts at the log writer's block offset.
    fn write_group(&self, group: &Group) -> Result<GroupOutcome> {
        let mut log = self.log.lock();
        let sync_time = log.write_framed(&group.buf, group.sync)?;
        if let (Some(elapsed), Some(hook)) = (sync_time, &self.options.on_sync) {
            // A panicking hook must not unwind through the leader: it would leave the log
            // with a leader that never finishes and every writer waiting forever.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(elapsed)));
        }
        Ok(GroupOutcome { bytes: group.buf.len() as u64, sync_time, synced_len: log.synced_len() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::FILE_HEADER_LEN;
    use crate::{LogReader, RecoveryMode};
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use strata_core::fs::WritableFile;
    use strata_core::sim::{CrashMode, InterceptCreate, SimFileSystem};

    pub(crate) const LOG: &str = "/db/000001.log";

    pub(crate) fn setup() -> (Arc<SimFileSystem>, Arc<Wal>) {
        setup_with(WalOptions::default())
    }

    fn setup_with(options: WalOptions) -> (Arc<SimFileSystem>, Arc<Wal>) {
        let fs = Arc::new(SimFileSystem::new());
        fs.create_dir_all(Path::new("/db")).unwrap();
        let wal = Wal::create(fs.clone(), LOG, options).unwrap();
        (fs, wal)
    }

    pub(crate) fn records(fs: &dyn FileSystem) -> Vec<Vec<u8>> {
        let mut reader = LogReader::open(fs, Path::new(LOG), RecoveryMode::Strict).unwrap();
        let mut out = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            out.push(r.payload.to_vec());
        }
        out
    }

    pub(crate) fn file_len(fs: &SimFileSystem) -> u64 {
        fs.file_size(Path::new(LOG)).unwrap()
    }

    pub(crate) fn synced(fs: &SimFileSystem) -> u64 {
        fs.synced_len(Path::new(LOG)).unwrap()
    }

    #[test]
    fn create_makes_header_and_name_durable() {
        let (fs, wal) = setup();
        assert_eq!(synced(&fs), FILE_HEADER_LEN as u64);
        assert_eq!(wal.stats().bytes_written, FILE_HEADER_LEN as u64);
        fs.crash(CrashMode::SyncedOnly);
        assert!(records(&*fs).is_empty());
    }

    #[test]
    fn queued_records_are_written_by_one_leader_in_one_call() {
        let (fs, wal) = setup();
        let tickets: Vec<_> =
            (0..100u32).map(|i| wal.enqueue(&i.to_le_bytes(), i == 50).unwrap()).collect();
        assert_eq!(file_len(&fs), FILE_HEADER_LEN as u64, "enqueue does no I/O");
        for t in tickets.into_iter().rev() {
            t.wait().unwrap();
        }
        let s = wal.stats();
        assert_eq!((s.records, s.write_calls, s.syncs), (100, 1, 2), "{s:?}");
        assert_eq!(s.payload_bytes, 400);
        assert_eq!(s.bytes_written, file_len(&fs));
        let want: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(records(&*fs), want);
    }

    #[test]
    fn groups_are_bounded_in_bytes() {
        let (fs, wal) = setup_with(WalOptions { max_group_bytes: 300, ..WalOptions::default() });
        // 100-byte payloads frame to 107 bytes: two fit in 300, three do not.
        let tickets: Vec<_> = (0..10u8).map(|i| wal.enqueue(&[i; 100], false).unwrap()).collect();
        // A record larger than the bound still forms a (single-record) group.
        let big = wal.enqueue(&[9; 1000], false).unwrap();
        big.wait().unwrap();
        assert_eq!(wal.stats().write_calls, 6);
        for t in tickets {
            t.wait().unwrap();
        }
        assert_eq!(records(&*fs).len(), 11);
    }

    #[test]
    fn buffered_append_is_in_the_file_but_not_synced() {
        let (fs, wal) = setup();
        wal.append(b"buffered", false).unwrap();
        assert!(file_len(&fs) > FILE_HEADER_LEN as u64);
        assert_eq!(synced(&fs), FILE_HEADER_LEN as u64);
        assert_eq!(records(&*fs), vec![b"buffered".to_vec()]);
        assert!(wal.has_unsynced());
        // Power loss loses it.
        fs.crash(CrashMode::SyncedOnly);
        assert!(records(&*fs).is_empty());
    }

    #[test]
    fn writeback_hints_follow_bytes_per_sync_and_make_nothing_durable() {
        let hinted = |fs: &SimFileSystem| fs.writeback_hinted(Path::new(LOG)).unwrap();
        let (fs, wal) = setup_with(WalOptions { bytes_per_sync: 1000, ..WalOptions::default() });
        // 100-byte payloads frame to 107 bytes: the 10th append crosses 1000 bytes past the
        // header, and the hint covers everything written up to it.
        for i in 0..9u8 {
            wal.append(&[i; 100], false).unwrap();
        }
        assert_eq!(hinted(&fs), 0);
        wal.append(&[9; 100], false).unwrap();
        assert_eq!(hinted(&fs), 10 * 107);
        for i in 10..20u8 {
            wal.append(&[i; 100], false).unwrap();
        }
        assert_eq!(hinted(&fs), 20 * 107);
        // A hint is not a sync: power loss still loses every buffered record.
        assert_eq!(synced(&fs), FILE_HEADER_LEN as u64);
        fs.crash(CrashMode::SyncedOnly);
        assert!(records(&*fs).is_empty());

        // A sync covers what it wrote: the next hint starts after it. 0 turns hints off.
        let (fs, wal) = setup_with(WalOptions { bytes_per_sync: 1000, ..WalOptions::default() });
        wal.append(&[0; 900], true).unwrap();
        wal.append(&[1; 900], false).unwrap();
        assert_eq!(hinted(&fs), 0);
        wal.append(&[2; 100], false).unwrap();
        assert_eq!(hinted(&fs), 907 + 107);
        let (fs, wal) = setup_with(WalOptions { bytes_per_sync: 0, ..WalOptions::default() });
        for i in 0..20u8 {
            wal.append(&[i; 100], false).unwrap();
        }
        assert_eq!(hinted(&fs), 0);
    }

    #[test]
    fn sync_append_is_durable() {
        let (fs, wal) = setup();
        wal.append(b"a", false).unwrap();
        wal.append(b"b", true).unwrap();
        assert_eq!(synced(&fs), file_len(&fs));
        assert!(!wal.has_unsynced());
        fs.crash(CrashMode::SyncedOnly);
        assert_eq!(records(&*fs), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn sync_covers_everything_enqueued_before() {
        let (fs, wal) = setup();
        wal.append(b"written", false).unwrap();
        let queued = wal.enqueue(b"queued", false).unwrap();
        wal.sync().unwrap();
        assert_eq!(synced(&fs), file_len(&fs));
        assert_eq!(records(&*fs).len(), 2);
        queued.wait().unwrap();
        let syncs = wal.stats().syncs;
        wal.sync().unwrap(); // nothing new: no fdatasync
        assert_eq!(wal.stats().syncs, syncs);
    }

    #[test]
    fn dropped_ticket_is_still_written_in_order() {
        let (fs, wal) = setup();
        drop(wal.enqueue(b"first", false).unwrap());
        wal.append(b"second", false).unwrap();
        assert_eq!(records(&*fs), vec![b"first".to_vec(), b"second".to_vec()]);
    }

    #[test]
    fn close_flushes_and_refuses_more() {
        let (fs, wal) = setup();
        let t = wal.enqueue(b"last words", false).unwrap();
        wal.close().unwrap();
        t.wait().unwrap();
        assert_eq!(synced(&fs), file_len(&fs));
        assert!(matches!(wal.enqueue(b"x", false), Err(Error::Closed)));
        assert!(matches!(wal.append(b"x", true), Err(Error::Closed)));
        assert!(matches!(wal.sync(), Err(Error::Closed)));
        wal.close().unwrap();
        fs.crash(CrashMode::SyncedOnly);
        assert_eq!(records(&*fs), vec![b"last words".to_vec()]);
    }

    #[test]
    fn on_sync_hook_sees_every_sync() {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let options = WalOptions {
            on_sync: Some(Arc::new(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            })),
            ..WalOptions::default()
        };
        let (_fs, wal) = setup_with(options);
        wal.append(b"a", true).unwrap();
        wal.append(b"b", false).unwrap();
        wal.sync().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(wal.stats().syncs, 3); // the header's too
    }

    #[test]
    fn concurrent_appends_keep_each_threads_order() {
        let (fs, wal) = setup();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        let mut p = vec![t];
                        p.extend_from_slice(&i.to_le_bytes());
                        p.resize(5 + (i as usize * 37) % 300, t);
                        wal.append(&p, i % 7 == 0).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let got = records(&*fs);
        assert_eq!(got.len(), 1600);
        let mut next = [0u32; 8];
        for r in got {
            let t = r[0] as usize;
            assert_eq!(u32::from_le_bytes(r[1..5].try_into().unwrap()), next[t]);
            next[t] += 1;
        }
        let s = wal.stats();
        assert_eq!(s.records, 1600);
        assert!(s.write_calls <= 1600);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Model: the list of payloads in enqueue order. Whatever the sizes, sync flags,
        /// group bound and order of waiting, the log reads back as exactly that list, and a
        /// crash keeps at least every record up to the last acknowledged sync.
        #[test]
        fn log_matches_model(
            ops in proptest::collection::vec((0usize..40_000, proptest::bool::weighted(0.2), proptest::bool::ANY), 1..40),
            max_group_bytes in 1usize..200_000,
            close_first in proptest::bool::ANY,
        ) {
            let (fs, wal) = setup_with(WalOptions { max_group_bytes, ..WalOptions::default() });
            let mut model = Vec::new();
            let mut pending = Vec::new();
            let mut synced_through = 0;
            for (i, &(len, sync, wait_now)) in ops.iter().enumerate() {
                let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                let ticket = wal.enqueue(&payload, sync).unwrap();
                model.push(payload);
                pending.push((ticket, sync, model.len()));
                if wait_now {
                    for (t, sync, n) in pending.drain(..).rev() {
                        t.wait().unwrap();
                        if sync {
                            synced_through = synced_through.max(n);
                        }
                    }
                }
            }
            let waited = model.len() - pending.len();
            drop(pending); // dropped tickets do not cancel their records
            let written = records(&*fs);
            proptest::prop_assert!(written.len() >= waited);
            proptest::prop_assert!(model.starts_with(&written));
            if close_first {
                wal.close().unwrap();
                synced_through = model.len();
                proptest::prop_assert_eq!(&records(&*fs), &model);
            }
            fs.crash(CrashMode::TornTail { seed: ops.len() as u64 });
            let after_crash = records(&*fs);
            proptest::prop_assert!(after_crash.len() >= synced_through);
            proptest::prop_assert!(model.starts_with(&after_crash));
        }
    }

    /// A one-shot gate: (announce entry, wait for release).
    type Gate = Arc<Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>>;

    /// A file whose next append (once the gate is armed) announces itself and blocks until
    /// released, to observe the writer while a leader is inside its I/O.
    struct GatedFile {
        inner: Box<dyn WritableFile>,
        gate: Gate,
    }

    impl WritableFile for GatedFile {
        fn append(&mut self, buf: &[u8]) -> io::Result<()> {
            let gate = self.gate.lock().take();
            if let Some((entered, release)) = gate {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
            self.inner.append(buf)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            self.inner.sync_data()
        }
        fn len(&self) -> u64 {
            self.inner.len()
        }
    }

    #[test]
    fn enqueue_proceeds_while_leader_writes_and_joins_the_next_group() {
        let sim = SimFileSystem::new();
        sim.create_dir_all(Path::new("/db")).unwrap();
        let gate = Arc::new(Mutex::new(None));
        let held = gate.clone();
        let fs = Arc::new(InterceptCreate::new(Arc::new(sim.clone()), move |path, inner| {
            Ok(Box::new(GatedFile { inner: inner.create(path)?, gate: held.clone() }))
        }));
        let wal = Wal::create(fs, LOG, WalOptions::default()).unwrap();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *gate.lock() = Some((entered_tx, release_rx));

        let first = wal.enqueue(b"A", false).unwrap();
        let leader = std::thread::spawn(move || first.wait());
        entered_rx.recv_timeout(Duration::from_secs(20)).expect("leader never started writing");

        // The leader is inside append: enqueueing must not block on it.
        let (tickets_tx, tickets_rx) = mpsc::channel();
        let w = wal.clone();
        let enqueuer = std::thread::spawn(move || {
            let b = w.enqueue(b"B", false).unwrap();
            let c = w.enqueue(b"C", true).unwrap();
            tickets_tx.send((b, c)).unwrap();
        });
        let (b, c) = tickets_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("enqueue blocked behind the leader's I/O");
        enqueuer.join().unwrap();
        assert!(wal.has_unsynced());
        release_tx.send(()).unwrap();
        leader.join().unwrap().unwrap();
        assert_eq!(wal.stats().write_calls, 1);
        c.wait().unwrap();
        b.wait().unwrap();
        let s = wal.stats();
        assert_eq!((s.write_calls, s.records), (2, 3), "B and C form the next group");
        assert_eq!(records(&sim), vec![b"A".to_vec(), b"B".to_vec(), b"C".to_vec()]);
    }
}
