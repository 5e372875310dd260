//! [`TableStats`]: counters shared by the tables of a database.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Atomic counters shared (`Arc<TableStats>`) by all tables of a database.
///
/// ```
/// let stats = strata_sstable::TableStats::default();
/// assert_eq!(stats.bloom_negatives(), 0);
/// ```
#[derive(Debug, Default)]
pub struct TableStats {
    bloom_checks: AtomicU64,
    bloom_negatives: AtomicU64,
    block_reads: AtomicU64,
    block_bytes_read: AtomicU64,
    decompressed_blocks: AtomicU64,
}

impl TableStats {
    /// Point lookups that consulted a bloom filter.
    pub fn bloom_checks(&self) -> u64 {
        self.bloom_checks.load(Relaxed)
    }

    /// Point lookups the bloom filter answered "absent" (each saved an index and block read).
    pub fn bloom_negatives(&self) -> u64 {
        self.bloom_negatives.load(Relaxed)
    }

    /// Blocks read from a table file and verified against their CRC (cache misses, or every
    /// read when there is no cache).
    pub fn block_reads(&self) -> u64 {
        self.block_reads.load(Relaxed)
    }

    /// Stored bytes of those blocks.
    pub fn block_bytes_read(&self) -> u64 {
        self.block_bytes_read.load(Relaxed)
    }

    /// How many of those blocks were zstd-decompressed.
    pub fn decompressed_blocks(&self) -> u64 {
        self.decompressed_blocks.load(Relaxed)
    }

    pub(crate) fn record_bloom(&self, negative: bool) {
        self.bloom_checks.fetch_add(1, Relaxed);
        if negative {
            self.bloom_negatives.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn record_block_read(&self, stored_bytes: u64, decompressed: bool) {
        self.block_reads.fetch_add(1, Relaxed);
        self.block_bytes_read.fetch_add(stored_bytes, Relaxed);
        if decompressed {
            self.decompressed_blocks.fetch_add(1, Relaxed);
        }
    }
}
