//! [`Index`]: a table's index block, decoded once when the table opens.
//!
//! The on-disk index block (see `docs/format/sstable.md`) stores one entry per data block:
//! the block's last internal key and its handle as two varints. Searching it in place costs
//! a varint decode and a bounds check per comparison, on every point lookup; decoded, the
//! keys sit back to back in one buffer and the handles in a flat array, so a lookup is a
//! plain binary search over slices. The decoded form takes about as much memory as the
//! block itself (the varints become 12 fixed bytes per block, a few per mille of the data).
//!
//! Beside the keys, each separator's 8 user-key bytes after the prefix all separators share
//! are kept as a big-endian `u64` in an array of their own: the binary search compares
//! those words, which sit in a few cache lines, and reads a whole key only when the words
//! tie. (Skipping the shared prefix matters: keys like db_bench's, or `tenant/…`, agree on
//! their first bytes across a whole table.)

use std::cmp::Ordering;

use strata_core::key::{compare_internal, user_key};

use crate::block::{Block, BlockIter};
use crate::format::{BlockHandle, MAX_BLOCK_LEN};

/// One data block: where its separator key ends in [`Index::keys`], and its handle.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    offset: u64,
    /// Stored size of the block; a decoded handle above [`MAX_BLOCK_LEN`] is rejected, so
    /// it fits in 32 bits.
    size: u32,
    key_end: u32,
}

/// The decoded index of a table: separator keys (each data block's last key, in increasing
/// [`compare_internal`] order) and block handles.
#[derive(Debug, Default)]
pub(crate) struct Index {
    keys: Vec<u8>,
    entries: Vec<IndexEntry>,
    /// The user-key prefix every separator starts with.
    shared: Vec<u8>,
    /// [`word_after`] `shared.len()` of each separator, parallel to `entries`.
    words: Vec<u64>,
}

/// The 8 bytes of `user_key` from `skip` on as a big-endian word, zero-padded. For two
/// keys that agree on their first `skip` bytes, `word_after(a) < word_after(b)` implies
/// `a < b` in [`compare_internal`] order (the first differing padded byte is either a real
/// byte of both, or a pad byte of `a` where `b` goes on — then `a`'s user key is a proper
/// prefix of `b`'s); equal words decide nothing.
fn word_after(user_key: &[u8], skip: usize) -> u64 {
    let rest = user_key.get(skip..).unwrap_or_default();
    let mut word = [0u8; 8];
    let n = rest.len().min(8);
    word[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(word)
}

impl Index {
    /// Decodes a (CRC-verified) index block; the error is a reason and the byte offset
    /// inside the block.
    pub fn decode(block: Block) -> Result<Index, (&'static str, usize)> {
        let mut index = Index::default();
        let mut it = BlockIter::new(block);
        it.seek_to_first();
        while it.valid() {
            let handle = BlockHandle::decode_varint(it.value())
                .ok_or(("malformed block handle in index", it.position()))?;
            let size = u32::try_from(handle.size)
                .ok()
                .filter(|&s| s as usize <= MAX_BLOCK_LEN)
                .ok_or(("index names a block larger than the format allows", it.position()))?;
            index.keys.extend_from_slice(it.key());
            let key_end = u32::try_from(index.keys.len())
                .map_err(|_| ("index keys exceed 4 GiB", it.position()))?;
            index.entries.push(IndexEntry { offset: handle.offset, size, key_end });
            it.next();
        }
        if let Some(corruption) = it.corruption() {
            return Err(corruption);
        }
        index.keys.shrink_to_fit();
        index.entries.shrink_to_fit();
        // Separators are sorted: what the first and last share, all share.
        if !index.entries.is_empty() {
            let first = user_key(index.key(0));
            let last = user_key(index.key(index.len() - 1));
            let shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
            index.shared = first[..shared].to_vec();
        }
        let skip = index.shared.len();
        index.words = (0..index.len()).map(|i| word_after(user_key(index.key(i)), skip)).collect();
        Ok(index)
    }

    /// Number of data blocks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The separator key of block `i` (`i < len()`).
    pub fn key(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |p| self.entries[p].key_end as usize);
        &self.keys[start..self.entries[i].key_end as usize]
    }

    /// The handle of block `i` (`i < len()`).
    pub fn handle(&self, i: usize) -> BlockHandle {
        let e = self.entries[i];
        BlockHandle { offset: e.offset, size: u64::from(e.size) }
    }

    /// The first block whose separator is `>= target` — the only block that can hold the
    /// first entry `>= target` — or `len()` if every separator is smaller.
    pub fn seek(&self, target: &[u8]) -> usize {
        let user = user_key(target);
        let skip = self.shared.len();
        if user.get(..skip) != Some(&self.shared[..]) {
            // Every separator starts with `shared`; a target that does not is below or
            // above them all.
            return if user < &self.shared[..] { 0 } else { self.len() };
        }
        let target_word = word_after(user, skip);
        let (mut lo, mut hi) = (0usize, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let order = match self.words[mid].cmp(&target_word) {
                Ordering::Equal => {
                    let start = mid.checked_sub(1).map_or(0, |p| self.entries[p].key_end as usize);
                    let end = self.entries[mid].key_end as usize;
                    // key_end values only grow, so start <= end <= keys.len().
                    compare_internal(self.keys.get(start..end).unwrap_or_default(), target)
                }
                decided => decided,
            };
            if order.is_lt() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.keys.capacity()
            + self.entries.capacity() * std::mem::size_of::<IndexEntry>()
            + self.shared.capacity()
            + self.words.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockBuilder;
    use bytes::Bytes;
    use strata_core::key::{InternalKey, ValueKind};

    fn key(i: u32) -> Vec<u8> {
        InternalKey::new(format!("k{i:04}").as_bytes(), 5, ValueKind::Put).into_encoded()
    }

    fn index_of(n: u32, interval: usize) -> Index {
        let mut b = BlockBuilder::new(interval);
        for i in 0..n {
            let mut handle = Vec::new();
            BlockHandle { offset: u64::from(i) * 100, size: 90 }.encode_varint(&mut handle);
            b.add(&key(i * 2), &handle);
        }
        Index::decode(Block::new(Bytes::copy_from_slice(b.finish())).unwrap()).unwrap()
    }

    #[test]
    fn seek_finds_the_first_separator_at_or_above_the_target() {
        // Interval > 1 too: other writers may share key prefixes in the index.
        for interval in [1, 3] {
            for n in [0u32, 1, 2, 7, 64] {
                let index = index_of(n, interval);
                assert_eq!(index.len(), n as usize);
                for i in 0..n as usize {
                    assert_eq!(index.key(i), key(i as u32 * 2));
                    assert_eq!(index.handle(i), BlockHandle { offset: i as u64 * 100, size: 90 });
                }
                for t in 0..2 * n + 2 {
                    assert_eq!(index.seek(&key(t)), (t.div_ceil(2) as usize).min(n as usize));
                }
            }
        }
    }

    #[test]
    fn malformed_handles_and_huge_sizes_are_rejected() {
        let mut b = BlockBuilder::new(1);
        b.add(&key(1), &[0x80]); // a varint that never ends
        let bad = Block::new(Bytes::copy_from_slice(b.finish())).unwrap();
        assert!(Index::decode(bad).is_err());
        let mut b = BlockBuilder::new(1);
        let mut handle = Vec::new();
        BlockHandle { offset: 0, size: 1 << 40 }.encode_varint(&mut handle);
        b.add(&key(1), &handle);
        let huge = Block::new(Bytes::copy_from_slice(b.finish())).unwrap();
        assert!(Index::decode(huge).is_err());
    }

    proptest::proptest! {
        /// The word comparison never changes the answer of a plain binary search, for keys
        /// that are short, share prefixes, hold zero bytes or differ only in sequence.
        #[test]
        fn seek_agrees_with_a_plain_search(
            users in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..11), 1..40),
            targets in proptest::collection::vec(
                (proptest::collection::vec(0u8..3, 0..11), 0u64..4, proptest::bool::ANY), 1..20),
            shared in proptest::collection::vec(0u8..3, 0..6),
        ) {
            // A prefix every separator shares, and targets with and without it.
            let with_shared = |u: &Vec<u8>| [&shared[..], u].concat();
            let mut users: Vec<Vec<u8>> = users.iter().map(with_shared).collect();
            users.sort();
            users.dedup();
            let keys: Vec<Vec<u8>> =
                users.iter().map(|u| InternalKey::new(u, 2, ValueKind::Put).into_encoded()).collect();
            let mut b = BlockBuilder::new(2);
            for (i, k) in keys.iter().enumerate() {
                let mut handle = Vec::new();
                BlockHandle { offset: i as u64, size: 1 }.encode_varint(&mut handle);
                b.add(k, &handle);
            }
            let index = Index::decode(Block::new(Bytes::copy_from_slice(b.finish())).unwrap()).unwrap();
            for (user, seq, prefixed) in targets {
                let user = if prefixed { with_shared(&user) } else { user };
                let target = InternalKey::new(&user, seq, ValueKind::Put).into_encoded();
                let want = keys.partition_point(|k| compare_internal(k, &target).is_lt());
                proptest::prop_assert_eq!(index.seek(&target), want);
            }
        }
    }
}
