//! Blocks: sorted entries with shared-prefix key compression and restart points.
//!
//! ```text
//! entry   := varint shared | varint unshared | varint value_len | key[shared..] | value
//! block   := entry* | restart offsets (u32 LE each) | num_restarts (u32 LE)
//! ```
//! Every `restart_interval`-th entry is a restart point: it stores its whole key
//! (`shared == 0`) and its offset is listed in the restart array, so a seek can binary
//! search the restarts and then scan at most one interval. Data and index blocks share this
//! layout; only what a value means differs.

use std::cmp::Ordering;
use std::ops::Range;

use bytes::Bytes;
use strata_core::coding::{put_varint, Decoder};
use strata_core::key::compare_internal;

/// Accumulates sorted entries into one block's raw bytes.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    since_restart: usize,
    restart_interval: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            since_restart: 0,
            restart_interval: restart_interval.max(1),
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Appends an entry; the caller guarantees keys arrive in increasing order and that the
    /// block stays under `MAX_BLOCK_LEN` (so offsets fit in u32).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.since_restart >= self.restart_interval {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            self.last_key.iter().zip(key).take_while(|(a, b)| a == b).count()
        };
        let unshared = &key[shared..];
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, unshared.len() as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(unshared);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(unshared);
        self.since_restart += 1;
        self.entries += 1;
    }

    /// Size of the block if finished now.
    pub fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Appends the restart array and returns the finished block; call `reset` before reuse.
    pub fn finish(&mut self) -> &[u8] {
        let restarts: &[u32] = if self.entries == 0 { &[] } else { &self.restarts };
        for r in restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.buf.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        &self.buf
    }

    pub fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.restarts.push(0);
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
    }
}

/// A verified, decompressed block: shared bytes (a zero-copy view of the file mapping, or
/// an owned decompressed buffer) plus the validated position of its restart array.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    data: Bytes,
    restarts_offset: usize,
    num_restarts: usize,
}

impl Block {
    /// Checks the restart array's bounds; entries are checked as they are decoded.
    pub fn new(data: Bytes) -> Result<Block, &'static str> {
        let len = data.len();
        let count_at = len.checked_sub(4).ok_or("block shorter than its restart count")?;
        let count = data.get(count_at..).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        let num_restarts = count.ok_or("block shorter than its restart count")? as usize;
        let array_len = num_restarts.checked_mul(4).ok_or("restart count overflows")?;
        let restarts_offset =
            count_at.checked_sub(array_len).ok_or("restart array larger than the block")?;
        if num_restarts == 0 && restarts_offset != 0 {
            return Err("block has entries but no restart points");
        }
        Ok(Block { data, restarts_offset, num_restarts })
    }

    /// Bytes of memory the block owns (for cache accounting).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// A zero-copy shared slice of the block (a value range from [`Block::seek_point`]).
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        self.data.get(range.clone()).map_or_else(Bytes::new, |_| self.data.slice(range))
    }

    fn restart_point(&self, i: usize) -> Option<usize> {
        if i >= self.num_restarts {
            return None;
        }
        let at = self.restarts_offset + 4 * i;
        let bytes = self.data.get(at..at + 4)?;
        let offset = u32::from_le_bytes(bytes.try_into().ok()?) as usize;
        (offset < self.restarts_offset).then_some(offset)
    }

    /// The entry starting at `offset`: (shared, unshared key bytes, value range, next offset).
    #[inline]
    fn decode_entry(&self, offset: usize) -> Option<(usize, &[u8], Range<usize>, usize)> {
        let mut d = Decoder::new(self.data.get(offset..self.restarts_offset)?);
        let (shared, unshared, value_len) = match d.clone().bytes(3)? {
            // Fast path: all three lengths below 128 take one byte each (the common case
            // for small keys and values); `Decoder::varint` handles everything else.
            &[a, b, c] if (a | b | c) < 0x80 => {
                d.bytes(3)?;
                (usize::from(a), usize::from(b), usize::from(c))
            }
            _ => (
                usize::try_from(d.varint()?).ok()?,
                usize::try_from(d.varint()?).ok()?,
                usize::try_from(d.varint()?).ok()?,
            ),
        };
        let key = d.bytes(unshared)?;
        let value_start = offset + d.offset();
        d.bytes(value_len)?;
        let end = offset + d.offset();
        Some((shared, key, value_start..end, end))
    }

    /// The full key stored at restart point `i` (restart entries share nothing).
    fn restart_key(&self, i: usize) -> Option<&[u8]> {
        let (shared, key, _, _) = self.decode_entry(self.restart_point(i)?)?;
        (shared == 0).then_some(key)
    }

    /// The last restart interval whose first key is `< target` (0 if none is): where the
    /// first entry `>= target` can start. Errors name a malformed restart entry.
    fn restart_before(&self, target: &[u8]) -> Result<usize, (&'static str, usize)> {
        let (mut left, mut right) = (0usize, self.num_restarts.saturating_sub(1));
        while left < right {
            let mid = left + (right - left).div_ceil(2);
            let Some(key) = self.restart_key(mid) else {
                return Err(("malformed restart entry", self.restart_point(mid).unwrap_or(0)));
            };
            if compare_internal(key, target) == Ordering::Less {
                left = mid;
            } else {
                right = mid - 1;
            }
        }
        Ok(left)
    }

    /// A point lookup: the first entry with key `>= target` in [`compare_internal`] order,
    /// its key left in `key` and its value's byte range returned; `None` if every entry is
    /// smaller. The same answer as [`BlockIter::seek`], without a cursor's bookkeeping
    /// (no restart tracking per entry, the caller's key buffer reused). Errors are a reason
    /// and a byte offset inside the block, as [`BlockIter::corruption`] reports them.
    pub fn seek_point(
        &self,
        target: &[u8],
        key: &mut Vec<u8>,
    ) -> Result<Option<Range<usize>>, (&'static str, usize)> {
        key.clear();
        if self.num_restarts == 0 {
            return Ok(None);
        }
        let restart = self.restart_before(target)?;
        let Some(mut offset) = self.restart_point(restart) else {
            return Err(("restart point out of range", self.restarts_offset));
        };
        while offset < self.restarts_offset {
            let Some((shared, unshared, value, next)) = self.decode_entry(offset) else {
                return Err(("malformed block entry", offset));
            };
            if shared > key.len() {
                return Err(("entry shares more key bytes than the previous key has", offset));
            }
            key.truncate(shared);
            key.extend_from_slice(unshared);
            if compare_internal(key, target) != Ordering::Less {
                return Ok(Some(value));
            }
            offset = next;
        }
        Ok(None)
    }
}

/// A bidirectional cursor over one [`Block`]. Malformed entries make it invalid and are
/// reported by [`BlockIter::corruption`] (reason and byte offset inside the block).
#[derive(Debug)]
pub(crate) struct BlockIter {
    block: Block,
    /// Offset of the current entry; `restarts_offset` when not on an entry.
    current: usize,
    /// Offset just past the current entry (where `parse_next` reads).
    next: usize,
    /// The restart interval holding `current`.
    restart_index: usize,
    key: Vec<u8>,
    value: Range<usize>,
    corruption: Option<(&'static str, usize)>,
}

impl BlockIter {
    pub fn new(block: Block) -> Self {
        let end = block.restarts_offset;
        BlockIter {
            block,
            current: end,
            next: end,
            restart_index: 0,
            key: Vec::new(),
            value: 0..0,
            corruption: None,
        }
    }

    /// Reuses this iterator (and its key buffer) for another block.
    pub fn reset(&mut self, block: Block) {
        self.current = block.restarts_offset;
        self.next = block.restarts_offset;
        self.block = block;
        self.restart_index = 0;
        self.key.clear();
        self.value = 0..0;
        self.corruption = None;
    }

    pub fn valid(&self) -> bool {
        self.corruption.is_none() && self.current < self.block.restarts_offset
    }

    pub fn corruption(&self) -> Option<(&'static str, usize)> {
        self.corruption
    }

    /// Byte offset of the current entry inside the block (for error messages).
    pub fn position(&self) -> usize {
        self.current
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn value(&self) -> &[u8] {
        self.block.data.get(self.value.clone()).unwrap_or_default()
    }

    /// The current value as a zero-copy shared slice.
    pub fn value_bytes(&self) -> Bytes {
        self.block.data.slice(self.value.clone())
    }

    pub fn invalidate(&mut self) {
        self.current = self.block.restarts_offset;
        self.next = self.block.restarts_offset;
    }

    fn fail(&mut self, reason: &'static str, at: usize) {
        self.corruption = Some((reason, at));
        self.invalidate();
    }

    fn seek_to_restart(&mut self, i: usize) {
        self.key.clear();
        self.restart_index = i;
        match self.block.restart_point(i) {
            Some(off) => self.next = off,
            None => self.fail("restart point out of range", self.block.restarts_offset),
        }
    }

    /// Decodes the entry at `next`; returns whether the iterator is on an entry.
    fn parse_next(&mut self) -> bool {
        if self.corruption.is_some() {
            return false;
        }
        self.current = self.next;
        if self.current >= self.block.restarts_offset {
            self.invalidate();
            return false;
        }
        let Some((shared, unshared, value, next)) = self.block.decode_entry(self.current) else {
            self.fail("malformed block entry", self.current);
            return false;
        };
        if shared > self.key.len() {
            self.fail("entry shares more key bytes than the previous key has", self.current);
            return false;
        }
        self.key.truncate(shared);
        self.key.extend_from_slice(unshared);
        self.value = value;
        self.next = next;
        while self.restart_index + 1 < self.block.num_restarts {
            match self.block.restart_point(self.restart_index + 1) {
                Some(r) if r <= self.current => self.restart_index += 1,
                Some(_) => break,
                None => {
                    self.fail("restart point out of range", self.block.restarts_offset);
                    return false;
                }
            }
        }
        true
    }

    pub fn seek_to_first(&mut self) {
        if self.block.num_restarts == 0 {
            self.invalidate();
            return;
        }
        self.seek_to_restart(0);
        self.parse_next();
    }

    pub fn seek_to_last(&mut self) {
        let Some(last) = self.block.num_restarts.checked_sub(1) else {
            self.invalidate();
            return;
        };
        self.seek_to_restart(last);
        while self.parse_next() && self.next < self.block.restarts_offset {}
    }

    pub fn next(&mut self) {
        self.parse_next();
    }

    pub fn prev(&mut self) {
        let original = self.current;
        // Back up to the restart interval that starts before the current entry.
        loop {
            match self.block.restart_point(self.restart_index) {
                Some(r) if r < original => break,
                Some(_) if self.restart_index == 0 => {
                    self.invalidate();
                    return;
                }
                Some(_) => self.restart_index -= 1,
                None => {
                    self.fail("restart point out of range", self.block.restarts_offset);
                    return;
                }
            }
        }
        self.seek_to_restart(self.restart_index);
        while self.parse_next() && self.next < original {}
        if self.valid() && self.next != original {
            self.fail("entries do not chain back to the current entry", self.current);
        }
    }

    /// Moves to the first entry with key `>= target` in [`compare_internal`] order.
    pub fn seek(&mut self, target: &[u8]) {
        if self.block.num_restarts == 0 {
            self.invalidate();
            return;
        }
        let left = match self.block.restart_before(target) {
            Ok(left) => left,
            Err((reason, at)) => return self.fail(reason, at),
        };
        self.seek_to_restart(left);
        while self.parse_next() {
            if compare_internal(&self.key, target) != Ordering::Less {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::key::{InternalKey, ValueKind};

    fn key(i: u32) -> Vec<u8> {
        InternalKey::new(format!("key{i:05}").as_bytes(), 7, ValueKind::Put).into_encoded()
    }

    fn build(n: u32, interval: usize) -> Block {
        let mut b = BlockBuilder::new(interval);
        for i in 0..n {
            b.add(&key(i * 2), format!("v{i}").as_bytes());
        }
        Block::new(Bytes::copy_from_slice(b.finish())).unwrap()
    }

    #[test]
    fn seek_next_prev_agree_with_the_entries() {
        for interval in [1, 2, 16] {
            for n in [0u32, 1, 5, 33] {
                let mut it = BlockIter::new(build(n, interval));
                it.seek_to_first();
                let mut forward = Vec::new();
                while it.valid() {
                    forward.push(it.key().to_vec());
                    it.next();
                }
                assert_eq!(forward, (0..n).map(|i| key(i * 2)).collect::<Vec<_>>());
                it.seek_to_last();
                let mut backward = Vec::new();
                while it.valid() {
                    backward.push(it.key().to_vec());
                    it.prev();
                }
                backward.reverse();
                assert_eq!(backward, forward);
                let mut point_key = Vec::new();
                for t in 0..2 * n + 2 {
                    it.seek(&key(t));
                    let point = it.block.seek_point(&key(t), &mut point_key).unwrap();
                    let expect = t.div_ceil(2);
                    if expect < n {
                        assert_eq!(it.key(), key(expect * 2));
                        assert_eq!(it.value(), format!("v{expect}").as_bytes());
                        assert_eq!(point_key, key(expect * 2));
                        assert_eq!(&it.block.slice(point.unwrap())[..], it.value());
                    } else {
                        assert!(!it.valid() && it.corruption().is_none());
                        assert_eq!(point, None);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Garbage blocks (as a crafted file with valid CRCs could hold) never panic, loop
        /// forever or read out of bounds: every walk ends or reports corruption.
        #[test]
        fn garbage_blocks_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            restarts in proptest::collection::vec(0u32..220, 0..6),
            target in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
        ) {
            let mut data = bytes;
            for r in &restarts {
                data.extend_from_slice(&r.to_le_bytes());
            }
            data.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
            let Ok(block) = Block::new(Bytes::from(data)) else { return Ok(()) };
            // The point lookup agrees with the cursor's seek, or both report corruption.
            let mut point_key = Vec::new();
            let point = block.seek_point(&target, &mut point_key);
            let mut seek = BlockIter::new(block.clone());
            seek.seek(&target);
            match point {
                Ok(Some(value)) => {
                    proptest::prop_assert!(seek.valid());
                    proptest::prop_assert_eq!(&point_key[..], seek.key());
                    proptest::prop_assert_eq!(&block.slice(value)[..], seek.value());
                }
                Ok(None) => proptest::prop_assert!(!seek.valid() && seek.corruption().is_none()),
                Err(_) => proptest::prop_assert!(seek.corruption().is_some()),
            }
            let mut it = BlockIter::new(block);
            for start in 0..3 {
                match start {
                    0 => it.seek_to_first(),
                    1 => it.seek_to_last(),
                    _ => it.seek(&target),
                }
                let mut steps = 0;
                while it.valid() && steps < 500 {
                    let _ = (it.key().len(), it.value().len(), it.value_bytes());
                    if start == 1 { it.prev() } else { it.next() }
                    steps += 1;
                }
                proptest::prop_assert!(steps < 500, "a walk did not end");
            }
        }
    }

    #[test]
    fn malformed_blocks_are_rejected_or_reported() {
        assert!(Block::new(Bytes::from_static(b"abc")).is_err());
        assert!(Block::new(Bytes::from_static(&[0, 0, 0, 0])).is_ok());
        assert!(Block::new(Bytes::from_static(&[1, 0, 0, 0, 200, 0, 0, 0])).is_err());
        assert!(Block::new(Bytes::from_static(&[255, 255, 255, 255])).is_err());
        // entries but zero restarts
        assert!(Block::new(Bytes::from_static(&[9, 0, 0, 0, 0])).is_err());
        // restart offset pointing past the entries
        let mut it = BlockIter::new(
            Block::new(Bytes::from_static(&[0, 0, 0, 200, 0, 0, 0, 1, 0, 0, 0])).unwrap(),
        );
        it.seek_to_first();
        assert!(!it.valid());
        assert!(it.corruption().is_some());
        // a lying value length
        let mut it = BlockIter::new(
            Block::new(Bytes::from_static(&[0, 1, 99, b'k', 0, 0, 0, 0, 1, 0, 0, 0])).unwrap(),
        );
        it.seek_to_first();
        assert!(it.corruption().is_some());
    }
}
