//! The state of many chains: positions plus the cached value and gradient of every component density at them.

use crate::error::McmcError;
use crate::target::LinearLogDensity;
use fab_core::{Batch, BatchMut, BatchRef, Evaluation};
use rayon::prelude::*;

/// Chains per rayon task when none is set. Chunks are fixed by this number, never by the thread count, so the
/// batches a density sees (and therefore every result) are the same whatever the number of threads.
pub const DEFAULT_CHUNK_SIZE: usize = 64;

/// Positions of `n_chains` chains and, per component density `k`, the cached `log fₖ` and (optionally) `∇ log fₖ`
/// at each position. Kernels read the cache instead of re-evaluating, and write a proposal's values into it
/// when the proposal is accepted, so no point is evaluated twice.
///
/// Storage is component-major (`log_f[k][chain]`), so each component's values form the contiguous slices
/// the batched [`fab_core::LogDensity`] methods fill.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainState {
    x: Batch,
    log_f: Vec<Vec<f64>>,
    grad_f: Option<Vec<Batch>>,
    chunk_size: usize,
}

/// A chunk of consecutive chains, borrowed mutably from a [`ChainState`] for one rayon task.
pub(crate) struct ChunkMut<'a> {
    /// Global index of the chunk's first chain (the random stream id of chain `i` is `start + i`).
    pub start: usize,
    pub x: &'a mut [f64],
    pub log_f: Vec<&'a mut [f64]>,
    pub grad_f: Option<Vec<&'a mut [f64]>>,
}

impl ChunkMut<'_> {
    /// Number of chains in the chunk.
    pub fn len(&self) -> usize {
        self.log_f[0].len()
    }
}

impl ChainState {
    /// Evaluates every component (with gradients if `with_gradient`) at the rows of `x`, in parallel chunks.
    pub fn init(target: &LinearLogDensity<'_>, x: Batch, with_gradient: bool) -> Result<Self, McmcError> {
        Self::init_reusing(target, x, with_gradient, vec![None; target.n_components()])
    }

    /// Like [`ChainState::init`], but a component whose values are already `known` (e.g. `log q` returned by
    /// sampling the proposal) is not evaluated again, unless gradients are needed (a gradient evaluation
    /// returns the value anyway, and that value is then cached instead).
    pub fn init_reusing(
        target: &LinearLogDensity<'_>,
        x: Batch,
        with_gradient: bool,
        known: Vec<Option<Vec<f64>>>,
    ) -> Result<Self, McmcError> {
        Self::init_chunked(target, x, with_gradient, known, DEFAULT_CHUNK_SIZE)
    }

    /// Like [`ChainState::init_reusing`], with the chunk size (see [`ChainState::with_chunk_size`]) already used
    /// for the initial evaluation.
    pub fn init_chunked(
        target: &LinearLogDensity<'_>,
        x: Batch,
        with_gradient: bool,
        known: Vec<Option<Vec<f64>>>,
        chunk_size: usize,
    ) -> Result<Self, McmcError> {
        if x.dim() != target.dim() {
            return Err(McmcError::PositionDimension { expected: target.dim(), got: x.dim() });
        }
        if known.len() != target.n_components() {
            return Err(McmcError::ComponentCount { state: known.len(), target: target.n_components() });
        }
        let n = x.n_rows();
        let dim = x.dim();
        let mut to_evaluate = vec![false; known.len()];
        let mut log_f = Vec::with_capacity(known.len());
        for (k, values) in known.into_iter().enumerate() {
            match values {
                Some(v) if v.len() != n => return Err(McmcError::CachedLength { index: k, expected: n, got: v.len() }),
                Some(v) if !with_gradient => log_f.push(v),
                _ => {
                    to_evaluate[k] = true;
                    log_f.push(vec![f64::NAN; n]);
                }
            }
        }
        let grad_f = with_gradient.then(|| (0..target.n_components()).map(|_| Batch::zeros(n, dim)).collect());
        let mut state = Self { x, log_f, grad_f, chunk_size: chunk_size.max(1) };
        state.evaluate_components(target, &to_evaluate);
        Ok(state)
    }

    /// Evaluates the flagged components at every position: one batched call per chunk and component, in
    /// parallel, or for an [`Evaluation::WholeBatch`] component one call on all chains.
    fn evaluate_components(&mut self, target: &LinearLogDensity<'_>, which: &[bool]) {
        let dim = self.dim();
        let chunk_size = self.chunk_size;
        let xs = self.x.as_slice();
        let components = target.components();
        for (k, _) in which.iter().enumerate().filter(|(_, w)| **w) {
            let density = components[k];
            let log_f = &mut self.log_f[k];
            // One chunk covering every chain is the whole-batch call.
            let rows_per_call = match target.evaluation(k) {
                Evaluation::Chunked => chunk_size,
                Evaluation::WholeBatch => log_f.len().max(1),
            };
            match &mut self.grad_f {
                Some(grads) => {
                    xs.par_chunks(rows_per_call * dim)
                        .zip(log_f.par_chunks_mut(rows_per_call))
                        .zip(grads[k].as_mut_slice().par_chunks_mut(rows_per_call * dim))
                        .for_each(|((x, lf), g)| {
                            density.log_prob_and_grad_batch(BatchRef::new(x, dim), lf, BatchMut::new(g, dim))
                        });
                }
                None => {
                    xs.par_chunks(rows_per_call * dim)
                        .zip(log_f.par_chunks_mut(rows_per_call))
                        .for_each(|(x, lf)| density.log_prob_batch(BatchRef::new(x, dim), lf));
                }
            }
        }
    }

    /// Sets how many chains one rayon task advances with one batched density call (at least 1).
    /// Results depend on this number (a flow's batched arithmetic may round differently), never on threads.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self
    }

    /// Chains per rayon task.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Computes and caches gradients if the state was built without them; returns the number of points evaluated
    /// (0 when gradients were already cached). A kernel that needs gradients calls this first.
    pub fn ensure_gradient(&mut self, target: &LinearLogDensity<'_>) -> u64 {
        if self.grad_f.is_some() {
            return 0;
        }
        let (n, dim) = (self.n_chains(), self.dim());
        self.grad_f = Some((0..self.n_components()).map(|_| Batch::zeros(n, dim)).collect());
        self.evaluate_components(target, &vec![true; self.n_components()]);
        n as u64
    }

    /// Number of chains.
    pub fn n_chains(&self) -> usize {
        self.x.n_rows()
    }
    /// Dimension of the space.
    pub fn dim(&self) -> usize {
        self.x.dim()
    }
    /// Number of cached component densities.
    pub fn n_components(&self) -> usize {
        self.log_f.len()
    }
    /// True when gradients are cached.
    pub fn has_gradient(&self) -> bool {
        self.grad_f.is_some()
    }
    /// Current positions, one row per chain.
    pub fn positions(&self) -> &Batch {
        &self.x
    }
    /// Cached `log fₖ` of every chain.
    pub fn log_f(&self, k: usize) -> &[f64] {
        &self.log_f[k]
    }
    /// Cached `∇ log fₖ` of every chain, if gradients are cached.
    pub fn grad_f(&self, k: usize) -> Option<&Batch> {
        self.grad_f.as_ref().map(|g| &g[k])
    }
    /// `log π` of chain `i` under `target`'s coefficients, from the cache.
    pub fn log_target(&self, target: &LinearLogDensity<'_>, i: usize) -> f64 {
        target.combine_log(|k| self.log_f[k][i])
    }
    /// True when every cached component value of chain `i` is finite.
    pub fn is_valid(&self, i: usize) -> bool {
        self.log_f.iter().all(|lf| lf[i].is_finite())
    }
    /// Indices of the chains whose cached values are all finite.
    pub fn valid_indices(&self) -> Vec<usize> {
        (0..self.n_chains()).filter(|&i| self.is_valid(i)).collect()
    }

    /// A state holding only the chains at `indices`, in that order (no evaluation).
    pub fn select(&self, indices: &[usize]) -> ChainState {
        ChainState {
            x: self.x.select_rows(indices),
            log_f: self.log_f.iter().map(|lf| indices.iter().map(|&i| lf[i]).collect()).collect(),
            grad_f: self.grad_f.as_ref().map(|gs| gs.iter().map(|g| g.select_rows(indices)).collect()),
            chunk_size: self.chunk_size,
        }
    }

    /// Positions, per-component values and per-component gradients.
    pub fn into_parts(self) -> (Batch, Vec<Vec<f64>>, Option<Vec<Batch>>) {
        (self.x, self.log_f, self.grad_f)
    }

    /// Checks that `target` has as many components and the same dimension as the cache.
    pub(crate) fn check_target(&self, target: &LinearLogDensity<'_>) -> Result<(), McmcError> {
        if target.n_components() != self.n_components() {
            return Err(McmcError::ComponentCount { state: self.n_components(), target: target.n_components() });
        }
        if target.dim() != self.dim() {
            return Err(McmcError::PositionDimension { expected: target.dim(), got: self.dim() });
        }
        Ok(())
    }

    /// Splits the chains into consecutive chunks of `chunk_size` for rayon.
    pub(crate) fn chunks_mut(&mut self) -> Vec<ChunkMut<'_>> {
        let dim = self.dim();
        let m = self.chunk_size;
        let xs = self.x.as_mut_slice().chunks_mut(m * dim);
        let mut lfs: Vec<_> = self.log_f.iter_mut().map(|lf| lf.chunks_mut(m)).collect();
        let mut gfs: Option<Vec<_>> =
            self.grad_f.as_mut().map(|gs| gs.iter_mut().map(|g| g.as_mut_slice().chunks_mut(m * dim)).collect());
        let mut out = Vec::new();
        let mut start = 0;
        for x in xs {
            let log_f: Vec<&mut [f64]> = lfs.iter_mut().map(|it| it.next().expect("one chunk per component")).collect();
            let grad_f =
                gfs.as_mut().map(|g| g.iter_mut().map(|it| it.next().expect("one chunk per component")).collect());
            let len = log_f[0].len();
            out.push(ChunkMut { start, x, log_f, grad_f });
            start += len;
        }
        out
    }
}
