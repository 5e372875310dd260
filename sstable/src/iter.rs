//! [`TableIterator`]: a two-level cursor (index block, then data block) over one table.

use std::sync::Arc;

use strata_core::iter::InternalIterator;
use strata_core::key::{compare_internal, TRAILER_LEN};
use strata_core::{Error, Result};

use crate::block::BlockIter;
use crate::format::BlockHandle;
use crate::table::Table;

/// A bidirectional cursor over every entry of a [`Table`], implementing
/// [`InternalIterator`]. It owns an `Arc<Table>` (no borrowed lifetime), so the engine can
/// keep it in structs and merges. Corruption met while moving makes it invalid and is
/// returned by [`InternalIterator::status`].
///
/// ```
/// # use std::path::Path;
/// # use std::sync::Arc;
/// # use strata_core::fs::FileSystem;
/// # use strata_core::key::{InternalKey, ValueKind};
/// # use strata_core::sim::SimFileSystem;
/// # use strata_sstable::{Table, TableBuilder, TableOptions, TableStats};
/// use strata_core::iter::InternalIterator;
/// # let fs = SimFileSystem::new();
/// # fs.create_dir_all(Path::new("/db"))?;
/// # let path = Path::new("/db/3.sst");
/// let mut b = TableBuilder::new(&fs, path, &TableOptions::default())?;
/// for k in ["a", "b", "c"] {
///     b.add(InternalKey::new(k.as_bytes(), 1, ValueKind::Put).encoded(), k.as_bytes())?;
/// }
/// b.finish()?;
/// let table = Table::open(&fs, path, 3, None, Arc::new(TableStats::default()))?;
/// let mut it = table.iter();
/// it.seek(InternalKey::new(b"b", u64::MAX >> 8, ValueKind::Put).encoded());
/// assert_eq!(it.value(), b"b");
/// it.prev();
/// assert_eq!(it.value(), b"a");
/// it.seek_to_last();
/// assert_eq!(it.value(), b"c");
/// it.next();
/// assert!(!it.valid());
/// it.status()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TableIterator {
    table: Arc<Table>,
    /// The index entry (data block) under the cursor; `index.len()` when off either end.
    block_pos: usize,
    /// The data block under the index's current entry, if loaded.
    data: Option<BlockIter>,
    data_handle: BlockHandle,
    status: Result<()>,
    /// For an ingested table ([`Table::open_ingested`]): the current key with its trailer's
    /// sequence replaced by the table's global sequence. A copy, because the block's key
    /// buffer is the prefix the next entry's key is decoded against.
    global_key: Vec<u8>,
}

impl std::fmt::Debug for TableIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableIterator")
            .field("table", &self.table.path())
            .field("valid", &self.valid())
            .finish_non_exhaustive()
    }
}

impl TableIterator {
    pub(crate) fn new(table: Arc<Table>) -> Self {
        let block_pos = table.index().len();
        TableIterator {
            table,
            block_pos,
            data: None,
            data_handle: BlockHandle::default(),
            status: Ok(()),
            global_key: Vec::new(),
        }
    }

    /// After a move in an ingested table, rewrites the current key's sequence.
    fn apply_global_seq(&mut self) {
        let Some(seq) = self.table.global_seq() else { return };
        let Some(data) = self.data.as_ref().filter(|d| self.status.is_ok() && d.valid()) else {
            return;
        };
        let stored = data.key();
        self.global_key.clear();
        self.global_key.extend_from_slice(stored);
        if let Some(split) = self.global_key.len().checked_sub(TRAILER_LEN) {
            let kind = self.global_key[split];
            let trailer = (seq << 8) | u64::from(kind);
            self.global_key[split..].copy_from_slice(&trailer.to_le_bytes());
        }
    }

    /// The current value as a zero-copy shared slice (of the file mapping or a cached
    /// block), for callers that keep values beyond the next move. Requires `valid()`.
    pub fn value_bytes(&self) -> bytes::Bytes {
        self.current().value_bytes()
    }

    /// The table iterated.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    fn fail(&mut self, e: Error) {
        if self.status.is_ok() {
            self.status = Err(e);
        }
        self.data = None;
        self.block_pos = self.table.index().len();
    }

    /// Reports data-block corruption; returns whether the block is usable.
    fn data_ok(&mut self) -> bool {
        let corruption = self.data.as_ref().and_then(|d| d.corruption());
        if let Some((reason, at)) = corruption {
            let e = self.table.block_corruption(self.data_handle, reason, at);
            self.fail(e);
            return false;
        }
        true
    }

    /// Loads the data block named by the index's current entry (or drops the data cursor
    /// when the index is off the end). Returns whether a block is loaded.
    fn load_block(&mut self) -> bool {
        if self.block_pos >= self.table.index().len() {
            self.data = None;
            return false;
        }
        let handle = self.table.index().handle(self.block_pos);
        if self.data.is_some() && handle == self.data_handle {
            return true;
        }
        match self.table.data_block(handle) {
            Ok(block) => {
                self.data_handle = handle;
                match self.data.as_mut() {
                    Some(d) => d.reset(block),
                    None => self.data = Some(BlockIter::new(block)),
                }
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// While the data cursor is off its block's end, moves to the next block's first entry.
    fn skip_forward(&mut self) {
        loop {
            if !self.data_ok() {
                return;
            }
            match &self.data {
                Some(d) if d.valid() => return,
                Some(_) => {}
                None => return,
            }
            self.block_pos = (self.block_pos + 1).min(self.table.index().len());
            if !self.load_block() {
                return;
            }
            if let Some(d) = self.data.as_mut() {
                d.seek_to_first();
            }
        }
    }

    /// While the data cursor is before its block's start, moves to the previous block's
    /// last entry.
    fn skip_backward(&mut self) {
        loop {
            if !self.data_ok() {
                return;
            }
            match &self.data {
                Some(d) if d.valid() => return,
                Some(_) => {}
                None => return,
            }
            // Before the first block is off the end, like after the last.
            self.block_pos =
                self.block_pos.checked_sub(1).unwrap_or_else(|| self.table.index().len());
            if !self.load_block() {
                return;
            }
            if let Some(d) = self.data.as_mut() {
                d.seek_to_last();
            }
        }
    }

    fn current(&self) -> &BlockIter {
        match &self.data {
            Some(d) if self.status.is_ok() && d.valid() => d,
            _ => panic!("TableIterator used while not valid"),
        }
    }
}

impl InternalIterator for TableIterator {
    fn valid(&self) -> bool {
        self.status.is_ok() && self.data.as_ref().is_some_and(|d| d.valid())
    }

    fn seek_to_first(&mut self) {
        if self.status.is_err() {
            return;
        }
        self.block_pos = 0;
        if self.load_block() {
            if let Some(d) = self.data.as_mut() {
                d.seek_to_first();
            }
        }
        self.skip_forward();
        self.apply_global_seq();
    }

    fn seek_to_last(&mut self) {
        if self.status.is_err() {
            return;
        }
        let blocks = self.table.index().len();
        self.block_pos = blocks.checked_sub(1).unwrap_or(blocks);
        if self.load_block() {
            if let Some(d) = self.data.as_mut() {
                d.seek_to_last();
            }
        }
        self.skip_backward();
        self.apply_global_seq();
    }

    fn seek(&mut self, target: &[u8]) {
        if self.status.is_err() {
            return;
        }
        self.block_pos = self.table.index().seek(target);
        if self.load_block() {
            if let Some(d) = self.data.as_mut() {
                d.seek(target);
            }
        }
        self.skip_forward();
        self.apply_global_seq();
        if self.table.global_seq().is_some() {
            // The stored seek found the first stored key >= target; an entry of the
            // target's user key may read (at the global sequence) as before the target.
            while self.valid() && compare_internal(&self.global_key, target).is_lt() {
                self.next();
            }
        }
    }

    fn next(&mut self) {
        if let Some(d) = self.data.as_mut() {
            d.next();
        }
        self.skip_forward();
        self.apply_global_seq();
    }

    fn prev(&mut self) {
        if let Some(d) = self.data.as_mut() {
            d.prev();
        }
        self.skip_backward();
        self.apply_global_seq();
    }

    fn key(&self) -> &[u8] {
        if self.table.global_seq().is_some() {
            return &self.global_key;
        }
        self.current().key()
    }

    fn value(&self) -> &[u8] {
        self.current().value()
    }

    fn status(&self) -> Result<()> {
        self.status.clone()
    }
}
