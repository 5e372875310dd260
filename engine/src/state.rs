//! The plain state types the owned parts of a database guard: what a read sees
//! ([`SuperVersion`]), what the commit lock guards ([`WriteState`]), what the version lock
//! guards ([`VersionState`]) and the snapshot registry ([`SnapshotList`]). No behaviour
//! lives here beyond small accessors; each type's owner is named on it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use strata_compaction::{Manifest, SealedLog, Version};
use strata_core::key::SeqNo;
use strata_core::range_del::RangeTombstones;
use strata_core::{Error, Result};
use strata_wal::{PeriodicSync, Wal, WalStats};

use crate::conflict::ConflictWindow;
use crate::memtable::MemTable;

/// What a read sees: the memtables and the tables at one moment. Owned by the
/// [`crate::version_set::VersionSet`], which swaps it (and its mirrors) in one function.
pub(crate) struct SuperVersion {
    pub(crate) mem: Arc<MemTable>,
    /// Immutable memtables waiting for flush, newest first.
    pub(crate) imms: Vec<Arc<MemTable>>,
    pub(crate) version: Arc<Version>,
    /// The range tombstones of `version`'s tables, gathered by the first read that needs
    /// them (`DbInner::table_tombstones`) and shared by every view of the same version.
    pub(crate) table_tombstones: Arc<OnceLock<Option<Arc<TableTombstones>>>>,
}

/// The range tombstones of a version's tables, and the newest of their sequence numbers
/// (a version at or above it is deleted by none: no search needed).
pub(crate) struct TableTombstones {
    pub(crate) set: Arc<RangeTombstones>,
    pub(crate) max_seq: SeqNo,
}

impl SuperVersion {
    /// A view of `version` (whose table tombstones are gathered anew when first needed).
    pub(crate) fn new(mem: Arc<MemTable>, imms: Vec<Arc<MemTable>>, version: Arc<Version>) -> Self {
        SuperVersion { mem, imms, version, table_tombstones: Arc::default() }
    }

    /// This view's version with other memtables.
    pub(crate) fn with_memtables(&self, mem: Arc<MemTable>, imms: Vec<Arc<MemTable>>) -> Self {
        SuperVersion {
            mem,
            imms,
            version: Arc::clone(&self.version),
            table_tombstones: Arc::clone(&self.table_tombstones),
        }
    }
}

/// The log side of the write path, guarded by the commit lock of the
/// [`crate::commit::CommitPipeline`] (with the next sequence number beside it).
pub(crate) struct WriteState {
    /// The active memtable, the same as the view's: writers take it from here, under the
    /// lock they hold anyway, rather than from the view's lock, which readers share.
    pub(crate) mem: Arc<MemTable>,
    /// The log being written; `None` in a read-only database, which has none.
    pub(crate) wal: Option<Arc<Wal>>,
    pub(crate) periodic: Option<(Duration, PeriodicSync)>,
    /// WAL statistics of logs already retired, so totals survive rotation.
    pub(crate) retired_wal_stats: WalStats,
    /// Whether the active memtable holds writes made with `Durability::None`, which only a
    /// flush makes durable.
    pub(crate) unlogged: bool,
    /// The last sequence number enqueued in a log (this one or an earlier one): what a seal
    /// of the active log records.
    pub(crate) logged_seq: SeqNo,
    /// Keys written while transactions are open, to validate their commits.
    pub(crate) conflicts: ConflictWindow,
}

impl WriteState {
    /// The log, or [`Error::ReadOnly`] in a read-only database.
    pub(crate) fn wal(&self) -> Result<&Arc<Wal>> {
        self.wal.as_ref().ok_or(Error::ReadOnly)
    }

    /// The log's counters plus those of every log retired before it.
    pub(crate) fn wal_totals(&self) -> WalStats {
        let mut total = self.retired_wal_stats;
        if let Some(wal) = &self.wal {
            add_stats(&mut total, &wal.stats());
        }
        total
    }

    /// Adds a retired log's counters to the totals.
    pub(crate) fn retire_stats(&mut self, stats: &WalStats) {
        add_stats(&mut self.retired_wal_stats, stats);
    }
}

fn add_stats(total: &mut WalStats, s: &WalStats) {
    total.records += s.records;
    total.payload_bytes += s.payload_bytes;
    total.bytes_written += s.bytes_written;
    total.write_calls += s.write_calls;
    total.syncs += s.syncs;
    total.sync_time += s.sync_time;
}

/// The table set's persistent side, guarded by the version lock of the
/// [`crate::version_set::VersionSet`].
pub(crate) struct VersionState {
    /// The MANIFEST being appended to; `None` in a read-only database, which writes none.
    pub(crate) manifest: Option<Manifest>,
    pub(crate) log_number: u64,
    /// Every version handed out, so that a table is deleted only when none reads it.
    pub(crate) handed_out: Vec<Weak<Version>>,
    /// Sealed logs recorded in the manifest and not yet below `log_number`: a rotation's
    /// snapshot must carry them.
    pub(crate) sealed_logs: Vec<SealedLog>,
}

impl VersionState {
    /// The manifest, or [`Error::ReadOnly`] in a read-only database.
    pub(crate) fn manifest(&mut self) -> Result<&mut Manifest> {
        self.manifest.as_mut().ok_or(Error::ReadOnly)
    }
}

/// The sequence numbers live snapshots read at, with a count each: compaction keeps every
/// version one of them can see. Guarded by its own leaf lock in `DbInner`.
#[derive(Default)]
pub(crate) struct SnapshotList {
    counts: BTreeMap<SeqNo, usize>,
}

impl SnapshotList {
    pub(crate) fn register(&mut self, seq: SeqNo) {
        *self.counts.entry(seq).or_insert(0) += 1;
    }

    pub(crate) fn release(&mut self, seq: SeqNo) {
        if let Some(n) = self.counts.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&seq);
            }
        }
    }

    /// The distinct sequence numbers in use, oldest first.
    pub(crate) fn sequences(&self) -> Vec<SeqNo> {
        self.counts.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotList;

    #[test]
    fn a_sequence_stays_registered_until_its_last_snapshot_goes() {
        let mut list = SnapshotList::default();
        list.register(5);
        list.register(5);
        list.register(9);
        list.release(5);
        assert_eq!(list.sequences(), [5, 9]);
        list.release(5);
        list.release(7); // never registered: ignored
        assert_eq!(list.sequences(), [9]);
    }
}
