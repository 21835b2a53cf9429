//! The instruction-count gate: reading callgrind's total `Ir` from a profile, and comparing it with the baseline.

use crate::util::thousands;
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::Path;

/// Total instructions executed (`Ir`) recorded in a callgrind output file's `summary:` (or `totals:`) line.
pub fn read_instructions(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_instructions(&text).with_context(|| format!("in the callgrind profile {}", path.display()))
}

/// The `Ir` column of the `summary:` line (falling back to `totals:`), located through the `events:` line.
pub fn parse_instructions(text: &str) -> anyhow::Result<u64> {
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::split_whitespace);
    let Some(events) = field("events:") else { bail!("no `events:` line") };
    let Some(column) = events.into_iter().position(|e| e == "Ir") else { bail!("the events do not include Ir") };
    let Some(totals) = field("summary:").or_else(|| field("totals:")) else { bail!("no `summary:` or `totals:` line") };
    let Some(value) = totals.into_iter().nth(column) else { bail!("the summary line has no Ir column") };
    value.parse().with_context(|| format!("Ir total `{value}` is not a count"))
}

/// One benchmark's instruction count now and in the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// `package/bench/group/function.id`.
    pub benchmark: String,
    /// Instructions in the committed baseline.
    pub baseline: u64,
    /// Instructions in this run.
    pub current: u64,
}

impl Comparison {
    /// Relative change of the count in percent (positive: more instructions than the baseline).
    pub fn change_percent(&self) -> f64 {
        (self.current as f64 - self.baseline as f64) / self.baseline as f64 * 100.0
    }

    /// True when the count rose by more than `limit_percent`.
    pub fn regressed(&self, limit_percent: f64) -> bool {
        self.change_percent() > limit_percent
    }

    /// `name: 1,000,000 → 1,050,000 Ir (+5.00 %)`.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} → {} Ir ({:+.2} %)",
            self.benchmark,
            thousands(self.baseline),
            thousands(self.current),
            self.change_percent()
        )
    }
}

/// The table printed after every comparison, one line per benchmark, regressions marked.
pub fn report(comparisons: &[Comparison], limit_percent: f64) -> String {
    let mut out = format!("gungraun instruction counts against bench-baselines/ (fails above {limit_percent:+} %):\n");
    for c in comparisons {
        let mark = if c.regressed(limit_percent) { "  REGRESSION" } else { "" };
        let _ = writeln!(out, "  {}{mark}", c.describe());
    }
    out
}

/// The error of a failing gate: every regressed benchmark with its change, or `None` when the gate passes.
pub fn failure(comparisons: &[Comparison], limit_percent: f64) -> Option<String> {
    let regressed: Vec<String> =
        comparisons.iter().filter(|c| c.regressed(limit_percent)).map(|c| format!("  {}", c.describe())).collect();
    if regressed.is_empty() {
        return None;
    }
    Some(format!(
        "instruction counts rose by more than {limit_percent} % against bench-baselines/ in {} benchmark{}:\n{}\n\
         (if the rise is intended, re-record with `cargo xtask bench --save-baseline --skip-criterion` and commit \
         bench-baselines/)",
        regressed.len(),
        if regressed.len() == 1 { "" } else { "s" },
        regressed.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of a real callgrind 3.19 profile (with cache simulation, so Ir is not the only event).
    const PROFILE: &str = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n\
        positions: line\nevents: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n\
        summary: 2118507 570002 185321 1360 1285 1990 788 105 938\n\nfn=main\n206 2118507 570002\n\
        totals: 2118507 570002 185321 1360 1285 1990 788 105 938\n";

    fn comparison(baseline: u64, current: u64) -> Comparison {
        Comparison { benchmark: "fab-ais/gungraun_ais/ais/ais_run.mog_2021_100_points".into(), baseline, current }
    }

    #[test]
    fn the_ir_total_is_read_from_the_summary_line() {
        assert_eq!(parse_instructions(PROFILE).unwrap(), 2_118_507);
    }

    #[test]
    fn the_ir_column_is_found_wherever_the_events_put_it() {
        let text = "events: Dr Ir\ntotals: 7 42\n";
        assert_eq!(parse_instructions(text).unwrap(), 42);
    }

    #[test]
    fn a_profile_without_totals_or_ir_is_an_error() {
        assert!(parse_instructions("events: Ir\n").is_err());
        assert!(parse_instructions("events: Dr\nsummary: 5\n").is_err());
        assert!(parse_instructions("summary: 5\n").is_err());
    }

    #[test]
    fn the_change_is_relative_to_the_baseline() {
        assert!((comparison(1_000_000, 1_050_000).change_percent() - 5.0).abs() < 1e-12);
        assert!((comparison(2_000, 1_500).change_percent() + 25.0).abs() < 1e-12);
        assert_eq!(comparison(7, 7).change_percent(), 0.0);
    }

    #[test]
    fn only_a_rise_above_the_limit_fails() {
        assert!(!comparison(1_000_000, 1_020_000).regressed(2.0), "exactly +2 % passes");
        assert!(comparison(1_000_000, 1_020_001).regressed(2.0));
        assert!(!comparison(1_000_000, 500_000).regressed(2.0), "a fall never fails");
    }

    #[test]
    fn a_failing_gate_names_each_regressed_benchmark_and_its_change() {
        let mut slower = comparison(2_118_507, 2_330_358);
        slower.benchmark = "fab-train/fab_iteration/fab_2021/fab_iteration.many_well16_2021_b16".into();
        let comparisons = [comparison(1_000, 1_001), slower];
        let msg = failure(&comparisons, 2.0).expect("one benchmark regressed");
        assert!(msg.contains("in 1 benchmark:"), "{msg}");
        assert!(
            msg.contains("fab-train/fab_iteration/fab_2021/fab_iteration.many_well16_2021_b16: 2,118,507 → 2,330,358 Ir (+10.00 %)"),
            "{msg}"
        );
        assert!(!msg.contains("ais_run"), "a benchmark within the limit is not named: {msg}");
        assert!(report(&comparisons, 2.0).contains("(+10.00 %)  REGRESSION"));
        assert!(report(&comparisons, 2.0).contains("ais_run.mog_2021_100_points: 1,000 → 1,001 Ir (+0.10 %)\n"));
    }

    #[test]
    fn a_passing_gate_has_no_failure() {
        assert_eq!(failure(&[comparison(1_000, 990), comparison(5, 5)], 2.0), None);
    }
}
