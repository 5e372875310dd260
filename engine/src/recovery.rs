//! Opening a database: take the lock, read the manifest, replay the logs it does not cover,
//! make the recovered state durable in a fresh manifest, and delete what a crash left.
//!
//! The order is what makes a crash during recovery itself harmless: recovered memtables are
//! written to tables (fsynced, directory fsynced) and a new log is created *before* a new
//! manifest names them and moves the log number past the old logs; the old logs are deleted
//! only after `CURRENT` names that manifest. A crash anywhere before leaves the old manifest
//! and old logs in charge, and the next open simply redoes the work.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use strata_compaction::{
    log_file_name, parse_file_name, FileKind, Manifest, Version, VersionEdit, LOCK_FILE_NAME,
};
use strata_core::fs::parent_dir;
use strata_core::{Error, IoResultExt, Result};
use strata_wal::{Durability, LogReader, RecoveryMode, Wal, WriteBatch};

use crate::db::{BgState, DbInner, SuperVersion, VersionState, WriteState};
use crate::memtable::MemTable;
use crate::metrics::MetricsRecorder;
use crate::options::Options;
use crate::table_cache::TableCache;
use crate::write::{wal_options, PublishQueue};

pub(crate) fn open(dir: &Path, opts: Options) -> Result<Arc<DbInner>> {
    opts.validate()?;
    let fs = Arc::clone(&opts.fs);
    if !fs.exists(dir).ctx("stat", dir)? {
        fs.create_dir_all(dir).ctx("create directory", dir)?;
        let parent = parent_dir(dir);
        fs.sync_dir(&parent).ctx("fsync directory", &parent)?;
    }
    let lock_path = dir.join(LOCK_FILE_NAME);
    let lock = fs.lock(&lock_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked(dir.to_path_buf())
        } else {
            Error::io("lock", &lock_path, e)
        }
    })?;

    let recovered = Manifest::recover(Arc::clone(&fs), dir)?;
    let (mut version, log_number, mut next_file, mut last_seq) = match &recovered {
        Some(r) => (r.version.clone(), r.log_number, r.next_file_number, r.last_sequence),
        None => (Version::default(), 0, 2, 0),
    };

    // Logs the manifest does not cover, oldest first. File numbers seen on disk also bound
    // the next number, since logs are created between manifest edits.
    let names = fs.list(dir).ctx("list directory", dir)?;
    let mut logs = Vec::new();
    for name in &names {
        match parse_file_name(name) {
            Some(FileKind::Log(n))
            | Some(FileKind::Table(n))
            | Some(FileKind::Manifest(n))
            | Some(FileKind::Temp(n)) => {
                next_file = next_file.max(n + 1);
                if matches!(parse_file_name(name), Some(FileKind::Log(_))) && n >= log_number {
                    logs.push(n);
                }
            }
            _ => {}
        }
    }
    logs.sort_unstable();

    let metrics = MetricsRecorder::default();
    let tables = Arc::new(TableCache::new(Arc::clone(&fs), dir, opts.block_cache_size));
    let mut edit = VersionEdit::default();
    let mut mem = Arc::new(MemTable::new(0));
    let flush = |mem: &Arc<MemTable>, next_file: &mut u64, edit: &mut VersionEdit| -> Result<()> {
        let number = *next_file;
        *next_file += 1;
        let path = tables.table_path(number);
        let meta = crate::background::build_table(&fs, &path, &opts.table_options(0), number, mem)?;
        if let Some(meta) = meta {
            edit.new_files.push((0, meta));
        }
        Ok(())
    };
    for (i, &number) in logs.iter().enumerate() {
        let path = dir.join(log_file_name(number));
        let last_log = i + 1 == logs.len();
        // Only the newest log may end torn: older ones were synced before the switch.
        let mode = if last_log { opts.recovery_mode } else { RecoveryMode::Strict };
        let mut reader = LogReader::open(&*fs, &path, mode)?;
        while let Some(record) = reader.next_record()? {
            let offset = record.offset;
            let batch = WriteBatch::decode(record.payload.to_vec()).map_err(|reason| {
                Error::corruption(&path, offset, format!("bad write batch: {reason}"))
            })?;
            let first = batch.sequence();
            for (j, e) in batch.iter().enumerate() {
                mem.insert(e.key, first + j as u64, e.kind, e.value);
            }
            last_seq = last_seq.max(first + batch.len() as u64 - 1);
            if mem.approximate_bytes() >= opts.memtable_size {
                flush(&mem, &mut next_file, &mut edit)?;
                mem = Arc::new(MemTable::new(0));
            }
        }
        if let Some((at, len)) = reader.dropped_tail() {
            // Older logs are synced before their memtable is sealed, so only the newest log
            // with records can end torn. Newer logs that hold nothing (a switch or an open
            // that failed right after creating its log) do not count.
            if !last_log && !logs_hold_no_records(&*fs, dir, &logs[i + 1..])? {
                return Err(Error::corruption(
                    &path,
                    at,
                    "damaged records at the end of a log that is not the newest",
                ));
            }
            metrics.wal_tail_dropped_bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if !mem.is_empty() {
        flush(&mem, &mut next_file, &mut edit)?;
    }
    if !edit.new_files.is_empty() {
        fs.sync_dir(dir).ctx("fsync directory", dir)?;
        version = version.apply(&edit).map_err(|e| {
            Error::corruption(dir, 0, format!("recovered tables do not fit the manifest: {e}"))
        })?;
    }

    // A fresh log, then a fresh manifest that names the recovered tables and moves the log
    // number past every replayed log.
    let wal_number = next_file;
    let manifest_number = next_file + 1;
    next_file += 2;
    let wal_sync = Arc::clone(&metrics.wal_sync_latency);
    let wal = Wal::create(
        Arc::clone(&fs),
        dir.join(log_file_name(wal_number)),
        wal_options(&opts, &wal_sync),
    )?;
    let mut cursors = vec![None; strata_compaction::NUM_LEVELS];
    if let Some(r) = &recovered {
        for (level, key) in &r.compact_pointers {
            if let Some(slot) = cursors.get_mut(*level) {
                *slot = Some(key.clone());
            }
        }
    }
    let mut snapshot = version.snapshot_edit();
    snapshot.compact_pointers =
        cursors.iter().enumerate().filter_map(|(l, k)| Some((l, k.clone()?))).collect();
    snapshot.log_number = Some(wal_number);
    snapshot.next_file_number = Some(next_file);
    snapshot.last_sequence = Some(last_seq);
    let manifest = Manifest::create_new(Arc::clone(&fs), dir, manifest_number, &snapshot)?;

    let version = Arc::new(version);
    let mem = Arc::new(MemTable::new(wal_number));
    let inner = Arc::new(DbInner {
        dir: dir.to_path_buf(),
        fs: Arc::clone(&fs),
        lock_file: Mutex::new(Some(lock)),
        write: Mutex::new(WriteState {
            next_seq: last_seq + 1,
            mem: Arc::clone(&mem),
            wal,
            periodic: None,
            retired_wal_stats: Default::default(),
            unlogged: false,
        }),
        view: RwLock::new(Arc::new(SuperVersion {
            mem,
            imms: Vec::new(),
            version: Arc::clone(&version),
        })),
        visible_seq: AtomicU64::new(last_seq),
        publish: Mutex::new(PublishQueue::default()),
        publish_cv: Condvar::new(),
        versions: Mutex::new(VersionState {
            manifest,
            log_number: wal_number,
            handed_out: vec![Arc::downgrade(&version)],
        }),
        next_file_number: AtomicU64::new(next_file),
        pending_outputs: Mutex::new(Vec::new()),
        imm_count: AtomicUsize::new(0),
        l0_files: AtomicUsize::new(version.num_files(0)),
        bg: Mutex::new(BgState::default()),
        bg_cv: Condvar::new(),
        poisoned: AtomicBool::new(false),
        error: Mutex::new(None),
        closed: AtomicBool::new(false),
        snapshots: Mutex::new(Default::default()),
        tables,
        compaction_lock: Mutex::new(()),
        compact_cursors: Mutex::new(cursors),
        rate_limiter: opts.compaction_rate_limit.map(strata_compaction::RateLimiter::new),
        metrics,
        threads: Mutex::new(Vec::new()),
        async_writer: std::sync::OnceLock::new(),
        opts,
    });
    if let Durability::Periodic(every) = inner.opts.durability {
        let mut w = inner.write.lock();
        let handle = w.wal.spawn_periodic_sync(every)?;
        w.periodic = Some((every, handle));
    }
    // Replayed logs, old manifests, tables no manifest names (outputs of an interrupted
    // flush or compaction), staging files.
    inner.purge_obsolete_files();
    let _ = fs.remove(&dir.join(strata_compaction::CURRENT_TEMP_FILE_NAME));
    Ok(inner)
}

/// Whether none of the logs `numbers` holds a record (each is empty, a bare header, or a
/// torn first record).
fn logs_hold_no_records(
    fs: &dyn strata_core::fs::FileSystem,
    dir: &Path,
    numbers: &[u64],
) -> Result<bool> {
    for &n in numbers {
        let mut reader = LogReader::open(fs, &dir.join(log_file_name(n)), RecoveryMode::Strict)?;
        if reader.next_record()?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}
