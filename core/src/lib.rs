//! The shared foundation of strata's crates.
//!
//! * [`fs`]: the narrow file layer every on-disk read and write of the engine goes through,
//!   with [`fs::OsFileSystem`] for real disks and, with the `sim` feature, `sim::SimFileSystem`,
//!   an in-memory implementation that simulates power loss and injects I/O errors for tests.
//! * [`Error`]: the one error vocabulary (corruption with file and offset, I/O, misuse).
//! * [`key`]: internal keys (user key + sequence number + kind) and their one ordering.
//! * [`coding`]: bounds-checked varint and fixed-width integer coding for decoders.
//! * [`spin`]: bounded spinning before a blocking wait, for the write path's short waits.
//! * [`thread`]: starting background threads without panicking, and the error a panic in
//!   one becomes.
//!
//! `strata-wal` and `strata-sstable` depend on this crate and on nothing of each other, so
//! the dependency arrows stay one-way: `core` <- `wal`, `sstable` <- `compaction` <- `engine`.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod coding;
mod error;
pub mod fs;
pub mod iter;
pub mod key;
pub mod merge;
pub mod range_del;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod spin;
pub mod stripe;
pub mod thread;

pub use error::{Error, IoResultExt, Result};
