//! End-to-end training tests: FAB beats reverse KL on the 2021 MoG, runs resume bit for bit, and q = p scores
//! perfectly.

use fab_ais::{AisConfig, StepSizeRule};
use fab_flow::{BaseSpec, FlowSpec, Math};
use fab_mcmc::{FabRule, Hmc};
use fab_targets::TargetSpec;
use fab_train::checkpoint::{decode, encode};
use fab_train::config::{
    Budget, BufferSettings, EvalConfig, FlowConfig, LrSchedule, Method, OptimizerConfig, TrainConfig,
};
use fab_train::grad_guard::GradGuardConfig;
use fab_train::report::table1_row;
use fab_train::{Detail, Run, evaluate};
use std::path::Path;

fn eval_config() -> EvalConfig {
    EvalConfig {
        every: 0,
        n_samples: 2000,
        n_samples_final: 20_000,
        n_target_samples: 5000,
        expectation_groups: (20, 500),
    }
}

/// FAB 2021's AIS: 2 intermediate distributions, HMC with 5 leapfrog steps, α = 1.
fn hmc_2021() -> AisConfig {
    AisConfig::fab_2021()
}

/// The 2021 MoG experiment with the paper's settings and a short budget.
fn mog_config(method: Method, iterations: u64) -> TrainConfig {
    TrainConfig {
        name: "test".into(),
        seed: 2,
        target: Some(TargetSpec::Mog5_2021),
        flow: FlowConfig::RealNvp2021 { dim: 2, n_blocks: 10, width: 40, scale_init: 1.0, math: Math::Libm },
        method,
        optimizer: OptimizerConfig {
            lr: 5e-4,
            weight_decay: 0.01,
            decoupled: true,
            max_grad_norm: Some(1.0),
            max_grad_value: Some(1.0),
            schedule: LrSchedule::Constant,
            grad_guard: None,
        },
        batch_size: 100,
        budget: Budget::Iterations(iterations),
        eval: eval_config(),
        checkpoint_every: 0,
    }
}

fn train(config: TrainConfig) -> Run {
    let mut run = Run::new(config).unwrap();
    while !run.is_done() {
        run.step().unwrap();
    }
    run
}

#[test]
fn a_short_fab_run_beats_reverse_kl_on_the_2021_mog() {
    let fab = train(mog_config(Method::Fab2021 { ais: hmc_2021() }, 400));
    let kl = train(mog_config(Method::ReverseKl, 400));
    let (rf, rk) = (evaluate(&fab, 20_000, Detail::Full).unwrap(), evaluate(&kl, 20_000, Detail::Full).unwrap());
    eprintln!("FAB: {rf:?}\nKL: {rk:?}");
    // Reverse KL collapses onto few modes: its log q at target samples is far below FAB's, and its weights degenerate.
    let (lf, lk) = (rf.mean_log_q_target.unwrap(), rk.mean_log_q_target.unwrap());
    assert!(lf > lk + 2.0, "mean log q: FAB {lf} vs KL {lk}");
    assert!(rf.flow_ess > rk.flow_ess + 10.0, "flow ESS: FAB {} vs KL {}", rf.flow_ess, rk.flow_ess);
    let (ef, ek) = (rf.expectation_flow.unwrap(), rk.expectation_flow.unwrap());
    assert!(ef.bias_percent < ek.bias_percent, "bias: FAB {} vs KL {}", ef.bias_percent, ek.bias_percent);
    assert!(rf.ais_ess.unwrap() > 0.0 && rk.ais_ess.is_none());
}

/// Runs `config` to the end twice: once straight, once stopped at `stop_at`, checkpointed through bytes and
/// resumed. The parameters must agree bit for bit.
fn check_resume(config: TrainConfig, stop_at: u64) -> Run {
    let straight = train(config.clone());
    let mut first = Run::new(config.clone()).unwrap();
    for _ in 0..stop_at {
        first.step().unwrap();
    }
    let bytes = encode(&first.to_checkpoint().unwrap());
    drop(first);
    let data = decode(&bytes, Path::new("mem.ckpt")).unwrap();
    let mut resumed = Run::from_checkpoint(config, &data, Path::new("mem.ckpt")).unwrap();
    assert_eq!(resumed.iteration(), stop_at);
    while !resumed.is_done() {
        resumed.step().unwrap();
    }
    let bits = |r: &Run| {
        let snf = r.snf().map(|s| s.params()).unwrap_or_default();
        r.flow().params().iter().chain(snf).map(|p| p.to_bits()).collect::<Vec<_>>()
    };
    assert!(bits(&straight) == bits(&resumed), "resumed run diverged from the uninterrupted one");
    assert_eq!(straight.target_evaluations(), resumed.target_evaluations());
    assert_eq!(straight.counters(), resumed.counters());
    resumed
}

#[test]
fn a_resumed_fab_2021_run_ends_bitwise_equal() {
    check_resume(mog_config(Method::Fab2021 { ais: hmc_2021() }, 24), 11);
}

/// fab-jax's options together: SMC (adaptive βs, resampling) as FAB's AIS, the gradient guard with factors tight
/// enough that it both skips and clips, and the warm-up + cosine schedule, with the buffer.
fn fabjax_options_config(iterations: u64) -> TrainConfig {
    let mut config = mog_config(
        Method::FabAlpha2 {
            ais: AisConfig {
                n_intermediate: 4,
                alpha: 2.0,
                transition: fab_ais::Transition::Hmc(Hmc::without_jitter(3).with_grad_clamp(1e3)),
                step_size_rule: StepSizeRule::Fab(FabRule::Iclr),
                smc: Some(fab_ais::SmcSettings::default()),
                ..hmc_2021()
            },
            buffer: Some(BufferSettings { capacity: 1000, min_len: 300, n_updates: 2, w_adjust_clip: None }),
        },
        iterations,
    );
    config.optimizer = OptimizerConfig {
        lr: 1e-4,
        weight_decay: 0.0,
        decoupled: false,
        max_grad_norm: None,
        max_grad_value: None,
        schedule: LrSchedule::WarmupCosine { initial_fraction: 0.1, warmup_fraction: 0.2, final_fraction: 0.0 },
        grad_guard: Some(GradGuardConfig { window: 8, ignore_factor: 1.1, clip_factor: 0.8, min_history: 2 }),
    };
    config
}

#[test]
fn a_resumed_run_with_smc_the_grad_guard_and_warmup_ends_bitwise_equal() {
    // The guard's window must come back from the checkpoint: a fresh window would apply steps unclipped.
    let resumed = check_resume(fabjax_options_config(20), 7);
    let c = resumed.counters();
    assert!(c.n_skipped_grad_guard > 0 && c.n_clipped_grad_guard > 0, "the guard acted both ways: {c:?}");
}

#[test]
fn the_grad_guard_counts_reach_the_iteration_reports_and_smc_changes_the_batches() {
    let config = fabjax_options_config(12);
    let mut run = Run::new(config.clone()).unwrap();
    let (mut skipped, mut clipped) = (0, 0);
    while !run.is_done() {
        let r = run.step().unwrap();
        skipped += r.n_skipped_grad_guard;
        clipped += r.n_clipped_grad_guard;
    }
    let c = run.counters();
    assert_eq!((skipped, clipped), (c.n_skipped_grad_guard, c.n_clipped_grad_guard));
    assert!(skipped > 0 && clipped > 0, "{c:?}");
    let steps = c.n_steps_applied + c.n_skipped_grad_guard + c.n_skipped_non_finite_grad + c.n_skipped_non_finite_loss;
    assert_eq!(steps, 12 * 2, "two updates per AIS batch, each applied or counted as skipped");
    // The same run with plain AIS: the SMC switch reaches the sampler.
    let mut ais_config = config;
    if let Method::FabAlpha2 { ais, .. } = &mut ais_config.method {
        ais.smc = None;
    }
    let ais = train(ais_config);
    assert!(ais.flow().params() != run.flow().params(), "SMC and AIS batches differ");
}

#[test]
fn warmup_cosine_rises_to_lr_then_falls_to_its_floor() {
    let s = LrSchedule::WarmupCosine { initial_fraction: 0.1, warmup_fraction: 0.25, final_fraction: 0.0 };
    assert!((s.lr(2e-4, 0.0) - 2e-5).abs() < 1e-18);
    assert!((s.lr(2e-4, 0.125) - 1.1e-4).abs() < 1e-18, "half-way through the warm-up");
    assert!((s.lr(2e-4, 0.25) - 2e-4).abs() < 1e-18, "the peak");
    assert!((s.lr(2e-4, 0.625) - 1e-4).abs() < 1e-18, "half-way through the decay");
    assert!(s.lr(2e-4, 1.0).abs() < 1e-18);
    let mut config = mog_config(Method::ReverseKl, 6);
    config.optimizer.schedule =
        LrSchedule::WarmupCosine { initial_fraction: 0.1, warmup_fraction: 1.5, final_fraction: 0.0 };
    assert_eq!(config.clone().check().unwrap_err().field, "optimizer.schedule.warmup_fraction");
    config.optimizer.schedule = LrSchedule::Constant;
    config.optimizer.grad_guard = Some(GradGuardConfig { ignore_factor: 1.0, ..GradGuardConfig::default() });
    assert_eq!(config.check().unwrap_err().field, "optimizer.grad_guard.ignore_factor");
}

#[test]
fn a_resumed_buffer_run_ends_bitwise_equal() {
    let mut config = mog_config(
        Method::FabAlpha2 {
            ais: AisConfig {
                alpha: 2.0,
                transition: fab_ais::Transition::Hmc(Hmc::without_jitter(3).with_grad_clamp(1e3)),
                step_size_rule: StepSizeRule::Fab(FabRule::Iclr),
                ..hmc_2021()
            },
            buffer: Some(BufferSettings { capacity: 1000, min_len: 300, n_updates: 2, w_adjust_clip: None }),
        },
        20,
    );
    config.optimizer = OptimizerConfig {
        lr: 1e-4,
        weight_decay: 0.0,
        decoupled: false,
        max_grad_norm: Some(100.0),
        max_grad_value: None,
        // A decaying rate: the resumed run must pick the schedule up where it stopped.
        schedule: LrSchedule::Cosine { final_fraction: 0.1 },
        grad_guard: None,
    };
    check_resume(config, 7);
}

#[test]
fn a_resumed_reverse_kl_run_ends_bitwise_equal() {
    check_resume(mog_config(Method::ReverseKl, 20), 13);
}

#[test]
fn a_checkpoint_from_another_config_is_refused() {
    let run = Run::new(mog_config(Method::ReverseKl, 5)).unwrap();
    let data = run.to_checkpoint().unwrap();
    let mut other = mog_config(Method::ReverseKl, 5);
    other.seed = 3;
    let err = Run::from_checkpoint(other, &data, Path::new("runs/x/checkpoint.fab"))
        .err()
        .expect("must be refused")
        .to_string();
    assert!(err.contains("runs/x/checkpoint.fab") && err.contains("different config"), "{err}");
    // The budget may be extended on resume.
    let longer = mog_config(Method::ReverseKl, 50);
    assert!(Run::from_checkpoint(longer, &data, Path::new("c")).is_ok());
}

#[test]
fn a_flow_equal_to_the_target_scores_perfectly() {
    // An untrained ICLR flow is an orthogonal map of N(0, I) (zero-initialised couplings, orthogonal LU layers):
    // on a standard normal target q = p exactly, so every metric must say so.
    let config = TrainConfig {
        target: Some(TargetSpec::DiagGaussian { means: vec![0.0; 3], stds: vec![1.0; 3] }),
        flow: FlowConfig::Custom(FlowSpec::realnvp_iclr(3, 2, 8)),
        method: Method::ReverseKl,
        ..mog_config(Method::ReverseKl, 1)
    };
    let run = Run::new(config).unwrap();
    let r = evaluate(&run, 5000, Detail::Periodic).unwrap();
    assert!((r.flow_ess - 100.0).abs() < 1e-6, "flow ESS {}", r.flow_ess);
    assert!((r.forward_ess.unwrap() - 100.0).abs() < 1e-6, "forward ESS {:?}", r.forward_ess);
    let lz = r.log_z_flow.unwrap();
    assert!(lz.abs_error_log_z < 1e-9 && lz.relative_error_z_percent < 1e-7, "{lz:?}");
    assert!((r.mean_log_q_target.unwrap() - r.mean_log_p_target.unwrap()).abs() < 1e-9);
}

#[test]
fn invalid_configs_are_refused_before_any_work() {
    let mut c = mog_config(Method::ReverseKl, 5);
    c.batch_size = 0;
    let e = Run::new(c).err().expect("refused").to_string();
    assert!(e.contains("batch_size"), "{e}");
    let mut c = mog_config(Method::ReverseKl, 5);
    c.flow = FlowConfig::RealNvp2021 { dim: 3, n_blocks: 2, width: 4, scale_init: 1.0, math: Math::Libm };
    let e = Run::new(c).err().expect("refused").to_string();
    assert!(e.contains("flow") && e.contains("dimension"), "{e}");
}

/// The 2021 SNF baseline with the paper's architecture and optimiser (SPEC §5) and a short budget.
fn snf_config(iterations: u64) -> TrainConfig {
    TrainConfig {
        flow: FlowConfig::Custom(FlowSpec { dim: 2, layers: vec![], base: BaseSpec::StandardNormal, math: Math::Libm }),
        method: Method::Snf { n_blocks: 3, hidden: 64, n_mc_steps: 20, proposal_std: 0.25 },
        optimizer: OptimizerConfig {
            lr: 5e-3,
            weight_decay: 0.0,
            decoupled: false,
            max_grad_norm: None,
            max_grad_value: None,
            schedule: LrSchedule::Constant,
            grad_guard: None,
        },
        batch_size: 128,
        ..mog_config(Method::ReverseKl, iterations)
    }
}

/// Reverse KL `mean(log q − log p̃)` of the run's SNF on 2000 paths of a fixed seed.
fn snf_held_out_kl(run: &Run) -> f64 {
    let snf = run.snf().expect("an SNF run");
    let mut scratch = vec![0.0; snf.n_params()];
    snf.reverse_kl_grad(run.target(), 12345, 2000, &mut scratch).loss
}

#[test]
fn a_short_snf_run_reduces_the_reverse_kl_and_evaluates_end_to_end() {
    let untrained = Run::new(snf_config(150)).unwrap();
    let before = snf_held_out_kl(&untrained);
    let run = train(snf_config(150));
    let after = snf_held_out_kl(&run);
    eprintln!("reverse KL before {before}, after {after}");
    assert!(after < before - 1.0, "reverse KL before {before}, after 150 iterations {after}");
    assert_eq!(run.counters().n_steps_applied, 150);
    // Every MC step at λ > 0 evaluates the target: the budget counts them.
    assert!(run.target_evaluations().total() > 150 * 128 * 40);

    let r = evaluate(&run, 20_000, Detail::Full).unwrap();
    eprintln!("SNF: {r:?}");
    assert!(r.flow_ess > 0.0 && r.flow_ess <= 100.0, "flow ESS {}", r.flow_ess);
    assert_eq!(r.flow_n_non_finite, 0);
    // An SNF has no density at given points: these are honestly absent, and there is no AIS.
    assert!(r.mean_log_q_target.is_none() && r.forward_ess.is_none() && r.ais_ess.is_none());
    assert!(r.mean_log_p_target.is_some_and(|v| (v + 4.94).abs() < 0.1), "{:?}", r.mean_log_p_target);
    let e = r.expectation_flow.expect("the quadratic expectation on the MoG");
    assert!(e.n_groups == 20 && e.bias_percent.is_finite() && e.std_percent.is_finite(), "{e:?}");
    assert!(r.log_z_flow.is_some_and(|l| l.abs_error_log_z.is_finite()));
    let row = table1_row("SNF", &r);
    assert!(row.starts_with("| SNF | n/a | "), "{row}");
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["mean_log_q_target"].is_null());
}

#[test]
fn a_resumed_snf_run_ends_bitwise_equal() {
    check_resume(snf_config(12), 5);
}

#[test]
fn an_snf_needs_a_standard_normal_prior_as_its_flow() {
    let mut c = snf_config(5);
    c.flow = FlowConfig::RealNvp2021 { dim: 2, n_blocks: 2, width: 4, scale_init: 1.0, math: Math::Libm };
    let e = Run::new(c).err().expect("refused").to_string();
    assert!(e.contains("flow") && e.contains("prior"), "{e}");
    let mut c = snf_config(5);
    c.method = Method::Snf { n_blocks: 3, hidden: 64, n_mc_steps: 20, proposal_std: 0.0 };
    let e = Run::new(c).err().expect("refused").to_string();
    assert!(e.contains("method.proposal_std"), "{e}");
}

#[test]
fn the_cosine_schedule_falls_from_lr_to_its_floor() {
    let cosine = LrSchedule::Cosine { final_fraction: 0.1 };
    assert_eq!(cosine.lr(1e-3, 0.0), 1e-3);
    assert!((cosine.lr(1e-3, 1.0) - 1e-4).abs() < 1e-18);
    assert!((cosine.lr(1e-3, 0.5) - 5.5e-4).abs() < 1e-15, "half-way is the mean of the ends");
    assert!((cosine.lr(1e-3, 2.0) - 1e-4).abs() < 1e-18, "progress is clamped");
    let rates: Vec<f64> = (0..=100).map(|k| cosine.lr(1e-3, k as f64 / 100.0)).collect();
    assert!(rates.windows(2).all(|w| w[1] <= w[0]), "the rate never rises");
    assert_eq!(LrSchedule::Constant.lr(1e-3, 0.7), 1e-3);
}

/// The schedule reaches the optimiser: a cosine with floor 1 is the constant rate bit for bit, a cosine to 0 is not.
#[test]
fn a_run_follows_its_learning_rate_schedule() {
    let with = |schedule| {
        let mut config = mog_config(Method::ReverseKl, 6);
        config.optimizer.schedule = schedule;
        let run = train(config);
        assert_eq!(run.budget_progress(), 1.0);
        run.flow().params().iter().map(|p| p.to_bits()).collect::<Vec<_>>()
    };
    let constant = with(LrSchedule::Constant);
    assert!(with(LrSchedule::Cosine { final_fraction: 1.0 }) == constant);
    assert!(with(LrSchedule::Cosine { final_fraction: 0.0 }) != constant);
}

#[test]
fn a_schedule_floor_outside_zero_one_is_refused_naming_the_field() {
    let mut config = mog_config(Method::ReverseKl, 6);
    config.optimizer.schedule = LrSchedule::Cosine { final_fraction: 1.5 };
    let err = config.check().unwrap_err();
    assert_eq!(err.field, "optimizer.schedule.final_fraction");
}

/// A checkpoint whose optimiser moments do not match the trained parameters (damaged, yet with a valid checksum) is
/// refused with the array named, instead of making the optimiser panic on the first step after resuming.
#[test]
fn a_checkpoint_with_moments_of_the_wrong_length_is_refused() {
    for method in [Method::ReverseKl, Method::Snf { n_blocks: 1, hidden: 8, n_mc_steps: 2, proposal_std: 0.25 }] {
        let mut config = mog_config(method, 4);
        if config.method.snf_spec(2).is_some() {
            config.flow = FlowConfig::Custom(FlowSpec {
                dim: 2,
                base: BaseSpec::StandardNormal,
                layers: vec![],
                math: Math::Libm,
            });
        }
        let mut run = Run::new(config.clone()).unwrap();
        run.step().unwrap();
        let mut data = run.to_checkpoint().unwrap();
        Run::from_checkpoint(config.clone(), &data, Path::new("ok.ckpt")).unwrap();
        data.arrays.get_mut("optimizer.m").unwrap().to_mut().pop();
        let e = Run::from_checkpoint(config, &data, Path::new("bad.ckpt")).err().expect("refused").to_string();
        assert!(e.contains("bad.ckpt") && e.contains("`optimizer.m` has"), "{e}");
    }
}

/// A preset's `math` option reaches the flow: `math: Vector` in a config builds the flow with fab-flow's vectorised
/// kernels and is written back out, an omitted `math` is `Libm` and is not written (so every shipped config and
/// committed run keeps its text), and the two numerics train to the same losses within the kernels' ulp bounds
/// (near the zero-initialised couplings' start they often agree to the bit: the kernels are exact there).
#[test]
fn a_presets_math_option_reaches_the_flow_and_round_trips() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/mog_fab_2021.ron")).unwrap();
    let vector_text = shipped.replace("scale_init: 1.0)", "scale_init: 1.0, math: Vector)");
    assert_ne!(vector_text, shipped, "the shipped MoG config no longer has the expected flow line");
    let libm = TrainConfig::from_ron(&shipped).unwrap();
    let vector = TrainConfig::from_ron(&vector_text).unwrap();
    assert_eq!(libm.flow.spec().math, Math::Libm);
    assert_eq!(vector.flow.spec().math, Math::Vector);
    assert!(!libm.to_ron().unwrap().contains("math"), "Libm must not be written out");
    let written = vector.to_ron().unwrap();
    assert!(written.contains("math: Vector"), "{written}");
    assert_eq!(TrainConfig::from_ron(&written).unwrap(), vector);

    let short = |c: TrainConfig| TrainConfig { budget: Budget::Iterations(3), checkpoint_every: 0, ..c };
    let (mut a, mut b) = (Run::new(short(libm)).unwrap(), Run::new(short(vector)).unwrap());
    assert_eq!(a.flow().spec().math, Math::Libm);
    assert_eq!(b.flow().spec().math, Math::Vector);
    for _ in 0..3 {
        let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
        let rel = (ra.loss - rb.loss).abs() / ra.loss.abs().max(1e-300);
        assert!(rel < 1e-9, "loss {} (Libm) vs {} (Vector)", ra.loss, rb.loss);
    }
    let max_param_diff =
        a.flow().params().iter().zip(b.flow().params()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(max_param_diff < 1e-9, "parameters differ by {max_param_diff}");
}
