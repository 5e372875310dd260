//! [`Table::verify`]: a full read of a table that checks everything its format promises,
//! not only what a lookup happens to touch.

use strata_core::key::{compare_internal, parse_internal_key, ValueKind};
use strata_core::{Error, Result};

use crate::block::{Block, BlockIter};
use crate::format::BlockHandle;
use crate::table::{BlockKind, Table};

/// What [`Table::verify`] read: every data block and entry of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCheck {
    /// Data blocks read and checksummed.
    pub data_blocks: u64,
    /// Entries decoded (puts and tombstones).
    pub entries: u64,
    /// Bytes of the data region covered by those blocks (all of it, on success).
    pub data_bytes: u64,
}

impl Table {
    /// Reads every data block of the table, bypassing the block cache, and checks what the
    /// format promises: the blocks tile the data region with no gap, every block's CRC
    /// matches and it decompresses, its entries are well-formed internal keys in strictly
    /// increasing order, each index entry names its block's last key, the bloom filter
    /// admits every key, and the counts, key bounds and sequence bounds agree with the
    /// properties block. The first violation is an [`Error::Corruption`] naming the file and
    /// the block's offset.
    ///
    /// ```
    /// use std::{path::Path, sync::Arc};
    /// use strata_core::fs::FileSystem;
    /// use strata_core::key::{InternalKey, ValueKind};
    /// use strata_core::sim::SimFileSystem;
    /// use strata_sstable::{Table, TableBuilder, TableOptions, TableStats};
    /// let fs = SimFileSystem::new();
    /// fs.create_dir_all(Path::new("/db"))?;
    /// let path = Path::new("/db/000002.sst");
    /// let mut b = TableBuilder::new(&fs, path, &TableOptions::default())?;
    /// for i in 0..1000u32 {
    ///     b.add(InternalKey::new(&i.to_be_bytes(), 1, ValueKind::Put).encoded(), b"v")?;
    /// }
    /// b.finish()?;
    /// let table = Table::open(&fs, path, 2, None, Arc::new(TableStats::default()))?;
    /// assert_eq!(table.verify()?.entries, 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self) -> Result<TableCheck> {
        let props = self.properties();
        let corrupt = |offset: u64, reason: String| Error::corruption(self.path(), offset, reason);
        let mut check = TableCheck::default();
        let index = self.index();
        let mut prev_key: Vec<u8> = Vec::new();
        let (mut deletions, mut min_seq, mut max_seq) = (0u64, u64::MAX, 0u64);
        let mut first_key: Option<Vec<u8>> = None;
        for i in 0..index.len() {
            let handle = index.handle(i);
            if handle.offset != check.data_bytes {
                return Err(corrupt(
                    handle.offset,
                    format!(
                        "data block starts at {}, not where the previous one ended ({})",
                        handle.offset, check.data_bytes
                    ),
                ));
            }
            let last_in_block = self.verify_block(handle, &mut prev_key, |key, kind, seq| {
                check.entries += 1;
                if kind == ValueKind::Delete {
                    deletions += 1;
                }
                min_seq = min_seq.min(seq);
                max_seq = max_seq.max(seq);
                if first_key.is_none() {
                    first_key = Some(key.to_vec());
                }
            })?;
            if last_in_block.as_deref() != Some(index.key(i)) {
                return Err(corrupt(handle.offset, "index key is not the block's last key".into()));
            }
            check.data_blocks += 1;
            check.data_bytes = handle
                .end_with_trailer()
                .ok_or_else(|| corrupt(handle.offset, "block handle overflows".into()))?;
        }
        let props_at = self.data_end;
        let mismatch = |what: &str, found: String, claimed: String| {
            corrupt(
                props_at,
                format!("the data blocks hold {found} {what}, the properties say {claimed}"),
            )
        };
        if check.data_bytes != self.data_end {
            return Err(mismatch("bytes", check.data_bytes.to_string(), self.data_end.to_string()));
        }
        if check.data_blocks != props.num_data_blocks {
            return Err(mismatch(
                "blocks",
                check.data_blocks.to_string(),
                props.num_data_blocks.to_string(),
            ));
        }
        if check.entries != props.num_entries {
            return Err(mismatch(
                "entries",
                check.entries.to_string(),
                props.num_entries.to_string(),
            ));
        }
        if deletions != props.num_deletions {
            return Err(mismatch(
                "tombstones",
                deletions.to_string(),
                props.num_deletions.to_string(),
            ));
        }
        if check.entries > 0 {
            if first_key.as_deref() != Some(&props.smallest_key[..])
                || prev_key != props.largest_key
            {
                return Err(corrupt(props_at, "key bounds disagree with the properties".into()));
            }
            if min_seq != props.smallest_seq || max_seq != props.largest_seq {
                return Err(mismatch(
                    "sequence bounds",
                    format!("{min_seq}..={max_seq}"),
                    format!("{}..={}", props.smallest_seq, props.largest_seq),
                ));
            }
        }
        Ok(check)
    }

    /// The cheap part of [`Table::verify`]: the data blocks tile the data region with no
    /// gap and every block's CRC matches, without decompressing or decoding a block (so at
    /// checksum speed). Together with what [`Table::open`] checks (footer, properties,
    /// index and filter blocks), every byte of the file is checksummed.
    ///
    /// ```
    /// use std::{path::Path, sync::Arc};
    /// use strata_core::fs::FileSystem;
    /// use strata_core::key::{InternalKey, ValueKind};
    /// use strata_core::sim::SimFileSystem;
    /// use strata_sstable::{Table, TableBuilder, TableOptions, TableStats};
    /// let fs = SimFileSystem::new();
    /// fs.create_dir_all(Path::new("/db"))?;
    /// let path = Path::new("/db/000002.sst");
    /// let mut b = TableBuilder::new(&fs, path, &TableOptions::default())?;
    /// for i in 0..1000u32 {
    ///     b.add(InternalKey::new(&i.to_be_bytes(), 1, ValueKind::Put).encoded(), b"v")?;
    /// }
    /// b.finish()?;
    /// let table = Table::open(&fs, path, 2, None, Arc::new(TableStats::default()))?;
    /// assert!(table.verify_checksums()? > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Returns the number of data blocks.
    pub fn verify_checksums(&self) -> Result<u64> {
        let index = self.index();
        let mut covered = 0u64;
        for i in 0..index.len() {
            let handle = index.handle(i);
            if handle.offset != covered {
                return Err(Error::corruption(
                    self.path(),
                    handle.offset,
                    format!(
                        "data block starts at {}, not where the previous one ended ({covered})",
                        handle.offset
                    ),
                ));
            }
            self.check_block_crc(handle, self.data_end)?;
            covered = handle.end_with_trailer().unwrap_or(u64::MAX);
        }
        if covered != self.data_end {
            return Err(Error::corruption(
                self.path(),
                covered,
                format!("the data blocks end at {covered}, the data region at {}", self.data_end),
            ));
        }
        Ok(index.len() as u64)
    }

    /// Reads the data block at `handle` without the cache, checks its entries against each
    /// other and against `prev_key` (the last key of the previous block, updated), feeds each
    /// to `each`, and returns the block's last key.
    fn verify_block(
        &self,
        handle: BlockHandle,
        prev_key: &mut Vec<u8>,
        mut each: impl FnMut(&[u8], ValueKind, u64),
    ) -> Result<Option<Vec<u8>>> {
        let (contents, _) = self.read_block(handle, self.data_end, BlockKind::Data)?;
        let block = Block::new(contents).map_err(|r| self.block_corruption(handle, r, 0))?;
        let mut it = BlockIter::new(block);
        it.seek_to_first();
        let mut last = None;
        while it.valid() {
            let key = it.key();
            let Some(parsed) = parse_internal_key(key) else {
                return Err(self.block_corruption(handle, "malformed internal key", 0));
            };
            if !prev_key.is_empty() && compare_internal(prev_key, key).is_ge() {
                return Err(self.block_corruption(handle, "keys out of order", 0));
            }
            if !self.may_contain(parsed.user_key) {
                return Err(self.block_corruption(
                    handle,
                    "the bloom filter rejects a key the table holds",
                    0,
                ));
            }
            each(key, parsed.kind, parsed.seq);
            prev_key.clear();
            prev_key.extend_from_slice(key);
            last = Some(key.to_vec());
            it.next();
        }
        if let Some((reason, at)) = it.corruption() {
            return Err(self.block_corruption(handle, reason, at));
        }
        if last.is_none() {
            return Err(self.block_corruption(handle, "empty data block", 0));
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use strata_core::fs::FileSystem;
    use strata_core::key::{InternalKey, ValueKind};
    use strata_core::sim::SimFileSystem;

    use crate::{Compression, Table, TableBuilder, TableOptions, TableStats};

    fn build(fs: &SimFileSystem, compression: Compression) -> (u64, u64) {
        fs.create_dir_all(Path::new("/db")).unwrap();
        let opts = TableOptions { compression, ..TableOptions::default() }.with_block_size(512);
        let mut b = TableBuilder::new(fs, Path::new("/db/000002.sst"), &opts).unwrap();
        for i in 0..2000u32 {
            let kind = if i % 7 == 0 { ValueKind::Delete } else { ValueKind::Put };
            b.add(InternalKey::new(&i.to_be_bytes(), u64::from(i) + 1, kind).encoded(), b"value")
                .unwrap();
        }
        let props = b.finish().unwrap();
        (props.data_bytes, props.num_data_blocks)
    }

    #[test]
    fn verify_reads_every_block_and_entry() {
        for compression in [Compression::None, Compression::Zstd { level: 1 }] {
            let fs = SimFileSystem::new();
            let (data_bytes, blocks) = build(&fs, compression);
            let t = Table::open(
                &fs,
                Path::new("/db/000002.sst"),
                2,
                None,
                Arc::new(TableStats::default()),
            )
            .unwrap();
            let check = t.verify().unwrap();
            assert_eq!(check.entries, 2000);
            assert_eq!(check.data_blocks, blocks);
            assert!(blocks > 10);
            assert_eq!(check.data_bytes, data_bytes);
        }
    }

    /// A flipped byte in any data block is found, even in blocks no lookup has touched
    /// (`Table::open` checks only the metadata blocks).
    #[test]
    fn verify_finds_a_flipped_byte_in_every_data_block_position() {
        let fs = SimFileSystem::new();
        let (data_bytes, _) = build(&fs, Compression::None);
        let path = Path::new("/db/000002.sst");
        let original = fs.read(path).unwrap();
        for at in (0..data_bytes as usize).step_by(97) {
            let mut damaged = original.clone();
            damaged[at] ^= 0x10;
            fs.overwrite(path, damaged).unwrap();
            let t = Table::open(&fs, path, 2, None, Arc::new(TableStats::default())).unwrap();
            let err = t.verify().unwrap_err();
            assert!(matches!(err, strata_core::Error::Corruption { .. }), "byte {at}: {err}");
        }
    }
}
