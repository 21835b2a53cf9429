//! Vectorisable `exp`, `ln`, `ln_1p` and logistic over slices, bit-identical on every SIMD level, for `Math::Vector`.
//!
//! Why: libm's scalar `exp`/`ln_1p` are opaque calls, so a loop over them runs one element at a time. Each kernel
//! here is branch-free scalar code on one `f64` (range reduction, a Taylor polynomial evaluated with
//! [`f64::mul_add`], the power of two built from integer bits, edge cases by selects) that LLVM vectorises when the
//! loop over a slice is compiled with AVX2 or AVX-512 enabled.
//!
//! Dispatch: the same generic loop is compiled three times (AVX-512F/DQ/VL + FMA, AVX2 + FMA, and the target's
//! baseline), and the best level the CPU has is detected once and cached. No cargo feature is involved (pulp's
//! `x86-v4` would change faer's GEMM kernels). Every level performs the same sequence of IEEE-754 operations (a
//! `mul_add` is one fused operation on every level; on the baseline it is libm's exact `fma`, slow but correctly
//! rounded), so **all levels give identical bits**, and `Math::Vector` results do not depend on the machine.
//!
//! Accuracy against the platform libm (measured by the tests in `vmath/tests.rs`, which fail above the bound):
//! `exp` ≤ 1 ulp on `[−745, 709.7]` (subnormal results are computed, not flushed: they are correctly rounded from
//! the polynomial's value, which may still differ from libm by 1 in the last subnormal bit), `ln` ≤ 1 ulp on positive
//! finite inputs (subnormals included), `ln_1p` ≤ 1 ulp on `(−1, ∞)`, logistic ≤ 2 ulp on `[−750, 750]` against the
//! same formula evaluated with libm's `exp`. Non-finite inputs: NaN → NaN; `exp(+∞) = +∞`, `exp(−∞) = 0`, `exp` of a
//! large argument overflows to `+∞` and of a very negative one underflows to `0`; `ln(±0) = −∞`, `ln(x < 0) = NaN`,
//! `ln(+∞) = +∞`; `ln_1p(−1) = −∞`, `ln_1p(x < −1) = NaN`, `ln_1p(±0) = ±0`; logistic(±∞) = 1 / 0.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};

// ---------------------------------------------------------------------------------------------- element kernels

/// `1.5·2⁵²`: adding it to a double of magnitude < 2⁵¹ rounds that double to an integer (ties to even) held in the
/// low mantissa bits, with no float→int conversion instruction (AVX2 has none for 64-bit integers).
const MAGIC: f64 = 6_755_399_441_055_744.0;
/// `2⁵²`: `from_bits(k | bits(2⁵²)) − 2⁵²` turns a small non-negative integer `k` into a double.
const TWO_52: f64 = 4_503_599_627_370_496.0;
/// `ln 2` split so that `n·LN2_HI` is exact for `|n| < 2¹¹` (its low 32 mantissa bits are zero; fdlibm's split).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
/// `ln 2 − LN2_HI`.
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// Coefficients of `q(r) = (eʳ − 1 − r)/r²`, highest degree first: `1/14!, 1/13!, …, 1/3!, 1/2!`.
const EXP_Q: [f64; 13] = [
    1.0 / 87_178_291_200.0,
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];

/// Coefficients of `R(z)/z` with `2·atanh(s) = 2s + s·R(s²)`, highest degree first: `2/21, 2/19, …, 2/3`.
const LN_R: [f64; 10] = [
    2.0 / 21.0,
    2.0 / 19.0,
    2.0 / 17.0,
    2.0 / 15.0,
    2.0 / 13.0,
    2.0 / 11.0,
    2.0 / 9.0,
    2.0 / 7.0,
    2.0 / 5.0,
    2.0 / 3.0,
];

/// Horner's scheme with fused multiply-adds, coefficients highest degree first (unrolled: the slice is constant).
#[inline(always)]
fn horner(x: f64, coeffs: &[f64]) -> f64 {
    let mut acc = coeffs[0];
    for &c in &coeffs[1..] {
        acc = acc.mul_add(x, c);
    }
    acc
}

/// `2ᵏ` for an integer-valued `k` in `[−1022, 1023]`: the biased exponent `k + 1023` is an integer below 2¹¹,
/// which the magic add places in the low mantissa bits; shifting left by 52 moves it into the exponent field (the
/// magic constant's own set bit, bit 51, is shifted out).
#[inline(always)]
fn pow2(k: f64) -> f64 {
    f64::from_bits((k + 1023.0 + MAGIC).to_bits() << 52)
}

/// `eˣ` on one element.
///
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`; `eʳ = 1 + r + r²·q(r)` with `q` the Taylor series up to `r¹²/14!`
/// (truncation below 10⁻¹⁹ relative); `1 + r` is summed exactly (Fast2Sum) so the final rounding dominates the
/// error. `2ⁿ` is applied as two factors `2^⌊n/2⌉·2^(n−⌊n/2⌉)`, so results near overflow and in the subnormal range
/// come out right with a single rounding (the first product is exact).
#[inline(always)]
fn exp_one(x: f64) -> f64 {
    exp_with(x, &EXP_Q)
}

/// [`exp_one`] with the coefficients of `q` given (the tests truncate them to check that the accuracy test fails).
#[inline(always)]
fn exp_with(x: f64, q_coeffs: &[f64]) -> f64 {
    // Beyond these every result is 0 or +∞; clamping keeps n small enough for the magic rounding and pow2.
    let xc = if x > 710.0 { 710.0 } else { x };
    let xc = if xc < -746.0 { -746.0 } else { xc };
    let n = xc.mul_add(std::f64::consts::LOG2_E, MAGIC) - MAGIC;
    // Exact: n·LN2_HI is representable and close to x.
    let r = (-n).mul_add(LN2_HI, xc);
    let r = (-n).mul_add(LN2_LO, r);
    let q = horner(r, q_coeffs);
    let hi = 1.0 + r;
    let lo = (1.0 - hi) + r;
    let p = hi + (r * r).mul_add(q, lo);
    let n1 = (n * 0.5 + MAGIC) - MAGIC;
    let y = p * pow2(n1) * pow2(n - n1);
    // NaN stays NaN (the arithmetic above would give some NaN, but return the input's).
    if x.is_nan() { x } else { y }
}

/// `ln(u) + corr` for a positive normal `u` scaled by `2^(−k_extra)` (so `ln` of the original is this plus
/// `k_extra·ln 2`) and a correction `|corr| ≪ ulp(ln u)`; the shared core of [`ln_one`] and [`ln_1p_one`].
///
/// `u = 2ᵏ·m` with `m ∈ [√½, √2)` (the exponent split by one integer add, as in musl), `f = m − 1`, and
/// `ln(1 + f) = f − f²/2 + s·(f²/2 + R(s²))` with `s = f/(2 + f)` and `R` the series of `2·atanh(s)/s − 2` up to
/// `s²⁰` (fdlibm's form). The rounding error of `f²/2` is recovered by an FMA, and `k·ln 2 + f` is summed exactly
/// (Fast2Sum: `|k·ln 2| ≥ |f|` or `k = 0`), so only the final addition and the small correction terms round.
#[inline(always)]
fn ln_core(u: f64, k_extra: f64, corr: f64, r_coeffs: &[f64]) -> f64 {
    const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
    let ix = u.to_bits().wrapping_add(0x3ff0_0000_0000_0000 - SQRT_HALF_BITS);
    // The biased exponent of u/√½ as a double (u > 0, so the shifted value is at most 0x7ff).
    let k = f64::from_bits((ix >> 52) | TWO_52.to_bits()) - (TWO_52 + 1023.0) - k_extra;
    let m = f64::from_bits((ix & 0x000f_ffff_ffff_ffff).wrapping_add(SQRT_HALF_BITS));
    let f = m - 1.0;
    let half_f = 0.5 * f;
    let hfsq = half_f * f;
    // f²/2 − hfsq exactly.
    let hfsq_lo = half_f.mul_add(f, -hfsq);
    let s = f / (2.0 + f);
    let z = s * s;
    let r = horner(z, r_coeffs);
    let r = r * z;
    // ln(1 + f) − f with the rounded hfsq, then the term that replaces it by the exact f²/2.
    let lo = s.mul_add(hfsq + r, -hfsq);
    let lo = (-hfsq_lo).mul_add(1.0 - s, lo);
    let a = k * LN2_HI;
    let s1 = a + f;
    let e1 = f - (s1 - a);
    s1 + (lo + (e1 + k.mul_add(LN2_LO, corr)))
}

/// Natural logarithm on one element (positive subnormals are scaled by 2⁵⁴ first).
#[inline(always)]
fn ln_one(x: f64) -> f64 {
    ln_with(x, &LN_R)
}

/// [`ln_one`] with the coefficients of `R` given (truncated by a test).
#[inline(always)]
fn ln_with(x: f64, r_coeffs: &[f64]) -> f64 {
    let sub = x < f64::MIN_POSITIVE;
    let u = if sub { x * 18_014_398_509_481_984.0 } else { x }; // 2⁵⁴
    let k_extra = if sub { 54.0 } else { 0.0 };
    let y = ln_core(u, k_extra, 0.0, r_coeffs);
    let y = if x == f64::INFINITY { x } else { y };
    let y = if x == 0.0 { f64::NEG_INFINITY } else { y };
    // Negative inputs and NaN.
    if x >= 0.0 { y } else { f64::NAN }
}

/// `ln(1 + x)` on one element: `u = 1 + x` rounded and its rounding error `c` (TwoSum), then
/// `ln(1 + x) = ln(u) + ln(1 + c/u) ≈ ln(u) + c/u` (`|c/u| ≤ 2⁻⁵³`, so the dropped term is below 2⁻¹⁰⁷).
/// `u ≥ 2⁻⁵³` for `x > −1`, so the core never sees a subnormal.
#[inline(always)]
fn ln_1p_one(x: f64) -> f64 {
    let u = 1.0 + x;
    let bv = u - 1.0;
    let av = u - bv;
    let c = (1.0 - av) + (x - bv);
    let y = ln_core(u, 0.0, c / u, &LN_R);
    let y = if x == f64::INFINITY { x } else { y };
    // Keeps the sign of a zero, as libm does.
    let y = if x == 0.0 { x } else { y };
    let y = if x == -1.0 { f64::NEG_INFINITY } else { y };
    if x >= -1.0 { y } else { f64::NAN }
}

/// Logistic `1/(1 + e⁻ˣ)` on one element, in the stable form of the layers' scalar `sigmoid` (`e = e^{−|x|}`).
#[inline(always)]
fn logistic_one(x: f64) -> f64 {
    let e = exp_one(-x.abs());
    if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}

/// One element-wise kernel, as a type so that one generic loop serves every kernel.
trait Kernel {
    /// The kernel on one element; must be `#[inline(always)]` so it is compiled with the caller's features.
    fn eval(x: f64) -> f64;
}

/// [`exp_one`].
struct Exp;
/// [`ln_one`].
struct Ln;
/// [`ln_1p_one`].
struct Ln1p;
/// [`logistic_one`].
struct Logistic;

impl Kernel for Exp {
    #[inline(always)]
    fn eval(x: f64) -> f64 {
        exp_one(x)
    }
}
impl Kernel for Ln {
    #[inline(always)]
    fn eval(x: f64) -> f64 {
        ln_one(x)
    }
}
impl Kernel for Ln1p {
    #[inline(always)]
    fn eval(x: f64) -> f64 {
        ln_1p_one(x)
    }
}
impl Kernel for Logistic {
    #[inline(always)]
    fn eval(x: f64) -> f64 {
        logistic_one(x)
    }
}

// ---------------------------------------------------------------------------------------------- levels

/// A SIMD level the slice loops are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// AVX-512F, DQ and VL with FMA (8 doubles per vector).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
    /// AVX2 with FMA (4 doubles per vector).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2Fma,
    /// The target's baseline (SSE2 on x86-64; `mul_add` is then a libm call).
    Baseline,
}

impl Level {
    /// Every level, best first.
    #[cfg(test)]
    pub(crate) const ALL: [Level; 3] = [Level::Avx512, Level::Avx2Fma, Level::Baseline];

    /// Whether this CPU has every feature the level's code is compiled with.
    pub(crate) fn is_available(self) -> bool {
        match self {
            Level::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Fma => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Level::Avx512 | Level::Avx2Fma => false,
        }
    }

    fn code(self) -> u8 {
        match self {
            Level::Avx512 => 1,
            Level::Avx2Fma => 2,
            Level::Baseline => 3,
        }
    }
}

/// The detected level's [`Level::code`], 0 before the first call.
static DETECTED: AtomicU8 = AtomicU8::new(0);

/// The best level this CPU supports (detected on the first call, then cached).
pub(crate) fn detected_level() -> Level {
    match DETECTED.load(Ordering::Relaxed) {
        1 => Level::Avx512,
        2 => Level::Avx2Fma,
        3 => Level::Baseline,
        _ => {
            let level =
                [Level::Avx512, Level::Avx2Fma].into_iter().find(|l| l.is_available()).unwrap_or(Level::Baseline);
            DETECTED.store(level.code(), Ordering::Relaxed);
            level
        }
    }
}

// ---------------------------------------------------------------------------------------------- slice loops

/// One slice loop of a kernel; [`run_at`] compiles it once per SIMD level.
trait SliceLoop {
    fn run(self);
}

/// The loop every level compiles: `out[i] = K(x[i])` (iterators, so no bounds checks stop vectorisation).
struct MapInto<'a, K> {
    x: &'a [f64],
    out: &'a mut [f64],
    kernel: PhantomData<K>,
}

impl<K: Kernel> SliceLoop for MapInto<'_, K> {
    #[inline(always)]
    fn run(self) {
        for (o, &v) in self.out.iter_mut().zip(self.x) {
            *o = K::eval(v);
        }
    }
}

/// `x[i] = K(x[i])`.
struct MapInPlace<'a, K> {
    x: &'a mut [f64],
    kernel: PhantomData<K>,
}

impl<K: Kernel> SliceLoop for MapInPlace<'_, K> {
    #[inline(always)]
    fn run(self) {
        for v in self.x.iter_mut() {
            *v = K::eval(*v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,fma")]
fn run_avx512<L: SliceLoop>(l: L) {
    l.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2<L: SliceLoop>(l: L) {
    l.run()
}

/// Runs `l` compiled for `level`: the one place that calls a `#[target_feature]` function.
///
/// # Panics
/// If the CPU lacks `level`'s features (the dispatcher only passes detected levels).
#[allow(unsafe_code)]
fn run_at<L: SliceLoop>(level: Level, l: L) {
    assert!(level.is_available(), "vmath: this CPU lacks the features of {level:?}");
    match level {
        // SAFETY: the CPU has every feature these functions are compiled with (checked just above); their bodies
        // are safe Rust.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { run_avx512(l) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { run_avx2(l) },
        _ => l.run(),
    }
}

/// `out[i] = K(x[i])` at `level`.
///
/// # Panics
/// If the lengths differ, or the CPU lacks `level`'s features.
fn run_into<K: Kernel>(level: Level, x: &[f64], out: &mut [f64]) {
    assert_eq!(x.len(), out.len(), "vmath: input and output slices differ in length");
    run_at(level, MapInto::<K> { x, out, kernel: PhantomData })
}

/// `x[i] = K(x[i])` at `level`.
///
/// # Panics
/// If the CPU lacks `level`'s features.
fn run_in_place<K: Kernel>(level: Level, x: &mut [f64]) {
    run_at(level, MapInPlace::<K> { x, kernel: PhantomData })
}

// ---------------------------------------------------------------------------------------------- public API

/// `out[i] = exp(x[i])` (≤ 1 ulp from libm; see the module documentation for edge cases).
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn exp_slice(x: &[f64], out: &mut [f64]) {
    run_into::<Exp>(detected_level(), x, out)
}

/// `x[i] = exp(x[i])`.
pub fn exp_in_place(x: &mut [f64]) {
    run_in_place::<Exp>(detected_level(), x)
}

/// `out[i] = ln(x[i])` (≤ 1 ulp from libm on positive finite inputs).
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn ln_slice(x: &[f64], out: &mut [f64]) {
    run_into::<Ln>(detected_level(), x, out)
}

/// `x[i] = ln(x[i])`.
pub fn ln_in_place(x: &mut [f64]) {
    run_in_place::<Ln>(detected_level(), x)
}

/// `out[i] = ln(1 + x[i])` (≤ 1 ulp from libm on `(−1, ∞)`).
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn ln_1p_slice(x: &[f64], out: &mut [f64]) {
    run_into::<Ln1p>(detected_level(), x, out)
}

/// `x[i] = ln(1 + x[i])`.
pub fn ln_1p_in_place(x: &mut [f64]) {
    run_in_place::<Ln1p>(detected_level(), x)
}

/// `out[i] = 1/(1 + exp(−x[i]))` (≤ 2 ulp from the same formula with libm's `exp`).
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn logistic_slice(x: &[f64], out: &mut [f64]) {
    run_into::<Logistic>(detected_level(), x, out)
}

/// `x[i] = 1/(1 + exp(−x[i]))`.
pub fn logistic_in_place(x: &mut [f64]) {
    run_in_place::<Logistic>(detected_level(), x)
}

#[cfg(test)]
mod tests;
