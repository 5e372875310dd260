//! Keys and values as RocksDB's db_bench makes them.
//!
//! Keys are fixed-size: the key index, big-endian, right-aligned in `key_size` bytes with leading
//! zero bytes, so byte order is numeric order. A "missing" key is a real key with one extra byte
//! appended: it sorts between existing keys but can never equal one.
//!
//! Values come from a pool of compressible bytes: every 100-byte piece is `100 * ratio` random bytes
//! repeated to fill the piece, so a general-purpose compressor shrinks values to about `ratio` of
//! their size (db_bench's `--compression_ratio`).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Bytes of the big-endian key index inside a key.
pub const INDEX_BYTES: usize = 8;
/// db_bench's compressible piece length.
const PIECE: usize = 100;
/// Size of the value pool (db_bench uses 1 MiB).
const POOL_BYTES: usize = 1 << 20;

/// Encodes key indexes into fixed-size keys.
#[derive(Clone, Copy, Debug)]
pub struct KeyCodec {
    key_size: usize,
}

impl KeyCodec {
    /// A codec for `key_size`-byte keys; at least [`INDEX_BYTES`] so every index is distinct.
    pub fn new(key_size: usize) -> Result<Self, String> {
        if key_size < INDEX_BYTES {
            return Err(format!("--key-size must be at least {INDEX_BYTES} (got {key_size})"));
        }
        Ok(KeyCodec { key_size })
    }

    /// The key length in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// Write the key for `index` into `buf` (resized to `key_size`).
    pub fn encode(&self, index: u64, buf: &mut Vec<u8>) {
        buf.clear();
        buf.resize(self.key_size - INDEX_BYTES, 0);
        buf.extend_from_slice(&index.to_be_bytes());
    }

    /// Write a key that no `encode` can produce, sorting just after the key for `index`.
    pub fn encode_missing(&self, index: u64, buf: &mut Vec<u8>) {
        self.encode(index, buf);
        buf.push(b'.');
    }

    /// The index of a key made by `encode`, if `key` is one.
    #[cfg(test)]
    pub fn decode(&self, key: &[u8]) -> Option<u64> {
        if key.len() != self.key_size {
            return None;
        }
        let (pad, index) = key.split_at(self.key_size - INDEX_BYTES);
        if pad.iter().any(|&b| b != 0) {
            return None;
        }
        Some(u64::from_be_bytes(index.try_into().ok()?))
    }
}

/// Hands out `value_size`-byte values from a compressible pool.
pub struct ValueGen {
    pool: Vec<u8>,
    pos: usize,
    value_size: usize,
}

impl ValueGen {
    /// A generator of `value_size`-byte values that compress to about `ratio` of their size.
    pub fn new(value_size: usize, ratio: f64, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let pool_len = POOL_BYTES.max(value_size * 2);
        let raw_len = ((PIECE as f64 * ratio.clamp(0.0, 1.0)).round() as usize).clamp(1, PIECE);
        let mut pool = Vec::with_capacity(pool_len + PIECE);
        let mut raw = vec![0u8; raw_len];
        while pool.len() < pool_len {
            rng.fill(&mut raw[..]);
            let start = pool.len();
            while pool.len() - start < PIECE {
                let take = raw_len.min(PIECE - (pool.len() - start));
                pool.extend_from_slice(&raw[..take]);
            }
        }
        pool.truncate(pool_len);
        ValueGen { pool, pos: 0, value_size }
    }

    /// The next value (a window of the pool, like db_bench's `RandomGenerator::Generate`).
    pub fn next_value(&mut self) -> &[u8] {
        if self.pos + self.value_size > self.pool.len() {
            self.pos = 0;
        }
        let start = self.pos;
        self.pos += self.value_size;
        &self.pool[start..self.pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_size_and_sort_numerically() {
        let codec = KeyCodec::new(16).unwrap();
        let mut prev = Vec::new();
        let mut key = Vec::new();
        for index in [0u64, 1, 2, 255, 256, 65_535, 1 << 40, u64::MAX] {
            codec.encode(index, &mut key);
            assert_eq!(key.len(), 16);
            assert_eq!(codec.decode(&key), Some(index));
            assert!(key > prev, "key for {index} must sort after the previous one");
            prev = key.clone();
        }
    }

    #[test]
    fn missing_keys_never_collide_and_sort_between_neighbours() {
        let codec = KeyCodec::new(10).unwrap();
        let (mut key, mut next, mut missing) = (Vec::new(), Vec::new(), Vec::new());
        for index in 0..1000u64 {
            codec.encode(index, &mut key);
            codec.encode(index + 1, &mut next);
            codec.encode_missing(index, &mut missing);
            assert_eq!(codec.decode(&missing), None);
            assert!(key < missing && missing < next);
        }
    }

    #[test]
    fn short_keys_are_rejected() {
        assert!(KeyCodec::new(7).is_err());
        assert!(KeyCodec::new(8).is_ok());
    }

    fn compressed_ratio(data: &[u8]) -> f64 {
        zstd::bulk::compress(data, 3).unwrap().len() as f64 / data.len() as f64
    }

    #[test]
    fn values_compress_to_about_the_ratio() {
        for ratio in [0.25, 0.5, 0.75] {
            let mut gen = ValueGen::new(100, ratio, 7);
            // A 4 KiB block of 100-byte values, as an SSTable data block would hold them.
            let block: Vec<u8> = (0..41).flat_map(|_| gen.next_value().to_vec()).collect();
            let got = compressed_ratio(&block);
            assert!((got - ratio).abs() < 0.1, "ratio {ratio}: block compressed to {got:.3}");
            // One large value compresses alike.
            let mut big = ValueGen::new(8192, ratio, 9);
            let got = compressed_ratio(big.next_value());
            assert!((got - ratio).abs() < 0.1, "ratio {ratio}: 8 KiB value compressed to {got:.3}");
        }
    }

    #[test]
    fn incompressible_values_do_not_compress() {
        let mut gen = ValueGen::new(4096, 1.0, 1);
        assert!(compressed_ratio(gen.next_value()) > 0.95);
    }

    #[test]
    fn values_have_the_requested_size_and_vary() {
        let mut gen = ValueGen::new(1000, 0.5, 3);
        let a = gen.next_value().to_vec();
        let b = gen.next_value().to_vec();
        assert_eq!((a.len(), b.len()), (1000, 1000));
        assert_ne!(a, b);
        let mut huge = ValueGen::new(3 << 20, 0.5, 3);
        assert_eq!(huge.next_value().len(), 3 << 20);
        assert_eq!(huge.next_value().len(), 3 << 20);
    }
}
