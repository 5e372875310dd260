//! [`BlockCache`]: verified, decompressed blocks shared by every table of a database.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::block::Block;

/// Bytes charged per entry on top of the bytes it owns (key, handle, bookkeeping).
const ENTRY_OVERHEAD: u64 = 64;

/// Cache key: (the opened table's process-unique cache id, block offset).
pub(crate) type CacheKey = (u64, u64);

/// A cached block and the bytes of memory it owns.
#[derive(Clone)]
pub(crate) struct CachedBlock {
    pub block: Block,
    /// Heap bytes the block owns: its length for a decompressed block; 0 for an
    /// uncompressed block, which is a view of the file mapping (the OS page cache's memory).
    pub owned_bytes: u64,
}

#[derive(Clone)]
struct BlockWeighter;

impl Weighter<CacheKey, CachedBlock> for BlockWeighter {
    fn weight(&self, _key: &CacheKey, val: &CachedBlock) -> u64 {
        val.owned_bytes + ENTRY_OVERHEAD
    }
}

/// A cache of blocks that passed their checksum, bounded in bytes and shared by all tables
/// of a database (`Arc<BlockCache>`), with hit and miss counters.
///
/// Eviction is quick_cache's CLOCK-Pro-like policy (scan resistant: a full scan does not
/// flush the hot blocks of point lookups). A decompressed block is charged its length plus
/// a small per-entry overhead; an uncompressed block is a zero-copy view of its table's file
/// mapping and is charged only the overhead, since its bytes live in the OS page cache.
/// Caching those views still pays: a hit skips re-verifying the block's CRC.
///
/// ```
/// use strata_sstable::BlockCache;
/// let cache = BlockCache::new(8 << 20);
/// assert_eq!(cache.capacity(), 8 << 20);
/// assert_eq!((cache.hits(), cache.misses(), cache.usage_bytes()), (0, 0, 0));
/// ```
pub struct BlockCache {
    cache: Cache<CacheKey, CachedBlock, BlockWeighter>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("usage_bytes", &self.usage_bytes())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most about `capacity_bytes` bytes of blocks.
    pub fn new(capacity_bytes: usize) -> Arc<BlockCache> {
        let estimated_items = (capacity_bytes / 4096).max(16);
        Arc::new(BlockCache {
            cache: Cache::with_weighter(estimated_items, capacity_bytes as u64, BlockWeighter),
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    /// Lookups that had to read (and verify) the block from its file.
    pub fn misses(&self) -> u64 {
        self.misses.load(Relaxed)
    }

    /// Bytes currently charged to cached blocks.
    pub fn usage_bytes(&self) -> usize {
        self.cache.weight() as usize
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether no block is cached.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Option<Block> {
        match self.cache.get(key) {
            Some(c) => {
                self.hits.fetch_add(1, Relaxed);
                Some(c.block)
            }
            None => {
                self.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    pub(crate) fn insert(&self, key: CacheKey, block: Block, owned: bool) {
        let owned_bytes = if owned { block.len() as u64 } else { 0 };
        self.cache.insert(key, CachedBlock { block, owned_bytes });
    }

    /// Drops one block (a table being dropped forgets its blocks, so that cached views of
    /// its mapping do not keep a deleted file's mapping alive).
    pub(crate) fn remove(&self, key: &CacheKey) {
        self.cache.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn block(len: usize) -> Block {
        // One entry (all-zero header) padded to `len`, one restart at 0.
        let mut b = vec![0u8, 0, 0];
        b.resize(len.max(3), 0);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        Block::new(Bytes::from(b)).unwrap()
    }

    #[test]
    fn usage_is_bounded_and_counters_move() {
        let cache = BlockCache::new(64 << 10);
        for i in 0..100u64 {
            cache.insert((1, i), block(4096), true);
            assert!(cache.usage_bytes() <= cache.capacity());
        }
        assert!(cache.len() < 100);
        let present = (0..100u64).filter(|&i| cache.get(&(1, i)).is_some()).count() as u64;
        assert_eq!((cache.hits(), cache.misses()), (present, 100 - present));
        // Views of a mapping are charged only the overhead.
        let views = BlockCache::new(64 << 10);
        views.insert((2, 0), block(1 << 20), false);
        assert_eq!(views.usage_bytes() as u64, ENTRY_OVERHEAD);
    }

    #[test]
    fn zero_capacity_cache_caches_nothing_and_does_not_panic() {
        let cache = BlockCache::new(0);
        cache.insert((1, 0), block(100), true);
        assert!(cache.get(&(1, 0)).is_none());
        assert_eq!(cache.usage_bytes(), 0);
    }
}
