//! A ready-made sampler for one user density: many chains, warm-up with adaptation, then recorded draws.

use crate::adapt::{Adapter, StepSizes};
use crate::diagnostics::{effective_sample_size, split_r_hat};
use crate::error::McmcError;
use crate::kernel::{Kernel, StepInfo, TreeInfo};
use crate::nuts::Nuts;
use crate::state::ChainState;
use crate::target::LinearLogDensity;
use crate::warmup::{WarmupSchedule, WindowedAdaptation};
use fab_core::{Batch, LogDensity, sub_seed};

/// The stream tag of the step-size heuristic's transitions (apart from the sampling transitions' tags).
const HEURISTIC_TAG: u64 = 0x5EED_57E9;

/// Draws recorded from many chains: `draws[t][chain][d]`, with the counts of accepted and divergent transitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    dim: usize,
    n_chains: usize,
    draws: Vec<f64>,
    /// Per-draw tree statistics of a NUTS kernel, draw-major like the draws (`trees[t·n_chains + chain]`);
    /// empty for kernels without trees.
    pub trees: Vec<TreeInfo>,
    /// The step size the draws were made with.
    pub step_size: f64,
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
    /// ArviZ-style diagnostics of every coordinate; print it for the table.
    pub fn summary(&self) -> crate::summary::Summary {
        crate::summary::Summary::of(self)
    }
    /// Writes the draws as a `(chain, draw, dim)` `.npy` array.
    pub fn write_npy(&self, path: impl AsRef<std::path::Path>) -> Result<(), crate::summary::NpyExportError> {
        crate::summary::write_draws_npy(self, path.as_ref())
    }
    /// The statistics of chain `chain` at draw `t` (NUTS kernels only).
    pub fn tree(&self, t: usize, chain: usize) -> Option<&TreeInfo> {
        self.trees.get(t * self.n_chains + chain)
    }
    /// Every draw of coordinate `d`, chain by chain (`[chain][t]`).
    pub fn all_series(&self, d: usize) -> Vec<Vec<f64>> {
        (0..self.n_chains).map(|c| self.series(c, d)).collect()
    }
}

/// Many chains on one user density. The safe default is [`Sampler::nuts`]: NUTS with a diagonal mass matrix
/// adapted by Stan's windowed warm-up; any other [`Kernel`] goes through [`Sampler::new`]:
/// `Sampler::new(&density, Hmc::new(10), init, seed)?.warmup(500)?.sample(1000)?`.
///
/// The step size is adapted by dual averaging toward acceptance 0.8 (Stan's default; the FAB papers' 0.65 is
/// available through [`StepSizes::fab`]) from 0.1. For a kernel with an adaptable metric (NUTS) `warmup` runs
/// Stan's windowed adaptation ([`WarmupSchedule`]): step size throughout, restarted with Stan's heuristic after
/// each metric window; mass matrix from the Welford (co)variance of all chains' draws in each window. For
/// other kernels it adapts the step size alone. Either way the step size is then frozen. Transition `t` draws
/// from `stream_rng(sub_seed(seed, &[t]), chain)`.
pub struct Sampler<'a, K: Kernel> {
    target: LinearLogDensity<'a>,
    kernel: K,
    state: ChainState,
    step_sizes: StepSizes,
    seed: u64,
    iteration: u64,
    schedule: WarmupSchedule,
}

impl<'a> Sampler<'a, Nuts> {
    /// The default sampler: NUTS (depth ≤ 10) with a diagonal mass matrix adapted in warm-up.
    pub fn nuts(density: &'a dyn LogDensity, init: Batch, seed: u64) -> Result<Self, McmcError> {
        Self::new(density, Nuts::default(), init, seed)
    }
}

impl<'a, K: Kernel> Sampler<'a, K> {
    /// Chains start at the rows of `init` (the density is evaluated there once).
    pub fn new(density: &'a dyn LogDensity, kernel: K, init: Batch, seed: u64) -> Result<Self, McmcError> {
        let target = LinearLogDensity::single(density);
        let state = ChainState::init(&target, init, kernel.uses_gradient())?;
        let step_sizes = StepSizes::dual_averaging(1, 0.1, 0.8)?;
        Ok(Self { target, kernel, state, step_sizes, seed, iteration: 0, schedule: WarmupSchedule::default() })
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

    /// Replaces the buffers of the windowed warm-up.
    pub fn with_warmup_schedule(mut self, schedule: WarmupSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// One transition of every chain, then one adaptation update (unless frozen).
    pub fn step(&mut self) -> Result<StepInfo, McmcError> {
        self.step_with_trees().map(|(info, _)| info)
    }

    /// [`Sampler::step`] with the kernel's per-chain tree statistics.
    pub fn step_with_trees(&mut self) -> Result<(StepInfo, Vec<TreeInfo>), McmcError> {
        let out = self.transition(self.step_sizes.step_size(0))?;
        self.step_sizes.adapt(0, &out.0);
        Ok(out)
    }

    /// One transition at `step_size`, no adaptation.
    fn transition(&mut self, step_size: f64) -> Result<(StepInfo, Vec<TreeInfo>), McmcError> {
        let seed = sub_seed(self.seed, &[self.iteration]);
        let out = self.kernel.step_with_trees(&self.target, &mut self.state, step_size, seed)?;
        self.iteration += 1;
        Ok(out)
    }

    /// `n` adapting transitions, then freezes the step size (windowed metric adaptation for kernels that have
    /// a metric, see [`Sampler`]).
    pub fn warmup(mut self, n: usize) -> Result<Self, McmcError> {
        if self.kernel.adaptable_metric().is_some() && matches!(self.step_sizes.adapter(), Adapter::DualAveraging(_)) {
            return self.windowed_warmup(n);
        }
        self.step_sizes.unfreeze();
        for _ in 0..n {
            self.step()?;
        }
        self.step_sizes.freeze();
        Ok(self)
    }

    /// Stan's windowed adaptation of step size and metric, then a frozen dual-averaging step size.
    fn windowed_warmup(mut self, n: usize) -> Result<Self, McmcError> {
        let form = self.kernel.adaptable_metric().expect("checked by the caller");
        let target_accept = match self.step_sizes.adapter() {
            Adapter::DualAveraging(d) => d[0].target_accept,
            _ => 0.8,
        };
        let eps0 = self.heuristic_step_size(self.step_sizes.step_size(0))?;
        let mut adapt = WindowedAdaptation::new(n, self.schedule, self.state.dim(), form, target_accept, eps0);
        for _ in 0..n {
            let (info, _) = self.transition(adapt.step_size())?;
            if let Some(metric) = adapt.observe(info.mean_accept_prob(), self.state.positions().as_slice()) {
                self.kernel.set_inverse_metric(metric)?;
                let eps = self.heuristic_step_size(adapt.step_size())?;
                adapt.restart_step_size(eps);
            }
        }
        let eps = if n == 0 { eps0 } else { adapt.final_step_size() };
        self.step_sizes = StepSizes::dual_averaging(1, eps, target_accept)?;
        self.step_sizes.freeze();
        Ok(self)
    }

    /// The kernel's step-size heuristic from `step_size`, with its own random streams.
    fn heuristic_step_size(&mut self, step_size: f64) -> Result<f64, McmcError> {
        let seed = sub_seed(self.seed, &[HEURISTIC_TAG, self.iteration]);
        self.kernel.initial_step_size(&self.target, &mut self.state, step_size, seed)
    }

    /// `n_draws` transitions, recording every chain's position after each.
    pub fn sample(&mut self, n_draws: usize) -> Result<Trace, McmcError> {
        let (dim, n_chains) = (self.state.dim(), self.state.n_chains());
        let mut trace = Trace {
            dim,
            n_chains,
            draws: Vec::with_capacity(n_draws * n_chains * dim),
            trees: Vec::new(),
            step_size: self.step_sizes.step_size(0),
            n_accepted: 0,
            n_divergent: 0,
        };
        for _ in 0..n_draws {
            let (info, trees) = self.step_with_trees()?;
            trace.trees.extend(trees);
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
    /// The kernel (after warm-up: with its adapted metric).
    pub fn kernel(&self) -> &K {
        &self.kernel
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
