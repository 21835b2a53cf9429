//! Adam / AdamW, clipping and skipping of non-finite steps.

use fab_flow::{Adam, AdamConfig, StepOutcome, clip_grad_norm, clip_grad_value, grad_norm};

/// Gradient of f(θ) = ½ Σ aᵢ (θᵢ − cᵢ)².
fn quadratic_grad(theta: &[f64], a: &[f64], c: &[f64]) -> Vec<f64> {
    theta.iter().zip(a.iter().zip(c)).map(|(t, (a, c))| a * (t - c)).collect()
}

#[test]
fn adam_converges_on_an_ill_conditioned_quadratic() {
    let a = [1.0, 10.0, 100.0];
    let c = [3.0, -2.0, 0.5];
    let mut theta = vec![0.0; 3];
    let mut opt = Adam::new(AdamConfig::adam(0.05));
    for _ in 0..3000 {
        let g = quadratic_grad(&theta, &a, &c);
        assert_eq!(opt.step(&mut theta, &g), StepOutcome::Applied);
    }
    for (t, c) in theta.iter().zip(&c) {
        assert!((t - c).abs() < 1e-3, "θ = {t}, optimum {c}");
    }
    assert_eq!(opt.steps(), 3000);
}

#[test]
fn first_adam_step_moves_each_coordinate_by_the_learning_rate() {
    // m̂ = g, v̂ = g² after one step, so the update is lr·g/(|g| + eps) ≈ lr·sign(g).
    let mut theta = vec![1.0, 1.0];
    let mut opt = Adam::new(AdamConfig::adam(0.1));
    opt.step(&mut theta, &[4.0, -0.25]);
    assert!((theta[0] - 0.9).abs() < 1e-8 && (theta[1] - 1.1).abs() < 1e-8, "{theta:?}");
}

#[test]
fn adamw_decay_is_decoupled_from_the_gradient() {
    // With a zero gradient Adam's moments stay zero: AdamW only shrinks θ by (1 − lr·wd) per step, while
    // L2-Adam turns the decay into a gradient and moves by ≈ lr per step.
    let (lr, wd) = (0.01, 0.1);
    let mut w = vec![2.0];
    let mut adamw = Adam::new(AdamConfig::adamw(lr, wd));
    for _ in 0..10 {
        adamw.step(&mut w, &[0.0]);
    }
    assert!((w[0] - 2.0 * (1.0 - lr * wd).powi(10)).abs() < 1e-12, "AdamW: {}", w[0]);
    let mut l2 = vec![2.0];
    let mut adam = Adam::new(AdamConfig { weight_decay: wd, ..AdamConfig::adam(lr) });
    for _ in 0..10 {
        adam.step(&mut l2, &[0.0]);
    }
    assert!((l2[0] - (2.0 - 10.0 * lr)).abs() < 1e-3, "L2 Adam: {}", l2[0]);
}

#[test]
fn non_finite_gradients_are_skipped_and_counted() {
    let mut theta = vec![1.0, 2.0];
    let mut opt = Adam::new(AdamConfig::adam(0.1));
    opt.step(&mut theta, &[1.0, 1.0]);
    let state = opt.state().clone();
    let snapshot = theta.clone();
    assert_eq!(opt.step(&mut theta, &[f64::NAN, 1.0]), StepOutcome::SkippedNonFinite);
    assert_eq!(opt.step(&mut theta, &[1.0, f64::INFINITY]), StepOutcome::SkippedNonFinite);
    assert_eq!(theta, snapshot);
    assert_eq!(opt.skipped(), 2);
    assert_eq!(opt.steps(), 1);
    assert_eq!((&opt.state().m, &opt.state().v), (&state.m, &state.v));
}

#[test]
fn optimiser_state_round_trips_through_serde() {
    let mut theta = vec![0.5, -0.5, 1.5];
    let mut opt = Adam::new(AdamConfig::adamw(1e-3, 0.01));
    for k in 0..5 {
        opt.step(&mut theta, &[k as f64, 1.0, -2.0]);
    }
    let json = serde_json::to_string(&opt).unwrap();
    let mut restored: Adam = serde_json::from_str(&json).unwrap();
    let (mut t1, mut t2) = (theta.clone(), theta.clone());
    opt.step(&mut t1, &[0.3, 0.2, 0.1]);
    restored.step(&mut t2, &[0.3, 0.2, 0.1]);
    assert_eq!(t1, t2);
}

#[test]
fn clipping_by_norm_and_by_value() {
    let mut g = vec![3.0, 4.0];
    let norm = clip_grad_norm(&mut g, 1.0);
    assert_eq!(norm, 5.0);
    assert!((grad_norm(&g) - 1.0).abs() < 1e-6);
    assert!((g[0] / g[1] - 0.75).abs() < 1e-12, "direction kept");
    let mut small = vec![0.3, 0.4];
    clip_grad_norm(&mut small, 1.0);
    assert_eq!(small, vec![0.3, 0.4], "a gradient inside the ball is untouched");
    let mut bad = vec![f64::NAN, 1.0];
    assert!(clip_grad_norm(&mut bad, 1.0).is_nan());
    let mut v = vec![-3.0, 0.5, 2.0];
    clip_grad_value(&mut v, 1.0);
    assert_eq!(v, vec![-1.0, 0.5, 1.0]);
}
