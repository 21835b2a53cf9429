//! The log-density trait every target, flow and intermediate distribution implements, and the sampling traits.

use crate::batch::{Batch, BatchMut, BatchRef};
use rand::RngCore;

/// How a sampler that advances many chains in parallel should call a density's batched methods.
///
/// Samplers (fab-mcmc's chains, fab-ais) cut their chains into fixed-size chunks and run the chunks on rayon
/// workers. A density that is cheap to call from many threads at once (a Rust target, a flow) wants exactly that.
/// A density behind a lock or a slow call boundary (a Python callable holding the GIL) wants the opposite: one
/// call per step covering every chain, from one thread, so it pays its call overhead once and can vectorise (or
/// parallelise) over the whole batch itself. The per-row results must not depend on which mode is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Evaluation {
    /// Call the batched methods on chunks of rows, from several rayon workers at once (the default).
    #[default]
    Chunked,
    /// Call the batched methods once per step on all rows, in chain order, from one thread: the density
    /// parallelises internally or not at all. The rest of the step (momenta, positions) stays parallel.
    WholeBatch,
}

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

    /// How samplers running many chains should call the batched methods; [`Evaluation::Chunked`] unless
    /// overridden. A density implemented in Python returns [`Evaluation::WholeBatch`].
    fn evaluation(&self) -> Evaluation {
        Evaluation::Chunked
    }

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
            fn evaluation(&self) -> Evaluation { (**self).evaluation() }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Counted;
    use std::sync::Arc;

    /// A 1-D density that declares itself whole-batch (as a Python callable would).
    struct WholeBatchOnly;
    impl LogDensity for WholeBatchOnly {
        fn dim(&self) -> usize {
            1
        }
        fn evaluation(&self) -> Evaluation {
            Evaluation::WholeBatch
        }
        fn log_prob(&self, x: &[f64]) -> f64 {
            -x[0] * x[0]
        }
        fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
            grad[0] = -2.0 * x[0];
            self.log_prob(x)
        }
    }

    /// A 1-D density that keeps the default.
    struct Plain;
    impl LogDensity for Plain {
        fn dim(&self) -> usize {
            1
        }
        fn log_prob(&self, _x: &[f64]) -> f64 {
            0.0
        }
        fn log_prob_and_grad(&self, _x: &[f64], grad: &mut [f64]) -> f64 {
            grad[0] = 0.0;
            0.0
        }
    }

    #[test]
    fn evaluation_defaults_to_chunked() {
        assert_eq!(Plain.evaluation(), Evaluation::Chunked);
        assert_eq!(Evaluation::default(), Evaluation::Chunked);
    }

    #[test]
    fn evaluation_is_forwarded_by_every_wrapper() {
        let by_ref: &dyn LogDensity = &WholeBatchOnly;
        assert_eq!(by_ref.evaluation(), Evaluation::WholeBatch);
        assert_eq!((&by_ref).evaluation(), Evaluation::WholeBatch);
        assert_eq!(Box::new(WholeBatchOnly).evaluation(), Evaluation::WholeBatch);
        assert_eq!(Arc::new(WholeBatchOnly).evaluation(), Evaluation::WholeBatch);
        assert_eq!(Counted::new(WholeBatchOnly).evaluation(), Evaluation::WholeBatch);
        assert_eq!(Counted::new(Plain).evaluation(), Evaluation::Chunked);
    }
}
