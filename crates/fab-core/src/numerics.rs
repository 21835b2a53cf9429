//! Log-space reductions over importance weights: logsumexp, log-mean-exp, self-normalised weights and ESS.
//!
//! Every function skips non-finite entries (`NaN`, `±inf`) and reports how many it skipped: a `-inf`
//! log weight is a point outside the support, a `NaN` a failed evaluation; both are data to count,
//! never values to propagate.

use serde::{Deserialize, Serialize};

/// A reduction's value with how many entries went into it and how many were skipped as non-finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reduction {
    /// The reduced value; `-inf` (for log-sums) or `NaN` (for means) when no entry was finite.
    pub value: f64,
    /// Finite entries used.
    pub n_used: usize,
    /// Non-finite entries skipped.
    pub n_skipped: usize,
}

fn max_finite(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().filter(|x| x.is_finite()).fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
}

/// `log Σᵢ exp(xᵢ)` over the finite entries, computed stably around the maximum.
pub fn logsumexp(xs: &[f64]) -> Reduction {
    let n_used = xs.iter().filter(|x| x.is_finite()).count();
    let n_skipped = xs.len() - n_used;
    let Some(m) = max_finite(xs) else {
        return Reduction { value: f64::NEG_INFINITY, n_used, n_skipped };
    };
    let s: f64 = xs.iter().filter(|x| x.is_finite()).map(|&x| (x - m).exp()).sum();
    Reduction { value: m + s.ln(), n_used, n_skipped }
}

/// `log( (1/n) Σᵢ exp(xᵢ) )` over the `n` finite entries: the log of an importance-sampling estimate of Z.
pub fn log_mean_exp(xs: &[f64]) -> Reduction {
    let r = logsumexp(xs);
    if r.n_used == 0 {
        return r;
    }
    Reduction { value: r.value - (r.n_used as f64).ln(), ..r }
}

/// Self-normalised weights `w̄ᵢ = exp(log wᵢ) / Σⱼ exp(log wⱼ)`; non-finite entries get weight 0.
/// The second value counts them. All weights are 0 if no entry is finite.
pub fn normalized_weights(log_w: &[f64]) -> (Vec<f64>, Reduction) {
    let r = logsumexp(log_w);
    let w = log_w.iter().map(|&lw| if lw.is_finite() && r.n_used > 0 { (lw - r.value).exp() } else { 0.0 }).collect();
    (w, r)
}

/// Effective sample size in percent of *all* entries: `100 · (1/Σ w̄ᵢ²) / n`.
///
/// Non-finite entries count in `n` with weight 0, so wasted points lower the ESS instead of vanishing from it.
/// Equal weights give 100; one dominant weight gives `100/n`.
pub fn ess_percent(log_w: &[f64]) -> Reduction {
    let (w, r) = normalized_weights(log_w);
    if r.n_used == 0 {
        return Reduction { value: 0.0, ..r };
    }
    let sum_sq: f64 = w.iter().map(|w| w * w).sum();
    Reduction { value: 100.0 / sum_sq / log_w.len() as f64, ..r }
}

/// Self-normalised importance-sampling estimate `Σᵢ w̄ᵢ f(xᵢ)`; entries with a non-finite weight or value are skipped.
pub fn self_normalized_mean(log_w: &[f64], values: &[f64]) -> Reduction {
    assert_eq!(log_w.len(), values.len(), "self_normalized_mean: one weight per value");
    let masked: Vec<f64> =
        log_w.iter().zip(values).map(|(&lw, &v)| if v.is_finite() { lw } else { f64::NAN }).collect();
    let (w, r) = normalized_weights(&masked);
    let value = if r.n_used == 0 {
        f64::NAN
    } else {
        w.iter().zip(values).filter(|(w, _)| **w > 0.0).map(|(w, v)| w * v).sum()
    };
    Reduction { value, ..r }
}

/// Mean and (population) standard deviation of the finite entries.
pub fn mean_std(xs: &[f64]) -> (Reduction, f64) {
    let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = finite.len();
    let r = |value| Reduction { value, n_used: n, n_skipped: xs.len() - n };
    if n == 0 {
        return (r(f64::NAN), f64::NAN);
    }
    let mean = finite.iter().sum::<f64>() / n as f64;
    let var = finite.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    (r(mean), var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn logsumexp_is_stable_and_skips_non_finite() {
        let r = logsumexp(&[1000.0, 1000.0, f64::NAN, f64::NEG_INFINITY]);
        assert_relative_eq!(r.value, 1000.0 + 2f64.ln(), max_relative = 1e-15);
        assert_eq!((r.n_used, r.n_skipped), (2, 2));
        assert_eq!(logsumexp(&[f64::NAN]).value, f64::NEG_INFINITY);
        assert_eq!(logsumexp(&[]).value, f64::NEG_INFINITY);
    }

    #[test]
    fn log_mean_exp_divides_by_the_finite_count() {
        let r = log_mean_exp(&[0.0, 2f64.ln(), f64::INFINITY]);
        assert_relative_eq!(r.value, 1.5f64.ln(), max_relative = 1e-15);
        assert_eq!(r.n_skipped, 1);
    }

    #[test]
    fn equal_weights_give_full_ess_and_one_weight_gives_one_over_n() {
        assert_relative_eq!(ess_percent(&[3.0; 10]).value, 100.0, max_relative = 1e-12);
        let mut lw = vec![-1e6; 10];
        lw[3] = 0.0;
        assert_relative_eq!(ess_percent(&lw).value, 10.0, max_relative = 1e-12);
        // Two of four entries invalid: ESS = 2 points out of 4.
        assert_relative_eq!(ess_percent(&[0.0, 0.0, f64::NAN, f64::NEG_INFINITY]).value, 50.0, max_relative = 1e-12);
        assert_eq!(ess_percent(&[f64::NAN]).value, 0.0);
    }

    #[test]
    fn normalized_weights_sum_to_one() {
        let (w, r) = normalized_weights(&[0.1, -3.0, 7.0, f64::NAN]);
        assert_relative_eq!(w.iter().sum::<f64>(), 1.0, max_relative = 1e-14);
        assert_eq!(w[3], 0.0);
        assert_eq!(r.n_skipped, 1);
    }

    #[test]
    fn self_normalized_mean_weights_values() {
        let r = self_normalized_mean(&[0.0, 3f64.ln(), 0.0], &[1.0, 5.0, f64::NAN]);
        assert_relative_eq!(r.value, (1.0 + 15.0) / 4.0, max_relative = 1e-14);
        assert_eq!(r.n_skipped, 1);
    }

    #[test]
    fn mean_std_of_finite_entries() {
        let (m, s) = mean_std(&[1.0, 3.0, f64::NAN]);
        assert_eq!(m.value, 2.0);
        assert_eq!(s, 1.0);
        assert_eq!(m.n_skipped, 1);
    }
}
