//! Step-size adaptation (FAB rule, dual averaging, freezing, checkpoints), R̂/ESS diagnostics and typed errors.

mod common;

use common::*;
use fab_core::{Batch, stream_rng, sub_seed};
use fab_mcmc::{
    ChainInfo, ChainState, FabRule, Hmc, Kernel, LinearLogDensity, McmcError, StepInfo, StepSizes,
    effective_sample_size, exp_log_mean_exp_accept, mean_clamped_accept_prob, split_r_hat,
};
use rand::Rng;
use rand_distr::StandardNormal;

fn info_with_energy_errors(errors: &[f64]) -> StepInfo {
    StepInfo {
        chains: errors
            .iter()
            .map(|&e| ChainInfo {
                accepted: true,
                accept_prob: if e.is_nan() { 0.0 } else { (-e).exp().min(1.0) },
                divergent: false,
                energy_error: e,
            })
            .collect(),
        n_evaluated: 0,
    }
}

#[test]
fn fab_rule_moves_individual_and_common_parts_by_the_papers_factors() {
    for (rule, f_ind, f_common) in [(FabRule::Fab2021, 1.1, 1.05), (FabRule::Iclr, 1.05, 1.02)] {
        let mut s = StepSizes::fab(rule, 2, 1.0).unwrap();
        assert!((s.step_size(0) - 1.0).abs() < 1e-15 && (s.step_size(1) - 1.0).abs() < 1e-15);
        // Every proposal accepted: statistic 1 > 0.65, so distribution 0 grows and the common part grows.
        s.adapt(0, &info_with_energy_errors(&[0.0, -1.0]));
        let (ind0, common) = (0.9 * f_ind, 0.1 * f_common);
        assert!((s.step_size(0) - (ind0 + common)).abs() < 1e-14, "{rule:?}");
        assert!((s.step_size(1) - (0.9 + common)).abs() < 1e-14, "the common part is shared");
        // Nothing accepted: distribution 1 shrinks, the common part shrinks back.
        s.adapt(1, &info_with_energy_errors(&[10.0, f64::NAN]));
        assert!((s.step_size(1) - (0.9 / f_ind + 0.1)).abs() < 1e-14, "{rule:?}");
        assert!((s.step_size(0) - (ind0 + 0.1)).abs() < 1e-14);
        // Frozen: no change.
        let before = s.clone();
        s.freeze();
        s.adapt(0, &info_with_energy_errors(&[0.0]));
        assert_eq!(s.step_size(0), before.step_size(0));
        assert!(s.is_frozen());
    }
}

#[test]
fn both_acceptance_statistics_are_the_mean_acceptance_probability() {
    let mut rng = stream_rng(3, 0);
    let mut errors: Vec<f64> = (0..500).map(|_| rng.sample::<f64, _>(StandardNormal) * 2.0).collect();
    errors[7] = f64::NAN;
    errors[9] = f64::INFINITY;
    let info = info_with_energy_errors(&errors);
    let a = mean_clamped_accept_prob(&errors);
    let b = exp_log_mean_exp_accept(&errors);
    let direct = info.mean_accept_prob();
    assert!((a - direct).abs() < 1e-12 && (b - direct).abs() < 1e-12, "{a} {b} {direct}");
    assert_eq!(exp_log_mean_exp_accept(&[f64::NAN, f64::INFINITY]), 0.0);
}

/// Adapts for `n_adapt` transitions on a 5-D Gaussian, freezes, and returns the mean acceptance afterwards.
fn accept_after_adaptation(mut sizes: StepSizes, n_adapt: u64) -> (f64, StepSizes) {
    let gauss = DiagGauss { mean: vec![0.0; 5], std: vec![0.5, 1.0, 1.0, 2.0, 1.5] };
    let target = LinearLogDensity::single(&gauss);
    let mut state = ChainState::init(&target, gauss.draws(400, 1), true).unwrap();
    let hmc = Hmc::new(5);
    for t in 0..n_adapt {
        let info = hmc.step(&target, &mut state, sizes.step_size(0), sub_seed(1, &[t])).unwrap();
        sizes.adapt(0, &info);
    }
    sizes.freeze();
    let frozen = sizes.clone();
    let mut total = 0.0;
    for t in 0..20 {
        let info = hmc.step(&target, &mut state, sizes.step_size(0), sub_seed(2, &[t])).unwrap();
        sizes.adapt(0, &info);
        total += info.mean_accept_prob();
    }
    assert_eq!(sizes, frozen, "frozen adaptation must not move");
    (total / 20.0, sizes)
}

#[test]
fn adaptation_reaches_the_target_acceptance() {
    let (a, s) = accept_after_adaptation(StepSizes::dual_averaging(1, 5.0, 0.8).unwrap(), 300);
    assert!((a - 0.8).abs() < 0.06, "dual averaging: acceptance {a} at ε = {}", s.step_size(0));
    let (a, s) = accept_after_adaptation(StepSizes::fab(FabRule::Iclr, 1, 5.0).unwrap(), 300);
    assert!((a - 0.65).abs() < 0.1, "FAB rule: acceptance {a} at ε = {}", s.step_size(0));
}

#[test]
fn adaptation_state_round_trips_through_serde() {
    for mut s in [
        StepSizes::fab(FabRule::Fab2021, 3, 1.0).unwrap(),
        StepSizes::dual_averaging(2, 0.3, 0.7).unwrap(),
        StepSizes::fixed(2, 5.0).unwrap(),
    ] {
        s.adapt(0, &info_with_energy_errors(&[0.3, 2.0]));
        s.freeze();
        // RON restores every float bit for bit (checkpoints must resume exactly).
        let text = ron::to_string(&s).unwrap();
        let back: StepSizes = ron::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.step_size(1).to_bits(), s.step_size(1).to_bits());
        // JSON works too, but serde_json without its `float_roundtrip` feature may move the last bit.
        let json: StepSizes = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!((json.step_size(0) - s.step_size(0)).abs() <= 1e-15 * s.step_size(0));
        assert_eq!(json.is_frozen(), s.is_frozen());
    }
}

fn ar1_chains(n_chains: usize, n: usize, rho: f64, seed: u64) -> Vec<Vec<f64>> {
    (0..n_chains)
        .map(|c| {
            let mut rng = stream_rng(seed, c as u64);
            let mut x = rng.sample::<f64, _>(StandardNormal);
            (0..n)
                .map(|_| {
                    x = rho * x + (1.0 - rho * rho).sqrt() * rng.sample::<f64, _>(StandardNormal);
                    x
                })
                .collect()
        })
        .collect()
}

#[test]
fn r_hat_and_ess_on_known_chains() {
    let iid = ar1_chains(4, 1000, 0.0, 1);
    let ess = effective_sample_size(&iid);
    assert!((3300.0..4800.0).contains(&ess), "iid draws: ESS {ess} of 4000");
    assert!((split_r_hat(&iid) - 1.0).abs() < 0.01);
    // AR(1): ESS = N(1 − ρ)/(1 + ρ).
    let ar = ar1_chains(8, 2000, 0.9, 2);
    let truth = 16000.0 * 0.1 / 1.9;
    let ess = effective_sample_size(&ar);
    assert!((ess / truth - 1.0).abs() < 0.2, "AR(1) ρ = 0.9: ESS {ess}, expected ≈ {truth}");
    assert!(split_r_hat(&ar) < 1.02);
    // One chain stuck elsewhere, or a chain drifting, is flagged.
    let mut shifted = iid.clone();
    shifted[0].iter_mut().for_each(|x| *x += 3.0);
    assert!(split_r_hat(&shifted) > 1.3);
    let drift: Vec<Vec<f64>> = vec![(0..1000).map(|t| t as f64 / 100.0 + iid[0][t]).collect()];
    assert!(split_r_hat(&drift) > 1.5, "split-R̂ catches a trend within one chain");
    assert!(split_r_hat(&[vec![1.0; 3]]).is_nan());
}

#[test]
fn misuse_gives_typed_errors_naming_the_field() {
    let gauss = DiagGauss::standard(2);
    let target = LinearLogDensity::single(&gauss);
    let mut state = ChainState::init(&target, Batch::zeros(4, 2), true).unwrap();
    let field = |e: McmcError| match e {
        McmcError::InvalidParameter { field, .. } => field,
        other => panic!("unexpected error {other:?}"),
    };
    assert_eq!(field(Hmc::new(0).step(&target, &mut state, 0.1, 0).unwrap_err()), "n_leapfrog");
    assert_eq!(field(Hmc::new(3).step(&target, &mut state, -0.1, 0).unwrap_err()), "step_size");
    assert_eq!(
        field(Hmc::new(3).with_mass_diag(vec![1.0]).step(&target, &mut state, 0.1, 0).unwrap_err()),
        "mass_diag"
    );
    assert_eq!(
        field(Hmc::new(3).with_step_size_jitter(1.5).step(&target, &mut state, 0.1, 0).unwrap_err()),
        "step_size_jitter"
    );
    assert!(matches!(ChainState::init(&target, Batch::zeros(4, 3), true), Err(McmcError::PositionDimension { .. })));
    let other = DiagGauss::standard(3);
    assert!(matches!(
        LinearLogDensity::new(vec![&gauss, &other], vec![1.0, 1.0]),
        Err(McmcError::ComponentDimension { index: 1, .. })
    ));
    assert!(matches!(LinearLogDensity::new(vec![&gauss], vec![f64::NAN]), Err(McmcError::NonFiniteCoefficient { .. })));
    assert_eq!(field(StepSizes::dual_averaging(1, 0.1, 1.5).unwrap_err()), "target_accept");
}
