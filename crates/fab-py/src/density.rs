//! A Python callable on a batch, `f(x[n, d]) -> (log_p[n], grad[n, d])`, as a Rust `LogDensity`.
//!
//! The adapter is called from Rust worker threads while the GIL is released; each call attaches to the
//! interpreter for the duration of the Python call only. An exception (or a wrong shape/dtype) inside a call is
//! stored, the batch and every later batch evaluate to NaN (non-finite is "outside the support" for every fab
//! sampler, so Rust finishes its current unit of work without panicking), and the Python-facing entry point raises
//! the stored exception once Rust has returned ([`PyDensity::take_error`]).

use crate::arrays::{batch_ref_to_py, copy_into, float64_array};
use fab_core::{Batch, BatchMut, BatchRef, LogDensity};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The Rust side of a Python density.
pub struct PyDensity {
    log_prob_and_grad: Py<PyAny>,
    log_prob: Option<Py<PyAny>>,
    dim: usize,
    name: String,
    log_z: Option<f64>,
    error: Mutex<Option<PyErr>>,
    n_calls: AtomicU64,
    n_points: AtomicU64,
    n_non_finite: AtomicU64,
}

impl PyDensity {
    /// The first exception raised since the last call, clearing it so the density can be used again.
    pub fn take_error(&self) -> Option<PyErr> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Whether an exception is pending (every evaluation returns NaN until it is taken).
    fn has_error(&self) -> bool {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn store_error(&self, e: PyErr) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// The declared exact `ln ∫ exp(log_p)`, if any.
    pub fn log_z(&self) -> Option<f64> {
        self.log_z
    }

    /// The density's name (used in run names).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One Python call on all rows of `xs`; on any failure the outputs are NaN and the error is stored.
    fn evaluate(&self, xs: BatchRef<'_>, log_p: &mut [f64], mut grad: Option<&mut [f64]>) {
        let n = xs.n_rows();
        if n == 0 {
            return;
        }
        let outcome = if self.has_error() {
            Err(None)
        } else {
            Python::attach(|py| self.call_python(py, xs, log_p, grad.as_deref_mut())).map_err(Some)
        };
        match outcome {
            Ok(()) => {
                let bad = log_p.iter().filter(|v| !v.is_finite()).count();
                self.n_non_finite.fetch_add(bad as u64, Ordering::Relaxed);
            }
            Err(e) => {
                if let Some(e) = e {
                    self.store_error(e);
                }
                log_p.fill(f64::NAN);
                if let Some(g) = grad {
                    g.fill(f64::NAN);
                }
            }
        }
    }

    fn call_python(
        &self,
        py: Python<'_>,
        xs: BatchRef<'_>,
        log_p: &mut [f64],
        grad: Option<&mut [f64]>,
    ) -> PyResult<()> {
        let (n, d) = (xs.n_rows(), self.dim);
        self.n_calls.fetch_add(1, Ordering::Relaxed);
        self.n_points.fetch_add(n as u64, Ordering::Relaxed);
        let x = batch_ref_to_py(py, xs);
        let value_only = grad.is_none();
        let out = match (&self.log_prob, value_only) {
            (Some(f), true) => {
                let lp = f.call1(py, (x,))?;
                let lp = float64_array(lp.bind(py), "log_prob(x) return value", &[n])?;
                return copy_into(&lp, log_p);
            }
            _ => self.log_prob_and_grad.call1(py, (x,))?,
        };
        let out = out.bind(py);
        let pair = out.cast::<PyTuple>().ok().filter(|t| t.len() == 2).ok_or_else(|| {
            PyValueError::new_err(format!(
                "the density must return a tuple (log_p, grad) of float64 arrays of shapes ({n},) and ({n}, {d}), \
                 received {}",
                out.get_type().name().map(|s| s.to_string()).unwrap_or_default()
            ))
        })?;
        let lp = float64_array(&pair.get_item(0)?, "log_p (first returned array)", &[n])?;
        let g = float64_array(&pair.get_item(1)?, "grad (second returned array)", &[n, d])?;
        copy_into(&lp, log_p)?;
        if let Some(grad) = grad {
            copy_into(&g, grad)?;
        }
        Ok(())
    }
}

/// A Python density is a FAB target with the capabilities its author declared (a name and, optionally, log Z).
impl fab_targets::Target for PyDensity {
    fn name(&self) -> &str {
        &self.name
    }
    fn log_z(&self) -> Option<f64> {
        self.log_z
    }
}

impl LogDensity for PyDensity {
    fn dim(&self) -> usize {
        self.dim
    }

    /// One call per step on all chains, from one thread: the GIL serialises Python calls anyway, and each call
    /// has a fixed overhead that a whole batch pays once.
    fn evaluation(&self) -> fab_core::Evaluation {
        fab_core::Evaluation::WholeBatch
    }

    fn log_prob(&self, x: &[f64]) -> f64 {
        let mut lp = [0.0];
        self.log_prob_batch(BatchRef::new(x, self.dim), &mut lp);
        lp[0]
    }

    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut lp = [0.0];
        self.evaluate(BatchRef::new(x, self.dim), &mut lp, Some(grad));
        lp[0]
    }

    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        self.evaluate(xs, log_p, None);
    }

    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], mut grad: BatchMut<'_>) {
        self.evaluate(xs, log_p, Some(grad.as_mut_slice()));
    }
}

/// A target density written in Python, evaluated on whole batches.
///
/// `Density(log_prob_and_grad, dim, log_prob=None, name="custom", log_z=None)`
///
/// - `log_prob_and_grad(x)`: `x` is a float64 array of shape `(n, dim)`; returns a tuple `(log_p, grad)` of float64
///   arrays of shapes `(n,)` and `(n, dim)`: the unnormalised log density of each row and its gradient. It is
///   called once per batch, never per point or per chunk (all chains of one HMC leapfrog step, all AIS points of
///   one step, all flow samples of an evaluation), with the GIL held only during the call.
/// - `log_prob(x)` (optional): returns only `log_p`, shape `(n,)`, for calls that need no gradient (evaluation,
///   Metropolis). Without it those calls use `log_prob_and_grad` and ignore the gradient.
/// - `-inf`/NaN values mean "outside the support": points there are rejected and counted, never an error.
/// - `log_z` (optional): the exact `ln ∫ exp(log_p) dx` when you know it; evaluations then report log-Z errors.
/// - An exception raised by either function stops the fab call that made it and is re-raised unchanged.
///
/// Attributes: `dim`, `name`, and counters `n_calls` (Python calls made), `n_points` (rows evaluated) and
/// `n_non_finite` (non-finite `log_p` values returned).
#[pyclass(name = "Density", module = "fabrs", frozen)]
pub struct Density {
    /// The shared adapter (also held by runs and samplers).
    pub inner: Arc<PyDensity>,
}

#[pymethods]
impl Density {
    #[new]
    #[pyo3(signature = (log_prob_and_grad, dim, log_prob = None, name = "custom".to_string(), log_z = None))]
    fn new(
        log_prob_and_grad: Bound<'_, PyAny>,
        dim: usize,
        log_prob: Option<Bound<'_, PyAny>>,
        name: String,
        log_z: Option<f64>,
    ) -> PyResult<Self> {
        if dim == 0 {
            return Err(PyValueError::new_err("dim must be at least 1"));
        }
        if !log_prob_and_grad.is_callable() || log_prob.as_ref().is_some_and(|f| !f.is_callable()) {
            return Err(PyValueError::new_err("log_prob_and_grad and log_prob must be callables"));
        }
        Ok(Self {
            inner: Arc::new(PyDensity {
                log_prob_and_grad: log_prob_and_grad.unbind(),
                log_prob: log_prob.map(Bound::unbind),
                dim,
                name,
                log_z,
                error: Mutex::new(None),
                n_calls: AtomicU64::new(0),
                n_points: AtomicU64::new(0),
                n_non_finite: AtomicU64::new(0),
            }),
        })
    }

    /// Dimension of the space.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim
    }
    /// The name given at construction.
    #[getter]
    fn name(&self) -> String {
        self.inner.name.clone()
    }
    /// Python calls made so far (one per batch).
    #[getter]
    fn n_calls(&self) -> u64 {
        self.inner.n_calls.load(Ordering::Relaxed)
    }
    /// Rows evaluated so far, over all calls.
    #[getter]
    fn n_points(&self) -> u64 {
        self.inner.n_points.load(Ordering::Relaxed)
    }
    /// Non-finite `log_p` values returned so far.
    #[getter]
    fn n_non_finite(&self) -> u64 {
        self.inner.n_non_finite.load(Ordering::Relaxed)
    }

    /// Evaluates `(log_p, grad)` at `x` (shape `(n, dim)`) through the same checks fab applies, for testing a density.
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
        let xs = crate::arrays::batch_from_py(x, self.inner.dim, "x")?;
        let n = xs.n_rows();
        let mut log_p = vec![0.0; n];
        let mut grad = Batch::zeros(n, self.inner.dim);
        self.inner.log_prob_and_grad_batch(xs.view(), &mut log_p, grad.view_mut());
        if let Some(e) = self.inner.take_error() {
            return Err(e);
        }
        PyTuple::new(
            py,
            [crate::arrays::vec_to_py(py, log_p).into_any(), crate::arrays::batch_to_py(py, grad).into_any()],
        )
    }

    fn __repr__(&self) -> String {
        format!("Density(name={:?}, dim={})", self.inner.name, self.inner.dim)
    }
}
