//! The log file format: file header, 32 KiB blocks, fragment framing. The byte-level
//! description (with diagrams and the reasons for each choice) is `docs/format/wal.md`.
//!
//! ```text
//! file   := header (16 bytes) blocks...
//! block  := fragment* trailer        (every block is BLOCK_SIZE bytes; the last may be short;
//!                                      block 0 starts with the file header)
//! fragment := crc32 u32 LE | len u16 LE | type u8 | payload (len bytes)
//! trailer  := 0..=6 zero bytes, when fewer than FRAGMENT_HEADER_LEN bytes are left in a block
//! ```
//!
//! Public here: the file header and the block size, what a tool needs to build or size a
//! log file. Fragment framing and parsing stay inside this crate ([`crate::LogWriter`]
//! writes fragments, [`crate::LogReader`] parses them).

/// Size of a block. Fragments never cross a block boundary, so a reader that finds damage
/// can resume at the next multiple of `BLOCK_SIZE` and tell a torn tail from corruption
/// followed by intact records.
pub const BLOCK_SIZE: usize = 32 * 1024;

/// Bytes of a fragment header: CRC32 (4), payload length (2), record type (1).
pub(crate) const FRAGMENT_HEADER_LEN: usize = 7;

/// The file magic, the first 8 bytes of every log file.
pub const MAGIC: [u8; 8] = *b"STRATLOG";

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of the file header: magic (8), format version u32 LE (4), CRC32 of those 12 bytes
/// u32 LE (4).
pub const FILE_HEADER_LEN: usize = 16;

/// The type of a fragment: a whole record, or the first, a middle or the last piece of a
/// record that spans blocks.
///
/// Written to disk: do not renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordType {
    /// The whole record is in this fragment.
    Full = 1,
    /// The first fragment of a record continued in the next block(s).
    First = 2,
    /// A fragment neither first nor last.
    Middle = 3,
    /// The last fragment of a record.
    Last = 4,
}

impl RecordType {
    /// The type stored as `tag`; `None` for 0 (zero-filled space, never written by strata)
    /// and unknown tags.
    pub(crate) fn from_u8(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(RecordType::Full),
            2 => Some(RecordType::First),
            3 => Some(RecordType::Middle),
            4 => Some(RecordType::Last),
            _ => None,
        }
    }
}

/// The 16 bytes every log file starts with.
pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The checksum stored in a fragment header: CRC32 over the length field, the type byte and
/// the payload (everything in the fragment after the checksum itself).
#[inline]
pub(crate) fn fragment_crc(len: u16, ty: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let len = len.to_le_bytes();
    h.update(&[len[0], len[1], ty]);
    h.update(payload);
    h.finalize()
}

/// How many bytes [`frame_record`] appends for a `payload_len`-byte record written when the
/// file's write position is `block_offset` bytes into a block.
pub(crate) fn framed_len(mut block_offset: usize, payload_len: usize) -> usize {
    let mut total = 0;
    let mut left = payload_len;
    let mut first = true;
    while first || left > 0 {
        let room = BLOCK_SIZE - block_offset;
        if room < FRAGMENT_HEADER_LEN {
            total += room;
            block_offset = 0;
            continue;
        }
        let n = left.min(room - FRAGMENT_HEADER_LEN);
        total += FRAGMENT_HEADER_LEN + n;
        block_offset += FRAGMENT_HEADER_LEN + n;
        left -= n;
        first = false;
    }
    total
}

/// Appends `payload` to `out` as one record framed for a file whose write position is
/// `block_offset` bytes into a block (`0 <= block_offset < BLOCK_SIZE`), padding the block
/// trailer with zeros where needed. Returns the block offset after the record.
pub(crate) fn frame_record(out: &mut Vec<u8>, mut block_offset: usize, payload: &[u8]) -> usize {
    debug_assert!(block_offset < BLOCK_SIZE);
    out.reserve(framed_len(block_offset, payload.len()));
    let mut rest = payload;
    let mut first = true;
    loop {
        let room = BLOCK_SIZE - block_offset;
        if room < FRAGMENT_HEADER_LEN {
            // Too small for a header: the trailer is zero padding and the record continues
            // in the next block.
            out.resize(out.len() + room, 0);
            block_offset = 0;
            continue;
        }
        let n = rest.len().min(room - FRAGMENT_HEADER_LEN);
        let (piece, tail) = rest.split_at(n);
        let last = tail.is_empty();
        let ty = match (first, last) {
            (true, true) => RecordType::Full,
            (true, false) => RecordType::First,
            (false, false) => RecordType::Middle,
            (false, true) => RecordType::Last,
        } as u8;
        // n <= BLOCK_SIZE - FRAGMENT_HEADER_LEN < 65536, so it fits the u16 field.
        let len = n as u16;
        out.extend_from_slice(&fragment_crc(len, ty, piece).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.push(ty);
        out.extend_from_slice(piece);
        block_offset += FRAGMENT_HEADER_LEN + n;
        if block_offset == BLOCK_SIZE {
            block_offset = 0;
        }
        rest = tail;
        first = false;
        if last {
            return block_offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_stable() {
        let h = file_header();
        assert_eq!(&h[..8], b"STRATLOG");
        assert_eq!(&h[8..12], &[1, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(h[12..].try_into().unwrap()), crc32fast::hash(&h[..12]));
    }

    #[test]
    fn framed_len_matches_frame_record() {
        for start in [0, 16, 100, BLOCK_SIZE - 8, BLOCK_SIZE - 7, BLOCK_SIZE - 6, BLOCK_SIZE - 1] {
            for len in [0, 1, 100, BLOCK_SIZE - 7, BLOCK_SIZE, 3 * BLOCK_SIZE + 5] {
                let mut out = Vec::new();
                let end = frame_record(&mut out, start, &vec![7u8; len]);
                assert_eq!(out.len(), framed_len(start, len), "start {start} len {len}");
                assert_eq!((start + out.len()) % BLOCK_SIZE, end, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn record_filling_a_block_exactly_ends_at_block_start() {
        let mut out = Vec::new();
        let end = frame_record(&mut out, 0, &vec![1u8; BLOCK_SIZE - FRAGMENT_HEADER_LEN]);
        assert_eq!(end, 0);
        assert_eq!(out.len(), BLOCK_SIZE);
        assert_eq!(out[6], RecordType::Full as u8);
    }

    /// The example drawn in docs/format/wal.md.
    #[test]
    fn documented_example() {
        let mut out = file_header().to_vec();
        let off = frame_record(&mut out, FILE_HEADER_LEN, &[1; 100]);
        assert_eq!((out.len(), off), (123, 123));
        assert_eq!(&out[16 + 4..16 + 7], &[0x64, 0x00, 1]);
        let off = frame_record(&mut out, off, &[2; 40_000]);
        assert_eq!(out.len(), 40_137);
        assert_eq!(off, 40_137 - BLOCK_SIZE);
        assert_eq!(&out[123 + 4..123 + 7], &[0x7e, 0x7f, 2]); // FIRST, len 32638
        assert_eq!(&out[BLOCK_SIZE + 4..BLOCK_SIZE + 7], &[0xc2, 0x1c, 4]);
    }

    #[test]
    fn small_trailer_is_zero_padded() {
        let mut out = Vec::new();
        frame_record(&mut out, BLOCK_SIZE - 3, b"abc");
        assert_eq!(&out[..3], &[0, 0, 0]);
        assert_eq!(out[3 + 6], RecordType::Full as u8);
        assert_eq!(out.len(), 3 + 7 + 3);
    }
}
