//! The 2021 SNF baseline as an objective: reverse KL of the SNF by its pathwise gradient (the loss and its
//! hand-derived gradient, with their finite-difference tests, live with the model in `crate::snf`).

use super::context::{IterationReport, StepContext};
use super::{Objective, ObjectiveState};
use crate::error::TrainError;
use crate::snf::Snf;
use fab_core::numerics::ess_percent;

/// The SNF objective; owns the SNF, whose parameters the optimiser steps (the run's flow is its fixed prior).
pub(crate) struct SnfObjective {
    snf: Snf,
}

impl SnfObjective {
    pub(crate) fn new(snf: Snf) -> Self {
        Self { snf }
    }
}

impl Objective for SnfObjective {
    fn step(&mut self, ctx: &mut StepContext<'_>, seed: u64) -> Result<IterationReport, TrainError> {
        let n = ctx.batch_size;
        let mut grad = vec![0.0; self.snf.n_params()];
        let batch = self.snf.reverse_kl_grad(ctx.target, seed, n, &mut grad);
        ctx.counters.n_dropped_points += (n - batch.n_valid) as u64;
        let grad_norm = ctx.optimiser.apply(batch.loss, &mut grad, self.snf.params_mut(), ctx.counters);
        let mut report = IterationReport::of_step(batch.loss, grad_norm, ess_percent(&batch.log_w).value);
        report.acceptance = batch.acceptance;
        Ok(report)
    }
    fn save<'a>(&'a self, state: &mut ObjectiveState<'a>) {
        state.arrays.insert("snf.params".into(), self.snf.params().into());
    }
    fn restore(&mut self, state: &ObjectiveState) -> Result<(), String> {
        let params = state.arrays.get("snf.params").ok_or("missing array `snf.params`")?;
        self.snf.set_params(params.to_vec()).map_err(|e| format!("snf: {e}"))
    }
    fn snf(&self) -> Option<&Snf> {
        Some(&self.snf)
    }
}
