//! fjall: `Database::builder(dir)` defaults and one keyspace with `KeyspaceCreateOptions::default()`
//! (LZ4 compression, bloom filters, leveled compaction: fjall's own defaults).

use std::path::Path;
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{drive_scan, BatchOp, BenchResult, Durability, Engine, EngineConfig, ScanDirection};

/// How long `settle` waits for background flushes and compactions before giving up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A fjall database with one keyspace.
pub struct FjallEngine {
    db: Database,
    keyspace: Keyspace,
    default_durability: Durability,
}

impl FjallEngine {
    /// Open (or create) a fjall database in `dir`.
    pub fn open(dir: &Path, config: &EngineConfig) -> BenchResult<Self> {
        // fjall's default hands each write's journal entry to the OS (PersistMode::Buffer); in
        // `none` mode the journal stays in fjall's user-space buffer until something persists it.
        let manual = config.durability == Durability::None;
        let db = Database::builder(dir).manual_journal_persist(manual).open()?;
        let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
        Ok(FjallEngine { db, keyspace, default_durability: config.durability })
    }

    /// Bring the journal up to `durability` after a write fjall has already applied.
    fn persist(&self, durability: Durability) -> BenchResult<()> {
        match durability {
            // fdatasync, as RocksDB's and strata's sync writes do.
            Durability::Sync => self.db.persist(PersistMode::SyncData)?,
            // Without manual persist, every write already reached the OS.
            Durability::Buffered if self.default_durability == Durability::None => {
                self.db.persist(PersistMode::Buffer)?
            }
            Durability::Buffered | Durability::None => {}
        }
        Ok(())
    }
}

impl Engine for FjallEngine {
    fn settings(&self) -> String {
        format!(
            "fjall 3: Database::builder defaults (cache, worker threads, journal limits) + one keyspace \
             with KeyspaceCreateOptions::default() (LZ4, bloom filters, leveled compaction); journal \
             on; durability {}: {}",
            self.default_durability,
            match self.default_durability {
                Durability::Sync => "each write then Database::persist(SyncData)",
                Durability::Buffered => "journal flushed to the OS per write (fjall's default)",
                Durability::None => "manual_journal_persist(true): journal buffered in user space",
            }
        )
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> BenchResult<()> {
        self.keyspace.insert(key, value)?;
        self.persist(durability)
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<usize>> {
        Ok(self.keyspace.get(key)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], durability: Durability) -> BenchResult<()> {
        self.keyspace.remove(key)?;
        self.persist(durability)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], durability: Durability) -> BenchResult<()> {
        let mode = match durability {
            Durability::Sync => Some(PersistMode::SyncData),
            Durability::Buffered => Some(PersistMode::Buffer),
            Durability::None => None,
        };
        let mut batch = self.db.batch().durability(mode);
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.insert(&self.keyspace, k, v),
                BatchOp::Delete(k) => batch.remove(&self.keyspace, k),
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn scan(
        &self,
        start: Option<&[u8]>,
        direction: ScanDirection,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> BenchResult<u64> {
        let iter = match (direction, start) {
            (ScanDirection::Forward, Some(s)) => self.keyspace.range(s..),
            (ScanDirection::Reverse, Some(s)) => self.keyspace.range(..=s),
            (_, None) => self.keyspace.iter(),
        };
        drive_scan(iter, direction, |guard: fjall::Guard| {
            let (k, v) = guard.into_inner()?;
            Ok(visit(&k, &v))
        })
    }

    fn settle(&self) -> BenchResult<()> {
        self.db.persist(PersistMode::SyncAll)?;
        // Flush the memtable (as RocksDB's `flush` does) so write amplification counts it.
        self.keyspace.rotate_memtable_and_wait()?;
        // fjall has no public "wait for compaction": poll its counters until they stay idle.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut idle_polls = 0;
        while idle_polls < 10 && Instant::now() < deadline {
            if self.db.outstanding_flushes() == 0 && self.db.active_compactions() == 0 {
                idle_polls += 1;
            } else {
                idle_polls = 0;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.db.persist(PersistMode::SyncAll)?;
        drop(self.keyspace);
        drop(self.db);
        Ok(())
    }
}
