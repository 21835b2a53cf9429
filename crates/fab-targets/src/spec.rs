//! `TargetSpec`: the serialisable description of a target used in RON experiment configs, and its checked build.

use crate::error::TargetError;
use crate::funnel::Funnel;
use crate::gaussian::DiagGaussian;
use crate::gmm::DiagGmm;
use crate::many_well::ManyWell;
use crate::target::Target;
use serde::{Deserialize, Serialize};

/// Which target an experiment uses. In RON: `Mog5_2021`, `ManyWell(dim: 32)`,
/// `Gmm(means: [[0.0, 0.0]], stds: [[1.0, 1.0]], weights: [1.0])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TargetSpec {
    /// The 2021 workshop mixture of 5 Gaussians (SPEC §1a-i).
    Mog5_2021,
    /// The ICLR 2023 40-mode GMM (SPEC §1a-ii).
    Gmm40Iclr,
    /// A general diagonal-covariance mixture.
    Gmm {
        /// Component means, one row of length `dim` per component.
        means: Vec<Vec<f64>>,
        /// Component standard deviations, same shape as `means`.
        stds: Vec<Vec<f64>>,
        /// Positive, not necessarily normalised, component weights.
        weights: Vec<f64>,
    },
    /// The 2-D Double Well (one Many Well pair).
    DoubleWell,
    /// The Many Well in an even dimension (16 in 2021, 32 in ICLR).
    ManyWell {
        /// Even dimension ≥ 2.
        dim: usize,
    },
    /// A normalised diagonal Gaussian.
    DiagGaussian {
        /// Means, one per coordinate.
        means: Vec<f64>,
        /// Standard deviations, one per coordinate.
        stds: Vec<f64>,
    },
    /// Neal's funnel.
    Funnel {
        /// Dimension ≥ 2 (the first coordinate is the neck variable).
        dim: usize,
    },
}

impl TargetSpec {
    /// Builds the target, validating every parameter; the error names the offending field.
    pub fn build(&self) -> Result<Box<dyn Target>, TargetError> {
        Ok(match self {
            Self::Mog5_2021 => Box::new(DiagGmm::mog5_2021()),
            Self::Gmm40Iclr => Box::new(DiagGmm::gmm40_iclr()),
            Self::Gmm { means, stds, weights } => Box::new(DiagGmm::new(means, stds, weights)?),
            Self::DoubleWell => Box::new(ManyWell::double_well()),
            Self::ManyWell { dim } => Box::new(ManyWell::new(*dim)?),
            Self::DiagGaussian { means, stds } => Box::new(DiagGaussian::new(means.clone(), stds.clone())?),
            Self::Funnel { dim } => Box::new(Funnel::new(*dim)?),
        })
    }
}
