//! A wrapper that counts density evaluations exactly, so methods can be compared at equal cost.

use crate::batch::{BatchMut, BatchRef};
use crate::density::LogDensity;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Evaluation counts, in points (a batch of 100 rows counts 100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalCounts {
    /// Points evaluated without gradient.
    pub n_log_prob: u64,
    /// Points evaluated with gradient.
    pub n_log_prob_and_grad: u64,
}

impl EvalCounts {
    /// All evaluations, with or without gradient.
    pub fn total(&self) -> u64 {
        self.n_log_prob + self.n_log_prob_and_grad
    }
}

/// Wraps a density and counts every point it evaluates. Thread-safe (relaxed atomics: only totals matter).
#[derive(Debug, Default)]
pub struct Counted<D> {
    inner: D,
    n_log_prob: AtomicU64,
    n_log_prob_and_grad: AtomicU64,
}

impl<D> Counted<D> {
    /// Starts counting at zero.
    pub fn new(inner: D) -> Self {
        Self { inner, n_log_prob: AtomicU64::new(0), n_log_prob_and_grad: AtomicU64::new(0) }
    }
    /// Counts so far.
    pub fn counts(&self) -> EvalCounts {
        EvalCounts {
            n_log_prob: self.n_log_prob.load(Ordering::Relaxed),
            n_log_prob_and_grad: self.n_log_prob_and_grad.load(Ordering::Relaxed),
        }
    }
    /// Sets the counters, e.g. when a run resumes from a checkpoint.
    pub fn set_counts(&self, counts: EvalCounts) {
        self.n_log_prob.store(counts.n_log_prob, Ordering::Relaxed);
        self.n_log_prob_and_grad.store(counts.n_log_prob_and_grad, Ordering::Relaxed);
    }
    /// The wrapped density.
    pub fn inner(&self) -> &D {
        &self.inner
    }
    /// Unwraps.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: LogDensity> LogDensity for Counted<D> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn evaluation(&self) -> crate::density::Evaluation {
        self.inner.evaluation()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.n_log_prob.fetch_add(1, Ordering::Relaxed);
        self.inner.log_prob(x)
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.n_log_prob_and_grad.fetch_add(1, Ordering::Relaxed);
        self.inner.log_prob_and_grad(x, grad)
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        self.n_log_prob.fetch_add(xs.n_rows() as u64, Ordering::Relaxed);
        self.inner.log_prob_batch(xs, log_p)
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
        self.n_log_prob_and_grad.fetch_add(xs.n_rows() as u64, Ordering::Relaxed);
        self.inner.log_prob_and_grad_batch(xs, log_p, grad)
    }
}
