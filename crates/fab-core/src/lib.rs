//! The shared vocabulary of fab: batched samples, the log-density trait, deterministic random streams and weight numerics.
//!
//! Every other fab crate speaks in these types, and this crate depends on no fab crate.
//!
//! # Design
//! - **Batches are row-major `n × dim` slices.** [`Batch`] owns one, [`BatchRef`] and [`BatchMut`] borrow one.
//!   They are thin wrappers around `&[f64]` so the fast paths (GEMM in a flow, a vectorised target) see contiguous
//!   memory, and they convert to and from `ndarray` views for users who hold `Array2<f64>`.
//! - **Non-finite is data, not an error.** A log density of `-inf` or `NaN` means "outside the support";
//!   samplers reject such points and count them. Every reduction in [`numerics`] skips and counts non-finite entries.
//! - **One density, many threads.** [`LogDensity`] takes `&self` and is `Send + Sync`, so rayon workers share one
//!   target or one flow; scratch space belongs to the caller.
//! - **Randomness is addressed, not shared.** [`rng::stream_rng`] turns a seed plus a stream id into an independent
//!   ChaCha8 generator, so per-chain draws never depend on thread scheduling.

pub mod batch;
pub mod counting;
pub mod density;
pub mod error;
pub mod gradcheck;
pub mod numerics;
pub mod rng;

/// The README's quick start, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use batch::{Batch, BatchMut, BatchRef};
pub use counting::{Counted, EvalCounts};
pub use density::{Evaluation, ExactSampler, LogDensity, Proposal};
pub use error::ShapeError;
pub use rng::{StreamRng, stream_rng, sub_seed};
