//! What a Python caller may pass as a density: a `fabrs.Density` (Python callable) or a built-in `fabrs.Target`.

use crate::density::{Density, PyDensity};
use crate::targets::BuiltinTarget;
use fab_core::LogDensity;
use fab_targets::{Target, TargetSpec};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use std::sync::Arc;

/// A density argument, resolved.
#[derive(Clone)]
pub enum DensitySource {
    /// A user's Python function.
    Python(Arc<PyDensity>),
    /// A built-in target and its config description.
    Builtin(TargetSpec, Arc<dyn Target>),
}

impl DensitySource {
    /// Accepts a `fabrs.Density` or a built-in `fabrs.Target`.
    pub fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(d) = obj.cast::<Density>() {
            return Ok(Self::Python(d.get().inner.clone()));
        }
        if let Ok(t) = obj.cast::<BuiltinTarget>() {
            let t = t.get();
            return Ok(Self::Builtin(t.spec.clone(), t.target.clone()));
        }
        Err(PyTypeError::new_err(format!(
            "expected a fabrs.Density (wrap your function: fabrs.Density(f, dim)) or a built-in target such as \
             fabrs.Mog2021(), received {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        )))
    }

    /// The density as fab's samplers see it.
    pub fn log_density(&self) -> &dyn LogDensity {
        match self {
            Self::Python(d) => d.as_ref(),
            Self::Builtin(_, t) => t.as_ref(),
        }
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.log_density().dim()
    }

    /// The exception the Python function raised during the last Rust call, if any (cleared).
    pub fn take_error(&self) -> Option<PyErr> {
        match self {
            Self::Python(d) => d.take_error(),
            Self::Builtin(..) => None,
        }
    }
}
