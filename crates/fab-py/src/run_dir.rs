//! A run directory with the layout of the CLI's (`fab train`): config.ron, checkpoint.fab, metrics.jsonl,
//! flow.safetensors, so `fab eval`/`fab sample`/`fab plot` read a run trained from Python and vice versa.

use crate::errors::FabError;
use fab_train::{Run, TrainConfig};
use pyo3::prelude::*;
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The config the run was started with.
pub const CONFIG_FILE: &str = "config.ron";
/// The latest checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.fab";
/// Metrics, one JSON object per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The trained flow alone.
pub const FLOW_FILE: &str = "flow.safetensors";

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> PyErr {
    FabError::new_err(format!("cannot {what} {}: {e}", path.display()))
}

/// An open run directory with its metrics writer.
pub struct RunDir {
    path: PathBuf,
    metrics: BufWriter<File>,
}

impl RunDir {
    /// Whether `path` already holds a run.
    pub fn holds_run(path: &Path) -> bool {
        path.join(CHECKPOINT_FILE).exists() || path.join(METRICS_FILE).exists()
    }

    /// Creates `path` for a new run (refusing one that holds a run) and writes its config.
    pub fn create(path: &Path, config: &TrainConfig) -> PyResult<Self> {
        if Self::holds_run(path) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} already holds a run: continue it with train(..., run_dir=..., resume=True) or choose another \
                 directory",
                path.display()
            )));
        }
        fs::create_dir_all(path).map_err(|e| io_error("create run directory", path, e))?;
        let text = config.to_ron().map_err(|e| FabError::new_err(e.to_string()))?;
        fs::write(path.join(CONFIG_FILE), text).map_err(|e| io_error("write", &path.join(CONFIG_FILE), e))?;
        Self::open(path, None)
    }

    /// Re-opens a run directory at its checkpoint's `iteration`, dropping metrics lines written after it.
    pub fn resume(path: &Path, iteration: u64) -> PyResult<Self> {
        Self::open(path, Some(iteration))
    }

    fn open(path: &Path, keep_before: Option<u64>) -> PyResult<Self> {
        let metrics_path = path.join(METRICS_FILE);
        if let Some(k) = keep_before {
            let kept = lines_before(&metrics_path, k)?;
            fs::write(&metrics_path, kept).map_err(|e| io_error("rewrite", &metrics_path, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| io_error("open", &metrics_path, e))?;
        Ok(Self { path: path.to_path_buf(), metrics: BufWriter::new(file) })
    }

    /// Appends `{"kind": kind, "elapsed_s": …, …record}` to the metrics file.
    pub fn log(&mut self, kind: &str, elapsed_s: f64, record: &impl serde::Serialize) -> PyResult<()> {
        let mut value = serde_json::to_value(record).map_err(|e| FabError::new_err(e.to_string()))?;
        if let Value::Object(map) = &mut value {
            map.insert("kind".into(), kind.into());
            map.insert("elapsed_s".into(), elapsed_s.into());
        }
        writeln!(self.metrics, "{value}").map_err(|e| io_error("write", &self.path.join(METRICS_FILE), e))
    }

    /// Flushes metrics and writes a checkpoint of `run` atomically.
    pub fn checkpoint(&mut self, run: &Run) -> PyResult<()> {
        self.metrics.flush().map_err(|e| io_error("flush", &self.path.join(METRICS_FILE), e))?;
        let data = run.to_checkpoint().map_err(crate::errors::train_error)?;
        fab_train::checkpoint::save(&self.path.join(CHECKPOINT_FILE), &data)
            .map_err(|e| FabError::new_err(e.to_string()))
    }

    /// Writes the final flow.
    pub fn save_flow(&self, run: &Run) -> PyResult<()> {
        run.flow().save_safetensors(self.path.join(FLOW_FILE)).map_err(|e| FabError::new_err(e.to_string()))
    }
}

/// The run directory's config (from its config.ron).
pub fn read_config(dir: &Path) -> PyResult<TrainConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
    TrainConfig::from_ron(&text).map_err(|e| {
        let pos = e.span.start;
        pyo3::exceptions::PyValueError::new_err(format!("{}:{}:{}: {}", path.display(), pos.line, pos.col, e.code))
    })
}

/// Metrics lines that precede the checkpoint at iteration `k` (the CLI's rule).
fn lines_before(path: &Path, k: u64) -> PyResult<String> {
    let Ok(file) = File::open(path) else { return Ok(String::new()) };
    let mut kept = String::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| io_error("read", path, e))?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        let it = v["iteration"].as_u64().unwrap_or(u64::MAX);
        let keep = if v["kind"] == "iteration" { it < k } else { it <= k };
        if keep {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    Ok(kept)
}
