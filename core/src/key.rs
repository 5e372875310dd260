//! Internal keys: a user key plus the sequence number and kind of one version of it.
//!
//! The memtable, the tables and compaction all order versions with [`compare_internal`] —
//! this module is the one place the order is defined: user key ascending (bytewise), then
//! sequence number descending, so that the newest version of a key comes first.
//!
//! Encoded layout (the form stored in tables):
//!
//! ```text
//! +----------------------+-------------------------------------------+
//! | user key (n bytes)   | trailer: u64 little-endian = seq << 8 | kind |
//! +----------------------+-------------------------------------------+
//! ```

use std::cmp::Ordering;

/// A sequence number: every write gets the next one; a version is visible to a reader at
/// sequence `s` when its own sequence is `<= s`. 56 bits, so it packs with the kind.
pub type SeqNo = u64;

/// The largest sequence number a write may carry.
pub const MAX_SEQ: SeqNo = (1 << 56) - 1;

/// Length of the trailer that follows the user key in an encoded internal key.
pub const TRAILER_LEN: usize = 8;

/// What a version of a key is.
///
/// Written to disk (WAL batches, table entries): do not renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ValueKind {
    /// A tombstone: the key was deleted at this sequence number.
    Delete = 0,
    /// A value was put at this sequence number.
    Put = 1,
}

impl ValueKind {
    /// The kind stored as `tag`, if any.
    pub fn from_u8(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(ValueKind::Delete),
            1 => Some(ValueKind::Put),
            _ => None,
        }
    }

    /// The kind used in seek keys: the largest tag, so that a seek key `(k, s)` sorts before
    /// every version of `k` with sequence `<= s`.
    pub const FOR_SEEK: ValueKind = ValueKind::Put;
}

/// Packs a sequence number and kind into the trailer value.
#[inline]
pub fn pack_trailer(seq: SeqNo, kind: ValueKind) -> u64 {
    debug_assert!(seq <= MAX_SEQ);
    (seq << 8) | kind as u64
}

/// Appends the encoded internal key `(user_key, seq, kind)` to `out`.
///
/// ```
/// use strata_core::key::{encode_internal_key, parse_internal_key, ValueKind};
/// let mut k = Vec::new();
/// encode_internal_key(&mut k, b"apple", 42, ValueKind::Put);
/// let p = parse_internal_key(&k).unwrap();
/// assert_eq!((p.user_key, p.seq, p.kind), (&b"apple"[..], 42, ValueKind::Put));
/// ```
#[inline]
pub fn encode_internal_key(out: &mut Vec<u8>, user_key: &[u8], seq: SeqNo, kind: ValueKind) {
    let start = out.len();
    out.resize(start + user_key.len() + TRAILER_LEN, 0);
    write_internal_key(&mut out[start..], user_key, seq, kind);
}

/// Writes the encoded internal key `(user_key, seq, kind)` into `out`, which must be exactly
/// `user_key.len() + TRAILER_LEN` bytes long (for callers that own the memory, such as the
/// memtable's arena).
///
/// ```
/// use strata_core::key::{encode_internal_key, write_internal_key, ValueKind, TRAILER_LEN};
/// let mut buf = [0u8; 3 + TRAILER_LEN];
/// write_internal_key(&mut buf, b"abc", 9, ValueKind::Delete);
/// let mut v = Vec::new();
/// encode_internal_key(&mut v, b"abc", 9, ValueKind::Delete);
/// assert_eq!(&buf[..], &v[..]);
/// ```
///
/// # Panics
/// If `out` has another length.
#[inline]
pub fn write_internal_key(out: &mut [u8], user_key: &[u8], seq: SeqNo, kind: ValueKind) {
    let (user, trailer) = out.split_at_mut(user_key.len());
    user.copy_from_slice(user_key);
    trailer.copy_from_slice(&pack_trailer(seq, kind).to_le_bytes());
}

/// An encoded internal key, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The user's key.
    pub user_key: &'a [u8],
    /// The version's sequence number.
    pub seq: SeqNo,
    /// Put or delete.
    pub kind: ValueKind,
}

/// Splits an encoded internal key; `None` if it is shorter than the trailer or its kind tag
/// is unknown (corruption, for the caller to report with file and offset).
#[inline]
pub fn parse_internal_key(key: &[u8]) -> Option<ParsedKey<'_>> {
    let split = key.len().checked_sub(TRAILER_LEN)?;
    let (user_key, trailer) = key.split_at(split);
    let trailer = u64::from_le_bytes(trailer.try_into().ok()?);
    let kind = ValueKind::from_u8((trailer & 0xff) as u8)?;
    Some(ParsedKey { user_key, seq: trailer >> 8, kind })
}

/// The user-key part of an encoded internal key (the whole slice if it is too short).
#[inline]
pub fn user_key(key: &[u8]) -> &[u8] {
    key.get(..key.len().saturating_sub(TRAILER_LEN)).unwrap_or(key)
}

#[inline]
fn trailer(key: &[u8]) -> u64 {
    let split = key.len().saturating_sub(TRAILER_LEN);
    key.get(split..).and_then(|t| t.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The order of encoded internal keys: user key ascending, then trailer (sequence number,
/// then kind) descending. Malformed keys (shorter than the trailer) compare as user keys
/// with trailer 0, so the order is total even on garbage.
///
/// ```
/// use std::cmp::Ordering;
/// use strata_core::key::{compare_internal, encode_internal_key, ValueKind};
/// let (mut new, mut old, mut other) = (Vec::new(), Vec::new(), Vec::new());
/// encode_internal_key(&mut new, b"k", 9, ValueKind::Put);
/// encode_internal_key(&mut old, b"k", 3, ValueKind::Put);
/// encode_internal_key(&mut other, b"ka", 1, ValueKind::Put);
/// assert_eq!(compare_internal(&new, &old), Ordering::Less); // newer first
/// assert_eq!(compare_internal(&old, &other), Ordering::Less); // then by user key
/// ```
#[inline]
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    compare_user_keys(user_key(a), user_key(b)).then_with(|| trailer(b).cmp(&trailer(a)))
}

/// Bytewise (lexicographic) order of user keys, as `<[u8]>::cmp`, but comparing 8-byte
/// big-endian words first: the skiplist and block searches compare keys millions of times a
/// second, and short keys then rarely pay for a call to `memcmp`.
#[inline]
pub fn compare_user_keys(a: &[u8], b: &[u8]) -> Ordering {
    let (mut x, mut y) = (a, b);
    while let (Some((xw, xr)), Some((yw, yr))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        let (xv, yv) = (u64::from_be_bytes(*xw), u64::from_be_bytes(*yw));
        if xv != yv {
            return xv.cmp(&yv);
        }
        (x, y) = (xr, yr);
    }
    x.cmp(y)
}

/// Compares parsed parts with the same order as [`compare_internal`].
#[inline]
pub fn compare_parts(a_user: &[u8], a_seq: SeqNo, b_user: &[u8], b_seq: SeqNo) -> Ordering {
    compare_user_keys(a_user, b_user).then_with(|| b_seq.cmp(&a_seq))
}

/// An owned encoded internal key whose `Ord` is [`compare_internal`], for ordered
/// containers (the memtable's skiplist, merge heaps).
///
/// ```
/// use strata_core::key::{InternalKey, ValueKind};
/// let a = InternalKey::new(b"k", 9, ValueKind::Put);
/// let b = InternalKey::new(b"k", 3, ValueKind::Delete);
/// assert!(a < b);
/// assert_eq!(b.parse().unwrap().kind, ValueKind::Delete);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InternalKey(Vec<u8>);

impl InternalKey {
    /// Encodes `(user_key, seq, kind)`.
    pub fn new(user_key: &[u8], seq: SeqNo, kind: ValueKind) -> Self {
        let mut v = Vec::with_capacity(user_key.len() + TRAILER_LEN);
        encode_internal_key(&mut v, user_key, seq, kind);
        InternalKey(v)
    }

    /// Wraps already-encoded bytes.
    pub fn from_encoded(bytes: Vec<u8>) -> Self {
        InternalKey(bytes)
    }

    /// The encoded bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.0
    }

    /// The user-key part.
    pub fn user_key(&self) -> &[u8] {
        user_key(&self.0)
    }

    /// The parts, if well-formed.
    pub fn parse(&self) -> Option<ParsedKey<'_>> {
        parse_internal_key(&self.0)
    }

    /// Consumes the key, returning its encoded bytes.
    pub fn into_encoded(self) -> Vec<u8> {
        self.0
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(&self.0, &other.0)
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parse() {
            Some(p) => {
                write!(f, "{:?}@{}:{:?}", String::from_utf8_lossy(p.user_key), p.seq, p.kind)
            }
            None => write!(f, "malformed({:?})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn order_matches_parts(a in proptest::collection::vec(any::<u8>(), 0..6), sa in 0..MAX_SEQ,
                               b in proptest::collection::vec(any::<u8>(), 0..6), sb in 0..MAX_SEQ) {
            let ka = InternalKey::new(&a, sa, ValueKind::Put);
            let kb = InternalKey::new(&b, sb, ValueKind::Put);
            prop_assert_eq!(ka.cmp(&kb), compare_parts(&a, sa, &b, sb));
        }
    }

    proptest! {
        #[test]
        fn user_key_order_is_bytewise(a in proptest::collection::vec(any::<u8>(), 0..40),
                                      b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(compare_user_keys(&a, &b), a.cmp(&b));
            let mut c = a.clone();
            c.extend_from_slice(&b);
            prop_assert_eq!(compare_user_keys(&a, &c), a.cmp(&c));
            prop_assert_eq!(compare_user_keys(&c, &a), c.cmp(&a));
        }
    }

    #[test]
    fn seek_key_sorts_before_versions_at_or_below_its_sequence() {
        let seek = InternalKey::new(b"k", 5, ValueKind::FOR_SEEK);
        assert!(seek <= InternalKey::new(b"k", 5, ValueKind::Delete));
        assert!(seek <= InternalKey::new(b"k", 5, ValueKind::Put));
        assert!(seek < InternalKey::new(b"k", 4, ValueKind::Put));
        assert!(seek > InternalKey::new(b"k", 6, ValueKind::Delete));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        assert!(parse_internal_key(b"short").is_none());
        let mut k = Vec::new();
        k.extend_from_slice(b"k");
        k.extend_from_slice(&((7u64 << 8) | 9).to_le_bytes());
        assert!(parse_internal_key(&k).is_none());
    }
}
