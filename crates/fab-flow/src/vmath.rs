//! Vectorised f64 `exp`, `ln`, `log1p`, `sigmoid`, `log_sigmoid` and `softplus` over slices, run-time dispatched to AVX-512, AVX2 or scalar code.
//!
//! # Why
//! The coupling and ActNorm element-wise passes call glibc's scalar `exp`/`log1p` once or twice per element
//! (16 % of a 2021 Many Well iteration). These kernels compute the same functions on whole slices in vector
//! registers: 8 lanes with AVX-512, 4 with AVX2 + FMA.
//!
//! # How
//! Each function is one branch-free scalar kernel (`#[inline(always)]`, selects instead of branches, only
//! `f64::mul_add`, bit casts, integer add/shift and one division) applied in a plain loop. The loop is compiled
//! three times: inside [`pulp`]'s safe `V4` (AVX-512F/BW/CD/DQ/VL) and `V3` (AVX2 + FMA) target-feature
//! contexts, where LLVM vectorises it, and as ordinary baseline code. [`Level::best`] picks the widest the CPU
//! has, once per call.
//!
//! **Every level gives bit-identical results**: the kernels contain no reductions, and every `a·b + c` is an
//! explicit `mul_add` (fused, correctly rounded: `vfmadd` in the vector code, the libm `fma` in the baseline
//! code, which is slow but exact), so each element is computed by the same IEEE operations at every width.
//! The tests check this bit for bit on every level the machine has.
//!
//! # Accuracy (ulps against std's libm, measured by this module's tests over ≥ 10⁶ points of each range)
//! | function | range tested | bound (ulp) |
//! |---|---|---|
//! | [`exp_into`] | [−745.2, 709.8], subnormal results included | 1 |
//! | [`ln_into`] | (0, 1.8·10³⁰⁸], subnormal inputs included | 1 |
//! | [`log1p_into`] | [−1 + 10⁻¹⁵, 10³⁰⁰] | 1 |
//! | [`sigmoid_into`] | [−745, 745] | 2 |
//! | [`softplus_into`], [`log_sigmoid_into`] | [−745, 745] (softplus: and up to 10³⁰⁰) | 2 |
//!
//! The libm references of the last three are the formulas of `layers.rs` (`1/(1+e^{−x})`, `e^x/(1+e^x)`,
//! `max(x,0) + log1p(e^{−|x|})`). Edge cases follow libm: `exp(±∞) = ∞, 0`; `ln(0) = −∞`, `ln(x<0) = NaN`;
//! `log1p(−1) = −∞`, `log1p(x<−1) = NaN`, `log1p(±0) = ±0`; NaN in, NaN out.
//!
//! # Dispatch
//! `unsafe_code` is forbidden in the workspace, and calling a `#[target_feature]` function from code without
//! that feature needs `unsafe`; pulp (faer's SIMD layer) does that one unsafe call behind its run-time CPU
//! check (`V4::try_new`, `V3::try_new`). Its AVX-512 type needs pulp's `x86-v4` feature, which builds on
//! stable Rust (it only needs bytemuck's `avx512_simd`, stable since Rust 1.89); fab-flow enables it.

#[cfg(target_arch = "x86_64")]
use pulp::x86::{V3, V4};

/// An instruction-set level the kernels can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 (pulp's x86-64-v4: F, BW, CD, DQ, VL), 8 lanes.
    Avx512,
    /// AVX2 + FMA (pulp's x86-64-v3), 4 lanes.
    Avx2,
    /// Baseline code (SSE2 on x86-64); `mul_add` is the libm `fma` here.
    Scalar,
}

impl Level {
    /// Every level, widest first.
    pub const ALL: [Level; 3] = [Level::Avx512, Level::Avx2, Level::Scalar];

    /// Whether this CPU can run the level.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => V4::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => V3::try_new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Level::Avx512 | Level::Avx2 => false,
            Level::Scalar => true,
        }
    }

    /// The widest level this CPU can run.
    pub fn best() -> Level {
        Level::ALL.into_iter().find(|l| l.is_available()).unwrap_or(Level::Scalar)
    }

    /// Runs `f` compiled for this level, or returns `None` if the CPU lacks it.
    #[inline(always)]
    fn run<R>(self, f: impl FnOnce() -> R) -> Option<R> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => V4::try_new().map(|simd| simd.vectorize(f)),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => V3::try_new().map(|simd| simd.vectorize(f)),
            #[cfg(not(target_arch = "x86_64"))]
            Level::Avx512 | Level::Avx2 => None,
            Level::Scalar => Some(f()),
        }
    }
}

/// Error of a call at a [`Level`] the CPU does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this CPU cannot run vector level {0:?}")]
pub struct LevelUnavailable(pub Level);

// ---------------------------------------------------------------------------------------------------------
// Constants.

/// `1.5·2⁵²`: adding it to a double of magnitude < 2⁵¹ rounds it to an integer held in the low mantissa bits.
const ROUND_SHIFT: f64 = 6_755_399_441_055_744.0;
/// `2⁵² + 1023`: adding it to an integer-valued `n` leaves the biased exponent `n + 1023` in the low bits.
const EXPONENT_SHIFT: f64 = 4_503_599_627_371_519.0;
/// `2⁵²`, whose bit pattern ORed with a small integer `e` is the double `2⁵² + e`.
const TWO_POW_52: f64 = 4_503_599_627_370_496.0;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// ln 2 split Cody–Waite style (fdlibm's constants): `LN2_HI` has 21 trailing zero bits, so `n·LN2_HI` is
/// exact for |n| < 2²¹.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// Below this `exp` is 0 even after rounding (e^{−745.2} < 2⁻¹⁰⁷⁵); above `EXP_HI` it overflows.
const EXP_LO: f64 = -746.0;
const EXP_HI: f64 = 710.0;
/// Taylor coefficients `1/k!`, `k = 2..=13`: on |r| ≤ ln2/2 the first omitted term is < 4.2·10⁻¹⁸ relative.
const EXP_TAYLOR: [f64; 12] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];
/// fdlibm's minimax coefficients of `(ln(1+f) − 2s − s·f·… )`: `R(z) = Σ Lgᵢ zⁱ`, `z = s²`, `s = f/(2+f)`,
/// |error| < 2⁻⁵⁸·⁴⁵ on s ∈ [0, 0.1716].
const LG: [f64; 7] = [
    f64::from_bits(0x3fe5_5555_5555_5593),
    f64::from_bits(0x3fd9_9999_9997_fa04),
    f64::from_bits(0x3fd2_4924_9422_9359),
    f64::from_bits(0x3fcc_71c5_1d8e_78af),
    f64::from_bits(0x3fc7_4664_96cb_03de),
    f64::from_bits(0x3fc3_9a09_d078_c69f),
    f64::from_bits(0x3fc2_f112_df3e_5244),
];
/// Upper word of √2/2 shifted into place: subtracting it from a double's bits puts the mantissa in [√2/2, √2).
const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_0000_0000;
const ONE_BITS: u64 = 0x3ff0_0000_0000_0000;
const MANTISSA_MASK: u64 = 0x000f_ffff_ffff_ffff;
/// 2⁵⁴, to lift subnormal inputs of `ln` into the normal range.
const TWO_POW_54: f64 = 18_014_398_509_481_984.0;

// ---------------------------------------------------------------------------------------------------------
// Scalar kernels: branch-free, so the element loops around them vectorise.

/// An integer-valued double `n` with |n| < 2⁵¹, rounded from `x` to nearest (ties to even).
#[inline(always)]
fn round_to_integer(x: f64) -> f64 {
    (x + ROUND_SHIFT) - ROUND_SHIFT
}

/// `2ⁿ` for an integer-valued `n` in [−1022, 1023], built from its exponent bits.
#[inline(always)]
fn pow2(n: f64) -> f64 {
    f64::from_bits((n + EXPONENT_SHIFT).to_bits() << 52)
}

/// `eʳ − 1` for |r| ≤ ln2/2 + ε: Horner with fused multiply-adds, `r + r²·q(r)`.
#[inline(always)]
fn exp_m1_reduced(r: f64) -> f64 {
    let mut q = EXP_TAYLOR[11];
    for &c in EXP_TAYLOR[..11].iter().rev() {
        q = q.mul_add(r, c);
    }
    (r * r).mul_add(q, r)
}

/// `eˣ`: `x = n·ln2 + r`, `eˣ = 2ⁿ·eʳ`; `2ⁿ` is applied as two factors `2^⌊n/2⌉·2^(n−⌊n/2⌉)` so that
/// subnormal results round once and overflow gives ∞.
#[inline(always)]
fn exp_kernel(x: f64) -> f64 {
    let xc = x.clamp(EXP_LO, EXP_HI);
    let n = round_to_integer(xc * LOG2_E);
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    let er = 1.0 + exp_m1_reduced(r);
    let n1 = round_to_integer(0.5 * n);
    let n2 = n - n1;
    let y = er * pow2(n1) * pow2(n2);
    // NaN passes `clamp` but not the bit tricks.
    if x.is_nan() { x } else { y }
}

/// `ln(m) + c` for `m` in [√2/2, √2) written as `2^k·m`, fdlibm's formula with the correction `c` (0 for
/// `ln`, the rounding error of `1 + x` over `u` for `log1p`) added in with the small terms.
#[inline(always)]
fn ln_reduced(u: f64, c: f64) -> f64 {
    // Bits of u shifted so that its exponent field is k + 1023 where u = 2^k·m, m ∈ [√2/2, √2).
    let shifted = u.to_bits().wrapping_add(ONE_BITS - SQRT_HALF_BITS);
    let k = f64::from_bits(TWO_POW_52.to_bits() | (shifted >> 52)) - (TWO_POW_52 + 1023.0);
    let m = f64::from_bits((shifted & MANTISSA_MASK) + SQRT_HALF_BITS);
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * LG[5].mul_add(w, LG[3]).mul_add(w, LG[1]);
    let t2 = z * LG[6].mul_add(w, LG[4]).mul_add(w, LG[2]).mul_add(w, LG[0]);
    let r = t2 + t1;
    k.mul_add(LN2_HI, -((hfsq - s.mul_add(hfsq + r, k.mul_add(LN2_LO, c))) - f))
}

/// `ln x` with libm's edge cases.
#[inline(always)]
fn ln_kernel(x: f64) -> f64 {
    let subnormal = x < f64::MIN_POSITIVE;
    let u = if subnormal { x * TWO_POW_54 } else { x };
    let y = ln_reduced(u, 0.0);
    let y = if subnormal { (-54.0f64).mul_add(LN2_LO, (-54.0f64).mul_add(LN2_HI, y)) } else { y };
    let y = if x == f64::INFINITY { x } else { y };
    let y = if x == 0.0 { f64::NEG_INFINITY } else { y };
    if x < 0.0 || x.is_nan() { f64::NAN } else { y }
}

/// `ln(1 + x)` with libm's edge cases: `ln(u) + (1 + x − u)/u` for the rounded `u = 1 + x`.
#[inline(always)]
fn log1p_kernel(x: f64) -> f64 {
    let u = 1.0 + x;
    // The rounding error of u, exact by Sterbenz's lemma in both branches.
    let err = if x >= 1.0 { 1.0 - (u - x) } else { x - (u - 1.0) };
    let y = ln_reduced(u, err / u);
    let y = if x == f64::INFINITY { x } else { y };
    let y = if x == -1.0 { f64::NEG_INFINITY } else { y };
    let y = if x == 0.0 { x } else { y };
    if x < -1.0 || x.is_nan() { f64::NAN } else { y }
}

/// `1/(1 + e^{−x})` as `1/(1 + e^{−|x|})` for x ≥ 0 and `e^{−|x|}/(1 + e^{−|x|})` below, one `exp`.
#[inline(always)]
fn sigmoid_kernel(x: f64) -> f64 {
    let e = exp_kernel(-x.abs());
    let numerator = if x >= 0.0 { 1.0 } else { e };
    numerator / (1.0 + e)
}

/// `ln(1 + eˣ) = max(x, 0) + ln(1 + e^{−|x|})`.
#[inline(always)]
fn softplus_kernel(x: f64) -> f64 {
    x.max(0.0) + log1p_kernel(exp_kernel(-x.abs()))
}

/// `ln σ(x) = −softplus(−x) = min(x, 0) − ln(1 + e^{−|x|})`.
#[inline(always)]
fn log_sigmoid_kernel(x: f64) -> f64 {
    x.min(0.0) - log1p_kernel(exp_kernel(-x.abs()))
}

// ---------------------------------------------------------------------------------------------------------
// Slice drivers.

/// `dst[i] = kernel(src[i])`, compiled for `level`.
#[inline(always)]
fn map_into(level: Level, src: &[f64], dst: &mut [f64], kernel: impl Fn(f64) -> f64) -> Result<(), LevelUnavailable> {
    assert_eq!(src.len(), dst.len(), "vmath: source and destination lengths differ");
    level
        .run(
            #[inline(always)]
            || {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = kernel(s);
                }
            },
        )
        .ok_or(LevelUnavailable(level))
}

/// `x[i] = kernel(x[i])`, compiled for `level`.
#[inline(always)]
fn map_in_place(level: Level, x: &mut [f64], kernel: impl Fn(f64) -> f64) -> Result<(), LevelUnavailable> {
    level
        .run(
            #[inline(always)]
            || {
                for v in x.iter_mut() {
                    *v = kernel(*v);
                }
            },
        )
        .ok_or(LevelUnavailable(level))
}

macro_rules! slice_functions {
    ($kernel:ident, $into:ident, $in_place:ident, $into_at:ident, $in_place_at:ident, $what:literal) => {
        #[doc = concat!("`dst[i] = ", $what, "(src[i])` at the best level this CPU has (see the module docs for the bound).")]
        ///
        /// # Panics
        /// If the slices' lengths differ.
        pub fn $into(src: &[f64], dst: &mut [f64]) {
            // Scalar is always available, so `best()` cannot fail.
            let _ = $into_at(Level::best(), src, dst);
        }

        #[doc = concat!("`x[i] = ", $what, "(x[i])` at the best level this CPU has.")]
        pub fn $in_place(x: &mut [f64]) {
            let _ = $in_place_at(Level::best(), x);
        }

        #[doc = concat!("`dst[i] = ", $what, "(src[i])` at the given level (tests and benchmarks).")]
        ///
        /// # Errors
        /// [`LevelUnavailable`] if the CPU lacks `level`.
        ///
        /// # Panics
        /// If the slices' lengths differ.
        pub fn $into_at(level: Level, src: &[f64], dst: &mut [f64]) -> Result<(), LevelUnavailable> {
            map_into(level, src, dst, $kernel)
        }

        #[doc = concat!("`x[i] = ", $what, "(x[i])` at the given level.")]
        ///
        /// # Errors
        /// [`LevelUnavailable`] if the CPU lacks `level`.
        pub fn $in_place_at(level: Level, x: &mut [f64]) -> Result<(), LevelUnavailable> {
            map_in_place(level, x, $kernel)
        }
    };
}

slice_functions!(exp_kernel, exp_into, exp_in_place, exp_into_at, exp_in_place_at, "exp");
slice_functions!(ln_kernel, ln_into, ln_in_place, ln_into_at, ln_in_place_at, "ln");
slice_functions!(log1p_kernel, log1p_into, log1p_in_place, log1p_into_at, log1p_in_place_at, "log1p");
slice_functions!(sigmoid_kernel, sigmoid_into, sigmoid_in_place, sigmoid_into_at, sigmoid_in_place_at, "sigmoid");
slice_functions!(softplus_kernel, softplus_into, softplus_in_place, softplus_into_at, softplus_in_place_at, "softplus");
slice_functions!(
    log_sigmoid_kernel,
    log_sigmoid_into,
    log_sigmoid_in_place,
    log_sigmoid_into_at,
    log_sigmoid_in_place_at,
    "log_sigmoid"
);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Points per accuracy test.
    const N: usize = 1_000_000;

    /// Distance in units in the last place: the number of doubles between `a` and `b` (0 for equal values,
    /// both NaN, or ±0; `u64::MAX` if exactly one is NaN).
    fn ulps(a: f64, b: f64) -> u64 {
        if a.is_nan() || b.is_nan() {
            return if a.is_nan() && b.is_nan() { 0 } else { u64::MAX };
        }
        let ordered = |v: f64| {
            let bits = v.to_bits() as i64;
            if bits < 0 { i64::MIN - bits } else { bits }
        };
        ordered(a).abs_diff(ordered(b))
    }

    fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(lo..=hi)).collect()
    }

    /// `n` points `±10^u`, u uniform on [lo_exp, hi_exp], signs as given.
    fn log_uniform(rng: &mut ChaCha8Rng, lo_exp: f64, hi_exp: f64, negative_too: bool, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let v = 10f64.powf(rng.random_range(lo_exp..=hi_exp));
                if negative_too && rng.random::<bool>() { -v } else { v }
            })
            .collect()
    }

    /// Largest ulp distance of `into` at the best level from `reference`, with the worst point.
    fn worst_ulps(points: &[f64], into: fn(&[f64], &mut [f64]), reference: impl Fn(f64) -> f64) -> (u64, f64) {
        let mut out = vec![0.0; points.len()];
        into(points, &mut out);
        points
            .iter()
            .zip(&out)
            .map(|(&x, &y)| (ulps(y, reference(x)), x))
            .fold((0, f64::NAN), |acc, e| if e.0 > acc.0 { e } else { acc })
    }

    fn libm_sigmoid(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    fn libm_softplus(x: f64) -> f64 {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }

    fn libm_log_sigmoid(x: f64) -> f64 {
        x.min(0.0) - (-x.abs()).exp().ln_1p()
    }

    fn exp_points() -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut p = uniform(&mut rng, -745.2, 709.78, N);
        p.extend(log_uniform(&mut rng, -300.0, 2.0, true, N / 4));
        p.extend(uniform(&mut rng, -745.2, -708.0, N / 10)); // subnormal results
        p
    }

    fn ln_points() -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // Uniform over the bit patterns of positive finite doubles: every binade, subnormals included.
        let mut p: Vec<f64> = (0..N).map(|_| f64::from_bits(rng.random_range(1..0x7fef_ffff_ffff_ffffu64))).collect();
        p.extend(uniform(&mut rng, 0.5, 2.0, N / 4)); // around 1, where ln is small
        p.extend((0..N / 10).map(|_| f64::from_bits(rng.random_range(1..0x0010_0000_0000_0000u64))));
        p
    }

    fn log1p_points() -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut p = uniform(&mut rng, -1.0 + 1e-15, 1.0, N / 2);
        p.extend(log_uniform(&mut rng, -300.0, 300.0, false, N / 4));
        p.extend(
            log_uniform(&mut rng, -300.0, 0.0, false, N / 8).into_iter().map(|v| -v).filter(|&v| v >= -1.0 + 1e-15),
        );
        p.extend(log_uniform(&mut rng, -15.0, 0.0, false, N / 8).into_iter().map(|v| -1.0 + v).filter(|&v| v > -1.0));
        p
    }

    fn logistic_points() -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut p = uniform(&mut rng, -745.0, 745.0, N / 2);
        p.extend(uniform(&mut rng, -40.0, 40.0, N / 4));
        p.extend(log_uniform(&mut rng, -300.0, 2.5, true, N / 4));
        p
    }

    #[test]
    fn exp_is_within_1_ulp_of_libm() {
        let (worst, at) = worst_ulps(&exp_points(), exp_into, f64::exp);
        eprintln!("exp: worst {worst} ulps (at x = {at:e})");
        assert!(worst <= 1, "exp: {worst} ulps at x = {at:e}");
    }

    #[test]
    fn ln_is_within_1_ulp_of_libm() {
        let (worst, at) = worst_ulps(&ln_points(), ln_into, f64::ln);
        eprintln!("ln: worst {worst} ulps (at x = {at:e})");
        assert!(worst <= 1, "ln: {worst} ulps at x = {at:e}");
    }

    #[test]
    fn log1p_is_within_1_ulp_of_libm() {
        let (worst, at) = worst_ulps(&log1p_points(), log1p_into, f64::ln_1p);
        eprintln!("log1p: worst {worst} ulps (at x = {at:e})");
        assert!(worst <= 1, "log1p: {worst} ulps at x = {at:e}");
    }

    #[test]
    fn sigmoid_is_within_2_ulps_of_libm() {
        let (worst, at) = worst_ulps(&logistic_points(), sigmoid_into, libm_sigmoid);
        eprintln!("sigmoid: worst {worst} ulps (at x = {at:e})");
        assert!(worst <= 2, "sigmoid: {worst} ulps at x = {at:e}");
    }

    #[test]
    fn softplus_and_log_sigmoid_are_within_2_ulps_of_libm() {
        let mut points = logistic_points();
        points.extend(log_uniform(&mut ChaCha8Rng::seed_from_u64(5), 2.5, 300.0, false, N / 10));
        let (worst, at) = worst_ulps(&points, softplus_into, libm_softplus);
        eprintln!("softplus: worst {worst} ulps (at x = {at:e})");
        assert!(worst <= 2, "softplus: {worst} ulps at x = {at:e}");
        let (worst, at) = worst_ulps(&logistic_points(), log_sigmoid_into, libm_log_sigmoid);
        eprintln!("log_sigmoid: worst {worst} ulps (at x = {at:e})");
        assert!(worst <= 2, "log_sigmoid: {worst} ulps at x = {at:e}");
    }

    /// Special inputs: zeros, subnormals, extremes, infinities, NaN and the overflow/underflow thresholds.
    fn edge_points() -> Vec<f64> {
        vec![
            0.0,
            -0.0,
            f64::from_bits(1),
            -f64::from_bits(1),
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 3.0,
            f64::EPSILON,
            1.0,
            -1.0,
            -1.0 + f64::EPSILON / 2.0,
            -1.0 - f64::EPSILON,
            2.0,
            709.78,
            709.79,
            710.0,
            -708.4,
            -745.13,
            -745.14,
            -746.0,
            -1e300,
            1e300,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]
    }

    #[test]
    fn edge_cases_match_libm() {
        type Case = (&'static str, fn(&[f64], &mut [f64]), fn(f64) -> f64, u64);
        let cases: [Case; 6] = [
            ("exp", exp_into, f64::exp, 1),
            ("ln", ln_into, f64::ln, 1),
            ("log1p", log1p_into, f64::ln_1p, 1),
            ("sigmoid", sigmoid_into, libm_sigmoid, 2),
            ("softplus", softplus_into, libm_softplus, 2),
            ("log_sigmoid", log_sigmoid_into, libm_log_sigmoid, 2),
        ];
        let points = edge_points();
        for (name, into, reference, bound) in cases {
            let mut out = vec![0.0; points.len()];
            into(&points, &mut out);
            for (&x, &y) in points.iter().zip(&out) {
                let want = reference(x);
                assert!(ulps(y, want) <= bound, "{name}({x:e}) = {y:e}, libm {want:e}");
                // Zeros and infinities exactly, with their sign.
                if want == 0.0 || want.is_infinite() {
                    assert_eq!(y.to_bits(), want.to_bits(), "{name}({x:e}) = {y:e}, libm {want:e}");
                }
            }
        }
        // The thresholds themselves.
        let mut out = [0.0; 4];
        exp_into(&[-745.14, 709.79, f64::NEG_INFINITY, f64::INFINITY], &mut out);
        assert_eq!(out, [0.0, f64::INFINITY, 0.0, f64::INFINITY]);
        ln_into(&[0.0, -1.0, f64::INFINITY, 1.0], &mut out);
        assert!(out[0] == f64::NEG_INFINITY && out[1].is_nan() && out[2] == f64::INFINITY && out[3] == 0.0);
    }

    type AtFn = fn(Level, &[f64], &mut [f64]) -> Result<(), LevelUnavailable>;
    type InPlaceAtFn = fn(Level, &mut [f64]) -> Result<(), LevelUnavailable>;

    /// Every function: the same bits at every level this CPU has, out of place and in place, on inputs whose
    /// lengths leave every possible vector remainder.
    #[test]
    fn every_available_level_gives_identical_bits() {
        let functions: [(&str, AtFn, InPlaceAtFn); 6] = [
            ("exp", exp_into_at, exp_in_place_at),
            ("ln", ln_into_at, ln_in_place_at),
            ("log1p", log1p_into_at, log1p_in_place_at),
            ("sigmoid", sigmoid_into_at, sigmoid_in_place_at),
            ("softplus", softplus_into_at, softplus_in_place_at),
            ("log_sigmoid", log_sigmoid_into_at, log_sigmoid_in_place_at),
        ];
        let mut points = edge_points();
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        points.extend(uniform(&mut rng, -800.0, 800.0, 20_000));
        points.extend(log_uniform(&mut rng, -320.0, 308.0, true, 20_000));
        points.extend(uniform(&mut rng, -1.0, 1.0, 20_000));
        let levels: Vec<Level> = Level::ALL.into_iter().filter(|l| l.is_available()).collect();
        assert!(levels.contains(&Level::Scalar));
        for (name, into_at, in_place_at) in functions {
            for len in [points.len(), 1, 3, 5, 7, 9, 15, 17] {
                let src = &points[points.len() - len..];
                let mut reference = vec![0.0; len];
                into_at(Level::Scalar, src, &mut reference).unwrap();
                for &level in &levels {
                    let mut out = vec![0.0; len];
                    into_at(level, src, &mut out).unwrap();
                    let mut in_place = src.to_vec();
                    in_place_at(level, &mut in_place).unwrap();
                    for i in 0..len {
                        assert_eq!(out[i].to_bits(), reference[i].to_bits(), "{name} {level:?}({:e})", src[i]);
                        assert_eq!(in_place[i].to_bits(), reference[i].to_bits(), "{name} {level:?} in place");
                    }
                }
            }
        }
    }

    #[test]
    fn level_detection_agrees_with_the_cpu_flags() {
        #[cfg(target_arch = "x86_64")]
        {
            let v3 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let v4 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl");
            assert_eq!(Level::Avx2.is_available(), v3);
            assert_eq!(Level::Avx512.is_available(), v4 && v3);
            let expected = if v4 && v3 {
                Level::Avx512
            } else if v3 {
                Level::Avx2
            } else {
                Level::Scalar
            };
            assert_eq!(Level::best(), expected);
        }
        assert!(Level::Scalar.is_available());
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn mismatched_lengths_panic() {
        exp_into(&[1.0, 2.0], &mut [0.0]);
    }
}
