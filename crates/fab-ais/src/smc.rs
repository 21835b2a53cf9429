//! Sequential Monte Carlo from any proposal: AIS's transitions with an optional adaptive β schedule (bisection on
//! the conditional ESS) and optional systematic resampling, with the log Z estimator that stays unbiased under it.
//!
//! # The estimator
//! Between resampling events the weights follow AIS's recursion `log wᵢ += α(β' − β)(log p − log q)`. At a
//! resampling event the particles are drawn with probabilities `w̄ᵢ` and every offspring gets the weight
//! `(1/n) Σⱼ wⱼ` (not 1): the running log Z, `Σ_events log mean(w since the last event)`, is then carried in the
//! weights themselves, so `log mean(w_final)` *is* the standard unbiased SMC estimator `Π_events mean(w) ·
//! mean(w_final)` and [`AisOutput::log_z`] reports it unchanged. The same scale makes SMC batches comparable with
//! each other and with AIS batches (a replay buffer ranks points across batches by weight).
//!
//! The reported `std_err` is AIS's delta-method formula over the final weights; after a resampling event it
//! ignores the variance accumulated before the event, so use repeated runs for an honest error bar.

use crate::config::{CheckedAisConfig, Transition, check_alpha};
use crate::error::{AisConfigError, AisError, Stage};
use crate::output::{AisOutput, BetaDiagnostics, LogZEstimate};
use crate::sampler::{AisAdaptation, P, Q, TAG_DRAW, TAG_TRANSITION, add_weight_increment, keep_valid, record};
use crate::validity::Restricted;
use fab_core::numerics::{logsumexp, normalized_weights};
use fab_core::{LogDensity, Proposal, stream_rng, sub_seed};
use fab_mcmc::{ChainState, Kernel, LinearLogDensity, RandomWalkMetropolis};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Seed-path tag of the resampling draws.
const TAG_RESAMPLE: u64 = 0x5E5A;

/// Bisection halvings of the β increment: 2⁻⁶⁰ of the remaining interval is far below any meaningful Δβ.
const BISECTION_STEPS: usize = 60;

/// How SMC picks its inverse temperatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SmcSchedule {
    /// The AIS configuration's grid (`schedule` with `n_intermediate` intermediate βs).
    Fixed,
    /// Each next β is the largest one whose conditional ESS fraction (Zhou, Johansen & Aston 2016) of the
    /// increment is at least `target_cess`, found by bisection; β = 1 as soon as it qualifies. The AIS
    /// configuration's `n_intermediate` caps the intermediate βs (and sizes the step-size slots): after that
    /// many, the next β is 1.
    Adaptive {
        /// Target `CESS / n` in (0, 1); 0.5–0.99 are usual.
        target_cess: f64,
    },
}

/// Whether and when particles are resampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Resampling {
    /// Never (with a fixed schedule SMC is then exactly AIS).
    Never,
    /// Systematic resampling, before the transition at a β, whenever `ESS / n` falls below `ess_threshold`.
    Systematic {
        /// In (0, 1]; 1 resamples at every β.
        ess_threshold: f64,
    },
}

/// What SMC adds to an AIS configuration: the schedule rule and the resampling rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmcSettings {
    /// Fixed or adaptive βs.
    pub schedule: SmcSchedule,
    /// Resampling rule.
    pub resampling: Resampling,
}

impl Default for SmcSettings {
    /// Adaptive βs at CESS = 0.9 (at most the AIS configuration's `n_intermediate` of them), systematic
    /// resampling below ESS = 0.3 (fab-jax's threshold).
    fn default() -> Self {
        Self {
            schedule: SmcSchedule::Adaptive { target_cess: 0.9 },
            resampling: Resampling::Systematic { ess_threshold: 0.3 },
        }
    }
}

impl SmcSettings {
    /// AIS's behaviour: the fixed grid, no resampling.
    pub fn ais() -> Self {
        Self { schedule: SmcSchedule::Fixed, resampling: Resampling::Never }
    }

    /// Checks the two fractions.
    pub fn check(&self) -> Result<(), AisConfigError> {
        if let SmcSchedule::Adaptive { target_cess } = self.schedule
            && !(target_cess > 0.0 && target_cess < 1.0)
        {
            return Err(AisConfigError::new(
                "smc.schedule",
                format!("target_cess must lie in (0, 1), got {target_cess}"),
            ));
        }
        if let Resampling::Systematic { ess_threshold } = self.resampling
            && !(ess_threshold > 0.0 && ess_threshold <= 1.0)
        {
            return Err(AisConfigError::new(
                "smc.resampling",
                format!("ess_threshold must lie in (0, 1], got {ess_threshold}"),
            ));
        }
        Ok(())
    }
}

/// The result of one SMC run: the AIS-shaped output (its `log_w` carry the running normaliser, so `log_z` is the
/// unbiased SMC estimate) plus the βs actually used and where the particles were resampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmcOutput {
    /// Final points, weights, cached densities, per-β diagnostics, log Z and ESS.
    pub ais: AisOutput,
    /// `0 = β₀ < β₁ < … = 1`, as chosen (adaptive) or configured (fixed).
    pub betas: Vec<f64>,
    /// `ESS / n` (of the particles alive at that point) after reweighting to each `βⱼ`, `j ≥ 1`, before any
    /// resampling at it.
    pub ess_fraction: Vec<f64>,
    /// The conditional ESS fraction of each increment `β_{j−1} → βⱼ`, `j ≥ 1` (the adaptive schedule's target,
    /// except at the last step, where it is at least the target).
    pub cess_fraction: Vec<f64>,
    /// Indices `j` into `betas` at which the particles were resampled (before the transition at `βⱼ`).
    pub resampled_at: Vec<usize>,
    /// The running `log Ẑ` the weights carried after the last resampling event (0 without one): the final
    /// `log Ẑ` minus this is the estimate of the normaliser ratio since that event alone.
    pub log_z_at_last_resampling: f64,
}

/// SMC from any [`Proposal`] to any target. Step sizes adapt per slot `j` (the `j`-th intermediate β) as in
/// [`crate::Ais`], and are checkpointed the same way ([`AisAdaptation`]).
#[derive(Debug, Clone)]
pub struct Smc {
    config: CheckedAisConfig,
    settings: SmcSettings,
    adaptation: AisAdaptation,
}

impl Smc {
    /// A sampler with fresh step sizes; refuses invalid settings.
    pub fn new(config: CheckedAisConfig, settings: SmcSettings) -> Result<Self, AisConfigError> {
        settings.check()?;
        let step_sizes = config.initial_step_sizes();
        Ok(Self { config, settings, adaptation: AisAdaptation { step_sizes } })
    }

    /// The validated AIS part of the configuration.
    pub fn config(&self) -> &CheckedAisConfig {
        &self.config
    }
    /// The SMC part of the configuration.
    pub fn settings(&self) -> &SmcSettings {
        &self.settings
    }
    /// Current adaptation state (for checkpoints).
    pub fn adaptation(&self) -> &AisAdaptation {
        &self.adaptation
    }
    /// Step size of slot `j` (the `j`-th intermediate β, 0-based).
    pub fn step_size(&self, j: usize) -> f64 {
        self.adaptation.step_sizes.step_size(j)
    }
    /// Number of step-size slots (the maximum number of intermediate βs).
    pub fn n_slots(&self) -> usize {
        self.config.n_intermediate()
    }
    /// Replaces the adaptation state, e.g. from a checkpoint.
    pub fn restore_adaptation(&mut self, adaptation: AisAdaptation) -> Result<(), AisError> {
        let (expected, got) = (self.n_slots(), adaptation.step_sizes.len());
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

    /// One SMC run of `n` particles with the configured α; randomness from `seed` and `iteration` only, so the
    /// output is the same for any number of threads.
    pub fn run(
        &mut self,
        proposal: &dyn Proposal,
        target: &dyn LogDensity,
        n: usize,
        seed: u64,
        iteration: u64,
    ) -> Result<SmcOutput, AisError> {
        let alpha = self.config.config().alpha;
        self.run_with_alpha(alpha, proposal, target, n, seed, iteration)
    }

    /// Like [`Smc::run`] with another α (α = 1 targets p, e.g. for evaluation).
    pub fn run_with_alpha(
        &mut self,
        alpha: f64,
        proposal: &dyn Proposal,
        target: &dyn LogDensity,
        n: usize,
        seed: u64,
        iteration: u64,
    ) -> Result<SmcOutput, AisError> {
        self.run_validated(alpha, proposal, target, &|_| true, n, seed, iteration)
    }

    /// Like [`Smc::run_with_alpha`] with the validity rules of [`crate::Ais::run_validated`]: points that
    /// `is_valid` refuses (or beyond the config's `support_bound`) are outside the target's support.
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
    ) -> Result<SmcOutput, AisError> {
        let run = SmcRun { config: &self.config, settings: &self.settings, adaptation: &mut self.adaptation };
        run.run(alpha, proposal, target, is_valid, n, seed, iteration)
    }
}

/// One SMC run's borrowed parts: what [`Smc`] and an [`crate::Ais`] whose config sets `smc` both run.
pub(crate) struct SmcRun<'a> {
    pub(crate) config: &'a CheckedAisConfig,
    pub(crate) settings: &'a SmcSettings,
    pub(crate) adaptation: &'a mut AisAdaptation,
}

impl SmcRun<'_> {
    /// `n` particles from `proposal` to `q^{1−α} p^α` within the validity rules; randomness from `seed` and
    /// `iteration` only.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        mut self,
        alpha: f64,
        proposal: &dyn Proposal,
        target: &dyn LogDensity,
        is_valid: &(dyn Fn(&[f64]) -> bool + Sync),
        n: usize,
        seed: u64,
        iteration: u64,
    ) -> Result<SmcOutput, AisError> {
        check_alpha(alpha)?;
        if proposal.dim() != target.dim() {
            return Err(AisError::DimensionMismatch { proposal: proposal.dim(), target: target.dim() });
        }
        let cfg = self.config.config().clone();
        let fixed_betas = self.config.betas().to_vec();
        let max_intermediate = self.config.n_intermediate();
        let kernel: &dyn Kernel = match &cfg.transition {
            Transition::Hmc(hmc) => hmc,
            Transition::Metropolis => &RandomWalkMetropolis,
            Transition::Nuts(nuts) => nuts,
        };
        let q_as_density: &dyn LogDensity = proposal;
        let restricted = Restricted::new(target, cfg.support_bound, is_valid);
        let mut annealed = LinearLogDensity::new(vec![q_as_density, &restricted], vec![1.0, 0.0])?;

        // x₀ ~ q, exactly as AIS draws it (same seed path), so a fixed schedule without resampling is AIS.
        let mut rng = stream_rng(sub_seed(seed, &[iteration, TAG_DRAW]), 0);
        let (x0, log_q0) = proposal.sample(&mut rng, n);
        let with_gradient = kernel.uses_gradient() && max_intermediate > 0;
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

        let mut log_w = vec![0.0; state.n_chains()];
        let mut betas = vec![0.0];
        let mut ess_fraction = Vec::new();
        let mut cess_fraction = Vec::new();
        let mut resampled_at = Vec::new();
        let mut log_z_at_last_resampling = 0.0;
        let mut per_beta = Vec::new();
        loop {
            let j = betas.len();
            let beta = betas[j - 1];
            let beta_next = match self.settings.schedule {
                SmcSchedule::Fixed => fixed_betas[j],
                SmcSchedule::Adaptive { .. } if j > max_intermediate => 1.0,
                SmcSchedule::Adaptive { target_cess } => {
                    let log_ratio = log_ratio(&state, alpha);
                    next_beta_by_cess(beta, &log_w, &log_ratio, target_cess)
                }
            };
            cess_fraction.push(conditional_ess_fraction(&log_w, &log_ratio(&state, alpha), beta_next - beta));
            add_weight_increment(&mut log_w, &state, alpha, beta, beta_next);
            betas.push(beta_next);
            ess_fraction.push(ess_fraction_of(&log_w));
            if beta_next >= 1.0 {
                break;
            }
            if let Resampling::Systematic { ess_threshold } = self.settings.resampling
                && ess_fraction[j - 1] < ess_threshold
            {
                let u = stream_rng(sub_seed(seed, &[iteration, TAG_RESAMPLE, j as u64]), 0).random::<f64>();
                let (w, _) = normalized_weights(&log_w);
                let parents = systematic_resample(&w, u);
                let log_mean_w = logsumexp(&log_w).value - (log_w.len() as f64).ln();
                state = state.select(&parents);
                log_w.fill(log_mean_w);
                log_z_at_last_resampling = log_mean_w;
                resampled_at.push(j);
            }
            annealed.set_coefficients(&[1.0 - alpha * beta_next, alpha * beta_next])?;
            let diag = self.transitions_at(kernel, &annealed, &mut state, beta_next, j, seed, iteration)?;
            n_evaluated += diag.n_evaluated;
            per_beta.push(diag);
        }

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
        let ais = AisOutput {
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
        }
        .summarise();
        Ok(SmcOutput { ais, betas, ess_fraction, cess_fraction, resampled_at, log_z_at_last_resampling })
    }

    /// The configured number of transitions at `βⱼ`, with slot `j − 1`'s step size (adapted unless frozen).
    #[allow(clippy::too_many_arguments)]
    fn transitions_at(
        &mut self,
        kernel: &dyn Kernel,
        annealed: &LinearLogDensity<'_>,
        state: &mut ChainState,
        beta: f64,
        j: usize,
        seed: u64,
        iteration: u64,
    ) -> Result<BetaDiagnostics, AisError> {
        let reps = self.config.config().transitions_per_beta;
        let mut diag = BetaDiagnostics {
            beta,
            step_size: f64::NAN,
            acceptance_rate: 0.0,
            mean_accept_prob: 0.0,
            accept_statistic: 0.0,
            n_divergent: 0,
            n_evaluated: 0,
        };
        for rep in 0..reps {
            let step_size = self.adaptation.step_sizes.step_size(j - 1);
            // AIS's seed path: with a fixed schedule and no resampling the transitions are AIS's, bit for bit.
            let step_seed = sub_seed(seed, &[iteration, TAG_TRANSITION, j as u64, rep as u64]);
            let info = kernel.step(annealed, state, step_size, step_seed)?;
            let stat = self.adaptation.step_sizes.adapt(j - 1, &info);
            record(&mut diag, &info, step_size, stat, reps);
        }
        Ok(diag)
    }
}

/// `α(log p − log q)` per particle: the log incremental weight per unit of β.
fn log_ratio(state: &ChainState, alpha: f64) -> Vec<f64> {
    state.log_f(P).iter().zip(state.log_f(Q)).map(|(lp, lq)| alpha * (lp - lq)).collect()
}

/// `ESS / n` of the finite log weights: `(Σ w)² / (n Σ w²)`.
fn ess_fraction_of(log_w: &[f64]) -> f64 {
    let a = logsumexp(log_w).value;
    let doubled: Vec<f64> = log_w.iter().map(|lw| 2.0 * lw).collect();
    let b = logsumexp(&doubled).value;
    (2.0 * a - b).exp() / log_w.len() as f64
}

/// The conditional ESS fraction (Zhou, Johansen & Aston 2016) of moving the weights `log_w` by the increment
/// `Δβ · log_ratio`: `(Σᵢ W̄ᵢ uᵢ)² / Σᵢ W̄ᵢ uᵢ²` with `W̄` the normalised current weights and `uᵢ = exp(Δβ·rᵢ)`.
/// It is 1 for `Δβ = 0` and measures the increment alone, whatever the weights' own degeneracy.
pub fn conditional_ess_fraction(log_w: &[f64], log_ratio: &[f64], delta_beta: f64) -> f64 {
    let log_norm = logsumexp(log_w).value;
    let once: Vec<f64> = log_w.iter().zip(log_ratio).map(|(lw, r)| lw - log_norm + delta_beta * r).collect();
    let twice: Vec<f64> = log_w.iter().zip(log_ratio).map(|(lw, r)| lw - log_norm + 2.0 * delta_beta * r).collect();
    (2.0 * logsumexp(&once).value - logsumexp(&twice).value).exp()
}

/// The next β after `beta`: 1 if its whole remaining increment keeps the conditional ESS fraction at least
/// `target`, else the bisection point of `[beta, 1]` where it crosses `target` (from below, so the fraction at
/// the returned β is at least `target`). Always strictly above `beta`, so the schedule reaches 1.
pub fn next_beta_by_cess(beta: f64, log_w: &[f64], log_ratio: &[f64], target: f64) -> f64 {
    let remaining = 1.0 - beta;
    if conditional_ess_fraction(log_w, log_ratio, remaining) >= target {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0, remaining);
    for _ in 0..BISECTION_STEPS {
        let mid = 0.5 * (lo + hi);
        if conditional_ess_fraction(log_w, log_ratio, mid) >= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // Progress even if the fraction drops below target for every representable Δβ > 0.
    let delta = if lo > 0.0 { lo } else { hi };
    (beta + delta).min(1.0)
}

/// Systematic resampling: `n` parent indices from normalised weights `w` (sum 1) and one uniform `u ∈ [0, 1)`;
/// parent `i` gets `⌊n·Wᵢ⌋` or `⌈n·Wᵢ⌉` offspring (`Wᵢ` cumulative). Indices come out sorted.
pub fn systematic_resample(w: &[f64], u: f64) -> Vec<usize> {
    let n = w.len();
    let mut parents = Vec::with_capacity(n);
    let mut cumulative = 0.0;
    let mut i = 0;
    for k in 0..n {
        let point = (u + k as f64) / n as f64;
        while i + 1 < n && cumulative + w[i] <= point {
            cumulative += w[i];
            i += 1;
        }
        parents.push(i);
    }
    parents
}
