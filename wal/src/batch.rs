//! [`WriteBatch`]: a group of puts and deletes applied atomically, whose encoding is the WAL
//! record payload, so the write path never re-encodes it.

use std::fmt;

use strata_core::coding::{put_varint, varint_len, Decoder};
use strata_core::key::{SeqNo, ValueKind};

/// Bytes of the batch header: sequence number u64 LE, entry count u32 LE.
pub const BATCH_HEADER_LEN: usize = 12;

/// An ordered group of puts and deletes that the engine applies atomically: readers see
/// all of it or none of it, and after a crash it is recovered whole or not at all.
///
/// ```
/// use strata_wal::WriteBatch;
/// let mut batch = WriteBatch::new();
/// batch.put("apple", "red");
/// batch.delete(b"pear");
/// assert_eq!(batch.len(), 2);
/// let keys: Vec<_> = batch.iter().map(|e| e.key).collect();
/// assert_eq!(keys, [&b"apple"[..], b"pear"]); // in the order they were added
/// ```
///
/// The batch is kept encoded, as the WAL record payload, so the write path never
/// re-encodes it.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// Invariant: starts with a [`BATCH_HEADER_LEN`]-byte header whose count is the number
    /// of well-formed entries that follow.
    rep: Vec<u8>,
    count: u32,
    /// Conditions checked at commit (never logged: a logged batch already passed them).
    expectations: Vec<(Vec<u8>, Expect)>,
}

/// What a conditional write expects of a key's current value when it commits
/// ([`WriteBatch::expect`]).
///
/// ```
/// use strata_wal::{Expect, WriteBatch};
/// let mut b = WriteBatch::new();
/// b.expect("acct/7/version", Expect::Value(b"3".to_vec()));
/// b.put("acct/7/version", "4");
/// assert_eq!(b.expectations().len(), 1);
/// assert!(Expect::Absent.holds(None) && !Expect::Present.holds(None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The key has no value (never written, or deleted).
    Absent,
    /// The key has some value.
    Present,
    /// The key's value is exactly these bytes.
    Value(Vec<u8>),
}

impl Expect {
    /// Whether a key whose current value is `current` meets the expectation.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match (self, current) {
            (Expect::Absent, None) | (Expect::Present, Some(_)) => true,
            (Expect::Value(want), Some(have)) => want.as_slice() == have,
            _ => false,
        }
    }
}

/// What one entry of a [`WriteBatch`] does.
///
/// The tags are written to the log: do not renumber. The point kinds share their tags
/// with [`ValueKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// Deletes one key.
    Delete = 0,
    /// Puts a value.
    Put = 1,
    /// Deletes every key in `key..value` (the entry's value holds the exclusive end).
    DeleteRange = 2,
}

impl EntryKind {
    /// The kind stored as `tag`, if any.
    pub fn from_u8(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(EntryKind::Delete),
            1 => Some(EntryKind::Put),
            2 => Some(EntryKind::DeleteRange),
            _ => None,
        }
    }

    /// The version kind of a point entry; `None` for a range delete.
    ///
    /// ```
    /// use strata_core::key::ValueKind;
    /// use strata_wal::EntryKind;
    /// assert_eq!(EntryKind::Put.point(), Some(ValueKind::Put));
    /// assert_eq!(EntryKind::DeleteRange.point(), None);
    /// ```
    pub fn point(self) -> Option<ValueKind> {
        match self {
            EntryKind::Delete => Some(ValueKind::Delete),
            EntryKind::Put => Some(ValueKind::Put),
            EntryKind::DeleteRange => None,
        }
    }

    /// Whether the entry carries a value after its key (puts, and range deletes' ends).
    fn has_value(self) -> bool {
        self != EntryKind::Delete
    }
}

/// One entry of a [`WriteBatch`], from [`WriteBatch::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry<'a> {
    /// Put, delete or range delete.
    pub kind: EntryKind,
    /// The user key (a range delete's first key).
    pub key: &'a [u8],
    /// The value (empty for a delete; a range delete's exclusive end key).
    pub value: &'a [u8],
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch::new()
    }
}

impl fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBatch")
            .field("sequence", &self.sequence())
            .field("count", &self.count)
            .field("bytes", &self.rep.len())
            .finish()
    }
}

impl WriteBatch {
    /// An empty batch with sequence number 0.
    pub fn new() -> Self {
        WriteBatch { rep: vec![0; BATCH_HEADER_LEN], count: 0, expectations: Vec::new() }
    }

    /// An empty batch with room for `entry_bytes` bytes of entries (see
    /// [`WriteBatch::put_len`]) before it reallocates.
    ///
    /// ```
    /// use strata_wal::{WriteBatch, BATCH_HEADER_LEN};
    /// let mut b = WriteBatch::with_capacity(WriteBatch::put_len(b"key", b"value"));
    /// assert_eq!(b.size_in_bytes(), BATCH_HEADER_LEN); // room reserved, nothing added yet
    /// b.put("key", "value"); // fills the reserved room exactly, no reallocation
    /// assert_eq!(b.len(), 1);
    /// ```
    pub fn with_capacity(entry_bytes: usize) -> Self {
        let mut rep = Vec::with_capacity(BATCH_HEADER_LEN.saturating_add(entry_bytes));
        rep.resize(BATCH_HEADER_LEN, 0);
        WriteBatch { rep, count: 0, expectations: Vec::new() }
    }

    /// The bytes one [`WriteBatch::put`] of `key` and `value` adds to a batch.
    ///
    /// ```
    /// use strata_wal::{WriteBatch, BATCH_HEADER_LEN};
    /// let mut b = WriteBatch::new();
    /// b.put("key", "value");
    /// assert_eq!(b.size_in_bytes(), BATCH_HEADER_LEN + WriteBatch::put_len(b"key", b"value"));
    /// ```
    pub fn put_len(key: &[u8], value: &[u8]) -> usize {
        1 + varint_len(key.len() as u64) + key.len() + varint_len(value.len() as u64) + value.len()
    }

    /// Adds a put of `key` to `value`.
    ///
    /// # Panics
    /// If the batch already holds `u32::MAX` entries (the engine's size limits stop batches
    /// long before that).
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.rep.reserve(Self::put_len(key, value));
        self.rep.push(ValueKind::Put as u8);
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        put_varint(&mut self.rep, value.len() as u64);
        self.rep.extend_from_slice(value);
        self.add_count(1);
    }

    /// Adds a deletion of `key`.
    ///
    /// # Panics
    /// As [`WriteBatch::put`].
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        self.rep.push(ValueKind::Delete as u8);
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        self.add_count(1);
    }

    /// Adds a deletion of every key in `start..end` (`end` excluded): one entry, whatever
    /// the number of keys it covers. Keys written after it (in this batch or later) are
    /// not affected; snapshots taken before it still see the old keys. An empty range
    /// (`start >= end`) deletes nothing.
    ///
    /// ```
    /// use strata_wal::{EntryKind, WriteBatch};
    /// let mut b = WriteBatch::new();
    /// b.delete_range("tenant/7/", "tenant/8");
    /// b.put("tenant/7/name", "new"); // written after the delete: survives it
    /// let first = b.iter().next().unwrap();
    /// assert_eq!((first.kind, first.key, first.value), (EntryKind::DeleteRange, &b"tenant/7/"[..], &b"tenant/8"[..]));
    /// ```
    ///
    /// # Panics
    /// As [`WriteBatch::put`].
    pub fn delete_range(&mut self, start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) {
        let (start, end) = (start.as_ref(), end.as_ref());
        self.rep.reserve(Self::put_len(start, end));
        self.rep.push(EntryKind::DeleteRange as u8);
        put_varint(&mut self.rep, start.len() as u64);
        self.rep.extend_from_slice(start);
        put_varint(&mut self.rep, end.len() as u64);
        self.rep.extend_from_slice(end);
        self.add_count(1);
    }

    /// Whether the batch holds a range delete.
    pub fn has_range_deletes(&self) -> bool {
        self.iter().any(|e| e.kind == EntryKind::DeleteRange)
    }

    fn add_count(&mut self, n: u32) {
        self.count = self
            .count
            .checked_add(n)
            .unwrap_or_else(|| panic!("WriteBatch holds more than u32::MAX entries"));
        self.rep[8..BATCH_HEADER_LEN].copy_from_slice(&self.count.to_le_bytes());
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch has no entries (it may still hold expectations).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Makes the batch conditional: when it commits, `key`'s current value must meet
    /// `expect`, checked atomically with the batch (no write between the check and the
    /// batch), or nothing of the batch is applied and the commit fails with
    /// `Error::ConditionFailed`. Several expectations all must hold. A batch of
    /// expectations alone writes nothing and only checks.
    ///
    /// ```
    /// use strata_wal::{Expect, WriteBatch};
    /// let mut b = WriteBatch::new();
    /// b.expect("stream/9/version", Expect::Absent); // create it only if new
    /// b.put("stream/9/version", "1");
    /// b.put("stream/9/event/1", "created");
    /// assert_eq!(b.len(), 2);
    /// ```
    pub fn expect(&mut self, key: impl AsRef<[u8]>, expect: Expect) {
        self.expectations.push((key.as_ref().to_vec(), expect));
    }

    /// The expectations added with [`WriteBatch::expect`], in order.
    pub fn expectations(&self) -> &[(Vec<u8>, Expect)] {
        &self.expectations
    }

    /// Removes every entry and expectation, keeping the allocation.
    pub fn clear(&mut self) {
        self.rep.clear();
        self.rep.resize(BATCH_HEADER_LEN, 0);
        self.count = 0;
        self.expectations.clear();
    }

    /// The size of the encoding (header included), i.e. of the WAL payload.
    pub fn size_in_bytes(&self) -> usize {
        self.rep.len()
    }

    /// The entries in the order they were added.
    pub fn iter(&self) -> BatchIter<'_> {
        let mut decoder = Decoder::new(&self.rep);
        let _ = decoder.bytes(BATCH_HEADER_LEN);
        BatchIter { decoder, left: self.count }
    }

    /// Appends every entry and expectation of `other` after those of `self` (the sequence
    /// number of `self` is kept).
    ///
    /// # Panics
    /// If the combined batch would hold more than `u32::MAX` entries.
    pub fn append(&mut self, other: &WriteBatch) {
        self.rep.extend_from_slice(other.rep.get(BATCH_HEADER_LEN..).unwrap_or_default());
        self.add_count(other.count);
        self.expectations.extend(other.expectations.iter().cloned());
    }
}

/// The engine's side of a [`WriteBatch`]: its encoding as a WAL record payload and the
/// sequence number in its header. Not for users of strata (the engine assigns sequence
/// numbers at commit, and the encoding is the log's business): a trait rather than inherent
/// methods so that `strata::WriteBatch` offers only what a user builds a batch with, while
/// the engine, in other crates, still reaches these. Hidden from the documentation.
///
/// The encoding:
///
/// ```text
/// sequence u64 LE | count u32 LE | entry * count
/// entry := kind u8 (EntryKind: 0 delete, 1 put, 2 range delete) | varint key_len | key
///          [| varint value_len | value]   (puts; a range delete's value is its end key)
/// ```
///
/// ```
/// use strata_core::key::ValueKind;
/// use strata_wal::{BatchEncoding, WriteBatch};
/// let mut batch = WriteBatch::new();
/// batch.put("apple", "red");
/// batch.delete(b"pear");
/// batch.set_sequence(7);
///
/// // Recovery decodes the payload read back from the log, validating every length.
/// let decoded = WriteBatch::decode(batch.as_bytes().to_vec()).unwrap();
/// assert_eq!(decoded.sequence(), 7);
/// let entries: Vec<_> = decoded.iter().map(|e| (e.kind.point(), e.key, e.value)).collect();
/// assert_eq!(entries, [(Some(ValueKind::Put), &b"apple"[..], &b"red"[..]),
///                      (Some(ValueKind::Delete), &b"pear"[..], &b""[..])]);
/// ```
#[doc(hidden)]
pub trait BatchEncoding: Sized {
    /// The sequence number of the first entry; entry `i` gets `sequence() + i`.
    fn sequence(&self) -> SeqNo;

    /// Sets the sequence number of the first entry (the engine does this when it commits).
    fn set_sequence(&mut self, seq: SeqNo);

    /// The encoded batch: exactly the WAL record payload.
    fn as_bytes(&self) -> &[u8];

    /// Consumes the batch, returning its encoding.
    fn into_bytes(self) -> Vec<u8>;

    /// Decodes and validates a payload read back from the log: the header must be complete,
    /// every kind tag known, every length within the bytes that remain, the number of entries
    /// equal to the header's count, and nothing may follow the last entry. The error says what
    /// is wrong and at which offset of the payload; the caller wraps it into
    /// `Error::Corruption` with the file and the record's offset.
    ///
    /// ```
    /// use strata_wal::{BatchEncoding, WriteBatch};
    /// let mut b = WriteBatch::new();
    /// b.put("k", "v");
    /// let mut bytes = b.as_bytes().to_vec();
    /// bytes.pop(); // lose the last byte of the value
    /// assert!(WriteBatch::decode(bytes).is_err());
    /// ```
    fn decode(bytes: Vec<u8>) -> Result<Self, String>;
}

impl BatchEncoding for WriteBatch {
    fn sequence(&self) -> SeqNo {
        let mut d = Decoder::new(&self.rep);
        d.u64().unwrap_or(0)
    }

    fn set_sequence(&mut self, seq: SeqNo) {
        self.rep[..8].copy_from_slice(&seq.to_le_bytes());
    }

    fn as_bytes(&self) -> &[u8] {
        &self.rep
    }

    fn into_bytes(self) -> Vec<u8> {
        self.rep
    }

    fn decode(bytes: Vec<u8>) -> Result<WriteBatch, String> {
        let count = validate(&bytes)?;
        Ok(WriteBatch { rep: bytes, count, expectations: Vec::new() })
    }
}

/// Checks an encoded batch, returning its entry count.
fn validate(bytes: &[u8]) -> Result<u32, String> {
    let mut d = Decoder::new(bytes);
    let (Some(_seq), Some(count)) = (d.u64(), d.u32()) else {
        return Err(format!(
            "write batch of {} bytes is shorter than its {BATCH_HEADER_LEN}-byte header",
            bytes.len()
        ));
    };
    for i in 0..count {
        let at = d.offset();
        let Some(tag) = d.u8() else {
            return Err(format!("write batch ends after {i} of {count} entries (offset {at})"));
        };
        let kind = EntryKind::from_u8(tag)
            .ok_or_else(|| format!("unknown entry kind {tag} at batch offset {at}"))?;
        if d.length_prefixed().is_none() {
            return Err(format!("entry {i}: key length exceeds the batch (offset {at})"));
        }
        if kind.has_value() && d.length_prefixed().is_none() {
            return Err(format!("entry {i}: value length exceeds the batch (offset {at})"));
        }
    }
    if !d.is_empty() {
        return Err(format!(
            "{} bytes follow the last of {count} entries (offset {})",
            d.remaining(),
            d.offset()
        ));
    }
    Ok(count)
}

impl<'a> BatchIter<'a> {
    /// Iterates the entries of an encoded batch (the bytes of [`BatchEncoding::as_bytes`] or
    /// [`BatchEncoding::into_bytes`]), for a caller that moved the bytes elsewhere. Malformed
    /// bytes end the iteration early; validate untrusted bytes with
    /// [`BatchEncoding::decode`] first.
    ///
    /// ```
    /// use strata_wal::{BatchEncoding, BatchIter, WriteBatch};
    /// let mut b = WriteBatch::new();
    /// b.put("k", "v");
    /// let bytes = b.into_bytes();
    /// let keys: Vec<_> = BatchIter::over(&bytes).map(|e| e.key).collect();
    /// assert_eq!(keys, [&b"k"[..]]);
    /// ```
    pub fn over(encoded: &'a [u8]) -> BatchIter<'a> {
        let mut decoder = Decoder::new(encoded);
        let left = match (decoder.u64(), decoder.u32()) {
            (Some(_), Some(count)) => count,
            _ => 0,
        };
        BatchIter { decoder, left }
    }
}

/// Iterator over the entries of a [`WriteBatch`].
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    decoder: Decoder<'a>,
    left: u32,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = BatchEntry<'a>;

    fn next(&mut self) -> Option<BatchEntry<'a>> {
        if self.left == 0 {
            return None;
        }
        // A batch is well-formed by construction (built by put/delete or validated by
        // decode); the checks only make a broken invariant end the iteration, not panic.
        let kind = EntryKind::from_u8(self.decoder.u8()?)?;
        let key = self.decoder.length_prefixed()?;
        let value = if kind.has_value() { self.decoder.length_prefixed()? } else { &[] };
        self.left -= 1;
        Some(BatchEntry { kind, key, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

impl<'a> IntoIterator for &'a WriteBatch {
    type Item = BatchEntry<'a>;
    type IntoIter = BatchIter<'a>;
    fn into_iter(self) -> BatchIter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (0 delete, 1 put, 2 range delete; key; value or end)
    type Op = (u8, Vec<u8>, Vec<u8>);

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            (
                0u8..3,
                proptest::collection::vec(any::<u8>(), 0..20),
                proptest::collection::vec(any::<u8>(), 0..200),
            ),
            0..20,
        )
    }

    fn build(ops: &[Op]) -> WriteBatch {
        let mut b = WriteBatch::new();
        for (kind, k, v) in ops {
            match kind {
                0 => b.delete(k),
                1 => b.put(k, v),
                _ => b.delete_range(k, v),
            }
        }
        b
    }

    fn expected(ops: &[Op]) -> Vec<(EntryKind, Vec<u8>, Vec<u8>)> {
        ops.iter()
            .map(|(kind, k, v)| match kind {
                0 => (EntryKind::Delete, k.clone(), vec![]),
                1 => (EntryKind::Put, k.clone(), v.clone()),
                _ => (EntryKind::DeleteRange, k.clone(), v.clone()),
            })
            .collect()
    }

    fn entries(b: &WriteBatch) -> Vec<(EntryKind, Vec<u8>, Vec<u8>)> {
        b.iter().map(|e| (e.kind, e.key.to_vec(), e.value.to_vec())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn encode_decode_round_trips(ops in ops(), seq in any::<u64>()) {
            let mut b = build(&ops);
            b.set_sequence(seq);
            prop_assert_eq!(b.len(), ops.len());
            prop_assert_eq!(entries(&b), expected(&ops));
            let d = WriteBatch::decode(b.as_bytes().to_vec()).unwrap();
            prop_assert_eq!(d.sequence(), seq);
            prop_assert_eq!(d.len(), ops.len());
            prop_assert_eq!(entries(&d), expected(&ops));
            prop_assert_eq!(&d, &b);
        }

        #[test]
        fn append_concatenates(a in ops(), b in ops()) {
            let mut x = build(&a);
            x.set_sequence(5);
            x.append(&build(&b));
            let mut all = a.clone();
            all.extend(b);
            prop_assert_eq!(x.sequence(), 5);
            prop_assert_eq!(x.len(), all.len());
            prop_assert_eq!(entries(&x), expected(&all));
            prop_assert!(WriteBatch::decode(x.into_bytes()).is_ok());
        }

        #[test]
        fn decode_of_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(b) = WriteBatch::decode(bytes) {
                // Whatever decodes must iterate exactly `len` entries.
                prop_assert_eq!(b.iter().count(), b.len());
            }
        }

        #[test]
        fn every_truncation_is_rejected(ops in ops(), cut in any::<prop::sample::Index>()) {
            let b = build(&ops);
            let bytes = b.as_bytes();
            let cut = cut.index(bytes.len());
            prop_assert!(WriteBatch::decode(bytes[..cut].to_vec()).is_err());
        }
    }

    #[test]
    fn decode_rejects_lies() {
        let mut b = WriteBatch::new();
        b.put("key", "value");
        let good = b.as_bytes().to_vec();
        // count says 2 entries
        let mut two = good.clone();
        two[8] = 2;
        assert!(WriteBatch::decode(two).unwrap_err().contains("ends after 1 of 2"));
        // trailing garbage
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(WriteBatch::decode(trailing).unwrap_err().contains("follow the last"));
        // unknown kind
        let mut kind = good.clone();
        kind[12] = 9;
        assert!(WriteBatch::decode(kind).unwrap_err().contains("unknown entry kind 9"));
        // huge key length
        let mut huge = good[..13].to_vec();
        put_varint(&mut huge, u64::MAX);
        assert!(WriteBatch::decode(huge).unwrap_err().contains("key length"));
        assert!(WriteBatch::decode(vec![1, 2, 3]).unwrap_err().contains("shorter than"));
    }

    #[test]
    fn clear_resets_everything() {
        let mut b = WriteBatch::new();
        b.put("a", "b");
        b.set_sequence(9);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.sequence(), 0);
        assert_eq!(b.as_bytes(), WriteBatch::new().as_bytes());
        assert_eq!(b.size_in_bytes(), BATCH_HEADER_LEN);
    }
}
