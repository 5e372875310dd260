//! [`TableBuilder`]: streams sorted entries into a new table file.

use std::cmp::Ordering;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use strata_core::fs::{FileSystem, WritableFile};
use strata_core::key::{compare_internal, parse_internal_key, user_key, ValueKind, MAX_SEQ};
use strata_core::range_del::{RangeTombstone, RangeTombstones};
use strata_core::{Error, IoResultExt, Result};

use crate::block::BlockBuilder;
use crate::filter::{FilterBuilder, MAX_BITS_PER_KEY};
use strata_core::coding::put_varint;

use crate::format::{
    BlockHandle, Compression, Footer, BLOCK_TRAILER_LEN, FORMAT_VERSION, MAX_ENTRY_LEN, STORED_LZ4,
    STORED_RAW, STORED_ZSTD,
};
use crate::properties::TableProperties;

/// Appends are gathered into writes of about this size (fewer system calls than one write
/// per 4 KiB block; still a small, fixed amount of memory).
const WRITE_BUFFER: usize = 64 << 10;

/// Every this many bytes appended, the builder asks the OS to start writing them out
/// (`WritableFile::start_writeback`, `sync_file_range` on Linux), so that the fdatasync of
/// `finish` finds little left to write instead of the whole table (RocksDB's
/// `bytes_per_sync`, 1 MiB). A hint makes nothing durable and a failed one is ignored.
const WRITEBACK_EVERY: u64 = 1 << 20;

/// The largest `block_size` option accepted (see [`TableOptions::validate`]).
pub const MAX_BLOCK_SIZE: usize = 64 << 20;

/// How tables are built. `Default` gives 4 KiB blocks, a restart point every 16 entries,
/// zstd level 1 and a 10-bits-per-key bloom filter (about 1% false positives).
///
/// Why zstd level 1 by default: it typically halves or better the size of real keys and
/// values at several hundred MB/s per core, which cuts disk space and the bytes every
/// compaction rewrites; blocks that do not compress by 12.5% are stored raw (and are then
/// read straight from the mapping), and the block cache holds decompressed blocks, so hot
/// reads do not pay for decompression.
///
/// ```
/// use strata_sstable::{Compression, TableOptions};
/// let opts = TableOptions::default().with_block_size(16 << 10).with_compression(Compression::None);
/// assert_eq!(opts.block_size, 16 << 10);
/// assert_eq!(opts.bloom_bits_per_key, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block before compression (a block is closed once it reaches
    /// this size, so blocks holding large entries are bigger). At most 64 MiB.
    pub block_size: usize,
    /// Entries between restart points in data blocks (>= 1).
    pub restart_interval: usize,
    /// Block compression.
    pub compression: Compression,
    /// Bloom filter bits per distinct user key (0 = no filter; at most 64).
    pub bloom_bits_per_key: u32,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size: 4096,
            restart_interval: 16,
            compression: Compression::Zstd { level: 1 },
            bloom_bits_per_key: 10,
        }
    }
}

impl TableOptions {
    /// Sets [`TableOptions::block_size`].
    pub fn with_block_size(mut self, bytes: usize) -> Self {
        self.block_size = bytes;
        self
    }

    /// Sets [`TableOptions::restart_interval`].
    pub fn with_restart_interval(mut self, entries: usize) -> Self {
        self.restart_interval = entries;
        self
    }

    /// Sets [`TableOptions::compression`].
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets [`TableOptions::bloom_bits_per_key`].
    pub fn with_bloom_bits_per_key(mut self, bits: u32) -> Self {
        self.bloom_bits_per_key = bits;
        self
    }

    /// Checks the options; [`TableBuilder::new`] calls this.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        // A block closes once it reaches block_size, so its largest size is block_size plus
        // one maximal entry: 64 MiB + 128 MiB (+ headers) stays below MAX_BLOCK_LEN (256 MiB),
        // the most a reader accepts.
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return bad(format!("block_size {} out of range", self.block_size));
        }
        if self.restart_interval == 0 || self.restart_interval > 1 << 16 {
            return bad(format!("restart_interval {} out of range", self.restart_interval));
        }
        if self.bloom_bits_per_key > MAX_BITS_PER_KEY {
            return bad(format!(
                "bloom_bits_per_key {} > {MAX_BITS_PER_KEY}",
                self.bloom_bits_per_key
            ));
        }
        if let Compression::Zstd { level } = self.compression {
            if !zstd::compression_level_range().contains(&level) {
                return bad(format!("zstd level {level} out of range"));
            }
        }
        Ok(())
    }
}

/// Writes a table: add entries in strictly increasing [`compare_internal`] order, then
/// [`finish`](TableBuilder::finish).
///
/// Memory is bounded by one data block, a 64 KiB write buffer, the index block and the
/// filter's 8 bytes per distinct user key. The file is written through the
/// [`FileSystem`] layer, so simulated power loss and injected I/O errors apply.
///
/// After any error the builder refuses further calls (returning the first error again);
/// call [`abandon`](TableBuilder::abandon) to remove the partial file. A builder dropped
/// without `finish` or `abandon` leaves its partial file behind (the engine deletes
/// unreferenced table files when it opens).
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use strata_core::key::{InternalKey, ValueKind};
/// use strata_core::range_del::RangeTombstone;
/// use strata_core::sim::SimFileSystem;
/// use strata_core::fs::FileSystem;
/// use strata_sstable::{Table, TableBuilder, TableOptions, TableStats};
/// let fs = SimFileSystem::new();
/// fs.create_dir_all(Path::new("/db"))?;
/// let path = Path::new("/db/000001.sst");
/// let mut b = TableBuilder::new(&fs, path, &TableOptions::default())?;
/// b.add(InternalKey::new(b"apple", 2, ValueKind::Put).encoded(), b"red")?;
/// b.add(InternalKey::new(b"kiwi", 3, ValueKind::Delete).encoded(), b"")?;
/// b.add_range_tombstone(RangeTombstone::new("m", "p", 4))?; // "m" up to "p" deleted at 4
/// let props = b.finish()?;
/// fs.sync_dir(Path::new("/db"))?; // the caller makes the new name durable
/// assert_eq!((props.num_entries, props.num_deletions, props.largest_seq), (2, 1, 4));
/// let table = Table::open(&fs, path, 1, None, Arc::new(TableStats::default()))?;
/// assert_eq!(table.get(b"apple", 10)?.unwrap().2, &b"red"[..]);
/// assert_eq!(table.range_del_cover(b"melon", 10), Some(4));
/// assert_eq!(table.range_del_cover(b"melon", 3), None); // a reader at 3 predates it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TableBuilder<'fs> {
    fs: FsHandle<'fs>,
    writer: BlockWriter,
    options: TableOptions,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    filter: FilterBuilder,
    last_key: Vec<u8>,
    props: TableProperties,
    /// Range tombstones as added, fragmented into `props` by `finish`.
    range_tombstones: Vec<RangeTombstone>,
    failed: Option<Error>,
}

/// The file system a builder removes its file from on failure: borrowed, or shared by a
/// builder that must not borrow ([`TableBuilder::new_shared`]).
enum FsHandle<'fs> {
    Borrowed(&'fs dyn FileSystem),
    Shared(std::sync::Arc<dyn FileSystem>),
}

impl FsHandle<'_> {
    fn get(&self) -> &dyn FileSystem {
        match self {
            FsHandle::Borrowed(fs) => *fs,
            FsHandle::Shared(fs) => &**fs,
        }
    }
}

/// The file being written, with its write buffer and compressor.
struct BlockWriter {
    path: PathBuf,
    file: Box<dyn WritableFile>,
    compressor: Compressor,
    /// Reused output buffer of the compressor.
    scratch: Vec<u8>,
    /// Bytes not yet handed to the file.
    write_buf: Vec<u8>,
    /// File offset of the next byte written (appended + buffered).
    offset: u64,
    /// Bytes appended and already handed to writeback ([`WRITEBACK_EVERY`]).
    hinted: u64,
}

impl std::fmt::Debug for TableBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder")
            .field("path", &self.writer.path)
            .field("entries", &self.props.num_entries)
            .field("offset", &self.writer.offset)
            .finish_non_exhaustive()
    }
}

impl TableBuilder<'static> {
    /// [`TableBuilder::new`] holding a shared file system instead of borrowing one, for a
    /// builder kept in a struct that owns nothing else of the file system.
    ///
    /// ```
    /// use std::path::Path;
    /// use std::sync::Arc;
    /// use strata_core::fs::FileSystem;
    /// use strata_core::key::{InternalKey, ValueKind};
    /// use strata_core::sim::SimFileSystem;
    /// use strata_sstable::{TableBuilder, TableOptions};
    /// let fs: Arc<dyn FileSystem> = Arc::new(SimFileSystem::new());
    /// fs.create_dir_all(Path::new("/t"))?;
    /// let mut b = TableBuilder::new_shared(fs, Path::new("/t/1.sst"), &TableOptions::default())?;
    /// b.add(InternalKey::new(b"k", 0, ValueKind::Put).encoded(), b"v")?;
    /// assert_eq!(b.finish()?.num_entries, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_shared(
        fs: std::sync::Arc<dyn FileSystem>,
        path: &Path,
        options: &TableOptions,
    ) -> Result<TableBuilder<'static>> {
        TableBuilder::create(FsHandle::Shared(fs), path, options)
    }
}

impl<'fs> TableBuilder<'fs> {
    /// Creates (truncating) the file at `path`. The new name is not durable until the
    /// caller syncs the directory after [`finish`](TableBuilder::finish).
    pub fn new(fs: &'fs dyn FileSystem, path: &Path, options: &TableOptions) -> Result<Self> {
        TableBuilder::create(FsHandle::Borrowed(fs), path, options)
    }

    fn create(fs: FsHandle<'fs>, path: &Path, options: &TableOptions) -> Result<Self> {
        options.validate()?;
        let compressor = match options.compression {
            Compression::None => Compressor::None,
            Compression::Zstd { level } => {
                Compressor::Zstd(zstd::bulk::Compressor::new(level).ctx("zstd init", path)?)
            }
            Compression::Lz4 => Compressor::Lz4,
        };
        let file = fs.get().create(path).ctx("create", path)?;
        Ok(TableBuilder {
            fs,
            writer: BlockWriter {
                path: path.to_path_buf(),
                file,
                compressor,
                scratch: Vec::new(),
                write_buf: Vec::with_capacity(WRITE_BUFFER + options.block_size),
                offset: 0,
                hinted: 0,
            },
            options: options.clone(),
            data_block: BlockBuilder::new(options.restart_interval),
            // Restart at every index entry: a lookup binary searches the index's restart
            // array directly and decodes only the entries it compares.
            index_block: BlockBuilder::new(1),
            filter: FilterBuilder::new(options.bloom_bits_per_key),
            last_key: Vec::new(),
            props: TableProperties { compression: options.compression, ..Default::default() },
            range_tombstones: Vec::new(),
            failed: None,
        })
    }

    /// Adds an entry. `internal_key` must be a well-formed encoded internal key greater
    /// than every key added before (by [`compare_internal`]), else
    /// [`Error::InvalidArgument`]; `internal_key.len() + value.len()` must not exceed
    /// [`MAX_ENTRY_LEN`] (128 MiB).
    pub fn add(&mut self, internal_key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(parsed) = parse_internal_key(internal_key) else {
            return Err(Error::InvalidArgument("malformed internal key".into()));
        };
        if internal_key.len().saturating_add(value.len()) > MAX_ENTRY_LEN {
            return Err(Error::InvalidArgument(format!(
                "entry of {} bytes exceeds the table limit of {MAX_ENTRY_LEN}",
                internal_key.len() + value.len()
            )));
        }
        let first = self.props.num_entries == 0;
        if !first && compare_internal(&self.last_key, internal_key) != Ordering::Less {
            return Err(Error::InvalidArgument(
                "table keys must be added in strictly increasing internal-key order".into(),
            ));
        }
        if first || user_key(&self.last_key) != parsed.user_key {
            self.filter.add(parsed.user_key);
        }
        if first {
            self.props.smallest_key = internal_key.to_vec();
            self.props.smallest_seq = parsed.seq;
            self.props.largest_seq = parsed.seq;
        }
        self.props.smallest_seq = self.props.smallest_seq.min(parsed.seq);
        self.props.largest_seq = self.props.largest_seq.max(parsed.seq);
        self.props.num_entries += 1;
        if parsed.kind == ValueKind::Delete {
            self.props.num_deletions += 1;
        }
        self.props.raw_key_bytes += internal_key.len() as u64;
        self.props.raw_value_bytes += value.len() as u64;
        self.last_key.clear();
        self.last_key.extend_from_slice(internal_key);

        self.data_block.add(internal_key, value);
        if self.data_block.estimated_size() >= self.options.block_size {
            self.guard(Self::flush_data_block)?;
        }
        Ok(())
    }

    /// Adds a range tombstone: the table will say that every version of a key in
    /// `tombstone.start..tombstone.end` older than `tombstone.seq` is deleted, whatever
    /// table holds that version. Any order, before [`TableBuilder::finish`]; overlapping
    /// tombstones are fragmented when the table is finished. `InvalidArgument` for an empty
    /// range or one whose keys exceed the entry limit.
    pub fn add_range_tombstone(&mut self, tombstone: RangeTombstone) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if tombstone.is_empty() || tombstone.seq > MAX_SEQ {
            return Err(Error::InvalidArgument(format!(
                "range tombstone {:?}..{:?} at {} is empty or has a sequence beyond the limit",
                tombstone.start, tombstone.end, tombstone.seq
            )));
        }
        if tombstone.start.len().saturating_add(tombstone.end.len()) > MAX_ENTRY_LEN {
            return Err(Error::InvalidArgument(format!(
                "range tombstone keys exceed the table limit of {MAX_ENTRY_LEN} bytes"
            )));
        }
        self.range_tombstones.push(tombstone);
        Ok(())
    }

    /// Whether nothing was added: no entry and no range tombstone.
    pub fn is_empty(&self) -> bool {
        self.props.num_entries == 0 && self.range_tombstones.is_empty()
    }

    /// An estimate of the file size if finished now (for splitting compaction output).
    pub fn estimated_file_size(&self) -> u64 {
        self.writer.offset
            + self.data_block.estimated_size() as u64
            + self.index_block.estimated_size() as u64
            + self.filter.estimated_size()
            + 256
            + 2 * self.last_key.len() as u64
    }

    /// Entries added so far.
    pub fn num_entries(&self) -> u64 {
        self.props.num_entries
    }

    /// The path being written.
    pub fn path(&self) -> &Path {
        &self.writer.path
    }

    /// Writes the last data block, the filter, index and properties blocks and the footer,
    /// then fdatasyncs the file, and returns the table's properties.
    ///
    /// It does NOT sync the directory: the caller must `sync_dir` the table's directory
    /// before referencing the table anywhere durable (a manifest), or a crash may lose the
    /// name. On error the partial file is removed (best effort) and the error returned; a
    /// failed fdatasync is an error, never retried.
    pub fn finish(mut self) -> Result<TableProperties> {
        let result = match self.failed.clone() {
            Some(e) => Err(e),
            None => self.guard(Self::write_tail),
        };
        match result {
            Ok(()) => Ok(self.props),
            Err(e) => {
                let _ = self.abandon();
                Err(e)
            }
        }
    }

    /// Stops building and removes the partial file.
    pub fn abandon(self) -> Result<()> {
        let TableBuilder { fs, writer, .. } = self;
        let BlockWriter { path, file, .. } = writer;
        drop(file);
        match fs.get().remove(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
            _ => Ok(()),
        }
    }

    /// Runs a write step, remembering its failure so later calls refuse to continue.
    fn guard(&mut self, step: fn(&mut Self) -> Result<()>) -> Result<()> {
        let result = step(self);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn write_tail(&mut self) -> Result<()> {
        if !self.data_block.is_empty() {
            self.flush_data_block()?;
        }
        // Layout after the data blocks: filter, index, properties, footer.
        let filter = self.writer.write_block(&self.filter.finish(), false)?;
        self.props.filter_bytes = self.writer.offset - filter.offset;

        let compress = self.options.compression != Compression::None;
        let index = self.writer.write_block(self.index_block.finish(), compress)?;
        self.props.index_bytes = self.writer.offset - index.offset;

        self.props.largest_key = self.last_key.clone();
        let fragments = RangeTombstones::new(std::mem::take(&mut self.range_tombstones));
        for (i, t) in fragments.iter().enumerate() {
            let first_seq = i == 0 && self.props.num_entries == 0;
            self.props.smallest_seq =
                if first_seq { t.seq } else { self.props.smallest_seq.min(t.seq) };
            self.props.largest_seq = self.props.largest_seq.max(t.seq);
            self.props.range_tombstones.push(t);
        }
        self.props.created_unix_secs =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let properties = self.writer.write_block(&self.props.encode(), false)?;

        let footer = Footer { filter, index, properties, version: FORMAT_VERSION }.encode();
        self.writer.write_buf.extend_from_slice(&footer);
        self.writer.offset += footer.len() as u64;
        self.writer.flush_buffer()?;
        self.writer.file.sync_data().ctx("fdatasync", &self.writer.path)?;
        self.props.file_size = self.writer.offset;
        Ok(())
    }

    fn flush_data_block(&mut self) -> Result<()> {
        let compress = self.options.compression != Compression::None;
        let result = self.writer.write_block(self.data_block.finish(), compress);
        self.data_block.reset();
        let handle = result?;
        self.props.data_bytes += self.writer.offset - handle.offset;
        self.props.num_data_blocks += 1;
        // The separator is the block's last key: every key in the block is <= it and every
        // key of later blocks is > it, so "first index entry >= target" names the only block
        // that can hold the first entry >= target.
        let mut encoded = Vec::with_capacity(20);
        handle.encode_varint(&mut encoded);
        self.index_block.add(&self.last_key, &encoded);
        Ok(())
    }
}

/// The block codec of a table being written.
enum Compressor {
    None,
    Zstd(zstd::bulk::Compressor<'static>),
    Lz4,
}

impl BlockWriter {
    /// Appends `raw` as a block — compressed when `compress` and that saves at least
    /// 12.5% — plus its trailer, and returns its handle.
    fn write_block(&mut self, raw: &[u8], compress: bool) -> Result<BlockHandle> {
        let mut header = Vec::new();
        let mut kind = STORED_RAW;
        let codec = match (&mut self.compressor, compress) {
            (Compressor::Zstd(c), true) => {
                self.scratch.clear();
                self.scratch.reserve(zstd::zstd_safe::compress_bound(raw.len()));
                c.compress_to_buffer(raw, &mut self.scratch).ctx("zstd compress", &self.path)?;
                Some(STORED_ZSTD)
            }
            (Compressor::Lz4, true) => {
                self.scratch.clear();
                self.scratch.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
                let n = lz4_flex::block::compress_into(raw, &mut self.scratch).map_err(|e| {
                    Error::io("lz4 compress", &self.path, io::Error::other(e.to_string()))
                })?;
                self.scratch.truncate(n);
                Some(STORED_LZ4)
            }
            _ => None,
        };
        if let Some(codec) = codec {
            put_varint(&mut header, raw.len() as u64);
            if header.len() + self.scratch.len() <= raw.len() - raw.len() / 8 {
                kind = codec;
            }
        }
        let parts: [&[u8]; 2] =
            if kind != STORED_RAW { [&header, &self.scratch] } else { [raw, &[]] };
        let size = (parts[0].len() + parts[1].len()) as u64;
        let handle = BlockHandle { offset: self.offset, size };
        let mut crc = crc32fast::Hasher::new();
        for part in parts {
            crc.update(part);
            self.write_buf.extend_from_slice(part);
        }
        crc.update(&[kind]);
        self.write_buf.push(kind);
        self.write_buf.extend_from_slice(&crc.finalize().to_le_bytes());
        self.offset += size + BLOCK_TRAILER_LEN as u64;
        if self.write_buf.len() >= WRITE_BUFFER {
            self.flush_buffer()?;
        }
        Ok(handle)
    }

    fn flush_buffer(&mut self) -> Result<()> {
        if !self.write_buf.is_empty() {
            self.file.append(&self.write_buf).ctx("write", &self.path)?;
            self.write_buf.clear();
            let appended = self.offset;
            if appended - self.hinted >= WRITEBACK_EVERY {
                let _ = self.file.start_writeback(self.hinted, appended - self.hinted);
                self.hinted = appended;
            }
        }
        Ok(())
    }
}
