//! Test logic shared by strata's integration tests, its `crashtest` example and its cargo-fuzz
//! targets (unpublished: `publish = false`).
//!
//! Each piece lives here once, as an ordinary library, instead of being compiled into several
//! test binaries through `#[path]` includes:
//!
//! * [`model`]: the reference model, a `BTreeMap` of what a store must hold, with the contents
//!   each live snapshot saw.
//! * [`model_test`]: the model-based property test, one operation sequence (a proptest
//!   strategy) run against any store that implements [`strata::KvStore`], through the adapter
//!   in [`store`].
//! * [`crash`]: the crash workload (deterministic writes with per-thread progress keys) and the
//!   check of a recovered state; [`kill9`] runs it against a writer process killed with
//!   SIGKILL, [`kill9_sharded`] against a `ShardedDb` resharded while a writer process is
//!   killed, [`power_loss`] against threads whose simulated disk loses power.
//! * [`fuzz`]: the logic of the cargo-fuzz targets in `fuzz/` and their seed corpus, which
//!   `engine/tests/fuzz_corpus_replay.rs` also replays in an ordinary `cargo test`.
//!
//! Everything here reports a finding by panicking, as a test or a fuzz target must.
//!
//! ```
//! use strata_testkit::model::Model;
//!
//! let mut model: Model<()> = Model::new();
//! model.apply(&[(b"k".to_vec(), Some(b"v".to_vec()))]);
//! assert_eq!(model.get(b"k"), Some(&b"v"[..]));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crash;
pub mod fuzz;
pub mod kill9;
pub mod kill9_sharded;
pub mod model;
pub mod model_test;
pub mod power_loss;
pub mod store;
