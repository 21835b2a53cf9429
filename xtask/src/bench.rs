//! `cargo xtask bench`: brief criterion runs for figures, and gungraun instruction counts gated against the
//! committed baseline in `bench-baselines/`.
//!
//! Wall-clock figures on this shared 2-core machine swing by tens of percent, so they are reported, never gated.
//! The gate is callgrind's instruction count (deterministic, the same under load): each gungraun benchmark is
//! compared with the baseline saved in `bench-baselines/` (`GUNGRAUN_HOME`), and a rise above
//! [`IR_LIMIT_PERCENT`] fails the task. Not part of `cargo test` or CI: it needs valgrind and `gungraun-runner`.

use crate::util::{cargo, project_root, run_checked};
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The gungraun library version in the crates' dev-dependencies; the runner must match it exactly.
const GUNGRAUN_VERSION: &str = "0.20.0";
/// Name of the committed baseline.
const BASELINE: &str = "main";
/// Largest accepted rise of the instruction count (path lengths leak into counts slightly, so not 0).
const IR_LIMIT_PERCENT: f64 = 2.0;

/// One gungraun bench target and the benchmark ids (`group/function.id`) it must have a baseline for.
struct GungraunBench {
    package: &'static str,
    bench: &'static str,
    ids: &'static [&'static str],
}

/// The short list of instruction-count benchmarks.
const GUNGRAUN_BENCHES: &[GungraunBench] = &[
    GungraunBench {
        package: "fab-flow",
        bench: "gungraun_flow",
        ids: &["flow_passes/log_q_grad_x.mog_2021_b64", "flow_passes/log_q_grad_x.many_well_iclr_d16_b16"],
    },
    GungraunBench {
        package: "fab-mcmc",
        bench: "gungraun_hmc",
        ids: &["hmc/hmc_transition.many_well_d16_128_chains_5_leapfrog"],
    },
    GungraunBench { package: "fab-ais", bench: "gungraun_ais", ids: &["ais/ais_run.mog_2021_100_points"] },
];

/// Criterion bench targets run briefly for figures: `(package, bench)`.
const CRITERION_BENCHES: &[(&str, &str)] = &[("fab-flow", "flow"), ("fab-mcmc", "leapfrog")];

/// Options of `cargo xtask bench`.
pub struct Options {
    /// Record a new baseline instead of comparing (after a deliberate change or a toolchain update).
    pub save_baseline: bool,
    /// Skip the criterion (wall-clock) runs.
    pub skip_criterion: bool,
    /// Run `cargo install gungraun-runner` if the runner is missing or has the wrong version.
    pub install_runner: bool,
}

/// Runs the task.
pub fn run(opts: Options) -> anyhow::Result<()> {
    ensure_runner(opts.install_runner)?;
    let home = project_root().join("bench-baselines");
    if !opts.save_baseline {
        check_baselines_exist(&home)?;
    }
    let mut summary = Vec::new();
    if !opts.skip_criterion {
        for (package, bench) in CRITERION_BENCHES {
            summary.extend(run_criterion(package, bench)?);
        }
    }
    let mut regressions = Vec::new();
    for b in GUNGRAUN_BENCHES {
        if let Some(failure) = run_gungraun(b, &home, opts.save_baseline)? {
            regressions.push(failure);
        }
    }
    if !summary.is_empty() {
        eprintln!("\ncriterion figures (wall clock, this machine, not gated):");
        summary.iter().for_each(|l| eprintln!("  {l}"));
    }
    if opts.save_baseline {
        eprintln!("\nsaved gungraun baseline `{BASELINE}` in {}; commit it.", home.display());
        return Ok(());
    }
    if !regressions.is_empty() {
        bail!(
            "instruction counts rose by more than {IR_LIMIT_PERCENT}% against bench-baselines/ in: {}\n\
             (if the rise is intended, re-record with `cargo xtask bench --save-baseline` and commit bench-baselines/)",
            regressions.join(", ")
        );
    }
    eprintln!("\ngungraun: every instruction count within {IR_LIMIT_PERCENT}% of bench-baselines/");
    Ok(())
}

/// Checks that `gungraun-runner` with the library's version is on the PATH; installs it when asked.
fn ensure_runner(install: bool) -> anyhow::Result<()> {
    let install_line = format!("cargo install gungraun-runner --version {GUNGRAUN_VERSION} --locked");
    let found = Command::new("gungraun-runner")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match found {
        Some(v) if v.contains(GUNGRAUN_VERSION) => return Ok(()),
        Some(v) if !install => {
            bail!("gungraun-runner reports `{v}`, the benches need {GUNGRAUN_VERSION}: run `{install_line}`")
        }
        None if !install => bail!(
            "gungraun-runner is not installed (the instruction-count benchmarks need it and valgrind): run \
             `{install_line}` (about 4 minutes on 2 cores), or `cargo xtask bench --install-runner`"
        ),
        _ => {}
    }
    let mut cmd = cargo();
    cmd.args(["install", "gungraun-runner", "--version", GUNGRAUN_VERSION, "--locked"]);
    run_checked(cmd)
}

/// The directory gungraun keeps one benchmark's files in under `home`.
fn baseline_dir(home: &Path, b: &GungraunBench, id: &str) -> PathBuf {
    home.join(b.package).join(b.bench).join(id)
}

/// True when `dir` holds a saved callgrind profile of the baseline.
fn has_baseline_profile(dir: &Path) -> bool {
    let suffix = format!(".out.base@{BASELINE}");
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(&suffix)))
        .unwrap_or(false)
}

/// Fails when a listed benchmark has no saved baseline: gungraun would silently create one and pass.
fn check_baselines_exist(home: &Path) -> anyhow::Result<()> {
    let missing: Vec<String> = GUNGRAUN_BENCHES
        .iter()
        .flat_map(|b| b.ids.iter().map(move |id| (b, *id)))
        .filter(|(b, id)| !has_baseline_profile(&baseline_dir(home, b, id)))
        .map(|(b, id)| format!("{}/{}/{id}", b.package, b.bench))
        .collect();
    if !missing.is_empty() {
        bail!(
            "no committed baseline `{BASELINE}` in {} for: {}\n(record one with `cargo xtask bench --save-baseline` \
             and commit bench-baselines/)",
            home.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Runs one gungraun bench target; returns its name if it regressed (gungraun exits with 3 on a regression).
fn run_gungraun(b: &GungraunBench, home: &Path, save: bool) -> anyhow::Result<Option<String>> {
    let mut cmd = cargo();
    let mode = if save { format!("--save-baseline={BASELINE}") } else { format!("--baseline={BASELINE}") };
    cmd.args(["bench", "-p", b.package, "--bench", b.bench, "--", &mode])
        .arg(format!("--callgrind-limits=ir={IR_LIMIT_PERCENT}%"))
        .env("GUNGRAUN_HOME", home)
        // One rayon thread: thread scheduling under valgrind must not change the counts.
        .env("RAYON_NUM_THREADS", "1");
    let line = format!("{cmd:?}");
    eprintln!("$ {line}");
    let status = cmd.status().with_context(|| format!("failed to start {line}"))?;
    match status.code() {
        Some(0) => Ok(None),
        Some(3) if !save => Ok(Some(format!("{}/{}", b.package, b.bench))),
        _ => bail!("{line} exited with {status}"),
    }
}

/// Runs one criterion bench target briefly and returns its `time:`/`thrpt:` lines, prefixed by benchmark name.
fn run_criterion(package: &str, bench: &str) -> anyhow::Result<Vec<String>> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", package, "--bench", bench, "--"])
        .args(["--warm-up-time", "1", "--measurement-time", "2", "--noplot"])
        .stdout(Stdio::piped());
    let line = format!("{cmd:?}");
    eprintln!("$ {line}");
    let mut child = cmd.spawn().with_context(|| format!("failed to start {line}"))?;
    let stdout = child.stdout.take().context("criterion stdout")?;
    let mut figures = Vec::new();
    let mut current = String::new();
    for text in BufReader::new(stdout).lines() {
        let text = text?;
        println!("{text}");
        let trimmed = text.trim();
        if let Some(rest) = trimmed.strip_prefix("time:").or_else(|| trimmed.strip_prefix("thrpt:")) {
            let what = if trimmed.starts_with("time:") { "time" } else { "thrpt" };
            figures.push(format!("{current}  {what} {}", rest.trim()));
        } else if !trimmed.is_empty() && !text.starts_with(' ') && !trimmed.contains(':') {
            current = trimmed.to_string();
        } else if let Some((name, rest)) = trimmed.split_once("time:") {
            // Short names share the line with their time: `name   time: [..]`.
            current = name.trim().to_string();
            figures.push(format!("{current}  time {}", rest.trim()));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{line} exited with {status}");
    }
    Ok(figures)
}
