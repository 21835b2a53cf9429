//! The FAB training loop, its baselines, every metric of the papers, and resumable runs — on a built-in target or
//! on any density of yours.
//!
//! ```
//! use fab_core::LogDensity;
//! use fab_targets::Target;
//! use fab_train::{Detail, Run, TrainConfig, evaluate};
//!
//! /// A ring: `log p̃(x) = −(|x| − 3)²/(2·0.3²)`, hand-written gradient.
//! struct Ring;
//! impl LogDensity for Ring {
//!     fn dim(&self) -> usize { 2 }
//!     fn log_prob(&self, x: &[f64]) -> f64 {
//!         let r = x[0].hypot(x[1]);
//!         -(r - 3.0).powi(2) / (2.0 * 0.09)
//!     }
//!     fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
//!         let r = x[0].hypot(x[1]).max(1e-12);
//!         let d = -(r - 3.0) / 0.09 / r;
//!         (g[0], g[1]) = (d * x[0], d * x[1]);
//!         self.log_prob(x)
//!     }
//! }
//! impl Target for Ring {} // no exact samples, no known log Z: FAB needs neither
//!
//! let config: TrainConfig = ron::from_str(fab_train::config::EXAMPLE_OWN_DENSITY)?;
//! let config = TrainConfig { budget: fab_train::config::Budget::Iterations(20), ..config };
//! let mut run = Run::with_target(config, Box::new(Ring))?;
//! while !run.is_done() {
//!     run.step()?;
//! }
//! let report = evaluate(&run, 2000, Detail::Periodic)?;
//! let log_z = report.log_z_hat_ais.expect("FAB runs estimate log Z with AIS");
//! println!("flow ESS {:.1} %, log Ẑ = {:.3} ± {:.3}", report.flow_ess, log_z.log_z, log_z.std_err);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `cargo run --release -p fab-train --example own_density` trains the same way to convergence.
//!
//! - [`config`]: the RON experiment description, checked once into a [`config::CheckedTrainConfig`].
//! - [`run`]: the checkpointed state of a run ([`Run::new`] for built-in targets, [`Run::with_target`] for yours).
//! - `objective/`: one file per training method (FAB 2021, FAB α = 2, α = 2 + replay [`buffer`], reverse KL,
//!   maximum likelihood, SNF), each with its pure loss in [`losses`].
//! - [`snf`]: the 2021 stochastic-normalizing-flow baseline (couplings and Metropolis layers, pathwise gradient).
//! - [`eval`] and [`metrics`]: every metric of SPEC §6a that the target's capabilities allow; [`report`]: table rows.
//! - [`checkpoint`]: atomic, checksummed files.
//! - [`grad_guard`], [`lr`]: fab-jax's dynamic gradient ignore/clip rule (`optimizer.grad_guard`) and warm-up +
//!   cosine schedule (`optimizer.schedule: WarmupCosine`).
//! - [`protocol`]: fab-jax's log Z protocol (MAE over batches of AIS or SMC estimates) and the equal-budget baseline.
//!
//! # Design
//! A run is a value ([`Run`]) advanced by `step`; the caller decides when to evaluate, log and checkpoint,
//! so this crate never chooses paths or prints. All randomness of iteration `k` is addressed by `(seed, k)`: a run
//! resumed from a checkpoint ends with bitwise the same parameters as one that was never interrupted.
//! This is the only crate that combines flow gradients with AIS weights. The target is any
//! [`fab_targets::Target`]: a density with optional capabilities, of which training needs none.

pub mod buffer;
pub mod checkpoint;
mod chunked;
pub mod config;
mod error;
pub mod eval;
pub mod grad_guard;
pub mod legacy_config;
pub mod limits;
pub mod lr;
pub mod metrics;
mod objective;
pub mod protocol;
pub mod report;
pub mod run;
pub mod snf;
mod streams;

pub use config::{CheckedTrainConfig, TrainConfig};
pub use error::{BufferError, TrainError};
pub use eval::{Detail, EvalReport, evaluate};
pub use objective::losses;
pub use objective::{Counters, IterationReport};
pub use run::Run;
