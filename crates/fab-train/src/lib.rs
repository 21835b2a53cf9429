//! The FAB training loop, its baselines, every metric of the papers, and resumable runs.

pub mod buffer;
pub mod checkpoint;
pub mod metrics;
