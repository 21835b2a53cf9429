//! RealNVP and rational-quadratic spline normalizing flows with hand-derived backpropagation (no autodiff), for FAB.
//!
//! - [`FlowSpec`] describes an architecture (serde, so configs can hold it); [`FlowSpec::mog_2021`],
//!   [`FlowSpec::many_well_2021`], [`FlowSpec::gmm_iclr`] and [`FlowSpec::many_well_iclr`] are the papers' flows;
//!   [`FlowSpec::gmm_fab_jax`] / [`FlowSpec::spline_fab_jax`] are fab-jax's spline flows.
//! - Layers (affine and spline couplings, ActNorm, LU linear, global scale) share one crate-private contract, one
//!   file each under `layers/`; [`LayerSpec::examples`] lists small flows of every kind for the tests.
//! - [`Flow`] owns ONE flat parameter vector (`params()` / `params_mut()`), evaluates `log q` and samples in
//!   batches (rayon over fixed row chunks, bitwise independent of the thread count), and gives the gradients FAB
//!   needs: `Σ cᵢ ∇θ log q(xᵢ)` ([`Flow::log_q_grad_params`]), `∇ₓ log q` (the fast path of
//!   [`fab_core::LogDensity`]) and the pathwise sampling gradient ([`Flow::sample_grad_params`]).
//!   It implements [`fab_core::Proposal`].
//! - Saved activations live in a caller-owned [`FlowTape`] ([`Flow::log_q_recorded`], [`Flow::backward_log_q`]).
//! - Losses whose coefficients depend on `log q` (the FAB losses) record the density pass once:
//!   [`Flow::log_q_then_grad_params`] (chunk-parallel record → coefficients from `log q` → backward).
//! - [`Adam`] (Adam/AdamW), [`clip_grad_norm`], [`clip_grad_value`] train the flat vector.
//! - [`Flow::save_safetensors`] / [`Flow::load_safetensors`] persist it with torch-style tensor names.
//!
//! Direction convention: "density" is data → base (`x → z`), "sampling" is base → data (`z → x`).

mod error;
mod flow;
mod gemm;
mod layers;
mod optim;
mod persist;
mod scratch;
mod spec;
pub mod vmath;

pub use error::FlowError;
pub use flow::{CHUNK_ROWS, Flow, FlowTape};
pub use layers::LayerTape;
pub use optim::{Adam, AdamConfig, AdamState, StepOutcome, clip_grad_norm, clip_grad_value, grad_norm};
pub use persist::{META_ACTNORM, META_FORMAT, META_SPEC};
pub use scratch::release_pooled_buffers;
pub use spec::{
    Activation, BaseSpec, CouplingSpec, Direction, FlowSpec, HeadLayout, LayerSpec, Math, ScaleMap, SplineCouplingSpec,
};
