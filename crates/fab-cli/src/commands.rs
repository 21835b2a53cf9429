//! The subcommands: `train`, `eval`, `sample`, `plot`.

use crate::config_file::{self, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};
use crate::plot::{Panel, render_grid};
use crate::run_dir::{
    CHECKPOINT_FILE, CONFIG_FILE, Clock, Created, DirLock, FLOW_FILE, MetricsSummary, REPORT_JSON, REPORT_MD, RunDir,
};
use crate::signals::{self, Interrupted};
use anyhow::{Context, bail};
use clap::Args;
use fab_core::{Proposal, stream_rng};
use fab_targets::{TargetSpec, double_well_log_density};
use fab_train::report::{GENERAL_HEADER, TABLE1_HEADER, TABLE2_HEADER, general_row, table1_row, table2_row};
use fab_train::{Detail, EvalReport, Run, TrainConfig, evaluate};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray_npy::WriteNpyExt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `fab train`.
#[derive(Args)]
pub struct TrainArgs {
    /// RON config; default: FAB on the 2021 mixture of Gaussians.
    config: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its own config is used).
    #[arg(long, conflicts_with = "config")]
    resume: Option<PathBuf>,
    /// Override the config's seed.
    #[arg(long, conflicts_with = "resume")]
    seed: Option<u64>,
    /// Directory that holds run directories (a resumed run stays where it is).
    #[arg(long, default_value_os_t = crate::default_runs_dir(), conflicts_with = "resume")]
    out: PathBuf,
    /// Override the iteration budget (e.g. for a quick look).
    #[arg(long)]
    iterations: Option<u64>,
    /// Override the final evaluation's sample count.
    #[arg(long, value_parser = at_least_one())]
    final_samples: Option<usize>,
    /// Start over if the run directory already holds a run.
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Arguments of `fab eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// A run directory or a checkpoint file.
    run: PathBuf,
    /// Flow (and AIS) samples; default: the config's `eval.n_samples_final`.
    #[arg(long, short, value_parser = at_least_one())]
    n: Option<usize>,
}

/// Arguments of `fab sample`.
#[derive(Args)]
pub struct SampleArgs {
    /// A run directory or a checkpoint file.
    run: PathBuf,
    /// Number of samples.
    #[arg(short, long, default_value_t = 1000, value_parser = at_least_one())]
    n: usize,
    /// Output .npy file: an `n × (dim + 2)` float64 array, columns `x_1..x_dim, log q, log w` (`log w = log p̃ − log q`).
    #[arg(long)]
    out: PathBuf,
    /// Move the flow samples with AIS to p (FAB runs); `log w` are then the AIS weights and `log q` is NaN.
    #[arg(long)]
    ais: bool,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Arguments of `fab plot`.
#[derive(Args)]
pub struct PlotArgs {
    /// Run directories (or checkpoints) whose flows are drawn, one panel row or column each.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output PNG.
    #[arg(long, default_value = "figure.png")]
    out: PathBuf,
    /// Samples per model.
    #[arg(short, long, default_value_t = 1000, value_parser = at_least_one())]
    n: usize,
}

/// A count of at least 1 (`-n 0` is refused by the parser, with the option named).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// Refuses a sample count whose memory does not fit, like the config field it stands in for.
fn check_sample_count(run: &Run, option: &str, n: usize) -> anyhow::Result<()> {
    let mut config = run.config().clone();
    config.eval.n_samples_final = n;
    config.check_memory().map_err(|e| anyhow::anyhow!("{option} {n}: {}", e.reason))
}

/// The config named on the command line (or the built-in default), parsed but not yet checked, with its text and
/// the name its errors show.
fn load_config_arg(path: Option<&Path>) -> anyhow::Result<(TrainConfig, String, String)> {
    match path {
        Some(p) => {
            let (config, text) = config_file::load_unchecked(p)?;
            Ok((config, text, p.display().to_string()))
        }
        None => Ok((
            config_file::parse_unchecked(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME)?,
            DEFAULT_CONFIG.to_string(),
            DEFAULT_CONFIG_NAME.to_string(),
        )),
    }
}

/// Loads a run from a run directory (its checkpoint, else its final `flow.safetensors`) or a checkpoint file.
pub fn load_run(path: &Path) -> anyhow::Result<Run> {
    if path.is_dir() && !path.join(CHECKPOINT_FILE).exists() {
        if path.join(FLOW_FILE).exists() {
            return run_from_flow_file(path);
        }
        bail!(
            "{}: holds neither {CHECKPOINT_FILE} nor {FLOW_FILE} (not a run directory, or a run that never wrote a \
             checkpoint)",
            path.display()
        );
    }
    let (dir, ckpt) = if path.is_dir() {
        (path.to_path_buf(), path.join(CHECKPOINT_FILE))
    } else {
        (path.parent().map(Path::to_path_buf).unwrap_or_default(), path.to_path_buf())
    };
    let data = load_checkpoint(&ckpt)?;
    let config = run_config(&dir, &data, &ckpt)?;
    Ok(Run::from_checkpoint(config, &data, &ckpt)?)
}

/// Reads a checkpoint (its checksum verified); `Run::from_checkpoint` checks its content against the config.
fn load_checkpoint(ckpt: &Path) -> anyhow::Result<fab_train::checkpoint::CheckpointData<'static>> {
    Ok(fab_train::checkpoint::load(ckpt)?)
}

/// The config of the run in `dir`: its `config.ron`, else the copy inside the checkpoint `data` (read from `ckpt`).
fn run_config(
    dir: &Path,
    data: &fab_train::checkpoint::CheckpointData<'_>,
    ckpt: &Path,
) -> anyhow::Result<TrainConfig> {
    match std::fs::read_to_string(dir.join(CONFIG_FILE)) {
        Ok(text) => config_file::parse_unchecked(&text, &dir.join(CONFIG_FILE).display().to_string()),
        Err(_) => TrainConfig::from_json(&data.meta["config"])
            .with_context(|| format!("{}: no config.ron beside it and none inside", ckpt.display())),
    }
}

/// A finished run whose checkpoint was left out (`results/` keeps only the flow of runs whose checkpoint holds a
/// replay buffer): its config and final flow, at the iteration `report.json` gives. AIS then starts from the
/// configured step sizes, not the adapted ones, so AIS metrics may differ from the run's own report.
fn run_from_flow_file(dir: &Path) -> anyhow::Result<Run> {
    let flow_path = dir.join(FLOW_FILE);
    let (config, _) = config_file::load_unchecked(&dir.join(CONFIG_FILE))?;
    if config.method.snf_spec(2).is_some() {
        bail!(
            "{}: an SNF run's flow file holds only its N(0, I) prior; the SNF itself lives in {CHECKPOINT_FILE}, \
             which is missing",
            flow_path.display()
        );
    }
    let bytes = std::fs::read(&flow_path).with_context(|| format!("cannot read {}", flow_path.display()))?;
    let flow = fab_flow::Flow::from_safetensors_bytes(&bytes)
        .with_context(|| format!("{}: not a readable flow", flow_path.display()))?;
    if *flow.spec() != config.flow.spec() {
        bail!("{}: the flow does not have the architecture of {}", flow_path.display(), CONFIG_FILE);
    }
    let iteration = std::fs::read_to_string(dir.join(REPORT_JSON))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["iterations"].as_u64())
        .unwrap_or(0);
    let fresh = Run::new(config.clone())?;
    let mut data = fresh.to_checkpoint()?;
    data.blobs.insert("flow.safetensors".into(), bytes);
    data.meta["iteration"] = iteration.into();
    if config.method.label().starts_with("FAB") {
        eprintln!(
            "note: {} has no {CHECKPOINT_FILE}: using {FLOW_FILE}; AIS starts from the configured step sizes",
            dir.display()
        );
    }
    Ok(Run::from_checkpoint(config, &data, &flow_path)?)
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

/// Without a visible progress bar (no terminal, or `--quiet`), a plain progress line is logged at most this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// The run, its open directory and the times already spent in earlier sessions.
struct Session {
    run: Run,
    dir: RunDir,
    before: MetricsSummary,
}

/// Wall and training time of the whole run: earlier sessions plus this one, evaluations excluded from training.
struct RunClock {
    started: Instant,
    elapsed_before: f64,
    train_before: f64,
    eval_seconds: f64,
}

impl RunClock {
    fn now(&self) -> Clock {
        let session = self.started.elapsed().as_secs_f64();
        Clock { elapsed_s: self.elapsed_before + session, train_s: self.train_before + session - self.eval_seconds }
    }
}

/// `fab train`.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let Session { mut run, mut dir, before } = match &args.resume {
        Some(path) => resume_session(path, &args)?,
        None => new_session(&args)?,
    };
    signals::install()?;
    let mut clock =
        RunClock { started, elapsed_before: before.elapsed_s, train_before: before.train_s, eval_seconds: 0.0 };
    let cfg = run.config().clone();
    let total = match cfg.budget {
        fab_train::config::Budget::Iterations(n) => n,
        fab_train::config::Budget::TargetEvaluations(n) => n,
    };
    let pb = progress_bar(total, args.quiet);
    let plain = pb.is_hidden();
    let mut last_plain_line = Instant::now();
    while !run.is_done() {
        if signals::stop_requested() {
            return Err(interrupted(&pb, &mut dir, &run));
        }
        let rep = match run.step() {
            Ok(rep) => rep,
            Err(e) => {
                pb.finish_and_clear();
                return Err(training_failed(&mut dir, &run, e));
            }
        };
        dir.log("iteration", clock.now(), &rep)?;
        let pos = match cfg.budget {
            fab_train::config::Budget::Iterations(_) => run.iteration(),
            fab_train::config::Budget::TargetEvaluations(_) => rep.target_evaluations,
        };
        pb.set_position(pos);
        let steps: Vec<String> = rep.step_sizes.iter().map(|s| format!("{s:.3}")).collect();
        let acc: Vec<String> = rep.acceptance.iter().map(|a| format!("{a:.2}")).collect();
        let status =
            format!("loss {:.4} ess {:.1}% acc [{}] eps [{}]", rep.loss, rep.batch_ess, acc.join(" "), steps.join(" "));
        let k = run.iteration();
        if plain && last_plain_line.elapsed() >= PLAIN_PROGRESS_EVERY {
            tracing::info!(target: "fab", "iteration {k}: {pos}/{total}, {status}");
            last_plain_line = Instant::now();
        }
        pb.set_message(status);
        if cfg.eval.every > 0 && k % cfg.eval.every == 0 && !run.is_done() {
            let eval_started = Instant::now();
            let e = evaluate(&run, cfg.eval.n_samples, Detail::Periodic)
                .with_context(|| format!("periodic evaluation at iteration {k}"))?;
            clock.eval_seconds += eval_started.elapsed().as_secs_f64();
            let mean_log_q = e.mean_log_q_target.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"));
            let line = format!("iteration {k}: flow ESS {:.2}%, mean log q(x~p) {mean_log_q}", e.flow_ess);
            if plain {
                tracing::info!(target: "fab", "{line}");
            } else {
                pb.println(line);
            }
            dir.log("eval", clock.now(), &e)?;
        }
        if cfg.checkpoint_every > 0 && k % cfg.checkpoint_every == 0 {
            dir.checkpoint(&run)?;
        }
    }
    pb.finish_and_clear();
    dir.checkpoint(&run)?;
    run.flow().save_safetensors(dir.path().join(FLOW_FILE))?;
    if signals::stop_requested() {
        return Err(interrupted(&pb, &mut dir, &run));
    }
    let train_time = clock.now().train_s;
    eprintln!(
        "trained {} iterations in {:.1} s (+{:.1} s of periodic evaluation in this session); final evaluation on {} \
         samples",
        run.iteration(),
        train_time,
        clock.eval_seconds,
        cfg.eval.n_samples_final
    );
    let eval_started = Instant::now();
    let report = evaluate(&run, cfg.eval.n_samples_final, Detail::Full).context("final evaluation")?;
    clock.eval_seconds += eval_started.elapsed().as_secs_f64();
    dir.log("final", clock.now(), &report)?;
    dir.flush()?;
    write_report(dir.path(), &run, &report, train_time, clock.now().elapsed_s)?;
    println!("{}", table_for(&cfg.target, cfg.method.label(), &report));
    Ok(())
}

/// Writes a checkpoint after a stop request and returns the [`Interrupted`] error (exit status 130).
fn interrupted(pb: &ProgressBar, dir: &mut RunDir, run: &Run) -> anyhow::Error {
    pb.finish_and_clear();
    if let Err(e) = dir.checkpoint(run) {
        return e
            .context(format!("interrupted at iteration {}, but the checkpoint could not be written", run.iteration()));
    }
    Interrupted { iteration: run.iteration(), dir: dir.path().display().to_string() }.into()
}

/// The error of a failed iteration, after saving the state of the last good one: which iteration failed, what it
/// means and what to try.
fn training_failed(dir: &mut RunDir, run: &Run, e: fab_train::TrainError) -> anyhow::Error {
    let k = run.iteration();
    let saved = match dir.checkpoint(run) {
        Ok(()) => format!(
            "The state after the last good iteration ({k} completed) is saved in {}.",
            dir.path().join(CHECKPOINT_FILE).display()
        ),
        Err(ce) => format!("The checkpoint of the last good iteration could not be written: {ce:#}"),
    };
    let o = &run.config().optimizer;
    let hint = if matches!(e, fab_train::TrainError::Ais(_)) {
        format!(
            "The flow collapsed or diverged: none of its samples kept a finite flow density, target density and \
             weight. Try a lower learning rate (`optimizer.lr`, now {}) or gradient clipping \
             (`optimizer.max_grad_norm`, now {:?}; `optimizer.max_grad_value`, now {:?}).",
            o.lr, o.max_grad_norm, o.max_grad_value
        )
    } else {
        String::new()
    };
    anyhow::anyhow!("iteration {k} (counting from 0) failed: {e}\n{hint}\n{saved}")
}

/// `fab train CONFIG`: a new run directory (or one taken over from a run that never checkpointed).
fn new_session(args: &TrainArgs) -> anyhow::Result<Session> {
    let (mut config, text, name) = load_config_arg(args.config.as_deref())?;
    if let Some(s) = args.seed {
        config.seed = s;
    }
    if let Some(n) = args.iterations {
        config.budget = fab_train::config::Budget::Iterations(n);
    }
    if let Some(n) = args.final_samples {
        config.eval.n_samples_final = n;
    }
    let overridden = args.seed.is_some() || args.iterations.is_some() || args.final_samples.is_some();
    // Checked once, with the overrides, before the run directory exists; the error names the file and line, and
    // the options when they were given.
    let checked = config_file::check(config.clone(), &text, &name)
        .map_err(|e| if overridden { e.context("with --seed/--iterations/--final-samples") } else { e })?;
    let text = if overridden { config.to_ron()? } else { text };
    let path = args.out.join(format!("{}-seed{}", config.name, config.seed));
    let (dir, created) = RunDir::create(&path, &text, args.force)?;
    match created {
        Created::TookOver => eprintln!(
            "{} held a run that stopped before its first checkpoint (nothing to resume): starting it over",
            path.display()
        ),
        Created::Forced => eprintln!("--force: removed the run in {}", path.display()),
        Created::Fresh => {}
    }
    eprintln!("training {} ({}) into {}", config.name, config.method.label(), path.display());
    Ok(Session { run: Run::from_checked(checked)?, dir, before: MetricsSummary::default() })
}

/// `fab train --resume DIR`: the run in DIR continues from its checkpoint (or from iteration 0 if it never wrote
/// one), with `--iterations` and `--final-samples` applied and written to its `config.ron`.
fn resume_session(path: &Path, args: &TrainArgs) -> anyhow::Result<Session> {
    if path.is_file() {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        bail!(
            "--resume takes a run directory, and {} is a file: resume with `fab train --resume {}`",
            path.display(),
            parent.display()
        );
    }
    if !path.is_dir() {
        bail!("--resume {}: no such run directory", path.display());
    }
    // Locked before anything is read: no other process writes while this one decides where to continue.
    let lock = DirLock::acquire(path)?;
    let ckpt = path.join(CHECKPOINT_FILE);
    let data = if ckpt.exists() { Some(load_checkpoint(&ckpt)?) } else { None };
    let mut config = match &data {
        Some(d) => run_config(path, d, &ckpt)?,
        None => {
            config_file::load_unchecked(&path.join(CONFIG_FILE))
                .with_context(|| format!("{}: no checkpoint to resume from", path.display()))?
                .0
        }
    };
    if let Some(n) = args.iterations {
        config.budget = fab_train::config::Budget::Iterations(n);
    }
    if let Some(n) = args.final_samples {
        config.eval.n_samples_final = n;
    }
    // Checked once (the run's config with the overrides), then the run is built from the checked config.
    let checked = config.clone().check().map_err(|e| anyhow::anyhow!("--iterations/--final-samples: {e}"))?;
    let run = match &data {
        Some(d) => Run::from_checked_checkpoint(checked, d, &ckpt)?,
        None => {
            eprintln!(
                "{} holds no checkpoint (the run stopped before its first one): starting it over from iteration 0",
                path.display()
            );
            Run::from_checked(checked)?
        }
    };
    if run.is_done() && RunDir::has_final(path) {
        bail!(
            "{} has finished ({} iterations) and holds its final evaluation: nothing to resume; to train on, pass \
             --iterations with a larger budget",
            path.display(),
            run.iteration()
        );
    }
    let before = RunDir::summary_before(path, run.iteration())?;
    for problem in &before.problems {
        tracing::warn!(target: "fab", "{problem}");
    }
    let dir = RunDir::resume(path, lock, run.iteration())?;
    if args.iterations.is_some() || args.final_samples.is_some() {
        dir.write_config(&config.to_ron()?)?;
    }
    eprintln!("resuming {} at iteration {}", path.display(), run.iteration());
    Ok(Session { run, dir, before })
}

fn table_for(target: &Option<TargetSpec>, label: &str, r: &EvalReport) -> String {
    match target {
        Some(TargetSpec::Mog5_2021) => format!("{TABLE1_HEADER}\n{}", table1_row(label, r)),
        Some(TargetSpec::ManyWell { .. }) => format!("{TABLE2_HEADER}\n{}", table2_row(label, r)),
        _ => format!("{GENERAL_HEADER}\n{}", general_row(label, r)),
    }
}

fn write_report(dir: &Path, run: &Run, report: &EvalReport, train_s: f64, total_s: f64) -> anyhow::Result<()> {
    let cfg = run.config();
    let json = serde_json::json!({
        "name": cfg.name,
        "method": cfg.method.label(),
        "seed": cfg.seed,
        "iterations": run.iteration(),
        "target_evaluations": run.target_evaluations(),
        "counters": run.counters(),
        "train_seconds": train_s,
        "seconds_per_iteration": train_s / run.iteration().max(1) as f64,
        "total_seconds": total_s,
        "threads": rayon::current_num_threads(),
        "eval": report,
    });
    std::fs::write(dir.join(REPORT_JSON), serde_json::to_string_pretty(&json)?)?;
    let md = format!(
        "# {} ({})\n\n{}\n\nIterations: {}; target evaluations: {}; training wall time {:.1} s (this session's periodic evaluations excluded); with evaluation {:.1} s.\n",
        cfg.name,
        cfg.method.label(),
        table_for(&cfg.target, cfg.method.label(), report),
        run.iteration(),
        run.target_evaluations().total(),
        train_s,
        total_s
    );
    std::fs::write(dir.join(REPORT_MD), md)?;
    Ok(())
}

/// `fab eval`.
pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let run = load_run(&args.run)?;
    let n = args.n.unwrap_or(run.config().eval.n_samples_final);
    check_sample_count(&run, "-n", n)?;
    let report = evaluate(&run, n, Detail::Full)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("{}", table_for(&run.config().target, run.config().method.label(), &report));
    Ok(())
}

/// `fab sample`.
pub fn sample(args: SampleArgs) -> anyhow::Result<()> {
    // The output's directory is checked first, so a bad path fails at once rather than after loading or sampling.
    let parent = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("cannot write {}: {} is not a directory", args.out.display(), parent.display());
    }
    let run = load_run(&args.run)?;
    check_sample_count(&run, "-n", args.n)?;
    // The output is opened before sampling, so a bad path fails at once rather than after the work.
    let file = std::fs::File::create(&args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    let dim = run.flow().dim();
    let mut rng = stream_rng(args.seed, 0);
    let (x, log_q, log_w) = if args.ais {
        let Some(a) = run.sample_ais(args.n, args.seed)? else {
            bail!("{} is not a FAB run: it has no AIS to sample with", args.run.display())
        };
        let n = a.log_w.len();
        (a.samples, vec![f64::NAN; n], a.log_w)
    } else if let Some(snf) = run.snf() {
        // An SNF run's flow is only its prior: draw SNF paths (log q of each path).
        let s = snf.sample(run.target(), args.seed, args.n);
        let log_w = fab_train::metrics::log_weights(&s.log_p, &s.log_q);
        (s.x, s.log_q, log_w)
    } else {
        let (x, log_q) = run.flow().sample(&mut rng, args.n);
        let mut log_p = vec![0.0; args.n];
        run.target().log_prob_batch(x.view(), &mut log_p);
        let log_w = fab_train::metrics::log_weights(&log_p, &log_q);
        (x, log_q, log_w)
    };
    let n = x.n_rows();
    let mut table = ndarray::Array2::<f64>::zeros((n, dim + 2));
    for i in 0..n {
        for j in 0..dim {
            table[[i, j]] = x.row(i)[j];
        }
        table[[i, dim]] = log_q[i];
        table[[i, dim + 1]] = log_w[i];
    }
    table.write_npy(std::io::BufWriter::new(file)).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {n} samples ({} columns: x_1..x_{dim}, log q, log w) to {}", dim + 2, args.out.display());
    Ok(())
}

/// Exact draws of a 2-D target for its plot window (seeded, so a figure is reproducible).
fn exact_samples_2d(target: &dyn fab_targets::Target) -> Vec<(f64, f64)> {
    let Some(sampler) = target.exact_sampler() else { return Vec::new() };
    let x = sampler.sample_exact(&mut stream_rng(0, 1), 4000);
    x.rows().map(|r| (r[0], r[1])).collect()
}

/// The window every panel of a 2-D figure shares: the papers' windows where they give one, else the central 99.5 %
/// of the target's exact samples, else of the union of every model's samples, padded by 15 %. A model's own samples
/// never choose its window, so a collapsed flow looks collapsed.
fn shared_window_2d(spec: &TargetSpec, exact: &[(f64, f64)], models: &[Vec<(f64, f64)>]) -> ((f64, f64), (f64, f64)) {
    match spec {
        TargetSpec::Mog5_2021 => return ((-25.0, 20.0), (-20.0, 10.0)),
        TargetSpec::Gmm40Iclr => return ((-56.0, 56.0), (-56.0, 56.0)),
        _ => {}
    }
    let pts: Vec<(f64, f64)> = if exact.is_empty() { models.concat() } else { exact.to_vec() };
    let range = |mut v: Vec<f64>| -> Option<(f64, f64)> {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        let (lo, hi) = (at(0.0025), at(0.9975));
        let pad = 0.15 * (hi - lo).max(1e-9);
        Some((lo - pad, hi + pad))
    };
    match (range(pts.iter().map(|p| p.0).collect()), range(pts.iter().map(|p| p.1).collect())) {
        (Some(x), Some(y)) => (x, y),
        _ => ((-5.0, 5.0), (-5.0, 5.0)),
    }
}

/// A run's config and `n` samples of its model (seed 0), from its checkpoint or its final `flow.safetensors`.
fn model_samples(path: &Path, n: usize) -> anyhow::Result<(TrainConfig, fab_core::Batch)> {
    let run = load_run(path)?;
    check_sample_count(&run, "-n", n)?;
    let x = match run.snf() {
        Some(snf) => snf.sample(run.target(), 0, n).x,
        None => run.flow().sample(&mut stream_rng(0, 0), n).0,
    };
    Ok((run.config().clone(), x))
}

/// `fab plot`: Figure 1 (2-D targets: contours with each model's samples) or Figure 2 (Many Well: pair marginals of
/// the first four coordinates with samples).
pub fn plot(args: PlotArgs) -> anyhow::Result<()> {
    let models: Vec<(TrainConfig, fab_core::Batch)> =
        args.runs.iter().map(|p| model_samples(p, args.n)).collect::<anyhow::Result<_>>()?;
    let Some(spec) = models[0].0.target.clone() else {
        bail!(
            "{}: plots are drawn for built-in targets only (this run's density came from code)",
            args.runs[0].display()
        )
    };
    if models.iter().any(|(c, _)| c.target.as_ref() != Some(&spec)) {
        bail!("all runs in one figure must share a target");
    }
    let samples: Vec<(String, fab_core::Batch)> =
        models.iter().map(|(c, x)| (c.method.label().to_string(), x.clone())).collect();
    let dim = models[0].1.dim();
    if dim == 2 {
        let target = spec.build().context("building the target of the figure")?;
        let log_p = |x: f64, y: f64| target.log_prob(&[x, y]);
        let points: Vec<Vec<(f64, f64)>> =
            samples.iter().map(|(_, x)| x.rows().map(|r| (r[0], r[1])).collect()).collect();
        let (xr, yr) = shared_window_2d(&spec, &exact_samples_2d(target.as_ref()), &points);
        let panels: Vec<Panel<'_>> = samples
            .iter()
            .zip(points)
            .map(|((label, _), pts)| Panel {
                title: label.clone(),
                x_range: xr,
                y_range: yr,
                log_density: Some(&log_p),
                points: vec![("samples".into(), pts)],
            })
            .collect();
        render_grid(&args.out, 1, panels.len(), &panels)?;
    } else if matches!(spec, TargetSpec::ManyWell { .. }) && dim >= 4 {
        plot_many_well(&args.out, &samples)?;
    } else {
        bail!("plots exist for 2-D targets and the Many Well (dimension ≥ 4); this target has dimension {dim}");
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// 1-D marginal log density of Many Well coordinate `j` (even: double well, odd: standard Gaussian).
fn many_well_marginal(j: usize, x: f64) -> f64 {
    if j.is_multiple_of(2) { double_well_log_density(x) } else { -0.5 * x * x }
}

fn plot_many_well(out: &Path, samples: &[(String, fab_core::Batch)]) -> anyhow::Result<()> {
    const PAIRS: [(usize, usize); 3] = [(0, 1), (0, 2), (2, 3)];
    let marginals: Vec<Box<dyn Fn(f64, f64) -> f64 + Sync>> = PAIRS
        .iter()
        .map(|&(i, j)| {
            Box::new(move |x: f64, y: f64| many_well_marginal(i, x) + many_well_marginal(j, y))
                as Box<dyn Fn(f64, f64) -> f64 + Sync>
        })
        .collect();
    let mut panels = Vec::new();
    for (label, x) in samples {
        for (k, &(i, j)) in PAIRS.iter().enumerate() {
            let pts: Vec<(f64, f64)> = x.rows().map(|r| (r[i], r[j])).collect();
            panels.push(Panel {
                title: format!("{label}: x{} vs x{}", i + 1, j + 1),
                x_range: (-3.0, 3.0),
                y_range: (-3.0, 3.0),
                log_density: Some(marginals[k].as_ref()),
                points: vec![("samples".into(), pts)],
            });
        }
    }
    render_grid(out, samples.len(), PAIRS.len(), &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 14: the window of a figure comes from the target, not from a model's samples, so a collapsed
    /// model (all samples near one point) gets the same window as one that covers the target.
    #[test]
    fn every_panel_shares_the_target_window_whatever_its_samples() {
        let spec = TargetSpec::DiagGaussian { means: vec![0.0, 10.0], stds: vec![1.0, 2.0] };
        let target = spec.build().unwrap();
        let exact = exact_samples_2d(target.as_ref());
        let collapsed: Vec<(f64, f64)> = (0..100).map(|i| (0.001 * i as f64, 10.0)).collect();
        let wide: Vec<(f64, f64)> = (0..100).map(|i| (i as f64 - 50.0, 10.0 + 0.5 * i as f64)).collect();
        let a = shared_window_2d(&spec, &exact, std::slice::from_ref(&collapsed));
        let b = shared_window_2d(&spec, &exact, std::slice::from_ref(&wide));
        assert_eq!(a, b, "the window follows the samples");
        let ((x0, x1), (y0, y1)) = a;
        assert!(x0 < -2.5 && x1 > 2.5 && y0 < 5.0 && y1 > 15.0, "the window does not cover the target: {a:?}");
        assert!(x0 > -6.0 && x1 < 6.0, "outliers stretched the window: {a:?}");
        // Without exact samples, the union of all models' samples.
        let u = shared_window_2d(&spec, &[], &[collapsed, wide]);
        assert!(u.0.0 < -40.0 && u.0.1 > 40.0, "{u:?}");
    }
}
