//! Finite-difference gradient checks (central differences along random directions) used by every crate's tests.

use crate::batch::{Batch, BatchRef};
use crate::density::LogDensity;
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};

/// The outcome of a gradient check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// Largest error over the directions, relative to `max(‖∇f‖, |numeric|, 1e-8)`.
    pub max_rel_error: f64,
    /// Analytic directional derivative where the error was largest.
    pub analytic: f64,
    /// Finite-difference directional derivative there.
    pub numeric: f64,
}

impl GradCheck {
    /// Panics with a readable message when the relative error exceeds `tol`.
    #[track_caller]
    pub fn assert_below(&self, tol: f64, what: &str) {
        assert!(
            self.max_rel_error < tol,
            "{what}: gradient check failed: relative error {:.3e} >= {tol:.1e} (analytic {:.12e}, numeric {:.12e})",
            self.max_rel_error,
            self.analytic,
            self.numeric
        );
    }
}

/// Directional derivative of `f` at `x` along `v` by Richardson-extrapolated central differences (error O(h⁴)).
pub fn directional_derivative(f: &dyn Fn(&[f64]) -> f64, x: &[f64], v: &[f64], step: f64) -> f64 {
    let mut buf = x.to_vec();
    let mut central = |h: f64| {
        for ((b, &xi), &vi) in buf.iter_mut().zip(x).zip(v) {
            *b = xi + h * vi;
        }
        let plus = f(&buf);
        for ((b, &xi), &vi) in buf.iter_mut().zip(x).zip(v) {
            *b = xi - h * vi;
        }
        let minus = f(&buf);
        (plus - minus) / (2.0 * h)
    };
    let coarse = central(step);
    let fine = central(step / 2.0);
    (4.0 * fine - coarse) / 3.0
}

/// A random unit direction in `R^n`.
pub fn random_direction(rng: &mut dyn RngCore, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Compares `grad` (claimed `∇f(x)`) with central differences of `f` along `n_directions` random unit directions.
///
/// The error is measured relative to `‖∇f‖`, so a direction nearly orthogonal to the gradient does not
/// produce a spurious failure.
pub fn check_gradient(
    f: &dyn Fn(&[f64]) -> f64,
    x: &[f64],
    grad: &[f64],
    n_directions: usize,
    step: f64,
    rng: &mut dyn RngCore,
) -> GradCheck {
    assert_eq!(x.len(), grad.len(), "check_gradient: gradient length differs from the point's");
    let grad_norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
    let mut worst = GradCheck { max_rel_error: 0.0, analytic: 0.0, numeric: 0.0 };
    for _ in 0..n_directions {
        let v = random_direction(rng, x.len());
        let analytic: f64 = grad.iter().zip(&v).map(|(g, v)| g * v).sum();
        let numeric = directional_derivative(f, x, &v, step);
        let scale = grad_norm.max(numeric.abs()).max(1e-8);
        let err = (analytic - numeric).abs() / scale;
        if err.is_nan() || err > worst.max_rel_error {
            worst = GradCheck { max_rel_error: err, analytic, numeric };
        }
    }
    worst
}

/// Gradient check of a [`LogDensity`] at `x`, which also asserts that `log_prob` and `log_prob_and_grad` agree.
pub fn check_density_gradient(
    density: &dyn LogDensity,
    x: &[f64],
    n_directions: usize,
    step: f64,
    rng: &mut dyn RngCore,
) -> GradCheck {
    let mut grad = vec![0.0; x.len()];
    let value = density.log_prob_and_grad(x, &mut grad);
    let plain = density.log_prob(x);
    assert!(
        value == plain || (value - plain).abs() <= 1e-12 * plain.abs().max(1.0),
        "log_prob ({plain}) and log_prob_and_grad ({value}) disagree at {x:?}"
    );
    check_gradient(&|y| density.log_prob(y), x, &grad, n_directions, step, rng)
}

/// Asserts that the batched methods of `density` agree with its per-point methods on every row of `xs`
/// (to `1e-12` relative; a batched fast path may reorder sums).
#[track_caller]
pub fn assert_batch_agrees(density: &dyn LogDensity, xs: BatchRef<'_>) {
    let n = xs.n_rows();
    let mut log_p = vec![0.0; n];
    density.log_prob_batch(xs, &mut log_p);
    let mut log_p_g = vec![0.0; n];
    let mut grads = Batch::zeros(n, xs.dim());
    density.log_prob_and_grad_batch(xs, &mut log_p_g, grads.view_mut());
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0);
    let mut g = vec![0.0; xs.dim()];
    for (i, x) in xs.rows().enumerate() {
        let single = density.log_prob_and_grad(x, &mut g);
        assert!(close(single, log_p[i]), "row {i}: log_prob_batch {} vs log_prob {single}", log_p[i]);
        assert!(close(single, log_p_g[i]), "row {i}: log_prob_and_grad_batch {} vs single {single}", log_p_g[i]);
        for (j, (&a, &b)) in g.iter().zip(grads.row(i)).enumerate() {
            assert!(close(a, b), "row {i}, coordinate {j}: batched gradient {b} vs single {a}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream_rng;

    struct Quartic;
    impl LogDensity for Quartic {
        fn dim(&self) -> usize {
            3
        }
        fn log_prob(&self, x: &[f64]) -> f64 {
            -x.iter().map(|v| v.powi(4) + v.sin()).sum::<f64>()
        }
        fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
            for (g, v) in grad.iter_mut().zip(x) {
                *g = -(4.0 * v.powi(3) + v.cos());
            }
            self.log_prob(x)
        }
    }

    #[test]
    fn a_correct_gradient_passes() {
        let mut rng = stream_rng(0, 0);
        let c = check_density_gradient(&Quartic, &[0.3, -1.2, 2.0], 8, 1e-3, &mut rng);
        c.assert_below(1e-9, "quartic");
        assert_batch_agrees(&Quartic, Batch::from_rows(&[[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]]).unwrap().view());
    }

    #[test]
    fn a_wrong_gradient_fails() {
        let mut rng = stream_rng(0, 1);
        let x = [0.3, -1.2, 2.0];
        let mut g = vec![0.0; 3];
        Quartic.log_prob_and_grad(&x, &mut g);
        g[1] *= 1.001;
        let c = check_gradient(&|y| Quartic.log_prob(y), &x, &g, 8, 1e-3, &mut rng);
        assert!(c.max_rel_error > 1e-5, "a 0.1 % error in one coordinate must be detected: {c:?}");
    }
}
