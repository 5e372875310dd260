//! [`ShardedDb::ingest`]: tables from [`crate::TableWriter`] split by the router and
//! ingested into each shard they touch.
//!
//! Under range partitioning (ordered shards) a file whose keys all route to one shard is
//! ingested as it is (a hard link); a file spanning shards, and every file under hash
//! partitioning, is read once and rewritten as one table per shard it touches, next to that
//! shard's files, then ingested there and its temporary name removed.
//!
//! Ingest and resharding are serialized: an ingest refuses with [`Error::Busy`] while a
//! resharding runs (or its cleanup is pending), and holds the resharding slot while it
//! runs, so a resharding asked for meanwhile starts after it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_core::fs::FileSystem;
use strata_core::iter::InternalIterator;
use strata_core::key::{parse_internal_key, ValueKind};
use strata_core::{Error, Result};
use strata_sstable::{Table, TableStats};

use super::ShardedDb;
use crate::ingest::IngestInfo;
use crate::table_writer::{IngestFile, TableWriter};

/// Distinguishes the temporary per-shard tables of concurrent or successive ingests.
static NEXT_SPLIT: AtomicU64 = AtomicU64::new(0);

impl ShardedDb {
    /// Ingests the tables `files` (from [`crate::TableWriter`], key ranges disjoint): each
    /// key goes to the shard the router sends it to, as if written there after everything
    /// before the call (see [`crate::Db::ingest`]). Returns, per shard that received data,
    /// its index and what its ingest did.
    ///
    /// Each shard's part is atomic on that shard; like a batch, the ingest is **not atomic
    /// across shards**: after an error or a crash, some shards may hold their part and
    /// others not (ingesting the same files again makes them whole: the data is the same).
    /// [`Error::Busy`] while a resharding runs; a resharding started during the ingest
    /// waits for it.
    ///
    /// ```
    /// use strata::{Options, Partitioner, ShardedDb, ShardedOptions, TableWriter};
    /// let dir = tempfile::tempdir()?;
    /// let opts = ShardedOptions::new(2).partitioner(Partitioner::Range(vec![b"m".to_vec()]));
    /// let db = ShardedDb::open(dir.path().join("db"), opts)?;
    /// let mut w = TableWriter::create(dir.path().join("load.sst"), &Options::default())?;
    /// for k in ["apple", "kiwi", "melon", "pear"] {
    ///     w.put(k, "fruit")?;
    /// }
    /// let parts = db.ingest([w.finish()?])?; // spans both shards: split in two
    /// assert_eq!(parts.iter().map(|(shard, _)| *shard).collect::<Vec<_>>(), [0, 1]);
    /// assert_eq!(db.get("pear")?.as_deref(), Some(&b"fruit"[..]));
    /// assert_eq!(db.shard(0).unwrap().iter().count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ingest<P: AsRef<Path>>(
        &self,
        files: impl IntoIterator<Item = P>,
    ) -> Result<Vec<(usize, IngestInfo)>> {
        self.check_writable()?;
        let paths: Vec<PathBuf> = files.into_iter().map(|p| p.as_ref().to_path_buf()).collect();
        if paths.is_empty() {
            return Err(Error::InvalidArgument("nothing to ingest".into()));
        }
        // Held to the end: no resharding starts (or swaps the routing) meanwhile.
        let slot = self.inner.reshard.lock();
        if slot.as_ref().is_some_and(|r| !r.is_finished()) {
            return Err(Error::Busy);
        }
        let routing = self.inner.routing.load_full();
        if routing.layout.migration.is_some() {
            return Err(Error::Busy); // a resharding's cleanup is still pending
        }
        let shards = routing.shards.len();
        let mut per_shard: Vec<Vec<PathBuf>> = vec![Vec::new(); shards];
        let mut temporary: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let fs = &*self.inner.options.engine.fs;
            let tables = paths
                .iter()
                .map(|p| Table::open(fs, p, 0, None, Arc::new(TableStats::default())))
                .collect::<Result<Vec<_>>>()?;
            // Refused before any shard ingests a part.
            let mut bounds: Vec<(&[u8], &[u8], &Path)> = tables
                .iter()
                .map(|t| {
                    let p = t.properties();
                    let key = strata_core::key::user_key;
                    (key(&p.smallest_key), key(&p.largest_key), t.path())
                })
                .collect();
            bounds.sort();
            for pair in bounds.windows(2) {
                if pair[0].1 >= pair[1].0 {
                    return Err(Error::InvalidArgument(format!(
                        "ingested files {} and {} overlap: ingest them in separate calls",
                        pair[0].2.display(),
                        pair[1].2.display()
                    )));
                }
            }
            for (path, table) in paths.iter().zip(&tables) {
                let props = table.properties();
                let (lo, hi) = (
                    strata_core::key::user_key(&props.smallest_key),
                    strata_core::key::user_key(&props.largest_key),
                );
                let (first, last) = (routing.router.shard_for(lo), routing.router.shard_for(hi));
                if routing.router.is_ordered() && first == last && props.num_entries > 0 {
                    // The shard's ingest verifies the file.
                    if let Some(list) = per_shard.get_mut(first) {
                        list.push(path.clone());
                    }
                    continue;
                }
                table.verify_checksums()?;
                for (shard, file) in self.split_table(table, &routing, &mut temporary)? {
                    if let Some(list) = per_shard.get_mut(shard) {
                        list.push(file.path().to_path_buf());
                    }
                }
            }
            let mut done = Vec::new();
            for (i, files) in per_shard.iter().enumerate().filter(|(_, f)| !f.is_empty()) {
                done.push((i, routing.shard(i)?.db.ingest(files)?));
            }
            Ok(done)
        })();
        drop(slot);
        for path in temporary {
            // Linked into the shard (or not ingested at all): the name is ours to drop.
            let _ = self.inner.options.engine.fs.remove(&path);
        }
        result
    }

    /// Rewrites `table` as one table per shard its keys route to, each in that shard's
    /// directory under a temporary name (added to `temporary` as it is created); returns
    /// them by shard.
    fn split_table(
        &self,
        table: &Arc<Table>,
        routing: &super::Routing,
        temporary: &mut Vec<PathBuf>,
    ) -> Result<Vec<(usize, IngestFile)>> {
        let mut writers: Vec<Option<TableWriter>> = Vec::new();
        writers.resize_with(routing.shards.len(), || None);
        let split = NEXT_SPLIT.fetch_add(1, Ordering::Relaxed);
        let mut it = table.iter();
        it.seek_to_first();
        while it.valid() {
            let Some(entry) = parse_internal_key(it.key()) else {
                return Err(Error::corruption(table.path(), 0, "malformed internal key"));
            };
            let shard = routing.router.shard_for(entry.user_key);
            let slot = writers.get_mut(shard).ok_or_else(|| {
                Error::Internal(format!("the router chose shard {shard}, which does not exist"))
            })?;
            let writer = match slot {
                Some(w) => w,
                None => {
                    let dir = routing.shard(shard)?.db.path().to_path_buf();
                    let name = format!("{SPLIT_PREFIX}{}-{split}.sst", std::process::id());
                    let path = dir.join(name);
                    temporary.push(path.clone());
                    slot.insert(TableWriter::create(path, &self.inner.options.engine)?)
                }
            };
            match entry.kind {
                ValueKind::Put => writer.put(entry.user_key, it.value())?,
                ValueKind::Delete => writer.delete(entry.user_key)?,
            }
            it.next();
        }
        it.status()?;
        let mut out = Vec::new();
        for (shard, writer) in writers.into_iter().enumerate() {
            if let Some(w) = writer {
                out.push((shard, w.finish()?));
            }
        }
        Ok(out)
    }
}

/// The name prefix of the per-shard parts an ingest writes (`ingest-split-{pid}-{n}.sst`).
const SPLIT_PREFIX: &str = "ingest-split-";

/// Removes the parts a sharded ingest left in a shard's directory `dir` when a crash cut it
/// short (ingested parts were linked under table names; these names are never referenced).
/// Called by [`ShardedDb::open`], which holds the root lock: no ingest is running.
pub(super) fn remove_split_leftovers(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let names = match fs.list(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut removed = false;
    for name in names.iter().filter(|n| n.starts_with(SPLIT_PREFIX) && n.ends_with(".sst")) {
        let path = dir.join(name);
        fs.remove(&path).map_err(|e| Error::io("remove", &path, e))?;
        removed = true;
    }
    if removed {
        fs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(())
}
