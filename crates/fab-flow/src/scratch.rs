//! A small per-thread pool of `f64` buffers, so the hot loops do not mmap/munmap (and page-fault) large activation
//! buffers on every layer of every call.
//!
//! Buffers handed out are always zero-filled, so results never depend on what a buffer held before.

use std::cell::RefCell;

/// Buffers smaller than this are cheap to allocate and are not pooled.
const MIN_POOLED: usize = 4096;
/// At most this many buffers are kept per thread.
const MAX_POOLED: usize = 96;

thread_local! {
    static POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// A zero-filled buffer of length `len`, reusing a pooled allocation when one is large enough.
pub(crate) fn take_zeroed(len: usize) -> Vec<f64> {
    if len < MIN_POOLED {
        return vec![0.0; len];
    }
    let reused = POOL.with(|p| {
        let mut p = p.borrow_mut();
        // Smallest buffer that fits, to keep big buffers for big requests.
        let best =
            p.iter().enumerate().filter(|(_, b)| b.capacity() >= len).min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
        best.map(|i| p.swap_remove(i))
    });
    match reused {
        Some(mut b) => {
            b.clear();
            b.resize(len, 0.0);
            b
        }
        None => vec![0.0; len],
    }
}

/// Returns a buffer to this thread's pool.
pub(crate) fn give(buf: Vec<f64>) {
    if buf.capacity() < MIN_POOLED {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < MAX_POOLED {
            p.push(buf);
        }
    });
}
