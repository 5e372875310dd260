//! Hooks for tests of programs built on strata: a [`Clock`] to give
//! [`ShardedOptions::clock`](crate::ShardedOptions::clock), and [`ManualClock`], which moves
//! only when told to, so that tests of write rates and hot shards need not sleep. (The
//! simulated, power-cutting file system is [`crate::fs`]'s `sim`, behind the `sim` feature.)
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use strata::testing::ManualClock;
//! use strata::{Partitioner, ShardedDb, ShardedOptions};
//!
//! let clock = Arc::new(ManualClock::default());
//! let dir = tempfile::tempdir()?;
//! let opts = ShardedOptions::new(2)
//!     .partitioner(Partitioner::Range(vec![b"m".to_vec()]))
//!     .clock(clock.clone());
//! let db = ShardedDb::open(dir.path(), opts)?;
//! for i in 0..100 { db.put(format!("a{i}"), "v")?; } // shard 0
//! db.put("z", "v")?;                                   // shard 1
//! assert_eq!(db.hot_shards(1.5), [0]);
//! clock.advance(Duration::from_secs(60)); // the 10-second window forgets it all
//! assert!(db.hot_shards(1.5).is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::sharded::{Clock, ManualClock, ReshardStep};
