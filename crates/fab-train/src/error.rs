//! `TrainError`: why a run could not be built, stepped or restored; every variant keeps its cause typed.

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::snf::SnfError;
use fab_ais::AisError;
use fab_flow::FlowError;

/// Why a run could not be built, stepped or restored.
///
/// The wrapped errors are part of the message and deliberately not exposed as `source()`: a report that prints the
/// chain (`{:#}`) would otherwise say the same reason twice. Match on the variant to reach the typed cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(ConfigError),
    /// The flow could not be built or restored.
    #[error("flow: {0}")]
    Flow(FlowError),
    /// A checkpoint could not be read or does not belong to this config.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// AIS failed (e.g. every point of a batch was invalid: the flow collapsed or diverged).
    #[error("AIS: {0}")]
    Ais(AisError),
    /// The replay buffer could not be filled or sampled.
    #[error("replay buffer: {0}")]
    Buffer(BufferError),
    /// The SNF could not be built.
    #[error("SNF: {0}")]
    Snf(SnfError),
}

/// Why the replay buffer could not serve a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BufferError {
    /// AIS kept producing invalid points, so the buffer never reached its minimum length.
    #[error("could not be filled after {batches} AIS batches: AIS keeps producing invalid points")]
    NotFilled {
        /// AIS batches tried.
        batches: u64,
    },
    /// Fewer valid points than one step's draw.
    #[error("holds fewer than {needed} valid points")]
    TooFewPoints {
        /// Points one step draws.
        needed: usize,
    },
}

impl From<ConfigError> for TrainError {
    fn from(e: ConfigError) -> Self {
        TrainError::Config(e)
    }
}
impl From<FlowError> for TrainError {
    fn from(e: FlowError) -> Self {
        TrainError::Flow(e)
    }
}
impl From<SnfError> for TrainError {
    fn from(e: SnfError) -> Self {
        TrainError::Snf(e)
    }
}
impl From<AisError> for TrainError {
    fn from(e: AisError) -> Self {
        TrainError::Ais(e)
    }
}
impl From<BufferError> for TrainError {
    fn from(e: BufferError) -> Self {
        TrainError::Buffer(e)
    }
}
