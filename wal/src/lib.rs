//! strata's write-ahead log.
//!
//! * [`Wal`]: one log file, appended to by many threads with group commit: one leader
//!   writes all queued records with one `write` and at most one `fdatasync`.
//! * [`LogWriter`]: one log file written by one thread: frames, appends and syncs records,
//!   no threads or locks. [`Wal`] does its I/O through one; the manifest uses one directly.
//! * [`LogReader`]: reads a log back at recovery; drops and reports a torn tail, reports
//!   corruption followed by intact records as [`strata_core::Error::Corruption`], and
//!   examines a dropped tail byte by byte for logs that must hold at most one torn record
//!   ([`LogReader::examine_torn_tail`]).
//! * [`WriteBatch`]: the engine's unit of atomic writes, whose encoding is the record
//!   payload.
//! * [`Durability`]: how durable a write is when it returns.
//!
//! The byte layout is documented in `docs/format/wal.md` and in [`mod@format`]. Records are
//! opaque to the log, so the manifest writes its edits with a [`LogWriter`] and reads them
//! with a [`LogReader`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod batch;
pub mod format;
mod group_commit;
mod log_writer;
mod periodic_sync;
mod reader;

use std::time::Duration;

pub use batch::{
    BatchEncoding, BatchEntry, BatchIter, EntryKind, Expect, WriteBatch, BATCH_HEADER_LEN,
};
pub use group_commit::{CommitTicket, Wal, WalOptions, WalStats};
pub use log_writer::{LogWriter, LogWriterOptions};
pub use periodic_sync::PeriodicSync;
pub use reader::{LogReader, Record, RecoveryMode, TornTail};

/// How durable a write is when the call that made it returns.
///
/// ```
/// use std::time::Duration;
/// use strata_wal::Durability;
/// assert_eq!(Durability::default(), Durability::Buffered);
/// assert!(Durability::Sync.syncs_each_write());
/// assert!(Durability::Periodic(Duration::from_millis(100)).uses_wal());
/// assert!(!Durability::None.uses_wal());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// The record is on stable storage before the call returns: its group was written and
    /// `fdatasync`ed, and the log file's directory entry was fsynced when the file was
    /// created. Survives power loss.
    Sync,
    /// The record was handed to the operating system with a `write` system call before the
    /// call returns. Survives a crash of the process (`kill -9`), not power loss or a kernel
    /// crash.
    #[default]
    Buffered,
    /// [`Durability::Buffered`], plus a background `fdatasync` at least every interval (see
    /// [`Wal::spawn_periodic_sync`]): after power loss, at most about one interval of
    /// acknowledged writes is lost.
    Periodic(Duration),
    /// No write-ahead log: the write lives only in the memtable until it is flushed to a
    /// table; the caller accepts losing it on any crash. The engine skips the log; the
    /// [`Wal`] never sees these writes.
    None,
}

impl Durability {
    /// Whether writes go to the log at all.
    pub fn uses_wal(self) -> bool {
        self != Durability::None
    }

    /// Whether each write asks for an `fdatasync` of its group before it returns.
    pub fn syncs_each_write(self) -> bool {
        self == Durability::Sync
    }
}
