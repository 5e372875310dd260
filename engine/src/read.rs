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

use crate::db_iter::KeyRange;
use crate::inner::DbInner;
use crate::state::SuperVersion;
use crate::table_cache::LevelIterator;

impl DbInner {
    /// The value of `key` as of `seq` in `view` (`None` if absent or deleted).
    ///
    /// Sources are asked newest first, and each also for its range tombstones covering the
    /// key: the first version found is the answer unless a tombstone seen so far (in its
    /// source or a newer one) is newer than it. Older sources need no asking — a level's
    /// tables cover their tombstones' ranges, so a tombstone over the key sits no deeper
    /// than the versions it deletes.
    pub(crate) fn get_at(
        &self,
        view: &SuperVersion,
        key: &[u8],
        seq: SeqNo,
    ) -> Result<Option<Bytes>> {
        let mut cover: Option<SeqNo> = None;
        let found = |kind: ValueKind, version: SeqNo, v: Bytes, cover: Option<SeqNo>| match kind {
            ValueKind::Put if cover.is_none_or(|c| c < version) => Some(v),
            _ => None,
        };
        for mem in std::iter::once(&view.mem).chain(&view.imms) {
            cover = cover.max(mem.range_del_cover(key, seq));
            if let Some((kind, version, v)) = mem.get_version(key, seq) {
                return Ok(found(kind, version, v, cover));
            }
        }
        for (_, meta) in view.version.files_for_get(key) {
            let table = self.tables.get(meta)?;
            cover = cover.max(table.range_del_cover(key, seq));
            if let Some((kind, version, v)) = table.get(key, seq)? {
                return Ok(found(kind, version, v, cover));
            }
        }
        Ok(None)
    }

    /// Every range tombstone of `view` that may cover a key in `range`, fragmented (`None`
    /// when there is none, so that scans of a tree without range deletes pay nothing).
    pub(crate) fn range_tombstones(
        &self,
        view: &SuperVersion,
        range: &KeyRange,
    ) -> Result<Option<Arc<RangeTombstones>>> {
        let mut sets: Vec<Arc<RangeTombstones>> = std::iter::once(&view.mem)
            .chain(&view.imms)
            .filter_map(|m| m.range_tombstones())
            .collect();
        for level in 0..NUM_LEVELS {
            for meta in view.version.files(level) {
                if meta.num_range_deletions == 0 || !range.overlaps_file(meta) {
                    continue;
                }
                if let Some(set) = self.tables.get(meta)?.range_tombstones() {
                    sets.push(Arc::new(set.clone()));
                }
            }
        }
        Ok(match sets.len() {
            0 => None,
            1 => sets.pop(),
            _ => Some(Arc::new(RangeTombstones::new(sets.iter().flat_map(|s| s.iter())))),
        })
    }

    /// What a scan of `range` reads: the merged cursor and the range tombstones.
    pub(crate) fn merged_source(
        &self,
        view: &SuperVersion,
        range: &KeyRange,
    ) -> Result<(MergingIterator, Option<Arc<RangeTombstones>>)> {
        Ok((self.merged_iter(view)?, self.range_tombstones(view, range)?))
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
