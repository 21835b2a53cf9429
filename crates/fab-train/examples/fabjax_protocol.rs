//! fab-jax's log Z protocol on a finished run directory (issue 13), and the shrunk configs of its quick check.
//!
//! `fabjax_protocol <run-dir> [--threads N] [--batches B] [--batch-size M]`: MAE of log Z over B (10) batches of
//! M (2000) AIS samples targeting p with the run's flow and adapted transitions, and the equal-budget
//! SMC-from-base baseline; writes `protocol.json` into the run directory.
//!
//! `fabjax_protocol --shrink <config.ron> <out.ron>`: the config with a CI-sized batch and buffer (same flow,
//! method, transitions and options), for `cargo xtask reproduce --quick`.
//!
//! Driven by `cargo xtask reproduce --only fabjax`.

use fab_ais::{AisConfig, BetaSchedule, Resampling, Smc, SmcSchedule, SmcSettings};
use fab_core::sub_seed;
use fab_targets::DiagGaussian;
use fab_train::config::{Budget, Method};
use fab_train::protocol::{LogZProtocol, evaluations_per_transition, intermediates_within_budget, run_log_z_protocol};
use fab_train::{Run, TrainConfig};
use serde_json::{Value, json};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Seed-path tags of the two protocols (apart from every training stream).
const TAG_FAB: u64 = 0xFAB_1A7;
const TAG_BASELINE: u64 = 0xBA5E;
/// Resample the baseline's particles when their ESS falls below this fraction (fab-jax's threshold).
const BASELINE_ESS_THRESHOLD: f64 = 0.3;
/// The quick check's batch cap, and its buffer in batches (fab-jax: 400 / 40).
const QUICK_BATCH: usize = 128;
const QUICK_BUFFER_BATCHES: (usize, usize) = (20, 4);

type Res<T> = Result<T, Box<dyn Error>>;

fn read_config(path: &Path) -> Res<TrainConfig> {
    let text = std::fs::read_to_string(path)?;
    Ok(ron::Options::default().from_str(&text)?)
}

fn load_run(dir: &Path) -> Res<Run> {
    let ckpt = dir.join("checkpoint.fab");
    let data = fab_train::checkpoint::load(&ckpt)?;
    Ok(Run::from_checkpoint(read_config(&dir.join("config.ron"))?, &data, &ckpt)?)
}

/// The value after `flag`, parsed, or `default`.
fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> Res<T>
where
    T::Err: Error + 'static,
{
    match args.iter().position(|a| a == flag) {
        Some(i) => Ok(args.get(i + 1).ok_or_else(|| format!("{flag} needs a value"))?.parse()?),
        None => Ok(default),
    }
}

/// `config` with at most [`QUICK_BATCH`] points per iteration, a buffer of [`QUICK_BUFFER_BATCHES`] batches and
/// small evaluations; everything else as given.
fn shrink(mut config: TrainConfig) -> TrainConfig {
    config.batch_size = config.batch_size.min(QUICK_BATCH);
    if let Method::FabAlpha2 { buffer: Some(b), .. } = &mut config.method {
        // The buffer must hold the `n_updates` distinct batches one iteration draws before training starts.
        let min_batches = QUICK_BUFFER_BATCHES.1.max(b.n_updates);
        b.capacity = QUICK_BUFFER_BATCHES.0.max(min_batches) * config.batch_size;
        b.min_len = min_batches * config.batch_size;
    }
    config.eval.every = 0;
    config.eval.n_samples = 500;
    config.eval.n_samples_final = 2000;
    config.eval.n_target_samples = 1000;
    config.eval.expectation_groups = (10, 100);
    config.budget = Budget::Iterations(5);
    config.checkpoint_every = 0;
    config
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--shrink") {
        let [_, input, output] = &args[..] else {
            return Err("usage: fabjax_protocol --shrink <in.ron> <out.ron>".into());
        };
        let shrunk = shrink(read_config(Path::new(input))?);
        let text = ron::ser::to_string_pretty(&shrunk, ron::ser::PrettyConfig::default())?;
        std::fs::write(output, text)?;
        return Ok(());
    }
    let dir = PathBuf::from(args.first().ok_or("usage: fabjax_protocol <run-dir> [--threads N]")?);
    let threads: usize = arg(&args, "--threads", 0)?;
    if threads > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    }
    let defaults = LogZProtocol::default();
    let protocol = LogZProtocol {
        n_batches: arg(&args, "--batches", defaults.n_batches)?,
        batch_size: arg(&args, "--batch-size", defaults.batch_size)?,
    };
    let out = measure(&dir, protocol)?;
    let text = serde_json::to_string_pretty(&out)?;
    std::fs::write(dir.join("protocol.json"), &text)?;
    println!("{text}");
    Ok(())
}

/// The protocol and the baseline on the run in `dir`, as the JSON of `protocol.json`.
fn measure(dir: &Path, protocol: LogZProtocol) -> Res<Value> {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json"))?)?;
    let counts = &report["target_evaluations"];
    let training_evaluations =
        counts["n_log_prob"].as_u64().unwrap_or(0) + counts["n_log_prob_and_grad"].as_u64().unwrap_or(0);
    let run = load_run(dir)?;
    let target = run.target();
    let truth = target.log_z().ok_or("the target has no known log Z")?;
    let ais = run.ais().ok_or("the run method has no AIS")?;
    let seed = run.config().seed;

    // FAB: AIS towards p from the trained flow with the adapted, frozen step sizes (plain AIS even if training
    // used SMC: fab-jax's protocol).
    let started = Instant::now();
    let mut smc = Smc::new(ais.config().clone(), SmcSettings::ais())?;
    smc.restore_adaptation(ais.adaptation().clone())?;
    let fab = run_log_z_protocol(&mut smc, run.flow(), target, truth, protocol, sub_seed(seed, &[TAG_FAB]), false)?;
    let fab_wall = started.elapsed().as_secs_f64();

    // Baseline: SMC from N(0, I) with the same kernel; each estimate gets 1/n_batches of FAB's total evaluations.
    let started = Instant::now();
    let budget = (training_evaluations + fab.target_evaluations) / protocol.n_batches as u64;
    let cfg = AisConfig { smc: None, ..ais.config().config().clone() };
    let per_transition = evaluations_per_transition(&cfg.transition).ok_or("NUTS has no fixed cost per step")?;
    let k = intermediates_within_budget(
        budget,
        protocol.batch_size as u64,
        per_transition,
        cfg.transitions_per_beta as u64,
    )
    .ok_or("the budget does not cover one draw per particle")?;
    let base_config = AisConfig { n_intermediate: k, schedule: BetaSchedule::Geometric, alpha: 1.0, ..cfg };
    let settings = SmcSettings {
        schedule: SmcSchedule::Fixed,
        resampling: Resampling::Systematic { ess_threshold: BASELINE_ESS_THRESHOLD },
    };
    let mut baseline_smc = Smc::new(base_config.check()?, settings)?;
    let base = DiagGaussian::standard(target.dim());
    let baseline =
        run_log_z_protocol(&mut baseline_smc, &base, target, truth, protocol, sub_seed(seed, &[TAG_BASELINE]), true)?;
    let baseline_wall = started.elapsed().as_secs_f64();

    Ok(json!({
        "name": run.config().name,
        "seed": seed,
        "iteration": run.iteration(),
        "truth": truth,
        "training_target_evaluations": training_evaluations,
        "training_wall_s": report["train_seconds"],
        "training_threads": report["threads"],
        "flow_ess": report["eval"]["flow_ess"],
        "ais_ess": report["eval"]["ais_ess"],
        "counters": run.counters(),
        "protocol": protocol,
        "fab": fab,
        "fab_wall_s": fab_wall,
        "baseline": baseline,
        "baseline_n_intermediate": k,
        "baseline_budget_per_estimate": budget,
        "baseline_wall_s": baseline_wall,
    }))
}
