//! The `sstable_reader` target: bytes as a table file: open, iterate both ways, seek, get.

use std::path::Path;
use std::sync::Arc;

use arbitrary::Unstructured;
use strata_core::iter::InternalIterator;
use strata_core::key::{parse_internal_key, MAX_SEQ};
use strata_sstable::{BlockCache, Table, TableStats};

use super::input::{assert_corruption_of, byte, disk_with_file};

const TABLE_PATH: &str = "/db/000011.sst";

/// CRC-32 (IEEE), as crc32fast computes it (the sstable format's checksum).
fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

/// Recomputes the footer CRC and the trailer CRCs of the three metadata blocks the footer
/// names, so that mutations reach the block parsers behind the checksums.
fn fix_table_checksums(file: &mut [u8]) {
    let len = file.len();
    let Some(footer_at) = len.checked_sub(64) else { return };
    let read_u64 = |f: &[u8], at: usize| -> u64 {
        f.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
    };
    for h in 0..3 {
        let offset = read_u64(file, footer_at + 16 * h);
        let size = read_u64(file, footer_at + 16 * h + 8);
        let (Ok(offset), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
            continue;
        };
        let Some(end) =
            offset.checked_add(size).filter(|e| e.checked_add(5).is_some_and(|t| t <= footer_at))
        else {
            continue;
        };
        let ty = file[end];
        let crc = crc32(&[&file[offset..end], &[ty]]);
        file[end + 1..end + 5].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32(&[&file[footer_at..footer_at + 52]]);
    file[footer_at + 52..footer_at + 56].copy_from_slice(&crc.to_le_bytes());
}

/// `sstable_reader`: bytes as a table file: open, iterate forward and backward, seek, get.
///
/// Layout: `flags u8` (bit 0: with a block cache; bit 1: recompute the footer's and the
/// metadata blocks' checksums first, so that mutations reach the parsers behind them), then
/// the file.
///
/// Checks: no panic, termination, bounded allocation (run with `-malloc_limit_mb`); every
/// error is corruption naming the table; iteration ends after an error.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let mut file = u.take_rest().to_vec();
    if flags & 2 != 0 {
        fix_table_checksums(&mut file);
    }
    let path = Path::new(TABLE_PATH);
    let fs = disk_with_file(path, &file);
    let cache = (flags & 1 != 0).then(|| BlockCache::new(1 << 20));
    let table = match Table::open(&fs, path, 11, cache, Arc::new(TableStats::default())) {
        Ok(t) => t,
        Err(e) => return assert_corruption_of(&e, path),
    };
    let _ = table.properties();
    // Entries are bounded by what the blocks can decompress to; this only catches a cursor
    // that stops moving.
    const MAX_STEPS: usize = 2_000_000;
    let mut it = table.iter();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    it.seek_to_first();
    let mut steps = 0;
    while it.valid() {
        steps += 1;
        assert!(steps < MAX_STEPS, "table iterator does not terminate");
        if keys.len() < 32 {
            keys.push(it.key().to_vec());
        }
        let _ = it.value();
        it.next();
    }
    if let Err(e) = it.status() {
        assert_corruption_of(&e, path);
    }
    it.seek_to_last();
    steps = 0;
    while it.valid() {
        steps += 1;
        assert!(steps < MAX_STEPS, "table iterator does not terminate backwards");
        it.prev();
    }
    if let Err(e) = it.status() {
        assert_corruption_of(&e, path);
    }
    for key in &keys {
        let mut it = table.iter();
        it.seek(key);
        if let Err(e) = it.status() {
            assert_corruption_of(&e, path);
        }
        it.seek_for_prev(key);
        if let Some(parsed) = parse_internal_key(key) {
            for seq in [MAX_SEQ, parsed.seq, parsed.seq.saturating_sub(1)] {
                if let Err(e) = table.get(parsed.user_key, seq) {
                    assert_corruption_of(&e, path);
                }
            }
        }
    }
    for probe in [&b""[..], b"a", b"key", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff"] {
        if let Err(e) = table.get(probe, MAX_SEQ) {
            assert_corruption_of(&e, path);
        }
        let _ = table.may_contain(probe);
    }
}
