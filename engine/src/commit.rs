//! [`CommitPipeline`]: the ordering core of the write path, apart from what it orders.
//!
//! ```text
//!  commit ──admit (stalls)──> [commit lock: make room · seq = next · log · queue for publish]
//!         ──apply to the memtable (concurrently with other writers; invisible until published)──>
//!         ──wait for the log (group commit; on failure the batch is un-applied again)──>
//!         ──publish: the visible sequence advances over the contiguous prefix of finished batches
//! ```
//!
//! Two invariants, both kept here and unit-tested with a fake log and memtable:
//! * **log order = sequence order**: sequence numbers are assigned and the batch is handed to
//!   the log under one lock, the commit lock;
//! * **visibility order = sequence order**: a batch becomes visible only when it and every
//!   batch before it have been applied, so a reader at the visible sequence never sees part
//!   of a batch, nor a batch whose predecessor is still being applied.
//!
//! What a batch is logged to and applied to — the WAL, the memtable, memtable switches,
//! stalls, poisoning — is the [`CommitEnv`]'s business (`engine/src/write.rs` for a
//! database).
//!
//! Locks: the commit lock is taken before the publish lock, never after; the publish lock is
//! a leaf. The commit lock is held for microseconds (no I/O: the log's group commit writes
//! after it is released).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};
use strata_core::key::{SeqNo, MAX_SEQ};
use strata_core::spin::{spin_until, DEFAULT_SPIN};
use strata_core::{Error, Result};
use strata_wal::{BatchEncoding, Durability, WriteBatch};

/// How one batch is committed: a write's `WriteOptions` with the database's default
/// durability filled in (`WriteOptions::mode`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommitMode {
    pub(crate) durability: Durability,
    /// Fail with [`Error::Busy`] rather than stall.
    pub(crate) no_wait: bool,
}

/// A log write in flight, resolved by the log's group commit.
pub(crate) trait LogTicket {
    fn wait(self) -> Result<()>;
}

/// Whether the commit lock's holder may go on.
pub(crate) enum Room<M> {
    /// There is room; the batch goes into this memtable.
    Ready(M),
    /// Everything is full: release the lock and [`CommitEnv::wait_for_room`].
    Full,
}

/// What the pipeline orders: a log to append to and a memtable to apply to.
pub(crate) trait CommitEnv {
    /// The state guarded by the commit lock besides the next sequence number.
    type State;
    /// Where a batch is applied.
    type Mem;
    type Ticket: LogTicket;

    /// Before the commit lock: refuse or slow down the write (closed, poisoned, level-0
    /// stalls).
    fn admit(&self, mode: CommitMode) -> Result<()>;
    /// Under the commit lock: the memtable the next batch belongs in, switching to a new one
    /// when the active one is full. `next_seq` is the first unassigned sequence number.
    fn make_room(&self, state: &mut Self::State, next_seq: SeqNo) -> Result<Room<Self::Mem>>;
    /// Without the commit lock, after [`Room::Full`]: waits until a retry may find room.
    fn wait_for_room(&self, mode: CommitMode) -> Result<()>;
    /// Under the commit lock, in sequence order: hands the sequenced batch to the log
    /// (`None`: not logged). A failure here is the batch's alone: nothing is assigned yet.
    fn log(
        &self,
        state: &mut Self::State,
        batch: &WriteBatch,
        last_seq: SeqNo,
        mode: CommitMode,
    ) -> Result<Option<Self::Ticket>>;
    fn apply(&self, mem: &Self::Mem, batch: &WriteBatch);
    /// Takes a batch out of `mem` again after its log write failed.
    fn unapply(&self, mem: &Self::Mem, batch: &WriteBatch);
    /// A log write failed after the batch was sequenced: no later write may be acknowledged
    /// on top of it.
    fn log_failed(&self, error: &Error);
}

/// The commit lock's contents: the next sequence number and the environment's state.
pub(crate) struct CommitState<S> {
    next_seq: SeqNo,
    pub(crate) inner: S,
}

impl<S> CommitState<S> {
    /// The last sequence number assigned.
    pub(crate) fn last_assigned(&self) -> SeqNo {
        self.next_seq - 1
    }
}

impl<S> std::ops::Deref for CommitState<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

impl<S> std::ops::DerefMut for CommitState<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

/// Batches that have sequence numbers but are not yet visible, in sequence order.
#[derive(Default)]
struct PublishQueue {
    pending: VecDeque<Pending>,
}

struct Pending {
    last_seq: SeqNo,
    done: bool,
}

pub(crate) struct CommitPipeline<S> {
    state: Mutex<CommitState<S>>,
    publish: Mutex<PublishQueue>,
    published: Condvar,
    visible: AtomicU64,
}

impl<S> CommitPipeline<S> {
    /// A pipeline whose last assigned (and visible) sequence number is `last_seq`.
    pub(crate) fn new(last_seq: SeqNo, state: S) -> Self {
        CommitPipeline {
            state: Mutex::new(CommitState { next_seq: last_seq + 1, inner: state }),
            publish: Mutex::new(PublishQueue::default()),
            published: Condvar::new(),
            visible: AtomicU64::new(last_seq),
        }
    }

    /// The newest sequence number readers may see.
    pub(crate) fn visible(&self) -> SeqNo {
        self.visible.load(Ordering::Acquire)
    }

    /// The commit lock, for what must happen between two commits (a memtable switch, reading
    /// the log's state, closing it).
    pub(crate) fn lock(&self) -> MutexGuard<'_, CommitState<S>> {
        self.state.lock()
    }

    /// Wakes every thread waiting for publication (so that it re-checks the database's
    /// health).
    pub(crate) fn notify_all(&self) {
        self.published.notify_all();
    }

    /// Commits `batch` (not empty) atomically: sequences it, logs it, applies it and returns
    /// once it is visible — or fails, having applied nothing that stays.
    ///
    /// `check` runs under the commit lock just before the batch is sequenced, given the
    /// state and the batch: if it fails,
    /// nothing is sequenced, logged or applied. It sees every batch sequenced before this
    /// one, applied or not (a transaction's validation, a conditional write's expectations).
    pub(crate) fn commit_checked<E>(
        &self,
        env: &E,
        batch: &mut WriteBatch,
        mode: CommitMode,
        check: impl FnOnce(&mut S, &WriteBatch) -> Result<()>,
    ) -> Result<()>
    where
        E: CommitEnv<State = S>,
    {
        env.admit(mode)?;
        let count = batch.len() as u64;
        let (ticket, mem, last_seq) = {
            let (mut s, mem) = self.lock_with_room(env, mode)?;
            check(&mut s.inner, batch)?;
            let first = s.next_seq;
            let last = first + count - 1;
            if last > MAX_SEQ {
                return Err(Error::InvalidArgument("sequence numbers exhausted".into()));
            }
            batch.set_sequence(first);
            let ticket = env.log(&mut s.inner, batch, last, mode)?;
            s.next_seq = last + 1;
            self.publish.lock().pending.push_back(Pending { last_seq: last, done: false });
            (ticket, mem, last)
        };

        // The batch is applied while its log record is written (by this thread or by a
        // group's leader), so that the two overlap. It stays invisible until published, and
        // publication waits for the log.
        env.apply(&mem, batch);
        let logged = ticket.map_or(Ok(()), LogTicket::wait);
        if let Err(e) = &logged {
            // The log may hold the batch or not: it is neither acknowledged nor applied (it
            // leaves the memtable before its sequence numbers become visible).
            env.log_failed(e);
            env.unapply(&mem, batch);
        }
        // After an fdatasync the whole group wakes at once, usually more writers than cores:
        // the batch this one waits for is then often on a thread not yet running, and
        // spinning would hold the core it needs.
        self.publish(last_seq, !mode.durability.syncs_each_write());
        logged
    }

    fn lock_with_room<E>(
        &self,
        env: &E,
        mode: CommitMode,
    ) -> Result<(MutexGuard<'_, CommitState<S>>, E::Mem)>
    where
        E: CommitEnv<State = S>,
    {
        loop {
            let mut s = self.state.lock();
            let next = s.next_seq;
            match env.make_room(&mut s.inner, next)? {
                Room::Ready(mem) => return Ok((s, mem)),
                Room::Full => {
                    drop(s);
                    env.wait_for_room(mode)?;
                }
            }
        }
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
                self.visible.store(p.last_seq, Ordering::Release);
                advanced = true;
            }
        }
        if advanced {
            self.published.notify_all();
        }
        let visible = || self.visible() >= last_seq;
        if visible() {
            return;
        }
        // An earlier batch is still being applied, which takes microseconds: spin first.
        if spin && MutexGuard::unlocked(&mut q, || spin_until(DEFAULT_SPIN, visible)) {
            return;
        }
        while !visible() {
            self.published.wait(&mut q);
        }
    }

    /// Takes the next sequence number, under the commit lock `s`, for a change that is no
    /// batch and is not logged (an ingest). It orders like a batch: neither it nor anything
    /// sequenced after it becomes visible until [`CommitPipeline::publish_reserved`] —
    /// which the caller must call, whether its change happened or not (a number published
    /// with nothing behind it is a harmless gap).
    pub(crate) fn reserve(&self, s: &mut CommitState<S>) -> Result<SeqNo> {
        let seq = s.next_seq;
        if seq > MAX_SEQ {
            return Err(Error::InvalidArgument("sequence numbers exhausted".into()));
        }
        s.next_seq = seq + 1;
        self.publish.lock().pending.push_back(Pending { last_seq: seq, done: false });
        Ok(seq)
    }

    /// Makes a [`CommitPipeline::reserve`]d number visible (once everything before it is)
    /// and returns when it is.
    pub(crate) fn publish_reserved(&self, seq: SeqNo) {
        self.publish(seq, false);
    }

    /// Waits until every batch given a sequence number up to `seq` is visible.
    pub(crate) fn wait_visible(&self, seq: SeqNo) {
        if self.visible() >= seq {
            return; // the usual case: no lock
        }
        let mut q = self.publish.lock();
        while self.visible() < seq {
            self.published.wait(&mut q);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Arc;
    use std::time::Duration;

    use parking_lot::Mutex;
    use strata_core::key::SeqNo;
    use strata_core::{Error, Result};
    use strata_wal::{BatchEncoding, Durability, WriteBatch};

    use super::{CommitEnv, CommitMode, CommitPipeline, LogTicket, Room};

    const MODE: CommitMode = CommitMode { durability: Durability::Buffered, no_wait: false };

    fn commit(
        pipeline: &CommitPipeline<Vec<(SeqNo, SeqNo)>>,
        env: &FakeEnv,
        b: &mut WriteBatch,
    ) -> Result<()> {
        pipeline.commit_checked(env, b, MODE, |_, _| Ok(()))
    }

    /// A fake log (the records in the order they were handed over) and memtable (the
    /// applied entries, by sequence number); the log write of chosen batches is held until
    /// the test releases it, or fails.
    #[derive(Default)]
    struct FakeEnv {
        mem: Mutex<BTreeMap<SeqNo, Vec<u8>>>,
        /// Batches (by first key) whose log write waits for a message on the channel.
        held: Mutex<BTreeMap<Vec<u8>, Receiver<Result<()>>>>,
        failures: Mutex<Vec<String>>,
        /// Refuse room this many times before granting it.
        full_for: AtomicUsize,
        waited_for_room: AtomicUsize,
    }

    struct FakeTicket(Option<Receiver<Result<()>>>);

    impl LogTicket for FakeTicket {
        fn wait(self) -> Result<()> {
            match self.0 {
                Some(rx) => rx.recv().unwrap_or(Err(Error::Closed)),
                None => Ok(()),
            }
        }
    }

    impl FakeEnv {
        fn hold(&self, key: &[u8]) -> Sender<Result<()>> {
            let (tx, rx) = channel();
            self.held.lock().insert(key.to_vec(), rx);
            tx
        }
    }

    impl CommitEnv for FakeEnv {
        /// The log: (first sequence, last sequence) of every record, in log order.
        type State = Vec<(SeqNo, SeqNo)>;
        type Mem = ();
        type Ticket = FakeTicket;

        fn admit(&self, _: CommitMode) -> Result<()> {
            Ok(())
        }
        fn make_room(&self, _: &mut Self::State, _: SeqNo) -> Result<Room<()>> {
            let full = self
                .full_for
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            Ok(if full { Room::Full } else { Room::Ready(()) })
        }
        fn wait_for_room(&self, _: CommitMode) -> Result<()> {
            self.waited_for_room.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn log(
            &self,
            log: &mut Self::State,
            batch: &WriteBatch,
            last: SeqNo,
            _: CommitMode,
        ) -> Result<Option<FakeTicket>> {
            log.push((batch.sequence(), last));
            let first_key = batch.iter().next().map(|e| e.key.to_vec()).unwrap_or_default();
            Ok(Some(FakeTicket(self.held.lock().remove(&first_key))))
        }
        fn apply(&self, _: &(), batch: &WriteBatch) {
            let mut mem = self.mem.lock();
            for (i, e) in batch.iter().enumerate() {
                mem.insert(batch.sequence() + i as u64, e.key.to_vec());
            }
        }
        fn unapply(&self, _: &(), batch: &WriteBatch) {
            let mut mem = self.mem.lock();
            for i in 0..batch.len() as u64 {
                mem.remove(&(batch.sequence() + i));
            }
        }
        fn log_failed(&self, error: &Error) {
            self.failures.lock().push(error.to_string());
        }
    }

    fn batch(keys: &[&str]) -> WriteBatch {
        let mut b = WriteBatch::new();
        for k in keys {
            b.put(k, "v");
        }
        b
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn log_order_is_sequence_order_under_concurrent_commits() {
        let pipeline = Arc::new(CommitPipeline::new(0, Vec::new()));
        let env = Arc::new(FakeEnv::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (pipeline, env) = (Arc::clone(&pipeline), Arc::clone(&env));
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let k = format!("{t}-{i}");
                        let mut b = batch(&[&k, &k]);
                        commit(&pipeline, &env, &mut b).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let log = pipeline.lock().inner.clone();
        assert_eq!(log.len(), 800);
        let mut next = 1;
        for (first, last) in log {
            assert_eq!((first, last), (next, next + 1), "a gap or reordering in the log");
            next = last + 1;
        }
        assert_eq!(pipeline.visible(), 1600);
        assert_eq!(env.mem.lock().len(), 1600);
    }

    #[test]
    fn a_batch_stays_invisible_until_every_earlier_batch_is_done() {
        let pipeline = Arc::new(CommitPipeline::new(10, Vec::new()));
        let env = Arc::new(FakeEnv::default());
        let release_first = env.hold(b"first");
        let spawn = |keys: &'static [&'static str]| {
            let (pipeline, env) = (Arc::clone(&pipeline), Arc::clone(&env));
            std::thread::spawn(move || commit(&pipeline, &env, &mut batch(keys)))
        };
        let first = spawn(&["first"]);
        wait_until("the first batch to be logged", || pipeline.lock().inner.len() == 1);
        let second = spawn(&["second", "second2"]);
        // The second batch is logged and applied, but its predecessor's log write is not
        // done: readers must not see it, and its commit must not return.
        wait_until("the second batch to be applied", || env.mem.lock().len() == 3);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pipeline.visible(), 10);
        assert!(!second.is_finished(), "acknowledged before an earlier batch was visible");
        release_first.send(Ok(())).unwrap();
        first.join().unwrap().unwrap();
        second.join().unwrap().unwrap();
        assert_eq!(pipeline.visible(), 13);
    }

    #[test]
    fn a_failed_log_write_unapplies_the_batch_and_does_not_block_later_ones() {
        let pipeline = Arc::new(CommitPipeline::new(0, Vec::new()));
        let env = Arc::new(FakeEnv::default());
        let fail = env.hold(b"doomed");
        let doomed = {
            let (pipeline, env) = (Arc::clone(&pipeline), Arc::clone(&env));
            std::thread::spawn(move || commit(&pipeline, &env, &mut batch(&["doomed"])))
        };
        wait_until("the doomed batch to be logged", || pipeline.lock().inner.len() == 1);
        fail.send(Err(Error::Closed)).unwrap();
        assert!(matches!(doomed.join().unwrap(), Err(Error::Closed)));
        assert_eq!(env.failures.lock().len(), 1, "the failure is reported to the environment");
        assert!(env.mem.lock().is_empty(), "the failed batch left the memtable");
        // Its sequence number is published (nothing holds it), so the next batch is not
        // stuck behind it.
        commit(&pipeline, &env, &mut batch(&["next"])).unwrap();
        assert_eq!(pipeline.visible(), 2);
        assert_eq!(env.mem.lock().keys().copied().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_full_memtable_set_releases_the_lock_and_retries() {
        let pipeline = CommitPipeline::new(0, Vec::new());
        let env = FakeEnv::default();
        env.full_for.store(3, Ordering::SeqCst);
        commit(&pipeline, &env, &mut batch(&["k"])).unwrap();
        assert_eq!(env.waited_for_room.load(Ordering::SeqCst), 3);
        assert_eq!(pipeline.visible(), 1);
    }

    #[test]
    fn exhausted_sequence_numbers_refuse_the_batch_before_logging() {
        let pipeline = CommitPipeline::new(strata_core::key::MAX_SEQ - 1, Vec::new());
        let env = FakeEnv::default();
        let r = commit(&pipeline, &env, &mut batch(&["a", "b"]));
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
        assert!(pipeline.lock().inner.is_empty(), "nothing was logged");
        commit(&pipeline, &env, &mut batch(&["a"])).unwrap();
        assert_eq!(pipeline.visible(), strata_core::key::MAX_SEQ);
    }
}
