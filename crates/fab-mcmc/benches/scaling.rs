//! The 1 → 2 thread speed-up of an HMC transition (16-D Many Well, 1000 chains, 10 leapfrog steps), measured
//! interleaved and with per-thread CPU time, so that a shared, noisy machine still gives a usable figure.
//!
//! `cargo bench -p fab-mcmc --bench scaling -- [rounds] [chunk size] [transitions per round]`
//!
//! Every round runs the same transitions on a 1-thread and a 2-thread pool, in alternating order. Per run it
//! records the wall time and each pool worker's CPU time (`/proc/thread-self/schedstat`, read on every worker by
//! `ThreadPool::broadcast`). It prints, as medians over rounds:
//! - `wall`: wall(1 thread) / wall(2 threads), the speed-up proper, only meaningful on a quiet machine;
//! - `best wall`: min wall(1) / min wall(2) over rounds, the usual noise-robust estimate;
//! - `cpu makespan`: cpu(1) / max over the two workers of cpu(2): the wall speed-up the 2-thread run would have
//!   had if each worker had owned a core (it includes the parallel overheads and load imbalance, but not the
//!   time a worker waited for a core taken by another process);
//! - `cpu work`: cpu(1) / (total cpu(2) / 2): twice the parallel efficiency of the work alone.

use fab_core::{Batch, ExactSampler, stream_rng, sub_seed};
use fab_mcmc::{ChainState, Hmc, Kernel, LinearLogDensity};
use fab_targets::ManyWell;
use rayon::ThreadPool;
use std::time::Instant;

const N_CHAINS: usize = 1000;
const N_LEAPFROG: usize = 10;

/// CPU time of the calling thread in seconds, from the first field of `/proc/thread-self/schedstat` (ns).
fn thread_cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    text.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN) * 1e-9
}

/// CPU time of every worker of `pool`, in worker order.
fn worker_cpu_seconds(pool: &ThreadPool) -> Vec<f64> {
    pool.broadcast(|_| thread_cpu_seconds())
}

/// Wall seconds and per-worker CPU seconds of `n_transitions` transitions on `pool`.
fn timed_run(
    pool: &ThreadPool,
    target: &ManyWell,
    state: &mut ChainState,
    n_transitions: usize,
    seed: &mut u64,
) -> (f64, Vec<f64>) {
    let density = LinearLogDensity::single(target);
    let hmc = Hmc::new(N_LEAPFROG);
    let cpu_before = worker_cpu_seconds(pool);
    let start = Instant::now();
    pool.install(|| {
        for _ in 0..n_transitions {
            *seed += 1;
            hmc.step(&density, state, 0.1, sub_seed(1, &[*seed])).expect("valid settings");
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = worker_cpu_seconds(pool).iter().zip(&cpu_before).map(|(a, b)| a - b).collect();
    (wall, cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rounds = args.first().copied().unwrap_or(15);
    let chunk_size = args.get(1).copied().unwrap_or(fab_mcmc::DEFAULT_CHUNK_SIZE);
    let n_transitions = args.get(2).copied().unwrap_or(10);
    let target = ManyWell::new(16).expect("16 is even");
    let init: Batch = target.sample_exact(&mut stream_rng(0, 0), N_CHAINS);
    let pools: Vec<ThreadPool> =
        [1, 2].iter().map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("pool")).collect();
    let density = LinearLogDensity::single(&target);
    let mut states: Vec<ChainState> = (0..2)
        .map(|_| ChainState::init(&density, init.clone(), true).expect("dimensions agree").with_chunk_size(chunk_size))
        .collect();
    let mut seeds = [0u64; 2];
    // Warm-up: page in and let both pools spin up.
    for (k, pool) in pools.iter().enumerate() {
        timed_run(pool, &target, &mut states[k], 2, &mut seeds[k]);
    }
    let (mut wall, mut cpu1, mut cpu2_max, mut cpu2_sum) = ([Vec::new(), Vec::new()], vec![], vec![], vec![]);
    println!("round  wall1_ms  wall2_ms  cpu1_ms  cpu2_ms(worker 0, worker 1)");
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut cpu = [Vec::new(), Vec::new()];
        for k in order {
            let (w, c) = timed_run(&pools[k], &target, &mut states[k], n_transitions, &mut seeds[k]);
            wall[k].push(w);
            cpu[k] = c;
        }
        cpu1.push(cpu[0][0]);
        cpu2_max.push(cpu[1].iter().copied().fold(0.0, f64::max));
        cpu2_sum.push(cpu[1].iter().sum::<f64>());
        let ms = |s: f64| s * 1e3 / n_transitions as f64;
        println!(
            "{round:5}  {:8.3}  {:8.3}  {:7.3}  ({:.3}, {:.3})",
            ms(wall[0][round]),
            ms(wall[1][round]),
            ms(cpu[0][0]),
            ms(cpu[1][0]),
            ms(cpu[1][1])
        );
    }
    // A fingerprint of the final chains: the same for both pools (thread count never changes a result) and, for
    // the same arguments, across versions that claim not to change the arithmetic.
    let fingerprint =
        |s: &ChainState| s.positions().as_slice().iter().fold(0u64, |h, v| h.rotate_left(5) ^ v.to_bits());
    println!(
        "fingerprint of the final chains: 1 thread {:016x}, 2 threads {:016x}",
        fingerprint(&states[0]),
        fingerprint(&states[1])
    );
    let ratio = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<f64>>();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let half_sum: Vec<f64> = cpu2_sum.iter().map(|s| s / 2.0).collect();
    println!(
        "chunk {chunk_size}, {rounds} rounds × {n_transitions} transitions: speed-up 1→2 threads: wall {:.3}, \
         best wall {:.3}, cpu makespan {:.3}, cpu work {:.3}",
        median(ratio(&wall[0], &wall[1])),
        min(&wall[0]) / min(&wall[1]),
        median(ratio(&cpu1, &cpu2_max)),
        median(ratio(&cpu1, &half_sum)),
    );
}
