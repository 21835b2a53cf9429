//! FAB with α = 2 and the prioritised replay buffer (ICLR 2023): each AIS batch is stored, then `n_updates`
//! gradient steps are taken on points drawn ∝ stored weight, each with `L = −mean(w_adj · log q_θ)`,
//! `w_adj = (q_old/q_θ)^{α−1}` held fixed, after which the stored weights are adjusted.

use super::annealing::{FabAis, ais_report};
use super::context::{IterationReport, StepContext};
use super::fab_alpha2::weighted_nll;
use super::{Objective, ObjectiveState};
use crate::buffer::ReplayBuffer;
use crate::config::BufferSettings;
use crate::error::{BufferError, TrainError};
use crate::streams;
use fab_ais::Ais;
use fab_core::{Batch, stream_rng, sub_seed};

/// AIS batches tried before filling the buffer is given up.
const MAX_FILL_BATCHES: u64 = 1_000_000;

/// `log w_adj = (1 − α)(log q − log q_old)`: the importance correction of a stored point for the change of the
/// flow since it was stored (0 weight where not finite).
pub fn weight_adjustment(alpha: f64, log_q_now: &[f64], log_q_old: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let log_w_adjust: Vec<f64> =
        log_q_now.iter().zip(log_q_old).map(|(q, q_old)| (1.0 - alpha) * (q - q_old)).collect();
    let w_adj = log_w_adjust.iter().map(|l| if l.is_finite() { l.exp() } else { 0.0 }).collect();
    (log_w_adjust, w_adj)
}

/// The buffer objective; owns its AIS and its buffer.
/// fab-jax's `w_adjust_clip`: every loss weight at most `cap` (the buffer's own adjustment stays uncapped).
fn cap_weights(w: &mut [f64], cap: Option<f64>) {
    if let Some(cap) = cap {
        w.iter_mut().for_each(|v| *v = v.min(cap));
    }
}

pub(crate) struct FabBuffer {
    ais: FabAis,
    buffer: ReplayBuffer,
    n_updates: usize,
    w_adjust_clip: Option<f64>,
}

impl FabBuffer {
    pub(crate) fn new(ais: FabAis, dim: usize, settings: &BufferSettings) -> Self {
        Self {
            ais,
            buffer: ReplayBuffer::new(dim, settings.capacity, settings.min_len),
            n_updates: settings.n_updates,
            w_adjust_clip: settings.w_adjust_clip,
        }
    }

    /// Fills the buffer with AIS batches (current flow) until it can be sampled.
    fn fill(&mut self, ctx: &mut StepContext<'_>) -> Result<(), TrainError> {
        let mut k = 0u64;
        while !self.buffer.can_sample() {
            let seed = sub_seed(ctx.run_seed, &[streams::BUFFER_FILL, k]);
            let batch = self.ais.batch(ctx, seed)?;
            self.buffer.add(batch.samples.view(), &batch.log_w, &batch.log_q);
            k += 1;
            if k > MAX_FILL_BATCHES {
                return Err(BufferError::NotFilled { batches: k }.into());
            }
        }
        Ok(())
    }
}

impl Objective for FabBuffer {
    fn step(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<IterationReport, TrainError> {
        if !self.buffer.can_sample() {
            self.fill(ctx)?;
        }
        let batch = self.ais.batch(ctx, seed)?;
        self.buffer.add(batch.samples.view(), &batch.log_w, &batch.log_q);
        let n = ctx.batch_size;
        let mut rng = stream_rng(seed, 1);
        let needed = n * self.n_updates;
        let draw = self.buffer.sample(&mut rng, needed).ok_or(BufferError::TooFewPoints { needed })?;
        let (mut loss, mut grad_norm) = (f64::NAN, f64::NAN);
        for u in 0..self.n_updates {
            let rows: Vec<usize> = (u * n..(u + 1) * n).collect();
            let x: Batch = draw.x.select_rows(&rows);
            let log_q_old: Vec<f64> = rows.iter().map(|&r| draw.log_q_old[r]).collect();
            let idx: Vec<usize> = rows.iter().map(|&r| draw.idx[r]).collect();
            // One recorded density pass: the adjusted weights depend on log q under the current flow.
            let alpha = self.ais.alpha();
            let mut log_w_adjust = Vec::new();
            let mut grad = vec![0.0; ctx.flow.n_params()];
            let log_q_now = ctx.flow.log_q_then_grad_params(
                x.view(),
                |log_q_now| {
                    let (log_adjust, mut w_adj) = weight_adjustment(alpha, log_q_now, &log_q_old);
                    cap_weights(&mut w_adj, self.w_adjust_clip);
                    let (step_loss, coeffs) = weighted_nll(&w_adj, log_q_now);
                    (log_w_adjust, loss) = (log_adjust, step_loss);
                    coeffs
                },
                &mut grad,
            );
            grad_norm = ctx.step_flow(loss, &mut grad);
            self.buffer.adjust(&idx, &log_w_adjust, &log_q_now);
        }
        Ok(ais_report(IterationReport::of_step(loss, grad_norm, 0.0), &batch))
    }
    fn save<'a>(&'a self, state: &mut ObjectiveState<'a>) {
        self.ais.save(state);
        state.meta.insert("buffer".into(), serde_json::to_value(self.buffer.scalars()).expect("plain scalars"));
        for (name, v) in self.buffer.arrays() {
            state.arrays.insert(format!("buffer.{name}"), v.into());
        }
    }
    fn restore(&mut self, state: &ObjectiveState) -> Result<(), String> {
        self.ais.restore(state)?;
        let scalars = serde_json::from_value(state.field("buffer")?.clone()).map_err(|e| format!("buffer: {e}"))?;
        let arrays = state
            .arrays
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("buffer.").map(|k| (k.to_string(), v.to_vec())))
            .collect();
        self.buffer.restore(scalars, arrays).map_err(|e| format!("buffer: {e}"))
    }
    fn ais(&self) -> Option<&Ais> {
        Some(self.ais.ais())
    }
}

#[cfg(test)]
mod tests {
    use super::{weight_adjustment, weighted_nll};
    use crate::objective::fd_check::assert_coefficients_match_central_differences;

    #[test]
    fn the_buffer_coefficients_are_the_derivatives_of_the_loss_with_the_adjustment_held_fixed() {
        let log_q_old = [-1.2, -2.0, -0.5, -3.0];
        let log_q_now = [-1.0, -2.5, -0.7, -2.2];
        let (_, w_adj) = weight_adjustment(2.0, &log_q_now, &log_q_old);
        assert_coefficients_match_central_differences(&|lq: &[f64]| weighted_nll(&w_adj, lq), &log_q_now);
    }

    #[test]
    fn capped_weights_stop_at_the_cap_and_no_cap_changes_nothing() {
        let (_, w) = weight_adjustment(2.0, &[-5.0, -1.0, -30.0], &[-1.0, -1.0, -1.0]);
        let mut capped = w.clone();
        super::cap_weights(&mut capped, Some(10.0));
        assert_eq!(capped[1], 1.0);
        assert!((w[0] - 4f64.exp()).abs() < 1e-12 && capped[0] == 10.0 && capped[2] == 10.0, "{w:?} → {capped:?}");
        let mut uncapped = w.clone();
        super::cap_weights(&mut uncapped, None);
        assert_eq!(uncapped, w);
    }

    #[test]
    fn the_adjustment_is_q_old_over_q_for_alpha_2() {
        let (log_adj, w) = weight_adjustment(2.0, &[-1.0, f64::NAN], &[-1.5, -1.0]);
        assert_eq!(log_adj[0], -0.5);
        assert_eq!(w[0], (-0.5f64).exp());
        assert_eq!(w[1], 0.0);
    }
}
