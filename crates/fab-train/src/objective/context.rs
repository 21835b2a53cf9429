//! What an objective sees of the run ([`StepContext`]): the flow, the counted target, the optimiser with its
//! clipping, the skip counters and the batch size; and the report one iteration returns.

use crate::grad_guard::{GradGuard, GuardDecision};
use fab_core::Counted;
use fab_flow::{Adam, Flow, StepOutcome, clip_grad_norm, clip_grad_value};
use fab_targets::Target;
use serde::{Deserialize, Serialize};

/// Counters of everything that was skipped, dropped or rejected: non-finite values are data, and these report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Gradient steps taken.
    pub n_steps_applied: u64,
    /// Steps skipped because the loss was not finite.
    pub n_skipped_non_finite_loss: u64,
    /// Steps skipped because the gradient was not finite.
    pub n_skipped_non_finite_grad: u64,
    /// Training points dropped because log q, log p or a weight was not finite, or the point was invalid.
    pub n_dropped_points: u64,
    /// Target evaluations at points refused by the validity rules (non-finite coordinates, outside the support
    /// bound, or rejected by the target's predicate): treated as outside the support.
    #[serde(default)]
    pub n_invalid_points: u64,
    /// Steps skipped by the gradient guard (norm above `ignore_factor` running medians).
    #[serde(default)]
    pub n_skipped_grad_guard: u64,
    /// Steps whose gradient the guard clipped (norm above `clip_factor` running medians).
    #[serde(default)]
    pub n_clipped_grad_guard: u64,
}

/// What one iteration did (a JSON line of the metrics file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationReport {
    /// Iteration index (0-based) that this report closes.
    pub iteration: u64,
    /// Loss of the (last) gradient step; NaN if skipped.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// ESS in percent of the training batch's importance weights (AIS weights for FAB, flow weights otherwise).
    pub batch_ess: f64,
    /// Mean HMC/Metropolis acceptance per intermediate distribution (FAB and SNF).
    pub acceptance: Vec<f64>,
    /// Step size per intermediate distribution (FAB only).
    pub step_sizes: Vec<f64>,
    /// Target evaluations so far (points, with or without gradient).
    pub target_evaluations: u64,
    /// Points dropped in this iteration as non-finite or invalid.
    pub n_dropped: u64,
    /// Gradient steps of this iteration skipped by the gradient guard.
    #[serde(default)]
    pub n_skipped_grad_guard: u64,
    /// Gradient steps of this iteration clipped by the gradient guard.
    #[serde(default)]
    pub n_clipped_grad_guard: u64,
}

impl IterationReport {
    /// A report of one step; the run fills in the iteration, evaluation and drop counts.
    pub(crate) fn of_step(loss: f64, grad_norm: f64, batch_ess: f64) -> Self {
        Self {
            iteration: 0,
            loss,
            grad_norm,
            batch_ess,
            acceptance: Vec::new(),
            step_sizes: Vec::new(),
            target_evaluations: 0,
            n_dropped: 0,
            n_skipped_grad_guard: 0,
            n_clipped_grad_guard: 0,
        }
    }
}

/// Adam with the configured gradient clipping.
#[derive(Debug, Clone)]
pub(crate) struct Optimiser {
    pub(crate) adam: Adam,
    pub(crate) max_grad_norm: Option<f64>,
    pub(crate) max_grad_value: Option<f64>,
    /// fab-jax's dynamic ignore/clip rule with its window of recent norms (checkpointed by the run).
    pub(crate) grad_guard: Option<GradGuard>,
}

impl Optimiser {
    /// Clips `grad` as configured and applies one step to `params`; counts skips. Returns the pre-clip norm.
    pub(crate) fn apply(&mut self, loss: f64, grad: &mut [f64], params: &mut [f64], counters: &mut Counters) -> f64 {
        if !loss.is_finite() {
            counters.n_skipped_non_finite_loss += 1;
            return f64::NAN;
        }
        let norm = fab_flow::grad_norm(grad);
        if !norm.is_finite() {
            counters.n_skipped_non_finite_grad += 1;
            return norm;
        }
        if !self.guard(grad, norm, counters) {
            return norm;
        }
        if let Some(max) = self.max_grad_norm {
            clip_grad_norm(grad, max);
        }
        if let Some(max) = self.max_grad_value {
            clip_grad_value(grad, max);
        }
        match self.adam.step(params, grad) {
            StepOutcome::Applied => counters.n_steps_applied += 1,
            _ => counters.n_skipped_non_finite_grad += 1,
        }
        norm
    }

    /// The gradient guard's decision on a finite `norm`: false to skip the step; a clip scales `grad`.
    fn guard(&mut self, grad: &mut [f64], norm: f64, counters: &mut Counters) -> bool {
        let Some(guard) = self.grad_guard.as_mut() else { return true };
        match guard.decide(norm) {
            GuardDecision::Skip => {
                counters.n_skipped_grad_guard += 1;
                false
            }
            GuardDecision::Apply { scale } => {
                if scale < 1.0 {
                    counters.n_clipped_grad_guard += 1;
                    grad.iter_mut().for_each(|g| *g *= scale);
                }
                true
            }
        }
    }
}

/// The run as one training step sees it.
pub(crate) struct StepContext<'a> {
    /// The flow being trained (for an SNF run, the SNF's `N(0, I)` prior, which is not trained).
    pub(crate) flow: &'a mut Flow,
    /// The target, counting every evaluation.
    pub(crate) target: &'a Counted<Box<dyn Target>>,
    /// The optimiser.
    pub(crate) optimiser: &'a mut Optimiser,
    /// Skip and drop counters.
    pub(crate) counters: &'a mut Counters,
    /// Points per iteration.
    pub(crate) batch_size: usize,
    /// The run's seed (for streams that are not per iteration, such as the buffer fill).
    pub(crate) run_seed: u64,
}

impl StepContext<'_> {
    /// One optimiser step on the flow's parameters. Returns the pre-clip gradient norm.
    pub(crate) fn step_flow(&mut self, loss: f64, grad: &mut [f64]) -> f64 {
        self.optimiser.apply(loss, grad, self.flow.params_mut(), self.counters)
    }
}
