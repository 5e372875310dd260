//! [`Db::verify`]: reads every live table in full and checks the MANIFEST's references
//! against the directory, for operators who want to know before a read finds the damage.

use std::sync::Arc;

use strata_compaction::{
    parse_file_name, FileKind, FileMeta, Manifest, Version, CURRENT_FILE_NAME, NUM_LEVELS,
};
use strata_core::{Error, IoResultExt, Result};
use strata_sstable::{Table, TableStats};

use crate::db::Db;
use crate::inner::DbInner;

/// What [`Db::verify`] checked, when it found nothing wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The MANIFEST that was re-read and compared with the live table set; `None` for a
    /// read-only handle, which checks the table set it loaded at open (a writer elsewhere
    /// may have moved on since) and lists no unreferenced tables.
    pub manifest_number: Option<u64>,
    /// Live tables read in full.
    pub tables: usize,
    /// Data blocks read and checksummed.
    pub data_blocks: u64,
    /// Entries decoded.
    pub entries: u64,
    /// Bytes of table files read.
    pub table_bytes: u64,
    /// Table files in the directory that no version names and no job is writing: harmless
    /// (the next purge or open removes them), listed so an operator is not surprised.
    pub unreferenced_tables: Vec<u64>,
}

impl Db {
    /// Checks the whole database against its own records and returns what it read, or the
    /// first [`Error::Corruption`] (naming the file and offset) it met.
    ///
    /// It re-reads the MANIFEST named by `CURRENT` and compares the table set it describes
    /// with the live one; then, for every live table, checks that the file exists with the
    /// recorded size, that its key and sequence bounds match the MANIFEST's, and reads every
    /// data block in full, bypassing the block cache (see [`Table::verify`] for what a table
    /// check covers). Reads and writes go on meanwhile; the tables checked are those live
    /// when the call started (a version pins them). The manifest is re-read under the
    /// version lock, so a flush or compaction finishing meanwhile waits that long to
    /// install.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path(), strata::Options::default())?;
    /// for i in 0..1000u32 { db.put(i.to_be_bytes(), "value")?; }
    /// db.flush()?;
    /// let report = db.verify()?;
    /// assert_eq!((report.tables, report.entries), (1, 1000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self) -> Result<VerifyReport> {
        self.inner.verify()
    }
}

impl DbInner {
    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        self.check_open()?;
        let (version, manifest_number, in_use, allocated_below) = {
            let mut vs = self.versions.lock();
            let version = self.current_view().version.clone();
            // Under the version lock, so no edit lands between the read and the comparison.
            let manifest_number = match &vs.manifest {
                Some(manifest) => Some(self.check_manifest(manifest, &version)?),
                None => None,
            };
            // Tables that older versions (open iterators, snapshots) or running jobs still
            // use are not garbage; numbers allocated later are born after this look.
            let (in_use, allocated_below) = self.versions.tables_in_use(&mut vs);
            (version, manifest_number, in_use, allocated_below)
        };
        let mut report = VerifyReport { manifest_number, ..VerifyReport::default() };
        let stats = Arc::new(TableStats::default());
        for level in 0..NUM_LEVELS {
            for meta in version.files(level) {
                let path = self.tables.table_path(meta.number);
                let corrupt = |reason: String| Error::corruption(&path, 0, reason);
                if !self.fs.exists(&path).ctx("stat", &path)? {
                    return Err(corrupt(format!(
                        "level-{level} table named by the manifest is missing"
                    )));
                }
                let size = self.fs.file_size(&path).ctx("stat", &path)?;
                if size != meta.file_size {
                    return Err(corrupt(format!(
                        "{size} bytes, the manifest says {}",
                        meta.file_size
                    )));
                }
                let table = Table::open(&*self.fs, &path, meta.number, None, Arc::clone(&stats))?;
                let check = table.verify()?;
                let props = table.properties().clone();
                // An ingested table stores sequence 0 and reads as its global sequence.
                let expected = match meta.global_seq {
                    Some(seq) if props.largest_seq == 0 => {
                        FileMeta::ingested(meta.number, props, seq)
                    }
                    Some(_) => {
                        return Err(corrupt("ingested table stores sequence numbers".into()))
                    }
                    None => FileMeta::from_properties(meta.number, props),
                };
                let bounds_match = expected.smallest == meta.smallest
                    && expected.largest == meta.largest
                    && expected.smallest_seq == meta.smallest_seq
                    && expected.largest_seq == meta.largest_seq
                    && expected.num_entries == meta.num_entries;
                if !bounds_match {
                    return Err(corrupt(
                        "its keys, sequences or entry count differ from the manifest's record"
                            .into(),
                    ));
                }
                report.tables += 1;
                report.data_blocks += check.data_blocks;
                report.entries += check.entries;
                report.table_bytes += size;
            }
        }
        if self.read_only {
            return Ok(report); // the other files are a writer's business
        }
        let names = self.fs.list(&self.dir).ctx("list directory", &self.dir)?;
        report.unreferenced_tables = names
            .iter()
            .filter_map(|name| match parse_file_name(name) {
                Some(FileKind::Table(n)) if n < allocated_below && !in_use.contains(&n) => Some(n),
                _ => None,
            })
            .collect();
        report.unreferenced_tables.sort_unstable();
        Ok(report)
    }

    /// Re-reads the MANIFEST that `CURRENT` names and checks that it is the one `manifest`
    /// writes, that it decodes to its end and that it describes `version`; returns its number.
    fn check_manifest(&self, manifest: &Manifest, version: &Version) -> Result<u64> {
        let on_disk = Manifest::recover(Arc::clone(&self.fs), &self.dir)?.ok_or_else(|| {
            Error::corruption(self.dir.join(CURRENT_FILE_NAME), 0, "CURRENT is missing")
        })?;
        let path = manifest.path();
        if on_disk.manifest_number != manifest.number() {
            return Err(Error::corruption(
                path,
                0,
                format!(
                    "CURRENT names manifest {}, the database writes {}",
                    on_disk.manifest_number,
                    manifest.number()
                ),
            ));
        }
        if let Some((at, len)) = on_disk.dropped_tail {
            // Every edit of a live database was synced before it was installed.
            return Err(Error::corruption(path, at, format!("the last {len} bytes do not decode")));
        }
        if on_disk.version != *version {
            return Err(Error::corruption(path, 0, "the tables it names differ from the live set"));
        }
        Ok(on_disk.manifest_number)
    }
}

impl crate::ShardedDb {
    /// [`Db::verify`] on every shard, in shard order; the first [`Error::Corruption`] met
    /// stops the check.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::ShardedDb::open(dir.path(), strata::ShardedOptions::new(2))?;
    /// for i in 0..100u32 { db.put(i.to_be_bytes(), "v")?; }
    /// db.flush()?;
    /// let reports = db.verify()?;
    /// assert_eq!(reports.iter().map(|r| r.entries).sum::<u64>(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self) -> Result<Vec<VerifyReport>> {
        (0..self.shard_count()).filter_map(|i| self.shard(i)).map(|db| db.verify()).collect()
    }
}
