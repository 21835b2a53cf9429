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
        with_best_simd(
            #[inline(always)]
            move || gemm_loops(c, m, n, k, a, op_a, b, op_b, accumulate),
        );
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

/// Runs `f` compiled for the best vector instruction set this CPU has (AVX2 when available, else the
/// baseline), chosen at run time through pulp (faer's SIMD layer), so plain loops vectorise 4 wide without
/// `-C target-cpu`. Only the vector width changes: LLVM never contracts `a·b + c` into an FMA on its own
/// (Rust does not allow it), so every element is computed by the same operations and results are bit-identical.
#[inline(always)]
pub(crate) fn with_best_simd<R>(f: impl FnOnce() -> R) -> R {
    faer::traits::pulp::Arch::new().dispatch(f)
}

/// The same product by plain loops, in the form that avoids a loop-carried dependency through memory:
/// narrow outputs (`n ≤ TINY`) as dot products with four independent partial sums, wider outputs as row updates
/// `C[i,:] += A[i,p]·B[p,:]` whose inner loop runs along a row.
///
/// The storage orders are turned into compile-time constants (one monomorphised copy per layout), so the index
/// arithmetic folds away and the inner loops vectorise; every output element is still computed by exactly the
/// same sequence of operations in every copy.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_loops(c: &mut [f64], m: usize, n: usize, k: usize, a: &[f64], op_a: Op, b: &[f64], op_b: Op, accumulate: bool) {
    // With one row or one column, a matrix and its transpose have the same row-major storage.
    let op_a = if m == 1 || k == 1 { Op::N } else { op_a };
    // A one-column B is best read as a row (the contiguous dot-product path), a one-row B as rows (row updates).
    let op_b = if n == 1 {
        Op::T
    } else if k == 1 {
        Op::N
    } else {
        op_b
    };
    match (op_a, op_b) {
        (Op::N, Op::N) => gemm_loops_in::<false, false>(c, m, n, k, a, b, accumulate),
        (Op::N, Op::T) => gemm_loops_in::<false, true>(c, m, n, k, a, b, accumulate),
        (Op::T, Op::N) => gemm_loops_in::<true, false>(c, m, n, k, a, b, accumulate),
        (Op::T, Op::T) => gemm_loops_in::<true, true>(c, m, n, k, a, b, accumulate),
    }
}

/// [`gemm_loops`] for one storage order: `A_T`/`B_T` say whether `a`/`b` hold the transpose.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_loops_in<const A_T: bool, const B_T: bool>(
    c: &mut [f64],
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    b: &[f64],
    accumulate: bool,
) {
    let a_at = |i: usize, p: usize| if A_T { a[p * m + i] } else { a[i * k + p] };
    if n <= TINY {
        if !A_T && B_T {
            // Both operands contiguous along p: a plain dot product of two rows.
            for (i, a_row) in a.chunks_exact(k).enumerate() {
                for (j, b_row) in b.chunks_exact(k).enumerate() {
                    let dot = dot4(a_row, b_row);
                    let cij = &mut c[i * n + j];
                    *cij = if accumulate { *cij + dot } else { dot };
                }
            }
            return;
        }
        let b_at = |p: usize, j: usize| if B_T { b[j * k + p] } else { b[p * n + j] };
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
    let b_rows: std::borrow::Cow<'_, [f64]> = if B_T {
        std::borrow::Cow::Owned((0..k * n).map(|idx| b[(idx % n) * k + idx / n]).collect())
    } else {
        std::borrow::Cow::Borrowed(b)
    };
    for (i, row) in c.chunks_exact_mut(n).enumerate() {
        for (p, b_row) in b_rows.chunks_exact(n).enumerate() {
            let aip = a_at(i, p);
            if p == 0 && !accumulate {
                // `0 + a·b`, exactly what zero-filling the row and then accumulating gives (also for −0),
                // without a separate pass over the row.
                zip_map4(row, b_row, move |_, bj| 0.0 + aip * bj);
            } else {
                zip_map4(row, b_row, move |cj, bj| cj + aip * bj);
            }
        }
    }
}

/// `dst[j] = f(dst[j], src[j])`, written as blocks of four lanes plus a tail so that it becomes one 4-wide vector
/// operation per block (rows here are short, e.g. 40, where an autovectorised loop would leave a long scalar
/// remainder).
#[inline(always)]
pub(crate) fn zip_map4(dst: &mut [f64], src: &[f64], f: impl Fn(f64, f64) -> f64) {
    let len = dst.len().min(src.len());
    let (dq, dr) = dst[..len].as_chunks_mut::<4>();
    let (sq, sr) = src[..len].as_chunks::<4>();
    for (d, s) in dq.iter_mut().zip(sq) {
        *d = [f(d[0], s[0]), f(d[1], s[1]), f(d[2], s[2]), f(d[3], s[3])];
    }
    for (d, s) in dr.iter_mut().zip(sr) {
        *d = f(*d, *s);
    }
}

/// `Σ_p x_p·y_p` with four interleaved partial sums `s_u = Σ x_{4q+u}·y_{4q+u}`, combined as
/// `(s₀ + s₁) + (s₂ + s₃) + tail` (the order every dot product of this module uses).
#[inline(always)]
pub(crate) fn dot4(x: &[f64], y: &[f64]) -> f64 {
    let mut s = [0.0f64; 4];
    let len = x.len().min(y.len());
    let (xc, xr) = x[..len].as_chunks::<4>();
    let (yc, yr) = y[..len].as_chunks::<4>();
    for (xq, yq) in xc.iter().zip(yc) {
        s = [s[0] + xq[0] * yq[0], s[1] + xq[1] * yq[1], s[2] + xq[2] * yq[2], s[3] + xq[3] * yq[3]];
    }
    let mut tail = 0.0;
    for (xv, yv) in xr.iter().zip(yr) {
        tail += xv * yv;
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
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
    fn vector_helpers_keep_the_scalar_operation_order_bit_for_bit() {
        for len in [0usize, 1, 3, 4, 7, 40, 41] {
            let x: Vec<f64> = (0..len).map(|i| ((i as f64) * 0.37 + 0.1).sin() * 1e3).collect();
            let y: Vec<f64> = (0..len).map(|i| ((i as f64) * 1.91 - 0.2).cos() / 7.0).collect();
            // The documented order: four interleaved partial sums, then (s0 + s1) + (s2 + s3) + tail.
            let mut s = [0.0f64; 4];
            let k4 = len - len % 4;
            for p in 0..k4 {
                s[p % 4] += x[p] * y[p];
            }
            let tail = (k4..len).fold(0.0, |t, p| t + x[p] * y[p]);
            let want = (s[0] + s[1]) + (s[2] + s[3]) + tail;
            assert_eq!(dot4(&x, &y).to_bits(), want.to_bits(), "dot4 over {len}");
            let mut d = x.clone();
            zip_map4(&mut d, &y, |a, b| a * 3.0 - b);
            for i in 0..len {
                assert_eq!(d[i].to_bits(), (x[i] * 3.0 - y[i]).to_bits());
            }
        }
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
