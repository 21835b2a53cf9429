//! Convergence diagnostics for long chains: split-R̂ and the autocorrelation-based effective sample size
//! (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021; Geyer's initial monotone sequence).

/// Splits every chain into its first and second half (dropping the middle draw of odd lengths).
fn split_halves<C: AsRef<[f64]>>(chains: &[C]) -> Vec<&[f64]> {
    let mut out = Vec::with_capacity(2 * chains.len());
    for c in chains {
        let c = c.as_ref();
        let half = c.len() / 2;
        out.push(&c[..half]);
        out.push(&c[c.len() - half..]);
    }
    out
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// `(W, B/n)`: mean within-chain variance and between-chain variance of the means, for equal-length chains.
fn within_between(chains: &[&[f64]]) -> (f64, f64) {
    let n = chains[0].len() as f64;
    let means: Vec<f64> = chains.iter().map(|c| mean(c)).collect();
    let w = chains
        .iter()
        .zip(&means)
        .map(|(c, m)| c.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0))
        .sum::<f64>()
        / chains.len() as f64;
    let b_over_n = if chains.len() > 1 {
        let mm = mean(&means);
        means.iter().map(|m| (m - mm) * (m - mm)).sum::<f64>() / (chains.len() as f64 - 1.0)
    } else {
        0.0
    };
    (w, b_over_n)
}

/// Split-R̂ of one scalar quantity: `√(V̂⁺/W)` over the half-chains, `V̂⁺ = (n−1)/n·W + B/n`.
/// Near 1 for mixed chains; chains stuck in different places give values well above 1.
/// `NaN` when the chains are shorter than 4 draws, of unequal length, or constant.
pub fn split_r_hat<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    let halves = split_halves(chains);
    if halves.is_empty() || halves[0].len() < 2 || halves.iter().any(|h| h.len() != halves[0].len()) {
        return f64::NAN;
    }
    let n = halves[0].len() as f64;
    let (w, b_over_n) = within_between(&halves);
    let var_plus = (n - 1.0) / n * w + b_over_n;
    (var_plus / w).sqrt()
}

/// Autocovariance at lag `t` with the `1/n` normalisation.
fn autocovariance(xs: &[f64], mean: f64, t: usize) -> f64 {
    let n = xs.len();
    xs[..n - t].iter().zip(&xs[t..]).map(|(a, b)| (a - mean) * (b - mean)).sum::<f64>() / n as f64
}

/// Effective sample size of one scalar quantity over several chains (split into halves), from the combined
/// autocorrelation `ρ̂_t = 1 − (W − mean_j γ̂_j(t))/V̂⁺` truncated by Geyer's initial monotone positive sequence.
/// Independent draws give about the number of draws; positively correlated draws give fewer.
/// `NaN` for the same degenerate inputs as [`split_r_hat`].
pub fn effective_sample_size<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    let halves = split_halves(chains);
    if halves.is_empty() || halves[0].len() < 4 || halves.iter().any(|h| h.len() != halves[0].len()) {
        return f64::NAN;
    }
    let n = halves[0].len();
    let m = halves.len() as f64;
    let means: Vec<f64> = halves.iter().map(|c| mean(c)).collect();
    let (w, b_over_n) = within_between(&halves);
    let var_plus = (n as f64 - 1.0) / n as f64 * w + b_over_n;
    if var_plus.is_nan() || var_plus <= 0.0 {
        return f64::NAN;
    }
    let rho = |t: usize| {
        let mean_acov = halves.iter().zip(&means).map(|(c, &mu)| autocovariance(c, mu, t)).sum::<f64>() / m;
        1.0 - (w - mean_acov) / var_plus
    };
    // Geyer: pair sums P_k = ρ_{2k} + ρ_{2k+1}, kept while positive and forced to be non-increasing.
    let mut tau = -1.0;
    let mut prev_pair = f64::INFINITY;
    let mut t = 0;
    while t + 1 < n {
        let pair = (rho(t) + rho(t + 1)).min(prev_pair);
        if pair <= 0.0 {
            break;
        }
        tau += 2.0 * pair;
        prev_pair = pair;
        t += 2;
    }
    let total = m * n as f64;
    // Antithetic chains can give τ < 1; cap as Stan does at total·log10(total).
    (total / tau).min(total * total.log10())
}
