//! Neal's funnel: `v ~ N(0, 3²)`, `x_i | v ~ N(0, e^v)` for `i = 1..dim−1`; normalised, with an exact sampler.

use crate::error::TargetError;
use crate::target::{LN_2PI, Moments, Target};
use fab_core::{BatchMut, ExactSampler, LogDensity};
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};

/// Standard deviation of the funnel's "neck" coordinate `v` (the first coordinate).
pub const FUNNEL_V_STD: f64 = 3.0;

/// Neal's funnel on `R^dim`, coordinate 0 is `v`, the rest are the `x_i`.
///
/// `log p(v, x) = −v²/18 − ln 3 − (dim/2) ln 2π − (dim−1) v/2 − ½ e^{−v} Σ x_i²` (normalised).
#[derive(Debug, Clone, PartialEq)]
pub struct Funnel {
    name: String,
    dim: usize,
}

impl Funnel {
    /// The funnel in `dim ≥ 2` dimensions (fab-jax uses 10).
    pub fn new(dim: usize) -> Result<Self, TargetError> {
        if dim < 2 {
            return Err(TargetError::InvalidDimension { target: "Funnel", dim, reason: "must be at least 2" });
        }
        Ok(Self { name: format!("funnel_{dim}"), dim })
    }

    /// The part of `log p` that does not depend on the point.
    fn log_normaliser(&self) -> f64 {
        -FUNNEL_V_STD.ln() - 0.5 * self.dim as f64 * LN_2PI
    }

    #[inline]
    fn log_p(&self, x: &[f64]) -> f64 {
        let v = x[0];
        let n_x = (self.dim - 1) as f64;
        let sum_sq: f64 = x[1..].iter().map(|xi| xi * xi).sum();
        let var_v = FUNNEL_V_STD * FUNNEL_V_STD;
        self.log_normaliser() - 0.5 * v * v / var_v - 0.5 * n_x * v - 0.5 * (-v).exp() * sum_sq
    }

    /// Gradient: `∂/∂v = −v/9 − (dim−1)/2 + ½ e^{−v} Σ x_i²`, `∂/∂x_i = −x_i e^{−v}`.
    #[inline]
    fn log_p_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let v = x[0];
        let n_x = (self.dim - 1) as f64;
        let precision_x = (-v).exp();
        let sum_sq: f64 = x[1..].iter().map(|xi| xi * xi).sum();
        let var_v = FUNNEL_V_STD * FUNNEL_V_STD;
        grad[0] = -v / var_v - 0.5 * n_x + 0.5 * precision_x * sum_sq;
        for (g, xi) in grad[1..].iter_mut().zip(&x[1..]) {
            *g = -xi * precision_x;
        }
        self.log_normaliser() - 0.5 * v * v / var_v - 0.5 * n_x * v - 0.5 * precision_x * sum_sq
    }
}

impl LogDensity for Funnel {
    fn dim(&self) -> usize {
        self.dim
    }

    fn log_prob(&self, x: &[f64]) -> f64 {
        debug_assert_eq!(x.len(), self.dim);
        self.log_p(x)
    }

    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        debug_assert_eq!(x.len(), self.dim);
        self.log_p_and_grad(x, grad)
    }
}

impl ExactSampler for Funnel {
    /// `v = 3 z_0`, then `x_i = e^{v/2} z_i`.
    fn sample_exact_into(&self, rng: &mut dyn RngCore, mut out: BatchMut<'_>) {
        assert_eq!(out.dim(), self.dim, "sample_exact_into: output dimension");
        for row in out.rows_mut() {
            let z0: f64 = StandardNormal.sample(rng);
            let v = FUNNEL_V_STD * z0;
            row[0] = v;
            let std_x = (0.5 * v).exp();
            for xi in row[1..].iter_mut() {
                let z: f64 = StandardNormal.sample(rng);
                *xi = std_x * z;
            }
        }
    }
}

impl Target for Funnel {
    fn exact_sampler(&self) -> Option<&dyn ExactSampler> {
        Some(self)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn log_z(&self) -> Option<f64> {
        Some(0.0)
    }

    /// `v`: mean 0, variance 9, `μ₄ = 3·81`. `x_i`: mean 0, variance `E[e^v] = e^{9/2}`,
    /// `μ₄ = 3 E[e^{2v}] = 3 e^{18}` (log-normal moments of `e^v` with `v ~ N(0, 9)`).
    fn moments(&self) -> Option<Moments> {
        let var_v = FUNNEL_V_STD * FUNNEL_V_STD;
        let mut variance = vec![(0.5 * var_v).exp(); self.dim];
        let mut fourth_central = vec![3.0 * (2.0 * var_v).exp(); self.dim];
        variance[0] = var_v;
        fourth_central[0] = 3.0 * var_v * var_v;
        Some(Moments { mean: vec![0.0; self.dim], variance, fourth_central })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadrature::simpson;

    /// The 2-D funnel integrates to 1: for each `v` the inner integral over `x` runs over ±12 conditional stds,
    /// so the narrow neck is resolved as well as the wide mouth; `v` runs over ±10 of its stds.
    #[test]
    fn two_dimensional_funnel_integrates_to_one() {
        let funnel = Funnel::new(2).unwrap();
        let inner = |v: f64| {
            let half_width = 12.0 * (0.5 * v).exp();
            simpson(|x| funnel.log_prob(&[v, x]).exp(), -half_width, half_width, 400)
        };
        let total = simpson(inner, -30.0, 30.0, 2000);
        assert!((total - 1.0).abs() < 1e-9, "∫ p = {total}");
    }

    #[test]
    fn density_is_the_product_of_the_conditionals() {
        let funnel = Funnel::new(3).unwrap();
        let normal = |x: f64, var: f64| -0.5 * x * x / var - 0.5 * (LN_2PI + var.ln());
        let (v, x1, x2) = (1.3, -2.0, 0.7);
        let expected = normal(v, 9.0) + normal(x1, v.exp()) + normal(x2, v.exp());
        assert!((funnel.log_prob(&[v, x1, x2]) - expected).abs() < 1e-13);
    }
}
