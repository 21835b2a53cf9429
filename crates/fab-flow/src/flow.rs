//! The assembled flow: one flat parameter vector, batched `log q`, sampling, and the three gradients FAB needs.
//!
//! Layers are stored in sampling order (base → data). `log q(x) = log N(z) + Σ log|det ∂f/∂x|` with `z = f(x)`
//! computed by applying the layers backwards in the density direction. Batches are cut into fixed-size row chunks
//! processed in parallel with rayon; the chunking never depends on the number of threads, and per-chunk
//! parameter gradients are summed in chunk order, so every result is bitwise reproducible.

use crate::error::FlowError;
use crate::layers::{BackPass, Layer, LayerTape, Pass};
use crate::scratch::{assign_copy, copy_of, give, give_from_chunks, take_for_overwrite, take_zeroed};
use crate::spec::{BaseSpec, Direction, FlowSpec, LayerSpec, Math};
use fab_core::{Batch, BatchMut, BatchRef, LogDensity, Proposal, ShapeError, stream_rng, sub_seed};
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::ops::Range;

/// Rows per parallel work item. Fixed (not derived from the thread count) so results are bitwise reproducible;
/// large enough that each GEMM runs near peak.
pub const CHUNK_ROWS: usize = 256;

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// A RealNVP-style normalizing flow `q_θ` with hand-derived gradients.
#[derive(Debug, Clone)]
pub struct Flow {
    spec: FlowSpec,
    layers: Vec<Layer>,
    ranges: Vec<Range<usize>>,
    base_range: Range<usize>,
    params: Vec<f64>,
    actnorm_initialized: bool,
}

/// Saved activations of one recorded pass over a batch, owned by the caller so one flow serves many threads.
#[derive(Debug, Clone, Default)]
pub struct FlowTape {
    n: usize,
    direction: Option<Direction>,
    /// Density pass: the base point `z`; sampling pass: the standard-normal noise `ε`.
    base: Vec<f64>,
    layers: Vec<LayerTape>,
}

impl FlowTape {
    /// An empty tape (buffers are allocated by the first recorded pass).
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of rows of the recorded pass.
    pub fn n_rows(&self) -> usize {
        self.n
    }
    /// Prepares the tape for a recorded pass of `n` rows in `dir` through `n_layers` layers (buffers are reused).
    fn start(&mut self, n: usize, dir: Direction, n_layers: usize) {
        self.n = n;
        self.direction = Some(dir);
        self.layers.resize_with(n_layers, LayerTape::default);
    }
    /// Hands the buffers back to the thread's scratch pool (internal chunk tapes are recycled after use).
    fn recycle(mut self) {
        give(std::mem::take(&mut self.base));
        self.layers.iter_mut().for_each(LayerTape::recycle);
    }
}

fn chunk_ranges(n: usize) -> Vec<(usize, usize)> {
    (0..n.div_ceil(CHUNK_ROWS)).map(|c| (c * CHUNK_ROWS, ((c + 1) * CHUNK_ROWS).min(n))).collect()
}

/// Runs `f` on every fixed-size row chunk (in parallel when there are several) and returns results in chunk order.
fn map_chunks<T: Send>(n: usize, f: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    let ranges = chunk_ranges(n);
    if ranges.len() <= 1 {
        ranges.into_iter().map(|(s, e)| f(s, e)).collect()
    } else {
        ranges.into_par_iter().map(|(s, e)| f(s, e)).collect()
    }
}

/// Runs `f(chunk index, item)` on per-chunk items (in parallel when there are several), results in chunk order.
fn map_owned_chunks<I: Send, T: Send>(items: Vec<I>, f: impl Fn(usize, I) -> T + Sync) -> Vec<T> {
    if items.len() <= 1 {
        items.into_iter().enumerate().map(|(c, it)| f(c, it)).collect()
    } else {
        items.into_par_iter().enumerate().map(|(c, it)| f(c, it)).collect()
    }
}

fn check_rows(what: &str, expected: usize, got: usize) -> Result<(), ShapeError> {
    if expected == got {
        Ok(())
    } else {
        Err(ShapeError::Mismatch { expected: format!("{what} with {expected} rows"), got: format!("{got} rows") })
    }
}

impl Flow {
    /// Builds a flow from its description; initial weights are a deterministic function of `seed`
    /// (layer `i` draws from `stream_rng(sub_seed(seed, &[i]), 0)`).
    pub fn new(spec: &FlowSpec, seed: u64) -> Result<Flow, FlowError> {
        spec.validate()?;
        let dim = spec.dim;
        let mut ranges = Vec::with_capacity(spec.layers.len());
        let mut offset = 0;
        for l in &spec.layers {
            let len = l.n_params(dim);
            ranges.push(offset..offset + len);
            offset += len;
        }
        let base_range = offset..offset + spec.base.n_params(dim);
        let mut params = vec![0.0; base_range.end];
        let layers = spec
            .layers
            .iter()
            .zip(&ranges)
            .enumerate()
            .map(|(i, (l, r))| {
                let mut rng = stream_rng(sub_seed(seed, &[i as u64]), 0);
                Layer::build(dim, l, spec.math, &mut params[r.clone()], &mut rng)
            })
            .collect();
        let actnorm_initialized = !spec.layers.iter().any(|l| matches!(l, LayerSpec::ActNorm));
        Ok(Flow { spec: spec.clone(), layers, ranges, base_range, params, actnorm_initialized })
    }

    /// The same flow (parameters, buffers, ActNorm state) with its coupling scale maps evaluated by `math`.
    pub fn with_math(mut self, math: Math) -> Flow {
        self.spec.math = math;
        self.layers.iter_mut().for_each(|l| l.set_math(math));
        self
    }

    /// The architecture description.
    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }
    /// Dimension of the space.
    pub fn dim(&self) -> usize {
        self.spec.dim
    }
    /// All trainable parameters, one flat vector (layers in sampling order, then the base).
    pub fn params(&self) -> &[f64] {
        &self.params
    }
    /// The parameters, mutably (the optimiser steps them in place).
    pub fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }
    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        self.params.len()
    }
    /// Range of layer `i`'s parameters in the flat vector.
    pub fn layer_param_range(&self, i: usize) -> Range<usize> {
        self.ranges[i].clone()
    }
    /// Whether the ActNorm layers have had their data-dependent initialisation (true when there are none).
    pub fn actnorm_initialized(&self) -> bool {
        self.actnorm_initialized
    }
    pub(crate) fn set_actnorm_initialized(&mut self, v: bool) {
        self.actnorm_initialized = v;
    }
    pub(crate) fn layers(&self) -> &[Layer] {
        &self.layers
    }
    pub(crate) fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }
    pub(crate) fn base_range(&self) -> Range<usize> {
        self.base_range.clone()
    }

    /// Data-dependent ActNorm initialisation (2021): draws `n` base points from `rng` and pushes them through the
    /// layers in sampling order; each ActNorm is set from the batch it receives so that its output has zero mean
    /// and unit variance. Deterministic given the rng; records the fact in the flow state (and in saved files).
    pub fn initialize_data_dependent(&mut self, rng: &mut dyn RngCore, n: usize) {
        let dim = self.dim();
        let eps = draw_noise(rng, n, dim);
        let mut cur = self.base_from_noise(&eps, n).0;
        let mut ld = vec![0.0; n];
        // Not `walk`: each ActNorm's parameters change just before it is applied.
        for i in self.visit_order(Direction::Sampling) {
            let range = self.ranges[i].clone();
            if let Layer::ActNorm(a) = &self.layers[i] {
                a.initialize_from_batch(&mut self.params[range.clone()], n, &cur);
            }
            let mut next = vec![0.0; n * dim];
            let pass = Pass {
                p: &self.params[range],
                dir: Direction::Sampling,
                n,
                input: &cur,
                output: &mut next,
                log_det: &mut ld,
            };
            self.layers[i].apply(pass);
            cur = next;
        }
        self.actnorm_initialized = true;
    }

    // ---------------------------------------------------------------- base distribution

    fn base_params(&self) -> Option<(&[f64], &[f64])> {
        match self.spec.base {
            BaseSpec::StandardNormal => None,
            BaseSpec::DiagGaussian => Some(self.params[self.base_range.clone()].split_at(self.dim())),
        }
    }

    /// `log N(z)` of one row.
    fn base_log_prob(&self, z: &[f64]) -> f64 {
        match self.base_params() {
            None => z.iter().map(|v| -0.5 * v * v - HALF_LN_2PI).sum(),
            Some((loc, log_scale)) => z
                .iter()
                .zip(loc.iter().zip(log_scale))
                .map(|(v, (m, ls))| {
                    let e = (v - m) * (-ls).exp();
                    -0.5 * e * e - ls - HALF_LN_2PI
                })
                .sum(),
        }
    }

    /// Base draws `z = loc + exp(log_scale)·ε` and their `log N(z)` from standard-normal noise `ε`.
    fn base_from_noise(&self, eps: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
        let dim = self.dim();
        let mut z = eps.to_vec();
        let mut lp = vec![0.0; n];
        for (i, (zr, er)) in z.chunks_exact_mut(dim).zip(eps.chunks_exact(dim)).enumerate() {
            let mut acc = 0.0;
            match self.base_params() {
                None => er.iter().for_each(|e| acc += -0.5 * e * e - HALF_LN_2PI),
                Some((loc, log_scale)) => {
                    for j in 0..dim {
                        zr[j] = loc[j] + log_scale[j].exp() * er[j];
                        acc += -0.5 * er[j] * er[j] - log_scale[j] - HALF_LN_2PI;
                    }
                }
            }
            lp[i] = acc;
        }
        (z, lp)
    }

    // ---------------------------------------------------------------- serial passes on one chunk

    /// Layer indices in the order a pass in `dir` visits them: sampling first → last, density last → first.
    fn visit_order(&self, dir: Direction) -> impl DoubleEndedIterator<Item = usize> + use<> {
        let len = self.layers.len();
        (0..len).map(move |i| if dir == Direction::Sampling { i } else { len - 1 - i })
    }

    /// The one layer walk: pushes `n` rows through every layer in `dir`'s order, each adding its log|det| per row
    /// to `log_det`; `step(i, pass)` applies layer `i` (recording or not). Returns the output rows.
    fn walk(
        &self,
        dir: Direction,
        n: usize,
        input: Vec<f64>,
        log_det: &mut [f64],
        mut step: impl FnMut(usize, Pass<'_>),
    ) -> Vec<f64> {
        let dim = self.dim();
        let mut cur = input;
        for i in self.visit_order(dir) {
            // Every layer writes its whole output.
            let mut next = take_for_overwrite(n * dim);
            let p = &self.params[self.ranges[i].clone()];
            step(i, Pass { p, dir, n, input: &cur, output: &mut next, log_det: &mut *log_det });
            give(std::mem::replace(&mut cur, next));
        }
        cur
    }

    /// The one backward walk: from ∂L/∂(output of a recorded pass in `dir`) `g` and ∂L/∂(log|det|) per row,
    /// visits the layers in reverse and returns ∂L/∂(input of the pass), accumulating ∂L/∂θ when asked.
    fn walk_back(
        &self,
        dir: Direction,
        tape: &FlowTape,
        mut g: Vec<f64>,
        g_ld: &[f64],
        mut grad_params: Option<&mut [f64]>,
    ) -> Vec<f64> {
        let (n, dim) = (tape.n, self.dim());
        for i in self.visit_order(dir).rev() {
            // Every layer's backward writes the whole input gradient.
            let mut g_in = take_for_overwrite(n * dim);
            let r = self.ranges[i].clone();
            let g_params = grad_params.as_deref_mut().map(|gp| &mut gp[r.clone()]);
            let back = BackPass { p: &self.params[r], dir, n, g_out: &g, g_ld, g_in: &mut g_in, g_params };
            self.layers[i].backward(back, &tape.layers[i]);
            give(std::mem::replace(&mut g, g_in));
        }
        g
    }

    /// Density pass on `n` rows: returns `log q`.
    fn density_pass(&self, x: &[f64], n: usize) -> Vec<f64> {
        let mut log_q = vec![0.0; n];
        let z = self.walk(Direction::Density, n, copy_of(x), &mut log_q, |i, pass| self.layers[i].apply(pass));
        self.add_base_log_prob(&mut log_q, &z);
        give(z);
        log_q
    }

    /// Density pass on `n` rows recorded into `tape` (with `z` as its base): returns `log q`.
    fn density_pass_recording(&self, x: &[f64], n: usize, tape: &mut FlowTape) -> Vec<f64> {
        tape.start(n, Direction::Density, self.layers.len());
        let mut log_q = vec![0.0; n];
        let layers = &mut tape.layers;
        let z = self.walk(Direction::Density, n, copy_of(x), &mut log_q, |i, pass| {
            self.layers[i].apply_recording(pass, &mut layers[i])
        });
        self.add_base_log_prob(&mut log_q, &z);
        give(std::mem::replace(&mut tape.base, z));
        log_q
    }

    /// `log q += log N(z)` row by row.
    fn add_base_log_prob(&self, log_q: &mut [f64], z: &[f64]) {
        for (lq, zr) in log_q.iter_mut().zip(z.chunks_exact(self.dim())) {
            *lq += self.base_log_prob(zr);
        }
    }

    /// Sampling pass from noise `ε` on `n` rows: returns `(x, log q)`.
    fn sampling_pass(&self, eps: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
        let (z, log_base) = self.base_from_noise(eps, n);
        let mut ld = vec![0.0; n];
        let x = self.walk(Direction::Sampling, n, z, &mut ld, |i, pass| self.layers[i].apply(pass));
        (x, sampling_log_q(&log_base, &ld))
    }

    /// Sampling pass from noise `ε` on `n` rows recorded into `tape` (with `ε` as its base): returns `(x, log q)`.
    fn sampling_pass_recording(&self, eps: &[f64], n: usize, tape: &mut FlowTape) -> (Vec<f64>, Vec<f64>) {
        tape.start(n, Direction::Sampling, self.layers.len());
        assign_copy(&mut tape.base, eps);
        let (z, log_base) = self.base_from_noise(eps, n);
        let mut ld = vec![0.0; n];
        let layers = &mut tape.layers;
        let x = self
            .walk(Direction::Sampling, n, z, &mut ld, |i, pass| self.layers[i].apply_recording(pass, &mut layers[i]));
        (x, sampling_log_q(&log_base, &ld))
    }

    /// Backward of a recorded density pass for `L = Σᵢ cᵢ·log q(xᵢ)`: returns ∂L/∂x (row `i` is `cᵢ·∇ₓ log q(xᵢ)`)
    /// and accumulates ∂L/∂θ into `grad_params` when given (the input-only path skips every weight-gradient GEMM).
    fn density_backward(&self, tape: &FlowTape, coeffs: &[f64], mut grad_params: Option<&mut [f64]>) -> Vec<f64> {
        let (n, dim) = (tape.n, self.dim());
        let mut g = take_zeroed(n * dim);
        // ∂ log N(z)/∂z and the base parameters.
        match self.base_params() {
            None => {
                for ((gr, zr), &c) in g.chunks_exact_mut(dim).zip(tape.base.chunks_exact(dim)).zip(coeffs) {
                    gr.iter_mut().zip(zr).for_each(|(gv, zv)| *gv = -c * zv);
                }
            }
            Some((loc, log_scale)) => {
                let mut g_loc = vec![0.0; dim];
                let mut g_ls = vec![0.0; dim];
                for ((gr, zr), &c) in g.chunks_exact_mut(dim).zip(tape.base.chunks_exact(dim)).zip(coeffs) {
                    for j in 0..dim {
                        let inv_var = (-2.0 * log_scale[j]).exp();
                        let diff = zr[j] - loc[j];
                        gr[j] = -c * diff * inv_var;
                        g_loc[j] += c * diff * inv_var;
                        g_ls[j] += c * (diff * diff * inv_var - 1.0);
                    }
                }
                if let Some(gp) = grad_params.as_deref_mut() {
                    let (gl, gs) = gp[self.base_range.clone()].split_at_mut(dim);
                    gl.iter_mut().zip(&g_loc).for_each(|(a, b)| *a += b);
                    gs.iter_mut().zip(&g_ls).for_each(|(a, b)| *a += b);
                }
            }
        }
        // log q = log N(z) + Σ log|det| of the density-direction layers: ∂L/∂(log|det|) = cᵢ.
        self.walk_back(Direction::Density, tape, g, coeffs, grad_params)
    }

    /// Backward of a recorded sampling pass: given ∂L/∂x and ∂L/∂log q per row, accumulates ∂L/∂θ.
    fn sampling_backward(&self, tape: &FlowTape, grad_x: &[f64], grad_log_q: &[f64], grad_params: &mut [f64]) {
        let dim = self.dim();
        // log q = log N − Σ ld_sampling, so every layer's log-det gets −∂L/∂log q.
        let g_ld: Vec<f64> = grad_log_q.iter().map(|v| -v).collect();
        let g = self.walk_back(Direction::Sampling, tape, grad_x.to_vec(), &g_ld, Some(grad_params));
        if let Some((_, log_scale)) = self.base_params() {
            // z = loc + e^{ls}·ε and log N = Σ(−ε²/2 − ls − ½ln2π) with ε fixed.
            let (gl, gs) = grad_params[self.base_range.clone()].split_at_mut(dim);
            for ((gr, er), &glq) in g.chunks_exact(dim).zip(tape.base.chunks_exact(dim)).zip(grad_log_q) {
                for j in 0..dim {
                    gl[j] += gr[j];
                    gs[j] += gr[j] * log_scale[j].exp() * er[j] - glq;
                }
            }
        }
    }

    // ---------------------------------------------------------------- caller-owned-tape API (serial)

    /// `log q` of every row of `xs`, recording the pass into `tape` for [`Flow::backward_log_q`].
    pub fn log_q_recorded(&self, xs: BatchRef<'_>, tape: &mut FlowTape) -> Vec<f64> {
        assert_eq!(xs.dim(), self.dim(), "log_q_recorded: batch dimension differs from the flow's");
        self.density_pass_recording(xs.as_slice(), xs.n_rows(), tape)
    }

    /// Backward of [`Flow::log_q_recorded`] for `L = Σᵢ cᵢ·log q(xᵢ)`: writes `cᵢ·∇ₓ log q(xᵢ)` into `grad_x` if
    /// given and accumulates `∇θ L` into `grad_params` if given. Rows are not filtered here: use
    /// [`Flow::log_q_grad_params`] when some rows may be non-finite.
    pub fn backward_log_q(
        &self,
        tape: &FlowTape,
        coeffs: &[f64],
        grad_x: Option<BatchMut<'_>>,
        grad_params: Option<&mut [f64]>,
    ) {
        assert_eq!(tape.direction, Some(Direction::Density), "backward_log_q needs a tape from log_q_recorded");
        assert_eq!(coeffs.len(), tape.n, "backward_log_q: one coefficient per recorded row");
        let g = self.density_backward(tape, coeffs, grad_params);
        if let Some(mut gx) = grad_x {
            gx.as_mut_slice().copy_from_slice(&g);
        }
    }

    /// Sampling pass from standard-normal noise `ε`, recorded into `tape` for [`Flow::backward_sample`].
    pub fn sample_recorded(&self, eps: BatchRef<'_>, tape: &mut FlowTape) -> (Batch, Vec<f64>) {
        assert_eq!(eps.dim(), self.dim(), "sample_recorded: noise dimension differs from the flow's");
        let (x, lq) = self.sampling_pass_recording(eps.as_slice(), eps.n_rows(), tape);
        (Batch::from_vec(x, self.dim()).expect("n × dim by construction"), lq)
    }

    /// Backward of [`Flow::sample_recorded`]: accumulates `∇θ L` given `∂L/∂x` and `∂L/∂log q` per row.
    pub fn backward_sample(&self, tape: &FlowTape, grad_x: BatchRef<'_>, grad_log_q: &[f64], grad_params: &mut [f64]) {
        assert_eq!(tape.direction, Some(Direction::Sampling), "backward_sample needs a tape from sample_recorded");
        assert_eq!(grad_x.n_rows(), tape.n);
        assert_eq!(grad_log_q.len(), tape.n);
        assert_eq!(grad_params.len(), self.n_params());
        self.sampling_backward(tape, grad_x.as_slice(), grad_log_q, grad_params);
    }

    // ---------------------------------------------------------------- batched, parallel API

    /// Density-direction transform of every row: `(z, Σ log|det ∂f/∂x|)`, without the base term.
    pub fn to_base(&self, xs: BatchRef<'_>) -> (Batch, Vec<f64>) {
        self.through_layers(xs, Direction::Density)
    }

    /// Sampling-direction transform of every row: `(x, Σ log|det ∂f⁻¹/∂z|)`, with the base taken as given
    /// (the layers only, no base location/scale).
    pub fn from_base(&self, zs: BatchRef<'_>) -> (Batch, Vec<f64>) {
        self.through_layers(zs, Direction::Sampling)
    }

    /// Pushes every row through the layers in `dir` (sampling: first to last; density: last to first), summing
    /// their log-dets; no base term and no tape.
    fn through_layers(&self, rows: BatchRef<'_>, dir: Direction) -> (Batch, Vec<f64>) {
        let dim = self.dim();
        let parts = map_chunks(rows.n_rows(), |s, e| {
            let mut ld = vec![0.0; e - s];
            let input = copy_of(rows.slice_rows(s, e).as_slice());
            let out = self.walk(dir, e - s, input, &mut ld, |i, pass| self.layers[i].apply(pass));
            (out, ld)
        });
        let (out, ld) = concat(parts);
        (Batch::from_vec(out, dim).expect("n × dim by construction"), ld)
    }

    /// `log q(x)` of every row.
    pub fn log_q(&self, xs: BatchRef<'_>) -> Vec<f64> {
        assert_eq!(xs.dim(), self.dim(), "log_q: batch dimension differs from the flow's");
        let parts = map_chunks(xs.n_rows(), |s, e| self.density_pass(xs.slice_rows(s, e).as_slice(), e - s));
        parts.concat()
    }

    /// `log q(x)` and `∇ₓ log q(x)` of every row (no parameter gradient is formed).
    pub fn log_q_grad_x(&self, xs: BatchRef<'_>, mut grad_x: BatchMut<'_>) -> Vec<f64> {
        assert_eq!(xs.dim(), self.dim(), "log_q_grad_x: batch dimension differs from the flow's");
        assert_eq!(grad_x.n_rows(), xs.n_rows(), "log_q_grad_x: gradient batch has the wrong number of rows");
        let (n, dim) = (xs.n_rows(), self.dim());
        let mut log_q = vec![0.0; n];
        // Each chunk writes its rows of the outputs directly (no per-chunk result vectors to concatenate).
        let chunk = |(c, (gx, lq)): (usize, (&mut [f64], &mut [f64]))| {
            let (s, e) = (c * CHUNK_ROWS, c * CHUNK_ROWS + lq.len());
            let mut tape = FlowTape::new();
            lq.copy_from_slice(&self.density_pass_recording(xs.slice_rows(s, e).as_slice(), e - s, &mut tape));
            let g = self.density_backward(&tape, &vec![1.0; e - s], None);
            gx.copy_from_slice(&g);
            give(g);
            tape.recycle();
        };
        if n <= CHUNK_ROWS {
            if n > 0 {
                chunk((0, (grad_x.as_mut_slice(), &mut log_q)));
            }
        } else {
            grad_x
                .as_mut_slice()
                .par_chunks_mut(CHUNK_ROWS * dim)
                .zip(log_q.par_chunks_mut(CHUNK_ROWS))
                .enumerate()
                .for_each(chunk);
        }
        log_q
    }

    /// Returns `log q(xᵢ)` for every row and ACCUMULATES `Σᵢ cᵢ·∇θ log q(xᵢ)` into `grad_params`.
    ///
    /// Rows with `cᵢ = 0`, a non-finite `cᵢ` or a non-finite `log q(xᵢ)` are left out of the gradient (they are
    /// re-run without them, so a NaN row cannot poison the sum); their `log q` is still returned.
    pub fn log_q_grad_params(&self, xs: BatchRef<'_>, coeffs: &[f64], grad_params: &mut [f64]) -> Vec<f64> {
        self.log_q_grad_params_impl(xs, coeffs, grad_params, None)
    }

    /// As [`Flow::log_q_grad_params`], and also writes `cᵢ·∇ₓ log q(xᵢ)` into row `i` of `grad_x` (zero for
    /// rows left out), from the same recorded pass.
    pub fn log_q_grad_params_and_x(
        &self,
        xs: BatchRef<'_>,
        coeffs: &[f64],
        grad_params: &mut [f64],
        grad_x: BatchMut<'_>,
    ) -> Vec<f64> {
        self.log_q_grad_params_impl(xs, coeffs, grad_params, Some(grad_x))
    }

    fn log_q_grad_params_impl(
        &self,
        xs: BatchRef<'_>,
        coeffs: &[f64],
        grad_params: &mut [f64],
        grad_x: Option<BatchMut<'_>>,
    ) -> Vec<f64> {
        let dim = self.dim();
        assert_eq!(xs.dim(), dim, "log_q_grad_params: batch dimension differs from the flow's");
        assert_eq!(coeffs.len(), xs.n_rows(), "log_q_grad_params: one coefficient per row");
        assert_eq!(grad_params.len(), self.n_params(), "log_q_grad_params: gradient length differs from n_params");
        let want_x = grad_x.is_some();
        let parts = map_chunks(xs.n_rows(), |s, e| {
            let x = xs.slice_rows(s, e).as_slice();
            self.grad_params_chunk(x, &coeffs[s..e], want_x)
        });
        let mut log_q = Vec::with_capacity(xs.n_rows());
        let mut gx_all = Vec::new();
        let n_chunks = parts.len();
        for (lq, gp, gx) in parts {
            log_q.extend_from_slice(&lq);
            grad_params.iter_mut().zip(&gp).for_each(|(a, b)| *a += b);
            gx_all.extend_from_slice(&gx);
            give_from_chunks(gp, n_chunks);
        }
        if let Some(mut gx) = grad_x {
            gx.as_mut_slice().copy_from_slice(&gx_all);
        }
        log_q
    }

    /// Records the density pass over `xs` ONCE (chunk-parallel), hands the whole batch's `log q` to
    /// `coeffs_from_log_q`, then back-propagates `L = Σᵢ cᵢ·log q(xᵢ)` through the recorded chunks, ACCUMULATING
    /// `Σᵢ cᵢ·∇θ log q(xᵢ)` into `grad_params`. Returns `log q` (bitwise equal to [`Flow::log_q`]).
    ///
    /// For losses whose coefficients depend on `log q` (the FAB losses): one density pass per gradient step instead
    /// of `log_q` followed by [`Flow::log_q_grad_params`]. The gradient is bitwise equal to that pair's: rows with
    /// `cᵢ = 0`, a non-finite `cᵢ` or a non-finite `log q(xᵢ)` are left out in the same way (a chunk holding such
    /// a row is recorded again without it, the rare path).
    pub fn log_q_then_grad_params(
        &self,
        xs: BatchRef<'_>,
        coeffs_from_log_q: impl FnOnce(&[f64]) -> Vec<f64>,
        grad_params: &mut [f64],
    ) -> Vec<f64> {
        let dim = self.dim();
        assert_eq!(xs.dim(), dim, "log_q_then_grad_params: batch dimension differs from the flow's");
        assert_eq!(grad_params.len(), self.n_params(), "log_q_then_grad_params: gradient length differs from n_params");
        let recorded = map_chunks(xs.n_rows(), |s, e| {
            let mut tape = FlowTape::new();
            let lq = self.density_pass_recording(xs.slice_rows(s, e).as_slice(), e - s, &mut tape);
            (lq, tape)
        });
        let log_q: Vec<f64> = recorded.iter().flat_map(|(lq, _)| lq.iter().copied()).collect();
        let coeffs = coeffs_from_log_q(&log_q);
        assert_eq!(coeffs.len(), xs.n_rows(), "log_q_then_grad_params: one coefficient per row");
        let grads = map_owned_chunks(recorded, |c, (lq, tape)| {
            let (s, e) = (c * CHUNK_ROWS, c * CHUNK_ROWS + lq.len());
            self.backward_recorded_chunk(xs.slice_rows(s, e).as_slice(), &coeffs[s..e], &lq, tape)
        });
        let n_chunks = grads.len();
        for g in grads {
            grad_params.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            give_from_chunks(g, n_chunks);
        }
        log_q
    }

    /// The backward half of [`Flow::log_q_then_grad_params`] on one chunk recorded over all its rows: returns the
    /// chunk's `∇θ`. Exactly the rows [`Flow::grad_params_chunk`] keeps take part, on a batch of exactly those rows.
    fn backward_recorded_chunk(&self, x: &[f64], coeffs: &[f64], log_q: &[f64], tape: FlowTape) -> Vec<f64> {
        let mut grad = take_zeroed(self.n_params());
        let kept = |i: usize| coeffs[i] != 0.0 && coeffs[i].is_finite() && log_q[i].is_finite();
        let n = coeffs.len();
        if (0..n).all(kept) {
            give(self.density_backward(&tape, coeffs, Some(&mut grad)));
            tape.recycle();
        } else {
            tape.recycle();
            let rows: Vec<usize> = (0..n).filter(|&i| kept(i)).collect();
            if !rows.is_empty() {
                let mut sub = FlowTape::new();
                self.density_pass_recording(&gather_rows(x, self.dim(), &rows), rows.len(), &mut sub);
                let c: Vec<f64> = rows.iter().map(|&i| coeffs[i]).collect();
                give(self.density_backward(&sub, &c, Some(&mut grad)));
                sub.recycle();
            }
        }
        grad
    }

    /// One chunk of [`Flow::log_q_grad_params`]: `(log q, ∇θ, ∇ₓ rows or empty)`.
    fn grad_params_chunk(&self, x: &[f64], coeffs: &[f64], want_x: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let dim = self.dim();
        let n = coeffs.len();
        let mut grad = take_zeroed(self.n_params());
        let mut gx = if want_x { vec![0.0; n * dim] } else { Vec::new() };
        let mut rows: Vec<usize> = (0..n).filter(|&i| coeffs[i] != 0.0 && coeffs[i].is_finite()).collect();
        let mut log_q = vec![f64::NAN; n];
        if rows.len() < n {
            let rest: Vec<usize> = (0..n).filter(|i| rows.binary_search(i).is_err()).collect();
            let lq = self.density_pass(&gather_rows(x, dim, &rest), rest.len());
            rest.iter().zip(lq).for_each(|(&i, v)| log_q[i] = v);
        }
        let mut tape = FlowTape::new();
        let mut lq = self.density_pass_recording(&gather_rows(x, dim, &rows), rows.len(), &mut tape);
        rows.iter().zip(&lq).for_each(|(&i, &v)| log_q[i] = v);
        if lq.iter().any(|v| !v.is_finite()) {
            // Rare path: drop non-finite rows and record again, so no NaN/inf activation meets a zero coefficient.
            rows = rows.into_iter().zip(&lq).filter(|(_, v)| v.is_finite()).map(|(i, _)| i).collect();
            lq = self.density_pass_recording(&gather_rows(x, dim, &rows), rows.len(), &mut tape);
            debug_assert!(lq.iter().all(|v| v.is_finite()));
        }
        if !rows.is_empty() {
            let c: Vec<f64> = rows.iter().map(|&i| coeffs[i]).collect();
            let g = self.density_backward(&tape, &c, Some(&mut grad));
            if want_x {
                for (k, &i) in rows.iter().enumerate() {
                    gx[i * dim..(i + 1) * dim].copy_from_slice(&g[k * dim..(k + 1) * dim]);
                }
            }
            give(g);
        }
        tape.recycle();
        (log_q, grad, gx)
    }

    /// Transforms standard-normal noise `ε` (`n × dim`) into samples: `(x, log q(x))`.
    pub fn sample_from_noise(&self, eps: BatchRef<'_>) -> (Batch, Vec<f64>) {
        assert_eq!(eps.dim(), self.dim(), "sample_from_noise: noise dimension differs from the flow's");
        let parts = map_chunks(eps.n_rows(), |s, e| self.sampling_pass(eps.slice_rows(s, e).as_slice(), e - s));
        let (x, lq) = concat(parts);
        (Batch::from_vec(x, self.dim()).expect("n × dim by construction"), lq)
    }

    /// Pathwise gradient for losses of samples (reverse KL): with `x = T_θ(ε)`, ACCUMULATES
    /// `Σᵢ (∂L/∂xᵢ)·∂xᵢ/∂θ + (∂L/∂log qᵢ)·∂log q(xᵢ)/∂θ` into `grad_params`, holding `ε` fixed.
    /// Returns the recomputed `(x, log q)`.
    pub fn sample_grad_params(
        &self,
        eps: BatchRef<'_>,
        grad_x: BatchRef<'_>,
        grad_log_q: &[f64],
        grad_params: &mut [f64],
    ) -> (Batch, Vec<f64>) {
        let dim = self.dim();
        assert_eq!(eps.dim(), dim, "sample_grad_params: noise dimension differs from the flow's");
        assert_eq!(grad_x.n_rows(), eps.n_rows(), "sample_grad_params: ∂L/∂x has the wrong number of rows");
        assert_eq!(grad_log_q.len(), eps.n_rows(), "sample_grad_params: one ∂L/∂log q per row");
        assert_eq!(grad_params.len(), self.n_params(), "sample_grad_params: gradient length differs from n_params");
        let parts = map_chunks(eps.n_rows(), |s, e| {
            let mut tape = FlowTape::new();
            let (x, lq) = self.sampling_pass_recording(eps.slice_rows(s, e).as_slice(), e - s, &mut tape);
            let mut g = take_zeroed(self.n_params());
            self.sampling_backward(&tape, grad_x.slice_rows(s, e).as_slice(), &grad_log_q[s..e], &mut g);
            tape.recycle();
            (x, lq, g)
        });
        let mut xs = Vec::with_capacity(eps.n_rows() * dim);
        let mut log_q = Vec::with_capacity(eps.n_rows());
        let n_chunks = parts.len();
        for (x, lq, g) in parts {
            xs.extend_from_slice(&x);
            log_q.extend_from_slice(&lq);
            grad_params.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            give_from_chunks(g, n_chunks);
        }
        (Batch::from_vec(xs, dim).expect("n × dim by construction"), log_q)
    }

    /// Checks that a batch has this flow's dimension and `n` rows (for callers who want a typed error up front).
    pub fn check_batch(&self, xs: BatchRef<'_>, n: usize) -> Result<(), FlowError> {
        if xs.dim() != self.dim() {
            return Err(ShapeError::Mismatch {
                expected: format!("dimension {}", self.dim()),
                got: format!("dimension {}", xs.dim()),
            }
            .into());
        }
        check_rows("batch", n, xs.n_rows())?;
        Ok(())
    }
}

/// Standard-normal noise, drawn serially so the stream does not depend on threads.
pub(crate) fn draw_noise(rng: &mut dyn RngCore, n: usize, dim: usize) -> Vec<f64> {
    (0..n * dim).map(|_| StandardNormal.sample(rng)).collect()
}

/// `log q = log N(z) − Σ log|det ∂x/∂z|` of a sampling pass.
fn sampling_log_q(log_base: &[f64], log_det_sampling: &[f64]) -> Vec<f64> {
    log_base.iter().zip(log_det_sampling).map(|(b, l)| b - l).collect()
}

fn gather_rows(x: &[f64], dim: usize, rows: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * dim);
    rows.iter().for_each(|&i| out.extend_from_slice(&x[i * dim..(i + 1) * dim]));
    out
}

fn concat(parts: Vec<(Vec<f64>, Vec<f64>)>) -> (Vec<f64>, Vec<f64>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for (x, y) in parts {
        a.extend_from_slice(&x);
        b.extend_from_slice(&y);
    }
    (a, b)
}

impl LogDensity for Flow {
    fn dim(&self) -> usize {
        self.spec.dim
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.density_pass(x, 1)[0]
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut tape = FlowTape::new();
        let lq = self.density_pass_recording(x, 1, &mut tape)[0];
        grad.copy_from_slice(&self.density_backward(&tape, &[1.0], None));
        lq
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        log_p.copy_from_slice(&self.log_q(xs));
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
        log_p.copy_from_slice(&self.log_q_grad_x(xs, grad));
    }
}

impl Proposal for Flow {
    /// Draws the base noise serially from `rng`, then transforms it in parallel (results independent of threads).
    fn sample_into(&self, rng: &mut dyn RngCore, mut out: BatchMut<'_>, log_q: &mut [f64]) {
        let n = out.n_rows();
        let eps = draw_noise(rng, n, self.dim());
        let (x, lq) = self.sample_from_noise(BatchRef::new(&eps, self.dim()));
        out.as_mut_slice().copy_from_slice(x.as_slice());
        log_q.copy_from_slice(&lq);
    }
}
