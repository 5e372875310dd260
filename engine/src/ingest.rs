//! [`Db::ingest`]: adds finished tables (from [`crate::TableWriter`]) to the tree in one
//! manifest edit, without rewriting them.
//!
//! # How
//! 1. Every input is opened and every byte's checksum checked ([`Table::open`]: footer,
//!    properties, index, filter; [`Table::verify_checksums`]: the data blocks and their
//!    tiling); its entries must store sequence 0 (by its properties), and the inputs' key
//!    ranges must be disjoint. Key order inside the blocks is not decoded again: the
//!    [`crate::TableWriter`] that wrote them enforced it.
//! 2. Each is hard-linked (copied and synced where a link is impossible) into the database
//!    directory under a fresh table number, registered as a pending output so no purge takes
//!    it; then the directory is fsynced. Nothing names the files yet: a crash here leaves
//!    orphans that the next open deletes.
//! 3. The conflict window starts tracking at `X`, the last sequence number given out, and
//!    the ingest waits until everything up to `X` is in the memtables. If a memtable holds a
//!    key in an input's range, the memtables are flushed (only then).
//! 4. The compaction lock is taken and held to the end: no compaction runs while the tables
//!    are placed, so none has inputs or outputs the placement must avoid.
//! 5. Under the commit lock the ingest takes the next sequence number `G`
//!    ([`crate::commit::CommitPipeline::reserve`]). If the active memtable could hold a key
//!    of an input's range below `G` (applied, or sequenced after `X` and still in flight,
//!    which the window recorded), it is switched first, so that every memtable holds either
//!    only numbers below `G` or only numbers above. The input ranges are recorded in the
//!    conflict window as written at `G`: a transaction whose snapshot precedes the ingest and
//!    read there fails with `Error::Conflict`.
//! 6. Once everything below `G` is applied, the ingest waits for the flush of every
//!    memtable that overlaps an input (all of them hold numbers below `G`), so that no older
//!    version of an ingested key is left above the tables.
//! 7. One manifest edit adds every table, at sequence `G` ([`FileMeta::ingested`]), each at
//!    the deepest level whose key range, and every level's above, it does not overlap (L0
//!    if L0 overlaps it), placed from the version under the version lock. Then `G` is
//!    published: readers, snapshots and the writes sequenced after `G` see the tables from
//!    the same moment on.
//!
//! Writes sequenced after `G` are acknowledged only once `G` is published (step 7), so
//! during steps 6 and 7 they wait — for a manifest sync, and for a flush only if a write
//! into an input's range raced the ingest (step 5).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_compaction::{FileMeta, VersionEdit, NUM_LEVELS};
use strata_core::iter::InternalIterator;
use strata_core::key::{encode_internal_key, user_key, SeqNo, ValueKind, MAX_SEQ, TRAILER_LEN};
use strata_core::{Error, IoResultExt, Result};
use strata_sstable::{Table, TableProperties, TableStats};

use crate::db::Db;
use crate::dir::link_or_copy;
use crate::inner::DbInner;
use crate::memtable::MemTable;
use crate::table_writer::TableWriter;

/// What [`Db::ingest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestInfo {
    /// The sequence number every ingested entry reads as: snapshots below it do not see
    /// the tables.
    pub sequence: SeqNo,
    /// The level each input went to, in the order the inputs were given.
    pub levels: Vec<usize>,
    /// Bytes of the ingested tables.
    pub bytes: u64,
    /// Inputs copied because a hard link was impossible (another file system).
    pub copied: usize,
    /// Whether memtables had to be flushed because they held keys in an input's range.
    pub flushed_memtables: bool,
}

/// One validated input.
struct Input {
    source: PathBuf,
    props: TableProperties,
    smallest: Vec<u8>,
    largest: Vec<u8>,
}

impl Input {
    /// Bytes of user keys and values: what the same data written as puts would count.
    fn user_bytes(&self) -> u64 {
        let trailers = self.props.num_entries * TRAILER_LEN as u64;
        (self.props.raw_key_bytes.saturating_sub(trailers)) + self.props.raw_value_bytes
    }
}

impl Db {
    /// A [`TableWriter`] at `path` that builds with this database's options (file system
    /// and table options): [`TableWriter::create`]`(path, options)`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path().join("db"), strata::Options::default())?;
    /// let mut writer = db.table_writer(dir.path().join("batch-1.sst"))?;
    /// writer.put("a", "1")?;
    /// db.ingest([writer.finish()?])?;
    /// assert_eq!(db.get("a")?.as_deref(), Some(&b"1"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn table_writer(&self, path: impl AsRef<Path>) -> Result<TableWriter> {
        TableWriter::create(path, &self.inner.opts)
    }

    /// Adds the tables `files` (built by [`TableWriter`]) to the database atomically: after
    /// the call returns, every key of every file reads with the file's value (or as deleted,
    /// for a tombstone), newer than anything written before the call; snapshots taken
    /// before it do not see them. A crash at any point leaves all of the files ingested or
    /// none.
    ///
    /// The files are hard-linked into the database directory (copied where that is
    /// impossible) and are never rewritten for the ingest; the inputs stay where they were,
    /// to delete when the caller likes. Each goes to the deepest level none of whose key
    /// range, and no level above, overlaps it — usually the last level for a load into an
    /// empty range, so that compaction never rewrites it. The memtables are flushed first
    /// only if they hold a key in a file's range. Writes made while an ingest runs are
    /// acknowledged after it.
    ///
    /// Errors: [`Error::InvalidArgument`] for no file, a file with sequence numbers (not
    /// made by a [`TableWriter`]) or files whose key ranges overlap one another (ingest
    /// them in separate calls: the later call's data is then the newer);
    /// [`Error::Corruption`], naming the file and offset, for a damaged or truncated file;
    /// [`Error::Conflict`] comes later, to transactions that read an ingested key from a
    /// snapshot older than the ingest.
    ///
    /// ```
    /// use strata::{Db, Options};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path().join("db"), Options::default())?;
    /// db.put("k2", "old")?;
    /// let before = db.snapshot();
    /// let mut a = db.table_writer(dir.path().join("a.sst"))?;
    /// a.put("k1", "new")?;
    /// a.put("k2", "new")?;
    /// let mut b = db.table_writer(dir.path().join("b.sst"))?;
    /// b.put("k8", "new")?;
    /// let info = db.ingest([a.finish()?, b.finish()?])?;
    /// assert_eq!(db.get("k2")?.as_deref(), Some(&b"new"[..]));
    /// assert_eq!(before.get("k2")?.as_deref(), Some(&b"old"[..]));
    /// assert!(info.flushed_memtables); // "k2" was in the memtable
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ingest<P: AsRef<Path>>(&self, files: impl IntoIterator<Item = P>) -> Result<IngestInfo> {
        let paths: Vec<PathBuf> = files.into_iter().map(|p| p.as_ref().to_path_buf()).collect();
        self.inner.ingest(&paths)
    }
}

impl DbInner {
    pub(crate) fn ingest(&self, paths: &[PathBuf]) -> Result<IngestInfo> {
        self.check_writable()?;
        if paths.is_empty() {
            return Err(Error::InvalidArgument("nothing to ingest".into()));
        }
        let inputs = paths.iter().map(|p| open_input(&*self.fs, p)).collect::<Result<Vec<_>>>()?;
        // Placement and overlap checks go in key order; `order[i]` is input i's position.
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by(|&a, &b| inputs[a].smallest.cmp(&inputs[b].smallest));
        for pair in order.windows(2) {
            let (a, b) = (&inputs[pair[0]], &inputs[pair[1]]);
            if a.largest >= b.smallest {
                return Err(Error::InvalidArgument(format!(
                    "ingested files {} and {} overlap: ingest them in separate calls",
                    a.source.display(),
                    b.source.display()
                )));
            }
        }
        let mut numbers = Vec::with_capacity(inputs.len());
        let mut copied = 0;
        let linked = (|| {
            for input in &inputs {
                let number = self.versions.allocate_table_number();
                numbers.push(number);
                let dest = self.tables.table_path(number);
                if link_or_copy(&*self.fs, &input.source, &dest)? {
                    copied += 1;
                }
                // A copy has a new length only if the source changed under us.
                let size = self.fs.file_size(&dest).ctx("stat", &dest)?;
                if size != input.props.file_size {
                    return Err(Error::corruption(
                        &dest,
                        size,
                        format!("copied {size} bytes of a {}-byte table", input.props.file_size),
                    ));
                }
            }
            self.fs.sync_dir(&self.dir).ctx("fsync directory", &self.dir)
        })();
        let mut installing = false;
        let result = linked.and_then(|()| {
            self.ingest_linked(&inputs, &numbers, &mut installing).map(|(seq, levels, f)| {
                IngestInfo {
                    sequence: seq,
                    levels,
                    bytes: inputs.iter().map(|i| i.props.file_size).sum(),
                    copied,
                    flushed_memtables: f,
                }
            })
        });
        if result.is_err() && !installing {
            // No manifest names them: they are this call's to remove.
            for &n in &numbers {
                let _ = self.fs.remove(&self.tables.table_path(n));
            }
        }
        self.versions.release_outputs(&numbers);
        let info = result?;
        let user_bytes = inputs.iter().map(Input::user_bytes).sum();
        self.metrics.ingested(inputs.len() as u64, user_bytes, info.bytes);
        Ok(info)
    }

    /// Steps 3 to 7 of the module docs, for inputs linked as table `numbers`. Returns the
    /// sequence number, each input's level and whether memtables were flushed. Sets
    /// `installing` once the manifest edit is being written (from then on the files may be
    /// named on disk and must stay).
    fn ingest_linked(
        &self,
        inputs: &[Input],
        numbers: &[u64],
        installing: &mut bool,
    ) -> Result<(SeqNo, Vec<usize>, bool)> {
        let ranges: Vec<(Vec<u8>, Vec<u8>)> =
            inputs.iter().map(|i| (i.smallest.clone(), i.largest.clone())).collect();
        let overlaps = |m: &Arc<MemTable>| ranges.iter().any(|(lo, hi)| holds_key_in(m, lo, hi));

        let tracked_from = {
            let mut w = self.commit.lock();
            let x = w.last_assigned();
            w.conflicts.open(x);
            x
        };
        let reserved = (|| {
            self.wait_visible(tracked_from);
            let view = self.current_view();
            let mut flushed = false;
            if overlaps(&view.mem) || view.imms.iter().any(overlaps) {
                drop(view);
                self.flush_and_wait()?;
                flushed = true;
            }
            Ok(flushed)
        })();
        let compacting = self.background.compaction_lock.lock();
        let (seq, mut flushed) = {
            let mut w = self.commit.lock();
            let reserve = reserved.and_then(|flushed| {
                self.check_writable()?;
                let raced =
                    ranges.iter().any(|(lo, hi)| w.conflicts.wrote_into(lo, hi, tracked_from));
                if !w.mem.is_empty() && (raced || overlaps(&w.mem)) {
                    let last = w.last_assigned();
                    self.switch_memtable(&mut w, last)?;
                }
                let seq = self.commit.reserve(&mut w)?;
                Ok((seq, flushed))
            });
            w.conflicts.close(tracked_from);
            let (seq, flushed) = reserve?;
            for (lo, hi) in &ranges {
                w.conflicts.record_range(lo, hi, seq);
            }
            (seq, flushed)
        };
        let placed = (|| {
            self.wait_visible(seq - 1);
            flushed |= self.wait_for_overlapping_flushes(&overlaps)?;
            *installing = true;
            let edit = self.versions.install_with(
                |version| {
                    let mut edit = VersionEdit::default();
                    for (input, &number) in inputs.iter().zip(numbers) {
                        let (lo, hi) = (&input.smallest, &input.largest);
                        let mut level = 0;
                        for l in 0..NUM_LEVELS {
                            if !version.overlapping_files(l, lo, hi).is_empty() {
                                break;
                            }
                            level = l;
                        }
                        let meta = FileMeta::ingested(number, input.props.clone(), seq);
                        edit.new_files.push((level, meta));
                    }
                    edit.last_sequence = Some(seq);
                    Ok(edit)
                },
                None,
                self.commit.visible(),
            );
            self.background.notify();
            let edit = edit.inspect_err(|e| self.poison(e))?;
            Ok(edit.new_files.iter().map(|(level, _)| *level).collect::<Vec<_>>())
        })();
        drop(compacting);
        // Published whatever happened: later writes wait for it (a failed ingest leaves an
        // unused number, which nothing reads).
        self.commit.publish_reserved(seq);
        Ok((seq, placed?, flushed))
    }

    /// Waits until no immutable memtable that `overlaps` is left (flushes go oldest first).
    /// Returns whether it waited for one.
    fn wait_for_overlapping_flushes(
        &self,
        overlaps: &dyn Fn(&Arc<MemTable>) -> bool,
    ) -> Result<bool> {
        let view = self.current_view();
        let Some(target) = view.imms.iter().filter(|m| overlaps(m)).map(|m| m.wal_number()).max()
        else {
            return Ok(false);
        };
        drop(view);
        let mut bg = self.background.lock();
        loop {
            if self.health.is_poisoned() {
                drop(bg);
                self.check_writable()?;
                return Err(Error::Closed);
            }
            if self.current_view().imms.iter().all(|m| m.wal_number() > target) {
                return Ok(true);
            }
            self.background.wait(&mut bg, Some(std::time::Duration::from_millis(50)));
        }
    }
}

/// Opens the table at `path` as an ingest input and checks every checksum of it.
fn open_input(fs: &dyn strata_core::fs::FileSystem, path: &Path) -> Result<Input> {
    let table = Table::open(fs, path, 0, None, Arc::new(TableStats::default()))?;
    // Every checksum, at checksum speed (`open` did the footer and metadata blocks). The
    // entries' order was enforced by the `TableWriter` that wrote them; a full decode
    // (`Table::verify`) would cost a third of a bulk load.
    table.verify_checksums()?;
    let props = table.properties().clone();
    if props.num_entries == 0 {
        return Err(Error::InvalidArgument(format!(
            "{} has no entry: nothing to ingest",
            path.display()
        )));
    }
    if !props.range_tombstones.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds range tombstones: only tables a TableWriter made can be ingested",
            path.display()
        )));
    }
    if props.largest_seq != 0 {
        return Err(Error::InvalidArgument(format!(
            "{} stores sequence numbers (up to {}): only tables a TableWriter made can be \
             ingested",
            path.display(),
            props.largest_seq
        )));
    }
    let smallest = user_key(&props.smallest_key).to_vec();
    let largest = user_key(&props.largest_key).to_vec();
    Ok(Input { source: path.to_path_buf(), props, smallest, largest })
}

/// Whether `mem` holds some version of a key in `lo ..= hi`.
fn holds_key_in(mem: &Arc<MemTable>, lo: &[u8], hi: &[u8]) -> bool {
    let mut target = Vec::with_capacity(lo.len() + TRAILER_LEN);
    encode_internal_key(&mut target, lo, MAX_SEQ, ValueKind::FOR_SEEK);
    let mut it = mem.iter();
    it.seek(&target);
    it.valid() && user_key(it.key()) <= hi
}
