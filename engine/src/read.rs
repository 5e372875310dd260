//! The read path over a view: a point lookup at a sequence number, newest source first
//! (active memtable, immutable memtables, then the tables that may hold the key, level by
//! level), and the merged cursor scans and iterators are built on.

use std::sync::Arc;

use bytes::Bytes;
use strata_compaction::NUM_LEVELS;
use strata_core::iter::InternalIterator;
use strata_core::key::{SeqNo, ValueKind};
use strata_core::merge::MergingIterator;
use strata_core::Result;

use crate::inner::DbInner;
use crate::state::SuperVersion;
use crate::table_cache::LevelIterator;

impl DbInner {
    /// The value of `key` as of `seq` in `view` (`None` if absent or deleted).
    pub(crate) fn get_at(
        &self,
        view: &SuperVersion,
        key: &[u8],
        seq: SeqNo,
    ) -> Result<Option<Bytes>> {
        let found = |kind: ValueKind, v: Bytes| match kind {
            ValueKind::Put => Some(v),
            ValueKind::Delete => None,
        };
        if let Some((kind, v)) = view.mem.get(key, seq) {
            return Ok(found(kind, v));
        }
        for imm in &view.imms {
            if let Some((kind, v)) = imm.get(key, seq) {
                return Ok(found(kind, v));
            }
        }
        for (_, meta) in view.version.files_for_get(key) {
            let table = self.tables.get(meta)?;
            if let Some((kind, v)) = table.get(key, seq)? {
                return Ok(found(kind, v));
            }
        }
        Ok(None)
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
