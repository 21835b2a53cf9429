//! The training objectives, one file each, behind one contract ([`Objective`]): each owns its state (AIS, buffer,
//! SNF), sees the run only through a [`StepContext`], and splits its loss into a pure function of the per-point log
//! densities that returns the loss and its coefficients (checked against central differences in each file).
//!
//! Adding an objective: a file here implementing [`Objective`], a `Method` variant in the config, and its line in
//! [`build`].

mod annealing;
mod context;
mod fab_2021;

mod fab_alpha2;
mod fab_buffer;
#[cfg(test)]
mod fd_check;
mod max_likelihood;
mod reverse_kl;
mod snf;

pub(crate) use annealing::run_within_support;
pub use context::{Counters, IterationReport};
pub(crate) use context::{Optimiser, StepContext};

use crate::config::Method;
use crate::error::TrainError;
use crate::snf::Snf;
use fab_ais::{Ais, CheckedAisConfig};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The pure losses, for users who assemble their own training loop.
pub mod losses {
    pub use super::fab_2021::loss as fab_2021;
    pub use super::fab_alpha2::weighted_nll as fab_alpha2;
    pub use super::fab_buffer::weight_adjustment as buffer_weight_adjustment;
    pub use super::max_likelihood::loss as max_likelihood;
    pub use super::reverse_kl::loss as reverse_kl;
}

/// One training method with its own state.
pub(crate) trait Objective: Send {
    /// One iteration: sample, compute the loss and its gradient, step the optimiser.
    fn step(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<IterationReport, TrainError>;
    /// Writes the objective's state into a checkpoint.
    fn save<'a>(&'a self, state: &mut ObjectiveState<'a>);
    /// Restores the state written by [`Objective::save`]; the error says what is missing or wrong.
    fn restore(&mut self, state: &ObjectiveState) -> Result<(), String>;
    /// The AIS of a FAB objective (evaluation runs a frozen copy of it).
    fn ais(&self) -> Option<&Ais> {
        None
    }
    /// The SNF of the SNF baseline.
    fn snf(&self) -> Option<&Snf> {
        None
    }
}

/// An objective's part of a checkpoint: JSON fields and named arrays.
#[derive(Debug, Default)]
pub(crate) struct ObjectiveState<'a> {
    pub(crate) meta: serde_json::Map<String, serde_json::Value>,
    /// Borrowed from the objective when saving (no copy of a replay buffer), from the checkpoint when restoring.
    pub(crate) arrays: BTreeMap<String, Cow<'a, [f64]>>,
}

impl ObjectiveState<'_> {
    /// A JSON field that must be present.
    pub(crate) fn field(&self, name: &str) -> Result<&serde_json::Value, String> {
        self.meta.get(name).filter(|v| !v.is_null()).ok_or_else(|| format!("missing `{name}`"))
    }
}

/// The objective of `method` (the registry: one line per method). `ais` is the checked AIS config of FAB methods,
/// `snf` the freshly initialised SNF of the SNF baseline.
pub(crate) fn build(
    method: &Method,
    ais: Option<CheckedAisConfig>,
    snf: Option<Snf>,
    dim: usize,
) -> Box<dyn Objective> {
    let fab_ais = || annealing::FabAis::new(ais.clone().expect("FAB methods have a checked AIS config"));
    match method {
        Method::Fab2021 { .. } => Box::new(fab_2021::Fab2021::new(fab_ais())),
        Method::FabAlpha2 { buffer: None, .. } => Box::new(fab_alpha2::FabAlpha2::new(fab_ais())),
        Method::FabAlpha2 { buffer: Some(b), .. } => Box::new(fab_buffer::FabBuffer::new(fab_ais(), dim, b)),
        Method::ReverseKl => Box::new(reverse_kl::ReverseKl),
        Method::MaximumLikelihood => Box::new(max_likelihood::MaxLikelihood),
        Method::Snf { .. } => Box::new(snf::SnfObjective::new(snf.expect("SNF methods have an SNF"))),
    }
}
