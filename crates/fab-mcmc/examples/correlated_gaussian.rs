//! Sampling a user-written 2-D Gaussian with correlation 0.9 using HMC, then checking the sample correlation.

use fab_core::{Batch, LogDensity};
use fab_mcmc::{Hmc, Sampler};

/// `N(0, Σ)` with `Σ = [[1, ρ], [ρ, 1]]`, unnormalised.
struct Correlated(f64);
impl LogDensity for Correlated {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0; 2])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let c = 1.0 / (1.0 - self.0 * self.0); // Σ⁻¹ = c·[[1, −ρ], [−ρ, 1]]
        (g[0], g[1]) = (-c * (x[0] - self.0 * x[1]), -c * (x[1] - self.0 * x[0]));
        -0.5 * c * (x[0] * x[0] - 2.0 * self.0 * x[0] * x[1] + x[1] * x[1])
    }
}

fn main() -> Result<(), fab_mcmc::McmcError> {
    let trace = Sampler::new(&Correlated(0.9), Hmc::new(10).with_step_size_jitter(0.2), Batch::zeros(8, 2), 1)?
        .warmup(500)?
        .sample(2000)?;
    let xs = trace.to_batch();
    let corr = xs.rows().map(|r| r[0] * r[1]).sum::<f64>() / xs.n_rows() as f64;
    println!(
        "mean {:?}  E[x0·x1] {corr:.3} (0.9)  R-hat {:?}  ESS {:?}",
        trace.mean(),
        trace.split_r_hat(),
        trace.ess()
    );
    Ok(())
}
