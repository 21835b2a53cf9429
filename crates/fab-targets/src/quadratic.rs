//! The quadratic test function whose expectation the FAB papers estimate, with its closed-form expectation
//! under a diagonal Gaussian mixture.

use crate::error::{TargetError, check_finite, check_len};
use crate::gmm::DiagGmm;
use fab_core::LogDensity;

/// `f(x) = (x + s)ᵀ A (x + s) + bᵀ (x + s)` with a general (not symmetric) `d × d` matrix `A` (SPEC §1c).
#[derive(Debug, Clone, PartialEq)]
pub struct QuadraticFn {
    s: Vec<f64>,
    /// Row-major `d × d`.
    a: Vec<f64>,
    b: Vec<f64>,
}

impl QuadraticFn {
    /// `f` from the shift `s` (`d`), the row-major matrix `a` (`d²`) and the linear coefficients `b` (`d`).
    pub fn new(s: Vec<f64>, a: Vec<f64>, b: Vec<f64>) -> Result<Self, TargetError> {
        let d = s.len();
        if d == 0 {
            return Err(TargetError::InvalidDimension { target: "QuadraticFn", dim: d, reason: "must be at least 1" });
        }
        check_len("a", &a, d * d)?;
        check_len("b", &b, d)?;
        check_finite("s", &s)?;
        check_finite("a", &a)?;
        check_finite("b", &b)?;
        Ok(Self { s, a, b })
    }

    /// The float64 draws used with the 2021 mixture of 5 Gaussians.
    pub fn mog5_2021() -> Self {
        Self::new(
            vec![3.0819922164880866, -0.5868578115218928],
            vec![0.9187658862549017, 1.8414953682439206, 1.2900482402455296, 1.5822957843606074],
            vec![0.17860617520075095, 0.3511076243939284],
        )
        .expect("the 2021 quadratic constants are valid")
    }

    /// The float32 draws (as float64 values) used with the ICLR 40-mode GMM.
    pub fn gmm40_iclr() -> Self {
        Self::new(
            vec![3.0819921493530273, -0.586857795715332],
            vec![0.6148456335067749, 1.2681573629379272, 0.9801868200302124, 1.7928894758224487],
            vec![0.455627977848053, 0.6323062777519226],
        )
        .expect("the ICLR quadratic constants are valid")
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.s.len()
    }

    /// `uᵀ A u + bᵀ u` for an already shifted `u = x + s`.
    fn quadratic_form_plus_linear(&self, u: &[f64]) -> f64 {
        let quadratic: f64 = self.a.chunks_exact(self.dim()).zip(u).map(|(row, ui)| ui * dot(row, u)).sum();
        quadratic + dot(&self.b, u)
    }

    /// `f(x)`.
    pub fn value(&self, x: &[f64]) -> f64 {
        assert_eq!(x.len(), self.dim(), "QuadraticFn::value: dimension");
        let u: Vec<f64> = x.iter().zip(&self.s).map(|(x, s)| x + s).collect();
        self.quadratic_form_plus_linear(&u)
    }

    /// `E_p[f(x)]` in closed form for a diagonal mixture `p`:
    /// `Σ_k w_k [ (μ_k + s)ᵀ A (μ_k + s) + Σ_j A_jj σ_kj² + bᵀ(μ_k + s) ]`.
    pub fn expectation_under(&self, gmm: &DiagGmm) -> f64 {
        assert_eq!(gmm.dim(), self.dim(), "QuadraticFn::expectation_under: dimension");
        let d = self.dim();
        (0..gmm.n_components())
            .map(|k| {
                let u: Vec<f64> = gmm.component_mean(k).iter().zip(&self.s).map(|(m, s)| m + s).collect();
                let trace_a_sigma: f64 =
                    gmm.component_std(k).iter().enumerate().map(|(j, sd)| self.a[j * d + j] * sd * sd).sum();
                gmm.weights()[k] * (self.quadratic_form_plus_linear(&u) + trace_a_sigma)
            })
            .sum()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_the_quadratic_form_written_out() {
        let f = QuadraticFn::new(vec![1.0, -2.0], vec![1.0, 2.0, 3.0, 4.0], vec![0.5, -1.0]).unwrap();
        // u = x + s = (1.5, -1.0); uᵀAu = 1·2.25 + 2·1.5·(−1) + 3·(−1)·1.5 + 4·1 = −1.25; bᵀu = 0.75 + 1 = 1.75.
        assert!((f.value(&[0.5, 1.0]) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn expectation_under_a_point_mass_like_component_is_the_value_plus_the_trace_term() {
        let f = QuadraticFn::new(vec![0.0, 0.0], vec![2.0, 1.0, 0.0, 3.0], vec![1.0, 1.0]).unwrap();
        let gmm = DiagGmm::new(&[[1.0, 2.0]], &[[0.5, 0.1]], &[1.0]).unwrap();
        let expected = f.value(&[1.0, 2.0]) + 2.0 * 0.25 + 3.0 * 0.01;
        assert!((f.expectation_under(&gmm) - expected).abs() < 1e-12);
    }

    #[test]
    fn invalid_constants_name_the_field() {
        let err = QuadraticFn::new(vec![0.0, 0.0], vec![1.0; 3], vec![0.0; 2]).unwrap_err();
        assert!(err.to_string().contains("`a`"), "{err}");
        let err = QuadraticFn::new(vec![0.0, 0.0], vec![1.0; 4], vec![0.0; 3]).unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
        let err = QuadraticFn::new(vec![0.0, f64::NAN], vec![1.0; 4], vec![0.0; 2]).unwrap_err();
        assert!(err.to_string().contains("`s[1]`"), "{err}");
    }
}
