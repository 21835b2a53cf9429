//! The one dense matrix-product entry point of the crate: faer on zero-copy row-major views, hand loops for tiny shapes.

use faer::{Accum, MatMut, MatRef, Par};

/// Below this inner or outer size a plain loop beats faer's call overhead (a 2-D flow's first layer, a 2-wide head).
const TINY: usize = 4;

/// How an operand is stored: as the logical matrix (row-major) or as its transpose (row-major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// The slice holds the logical `r × c` matrix, row-major.
    N,
    /// The slice holds the logical matrix's transpose (`c × r`), row-major.
    T,
}

/// `C = A·B` (or `C += A·B` when `accumulate`), with `C` an `m × n` row-major slice, `A` logically `m × k`
/// and `B` logically `k × n`, each stored as itself or its transpose (`op_a`, `op_b`).
///
/// Single-threaded on purpose (`Par::Seq`): callers parallelise over row chunks, which is deterministic and
/// does not oversubscribe the two cores.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    c: &mut [f64],
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    op_a: Op,
    b: &[f64],
    op_b: Op,
    accumulate: bool,
) {
    debug_assert_eq!(c.len(), m * n);
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    if k <= TINY || n <= TINY || m <= TINY {
        gemm_loops(c, m, n, k, a, op_a, b, op_b, accumulate);
        return;
    }
    let a_view = match op_a {
        Op::N => MatRef::from_row_major_slice(a, m, k),
        Op::T => MatRef::from_row_major_slice(a, k, m).transpose(),
    };
    let b_view = match op_b {
        Op::N => MatRef::from_row_major_slice(b, k, n),
        Op::T => MatRef::from_row_major_slice(b, n, k).transpose(),
    };
    let c_view: MatMut<'_, f64> = MatMut::from_row_major_slice_mut(c, m, n);
    let beta = if accumulate { Accum::Add } else { Accum::Replace };
    faer::linalg::matmul::matmul(c_view, beta, a_view, b_view, 1.0, Par::Seq);
    clear_upper_vector_state();
}

/// Executes `vzeroupper` after faer's AVX kernels.
///
/// faer returns with the upper halves of the vector registers dirty. On this machine every later legacy-SSE
/// instruction (glibc's `exp`/`log`, our baseline-x86-64 loops) then pays an SSE/AVX state-transition penalty:
/// measured `exp` 5 ns → 180–250 ns per call, which made the 2021 flow (sigmoid scales) 2–3× slower overall.
/// pulp (faer's SIMD layer) exposes the instruction safely behind a runtime AVX check.
#[inline]
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = faer::traits::pulp::x86::V3::try_new() {
        simd.avx._mm256_zeroupper();
    }
}

/// The same product by plain loops, in the form that avoids a loop-carried dependency through memory:
/// narrow outputs (`n ≤ TINY`) as dot products with four independent partial sums, wider outputs as row updates
/// `C[i,:] += A[i,p]·B[p,:]` whose inner loop runs along a row.
#[allow(clippy::too_many_arguments)]
fn gemm_loops(c: &mut [f64], m: usize, n: usize, k: usize, a: &[f64], op_a: Op, b: &[f64], op_b: Op, accumulate: bool) {
    let a_at = |i: usize, p: usize| match op_a {
        Op::N => a[i * k + p],
        Op::T => a[p * m + i],
    };
    if n <= TINY {
        let b_at = |p: usize, j: usize| match op_b {
            Op::N => b[p * n + j],
            Op::T => b[j * k + p],
        };
        let k4 = k - k % 4;
        for i in 0..m {
            for j in 0..n {
                let mut s = [0.0f64; 4];
                for p in (0..k4).step_by(4) {
                    for (u, su) in s.iter_mut().enumerate() {
                        *su += a_at(i, p + u) * b_at(p + u, j);
                    }
                }
                let mut tail = 0.0;
                for p in k4..k {
                    tail += a_at(i, p) * b_at(p, j);
                }
                let dot = (s[0] + s[1]) + (s[2] + s[3]) + tail;
                let cij = &mut c[i * n + j];
                *cij = if accumulate { *cij + dot } else { dot };
            }
        }
        return;
    }
    // Row updates want B as k × n rows; a transposed B is small here (k or n is tiny), so copy it once.
    let b_rows: std::borrow::Cow<'_, [f64]> = match op_b {
        Op::N => std::borrow::Cow::Borrowed(b),
        Op::T => std::borrow::Cow::Owned((0..k * n).map(|idx| b[(idx % n) * k + idx / n]).collect()),
    };
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        if !accumulate {
            row.fill(0.0);
        }
        for p in 0..k {
            let aip = a_at(i, p);
            for (cj, bj) in row.iter_mut().zip(&b_rows[p * n..(p + 1) * n]) {
                *cj += aip * bj;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f64], op_a: Op, b: &[f64], op_b: Op) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let x = if op_a == Op::N { a[i * k + p] } else { a[p * m + i] };
                    let y = if op_b == Op::N { b[p * n + j] } else { b[j * k + p] };
                    s += x * y;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn every_layout_and_size_matches_the_triple_loop() {
        let fill = |len: usize, seed: f64| (0..len).map(|i| ((i as f64 + seed) * 0.7311).sin()).collect::<Vec<_>>();
        for &(m, n, k) in
            &[(3, 2, 1), (17, 9, 13), (40, 33, 7), (2, 50, 30), (64, 64, 64), (100, 2, 40), (40, 1, 101), (100, 40, 2)]
        {
            for op_a in [Op::N, Op::T] {
                for op_b in [Op::N, Op::T] {
                    let a = fill(m * k, 1.0);
                    let b = fill(k * n, 2.0);
                    let want = reference(m, n, k, &a, op_a, &b, op_b);
                    let mut c = fill(m * n, 3.0);
                    let before = c.clone();
                    gemm(&mut c, m, n, k, &a, op_a, &b, op_b, true);
                    for i in 0..m * n {
                        assert!((c[i] - before[i] - want[i]).abs() < 1e-12, "accumulate {m}x{n}x{k} {op_a:?}{op_b:?}");
                    }
                    gemm(&mut c, m, n, k, &a, op_a, &b, op_b, false);
                    for i in 0..m * n {
                        assert!((c[i] - want[i]).abs() < 1e-12, "replace {m}x{n}x{k} {op_a:?}{op_b:?}");
                    }
                }
            }
        }
    }
}
