//! What the targets share: reading their byte layouts, and simulated disks holding one file.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use strata::Error;
use strata_core::fs::FileSystem;
use strata_core::sim::SimFileSystem;

/// Reads one byte (0 once the input is exhausted, as `arbitrary` does).
pub(crate) fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

/// Reads a little-endian `u16` (zeros once the input is exhausted).
pub(crate) fn u16_le(u: &mut Unstructured<'_>) -> u16 {
    u16::from_le_bytes([byte(u), byte(u)])
}

/// Reads `[len u16 LE][len bytes]` records until the input ends (the last one may be short).
pub(crate) fn length_prefixed(u: &mut Unstructured<'_>, limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < limit {
        let len = usize::from(u16_le(u)).min(u.len());
        out.push(u.bytes(len).map(<[u8]>::to_vec).unwrap_or_default());
    }
    out
}

/// Appends `[len u16 LE][payload]`, the record layout [`length_prefixed`] reads.
pub(crate) fn put_length_prefixed(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("seed payloads fit a u16 length");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A fresh simulated disk holding `bytes` at `path` (durably, as on a real disk at rest).
pub(crate) fn disk_with_file(path: &Path, bytes: &[u8]) -> SimFileSystem {
    let fs = SimFileSystem::new();
    let dir = strata_core::fs::parent_dir(path);
    fs.create_dir_all(&dir).expect("sim mkdir");
    write_file(&fs, path, bytes);
    fs
}

/// Writes `bytes` as the whole file at `path` on `fs`, durably (file and name).
pub(crate) fn write_file(fs: &SimFileSystem, path: &Path, bytes: &[u8]) {
    drop(fs.create(path).expect("sim create"));
    fs.overwrite(path, bytes.to_vec()).expect("sim overwrite");
    fs.sync_dir(&strata_core::fs::parent_dir(path)).expect("sim sync_dir");
}

/// Every error a reader returns for bad bytes on a healthy (simulated) disk must be a
/// corruption naming the file that was read.
pub(crate) fn assert_corruption_of(e: &Error, path: &Path) {
    match e {
        Error::Corruption { file, .. } => {
            assert_eq!(file, path, "corruption names the wrong file: {e}")
        }
        other => panic!("reading {} gave a non-corruption error: {other:?}", path.display()),
    }
}
