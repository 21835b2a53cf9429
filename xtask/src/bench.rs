//! `cargo xtask bench`: brief criterion runs for figures, and gungraun instruction counts gated against the
//! committed baseline in `bench-baselines/`, with the history of recorded baselines and its plot.
//!
//! Wall-clock figures on this shared 2-core machine swing by tens of percent, so they are reported, never gated.
//! The gate is callgrind's instruction count (deterministic, the same under load): each gungraun benchmark's
//! total `Ir` is read from its profile and compared with the baseline profile saved in `bench-baselines/`
//! (`GUNGRAUN_HOME`); a rise above [`IR_LIMIT_PERCENT`] fails the task, naming the benchmark and its change
//! ([`gate`]). Each `--save-baseline` appends the new counts to `bench-baselines/history.jsonl` ([`history`]) and
//! redraws `bench-baselines/history.png` ([`plot`]). It needs valgrind and `gungraun-runner`; `.ci/run` runs it
//! with `--skip-criterion`.

mod gate;
mod history;
mod plot;

use crate::util::{cargo, project_root, run_checked};
use anyhow::{Context, bail};
use gate::Comparison;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// The gungraun library version in the crates' dev-dependencies; the runner must match it exactly.
const GUNGRAUN_VERSION: &str = "0.20.0";
/// Name of the committed baseline.
const BASELINE: &str = "main";
/// Largest accepted rise of the instruction count (path lengths leak into counts slightly, so not 0).
const IR_LIMIT_PERCENT: f64 = 2.0;
/// The history of recorded baselines and its plot, in `bench-baselines/`.
const HISTORY_FILE: &str = "history.jsonl";
const HISTORY_PLOT: &str = "history.png";

/// One gungraun bench target and the benchmark ids (`group/function.id`) it must have a baseline for.
struct GungraunBench {
    package: &'static str,
    bench: &'static str,
    ids: &'static [&'static str],
}

/// The short list of instruction-count benchmarks (each well under a second of callgrind time).
const GUNGRAUN_BENCHES: &[GungraunBench] = &[
    GungraunBench {
        package: "fab-flow",
        bench: "gungraun_flow",
        ids: &[
            "flow_passes/log_q_grad_x.mog_2021_b64",
            "flow_passes/log_q_grad_x.many_well_iclr_d16_b16",
            "flow_passes/log_q_grad_params.mog_2021_b64",
            "flow_passes/log_q_grad_params.many_well_iclr_d16_b16",
        ],
    },
    GungraunBench {
        package: "fab-mcmc",
        bench: "gungraun_hmc",
        ids: &["hmc/hmc_transition.many_well_d16_128_chains_5_leapfrog"],
    },
    GungraunBench { package: "fab-ais", bench: "gungraun_ais", ids: &["ais/ais_run.mog_2021_100_points"] },
    GungraunBench {
        package: "fab-train",
        bench: "fab_iteration",
        ids: &["fab_2021/fab_iteration.many_well16_2021_b16"],
    },
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
    /// Only redraw the history plot from `bench-baselines/history.jsonl`; run no benchmark.
    pub plot: bool,
}

/// Runs the task.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let home = project_root().join("bench-baselines");
    if opts.plot && !opts.save_baseline {
        return plot_history(&home);
    }
    ensure_valgrind()?;
    ensure_runner(opts.install_runner)?;
    if !opts.save_baseline {
        check_baselines_exist(&home)?;
    }
    let mut summary = Vec::new();
    if !opts.skip_criterion {
        for (package, bench) in CRITERION_BENCHES {
            summary.extend(run_criterion(package, bench)?);
        }
    }
    let started = SystemTime::now();
    run_gungraun(&home, opts.save_baseline)?;
    let mut comparisons = Vec::new();
    let mut saved = Vec::new();
    for b in GUNGRAUN_BENCHES {
        for id in b.ids {
            let dir = baseline_dir(&home, b, id);
            if opts.save_baseline {
                saved.push((benchmark_name(b, id), fresh_profile(&profile_path(&dir, id, true), started)?));
            } else {
                let baseline = gate::read_instructions(&profile_path(&dir, id, true))?;
                let current = fresh_profile(&profile_path(&dir, id, false), started)?;
                comparisons.push(Comparison { benchmark: benchmark_name(b, id), baseline, current });
            }
        }
    }
    if !summary.is_empty() {
        eprintln!("\ncriterion figures (wall clock, this machine, not gated):");
        summary.iter().for_each(|l| eprintln!("  {l}"));
    }
    if opts.save_baseline {
        return record_history(&home, &saved);
    }
    eprintln!("\n{}", gate::report(&comparisons, IR_LIMIT_PERCENT));
    if let Some(failure) = gate::failure(&comparisons, IR_LIMIT_PERCENT) {
        bail!(failure);
    }
    eprintln!("gungraun: every instruction count within {IR_LIMIT_PERCENT:+} % of bench-baselines/");
    Ok(())
}

/// `package/bench/group/function.id`, the name used in messages and in the history.
fn benchmark_name(b: &GungraunBench, id: &str) -> String {
    format!("{}/{}/{id}", b.package, b.bench)
}

/// The callgrind profile gungraun writes for benchmark `id` in `dir`: the saved baseline, or this run's.
fn profile_path(dir: &Path, id: &str, baseline: bool) -> PathBuf {
    let function_id = id.rsplit('/').next().unwrap_or(id);
    let suffix = if baseline { format!(".base@{BASELINE}") } else { String::new() };
    dir.join(format!("callgrind.{function_id}.out{suffix}"))
}

/// The instruction count of the profile at `path`, which this run must have written (after `started`): a stale
/// profile from an earlier run must neither pass the gate nor be recorded as a new baseline.
fn fresh_profile(path: &Path, started: SystemTime) -> anyhow::Result<u64> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("gungraun wrote no profile {}", path.display()))?;
    if modified < started {
        bail!("{} is older than this run: gungraun did not run this benchmark", path.display());
    }
    gate::read_instructions(path)
}

/// Appends the saved counts to `history.jsonl` with the commit, date and tool versions, then redraws the plot.
fn record_history(home: &Path, saved: &[(String, u64)]) -> anyhow::Result<()> {
    let (commit, dirty) = git_head()?;
    let (date, rustc, valgrind) = (history::now_utc(), tool_version("rustc")?, tool_version("valgrind")?);
    let records: Vec<history::Record> = saved
        .iter()
        .map(|(benchmark, instructions)| history::Record {
            commit: commit.clone(),
            dirty,
            date: date.clone(),
            rustc: rustc.clone(),
            valgrind: valgrind.clone(),
            gungraun: GUNGRAUN_VERSION.into(),
            benchmark: benchmark.clone(),
            instructions: *instructions,
            note: None,
        })
        .collect();
    history::append(&home.join(HISTORY_FILE), &records)?;
    eprintln!("\nsaved gungraun baseline `{BASELINE}` in {}:", home.display());
    saved.iter().for_each(|(b, n)| eprintln!("  {b}: {} Ir", crate::util::thousands(*n)));
    eprintln!(
        "appended {} records to {HISTORY_FILE} (commit {commit}{}).",
        records.len(),
        if dirty { ", dirty" } else { "" }
    );
    plot_history(home)?;
    eprintln!("commit bench-baselines/.");
    Ok(())
}

/// Draws `history.png` from `history.jsonl`.
fn plot_history(home: &Path) -> anyhow::Result<()> {
    let records = history::read(&home.join(HISTORY_FILE))?;
    let out = home.join(HISTORY_PLOT);
    plot::render(&out, &records)?;
    eprintln!("wrote {} ({} records)", out.display(), records.len());
    Ok(())
}

/// `git rev-parse HEAD`, and whether tracked files outside `bench-baselines/` differ from it.
fn git_head() -> anyhow::Result<(String, bool)> {
    let root = project_root();
    let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&root).output().context("running git")?;
    if !out.status.success() {
        bail!("`git rev-parse HEAD` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let diff = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--", ".", ":(exclude)bench-baselines"])
        .current_dir(&root)
        .status()
        .context("running git diff")?;
    Ok((commit, !diff.success()))
}

/// The first line of `<tool> --version` (rustc through the toolchain cargo uses).
fn tool_version(tool: &str) -> anyhow::Result<String> {
    let program = match tool {
        "rustc" => std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()),
        other => other.into(),
    };
    let out = Command::new(&program)
        .arg("--version")
        .current_dir(project_root())
        .output()
        .with_context(|| format!("running {tool} --version"))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_string())
}

/// Fails with what to do when valgrind (whose callgrind counts the instructions) is not on the PATH.
fn ensure_valgrind() -> anyhow::Result<()> {
    let found = Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        bail!(
            "valgrind is not on the PATH: the instruction-count benchmarks run under its callgrind tool (install \
             it, e.g. `apt-get install valgrind`)"
        );
    }
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

/// Fails when a listed benchmark has no saved baseline: gungraun would silently create one and pass.
fn check_baselines_exist(home: &Path) -> anyhow::Result<()> {
    let missing: Vec<String> = GUNGRAUN_BENCHES
        .iter()
        .flat_map(|b| b.ids.iter().map(move |id| (b, *id)))
        .filter(|(b, id)| !profile_path(&baseline_dir(home, b, id), id, true).is_file())
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

/// Runs every gungraun bench target, saving its profiles as the baseline or next to it for comparison.
///
/// One cargo invocation for all of them: cargo resolves features per invocation, so separate `-p` runs would
/// build the dependency graph once per package.
fn run_gungraun(home: &Path, save: bool) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.arg("bench");
    for b in GUNGRAUN_BENCHES {
        cmd.args(["-p", b.package, "--bench", b.bench]);
    }
    let mode = if save { format!("--save-baseline={BASELINE}") } else { format!("--baseline={BASELINE}") };
    cmd.args(["--", &mode])
        .env("GUNGRAUN_HOME", home)
        // One rayon thread: thread scheduling under valgrind must not change the counts.
        .env("RAYON_NUM_THREADS", "1");
    run_checked(cmd)
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
