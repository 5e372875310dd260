//! The table's bloom filter over user keys (crate `bloomfilter` v3).
//!
//! The builder keeps one 64-bit xxh3 hash per distinct user key (8 bytes per key, the only
//! part of a table's memory that grows with its entry count besides the index) and builds
//! the filter at `finish`, when the key count — and so the right filter size — is known.
//! Each hash is inserted into the bloom filter as its 8 little-endian bytes, so the
//! serialized filter depends neither on the platform's endianness or pointer width nor on
//! any random state: the seed is fixed, and the same keys always give the same bytes.
//!
//! Filter block contents (stored raw, CRC-checked like every block):
//! ```text
//! kind (u8): 0 = no filter (every key may be present), 1 = bloomfilter v3 over xxh3
//! kind 1: the bytes of bloomfilter's `Bloom::as_slice()` (its own header: version,
//!         bitmap length, number of hash functions, 32-byte seed; then the bitmap)
//! ```

use std::hash::{Hash, Hasher};

use bloomfilter::Bloom;
use xxhash_rust::xxh3::xxh3_64;

/// The fixed seed of every table's bloom filter (part of the format: do not change).
const FILTER_SEED: [u8; 32] = *b"strata sstable bloom seed v1 ...";

/// Filter block kind: none. Written to disk: do not renumber.
const KIND_NONE: u8 = 0;
/// Filter block kind: bloomfilter v3 over xxh3-64 hashes. Written to disk: do not renumber.
const KIND_BLOOM_XXH3: u8 = 1;

/// Upper bound on hash functions accepted from a file: bounds the work of one check even
/// for a crafted filter (bloomfilter picks round(bits_per_key * ln 2), so 45 at 64 bits/key).
const MAX_HASH_FUNCTIONS: u32 = 64;

/// The largest bits-per-key setting accepted.
pub(crate) const MAX_BITS_PER_KEY: u32 = 64;

/// An xxh3 hash of a user key, fed to the bloom filter as its little-endian bytes.
pub(crate) struct KeyHash([u8; 8]);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

fn key_hash(user_key: &[u8]) -> KeyHash {
    KeyHash(xxh3_64(user_key).to_le_bytes())
}

/// Collects the hashes of a table's distinct user keys.
#[derive(Debug)]
pub(crate) struct FilterBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl FilterBuilder {
    pub fn new(bits_per_key: u32) -> Self {
        FilterBuilder { bits_per_key, hashes: Vec::new() }
    }

    /// Adds a user key; the caller passes each distinct user key once.
    pub fn add(&mut self, user_key: &[u8]) {
        if self.bits_per_key > 0 {
            self.hashes.push(xxh3_64(user_key));
        }
    }

    /// Bytes of the filter block `finish` would produce (roughly).
    pub fn estimated_size(&self) -> u64 {
        (self.hashes.len() as u64 * u64::from(self.bits_per_key)).div_ceil(8) + 46
    }

    /// The filter block's contents.
    pub fn finish(&self) -> Vec<u8> {
        let n = self.hashes.len();
        if self.bits_per_key == 0 || n == 0 {
            return vec![KIND_NONE];
        }
        let bitmap_bytes = (n as u64 * u64::from(self.bits_per_key)).div_ceil(8).max(1);
        let bloom = usize::try_from(bitmap_bytes)
            .ok()
            .and_then(|bytes| Bloom::<KeyHash>::new_with_seed(bytes, n, &FILTER_SEED).ok());
        let Some(mut bloom) = bloom else {
            // Unreachable in practice (new_with_seed only fails on impossible sizes); a
            // table without a filter is still correct, just slower on misses.
            return vec![KIND_NONE];
        };
        for h in &self.hashes {
            bloom.set(&KeyHash(h.to_le_bytes()));
        }
        let mut out = Vec::with_capacity(1 + bloom.as_slice().len());
        out.push(KIND_BLOOM_XXH3);
        out.extend_from_slice(bloom.as_slice());
        out
    }
}

/// A loaded filter.
pub(crate) enum Filter {
    /// No filter: every key may be present.
    None,
    /// A bloom filter over xxh3 hashes of user keys.
    Bloom(Bloom<KeyHash>),
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::None => f.write_str("Filter::None"),
            Filter::Bloom(b) => write!(f, "Filter::Bloom({} bits)", b.len()),
        }
    }
}

impl Filter {
    /// Parses a (CRC-verified) filter block. Also rejects filters that would make checks
    /// panic or loop for long (empty bitmap, absurd hash-function count, foreign seed).
    pub fn parse(contents: &[u8]) -> Result<Filter, String> {
        let (&kind, rest) = contents.split_first().ok_or("empty filter block")?;
        match kind {
            KIND_NONE if rest.is_empty() => Ok(Filter::None),
            KIND_BLOOM_XXH3 => {
                let bloom = Bloom::<KeyHash>::from_slice(rest)
                    .map_err(|e| format!("malformed bloom filter: {e}"))?;
                // `len()` is the bitmap size in bits (`is_empty()` would mean "no bit set").
                if bloom.len() < 8 {
                    return Err("bloom filter has an empty bitmap".into());
                }
                let k = bloom.number_of_hash_functions();
                if !(1..=MAX_HASH_FUNCTIONS).contains(&k) {
                    return Err(format!("bloom filter has {k} hash functions"));
                }
                if bloom.seed() != FILTER_SEED {
                    return Err("bloom filter seed is not strata's".into());
                }
                Ok(Filter::Bloom(bloom))
            }
            _ => Err(format!("unknown filter kind {kind}")),
        }
    }

    /// Whether `user_key` may be in the table (false: certainly not).
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        match self {
            Filter::None => true,
            Filter::Bloom(b) => b.check(&key_hash(user_key)),
        }
    }

    /// Whether there is a real filter.
    pub fn is_some(&self) -> bool {
        matches!(self, Filter::Bloom(_))
    }

    /// Memory held by the filter.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Filter::None => 0,
            Filter::Bloom(b) => b.as_slice().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_is_reproducible_and_has_no_false_negatives() {
        let mut a = FilterBuilder::new(10);
        let mut b = FilterBuilder::new(10);
        for i in 0..1000 {
            a.add(format!("k{i}").as_bytes());
            b.add(format!("k{i}").as_bytes());
        }
        let (fa, fb) = (a.finish(), b.finish());
        assert_eq!(fa, fb);
        let f = Filter::parse(&fa).unwrap();
        assert!(f.is_some());
        assert!((0..1000).all(|i| f.may_contain(format!("k{i}").as_bytes())));
    }

    #[test]
    fn empty_or_disabled_filter_admits_everything() {
        let f = Filter::parse(&FilterBuilder::new(10).finish()).unwrap();
        assert!(!f.is_some() && f.may_contain(b"x"));
        let mut b = FilterBuilder::new(0);
        b.add(b"k");
        assert!(Filter::parse(&b.finish()).unwrap().may_contain(b"zz"));
    }

    #[test]
    fn malformed_filters_are_rejected() {
        assert!(Filter::parse(&[]).is_err());
        assert!(Filter::parse(&[7]).is_err());
        assert!(Filter::parse(&[0, 1]).is_err());
        assert!(Filter::parse(&[1, 1, 2, 3]).is_err());
        let mut b = FilterBuilder::new(10);
        b.add(b"k");
        let good = b.finish();
        // zero hash functions / absurd count (header: kind, version, len u64, k u32, seed)
        let mut bad = good.clone();
        bad[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Filter::parse(&bad).is_err());
        // empty bitmap with a consistent length
        let mut empty = good[..46].to_vec();
        empty[2..10].copy_from_slice(&0u64.to_le_bytes());
        assert!(Filter::parse(&empty).is_err());
    }
}
