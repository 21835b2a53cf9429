//! The AIS run: draw from the proposal, anneal through the βs with MCMC transitions, accumulate log weights
//! from cached `log q` and `log p`.

use crate::config::{CheckedAisConfig, Transition, check_alpha};
use crate::error::{AisError, Stage};
use crate::output::{AisOutput, BetaDiagnostics, LogZEstimate};
use crate::smc::SmcRun;
use crate::validity::Restricted;
use fab_core::{LogDensity, Proposal, stream_rng, sub_seed};
use fab_mcmc::{ChainState, Kernel, LinearLogDensity, RandomWalkMetropolis, StepInfo, StepSizes};
use serde::{Deserialize, Serialize};

/// Seed-path tag of the proposal draw.
pub(crate) const TAG_DRAW: u64 = 0xD4A1;
/// Seed-path tag of the transitions.
pub(crate) const TAG_TRANSITION: u64 = 0x7A45;

/// Component index of `log q` in the chain state.
pub(crate) const Q: usize = 0;
/// Component index of `log p` in the chain state.
pub(crate) const P: usize = 1;

/// The serialisable part of an [`Ais`] that changes during training: one step-size state per intermediate
/// distribution. Store it in checkpoints; [`Ais::restore_adaptation`] resumes exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AisAdaptation {
    /// Step sizes (and their adaptation state) of the `K` intermediate distributions.
    pub step_sizes: StepSizes,
}

/// Annealed importance sampling from any [`Proposal`] to any target, with adaptive step sizes.
///
/// The chains target `log f_β = (1 − αβ)·log q + αβ·log p̃` as a [`LinearLogDensity`] of the two components
/// `[q, p]`, and the [`ChainState`] caches `log q`, `log p` (and both gradients for HMC) at every point. So the
/// weight update is algebra on the cache, `log w += log f_{β_{j+1}}(x) − log f_{βⱼ}(x) = α(β_{j+1} − βⱼ)(log p − log q)`,
/// moving to the next β only changes the coefficients, and no density is evaluated twice at the same point.
///
/// When the configuration sets [`crate::AisConfig::smc`], every run is an SMC run ([`crate::Smc`]'s, with the
/// same seed paths and step-size slots) and returns its AIS-shaped part.
#[derive(Debug, Clone)]
pub struct Ais {
    config: CheckedAisConfig,
    adaptation: AisAdaptation,
}

impl Ais {
    /// A sampler with fresh step sizes.
    pub fn new(config: CheckedAisConfig) -> Self {
        let step_sizes = config.initial_step_sizes();
        Self { config, adaptation: AisAdaptation { step_sizes } }
    }

    /// The validated configuration.
    pub fn config(&self) -> &CheckedAisConfig {
        &self.config
    }
    /// `β₀ = 0, …, β_{K+1} = 1`.
    pub fn betas(&self) -> &[f64] {
        self.config.betas()
    }
    /// Current adaptation state (for checkpoints).
    pub fn adaptation(&self) -> &AisAdaptation {
        &self.adaptation
    }
    /// Step size of intermediate distribution `j` (0-based over the K intermediate βs).
    pub fn step_size(&self, j: usize) -> f64 {
        self.adaptation.step_sizes.step_size(j)
    }
    /// Replaces the adaptation state, e.g. from a checkpoint.
    pub fn restore_adaptation(&mut self, adaptation: AisAdaptation) -> Result<(), AisError> {
        let (expected, got) = (self.config.n_intermediate(), adaptation.step_sizes.len());
        if expected != got {
            return Err(AisError::AdaptationMismatch { expected, got });
        }
        self.adaptation = adaptation;
        Ok(())
    }
    /// Stops step-size adaptation (evaluation).
    pub fn freeze(&mut self) {
        self.adaptation.step_sizes.freeze();
    }
    /// Resumes step-size adaptation (training).
    pub fn unfreeze(&mut self) {
        self.adaptation.step_sizes.unfreeze();
    }
    /// True when adaptation is frozen.
    pub fn is_frozen(&self) -> bool {
        self.adaptation.step_sizes.is_frozen()
    }

    /// One AIS run of `n` points with the configured α. Randomness comes from `seed` and the caller's
    /// `iteration` counter only, so the output is the same for any number of threads.
    pub fn run(
        &mut self,
        proposal: &dyn Proposal,
        target: &dyn LogDensity,
        n: usize,
        seed: u64,
        iteration: u64,
    ) -> Result<AisOutput, AisError> {
        let alpha = self.config.config().alpha;
        self.run_with_alpha(alpha, proposal, target, n, seed, iteration)
    }

    /// Like [`Ais::run`] with another α, e.g. α = 1 (target p) for evaluation while training anneals to p²/q.
    pub fn run_with_alpha(
        &mut self,
        alpha: f64,
        proposal: &dyn Proposal,
        target: &dyn LogDensity,
        n: usize,
        seed: u64,
        iteration: u64,
    ) -> Result<AisOutput, AisError> {
        self.run_validated(alpha, proposal, target, &|_| true, n, seed, iteration)
    }

    /// Like [`Ais::run_with_alpha`], with only the points that `is_valid` accepts (and that lie within the
    /// config's `support_bound`, with finite coordinates) inside the target's support: the others are dropped
    /// when drawn, rejected when proposed, and counted in [`AisOutput::n_invalid`]. A flow that emits a few
    /// absurd points (|x| ~ 1e297 with finite densities) then cannot poison the weights.
    #[allow(clippy::too_many_arguments)]
    pub fn run_validated(
        &mut self,
        alpha: f64,
        proposal: &dyn Proposal,
        target: &dyn LogDensity,
        is_valid: &(dyn Fn(&[f64]) -> bool + Sync),
        n: usize,
        seed: u64,
        iteration: u64,
    ) -> Result<AisOutput, AisError> {
        if let Some(settings) = &self.config.config().smc {
            let run = SmcRun { config: &self.config, settings, adaptation: &mut self.adaptation };
            return Ok(run.run(alpha, proposal, target, is_valid, n, seed, iteration)?.ais);
        }
        check_alpha(alpha)?;
        if proposal.dim() != target.dim() {
            return Err(AisError::DimensionMismatch { proposal: proposal.dim(), target: target.dim() });
        }
        let cfg = self.config.config().clone();
        let betas = self.config.betas().to_vec();
        let kernel: &dyn Kernel = match &cfg.transition {
            Transition::Hmc(hmc) => hmc,
            Transition::Metropolis => &RandomWalkMetropolis,
            Transition::Nuts(nuts) => nuts,
        };
        let q_as_density: &dyn LogDensity = proposal;
        let restricted = Restricted::new(target, cfg.support_bound, is_valid);
        let mut annealed = LinearLogDensity::new(vec![q_as_density, &restricted], vec![1.0, 0.0])?;

        // x₀ ~ q. Its log q is reused as is unless gradients are needed (then one evaluation gives both).
        let mut rng = stream_rng(sub_seed(seed, &[iteration, TAG_DRAW]), 0);
        let (x0, log_q0) = proposal.sample(&mut rng, n);
        let with_gradient = kernel.uses_gradient() && betas.len() > 2;
        let mut state =
            ChainState::init_chunked(&annealed, x0, with_gradient, vec![Some(log_q0), None], cfg.chunk_size)?;
        let mut n_evaluated = n as u64;
        let (kept, n_dropped_init) = keep_valid(&state);
        if kept.is_empty() {
            return Err(AisError::NoValidPoints { stage: Stage::Init, n_requested: n });
        }
        if n_dropped_init > 0 {
            state = state.select(&kept);
        }

        // log w = log f_{β₁}(x₀) − log q(x₀).
        let mut log_w = vec![0.0; state.n_chains()];
        add_weight_increment(&mut log_w, &state, alpha, betas[0], betas[1]);
        let mut per_beta = Vec::with_capacity(betas.len() - 2);
        for j in 1..betas.len() - 1 {
            let beta = betas[j];
            annealed.set_coefficients(&[1.0 - alpha * beta, alpha * beta])?;
            let mut diag = BetaDiagnostics {
                beta,
                step_size: f64::NAN,
                acceptance_rate: 0.0,
                mean_accept_prob: 0.0,
                accept_statistic: 0.0,
                n_divergent: 0,
                n_evaluated: 0,
            };
            for rep in 0..cfg.transitions_per_beta {
                let step_size = self.adaptation.step_sizes.step_size(j - 1);
                let step_seed = sub_seed(seed, &[iteration, TAG_TRANSITION, j as u64, rep as u64]);
                let info = kernel.step(&annealed, &mut state, step_size, step_seed)?;
                let stat = self.adaptation.step_sizes.adapt(j - 1, &info);
                record(&mut diag, &info, step_size, stat, cfg.transitions_per_beta);
            }
            n_evaluated += diag.n_evaluated;
            per_beta.push(diag);
            add_weight_increment(&mut log_w, &state, alpha, beta, betas[j + 1]);
        }

        // Transitions never accept invalid points, so this only catches weights that overflowed.
        let kept_end: Vec<usize> =
            (0..state.n_chains()).filter(|&i| state.is_valid(i) && log_w[i].is_finite()).collect();
        let n_dropped_end = state.n_chains() - kept_end.len();
        if kept_end.is_empty() {
            return Err(AisError::NoValidPoints { stage: Stage::End, n_requested: n });
        }
        let state = if n_dropped_end > 0 { state.select(&kept_end) } else { state };
        let log_w = if n_dropped_end > 0 { kept_end.iter().map(|&i| log_w[i]).collect() } else { log_w };
        let (samples, mut log_f, _) = state.into_parts();
        let log_p = log_f.pop().expect("two components");
        let log_q = log_f.pop().expect("two components");
        let output = AisOutput {
            samples,
            log_w,
            log_q,
            log_p,
            per_beta,
            n_requested: n,
            n_dropped_init,
            n_dropped_end,
            n_evaluated,
            n_invalid: restricted.n_invalid(),
            alpha,
            log_z: LogZEstimate { log_z: f64::NAN, std_err: f64::NAN, n_used: 0 },
            ess_percent: f64::NAN,
        };
        Ok(output.summarise())
    }
}

/// Indices of the points with finite `log q` and `log p`, and how many were not.
pub(crate) fn keep_valid(state: &ChainState) -> (Vec<usize>, usize) {
    let kept = state.valid_indices();
    let dropped = state.n_chains() - kept.len();
    (kept, dropped)
}

/// `log w += log f_{β'}(x) − log f_β(x) = α(β' − β)(log p − log q)`, from the cache. The factored form is
/// exactly 0 when `log p = log q`, so `q = p` gives weights that are exactly 0.
pub(crate) fn add_weight_increment(log_w: &mut [f64], state: &ChainState, alpha: f64, beta: f64, beta_next: f64) {
    let delta = alpha * (beta_next - beta);
    if delta == 0.0 {
        return;
    }
    for ((lw, lq), lp) in log_w.iter_mut().zip(state.log_f(Q)).zip(state.log_f(P)) {
        *lw += delta * (lp - lq);
    }
}

/// Accumulates one transition into a β's diagnostics (rates are averaged over the repetitions).
pub(crate) fn record(diag: &mut BetaDiagnostics, info: &StepInfo, step_size: f64, stat: f64, reps: usize) {
    let r = reps as f64;
    diag.step_size = step_size;
    diag.acceptance_rate += info.acceptance_rate() / r;
    diag.mean_accept_prob += info.mean_accept_prob() / r;
    diag.accept_statistic += stat / r;
    diag.n_divergent += info.n_divergent();
    diag.n_evaluated += info.n_evaluated;
}
