//! Integer coding for on-disk formats, and [`Decoder`], a cursor that never reads past its
//! slice and never trusts a length it has not checked against the bytes that remain.

/// Appends `v` as a LEB128 varint (1 to 10 bytes).
///
/// ```
/// use strata_core::coding::{put_varint, Decoder};
/// let mut buf = Vec::new();
/// put_varint(&mut buf, 300);
/// assert_eq!(buf, [0xac, 0x02]);
/// assert_eq!(Decoder::new(&buf).varint(), Some(300));
/// ```
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The encoded length of `v` as a varint.
#[inline]
pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A bounds-checked reader over a byte slice. Every method returns `None` instead of reading
/// past the end; callers turn `None` into `Error::Corruption` with their file name and
/// [`Decoder::offset`].
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes, if that many remain.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// A varint length followed by that many bytes; the length is checked against what
    /// remains before anything is sliced, so a lying length never allocates or overreads.
    #[inline]
    pub fn length_prefixed(&mut self) -> Option<&'a [u8]> {
        let n = self.varint()?;
        let n = usize::try_from(n).ok()?;
        self.bytes(n)
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self) -> Option<u8> {
        Some(*self.bytes(1)?.first()?)
    }

    /// A little-endian u32.
    #[inline]
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    /// A little-endian u64.
    #[inline]
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A LEB128 varint of at most 10 bytes that fits in a u64.
    #[inline]
    pub fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return None; // more than 64 bits
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    /// The rest of the slice.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<u64>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), varint_len(v));
            let mut d = Decoder::new(&buf);
            prop_assert_eq!(d.varint(), Some(v));
            prop_assert!(d.is_empty());
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Decoder::new(&bytes);
            while d.length_prefixed().is_some() {}
            let mut d = Decoder::new(&bytes);
            let _ = (d.u64(), d.u32(), d.varint(), d.u8());
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        assert_eq!(Decoder::new(&[0xff; 11]).varint(), None);
        assert_eq!(
            Decoder::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
            None
        );
        assert_eq!(Decoder::new(&[0x80]).varint(), None);
    }

    #[test]
    fn lying_length_is_rejected_without_reading() {
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        buf.extend_from_slice(b"abc");
        assert_eq!(Decoder::new(&buf).length_prefixed(), None);
    }
}
