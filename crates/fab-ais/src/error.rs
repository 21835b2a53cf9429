//! Typed errors of fab-ais: invalid configuration (naming the field) and runs that cannot proceed.

use fab_mcmc::McmcError;

/// A configuration value that cannot be used; `field` names it as written in [`crate::AisConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid AIS configuration: `{field}` {reason}")]
pub struct AisConfigError {
    /// The offending field, e.g. `alpha` or `schedule`.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl AisConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// Where in a run points were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// After drawing from the proposal and evaluating `log q`, `log p`.
    Init,
    /// After the last transition.
    End,
}

/// Why an AIS run could not produce output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AisError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] AisConfigError),
    /// The MCMC layer refused its input (dimensions, tunables).
    #[error(transparent)]
    Mcmc(#[from] McmcError),
    /// Proposal and target live in different spaces.
    #[error("proposal has dimension {proposal}, target has dimension {target}")]
    DimensionMismatch {
        /// Dimension of the proposal.
        proposal: usize,
        /// Dimension of the target.
        target: usize,
    },
    /// Every point had a non-finite `log q`, `log p` or weight (the run has nothing to return).
    #[error("no point with finite log q, log p and weight remained at {stage:?} (of {n_requested})")]
    NoValidPoints {
        /// Where the last point was lost.
        stage: Stage,
        /// Points drawn.
        n_requested: usize,
    },
    /// A restored adaptation state does not match the configuration.
    #[error("adaptation state has {got} step sizes, the configuration needs {expected}")]
    AdaptationMismatch {
        /// One per intermediate distribution.
        expected: usize,
        /// In the state given.
        got: usize,
    },
}
