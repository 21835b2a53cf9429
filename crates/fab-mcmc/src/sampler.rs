//! A ready-made sampler for one user density: many chains, warm-up with adaptation, then recorded draws.

use crate::adapt::StepSizes;
use crate::diagnostics::{effective_sample_size, split_r_hat};
use crate::error::McmcError;
use crate::kernel::{Kernel, StepInfo};
use crate::state::ChainState;
use crate::target::LinearLogDensity;
use fab_core::{Batch, LogDensity, sub_seed};

/// Draws recorded from many chains: `draws[t][chain][d]`, with the counts of accepted and divergent transitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    dim: usize,
    n_chains: usize,
    draws: Vec<f64>,
    /// Accepted transitions over all chains and recorded draws.
    pub n_accepted: usize,
    /// Divergent transitions over all chains and recorded draws.
    pub n_divergent: usize,
}

impl Trace {
    /// Number of recorded draws per chain.
    pub fn n_draws(&self) -> usize {
        self.draws.len() / (self.dim * self.n_chains).max(1)
    }
    /// Number of chains.
    pub fn n_chains(&self) -> usize {
        self.n_chains
    }
    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Coordinate `d` of chain `chain` at draw `t`.
    pub fn get(&self, t: usize, chain: usize, d: usize) -> f64 {
        self.draws[(t * self.n_chains + chain) * self.dim + d]
    }
    /// The series of coordinate `d` along chain `chain`.
    pub fn series(&self, chain: usize, d: usize) -> Vec<f64> {
        (0..self.n_draws()).map(|t| self.get(t, chain, d)).collect()
    }
    /// Every draw of every chain as one batch (draw-major).
    pub fn to_batch(&self) -> Batch {
        Batch::from_vec(self.draws.clone(), self.dim).expect("a trace holds whole rows")
    }
    /// Fraction of accepted transitions.
    pub fn acceptance_rate(&self) -> f64 {
        self.n_accepted as f64 / (self.n_draws() * self.n_chains) as f64
    }
    /// Mean of every coordinate over all draws.
    pub fn mean(&self) -> Vec<f64> {
        let mut m = vec![0.0; self.dim];
        for row in self.draws.chunks_exact(self.dim) {
            m.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        let n = (self.draws.len() / self.dim) as f64;
        m.iter_mut().for_each(|a| *a /= n);
        m
    }
    /// Split-R̂ of every coordinate.
    pub fn split_r_hat(&self) -> Vec<f64> {
        (0..self.dim).map(|d| split_r_hat(&self.all_series(d))).collect()
    }
    /// Effective sample size of every coordinate (over all chains).
    pub fn ess(&self) -> Vec<f64> {
        (0..self.dim).map(|d| effective_sample_size(&self.all_series(d))).collect()
    }
    fn all_series(&self, d: usize) -> Vec<Vec<f64>> {
        (0..self.n_chains).map(|c| self.series(c, d)).collect()
    }
}

/// Many chains on one user density: `Sampler::new(&density, Hmc::new(10), init, seed)?.warmup(500)?.sample(1000)?`.
///
/// The default adaptation is dual averaging toward acceptance 0.8 (Stan's default; the FAB papers' 0.65 is
/// available through [`StepSizes::fab`]) from step size 0.1; `warmup` adapts and then freezes it. Transition `t` draws from `stream_rng(sub_seed(seed, &[t]), chain)`.
pub struct Sampler<'a, K: Kernel> {
    target: LinearLogDensity<'a>,
    kernel: K,
    state: ChainState,
    step_sizes: StepSizes,
    seed: u64,
    iteration: u64,
}

impl<'a, K: Kernel> Sampler<'a, K> {
    /// Chains start at the rows of `init` (the density is evaluated there once).
    pub fn new(density: &'a dyn LogDensity, kernel: K, init: Batch, seed: u64) -> Result<Self, McmcError> {
        let target = LinearLogDensity::single(density);
        let state = ChainState::init(&target, init, kernel.uses_gradient())?;
        let step_sizes = StepSizes::dual_averaging(1, 0.1, 0.8)?;
        Ok(Self { target, kernel, state, step_sizes, seed, iteration: 0 })
    }

    /// Replaces the step-size adaptation (it must describe one distribution).
    pub fn with_step_sizes(mut self, step_sizes: StepSizes) -> Result<Self, McmcError> {
        if step_sizes.len() != 1 {
            return Err(McmcError::InvalidParameter {
                field: "step_sizes",
                reason: format!("a sampler needs 1 step size, got {}", step_sizes.len()),
            });
        }
        self.step_sizes = step_sizes;
        Ok(self)
    }

    /// One transition of every chain, then one adaptation update (unless frozen).
    pub fn step(&mut self) -> Result<StepInfo, McmcError> {
        let seed = sub_seed(self.seed, &[self.iteration]);
        let info = self.kernel.step(&self.target, &mut self.state, self.step_sizes.step_size(0), seed)?;
        self.step_sizes.adapt(0, &info);
        self.iteration += 1;
        Ok(info)
    }

    /// `n` adapting transitions, then freezes the step size.
    pub fn warmup(mut self, n: usize) -> Result<Self, McmcError> {
        self.step_sizes.unfreeze();
        for _ in 0..n {
            self.step()?;
        }
        self.step_sizes.freeze();
        Ok(self)
    }

    /// `n_draws` transitions, recording every chain's position after each.
    pub fn sample(&mut self, n_draws: usize) -> Result<Trace, McmcError> {
        let (dim, n_chains) = (self.state.dim(), self.state.n_chains());
        let mut trace =
            Trace { dim, n_chains, draws: Vec::with_capacity(n_draws * n_chains * dim), n_accepted: 0, n_divergent: 0 };
        for _ in 0..n_draws {
            let info = self.step()?;
            trace.n_accepted += info.n_accepted();
            trace.n_divergent += info.n_divergent();
            trace.draws.extend_from_slice(self.state.positions().as_slice());
        }
        Ok(trace)
    }

    /// The chains' current state.
    pub fn state(&self) -> &ChainState {
        &self.state
    }
    /// The step-size adaptation.
    pub fn step_sizes(&self) -> &StepSizes {
        &self.step_sizes
    }
    /// Transitions made so far.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }
}
