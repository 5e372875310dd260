//! The engine's side of leveled compaction: the compaction thread, manual compactions, and
//! installing results. The policy (what to pick, what to drop, where to split) lives in
//! `strata-compaction`; see `docs/compaction.md`.
//!
//! One compaction runs at a time (`Background::compaction_lock`): the picker assumes it is alone, and a
//! second concurrent compaction would need to know which tables the first holds. The flush
//! thread is separate, so a flush never waits behind a compaction.

use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_compaction::{
    pick_compaction, pick_manual, run_compaction, Compaction, CompactionConfig, CompactionContext,
    NUM_LEVELS,
};
use strata_core::iter::InternalIterator;
use strata_core::key::SeqNo;
use strata_core::range_del::RangeTombstones;
use strata_core::{Error, Result};

use crate::inner::DbInner;
use crate::table_cache::LevelIterator;

impl DbInner {
    pub(crate) fn compaction_config(&self) -> CompactionConfig {
        self.opts.compaction_config()
    }

    /// The compaction the tree needs now, if any.
    fn pick_automatic(&self) -> Option<Compaction> {
        let version = Arc::clone(&self.current_view().version);
        pick_compaction(&version, &self.compaction_config(), &self.versions.cursors())
    }

    /// Runs one picked compaction (or trivial move) and installs its result. The caller
    /// holds `compaction_lock`.
    fn run_compaction_step(&self, c: &Compaction) -> Result<()> {
        let started = Instant::now();
        let m = &self.metrics;
        // A trivial move keeps the table's blocks as they are, so it would carry a level's
        // compression into a level configured for another (`compression_per_level`).
        let same_compression = self.opts.compression_for_level(c.level)
            == self.opts.compression_for_level(c.output_level);
        if c.is_trivial_move() && same_compression {
            return self.install(c.trivial_move_edit(), None);
        }
        let view = self.current_view();
        let mut inputs: Vec<Box<dyn InternalIterator>> = Vec::new();
        if c.level == 0 {
            for f in &c.inputs {
                inputs.push(Box::new(self.tables.get(f)?.iter()));
            }
        } else {
            inputs.push(Box::new(LevelIterator::new(Arc::clone(&self.tables), c.inputs.clone())));
        }
        if !c.overlapping.is_empty() {
            inputs.push(Box::new(LevelIterator::new(
                Arc::clone(&self.tables),
                c.overlapping.clone(),
            )));
        }
        let mut range_tombstones = Vec::new();
        for f in c.inputs.iter().chain(&c.overlapping).filter(|f| f.num_range_deletions > 0) {
            if let Some(set) = self.tables.get(f)?.range_tombstones() {
                range_tombstones.extend(set.iter());
            }
        }
        let range_tombstones = RangeTombstones::new(range_tombstones);
        // Read under the snapshot registry's lock, the same lock `Snapshot::new` reads the
        // visible sequence under: a snapshot taken later reads at or above `horizon`.
        let (snapshots, horizon): (Vec<SeqNo>, SeqNo) = {
            let snaps = self.snapshots.lock();
            (snaps.sequences(), self.commit.visible())
        };
        let mut outputs = Vec::new();
        let mut new_file_number = || {
            let n = self.versions.allocate_table_number();
            outputs.push(n);
            n
        };
        let rate_limiter = self.background.rate_limiter.as_ref();
        let should_stop = || self.background.is_shutdown();
        let table_options = self.opts.table_options(c.output_level);
        let result = run_compaction(
            c,
            inputs,
            &view.version,
            CompactionContext {
                snapshots: &snapshots,
                horizon,
                range_tombstones: &range_tombstones,
                fs: &*self.fs,
                dir: &self.dir,
                table_options: &table_options,
                new_file_number: &mut new_file_number,
                rate_limiter,
                should_stop: &should_stop,
            },
        )
        .and_then(|out| {
            self.install(c.edit_for(&out.files), None)?;
            Ok(out)
        });
        self.versions.release_outputs(&outputs);
        let out = result?;
        let level_bytes = |files: &[Arc<strata_compaction::FileMeta>]| {
            files.iter().map(|f| f.file_size).sum::<u64>()
        };
        m.level_read_bytes[c.level].fetch_add(level_bytes(&c.inputs), Ordering::Relaxed);
        m.level_read_bytes[c.output_level]
            .fetch_add(level_bytes(&c.overlapping), Ordering::Relaxed);
        m.level_written_bytes[c.output_level].fetch_add(out.bytes_written, Ordering::Relaxed);
        m.level_compactions[c.output_level].fetch_add(1, Ordering::Relaxed);
        m.level_compaction_nanos[c.output_level]
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        m.compactions.fetch_add(1, Ordering::Relaxed);
        self.versions.purge_obsolete_files();
        Ok(())
    }

    /// Compacts every table overlapping `[lo, hi]` down to the last level: level by level,
    /// each level's tables in the range are merged into the next, until all of the range
    /// sits in L6, rewritten (so shadowed versions and tombstones nothing can see are gone).
    pub(crate) fn compact_range_and_wait(
        &self,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Result<()> {
        self.flush_and_wait()?;
        let config = self.compaction_config();
        for level in 0..NUM_LEVELS - 1 {
            loop {
                self.check_writable()?;
                let _running = self.background.compaction_lock.lock();
                let version = Arc::clone(&self.current_view().version);
                let Some(c) = pick_manual(&version, level, lo, hi, &config) else { break };
                self.background.set_compaction_running(true);
                let result =
                    crate::background::catch_panic("compaction", || self.run_compaction_step(&c));
                self.background.set_compaction_running(false);
                if let Err(e) = result {
                    self.poison(&e);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Waits until no flush or compaction is pending or running.
    pub(crate) fn wait_for_compaction(&self) -> Result<()> {
        let mut bg = self.background.lock();
        loop {
            if self.health.is_poisoned() {
                drop(bg);
                return self.check_writable();
            }
            let busy = bg.flush_running
                || bg.compaction_running
                || self.versions.imm_count() > 0
                || self.pick_automatic().is_some();
            if !busy || bg.shutdown {
                return Ok(());
            }
            self.background.wait(&mut bg, Some(Duration::from_millis(20)));
        }
    }
}

/// The compaction thread: runs what the picker asks for, whenever it asks.
pub(crate) fn compaction_loop(db: &Arc<DbInner>) {
    loop {
        {
            let mut bg = db.background.lock();
            loop {
                if bg.shutdown {
                    return;
                }
                if !db.health.is_poisoned() && db.pick_automatic().is_some() {
                    break;
                }
                // Woken by every install; the timeout only guards against a lost wakeup.
                db.background.wait(&mut bg, Some(Duration::from_millis(500)));
            }
        }
        let _running = db.background.compaction_lock.lock();
        let Some(c) = db.pick_automatic() else { continue };
        db.background.set_compaction_running(true);
        let result = crate::background::catch_panic("compaction", || db.run_compaction_step(&c));
        db.background.set_compaction_running(false);
        match result {
            // A panic is a bug whatever the moment: `close` must report it.
            Err(e @ Error::Panicked { .. }) => db.poison(&e),
            Err(e) if !db.background.is_shutdown() => db.poison(&e),
            _ => {}
        }
    }
}

/// Converts user range bounds to the inclusive `[lo, hi]` a manual pick takes (an excluded
/// bound only widens the pick by its own key, which is harmless).
pub(crate) fn range_to_inclusive<K: AsRef<[u8]>, R: RangeBounds<K>>(
    range: &R,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let b = |bound: Bound<&K>| match bound {
        Bound::Included(k) | Bound::Excluded(k) => Some(k.as_ref().to_vec()),
        Bound::Unbounded => None,
    };
    (b(range.start_bound()), b(range.end_bound()))
}
