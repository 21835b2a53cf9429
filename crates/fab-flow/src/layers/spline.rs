//! Rational-quadratic spline coupling (Durkan et al. 2019, "Neural Spline Flows") with identity tails.
//!
//! Each transformed coordinate gets a monotone rational-quadratic spline `g` on `[−B, B]` with `K` bins whose
//! widths, heights and `K + 1` knot derivatives come from the conditioner MLP; outside `[−B, B]` the map is the
//! identity. The conditioner output for coordinate `j` is `[u_w (K) | u_h (K) | u_d (K + 1)]` (distrax's order):
//! `w = w_min + (2B − K·w_min)·softmax(u_w)`, the same for heights, and `d = d_min + softplus(u_d + c)` with `c`
//! chosen so that `u = 0` gives `d = 1`: a zero last layer is the identity map. The backward pass is derived by
//! hand: local partials of `g` and `log g'` with respect to the bin's `(x_k, w_k, y_k, h_k, d_k, d_{k+1})`, then
//! through the cumulative sums, the softmax and the softplus to the raw outputs, and the MLP.

use super::mlp::Mlp;
use super::scalar::{sigmoid, softplus};
use super::{BackPass, FlowLayer, Pass, TapeBuffers};
use crate::scratch::{assign_copy, give, take_for_overwrite};
use crate::spec::{Activation, BaseSpec, Direction, FlowSpec, LayerSpec, Math, SplineCouplingSpec};

/// Upper bound on the number of bins (per-element work lives in fixed stack arrays of this size).
pub(crate) const MAX_BINS: usize = 64;

/// The spline of one transformed element: bin widths, heights, knot derivatives and knot positions.
struct Bins {
    k: usize,
    w: [f64; MAX_BINS],
    h: [f64; MAX_BINS],
    d: [f64; MAX_BINS + 1],
    xk: [f64; MAX_BINS + 1],
    yk: [f64; MAX_BINS + 1],
    /// softmax of the raw widths and heights (the backward pass needs them).
    pw: [f64; MAX_BINS],
    ph: [f64; MAX_BINS],
}

/// The bin an `x` falls in and its local coordinates.
struct Local {
    bin: usize,
    xi: f64,
    s: f64,
    num: f64,
    den: f64,
    /// `d_{k+1} ξ² + 2 s ξ(1 − ξ) + d_k (1 − ξ)²`, the numerator of `g'` over `s²`.
    nn: f64,
}

/// Partials of one quantity (`g` or `log g'`) with respect to the input and the bin's parameters.
#[derive(Default, Clone, Copy)]
struct Partials {
    x: f64,
    xk: f64,
    wk: f64,
    yk: f64,
    hk: f64,
    dk: f64,
    dk1: f64,
}

impl Partials {
    /// `a·self + b·other`.
    fn combine(a: f64, p: &Partials, b: f64, q: &Partials) -> Partials {
        Partials {
            x: a * p.x + b * q.x,
            xk: a * p.xk + b * q.xk,
            wk: a * p.wk + b * q.wk,
            yk: a * p.yk + b * q.yk,
            hk: a * p.hk + b * q.hk,
            dk: a * p.dk + b * q.dk,
            dk1: a * p.dk1 + b * q.dk1,
        }
    }
}

/// Rational-quadratic spline coupling layer.
#[derive(Debug, Clone)]
pub(crate) struct SplineCoupling {
    dim: usize,
    cond: Vec<usize>,
    transformed: Vec<usize>,
    pub(crate) mlp: Mlp,
    n_bins: usize,
    bound: f64,
    min_bin_width: f64,
    min_bin_height: f64,
    min_derivative: f64,
    /// `c = ln(e^{1 − d_min} − 1)`: raw derivative 0 gives `d = 1`.
    derivative_offset: f64,
    spline_direction: Direction,
}

/// What a recorded spline pass saves.
#[derive(Debug, Clone, Default)]
pub(crate) struct SplineTape {
    /// The layer's input (`n × D`).
    input: Vec<f64>,
    /// The layer's output (`n × D`).
    output: Vec<f64>,
    /// Conditioner input and post-activation hidden values, one buffer per linear layer input.
    hidden: Vec<Vec<f64>>,
    /// The conditioner output (`n × k·(3K + 1)`), from which the backward pass rebuilds every spline.
    head: Vec<f64>,
}

impl TapeBuffers for SplineTape {
    fn recycle(&mut self) {
        for b in [&mut self.input, &mut self.output, &mut self.head] {
            give(std::mem::take(b));
        }
        self.hidden.drain(..).for_each(give);
    }
}

impl SplineCoupling {
    pub(crate) fn new(dim: usize, spec: &SplineCouplingSpec) -> Self {
        Self {
            dim,
            cond: spec.cond.clone(),
            transformed: spec.transformed.clone(),
            mlp: Mlp { sizes: spec.mlp_sizes(), activation: spec.activation },
            n_bins: spec.n_bins,
            bound: spec.bound,
            min_bin_width: spec.min_bin_width,
            min_bin_height: spec.min_bin_height,
            min_derivative: spec.min_derivative,
            derivative_offset: (1.0 - spec.min_derivative).exp_m1().ln(),
            spline_direction: spec.spline_direction,
        }
    }

    /// Raw conditioner outputs per transformed coordinate.
    fn n_raw(&self) -> usize {
        3 * self.n_bins + 1
    }

    fn gather_cond(&self, n: usize, input: &[f64]) -> Vec<f64> {
        super::gather_columns(n, self.dim, &self.cond, input)
    }

    /// `out = min + (2B − K·min)·softmax(u)`; `probs` receives the softmax.
    fn bin_sizes(&self, u: &[f64], min: f64, out: &mut [f64], probs: &mut [f64]) {
        let m = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        for (p, &v) in probs.iter_mut().zip(u) {
            *p = (v - m).exp();
            total += *p;
        }
        let scale = 2.0 * self.bound - self.n_bins as f64 * min;
        for (o, p) in out.iter_mut().zip(probs.iter_mut()) {
            *p /= total;
            *o = min + scale * *p;
        }
    }

    /// The spline of one element from its raw outputs `[u_w | u_h | u_d]`.
    fn bins(&self, raw: &[f64]) -> Bins {
        let k = self.n_bins;
        let mut b = Bins {
            k,
            w: [0.0; MAX_BINS],
            h: [0.0; MAX_BINS],
            d: [0.0; MAX_BINS + 1],
            xk: [0.0; MAX_BINS + 1],
            yk: [0.0; MAX_BINS + 1],
            pw: [0.0; MAX_BINS],
            ph: [0.0; MAX_BINS],
        };
        self.bin_sizes(&raw[..k], self.min_bin_width, &mut b.w[..k], &mut b.pw[..k]);
        self.bin_sizes(&raw[k..2 * k], self.min_bin_height, &mut b.h[..k], &mut b.ph[..k]);
        for (d, &u) in b.d[..=k].iter_mut().zip(&raw[2 * k..3 * k + 1]) {
            *d = self.min_derivative + softplus(u + self.derivative_offset);
        }
        b.xk[0] = -self.bound;
        b.yk[0] = -self.bound;
        for i in 0..k {
            b.xk[i + 1] = b.xk[i] + b.w[i];
            b.yk[i + 1] = b.yk[i] + b.h[i];
        }
        // The last knot is the corner (B, B) exactly, so the spline meets the identity tails continuously.
        b.xk[k] = self.bound;
        b.yk[k] = self.bound;
        b
    }

    /// Index of the bin whose `[knots[i], knots[i+1])` holds `v` (`v` inside `[−B, B)`).
    fn find_bin(knots: &[f64], k: usize, v: f64) -> usize {
        (1..k).take_while(|&i| knots[i] <= v).count()
    }

    fn inside(&self, v: f64) -> bool {
        v >= -self.bound && v < self.bound
    }

    /// Local quantities at `x` (inside `[−B, B)`).
    fn local(b: &Bins, x: f64) -> Local {
        let bin = Self::find_bin(&b.xk, b.k, x);
        let (wk, hk, dk, dk1) = (b.w[bin], b.h[bin], b.d[bin], b.d[bin + 1]);
        let xi = ((x - b.xk[bin]) / wk).clamp(0.0, 1.0);
        let s = hk / wk;
        let t = xi * (1.0 - xi);
        let num = s * xi * xi + dk * t;
        let den = s + (dk1 + dk - 2.0 * s) * t;
        let nn = dk1 * xi * xi + 2.0 * s * t + dk * (1.0 - xi) * (1.0 - xi);
        Local { bin, xi, s, num, den, nn }
    }

    /// `(g(x), log g'(x))`.
    fn forward_elem(b: &Bins, x: f64) -> (f64, f64) {
        let l = Self::local(b, x);
        let g = b.yk[l.bin] + b.h[l.bin] * l.num / l.den;
        (g, Self::log_slope(&l))
    }

    /// `log g' = 2 ln s + ln nn − 2 ln den`.
    fn log_slope(l: &Local) -> f64 {
        2.0 * l.s.ln() + l.nn.ln() - 2.0 * l.den.ln()
    }

    /// `(x = g⁻¹(y), log g'(x))` by the numerically stable root of the bin's quadratic (Durkan et al., eq. 6–8).
    fn inverse_elem(b: &Bins, y: f64) -> (f64, f64) {
        let bin = Self::find_bin(&b.yk, b.k, y);
        let (wk, hk, dk, dk1) = (b.w[bin], b.h[bin], b.d[bin], b.d[bin + 1]);
        let s = hk / wk;
        let dy = y - b.yk[bin];
        let sum = dk1 + dk - 2.0 * s;
        let qa = hk * (s - dk) + dy * sum;
        let qb = hk * dk - dy * sum;
        let qc = -s * dy;
        let disc = (qb * qb - 4.0 * qa * qc).max(0.0);
        let xi = (2.0 * qc / (-qb - disc.sqrt())).clamp(0.0, 1.0);
        let x = b.xk[bin] + xi * wk;
        let l = Self::local(b, x);
        (x, Self::log_slope(&l))
    }

    /// Partials of `g` and of `log g'` at `x` with respect to `x` and the bin's parameters.
    fn partials(b: &Bins, l: &Local) -> (Partials, Partials) {
        let (wk, hk, dk, dk1) = (b.w[l.bin], b.h[l.bin], b.d[l.bin], b.d[l.bin + 1]);
        let (xi, s, den, nn) = (l.xi, l.s, l.den, l.nn);
        let t = xi * (1.0 - xi);
        let dt = 1.0 - 2.0 * xi;
        let r = l.num / den;
        let sum = dk1 + dk - 2.0 * s;
        // r = num/den: ∂r/∂v = (∂num/∂v − r·∂den/∂v)/den.
        let r_xi = (2.0 * s * xi + dk * dt - r * sum * dt) / den;
        let r_s = (xi * xi - r * (1.0 - 2.0 * t)) / den;
        let r_dk = (t - r * t) / den;
        let r_dk1 = (-r * t) / den;
        // log g' = 2 ln s + ln nn − 2 ln den.
        let nn_xi = 2.0 * dk1 * xi + 2.0 * s * dt - 2.0 * dk * (1.0 - xi);
        let lg_xi = nn_xi / nn - 2.0 * sum * dt / den;
        let lg_s = 2.0 / s + 2.0 * t / nn - 2.0 * (1.0 - 2.0 * t) / den;
        let lg_dk = (1.0 - xi) * (1.0 - xi) / nn - 2.0 * t / den;
        let lg_dk1 = xi * xi / nn - 2.0 * t / den;
        // ξ = (x − x_k)/w_k and s = h_k/w_k.
        let map = |f_xi: f64, f_s: f64, f_dk: f64, f_dk1: f64, direct_h: f64, direct_y: f64| Partials {
            x: f_xi / wk,
            xk: -f_xi / wk,
            wk: -(f_xi * xi + f_s * s) / wk,
            yk: direct_y,
            hk: f_s / wk + direct_h,
            dk: f_dk,
            dk1: f_dk1,
        };
        let g = map(hk * r_xi, hk * r_s, hk * r_dk, hk * r_dk1, r, 1.0);
        let lg = map(lg_xi, lg_s, lg_dk, lg_dk1, 0.0, 0.0);
        (g, lg)
    }

    /// Applies the splines (or their inverses) of every transformed element, given the conditioner output `head`.
    fn transform(&self, pass: Pass<'_>, head: &[f64]) {
        let Pass { dir, n, input, output, log_det, .. } = pass;
        let (k, nr) = (self.transformed.len(), self.n_raw());
        let forward = dir == self.spline_direction;
        output.copy_from_slice(input);
        for i in 0..n {
            let mut ld = 0.0;
            for (j, &col) in self.transformed.iter().enumerate() {
                let v = input[i * self.dim + col];
                if !self.inside(v) {
                    continue;
                }
                let raw = &head[(i * k + j) * nr..(i * k + j + 1) * nr];
                let b = self.bins(raw);
                let (w, lg) = if forward { Self::forward_elem(&b, v) } else { Self::inverse_elem(&b, v) };
                output[i * self.dim + col] = w;
                ld += if forward { lg } else { -lg };
            }
            log_det[i] += ld;
        }
    }
}

impl FlowLayer for SplineCoupling {
    type Tape = SplineTape;

    fn apply(&self, pass: Pass<'_>) {
        let head = self.mlp.forward(pass.p, pass.n, self.gather_cond(pass.n, pass.input));
        self.transform(pass, &head);
        give(head);
    }

    fn apply_recording(&self, pass: Pass<'_>, tape: &mut SplineTape) {
        let n = pass.n;
        let head = self.mlp.forward_recording(pass.p, n, self.gather_cond(n, pass.input), &mut tape.hidden);
        let Pass { p, dir, n, input, output, log_det } = pass;
        self.transform(Pass { p, dir, n, input, output: &mut *output, log_det }, &head);
        assign_copy(&mut tape.input, input);
        assign_copy(&mut tape.output, output);
        give(std::mem::replace(&mut tape.head, head));
    }

    fn backward(&self, back: BackPass<'_>, tape: &SplineTape) {
        let BackPass { p, dir, n, g_out, g_ld, g_in, g_params } = back;
        let (k, dim, nr) = (self.transformed.len(), self.dim, self.n_raw());
        let forward = dir == self.spline_direction;
        // The spline's own input x is the layer input when applied forwards and the layer output otherwise.
        let x_of = if forward { &tape.input } else { &tape.output };
        g_in.copy_from_slice(g_out);
        let mut g_head = take_for_overwrite(n * k * nr);
        g_head.fill(0.0);
        for i in 0..n {
            for (j, &col) in self.transformed.iter().enumerate() {
                let x = x_of[i * dim + col];
                if !self.inside(x) {
                    continue; // identity tail: ∂in = ∂out, no parameter gradient
                }
                let raw = &tape.head[(i * k + j) * nr..(i * k + j + 1) * nr];
                let b = self.bins(raw);
                let l = Self::local(&b, x);
                let (pg, plg) = Self::partials(&b, &l);
                let go = g_out[i * dim + col];
                // Forward: out = g(x), ld += log g'. Inverse: out = x = g⁻¹(y), ld −= log g'(x), so with
                // A = ∂L/∂x = go − g_ld·∂log g'/∂x: ∂L/∂y = A/g' and ∂L/∂θ = −(A/g')·∂g/∂θ − g_ld·∂log g'/∂θ.
                let (coef_g, coef_lg, g_input) = if forward {
                    (go, g_ld[i], go * pg.x + g_ld[i] * plg.x)
                } else {
                    let a = go - g_ld[i] * plg.x;
                    (-a / pg.x, -g_ld[i], a / pg.x)
                };
                g_in[i * dim + col] = g_input;
                let c = Partials::combine(coef_g, &pg, coef_lg, &plg);
                let gh_row = &mut g_head[(i * k + j) * nr..(i * k + j + 1) * nr];
                self.raw_gradient(&b, l.bin, &c, raw, gh_row);
            }
        }
        let g_cond = self.mlp.backward(p, n, &tape.hidden, g_head, g_params);
        super::add_column_gradient(n, dim, &self.cond, g_cond, g_in);
    }

    fn param_tensors(&self) -> Vec<(String, Vec<usize>, usize)> {
        self.mlp.param_tensors()
    }

    fn examples() -> Vec<(&'static str, FlowSpec)> {
        let one = |dim, cond, transformed, hidden, n_bins, bound, spline_direction| FlowSpec {
            dim,
            layers: vec![LayerSpec::SplineCoupling(SplineCouplingSpec {
                cond,
                transformed,
                hidden,
                activation: Activation::Relu,
                n_bins,
                bound,
                min_bin_width: 1e-3,
                min_bin_height: 1e-3,
                min_derivative: 1e-3,
                spline_direction,
            })],
            base: BaseSpec::StandardNormal,
            math: Math::Libm,
        };
        vec![
            (
                "spline coupling, sampling-side spline, 5 bins on ±2 (points in the tails too)",
                one(3, vec![2], vec![0, 1], vec![6], 5, 2.0, Direction::Sampling),
            ),
            (
                "spline coupling, density-side spline, 8 bins on ±3, 2 hidden",
                one(4, vec![0, 3], vec![1, 2], vec![5, 4], 8, 3.0, Direction::Density),
            ),
        ]
    }
}

impl SplineCoupling {
    /// Chains the local partials `c` (of the weighted loss) through the knot sums, the softmax and the softplus
    /// into the raw conditioner outputs of one element.
    fn raw_gradient(&self, b: &Bins, bin: usize, c: &Partials, raw: &[f64], out: &mut [f64]) {
        let k = b.k;
        // x_k = −B + Σ_{i<k} w_i and y_k = −B + Σ_{i<k} h_i.
        let mut gw = [0.0; MAX_BINS];
        let mut gh = [0.0; MAX_BINS];
        for i in 0..bin {
            gw[i] += c.xk;
            gh[i] += c.yk;
        }
        gw[bin] += c.wk;
        gh[bin] += c.hk;
        // w = min + scale·softmax(u): ∂L/∂u_m = scale·p_m·(∂L/∂w_m − Σ_i p_i ∂L/∂w_i).
        let softmax_back = |g: &[f64], p: &[f64], min: f64, out: &mut [f64]| {
            let scale = 2.0 * self.bound - k as f64 * min;
            let mean: f64 = g.iter().zip(p).map(|(a, b)| a * b).sum();
            for ((o, &gi), &pi) in out.iter_mut().zip(g).zip(p) {
                *o = scale * pi * (gi - mean);
            }
        };
        softmax_back(&gw[..k], &b.pw[..k], self.min_bin_width, &mut out[..k]);
        softmax_back(&gh[..k], &b.ph[..k], self.min_bin_height, &mut out[k..2 * k]);
        // d = min + softplus(u + c): ∂d/∂u = sigmoid(u + c).
        let du = &mut out[2 * k..3 * k + 1];
        du[bin] = c.dk * sigmoid(raw[2 * k + bin] + self.derivative_offset);
        du[bin + 1] = c.dk1 * sigmoid(raw[2 * k + bin + 1] + self.derivative_offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n_bins: usize) -> SplineCoupling {
        SplineCoupling::new(
            2,
            &SplineCouplingSpec {
                cond: vec![0],
                transformed: vec![1],
                hidden: vec![3],
                activation: Activation::Relu,
                n_bins,
                bound: 2.0,
                min_bin_width: 1e-3,
                min_bin_height: 1e-3,
                min_derivative: 1e-3,
                spline_direction: Direction::Sampling,
            },
        )
    }

    fn raw(n: usize, seed: f64) -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + seed) * 1.37).sin() * 1.5).collect()
    }

    #[test]
    fn zero_raw_outputs_give_the_identity() {
        let l = layer(6);
        let b = l.bins(&vec![0.0; l.n_raw()]);
        for &x in &[-2.0, -1.3, -0.01, 0.0, 0.5, 1.999] {
            let (g, lg) = SplineCoupling::forward_elem(&b, x);
            assert!((g - x).abs() < 1e-12 && lg.abs() < 1e-12, "x = {x}: g = {g}, log g' = {lg}");
        }
    }

    #[test]
    fn inverse_inverts_the_spline_in_every_bin_and_at_knots() {
        let l = layer(7);
        let b = l.bins(&raw(l.n_raw(), 0.3));
        let mut xs: Vec<f64> = (0..200).map(|i| -2.0 + 4.0 * i as f64 / 200.0).collect();
        xs.extend_from_slice(&b.xk[..b.k]);
        xs.extend(b.xk[1..b.k].iter().map(|x| x - 1e-12));
        for &x in &xs {
            let (y, lg) = SplineCoupling::forward_elem(&b, x);
            let (x2, lg2) = SplineCoupling::inverse_elem(&b, y);
            assert!((x - x2).abs() < 1e-10, "x = {x}: inverse gives {x2}");
            assert!((lg - lg2).abs() < 1e-8, "x = {x}: log g' {lg} vs {lg2}");
        }
    }

    #[test]
    fn local_partials_match_central_differences() {
        let l = layer(5);
        let b = l.bins(&raw(l.n_raw(), 1.1));
        for &x in &[-1.7, -0.4, 0.2, 1.3] {
            let loc = SplineCoupling::local(&b, x);
            let (pg, plg) = SplineCoupling::partials(&b, &loc);
            let h = 1e-6;
            let f = |x: f64| SplineCoupling::forward_elem(&b, x);
            let (gp, lp) = f(x + h);
            let (gm, lm) = f(x - h);
            assert!((pg.x - (gp - gm) / (2.0 * h)).abs() < 1e-6, "∂g/∂x at {x}");
            assert!((plg.x - (lp - lm) / (2.0 * h)).abs() < 1e-5, "∂log g'/∂x at {x}");
        }
    }

    #[test]
    fn raw_output_gradient_matches_central_differences_in_bins_and_at_knots() {
        let l = layer(6);
        let nr = l.n_raw();
        let r0 = raw(nr, 0.7);
        let b = l.bins(&r0);
        let mut xs = vec![-1.9, -0.3, 0.8, 1.95];
        for &knot in &b.xk[1..b.k] {
            // Close to the knot but farther than the FD step moves it: log g' has a kink in θ AT a knot (the spline
            // is C¹, not C², so ∂log g'/∂x jumps there).
            xs.extend_from_slice(&[knot - 1e-4, knot + 1e-4]);
        }
        for &x in &xs {
            // One element's weighted loss 0.7·g − 1.3·log g', as a function of the raw outputs.
            let loss = |r: &[f64]| {
                let (g, lg) = SplineCoupling::forward_elem(&l.bins(r), x);
                0.7 * g - 1.3 * lg
            };
            let loc = SplineCoupling::local(&b, x);
            let (pg, plg) = SplineCoupling::partials(&b, &loc);
            let c = Partials::combine(0.7, &pg, -1.3, &plg);
            let mut got = vec![0.0; nr];
            l.raw_gradient(&b, loc.bin, &c, &r0, &mut got);
            let h = 1e-7;
            for m in 0..nr {
                let (mut up, mut down) = (r0.clone(), r0.clone());
                up[m] += h;
                down[m] -= h;
                let fd = (loss(&up) - loss(&down)) / (2.0 * h);
                assert!((got[m] - fd).abs() < 1e-6 * fd.abs().max(1.0), "x = {x}, raw {m}: {} vs {fd}", got[m]);
            }
        }
    }

    #[test]
    fn ignoring_the_knot_sums_fails_the_raw_gradient_check() {
        // The check above can fail: dropping ∂/∂x_k and ∂/∂y_k (the cumulative sums) changes the gradient.
        let l = layer(6);
        let r0 = raw(l.n_raw(), 0.7);
        let b = l.bins(&r0);
        let x = 0.8;
        let loc = SplineCoupling::local(&b, x);
        assert!(loc.bin > 0, "the test point must lie past the first bin");
        let (pg, plg) = SplineCoupling::partials(&b, &loc);
        let full = Partials::combine(0.7, &pg, -1.3, &plg);
        let truncated = Partials { xk: 0.0, yk: 0.0, ..full };
        let (mut a, mut t) = (vec![0.0; l.n_raw()], vec![0.0; l.n_raw()]);
        l.raw_gradient(&b, loc.bin, &full, &r0, &mut a);
        l.raw_gradient(&b, loc.bin, &truncated, &r0, &mut t);
        let diff: f64 = a.iter().zip(&t).map(|(x, y)| (x - y).abs()).sum();
        assert!(diff > 1e-3, "the knot-sum terms must matter: {diff}");
    }
}
