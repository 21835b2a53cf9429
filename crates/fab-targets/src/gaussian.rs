//! A normalised diagonal Gaussian: a simple target, and an analytic proposal for testing AIS.

use crate::error::{TargetError, check_finite, check_len, check_positive};
use crate::target::{LN_2PI, Moments, Target};
use fab_core::{BatchMut, ExactSampler, LogDensity, Proposal};
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};

/// `N(μ, diag σ²)` on `R^dim`, normalised: `log p(x) = −½ Σ_j ((x_j − μ_j)/σ_j)² − Σ_j ln σ_j − (dim/2) ln 2π`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagGaussian {
    name: String,
    means: Vec<f64>,
    stds: Vec<f64>,
    inv_vars: Vec<f64>,
    /// `−Σ_j ln σ_j − (dim/2) ln 2π`, the log density at the mean.
    log_peak: f64,
}

impl DiagGaussian {
    /// A Gaussian with the given means and standard deviations (same length ≥ 1, finite, stds > 0).
    /// Named `"diag_gaussian"`; see [`DiagGaussian::with_name`].
    pub fn new(means: Vec<f64>, stds: Vec<f64>) -> Result<Self, TargetError> {
        let dim = means.len();
        if dim == 0 {
            return Err(TargetError::InvalidDimension { target: "DiagGaussian", dim, reason: "must be at least 1" });
        }
        check_finite("means", &means)?;
        check_len("stds", &stds, dim)?;
        check_positive("stds", &stds)?;
        let inv_vars = stds.iter().map(|s| 1.0 / (s * s)).collect();
        let log_peak = -stds.iter().map(|s| s.ln()).sum::<f64>() - 0.5 * dim as f64 * LN_2PI;
        Ok(Self { name: "diag_gaussian".into(), means, stds, inv_vars, log_peak })
    }

    /// The standard normal `N(0, I)` on `R^dim`.
    ///
    /// # Panics
    /// If `dim == 0`.
    pub fn standard(dim: usize) -> Self {
        assert!(dim > 0, "DiagGaussian::standard: dimension must be at least 1");
        Self::new(vec![0.0; dim], vec![1.0; dim])
            .expect("unit Gaussian is valid")
            .with_name(format!("std_normal_{dim}"))
    }

    /// Renames the Gaussian (the name is what [`Target::name`] reports).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The means `μ`.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// The standard deviations `σ`.
    pub fn stds(&self) -> &[f64] {
        &self.stds
    }

    #[inline]
    fn log_q(&self, x: &[f64]) -> f64 {
        let quad: f64 = x.iter().zip(&self.means).zip(&self.inv_vars).map(|((x, m), iv)| (x - m) * (x - m) * iv).sum();
        self.log_peak - 0.5 * quad
    }

    #[inline]
    fn log_q_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        for (((g, x), m), iv) in grad.iter_mut().zip(x).zip(&self.means).zip(&self.inv_vars) {
            *g = (m - x) * iv;
        }
        self.log_q(x)
    }

    /// Draws `x = μ + σ ⊙ z` and returns `log q(x)` computed from `z` (`−½‖z‖² + log_peak`), which is exact
    /// and cheaper than re-evaluating the density.
    fn draw_into(&self, rng: &mut dyn RngCore, row: &mut [f64]) -> f64 {
        let mut half_sq_norm = 0.0;
        for ((x, m), s) in row.iter_mut().zip(&self.means).zip(&self.stds) {
            let z: f64 = StandardNormal.sample(rng);
            half_sq_norm += 0.5 * z * z;
            *x = m + s * z;
        }
        self.log_peak - half_sq_norm
    }
}

impl LogDensity for DiagGaussian {
    fn dim(&self) -> usize {
        self.means.len()
    }

    fn log_prob(&self, x: &[f64]) -> f64 {
        debug_assert_eq!(x.len(), self.means.len());
        self.log_q(x)
    }

    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        debug_assert_eq!(x.len(), self.means.len());
        self.log_q_and_grad(x, grad)
    }
}

impl Proposal for DiagGaussian {
    fn sample_into(&self, rng: &mut dyn RngCore, mut out: BatchMut<'_>, log_q: &mut [f64]) {
        assert_eq!(out.dim(), self.dim(), "sample_into: output dimension");
        assert_eq!(out.n_rows(), log_q.len(), "sample_into: one log q per row");
        for (row, lq) in out.rows_mut().zip(log_q.iter_mut()) {
            *lq = self.draw_into(rng, row);
        }
    }
}

impl ExactSampler for DiagGaussian {
    fn sample_exact_into(&self, rng: &mut dyn RngCore, mut out: BatchMut<'_>) {
        assert_eq!(out.dim(), self.dim(), "sample_exact_into: output dimension");
        for row in out.rows_mut() {
            self.draw_into(rng, row);
        }
    }
}

impl Target for DiagGaussian {
    fn exact_sampler(&self) -> Option<&dyn ExactSampler> {
        Some(self)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn log_z(&self) -> Option<f64> {
        Some(0.0)
    }

    fn moments(&self) -> Option<Moments> {
        Some(Moments {
            mean: self.means.clone(),
            variance: self.stds.iter().map(|s| s * s).collect(),
            fourth_central: self.stds.iter().map(|s| 3.0 * s.powi(4)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fab_core::stream_rng;

    #[test]
    fn proposal_log_q_is_the_normalised_density_of_the_draw() {
        let q = DiagGaussian::new(vec![1.0, -2.0, 0.0], vec![0.3, 2.0, 1.0]).unwrap();
        let (xs, log_q) = q.sample(&mut stream_rng(1, 0), 64);
        for (x, lq) in xs.rows().zip(&log_q) {
            let direct = q.log_prob(x);
            assert!((direct - lq).abs() <= 1e-12 * direct.abs().max(1.0), "{lq} vs {direct}");
        }
    }

    #[test]
    fn density_matches_the_product_of_univariate_normals() {
        let q = DiagGaussian::new(vec![1.0, -2.0], vec![0.5, 3.0]).unwrap();
        let x = [0.2, 1.0];
        let univariate = |x: f64, m: f64, s: f64| -0.5 * ((x - m) / s).powi(2) - s.ln() - 0.5 * LN_2PI;
        let expected = univariate(0.2, 1.0, 0.5) + univariate(1.0, -2.0, 3.0);
        assert!((q.log_prob(&x) - expected).abs() < 1e-14);
        assert_eq!(DiagGaussian::standard(3).log_prob(&[0.0; 3]), -1.5 * LN_2PI);
    }
}
