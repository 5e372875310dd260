//! [`LogReader`]: reads the records of a log file back at recovery, telling a torn tail
//! (a crash mid-write: dropped and reported) from corruption followed by intact records (an
//! error in [`RecoveryMode::Strict`]). All parsing of fragments is here, including the
//! closer look at a dropped tail that logs synced record by record need
//! ([`LogReader::examine_torn_tail`]).

use std::ops::Range;
use std::path::{Path, PathBuf};

use strata_core::fs::{FileBytes, FileSystem};
use strata_core::{Error, IoResultExt, Result};

use crate::format::{
    file_header, fragment_crc, RecordType, BLOCK_SIZE, FILE_HEADER_LEN, FRAGMENT_HEADER_LEN, MAGIC,
};

/// What recovery does when it finds a damaged record that is followed by intact ones.
///
/// A damaged record with nothing valid after it is always a torn tail — the crash
/// interrupted the last write — and is dropped in either mode (see
/// [`LogReader::dropped_tail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Damage followed by valid records is [`Error::Corruption`]: data that was once
    /// written, and possibly acknowledged as durable, is lost, and the operator must decide.
    #[default]
    Strict,
    /// Recover every record before the first damaged one and drop the rest of the file
    /// (reported by [`LogReader::dropped_tail`] and [`LogReader::stopped_at_corruption`]).
    PointInTime,
}

/// What the bytes a [`LogReader`] dropped as a torn tail turn out to be when examined byte
/// by byte ([`LogReader::examine_torn_tail`]).
///
/// A crash during an append leaves a prefix of what was being written. In a log whose every
/// record is synced before the next is appended (the manifest), that is the last record cut
/// short, [`TornTail::CutShort`]; the two other verdicts are damage that the reader's own
/// scan, which follows length fields and block starts only, could not prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// The dropped bytes are the intact leading fragments of one record, then a strict
    /// prefix of a fragment (or nothing), and no intact fragment starts at any byte after
    /// them: what a crash during the last append leaves.
    CutShort,
    /// The fragment at `at`, after the torn record's intact fragments, is entirely on disk
    /// (its type is valid and its declared length fits the block and the file) but fails its
    /// checksum, or its checksum matches once one damaged header field (the length or the
    /// type) is corrected. A torn write leaves a strict prefix of a fragment, which fits
    /// neither: the fragment was written whole, then damaged.
    DamagedRecord {
        /// File offset of the damaged fragment.
        at: u64,
    },
    /// An intact fragment starts at `intact_at`, after the damage at `at`: the damage is not
    /// at the end of what was written.
    IntactFragmentAfter {
        /// File offset of the first fragment after the torn record's intact ones.
        at: u64,
        /// File offset of the intact fragment found after it.
        intact_at: u64,
    },
}

/// One record read back from a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// File offset of the record's first fragment header.
    pub offset: u64,
    /// The payload exactly as passed to `Wal::append`/`Wal::enqueue`.
    pub payload: &'a [u8],
}

/// Reads the records of one log file in order.
///
/// The whole file is mapped ([`FileSystem::map`]); records that fit one fragment are
/// returned without copying, records that span blocks are joined in a buffer reused across
/// calls.
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use strata_core::fs::FileSystem;
/// use strata_core::sim::SimFileSystem;
/// use strata_wal::{LogReader, RecoveryMode, Wal, WalOptions};
/// let fs = Arc::new(SimFileSystem::new());
/// fs.create_dir_all(Path::new("/db")).unwrap();
/// let wal = Wal::create(fs.clone(), "/db/000001.log", WalOptions::default())?;
/// wal.append(b"first", false)?;
/// wal.append(b"second", true)?;
/// wal.close()?;
///
/// let mut reader = LogReader::open(&*fs, Path::new("/db/000001.log"), RecoveryMode::Strict)?;
/// let mut payloads = Vec::new();
/// while let Some(record) = reader.next_record()? {
///     payloads.push(record.payload.to_vec());
/// }
/// assert_eq!(payloads, [b"first".to_vec(), b"second".to_vec()]);
/// assert_eq!(reader.dropped_tail(), None);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    data: FileBytes,
    mode: RecoveryMode,
    /// File offset of the next fragment to read.
    pos: usize,
    /// Fragments of a record spanning blocks, joined.
    scratch: Vec<u8>,
    dropped: Option<(u64, u64)>,
    stopped_at_corruption: bool,
    /// Set once the end (or an error) was reached; later calls repeat the outcome.
    finished: Option<Result<()>>,
}

/// One fragment parsed at a position where a fragment header fits in the block.
enum Fragment {
    Good {
        ty: RecordType,
        payload: Range<usize>,
        next: usize,
    },
    /// Not a valid fragment. `next` is where the following fragment would start if the
    /// length field can be believed (it fits the block and the file), for the scan that
    /// looks for intact records after damage.
    Bad {
        reason: &'static str,
        next: Option<usize>,
    },
}

impl LogReader {
    /// Maps `path` and validates its file header.
    ///
    /// A file shorter than the header whose bytes are a prefix of a valid header (including
    /// an empty file) was created but never synced before a crash: it reads as holding no
    /// records, with its bytes reported by [`LogReader::dropped_tail`]. A wrong magic,
    /// version or header checksum is [`Error::Corruption`].
    pub fn open(fs: &dyn FileSystem, path: &Path, mode: RecoveryMode) -> Result<LogReader> {
        let data = fs.map(path).ctx("map", path)?;
        let mut reader = LogReader {
            path: path.to_path_buf(),
            data,
            mode,
            pos: FILE_HEADER_LEN,
            scratch: Vec::new(),
            dropped: None,
            stopped_at_corruption: false,
            finished: None,
        };
        reader.check_header()?;
        Ok(reader)
    }

    fn check_header(&mut self) -> Result<()> {
        let expected = file_header();
        let data = &self.data[..];
        if data.len() < FILE_HEADER_LEN {
            if expected.get(..data.len()) == Some(data) {
                self.dropped = Some((0, data.len() as u64));
                self.finished = Some(Ok(()));
                return Ok(());
            }
            return Err(Error::corruption(
                &self.path,
                0,
                "file shorter than the log header and not a prefix of it",
            ));
        }
        if data.get(..8) != Some(&MAGIC[..]) {
            return Err(Error::corruption(&self.path, 0, "bad magic: not a strata log file"));
        }
        if data.get(8..12) != expected.get(8..12) {
            let version =
                data.get(8..12).and_then(|v| v.try_into().ok()).map_or(0, u32::from_le_bytes);
            return Err(Error::corruption(
                &self.path,
                8,
                format!("unsupported log format version {version}"),
            ));
        }
        if data.get(12..16) != expected.get(12..16) {
            return Err(Error::corruption(&self.path, 12, "log file header checksum mismatch"));
        }
        Ok(())
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next record, `Ok(None)` at the end of the log.
    ///
    /// A damaged or truncated record with no valid fragment anywhere after it is a torn
    /// tail: reading ends there and [`LogReader::dropped_tail`] reports it. Damage followed
    /// by valid data is [`Error::Corruption`] (naming the file and the offset of the damaged
    /// fragment) in [`RecoveryMode::Strict`], and ends reading in
    /// [`RecoveryMode::PointInTime`]. After an error, every later call returns it again.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>> {
        if let Some(outcome) = &self.finished {
            return outcome.clone().map(|()| None);
        }
        let len = self.data.len();
        // File offset of the FIRST fragment of a record being joined.
        let mut record_start: Option<usize> = None;
        self.scratch.clear();
        loop {
            let room = BLOCK_SIZE - self.pos % BLOCK_SIZE;
            if room < FRAGMENT_HEADER_LEN {
                self.pos += room; // the zero-padded block trailer
            }
            let at = self.pos;
            if at >= len {
                return match record_start {
                    // The log ends inside a record spanning blocks: torn.
                    Some(start) => self.stop(start, at, "log ends inside a record", false),
                    None => {
                        self.finished = Some(Ok(()));
                        Ok(None)
                    }
                };
            }
            match fragment_at(&self.data, at) {
                Fragment::Bad { reason, next } => {
                    let follows = valid_fragment_after(&self.data, at, next);
                    return self.stop(record_start.unwrap_or(at), at, reason, follows);
                }
                Fragment::Good { ty, payload, next } => {
                    self.pos = next;
                    match (ty, record_start) {
                        (RecordType::Full, None) => {
                            let payload = self.data.get(payload).unwrap_or_default();
                            return Ok(Some(Record { offset: at as u64, payload }));
                        }
                        (RecordType::First, None) => {
                            record_start = Some(at);
                            self.scratch
                                .extend_from_slice(self.data.get(payload).unwrap_or_default());
                        }
                        (RecordType::Middle, Some(_)) => {
                            self.scratch
                                .extend_from_slice(self.data.get(payload).unwrap_or_default());
                        }
                        (RecordType::Last, Some(start)) => {
                            self.scratch
                                .extend_from_slice(self.data.get(payload).unwrap_or_default());
                            return Ok(Some(Record {
                                offset: start as u64,
                                payload: &self.scratch,
                            }));
                        }
                        // A valid fragment that does not continue the record in progress (or
                        // continues one that never started): fragments were lost in between,
                        // and this one proves it was not a crash mid-write.
                        (RecordType::Full | RecordType::First, Some(start)) => {
                            return self.stop(
                                start,
                                start,
                                "record is missing its last fragment",
                                true,
                            );
                        }
                        (RecordType::Middle | RecordType::Last, None) => {
                            return self.stop(
                                at,
                                at,
                                "fragment continues a record whose first fragment is missing",
                                true,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Ends reading at `drop_from` (the first byte not recovered); `damage_at` is where the
    /// damage was detected.
    fn stop(
        &mut self,
        drop_from: usize,
        damage_at: usize,
        reason: &str,
        valid_follows: bool,
    ) -> Result<Option<Record<'_>>> {
        if valid_follows && self.mode == RecoveryMode::Strict {
            let err = Error::corruption(
                &self.path,
                damage_at as u64,
                format!("{reason}, and valid records follow (not a torn tail)"),
            );
            self.finished = Some(Err(err.clone()));
            return Err(err);
        }
        self.stopped_at_corruption = valid_follows;
        let len = self.data.len();
        self.dropped = Some((drop_from as u64, len.saturating_sub(drop_from) as u64));
        self.finished = Some(Ok(()));
        Ok(None)
    }

    /// Where reading stopped short of the end of the file and how many bytes were dropped:
    /// `(offset, bytes)`. Set once [`LogReader::next_record`] returned `Ok(None)` after a
    /// torn tail (or, in [`RecoveryMode::PointInTime`], after corruption), or at open for
    /// a file shorter than its header. `None` if the log ended cleanly.
    pub fn dropped_tail(&self) -> Option<(u64, u64)> {
        self.dropped
    }

    /// Whether reading stopped at damage that valid records follow (only possible in
    /// [`RecoveryMode::PointInTime`]; the engine should log it loudly).
    pub fn stopped_at_corruption(&self) -> bool {
        self.stopped_at_corruption
    }

    /// Examines the tail [`LogReader::dropped_tail`] reports, byte by byte, for a log that
    /// can hold at most one torn record because each record was synced before the next was
    /// appended (the manifest): see [`TornTail`] for the verdicts. `None` if nothing was
    /// dropped. Answers only once [`LogReader::next_record`] returned `Ok(None)`.
    ///
    /// This catches what [`LogReader::next_record`] cannot: damage to a fragment's length
    /// field in the last block hides the records after it from a scan that follows length
    /// fields. The search tries every offset after the break, so its cost grows with the
    /// dropped bytes times a fragment's length; the engine's write-ahead log, whose unsynced
    /// group commits may legitimately end in any bytes, does not call it.
    ///
    /// ```
    /// use std::path::Path;
    /// use strata_core::fs::FileSystem;
    /// use strata_core::sim::SimFileSystem;
    /// use strata_wal::{LogReader, LogWriter, LogWriterOptions, RecoveryMode, TornTail};
    /// let fs = SimFileSystem::new();
    /// fs.create_dir_all(Path::new("/db")).unwrap();
    /// let path = Path::new("/db/MANIFEST-000001");
    /// let mut log = LogWriter::create(&fs, path, LogWriterOptions::default())?;
    /// log.add_record(b"edit 1", true)?;
    /// log.add_record(b"edit 2", true)?;
    /// let mut bytes = fs.read(path).unwrap();
    ///
    /// // A crash during the second append: it is cut short.
    /// fs.overwrite(path, bytes[..bytes.len() - 2].to_vec()).unwrap();
    /// let mut reader = LogReader::open(&fs, path, RecoveryMode::Strict)?;
    /// while reader.next_record()?.is_some() {}
    /// assert_eq!(reader.examine_torn_tail(), Some(TornTail::CutShort));
    ///
    /// // The second record was written whole, then a bit of it flipped.
    /// let last = bytes.len() - 1;
    /// bytes[last] ^= 1;
    /// fs.overwrite(path, bytes).unwrap();
    /// let mut reader = LogReader::open(&fs, path, RecoveryMode::Strict)?;
    /// while reader.next_record()?.is_some() {}
    /// assert!(matches!(reader.examine_torn_tail(), Some(TornTail::DamagedRecord { .. })));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn examine_torn_tail(&self) -> Option<TornTail> {
        let (drop_from, _) = self.dropped?;
        let data = &self.data[..];
        let Ok(mut p) = usize::try_from(drop_from) else { return Some(TornTail::CutShort) };
        if p < FILE_HEADER_LEN {
            // Only a file shorter than its header drops bytes there: its creation was cut.
            return Some(TornTail::CutShort);
        }
        // Walk the intact fragments of the torn record itself.
        while let Fragment::Good { next, .. } = fragment_at(data, p) {
            p = next;
            let room = BLOCK_SIZE - p % BLOCK_SIZE;
            if room < FRAGMENT_HEADER_LEN {
                p += room;
            }
        }
        // A crash leaves a prefix of what was written, and each record was synced before the
        // next was appended, so a fragment whose whole declared length is on disk but whose
        // checksum fails was not torn: it is damage.
        if fragment_is_complete(data, p) {
            return Some(TornTail::DamagedRecord { at: p as u64 });
        }
        let intact = (p.saturating_add(1)..data.len())
            .find(|&at| matches!(fragment_at(data, at), Fragment::Good { .. }));
        Some(match intact {
            Some(intact_at) => {
                TornTail::IntactFragmentAfter { at: p as u64, intact_at: intact_at as u64 }
            }
            None => TornTail::CutShort,
        })
    }
}

/// Whether the fragment at `at`, which failed to read, was written whole: its declared length
/// and type are plausible and all its bytes are on disk (a bit flipped in the checksum or the
/// payload), or its checksum matches once the length is taken as "up to the end of the block
/// or the file" or the type as another valid type (a bit flipped in the length or the type).
/// A torn write leaves a strict prefix of the fragment, which fits none of these.
fn fragment_is_complete(data: &[u8], at: usize) -> bool {
    let Some(header) = data.get(at..at.saturating_add(FRAGMENT_HEADER_LEN)) else { return false };
    let (crc_bytes, rest) = header.split_at(4);
    let Ok(crc) = <[u8; 4]>::try_from(crc_bytes).map(u32::from_le_bytes) else { return false };
    let (declared_len, declared_ty) = match rest {
        [lo, hi, ty] => (usize::from(u16::from_le_bytes([*lo, *hi])), *ty),
        _ => return false,
    };
    let Some(room) = (BLOCK_SIZE - at % BLOCK_SIZE).checked_sub(FRAGMENT_HEADER_LEN) else {
        return false;
    };
    let on_disk = data.len() - at - FRAGMENT_HEADER_LEN;
    if RecordType::from_u8(declared_ty).is_some() && declared_len <= room && declared_len <= on_disk
    {
        return true;
    }
    let payload_start = at + FRAGMENT_HEADER_LEN;
    let matches = |len: usize, ty: u8| {
        let Ok(len16) = u16::try_from(len) else { return false };
        data.get(payload_start..payload_start + len)
            .is_some_and(|payload| fragment_crc(len16, ty, payload) == crc)
    };
    let whole = on_disk.min(room);
    (1..=4).any(|ty| {
        matches(whole, ty) || (declared_len <= on_disk.min(room) && matches(declared_len, ty))
    })
}

/// Parses the fragment at `at`, where at least a fragment header's worth of the block is
/// left (the caller skips block trailers).
fn fragment_at(data: &[u8], at: usize) -> Fragment {
    let room = BLOCK_SIZE - at % BLOCK_SIZE;
    let Some(header) = data
        .get(at..at + FRAGMENT_HEADER_LEN)
        .and_then(|h| <[u8; FRAGMENT_HEADER_LEN]>::try_from(h).ok())
    else {
        return Fragment::Bad { reason: "truncated fragment header", next: None };
    };
    let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len_field = u16::from_le_bytes([header[4], header[5]]);
    let tag = header[6];
    let len = usize::from(len_field);
    let end = at + FRAGMENT_HEADER_LEN + len;
    let fits_block = FRAGMENT_HEADER_LEN + len <= room;
    let next = (fits_block && end <= data.len()).then_some(end);
    let Some(ty) = RecordType::from_u8(tag) else {
        let reason = if header.iter().all(|&b| b == 0) {
            "zero-filled fragment header"
        } else {
            "unknown fragment type"
        };
        return Fragment::Bad { reason, next };
    };
    if !fits_block {
        return Fragment::Bad { reason: "fragment length crosses the block boundary", next: None };
    }
    let Some(payload) = data.get(at + FRAGMENT_HEADER_LEN..end) else {
        return Fragment::Bad { reason: "truncated fragment", next: None };
    };
    if fragment_crc(len_field, tag, payload) != crc {
        return Fragment::Bad { reason: "fragment checksum mismatch", next };
    }
    Fragment::Good { ty, payload: at + FRAGMENT_HEADER_LEN..end, next: end }
}

/// Whether any valid fragment exists after damage found at `bad_at`: first following the
/// damaged fragment's own length within its block (`next`, when believable), then from the
/// start of every later block. Each byte is examined at most a constant number of times,
/// so the whole recovery stays linear in the file size.
fn valid_fragment_after(data: &[u8], bad_at: usize, next: Option<usize>) -> bool {
    let block_start = bad_at - bad_at % BLOCK_SIZE;
    if let Some(next) = next {
        if valid_fragment_in_block(data, next, block_start + BLOCK_SIZE) {
            return true;
        }
    }
    let mut block = block_start + BLOCK_SIZE;
    while block < data.len() {
        if valid_fragment_in_block(data, block, block + BLOCK_SIZE) {
            return true;
        }
        block += BLOCK_SIZE;
    }
    false
}

/// Walks fragments from `p` to `block_end` by their length fields while those are
/// believable; true at the first one whose checksum holds.
fn valid_fragment_in_block(data: &[u8], mut p: usize, block_end: usize) -> bool {
    while p + FRAGMENT_HEADER_LEN <= block_end && p < data.len() {
        match fragment_at(data, p) {
            Fragment::Good { .. } => return true,
            Fragment::Bad { next: Some(next), .. } if next > p => p = next,
            Fragment::Bad { .. } => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame_record;
    use proptest::prelude::*;
    use strata_core::sim::SimFileSystem;

    fn log_bytes(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
        let mut out = file_header().to_vec();
        let mut offsets = Vec::new();
        let mut block_offset = out.len();
        for p in payloads {
            if BLOCK_SIZE - block_offset < FRAGMENT_HEADER_LEN {
                offsets.push((out.len() + BLOCK_SIZE - block_offset) as u64);
            } else {
                offsets.push(out.len() as u64);
            }
            block_offset = frame_record(&mut out, block_offset, p);
        }
        (out, offsets)
    }

    struct Outcome {
        records: Vec<(u64, Vec<u8>)>,
        error: Option<Error>,
        dropped: Option<(u64, u64)>,
        corrupt_tail: bool,
    }

    fn read_all(bytes: &[u8], mode: RecoveryMode) -> Result<Outcome> {
        let fs = SimFileSystem::new();
        let path = Path::new("/log");
        drop(fs.create(path).unwrap());
        fs.overwrite(path, bytes.to_vec()).unwrap();
        let mut reader = LogReader::open(&fs, path, mode)?;
        let mut records = Vec::new();
        let mut error = None;
        for _ in 0..1_000_000 {
            match reader.next_record() {
                Ok(Some(r)) => records.push((r.offset, r.payload.to_vec())),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        // Reading after the end repeats the outcome.
        match (&error, reader.next_record()) {
            (None, Ok(None)) | (Some(_), Err(_)) => {}
            (e, again) => panic!("end not sticky: {e:?} then {again:?}"),
        }
        Ok(Outcome {
            records,
            error,
            dropped: reader.dropped_tail(),
            corrupt_tail: reader.stopped_at_corruption(),
        })
    }

    fn payload(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }

    /// Records of many sizes, several spanning blocks.
    fn sample() -> Vec<Vec<u8>> {
        [10, 0, 100, 40_000, 7, BLOCK_SIZE - 7, 5, 70_000, 3, 200]
            .iter()
            .enumerate()
            .map(|(i, &n)| payload(i, n))
            .collect()
    }

    #[test]
    fn round_trip_with_offsets() {
        let payloads = sample();
        let (bytes, offsets) = log_bytes(&payloads);
        let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
        assert!(out.error.is_none() && out.dropped.is_none());
        let got: Vec<_> = out.records.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(got, payloads);
        let got_offsets: Vec<_> = out.records.iter().map(|(o, _)| *o).collect();
        assert_eq!(got_offsets, offsets);
    }

    #[test]
    fn every_truncation_is_a_torn_tail() {
        let payloads = sample();
        let (bytes, offsets) = log_bytes(&payloads);
        // Cut points around every record boundary and inside records.
        let mut cuts: Vec<usize> = (FILE_HEADER_LEN..bytes.len()).step_by(997).collect();
        for &o in &offsets {
            let o = o as usize;
            cuts.extend([o.saturating_sub(1), o, o + 1, o + 6, o + 7, o + 8]);
        }
        for cut in cuts.into_iter().filter(|&c| c >= FILE_HEADER_LEN && c <= bytes.len()) {
            let out = read_all(&bytes[..cut], RecoveryMode::Strict).unwrap();
            assert!(out.error.is_none(), "cut {cut}: {:?}", out.error);
            let n = out.records.len();
            assert!(payloads
                .starts_with(&out.records.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>()));
            // Everything that was completely written is recovered.
            let complete = offsets.iter().zip(&payloads).take_while(|(o, p)| {
                let end =
                    **o as usize + crate::format::framed_len(**o as usize % BLOCK_SIZE, p.len());
                end <= cut
            });
            assert_eq!(n, complete.count(), "cut {cut}");
            match out.dropped {
                None => assert!(n == payloads.len() || offsets[n] as usize >= cut, "cut {cut}"),
                Some((at, len)) => {
                    assert_eq!(at, offsets[n], "cut {cut}");
                    assert_eq!(at + len, cut as u64);
                }
            }
            assert!(!out.corrupt_tail);
        }
    }

    #[test]
    fn checksum_failure_followed_by_records_is_corruption() {
        let payloads: Vec<_> = (0..5).map(|i| payload(i, 50)).collect();
        let (mut bytes, offsets) = log_bytes(&payloads);
        // Same block: damage record 2's payload; records 3 and 4 follow in the same block.
        let damaged = offsets[2] as usize + FRAGMENT_HEADER_LEN + 3;
        bytes[damaged] ^= 0x40;
        let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
        assert_eq!(out.records.len(), 2);
        match out.error {
            Some(Error::Corruption { file, offset, reason }) => {
                assert_eq!(file, Path::new("/log"));
                assert_eq!(offset, offsets[2]);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        let pit = read_all(&bytes, RecoveryMode::PointInTime).unwrap();
        assert!(pit.error.is_none());
        assert_eq!(pit.records.len(), 2);
        assert_eq!(pit.dropped, Some((offsets[2], bytes.len() as u64 - offsets[2])));
        assert!(pit.corrupt_tail);
    }

    #[test]
    fn damaged_length_is_resolved_at_the_next_block() {
        let payloads: Vec<_> = (0..40).map(|i| payload(i, 2000)).collect();
        let (mut bytes, offsets) = log_bytes(&payloads);
        // A length field pointing past the block: no in-block walk possible, but later
        // blocks hold valid records.
        let at = offsets[1] as usize;
        bytes[at + 5] = 0xff;
        let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
        assert_eq!(out.records.len(), 1);
        assert!(
            matches!(out.error, Some(Error::Corruption { offset, .. }) if offset == offsets[1])
        );
    }

    #[test]
    fn damage_in_the_last_record_is_a_torn_tail() {
        let payloads: Vec<_> = (0..5).map(|i| payload(i, 50)).collect();
        let (mut bytes, offsets) = log_bytes(&payloads);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
        assert!(out.error.is_none());
        assert_eq!(out.records.len(), 4);
        assert_eq!(out.dropped, Some((offsets[4], bytes.len() as u64 - offsets[4])));
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let payloads: Vec<_> = (0..3).map(|i| payload(i, 50)).collect();
        let (mut bytes, offsets) = log_bytes(&payloads);
        let end = bytes.len();
        bytes.resize(end + 3 * BLOCK_SIZE, 0);
        let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
        assert!(out.error.is_none());
        assert_eq!(out.records.len(), 3);
        assert_eq!(out.dropped.map(|d| d.0), Some(offsets[2] + 57));
    }

    #[test]
    fn lost_middle_fragment_is_corruption() {
        let payloads = vec![payload(0, 100), payload(1, 3 * BLOCK_SIZE), payload(2, 100)];
        let (mut bytes, _) = log_bytes(&payloads);
        // Zero the second block: the MIDDLE fragment disappears, LAST and a FULL follow.
        bytes[BLOCK_SIZE..2 * BLOCK_SIZE].fill(0);
        let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
        assert_eq!(out.records.len(), 1);
        assert!(
            matches!(out.error, Some(Error::Corruption { offset, .. }) if offset == BLOCK_SIZE as u64)
        );
    }

    /// Reads `bytes` to the end in strict mode: the records read and the tail's verdict.
    fn examine(bytes: &[u8]) -> (usize, Option<TornTail>) {
        let fs = SimFileSystem::new();
        let path = Path::new("/log");
        drop(fs.create(path).unwrap());
        fs.overwrite(path, bytes.to_vec()).unwrap();
        let mut reader = LogReader::open(&fs, path, RecoveryMode::Strict).unwrap();
        let mut n = 0;
        while reader.next_record().unwrap().is_some() {
            n += 1;
        }
        (n, reader.examine_torn_tail())
    }

    #[test]
    fn every_truncation_examines_as_cut_short() {
        let payloads = sample();
        let (bytes, offsets) = log_bytes(&payloads);
        assert_eq!(examine(&bytes), (payloads.len(), None));
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(1999).collect();
        for &o in &offsets {
            let o = o as usize;
            cuts.extend([o + 1, o + 6, o + 7, o + 8]);
        }
        for cut in cuts.into_iter().filter(|&c| c < bytes.len()) {
            let (_, verdict) = examine(&bytes[..cut]);
            assert!(matches!(verdict, None | Some(TornTail::CutShort)), "cut {cut}: {verdict:?}");
        }
    }

    #[test]
    fn a_last_record_written_whole_then_damaged_is_not_cut_short() {
        let payloads: Vec<_> = (0..5).map(|i| payload(i, 50)).collect();
        let (good, offsets) = log_bytes(&payloads);
        let last = offsets[4] as usize;
        let damaged = |at: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[at] = value;
            bytes
        };
        // A flipped payload bit, a length beyond the block (the checksum holds for the
        // length up to the end of the file), an unknown type (it holds for FULL).
        for (what, bytes) in [
            ("payload", damaged(good.len() - 1, good[good.len() - 1] ^ 1)),
            ("length", damaged(last + 5, 0xff)),
            ("type", damaged(last + 6, 9)),
        ] {
            let (n, verdict) = examine(&bytes);
            assert_eq!(n, 4, "{what}");
            assert_eq!(verdict, Some(TornTail::DamagedRecord { at: last as u64 }), "{what}");
        }
    }

    #[test]
    fn a_damaged_length_hiding_later_records_is_found_byte_by_byte() {
        let payloads: Vec<_> = (0..5).map(|i| payload(i, 50)).collect();
        let (mut bytes, offsets) = log_bytes(&payloads);
        // A length past the block: the reader cannot follow it to records 3 and 4, in the
        // same (last) block, and takes record 2 for a torn tail.
        bytes[offsets[2] as usize + 5] = 0xff;
        let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
        assert!(out.error.is_none());
        assert_eq!(out.dropped.map(|d| d.0), Some(offsets[2]));
        let verdict = examine(&bytes).1;
        let want = TornTail::IntactFragmentAfter { at: offsets[2], intact_at: offsets[3] };
        assert_eq!(verdict, Some(want));
    }

    #[test]
    fn a_cut_header_examines_as_cut_short() {
        let header = file_header();
        for n in [0, 1, 7, FILE_HEADER_LEN - 1] {
            assert_eq!(examine(&header[..n]), (0, Some(TornTail::CutShort)), "prefix of {n}");
        }
    }

    #[test]
    fn header_checks() {
        let header = file_header();
        for n in 0..FILE_HEADER_LEN {
            let out = read_all(&header[..n], RecoveryMode::Strict).unwrap();
            assert!(out.records.is_empty());
            assert_eq!(out.dropped, Some((0, n as u64)), "prefix of {n}");
        }
        let out = read_all(&header, RecoveryMode::Strict).unwrap();
        assert!(out.records.is_empty() && out.dropped.is_none());

        let mut bad_magic = header;
        bad_magic[0] = b'X';
        let err = read_all(&bad_magic, RecoveryMode::Strict).err().unwrap();
        assert!(err.to_string().contains("bad magic"), "{err}");
        assert!(read_all(&bad_magic[..4], RecoveryMode::Strict).err().unwrap().is_corruption());

        let mut version = header;
        version[8] = 2;
        let err = read_all(&version, RecoveryMode::PointInTime).err().unwrap();
        assert!(err.to_string().contains("version 2"), "{err}");

        let mut crc = header;
        crc[15] ^= 1;
        assert!(read_all(&crc, RecoveryMode::Strict)
            .err()
            .unwrap()
            .to_string()
            .contains("header checksum"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_bytes_after_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..3000), raw in any::<bool>()) {
            let mut bytes = if raw { Vec::new() } else { file_header().to_vec() };
            bytes.extend_from_slice(&tail);
            match read_all(&bytes, RecoveryMode::Strict) {
                Ok(out) => {
                    if let Some(e) = out.error { prop_assert!(e.is_corruption()); }
                }
                Err(e) => prop_assert!(e.is_corruption()),
            }
        }

        #[test]
        fn records_round_trip(sizes in proptest::collection::vec(0usize..50_000, 0..12)) {
            let payloads: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| payload(i, n)).collect();
            let (bytes, offsets) = log_bytes(&payloads);
            let out = read_all(&bytes, RecoveryMode::Strict).unwrap();
            prop_assert!(out.error.is_none() && out.dropped.is_none());
            prop_assert_eq!(out.records.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(), payloads);
            prop_assert_eq!(out.records.iter().map(|(o, _)| *o).collect::<Vec<_>>(), offsets);
        }

        /// One flipped byte anywhere never yields wrong data: the reader returns a prefix of
        /// the records, then ends cleanly, as a torn tail, or with corruption.
        #[test]
        fn flipped_byte_yields_a_prefix(sizes in proptest::collection::vec(0usize..20_000, 1..10),
                                        at in any::<prop::sample::Index>(), mask in 1u8..=255) {
            let payloads: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| payload(i, n)).collect();
            let (mut bytes, _) = log_bytes(&payloads);
            let at = FILE_HEADER_LEN + at.index(bytes.len() - FILE_HEADER_LEN);
            bytes[at] ^= mask;
            for mode in [RecoveryMode::Strict, RecoveryMode::PointInTime] {
                let out = read_all(&bytes, mode).unwrap();
                let got: Vec<_> = out.records.iter().map(|(_, p)| p.clone()).collect();
                prop_assert!(payloads.starts_with(&got));
                if let Some(e) = &out.error { prop_assert!(e.is_corruption()); }
                prop_assert!(mode == RecoveryMode::Strict || out.error.is_none());
            }
        }
    }
}
