//! The shape of strata's LSM tree and how it changes.
//!
//! * [`FileMeta`]: what the tree knows about one table file.
//! * [`Version`]: the immutable set of live tables per level ([`NUM_LEVELS`] levels).
//! * [`VersionEdit`]: one change to it (tables added and deleted, counters moved).
//! * [`Manifest`]: the log of edits on disk, and `CURRENT`, which names the live manifest;
//!   recovery replays it into a [`RecoveredState`].
//! * Leveled compaction: the policy ([`CompactionConfig`], [`level_score`],
//!   [`pick_compaction`], [`pick_manual`], [`Compaction`]) and the merge job
//!   ([`run_compaction`], which drops what no snapshot can see and writes new tables), with a
//!   shared [`RateLimiter`]. The design is explained in `docs/compaction.md`.
//! * File names ([`table_file_name`], [`log_file_name`], [`manifest_file_name`], ...) and
//!   [`parse_file_name`], for the engine's cleanup of obsolete files.
//!
//! The on-disk formats are documented byte by byte in `docs/format/manifest.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod file_meta;
mod file_name;
mod job;
mod manifest;
mod picker;
mod rate_limiter;
mod retention;
mod version;
mod version_edit;

pub use file_meta::FileMeta;
pub use file_name::{
    log_file_name, manifest_file_name, parse_file_name, table_file_name, temp_file_name, FileKind,
    CURRENT_FILE_NAME, CURRENT_TEMP_FILE_NAME, LOCK_FILE_NAME,
};
pub use job::{run_compaction, CompactionContext, CompactionOutput};
pub use manifest::{Manifest, RecoveredState, MANIFEST_FORMAT_VERSION, MANIFEST_MAGIC};
pub use picker::{
    apply_compact_pointers, level_score, level_target_bytes, pick_compaction, pick_manual,
    Compaction, CompactionConfig, CompactionReason,
};
pub use rate_limiter::RateLimiter;
pub use version::{Version, NUM_LEVELS};
pub use version_edit::{SealedLog, VersionEdit};
