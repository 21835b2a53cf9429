//! Typed errors of fab-core: the only thing that can go wrong here is a shape.

/// A buffer whose length or dimension does not describe an `n × dim` batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// `dim` was zero: a batch needs at least one coordinate per row.
    #[error("dimension must be at least 1")]
    ZeroDim,
    /// The buffer length is not a multiple of the dimension.
    #[error("buffer of length {len} is not a whole number of rows of dimension {dim}")]
    Ragged {
        /// Length of the flat buffer.
        len: usize,
        /// Requested row length.
        dim: usize,
    },
    /// An array view that is not in standard (row-major, contiguous) layout.
    #[error("array is not in standard row-major layout")]
    NotRowMajor,
    /// Two batches or buffers that must agree in shape do not.
    #[error("shape mismatch: expected {expected}, got {got}")]
    Mismatch {
        /// What the callee needed, e.g. "3 rows of dim 2".
        expected: String,
        /// What it received.
        got: String,
    },
}
