//! Evaluation of a flow during and after training: every metric of SPEC §6a that the target allows.
//!
//! Evaluation draws from its own random streams `(seed, EVAL, iteration)`, uses the target *without* counting
//! (evaluation is not part of the training budget), and runs AIS with frozen step sizes on a copy of the driver,
//! so it never changes the run. Its flow draws go through [`ChunkedSampling`]: bit for bit one call, in bounded
//! memory.

use crate::chunked::ChunkedSampling;
use crate::error::TrainError;
use crate::metrics::{
    ExpectationError, LogZError, expectation_error, forward_ess_percent, log_weights, log_z_error, mean_log_q,
};
use crate::run::Run;
use crate::streams;
use fab_ais::{LogZEstimate, log_z_estimate};
use fab_core::numerics::ess_percent;
use fab_core::{Batch, Proposal, stream_rng, sub_seed};
use fab_targets::TestFunction;
use serde::{Deserialize, Serialize};

/// Every metric of one evaluation. Fields are `None` when the target lacks the capability they need (exact
/// samples, log Z, mode sets, a test function) or, for an SNF, when they need the density at points the SNF did not
/// sample (mean log q at target samples, forward ESS, mode sets).
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
    /// `log Ẑ` by importance sampling with the flow, with its standard error (any target).
    #[serde(default = "nan_estimate")]
    pub log_z_hat_flow: LogZEstimate,
    /// ESS (%) after AIS to p (FAB runs).
    pub ais_ess: Option<f64>,
    /// AIS points dropped as non-finite or invalid.
    pub ais_n_dropped: Option<u64>,
    /// AIS target evaluations at points refused by the validity rules.
    #[serde(default)]
    pub ais_n_invalid: Option<u64>,
    /// `log Ẑ` after AIS to p, with its standard error (FAB runs, any target).
    #[serde(default)]
    pub log_z_hat_ais: Option<LogZEstimate>,
    /// log Z errors of flow importance sampling (50 strided runs), when log Z is known.
    pub log_z_flow: Option<LogZError>,
    /// log Z errors after AIS, when log Z is known.
    pub log_z_ais: Option<LogZError>,
    /// Mean log q at exact target samples (targets with an exact sampler); `None` for an SNF, whose density is
    /// only defined along its sampling paths (Table 1: "n/a").
    pub mean_log_q_target: Option<f64>,
    /// Best possible value of the above: mean normalised log p at the same samples, when log Z is known.
    pub mean_log_p_target: Option<f64>,
    /// Forward ESS (%) `1/E_p[p/q]`, with exact samples and log Z.
    pub forward_ess: Option<f64>,
    /// Mean log q on the target's exact mode set (ICLR), for targets with mode sets.
    pub mode_set_mean_log_q: Option<f64>,
    /// Mean log q on the modes with noise (2021 Table 2).
    pub noisy_mode_set_mean_log_q: Option<f64>,
    /// Test-function expectation error of flow importance sampling, for targets with a test function.
    pub expectation_flow: Option<ExpectationError>,
    /// The same after AIS.
    pub expectation_ais: Option<ExpectationError>,
}

fn nan_estimate() -> LogZEstimate {
    LogZEstimate { log_z: f64::NAN, std_err: f64::NAN, n_used: 0 }
}

/// Sub-seed tags of the SNF's evaluation draws (its paths draw from `stream_rng(sub_seed(seed, [tag]), i)`).
const SNF_SAMPLES: u64 = 10;
const SNF_EXPECTATION_SAMPLES: u64 = 11;

/// How much an evaluation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// ESS, log Z, log q at target samples and mode sets: cheap enough to run during training.
    Periodic,
    /// Also the test-function expectation bias and std over `eval.expectation_groups` (flow and AIS).
    Full,
}

/// Evaluates the run's flow (or SNF) with `n_samples` flow (and AIS) samples.
pub fn evaluate(run: &Run, n_samples: usize, detail: Detail) -> Result<EvalReport, TrainError> {
    let _span = tracing::info_span!("evaluate", k = run.iteration(), n = n_samples).entered();
    let cfg = run.config();
    let seed = sub_seed(cfg.seed, &[streams::EVAL, run.iteration()]);
    let target = run.target();
    let log_z = target.log_z();
    let flow = run.flow();
    // Training left each thread a pool sized for its passes (the buffer objectives record every chunk of a batch at
    // once); evaluation's passes run one chunk per thread, so it starts from empty pools rather than adding to them.
    fab_flow::release_pooled_buffers();

    let (log_q, log_p) = match run.snf() {
        // The SNF's log q is that of each sample's path; its last MC layer already evaluated log p̃ there.
        Some(snf) => {
            let s = snf.sample(target, sub_seed(seed, &[SNF_SAMPLES]), n_samples);
            (s.log_q, s.log_p)
        }
        None => {
            let (x, log_q) = ChunkedSampling(flow).sample(&mut stream_rng(seed, 0), n_samples);
            let mut log_p = vec![0.0; n_samples];
            target.log_prob_batch(x.view(), &mut log_p);
            (log_q, log_p)
        }
    };
    let log_w = log_weights(&log_p, &log_q);
    let flow_ess = ess_percent(&log_w);
    let n_runs = 50.min(n_samples);
    let log_z_flow = log_z.map(|lz| log_z_error(&log_w, n_runs, lz));

    let ais = run.sample_ais(n_samples, sub_seed(seed, &[1]))?;

    // log q at given points exists for flows only.
    let has_density = run.snf().is_none();
    let exact = target.exact_sampler().map(|s| s.sample_exact(&mut stream_rng(seed, 2), cfg.eval.n_target_samples));
    let at_target = exact.as_ref().map(|x| {
        let log_q = if has_density { flow.log_q(x.view()) } else { Vec::new() };
        let mut log_p = vec![0.0; x.n_rows()];
        target.log_prob_batch(x.view(), &mut log_p);
        (log_q, log_p)
    });
    let normalised: Option<Vec<f64>> =
        at_target.as_ref().and_then(|(_, lp)| log_z.map(|lz| lp.iter().map(|l| l - lz).collect()));

    let mode_sets = if has_density { target.mode_sets(&mut stream_rng(seed, 3)) } else { None };
    let mode_mean = |modes: &Batch| mean_log_q(&flow.log_q(modes.view())).value;

    let (expectation_flow, expectation_ais) = match (detail, target.test_function()) {
        (Detail::Full, Some(f)) => expectations(run, &f, seed)?,
        _ => (None, None),
    };

    Ok(EvalReport {
        iteration: run.iteration(),
        n_samples,
        flow_ess: flow_ess.value,
        flow_n_non_finite: flow_ess.n_skipped,
        log_z_hat_flow: log_z_estimate(&log_w),
        ais_ess: ais.as_ref().map(|a| ess_percent(&a.log_w).value),
        ais_n_dropped: ais.as_ref().map(|a| (a.n_dropped_init + a.n_dropped_end) as u64),
        ais_n_invalid: ais.as_ref().map(|a| a.n_invalid),
        log_z_hat_ais: ais.as_ref().map(|a| a.log_z),
        log_z_flow,
        log_z_ais: ais
            .as_ref()
            .and_then(|a| log_z.map(|lz| log_z_error(&a.log_w, n_runs.min(a.log_w.len()).max(1), lz))),
        mean_log_q_target: at_target.as_ref().filter(|_| has_density).map(|(lq, _)| mean_log_q(lq).value),
        mean_log_p_target: normalised.as_ref().map(|lp| mean_log_q(lp).value),
        forward_ess: normalised
            .as_ref()
            .zip(at_target.as_ref())
            .filter(|_| has_density)
            .map(|(lp, (lq, _))| forward_ess_percent(lp, lq).value),
        mode_set_mean_log_q: mode_sets.as_ref().map(|m| mode_mean(&m.exact)),
        noisy_mode_set_mean_log_q: mode_sets.as_ref().and_then(|m| m.noisy.as_ref()).map(mode_mean),
        expectation_flow,
        expectation_ais,
    })
}

/// Bias/std of the test function's expectation over `groups × size` flow samples, and the same after AIS.
fn expectations(
    run: &Run,
    f: &TestFunction,
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
            let (x, log_q) = ChunkedSampling(run.flow()).sample(&mut stream_rng(seed, 4), n);
            let mut log_p = vec![0.0; n];
            target.log_prob_batch(x.view(), &mut log_p);
            (x, log_q, log_p)
        }
    };
    let values: Vec<f64> = x.rows().map(|r| f.value(r)).collect();
    let flow = expectation_error(&log_weights(&log_p, &log_q), &values, size, f.expectation);
    let ais = match run.sample_ais(n, sub_seed(seed, &[5]))? {
        Some(a) => {
            let values: Vec<f64> = a.samples.rows().map(|r| f.value(r)).collect();
            Some(expectation_error(&a.log_w, &values, size, f.expectation))
        }
        None => None,
    };
    Ok((Some(flow), ais))
}
