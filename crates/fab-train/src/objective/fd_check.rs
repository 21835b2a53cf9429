//! Central finite differences of a loss in its per-point log densities, to check the coefficients a loss returns.

/// A loss of per-point log densities returning its value and its coefficients.
pub(crate) type PointLoss<'a> = &'a dyn Fn(&[f64]) -> (f64, Vec<f64>);

/// Largest `|coeff_i − (L(lq + h e_i) − L(lq − h e_i))/2h|` over the entries with a finite value, relative to
/// `max(1, |coeff_i|)`.
pub(crate) fn max_coefficient_error(loss: PointLoss<'_>, at: &[f64]) -> f64 {
    const H: f64 = 1e-6;
    let (_, coeffs) = loss(at);
    let mut worst: f64 = 0.0;
    for i in (0..at.len()).filter(|&i| at[i].is_finite()) {
        let (mut plus, mut minus) = (at.to_vec(), at.to_vec());
        plus[i] += H;
        minus[i] -= H;
        let fd = (loss(&plus).0 - loss(&minus).0) / (2.0 * H);
        worst = worst.max((coeffs[i] - fd).abs() / coeffs[i].abs().max(1.0));
    }
    worst
}

/// Asserts the coefficients agree with central differences to 1e-6 (relative), and that some entry is non-zero
/// (a loss that ignores its input would pass trivially).
pub(crate) fn assert_coefficients_match_central_differences(loss: PointLoss<'_>, at: &[f64]) {
    let (value, coeffs) = loss(at);
    assert!(value.is_finite(), "loss {value}");
    assert!(coeffs.iter().any(|c| *c != 0.0), "all coefficients are zero");
    let err = max_coefficient_error(loss, at);
    assert!(err < 1e-6, "coefficients differ from central differences by {err:e}");
}
