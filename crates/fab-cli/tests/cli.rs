//! End-to-end tests of the `fab` binary: a killed run resumes to the same flow, bad configs fail before any work,
//! sampling writes a readable .npy, plotting reads a run without its checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fab"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fab-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small reverse-KL run on the MoG: 200 iterations, a checkpoint every 5, a light final evaluation.
fn small_config(dir: &Path) -> PathBuf {
    let text = include_str!("../../../configs/mog_kl_2021.ron")
        .replace("budget: Iterations(1000)", "budget: Iterations(200)")
        .replace("        every: 100", "        every: 0")
        .replace("n_samples_final: 100000", "n_samples_final: 2000")
        .replace("n_target_samples: 10000", "n_target_samples: 1000")
        .replace("expectation_groups: (100, 1000)", "expectation_groups: (4, 100)")
        .replace("checkpoint_every: 100", "checkpoint_every: 5");
    let path = dir.join("small.ron");
    std::fs::write(&path, text).unwrap();
    path
}

/// A scratch directory holding a finished 3-iteration run of [`small_config`], and that run's directory.
fn three_iteration_run(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let config = small_config(&dir);
    run_ok(fab().args(["train", "--quiet", "--iterations", "3", "--out"]).arg(dir.join("runs")).arg(&config));
    let run = dir.join("runs/mog_kl_2021-seed2");
    (dir, run)
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_killed_run_resumes_to_the_same_flow_bit_for_bit() {
    let dir = scratch("resume");
    let config = small_config(&dir);
    run_ok(fab().args(["train", "--quiet", "--out"]).arg(dir.join("straight")).arg(&config));
    let params = |path: PathBuf| -> Vec<u64> {
        let flow = fab_flow::Flow::load_safetensors(path).unwrap();
        flow.params().iter().map(|p| p.to_bits()).collect()
    };
    let straight = params(dir.join("straight/mog_kl_2021-seed2/flow.safetensors"));

    // Start the same run, kill it once it has written a checkpoint, then resume it.
    let out = dir.join("killed");
    let mut child = fab()
        .args(["train", "--quiet", "--out"])
        .arg(&out)
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run_dir = out.join("mog_kl_2021-seed2");
    let started = Instant::now();
    while !run_dir.join("checkpoint.fab").exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let ckpt =
        fab_train::checkpoint::load(&run_dir.join("checkpoint.fab")).expect("a complete checkpoint survives the kill");
    let killed_at = ckpt.meta["iteration"].as_u64().unwrap();
    assert!(
        killed_at < 200,
        "the run finished before it could be killed (checkpoint at {killed_at}); the test proves nothing"
    );
    run_ok(fab().args(["train", "--quiet", "--resume"]).arg(&run_dir));
    let resumed = params(run_dir.join("flow.safetensors"));
    assert!(straight == resumed, "the resumed run's flow differs from the uninterrupted run's");
    // The metrics file has exactly one line per iteration after the resume (none duplicated, none lost).
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let iterations: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "iteration")
        .map(|v| v["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(iterations, (0..200).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_config_fails_before_any_work_naming_file_line_and_field() {
    let dir = scratch("bad");
    let config = small_config(&dir);
    let text = std::fs::read_to_string(&config).unwrap().replace("batch_size: 100", "batch_size: 0");
    std::fs::write(&config, &text).unwrap();
    let err = train_refused(&dir, &config, &[]);
    let line = text.lines().position(|l| l.contains("batch_size")).unwrap() + 1;
    assert!(err.contains(&format!("small.ron:{line}: field `batch_size`")), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `fab train CONFIG EXTRA…` into `dir/runs`, asserts that it fails without creating a run directory, and
/// returns its stderr.
fn train_refused(dir: &Path, config: &Path, extra: &[&str]) -> String {
    let out = fab().args(["train", "--quiet"]).args(extra).arg("--out").arg(dir.join("runs")).arg(config).output();
    let out = out.unwrap();
    assert!(!out.status.success(), "fab train accepted {extra:?}");
    assert!(!dir.join("runs").exists(), "a run directory was created for a refused config");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command-line override is checked like a config field, before the run directory exists, and the reason is said
/// once.
#[test]
fn a_bad_override_fails_before_any_work_naming_the_option() {
    let dir = scratch("bad-override");
    let config = small_config(&dir);
    let err = train_refused(&dir, &config, &["--iterations", "0"]);
    assert!(err.contains("--iterations") && err.contains("field `budget`"), "{err}");
    assert_eq!(err.matches("must be positive").count(), 1, "the reason is repeated: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sample_writes_an_npy_with_weights() {
    let (dir, run) = three_iteration_run("sample");
    let npy = dir.join("s.npy");
    run_ok(fab().args(["sample", "-n", "50", "--out"]).arg(&npy).arg(&run));
    let a: ndarray::Array2<f64> = ndarray_npy::read_npy(&npy).unwrap();
    assert_eq!(a.dim(), (50, 4));
    assert!(a.iter().all(|v| v.is_finite()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `fab plot` draws from a run directory's checkpoint and, when the checkpoint was left out (results/ keeps only the
/// flow of runs whose checkpoint holds a replay buffer), from its final `flow.safetensors`: the same samples, so the
/// same PNG byte for byte.
#[test]
fn plot_reads_a_run_without_its_checkpoint_from_the_final_flow() {
    let (dir, run) = three_iteration_run("plot");
    let (with, without) = (dir.join("with.png"), dir.join("without.png"));
    run_ok(fab().args(["plot", "-n", "300", "--out"]).arg(&with).arg(&run));
    std::fs::remove_file(run.join("checkpoint.fab")).unwrap();
    run_ok(fab().args(["plot", "-n", "300", "--out"]).arg(&without).arg(&run));
    let (a, b) = (std::fs::read(&with).unwrap(), std::fs::read(&without).unwrap());
    assert!(a.len() > 10_000, "suspiciously small PNG");
    assert!(a == b, "the figure differs when drawn from flow.safetensors");
    std::fs::remove_file(run.join("flow.safetensors")).unwrap();
    let out = fab().args(["plot", "--out"]).arg(&without).arg(&run).output().unwrap();
    assert!(!out.status.success(), "plot succeeded on a run with neither checkpoint nor flow");
    std::fs::remove_dir_all(&dir).unwrap();
}
