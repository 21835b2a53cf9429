//! Chunk-local proposals: positions with their component values and gradients, evaluated in one batched call
//! per component over the rows that are still alive.

use crate::scratch::{copied_f64, empty_f64, filled_f64, recycle_f64};
use crate::state::ChunkMut;
use crate::target::LinearLogDensity;
use fab_core::{BatchMut, BatchRef, Evaluation};

/// `m` points of one chunk, with per-component caches (component-major, like [`crate::ChainState`]), the combined
/// `log π` and `∇ log π`, and an `alive` flag: a row that reached a non-finite position or density is frozen
/// there and never evaluated again.
#[derive(Debug, Clone)]
pub(crate) struct Points {
    pub dim: usize,
    pub m: usize,
    pub x: Vec<f64>,
    log_f: Vec<f64>,
    grad_f: Vec<f64>,
    pub log_pi: Vec<f64>,
    pub grad_pi: Vec<f64>,
    pub alive: Vec<bool>,
    with_grad: bool,
    grad_clamp: Option<f64>,
    /// Points evaluated so far (each evaluation covers every component).
    pub n_evaluated: u64,
    gather_x: Vec<f64>,
    gather_log_f: Vec<f64>,
    gather_grad: Vec<f64>,
}

impl Points {
    /// Buffers for `m` points without values; call [`Points::evaluate_alive`] after filling `x`.
    pub fn empty(target: &LinearLogDensity<'_>, m: usize, with_grad: bool, grad_clamp: Option<f64>) -> Self {
        let (dim, k) = (target.dim(), target.n_components());
        let g = if with_grad { m * dim } else { 0 };
        Self {
            dim,
            m,
            x: filled_f64(m * dim, 0.0),
            log_f: filled_f64(k * m, f64::NAN),
            grad_f: filled_f64(k * g, 0.0),
            log_pi: filled_f64(m, f64::NAN),
            grad_pi: filled_f64(g, 0.0),
            alive: vec![true; m],
            with_grad,
            grad_clamp,
            n_evaluated: 0,
            gather_x: Vec::new(),
            gather_log_f: Vec::new(),
            gather_grad: Vec::new(),
        }
    }

    /// Copies the chunk's cached state (no evaluation); rows whose `log π` is not finite start dead.
    pub fn from_chunk(target: &LinearLogDensity<'_>, chunk: &ChunkMut<'_>, grad_clamp: Option<f64>) -> Self {
        let (m, dim) = (chunk.len(), target.dim());
        let with_grad = chunk.grad_f.is_some();
        // Built by copying (not zero-filling first): the same values as `empty` + copies, without the memsets.
        let mut log_f = empty_f64(chunk.log_f.len() * m);
        chunk.log_f.iter().for_each(|lf| log_f.extend_from_slice(lf));
        let mut grad_f = empty_f64(chunk.grad_f.as_ref().map_or(0, |gs| gs.len() * m * dim));
        if let Some(gs) = &chunk.grad_f {
            gs.iter().for_each(|g| grad_f.extend_from_slice(g));
        }
        let mut pts = Self {
            dim,
            m,
            x: copied_f64(chunk.x),
            log_f,
            grad_f,
            log_pi: filled_f64(m, f64::NAN),
            grad_pi: filled_f64(if with_grad { m * dim } else { 0 }, 0.0),
            alive: vec![true; m],
            with_grad,
            grad_clamp,
            n_evaluated: 0,
            gather_x: Vec::new(),
            gather_log_f: Vec::new(),
            gather_grad: Vec::new(),
        };
        for i in 0..m {
            pts.combine_row(target, i);
        }
        pts
    }

    /// Position of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// Marks rows with a non-finite coordinate dead, so they are never handed to a density.
    pub fn kill_non_finite_positions(&mut self) {
        for i in 0..self.m {
            if self.alive[i] && !self.row(i).iter().all(|v| v.is_finite()) {
                self.alive[i] = false;
            }
        }
    }

    /// Evaluates every component at the alive rows (one batched call per component), then recombines.
    /// When some rows are dead the alive ones are gathered into a contiguous batch first.
    pub fn evaluate_alive(&mut self, target: &LinearLogDensity<'_>) {
        self.evaluate_components(target, |_| true);
        self.finish_evaluation(target);
    }

    /// The first half of [`Points::evaluate_alive`] for a chunk that shares its whole-batch components with the
    /// other chunks: evaluates only the [`Evaluation::Chunked`] components. [`evaluate_whole_batch`] then fills
    /// the others for every chunk at once, and [`Points::finish_evaluation`] recombines.
    pub fn evaluate_chunked_components(&mut self, target: &LinearLogDensity<'_>) {
        self.evaluate_components(target, |k| target.evaluation(k) == Evaluation::Chunked);
    }

    /// Evaluates the components `k` with `selected(k)` at the alive rows, one batched call per component,
    /// writing only their caches.
    fn evaluate_components(&mut self, target: &LinearLogDensity<'_>, selected: impl Fn(usize) -> bool) {
        let (m, dim) = (self.m, self.dim);
        let components = target.components();
        if m > 0 && self.alive.iter().all(|&a| a) {
            // Every row alive (the common case): no index list, no gathering.
            for (k, density) in components.iter().enumerate().filter(|(k, _)| selected(*k)) {
                let xs = BatchRef::new(&self.x, dim);
                let lf = &mut self.log_f[k * m..(k + 1) * m];
                if self.with_grad {
                    let g = BatchMut::new(&mut self.grad_f[k * m * dim..(k + 1) * m * dim], dim);
                    density.log_prob_and_grad_batch(xs, lf, g);
                } else {
                    density.log_prob_batch(xs, lf);
                }
            }
            return;
        }
        let a = self.alive.iter().filter(|&&alive| alive).count();
        if a == 0 {
            return;
        }
        // Some rows are dead: gather the alive ones into a contiguous batch.
        self.gather_x.clear();
        for i in (0..m).filter(|&i| self.alive[i]) {
            self.gather_x.extend_from_slice(&self.x[i * dim..(i + 1) * dim]);
        }
        self.gather_log_f.resize(a, 0.0);
        self.gather_grad.resize(if self.with_grad { a * dim } else { 0 }, 0.0);
        for (k, density) in components.iter().enumerate().filter(|(k, _)| selected(*k)) {
            let xs = BatchRef::new(&self.gather_x, dim);
            if self.with_grad {
                density.log_prob_and_grad_batch(xs, &mut self.gather_log_f, BatchMut::new(&mut self.gather_grad, dim));
            } else {
                density.log_prob_batch(xs, &mut self.gather_log_f);
            }
            let mut j = 0;
            for i in 0..m {
                if self.alive[i] {
                    self.set_component_row(k, i, self.gather_log_f[j], j);
                    j += 1;
                }
            }
        }
    }

    /// Writes component `k`'s value at row `i`, and its gradient from row `j` of the gather buffer.
    fn set_component_row(&mut self, k: usize, i: usize, log_f: f64, j: usize) {
        let (m, dim) = (self.m, self.dim);
        self.log_f[k * m + i] = log_f;
        if self.with_grad {
            let dst = (k * m + i) * dim;
            self.grad_f[dst..dst + dim].copy_from_slice(&self.gather_grad[j * dim..(j + 1) * dim]);
        }
    }

    /// The second half of an evaluation: counts the alive rows as evaluated and recomputes their `log π` and
    /// `∇ log π` from the (now complete) component caches.
    ///
    /// It allocates nothing: it runs once per chunk and leapfrog step, and an allocation there (a collected index
    /// list growing by `realloc`) contended for glibc's arena lock between the two threads of the scaling bench.
    pub fn finish_evaluation(&mut self, target: &LinearLogDensity<'_>) {
        for i in 0..self.m {
            // `combine_row(i)` may kill row `i` only, so testing `alive[i]` here is testing it before any combine.
            if self.alive[i] {
                self.n_evaluated += 1;
                self.combine_row(target, i);
            }
        }
    }

    /// Recomputes `log π` and the (clamped) `∇ log π` of row `i` from its component caches; a non-finite
    /// `log π` kills the row.
    fn combine_row(&mut self, target: &LinearLogDensity<'_>, i: usize) {
        let (m, dim) = (self.m, self.dim);
        let log_pi = target.combine_log(|k| self.log_f[k * m + i]);
        self.log_pi[i] = log_pi;
        if !log_pi.is_finite() {
            self.alive[i] = false;
            return;
        }
        if !self.with_grad {
            return;
        }
        let g = &mut self.grad_pi[i * dim..(i + 1) * dim];
        g.fill(0.0);
        for (k, &c) in target.coefficients().iter().enumerate() {
            // A zero coefficient contributes nothing, even where that component's gradient is not finite.
            if c == 0.0 {
                continue;
            }
            let src = &self.grad_f[(k * m + i) * dim..(k * m + i + 1) * dim];
            for (gd, sd) in g.iter_mut().zip(src) {
                *gd += c * sd;
            }
        }
        if let Some(limit) = self.grad_clamp {
            clamp_gradient(g, limit);
        }
    }

    /// Writes row `i` (position and every component's value and gradient) into the chunk's state.
    pub fn store_row(&self, i: usize, chunk: &mut ChunkMut<'_>) {
        let (m, dim) = (self.m, self.dim);
        chunk.x[i * dim..(i + 1) * dim].copy_from_slice(self.row(i));
        for (k, lf) in chunk.log_f.iter_mut().enumerate() {
            lf[i] = self.log_f[k * m + i];
        }
        if let Some(gs) = &mut chunk.grad_f {
            for (k, g) in gs.iter_mut().enumerate() {
                let src = (k * m + i) * dim;
                g[i * dim..(i + 1) * dim].copy_from_slice(&self.grad_f[src..src + dim]);
            }
        }
    }
}

impl Drop for Points {
    /// Hands the buffers back to this thread's pool for the next chunk.
    fn drop(&mut self) {
        for v in [
            &mut self.x,
            &mut self.log_f,
            &mut self.grad_f,
            &mut self.log_pi,
            &mut self.grad_pi,
            &mut self.gather_x,
            &mut self.gather_log_f,
            &mut self.gather_grad,
        ] {
            recycle_f64(std::mem::take(v));
        }
    }
}

/// Evaluates every [`Evaluation::WholeBatch`] component of `target` at the alive rows of all `chunks` with one
/// batched call per component, rows in chain order (chunk after chunk), and scatters the values and gradients
/// back into each chunk's cache. The chunks must come from one state (same dimension, same gradient setting).
/// Each row gets exactly the value a per-chunk call would give it, so results do not depend on the mode.
pub(crate) fn evaluate_whole_batch(target: &LinearLogDensity<'_>, chunks: &mut [&mut Points]) {
    let Some(first) = chunks.first() else { return };
    let (dim, with_grad) = (first.dim, first.with_grad);
    let whole: Vec<usize> =
        (0..target.n_components()).filter(|&k| target.evaluation(k) == Evaluation::WholeBatch).collect();
    if whole.is_empty() {
        return;
    }
    // Sized up front: growing it would `realloc` once per step (see `finish_evaluation` on why that matters).
    let n_alive: usize = chunks.iter().map(|pts| pts.alive.iter().filter(|&&a| a).count()).sum();
    let mut xs = Vec::with_capacity(n_alive * dim);
    for pts in chunks.iter() {
        for i in (0..pts.m).filter(|&i| pts.alive[i]) {
            xs.extend_from_slice(pts.row(i));
        }
    }
    let n = xs.len() / dim;
    if n == 0 {
        return;
    }
    let mut log_f = vec![0.0; n];
    for k in whole {
        let density = target.components()[k];
        if with_grad {
            // The gradients land in each chunk's gather buffer, the row layout `set_component_row` reads.
            let mut grad = vec![0.0; n * dim];
            density.log_prob_and_grad_batch(BatchRef::new(&xs, dim), &mut log_f, BatchMut::new(&mut grad, dim));
            scatter(chunks, k, &log_f, Some(&grad));
        } else {
            density.log_prob_batch(BatchRef::new(&xs, dim), &mut log_f);
            scatter(chunks, k, &log_f, None);
        }
    }
}

/// Writes the whole-batch results of component `k` (alive rows in chain order) back into the chunks.
fn scatter(chunks: &mut [&mut Points], k: usize, log_f: &[f64], grad: Option<&[f64]>) {
    let mut j = 0;
    for pts in chunks.iter_mut() {
        let dim = pts.dim;
        let n_alive = pts.alive.iter().filter(|&&alive| alive).count();
        pts.gather_grad.clear();
        if let Some(g) = grad {
            pts.gather_grad.extend_from_slice(&g[j * dim..(j + n_alive) * dim]);
        }
        let mut r = 0;
        for i in 0..pts.m {
            if pts.alive[i] {
                pts.set_component_row(k, i, log_f[j + r], r);
                r += 1;
            }
        }
        j += n_alive;
    }
}

/// The gradient guard of both FAB papers: `NaN → 0`, then every coordinate clamped to `[−limit, limit]`
/// (2021: 1e4, ICLR: 1e3). It keeps one huge gradient from throwing a chain to infinity.
pub fn clamp_gradient(grad: &mut [f64], limit: f64) {
    for g in grad {
        *g = if g.is_nan() { 0.0 } else { g.clamp(-limit, limit) };
    }
}
