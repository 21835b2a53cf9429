//! numpy ⇄ fab batch conversions, and the shape/dtype checks whose ValueErrors name expected and received shapes.

use fab_core::{Batch, BatchRef};
use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A shape as Python prints it: `(100,)`, `(100, 2)`.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// `obj` as a float64 numpy array of exactly `expected` shape, or a ValueError naming `what`, the expected shape
/// and dtype, and what was received.
pub fn float64_array<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    expected: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let want = format!("a float64 numpy array of shape {}", shape_str(expected));
    let Ok(arr) = obj.cast::<PyUntypedArray>() else {
        let type_name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        return Err(PyValueError::new_err(format!("{what}: expected {want}, received a {type_name}")));
    };
    let (shape, dtype) = (arr.shape().to_vec(), arr.dtype());
    let is_f64 = dtype.is_equiv_to(&numpy::dtype::<f64>(obj.py()));
    if shape != expected || !is_f64 {
        return Err(PyValueError::new_err(format!(
            "{what}: expected {want}, received a {dtype} array of shape {}",
            shape_str(&shape)
        )));
    }
    Ok(arr.cast::<PyArrayDyn<f64>>()?.clone())
}

/// Copies a float64 array (of any memory layout) into `out`, in C order.
pub fn copy_into(arr: &Bound<'_, PyArrayDyn<f64>>, out: &mut [f64]) -> PyResult<()> {
    // `to_vec` reads a contiguous array without registering a borrow (cheaper than `readonly()` per call).
    match arr.to_vec() {
        Ok(v) => out.copy_from_slice(&v),
        Err(_) => {
            let ro = arr.readonly();
            out.iter_mut().zip(ro.as_array().iter()).for_each(|(o, v)| *o = *v);
        }
    }
    Ok(())
}

/// A caller's points `x` as a batch of `dim` columns: a `(n, dim)` float64 array (a `(dim,)` array is one point).
/// Other dtypes are converted by numpy (`np.asarray(x, dtype=float64)`), so lists are accepted too.
pub fn batch_from_py(x: &Bound<'_, PyAny>, dim: usize, what: &str) -> PyResult<Batch> {
    let np = x.py().import("numpy")?;
    let arr = np.call_method1("ascontiguousarray", (x, "float64"))?;
    let arr = arr.cast::<PyUntypedArray>()?.clone();
    let shape = arr.shape().to_vec();
    let n = match shape.as_slice() {
        [d] if *d == dim => 1,
        [n, d] if *d == dim => *n,
        _ => {
            return Err(PyValueError::new_err(format!(
                "{what}: expected an array of shape (n, {dim}), received shape {}",
                shape_str(&shape)
            )));
        }
    };
    let arr = arr.cast::<PyArrayDyn<f64>>()?;
    let mut data = vec![0.0; n * dim];
    copy_into(arr, &mut data)?;
    Ok(Batch::from_vec(data, dim).expect("n × dim by construction"))
}

/// A batch as a new `(n, dim)` numpy array (moved, not copied).
pub fn batch_to_py<'py>(py: Python<'py>, x: Batch) -> Bound<'py, PyArray2<f64>> {
    PyArray2::from_owned_array(py, x.into_array())
}

/// A borrowed batch as a new `(n, dim)` numpy array (one copy: Python must own what it is given).
pub fn batch_ref_to_py<'py>(py: Python<'py>, x: BatchRef<'_>) -> Bound<'py, PyArray2<f64>> {
    PyArray2::from_owned_array(py, x.as_array().to_owned())
}

/// A vector as a new 1-D numpy array (moved, not copied).
pub fn vec_to_py<'py>(py: Python<'py>, v: Vec<f64>) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_vec(py, v)
}
