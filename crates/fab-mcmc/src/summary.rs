//! What users read after a run: an ArviZ-style summary table (mean, sd, MCSE, bulk/tail ESS, R̂ per coordinate)
//! and the export of draws to NumPy's `.npy` as a `(chain, draw, dim)` array, ArviZ's posterior layout.

use crate::rank_diagnostics::{ess_bulk, ess_tail, mcse_mean, rank_normalized_split_r_hat};
use crate::sampler::Trace;
use std::fmt;
use std::path::{Path, PathBuf};

/// One row of a [`Summary`]: the diagnostics of one coordinate over all chains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SummaryRow {
    /// Mean over all draws.
    pub mean: f64,
    /// Standard deviation over all draws (`ddof = 1`).
    pub sd: f64,
    /// Monte Carlo standard error of the mean.
    pub mcse_mean: f64,
    /// Bulk effective sample size (rank-normalised).
    pub ess_bulk: f64,
    /// Tail effective sample size (5 % and 95 % quantiles).
    pub ess_tail: f64,
    /// Rank-normalised split-R̂.
    pub r_hat: f64,
}

/// The diagnostics of every coordinate; `Display` prints them as ArviZ's `az.summary` does (2 decimals,
/// ESS as whole numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// One row per coordinate, named `x[d]`.
    pub rows: Vec<SummaryRow>,
}

impl Summary {
    /// Summarises a trace.
    pub fn of(trace: &Trace) -> Self {
        let rows = (0..trace.dim())
            .map(|d| {
                let chains = trace.all_series(d);
                let all: Vec<f64> = chains.iter().flatten().copied().collect();
                let n = all.len() as f64;
                let mean = all.iter().sum::<f64>() / n;
                let sd = (all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt();
                SummaryRow {
                    mean,
                    sd,
                    mcse_mean: mcse_mean(&chains),
                    ess_bulk: ess_bulk(&chains),
                    ess_tail: ess_tail(&chains),
                    r_hat: rank_normalized_split_r_hat(&chains),
                }
            })
            .collect();
        Self { rows }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_width = format!("x[{}]", self.rows.len().saturating_sub(1)).len();
        writeln!(
            f,
            "{:name_width$} {:>8} {:>8} {:>10} {:>9} {:>9} {:>6}",
            "", "mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"
        )?;
        for (d, r) in self.rows.iter().enumerate() {
            writeln!(
                f,
                "{:name_width$} {:>8.2} {:>8.2} {:>10.2} {:>9.0} {:>9.0} {:>6.2}",
                format!("x[{d}]"),
                r.mean,
                r.sd,
                r.mcse_mean,
                r.ess_bulk,
                r.ess_tail,
                r.r_hat
            )?;
        }
        Ok(())
    }
}

/// Writing draws to a `.npy` file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write draws to {path}: {reason}")]
pub struct NpyExportError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Writes the draws of `trace` to `path` as a little-endian `f64` array of shape `(n_chains, n_draws, dim)`.
pub fn write_draws_npy(trace: &Trace, path: &Path) -> Result<(), NpyExportError> {
    let (c, t, d) = (trace.n_chains(), trace.n_draws(), trace.dim());
    let array = ndarray::Array3::from_shape_fn((c, t, d), |(chain, draw, k)| trace.get(draw, chain, k));
    ndarray_npy::write_npy(path, &array).map_err(|e| NpyExportError { path: path.to_path_buf(), reason: e.to_string() })
}
