//! `Math::Libm` against `Math::Vector` on the 2021 Many Well flow at batch 1000: interleaved CPU times, or one pass for callgrind.
//!
//! `cargo run --release -p fab-flow --example math_ab -- time [rounds]` alternates the two numerics pass by pass
//! (so drifts of a shared machine hit both alike) and prints the median CPU time of each pass and their ratio.
//! CPU time is the sum over the process's threads of `/proc/self/task/*/schedstat` (nanoseconds on CPU), so time
//! spent waiting for a shared core does not count; Linux only.
//!
//! `RAYON_NUM_THREADS=1 valgrind --tool=callgrind <binary> callgrind libm|vector P` builds the flow, runs one warm-up
//! `log_q_grad_params` pass (it fills the scratch pools) and then `P` more; the instructions of one pass are the
//! total with `P = 1` minus the total with `P = 0` (the passes run on rayon's worker thread, so a toggle on a
//! function of the calling thread would miss them).

use fab_core::{Batch, LogDensity, Proposal, stream_rng};
use fab_flow::{Flow, FlowSpec, Math};
use rand_distr::{Distribution, StandardNormal};
use std::hint::black_box;
use std::time::Instant;

const BATCH: usize = 1000;

/// The bench's flow: the 2021 Many Well flow off its zero-initialised heads, and a batch of its samples.
fn flow_and_batch() -> (Flow, Batch) {
    let mut f = Flow::new(&FlowSpec::many_well_2021(), 0).expect("valid spec");
    f.initialize_data_dependent(&mut stream_rng(0, 1), 1000);
    let mut rng = stream_rng(0, 2);
    for p in f.params_mut() {
        let e: f64 = StandardNormal.sample(&mut rng);
        *p += 0.01 * e;
    }
    let (xs, _) = f.sample(&mut stream_rng(1, 0), BATCH);
    (f, xs)
}

/// The FAB loss pass: log q and `Σᵢ cᵢ ∇θ log q(xᵢ)`.
#[inline(never)]
fn measured_pass(flow: &Flow, xs: &Batch, coeffs: &[f64], grad: &mut [f64]) -> Vec<f64> {
    flow.log_q_grad_params(black_box(xs.view()), coeffs, grad)
}

/// The HMC pass: log q and `∇ₓ log q`.
fn grad_x_pass(flow: &Flow, xs: &Batch, log_q: &mut [f64], gx: &mut Batch) {
    flow.log_prob_and_grad_batch(black_box(xs.view()), log_q, gx.view_mut());
}

/// Nanoseconds on CPU of all threads of this process.
fn cpu_ns() -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task (Linux only)");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(rounds: usize) {
    let (libm, xs) = flow_and_batch();
    let vector = libm.clone().with_math(Math::Vector);
    let coeffs: Vec<f64> = (0..BATCH).map(|i| 1.0 + 0.001 * i as f64).collect();
    let mut grad = vec![0.0; libm.n_params()];
    let (mut lq, mut gx) = (vec![0.0; BATCH], Batch::zeros(BATCH, xs.dim()));
    // [flow][pass] → (cpu ms, wall ms) per round.
    let mut samples = vec![vec![(Vec::new(), Vec::new()); 2]; 2];
    for round in 0..rounds + 2 {
        for (v, flow) in [&libm, &vector].into_iter().enumerate() {
            for (pass, (cpus, walls)) in samples[v].iter_mut().enumerate() {
                let (c0, w0) = (cpu_ns(), Instant::now());
                if pass == 0 {
                    black_box(measured_pass(flow, &xs, &coeffs, &mut grad));
                } else {
                    grad_x_pass(flow, &xs, &mut lq, &mut gx);
                }
                let (cpu, wall) = ((cpu_ns() - c0) as f64 * 1e-6, w0.elapsed().as_secs_f64() * 1e3);
                // The first two rounds warm the scratch pools and caches.
                if round >= 2 {
                    cpus.push(cpu);
                    walls.push(wall);
                }
            }
        }
    }
    println!("2021 Many Well flow, batch {BATCH}, {rounds} interleaved rounds, medians:");
    for (pass, name) in
        ["log_q_grad_params (log q + Σ cᵢ∇θ)", "log_prob_and_grad_batch (log q + ∇ₓ)"].iter().enumerate()
    {
        let [l, v] = [0, 1].map(|f| {
            let (c, w) = &mut samples[f][pass];
            (median(c), median(w))
        });
        println!(
            "  {name}: CPU libm {:.3} ms, vector {:.3} ms, libm/vector {:.3}; wall libm {:.3} ms, vector {:.3} ms, \
             libm/vector {:.3}",
            l.0,
            v.0,
            l.0 / v.0,
            l.1,
            v.1,
            l.1 / v.1
        );
    }
}

fn callgrind(math: Math, passes: usize) {
    let (flow, xs) = flow_and_batch();
    let flow = flow.with_math(math);
    let coeffs: Vec<f64> = (0..BATCH).map(|i| 1.0 + 0.001 * i as f64).collect();
    let mut grad = vec![0.0; flow.n_params()];
    let mut lq = measured_pass(&flow, &xs, &coeffs, &mut grad);
    for _ in 0..passes {
        grad.fill(0.0);
        lq = measured_pass(&flow, &xs, &coeffs, &mut grad);
    }
    println!("{math:?}: Σ log q = {:.17e}, Σ grad = {:.17e}", lq.iter().sum::<f64>(), grad.iter().sum::<f64>());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("time") => time(args.get(1).and_then(|r| r.parse().ok()).unwrap_or(40)),
        Some("callgrind") => {
            let passes = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(1);
            match args.get(1).map(String::as_str) {
                Some("libm") => callgrind(Math::Libm, passes),
                Some("vector") => callgrind(Math::Vector, passes),
                _ => eprintln!("usage: math_ab callgrind libm|vector [passes]"),
            }
        }
        _ => eprintln!("usage: math_ab time [rounds] | math_ab callgrind libm|vector [passes]"),
    }
}
