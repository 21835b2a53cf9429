//! Rank-normalised split-R̂, bulk and tail ESS and the MCSE of the mean (Vehtari, Gelman, Simpson, Carpenter &
//! Bürkner 2021), computed as ArviZ's `rhat`, `ess` and `mcse` compute them.
//!
//! Input is one slice per chain, all of the same length. Every function returns `NaN` for fewer than 4 draws,
//! unequal chain lengths, non-finite values or constant draws.

/// Every chain cut into its first and last `⌊n/2⌋` draws (ArviZ drops the middle draw of odd lengths).
fn split<C: AsRef<[f64]>>(chains: &[C]) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(2 * chains.len());
    for c in chains {
        let c = c.as_ref();
        let half = c.len() / 2;
        out.push(c[..half].to_vec());
        out.push(c[c.len() - half..].to_vec());
    }
    out
}

/// True when the chains can be diagnosed: at least `min_draws` draws each, equal lengths, finite, not constant.
fn valid<C: AsRef<[f64]>>(chains: &[C], min_draws: usize) -> bool {
    let Some(first) = chains.first().map(|c| c.as_ref()) else { return false };
    if first.len() < min_draws || chains.iter().any(|c| c.as_ref().len() != first.len()) {
        return false;
    }
    let all = || chains.iter().flat_map(|c| c.as_ref().iter().copied());
    all().all(f64::is_finite) && all().any(|x| x != first[0])
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance with `ddof` degrees of freedom removed.
fn variance(xs: &[f64], ddof: f64) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() as f64 - ddof)
}

/// `Φ⁻¹(p)` by Acklam's rational approximation (relative error < 1.2·10⁻⁹; SciPy's `ndtri` is exact, so
/// diagnostics agree with ArviZ to about that precision).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail(p)
    } else if p > 1.0 - 0.02425 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Ranks of all draws pooled (1-based, ties averaged), mapped to normal scores `Φ⁻¹((r − 3/8)/(S + 1/4))`,
/// in the same chain layout.
pub fn rank_normalize<C: AsRef<[f64]>>(chains: &[C]) -> Vec<Vec<f64>> {
    let flat: Vec<f64> = chains.iter().flat_map(|c| c.as_ref().iter().copied()).collect();
    let s = flat.len();
    let mut order: Vec<usize> = (0..s).collect();
    order.sort_by(|&a, &b| flat[a].total_cmp(&flat[b]));
    let mut ranks = vec![0.0; s];
    let mut i = 0;
    while i < s {
        let mut j = i;
        while j + 1 < s && flat[order[j + 1]] == flat[order[i]] {
            j += 1;
        }
        let avg = 0.5 * ((i + 1) + (j + 1)) as f64;
        order[i..=j].iter().for_each(|&k| ranks[k] = avg);
        i = j + 1;
    }
    let z: Vec<f64> = ranks.iter().map(|r| normal_quantile((r - 0.375) / (s as f64 + 0.25))).collect();
    let mut out = Vec::with_capacity(chains.len());
    let mut offset = 0;
    for c in chains {
        let n = c.as_ref().len();
        out.push(z[offset..offset + n].to_vec());
        offset += n;
    }
    out
}

/// ArviZ's `_rhat`: `√((B/W + n − 1)/n)` with `B = n·var(chain means)`, `W = mean within-chain variance`.
fn r_hat_plain(chains: &[Vec<f64>]) -> f64 {
    let n = chains[0].len() as f64;
    let means: Vec<f64> = chains.iter().map(|c| mean(c)).collect();
    let b = n * variance(&means, 1.0);
    let w = mean(&chains.iter().map(|c| variance(c, 1.0)).collect::<Vec<_>>());
    ((b / w + n - 1.0) / n).sqrt()
}

/// Rank-normalised split-R̂: the larger of the bulk R̂ (rank-normalised split chains) and the tail R̂
/// (rank-normalised split chains of `|x − median|`). Values above 1.01 mean the chains have not mixed.
pub fn rank_normalized_split_r_hat<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    if !valid(chains, 4) {
        return f64::NAN;
    }
    let bulk = r_hat_plain(&rank_normalize(&split(chains)));
    let med = median(chains);
    let folded: Vec<Vec<f64>> = chains.iter().map(|c| c.as_ref().iter().map(|x| (x - med).abs()).collect()).collect();
    let tail = r_hat_plain(&rank_normalize(&split(&folded)));
    bulk.max(tail)
}

/// Median of all draws (mean of the middle two for even counts, as NumPy).
fn median<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    quantile(chains, 0.5)
}

/// NumPy's default (linear) quantile of all draws.
fn quantile<C: AsRef<[f64]>>(chains: &[C], q: f64) -> f64 {
    let mut all: Vec<f64> = chains.iter().flat_map(|c| c.as_ref().iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    let h = (all.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(all.len() - 1);
    all[lo] + (h - lo as f64) * (all[hi] - all[lo])
}

/// ArviZ's `_ess` on chains taken as they are: Geyer's initial positive then monotone sequence on the combined
/// autocorrelation `ρ̂_t = 1 − (W − mean_c γ̂_c(t))/V̂⁺`, `τ̂ ≥ 1/log₁₀(S)`, ESS `= S/τ̂`.
fn ess_plain(chains: &[Vec<f64>]) -> f64 {
    let m = chains.len() as f64;
    let n = chains[0].len();
    let nf = n as f64;
    let means: Vec<f64> = chains.iter().map(|c| mean(c)).collect();
    let acov = |t: usize| -> f64 {
        chains
            .iter()
            .zip(&means)
            .map(|(c, mu)| c[..n - t].iter().zip(&c[t..]).map(|(a, b)| (a - mu) * (b - mu)).sum::<f64>() / nf)
            .sum::<f64>()
            / m
    };
    let mean_var = acov(0) * nf / (nf - 1.0);
    let mut var_plus = mean_var * (nf - 1.0) / nf;
    if chains.len() > 1 {
        var_plus += variance(&means, 1.0);
    }
    let rho = |t: usize| 1.0 - (mean_var - acov(t)) / var_plus;
    let mut rho_hat = vec![0.0; n];
    let mut rho_even = 1.0;
    rho_hat[0] = rho_even;
    let mut rho_odd = rho(1);
    rho_hat[1] = rho_odd;
    // Geyer's initial positive sequence (indices as in ArviZ, which lets `max_t` reach −1).
    let mut t: usize = 1;
    while t + 3 < n && rho_even + rho_odd > 0.0 {
        rho_even = rho(t + 1);
        rho_odd = rho(t + 2);
        if rho_even + rho_odd >= 0.0 {
            rho_hat[t + 1] = rho_even;
            rho_hat[t + 2] = rho_odd;
        }
        t += 2;
    }
    let max_t = t as i64 - 2;
    let next = (max_t + 1) as usize;
    if rho_even > 0.0 {
        rho_hat[next] = rho_even;
    }
    // Geyer's initial monotone sequence.
    let mut t: usize = 1;
    while (t as i64) <= max_t - 2 {
        if rho_hat[t + 1] + rho_hat[t + 2] > rho_hat[t - 1] + rho_hat[t] {
            rho_hat[t + 1] = 0.5 * (rho_hat[t - 1] + rho_hat[t]);
            rho_hat[t + 2] = rho_hat[t + 1];
        }
        t += 2;
    }
    let total = m * nf;
    let tau = -1.0 + 2.0 * rho_hat[..next].iter().sum::<f64>() + rho_hat[next];
    total / tau.max(1.0 / total.log10())
}

/// Bulk ESS: the ESS of the rank-normalised split chains (how well the centre of the distribution is explored).
pub fn ess_bulk<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    if !valid(chains, 4) {
        return f64::NAN;
    }
    ess_plain(&rank_normalize(&split(chains)))
}

/// Tail ESS: the smaller ESS of the indicators `x ≤ q₀.₀₅` and `x ≤ q₀.₉₅` on split chains.
pub fn ess_tail<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    if !valid(chains, 4) {
        return f64::NAN;
    }
    let indicator_ess = |q: f64| {
        let cut = quantile(chains, q);
        let ind: Vec<Vec<f64>> =
            chains.iter().map(|c| c.as_ref().iter().map(|&x| if x <= cut { 1.0 } else { 0.0 }).collect()).collect();
        if !valid(&ind, 4) {
            return f64::NAN;
        }
        ess_plain(&split(&ind))
    };
    indicator_ess(0.05).min(indicator_ess(0.95))
}

/// ESS for the mean: the ESS of the split chains as they are (ArviZ's `method="mean"`).
pub fn ess_mean<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    if !valid(chains, 4) {
        return f64::NAN;
    }
    ess_plain(&split(chains))
}

/// Monte Carlo standard error of the mean: `sd/√ESS_mean` with `sd` over all draws (`ddof = 1`).
pub fn mcse_mean<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    if !valid(chains, 4) {
        return f64::NAN;
    }
    let all: Vec<f64> = chains.iter().flat_map(|c| c.as_ref().iter().copied()).collect();
    variance(&all, 1.0).sqrt() / ess_mean(chains).sqrt()
}
