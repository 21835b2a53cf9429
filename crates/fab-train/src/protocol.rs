//! fab-jax's log Z protocol: the mean absolute error of log Ẑ over batches of AIS (or SMC) estimates targeting p,
//! with target evaluations counted exactly, and the equal-budget sizing of the SMC-from-base baseline.
//!
//! fab-jax's README table: per seed, 10 estimates of log Z from 2000 samples each (AIS with α = 1 from the trained
//! flow, its training transitions, no resampling); the MAE over the 10; then mean ± standard error over 5 seeds.

use fab_ais::{AisError, Smc};
use fab_core::{Counted, LogDensity, Proposal};
use serde::{Deserialize, Serialize};

/// Batches and their size (fab-jax: 10 × 2000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogZProtocol {
    /// Independent estimates.
    pub n_batches: usize,
    /// Samples per estimate.
    pub batch_size: usize,
}

impl Default for LogZProtocol {
    fn default() -> Self {
        Self { n_batches: 10, batch_size: 2000 }
    }
}

/// The estimates of one seed and their error against the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolOutcome {
    /// `log Ẑ` of each batch.
    pub log_z: Vec<f64>,
    /// The true log Z.
    pub truth: f64,
    /// `mean |log Ẑ − log Z|` over the batches.
    pub mae: f64,
    /// Target evaluations of all batches (counted by a wrapper around the target, not inferred).
    pub target_evaluations: u64,
}

/// Mean and standard error (`sd / √n`, sample sd) of per-seed values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSe {
    /// Mean.
    pub mean: f64,
    /// Standard error; `NaN` for fewer than 2 values.
    pub std_err: f64,
    /// Values.
    pub n: usize,
}

/// `mean |eᵢ − truth|`.
pub fn mean_absolute_error(estimates: &[f64], truth: f64) -> f64 {
    estimates.iter().map(|e| (e - truth).abs()).sum::<f64>() / estimates.len() as f64
}

/// Mean and standard error of `xs`.
pub fn mean_and_std_err(xs: &[f64]) -> MeanSe {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std_err = if n > 1 {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 / n as f64).sqrt()
    } else {
        f64::NAN
    };
    MeanSe { mean, std_err, n }
}

/// Runs the protocol with `sampler` at α = 1 from `proposal` to `target`; batch `b` uses iteration `b` of `seed`'s
/// streams. With `adapt` false the sampler is frozen first (a trained run's evaluation: two calls with the same
/// arguments agree); with `adapt` true its step sizes keep adapting from batch to batch (a sampler with no
/// training of its own, e.g. the SMC baseline, whose adaptation is paid for by the counted evaluations).
pub fn run_log_z_protocol(
    sampler: &mut Smc,
    proposal: &dyn Proposal,
    target: &dyn LogDensity,
    truth: f64,
    protocol: LogZProtocol,
    seed: u64,
    adapt: bool,
) -> Result<ProtocolOutcome, AisError> {
    if adapt {
        sampler.unfreeze();
    } else {
        sampler.freeze();
    }
    let counted = Counted::new(target);
    let mut log_z = Vec::with_capacity(protocol.n_batches);
    for b in 0..protocol.n_batches {
        let out = sampler.run_with_alpha(1.0, proposal, &counted, protocol.batch_size, seed, b as u64)?;
        log_z.push(out.ais.log_z.log_z);
    }
    let mae = mean_absolute_error(&log_z, truth);
    Ok(ProtocolOutcome { log_z, truth, mae, target_evaluations: counted.counts().total() })
}

/// Target evaluations per particle of one transition: HMC evaluates every leapfrog step, Metropolis once; NUTS's
/// trajectory length varies (`None`: count evaluations instead).
pub fn evaluations_per_transition(transition: &fab_ais::Transition) -> Option<u64> {
    match transition {
        fab_ais::Transition::Hmc(hmc) => Some(hmc.n_leapfrog as u64),
        fab_ais::Transition::Metropolis => Some(1),
        fab_ais::Transition::Nuts(_) => None,
    }
}

/// The most intermediate distributions an SMC run of `n_particles` can afford within `budget` target
/// evaluations: each particle costs 1 (the draw) plus `per_transition · transitions_per_beta` per intermediate
/// β. `None` when not even plain importance sampling fits.
pub fn intermediates_within_budget(
    budget: u64,
    n_particles: u64,
    per_transition: u64,
    transitions_per_beta: u64,
) -> Option<usize> {
    let per_particle = budget / n_particles.max(1);
    let per_beta = (per_transition * transitions_per_beta).max(1);
    per_particle.checked_sub(1).map(|rest| (rest / per_beta) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fab_ais::{AisConfig, SmcSettings, StepSizeRule, Transition};
    use fab_mcmc::Hmc;
    use fab_targets::DiagGaussian;

    #[test]
    fn mae_and_standard_error_by_hand() {
        assert!((mean_absolute_error(&[0.1, -0.3, 0.2], 0.0) - 0.2).abs() < 1e-15);
        assert!((mean_absolute_error(&[1.1, 0.7], 1.0) - 0.2).abs() < 1e-15);
        let s = mean_and_std_err(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.mean, s.n), (2.5, 4));
        assert!((s.std_err - (5.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-15);
        assert!(mean_and_std_err(&[1.0]).std_err.is_nan());
    }

    #[test]
    fn budget_sizing_counts_the_draw_and_every_leapfrog_step() {
        // 2000 particles, HMC with 5 leapfrog steps: 1 + 5K evaluations each.
        assert_eq!(intermediates_within_budget(2000 * 21, 2000, 5, 1), Some(4));
        assert_eq!(intermediates_within_budget(2000 * 21 - 1, 2000, 5, 1), Some(3));
        assert_eq!(intermediates_within_budget(1999, 2000, 5, 1), None);
        assert_eq!(intermediates_within_budget(2000 * 3, 2000, 1, 2), Some(1));
    }

    #[test]
    fn protocol_counts_evaluations_exactly_and_recovers_a_known_log_z() {
        let q = DiagGaussian::standard(2);
        let p = DiagGaussian::new(vec![0.5, -0.5], vec![0.8, 1.2]).unwrap();
        let config = AisConfig {
            n_intermediate: 3,
            alpha: 2.0,
            transition: Transition::Hmc(Hmc::new(4)),
            step_size_rule: StepSizeRule::Fixed,
            initial_step_size: 0.4,
            ..AisConfig::fab_2021()
        };
        let mut smc = Smc::new(config.check().unwrap(), SmcSettings::ais()).unwrap();
        let protocol = LogZProtocol { n_batches: 4, batch_size: 500 };
        let out = run_log_z_protocol(&mut smc, &q, &p, 0.0, protocol, 3, false).unwrap();
        assert_eq!(out.log_z.len(), 4);
        assert_eq!(out.target_evaluations, 4 * 500 * (1 + 3 * 4), "draw + 3 βs × 4 leapfrog steps per point");
        assert!(out.mae < 0.05, "MAE {} for a normalised target", out.mae);
        let distinct = out.log_z.windows(2).all(|w| w[0] != w[1]);
        assert!(distinct, "batches are independent: {:?}", out.log_z);
        let again = run_log_z_protocol(&mut smc, &q, &p, 0.0, protocol, 3, false).unwrap();
        assert_eq!(again, out);
    }
}
