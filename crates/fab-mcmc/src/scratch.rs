//! Per-thread pools of the buffers a transition needs, so that the many-chain loop does not allocate.
//!
//! Why: every transition used to allocate and free each chunk's buffers (positions, gradients, momenta, random
//! streams: ~60 KB per 64 chains of dimension 16). glibc then returns the freed top of a thread's heap to the
//! OS and takes it back on the next transition; with two threads each of those page-table changes costs a TLB
//! shootdown of the other core, and in a VM that is dear. Measured on the 16-D Many Well bench (1000 chains,
//! 10 leapfrog steps, 2 cores, `benches/scaling.rs`), it held the 1 → 2 thread speed-up well below 1.8×.
//! Pooled buffers are always refilled before use, so reuse never changes a result.

use fab_core::{StreamRng, stream_rng};
use std::cell::RefCell;

/// Buffers kept per thread and kind; more are dropped (a lock-step transition holds one set per chunk).
const POOL_LIMIT: usize = 512;

thread_local! {
    static F64_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
    static RNG_POOL: RefCell<Vec<Vec<StreamRng>>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector, with the capacity of a recycled one when this thread has one.
pub(crate) fn empty_f64() -> Vec<f64> {
    F64_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// `len` copies of `value` in a recycled vector.
pub(crate) fn filled_f64(len: usize, value: f64) -> Vec<f64> {
    let mut v = empty_f64();
    v.resize(len, value);
    v
}

/// A copy of `src` in a recycled vector.
pub(crate) fn copied_f64(src: &[f64]) -> Vec<f64> {
    let mut v = empty_f64();
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
