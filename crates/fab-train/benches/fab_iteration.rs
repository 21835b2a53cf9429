//! Instruction-count benchmark (gungraun/callgrind) of one whole FAB iteration of the 2021 Many Well, run by
//! `cargo xtask bench` against the committed baseline in `bench-baselines/`.
//!
//! The settings are `configs/many_well16_fab_2021.ron` (16-D Many Well, 2021 RealNVP with 20 blocks × 160, AIS
//! with 2 intermediate distributions and HMC with 5 leapfrog steps, AdamW with clipping) except the batch:
//! [`BATCH`] points instead of 1000. Measured with gungraun 0.20 (callgrind): 51.1·10⁶ instructions at batch 16 and
//! 163.7·10⁶ at batch 64, so about 13·10⁶ per iteration plus 2.4·10⁶ per point, i.e. ≈ 2.4·10⁹ at batch 1000:
//! tens of seconds under callgrind. The flow, the AIS and the loss run the same code at any batch below the flow's
//! 256-row chunk, so batch 16 covers the same paths at a fraction of the cost.
//!
//! Only fab-train's stable public API is used (`TrainConfig` parsed from the config's RON text, `Run::new`,
//! `Run::step`), so the benchmark does not depend on how the config's fields are typed.

// gungraun's macros generate undocumented modules, constants and functions.
#![allow(missing_docs)]

use fab_train::{IterationReport, Run, TrainConfig};
use gungraun::{library_benchmark, library_benchmark_group, main};
use rayon::{ThreadPool, ThreadPoolBuilder};

/// The experiment's config file, embedded so the benchmark runs from any directory.
const CONFIG_RON: &str = include_str!("../../../configs/many_well16_fab_2021.ron");
/// Points per iteration in the benchmark (the config has 1000).
const BATCH: usize = 16;

/// A one-thread rayon pool whose worker is the calling thread: callgrind only counts the benchmark's own thread,
/// so the parallel chunks must run there (they would run on a pool thread and go uncounted otherwise).
fn current_thread_pool() -> ThreadPool {
    ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().expect("thread pool")
}

/// The run of the config at batch [`BATCH`], after one iteration (so the counted one is a steady-state iteration:
/// the first one also fills the flow's buffer pools and starts the step-size adaptation), and the pool.
fn many_well_2021_run() -> (Run, ThreadPool) {
    let mut config: TrainConfig = ron::Options::default().from_str(CONFIG_RON).expect("the config file parses");
    config.batch_size = BATCH;
    let pool = current_thread_pool();
    let mut run = Run::new(config).expect("the config is valid");
    pool.install(|| run.step()).expect("the first iteration runs");
    (run, pool)
}

#[library_benchmark]
#[bench::many_well16_2021_b16(setup = many_well_2021_run)]
fn fab_iteration((mut run, pool): (Run, ThreadPool)) -> (IterationReport, Run) {
    let report = pool.install(|| run.step()).expect("the iteration runs");
    (report, run)
}

library_benchmark_group!(name = fab_2021; benchmarks = fab_iteration);

main!(library_benchmark_groups = fab_2021);
