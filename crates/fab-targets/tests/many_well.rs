//! Many Well: `Z₁` by quadrature, the rejection sampler's envelope and distribution (moments, `P(x < 0)`,
//! Kolmogorov–Smirnov), `E_p[log p]`, and the 2021 / ICLR mode test sets.

mod common;

use common::{N_SIGMA, assert_abs, assert_rel};
use fab_core::{ExactSampler, LogDensity, stream_rng};
use fab_targets::quadrature::{adaptive_simpson, simpson};
use fab_targets::{
    DOUBLE_WELL_Z, LN_2PI, MODE_CENTRE, ManyWell, Target, double_well_log_density, double_well_raw_moment,
    log_envelope_ratio,
};

/// `Z₁` as SPEC gives it from numerical integration (the code's hard-coded value is 11784.50927).
const Z1_NUMERIC: f64 = 11784.509265;

#[test]
fn double_well_normaliser_by_quadrature_matches_spec() {
    let p_tilde = |x: f64| (-x.powi(4) + 6.0 * x * x + 0.5 * x).exp();
    let composite = simpson(p_tilde, -6.0, 6.0, 24_000);
    let adaptive = adaptive_simpson(&p_tilde, -6.0, 6.0, 1e-9, 40);
    assert_rel(composite, Z1_NUMERIC, 1e-8, "composite Simpson Z₁");
    assert_rel(adaptive, Z1_NUMERIC, 1e-8, "adaptive Simpson Z₁");
    assert_rel(double_well_raw_moment(0), Z1_NUMERIC, 1e-8, "library quadrature Z₁");
    assert_rel(DOUBLE_WELL_Z, Z1_NUMERIC, 1e-9, "hard-coded Z₁");
    // The library's density is the same function.
    for x in [-2.0, -0.3, 0.0, 1.1, 2.5] {
        assert_rel(double_well_log_density(x).exp(), p_tilde(x), 1e-14, "p̃");
    }
}

/// The rejection sampler is exact only if `p̃ ≤ k q` everywhere. On `[−10, 10]` we check it on a grid of
/// step 1e-4 (the ratio's slope is bounded there, so the grid cannot miss a crossing given the margin);
/// outside, `ln p̃ − ln q = −x⁴ + O(x²)`, and we check that the log ratio decreases outward from |x| = 4.
#[test]
fn rejection_envelope_bounds_the_double_well_density() {
    let grid = (-100_000..=100_000).map(|i| i as f64 * 1e-4);
    let max_log_ratio = grid.map(log_envelope_ratio).fold(f64::NEG_INFINITY, f64::max);
    // sup p̃/(Z₁ q) ≈ 2.5912 < k/Z₁ = 3, so the log ratio peaks at ln(2.5912/3) ≈ −0.146.
    assert!(max_log_ratio < -0.1, "envelope too tight or violated: max ln(p̃/kq) = {max_log_ratio}");
    assert!(max_log_ratio > -0.2, "envelope much looser than expected: max ln(p̃/kq) = {max_log_ratio}");
    for sign in [-1.0, 1.0] {
        let mut previous = log_envelope_ratio(sign * 4.0);
        for i in 1..=1000 {
            let current = log_envelope_ratio(sign * (4.0 + 0.1 * i as f64));
            assert!(current < previous, "log ratio not decreasing at x = {}", sign * (4.0 + 0.1 * i as f64));
            previous = current;
        }
    }
}

/// Draws `n` double-well coordinates through the public `ExactSampler` of the 2-D Double Well.
fn sampled_double_well_coordinate(n: usize, seed: u64) -> Vec<f64> {
    let xs = ManyWell::double_well().sample_exact(&mut stream_rng(seed, 0), n);
    xs.rows().map(|row| row[0]).collect()
}

/// The CDF of `p ∝ exp(log_density)` on `[−6, 6]` by cumulative trapezoids on a grid of step 1e-4
/// (error O(h²) ≈ 1e-8, far below the KS resolution), interpolated linearly.
struct GridCdf {
    cdf: Vec<f64>,
}

const CDF_LO: f64 = -6.0;
const CDF_STEP: f64 = 1e-4;

impl GridCdf {
    fn new(log_density: impl Fn(f64) -> f64) -> Self {
        let n = ((-2.0 * CDF_LO) / CDF_STEP).round() as usize;
        let density: Vec<f64> = (0..=n).map(|i| log_density(CDF_LO + i as f64 * CDF_STEP).exp()).collect();
        let mut cdf = vec![0.0; n + 1];
        for i in 1..=n {
            cdf[i] = cdf[i - 1] + 0.5 * CDF_STEP * (density[i - 1] + density[i]);
        }
        let total = cdf[n];
        cdf.iter_mut().for_each(|c| *c /= total);
        Self { cdf }
    }

    fn at(&self, x: f64) -> f64 {
        let t = (x - CDF_LO) / CDF_STEP;
        if t <= 0.0 {
            return 0.0;
        }
        let i = t.floor() as usize;
        if i + 1 >= self.cdf.len() {
            return 1.0;
        }
        let frac = t - i as f64;
        self.cdf[i] * (1.0 - frac) + self.cdf[i + 1] * frac
    }
}

/// The two-sided Kolmogorov–Smirnov statistic `sup |F_n − F|` of `samples` against `cdf`.
fn ks_statistic(samples: &[f64], cdf: &GridCdf) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf.at(x);
            ((i as f64 + 1.0) / n - f).max(f - i as f64 / n)
        })
        .fold(0.0, f64::max)
}

#[test]
fn double_well_sampler_passes_kolmogorov_smirnov_against_the_quadrature_cdf() {
    let n = 20_000;
    let samples = sampled_double_well_coordinate(n, 21);
    let critical_1pc = 1.63 / (n as f64).sqrt();
    let statistic = ks_statistic(&samples, &GridCdf::new(double_well_log_density));
    assert!(statistic < critical_1pc, "KS statistic {statistic} ≥ 1 % critical value {critical_1pc}");
    // The test has power: the same samples against the symmetric well (a = 0) fail clearly.
    let symmetric = GridCdf::new(|x: f64| -x.powi(4) + 6.0 * x * x);
    let statistic_wrong = ks_statistic(&samples, &symmetric);
    assert!(statistic_wrong > 5.0 * critical_1pc, "KS cannot tell a = 0 from a = −0.5: {statistic_wrong}");
}

#[test]
fn double_well_sampler_left_well_mass_and_moments_match_quadrature() {
    let left_mass = simpson(|x| double_well_log_density(x).exp(), -6.0, 0.0, 12_000) / double_well_raw_moment(0);
    assert_abs(left_mass, 0.1557, 5e-5, "P(x < 0) by quadrature vs SPEC");
    let n = 100_000;
    let samples = sampled_double_well_coordinate(n, 22);
    let frac_left = samples.iter().filter(|&&x| x < 0.0).count() as f64 / n as f64;
    let bound = N_SIGMA * (left_mass * (1.0 - left_mass) / n as f64).sqrt();
    assert_abs(frac_left, left_mass, bound, "sampled P(x < 0)");
    // Mean and second moment against quadrature, with CLT bounds from the quadrature's own higher moments.
    let z = double_well_raw_moment(0);
    let (m1, m2, m4) = (double_well_raw_moment(1) / z, double_well_raw_moment(2) / z, double_well_raw_moment(4) / z);
    let sample_m1 = samples.iter().sum::<f64>() / n as f64;
    let sample_m2 = samples.iter().map(|x| x * x).sum::<f64>() / n as f64;
    assert_abs(sample_m1, m1, N_SIGMA * ((m2 - m1 * m1) / n as f64).sqrt(), "sampled E[x]");
    assert_abs(sample_m2, m2, N_SIGMA * ((m4 - m2 * m2) / n as f64).sqrt(), "sampled E[x²]");
}

/// `E_p[log p]` per pair = `∫ p₁ ln p₁` (double well, by quadrature) + `−½(1 + ln 2π)` (Gaussian); SPEC: −1.718576.
#[test]
fn expected_log_density_per_pair_matches_spec() {
    let log_z1 = double_well_raw_moment(0).ln();
    let neg_entropy_well = simpson(
        |x| (double_well_log_density(x) - log_z1) * (double_well_log_density(x) - log_z1).exp(),
        -6.0,
        6.0,
        24_000,
    );
    let per_pair = neg_entropy_well - 0.5 * (1.0 + LN_2PI);
    assert_abs(per_pair, -1.718576, 5e-7, "E_p log p per pair");
    // And by Monte Carlo with the target's own normalised density on D = 32 (SPEC: −27.4972).
    let mw = ManyWell::new(32).unwrap();
    let n = 20_000;
    let xs = mw.sample_exact(&mut stream_rng(23, 0), n);
    let log_p: Vec<f64> = xs.rows().map(|x| mw.log_prob(x) - mw.log_z().unwrap()).collect();
    let (mean, var) = common::mean_var(&log_p);
    assert_abs(mean, 16.0 * per_pair, N_SIGMA * (var / n as f64).sqrt(), "MC E_p log p, D=32");
}

fn assert_is_mode(row: &[f64]) {
    for pair in row.chunks_exact(2) {
        assert!(pair[0].abs() == MODE_CENTRE && pair[1] == 0.0, "not a mode: {row:?}");
    }
}

#[test]
fn iclr_mode_test_set_lists_every_mode_once() {
    let mw = ManyWell::new(16).unwrap();
    let modes = mw.mode_test_set_iclr();
    assert_eq!((modes.n_rows(), modes.dim()), (256, 16));
    modes.rows().for_each(assert_is_mode);
    let mut keys: Vec<u32> =
        modes.rows().map(|r| r.chunks_exact(2).fold(0, |acc, p| 2 * acc + u32::from(p[0] > 0.0))).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 256, "modes repeat");
    // meshgrid order: all −1.7 first, all +1.7 last.
    assert!(modes.row(0).chunks_exact(2).all(|p| p[0] == -MODE_CENTRE));
    assert!(modes.row(255).chunks_exact(2).all(|p| p[0] == MODE_CENTRE));
}

#[test]
fn iclr_mode_test_set_in_high_dimension_is_a_fixed_random_subset() {
    let mw = ManyWell::new(40).unwrap();
    let modes = mw.mode_test_set_iclr();
    assert_eq!((modes.n_rows(), modes.dim()), (10_000, 40));
    modes.rows().for_each(assert_is_mode);
    assert_eq!(modes, mw.mode_test_set_iclr(), "the subset must be reproducible");
    let n_positive = modes.rows().flat_map(|r| r.chunks_exact(2).map(|p| p[0] > 0.0)).filter(|&p| p).count();
    let n_wells = 10_000.0 * 20.0;
    assert_abs(n_positive as f64 / n_wells, 0.5, N_SIGMA * (0.25 / n_wells).sqrt(), "fraction of +1.7 wells");
}

#[test]
fn noisy_2021_mode_test_set_has_fresh_noise_of_std_0_2() {
    let mw = ManyWell::new(16).unwrap();
    let mut rng = stream_rng(24, 0);
    let first = mw.mode_test_set_2021(&mut rng);
    let second = mw.mode_test_set_2021(&mut rng);
    assert_eq!((first.n_rows(), first.dim()), (256, 16));
    assert_ne!(first, second, "noise is re-drawn on every call");
    let modes = mw.mode_test_set_iclr();
    let noise: Vec<f64> = first.as_slice().iter().zip(modes.as_slice()).map(|(x, m)| x - m).collect();
    let (mean, var) = common::mean_var(&noise);
    let n = noise.len() as f64;
    assert_abs(mean, 0.0, N_SIGMA * 0.2 / n.sqrt(), "noise mean");
    // Var(s²) = 2σ⁴/n for Gaussian noise.
    assert_abs(var, 0.04, N_SIGMA * (2.0 * 0.04f64.powi(2) / n).sqrt(), "noise variance");
    let high_dim = ManyWell::new(40).unwrap().mode_test_set_2021(&mut rng);
    assert_eq!((high_dim.n_rows(), high_dim.dim()), (1_000, 40));
}

/// SPEC: the best achievable mean normalised log p on the noisy 2021 set (D = 16) is ≈ −14.27. Its exact value is
/// `8 · (½ Σ_± E_z[ln p̃₁(±1.7 + 0.2z)] − ½·0.04 − ln Z_pair)`, by quadrature over `z`; the sets' mean log p
/// must agree with it within the CLT bound.
#[test]
fn noisy_2021_mode_test_set_mean_log_density_matches_spec() {
    let gaussian_expectation = |centre: f64| {
        simpson(|z| double_well_log_density(centre + 0.2 * z) * (-0.5 * z * z - 0.5 * LN_2PI).exp(), -10.0, 10.0, 4000)
    };
    let mw = ManyWell::new(16).unwrap();
    let log_z_pair = ManyWell::double_well().log_z().unwrap();
    let per_pair = 0.5 * (gaussian_expectation(MODE_CENTRE) + gaussian_expectation(-MODE_CENTRE)) - 0.02 - log_z_pair;
    let exact = 8.0 * per_pair;
    assert_abs(exact, -14.27, 5e-3, "expected mean log p on the noisy modes vs SPEC");
    let mut rng = stream_rng(25, 0);
    let mut log_p_all = Vec::new();
    for _ in 0..40 {
        let set = mw.mode_test_set_2021(&mut rng);
        let mut log_p = vec![0.0; set.n_rows()];
        mw.log_prob_batch(set.view(), &mut log_p);
        log_p_all.extend(log_p.iter().map(|lp| lp - mw.log_z().unwrap()));
    }
    let (mean, var) = common::mean_var(&log_p_all);
    assert_abs(mean, exact, N_SIGMA * (var / log_p_all.len() as f64).sqrt(), "sampled mean log p on the noisy modes");
}
