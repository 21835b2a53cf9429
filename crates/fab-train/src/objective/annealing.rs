//! The AIS of a FAB objective: fab-ais's sampler with its adapted step sizes, run on the flow and the counted
//! target with the target's validity rules, its drops counted in the run.

use super::context::StepContext;
use crate::error::TrainError;
use fab_ais::{Ais, AisAdaptation, AisOutput, CheckedAisConfig};
use fab_core::numerics::ess_percent;

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
        let target = ctx.target;
        let is_valid = |x: &[f64]| target.inner().point_is_valid(x);
        let out = self.ais.run_validated(self.alpha(), &*ctx.flow, target, &is_valid, ctx.batch_size, seed, 0)?;
        ctx.counters.n_dropped_points += (out.n_dropped_init + out.n_dropped_end) as u64;
        ctx.counters.n_invalid_points += out.n_invalid;
        Ok(out)
    }

    /// The checkpointed state: `{"adaptation": …}` (checkpoints before issue 11 also stored the method beside it).
    pub(crate) fn save(&self) -> serde_json::Value {
        serde_json::json!({ "adaptation": self.ais.adaptation() })
    }

    pub(crate) fn restore(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let adaptation: AisAdaptation =
            serde_json::from_value(state["adaptation"].clone()).map_err(|e| format!("ais.adaptation: {e}"))?;
        self.ais.restore_adaptation(adaptation).map_err(|e| format!("ais: {e}"))
    }
}

/// Acceptance and step size per intermediate distribution, and the batch ESS, into a step report.
pub(crate) fn ais_report(mut report: crate::IterationReport, out: &AisOutput) -> crate::IterationReport {
    report.batch_ess = ess_percent(&out.log_w).value;
    report.acceptance = out.per_beta.iter().map(|b| b.acceptance_rate).collect();
    report.step_sizes = out.per_beta.iter().map(|b| b.step_size).collect();
    report
}
