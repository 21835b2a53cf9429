//! Instruction-count benchmark (gungraun/callgrind) of one HMC transition on the 16-D Many Well, run by
//! `cargo xtask bench` against the committed baseline in `bench-baselines/`.

// gungraun's macros generate undocumented modules, constants and functions.
#![allow(missing_docs)]

use fab_core::{ExactSampler, stream_rng};
use fab_mcmc::{ChainState, Hmc, Kernel, LinearLogDensity, StepInfo};
use fab_targets::ManyWell;
use gungraun::{library_benchmark, library_benchmark_group, main};
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::hint::black_box;

/// Chains in the benchmark: two chunks of the default size, so the chunked path is exercised.
const N_CHAINS: usize = 128;

/// A one-thread rayon pool whose worker is the calling thread: callgrind only counts the benchmark's own thread,
/// so the parallel chunks must run there (they would run on a pool thread and go uncounted otherwise).
fn current_thread_pool() -> ThreadPool {
    ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().expect("thread pool")
}

/// The target (leaked: it must outlive the state borrowed from it), 128 exact samples with cached gradients,
/// and the pool.
fn many_well_chains() -> (&'static ManyWell, ChainState, ThreadPool) {
    let target: &'static ManyWell = Box::leak(Box::new(ManyWell::new(16).expect("16 is even")));
    let x = target.sample_exact(&mut stream_rng(0, 0), N_CHAINS);
    let pool = current_thread_pool();
    let state =
        pool.install(|| ChainState::init(&LinearLogDensity::single(target), x, true).expect("dimensions agree"));
    (target, state, pool)
}

#[library_benchmark]
#[bench::many_well_d16_128_chains_5_leapfrog(setup = many_well_chains)]
fn hmc_transition((target, mut state, pool): (&'static ManyWell, ChainState, ThreadPool)) -> (ChainState, StepInfo) {
    let density = LinearLogDensity::single(target);
    let info =
        pool.install(|| Hmc::without_jitter(5).step(&density, &mut state, black_box(0.1), 7).expect("valid settings"));
    (state, info)
}

library_benchmark_group!(name = hmc; benchmarks = hmc_transition);

main!(library_benchmark_groups = hmc);
