//! Maximum likelihood `−mean log q(x)` on exact target samples: an upper reference that needs samples FAB never
//! sees, so it needs a target with an exact sampler.

use super::context::{IterationReport, StepContext};
use super::{Objective, ObjectiveState};
use crate::config::ConfigError;
use crate::error::TrainError;
use fab_core::stream_rng;

/// `L = −(1/n_finite) Σ log q_i` over the finite entries, `∂L/∂log q_i = −1/n_finite` there (0 elsewhere);
/// NaN when none is finite.
pub fn loss(log_q: &[f64]) -> (f64, Vec<f64>) {
    let n_valid = log_q.iter().filter(|l| l.is_finite()).count();
    let coeffs = log_q.iter().map(|l| if l.is_finite() { -1.0 / n_valid as f64 } else { 0.0 }).collect();
    let loss =
        if n_valid == 0 { f64::NAN } else { -log_q.iter().filter(|l| l.is_finite()).sum::<f64>() / n_valid as f64 };
    (loss, coeffs)
}

/// The maximum-likelihood reference; it has no state of its own.
pub(crate) struct MaxLikelihood;

impl Objective for MaxLikelihood {
    fn step(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<IterationReport, TrainError> {
        let n = ctx.batch_size;
        let sampler = ctx.target.inner().exact_sampler().ok_or_else(|| ConfigError {
            field: "method".into(),
            reason: "MaximumLikelihood needs a target with an exact sampler".into(),
        })?;
        let x = sampler.sample_exact(&mut stream_rng(seed, 0), n);
        let log_q = ctx.flow.log_q(x.view());
        let (loss, coeffs) = loss(&log_q);
        ctx.counters.n_dropped_points += coeffs.iter().filter(|c| **c == 0.0).count() as u64;
        let mut grad = vec![0.0; ctx.flow.n_params()];
        ctx.flow.log_q_grad_params(x.view(), &coeffs, &mut grad);
        let grad_norm = ctx.step_flow(loss, &mut grad);
        Ok(IterationReport::of_step(loss, grad_norm, f64::NAN))
    }
    fn save<'a>(&'a self, _state: &mut ObjectiveState<'a>) {}
    fn restore(&mut self, _state: &ObjectiveState) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::loss;
    use crate::objective::fd_check::assert_coefficients_match_central_differences;

    #[test]
    fn the_likelihood_coefficients_are_the_derivatives_of_the_loss() {
        assert_coefficients_match_central_differences(&loss, &[-1.0, f64::NEG_INFINITY, -0.7, -2.2]);
    }
}
