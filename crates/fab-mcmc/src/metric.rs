//! The Euclidean metric of HMC/NUTS: a diagonal or dense inverse mass matrix `Σ = M⁻¹`, with the operations a
//! trajectory needs (momentum draws `p ~ N(0, M)`, velocities `Σp`, kinetic energy `½ pᵀΣp`).

use crate::error::McmcError;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// The shape of mass matrix a warm-up adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricForm {
    /// A diagonal: one variance per coordinate (Welford variances).
    Diagonal,
    /// A full covariance (Welford covariance); for small dimensions.
    Dense,
}

/// The inverse mass matrix `Σ = M⁻¹`, which an adapted warm-up sets to the estimated posterior covariance
/// (Stan's `inv_metric`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InverseMetric {
    /// `Σ = diag(v)`: the default; costs `O(d)` per leapfrog step.
    Diagonal(Vec<f64>),
    /// A full symmetric positive-definite `Σ`, row-major `d × d`; costs `O(d²)` per step, for small dimensions.
    Dense {
        /// Dimension `d`.
        dim: usize,
        /// Row-major entries of `Σ`.
        matrix: Vec<f64>,
    },
}

impl InverseMetric {
    /// The identity metric in dimension `dim`.
    pub fn identity(dim: usize) -> Self {
        InverseMetric::Diagonal(vec![1.0; dim])
    }

    /// Dimension of the space.
    pub fn dim(&self) -> usize {
        match self {
            InverseMetric::Diagonal(v) => v.len(),
            InverseMetric::Dense { dim, .. } => *dim,
        }
    }

    /// True for a dense metric.
    pub fn is_dense(&self) -> bool {
        matches!(self, InverseMetric::Dense { .. })
    }

    /// Checks the entries and factorises: a dense `Σ` must be symmetric positive definite.
    pub(crate) fn factor(&self) -> Result<MetricOps, McmcError> {
        let invalid = |reason: String| Err(McmcError::InvalidParameter { field: "inverse_metric", reason });
        match self {
            InverseMetric::Diagonal(v) => {
                if !v.iter().all(|x| x.is_finite() && *x > 0.0) {
                    return invalid("diagonal entries must be positive and finite".into());
                }
                Ok(MetricOps::Diagonal { var: v.clone(), inv_sd: v.iter().map(|x| 1.0 / x.sqrt()).collect() })
            }
            InverseMetric::Dense { dim, matrix } => {
                if matrix.len() != dim * dim {
                    return invalid(format!("{} entries for a {dim}×{dim} matrix", matrix.len()));
                }
                match cholesky_lower(matrix, *dim) {
                    Some(chol) => Ok(MetricOps::Dense { dim: *dim, matrix: matrix.clone(), chol }),
                    None => invalid("dense matrix is not symmetric positive definite".into()),
                }
            }
        }
    }
}

/// Lower Cholesky factor `L` (row-major) with `A = L Lᵀ`, or `None` if `A` is not symmetric positive definite.
pub(crate) fn cholesky_lower(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            if (a[i * n + j] - a[j * n + i]).abs() > 1e-10 * (a[i * n + j].abs() + a[j * n + i].abs() + 1e-300) {
                return None;
            }
            let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if !s.is_finite() || s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// A checked, factorised metric: what a trajectory uses.
#[derive(Debug, Clone)]
pub(crate) enum MetricOps {
    /// Variances `v` and `1/√v`.
    Diagonal { var: Vec<f64>, inv_sd: Vec<f64> },
    /// `Σ` and its lower Cholesky factor `L`.
    Dense { dim: usize, matrix: Vec<f64>, chol: Vec<f64> },
}

impl MetricOps {
    /// Draws `p ~ N(0, Σ⁻¹)`: `p = z/√v` (diagonal) or `p = L⁻ᵀ z` (dense; then `Cov p = (L Lᵀ)⁻¹`).
    pub fn sample_momentum<R: Rng>(&self, rng: &mut R, p: &mut [f64]) {
        for pd in p.iter_mut() {
            *pd = rng.sample::<f64, _>(StandardNormal);
        }
        match self {
            MetricOps::Diagonal { inv_sd, .. } => p.iter_mut().zip(inv_sd).for_each(|(pd, s)| *pd *= s),
            MetricOps::Dense { dim, chol, .. } => {
                let n = *dim;
                // Back substitution for Lᵀ p = z.
                for i in (0..n).rev() {
                    let s: f64 = (i + 1..n).map(|k| chol[k * n + i] * p[k]).sum();
                    p[i] = (p[i] - s) / chol[i * n + i];
                }
            }
        }
    }

    /// `v = Σ p` (the velocity `dx/dt`, Stan's `p♯`).
    pub fn velocity(&self, p: &[f64], v: &mut [f64]) {
        match self {
            MetricOps::Diagonal { var, .. } => {
                for ((vd, pd), s) in v.iter_mut().zip(p).zip(var) {
                    *vd = s * pd;
                }
            }
            MetricOps::Dense { dim, matrix, .. } => {
                for (row, vd) in matrix.chunks_exact(*dim).zip(v.iter_mut()) {
                    *vd = row.iter().zip(p).map(|(a, b)| a * b).sum();
                }
            }
        }
    }
}

/// `½ p·v` with `v = Σp`.
pub(crate) fn kinetic(p: &[f64], v: &[f64]) -> f64 {
    0.5 * dot(p, v)
}

/// `a·b`.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
