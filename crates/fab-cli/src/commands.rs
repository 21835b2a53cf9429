//! The subcommands: `train`, `eval`, `sample`, `plot`.

use crate::config_file::{self, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};
use crate::plot::{Panel, render_grid};
use crate::run_dir::{CHECKPOINT_FILE, CONFIG_FILE, FLOW_FILE, REPORT_JSON, REPORT_MD, RunDir};
use anyhow::{Context, bail};
use clap::Args;
use fab_core::{Proposal, stream_rng};
use fab_targets::{TargetSpec, double_well_log_density};
use fab_train::report::{GENERAL_HEADER, TABLE1_HEADER, TABLE2_HEADER, general_row, table1_row, table2_row};
use fab_train::{Detail, EvalReport, Run, TrainConfig, evaluate};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// Directory that holds run directories.
    #[arg(long, default_value_os_t = crate::default_runs_dir())]
    out: PathBuf,
    /// Override the iteration budget (e.g. for a quick look).
    #[arg(long)]
    iterations: Option<u64>,
    /// Override the final evaluation's sample count.
    #[arg(long)]
    final_samples: Option<usize>,
    /// Start over if the run directory already holds a run.
    #[arg(long)]
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
    #[arg(long, short)]
    n: Option<usize>,
}

/// Arguments of `fab sample`.
#[derive(Args)]
pub struct SampleArgs {
    /// A run directory or a checkpoint file.
    run: PathBuf,
    /// Number of samples.
    #[arg(short, long, default_value_t = 1000)]
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
    #[arg(short, long, default_value_t = 1000)]
    n: usize,
}

/// The config (unchecked), its text and the name errors show.
fn load_config_arg(path: Option<&Path>) -> anyhow::Result<(TrainConfig, String, String)> {
    match path {
        Some(p) => {
            let (config, text) = config_file::load(p)?;
            Ok((config, text, p.display().to_string()))
        }
        None => Ok((
            config_file::parse_unchecked(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME)?,
            DEFAULT_CONFIG.to_string(),
            DEFAULT_CONFIG_NAME.to_string(),
        )),
    }
}

/// Loads a run (from a run directory or a checkpoint file) at its last checkpoint.
pub fn load_run(path: &Path) -> anyhow::Result<Run> {
    let (dir, ckpt) = if path.is_dir() {
        (path.to_path_buf(), path.join(CHECKPOINT_FILE))
    } else {
        (path.parent().map(Path::to_path_buf).unwrap_or_default(), path.to_path_buf())
    };
    let data = fab_train::checkpoint::load(&ckpt)?;
    let config: TrainConfig = match std::fs::read_to_string(dir.join(CONFIG_FILE)) {
        Ok(text) => config_file::parse_unchecked(&text, &dir.join(CONFIG_FILE).display().to_string())?,
        Err(_) => serde_json::from_value(data.meta["config"].clone())
            .with_context(|| format!("{}: no config.ron beside it and none inside", ckpt.display()))?,
    };
    Ok(Run::from_checkpoint(config, &data, &ckpt)?)
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

/// `fab train`.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut run, mut dir, elapsed_before) = match &args.resume {
        Some(path) => {
            let mut run = load_run(path)?;
            if let Some(n) = args.iterations {
                run.set_iteration_budget(n);
            }
            let elapsed = RunDir::elapsed_before(path, run.iteration())?;
            eprintln!("resuming {} at iteration {}", path.display(), run.iteration());
            let dir = RunDir::resume(path, run.iteration())?;
            (run, dir, elapsed)
        }
        None => {
            let (mut config, text, name) = load_config_arg(args.config.as_deref())?;
            if let Some(s) = args.seed {
                config.seed = s;
            }
            if let Some(n) = args.iterations {
                config.budget = fab_train::config::Budget::Iterations(n);
            }
            if let Some(n) = args.final_samples {
                config.eval.n_samples_final = n.max(1);
            }
            let overridden = args.seed.is_some() || args.iterations.is_some() || args.final_samples.is_some();
            let written = if overridden {
                ron::ser::to_string_pretty(&config, ron::ser::PrettyConfig::default())?
            } else {
                text.clone()
            };
            // Checked once, overrides included, before the run directory exists.
            let name = if overridden { format!("{name} with --seed/--iterations/--final-samples") } else { name };
            let checked = config_file::check(config, &text, &name)?;
            let config = checked.config().clone();
            let text = written;
            let path = args.out.join(format!("{}-seed{}", config.name, config.seed));
            let dir = RunDir::create(&path, &text, args.force)?;
            eprintln!("training {} ({}) into {}", config.name, config.method.label(), path.display());
            (Run::from_checked(checked)?, dir, 0.0)
        }
    };
    let elapsed = || elapsed_before + started.elapsed().as_secs_f64();
    let cfg = run.config().clone();
    let total = match cfg.budget {
        fab_train::config::Budget::Iterations(n) => n,
        fab_train::config::Budget::TargetEvaluations(n) => n,
    };
    let pb = progress_bar(total, args.quiet);
    let mut eval_seconds = 0.0;
    while !run.is_done() {
        let rep = run.step()?;
        dir.log("iteration", elapsed(), &rep)?;
        let pos = match cfg.budget {
            fab_train::config::Budget::Iterations(_) => run.iteration(),
            fab_train::config::Budget::TargetEvaluations(_) => rep.target_evaluations,
        };
        pb.set_position(pos);
        let steps: Vec<String> = rep.step_sizes.iter().map(|s| format!("{s:.3}")).collect();
        let acc: Vec<String> = rep.acceptance.iter().map(|a| format!("{a:.2}")).collect();
        pb.set_message(format!(
            "loss {:.4} ess {:.1}% acc [{}] eps [{}]",
            rep.loss,
            rep.batch_ess,
            acc.join(" "),
            steps.join(" ")
        ));
        let k = run.iteration();
        if cfg.eval.every > 0 && k % cfg.eval.every == 0 && !run.is_done() {
            let eval_started = Instant::now();
            let e = evaluate(&run, cfg.eval.n_samples, Detail::Periodic)?;
            eval_seconds += eval_started.elapsed().as_secs_f64();
            let mean_log_q = e.mean_log_q_target.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"));
            pb.println(format!("iteration {k}: flow ESS {:.2}%, mean log q(x~p) {mean_log_q}", e.flow_ess));
            dir.log("eval", elapsed(), &e)?;
        }
        if cfg.checkpoint_every > 0 && k % cfg.checkpoint_every == 0 {
            dir.checkpoint(&run)?;
        }
    }
    pb.finish_and_clear();
    dir.checkpoint(&run)?;
    run.flow().save_safetensors(dir.path().join(FLOW_FILE))?;
    let train_time = elapsed() - eval_seconds;
    eprintln!(
        "trained {} iterations in {:.1} s (+{:.1} s of periodic evaluation); final evaluation on {} samples",
        run.iteration(),
        train_time,
        eval_seconds,
        cfg.eval.n_samples_final
    );
    let report = evaluate(&run, cfg.eval.n_samples_final, Detail::Full)?;
    dir.log("final", elapsed(), &report)?;
    dir.flush()?;
    write_report(dir.path(), &run, &report, train_time, elapsed())?;
    println!("{}", table_for(&cfg.target, cfg.method.label(), &report));
    Ok(())
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
    let report = evaluate(&run, n, Detail::Full)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("{}", table_for(&run.config().target, run.config().method.label(), &report));
    Ok(())
}

/// `fab sample`.
pub fn sample(args: SampleArgs) -> anyhow::Result<()> {
    if args.n == 0 {
        bail!("-n must be at least 1");
    }
    let run = load_run(&args.run)?;
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
    ndarray_npy::write_npy(&args.out, &table).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {n} samples ({} columns: x_1..x_{dim}, log q, log w) to {}", dim + 2, args.out.display());
    Ok(())
}

/// Plot window of a 2-D target: the papers' windows where they give one, else the samples' range.
fn window_2d(spec: &TargetSpec, samples: &[(f64, f64)]) -> ((f64, f64), (f64, f64)) {
    match spec {
        TargetSpec::Mog5_2021 => ((-25.0, 20.0), (-20.0, 10.0)),
        TargetSpec::Gmm40Iclr => ((-56.0, 56.0), (-56.0, 56.0)),
        _ => {
            let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
            for &(x, y) in samples.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            }
            if !(x0 < x1 && y0 < y1) {
                return ((-5.0, 5.0), (-5.0, 5.0));
            }
            let (px, py) = (0.1 * (x1 - x0), 0.1 * (y1 - y0));
            ((x0 - px, x1 + px), (y0 - py, y1 + py))
        }
    }
}

/// A run's config and `n` samples of its model (seed 0). A run directory without a checkpoint but with the final
/// `flow.safetensors` is read from the latter: `results/` leaves out checkpoints that hold a replay buffer (tens of
/// MB), and a figure needs only the flow.
fn model_samples(path: &Path, n: usize) -> anyhow::Result<(TrainConfig, fab_core::Batch)> {
    if path.is_dir() && !path.join(CHECKPOINT_FILE).exists() && path.join(FLOW_FILE).exists() {
        let (config, _) = config_file::load(&path.join(CONFIG_FILE))?;
        let flow = fab_flow::Flow::load_safetensors(path.join(FLOW_FILE))?;
        if *flow.spec() != config.flow.spec() {
            bail!("{}: the flow does not have the architecture of {}", path.join(FLOW_FILE).display(), CONFIG_FILE);
        }
        return Ok((config, flow.sample(&mut stream_rng(0, 0), n).0));
    }
    let run = load_run(path)?;
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
        let panels: Vec<Panel<'_>> = samples
            .iter()
            .map(|(label, x)| {
                let pts: Vec<(f64, f64)> = x.rows().map(|r| (r[0], r[1])).collect();
                let (xr, yr) = window_2d(&spec, &pts);
                Panel {
                    title: label.clone(),
                    x_range: xr,
                    y_range: yr,
                    log_density: Some(&log_p),
                    points: vec![("samples".into(), pts)],
                }
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
