//! The built-in targets of fab-targets (the papers' mixtures, Many Well, funnel, Gaussian) as Python objects.

use crate::arrays::{batch_from_py, batch_to_py, vec_to_py};
use crate::errors::FabError;
use fab_core::{Batch, LogDensity, stream_rng};
use fab_targets::{Target, TargetSpec};
use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::Arc;

/// A built-in target density (evaluated in Rust).
///
/// Made by `Mog2021()`, `Gmm40()`, `Gmm(means, stds, weights)`, `DoubleWell()`, `ManyWell(dim)`,
/// `DiagGaussian(means, stds)` or `Funnel(dim)`. Callable like a user density: `target(x) -> (log_p, grad)`.
/// Attributes: `name`, `dim`, `log_z` (exact `ln Z` of the density as returned, or None).
#[pyclass(name = "Target", module = "fabrs", frozen)]
pub struct BuiltinTarget {
    /// The config description (what `train` puts into the RON config's `target` field).
    pub spec: TargetSpec,
    /// The built density.
    pub target: Arc<dyn Target>,
}

impl BuiltinTarget {
    fn from_spec(spec: TargetSpec) -> PyResult<Self> {
        let target = spec.build().map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(Self { spec, target: Arc::from(target) })
    }
}

/// `n` exact samples of `target` from stream `(seed, 0)`.
pub fn exact_samples(target: &dyn Target, seed: u64, n: usize) -> Option<Batch> {
    target.exact_sampler().map(|s| s.sample_exact(&mut stream_rng(seed, 0), n))
}

#[pymethods]
impl BuiltinTarget {
    /// Short identifier, e.g. `"many_well_16"`.
    #[getter]
    fn name(&self) -> String {
        self.target.name().to_string()
    }
    /// Dimension of the space.
    #[getter]
    fn dim(&self) -> usize {
        self.target.dim()
    }
    /// Exact `ln Z` of `log_prob` (0.0 for normalised targets), or None when unknown.
    #[getter]
    fn log_z(&self) -> Option<f64> {
        self.target.log_z()
    }

    /// `(log_p, grad)` at the rows of `x` (shape `(n, dim)`).
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
        let xs = batch_from_py(x, self.target.dim(), "x")?;
        let n = xs.n_rows();
        let (log_p, grad) = py.detach(|| {
            let mut log_p = vec![0.0; n];
            let mut grad = Batch::zeros(n, self.target.dim());
            self.target.log_prob_and_grad_batch(xs.view(), &mut log_p, grad.view_mut());
            (log_p, grad)
        });
        PyTuple::new(py, [vec_to_py(py, log_p).into_any(), batch_to_py(py, grad).into_any()])
    }

    /// `log_p` at the rows of `x` (shape `(n, dim)`), without the gradient.
    fn log_prob<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let xs = batch_from_py(x, self.target.dim(), "x")?;
        let log_p = py.detach(|| {
            let mut log_p = vec![0.0; xs.n_rows()];
            self.target.log_prob_batch(xs.view(), &mut log_p);
            log_p
        });
        Ok(vec_to_py(py, log_p))
    }

    /// `n` exact (independent) samples, shape `(n, dim)`.
    #[pyo3(signature = (n, seed = 0))]
    fn sample<'py>(&self, py: Python<'py>, n: usize, seed: u64) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let x = py
            .detach(|| exact_samples(self.target.as_ref(), seed, n))
            .ok_or_else(|| FabError::new_err(format!("{} has no exact sampler", self.target.name())))?;
        Ok(batch_to_py(py, x))
    }

    fn __repr__(&self) -> String {
        format!("Target({:?})", self.spec)
    }
}

/// The 2021 workshop mixture of 5 Gaussians in 2-D (SPEC §1a-i).
#[pyfunction(name = "Mog2021")]
pub fn mog_2021() -> PyResult<BuiltinTarget> {
    BuiltinTarget::from_spec(TargetSpec::Mog5_2021)
}

/// The ICLR 2023 40-mode Gaussian mixture in 2-D (SPEC §1a-ii).
#[pyfunction(name = "Gmm40")]
pub fn gmm40() -> PyResult<BuiltinTarget> {
    BuiltinTarget::from_spec(TargetSpec::Gmm40Iclr)
}

/// A diagonal Gaussian mixture: `means` and `stds` are lists of rows (one per component), `weights` positive.
#[pyfunction(name = "Gmm")]
pub fn gmm(means: Vec<Vec<f64>>, stds: Vec<Vec<f64>>, weights: Vec<f64>) -> PyResult<BuiltinTarget> {
    BuiltinTarget::from_spec(TargetSpec::Gmm { means, stds, weights })
}

/// The 2-D Double Well (one Many Well pair).
#[pyfunction(name = "DoubleWell")]
pub fn double_well() -> PyResult<BuiltinTarget> {
    BuiltinTarget::from_spec(TargetSpec::DoubleWell)
}

/// The Many Well in an even dimension (16 in the 2021 paper, 32 in ICLR).
#[pyfunction(name = "ManyWell")]
#[pyo3(signature = (dim = 16))]
pub fn many_well(dim: usize) -> PyResult<BuiltinTarget> {
    BuiltinTarget::from_spec(TargetSpec::ManyWell { dim })
}

/// A normalised diagonal Gaussian with the given per-coordinate means and standard deviations.
#[pyfunction(name = "DiagGaussian")]
pub fn diag_gaussian(means: Vec<f64>, stds: Vec<f64>) -> PyResult<BuiltinTarget> {
    BuiltinTarget::from_spec(TargetSpec::DiagGaussian { means, stds })
}

/// Neal's funnel (the first coordinate is the neck variable).
#[pyfunction(name = "Funnel")]
#[pyo3(signature = (dim = 10))]
pub fn funnel(dim: usize) -> PyResult<BuiltinTarget> {
    BuiltinTarget::from_spec(TargetSpec::Funnel { dim })
}
