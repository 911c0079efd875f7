//! A global allocator that counts each thread's allocations, for no-allocation tests.

// A global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to [`System`] and counts this thread's allocations (see [`allocations`]).
/// Install it in a test binary with
/// `#[global_allocator] static A: CountingAllocator = CountingAllocator;`.
///
/// Requests aligned to 16 bytes or more are counted apart: matrixmultiply's packing
/// buffers (one per matrix product; nothing in this workspace asks for more than 8).
#[derive(Debug)]
pub struct CountingAllocator;

thread_local! {
    /// (ordinary allocations, SIMD-aligned allocations) made by this thread.
    static COUNTS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn note(layout: Layout) {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    let _ = COUNTS.try_with(|c| {
        let (plain, aligned) = c.get();
        c.set(if layout.align() >= 16 {
            (plain, aligned + 1)
        } else {
            (plain + 1, aligned)
        });
    });
}

/// This thread's allocations so far with [`CountingAllocator`] installed: (ordinary ones,
/// SIMD-aligned ones). Always (0, 0) without it.
pub fn allocations() -> (usize, usize) {
    COUNTS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting touches only a const-initialised thread-local `Cell` (no allocation, no
// re-entrancy).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(layout);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}
