//! The runs under `results/long/`, resumed across sessions towards a paper's budget: their status, row and curve.
//!
//! RESULTS.md is rewritten by `cargo xtask reproduce`, so what it says about these runs is generated from their
//! directories too (a hand-written note would be lost at the next regeneration).

use crate::util::{dir_name, thousands};
use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The 2021 paper's Many Well budget: `epochs = 1e5` in F21's `FAB_ellis_paper/ManyWell/FAB_vs_NF.ipynb`.
pub const PAPER_ITERATIONS: u64 = 100_000;

/// The paper's Table 2 FAB row: noisy-mode mean log q and flow ESS (%) at 10⁵ iterations.
const PAPER_NOISY_MODE_LOG_Q: f64 = -14.5;
const PAPER_FLOW_ESS: f64 = 79.6;

/// Trajectory points are taken at multiples of this many iterations (and at the first and last evaluations).
const TRAJECTORY_EVERY: u64 = 10_000;

/// One periodic evaluation of a long run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPoint {
    pub iteration: u64,
    pub noisy_mode_log_q: f64,
    pub flow_ess: f64,
    /// The number of flow samples the ESS was estimated on (10⁴ at periodic evaluations, 10⁵ at the final one).
    pub n_samples: Option<u64>,
}

/// A long run: how far it got, its evaluations, and its report once it has reached the budget.
#[derive(Debug)]
pub struct LongRun {
    pub dir: PathBuf,
    /// The last iteration recorded in `metrics.jsonl`.
    pub iteration: u64,
    /// Training seconds summed over every session (`train_s` of the last iteration record).
    pub train_s: f64,
    pub evals: Vec<EvalPoint>,
    /// `report.json`, only if it was written at the end of the budget (before that it is the starting run's).
    pub final_report: Option<Value>,
}

impl LongRun {
    /// The directory's name, e.g. `many_well16_fab_2021-seed0`.
    pub fn dir_name(&self) -> String {
        dir_name(&self.dir)
    }

    /// The model column of its Table 2 row: the config's name, where the run lives and how many iterations it
    /// completed, by its report (the metrics number iterations from 0, so their last is one less).
    pub fn row_label(&self, report: &Value) -> String {
        let iterations = report["iterations"].as_u64().unwrap_or(self.iteration + 1);
        format!("{}, results/long, {} iterations", report["name"].as_str().unwrap_or("?"), thousands(iterations))
    }
}

/// Every run directory under `long_dir` that has a `metrics.jsonl`, by name; none if the folder does not exist.
pub fn read_all(long_dir: &Path, budget: u64) -> anyhow::Result<Vec<LongRun>> {
    let Ok(entries) = std::fs::read_dir(long_dir) else { return Ok(Vec::new()) };
    let mut runs = Vec::new();
    for entry in entries {
        let dir = entry?.path();
        let metrics = dir.join("metrics.jsonl");
        let Ok(text) = std::fs::read_to_string(&metrics) else { continue };
        let (iteration, train_s, evals) = parse_metrics(&text);
        let report_path = dir.join("report.json");
        let final_report = match std::fs::read_to_string(&report_path) {
            Ok(text) => {
                let v: Value = serde_json::from_str(&text).with_context(|| format!("{}", report_path.display()))?;
                (v["iterations"].as_u64().unwrap_or(0) >= budget).then_some(v)
            }
            Err(_) => None,
        };
        runs.push(LongRun { dir, iteration, train_s, evals, final_report });
    }
    runs.sort_by_key(|r| r.dir.clone());
    Ok(runs)
}

/// The last iteration and its training time, and the evaluations by iteration (a later line wins: a resumed run may
/// repeat iterations it had recorded after its last checkpoint).
fn parse_metrics(text: &str) -> (u64, f64, Vec<EvalPoint>) {
    let mut iteration = 0;
    let mut train_s = 0.0;
    let mut evals = BTreeMap::new();
    for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let Some(it) = v["iteration"].as_u64() else { continue };
        match v["kind"].as_str() {
            Some("iteration") => {
                iteration = it;
                train_s = v["train_s"].as_f64().unwrap_or(train_s);
            }
            Some("eval" | "final") => {
                let (Some(log_q), Some(ess)) = (v["noisy_mode_set_mean_log_q"].as_f64(), v["flow_ess"].as_f64()) else {
                    continue;
                };
                let n_samples = v["n_samples"].as_u64();
                evals.insert(it, EvalPoint { iteration: it, noisy_mode_log_q: log_q, flow_ess: ess, n_samples });
            }
            _ => {}
        }
    }
    (iteration, train_s, evals.into_values().collect())
}

/// The first evaluation, those at multiples of [`TRAJECTORY_EVERY`], and the last one.
fn trajectory(evals: &[EvalPoint]) -> Vec<&EvalPoint> {
    let last = evals.len().saturating_sub(1);
    evals
        .iter()
        .enumerate()
        .filter(|(i, e)| *i == 0 || *i == last || e.iteration.is_multiple_of(TRAJECTORY_EVERY))
        .map(|p| p.1)
        .collect()
}

/// The paragraph under Table 2 about one long run: where it stands (or that it finished), its trajectory of the
/// noisy-mode mean log q and flow ESS, and its training time.
pub fn status_markdown(run: &LongRun, budget: u64) -> String {
    let name = run.dir_name();
    let mut md = String::new();
    if run.final_report.is_some() {
        let _ = write!(
            md,
            "**The 2021 FAB at the paper's budget: {} iterations** (`results/long/{name}`, resumed across sessions; its row above). ",
            thousands(budget)
        );
    } else {
        let _ = write!(
            md,
            "**The 2021 FAB at the paper's budget: under way, at iteration {} of {}** (`results/long/{name}`, resumed across sessions). ",
            thousands(run.iteration),
            thousands(budget)
        );
    }
    let points = trajectory(&run.evals);
    if let Some(first) = points.first() {
        // Name the sample count once, and again at any point that used another (the final evaluation's 10⁵).
        let usual = first.n_samples;
        let text: Vec<String> = points
            .iter()
            .map(|e| {
                let on = match e.n_samples {
                    Some(n) if e.n_samples != usual => format!(" on {} samples", thousands(n)),
                    _ => String::new(),
                };
                format!("{:.2} ({:.1} %{on}) at {}", e.noisy_mode_log_q, e.flow_ess, thousands(e.iteration))
            })
            .collect();
        let usual = usual.map_or_else(|| "its".to_string(), thousands);
        let _ = write!(md, "Noisy-mode mean log q (flow ESS on {usual} samples): {}. ", text.join(" → "));
    }
    match &run.final_report {
        Some(report) => {
            let _ = write!(md, "{} Samples of its final flow: `figure_long_{name}.png`. ", verdict(&report["eval"]));
        }
        None => {
            let _ = write!(md, "The paper: {PAPER_NOISY_MODE_LOG_Q} ({PAPER_FLOW_ESS} %) at 10⁵. ");
        }
    }
    let _ = write!(
        md,
        "Training time {:.0} s in all (summed over sessions on different machines, some beside other work: not a speed figure). \
         Curve: `results/curves/long-{name}.csv`.",
        run.train_s
    );
    md
}

/// Whether the final evaluation reproduces the paper's row. The tolerances are the evaluation's own noise: the noisy
/// test set is redrawn at every evaluation, which moves its mean log q by about ±0.2 between neighbouring evaluations
/// of one flow, and a flow ESS within 5 points is within what seeds differ by in the shorter runs.
fn verdict(eval: &Value) -> String {
    let (Some(log_q), Some(ess)) = (eval["noisy_mode_set_mean_log_q"].as_f64(), eval["flow_ess"].as_f64()) else {
        return "The final evaluation has no noisy-mode log q or flow ESS to set against the paper's.".into();
    };
    let holds = log_q >= PAPER_NOISY_MODE_LOG_Q - 0.3 && ess >= PAPER_FLOW_ESS - 5.0;
    format!(
        "At the budget: {log_q:.2} ({ess:.1} %) against the paper's {PAPER_NOISY_MODE_LOG_Q} ({PAPER_FLOW_ESS} %): **the paper's \
         claim {} on this seed**.",
        if holds { "holds" } else { "does not hold" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> String {
        let mut lines = Vec::new();
        for it in 1..=25_000u64 {
            if it % 5000 == 0 || it == 25_000 {
                let log_q = -20.0 + it as f64 / 5000.0;
                // The last evaluation is the final one, on ten times as many samples.
                let (kind, n) = if it == 25_000 { ("final", 100_000) } else { ("eval", 10_000) };
                lines.push(format!(
                    r#"{{"kind":"{kind}","iteration":{it},"n_samples":{n},"flow_ess":{},"noisy_mode_set_mean_log_q":{log_q}}}"#,
                    it as f64 / 1000.0
                ));
            }
            if it % 1000 == 0 {
                lines.push(format!(r#"{{"kind":"iteration","iteration":{it},"train_s":{}}}"#, it as f64 * 0.1));
            }
        }
        // A resume repeats the evaluation at 20,000 with other values: the later line wins.
        lines.push(
            r#"{"kind":"eval","iteration":20000,"n_samples":10000,"flow_ess":99.0,"noisy_mode_set_mean_log_q":-15.5}"#
                .into(),
        );
        lines.push("not json".into());
        lines.join("\n")
    }

    #[test]
    fn metrics_give_the_last_iteration_and_deduplicated_evaluations() {
        let (iteration, train_s, evals) = parse_metrics(&metrics());
        assert_eq!(iteration, 25_000);
        assert!((train_s - 2500.0).abs() < 1e-9);
        assert_eq!(evals.iter().map(|e| e.iteration).collect::<Vec<_>>(), [5000, 10_000, 15_000, 20_000, 25_000]);
        assert_eq!(evals[3].flow_ess, 99.0);
        assert_eq!(evals[4].n_samples, Some(100_000));
    }

    #[test]
    fn the_trajectory_keeps_the_ends_and_multiples_of_ten_thousand() {
        let (_, _, evals) = parse_metrics(&metrics());
        let its: Vec<u64> = trajectory(&evals).iter().map(|e| e.iteration).collect();
        assert_eq!(its, [5000, 10_000, 20_000, 25_000]);
        assert!(trajectory(&[]).is_empty());
    }

    #[test]
    fn status_says_under_way_until_the_report_covers_the_budget() {
        let dir = std::env::temp_dir().join(format!("fab-xtask-long-{}", std::process::id()));
        let run_dir = dir.join("many_well16_fab_2021-seed0");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join("metrics.jsonl"), metrics()).unwrap();
        std::fs::write(run_dir.join("report.json"), r#"{"iterations": 10000}"#).unwrap();
        let runs = read_all(&dir, PAPER_ITERATIONS).unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].final_report.is_none());
        let md = status_markdown(&runs[0], PAPER_ITERATIONS);
        assert!(md.contains("under way, at iteration 25,000 of 100,000"), "{md}");
        assert!(
            md.contains(
                "(flow ESS on 10,000 samples): -19.00 (5.0 %) at 5,000 → -18.00 (10.0 %) at 10,000 → -15.50 (99.0 %) at 20,000 → \
                 -15.00 (25.0 % on 100,000 samples) at 25,000"
            ),
            "{md}"
        );
        assert!(md.contains("Training time 2500 s"), "{md}");

        std::fs::write(run_dir.join("report.json"), r#"{"iterations": 100000}"#).unwrap();
        let runs = read_all(&dir, PAPER_ITERATIONS).unwrap();
        assert!(runs[0].final_report.is_some());
        let md = status_markdown(&runs[0], PAPER_ITERATIONS);
        assert!(md.contains("budget: 100,000 iterations**"), "{md}");
        assert!(md.contains("`figure_long_many_well16_fab_2021-seed0.png`"), "{md}");
        assert!(
            status_markdown(&runs[0], PAPER_ITERATIONS).contains("final evaluation has no noisy-mode log q"),
            "a report without an eval says so"
        );
        let report = serde_json::json!({"name": "many_well16_fab_2021", "iterations": 100_000});
        assert_eq!(runs[0].row_label(&report), "many_well16_fab_2021, results/long, 100,000 iterations");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_verdict_compares_with_the_papers_row_within_the_evaluation_noise() {
        let eval = |log_q: f64, ess: f64| serde_json::json!({"noisy_mode_set_mean_log_q": log_q, "flow_ess": ess});
        assert!(verdict(&eval(-14.46, 84.67)).contains("-14.46 (84.7 %) against the paper's -14.5 (79.6 %)"));
        assert!(verdict(&eval(-14.46, 84.67)).contains("claim holds"));
        assert!(verdict(&eval(-14.7, 76.0)).contains("claim holds"));
        assert!(verdict(&eval(-14.9, 84.0)).contains("does not hold"));
        assert!(verdict(&eval(-14.4, 70.0)).contains("does not hold"));
    }

    #[test]
    fn a_missing_folder_has_no_long_runs() {
        assert!(read_all(Path::new("/nonexistent/fab/long"), PAPER_ITERATIONS).unwrap().is_empty());
    }
}
