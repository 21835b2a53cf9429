//! Instruction-count benchmarks (gungraun/callgrind) of the flow passes, `log q` + `∇ₓ log q` and `log q` + `∇θ`, run by `cargo xtask bench`.
//!
//! Counts are deterministic, so a committed baseline (`bench-baselines/`) catches regressions on a noisy machine.
//! Inputs are small because valgrind runs ~50× slower than native. Under valgrind faer takes its AVX2 path
//! (valgrind hides AVX-512), so the counts track code changes, not the native speed.

// gungraun's macros generate undocumented modules, constants and functions.
#![allow(missing_docs)]

use fab_core::{Batch, LogDensity, Proposal, stream_rng};
use fab_flow::{Flow, FlowSpec};
use gungraun::{library_benchmark, library_benchmark_group, main};
use std::hint::black_box;

/// A flow with every parameter moved off its initial value (zero-initialised heads would skip real work),
/// and a batch of its own samples.
fn flow_and_batch(spec: FlowSpec, n: usize) -> (Flow, Batch) {
    let mut flow = Flow::new(&spec, 0).expect("valid spec");
    if !flow.actnorm_initialized() {
        flow.initialize_data_dependent(&mut stream_rng(0, 1), 256);
    }
    for (i, p) in flow.params_mut().iter_mut().enumerate() {
        *p += 0.01 * ((i as f64) * 0.618).sin();
    }
    let (xs, _) = flow.sample(&mut stream_rng(1, 0), n);
    (flow, xs)
}

/// The 2021 MoG flow (2-D, 10 blocks, width 40) on 64 points: the AIS/HMC chunk FAB evaluates most often.
fn mog_2021_64() -> (Flow, Batch) {
    flow_and_batch(FlowSpec::mog_2021(), 64)
}

/// The ICLR Many Well flow (16-D, 10 layers, width 160) on 16 points: faer-GEMM-bound layers.
fn many_well_iclr_16() -> (Flow, Batch) {
    flow_and_batch(FlowSpec::many_well_iclr(16), 16)
}

#[library_benchmark]
#[bench::mog_2021_b64(setup = mog_2021_64)]
#[bench::many_well_iclr_d16_b16(setup = many_well_iclr_16)]
fn log_q_grad_x((flow, xs): (Flow, Batch)) -> (Vec<f64>, Batch) {
    let mut log_q = vec![0.0; xs.n_rows()];
    let mut grad = Batch::zeros(xs.n_rows(), xs.dim());
    flow.log_prob_and_grad_batch(black_box(xs.view()), &mut log_q, grad.view_mut());
    (log_q, grad)
}

// The FAB loss pass: `log q` of every row and `Σᵢ cᵢ·∇θ log q(xᵢ)` with distinct non-zero coefficients (a zero
// coefficient would drop its row from the gradient).
#[library_benchmark]
#[bench::mog_2021_b64(setup = mog_2021_64)]
#[bench::many_well_iclr_d16_b16(setup = many_well_iclr_16)]
fn log_q_grad_params((flow, xs): (Flow, Batch)) -> (Vec<f64>, Vec<f64>) {
    let coeffs: Vec<f64> = (0..xs.n_rows()).map(|i| 1.0 + 0.01 * i as f64).collect();
    let mut grad = vec![0.0; flow.n_params()];
    let log_q = flow.log_q_grad_params(black_box(xs.view()), &coeffs, &mut grad);
    (log_q, grad)
}

library_benchmark_group!(name = flow_passes; benchmarks = log_q_grad_x, log_q_grad_params);

main!(library_benchmark_groups = flow_passes);
