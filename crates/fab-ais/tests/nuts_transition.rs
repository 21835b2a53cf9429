//! AIS with NUTS as its transition: exact zero weights for q = p, and a Gaussian log Z within three standard errors.

use fab_ais::{Ais, AisConfig, Transition};
use fab_core::LogDensity;
use fab_mcmc::Nuts;
use fab_targets::DiagGaussian;

/// A normalised density plus a constant: its normalising constant is `exp(log_z)`.
struct Scaled {
    inner: DiagGaussian,
    log_z: f64,
}

impl LogDensity for Scaled {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.inner.log_prob(x) + self.log_z
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.inner.log_prob_and_grad(x, grad) + self.log_z
    }
}

fn nuts_config(n_intermediate: usize) -> AisConfig {
    AisConfig {
        n_intermediate,
        alpha: 1.0,
        transition: Transition::Nuts(Nuts::new().with_max_depth(4)),
        ..AisConfig::iclr_hmc()
    }
}

#[test]
fn with_nuts_and_q_equal_to_p_every_log_weight_is_zero() {
    let q = DiagGaussian::new(vec![0.5, -1.0], vec![1.0, 0.5]).unwrap();
    let out = Ais::new(nuts_config(3).check().unwrap()).run(&q, &q, 200, 3, 0).unwrap();
    assert!(out.log_w.iter().all(|&w| w == 0.0), "{:?}", &out.log_w[..5]);
    assert!(out.per_beta.iter().all(|b| b.acceptance_rate > 0.0), "transitions ran");
}

#[test]
fn with_nuts_a_gaussian_log_z_is_within_three_standard_errors() {
    let q = DiagGaussian::standard(5);
    let truth = 2.5;
    let p = Scaled { inner: DiagGaussian::new(vec![0.8; 5], vec![0.6; 5]).unwrap(), log_z: truth };
    let mut ais = Ais::new(nuts_config(8).check().unwrap());
    for it in 0..20 {
        ais.run(&q, &p, 128, 1, it).unwrap();
    }
    ais.freeze();
    let est = ais.run(&q, &p, 2000, 9, 500).unwrap().log_z;
    assert!((est.log_z - truth).abs() < 3.0 * est.std_err, "log Z {} ± {} vs {truth}", est.log_z, est.std_err);
}
