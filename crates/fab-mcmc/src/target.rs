//! The density a chain targets: `log π(x) = Σₖ cₖ·log fₖ(x)`, a linear combination of component log densities.
//!
//! A plain density is the case of one component with coefficient 1. AIS uses two components, `q` and `p`, with
//! coefficients `(1 − αβ, αβ)`: the chain state caches every component's value and gradient, so changing the
//! coefficients (moving to the next β) needs no new evaluation.

use crate::error::McmcError;
use fab_core::{Evaluation, LogDensity};

/// `log π(x) = Σₖ cₖ·log fₖ(x)` over borrowed component densities.
///
/// A point is valid for the combination only when *every* component is finite there, even a component whose
/// coefficient is 0 (`0·(−∞)` is `NaN`): AIS relies on this to reject points where `log q` or `log p` fails.
#[derive(Clone)]
pub struct LinearLogDensity<'a> {
    components: Vec<&'a dyn LogDensity>,
    coefficients: Vec<f64>,
    /// Each component's [`Evaluation`], read once at construction.
    evaluations: Vec<Evaluation>,
    dim: usize,
}

impl std::fmt::Debug for LinearLogDensity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinearLogDensity")
            .field("n_components", &self.components.len())
            .field("coefficients", &self.coefficients)
            .field("dim", &self.dim)
            .finish()
    }
}

impl<'a> LinearLogDensity<'a> {
    /// One density with coefficient 1: the standalone-sampler case.
    pub fn single(density: &'a dyn LogDensity) -> Self {
        Self {
            dim: density.dim(),
            evaluations: vec![density.evaluation()],
            components: vec![density],
            coefficients: vec![1.0],
        }
    }

    /// `Σₖ coefficients[k]·log components[k]`; all components must share one dimension.
    pub fn new(components: Vec<&'a dyn LogDensity>, coefficients: Vec<f64>) -> Result<Self, McmcError> {
        let first = components.first().ok_or(McmcError::NoComponents)?;
        let dim = first.dim();
        if let Some((index, c)) = components.iter().enumerate().find(|(_, c)| c.dim() != dim) {
            return Err(McmcError::ComponentDimension { index, expected: dim, got: c.dim() });
        }
        let evaluations = components.iter().map(|c| c.evaluation()).collect();
        let mut out = Self { components, coefficients: Vec::new(), evaluations, dim };
        out.set_coefficients(&coefficients)?;
        Ok(out)
    }

    /// Replaces the coefficients (e.g. the next β of an annealing schedule); no density is evaluated.
    pub fn set_coefficients(&mut self, coefficients: &[f64]) -> Result<(), McmcError> {
        if coefficients.len() != self.components.len() {
            return Err(McmcError::CoefficientCount { expected: self.components.len(), got: coefficients.len() });
        }
        if let Some((index, &value)) = coefficients.iter().enumerate().find(|(_, c)| !c.is_finite()) {
            return Err(McmcError::NonFiniteCoefficient { index, value });
        }
        self.coefficients.clear();
        self.coefficients.extend_from_slice(coefficients);
        Ok(())
    }

    /// Dimension of the space.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of component densities.
    pub fn n_components(&self) -> usize {
        self.components.len()
    }
    /// The component densities.
    pub fn components(&self) -> &[&'a dyn LogDensity] {
        &self.components
    }
    /// How component `k` wants to be called: per chunk from many threads, or once on all chains.
    pub fn evaluation(&self, k: usize) -> Evaluation {
        self.evaluations[k]
    }
    /// True when some component must be evaluated once per step on all chains ([`Evaluation::WholeBatch`]):
    /// the chain engine then advances its chunks in lock-step, one leapfrog step at a time.
    pub fn has_whole_batch_component(&self) -> bool {
        self.evaluations.contains(&Evaluation::WholeBatch)
    }
    /// The coefficients `cₖ`.
    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }

    /// `Σₖ cₖ·log fₖ` from the component values `log_f(k)`.
    pub fn combine_log(&self, log_f: impl Fn(usize) -> f64) -> f64 {
        self.coefficients.iter().enumerate().map(|(k, c)| c * log_f(k)).sum()
    }

    /// Evaluates `log π(x)` directly (every component, no cache); for tests and one-off checks.
    pub fn log_prob(&self, x: &[f64]) -> f64 {
        self.combine_log(|k| self.components[k].log_prob(x))
    }
}
