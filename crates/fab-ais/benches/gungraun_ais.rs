//! Instruction-count benchmark (gungraun/callgrind) of one AIS run with FAB 2021's settings (the 2021 MoG target,
//! 2 intermediate distributions, HMC with 5 leapfrog steps, 100 points), run by `cargo xtask bench` against the
//! committed baseline in `bench-baselines/`.
//!
//! The proposal is a broad Gaussian rather than a flow, so the count tracks fab-ais and fab-mcmc (the flow has its
//! own benchmark in fab-flow) and fab-ais keeps its small dev-dependency set.

// gungraun's macros generate undocumented modules, constants and functions.
#![allow(missing_docs)]

use fab_ais::{Ais, AisConfig, AisOutput};
use fab_targets::{DiagGaussian, DiagGmm};
use gungraun::{library_benchmark, library_benchmark_group, main};
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::hint::black_box;

/// Points per AIS run (kept small: valgrind runs ~50× slower than native).
const N_POINTS: usize = 100;

/// A one-thread rayon pool whose worker is the calling thread: callgrind only counts the benchmark's own thread,
/// so the parallel chunks must run there (they would run on a pool thread and go uncounted otherwise).
fn current_thread_pool() -> ThreadPool {
    ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().expect("thread pool")
}

/// The proposal `N(0, 3²I)` (it covers the mixture's modes), the target, the sampler, the pool.
fn fab_2021_mog() -> (DiagGaussian, DiagGmm, Ais, ThreadPool) {
    let proposal = DiagGaussian::new(vec![0.0; 2], vec![3.0; 2]).expect("valid Gaussian");
    let ais = Ais::new(AisConfig::fab_2021().check().expect("valid config"));
    (proposal, DiagGmm::mog5_2021(), ais, current_thread_pool())
}

#[library_benchmark]
#[bench::mog_2021_100_points(setup = fab_2021_mog)]
fn ais_run((proposal, target, mut ais, pool): (DiagGaussian, DiagGmm, Ais, ThreadPool)) -> AisOutput {
    pool.install(|| ais.run(&proposal, &target, black_box(N_POINTS), 3, 0).expect("valid run"))
}

library_benchmark_group!(name = ais; benchmarks = ais_run);

main!(library_benchmark_groups = ais);
