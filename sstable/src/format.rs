//! On-disk constants and the small fixed structures of a table file: block handles, block
//! trailers, the footer and the compression tags. The byte-level layout is documented in
//! `docs/format/sstable.md`; this module and that page must change together.

use strata_core::coding::{put_varint, Decoder};

/// Magic number at the very end of every table file ("STRATsst" read as little-endian u64).
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"STRATsst");

/// The table format version this crate writes. It reads this one and every earlier one
/// back to [`OLDEST_FORMAT_VERSION`]: version 4 ends the properties block with the table's
/// range tombstones, version 3 writes the cache-line-blocked filter (filter
/// kind 2), version 2 added the LZ4 block type (2); version 1 files have only raw and zstd
/// blocks. Versions 1 and 2 hold kind-1 (plain bloom) filters.
pub const FORMAT_VERSION: u32 = 4;

/// The oldest table format version this crate still reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Length of the fixed-size footer at the end of every table file.
pub const FOOTER_LEN: usize = 64;

/// Length of the trailer after every stored block: one compression-type byte, then the
/// CRC32 (little-endian) of the stored bytes followed by that type byte.
pub const BLOCK_TRAILER_LEN: usize = 5;

/// The largest decompressed block a reader accepts: bounds the allocation a (crafted)
/// compressed block can demand. Restart offsets are u32, so blocks are < 4 GiB anyway.
pub const MAX_BLOCK_LEN: usize = 256 << 20;

/// The largest `internal_key.len() + value.len()` a single entry may have, so that every
/// block, even one holding a single entry, stays below [`MAX_BLOCK_LEN`].
///
/// The one size limit of strata: the engine's key and value limits (`strata::MAX_KEY_SIZE`,
/// `strata::MAX_VALUE_SIZE`) are derived from it so that everything it logs fits a table.
///
/// ```
/// assert_eq!(strata_sstable::MAX_ENTRY_LEN, 128 << 20);
/// ```
pub const MAX_ENTRY_LEN: usize = 128 << 20;

/// How the blocks of a table are compressed.
///
/// The tags are written to disk (block trailers and the properties block): do not renumber.
/// `None` = 0, `Zstd` = 1, `Lz4` = 2 (format version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Blocks are stored as they are.
    None,
    /// Blocks are compressed with LZ4 (the block format, no frame). It shrinks data less
    /// than zstd but decompresses several times faster, which is what a read that misses
    /// the block cache pays for. A block whose compressed form saves under 12.5% is stored
    /// raw instead.
    Lz4,
    /// Blocks are compressed with zstd at `level` (1..=22; negative levels are zstd's "fast"
    /// modes). A block whose compressed form saves under 12.5% is stored raw instead.
    Zstd {
        /// The zstd compression level.
        level: i32,
    },
}

impl Compression {
    /// The on-disk tag of this compression kind.
    pub fn tag(&self) -> u8 {
        match self {
            Compression::None => STORED_RAW,
            Compression::Zstd { .. } => STORED_ZSTD,
            Compression::Lz4 => STORED_LZ4,
        }
    }
}

/// Block trailer type byte: the stored bytes are the block itself. Written to disk.
pub(crate) const STORED_RAW: u8 = 0;
/// Block trailer type byte: the stored bytes are `varint(raw_len) ++ zstd frame`. Written
/// to disk.
pub(crate) const STORED_ZSTD: u8 = 1;
/// Block trailer type byte: the stored bytes are `varint(raw_len) ++ LZ4 block`. Written
/// to disk; format version 2 and later.
pub(crate) const STORED_LZ4: u8 = 2;

/// Where a block lives in the file: the offset and length of its stored bytes, not counting
/// the [`BLOCK_TRAILER_LEN`]-byte trailer that follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct BlockHandle {
    /// Offset of the block's first stored byte in the file.
    pub offset: u64,
    /// Number of stored bytes (excluding the trailer).
    pub size: u64,
}

impl BlockHandle {
    /// Appends the handle as two varints (the form used in index entries).
    pub(crate) fn encode_varint(&self, out: &mut Vec<u8>) {
        put_varint(out, self.offset);
        put_varint(out, self.size);
    }

    /// Decodes a varint-encoded handle that must fill `bytes` exactly.
    pub(crate) fn decode_varint(bytes: &[u8]) -> Option<BlockHandle> {
        let mut d = Decoder::new(bytes);
        let handle = BlockHandle { offset: d.varint()?, size: d.varint()? };
        d.is_empty().then_some(handle)
    }

    /// The offset one past the block's trailer, if it does not overflow.
    pub(crate) fn end_with_trailer(&self) -> Option<u64> {
        self.offset.checked_add(self.size)?.checked_add(BLOCK_TRAILER_LEN as u64)
    }
}

/// CRC32 of a block's stored bytes followed by its type byte (what the trailer holds).
pub(crate) fn block_crc(stored: &[u8], stored_type: u8) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(stored);
    h.update(&[stored_type]);
    h.finalize()
}

/// The fixed-size record at the end of a table: where the metadata blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub filter: BlockHandle,
    pub index: BlockHandle,
    pub properties: BlockHandle,
    /// The format version the file was written in (always [`FORMAT_VERSION`] when
    /// encoding).
    pub version: u32,
}

impl Footer {
    /// The 64 footer bytes: three handles as fixed u64 pairs, the format version, a CRC32
    /// of the preceding 52 bytes, and the magic number.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        for h in [self.filter, self.index, self.properties] {
            out.extend_from_slice(&h.offset.to_le_bytes());
            out.extend_from_slice(&h.size.to_le_bytes());
        }
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        let mut fixed = [0u8; FOOTER_LEN];
        fixed.copy_from_slice(&out);
        fixed
    }

    /// Decodes and verifies a footer; the error says what was wrong.
    pub fn decode(bytes: &[u8]) -> Result<Footer, String> {
        if bytes.len() != FOOTER_LEN {
            return Err(format!("footer is {} bytes, expected {FOOTER_LEN}", bytes.len()));
        }
        let mut d = Decoder::new(bytes);
        let short = || "footer truncated".to_string();
        let mut handles = [BlockHandle::default(); 3];
        for h in &mut handles {
            *h = BlockHandle {
                offset: d.u64().ok_or_else(short)?,
                size: d.u64().ok_or_else(short)?,
            };
        }
        let version = d.u32().ok_or_else(short)?;
        let crc = d.u32().ok_or_else(short)?;
        let magic = d.u64().ok_or_else(short)?;
        if magic != TABLE_MAGIC {
            return Err(format!("bad magic number {magic:#018x}: not a strata table"));
        }
        let covered = bytes.get(..FOOTER_LEN - 12).ok_or_else(short)?;
        if crc32fast::hash(covered) != crc {
            return Err("footer checksum mismatch".to_string());
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(format!("unsupported table format version {version}"));
        }
        let [filter, index, properties] = handles;
        Ok(Footer { filter, index, properties, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_detects_every_flipped_byte() {
        let f = Footer {
            filter: BlockHandle { offset: 10, size: 20 },
            index: BlockHandle { offset: 35, size: 7 },
            properties: BlockHandle { offset: 47, size: 90 },
            version: FORMAT_VERSION,
        };
        let bytes = f.encode();
        assert_eq!(Footer::decode(&bytes), Ok(f));
        for i in 0..FOOTER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert!(Footer::decode(&bad).is_err(), "flip at {i} undetected");
        }
        assert!(Footer::decode(&bytes[1..]).is_err());
    }

    #[test]
    fn handle_varint_rejects_trailing_bytes() {
        let mut v = Vec::new();
        BlockHandle { offset: 300, size: 5 }.encode_varint(&mut v);
        assert_eq!(BlockHandle::decode_varint(&v), Some(BlockHandle { offset: 300, size: 5 }));
        v.push(0);
        assert_eq!(BlockHandle::decode_varint(&v), None);
    }
}
