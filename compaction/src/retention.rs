//! Which versions a compaction may drop: snapshot stripes and the tombstone rule.

use strata_core::key::{SeqNo, ValueKind};

/// What to do with one version met by a compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it to the output.
    Keep,
    /// A newer version of the key in the same snapshot stripe hides it from every reader.
    DropShadowed,
    /// A tombstone every reader sees, with nothing left below for it to hide.
    DropTombstone,
}

/// The snapshot-stripe rule (RocksDB style), fed the versions of the compaction in internal
/// key order (user key ascending, sequence descending).
///
/// The readers that can exist are the live snapshots and every reader at or after the
/// horizon. Sort their sequence numbers `b0 < b1 < ... < bk = horizon`; a version with
/// sequence `s` lies in stripe `i`, the first `i` with `s <= b_i`, and versions newer than
/// the horizon each lie alone in a stripe (a reader may see any of them). A reader at `b_i`
/// sees, per key, the newest version of stripes `0..=i`; so within one stripe only the
/// newest version of a key can be seen by anyone, and the others are dropped.
///
/// A tombstone is dropped only if it lies in stripe 0 (every reader sees it, so none sees
/// anything older) and no level below the output can hold the key (`key_may_be_below`
/// false): then the older versions of stripe 0 are dropped with it and every reader finds
/// nothing, as before.
#[derive(Debug)]
pub(crate) struct Retention {
    /// `snapshots ∪ {horizon}`, ascending, without duplicates.
    boundaries: Vec<SeqNo>,
    current_key: Vec<u8>,
    has_key: bool,
    /// Stripe of the previous (newer) version of `current_key`.
    last_stripe: Option<Stripe>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stripe {
    /// Index into `boundaries`.
    Below(usize),
    /// Newer than the horizon: the version's own sequence number.
    Above(SeqNo),
}

impl Retention {
    pub(crate) fn new(snapshots: &[SeqNo], horizon: SeqNo) -> Self {
        let mut boundaries: Vec<SeqNo> =
            snapshots.iter().copied().filter(|&s| s < horizon).collect();
        boundaries.push(horizon);
        boundaries.sort_unstable();
        boundaries.dedup();
        Retention { boundaries, current_key: Vec::new(), has_key: false, last_stripe: None }
    }

    fn stripe(&self, seq: SeqNo) -> Stripe {
        let i = self.boundaries.partition_point(|&b| b < seq);
        if i < self.boundaries.len() {
            Stripe::Below(i)
        } else {
            Stripe::Above(seq)
        }
    }

    /// The newest reader's sequence number of the stripe holding `seq` (`None` when `seq`
    /// is newer than the horizon: a stripe of its own, which nothing newer shares).
    pub(crate) fn stripe_top(&self, seq: SeqNo) -> Option<SeqNo> {
        match self.stripe(seq) {
            Stripe::Below(i) => self.boundaries.get(i).copied(),
            Stripe::Above(_) => None,
        }
    }

    /// Whether every reader sees a write at `seq` (it lies in stripe 0).
    pub(crate) fn seen_by_all(&self, seq: SeqNo) -> bool {
        self.stripe(seq) == Stripe::Below(0)
    }

    /// Decides the fate of the next version. `key_may_be_below` is asked only for
    /// tombstones in stripe 0.
    pub(crate) fn decide(
        &mut self,
        user_key: &[u8],
        seq: SeqNo,
        kind: ValueKind,
        key_may_be_below: impl FnOnce(&[u8]) -> bool,
    ) -> Verdict {
        if !self.has_key || self.current_key != user_key {
            self.current_key.clear();
            self.current_key.extend_from_slice(user_key);
            self.has_key = true;
            self.last_stripe = None;
        }
        let stripe = self.stripe(seq);
        let previous = self.last_stripe.replace(stripe);
        if previous == Some(stripe) {
            return Verdict::DropShadowed;
        }
        if kind == ValueKind::Delete && stripe == Stripe::Below(0) && !key_may_be_below(user_key) {
            return Verdict::DropTombstone;
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValueKind::{Delete, Put};

    fn run(
        snapshots: &[SeqNo],
        horizon: SeqNo,
        below: bool,
        versions: &[(SeqNo, ValueKind)],
    ) -> Vec<Verdict> {
        let mut r = Retention::new(snapshots, horizon);
        versions.iter().map(|&(s, k)| r.decide(b"k", s, k, |_| below)).collect()
    }

    #[test]
    fn stripes_keep_the_newest_version_each_snapshot_sees() {
        use Verdict::*;
        // Snapshots at 5 and 10, horizon 20: stripes [..5], (5, 10], (10, 20], then 21+.
        let got = run(
            &[5, 10],
            20,
            true,
            &[(25, Put), (22, Put), (18, Put), (15, Put), (10, Put), (7, Put), (5, Put), (1, Put)],
        );
        assert_eq!(got, [Keep, Keep, Keep, DropShadowed, Keep, DropShadowed, Keep, DropShadowed]);
    }

    #[test]
    fn tombstones_go_only_from_the_oldest_stripe_with_nothing_below() {
        use Verdict::*;
        assert_eq!(run(&[], 10, false, &[(8, Delete), (3, Put)]), [DropTombstone, DropShadowed]);
        assert_eq!(run(&[], 10, true, &[(8, Delete), (3, Put)]), [Keep, DropShadowed]);
        // Snapshot 5 still sees the put at 3, so the tombstone at 8 must hide it from newer readers.
        assert_eq!(run(&[5], 10, false, &[(8, Delete), (3, Put)]), [Keep, Keep]);
        assert_eq!(
            run(&[5], 10, false, &[(8, Delete), (4, Delete), (3, Put)]),
            [Keep, DropTombstone, DropShadowed]
        );
        // Newer than the horizon: kept.
        assert_eq!(run(&[], 10, false, &[(11, Delete)]), [Keep]);
    }
}
