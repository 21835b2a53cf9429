//! Every layer and every builder (the affine couplings with both `Math` choices): invertibility, log-determinants,
//! and all gradients against central differences.

mod common;

use common::{all_cases, log_abs_det, property_cases, test_points};
use fab_core::gradcheck::{assert_batch_agrees, check_density_gradient, check_gradient, directional_derivative};
use fab_core::{Batch, BatchRef, Proposal, stream_rng};
use rand_distr::{Distribution, StandardNormal};

const GRAD_TOL: f64 = 1e-6;

#[test]
fn inverse_of_forward_is_the_identity_and_log_dets_cancel() {
    for case in property_cases() {
        let f = &case.flow;
        let xs = test_points(f, 6, 4, 1);
        let (z, ld_density) = f.to_base(xs.view());
        let (back, ld_sampling) = f.from_base(z.view());
        for (a, b) in xs.as_slice().iter().zip(back.as_slice()) {
            assert!((a - b).abs() <= 1e-10 * a.abs().max(1.0), "{}: x → z → x gave {b}, want {a}", case.name);
        }
        for (a, b) in ld_density.iter().zip(&ld_sampling) {
            assert!((a + b).abs() <= 1e-10 * a.abs().max(1.0), "{}: log-dets {a} and {b} do not cancel", case.name);
        }
    }
}

#[test]
fn log_det_matches_a_finite_difference_jacobian() {
    for case in property_cases().into_iter().filter(|c| c.flow.dim() <= 6) {
        let f = &case.flow;
        let d = f.dim();
        let xs = test_points(f, 3, 2, 2);
        let (_, ld) = f.to_base(xs.view());
        for (i, x) in xs.rows().enumerate() {
            let mut jac = vec![0.0; d * d];
            for col in 0..d {
                let mut e = vec![0.0; d];
                e[col] = 1.0;
                for row in 0..d {
                    let g = |y: &[f64]| f.to_base(BatchRef::new(y, d)).0.row(0)[row];
                    jac[row * d + col] = directional_derivative(&g, x, &e, 1e-6);
                }
            }
            let want = log_abs_det(&jac, d);
            assert!((ld[i] - want).abs() < 1e-7, "{}: log-det {} vs finite-difference {want}", case.name, ld[i]);
        }
    }
}

#[test]
fn sampling_log_q_agrees_with_density_log_q() {
    for case in property_cases() {
        let f = &case.flow;
        let mut rng = stream_rng(4, 0);
        let (xs, lq_sample) = f.sample(&mut rng, 20);
        let lq = f.log_q(xs.view());
        for (a, b) in lq.iter().zip(&lq_sample) {
            assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{}: log q {a} vs sampling log q {b}", case.name);
        }
    }
}

fn random_coeffs(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = stream_rng(seed, 5);
    (0..n).map(|i| if i == 1 { 0.0 } else { StandardNormal.sample(&mut rng) }).collect()
}

#[test]
fn parameter_gradient_of_weighted_log_q_matches_central_differences() {
    for case in property_cases() {
        let f = &case.flow;
        if f.n_params() == 0 {
            continue;
        }
        let xs = test_points(f, 3, 2, 6);
        let c = random_coeffs(xs.n_rows(), 6);
        let mut grad = vec![0.0; f.n_params()];
        let lq = f.log_q_grad_params(xs.view(), &c, &mut grad);
        for (a, b) in lq.iter().zip(&f.log_q(xs.view())) {
            // Rows with a zero coefficient are evaluated in a separate (smaller) GEMM: equal up to rounding.
            assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                "{}: log q from the gradient pass {a} vs {b}",
                case.name
            );
        }
        let objective = |theta: &[f64]| {
            let mut g = f.clone();
            g.params_mut().copy_from_slice(theta);
            g.log_q(xs.view()).iter().zip(&c).map(|(l, c)| l * c).sum::<f64>()
        };
        let mut rng = stream_rng(7, 0);
        check_gradient(&objective, f.params(), &grad, 6, 1e-5, &mut rng).assert_below(GRAD_TOL, case.name);
    }
}

#[test]
fn input_gradient_matches_central_differences_and_batches_agree() {
    for case in property_cases() {
        let f = &case.flow;
        let xs = test_points(f, 3, 2, 8);
        let mut rng = stream_rng(8, 0);
        for x in xs.rows() {
            check_density_gradient(f, x, 6, 1e-5, &mut rng).assert_below(GRAD_TOL, case.name);
        }
        assert_batch_agrees(f, xs.view());
    }
}

#[test]
fn one_recorded_pass_gives_both_parameter_and_input_gradients() {
    for case in property_cases() {
        let f = &case.flow;
        let xs = test_points(f, 4, 1, 9);
        let c = random_coeffs(xs.n_rows(), 9);
        let mut g_both = vec![0.0; f.n_params()];
        let mut gx = Batch::zeros(xs.n_rows(), f.dim());
        let lq = f.log_q_grad_params_and_x(xs.view(), &c, &mut g_both, gx.view_mut());
        let mut g_params = vec![0.0; f.n_params()];
        f.log_q_grad_params(xs.view(), &c, &mut g_params);
        assert_eq!(g_both, g_params, "{}", case.name);
        let mut gx_alone = Batch::zeros(xs.n_rows(), f.dim());
        let lq_alone = f.log_q_grad_x(xs.view(), gx_alone.view_mut());
        for (a, b) in lq.iter().zip(&lq_alone) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{}: {a} vs {b}", case.name);
        }
        for (i, ci) in c.iter().enumerate() {
            for (a, b) in gx.row(i).iter().zip(gx_alone.row(i)) {
                assert!((a - ci * b).abs() <= 1e-12 * b.abs().max(1.0), "{}: row {i}", case.name);
            }
        }
    }
}

#[test]
fn sampling_path_gradient_matches_central_differences() {
    for case in property_cases() {
        let f = &case.flow;
        if f.n_params() == 0 {
            continue;
        }
        let (n, d) = (5, f.dim());
        let mut rng = stream_rng(10, 0);
        let eps: Vec<f64> = (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let a: Vec<f64> = (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let b: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        let eps = Batch::from_vec(eps, d).unwrap();
        // L(θ) = Σᵢ aᵢ·xᵢ(θ) + bᵢ·log q(xᵢ(θ)) with ε fixed.
        let objective = |theta: &[f64]| {
            let mut g = f.clone();
            g.params_mut().copy_from_slice(theta);
            let (x, lq) = g.sample_from_noise(eps.view());
            x.as_slice().iter().zip(&a).map(|(x, a)| x * a).sum::<f64>()
                + lq.iter().zip(&b).map(|(l, b)| l * b).sum::<f64>()
        };
        let mut grad = vec![0.0; f.n_params()];
        let (x, lq) = f.sample_grad_params(eps.view(), BatchRef::new(&a, d), &b, &mut grad);
        let (x2, lq2) = f.sample_from_noise(eps.view());
        assert_eq!((x.as_slice(), &lq), (x2.as_slice(), &lq2), "{}", case.name);
        check_gradient(&objective, f.params(), &grad, 6, 1e-5, &mut rng).assert_below(GRAD_TOL, case.name);
    }
}

#[test]
fn caller_owned_tape_gives_the_same_gradients_as_the_parallel_path() {
    for case in property_cases() {
        let f = &case.flow;
        let xs = test_points(f, 3, 1, 11);
        let c = random_coeffs(xs.n_rows(), 11);
        let mut tape = fab_flow::FlowTape::new();
        let lq = f.log_q_recorded(xs.view(), &mut tape);
        let mut gp = vec![0.0; f.n_params()];
        let mut gx = Batch::zeros(xs.n_rows(), f.dim());
        f.backward_log_q(&tape, &c, Some(gx.view_mut()), Some(&mut gp));
        let mut gp2 = vec![0.0; f.n_params()];
        let mut gx2 = Batch::zeros(xs.n_rows(), f.dim());
        let lq2 = f.log_q_grad_params_and_x(xs.view(), &c, &mut gp2, gx2.view_mut());
        assert_eq!(lq, lq2, "{}", case.name);
        for (a, b) in gp.iter().zip(&gp2).chain(gx.as_slice().iter().zip(gx2.as_slice())) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{}: {a} vs {b}", case.name);
        }
    }
}

/// Rows for a spline example of half-width `bound`: coordinates in both tails, just inside both ends of the
/// interval, and in the bins, mixed across coordinates.
fn spline_points(dim: usize, bound: f64) -> Batch {
    let values = [-bound - 0.7, -bound + 2e-3, -0.37 * bound, 0.1, 0.55 * bound, bound - 2e-3, bound + 0.9];
    let rows: Vec<f64> = (0..14).flat_map(|i| (0..dim).map(move |j| values[(i * 3 + j * 5) % values.len()])).collect();
    Batch::from_vec(rows, dim).unwrap()
}

#[test]
fn spline_layers_are_exact_in_the_tails_at_the_interval_ends_and_in_the_bins() {
    let splines: Vec<_> = all_cases().into_iter().filter(|c| c.name.starts_with("spline coupling")).collect();
    assert!(splines.len() >= 2, "the registry holds the spline examples");
    for case in splines {
        let f = &case.flow;
        let d = f.dim();
        let bound = if case.name.contains("±2") { 2.0 } else { 3.0 };
        let xs = spline_points(d, bound);
        let (z, ld) = f.to_base(xs.view());
        let (back, ld_back) = f.from_base(z.view());
        for (a, b) in xs.as_slice().iter().zip(back.as_slice()) {
            assert!((a - b).abs() <= 1e-10 * a.abs().max(1.0), "{}: x → z → x gave {b}, want {a}", case.name);
        }
        let mut rng = stream_rng(12, 0);
        for (i, x) in xs.rows().enumerate() {
            assert!((ld[i] + ld_back[i]).abs() < 1e-10, "{}: log-dets do not cancel", case.name);
            let mut jac = vec![0.0; d * d];
            for col in 0..d {
                let mut e = vec![0.0; d];
                e[col] = 1.0;
                for row in 0..d {
                    let g = |y: &[f64]| f.to_base(BatchRef::new(y, d)).0.row(0)[row];
                    jac[row * d + col] = directional_derivative(&g, x, &e, 1e-7);
                }
            }
            let want = log_abs_det(&jac, d);
            assert!(
                (ld[i] - want).abs() < 1e-6,
                "{}: row {i}: log-det {} vs finite-difference {want}",
                case.name,
                ld[i]
            );
            check_density_gradient(f, x, d, 1e-6, &mut rng).assert_below(GRAD_TOL, case.name);
        }
        let c = random_coeffs(xs.n_rows(), 13);
        let mut grad = vec![0.0; f.n_params()];
        f.log_q_grad_params(xs.view(), &c, &mut grad);
        let objective = |theta: &[f64]| {
            let mut g = f.clone();
            g.params_mut().copy_from_slice(theta);
            g.log_q(xs.view()).iter().zip(&c).map(|(l, c)| l * c).sum::<f64>()
        };
        check_gradient(&objective, f.params(), &grad, 8, 1e-6, &mut rng).assert_below(GRAD_TOL, case.name);
    }
}
