//! Typed errors of fab-flow: invalid architectures, shape mismatches and persistence failures.

use fab_core::ShapeError;

/// Everything that can go wrong when building, feeding, saving or loading a flow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The architecture description is not a valid flow.
    #[error("invalid flow specification: {0}")]
    InvalidSpec(String),
    /// A batch or buffer has the wrong shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a readable safetensors file.
    #[error("malformed safetensors file: {0}")]
    Format(String),
    /// The architecture stored in the file differs from the flow it is loaded into.
    #[error("architecture mismatch: the file describes a different flow ({0})")]
    ArchitectureMismatch(String),
    /// A tensor the architecture needs is absent from the file.
    #[error("tensor `{0}` is missing from the file")]
    MissingTensor(String),
    /// A tensor has an unexpected shape or dtype.
    #[error("tensor `{name}`: expected {expected}, found {found}")]
    TensorMismatch {
        /// Tensor name.
        name: String,
        /// What the architecture needs.
        expected: String,
        /// What the file holds.
        found: String,
    },
}
