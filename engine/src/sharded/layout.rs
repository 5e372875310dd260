//! The `SHARDS` file: the persisted shard layout (count, partitioner, split points, shard
//! directories) at the root of a sharded database. See `docs/format/shards.md`.
//!
//! It is written once, when the database is created, before any shard exists: temp file,
//! `fdatasync`, rename, directory fsync. A crash before the rename leaves no layout (the
//! next open creates it afresh, and no shard holds data yet); after it, the layout is
//! durable and every later open routes keys by it.

use std::path::{Path, PathBuf};

use strata_core::coding::Decoder;
use strata_core::fs::FileSystem;
use strata_core::{Error, IoResultExt, Result};

use super::partitioner::Partitioner;

/// The layout file's name, at the root.
pub(crate) const LAYOUT_FILE_NAME: &str = "SHARDS";
const TEMP_FILE_NAME: &str = "SHARDS.tmp";
const MAGIC: &[u8; 8] = b"STRASHRD";
const FORMAT_VERSION: u32 = 1;

/// Partitioner kinds. Written to disk: do not renumber.
const KIND_HASH: u8 = 0;
const KIND_RANGE: u8 = 1;
/// Hash functions of the ring. Written to disk: do not renumber.
const HASH_XXH3_64: u8 = 1;

/// What the `SHARDS` file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) partitioner: Partitioner,
    /// Ring points per shard (0 under `Range`).
    pub(crate) vnodes_per_shard: u32,
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
        if version != FORMAT_VERSION {
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
        Ok(Layout { partitioner, vnodes_per_shard, paths })
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
            paths: vec!["shard-000".into(), "/mnt/b/s1".into(), "shard-002".into()],
        }
    }

    #[test]
    fn round_trips_both_partitioners() {
        let l = sample();
        assert_eq!(Layout::decode(Path::new("SHARDS"), &l.encode().unwrap()).unwrap(), l);
        let h = Layout {
            partitioner: Partitioner::Hash,
            vnodes_per_shard: 1024,
            paths: vec!["a".into()],
        };
        assert_eq!(Layout::decode(Path::new("SHARDS"), &h.encode().unwrap()).unwrap(), h);
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
}
