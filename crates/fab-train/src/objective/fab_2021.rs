//! FAB as in the 2021 paper: AIS to p, then the α = 2 divergence estimate of eq. 5,
//! `L(θ) = log Σ_i w̄_i p̃(x_i)/q_θ(x_i)`, with the AIS samples and their normalised weights w̄ held fixed.

use super::annealing::{FabAis, ais_report};
use super::context::{IterationReport, StepContext};
use super::{Objective, ObjectiveState};
use crate::error::TrainError;
use fab_ais::Ais;
use fab_core::numerics::{logsumexp, normalized_weights};

/// `L = logsumexp_i(log w̄_i + log p_i − log q_i)` and `∂L/∂log q_i = −softmax(t)_i` for
/// `t_i = log w̄_i + log p_i − log q_i`. Points with zero weight or non-finite `log q` do not enter (coefficient 0);
/// the loss is NaN when no point does.
pub fn loss(log_w: &[f64], log_p: &[f64], log_q: &[f64]) -> (f64, Vec<f64>) {
    let (w_bar, _) = normalized_weights(log_w);
    let terms: Vec<f64> = (0..w_bar.len())
        .map(|i| if w_bar[i] > 0.0 && log_q[i].is_finite() { w_bar[i].ln() + log_p[i] - log_q[i] } else { f64::NAN })
        .collect();
    let (softmax, lse) = normalized_weights(&terms);
    let loss = if lse.n_used == 0 { f64::NAN } else { logsumexp(&terms).value };
    (loss, softmax.iter().map(|c| -c).collect())
}

/// The 2021 objective; owns its AIS.
pub(crate) struct Fab2021 {
    ais: FabAis,
}

impl Fab2021 {
    pub(crate) fn new(ais: FabAis) -> Self {
        Self { ais }
    }
}

impl Objective for Fab2021 {
    fn step(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<IterationReport, TrainError> {
        let batch = self.ais.batch(ctx, seed)?;
        // One recorded density pass: the coefficients depend on log q, so they are computed between the forward
        // and the backward half (the batch's cached log q is that of the flow before AIS moved the points).
        let mut value = f64::NAN;
        let mut grad = vec![0.0; ctx.flow.n_params()];
        ctx.flow.log_q_then_grad_params(
            batch.samples.view(),
            |log_q| {
                let (l, coeffs) = loss(&batch.log_w, &batch.log_p, log_q);
                value = l;
                coeffs
            },
            &mut grad,
        );
        let loss = value;
        let grad_norm = ctx.step_flow(loss, &mut grad);
        Ok(ais_report(IterationReport::of_step(loss, grad_norm, 0.0), &batch))
    }
    fn save<'a>(&'a self, state: &mut ObjectiveState<'a>) {
        self.ais.save(state);
    }
    fn restore(&mut self, state: &ObjectiveState) -> Result<(), String> {
        self.ais.restore(state)
    }
    fn ais(&self) -> Option<&Ais> {
        Some(self.ais.ais())
    }
}

#[cfg(test)]
mod tests {
    use super::loss;
    use crate::objective::fd_check::assert_coefficients_match_central_differences;

    #[test]
    fn the_2021_coefficients_are_the_derivatives_of_the_loss() {
        let log_w = [0.3, -1.2, f64::NEG_INFINITY, 2.0, 0.1];
        let log_p = [-2.0, -0.5, -1.0, -3.0, -1.5];
        let log_q = [-1.0, -2.5, -0.7, -2.2, f64::NAN];
        let f = |lq: &[f64]| loss(&log_w, &log_p, lq);
        assert_coefficients_match_central_differences(&f, &log_q);
    }

    #[test]
    fn a_loss_without_its_softmax_fails_the_check() {
        let log_w = [0.3, -1.2, 2.0];
        let log_p = [-2.0, -0.5, -3.0];
        let log_q = [-1.0, -2.5, -2.2];
        // Coefficients −w̄ (the α = 2 loss's) instead of −softmax(t): the check must tell.
        let wrong = |lq: &[f64]| {
            let (l, _) = loss(&log_w, &log_p, lq);
            let (w_bar, _) = fab_core::numerics::normalized_weights(&log_w);
            (l, w_bar.iter().map(|w| -w).collect())
        };
        assert!(crate::objective::fd_check::max_coefficient_error(&wrong, &log_q) > 1e-3);
    }
}
