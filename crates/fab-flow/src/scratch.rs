//! A small per-thread pool of `f64` buffers, so the hot loops do not allocate (and, for large buffers,
//! mmap/munmap and page-fault) activation buffers on every layer of every call.
//!
//! Buffers are kept in power-of-two capacity classes, so taking and giving back are O(1). [`take_zeroed`] hands
//! out zero-filled buffers; [`take_for_overwrite`] hands out buffers with unspecified (stale but initialised)
//! contents, for outputs that are written in full before they are read, so results never depend on what a
//! buffer held before.

use std::cell::RefCell;

/// Buffers smaller than this are cheap to allocate and are not pooled.
const MIN_POOLED: usize = 16;
/// At most this many buffers are kept per capacity class and thread...
const MAX_PER_CLASS: usize = 64;
/// ...and at most this many elements (64 MB) per class and thread.
const MAX_ELEMENTS_PER_CLASS: usize = 1 << 23;
/// Number of capacity classes (`2^0 … 2^(CLASSES−1)` elements).
const CLASSES: usize = 40;

thread_local! {
    static POOL: RefCell<Vec<Vec<Vec<f64>>>> = const { RefCell::new(Vec::new()) };
}

/// The class whose buffers all hold at least `len` elements: `⌈log₂ len⌉`.
fn class_for_request(len: usize) -> usize {
    len.next_power_of_two().trailing_zeros() as usize
}

/// The class a buffer of capacity `cap` can serve: `⌊log₂ cap⌋`.
fn class_of_capacity(cap: usize) -> usize {
    (usize::BITS - 1 - cap.leading_zeros()) as usize
}

/// A buffer of length `len` whose contents are unspecified; the caller must write every element before reading.
pub(crate) fn take_for_overwrite(len: usize) -> Vec<f64> {
    if len < MIN_POOLED {
        return vec![0.0; len];
    }
    let class = class_for_request(len);
    let reused = POOL.with(|p| p.borrow_mut().get_mut(class).and_then(Vec::pop));
    match reused {
        Some(mut b) => {
            if b.len() >= len {
                b.truncate(len);
            } else {
                b.resize(len, 0.0);
            }
            b
        }
        None => {
            let mut b = Vec::with_capacity(1 << class);
            b.resize(len, 0.0);
            b
        }
    }
}

/// A zero-filled buffer of length `len`, reusing a pooled allocation when one is available.
pub(crate) fn take_zeroed(len: usize) -> Vec<f64> {
    let mut b = take_for_overwrite(len);
    b.fill(0.0);
    b
}

/// A pooled copy of `src`.
pub(crate) fn copy_of(src: &[f64]) -> Vec<f64> {
    let mut b = take_for_overwrite(src.len());
    b.copy_from_slice(src);
    b
}

/// Makes `dst` a copy of `src`, reusing `dst`'s allocation when it is large enough (tapes recorded again).
pub(crate) fn assign_copy(dst: &mut Vec<f64>, src: &[f64]) {
    if dst.capacity() < src.len() {
        give(std::mem::replace(dst, copy_of(src)));
    } else {
        dst.clear();
        dst.extend_from_slice(src);
    }
}

/// Returns a buffer to this thread's pool.
pub(crate) fn give(buf: Vec<f64>) {
    let cap = buf.capacity();
    if cap < MIN_POOLED {
        return;
    }
    let class = class_of_capacity(cap);
    if class >= CLASSES {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            p.resize_with(CLASSES, Vec::new);
        }
        if p[class].len() < MAX_PER_CLASS.min((MAX_ELEMENTS_PER_CLASS >> class).max(1)) {
            p[class].push(buf);
        }
    });
}

/// Gives back a buffer that a chunk of parallel work filled and handed to the caller of the parallel map: pooled
/// only when the work ran on this thread (a single chunk runs inline). Otherwise it came from a rayon worker,
/// whose pool is where such buffers are taken again, and pooling it here would only grow this thread's pool, up to
/// its per-class limit (the 2021 Many Well run's main thread came to hold 40 MB of per-chunk parameter gradients
/// this way, about 64 over the first 20 iterations, none of them ever taken again).
pub(crate) fn give_from_chunks(buf: Vec<f64>, n_chunks: usize) {
    if n_chunks <= 1 {
        give(buf);
    }
}

/// Frees every buffer pooled on this thread.
fn clear_pool() {
    POOL.with(|p| p.borrow_mut().clear());
}

/// Frees the buffers pooled on every thread of the current rayon pool and on this thread. Results never depend
/// on the pools (see the module doc): this only hands memory back, e.g. before a phase with another working set.
pub fn release_pooled_buffers() {
    rayon::broadcast(|_| clear_pool());
    clear_pool();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers pooled on this thread.
    fn pooled() -> usize {
        POOL.with(|p| p.borrow().iter().map(Vec::len).sum())
    }

    #[test]
    fn buffers_from_parallel_chunks_are_not_pooled_by_the_caller_and_release_empties_the_pool() {
        release_pooled_buffers();
        give_from_chunks(vec![1.0; 1000], 4);
        assert_eq!(pooled(), 0);
        give_from_chunks(vec![1.0; 1000], 1);
        give(vec![2.0; 5000]);
        assert_eq!(pooled(), 2);
        release_pooled_buffers();
        assert_eq!(pooled(), 0);
        // A buffer taken after the release is a fresh zeroed one.
        assert!(take_zeroed(1000).iter().all(|&v| v == 0.0));
    }
}
