//! End-to-end tests of the `fab` binary: a killed run resumes to the same flow, bad configs fail before any work,
//! sampling writes a readable .npy, plotting reads a run without its checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `fab` binary under test; `FAB_BIN` points the tests at another build (e.g. the one before a fix, to see a
/// test fail).
fn fab() -> Command {
    Command::new(std::env::var_os("FAB_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_fab").into()))
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

/// The small config of [`small_config`] with `(from, to)` replacements applied, written to `dir/NAME.ron`.
fn edited_config(dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(small_config(dir)).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "the config has no {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until `cond` holds (at most 120 s).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` with its output captured, killing it after `secs` seconds (a process that should have refused at once
/// but trains instead).
fn output_within(cmd: &mut Command, secs: u64) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Sends `signal` (e.g. "INT") to process `pid` with kill(1).
fn send_signal(signal: &str, pid: u32) {
    let status = Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The `kind == "iteration"` indices of a metrics file, in file order.
fn iteration_lines(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "iteration")
        .map(|v| v["iteration"].as_u64().unwrap())
        .collect()
}

fn checkpoint_iteration(run: &Path) -> u64 {
    fab_train::checkpoint::load(&run.join("checkpoint.fab")).unwrap().meta["iteration"].as_u64().unwrap()
}

/// Item 1 of issue 15: a second process refuses a run directory that another one is training in, naming it.
#[test]
fn a_second_process_refuses_a_run_directory_in_use_naming_its_holder() {
    let dir = scratch("lock");
    let config = edited_config(&dir, "long", &[("budget: Iterations(200)", "budget: Iterations(1000000)")]);
    let mut first = fab();
    first.args(["train", "--quiet", "--out"]).arg(dir.join("runs")).arg(&config);
    let mut first = first.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let run = dir.join("runs/mog_kl_2021-seed2");
    wait_for("the first checkpoint", || run.join("checkpoint.fab").exists());
    let second = output_within(fab().args(["train", "--quiet", "--resume"]).arg(&run), 30);
    let third =
        output_within(fab().args(["train", "--quiet", "--force", "--out"]).arg(dir.join("runs")).arg(&config), 30);
    let still_running = first.try_wait().unwrap().is_none();
    let _ = first.kill();
    first.wait().unwrap();
    assert!(still_running, "the first process stopped while the second ran");
    for out in [second, third] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a second process trained in a directory in use");
        assert!(err.contains(&format!("process {}", first.id())), "the refusal does not name the holder: {err}");
    }
    // The lock dies with its holder: once the first process is gone, the run resumes.
    run_ok(fab().args(["train", "--quiet", "--iterations", "40", "--final-samples", "10", "--resume"]).arg(&run));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 2: with stderr not a terminal, every periodic evaluation is logged as a plain line.
#[test]
fn without_a_terminal_every_evaluation_is_logged_as_a_plain_line() {
    let dir = scratch("plain");
    let config = edited_config(&dir, "eval", &[("        every: 0", "        every: 2")]);
    let out = fab().args(["train", "--iterations", "7", "--out"]).arg(dir.join("runs")).arg(&config).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for k in [2, 4, 6] {
        assert!(err.contains(&format!("iteration {k}: flow ESS")), "evaluation {k} missing from stderr:\n{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 3: SIGINT or SIGTERM finishes the iteration, writes a checkpoint, says how to resume and exits with 130; the
/// run then resumes with every iteration logged exactly once.
#[test]
fn sigint_and_sigterm_checkpoint_the_current_iteration_and_say_how_to_resume() {
    let dir = scratch("signal");
    let config = edited_config(
        &dir,
        "long",
        &[("budget: Iterations(200)", "budget: Iterations(1000000)"), ("checkpoint_every: 5", "checkpoint_every: 0")],
    );
    for signal in ["INT", "TERM"] {
        let out = dir.join(signal);
        let mut child = fab();
        child.args(["train", "--quiet", "--out"]).arg(&out).arg(&config);
        let child = child.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let run = out.join("mog_kl_2021-seed2");
        wait_for("metrics", || std::fs::metadata(run.join("metrics.jsonl")).is_ok_and(|m| m.len() > 0));
        send_signal(signal, child.id());
        let result = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(130), "SIGTERM/SIGINT: {:?}\n{err}", result.status);
        assert!(err.contains(&format!("fab train --resume {}", run.display())), "{err}");
        let k = checkpoint_iteration(&run);
        assert!(k > 0, "no iteration was checkpointed");
        run_ok(
            fab()
                .args(["train", "--quiet", "--final-samples", "10", "--iterations"])
                .arg((k + 3).to_string())
                .arg("--resume")
                .arg(&run),
        );
        assert_eq!(iteration_lines(&run), (0..k + 3).collect::<Vec<_>>(), "{signal}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 4: a run that stopped before its first checkpoint is taken over by a new run, or resumed from iteration 0.
#[test]
fn a_run_that_stopped_before_its_first_checkpoint_is_taken_over_or_resumed() {
    let dir = scratch("no-ckpt");
    let config = small_config(&dir);
    let run = dir.join("runs/mog_kl_2021-seed2");
    let stopped_early = || {
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::copy(&config, run.join("config.ron")).unwrap();
        std::fs::write(run.join("metrics.jsonl"), "{\"kind\":\"iteration\",\"iteration\":0,\"elapsed_s\":0.1}\n{\"ki")
            .unwrap();
    };
    stopped_early();
    let args = ["train", "--quiet", "--iterations", "4", "--final-samples", "10", "--out"];
    let out = fab().args(args).arg(dir.join("runs")).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stopped before its first checkpoint"), "{err}");
    assert_eq!(iteration_lines(&run), vec![0, 1, 2, 3]);

    stopped_early();
    let mut resume = fab();
    resume.args(["train", "--quiet", "--iterations", "4", "--final-samples", "10", "--resume"]).arg(&run);
    let out = resume.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("starting it over from iteration 0"), "{err}");
    assert_eq!(iteration_lines(&run), vec![0, 1, 2, 3]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 5: a diverging FAB run says at which iteration, what it means and what to try, after writing the last good
/// checkpoint.
#[test]
fn a_diverging_run_names_the_iteration_the_cause_and_the_remedy() {
    let dir = scratch("diverge");
    let text = include_str!("../../../configs/mog_fab_2021.ron")
        .replace("lr: 5e-4", "lr: 0.05")
        .replace("        every: 100", "        every: 0")
        .replace("n_samples_final: 100000", "n_samples_final: 100");
    let config = dir.join("lr.ron");
    std::fs::write(&config, text).unwrap();
    let out = fab().args(["train", "--quiet", "--out"]).arg(dir.join("runs")).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run did not diverge; the test proves nothing");
    assert!(err.contains("collapsed or diverged") && err.contains("lower learning rate"), "{err}");
    let k: u64 = err
        .split("iteration ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no iteration named: {err}"));
    assert_eq!(checkpoint_iteration(&dir.join("runs/mog_fab_2021-seed2")), k, "the last good state was not saved");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 6: sizes that cannot fit in memory and counts that would never end are refused before any work.
#[test]
fn configs_that_cannot_fit_in_memory_or_would_never_end_are_refused() {
    let dir = scratch("bounds");
    for (from, to, field, reason) in [
        ("batch_size: 100", "batch_size: 1000000000000000", "field `batch_size`", "memory"),
        ("n_samples_final: 2000", "n_samples_final: 10000000000000", "field `eval.n_samples_final`", "memory"),
        (
            "expectation_groups: (4, 100)",
            "expectation_groups: (100000000, 100000000)",
            "field `eval.expectation_groups`",
            "memory",
        ),
    ] {
        let config = edited_config(&dir, "big", &[(from, to)]);
        let err = train_refused(&dir, &config, &[]);
        assert!(err.contains(field) && err.contains(reason), "{to}: {err}");
    }
    let fab_text = include_str!("../../../configs/mog_fab_2021.ron").replace("n_leapfrog: 5", "n_leapfrog: 100000000");
    let config = dir.join("leapfrog.ron");
    std::fs::write(&config, fab_text).unwrap();
    let err = train_refused(&dir, &config, &[]);
    assert!(err.contains("field `method.ais.transition.n_leapfrog`: must be at most"), "{err}");
    // Command-line counts are bounded the same way.
    let err = train_refused(&dir, &small_config(&dir), &["--final-samples", "10000000000000"]);
    assert!(err.contains("eval.n_samples_final") && err.contains("memory"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 7: `fab eval RUN -n 0` is refused with a message, not a panic.
#[test]
fn eval_with_zero_samples_is_refused_without_a_panic() {
    let (dir, run) = three_iteration_run("eval-zero");
    let out = fab().args(["eval", "-n", "0"]).arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.status.code() != Some(101), "{:?}: {err}", out.status);
    assert!(err.contains("-n") && !err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 8: values that cannot be meant are refused naming the field.
#[test]
fn values_that_cannot_be_meant_are_refused() {
    let dir = scratch("unmeant");
    for (from, to, field) in [
        ("lr: 5e-4", "lr: 1e10", "field `optimizer.lr`"),
        ("n_blocks: 10", "n_blocks: 0", "field `flow.n_blocks`"),
        ("name: \"mog_kl_2021\"", "name: \"mog\\nkl\"", "field `name`"),
    ] {
        let config = edited_config(&dir, "unmeant", &[(from, to)]);
        let err = train_refused(&dir, &config, &[]);
        assert!(err.contains(field), "{to}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Item 9: the same seed and config give byte-identical flow and checkpoint files, whatever the thread count.
#[test]
fn same_seed_and_config_give_byte_identical_files_for_any_thread_count() {
    let dir = scratch("bytes");
    let config = small_config(&dir);
    let mut hashes = Vec::new();
    for (i, threads) in ["1", "2", "1", "2"].into_iter().enumerate() {
        let out = dir.join(format!("t{i}"));
        let args = ["--threads", threads, "train", "--quiet", "--iterations", "3", "--final-samples", "10", "--out"];
        run_ok(fab().args(args).arg(&out).arg(&config));
        let run = out.join("mog_kl_2021-seed2");
        hashes.push((sha256(&run.join("flow.safetensors")), sha256(&run.join("checkpoint.fab"))));
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "files differ between identical runs: {hashes:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 10: `fab eval` and `fab sample` read a run without its checkpoint from its final `flow.safetensors`.
#[test]
fn eval_and_sample_read_a_run_without_its_checkpoint_from_the_final_flow() {
    let (dir, run) = three_iteration_run("no-ckpt-eval");
    let npy = dir.join("with.npy");
    run_ok(fab().args(["sample", "-n", "20", "--out"]).arg(&npy).arg(&run));
    let with = std::fs::read(&npy).unwrap();
    std::fs::remove_file(run.join("checkpoint.fab")).unwrap();
    let report = run_ok(fab().args(["eval", "-n", "200"]).arg(&run));
    assert!(report.contains("flow_ess"), "{report}");
    run_ok(fab().args(["sample", "-n", "20", "--out"]).arg(&npy).arg(&run));
    assert!(std::fs::read(&npy).unwrap() == with, "samples from flow.safetensors differ from the checkpoint's");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 11: on resume, `--final-samples` and `--iterations` are honoured and written to `config.ron`; `--out`,
/// `--force` and `--seed` are refused.
#[test]
fn resume_honours_or_refuses_every_flag_and_keeps_config_ron_true() {
    let (dir, run) = three_iteration_run("resume-flags");
    for flag in [&["--out", "elsewhere"][..], &["--force"], &["--seed", "3"]] {
        let out = fab().args(["train", "--quiet"]).args(flag).arg("--resume").arg(&run).output().unwrap();
        assert!(!out.status.success(), "--resume accepted {flag:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(flag[0]), "the refusal does not name {}", flag[0]);
    }
    run_ok(fab().args(["train", "--quiet", "--iterations", "5", "--final-samples", "123", "--resume"]).arg(&run));
    let config = std::fs::read_to_string(run.join("config.ron")).unwrap();
    assert!(config.contains("Iterations(5)") && config.contains("n_samples_final: 123"), "{config}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!((last["kind"].as_str(), last["n_samples"].as_u64()), (Some("final"), Some(123)));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 12: a finished run is not resumed into a second `final` line; a truncated metrics file is reported; the
/// training time is summed over sessions without evaluations.
#[test]
fn metrics_keep_one_final_line_report_truncation_and_sum_training_time() {
    let (dir, run) = three_iteration_run("metrics");
    let out = fab().args(["train", "--quiet", "--resume"]).arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("finished"), "a finished run was resumed: {err}");
    run_ok(fab().args(["train", "--quiet", "--iterations", "5", "--resume"]).arg(&run));
    let finals = |run: &Path| std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().matches("\"final\"").count();
    assert_eq!(finals(&run), 1);
    assert_eq!(iteration_lines(&run), vec![0, 1, 2, 3, 4]);

    // Training time: every line carries the training seconds so far; the report's figure is the last one's.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train_s: Vec<f64> = lines.iter().map(|v| v["train_s"].as_f64().expect("train_s on every line")).collect();
    assert!(train_s.windows(2).all(|w| w[0] <= w[1]), "training time goes backwards: {train_s:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let reported = report["train_seconds"].as_f64().unwrap();
    let last_iteration = lines.iter().rev().find(|v| v["kind"] == "iteration").unwrap()["train_s"].as_f64().unwrap();
    assert!(reported >= last_iteration && reported <= *train_s.last().unwrap(), "{reported} vs {train_s:?}");

    // Truncated metrics: keep 2 of the 5 iteration lines; the resume says so.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let head: String = metrics.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(run.join("metrics.jsonl"), head).unwrap();
    let out = fab().args(["train", "--quiet", "--iterations", "6", "--resume"]).arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("metrics.jsonl") && err.contains("3 of the 5 iteration lines"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 13: errors say their reason once and name the file; `--out` is checked before sampling; `--resume` given
/// a file says to give its directory.
#[test]
fn errors_name_the_file_once_and_come_before_the_work() {
    let dir = scratch("errors");
    let missing = dir.join("nonexistent-run");
    let out = fab().arg("eval").arg(&missing).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("nonexistent-run") && err.matches("os error 2").count() <= 1, "{err}");

    let (dir2, run) = three_iteration_run("errors-run");
    let bad_out = dir2.join("no/such/dir/s.npy");
    let out = fab().args(["sample", "-n", "100000000000000", "--out"]).arg(&bad_out).arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.status.code() != Some(101));
    assert!(err.contains("no/such/dir"), "--out was not checked first: {err}");

    let out = fab().args(["train", "--quiet", "--resume"]).arg(run.join("checkpoint.fab")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("takes a run directory") && err.contains(&format!("--resume {}", run.display())), "{err}");

    std::fs::remove_file(run.join("checkpoint.fab")).unwrap();
    let flow = std::fs::read(run.join("flow.safetensors")).unwrap();
    std::fs::write(run.join("flow.safetensors"), &flow[..flow.len() / 2]).unwrap();
    let out = fab().args(["plot", "--out"]).arg(dir2.join("p.png")).arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("flow.safetensors"), "the truncated file is not named: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir2).unwrap();
}

/// Item 3: a second Ctrl-C exits at once (status 130) without waiting for the iteration or writing a checkpoint.
#[test]
fn a_second_interrupt_exits_at_once_without_a_checkpoint() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("second-int");
    // Every iteration ends with a heavy evaluation, so the first interrupt has a long iteration to finish.
    let config = edited_config(
        &dir,
        "slow",
        &[
            ("budget: Iterations(200)", "budget: Iterations(1000000)"),
            ("checkpoint_every: 5", "checkpoint_every: 0"),
            ("        every: 0", "        every: 1"),
            ("n_samples: 1000", "n_samples: 400000"),
        ],
    );
    let mut child = fab();
    child.args(["train", "--quiet", "--out"]).arg(dir.join("runs")).arg(&config);
    let mut child = child.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut saw = |needle: &str, stderr: &mut BufReader<std::process::ChildStderr>| loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "stderr ended before {needle:?}");
        if line.contains(needle) {
            break;
        }
    };
    saw("training mog_kl_2021", &mut stderr);
    std::thread::sleep(Duration::from_millis(300));
    send_signal("INT", child.id());
    saw("interrupt again to exit at once", &mut stderr);
    send_signal("INT", child.id());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert_eq!(status.code(), Some(130), "{status:?}: {rest}");
    assert!(rest.contains("exiting at once"), "{rest}");
    assert!(
        !dir.join("runs/mog_kl_2021-seed2/checkpoint.fab").exists(),
        "the second interrupt waited for a checkpoint"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
