//! The transition-kernel trait and the per-transition diagnostics kernels return apart from the chain state.

use crate::error::McmcError;
use crate::metric::{InverseMetric, MetricForm};
use crate::state::ChainState;
use crate::target::LinearLogDensity;
use serde::{Deserialize, Serialize};

/// What happened to one chain in one transition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// The proposal was accepted (the state moved).
    pub accepted: bool,
    /// Metropolis acceptance probability `min(1, exp(−ΔE))`; 0 for a divergent or invalid proposal.
    pub accept_prob: f64,
    /// The proposal hit a non-finite position or density, or its energy error exceeded the kernel's limit.
    /// Divergent proposals are always rejected.
    pub divergent: bool,
    /// `ΔE = E(proposal) − E(current)`: the Hamiltonian change for HMC, `−Δlog π` for Metropolis.
    /// Not finite when the proposal was invalid.
    pub energy_error: f64,
}

impl ChainInfo {
    /// The record of a chain whose proposal was invalid (rejected, counted as divergent).
    pub fn invalid(energy_error: f64) -> Self {
        Self { accepted: false, accept_prob: 0.0, divergent: true, energy_error }
    }
}

/// Diagnostics of one transition of every chain, in chain order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepInfo {
    /// One record per chain.
    pub chains: Vec<ChainInfo>,
    /// Points evaluated in this transition; every evaluation covers every component density.
    pub n_evaluated: u64,
}

impl StepInfo {
    /// Number of accepted proposals.
    pub fn n_accepted(&self) -> usize {
        self.chains.iter().filter(|c| c.accepted).count()
    }
    /// Number of divergent (hence rejected) proposals.
    pub fn n_divergent(&self) -> usize {
        self.chains.iter().filter(|c| c.divergent).count()
    }
    /// Fraction of chains that moved; `NaN` for zero chains.
    pub fn acceptance_rate(&self) -> f64 {
        self.n_accepted() as f64 / self.chains.len() as f64
    }
    /// Mean Metropolis acceptance probability over chains; `NaN` for zero chains.
    pub fn mean_accept_prob(&self) -> f64 {
        self.chains.iter().map(|c| c.accept_prob).sum::<f64>() / self.chains.len() as f64
    }
    /// The energy errors `ΔE` of every chain.
    pub fn energy_errors(&self) -> Vec<f64> {
        self.chains.iter().map(|c| c.energy_error).collect()
    }
}

/// What a NUTS tree did for one chain in one transition (Stan's `treedepth__`, `n_leapfrog__`, `divergent__`,
/// `energy__`, `accept_stat__`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeInfo {
    /// Number of doublings of the trajectory.
    pub depth: u32,
    /// Leapfrog steps taken (gradient evaluations).
    pub n_leapfrog: u32,
    /// A leapfrog step's energy error exceeded the limit (or was not finite).
    pub divergent: bool,
    /// The Hamiltonian `H` at the draw (its momentum included).
    pub energy: f64,
    /// Mean of `min(1, exp(H₀ − H))` over the trajectory's points: the statistic step-size adaptation targets.
    pub accept_stat: f64,
}

/// A Markov transition that leaves `target` invariant and advances every chain of a [`ChainState`] in place.
///
/// Structural choices (number of leapfrog steps, mass, ...) live in `self`; the tunable step size is passed on
/// every call, so adaptation never rebuilds a kernel. `seed` addresses the random streams of this transition:
/// chain `i` draws from `fab_core::stream_rng(seed, i)`, so the result does not depend on thread scheduling.
/// The caller derives a fresh `seed` per transition, e.g. `fab_core::sub_seed(base, &[iteration])`.
pub trait Kernel: Send + Sync {
    /// True when the kernel needs cached gradients (HMC); states for it are built with gradients.
    fn uses_gradient(&self) -> bool;

    /// One transition of every chain.
    fn step(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<StepInfo, McmcError>;

    /// [`Kernel::step`] with per-chain tree statistics; kernels without trees (HMC, Metropolis) return none.
    fn step_with_trees(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<(StepInfo, Vec<TreeInfo>), McmcError> {
        self.step(target, state, step_size, seed).map(|info| (info, Vec::new()))
    }

    /// The form of mass matrix a warm-up may adapt, or `None` if the kernel has no adaptable metric.
    fn adaptable_metric(&self) -> Option<MetricForm> {
        None
    }

    /// Replaces the inverse mass matrix (kernels with an adaptable metric only).
    fn set_inverse_metric(&mut self, metric: InverseMetric) -> Result<(), McmcError> {
        let _ = metric;
        Err(McmcError::InvalidParameter {
            field: "inverse_metric",
            reason: "this kernel has no adaptable metric".into(),
        })
    }

    /// A starting step size for adaptation near `step_size` (Stan's heuristic for NUTS); by default `step_size`.
    fn initial_step_size(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<f64, McmcError> {
        let _ = (target, state, seed);
        Ok(step_size)
    }
}
