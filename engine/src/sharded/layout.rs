//! The `SHARDS` file: the persisted shard layout (partitioner, split points or ring points,
//! shard key, shard directories) at the root of a sharded database, and the journal of a
//! resharding in progress. See `docs/format/shards.md`.
//!
//! Every write is a whole new file: temp file, `fdatasync`, rename, directory fsync. A crash
//! before the rename leaves the previous layout in force; after the directory fsync the new
//! one is. Resharding ([`super::reshard`]) moves from one layout to the next through such
//! writes, each recording the migration's state, so a reopen knows what to finish or undo.

use std::path::{Path, PathBuf};

use strata_core::coding::Decoder;
use strata_core::fs::FileSystem;
use strata_core::{Error, IoResultExt, Result};

use super::partitioner::{Partitioner, PointRun, ShardKey};

/// The layout file's name, at the root.
pub(crate) const LAYOUT_FILE_NAME: &str = "SHARDS";
const TEMP_FILE_NAME: &str = "SHARDS.tmp";
const MAGIC: &[u8; 8] = b"STRASHRD";
/// Version 3 added the generation, ring points per shard and the migration journal;
/// version 2 the shard key; a version-1 file routes by the whole key.
const FORMAT_VERSION: u32 = 3;
const FORMAT_VERSION_WHOLE_KEY: u32 = 1;
/// The most ring points a layout may hold (4096 shards of 1024 points each).
const MAX_RING_POINTS: u64 = 1 << 22;

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
/// Migration states and kinds. Written to disk: do not renumber.
const MIGRATION_NONE: u8 = 0;
const MIGRATION_COPYING: u8 = 1;
const MIGRATION_CLEANUP: u8 = 2;
const KIND_SPLIT: u8 = 1;
const KIND_ADD: u8 = 2;
const KIND_MOVE: u8 = 3;

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

/// Which resharding operation a migration carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MigrationKind {
    Split,
    Add,
    Move,
}

/// A resharding in progress, as journaled in the layout file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Migration {
    /// Keys are being copied into the new shards of `target`; the layout in force is still
    /// the one holding this record. A reopen rolls back: it empties `new_dirs` and drops the
    /// record (every acknowledged write is still on the old shards).
    Copying { kind: MigrationKind, target: Box<Layout>, new_dirs: Vec<PathBuf> },
    /// The layout holding this record is in force; the `dirty` shards may still hold keys it
    /// routes elsewhere (reads ignore them; cleanup deletes them).
    Cleanup { dirty: Vec<u32> },
}

/// What the `SHARDS` file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// 0 at creation, one more for every completed resharding step that changed routing.
    pub(crate) generation: u64,
    pub(crate) partitioner: Partitioner,
    /// Hash only: each shard's ring points (empty under `Range`).
    pub(crate) ring: Vec<Vec<PointRun>>,
    pub(crate) shard_key: ShardKeySpec,
    /// One directory per shard, as given: relative paths are relative to the root.
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) migration: Option<Migration>,
    /// Directories of shards that left the layout (a moved shard's old home), emptied at
    /// the next close or open.
    pub(crate) orphans: Vec<PathBuf>,
}

impl Layout {
    /// A new layout: `vnodes` ring points per shard under `Hash`.
    pub(crate) fn new(
        partitioner: Partitioner,
        vnodes: u32,
        shard_key: ShardKeySpec,
        paths: Vec<PathBuf>,
    ) -> Layout {
        let ring = match partitioner {
            Partitioner::Hash => (0..paths.len() as u32)
                .map(|s| vec![PointRun { seed: s, first: 0, count: vnodes }])
                .collect(),
            Partitioner::Range(_) => Vec::new(),
        };
        Layout {
            generation: 0,
            partitioner,
            ring,
            shard_key,
            paths,
            migration: None,
            orphans: Vec::new(),
        }
    }

    pub(crate) fn shards(&self) -> usize {
        self.paths.len()
    }

    /// The directory of shard `i`, resolved against the root.
    pub(crate) fn shard_dir(&self, root: &Path, i: usize) -> Option<PathBuf> {
        self.paths.get(i).map(|p| resolve(root, p))
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        self.encode_core(&mut body)?;
        match &self.migration {
            None => body.push(MIGRATION_NONE),
            Some(Migration::Copying { kind, target, new_dirs }) => {
                body.push(MIGRATION_COPYING);
                body.push(match kind {
                    MigrationKind::Split => KIND_SPLIT,
                    MigrationKind::Add => KIND_ADD,
                    MigrationKind::Move => KIND_MOVE,
                });
                target.encode_core(&mut body)?;
                put_paths(&mut body, new_dirs)?;
            }
            Some(Migration::Cleanup { dirty }) => {
                body.push(MIGRATION_CLEANUP);
                body.extend_from_slice(&(dirty.len() as u32).to_le_bytes());
                for d in dirty {
                    body.extend_from_slice(&d.to_le_bytes());
                }
            }
        }
        put_paths(&mut body, &self.orphans)?;
        let mut out = Vec::with_capacity(body.len() + 20);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Everything but the migration record.
    fn encode_core(&self, body: &mut Vec<u8>) -> Result<()> {
        body.extend_from_slice(&self.generation.to_le_bytes());
        body.extend_from_slice(&(self.paths.len() as u32).to_le_bytes());
        match &self.partitioner {
            Partitioner::Hash => {
                body.push(KIND_HASH);
                body.push(HASH_XXH3_64);
                for runs in &self.ring {
                    body.extend_from_slice(&(runs.len() as u32).to_le_bytes());
                    for r in runs {
                        for n in [r.seed, r.first, r.count] {
                            body.extend_from_slice(&n.to_le_bytes());
                        }
                    }
                }
            }
            Partitioner::Range(splits) => {
                body.push(KIND_RANGE);
                body.extend_from_slice(&(splits.len() as u32).to_le_bytes());
                for s in splits {
                    put_bytes(body, s);
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
                put_bytes(body, name.as_bytes());
            }
        }
        for p in &self.paths {
            put_path(body, p)?;
        }
        Ok(())
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
        let mut r = Reader { d: Decoder::new(covered.get(8..).unwrap_or_default()), file };
        let version = r.u32("version")?;
        if !(FORMAT_VERSION_WHOLE_KEY..=FORMAT_VERSION).contains(&version) {
            return Err(corrupt(8, &format!("unsupported shard layout version {version}")));
        }
        let body_len = r.u32("length")? as usize;
        if body_len != r.d.remaining() {
            return Err(corrupt(12, "body length does not match the file size"));
        }
        let mut layout = r.core(version)?;
        if version == FORMAT_VERSION {
            let at = r.at();
            layout.migration = match r.u8("migration state")? {
                MIGRATION_NONE => None,
                MIGRATION_COPYING => {
                    let at = r.at();
                    let kind = match r.u8("migration kind")? {
                        KIND_SPLIT => MigrationKind::Split,
                        KIND_ADD => MigrationKind::Add,
                        KIND_MOVE => MigrationKind::Move,
                        other => {
                            return Err(r.corrupt(at, &format!("unknown migration kind {other}")))
                        }
                    };
                    let target = Box::new(r.core(version)?);
                    let new_dirs = r.paths()?;
                    Some(Migration::Copying { kind, target, new_dirs })
                }
                MIGRATION_CLEANUP => {
                    let n = r.u32("dirty shard count")? as usize;
                    let mut dirty = Vec::with_capacity(n.min(r.d.remaining() / 4));
                    for _ in 0..n {
                        let at = r.at();
                        let d = r.u32("dirty shard")?;
                        if d as usize >= layout.shards() {
                            return Err(r.corrupt(at, "dirty shard beyond the shard count"));
                        }
                        dirty.push(d);
                    }
                    Some(Migration::Cleanup { dirty })
                }
                other => return Err(r.corrupt(at, &format!("unknown migration state {other}"))),
            };
            layout.orphans = r.paths()?;
        }
        if r.d.remaining() != 0 {
            return Err(r.corrupt(r.at(), "trailing bytes after the layout"));
        }
        Ok(layout)
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

/// A shard path resolved against the root.
pub(crate) fn resolve(root: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// Reads a layout body, turning every short read into a corruption error at its offset.
struct Reader<'a> {
    d: Decoder<'a>,
    file: &'a Path,
}

impl<'a> Reader<'a> {
    /// The file offset of the next byte (the decoder starts after the magic).
    fn at(&self) -> usize {
        8 + self.d.offset()
    }

    fn corrupt(&self, offset: usize, reason: &str) -> Error {
        Error::corruption(self.file, offset as u64, reason.to_string())
    }

    fn truncated(&self, what: &str) -> Error {
        self.corrupt(self.at(), &format!("truncated {what}"))
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        self.d.u8().ok_or_else(|| self.truncated(what))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.d.u32().ok_or_else(|| self.truncated(what))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.d.u64().ok_or_else(|| self.truncated(what))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.u32(what)? as usize;
        self.d.bytes(n).ok_or_else(|| self.truncated(what))
    }

    fn path(&mut self) -> Result<PathBuf> {
        let at = self.at();
        let raw = self.bytes("shard path")?;
        let s =
            std::str::from_utf8(raw).map_err(|_| self.corrupt(at, "shard path is not UTF-8"))?;
        Ok(PathBuf::from(s))
    }

    fn paths(&mut self) -> Result<Vec<PathBuf>> {
        let n = self.u32("path count")? as usize;
        let mut paths = Vec::with_capacity(n.min(self.d.remaining() / 4));
        for _ in 0..n {
            paths.push(self.path()?);
        }
        Ok(paths)
    }

    /// A layout without its migration record, as written by format `version`.
    fn core(&mut self, version: u32) -> Result<Layout> {
        let start = self.at();
        let generation = if version == FORMAT_VERSION { self.u64("generation")? } else { 0 };
        let shards = self.u32("shard count")? as usize;
        if shards == 0 {
            return Err(self.corrupt(start, "zero shards"));
        }
        let at = self.at();
        let (partitioner, ring) = match self.u8("partitioner kind")? {
            KIND_HASH => {
                let at = self.at();
                let hash = self.u8("hash id")?;
                if hash != HASH_XXH3_64 {
                    return Err(self.corrupt(at, &format!("unknown ring hash function {hash}")));
                }
                (Partitioner::Hash, self.ring(version, shards)?)
            }
            KIND_RANGE => {
                let at = self.at();
                let n = self.u32("split count")? as usize;
                if n + 1 != shards {
                    return Err(self.corrupt(at, "split count is not shards - 1"));
                }
                let mut splits = Vec::with_capacity(n.min(self.d.remaining() / 4));
                for _ in 0..n {
                    splits.push(self.bytes("split point")?.to_vec());
                }
                (Partitioner::Range(splits), Vec::new())
            }
            other => return Err(self.corrupt(at, &format!("unknown partitioner kind {other}"))),
        };
        let shard_key = if version == FORMAT_VERSION_WHOLE_KEY {
            ShardKeySpec::Whole
        } else {
            let at = self.at();
            match self.u8("shard key kind")? {
                SHARD_KEY_WHOLE => ShardKeySpec::Whole,
                SHARD_KEY_PREFIX => ShardKeySpec::Prefix(self.u32("shard key prefix")?),
                SHARD_KEY_UNTIL_BYTE => ShardKeySpec::UntilByte(self.u8("shard key byte")?),
                SHARD_KEY_CUSTOM => {
                    let raw = self.bytes("shard key name")?;
                    let name = std::str::from_utf8(raw)
                        .map_err(|_| self.corrupt(at, "shard key name is not UTF-8"))?;
                    ShardKeySpec::Custom(name.to_string())
                }
                other => return Err(self.corrupt(at, &format!("unknown shard key kind {other}"))),
            }
        };
        let mut paths = Vec::with_capacity(shards.min(self.d.remaining() / 4));
        for _ in 0..shards {
            paths.push(self.path()?);
        }
        super::partitioner::validate(&partitioner, shards)
            .and_then(|()| super::partitioner::validate_ring(&ring))
            .map_err(|e| self.corrupt(start, &e.to_string()))?;
        Ok(Layout {
            generation,
            partitioner,
            ring,
            shard_key,
            paths,
            migration: None,
            orphans: Vec::new(),
        })
    }

    /// The ring points of every shard: runs per shard (version 3), or one vnode count for
    /// all (versions 1 and 2: shard `s` owns points `(s, 0..vnodes)`).
    fn ring(&mut self, version: u32, shards: usize) -> Result<Vec<Vec<PointRun>>> {
        if version != FORMAT_VERSION {
            let at = self.at();
            let vnodes = self.u32("vnode count")?;
            if vnodes == 0 {
                return Err(self.corrupt(at, "zero virtual nodes per shard"));
            }
            return Ok((0..shards as u32)
                .map(|s| vec![PointRun { seed: s, first: 0, count: vnodes }])
                .collect());
        }
        let mut ring = Vec::with_capacity(shards.min(self.d.remaining() / 4));
        let mut total = 0u64;
        for _ in 0..shards {
            let n = self.u32("ring run count")? as usize;
            let mut runs = Vec::with_capacity(n.min(self.d.remaining() / 12));
            for _ in 0..n {
                let at = self.at();
                let run = PointRun {
                    seed: self.u32("ring run")?,
                    first: self.u32("ring run")?,
                    count: self.u32("ring run")?,
                };
                total += u64::from(run.count);
                if total > MAX_RING_POINTS {
                    return Err(self.corrupt(at, "more ring points than a layout may hold"));
                }
                runs.push(run);
            }
            ring.push(runs);
        }
        Ok(ring)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_path(out: &mut Vec<u8>, p: &Path) -> Result<()> {
    let s = p.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("shard path {} is not valid UTF-8", p.display()))
    })?;
    put_bytes(out, s.as_bytes());
    Ok(())
}

fn put_paths(out: &mut Vec<u8>, paths: &[PathBuf]) -> Result<()> {
    out.extend_from_slice(&(paths.len() as u32).to_le_bytes());
    paths.iter().try_for_each(|p| put_path(out, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Layout {
        let mut l = Layout::new(
            Partitioner::Range(vec![b"g".to_vec(), b"p".to_vec()]),
            0,
            ShardKeySpec::Custom("tenant".into()),
            vec!["shard-000".into(), "/mnt/b/s1".into(), "shard-002".into()],
        );
        l.generation = 7;
        l
    }

    fn hash(shards: u32) -> Layout {
        Layout::new(
            Partitioner::Hash,
            16,
            ShardKeySpec::Prefix(4),
            (0..shards).map(|i| PathBuf::from(format!("s{i}"))).collect(),
        )
    }

    fn samples() -> Vec<Layout> {
        let mut copying = hash(2);
        copying.migration = Some(Migration::Copying {
            kind: MigrationKind::Add,
            target: Box::new(Layout { generation: 1, ..hash(3) }),
            new_dirs: vec!["s2".into()],
        });
        let mut cleanup = sample();
        cleanup.migration = Some(Migration::Cleanup { dirty: vec![0, 2] });
        cleanup.orphans = vec!["/old/s1".into()];
        let mut split_ring = hash(2);
        split_ring.ring[1] = vec![
            PointRun { seed: 1, first: 0, count: 8 },
            PointRun { seed: 0, first: 8, count: 8 },
        ];
        split_ring.ring[0] = vec![PointRun { seed: 0, first: 0, count: 8 }];
        vec![sample(), hash(1), copying, cleanup, split_ring]
    }

    #[test]
    fn round_trips_partitioners_rings_and_migrations() {
        for l in samples() {
            assert_eq!(Layout::decode(Path::new("SHARDS"), &l.encode().unwrap()).unwrap(), l);
        }
        for shard_key in
            [ShardKeySpec::Whole, ShardKeySpec::Prefix(4), ShardKeySpec::UntilByte(b'/')]
        {
            let h = Layout { shard_key, ..hash(3) };
            assert_eq!(Layout::decode(Path::new("SHARDS"), &h.encode().unwrap()).unwrap(), h);
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_corruption() {
        for l in samples() {
            let bytes = l.encode().unwrap();
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
                    matches!(
                        Layout::decode(Path::new("SHARDS"), &b),
                        Err(Error::Corruption { .. })
                    ),
                    "flip at {i}"
                );
            }
        }
    }

    /// A checksum-valid file whose ring gives one point to two shards is refused.
    #[test]
    fn overlapping_ring_runs_are_corruption() {
        let mut l = hash(2);
        l.ring[1] = vec![PointRun { seed: 0, first: 4, count: 4 }];
        let err = Layout::decode(Path::new("SHARDS"), &l.encode().unwrap()).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
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

    /// A layout written before shard keys existed (format version 1) still opens, routing
    /// by the whole key.
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
        assert_eq!(l, Layout { shard_key: ShardKeySpec::Whole, ..two_hash_shards() });
    }

    fn two_hash_shards() -> Layout {
        Layout::new(
            Partitioner::Hash,
            1024,
            ShardKeySpec::UntilByte(b'/'),
            vec!["shard-000".into(), "shard-001".into()],
        )
    }

    /// The version-2 example of `docs/format/shards.md` (written before resharding) opens
    /// as the same layout at generation 0, shard `s` owning ring points `(s, 0..1024)`.
    #[test]
    fn the_documented_version_2_example_still_opens() {
        let mut v2 = b"STRASHRD".to_vec();
        v2.extend_from_slice(&[2, 0, 0, 0, 0x26, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 4, 0, 0, 2, b'/']);
        for p in ["shard-000", "shard-001"] {
            put_bytes(&mut v2, p.as_bytes());
        }
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(v2.len(), 58);
        assert_eq!(Layout::decode(Path::new("SHARDS"), &v2).unwrap(), two_hash_shards());
    }

    /// The version-3 example of `docs/format/shards.md`, byte for byte up to the checksum.
    #[test]
    fn the_documented_example_encodes_as_documented() {
        let bytes = two_hash_shards().encode().unwrap();
        assert_eq!(bytes.len(), 99);
        let mut want = b"STRASHRD".to_vec();
        want.extend_from_slice(&[3, 0, 0, 0, 0x4F, 0, 0, 0]);
        want.extend_from_slice(&[0; 8]); // generation 0
        want.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        for s in 0..2u8 {
            want.extend_from_slice(&[1, 0, 0, 0, s, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0]);
        }
        want.extend_from_slice(&[2, b'/']);
        for p in ["shard-000", "shard-001"] {
            put_bytes(&mut want, p.as_bytes());
        }
        want.push(0); // no migration
        want.extend_from_slice(&[0, 0, 0, 0]); // no orphaned directories
        assert_eq!(&bytes[..95], &want[..]);
    }
}
