//! Train FAB (α = 2 + replay buffer) on your own density: a 2-D banana with a hand-written gradient.
//!
//! `cargo run --release -p fab-train --example own_density` (about a minute on 2 cores).

use fab_core::LogDensity;
use fab_train::config::{EXAMPLE_OWN_DENSITY, TrainConfig};
use fab_train::{Detail, Run, evaluate};

/// `x₀ ~ N(0, 2²)`, `x₁ | x₀ ~ N(x₀²/2, 0.5²)`, unnormalised: `Z = 2π·2·0.5`, so `log Z = ln 2π`.
struct Banana;

impl LogDensity for Banana {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        let r = x[1] - 0.5 * x[0] * x[0];
        -x[0] * x[0] / 8.0 - 2.0 * r * r
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let r = x[1] - 0.5 * x[0] * x[0];
        grad[0] = -x[0] / 4.0 + 4.0 * r * x[0];
        grad[1] = -4.0 * r;
        self.log_prob(x)
    }
}
impl fab_targets::Target for Banana {} // FAB needs no exact samples and no log Z

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config: TrainConfig = ron::from_str(EXAMPLE_OWN_DENSITY)?;
    let mut run = Run::with_target(config, Box::new(Banana))?;
    while !run.is_done() {
        run.step()?;
    }
    let report = evaluate(&run, 20_000, Detail::Periodic)?;
    let log_z = report.log_z_hat_ais.ok_or("FAB runs estimate log Z with AIS")?;
    let truth = (2.0 * std::f64::consts::PI).ln();
    println!("flow ESS {:.1} %   AIS ESS {:.1} %", report.flow_ess, report.ais_ess.unwrap_or(f64::NAN));
    println!("log Ẑ = {:.4} ± {:.4} (AIS, 20000 samples); true log Z = ln 2π = {truth:.4}", log_z.log_z, log_z.std_err);
    println!("error {:.2} standard errors", (log_z.log_z - truth) / log_z.std_err);
    Ok(())
}
