//! Evaluation of a flow during and after training: every metric of SPEC §6a that the target allows.
//!
//! Evaluation draws from its own random streams `(seed, EVAL, iteration)`, uses the target *without* counting
//! (evaluation is not part of the training budget), and runs AIS with frozen step sizes on a copy of the driver,
//! so it never changes the run.

use crate::metrics::{
    ExpectationError, LogZError, expectation_error, forward_ess_percent, log_weights, log_z_error, mean_log_q,
};
use crate::run::{Run, TrainError, purpose};
use fab_core::numerics::ess_percent;
use fab_core::{Batch, Proposal, stream_rng, sub_seed};
use fab_targets::{DiagGmm, ManyWell, QuadraticFn, TargetSpec};
use serde::{Deserialize, Serialize};

/// Every metric of one evaluation. Fields are `None` when the target does not define them (or, for an SNF, when
/// they need the density at points the SNF did not sample: mean log q at target samples, forward ESS, mode sets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Iterations completed when evaluated.
    pub iteration: u64,
    /// Flow samples used for ESS and log Z.
    pub n_samples: usize,
    /// ESS (%) of the flow's importance weights p̃/q.
    pub flow_ess: f64,
    /// Flow samples with a non-finite weight.
    pub flow_n_non_finite: usize,
    /// ESS (%) after AIS to p (FAB runs, or any run when `ais_for_all`).
    pub ais_ess: Option<f64>,
    /// AIS points dropped as non-finite.
    pub ais_n_dropped: Option<u64>,
    /// log Z errors of flow importance sampling (50 strided runs), when log Z is known.
    pub log_z_flow: Option<LogZError>,
    /// log Z errors after AIS, when log Z is known.
    pub log_z_ais: Option<LogZError>,
    /// Mean log q at exact target samples; `None` for an SNF, whose density is only defined along its sampling
    /// paths (Table 1: "n/a").
    pub mean_log_q_target: Option<f64>,
    /// Best possible value of the above: mean normalised log p at the same samples, when log Z is known.
    pub mean_log_p_target: Option<f64>,
    /// Forward ESS (%) `1/E_p[p/q]`, when log Z is known.
    pub forward_ess: Option<f64>,
    /// Many Well: mean log q on the exact mode test set (ICLR).
    pub mode_set_mean_log_q: Option<f64>,
    /// Many Well: mean log q on the modes with N(0, 0.2²) noise (2021 Table 2).
    pub noisy_mode_set_mean_log_q: Option<f64>,
    /// Quadratic-function expectation error of flow importance sampling (2021 MoG and ICLR GMM).
    pub expectation_flow: Option<ExpectationError>,
    /// The same after AIS.
    pub expectation_ais: Option<ExpectationError>,
}

/// Sub-seed tags of the SNF's evaluation draws (its paths draw from `stream_rng(sub_seed(seed, [tag]), i)`).
const SNF_SAMPLES: u64 = 10;
const SNF_EXPECTATION_SAMPLES: u64 = 11;

/// The quadratic test function and its exact expectation for the targets the papers use it on.
fn quadratic_for(spec: &TargetSpec) -> Option<(QuadraticFn, f64)> {
    match spec {
        TargetSpec::Mog5_2021 => {
            let f = QuadraticFn::mog5_2021();
            let truth = f.expectation_under(&DiagGmm::mog5_2021());
            Some((f, truth))
        }
        TargetSpec::Gmm40Iclr => {
            let f = QuadraticFn::gmm40_iclr();
            let truth = f.expectation_under(&DiagGmm::gmm40_iclr());
            Some((f, truth))
        }
        _ => None,
    }
}

/// How much an evaluation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// ESS, log Z, log q at target samples and mode sets: cheap enough to run during training.
    Periodic,
    /// Also the quadratic-expectation bias and std over `eval.expectation_groups` (flow and AIS).
    Full,
}

/// Evaluates the run's flow (or SNF) with `n_samples` flow (and AIS) samples.
pub fn evaluate(run: &Run, n_samples: usize, detail: Detail) -> Result<EvalReport, TrainError> {
    let _span = tracing::info_span!("evaluate", k = run.iteration(), n = n_samples).entered();
    let cfg = run.config();
    let seed = sub_seed(cfg.seed, &[purpose::EVAL, run.iteration()]);
    let target = run.target();
    let log_z = target.log_z();
    let flow = run.flow();

    let (log_q, log_p) = match run.snf() {
        // The SNF's log q is that of each sample's path; its last MC layer already evaluated log p̃ there.
        Some(snf) => {
            let s = snf.sample(target, sub_seed(seed, &[SNF_SAMPLES]), n_samples);
            (s.log_q, s.log_p)
        }
        None => {
            let (x, log_q) = flow.sample(&mut stream_rng(seed, 0), n_samples);
            let mut log_p = vec![0.0; n_samples];
            target.log_prob_batch(x.view(), &mut log_p);
            (log_q, log_p)
        }
    };
    let log_w = log_weights(&log_p, &log_q);
    let flow_ess = ess_percent(&log_w);
    let n_runs = 50.min(n_samples);
    let log_z_flow = log_z.map(|lz| log_z_error(&log_w, n_runs, lz));

    let ais = match run.ais() {
        Some(driver) => {
            let mut frozen = driver.clone();
            Some(frozen.run(flow, target, n_samples, 1.0, sub_seed(seed, &[1]), false).map_err(TrainError::Ais)?)
        }
        None => None,
    };

    let x_target = target.sample_exact(&mut stream_rng(seed, 2), cfg.eval.n_target_samples);
    // log q at given points exists for flows only.
    let has_density = run.snf().is_none();
    let log_q_target = if has_density { flow.log_q(x_target.view()) } else { Vec::new() };
    let mut log_p_target = vec![0.0; x_target.n_rows()];
    target.log_prob_batch(x_target.view(), &mut log_p_target);
    let normalised: Option<Vec<f64>> = log_z.map(|lz| log_p_target.iter().map(|l| l - lz).collect());

    let many_well = match &cfg.target {
        _ if !has_density => None,
        TargetSpec::ManyWell { dim } => ManyWell::new(*dim).ok(),
        TargetSpec::DoubleWell => Some(ManyWell::double_well()),
        _ => None,
    };
    let mode_mean = |modes: &Batch| mean_log_q(&flow.log_q(modes.view())).value;

    let (expectation_flow, expectation_ais) = match (detail, quadratic_for(&cfg.target)) {
        (Detail::Full, Some((f, truth))) => expectations(run, &f, truth, seed)?,
        _ => (None, None),
    };

    Ok(EvalReport {
        iteration: run.iteration(),
        n_samples,
        flow_ess: flow_ess.value,
        flow_n_non_finite: flow_ess.n_skipped,
        ais_ess: ais.as_ref().map(|a| ess_percent(&a.log_w).value),
        ais_n_dropped: ais.as_ref().map(|a| a.n_dropped),
        log_z_flow,
        log_z_ais: ais
            .as_ref()
            .and_then(|a| log_z.map(|lz| log_z_error(&a.log_w, n_runs.min(a.log_w.len()).max(1), lz))),
        mean_log_q_target: has_density.then(|| mean_log_q(&log_q_target).value),
        mean_log_p_target: normalised.as_ref().map(|lp| mean_log_q(lp).value),
        forward_ess: normalised.as_ref().filter(|_| has_density).map(|lp| forward_ess_percent(lp, &log_q_target).value),
        mode_set_mean_log_q: many_well.as_ref().map(|mw| mode_mean(&mw.mode_test_set_iclr())),
        noisy_mode_set_mean_log_q: many_well
            .as_ref()
            .map(|mw| mode_mean(&mw.mode_test_set_2021(&mut stream_rng(seed, 3)))),
        expectation_flow,
        expectation_ais,
    })
}

/// Bias/std of the quadratic expectation over `groups × size` flow samples, and the same after AIS.
fn expectations(
    run: &Run,
    f: &QuadraticFn,
    truth: f64,
    seed: u64,
) -> Result<(Option<ExpectationError>, Option<ExpectationError>), TrainError> {
    let (groups, size) = run.config().eval.expectation_groups;
    let n = groups * size;
    let target = run.target();
    let (x, log_q, log_p) = match run.snf() {
        Some(snf) => {
            let s = snf.sample(target, sub_seed(seed, &[SNF_EXPECTATION_SAMPLES]), n);
            (s.x, s.log_q, s.log_p)
        }
        None => {
            let (x, log_q) = run.flow().sample(&mut stream_rng(seed, 4), n);
            let mut log_p = vec![0.0; n];
            target.log_prob_batch(x.view(), &mut log_p);
            (x, log_q, log_p)
        }
    };
    let values: Vec<f64> = x.rows().map(|r| f.value(r)).collect();
    let flow = expectation_error(&log_weights(&log_p, &log_q), &values, size, truth);
    let ais = match run.ais() {
        Some(driver) => {
            let mut frozen = driver.clone();
            let a = frozen.run(run.flow(), target, n, 1.0, sub_seed(seed, &[5]), false).map_err(TrainError::Ais)?;
            let values: Vec<f64> = a.x.rows().map(|r| f.value(r)).collect();
            Some(expectation_error(&a.log_w, &values, size, truth))
        }
        None => None,
    };
    Ok((Some(flow), ais))
}
