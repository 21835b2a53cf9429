//! `fabrs`: fab (Flow Annealed Importance Sampling Bootstrap) for Python, with the target written as a numpy function.

mod arrays;
mod config;
mod density;
mod errors;
mod hmc;
mod run_dir;
mod source;
mod targets;
mod train;

use pyo3::prelude::*;

/// FAB in Rust for Python: train a normalizing flow on your own (unnormalised) numpy density.
#[pymodule]
fn fabrs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FabError", m.py().get_type::<errors::FabError>())?;
    m.add_class::<density::Density>()?;
    m.add_class::<targets::BuiltinTarget>()?;
    m.add_function(wrap_pyfunction!(targets::mog_2021, m)?)?;
    m.add_function(wrap_pyfunction!(targets::gmm40, m)?)?;
    m.add_function(wrap_pyfunction!(targets::gmm, m)?)?;
    m.add_function(wrap_pyfunction!(targets::double_well, m)?)?;
    m.add_function(wrap_pyfunction!(targets::many_well, m)?)?;
    m.add_function(wrap_pyfunction!(targets::diag_gaussian, m)?)?;
    m.add_function(wrap_pyfunction!(targets::funnel, m)?)?;
    m.add_function(wrap_pyfunction!(hmc::hmc, m)?)?;
    m.add_class::<train::Model>()?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    Ok(())
}
