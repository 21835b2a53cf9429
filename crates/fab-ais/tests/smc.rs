//! SMC against known answers: log Ẑ within 3 SE of analytic values (Gaussian → shifted narrower Gaussian, a
//! bimodal mixture) with and without resampling, the adaptive schedule reaching β = 1 at the target CESS,
//! systematic resampling's offspring counts, equality with AIS when SMC is switched off, evaluation counts,
//! thread determinism and configuration errors.

use fab_ais::{
    Ais, AisConfig, Resampling, Smc, SmcOutput, SmcSchedule, SmcSettings, StepSizeRule, Transition,
    conditional_ess_fraction, next_beta_by_cess, systematic_resample,
};
use fab_core::{Counted, LogDensity, Proposal};
use fab_mcmc::Hmc;
use fab_targets::{DiagGaussian, DiagGmm};

/// A normalised density plus a constant: its normalising constant is `exp(log_z)`.
struct Scaled<D> {
    inner: D,
    log_z: f64,
}

impl<D: LogDensity> LogDensity for Scaled<D> {
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

/// HMC with 5 leapfrog steps at a fixed step size, α = 1, `k` (maximum) intermediate distributions.
fn hmc_fixed(k: usize, step: f64) -> AisConfig {
    AisConfig {
        n_intermediate: k,
        alpha: 1.0,
        transition: Transition::Hmc(Hmc::new(5)),
        step_size_rule: StepSizeRule::Fixed,
        initial_step_size: step,
        ..AisConfig::fab_2021()
    }
}

fn adaptive(target_cess: f64, resampling: Resampling) -> SmcSettings {
    SmcSettings { schedule: SmcSchedule::Adaptive { target_cess }, resampling }
}

const SYSTEMATIC: Resampling = Resampling::Systematic { ess_threshold: 0.5 };

/// Mean of `log Ẑ` over `n_runs` runs of `n` particles at iterations `0..n_runs`, and its standard error
/// `sd / √n_runs`; the runs themselves for further checks.
fn repeated(smc: &mut Smc, q: &dyn Proposal, p: &dyn LogDensity, n: usize, n_runs: u64) -> (f64, f64, Vec<SmcOutput>) {
    let outs: Vec<SmcOutput> = (0..n_runs).map(|r| smc.run(q, p, n, 11, r).unwrap()).collect();
    let ests: Vec<f64> = outs.iter().map(|o| o.ais.log_z.log_z).collect();
    let m = ests.len() as f64;
    let mean = ests.iter().sum::<f64>() / m;
    let var = ests.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (m - 1.0);
    (mean, (var / m).sqrt(), outs)
}

/// `q = N(0, I₃)`, `p̃ = e^{2.5}·N(0.8, 0.6²I₃)`: log Z = 2.5.
fn shifted_narrower_gaussian() -> (DiagGaussian, Scaled<DiagGaussian>, f64) {
    let truth = 2.5;
    let p = Scaled { inner: DiagGaussian::new(vec![0.8; 3], vec![0.6; 3]).unwrap(), log_z: truth };
    (DiagGaussian::standard(3), p, truth)
}

#[test]
fn gaussian_log_z_is_within_three_standard_errors_with_and_without_resampling() {
    let (q, p, truth) = shifted_narrower_gaussian();
    let cases = [
        ("adaptive, resampling", hmc_fixed(20, 0.3), adaptive(0.7, SYSTEMATIC)),
        ("adaptive, no resampling", hmc_fixed(20, 0.3), adaptive(0.7, Resampling::Never)),
        (
            "fixed, resampling every β",
            hmc_fixed(6, 0.3),
            SmcSettings { schedule: SmcSchedule::Fixed, resampling: Resampling::Systematic { ess_threshold: 1.0 } },
        ),
    ];
    for (name, config, settings) in cases {
        let resamples = settings.resampling != Resampling::Never;
        let mut smc = Smc::new(config.check().unwrap(), settings).unwrap();
        let (mean, se, outs) = repeated(&mut smc, &q, &p, 400, 40);
        eprintln!("{name}: log Ẑ {mean:.5} ± {se:.5} (truth {truth})");
        assert!(se > 0.0 && se < 0.05, "{name}: SE {se} (runs must vary, and be precise enough to test)");
        assert!((mean - truth).abs() < 3.0 * se, "{name}: log Ẑ {mean} ± {se} vs {truth}");
        let n_resampled: usize = outs.iter().map(|o| o.resampled_at.len()).sum();
        assert_eq!(n_resampled > 0, resamples, "{name}: {n_resampled} resampling events");
        assert!(outs.iter().all(|o| o.betas.last() == Some(&1.0)));
    }
}

#[test]
fn resetting_weights_to_one_at_resampling_would_be_caught() {
    // The estimator is what makes resampling unbiased: at every β the particles are resampled, so the final
    // weights alone (each event's mean weight dropped) estimate only the last increment's normaliser. The test
    // above would fail for that estimator by at least this margin.
    let (q, p, truth) = shifted_narrower_gaussian();
    let settings =
        SmcSettings { schedule: SmcSchedule::Fixed, resampling: Resampling::Systematic { ess_threshold: 1.0 } };
    let mut smc = Smc::new(hmc_fixed(6, 0.3).check().unwrap(), settings).unwrap();
    let out = smc.run(&q, &p, 400, 11, 0).unwrap();
    assert_eq!(out.resampled_at, vec![1, 2, 3, 4, 5, 6], "resampled at every intermediate β");
    let last_segment_only = out.ais.log_z.log_z - out.log_z_at_last_resampling;
    assert!((last_segment_only - truth).abs() > 1.0, "{last_segment_only} vs {truth}");
    assert!((out.ais.log_z.log_z - truth).abs() < 0.2, "{} vs {truth}", out.ais.log_z.log_z);
}

/// `e^{−1.3}` times an equal mixture of `N((±2.5, 0), 0.5²I)`: log Z = −1.3.
fn bimodal() -> (DiagGaussian, Scaled<DiagGmm>, f64) {
    let gmm = DiagGmm::new(&[[-2.5, 0.0], [2.5, 0.0]], &[[0.5, 0.5], [0.5, 0.5]], &[1.0, 1.0]).unwrap();
    let truth = -1.3;
    (DiagGaussian::new(vec![0.0, 0.0], vec![3.0, 3.0]).unwrap(), Scaled { inner: gmm, log_z: truth }, truth)
}

#[test]
fn bimodal_log_z_is_within_three_standard_errors_with_metropolis_and_hmc() {
    let (q, p, truth) = bimodal();
    let metropolis = AisConfig {
        transition: Transition::Metropolis,
        initial_step_size: 0.5,
        transitions_per_beta: 2,
        ..hmc_fixed(30, 0.5)
    };
    for (name, config, settings) in [
        ("metropolis, resampling", metropolis.clone(), adaptive(0.8, SYSTEMATIC)),
        ("metropolis, no resampling", metropolis, adaptive(0.8, Resampling::Never)),
        ("hmc, resampling", hmc_fixed(30, 0.2), adaptive(0.8, SYSTEMATIC)),
    ] {
        let mut smc = Smc::new(config.check().unwrap(), settings).unwrap();
        let (mean, se, _) = repeated(&mut smc, &q, &p, 400, 40);
        eprintln!("{name}: log Ẑ {mean:.5} ± {se:.5} (truth {truth})");
        assert!(se > 0.0 && se < 0.05, "{name}: SE {se}");
        assert!((mean - truth).abs() < 3.0 * se, "{name}: log Ẑ {mean} ± {se} vs {truth}");
    }
}

#[test]
fn adaptive_schedule_reaches_one_with_each_step_at_the_target_cess() {
    let (q, p, _) = shifted_narrower_gaussian();
    let target = 0.8;
    let mut smc = Smc::new(hmc_fixed(50, 0.3).check().unwrap(), adaptive(target, Resampling::Never)).unwrap();
    let out = smc.run(&q, &p, 500, 3, 0).unwrap();
    let betas = &out.betas;
    assert_eq!(betas[0], 0.0);
    assert_eq!(*betas.last().unwrap(), 1.0);
    assert!(betas.windows(2).all(|w| w[1] > w[0]), "strictly increasing: {betas:?}");
    assert!(betas.len() > 3 && betas.len() < 52, "{} βs: the cap of 50 was not needed", betas.len());
    assert_eq!(out.ais.per_beta.len(), betas.len() - 2, "one transition block per intermediate β");

    let (last, steps) = out.cess_fraction.split_last().unwrap();
    assert!(steps.iter().all(|c| (c - target).abs() < 1e-9), "each intermediate step at the target: {steps:?}");
    assert!(*last >= target - 1e-12, "the last step: {last}");
    let mut again = Smc::new(hmc_fixed(50, 0.3).check().unwrap(), adaptive(target, Resampling::Never)).unwrap();
    assert_eq!(again.run(&q, &p, 500, 3, 0).unwrap(), out, "deterministic");

    // Directly: the bisection result sits on the target from above.
    let log_ratio: Vec<f64> = (0..500).map(|i| -3.0 + 6.0 * i as f64 / 499.0).collect();
    let log_w = vec![0.0; 500];
    let next = next_beta_by_cess(0.0, &log_w, &log_ratio, target);
    assert!(next < 1.0);
    let at = conditional_ess_fraction(&log_w, &log_ratio, next);
    assert!((at - target).abs() < 1e-9, "CESS at the chosen β: {at}");
    assert!(conditional_ess_fraction(&log_w, &log_ratio, next + 1e-6) < target);
}

#[test]
fn capped_adaptive_schedule_ends_at_one_after_the_cap() {
    let (q, p, truth) = shifted_narrower_gaussian();
    let mut smc = Smc::new(hmc_fixed(2, 0.3).check().unwrap(), adaptive(0.99, SYSTEMATIC)).unwrap();
    let out = smc.run(&q, &p, 300, 3, 0).unwrap();
    assert_eq!(out.betas.len(), 4, "two intermediate βs, then 1: {:?}", out.betas);
    assert_eq!(out.betas[3], 1.0);
    assert!(out.betas[2] < 0.2, "CESS 0.99 takes small steps: {:?}", out.betas);
    assert!(out.ais.log_z.log_z.is_finite() && (out.ais.log_z.log_z - truth).abs() < 2.0);
}

#[test]
fn conditional_ess_is_one_for_no_increment_or_a_constant_one_and_matches_its_formula() {
    let log_w = [0.3, -1.0, 2.0, 0.0];
    let r = [1.0, -2.0, 0.5, 3.0];
    assert!((conditional_ess_fraction(&log_w, &r, 0.0) - 1.0).abs() < 1e-12);
    assert!((conditional_ess_fraction(&log_w, &[0.7; 4], 5.0) - 1.0).abs() < 1e-12);
    let wsum: f64 = log_w.iter().map(|l: &f64| l.exp()).sum();
    let (mut a, mut b) = (0.0, 0.0);
    for (lw, ri) in log_w.iter().zip(r) {
        let (wn, u) = (lw.exp() / wsum, (0.4 * ri).exp());
        a += wn * u;
        b += wn * u * u;
    }
    assert!((conditional_ess_fraction(&log_w, &r, 0.4) - a * a / b).abs() < 1e-12);
}

#[test]
fn systematic_resampling_gives_each_parent_floor_or_ceil_of_its_expected_offspring() {
    assert_eq!(systematic_resample(&[0.5, 0.25, 0.25, 0.0], 0.3), vec![0, 0, 1, 2]);
    assert_eq!(systematic_resample(&[0.0, 1.0, 0.0], 0.999), vec![1, 1, 1]);
    let raw: Vec<f64> = (0..97).map(|i| ((i * 37 % 11) as f64 + 0.1).powi(2)).collect();
    let total: f64 = raw.iter().sum();
    let w: Vec<f64> = raw.iter().map(|v| v / total).collect();
    for u in [0.0, 0.123, 0.5, 0.999_999] {
        let parents = systematic_resample(&w, u);
        assert_eq!(parents.len(), w.len());
        assert!(parents.windows(2).all(|p| p[0] <= p[1]));
        for (i, wi) in w.iter().enumerate() {
            let count = parents.iter().filter(|&&p| p == i).count() as f64;
            let expected = wi * w.len() as f64;
            assert!(
                count >= expected.floor() - 1e-9 && count <= expected.ceil() + 1e-9,
                "parent {i}: {count} vs {expected}"
            );
        }
    }
}

#[test]
fn fixed_schedule_without_resampling_is_ais_bit_for_bit() {
    let (q, p, _) = shifted_narrower_gaussian();
    let config = AisConfig { n_intermediate: 4, alpha: 2.0, ..AisConfig::iclr_hmc() };
    let mut ais = Ais::new(config.check().unwrap());
    let mut smc = Smc::new(config.check().unwrap(), SmcSettings::ais()).unwrap();
    for it in 0..5 {
        let a = ais.run(&q, &p, 64, 9, it).unwrap();
        let s = smc.run(&q, &p, 64, 9, it).unwrap();
        assert_eq!(s.ais, a, "iteration {it}");
        assert!(s.resampled_at.is_empty());
    }
    assert_eq!(smc.adaptation(), ais.adaptation(), "step sizes adapted identically");
}

#[test]
fn target_evaluations_are_counted_exactly() {
    let (q, p, _) = shifted_narrower_gaussian();
    let counted = Counted::new(p);
    let config = AisConfig { transition: Transition::Metropolis, initial_step_size: 0.5, ..hmc_fixed(20, 0.5) };
    let mut smc = Smc::new(config.check().unwrap(), adaptive(0.7, SYSTEMATIC)).unwrap();
    let out = smc.run(&q, &counted, 256, 1, 0).unwrap();
    assert_eq!(counted.counts().total(), out.ais.n_evaluated);
    let k = out.betas.len() as u64 - 2;
    assert_eq!(out.ais.n_evaluated, 256 * (1 + k), "one draw evaluation plus one proposal per intermediate β");
}

fn run_in_pool(threads: usize) -> SmcOutput {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let (q, p, _) = bimodal();
        let config = AisConfig { chunk_size: 16, ..hmc_fixed(30, 0.2) };
        let mut smc = Smc::new(config.check().unwrap(), adaptive(0.8, SYSTEMATIC)).unwrap();
        smc.run(&q, &p, 300, 21, 4).unwrap()
    })
}

#[test]
fn output_is_bitwise_identical_for_1_2_and_5_threads() {
    let one = run_in_pool(1);
    assert!(!one.resampled_at.is_empty(), "the comparison covers resampling");
    assert_eq!(run_in_pool(2), one);
    assert_eq!(run_in_pool(5), one);
}

#[test]
fn invalid_settings_name_the_field() {
    let config = hmc_fixed(3, 0.3).check().unwrap();
    let err = Smc::new(config.clone(), adaptive(1.0, SYSTEMATIC)).unwrap_err();
    assert_eq!(err.field, "smc.schedule");
    let err = Smc::new(config, adaptive(0.5, Resampling::Systematic { ess_threshold: 0.0 })).unwrap_err();
    assert_eq!(err.field, "smc.resampling");
}

#[test]
fn settings_round_trip_through_ron() {
    let s = SmcSettings::default();
    let text = ron::to_string(&s).unwrap();
    assert_eq!(ron::from_str::<SmcSettings>(&text).unwrap(), s);
}

#[test]
fn an_ais_whose_config_sets_smc_runs_smc_and_without_it_runs_ais() {
    let (q, p, _) = bimodal();
    let plain = AisConfig { chunk_size: 16, ..hmc_fixed(12, 0.2) };
    let settings = adaptive(0.8, SYSTEMATIC);
    let switched = AisConfig { smc: Some(settings.clone()), ..plain.clone() };
    let mut via_config = Ais::new(switched.check().unwrap());
    let mut smc = Smc::new(plain.check().unwrap(), settings).unwrap();
    let mut ais = Ais::new(plain.check().unwrap());
    let mut differs_from_ais = false;
    for it in 0..3 {
        let from_config = via_config.run(&q, &p, 300, 5, it).unwrap();
        let from_smc = smc.run(&q, &p, 300, 5, it).unwrap();
        assert_eq!(from_config, from_smc.ais, "iteration {it}: the config switch is Smc's run");
        differs_from_ais |= from_config != ais.run(&q, &p, 300, 5, it).unwrap();
        assert!(!from_smc.resampled_at.is_empty(), "iteration {it}: the comparison covers resampling");
    }
    assert!(differs_from_ais, "with `smc` set the sampler is not plain AIS");
    assert_eq!(via_config.adaptation(), smc.adaptation());
}

#[test]
fn ais_config_smc_is_optional_in_ron_checked_and_left_out_when_unset() {
    let plain = AisConfig::fab_2021();
    let text = ron::to_string(&plain).unwrap();
    assert!(!text.contains("smc"), "an unset switch is not written: {text}");
    assert_eq!(ron::from_str::<AisConfig>(&text).unwrap(), plain);
    let bad = AisConfig { smc: Some(adaptive(1.5, SYSTEMATIC)), ..plain };
    assert_eq!(bad.check().unwrap_err().field, "smc.schedule");
    let good = AisConfig { smc: Some(SmcSettings::default()), ..bad };
    let round = ron::from_str::<AisConfig>(&ron::to_string(&good).unwrap()).unwrap();
    assert_eq!(round, good);
    assert!(round.check().is_ok());
}
