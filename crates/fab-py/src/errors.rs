//! The `fabrs.FabError` exception and the mapping of fab's typed Rust errors onto Python exceptions.

use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};

create_exception!(
    fabrs,
    FabError,
    PyRuntimeError,
    "A fab run failed for a reason other than bad input (e.g. every AIS point of a batch was invalid, or a checkpoint \
     could not be written)."
);

/// Misuse (bad config, bad shapes, bad tunables): `ValueError` with fab's message, which names the field.
pub fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A training error: config errors are ValueErrors, everything else a FabError.
pub fn train_error(e: fab_train::TrainError) -> PyErr {
    match e {
        fab_train::TrainError::Config(_) => value_error(e),
        other => FabError::new_err(other.to_string()),
    }
}
