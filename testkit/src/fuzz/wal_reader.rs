//! The `wal_reader` target: bytes as a log file, read to the end in both recovery modes.

use std::path::Path;
use std::sync::Arc;

use arbitrary::Unstructured;
use strata::{Error, WriteBatch};
use strata_core::fs::FileSystem;
use strata_core::sim::SimFileSystem;
use strata_wal::{BatchEncoding, LogReader, RecoveryMode, Wal, WalOptions};

use super::input::{assert_corruption_of, byte, disk_with_file, length_prefixed, u16_le};

pub(crate) const WAL_PATH: &str = "/db/000009.log";

/// `wal_reader`: bytes as a log file, read to the end in both recovery modes.
///
/// Layout: `flags u8`, then
/// * raw mode (flags bit 2 clear): the file's bytes, after the valid 16-byte file header if
///   bit 1 is set;
/// * framed mode (bit 2 set): `[cut u16]` if bit 3, `[flip_at u16, mask u8]` if bit 4, then
///   payloads as `[len u16 LE][bytes]`, each stretched by cycling to 16 × `len` bytes if bit 5
///   (records spanning blocks). The harness writes them with [`Wal`], then cuts the file at
///   `cut` (a torn tail) and xors the byte at `flip_at` with `mask`.
///
/// Checks: no panic and termination; errors are corruption naming the log; both modes read
/// the same records and PointInTime never fails after open; in framed mode the records read
/// are a prefix of those written (all of them without damage); every record that decodes as
/// a write batch iterates without panic.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let path = Path::new(WAL_PATH);
    let (file, written) = if flags & 4 == 0 {
        let mut file = Vec::new();
        if flags & 2 != 0 {
            file.extend_from_slice(&strata_wal::format::file_header());
        }
        file.extend_from_slice(u.take_rest());
        (file, None)
    } else {
        let cut = (flags & 8 != 0).then(|| usize::from(u16_le(&mut u)));
        let flip = (flags & 16 != 0).then(|| (usize::from(u16_le(&mut u)), byte(&mut u)));
        let mut payloads = length_prefixed(&mut u, 64);
        if flags & 32 != 0 {
            for p in &mut payloads {
                let want = p.len() * 16;
                let stretched: Vec<u8> = p.iter().copied().cycle().take(want).collect();
                *p = stretched;
            }
        }
        let fs = SimFileSystem::new();
        fs.create_dir_all(Path::new("/db")).expect("sim mkdir");
        let wal =
            Wal::create(Arc::new(fs.clone()), path, WalOptions::default()).expect("create log");
        for p in &payloads {
            wal.append(p, false).expect("append to log");
        }
        wal.close().expect("close log");
        let mut file = fs.read(path).expect("read log back");
        let damaged = cut.is_some_and(|c| c < file.len())
            || flip.is_some_and(|(at, m)| m != 0 && at < file.len());
        if let Some(c) = cut {
            file.truncate(c);
        }
        if let Some((at, mask)) = flip {
            if let Some(b) = file.get_mut(at) {
                *b ^= mask;
            }
        }
        (file, Some((payloads, damaged)))
    };

    let strict = read_log(&file, RecoveryMode::Strict);
    let pit = read_log(&file, RecoveryMode::PointInTime);
    match (&strict, &pit) {
        (Err(a), Err(b)) => {
            assert_corruption_of(a, path);
            assert_eq!(a.to_string(), b.to_string(), "open fails differently per mode");
        }
        (Ok(s), Ok(p)) => {
            assert_eq!(s.records, p.records, "the modes read different records");
            assert!(p.error.is_none(), "PointInTime failed after open: {:?}", p.error);
            if let Some(e) = &s.error {
                assert_corruption_of(e, path);
                assert!(
                    p.stopped_at_corruption,
                    "Strict saw corruption, PointInTime did not report it"
                );
            }
            for r in &s.records {
                if let Ok(batch) = WriteBatch::decode(r.clone()) {
                    let n = batch.iter().count();
                    assert_eq!(n, batch.len(), "batch count disagrees with its entries");
                }
            }
            if let Some((payloads, damaged)) = &written {
                assert!(
                    payloads.starts_with(&s.records),
                    "log reader returned data that was never written"
                );
                if !damaged {
                    assert_eq!(&s.records, payloads, "undamaged log lost records");
                    assert!(s.error.is_none() && s.dropped.is_none());
                }
            }
        }
        (a, b) => {
            panic!("open succeeds in one mode only: strict {:?} / pit {:?}", a.is_ok(), b.is_ok())
        }
    }
}

struct LogOutcome {
    records: Vec<Vec<u8>>,
    error: Option<Error>,
    dropped: Option<(u64, u64)>,
    stopped_at_corruption: bool,
}

fn read_log(file: &[u8], mode: RecoveryMode) -> Result<LogOutcome, Error> {
    let path = Path::new(WAL_PATH);
    let fs = disk_with_file(path, file);
    let mut reader = LogReader::open(&fs, path, mode)?;
    let mut records = Vec::new();
    let mut error = None;
    // Every record takes at least a 7-byte fragment header: more iterations is a hang.
    let bound = file.len() / 7 + 2;
    let mut last_offset = None;
    loop {
        assert!(records.len() <= bound, "log reader does not terminate");
        match reader.next_record() {
            Ok(Some(r)) => {
                assert!(r.offset < file.len() as u64, "record offset past the end");
                assert!(last_offset.is_none_or(|o| r.offset > o), "record offsets do not increase");
                assert!(r.payload.len() <= file.len(), "record larger than the file");
                last_offset = Some(r.offset);
                records.push(r.payload.to_vec());
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    // The end is sticky.
    match (&error, reader.next_record()) {
        (None, Ok(None)) | (Some(_), Err(_)) => {}
        (e, again) => {
            panic!("end of log not sticky: {e:?} then {:?}", again.map(|r| r.map(|r| r.offset)))
        }
    }
    if let Some((at, len)) = reader.dropped_tail() {
        assert!(
            at.checked_add(len).is_some_and(|end| end <= file.len() as u64),
            "dropped tail outside the file"
        );
    }
    Ok(LogOutcome {
        records,
        error,
        dropped: reader.dropped_tail(),
        stopped_at_corruption: reader.stopped_at_corruption(),
    })
}
