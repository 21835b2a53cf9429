//! Sampling a user-written banana density (x₀ ~ N(0, 1), x₁ | x₀ ~ N(x₀², ½²)) with HMC and with MALA.

use fab_core::{Batch, LogDensity};
use fab_mcmc::{Hmc, Sampler};

struct Banana;
impl LogDensity for Banana {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0; 2])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let b = x[1] - x[0] * x[0];
        (g[0], g[1]) = (-x[0] + 8.0 * x[0] * b, -4.0 * b);
        -0.5 * x[0] * x[0] - 2.0 * b * b
    }
}

fn main() -> Result<(), fab_mcmc::McmcError> {
    for (name, kernel) in [("HMC", Hmc::new(10).with_step_size_jitter(0.5)), ("MALA", Hmc::mala())] {
        let trace = Sampler::new(&Banana, kernel, Batch::zeros(8, 2), 7)?.warmup(500)?.sample(2000)?;
        println!(
            "{name}: mean {:?} (0, 1), acceptance {:.2}, R-hat {:?}, ESS {:?}",
            trace.mean(),
            trace.acceptance_rate(),
            trace.split_r_hat(),
            trace.ess()
        );
    }
    Ok(())
}
