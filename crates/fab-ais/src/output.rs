//! What an AIS run returns: samples with their log weights and cached densities, per-β diagnostics, log Z and ESS.

use fab_core::Batch;
use fab_core::numerics::ess_percent;
use serde::{Deserialize, Serialize};

/// Diagnostics of the transitions at one intermediate distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BetaDiagnostics {
    /// The inverse temperature βⱼ.
    pub beta: f64,
    /// Step size used (of the last transition at this β, if several).
    pub step_size: f64,
    /// Fraction of accepted proposals.
    pub acceptance_rate: f64,
    /// Mean Metropolis acceptance probability.
    pub mean_accept_prob: f64,
    /// The statistic the step-size rule compared with its target.
    pub accept_statistic: f64,
    /// Divergent proposals (non-finite position, `log q`, `log p`, or energy error above the limit): rejected.
    pub n_divergent: usize,
    /// Points evaluated at this β (each evaluation computes `log q`, `log p` and, for HMC, both gradients).
    pub n_evaluated: u64,
}

/// A log normalising-constant estimate `log Ẑ = log mean wᵢ` with its delta-method standard error
/// `se(log Ẑ) ≈ sd(w) / (√n · mean(w))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogZEstimate {
    /// `log mean(w)` over the finite weights.
    pub log_z: f64,
    /// Standard error of `log_z` (delta method); `NaN` with fewer than 2 finite weights.
    pub std_err: f64,
    /// Finite weights used.
    pub n_used: usize,
}

/// `log mean(w)` and its delta-method standard error from log weights; non-finite entries are skipped.
/// Computed around the largest log weight, so it never overflows.
pub fn log_z_estimate(log_w: &[f64]) -> LogZEstimate {
    let finite: Vec<f64> = log_w.iter().copied().filter(|v| v.is_finite()).collect();
    let n = finite.len();
    if n == 0 {
        return LogZEstimate { log_z: f64::NEG_INFINITY, std_err: f64::NAN, n_used: 0 };
    }
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let scaled: Vec<f64> = finite.iter().map(|lw| (lw - max).exp()).collect();
    let mean = scaled.iter().sum::<f64>() / n as f64;
    let std_err = if n > 1 {
        let var = scaled.iter().map(|w| (w - mean) * (w - mean)).sum::<f64>() / (n - 1) as f64;
        (var / n as f64).sqrt() / mean
    } else {
        f64::NAN
    };
    LogZEstimate { log_z: max + mean.ln(), std_err, n_used: n }
}

/// The result of one AIS run. Row `i` of `samples` has log weight `log_w[i]` and the cached `log_q[i]`, `log_p[i]`
/// (evaluated when the point was proposed: fab-train's replay buffer stores `log q` at AIS time).
/// Points with a non-finite `log q`, `log p` or weight have been dropped and counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AisOutput {
    /// Final points `x_K`.
    pub samples: Batch,
    /// AIS log weights.
    pub log_w: Vec<f64>,
    /// `log q(x_K)` of the proposal that started the run.
    pub log_q: Vec<f64>,
    /// `log p̃(x_K)` of the target.
    pub log_p: Vec<f64>,
    /// One entry per intermediate distribution.
    pub per_beta: Vec<BetaDiagnostics>,
    /// Points drawn from the proposal.
    pub n_requested: usize,
    /// Points dropped after the draw (non-finite `log q` or `log p`).
    pub n_dropped_init: usize,
    /// Points dropped at the end (non-finite `log q`, `log p` or weight).
    pub n_dropped_end: usize,
    /// Points evaluated in the whole run, including the initial evaluation.
    pub n_evaluated: u64,
    /// Target evaluations at invalid points (non-finite coordinates, beyond the support bound, or rejected by the
    /// caller's predicate), which were treated as outside the support: drawn ones are in the drop counts,
    /// proposed ones were rejected.
    pub n_invalid: u64,
    /// α used in this run.
    pub alpha: f64,
    /// `log Ẑ` of the final (unnormalised) density `q^{1−α}p^α` with its standard error.
    pub log_z: LogZEstimate,
    /// Effective sample size in percent of the points *drawn* (dropped points count as weight 0).
    pub ess_percent: f64,
}

impl AisOutput {
    /// Builds the summary statistics from the kept points.
    pub(crate) fn summarise(mut self) -> Self {
        self.log_z = log_z_estimate(&self.log_w);
        let mut padded = self.log_w.clone();
        padded.resize(self.n_requested, f64::NEG_INFINITY);
        self.ess_percent = ess_percent(&padded).value;
        self
    }

    /// Number of points returned.
    pub fn len(&self) -> usize {
        self.log_w.len()
    }
    /// True when no point was returned.
    pub fn is_empty(&self) -> bool {
        self.log_w.is_empty()
    }
    /// Total divergent proposals over all βs.
    pub fn n_divergent(&self) -> usize {
        self.per_beta.iter().map(|b| b.n_divergent).sum()
    }
}
