//! Diagonal-covariance Gaussian mixtures: the 2021 five-mode MoG, the ICLR 40-mode GMM and general ones.

use crate::error::{TargetError, check_finite, check_len, check_positive};
use crate::gmm40_means::GMM40_MEANS;
use crate::quadratic::QuadraticFn;
use crate::target::{LN_2PI, Moments, Target, TestFunction};
use fab_core::{BatchMut, ExactSampler, LogDensity};
use rand::{Rng, RngCore};
use rand_distr::{Distribution, StandardNormal};

/// The float32 value of `softplus(1)`, the standard deviation of every ICLR GMM component (SPEC §1a-ii).
/// The reference target was built in float32 and then cast to float64, so this is the value it used.
pub const GMM40_STD: f64 = 1.31326162815094;
/// The per-axis standard deviation of fab-jax's `gmm_v1` (the DGFS 9-mode grid), as its code writes it:
/// `√0.3 = 0.54772256` rounded to 7 digits.
pub const GMM9_STD: f64 = 0.5477222;
/// `softplus(1) = ln(1 + e)` in float64. SPEC's ICLR unit-test log densities were computed with this std, not
/// with [`GMM40_STD`] (they differ by 6e-8 relative at the origin); [`DiagGmm::gmm40_with_std`] reproduces them.
pub const SOFTPLUS_ONE_F64: f64 = 1.3132616875182228;

/// A mixture `p(x) = Σ_k w_k Π_j N(x_j; μ_kj, σ_kj²)` with normalised weights `w_k`.
///
/// The density is normalised (`log_z = 0`). `log_prob` is a logsumexp over components computed in one pass
/// with a running maximum, so it stays exact far from every mode (no underflow to `-inf`), and the gradient
/// `Σ_k r_k(x) (μ_k − x)/σ_k²` with responsibilities `r_k` is accumulated in the same pass without scratch memory.
///
/// Unlike the ICLR reference, which sets `log p < −1e4` to `-inf` after evaluation, this density is never
/// clamped: the clamp only hides far-away points, and a finite value with a finite gradient is more useful
/// to samplers. Callers who want the reference behaviour can apply the threshold themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagGmm {
    name: String,
    dim: usize,
    /// Row-major `n_components × dim`.
    means: Vec<f64>,
    /// Row-major `n_components × dim`.
    stds: Vec<f64>,
    /// `1/σ_kj²`, row-major.
    inv_vars: Vec<f64>,
    /// Normalised mixture weights.
    weights: Vec<f64>,
    /// `ln w_k − Σ_j ln σ_kj − (dim/2) ln 2π`: the log density of component `k` at its mean, weighted.
    log_peak: Vec<f64>,
    /// The papers' quadratic test function of this mixture (the two presets), whose expectation is exact here.
    quadratic: Option<QuadraticFn>,
}

impl DiagGmm {
    /// A mixture from component means (`k` rows of length `d`), standard deviations (same shape) and positive,
    /// not necessarily normalised, weights (`k` entries). Named `"gmm"`; see [`DiagGmm::with_name`].
    pub fn new<M: AsRef<[f64]>, S: AsRef<[f64]>>(
        means: &[M],
        stds: &[S],
        weights: &[f64],
    ) -> Result<Self, TargetError> {
        let n_components = means.len();
        if n_components == 0 {
            return Err(TargetError::WrongLength {
                field: "means".into(),
                expected: "at least one component".into(),
                got: "0".into(),
            });
        }
        let dim = means[0].as_ref().len();
        if dim == 0 {
            return Err(TargetError::InvalidDimension { target: "DiagGmm", dim, reason: "must be at least 1" });
        }
        if stds.len() != n_components {
            return Err(TargetError::WrongLength {
                field: "stds".into(),
                expected: format!("{n_components} rows (one per mean)"),
                got: format!("{}", stds.len()),
            });
        }
        check_len("weights", weights, n_components)?;
        check_positive("weights", weights)?;
        for (k, (mean, std)) in means.iter().zip(stds).enumerate() {
            check_len(&format!("means[{k}]"), mean.as_ref(), dim)?;
            check_finite(&format!("means[{k}]"), mean.as_ref())?;
            check_len(&format!("stds[{k}]"), std.as_ref(), dim)?;
            check_positive(&format!("stds[{k}]"), std.as_ref())?;
        }
        let total_weight: f64 = weights.iter().sum();
        if !total_weight.is_finite() {
            return Err(TargetError::NotFinite { field: "weights (sum)".into(), value: total_weight });
        }
        let weights: Vec<f64> = weights.iter().map(|w| w / total_weight).collect();
        let means: Vec<f64> = means.iter().flat_map(|m| m.as_ref().iter().copied()).collect();
        let stds: Vec<f64> = stds.iter().flat_map(|s| s.as_ref().iter().copied()).collect();
        let inv_vars = stds.iter().map(|s| 1.0 / (s * s)).collect();
        let log_peak = weights
            .iter()
            .zip(stds.chunks_exact(dim))
            .map(|(w, s)| w.ln() - s.iter().map(|s| s.ln()).sum::<f64>() - 0.5 * dim as f64 * LN_2PI)
            .collect();
        Ok(Self { name: "gmm".into(), dim, means, stds, inv_vars, weights, log_peak, quadratic: None })
    }

    /// Renames the mixture (the name is what [`Target::name`] reports).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Declares `f` as this mixture's test function ([`Target::test_function`]; its expectation is exact).
    pub fn with_quadratic(mut self, f: QuadraticFn) -> Self {
        self.quadratic = Some(f);
        self
    }

    /// The 2021 workshop mixture of 5 Gaussians in 2-D (SPEC §1a-i; torch `manual_seed(2)` draws in float64).
    pub fn mog5_2021() -> Self {
        let means = [
            [3.9229682477920975, -2.2356401839813858],
            [10.444635443343405, -6.332277352132833],
            [-3.91905858634541, -10.426788307393725],
            [-13.264806766986034, -12.41297177880561],
            [6.181049082544088, -2.384750161391176],
        ];
        let stds = [
            [1.7087511767056518, 1.5402614997621042],
            [1.1204069608987282, 1.2669473266365738],
            [1.082090767968522, 1.683001367104528],
            [1.73283945071899, 1.3663822453012855],
            [1.757934177868187, 1.1139249656831778],
        ];
        // The raw `cat_probs`; `Categorical` normalised them, and so does `new`.
        let cat_probs =
            [0.7439900860873985, 0.7067595900863742, 0.7945342617956747, 0.6953273686061083, 0.4236223670433845];
        Self::new(&means, &stds, &cat_probs)
            .expect("the 2021 MoG constants are valid")
            .with_name("mog5_2021")
            .with_quadratic(QuadraticFn::mog5_2021())
    }

    /// The ICLR 2023 40-mode GMM in 2-D (SPEC §1a-ii): float32 means in `[-40, 40]²`, every std the float32
    /// `softplus(1)`, uniform weights.
    pub fn gmm40_iclr() -> Self {
        Self::gmm40_with_std(GMM40_STD)
            .expect("the ICLR GMM constants are valid")
            .with_name("gmm40_iclr")
            .with_quadratic(QuadraticFn::gmm40_iclr())
    }

    /// The 40 ICLR means with uniform weights and a common std `std` in every coordinate (e.g.
    /// [`SOFTPLUS_ONE_F64`] to reproduce SPEC's float64 unit-test values). Named `"gmm40"`.
    pub fn gmm40_with_std(std: f64) -> Result<Self, TargetError> {
        let stds = [[std; 2]; 40];
        Ok(Self::new(&GMM40_MEANS, &stds, &[1.0; 40])?.with_name("gmm40"))
    }

    /// fab-jax's `gmm_v1` (from DGFS): 9 equally weighted modes on the grid `{−5, 0, 5}²`, every std
    /// [`GMM9_STD`] ≈ √0.3. Normalised (`log Z = 0`). Named `"gmm9_v1"`.
    pub fn gmm9_v1() -> Self {
        let grid = [-5.0, 0.0, 5.0];
        let means: Vec<[f64; 2]> = grid.iter().flat_map(|&a| grid.iter().map(move |&b| [a, b])).collect();
        Self::new(&means, &[[GMM9_STD; 2]; 9], &[1.0; 9]).expect("the gmm_v1 constants are valid").with_name("gmm9_v1")
    }

    /// Number of mixture components.
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// Mean of component `k`.
    pub fn component_mean(&self, k: usize) -> &[f64] {
        &self.means[k * self.dim..(k + 1) * self.dim]
    }

    /// Standard deviations of component `k`.
    pub fn component_std(&self, k: usize) -> &[f64] {
        &self.stds[k * self.dim..(k + 1) * self.dim]
    }

    /// The normalised mixture weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// `ln w_k + ln N(x; μ_k, diag σ_k²)`.
    #[inline]
    fn weighted_component_log_density(&self, k: usize, x: &[f64]) -> f64 {
        let mu = self.component_mean(k);
        let inv_var = &self.inv_vars[k * self.dim..(k + 1) * self.dim];
        let quad: f64 = x.iter().zip(mu).zip(inv_var).map(|((x, m), iv)| (x - m) * (x - m) * iv).sum();
        self.log_peak[k] - 0.5 * quad
    }

    /// `log p(x)` by a one-pass logsumexp with a running maximum `m` and running sum `s = Σ exp(l_k − m)`.
    #[inline]
    fn log_p(&self, x: &[f64]) -> f64 {
        let mut running_max = f64::NEG_INFINITY;
        let mut running_sum = 0.0;
        for k in 0..self.n_components() {
            let l = self.weighted_component_log_density(k, x);
            if l > running_max {
                running_sum = running_sum * (running_max - l).exp() + 1.0;
                running_max = l;
            } else {
                running_sum += (l - running_max).exp();
            }
        }
        running_max + running_sum.ln()
    }

    /// `log p(x)` and `∇ log p(x) = Σ_k r_k (μ_k − x)/σ_k²`, accumulated with the same running-maximum rescaling
    /// as [`Self::log_p`] so responsibilities never underflow together.
    #[inline]
    fn log_p_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        let mut running_max = f64::NEG_INFINITY;
        let mut running_sum = 0.0;
        for k in 0..self.n_components() {
            let l = self.weighted_component_log_density(k, x);
            let scale_old;
            let scale_new;
            if l > running_max {
                scale_old = (running_max - l).exp();
                scale_new = 1.0;
                running_max = l;
            } else {
                scale_old = 1.0;
                scale_new = (l - running_max).exp();
            }
            running_sum = running_sum * scale_old + scale_new;
            let mu = self.component_mean(k);
            let inv_var = &self.inv_vars[k * self.dim..(k + 1) * self.dim];
            for (((g, x), m), iv) in grad.iter_mut().zip(x).zip(mu).zip(inv_var) {
                *g = *g * scale_old + scale_new * (m - x) * iv;
            }
        }
        grad.iter_mut().for_each(|g| *g /= running_sum);
        running_max + running_sum.ln()
    }

    /// Index of the component whose cumulative weight first exceeds `u ∈ [0, 1)`.
    fn component_for_uniform(&self, u: f64) -> usize {
        let mut cumulative = 0.0;
        for (k, w) in self.weights.iter().enumerate() {
            cumulative += w;
            if u < cumulative {
                return k;
            }
        }
        // Rounding can leave the total a hair below 1.
        self.n_components() - 1
    }

    /// Exact mixture moments: `E x = Σ w_k μ_k`, `Var = Σ w_k (σ_k² + δ_k²)`, `μ₄ = Σ w_k (δ⁴ + 6δ²σ² + 3σ⁴)`
    /// with `δ_k = μ_k − E x`.
    fn mixture_moments(&self) -> Moments {
        let d = self.dim;
        let mut mean = vec![0.0; d];
        for k in 0..self.n_components() {
            for (m, mu) in mean.iter_mut().zip(self.component_mean(k)) {
                *m += self.weights[k] * mu;
            }
        }
        let mut variance = vec![0.0; d];
        let mut fourth_central = vec![0.0; d];
        for k in 0..self.n_components() {
            let w = self.weights[k];
            for j in 0..d {
                let delta = self.component_mean(k)[j] - mean[j];
                let var = self.component_std(k)[j].powi(2);
                variance[j] += w * (var + delta * delta);
                fourth_central[j] += w * (delta.powi(4) + 6.0 * delta * delta * var + 3.0 * var * var);
            }
        }
        Moments { mean, variance, fourth_central }
    }
}

impl LogDensity for DiagGmm {
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

impl ExactSampler for DiagGmm {
    /// Ancestral sampling: a component `k ~ Categorical(w)`, then `x = μ_k + σ_k ⊙ z` with `z ~ N(0, I)`.
    fn sample_exact_into(&self, rng: &mut dyn RngCore, mut out: BatchMut<'_>) {
        assert_eq!(out.dim(), self.dim, "sample_exact_into: output dimension");
        for row in out.rows_mut() {
            let k = self.component_for_uniform(rng.random::<f64>());
            for ((x, mu), sigma) in row.iter_mut().zip(self.component_mean(k)).zip(self.component_std(k)) {
                let z: f64 = StandardNormal.sample(rng);
                *x = mu + sigma * z;
            }
        }
    }
}

impl Target for DiagGmm {
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
        Some(self.mixture_moments())
    }

    fn test_function(&self) -> Option<TestFunction> {
        let f = self.quadratic.clone()?;
        let expectation = f.expectation_under(self);
        Some(TestFunction::new(move |x| f.value(x), expectation))
    }
}
