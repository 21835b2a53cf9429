//! The record-once entry point `log_q_then_grad_params` against `log_q` + `log_q_grad_params`, bit for bit.

mod common;

use common::{all_cases, test_points};
use fab_core::{Batch, Proposal, stream_rng};
use fab_flow::{CHUNK_ROWS, Flow};

/// Coefficients that depend on `log q` like the FAB losses' (a bounded function of it), with some exact zeros and
/// a non-finite `log q` mapped to a finite coefficient so the filtering of bad rows is exercised.
fn coeffs_of(log_q: &[f64]) -> Vec<f64> {
    log_q
        .iter()
        .enumerate()
        .map(|(i, &lq)| match (i % 7, lq.is_finite()) {
            (3, _) => 0.0,
            (_, true) => (0.3 * lq).sin() + 0.2,
            (_, false) => 1.0,
        })
        .collect()
}

/// `(log q, ∇θ)` from the two-pass route the new entry point replaces.
fn two_pass(f: &Flow, xs: &Batch) -> (Vec<f64>, Vec<f64>) {
    let lq = f.log_q(xs.view());
    let mut g = vec![0.0; f.n_params()];
    // (Its returned log q is not used: rows left out of the gradient are evaluated on a smaller batch, whose GEMM
    // blocking can change their last bits.)
    f.log_q_grad_params(xs.view(), &coeffs_of(&lq), &mut g);
    (lq, g)
}

fn record_once(f: &Flow, xs: &Batch) -> (Vec<f64>, Vec<f64>) {
    let mut g = vec![0.0; f.n_params()];
    let lq = f.log_q_then_grad_params(xs.view(), coeffs_of, &mut g);
    (lq, g)
}

/// Bit patterns, with every NaN mapped to one pattern (NaN payloads are not part of the contract).
fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| if x.is_nan() { f64::NAN.to_bits() } else { x.to_bits() }).collect()
}

/// A batch of several chunks with bad rows in the middle: a NaN row and a far-away row (non-finite log q).
fn batch_with_bad_rows(f: &Flow) -> Batch {
    let clean = test_points(f, CHUNK_ROWS + 40, 30, 21);
    let mut xs = Batch::zeros(0, f.dim());
    for (i, row) in clean.rows().enumerate() {
        xs.push_row(row);
        if i == 5 {
            xs.push_row(&vec![f64::NAN; f.dim()]);
            xs.push_row(&vec![1e300; f.dim()]);
        }
    }
    xs
}

#[test]
fn record_once_gives_bitwise_the_two_pass_log_q_and_gradient() {
    for case in all_cases() {
        let f = &case.flow;
        for xs in [test_points(f, 9, 4, 20), batch_with_bad_rows(f)] {
            let (lq_a, g_a) = two_pass(f, &xs);
            let (lq_b, g_b) = record_once(f, &xs);
            assert_eq!(bits(&lq_a), bits(&lq_b), "{}: log q differs", case.name);
            assert_eq!(bits(&g_a), bits(&g_b), "{}: ∇θ differs", case.name);
            assert!(g_b.iter().all(|v| v.is_finite()), "{}: a bad row poisoned ∇θ", case.name);
            assert!(g_b.iter().any(|&v| v != 0.0), "{}: the gradient is trivially zero", case.name);
        }
    }
}

#[test]
fn record_once_accumulates_into_the_gradient_and_sees_the_flows_log_q() {
    let case = all_cases().into_iter().last().expect("the registry is not empty");
    let f = &case.flow;
    let xs = test_points(f, 12, 3, 22);
    let (_, g_once) = record_once(f, &xs);
    let mut g = vec![1.5; f.n_params()];
    let mut seen = Vec::new();
    f.log_q_then_grad_params(
        xs.view(),
        |lq| {
            seen = lq.to_vec();
            coeffs_of(lq)
        },
        &mut g,
    );
    assert_eq!(bits(&seen), bits(&f.log_q(xs.view())), "the closure must receive log q of the batch");
    for (a, b) in g.iter().zip(&g_once) {
        assert_eq!(a.to_bits(), (1.5 + b).to_bits(), "the gradient must be accumulated, not overwritten");
    }
}

#[test]
fn record_once_is_bitwise_identical_for_one_and_two_threads() {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for case in all_cases().into_iter().filter(|c| c.name.contains("Many Well") || c.name.contains("D = 3")) {
        let f = &case.flow;
        let (xs, _) = f.sample(&mut stream_rng(14, 0), 3 * CHUNK_ROWS + 17);
        let run = || record_once(f, &xs);
        let a = one.install(run);
        let b = two.install(run);
        assert_eq!(bits(&a.0), bits(&b.0), "{}: log q differs between 1 and 2 threads", case.name);
        assert_eq!(bits(&a.1), bits(&b.1), "{}: ∇θ differs between 1 and 2 threads", case.name);
    }
}
