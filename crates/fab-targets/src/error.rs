//! Typed errors of fab-targets: every invalid target description names the offending field and the reason.

/// Why a target (or a quadratic test function) could not be built from the given parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A vector or matrix has the wrong number of entries.
    #[error("`{field}`: expected {expected}, got {got}")]
    WrongLength {
        /// The field, e.g. `stds[2]`.
        field: String,
        /// What was needed, e.g. "2 entries".
        expected: String,
        /// What was given.
        got: String,
    },
    /// An entry that must be strictly positive (a standard deviation, a mixture weight) is not.
    #[error("`{field}`: must be strictly positive, got {value}")]
    NotPositive {
        /// The field with its index, e.g. `weights[3]`.
        field: String,
        /// The offending value.
        value: f64,
    },
    /// An entry is `NaN` or infinite.
    #[error("`{field}`: must be finite, got {value}")]
    NotFinite {
        /// The field with its index, e.g. `means[0][1]`.
        field: String,
        /// The offending value.
        value: f64,
    },
    /// A dimension the target cannot have.
    #[error("`dim` of {target}: {reason}, got {dim}")]
    InvalidDimension {
        /// Which target, e.g. "ManyWell".
        target: &'static str,
        /// The rejected dimension.
        dim: usize,
        /// What the target needs, e.g. "must be even and at least 2".
        reason: &'static str,
    },
}

/// Checks that every entry of `values` is finite, naming `field[i]` otherwise.
pub(crate) fn check_finite(field: &str, values: &[f64]) -> Result<(), TargetError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(TargetError::NotFinite { field: format!("{field}[{i}]"), value: values[i] }),
        None => Ok(()),
    }
}

/// Checks that every entry of `values` is finite and strictly positive, naming `field[i]` otherwise.
pub(crate) fn check_positive(field: &str, values: &[f64]) -> Result<(), TargetError> {
    check_finite(field, values)?;
    match values.iter().position(|&v| v <= 0.0) {
        Some(i) => Err(TargetError::NotPositive { field: format!("{field}[{i}]"), value: values[i] }),
        None => Ok(()),
    }
}

/// Checks that `values` has exactly `expected` entries.
pub(crate) fn check_len(field: &str, values: &[f64], expected: usize) -> Result<(), TargetError> {
    if values.len() != expected {
        return Err(TargetError::WrongLength {
            field: field.to_string(),
            expected: format!("{expected} entries"),
            got: format!("{}", values.len()),
        });
    }
    Ok(())
}
