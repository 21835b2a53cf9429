//! A run directory: the config it was started with, checkpoints, metrics as JSON lines, and the final report.
//!
//! Layout: `config.ron`, `checkpoint.fab` (atomic, checksummed; the latest only), `metrics.jsonl` (one line per
//! iteration and per evaluation), `flow.safetensors` and `report.json` / `report.md` when training finishes.

use anyhow::{Context, bail};
use fab_train::run::Run;
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// File names inside a run directory.
pub const CONFIG_FILE: &str = "config.ron";
/// The latest checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.fab";
/// Metrics, one JSON object per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The trained flow alone, readable from numpy/PyTorch.
pub const FLOW_FILE: &str = "flow.safetensors";
/// The final evaluation as JSON.
pub const REPORT_JSON: &str = "report.json";
/// The final evaluation as a Markdown table.
pub const REPORT_MD: &str = "report.md";

/// An open run directory with its metrics writer.
pub struct RunDir {
    path: PathBuf,
    metrics: BufWriter<File>,
}

impl RunDir {
    /// Creates `path` for a new run, refusing to overwrite an existing run unless `force`.
    pub fn create(path: &Path, config_text: &str, force: bool) -> anyhow::Result<Self> {
        if path.join(CHECKPOINT_FILE).exists() || path.join(METRICS_FILE).exists() {
            if !force {
                bail!(
                    "{} already holds a run: continue it with `fab train --resume {}`, or pass --force to start over",
                    path.display(),
                    path.display()
                );
            }
            for f in [CHECKPOINT_FILE, METRICS_FILE, FLOW_FILE, REPORT_JSON, REPORT_MD] {
                let _ = fs::remove_file(path.join(f));
            }
        }
        fs::create_dir_all(path).with_context(|| format!("cannot create run directory {}", path.display()))?;
        fs::write(path.join(CONFIG_FILE), config_text)
            .with_context(|| format!("cannot write {}", path.join(CONFIG_FILE).display()))?;
        Self::open_metrics(path, None)
    }

    /// Re-opens a run directory to resume from a checkpoint at `iteration`: metrics lines written after that
    /// checkpoint are dropped, since the resumed run writes them again.
    pub fn resume(path: &Path, iteration: u64) -> anyhow::Result<Self> {
        Self::open_metrics(path, Some(iteration))
    }

    fn open_metrics(path: &Path, keep_before: Option<u64>) -> anyhow::Result<Self> {
        let metrics_path = path.join(METRICS_FILE);
        if let Some(k) = keep_before {
            let kept = read_lines_before(&metrics_path, k)?;
            let tmp = path.join(".metrics.jsonl.tmp");
            fs::write(&tmp, kept).with_context(|| format!("cannot write {}", tmp.display()))?;
            fs::rename(&tmp, &metrics_path).with_context(|| format!("cannot replace {}", metrics_path.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("cannot open {}", metrics_path.display()))?;
        Ok(Self { path: path.to_path_buf(), metrics: BufWriter::new(file) })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one metrics line `{"kind": kind, "elapsed_s": …, …record}`.
    pub fn log<T: Serialize>(&mut self, kind: &str, elapsed_s: f64, record: &T) -> anyhow::Result<()> {
        let mut value = serde_json::to_value(record)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("kind".into(), kind.into());
            map.insert("elapsed_s".into(), elapsed_s.into());
        }
        writeln!(self.metrics, "{}", serde_json::to_string(&value)?)?;
        Ok(())
    }

    /// Flushes metrics and writes a checkpoint of `run` atomically.
    pub fn checkpoint(&mut self, run: &Run) -> anyhow::Result<()> {
        self.metrics.flush()?;
        let data = run.to_checkpoint()?;
        fab_train::checkpoint::save(&self.path.join(CHECKPOINT_FILE), &data)?;
        Ok(())
    }

    /// Flushes the metrics file.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.metrics.flush()?;
        Ok(())
    }

    /// The wall time already spent before the checkpoint at `iteration` (from the last kept metrics line).
    pub fn elapsed_before(path: &Path, iteration: u64) -> anyhow::Result<f64> {
        let kept = read_lines_before(&path.join(METRICS_FILE), iteration)?;
        Ok(kept
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["elapsed_s"].as_f64())
            .fold(0.0, f64::max))
    }
}

/// Lines of a metrics file whose `iteration` is below `k` (iteration reports carry the 0-based index they close;
/// evaluations carry the number of completed iterations, so both are kept when they precede the checkpoint).
fn read_lines_before(path: &Path, k: u64) -> anyhow::Result<String> {
    let Ok(file) = File::open(path) else { return Ok(String::new()) };
    let mut kept = String::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let it = v["iteration"].as_u64().unwrap_or(u64::MAX);
        let keep = match v["kind"].as_str() {
            Some("iteration") => it < k,
            _ => it <= k,
        };
        if keep {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    Ok(kept)
}
