//! A training run: the state that is checkpointed, one iteration of its objective, and the budget.
//!
//! Every random draw of iteration `k` comes from streams addressed by `(seed, purpose, k)`, so a run resumed from a
//! checkpoint at iteration `k` continues exactly as the uninterrupted run would have.

use crate::checkpoint::{CheckpointData, CheckpointError};
use crate::chunked::ChunkedSampling;
use crate::config::{Budget, CheckedTrainConfig, ConfigError, TrainConfig};
use crate::error::TrainError;
use crate::grad_guard::GradGuard;
use crate::objective::{self, Counters, IterationReport, Objective, ObjectiveState, Optimiser, StepContext};
use crate::snf::Snf;
use crate::streams;
use fab_ais::{Ais, AisOutput};
use fab_core::{Counted, EvalCounts, stream_rng, sub_seed};
use fab_flow::{Adam, AdamConfig, AdamState, Flow};
use fab_targets::Target;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

/// The checkpoint field of the gradient guard's window (present only when the config has a guard).
const GRAD_GUARD_KEY: &str = "grad_guard";

/// Points drawn for the data-dependent ActNorm initialisation of 2021 flows.
const ACTNORM_INIT_POINTS: usize = 1000;

/// The full state of a run: enough to continue it bit for bit.
pub struct Run {
    config: TrainConfig,
    target: Counted<Box<dyn Target>>,
    flow: Flow,
    optimiser: Optimiser,
    objective: Box<dyn Objective>,
    iteration: u64,
    counters: Counters,
}

fn adam_config(config: &TrainConfig) -> AdamConfig {
    let o = &config.optimizer;
    if o.decoupled {
        AdamConfig::adamw(o.lr, o.weight_decay)
    } else {
        AdamConfig { weight_decay: o.weight_decay, ..AdamConfig::adam(o.lr) }
    }
}

impl Run {
    /// Checks the config against its built-in `target` and builds a fresh run (flow initialised from the seed).
    pub fn new(config: TrainConfig) -> Result<Self, TrainError> {
        Self::from_checked(config.check()?)
    }

    /// Trains on a caller-supplied density: any [`Target`], e.g. `Box::new(MyDensity)` with
    /// `impl Target for MyDensity {}`, or a [`fab_targets::CustomTarget`] declaring its capabilities.
    /// The config's `target` may be omitted.
    pub fn with_target(config: TrainConfig, target: Box<dyn Target>) -> Result<Self, TrainError> {
        Self::from_checked(config.check_with_target(target)?)
    }

    /// Builds a fresh run from a config checked once (see [`TrainConfig::check`]).
    pub fn from_checked(checked: CheckedTrainConfig) -> Result<Self, TrainError> {
        let (config, flow_spec, ais, target) = checked.into_parts();
        let mut flow = Flow::new(&flow_spec, sub_seed(config.seed, &[streams::INIT]))?;
        if !flow.actnorm_initialized() {
            let mut rng = stream_rng(sub_seed(config.seed, &[streams::INIT]), 1);
            flow.initialize_data_dependent(&mut rng, ACTNORM_INIT_POINTS);
        }
        let snf = match config.method.snf_spec(flow.dim()) {
            Some(spec) => Some(Snf::new(spec, sub_seed(config.seed, &[streams::INIT, streams::SNF_INIT]))?),
            None => None,
        };
        let objective = objective::build(&config.method, ais, snf, flow.dim());
        let o = &config.optimizer;
        let grad_guard = o
            .grad_guard
            .map(GradGuard::new)
            .transpose()
            .map_err(|e| ConfigError { field: format!("optimizer.grad_guard.{}", e.field), reason: e.reason })?;
        let optimiser = Optimiser {
            adam: Adam::new(adam_config(&config)),
            max_grad_norm: o.max_grad_norm,
            max_grad_value: o.max_grad_value,
            grad_guard,
        };
        Ok(Self {
            config,
            target: Counted::new(target),
            flow,
            optimiser,
            objective,
            iteration: 0,
            counters: Counters::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    /// The flow being trained (for an SNF run: the SNF's `N(0, I)` prior, see [`Self::snf`]).
    pub fn flow(&self) -> &Flow {
        &self.flow
    }
    /// The SNF being trained, for SNF runs.
    pub fn snf(&self) -> Option<&Snf> {
        self.objective.snf()
    }
    /// The target (without its evaluation counter).
    pub fn target(&self) -> &dyn Target {
        self.target.inner().as_ref()
    }
    /// Target evaluations so far.
    pub fn target_evaluations(&self) -> EvalCounts {
        self.target.counts()
    }
    /// Iterations completed.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }
    /// Skip and drop counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// The AIS sampler (with its adapted step sizes), for FAB runs.
    pub fn ais(&self) -> Option<&Ais> {
        self.objective.ais()
    }

    /// `n` AIS samples towards the target p (α = 1) from the current flow, with the run's adapted step sizes
    /// frozen and the target's validity rules, seeded by `seed`; `None` for runs without AIS. Does not change the
    /// run and does not count towards its budget. The flow draws the starting points in bounded blocks
    /// ([`ChunkedSampling`]), bit for bit one draw.
    pub fn sample_ais(&self, n: usize, seed: u64) -> Result<Option<AisOutput>, TrainError> {
        let Some(ais) = self.ais() else { return Ok(None) };
        let mut frozen = ais.clone();
        frozen.freeze();
        let target = self.target();
        Ok(Some(objective::run_within_support(
            &mut frozen,
            1.0,
            &ChunkedSampling(&self.flow),
            target,
            target,
            n,
            seed,
        )?))
    }

    /// Replaces the budget by `n` iterations (e.g. to extend a resumed run).
    pub fn set_iteration_budget(&mut self, n: u64) {
        self.config.budget = Budget::Iterations(n);
    }

    /// Whether the budget is spent.
    pub fn is_done(&self) -> bool {
        match self.config.budget {
            Budget::Iterations(n) => self.iteration >= n,
            Budget::TargetEvaluations(n) => self.target.counts().total() >= n,
        }
    }

    /// Fraction of the budget spent so far, in [0, 1]: iterations, or target evaluations, over the budget. Derived
    /// from checkpointed counters only, so a resumed run continues the learning-rate schedule exactly.
    pub fn budget_progress(&self) -> f64 {
        let (spent, budget) = match self.config.budget {
            Budget::Iterations(n) => (self.iteration as f64, n as f64),
            Budget::TargetEvaluations(n) => (self.target.counts().total() as f64, n as f64),
        };
        (spent / budget).clamp(0.0, 1.0)
    }

    /// Runs one iteration of the configured objective.
    pub fn step(&mut self) -> Result<IterationReport, TrainError> {
        let _span = tracing::debug_span!("iteration", k = self.iteration).entered();
        let seed = sub_seed(self.config.seed, &[streams::TRAIN, self.iteration]);
        let o = &self.config.optimizer;
        self.optimiser.adam.config.lr = o.schedule.lr(o.lr, self.budget_progress());
        let before = self.counters;
        let mut ctx = StepContext {
            flow: &mut self.flow,
            target: &self.target,
            optimiser: &mut self.optimiser,
            counters: &mut self.counters,
            batch_size: self.config.batch_size,
            run_seed: self.config.seed,
        };
        let mut report = self.objective.step(&mut ctx, seed)?;
        report.iteration = self.iteration;
        report.target_evaluations = self.target.counts().total();
        report.n_dropped = self.counters.n_dropped_points - before.n_dropped_points;
        report.n_skipped_grad_guard = self.counters.n_skipped_grad_guard - before.n_skipped_grad_guard;
        report.n_clipped_grad_guard = self.counters.n_clipped_grad_guard - before.n_clipped_grad_guard;
        self.iteration += 1;
        Ok(report)
    }

    /// Everything needed to continue this run, as checkpoint content.
    pub fn to_checkpoint(&self) -> Result<CheckpointData<'_>, TrainError> {
        let mut state = ObjectiveState::default();
        self.objective.save(&mut state);
        let opt = self.optimiser.adam.state();
        let mut arrays = state.arrays;
        arrays.insert("optimizer.m".to_string(), Cow::Borrowed(&opt.m));
        arrays.insert("optimizer.v".to_string(), Cow::Borrowed(&opt.v));
        let mut blobs = BTreeMap::new();
        blobs.insert("flow.safetensors".to_string(), self.flow.to_safetensors_bytes()?);
        let mut meta = serde_json::json!({
            "format": "fab-run-checkpoint-1",
            "config": self.config,
            "iteration": self.iteration,
            "counters": self.counters,
            "target_evaluations": self.target.counts(),
            "optimizer": { "t": opt.t, "skipped": opt.skipped },
        });
        let meta_object = meta.as_object_mut().expect("an object");
        if let Some(guard) = &self.optimiser.grad_guard {
            meta_object.insert(GRAD_GUARD_KEY.into(), serde_json::to_value(guard).expect("serialisable"));
        }
        meta_object.extend(state.meta);
        Ok(CheckpointData { meta, arrays, blobs })
    }

    /// Restores a run of a built-in target from checkpoint content, refusing one whose config differs from
    /// `config` (other than the budget, eval and checkpoint interval, which may change) or whose content is
    /// inconsistent. `path` names the file in errors.
    pub fn from_checkpoint(config: TrainConfig, data: &CheckpointData, path: &Path) -> Result<Self, TrainError> {
        Self::restore(config.check()?, data, path)
    }

    /// Like [`Run::from_checkpoint`] for a run on a caller-supplied density.
    pub fn from_checkpoint_with_target(
        config: TrainConfig,
        target: Box<dyn Target>,
        data: &CheckpointData,
        path: &Path,
    ) -> Result<Self, TrainError> {
        Self::restore(config.check_with_target(target)?, data, path)
    }

    /// Like [`Run::from_checkpoint`] for a config already checked (the CLI checks once, with file and line).
    pub fn from_checked_checkpoint(
        checked: CheckedTrainConfig,
        data: &CheckpointData,
        path: &Path,
    ) -> Result<Self, TrainError> {
        Self::restore(checked, data, path)
    }

    fn restore(checked: CheckedTrainConfig, data: &CheckpointData, path: &Path) -> Result<Self, TrainError> {
        let invalid = |reason: String| CheckpointError::Invalid { path: path.to_path_buf(), reason };
        let meta = &data.meta;
        if meta["format"] != "fab-run-checkpoint-1" {
            return Err(invalid("not a fab run checkpoint (missing format tag)".into()).into());
        }
        let stored =
            TrainConfig::from_json(&meta["config"]).map_err(|e| invalid(format!("stored config unreadable: {e}")))?;
        let config = checked.config();
        let comparable = TrainConfig {
            budget: config.budget,
            eval: config.eval.clone(),
            checkpoint_every: config.checkpoint_every,
            ..stored.clone()
        };
        if comparable != *config {
            return Err(invalid(format!(
                "checkpoint was written by run `{}` with a different config (only budget, eval and checkpoint_every may change on resume)",
                stored.name
            ))
            .into());
        }
        let mut run = Run::from_checked(checked)?;
        let field = |name: &str| -> Result<serde_json::Value, TrainError> {
            let v = &meta[name];
            if v.is_null() {
                return Err(invalid(format!("missing `{name}`")).into());
            }
            Ok(v.clone())
        };
        run.iteration = serde_json::from_value(field("iteration")?).map_err(|e| invalid(format!("iteration: {e}")))?;
        run.counters = serde_json::from_value(field("counters")?).map_err(|e| invalid(format!("counters: {e}")))?;
        let counts: EvalCounts = serde_json::from_value(field("target_evaluations")?)
            .map_err(|e| invalid(format!("target_evaluations: {e}")))?;
        run.target.set_counts(counts);
        let flow_bytes = data.blobs.get("flow.safetensors").ok_or_else(|| invalid("missing the flow".into()))?;
        let flow = Flow::from_safetensors_bytes(flow_bytes)
            .map_err(|e| invalid(format!("the flow inside is unreadable: {e}")))?;
        if flow.spec() != run.flow.spec() {
            return Err(invalid("stored flow architecture differs from the config's".into()).into());
        }
        run.flow = flow;
        let array = |name: &str| {
            data.arrays.get(name).map(|v| v.to_vec()).ok_or_else(|| invalid(format!("missing array `{name}`")))
        };
        let opt = field("optimizer")?;
        let adam = AdamState {
            m: array("optimizer.m")?,
            v: array("optimizer.v")?,
            t: opt["t"].as_u64().ok_or_else(|| invalid("optimizer.t".into()))?,
            skipped: opt["skipped"].as_u64().ok_or_else(|| invalid("optimizer.skipped".into()))?,
        };
        run.optimiser.adam = Adam::from_state(adam_config(&run.config), adam);
        if run.optimiser.grad_guard.is_some() {
            let guard = serde_json::from_value(field(GRAD_GUARD_KEY)?)
                .map_err(|e| invalid(format!("{GRAD_GUARD_KEY}: {e}")))?;
            run.optimiser.grad_guard = Some(guard);
        }
        let state = ObjectiveState {
            meta: meta.as_object().cloned().unwrap_or_default(),
            arrays: data.arrays.iter().map(|(k, v)| (k.clone(), Cow::Borrowed(&**v))).collect(),
        };
        run.objective.restore(&state).map_err(invalid)?;
        run.check_optimiser_moments().map_err(invalid)?;
        Ok(run)
    }

    /// The restored Adam moments must have one entry per trained parameter (the flow's, or the SNF's for the SNF
    /// baseline), or none before the first step: a damaged checkpoint with a valid checksum would otherwise make the
    /// optimiser panic on its first step instead of being refused.
    fn check_optimiser_moments(&self) -> Result<(), String> {
        let trained = self.objective.snf().map_or(self.flow.params().len(), |snf| snf.params().len());
        let state = self.optimiser.adam.state();
        for (name, moment) in [("optimizer.m", &state.m), ("optimizer.v", &state.v)] {
            if !moment.is_empty() && moment.len() != trained {
                return Err(format!("`{name}` has {} entries for {trained} trained parameters", moment.len()));
            }
        }
        if state.m.len() != state.v.len() {
            return Err(format!("the optimiser moments have {} and {} entries", state.m.len(), state.v.len()));
        }
        Ok(())
    }
}
