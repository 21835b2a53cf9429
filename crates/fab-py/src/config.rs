//! The `config` argument of `fabrs.train`: None (the CLI default), a RON file path or RON text, plus overrides.

use crate::errors::value_error;
use crate::source::DensitySource;
use fab_train::TrainConfig;
use fab_train::config::{Budget, CheckedTrainConfig, FlowConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::Path;

/// The default: FAB 2021 with the paper's settings on the MoG (`configs/mog_fab_2021.ron`), adapted to the density.
const DEFAULT_CONFIG: &str = include_str!("default_config.ron");

/// Keyword overrides of `train`.
pub struct Overrides {
    /// `seed=`.
    pub seed: Option<u64>,
    /// `iterations=`: the budget in iterations.
    pub iterations: Option<u64>,
    /// `batch_size=`.
    pub batch_size: Option<usize>,
}

/// Parses RON config text; `name` (a file or "config string") prefixes errors with the line and column.
fn parse(text: &str, name: &str) -> PyResult<TrainConfig> {
    TrainConfig::from_ron(text).map_err(|e| {
        let pos = e.span.start;
        PyValueError::new_err(format!("{name}:{}:{}: {}", pos.line, pos.col, e.code))
    })
}

/// The config text and its name: a path to an existing file, or RON text (anything containing `(`).
fn config_text(config: Option<&Bound<'_, PyAny>>) -> PyResult<(String, String)> {
    let Some(config) = config else {
        return Ok((DEFAULT_CONFIG.to_string(), "the default config (configs/mog_fab_2021.ron)".into()));
    };
    let s: String = match config.extract::<String>() {
        Ok(s) => s,
        Err(_) => config.py().import("os")?.call_method1("fspath", (config,))?.extract()?,
    };
    let path = Path::new(&s);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| value_error(format!("cannot read {s}: {e}")))?;
        return Ok((text, s));
    }
    if s.contains('(') {
        return Ok((s, "config string".into()));
    }
    Err(value_error(format!("config: no such file {s:?} (a RON config string must contain its `(`…`)`)")))
}

/// The flow dimension a flow config declares.
fn flow_dim(flow: &FlowConfig) -> usize {
    flow.spec().dim
}

/// Sets the flow dimension of a paper preset (the default config's flow is for the 2-D MoG).
fn set_flow_dim(flow: &mut FlowConfig, d: usize) {
    match flow {
        FlowConfig::RealNvp2021 { dim, .. } | FlowConfig::RealNvpIclr { dim, .. } => *dim = d,
        _ => {}
    }
}

/// Resolves `config` for `source`: the target comes from the density, overrides are applied, and the result is
/// validated (a ValueError names the field); for a built-in target the checked config comes back too, so the run is
/// built without checking again. The default config's flow takes the density's dimension; a given config's flow
/// must already match it.
pub fn resolve(
    config: Option<&Bound<'_, PyAny>>,
    source: &DensitySource,
    o: &Overrides,
) -> PyResult<(TrainConfig, Option<CheckedTrainConfig>)> {
    let is_default = config.is_none();
    let (text, name) = config_text(config)?;
    let mut c = parse(&text, &name)?;
    let dim = source.dim();
    c.target = match source {
        DensitySource::Builtin(spec, _) => Some(spec.clone()),
        DensitySource::Python(_) => None,
    };
    if is_default {
        set_flow_dim(&mut c.flow, dim);
        c.name = format!("{}_fab_2021", source_name(source));
    }
    if flow_dim(&c.flow) != dim {
        return Err(value_error(format!(
            "{name}: field `flow`: the flow has dimension {}, the density has dimension {dim}",
            flow_dim(&c.flow)
        )));
    }
    if let Some(s) = o.seed {
        c.seed = s;
    }
    if let Some(n) = o.iterations {
        c.budget = Budget::Iterations(n);
    }
    if let Some(b) = o.batch_size {
        c.batch_size = b;
    }
    // Checked once, here, before any run directory exists: a built-in target's config against the target it names;
    // a Python density's config is checked with the density by Run::with_target (its dimension was compared above).
    let checked = match source {
        DensitySource::Builtin(..) => Some(c.clone().check().map_err(|e| value_error(format!("{name}: {e}")))?),
        DensitySource::Python(_) => None,
    };
    Ok((c, checked))
}

/// A short name for run names.
fn source_name(source: &DensitySource) -> String {
    match source {
        DensitySource::Python(d) => d.name().to_string(),
        DensitySource::Builtin(_, t) => t.name().to_string(),
    }
}
