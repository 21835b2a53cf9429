//! The papers' metrics as pure functions of log weights, log densities and function values (SPEC §6a).
//!
//! Sampling (from the flow, AIS or the target) happens in `eval`; everything here is arithmetic with a unit test on
//! a case whose answer is known. Non-finite entries are skipped and counted, never propagated.

use fab_core::numerics::{Reduction, log_mean_exp, mean_std, self_normalized_mean};
use serde::{Deserialize, Serialize};

/// Bias and spread of a self-normalised expectation estimate over independent groups (2021 and ICLR definitions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectationError {
    /// 2021: `|mean_g Ê_g − E| / |E|`, in percent.
    pub bias_percent: f64,
    /// 2021: `std_g(Ê_g) / |E|`, in percent (population std over groups).
    pub std_percent: f64,
    /// ICLR: `mean_g |Ê_g − E| / |E|`, in percent (mean absolute relative error).
    pub mae_percent: f64,
    /// Groups that produced an estimate.
    pub n_groups: usize,
    /// Points skipped because their weight or value was non-finite.
    pub n_skipped: usize,
}

/// Splits `(log_w, values)` into consecutive groups of `group_size`, forms a self-normalised estimate per group, and
/// compares the estimates with `truth`.
pub fn expectation_error(log_w: &[f64], values: &[f64], group_size: usize, truth: f64) -> ExpectationError {
    assert_eq!(log_w.len(), values.len(), "expectation_error: one weight per value");
    assert!(group_size > 0, "expectation_error: group size must be positive");
    let mut estimates = Vec::new();
    let mut n_skipped = 0;
    for (lw, v) in log_w.chunks(group_size).zip(values.chunks(group_size)) {
        let r = self_normalized_mean(lw, v);
        n_skipped += r.n_skipped;
        if r.value.is_finite() {
            estimates.push(r.value);
        }
    }
    let (mean, std) = mean_std(&estimates);
    let scale = truth.abs();
    let mae = estimates.iter().map(|e| (e - truth).abs()).sum::<f64>() / estimates.len() as f64;
    ExpectationError {
        bias_percent: 100.0 * (mean.value - truth).abs() / scale,
        std_percent: 100.0 * std / scale,
        mae_percent: 100.0 * mae / scale,
        n_groups: estimates.len(),
        n_skipped,
    }
}

/// Forward ESS in percent: `100 / mean_{x~p}( p(x) / q(x) )`, from normalised `log p` and `log q` at exact target
/// samples. Equals 100 when q = p; small when q misses mass of p.
pub fn forward_ess_percent(log_p: &[f64], log_q: &[f64]) -> Reduction {
    assert_eq!(log_p.len(), log_q.len(), "forward_ess_percent: one log q per log p");
    let log_ratio: Vec<f64> = log_p.iter().zip(log_q).map(|(p, q)| p - q).collect();
    let r = log_mean_exp(&log_ratio);
    Reduction { value: 100.0 * (-r.value).exp(), ..r }
}

/// Errors of log Z estimates from `n_runs` independent runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogZError {
    /// Mean over runs of the estimate `log Ẑ_r`.
    pub mean_log_z: f64,
    /// ICLR `MSE_log_Z_estimate`: mean_r |Ẑ_r / Z − 1|, in percent (a relative error of Z, not of log Z).
    pub relative_error_z_percent: f64,
    /// mean_r |log Ẑ_r − log Z|.
    pub abs_error_log_z: f64,
    /// Runs that produced a finite estimate.
    pub n_runs: usize,
    /// Log weights skipped as non-finite.
    pub n_skipped: usize,
}

/// Splits `log_w` into `n_runs` strided runs (entry `i` goes to run `i mod n_runs`, as the ICLR evaluation does),
/// estimates `log Ẑ_r = log mean exp(log w)` per run and compares with `true_log_z`.
pub fn log_z_error(log_w: &[f64], n_runs: usize, true_log_z: f64) -> LogZError {
    assert!(n_runs > 0, "log_z_error: at least one run");
    let mut estimates = Vec::with_capacity(n_runs);
    let mut n_skipped = 0;
    for r in 0..n_runs {
        let run: Vec<f64> = log_w.iter().skip(r).step_by(n_runs).copied().collect();
        let est = log_mean_exp(&run);
        n_skipped += est.n_skipped;
        if est.value.is_finite() {
            estimates.push(est.value);
        }
    }
    let n = estimates.len() as f64;
    LogZError {
        mean_log_z: estimates.iter().sum::<f64>() / n,
        relative_error_z_percent: 100.0 * estimates.iter().map(|e| ((e - true_log_z).exp() - 1.0).abs()).sum::<f64>()
            / n,
        abs_error_log_z: estimates.iter().map(|e| (e - true_log_z).abs()).sum::<f64>() / n,
        n_runs: estimates.len(),
        n_skipped,
    }
}

/// Mean of the finite entries of `log_q` (e.g. log q at exact target samples or at the mode test set), with the
/// count of non-finite ones.
pub fn mean_log_q(log_q: &[f64]) -> Reduction {
    mean_std(log_q).0
}

/// Importance log weights `log p̃ − log q`, with non-finite inputs giving `NaN` (counted downstream).
pub fn log_weights(log_p: &[f64], log_q: &[f64]) -> Vec<f64> {
    assert_eq!(log_p.len(), log_q.len(), "log_weights: one log q per log p");
    log_p.iter().zip(log_q).map(|(p, q)| if p.is_finite() && q.is_finite() { p - q } else { f64::NAN }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn exact_weights_and_values_give_zero_bias() {
        // Every group estimates exactly 2.0 (values 1 and 3 with equal weight).
        let values: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 1.0 } else { 3.0 }).collect();
        let e = expectation_error(&[0.0; 40], &values, 4, 2.0);
        assert_eq!((e.bias_percent, e.std_percent, e.mae_percent, e.n_groups), (0.0, 0.0, 0.0, 10));
    }

    #[test]
    fn bias_std_and_mae_follow_their_definitions() {
        // Two groups with estimates 1.0 and 3.0 against truth 1.0: mean 2 → bias 100 %, std 1 → 100 %, MAE 100 %.
        let e = expectation_error(&[0.0, 0.0, 0.0, 0.0], &[1.0, 1.0, 3.0, 3.0], 2, 1.0);
        assert_relative_eq!(e.bias_percent, 100.0);
        assert_relative_eq!(e.std_percent, 100.0);
        assert_relative_eq!(e.mae_percent, 100.0);
        // Estimates 0.5 and 1.5 against truth 1: mean exact (bias 0) but MAE 50 %.
        let e = expectation_error(&[0.0; 4], &[0.5, 0.5, 1.5, 1.5], 2, 1.0);
        assert_relative_eq!(e.bias_percent, 0.0);
        assert_relative_eq!(e.mae_percent, 50.0);
        // A NaN value is skipped and counted.
        let e = expectation_error(&[0.0; 4], &[1.0, f64::NAN, 1.0, 1.0], 2, 1.0);
        assert_eq!((e.n_skipped, e.n_groups), (1, 2));
    }

    #[test]
    fn forward_ess_is_full_for_q_equal_p_and_reflects_missing_mass() {
        let log_p = [-1.0, -2.0, -3.0];
        assert_relative_eq!(forward_ess_percent(&log_p, &log_p).value, 100.0, max_relative = 1e-12);
        // q = p/2 everywhere the samples are: p/q = 2, forward ESS 50 %.
        let log_q: Vec<f64> = log_p.iter().map(|l| l - 2f64.ln()).collect();
        assert_relative_eq!(forward_ess_percent(&log_p, &log_q).value, 50.0, max_relative = 1e-12);
    }

    #[test]
    fn log_z_error_of_exact_weights_is_zero_and_runs_are_strided() {
        let e = log_z_error(&[1.5; 12], 3, 1.5);
        assert!(e.relative_error_z_percent < 1e-12 && e.abs_error_log_z < 1e-14 && e.n_runs == 3, "{e:?}");
        // Runs {0, 2} and {1, 3} of [ln 1, ln 3, ln 1, ln 3] estimate Z = 1 and Z = 3; truth Z = 1.
        let lw = [0.0, 3f64.ln(), 0.0, 3f64.ln()];
        let e = log_z_error(&lw, 2, 0.0);
        assert_relative_eq!(e.relative_error_z_percent, 100.0, max_relative = 1e-12);
        assert_relative_eq!(e.abs_error_log_z, 3f64.ln() / 2.0, max_relative = 1e-12);
    }

    #[test]
    fn log_weights_mark_invalid_points() {
        let w = log_weights(&[0.0, f64::NEG_INFINITY], &[1.0, 0.0]);
        assert_eq!(w[0], -1.0);
        assert!(w[1].is_nan());
        assert_eq!(mean_log_q(&[1.0, f64::NAN, 3.0]).value, 2.0);
    }
}
