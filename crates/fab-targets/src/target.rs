//! The `Target` trait: a log density FAB can train on, with capabilities (exact samples, log Z, mode sets, a test
//! function) that a target may declare and evaluation uses where present.

use fab_core::{Batch, ExactSampler, LogDensity};
use rand::RngCore;
use std::sync::Arc;

/// `ln(2π)`, used by every Gaussian normalising constant in this crate.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A density FAB can train on: any [`LogDensity`] plus optional capabilities.
///
/// Every capability has a default meaning "not available", so a user's density becomes a target with
/// `impl Target for MyDensity {}`; or declare capabilities without a trait impl through
/// [`crate::CustomTarget`]. Training needs only the density; evaluation reports each metric whose capability is
/// present (forward ESS and mean log q need exact samples, log-Z errors need `log_z`, …).
///
/// Object-safe: configs build a `Box<dyn Target>`, and a `&dyn Target` upcasts to `&dyn LogDensity`.
pub trait Target: LogDensity {
    /// A short stable identifier, e.g. `"gmm40_iclr"` or `"many_well_32"`.
    fn name(&self) -> &str {
        "custom"
    }

    /// `ln Z` of the density returned by `log_prob`, i.e. `ln ∫ exp(log_prob(x)) dx`, when known exactly.
    /// `Some(0.0)` for normalised densities.
    fn log_z(&self) -> Option<f64> {
        None
    }

    /// An exact sampler of the normalised target, when one exists (used only for evaluation and the
    /// maximum-likelihood reference: FAB never sees target samples).
    fn exact_sampler(&self) -> Option<&dyn ExactSampler> {
        None
    }

    /// Exact per-coordinate moments of the normalised target, when known (analytically or by quadrature).
    /// Tests compare exact samples against them; metrics may use them as ground truth.
    fn moments(&self) -> Option<Moments> {
        None
    }

    /// Points at (and near) the target's modes, to measure how much mass the flow puts on each mode.
    fn mode_sets(&self, _rng: &mut dyn RngCore) -> Option<ModeSets> {
        None
    }

    /// A test function with its exact expectation under the normalised target, for the expectation bias and
    /// standard deviation of importance sampling.
    fn test_function(&self) -> Option<TestFunction> {
        None
    }

    /// `false` for points the sampler must treat as outside the support even where `log_prob` is finite
    /// (e.g. beyond a physical bound). AIS drops such points and counts them. Default: every point is valid.
    fn point_is_valid(&self, _x: &[f64]) -> bool {
        true
    }
}

/// Mode test sets: the modes themselves (ICLR's test set) and, optionally, the modes with noise (2021 Table 2).
#[derive(Debug, Clone, PartialEq)]
pub struct ModeSets {
    /// One row per mode.
    pub exact: Batch,
    /// The modes plus noise, re-drawn from the caller's random stream.
    pub noisy: Option<Batch>,
}

/// A shared scalar function of a point.
pub type PointFn = Arc<dyn Fn(&[f64]) -> f64 + Send + Sync>;

/// A function `f` with its exact expectation `E_p[f]` under the normalised target.
#[derive(Clone)]
pub struct TestFunction {
    /// `f(x)`.
    pub f: PointFn,
    /// `E_p[f(x)]`.
    pub expectation: f64,
}

impl TestFunction {
    /// `f` with its known expectation.
    pub fn new(f: impl Fn(&[f64]) -> f64 + Send + Sync + 'static, expectation: f64) -> Self {
        Self { f: Arc::new(f), expectation }
    }
    /// `f(x)`.
    pub fn value(&self, x: &[f64]) -> f64 {
        (self.f)(x)
    }
}

impl std::fmt::Debug for TestFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFunction").field("expectation", &self.expectation).finish_non_exhaustive()
    }
}

/// Per-coordinate moments of a distribution on `R^dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// `E[x_j]`.
    pub mean: Vec<f64>,
    /// `Var[x_j] = E[(x_j − E x_j)²]`.
    pub variance: Vec<f64>,
    /// `E[(x_j − E x_j)⁴]`, which sets the CLT spread of a sample variance: `Var(ŝ²) ≈ (μ₄ − σ⁴)/n`.
    pub fourth_central: Vec<f64>,
}

macro_rules! forward_target {
    ($($ptr:ty),*) => {$(
        impl<T: Target + ?Sized> Target for $ptr {
            fn name(&self) -> &str { (**self).name() }
            fn log_z(&self) -> Option<f64> { (**self).log_z() }
            fn exact_sampler(&self) -> Option<&dyn ExactSampler> { (**self).exact_sampler() }
            fn moments(&self) -> Option<Moments> { (**self).moments() }
            fn mode_sets(&self, rng: &mut dyn RngCore) -> Option<ModeSets> { (**self).mode_sets(rng) }
            fn test_function(&self) -> Option<TestFunction> { (**self).test_function() }
            fn point_is_valid(&self, x: &[f64]) -> bool { (**self).point_is_valid(x) }
        }
    )*};
}
forward_target!(&T, Box<T>, Arc<T>);
