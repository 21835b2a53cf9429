//! The flow alone trained by reverse KL, `E_q[log q − log p̃]`, by the pathwise gradient through `x = T_θ(ε)`.

use super::context::{IterationReport, StepContext};
use super::{Objective, ObjectiveState};
use crate::error::TrainError;
use crate::metrics::log_weights;
use fab_core::numerics::ess_percent;
use fab_core::{Batch, LogDensity, stream_rng};
use rand_distr::{Distribution, StandardNormal};

/// `L = (1/n_valid) Σ_valid (log q_i − log p_i)` with `∂L/∂log q_i = 1/n_valid` and `∂L/∂log p_i = −1/n_valid` on
/// the valid rows (0 elsewhere); NaN when no row is valid.
pub fn loss(log_q: &[f64], log_p: &[f64], valid: &[bool]) -> (f64, Vec<f64>) {
    let n_valid = valid.iter().filter(|v| **v).count();
    let scale = 1.0 / n_valid.max(1) as f64;
    let mut loss = 0.0;
    let mut coeffs = vec![0.0; log_q.len()];
    for i in (0..log_q.len()).filter(|&i| valid[i]) {
        loss += scale * (log_q[i] - log_p[i]);
        coeffs[i] = scale;
    }
    (if n_valid == 0 { f64::NAN } else { loss }, coeffs)
}

/// The reverse-KL baseline; it has no state of its own.
pub(crate) struct ReverseKl;

impl Objective for ReverseKl {
    fn step(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<IterationReport, TrainError> {
        let (n, dim) = (ctx.batch_size, ctx.flow.dim());
        let eps = standard_normal_batch(seed, n, dim);
        let (x, log_q) = ctx.flow.sample_from_noise(eps.view());
        let mut log_p = vec![0.0; n];
        let mut grad_log_p = Batch::zeros(n, dim);
        ctx.target.log_prob_and_grad_batch(x.view(), &mut log_p, grad_log_p.view_mut());
        let valid: Vec<bool> = (0..n)
            .map(|i| log_p[i].is_finite() && log_q[i].is_finite() && grad_log_p.row(i).iter().all(|g| g.is_finite()))
            .collect();
        ctx.counters.n_dropped_points += valid.iter().filter(|v| !**v).count() as u64;
        let (loss, grad_log_q) = loss(&log_q, &log_p, &valid);
        // ∂L/∂x_i = −∂L/∂log q_i · ∇log p(x_i) through log p; the flow adds the path through log q.
        let mut grad_x = Batch::zeros(n, dim);
        for i in (0..n).filter(|&i| valid[i]) {
            let scale = grad_log_q[i];
            grad_x.row_mut(i).iter_mut().zip(grad_log_p.row(i)).for_each(|(gx, gp)| *gx = -scale * gp);
        }
        let mut grad = vec![0.0; ctx.flow.n_params()];
        ctx.flow.sample_grad_params(eps.view(), grad_x.view(), &grad_log_q, &mut grad);
        let grad_norm = ctx.step_flow(loss, &mut grad);
        let batch_ess = ess_percent(&log_weights(&log_p, &log_q)).value;
        Ok(IterationReport::of_step(loss, grad_norm, batch_ess))
    }
    fn save<'a>(&'a self, _state: &mut ObjectiveState<'a>) {}
    fn restore(&mut self, _state: &ObjectiveState) -> Result<(), String> {
        Ok(())
    }
}

/// `n × dim` standard-normal noise from the stream `(seed, 0)`.
fn standard_normal_batch(seed: u64, n: usize, dim: usize) -> Batch {
    let mut rng = stream_rng(seed, 0);
    let data = (0..n * dim).map(|_| StandardNormal.sample(&mut rng)).collect();
    Batch::from_vec(data, dim).expect("n × dim by construction")
}

#[cfg(test)]
mod tests {
    use super::loss;
    use crate::objective::fd_check::{assert_coefficients_match_central_differences, max_coefficient_error};

    const LOG_Q: [f64; 4] = [-1.0, -2.5, -0.7, -2.2];
    const LOG_P: [f64; 4] = [-1.5, -2.0, f64::NAN, -3.1];
    const VALID: [bool; 4] = [true, true, false, true];

    #[test]
    fn the_reverse_kl_coefficients_are_the_derivatives_in_log_q_and_log_p() {
        assert_coefficients_match_central_differences(&|lq: &[f64]| loss(lq, &LOG_P, &VALID), &LOG_Q);
        // In log p the coefficients are the negatives of those in log q.
        let in_log_p = |lp: &[f64]| {
            let (l, c) = loss(&LOG_Q, lp, &VALID);
            (l, c.iter().map(|c| -c).collect())
        };
        let log_p = [-1.5, -2.0, -1.0, -3.1];
        assert_coefficients_match_central_differences(&in_log_p, &log_p);
        let wrong = |lp: &[f64]| loss(&LOG_Q, lp, &VALID);
        assert!(max_coefficient_error(&wrong, &log_p) > 1e-3);
    }
}
