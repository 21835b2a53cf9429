//! The stochastic normalizing flow (SNF) baseline of the 2021 paper: RealNVP couplings interleaved with Metropolis
//! layers, trained by reverse KL with a hand-derived pathwise gradient (SPEC §5).
//!
//! # Model
//! Prior `N(0, I)`; layers `[MC(λ=0)] + n_blocks × {coupling, swap, coupling, swap, MC(λ = i/(n_blocks−1)) for
//! i < n_blocks−1} + [MC(λ=1)]`, where an MC layer runs `n_mc_steps` random-walk Metropolis steps (Gaussian proposal
//! of std `proposal_std`) on `log p_λ = (1−λ)·log prior + λ·log p̃`. A coupling keeps the first half `x₁` of the
//! vector and maps the second half to `y₂ = σ(x₁)⊙x₂ + μ(x₁)` with `log σ = α·tanh(s(x₁))`, `α = exp(log α)` learnable
//! (init e⁻¹), and shift `μ` and scale `s` two separate `d → h → h → d` ReLU nets. The swap exchanges the halves.
//!
//! # Density of a sample
//! The SNF's `log q` of a sample is that of its path (SNF paper, Wu et al. 2020): the base density of the draw,
//! minus every coupling's log-determinant, plus `ΔS = log p_λ(x_out) − log p_λ(x_in)` for every MC layer (a
//! Metropolis kernel in detailed balance with `p_λ` has backward/forward path ratio `p_λ(x_in)/p_λ(x_out)`).
//! Then `log w = log p̃(x) − log q` are valid importance weights: `E[exp(log w)] = Z`.
//!
//! # Gradient
//! The reverse-KL loss `E[log q(x) − log p̃(x)]` is differentiated along the path with the noise and the accept
//! decisions held fixed, as autograd does on the SNF authors' code: `x_out = x_in + Σ_accepted σ_prop·ε`, so
//! `∂x_out/∂x_in = I`, and `ΔS` contributes `∇log p_λ(x_out) − ∇log p_λ(x_in)` to the adjoint of `x_in`.
//!
//! # Randomness
//! Sample `i` of a batch drawn with `seed` uses only `stream_rng(seed, i)`; batches are processed in fixed chunks and
//! reduced in order, so results are bitwise the same for any number of threads.

use fab_core::{Batch, LogDensity, stream_rng};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// `log α` of every coupling at initialisation (the SNF code's `init_downscale = 1`, i.e. α = e⁻¹).
pub const LOG_ALPHA_INIT: f64 = -1.0;

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Samples per parallel task; fixed, so that sums are reduced in the same order whatever the thread count.
const CHUNK: usize = 8;

/// Why an SNF could not be built or restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SnfError {
    /// The architecture is not valid.
    #[error("invalid SNF architecture: {0}")]
    InvalidSpec(String),
    /// A parameter vector of the wrong length.
    #[error("SNF parameter vector has {got} entries, the architecture needs {expected}")]
    ParamCount {
        /// Entries the architecture needs.
        expected: usize,
        /// Entries given.
        got: usize,
    },
}

/// The SNF architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnfSpec {
    /// Dimension (even: a coupling conditions on one half and transforms the other).
    pub dim: usize,
    /// Blocks of `{coupling, swap, coupling, swap}`; an MC layer follows every block but the last.
    pub n_blocks: usize,
    /// Width of both hidden layers of the shift and the scale nets.
    pub hidden: usize,
    /// Metropolis steps per MC layer.
    pub n_mc_steps: usize,
    /// Standard deviation of the Gaussian random-walk proposal.
    pub proposal_std: f64,
}

/// One layer of the SNF, in sampling order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SnfLayer {
    /// The `k`-th affine coupling.
    Coupling(usize),
    /// Exchange of the two halves of the vector.
    Swap,
    /// Metropolis steps on `(1−λ)·log prior + λ·log p̃`.
    Metropolis {
        /// Interpolation weight of the target.
        lambda: f64,
    },
}

impl SnfSpec {
    /// The 2021 paper's MoG SNF: 3 blocks (6 couplings), nets `d → 64 → 64 → d`, 4 MC layers of 20 steps, proposal
    /// std 0.25.
    pub fn paper_2021(dim: usize) -> Self {
        Self { dim, n_blocks: 3, hidden: 64, n_mc_steps: 20, proposal_std: 0.25 }
    }

    /// Checks the architecture.
    pub fn validate(&self) -> Result<(), SnfError> {
        let bad = |m: &str| Err(SnfError::InvalidSpec(m.to_string()));
        if self.dim < 2 || !self.dim.is_multiple_of(2) {
            return bad("the dimension must be even and at least 2 (couplings split the vector in halves)");
        }
        if self.n_blocks == 0 {
            return bad("n_blocks must be at least 1");
        }
        if self.hidden == 0 {
            return bad("hidden must be at least 1");
        }
        if !(self.proposal_std.is_finite() && self.proposal_std > 0.0) {
            return bad("proposal_std must be positive and finite");
        }
        Ok(())
    }

    /// The layers in sampling order. The last layer is always the MC layer at λ = 1 (the target).
    pub fn layers(&self) -> Vec<SnfLayer> {
        let mut layers = vec![SnfLayer::Metropolis { lambda: 0.0 }];
        for i in 0..self.n_blocks {
            layers.extend([SnfLayer::Coupling(2 * i), SnfLayer::Swap, SnfLayer::Coupling(2 * i + 1), SnfLayer::Swap]);
            if i + 1 < self.n_blocks {
                layers.push(SnfLayer::Metropolis { lambda: i as f64 / (self.n_blocks - 1) as f64 });
            }
        }
        layers.push(SnfLayer::Metropolis { lambda: 1.0 });
        layers
    }

    /// λ of every MC layer, in sampling order.
    pub fn mc_lambdas(&self) -> Vec<f64> {
        self.layers()
            .into_iter()
            .filter_map(|l| match l {
                SnfLayer::Metropolis { lambda } => Some(lambda),
                _ => None,
            })
            .collect()
    }

    /// Number of affine couplings.
    pub fn n_couplings(&self) -> usize {
        2 * self.n_blocks
    }

    fn coupling(&self, k: usize) -> Coupling {
        let half = self.dim / 2;
        let net = Mlp { sizes: [half, self.hidden, self.hidden, half] };
        Coupling { offset: k * (2 * net.n_params() + 1), half, net }
    }

    /// Number of parameters (all couplings' nets and `log α`s).
    pub fn n_params(&self) -> usize {
        self.n_couplings() * (2 * self.coupling(0).net.n_params() + 1)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Dense layers

/// `Σ a_i b_i` with four independent accumulators (lets the compiler vectorise the reduction).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// A linear map `out = Wᵀ·a + b` stored input-major (`W[i·n_out + j]`), then the bias: the forward pass and the
/// weight gradient are then row updates without loop-carried dependencies.
#[derive(Debug, Clone, Copy)]
struct Linear {
    n_in: usize,
    n_out: usize,
}

impl Linear {
    fn n_params(&self) -> usize {
        self.n_in * self.n_out + self.n_out
    }

    fn forward(&self, p: &[f64], a: &[f64], out: &mut [f64]) {
        let (w, b) = p.split_at(self.n_in * self.n_out);
        out.copy_from_slice(&b[..self.n_out]);
        for (i, &ai) in a.iter().enumerate() {
            // ReLU activations are often exactly zero: skip their rows.
            if ai != 0.0 {
                let row = &w[i * self.n_out..(i + 1) * self.n_out];
                out.iter_mut().zip(row).for_each(|(o, wij)| *o += ai * wij);
            }
        }
    }

    /// Accumulates `∂/∂W`, `∂/∂b` of `g_out·out` into `g_p` and, if asked, writes `∂/∂a` into `g_a`.
    fn backward(&self, p: &[f64], a: &[f64], g_out: &[f64], g_p: &mut [f64], g_a: Option<&mut [f64]>) {
        let (w, _) = p.split_at(self.n_in * self.n_out);
        let (g_w, g_b) = g_p.split_at_mut(self.n_in * self.n_out);
        g_b.iter_mut().zip(g_out).for_each(|(gb, go)| *gb += go);
        for (i, &ai) in a.iter().enumerate() {
            if ai != 0.0 {
                let row = &mut g_w[i * self.n_out..(i + 1) * self.n_out];
                row.iter_mut().zip(g_out).for_each(|(gw, go)| *gw += ai * go);
            }
        }
        if let Some(g_a) = g_a {
            for (i, ga) in g_a.iter_mut().enumerate() {
                *ga = dot(&w[i * self.n_out..(i + 1) * self.n_out], g_out);
            }
        }
    }
}

/// A `sizes[0] → sizes[1] → sizes[2] → sizes[3]` net with ReLU after both hidden layers and a linear output.
#[derive(Debug, Clone, Copy)]
struct Mlp {
    sizes: [usize; 4],
}

/// What the backward pass of an [`Mlp`] needs: its input and both hidden activations.
#[derive(Debug, Clone, Default)]
struct MlpTape {
    input: Vec<f64>,
    h1: Vec<f64>,
    h2: Vec<f64>,
}

impl Mlp {
    fn linears(&self) -> [Linear; 3] {
        let s = self.sizes;
        [Linear { n_in: s[0], n_out: s[1] }, Linear { n_in: s[1], n_out: s[2] }, Linear { n_in: s[2], n_out: s[3] }]
    }

    fn n_params(&self) -> usize {
        self.linears().iter().map(Linear::n_params).sum()
    }

    fn relu(v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x = x.max(0.0));
    }

    fn forward(&self, p: &[f64], input: &[f64], out: &mut [f64], tape: &mut MlpTape) {
        let [l1, l2, l3] = self.linears();
        let (p1, rest) = p.split_at(l1.n_params());
        let (p2, p3) = rest.split_at(l2.n_params());
        tape.input.clear();
        tape.input.extend_from_slice(input);
        tape.h1.resize(l1.n_out, 0.0);
        tape.h2.resize(l2.n_out, 0.0);
        l1.forward(p1, input, &mut tape.h1);
        Self::relu(&mut tape.h1);
        l2.forward(p2, &tape.h1, &mut tape.h2);
        Self::relu(&mut tape.h2);
        l3.forward(p3, &tape.h2, out);
    }

    /// Accumulates the parameter gradient of `g_out·out` into `g_p` and adds `∂/∂input` to `g_in`.
    fn backward(&self, p: &[f64], tape: &MlpTape, g_out: &[f64], g_p: &mut [f64], g_in: &mut [f64]) {
        let [l1, l2, l3] = self.linears();
        let (p1, rest) = p.split_at(l1.n_params());
        let (p2, p3) = rest.split_at(l2.n_params());
        let (gp1, rest) = g_p.split_at_mut(l1.n_params());
        let (gp2, gp3) = rest.split_at_mut(l2.n_params());
        let mut g_h2 = vec![0.0; l3.n_in];
        l3.backward(p3, &tape.h2, g_out, gp3, Some(&mut g_h2));
        // ReLU: the derivative is 1 where the activation is positive.
        g_h2.iter_mut().zip(&tape.h2).for_each(|(g, h)| *g = if *h > 0.0 { *g } else { 0.0 });
        let mut g_h1 = vec![0.0; l2.n_in];
        l2.backward(p2, &tape.h1, &g_h2, gp2, Some(&mut g_h1));
        g_h1.iter_mut().zip(&tape.h1).for_each(|(g, h)| *g = if *h > 0.0 { *g } else { 0.0 });
        let mut g_input = vec![0.0; l1.n_in];
        l1.backward(p1, &tape.input, &g_h1, gp1, Some(&mut g_input));
        g_in.iter_mut().zip(&g_input).for_each(|(g, d)| *g += d);
    }

    /// Torch `Linear` default weights `U(−1/√fan_in, 1/√fan_in)`; biases zero (the SNF code's `bias_scale = 0`).
    fn init(&self, p: &mut [f64], rng: &mut impl Rng) {
        let mut offset = 0;
        for l in self.linears() {
            let bound = 1.0 / (l.n_in as f64).sqrt();
            for w in &mut p[offset..offset + l.n_in * l.n_out] {
                *w = rng.random_range(-bound..bound);
            }
            p[offset + l.n_in * l.n_out..offset + l.n_params()].fill(0.0);
            offset += l.n_params();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Affine coupling

/// An affine coupling: parameters `[shift net | scale net | log α]` at `offset` of the flat vector.
#[derive(Debug, Clone, Copy)]
struct Coupling {
    offset: usize,
    half: usize,
    net: Mlp,
}

/// What the backward pass of a coupling needs.
#[derive(Debug, Clone, Default)]
struct CouplingTape {
    x2: Vec<f64>,
    shift: MlpTape,
    scale: MlpTape,
    tanh_s: Vec<f64>,
    sigma: Vec<f64>,
    alpha: f64,
}

impl Coupling {
    fn n_params(&self) -> usize {
        2 * self.net.n_params() + 1
    }

    fn split<'a>(&self, params: &'a [f64]) -> (&'a [f64], &'a [f64], f64) {
        let p = &params[self.offset..self.offset + self.n_params()];
        let n = self.net.n_params();
        (&p[..n], &p[n..2 * n], p[2 * n])
    }

    /// `y = (x₁, σ(x₁)⊙x₂ + μ(x₁))` in place; returns `log|det ∂y/∂x| = Σ log σ`.
    fn forward(&self, params: &[f64], x: &mut [f64], tape: &mut CouplingTape) -> f64 {
        let (p_shift, p_scale, log_alpha) = self.split(params);
        let (x1, x2) = x.split_at_mut(self.half);
        let mut mu = vec![0.0; self.half];
        let mut s = vec![0.0; self.half];
        self.net.forward(p_shift, x1, &mut mu, &mut tape.shift);
        self.net.forward(p_scale, x1, &mut s, &mut tape.scale);
        tape.alpha = log_alpha.exp();
        tape.x2.clear();
        tape.x2.extend_from_slice(x2);
        tape.tanh_s.clear();
        tape.sigma.clear();
        let mut log_det = 0.0;
        for j in 0..self.half {
            let t = s[j].tanh();
            let log_sigma = tape.alpha * t;
            let sigma = log_sigma.exp();
            tape.tanh_s.push(t);
            tape.sigma.push(sigma);
            x2[j] = sigma * x2[j] + mu[j];
            log_det += log_sigma;
        }
        log_det
    }

    /// The inverse map `x₂ = (y₂ − μ(y₁))/σ(y₁)` in place; returns its log-determinant `−Σ log σ`.
    fn inverse(&self, params: &[f64], y: &mut [f64]) -> f64 {
        let (p_shift, p_scale, log_alpha) = self.split(params);
        let (y1, y2) = y.split_at_mut(self.half);
        let mut mu = vec![0.0; self.half];
        let mut s = vec![0.0; self.half];
        let mut tape = MlpTape::default();
        self.net.forward(p_shift, y1, &mut mu, &mut tape);
        self.net.forward(p_scale, y1, &mut s, &mut tape);
        let alpha = log_alpha.exp();
        let mut log_det = 0.0;
        for j in 0..self.half {
            let log_sigma = alpha * s[j].tanh();
            y2[j] = (y2[j] - mu[j]) * (-log_sigma).exp();
            log_det -= log_sigma;
        }
        log_det
    }

    /// Given the adjoint `g` of the output (overwritten by the adjoint of the input) and the weight `g_log_det` of
    /// the log-determinant in the loss, accumulates the parameter gradient into `g_params`.
    fn backward(&self, params: &[f64], tape: &CouplingTape, g: &mut [f64], g_log_det: f64, g_params: &mut [f64]) {
        let (p_shift, p_scale, _) = self.split(params);
        let n = self.net.n_params();
        let g_p = &mut g_params[self.offset..self.offset + self.n_params()];
        let (g_shift_p, rest) = g_p.split_at_mut(n);
        let (g_scale_p, g_log_alpha) = rest.split_at_mut(n);
        let (g1, g2) = g.split_at_mut(self.half);
        let mut g_mu = vec![0.0; self.half];
        let mut g_s = vec![0.0; self.half];
        for j in 0..self.half {
            let (sigma, t, alpha) = (tape.sigma[j], tape.tanh_s[j], tape.alpha);
            let g_y2 = g2[j];
            // y₂ = σ x₂ + μ, log σ = α tanh(s): ∂y₂/∂log σ = σ x₂, and the log-det adds 1 per log σ.
            let g_log_sigma = g_y2 * sigma * tape.x2[j] + g_log_det;
            g_mu[j] = g_y2;
            g_s[j] = g_log_sigma * alpha * (1.0 - t * t);
            g_log_alpha[0] += g_log_sigma * alpha * t;
            g2[j] = g_y2 * sigma;
        }
        self.net.backward(p_shift, &tape.shift, &g_mu, g_shift_p, g1);
        self.net.backward(p_scale, &tape.scale, &g_s, g_scale_p, g1);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Interpolated densities and the Metropolis layers

/// `log N(x; 0, I)`.
fn log_prior(x: &[f64]) -> f64 {
    -0.5 * x.iter().map(|v| v * v).sum::<f64>() - 0.5 * x.len() as f64 * LN_2PI
}

/// `log p_λ = (1−λ)·log prior + λ·log p̃`; the endpoints evaluate only the density they need.
struct Interpolated<'a> {
    target: &'a dyn LogDensity,
    lambda: f64,
}

impl Interpolated<'_> {
    fn log_p(&self, x: &[f64]) -> f64 {
        if self.lambda == 0.0 {
            log_prior(x)
        } else if self.lambda == 1.0 {
            self.target.log_prob(x)
        } else {
            (1.0 - self.lambda) * log_prior(x) + self.lambda * self.target.log_prob(x)
        }
    }

    fn log_p_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        if self.lambda == 0.0 {
            grad.iter_mut().zip(x).for_each(|(g, v)| *g = -v);
            return log_prior(x);
        }
        let lp = self.target.log_prob_and_grad(x, grad);
        if self.lambda == 1.0 {
            return lp;
        }
        let l = self.lambda;
        grad.iter_mut().zip(x).for_each(|(g, v)| *g = l * *g - (1.0 - l) * v);
        (1.0 - l) * log_prior(x) + l * lp
    }
}

/// What the backward pass needs of an MC layer: `∇log p_λ` at its input and output.
#[derive(Debug, Clone, Default)]
struct McTape {
    grad_in: Vec<f64>,
    grad_out: Vec<f64>,
}

/// One layer's record on the tape.
#[derive(Debug, Clone)]
enum TapeEntry {
    Coupling(usize, CouplingTape),
    Swap,
    Metropolis(McTape),
}

/// The random numbers of one sample's path: the base draw, then per MC layer and step a proposal direction and
/// the log of a uniform for the accept test.
#[derive(Debug, Clone, PartialEq)]
pub struct PathNoise {
    /// Base draw `z ~ N(0, I)`.
    pub z: Vec<f64>,
    /// Proposal directions `ε ~ N(0, I)`, `n_mc_layers × n_mc_steps × dim`.
    pub eps: Vec<f64>,
    /// `log u`, `u ~ U[0, 1)`, `n_mc_layers × n_mc_steps`.
    pub log_u: Vec<f64>,
}

impl PathNoise {
    /// Draws a path's noise from `rng`: `z`, then for each MC layer and step `ε` followed by `u`.
    pub fn draw(spec: &SnfSpec, rng: &mut impl Rng) -> Self {
        let d = spec.dim;
        let n_steps = spec.mc_lambdas().len() * spec.n_mc_steps;
        let z = (0..d).map(|_| normal(rng)).collect();
        let mut eps = Vec::with_capacity(n_steps * d);
        let mut log_u = Vec::with_capacity(n_steps);
        for _ in 0..n_steps {
            eps.extend((0..d).map(|_| normal(rng)));
            log_u.push(rng.random::<f64>().ln());
        }
        Self { z, eps, log_u }
    }
}

/// One sample's path through the SNF.
#[derive(Debug, Clone)]
pub struct Path {
    /// The sample.
    pub x: Vec<f64>,
    /// `log q` of the SNF at the sample (base density − log-dets + ΔS terms).
    pub log_q: f64,
    /// `log p̃` at the sample.
    pub log_p: f64,
    /// Every Metropolis accept decision, layer by layer and step by step.
    pub accepts: Vec<bool>,
    tape: Option<Vec<TapeEntry>>,
}

/// A batch of SNF samples with their densities.
#[derive(Debug, Clone, PartialEq)]
pub struct SnfSamples {
    /// The samples.
    pub x: Batch,
    /// `log q` of the SNF at each sample.
    pub log_q: Vec<f64>,
    /// `log p̃` at each sample.
    pub log_p: Vec<f64>,
    /// Acceptance rate of each MC layer.
    pub acceptance: Vec<f64>,
}

/// The reverse-KL loss of a batch and what it saw.
#[derive(Debug, Clone, PartialEq)]
pub struct KlBatch {
    /// `mean(log q − log p̃)` over the valid samples (NaN if none).
    pub loss: f64,
    /// Samples with finite `log q`, `log p̃` and gradients.
    pub n_valid: usize,
    /// Importance log weights `log p̃ − log q` of every sample (NaN where invalid).
    pub log_w: Vec<f64>,
    /// Acceptance rate of each MC layer.
    pub acceptance: Vec<f64>,
}

/// A stochastic normalizing flow with all parameters in one flat vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Snf {
    spec: SnfSpec,
    layers: Vec<SnfLayer>,
    params: Vec<f64>,
}

impl Snf {
    /// A fresh SNF: net weights `U(±1/√fan_in)` from `stream_rng(seed, 0)`, biases 0, `log α = −1`.
    pub fn new(spec: SnfSpec, seed: u64) -> Result<Self, SnfError> {
        spec.validate()?;
        let mut params = vec![0.0; spec.n_params()];
        let mut rng = stream_rng(seed, 0);
        for k in 0..spec.n_couplings() {
            let c = spec.coupling(k);
            let n = c.net.n_params();
            let p = &mut params[c.offset..c.offset + c.n_params()];
            c.net.init(&mut p[..n], &mut rng);
            c.net.init(&mut p[n..2 * n], &mut rng);
            p[2 * n] = LOG_ALPHA_INIT;
        }
        let layers = spec.layers();
        Ok(Self { spec, layers, params })
    }

    /// The architecture.
    pub fn spec(&self) -> &SnfSpec {
        &self.spec
    }
    /// The layers in sampling order.
    pub fn layers(&self) -> &[SnfLayer] {
        &self.layers
    }
    /// Dimension.
    pub fn dim(&self) -> usize {
        self.spec.dim
    }
    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.params.len()
    }
    /// The flat parameter vector.
    pub fn params(&self) -> &[f64] {
        &self.params
    }
    /// The flat parameter vector, for the optimiser.
    pub fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }
    /// Replaces the parameters (e.g. from a checkpoint).
    pub fn set_params(&mut self, params: Vec<f64>) -> Result<(), SnfError> {
        if params.len() != self.params.len() {
            return Err(SnfError::ParamCount { expected: self.params.len(), got: params.len() });
        }
        self.params = params;
        Ok(())
    }

    /// Coupling `k` applied to `x` in place with the parameters `params`; returns its log-determinant.
    pub fn coupling_forward(&self, params: &[f64], k: usize, x: &mut [f64]) -> f64 {
        self.spec.coupling(k).forward(params, x, &mut CouplingTape::default())
    }

    /// The inverse of coupling `k` in place; returns its log-determinant.
    pub fn coupling_inverse(&self, params: &[f64], k: usize, y: &mut [f64]) -> f64 {
        self.spec.coupling(k).inverse(params, y)
    }

    /// Gradient of `g_y·y + g_log_det·log det` of coupling `k` at `x`: returns `∂/∂x` and accumulates `∂/∂θ` into
    /// `g_params` (full length).
    pub fn coupling_grad(
        &self,
        params: &[f64],
        k: usize,
        x: &[f64],
        g_y: &[f64],
        g_log_det: f64,
        g_params: &mut [f64],
    ) -> Vec<f64> {
        let c = self.spec.coupling(k);
        let mut y = x.to_vec();
        let mut tape = CouplingTape::default();
        c.forward(params, &mut y, &mut tape);
        let mut g = g_y.to_vec();
        c.backward(params, &tape, &mut g, g_log_det, g_params);
        g
    }

    /// The path of one sample from `noise` with the parameters `params`. Accept decisions come from the Metropolis
    /// test, or from `fixed_accepts` (for gradient checks). With `record`, the tape for [`Self::path_grad`] is kept
    /// and `∇log p_λ` is evaluated at the input and output of every MC layer.
    pub fn path(
        &self,
        params: &[f64],
        target: &dyn LogDensity,
        noise: &PathNoise,
        fixed_accepts: Option<&[bool]>,
        record: bool,
    ) -> Path {
        let d = self.spec.dim;
        let s = self.spec.n_mc_steps;
        let mut x = noise.z.clone();
        let mut log_q = log_prior(&x);
        let mut log_p = f64::NAN;
        let mut accepts = Vec::with_capacity(self.spec.mc_lambdas().len() * s);
        let mut tape = record.then(Vec::new);
        let mut mc_index = 0;
        let mut proposal = vec![0.0; d];
        for layer in &self.layers {
            match *layer {
                SnfLayer::Coupling(k) => {
                    let c = self.spec.coupling(k);
                    let mut ct = CouplingTape::default();
                    log_q -= c.forward(params, &mut x, &mut ct);
                    if let Some(t) = tape.as_mut() {
                        t.push(TapeEntry::Coupling(k, ct));
                    }
                }
                SnfLayer::Swap => {
                    swap_halves(&mut x);
                    if let Some(t) = tape.as_mut() {
                        t.push(TapeEntry::Swap);
                    }
                }
                SnfLayer::Metropolis { lambda } => {
                    let level = Interpolated { target, lambda };
                    let mut mt = McTape::default();
                    let lp_in = if record {
                        mt.grad_in = vec![0.0; d];
                        level.log_p_and_grad(&x, &mut mt.grad_in)
                    } else {
                        level.log_p(&x)
                    };
                    let mut current = lp_in;
                    let mut moved = false;
                    for step in 0..s {
                        let n = mc_index * s + step;
                        let eps = &noise.eps[n * d..(n + 1) * d];
                        proposal.iter_mut().zip(&x).zip(eps).for_each(|((p, x), e)| {
                            *p = x + self.spec.proposal_std * e;
                        });
                        let lp_prop = level.log_p(&proposal);
                        // A NaN difference rejects; a point at −∞ moves to any finite proposal.
                        let accept = match fixed_accepts {
                            Some(a) => a[n],
                            None => noise.log_u[n] < lp_prop - current,
                        };
                        if accept {
                            x.copy_from_slice(&proposal);
                            current = lp_prop;
                            moved = true;
                        }
                        accepts.push(accept);
                    }
                    log_q += current - lp_in;
                    if lambda == 1.0 {
                        log_p = current;
                    }
                    if let Some(t) = tape.as_mut() {
                        mt.grad_out = if moved {
                            let mut g = vec![0.0; d];
                            level.log_p_and_grad(&x, &mut g);
                            g
                        } else {
                            mt.grad_in.clone()
                        };
                        t.push(TapeEntry::Metropolis(mt));
                    }
                    mc_index += 1;
                }
            }
        }
        Path { x, log_q, log_p, accepts, tape }
    }

    /// The parameter gradient of `coeff_log_q·log q + g_x·x` along a recorded path (noise and accept decisions held
    /// fixed), accumulated into `g_params`. For the per-sample reverse-KL loss `log q − log p̃(x)` use
    /// `coeff_log_q = 1` and `g_x = −∇log p̃(x)` ([`Self::grad_log_p_at_end`]).
    ///
    /// # Panics
    /// If the path was computed without `record`.
    pub fn path_grad(&self, params: &[f64], path: &Path, coeff_log_q: f64, g_x: &[f64], g_params: &mut [f64]) {
        let tape = path.tape.as_ref().expect("path_grad needs a path computed with record = true");
        let mut g = g_x.to_vec();
        for entry in tape.iter().rev() {
            match entry {
                TapeEntry::Metropolis(mt) => {
                    // ΔS = log p_λ(x_out) − log p_λ(x_in) with x_out = x_in + const: ∂ΔS/∂x_in = ∇(x_out) − ∇(x_in).
                    for ((gi, go), gn) in g.iter_mut().zip(&mt.grad_out).zip(&mt.grad_in) {
                        *gi += coeff_log_q * (go - gn);
                    }
                }
                TapeEntry::Swap => swap_halves(&mut g),
                TapeEntry::Coupling(k, ct) => {
                    // log q carries −log det.
                    self.spec.coupling(*k).backward(params, ct, &mut g, -coeff_log_q, g_params);
                }
            }
        }
    }

    /// `∇log p̃` at the end of a recorded path (the last MC layer targets p̃ and evaluated it there).
    ///
    /// # Panics
    /// If the path was computed without `record`.
    pub fn grad_log_p_at_end(path: &Path) -> &[f64] {
        match path.tape.as_ref().and_then(|t| t.last()) {
            Some(TapeEntry::Metropolis(mt)) => &mt.grad_out,
            _ => panic!("grad_log_p_at_end needs a recorded path ending in the target's MC layer"),
        }
    }

    /// Whether every gradient recorded on a path is finite.
    fn tape_is_finite(path: &Path) -> bool {
        path.tape.as_ref().is_some_and(|t| {
            t.iter().all(|e| match e {
                TapeEntry::Metropolis(mt) => mt.grad_in.iter().chain(&mt.grad_out).all(|g| g.is_finite()),
                _ => true,
            })
        })
    }

    fn acceptance_counts(&self, accepts: &[bool], counts: &mut [u64]) {
        let s = self.spec.n_mc_steps.max(1);
        for (n, a) in accepts.iter().enumerate() {
            counts[n / s] += u64::from(*a);
        }
    }

    fn acceptance_rates(&self, counts: &[u64], n: usize) -> Vec<f64> {
        let per_layer = (n * self.spec.n_mc_steps).max(1) as f64;
        counts.iter().map(|&c| c as f64 / per_layer).collect()
    }

    /// `n` samples with their SNF `log q` and `log p̃`; sample `i` uses `stream_rng(seed, i)`.
    pub fn sample(&self, target: &dyn LogDensity, seed: u64, n: usize) -> SnfSamples {
        let d = self.spec.dim;
        let n_mc = self.spec.mc_lambdas().len();
        /// One chunk's samples, densities and accept counts.
        #[derive(Default)]
        struct Part {
            x: Vec<f64>,
            log_q: Vec<f64>,
            log_p: Vec<f64>,
            counts: Vec<u64>,
        }
        let parts: Vec<Part> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut part = Part { counts: vec![0; n_mc], ..Part::default() };
                for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
                    let noise = PathNoise::draw(&self.spec, &mut stream_rng(seed, i as u64));
                    let p = self.path(&self.params, target, &noise, None, false);
                    part.x.extend_from_slice(&p.x);
                    part.log_q.push(p.log_q);
                    part.log_p.push(p.log_p);
                    self.acceptance_counts(&p.accepts, &mut part.counts);
                }
                part
            })
            .collect();
        let mut x = Vec::with_capacity(n * d);
        let (mut log_q, mut log_p) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut counts = vec![0u64; n_mc];
        for part in parts {
            x.extend(part.x);
            log_q.extend(part.log_q);
            log_p.extend(part.log_p);
            counts.iter_mut().zip(part.counts).for_each(|(a, b)| *a += b);
        }
        SnfSamples {
            x: Batch::from_vec(x, d).expect("n × dim by construction"),
            log_q,
            log_p,
            acceptance: self.acceptance_rates(&counts, n),
        }
    }

    /// The reverse-KL loss `mean(log q(x) − log p̃(x))` over `n` paths drawn with `seed` and its pathwise gradient
    /// (added into `grad`, which must have [`Self::n_params`] entries). Samples with a non-finite `log q`, `log p̃` or
    /// density gradient are dropped and counted out of the mean.
    pub fn reverse_kl_grad(&self, target: &dyn LogDensity, seed: u64, n: usize, grad: &mut [f64]) -> KlBatch {
        assert_eq!(grad.len(), self.params.len(), "reverse_kl_grad: gradient length differs from the parameters'");
        let n_mc = self.spec.mc_lambdas().len();
        let np = self.params.len();
        struct Part {
            grad: Vec<f64>,
            loss_sum: f64,
            n_valid: usize,
            log_w: Vec<f64>,
            counts: Vec<u64>,
        }
        let parts: Vec<Part> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut part =
                    Part { grad: vec![0.0; np], loss_sum: 0.0, n_valid: 0, log_w: Vec::new(), counts: vec![0; n_mc] };
                for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
                    let noise = PathNoise::draw(&self.spec, &mut stream_rng(seed, i as u64));
                    let p = self.path(&self.params, target, &noise, None, true);
                    self.acceptance_counts(&p.accepts, &mut part.counts);
                    let valid = p.log_q.is_finite() && p.log_p.is_finite() && Self::tape_is_finite(&p);
                    if !valid {
                        part.log_w.push(f64::NAN);
                        continue;
                    }
                    part.log_w.push(p.log_p - p.log_q);
                    part.loss_sum += p.log_q - p.log_p;
                    part.n_valid += 1;
                    let g_x: Vec<f64> = Self::grad_log_p_at_end(&p).iter().map(|g| -g).collect();
                    self.path_grad(&self.params, &p, 1.0, &g_x, &mut part.grad);
                }
                part
            })
            .collect();
        let mut sum = vec![0.0; np];
        let (mut loss_sum, mut n_valid) = (0.0, 0);
        let mut log_w = Vec::with_capacity(n);
        let mut counts = vec![0u64; n_mc];
        for part in parts {
            sum.iter_mut().zip(&part.grad).for_each(|(s, g)| *s += g);
            loss_sum += part.loss_sum;
            n_valid += part.n_valid;
            log_w.extend(part.log_w);
            counts.iter_mut().zip(&part.counts).for_each(|(a, b)| *a += b);
        }
        let scale = 1.0 / n_valid.max(1) as f64;
        grad.iter_mut().zip(&sum).for_each(|(g, s)| *g += scale * s);
        KlBatch {
            loss: if n_valid == 0 { f64::NAN } else { loss_sum * scale },
            n_valid,
            log_w,
            acceptance: self.acceptance_rates(&counts, n),
        }
    }
}

/// One standard-normal draw.
fn normal(rng: &mut impl Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// `(x₁, x₂) → (x₂, x₁)` for equal halves.
fn swap_halves(x: &mut [f64]) {
    let h = x.len() / 2;
    let (a, b) = x.split_at_mut(h);
    a.swap_with_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fab_core::gradcheck::check_gradient;
    use fab_targets::{DiagGaussian, DiagGmm};

    fn small_spec(dim: usize) -> SnfSpec {
        SnfSpec { dim, n_blocks: 3, hidden: 8, n_mc_steps: 5, proposal_std: 0.5 }
    }

    /// An SNF whose couplings are far from the identity: random weights, biases and `log α` perturbed.
    fn perturbed(spec: SnfSpec, seed: u64) -> Snf {
        let mut snf = Snf::new(spec, seed).unwrap();
        let mut rng = stream_rng(seed, 7);
        for p in snf.params_mut() {
            *p += 0.3 * rng.random_range(-1.0..1.0);
        }
        snf
    }

    fn det(mut a: Vec<Vec<f64>>) -> f64 {
        let n = a.len();
        let mut d = 1.0;
        for c in 0..n {
            let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
            if p != c {
                a.swap(p, c);
                d = -d;
            }
            d *= a[c][c];
            let (top, below) = a.split_at_mut(c + 1);
            let pivot = &top[c];
            for row in below {
                let f = row[c] / pivot[c];
                row.iter_mut().zip(pivot).skip(c).for_each(|(v, p)| *v -= f * p);
            }
        }
        d
    }

    #[test]
    fn the_paper_architecture_has_six_couplings_and_mc_layers_at_0_0_half_1() {
        let spec = SnfSpec::paper_2021(2);
        assert_eq!(spec.mc_lambdas(), vec![0.0, 0.0, 0.5, 1.0]);
        let couplings = spec.layers().iter().filter(|l| matches!(l, SnfLayer::Coupling(_))).count();
        assert_eq!(couplings, 6);
        // Per coupling: two nets 1→64→64→1 and log α.
        assert_eq!(spec.n_params(), 6 * (2 * (64 + 64 + 64 * 64 + 64 + 64 + 1) + 1));
        let snf = Snf::new(spec, 0).unwrap();
        let alphas: Vec<f64> = (0..6).map(|k| snf.params()[(k + 1) * (snf.n_params() / 6) - 1]).collect();
        assert_eq!(alphas, vec![LOG_ALPHA_INIT; 6]);
        assert!(SnfSpec { dim: 3, ..SnfSpec::paper_2021(2) }.validate().is_err());
    }

    #[test]
    fn couplings_invert_and_their_log_det_is_that_of_the_jacobian() {
        for dim in [2, 4] {
            let snf = perturbed(small_spec(dim), 3);
            let mut rng = stream_rng(11, dim as u64);
            for k in 0..snf.spec().n_couplings() {
                let x: Vec<f64> = (0..dim).map(|_| 2.0 * normal(&mut rng)).collect();
                let mut y = x.clone();
                let ld = snf.coupling_forward(snf.params(), k, &mut y);
                let mut back = y.clone();
                let ld_inv = snf.coupling_inverse(snf.params(), k, &mut back);
                for (a, b) in x.iter().zip(&back) {
                    assert!((a - b).abs() < 1e-12, "coupling {k} does not invert: {x:?} vs {back:?}");
                }
                assert!((ld + ld_inv).abs() < 1e-12);
                // Jacobian by central differences.
                let h = 1e-6;
                let mut jac = vec![vec![0.0; dim]; dim];
                for j in 0..dim {
                    let (mut xp, mut xm) = (x.clone(), x.clone());
                    xp[j] += h;
                    xm[j] -= h;
                    snf.coupling_forward(snf.params(), k, &mut xp);
                    snf.coupling_forward(snf.params(), k, &mut xm);
                    for i in 0..dim {
                        jac[i][j] = (xp[i] - xm[i]) / (2.0 * h);
                    }
                }
                let numeric = det(jac).abs().ln();
                assert!((numeric - ld).abs() < 1e-6, "coupling {k}: log det {ld} vs numeric {numeric}");
                assert!(ld.abs() > 1e-3, "the test needs a non-trivial scale");
            }
        }
    }

    #[test]
    fn coupling_gradients_match_central_differences() {
        let dim = 4;
        let snf = perturbed(small_spec(dim), 5);
        let mut rng = stream_rng(12, 0);
        for k in 0..snf.spec().n_couplings() {
            let x: Vec<f64> = (0..dim).map(|_| normal(&mut rng)).collect();
            let g_y: Vec<f64> = (0..dim).map(|_| normal(&mut rng)).collect();
            let g_ld = 0.7;
            let objective = |params: &[f64], x: &[f64]| {
                let mut y = x.to_vec();
                let ld = snf.coupling_forward(params, k, &mut y);
                y.iter().zip(&g_y).map(|(a, b)| a * b).sum::<f64>() + g_ld * ld
            };
            let mut g_params = vec![0.0; snf.n_params()];
            let g_x = snf.coupling_grad(snf.params(), k, &x, &g_y, g_ld, &mut g_params);
            check_gradient(&|p| objective(p, &x), snf.params(), &g_params, 6, 1e-5, &mut rng)
                .assert_below(1e-6, &format!("coupling {k} parameters"));
            check_gradient(&|xx| objective(snf.params(), xx), &x, &g_x, 6, 1e-5, &mut rng)
                .assert_below(1e-6, &format!("coupling {k} input"));
            // Only this coupling's parameters receive gradient.
            let c = snf.spec().coupling(k);
            let outside = g_params.iter().enumerate().filter(|(i, _)| *i < c.offset || *i >= c.offset + c.n_params());
            assert!(outside.clone().all(|(_, g)| *g == 0.0));
        }
    }

    #[test]
    fn the_whole_pathwise_gradient_matches_central_differences_with_fixed_noise_and_accepts() {
        let target = DiagGmm::mog5_2021();
        let mut spec = small_spec(2);
        spec.proposal_std = 1.0;
        let mut snf = perturbed(spec, 9);
        // Scale the base draw so the path reaches the modes and the MC layers at λ = 0.5 and 1 move.
        snf.params_mut().iter_mut().for_each(|p| *p *= 1.5);
        let mut rng = stream_rng(13, 0);
        let mut total_moves_at_positive_lambda = 0;
        for i in 0..4 {
            let noise = PathNoise::draw(snf.spec(), &mut stream_rng(21, i));
            let reference = snf.path(snf.params(), &target, &noise, None, true);
            assert!(reference.log_q.is_finite() && reference.log_p.is_finite());
            let s = snf.spec().n_mc_steps;
            total_moves_at_positive_lambda += reference.accepts[2 * s..].iter().filter(|a| **a).count();
            // The same decisions given explicitly reproduce the path exactly.
            let replay = snf.path(snf.params(), &target, &noise, Some(&reference.accepts), false);
            assert_eq!((replay.x.clone(), replay.log_q.to_bits()), (reference.x.clone(), reference.log_q.to_bits()));
            let loss = |params: &[f64]| {
                let p = snf.path(params, &target, &noise, Some(&reference.accepts), false);
                p.log_q - p.log_p
            };
            let mut g = vec![0.0; snf.n_params()];
            let g_x: Vec<f64> = Snf::grad_log_p_at_end(&reference).iter().map(|v| -v).collect();
            snf.path_grad(snf.params(), &reference, 1.0, &g_x, &mut g);
            check_gradient(&loss, snf.params(), &g, 8, 1e-6, &mut rng).assert_below(1e-5, "SNF reverse-KL path");
        }
        assert!(total_moves_at_positive_lambda > 5, "the check needs moves at λ > 0");
    }

    #[test]
    fn ignoring_the_mc_terms_of_the_gradient_fails_the_check() {
        // The same check as above without the ΔS gradient must fail: the test can tell.
        let target = DiagGmm::mog5_2021();
        let mut spec = small_spec(2);
        spec.proposal_std = 1.0;
        let snf = perturbed(spec, 9);
        let noise = PathNoise::draw(snf.spec(), &mut stream_rng(21, 0));
        let reference = snf.path(snf.params(), &target, &noise, None, true);
        let loss = |params: &[f64]| {
            let p = snf.path(params, &target, &noise, Some(&reference.accepts), false);
            p.log_q - p.log_p
        };
        let mut stripped = reference.clone();
        for e in stripped.tape.as_mut().unwrap() {
            if let TapeEntry::Metropolis(mt) = e {
                mt.grad_out = mt.grad_in.clone();
            }
        }
        let mut g = vec![0.0; snf.n_params()];
        let g_x: Vec<f64> = Snf::grad_log_p_at_end(&reference).iter().map(|v| -v).collect();
        snf.path_grad(snf.params(), &stripped, 1.0, &g_x, &mut g);
        let r = check_gradient(&loss, snf.params(), &g, 8, 1e-6, &mut stream_rng(1, 1));
        assert!(r.max_rel_error > 1e-3, "{r:?}");
    }

    #[test]
    fn importance_weights_are_unbiased_for_the_normalising_constant() {
        // E[p̃/q_SNF] = Z for any SNF (the path weights are valid importance weights); Z = 1 here. With the sign of
        // the ΔS terms flipped the mean weight comes out in the thousands.
        let target = DiagGaussian::new(vec![0.4, -0.3], vec![0.9, 0.8]).unwrap();
        let snf = Snf::new(SnfSpec { n_mc_steps: 3, ..small_spec(2) }, 4).unwrap();
        let n = 40_000;
        let s = snf.sample(&target, 99, n);
        let w: Vec<f64> = s.log_p.iter().zip(&s.log_q).map(|(p, q)| (p - q).exp()).collect();
        let mean = w.iter().sum::<f64>() / n as f64;
        let sd = (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let bound = 4.0 * sd / (n as f64).sqrt();
        assert!((mean - 1.0).abs() < bound, "mean weight {mean} ± {bound}");
        assert!(bound < 0.05, "the test needs a tight bound, got {bound}");
        assert!(s.acceptance.iter().all(|a| *a > 0.05 && *a < 1.0), "{:?}", s.acceptance);
    }

    #[test]
    fn identity_couplings_and_the_prior_as_target_give_exact_weights() {
        // With zero output layers every coupling is the identity; with p̃ = prior every MC layer preserves it, and
        // log q telescopes to log prior(x): every log weight is 0.
        let spec = small_spec(2);
        let mut snf = Snf::new(spec.clone(), 1).unwrap();
        for k in 0..spec.n_couplings() {
            let c = spec.coupling(k);
            let n = c.net.n_params();
            let last = c.net.linears()[2].n_params();
            let p = &mut snf.params_mut()[c.offset..c.offset + c.n_params()];
            p[n - last..n].fill(0.0);
            p[2 * n - last..2 * n].fill(0.0);
        }
        let prior = DiagGaussian::standard(2);
        let s = snf.sample(&prior, 5, 200);
        assert!(s.log_p.iter().zip(&s.log_q).all(|(p, q)| (p - q).abs() < 1e-12));
    }

    #[test]
    fn samples_and_gradients_do_not_depend_on_the_thread_count() {
        let target = DiagGmm::mog5_2021();
        let snf = perturbed(small_spec(2), 2);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let s = snf.sample(&target, 3, 50);
                let mut g = vec![0.0; snf.n_params()];
                let kl = snf.reverse_kl_grad(&target, 4, 37, &mut g);
                (s, kl, g.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            })
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.0, b.0);
        assert_eq!(a.1.loss.to_bits(), b.1.loss.to_bits());
        assert_eq!(a.2, b.2);
    }

    #[test]
    fn the_batch_gradient_is_the_mean_of_the_path_gradients() {
        let target = DiagGmm::mog5_2021();
        let snf = perturbed(small_spec(2), 6);
        let n = 10;
        let mut g = vec![0.0; snf.n_params()];
        let kl = snf.reverse_kl_grad(&target, 8, n, &mut g);
        assert_eq!(kl.n_valid, n);
        let mut manual = vec![0.0; snf.n_params()];
        let mut loss = 0.0;
        for i in 0..n {
            let noise = PathNoise::draw(snf.spec(), &mut stream_rng(8, i as u64));
            let p = snf.path(snf.params(), &target, &noise, None, true);
            loss += (p.log_q - p.log_p) / n as f64;
            let g_x: Vec<f64> = Snf::grad_log_p_at_end(&p).iter().map(|v| -v).collect();
            snf.path_grad(
                snf.params(),
                &p,
                1.0 / n as f64,
                &g_x.iter().map(|v| v / n as f64).collect::<Vec<_>>(),
                &mut manual,
            );
        }
        assert!((kl.loss - loss).abs() < 1e-10 * loss.abs().max(1.0));
        for (a, b) in g.iter().zip(&manual) {
            assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
