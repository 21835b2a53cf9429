//! Step-size adaptation as separate, serialisable, freezable state: the FAB multiplicative rule (with a
//! per-distribution and a common part) and Nesterov dual averaging.

use crate::error::McmcError;
use crate::kernel::StepInfo;
use serde::{Deserialize, Serialize};

/// Which paper's variant of the FAB multiplicative rule (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FabRule {
    /// FAB 2021: statistic `mean(clamp(exp(−ΔH), 0, 1))`; factors 1.1 (individual) and 1.05 (common).
    Fab2021,
    /// FAB ICLR 2023: statistic `exp(logmeanexp(min(0, −ΔH)))`; factors 1.05 (individual) and 1.02 (common).
    Iclr,
}

impl FabRule {
    /// `(individual factor, common factor)` by which the parts grow (or shrink, by division).
    pub fn factors(self) -> (f64, f64) {
        match self {
            FabRule::Fab2021 => (1.1, 1.05),
            FabRule::Iclr => (1.05, 1.02),
        }
    }

    /// The acceptance statistic compared with the target. Both formulas are the mean Metropolis acceptance
    /// probability; they differ only in arithmetic. A non-finite `ΔH` (invalid proposal) counts as probability 0.
    pub fn accept_statistic(self, energy_errors: &[f64]) -> f64 {
        match self {
            FabRule::Fab2021 => mean_clamped_accept_prob(energy_errors),
            FabRule::Iclr => exp_log_mean_exp_accept(energy_errors),
        }
    }
}

/// `mean(clamp(exp(−ΔH), 0, 1))` with non-finite terms as 0 (FAB 2021).
pub fn mean_clamped_accept_prob(energy_errors: &[f64]) -> f64 {
    let p = |dh: f64| if dh.is_nan() { 0.0 } else { (-dh).exp().clamp(0.0, 1.0) };
    energy_errors.iter().map(|&dh| p(dh)).sum::<f64>() / energy_errors.len() as f64
}

/// `exp(logmeanexp(min(0, −ΔH)))` computed in log space, with non-finite terms as `−∞` (FAB ICLR).
pub fn exp_log_mean_exp_accept(energy_errors: &[f64]) -> f64 {
    let log_a: Vec<f64> =
        energy_errors.iter().map(|&dh| if dh.is_nan() { f64::NEG_INFINITY } else { (-dh).min(0.0) }).collect();
    let max = log_a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return 0.0;
    }
    let mean = log_a.iter().map(|&la| (la - max).exp()).sum::<f64>() / log_a.len() as f64;
    (max + mean.ln()).exp()
}

/// Nesterov dual averaging of `log ε` toward a target acceptance (Hoffman & Gelman 2014, §3.2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DualAveraging {
    /// Target mean acceptance probability δ.
    pub target_accept: f64,
    /// Shrinkage point `μ = log(10 ε₀)`.
    pub mu: f64,
    /// Shrinkage strength γ (0.05).
    pub gamma: f64,
    /// Iteration offset t₀ (10).
    pub t0: f64,
    /// Averaging decay κ (0.75).
    pub kappa: f64,
    /// Current `log ε`.
    pub log_step: f64,
    /// Running average `log ε̄` (the value used once frozen).
    pub log_step_avg: f64,
    /// Running mean of `δ − acceptance`.
    pub h_bar: f64,
    /// Number of updates so far.
    pub count: u64,
}

impl DualAveraging {
    /// Standard constants, starting at `initial_step`.
    pub fn new(initial_step: f64, target_accept: f64) -> Self {
        Self {
            target_accept,
            mu: (10.0 * initial_step).ln(),
            gamma: 0.05,
            t0: 10.0,
            kappa: 0.75,
            log_step: initial_step.ln(),
            log_step_avg: initial_step.ln(),
            h_bar: 0.0,
            count: 0,
        }
    }

    /// One update with the observed mean acceptance probability.
    pub fn update(&mut self, accept: f64) {
        self.count += 1;
        let t = self.count as f64;
        let w = 1.0 / (t + self.t0);
        let accept = if accept.is_nan() { 0.0 } else { accept };
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target_accept - accept);
        self.log_step = self.mu - t.sqrt() / self.gamma * self.h_bar;
        let eta = t.powf(-self.kappa);
        self.log_step_avg = eta * self.log_step + (1.0 - eta) * self.log_step_avg;
    }
}

/// The adaptation rule and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Adapter {
    /// Fixed step sizes (ICLR GMM Metropolis: σ = 5).
    Fixed {
        /// One step size per distribution.
        step_sizes: Vec<f64>,
    },
    /// The FAB rule: `εⱼ = εⱼ^ind + ε^common`; after a transition at distribution `j`, both parts are multiplied
    /// by their factors if the statistic exceeds `target_accept`, divided otherwise. The common part is shared by
    /// all distributions, so every transition moves it.
    Fab {
        /// Paper variant (factors and statistic).
        rule: FabRule,
        /// Target acceptance (0.65).
        target_accept: f64,
        /// Per-distribution parts `εⱼ^ind`.
        individual: Vec<f64>,
        /// The shared part `ε^common`.
        common: f64,
    },
    /// Independent dual averaging per distribution; frozen step sizes are the averaged iterates.
    DualAveraging(Vec<DualAveraging>),
}

/// Step sizes of `n` distributions (one for a plain sampler, one per intermediate β in AIS), adapted after each
/// transition unless frozen. Serialisable, so a checkpoint restores the exact adaptation state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSizes {
    adapter: Adapter,
    frozen: bool,
}

/// The weight of the common part in the initial FAB step size (both papers: `ε = 0.9·ε₀ + 0.1·ε₀`).
pub const FAB_COMMON_INIT_WEIGHT: f64 = 0.1;

/// Target acceptance of the FAB rule.
pub const FAB_TARGET_ACCEPT: f64 = 0.65;

fn check_positive(field: &'static str, v: f64) -> Result<(), McmcError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(McmcError::InvalidParameter { field, reason: format!("must be positive and finite, got {v}") })
    }
}

fn check_probability(field: &'static str, v: f64) -> Result<(), McmcError> {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(McmcError::InvalidParameter { field, reason: format!("must lie in (0, 1), got {v}") })
    }
}

impl StepSizes {
    /// `n` fixed step sizes equal to `step_size`.
    pub fn fixed(n: usize, step_size: f64) -> Result<Self, McmcError> {
        check_positive("step_size", step_size)?;
        Ok(Self { adapter: Adapter::Fixed { step_sizes: vec![step_size; n] }, frozen: false })
    }

    /// The FAB rule for `n` distributions starting at `initial` (split 0.9 / 0.1 into individual / common).
    pub fn fab(rule: FabRule, n: usize, initial: f64) -> Result<Self, McmcError> {
        check_positive("step_size", initial)?;
        Ok(Self {
            adapter: Adapter::Fab {
                rule,
                target_accept: FAB_TARGET_ACCEPT,
                individual: vec![(1.0 - FAB_COMMON_INIT_WEIGHT) * initial; n],
                common: FAB_COMMON_INIT_WEIGHT * initial,
            },
            frozen: false,
        })
    }

    /// Dual averaging for `n` distributions.
    pub fn dual_averaging(n: usize, initial: f64, target_accept: f64) -> Result<Self, McmcError> {
        check_positive("step_size", initial)?;
        check_probability("target_accept", target_accept)?;
        Ok(Self { adapter: Adapter::DualAveraging(vec![DualAveraging::new(initial, target_accept); n]), frozen: false })
    }

    /// Changes the target acceptance (FAB rule and dual averaging; ignored for fixed step sizes).
    pub fn with_target_accept(mut self, target: f64) -> Result<Self, McmcError> {
        check_probability("target_accept", target)?;
        match &mut self.adapter {
            Adapter::Fixed { .. } => {}
            Adapter::Fab { target_accept, .. } => *target_accept = target,
            Adapter::DualAveraging(das) => das.iter_mut().for_each(|d| d.target_accept = target),
        }
        Ok(self)
    }

    /// Number of distributions.
    pub fn len(&self) -> usize {
        match &self.adapter {
            Adapter::Fixed { step_sizes } => step_sizes.len(),
            Adapter::Fab { individual, .. } => individual.len(),
            Adapter::DualAveraging(d) => d.len(),
        }
    }
    /// True for zero distributions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rule and its state.
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// Step size of distribution `j` (for dual averaging: the current iterate while adapting, the average once frozen).
    pub fn step_size(&self, j: usize) -> f64 {
        match &self.adapter {
            Adapter::Fixed { step_sizes } => step_sizes[j],
            Adapter::Fab { individual, common, .. } => individual[j] + common,
            Adapter::DualAveraging(d) if self.frozen => d[j].log_step_avg.exp(),
            Adapter::DualAveraging(d) => d[j].log_step.exp(),
        }
    }

    /// Adapts distribution `j` after `info` (a no-op when frozen or fixed); returns the acceptance statistic used.
    pub fn adapt(&mut self, j: usize, info: &StepInfo) -> f64 {
        let frozen = self.frozen;
        match &mut self.adapter {
            Adapter::Fixed { .. } => info.mean_accept_prob(),
            Adapter::Fab { rule, target_accept, individual, common } => {
                let stat = rule.accept_statistic(&info.energy_errors());
                if !frozen {
                    let (f_ind, f_common) = rule.factors();
                    if stat > *target_accept {
                        individual[j] *= f_ind;
                        *common *= f_common;
                    } else {
                        individual[j] /= f_ind;
                        *common /= f_common;
                    }
                }
                stat
            }
            Adapter::DualAveraging(das) => {
                let stat = info.mean_accept_prob();
                if !frozen {
                    das[j].update(stat);
                }
                stat
            }
        }
    }

    /// Stops adaptation (evaluation mode).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }
    /// Resumes adaptation (training mode).
    pub fn unfreeze(&mut self) {
        self.frozen = false;
    }
    /// True when frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }
}
