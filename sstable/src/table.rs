//! [`Table`]: an open, immutable table file, read through a memory map.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use strata_core::coding::Decoder;
use strata_core::fs::FileSystem;
use strata_core::key::{
    encode_internal_key, parse_internal_key, write_internal_key, SeqNo, ValueKind, MAX_SEQ,
    TRAILER_LEN,
};
use strata_core::range_del::RangeTombstones;
use strata_core::{Error, IoResultExt, Result};

use crate::block::Block;
use crate::cache::BlockCache;
use crate::filter::Filter;
use crate::format::{
    block_crc, BlockHandle, Footer, FOOTER_LEN, MAX_BLOCK_LEN, STORED_LZ4, STORED_RAW, STORED_ZSTD,
};
use crate::index::Index;
use crate::iter::TableIterator;
use crate::properties::TableProperties;
use crate::stats::TableStats;

/// Gives every opened table a process-unique id for block-cache keys, so that a reused
/// table id or path can never serve another file's blocks.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    /// The key buffer of point lookups ([`Block::seek_point`]), reused so that a get
    /// allocates nothing.
    static LOOKUP_KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Longest user key whose seek key a point lookup builds on the stack.
const INLINE_SEEK_KEY: usize = 64;

/// An open table: its file mapping, footer, properties, index block and bloom filter.
///
/// # Why reading through a memory map is sound
/// [`FileSystem::map`] maps the whole file read-only. A mapping is only unsound if the file
/// changes while mapped; a table file never does: [`crate::TableBuilder`] writes it once,
/// fdatasyncs it in `finish`, and nothing reopens a finished table for writing (table file
/// names are never reused), while the engine holds the database directory's lock for its
/// whole life so no other strata process writes there either (a read-only handle, which
/// takes no lock, only reads; see the `SAFETY` comment of
/// `OsFileSystem::map` in `strata-core`). Deleting a mapped table (after compaction) is
/// fine: the mapping keeps the inode alive until the last `Arc<Table>` and the last block
/// slice taken from it drop.
///
/// # Integrity
/// Every byte of the file is covered by a CRC32: each block's trailer covers its stored
/// bytes and type, the footer carries its own CRC. `open` verifies the footer and the
/// filter, index and properties blocks; a data block is verified each time it is read from
/// the file — with a block cache that is once per cache residency (raw blocks too: the cache
/// then holds a verified zero-copy view of the mapping), without one on every read. Any
/// mismatch, truncation or impossible length is an [`Error::Corruption`] naming the file and
/// the offset of the damaged block; nothing unverified is ever returned.
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use strata_core::fs::FileSystem;
/// use strata_core::iter::InternalIterator;
/// use strata_core::key::{InternalKey, ValueKind};
/// use strata_core::sim::SimFileSystem;
/// use strata_sstable::{BlockCache, Table, TableBuilder, TableOptions, TableStats};
/// let fs = SimFileSystem::new();
/// fs.create_dir_all(Path::new("/db"))?;
/// let path = Path::new("/db/000002.sst");
/// let mut b = TableBuilder::new(&fs, path, &TableOptions::default())?;
/// b.add(InternalKey::new(b"k", 9, ValueKind::Put).encoded(), b"new")?;
/// b.add(InternalKey::new(b"k", 4, ValueKind::Put).encoded(), b"old")?;
/// b.finish()?;
/// fs.sync_dir(Path::new("/db"))?;
///
/// let cache = BlockCache::new(1 << 20);
/// let table = Table::open(&fs, path, 2, Some(cache), Arc::new(TableStats::default()))?;
/// assert_eq!(table.get(b"k", 5)?.unwrap(), (ValueKind::Put, 4, bytes::Bytes::from_static(b"old")));
/// assert_eq!(table.get(b"k", 3)?, None);
/// let mut it = table.iter();
/// it.seek_to_first();
/// assert_eq!(it.value(), b"new");
/// it.next();
/// assert_eq!(it.value(), b"old");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Table {
    path: PathBuf,
    table_id: u64,
    cache_id: u64,
    file: Bytes,
    /// End of the data region (= start of the filter block): data block handles must lie
    /// below it.
    pub(crate) data_end: u64,
    props: TableProperties,
    /// The file's format version (from its footer).
    version: u32,
    index: Index,
    filter: Filter,
    cache: Option<Arc<BlockCache>>,
    stats: Arc<TableStats>,
    /// Set for an ingested table ([`Table::open_ingested`]): every entry reads as this
    /// sequence number, whatever its stored trailer says.
    global_seq: Option<SeqNo>,
    /// The table's range tombstones, fragmented for lookups (`None` when it has none, so
    /// that a point read pays one branch for them).
    range_dels: Option<Box<RangeTombstones>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("path", &self.path)
            .field("table_id", &self.table_id)
            .field("file_size", &self.file.len())
            .field("entries", &self.props.num_entries)
            .field("filter", &self.filter)
            .field("global_seq", &self.global_seq)
            .finish_non_exhaustive()
    }
}

/// What kind of block a read is for (for error messages).
#[derive(Clone, Copy)]
pub(crate) enum BlockKind {
    Data,
    Index,
    Filter,
    Properties,
}

impl BlockKind {
    fn name(self) -> &'static str {
        match self {
            BlockKind::Data => "data",
            BlockKind::Index => "index",
            BlockKind::Filter => "filter",
            BlockKind::Properties => "properties",
        }
    }
}

impl Table {
    /// Maps and validates the table at `path`: footer, properties, index and filter blocks.
    /// `table_id` is the engine's number for the file; `cache`, if any, is shared by the
    /// tables of a database; `stats` collects counters across tables.
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        table_id: u64,
        cache: Option<Arc<BlockCache>>,
        stats: Arc<TableStats>,
    ) -> Result<Arc<Table>> {
        Table::open_with(fs, path, table_id, cache, stats, None)
    }

    /// [`Table::open`] for a table ingested from outside the engine: every entry reads as
    /// sequence number `global_seq` (in [`Table::get`] and in its iterator's keys), whatever
    /// its stored trailer says. The file is not changed. Every stored sequence number must be
    /// `<= global_seq` (`strata::TableWriter` stores 0): a stored key then sorts at or after
    /// the key it reads as, which the seeks rely on.
    ///
    /// ```
    /// use std::path::Path;
    /// use std::sync::Arc;
    /// use strata_core::fs::FileSystem;
    /// use strata_core::iter::InternalIterator;
    /// use strata_core::key::{parse_internal_key, InternalKey, ValueKind};
    /// use strata_core::sim::SimFileSystem;
    /// use strata_sstable::{Table, TableBuilder, TableOptions, TableStats};
    /// let fs = SimFileSystem::new();
    /// fs.create_dir_all(Path::new("/db"))?;
    /// let path = Path::new("/db/000004.sst");
    /// let mut b = TableBuilder::new(&fs, path, &TableOptions::default())?;
    /// b.add(InternalKey::new(b"k", 0, ValueKind::Put).encoded(), b"v")?;
    /// b.finish()?;
    /// let table = Table::open_ingested(&fs, path, 4, None, Arc::new(TableStats::default()), 50)?;
    /// assert_eq!(table.get(b"k", 49)?, None); // a reader at 49 predates the ingest
    /// assert!(table.get(b"k", 50)?.is_some());
    /// let mut it = table.iter();
    /// it.seek_to_first();
    /// assert_eq!(parse_internal_key(it.key()).unwrap().seq, 50);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_ingested(
        fs: &dyn FileSystem,
        path: &Path,
        table_id: u64,
        cache: Option<Arc<BlockCache>>,
        stats: Arc<TableStats>,
        global_seq: SeqNo,
    ) -> Result<Arc<Table>> {
        Table::open_with(fs, path, table_id, cache, stats, Some(global_seq.min(MAX_SEQ)))
    }

    fn open_with(
        fs: &dyn FileSystem,
        path: &Path,
        table_id: u64,
        cache: Option<Arc<BlockCache>>,
        stats: Arc<TableStats>,
        global_seq: Option<SeqNo>,
    ) -> Result<Arc<Table>> {
        let mapped = fs.map(path).ctx("mmap", path)?;
        let file = Bytes::from_owner(mapped);
        let len = file.len() as u64;
        let corrupt = |offset: u64, reason: String| Error::corruption(path, offset, reason);
        let footer_at = file
            .len()
            .checked_sub(FOOTER_LEN)
            .ok_or_else(|| corrupt(0, format!("file of {len} bytes is too short to be a table")))?;
        let footer = Footer::decode(file.get(footer_at..).unwrap_or_default())
            .map_err(|r| corrupt(footer_at as u64, r))?;
        // The metadata blocks follow the data blocks in this order, each right after the
        // previous one, and the footer follows the properties block.
        let chain = [footer.filter, footer.index, footer.properties];
        for pair in chain.windows(2) {
            if pair[0].end_with_trailer() != Some(pair[1].offset) {
                return Err(corrupt(
                    footer_at as u64,
                    "footer block handles are not contiguous".into(),
                ));
            }
        }
        if footer.properties.end_with_trailer() != Some(footer_at as u64) {
            return Err(corrupt(
                footer_at as u64,
                "properties block does not end at the footer".into(),
            ));
        }

        let mut table = Table {
            path: path.to_path_buf(),
            table_id,
            cache_id: NEXT_CACHE_ID.fetch_add(1, Relaxed),
            file,
            data_end: footer.filter.offset,
            props: TableProperties::default(),
            version: footer.version,
            index: Index::default(),
            filter: Filter::None,
            cache,
            stats,
            global_seq,
            range_dels: None,
        };
        let (props, _) =
            table.read_block(footer.properties, footer_at as u64, BlockKind::Properties)?;
        table.props = TableProperties::decode(&props, footer.version)
            .map_err(|r| corrupt(footer.properties.offset, r.into()))?;
        table.props.file_size = len;
        if !table.props.range_tombstones.is_empty() {
            let set = RangeTombstones::new(table.props.range_tombstones.iter().cloned());
            table.range_dels = Some(Box::new(set));
        }
        if table.props.data_bytes != table.data_end {
            return Err(corrupt(
                footer.properties.offset,
                "properties disagree with the data size".into(),
            ));
        }
        let (filter, _) =
            table.read_block(footer.filter, footer.index.offset, BlockKind::Filter)?;
        table.filter = Filter::parse(&filter).map_err(|r| corrupt(footer.filter.offset, r))?;
        let (index, _) =
            table.read_block(footer.index, footer.properties.offset, BlockKind::Index)?;
        let index = Block::new(index).map_err(|r| corrupt(footer.index.offset, r.into()))?;
        table.index = Index::decode(index).map_err(|(reason, at)| {
            corrupt(footer.index.offset, format!("index block: {reason} (byte {at} of block)"))
        })?;
        Ok(Arc::new(table))
    }

    /// The table's range tombstones, if it has any (format version 4).
    pub fn range_tombstones(&self) -> Option<&RangeTombstones> {
        self.range_dels.as_deref()
    }

    /// The newest sequence number `<= seq` of a range tombstone of this table covering
    /// `user_key` (see [`RangeTombstones::max_cover`]).
    #[inline]
    pub fn range_del_cover(&self, user_key: &[u8], seq: SeqNo) -> Option<SeqNo> {
        self.range_dels.as_ref()?.max_cover(user_key, seq)
    }

    /// The table's properties (from its properties block).
    pub fn properties(&self) -> &TableProperties {
        &self.props
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.file.len() as u64
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number every entry reads as, for a table opened with
    /// [`Table::open_ingested`].
    pub fn global_seq(&self) -> Option<SeqNo> {
        self.global_seq
    }

    /// The engine's number for this table, as passed to [`Table::open`].
    pub fn table_id(&self) -> u64 {
        self.table_id
    }

    /// Heap memory pinned by the open table (its bloom filter and its decoded index).
    pub fn memory_bytes(&self) -> usize {
        self.filter.memory_bytes() + self.index.memory_bytes()
    }

    /// Whether the bloom filter admits `user_key` (false: the key is certainly absent).
    /// Does not count in [`TableStats`].
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter.may_contain(user_key)
    }

    /// The newest version of `user_key` with sequence number `<= seq`: `Some((Put, its
    /// sequence, value))`, `Some((Delete, its sequence, empty))` for a tombstone, or `None`
    /// if the table has no such version. The value is a zero-copy slice of the file mapping
    /// or of a cached block. Range tombstones are not applied here: see
    /// [`Table::range_del_cover`].
    pub fn get(&self, user_key: &[u8], seq: SeqNo) -> Result<Option<(ValueKind, SeqNo, Bytes)>> {
        if self.filter.is_some() {
            let negative = !self.filter.may_contain(user_key);
            self.stats.record_bloom(negative);
            if negative {
                return Ok(None);
            }
        }
        let seq = seq.min(MAX_SEQ);
        if self.global_seq.is_some_and(|g| g > seq) {
            // Every entry reads as newer than the reader.
            return Ok(None);
        }
        // An ingested table stores one version per key (sequence 0, below any reader's),
        // so the stored-key seek below finds it.
        let len = user_key.len() + TRAILER_LEN;
        if len <= INLINE_SEEK_KEY {
            let mut inline = [0u8; INLINE_SEEK_KEY];
            write_internal_key(&mut inline[..len], user_key, seq, ValueKind::FOR_SEEK);
            self.get_internal(user_key, &inline[..len])
        } else {
            let mut target = Vec::with_capacity(len);
            encode_internal_key(&mut target, user_key, seq, ValueKind::FOR_SEEK);
            self.get_internal(user_key, &target)
        }
    }

    /// [`Table::get`] past the filter, with the seek key `target` of `user_key` built.
    fn get_internal(
        &self,
        user_key: &[u8],
        target: &[u8],
    ) -> Result<Option<(ValueKind, SeqNo, Bytes)>> {
        let i = self.index.seek(target);
        if i >= self.index.len() {
            return Ok(None);
        }
        let handle = self.index.handle(i);
        let block = self.data_block(handle)?;
        LOOKUP_KEY.with(|cell| {
            // A re-entrant borrow cannot happen (nothing below calls back into a table);
            // a fresh buffer keeps even that case correct.
            let mut fresh = Vec::new();
            let mut borrowed = cell.try_borrow_mut();
            let key = match borrowed.as_mut() {
                Ok(k) => &mut **k,
                Err(_) => &mut fresh,
            };
            let value = match block.seek_point(target, key) {
                Ok(Some(value)) => value,
                // The index promised an entry >= target in this block.
                Ok(None) => {
                    return Err(self.block_corruption(handle, "block ends before its index key", 0))
                }
                Err((reason, at)) => return Err(self.block_corruption(handle, reason, at)),
            };
            let Some(parsed) = parse_internal_key(key) else {
                return Err(self.block_corruption(handle, "malformed internal key", 0));
            };
            if parsed.user_key != user_key {
                return Ok(None);
            }
            let value = match parsed.kind {
                ValueKind::Put => block.slice(value),
                ValueKind::Delete => Bytes::new(),
            };
            Ok(Some((parsed.kind, self.global_seq.unwrap_or(parsed.seq), value)))
        })
    }

    /// A cursor over all entries, owning a reference to the table.
    pub fn iter(self: &Arc<Self>) -> TableIterator {
        TableIterator::new(self.clone())
    }

    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    pub(crate) fn block_corruption(&self, h: BlockHandle, reason: &str, at: usize) -> Error {
        Error::corruption(
            &self.path,
            h.offset,
            format!("data block: {reason} (byte {at} of block)"),
        )
    }

    /// The data block at `handle`: from the cache, or read, verified, decompressed and
    /// cached.
    pub(crate) fn data_block(&self, handle: BlockHandle) -> Result<Block> {
        let key = (self.cache_id, handle.offset);
        if let Some(cache) = &self.cache {
            if let Some(block) = cache.get(&key) {
                return Ok(block);
            }
        }
        let (contents, owned) = self.read_block(handle, self.data_end, BlockKind::Data)?;
        let block = Block::new(contents).map_err(|r| {
            Error::corruption(&self.path, handle.offset, format!("data block: {r}"))
        })?;
        if let Some(cache) = &self.cache {
            cache.insert(key, block.clone(), owned);
        }
        Ok(block)
    }

    /// Checks the CRC of the stored block at `handle` (which must lie below `region_end`)
    /// without decompressing it.
    pub(crate) fn check_block_crc(&self, handle: BlockHandle, region_end: u64) -> Result<()> {
        self.stored_block(handle, region_end, BlockKind::Data).map(|_| ())
    }

    /// The stored bytes of the block at `handle` (ending, with its trailer, at or before
    /// `region_end`) and its stored type, once its CRC is verified.
    fn stored_block(
        &self,
        handle: BlockHandle,
        region_end: u64,
        kind: BlockKind,
    ) -> Result<(std::ops::Range<usize>, u8)> {
        let corrupt = |reason: String| {
            Error::corruption(&self.path, handle.offset, format!("{} block: {reason}", kind.name()))
        };
        let end = handle.end_with_trailer().filter(|&e| e <= region_end).ok_or_else(|| {
            corrupt(format!(
                "handle ({}, {}) points outside its region",
                handle.offset, handle.size
            ))
        })?;
        // end <= region_end <= file length, so these conversions and slices are in bounds.
        let start = handle.offset as usize;
        let stored_end = start + handle.size as usize;
        let trailer = self.file.get(stored_end..end as usize).unwrap_or_default();
        let mut d = Decoder::new(trailer);
        let (Some(stored_type), Some(crc)) = (d.u8(), d.u32()) else {
            return Err(corrupt("truncated block trailer".into()));
        };
        let stored = self.file.get(start..stored_end).unwrap_or_default();
        if block_crc(stored, stored_type) != crc {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok((start..stored_end, stored_type))
    }

    /// Reads the block at `handle`, which must end (with its trailer) at or before
    /// `region_end`; verifies its CRC and decompresses it. Returns the contents and whether
    /// they are an owned buffer (true) or a view of the mapping (false).
    pub(crate) fn read_block(
        &self,
        handle: BlockHandle,
        region_end: u64,
        kind: BlockKind,
    ) -> Result<(Bytes, bool)> {
        let corrupt = |reason: String| {
            Error::corruption(&self.path, handle.offset, format!("{} block: {reason}", kind.name()))
        };
        let (range, stored_type) = self.stored_block(handle, region_end, kind)?;
        let stored = self.file.slice(range);
        match stored_type {
            STORED_RAW => {
                self.stats.record_block_read(handle.size, false);
                Ok((stored, false))
            }
            STORED_ZSTD => {
                self.stats.record_block_read(handle.size, true);
                let raw = decompress(&stored).map_err(corrupt)?;
                Ok((Bytes::from(raw), true))
            }
            STORED_LZ4 if self.version >= 2 => {
                self.stats.record_block_read(handle.size, true);
                let raw = decompress_lz4(&stored).map_err(corrupt)?;
                Ok((Bytes::from(raw), true))
            }
            other => Err(corrupt(format!("unknown block compression type {other}"))),
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // Cached raw blocks are views of this table's mapping: forget them so that a deleted
        // file's mapping (and disk space) is released now rather than at eviction.
        let Some(cache) = &self.cache else { return };
        for i in 0..self.index.len() {
            cache.remove(&(self.cache_id, self.index.handle(i).offset));
        }
    }
}

/// Splits a stored compressed block into its decompressed length — bounded by
/// [`MAX_BLOCK_LEN`] before anything is allocated — and the compressed bytes.
fn split_compressed(stored: &[u8]) -> std::result::Result<(usize, &[u8]), String> {
    let mut d = Decoder::new(stored);
    let raw_len = d.varint().ok_or("truncated compressed-length header")?;
    let raw_len = usize::try_from(raw_len)
        .ok()
        .filter(|&n| n <= MAX_BLOCK_LEN)
        .ok_or_else(|| format!("compressed block claims {raw_len} bytes"))?;
    Ok((raw_len, d.rest()))
}

/// Decompresses a stored LZ4 block: `varint raw_len ++ LZ4 block`; the output must be
/// exactly `raw_len` bytes.
fn decompress_lz4(stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let (raw_len, compressed) = split_compressed(stored)?;
    let mut out = vec![0u8; raw_len];
    let n =
        lz4_flex::block::decompress_into(compressed, &mut out).map_err(|e| format!("lz4: {e}"))?;
    if n != raw_len {
        return Err(format!("decompressed to {n} bytes, header says {raw_len}"));
    }
    Ok(out)
}

/// Decompresses a stored zstd block: `varint raw_len ++ zstd frame`, with `raw_len` bounded
/// by [`MAX_BLOCK_LEN`] before anything is allocated and checked against the output.
fn decompress(stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let (raw_len, frame) = split_compressed(stored)?;
    let out = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(dec) => dec,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
        };
        decompressor.decompress(frame, raw_len).map_err(|e| format!("zstd: {e}"))
    })?;
    if out.len() != raw_len {
        return Err(format!("decompressed to {} bytes, header says {raw_len}", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompress_lz4_rejects_lies() {
        let raw = b"hello hello hello hello hello hello";
        let mut stored = Vec::new();
        strata_core::coding::put_varint(&mut stored, raw.len() as u64);
        stored.extend_from_slice(&lz4_flex::block::compress(raw));
        assert_eq!(decompress_lz4(&stored).unwrap(), raw);
        stored[0] -= 1; // claims less than the block holds
        assert!(decompress_lz4(&stored).is_err());
        stored[0] += 2; // claims more
        assert!(decompress_lz4(&stored).is_err());
        let mut huge = Vec::new();
        strata_core::coding::put_varint(&mut huge, u64::MAX);
        assert!(decompress_lz4(&huge).is_err());
        assert!(decompress_lz4(&[]).is_err());
        assert!(decompress_lz4(&[5, 0xff, 0xff]).is_err());
    }

    #[test]
    fn decompress_rejects_lies() {
        let frame = zstd::bulk::compress(b"hello hello hello hello", 1).unwrap();
        let mut stored = Vec::new();
        strata_core::coding::put_varint(&mut stored, 23);
        stored.extend_from_slice(&frame);
        assert_eq!(decompress(&stored).unwrap(), b"hello hello hello hello");
        stored[0] = 22; // claims less than the frame holds
        assert!(decompress(&stored).is_err());
        stored[0] = 24; // claims more
        assert!(decompress(&stored).is_err());
        let mut huge = Vec::new();
        strata_core::coding::put_varint(&mut huge, u64::MAX);
        huge.extend_from_slice(&frame);
        assert!(decompress(&huge).is_err());
        assert!(decompress(&[]).is_err());
    }
}
