//! A training run: the state that is checkpointed, one iteration of each method, and the loop with its budget.
//!
//! Every random draw of iteration `k` comes from streams addressed by `(seed, purpose, k)`, so a run resumed from a
//! checkpoint at iteration `k` continues exactly as the uninterrupted run would have.

use crate::ais_driver::AisDriver;
use crate::buffer::ReplayBuffer;
use crate::checkpoint::{CheckpointData, CheckpointError};
use crate::config::{Budget, ConfigError, Method, TrainConfig};
use crate::fab::{fab_2021_step, fab_alpha2_buffer_step, fab_alpha2_step, fill_buffer};
use crate::snf::{Snf, SnfError};
use fab_core::{Batch, Counted, EvalCounts, LogDensity, stream_rng, sub_seed};
use fab_flow::{Adam, AdamConfig, AdamState, Flow, FlowError, StepOutcome, clip_grad_norm, clip_grad_value};
use fab_targets::Target;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Purposes of random streams (the second element of every `sub_seed` path).
pub(crate) mod purpose {
    /// Flow initialisation (weights, data-dependent ActNorm).
    pub const INIT: u64 = 1;
    /// Training iteration draws.
    pub const TRAIN: u64 = 2;
    /// Evaluation draws.
    pub const EVAL: u64 = 3;
    /// Filling the replay buffer before training.
    pub const BUFFER_FILL: u64 = 4;
    /// Initialisation of an SNF's parameters (second tag under `INIT`).
    pub const SNF_INIT: u64 = 5;
}

/// Points drawn for the data-dependent ActNorm initialisation of 2021 flows.
const ACTNORM_INIT_POINTS: usize = 1000;

/// Why a run could not be built, stepped or restored.
///
/// The wrapped errors are part of the message and deliberately not exposed as `source()`: a report that prints the
/// chain (`{:#}`) would otherwise say the same reason twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(ConfigError),
    /// The flow could not be built or restored.
    #[error("flow: {0}")]
    Flow(FlowError),
    /// A checkpoint could not be read or does not belong to this config.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// AIS failed (e.g. every point of a batch was invalid).
    #[error("AIS: {0}")]
    Ais(String),
    /// The SNF could not be built.
    #[error("SNF: {0}")]
    Snf(SnfError),
}

impl From<ConfigError> for TrainError {
    fn from(e: ConfigError) -> Self {
        TrainError::Config(e)
    }
}
impl From<FlowError> for TrainError {
    fn from(e: FlowError) -> Self {
        TrainError::Flow(e)
    }
}
impl From<SnfError> for TrainError {
    fn from(e: SnfError) -> Self {
        TrainError::Snf(e)
    }
}

/// Counters of everything that was skipped, dropped or rejected: non-finite values are data, and these report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Gradient steps taken.
    pub n_steps_applied: u64,
    /// Steps skipped because the loss was not finite.
    pub n_skipped_non_finite_loss: u64,
    /// Steps skipped because the gradient was not finite.
    pub n_skipped_non_finite_grad: u64,
    /// Training points dropped because log q, log p or a weight was not finite.
    pub n_dropped_points: u64,
}

/// What one iteration did (a JSON line of the metrics file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationReport {
    /// Iteration index (0-based) that this report closes.
    pub iteration: u64,
    /// Loss of the (last) gradient step; NaN if skipped.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// ESS in percent of the training batch's importance weights (AIS weights for FAB, flow weights otherwise).
    pub batch_ess: f64,
    /// Mean HMC/Metropolis acceptance per intermediate distribution (FAB only).
    pub acceptance: Vec<f64>,
    /// Step size per intermediate distribution (FAB only).
    pub step_sizes: Vec<f64>,
    /// Target evaluations so far (points, with or without gradient).
    pub target_evaluations: u64,
    /// Points dropped in this iteration as non-finite.
    pub n_dropped: u64,
}

/// The full state of a run: enough to continue it bit for bit.
pub struct Run {
    pub(crate) config: TrainConfig,
    pub(crate) target: Counted<Box<dyn Target>>,
    pub(crate) flow: Flow,
    pub(crate) optimizer: Adam,
    pub(crate) ais: Option<AisDriver>,
    pub(crate) buffer: Option<ReplayBuffer>,
    /// The SNF of an SNF run (then `flow` is its `N(0, I)` prior and the optimiser steps the SNF's parameters).
    pub(crate) snf: Option<Snf>,
    pub(crate) iteration: u64,
    pub(crate) counters: Counters,
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
    /// Validates the config and builds a fresh run (flow initialised from the seed).
    pub fn new(config: TrainConfig) -> Result<Self, TrainError> {
        config.check()?;
        let target =
            config.target.build().map_err(|e| ConfigError { field: "target".into(), reason: e.to_string() })?;
        let mut flow = Flow::new(&config.flow.spec(), sub_seed(config.seed, &[purpose::INIT]))?;
        if !flow.actnorm_initialized() {
            let mut rng = stream_rng(sub_seed(config.seed, &[purpose::INIT]), 1);
            flow.initialize_data_dependent(&mut rng, ACTNORM_INIT_POINTS);
        }
        let ais = AisDriver::from_method(&config.method, flow.dim()).map_err(TrainError::Ais)?;
        let buffer = match &config.method {
            Method::FabAlpha2 { buffer: Some(b), .. } => Some(ReplayBuffer::new(flow.dim(), b.capacity, b.min_len)),
            _ => None,
        };
        let snf = match config.method.snf_spec(flow.dim()) {
            Some(spec) => Some(Snf::new(spec, sub_seed(config.seed, &[purpose::INIT, purpose::SNF_INIT]))?),
            None => None,
        };
        let optimizer = Adam::new(adam_config(&config));
        Ok(Self {
            config,
            target: Counted::new(target),
            flow,
            optimizer,
            ais,
            buffer,
            snf,
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
        self.snf.as_ref()
    }
    /// The target (with its evaluation counter).
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
    /// The AIS state (step sizes), for FAB runs.
    pub fn ais(&self) -> Option<&AisDriver> {
        self.ais.as_ref()
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

    /// Runs one iteration of the configured method.
    pub fn step(&mut self) -> Result<IterationReport, TrainError> {
        let _span = tracing::debug_span!("iteration", k = self.iteration).entered();
        let seed = sub_seed(self.config.seed, &[purpose::TRAIN, self.iteration]);
        let o = &self.config.optimizer;
        self.optimizer.config.lr = o.schedule.lr(o.lr, self.budget_progress());
        let dropped_before = self.counters.n_dropped_points;
        let mut report = match self.config.method.clone() {
            Method::ReverseKl => self.reverse_kl_step(seed),
            Method::MaximumLikelihood => self.max_likelihood_step(seed),
            Method::Snf { .. } => self.snf_step(seed),
            Method::Fab2021 { .. } => fab_2021_step(self, seed)?,
            Method::FabAlpha2 { buffer: None, .. } => fab_alpha2_step(self, seed)?,
            Method::FabAlpha2 { buffer: Some(b), .. } => {
                if !self.buffer.as_ref().is_some_and(ReplayBuffer::can_sample) {
                    fill_buffer(self)?;
                }
                fab_alpha2_buffer_step(self, seed, b.n_updates)?
            }
        };
        report.iteration = self.iteration;
        report.target_evaluations = self.target.counts().total();
        report.n_dropped = self.counters.n_dropped_points - dropped_before;
        self.iteration += 1;
        Ok(report)
    }

    /// Clips `grad` as configured and applies one optimiser step; counts skips. Returns the pre-clip norm.
    pub(crate) fn apply_gradient(&mut self, loss: f64, grad: &mut [f64]) -> f64 {
        if !loss.is_finite() {
            self.counters.n_skipped_non_finite_loss += 1;
            return f64::NAN;
        }
        let norm = fab_flow::grad_norm(grad);
        if !norm.is_finite() {
            self.counters.n_skipped_non_finite_grad += 1;
            return norm;
        }
        if let Some(max) = self.config.optimizer.max_grad_norm {
            clip_grad_norm(grad, max);
        }
        if let Some(max) = self.config.optimizer.max_grad_value {
            clip_grad_value(grad, max);
        }
        let params = match self.snf.as_mut() {
            Some(snf) => snf.params_mut(),
            None => self.flow.params_mut(),
        };
        match self.optimizer.step(params, grad) {
            StepOutcome::Applied => self.counters.n_steps_applied += 1,
            _ => self.counters.n_skipped_non_finite_grad += 1,
        }
        norm
    }

    /// Reverse KL `mean(log q(x) − log p̃(x))`, `x = T_θ(ε)`, by the pathwise gradient.
    fn reverse_kl_step(&mut self, seed: u64) -> IterationReport {
        let (n, dim) = (self.config.batch_size, self.flow.dim());
        let eps = standard_normal_batch(seed, n, dim);
        let (x, log_q) = self.flow.sample_from_noise(eps.view());
        let mut log_p = vec![0.0; n];
        let mut grad_log_p = Batch::zeros(n, dim);
        self.target.log_prob_and_grad_batch(x.view(), &mut log_p, grad_log_p.view_mut());
        let valid: Vec<bool> = (0..n)
            .map(|i| log_p[i].is_finite() && log_q[i].is_finite() && grad_log_p.row(i).iter().all(|g| g.is_finite()))
            .collect();
        let n_valid = valid.iter().filter(|v| **v).count();
        self.counters.n_dropped_points += (n - n_valid) as u64;
        let scale = 1.0 / n_valid.max(1) as f64;
        let mut grad_x = Batch::zeros(n, dim);
        let mut grad_log_q = vec![0.0; n];
        let mut loss = 0.0;
        for i in (0..n).filter(|&i| valid[i]) {
            loss += scale * (log_q[i] - log_p[i]);
            grad_log_q[i] = scale;
            grad_x.row_mut(i).iter_mut().zip(grad_log_p.row(i)).for_each(|(gx, gp)| *gx = -scale * gp);
        }
        if n_valid == 0 {
            loss = f64::NAN;
        }
        let mut grad = vec![0.0; self.flow.n_params()];
        self.flow.sample_grad_params(eps.view(), grad_x.view(), &grad_log_q, &mut grad);
        let grad_norm = self.apply_gradient(loss, &mut grad);
        let log_w = crate::metrics::log_weights(&log_p, &log_q);
        IterationReport {
            iteration: 0,
            loss,
            grad_norm,
            batch_ess: fab_core::numerics::ess_percent(&log_w).value,
            acceptance: Vec::new(),
            step_sizes: Vec::new(),
            target_evaluations: 0,
            n_dropped: 0,
        }
    }

    /// SNF reverse KL `mean(log q_SNF(x) − log p̃(x))` by the pathwise gradient (noise and accept decisions fixed).
    fn snf_step(&mut self, seed: u64) -> IterationReport {
        let snf = self.snf.as_ref().expect("SNF runs always have an SNF");
        let n = self.config.batch_size;
        let mut grad = vec![0.0; snf.n_params()];
        let batch = snf.reverse_kl_grad(&self.target, seed, n, &mut grad);
        self.counters.n_dropped_points += (n - batch.n_valid) as u64;
        let grad_norm = self.apply_gradient(batch.loss, &mut grad);
        IterationReport {
            iteration: 0,
            loss: batch.loss,
            grad_norm,
            batch_ess: fab_core::numerics::ess_percent(&batch.log_w).value,
            acceptance: batch.acceptance,
            step_sizes: Vec::new(),
            target_evaluations: 0,
            n_dropped: 0,
        }
    }

    /// Maximum likelihood `−mean log q(x)` on exact target samples (which FAB never gets).
    fn max_likelihood_step(&mut self, seed: u64) -> IterationReport {
        let n = self.config.batch_size;
        let mut rng = stream_rng(seed, 0);
        let x = self.target.inner().sample_exact(&mut rng, n);
        let mut grad = vec![0.0; self.flow.n_params()];
        let log_q = self.flow.log_q(x.view());
        let n_valid = log_q.iter().filter(|l| l.is_finite()).count();
        self.counters.n_dropped_points += (n - n_valid) as u64;
        let coeffs: Vec<f64> = log_q.iter().map(|l| if l.is_finite() { -1.0 / n_valid as f64 } else { 0.0 }).collect();
        self.flow.log_q_grad_params(x.view(), &coeffs, &mut grad);
        let loss =
            if n_valid == 0 { f64::NAN } else { -log_q.iter().filter(|l| l.is_finite()).sum::<f64>() / n_valid as f64 };
        let grad_norm = self.apply_gradient(loss, &mut grad);
        IterationReport {
            iteration: 0,
            loss,
            grad_norm,
            batch_ess: f64::NAN,
            acceptance: Vec::new(),
            step_sizes: Vec::new(),
            target_evaluations: 0,
            n_dropped: 0,
        }
    }

    /// Everything needed to continue this run, as checkpoint content.
    pub fn to_checkpoint(&self) -> Result<CheckpointData, TrainError> {
        let mut arrays = BTreeMap::new();
        let opt = self.optimizer.state();
        arrays.insert("optimizer.m".to_string(), opt.m.clone());
        arrays.insert("optimizer.v".to_string(), opt.v.clone());
        let mut blobs = BTreeMap::new();
        blobs.insert("flow.safetensors".to_string(), self.flow.to_safetensors_bytes()?);
        if let Some(snf) = &self.snf {
            arrays.insert("snf.params".to_string(), snf.params().to_vec());
        }
        if let Some(b) = &self.buffer {
            for (name, v) in b.arrays() {
                arrays.insert(format!("buffer.{name}"), v);
            }
        }
        let meta = serde_json::json!({
            "format": "fab-run-checkpoint-1",
            "config": self.config,
            "iteration": self.iteration,
            "counters": self.counters,
            "target_evaluations": self.target.counts(),
            "optimizer": { "t": opt.t, "skipped": opt.skipped },
            "ais": self.ais,
            "buffer": self.buffer.as_ref().map(ReplayBuffer::scalars),
        });
        Ok(CheckpointData { meta, arrays, blobs })
    }

    /// Restores a run from checkpoint content, refusing one whose config differs from `config` (other than the
    /// budget, which may be extended) or whose content is inconsistent. `path` names the file in errors.
    pub fn from_checkpoint(config: TrainConfig, data: &CheckpointData, path: &Path) -> Result<Self, TrainError> {
        let invalid = |reason: String| CheckpointError::Invalid { path: path.to_path_buf(), reason };
        let meta = &data.meta;
        if meta["format"] != "fab-run-checkpoint-1" {
            return Err(invalid("not a fab run checkpoint (missing format tag)".into()).into());
        }
        let stored: TrainConfig = serde_json::from_value(meta["config"].clone())
            .map_err(|e| invalid(format!("stored config unreadable: {e}")))?;
        let comparable = TrainConfig {
            budget: config.budget,
            eval: config.eval.clone(),
            checkpoint_every: config.checkpoint_every,
            ..stored.clone()
        };
        if comparable != config {
            return Err(invalid(format!(
                "checkpoint was written by run `{}` with a different config (only budget, eval and checkpoint_every may change on resume)",
                stored.name
            ))
            .into());
        }
        let mut run = Run::new(config)?;
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
        let flow = Flow::from_safetensors_bytes(flow_bytes)?;
        if flow.spec() != run.flow.spec() {
            return Err(invalid("stored flow architecture differs from the config's".into()).into());
        }
        run.flow = flow;
        let array =
            |name: &str| data.arrays.get(name).cloned().ok_or_else(|| invalid(format!("missing array `{name}`")));
        let opt = field("optimizer")?;
        let state = AdamState {
            m: array("optimizer.m")?,
            v: array("optimizer.v")?,
            t: opt["t"].as_u64().ok_or_else(|| invalid("optimizer.t".into()))?,
            skipped: opt["skipped"].as_u64().ok_or_else(|| invalid("optimizer.skipped".into()))?,
        };
        run.optimizer = Adam::from_state(adam_config(&run.config), state);
        if let Some(snf) = run.snf.as_mut() {
            snf.set_params(array("snf.params")?).map_err(|e| invalid(format!("snf: {e}")))?;
        }
        if run.ais.is_some() {
            run.ais = Some(serde_json::from_value(field("ais")?).map_err(|e| invalid(format!("ais: {e}")))?);
        }
        if let Some(b) = run.buffer.as_mut() {
            let scalars = serde_json::from_value(field("buffer")?).map_err(|e| invalid(format!("buffer: {e}")))?;
            let arrays: BTreeMap<String, Vec<f64>> = data
                .arrays
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("buffer.").map(|k| (k.to_string(), v.clone())))
                .collect();
            b.restore(scalars, arrays).map_err(|e| invalid(format!("buffer: {e}")))?;
        }
        Ok(run)
    }
}

/// `n × dim` standard-normal noise from the stream `(seed, 0)`.
pub(crate) fn standard_normal_batch(seed: u64, n: usize, dim: usize) -> Batch {
    let mut rng = stream_rng(seed, 0);
    let data = (0..n * dim).map(|_| StandardNormal.sample(&mut rng)).collect();
    Batch::from_vec(data, dim).expect("n × dim by construction")
}
