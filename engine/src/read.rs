//! The read path over a view: a point lookup at a sequence number, newest source first
//! (active memtable, immutable memtables, then the tables that may hold the key, level by
//! level), and the merged cursor scans and iterators are built on.

use std::sync::Arc;

use bytes::Bytes;
use strata_compaction::NUM_LEVELS;
use strata_core::iter::InternalIterator;
use strata_core::key::{SeqNo, ValueKind};
use strata_core::merge::MergingIterator;
use strata_core::range_del::RangeTombstones;
use strata_core::Result;

use crate::inner::DbInner;
use crate::state::{SuperVersion, TableTombstones};
use crate::table_cache::LevelIterator;

impl DbInner {
    /// The value of `key` as of `seq` in `view` (`None` if absent or deleted).
    ///
    /// Sources are asked newest first; the first version found is the answer unless a range
    /// tombstone of that source or a newer one, visible at `seq`, is newer than it. Older
    /// sources need no asking — a level's tables cover their tombstones' ranges, so a
    /// tombstone over the key sits no deeper than the versions it deletes. Tombstones are
    /// consulted only once a live version is found, and only in sources that have some and
    /// could hold one newer than it, so a tree without range deletes pays one branch per
    /// source and a miss pays nothing.
    pub(crate) fn get_at(
        &self,
        view: &SuperVersion,
        key: &[u8],
        seq: SeqNo,
    ) -> Result<Option<Bytes>> {
        let mems = std::iter::once(&view.mem).chain(&view.imms);
        for (i, mem) in mems.clone().enumerate() {
            if let Some((kind, version, v)) = mem.get_version(key, seq) {
                let covered = kind == ValueKind::Put
                    && mems.take(i + 1).any(|m| m.range_del_cover(key, seq) > Some(version));
                return Ok((kind == ValueKind::Put && !covered).then_some(v));
            }
        }
        let mut tombstones_seen = false;
        for (_, meta) in view.version.files_for_get(key) {
            tombstones_seen |= meta.num_range_deletions > 0;
            if meta.num_entries == 0 {
                continue; // tombstones only: asked below, if a version turns up
            }
            let Some((kind, version, v)) = self.tables.get(meta)?.get(key, seq)? else {
                continue;
            };
            if kind == ValueKind::Delete {
                return Ok(None);
            }
            if mems.clone().any(|m| m.range_del_cover(key, seq) > Some(version)) {
                return Ok(None);
            }
            // Any tombstone of the tree newer than the version deletes it; one over this key
            // lies in a table on its path, so without such a table there is none to ask.
            if tombstones_seen {
                if let Some(set) = self.table_tombstones(view)? {
                    if set.max_seq > version && set.set.max_cover(key, seq) > Some(version) {
                        return Ok(None);
                    }
                }
            }
            return Ok(Some(v));
        }
        Ok(None)
    }

    /// The range tombstones of every table of `view`, fragmented (`None` when no table has
    /// any), gathered once per version.
    pub(crate) fn table_tombstones(
        &self,
        view: &SuperVersion,
    ) -> Result<Option<Arc<TableTombstones>>> {
        if let Some(set) = view.table_tombstones.get() {
            return Ok(set.clone());
        }
        let mut all = Vec::new();
        for level in 0..NUM_LEVELS {
            for meta in view.version.files(level).iter().filter(|m| m.num_range_deletions > 0) {
                if let Some(set) = self.tables.get(meta)?.range_tombstones() {
                    all.extend(set.iter());
                }
            }
        }
        let set = (!all.is_empty()).then(|| {
            let set = Arc::new(RangeTombstones::new(all));
            Arc::new(TableTombstones { max_seq: set.max_seq(), set })
        });
        // A racing reader may have set it first: from the same version, the same set.
        let _ = view.table_tombstones.set(set.clone());
        Ok(set)
    }

    /// Every range tombstone of `view`: one fragmented set per memtable that has some, and
    /// one for all its tables (empty when there is none, so that scans of a tree without
    /// range deletes pay nothing).
    pub(crate) fn range_tombstones(
        &self,
        view: &SuperVersion,
    ) -> Result<Vec<Arc<RangeTombstones>>> {
        let mut sets: Vec<Arc<RangeTombstones>> = std::iter::once(&view.mem)
            .chain(&view.imms)
            .filter_map(|m| m.range_tombstones())
            .collect();
        sets.extend(self.table_tombstones(view)?.map(|t| Arc::clone(&t.set)));
        Ok(sets)
    }

    /// What a scan reads: the merged cursor and the range tombstones.
    pub(crate) fn merged_source(
        &self,
        view: &SuperVersion,
    ) -> Result<(MergingIterator, Vec<Arc<RangeTombstones>>)> {
        Ok((self.merged_iter(view)?, self.range_tombstones(view)?))
    }

    /// A merged cursor over every source of `view`.
    pub(crate) fn merged_iter(&self, view: &SuperVersion) -> Result<MergingIterator> {
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        children.push(Box::new(view.mem.iter()));
        for imm in &view.imms {
            children.push(Box::new(imm.iter()));
        }
        for meta in view.version.files(0) {
            children.push(Box::new(self.tables.get(meta)?.iter()));
        }
        for level in 1..NUM_LEVELS {
            let files = view.version.files(level);
            if !files.is_empty() {
                children
                    .push(Box::new(LevelIterator::new(Arc::clone(&self.tables), files.to_vec())));
            }
        }
        Ok(MergingIterator::new(children))
    }
}
