//! Markdown rows in the layout of the papers' tables, from an evaluation.

use crate::eval::EvalReport;

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        Some(_) => "non-finite".into(),
        None => "n/a".into(),
    }
}

fn with_ais(flow: Option<f64>, ais: Option<f64>, digits: usize) -> String {
    match ais {
        Some(_) => format!("{} ({})", num(flow, digits), num(ais, digits)),
        None => num(flow, digits),
    }
}

/// Header of Table 1 (2-D mixture of Gaussians).
pub const TABLE1_HEADER: &str = "| model | mean log q(x), x~p | ESS (%) | bias (%) | std (%) |\n|---|---|---|---|---|";

/// One Table 1 row: flow metrics, AIS metrics in brackets.
pub fn table1_row(label: &str, r: &EvalReport) -> String {
    let ef = r.expectation_flow.as_ref();
    let ea = r.expectation_ais.as_ref();
    format!(
        "| {label} | {} | {} | {} | {} |",
        num(r.mean_log_q_target, 2),
        with_ais(Some(r.flow_ess), r.ais_ess, 2),
        with_ais(ef.map(|e| e.bias_percent), ea.map(|e| e.bias_percent), 2),
        with_ais(ef.map(|e| e.std_percent), ea.map(|e| e.std_percent), 2),
    )
}

/// Header of Table 2 (Many Well).
pub const TABLE2_HEADER: &str = "| model | test-set mean log q (noisy modes) | exact-mode mean log q | ESS (%) | forward ESS (%) |\n|---|---|---|---|---|";

/// One Table 2 row.
pub fn table2_row(label: &str, r: &EvalReport) -> String {
    format!(
        "| {label} | {} | {} | {} | {} |",
        num(r.noisy_mode_set_mean_log_q, 2),
        num(r.mode_set_mean_log_q, 2),
        with_ais(Some(r.flow_ess), r.ais_ess, 2),
        num(r.forward_ess, 2),
    )
}

/// Header of the general table used for every other target.
pub const GENERAL_HEADER: &str = "| model | mean log q(x), x~p | best possible | ESS (%) | forward ESS (%) | bias (%) | rel. error of Z (%) |\n|---|---|---|---|---|---|---|";

/// One row of the general table.
pub fn general_row(label: &str, r: &EvalReport) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {} | {} |",
        num(r.mean_log_q_target, 2),
        num(r.mean_log_p_target, 2),
        with_ais(Some(r.flow_ess), r.ais_ess, 2),
        num(r.forward_ess, 2),
        with_ais(r.expectation_flow.map(|e| e.mae_percent), r.expectation_ais.map(|e| e.mae_percent), 2),
        with_ais(r.log_z_flow.map(|e| e.relative_error_z_percent), r.log_z_ais.map(|e| e.relative_error_z_percent), 2),
    )
}
