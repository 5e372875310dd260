//! How keys map to shards: a consistent-hash ring with virtual nodes, or ordered split
//! points. Both are pure functions of their persisted settings, so a key routes to the same
//! shard in every process and after every restart.

use std::ops::Bound;

use strata_core::{Error, Result};
use xxhash_rust::xxh3::xxh3_64;

use crate::db_iter::KeyRange;

/// Virtual nodes each shard places on the hash ring. 1024 points per shard keep every
/// shard's share within a few percent of the mean (relative deviation ≈ 1/√1024 ≈ 3%).
/// The value is persisted in the layout file, so changing this default never re-routes
/// the keys of an existing database.
pub const DEFAULT_VNODES_PER_SHARD: u32 = 1024;

/// How a [`crate::ShardedDb`] assigns keys to shards. Chosen when the database is created
/// and persisted; reopening with a different partitioner is [`Error::InvalidArgument`].
///
/// ```
/// use strata::Partitioner;
/// // Keys spread evenly by hash; range scans visit every shard.
/// let hash = Partitioner::Hash;
/// // Shard 0 owns keys < "g", shard 1 owns ["g", "p"), shard 2 owns keys >= "p";
/// // range scans visit only the shards they overlap.
/// let range = Partitioner::Range(vec![b"g".to_vec(), b"p".to_vec()]);
/// assert_ne!(hash, range);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// Consistent hashing of the key (xxh3-64) on a ring of virtual nodes: balanced for any
    /// key distribution, and a different shard count would move only about 1/N of keys.
    #[default]
    Hash,
    /// Ordered split points: with splits `s0 < s1 < ...`, shard `i` owns the keys in
    /// `[s(i-1), s(i))` (shard 0 everything below `s0`, the last shard everything from the
    /// last split up). Needs exactly `shards - 1` strictly increasing, non-empty splits.
    Range(Vec<Vec<u8>>),
}

/// The consistent-hash ring: sorted `(point, shard)` pairs; a key belongs to the shard of
/// the first point at or after its hash, wrapping around.
///
/// ```
/// use strata::HashRing;
/// let ring = HashRing::new(8, 1024);
/// let shard = ring.shard_for(b"user/42");
/// assert!(shard < 8);
/// assert_eq!(shard, HashRing::new(8, 1024).shard_for(b"user/42")); // a pure function
/// ```
#[derive(Debug, Clone)]
pub struct HashRing {
    points: Vec<(u64, u32)>,
    shards: usize,
}

/// The ring position of virtual node `vnode` of `shard`: a hash of both numbers, so the
/// points of shard `i` do not depend on how many shards there are (which is what makes
/// adding a shard move only the keys the new shard's points capture).
fn vnode_point(shard: u32, vnode: u32) -> u64 {
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(b"strata/v");
    seed[8..12].copy_from_slice(&shard.to_le_bytes());
    seed[12..].copy_from_slice(&vnode.to_le_bytes());
    xxh3_64(&seed)
}

/// A run of consecutive virtual nodes on the ring: the points
/// `vnode_point(seed, first..first + count)`. A new database gives shard `s` the run
/// `(s, 0, vnodes)`; splitting a shard gives the new shard half of each of its runs, and an
/// added shard gets a fresh seed, so points never move between existing shards by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PointRun {
    pub(crate) seed: u32,
    pub(crate) first: u32,
    pub(crate) count: u32,
}

impl HashRing {
    /// The ring of `shards` shards with `vnodes_per_shard` points each (both at least 1).
    pub fn new(shards: usize, vnodes_per_shard: u32) -> HashRing {
        let vnodes = vnodes_per_shard.max(1);
        let runs: Vec<Vec<PointRun>> = (0..shards.max(1) as u32)
            .map(|s| vec![PointRun { seed: s, first: 0, count: vnodes }])
            .collect();
        HashRing::from_runs(&runs)
    }

    /// The ring where shard `i` owns the points of `runs[i]`.
    pub(crate) fn from_runs(runs: &[Vec<PointRun>]) -> HashRing {
        let total: usize = runs.iter().flatten().map(|r| r.count as usize).sum();
        let mut points = Vec::with_capacity(total);
        for (s, shard_runs) in runs.iter().enumerate() {
            for r in shard_runs {
                for v in r.first..r.first.saturating_add(r.count) {
                    points.push((vnode_point(r.seed, v), s as u32));
                }
            }
        }
        // Ties (astronomically rare) are broken by shard number, keeping the ring a pure
        // function of its settings.
        points.sort_unstable();
        HashRing { points, shards: runs.len().max(1) }
    }

    /// The number of shards on the ring.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard that owns `key`.
    pub fn shard_for(&self, key: &[u8]) -> usize {
        let h = xxh3_64(key);
        let i = self.points.partition_point(|&(p, _)| p < h);
        let (_, shard) =
            self.points.get(i).or_else(|| self.points.first()).copied().unwrap_or((0, 0));
        shard as usize
    }
}

/// Which part of a key routes it to a shard ([`crate::ShardedOptions::shard_key`]). Every key
/// with the same shard key lives on one shard, so a batch or a transaction over one entity
/// (a user, a tenant, an aggregate) is atomic on one shard, and its writes keep their order.
/// Persisted in the layout; reopening with a different one is [`Error::InvalidArgument`].
///
/// ```
/// use strata::ShardKey;
/// assert_eq!(ShardKey::UntilByte(b'/').extract(b"user/42/orders/7"), b"user");
/// assert_eq!(ShardKey::Prefix(4).extract(b"acct0007/event/1"), b"acct");
/// assert_eq!(ShardKey::Whole.extract(b"k"), b"k");
/// // The second path segment, e.g. a tenant id under a fixed table name:
/// let tenant = ShardKey::custom("second-segment", |key| {
///     let start = key.iter().position(|&b| b == b'/').map_or(key.len(), |i| i + 1);
///     let len = key[start..].iter().position(|&b| b == b'/').unwrap_or(key.len() - start);
///     start..start + len
/// });
/// assert_eq!(tenant.extract(b"orders/acme/2026/7"), b"acme");
/// ```
#[derive(Clone, Default)]
pub enum ShardKey {
    /// The whole key (the default).
    #[default]
    Whole,
    /// The first `n` bytes (the whole key if it is shorter).
    Prefix(usize),
    /// The bytes before the first occurrence of this byte (the whole key if it has none):
    /// `UntilByte(b'/')` routes `user/42/...` by `user`.
    UntilByte(u8),
    /// A function of the key, named so the layout can record which one routed the data
    /// (see [`ShardKey::custom`]).
    Custom(CustomShardKey),
}

/// A shard-key function: the byte range of a key that routes it.
type KeyPart = dyn Fn(&[u8]) -> std::ops::Range<usize> + Send + Sync;

/// A named shard-key function, from [`ShardKey::custom`].
#[derive(Clone)]
pub struct CustomShardKey {
    name: String,
    part: std::sync::Arc<KeyPart>,
}

impl ShardKey {
    /// A shard key computed by `part`, which returns the byte range of the key that routes
    /// it (clamped to the key). `name` is recorded in the layout: a database created with
    /// one custom shard key must be reopened with the one of the same name, and the function
    /// must never change what it returns for a key, or keys would be looked up on the wrong
    /// shard.
    pub fn custom(
        name: impl Into<String>,
        part: impl Fn(&[u8]) -> std::ops::Range<usize> + Send + Sync + 'static,
    ) -> Self {
        ShardKey::Custom(CustomShardKey { name: name.into(), part: std::sync::Arc::new(part) })
    }

    /// The part of `key` that routes it.
    pub fn extract<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        match self {
            ShardKey::Whole => key,
            ShardKey::Prefix(n) => &key[..(*n).min(key.len())],
            ShardKey::UntilByte(b) => &key[..key.iter().position(|x| x == b).unwrap_or(key.len())],
            ShardKey::Custom(c) => {
                let r = (c.part)(key);
                let end = r.end.min(key.len());
                &key[r.start.min(end)..end]
            }
        }
    }

    /// Whether `a <= b` implies `extract(a) <= extract(b)`: then a range partitioner keeps
    /// the shards' key ranges disjoint and ordered, and a scan visits only the shards its
    /// range can touch. `UntilByte` is not (with `/`: `a.` < `a/x` but `a.` > `a`), nor is
    /// a custom function in general.
    pub(crate) fn preserves_order(&self) -> bool {
        matches!(self, ShardKey::Whole | ShardKey::Prefix(_))
    }
}

impl std::fmt::Debug for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardKey::Whole => write!(f, "Whole"),
            ShardKey::Prefix(n) => write!(f, "Prefix({n})"),
            ShardKey::UntilByte(b) => write!(f, "UntilByte({:?})", *b as char),
            ShardKey::Custom(c) => write!(f, "Custom({:?})", c.name),
        }
    }
}

impl std::fmt::Debug for CustomShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomShardKey").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Shard keys are equal when they route alike: custom ones by name.
impl PartialEq for ShardKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ShardKey::Whole, ShardKey::Whole) => true,
            (ShardKey::Prefix(a), ShardKey::Prefix(b)) => a == b,
            (ShardKey::UntilByte(a), ShardKey::UntilByte(b)) => a == b,
            (ShardKey::Custom(a), ShardKey::Custom(b)) => a.name == b.name,
            _ => false,
        }
    }
}

impl Eq for ShardKey {}

impl CustomShardKey {
    /// The name the layout records.
    ///
    /// ```
    /// use strata::ShardKey;
    /// let ShardKey::Custom(c) = ShardKey::custom("tenant", |k| 0..k.len().min(4)) else { unreachable!() };
    /// assert_eq!(c.name(), "tenant");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The key range a shard owns: lower bound (inclusive) and upper bound (exclusive), `None`
/// for an open end.
pub(crate) type OwnedRange<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The routing table a sharded database uses: the built form of a [`Partitioner`] and the
/// [`ShardKey`] it routes on.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    table: Table,
    key: ShardKey,
}

#[derive(Debug, Clone)]
enum Table {
    Hash(HashRing),
    Range(Vec<Vec<u8>>),
}

impl Router {
    /// The router of `layout`, routing on `key` (which must be the one the layout names).
    pub(crate) fn new(layout: &super::layout::Layout, key: ShardKey) -> Router {
        let table = match &layout.partitioner {
            Partitioner::Hash => Table::Hash(HashRing::from_runs(&layout.ring)),
            Partitioner::Range(splits) => Table::Range(splits.clone()),
        };
        Router { table, key }
    }

    /// The part of `key` that routes it.
    pub(crate) fn shard_key_of<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        self.key.extract(key)
    }

    pub(crate) fn shard_for(&self, key: &[u8]) -> usize {
        let key = self.key.extract(key);
        match &self.table {
            Table::Hash(ring) => ring.shard_for(key),
            // The number of splits at or below the key is the index of its shard.
            Table::Range(splits) => splits.partition_point(|s| s.as_slice() <= key),
        }
    }

    /// Under an ordered range router, the key range shard `i` owns: `[lo, hi)`, `None` for
    /// an open end. `None` for any other router (keys of a shard are not one range).
    pub(crate) fn owned_range(&self, i: usize) -> Option<OwnedRange<'_>> {
        let Table::Range(splits) = &self.table else { return None };
        if !self.key.preserves_order() {
            return None;
        }
        let lo = i.checked_sub(1).and_then(|j| splits.get(j)).map(Vec::as_slice);
        Some((lo, splits.get(i).map(Vec::as_slice)))
    }

    /// Whether the shards hold disjoint, ascending key ranges (so a scan can visit them
    /// one after the other instead of merging).
    pub(crate) fn is_ordered(&self) -> bool {
        matches!(self.table, Table::Range(_)) && self.key.preserves_order()
    }

    /// The shards a scan of `range` must visit, ascending.
    pub(crate) fn shards_for_range(&self, shards: usize, range: &KeyRange) -> Vec<usize> {
        let Table::Range(splits) = &self.table else { return (0..shards).collect() };
        if !self.key.preserves_order() {
            return (0..shards).collect();
        }
        // Keys in the range have shard keys between those of its bounds. A bound that is
        // its own shard key keeps its kind; otherwise it becomes inclusive (a key below an
        // excluded end may still share the end's shard key).
        let route = |b: &Bound<Vec<u8>>| match b {
            Bound::Included(k) | Bound::Excluded(k) if self.key.extract(k) != k.as_slice() => {
                Bound::Included(self.key.extract(k).to_vec())
            }
            other => other.clone(),
        };
        let (start, end) = (route(&range.start), route(&range.end));
        (0..shards)
            .filter(|&i| {
                // Shard i owns [lo, hi): lo = splits[i-1] (none for 0), hi = splits[i].
                let lo = i.checked_sub(1).and_then(|j| splits.get(j));
                let hi = splits.get(i);
                let starts_below_hi = match (hi, &start) {
                    (None, _) | (_, Bound::Unbounded) => true,
                    (Some(hi), Bound::Included(s) | Bound::Excluded(s)) => s < hi,
                };
                let ends_at_or_above_lo = match (lo, &end) {
                    (None, _) | (_, Bound::Unbounded) => true,
                    (Some(lo), Bound::Included(e)) => e >= lo,
                    (Some(lo), Bound::Excluded(e)) => e > lo,
                };
                starts_below_hi && ends_at_or_above_lo
            })
            .collect()
    }
}

/// Checks a partitioner against a shard count.
pub(crate) fn validate(partitioner: &Partitioner, shards: usize) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if let Partitioner::Range(splits) = partitioner {
        if splits.len() + 1 != shards {
            return bad(format!(
                "Partitioner::Range needs shards - 1 = {} split points, got {}",
                shards.saturating_sub(1),
                splits.len()
            ));
        }
        if splits.first().is_some_and(|s| s.is_empty()) {
            return bad("Partitioner::Range split points must not be empty keys".into());
        }
        if splits.windows(2).any(|w| w.first() >= w.get(1)) {
            return bad("Partitioner::Range split points must be strictly increasing".into());
        }
    }
    Ok(())
}

/// Checks a hash layout's ring: every shard owns at least one point, and no point belongs
/// to two shards (runs of one seed do not overlap).
pub(crate) fn validate_ring(ring: &[Vec<PointRun>]) -> Result<()> {
    if ring.iter().any(|runs| runs.iter().all(|r| r.count == 0)) {
        return Err(Error::InvalidArgument("a hash shard owns no ring points".into()));
    }
    let mut runs: Vec<PointRun> = ring.iter().flatten().copied().collect();
    runs.sort_unstable();
    let overlap = runs.windows(2).any(|w| match w {
        [a, b] => a.seed == b.seed && u64::from(a.first) + u64::from(a.count) > u64::from(b.first),
        _ => false,
    });
    if overlap {
        return Err(Error::InvalidArgument("two hash shards own the same ring point".into()));
    }
    Ok(())
}

/// Splits a shard's ring points in two halves: the second half of every run (and every
/// other single-point run) goes to the new shard, so both keep points spread over the
/// whole ring. `None` if the shard owns a single point.
pub(crate) fn halve_runs(runs: &[PointRun]) -> Option<(Vec<PointRun>, Vec<PointRun>)> {
    let (mut keep, mut give) = (Vec::new(), Vec::new());
    let mut singles = 0usize;
    for r in runs.iter().filter(|r| r.count > 0) {
        if r.count == 1 {
            if singles.is_multiple_of(2) {
                keep.push(*r)
            } else {
                give.push(*r)
            }
            singles += 1;
            continue;
        }
        let half = r.count / 2;
        keep.push(PointRun { count: half, ..*r });
        give.push(PointRun { first: r.first + half, count: r.count - half, ..*r });
    }
    (!keep.is_empty() && !give.is_empty()).then_some((keep, give))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn layout(p: Partitioner, shards: usize) -> super::super::layout::Layout {
        let paths = (0..shards).map(|i| format!("s{i}").into()).collect();
        super::super::layout::Layout::new(p, 64, super::super::layout::ShardKeySpec::Whole, paths)
    }

    #[test]
    fn halving_a_shards_points_moves_about_half_its_keys_and_only_to_the_new_shard() {
        let runs = vec![
            vec![PointRun { seed: 0, first: 0, count: 1024 }],
            vec![PointRun { seed: 1, first: 0, count: 1024 }],
        ];
        let (keep, give) = halve_runs(&runs[0]).unwrap();
        let split = vec![keep, runs[1].clone(), give];
        validate_ring(&split).unwrap();
        let (before, after) = (HashRing::from_runs(&runs), HashRing::from_runs(&split));
        let keys = random_keys(100_000);
        let (mut on_zero, mut moved) = (0usize, 0usize);
        for k in &keys {
            let (a, b) = (before.shard_for(k), after.shard_for(k));
            if a == 0 {
                on_zero += 1;
            }
            if a != b {
                assert_eq!((a, b), (0, 2), "only shard 0's keys move, to the new shard");
                moved += 1;
            }
        }
        let share = moved as f64 / on_zero as f64;
        assert!((0.4..0.6).contains(&share), "moved {share:.3} of shard 0's keys");
        assert!(halve_runs(&[PointRun { seed: 3, first: 0, count: 1 }]).is_none());
    }

    fn random_keys(n: usize) -> Vec<[u8; 16]> {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        (0..n).map(|_| rng.random()).collect()
    }

    #[test]
    fn one_million_keys_spread_within_ten_percent_over_eight_shards() {
        let ring = HashRing::new(8, DEFAULT_VNODES_PER_SHARD);
        let mut counts = [0usize; 8];
        let keys = random_keys(1_000_000);
        for k in &keys {
            counts[ring.shard_for(k)] += 1;
        }
        let mean = keys.len() as f64 / 8.0;
        let worst = counts.iter().map(|c| (*c as f64 - mean).abs() / mean).fold(0.0, f64::max);
        println!("8 shards, 1M keys: {counts:?}, worst deviation {:.2}%", worst * 100.0);
        for (i, c) in counts.iter().enumerate() {
            let dev = (*c as f64 - mean).abs() / mean;
            assert!(
                dev <= 0.10,
                "shard {i} holds {c} keys, {:.1}% off the mean {mean}",
                dev * 100.0
            );
        }
    }

    #[test]
    fn going_from_eight_to_nine_shards_moves_about_one_ninth_of_keys_all_to_the_new_shard() {
        let (eight, nine) = (
            HashRing::new(8, DEFAULT_VNODES_PER_SHARD),
            HashRing::new(9, DEFAULT_VNODES_PER_SHARD),
        );
        let keys = random_keys(200_000);
        let mut moved = 0usize;
        for k in &keys {
            let (a, b) = (eight.shard_for(k), nine.shard_for(k));
            if a != b {
                assert_eq!(b, 8, "a key moved between two old shards");
                moved += 1;
            }
        }
        let fraction = moved as f64 / keys.len() as f64;
        let ideal = 1.0 / 9.0;
        println!(
            "8 -> 9 shards moved {:.2}% of keys (ideal {:.2}%)",
            fraction * 100.0,
            ideal * 100.0
        );
        assert!(
            (fraction - ideal).abs() < ideal * 0.15,
            "moved {:.2}% of keys, ideal {:.2}%",
            fraction * 100.0,
            ideal * 100.0
        );
    }

    #[test]
    fn ring_is_a_pure_function_of_its_settings() {
        let a = HashRing::new(5, 64);
        let b = HashRing::new(5, 64);
        assert_eq!(a.points, b.points);
        // Pinned values: the routing of existing databases must never change.
        assert_eq!(xxh3_64(b"strata"), xxh3_64(b"strata"));
        let routed: Vec<usize> = (0..16u32).map(|i| a.shard_for(&i.to_be_bytes())).collect();
        let again: Vec<usize> = (0..16u32).map(|i| b.shard_for(&i.to_be_bytes())).collect();
        assert_eq!(routed, again);
        assert!(routed.iter().any(|&s| s != routed[0]), "all keys on one shard: {routed:?}");
    }

    #[test]
    fn range_router_routes_by_split_points_and_prunes_scans() {
        let splits = vec![b"g".to_vec(), b"p".to_vec()];
        let r = Router::new(&layout(Partitioner::Range(splits), 3), ShardKey::Whole);
        assert_eq!(r.shard_for(b""), 0);
        assert_eq!(r.shard_for(b"f\xff"), 0);
        assert_eq!(r.shard_for(b"g"), 1);
        assert_eq!(r.shard_for(b"o"), 1);
        assert_eq!(r.shard_for(b"p"), 2);
        assert_eq!(r.shard_for(b"zzz"), 2);
        let kr = |s: Bound<&[u8]>, e: Bound<&[u8]>| KeyRange {
            start: s.map(|x| x.to_vec()),
            end: e.map(|x| x.to_vec()),
        };
        use Bound::*;
        assert_eq!(r.shards_for_range(3, &kr(Unbounded, Unbounded)), [0, 1, 2]);
        assert_eq!(r.shards_for_range(3, &kr(Included(b"a"), Excluded(b"g"))), [0]);
        assert_eq!(r.shards_for_range(3, &kr(Included(b"a"), Included(b"g"))), [0, 1]);
        assert_eq!(r.shards_for_range(3, &kr(Included(b"h"), Excluded(b"i"))), [1]);
        assert_eq!(r.shards_for_range(3, &kr(Included(b"p"), Unbounded)), [2]);
        assert_eq!(r.shards_for_range(3, &kr(Excluded(b"f"), Included(b"q"))), [0, 1, 2]);
    }

    #[test]
    fn bad_split_points_are_invalid_arguments() {
        let p = |v: &[&[u8]]| Partitioner::Range(v.iter().map(|s| s.to_vec()).collect());
        assert!(validate(&p(&[b"a", b"b"]), 3).is_ok());
        assert!(validate(&p(&[b"a"]), 3).is_err());
        assert!(validate(&p(&[b"b", b"a"]), 3).is_err());
        assert!(validate(&p(&[b"a", b"a"]), 3).is_err());
        assert!(validate(&p(&[b"", b"a"]), 3).is_err());
        assert!(validate(&Partitioner::Hash, 3).is_ok());
    }

    #[test]
    fn shard_keys_route_an_entity_to_one_shard_and_prune_only_when_order_is_kept() {
        let ring = Router::new(&layout(Partitioner::Hash, 8), ShardKey::UntilByte(b'/'));
        let shard = ring.shard_for(b"user42/profile");
        for k in ["user42/orders/1", "user42/orders/2", "user42"] {
            assert_eq!(ring.shard_for(k.as_bytes()), shard, "{k}");
        }
        let kr = |s: &[u8], e: &[u8]| KeyRange {
            start: Bound::Included(s.to_vec()),
            end: Bound::Excluded(e.to_vec()),
        };
        let splits = vec![b"m".to_vec()];
        let prefix =
            Router::new(&layout(Partitioner::Range(splits.clone()), 2), ShardKey::Prefix(1));
        assert!(prefix.is_ordered());
        assert_eq!(prefix.shards_for_range(2, &kr(b"a", b"c")), [0]);
        assert_eq!(prefix.shards_for_range(2, &kr(b"a", b"m")), [0]);
        assert_eq!(prefix.shards_for_range(2, &kr(b"a", b"mz")), [0, 1], "`ma` < `mz` is on 1");
        let until = Router::new(&layout(Partitioner::Range(splits), 2), ShardKey::UntilByte(b'/'));
        assert!(!until.is_ordered());
        assert_eq!(until.shards_for_range(2, &kr(b"a", b"c")), [0, 1]);
        // Not order-preserving: "a." < "a/x", but their shard keys are "a." > "a".
        assert_eq!(ShardKey::UntilByte(b'/').extract(b"a."), b"a.");
        assert_eq!(ShardKey::UntilByte(b'/').extract(b"a/x"), b"a");
        let clamped = ShardKey::custom("bad-range", |_| 5..100);
        assert_eq!(clamped.extract(b"abc"), b"");
        assert_eq!(ShardKey::custom("x", |_| 0..1), ShardKey::custom("x", |_| 0..2));
    }
}
