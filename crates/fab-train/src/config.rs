//! The experiment configuration read from RON files, and its validation before any work starts.
//!
//! Every field is checked by [`TrainConfig::check`]; an error names the field by its path in the file
//! (`method.ais.n_intermediate`) and says why, so the CLI can point at the line.

use crate::snf::SnfSpec;
use fab_ais::{AisConfig, CheckedAisConfig};
use fab_flow::{BaseSpec, FlowSpec, Math};
use fab_targets::{Target, TargetSpec};
use serde::{Deserialize, Serialize};

/// `Option<TargetSpec>` written as the bare spec when present, so `target: Mog5_2021` reads as `Some`.
pub(crate) mod bare_option {
    use fab_targets::TargetSpec;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<TargetSpec>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(spec) => spec.serialize(s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TargetSpec>, D::Error> {
        TargetSpec::deserialize(d).map(Some)
    }
}

/// The config of `examples/own_density.rs`: FAB α = 2 with the replay buffer on a 2-D density supplied from code
/// (it has no `target` field). A starting point for your own: parse it, then change fields.
pub const EXAMPLE_OWN_DENSITY: &str = include_str!("../examples/own_density.ron");

/// A whole training run: what to learn, with which flow, by which method, for how long, evaluated how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Short name used for run directories and reports.
    pub name: String,
    /// Seed of every random stream of the run (flow initialisation, AIS, evaluation).
    pub seed: u64,
    /// The built-in target; omitted when the caller supplies its own density ([`crate::Run::with_target`]).
    /// Written in RON as the bare spec (`target: Mog5_2021`).
    #[serde(default, with = "bare_option", skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
    /// The flow architecture.
    pub flow: FlowConfig,
    /// The training method and its settings.
    pub method: Method,
    /// Optimiser and gradient clipping.
    pub optimizer: OptimizerConfig,
    /// Points per iteration (AIS batch for FAB, flow samples for reverse KL, target samples for ML).
    pub batch_size: usize,
    /// When to stop.
    pub budget: Budget,
    /// Evaluation during and after training.
    pub eval: EvalConfig,
    /// Write a checkpoint every this many iterations (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: u64,
}

/// The flow: a paper preset or a full layer list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FlowConfig {
    /// 2021 RealNVP (SPEC §2a): `n_blocks × [coupling, ActNorm]` + global scale.
    RealNvp2021 {
        /// Dimension.
        dim: usize,
        /// Number of coupling blocks.
        n_blocks: usize,
        /// Hidden width of the one-hidden-layer conditioner.
        width: usize,
        /// Initial value of the learnable global scale.
        scale_init: f64,
        /// Numerics of the coupling scale maps ([`Math`]): `Vector` for fab-flow's vectorised kernels (about 10 %
        /// faster, ≤ 1 ulp from libm per kernel, so not the same bits). Omitted means `Libm`, the numerics of every
        /// recorded result, and `Libm` is not written out.
        #[serde(default, skip_serializing_if = "Math::is_libm")]
        math: Math,
    },
    /// ICLR RealNVP (SPEC §2b): `n_layers × [coupling, LU linear]` with a trainable Gaussian base.
    RealNvpIclr {
        /// Dimension.
        dim: usize,
        /// Number of coupling layers.
        n_layers: usize,
        /// Hidden width of the two-hidden-layer conditioner.
        width: usize,
        /// Numerics of the coupling scale maps, as in [`FlowConfig::RealNvp2021`].
        #[serde(default, skip_serializing_if = "Math::is_libm")]
        math: Math,
    },
    /// fab-jax's spline flow ([`FlowSpec::spline_fab_jax`]): `n_layers × [spline coupling, spline coupling,
    /// ActNorm]`, ReLU conditioners of widths `hidden`, `n_bins` bins on `[−bound, bound]`.
    SplineFabJax {
        /// Dimension.
        dim: usize,
        /// Number of layers (two couplings and an ActNorm each).
        n_layers: usize,
        /// Hidden widths of each conditioner.
        hidden: Vec<usize>,
        /// Half-width of the spline interval.
        bound: f64,
        /// Bins per spline.
        n_bins: usize,
        /// Numerics of the coupling scale maps, as in [`FlowConfig::RealNvp2021`].
        #[serde(default, skip_serializing_if = "Math::is_libm")]
        math: Math,
    },
    /// fab-jax's RealNVP ([`FlowSpec::realnvp_fab_jax`]): `n_layers ×` two affine couplings with scales bounded
    /// in (0.1, 10), ActNorm if `act_norm`.
    RealNvpFabJax {
        /// Dimension.
        dim: usize,
        /// Number of layers (two couplings each).
        n_layers: usize,
        /// Hidden widths of each conditioner.
        hidden: Vec<usize>,
        /// An ActNorm after each layer's couplings.
        act_norm: bool,
        /// Numerics of the coupling scale maps, as in [`FlowConfig::RealNvp2021`].
        #[serde(default, skip_serializing_if = "Math::is_libm")]
        math: Math,
    },
    /// Any architecture fab-flow can build.
    Custom(FlowSpec),
}

impl FlowConfig {
    /// The fab-flow architecture.
    pub fn spec(&self) -> FlowSpec {
        match self {
            Self::RealNvp2021 { dim, n_blocks, width, scale_init, math } => {
                FlowSpec::realnvp_2021(*dim, *n_blocks, *width, *scale_init).with_math(*math)
            }
            Self::RealNvpIclr { dim, n_layers, width, math } => {
                FlowSpec::realnvp_iclr(*dim, *n_layers, *width).with_math(*math)
            }
            Self::SplineFabJax { dim, n_layers, hidden, bound, n_bins, math } => {
                FlowSpec::spline_fab_jax(*dim, *n_layers, hidden.clone(), *bound, *n_bins).with_math(*math)
            }
            Self::RealNvpFabJax { dim, n_layers, hidden, act_norm, math } => {
                FlowSpec::realnvp_fab_jax(*dim, *n_layers, hidden.clone(), *act_norm).with_math(*math)
            }
            Self::Custom(spec) => spec.clone(),
        }
    }
}

/// How the flow is trained.
///
/// The FAB methods carry fab-ais's own [`AisConfig`] (`method.ais`), α included: FAB 2021 anneals to p (α = 1), FAB
/// α = 2 to p²/q (α = 2); [`TrainConfig::check`] refuses any other α for the method. Configs written before
/// 2026-12-02 in fab-train's former short AIS vocabulary are still read (see [`crate::legacy_config`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Method {
    /// FAB as in the 2021 paper: AIS to p, loss `logsumexp(log w̄ + log p − log q_θ)` (eq. 5).
    Fab2021 {
        /// AIS settings (α = 1).
        ais: AisConfig,
    },
    /// FAB with α = 2 (ICLR 2023): AIS to p²/q, loss `−Σ w̄ log q_θ`, optionally with the prioritised replay buffer.
    FabAlpha2 {
        /// AIS settings (α = 2).
        ais: AisConfig,
        /// Replay buffer; `None` for one gradient step per AIS batch.
        buffer: Option<BufferSettings>,
    },
    /// The flow alone, trained by reverse KL `E_q[log q − log p̃]` through the sampling path.
    ReverseKl,
    /// Maximum likelihood on exact target samples (an upper reference; needs samples FAB never sees).
    MaximumLikelihood,
    /// The 2021 SNF baseline (SPEC §5): RealNVP couplings interleaved with Metropolis layers, trained by reverse KL
    /// through the sampling path. The run's `flow` is the SNF's prior and must be `N(0, I)` (no layers, standard
    /// normal base); the SNF's own parameters live beside it (see [`crate::snf`]).
    Snf {
        /// Blocks of `{coupling, swap, coupling, swap}` (paper: 3, i.e. six couplings).
        n_blocks: usize,
        /// Width of both hidden layers of the shift and scale nets (paper: 64).
        hidden: usize,
        /// Metropolis steps per MC layer (paper: 20).
        n_mc_steps: usize,
        /// Standard deviation of the Gaussian proposal (paper: 0.25).
        proposal_std: f64,
    },
}

impl Method {
    /// A short name for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Fab2021 { .. } => "FAB (2021)",
            Self::FabAlpha2 { buffer: None, .. } => "FAB α=2",
            Self::FabAlpha2 { buffer: Some(_), .. } => "FAB α=2 + buffer",
            Self::ReverseKl => "flow w/ reverse KL",
            Self::MaximumLikelihood => "flow w/ ML",
            Self::Snf { .. } => "SNF w/ reverse KL",
        }
    }

    /// The AIS configuration of a FAB method (`None` for methods without AIS).
    pub fn ais(&self) -> Option<&AisConfig> {
        match self {
            Self::Fab2021 { ais } | Self::FabAlpha2 { ais, .. } => Some(ais),
            _ => None,
        }
    }

    /// The α the method's loss is derived for: 1 for FAB 2021 (AIS to p), 2 for FAB α = 2 (AIS to p²/q).
    pub fn required_alpha(&self) -> Option<f64> {
        match self {
            Self::Fab2021 { .. } => Some(1.0),
            Self::FabAlpha2 { .. } => Some(2.0),
            _ => None,
        }
    }

    /// The SNF architecture of an SNF method on `dim` dimensions (`None` for every other method).
    pub fn snf_spec(&self, dim: usize) -> Option<SnfSpec> {
        match self {
            Self::Snf { n_blocks, hidden, n_mc_steps, proposal_std } => Some(SnfSpec {
                dim,
                n_blocks: *n_blocks,
                hidden: *hidden,
                n_mc_steps: *n_mc_steps,
                proposal_std: *proposal_std,
            }),
            _ => None,
        }
    }
}

/// The prioritised replay buffer (SPEC §4c).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSettings {
    /// Maximum number of stored points.
    pub capacity: usize,
    /// Points to collect before training starts.
    pub min_len: usize,
    /// Gradient steps per AIS batch (each on `batch_size` points drawn without replacement).
    pub n_updates: usize,
    /// fab-jax's `w_adjust_clip`: cap the loss weight `q_old/q` of a buffer point at this value (fab-jax: 10);
    /// `None`: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w_adjust_clip: Option<f64>,
}

/// Optimiser and clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay; decoupled (AdamW) when `decoupled` is true, else an L2 term (Adam).
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW rather than Adam.
    #[serde(default)]
    pub decoupled: bool,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
    /// Then clip every gradient entry to ± this value.
    #[serde(default)]
    pub max_grad_value: Option<f64>,
    /// How the learning rate changes over the budget (default: constant).
    #[serde(default)]
    pub schedule: LrSchedule,
    /// fab-jax's dynamic gradient ignore/clip rule ([`crate::grad_guard`]), applied before the clips above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_guard: Option<crate::grad_guard::GradGuardConfig>,
}

/// Learning rate as a function of the fraction of the budget spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub enum LrSchedule {
    /// `lr` throughout (the papers' runs).
    #[default]
    Constant,
    /// Half a cosine from `lr` down to `final_fraction · lr` at the end of the budget: late iterations refine
    /// instead of jittering at the noise floor of a constant rate.
    Cosine {
        /// The rate at the end of the budget, as a fraction of `lr` (in [0, 1]).
        final_fraction: f64,
    },
    /// fab-jax's (optax's `warmup_cosine_decay_schedule`, [`crate::lr::warmup_cosine`]): linear warm-up from
    /// `initial_fraction · lr` to `lr` over the first `warmup_fraction` of the budget, then half a cosine down to
    /// `final_fraction · lr` at its end (all fractions in [0, 1]).
    WarmupCosine {
        /// Starting rate as a fraction of `lr` (fab-jax: 0.1).
        initial_fraction: f64,
        /// Fraction of the budget spent warming up (fab-jax: 10 iterations of 2000 = 0.005).
        warmup_fraction: f64,
        /// Final rate as a fraction of `lr` (fab-jax: 0).
        final_fraction: f64,
    },
}

impl LrSchedule {
    /// The learning rate after `progress` ∈ [0, 1] of the budget (values outside are clamped).
    pub fn lr(&self, lr: f64, progress: f64) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { final_fraction } => {
                let t = progress.clamp(0.0, 1.0);
                let floor = final_fraction * lr;
                floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            LrSchedule::WarmupCosine { initial_fraction, warmup_fraction, final_fraction } => {
                crate::lr::warmup_cosine(lr, progress, initial_fraction, warmup_fraction, final_fraction)
            }
        }
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Budget {
    /// A number of iterations.
    Iterations(u64),
    /// A number of target-density evaluations (points, with or without gradient), counted exactly.
    TargetEvaluations(u64),
}

/// What to evaluate and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many iterations (0: only at the end).
    #[serde(default)]
    pub every: u64,
    /// Flow samples for the flow ESS and log Z metrics during training.
    pub n_samples: usize,
    /// Flow (and AIS) samples for the final report's ESS (the papers use 10⁵ – 10⁶).
    pub n_samples_final: usize,
    /// Exact target samples for mean log q and forward ESS.
    pub n_target_samples: usize,
    /// Groups × group size for the expectation bias/std (the 2021 paper: 100 × 1000).
    #[serde(default = "default_expectation_groups")]
    pub expectation_groups: (usize, usize),
}

fn default_expectation_groups() -> (usize, usize) {
    (100, 1000)
}

/// A configuration value that is out of range or inconsistent, named by its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct ConfigError {
    /// Path of the field, e.g. `method.ais.n_intermediate`.
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

/// issue 15 (item 6): [`fab_flow::LayerSpec::n_params`] without overflow, for configs with absurd widths.
fn layer_params_saturating(layer: &fab_flow::LayerSpec, dim: usize) -> usize {
    match layer {
        fab_flow::LayerSpec::Coupling(c) => c
            .mlp_sizes()
            .windows(2)
            .fold(0usize, |a, w| a.saturating_add(w[0].saturating_mul(w[1]).saturating_add(w[1]))),
        fab_flow::LayerSpec::LuLinear => dim.saturating_mul(dim).saturating_mul(2).saturating_add(dim),
        fab_flow::LayerSpec::ActNorm => dim.saturating_mul(2),
        _ => 1,
    }
}

fn bad(field: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError { field: field.to_string(), reason: reason.into() })
}

fn positive(field: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { bad(field, format!("must be a positive finite number, got {v}")) }
}

fn at_least_one(field: &str, v: usize) -> Result<(), ConfigError> {
    if v >= 1 { Ok(()) } else { bad(field, "must be at least 1") }
}

impl TrainConfig {
    /// Parses RON config text without checking its values. Text in the format written before 2026-12-02 (fab-train's
    /// short AIS vocabulary, [`crate::legacy_config`]) is read too; if neither format reads, the error (with its
    /// span) is that of the format that read further.
    pub fn from_ron(text: &str) -> Result<Self, ron::error::SpannedError> {
        ron::Options::default().from_str::<Self>(text).or_else(|current| {
            // When neither format reads, the one that got further is the file's format, so its error is the
            // user's mistake (an old file with a typo is told about the typo, not about the new AIS fields).
            crate::legacy_config::from_ron(text).map_err(|old| {
                let (c, o) = (current.span.start, old.span.start);
                if (o.line, o.col) > (c.line, c.col) { old } else { current }
            })
        })
    }

    /// Reads the JSON copy of a config that checkpoints store (old format included, as [`TrainConfig::from_ron`]).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value).or_else(|e| crate::legacy_config::from_json(value).ok_or(e))
    }

    /// The config as pretty RON in the current format (what run directories store as `config.ron`).
    pub fn to_ron(&self) -> Result<String, ron::Error> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
    }

    /// The memory check of [`TrainConfig::check`] alone: refuses a config whose evaluation or training arrays
    /// would not fit in the machine's available memory (e.g. after raising `eval.n_samples_final`).
    pub fn check_memory(&self) -> Result<(), ConfigError> {
        crate::limits::check_memory(&self.memory_needs(&self.flow.spec()), crate::limits::available_memory_bytes())
    }

    /// Validates every field against the config's built-in target (built here, once) before any work starts.
    pub fn check(self) -> Result<CheckedTrainConfig, ConfigError> {
        let Some(spec) = &self.target else {
            return Err(ConfigError {
                field: "target".into(),
                reason: "missing: name a built-in target, or supply a density from code (Run::with_target)".into(),
            });
        };
        if let TargetSpec::ManyWell { dim } | TargetSpec::Funnel { dim } = spec {
            crate::limits::check_at_most("target.dim", *dim, crate::limits::MAX_DIM)?;
        }
        let target = spec.build().map_err(|e| ConfigError { field: "target".into(), reason: e.to_string() })?;
        self.check_with_target(target)
    }

    /// Validates every field against a caller-supplied target (the config's own `target`, if any, is ignored).
    pub fn check_with_target(self, target: Box<dyn Target>) -> Result<CheckedTrainConfig, ConfigError> {
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            bad("name", "must be non-empty and contain no path separators")?;
        }
        // Bounds that run before anything sized by the config is built.
        crate::limits::check_name(&self.name)?;
        crate::limits::check_at_most("target.dim", target.dim(), crate::limits::MAX_DIM)?;
        self.check_limits_before_building()?;
        let flow = self.flow.spec();
        flow.validate().map_err(|e| ConfigError { field: "flow".into(), reason: e.to_string() })?;
        if flow.dim != target.dim() {
            bad("flow", format!("flow dimension {} differs from the target's {}", flow.dim, target.dim()))?;
        }
        at_least_one("batch_size", self.batch_size)?;
        match self.budget {
            Budget::Iterations(0) | Budget::TargetEvaluations(0) => bad("budget", "must be positive")?,
            _ => {}
        }
        self.check_method()?;
        if matches!(self.method, Method::MaximumLikelihood) && target.exact_sampler().is_none() {
            bad(
                "method",
                "MaximumLikelihood trains on exact target samples, and this target declares no exact sampler",
            )?;
        }
        self.check_optimizer()?;
        at_least_one("eval.n_samples", self.eval.n_samples)?;
        at_least_one("eval.n_samples_final", self.eval.n_samples_final)?;
        at_least_one("eval.n_target_samples", self.eval.n_target_samples)?;
        let (groups, size) = self.eval.expectation_groups;
        at_least_one("eval.expectation_groups", groups.min(size))?;
        let ais = self.check_ais()?;
        // Refuse a config that cannot fit in the machine's memory.
        crate::limits::check_memory(&self.memory_needs(&flow), crate::limits::available_memory_bytes())?;
        Ok(CheckedTrainConfig { config: self, flow, ais, target })
    }

    /// issue 15 (items 6, 8): shape bounds checked before the target and the flow's layer list are built, and
    /// bounds on counts that only cost time.
    fn check_limits_before_building(&self) -> Result<(), ConfigError> {
        use crate::limits::{
            MAX_DIM, MAX_LAYERS, MAX_MCMC_STEPS, MAX_N_INTERMEDIATE, MAX_N_UPDATES, MAX_WIDTH, check_at_most,
            check_flow_preset, check_lr,
        };
        match &self.flow {
            FlowConfig::RealNvp2021 { dim, n_blocks, width, .. } => {
                check_flow_preset("flow.n_blocks", *dim, *n_blocks, *width)?
            }
            FlowConfig::RealNvpIclr { dim, n_layers, width, .. } => {
                check_flow_preset("flow.n_layers", *dim, *n_layers, *width)?
            }
            FlowConfig::SplineFabJax { dim, n_layers, hidden, .. }
            | FlowConfig::RealNvpFabJax { dim, n_layers, hidden, .. } => {
                check_flow_preset("flow.n_layers", *dim, *n_layers, hidden.iter().copied().max().unwrap_or(0))?
            }
            FlowConfig::Custom(spec) => check_at_most("flow.dim", spec.dim, MAX_DIM)?,
        }
        check_lr("optimizer.lr", self.optimizer.lr)?;
        let ais = match &self.method {
            Method::Fab2021 { ais } => Some(ais),
            Method::FabAlpha2 { ais, buffer } => {
                if let Some(b) = buffer {
                    check_at_most("method.buffer.n_updates", b.n_updates, MAX_N_UPDATES)?;
                }
                Some(ais)
            }
            Method::Snf { n_blocks, hidden, n_mc_steps, .. } => {
                check_at_most("method.n_blocks", *n_blocks, MAX_LAYERS)?;
                check_at_most("method.hidden", *hidden, MAX_WIDTH)?;
                check_at_most("method.n_mc_steps", *n_mc_steps, MAX_MCMC_STEPS)?;
                None
            }
            _ => None,
        };
        if let Some(ais) = ais {
            check_at_most("method.ais.n_intermediate", ais.n_intermediate, MAX_N_INTERMEDIATE)?;
            check_at_most("method.ais.transitions_per_beta", ais.transitions_per_beta, MAX_MCMC_STEPS)?;
            match &ais.transition {
                fab_ais::Transition::Hmc(hmc) => {
                    check_at_most("method.ais.transition.n_leapfrog", hmc.n_leapfrog, MAX_MCMC_STEPS)?
                }
                // NUTS bounds its own tree depth (1..=30) when it starts.
                fab_ais::Transition::Nuts(_) | fab_ais::Transition::Metropolis => {}
            }
        }
        Ok(())
    }

    /// issue 15 (item 6): the plain numbers of [`crate::limits::MemoryNeeds`] for this config and flow `spec`.
    fn memory_needs(&self, spec: &FlowSpec) -> crate::limits::MemoryNeeds {
        let couplings = spec.layers.iter().filter_map(|l| match l {
            fab_flow::LayerSpec::Coupling(c) => Some(c.hidden.iter().fold(0usize, |a, &h| a.saturating_add(h))),
            _ => None,
        });
        let (snf_layers, snf_hidden) = match &self.method {
            Method::Snf { n_blocks, hidden, .. } => (n_blocks.saturating_mul(4), hidden.saturating_mul(2)),
            _ => (0, 0),
        };
        let (groups, size) = self.eval.expectation_groups;
        crate::limits::MemoryNeeds {
            dim: spec.dim,
            n_params: spec.layers.iter().fold(0usize, |a, l| a.saturating_add(layer_params_saturating(l, spec.dim))),
            n_layers: spec.layers.len().saturating_add(snf_layers),
            hidden_per_layer: couplings.max().unwrap_or(0).max(snf_hidden),
            batch_size: self.batch_size,
            n_samples: self.eval.n_samples,
            n_samples_final: self.eval.n_samples_final,
            n_target_samples: self.eval.n_target_samples,
            expectation_points: groups.saturating_mul(size),
            buffer_capacity: match &self.method {
                Method::FabAlpha2 { buffer: Some(b), .. } => b.capacity,
                _ => 0,
            },
        }
    }

    fn check_method(&self) -> Result<(), ConfigError> {
        match &self.method {
            Method::FabAlpha2 { buffer: Some(b), .. } => {
                at_least_one("method.buffer.capacity", b.capacity)?;
                at_least_one("method.buffer.n_updates", b.n_updates)?;
                if b.min_len > b.capacity {
                    bad("method.buffer.min_len", format!("{} exceeds capacity {}", b.min_len, b.capacity))?;
                }
                if b.min_len < self.batch_size {
                    bad("method.buffer.min_len", format!("must be at least batch_size ({})", self.batch_size))?;
                }
                if let Some(c) = b.w_adjust_clip {
                    positive("method.buffer.w_adjust_clip", c)?;
                }
                Ok(())
            }
            Method::Snf { .. } => self.check_snf(),
            _ => Ok(()),
        }
    }

    /// The method's AIS configuration checked by fab-ais (errors under `method.ais.…`), with the α its loss needs.
    fn check_ais(&self) -> Result<Option<CheckedAisConfig>, ConfigError> {
        let (Some(ais), Some(alpha)) = (self.method.ais(), self.method.required_alpha()) else { return Ok(None) };
        if ais.alpha != alpha {
            let annealed_to = if alpha == 1.0 { "p" } else { "p²/q" };
            bad(
                "method.ais.alpha",
                format!("{} anneals to {annealed_to}, i.e. alpha: {alpha:?}; got {}", self.method.label(), ais.alpha),
            )?;
        }
        let checked =
            ais.check().map_err(|e| ConfigError { field: format!("method.ais.{}", e.field), reason: e.reason })?;
        Ok(Some(checked))
    }

    fn check_snf(&self) -> Result<(), ConfigError> {
        let Method::Snf { n_blocks, hidden, n_mc_steps, proposal_std } = &self.method else { return Ok(()) };
        at_least_one("method.n_blocks", *n_blocks)?;
        at_least_one("method.hidden", *hidden)?;
        at_least_one("method.n_mc_steps", *n_mc_steps)?;
        positive("method.proposal_std", *proposal_std)?;
        let spec = self.flow.spec();
        if !spec.layers.is_empty() || spec.base != BaseSpec::StandardNormal {
            bad("flow", "an SNF run's flow is the SNF's prior: it must have no layers and a StandardNormal base")?;
        }
        if !spec.dim.is_multiple_of(2) {
            bad("flow", format!("the SNF couplings split the vector in halves: dimension {} must be even", spec.dim))?;
        }
        Ok(())
    }

    fn check_optimizer(&self) -> Result<(), ConfigError> {
        let o = &self.optimizer;
        positive("optimizer.lr", o.lr)?;
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            bad("optimizer.weight_decay", format!("must be finite and ≥ 0, got {}", o.weight_decay))?;
        }
        if let Some(v) = o.max_grad_norm {
            positive("optimizer.max_grad_norm", v)?;
        }
        if let Some(v) = o.max_grad_value {
            positive("optimizer.max_grad_value", v)?;
        }
        if let LrSchedule::Cosine { final_fraction } = o.schedule
            && !(0.0..=1.0).contains(&final_fraction)
        {
            bad("optimizer.schedule.final_fraction", format!("must be in [0, 1], got {final_fraction}"))?;
        }
        if let LrSchedule::WarmupCosine { initial_fraction, warmup_fraction, final_fraction } = o.schedule {
            for (field, v) in [
                ("optimizer.schedule.initial_fraction", initial_fraction),
                ("optimizer.schedule.warmup_fraction", warmup_fraction),
                ("optimizer.schedule.final_fraction", final_fraction),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    bad(field, format!("must be in [0, 1], got {v}"))?;
                }
            }
        }
        if let Some(Err(e)) = o.grad_guard.map(|g| g.check()) {
            bad(&format!("optimizer.grad_guard.{}", e.field), e.reason)?;
        }
        Ok(())
    }
}

/// A configuration checked once against its target: what a [`crate::Run`] is built from.
pub struct CheckedTrainConfig {
    config: TrainConfig,
    flow: FlowSpec,
    ais: Option<CheckedAisConfig>,
    target: Box<dyn Target>,
}

impl CheckedTrainConfig {
    /// The configuration as given.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    /// The flow architecture.
    pub fn flow_spec(&self) -> &FlowSpec {
        &self.flow
    }
    /// The checked AIS configuration of a FAB method.
    pub fn ais(&self) -> Option<&CheckedAisConfig> {
        self.ais.as_ref()
    }
    /// The target the config was checked against.
    pub fn target(&self) -> &dyn Target {
        self.target.as_ref()
    }
    /// The parts, for building a run.
    pub(crate) fn into_parts(self) -> (TrainConfig, FlowSpec, Option<CheckedAisConfig>, Box<dyn Target>) {
        (self.config, self.flow, self.ais, self.target)
    }
}

impl std::fmt::Debug for CheckedTrainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedTrainConfig").field("config", &self.config).field("target", &self.target.name()).finish()
    }
}
