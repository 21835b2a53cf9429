//! Target densities of the FAB papers with exact `log Z`, exact samplers and analytic gradients.
//!
//! # What is here
//! - [`DiagGmm`]: diagonal-covariance Gaussian mixtures, with the 2021 five-mode MoG ([`DiagGmm::mog5_2021`])
//!   and the ICLR 40-mode GMM ([`DiagGmm::gmm40_iclr`]) built from the exact constants of SPEC §1a.
//! - [`ManyWell`]: the Double Well / Many Well energy in any even dimension, its exact `log Z`, a rejection
//!   sampler for the double-well coordinates, and the 2021 / ICLR mode test sets (SPEC §1b).
//! - [`DiagGaussian`] (also a [`fab_core::Proposal`], so AIS can be tested against an analytic proposal) and
//!   Neal's [`Funnel`].
//! - [`QuadraticFn`]: the papers' quadratic test function with both constant sets and its closed-form
//!   expectation under a mixture (SPEC §1c).
//! - [`TargetSpec`]: the serde description used by RON configs, built into a `Box<dyn Target>` with typed
//!   [`TargetError`]s that name the offending field.
//! - [`all_builtin_targets`]: one instance of every built-in target; the tests iterate it, so a new target
//!   gets gradient, batch, sampler and normalisation checks by being listed there.
//!
//! # Design
//! - **Everything is `f64` with analytic gradients.** Each target implements [`fab_core::LogDensity`] and
//!   overrides the batched methods with a loop over an inlined per-row kernel (no dynamic dispatch per row).
//!   There is no scratch memory: the mixture's logsumexp and its gradient are accumulated in one pass with a
//!   running maximum, which also keeps `log p` exact far from every mode.
//! - **`Target = LogDensity + optional capabilities`.** A target is any density; exact samples, `log_z`, moments,
//!   mode sets, a test function and a validity predicate are capabilities with "not available" defaults, so a
//!   user's density is a target by `impl Target for MyDensity {}` or through [`CustomTarget`]. The built-in
//!   targets declare every capability they have. `log_z` refers to the density as returned by `log_prob`:
//!   `Some(0.0)` for normalised targets, the exact constant for the unnormalised Many Well.
//!   [`Target::moments`] gives exact per-coordinate moments (analytic, or by quadrature for the double well)
//!   so sampler tests need no hand-maintained reference table.
//! - **Constants are literals.** The reference targets were drawn from a torch RNG; their values are copied
//!   from SPEC (40 means in `gmm40_means.rs`), never re-derived, so the crate builds from a clean checkout.
//! - **The ICLR clamp is not reproduced.** The reference sets `log p < −1e4` of the 40-mode GMM to `-inf`;
//!   here the density stays finite everywhere (see [`DiagGmm`]).
//! - **Exact samplers are exact.** GMMs sample ancestrally; the double-well coordinate uses rejection
//!   sampling with the reference's two-Gaussian proposal and a verified envelope (no grid, no discretisation).
//!
//! # What this crate deliberately does not know
//! Flows, MCMC kernels, AIS, training, metrics and IO. The only samplers here are exact ones; it depends on
//! `fab-core` alone, so every algorithm crate can be tested against these targets without a cycle.

mod custom;
mod error;
mod funnel;
mod gaussian;
mod gmm;
mod gmm40_means;
mod many_well;
mod quadratic;
pub mod quadrature;
mod spec;
mod target;

pub use custom::CustomTarget;
pub use error::TargetError;
pub use funnel::{FUNNEL_V_STD, Funnel};
pub use gaussian::DiagGaussian;
pub use gmm::{DiagGmm, GMM9_STD, GMM40_STD, SOFTPLUS_ONE_F64};
pub use many_well::{
    DOUBLE_WELL_Z, GAUSS_D, MODE_CENTRE, MODE_NOISE_STD_2021, MODE_SUBSET_SEED, ManyWell, WELL_A, WELL_B, WELL_C,
    double_well_log_density, double_well_raw_moment, log_envelope_ratio, sample_double_well,
};
pub use quadratic::QuadraticFn;
pub use spec::TargetSpec;
pub use target::{LN_2PI, ModeSets, Moments, PointFn, Target, TestFunction};

/// One instance of every built-in target, each with a distinct [`Target::name`]:
/// the two paper mixtures, a general 3-D mixture, the Double Well, Many Well 16 and 32, a diagonal Gaussian,
/// the standard normal and the 10-D funnel.
pub fn all_builtin_targets() -> Vec<Box<dyn Target>> {
    let gmm_3d = DiagGmm::new(
        &[[-2.0, 0.5, 1.0], [3.0, -1.0, 0.0], [0.0, 4.0, -2.5]],
        &[[0.7, 1.2, 0.9], [1.5, 0.6, 1.1], [0.8, 0.9, 2.0]],
        &[1.0, 2.0, 0.5],
    )
    .expect("valid 3-D mixture")
    .with_name("gmm_diag_3d");
    let gaussian_3d = DiagGaussian::new(vec![1.0, -2.0, 0.5], vec![0.5, 2.0, 1.3])
        .expect("valid Gaussian")
        .with_name("diag_gaussian_3d");
    vec![
        Box::new(DiagGmm::mog5_2021()),
        Box::new(DiagGmm::gmm40_iclr()),
        Box::new(gmm_3d),
        Box::new(ManyWell::double_well()),
        Box::new(ManyWell::new(16).expect("valid dimension")),
        Box::new(ManyWell::new(32).expect("valid dimension")),
        Box::new(gaussian_3d),
        Box::new(DiagGaussian::standard(4)),
        Box::new(Funnel::new(10).expect("valid dimension")),
    ]
}
