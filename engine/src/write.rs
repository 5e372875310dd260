//! The write path's side of committing: validation, and the environment the commit pipeline
//! ([`crate::commit`], which owns the ordering) runs in — admission and stalls, room in the
//! memtable and memtable switches (each with a new log), the WAL's group commit, applying a
//! batch to the memtable, and poisoning when the log fails.
//!
//! ```text
//!  writer ──validate──> admit: level-0 stalls
//!         ──[commit lock: make room (switch memtable + log) · sequence · wal.enqueue]──>
//!         ──insert into the memtable ──> wait for the WAL group (one write + ≤1 fdatasync)
//!         ──publish (commit.rs) ──> return
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_compaction::{log_file_name, SealedLog};
use strata_core::key::SeqNo;
use strata_core::{Error, Result};
use strata_wal::{BatchEncoding, CommitTicket, Durability, EntryKind, Wal, WalOptions, WriteBatch};

use crate::commit::{CommitEnv, CommitMode, LogTicket, Room};
use crate::inner::DbInner;
use crate::memtable::MemTable;
use crate::metrics::StallCause;
use crate::options::{MAX_KEY_SIZE, MAX_VALUE_SIZE};
use crate::state::WriteState;

/// Checks sizes and counts what the batch holds: (puts, deletes, user bytes).
///
/// Every path to a log goes through here before anything is logged: [`DbInner::write`]
/// itself, and the sharded and queued entry points up front, so that an oversized entry
/// fails the whole call before any shard or queue takes a part of it.
pub(crate) fn validate(batch: &WriteBatch) -> Result<(u64, u64, u64)> {
    let (mut puts, mut deletes, mut bytes) = (0, 0, 0);
    for e in batch.iter() {
        if e.key.len() > MAX_KEY_SIZE {
            return Err(Error::InvalidArgument(format!(
                "key of {} bytes exceeds the {MAX_KEY_SIZE}-byte limit",
                e.key.len()
            )));
        }
        if e.kind == EntryKind::DeleteRange && e.value.len() > MAX_KEY_SIZE {
            return Err(Error::InvalidArgument(format!(
                "range delete end key of {} bytes exceeds the {MAX_KEY_SIZE}-byte limit",
                e.value.len()
            )));
        }
        if e.value.len() > MAX_VALUE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the {MAX_VALUE_SIZE}-byte limit",
                e.value.len()
            )));
        }
        match e.kind {
            EntryKind::Put => puts += 1,
            EntryKind::Delete | EntryKind::DeleteRange => deletes += 1,
        }
        bytes += (e.key.len() + e.value.len()) as u64;
    }
    Ok((puts, deletes, bytes))
}

pub(crate) fn wal_options(
    opts: &crate::Options,
    sync_latency: &Arc<crate::histogram::Histogram>,
) -> WalOptions {
    let hist = Arc::clone(sync_latency);
    WalOptions {
        on_sync: Some(Arc::new(move |d: Duration| hist.record(d))),
        bytes_per_sync: opts.wal_bytes_per_sync,
        ..WalOptions::default()
    }
}

impl LogTicket for CommitTicket {
    fn wait(self) -> Result<()> {
        CommitTicket::wait(self)
    }
}

impl DbInner {
    /// Applies `batch` atomically through the commit pipeline.
    pub(crate) fn write(&self, mut batch: WriteBatch, mode: CommitMode) -> Result<()> {
        if !batch.expectations().is_empty() {
            return self.write_conditional(batch, mode);
        }
        self.write_checked(&mut batch, mode, |_, _| Ok(()))
    }

    /// [`DbInner::write`] with `check` run under the commit lock before the batch is
    /// sequenced ([`crate::commit::CommitPipeline::commit_checked`]).
    pub(crate) fn write_checked(
        &self,
        batch: &mut WriteBatch,
        mode: CommitMode,
        check: impl FnOnce(&mut WriteState, &WriteBatch) -> Result<()>,
    ) -> Result<()> {
        let start = Instant::now();
        self.check_writable()?;
        if batch.is_empty() {
            return Ok(());
        }
        let (puts, deletes, user_bytes) = validate(batch)?;
        crate::options::check_durability(mode.durability)?;
        self.commit.commit_checked(self, batch, mode, check)?;
        self.metrics.wrote(puts, deletes, user_bytes, start.elapsed());
        Ok(())
    }

    /// Waits until every write given a sequence number up to `seq` is visible.
    pub(crate) fn wait_visible(&self, seq: SeqNo) {
        self.commit.wait_visible(seq);
    }

    /// Makes the active memtable immutable and starts a new one with a new log. The old log
    /// is synced first, so that only the newest log can ever end in a torn record.
    /// `last_assigned` is the last sequence number given out: the old memtable's last.
    pub(crate) fn switch_memtable(&self, w: &mut WriteState, last_assigned: SeqNo) -> Result<()> {
        let number = self.versions.allocate_file_number();
        let path = self.dir.join(log_file_name(number));
        let wal = w
            .wal()?
            .sync()
            .and_then(|()| {
                Wal::create(
                    Arc::clone(&self.fs),
                    path,
                    wal_options(&self.opts, &self.metrics.wal_sync_latency),
                )
            })
            .inspect_err(|e| self.poison(e))?;
        // The new log's syncer starts before the switch: without it, writes promised
        // `Periodic` would silently be `Buffered`, so a refused thread is a failed switch.
        let periodic = match w.periodic.as_ref().map(|(every, _)| *every) {
            Some(every) => match wal.spawn_periodic_sync(every) {
                Ok(syncer) => Some((every, syncer)),
                Err(e) => {
                    self.poison(&e);
                    return Err(e);
                }
            },
            None => None,
        };
        let old = w.wal.replace(wal).ok_or(Error::ReadOnly)?;
        // The old log is synced and takes no more records: its seal goes into the next
        // manifest edit (not written here, to keep a manifest sync off the write path).
        self.versions.add_seal(SealedLog {
            number: w.mem.wal_number(),
            length: old.written_len(),
            last_sequence: w.logged_seq,
        });
        w.mem.set_log_bytes(old.written_len());
        self.versions.add_sealed_log_bytes(old.written_len());
        let _ = old.close(); // already synced; closing only refuses further appends
        w.retire_stats(&old.stats());
        if let Some(p) = periodic {
            w.periodic = Some(p);
        }
        w.unlogged = false;

        let mem = Arc::new(MemTable::new(number));
        w.mem = Arc::clone(&mem);
        self.swap_view(|view| {
            view.mem.seal(last_assigned);
            let mut imms = Vec::with_capacity(view.imms.len() + 1);
            imms.push(Arc::clone(&view.mem));
            imms.extend(view.imms.iter().cloned());
            view.with_memtables(mem, imms)
        });
        Ok(())
    }

    /// Makes the active memtable (if not empty) immutable and waits until it and every
    /// older immutable memtable are flushed.
    pub(crate) fn flush_and_wait(&self) -> Result<()> {
        self.check_writable()?;
        self.flush_all()
    }

    /// [`DbInner::flush_and_wait`] without the open check, for `close`.
    pub(crate) fn flush_all(&self) -> Result<()> {
        let target = {
            let mut w = self.commit.lock();
            if !self.current_view().mem.is_empty() {
                let last = w.last_assigned();
                self.switch_memtable(&mut w, last)?;
            }
            self.current_view().imms.first().map(|m| m.wal_number())
        };
        let Some(target) = target else { return Ok(()) };
        let mut bg = self.background.lock();
        loop {
            if self.health.is_poisoned() {
                drop(bg);
                return self.check_writable();
            }
            if self.current_view().imms.iter().all(|m| m.wal_number() > target) {
                return Ok(());
            }
            self.background.wait(&mut bg, Some(Duration::from_millis(50)));
        }
    }
}

/// The write path's environment for the commit pipeline: the WAL, the memtable, memtable
/// switches, stalls and poisoning.
impl CommitEnv for DbInner {
    type State = WriteState;
    type Mem = Arc<MemTable>;
    type Ticket = CommitTicket;

    /// Write stalls driven by the number of level-0 tables.
    fn admit(&self, mode: CommitMode) -> Result<()> {
        let files = self.versions.l0_files();
        if files >= self.opts.l0_stop_trigger {
            if mode.no_wait {
                return Err(Error::Busy);
            }
            let stalled = Instant::now();
            let mut bg = self.background.lock();
            while self.versions.l0_files() >= self.opts.l0_stop_trigger && !bg.shutdown {
                self.check_writable()?;
                self.background.wait(&mut bg, Some(Duration::from_millis(50)));
            }
            drop(bg);
            self.metrics.stall(StallCause::L0Stop, stalled.elapsed());
        } else if files >= self.opts.l0_slowdown_trigger {
            if mode.no_wait {
                return Err(Error::Busy);
            }
            let delay = Duration::from_millis(1);
            std::thread::sleep(delay);
            self.metrics.stall(StallCause::L0Slowdown, delay);
        }
        Ok(())
    }

    /// Room in the active memtable, or a switch to a new one while fewer than
    /// `max_immutable_memtables` wait for flush. When the live logs reach
    /// `max_total_wal_size`, the active memtable is switched early if nothing waits for
    /// flush (so its log can go), and otherwise writers wait for a flush.
    fn make_room(&self, w: &mut WriteState, next_seq: SeqNo) -> Result<Room<Arc<MemTable>>> {
        self.check_writable()?;
        let active_log = w.wal.as_ref().map_or(0, |wal| wal.written_len());
        let logs_full =
            self.versions.sealed_log_bytes() + active_log >= self.opts.max_total_wal_size;
        let mem_full = w.mem.approximate_bytes() >= self.opts.memtable_size;
        if !mem_full && !logs_full {
            return Ok(Room::Ready(Arc::clone(&w.mem)));
        }
        let imms = self.versions.imm_count();
        if logs_full && imms > 0 {
            // A switch would free no log: only the flush already queued does.
            self.versions.note_wal_stall();
            return Ok(Room::Full);
        }
        if imms < self.opts.max_immutable_memtables {
            if !w.mem.is_empty() {
                self.switch_memtable(w, next_seq - 1)?;
            }
            return Ok(Room::Ready(Arc::clone(&w.mem)));
        }
        Ok(Room::Full)
    }

    /// Stalls until a flush retires an immutable memtable.
    fn wait_for_room(&self, mode: CommitMode) -> Result<()> {
        if mode.no_wait {
            return Err(Error::Busy);
        }
        let stalled = Instant::now();
        let for_logs = self.versions.take_wal_stall();
        let flushes = self.versions.flushes();
        {
            let mut bg = self.background.lock();
            let waiting = |this: &Self| {
                if for_logs {
                    // Until a flush retires a memtable (and its log), or none is left.
                    this.versions.flushes() == flushes && this.versions.imm_count() > 0
                } else {
                    this.versions.imm_count() >= this.opts.max_immutable_memtables
                }
            };
            while waiting(self) && !self.health.is_poisoned() && !bg.shutdown {
                self.background.wait(&mut bg, Some(Duration::from_millis(50)));
            }
        }
        let cause = if for_logs { StallCause::WalLimit } else { StallCause::MemtableLimit };
        self.metrics.stall(cause, stalled.elapsed());
        Ok(())
    }

    fn log(
        &self,
        w: &mut WriteState,
        batch: &WriteBatch,
        last_seq: SeqNo,
        mode: CommitMode,
    ) -> Result<Option<CommitTicket>> {
        if !mode.durability.uses_wal() {
            w.unlogged = true;
            // Sequenced now: open transactions must see it, applied or not.
            w.conflicts.record(batch, batch.sequence());
            return Ok(None);
        }
        if let Durability::Periodic(every) = mode.durability {
            // Nothing is logged yet: a refused thread fails this write alone.
            ensure_periodic_sync(w, every)?;
        }
        match w.wal()?.enqueue(batch.as_bytes(), mode.durability.syncs_each_write()) {
            Ok(ticket) => {
                w.logged_seq = last_seq;
                // Recorded only once the batch is sure to be sequenced (a refused syncer
                // thread fails it before): a batch that never happened conflicts with
                // nothing.
                w.conflicts.record(batch, batch.sequence());
                Ok(Some(ticket))
            }
            Err(e) => {
                self.poison(&e);
                Err(e)
            }
        }
    }

    fn apply(&self, mem: &Arc<MemTable>, batch: &WriteBatch) {
        insert_batch(mem, batch);
    }

    fn unapply(&self, mem: &Arc<MemTable>, batch: &WriteBatch) {
        remove_batch(mem, batch);
    }

    /// The log may hold the batch or not: the database goes read-only so that nothing
    /// later can be acknowledged on top of it.
    fn log_failed(&self, error: &Error) {
        self.poison(error);
    }
}

fn ensure_periodic_sync(w: &mut WriteState, every: Duration) -> Result<()> {
    if w.periodic.as_ref().is_some_and(|(current, _)| *current <= every) {
        return Ok(());
    }
    w.periodic = Some((every, w.wal()?.spawn_periodic_sync(every)?));
    Ok(())
}

/// Copies every entry of `batch` into `mem` (writers, and recovery's log replay).
pub(crate) fn insert_batch(mem: &MemTable, batch: &WriteBatch) {
    let seq = batch.sequence();
    for (i, e) in batch.iter().enumerate() {
        match e.kind.point() {
            Some(kind) => mem.insert(e.key, seq + i as u64, kind, e.value),
            None => mem.insert_range_delete(e.key, e.value, seq + i as u64),
        }
    }
}

/// Takes the entries of `batch` out of `mem` again, after its log write failed.
fn remove_batch(mem: &MemTable, batch: &WriteBatch) {
    let seq = batch.sequence();
    for (i, e) in batch.iter().enumerate() {
        match e.kind.point() {
            Some(kind) => mem.remove(e.key, seq + i as u64, kind),
            None => mem.remove_range_delete(e.key, e.value, seq + i as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, Options};

    /// The write path's stall check reads `l0_files`, not the version: it must follow every
    /// table flushes add and compactions take away, and start right after a reopen.
    #[test]
    fn the_level_0_count_of_the_write_path_follows_the_version() {
        let in_sync = |db: &Db| {
            let seen = db.inner.versions.l0_files();
            assert_eq!(seen, db.inner.current_view().version.num_files(0));
            seen
        };
        let dir = tempfile::tempdir().unwrap();
        let opts = || Options::default().l0_compaction_trigger(8);
        {
            let db = Db::open(dir.path(), opts()).unwrap();
            assert_eq!(in_sync(&db), 0);
            for i in 1..=3u32 {
                db.put(i.to_be_bytes(), "v").unwrap();
                db.flush().unwrap();
                assert_eq!(in_sync(&db), i as usize);
            }
        }
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(in_sync(&db), 3);
        db.compact().unwrap();
        assert_eq!(in_sync(&db), 0);
    }

    /// With `max_total_wal_size` below the memtable size, the live logs (sealed ones whose
    /// memtables wait for flush, plus the active one) never exceed the bound by more than
    /// one write, and a reopen finds everything.
    #[test]
    fn the_live_logs_stay_within_max_total_wal_size() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 256 << 10;
        let opts = || Options::default().memtable_size(4 << 20).max_total_wal_size(limit);
        let db = Db::open(dir.path(), opts()).unwrap();
        let value = [7u8; 1000];
        let mut worst = 0;
        for i in 0..4000u32 {
            db.put(i.to_be_bytes(), value).unwrap();
            let active = db.inner.commit.lock().wal.as_ref().map_or(0, |w| w.written_len());
            worst = worst.max(db.inner.versions.sealed_log_bytes() + active);
        }
        assert!(worst <= limit + 2 * 1100, "live logs reached {worst}, limit {limit}");
        assert!(db.metrics().flushes >= 10, "the bound flushed early: {:?}", db.metrics().flushes);
        drop(db);
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(db.iter().count(), 4000);
    }
}
