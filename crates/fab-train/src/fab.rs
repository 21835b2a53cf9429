//! The FAB objectives: the 2021 loss (eq. 5), α = 2 without and with the prioritised replay buffer.
//!
//! This is the only code that combines flow gradients with AIS weights. AIS itself is fab-ais behind
//! [`AisDriver`], which owns the per-distribution step sizes (adapted during training, checkpointed).

use crate::run::{IterationReport, Run, TrainError, purpose};
use fab_core::numerics::{ess_percent, logsumexp, normalized_weights};
use fab_core::{Batch, stream_rng, sub_seed};

pub(crate) use crate::ais_driver::AisBatch;

/// One AIS batch from the current flow, with invalid points dropped (and counted in the run).
fn ais_batch(run: &mut Run, seed: u64, alpha: f64) -> Result<AisBatch, TrainError> {
    let _span = tracing::debug_span!("ais", alpha).entered();
    let n = run.config.batch_size;
    let driver = run.ais.as_mut().expect("FAB runs always have an AIS driver");
    let batch = driver.run(&run.flow, &run.target, n, alpha, seed, true).map_err(TrainError::Ais)?;
    run.counters.n_dropped_points += batch.n_dropped;
    Ok(batch)
}

fn report(loss: f64, grad_norm: f64, batch: &AisBatch) -> IterationReport {
    IterationReport {
        iteration: 0,
        loss,
        grad_norm,
        batch_ess: ess_percent(&batch.log_w).value,
        acceptance: batch.acceptance.clone(),
        step_sizes: batch.step_sizes.clone(),
        target_evaluations: 0,
        n_dropped: 0,
    }
}

/// 2021 FAB step: AIS to p, then `L(θ) = logsumexp_i(log w̄_i + log p̃(x_i) − log q_θ(x_i))` with the samples and
/// normalised weights w̄ held fixed, i.e. `L = log Σ_i w̄_i p̃(x_i)/q_θ(x_i)` (the α = 2 divergence, eq. 5).
pub(crate) fn fab_2021_step(run: &mut Run, seed: u64) -> Result<IterationReport, TrainError> {
    let batch = ais_batch(run, seed, 1.0)?;
    let (w_bar, _) = normalized_weights(&batch.log_w);
    let log_q = run.flow.log_q(batch.x.view());
    // Terms t_i = log w̄_i + log p_i − log q_i; ∂L/∂log q_i = −softmax(t)_i.
    let terms: Vec<f64> =
        (0..w_bar.len())
            .map(|i| {
                if w_bar[i] > 0.0 && log_q[i].is_finite() {
                    w_bar[i].ln() + batch.log_p[i] - log_q[i]
                } else {
                    f64::NAN
                }
            })
            .collect();
    let (softmax, lse) = normalized_weights(&terms);
    let loss = if lse.n_used == 0 { f64::NAN } else { logsumexp(&terms).value };
    let coeffs: Vec<f64> = softmax.iter().map(|c| -c).collect();
    let mut grad = vec![0.0; run.flow.n_params()];
    run.flow.log_q_grad_params(batch.x.view(), &coeffs, &mut grad);
    let grad_norm = run.apply_gradient(loss, &mut grad);
    Ok(report(loss, grad_norm, &batch))
}

/// ICLR FAB step without buffer: AIS to p²/q, `L(θ) = −(1/N) Σ_i w̄_i log q_θ(x_i)`.
pub(crate) fn fab_alpha2_step(run: &mut Run, seed: u64) -> Result<IterationReport, TrainError> {
    let batch = ais_batch(run, seed, 2.0)?;
    let (w_bar, _) = normalized_weights(&batch.log_w);
    let n = w_bar.len() as f64;
    let coeffs: Vec<f64> = w_bar.iter().map(|w| -w / n).collect();
    let mut grad = vec![0.0; run.flow.n_params()];
    let log_q = run.flow.log_q_grad_params(batch.x.view(), &coeffs, &mut grad);
    let loss = weighted_neg_mean(&w_bar, &log_q);
    let grad_norm = run.apply_gradient(loss, &mut grad);
    Ok(report(loss, grad_norm, &batch))
}

/// `−(1/N) Σ wᵢ log qᵢ` over rows with positive weight; NaN if some such row has a non-finite log q.
fn weighted_neg_mean(w: &[f64], log_q: &[f64]) -> f64 {
    let n = w.len() as f64;
    -w.iter().zip(log_q).filter(|(w, _)| **w > 0.0).map(|(w, l)| w * l).sum::<f64>() / n
}

/// Fills the replay buffer with AIS batches (current flow, p²/q target) until it can be sampled.
pub(crate) fn fill_buffer(run: &mut Run) -> Result<(), TrainError> {
    let mut k = 0u64;
    while !run.buffer.as_ref().expect("buffer runs have a buffer").can_sample() {
        let seed = sub_seed(run.config.seed, &[purpose::BUFFER_FILL, k]);
        let batch = ais_batch(run, seed, 2.0)?;
        run.buffer.as_mut().expect("buffer").add(batch.x.view(), &batch.log_w, &batch.log_q);
        k += 1;
        if k > 1_000_000 {
            return Err(TrainError::Ais(
                "the replay buffer could not be filled: AIS keeps producing invalid points".into(),
            ));
        }
    }
    Ok(())
}

/// ICLR FAB step with the prioritised buffer: one AIS batch is added, then `n_updates` gradient steps on points
/// drawn ∝ stored weight, each with loss `−mean(w_adj·log q_θ)`, `w_adj = (q_old/q_θ)^{α−1}` held fixed.
pub(crate) fn fab_alpha2_buffer_step(
    run: &mut Run,
    seed: u64,
    n_updates: usize,
) -> Result<IterationReport, TrainError> {
    let batch = ais_batch(run, seed, 2.0)?;
    run.buffer.as_mut().expect("buffer").add(batch.x.view(), &batch.log_w, &batch.log_q);
    let n = run.config.batch_size;
    let mut rng = stream_rng(seed, 1);
    let Some(draw) = run.buffer.as_ref().expect("buffer").sample(&mut rng, n * n_updates) else {
        return Err(TrainError::Ais(format!("the replay buffer holds fewer than {} valid points", n * n_updates)));
    };
    let (mut loss, mut grad_norm) = (f64::NAN, f64::NAN);
    for u in 0..n_updates {
        let rows: Vec<usize> = (u * n..(u + 1) * n).collect();
        let x: Batch = draw.x.select_rows(&rows);
        let log_q_old: Vec<f64> = rows.iter().map(|&r| draw.log_q_old[r]).collect();
        let idx: Vec<usize> = rows.iter().map(|&r| draw.idx[r]).collect();
        let log_q_now = run.flow.log_q(x.view());
        // α = 2: log w_adjust = (1 − α)(log q − log q_old).
        let log_w_adjust: Vec<f64> = log_q_now.iter().zip(&log_q_old).map(|(q, q_old)| -(q - q_old)).collect();
        let w_adj: Vec<f64> = log_w_adjust.iter().map(|l| if l.is_finite() { l.exp() } else { 0.0 }).collect();
        let coeffs: Vec<f64> = w_adj.iter().map(|w| -w / n as f64).collect();
        let mut grad = vec![0.0; run.flow.n_params()];
        run.flow.log_q_grad_params(x.view(), &coeffs, &mut grad);
        loss = weighted_neg_mean(&w_adj, &log_q_now);
        grad_norm = run.apply_gradient(loss, &mut grad);
        run.buffer.as_mut().expect("buffer").adjust(&idx, &log_w_adjust, &log_q_now);
    }
    Ok(report(loss, grad_norm, &batch))
}
