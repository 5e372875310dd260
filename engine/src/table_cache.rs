//! Open tables, shared by every read of a database, and [`LevelIterator`], the cursor over
//! one sorted, disjoint level that opens its tables only as it reaches them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use strata_compaction::{table_file_name, FileMeta};
use strata_core::fs::FileSystem;
use strata_core::iter::InternalIterator;
use strata_core::key::compare_internal;
use strata_core::{Error, Result};
use strata_sstable::{BlockCache, Table, TableIterator, TableStats};

/// Every table of the database that was opened, by file number. Tables are mapped once and
/// stay mapped until the file is deleted; a map costs address space, not memory or a file
/// descriptor, so there is no need to bound how many are open.
pub(crate) struct TableCache {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    block_cache: Arc<BlockCache>,
    stats: Arc<TableStats>,
    tables: RwLock<HashMap<u64, Arc<Table>, BuildHasherDefault<FileNumberHasher>>>,
}

/// Hashes table file numbers for [`TableCache`]'s map, which every point lookup in a table
/// consults. The numbers are small integers the engine allocates, not input an attacker
/// chooses, so SipHash's flooding resistance buys nothing; one multiply spreads them.
#[derive(Default)]
struct FileNumberHasher(u64);

impl Hasher for FileNumberHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // The map takes bucket bits from the low end and tag bits from the top: fold the
        // product's well-mixed high half into both.
        self.0 ^ (self.0 >> 32)
    }
}

impl TableCache {
    pub(crate) fn new(fs: Arc<dyn FileSystem>, dir: &Path, block_cache_bytes: usize) -> Self {
        TableCache {
            fs,
            dir: dir.to_path_buf(),
            block_cache: BlockCache::new(block_cache_bytes),
            stats: Arc::new(TableStats::default()),
            tables: RwLock::new(HashMap::default()),
        }
    }

    pub(crate) fn table_path(&self, number: u64) -> PathBuf {
        self.dir.join(table_file_name(number))
    }

    /// The open table of `meta`, opening it on first use (an ingested one with its global
    /// sequence number, which a table number keeps for life).
    pub(crate) fn get(&self, meta: &FileMeta) -> Result<Arc<Table>> {
        let number = meta.number;
        if let Some(t) = self.tables.read().get(&number) {
            return Ok(Arc::clone(t));
        }
        let (fs, path) = (&*self.fs, self.table_path(number));
        let cache = Some(Arc::clone(&self.block_cache));
        let stats = Arc::clone(&self.stats);
        let table = match meta.global_seq {
            Some(seq) => Table::open_ingested(fs, &path, number, cache, stats, seq)?,
            None => Table::open(fs, &path, number, cache, stats)?,
        };
        Ok(Arc::clone(self.tables.write().entry(number).or_insert(table)))
    }

    /// Forgets table `number` (its file is being deleted); readers holding it keep their map.
    pub(crate) fn evict(&self, number: u64) {
        self.tables.write().remove(&number);
    }

    /// Forgets every table (the database closed): mappings go as soon as no iterator or
    /// snapshot still holds them, so the disk space of tables another handle deletes later
    /// comes back then rather than when the last clone of this handle drops.
    pub(crate) fn clear(&self) {
        self.tables.write().clear();
    }

    pub(crate) fn block_cache(&self) -> &BlockCache {
        &self.block_cache
    }

    pub(crate) fn stats(&self) -> &TableStats {
        &self.stats
    }
}

/// A cursor over the tables of one level of L1 or deeper (sorted, disjoint), opening each
/// table only when the cursor enters it.
pub(crate) struct LevelIterator {
    cache: Arc<TableCache>,
    files: Vec<Arc<FileMeta>>,
    index: usize,
    current: Option<TableIterator>,
    error: Option<Error>,
}

impl LevelIterator {
    pub(crate) fn new(cache: Arc<TableCache>, files: Vec<Arc<FileMeta>>) -> Self {
        LevelIterator { cache, files, index: 0, current: None, error: None }
    }

    /// Opens file `index` (or clears the cursor past either end).
    fn open(&mut self, index: usize) -> bool {
        self.current = None;
        self.index = index;
        let Some(meta) = self.files.get(index) else { return false };
        match self.cache.get(meta) {
            Ok(t) => {
                self.current = Some(t.iter());
                true
            }
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }

    fn current_error(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.status().is_err())
    }

    /// After the current table ran out forwards, moves on to the next tables.
    fn skip_forward(&mut self) {
        while self.current.as_ref().is_some_and(|c| !c.valid()) && !self.current_error() {
            if !self.open(self.index + 1) {
                return;
            }
            if let Some(c) = self.current.as_mut() {
                c.seek_to_first();
            }
        }
    }

    fn skip_backward(&mut self) {
        while self.current.as_ref().is_some_and(|c| !c.valid()) && !self.current_error() {
            if self.index == 0 || !self.open(self.index - 1) {
                self.current = None;
                return;
            }
            if let Some(c) = self.current.as_mut() {
                c.seek_to_last();
            }
        }
    }
}

impl InternalIterator for LevelIterator {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.valid())
    }

    fn seek_to_first(&mut self) {
        if self.open(0) {
            if let Some(c) = self.current.as_mut() {
                c.seek_to_first();
            }
            self.skip_forward();
        }
    }

    fn seek_to_last(&mut self) {
        if let Some(last) = self.files.len().checked_sub(1) {
            if self.open(last) {
                if let Some(c) = self.current.as_mut() {
                    c.seek_to_last();
                }
                self.skip_backward();
            }
        } else {
            self.current = None;
        }
    }

    fn seek(&mut self, target: &[u8]) {
        // The first table whose largest key is >= target holds the first entry >= target.
        let i =
            self.files.partition_point(|f| compare_internal(f.largest.encoded(), target).is_lt());
        if self.open(i) {
            if let Some(c) = self.current.as_mut() {
                c.seek(target);
            }
            self.skip_forward();
        }
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        // The last table whose smallest key is <= target holds the last entry <= target.
        let i =
            self.files.partition_point(|f| compare_internal(f.smallest.encoded(), target).is_le());
        match i.checked_sub(1) {
            Some(i) if self.open(i) => {
                if let Some(c) = self.current.as_mut() {
                    c.seek_for_prev(target);
                }
                self.skip_backward();
            }
            _ => self.current = None,
        }
    }

    fn next(&mut self) {
        if let Some(c) = self.current.as_mut() {
            c.next();
        }
        self.skip_forward();
    }

    fn prev(&mut self) {
        if let Some(c) = self.current.as_mut() {
            c.prev();
        }
        self.skip_backward();
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.key())
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.value())
    }

    fn status(&self) -> Result<()> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.current.as_ref().map_or(Ok(()), |c| c.status())
    }
}
