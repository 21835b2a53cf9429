//! The AIS of a FAB objective: fab-ais's sampler with its adapted step sizes, run on the flow and the counted
//! target with the target's validity rules, its drops counted in the run.

use super::ObjectiveState;
use super::context::StepContext;
use crate::error::TrainError;
use fab_ais::{Ais, AisAdaptation, AisError, AisOutput, CheckedAisConfig};
use fab_core::numerics::ess_percent;
use fab_core::{LogDensity, Proposal};
use fab_targets::Target;

/// The AIS sampler of a FAB run; its adaptation state is checkpointed under `ais`.
#[derive(Debug, Clone)]
pub(crate) struct FabAis {
    ais: Ais,
}

impl FabAis {
    pub(crate) fn new(config: CheckedAisConfig) -> Self {
        Self { ais: Ais::new(config) }
    }

    pub(crate) fn ais(&self) -> &Ais {
        &self.ais
    }

    /// α of the annealing path `q^{1−αβ} p^{αβ}`: stated once, in the AIS config.
    pub(crate) fn alpha(&self) -> f64 {
        self.ais.config().config().alpha
    }

    /// One training AIS batch of `ctx.batch_size` points (step sizes adapt), drops counted in the run.
    pub(crate) fn batch(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<AisOutput, TrainError> {
        let _span = tracing::debug_span!("ais", alpha = self.alpha()).entered();
        self.ais.unfreeze();
        let alpha = self.alpha();
        let out =
            run_within_support(&mut self.ais, alpha, &*ctx.flow, ctx.target, ctx.target.inner(), ctx.batch_size, seed)?;
        ctx.counters.n_dropped_points += (out.n_dropped_init + out.n_dropped_end) as u64;
        ctx.counters.n_invalid_points += out.n_invalid;
        Ok(out)
    }

    /// Writes the checkpointed state under `ais`: `{"adaptation": …}` (checkpoints before issue 11 also stored the
    /// method beside it).
    pub(crate) fn save<'a>(&'a self, state: &mut ObjectiveState<'a>) {
        state.meta.insert(STATE_KEY.into(), serde_json::json!({ "adaptation": self.ais.adaptation() }));
    }

    /// Restores the state [`FabAis::save`] wrote.
    pub(crate) fn restore(&mut self, state: &ObjectiveState) -> Result<(), String> {
        let adaptation: AisAdaptation = serde_json::from_value(state.field(STATE_KEY)?["adaptation"].clone())
            .map_err(|e| format!("ais.adaptation: {e}"))?;
        self.ais.restore_adaptation(adaptation).map_err(|e| format!("ais: {e}"))
    }
}

/// The checkpoint field of the AIS state.
const STATE_KEY: &str = "ais";

/// One AIS run from `flow` to `q^{1−α} p^α` with the target's validity predicate deciding its support: the one way
/// training and evaluation run AIS on a run's target. `density` is the target as evaluated (counted in training).
pub(crate) fn run_within_support(
    ais: &mut Ais,
    alpha: f64,
    flow: &dyn Proposal,
    density: &dyn LogDensity,
    target: &dyn Target,
    n: usize,
    seed: u64,
) -> Result<AisOutput, AisError> {
    let is_valid = |x: &[f64]| target.point_is_valid(x);
    ais.run_validated(alpha, flow, density, &is_valid, n, seed, 0)
}

/// Acceptance and step size per intermediate distribution, and the batch ESS, into a step report.
pub(crate) fn ais_report(mut report: crate::IterationReport, out: &AisOutput) -> crate::IterationReport {
    report.batch_ess = ess_percent(&out.log_w).value;
    report.acceptance = out.per_beta.iter().map(|b| b.acceptance_rate).collect();
    report.step_sizes = out.per_beta.iter().map(|b| b.step_size).collect();
    report
}
