//! [`SkipList`]: the concurrent, insert-only skiplist behind a memtable, with its nodes in an
//! [`Arena`].
//!
//! Each node is one arena allocation holding everything a search touches. The tower comes
//! first, highest level first, so that the level-0 link, the header and the key sit side by
//! side, usually in one cache line, at fixed offsets from the node's address (a node is
//! addressed at its header):
//!
//! ```text
//!  -8h                   -8        0        4          8       9         10    16
//!  ┌─────────────────────┬─────────┬────────┬──────────┬───────┬─────────┬─────┬─────┬───────┐
//!  │ next[h-1] … next[1] │ next[0] │key_len │value_len │height │removed  │ pad │ key │ value │
//!  │ 8-byte atomic ptrs  │         │u32     │u32       │u8 (h) │u8 atomic│     │     │       │
//!  └─────────────────────┴─────────┴────────┴──────────┴───────┴─────────┴─────┴─────┴───────┘
//! ```
//!
//! Keys are encoded internal keys, ordered by [`compare_internal`]; they are unique, since
//! every version has its own sequence number.
//!
//! # Concurrency
//! - Any number of threads insert at once, without locks. A node is written in full before
//!   it is linked; it is linked bottom-up, level by level, each with a compare-and-swap on
//!   its predecessor's pointer (release), retried from that predecessor if another insert
//!   got there first. Readers load pointers with acquire, so they see a node complete.
//! - Nothing is ever unlinked or freed before the whole list drops: a pointer read from the
//!   list stays valid while the list lives. A reader therefore needs no epoch or hazard
//!   pointer, and a node it stands on can never go away under it.
//! - [`SkipList::mark_removed`] flags a node instead of unlinking it; every read skips
//!   flagged nodes. It exists for the write path's one undo (a batch whose log write
//!   failed), which happens before the entry can be visible.

use std::cell::Cell;
use std::cmp::Ordering as KeyOrdering;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use strata_core::key::compare_internal;

use super::arena::Arena;

/// Tallest tower. With a 1-in-4 chance per extra level, 16 levels keep searches
/// logarithmic up to about 4^16 entries, far beyond any memtable.
pub(crate) const MAX_HEIGHT: usize = 16;

/// Bytes before a node's tower.
const HEADER: usize = 16;
const KEY_LEN_AT: usize = 0;
const VALUE_LEN_AT: usize = 4;
const HEIGHT_AT: usize = 8;
const REMOVED_AT: usize = 9;

/// A node of a [`SkipList`], valid as long as the borrow `'a` of its list.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    ptr: NonNull<u8>,
    list: PhantomData<&'a SkipList>,
}

impl PartialEq for Node<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}

impl<'a> Node<'a> {
    /// # Safety
    /// `ptr` must point at an initialized node (or the head) of a list borrowed for `'a`.
    unsafe fn from_raw(ptr: NonNull<u8>) -> Self {
        Node { ptr, list: PhantomData }
    }

    fn read_u32(self, at: usize) -> usize {
        // SAFETY: a node (see `from_raw`) has its 16-byte header initialized, written once
        // before the node was linked and never again; `at` + 4 is within the header.
        let v = unsafe { ptr::read_unaligned(self.ptr.as_ptr().add(at).cast::<u32>()) };
        v as usize
    }

    fn height(self) -> usize {
        // SAFETY: as in `read_u32`.
        usize::from(unsafe { *self.ptr.as_ptr().add(HEIGHT_AT) })
    }

    fn removed_flag(self) -> &'a AtomicU8 {
        // SAFETY: the header byte at REMOVED_AT is an `AtomicU8` for the node's whole life
        // (initialized before linking); `u8` and `AtomicU8` have the same layout; the list
        // outlives `'a`.
        unsafe { &*self.ptr.as_ptr().add(REMOVED_AT).cast::<AtomicU8>() }
    }

    /// The node's forward pointer at `level`, which must be below its height: every caller
    /// asks only at levels where it reached or links the node (the head is full height).
    fn link(self, level: usize) -> &'a AtomicPtr<u8> {
        debug_assert!(level < self.height(), "level {level} above the node's tower");
        // SAFETY: the `height` initialized `AtomicPtr`s of the tower end at the header, which
        // is 8-aligned, inside the node's allocation; `level < height` (above); the list
        // outlives `'a`.
        unsafe { &*self.ptr.as_ptr().sub(8 * (level + 1)).cast::<AtomicPtr<u8>>() }
    }

    fn next(self, level: usize) -> Option<Node<'a>> {
        // SAFETY: a link is null or points at a node of the same list, fully written before
        // it was linked (release), and read here with acquire.
        NonNull::new(self.link(level).load(Ordering::Acquire)).map(|p| unsafe { Node::from_raw(p) })
    }

    /// The encoded internal key.
    pub(crate) fn key(self) -> &'a [u8] {
        // SAFETY: the `key_len` bytes after the header were written before linking and are
        // never written again; the list outlives `'a`.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(HEADER), self.read_u32(KEY_LEN_AT))
        }
    }

    /// The value (empty for a deletion).
    pub(crate) fn value(self) -> &'a [u8] {
        let start = HEADER + self.read_u32(KEY_LEN_AT);
        // SAFETY: as in `key`, for the `value_len` bytes after the key.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(start), self.read_u32(VALUE_LEN_AT))
        }
    }

    pub(crate) fn is_removed(self) -> bool {
        self.removed_flag().load(Ordering::Acquire) != 0
    }

    /// This node, or the first node after it that is not removed.
    pub(crate) fn skip_removed(self) -> Option<Node<'a>> {
        let mut node = self;
        while node.is_removed() {
            node = node.next(0)?;
        }
        Some(node)
    }

    /// The first node after this one that is not removed.
    pub(crate) fn successor(self) -> Option<Node<'a>> {
        self.next(0)?.skip_removed()
    }

    pub(crate) fn as_raw(self) -> NonNull<u8> {
        self.ptr
    }
}

/// A concurrent skiplist of (encoded internal key, value) pairs. See the module
/// documentation.
pub(crate) struct SkipList {
    arena: Arena,
    /// A node of height [`MAX_HEIGHT`] with an empty key, before every other; never compared.
    head: NonNull<u8>,
    /// Height of the tallest tower so far: searches start there.
    height: AtomicUsize,
}

// SAFETY: every node lives in the arena (Send + Sync) and is immutable after linking except
// for its atomics; the `head` pointer is into the arena too.
unsafe impl Send for SkipList {}
// SAFETY: as above; concurrent inserts synchronize through the atomic links (module docs).
unsafe impl Sync for SkipList {}

impl SkipList {
    pub(crate) fn new() -> Self {
        let arena = Arena::new();
        let head = Self::new_node(&arena, MAX_HEIGHT, 0, 0);
        SkipList { arena, head, height: AtomicUsize::new(1) }
    }

    /// Allocates a node with a null tower and a zero-filled key, and returns the address of
    /// its header. The value bytes are left for the caller to write.
    fn new_node(arena: &Arena, height: usize, key_len: usize, value_len: usize) -> NonNull<u8> {
        let (Ok(key_len32), Ok(value_len32)) = (u32::try_from(key_len), u32::try_from(value_len))
        else {
            // The write path limits keys to 64 KiB and values to under 128 MiB.
            panic!("memtable entry of {key_len} + {value_len} bytes exceeds the u32 node fields")
        };
        let tower = 8 * height;
        let base = arena.allocate(tower + HEADER + key_len + value_len).as_ptr();
        // SAFETY: `base` starts `tower + HEADER + key_len + value_len` fresh, 8-aligned bytes
        // of the arena, exclusively ours until linked; `p` is 8-aligned inside them. Zeroing
        // makes the tower null pointers and the removed flag false, and initializes the key
        // bytes the caller writes through a slice.
        let p = unsafe {
            ptr::write_bytes(base, 0, tower + HEADER + key_len);
            let p = base.add(tower);
            ptr::write_unaligned(p.add(KEY_LEN_AT).cast::<u32>(), key_len32);
            ptr::write_unaligned(p.add(VALUE_LEN_AT).cast::<u32>(), value_len32);
            *p.add(HEIGHT_AT) = height as u8;
            p
        };
        // SAFETY: inside an allocation from `allocate`, never null.
        unsafe { NonNull::new_unchecked(p) }
    }

    fn head(&self) -> Node<'_> {
        // SAFETY: the head is initialized in `new` and lives in our arena.
        unsafe { Node::from_raw(self.head) }
    }

    /// # Safety
    /// `ptr` must come from [`Node::as_raw`] on a node of this list.
    pub(crate) unsafe fn node(&self, ptr: NonNull<u8>) -> Node<'_> {
        // SAFETY: the caller's promise.
        unsafe { Node::from_raw(ptr) }
    }

    /// Bytes the nodes take in the arena.
    pub(crate) fn memory_usage(&self) -> usize {
        self.arena.used_bytes()
    }

    /// Inserts a node whose key is `key_len` bytes written by `write_key`, and whose value
    /// is `value`. The key must not be in the list yet.
    pub(crate) fn insert(&self, key_len: usize, value: &[u8], write_key: impl FnOnce(&mut [u8])) {
        let height = random_height();
        let raw = Self::new_node(&self.arena, height, key_len, value.len());
        // SAFETY: `raw` is our fresh node, not yet linked: nothing else reads its key or
        // value bytes, which lie within its allocation after the header.
        unsafe {
            let key_at = raw.as_ptr().add(HEADER);
            write_key(std::slice::from_raw_parts_mut(key_at, key_len));
            ptr::copy_nonoverlapping(value.as_ptr(), key_at.add(key_len), value.len());
        }
        // SAFETY: fully written above.
        let node = unsafe { Node::from_raw(raw) };
        let key = node.key();

        // Read first: a read-modify-write on every insert would bounce this shared line.
        if height > self.height.load(Ordering::Relaxed) {
            self.height.fetch_max(height, Ordering::Relaxed);
        }
        let mut prev = [self.head(); MAX_HEIGHT];
        let mut next: [Option<Node<'_>>; MAX_HEIGHT] = [None; MAX_HEIGHT];
        let mut x = self.head();
        for level in (0..self.height.load(Ordering::Relaxed)).rev() {
            (prev[level], next[level]) = Self::splice_at(x, key, level);
            x = prev[level];
        }
        for level in 0..height {
            loop {
                let expected = next[level].map_or(ptr::null_mut(), |n| n.ptr.as_ptr());
                node.link(level).store(expected, Ordering::Relaxed);
                if prev[level]
                    .link(level)
                    .compare_exchange(expected, raw.as_ptr(), Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
                // Another insert linked a node after `prev` meanwhile; it may sort before
                // ours, so search this level again from `prev` (still before our key).
                (prev[level], next[level]) = Self::splice_at(prev[level], key, level);
            }
        }
    }

    /// On `level`, starting at `from` (whose key is below `key`): the last node with a key
    /// below `key` and the node after it.
    fn splice_at<'a>(from: Node<'a>, key: &[u8], level: usize) -> (Node<'a>, Option<Node<'a>>) {
        let mut x = from;
        loop {
            match x.next(level) {
                Some(n) if compare_internal(n.key(), key) == KeyOrdering::Less => x = n,
                next => return (x, next),
            }
        }
    }

    /// The first node with a key `>= key`, removed or not.
    fn lower_bound(&self, key: &[u8]) -> Option<Node<'_>> {
        let mut x = self.head();
        let mut next = None;
        for level in (0..self.height.load(Ordering::Acquire)).rev() {
            (x, next) = Self::splice_at(x, key, level);
        }
        next
    }

    /// The first live node with a key `>= key`.
    pub(crate) fn seek(&self, key: &[u8]) -> Option<Node<'_>> {
        self.lower_bound(key)?.skip_removed()
    }

    /// The last live node with a key `< key` (`None`: the last live node of all).
    pub(crate) fn seek_before(&self, key: Option<&[u8]>) -> Option<Node<'_>> {
        let mut bound = key;
        loop {
            let mut x = self.head();
            for level in (0..self.height.load(Ordering::Acquire)).rev() {
                while let Some(n) = x.next(level) {
                    if bound.is_some_and(|b| compare_internal(n.key(), b) != KeyOrdering::Less) {
                        break;
                    }
                    x = n;
                }
            }
            if x == self.head() {
                return None;
            }
            if !x.is_removed() {
                return Some(x);
            }
            bound = Some(x.key());
        }
    }

    /// The first live node.
    pub(crate) fn first(&self) -> Option<Node<'_>> {
        self.head().successor()
    }

    /// The node with exactly this key, if live.
    pub(crate) fn find(&self, key: &[u8]) -> Option<Node<'_>> {
        self.seek(key).filter(|n| n.key() == key)
    }

    /// Flags the node with exactly `key` as removed; false if there is none.
    pub(crate) fn mark_removed(&self, key: &[u8]) -> bool {
        match self.find(key) {
            Some(node) => {
                node.removed_flag().store(1, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Whether no live node is in the list.
    pub(crate) fn is_empty(&self) -> bool {
        self.first().is_none()
    }
}

impl std::fmt::Debug for SkipList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkipList")
            .field("height", &self.height.load(Ordering::Relaxed))
            .field("memory_usage", &self.memory_usage())
            .finish()
    }
}

/// A tower height: 1, then each further level with probability 1/4.
fn random_height() -> usize {
    thread_local! {
        // xorshift64; seeded per thread from the thread's stack address and the clock, so
        // threads draw different heights. Nonzero, as xorshift needs.
        static STATE: Cell<u64> = Cell::new({
            let local = 0u8;
            let addr = &local as *const u8 as u64;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as u64);
            (addr.rotate_left(32) ^ nanos) | 1
        });
    }
    let r = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    // Two more trailing zero bits per level: probability 1/4 each.
    (1 + r.trailing_zeros() as usize / 2).min(MAX_HEIGHT)
}
