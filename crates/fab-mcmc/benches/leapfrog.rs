//! Leapfrog steps per second of HMC on the 16-D Many Well with 1000 chains, on 1 and 2 rayon threads.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fab_core::{Batch, ExactSampler, stream_rng, sub_seed};
use fab_mcmc::{ChainState, Hmc, Kernel, LinearLogDensity};
use fab_targets::ManyWell;

const N_CHAINS: usize = 1000;
const N_LEAPFROG: usize = 10;

fn leapfrog(c: &mut Criterion) {
    let target = ManyWell::new(16).expect("16 is even");
    let init: Batch = target.sample_exact(&mut stream_rng(0, 0), N_CHAINS);
    let mut group = c.benchmark_group("hmc_many_well_16d_1000_chains");
    // One element = one chain advanced by one leapfrog step (one gradient evaluation).
    group.throughput(Throughput::Elements((N_CHAINS * N_LEAPFROG) as u64));
    group.sample_size(20);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        let density = LinearLogDensity::single(&target);
        let mut state = ChainState::init(&density, init.clone(), true).expect("dimensions agree");
        let hmc = Hmc::without_jitter(N_LEAPFROG);
        let mut t = 0u64;
        group.bench_function(format!("{threads}_threads"), |b| {
            b.iter(|| {
                t += 1;
                pool.install(|| hmc.step(&density, &mut state, 0.1, sub_seed(1, &[t])).expect("valid settings"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, leapfrog);
criterion_main!(benches);
