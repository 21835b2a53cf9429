//! LU-parameterised invertible linear map `W = P·L·U` (`normflows` `InvertibleAffine`), random-orthogonal init.

use super::{BackPass, FlowLayer, InputTape, Pass};
use crate::gemm::{Op, gemm};
use crate::scratch::assign_copy;
use crate::spec::{BaseSpec, Direction, FlowSpec, LayerSpec, Math};
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};

/// LU-parameterised linear map (`normflows` `InvertibleAffine`): `W = P·L·U`, density direction `z = x·W`.
/// Parameters `[L (D×D), U (D×D), log_S (D)]`; only the strict triangles of `L` and `U` act.
/// Buffers (fixed, saved with the weights): the permutation matrix `P` and `sign_S`.
#[derive(Debug, Clone)]
pub(crate) struct LuLinear {
    dim: usize,
    pub(crate) perm: Vec<f64>,
    pub(crate) sign: Vec<f64>,
}

/// `L_m = tril(L, −1) + I` and `U_m = triu(U, 1) + diag(sign·exp(log_S))`.
struct LuFactors {
    lower: Vec<f64>,
    upper: Vec<f64>,
}

fn matmul_small(a: &[f64], b: &[f64], d: usize, op_a: Op, op_b: Op) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    gemm(&mut c, d, d, d, a, op_a, b, op_b, false);
    c
}

/// Inverse of a unit lower-triangular matrix by forward substitution.
fn invert_unit_lower(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        for i in col..d {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for p in col..i {
                s -= l[i * d + p] * inv[p * d + col];
            }
            inv[i * d + col] = s;
        }
    }
    inv
}

/// Inverse of an upper-triangular matrix by back substitution.
fn invert_upper(u: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        for i in (0..=col).rev() {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for p in i + 1..=col {
                s -= u[i * d + p] * inv[p * d + col];
            }
            inv[i * d + col] = s / u[i * d + i];
        }
    }
    inv
}

impl LuLinear {
    fn factors(&self, p: &[f64]) -> LuFactors {
        let d = self.dim;
        let (l, rest) = p.split_at(d * d);
        let (u, log_s) = rest.split_at(d * d);
        let mut lower = vec![0.0; d * d];
        let mut upper = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                lower[i * d + j] = match j.cmp(&i) {
                    std::cmp::Ordering::Less => l[i * d + j],
                    std::cmp::Ordering::Equal => 1.0,
                    std::cmp::Ordering::Greater => 0.0,
                };
                upper[i * d + j] = match j.cmp(&i) {
                    std::cmp::Ordering::Greater => u[i * d + j],
                    std::cmp::Ordering::Equal => self.sign[i] * log_s[i].exp(),
                    std::cmp::Ordering::Less => 0.0,
                };
            }
        }
        LuFactors { lower, upper }
    }

    /// `W = P·L_m·U_m`.
    pub(crate) fn weight(&self, p: &[f64]) -> Vec<f64> {
        let f = self.factors(p);
        let lu = matmul_small(&f.lower, &f.upper, self.dim, Op::N, Op::N);
        matmul_small(&self.perm, &lu, self.dim, Op::N, Op::N)
    }

    /// `W⁻¹ = U_m⁻¹·L_m⁻¹·Pᵀ`.
    fn weight_inverse(&self, p: &[f64]) -> Vec<f64> {
        let d = self.dim;
        let f = self.factors(p);
        let ul = matmul_small(&invert_upper(&f.upper, d), &invert_unit_lower(&f.lower, d), d, Op::N, Op::N);
        matmul_small(&ul, &self.perm, d, Op::N, Op::T)
    }

    fn sum_log_s(&self, p: &[f64]) -> f64 {
        p[2 * self.dim * self.dim..].iter().sum()
    }
}

impl FlowLayer for LuLinear {
    type Tape = InputTape;

    fn apply(&self, pass: Pass<'_>) {
        let Pass { p, dir, n, input, output, log_det } = pass;
        let d = self.dim;
        let (m, ld) = match dir {
            Direction::Density => (self.weight(p), self.sum_log_s(p)),
            Direction::Sampling => (self.weight_inverse(p), -self.sum_log_s(p)),
        };
        gemm(output, n, d, d, input, Op::N, &m, Op::N, false);
        log_det.iter_mut().for_each(|v| *v += ld);
    }

    fn apply_recording(&self, pass: Pass<'_>, tape: &mut InputTape) {
        assign_copy(&mut tape.input, pass.input);
        self.apply(pass);
    }

    fn backward(&self, back: BackPass<'_>, tape: &InputTape) {
        let BackPass { p, dir, n, g_out, g_ld, g_in, g_params } = back;
        let d = self.dim;
        let m = match dir {
            Direction::Density => self.weight(p),
            Direction::Sampling => self.weight_inverse(p),
        };
        // out = in·M  ⇒  ∂in = ∂out·Mᵀ.
        gemm(g_in, n, d, d, g_out, Op::N, &m, Op::T, false);
        let Some(gp) = g_params else { return };
        // ∂M = inᵀ·∂out.
        let mut g_m = vec![0.0; d * d];
        gemm(&mut g_m, d, d, n, &tape.input, Op::T, g_out, Op::N, false);
        let sum_g_ld: f64 = g_ld.iter().sum();
        let (g_w, ld_sign) = match dir {
            Direction::Density => (g_m, 1.0),
            // M = W⁻¹: dM = −M·dW·M  ⇒  ∂W = −Mᵀ·∂M·Mᵀ.
            Direction::Sampling => {
                let t = matmul_small(&m, &g_m, d, Op::T, Op::N);
                let mut g_w = matmul_small(&t, &m, d, Op::N, Op::T);
                g_w.iter_mut().for_each(|v| *v = -*v);
                (g_w, -1.0)
            }
        };
        let f = self.factors(p);
        // W = P·L·U: ∂(L·U) = Pᵀ·∂W; ∂L = ∂(LU)·Uᵀ; ∂U = Lᵀ·∂(LU).
        let g_lu = matmul_small(&self.perm, &g_w, d, Op::T, Op::N);
        let g_lower = matmul_small(&g_lu, &f.upper, d, Op::N, Op::T);
        let g_upper = matmul_small(&f.lower, &g_lu, d, Op::T, Op::N);
        let (gl, rest) = gp.split_at_mut(d * d);
        let (gu, g_log_s) = rest.split_at_mut(d * d);
        for i in 0..d {
            for j in 0..i {
                gl[i * d + j] += g_lower[i * d + j];
            }
            for j in i + 1..d {
                gu[i * d + j] += g_upper[i * d + j];
            }
            g_log_s[i] += g_upper[i * d + i] * f.upper[i * d + i] + ld_sign * sum_g_ld;
        }
    }

    fn param_tensors(&self) -> Vec<(String, Vec<usize>, usize)> {
        let d = self.dim;
        vec![("L".into(), vec![d, d], 0), ("U".into(), vec![d, d], d * d), ("log_S".into(), vec![d], 2 * d * d)]
    }

    fn examples() -> Vec<(&'static str, FlowSpec)> {
        vec![(
            "lu linear",
            FlowSpec { dim: 4, layers: vec![LayerSpec::LuLinear], base: BaseSpec::StandardNormal, math: Math::Libm },
        )]
    }
}

impl LuLinear {
    /// An LU layer with the random-orthogonal initialisation written into `p`.
    pub(crate) fn random_orthogonal(dim: usize, p: &mut [f64], rng: &mut dyn RngCore) -> Self {
        let mut lu = LuLinear { dim, perm: vec![0.0; dim * dim], sign: vec![1.0; dim] };
        lu.init(p, rng);
        lu
    }

    /// Random-orthogonal initialisation: `Q` from the QR decomposition of a standard Gaussian matrix (columns
    /// sign-fixed so `Q` is Haar-distributed), then `Q = P·L·U` by partial-pivoting LU.
    fn init(&mut self, p: &mut [f64], rng: &mut dyn RngCore) {
        let d = self.dim;
        let a = faer::Mat::<f64>::from_fn(d, d, |_, _| StandardNormal.sample(rng));
        let qr = a.qr();
        let q_mat = qr.compute_Q();
        let r = qr.R();
        let mut q = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                let sign = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
                q[i * d + j] = q_mat[(i, j)] * sign;
            }
        }
        let (perm, lower, upper) = lu_partial_pivot(&q, d);
        self.perm = perm;
        let (pl, rest) = p.split_at_mut(d * d);
        let (pu, log_s) = rest.split_at_mut(d * d);
        pl.copy_from_slice(&lower);
        pu.fill(0.0);
        for i in 0..d {
            for j in i + 1..d {
                pu[i * d + j] = upper[i * d + j];
            }
            let s = upper[i * d + i];
            self.sign[i] = if s < 0.0 { -1.0 } else { 1.0 };
            log_s[i] = s.abs().ln();
        }
    }
}

/// Partial-pivoting LU: returns `(P, L, U)` with `A = P·L·U`, `L` unit lower (diagonal stored as 1) and `U` upper.
pub(crate) fn lu_partial_pivot(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut rows: Vec<usize> = (0..d).collect();
    for k in 0..d {
        let pivot = (k..d).max_by(|&x, &y| m[x * d + k].abs().total_cmp(&m[y * d + k].abs())).unwrap_or(k);
        if pivot != k {
            for j in 0..d {
                m.swap(k * d + j, pivot * d + j);
            }
            rows.swap(k, pivot);
        }
        let piv = m[k * d + k];
        for i in k + 1..d {
            let f = m[i * d + k] / piv;
            m[i * d + k] = f;
            for j in k + 1..d {
                m[i * d + j] -= f * m[k * d + j];
            }
        }
    }
    let mut lower = vec![0.0; d * d];
    let mut upper = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            if j < i {
                lower[i * d + j] = m[i * d + j];
            } else {
                upper[i * d + j] = m[i * d + j];
            }
        }
        lower[i * d + i] = 1.0;
    }
    // Row r of the factored matrix is row rows[r] of A: Π·A = L·U with Π[r][rows[r]] = 1, so P = Πᵀ.
    let mut perm = vec![0.0; d * d];
    for (r, &src) in rows.iter().enumerate() {
        perm[src * d + r] = 1.0;
    }
    (perm, lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lu_factors_reproduce_the_matrix() {
        let d = 5;
        let a: Vec<f64> = (0..d * d).map(|i| ((i as f64) * 1.37).sin()).collect();
        let (p, l, u) = lu_partial_pivot(&a, d);
        let back = matmul_small(&p, &matmul_small(&l, &u, d, Op::N, Op::N), d, Op::N, Op::N);
        for (x, y) in a.iter().zip(&back) {
            assert!((x - y).abs() < 1e-12);
        }
    }

    #[test]
    fn triangular_inverses_are_inverses() {
        let d = 4;
        let mut l = vec![0.0; d * d];
        let mut u = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                let v = ((i * d + j) as f64 * 0.91).cos();
                if j < i {
                    l[i * d + j] = v;
                } else {
                    u[i * d + j] = v + if i == j { 2.0 } else { 0.0 };
                }
            }
            l[i * d + i] = 1.0;
        }
        for (m, inv) in [(&l, invert_unit_lower(&l, d)), (&u, invert_upper(&u, d))] {
            let prod = matmul_small(m, &inv, d, Op::N, Op::N);
            for i in 0..d {
                for j in 0..d {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((prod[i * d + j] - want).abs() < 1e-12);
                }
            }
        }
    }
}
