//! Typed errors of fab-mcmc: shape mismatches and invalid tunables. Non-finite densities are never errors.

use fab_core::ShapeError;

/// Something the caller asked for that cannot be run. Divergences and non-finite densities are *not*
/// errors: they are rejected proposals, reported in [`crate::ChainInfo`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum McmcError {
    /// A combination needs at least one component density.
    #[error("a linear combination of log densities needs at least one component")]
    NoComponents,
    /// Components of one combination live in different spaces.
    #[error("component {index} has dimension {got}, expected {expected}")]
    ComponentDimension {
        /// Index of the offending component.
        index: usize,
        /// Dimension of component 0.
        expected: usize,
        /// Dimension of the offending component.
        got: usize,
    },
    /// The number of coefficients differs from the number of components.
    #[error("{got} coefficients given for {expected} components")]
    CoefficientCount {
        /// Number of components.
        expected: usize,
        /// Number of coefficients given.
        got: usize,
    },
    /// A coefficient is NaN or infinite.
    #[error("coefficient {index} is not finite ({value})")]
    NonFiniteCoefficient {
        /// Index of the coefficient.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A batch of positions does not have the density's dimension.
    #[error("positions have dimension {got}, the density has dimension {expected}")]
    PositionDimension {
        /// Dimension of the density.
        expected: usize,
        /// Dimension of the positions.
        got: usize,
    },
    /// Cached values given for a component have the wrong length.
    #[error("cached values for component {index}: {got} entries for {expected} chains")]
    CachedLength {
        /// Component index.
        index: usize,
        /// Number of chains.
        expected: usize,
        /// Entries supplied.
        got: usize,
    },
    /// A state and a combination disagree on the number of components.
    #[error("the chain state caches {state} components, the target has {target}")]
    ComponentCount {
        /// Components cached by the state.
        state: usize,
        /// Components of the target.
        target: usize,
    },
    /// A configuration value is out of range; `field` names it.
    #[error("invalid `{field}`: {reason}")]
    InvalidParameter {
        /// The offending field or argument, e.g. `step_size`.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A batch could not be built.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// Refuses a step size that is not a positive finite number.
pub(crate) fn check_step_size(step_size: f64) -> Result<(), McmcError> {
    if step_size.is_finite() && step_size > 0.0 {
        Ok(())
    } else {
        Err(McmcError::InvalidParameter {
            field: "step_size",
            reason: format!("must be positive and finite, got {step_size}"),
        })
    }
}
