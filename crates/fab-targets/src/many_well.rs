//! The Double Well / Many Well energy of the FAB papers: `dim/2` independent pairs of a double-well and a
//! Gaussian coordinate, with exact `log Z`, a rejection sampler, and the papers' mode test sets.

use crate::error::TargetError;
use crate::quadrature::simpson;
use crate::target::{LN_2PI, ModeSets, Moments, Target};
use fab_core::{Batch, BatchMut, ExactSampler, LogDensity, stream_rng};
use rand::{Rng, RngCore};
use rand_distr::{Distribution, StandardNormal};

/// Linear coefficient `a` of the double-well energy `a x + b x² + c x⁴`.
pub const WELL_A: f64 = -0.5;
/// Quadratic coefficient `b` of the double-well energy.
pub const WELL_B: f64 = -6.0;
/// Quartic coefficient `c` of the double-well energy.
pub const WELL_C: f64 = 1.0;
/// Precision `d` of the Gaussian coordinate (energy `½ d y²`).
pub const GAUSS_D: f64 = 1.0;
/// `Z₁ = ∫ exp(−x⁴ + 6x² + x/2) dx`, the value hard-coded in fab-torch and fab-jax (quadrature gives 11784.509265).
pub const DOUBLE_WELL_Z: f64 = 11784.50927;
/// Position `±1.7` of the wells in the hand-crafted mode test sets.
pub const MODE_CENTRE: f64 = 1.7;
/// Standard deviation of the noise added to the modes in the 2021 test set.
pub const MODE_NOISE_STD_2021: f64 = 0.2;
/// Seed of the random mode subset of the ICLR test set when `dim ≥ 40` (fixed, so the set is reproducible).
pub const MODE_SUBSET_SEED: u64 = 0x4D57_4D4F_4445_5331;

/// From this dimension on, the mode test sets are random subsets instead of all `2^(dim/2)` modes.
const FULL_MODE_SET_MAX_DIM: usize = 38;
const N_RANDOM_MODES_ICLR: usize = 10_000;
const N_RANDOM_MODES_2021: usize = 1_000;

/// Proposal of the rejection sampler: `0.2·N(−1.7, 0.5²) + 0.8·N(1.7, 0.5²)` (as in fab-torch).
const PROPOSAL_WEIGHT_LEFT: f64 = 0.2;
const PROPOSAL_MEAN: f64 = 1.7;
const PROPOSAL_STD: f64 = 0.5;
/// Envelope `k` with `p̃(x) ≤ k q(x)` for all `x`: `k = 3 Z₁`. The supremum of `p̃/(Z₁ q)` is ≈ 2.5912 (at
/// x ≈ 1.7625), so the bound holds with margin; tests check it on a fine grid, and beyond `|x| > 4` the log ratio
/// `−x⁴ + O(x²)` only decreases. Acceptance rate `Z₁/k = 1/3`.
const ENVELOPE_OVER_Z: f64 = 3.0;

/// The Many Well target in an even dimension: `log p̃(x) = −Σ_i E(x_{2i}, x_{2i+1})` with
/// `E(x, y) = a x + b x² + c x⁴ + ½ d y²`, `a = −0.5, b = −6, c = 1, d = 1` (SPEC §1b).
/// Even 0-based coordinates are double-well coordinates, odd ones are standard Gaussian.
///
/// The density is *unnormalised*; `log_z = (dim/2)(ln Z₁ + ½ ln 2π)`.
///
/// Exact samples: each double-well coordinate by rejection sampling from the two-Gaussian proposal with
/// envelope `3 Z₁` (exact, no discretisation), each Gaussian coordinate from `N(0, 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManyWell {
    name: String,
    dim: usize,
}

/// `−(a x + b x² + c x⁴)`: the unnormalised log density of one double-well coordinate.
#[inline]
pub fn double_well_log_density(x: f64) -> f64 {
    let x2 = x * x;
    -(WELL_A * x + WELL_B * x2 + WELL_C * x2 * x2)
}

/// `d/dx` of [`double_well_log_density`]: `−(a + 2 b x + 4 c x³)`.
#[inline]
fn grad_double_well_log_density(x: f64) -> f64 {
    -(WELL_A + 2.0 * WELL_B * x + 4.0 * WELL_C * x * x * x)
}

/// Normalised log density of the rejection proposal.
fn log_proposal_density(x: f64) -> f64 {
    let log_norm = -PROPOSAL_STD.ln() - 0.5 * LN_2PI;
    let left = PROPOSAL_WEIGHT_LEFT.ln() + log_norm - 0.5 * ((x + PROPOSAL_MEAN) / PROPOSAL_STD).powi(2);
    let right = (1.0 - PROPOSAL_WEIGHT_LEFT).ln() + log_norm - 0.5 * ((x - PROPOSAL_MEAN) / PROPOSAL_STD).powi(2);
    let m = left.max(right);
    m + ((left - m).exp() + (right - m).exp()).ln()
}

/// `ln p̃(x) − ln(k q(x))`, which the envelope keeps at or below 0. Exposed for the envelope test.
pub fn log_envelope_ratio(x: f64) -> f64 {
    double_well_log_density(x) - (ENVELOPE_OVER_Z * DOUBLE_WELL_Z).ln() - log_proposal_density(x)
}

/// One exact draw from `p̃(x) ∝ exp(−x⁴ + 6x² + x/2)` by rejection: propose `z ~ q`, accept if `u k q(z) < p̃(z)`.
pub fn sample_double_well(rng: &mut dyn RngCore) -> f64 {
    loop {
        let centre = if rng.random::<f64>() < PROPOSAL_WEIGHT_LEFT { -PROPOSAL_MEAN } else { PROPOSAL_MEAN };
        let n: f64 = StandardNormal.sample(rng);
        let z = centre + PROPOSAL_STD * n;
        let u: f64 = rng.random();
        if u.ln() < log_envelope_ratio(z) {
            return z;
        }
    }
}

/// Integration box for the double-well marginal: `p̃(±6) ≈ e^{−1077}`, so nothing outside it counts.
const QUADRATURE_HALF_WIDTH: f64 = 6.0;
const QUADRATURE_INTERVALS: usize = 24_000;

/// `∫ x^power p̃(x) dx` over the double-well coordinate by composite Simpson on `[−6, 6]`.
pub fn double_well_raw_moment(power: i32) -> f64 {
    simpson(
        |x| x.powi(power) * double_well_log_density(x).exp(),
        -QUADRATURE_HALF_WIDTH,
        QUADRATURE_HALF_WIDTH,
        QUADRATURE_INTERVALS,
    )
}

impl ManyWell {
    /// The Many Well in `dim` dimensions; `dim` must be even and at least 2.
    pub fn new(dim: usize) -> Result<Self, TargetError> {
        if dim < 2 || !dim.is_multiple_of(2) {
            return Err(TargetError::InvalidDimension {
                target: "ManyWell",
                dim,
                reason: "must be even and at least 2",
            });
        }
        let name = if dim == 2 { "double_well".to_string() } else { format!("many_well_{dim}") };
        Ok(Self { name, dim })
    }

    /// The 2-D Double Well: one pair `(x1 double-well, x2 Gaussian)`.
    pub fn double_well() -> Self {
        Self::new(2).expect("2 is a valid Many Well dimension")
    }

    /// Number of double-well coordinates, `dim/2`.
    pub fn n_wells(&self) -> usize {
        self.dim / 2
    }

    /// The ICLR mode test set: every combination of `±1.7` in the even coordinates, 0 in the odd ones, in
    /// `meshgrid` order (the first well varies slowest, `−1.7` before `+1.7`). For `dim ≥ 40`, 10⁴ modes drawn
    /// uniformly (with replacement) from a generator with the fixed seed [`MODE_SUBSET_SEED`].
    pub fn mode_test_set_iclr(&self) -> Batch {
        match self.dim <= FULL_MODE_SET_MAX_DIM {
            true => self.all_modes(),
            false => self.random_modes(&mut stream_rng(MODE_SUBSET_SEED, 0), N_RANDOM_MODES_ICLR),
        }
    }

    /// The 2021 test set: the modes (all of them for `dim < 40`, else 10³ random ones drawn from `rng`) plus
    /// `0.2·N(0, I)` noise on every coordinate, re-drawn on every call as in the reference.
    pub fn mode_test_set_2021(&self, rng: &mut dyn RngCore) -> Batch {
        let mut modes = match self.dim <= FULL_MODE_SET_MAX_DIM {
            true => self.all_modes(),
            false => self.random_modes(rng, N_RANDOM_MODES_2021),
        };
        for x in modes.as_mut_slice() {
            let z: f64 = StandardNormal.sample(rng);
            *x += MODE_NOISE_STD_2021 * z;
        }
        modes
    }

    /// All `2^(dim/2)` modes; mode `m` has `+1.7` in well `j` iff bit `n_wells − 1 − j` of `m` is set.
    fn all_modes(&self) -> Batch {
        let n_wells = self.n_wells();
        let n_modes = 1usize << n_wells;
        let mut modes = Batch::zeros(n_modes, self.dim);
        for m in 0..n_modes {
            let row = modes.row_mut(m);
            for j in 0..n_wells {
                let positive = (m >> (n_wells - 1 - j)) & 1 == 1;
                row[2 * j] = if positive { MODE_CENTRE } else { -MODE_CENTRE };
            }
        }
        modes
    }

    /// `n_modes` modes with independent uniformly random signs per well.
    fn random_modes(&self, rng: &mut dyn RngCore, n_modes: usize) -> Batch {
        let mut modes = Batch::zeros(n_modes, self.dim);
        for m in 0..n_modes {
            for j in 0..self.n_wells() {
                modes.row_mut(m)[2 * j] = if rng.random::<bool>() { MODE_CENTRE } else { -MODE_CENTRE };
            }
        }
        modes
    }

    #[inline]
    fn log_p(&self, x: &[f64]) -> f64 {
        x.chunks_exact(2).map(|pair| double_well_log_density(pair[0]) - 0.5 * GAUSS_D * pair[1] * pair[1]).sum()
    }

    #[inline]
    fn log_p_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        for (g, pair) in grad.chunks_exact_mut(2).zip(x.chunks_exact(2)) {
            g[0] = grad_double_well_log_density(pair[0]);
            g[1] = -GAUSS_D * pair[1];
        }
        self.log_p(x)
    }
}

impl LogDensity for ManyWell {
    fn dim(&self) -> usize {
        self.dim
    }

    fn log_prob(&self, x: &[f64]) -> f64 {
        debug_assert_eq!(x.len(), self.dim);
        self.log_p(x)
    }

    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        debug_assert_eq!(x.len(), self.dim);
        self.log_p_and_grad(x, grad)
    }
}

impl ExactSampler for ManyWell {
    fn sample_exact_into(&self, rng: &mut dyn RngCore, mut out: BatchMut<'_>) {
        assert_eq!(out.dim(), self.dim, "sample_exact_into: output dimension");
        for row in out.rows_mut() {
            for pair in row.chunks_exact_mut(2) {
                pair[0] = sample_double_well(rng);
                let z: f64 = StandardNormal.sample(rng);
                pair[1] = z / GAUSS_D.sqrt();
            }
        }
    }
}

impl Target for ManyWell {
    fn exact_sampler(&self) -> Option<&dyn ExactSampler> {
        Some(self)
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// The ICLR mode set (exact modes) and the 2021 one (modes plus `0.2·N(0, I)` noise drawn from `rng`).
    fn mode_sets(&self, rng: &mut dyn RngCore) -> Option<ModeSets> {
        Some(ModeSets { exact: self.mode_test_set_iclr(), noisy: Some(self.mode_test_set_2021(rng)) })
    }

    /// `(dim/2)(ln Z₁ + ½ ln 2π)` with the hard-coded `Z₁` of the reference code.
    fn log_z(&self) -> Option<f64> {
        Some(self.n_wells() as f64 * (DOUBLE_WELL_Z.ln() + 0.5 * (LN_2PI - GAUSS_D.ln())))
    }

    /// Double-well coordinates: moments by quadrature (see [`double_well_raw_moment`]); Gaussian ones: `N(0, 1/d)`.
    fn moments(&self) -> Option<Moments> {
        let z = double_well_raw_moment(0);
        let raw: Vec<f64> = (1..=4).map(|p| double_well_raw_moment(p) / z).collect();
        let mean = raw[0];
        let variance = raw[1] - mean * mean;
        let fourth = raw[3] - 4.0 * mean * raw[2] + 6.0 * mean * mean * raw[1] - 3.0 * mean.powi(4);
        let gauss_var = 1.0 / GAUSS_D;
        let mut moments = Moments { mean: Vec::new(), variance: Vec::new(), fourth_central: Vec::new() };
        for _ in 0..self.n_wells() {
            moments.mean.extend([mean, 0.0]);
            moments.variance.extend([variance, gauss_var]);
            moments.fourth_central.extend([fourth, 3.0 * gauss_var * gauss_var]);
        }
        Some(moments)
    }
}
