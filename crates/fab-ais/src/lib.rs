//! Annealed importance sampling from any proposal (an analytic Gaussian or a flow) to any target, with HMC or
//! Metropolis transitions from fab-mcmc, adaptive per-β step sizes, and cached densities.
//!
//! ```
//! use fab_ais::{Ais, AisConfig};
//! use fab_core::LogDensity;
//! use fab_targets::DiagGaussian;
//!
//! // q = N(0, I); p̃ = N(1, 0.5²I) in 3-D, normalised, so log Z = 0 for α = 1.
//! let q = DiagGaussian::standard(3);
//! let p = DiagGaussian::new(vec![1.0; 3], vec![0.5; 3]).unwrap();
//! let mut ais = Ais::new(AisConfig { n_intermediate: 8, alpha: 1.0, ..AisConfig::default() }.check()?);
//! for it in 0..20 {
//!     ais.run(&q, &p, 256, 7, it)?; // training: step sizes adapt
//! }
//! ais.freeze();
//! let out = ais.run(&q, &p, 1024, 7, 1000)?;
//! assert!(out.log_z.log_z.abs() < 4.0 * out.log_z.std_err + 1e-3, "{:?}", out.log_z);
//! assert_eq!(out.samples.n_rows(), out.log_w.len());
//! # Ok::<(), fab_ais::AisError>(())
//! ```
//!
//! # Design
//! - **The proposal is seen only through fab-core traits**: [`fab_core::Proposal`] draws `x₀` with `log q`,
//!   [`fab_core::LogDensity`] gives `log q` and its gradient. Anything implementing them (a flow, a Gaussian) works.
//! - **Intermediate densities** `log f_β = (1 − αβ)·log q + αβ·log p̃`: α = 1 anneals to p (2021), α = 2 to p²/q
//!   (ICLR). They are a two-component [`fab_mcmc::LinearLogDensity`] over a [`fab_mcmc::ChainState`] that caches
//!   `log q`, `log p` and both gradients per point: the weight recursion is algebra on the cache, a new β is new
//!   coefficients, and no point is evaluated twice (tested with [`fab_core::Counted`]).
//! - **Invalid points are data.** Points with non-finite `log q` or `log p` are dropped and counted after the draw
//!   and at the end; during transitions they are rejected proposals (divergences).
//! - **Adaptation is separate, serialisable state** ([`AisAdaptation`]): one step size per intermediate distribution,
//!   adapted during training, frozen for evaluation ([`Ais::freeze`]).
//! - **SMC is a config switch.** [`AisConfig::smc`] set to [`SmcSettings`] (adaptive βs by conditional ESS,
//!   systematic resampling) makes every [`Ais`] run an SMC run; [`Smc`] is the same sampler stand-alone.
//! - **Deterministic for any thread count.** The draw and every transition are seeded from `seed` and the caller's
//!   iteration counter via [`fab_core::sub_seed`]; chains use their own streams; reductions run in index order.

mod config;
mod error;
mod output;
mod sampler;
mod smc;
mod validity;

pub use config::{AisConfig, BetaSchedule, CheckedAisConfig, StepSizeRule, Transition, betas};
pub use error::{AisConfigError, AisError, Stage};
pub use output::{AisOutput, BetaDiagnostics, LogZEstimate, log_z_estimate};
pub use sampler::{Ais, AisAdaptation};
pub use smc::{
    Resampling, Smc, SmcOutput, SmcSchedule, SmcSettings, conditional_ess_fraction, next_beta_by_cess,
    systematic_resample,
};
