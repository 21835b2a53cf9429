//! Purposes of the run's random streams: the second element of every `sub_seed` path, so no two uses share one.

/// Flow initialisation (weights, data-dependent ActNorm).
pub const INIT: u64 = 1;
/// Training iteration draws.
pub const TRAIN: u64 = 2;
/// Evaluation draws.
pub const EVAL: u64 = 3;
/// Filling the replay buffer before training.
pub const BUFFER_FILL: u64 = 4;
/// Initialisation of an SNF's parameters (second tag under `INIT`).
pub const SNF_INIT: u64 = 5;
