//! AIS with a whole-batch target (`Evaluation::WholeBatch`, e.g. a Python callable): one call per AIS step on
//! every point, while the proposal stays chunked, and the same output bits as a chunked target.

use fab_ais::{Ais, AisConfig, AisOutput};
use fab_core::{BatchMut, BatchRef, Evaluation, LogDensity};
use fab_targets::DiagGaussian;
use std::sync::Mutex;

/// A shifted, wider Gaussian target that declares the given evaluation mode and records every batched call's rows.
struct RecordingTarget {
    inner: DiagGaussian,
    mode: Evaluation,
    batch_sizes: Mutex<Vec<usize>>,
}

impl RecordingTarget {
    fn new(mode: Evaluation) -> Self {
        let inner = DiagGaussian::new(vec![0.5, -0.3, 0.2], vec![1.2, 0.8, 1.0]).unwrap();
        Self { inner, mode, batch_sizes: Mutex::new(Vec::new()) }
    }
    fn batch_sizes(&self) -> Vec<usize> {
        self.batch_sizes.lock().unwrap().clone()
    }
}

impl LogDensity for RecordingTarget {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn evaluation(&self) -> Evaluation {
        self.mode
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.inner.log_prob(x)
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.inner.log_prob_and_grad(x, grad)
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        self.batch_sizes.lock().unwrap().push(xs.n_rows());
        self.inner.log_prob_batch(xs, log_p)
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
        self.batch_sizes.lock().unwrap().push(xs.n_rows());
        self.inner.log_prob_and_grad_batch(xs, log_p, grad)
    }
}

const N_POINTS: usize = 200;

/// One AIS run of 200 points (chunks of 64) against a target in `mode`, in a 2-thread pool.
fn run(config: AisConfig, mode: Evaluation) -> (AisOutput, Vec<usize>) {
    let q = DiagGaussian::standard(3);
    let p = RecordingTarget::new(mode);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let out = pool.install(|| {
        let mut ais = Ais::new(AisConfig { chunk_size: 64, ..config }.check().unwrap());
        ais.run(&q, &p, N_POINTS, 11, 0).unwrap()
    });
    (out, p.batch_sizes())
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn ais_with_hmc_calls_a_whole_batch_target_once_per_leapfrog_step_on_all_points() {
    let config = AisConfig { initial_step_size: 0.3, ..AisConfig::iclr_hmc() };
    let (whole, calls) = run(config.clone(), Evaluation::WholeBatch);
    // Initial gradients, then 4 intermediate distributions × 1 transition × 5 leapfrog steps.
    assert_eq!(calls.len(), 1 + 4 * 5, "calls: {calls:?}");
    assert_eq!(calls[0], N_POINTS);
    assert!(calls.iter().all(|&n| n <= N_POINTS && n > N_POINTS / 2), "every call covers all live points: {calls:?}");
    let (chunked, chunked_calls) = run(config, Evaluation::Chunked);
    assert!(chunked_calls.len() > calls.len(), "the chunked target is called per chunk");
    assert!(same_bits(&whole.log_w, &chunked.log_w), "log weights differ between modes");
    assert!(same_bits(whole.samples.as_slice(), chunked.samples.as_slice()), "samples differ between modes");
}

#[test]
fn ais_with_metropolis_calls_a_whole_batch_target_once_per_step_on_all_points() {
    let (whole, calls) = run(AisConfig::iclr_metropolis(), Evaluation::WholeBatch);
    // log q comes with the proposal's draws, so p alone is evaluated at the start, then once per transition.
    assert_eq!(calls, vec![N_POINTS; 2], "one intermediate distribution, one transition");
    let (chunked, _) = run(AisConfig::iclr_metropolis(), Evaluation::Chunked);
    assert!(same_bits(&whole.log_w, &chunked.log_w), "log weights differ between modes");
    assert!(same_bits(whole.samples.as_slice(), chunked.samples.as_slice()), "samples differ between modes");
}
