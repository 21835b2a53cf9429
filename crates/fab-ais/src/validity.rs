//! Points that must not enter AIS even where the densities are finite: non-finite coordinates, coordinates beyond
//! the support bound, or points a caller's predicate rejects. They are made outside the support of the target.

use fab_core::{BatchMut, BatchRef, Evaluation, LogDensity};
use std::sync::atomic::{AtomicU64, Ordering};

/// A target density restricted to the valid points: `log p = −∞` (gradient 0) elsewhere, so a draw there is
/// dropped and counted and an MCMC proposal there is rejected. Counts the invalid points it was asked about.
pub(crate) struct Restricted<'a> {
    inner: &'a dyn LogDensity,
    bound: Option<f64>,
    is_valid: &'a (dyn Fn(&[f64]) -> bool + Sync),
    n_invalid: AtomicU64,
}

impl<'a> Restricted<'a> {
    pub(crate) fn new(
        inner: &'a dyn LogDensity,
        bound: Option<f64>,
        is_valid: &'a (dyn Fn(&[f64]) -> bool + Sync),
    ) -> Self {
        Self { inner, bound, is_valid, n_invalid: AtomicU64::new(0) }
    }

    /// Invalid points seen so far.
    pub(crate) fn n_invalid(&self) -> u64 {
        self.n_invalid.load(Ordering::Relaxed)
    }

    /// Finite coordinates, within the bound, accepted by the predicate.
    fn valid(&self, x: &[f64]) -> bool {
        let in_bound = match self.bound {
            Some(b) => x.iter().all(|v| v.abs() <= b),
            None => x.iter().all(|v| v.is_finite()),
        };
        let ok = in_bound && (self.is_valid)(x);
        if !ok {
            self.n_invalid.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

impl LogDensity for Restricted<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn evaluation(&self) -> Evaluation {
        self.inner.evaluation()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        if self.valid(x) { self.inner.log_prob(x) } else { f64::NEG_INFINITY }
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        if self.valid(x) {
            self.inner.log_prob_and_grad(x, grad)
        } else {
            grad.fill(0.0);
            f64::NEG_INFINITY
        }
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        // The whole batch goes to the inner density in one call (its fast path); invalid rows are overwritten.
        self.inner.log_prob_batch(xs, log_p);
        for (x, lp) in xs.rows().zip(log_p.iter_mut()) {
            if !self.valid(x) {
                *lp = f64::NEG_INFINITY;
            }
        }
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], mut grad: BatchMut<'_>) {
        let dim = grad.dim();
        self.inner.log_prob_and_grad_batch(xs, log_p, BatchMut::new(grad.as_mut_slice(), dim));
        for (i, (x, lp)) in xs.rows().zip(log_p.iter_mut()).enumerate() {
            if !self.valid(x) {
                *lp = f64::NEG_INFINITY;
                grad.row_mut(i).fill(0.0);
            }
        }
    }
}
