//! Checks run on every target of `all_builtin_targets()`: gradients, batched paths, exact-sampler moments,
//! the Stein identity linking sampler and density, and normalisation of the 2-D targets by quadrature.

mod common;

use common::{N_SIGMA, assert_rel, integrate_2d, mean_var};
use fab_core::gradcheck::{assert_batch_agrees, check_density_gradient};
use fab_core::{Batch, ExactSampler, LogDensity, stream_rng, sub_seed};
use fab_targets::{Target, all_builtin_targets};
use rand_distr::{Distribution, StandardNormal};

/// The exact sampler every built-in target declares.
fn exact(target: &dyn Target) -> &dyn ExactSampler {
    target.exact_sampler().unwrap_or_else(|| panic!("{} declares no exact sampler", target.name()))
}

#[test]
fn every_builtin_target_declares_its_capabilities() {
    for target in all_builtin_targets() {
        let name = target.name().to_string();
        assert!(target.exact_sampler().is_some(), "{name}: exact sampler");
        assert!(target.log_z().is_some(), "{name}: log Z");
        assert!(target.moments().is_some(), "{name}: moments");
        let modes = target.mode_sets(&mut stream_rng(0, 0));
        assert_eq!(modes.is_some(), name.starts_with("many_well") || name == "double_well", "{name}: mode sets");
        let has_f = target.test_function().is_some();
        assert_eq!(has_f, name == "mog5_2021" || name == "gmm40_iclr", "{name}: test function");
    }
}

/// Exact samples plus the same samples moved by `N(0, 1)` noise, so points off the typical set are checked too.
fn test_points(target: &dyn Target, seed: u64, n_exact: usize) -> Batch {
    let mut rng = stream_rng(seed, 0);
    let exact = exact(target).sample_exact(&mut rng, n_exact);
    let mut points = exact.clone();
    for row in exact.rows() {
        let moved: Vec<f64> = row
            .iter()
            .map(|x| {
                let z: f64 = StandardNormal.sample(&mut rng);
                x + z
            })
            .collect();
        points.push_row(&moved);
    }
    points
}

#[test]
fn names_are_distinct_and_log_z_is_known() {
    let targets = all_builtin_targets();
    let mut names: Vec<&str> = targets.iter().map(|t| t.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), targets.len(), "duplicate target names: {names:?}");
    for t in &targets {
        assert!(t.log_z().is_some_and(f64::is_finite), "{}: log Z unknown", t.name());
        assert!(t.moments().is_some(), "{}: moments unknown", t.name());
    }
}

#[test]
fn gradients_match_finite_differences_for_every_target() {
    for (idx, target) in all_builtin_targets().iter().enumerate() {
        let points = test_points(target.as_ref(), sub_seed(10, &[idx as u64]), 4);
        let mut rng = stream_rng(11, idx as u64);
        for x in points.rows() {
            let check = check_density_gradient(target.as_ref(), x, 6, 1e-3, &mut rng);
            check.assert_below(1e-7, &format!("{} at {x:?}", target.name()));
        }
    }
}

#[test]
fn batched_paths_agree_with_single_points_for_every_target() {
    for (idx, target) in all_builtin_targets().iter().enumerate() {
        let points = test_points(target.as_ref(), sub_seed(12, &[idx as u64]), 16);
        assert_batch_agrees(target.as_ref(), points.view());
    }
}

/// Sample mean within `N_SIGMA·σ/√n` of the exact mean; sample variance within `N_SIGMA·√((μ₄ − σ⁴)/n)` of
/// the exact variance, per coordinate.
#[test]
fn exact_sampler_moments_match_the_exact_moments_for_every_target() {
    let n = 100_000;
    for (idx, target) in all_builtin_targets().iter().enumerate() {
        let moments = target.moments().unwrap();
        let xs = exact(target.as_ref()).sample_exact(&mut stream_rng(13, idx as u64), n);
        for j in 0..target.dim() {
            let column: Vec<f64> = xs.rows().map(|x| x[j]).collect();
            let (mean, var) = mean_var(&column);
            let (mu, sigma2, mu4) = (moments.mean[j], moments.variance[j], moments.fourth_central[j]);
            let mean_bound = N_SIGMA * (sigma2 / n as f64).sqrt();
            assert!(
                (mean - mu).abs() <= mean_bound,
                "{} coordinate {j}: sample mean {mean} vs {mu} (bound {mean_bound:.3e})",
                target.name()
            );
            let var_bound = N_SIGMA * ((mu4 - sigma2 * sigma2) / n as f64).sqrt();
            assert!(
                (var - sigma2).abs() <= var_bound,
                "{} coordinate {j}: sample variance {var} vs {sigma2} (bound {var_bound:.3e})",
                target.name()
            );
        }
    }
}

/// Stein's identity `E_p[∇ log p] = 0` ties the density (through its gradient) to the sampler: a sampler of a
/// different distribution, or a gradient of a different density, gives a nonzero mean.
#[test]
fn score_has_zero_mean_under_exact_samples_for_every_target() {
    let n = 50_000;
    for (idx, target) in all_builtin_targets().iter().enumerate() {
        let xs = exact(target.as_ref()).sample_exact(&mut stream_rng(14, idx as u64), n);
        let mut log_p = vec![0.0; n];
        let mut grads = Batch::zeros(n, target.dim());
        target.log_prob_and_grad_batch(xs.view(), &mut log_p, grads.view_mut());
        assert!(log_p.iter().all(|lp| lp.is_finite()), "{}: non-finite log p at an exact sample", target.name());
        for j in 0..target.dim() {
            let column: Vec<f64> = grads.rows().map(|g| g[j]).collect();
            let (mean, var) = mean_var(&column);
            let bound = N_SIGMA * (var / n as f64).sqrt();
            assert!(mean.abs() <= bound, "{} coordinate {j}: E[score] = {mean} (bound {bound:.3e})", target.name());
        }
    }
}

/// Integration box for each 2-D target, wide enough that the mass outside is below 1e-12.
fn box_2d(name: &str) -> Option<([f64; 2], [f64; 2], usize, usize)> {
    match name {
        // The plot window x1 ∈ [−25, 20], x2 ∈ [−20, 10], widened by ≥ 6 of the largest std on each side.
        "mog5_2021" => Some(([-40.0, 35.0], [-35.0, 25.0], 1500, 1200)),
        // Means in [−40, 40]², std 1.31: ±60 leaves 15 std.
        "gmm40_iclr" => Some(([-60.0, 60.0], [-60.0, 60.0], 1200, 1200)),
        // p̃(±6) ≈ e^{−1077}; the Gaussian coordinate over ±12.
        "double_well" => Some(([-6.0, 6.0], [-12.0, 12.0], 2400, 960)),
        _ => None,
    }
}

#[test]
fn two_dimensional_targets_integrate_to_their_normaliser() {
    let mut n_checked = 0;
    for target in all_builtin_targets().iter().filter(|t| t.dim() == 2) {
        let name = target.name();
        let (bx, by, nx, ny) = box_2d(name).unwrap_or_else(|| panic!("no integration box for 2-D target {name}"));
        let integral = integrate_2d(&|x, y| target.log_prob(&[x, y]).exp(), bx, by, nx, ny);
        assert_rel(integral, target.log_z().unwrap().exp(), 1e-9, &format!("∫ p̃ of {name}"));
        n_checked += 1;
    }
    assert_eq!(n_checked, 3, "the 2021 MoG, the ICLR GMM and the Double Well");
}

#[test]
fn a_custom_target_declares_only_what_it_is_given() {
    use fab_targets::{CustomTarget, DiagGaussian, TestFunction};
    let density = DiagGaussian::standard(2);
    let bare = CustomTarget::new("mine", density.clone());
    assert_eq!(bare.name(), "mine");
    assert!(bare.log_z().is_none() && bare.exact_sampler().is_none() && bare.test_function().is_none());
    assert!(bare.point_is_valid(&[1e300, 0.0]));
    let full = CustomTarget::new("mine", density.clone())
        .with_log_z(0.0)
        .with_exact_sampler(density)
        .with_test_function(TestFunction::new(|x| x[0] * x[0], 1.0))
        .with_validity(|x| x.iter().all(|v| v.abs() < 10.0));
    assert_eq!(full.log_z(), Some(0.0));
    assert_eq!(full.exact_sampler().unwrap().sample_exact(&mut stream_rng(1, 0), 3).n_rows(), 3);
    assert_eq!(full.test_function().unwrap().value(&[3.0, 0.0]), 9.0);
    assert!(full.point_is_valid(&[9.0, -9.0]) && !full.point_is_valid(&[11.0, 0.0]));
    assert_eq!(full.log_prob(&[0.5, 0.5]), DiagGaussian::standard(2).log_prob(&[0.5, 0.5]));
}

#[test]
fn a_custom_target_forwards_how_its_density_wants_to_be_evaluated() {
    use fab_core::{Evaluation, LogDensity};
    use fab_targets::CustomTarget;
    struct Python;
    impl LogDensity for Python {
        fn dim(&self) -> usize {
            1
        }
        fn evaluation(&self) -> Evaluation {
            Evaluation::WholeBatch
        }
        fn log_prob(&self, x: &[f64]) -> f64 {
            -x[0] * x[0]
        }
        fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
            g[0] = -2.0 * x[0];
            self.log_prob(x)
        }
    }
    assert_eq!(CustomTarget::new("py", Python).evaluation(), Evaluation::WholeBatch);
}
