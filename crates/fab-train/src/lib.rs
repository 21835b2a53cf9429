//! The FAB training loop, its baselines, every metric of the papers, and resumable runs.
//!
//! - [`config`]: the RON experiment description and its validation.
//! - [`run`]: the checkpointed state of a run and one iteration of each method ([`run::Run::step`]).
//! - `fab`: the FAB objectives (2021 eq. 5; α = 2 with and without the prioritised [`buffer`]).
//! - [`snf`]: the 2021 stochastic-normalizing-flow baseline (couplings and Metropolis layers, pathwise gradient).
//! - [`eval`] and [`metrics`]: every metric of SPEC §6a; [`report`]: table rows.
//! - [`checkpoint`]: atomic, checksummed files.
//!
//! # Design
//! A run is a value ([`run::Run`]) advanced by `step`; the caller decides when to evaluate, log and checkpoint,
//! so this crate never chooses paths or prints. All randomness of iteration `k` is addressed by `(seed, k)`: a run
//! resumed from a checkpoint ends with bitwise the same parameters as one that was never interrupted.
//! This is the only crate that combines flow gradients with AIS weights.

mod ais_driver;
pub mod buffer;
pub mod checkpoint;
pub mod config;
pub mod eval;
mod fab;
pub mod limits;
pub mod metrics;
pub mod report;
pub mod run;
pub mod snf;

pub use ais_driver::{AisBatch, AisDriver};
pub use config::TrainConfig;
pub use eval::{Detail, EvalReport, evaluate};
pub use run::{IterationReport, Run, TrainError};
