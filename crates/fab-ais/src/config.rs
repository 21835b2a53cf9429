//! AIS configuration: number of intermediate distributions, β schedule, α, transition kernel and step-size rule,
//! checked once into a [`CheckedAisConfig`] with its β grid.

use crate::error::AisConfigError;
use crate::smc::SmcSettings;
use fab_mcmc::{FabRule, Hmc, McmcError, StepSizes};
use serde::{Deserialize, Serialize};

/// How the `K + 2` inverse temperatures `0 = β₀ < β₁ < … < β_{K+1} = 1` are spaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BetaSchedule {
    /// `linspace(0, 1, K + 2)`; K = 2 gives the 2021 paper's `0, 1/3, 2/3, 1`.
    Linear,
    /// ICLR: the first quarter of the `K + 2` points (at least one) linear in `[0, 0.01)`, the rest
    /// `geomspace(0.01, 1)`. Falls back to linear for K < 3, as the authors' code does.
    Geometric,
    /// 2021: `max((K + 2)/5, 2)` points linear in `[0, 0.1)`, the rest `geomspace(0.1, 1)`; linear for K < 3.
    Geometric2021,
    /// Exactly these βs: start at 0, end at 1, non-decreasing; `n_intermediate` must be `len − 2`.
    Explicit(Vec<f64>),
}

/// The Markov kernel applied at each intermediate distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Transition {
    /// HMC (FAB 2021 and ICLR Many Well: 5 leapfrog steps).
    Hmc(Hmc),
    /// Random-walk Metropolis (ICLR GMM: σ = 5, fixed).
    Metropolis,
    /// NUTS (not used by the papers): one tree per transition, its step size from the step-size rule.
    Nuts(fab_mcmc::Nuts),
}

/// How the step size of each intermediate distribution adapts during training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum StepSizeRule {
    /// The FAB multiplicative rule with per-distribution and common parts (SPEC §3).
    Fab(FabRule),
    /// Dual averaging toward `target_accept`, independently per distribution.
    DualAveraging {
        /// Target mean acceptance probability.
        target_accept: f64,
    },
    /// No adaptation.
    Fixed,
}

/// Everything that defines an AIS run except the densities, the sample size and the seed.
///
/// In RON (fab-train's `method.ais`), `n_intermediate`, `alpha`, `transition`, `step_size_rule` and
/// `initial_step_size` must be written; the rest default to the papers' plumbing (linear schedule, one transition per
/// β, [`fab_mcmc::DEFAULT_CHUNK_SIZE`] chains per task, no support bound).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AisConfig {
    /// Intermediate distributions `K`, endpoints excluded (ICLR convention; the 2021 code's `n_distributions`
    /// is `K + 2`). `K = 0` is plain importance sampling.
    pub n_intermediate: usize,
    /// Spacing of the βs.
    #[serde(default = "default_schedule")]
    pub schedule: BetaSchedule,
    /// `log f_β = (1 − αβ)·log q + αβ·log p`: α = 1 anneals to p (2021), α = 2 to p²/q (ICLR).
    pub alpha: f64,
    /// The kernel.
    pub transition: Transition,
    /// Transitions per intermediate distribution (both papers: 1).
    #[serde(default = "default_transitions_per_beta")]
    pub transitions_per_beta: usize,
    /// Step-size adaptation.
    pub step_size_rule: StepSizeRule,
    /// Initial step size of every distribution (FAB: 1.0, split 0.9 individual + 0.1 common; Metropolis σ).
    pub initial_step_size: f64,
    /// Chains per rayon task (results depend on it, never on the thread count).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Points with a coordinate beyond ± this bound are outside the target's support (dropped, or rejected when
    /// proposed, and counted); `None`: only non-finite coordinates are.
    #[serde(default)]
    pub support_bound: Option<f64>,
    /// Run SMC instead of AIS ([`SmcSettings`]: adaptive βs and/or resampling) wherever this configuration is
    /// run, [`crate::Ais`] included; `None` (the default) is plain AIS, bit for bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smc: Option<SmcSettings>,
}

fn default_schedule() -> BetaSchedule {
    BetaSchedule::Linear
}
fn default_transitions_per_beta() -> usize {
    1
}
fn default_chunk_size() -> usize {
    fab_mcmc::DEFAULT_CHUNK_SIZE
}

impl Default for AisConfig {
    /// The ICLR Many Well setup: [`AisConfig::iclr_hmc`].
    fn default() -> Self {
        Self::iclr_hmc()
    }
}

impl AisConfig {
    /// FAB 2021: 2 intermediate distributions (β = 0, ⅓, ⅔, 1), α = 1, HMC with 5 leapfrog steps and the
    /// ±1e4 gradient guard, the 2021 FAB rule from ε = 1.
    pub fn fab_2021() -> Self {
        Self {
            n_intermediate: 2,
            schedule: BetaSchedule::Linear,
            alpha: 1.0,
            transition: Transition::Hmc(Hmc::without_jitter(5).with_grad_clamp(1e4)),
            transitions_per_beta: 1,
            step_size_rule: StepSizeRule::Fab(FabRule::Fab2021),
            initial_step_size: 1.0,
            chunk_size: fab_mcmc::DEFAULT_CHUNK_SIZE,
            support_bound: None,
            smc: None,
        }
    }

    /// FAB ICLR Many Well: 4 intermediate distributions, α = 2, HMC with 5 leapfrog steps and the ±1e3 guard,
    /// the ICLR FAB rule from ε = 1.
    pub fn iclr_hmc() -> Self {
        Self {
            n_intermediate: 4,
            alpha: 2.0,
            transition: Transition::Hmc(Hmc::without_jitter(5).with_grad_clamp(1e3)),
            step_size_rule: StepSizeRule::Fab(FabRule::Iclr),
            ..Self::fab_2021()
        }
    }

    /// FAB ICLR GMM: 1 intermediate distribution, α = 2, random-walk Metropolis with fixed σ = 5.
    pub fn iclr_metropolis() -> Self {
        Self {
            n_intermediate: 1,
            alpha: 2.0,
            transition: Transition::Metropolis,
            step_size_rule: StepSizeRule::Fixed,
            initial_step_size: 5.0,
            ..Self::fab_2021()
        }
    }

    /// Validates every field and computes the β grid.
    pub fn check(&self) -> Result<CheckedAisConfig, AisConfigError> {
        check_alpha(self.alpha)?;
        if self.transitions_per_beta == 0 {
            return Err(AisConfigError::new("transitions_per_beta", "must be at least 1"));
        }
        if !(self.initial_step_size.is_finite() && self.initial_step_size > 0.0) {
            return Err(AisConfigError::new(
                "initial_step_size",
                format!("must be positive and finite, got {}", self.initial_step_size),
            ));
        }
        if self.chunk_size == 0 {
            return Err(AisConfigError::new("chunk_size", "must be at least 1"));
        }
        if let Some(b) = self.support_bound
            && !(b.is_finite() && b > 0.0)
        {
            return Err(AisConfigError::new("support_bound", format!("must be positive and finite, got {b}")));
        }
        if let Transition::Hmc(hmc) = &self.transition {
            check_hmc(hmc)?;
        }
        if let Some(smc) = &self.smc {
            smc.check()?;
        }
        if let StepSizeRule::DualAveraging { target_accept } = self.step_size_rule
            && !(target_accept > 0.0 && target_accept < 1.0)
        {
            return Err(AisConfigError::new(
                "step_size_rule",
                format!("target_accept must lie in (0, 1), got {target_accept}"),
            ));
        }
        let betas = betas(&self.schedule, self.n_intermediate)?;
        Ok(CheckedAisConfig { config: self.clone(), betas })
    }
}

/// α must be a positive finite number.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), AisConfigError> {
    if alpha.is_finite() && alpha > 0.0 {
        Ok(())
    } else {
        Err(AisConfigError::new("alpha", format!("must be positive and finite, got {alpha}")))
    }
}

/// The dimension-free HMC checks, reported under the `transition` field.
fn check_hmc(hmc: &Hmc) -> Result<(), AisConfigError> {
    // The mass diagonal's length can only be checked against the densities, at run time.
    let probe = Hmc { mass_diag: None, ..hmc.clone() };
    probe.check(1).map_err(|e| match e {
        McmcError::InvalidParameter { field, reason } => AisConfigError::new("transition", format!("{field} {reason}")),
        other => AisConfigError::new("transition", other.to_string()),
    })?;
    if let Some(m) = &hmc.mass_diag
        && !m.iter().all(|v| v.is_finite() && *v > 0.0)
    {
        return Err(AisConfigError::new("transition", "mass_diag entries must be positive and finite"));
    }
    Ok(())
}

/// A validated configuration with its β grid (`K + 2` values from 0 to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedAisConfig {
    config: AisConfig,
    betas: Vec<f64>,
}

impl CheckedAisConfig {
    /// The configuration as given.
    pub fn config(&self) -> &AisConfig {
        &self.config
    }
    /// `β₀ = 0, β₁, …, β_K, β_{K+1} = 1`.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }
    /// Number of intermediate distributions `K`.
    pub fn n_intermediate(&self) -> usize {
        self.betas.len() - 2
    }
    /// Fresh step-size state for the `K` intermediate distributions, per the configured rule.
    pub fn initial_step_sizes(&self) -> StepSizes {
        let (k, eps) = (self.n_intermediate(), self.config.initial_step_size);
        let built = match self.config.step_size_rule {
            StepSizeRule::Fab(rule) => StepSizes::fab(rule, k, eps),
            StepSizeRule::DualAveraging { target_accept } => StepSizes::dual_averaging(k, eps, target_accept),
            StepSizeRule::Fixed => StepSizes::fixed(k, eps),
        };
        built.expect("step size and target acceptance were checked")
    }
}

/// `n` evenly spaced values from `a` to `b` inclusive (`[a]` for `n = 1`).
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    (0..n).map(|i| if i == n - 1 { b } else { a + (b - a) * i as f64 / (n - 1) as f64 }).collect()
}

/// `n` values from `a` to `b` inclusive with a constant ratio.
fn geomspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    let (la, lb) = (a.ln(), b.ln());
    linspace(la, lb, n).into_iter().enumerate().map(|(i, l)| if i == n - 1 { b } else { l.exp() }).collect()
}

/// `n_linear` points linear in `[0, knee)` followed by `geomspace(knee, 1)` for the remaining points.
fn linear_then_geometric(n_total: usize, n_linear: usize, knee: f64) -> Vec<f64> {
    let mut out = linspace(0.0, knee, n_linear + 1);
    out.pop();
    out.extend(geomspace(knee, 1.0, n_total - n_linear));
    out
}

/// The β grid of `schedule` with `n_intermediate` intermediate distributions.
pub fn betas(schedule: &BetaSchedule, n_intermediate: usize) -> Result<Vec<f64>, AisConfigError> {
    let n_total = n_intermediate + 2;
    let betas = match schedule {
        BetaSchedule::Linear => linspace(0.0, 1.0, n_total),
        BetaSchedule::Geometric | BetaSchedule::Geometric2021 if n_intermediate < 3 => linspace(0.0, 1.0, n_total),
        BetaSchedule::Geometric => linear_then_geometric(n_total, (n_total / 4).max(1), 0.01),
        BetaSchedule::Geometric2021 => linear_then_geometric(n_total, (n_total / 5).max(2), 0.1),
        BetaSchedule::Explicit(bs) => {
            if bs.len() != n_total {
                return Err(AisConfigError::new(
                    "n_intermediate",
                    format!(
                        "is {n_intermediate} but the explicit schedule has {} βs (need n_intermediate + 2)",
                        bs.len()
                    ),
                ));
            }
            let ordered = bs.windows(2).all(|w| w[0] <= w[1]);
            if bs.first() != Some(&0.0) || bs.last() != Some(&1.0) || !ordered || bs.iter().any(|b| !b.is_finite()) {
                return Err(AisConfigError::new(
                    "schedule",
                    format!("must run non-decreasing from 0 to 1, got {bs:?}"),
                ));
            }
            bs.clone()
        }
    };
    Ok(betas)
}
