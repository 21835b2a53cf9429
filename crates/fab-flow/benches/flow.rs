//! Criterion benchmarks of the flow's hot paths: log q with ∇ₓ (HMC), log q with ∇θ (FAB loss; also with the
//! coefficients computed from log q, in two passes and in one recorded pass), and sampling.
//!
//! Flows: the 2021 Many Well flow (D = 16, 20 blocks, width 160) at batch 1000; the ICLR Many Well flow with
//! width 320 and 10 layers at batch 2048, in D = 16 (the PEERS.md configuration as described there) and
//! D = 32 (the paper's Many Well 32); the 2021 MoG flow at batch 100; and fab-jax's GMM spline flow (8 × two
//! spline couplings with MLP [128, 128], 8 bins on ±10, ActNorm) at batch 1000. Each benchmark prints its dense-layer
//! FLOP count per sample so that GFLOP/s = FLOP/sample × samples/s. `many_well_2021_d16_w160_b1000_math` compares the
//! couplings' `Math::Libm` and `Math::Vector` on the 2021 Many Well flow (not gated).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fab_core::{Batch, LogDensity, Proposal, stream_rng};
use fab_flow::{Flow, FlowSpec, LayerSpec, Math};
use rand_distr::{Distribution, StandardNormal};
use std::hint::black_box;

/// Dense FLOPs per sample of one pass (2·in·out per linear layer, 2·D² per LU layer).
fn forward_flops_per_sample(spec: &FlowSpec) -> f64 {
    spec.layers
        .iter()
        .map(|l| match l {
            LayerSpec::Coupling(c) => c.mlp_sizes().windows(2).map(|w| 2.0 * (w[0] * w[1]) as f64).sum(),
            LayerSpec::SplineCoupling(c) => c.mlp_sizes().windows(2).map(|w| 2.0 * (w[0] * w[1]) as f64).sum(),
            LayerSpec::LuLinear => 2.0 * (spec.dim * spec.dim) as f64,
            _ => 0.0,
        })
        .sum()
}

/// A flow moved off its zero-initialised heads so every layer does real work.
fn trained_like(spec: &FlowSpec) -> Flow {
    let mut f = Flow::new(spec, 0).unwrap();
    if !f.actnorm_initialized() {
        f.initialize_data_dependent(&mut stream_rng(0, 1), 1000);
    }
    let mut rng = stream_rng(0, 2);
    for p in f.params_mut() {
        let e: f64 = StandardNormal.sample(&mut rng);
        *p += 0.01 * e;
    }
    f
}

fn bench_flow(c: &mut Criterion, name: &str, spec: FlowSpec, batch: usize) {
    let flow = trained_like(&spec);
    let fwd = forward_flops_per_sample(&spec);
    eprintln!(
        "{name}: {} parameters; dense FLOP/sample: forward {:.3} M, log q + ∇ₓ ≈ {:.3} M (2×), log q + ∇θ ≈ {:.3} M (3×)",
        flow.n_params(),
        fwd / 1e6,
        2.0 * fwd / 1e6,
        3.0 * fwd / 1e6
    );
    let (xs, _) = flow.sample(&mut stream_rng(1, 0), batch);
    let coeffs: Vec<f64> = (0..batch).map(|i| 1.0 / (1.0 + i as f64)).collect();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(batch as u64));
    group.sample_size(10);
    group.bench_function("log_q_grad_x", |b| {
        let mut log_p = vec![0.0; batch];
        let mut grad = Batch::zeros(batch, flow.dim());
        b.iter(|| flow.log_prob_and_grad_batch(black_box(xs.view()), &mut log_p, grad.view_mut()))
    });
    group.bench_function("log_q_grad_params", |b| {
        let mut grad = vec![0.0; flow.n_params()];
        b.iter(|| flow.log_q_grad_params(black_box(xs.view()), &coeffs, &mut grad))
    });
    // The FAB losses' shape: coefficients from log q. Two passes (log_q, then log_q_grad_params) against one
    // recorded pass (log_q_then_grad_params).
    let coeffs_of = |lq: &[f64]| lq.iter().map(|v| (0.01 * v).tanh() + 1.0).collect::<Vec<f64>>();
    group.bench_function("log_q_then_log_q_grad_params", |b| {
        let mut grad = vec![0.0; flow.n_params()];
        b.iter(|| {
            let lq = flow.log_q(black_box(xs.view()));
            flow.log_q_grad_params(xs.view(), &coeffs_of(&lq), &mut grad)
        })
    });
    group.bench_function("log_q_then_grad_params", |b| {
        let mut grad = vec![0.0; flow.n_params()];
        b.iter(|| flow.log_q_then_grad_params(black_box(xs.view()), coeffs_of, &mut grad))
    });
    group.bench_function("sample", |b| {
        let mut rng = stream_rng(2, 0);
        b.iter(|| flow.sample(&mut rng, batch))
    });
    group.finish();
}

/// The coupling scale maps' numerics on the 2021 Many Well flow at batch 1000: `Math::Libm` against
/// `Math::Vector` (the same weights) on the FAB loss pass and the HMC pass.
fn bench_math(c: &mut Criterion) {
    let libm = trained_like(&FlowSpec::many_well_2021());
    let batch = 1000;
    let (xs, _) = libm.sample(&mut stream_rng(1, 0), batch);
    let coeffs: Vec<f64> = (0..batch).map(|i| 1.0 + 0.001 * i as f64).collect();
    let mut group = c.benchmark_group("many_well_2021_d16_w160_b1000_math");
    group.throughput(Throughput::Elements(batch as u64));
    for (name, flow) in [("libm", libm.clone()), ("vector", libm.with_math(Math::Vector))] {
        group.bench_function(format!("{name}/log_q_grad_params"), |b| {
            let mut grad = vec![0.0; flow.n_params()];
            b.iter(|| flow.log_q_grad_params(black_box(xs.view()), &coeffs, &mut grad))
        });
        group.bench_function(format!("{name}/log_q_grad_x"), |b| {
            let mut log_p = vec![0.0; batch];
            let mut grad = Batch::zeros(batch, xs.dim());
            b.iter(|| flow.log_prob_and_grad_batch(black_box(xs.view()), &mut log_p, grad.view_mut()))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_flow(c, "many_well_2021_d16_w160_b1000", FlowSpec::many_well_2021(), 1000);
    bench_flow(c, "many_well_iclr_d16_w320_b2048", FlowSpec::realnvp_iclr(16, 10, 320), 2048);
    bench_flow(c, "many_well_iclr_d32_w320_b2048", FlowSpec::many_well_iclr(32), 2048);
    bench_flow(c, "many_well_iclr_d16_w160_b2048", FlowSpec::many_well_iclr(16), 2048);
    bench_flow(c, "mog_2021_b100", FlowSpec::mog_2021(), 100);
    bench_flow(c, "gmm_fab_jax_spline_b1000", FlowSpec::gmm_fab_jax(), 1000);
    bench_math(c);
}

criterion_group!(flow_benches, benches);
criterion_main!(flow_benches);
