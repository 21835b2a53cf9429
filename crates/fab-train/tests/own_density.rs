//! Training on a density supplied from code: no `target` in the config, capabilities only where declared, and a
//! density that is NaN on half the plane trains with its NaNs counted and its weights finite.

use fab_core::LogDensity;
use fab_targets::{CustomTarget, DiagGaussian, Target};
use fab_train::config::{Budget, EXAMPLE_OWN_DENSITY, Method, TrainConfig};
use fab_train::{Detail, Run, evaluate};

fn config(iterations: u64) -> TrainConfig {
    let mut c: TrainConfig = ron::from_str(EXAMPLE_OWN_DENSITY).unwrap();
    c.budget = Budget::Iterations(iterations);
    c.eval.n_samples_final = 2000;
    c
}

/// `N((−1, 0.5), I)` on `x₀ < 0`, NaN on the other half plane.
struct HalfNan;

impl LogDensity for HalfNan {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        if x[0] >= 0.0 { f64::NAN } else { -0.5 * ((x[0] + 1.0).powi(2) + (x[1] - 0.5).powi(2)) }
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        g[0] = -(x[0] + 1.0);
        g[1] = -(x[1] - 0.5);
        self.log_prob(x)
    }
}
impl Target for HalfNan {}

#[test]
fn a_density_that_is_nan_on_half_the_plane_trains_with_its_nans_counted_and_finite_weights() {
    let mut run = Run::with_target(config(40), Box::new(HalfNan)).unwrap();
    while !run.is_done() {
        run.step().unwrap();
    }
    assert!(run.counters().n_dropped_points > 0, "NaN draws are dropped and counted: {:?}", run.counters());
    let report = evaluate(&run, 4000, Detail::Full).unwrap();
    assert!(report.flow_n_non_finite > 0, "flow samples in the NaN half are counted");
    assert!(report.ais_n_dropped.unwrap() > 0);
    let ais = run.sample_ais(4000, 3).unwrap().unwrap();
    assert!(ais.log_w.iter().all(|w| w.is_finite()), "every kept AIS weight is finite");
    assert!(ais.samples.rows().all(|x| x[0] < 0.0), "no kept point lies in the NaN half");
    assert!(report.log_z_hat_ais.unwrap().log_z.is_finite());
}

#[test]
fn evaluation_reports_what_the_capabilities_allow() {
    let nothing = CustomTarget::new("nothing_declared", DiagGaussian::standard(2));
    let mut run = Run::with_target(config(3), Box::new(nothing)).unwrap();
    while !run.is_done() {
        run.step().unwrap();
    }
    let r = evaluate(&run, 1000, Detail::Full).unwrap();
    assert!(r.flow_ess > 0.0 && r.log_z_hat_flow.log_z.is_finite() && r.log_z_hat_ais.is_some() && r.ais_ess.is_some());
    assert!(r.log_z_flow.is_none() && r.log_z_ais.is_none(), "no log Z declared");
    assert!(r.mean_log_q_target.is_none() && r.forward_ess.is_none(), "no exact sampler declared");
    assert!(r.mode_set_mean_log_q.is_none() && r.expectation_flow.is_none());

    let declared = CustomTarget::new("declared", DiagGaussian::standard(2))
        .with_log_z(0.0)
        .with_exact_sampler(DiagGaussian::standard(2));
    let mut run = Run::with_target(config(3), Box::new(declared)).unwrap();
    run.step().unwrap();
    let r = evaluate(&run, 1000, Detail::Periodic).unwrap();
    assert!(r.log_z_ais.is_some() && r.forward_ess.is_some() && r.mean_log_q_target.is_some());
}

#[test]
fn a_config_without_target_needs_one_from_code_and_ml_needs_exact_samples() {
    let err = Run::new(config(3)).err().expect("no target anywhere").to_string();
    assert!(err.contains("`target`") && err.contains("Run::with_target"), "{err}");
    let ml = TrainConfig { method: Method::MaximumLikelihood, ..config(3) };
    let err = Run::with_target(ml, Box::new(HalfNan)).err().expect("no exact sampler").to_string();
    assert!(err.contains("`method`") && err.contains("exact sampler"), "{err}");
}
