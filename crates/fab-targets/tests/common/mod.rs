//! Helpers shared by the fab-targets integration tests: relative comparisons, CLT bounds and 2-D quadrature.
#![allow(dead_code)]

use fab_targets::quadrature::simpson;

/// Number of standard errors a statistic may deviate by before a test fails (false alarm ≈ 6e-7 per check).
pub const N_SIGMA: f64 = 5.0;

/// Asserts `|actual − expected| ≤ tol · |expected|`.
#[track_caller]
pub fn assert_rel(actual: f64, expected: f64, tol: f64, what: &str) {
    let err = (actual - expected).abs() / expected.abs();
    assert!(err <= tol, "{what}: {actual} vs {expected} (relative error {err:.3e} > {tol:.1e})");
}

/// Asserts `|actual − expected| ≤ tol`.
#[track_caller]
pub fn assert_abs(actual: f64, expected: f64, tol: f64, what: &str) {
    let err = (actual - expected).abs();
    assert!(err <= tol, "{what}: {actual} vs {expected} (absolute error {err:.3e} > {tol:.1e})");
}

/// Sample mean and unbiased sample variance.
pub fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

/// `∫∫ f(x, y)` over `[x0, x1] × [y0, y1]` by nested composite Simpson.
pub fn integrate_2d(f: &dyn Fn(f64, f64) -> f64, [x0, x1]: [f64; 2], [y0, y1]: [f64; 2], nx: usize, ny: usize) -> f64 {
    simpson(|x| simpson(|y| f(x, y), y0, y1, ny), x0, x1, nx)
}
