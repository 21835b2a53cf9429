//! The flow layers (coupling, ActNorm, LU linear, global scale) with hand-written backward passes in both directions.
//!
//! Convention: every layer is a bijection between its *density-side* input `x` and its *base-side* output `z`.
//! `apply(Direction::Density)` maps `x → z`, `apply(Direction::Sampling)` maps `z → x`; each adds the log|det| of
//! the map it applied to `log_det`. `backward` receives ∂L/∂(output) and ∂L/∂(log_det) per row, writes
//! ∂L/∂(input) and, if asked, ACCUMULATES ∂L/∂θ into the layer's slice of the flat gradient.

use crate::gemm::{Op, gemm, with_best_simd, zip_map4};
use crate::scratch::{assign_copy, give, take_for_overwrite};
use crate::spec::{Activation, CouplingSpec, Direction, HeadLayout, LayerSpec, ScaleMap};
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal, Uniform};

/// Activations one layer saved during a recorded pass (owned by the caller's [`crate::FlowTape`]).
#[derive(Debug, Clone, Default)]
pub struct LayerTape {
    /// The layer's input (`n × D`): ∂output/∂(scale) of the affine maps and ∂W of the LU layer use it.
    input: Vec<f64>,
    /// The layer's output (`n × D`): the inverse affine map's ∂w/∂ℓ = −w uses it.
    output: Vec<f64>,
    /// Coupling only: conditioner input and post-activation hidden values, one buffer per linear layer input.
    hidden: Vec<Vec<f64>>,
    /// Coupling only: log-scale ℓ per transformed element (`n × k`).
    log_scale: Vec<f64>,
    /// Coupling only: dℓ/ds of the scale map per transformed element (`n × k`).
    dlog_scale: Vec<f64>,
    /// Coupling only: σ = e^ℓ per transformed element (`n × k`), so the backward pass needs no `exp`.
    scale: Vec<f64>,
}

impl LayerTape {
    /// Hands the activation buffers back to the thread's scratch pool.
    pub(crate) fn recycle(&mut self) {
        for b in [&mut self.input, &mut self.output, &mut self.log_scale, &mut self.dlog_scale, &mut self.scale] {
            give(std::mem::take(b));
        }
        self.hidden.drain(..).for_each(give);
    }
}

/// Which of the two affine maps a layer applies: `w = v·e^ℓ + t` or its inverse `w = (v − t)·e^{−ℓ}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AffineKind {
    ScaleShift,
    UnshiftUnscale,
}

fn affine_kind(dir: Direction, affine_direction: Direction) -> AffineKind {
    if dir == affine_direction { AffineKind::ScaleShift } else { AffineKind::UnshiftUnscale }
}

/// Numerically stable `ln(1 + eˣ)`.
pub(crate) fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Numerically stable logistic function.
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Inverse of softplus: the `s` with `softplus(s) = y` (`y > 0`).
pub(crate) fn inverse_softplus(y: f64) -> f64 {
    y + (-(-y).exp_m1()).ln()
}

/// Log-scale `ℓ = ln σ(s)` and its derivative `dℓ/ds` for a scale map.
#[derive(Debug, Clone, Copy)]
struct LogScale {
    map: ScaleMap,
    /// Bounded sigmoid only: the offset `c` with `σ(0) = 1`.
    offset: f64,
}

impl LogScale {
    fn new(map: ScaleMap) -> Self {
        let offset = match map {
            ScaleMap::BoundedSigmoid { low, high } => {
                let p = (1.0 - low) / (high - low);
                (p / (1.0 - p)).ln()
            }
            _ => 0.0,
        };
        Self { map, offset }
    }

    /// `(ℓ, σ = e^ℓ, dℓ/ds)`; σ is computed directly (one transcendental fewer than `exp(ℓ)`).
    fn eval(&self, s: f64) -> (f64, f64, f64) {
        match self.map {
            ScaleMap::Exp => {
                let e = s.exp();
                (s, e, 1.0)
            }
            // σ = 2·sigmoid(s); ln σ = ln 2 − softplus(−s); dℓ/ds = sigmoid(−s) = 1 − σ/2.
            // sigmoid and softplus share e^{−|s|}: this is `sigmoid(s)` and `softplus(−s)` term for term, with
            // one `exp` instead of two.
            ScaleMap::TwoSigmoid => {
                let e = (-s.abs()).exp();
                let g = if s >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
                let softplus_neg_s = (-s).max(0.0) + e.ln_1p();
                (std::f64::consts::LN_2 - softplus_neg_s, 2.0 * g, 1.0 - g)
            }
            ScaleMap::BoundedSigmoid { low, high } => {
                let g = sigmoid(s + self.offset);
                let sigma = low + (high - low) * g;
                (sigma.ln(), sigma, (high - low) * g * (1.0 - g) / sigma)
            }
        }
    }
}

/// Position of the raw scale and the shift of transformed coordinate `j` in a head row of width `2k`.
fn head_positions(layout: HeadLayout, j: usize, k: usize) -> (usize, usize) {
    match layout {
        HeadLayout::ScaleThenShift => (j, k + j),
        HeadLayout::InterleavedShiftScale => (2 * j + 1, 2 * j),
    }
}

/// `a[i, :] += b` for every row.
fn add_bias(a: &mut [f64], b: &[f64]) {
    add_bias_then(a, b, |v| v);
}

/// `a[i, j] = act(a[i, j] + b[j])`. The activations are written as selects (not branches) so the loop
/// vectorises: the sign of a hidden unit is unpredictable.
#[inline(always)]
fn add_bias_then(a: &mut [f64], b: &[f64], act: impl Fn(f64) -> f64) {
    with_best_simd(
        #[inline(always)]
        move || {
            for row in a.chunks_exact_mut(b.len()) {
                zip_map4(row, b, |v, bj| act(v + bj));
            }
        },
    );
}

/// A fully connected conditioner: `Linear → act → … → Linear`, torch layout (weight `out × in`, then bias).
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    sizes: Vec<usize>,
    activation: Activation,
}

impl Mlp {
    fn n_linear(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Offset of linear layer `l`'s weight in the MLP's parameter slice.
    fn offset(&self, l: usize) -> usize {
        self.sizes.windows(2).take(l).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// Multiplies `g` by the activation's derivative, read off the post-activation values `h`
    /// (the slope is positive, so `h > 0 ⇔ a > 0`; at `a = 0` the derivative is the negative-side one, as in torch).
    fn activation_backward(&self, h: &[f64], g: &mut [f64]) {
        let slope = match self.activation {
            Activation::Relu => 0.0,
            Activation::LeakyRelu { slope } => slope,
        };
        with_best_simd(
            #[inline(always)]
            move || {
                zip_map4(g, h, move |gv, hv| gv * if hv > 0.0 { 1.0 } else { slope });
            },
        );
    }

    /// Forward pass on `n` rows. With `hidden`, saves the input of every linear layer (`hidden[0]` = MLP input).
    fn forward(&self, p: &[f64], n: usize, input: Vec<f64>, mut hidden: Option<&mut Vec<Vec<f64>>>) -> Vec<f64> {
        if let Some(h) = hidden.as_deref_mut() {
            h.drain(..).for_each(give);
        }
        let mut cur = input;
        let n_lin = self.n_linear();
        for l in 0..n_lin {
            let (inn, out) = (self.sizes[l], self.sizes[l + 1]);
            let off = self.offset(l);
            let (w, b) = (&p[off..off + out * inn], &p[off + out * inn..off + out * inn + out]);
            let mut next = take_for_overwrite(n * out);
            gemm(&mut next, n, out, inn, &cur, Op::N, w, Op::T, false);
            // Bias and activation in one sweep over the output (same operations, one pass over memory).
            match (l + 1 < n_lin, self.activation) {
                (false, _) => add_bias(&mut next, b),
                (true, Activation::Relu) => add_bias_then(&mut next, b, move |v| v.max(0.0)),
                (true, Activation::LeakyRelu { slope }) => {
                    add_bias_then(&mut next, b, move |v| v * if v > 0.0 { 1.0 } else { slope })
                }
            }
            match hidden.as_deref_mut() {
                Some(h) => h.push(std::mem::replace(&mut cur, next)),
                None => give(std::mem::replace(&mut cur, next)),
            }
        }
        cur
    }

    /// Backward pass: given ∂L/∂out, returns ∂L/∂input and accumulates weight/bias gradients when asked.
    fn backward(
        &self,
        p: &[f64],
        n: usize,
        hidden: &[Vec<f64>],
        g_out: Vec<f64>,
        mut g_params: Option<&mut [f64]>,
    ) -> Vec<f64> {
        let mut g = g_out;
        for l in (0..self.n_linear()).rev() {
            let (inn, out) = (self.sizes[l], self.sizes[l + 1]);
            let off = self.offset(l);
            let h = &hidden[l];
            if let Some(gp) = g_params.as_deref_mut() {
                let (gw, gb) = gp[off..off + out * inn + out].split_at_mut(out * inn);
                // ∂W = gᵀ·h (out × in), ∂b = column sums of g.
                gemm(gw, out, inn, n, &g, Op::T, h, Op::N, true);
                for row in g.chunks_exact(out) {
                    gb.iter_mut().zip(row).for_each(|(b, v)| *b += v);
                }
            }
            let w = &p[off..off + out * inn];
            let mut g_prev = take_for_overwrite(n * inn);
            gemm(&mut g_prev, n, inn, out, &g, Op::N, w, Op::N, false);
            if l > 0 {
                self.activation_backward(h, &mut g_prev);
            }
            give(std::mem::replace(&mut g, g_prev));
        }
        g
    }

    /// Torch's default `nn.Linear` initialisation U(−1/√fan_in, 1/√fan_in) for weights and biases,
    /// except the last layer, which starts at zero so the coupling starts as the identity.
    fn init(&self, p: &mut [f64], rng: &mut dyn RngCore) {
        let n_lin = self.n_linear();
        for l in 0..n_lin {
            let (inn, out) = (self.sizes[l], self.sizes[l + 1]);
            let off = self.offset(l);
            let block = &mut p[off..off + out * inn + out];
            if l + 1 == n_lin {
                block.fill(0.0);
            } else {
                let bound = 1.0 / (inn as f64).sqrt();
                let u = Uniform::new(-bound, bound).expect("a positive fan-in gives a valid range");
                block.iter_mut().for_each(|v| *v = u.sample(rng));
            }
        }
    }
}

/// Affine coupling layer.
#[derive(Debug, Clone)]
pub(crate) struct Coupling {
    dim: usize,
    cond: Vec<usize>,
    transformed: Vec<usize>,
    mlp: Mlp,
    log_scale: LogScale,
    head_layout: HeadLayout,
    affine_direction: Direction,
}

impl Coupling {
    fn new(dim: usize, spec: &CouplingSpec) -> Self {
        Self {
            dim,
            cond: spec.cond.clone(),
            transformed: spec.transformed.clone(),
            mlp: Mlp { sizes: spec.mlp_sizes(), activation: spec.activation },
            log_scale: LogScale::new(spec.scale_map),
            head_layout: spec.head_layout,
            affine_direction: spec.affine_direction,
        }
    }

    fn gather_cond(&self, n: usize, input: &[f64]) -> Vec<f64> {
        let d = self.cond.len();
        let mut hc = take_for_overwrite(n * d);
        for (row_in, row_c) in input.chunks_exact(self.dim).zip(hc.chunks_exact_mut(d)) {
            for (c, &j) in row_c.iter_mut().zip(&self.cond) {
                *c = row_in[j];
            }
        }
        hc
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        input: &[f64],
        output: &mut [f64],
        log_det: &mut [f64],
        tape: Option<&mut LayerTape>,
    ) {
        let k = self.transformed.len();
        let kind = affine_kind(dir, self.affine_direction);
        let hc = self.gather_cond(n, input);
        let mut tape = tape;
        let head = self.mlp.forward(p, n, hc, tape.as_deref_mut().map(|t| &mut t.hidden));
        output.copy_from_slice(input);
        // Every element of these is written below.
        let (mut ls_buf, mut dls_buf, mut sc_buf) = match tape.is_some() {
            true => (take_for_overwrite(n * k), take_for_overwrite(n * k), take_for_overwrite(n * k)),
            false => (Vec::new(), Vec::new(), Vec::new()),
        };
        for i in 0..n {
            let head_row = &head[i * 2 * k..(i + 1) * 2 * k];
            let mut ld = 0.0;
            for (j, &col) in self.transformed.iter().enumerate() {
                let (si, ti) = head_positions(self.head_layout, j, k);
                let (l, sigma, dl) = self.log_scale.eval(head_row[si]);
                let t = head_row[ti];
                let v = input[i * self.dim + col];
                output[i * self.dim + col] = match kind {
                    AffineKind::ScaleShift => {
                        ld += l;
                        v * sigma + t
                    }
                    AffineKind::UnshiftUnscale => {
                        ld -= l;
                        (v - t) / sigma
                    }
                };
                if !ls_buf.is_empty() {
                    ls_buf[i * k + j] = l;
                    dls_buf[i * k + j] = dl;
                    sc_buf[i * k + j] = sigma;
                }
            }
            log_det[i] += ld;
        }
        if let Some(t) = tape {
            assign_copy(&mut t.input, input);
            assign_copy(&mut t.output, output);
            give(std::mem::replace(&mut t.log_scale, ls_buf));
            give(std::mem::replace(&mut t.dlog_scale, dls_buf));
            give(std::mem::replace(&mut t.scale, sc_buf));
        }
        give(head);
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        tape: &LayerTape,
        g_out: &[f64],
        g_ld: &[f64],
        g_in: &mut [f64],
        g_params: Option<&mut [f64]>,
    ) {
        let (d, k, dim) = (self.cond.len(), self.transformed.len(), self.dim);
        let kind = affine_kind(dir, self.affine_direction);
        g_in.copy_from_slice(g_out);
        // Every element is written below (the scale and shift positions of a head row are a partition of it).
        let mut g_head = take_for_overwrite(n * 2 * k);
        for i in 0..n {
            for (j, &col) in self.transformed.iter().enumerate() {
                let (sigma, dl) = (tape.scale[i * k + j], tape.dlog_scale[i * k + j]);
                let gw = g_out[i * dim + col];
                let (gv, gt, gl) = match kind {
                    // w = v·e^ℓ + t: ∂w/∂v = e^ℓ, ∂w/∂t = 1, ∂w/∂ℓ = v·e^ℓ, ∂ld/∂ℓ = +1.
                    AffineKind::ScaleShift => (gw * sigma, gw, gw * tape.input[i * dim + col] * sigma + g_ld[i]),
                    // w = (v − t)·e^{−ℓ}: ∂w/∂v = e^{−ℓ}, ∂w/∂t = −e^{−ℓ}, ∂w/∂ℓ = −w, ∂ld/∂ℓ = −1.
                    AffineKind::UnshiftUnscale => {
                        let e = 1.0 / sigma;
                        (gw * e, -gw * e, -gw * tape.output[i * dim + col] - g_ld[i])
                    }
                };
                g_in[i * dim + col] = gv;
                let (si, ti) = head_positions(self.head_layout, j, k);
                g_head[i * 2 * k + si] = gl * dl;
                g_head[i * 2 * k + ti] = gt;
            }
        }
        let g_cond = self.mlp.backward(p, n, &tape.hidden, g_head, g_params);
        for i in 0..n {
            for (c, &col) in self.cond.iter().enumerate() {
                g_in[i * dim + col] += g_cond[i * d + c];
            }
        }
        give(g_cond);
    }
}

/// ActNorm: density direction `z = x·softplus(scale) + loc`; parameters `[loc (D), scale (D)]`.
#[derive(Debug, Clone)]
pub(crate) struct ActNorm {
    dim: usize,
}

impl ActNorm {
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        input: &[f64],
        output: &mut [f64],
        log_det: &mut [f64],
        tape: Option<&mut LayerTape>,
    ) {
        let dim = self.dim;
        let (loc, scale) = p.split_at(dim);
        let sigma: Vec<f64> = scale.iter().map(|&s| softplus(s)).collect();
        let inv_sigma: Vec<f64> = sigma.iter().map(|s| 1.0 / s).collect();
        let sum_log_sigma: f64 = sigma.iter().map(|s| s.ln()).sum();
        let kind = affine_kind(dir, Direction::Density);
        for i in 0..n {
            let (row_in, row_out) = (&input[i * dim..(i + 1) * dim], &mut output[i * dim..(i + 1) * dim]);
            match kind {
                AffineKind::ScaleShift => {
                    for j in 0..dim {
                        row_out[j] = row_in[j] * sigma[j] + loc[j];
                    }
                }
                AffineKind::UnshiftUnscale => {
                    for j in 0..dim {
                        row_out[j] = (row_in[j] - loc[j]) * inv_sigma[j];
                    }
                }
            }
            log_det[i] += if kind == AffineKind::ScaleShift { sum_log_sigma } else { -sum_log_sigma };
        }
        if let Some(t) = tape {
            assign_copy(&mut t.input, input);
            assign_copy(&mut t.output, output);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        tape: &LayerTape,
        g_out: &[f64],
        g_ld: &[f64],
        g_in: &mut [f64],
        g_params: Option<&mut [f64]>,
    ) {
        let dim = self.dim;
        let scale = &p[dim..];
        let kind = affine_kind(dir, Direction::Density);
        let sigma: Vec<f64> = scale.iter().map(|&s| softplus(s)).collect();
        let mut g_loc = vec![0.0; dim];
        let mut g_log_sigma = vec![0.0; dim];
        for i in 0..n {
            for j in 0..dim {
                let gw = g_out[i * dim + j];
                let idx = i * dim + j;
                match kind {
                    AffineKind::ScaleShift => {
                        g_in[idx] = gw * sigma[j];
                        g_loc[j] += gw;
                        g_log_sigma[j] += gw * tape.input[idx] * sigma[j] + g_ld[i];
                    }
                    AffineKind::UnshiftUnscale => {
                        g_in[idx] = gw / sigma[j];
                        g_loc[j] -= gw / sigma[j];
                        g_log_sigma[j] += -gw * tape.output[idx] - g_ld[i];
                    }
                }
            }
        }
        if let Some(gp) = g_params {
            for j in 0..dim {
                gp[j] += g_loc[j];
                // dℓ/dscale = sigmoid(scale)/softplus(scale).
                gp[dim + j] += g_log_sigma[j] * sigmoid(scale[j]) / sigma[j];
            }
        }
    }

    /// Data-dependent initialisation on a batch of sampling-direction inputs: `loc` = batch mean,
    /// `softplus(scale)` = batch standard deviation (unbiased, as `torch.std`), so the output has zero mean and
    /// unit variance. Columns with fewer than two rows or a zero/non-finite spread keep their values.
    pub(crate) fn initialize_from_batch(&self, p: &mut [f64], n: usize, input: &[f64]) {
        let dim = self.dim;
        if n < 2 {
            return;
        }
        for j in 0..dim {
            let mean = (0..n).map(|i| input[i * dim + j]).sum::<f64>() / n as f64;
            let var = (0..n).map(|i| (input[i * dim + j] - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let std = var.sqrt();
            if mean.is_finite() && std.is_finite() && std > 0.0 {
                p[j] = mean;
                p[dim + j] = inverse_softplus(std);
            }
        }
    }
}

/// LU-parameterised linear map (`normflows` `InvertibleAffine`): `W = P·L·U`, density direction `z = x·W`.
/// Parameters `[L (D×D), U (D×D), log_S (D)]`; only the strict triangles of `L` and `U` act.
/// Buffers (fixed, saved with the weights): the permutation matrix `P` and `sign_S`.
#[derive(Debug, Clone)]
pub(crate) struct LuLinear {
    dim: usize,
    pub(crate) perm: Vec<f64>,
    pub(crate) sign: Vec<f64>,
}

/// `L_m = tril(L, −1) + I` and `U_m = triu(U, 1) + diag(sign·exp(log_S))`.
struct LuFactors {
    lower: Vec<f64>,
    upper: Vec<f64>,
}

fn matmul_small(a: &[f64], b: &[f64], d: usize, op_a: Op, op_b: Op) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    gemm(&mut c, d, d, d, a, op_a, b, op_b, false);
    c
}

/// Inverse of a unit lower-triangular matrix by forward substitution.
fn invert_unit_lower(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        for i in col..d {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for p in col..i {
                s -= l[i * d + p] * inv[p * d + col];
            }
            inv[i * d + col] = s;
        }
    }
    inv
}

/// Inverse of an upper-triangular matrix by back substitution.
fn invert_upper(u: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        for i in (0..=col).rev() {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for p in i + 1..=col {
                s -= u[i * d + p] * inv[p * d + col];
            }
            inv[i * d + col] = s / u[i * d + i];
        }
    }
    inv
}

impl LuLinear {
    fn factors(&self, p: &[f64]) -> LuFactors {
        let d = self.dim;
        let (l, rest) = p.split_at(d * d);
        let (u, log_s) = rest.split_at(d * d);
        let mut lower = vec![0.0; d * d];
        let mut upper = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                lower[i * d + j] = match j.cmp(&i) {
                    std::cmp::Ordering::Less => l[i * d + j],
                    std::cmp::Ordering::Equal => 1.0,
                    std::cmp::Ordering::Greater => 0.0,
                };
                upper[i * d + j] = match j.cmp(&i) {
                    std::cmp::Ordering::Greater => u[i * d + j],
                    std::cmp::Ordering::Equal => self.sign[i] * log_s[i].exp(),
                    std::cmp::Ordering::Less => 0.0,
                };
            }
        }
        LuFactors { lower, upper }
    }

    /// `W = P·L_m·U_m`.
    pub(crate) fn weight(&self, p: &[f64]) -> Vec<f64> {
        let f = self.factors(p);
        let lu = matmul_small(&f.lower, &f.upper, self.dim, Op::N, Op::N);
        matmul_small(&self.perm, &lu, self.dim, Op::N, Op::N)
    }

    /// `W⁻¹ = U_m⁻¹·L_m⁻¹·Pᵀ`.
    fn weight_inverse(&self, p: &[f64]) -> Vec<f64> {
        let d = self.dim;
        let f = self.factors(p);
        let ul = matmul_small(&invert_upper(&f.upper, d), &invert_unit_lower(&f.lower, d), d, Op::N, Op::N);
        matmul_small(&ul, &self.perm, d, Op::N, Op::T)
    }

    fn sum_log_s(&self, p: &[f64]) -> f64 {
        p[2 * self.dim * self.dim..].iter().sum()
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        input: &[f64],
        output: &mut [f64],
        log_det: &mut [f64],
        tape: Option<&mut LayerTape>,
    ) {
        let d = self.dim;
        let (m, ld) = match dir {
            Direction::Density => (self.weight(p), self.sum_log_s(p)),
            Direction::Sampling => (self.weight_inverse(p), -self.sum_log_s(p)),
        };
        gemm(output, n, d, d, input, Op::N, &m, Op::N, false);
        log_det.iter_mut().for_each(|v| *v += ld);
        if let Some(t) = tape {
            assign_copy(&mut t.input, input);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        tape: &LayerTape,
        g_out: &[f64],
        g_ld: &[f64],
        g_in: &mut [f64],
        g_params: Option<&mut [f64]>,
    ) {
        let d = self.dim;
        let m = match dir {
            Direction::Density => self.weight(p),
            Direction::Sampling => self.weight_inverse(p),
        };
        // out = in·M  ⇒  ∂in = ∂out·Mᵀ.
        gemm(g_in, n, d, d, g_out, Op::N, &m, Op::T, false);
        let Some(gp) = g_params else { return };
        // ∂M = inᵀ·∂out.
        let mut g_m = vec![0.0; d * d];
        gemm(&mut g_m, d, d, n, &tape.input, Op::T, g_out, Op::N, false);
        let sum_g_ld: f64 = g_ld.iter().sum();
        let (g_w, ld_sign) = match dir {
            Direction::Density => (g_m, 1.0),
            // M = W⁻¹: dM = −M·dW·M  ⇒  ∂W = −Mᵀ·∂M·Mᵀ.
            Direction::Sampling => {
                let t = matmul_small(&m, &g_m, d, Op::T, Op::N);
                let mut g_w = matmul_small(&t, &m, d, Op::N, Op::T);
                g_w.iter_mut().for_each(|v| *v = -*v);
                (g_w, -1.0)
            }
        };
        let f = self.factors(p);
        // W = P·L·U: ∂(L·U) = Pᵀ·∂W; ∂L = ∂(LU)·Uᵀ; ∂U = Lᵀ·∂(LU).
        let g_lu = matmul_small(&self.perm, &g_w, d, Op::T, Op::N);
        let g_lower = matmul_small(&g_lu, &f.upper, d, Op::N, Op::T);
        let g_upper = matmul_small(&f.lower, &g_lu, d, Op::T, Op::N);
        let (gl, rest) = gp.split_at_mut(d * d);
        let (gu, g_log_s) = rest.split_at_mut(d * d);
        for i in 0..d {
            for j in 0..i {
                gl[i * d + j] += g_lower[i * d + j];
            }
            for j in i + 1..d {
                gu[i * d + j] += g_upper[i * d + j];
            }
            g_log_s[i] += g_upper[i * d + i] * f.upper[i * d + i] + ld_sign * sum_g_ld;
        }
    }

    /// Random-orthogonal initialisation: `Q` from the QR decomposition of a standard Gaussian matrix (columns
    /// sign-fixed so `Q` is Haar-distributed), then `Q = P·L·U` by partial-pivoting LU.
    fn init(&mut self, p: &mut [f64], rng: &mut dyn RngCore) {
        let d = self.dim;
        let a = faer::Mat::<f64>::from_fn(d, d, |_, _| StandardNormal.sample(rng));
        let qr = a.qr();
        let q_mat = qr.compute_Q();
        let r = qr.R();
        let mut q = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                let sign = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
                q[i * d + j] = q_mat[(i, j)] * sign;
            }
        }
        let (perm, lower, upper) = lu_partial_pivot(&q, d);
        self.perm = perm;
        let (pl, rest) = p.split_at_mut(d * d);
        let (pu, log_s) = rest.split_at_mut(d * d);
        pl.copy_from_slice(&lower);
        pu.fill(0.0);
        for i in 0..d {
            for j in i + 1..d {
                pu[i * d + j] = upper[i * d + j];
            }
            let s = upper[i * d + i];
            self.sign[i] = if s < 0.0 { -1.0 } else { 1.0 };
            log_s[i] = s.abs().ln();
        }
    }
}

/// Partial-pivoting LU: returns `(P, L, U)` with `A = P·L·U`, `L` unit lower (diagonal stored as 1) and `U` upper.
pub(crate) fn lu_partial_pivot(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut rows: Vec<usize> = (0..d).collect();
    for k in 0..d {
        let pivot = (k..d).max_by(|&x, &y| m[x * d + k].abs().total_cmp(&m[y * d + k].abs())).unwrap_or(k);
        if pivot != k {
            for j in 0..d {
                m.swap(k * d + j, pivot * d + j);
            }
            rows.swap(k, pivot);
        }
        let piv = m[k * d + k];
        for i in k + 1..d {
            let f = m[i * d + k] / piv;
            m[i * d + k] = f;
            for j in k + 1..d {
                m[i * d + j] -= f * m[k * d + j];
            }
        }
    }
    let mut lower = vec![0.0; d * d];
    let mut upper = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            if j < i {
                lower[i * d + j] = m[i * d + j];
            } else {
                upper[i * d + j] = m[i * d + j];
            }
        }
        lower[i * d + i] = 1.0;
    }
    // Row r of the factored matrix is row rows[r] of A: Π·A = L·U with Π[r][rows[r]] = 1, so P = Πᵀ.
    let mut perm = vec![0.0; d * d];
    for (r, &src) in rows.iter().enumerate() {
        perm[src * d + r] = 1.0;
    }
    (perm, lower, upper)
}

/// Learnable global scale (2021 `widen`): sampling direction `x = z·s`, parameter `[s]`.
#[derive(Debug, Clone)]
pub(crate) struct GlobalScale {
    dim: usize,
}

impl GlobalScale {
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        input: &[f64],
        output: &mut [f64],
        log_det: &mut [f64],
        tape: Option<&mut LayerTape>,
    ) {
        let s = p[0];
        let ld = self.dim as f64 * s.ln();
        match dir {
            Direction::Sampling => output.iter_mut().zip(input).for_each(|(o, v)| *o = v * s),
            Direction::Density => output.iter_mut().zip(input).for_each(|(o, v)| *o = v / s),
        }
        let ld = if dir == Direction::Sampling { ld } else { -ld };
        log_det[..n].iter_mut().for_each(|v| *v += ld);
        if let Some(t) = tape {
            assign_copy(&mut t.input, input);
            assign_copy(&mut t.output, output);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        tape: &LayerTape,
        g_out: &[f64],
        g_ld: &[f64],
        g_in: &mut [f64],
        g_params: Option<&mut [f64]>,
    ) {
        let s = p[0];
        let dim = self.dim as f64;
        let sum_g_ld: f64 = g_ld[..n].iter().sum();
        let g_s = match dir {
            // x = z·s: ∂x/∂z = s, ∂x/∂s = z, ∂ld/∂s = D/s.
            Direction::Sampling => {
                g_in.iter_mut().zip(g_out).for_each(|(gi, go)| *gi = go * s);
                g_out.iter().zip(&tape.input).map(|(g, z)| g * z).sum::<f64>() + dim * sum_g_ld / s
            }
            // z = x/s: ∂z/∂x = 1/s, ∂z/∂s = −z/s, ∂ld/∂s = −D/s.
            Direction::Density => {
                g_in.iter_mut().zip(g_out).for_each(|(gi, go)| *gi = go / s);
                -g_out.iter().zip(&tape.output).map(|(g, z)| g * z).sum::<f64>() / s - dim * sum_g_ld / s
            }
        };
        if let Some(gp) = g_params {
            gp[0] += g_s;
        }
    }
}

/// One flow layer (closed set, dispatched by `match`).
#[derive(Debug, Clone)]
pub(crate) enum Layer {
    Coupling(Coupling),
    ActNorm(ActNorm),
    Lu(LuLinear),
    GlobalScale(GlobalScale),
}

impl Layer {
    /// Builds the layer and writes its initial parameters into `p` (its slice of the flat vector).
    pub(crate) fn build(dim: usize, spec: &LayerSpec, p: &mut [f64], rng: &mut dyn RngCore) -> Layer {
        match spec {
            LayerSpec::Coupling(c) => {
                let layer = Coupling::new(dim, c);
                layer.mlp.init(p, rng);
                Layer::Coupling(layer)
            }
            LayerSpec::ActNorm => {
                // Identity until the data-dependent initialisation: loc = 0, softplus(scale) = 1.
                p[..dim].fill(0.0);
                p[dim..].fill(inverse_softplus(1.0));
                Layer::ActNorm(ActNorm { dim })
            }
            LayerSpec::LuLinear => {
                let mut lu = LuLinear { dim, perm: vec![0.0; dim * dim], sign: vec![1.0; dim] };
                lu.init(p, rng);
                Layer::Lu(lu)
            }
            LayerSpec::GlobalScale { init } => {
                p[0] = *init;
                Layer::GlobalScale(GlobalScale { dim })
            }
            #[allow(unreachable_patterns)]
            other => unreachable!("layer {other:?} is validated away"),
        }
    }

    /// Applies the layer in direction `dir` to `n` rows, adding its log|det| per row; records into `tape` if given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        input: &[f64],
        output: &mut [f64],
        log_det: &mut [f64],
        tape: Option<&mut LayerTape>,
    ) {
        match self {
            Layer::Coupling(l) => l.apply(p, dir, n, input, output, log_det, tape),
            Layer::ActNorm(l) => l.apply(p, dir, n, input, output, log_det, tape),
            Layer::Lu(l) => l.apply(p, dir, n, input, output, log_det, tape),
            Layer::GlobalScale(l) => l.apply(p, dir, n, input, output, log_det, tape),
        }
    }

    /// Backward of a recorded `apply` in direction `dir`: writes ∂L/∂input into `g_in`, accumulates ∂L/∂θ.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        p: &[f64],
        dir: Direction,
        n: usize,
        tape: &LayerTape,
        g_out: &[f64],
        g_ld: &[f64],
        g_in: &mut [f64],
        g_params: Option<&mut [f64]>,
    ) {
        match self {
            Layer::Coupling(l) => l.backward(p, dir, n, tape, g_out, g_ld, g_in, g_params),
            Layer::ActNorm(l) => l.backward(p, dir, n, tape, g_out, g_ld, g_in, g_params),
            Layer::Lu(l) => l.backward(p, dir, n, tape, g_out, g_ld, g_in, g_params),
            Layer::GlobalScale(l) => l.backward(p, dir, n, tape, g_out, g_ld, g_in, g_params),
        }
    }

    /// Tensor names, shapes and offsets (within the layer's parameter slice) of its trainable parameters.
    pub(crate) fn param_tensors(&self, dim: usize) -> Vec<(String, Vec<usize>, usize)> {
        match self {
            Layer::Coupling(c) => {
                let mut out = Vec::new();
                for l in 0..c.mlp.n_linear() {
                    let (inn, o) = (c.mlp.sizes[l], c.mlp.sizes[l + 1]);
                    let off = c.mlp.offset(l);
                    out.push((format!("mlp.{l}.weight"), vec![o, inn], off));
                    out.push((format!("mlp.{l}.bias"), vec![o], off + o * inn));
                }
                out
            }
            Layer::ActNorm(_) => vec![("loc".into(), vec![dim], 0), ("scale".into(), vec![dim], dim)],
            Layer::Lu(_) => vec![
                ("L".into(), vec![dim, dim], 0),
                ("U".into(), vec![dim, dim], dim * dim),
                ("log_S".into(), vec![dim], 2 * dim * dim),
            ],
            Layer::GlobalScale(_) => vec![("scaling_factor".into(), vec![1], 0)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lu_factors_reproduce_the_matrix() {
        let d = 5;
        let a: Vec<f64> = (0..d * d).map(|i| ((i as f64) * 1.37).sin()).collect();
        let (p, l, u) = lu_partial_pivot(&a, d);
        let back = matmul_small(&p, &matmul_small(&l, &u, d, Op::N, Op::N), d, Op::N, Op::N);
        for (x, y) in a.iter().zip(&back) {
            assert!((x - y).abs() < 1e-12);
        }
    }

    #[test]
    fn triangular_inverses_are_inverses() {
        let d = 4;
        let mut l = vec![0.0; d * d];
        let mut u = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                let v = ((i * d + j) as f64 * 0.91).cos();
                if j < i {
                    l[i * d + j] = v;
                } else {
                    u[i * d + j] = v + if i == j { 2.0 } else { 0.0 };
                }
            }
            l[i * d + i] = 1.0;
        }
        for (m, inv) in [(&l, invert_unit_lower(&l, d)), (&u, invert_upper(&u, d))] {
            let prod = matmul_small(m, &inv, d, Op::N, Op::N);
            for i in 0..d {
                for j in 0..d {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((prod[i * d + j] - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn scale_maps_give_unit_scale_at_zero_and_correct_derivatives() {
        for map in [ScaleMap::Exp, ScaleMap::TwoSigmoid, ScaleMap::BoundedSigmoid { low: 0.1, high: 10.0 }] {
            let ls = LogScale::new(map);
            assert!(ls.eval(0.0).0.abs() < 1e-14, "{map:?} must give σ(0) = 1");
            for &s in &[-3.0, -0.4, 0.7, 2.5] {
                let h = 1e-6;
                let (l, sigma, dl) = ls.eval(s);
                assert!((sigma - l.exp()).abs() < 1e-14 * sigma, "{map:?}: σ must equal e^ℓ");
                let fd = (ls.eval(s + h).0 - ls.eval(s - h).0) / (2.0 * h);
                assert!((fd - dl).abs() < 1e-8, "{map:?} at {s}");
            }
        }
        assert!((inverse_softplus(softplus(0.3)) - 0.3).abs() < 1e-14);
        assert!((inverse_softplus(softplus(-4.0)) + 4.0).abs() < 1e-12);
    }
}
