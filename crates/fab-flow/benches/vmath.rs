//! Criterion benchmarks of `fab_flow::vmath`: ns per element of each function at each vector level this CPU has, against std's libm.
//!
//! Each benchmark maps a 4096-element slice (32 KiB, L1-resident) of inputs from the range the flows use;
//! criterion's "thrpt" line gives elements/s, i.e. ns/element = 10⁹ / thrpt.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fab_flow::vmath::{self, Level, LevelUnavailable};
use std::hint::black_box;

const LEN: usize = 4096;

type AtFn = fn(Level, &[f64], &mut [f64]) -> Result<(), LevelUnavailable>;
/// A function's name, its vmath entry point, its libm reference and the input range benchmarked.
type Case = (&'static str, AtFn, fn(f64) -> f64, (f64, f64));

/// Inputs evenly spread over `[lo, hi]`, shuffled by a fixed stride so neighbours differ.
fn inputs(lo: f64, hi: f64) -> Vec<f64> {
    (0..LEN).map(|i| lo + (hi - lo) * ((i * 2_654_435_761) % LEN) as f64 / LEN as f64).collect()
}

fn libm_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn libm_softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn libm_log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

fn bench_vmath(c: &mut Criterion) {
    let functions: [Case; 6] = [
        ("exp", vmath::exp_into_at, f64::exp, (-20.0, 20.0)),
        ("ln", vmath::ln_into_at, f64::ln, (1e-3, 1e3)),
        ("log1p", vmath::log1p_into_at, f64::ln_1p, (-0.5, 5.0)),
        ("sigmoid", vmath::sigmoid_into_at, libm_sigmoid, (-20.0, 20.0)),
        ("softplus", vmath::softplus_into_at, libm_softplus, (-20.0, 20.0)),
        ("log_sigmoid", vmath::log_sigmoid_into_at, libm_log_sigmoid, (-20.0, 20.0)),
    ];
    let mut group = c.benchmark_group("vmath");
    group.throughput(Throughput::Elements(LEN as u64));
    for (name, at, libm, (lo, hi)) in functions {
        let src = inputs(lo, hi);
        let mut dst = vec![0.0; LEN];
        group.bench_function(format!("{name}/libm"), |b| {
            b.iter(|| {
                for (d, &s) in dst.iter_mut().zip(black_box(&src)) {
                    *d = libm(s);
                }
                black_box(&mut dst);
            })
        });
        for level in Level::ALL.into_iter().filter(|l| l.is_available()) {
            group.bench_function(format!("{name}/{level:?}"), |b| {
                b.iter(|| {
                    at(level, black_box(&src), &mut dst).unwrap();
                    black_box(&mut dst);
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench_vmath
}
criterion_main!(benches);
