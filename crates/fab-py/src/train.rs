//! `fabrs.train` and `fabrs.Model`: the CLI's training loop (progress bar, metrics, checkpoints) driven from Python.
//!
//! Each iteration runs in Rust with the GIL released. Between iterations the loop re-acquires the GIL, raises
//! any exception the Python density stored, and checks for Ctrl-C. A failed iteration is rolled back: the run is
//! restored from an in-memory snapshot taken before it, so an exception never leaves a half-applied step behind,
//! and when a run directory is in use its checkpoint is written before the exception is re-raised.

use crate::arrays::{batch_from_py, batch_to_py, vec_to_py};
use crate::config::{Overrides, resolve};
use crate::errors::{FabError, train_error, value_error};
use crate::hmc::{in_pool, thread_pool};
use crate::run_dir::{CHECKPOINT_FILE, RunDir, read_config};
use crate::source::DensitySource;
use fab_core::numerics::normalized_weights;
use fab_core::{Proposal, stream_rng};
use fab_flow::Flow;
use fab_train::checkpoint::CheckpointData;
use fab_train::config::{Budget, CheckedTrainConfig};
use fab_train::{Detail, IterationReport, Run, TrainConfig, TrainError, evaluate};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// A fresh run on `source`: from the config already checked against a built-in target, or with the Python density
/// handed over (checked there, once).
fn build_run(
    config: TrainConfig,
    checked: Option<CheckedTrainConfig>,
    source: &DensitySource,
) -> Result<Run, TrainError> {
    match (checked, source) {
        (Some(checked), _) => Run::from_checked(checked),
        (None, DensitySource::Python(d)) => Run::with_target(config, Box::new(d.clone())),
        (None, DensitySource::Builtin(..)) => Run::new(config),
    }
}

/// A run restored from checkpoint content.
fn restore_run(
    config: TrainConfig,
    data: &CheckpointData,
    path: &Path,
    source: &DensitySource,
) -> Result<Run, TrainError> {
    match source {
        DensitySource::Builtin(..) => Run::from_checkpoint(config, data, path),
        DensitySource::Python(d) => Run::from_checkpoint_with_target(config, Box::new(d.clone()), data, path),
    }
}

/// The CLI's progress bar, hidden when stderr is not a terminal or `quiet`.
fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

/// The CLI's per-iteration progress message.
fn progress_message(rep: &IterationReport) -> String {
    let steps: Vec<String> = rep.step_sizes.iter().map(|s| format!("{s:.3}")).collect();
    let acc: Vec<String> = rep.acceptance.iter().map(|a| format!("{a:.2}")).collect();
    format!("loss {:.4} ess {:.1}% acc [{}] eps [{}]", rep.loss, rep.batch_ess, acc.join(" "), steps.join(" "))
}

/// A JSON-serialisable value as a Python object (through the json module, so nested dicts and lists come out).
fn to_py_object<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| FabError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// `log Ẑ = log mean w` and its delta-method standard error `sqrt(Σ w̃² − 1/n)` (w̃ the normalised weights;
/// non-finite log weights count as zero weight).
fn log_z_with_se(log_w: &[f64]) -> (f64, f64) {
    let n = log_w.len() as f64;
    let (w, r) = normalized_weights(log_w);
    if r.n_used == 0 {
        return (f64::NEG_INFINITY, f64::NAN);
    }
    let sum_sq: f64 = w.iter().map(|w| w * w).sum();
    (r.value - n.ln(), (sum_sq - 1.0 / n).max(0.0).sqrt())
}

/// The model's state: a full run (trained or loaded from a run directory), or a flow alone (from flow.safetensors).
/// A run is `Send` but not `Sync` (its objective state), so the model holds it behind a mutex.
enum State {
    Run(Mutex<Box<Run>>),
    Flow(Flow),
}

/// A trained flow `q`, with the run that trained it when there is one.
///
/// Returned by `fabrs.train` and `fabrs.Model.load`. Methods: `sample`, `ais_sample`, `log_prob`, `log_z`,
/// `evaluate`, `save`; attributes `dim`, `iteration`, `history` (one dict per training iteration, as in the run
/// directory's metrics.jsonl) and `run_dir`. A model loaded from a flow.safetensors file alone can `sample`,
/// `log_prob` and `save`; the rest needs the run (and, for a Python target, its density).
#[pyclass(name = "Model", module = "fabrs")]
pub struct Model {
    state: State,
    source: Option<DensitySource>,
    history: Vec<IterationReport>,
    run_dir: Option<PathBuf>,
    /// Workers for sampling and evaluation (each keeps a Python thread state, see `thread_pool`).
    pool: Option<rayon::ThreadPool>,
}

impl Model {
    /// Runs `f` on the flow, with the GIL released, on the model's workers.
    fn with_flow<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&Flow) -> T + Send) -> T {
        let pool = self.pool.as_ref();
        match &self.state {
            State::Run(m) => {
                let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
                let run: &mut Run = &mut guard;
                py.detach(move || in_pool(pool, move || f(run.flow())))
            }
            State::Flow(flow) => py.detach(move || in_pool(pool, move || f(flow))),
        }
    }

    /// Runs `f` on the run, with the GIL released, on the model's workers; then raises the density's exception.
    fn with_run<T: Send>(&self, py: Python<'_>, what: &str, f: impl FnOnce(&Run) -> T + Send) -> PyResult<T> {
        let State::Run(m) = &self.state else {
            return Err(FabError::new_err(format!(
                "{what} needs the training run (AIS state and target); this model holds a flow alone: load a run \
                 directory instead"
            )));
        };
        let pool = self.pool.as_ref();
        let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
        let run: &mut Run = &mut guard;
        let out = py.detach(move || in_pool(pool, move || f(run)));
        match self.source.as_ref().and_then(DensitySource::take_error) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// `log p̃ − log q` of `n` flow samples.
    fn flow_log_weights(&self, py: Python<'_>, n: usize, seed: u64) -> PyResult<Vec<f64>> {
        self.with_run(py, "log_z", move |run| {
            let (x, log_q) = run.flow().sample(&mut stream_rng(seed, 0), n);
            let mut log_p = vec![0.0; n];
            run.target().log_prob_batch(x.view(), &mut log_p);
            fab_train::metrics::log_weights(&log_p, &log_q)
        })
    }

    /// `(x, log w)` of `n` AIS samples from the flow to the target, with the run's frozen step sizes.
    fn ais(&self, py: Python<'_>, n: usize, seed: u64) -> PyResult<(fab_core::Batch, Vec<f64>)> {
        let out = self.with_run(py, "ais_sample", move |run| run.sample_ais(n, seed))?;
        let a =
            out.map_err(train_error)?.ok_or_else(|| FabError::new_err("this run is not a FAB run: it has no AIS"))?;
        Ok((a.samples, a.log_w))
    }

    fn with_locked_run<T>(&self, f: impl FnOnce(&Run) -> T) -> Option<T> {
        match &self.state {
            State::Run(m) => Some(f(&m.lock().unwrap_or_else(|p| p.into_inner()))),
            State::Flow(_) => None,
        }
    }
}

#[pymethods]
impl Model {
    /// Dimension of the space.
    #[getter]
    fn dim(&self) -> usize {
        match &self.state {
            State::Flow(f) => f.dim(),
            State::Run(_) => self.with_locked_run(|r| r.flow().dim()).unwrap_or(0),
        }
    }

    /// Training iterations completed (None for a flow loaded alone).
    #[getter]
    fn iteration(&self) -> Option<u64> {
        self.with_locked_run(Run::iteration)
    }

    /// One dict per iteration trained in this session: loss, grad_norm, batch_ess (%), acceptance and step_sizes
    /// per AIS distribution, target_evaluations, n_dropped (non-finite points dropped).
    #[getter]
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py_object(py, &self.history)
    }

    /// The run directory, if the model was trained into or loaded from one.
    #[getter]
    fn run_dir(&self) -> Option<String> {
        self.run_dir.as_ref().map(|p| p.display().to_string())
    }

    /// `n` samples of the flow: `(x, log_q)`, shapes `(n, dim)` and `(n,)`; `log_q` is the normalised log density.
    #[pyo3(signature = (n, seed = 0))]
    fn sample<'py>(&self, py: Python<'py>, n: usize, seed: u64) -> PyResult<Bound<'py, PyTuple>> {
        let (x, log_q) = self.with_flow(py, move |flow| flow.sample(&mut stream_rng(seed, 0), n));
        PyTuple::new(py, [batch_to_py(py, x).into_any(), vec_to_py(py, log_q).into_any()])
    }

    /// `n` flow samples moved by AIS to the target: `(x, log_w)`. Estimate `E_p[f]` by the self-normalised
    /// average with weights `exp(log_w)`. Non-finite points are dropped, so fewer than `n` rows may return.
    #[pyo3(signature = (n, seed = 0))]
    fn ais_sample<'py>(&self, py: Python<'py>, n: usize, seed: u64) -> PyResult<Bound<'py, PyTuple>> {
        let (x, log_w) = self.ais(py, n, seed)?;
        PyTuple::new(py, [batch_to_py(py, x).into_any(), vec_to_py(py, log_w).into_any()])
    }

    /// The flow's normalised `log q` at the rows of `x` (shape `(n, dim)`).
    fn log_prob<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let xs = batch_from_py(x, self.dim(), "x")?;
        let log_q = self.with_flow(py, move |flow| flow.log_q(xs.view()));
        Ok(vec_to_py(py, log_q))
    }

    /// `(log Ẑ, standard error)`: the log normalising constant of the target by importance sampling with `n` flow
    /// samples (`ais=True`: with the AIS weights). The SE is the delta-method `sqrt(1/ESS − 1/n)`.
    #[pyo3(signature = (n = 10000, seed = 0, ais = false))]
    fn log_z(&self, py: Python<'_>, n: usize, seed: u64, ais: bool) -> PyResult<(f64, f64)> {
        let log_w = if ais { self.ais(py, n, seed)?.1 } else { self.flow_log_weights(py, n, seed)? };
        Ok(log_z_with_se(&log_w))
    }

    /// Every metric of the run's evaluation as a dict (the CLI's report.json `eval` block): flow_ess and ais_ess
    /// (%), log Z errors and mean log q at target samples when the target defines them, counts of non-finite
    /// points. `n` defaults to the config's `eval.n_samples`; `full=True` adds the expectation metrics.
    #[pyo3(signature = (n = None, full = false))]
    fn evaluate<'py>(&self, py: Python<'py>, n: Option<usize>, full: bool) -> PyResult<Bound<'py, PyAny>> {
        let detail = if full { Detail::Full } else { Detail::Periodic };
        let report = self.with_run(py, "evaluate", move |run| {
            let n = n.unwrap_or(run.config().eval.n_samples);
            evaluate(run, n, detail)
        })?;
        to_py_object(py, &report.map_err(train_error)?)
    }

    /// Writes the flow to `path` as safetensors (the format of a run directory's flow.safetensors).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with_flow(py, move |flow| flow.save_safetensors(&path)).map_err(|e| FabError::new_err(e.to_string()))
    }

    /// Loads a model: a run directory (config.ron + checkpoint.fab: the full run) or a flow.safetensors file
    /// (the flow alone). A run on a Python density needs that `density` again.
    /// `threads`: rayon threads for the model's sampling and evaluation (default: one per core).
    #[staticmethod]
    #[pyo3(signature = (path, density = None, threads = None))]
    fn load(path: PathBuf, density: Option<&Bound<'_, PyAny>>, threads: Option<usize>) -> PyResult<Model> {
        let source = density.map(DensitySource::extract).transpose()?;
        let pool = thread_pool(threads)?;
        if path.is_dir() {
            let run = load_run(&path, source.as_ref())?;
            let state = State::Run(Mutex::new(Box::new(run)));
            return Ok(Model { state, source, history: vec![], run_dir: Some(path), pool });
        }
        let flow = Flow::load_safetensors(&path).map_err(|e| value_error(format!("{}: {e}", path.display())))?;
        Ok(Model { state: State::Flow(flow), source, history: vec![], run_dir: None, pool })
    }

    fn __repr__(&self) -> String {
        match &self.state {
            State::Run(_) => self
                .with_locked_run(|r| format!("Model({}, iteration {})", r.config().name, r.iteration()))
                .unwrap_or_default(),
            State::Flow(f) => format!("Model(flow of dimension {})", f.dim()),
        }
    }
}

/// The run stored in a run directory; a run of a built-in target needs no density.
fn load_run(dir: &Path, source: Option<&DensitySource>) -> PyResult<Run> {
    let config = read_config(dir)?;
    let ckpt = dir.join(CHECKPOINT_FILE);
    let data = fab_train::checkpoint::load(&ckpt).map_err(|e| value_error(e.to_string()))?;
    let source = match (source, &config.target) {
        (Some(s), _) => s.clone(),
        (None, Some(spec)) => {
            let t = spec.build().map_err(value_error)?;
            DensitySource::Builtin(spec.clone(), std::sync::Arc::from(t))
        }
        (None, None) => {
            return Err(value_error(format!(
                "{} was trained on a Python density: pass it again, Model.load(path, density=...)",
                dir.display()
            )));
        }
    };
    restore_run(config, &data, &ckpt, &source).map_err(train_error)
}

/// Trains a normalizing flow on `density` with FAB and returns the `Model`.
///
/// `train(density, config=None, *, iterations=None, seed=None, threads=None, batch_size=None, run_dir=None,
/// resume=False, quiet=False) -> Model`
///
/// - `density`: a `fabrs.Density` (your function) or a built-in target (`fabrs.Mog2021()`, ...).
/// - `config`: None (FAB 2021 with the paper's MoG settings, the flow sized to the density), a path to a RON
///   config file, or RON text (the CLI's format; its `target` is replaced by `density`).
/// - `iterations`, `seed`, `batch_size`: override the config; `threads`: rayon threads (default: all cores).
///   Same seed and config give the same model for any `threads`.
/// - `run_dir`: write config.ron, metrics.jsonl, checkpoint.fab and flow.safetensors there, as `fab train` does.
///   `resume=True` continues the run in `run_dir` from its checkpoint (its stored config is used;
///   `iterations` may extend it).
/// - Progress: the CLI's progress bar on a terminal (`quiet=True` hides it) and its periodic evaluations.
/// - Errors: an exception in `density` is re-raised unchanged after rolling the run back to the end of the last
///   complete iteration (checkpointed when `run_dir` is set). Ctrl-C stops at the end of the current iteration,
///   checkpoints, and raises KeyboardInterrupt.
#[pyfunction]
#[pyo3(signature = (density, config = None, *, iterations = None, seed = None, threads = None, batch_size = None, run_dir = None, resume = false, quiet = false))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    density: &Bound<'_, PyAny>,
    config: Option<&Bound<'_, PyAny>>,
    iterations: Option<u64>,
    seed: Option<u64>,
    threads: Option<usize>,
    batch_size: Option<usize>,
    run_dir: Option<PathBuf>,
    resume: bool,
    quiet: bool,
) -> PyResult<Model> {
    let source = DensitySource::extract(density)?;
    let owned_pool = thread_pool(threads)?;
    let pool = owned_pool.as_ref();
    let (mut run, mut dir) = match (&run_dir, resume) {
        (Some(path), true) if path.join(CHECKPOINT_FILE).exists() => {
            if seed.is_some() || batch_size.is_some() || config.is_some() {
                return Err(value_error("resume=True continues the stored config: pass only iterations/threads"));
            }
            let mut run = py.detach(|| in_pool(pool, || load_run(path, Some(&source))))?;
            if let Some(n) = iterations {
                run.set_iteration_budget(n);
            }
            let dir = RunDir::resume(path, run.iteration())?;
            (run, Some(dir))
        }
        (None, true) => return Err(value_error("resume=True needs run_dir")),
        (path, _) => {
            let overrides = Overrides { seed, iterations, batch_size };
            let (config, checked) = resolve(config, &source, &overrides)?;
            let dir = path.as_deref().map(|p| RunDir::create(p, &config)).transpose()?;
            let run = py.detach(|| in_pool(pool, || build_run(config, checked, &source)));
            if let Some(e) = source.take_error() {
                return Err(e);
            }
            (run.map_err(train_error)?, dir)
        }
    };
    let history = train_loop(py, &mut run, dir.as_mut(), &source, pool, quiet)?;
    if let Some(dir) = dir.as_mut() {
        dir.checkpoint(&run)?;
        dir.save_flow(&run)?;
    }
    let state = State::Run(Mutex::new(Box::new(run)));
    Ok(Model { state, source: Some(source), history, run_dir, pool: owned_pool })
}

/// Steps `run` to its budget with the CLI's progress bar, metrics, periodic evaluation and checkpoints.
fn train_loop(
    py: Python<'_>,
    run: &mut Run,
    mut dir: Option<&mut RunDir>,
    source: &DensitySource,
    pool: Option<&rayon::ThreadPool>,
    quiet: bool,
) -> PyResult<Vec<IterationReport>> {
    let started = Instant::now();
    let cfg = run.config().clone();
    let total = match cfg.budget {
        Budget::Iterations(n) | Budget::TargetEvaluations(n) => n,
    };
    let pb = progress_bar(total, quiet);
    let may_fail = matches!(source, DensitySource::Python(_));
    let mut history = Vec::new();
    while !run.is_done() {
        // Python densities can raise mid-iteration: keep the state to roll back to.
        let snapshot = if may_fail { Some(run.to_checkpoint().map_err(train_error)?.into_owned()) } else { None };
        let stepped = py.detach(|| in_pool(pool, || run.step()));
        let failure = match (source.take_error(), stepped) {
            (Some(e), _) => Some(e),
            (None, Err(e)) => Some(train_error(e)),
            (None, Ok(rep)) => {
                history.push(rep);
                None
            }
        };
        if let Some(err) = failure {
            pb.abandon();
            if let Some(data) = snapshot {
                let restored =
                    py.detach(|| in_pool(pool, || restore_run(cfg.clone(), &data, Path::new("<memory>"), source)));
                *run = restored.map_err(train_error)?;
            }
            if let Some(d) = dir.as_deref_mut() {
                d.checkpoint(run)?;
            }
            return Err(err);
        }
        let rep = history.last().expect("just pushed");
        let elapsed = started.elapsed().as_secs_f64();
        if let Some(d) = dir.as_deref_mut() {
            d.log("iteration", elapsed, rep)?;
        }
        pb.set_position(match cfg.budget {
            Budget::Iterations(_) => run.iteration(),
            Budget::TargetEvaluations(_) => rep.target_evaluations,
        });
        pb.set_message(progress_message(rep));
        let k = run.iteration();
        if cfg.eval.every > 0 && k.is_multiple_of(cfg.eval.every) && !run.is_done() {
            let run_mut: &mut Run = run;
            let n_eval = cfg.eval.n_samples;
            let e = py.detach(move || in_pool(pool, move || evaluate(run_mut, n_eval, Detail::Periodic)));
            if let Some(err) = source.take_error() {
                return Err(err);
            }
            let e = e.map_err(train_error)?;
            let mean_log_q = e.mean_log_q_target.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"));
            if !quiet {
                pb.println(format!("iteration {k}: flow ESS {:.2}%, mean log q(x~p) {mean_log_q}", e.flow_ess));
            }
            if let Some(d) = dir.as_deref_mut() {
                d.log("eval", elapsed, &e)?;
            }
        }
        let checkpoint_due = cfg.checkpoint_every > 0 && k.is_multiple_of(cfg.checkpoint_every);
        if let Some(d) = dir.as_deref_mut().filter(|_| checkpoint_due) {
            d.checkpoint(run)?;
        }
        if let Err(interrupt) = py.check_signals() {
            pb.abandon();
            if let Some(d) = dir.as_deref_mut() {
                d.checkpoint(run)?;
                d.save_flow(run)?;
            }
            return Err(interrupt);
        }
    }
    pb.finish_and_clear();
    Ok(history)
}
