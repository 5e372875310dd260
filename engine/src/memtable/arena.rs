//! [`Arena`]: the bump allocator a memtable's skiplist nodes live in.
//!
//! A memtable only grows and is then dropped whole, so its entries need no individual
//! `free`: they are carved from large chunks by bumping an offset, and dropping the arena
//! returns a few chunks to the allocator instead of one allocation per entry. (With one
//! heap allocation per entry, a flush spent about a third of its time freeing them.)
//!
//! Many writers allocate at once. Each thread allocates from the chunk of its stripe (one of
//! a few, numbered per thread), so that two writers neither share an offset nor write
//! neighbouring nodes into one cache line. The common case is one uncontended `fetch_add`
//! on that chunk's offset; only a thread that finds its chunk full takes the lock and
//! installs a new one. Chunks are never freed or moved before the arena drops, so a pointer
//! into one stays valid for the arena's whole life.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::Mutex;
use strata_core::stripe::Striped;

/// Alignment of every allocation: enough for the atomic pointers in skiplist nodes.
pub(crate) const ALIGN: usize = 8;

/// Size of the first chunk; each new chunk doubles the last, up to [`MAX_CHUNK`], so that a
/// small memtable stays small and a large one needs few chunks.
const FIRST_CHUNK: usize = 4 << 10;
const MAX_CHUNK: usize = 1 << 20;

/// Requests above this size get a chunk of their own: they would waste most of a shared one.
const DEDICATED_ABOVE: usize = MAX_CHUNK / 4;

/// One block of memory handed out front to back. Aligned so that the offsets of two chunks
/// never share a cache line.
#[repr(align(128))]
struct Chunk {
    base: NonNull<u8>,
    cap: usize,
    /// Bytes claimed so far. Threads that fail to fit push it past `cap`; it is then never
    /// used again for allocation.
    used: AtomicUsize,
}

impl Chunk {
    fn new(cap: usize) -> Box<Chunk> {
        let layout = chunk_layout(cap);
        // SAFETY: `layout` has a non-zero size (`cap` is at least one aligned word).
        let base = unsafe { alloc(layout) };
        let Some(base) = NonNull::new(base) else { handle_alloc_error(layout) };
        Box::new(Chunk { base, cap, used: AtomicUsize::new(0) })
    }

    /// Bytes of this chunk in use (claims that did not fit do not count).
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed).min(self.cap)
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc` with this same layout and is freed only here.
        unsafe { dealloc(self.base.as_ptr(), chunk_layout(self.cap)) }
    }
}

fn chunk_layout(cap: usize) -> Layout {
    match Layout::from_size_align(cap, ALIGN) {
        Ok(layout) => layout,
        // `cap` is bounded by the largest entry the engine accepts (a few hundred MiB).
        Err(_) => panic!("arena chunk of {cap} bytes is not a valid layout"),
    }
}

/// A concurrent bump allocator. See the module documentation.
pub(crate) struct Arena {
    /// The chunk each allocation stripe bumps in (`strata_core::stripe`), so that writers on
    /// different cores neither contend on one offset nor write nodes into the same cache
    /// lines (which would bounce those lines between cores on every insert and every search
    /// that passes them). Null until the stripe's first allocation; then always one of
    /// `state.chunks`.
    stripes: Striped<AtomicPtr<Chunk>>,
    /// Bytes in use in every chunk no stripe allocates from any more (changed under `state`).
    retired_used: AtomicUsize,
    state: Mutex<ArenaState>,
}

struct ArenaState {
    /// Every chunk, from `Box::leak`, owned here until the arena drops. Raw rather
    /// than boxed: the stripes and callers' pointers alias them, which a `Box` forbids.
    chunks: Vec<NonNull<Chunk>>,
    /// Size of the next shared chunk.
    next_chunk: usize,
}

// SAFETY: the arena hands out raw memory and never reads or writes it; the chunks it owns
// are plain bytes with no thread affinity, and its own bookkeeping is atomics and a mutex.
unsafe impl Send for Arena {}
// SAFETY: as above; concurrent `allocate` calls claim disjoint ranges by `fetch_add`.
unsafe impl Sync for Arena {}

impl Arena {
    pub(crate) fn new() -> Self {
        Arena {
            stripes: Striped::default(),
            retired_used: AtomicUsize::new(0),
            state: Mutex::new(ArenaState { chunks: Vec::new(), next_chunk: FIRST_CHUNK }),
        }
    }

    /// `size` bytes (rounded up to [`ALIGN`]), aligned to [`ALIGN`], uninitialized, valid
    /// until the arena drops and never handed out again.
    pub(crate) fn allocate(&self, size: usize) -> NonNull<u8> {
        let size = size.max(1).next_multiple_of(ALIGN);
        if size > DEDICATED_ABOVE {
            return self.dedicated(size);
        }
        let stripe = self.stripes.mine();
        loop {
            let current = stripe.load(Ordering::Acquire);
            // SAFETY: a non-null `current` points at a chunk in `state.chunks`, which are
            // never moved or freed until the arena drops.
            if let Some(chunk) = unsafe { current.as_ref() } {
                let offset = chunk.used.fetch_add(size, Ordering::Relaxed);
                if offset.checked_add(size).is_some_and(|end| end <= chunk.cap) {
                    // SAFETY: `offset + size <= cap`, so the result stays inside the chunk;
                    // the range [offset, offset + size) was claimed by this thread alone.
                    return unsafe { chunk.base.add(offset) };
                }
            }
            self.grow(stripe, current);
        }
    }

    /// A large request, served by a chunk of its own.
    #[cold]
    fn dedicated(&self, size: usize) -> NonNull<u8> {
        let chunk = Chunk::new(size);
        chunk.used.store(size, Ordering::Relaxed);
        let base = chunk.base;
        self.state.lock().chunks.push(NonNull::from(Box::leak(chunk)));
        self.retired_used.fetch_add(size, Ordering::Relaxed);
        base
    }

    /// Slow path of [`Arena::allocate`]: the stripe's chunk had no room (or it had none).
    /// Installs a new chunk, unless another thread of the stripe already did; the caller
    /// then retries.
    #[cold]
    fn grow(&self, stripe: &AtomicPtr<Chunk>, full: *mut Chunk) {
        let mut state = self.state.lock();
        if stripe.load(Ordering::Acquire) != full {
            return;
        }
        // SAFETY: as in `allocate`; the chunk is retired but still owned by `state`.
        if let Some(full) = unsafe { full.as_ref() } {
            self.retired_used.fetch_add(full.used(), Ordering::Relaxed);
        }
        let cap = state.next_chunk;
        state.next_chunk = (cap * 2).min(MAX_CHUNK);
        let chunk = NonNull::from(Box::leak(Chunk::new(cap)));
        stripe.store(chunk.as_ptr(), Ordering::Release);
        state.chunks.push(chunk);
    }

    /// Bytes handed out so far, with alignment padding and the unused tails of full chunks:
    /// the memory the entries take. Exact when no allocation runs concurrently; otherwise
    /// it may count a chunk being retired twice, which errs on the side of a full memtable.
    pub(crate) fn used_bytes(&self) -> usize {
        let in_current: usize = self
            .stripes
            .iter()
            .map(|stripe| {
                // SAFETY: as in `allocate`: a retired chunk is still owned by `state`.
                unsafe { stripe.load(Ordering::Acquire).as_ref() }.map_or(0, Chunk::used)
            })
            .sum();
        self.retired_used.load(Ordering::Relaxed) + in_current
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in self.state.get_mut().chunks.drain(..) {
            // SAFETY: every entry came from `Box::leak` and is freed once, here; `&mut self`
            // means no allocation is in flight, and memory handed out dies with the arena.
            drop(unsafe { Box::from_raw(chunk.as_ptr()) });
        }
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena").field("used_bytes", &self.used_bytes()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn allocations_are_aligned_disjoint_and_counted() {
        let arena = Arena::new();
        let mut ranges = Vec::new();
        let mut total = 0;
        for size in [1usize, 7, 8, 9, 100, 4000, 5000, 300 << 10, 16, 3] {
            let p = arena.allocate(size).as_ptr() as usize;
            assert_eq!(p % ALIGN, 0);
            ranges.push((p, p + size));
            total += size.next_multiple_of(ALIGN);
        }
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "overlapping allocations {pair:?}");
        }
        // Tails of full chunks count as used: 4000 and 5000 bytes do not fit behind the rest.
        assert!((total..total + (16 << 10)).contains(&arena.used_bytes()));
    }

    #[test]
    fn memory_written_stays_intact_across_chunks() {
        let arena = Arena::new();
        let mut blocks = Vec::new();
        for i in 0..2000usize {
            let len = 1 + i % 700;
            let p = arena.allocate(len);
            // SAFETY: `p` is `len` fresh bytes owned by this test until the arena drops.
            unsafe { std::ptr::write_bytes(p.as_ptr(), i as u8, len) };
            blocks.push((p, len, i as u8));
        }
        for (p, len, byte) in blocks {
            // SAFETY: written above; the arena is still alive.
            let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
            assert!(s.iter().all(|&b| b == byte));
        }
    }

    #[test]
    fn concurrent_allocations_never_overlap() {
        let arena = Arc::new(Arena::new());
        let threads = if cfg!(miri) { 3 } else { 4 };
        let per_thread = if cfg!(miri) { 200 } else { 20_000 };
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let arena = Arc::clone(&arena);
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let len = 8 + (i * 13 + t) % 120;
                            (arena.allocate(len).as_ptr() as usize, len.next_multiple_of(ALIGN))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, usize)> =
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let expected: usize = all.iter().map(|&(_, len)| len).sum();
        assert_eq!(all.iter().map(|&(p, _)| p).collect::<HashSet<_>>().len(), all.len());
        all.sort();
        for pair in all.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0);
        }
        // Tails of full chunks are counted too: less than one request (< 128 bytes) each.
        let used = arena.used_bytes();
        assert!(used >= expected && used < expected + 64 * 128, "{used} vs {expected}");
    }
}
