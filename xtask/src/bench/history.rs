//! `bench-baselines/history.jsonl`: one JSON line per benchmark each time a baseline is recorded.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One recorded instruction count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The commit the counts were measured at (`git rev-parse HEAD`).
    pub commit: String,
    /// True when the work tree had uncommitted changes outside `bench-baselines/` (so `commit` is approximate).
    pub dirty: bool,
    /// When the baseline was recorded, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// `rustc --version` of the toolchain that built the benchmarks.
    pub rustc: String,
    /// `valgrind --version`.
    pub valgrind: String,
    /// The gungraun library and runner version.
    pub gungraun: String,
    /// `package/bench/group/function.id`.
    pub benchmark: String,
    /// Callgrind's total instruction count (`Ir`) of the benchmark.
    pub instructions: u64,
    /// How the record was made, when not by `cargo xtask bench --save-baseline` (e.g. backfilled from git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Appends `records` to the JSON-lines file at `path` (created if missing).
pub fn append(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot append to {}", path.display()))
}

/// Every record of the file at `path`, in file order; a malformed line is an error naming its line number.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}: not a history record", path.display(), i + 1))
        })
        .collect()
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn now_utc() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    utc_timestamp(secs)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`; 400-year eras).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(benchmark: &str, instructions: u64) -> Record {
        Record {
            commit: "a300e4f0000000000000000000000000000000000".into(),
            dirty: false,
            date: "2026-12-01T22:07:16Z".into(),
            rustc: "rustc 1.95.0 (59807616e 2026-04-14)".into(),
            valgrind: "valgrind-3.19.0".into(),
            gungraun: "0.20.0".into(),
            benchmark: benchmark.into(),
            instructions,
            note: None,
        }
    }

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(utc_timestamp(4_105_036_800), "2100-01-31T00:00:00Z");
    }

    #[test]
    fn appended_records_read_back_in_order_and_earlier_lines_are_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let _ = std::fs::remove_file(&path);
        let first = [record("a/b/g/f.x", 10)];
        let mut noted = record("a/b/g/f.y", 20);
        noted.note = Some("backfilled".into());
        append(&path, &first).unwrap();
        append(&path, &[noted.clone(), record("a/b/g/f.x", 11)]).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, vec![first[0].clone(), noted, record("a/b/g/f.x", 11)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.lines().next().unwrap().contains("note"), "an absent note is not written");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_malformed_line_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-history-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        std::fs::write(&path, format!("{}\n{{\"commit\": 3}}\n", serde_json::to_string(&record("x", 1)).unwrap()))
            .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("history.jsonl:2: not a history record"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
