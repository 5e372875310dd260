//! The write queue in front of a database: [`AsyncWriter`] owns a bounded submission queue
//! and one worker thread that applies queued batches with [`crate::Db::write_with`]'s path,
//! merging adjacent submissions with the same [`WriteOptions`] into one write (one WAL
//! record, one group commit). Callers get a [`WriteTicket`] at once and wait on it when they need the
//! write to be durable and visible.
//!
//! The worker writes through a [`BatchSink`] (for a database: its write path), so the
//! queue knows nothing of `Db` and is tested with a fake sink.
//!
//! Lifetime: the worker holds only a `Weak` reference to the sink (the database), so a queue never
//! keeps a database alive; it exits when its writer is dropped (with the database) or shut
//! down (on close, after draining what was queued). A job that is dropped without being
//! applied — worker gone, database gone — resolves its ticket with [`Error::Closed`]: no
//! error ever vanishes and no ticket waits forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use strata_core::{Error, Result};
use strata_wal::WriteBatch;

use crate::options::WriteOptions;

/// Merged writes stop growing at this many bytes, so one huge group does not delay the
/// tickets behind it for long.
const MAX_MERGED_BYTES: usize = 1 << 20;
/// ... or at this many submissions.
const MAX_MERGED_JOBS: usize = 128;

/// Where the worker applies batches: one atomic write of `batch` made as `options` say. A
/// database's write path; a fake in tests.
pub(crate) trait BatchSink: Send + Sync {
    /// Writes `batch` atomically; [`Error::InvalidArgument`] must mean nothing was applied.
    fn write(&self, batch: WriteBatch, options: &WriteOptions) -> Result<()>;
}

/// The result slot one submission resolves.
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Result<()>>>,
    done: Condvar,
}

impl Slot {
    fn resolve(&self, r: Result<()>) {
        let mut g = self.result.lock();
        if g.is_none() {
            *g = Some(r);
        }
        drop(g);
        self.done.notify_all();
    }
}

/// Resolves its slot exactly once; resolving with [`Error::Closed`] if dropped unresolved.
struct Completer(Arc<Slot>);

impl Completer {
    fn complete(self, r: Result<()>) {
        self.0.resolve(r);
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        // No-op when already resolved: `resolve` keeps the first result.
        self.0.resolve(Err(Error::Closed));
    }
}

/// A handle on one asynchronous write (or, for a [`crate::ShardedDb`], on the parts of one
/// batch on each shard it touches). [`WriteTicket::wait`] returns once the write is
/// durable per its durability and visible to reads, or with the error that stopped it.
///
/// ```
/// use strata::{Db, Options, WriteBatch};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// let mut batch = WriteBatch::new();
/// batch.put("k", "v");
/// let ticket = db.write_async(batch); // returns at once
/// ticket.wait()?;                      // now durable and visible
/// assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a write's error is only seen through its ticket"]
pub struct WriteTicket {
    parts: Vec<Arc<Slot>>,
}

impl std::fmt::Debug for WriteTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTicket")
            .field("parts", &self.parts.len())
            .field("done", &self.is_done())
            .finish()
    }
}

impl WriteTicket {
    /// A ticket that is already resolved with `result` (empty batches, refused submissions).
    pub(crate) fn resolved(result: Result<()>) -> WriteTicket {
        let slot = Arc::new(Slot::default());
        slot.resolve(result);
        WriteTicket { parts: vec![slot] }
    }

    /// One ticket that waits for all of `tickets`.
    pub(crate) fn join(tickets: Vec<WriteTicket>) -> WriteTicket {
        WriteTicket { parts: tickets.into_iter().flat_map(|t| t.parts).collect() }
    }

    /// Blocks until every part of the write is applied (durable per its durability and
    /// visible) or failed; returns the first error of any part.
    pub fn wait(self) -> Result<()> {
        let mut first_err = None;
        for slot in &self.parts {
            let mut g = slot.result.lock();
            while g.is_none() {
                slot.done.wait(&mut g);
            }
            if let Some(Err(e)) = g.as_ref() {
                first_err.get_or_insert_with(|| e.clone());
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Whether the write has finished (successfully or not): `wait` would not block.
    pub fn is_done(&self) -> bool {
        self.parts.iter().all(|s| s.result.lock().is_some())
    }
}

struct Job {
    batch: WriteBatch,
    options: WriteOptions,
    completer: Completer,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    /// Slots promised to callers who will submit shortly (see [`Permit`]).
    reserved: usize,
    /// Jobs the worker took and has not finished.
    in_flight: usize,
    /// Jobs ever queued, and jobs ever finished: the queue is FIFO, so once `finished`
    /// reaches a value `queued` had, every job queued before that moment is done.
    queued: u64,
    finished: u64,
    shutdown: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a job arrives or shutdown begins.
    not_empty: Condvar,
    /// Signalled when a slot frees or the worker goes idle.
    not_full: Condvar,
    depth: usize,
}

impl Queue {
    fn occupied(s: &QueueState) -> usize {
        s.jobs.len() + s.reserved
    }
}

/// A reserved slot in one writer's queue: reserving on every shard first lets a sharded
/// no-wait write refuse a batch whole (nothing queued) when any shard is full.
pub(crate) struct Permit<'a> {
    writer: &'a AsyncWriter,
    used: bool,
}

impl Permit<'_> {
    /// Queues `batch` in the reserved slot.
    pub(crate) fn submit(mut self, batch: WriteBatch, options: WriteOptions) -> WriteTicket {
        self.used = true;
        let slot = Arc::new(Slot::default());
        let job = Job { batch, options, completer: Completer(Arc::clone(&slot)) };
        let q = &self.writer.queue;
        let mut s = q.state.lock();
        s.reserved -= 1;
        if s.shutdown {
            drop(s);
            q.not_full.notify_one();
            job.completer.complete(Err(Error::Closed));
        } else {
            s.jobs.push_back(job);
            s.queued += 1;
            drop(s);
            q.not_empty.notify_one();
        }
        WriteTicket { parts: vec![slot] }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.used {
            let q = &self.writer.queue;
            q.state.lock().reserved -= 1;
            q.not_full.notify_one();
        }
    }
}

/// A bounded submission queue and the worker thread that drains it into one database.
///
/// Not public: users reach it through [`crate::Db::write_async`] and
/// [`crate::Db::write_async_with`], which start it lazily the first time one is called; its
/// depth is [`crate::Options::write_queue_depth`]. Submissions are applied in queue order;
/// adjacent submissions with the same [`WriteOptions`] are merged into one atomic write (the union of atomic batches is still atomic), and a
/// merged write that fails validation is retried batch by batch so that one oversized key
/// fails only its own ticket.
///
/// ```
/// use strata::{Db, Options, Error, WriteBatch};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default().write_queue_depth(64))?;
/// let tickets: Vec<_> = (0..100u32)
///     .map(|i| {
///         let mut b = WriteBatch::new();
///         b.put(i.to_be_bytes(), "v");
///         db.write_async(b) // blocks only while 64 submissions wait
///     })
///     .collect();
/// for t in tickets {
///     t.wait()?;
/// }
/// assert_eq!(db.iter().count(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub(crate) struct AsyncWriter {
    queue: Arc<Queue>,
    worker: Mutex<Option<JoinHandle<()>>>,
    worker_alive: Arc<AtomicBool>,
}

impl std::fmt::Debug for AsyncWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWriter")
            .field("depth", &self.queue.depth)
            .field("queued", &self.queued())
            .finish()
    }
}

impl AsyncWriter {
    /// Starts a writer with a queue of `depth` (at least 1) batches in front of `db`.
    pub(crate) fn start(db: Weak<dyn BatchSink>, depth: usize) -> Result<AsyncWriter> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            depth: depth.max(1),
        });
        let worker_alive = Arc::new(AtomicBool::new(true));
        let (q, alive) = (Arc::clone(&queue), Arc::clone(&worker_alive));
        let handle = strata_core::thread::spawn("strata-async-write", move || {
            let _exit = WorkerExit { queue: Arc::clone(&q), alive };
            run_worker(&q, &db);
        })
        .map_err(|e| Error::io("spawn async write worker", "", e))?;
        Ok(AsyncWriter { queue, worker: Mutex::new(Some(handle)), worker_alive })
    }

    /// Submissions waiting in the queue (not counting the ones being written).
    pub(crate) fn queued(&self) -> usize {
        self.queue.state.lock().jobs.len()
    }

    /// Reserves a slot, waiting while the queue is full; `None` once shut down.
    pub(crate) fn reserve(&self) -> Option<Permit<'_>> {
        let q = &self.queue;
        let mut s = q.state.lock();
        while Queue::occupied(&s) >= q.depth && !s.shutdown {
            q.not_full.wait(&mut s);
        }
        if s.shutdown {
            return None;
        }
        s.reserved += 1;
        Some(Permit { writer: self, used: false })
    }

    /// Reserves a slot if one is free now: `Err(Busy)` if full, `Err(Closed)` if shut down.
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_>> {
        let q = &self.queue;
        let mut s = q.state.lock();
        if s.shutdown {
            return Err(Error::Closed);
        }
        if Queue::occupied(&s) >= q.depth {
            return Err(Error::Busy);
        }
        s.reserved += 1;
        Ok(Permit { writer: self, used: false })
    }

    /// Waits until everything submitted so far is applied (or failed).
    pub(crate) fn drain(&self) {
        let q = &self.queue;
        let mut s = q.state.lock();
        while (!s.jobs.is_empty() || s.in_flight > 0) && self.worker_alive.load(Ordering::Acquire) {
            q.not_full.wait_for(&mut s, std::time::Duration::from_millis(20));
        }
    }

    /// Waits until every job queued before this call is applied (or failed), however many
    /// are queued after it: unlike [`AsyncWriter::drain`], a steady stream of new jobs
    /// cannot starve it.
    pub(crate) fn barrier(&self) {
        let q = &self.queue;
        let mut s = q.state.lock();
        let target = s.queued;
        while s.finished < target && self.worker_alive.load(Ordering::Acquire) {
            q.not_full.wait_for(&mut s, std::time::Duration::from_millis(20));
        }
    }

    /// Drains the queue, then stops the worker and waits for it to exit. Later submissions
    /// resolve with [`Error::Closed`].
    pub(crate) fn shutdown(&self) {
        self.drain();
        self.queue.state.lock().shutdown = true;
        self.queue.not_empty.notify_all();
        self.queue.not_full.notify_all();
        let handle = self.worker.lock().take();
        if let Some(h) = handle {
            // Never join from the worker itself (it may drop the last database reference).
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for AsyncWriter {
    fn drop(&mut self) {
        // Runs when the database state drops, possibly on the worker thread itself: only
        // signal; the worker exits on its own and resolves what is left.
        self.queue.state.lock().shutdown = true;
        self.queue.not_empty.notify_all();
        self.queue.not_full.notify_all();
    }
}

/// Runs when the worker exits, normally or by panic: refuses further submissions and
/// resolves everything still queued with [`Error::Closed`] (as the jobs drop), so no
/// ticket waits for a worker that is gone.
struct WorkerExit {
    queue: Arc<Queue>,
    alive: Arc<AtomicBool>,
}

impl Drop for WorkerExit {
    fn drop(&mut self) {
        let rest: Vec<Job> = {
            let mut s = self.queue.state.lock();
            s.shutdown = true;
            s.in_flight = 0;
            s.jobs.drain(..).collect()
        };
        self.alive.store(false, Ordering::Release);
        drop(rest);
        self.queue.not_full.notify_all();
    }
}

fn run_worker(q: &Queue, db: &Weak<dyn BatchSink>) {
    loop {
        let group: Vec<Job> = {
            let mut s = q.state.lock();
            while s.jobs.is_empty() && !s.shutdown {
                q.not_empty.wait(&mut s);
            }
            let Some(first) = s.jobs.pop_front() else { return }; // shut down and drained
            let options = first.options;
            let mut bytes = first.batch.size_in_bytes();
            let mut group = vec![first];
            while let Some(next) = s.jobs.front() {
                let size = next.batch.size_in_bytes();
                if next.options != options
                    || group.len() >= MAX_MERGED_JOBS
                    || bytes + size > MAX_MERGED_BYTES
                {
                    break;
                }
                bytes += size;
                if let Some(job) = s.jobs.pop_front() {
                    group.push(job);
                }
            }
            s.in_flight = group.len();
            group
        };
        // The slots just freed let blocked submitters in while this group is written.
        q.not_full.notify_all();
        match db.upgrade() {
            Some(sink) => apply_group(&*sink, group),
            None => drop(group), // completers resolve with `Closed`
        }
        {
            let mut s = q.state.lock();
            s.finished += s.in_flight as u64;
            s.in_flight = 0;
        }
        q.not_full.notify_all();
    }
}

fn apply_group(inner: &dyn BatchSink, mut group: Vec<Job>) {
    // A conditional batch is checked on its own: merged, one failed expectation would fail
    // the others, and the others' writes would change what it checks.
    if group.iter().any(|j| !j.batch.expectations().is_empty()) {
        for job in group {
            let r = inner.write(job.batch, &job.options);
            job.completer.complete(r);
        }
        return;
    }
    if group.len() == 1 {
        if let Some(job) = group.pop() {
            let r = inner.write(job.batch, &job.options);
            job.completer.complete(r);
        }
        return;
    }
    let options = group.first().map_or_else(WriteOptions::default, |j| j.options);
    let mut merged = WriteBatch::new();
    for job in &group {
        merged.append(&job.batch);
    }
    match inner.write(merged, &options) {
        Ok(()) => group.into_iter().for_each(|j| j.completer.complete(Ok(()))),
        // Validation failed before anything was logged or applied: find the culprit by
        // writing the batches one at a time, so only its own ticket fails.
        Err(Error::InvalidArgument(_)) => {
            for job in group {
                let r = inner.write(job.batch, &job.options);
                job.completer.complete(r);
            }
        }
        Err(e) => group.into_iter().for_each(|j| j.completer.complete(Err(e.clone()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Db, Durability, Options};

    fn batch(k: &str, v: &str) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(k, v);
        b
    }

    /// A sink that records the keys of each write it applies and refuses any batch that
    /// holds the key `bad`, as a database refuses an invalid batch: nothing applied.
    #[derive(Default)]
    struct Recorder {
        writes: Mutex<Vec<(Vec<Vec<u8>>, WriteOptions)>>,
    }

    impl BatchSink for Recorder {
        fn write(&self, batch: WriteBatch, options: &WriteOptions) -> Result<()> {
            let keys: Vec<Vec<u8>> = batch.iter().map(|e| e.key.to_vec()).collect();
            if keys.iter().any(|k| k == b"bad") {
                return Err(Error::InvalidArgument("bad key".into()));
            }
            self.writes.lock().push((keys, *options));
            Ok(())
        }
    }

    #[test]
    fn worker_keeps_submission_order_never_merges_across_write_options_and_isolates_a_bad_batch() {
        let sink = Arc::new(Recorder::default());
        let weak: Weak<dyn BatchSink> = Arc::downgrade(&sink) as Weak<dyn BatchSink>;
        let writer = AsyncWriter::start(weak, 1000).unwrap();
        let mut expected = Vec::new();
        let mut tickets = Vec::new();
        for i in 0..300 {
            let key = if i == 150 { "bad".to_string() } else { format!("k{i:03}") };
            let durability = if i % 100 < 50 { Durability::Buffered } else { Durability::Sync };
            // Within a run of one durability, every tenth write is no-wait: not merged either.
            let options = WriteOptions::from(durability).no_wait(i % 10 == 0);
            if i != 150 {
                expected.push((key.clone().into_bytes(), options));
            }
            let permit = writer.reserve().unwrap();
            tickets.push((i, permit.submit(batch(&key, "v"), options)));
        }
        for (i, t) in tickets {
            match t.wait() {
                Ok(()) => assert_ne!(i, 150),
                Err(e) => assert!(i == 150 && matches!(e, Error::InvalidArgument(_)), "{i}: {e}"),
            }
        }
        let writes = sink.writes.lock();
        let applied: Vec<(Vec<u8>, WriteOptions)> =
            writes.iter().flat_map(|(keys, d)| keys.iter().map(move |k| (k.clone(), *d))).collect();
        assert_eq!(applied, expected, "order, options, or the bad batch's neighbours");
        drop(writes);
        // The sink (the database) is gone: what is submitted now resolves as closed.
        drop(sink);
        let late = writer.reserve().map(|p| p.submit(batch("late", "v"), WriteOptions::default()));
        assert!(late.is_none_or(|t| matches!(t.wait(), Err(Error::Closed))));
    }

    #[test]
    fn tickets_resolve_after_writes_are_visible_and_close_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().write_queue_depth(4)).unwrap();
        let tickets: Vec<_> =
            (0..200).map(|i| db.write_async(batch(&format!("k{i:03}"), "v"))).collect();
        let last = db.write_async(batch("last", "x"));
        last.wait().unwrap();
        // Queue order: everything before `last` is applied once `last` is.
        assert_eq!(db.iter().count(), 201);
        for t in tickets {
            assert!(t.is_done());
            t.wait().unwrap();
        }
        let pending: Vec<_> =
            (0..50).map(|i| db.write_async(batch(&format!("p{i}"), "v"))).collect();
        db.close().unwrap();
        for t in pending {
            t.wait().unwrap(); // close applied them before refusing writes
        }
        assert!(matches!(db.write_async(batch("late", "v")).wait(), Err(Error::Closed)));
        let no_wait = WriteOptions::default().no_wait(true);
        assert!(matches!(
            db.write_async_with(batch("late", "v"), no_wait).wait(),
            Err(Error::Closed)
        ));
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(db.prefix("p").count(), 50);
    }

    #[test]
    fn a_full_queue_makes_a_no_wait_write_async_busy_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().write_queue_depth(2)).unwrap();
        let w = db.async_writer_for_shard().unwrap();
        // Hold both slots: the queue is full without depending on the worker's timing.
        let p1 = w.try_reserve().unwrap();
        let p2 = w.try_reserve().unwrap();
        let no_wait = WriteOptions::default().no_wait(true);
        let refused = db.write_async_with(batch("a", "1"), no_wait);
        assert!(refused.is_done(), "a no-wait submission never blocks");
        assert!(matches!(refused.wait(), Err(Error::Busy)));
        drop(p1);
        let t = db.write_async_with(batch("a", "1"), no_wait);
        let t2 = p2.submit(batch("b", "2"), Durability::Sync.into());
        t.wait().unwrap();
        t2.wait().unwrap();
        assert_eq!(db.iter().count(), 2);
    }

    #[test]
    fn an_invalid_batch_fails_only_its_own_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let big = vec![0u8; crate::MAX_KEY_SIZE + 1];
        let mut tickets = Vec::new();
        for i in 0..20 {
            let mut b = WriteBatch::new();
            if i == 10 {
                b.put(&big, "v");
            } else {
                b.put(format!("k{i:02}"), "v");
            }
            tickets.push(db.write_async(b));
        }
        for (i, t) in tickets.into_iter().enumerate() {
            let r = t.wait();
            assert_eq!(r.is_err(), i == 10, "ticket {i}: {r:?}");
        }
        assert_eq!(db.iter().count(), 19);
    }

    #[test]
    fn the_worker_does_not_keep_the_database_alive() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        db.write_async(batch("k", "v")).wait().unwrap();
        let weak = Arc::downgrade(&db.inner);
        drop(db);
        // Background threads release the state once closed; the async worker never held it.
        for _ in 0..200 {
            if weak.strong_count() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(weak.strong_count(), 0);
        // The directory lock is free again.
        Db::open(dir.path(), Options::default()).unwrap();
    }

    #[test]
    fn a_dropped_job_resolves_its_ticket_with_closed() {
        let slot = Arc::new(Slot::default());
        drop(Completer(Arc::clone(&slot)));
        assert!(matches!(WriteTicket { parts: vec![slot] }.wait(), Err(Error::Closed)));
    }
}
