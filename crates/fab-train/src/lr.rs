//! fab-jax's learning-rate schedule as a pure function of the budget fraction: linear warm-up from a fraction of
//! the peak rate, then half a cosine down to a final fraction (optax's `warmup_cosine_decay_schedule`).

/// The rate after `progress` ∈ [0, 1] of the budget (clamped): `peak · (i + (1 − i)·t/w)` for `t < w`, then
/// `peak · (f + (1 − f)·½(1 + cos(π (t − w)/(1 − w))))`, with `i = initial_fraction`, `w = warmup_fraction`,
/// `f = final_fraction`. fab-jax: peak 2e-4, `i` = 0.1 (2e-5), `w` = 10 of its 2000 (or 10⁴) iterations, `f` = 0.
/// With `w = 0` it is a plain cosine decay; with `w = 1` a plain warm-up.
pub fn warmup_cosine(
    peak: f64,
    progress: f64,
    initial_fraction: f64,
    warmup_fraction: f64,
    final_fraction: f64,
) -> f64 {
    let t = progress.clamp(0.0, 1.0);
    let w = warmup_fraction.clamp(0.0, 1.0);
    if t < w {
        return peak * (initial_fraction + (1.0 - initial_fraction) * t / w);
    }
    if w >= 1.0 {
        return peak;
    }
    let s = (t - w) / (1.0 - w);
    peak * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * s).cos()))
}

#[cfg(test)]
mod tests {
    use super::warmup_cosine;

    /// fab-jax's GMM / funnel schedule over 2000 iterations: 2e-5 → 2e-4 in 10, then cosine to 0.
    fn fabjax(iteration: u64) -> f64 {
        warmup_cosine(2e-4, iteration as f64 / 2000.0, 0.1, 10.0 / 2000.0, 0.0)
    }

    #[test]
    fn warms_up_linearly_then_decays_along_a_cosine_to_the_final_rate() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-18;
        assert!(close(fabjax(0), 2e-5));
        assert!(close(fabjax(5), 2e-5 + 0.5 * 1.8e-4), "half-way through the warm-up: {}", fabjax(5));
        assert!(close(fabjax(10), 2e-4), "peak at the end of the warm-up");
        // optax: end + (peak − end)·½(1 + cos(π·(k − 10)/1990)); at k = 1005 the cosine is at its half point.
        assert!(close(fabjax(1005), 1e-4), "{}", fabjax(1005));
        assert!(close(fabjax(2000), 0.0));
        assert!(close(fabjax(5000), 0.0), "clamped past the budget");
        let decay: Vec<f64> = (10..=2000).map(fabjax).collect();
        assert!(decay.windows(2).all(|w| w[1] <= w[0]), "non-increasing after the warm-up");
    }

    #[test]
    fn degenerate_warmups_are_a_plain_cosine_or_a_plain_ramp() {
        assert_eq!(warmup_cosine(1.0, 0.0, 0.1, 0.0, 0.2), 1.0);
        assert!((warmup_cosine(1.0, 1.0, 0.1, 0.0, 0.2) - 0.2).abs() < 1e-15);
        assert!((warmup_cosine(1.0, 0.5, 0.0, 1.0, 0.0) - 0.5).abs() < 1e-15);
        assert_eq!(warmup_cosine(1.0, 1.0, 0.0, 1.0, 0.0), 1.0);
    }
}
