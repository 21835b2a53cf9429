//! Property test: mutated configs, checkpoints and command lines never make `fab` panic or abort; every refusal
//! is a clean error (exit status 1 or 2, a message on stderr).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn fab() -> Command {
    Command::new(std::env::var_os("FAB_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_fab").into()))
}

/// A small reverse-KL config (as in cli.rs) and a finished 3-iteration run of it, made once.
struct Fixture {
    dir: PathBuf,
    config_text: String,
    run: PathBuf,
    checkpoint: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fab-no-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config_text = include_str!("../../../configs/mog_kl_2021.ron")
            .replace("budget: Iterations(1000)", "budget: Iterations(3)")
            .replace("        every: 100", "        every: 0")
            .replace("n_samples_final: 100000", "n_samples_final: 200")
            .replace("n_target_samples: 10000", "n_target_samples: 200")
            .replace("expectation_groups: (100, 1000)", "expectation_groups: (4, 50)")
            .replace("checkpoint_every: 100", "checkpoint_every: 1");
        let config = dir.join("small.ron");
        std::fs::write(&config, &config_text).unwrap();
        let out = fab().args(["train", "--quiet", "--out"]).arg(dir.join("runs")).arg(&config).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let run = dir.join("runs/mog_kl_2021-seed2");
        let checkpoint = std::fs::read(run.join("checkpoint.fab")).unwrap();
        Fixture { dir, config_text, run, checkpoint }
    })
}

/// How one invocation ended.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    refused: usize,
    timed_out: usize,
}

/// Runs `cmd` (killed after 20 s: a mutated but valid config may simply train) and checks that it did not panic:
/// no exit status 101, no death by signal, no "panicked" on stderr, and a message on stderr when it failed.
fn run_clean(cmd: &mut Command, what: &str, tally: &RefCell<Tally>) -> Result<(), TestCaseError> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let mut timed_out = false;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if timed_out {
        tally.borrow_mut().timed_out += 1;
        return Ok(());
    }
    prop_assert!(!err.contains("panicked"), "{what}: panic:\n{err}");
    let code = out.status.code();
    prop_assert!(code.is_some(), "{what}: killed by a signal ({:?}):\n{err}", out.status);
    prop_assert!(code != Some(101), "{what}: exit 101:\n{err}");
    if out.status.success() {
        tally.borrow_mut().ok += 1;
    } else {
        prop_assert!(!err.trim().is_empty(), "{what}: failed ({code:?}) without a message");
        tally.borrow_mut().refused += 1;
    }
    Ok(())
}

/// Tokens spliced into config text: numbers at and beyond every bound, wrong types, stray syntax.
const CONFIG_TOKENS: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "1e10",
    "0.0",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "1000000000000",
    "\"x\"",
    "\"\\n\"",
    "(",
    ")",
    ",",
    ":",
    "Some(",
    "None",
    "[]",
    "true",
    "\n",
    "ManyWell(dim: 1000000000)",
    "Funnel(dim: 0)",
    "Gmm(means: [], stds: [], weights: [])",
    "Iterations(0)",
    "TargetEvaluations(1)",
];

fn mutated_config() -> impl Strategy<Value = String> {
    let text = fixture().config_text.clone();
    let len = text.len();
    (0..len, 0..8usize, prop::sample::select(CONFIG_TOKENS), 0..3u8).prop_map(move |(at, cut, token, op)| {
        let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let end = (at + cut..=len).find(|&i| text.is_char_boundary(i)).unwrap_or(len);
        match op {
            0 => format!("{}{}{}", &text[..at], token, &text[end..]),
            1 => format!("{}{}", &text[..at], &text[end..]),
            _ => format!("{}{}{}", &text[..at], token, &text[at..]),
        }
    })
}

fn mutated_checkpoint() -> impl Strategy<Value = Vec<u8>> {
    let bytes = fixture().checkpoint.clone();
    let len = bytes.len();
    let raw = (0..len, any::<u8>(), 0..len).prop_map({
        let bytes = bytes.clone();
        move |(at, b, cut)| {
            let mut v = bytes.clone();
            v[at] ^= b.max(1);
            if cut % 3 == 0 {
                v.truncate(cut);
            }
            v
        }
    });
    // Mutations behind a valid checksum reach the checks of the content itself.
    let data = fab_train::checkpoint::decode(&bytes, Path::new("fixture")).unwrap();
    let keys: Vec<String> = ["iteration", "counters", "target_evaluations", "optimizer", "config", "format", "ais"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let values = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        Just(serde_json::json!("text")),
        Just(serde_json::json!([1, 2, 3])),
        Just(serde_json::json!({"t": -1, "skipped": 1e300})),
    ];
    let arrays: Vec<String> = data.arrays.keys().cloned().collect();
    let valid_crc = (prop::sample::select(keys), values, prop::sample::select(arrays), 0..4usize, 0..3u8).prop_map(
        move |(key, value, array, keep, op)| {
            let mut d = data.clone();
            match op {
                0 => d.meta[key.as_str()] = value,
                1 => d.arrays.get_mut(&array).unwrap().to_mut().truncate(keep),
                _ => {
                    let blob = d.blobs.get_mut("flow.safetensors").unwrap();
                    let n = blob.len();
                    blob.truncate(n * keep / 4);
                }
            }
            fab_train::checkpoint::encode(&d)
        },
    );
    prop_oneof![raw, valid_crc]
}

/// Argument vectors built from every subcommand, flag and a few hostile values.
fn command_line() -> impl Strategy<Value = Vec<String>> {
    let f = fixture();
    let run = f.run.display().to_string();
    let ckpt = f.run.join("checkpoint.fab").display().to_string();
    let config = f.dir.join("small.ron").display().to_string();
    let out = f.dir.join("cli-out").display().to_string();
    let npy = f.dir.join("cli.npy").display().to_string();
    let png = f.dir.join("cli.png").display().to_string();
    let tokens: Vec<String> = [
        "train",
        "eval",
        "sample",
        "plot",
        "--resume",
        "--seed",
        "--out",
        "--iterations",
        "--final-samples",
        "--force",
        "--quiet",
        "-n",
        "--ais",
        "--threads",
        "0",
        "1",
        "-1",
        "3",
        "18446744073709551616",
        "",
        "--",
        "/nonexistent",
        "/",
        "configs",
        "1e3",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([run, ckpt, config, out, npy, png])
    .collect();
    let sub = prop::sample::select(vec!["train", "eval", "sample", "plot"]);
    (sub, prop::collection::vec(prop::sample::select(tokens), 0..6)).prop_map(|(sub, mut rest)| {
        // Training is kept short (a config-less `train` would run the 1000-iteration default); a repeated flag from
        // the random part is a clean usage error like any other.
        if sub == "train" && !rest.iter().any(|t| t == "--iterations" || t == "--final-samples") {
            rest.splice(0..0, ["--iterations", "1", "--final-samples", "5"].map(String::from));
        }
        rest.insert(0, sub.to_string());
        rest
    })
}

#[test]
fn no_mutated_config_checkpoint_or_command_line_makes_fab_panic() {
    let f = fixture();
    let cases = 100;
    let runner = || TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let configs = RefCell::new(Tally::default());
    runner()
        .run(&mutated_config(), |text| {
            let path = f.dir.join("mutated.ron");
            std::fs::write(&path, &text).unwrap();
            let out = f.dir.join("mutated-runs");
            let _ = std::fs::remove_dir_all(&out);
            let mut cmd = fab();
            cmd.args(["train", "--quiet", "--iterations", "2", "--final-samples", "10", "--out"]).arg(&out).arg(&path);
            run_clean(&mut cmd, &format!("config\n{text}"), &configs)
        })
        .unwrap();

    let checkpoints = RefCell::new(Tally::default());
    let copy = f.dir.join("ckpt-run");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(f.run.join("config.ron"), copy.join("config.ron")).unwrap();
    runner()
        .run(&mutated_checkpoint(), |bytes| {
            std::fs::write(copy.join("checkpoint.fab"), &bytes).unwrap();
            let mut eval = fab();
            eval.args(["eval", "-n", "10"]).arg(&copy);
            run_clean(&mut eval, "eval of a mutated checkpoint", &checkpoints)?;
            let mut resume = fab();
            resume.args(["train", "--quiet", "--iterations", "4", "--final-samples", "10", "--resume"]).arg(&copy);
            run_clean(&mut resume, "resume of a mutated checkpoint", &checkpoints)
        })
        .unwrap();

    let lines = RefCell::new(Tally::default());
    runner()
        .run(&command_line(), |args| {
            let mut cmd = fab();
            cmd.args(&args).current_dir(&f.dir);
            run_clean(&mut cmd, &format!("fab {args:?}"), &lines)
        })
        .unwrap();
    let (configs, checkpoints, lines) = (configs.into_inner(), checkpoints.into_inner(), lines.into_inner());
    // The counts are the measurement of this test: how many invocations ran and how they ended.
    eprintln!(
        "{cases} mutated configs: {configs:?}; {cases} mutated checkpoints (eval + resume each): {checkpoints:?}; \
         {cases} command lines: {lines:?}"
    );
    assert_eq!(configs.ok + configs.refused + configs.timed_out, cases as usize);
    assert!(configs.refused > 0 && checkpoints.refused > 0 && lines.refused > 0, "no case reached a refusal");
    std::fs::remove_dir_all(&f.dir).unwrap();
}
