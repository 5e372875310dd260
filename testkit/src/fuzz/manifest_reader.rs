//! The `manifest_reader` target: bytes as a manifest (and optionally as `CURRENT`), recovered.

use std::path::Path;
use std::sync::Arc;

use arbitrary::Unstructured;
use strata::Error;
use strata_compaction::{manifest_file_name, Manifest, CURRENT_FILE_NAME};
use strata_core::fs::FileSystem;
use strata_core::sim::SimFileSystem;
use strata_wal::{Wal, WalOptions};

use super::input::{byte, length_prefixed, u16_le, write_file};

const MANIFEST_NUMBER: u64 = 7;

/// `manifest_reader`: bytes as a manifest (and optionally as `CURRENT`), recovered.
///
/// Layout: `flags u8`, then `[len u8][CURRENT bytes]` if bit 1 (else `CURRENT` names
/// `MANIFEST-000007`), then
/// * raw mode (bit 0 clear): the manifest file's bytes;
/// * framed mode (bit 0 set): `[cut u16]` if bit 3, `[flip_at u16, mask u8]` if bit 4, then
///   records as `[len u16 LE][bytes]`, the first prefixed with the manifest magic and version
///   if bit 2, written with the log writer (so edits reach the decoder behind the checksums).
///
/// Checks: no panic; errors are corruption (naming `CURRENT` or a manifest); a recovered
/// state satisfies the version's invariants and survives a round trip through a fresh
/// manifest unchanged.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let dir = Path::new("/db");
    let current_bytes = if flags & 2 != 0 {
        let n = usize::from(byte(&mut u)).min(u.len());
        u.bytes(n).map(<[u8]>::to_vec).unwrap_or_default()
    } else {
        format!("{}\n", manifest_file_name(MANIFEST_NUMBER)).into_bytes()
    };
    let manifest_path = dir.join(manifest_file_name(MANIFEST_NUMBER));
    let fs = SimFileSystem::new();
    fs.create_dir_all(dir).expect("sim mkdir");
    if flags & 1 == 0 {
        write_file(&fs, &manifest_path, u.take_rest());
    } else {
        let cut = (flags & 8 != 0).then(|| usize::from(u16_le(&mut u)));
        let flip = (flags & 16 != 0).then(|| (usize::from(u16_le(&mut u)), byte(&mut u)));
        let mut records = length_prefixed(&mut u, 64);
        if flags & 4 != 0 {
            let first = records.first().cloned().unwrap_or_default();
            let mut with_header = strata_compaction::MANIFEST_MAGIC.to_vec();
            with_header
                .extend_from_slice(&strata_compaction::MANIFEST_FORMAT_VERSION.to_le_bytes());
            with_header.extend_from_slice(&first);
            match records.first_mut() {
                Some(r) => *r = with_header,
                None => records.push(with_header),
            }
        }
        let wal = Wal::create(Arc::new(fs.clone()), &manifest_path, WalOptions::default())
            .expect("create");
        for r in &records {
            wal.append(r, false).expect("append");
        }
        wal.close().expect("close");
        let mut bytes = fs.read(&manifest_path).expect("read back");
        if let Some(c) = cut {
            bytes.truncate(c);
        }
        if let Some((at, mask)) = flip {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= mask;
            }
        }
        write_file(&fs, &manifest_path, &bytes);
    }
    write_file(&fs, &dir.join(CURRENT_FILE_NAME), &current_bytes);

    let state = match Manifest::recover(Arc::new(fs.clone()), dir) {
        Ok(Some(state)) => state,
        Ok(None) => panic!("recover ignored an existing CURRENT"),
        Err(Error::Corruption { file, .. }) => {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert!(
                name == CURRENT_FILE_NAME || name.starts_with("MANIFEST-"),
                "corruption names neither CURRENT nor a manifest: {}",
                file.display()
            );
            return;
        }
        Err(other) => panic!("manifest recovery gave a non-corruption error: {other:?}"),
    };
    if let Err(e) = state.version.check_invariants() {
        panic!("recovered version breaks its invariants: {e}");
    }
    // Round trip: a fresh manifest holding the recovered state recovers to the same state.
    let fresh = SimFileSystem::new();
    fresh.create_dir_all(dir).expect("sim mkdir");
    let number = state.manifest_number;
    if let Err(e) =
        Manifest::create_new(Arc::new(fresh.clone()), dir, number, &state.snapshot_edit())
    {
        panic!("a recovered state cannot be written as a new manifest: {e}");
    }
    let again = Manifest::recover(Arc::new(fresh), dir)
        .expect("recover fresh manifest")
        .expect("CURRENT written");
    assert_eq!(again.version, state.version);
    assert_eq!(
        (again.log_number, again.next_file_number, again.last_sequence, &again.compact_pointers),
        (state.log_number, state.next_file_number, state.last_sequence, &state.compact_pointers),
        "recovered state changed in a round trip"
    );
}
