//! A global allocator that counts live bytes and stops the run when they pass a bound.
//!
//! The check runs inside `alloc`, before the memory is taken, so a parser asked to reserve
//! gigabytes is caught without the machine swapping. Allocator methods must not unwind, so
//! an overrun calls the engine's handler, which reports and exits the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The bound in bytes; 0 while no run is armed.
static LIMIT: AtomicUsize = AtomicUsize::new(0);
/// Set once by the first overrun: later allocations (the handler's own) go through.
static TRIPPED: AtomicBool = AtomicBool::new(false);
static HANDLER: std::sync::OnceLock<fn(usize, usize)> = std::sync::OnceLock::new();

/// [`System`] with live-byte accounting; the binary installs it as `#[global_allocator]`.
#[derive(Debug, Default)]
pub struct CountingAlloc;

impl CountingAlloc {
    fn grew(&self, by: usize) {
        let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(live, Ordering::Relaxed);
        let limit = LIMIT.load(Ordering::Relaxed);
        if limit != 0 && live > limit && !TRIPPED.swap(true, Ordering::SeqCst) {
            if let Some(handler) = HANDLER.get() {
                handler(live, by);
            }
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's layout; the counters are atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.grew(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.grew(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            self.grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// Arms the bound: from now on, live bytes above `limit` call `handler(live, request)` once
/// (it must not return normally into a parser expecting memory: it exits the process).
pub fn arm(limit: usize, handler: fn(usize, usize)) {
    let _ = HANDLER.set(handler);
    LIMIT.store(limit, Ordering::SeqCst);
}

/// Live bytes now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Most live bytes seen so far.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}
