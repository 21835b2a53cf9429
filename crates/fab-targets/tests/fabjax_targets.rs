//! The three fab-jax benchmark targets against their definitions (issue 13): GMM-9 (`gmm_v1`), the 10-D funnel
//! and the 32-D Many Well with its log Z = 16·(ln 11784.50927 + ½ ln 2π) = 164.6957.

use fab_core::LogDensity;
use fab_targets::{DiagGmm, Funnel, GMM9_STD, ManyWell, Target, TargetSpec};
use std::f64::consts::PI;

/// `ln N(x; m, s²)`.
fn ln_normal(x: f64, m: f64, s: f64) -> f64 {
    -0.5 * ((x - m) / s).powi(2) - s.ln() - 0.5 * (2.0 * PI).ln()
}

#[test]
fn gmm9_is_the_equal_mixture_on_the_five_grid_with_variance_point_three() {
    let gmm = DiagGmm::gmm9_v1();
    assert_eq!(gmm.name(), "gmm9_v1");
    assert_eq!(gmm.log_z(), Some(0.0));
    assert!((GMM9_STD * GMM9_STD - 0.3).abs() < 1e-6);
    let grid = [-5.0, 0.0, 5.0];
    for x in [[0.0, 0.0], [5.0, -5.0], [1.3, -2.2], [-7.0, 9.0]] {
        let direct: f64 = grid
            .iter()
            .flat_map(|&a| grid.iter().map(move |&b| (a, b)))
            .map(|(a, b)| (ln_normal(x[0], a, GMM9_STD) + ln_normal(x[1], b, GMM9_STD)).exp() / 9.0)
            .sum::<f64>()
            .ln();
        assert!((gmm.log_prob(&x) - direct).abs() < 1e-12, "{x:?}: {} vs {direct}", gmm.log_prob(&x));
    }
    // The explicit `Gmm` spec used by configs/fabjax_gmm9.ron builds the same density.
    let means: Vec<Vec<f64>> = grid.iter().flat_map(|&a| grid.iter().map(move |&b| vec![a, b])).collect();
    let spec = TargetSpec::Gmm { means, stds: vec![vec![GMM9_STD; 2]; 9], weights: vec![1.0; 9] };
    let built = spec.build().unwrap();
    for x in [[0.3, 4.1], [-5.0, 5.0]] {
        assert_eq!(built.log_prob(&x), gmm.log_prob(&x));
    }
}

#[test]
fn funnel_10d_is_neals_funnel_with_neck_std_three() {
    let f = Funnel::new(10).unwrap();
    assert_eq!(f.log_z(), Some(0.0));
    let x = [1.2, -0.5, 0.3, 2.0, -1.1, 0.0, 0.7, -0.2, 1.5, -2.5];
    let direct =
        ln_normal(x[0], 0.0, 3.0) + x[1..].iter().map(|xi| ln_normal(*xi, 0.0, (0.5 * x[0]).exp())).sum::<f64>();
    assert!((f.log_prob(&x) - direct).abs() < 1e-12, "{} vs {direct}", f.log_prob(&x));
}

#[test]
fn many_well_32_has_fabjax_log_z_and_its_double_well_energy() {
    let mw = ManyWell::new(32).unwrap();
    let log_z = mw.log_z().unwrap();
    let fabjax = 16.0 * (11784.50927f64.ln() + 0.5 * (2.0 * PI).ln());
    assert!((log_z - fabjax).abs() < 1e-12);
    assert!((log_z - 164.6957).abs() < 5e-5, "{log_z}");
    // a = −0.5, b = −6, c = 1 on even coordinates; ½y² on odd ones.
    let x: Vec<f64> = (0..32).map(|i| 0.1 * i as f64 - 1.5).collect();
    let direct: f64 = x
        .chunks_exact(2)
        .map(|p| {
            let (a, b, c) = (-0.5, -6.0, 1.0);
            -(a * p[0] + b * p[0] * p[0] + c * p[0].powi(4)) - 0.5 * p[1] * p[1]
        })
        .sum();
    assert!((mw.log_prob(&x) - direct).abs() < 1e-10, "{} vs {direct}", mw.log_prob(&x));
}
