//! The bridge from a training config to fab-ais: builds the AIS sampler, runs it on the flow, and checkpoints its
//! step sizes.

use crate::config::{Method, Schedule, StepRule, Transition};
use fab_ais::{Ais, AisAdaptation, AisConfig, BetaSchedule, StepSizeRule};
use fab_core::{Batch, LogDensity, Proposal};
use fab_mcmc::{FabRule, Hmc};
use serde::{Deserialize, Serialize};

/// Gradient clamp of HMC inside AIS: ±1e4 in the 2021 code, ±1e3 in the ICLR code (SPEC §3).
const GRAD_CLAMP_2021: f64 = 1e4;
const GRAD_CLAMP_ICLR: f64 = 1e3;

/// One AIS batch as the FAB losses need it: points, weights, cached densities and diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct AisBatch {
    /// Final AIS points.
    pub x: Batch,
    /// Their log weights.
    pub log_w: Vec<f64>,
    /// `log q` of the flow at the points (the replay buffer's `log q_old`).
    pub log_q: Vec<f64>,
    /// `log p̃` at the points.
    pub log_p: Vec<f64>,
    /// Acceptance rate per intermediate distribution.
    pub acceptance: Vec<f64>,
    /// Step size per intermediate distribution.
    pub step_sizes: Vec<f64>,
    /// Points dropped as non-finite (after the draw and at the end).
    pub n_dropped: u64,
}

/// The AIS sampler of a FAB run with its adapted step sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "DriverState", try_from = "DriverState")]
pub struct AisDriver {
    method: Method,
    ais: Ais,
}

/// What a checkpoint stores of the driver: the method (to rebuild the sampler) and the step-size state.
#[derive(Serialize, Deserialize)]
struct DriverState {
    method: Method,
    adaptation: AisAdaptation,
}

impl From<AisDriver> for DriverState {
    fn from(d: AisDriver) -> Self {
        Self { method: d.method, adaptation: d.ais.adaptation().clone() }
    }
}

impl TryFrom<DriverState> for AisDriver {
    type Error = String;
    fn try_from(s: DriverState) -> Result<Self, String> {
        let mut d = AisDriver::from_method(&s.method, 0)?.ok_or("the stored method has no AIS")?;
        d.ais.restore_adaptation(s.adaptation).map_err(|e| e.to_string())?;
        Ok(d)
    }
}

/// The fab-ais configuration of a FAB method (`None` for methods without AIS).
fn ais_config(method: &Method) -> Option<AisConfig> {
    let (settings, alpha) = match method {
        Method::Fab2021 { ais } => (ais, 1.0),
        Method::FabAlpha2 { ais, .. } => (ais, 2.0),
        _ => return None,
    };
    let schedule = match settings.schedule {
        Schedule::Linear => BetaSchedule::Linear,
        Schedule::Geometric => BetaSchedule::Geometric,
    };
    let base = AisConfig { n_intermediate: settings.n_intermediate, schedule, alpha, ..AisConfig::fab_2021() };
    Some(match &settings.transition {
        Transition::Hmc { n_leapfrog, step_size, adapt } => {
            let (rule, clamp) = match adapt {
                StepRule::Fab2021 => (StepSizeRule::Fab(FabRule::Fab2021), GRAD_CLAMP_2021),
                StepRule::FabIclr => (StepSizeRule::Fab(FabRule::Iclr), GRAD_CLAMP_ICLR),
                StepRule::Fixed => (StepSizeRule::Fixed, GRAD_CLAMP_ICLR),
            };
            AisConfig {
                transition: fab_ais::Transition::Hmc(Hmc::without_jitter(*n_leapfrog).with_grad_clamp(clamp)),
                step_size_rule: rule,
                initial_step_size: *step_size,
                ..base
            }
        }
        Transition::Metropolis { step_size, n_steps } => AisConfig {
            transition: fab_ais::Transition::Metropolis,
            step_size_rule: StepSizeRule::Fixed,
            initial_step_size: *step_size,
            transitions_per_beta: *n_steps,
            ..base
        },
    })
}

impl AisDriver {
    /// The driver of a FAB method, `None` for methods without AIS. `_dim` is reserved for a mass matrix.
    pub fn from_method(method: &Method, _dim: usize) -> Result<Option<Self>, String> {
        let Some(cfg) = ais_config(method) else { return Ok(None) };
        let checked = cfg.check().map_err(|e| format!("method.ais: {e}"))?;
        Ok(Some(Self { method: method.clone(), ais: Ais::new(checked) }))
    }

    /// Step size per intermediate distribution.
    pub fn step_sizes(&self) -> Vec<f64> {
        (0..self.ais.config().n_intermediate()).map(|j| self.ais.step_size(j)).collect()
    }

    /// One AIS run of `n` points from `flow` to `q^{1−α} p^α`, seeded by `seed`. With `adapt`, step sizes adapt (training);
    /// without, they are used as they are (evaluation).
    pub fn run(
        &mut self,
        flow: &dyn Proposal,
        target: &dyn LogDensity,
        n: usize,
        alpha: f64,
        seed: u64,
        adapt: bool,
    ) -> Result<AisBatch, String> {
        if adapt {
            self.ais.unfreeze()
        } else {
            self.ais.freeze()
        }
        let out = self.ais.run_with_alpha(alpha, flow, target, n, seed, 0).map_err(|e| e.to_string())?;
        Ok(AisBatch {
            acceptance: out.per_beta.iter().map(|b| b.acceptance_rate).collect(),
            step_sizes: out.per_beta.iter().map(|b| b.step_size).collect(),
            n_dropped: (out.n_dropped_init + out.n_dropped_end) as u64,
            x: out.samples,
            log_w: out.log_w,
            log_q: out.log_q,
            log_p: out.log_p,
        })
    }
}
