//! Adam / AdamW over one flat parameter vector, gradient clipping, and skipping of non-finite steps.

use serde::{Deserialize, Serialize};

/// Hyper-parameters of Adam (`decoupled = false`, L2 penalty added to the gradient) or AdamW (`decoupled = true`,
/// `θ ← θ·(1 − lr·weight_decay)` before the Adam update), with torch's conventions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator offset.
    pub eps: f64,
    /// Weight-decay coefficient.
    pub weight_decay: f64,
    /// Decoupled (AdamW) rather than L2 (Adam) weight decay.
    pub decoupled: bool,
}

impl AdamConfig {
    /// torch `Adam(lr)` defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam(lr: f64) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
    /// torch `AdamW(lr, weight_decay)`; torch's default `weight_decay` is 0.01 (the 2021 runs).
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, decoupled: true }
    }
}

/// The optimiser's state (moments, step count, skipped steps): serialisable for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    /// First moments.
    pub m: Vec<f64>,
    /// Second moments.
    pub v: Vec<f64>,
    /// Number of applied steps (bias correction uses it).
    pub t: u64,
    /// Number of steps skipped because the gradient was not finite.
    pub skipped: u64,
}

/// What [`Adam::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepOutcome {
    /// The parameters were updated.
    Applied,
    /// The gradient had a NaN or infinite entry; nothing changed except the skip counter.
    SkippedNonFinite,
}

/// Adam / AdamW over a flat parameter vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// Hyper-parameters (the learning rate may be changed between steps).
    pub config: AdamConfig,
    state: AdamState,
}

impl Adam {
    /// A fresh optimiser; the moment buffers are sized by the first step.
    pub fn new(config: AdamConfig) -> Self {
        Self { config, state: AdamState { m: Vec::new(), v: Vec::new(), t: 0, skipped: 0 } }
    }
    /// Restores an optimiser from a checkpointed state.
    pub fn from_state(config: AdamConfig, state: AdamState) -> Self {
        Self { config, state }
    }
    /// The state, for checkpoints.
    pub fn state(&self) -> &AdamState {
        &self.state
    }
    /// Number of applied steps.
    pub fn steps(&self) -> u64 {
        self.state.t
    }
    /// Number of skipped (non-finite) steps.
    pub fn skipped(&self) -> u64 {
        self.state.skipped
    }

    /// One update of `params` with `grad`; skips (and counts) the step if any gradient entry is not finite.
    ///
    /// # Panics
    /// If `params` and `grad` differ in length, or differ from the length of earlier steps.
    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) -> StepOutcome {
        assert_eq!(params.len(), grad.len(), "Adam::step: parameter and gradient lengths differ");
        if grad.iter().any(|g| !g.is_finite()) {
            self.state.skipped += 1;
            return StepOutcome::SkippedNonFinite;
        }
        let s = &mut self.state;
        if s.m.is_empty() {
            s.m = vec![0.0; params.len()];
            s.v = vec![0.0; params.len()];
        }
        assert_eq!(s.m.len(), params.len(), "Adam::step: parameter count changed between steps");
        let c = self.config;
        s.t += 1;
        let bc1 = 1.0 - c.beta1.powi(s.t as i32);
        let bc2_sqrt = (1.0 - c.beta2.powi(s.t as i32)).sqrt();
        let step_size = c.lr / bc1;
        for i in 0..params.len() {
            let mut g = grad[i];
            if c.decoupled {
                params[i] *= 1.0 - c.lr * c.weight_decay;
            } else if c.weight_decay != 0.0 {
                g += c.weight_decay * params[i];
            }
            s.m[i] = c.beta1 * s.m[i] + (1.0 - c.beta1) * g;
            s.v[i] = c.beta2 * s.v[i] + (1.0 - c.beta2) * g * g;
            let denom = s.v[i].sqrt() / bc2_sqrt + c.eps;
            params[i] -= step_size * s.m[i] / denom;
        }
        StepOutcome::Applied
    }
}

/// Euclidean norm of a gradient (non-finite if any entry is).
pub fn grad_norm(grad: &[f64]) -> f64 {
    grad.iter().map(|g| g * g).sum::<f64>().sqrt()
}

/// Rescales `grad` so its global norm is at most `max_norm` (torch `clip_grad_norm_`: factor `max/(norm + 1e-6)`
/// when it is below 1). Returns the norm before clipping; a non-finite norm leaves `grad` untouched, for the
/// caller (or [`Adam::step`]) to skip the step.
pub fn clip_grad_norm(grad: &mut [f64], max_norm: f64) -> f64 {
    let norm = grad_norm(grad);
    if norm.is_finite() {
        let factor = max_norm / (norm + 1e-6);
        if factor < 1.0 {
            grad.iter_mut().for_each(|g| *g *= factor);
        }
    }
    norm
}

/// Clamps every gradient entry to `[−max_value, max_value]` (torch `clip_grad_value_`); NaN entries stay NaN.
pub fn clip_grad_value(grad: &mut [f64], max_value: f64) {
    grad.iter_mut().for_each(|g| *g = g.clamp(-max_value, max_value));
}
