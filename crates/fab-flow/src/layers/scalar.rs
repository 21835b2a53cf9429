//! Scalar maps the layers share: stable softplus, logistic and inverse softplus, and the two affine map kinds.

use crate::spec::Direction;

/// Which of the two affine maps a layer applies: `w = v·e^ℓ + t` or its inverse `w = (v − t)·e^{−ℓ}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AffineKind {
    ScaleShift,
    UnshiftUnscale,
}

/// The map applied in direction `dir` by a layer that scales-and-shifts in `affine_direction`.
pub(crate) fn affine_kind(dir: Direction, affine_direction: Direction) -> AffineKind {
    if dir == affine_direction { AffineKind::ScaleShift } else { AffineKind::UnshiftUnscale }
}

/// Numerically stable `ln(1 + eˣ)`.
pub(crate) fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Numerically stable logistic function.
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Inverse of softplus: the `s` with `softplus(s) = y` (`y > 0`).
pub(crate) fn inverse_softplus(y: f64) -> f64 {
    y + (-(-y).exp_m1()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_softplus_inverts_softplus() {
        assert!((inverse_softplus(softplus(0.3)) - 0.3).abs() < 1e-14);
        assert!((inverse_softplus(softplus(-4.0)) + 4.0).abs() < 1e-12);
        assert!((sigmoid(0.7) - 1.0 / (1.0 + (-0.7f64).exp())).abs() < 1e-16);
    }
}
