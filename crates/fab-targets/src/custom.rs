//! `CustomTarget`: declares the capabilities of any user density (log Z, an exact sampler, a test function, a
//! validity predicate) without a trait impl.

use crate::target::{Moments, Target, TestFunction};
use fab_core::{BatchMut, BatchRef, Evaluation, ExactSampler, LogDensity};
use std::sync::Arc;

/// A shared validity predicate of a point.
type PointPredicate = Arc<dyn Fn(&[f64]) -> bool + Send + Sync>;

/// A user's density with the capabilities its author declares; everything not declared is "not available".
///
/// ```
/// use fab_core::LogDensity;
/// use fab_targets::{CustomTarget, Target};
///
/// struct Banana;
/// impl LogDensity for Banana {
///     fn dim(&self) -> usize { 2 }
///     fn log_prob(&self, x: &[f64]) -> f64 { -0.5 * (x[0] * x[0] / 4.0 + (x[1] - x[0] * x[0] / 4.0).powi(2)) }
///     fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
///         let r = x[1] - x[0] * x[0] / 4.0;
///         g[0] = -x[0] / 4.0 + r * x[0] / 2.0;
///         g[1] = -r;
///         self.log_prob(x)
///     }
/// }
/// let target = CustomTarget::new("banana", Banana).with_log_z((4.0 * std::f64::consts::PI).ln());
/// assert_eq!(target.name(), "banana");
/// assert!(target.exact_sampler().is_none());
/// ```
pub struct CustomTarget<D> {
    name: String,
    density: D,
    log_z: Option<f64>,
    exact_sampler: Option<Box<dyn ExactSampler>>,
    moments: Option<Moments>,
    test_function: Option<TestFunction>,
    is_valid: Option<PointPredicate>,
}

impl<D: LogDensity> CustomTarget<D> {
    /// `density` named `name`, with no capabilities yet.
    pub fn new(name: impl Into<String>, density: D) -> Self {
        Self {
            name: name.into(),
            density,
            log_z: None,
            exact_sampler: None,
            moments: None,
            test_function: None,
            is_valid: None,
        }
    }
    /// Declares the exact `ln ∫ exp(log_prob)`.
    pub fn with_log_z(mut self, log_z: f64) -> Self {
        self.log_z = Some(log_z);
        self
    }
    /// Declares an exact sampler of the normalised density (evaluation only).
    pub fn with_exact_sampler(mut self, sampler: impl ExactSampler + 'static) -> Self {
        self.exact_sampler = Some(Box::new(sampler));
        self
    }
    /// Declares exact per-coordinate moments.
    pub fn with_moments(mut self, moments: Moments) -> Self {
        self.moments = Some(moments);
        self
    }
    /// Declares a test function with its exact expectation.
    pub fn with_test_function(mut self, f: TestFunction) -> Self {
        self.test_function = Some(f);
        self
    }
    /// Declares which points are valid (as fab-jax's `point_is_valid_fn`): AIS drops and counts the others.
    pub fn with_validity(mut self, is_valid: impl Fn(&[f64]) -> bool + Send + Sync + 'static) -> Self {
        self.is_valid = Some(Arc::new(is_valid));
        self
    }
    /// The wrapped density.
    pub fn density(&self) -> &D {
        &self.density
    }
}

impl<D: LogDensity> LogDensity for CustomTarget<D> {
    fn dim(&self) -> usize {
        self.density.dim()
    }
    fn evaluation(&self) -> Evaluation {
        self.density.evaluation()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.density.log_prob(x)
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.density.log_prob_and_grad(x, grad)
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        self.density.log_prob_batch(xs, log_p)
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
        self.density.log_prob_and_grad_batch(xs, log_p, grad)
    }
}

impl<D: LogDensity> Target for CustomTarget<D> {
    fn name(&self) -> &str {
        &self.name
    }
    fn log_z(&self) -> Option<f64> {
        self.log_z
    }
    fn exact_sampler(&self) -> Option<&dyn ExactSampler> {
        self.exact_sampler.as_deref()
    }
    fn moments(&self) -> Option<Moments> {
        self.moments.clone()
    }
    fn test_function(&self) -> Option<TestFunction> {
        self.test_function.clone()
    }
    fn point_is_valid(&self, x: &[f64]) -> bool {
        self.is_valid.as_ref().is_none_or(|f| f(x))
    }
}
