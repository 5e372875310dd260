//! # strata
//!
//! An embedded, write-optimized LSM-tree key-value store.
//!
//! Writes append to a group-committed write-ahead log and a skiplist memtable; full
//! memtables are flushed to immutable sorted tables (bloom filters, LZ4- or zstd-compressed,
//! checksummed blocks, read through mmap). See `docs/design.md` for the architecture and
//! `docs/format/` for every byte on disk.
//!
//! ```
//! use strata::{Db, Options, Durability, WriteBatch};
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::default().durability(Durability::Sync))?;
//! db.put(b"hello", b"world")?;
//! assert_eq!(db.get(b"hello")?.as_deref(), Some(&b"world"[..]));
//! for item in db.prefix(b"hel") {
//!     let (key, value) = item?;
//!     println!("{key:?} = {value:?}");
//! }
//! db.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Durability
//! Every write names (in its [`WriteOptions`], or inherits from [`Options::durability`]) one
//! of four [`Durability`] levels: [`Durability::Sync`] survives power loss when the call returns;
//! [`Durability::Buffered`] (the default) survives a crash of the process;
//! [`Durability::Periodic`] adds a background `fdatasync` every interval; and
//! [`Durability::None`] skips the log. A failed `fdatasync` or a failed background flush
//! makes the database read-only ([`Error::Poisoned`]); reopening recovers what truly
//! reached stable storage.
//!
//! ## Writes
//! [`Db::put`], [`Db::delete`], [`Db::write`] and [`Db::write_async`] use the defaults;
//! their `_with` forms take `impl Into<`[`WriteOptions`]`>`: a [`Durability`], or options
//! that also ask for [`WriteOptions::no_wait`] — [`Error::Busy`] instead of waiting for a
//! write stall or a full queue. [`ShardedDb`] has the same methods, and both implement the
//! object-safe [`KvStore`], so either can sit behind a `Box<dyn KvStore>`.
//!
//! ## Modules and features
//! * [`fs`]: the file-system trait [`Options::file_system`] takes, to implement or wrap.
//! * [`testing`]: the clock of [`ShardedDb`]'s write-rate windows, and a manual one.
//! * Cargo feature `sim` (off by default): `fs::sim`, the simulated file system that cuts
//!   power, for crash tests of code built on strata.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// The public API, on top.
mod checkpoint;
mod db;
pub mod fs;
mod ingest;
mod sharded;
mod table_writer;
pub mod testing;
mod verify;

// What the API drives: one open database (`inner`) and the concerns over it, each in its
// own file.
mod compaction;
mod flush;
mod inner;
mod read;
mod recovery;
mod snapshot;
mod transaction;
mod write;

// The parts a database is made of, and the building blocks below them; none of these
// imports `inner` or anything above it.
mod async_write;
mod background;
mod commit;
mod conflict;
mod db_iter;
mod dir;
mod health;
mod histogram;
mod memtable;
mod metrics;
mod options;
mod own_writes;
mod state;
mod table_cache;
mod version_set;

/// Not part of the API: the memtable, for the criterion benchmarks in `engine/benches`.
/// A benchmark is a crate of its own and sees only public items; a feature gate instead
/// would make `cargo bench` skip the benchmark silently when the feature is not named.
#[doc(hidden)]
pub mod __bench {
    pub use crate::memtable::MemTable;
}

pub use async_write::WriteTicket;
pub use bytes::Bytes;
pub use checkpoint::CheckpointInfo;
pub use db::Db;
pub use histogram::HistogramSummary;
pub use ingest::IngestInfo;
pub use metrics::{LevelMetrics, Metrics, StallCause};
pub use options::{Options, WriteOptions, MAX_KEY_SIZE, MAX_VALUE_SIZE};
pub use sharded::{
    AutoSplit, CustomShardKey, HashRing, KeyBounds, KvIter, KvSnapshot, KvStore, Partitioner,
    ReshardPhase, ReshardProgress, Resharding, ShardKey, ShardMetrics, ShardedDb, ShardedIter,
    ShardedMetrics, ShardedOptions, ShardedSnapshot, ShardedTransaction, DEFAULT_VNODES_PER_SHARD,
    MAX_SHARDS,
};
pub use snapshot::{Iter, Snapshot};
pub use strata_core::{Error, Result};
pub use strata_sstable::Compression;
pub use strata_wal::{Durability, Expect, RecoveryMode, WriteBatch};
pub use table_writer::{IngestFile, TableWriter};
pub use transaction::{Transaction, TransactionIter};
pub use verify::VerifyReport;
