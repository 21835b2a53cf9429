//! One-dimensional numerical integration (composite and adaptive Simpson) for exact references: the Many Well
//! normaliser and moments, and the tests' CDFs and box integrals.

/// Composite Simpson's rule for `∫_a^b f(x) dx` with `n_intervals` (rounded up to even) equal sub-intervals.
/// The error is `O(h⁴ f⁗)`; for smooth, rapidly decaying integrands on a wide enough box it is at round-off.
pub fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n_intervals: usize) -> f64 {
    let n = n_intervals.max(2).next_multiple_of(2);
    let h = (b - a) / n as f64;
    let interior: f64 = (1..n).map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * f(a + i as f64 * h)).sum();
    (f(a) + interior + f(b)) * h / 3.0
}

/// Adaptive Simpson quadrature of `∫_a^b f(x) dx` to absolute tolerance `tol` (Richardson-corrected),
/// splitting at most `max_depth` times along any branch.
pub fn adaptive_simpson(f: &dyn Fn(f64) -> f64, a: f64, b: f64, tol: f64, max_depth: u32) -> f64 {
    let (fa, fm, fb) = (f(a), f(0.5 * (a + b)), f(b));
    let whole = (b - a) / 6.0 * (fa + 4.0 * fm + fb);
    adaptive_step(f, [a, b], [fa, fm, fb], whole, tol, max_depth)
}

/// One level of [`adaptive_simpson`]: compares the whole-interval estimate with the sum of its halves.
fn adaptive_step(
    f: &dyn Fn(f64) -> f64,
    [a, b]: [f64; 2],
    [fa, fm, fb]: [f64; 3],
    whole: f64,
    tol: f64,
    depth: u32,
) -> f64 {
    let m = 0.5 * (a + b);
    let (lm, rm) = (0.5 * (a + m), 0.5 * (m + b));
    let (flm, frm) = (f(lm), f(rm));
    let left = (m - a) / 6.0 * (fa + 4.0 * flm + fm);
    let right = (b - m) / 6.0 * (fm + 4.0 * frm + fb);
    let delta = left + right - whole;
    if depth == 0 || delta.abs() <= 15.0 * tol {
        return left + right + delta / 15.0;
    }
    adaptive_step(f, [a, m], [fa, flm, fm], left, 0.5 * tol, depth - 1)
        + adaptive_step(f, [m, b], [fm, frm, fb], right, 0.5 * tol, depth - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simpson_integrates_a_gaussian_and_a_cubic() {
        let gauss = simpson(|x: f64| (-0.5 * x * x).exp(), -12.0, 12.0, 2000);
        assert!((gauss - (2.0 * std::f64::consts::PI).sqrt()).abs() < 1e-13);
        // Simpson is exact for cubics, even with two intervals.
        let cubic = simpson(|x: f64| x.powi(3) - 2.0 * x + 1.0, 0.0, 2.0, 2);
        assert!((cubic - 2.0).abs() < 1e-14, "{cubic}");
    }

    #[test]
    fn adaptive_simpson_reaches_its_tolerance() {
        let f = |x: f64| 1.0 / (1.0 + 25.0 * x * x);
        let exact = 2.0 * 5.0_f64.atan() / 5.0;
        let res = adaptive_simpson(&f, -1.0, 1.0, 1e-12, 50);
        assert!((res - exact).abs() < 1e-11, "{res} vs {exact}");
    }
}
