//! Test densities with known moments, an exact 1-D mixture sampler with its CDF, and a Kolmogorov–Smirnov statistic.
#![allow(dead_code)]

use fab_core::{Batch, LogDensity, stream_rng};
use rand::Rng;
use rand_distr::StandardNormal;

/// A normalised Gaussian with diagonal covariance.
pub struct DiagGauss {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl DiagGauss {
    pub fn standard(dim: usize) -> Self {
        Self { mean: vec![0.0; dim], std: vec![1.0; dim] }
    }
    /// `n` exact draws.
    pub fn draws(&self, n: usize, seed: u64) -> Batch {
        let mut rng = stream_rng(seed, 0);
        let mut b = Batch::zeros(n, self.mean.len());
        for row in b.as_mut_slice().chunks_exact_mut(self.mean.len()) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = m + s * rng.sample::<f64, _>(StandardNormal);
            }
        }
        b
    }
}

impl LogDensity for DiagGauss {
    fn dim(&self) -> usize {
        self.mean.len()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        let mut g = vec![0.0; x.len()];
        self.log_prob_and_grad(x, &mut g)
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut lp = 0.0;
        for d in 0..x.len() {
            let z = (x[d] - self.mean[d]) / self.std[d];
            lp += -0.5 * z * z - self.std[d].ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
            grad[d] = -z / self.std[d];
        }
        lp
    }
}

/// `x₀ ~ N(0, 1)`, `x₁ | x₀ ~ N(x₀², ½²)` (unnormalised).
pub struct Banana;

impl Banana {
    pub fn draws(n: usize, seed: u64) -> Batch {
        let mut rng = stream_rng(seed, 0);
        let mut b = Batch::zeros(n, 2);
        for row in b.as_mut_slice().chunks_exact_mut(2) {
            row[0] = rng.sample::<f64, _>(StandardNormal);
            row[1] = row[0] * row[0] + 0.5 * rng.sample::<f64, _>(StandardNormal);
        }
        b
    }
}

impl LogDensity for Banana {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0; 2])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let b = x[1] - x[0] * x[0];
        g[0] = -x[0] + 8.0 * x[0] * b;
        g[1] = -4.0 * b;
        -0.5 * x[0] * x[0] - 2.0 * b * b
    }
}

/// A density that returns `bad` (NaN or −∞) wherever `x₀ > limit`, and a standard Gaussian elsewhere.
pub struct Holed {
    pub limit: f64,
    pub bad: f64,
}

impl LogDensity for Holed {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0; 2])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        if x[0] > self.limit {
            g.fill(f64::NAN);
            return self.bad;
        }
        g[0] = -x[0];
        g[1] = -x[1];
        -0.5 * (x[0] * x[0] + x[1] * x[1])
    }
}

/// A 1-D Gaussian mixture, sampled exactly, with its CDF.
pub struct Mixture1d {
    pub weights: Vec<f64>,
    pub means: Vec<f64>,
    pub stds: Vec<f64>,
}

impl Mixture1d {
    pub fn two_modes() -> Self {
        Self { weights: vec![0.3, 0.7], means: vec![-2.0, 1.5], stds: vec![0.5, 1.0] }
    }
    pub fn cdf(&self, x: f64) -> f64 {
        self.weights.iter().zip(&self.means).zip(&self.stds).map(|((w, m), s)| w * normal_cdf((x - m) / s)).sum()
    }
    pub fn draws(&self, n: usize, seed: u64) -> Batch {
        let mut rng = stream_rng(seed, 0);
        let mut b = Batch::zeros(n, 1);
        for x in b.as_mut_slice() {
            let u: f64 = rng.random();
            let k = if u < self.weights[0] { 0 } else { 1 };
            *x = self.means[k] + self.stds[k] * rng.sample::<f64, _>(StandardNormal);
        }
        b
    }
}

impl LogDensity for Mixture1d {
    fn dim(&self) -> usize {
        1
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        // Densities of the components, then d/dx log Σ = Σ pₖ·(−(x−mₖ)/sₖ²) / Σ pₖ.
        let comps: Vec<(f64, f64)> = self
            .weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .map(|((w, m), s)| {
                let z = (x[0] - m) / s;
                (w / s * (-0.5 * z * z).exp(), -z / s)
            })
            .collect();
        let total: f64 = comps.iter().map(|c| c.0).sum();
        g[0] = comps.iter().map(|c| c.0 * c.1).sum::<f64>() / total;
        total.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
    }
}

/// `erfc` with fractional error below 1.2e-7 (Chebyshev fit, Numerical Recipes §6.2).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Kolmogorov–Smirnov statistic `sup |Fₙ − F|` of `xs` against `cdf`.
pub fn ks_statistic(xs: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// KS critical value at level 0.001 for `n` samples (asymptotic).
pub fn ks_critical_001(n: usize) -> f64 {
    1.949 / (n as f64).sqrt()
}
