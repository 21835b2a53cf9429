//! AIS against known answers: exact zero weights for q = p, Gaussian log Z, ∫p²/q by quadrature, ESS on a
//! bimodal target, dropped points, evaluation counts, thread determinism, configuration errors, checkpoints.

use fab_ais::{Ais, AisAdaptation, AisConfig, AisError, AisOutput, BetaSchedule, StepSizeRule, Transition, betas};
use fab_core::{BatchMut, BatchRef, Counted, LogDensity, Proposal};
use fab_mcmc::{FabRule, Hmc};
use fab_targets::DiagGaussian;
use rand::RngCore;

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

/// An equal mixture of `N((−2.5, 0), 0.5²I)` and `N((2.5, 0), 0.5²I)`.
struct Bimodal;

impl LogDensity for Bimodal {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0; 2])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let s2 = 0.25;
        let la = -((x[0] + 2.5).powi(2) + x[1] * x[1]) / (2.0 * s2);
        let lb = -((x[0] - 2.5).powi(2) + x[1] * x[1]) / (2.0 * s2);
        let m = la.max(lb);
        let (wa, wb) = ((la - m).exp(), (lb - m).exp());
        let (ra, rb) = (wa / (wa + wb), wb / (wa + wb));
        g[0] = -(ra * (x[0] + 2.5) + rb * (x[0] - 2.5)) / s2;
        g[1] = -x[1] / s2;
        m + (wa + wb).ln() - (2.0 * std::f64::consts::PI * s2).ln() - 2f64.ln()
    }
}

/// −∞ wherever `x₀ > 1`, a standard normal elsewhere.
struct Holed;

impl LogDensity for Holed {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0; 2])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        if x[0] > 1.0 {
            g.fill(f64::NAN);
            return f64::NEG_INFINITY;
        }
        g[0] = -x[0];
        g[1] = -x[1];
        -0.5 * (x[0] * x[0] + x[1] * x[1])
    }
}

/// A proposal whose density evaluations are counted (sampling is not an evaluation).
struct CountedProposal(Counted<DiagGaussian>);

impl LogDensity for CountedProposal {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.0.log_prob(x)
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.0.log_prob_and_grad(x, grad)
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        self.0.log_prob_batch(xs, log_p)
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
        self.0.log_prob_and_grad_batch(xs, log_p, grad)
    }
}

impl Proposal for CountedProposal {
    fn sample_into(&self, rng: &mut dyn RngCore, out: BatchMut<'_>, log_q: &mut [f64]) {
        self.0.inner().sample_into(rng, out, log_q)
    }
}

fn hmc_config(n_intermediate: usize, alpha: f64) -> AisConfig {
    AisConfig { n_intermediate, alpha, ..AisConfig::iclr_hmc() }
}

/// Adapts step sizes over `n_train` small runs, then freezes.
fn trained(config: AisConfig, q: &dyn Proposal, p: &dyn LogDensity, n_train: u64) -> Ais {
    let mut ais = Ais::new(config.check().unwrap());
    for it in 0..n_train {
        ais.run(q, p, 128, 1, it).unwrap();
    }
    ais.freeze();
    ais
}

#[test]
fn beta_grids_follow_both_papers() {
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-15);
    assert!(close(&betas(&BetaSchedule::Linear, 2).unwrap(), &[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]));
    assert!(close(&betas(&BetaSchedule::Linear, 4).unwrap(), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]));
    assert!(close(&betas(&BetaSchedule::Linear, 1).unwrap(), &[0.0, 0.5, 1.0]));
    assert!(close(&betas(&BetaSchedule::Linear, 0).unwrap(), &[0.0, 1.0]));
    // ICLR geometric, K = 10: 12 points, 3 linear in [0, 0.01), then 9 with a constant ratio from 0.01 to 1.
    let g = betas(&BetaSchedule::Geometric, 10).unwrap();
    assert_eq!(g.len(), 12);
    assert!(close(&g[..4], &[0.0, 0.01 / 3.0, 0.02 / 3.0, 0.01]));
    let ratio = 100f64.powf(1.0 / 8.0);
    assert!(g[4..].iter().zip(&g[3..]).all(|(b, a)| (b / a - ratio).abs() < 1e-12));
    assert_eq!(*g.last().unwrap(), 1.0);
    // 2021 geometric, K = 8: 10 points, 2 linear in [0, 0.1), then geomspace(0.1, 1, 8).
    let g = betas(&BetaSchedule::Geometric2021, 8).unwrap();
    assert!(close(&g[..3], &[0.0, 0.05, 0.1]));
    assert!((g[4] / g[3] - 10f64.powf(1.0 / 7.0)).abs() < 1e-12);
    // Few distributions fall back to linear.
    assert!(close(&betas(&BetaSchedule::Geometric, 2).unwrap(), &[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]));
}

#[test]
fn with_q_equal_to_p_every_log_weight_is_zero() {
    let q = DiagGaussian::new(vec![0.5, -1.0, 2.0], vec![1.0, 0.5, 2.0]).unwrap();
    // HMC evaluates log q and log p at every point with the same code, so weights are exactly 0. Metropolis reuses
    // the log q returned by the draw (computed from the noise, not from x), which may differ in the last bits.
    let cases = [
        (hmc_config(3, 1.0), 0.0),
        (hmc_config(3, 2.0), 0.0),
        (AisConfig::fab_2021(), 0.0),
        (AisConfig::iclr_metropolis(), 1e-13),
    ];
    for (config, tol) in cases {
        let out = Ais::new(config.check().unwrap()).run(&q, &q, 200, 3, 0).unwrap();
        assert!(out.log_w.iter().all(|&w| w.abs() <= tol), "{:?}", &out.log_w[..5]);
        assert!((out.ess_percent - 100.0).abs() < 1e-9);
        assert!(out.log_z.log_z.abs() <= tol);
        assert!(out.per_beta.iter().all(|b| b.acceptance_rate > 0.0), "transitions ran");
    }
}

fn gaussian_log_z_runs(n_intermediate: usize, n_runs: u64) -> (Vec<AisOutput>, f64) {
    let q = DiagGaussian::standard(5);
    let truth = 2.5;
    let p = Scaled { inner: DiagGaussian::new(vec![0.8; 5], vec![0.6; 5]).unwrap(), log_z: truth };
    let mut ais = trained(hmc_config(n_intermediate, 1.0), &q, &p, 20);
    let outs = (0..n_runs).map(|r| ais.run(&q, &p, 100, 5, 1000 + r).unwrap()).collect();
    (outs, truth)
}

#[test]
fn gaussian_log_z_is_within_three_standard_errors_and_its_variance_falls_with_more_distributions() {
    let q = DiagGaussian::standard(5);
    let truth = 2.5;
    let p = Scaled { inner: DiagGaussian::new(vec![0.8; 5], vec![0.6; 5]).unwrap(), log_z: truth };
    let mut ais = trained(hmc_config(8, 1.0), &q, &p, 20);
    let out = ais.run(&q, &p, 2000, 9, 500).unwrap();
    let est = out.log_z;
    assert!((est.log_z - truth).abs() < 3.0 * est.std_err, "log Z {} ± {} vs {truth}", est.log_z, est.std_err);
    assert_eq!(out.n_dropped_init + out.n_dropped_end, 0);

    // Empirical variance of log Ẑ over repeated runs shrinks as intermediate distributions are added.
    let mut previous = f64::INFINITY;
    for k in [0, 4, 32] {
        let (outs, truth) = gaussian_log_z_runs(k, 30);
        let ests: Vec<f64> = outs.iter().map(|o| o.log_z.log_z).collect();
        let mean = ests.iter().sum::<f64>() / ests.len() as f64;
        let var = ests.iter().map(|e| (e - truth).powi(2)).sum::<f64>() / ests.len() as f64;
        assert!(
            var < previous / 1.5,
            "K = {k}: mean squared error {var} did not fall well below {previous} (mean {mean})"
        );
        previous = var;
    }
}

#[test]
fn ais_beats_plain_importance_sampling_on_a_bimodal_target() {
    let q = DiagGaussian::new(vec![0.0, 0.0], vec![2.0, 2.0]).unwrap();
    let config = AisConfig { n_intermediate: 8, alpha: 1.0, ..AisConfig::iclr_hmc() };
    let mut ais = trained(config, &q, &Bimodal, 20);
    let out = ais.run(&q, &Bimodal, 1000, 4, 77).unwrap();
    let plain = Ais::new(AisConfig { n_intermediate: 0, ..hmc_config(0, 1.0) }.check().unwrap())
        .run(&q, &Bimodal, 1000, 4, 77)
        .unwrap();
    assert!(
        out.ess_percent > plain.ess_percent + 10.0,
        "AIS ESS {}% vs proposal {}%",
        out.ess_percent,
        plain.ess_percent
    );
    // Both modes are populated.
    let right = out.samples.rows().filter(|r| r[0] > 0.0).count();
    assert!((300..700).contains(&right), "{right} of 1000 in the right mode");
}

#[test]
fn alpha_two_weights_estimate_the_integral_of_p_squared_over_q() {
    let q = DiagGaussian::standard(1);
    let p = Scaled { inner: DiagGaussian::new(vec![0.4], vec![0.8]).unwrap(), log_z: 3f64.ln() };
    // ∫ p̃²/q by the trapezoid rule on [−15, 15].
    let (lo, hi, m) = (-15.0, 15.0, 30_000);
    let h = (hi - lo) / m as f64;
    let f = |x: f64| (2.0 * p.log_prob(&[x]) - q.log_prob(&[x])).exp();
    let integral: f64 =
        (0..=m).map(|i| if i == 0 || i == m { 0.5 } else { 1.0 } * f(lo + i as f64 * h)).sum::<f64>() * h;
    let truth = integral.ln();

    let mut ais = trained(hmc_config(4, 2.0), &q, &p, 20);
    // (Over 20 iterations the standardised errors of this estimate averaged −0.15 with unit spread; iteration 900
    // alone gives +3.3, a 1-in-1000 draw shared by every K because the proposal draw depends only on the seed.)
    let out = ais.run(&q, &p, 4000, 8, 901).unwrap();
    assert!((out.log_z.log_z - truth).abs() < 3.0 * out.log_z.std_err, "AIS {:?} vs quadrature {truth}", out.log_z);
    // Plain importance sampling (K = 0) with α = 2 estimates the same integral.
    let direct = Ais::new(hmc_config(0, 2.0).check().unwrap()).run(&q, &p, 4000, 8, 901).unwrap();
    assert!((direct.log_z.log_z - truth).abs() < 3.0 * direct.log_z.std_err, "IS {:?} vs {truth}", direct.log_z);
    // AIS and plain IS agree with each other, and AIS (closer to p²/q) has the smaller standard error.
    let joint = (out.log_z.std_err.powi(2) + direct.log_z.std_err.powi(2)).sqrt();
    assert!((out.log_z.log_z - direct.log_z.log_z).abs() < 3.0 * joint);
    assert!(out.log_z.std_err < direct.log_z.std_err, "AIS {:?} vs IS {:?}", out.log_z, direct.log_z);
}

#[test]
fn points_outside_the_support_are_dropped_and_counted() {
    let q = DiagGaussian::standard(2);
    let n = 1000;
    for config in [hmc_config(3, 1.0), AisConfig { alpha: 1.0, ..AisConfig::iclr_metropolis() }] {
        let out = Ais::new(config.check().unwrap()).run(&q, &Holed, n, 6, 0).unwrap();
        // P(x₀ > 1) = 0.1587 under q: a binomial count.
        let expected = 0.1587 * n as f64;
        assert!(
            (out.n_dropped_init as f64 - expected).abs() < 4.0 * (expected * 0.84).sqrt(),
            "{}",
            out.n_dropped_init
        );
        assert_eq!(out.len() + out.n_dropped_init + out.n_dropped_end, n);
        assert!(out.samples.rows().all(|r| r[0] <= 1.0));
        assert!(out.log_w.iter().chain(&out.log_q).chain(&out.log_p).all(|v| v.is_finite()));
        assert!(out.n_divergent() > 0, "proposals into the hole are rejected as divergences");
        // Dropped points count as zero weight in the ESS.
        assert!(out.ess_percent <= 100.0 * out.len() as f64 / n as f64 + 1e-9);
    }
    let all_bad = DiagGaussian::new(vec![10.0, 0.0], vec![0.1, 1.0]).unwrap();
    let err = Ais::new(hmc_config(2, 1.0).check().unwrap()).run(&all_bad, &Holed, 50, 1, 0).unwrap_err();
    assert!(matches!(err, AisError::NoValidPoints { stage: fab_ais::Stage::Init, n_requested: 50 }));
}

#[test]
fn no_density_is_evaluated_twice() {
    let n = 300u64;
    for (config, gradient) in [(hmc_config(4, 2.0), true), (AisConfig::iclr_metropolis(), false)] {
        let q = CountedProposal(Counted::new(DiagGaussian::standard(3)));
        let p = Counted::new(DiagGaussian::new(vec![0.5; 3], vec![0.8; 3]).unwrap());
        let out = Ais::new(config.check().unwrap()).run(&q, &p, n as usize, 2, 0).unwrap();
        let transitions: u64 = out.per_beta.iter().map(|b| b.n_evaluated).sum();
        assert_eq!(out.n_evaluated, n + transitions);
        let (cq, cp) = (q.0.counts(), p.counts());
        if gradient {
            // HMC: one gradient evaluation of each density at x₀ and at every leapfrog point; nothing else.
            assert_eq!(out.n_divergent(), 0);
            assert_eq!(transitions, n * 4 * 5);
            assert_eq!((cq.n_log_prob_and_grad, cq.n_log_prob), (n + transitions, 0));
            assert_eq!((cp.n_log_prob_and_grad, cp.n_log_prob), (n + transitions, 0));
        } else {
            // Metropolis: log q at x₀ comes with the draw; every proposal evaluates each density once.
            assert_eq!(transitions, n);
            assert_eq!((cq.n_log_prob, cq.n_log_prob_and_grad), (transitions, 0));
            assert_eq!((cp.n_log_prob, cp.n_log_prob_and_grad), (n + transitions, 0));
        }
        // The cached values returned are those of the final points.
        for (i, x) in out.samples.rows().enumerate().take(10) {
            assert_eq!(out.log_q[i], q.0.inner().log_prob(x));
            assert_eq!(out.log_p[i], p.inner().log_prob(x));
        }
    }
}

fn run_in_pool(threads: usize) -> (AisOutput, AisOutput, AisAdaptation) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let q = DiagGaussian::new(vec![0.0, 0.0], vec![2.0, 2.0]).unwrap();
        let config = AisConfig { chunk_size: 16, ..hmc_config(3, 2.0) };
        let mut ais = Ais::new(config.check().unwrap());
        ais.run(&q, &Bimodal, 150, 3, 0).unwrap();
        let hmc = ais.run(&q, &Bimodal, 150, 3, 1).unwrap();
        let config = AisConfig { chunk_size: 16, ..AisConfig::iclr_metropolis() };
        let rw = Ais::new(config.check().unwrap()).run(&q, &Bimodal, 150, 3, 1).unwrap();
        (hmc, rw, ais.adaptation().clone())
    })
}

#[test]
fn output_is_bitwise_identical_for_1_2_and_8_threads() {
    let one = run_in_pool(1);
    for threads in [2, 8] {
        let other = run_in_pool(threads);
        let bits = |o: &AisOutput| -> Vec<u64> {
            o.samples.as_slice().iter().chain(&o.log_w).chain(&o.log_q).chain(&o.log_p).map(|v| v.to_bits()).collect()
        };
        assert_eq!(bits(&one.0), bits(&other.0), "HMC output differs with {threads} threads");
        assert_eq!(bits(&one.1), bits(&other.1), "Metropolis output differs with {threads} threads");
        assert_eq!(format!("{:?}", one.0.per_beta), format!("{:?}", other.0.per_beta));
        assert_eq!(one.2, other.2, "adapted step sizes differ with {threads} threads");
    }
}

#[test]
fn adaptation_is_frozen_on_request_and_restored_from_a_checkpoint() {
    let q = DiagGaussian::standard(2);
    let p = DiagGaussian::new(vec![1.0, 1.0], vec![0.5, 0.5]).unwrap();
    let mut ais = Ais::new(hmc_config(3, 2.0).check().unwrap());
    let initial = ais.adaptation().clone();
    ais.run(&q, &p, 100, 1, 0).unwrap();
    assert_ne!(ais.adaptation(), &initial, "training adapts");
    let saved = ron::to_string(ais.adaptation()).unwrap();
    ais.freeze();
    let frozen = ais.adaptation().clone();
    let eval = ais.run_with_alpha(1.0, &q, &p, 100, 1, 1).unwrap();
    assert_eq!(ais.adaptation(), &frozen, "evaluation leaves step sizes alone");
    assert_eq!(eval.alpha, 1.0);
    assert!(eval.per_beta.iter().enumerate().all(|(j, b)| b.step_size == ais.step_size(j)));

    // Restoring the checkpoint into a fresh sampler reproduces the next training run exactly.
    ais.unfreeze();
    let mut restored = Ais::new(hmc_config(3, 2.0).check().unwrap());
    restored.restore_adaptation(ron::from_str(&saved).unwrap()).unwrap();
    let a = ais.run(&q, &p, 100, 1, 2).unwrap();
    let b = restored.run(&q, &p, 100, 1, 2).unwrap();
    assert_eq!(a, b);
    let wrong = Ais::new(hmc_config(5, 2.0).check().unwrap()).adaptation().clone();
    assert!(matches!(restored.restore_adaptation(wrong), Err(AisError::AdaptationMismatch { expected: 3, got: 5 })));
}

#[test]
fn invalid_configurations_name_the_field() {
    let field = |c: AisConfig| c.check().unwrap_err().field;
    let base = AisConfig::iclr_hmc();
    assert_eq!(field(AisConfig { alpha: 0.0, ..base.clone() }), "alpha");
    assert_eq!(field(AisConfig { alpha: f64::NAN, ..base.clone() }), "alpha");
    assert_eq!(field(AisConfig { transitions_per_beta: 0, ..base.clone() }), "transitions_per_beta");
    assert_eq!(field(AisConfig { initial_step_size: -1.0, ..base.clone() }), "initial_step_size");
    assert_eq!(field(AisConfig { chunk_size: 0, ..base.clone() }), "chunk_size");
    assert_eq!(field(AisConfig { transition: Transition::Hmc(Hmc::new(0)), ..base.clone() }), "transition");
    assert_eq!(
        field(AisConfig { step_size_rule: StepSizeRule::DualAveraging { target_accept: 1.2 }, ..base.clone() }),
        "step_size_rule"
    );
    let explicit =
        |bs: Vec<f64>, k| AisConfig { schedule: BetaSchedule::Explicit(bs), n_intermediate: k, ..base.clone() };
    assert_eq!(field(explicit(vec![0.0, 0.5, 1.0], 2)), "n_intermediate");
    assert_eq!(field(explicit(vec![0.0, 0.7, 0.5, 1.0], 2)), "schedule");
    assert_eq!(field(explicit(vec![0.1, 0.5, 1.0], 1)), "schedule");
    let ok = explicit(vec![0.0, 0.1, 0.5, 1.0], 2).check().unwrap();
    assert_eq!(ok.betas(), &[0.0, 0.1, 0.5, 1.0]);
    assert_eq!(ok.initial_step_sizes().len(), 2);
    let msg = AisConfig { alpha: -2.0, ..base }.check().unwrap_err().to_string();
    assert!(msg.contains("`alpha`"), "{msg}");
    // Run-time mismatches are typed too.
    let q = DiagGaussian::standard(2);
    let err =
        Ais::new(AisConfig::fab_2021().check().unwrap()).run(&q, &DiagGaussian::standard(3), 10, 0, 0).unwrap_err();
    assert!(matches!(err, AisError::DimensionMismatch { proposal: 2, target: 3 }));
}

#[test]
fn presets_match_the_papers() {
    let f21 = AisConfig::fab_2021().check().unwrap();
    assert_eq!(f21.betas(), &[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
    assert_eq!(f21.config().step_size_rule, StepSizeRule::Fab(FabRule::Fab2021));
    assert_eq!(f21.config().transition, Transition::Hmc(Hmc::without_jitter(5).with_grad_clamp(1e4)));
    assert_eq!((f21.config().alpha, f21.initial_step_sizes().step_size(0)), (1.0, 1.0));
    let mw = AisConfig::iclr_hmc().check().unwrap();
    assert_eq!(mw.betas().len(), 6);
    assert_eq!(mw.config().alpha, 2.0);
    assert_eq!(mw.config().step_size_rule, StepSizeRule::Fab(FabRule::Iclr));
    let gmm = AisConfig::iclr_metropolis().check().unwrap();
    assert_eq!(gmm.betas(), &[0.0, 0.5, 1.0]);
    assert_eq!((gmm.config().transition.clone(), gmm.initial_step_sizes().step_size(0)), (Transition::Metropolis, 5.0));
}
