//! Instruction-count benchmark (gungraun/callgrind) of one AIS run as FAB does it (2021 MoG flow as proposal,
//! the 2021 MoG target, 2 intermediate distributions, HMC with 5 leapfrog steps), run by `cargo xtask bench`
//! against the committed baseline in `bench-baselines/`.

// gungraun's macros generate undocumented modules, constants and functions.
#![allow(missing_docs)]

use fab_ais::{Ais, AisConfig, AisOutput};
use fab_core::stream_rng;
use fab_flow::{Flow, FlowSpec};
use fab_targets::DiagGmm;
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

/// The flow (ActNorm initialised, parameters moved off their zero-initialised heads), the target, the sampler,
/// the pool.
fn fab_2021_mog() -> (Flow, DiagGmm, Ais, ThreadPool) {
    let mut flow = Flow::new(&FlowSpec::mog_2021(), 0).expect("valid spec");
    flow.initialize_data_dependent(&mut stream_rng(0, 1), 256);
    for (i, p) in flow.params_mut().iter_mut().enumerate() {
        *p += 0.01 * ((i as f64) * 0.618).sin();
    }
    let ais = Ais::new(AisConfig::fab_2021().check().expect("valid config"));
    (flow, DiagGmm::mog5_2021(), ais, current_thread_pool())
}

#[library_benchmark]
#[bench::mog_2021_100_points(setup = fab_2021_mog)]
fn ais_run((flow, target, mut ais, pool): (Flow, DiagGmm, Ais, ThreadPool)) -> AisOutput {
    pool.install(|| ais.run(&flow, &target, black_box(N_POINTS), 3, 0).expect("valid run"))
}

library_benchmark_group!(name = ais; benchmarks = ais_run);

main!(library_benchmark_groups = ais);
