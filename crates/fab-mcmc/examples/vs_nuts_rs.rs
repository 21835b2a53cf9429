//! Side-by-side benchmark of fab-mcmc's default NUTS against nuts-rs: same densities, chains, warm-up and draws;
//! bulk ESS (minimum over coordinates, one estimator for both) per gradient evaluation and per second.
//!
//! Run with `cargo run --release -p fab-mcmc --example vs_nuts_rs` (release: nuts-rs and its dependencies are
//! not optimised in the dev profile). Prints a markdown table for 1 and for 2 threads.

use fab_core::{Batch, LogDensity, stream_rng};
use fab_mcmc::{Sampler, ess_bulk};
use nuts_rs::rand::SeedableRng;
use nuts_rs::{Chain, CpuLogpFunc, CpuMath, DiagNutsSettings, HasDims, LogpError, Settings};
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

const N_CHAINS: usize = 4;
const N_WARMUP: usize = 1000;
const N_DRAWS: usize = 1000;

/// The benchmark densities; each evaluates `log p` and its gradient at one point.
#[derive(Debug, Clone)]
enum Density {
    /// `N(0, diag(v))`, variances log-spaced over four orders of magnitude.
    DiagGaussian { var: Vec<f64> },
    /// `N(0, Σ)` with dense precision `P = Σ⁻¹` (row-major).
    DenseGaussian { dim: usize, precision: Vec<f64> },
    /// Neal's funnel in its non-centred form: `(ṽ, z)` with `v = 3ṽ`, `xᵢ = e^{v/2} zᵢ`; the density of `(ṽ, z)`
    /// is the funnel's at `(v, x)` times the Jacobian `3·e^{(d−1)v/2}` (a standard normal, computed the long way).
    NonCentredFunnel { dim: usize },
    /// Bayesian logistic regression, `β ~ N(0, I)`, `yᵢ ~ Bernoulli(σ(xᵢ·β))`.
    Logistic { n: usize, dim: usize, x: Vec<f64>, y: Vec<f64> },
    /// `x₀ ~ N(0, 1)`, `x₁ | x₀ ~ N(x₀², ½²)`.
    Banana,
}

impl Density {
    fn dim(&self) -> usize {
        match self {
            Density::DiagGaussian { var } => var.len(),
            Density::DenseGaussian { dim, .. } | Density::NonCentredFunnel { dim } | Density::Logistic { dim, .. } => {
                *dim
            }
            Density::Banana => 2,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Density::DiagGaussian { .. } => "(a) 100-D Gaussian, variances 10⁻²…10²",
            Density::DenseGaussian { .. } => "(b) 50-D correlated Gaussian",
            Density::NonCentredFunnel { .. } => "(c) 10-D funnel, non-centred",
            Density::Logistic { .. } => "(d) logistic regression 500×25",
            Density::Banana => "(e) 2-D banana",
        }
    }

    fn logp_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        match self {
            Density::DiagGaussian { var } => {
                let mut lp = 0.0;
                for ((gd, xd), v) in g.iter_mut().zip(x).zip(var) {
                    *gd = -xd / v;
                    lp += 0.5 * xd * *gd;
                }
                lp
            }
            Density::DenseGaussian { dim, precision } => {
                for (gd, row) in g.iter_mut().zip(precision.chunks_exact(*dim)) {
                    *gd = -row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
                }
                0.5 * g.iter().zip(x).map(|(a, b)| a * b).sum::<f64>()
            }
            Density::NonCentredFunnel { dim } => {
                // v = 3ṽ; xᵢ = e^{v/2} zᵢ. log p(v, x) = −v²/18 − (d−1)v/2 − ½e^{−v}Σxᵢ²; log|J| = (d−1)v/2 + ln 3.
                let v = 3.0 * x[0];
                let scale = (0.5 * v).exp();
                let sum_x2: f64 = x[1..].iter().map(|z| (scale * z) * (scale * z)).sum();
                let k = (*dim - 1) as f64;
                let lp = -v * v / 18.0 - 0.5 * k * v - 0.5 * (-v).exp() * sum_x2 + 0.5 * k * v;
                // d/dṽ: 3·(−v/9 − ½ ∂/∂v[e^{−v}Σ(e^{v/2}z)²] ) and the e^{−v}e^{v} cancel: ∂/∂v of that term is 0.
                g[0] = 3.0 * (-v / 9.0);
                for (gd, z) in g[1..].iter_mut().zip(&x[1..]) {
                    *gd = -(-v).exp() * scale * scale * z;
                }
                lp
            }
            Density::Logistic { n, dim, x: data, y } => {
                let mut lp = -0.5 * x.iter().map(|b| b * b).sum::<f64>();
                for (gd, b) in g.iter_mut().zip(x) {
                    *gd = -b;
                }
                for i in 0..*n {
                    let row = &data[i * dim..(i + 1) * dim];
                    let eta: f64 = row.iter().zip(x).map(|(a, b)| a * b).sum();
                    // log σ(η) = −log(1 + e^{−η}); log(1 − σ(η)) = −η − log(1 + e^{−η}).
                    let log1p_exp_neg = if eta > 0.0 { (-eta).exp().ln_1p() } else { -eta + eta.exp().ln_1p() };
                    lp += y[i] * -log1p_exp_neg + (1.0 - y[i]) * (-eta - log1p_exp_neg);
                    let resid = y[i] - 1.0 / (1.0 + (-eta).exp());
                    for (gd, a) in g.iter_mut().zip(row) {
                        *gd += resid * a;
                    }
                }
                lp
            }
            Density::Banana => {
                let b = x[1] - x[0] * x[0];
                g[0] = -x[0] + 8.0 * x[0] * b;
                g[1] = -4.0 * b;
                -0.5 * x[0] * x[0] - 2.0 * b * b
            }
        }
    }
}

/// The five densities of the comparison, built from fixed seeds.
fn densities() -> Vec<Density> {
    let diag = Density::DiagGaussian { var: (0..100).map(|i| 10f64.powf(-2.0 + 4.0 * i as f64 / 99.0)).collect() };
    vec![diag, dense_gaussian(50, 1), Density::NonCentredFunnel { dim: 10 }, logistic(500, 25, 2), Density::Banana]
}

/// `Σ = Q diag(λ) Qᵀ` with `Q` a random rotation (Gram–Schmidt) and `λ` log-spaced in `[0.1, 10]`.
fn dense_gaussian(dim: usize, seed: u64) -> Density {
    let mut rng = stream_rng(seed, 0);
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < dim {
        let mut v: Vec<f64> = (0..dim).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        for u in &q {
            let c: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= c * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.iter().map(|a| a / norm).collect());
    }
    let lambda: Vec<f64> = (0..dim).map(|k| 10f64.powf(-1.0 + 2.0 * k as f64 / (dim - 1) as f64)).collect();
    let mut precision = vec![0.0; dim * dim];
    for i in 0..dim {
        for j in 0..dim {
            precision[i * dim + j] = (0..dim).map(|k| q[k][i] * q[k][j] / lambda[k]).sum();
        }
    }
    Density::DenseGaussian { dim, precision }
}

/// `n` rows of standard-normal covariates (first column 1, an intercept) and labels drawn from a true `β`.
fn logistic(n: usize, dim: usize, seed: u64) -> Density {
    let mut rng = stream_rng(seed, 0);
    let beta: Vec<f64> = (0..dim).map(|_| 0.5 * rng.sample::<f64, _>(StandardNormal)).collect();
    let mut x = Vec::with_capacity(n * dim);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..dim).map(|j| if j == 0 { 1.0 } else { rng.sample::<f64, _>(StandardNormal) }).collect();
        let eta: f64 = row.iter().zip(&beta).map(|(a, b)| a * b).sum();
        y.push(if rng.random::<f64>() < 1.0 / (1.0 + (-eta).exp()) { 1.0 } else { 0.0 });
        x.extend(row);
    }
    Density::Logistic { n, dim, x, y }
}

/// fab's view of a density.
struct Fab<'a>(&'a Density);

impl LogDensity for Fab<'_> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.0.logp_grad(x, &mut vec![0.0; x.len()])
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.0.logp_grad(x, grad)
    }
}

/// fab's view with an evaluation counter (for the counting rerun: results are bitwise those of the timed run).
struct FabCounted<'a>(&'a Density, std::sync::atomic::AtomicU64);

impl LogDensity for FabCounted<'_> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut vec![0.0; x.len()])
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.logp_grad(x, grad)
    }
}

/// nuts-rs's view of a density: one per chain, counting its gradient evaluations.
#[derive(Debug)]
struct NutsModel {
    density: Arc<Density>,
    /// This chain's own counter (not shared between chains, so no contention).
    n_grad: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("non-finite log density")]
struct NonFinite;

impl LogpError for NonFinite {
    fn is_recoverable(&self) -> bool {
        true
    }
}

impl HasDims for NutsModel {
    fn dim_sizes(&self) -> HashMap<String, u64> {
        [("unconstrained_parameter".to_string(), self.density.dim() as u64)].into_iter().collect()
    }
}

impl CpuLogpFunc for NutsModel {
    type LogpError = NonFinite;
    type FlowParameters = ();
    type ExpandedVector = Vec<f64>;

    fn dim(&self) -> usize {
        self.density.dim()
    }
    fn logp(&mut self, position: &[f64], gradient: &mut [f64]) -> Result<f64, Self::LogpError> {
        self.n_grad.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lp = self.density.logp_grad(position, gradient);
        if lp.is_finite() { Ok(lp) } else { Err(NonFinite) }
    }
    fn expand_vector<R: nuts_rs::rand::Rng + ?Sized>(
        &mut self,
        _rng: &mut R,
        position: &[f64],
    ) -> Result<Vec<f64>, nuts_rs::CpuMathError> {
        Ok(position.to_vec())
    }
}

/// Starting points shared by both samplers: uniform in `[−2, 2]` as Stan draws them, from a fixed seed.
fn init(dim: usize) -> Vec<f64> {
    let mut rng = stream_rng(99, 0);
    (0..N_CHAINS * dim).map(|_| rng.random::<f64>() * 4.0 - 2.0).collect()
}

/// `(min bulk ESS, gradient evaluations, seconds)`.
type Outcome = (f64, u64, f64);

fn min_bulk_ess(draws: &[Vec<Vec<f64>>], dim: usize) -> f64 {
    (0..dim)
        .map(|d| {
            let chains: Vec<Vec<f64>> = draws.iter().map(|c| c.iter().map(|x| x[d]).collect()).collect();
            ess_bulk(&chains)
        })
        .fold(f64::INFINITY, f64::min)
}

fn run_fab(density: &Density, seed: u64) -> Outcome {
    let dim = density.dim();
    let start = Instant::now();
    let target = Fab(density);
    let init_batch = Batch::from_vec(init(dim), dim).expect("whole rows");
    let trace = Sampler::nuts(&target, init_batch.clone(), seed)
        .and_then(|s| s.warmup(N_WARMUP))
        .and_then(|mut s| s.sample(N_DRAWS))
        .expect("valid settings");
    let seconds = start.elapsed().as_secs_f64();
    let draws: Vec<Vec<Vec<f64>>> =
        (0..N_CHAINS).map(|c| (0..N_DRAWS).map(|t| (0..dim).map(|d| trace.get(t, c, d)).collect()).collect()).collect();
    // Same seed, same result for any thread count: a counting rerun gives the exact number of evaluations.
    let counted = FabCounted(density, std::sync::atomic::AtomicU64::new(0));
    let again = Sampler::nuts(&counted, init_batch, seed)
        .and_then(|s| s.warmup(N_WARMUP))
        .and_then(|mut s| s.sample(N_DRAWS))
        .expect("valid settings");
    assert_eq!(again.get(N_DRAWS - 1, 0, 0), trace.get(N_DRAWS - 1, 0, 0), "counting rerun differs");
    (min_bulk_ess(&draws, dim), counted.1.into_inner(), seconds)
}

fn run_nuts_rs(density: &Density, seed: u64) -> Outcome {
    let dim = density.dim();
    let shared = Arc::new(density.clone());
    let start_points = init(dim);
    let start = Instant::now();
    let chains: Vec<(Vec<Vec<f64>>, u64)> = (0..N_CHAINS)
        .into_par_iter()
        .map(|c| {
            let settings = DiagNutsSettings {
                num_tune: N_WARMUP as u64,
                num_draws: N_DRAWS as u64,
                maxdepth: 10,
                num_chains: N_CHAINS,
                seed,
                ..DiagNutsSettings::default()
            };
            let mut rng = nuts_rs::rand::rngs::ChaCha8Rng::seed_from_u64(seed.wrapping_add(c as u64));
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let math = CpuMath::new(NutsModel { density: shared.clone(), n_grad: counter.clone() });
            let mut chain = settings.new_chain(c as u64, math, &mut rng).expect("valid settings");
            chain.set_position(&start_points[c * dim..(c + 1) * dim]).expect("finite start");
            let mut draws = Vec::with_capacity(N_DRAWS);
            for _ in 0..N_WARMUP + N_DRAWS {
                let (draw, progress) = chain.draw().expect("no unrecoverable error");
                if !progress.tuning {
                    draws.push(draw.to_vec());
                }
            }
            (draws, counter.load(std::sync::atomic::Ordering::Relaxed))
        })
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let n_grad = chains.iter().map(|c| c.1).sum();
    let draws: Vec<Vec<Vec<f64>>> = chains.into_iter().map(|c| c.0).collect();
    (min_bulk_ess(&draws, dim), n_grad, seconds)
}

fn main() {
    let seed = 2026;
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
        println!(
            "\n### {threads} thread{} — {N_CHAINS} chains, {N_WARMUP} warm-up + {N_DRAWS} draws each\n",
            if threads > 1 { "s" } else { "" }
        );
        println!(
            "| density | sampler | min ESS bulk | gradients | ESS / 1000 grad | seconds | ESS / s | fab ÷ nuts-rs (ESS/s) |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for density in densities() {
            let fab = pool.install(|| run_fab(&density, seed));
            let nrs = pool.install(|| run_nuts_rs(&density, seed));
            let row = |name: &str, (ess, grads, secs): Outcome, ratio: String| {
                println!(
                    "| {} | {name} | {ess:.0} | {grads} | {:.2} | {secs:.3} | {:.0} | {ratio} |",
                    density.name(),
                    1000.0 * ess / grads as f64,
                    ess / secs
                );
            };
            row("fab-mcmc", fab, format!("{:.2}", (fab.0 / fab.2) / (nrs.0 / nrs.2)));
            row("nuts-rs", nrs, String::new());
        }
    }
}
