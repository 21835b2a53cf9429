//! Whole-batch densities (`Evaluation::WholeBatch`, e.g. a Python callable): one call per leapfrog or Metropolis
//! step on every chain, and the same bits as the chunked path.

mod common;

use common::*;
use fab_core::{Batch, BatchMut, BatchRef, Evaluation, LogDensity, stream_rng, sub_seed};
use fab_mcmc::{ChainState, Hmc, Kernel, LinearLogDensity, RandomWalkMetropolis, StepInfo};
use rand::Rng;
use rand_distr::StandardNormal;
use std::sync::Mutex;

/// Wraps a density, declares the given evaluation mode and records the number of rows of every batched call.
struct Recording<D> {
    inner: D,
    mode: Evaluation,
    batch_sizes: Mutex<Vec<usize>>,
}

impl<D: LogDensity> Recording<D> {
    fn new(inner: D, mode: Evaluation) -> Self {
        Self { inner, mode, batch_sizes: Mutex::new(Vec::new()) }
    }
    /// The rows of every batched call so far, then forgets them.
    fn take_batch_sizes(&self) -> Vec<usize> {
        std::mem::take(&mut *self.batch_sizes.lock().unwrap())
    }
}

impl<D: LogDensity> LogDensity for Recording<D> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn evaluation(&self) -> Evaluation {
        self.mode
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.inner.log_prob(x)
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.inner.log_prob_and_grad(x, grad)
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        self.batch_sizes.lock().unwrap().push(xs.n_rows());
        self.inner.log_prob_batch(xs, log_p)
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
        self.batch_sizes.lock().unwrap().push(xs.n_rows());
        self.inner.log_prob_and_grad_batch(xs, log_p, grad)
    }
}

/// `n` draws of a 2-D standard normal, shrunk towards 0 so that no chain starts in a hole.
fn standard_draws(n: usize, scale: f64, seed: u64) -> Batch {
    let mut rng = stream_rng(seed, 0);
    let mut b = Batch::zeros(n, 2);
    b.as_mut_slice().iter_mut().for_each(|x| *x = scale * rng.sample::<f64, _>(StandardNormal));
    b
}

const N_CHAINS: usize = 200;
const CHUNK: usize = 64;

#[test]
fn hmc_calls_a_whole_batch_density_once_per_leapfrog_step_with_every_chain() {
    let density = Recording::new(DiagGauss::standard(2), Evaluation::WholeBatch);
    let target = LinearLogDensity::single(&density);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        let mut state =
            ChainState::init_chunked(&target, standard_draws(N_CHAINS, 1.0, 1), true, vec![None], CHUNK).unwrap();
        assert_eq!(density.take_batch_sizes(), vec![N_CHAINS], "initial evaluation: one call on all chains");
        let info = Hmc::new(5).step(&target, &mut state, 0.1, 3).unwrap();
        assert_eq!(info.n_divergent(), 0);
        assert_eq!(density.take_batch_sizes(), vec![N_CHAINS; 5], "one call per leapfrog step, all chains");
        RandomWalkMetropolis.step(&target, &mut state, 0.1, 4).unwrap();
        assert_eq!(density.take_batch_sizes(), vec![N_CHAINS], "one call per Metropolis step");
    });
}

#[test]
fn a_linear_combination_evaluates_the_whole_batch_component_once_and_the_chunked_one_per_chunk() {
    let q = Recording::new(DiagGauss::standard(2), Evaluation::Chunked);
    let p = Recording::new(Banana, Evaluation::WholeBatch);
    let target = LinearLogDensity::new(vec![&q, &p], vec![0.5, 0.5]).unwrap();
    let mut state =
        ChainState::init_chunked(&target, standard_draws(N_CHAINS, 0.5, 2), false, vec![None, None], CHUNK).unwrap();
    let per_chunk = |calls: usize| {
        let mut sizes = Vec::new();
        for _ in 0..calls {
            sizes.extend([CHUNK, CHUNK, CHUNK, N_CHAINS - 3 * CHUNK]);
        }
        sizes
    };
    let sorted = |mut v: Vec<usize>| {
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(q.take_batch_sizes()), sorted(per_chunk(1)));
    assert_eq!(p.take_batch_sizes(), vec![N_CHAINS]);
    // The HMC state needs gradients: one more evaluation of both, then one per leapfrog step.
    let info = Hmc::new(4).step(&target, &mut state, 0.05, 5).unwrap();
    assert_eq!(info.n_divergent(), 0);
    assert_eq!(sorted(q.take_batch_sizes()), sorted(per_chunk(1 + 4)), "the chunked component stays chunked");
    assert_eq!(p.take_batch_sizes(), vec![N_CHAINS; 1 + 4], "the whole-batch component: once per step");
}

/// Ten HMC transitions (with step-size jitter) and ten Metropolis transitions of chains on a density with a
/// hole (so that chains die and rows are gathered), in a pool of `threads`: positions, caches and diagnostics.
fn run_on_holed(mode: Evaluation, threads: usize) -> (Vec<ChainState>, Vec<StepInfo>) {
    let density = Recording::new(Holed { limit: 0.9, bad: f64::NAN }, mode);
    let second = Recording::new(DiagGauss::standard(2), Evaluation::Chunked);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let target = LinearLogDensity::new(vec![&second, &density], vec![0.3, 0.7]).unwrap();
        let hmc = Hmc::new(6).with_step_size_jitter(0.3);
        let mut hmc_state =
            ChainState::init_chunked(&target, standard_draws(N_CHAINS, 1.0, 6), true, vec![None, None], CHUNK).unwrap();
        let mut rw_state =
            ChainState::init_chunked(&target, standard_draws(N_CHAINS, 1.0, 7), false, vec![None, None], CHUNK)
                .unwrap();
        let mut infos = Vec::new();
        for t in 0..10 {
            infos.push(hmc.step(&target, &mut hmc_state, 0.4, sub_seed(8, &[t])).unwrap());
            infos.push(RandomWalkMetropolis.step(&target, &mut rw_state, 0.7, sub_seed(9, &[t])).unwrap());
        }
        (vec![hmc_state, rw_state], infos)
    })
}

#[test]
fn whole_batch_and_chunked_evaluation_give_bitwise_identical_chains_for_any_thread_count() {
    let (chunked_states, chunked_infos) = run_on_holed(Evaluation::Chunked, 2);
    assert!(
        chunked_infos.iter().any(|i| i.n_divergent() > 0),
        "the hole must kill some proposals, or the gathering of alive rows is not exercised"
    );
    let bits = |s: &ChainState| {
        let mut v: Vec<u64> = s.positions().as_slice().iter().map(|x| x.to_bits()).collect();
        for k in 0..s.n_components() {
            v.extend(s.log_f(k).iter().map(|x| x.to_bits()));
            if let Some(g) = s.grad_f(k) {
                v.extend(g.as_slice().iter().map(|x| x.to_bits()));
            }
        }
        v
    };
    for threads in [1, 2, 3] {
        let (states, infos) = run_on_holed(Evaluation::WholeBatch, threads);
        for (a, b) in chunked_states.iter().zip(&states) {
            assert!(bits(a) == bits(b), "whole-batch chains differ from chunked ones with {threads} threads");
        }
        assert_eq!(format!("{chunked_infos:?}"), format!("{infos:?}"), "diagnostics differ ({threads} threads)");
    }
}
