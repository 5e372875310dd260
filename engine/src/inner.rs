//! [`DbInner`]: one open database, made of owned parts, and the one constructor that builds
//! it from what recovery produced.
//!
//! | part | type (file) | owns |
//! |---|---|---|
//! | `commit` | [`CommitPipeline`] (`commit.rs`) | sequence numbers, the commit lock over [`WriteState`] (active log and memtable), publication and the visible sequence |
//! | `versions` | [`VersionSet`] (`version_set.rs`) | the view, versions, MANIFEST, file numbers, pending outputs, seals, cursors, install and purge |
//! | `background` | [`Background`] (`background.rs`) | background bookkeeping and its condition variable, the threads, the compaction lock and rate limit |
//! | `health` | [`Health`] (`health.rs`) | closed, and the first error that poisoned the database |
//! | `snapshots` | [`SnapshotList`] (`state.rs`) | the sequence numbers live snapshots read at |
//! | `tables`, `metrics`, `async_writer` | `table_cache.rs`, `metrics.rs`, `async_write.rs` | open tables and the block cache; counters; the `write_async` queue |
//!
//! What uses them, each in its own file over `DbInner`: the write path (`write.rs`, the
//! pipeline's environment), flush (`flush.rs`), compaction (`compaction.rs`), reads
//! (`read.rs`), snapshots and iterators (`snapshot.rs`), verification (`verify.rs`) and
//! recovery (`recovery.rs`); `db.rs` sits on top with the public API and close. None of the
//! parts imports `DbInner`.
//!
//! # Lock order
//! Every lock of a database, in the order they may be nested (a lock is only ever taken
//! while holding locks above it in this table):
//!
//! | # | lock | held for |
//! |---|---|---|
//! | 1 | `background.compaction_lock` | a whole compaction step (one at a time) |
//! | 2 | `commit`'s commit lock | sequencing and logging one batch; a memtable switch |
//! | 3 | `versions`' version lock | a manifest edit and the install that follows it |
//! | 4 | `background`'s state lock | checking and changing background bookkeeping; sleepers wait on its condition variable |
//! | 5 | `versions`' view lock | cloning or swapping the view's `Arc` |
//! | leaf | `commit`'s publish lock; `versions`' pending outputs, seals and cursors; `health`'s error; `snapshots`; `lock_file`; `background`'s thread list | a few field reads or writes, never taking another lock |

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use strata_core::fs::{FileLock, FileSystem};
use strata_core::{Error, Result};

use crate::async_write::AsyncWriter;
use crate::background::Background;
use crate::commit::CommitPipeline;
use crate::health::Health;
use crate::metrics::MetricsRecorder;
use crate::options::Options;
use crate::state::{SnapshotList, SuperVersion, WriteState};
use crate::table_cache::TableCache;
use crate::version_set::{VersionSet, VersionSetParts};

pub(crate) struct DbInner {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) fs: Arc<dyn FileSystem>,
    /// Opened with `Db::open_read_only`: no log, no manifest, no lock, no background
    /// threads; every write path returns [`Error::ReadOnly`].
    pub(crate) read_only: bool,
    pub(crate) lock_file: Mutex<Option<FileLock>>,
    pub(crate) commit: CommitPipeline<WriteState>,
    pub(crate) versions: VersionSet,
    pub(crate) background: Background,
    pub(crate) health: Health,
    pub(crate) snapshots: Mutex<SnapshotList>,
    pub(crate) tables: Arc<TableCache>,
    pub(crate) metrics: MetricsRecorder,
    pub(crate) async_writer: OnceLock<AsyncWriter>,
}

/// What recovery hands to [`DbInner::new`]: the recovered state, and the lock of a writable
/// database (`None` in a read-only one, whose write state has no log and whose version
/// state has no manifest).
pub(crate) struct Recovered {
    pub(crate) dir: PathBuf,
    pub(crate) lock: Option<FileLock>,
    pub(crate) write: WriteState,
    pub(crate) versions: VersionSetParts,
    pub(crate) last_seq: strata_core::key::SeqNo,
    pub(crate) tables: Arc<TableCache>,
    pub(crate) metrics: MetricsRecorder,
}

impl DbInner {
    /// The one place that builds a [`DbInner`], for both kinds of open.
    pub(crate) fn new(r: Recovered, opts: Options) -> Arc<DbInner> {
        Arc::new(DbInner {
            fs: Arc::clone(&opts.fs),
            read_only: r.write.wal.is_none(),
            lock_file: Mutex::new(r.lock),
            commit: CommitPipeline::new(r.last_seq, r.write),
            versions: VersionSet::new(r.versions),
            background: Background::new(
                opts.compaction_rate_limit.map(strata_compaction::RateLimiter::new),
            ),
            health: Health::default(),
            snapshots: Mutex::new(SnapshotList::default()),
            tables: r.tables,
            metrics: r.metrics,
            async_writer: OnceLock::new(),
            dir: r.dir,
            opts,
        })
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        self.health.check_open()
    }

    /// Fails if the database can no longer accept writes.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.health.check_open()?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.health.check_writable()
    }

    /// Puts the database in the read-only error state (first error wins) and wakes every
    /// sleeper so it sees that. Never called with the background state lock held.
    pub(crate) fn poison(&self, error: &Error) {
        self.health.poison(error);
        self.background.notify();
        self.commit.notify_all();
    }

    pub(crate) fn current_view(&self) -> Arc<SuperVersion> {
        self.versions.current()
    }

    /// Swaps the view ([`VersionSet::swap_view`]) and wakes the background sleepers.
    pub(crate) fn swap_view(&self, next: impl FnOnce(&SuperVersion) -> SuperVersion) {
        self.versions.swap_view(next);
        self.background.notify();
    }

    /// Logs `edit` and installs its version ([`VersionSet::install`]), then wakes the
    /// background sleepers.
    pub(crate) fn install(
        &self,
        edit: strata_compaction::VersionEdit,
        flushed: Option<&Arc<crate::memtable::MemTable>>,
    ) -> Result<()> {
        let result = self.versions.install(edit, flushed, self.commit.visible());
        self.background.notify();
        result
    }
}
