//! The `Target` trait every built-in target implements, and the exact marginal moments used to test samplers.

use fab_core::{ExactSampler, LogDensity};

/// `ln(2π)`, used by every Gaussian normalising constant in this crate.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A target density of the FAB experiments: an (unnormalised) log density with an exact sampler.
///
/// Object-safe: configs build a `Box<dyn Target>`, and a `&dyn Target` upcasts to `&dyn LogDensity`
/// or `&dyn ExactSampler` wherever a sampler or a metric needs only that part.
pub trait Target: LogDensity + ExactSampler {
    /// A short stable identifier, e.g. `"gmm40_iclr"` or `"many_well_32"`.
    fn name(&self) -> &str;

    /// `ln Z` of the density returned by `log_prob`, i.e. `ln ∫ exp(log_prob(x)) dx`, when known exactly.
    /// `Some(0.0)` for normalised densities.
    fn log_z(&self) -> Option<f64>;

    /// Exact per-coordinate moments of the normalised target, when known (analytically or by quadrature).
    /// Tests compare exact samples against them; metrics may use them as ground truth.
    fn moments(&self) -> Option<Moments> {
        None
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
