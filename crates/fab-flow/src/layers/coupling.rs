//! Affine coupling: `cond` coordinates pass through and condition an MLP that scales and shifts `transformed`.

use super::mlp::Mlp;
use super::scalar::{AffineKind, affine_kind, sigmoid};
use super::{BackPass, FlowLayer, Pass, TapeBuffers};
use crate::scratch::{assign_copy, give, take_for_overwrite};
use crate::spec::{Activation, BaseSpec, CouplingSpec, Direction, FlowSpec, HeadLayout, LayerSpec, Math, ScaleMap};
use crate::vmath;

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

    /// [`LogScale::eval`] over a block of scale logits `s` with vmath's slice kernels ([`Math::Vector`]): writes
    /// `ℓ`, `σ` and `dℓ/ds` per element. The same formulas as `eval`, each transcendental replaced by one pass of
    /// a vectorised kernel over the block; the remaining element-wise arithmetic is the same, with selects instead
    /// of `max` so that no signed-zero choice depends on the instruction set.
    fn eval_block(&self, s: &[f64], l: &mut [f64], sigma: &mut [f64], dl: &mut [f64]) {
        match self.map {
            ScaleMap::Exp => {
                vmath::exp_slice(s, sigma);
                l.copy_from_slice(s);
                dl.fill(1.0);
            }
            ScaleMap::TwoSigmoid => {
                // e = e^{−|s|} in `sigma`, ln(1 + e) in `dl`, then both are overwritten element by element.
                for (e, &v) in sigma.iter_mut().zip(s) {
                    *e = -v.abs();
                }
                vmath::exp_in_place(sigma);
                vmath::ln_1p_slice(sigma, dl);
                for (((&v, l), sg), d) in s.iter().zip(l.iter_mut()).zip(sigma.iter_mut()).zip(dl.iter_mut()) {
                    let (e, ln_1p_e) = (*sg, *d);
                    let g = if v >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
                    let softplus_neg_s = (if v < 0.0 { -v } else { 0.0 }) + ln_1p_e;
                    *l = std::f64::consts::LN_2 - softplus_neg_s;
                    *sg = 2.0 * g;
                    *d = 1.0 - g;
                }
            }
            ScaleMap::BoundedSigmoid { low, high } => {
                // g = logistic(s + c) in `dl`, σ from it, ℓ = ln σ, then dℓ/ds over g.
                for (g, &v) in dl.iter_mut().zip(s) {
                    *g = v + self.offset;
                }
                vmath::logistic_in_place(dl);
                for (sg, &g) in sigma.iter_mut().zip(dl.iter()) {
                    *sg = low + (high - low) * g;
                }
                vmath::ln_slice(sigma, l);
                for (d, &sg) in dl.iter_mut().zip(sigma.iter()) {
                    let g = *d;
                    *d = (high - low) * g * (1.0 - g) / sg;
                }
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

/// Affine coupling layer.
#[derive(Debug, Clone)]
pub(crate) struct Coupling {
    dim: usize,
    cond: Vec<usize>,
    transformed: Vec<usize>,
    pub(crate) mlp: Mlp,
    log_scale: LogScale,
    head_layout: HeadLayout,
    affine_direction: Direction,
    /// Per element with libm, or by vmath's kernels over the whole block.
    pub(crate) math: Math,
}

/// What a recorded coupling pass saves.
#[derive(Debug, Clone, Default)]
pub(crate) struct CouplingTape {
    /// The layer's input (`n × D`): ∂w/∂ℓ = v·e^ℓ of the forward affine map uses it.
    input: Vec<f64>,
    /// The layer's output (`n × D`): the inverse affine map's ∂w/∂ℓ = −w uses it.
    output: Vec<f64>,
    /// Conditioner input and post-activation hidden values, one buffer per linear layer input.
    hidden: Vec<Vec<f64>>,
    /// dℓ/ds of the scale map per transformed element (`n × k`).
    dlog_scale: Vec<f64>,
    /// σ = e^ℓ per transformed element (`n × k`), so the backward pass needs no `exp`.
    scale: Vec<f64>,
}

impl TapeBuffers for CouplingTape {
    fn recycle(&mut self) {
        for b in [&mut self.input, &mut self.output, &mut self.dlog_scale, &mut self.scale] {
            give(std::mem::take(b));
        }
        self.hidden.drain(..).for_each(give);
    }
}

impl Coupling {
    pub(crate) fn new(dim: usize, spec: &CouplingSpec, math: Math) -> Self {
        Self {
            dim,
            cond: spec.cond.clone(),
            transformed: spec.transformed.clone(),
            mlp: Mlp { sizes: spec.mlp_sizes(), activation: spec.activation },
            log_scale: LogScale::new(spec.scale_map),
            head_layout: spec.head_layout,
            affine_direction: spec.affine_direction,
            math,
        }
    }

    fn gather_cond(&self, n: usize, input: &[f64]) -> Vec<f64> {
        super::gather_columns(n, self.dim, &self.cond, input)
    }

    /// Applies the affine maps given the conditioner output `head`; `record(i·k + j, σ, dℓ/ds)` sees every
    /// transformed element (a no-op for the unrecorded pass, so both passes run the same arithmetic).
    #[inline(always)]
    fn transform(&self, pass: Pass<'_>, head: &[f64], record: impl FnMut(usize, f64, f64)) {
        match self.math {
            // The scale map per element, inside the affine loop (libm).
            Math::Libm => self.affine(pass, head, |head_row, _, si| self.log_scale.eval(head_row[si]), record),
            // All scale logits of the block first, then the scale map over them with vmath's kernels.
            Math::Vector => {
                let (n, k) = (pass.n, self.transformed.len());
                // Every element of these is written below.
                let mut s = take_for_overwrite(n * k);
                for (s_row, head_row) in s.chunks_exact_mut(k).zip(head.chunks_exact(2 * k)) {
                    for (j, sv) in s_row.iter_mut().enumerate() {
                        *sv = head_row[head_positions(self.head_layout, j, k).0];
                    }
                }
                let (mut l, mut sigma, mut dl) =
                    (take_for_overwrite(n * k), take_for_overwrite(n * k), take_for_overwrite(n * k));
                self.log_scale.eval_block(&s, &mut l, &mut sigma, &mut dl);
                self.affine(pass, head, |_, e, _| (l[e], sigma[e], dl[e]), record);
                [s, l, sigma, dl].into_iter().for_each(give);
            }
        }
    }

    /// The affine maps of [`Coupling::transform`], with `scale(head row, i·k + j, position of the raw scale)` giving
    /// `(ℓ, σ, dℓ/ds)` of each transformed element.
    #[inline(always)]
    fn affine(
        &self,
        pass: Pass<'_>,
        head: &[f64],
        scale: impl Fn(&[f64], usize, usize) -> (f64, f64, f64),
        mut record: impl FnMut(usize, f64, f64),
    ) {
        let Pass { dir, n, input, output, log_det, .. } = pass;
        let k = self.transformed.len();
        let kind = affine_kind(dir, self.affine_direction);
        output.copy_from_slice(input);
        for i in 0..n {
            let head_row = &head[i * 2 * k..(i + 1) * 2 * k];
            let mut ld = 0.0;
            for (j, &col) in self.transformed.iter().enumerate() {
                let (si, ti) = head_positions(self.head_layout, j, k);
                let (l, sigma, dl) = scale(head_row, i * k + j, si);
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
                record(i * k + j, sigma, dl);
            }
            log_det[i] += ld;
        }
    }
}

impl FlowLayer for Coupling {
    type Tape = CouplingTape;

    fn apply(&self, pass: Pass<'_>) {
        let head = self.mlp.forward(pass.p, pass.n, self.gather_cond(pass.n, pass.input));
        self.transform(pass, &head, |_, _, _| {});
        give(head);
    }

    fn apply_recording(&self, pass: Pass<'_>, tape: &mut CouplingTape) {
        let (n, k) = (pass.n, self.transformed.len());
        let head = self.mlp.forward_recording(pass.p, n, self.gather_cond(n, pass.input), &mut tape.hidden);
        // Every element of these is written by `transform`.
        let (mut dls, mut sc) = (take_for_overwrite(n * k), take_for_overwrite(n * k));
        let Pass { p, dir, n, input, output, log_det } = pass;
        let reborrowed = Pass { p, dir, n, input, output: &mut *output, log_det };
        self.transform(reborrowed, &head, |e, sigma, dl| {
            dls[e] = dl;
            sc[e] = sigma;
        });
        assign_copy(&mut tape.input, input);
        assign_copy(&mut tape.output, output);
        give(std::mem::replace(&mut tape.dlog_scale, dls));
        give(std::mem::replace(&mut tape.scale, sc));
        give(head);
    }

    fn backward(&self, back: BackPass<'_>, tape: &CouplingTape) {
        let BackPass { p, dir, n, g_out, g_ld, g_in, g_params } = back;
        let (k, dim) = (self.transformed.len(), self.dim);
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
        super::add_column_gradient(n, dim, &self.cond, g_cond, g_in);
    }

    fn param_tensors(&self) -> Vec<(String, Vec<usize>, usize)> {
        self.mlp.param_tensors()
    }

    fn examples() -> Vec<(&'static str, FlowSpec)> {
        let leaky = Activation::LeakyRelu { slope: 0.01 };
        let one = |dim: usize,
                   cond: Vec<usize>,
                   transformed: Vec<usize>,
                   hidden: Vec<usize>,
                   activation,
                   scale_map,
                   head_layout,
                   affine_direction| FlowSpec {
            dim,
            layers: vec![LayerSpec::Coupling(CouplingSpec {
                cond,
                transformed,
                hidden,
                activation,
                scale_map,
                head_layout,
                affine_direction,
            })],
            base: BaseSpec::StandardNormal,
            math: Math::Libm,
        };
        vec![
            (
                "coupling 2021 (flipped halves, 2·sigmoid, leaky ReLU)",
                one(
                    3,
                    vec![2],
                    vec![1, 0],
                    vec![7],
                    leaky,
                    ScaleMap::TwoSigmoid,
                    HeadLayout::ScaleThenShift,
                    Direction::Density,
                ),
            ),
            (
                "coupling ICLR (odd D, interleaved heads, exp, ReLU ×2)",
                one(
                    5,
                    vec![0, 1, 2],
                    vec![3, 4],
                    vec![6, 5],
                    Activation::Relu,
                    ScaleMap::Exp,
                    HeadLayout::InterleavedShiftScale,
                    Direction::Sampling,
                ),
            ),
            (
                "coupling bounded sigmoid, permutation split",
                one(
                    4,
                    vec![2, 0],
                    vec![3, 1],
                    vec![5],
                    leaky,
                    ScaleMap::BoundedSigmoid { low: 0.1, high: 10.0 },
                    HeadLayout::ScaleThenShift,
                    Direction::Sampling,
                ),
            ),
            (
                "coupling exp with density-side affine, 3 hidden",
                one(
                    4,
                    vec![1],
                    vec![0, 2, 3],
                    vec![4, 4, 3],
                    leaky,
                    ScaleMap::Exp,
                    HeadLayout::InterleavedShiftScale,
                    Direction::Density,
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::scalar::{inverse_softplus, softplus};

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

    /// The block evaluation (`Math::Vector`) against the per-element libm one, over logits from the saturated tails
    /// to zero: ℓ, σ and dℓ/ds within 8·ε·max(|value|, 1) (dℓ/ds = 1 − g and ℓ near 0 come out of cancellations
    /// whose error is relative to 1, not to the result).
    #[test]
    fn block_scale_maps_agree_with_the_per_element_ones() {
        let s: Vec<f64> = (0..4001).map(|i| (i as f64 - 2000.0) * 0.37).chain([0.0, -0.0, 1e-300, -1e-300]).collect();
        for map in [ScaleMap::Exp, ScaleMap::TwoSigmoid, ScaleMap::BoundedSigmoid { low: 0.1, high: 10.0 }] {
            let ls = LogScale::new(map);
            // Exp overflows beyond ±709; the couplings' logits never get near.
            let s: Vec<f64> = s.iter().copied().filter(|v| map != ScaleMap::Exp || v.abs() < 700.0).collect();
            let n = s.len();
            let (mut l, mut sigma, mut dl) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            ls.eval_block(&s, &mut l, &mut sigma, &mut dl);
            for (i, &v) in s.iter().enumerate() {
                let want = ls.eval(v);
                for (what, got, want) in [("ℓ", l[i], want.0), ("σ", sigma[i], want.1), ("dℓ/ds", dl[i], want.2)] {
                    let tol = 8.0 * f64::EPSILON * want.abs().max(1.0);
                    assert!((got - want).abs() <= tol, "{map:?} at s = {v}: {what} {got:e} vs libm {want:e}");
                }
            }
        }
    }
}
