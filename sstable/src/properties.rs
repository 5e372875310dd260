//! [`TableProperties`]: what a table holds, stored in its properties block.

use strata_core::coding::{put_varint, Decoder};
use strata_core::key::MAX_SEQ;
use strata_core::range_del::RangeTombstone;

use crate::format::Compression;

/// Summary of a finished table, returned by `TableBuilder::finish` and stored in the
/// table's properties block (read back by `Table::open`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProperties {
    /// Number of entries (versions) in the table.
    pub num_entries: u64,
    /// How many of them are tombstones.
    pub num_deletions: u64,
    /// The smallest encoded internal key (empty for an empty table).
    pub smallest_key: Vec<u8>,
    /// The largest encoded internal key (empty for an empty table).
    pub largest_key: Vec<u8>,
    /// The smallest sequence number of any entry (0 for an empty table).
    pub smallest_seq: u64,
    /// The largest sequence number of any entry (0 for an empty table).
    pub largest_seq: u64,
    /// Sum of the lengths of all encoded internal keys added.
    pub raw_key_bytes: u64,
    /// Sum of the lengths of all values added.
    pub raw_value_bytes: u64,
    /// Bytes of data blocks as stored (after compression, including block trailers).
    pub data_bytes: u64,
    /// Number of data blocks.
    pub num_data_blocks: u64,
    /// Bytes of the index block as stored (including its trailer).
    pub index_bytes: u64,
    /// Bytes of the filter block as stored (including its trailer).
    pub filter_bytes: u64,
    /// Size of the whole file. Not stored in the properties block (which precedes the end
    /// of the file): the builder fills it at `finish`, the reader from the file's length.
    pub file_size: u64,
    /// The compression the table was built with (individual blocks may still be raw).
    pub compression: Compression,
    /// When the table was finished, in seconds since the Unix epoch.
    pub created_unix_secs: u64,
    /// The range tombstones the table carries (format version 4), fragmented: sorted by
    /// start, never partly overlapping. `smallest_seq` and `largest_seq` include theirs.
    pub range_tombstones: Vec<RangeTombstone>,
}

impl Default for TableProperties {
    fn default() -> Self {
        TableProperties {
            num_entries: 0,
            num_deletions: 0,
            smallest_key: Vec::new(),
            largest_key: Vec::new(),
            smallest_seq: 0,
            largest_seq: 0,
            raw_key_bytes: 0,
            raw_value_bytes: 0,
            data_bytes: 0,
            num_data_blocks: 0,
            index_bytes: 0,
            filter_bytes: 0,
            file_size: 0,
            compression: Compression::None,
            created_unix_secs: 0,
            range_tombstones: Vec::new(),
        }
    }
}

impl TableProperties {
    /// The properties block contents (layout in `docs/format/sstable.md`).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.smallest_key.len() + self.largest_key.len());
        for v in [
            self.num_entries,
            self.num_deletions,
            self.smallest_seq,
            self.largest_seq,
            self.raw_key_bytes,
            self.raw_value_bytes,
            self.data_bytes,
            self.num_data_blocks,
            self.index_bytes,
            self.filter_bytes,
            self.created_unix_secs,
        ] {
            put_varint(&mut out, v);
        }
        out.push(self.compression.tag());
        let level = match self.compression {
            Compression::None | Compression::Lz4 => 0,
            Compression::Zstd { level } => level,
        };
        out.extend_from_slice(&level.to_le_bytes());
        for key in [&self.smallest_key, &self.largest_key] {
            put_varint(&mut out, key.len() as u64);
            out.extend_from_slice(key);
        }
        put_varint(&mut out, self.range_tombstones.len() as u64);
        for t in &self.range_tombstones {
            put_varint(&mut out, t.seq);
            for key in [&t.start, &t.end] {
                put_varint(&mut out, key.len() as u64);
                out.extend_from_slice(key);
            }
        }
        out
    }

    /// Decodes a (CRC-verified) properties block of a table in format `version`;
    /// `file_size` is filled by the caller.
    pub(crate) fn decode(bytes: &[u8], version: u32) -> Result<TableProperties, &'static str> {
        const SHORT: &str = "properties block truncated";
        let mut d = Decoder::new(bytes);
        let mut v = [0u64; 11];
        for x in &mut v {
            *x = d.varint().ok_or(SHORT)?;
        }
        let tag = d.u8().ok_or(SHORT)?;
        let level = d.u32().ok_or(SHORT)? as i32;
        let compression = match tag {
            0 => Compression::None,
            1 => Compression::Zstd { level },
            2 => Compression::Lz4,
            _ => return Err("unknown compression tag in properties"),
        };
        let smallest_key = d.length_prefixed().ok_or(SHORT)?.to_vec();
        let largest_key = d.length_prefixed().ok_or(SHORT)?.to_vec();
        let mut range_tombstones = Vec::new();
        if version >= 4 {
            let count = d.varint().ok_or(SHORT)?;
            // Each tombstone takes at least 3 bytes: a count beyond that is a lie, caught
            // before it sizes an allocation.
            if count > d.remaining() as u64 / 3 {
                return Err("range tombstone count exceeds the properties block");
            }
            for _ in 0..count {
                let seq = d.varint().ok_or(SHORT)?;
                let start = d.length_prefixed().ok_or(SHORT)?.to_vec();
                let end = d.length_prefixed().ok_or(SHORT)?.to_vec();
                if seq > MAX_SEQ || start >= end {
                    return Err("malformed range tombstone in properties");
                }
                range_tombstones.push(RangeTombstone { start, end, seq });
            }
        }
        if !d.is_empty() {
            return Err("trailing bytes after properties");
        }
        let [num_entries, num_deletions, smallest_seq, largest_seq, raw_key_bytes, raw_value_bytes, data_bytes, num_data_blocks, index_bytes, filter_bytes, created_unix_secs] =
            v;
        Ok(TableProperties {
            num_entries,
            num_deletions,
            smallest_key,
            largest_key,
            smallest_seq,
            largest_seq,
            raw_key_bytes,
            raw_value_bytes,
            data_bytes,
            num_data_blocks,
            index_bytes,
            filter_bytes,
            file_size: 0,
            compression,
            created_unix_secs,
            range_tombstones,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_reject_truncation() {
        let p = TableProperties {
            num_entries: 5,
            num_deletions: 1,
            smallest_key: b"a\0\0\0\0\0\0\0\0".to_vec(),
            largest_key: b"zz\0\0\0\0\0\0\0\0".to_vec(),
            smallest_seq: 3,
            largest_seq: 99,
            raw_key_bytes: 50,
            raw_value_bytes: 500,
            data_bytes: 400,
            num_data_blocks: 2,
            index_bytes: 40,
            filter_bytes: 60,
            file_size: 0,
            compression: Compression::Zstd { level: -3 },
            created_unix_secs: 1_700_000_000,
            range_tombstones: vec![
                RangeTombstone::new("b", "c", 7),
                RangeTombstone::new("d", "q", 9),
            ],
        };
        let bytes = p.encode();
        assert_eq!(TableProperties::decode(&bytes, 4), Ok(p.clone()));
        for n in 0..bytes.len() {
            assert!(TableProperties::decode(&bytes[..n], 4).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(TableProperties::decode(&extra, 4).is_err());
        // Before version 4 the block ends after the largest key.
        let old = TableProperties { range_tombstones: Vec::new(), ..p };
        let mut bytes = old.encode();
        bytes.pop(); // the zero tombstone count
        assert_eq!(TableProperties::decode(&bytes, 3), Ok(old));
    }

    #[test]
    fn a_lying_tombstone_count_is_rejected_before_allocating() {
        let mut bytes = TableProperties::default().encode();
        bytes.pop();
        put_varint(&mut bytes, u64::MAX >> 1);
        assert!(TableProperties::decode(&bytes, 4).unwrap_err().contains("count exceeds"));
    }
}
