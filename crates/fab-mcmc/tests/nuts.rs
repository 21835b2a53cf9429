//! NUTS: moments within CLT bounds, a KS test on a bimodal target against exact draws, detailed balance on a
//! grid, invariance, divergences, tree depth, dense metric, warm-up windows and thread determinism.

mod common;

use common::*;
use fab_core::{Batch, LogDensity};
use fab_mcmc::{
    ChainState, InverseMetric, Kernel, LinearLogDensity, MetricForm, Nuts, Sampler, WarmupSchedule, Welford, ess_bulk,
    mcse_mean, rank_normalized_split_r_hat,
};

/// `0.5·N(−1.5, 1) + 0.5·N(1.5, 1)`: bimodal, yet chains cross between the modes.
fn bimodal() -> Mixture1d {
    Mixture1d { weights: vec![0.5, 0.5], means: vec![-1.5, 1.5], stds: vec![1.0, 1.0] }
}

/// Starting points spread over `[−3, 3]`.
fn spread_init(n_chains: usize, dim: usize) -> Batch {
    let v: Vec<f64> = (0..n_chains * dim).map(|i| ((i * 37 % 61) as f64 / 60.0 - 0.5) * 6.0).collect();
    Batch::from_vec(v, dim).unwrap()
}

#[test]
fn means_and_variances_of_a_shifted_scaled_gaussian_lie_within_clt_bounds() {
    let target = DiagGauss { mean: vec![1.0, -2.0, 0.5], std: vec![1.0, 3.0, 0.3] };
    let trace = Sampler::nuts(&target, spread_init(8, 3), 5).unwrap().warmup(500).unwrap().sample(1500).unwrap();
    assert_eq!(trace.n_divergent, 0);
    for d in 0..3 {
        let chains = trace.all_series(d);
        let (mu, sd) = (target.mean[d], target.std[d]);
        let mean = trace.mean()[d];
        let mcse = mcse_mean(&chains);
        assert!((mean - mu).abs() < 4.0 * mcse, "coordinate {d}: mean {mean}, true {mu}, MCSE {mcse}");
        // E[(x − μ)²] = σ²: the same CLT bound on the series of squared deviations.
        let sq: Vec<Vec<f64>> = chains.iter().map(|c| c.iter().map(|x| (x - mu) * (x - mu)).collect()).collect();
        let var = sq.iter().flatten().sum::<f64>() / (sq.len() * sq[0].len()) as f64;
        let mcse_var = mcse_mean(&sq);
        assert!((var - sd * sd).abs() < 4.0 * mcse_var, "coordinate {d}: var {var}, true {}, MCSE {mcse_var}", sd * sd);
        assert!(rank_normalized_split_r_hat(&chains) < 1.01);
        // NUTS on a Gaussian with an adapted metric is nearly independent: ESS ≥ 30 % of the draws.
        assert!(ess_bulk(&chains) > 0.3 * 8.0 * 1500.0, "coordinate {d}: ESS {}", ess_bulk(&chains));
    }
}

/// Two-sample Kolmogorov–Smirnov statistic.
fn ks_two_sample(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
fn thinned_draws_on_a_bimodal_target_pass_a_ks_test_against_exact_draws() {
    let target = bimodal();
    let (n_chains, thin) = (32, 10);
    let trace = Sampler::nuts(&target, spread_init(n_chains, 1), 9).unwrap().warmup(500).unwrap().sample(1000).unwrap();
    let chains = trace.all_series(0);
    let thinned: Vec<Vec<f64>> = chains.iter().map(|c| c.iter().step_by(thin).copied().collect()).collect();
    let draws: Vec<f64> = thinned.iter().flatten().copied().collect();
    // The KS bound assumes independent draws: thinning must have made them so (bulk ESS near the count).
    assert!(ess_bulk(&thinned) > 0.7 * draws.len() as f64, "thinned ESS {} of {}", ess_bulk(&thinned), draws.len());
    let exact: Vec<f64> = target.draws(draws.len(), 123).into_vec();
    let (n, m) = (draws.len() as f64, exact.len() as f64);
    let critical = 1.949 * ((n + m) / (n * m)).sqrt();
    let d = ks_two_sample(&draws, &exact);
    assert!(d < critical, "two-sample KS {d} ≥ {critical} (level 0.001)");
    // Both modes are visited by every chain.
    for (c, series) in chains.iter().enumerate() {
        let left = series.iter().filter(|x| **x < 0.0).count() as f64 / series.len() as f64;
        assert!((0.2..0.8).contains(&left), "chain {c} spends {left} of its time left of 0");
    }
}

/// One NUTS transition of `n` chains started from exact draws: `(before, after)`.
fn one_transition_from_exact(kernel: &Nuts, step_size: f64, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let target = bimodal();
    let dens = LinearLogDensity::single(&target);
    let start = target.draws(n, seed);
    let mut state = ChainState::init(&dens, start.clone(), true).unwrap();
    kernel.step(&dens, &mut state, step_size, seed + 1).unwrap();
    (start.into_vec(), state.positions().as_slice().to_vec())
}

#[test]
fn one_transition_from_exact_draws_leaves_the_bimodal_target_invariant() {
    let n = 20_000;
    let target = bimodal();
    for (step_size, depth) in [(0.9, 10), (0.3, 2)] {
        let (_, after) = one_transition_from_exact(&Nuts::new().with_max_depth(depth), step_size, n, 17);
        let d = ks_statistic(&after, |x| target.cdf(x));
        assert!(d < ks_critical_001(n), "ε = {step_size}, depth ≤ {depth}: KS {d}");
    }
}

#[test]
fn transitions_satisfy_detailed_balance_on_a_grid_of_quantile_cells() {
    // Under detailed balance, (x, x') with x ~ π is exchangeable: cell counts N_ij and N_ji have equal means.
    // Σ_{i<j} (N_ij − N_ji)²/(N_ij + N_ji) is then ≈ χ² with (one per pair of cells with counts) degrees of freedom.
    let target = bimodal();
    let n = 40_000;
    let (before, after) = one_transition_from_exact(&Nuts::new(), 1.2, n, 29);
    // Six cells of equal probability under π, by bisection on the exact CDF.
    let cuts: Vec<f64> = (1..6)
        .map(|k| {
            let (mut lo, mut hi) = (-10.0, 10.0);
            for _ in 0..100 {
                let mid = 0.5 * (lo + hi);
                if target.cdf(mid) < k as f64 / 6.0 { lo = mid } else { hi = mid }
            }
            lo
        })
        .collect();
    let cell = |x: f64| cuts.iter().filter(|c| x > **c).count();
    let mut counts = [[0u32; 6]; 6];
    for (a, b) in before.iter().zip(&after) {
        counts[cell(*a)][cell(*b)] += 1;
    }
    let pairs = (0..6).flat_map(|i| (i + 1..6).map(move |j| (i, j)));
    let exchanged: Vec<(f64, f64)> = pairs.map(|(i, j)| (counts[i][j] as f64, counts[j][i] as f64)).collect();
    let chi2: f64 = exchanged.iter().filter(|(a, b)| a + b > 0.0).map(|(a, b)| (a - b) * (a - b) / (a + b)).sum();
    let dof = exchanged.iter().filter(|(a, b)| a + b > 0.0).count();
    // 0.999 quantile of χ²₁₅ is 37.70; the chain must actually move between cells for the test to mean anything.
    assert_eq!(dof, 15, "every pair of cells exchanges draws: {counts:?}");
    let moved_between_cells: u32 =
        (0..6).flat_map(|i| (0..6).map(move |j| (i, j))).filter(|(i, j)| i != j).map(|(i, j)| counts[i][j]).sum();
    assert!(moved_between_cells as f64 > 0.3 * n as f64, "only {moved_between_cells} draws changed cell");
    assert!(chi2 < 37.70, "χ² = {chi2} on {dof} degrees of freedom: {counts:?}");
}

#[test]
fn a_step_size_far_too_large_diverges_and_the_chain_stays_put() {
    let target = DiagGauss { mean: vec![0.0; 2], std: vec![0.01, 0.01] };
    let dens = LinearLogDensity::single(&target);
    let mut state =
        ChainState::init(&dens, Batch::from_vec(vec![0.001, -0.002, 0.0, 0.003], 2).unwrap(), true).unwrap();
    let before = state.positions().clone();
    let (info, trees) = Nuts::new().transition(&dens, &mut state, 50.0, 3).unwrap();
    assert_eq!(info.n_divergent(), 2);
    assert!(trees.iter().all(|t| t.divergent && t.n_leapfrog == 1 && t.depth == 0), "{trees:?}");
    assert_eq!(state.positions(), &before, "a divergent first step leaves nothing to move to");
}

#[test]
fn trees_stop_at_the_maximum_depth_with_two_to_the_depth_minus_one_steps() {
    // A tiny step on a wide Gaussian never turns within 2³ − 1 steps.
    let target = DiagGauss::standard(3);
    let dens = LinearLogDensity::single(&target);
    let mut state = ChainState::init(&dens, spread_init(5, 3), true).unwrap();
    let (info, trees) = Nuts::new().with_max_depth(3).transition(&dens, &mut state, 1e-3, 4).unwrap();
    assert!(trees.iter().all(|t| t.depth == 3 && t.n_leapfrog == 7 && !t.divergent), "{trees:?}");
    assert_eq!(info.n_evaluated, 5 * 7);
    assert!(trees.iter().all(|t| t.accept_stat > 0.999), "tiny steps conserve energy: {trees:?}");
}

#[test]
fn the_generalised_u_turn_stops_a_standard_gaussian_trajectory_near_half_a_period() {
    // With ε = 0.1 on N(0, I), a trajectory turns after about π/ε ≈ 31 steps: depth 4 or 5, never the maximum.
    let target = DiagGauss::standard(4);
    let dens = LinearLogDensity::single(&target);
    let mut state = ChainState::init(&dens, spread_init(50, 4), true).unwrap();
    let (_, trees) = Nuts::new().transition(&dens, &mut state, 0.1, 8).unwrap();
    let mean_steps = trees.iter().map(|t| t.n_leapfrog as f64).sum::<f64>() / trees.len() as f64;
    assert!(
        trees.iter().all(|t| (3..=6).contains(&t.depth)),
        "{:?}",
        trees.iter().map(|t| t.depth).collect::<Vec<_>>()
    );
    assert!((10.0..64.0).contains(&mean_steps), "mean leapfrog steps {mean_steps}");
}

/// `N(0, Σ)`, `Σ = [[1, 0.95·2], [0.95·2, 4]]`.
struct Correlated2;

impl Correlated2 {
    const COV: [f64; 4] = [1.0, 1.9, 1.9, 4.0];
}

impl LogDensity for Correlated2 {
    fn dim(&self) -> usize {
        2
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.log_prob_and_grad(x, &mut [0.0; 2])
    }
    fn log_prob_and_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let [a, b, _, d] = Self::COV;
        let det = a * d - b * b;
        let p = [d / det, -b / det, a / det];
        g[0] = -(p[0] * x[0] + p[1] * x[1]);
        g[1] = -(p[1] * x[0] + p[2] * x[1]);
        0.5 * (g[0] * x[0] + g[1] * x[1])
    }
}

#[test]
fn a_dense_metric_adapts_to_the_covariance_of_a_correlated_gaussian() {
    let sampler = Sampler::new(&Correlated2, Nuts::new().with_dense_metric(2), spread_init(4, 2), 21).unwrap();
    let mut sampler = sampler.warmup(1000).unwrap();
    let Some(InverseMetric::Dense { matrix, .. }) = &sampler.kernel().inverse_metric else {
        panic!("the metric stays dense");
    };
    for (k, (m, c)) in matrix.iter().zip(Correlated2::COV).enumerate() {
        assert!((m - c).abs() < 0.25 * c.abs(), "entry {k}: adapted {m}, covariance {c}");
    }
    let trace = sampler.sample(1000).unwrap();
    for d in 0..2 {
        let chains = trace.all_series(d);
        assert!(rank_normalized_split_r_hat(&chains) < 1.01);
        assert!(trace.mean()[d].abs() < 4.0 * mcse_mean(&chains));
    }
    // A dense metric whitens the target: trajectories stay short.
    let mean_depth = trace.trees.iter().map(|t| t.depth as f64).sum::<f64>() / trace.trees.len() as f64;
    assert!(mean_depth < 3.0, "mean tree depth {mean_depth}");
}

#[test]
fn the_diagonal_metric_adapts_to_the_variances() {
    let target = DiagGauss { mean: vec![0.0; 3], std: vec![0.1, 1.0, 10.0] };
    let sampler = Sampler::nuts(&target, spread_init(4, 3), 2).unwrap().warmup(1000).unwrap();
    let Some(InverseMetric::Diagonal(v)) = &sampler.kernel().inverse_metric else { panic!("a diagonal metric") };
    for (d, (v, s)) in v.iter().zip(&target.std).enumerate() {
        assert!((v / (s * s) - 1.0).abs() < 0.3, "coordinate {d}: adapted variance {v}, true {}", s * s);
    }
}

#[test]
fn warmup_windows_follow_stans_schedule() {
    let s = WarmupSchedule::default();
    assert_eq!(s.windows(1000), vec![(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]);
    assert_eq!(s.windows(200), vec![(75, 100), (100, 150)]);
    // Too short for the buffers: 15 % / 75 % / 10 %.
    assert_eq!(s.windows(100), vec![(15, 90)]);
    assert!(s.windows(19).is_empty());
}

#[test]
fn welford_gives_stans_regularised_variance_and_covariance() {
    let xs = [[1.0, 2.0], [3.0, 1.0], [2.0, 6.0], [6.0, 3.0]];
    // By hand: means 3 and 3; deviations (−2,−1), (0,−2), (−1,3), (3,0); sums of products 14, 14 and −1.
    let (var0, var1, cov) = (14.0 / 3.0, 14.0 / 3.0, -1.0 / 3.0);
    let (w, shrink) = (4.0 / 9.0, 1e-3 * 5.0 / 9.0);
    let mut diag = Welford::new(2, MetricForm::Diagonal);
    let mut dense = Welford::new(2, MetricForm::Dense);
    for x in &xs {
        diag.add(x);
        dense.add(x);
    }
    let Some(InverseMetric::Diagonal(v)) = diag.regularised() else { panic!() };
    assert!((v[0] - (w * var0 + shrink)).abs() < 1e-12 && (v[1] - (w * var1 + shrink)).abs() < 1e-12, "{v:?}");
    let Some(InverseMetric::Dense { matrix: m, .. }) = dense.regularised() else { panic!() };
    let expect = [w * var0 + shrink, w * cov, w * cov, w * var1 + shrink];
    assert!(m.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-12), "{m:?} vs {expect:?}");
}

/// A full default run (warm-up included) in a pool of `threads`: positions' bits and tree statistics.
fn run_in_pool(threads: usize) -> (Vec<u64>, String, f64) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let target = bimodal();
        // 70 chains: more than one chunk of the chain state.
        let trace = Sampler::nuts(&target, spread_init(70, 1), 3).unwrap().warmup(150).unwrap().sample(50).unwrap();
        let bits = trace.to_batch().into_vec().iter().map(|x| x.to_bits()).collect();
        (bits, format!("{:?}", trace.trees), trace.step_size)
    })
}

#[test]
fn nuts_results_are_bitwise_identical_for_1_and_2_threads() {
    let one = run_in_pool(1);
    let two = run_in_pool(2);
    assert_eq!(one.0, two.0, "draws differ between 1 and 2 threads");
    assert_eq!(one.1, two.1, "tree statistics differ between 1 and 2 threads");
    assert_eq!(one.2.to_bits(), two.2.to_bits(), "adapted step sizes differ");
}

#[test]
fn nuts_on_a_linear_combination_caches_every_component_like_hmc() {
    // AIS-style target 0.5·log N(0,1) + 0.5·log N(0, 4): after a transition the cache matches fresh evaluations.
    let (p, q) = (DiagGauss::standard(2), DiagGauss { mean: vec![0.0; 2], std: vec![2.0, 2.0] });
    let dens = LinearLogDensity::new(vec![&p, &q], vec![0.5, 0.5]).unwrap();
    let mut state = ChainState::init(&dens, spread_init(6, 2), true).unwrap();
    for t in 0..5 {
        Nuts::new().step(&dens, &mut state, 0.5, t).unwrap();
    }
    for i in 0..6 {
        let x = state.positions().row(i);
        assert_eq!(state.log_f(0)[i], p.log_prob(x));
        assert_eq!(state.log_f(1)[i], q.log_prob(x));
        let mut g = [0.0; 2];
        q.log_prob_and_grad(x, &mut g);
        assert_eq!(state.grad_f(1).unwrap().row(i), &g);
    }
}

#[test]
fn invalid_settings_are_refused_with_the_field_named() {
    let target = DiagGauss::standard(2);
    let dens = LinearLogDensity::single(&target);
    let mut state = ChainState::init(&dens, spread_init(2, 2), true).unwrap();
    let field = |e: fab_mcmc::McmcError| match e {
        fab_mcmc::McmcError::InvalidParameter { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(Nuts::new().with_max_depth(0).step(&dens, &mut state, 0.1, 0).unwrap_err()), "max_depth");
    let wrong_dim = Nuts::new().with_inverse_metric(InverseMetric::Diagonal(vec![1.0; 3]));
    assert_eq!(field(wrong_dim.step(&dens, &mut state, 0.1, 0).unwrap_err()), "inverse_metric");
    let not_pd = Nuts::new().with_inverse_metric(InverseMetric::Dense { dim: 2, matrix: vec![1.0, 2.0, 2.0, 1.0] });
    assert_eq!(field(not_pd.step(&dens, &mut state, 0.1, 0).unwrap_err()), "inverse_metric");
    assert_eq!(field(Nuts::new().step(&dens, &mut state, f64::NAN, 0).unwrap_err()), "step_size");
}
