//! A run directory: the config it was started with, checkpoints, metrics as JSON lines, and the final report.
//!
//! Layout: `config.ron`, `checkpoint.fab` (atomic, checksummed; the latest only), `metrics.jsonl` (one line per
//! iteration and per evaluation), `flow.safetensors` and `report.json` / `report.md` when training finishes, and
//! `lock`, which a training process holds (an OS advisory lock, released on any exit) and which names its PID.

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
/// Locked by the process training in the directory; holds its PID.
pub const LOCK_FILE: &str = "lock";

/// What the metrics file says about the time already spent, and what is wrong with it.
#[derive(Debug, Default)]
pub struct MetricsSummary {
    /// Wall time of the last kept line (training and evaluation).
    pub elapsed_s: f64,
    /// Training time of the last kept line (evaluations excluded).
    pub train_s: f64,
    /// Problems found (missing iteration lines, unreadable lines), to be shown to the user.
    pub problems: Vec<String>,
}

/// Times of a metrics line: wall time and training time so far, over all sessions.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall time.
    pub elapsed_s: f64,
    /// Wall time minus evaluations.
    pub train_s: f64,
}

/// The exclusive lock on a run directory, held for the lifetime of the process (the OS drops it on any exit).
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` (which must exist), or refuses naming the process that holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
                bail!(
                    "{} is in use: {who} is training in it (it holds {}); wait for it to finish or stop it first",
                    dir.display(),
                    path.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{}", std::process::id()).with_context(|| format!("cannot write {}", path.display()))?;
        file.flush()?;
        Ok(Self { _file: file })
    }
}

/// An open (and locked) run directory with its metrics writer.
pub struct RunDir {
    path: PathBuf,
    metrics: BufWriter<File>,
    _lock: DirLock,
}

/// What [`RunDir::create`] found in the directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// A new, empty directory.
    Fresh,
    /// A run that stopped before its first checkpoint was taken over (its files removed).
    TookOver,
    /// A run was removed because of `--force`.
    Forced,
}

impl RunDir {
    /// Creates `path` for a new run and locks it. An existing run is refused unless `force`; a run that stopped
    /// before its first checkpoint (metrics but no checkpoint) holds nothing to resume and is taken over.
    pub fn create(path: &Path, config_text: &str, force: bool) -> anyhow::Result<(Self, Created)> {
        let lock = if path.is_dir() { Some(DirLock::acquire(path)?) } else { None };
        let has_checkpoint = path.join(CHECKPOINT_FILE).exists();
        let has_run = has_checkpoint || path.join(METRICS_FILE).exists();
        let created = match (has_run, has_checkpoint, force) {
            (false, _, _) => Created::Fresh,
            (true, false, _) => Created::TookOver,
            (true, true, true) => Created::Forced,
            (true, true, false) => bail!(
                "{} already holds a run: continue it with `fab train --resume {}`, or pass --force to start over",
                path.display(),
                path.display()
            ),
        };
        if created != Created::Fresh {
            for f in [CHECKPOINT_FILE, METRICS_FILE, FLOW_FILE, REPORT_JSON, REPORT_MD] {
                let _ = fs::remove_file(path.join(f));
            }
        }
        fs::create_dir_all(path).with_context(|| format!("cannot create run directory {}", path.display()))?;
        let lock = match lock {
            Some(l) => l,
            None => DirLock::acquire(path)?,
        };
        write_file_atomic(&path.join(CONFIG_FILE), config_text)?;
        Ok((Self::open_metrics(path, None, lock)?, created))
    }

    /// Locks a run directory to resume from a checkpoint at `iteration` (0: no checkpoint, the run starts over
    /// from its config): metrics lines written after that checkpoint are dropped, since the resumed run writes
    /// them again, and so is any `final` line.
    pub fn resume(path: &Path, lock: DirLock, iteration: u64) -> anyhow::Result<Self> {
        Self::open_metrics(path, Some(iteration), lock)
    }

    /// Replaces `config.ron` (a resume that changes the budget or the final sample count keeps it true).
    pub fn write_config(&self, text: &str) -> anyhow::Result<()> {
        write_file_atomic(&self.path.join(CONFIG_FILE), text)
    }

    fn open_metrics(path: &Path, keep_before: Option<u64>, lock: DirLock) -> anyhow::Result<Self> {
        let metrics_path = path.join(METRICS_FILE);
        if let Some(k) = keep_before {
            let kept = read_lines_before(&metrics_path, k)?.0;
            write_file_atomic(&metrics_path, &kept)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("cannot open {}", metrics_path.display()))?;
        Ok(Self { path: path.to_path_buf(), metrics: BufWriter::new(file), _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one metrics line `{"kind": kind, "elapsed_s": …, "train_s": …, …record}`: wall time and training
    /// time (evaluations excluded), both summed over every session of the run.
    pub fn log<T: Serialize>(&mut self, kind: &str, clock: Clock, record: &T) -> anyhow::Result<()> {
        let mut value = serde_json::to_value(record)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("kind".into(), kind.into());
            map.insert("elapsed_s".into(), clock.elapsed_s.into());
            map.insert("train_s".into(), clock.train_s.into());
        }
        writeln!(self.metrics, "{}", serde_json::to_string(&value)?)
            .with_context(|| format!("cannot write {}", self.path.join(METRICS_FILE).display()))?;
        Ok(())
    }

    /// Flushes metrics and writes a checkpoint of `run` atomically.
    pub fn checkpoint(&mut self, run: &Run) -> anyhow::Result<()> {
        self.flush()?;
        let data = run.to_checkpoint()?;
        fab_train::checkpoint::save(&self.path.join(CHECKPOINT_FILE), &data)?;
        Ok(())
    }

    /// Flushes the metrics file.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.metrics.flush().with_context(|| format!("cannot write {}", self.path.join(METRICS_FILE).display()))?;
        Ok(())
    }

    /// The times already spent before the checkpoint at `iteration` (from the last kept metrics line), and what
    /// is wrong with the metrics file: iteration lines missing before the checkpoint (a truncated or edited file),
    /// or unreadable lines.
    pub fn summary_before(path: &Path, iteration: u64) -> anyhow::Result<MetricsSummary> {
        let metrics_path = path.join(METRICS_FILE);
        let (kept, n_unreadable) = read_lines_before(&metrics_path, iteration)?;
        let values: Vec<serde_json::Value> = kept.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let max_of = |key: &str| values.iter().filter_map(|v| v[key].as_f64()).fold(0.0, f64::max);
        let mut problems = Vec::new();
        let seen: std::collections::BTreeSet<u64> =
            values.iter().filter(|v| v["kind"] == "iteration").filter_map(|v| v["iteration"].as_u64()).collect();
        let missing = iteration.saturating_sub(seen.len() as u64);
        if missing > 0 {
            let first = (0..iteration).find(|i| !seen.contains(i)).unwrap_or(0);
            problems.push(format!(
                "{}: {missing} of the {iteration} iteration lines before the checkpoint are missing (the first is \
                 iteration {first}): the file was truncated or edited; the resumed run continues and the metrics \
                 keep the gap",
                metrics_path.display()
            ));
        }
        if n_unreadable > 0 {
            problems.push(format!(
                "{}: {n_unreadable} line(s) before the checkpoint are not JSON and were dropped",
                metrics_path.display()
            ));
        }
        Ok(MetricsSummary { elapsed_s: max_of("elapsed_s"), train_s: max_of("train_s"), problems })
    }

    /// Whether the metrics file holds a `final` evaluation (the run finished).
    pub fn has_final(path: &Path) -> bool {
        let Ok(file) = File::open(path.join(METRICS_FILE)) else { return false };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .any(|l| serde_json::from_str::<serde_json::Value>(&l).is_ok_and(|v| v["kind"] == "final"))
    }
}

/// Writes `text` to `path` through a temporary file unique to this process, then renames it into place.
fn write_file_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Lines of a metrics file whose `iteration` is below `k` (iteration reports carry the 0-based index they close;
/// evaluations carry the number of completed iterations, so both are kept when they precede the checkpoint), and
/// the number of lines that were not JSON. `final` lines are dropped: a resumed run writes its own.
fn read_lines_before(path: &Path, k: u64) -> anyhow::Result<(String, usize)> {
    let Ok(file) = File::open(path) else { return Ok((String::new(), 0)) };
    let mut kept = String::new();
    let mut unreadable = Vec::new();
    let mut last_kept = None;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            unreadable.push(i);
            continue;
        };
        let it = v["iteration"].as_u64().unwrap_or(u64::MAX);
        let keep = match v["kind"].as_str() {
            Some("iteration") => it < k,
            Some("final") => false,
            _ => it <= k,
        };
        if keep {
            kept.push_str(&line);
            kept.push('\n');
            last_kept = Some(i);
        }
    }
    // A killed run's last line is often cut mid-write, after its checkpoint; only unreadable lines among the kept
    // ones are a problem.
    let n_unreadable = unreadable.iter().filter(|&&i| last_kept.is_some_and(|l| i < l)).count();
    Ok((kept, n_unreadable))
}
