//! [`VersionEdit`]: one change to the set of live tables, and its encoding in the manifest.
//!
//! The byte layout is documented in `docs/format/manifest.md`.

use strata_core::coding::{put_varint, Decoder};
use strata_core::key::{InternalKey, SeqNo};

use crate::file_meta::FileMeta;
use crate::version::NUM_LEVELS;

/// Field tags of an encoded [`VersionEdit`].
///
/// Written to disk: do not renumber. A decoder meeting an unknown tag fails, because
/// skipping a field it does not understand could silently drop a table.
mod tag {
    pub const LOG_NUMBER: u64 = 1;
    pub const NEXT_FILE_NUMBER: u64 = 2;
    pub const LAST_SEQUENCE: u64 = 3;
    pub const DELETED_FILE: u64 = 4;
    pub const NEW_FILE: u64 = 5;
    pub const COMPACT_POINTER: u64 = 6;
    pub const SEALED_LOG: u64 = 7;
    /// A new file ingested from outside: tag 5's body, then its global sequence number
    /// (manifest format version 3).
    pub const NEW_INGESTED_FILE: u64 = 8;
    /// A new file holding range tombstones: tag 5's body, then the number of its range
    /// tombstone fragments (manifest format version 4).
    pub const NEW_FILE_WITH_RANGE_DELETIONS: u64 = 9;
}

/// A write-ahead log that will never grow again, recorded once all its bytes are durable: at
/// a memtable switch (in the next edit the engine writes) and at a clean close. Recovery
/// holds a sealed log to exactly this length and last sequence, so damage, truncation or
/// deletion is corruption rather than a torn tail (`docs/format/wal.md`).
///
/// ```
/// use strata_compaction::{SealedLog, VersionEdit};
/// let mut edit = VersionEdit::default();
/// edit.sealed_logs.push(SealedLog { number: 7, length: 4096, last_sequence: 120 });
/// let mut bytes = Vec::new();
/// edit.encode(&mut bytes);
/// assert_eq!(VersionEdit::decode(&bytes).unwrap(), edit);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SealedLog {
    /// The log's file number (`{number:06}.log`).
    pub number: u64,
    /// Its final length in bytes, file header included.
    pub length: u64,
    /// The largest sequence number of a batch logged so far, in this log or an earlier one
    /// (a log without records carries its predecessor's).
    pub last_sequence: SeqNo,
}

/// One change to the tree: tables added and removed per level, plus the counters that must
/// move atomically with them. Edits are appended to the manifest, and replaying them in
/// order rebuilds the current [`crate::Version`].
///
/// ```
/// use strata_compaction::{FileMeta, VersionEdit};
/// use strata_core::key::{InternalKey, ValueKind};
/// let mut edit = VersionEdit::default();
/// edit.log_number = Some(4);
/// edit.next_file_number = Some(6);
/// edit.last_sequence = Some(1000);
/// edit.new_files.push((0, FileMeta {
///     number: 5, file_size: 2048,
///     smallest: InternalKey::new(b"a", 1, ValueKind::Put),
///     largest: InternalKey::new(b"z", 1000, ValueKind::Put),
///     smallest_seq: 1, largest_seq: 1000, num_entries: 1000, num_deletions: 0,
///     global_seq: None, num_range_deletions: 0,
/// }));
/// let mut bytes = Vec::new();
/// edit.encode(&mut bytes);
/// assert_eq!(VersionEdit::decode(&bytes).unwrap(), edit);
/// assert!(VersionEdit::decode(&bytes[..bytes.len() - 1]).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// Every WAL file numbered below this is fully flushed into tables and may be deleted.
    pub log_number: Option<u64>,
    /// The next unused file number (tables, logs and manifests share one counter).
    pub next_file_number: Option<u64>,
    /// The largest sequence number used by any write in the tables.
    pub last_sequence: Option<SeqNo>,
    /// Tables removed: `(level, file number)`.
    pub deleted_files: Vec<(usize, u64)>,
    /// Tables added: `(level, metadata)`.
    pub new_files: Vec<(usize, FileMeta)>,
    /// Round-robin compaction cursor per level: the largest key of the last compaction.
    pub compact_pointers: Vec<(usize, InternalKey)>,
    /// Logs sealed since the last edit (see [`SealedLog`]).
    pub sealed_logs: Vec<SealedLog>,
}

impl VersionEdit {
    /// Appends the encoding of the edit to `out` (see `docs/format/manifest.md`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (t, v) in [
            (tag::LOG_NUMBER, self.log_number),
            (tag::NEXT_FILE_NUMBER, self.next_file_number),
            (tag::LAST_SEQUENCE, self.last_sequence),
        ] {
            if let Some(v) = v {
                put_varint(out, t);
                put_varint(out, v);
            }
        }
        for &(level, number) in &self.deleted_files {
            put_varint(out, tag::DELETED_FILE);
            put_varint(out, level as u64);
            put_varint(out, number);
        }
        for (level, f) in &self.new_files {
            let t = if f.global_seq.is_some() {
                tag::NEW_INGESTED_FILE
            } else if f.num_range_deletions > 0 {
                tag::NEW_FILE_WITH_RANGE_DELETIONS
            } else {
                tag::NEW_FILE
            };
            put_varint(out, t);
            put_varint(out, *level as u64);
            put_varint(out, f.number);
            put_varint(out, f.file_size);
            put_bytes(out, f.smallest.encoded());
            put_bytes(out, f.largest.encoded());
            put_varint(out, f.smallest_seq);
            put_varint(out, f.largest_seq);
            put_varint(out, f.num_entries);
            put_varint(out, f.num_deletions);
            if let Some(seq) = f.global_seq {
                put_varint(out, seq);
            } else if f.num_range_deletions > 0 {
                put_varint(out, f.num_range_deletions);
            }
        }
        for (level, key) in &self.compact_pointers {
            put_varint(out, tag::COMPACT_POINTER);
            put_varint(out, *level as u64);
            put_bytes(out, key.encoded());
        }
        for log in &self.sealed_logs {
            put_varint(out, tag::SEALED_LOG);
            put_varint(out, log.number);
            put_varint(out, log.length);
            put_varint(out, log.last_sequence);
        }
    }

    /// Decodes an edit written by [`VersionEdit::encode`].
    ///
    /// Fails, with a message naming the byte offset inside `bytes`, on a truncated field, an
    /// unknown tag, a level `>= NUM_LEVELS`, a malformed internal key or a scalar field given
    /// twice. The caller turns the message into `Error::Corruption` with its file and offset.
    pub fn decode(bytes: &[u8]) -> Result<VersionEdit, String> {
        let mut d = Decoder::new(bytes);
        let mut edit = VersionEdit::default();
        while !d.is_empty() {
            let at = d.offset();
            let t = d.varint().ok_or_else(|| format!("truncated tag at byte {at}"))?;
            let truncated = || format!("truncated field with tag {t} at byte {at}");
            match t {
                tag::LOG_NUMBER | tag::NEXT_FILE_NUMBER | tag::LAST_SEQUENCE => {
                    let v = d.varint().ok_or_else(truncated)?;
                    let slot = match t {
                        tag::LOG_NUMBER => &mut edit.log_number,
                        tag::NEXT_FILE_NUMBER => &mut edit.next_file_number,
                        _ => &mut edit.last_sequence,
                    };
                    if slot.replace(v).is_some() {
                        return Err(format!("field with tag {t} given twice (byte {at})"));
                    }
                }
                tag::DELETED_FILE => {
                    let level = level(&mut d, at)?;
                    let number = d.varint().ok_or_else(truncated)?;
                    edit.deleted_files.push((level, number));
                }
                tag::NEW_FILE | tag::NEW_INGESTED_FILE | tag::NEW_FILE_WITH_RANGE_DELETIONS => {
                    let level = level(&mut d, at)?;
                    let mut v = || d.varint().ok_or_else(truncated);
                    let (number, file_size) = (v()?, v()?);
                    let smallest = internal_key(&mut d, at)?;
                    let largest = internal_key(&mut d, at)?;
                    let mut v = || d.varint().ok_or_else(truncated);
                    let mut meta = FileMeta {
                        number,
                        file_size,
                        smallest,
                        largest,
                        smallest_seq: v()?,
                        largest_seq: v()?,
                        num_entries: v()?,
                        num_deletions: v()?,
                        global_seq: None,
                        num_range_deletions: 0,
                    };
                    if t == tag::NEW_INGESTED_FILE {
                        meta.global_seq = Some(v()?);
                    } else if t == tag::NEW_FILE_WITH_RANGE_DELETIONS {
                        meta.num_range_deletions = v()?;
                        if meta.num_range_deletions == 0 {
                            return Err(format!(
                                "file {number} with range tombstones has none (byte {at})"
                            ));
                        }
                    }
                    edit.new_files.push((level, meta));
                }
                tag::COMPACT_POINTER => {
                    let level = level(&mut d, at)?;
                    let key = internal_key(&mut d, at)?;
                    edit.compact_pointers.push((level, key));
                }
                tag::SEALED_LOG => {
                    let mut v = || d.varint().ok_or_else(truncated);
                    let log = SealedLog { number: v()?, length: v()?, last_sequence: v()? };
                    edit.sealed_logs.push(log);
                }
                _ => return Err(format!("unknown field tag {t} at byte {at}")),
            }
        }
        Ok(edit)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn level(d: &mut Decoder<'_>, at: usize) -> Result<usize, String> {
    let level = d.varint().ok_or_else(|| format!("truncated level in field at byte {at}"))?;
    match usize::try_from(level) {
        Ok(level) if level < NUM_LEVELS => Ok(level),
        _ => Err(format!("level {level} >= {NUM_LEVELS} in field at byte {at}")),
    }
}

fn internal_key(d: &mut Decoder<'_>, at: usize) -> Result<InternalKey, String> {
    let bytes =
        d.length_prefixed().ok_or_else(|| format!("truncated key in field at byte {at}"))?;
    let key = InternalKey::from_encoded(bytes.to_vec());
    if key.parse().is_none() {
        return Err(format!("malformed internal key in field at byte {at}"));
    }
    Ok(key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_core::key::{ValueKind, MAX_SEQ};

    pub(crate) fn arb_key() -> impl Strategy<Value = InternalKey> {
        (proptest::collection::vec(any::<u8>(), 0..12), 0..=MAX_SEQ, any::<bool>()).prop_map(
            |(k, seq, put)| {
                InternalKey::new(&k, seq, if put { ValueKind::Put } else { ValueKind::Delete })
            },
        )
    }

    fn arb_meta() -> impl Strategy<Value = FileMeta> {
        (
            any::<u64>(),
            any::<u64>(),
            arb_key(),
            arb_key(),
            any::<[u64; 4]>(),
            proptest::option::of(any::<u64>()),
            0u64..3,
        )
            .prop_map(
                |(number, file_size, smallest, largest, [a, b, c, d], global_seq, ranges)| {
                    FileMeta {
                        number,
                        file_size,
                        smallest,
                        largest,
                        smallest_seq: a,
                        largest_seq: b,
                        num_entries: c,
                        num_deletions: d,
                        global_seq,
                        // Ingested tables never hold range tombstones.
                        num_range_deletions: if global_seq.is_some() { 0 } else { ranges },
                    }
                },
            )
    }

    fn arb_edit() -> impl Strategy<Value = VersionEdit> {
        let level = 0..NUM_LEVELS;
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::collection::vec((level.clone(), any::<u64>()), 0..4),
            proptest::collection::vec((level.clone(), arb_meta()), 0..4),
            proptest::collection::vec((level, arb_key()), 0..3),
            proptest::collection::vec(any::<[u64; 3]>(), 0..3),
        )
            .prop_map(
                |(log, next, last, deleted_files, new_files, compact_pointers, sealed)| {
                    VersionEdit {
                        log_number: log,
                        next_file_number: next,
                        last_sequence: last,
                        deleted_files,
                        new_files,
                        compact_pointers,
                        sealed_logs: sealed
                            .into_iter()
                            .map(|[number, length, last_sequence]| SealedLog {
                                number,
                                length,
                                last_sequence,
                            })
                            .collect(),
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn edits_round_trip(edit in arb_edit()) {
            let mut bytes = Vec::new();
            edit.encode(&mut bytes);
            prop_assert_eq!(VersionEdit::decode(&bytes), Ok(edit.clone()));
            // Every strict prefix that cuts a field is rejected, never misread.
            for cut in 0..bytes.len() {
                if let Ok(partial) = VersionEdit::decode(&bytes[..cut]) {
                    // A cut on a field boundary decodes to a prefix of the fields.
                    let mut re = Vec::new();
                    partial.encode(&mut re);
                    prop_assert_eq!(&re[..], &bytes[..cut]);
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = VersionEdit::decode(&bytes);
        }

        #[test]
        fn decode_of_mutated_edit_never_panics(edit in arb_edit(), flip in any::<(usize, u8)>()) {
            let mut bytes = Vec::new();
            edit.encode(&mut bytes);
            if !bytes.is_empty() {
                let i = flip.0 % bytes.len();
                bytes[i] ^= flip.1 | 1;
            }
            let _ = VersionEdit::decode(&bytes);
        }
    }

    #[test]
    fn empty_edit_is_empty_bytes() {
        let mut bytes = Vec::new();
        VersionEdit::default().encode(&mut bytes);
        assert!(bytes.is_empty());
        assert_eq!(VersionEdit::decode(&[]), Ok(VersionEdit::default()));
    }

    #[test]
    fn bad_fields_are_rejected() {
        // Unknown tag.
        assert!(VersionEdit::decode(&[99, 1]).unwrap_err().contains("unknown field tag 99"));
        // Level out of range.
        assert!(VersionEdit::decode(&[tag::DELETED_FILE as u8, 7, 1])
            .unwrap_err()
            .contains("level 7"));
        // Scalar given twice.
        assert!(VersionEdit::decode(&[1, 5, 1, 6]).unwrap_err().contains("twice"));
        // A key shorter than the trailer.
        assert!(VersionEdit::decode(&[tag::COMPACT_POINTER as u8, 1, 3, b'a', b'b', b'c'])
            .unwrap_err()
            .contains("malformed"));
        // A lying key length.
        assert!(VersionEdit::decode(&[tag::COMPACT_POINTER as u8, 1, 0xff, 0xff, 0x7f, 1])
            .unwrap_err()
            .contains("truncated key"));
    }

    #[test]
    fn an_ingested_file_has_its_own_tag_and_keeps_its_global_sequence() {
        // Pins the documented layout of tag 8 (docs/format/manifest.md).
        let meta = FileMeta {
            number: 12,
            file_size: 100,
            smallest: InternalKey::new(b"a", 5, ValueKind::Put),
            largest: InternalKey::new(b"b", 5, ValueKind::Put),
            smallest_seq: 5,
            largest_seq: 5,
            num_entries: 2,
            num_deletions: 0,
            global_seq: Some(5),
            num_range_deletions: 0,
        };
        let edit = VersionEdit { new_files: vec![(6, meta)], ..VersionEdit::default() };
        let mut bytes = Vec::new();
        edit.encode(&mut bytes);
        let expected: Vec<u8> = [
            &[8, 6, 12, 100][..],
            &[9, b'a', 0x01, 0x05, 0, 0, 0, 0, 0, 0],
            &[9, b'b', 0x01, 0x05, 0, 0, 0, 0, 0, 0],
            &[5, 5, 2, 0, 5],
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(VersionEdit::decode(&bytes), Ok(edit));
        // Without its global sequence the field is truncated, not an ordinary file.
        assert!(VersionEdit::decode(&bytes[..bytes.len() - 1]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn encoding_is_stable() {
        // Pins the documented layout (docs/format/manifest.md): changing it breaks old files.
        let edit = VersionEdit {
            log_number: Some(3),
            next_file_number: Some(300),
            last_sequence: None,
            deleted_files: vec![(2, 9)],
            new_files: vec![(
                1,
                FileMeta {
                    number: 10,
                    file_size: 4096,
                    smallest: InternalKey::new(b"a", 1, ValueKind::Put),
                    largest: InternalKey::new(b"b", 2, ValueKind::Delete),
                    smallest_seq: 1,
                    largest_seq: 2,
                    num_entries: 2,
                    num_deletions: 1,
                    global_seq: None,
                    num_range_deletions: 0,
                },
            )],
            compact_pointers: vec![(1, InternalKey::new(b"b", 2, ValueKind::Delete))],
            sealed_logs: vec![SealedLog { number: 11, length: 300, last_sequence: 2 }],
        };
        let mut bytes = Vec::new();
        edit.encode(&mut bytes);
        let expected: Vec<u8> = [
            &[1, 3, 2, 0xac, 0x02, 4, 2, 9, 5, 1, 10, 0x80, 0x20][..],
            &[9, b'a', 0x01, 0x01, 0, 0, 0, 0, 0, 0],
            &[9, b'b', 0x00, 0x02, 0, 0, 0, 0, 0, 0],
            &[1, 2, 2, 1],
            &[6, 1, 9, b'b', 0x00, 0x02, 0, 0, 0, 0, 0, 0],
            &[7, 11, 0xac, 0x02, 2],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }
}
