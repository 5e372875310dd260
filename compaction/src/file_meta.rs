//! [`FileMeta`]: what the tree knows about one table file without opening it.

use strata_core::key::{InternalKey, SeqNo, ValueKind, MAX_SEQ};
use strata_core::range_del::inclusive_end;

/// The metadata of one table file, as recorded in the manifest.
///
/// `smallest` and `largest` are the first and last encoded internal keys of the table (in
/// [`strata_core::key::compare_internal`] order), so the table's user-key range is
/// `smallest.user_key() ..= largest.user_key()`.
///
/// ```
/// use strata_compaction::FileMeta;
/// use strata_core::key::{InternalKey, ValueKind};
/// let f = FileMeta {
///     number: 7,
///     file_size: 4096,
///     smallest: InternalKey::new(b"apple", 12, ValueKind::Put),
///     largest: InternalKey::new(b"melon", 3, ValueKind::Delete),
///     smallest_seq: 3,
///     largest_seq: 12,
///     num_entries: 100,
///     num_deletions: 1,
///     global_seq: None,
///     num_range_deletions: 0,
/// };
/// assert!(f.contains_user_key(b"banana"));
/// assert!(!f.contains_user_key(b"zucchini"));
/// assert!(f.overlaps_user_range(b"m", b"z"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The file number: the table lives in [`crate::table_file_name`]`(number)`.
    pub number: u64,
    /// Size of the table file in bytes.
    pub file_size: u64,
    /// The table's first internal key.
    pub smallest: InternalKey,
    /// The table's last internal key.
    pub largest: InternalKey,
    /// The smallest sequence number of any entry in the table.
    pub smallest_seq: SeqNo,
    /// The largest sequence number of any entry in the table (orders L0 files by age).
    pub largest_seq: SeqNo,
    /// Number of entries (puts and deletes).
    pub num_entries: u64,
    /// Number of tombstones among the entries.
    pub num_deletions: u64,
    /// For a table ingested from outside (`strata::Db::ingest`): the sequence number every
    /// entry of the file reads as, whatever the file stores (its writer stores 0). The
    /// file is never rewritten for it; the table reader applies it
    /// (`strata_sstable::Table::open_ingested`). `None` for tables the engine wrote.
    /// `smallest`, `largest`, `smallest_seq` and `largest_seq` already carry it.
    pub global_seq: Option<SeqNo>,
    /// Number of range tombstone fragments the table holds (0 for most): scans ask only
    /// the tables that have some. `smallest` and `largest` span their ranges too.
    pub num_range_deletions: u64,
}

impl FileMeta {
    /// The metadata of table `number` from the properties its builder returned.
    ///
    /// A table's range runs over its range tombstones too (from the first start to the
    /// last end, see [`inclusive_end`]): a tombstone belongs to the levels' key order like
    /// any version, so that lookups, compaction picks and level overlap checks meet it
    /// wherever it covers a key.
    ///
    /// ```
    /// use strata_compaction::FileMeta;
    /// use strata_core::key::{InternalKey, ValueKind};
    /// use strata_core::range_del::RangeTombstone;
    /// let props = strata_sstable::TableProperties {
    ///     smallest_key: InternalKey::new(b"d", 5, ValueKind::Put).into_encoded(),
    ///     largest_key: InternalKey::new(b"e", 5, ValueKind::Put).into_encoded(),
    ///     range_tombstones: vec![RangeTombstone::new("a", "c", 7)],
    ///     num_entries: 2,
    ///     ..Default::default()
    /// };
    /// let f = FileMeta::from_properties(3, props);
    /// assert_eq!((f.smallest_user_key(), f.largest_user_key()), (&b"a"[..], &b"e"[..]));
    /// ```
    pub fn from_properties(number: u64, props: strata_sstable::TableProperties) -> FileMeta {
        let mut smallest = InternalKey::from_encoded(props.smallest_key);
        let mut largest = InternalKey::from_encoded(props.largest_key);
        let points = props.num_entries > 0;
        if let (Some(first), Some(last_end)) = (
            props.range_tombstones.first(),
            props.range_tombstones.iter().map(|t| t.end.as_slice()).max(),
        ) {
            // Fragments are sorted by start. The bounds are the first internal key of the
            // first start and the last internal key of the inclusive end.
            if !points || first.start.as_slice() < smallest.user_key() {
                smallest = InternalKey::new(&first.start, MAX_SEQ, ValueKind::FOR_SEEK);
            }
            let end = inclusive_end(last_end);
            if !points || end > largest.user_key() {
                largest = InternalKey::new(end, 0, ValueKind::Delete);
            }
        }
        FileMeta {
            number,
            file_size: props.file_size,
            smallest,
            largest,
            smallest_seq: props.smallest_seq,
            largest_seq: props.largest_seq,
            num_entries: props.num_entries,
            num_deletions: props.num_deletions,
            global_seq: None,
            num_range_deletions: props.range_tombstones.len() as u64,
        }
    }

    /// The metadata of an ingested table `number` from the properties its file records,
    /// with every entry read at `global_seq` ([`FileMeta::global_seq`]): the boundary keys
    /// and the sequence range say `global_seq` rather than what the file stores.
    ///
    /// ```
    /// use strata_compaction::FileMeta;
    /// use strata_core::key::{InternalKey, ValueKind};
    /// let props = strata_sstable::TableProperties {
    ///     smallest_key: InternalKey::new(b"a", 0, ValueKind::Put).into_encoded(),
    ///     largest_key: InternalKey::new(b"k", 0, ValueKind::Delete).into_encoded(),
    ///     num_entries: 2,
    ///     ..Default::default()
    /// };
    /// let f = FileMeta::ingested(9, props, 77);
    /// assert_eq!(f.smallest, InternalKey::new(b"a", 77, ValueKind::Put));
    /// assert_eq!(f.largest, InternalKey::new(b"k", 77, ValueKind::Delete));
    /// assert_eq!((f.smallest_seq, f.largest_seq, f.global_seq), (77, 77, Some(77)));
    /// ```
    pub fn ingested(
        number: u64,
        props: strata_sstable::TableProperties,
        global_seq: SeqNo,
    ) -> FileMeta {
        let with_seq = |encoded: &[u8]| {
            let key = InternalKey::from_encoded(encoded.to_vec());
            match key.parse() {
                Some(p) => InternalKey::new(p.user_key, global_seq, p.kind),
                None => key,
            }
        };
        FileMeta {
            number,
            file_size: props.file_size,
            smallest: with_seq(&props.smallest_key),
            largest: with_seq(&props.largest_key),
            smallest_seq: global_seq,
            largest_seq: global_seq,
            num_entries: props.num_entries,
            num_deletions: props.num_deletions,
            global_seq: Some(global_seq),
            num_range_deletions: 0,
        }
    }

    /// The user key of [`FileMeta::smallest`].
    pub fn smallest_user_key(&self) -> &[u8] {
        self.smallest.user_key()
    }

    /// The user key of [`FileMeta::largest`].
    pub fn largest_user_key(&self) -> &[u8] {
        self.largest.user_key()
    }

    /// Whether `user_key` lies in the table's user-key range.
    pub fn contains_user_key(&self, user_key: &[u8]) -> bool {
        self.smallest_user_key() <= user_key && user_key <= self.largest_user_key()
    }

    /// Whether the table's user-key range intersects `smallest ..= largest`.
    pub fn overlaps_user_range(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.smallest_user_key() <= largest && smallest <= self.largest_user_key()
    }

    /// Checks what a decoder cannot: well-formed keys in order and sequence numbers in order.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.smallest.parse().is_none() || self.largest.parse().is_none() {
            return Err(format!("table {} has a malformed smallest or largest key", self.number));
        }
        if self.smallest > self.largest {
            return Err(format!(
                "table {}: smallest key {:?} sorts after largest key {:?}",
                self.number, self.smallest, self.largest
            ));
        }
        if let Some(seq) = self.global_seq {
            if (self.smallest_seq, self.largest_seq) != (seq, seq) {
                return Err(format!(
                    "ingested table {}: sequence range {}..={} is not its global sequence {seq}",
                    self.number, self.smallest_seq, self.largest_seq
                ));
            }
        }
        if self.smallest_seq > self.largest_seq {
            return Err(format!(
                "table {}: smallest_seq {} > largest_seq {}",
                self.number, self.smallest_seq, self.largest_seq
            ));
        }
        Ok(())
    }
}
