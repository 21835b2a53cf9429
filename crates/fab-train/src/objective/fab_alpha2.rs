//! FAB with α = 2 (ICLR 2023) without the buffer: AIS to `p^α q^{1−α}`, then `L(θ) = −(1/N) Σ_i w̄_i log q_θ(x_i)`
//! with the AIS samples and normalised weights held fixed.

use super::annealing::{FabAis, ais_report};
use super::context::{IterationReport, StepContext};
use super::{Objective, ObjectiveState};
use crate::error::TrainError;
use fab_ais::Ais;
use fab_core::numerics::normalized_weights;

/// `L = −(1/N) Σ_i w_i log q_i` over the rows with positive weight, the weights `w` held fixed, and
/// `∂L/∂log q_i = −w_i/N`. NaN if a row with positive weight has a non-finite `log q`.
pub fn weighted_nll(w: &[f64], log_q: &[f64]) -> (f64, Vec<f64>) {
    let n = w.len() as f64;
    let loss = -w.iter().zip(log_q).filter(|(w, _)| **w > 0.0).map(|(w, l)| w * l).sum::<f64>() / n;
    (loss, w.iter().map(|w| -w / n).collect())
}

/// The α = 2 objective without buffer; owns its AIS.
pub(crate) struct FabAlpha2 {
    ais: FabAis,
}

impl FabAlpha2 {
    pub(crate) fn new(ais: FabAis) -> Self {
        Self { ais }
    }
}

impl Objective for FabAlpha2 {
    fn step(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<IterationReport, TrainError> {
        let batch = self.ais.batch(ctx, seed)?;
        let (w_bar, _) = normalized_weights(&batch.log_w);
        // The coefficients do not depend on log q, so one recorded pass gives both log q and the gradient.
        let (_, coeffs) = weighted_nll(&w_bar, &batch.log_q);
        let mut grad = vec![0.0; ctx.flow.n_params()];
        let log_q = ctx.flow.log_q_grad_params(batch.samples.view(), &coeffs, &mut grad);
        let (loss, _) = weighted_nll(&w_bar, &log_q);
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
    use super::weighted_nll;
    use crate::objective::fd_check::{assert_coefficients_match_central_differences, max_coefficient_error};

    #[test]
    fn the_alpha2_coefficients_are_the_derivatives_of_the_loss() {
        let w = [0.4, 0.0, 0.35, 0.25];
        let log_q = [-1.0, -2.5, -0.7, -2.2];
        assert_coefficients_match_central_differences(&|lq: &[f64]| weighted_nll(&w, lq), &log_q);
    }

    #[test]
    fn coefficients_of_the_wrong_sign_fail_the_check() {
        let w = [0.4, 0.35, 0.25];
        let wrong = |lq: &[f64]| {
            let (l, c) = weighted_nll(&w, lq);
            (l, c.iter().map(|c| -c).collect())
        };
        assert!(max_coefficient_error(&wrong, &[-1.0, -0.7, -2.2]) > 1e-3);
    }
}
