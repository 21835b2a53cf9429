//! `cargo xtask reproduce --only fabjax`: fab-jax's log Z benchmark (issue 13) — FAB trained per seed with the
//! `configs/fabjax_*.ron` settings, then the protocol (MAE of log Z over 10 batches of 2000 AIS samples targeting
//! p, mean ± SE over seeds) and the equal-budget SMC-from-base baseline, written to `results/fabjax.md`.
//!
//! Training goes through the `fab` binary; the protocol through fab-train's `fabjax_protocol` example, which
//! loads a run directory and writes `protocol.json` into it. Finished seeds are reused, unfinished ones resume.
//! `--quick` trains each config shrunk by that example (`--shrink`: batch ≤ 128, a buffer of 20 / 4 batches) for a
//! few iterations and runs a 3 × 500 protocol: a check that the pipeline works, not a measurement.

use crate::util::{cargo, project_root, run_checked};
use anyhow::{Context, bail};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One benchmark target: its config, fab-jax's published MAE and fab-jax's training cost from its settings.
struct Benchmark {
    name: &'static str,
    config: &'static str,
    /// fab-jax README: MAE ± SE over 5 seeds.
    fabjax_mae: &'static str,
    /// (iterations + 41 buffer-filling passes) × batch × (1 + K · evaluations per transition), from fab-jax's
    /// settings (`fab_with_buffer.py` fills the buffer with `min_length / batch + 1` SMC passes before training).
    fabjax_evaluations: f64,
    fabjax_settings: &'static str,
    quick_iterations: u64,
}

/// The quick check's protocol: batches × samples (the full one is fab-jax's 10 × 2000).
const QUICK_PROTOCOL: (usize, usize) = (3, 500);

const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "fabjax_gmm9",
        config: "configs/fabjax_gmm9.ron",
        fabjax_mae: "0.00269 ± 0.00054",
        fabjax_evaluations: 2041.0 * 200.0 * (1.0 + 2.0),
        fabjax_settings: "(2000 + 41) × 200 × (1 + 2 Metropolis)",
        quick_iterations: 20,
    },
    Benchmark {
        name: "fabjax_funnel",
        config: "configs/fabjax_funnel.ron",
        fabjax_mae: "0.00218 ± 0.00051",
        fabjax_evaluations: 2041.0 * 1024.0 * (1.0 + 4.0 * 5.0),
        fabjax_settings: "(2000 + 41) × 1024 × (1 + 4 HMC × 5 leapfrog)",
        quick_iterations: 4,
    },
    Benchmark {
        name: "fabjax_many_well32",
        config: "configs/fabjax_many_well32.ron",
        fabjax_mae: "0.0316 ± 0.0042",
        fabjax_evaluations: 10_041.0 * 1024.0 * (1.0 + 8.0 * 5.0),
        fabjax_settings: "(10⁴ + 41) × 1024 × (1 + 8 HMC × 5 leapfrog)",
        quick_iterations: 2,
    },
];

/// Options of the task.
pub struct Options {
    /// Short budgets, one seed, output under target/reproduce-quick.
    pub quick: bool,
    /// Only this benchmark (`fabjax_gmm9`, …); `None` or `fabjax`: all.
    pub only: Option<String>,
    /// Threads for the `fab` binary and the protocol.
    pub threads: Option<usize>,
    /// Seeds per target (fab-jax: 5).
    pub seeds: u64,
}

/// Entry point.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let root = project_root();
    // Two builds: a target flag such as `--example` would restrict both packages to that target, leaving `fab` stale.
    for args in [&["-p", "fab-cli"][..], &["-p", "fab-train", "--example", "fabjax_protocol"]] {
        let mut build = cargo();
        build.args(["build", "--release"]).args(args);
        run_checked(build)?;
    }
    let fab = root.join("target/release/fab");
    let protocol = root.join("target/release/examples/fabjax_protocol");
    let results = root.join(if opts.quick { "target/reproduce-quick" } else { "results" });
    let runs_dir = results.join("fabjax-runs");
    std::fs::create_dir_all(&runs_dir)?;
    let tools = Tools { fab, protocol };
    // `--only` takes one name or a comma-separated list (e.g. `fabjax_gmm9,fabjax_funnel`): the section written
    // holds the rows of the selected benchmarks only.
    let wanted: Option<Vec<&str>> = opts.only.as_deref().map(|o| o.split(',').map(str::trim).collect());
    let selected: Vec<&Benchmark> = BENCHMARKS
        .iter()
        .filter(|b| wanted.as_ref().is_none_or(|w| w.iter().any(|o| *o == "fabjax" || *o == b.name)))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
        bail!("no benchmark named {:?}; known: fabjax, {}", opts.only.unwrap_or_default(), names.join(", "));
    }
    let seeds = if opts.quick { 1 } else { opts.seeds.max(1) };
    let mut rows = Vec::new();
    for b in &selected {
        let mut outcomes = Vec::new();
        for seed in 0..seeds {
            let dir = runs_dir.join(format!("{}-seed{seed}", b.name));
            train(&tools, &root, b, seed, &dir, &runs_dir, &opts)?;
            outcomes.push(protocol_outcome(&tools.protocol, &dir, &opts)?);
        }
        rows.push((b, outcomes));
    }
    let md = markdown(&rows, opts.quick);
    std::fs::write(results.join("fabjax.md"), &md)?;
    let results_md = results.join("RESULTS.md");
    let existing = std::fs::read_to_string(&results_md).unwrap_or_default();
    std::fs::write(&results_md, crate::sections::replace_or_append(&existing, &md))?;
    println!("{md}");
    Ok(())
}

/// The two binaries the task drives.
struct Tools {
    fab: std::path::PathBuf,
    protocol: std::path::PathBuf,
}

/// The config to train: the shipped one, or (quick) its shrunk copy written beside the runs.
fn config_for(tools: &Tools, root: &Path, b: &Benchmark, runs_dir: &Path, quick: bool) -> anyhow::Result<String> {
    if !quick {
        return Ok(b.config.to_string());
    }
    let shrunk = runs_dir.join(format!("{}-quick.ron", b.name));
    let mut cmd = Command::new(&tools.protocol);
    cmd.current_dir(root).arg("--shrink").arg(b.config).arg(&shrunk);
    run_checked(cmd)?;
    Ok(shrunk.display().to_string())
}

/// Trains one seed unless its report exists; resumes from a checkpoint when there is one.
fn train(
    tools: &Tools,
    root: &Path,
    b: &Benchmark,
    seed: u64,
    dir: &Path,
    runs_dir: &Path,
    opts: &Options,
) -> anyhow::Result<()> {
    if dir.join("report.json").exists() && !opts.quick {
        eprintln!("{}: finished earlier, reused", dir.display());
        return Ok(());
    }
    let config = config_for(tools, root, b, runs_dir, opts.quick)?;
    let mut cmd = Command::new(&tools.fab);
    cmd.current_dir(root);
    if let Some(t) = opts.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    if dir.join("checkpoint.fab").exists() && !opts.quick {
        cmd.args(["train", "--quiet", "--resume"]).arg(dir);
    } else {
        cmd.args(["train", &config, "--force", "--quiet", "--seed", &seed.to_string(), "--out"]).arg(runs_dir);
        if opts.quick {
            cmd.args(["--iterations", &b.quick_iterations.to_string(), "--final-samples", "2000"]);
        }
    }
    let started = Instant::now();
    run_checked(cmd).with_context(|| format!("training {}", dir.display()))?;
    eprintln!("{}: {:.1} s", dir.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs (or reuses) the protocol on a finished run directory and returns its `protocol.json`.
fn protocol_outcome(protocol: &Path, dir: &Path, opts: &Options) -> anyhow::Result<Value> {
    let path = dir.join("protocol.json");
    let stale = match (std::fs::metadata(&path), std::fs::metadata(dir.join("report.json"))) {
        (Ok(p), Ok(r)) => p.modified()? < r.modified()?,
        _ => true,
    };
    if stale {
        let mut cmd = Command::new(protocol);
        cmd.arg(dir);
        if let Some(t) = opts.threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        if opts.quick {
            let (batches, size) = QUICK_PROTOCOL;
            cmd.args(["--batches", &batches.to_string(), "--batch-size", &size.to_string()]);
        }
        run_checked(cmd)?;
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// The heading of this benchmark's section in RESULTS.md.
const HEADING: &str = "## fab-jax's log Z benchmark (issue 13)";

/// Mean and standard error (sample sd / √n).
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let se = if xs.len() > 1 {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
    } else {
        f64::NAN
    };
    (mean, se)
}

fn sci(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "n/a".into();
    }
    let e = x.log10().floor();
    format!("{:.2}·10^{}", x / 10f64.powf(e), e as i64)
}

fn pm(xs: &[f64]) -> String {
    let (m, se) = mean_se(xs);
    if se.is_nan() { format!("{m:.5} (1 seed)") } else { format!("{m:.5} ± {se:.5}") }
}

/// The table of issue 13, item 7.
fn markdown(rows: &[(&&Benchmark, Vec<Value>)], quick: bool) -> String {
    let mut md = format!("{HEADING}\n\n");
    if quick {
        md.push_str("**Quick run: shrunk configs, a few iterations, one seed, a 3 × 500 protocol — not comparable with fab-jax.**\n\n");
    }
    md.push_str("MAE of log Z as fab-jax measures it: per seed, the mean |log Ẑ − log Z| over 10 estimates, each from 2000 AIS samples targeting p (the trained flow, the training transitions with their adapted step sizes, α = 1, no resampling); then mean ± SE over seeds. fab's target evaluations are exact counts of training (buffer filling included, evaluation not charged); fab-jax's are computed from its settings, (iterations + 41 buffer-filling passes) × batch × (1 + K × evaluations per transition). SMC baseline: SMC from the flow's base N(0, I) with the same kernel, geometric βs, systematic resampling below ESS 0.3, each of its 10 estimates of 2000 particles given a tenth of the FAB seed's evaluations (training + protocol), so as many intermediate distributions as fit.\n\n");
    md.push_str("| target | fab-jax MAE | fab MAE ± SE | fab target evaluations | fab-jax target evaluations | SMC baseline MAE ± SE | wall time (training, per seed) | seeds |\n|---|---|---|---|---|---|---|---|\n");
    for (b, outs) in rows {
        let get = |path: &[&str]| -> Vec<f64> {
            outs.iter().filter_map(|o| path.iter().try_fold(o, |v, k| v.get(*k)).and_then(Value::as_f64)).collect()
        };
        let threads = thread_counts(&get(&["training_threads"]));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} ({}) | {} | {:.0} s on {} thread(s) | {} |",
            b.name,
            b.fabjax_mae,
            pm(&get(&["fab", "mae"])),
            sci(mean_se(&get(&["training_target_evaluations"])).0),
            sci(b.fabjax_evaluations),
            b.fabjax_settings,
            pm(&get(&["baseline", "mae"])),
            mean_se(&get(&["training_wall_s"])).0,
            threads,
            outs.len()
        );
    }
    md.push_str(&per_seed(rows));
    md
}

/// The training thread counts of a row's seeds: `1`, or `1 (seed 4: 2)` when one seed differs from the rest.
fn thread_counts(per_seed: &[f64]) -> String {
    let Some(&first) = per_seed.first() else { return "?".into() };
    let others: Vec<String> = per_seed
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != first)
        .map(|(seed, t)| format!("seed {seed}: {t}"))
        .collect();
    if others.is_empty() { format!("{first}") } else { format!("{first} ({})", others.join(", ")) }
}

/// One row per seed: MAE, flow (AIS) ESS of the final evaluation, the baseline and the gradient guard's work.
fn per_seed(rows: &[(&&Benchmark, Vec<Value>)]) -> String {
    let mut md = String::from(
        "\nPer seed:\n\n| target | seed | fab MAE | flow ESS (AIS ESS) % | SMC baseline MAE (its K) | steps applied / guard-skipped / guard-clipped / skipped as non-finite | training s |\n|---|---|---|---|---|---|---|\n",
    );
    for (b, outs) in rows {
        for o in outs {
            let f =
                |path: &[&str]| path.iter().try_fold(o, |v, k| v.get(*k)).and_then(Value::as_f64).unwrap_or(f64::NAN);
            let c = |k: &str| o["counters"][k].as_u64().unwrap_or(0);
            let _ = writeln!(
                md,
                "| {} | {} | {:.5} | {:.2} ({:.2}) | {:.4} ({}) | {} / {} / {} / {} | {:.0} |",
                b.name,
                o["seed"],
                f(&["fab", "mae"]),
                f(&["flow_ess"]),
                f(&["ais_ess"]),
                f(&["baseline", "mae"]),
                o["baseline_n_intermediate"],
                c("n_steps_applied"),
                c("n_skipped_grad_guard"),
                c("n_clipped_grad_guard"),
                c("n_skipped_non_finite_loss") + c("n_skipped_non_finite_grad"),
                f(&["training_wall_s"]),
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::thread_counts;

    #[test]
    fn a_seed_trained_on_other_threads_is_named() {
        assert_eq!(thread_counts(&[1.0, 1.0, 1.0]), "1");
        assert_eq!(thread_counts(&[1.0, 1.0, 1.0, 1.0, 2.0]), "1 (seed 4: 2)");
        assert_eq!(thread_counts(&[]), "?");
    }
}
