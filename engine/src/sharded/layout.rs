//! The `SHARDS` file: the persisted shard layout (count, partitioner, split points, shard
//! key, shard directories) at the root of a sharded database. See `docs/format/shards.md`.
//!
//! It is written once, when the database is created, before any shard exists: temp file,
//! `fdatasync`, rename, directory fsync. A crash before the rename leaves no layout (the
//! next open creates it afresh, and no shard holds data yet); after it, the layout is
//! durable and every later open routes keys by it.

use std::path::{Path, PathBuf};

use strata_core::coding::Decoder;
use strata_core::fs::FileSystem;
use strata_core::{Error, IoResultExt, Result};

use super::partitioner::{Partitioner, ShardKey};

/// The layout file's name, at the root.
pub(crate) const LAYOUT_FILE_NAME: &str = "SHARDS";
const TEMP_FILE_NAME: &str = "SHARDS.tmp";
const MAGIC: &[u8; 8] = b"STRASHRD";
/// Version 2 added the shard key; a version-1 file routes by the whole key.
const FORMAT_VERSION: u32 = 2;
const FORMAT_VERSION_WHOLE_KEY: u32 = 1;

/// Partitioner kinds. Written to disk: do not renumber.
const KIND_HASH: u8 = 0;
const KIND_RANGE: u8 = 1;
/// Hash functions of the ring. Written to disk: do not renumber.
const HASH_XXH3_64: u8 = 1;
/// Shard-key kinds. Written to disk: do not renumber.
const SHARD_KEY_WHOLE: u8 = 0;
const SHARD_KEY_PREFIX: u8 = 1;
const SHARD_KEY_UNTIL_BYTE: u8 = 2;
const SHARD_KEY_CUSTOM: u8 = 3;

/// The recorded form of a [`ShardKey`]: a custom one by its name (its function is code,
/// supplied again at every open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShardKeySpec {
    Whole,
    Prefix(u32),
    UntilByte(u8),
    Custom(String),
}

impl ShardKeySpec {
    pub(crate) fn of(key: &ShardKey) -> ShardKeySpec {
        match key {
            ShardKey::Whole => ShardKeySpec::Whole,
            ShardKey::Prefix(n) => ShardKeySpec::Prefix(u32::try_from(*n).unwrap_or(u32::MAX)),
            ShardKey::UntilByte(b) => ShardKeySpec::UntilByte(*b),
            ShardKey::Custom(c) => ShardKeySpec::Custom(c.name().to_string()),
        }
    }
}

/// What the `SHARDS` file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) partitioner: Partitioner,
    /// Ring points per shard (0 under `Range`).
    pub(crate) vnodes_per_shard: u32,
    pub(crate) shard_key: ShardKeySpec,
    /// One directory per shard, as given: relative paths are relative to the root.
    pub(crate) paths: Vec<PathBuf>,
}

impl Layout {
    pub(crate) fn shards(&self) -> usize {
        self.paths.len()
    }

    /// The directory of shard `i`, resolved against the root.
    pub(crate) fn shard_dir(&self, root: &Path, i: usize) -> Option<PathBuf> {
        self.paths.get(i).map(|p| if p.is_absolute() { p.clone() } else { root.join(p) })
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.paths.len() as u32).to_le_bytes());
        match &self.partitioner {
            Partitioner::Hash => {
                body.push(KIND_HASH);
                body.push(HASH_XXH3_64);
                body.extend_from_slice(&self.vnodes_per_shard.to_le_bytes());
            }
            Partitioner::Range(splits) => {
                body.push(KIND_RANGE);
                body.extend_from_slice(&(splits.len() as u32).to_le_bytes());
                for s in splits {
                    put_bytes(&mut body, s);
                }
            }
        }
        match &self.shard_key {
            ShardKeySpec::Whole => body.push(SHARD_KEY_WHOLE),
            ShardKeySpec::Prefix(n) => {
                body.push(SHARD_KEY_PREFIX);
                body.extend_from_slice(&n.to_le_bytes());
            }
            ShardKeySpec::UntilByte(b) => body.extend_from_slice(&[SHARD_KEY_UNTIL_BYTE, *b]),
            ShardKeySpec::Custom(name) => {
                body.push(SHARD_KEY_CUSTOM);
                put_bytes(&mut body, name.as_bytes());
            }
        }
        for p in &self.paths {
            let s = p.to_str().ok_or_else(|| {
                Error::InvalidArgument(format!("shard path {} is not valid UTF-8", p.display()))
            })?;
            put_bytes(&mut body, s.as_bytes());
        }
        let mut out = Vec::with_capacity(body.len() + 20);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    pub(crate) fn decode(file: &Path, bytes: &[u8]) -> Result<Layout> {
        let corrupt = |offset: usize, reason: &str| {
            Error::corruption(file, offset as u64, reason.to_string())
        };
        if bytes.len() < 20 {
            return Err(corrupt(0, "shard layout file shorter than its header and checksum"));
        }
        let (covered, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| corrupt(0, "checksum"))?);
        if crc32fast::hash(covered) != stored {
            return Err(corrupt(covered.len(), "shard layout checksum mismatch"));
        }
        if covered.get(..8) != Some(&MAGIC[..]) {
            return Err(corrupt(0, "bad magic: not a strata shard layout file"));
        }
        let mut d = Decoder::new(covered.get(8..).unwrap_or_default());
        let at = |d: &Decoder<'_>| 8 + d.offset();
        let version = d.u32().ok_or_else(|| corrupt(8, "truncated version"))?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_WHOLE_KEY {
            return Err(corrupt(8, &format!("unsupported shard layout version {version}")));
        }
        let body_len = d.u32().ok_or_else(|| corrupt(12, "truncated length"))? as usize;
        if body_len != d.remaining() {
            return Err(corrupt(12, "body length does not match the file size"));
        }
        let shards = d.u32().ok_or_else(|| corrupt(at(&d), "truncated shard count"))? as usize;
        if shards == 0 {
            return Err(corrupt(16, "zero shards"));
        }
        let kind = d.u8().ok_or_else(|| corrupt(at(&d), "truncated partitioner kind"))?;
        let (partitioner, vnodes_per_shard) = match kind {
            KIND_HASH => {
                let hash = d.u8().ok_or_else(|| corrupt(at(&d), "truncated hash id"))?;
                if hash != HASH_XXH3_64 {
                    return Err(corrupt(at(&d) - 1, &format!("unknown ring hash function {hash}")));
                }
                let vnodes = d.u32().ok_or_else(|| corrupt(at(&d), "truncated vnode count"))?;
                if vnodes == 0 {
                    return Err(corrupt(at(&d) - 4, "zero virtual nodes per shard"));
                }
                (Partitioner::Hash, vnodes)
            }
            KIND_RANGE => {
                let n = d.u32().ok_or_else(|| corrupt(at(&d), "truncated split count"))? as usize;
                if n + 1 != shards {
                    return Err(corrupt(at(&d) - 4, "split count is not shards - 1"));
                }
                let mut splits = Vec::with_capacity(n.min(d.remaining()));
                for _ in 0..n {
                    splits.push(
                        get_bytes(&mut d)
                            .ok_or_else(|| corrupt(at(&d), "truncated split point"))?
                            .to_vec(),
                    );
                }
                (Partitioner::Range(splits), 0)
            }
            other => return Err(corrupt(at(&d) - 1, &format!("unknown partitioner kind {other}"))),
        };
        let shard_key = if version == FORMAT_VERSION_WHOLE_KEY {
            ShardKeySpec::Whole
        } else {
            let offset = at(&d);
            match d.u8().ok_or_else(|| corrupt(offset, "truncated shard key kind"))? {
                SHARD_KEY_WHOLE => ShardKeySpec::Whole,
                SHARD_KEY_PREFIX => ShardKeySpec::Prefix(
                    d.u32().ok_or_else(|| corrupt(at(&d), "truncated shard key prefix"))?,
                ),
                SHARD_KEY_UNTIL_BYTE => ShardKeySpec::UntilByte(
                    d.u8().ok_or_else(|| corrupt(at(&d), "truncated shard key byte"))?,
                ),
                SHARD_KEY_CUSTOM => {
                    let raw = get_bytes(&mut d)
                        .ok_or_else(|| corrupt(at(&d), "truncated shard key name"))?;
                    let name = std::str::from_utf8(raw)
                        .map_err(|_| corrupt(offset, "shard key name is not UTF-8"))?;
                    ShardKeySpec::Custom(name.to_string())
                }
                other => return Err(corrupt(offset, &format!("unknown shard key kind {other}"))),
            }
        };
        let mut paths = Vec::with_capacity(shards.min(d.remaining()));
        for _ in 0..shards {
            let offset = at(&d);
            let raw = get_bytes(&mut d).ok_or_else(|| corrupt(offset, "truncated shard path"))?;
            let s =
                std::str::from_utf8(raw).map_err(|_| corrupt(offset, "shard path is not UTF-8"))?;
            paths.push(PathBuf::from(s));
        }
        if d.remaining() != 0 {
            return Err(corrupt(at(&d), "trailing bytes after the shard paths"));
        }
        super::partitioner::validate(&partitioner, shards)
            .map_err(|e| corrupt(16, &e.to_string()))?;
        Ok(Layout { partitioner, vnodes_per_shard, shard_key, paths })
    }

    /// Reads the layout at `root`, if the database was created.
    pub(crate) fn load(fs: &dyn FileSystem, root: &Path) -> Result<Option<Layout>> {
        let path = root.join(LAYOUT_FILE_NAME);
        if !fs.exists(&path).ctx("stat", &path)? {
            return Ok(None);
        }
        let bytes = fs.read(&path).ctx("read", &path)?;
        Layout::decode(&path, &bytes).map(Some)
    }

    /// Writes the layout durably: temp file, fdatasync, rename, directory fsync.
    pub(crate) fn store(&self, fs: &dyn FileSystem, root: &Path) -> Result<()> {
        let bytes = self.encode()?;
        let tmp = root.join(TEMP_FILE_NAME);
        let path = root.join(LAYOUT_FILE_NAME);
        {
            let mut f = fs.create(&tmp).ctx("create", &tmp)?;
            f.append(&bytes).ctx("write", &tmp)?;
            f.sync_data().ctx("fdatasync", &tmp)?;
        }
        fs.rename(&tmp, &path).ctx("rename", &tmp)?;
        fs.sync_dir(root).ctx("fsync directory", root)?;
        Ok(())
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn get_bytes<'a>(d: &mut Decoder<'a>) -> Option<&'a [u8]> {
    let n = d.u32()? as usize;
    d.bytes(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Layout {
        Layout {
            partitioner: Partitioner::Range(vec![b"g".to_vec(), b"p".to_vec()]),
            vnodes_per_shard: 0,
            shard_key: ShardKeySpec::Custom("tenant".into()),
            paths: vec!["shard-000".into(), "/mnt/b/s1".into(), "shard-002".into()],
        }
    }

    #[test]
    fn round_trips_both_partitioners() {
        let l = sample();
        assert_eq!(Layout::decode(Path::new("SHARDS"), &l.encode().unwrap()).unwrap(), l);
        for shard_key in
            [ShardKeySpec::Whole, ShardKeySpec::Prefix(4), ShardKeySpec::UntilByte(b'/')]
        {
            let h = Layout {
                partitioner: Partitioner::Hash,
                vnodes_per_shard: 1024,
                shard_key,
                paths: vec!["a".into()],
            };
            assert_eq!(Layout::decode(Path::new("SHARDS"), &h.encode().unwrap()).unwrap(), h);
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_corruption() {
        let bytes = sample().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    Layout::decode(Path::new("SHARDS"), &bytes[..n]),
                    Err(Error::Corruption { .. })
                ),
                "prefix {n}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(
                matches!(Layout::decode(Path::new("SHARDS"), &b), Err(Error::Corruption { .. })),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn store_then_load_on_the_simulated_disk_survives_a_crash() {
        use strata_core::sim::{CrashMode, SimFileSystem};
        let fs = SimFileSystem::new();
        let root = Path::new("/db");
        fs.create_dir_all(root).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        sample().store(&fs, root).unwrap();
        fs.crash(CrashMode::SyncedOnly);
        assert_eq!(Layout::load(&fs, root).unwrap(), Some(sample()));
    }

    /// A layout written before shard keys existed (format version 1, the example of
    /// `docs/format/shards.md`) still opens, routing by the whole key.
    #[test]
    fn a_version_1_layout_opens_as_routing_by_the_whole_key() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"STRASHRD");
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&36u32.to_le_bytes());
        v1.extend_from_slice(&2u32.to_le_bytes());
        v1.extend_from_slice(&[KIND_HASH, HASH_XXH3_64]);
        v1.extend_from_slice(&1024u32.to_le_bytes());
        for p in ["shard-000", "shard-001"] {
            put_bytes(&mut v1, p.as_bytes());
        }
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(v1.len(), 56);
        let l = Layout::decode(Path::new("SHARDS"), &v1).unwrap();
        assert_eq!(l.shard_key, ShardKeySpec::Whole);
        assert_eq!(l.partitioner, Partitioner::Hash);
        assert_eq!(l.paths, [PathBuf::from("shard-000"), PathBuf::from("shard-001")]);
    }

    /// The example of `docs/format/shards.md`, byte for byte up to the checksum.
    #[test]
    fn the_documented_example_encodes_as_documented() {
        let l = Layout {
            partitioner: Partitioner::Hash,
            vnodes_per_shard: 1024,
            shard_key: ShardKeySpec::UntilByte(b'/'),
            paths: vec!["shard-000".into(), "shard-001".into()],
        };
        let bytes = l.encode().unwrap();
        assert_eq!(bytes.len(), 58);
        let mut want = b"STRASHRD".to_vec();
        want.extend_from_slice(&[2, 0, 0, 0, 0x26, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 4, 0, 0, 2, b'/']);
        want.extend_from_slice(&[9, 0, 0, 0]);
        want.extend_from_slice(b"shard-000");
        want.extend_from_slice(&[9, 0, 0, 0]);
        want.extend_from_slice(b"shard-001");
        assert_eq!(&bytes[..54], &want[..]);
    }
}
