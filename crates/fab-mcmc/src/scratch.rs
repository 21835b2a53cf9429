//! Per-thread pools of the buffers a transition needs, so that the many-chain loop does not allocate.
//!
//! Why: each chunk of each transition needs positions, gradients, momenta and random streams (~60 KB per 64
//! chains of dimension 16). Allocated afresh, they go through glibc's allocator every transition; with two threads
//! an allocator call can wait on an arena lock held by the other thread (seen with `perf`: a `realloc` in the
//! leapfrog loop put both threads of `benches/scaling.rs` to sleep on `__lll_lock_wait_private` and cost the
//! whole 2-thread speed-up), and freed heap tops are returned to the OS and faulted back in. Buffers are taken
//! best-fit, so refilling never reallocates once warm, and always refilled before use, so reuse never changes a
//! result.

use fab_core::{StreamRng, stream_rng};
use std::cell::RefCell;

/// Buffers kept per thread and kind; more are dropped (a lock-step transition holds one set per chunk).
const POOL_LIMIT: usize = 512;

thread_local! {
    static F64_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
    static RNG_POOL: RefCell<Vec<Vec<StreamRng>>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with capacity for `len` values: the recycled one of this thread that fits best (the
/// smallest that is large enough), so that refilling it never reallocates once the pool has warmed up.
pub(crate) fn empty_f64(len: usize) -> Vec<f64> {
    F64_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let best = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity())
            .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
        let mut v = best.map(|i| pool.swap_remove(i)).unwrap_or_default();
        v.reserve(len);
        v
    })
}

/// `len` copies of `value` in a recycled vector.
pub(crate) fn filled_f64(len: usize, value: f64) -> Vec<f64> {
    let mut v = empty_f64(len);
    v.resize(len, value);
    v
}

/// A copy of `src` in a recycled vector.
pub(crate) fn copied_f64(src: &[f64]) -> Vec<f64> {
    let mut v = empty_f64(src.len());
    v.extend_from_slice(src);
    v
}

/// Gives a vector back to this thread's pool.
pub(crate) fn recycle_f64(mut v: Vec<f64>) {
    if v.capacity() == 0 {
        return;
    }
    v.clear();
    F64_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_LIMIT {
            pool.push(v);
        }
    });
}

/// The random streams `stream_rng(seed, start + i)` of `m` consecutive chains, in a recycled vector.
pub(crate) fn stream_rngs(seed: u64, start: usize, m: usize) -> Vec<StreamRng> {
    let mut v = RNG_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.extend((0..m).map(|i| stream_rng(seed, (start + i) as u64)));
    v
}

/// Gives a vector of random streams back to this thread's pool.
pub(crate) fn recycle_rngs(mut v: Vec<StreamRng>) {
    if v.capacity() == 0 {
        return;
    }
    v.clear();
    RNG_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_LIMIT {
            pool.push(v);
        }
    });
}
