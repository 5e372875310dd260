use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The result type of every fallible strata operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strata.
///
/// The variants separate what the caller can act on: damaged data ([`Error::Corruption`]),
/// a failing disk or OS ([`Error::Io`]), misuse ([`Error::InvalidArgument`]), states of
/// the database ([`Error::Locked`], [`Error::Closed`], [`Error::Poisoned`], [`Error::Busy`],
/// [`Error::ReadOnly`]), outcomes of optimistic concurrency a caller retries or reports
/// ([`Error::Conflict`], [`Error::ConditionFailed`], [`Error::CrossShard`]), and bugs in
/// strata itself ([`Error::Internal`], [`Error::Panicked`]).
/// `Error` is `Clone` so that one failure (say a failed group-commit `fdatasync`) can be
/// handed to every writer it affects.
///
/// ```
/// use strata_core::Error;
/// let e = Error::corruption("000007.sst", 4096, "block checksum mismatch");
/// assert_eq!(e.to_string(), "corruption in 000007.sst at offset 4096: block checksum mismatch");
/// assert!(e.is_corruption());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes on disk are not what strata wrote: a checksum mismatch, a truncated file, an
    /// impossible length. Names the file and the byte offset where the damage was detected.
    #[error("corruption in {} at offset {offset}: {reason}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset in `file` where the damage was detected.
        offset: u64,
        /// What was wrong, for a person.
        reason: String,
    },
    /// The operating system reported an error.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// What strata was doing (`"fdatasync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The caller passed something strata does not accept (an oversized key, a bad option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another `Db` handle, in this or another process, holds the directory's lock.
    #[error("database directory {} is locked by another open handle or process", .0.display())]
    Locked(PathBuf),
    /// The database or log was closed.
    #[error("the database is closed")]
    Closed,
    /// An earlier write-path failure (a failed fsync, a full disk) left the database
    /// read-only: data handed to the OS may not be durable, so no further write is accepted.
    /// Reopening recovers what truly reached stable storage.
    #[error("the database is read-only after an earlier failure: {0}")]
    Poisoned(Box<Error>),
    /// A write asked not to wait (`WriteOptions::no_wait`) would have had to: its queue was
    /// full, or the engine was stalling writes. Nothing was written.
    #[error("the write would have to wait (a full write queue or a write stall)")]
    Busy,
    /// The database was opened read-only (`Db::open_read_only`): writes, flushes and
    /// compactions are refused.
    #[error("the database was opened read-only")]
    ReadOnly,
    /// A broken invariant inside strata: a state that cannot arise unless strata has a bug
    /// (not bad input, not damaged data, not the OS). Please report it with the message.
    /// Returned instead of panicking, so that the caller keeps control; the call may have
    /// done part of its work before it found the broken invariant.
    ///
    /// ```
    /// use strata_core::Error;
    /// let e = Error::Internal("write-ahead log group 7 is neither queued nor done".into());
    /// assert_eq!(
    ///     e.to_string(),
    ///     "internal error (a bug in strata, please report it): \
    ///      write-ahead log group 7 is neither queued nor done"
    /// );
    /// assert!(!e.is_corruption());
    /// assert!(matches!(e.poisoned(), Error::Poisoned(inner) if matches!(*inner, Error::Internal(_))));
    /// ```
    #[error("internal error (a bug in strata, please report it): {0}")]
    Internal(String),
    /// A background job panicked (a bug, or a panicking user-supplied file system). The
    /// database is poisoned with it, so waiters for that job get [`Error::Poisoned`] instead
    /// of waiting forever.
    #[error("a panic in the {thread} thread: {message}")]
    Panicked {
        /// Whose work panicked: `"flush"`, `"compaction"`.
        thread: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A transaction's commit found that a key it read or wrote, or a range it scanned, was
    /// written by another commit after the transaction's snapshot (or that the history
    /// needed to tell is no longer kept). Nothing of the transaction was applied: run it
    /// again on a new transaction.
    #[error("the transaction conflicts with a commit made after its snapshot; retry it")]
    Conflict,
    /// A conditional write's expectation did not hold at commit (`WriteBatch::expect`,
    /// `Db::compare_and_swap`); nothing of the batch was applied.
    #[error("the condition on key {key:?} did not hold; nothing was written")]
    ConditionFailed {
        /// The first key whose expectation failed.
        key: Vec<u8>,
    },
    /// The operation was cancelled before it took effect (a resharding stopped by
    /// `Resharding::cancel` or by closing the database): nothing of it remains.
    #[error("the operation was cancelled; nothing of it took effect")]
    Cancelled,
    /// A transaction of a sharded database touched a key (or a range) outside the one shard
    /// it is bound to; the transaction is still usable for its own shard.
    #[error("the transaction is bound to shard {bound}; this key or range needs shard {other}")]
    CrossShard {
        /// The shard the transaction's first key chose.
        bound: usize,
        /// The shard the refused key or range needs (the first of them for a range).
        other: usize,
    },
}

impl Error {
    /// A [`Error::Corruption`] for `file` at `offset`.
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption { file: file.into(), offset, reason: reason.into() }
    }

    /// An [`Error::Io`] for operation `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source: Arc::new(source) }
    }

    /// Whether this error (or the failure that poisoned the database) is corruption.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corruption { .. } => true,
            Error::Poisoned(inner) => inner.is_corruption(),
            _ => false,
        }
    }

    /// Wraps the error in [`Error::Poisoned`] unless it already is one.
    pub fn poisoned(self) -> Self {
        match self {
            e @ Error::Poisoned(_) => e,
            e => Error::Poisoned(Box::new(e)),
        }
    }
}

/// Adds the operation and path to an `io::Result`, turning it into a strata [`Result`].
///
/// ```
/// use strata_core::IoResultExt;
/// let r: std::io::Result<()> = Err(std::io::Error::other("disk on fire"));
/// let e = r.ctx("fdatasync", "000001.log").unwrap_err();
/// assert!(e.to_string().contains("fdatasync on 000001.log"));
/// ```
pub trait IoResultExt<T> {
    /// Converts the error into [`Error::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(op, path.as_ref(), e))
    }
}
