//! Rank-normalised R̂, bulk/tail ESS and MCSE on series with known answers, against ArviZ reference values,
//! and the summary table and `.npy` export of a trace.

use fab_core::{Batch, stream_rng};
use fab_mcmc::{
    Sampler, ess_bulk, ess_mean, ess_tail, mcse_mean, normal_quantile, rank_normalize, rank_normalized_split_r_hat,
};
use rand::Rng;
use rand_distr::StandardNormal;

/// `n_chains` AR(1) series `xₜ = φ xₜ₋₁ + √(1−φ²) εₜ` (stationary variance 1), started from the stationary law.
fn ar1(n_chains: usize, n: usize, phi: f64, seed: u64) -> Vec<Vec<f64>> {
    (0..n_chains)
        .map(|c| {
            let mut rng = stream_rng(seed, c as u64);
            let mut x: f64 = rng.sample(StandardNormal);
            (0..n)
                .map(|_| {
                    x = phi * x + (1.0 - phi * phi).sqrt() * rng.sample::<f64, _>(StandardNormal);
                    x
                })
                .collect()
        })
        .collect()
}

#[test]
fn independent_draws_have_ess_near_their_number_and_r_hat_near_one() {
    let chains = ar1(4, 2000, 0.0, 1);
    let s = 8000.0;
    for (name, ess) in [("bulk", ess_bulk(&chains)), ("tail", ess_tail(&chains)), ("mean", ess_mean(&chains))] {
        assert!((0.8 * s..1.25 * s).contains(&ess), "{name} ESS {ess} for {s} independent draws");
    }
    assert!(rank_normalized_split_r_hat(&chains) < 1.005);
}

#[test]
fn ar1_draws_have_the_theoretical_ess_and_mcse() {
    // τ = (1 + φ)/(1 − φ) = 9 for φ = 0.8: ESS ≈ S/9, MCSE ≈ √(9/S).
    let chains = ar1(4, 5000, 0.8, 2);
    let s = 20_000.0;
    let ess = ess_mean(&chains);
    assert!((0.75 * s / 9.0..1.33 * s / 9.0).contains(&ess), "ESS {ess}, theory {}", s / 9.0);
    let mcse = mcse_mean(&chains);
    assert!((mcse / (9.0 / s).sqrt() - 1.0).abs() < 0.2, "MCSE {mcse}");
}

#[test]
fn chains_stuck_apart_have_a_large_r_hat_and_so_do_chains_of_different_spread() {
    let mut shifted = ar1(4, 1000, 0.5, 3);
    shifted[0].iter_mut().for_each(|x| *x += 2.0);
    assert!(rank_normalized_split_r_hat(&shifted) > 1.1);
    // Same location, one chain four times wider: the bulk R̂ misses it, the folded (tail) R̂ does not.
    let mut wide = ar1(4, 1000, 0.0, 4);
    wide[1].iter_mut().for_each(|x| *x *= 4.0);
    assert!(rank_normalized_split_r_hat(&wide) > 1.05, "{}", rank_normalized_split_r_hat(&wide));
}

#[test]
fn degenerate_inputs_give_nan() {
    assert!(ess_bulk(&[vec![1.0; 100], vec![1.0; 100]]).is_nan());
    assert!(rank_normalized_split_r_hat(&[vec![0.0, 1.0, 2.0]]).is_nan());
    assert!(ess_bulk(&[vec![0.0, 1.0, 2.0, 3.0, 4.0], vec![0.0, 1.0]]).is_nan());
    assert!(mcse_mean(&[vec![0.0, f64::NAN, 2.0, 3.0, 4.0]]).is_nan());
}

#[test]
fn normal_quantile_inverts_known_values_and_ranks_average_ties() {
    for (p, z) in
        [(0.5, 0.0), (0.975, 1.959_963_984_540_054), (0.001, -3.090_232_306_167_813_5), (0.9999, 3.719_016_485_455_68)]
    {
        assert!((normal_quantile(p) - z).abs() < 1e-8 * (1.0 + z.abs()), "Φ⁻¹({p}) = {}", normal_quantile(p));
    }
    // Values 3, 1, 1, 2: ranks 4, 1.5, 1.5, 3 → z = Φ⁻¹((r − 3/8)/(4 + 1/4)).
    let z = rank_normalize(&[vec![3.0, 1.0], vec![1.0, 2.0]]);
    let expect = |r: f64| normal_quantile((r - 0.375) / 4.25);
    assert_eq!(z, vec![vec![expect(4.0), expect(1.5)], vec![expect(1.5), expect(3.0)]]);
}

/// Deterministic test series both Rust and Python reproduce exactly: an AR(0.7) recursion driven by a
/// linear congruential generator on integers, 4 chains × 200 draws, chain `c` shifted by `0.1·c`.
fn reference_series() -> Vec<Vec<f64>> {
    (0..4u64)
        .map(|c| {
            let mut state: u64 = 12345 + c;
            let mut x = 0.0f64;
            (0..200)
                .map(|_| {
                    state = (state * 1_103_515_245 + 12345) % 2_147_483_648;
                    let u = state as f64 / 2_147_483_648.0;
                    x = 0.7 * x + (u - 0.5);
                    x + 0.1 * c as f64
                })
                .collect()
        })
        .collect()
}

#[test]
fn diagnostics_match_arviz_on_a_reference_series() {
    // Reference values from ArviZ 0.22 (`az.rhat(method="rank")`, `az.ess(method="bulk"|"tail"|"mean")`,
    // `az.mcse(method="mean")`) on the same series, computed in a one-off venv; see the crate README.
    let chains = reference_series();
    let checks = [
        ("r_hat", rank_normalized_split_r_hat(&chains), ARVIZ_R_HAT),
        ("ess_bulk", ess_bulk(&chains), ARVIZ_ESS_BULK),
        ("ess_tail", ess_tail(&chains), ARVIZ_ESS_TAIL),
        ("ess_mean", ess_mean(&chains), ARVIZ_ESS_MEAN),
        ("mcse_mean", mcse_mean(&chains), ARVIZ_MCSE_MEAN),
    ];
    for (name, ours, arviz) in checks {
        assert!((ours - arviz).abs() < 1e-6 * arviz.abs(), "{name}: ours {ours}, ArviZ {arviz}");
    }
}

// Printed by ArviZ 0.22.0 (NumPy/SciPy from pip, a throw-away venv) for `reference_series()` rebuilt in Python.
const ARVIZ_R_HAT: f64 = 1.102400849826547;
const ARVIZ_ESS_BULK: f64 = 37.23334311666192;
const ARVIZ_ESS_TAIL: f64 = 215.591306037724;
const ARVIZ_ESS_MEAN: f64 = 38.466863111706736;
const ARVIZ_MCSE_MEAN: f64 = 0.06744159927278269;

#[test]
fn a_trace_prints_an_arviz_style_summary_and_round_trips_through_npy() {
    struct Std2;
    impl fab_core::LogDensity for Std2 {
        fn dim(&self) -> usize {
            2
        }
        fn log_prob(&self, x: &[f64]) -> f64 {
            -0.5 * (x[0] * x[0] + x[1] * x[1])
        }
        fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
            (g[0], g[1]) = (-x[0], -x[1]);
            self.log_prob(x)
        }
    }
    let trace = Sampler::nuts(&Std2, Batch::zeros(4, 2), 1).unwrap().warmup(200).unwrap().sample(300).unwrap();
    let table = trace.summary().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]);
    assert!(lines[1].starts_with("x[0]") && lines[2].starts_with("x[1]"), "{table}");
    let row = trace.summary().rows[1];
    assert!((row.sd - 1.0).abs() < 0.1 && row.r_hat < 1.02 && row.ess_bulk > 300.0, "{row:?}");
    let path = std::env::temp_dir().join(format!("fab_mcmc_draws_{}.npy", std::process::id()));
    trace.write_npy(&path).unwrap();
    let back: ndarray::Array3<f64> = ndarray_npy::read_npy(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back.shape(), [4, 300, 2]);
    assert_eq!(back[[3, 299, 1]], trace.get(299, 3, 1));
    assert_eq!(back[[1, 17, 0]], trace.get(17, 1, 0));
    let bad = trace.write_npy("/nonexistent-dir/draws.npy").unwrap_err();
    assert!(bad.to_string().contains("/nonexistent-dir/draws.npy"), "{bad}");
}
