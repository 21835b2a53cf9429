//! HMC, MALA and random-walk Metropolis: integrator accuracy, invariance, NaN safety, evaluation counts, determinism.

mod common;

use common::*;
use fab_core::gradcheck::{assert_batch_agrees, check_density_gradient};
use fab_core::{Batch, Counted, LogDensity, stream_rng, sub_seed};
use fab_mcmc::{
    ChainState, Hmc, Kernel, LinearLogDensity, PhaseBatch, RandomWalkMetropolis, Sampler, StepInfo, StepSizes,
};

#[test]
fn test_densities_have_correct_gradients() {
    let mut rng = stream_rng(1, 0);
    let gauss = DiagGauss { mean: vec![0.3, -1.0, 2.0], std: vec![0.5, 1.0, 2.0] };
    let mix = Mixture1d::two_modes();
    for x in [[0.1, 0.2, -0.3], [1.0, -2.0, 0.5]] {
        check_density_gradient(&gauss, &x, 4, 1e-4, &mut rng).assert_below(1e-7, "DiagGauss");
        check_density_gradient(&Banana, &x[..2], 4, 1e-4, &mut rng).assert_below(1e-7, "Banana");
        check_density_gradient(&mix, &x[..1], 2, 1e-4, &mut rng).assert_below(1e-7, "Mixture1d");
    }
    assert_batch_agrees(&Banana, Banana::draws(5, 2).view());
}

/// ΔH at the end of a trajectory of fixed length `t_end`, for each start point.
fn energy_errors(
    target: &LinearLogDensity<'_>,
    x: &Batch,
    p: &Batch,
    eps: f64,
    t_end: f64,
    inv_mass: &[f64],
) -> Vec<f64> {
    let mut phase = PhaseBatch::new(target, x, p, None).unwrap();
    let h0: Vec<f64> = (0..phase.len()).map(|i| phase.hamiltonian(i, inv_mass)).collect();
    phase.leapfrog(target, eps, (t_end / eps).round() as usize, inv_mass);
    (0..phase.len()).map(|i| phase.hamiltonian(i, inv_mass) - h0[i]).collect()
}

#[test]
fn leapfrog_energy_error_shrinks_as_step_size_squared() {
    // Harmonic oscillator (standard normal): leapfrog conserves a modified energy H + O(ε²), so the energy
    // error at a fixed time halves twice when ε halves.
    let gauss = DiagGauss::standard(1);
    let target = LinearLogDensity::single(&gauss);
    // Mean |ΔH| over many random starts, so no start with a vanishing error dominates the ratio.
    let x = DiagGauss::standard(1).draws(200, 1);
    let p = DiagGauss::standard(1).draws(200, 2);
    // And an anisotropic 2-D oscillator with a non-identity mass.
    let aniso = DiagGauss { mean: vec![0.0, 1.0], std: vec![1.0, 3.0] };
    let target2 = LinearLogDensity::single(&aniso);
    let x2 = aniso.draws(200, 3);
    let p2 = DiagGauss { mean: vec![0.0; 2], std: vec![1.0, 0.5] }.draws(200, 4);
    let inv_mass2 = [1.0, 4.0];
    let mean_abs = |v: Vec<f64>| v.iter().map(|e| e.abs()).sum::<f64>() / v.len() as f64;
    for eps in [0.1, 0.05] {
        let coarse = mean_abs(energy_errors(&target, &x, &p, eps, 1.0, &[1.0]));
        let fine = mean_abs(energy_errors(&target, &x, &p, eps / 2.0, 1.0, &[1.0]));
        let coarse2 = mean_abs(energy_errors(&target2, &x2, &p2, eps, 1.0, &inv_mass2));
        let fine2 = mean_abs(energy_errors(&target2, &x2, &p2, eps / 2.0, 1.0, &inv_mass2));
        for (c, f) in [(coarse, fine), (coarse2, fine2)] {
            let ratio = c / f;
            assert!((3.7..4.3).contains(&ratio), "ε = {eps}: mean |ΔH| ratio {ratio} ({c} vs {f}), expected ≈ 4");
            assert!(c < eps * eps, "ε = {eps}: mean |ΔH| {c} is not O(ε²)");
        }
    }
}

#[test]
fn leapfrog_is_reversible() {
    let target = LinearLogDensity::single(&Banana);
    let x = Banana::draws(6, 3);
    let p = DiagGauss::standard(2).draws(6, 4);
    let inv_mass = [1.0, 0.5];
    let mut phase = PhaseBatch::new(&target, &x, &p, None).unwrap();
    phase.leapfrog(&target, 0.02, 50, &inv_mass);
    let moved = (0..6).map(|i| (phase.position(i)[0] - x.row(i)[0]).abs()).fold(0.0, f64::max);
    assert!(moved > 0.1, "the trajectory should go somewhere (moved {moved})");
    phase.negate_momentum();
    phase.leapfrog(&target, 0.02, 50, &inv_mass);
    for i in 0..6 {
        for d in 0..2 {
            assert!((phase.position(i)[d] - x.row(i)[d]).abs() < 1e-9, "position {i},{d} not restored");
            assert!((phase.momentum(i)[d] + p.row(i)[d]).abs() < 1e-9, "momentum {i},{d} not negated back");
        }
    }
    assert_eq!(phase.n_evaluated(), 6 * 101, "one evaluation per point per step, plus the initial one");
}

#[test]
fn hmc_recovers_mean_and_covariance_of_an_anisotropic_gaussian() {
    let dim = 10;
    let target = DiagGauss {
        mean: (0..dim).map(|d| d as f64 / 5.0 - 1.0).collect(),
        std: (0..dim).map(|d| 0.5 * 1.2f64.powi(d as i32)).collect(),
    };
    let n = 2000;
    let init = DiagGauss::standard(dim).draws(n, 5);
    let mut sampler =
        Sampler::new(&target, Hmc::new(10).with_step_size_jitter(0.5), init, 11).unwrap().warmup(150).unwrap();
    let trace = sampler.sample(50).unwrap();
    assert!(trace.split_r_hat().iter().all(|r| *r < 1.1), "R̂ {:?}", trace.split_r_hat());
    // Chains are independent, so their final positions are (approximately exact) iid draws: CLT bounds apply.
    let last = sampler.state().positions();
    let n_f = n as f64;
    for d in 0..dim {
        let xs: Vec<f64> = last.rows().map(|r| r[d]).collect();
        let mean = xs.iter().sum::<f64>() / n_f;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n_f - 1.0);
        let (mu, s) = (target.mean[d], target.std[d]);
        assert!((mean - mu).abs() < 4.0 * s / n_f.sqrt(), "dim {d}: mean {mean} vs {mu}");
        assert!((var - s * s).abs() < 4.0 * s * s * (2.0 / n_f).sqrt(), "dim {d}: variance {var} vs {}", s * s);
        for e in 0..d {
            let ys: Vec<f64> = last.rows().map(|r| r[e]).collect();
            let my = ys.iter().sum::<f64>() / n_f;
            let cov = xs.iter().zip(&ys).map(|(x, y)| (x - mean) * (y - my)).sum::<f64>() / (n_f - 1.0);
            let corr = cov / (s * target.std[e]);
            assert!(corr.abs() < 4.0 / n_f.sqrt(), "dims {d},{e}: correlation {corr} should be 0");
        }
    }
}

fn one_transition_from_exact_samples(kernel: &dyn Kernel, step_size: f64, seed: u64) -> (Vec<f64>, StepInfo) {
    let mix = Mixture1d::two_modes();
    let target = LinearLogDensity::single(&mix);
    let x = mix.draws(4000, seed);
    let mut state = ChainState::init(&target, x, kernel.uses_gradient()).unwrap();
    let info = kernel.step(&target, &mut state, step_size, sub_seed(seed, &[1])).unwrap();
    (state.positions().as_slice().to_vec(), info)
}

#[test]
fn one_transition_from_exact_samples_keeps_the_distribution() {
    let mix = Mixture1d::two_modes();
    let hmc = Hmc::new(5);
    let mala = Hmc::mala();
    let cases: [(&str, &dyn Kernel, f64); 3] =
        [("HMC", &hmc, 0.6), ("MALA", &mala, 1.2), ("RWM", &RandomWalkMetropolis, 2.0)];
    for (name, kernel, eps) in cases {
        let (xs, info) = one_transition_from_exact_samples(kernel, eps, 21);
        let rate = info.acceptance_rate();
        assert!((0.3..0.97).contains(&rate), "{name}: acceptance {rate} — the test needs real moves");
        let d = ks_statistic(&xs, |x| mix.cdf(x));
        assert!(d < ks_critical_001(xs.len()), "{name}: KS statistic {d} after one transition");
    }
    // The KS test has power here: the same moves accepted without the Metropolis correction break the law.
    let (xs, _) = one_transition_from_exact_samples(&RandomWalkMetropolis, 2.0, 21);
    let mut uncorrected = mix.draws(4000, 21);
    let mut rng = stream_rng(99, 0);
    for x in uncorrected.as_mut_slice() {
        *x += 2.0 * rand::Rng::sample::<f64, _>(&mut rng, rand_distr::StandardNormal);
    }
    assert!(ks_statistic(uncorrected.as_slice(), |x| mix.cdf(x)) > 3.0 * ks_critical_001(4000));
    assert!(ks_statistic(&xs, |x| mix.cdf(x)) < ks_critical_001(4000));
}

#[test]
fn acceptance_tends_to_one_as_step_size_shrinks() {
    let target = LinearLogDensity::single(&Banana);
    let mut previous = 0.0;
    for eps in [0.4, 0.1, 0.025, 0.00625] {
        let mut state = ChainState::init(&target, Banana::draws(500, 8), true).unwrap();
        let info = Hmc::new(5).step(&target, &mut state, eps, 3).unwrap();
        let a = info.mean_accept_prob();
        assert!(a > previous, "ε = {eps}: acceptance {a} did not increase (previous {previous})");
        previous = a;
    }
    assert!(previous > 0.9999, "acceptance at ε = 0.00625 is {previous}");
}

#[test]
fn chains_never_enter_a_region_where_the_density_is_nan_or_minus_infinity() {
    for bad in [f64::NAN, f64::NEG_INFINITY] {
        let hole = Holed { limit: 0.5, bad };
        let target = LinearLogDensity::single(&hole);
        let mut init = Batch::zeros(300, 2);
        init.as_mut_slice().chunks_exact_mut(2).for_each(|r| r[0] = -0.5);
        let hmc = Hmc::new(5);
        let clamped = Hmc::new(5).with_grad_clamp(1e3);
        let kernels: [(&dyn Kernel, f64); 3] = [(&hmc, 0.5), (&clamped, 0.5), (&RandomWalkMetropolis, 1.0)];
        for (kernel, eps) in kernels {
            let mut state = ChainState::init(&target, init.clone(), kernel.uses_gradient()).unwrap();
            let mut n_divergent = 0;
            for t in 0..30 {
                let info = kernel.step(&target, &mut state, eps, sub_seed(5, &[t])).unwrap();
                n_divergent += info.n_divergent();
                assert!(state.positions().rows().all(|r| r[0] <= 0.5), "a chain entered the hole");
                assert!((0..300).all(|i| state.is_valid(i)), "a non-finite value entered the cache");
            }
            assert!(n_divergent > 100, "proposals into the hole must be counted as divergences ({n_divergent})");
        }
    }
}

#[test]
fn no_point_is_evaluated_twice() {
    let counted = Counted::new(DiagGauss::standard(3));
    let target = LinearLogDensity::single(&counted);
    let (n, l, steps) = (100u64, 7u64, 5u64);
    let mut state = ChainState::init(&target, DiagGauss::standard(3).draws(n as usize, 1), true).unwrap();
    let mut evaluated = n;
    for t in 0..steps {
        let info = Hmc::new(l as usize).step(&target, &mut state, 0.3, t).unwrap();
        assert_eq!(info.n_divergent(), 0);
        evaluated += info.n_evaluated;
    }
    let c = counted.counts();
    assert_eq!(c.n_log_prob_and_grad, n * (1 + steps * l), "one evaluation per leapfrog step and chain");
    assert_eq!(c.n_log_prob_and_grad, evaluated, "reported evaluations match the counter");
    assert_eq!(c.n_log_prob, 0);

    // Metropolis on a gradient-free state evaluates without gradients, once per proposal.
    let counted = Counted::new(DiagGauss::standard(3));
    let target = LinearLogDensity::single(&counted);
    let mut state = ChainState::init(&target, DiagGauss::standard(3).draws(n as usize, 1), false).unwrap();
    for t in 0..steps {
        RandomWalkMetropolis.step(&target, &mut state, 0.5, t).unwrap();
    }
    assert_eq!(counted.counts().n_log_prob, n * (1 + steps));
    assert_eq!(counted.counts().n_log_prob_and_grad, 0);
}

#[test]
fn changing_coefficients_needs_no_evaluation_and_matches_direct_evaluation() {
    let q = Counted::new(DiagGauss::standard(2));
    let p = Counted::new(DiagGauss { mean: vec![1.0, -1.0], std: vec![0.7, 1.3] });
    let mut target = LinearLogDensity::new(vec![&q, &p], vec![1.0, 0.0]).unwrap();
    let mut state = ChainState::init(&target, Banana::draws(50, 1), true).unwrap();
    Hmc::new(3).step(&target, &mut state, 0.4, 9).unwrap();
    let before = (q.counts(), p.counts());
    target.set_coefficients(&[-0.6, 1.6]).unwrap();
    for i in 0..50 {
        let direct =
            -0.6 * q.inner().log_prob(state.positions().row(i)) + 1.6 * p.inner().log_prob(state.positions().row(i));
        assert!((state.log_target(&target, i) - direct).abs() < 1e-12);
    }
    assert_eq!((q.counts(), p.counts()), before);
}

fn run_in_pool(threads: usize) -> (Vec<f64>, Vec<StepInfo>, Vec<f64>, StepSizes) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mix = Banana;
        let target = LinearLogDensity::single(&mix);
        let mut state = ChainState::init(&target, Banana::draws(203, 2), true).unwrap().with_chunk_size(16);
        let mut sizes = StepSizes::fab(fab_mcmc::FabRule::Iclr, 1, 1.0).unwrap();
        let mut infos = Vec::new();
        for t in 0..10 {
            let info = Hmc::new(5).step(&target, &mut state, sizes.step_size(0), sub_seed(7, &[t])).unwrap();
            sizes.adapt(0, &info);
            infos.push(info);
        }
        let mut rw_state = ChainState::init(&target, Banana::draws(203, 2), false).unwrap().with_chunk_size(16);
        for t in 0..10 {
            infos.push(RandomWalkMetropolis.step(&target, &mut rw_state, 0.8, sub_seed(8, &[t])).unwrap());
        }
        (state.positions().as_slice().to_vec(), infos, rw_state.positions().as_slice().to_vec(), sizes)
    })
}

#[test]
fn results_are_bitwise_identical_for_1_2_and_8_threads() {
    let one = run_in_pool(1);
    for threads in [2, 8] {
        let other = run_in_pool(threads);
        let same_bits = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same_bits(&one.0, &other.0), "HMC positions differ with {threads} threads");
        assert!(same_bits(&one.2, &other.2), "Metropolis positions differ with {threads} threads");
        assert_eq!(format!("{:?}", one.1), format!("{:?}", other.1), "diagnostics differ with {threads} threads");
        assert_eq!(one.3, other.3, "adapted step sizes differ with {threads} threads");
    }
}
