//! [`TableWriter`]: builds a table file from sorted input outside any database, for
//! [`crate::Db::ingest`] to add whole — the bulk-load path, which skips the log, the
//! memtable and every compaction the same data would go through as writes.
//!
//! The file is an ordinary table (`docs/format/sstable.md`) whose entries all carry sequence
//! number 0; the ingest gives the whole file one sequence number (its *global* sequence,
//! `docs/format/manifest.md`, tag 8) without rewriting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_compaction::NUM_LEVELS;
use strata_core::fs::{parent_dir, FileSystem};
use strata_core::key::{encode_internal_key, ValueKind};
use strata_core::{Error, IoResultExt, Result};
use strata_sstable::TableBuilder;

use crate::options::{Options, MAX_KEY_SIZE, MAX_VALUE_SIZE};

/// Writes a table for [`crate::Db::ingest`] from keys given in strictly increasing order.
///
/// It uses the table options of the database options it is created with (block size, bloom
/// filter, and the compression of the last level, where an ingest into an empty key range
/// places the table). [`TableWriter::finish`] makes the file durable (fdatasync, then the
/// directory's fsync) and returns what [`crate::Db::ingest`] takes. Dropping an unfinished
/// writer removes its partial file.
///
/// ```
/// use strata::{Db, Options, TableWriter};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path().join("db"), Options::default())?;
/// let mut writer = TableWriter::create(dir.path().join("load.sst"), &Options::default())?;
/// for i in 0..1000u32 {
///     writer.put(format!("key{i:05}"), format!("value {i}"))?;
/// }
/// assert!(writer.put("key00000", "late").is_err()); // not increasing: InvalidArgument
/// let file = writer.finish()?;
/// assert_eq!(file.entries(), 1000);
/// db.ingest([&file])?;
/// assert_eq!(db.get("key00042")?.as_deref(), Some(&b"value 42"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TableWriter {
    /// `None` once finished.
    builder: Option<TableBuilder<'static>>,
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    /// The last user key added (the order check), and a reused internal-key buffer.
    last_key: Vec<u8>,
    key_buf: Vec<u8>,
    smallest: Vec<u8>,
    entries: u64,
    deletions: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl TableWriter {
    /// Creates (truncating) the table file at `path`, on the file system of `options`
    /// (`Options::file_system`), built with its table options.
    ///
    /// ```
    /// use strata::{Options, TableWriter};
    /// let dir = tempfile::tempdir()?;
    /// let writer = TableWriter::create(dir.path().join("t.sst"), &Options::default())?;
    /// assert_eq!(writer.entries(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(path: impl AsRef<Path>, options: &Options) -> Result<TableWriter> {
        let path = path.as_ref().to_path_buf();
        let fs = Arc::clone(&options.fs);
        let table_options = options.table_options(NUM_LEVELS - 1);
        let builder = TableBuilder::new_shared(Arc::clone(&fs), &path, &table_options)?;
        Ok(TableWriter {
            builder: Some(builder),
            fs,
            path,
            last_key: Vec::new(),
            key_buf: Vec::new(),
            smallest: Vec::new(),
            entries: 0,
            deletions: 0,
        })
    }

    /// Adds `key` with `value`. `key` must sort after every key added before (bytewise),
    /// and key and value must be within [`MAX_KEY_SIZE`] and [`MAX_VALUE_SIZE`]; otherwise
    /// [`Error::InvalidArgument`], and nothing is added (the writer stays usable).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut writer = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// writer.put("a", "1")?;
    /// assert!(matches!(writer.put("a", "2"), Err(strata::Error::InvalidArgument(_))));
    /// writer.put("b", "2")?;
    /// assert_eq!(writer.entries(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.add(key.as_ref(), value.as_ref(), ValueKind::Put)
    }

    /// Adds a tombstone for `key`: once ingested, `key` reads as absent, whatever older
    /// data the database holds for it. The same order and size rules as
    /// [`TableWriter::put`] apply.
    ///
    /// ```
    /// use strata::{Db, Options, TableWriter};
    /// # let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path().join("db"), Options::default())?;
    /// db.put("gone", "soon")?;
    /// let mut writer = TableWriter::create(dir.path().join("t.sst"), &Options::default())?;
    /// writer.delete("gone")?;
    /// db.ingest([writer.finish()?])?;
    /// assert_eq!(db.get("gone")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<()> {
        self.add(key.as_ref(), b"", ValueKind::Delete)
    }

    fn add(&mut self, key: &[u8], value: &[u8], kind: ValueKind) -> Result<()> {
        if key.len() > MAX_KEY_SIZE {
            return Err(Error::InvalidArgument(format!(
                "key of {} bytes exceeds the {MAX_KEY_SIZE}-byte limit",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the {MAX_VALUE_SIZE}-byte limit",
                value.len()
            )));
        }
        if self.entries > 0 && key <= self.last_key.as_slice() {
            return Err(Error::InvalidArgument(format!(
                "keys must be strictly increasing: {:?} does not sort after {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&self.last_key)
            )));
        }
        let builder = self.builder.as_mut().ok_or(Error::Closed)?;
        self.key_buf.clear();
        encode_internal_key(&mut self.key_buf, key, 0, kind);
        builder.add(&self.key_buf, value)?;
        if self.entries == 0 {
            self.smallest = key.to_vec();
        }
        self.entries += 1;
        self.deletions += u64::from(kind == ValueKind::Delete);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        Ok(())
    }

    /// Entries (puts and deletes) added so far.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut writer = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// writer.delete("x")?;
    /// assert_eq!(writer.entries(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// About how large the file would be if finished now (for splitting input into files
    /// of a chosen size).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut writer = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// let empty = writer.estimated_file_size();
    /// for i in 0..10_000u32 { writer.put(i.to_be_bytes(), [7u8; 100])?; }
    /// assert!(writer.estimated_file_size() > empty);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn estimated_file_size(&self) -> u64 {
        self.builder.as_ref().map_or(0, |b| b.estimated_file_size())
    }

    /// Writes the rest of the table, fdatasyncs it and fsyncs its directory, and returns it
    /// as a file [`crate::Db::ingest`] takes. A table with no entry is
    /// [`Error::InvalidArgument`] (and its file is removed): there is nothing to ingest.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut writer = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// writer.put("a", "1")?;
    /// writer.put("m", "2")?;
    /// let file = writer.finish()?;
    /// assert_eq!((file.smallest_key(), file.largest_key()), (&b"a"[..], &b"m"[..]));
    /// assert!(file.path().exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finish(mut self) -> Result<IngestFile> {
        let builder = self.builder.take().ok_or(Error::Closed)?;
        if self.entries == 0 {
            builder.abandon()?;
            return Err(Error::InvalidArgument(format!(
                "table {} has no entry: nothing to ingest",
                self.path.display()
            )));
        }
        let props = builder.finish()?;
        let dir = parent_dir(&self.path);
        self.fs.sync_dir(&dir).ctx("fsync directory", &dir)?;
        Ok(IngestFile {
            path: std::mem::take(&mut self.path),
            smallest: std::mem::take(&mut self.smallest),
            largest: std::mem::take(&mut self.last_key),
            entries: self.entries,
            deletions: self.deletions,
            file_size: props.file_size,
        })
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        if let Some(builder) = self.builder.take() {
            let _ = builder.abandon();
        }
    }
}

/// A finished table from [`TableWriter::finish`], ready for [`crate::Db::ingest`] (which
/// takes anything that is `AsRef<Path>`, this included).
///
/// ```
/// use strata::{Options, TableWriter};
/// # let dir = tempfile::tempdir()?;
/// let mut writer = TableWriter::create(dir.path().join("t.sst"), &Options::default())?;
/// writer.put("k", "v")?;
/// let file = writer.finish()?;
/// assert_eq!((file.entries(), file.deletions()), (1, 0));
/// assert!(file.file_size() > 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestFile {
    path: PathBuf,
    smallest: Vec<u8>,
    largest: Vec<u8>,
    entries: u64,
    deletions: u64,
    file_size: u64,
}

impl IngestFile {
    /// Where the table is.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let mut w = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// # w.put("k", "v")?;
    /// assert_eq!(w.finish()?.path(), dir.path().join("t.sst"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first key of the table.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let mut w = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// w.put("b", "1")?;
    /// w.put("c", "2")?;
    /// assert_eq!(w.finish()?.smallest_key(), b"b");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn smallest_key(&self) -> &[u8] {
        &self.smallest
    }

    /// The last key of the table.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let mut w = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// w.put("b", "1")?;
    /// w.put("c", "2")?;
    /// assert_eq!(w.finish()?.largest_key(), b"c");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn largest_key(&self) -> &[u8] {
        &self.largest
    }

    /// Entries in the table (puts and tombstones).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let mut w = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// w.put("a", "1")?;
    /// w.delete("b")?;
    /// assert_eq!(w.finish()?.entries(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Tombstones among the entries.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let mut w = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// w.put("a", "1")?;
    /// w.delete("b")?;
    /// assert_eq!(w.finish()?.deletions(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deletions(&self) -> u64 {
        self.deletions
    }

    /// Size of the file in bytes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let mut w = strata::TableWriter::create(dir.path().join("t.sst"), &strata::Options::default())?;
    /// # w.put("a", "1")?;
    /// let file = w.finish()?;
    /// assert_eq!(file.file_size(), std::fs::metadata(file.path())?.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file_size(&self) -> u64 {
        self.file_size
    }
}

impl AsRef<Path> for IngestFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}
