//! `cargo xtask reproduce`: re-runs the papers' experiments from `configs/` with the release `fab` binary and writes
//! `results/RESULTS.md` (Tables 1 and 2 beside the papers' numbers, wall times, figures).

use crate::long_runs::{self, LongRun};
use crate::util::{cargo, dir_name, project_root, run_checked};
use anyhow::{Context, bail};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One experiment: a config and, for `--quick`, the iteration budget and final sample count CI can afford.
struct Experiment {
    name: &'static str,
    config: &'static str,
    quick_iterations: u64,
    quick_final_samples: u64,
}

const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "mog_fab_2021",
        config: "configs/mog_fab_2021.ron",
        quick_iterations: 300,
        quick_final_samples: 100_000,
    },
    Experiment {
        name: "mog_fab_buffer",
        config: "configs/mog_fab_buffer.ron",
        quick_iterations: 300,
        quick_final_samples: 100_000,
    },
    Experiment {
        name: "mog_kl_2021",
        config: "configs/mog_kl_2021.ron",
        quick_iterations: 300,
        quick_final_samples: 100_000,
    },
    Experiment {
        name: "mog_snf_2021",
        config: "configs/mog_snf_2021.ron",
        quick_iterations: 200,
        quick_final_samples: 100_000,
    },
    Experiment {
        name: "many_well16_fab_2021",
        config: "configs/many_well16_fab_2021.ron",
        quick_iterations: 60,
        quick_final_samples: 20_000,
    },
    Experiment {
        name: "many_well16_fab_buffer",
        config: "configs/many_well16_fab_buffer.ron",
        quick_iterations: 20,
        quick_final_samples: 20_000,
    },
    Experiment {
        name: "many_well16_kl_2021",
        config: "configs/many_well16_kl_2021.ron",
        quick_iterations: 60,
        quick_final_samples: 20_000,
    },
    Experiment {
        name: "gmm40_fab_buffer_iclr",
        config: "configs/gmm40_fab_buffer_iclr.ron",
        quick_iterations: 200,
        quick_final_samples: 20_000,
    },
];

/// Options of the task.
pub struct Options {
    /// CI-sized budgets.
    pub quick: bool,
    /// Run only this experiment.
    pub only: Option<String>,
    /// Threads for the `fab` binary.
    pub threads: Option<usize>,
    /// Re-run experiments that already finished (otherwise their reports are reused and unfinished runs resume).
    pub rerun: bool,
}

/// Entry point of the `reproduce` task.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if opts.only.as_deref().is_some_and(|o| o.starts_with("fabjax")) {
        let seeds = 5;
        return crate::fabjax::run(crate::fabjax::Options {
            quick: opts.quick,
            only: opts.only,
            threads: opts.threads,
            seeds,
        });
    }
    let root = project_root();
    let mut build = cargo();
    build.args(["build", "--release", "-p", "fab-cli"]);
    run_checked(build)?;
    let fab = root.join("target/release/fab");
    let results = root.join(if opts.quick { "target/reproduce-quick" } else { "results" });
    let runs_dir = results.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let selected: Vec<&Experiment> =
        EXPERIMENTS.iter().filter(|e| opts.only.as_deref().is_none_or(|o| o == e.name)).collect();
    if selected.is_empty() {
        let names: Vec<&str> = EXPERIMENTS.iter().map(|e| e.name).collect();
        bail!("no experiment named {:?}; known: {}", opts.only.unwrap_or_default(), names.join(", "));
    }
    for e in &selected {
        let run_dir = existing_run_dir(&runs_dir, e.name);
        let finished = run_dir.as_ref().is_some_and(|d| d.join("report.json").exists());
        let resumable = run_dir.as_ref().is_some_and(|d| d.join("checkpoint.fab").exists());
        let mut cmd = Command::new(&fab);
        cmd.current_dir(&root);
        if opts.quick || opts.rerun || !(finished || resumable) {
            cmd.args(["train", e.config, "--force", "--quiet", "--out"]).arg(&runs_dir);
            if opts.quick {
                cmd.args(["--iterations", &e.quick_iterations.to_string()]);
                cmd.args(["--final-samples", &e.quick_final_samples.to_string()]);
            }
        } else if finished {
            eprintln!("{}: finished earlier, report reused (pass --rerun to train again)", e.name);
            continue;
        } else {
            let dir = run_dir.expect("resumable implies a directory");
            eprintln!("{}: resuming {}", e.name, dir.display());
            cmd.args(["train", "--quiet", "--resume"]).arg(dir);
        }
        if let Some(t) = opts.threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        let started = Instant::now();
        run_checked(cmd).with_context(|| format!("experiment {}", e.name))?;
        eprintln!("{}: {:.1} s", e.name, started.elapsed().as_secs_f64());
    }
    write_curves(&runs_dir, &results.join("curves"), "")?;
    let reports = collect_reports(&runs_dir)?;
    plot_figures(&fab, &root, &results, &reports)?;
    // Only the committed results/ hold the long runs; a quick reproduction has none.
    let long_dir = results.join("long");
    let long = if opts.quick { Vec::new() } else { long_runs::read_all(&long_dir, long_runs::PAPER_ITERATIONS)? };
    if !long.is_empty() {
        write_curves(&long_dir, &results.join("curves"), "long-")?;
        plot_long_runs(&fab, &root, &results, &long)?;
    }
    let mut md = results_markdown(&reports, &long, opts.quick);
    // The fab-jax section is written by its own task; keep the last one.
    if let Ok(fabjax) = std::fs::read_to_string(results.join("fabjax.md")) {
        md = crate::sections::replace_or_append(&md, &fabjax);
    }
    // Sections written by hand (measurements, methods) under their own headings are kept.
    if let Ok(previous) = std::fs::read_to_string(results.join("RESULTS.md")) {
        md = crate::sections::keep_hand_written(&previous, &md);
    }
    std::fs::write(results.join("RESULTS.md"), &md)?;
    println!("{md}");
    if opts.quick {
        check_quick(&reports)?;
    }
    if opts.quick && opts.only.is_none() {
        crate::fabjax::run(crate::fabjax::Options { quick: true, only: None, threads: opts.threads, seeds: 1 })?;
    }
    Ok(())
}

/// The run directory of experiment `name` (`<name>-seed<seed>`) under `runs_dir`, if one exists.
fn existing_run_dir(runs_dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(runs_dir).ok()?.filter_map(Result::ok).map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.strip_prefix(name).is_some_and(|rest| rest.starts_with("-seed")))
    })
}

/// For every run directory, `curves/<prefix><run>.csv`: the periodic evaluations (iteration, wall time, flow ESS, AIS ESS,
/// mean log q at target samples, mean log q on the noisy mode test set) from its metrics.jsonl — the ESS-against-time
/// curve, also for runs still in progress.
pub fn write_curves(runs_dir: &Path, out_dir: &Path, prefix: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    for entry in std::fs::read_dir(runs_dir)? {
        let dir = entry?.path();
        let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) else { continue };
        let mut csv =
            String::from("iteration,elapsed_s,flow_ess,ais_ess,mean_log_q_target,noisy_mode_set_mean_log_q\n");
        for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            if v["kind"] != "eval" && v["kind"] != "final" {
                continue;
            }
            let cell = |k: &str| v[k].as_f64().map(|x| x.to_string()).unwrap_or_default();
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{}",
                cell("iteration"),
                cell("elapsed_s"),
                cell("flow_ess"),
                cell("ais_ess"),
                cell("mean_log_q_target"),
                cell("noisy_mode_set_mean_log_q")
            );
        }
        std::fs::write(out_dir.join(format!("{prefix}{}.csv", dir_name(&dir))), csv)?;
    }
    Ok(())
}

/// `report.json` of every run directory, by experiment name.
fn collect_reports(runs_dir: &Path) -> anyhow::Result<Vec<(String, PathBuf, Value)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(runs_dir)? {
        let dir = entry?.path();
        let report = dir.join("report.json");
        if let Ok(text) = std::fs::read_to_string(&report) {
            let v: Value = serde_json::from_str(&text).with_context(|| format!("{}", report.display()))?;
            out.push((v["name"].as_str().unwrap_or("?").to_string(), dir, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn plot_figures(fab: &Path, root: &Path, results: &Path, reports: &[(String, PathBuf, Value)]) -> anyhow::Result<()> {
    let figures: [(&str, &[&str]); 2] = [
        ("figure1_mog.png", &["mog_fab_2021", "mog_fab_buffer", "mog_kl_2021", "mog_snf_2021"]),
        ("figure2_many_well.png", &["many_well16_fab_2021", "many_well16_fab_buffer", "many_well16_kl_2021"]),
    ];
    for (file, names) in figures {
        let dirs: Vec<&PathBuf> =
            names.iter().filter_map(|n| reports.iter().find(|r| r.0 == *n).map(|r| &r.1)).collect();
        if dirs.is_empty() {
            continue;
        }
        let mut cmd = Command::new(fab);
        cmd.current_dir(root).arg("plot").args(dirs).arg("--out").arg(results.join(file));
        run_checked(cmd)?;
    }
    Ok(())
}

/// `figure_long_<run>.png`: samples of a long run's final flow (drawn once it has reached the budget; before that its
/// flow file is the starting run's).
fn plot_long_runs(fab: &Path, root: &Path, results: &Path, long: &[LongRun]) -> anyhow::Result<()> {
    for run in long.iter().filter(|r| r.final_report.is_some()) {
        let mut cmd = Command::new(fab);
        let out = results.join(format!("figure_long_{}.png", run.dir_name()));
        cmd.current_dir(root).arg("plot").arg(&run.dir).arg("--out").arg(out);
        run_checked(cmd)?;
    }
    Ok(())
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "n/a".into())
}

fn pair(flow: &Value, ais: &Value, digits: usize) -> String {
    if ais.is_null() { f(flow, digits) } else { format!("{} ({})", f(flow, digits), f(ais, digits)) }
}

/// What the two FAB rows of each table are.
const FAB_ROWS: &str = "Two FAB rows: **FAB (2021)** is the workshop paper's algorithm with its settings (AIS towards p, loss log Σ w̄ p/q); **FAB α=2 + buffer** is the later version (ICLR 2023: AIS towards p²/q, prioritised replay buffer, several gradient steps per AIS batch) with the same flow, the same AIS and batch size, and here the same or a smaller number of target evaluations. Target evaluations are exact counts (every evaluation of log p̃ and its gradient during training; evaluation not charged); the paper's are computed from its settings (iterations × batch × 11).";

/// Target evaluations spent in training, as `1.10·10⁶`.
fn target_evaluations(r: &Value) -> String {
    let n = r["target_evaluations"]["n_log_prob"].as_f64().unwrap_or(0.0)
        + r["target_evaluations"]["n_log_prob_and_grad"].as_f64().unwrap_or(0.0);
    if n <= 0.0 {
        return "n/a".into();
    }
    let exponent = n.log10().floor();
    let mantissa = n / 10f64.powf(exponent);
    let superscript: String = format!("{exponent:.0}")
        .chars()
        .map(|c| match c {
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            '9' => '⁹',
            other => other,
        })
        .collect();
    format!("{mantissa:.2}·10{superscript}")
}

/// One row of Table 2 from a run's report.
fn many_well_row(r: &Value, label: &str) -> String {
    let e = &r["eval"];
    format!(
        "| **fab: {}** ({label}) | {} | {} | {} | {} | {} | {} |",
        r["method"].as_str().unwrap_or("?"),
        f(&e["noisy_mode_set_mean_log_q"], 2),
        pair(&e["flow_ess"], &e["ais_ess"], 2),
        f(&e["mode_set_mean_log_q"], 2),
        f(&e["forward_ess"], 2),
        target_evaluations(r),
        f(&r["train_seconds"], 1),
    )
}

/// RESULTS.md: our rows beside the papers' rows.
fn results_markdown(reports: &[(String, PathBuf, Value)], long: &[LongRun], quick: bool) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Reproduction of the FAB papers' tables\n");
    if quick {
        let _ = writeln!(md, "**Quick mode** (CI budget): a few hundred iterations, not the papers' budgets.\n");
    }
    let _ = writeln!(md, "## Table 1: 2-D mixture of 5 Gaussians\n");
    let _ = writeln!(
        md,
        "Flow metrics, AIS in brackets. ESS on the final evaluation's flow samples; bias and std over 100 × 1000 samples against the exact expectation 205.6497; mean log q on 10⁴ exact samples.\n"
    );
    let _ = writeln!(
        md,
        "| model | mean log q(x), x~p | ESS (%) | bias (%) | std (%) | target evaluations | wall time (s) |\n|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(md, "| paper: FAB | −5.2 | 70.1 (77.5) | 1.2 (0.5) | 5.8 (5.5) | 1.1·10⁶ | — |");
    let _ = writeln!(md, "| paper: flow w/ reverse KL | −14.4 | 0.05 | 99.6 | 19.8 | — | — |");
    let _ = writeln!(md, "| paper: SNF w/ reverse KL | n/a | 0.02 | 104.2 | 9.7 | — | — |");
    let _ = writeln!(md, "| best possible (E_p log p) | −4.94 | 100 | 0 | — | — | — |");
    for (_, _, r) in reports.iter().filter(|r| r.0.starts_with("mog_")) {
        let e = &r["eval"];
        let _ = writeln!(
            md,
            "| **fab: {}** | {} | {} | {} | {} | {} | {} |",
            r["method"].as_str().unwrap_or("?"),
            f(&e["mean_log_q_target"], 2),
            pair(&e["flow_ess"], &e["ais_ess"], 2),
            pair(&e["expectation_flow"]["bias_percent"], &e["expectation_ais"]["bias_percent"], 2),
            pair(&e["expectation_flow"]["std_percent"], &e["expectation_ais"]["std_percent"], 2),
            target_evaluations(r),
            f(&r["train_seconds"], 1),
        );
    }
    let _ = writeln!(md, "\n{FAB_ROWS}");
    let _ = writeln!(md, "\n## Table 2: 16-D Many Well\n");
    let _ = writeln!(
        md,
        "Mean log q over one point on each of the 256 modes with N(0, 0.2²) noise (the paper's test set; redrawn per evaluation) and without noise; flow ESS on the final evaluation's 10⁵ flow samples, AIS in brackets. The flow ESS only sees where the flow puts mass: a flow on a few of the 256 modes can score well on it, which is why the forward ESS (on 10⁴ exact samples, 1 / mean p/q) is given too.\n"
    );
    let _ = writeln!(
        md,
        "| model | test-set mean log q (noisy modes) | ESS (%) | exact-mode mean log q | forward ESS (%) | target evaluations | wall time (s) |\n|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(md, "| paper: FAB | −14.5 | 79.6 (85.2) | — | — | 1.1·10⁹ | — |");
    let _ = writeln!(md, "| paper: flow w/ reverse KL | −86.2 | 0.01 | — | — | — | — |");
    let _ = writeln!(md, "| best possible | ≈ −14.27 | 100 | −10.44 | 100 | — | — |");
    for (_, _, r) in reports.iter().filter(|r| r.2["eval"]["noisy_mode_set_mean_log_q"].is_number()) {
        let _ = writeln!(md, "{}", many_well_row(r, r["name"].as_str().unwrap_or("?")));
    }
    for (run, r) in long.iter().filter_map(|run| run.final_report.as_ref().map(|r| (run, r))) {
        let _ = writeln!(md, "{}", many_well_row(r, &run.row_label(r)));
    }
    for run in long {
        let _ = writeln!(md, "\n{}", long_runs::status_markdown(run, long_runs::PAPER_ITERATIONS));
    }
    let iclr: Vec<_> = reports.iter().filter(|r| r.0.contains("iclr")).collect();
    if !iclr.is_empty() {
        let _ = writeln!(md, "\n## ICLR 2023 experiments\n");
        let _ = writeln!(
            md,
            "| run | mean log q(x), x~p | best possible | ESS (%) | forward ESS (%) | rel. error of Z (%) | wall time (s) |\n|---|---|---|---|---|---|---|"
        );
        for (name, _, r) in iclr {
            let e = &r["eval"];
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                f(&e["mean_log_q_target"], 2),
                f(&e["mean_log_p_target"], 2),
                pair(&e["flow_ess"], &e["ais_ess"], 2),
                f(&e["forward_ess"], 2),
                f(&e["log_z_flow"]["relative_error_z_percent"], 2),
                f(&r["train_seconds"], 1),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nFigures: `figure1_mog.png` (target contours with samples of each model), `figure2_many_well.png` (pair marginals of the first four coordinates). Curves of ESS against wall time: `curves/*.csv`. Where the time of the 2021 Many Well run goes: `PROFILE.md`."
    );
    md
}

/// `--quick` must still show both FAB versions ahead of the baselines on the MoG: higher flow ESS and lower bias than
/// reverse KL and SNF, and a much higher mean log q at target samples than reverse KL (SNF has none).
fn check_quick(reports: &[(String, PathBuf, Value)]) -> anyhow::Result<()> {
    let get = |name: &str, path: &[&str]| -> Option<f64> {
        let r = &reports.iter().find(|r| r.0 == name)?.2;
        path.iter().fold(r, |v, k| &v[*k]).as_f64()
    };
    let ess = ["eval", "flow_ess"];
    let bias = ["eval", "expectation_flow", "bias_percent"];
    let log_q = ["eval", "mean_log_q_target"];
    for fab in ["mog_fab_2021", "mog_fab_buffer"] {
        let Some(fab_ess) = get(fab, &ess) else { continue };
        let fab_bias = get(fab, &bias).unwrap_or(f64::INFINITY);
        for baseline in ["mog_kl_2021", "mog_snf_2021"] {
            let Some(b_ess) = get(baseline, &ess) else { continue };
            let b_bias = get(baseline, &bias).unwrap_or(f64::INFINITY);
            if !(fab_ess > b_ess + 5.0 && fab_bias < b_bias) {
                bail!(
                    "quick reproduction: {fab} is not ahead of {baseline} (ESS {fab_ess:.1}% vs {b_ess:.1}%, bias {fab_bias:.2}% vs {b_bias:.2}%)"
                );
            }
            eprintln!(
                "quick check: {fab} ESS {fab_ess:.1}% vs {baseline} {b_ess:.1}%, bias {fab_bias:.2}% vs {b_bias:.2}%"
            );
        }
        if let (Some(f), Some(k)) = (get(fab, &log_q), get("mog_kl_2021", &log_q))
            && f <= k + 1.0
        {
            bail!("quick reproduction: {fab} mean log q {f:.2} is not clearly above reverse KL's {k:.2}");
        }
    }
    Ok(())
}
