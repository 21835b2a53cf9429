//! The config format written before 2026-12-02, when FAB methods had fab-train's own short AIS vocabulary: read
//! (never written) so that committed run directories, checkpoints and users' files keep working.
//!
//! The old `method.ais` was `(n_intermediate, schedule: Linear | Geometric, transition: Hmc(n_leapfrog, step_size,
//! adapt: Fab2021 | FabIclr | Fixed) | Metropolis(step_size, n_steps))`, with α implied by the method. Each is
//! translated to the [`fab_ais::AisConfig`] it always stood for, so an old file and its rewrite in the current format
//! give bitwise the same run (`tests/bitwise.rs` hashes the shipped configs, `tests/legacy_config.rs` compares).
//! Only the FAB methods changed; a file with any other method parses in the current format directly.

use crate::config::{Budget, BufferSettings, EvalConfig, FlowConfig, Method, OptimizerConfig, TrainConfig};
use fab_ais::{AisConfig, BetaSchedule, StepSizeRule};
use fab_mcmc::{FabRule, Hmc};
use fab_targets::TargetSpec;
use serde::Deserialize;

/// Gradient clamp of HMC inside AIS the old vocabulary implied: ±1e4 with the 2021 rule, ±1e3 otherwise (SPEC §3).
const GRAD_CLAMP_2021: f64 = 1e4;
const GRAD_CLAMP_ICLR: f64 = 1e3;

/// [`TrainConfig`] with the old `method`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyTrainConfig {
    name: String,
    seed: u64,
    #[serde(default, with = "crate::config::bare_option")]
    target: Option<TargetSpec>,
    flow: FlowConfig,
    method: LegacyMethod,
    optimizer: OptimizerConfig,
    batch_size: usize,
    budget: Budget,
    eval: EvalConfig,
    #[serde(default)]
    checkpoint_every: u64,
}

/// The FAB methods as they were written.
#[derive(Deserialize)]
enum LegacyMethod {
    Fab2021 { ais: LegacyAis },
    FabAlpha2 { ais: LegacyAis, buffer: Option<BufferSettings> },
}

/// The old `method.ais`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyAis {
    n_intermediate: usize,
    #[serde(default)]
    schedule: LegacySchedule,
    transition: LegacyTransition,
}

#[derive(Deserialize, Default)]
enum LegacySchedule {
    #[default]
    Linear,
    Geometric,
}

#[derive(Deserialize)]
enum LegacyTransition {
    Hmc { n_leapfrog: usize, step_size: f64, adapt: LegacyStepRule },
    Metropolis { step_size: f64, n_steps: usize },
}

#[derive(Deserialize)]
enum LegacyStepRule {
    Fab2021,
    FabIclr,
    Fixed,
}

impl LegacyAis {
    /// The fab-ais configuration this stood for, with the method's α.
    fn into_ais_config(self, alpha: f64) -> AisConfig {
        let schedule = match self.schedule {
            LegacySchedule::Linear => BetaSchedule::Linear,
            LegacySchedule::Geometric => BetaSchedule::Geometric,
        };
        let base = AisConfig { n_intermediate: self.n_intermediate, schedule, alpha, ..AisConfig::fab_2021() };
        match self.transition {
            LegacyTransition::Hmc { n_leapfrog, step_size, adapt } => {
                let (rule, clamp) = match adapt {
                    LegacyStepRule::Fab2021 => (StepSizeRule::Fab(FabRule::Fab2021), GRAD_CLAMP_2021),
                    LegacyStepRule::FabIclr => (StepSizeRule::Fab(FabRule::Iclr), GRAD_CLAMP_ICLR),
                    LegacyStepRule::Fixed => (StepSizeRule::Fixed, GRAD_CLAMP_ICLR),
                };
                AisConfig {
                    transition: fab_ais::Transition::Hmc(Hmc::without_jitter(n_leapfrog).with_grad_clamp(clamp)),
                    step_size_rule: rule,
                    initial_step_size: step_size,
                    ..base
                }
            }
            LegacyTransition::Metropolis { step_size, n_steps } => AisConfig {
                transition: fab_ais::Transition::Metropolis,
                step_size_rule: StepSizeRule::Fixed,
                initial_step_size: step_size,
                transitions_per_beta: n_steps,
                ..base
            },
        }
    }
}

impl From<LegacyTrainConfig> for TrainConfig {
    fn from(c: LegacyTrainConfig) -> Self {
        let method = match c.method {
            LegacyMethod::Fab2021 { ais } => Method::Fab2021 { ais: ais.into_ais_config(1.0) },
            LegacyMethod::FabAlpha2 { ais, buffer } => Method::FabAlpha2 { ais: ais.into_ais_config(2.0), buffer },
        };
        TrainConfig {
            name: c.name,
            seed: c.seed,
            target: c.target,
            flow: c.flow,
            method,
            optimizer: c.optimizer,
            batch_size: c.batch_size,
            budget: c.budget,
            eval: c.eval,
            checkpoint_every: c.checkpoint_every,
        }
    }
}

/// The config in RON `text` read in the old format (the error is the old format's).
pub(crate) fn from_ron(text: &str) -> Result<TrainConfig, ron::error::SpannedError> {
    ron::Options::default().from_str::<LegacyTrainConfig>(text).map(TrainConfig::from)
}

/// The config in the JSON `value` (a checkpoint's copy) if it is in the old format.
pub(crate) fn from_json(value: &serde_json::Value) -> Option<TrainConfig> {
    LegacyTrainConfig::deserialize(value).ok().map(TrainConfig::from)
}
