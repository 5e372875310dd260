//! strata's sorted string tables: the immutable on-disk files of the LSM tree.
//!
//! Memtable flushes and compactions write tables with [`TableBuilder`]; reads that miss
//! the memtable go through [`Table`] (point lookups: bloom filter, then index, then one data
//! block) and [`TableIterator`] (an [`InternalIterator`](strata_core::iter::InternalIterator)
//! for merges). Tables store encoded internal keys from [`strata_core::key`], ordered by
//! [`compare_internal`](strata_core::key::compare_internal).
//!
//! A table file is a sequence of data blocks, then a filter block (bloom filter over user
//! keys), an index block (one separator key and block handle per data block), a properties
//! block ([`TableProperties`]) and a fixed 64-byte footer with the metadata handles, the
//! format version, a CRC and a magic number. Every block is followed by a trailer (stored
//! type, CRC32). The byte-level layout is in `docs/format/sstable.md`.
//!
//! Nothing here trades correctness for speed: any damage to a file — a flipped bit, a
//! truncation, a lying length — is reported as [`strata_core::Error::Corruption`] naming
//! the file and offset, never returned as data, and never a panic or an unbounded
//! allocation.
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//! use strata_core::fs::FileSystem;
//! use strata_core::key::{InternalKey, ValueKind};
//! use strata_core::sim::SimFileSystem;
//! use strata_sstable::{BlockCache, Table, TableBuilder, TableOptions, TableStats};
//!
//! let fs = SimFileSystem::new();
//! fs.create_dir_all(Path::new("/db"))?;
//! let path = Path::new("/db/000001.sst");
//! let mut builder = TableBuilder::new(&fs, path, &TableOptions::default())?;
//! for i in 0..1000u32 {
//!     let key = InternalKey::new(format!("key{i:04}").as_bytes(), 1, ValueKind::Put);
//!     builder.add(key.encoded(), b"value")?;
//! }
//! let props = builder.finish()?;
//! fs.sync_dir(Path::new("/db"))?;
//! assert_eq!(props.num_entries, 1000);
//!
//! let stats = Arc::new(TableStats::default());
//! let table = Table::open(&fs, path, 1, Some(BlockCache::new(1 << 20)), stats.clone())?;
//! assert!(table.get(b"key0042", 1)?.is_some());
//! assert!(table.get(b"nope", 1)?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod block;
mod builder;
mod cache;
mod filter;
mod format;
mod index;
mod iter;
mod properties;
mod stats;
mod table;
mod verify;

pub use builder::{TableBuilder, TableOptions, MAX_BLOCK_SIZE};
pub use cache::BlockCache;
pub use format::{
    BlockHandle, Compression, BLOCK_TRAILER_LEN, FOOTER_LEN, FORMAT_VERSION, MAX_BLOCK_LEN,
    MAX_ENTRY_LEN, TABLE_MAGIC,
};
pub use iter::TableIterator;
pub use properties::TableProperties;
pub use stats::TableStats;
pub use table::Table;
pub use verify::TableCheck;
