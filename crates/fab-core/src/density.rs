//! The log-density trait every target, flow and intermediate distribution implements, and the sampling traits.

use crate::batch::{Batch, BatchMut, BatchRef};
use rand::RngCore;

/// An unnormalised log density over `R^dim`, with its gradient.
///
/// Non-finite return values (`-inf`, `+inf`, `NaN`) mean "outside the support": callers reject such points
/// and count them; they are never errors. The batched methods are the fast path (a flow evaluates a whole
/// matrix with one GEMM per layer); the defaults loop over rows, and implementations override them.
///
/// The trait is object-safe and `Sync`, so samplers take `&dyn LogDensity` and rayon workers share one density.
pub trait LogDensity: Send + Sync {
    /// Dimension of the space.
    fn dim(&self) -> usize;

    /// `log p(x)` for one point.
    fn log_prob(&self, x: &[f64]) -> f64;

    /// `log p(x)`, writing `∇ₓ log p(x)` into `grad` (overwritten, not accumulated).
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64;

    /// `log p` of every row of `xs` into `log_p`.
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        debug_assert_eq!(xs.n_rows(), log_p.len());
        for (x, lp) in xs.rows().zip(log_p.iter_mut()) {
            *lp = self.log_prob(x);
        }
    }

    /// `log p` and its gradient for every row of `xs`.
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], mut grad: BatchMut<'_>) {
        debug_assert_eq!(xs.n_rows(), log_p.len());
        debug_assert_eq!(xs.n_rows(), grad.n_rows());
        for ((x, lp), g) in xs.rows().zip(log_p.iter_mut()).zip(grad.rows_mut()) {
            *lp = self.log_prob_and_grad(x, g);
        }
    }
}

/// A distribution we can both sample and evaluate with its *normalised* log density: the flow `q`,
/// or an analytic Gaussian in tests. AIS starts from one.
pub trait Proposal: LogDensity {
    /// Fills every row of `out` with a draw and writes its normalised `log q` into `log_q`.
    fn sample_into(&self, rng: &mut dyn RngCore, out: BatchMut<'_>, log_q: &mut [f64]);

    /// Draws `n` points and their normalised `log q`.
    fn sample(&self, rng: &mut dyn RngCore, n: usize) -> (Batch, Vec<f64>) {
        let mut xs = Batch::zeros(n, self.dim());
        let mut log_q = vec![0.0; n];
        self.sample_into(rng, xs.view_mut(), &mut log_q);
        (xs, log_q)
    }
}

/// A target we can draw exact samples from (used only for evaluation and the maximum-likelihood reference).
pub trait ExactSampler: LogDensity {
    /// Fills every row of `out` with an independent exact draw.
    fn sample_exact_into(&self, rng: &mut dyn RngCore, out: BatchMut<'_>);

    /// Draws `n` exact samples.
    fn sample_exact(&self, rng: &mut dyn RngCore, n: usize) -> Batch {
        let mut xs = Batch::zeros(n, self.dim());
        self.sample_exact_into(rng, xs.view_mut());
        xs
    }
}

macro_rules! forward_log_density {
    ($($ptr:ty),*) => {$(
        impl<T: LogDensity + ?Sized> LogDensity for $ptr {
            fn dim(&self) -> usize { (**self).dim() }
            fn log_prob(&self, x: &[f64]) -> f64 { (**self).log_prob(x) }
            fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 { (**self).log_prob_and_grad(x, grad) }
            fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) { (**self).log_prob_batch(xs, log_p) }
            fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
                (**self).log_prob_and_grad_batch(xs, log_p, grad)
            }
        }
    )*};
}
forward_log_density!(&T, Box<T>, std::sync::Arc<T>);

macro_rules! forward_proposal {
    ($($ptr:ty),*) => {$(
        impl<T: Proposal + ?Sized> Proposal for $ptr {
            fn sample_into(&self, rng: &mut dyn RngCore, out: BatchMut<'_>, log_q: &mut [f64]) {
                (**self).sample_into(rng, out, log_q)
            }
        }
        impl<T: ExactSampler + ?Sized> ExactSampler for $ptr {
            fn sample_exact_into(&self, rng: &mut dyn RngCore, out: BatchMut<'_>) { (**self).sample_exact_into(rng, out) }
        }
    )*};
}
forward_proposal!(&T, Box<T>, std::sync::Arc<T>);
