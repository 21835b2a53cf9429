//! Hamiltonian Monte Carlo with a diagonal mass matrix; with one leapfrog step it is exactly MALA.

use crate::error::{McmcError, check_step_size};
use crate::kernel::{ChainInfo, Kernel, StepInfo};
use crate::leapfrog::{Trajectory, integrate, integrate_in_lockstep, kinetic_energy};
use crate::points::Points;
use crate::scratch::{empty_f64, filled_f64, recycle_f64, recycle_rngs, stream_rngs};
use crate::state::{ChainState, ChunkMut};
use crate::target::LinearLogDensity;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// HMC: momentum `p ~ N(0, M)`, `n_leapfrog` leapfrog steps, Metropolis correction in log space
/// (`accept ⇔ log u < −ΔH`). A proposal with a non-finite position or `log π`, or with `ΔH > max_energy_error`,
/// is rejected and reported as divergent; the integration of that chain stops where it went bad, so no
/// further evaluations are spent on it.
///
/// In RON only `n_leapfrog` is required; the other fields default to [`Hmc::new`]'s values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hmc {
    /// Leapfrog steps per transition (both FAB papers: 5).
    pub n_leapfrog: usize,
    /// Diagonal of the mass matrix `M`; `None` means the identity.
    #[serde(default)]
    pub mass_diag: Option<Vec<f64>>,
    /// If set, `∇ log π` has `NaN → 0` and is clamped to `±limit` (SPEC §3: 2021 1e4, ICLR 1e3).
    #[serde(default)]
    pub grad_clamp: Option<f64>,
    /// Energy error above which a proposal counts as divergent (blackjax and fab-jax: 1000).
    #[serde(default = "default_max_energy_error")]
    pub max_energy_error: f64,
    /// Each chain's step size is drawn uniformly from `ε·[1 − jitter, 1 + jitter]` at every transition
    /// ([`DEFAULT_STEP_SIZE_JITTER`] unless set; 0 = off, as in both FAB papers, see [`Hmc::without_jitter`]).
    /// A fixed `ε·L` can resonate with a period of the target (a Gaussian coordinate with `ε·L ≈ 2πσ` never
    /// moves); jitter breaks that.
    #[serde(default = "default_step_size_jitter")]
    pub step_size_jitter: f64,
}

fn default_max_energy_error() -> f64 {
    1000.0
}
fn default_step_size_jitter() -> f64 {
    DEFAULT_STEP_SIZE_JITTER
}

/// The step-size jitter of [`Hmc::new`]: step sizes uniform in `ε·[0.5, 1.5]`.
pub const DEFAULT_STEP_SIZE_JITTER: f64 = 0.5;

impl Default for Hmc {
    fn default() -> Self {
        Self::new(5)
    }
}

impl Hmc {
    /// `n_leapfrog` steps, identity mass, no gradient clamp, divergence at `ΔH > 1000`, step-size jitter
    /// [`DEFAULT_STEP_SIZE_JITTER`] (safe for users: no resonance of `ε·L` with the target).
    pub fn new(n_leapfrog: usize) -> Self {
        Self {
            n_leapfrog,
            mass_diag: None,
            grad_clamp: None,
            max_energy_error: default_max_energy_error(),
            step_size_jitter: DEFAULT_STEP_SIZE_JITTER,
        }
    }

    /// [`Hmc::new`] with a fixed step size (no jitter), as both FAB papers run HMC inside AIS.
    pub fn without_jitter(n_leapfrog: usize) -> Self {
        Self::new(n_leapfrog).with_step_size_jitter(0.0)
    }

    /// The Metropolis-adjusted Langevin algorithm: HMC with one leapfrog step is MALA with the same step size
    /// (the proposal `x + ε²/2·∇log π + ε·z` and the HMC energy test equal MALA's proposal-density ratio).
    pub fn mala() -> Self {
        Self::without_jitter(1)
    }

    /// Sets the diagonal of the mass matrix.
    pub fn with_mass_diag(mut self, mass_diag: Vec<f64>) -> Self {
        self.mass_diag = Some(mass_diag);
        self
    }

    /// Enables the `NaN → 0`, `±limit` gradient guard.
    pub fn with_grad_clamp(mut self, limit: f64) -> Self {
        self.grad_clamp = Some(limit);
        self
    }

    /// Sets the energy error above which a proposal counts as divergent.
    pub fn with_max_energy_error(mut self, max_energy_error: f64) -> Self {
        self.max_energy_error = max_energy_error;
        self
    }

    /// Jitters each chain's step size uniformly within `ε·[1 − jitter, 1 + jitter]`, `0 ≤ jitter < 1`.
    pub fn with_step_size_jitter(mut self, jitter: f64) -> Self {
        self.step_size_jitter = jitter;
        self
    }

    /// Checks the settings against a dimension.
    pub fn check(&self, dim: usize) -> Result<(), McmcError> {
        let invalid = |field, reason: String| Err(McmcError::InvalidParameter { field, reason });
        if self.n_leapfrog == 0 {
            return invalid("n_leapfrog", "must be at least 1".into());
        }
        if let Some(m) = &self.mass_diag {
            if m.len() != dim {
                return invalid("mass_diag", format!("has {} entries for dimension {dim}", m.len()));
            }
            if !m.iter().all(|v| v.is_finite() && *v > 0.0) {
                return invalid("mass_diag", "entries must be positive and finite".into());
            }
        }
        if let Some(c) = self.grad_clamp
            && (c.is_nan() || c <= 0.0)
        {
            return invalid("grad_clamp", format!("must be positive, got {c}"));
        }
        if self.max_energy_error.is_nan() || self.max_energy_error <= 0.0 {
            return invalid("max_energy_error", format!("must be positive, got {}", self.max_energy_error));
        }
        if !(0.0..1.0).contains(&self.step_size_jitter) {
            return invalid("step_size_jitter", format!("must lie in [0, 1), got {}", self.step_size_jitter));
        }
        Ok(())
    }

    /// `(M⁻¹ diagonal, √M diagonal)`.
    fn inverse_and_sqrt_mass(&self, dim: usize) -> (Vec<f64>, Vec<f64>) {
        match &self.mass_diag {
            Some(m) => (m.iter().map(|v| 1.0 / v).collect(), m.iter().map(|v| v.sqrt()).collect()),
            None => (vec![1.0; dim], vec![1.0; dim]),
        }
    }

    /// One transition of the chains of one chunk.
    fn step_chunk(
        &self,
        target: &LinearLogDensity<'_>,
        chunk: &mut ChunkMut<'_>,
        step_size: f64,
        seed: u64,
        inv_mass: &[f64],
        sqrt_mass: &[f64],
    ) -> (Vec<ChainInfo>, u64) {
        let mut start = self.start_chunk(target, chunk, step_size, seed, inv_mass, sqrt_mass);
        let t = &mut start.trajectory;
        integrate(target, &mut t.pts, &mut t.p, &t.step_sizes, self.n_leapfrog, inv_mass);
        self.finish_chunk(start, chunk, inv_mass)
    }

    /// Draws the momenta (and jittered step sizes) of one chunk's chains and records their starting energy.
    fn start_chunk(
        &self,
        target: &LinearLogDensity<'_>,
        chunk: &ChunkMut<'_>,
        step_size: f64,
        seed: u64,
        inv_mass: &[f64],
        sqrt_mass: &[f64],
    ) -> ChunkStart {
        let pts = Points::from_chunk(target, chunk, self.grad_clamp);
        let (m, dim) = (pts.m, pts.dim);
        let mut rngs = stream_rngs(seed, chunk.start, m);
        let mut p = filled_f64(m * dim, 0.0);
        for (rng, pi) in rngs.iter_mut().zip(p.chunks_exact_mut(dim)) {
            for (pd, sm) in pi.iter_mut().zip(sqrt_mass) {
                *pd = sm * rng.sample::<f64, _>(StandardNormal);
            }
        }
        let mut step_sizes = empty_f64(m);
        if self.step_size_jitter > 0.0 {
            step_sizes.extend(
                rngs.iter_mut()
                    .map(|rng| step_size * (1.0 + self.step_size_jitter * (2.0 * rng.random::<f64>() - 1.0))),
            );
        } else {
            step_sizes.resize(m, step_size);
        }
        let mut h_start = empty_f64(m);
        h_start.extend((0..m).map(|i| -pts.log_pi[i] + kinetic_energy(&p[i * dim..(i + 1) * dim], inv_mass)));
        ChunkStart { trajectory: Trajectory { pts, p, step_sizes }, rngs, h_start }
    }

    /// The Metropolis correction of one chunk's integrated trajectories; accepted proposals are stored.
    fn finish_chunk(&self, start: ChunkStart, chunk: &mut ChunkMut<'_>, inv_mass: &[f64]) -> (Vec<ChainInfo>, u64) {
        let ChunkStart { trajectory: Trajectory { pts, p, step_sizes }, mut rngs, h_start } = start;
        let dim = pts.dim;
        let infos = (0..pts.m)
            .map(|i| {
                let log_u = rngs[i].random::<f64>().ln();
                if !pts.alive[i] {
                    return ChainInfo::invalid(f64::NAN);
                }
                let h_end = -pts.log_pi[i] + kinetic_energy(&p[i * dim..(i + 1) * dim], inv_mass);
                let delta_h = h_end - h_start[i];
                if !delta_h.is_finite() || delta_h > self.max_energy_error {
                    return ChainInfo::invalid(delta_h);
                }
                let accepted = log_u < -delta_h;
                if accepted {
                    pts.store_row(i, chunk);
                }
                ChainInfo { accepted, accept_prob: (-delta_h).exp().min(1.0), divergent: false, energy_error: delta_h }
            })
            .collect();
        [p, step_sizes, h_start].into_iter().for_each(recycle_f64);
        recycle_rngs(rngs);
        (infos, pts.n_evaluated)
    }

    /// One transition of every chunk in lock-step, for targets with whole-batch components: each leapfrog step
    /// evaluates those once on all chains (see [`integrate_in_lockstep`]); momenta, drifts and acceptance stay
    /// parallel over chunks.
    fn step_chunks_in_lockstep(
        &self,
        target: &LinearLogDensity<'_>,
        chunks: &mut [ChunkMut<'_>],
        step_size: f64,
        seed: u64,
        inv_mass: &[f64],
        sqrt_mass: &[f64],
    ) -> Vec<(Vec<ChainInfo>, u64)> {
        let mut starts: Vec<ChunkStart> =
            chunks.par_iter().map(|c| self.start_chunk(target, c, step_size, seed, inv_mass, sqrt_mass)).collect();
        let mut trajectories: Vec<&mut Trajectory> = starts.iter_mut().map(|s| &mut s.trajectory).collect();
        integrate_in_lockstep(target, &mut trajectories, self.n_leapfrog, inv_mass);
        chunks.par_iter_mut().zip(starts).map(|(c, s)| self.finish_chunk(s, c, inv_mass)).collect()
    }
}

/// One chunk between drawing its momenta and the Metropolis correction.
struct ChunkStart {
    trajectory: Trajectory,
    rngs: Vec<fab_core::StreamRng>,
    h_start: Vec<f64>,
}

impl Kernel for Hmc {
    fn uses_gradient(&self) -> bool {
        true
    }

    fn step(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<StepInfo, McmcError> {
        state.check_target(target)?;
        self.check(state.dim())?;
        check_step_size(step_size)?;
        let n_refreshed = state.ensure_gradient(target);
        let (inv_mass, sqrt_mass) = self.inverse_and_sqrt_mass(state.dim());
        let mut chunks = state.chunks_mut();
        let results: Vec<(Vec<ChainInfo>, u64)> = if target.has_whole_batch_component() {
            self.step_chunks_in_lockstep(target, &mut chunks, step_size, seed, &inv_mass, &sqrt_mass)
        } else {
            chunks
                .into_par_iter()
                .map(|mut chunk| self.step_chunk(target, &mut chunk, step_size, seed, &inv_mass, &sqrt_mass))
                .collect()
        };
        Ok(collect_results(results, n_refreshed))
    }
}

/// Concatenates per-chunk results in chain order.
pub(crate) fn collect_results(results: Vec<(Vec<ChainInfo>, u64)>, extra_evaluations: u64) -> StepInfo {
    let mut info = StepInfo { chains: Vec::new(), n_evaluated: extra_evaluations };
    for (chains, n) in results {
        info.chains.extend(chains);
        info.n_evaluated += n;
    }
    info
}
