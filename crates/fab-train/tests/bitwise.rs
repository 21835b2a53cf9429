//! Every shipped config, shrunk to a few iterations, gives bitwise the results it gave before the fab-train
//! refactors (issue 11): flow (or SNF) parameters, every iteration report and a periodic evaluation are hashed and
//! compared with hashes recorded from the code before the refactor.

use fab_train::config::{Budget, Method, TrainConfig};
use fab_train::{Detail, Run, evaluate};

/// FNV-1a over bytes.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

/// The config file shrunk so that a few iterations of every method run in seconds.
fn shrunk(file: &str) -> TrainConfig {
    let path = format!("{}/../../configs/{file}.ron", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config: TrainConfig = ron::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    config.batch_size = 32;
    config.budget = Budget::Iterations(3);
    config.eval.n_target_samples = 300;
    config.eval.expectation_groups = (3, 100);
    if let Method::FabAlpha2 { buffer: Some(b), .. } = &mut config.method {
        b.capacity = 256;
        b.min_len = 64;
        b.n_updates = b.n_updates.min(2);
    }
    config
}

/// The fields the reports had before the refactor (new fields may be added without changing the hash).
const ITERATION_FIELDS: &[&str] =
    &["iteration", "loss", "grad_norm", "batch_ess", "acceptance", "step_sizes", "target_evaluations", "n_dropped"];
const EVAL_FIELDS: &[&str] = &[
    "iteration",
    "n_samples",
    "flow_ess",
    "flow_n_non_finite",
    "ais_ess",
    "ais_n_dropped",
    "log_z_flow",
    "log_z_ais",
    "mean_log_q_target",
    "mean_log_p_target",
    "forward_ess",
    "mode_set_mean_log_q",
    "noisy_mode_set_mean_log_q",
    "expectation_flow",
    "expectation_ais",
];

/// The JSON text of `fields` of an object, in the order given (a missing field is `null`).
fn projected(value: serde_json::Value, fields: &[&str]) -> String {
    fields.iter().map(|f| format!("{f}={};", value.get(*f).unwrap_or(&serde_json::Value::Null))).collect()
}

/// Hash of three iterations and one evaluation of the shrunk config.
fn run_hash(file: &str) -> u64 {
    let mut run = Run::new(shrunk(file)).unwrap();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    while !run.is_done() {
        let report = run.step().unwrap();
        fnv(&mut h, projected(serde_json::to_value(&report).unwrap(), ITERATION_FIELDS).as_bytes());
    }
    let params = run.snf().map(|s| s.params().to_vec()).unwrap_or_else(|| run.flow().params().to_vec());
    for p in params {
        fnv(&mut h, &p.to_bits().to_le_bytes());
    }
    let eval = evaluate(&run, 400, Detail::Full).unwrap();
    fnv(&mut h, projected(serde_json::to_value(&eval).unwrap(), EVAL_FIELDS).as_bytes());
    h
}

/// Recorded at commit a300e4f (before issue 11).
const EXPECTED: &[(&str, u64)] = &[
    ("mog_fab_2021", 0xc041d6356f531eaf),
    ("mog_fab_buffer", 0xbf7e71f46e864246),
    ("mog_kl_2021", 0xdeecea4ad556dcd9),
    ("mog_snf_2021", 0xed70db45424ab79d),
    ("gmm40_fab_buffer_iclr", 0x2bb4f71e142be070),
    ("many_well16_fab_2021", 0xae58070f0d5192f5),
    ("many_well16_fab_buffer", 0xd5a4728fff0cb804),
    ("many_well16_kl_2021", 0x76afd72425bb9885),
    ("many_well32_fab_buffer_iclr", 0xbc0fef78b197f209),
];

#[test]
fn every_shipped_config_gives_the_results_it_gave_before() {
    let got: Vec<(&str, u64)> = EXPECTED.iter().map(|(f, _)| (*f, run_hash(f))).collect();
    for (f, h) in &got {
        eprintln!("    (\"{f}\", {h:#018x}),");
    }
    assert_eq!(got, EXPECTED, "a shipped config's results changed");
}
