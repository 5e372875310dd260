//! [`Options`]: how a [`crate::Db`] is configured, with documented defaults; and
//! [`WriteOptions`]: how one write is made.
//!
//! Every public configuration type of strata is built the same way: start from a default
//! (`Options::default()`, `WriteOptions::default()`, `ShardedOptions::new(shards)`) and
//! chain builder methods that take `self` and are named after the setting.

use std::sync::Arc;

use strata_core::fs::{FileSystem, OsFileSystem};
use strata_sstable::Compression;
use strata_wal::{Durability, RecoveryMode};

/// The largest key strata accepts: 64 KiB.
///
/// ```
/// assert_eq!(strata::MAX_KEY_SIZE, 65_536);
/// ```
pub const MAX_KEY_SIZE: usize = 64 << 10;

/// The largest value strata accepts: 128 MiB − 64 KiB − 8 bytes (134,152,184 bytes).
///
/// Derived, not chosen: a table stores each entry whole, and its limit
/// ([`strata_sstable::MAX_ENTRY_LEN`], 128 MiB) counts the internal key, which is the user
/// key plus an 8-byte trailer. Every entry the write path accepts, even a largest key with
/// a largest value, therefore fits a table, so a log the write path wrote can always be
/// flushed, and recovered. A value one byte longer is [`crate::Error::InvalidArgument`]
/// before anything is logged.
///
/// ```
/// use strata::{MAX_KEY_SIZE, MAX_VALUE_SIZE};
/// assert_eq!(MAX_VALUE_SIZE, (128 << 20) - (64 << 10) - 8);
/// assert!(MAX_KEY_SIZE + 8 + MAX_VALUE_SIZE <= strata_sstable::MAX_ENTRY_LEN);
/// ```
pub const MAX_VALUE_SIZE: usize =
    strata_sstable::MAX_ENTRY_LEN - MAX_KEY_SIZE - strata_core::key::TRAILER_LEN;

/// Configuration of a [`crate::Db`]. Every setter states its default and, where there is
/// one, the RocksDB option it corresponds to. Options are checked when the database opens:
/// a bad one is [`crate::Error::InvalidArgument`] before any file is touched.
///
/// Background work is not configurable: every database runs one flush thread, so a flush
/// never waits behind a long compaction, and one compaction thread, since compactions run one
/// at a time (RocksDB's `max_background_jobs` = 2, fixed).
///
/// ```
/// use strata::{Options, Durability};
/// let opts = Options::default()
///     .durability(Durability::Sync)
///     .memtable_size(16 << 20)
///     .block_cache_size(64 << 20);
/// assert_eq!(opts.memtable_bytes(), 16 << 20);
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) durability: Durability,
    pub(crate) memtable_size: usize,
    pub(crate) max_immutable_memtables: usize,
    pub(crate) max_total_wal_size: u64,
    pub(crate) block_size: usize,
    pub(crate) compression: Compression,
    pub(crate) compression_per_level: Vec<Compression>,
    pub(crate) bloom_bits_per_key: u32,
    pub(crate) block_cache_size: usize,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) l0_compaction_trigger: usize,
    pub(crate) l0_slowdown_trigger: usize,
    pub(crate) l0_stop_trigger: usize,
    pub(crate) level_base_bytes: u64,
    pub(crate) level_multiplier: u64,
    pub(crate) target_file_size: u64,
    pub(crate) compaction_rate_limit: Option<u64>,
    pub(crate) max_manifest_size: u64,
    pub(crate) write_queue_depth: usize,
    pub(crate) wal_bytes_per_sync: u64,
    pub(crate) transaction_history_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fs: Arc::new(OsFileSystem),
            durability: Durability::Buffered,
            memtable_size: 64 << 20,
            max_immutable_memtables: 2,
            max_total_wal_size: 192 << 20,
            block_size: 4096,
            compression: Compression::Lz4,
            compression_per_level: Vec::new(),
            bloom_bits_per_key: 10,
            block_cache_size: 64 << 20,
            recovery_mode: RecoveryMode::Strict,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            level_base_bytes: 256 << 20,
            level_multiplier: 10,
            target_file_size: 64 << 20,
            compaction_rate_limit: None,
            max_manifest_size: 64 << 20,
            write_queue_depth: 1024,
            wal_bytes_per_sync: 1 << 20,
            transaction_history_bytes: 16 << 20,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("fs", &self.fs)
            .field("durability", &self.durability)
            .field("memtable_size", &self.memtable_size)
            .field("max_immutable_memtables", &self.max_immutable_memtables)
            .field("max_total_wal_size", &self.max_total_wal_size)
            .field("block_size", &self.block_size)
            .field("compression", &self.compression)
            .field("compression_per_level", &self.compression_per_level)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("block_cache_size", &self.block_cache_size)
            .field("recovery_mode", &self.recovery_mode)
            .field("l0_compaction_trigger", &self.l0_compaction_trigger)
            .field("l0_slowdown_trigger", &self.l0_slowdown_trigger)
            .field("l0_stop_trigger", &self.l0_stop_trigger)
            .field("level_base_bytes", &self.level_base_bytes)
            .field("level_multiplier", &self.level_multiplier)
            .field("target_file_size", &self.target_file_size)
            .field("compaction_rate_limit", &self.compaction_rate_limit)
            .field("wal_bytes_per_sync", &self.wal_bytes_per_sync)
            .field("transaction_history_bytes", &self.transaction_history_bytes)
            .finish_non_exhaustive()
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    };
}

impl Options {
    setter!(
        /// The durability of writes that do not name their own (see [`Durability`]).
        /// Default: [`Durability::Buffered`] (survives kill -9, not power loss).
        durability: Durability
    );
    setter!(
        /// Size at which the active memtable becomes immutable and is flushed to a level-0
        /// table. Default 64 MiB (RocksDB `write_buffer_size`).
        memtable_size: usize
    );
    setter!(
        /// How many full memtables may wait for flush before writers stall. Default 2
        /// (RocksDB `max_write_buffer_number` - 1).
        max_immutable_memtables: usize
    );
    setter!(
        /// The most log bytes a recovery may have to replay (RocksDB `max_total_wal_size`).
        /// When the live logs (the active one and those of memtables waiting for flush)
        /// reach it, the active memtable is switched early if nothing waits for flush, and
        /// otherwise writers wait for a flush to retire a log ([`StallCause::WalLimit`](crate::StallCause::WalLimit)).
        /// Default 192 MiB: (`max_immutable_memtables` + 1) × `memtable_size` with the
        /// defaults, so it binds only when those grow; a reopen after kill -9 then replays at
        /// most that (about 2 s here, `docs/benchmarks.md`).
        ///
        /// ```
        /// use strata::Options;
        /// // Large memtables, but no more than 128 MiB of log to replay after a crash.
        /// let opts = Options::default().memtable_size(256 << 20).max_total_wal_size(128 << 20);
        /// # let _ = opts;
        /// ```
        max_total_wal_size: u64
    );
    setter!(
        /// Target uncompressed size of table data blocks. Default 4 KiB (RocksDB
        /// `block_size`).
        block_size: usize
    );
    setter!(
        /// Block compression of tables (RocksDB `compression`). Default LZ4: a point read
        /// whose block is not in the block cache decompresses it, and LZ4 does that several
        /// times faster than zstd (half the instructions per block here), for a few percent
        /// more bytes on disk (`docs/benchmarks.md`, "The point-read path": space
        /// amplification 0.88 → 0.92 at 1M random keys). Zstd suits cold data where space
        /// matters more than read latency:
        ///
        /// ```
        /// use strata::{Compression, Options};
        /// assert_eq!(Options::default().compression_for_level(1), Compression::Lz4);
        /// let small = Options::default().compression(Compression::Zstd { level: 3 });
        /// assert_eq!(small.compression_for_level(1), Compression::Zstd { level: 3 });
        /// ```
        compression: Compression
    );
    setter!(
        /// Block compression per level, overriding [`Options::compression`]: level `i`
        /// uses entry `i`, and levels past the end use the last entry. Empty (the default)
        /// means [`Options::compression`] everywhere (RocksDB `compression_per_level`).
        ///
        /// Level 0 holds freshly flushed tables that compaction soon rewrites, so leaving it
        /// uncompressed takes the compressor off the flush, the one background job that
        /// every write waits on when memtables pile up:
        ///
        /// ```
        /// use strata::{Compression, Options};
        /// let opts = Options::default()
        ///     .compression_per_level(vec![Compression::None, Compression::Zstd { level: 1 }]);
        /// assert_eq!(opts.compression_for_level(0), Compression::None);
        /// assert_eq!(opts.compression_for_level(6), Compression::Zstd { level: 1 });
        /// ```
        compression_per_level: Vec<Compression>
    );
    setter!(
        /// Bloom filter bits per key in tables; 10 gives about 1% false positives, 0
        /// disables the filter. Default 10.
        bloom_bits_per_key: u32
    );
    setter!(
        /// Capacity in bytes of the block cache shared by all tables (decompressed blocks).
        /// Default 64 MiB.
        block_cache_size: usize
    );
    setter!(
        /// What recovery does with a damaged log record that valid records follow: refuse
        /// to open ([`RecoveryMode::Strict`], the default) or keep everything before it
        /// ([`RecoveryMode::PointInTime`]). A torn record at the very end of the newest log
        /// is always dropped and counted: it was never acknowledged.
        recovery_mode: RecoveryMode
    );
    setter!(
        /// Level-0 table count that triggers a compaction into level 1. Default 4.
        l0_compaction_trigger: usize
    );
    setter!(
        /// Level-0 table count at which each write is delayed. Default 20.
        l0_slowdown_trigger: usize
    );
    setter!(
        /// Level-0 table count at which writes stop until compaction catches up. Default 36.
        l0_stop_trigger: usize
    );
    setter!(
        /// Target size of level 1. Default 256 MiB (RocksDB `max_bytes_for_level_base`).
        level_base_bytes: u64
    );
    setter!(
        /// Each level's target is this many times the one above. Default 10.
        level_multiplier: u64
    );
    setter!(
        /// Size at which compaction output is split into a new table. Default 64 MiB.
        target_file_size: u64
    );
    setter!(
        /// Upper bound on compaction write bandwidth in bytes per second. Default none.
        compaction_rate_limit: Option<u64>
    );
    setter!(
        /// Depth of the bounded queue in front of `write_async`. Default 1024 batches.
        write_queue_depth: usize
    );
    setter!(
        /// Every this many bytes written to the log, ask the OS to start writing them to
        /// disk (`sync_file_range`, without waiting), so that the log's sync when its
        /// memtable is switched out, which holds up writers, finds little left to write.
        /// Not a durability setting: what a write's [`Durability`] promises is unchanged.
        /// 0 turns it off. Default 1 MiB (RocksDB `wal_bytes_per_sync`, there default off).
        wal_bytes_per_sync: u64
    );
    setter!(
        /// Memory for the keys written while transactions are open, kept to validate their
        /// commits ([`crate::Transaction`]; each write costs twice its key plus about 64
        /// bytes). A transaction open while more than this was recorded after its snapshot
        /// fails its commit with [`crate::Error::Conflict`]
        /// (retry it), so a forgotten transaction costs bounded memory and never blocks
        /// flushes or compactions. Default 16 MiB.
        transaction_history_bytes: usize
    );

    /// The file system the database lives on (see [`crate::fs`]). Default: the real one,
    /// [`OsFileSystem`](crate::fs::OsFileSystem); crash tests pass the simulated one
    /// (`strata::fs::sim::SimFileSystem`, cargo feature `sim`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use strata::fs::{FileSystem, OsFileSystem};
    /// use strata::Options;
    /// let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
    /// let opts = Options::default().file_system(fs);
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.fs = fs;
        self
    }

    /// The configured memtable size in bytes.
    pub fn memtable_bytes(&self) -> usize {
        self.memtable_size
    }

    /// The configured default durability.
    pub fn default_durability(&self) -> Durability {
        self.durability
    }

    /// The compression of tables written to `level` (see
    /// [`Options::compression_per_level`]).
    pub fn compression_for_level(&self, level: usize) -> Compression {
        match self.compression_per_level.as_slice() {
            [] => self.compression,
            levels => levels[level.min(levels.len() - 1)],
        }
    }

    /// The shape of the tree these options ask for, as the compaction policy takes it.
    pub(crate) fn compaction_config(&self) -> strata_compaction::CompactionConfig {
        strata_compaction::CompactionConfig {
            l0_compaction_trigger: self.l0_compaction_trigger,
            level_base_bytes: self.level_base_bytes,
            level_multiplier: self.level_multiplier,
            target_file_size: self.target_file_size,
            max_grandparent_overlap: self.target_file_size.saturating_mul(10),
            ..strata_compaction::CompactionConfig::default()
        }
    }

    /// The options of tables written to `level`.
    pub(crate) fn table_options(&self, level: usize) -> strata_sstable::TableOptions {
        strata_sstable::TableOptions::default()
            .with_block_size(self.block_size)
            .with_compression(self.compression_for_level(level))
            .with_bloom_bits_per_key(self.bloom_bits_per_key)
    }

    /// Checks every rule on the options, each written once: here for the engine's own, in
    /// the table and compaction crates for theirs ([`strata_sstable::TableOptions::validate`],
    /// [`strata_compaction::CompactionConfig::validate`]), and [`check_durability`].
    pub(crate) fn validate(&self) -> strata_core::Result<()> {
        let bad = |m: &str| Err(strata_core::Error::InvalidArgument(m.to_string()));
        if self.memtable_size < 4096 {
            return bad("memtable_size must be at least 4 KiB");
        }
        if self.max_total_wal_size == 0 {
            return bad("max_total_wal_size must be at least 1");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        if self.block_size < 64 {
            return bad("block_size must be at least 64 bytes");
        }
        if self.l0_compaction_trigger == 0
            || self.l0_slowdown_trigger < self.l0_compaction_trigger
            || self.l0_stop_trigger < self.l0_slowdown_trigger
        {
            return bad("need 0 < l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger");
        }
        for level in 0..strata_compaction::NUM_LEVELS {
            self.table_options(level).validate()?;
        }
        // Stricter than the policy's own rule (> 0): a multiplier of 1 makes every level the
        // same size, so nothing ever settles at the bottom.
        if self.level_multiplier < 2 {
            return bad("level_multiplier must be at least 2");
        }
        self.compaction_config().validate()?;
        check_durability(self.durability)
    }
}

/// The one rule on a [`Durability`], for the default of [`Options::durability`] (at open) and
/// for the durability a write names (at the write): a `Periodic` interval must not be zero.
pub(crate) fn check_durability(durability: Durability) -> strata_core::Result<()> {
    match durability {
        Durability::Periodic(every) if every.is_zero() => Err(strata_core::Error::InvalidArgument(
            "Durability::Periodic needs a non-zero interval".into(),
        )),
        _ => Ok(()),
    }
}

/// How one write is made: its [`Durability`] (or the database's default) and whether it may
/// wait for backpressure. `Default` is the database's default durability, waiting allowed;
/// a [`Durability`] converts into the options that name it, so
/// `db.write_with(batch, Durability::Sync)` reads as it says.
///
/// `no_wait` is RocksDB's `no_slowdown`: where the write would wait for the engine to catch
/// up — a synchronous write stalled because the memtables waiting for flush are at
/// [`Options::max_immutable_memtables`] or level 0 has reached
/// [`Options::l0_slowdown_trigger`] / [`Options::l0_stop_trigger`]; an asynchronous write
/// facing a full submission queue ([`Options::write_queue_depth`]) — it fails with
/// [`Error::Busy`](crate::Error::Busy) instead, having logged and applied nothing. Waiting for
/// the log itself (a `Sync` write's `fdatasync`, a group commit) is not backpressure and
/// still happens.
///
/// ```
/// use strata::{Db, Durability, Error, Options, WriteBatch, WriteOptions};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put_with("k", "v", Durability::Sync)?; // a Durability is a WriteOptions
/// let mut batch = WriteBatch::new();
/// batch.put("a", "1");
/// match db.write_with(batch, WriteOptions::default().durability(Durability::Sync).no_wait(true)) {
///     Ok(()) => {}
///     Err(Error::Busy) => { /* the engine is behind: shed load, retry later */ }
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WriteOptions {
    pub(crate) durability: Option<Durability>,
    pub(crate) no_wait: bool,
}

impl WriteOptions {
    /// The durability of this write; without it, the database's
    /// [`Options::durability`] applies.
    ///
    /// ```
    /// use strata::{Durability, WriteOptions};
    /// let opts = WriteOptions::default().durability(Durability::Sync);
    /// assert_eq!(opts.durability_override(), Some(Durability::Sync));
    /// assert_eq!(opts, WriteOptions::from(Durability::Sync));
    /// ```
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Fail with [`Error::Busy`](crate::Error::Busy) instead of waiting for backpressure (see
    /// [`WriteOptions`]). Default `false`.
    ///
    /// ```
    /// use strata::WriteOptions;
    /// assert!(WriteOptions::default().no_wait(true).is_no_wait());
    /// assert!(!WriteOptions::default().is_no_wait());
    /// ```
    #[must_use]
    pub fn no_wait(mut self, no_wait: bool) -> Self {
        self.no_wait = no_wait;
        self
    }

    /// The durability this write names, `None` for the database's default.
    ///
    /// ```
    /// use strata::WriteOptions;
    /// assert_eq!(WriteOptions::default().durability_override(), None);
    /// ```
    pub fn durability_override(&self) -> Option<Durability> {
        self.durability
    }

    /// Whether the write fails with [`Error::Busy`](crate::Error::Busy) rather than wait.
    ///
    /// ```
    /// use strata::WriteOptions;
    /// assert!(!WriteOptions::default().is_no_wait());
    /// ```
    pub fn is_no_wait(&self) -> bool {
        self.no_wait
    }

    /// The durability this write gets in a database whose default is `default`, checked
    /// (for the entry points that refuse a write before queueing it).
    pub(crate) fn resolve(&self, default: Durability) -> strata_core::Result<Durability> {
        let durability = self.durability.unwrap_or(default);
        check_durability(durability)?;
        Ok(durability)
    }

    /// What the commit pipeline is told, in a database whose default durability is
    /// `default` (the write path checks the durability itself).
    pub(crate) fn mode(&self, default: Durability) -> crate::commit::CommitMode {
        crate::commit::CommitMode {
            durability: self.durability.unwrap_or(default),
            no_wait: self.no_wait,
        }
    }
}

impl From<Durability> for WriteOptions {
    /// The options of a write with `durability`, waiting allowed.
    ///
    /// ```
    /// use strata::{Durability, WriteOptions};
    /// let opts: WriteOptions = Durability::None.into();
    /// assert_eq!(opts.durability_override(), Some(Durability::None));
    /// ```
    fn from(durability: Durability) -> Self {
        WriteOptions::default().durability(durability)
    }
}
