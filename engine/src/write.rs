//! The write path: validation, backpressure, sequence assignment, group commit through the
//! WAL, concurrent memtable insertion and in-order publication.
//!
//! ```text
//!  writer ──validate──> [write lock: make room · seq = next_seq · wal.enqueue · queue publish]
//!         ──insert into memtable (concurrently with other writers; invisible until published)──>
//!         ──ticket.wait (WAL group commit: one write + ≤1 fdatasync for the group;
//!                        on failure the batch is taken out of the memtable again)──>
//!         ──publish: visible_seq advances over the contiguous prefix of finished batches──> return
//! ```

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;
use strata_compaction::log_file_name;
use strata_core::key::{SeqNo, ValueKind, MAX_SEQ};
use strata_core::spin::{spin_until, DEFAULT_SPIN};
use strata_core::{Error, Result};
use strata_wal::{BatchEncoding, Durability, Wal, WalOptions, WalStats, WriteBatch};

use crate::db::{DbInner, SuperVersion, WriteState};
use crate::memtable::MemTable;
use crate::metrics::StallCause;
use crate::options::{WriteOptions, MAX_KEY_SIZE, MAX_VALUE_SIZE};

/// Batches that have sequence numbers but are not yet visible, in sequence order.
#[derive(Default)]
pub(crate) struct PublishQueue {
    pending: VecDeque<Pending>,
}

struct Pending {
    last_seq: SeqNo,
    done: bool,
}

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
        if e.value.len() > MAX_VALUE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the {MAX_VALUE_SIZE}-byte limit",
                e.value.len()
            )));
        }
        match e.kind {
            ValueKind::Put => puts += 1,
            ValueKind::Delete => deletes += 1,
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

fn add_stats(total: &mut WalStats, s: &WalStats) {
    total.records += s.records;
    total.payload_bytes += s.payload_bytes;
    total.bytes_written += s.bytes_written;
    total.write_calls += s.write_calls;
    total.syncs += s.syncs;
    total.sync_time += s.sync_time;
}

impl DbInner {
    pub(crate) fn write(&self, mut batch: WriteBatch, options: &WriteOptions) -> Result<()> {
        let start = Instant::now();
        self.check_writable()?;
        if batch.is_empty() {
            return Ok(());
        }
        let (puts, deletes, user_bytes) = validate(&batch)?;
        let durability = options.resolve(self.opts.durability)?;
        self.delay_for_level0(options.no_wait)?;
        let count = batch.len() as u64;

        let (ticket, mem, last_seq) = {
            let (mut w, mem) = self.lock_for_write(options.no_wait)?;
            let first = w.next_seq;
            let last = first + count - 1;
            if last > MAX_SEQ {
                return Err(Error::InvalidArgument("sequence numbers exhausted".into()));
            }
            batch.set_sequence(first);
            let ticket = if durability.uses_wal() {
                if let Durability::Periodic(every) = durability {
                    // Nothing is logged yet: a refused thread fails this write alone.
                    ensure_periodic_sync(&mut w, every)?;
                }
                match w.wal()?.enqueue(batch.as_bytes(), durability.syncs_each_write()) {
                    Ok(t) => {
                        w.logged_seq = last;
                        Some(t)
                    }
                    Err(e) => {
                        self.poison(&e);
                        return Err(e);
                    }
                }
            } else {
                w.unlogged = true;
                None
            };
            w.next_seq = last + 1;
            self.publish.lock().pending.push_back(Pending { last_seq: last, done: false });
            (ticket, mem, last)
        };

        // The batch goes into the memtable while its log record is written (by this thread
        // or by a group's leader), so that the two overlap. It stays invisible until
        // published, and publication waits for the log.
        insert_batch(&mem, &batch);
        let logged = match ticket {
            Some(t) => t.wait(),
            None => Ok(()),
        };
        if let Err(e) = &logged {
            // The log may hold the batch or not: it is neither acknowledged nor applied (it
            // leaves the memtable before its sequence numbers become visible), and the
            // database goes read-only so nothing later can be acknowledged on top of it.
            self.poison(e);
            remove_batch(&mem, &batch);
        }
        // After an fdatasync, the whole group wakes at once, usually more writers than
        // cores: the batch this one waits for is then often on a thread not yet running,
        // and spinning would hold the core it needs.
        self.publish(last_seq, !durability.syncs_each_write());
        logged?;

        self.metrics.wrote(puts, deletes, user_bytes, start.elapsed());
        Ok(())
    }

    /// Marks the batch ending at `last_seq` finished and waits until it is visible;
    /// `spin`: spin for a while before sleeping.
    fn publish(&self, last_seq: SeqNo, spin: bool) {
        let mut q = self.publish.lock();
        if let Some(p) = q.pending.iter_mut().find(|p| p.last_seq == last_seq) {
            p.done = true;
        }
        let mut advanced = false;
        while q.pending.front().is_some_and(|p| p.done) {
            if let Some(p) = q.pending.pop_front() {
                self.visible_seq.store(p.last_seq, Ordering::Release);
                advanced = true;
            }
        }
        if advanced {
            self.publish_cv.notify_all();
        }
        if self.visible_seq.load(Ordering::Acquire) >= last_seq {
            return;
        }
        // An earlier batch is still inserting, which takes microseconds: spin before sleeping.
        let visible = || self.visible_seq.load(Ordering::Acquire) >= last_seq;
        if spin && MutexGuard::unlocked(&mut q, || spin_until(DEFAULT_SPIN, visible)) {
            return;
        }
        while !visible() {
            self.publish_cv.wait(&mut q);
        }
    }

    /// Waits until every write given a sequence number up to `seq` is visible.
    pub(crate) fn wait_visible(&self, seq: SeqNo) {
        let mut q = self.publish.lock();
        while self.visible_seq.load(Ordering::Acquire) < seq {
            self.publish_cv.wait(&mut q);
        }
    }

    /// Takes the write lock once the active memtable has room, switching to a new one when
    /// it is full and stalling while too many wait for flush. Returns the active memtable,
    /// which stays the one this write belongs in while the lock is held. `no_wait`: fail
    /// with [`Error::Busy`] instead of stalling.
    fn lock_for_write(&self, no_wait: bool) -> Result<(MutexGuard<'_, WriteState>, Arc<MemTable>)> {
        loop {
            let mut w = self.write.lock();
            self.check_writable()?;
            if w.mem.approximate_bytes() < self.opts.memtable_size {
                let mem = Arc::clone(&w.mem);
                return Ok((w, mem));
            }
            if self.imm_count.load(Ordering::Acquire) < self.opts.max_immutable_memtables {
                self.switch_memtable(&mut w)?;
                let mem = Arc::clone(&w.mem);
                return Ok((w, mem));
            }
            drop(w);
            if no_wait {
                return Err(Error::Busy);
            }
            let stalled = Instant::now();
            {
                let mut bg = self.bg.lock();
                while self.imm_count.load(Ordering::Acquire) >= self.opts.max_immutable_memtables
                    && !self.poisoned.load(Ordering::Acquire)
                    && !bg.shutdown
                {
                    self.bg_cv.wait_for(&mut bg, Duration::from_millis(50));
                }
            }
            self.metrics.stall(StallCause::MemtableLimit, stalled.elapsed());
        }
    }

    /// Makes the active memtable immutable and starts a new one with a new log. The old log
    /// is synced first, so that only the newest log can ever end in a torn record.
    pub(crate) fn switch_memtable(&self, w: &mut WriteState) -> Result<()> {
        let number = self.next_file_number.fetch_add(1, Ordering::SeqCst);
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
        self.unrecorded_seals.lock().push(strata_compaction::SealedLog {
            number: w.mem.wal_number(),
            length: old.written_len(),
            last_sequence: w.logged_seq,
        });
        let _ = old.close(); // already synced; closing only refuses further appends
        add_stats(&mut w.retired_wal_stats, &old.stats());
        if let Some(p) = periodic {
            w.periodic = Some(p);
        }
        w.unlogged = false;

        let mem = Arc::new(MemTable::new(number));
        w.mem = Arc::clone(&mem);
        {
            let mut view = self.view.write();
            view.mem.seal(w.next_seq - 1);
            let mut imms = Vec::with_capacity(view.imms.len() + 1);
            imms.push(Arc::clone(&view.mem));
            imms.extend(view.imms.iter().cloned());
            *view = Arc::new(SuperVersion { mem, imms, version: Arc::clone(&view.version) });
        }
        let _bg = self.bg.lock();
        self.imm_count.fetch_add(1, Ordering::AcqRel);
        self.bg_cv.notify_all();
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
            let mut w = self.write.lock();
            if !self.view.read().mem.is_empty() {
                self.switch_memtable(&mut w)?;
            }
            self.view.read().imms.first().map(|m| m.wal_number())
        };
        let Some(target) = target else { return Ok(()) };
        let mut bg = self.bg.lock();
        loop {
            if self.poisoned.load(Ordering::Acquire) {
                drop(bg);
                return self.check_writable();
            }
            if self.view.read().imms.iter().all(|m| m.wal_number() > target) {
                return Ok(());
            }
            self.bg_cv.wait_for(&mut bg, Duration::from_millis(50));
        }
    }

    /// Write stalls driven by the number of level-0 tables; `no_wait`: [`Error::Busy`]
    /// instead of any delay.
    fn delay_for_level0(&self, no_wait: bool) -> Result<()> {
        let l0 = || self.l0_files.load(Ordering::Acquire);
        let files = l0();
        if no_wait && files >= self.opts.l0_slowdown_trigger {
            return Err(Error::Busy);
        }
        if files >= self.opts.l0_stop_trigger {
            let stalled = Instant::now();
            let mut bg = self.bg.lock();
            while l0() >= self.opts.l0_stop_trigger && !bg.shutdown {
                self.check_writable()?;
                self.bg_cv.wait_for(&mut bg, Duration::from_millis(50));
            }
            drop(bg);
            self.metrics.stall(StallCause::L0Stop, stalled.elapsed());
        } else if files >= self.opts.l0_slowdown_trigger {
            let delay = Duration::from_millis(1);
            std::thread::sleep(delay);
            self.metrics.stall(StallCause::L0Slowdown, delay);
        }
        Ok(())
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
        mem.insert(e.key, seq + i as u64, e.kind, e.value);
    }
}

/// Takes the entries of `batch` out of `mem` again, after its log write failed.
fn remove_batch(mem: &MemTable, batch: &WriteBatch) {
    let seq = batch.sequence();
    for (i, e) in batch.iter().enumerate() {
        mem.remove(e.key, seq + i as u64, e.kind);
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
            let seen = db.inner.l0_files.load(std::sync::atomic::Ordering::Acquire);
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
}
