//! A global allocator that counts each thread's allocations, for no-allocation tests.

// A global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

use metric_loss_core::{Float, LossInput, LossOutput, MetricLoss, MetricLossExt, Workspace};
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

/// Asserts that six steady-state calls of `loss` make no ordinary allocation on this
/// thread (see [`allocations`]): after three warm-up calls (with gradient, forward only,
/// with gradient), three rounds of a forward-only call and a call with gradient, all
/// reusing one workspace and one output.
///
/// # Panics
/// If a call fails or allocates.
pub fn assert_steady_state_does_not_allocate<T: Float>(
    loss: &dyn MetricLoss,
    with_grad: &LossInput<'_, T>,
    case: &str,
) {
    let forward = with_grad.without_gradient();
    let mut ws = Workspace::new();
    let mut out = LossOutput::new();
    let mut call = |input: &LossInput<'_, T>| {
        if let Err(e) = loss.compute_into(input, &mut ws, &mut out) {
            panic!("{} {} {case}: {e}", T::DTYPE, loss.name());
        }
    };
    call(with_grad);
    call(&forward);
    call(with_grad);
    let before = allocations().0;
    for _ in 0..3 {
        call(&forward);
        call(with_grad);
    }
    let plain = allocations().0 - before;
    assert_eq!(
        plain,
        0,
        "{} {} {case}: {plain} allocations in 6 calls",
        T::DTYPE,
        loss.name()
    );
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
