//! Rayon-parallel HMC and Metropolis chains over any [`fab_core::LogDensity`], with cached densities,
//! step-size adaptation and convergence diagnostics.
//!
//! # Sampling your own density
//! Implement [`fab_core::LogDensity`] and hand it to a [`Sampler`]; here a banana,
//! `x₀ ~ N(0, 1)`, `x₁ | x₀ ~ N(x₀², ½²)`:
//! ```
//! use fab_core::{Batch, LogDensity};
//! use fab_mcmc::{Hmc, Sampler};
//!
//! struct Banana;
//! impl LogDensity for Banana {
//!     fn dim(&self) -> usize { 2 }
//!     fn log_prob(&self, x: &[f64]) -> f64 { self.log_prob_and_grad(x, &mut [0.0; 2]) }
//!     fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
//!         let b = x[1] - x[0] * x[0];
//!         (g[0], g[1]) = (-x[0] + 8.0 * x[0] * b, -4.0 * b);
//!         -0.5 * x[0] * x[0] - 2.0 * b * b
//!     }
//! }
//!
//! let hmc = Hmc::new(10).with_step_size_jitter(0.5);
//! let trace = Sampler::new(&Banana, hmc, Batch::zeros(16, 2), 42)?.warmup(200)?.sample(500)?;
//! let (mean, r_hat) = (trace.mean(), trace.split_r_hat());
//! assert!(mean[0].abs() < 0.2 && (mean[1] - 1.0).abs() < 0.3, "E[x₀] = 0, E[x₁] = 1; got {mean:?}");
//! assert!(r_hat.iter().all(|r| *r < 1.1), "chains agree: R̂ = {r_hat:?}");
//! # Ok::<(), fab_mcmc::McmcError>(())
//! ```
//!
//! # Design
//! - **Kernels are structural, step sizes are arguments.** [`Hmc`] and [`RandomWalkMetropolis`] hold only what
//!   does not change during a run; [`Kernel::step`] takes the step size and a seed, so adaptation ([`StepSizes`],
//!   separate, serialisable, freezable state) never rebuilds a kernel (blackjax's `build_kernel` split).
//! - **State and diagnostics are apart.** [`ChainState`] is what the next transition needs; [`StepInfo`] (accepted,
//!   acceptance probability, divergence, energy error per chain) is returned beside it. Non-finite proposals are
//!   rejected and counted as divergences, never errors; [`McmcError`] is only for misuse (shapes, bad tunables).
//! - **A chain targets a linear combination of cached component densities.** The target of every kernel is a
//!   [`LinearLogDensity`], `log π = Σₖ cₖ·log fₖ`, and [`ChainState`] caches each `log fₖ` and `∇ log fₖ` at each
//!   position. A plain density is one component with coefficient 1. AIS (crate `fab-ais`) uses two, `q` and `p`,
//!   with coefficients `(1 − αβ, αβ)`: its weight update `log f_{β'} − log f_β` is then algebra on the cache,
//!   moving to the next β is [`LinearLogDensity::set_coefficients`] (no evaluation), and no point is evaluated twice.
//!   We chose this over a "potential with cached parts" trait because the linear form is all AIS needs, keeps the
//!   kernels free of generics, and lets the cache be plain component-major arrays that batched calls fill directly.
//! - **Many chains, batched, in parallel, deterministic.** Chains are cut into chunks of a fixed size
//!   ([`ChainState::with_chunk_size`]); rayon runs chunks in parallel and each chunk makes one *batched* call per
//!   component per leapfrog step, so a flow evaluates whole matrices. Chain `i` draws from
//!   `fab_core::stream_rng(seed, i)`: results are bitwise identical for any number of threads.
//! - **Long-chain diagnostics** for users: [`split_r_hat`] and the autocorrelation-based [`effective_sample_size`].

mod adapt;
mod diagnostics;
mod error;
mod hmc;
mod kernel;
mod leapfrog;
mod metropolis;
mod points;
mod sampler;
mod scratch;
mod state;
mod target;
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests; // the README's quick start

pub use adapt::{
    Adapter, DualAveraging, FAB_COMMON_INIT_WEIGHT, FAB_TARGET_ACCEPT, FabRule, StepSizes, exp_log_mean_exp_accept,
    mean_clamped_accept_prob,
};
pub use diagnostics::{effective_sample_size, split_r_hat};
pub use error::McmcError;
pub use hmc::Hmc;
pub use kernel::{ChainInfo, Kernel, StepInfo};
pub use leapfrog::PhaseBatch;
pub use metropolis::RandomWalkMetropolis;
pub use points::clamp_gradient;
pub use sampler::{Sampler, Trace};
pub use state::{ChainState, DEFAULT_CHUNK_SIZE};
pub use target::LinearLogDensity;
