//! Serialisable architecture descriptions (`FlowSpec`) and the builders for the papers' flows (SPEC.md §2a, §2b).

use crate::error::FlowError;
use serde::{Deserialize, Serialize};

/// Non-linearity between the hidden layers of a coupling conditioner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Activation {
    /// `max(a, 0)` (ICLR, `normflows` MLP with `leaky = 0`).
    Relu,
    /// `a` for `a > 0`, `slope·a` otherwise (2021: slope 0.01).
    LeakyRelu {
        /// Slope for negative inputs.
        slope: f64,
    },
}

/// How the raw conditioner output `s` becomes a positive scale `σ` (the coupling map is `u·σ + t`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ScaleMap {
    /// `σ = 2·sigmoid(s)` ∈ (0, 2), `σ = 1` at `s = 0` (2021).
    TwoSigmoid,
    /// `σ = exp(s)`, unbounded (ICLR / `normflows` `scale_map="exp"`).
    Exp,
    /// `σ = low + (high − low)·sigmoid(s + c)` with `c` chosen so that `σ = 1` at `s = 0` (fab-jax, `low < 1 < high`).
    BoundedSigmoid {
        /// Lower bound of the scale.
        low: f64,
        /// Upper bound of the scale.
        high: f64,
    },
}

/// Where the scale and shift heads sit in the conditioner output of width `2k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HeadLayout {
    /// `s = out[..k]`, `t = out[k..]` (2021 `RealNVP`).
    ScaleThenShift,
    /// `t = out[0::2]`, `s = out[1::2]` (`normflows` `AffineCoupling`).
    InterleavedShiftScale,
}

/// The direction in which a coupling applies `u·σ + t` (the other direction applies `(u − t)/σ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Direction {
    /// Data to base, `x → z`: the direction `log q(x)` is computed in.
    Density,
    /// Base to data, `z → x`: the direction samples are drawn in.
    Sampling,
}

/// An affine coupling layer: coordinates `cond` pass through and condition an MLP whose output scales and shifts
/// the coordinates `transformed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CouplingSpec {
    /// Conditioning coordinates, in the order they enter the MLP.
    pub cond: Vec<usize>,
    /// Transformed coordinates, in the order of the MLP's scale/shift heads.
    pub transformed: Vec<usize>,
    /// Hidden widths of the conditioner MLP (its input is `cond.len()`, its output `2·transformed.len()`).
    pub hidden: Vec<usize>,
    /// Non-linearity after each hidden layer.
    pub activation: Activation,
    /// Raw output → positive scale.
    pub scale_map: ScaleMap,
    /// Placement of the scale and shift heads.
    pub head_layout: HeadLayout,
    /// Direction in which `u·σ + t` is applied (2021: density; ICLR: sampling).
    pub affine_direction: Direction,
}

/// A rational-quadratic spline coupling layer (Durkan et al. 2019): coordinates `cond` pass through and condition
/// an MLP whose output defines a monotone spline with `n_bins` bins on `[−bound, bound]` for each coordinate of
/// `transformed`; outside that interval the map is the identity. A zero last layer gives the identity map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplineCouplingSpec {
    /// Conditioning coordinates, in the order they enter the MLP.
    pub cond: Vec<usize>,
    /// Transformed coordinates, in the order of the MLP's spline heads.
    pub transformed: Vec<usize>,
    /// Hidden widths of the conditioner MLP (its input is `cond.len()`, its output
    /// `transformed.len()·(3·n_bins + 1)`: widths, heights and the `n_bins + 1` knot derivatives).
    pub hidden: Vec<usize>,
    /// Non-linearity after each hidden layer.
    pub activation: Activation,
    /// Number of bins `K` (1 ..= 64).
    pub n_bins: usize,
    /// Half-width `B` of the spline's interval `[−B, B]`.
    pub bound: f64,
    /// Smallest bin width (`n_bins·min_bin_width < 2B`).
    pub min_bin_width: f64,
    /// Smallest bin height (`n_bins·min_bin_height < 2B`).
    pub min_bin_height: f64,
    /// Smallest knot derivative (in `(0, 1)`).
    pub min_derivative: f64,
    /// Direction in which the spline `g` is applied (the other direction applies `g⁻¹`); fab-jax: sampling.
    pub spline_direction: Direction,
}

impl SplineCouplingSpec {
    /// Number of conditioner parameters: weights (`out × in`) and biases of every linear layer.
    pub fn n_params(&self) -> usize {
        self.mlp_sizes().windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }
    /// Layer widths of the conditioner, input to output.
    pub fn mlp_sizes(&self) -> Vec<usize> {
        let mut sizes = vec![self.cond.len()];
        sizes.extend_from_slice(&self.hidden);
        sizes.push(self.transformed.len() * (3 * self.n_bins + 1));
        sizes
    }
}

/// One layer of a flow; `FlowSpec::layers` lists them in sampling order (base → data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LayerSpec {
    /// Affine coupling with an MLP conditioner.
    Coupling(CouplingSpec),
    /// ActNorm (2021): density direction `x·softplus(scale) + loc`; data-dependent initialisation.
    ActNorm,
    /// LU-parameterised invertible linear map `W = P·L·U` (ICLR `InvertibleAffine`), random-orthogonal initialisation.
    LuLinear,
    /// Learnable global scale (2021 `widen`): sampling direction `x = z·s`.
    GlobalScale {
        /// Initial value of `s`.
        init: f64,
    },
    /// Rational-quadratic spline coupling with an MLP conditioner (fab-jax's GMM flow).
    SplineCoupling(SplineCouplingSpec),
}

/// The base distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BaseSpec {
    /// Fixed `N(0, I)` (2021).
    StandardNormal,
    /// `N(loc, diag(exp(log_scale))²)` with trainable `loc` (init 0) and `log_scale` (init 0) (ICLR `DiagGaussian`).
    DiagGaussian,
}

/// How a flow evaluates the element-wise transcendentals of its affine couplings' scale maps.
///
/// Not part of the architecture (the same weights mean the same flow either way); the two choices agree to about
/// 1e-13 relative in log q and its gradients, but not bit for bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Math {
    /// libm's scalar `exp`, `ln_1p`, `ln` per element: the numerics every recorded result was computed with.
    #[default]
    Libm,
    /// [`crate::vmath`]'s vectorised kernels over the whole block of scale logits (≤ 1 ulp from libm each;
    /// bit-identical on every SIMD level).
    Vector,
}

impl Math {
    /// Whether this is the default, [`Math::Libm`] (which is not written out, so files keep their bytes).
    pub fn is_libm(&self) -> bool {
        *self == Math::Libm
    }
}

/// A complete flow architecture: what fab-train/fab-cli read from a config to build a [`crate::Flow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowSpec {
    /// Dimension of the space.
    pub dim: usize,
    /// Layers in sampling order: `layers[0]` acts first on the base draw.
    pub layers: Vec<LayerSpec>,
    /// Base distribution.
    pub base: BaseSpec,
    /// Numerics of the coupling scale maps. Absent in a file or config means [`Math::Libm`], and `Libm` is not
    /// serialised, so every file and config written before this field existed reads, and is written, unchanged.
    #[serde(default, skip_serializing_if = "Math::is_libm")]
    pub math: Math,
}

impl CouplingSpec {
    /// Number of conditioner parameters: weights (`out × in`) and biases of every linear layer.
    pub fn n_params(&self) -> usize {
        self.mlp_sizes().windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }
    /// Layer widths of the conditioner, input to output.
    pub fn mlp_sizes(&self) -> Vec<usize> {
        let mut sizes = vec![self.cond.len()];
        sizes.extend_from_slice(&self.hidden);
        sizes.push(2 * self.transformed.len());
        sizes
    }
}

impl LayerSpec {
    /// Number of trainable parameters of the layer in a flow of dimension `dim`.
    ///
    /// The LU layer stores full `D × D` matrices `L` and `U` (only the strict triangles act), exactly like
    /// `normflows`, so its count is `2D² + D` and the checkpoints map one-to-one onto PyTorch state dicts.
    pub fn n_params(&self, dim: usize) -> usize {
        match self {
            LayerSpec::Coupling(c) => c.n_params(),
            LayerSpec::ActNorm => 2 * dim,
            LayerSpec::LuLinear => 2 * dim * dim + dim,
            LayerSpec::GlobalScale { .. } => 1,
            LayerSpec::SplineCoupling(c) => c.n_params(),
        }
    }
}

/// Checks that `cond ∪ transformed` is a partition of `0..dim` into two non-empty parts.
fn check_partition(i: usize, dim: usize, cond: &[usize], transformed: &[usize]) -> Result<(), FlowError> {
    let bad = |msg: String| Err(FlowError::InvalidSpec(msg));
    if cond.is_empty() || transformed.is_empty() {
        return bad(format!("layer {i}: coupling needs at least one conditioning and one transformed coordinate"));
    }
    let mut seen = vec![false; dim];
    for &j in cond.iter().chain(transformed) {
        if j >= dim || seen[j] {
            return bad(format!("layer {i}: cond ∪ transformed must be a partition of 0..{dim}"));
        }
        seen[j] = true;
    }
    if seen.iter().any(|s| !s) {
        return bad(format!("layer {i}: cond ∪ transformed must cover 0..{dim}"));
    }
    Ok(())
}

impl BaseSpec {
    /// Number of trainable parameters of the base in dimension `dim`.
    pub fn n_params(&self, dim: usize) -> usize {
        match self {
            BaseSpec::StandardNormal => 0,
            BaseSpec::DiagGaussian => 2 * dim,
        }
    }
}

impl FlowSpec {
    /// The same flow with the coupling scale maps evaluated by `math`.
    pub fn with_math(mut self, math: Math) -> Self {
        self.math = math;
        self
    }

    /// Total number of trainable parameters.
    pub fn n_params(&self) -> usize {
        self.layers.iter().map(|l| l.n_params(self.dim)).sum::<usize>() + self.base.n_params(self.dim)
    }

    /// Checks that the description is a valid flow (partitions, widths, scale bounds).
    pub fn validate(&self) -> Result<(), FlowError> {
        let bad = |msg: String| Err(FlowError::InvalidSpec(msg));
        if self.dim == 0 {
            return bad("dimension must be at least 1".into());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                LayerSpec::Coupling(c) => {
                    check_partition(i, self.dim, &c.cond, &c.transformed)?;
                    if c.hidden.contains(&0) {
                        return bad(format!("layer {i}: hidden widths must be positive"));
                    }
                    if let ScaleMap::BoundedSigmoid { low, high } = c.scale_map
                        && !(0.0 < low && low < 1.0 && 1.0 < high && high.is_finite())
                    {
                        return bad(format!(
                            "layer {i}: bounded sigmoid needs 0 < low < 1 < high, got [{low}, {high}]"
                        ));
                    }
                    if let Activation::LeakyRelu { slope } = c.activation
                        && !(slope.is_finite() && slope >= 0.0)
                    {
                        return bad(format!("layer {i}: leaky-ReLU slope must be finite and non-negative"));
                    }
                }
                LayerSpec::GlobalScale { init } => {
                    if !(init.is_finite() && *init > 0.0) {
                        return bad(format!("layer {i}: global scale must start positive, got {init}"));
                    }
                }
                LayerSpec::SplineCoupling(c) => {
                    check_partition(i, self.dim, &c.cond, &c.transformed)?;
                    if c.hidden.contains(&0) {
                        return bad(format!("layer {i}: hidden widths must be positive"));
                    }
                    if !(1..=crate::layers::MAX_SPLINE_BINS).contains(&c.n_bins) {
                        return bad(format!(
                            "layer {i}: spline needs 1 ..= {} bins, got {}",
                            crate::layers::MAX_SPLINE_BINS,
                            c.n_bins
                        ));
                    }
                    if !(c.bound.is_finite() && c.bound > 0.0) {
                        return bad(format!("layer {i}: spline bound must be finite and positive, got {}", c.bound));
                    }
                    let room = |m: f64| m > 0.0 && (c.n_bins as f64) * m < 2.0 * c.bound;
                    if !(room(c.min_bin_width) && room(c.min_bin_height)) {
                        return bad(format!(
                            "layer {i}: minimum bin width and height must be positive with n_bins·min < 2·bound"
                        ));
                    }
                    if !(c.min_derivative > 0.0 && c.min_derivative < 1.0) {
                        return bad(format!("layer {i}: minimum spline derivative must lie in (0, 1)"));
                    }
                    if let Activation::LeakyRelu { slope } = c.activation
                        && !(slope.is_finite() && slope >= 0.0)
                    {
                        return bad(format!("layer {i}: leaky-ReLU slope must be finite and non-negative"));
                    }
                }
                LayerSpec::ActNorm | LayerSpec::LuLinear => {}
            }
        }
        Ok(())
    }

    /// The 2021 RealNVP (SPEC.md §2a): `n_blocks × [coupling, ActNorm]`, then a learnable global scale.
    ///
    /// Block `i` is "reversed" (coordinates flipped before and after the coupling) iff `i` is even; the first
    /// `⌊D/2⌋` coordinates of the (possibly flipped) vector condition a 1-hidden-layer leaky-ReLU(0.01) MLP of
    /// width `width`; scale `2·sigmoid(s)`, heads `[s | t]`, and `x₂·σ + t` in the density direction.
    pub fn realnvp_2021(dim: usize, n_blocks: usize, width: usize, widen_init: f64) -> FlowSpec {
        let n_cond = dim / 2;
        let mut layers = Vec::with_capacity(2 * n_blocks + 1);
        for i in 0..n_blocks {
            let order: Vec<usize> = if i % 2 == 0 { (0..dim).rev().collect() } else { (0..dim).collect() };
            layers.push(LayerSpec::Coupling(CouplingSpec {
                cond: order[..n_cond].to_vec(),
                transformed: order[n_cond..].to_vec(),
                hidden: vec![width],
                activation: Activation::LeakyRelu { slope: 0.01 },
                scale_map: ScaleMap::TwoSigmoid,
                head_layout: HeadLayout::ScaleThenShift,
                affine_direction: Direction::Density,
            }));
            layers.push(LayerSpec::ActNorm);
        }
        layers.push(LayerSpec::GlobalScale { init: widen_init });
        FlowSpec { dim, layers, base: BaseSpec::StandardNormal, math: Math::Libm }
    }

    /// The ICLR RealNVP (SPEC.md §2b): `n_layers × [coupling, LU linear]` with a trainable diagonal Gaussian base.
    ///
    /// The first `⌈D/2⌉` coordinates condition a 2-hidden-layer ReLU MLP of width `width`; heads interleaved
    /// (`t = out[0::2]`, `s = out[1::2]`), scale `exp(s)`, and `z₂·exp(s) + t` in the sampling direction.
    pub fn realnvp_iclr(dim: usize, n_layers: usize, width: usize) -> FlowSpec {
        let n_cond = dim.div_ceil(2);
        let mut layers = Vec::with_capacity(2 * n_layers);
        for _ in 0..n_layers {
            layers.push(LayerSpec::Coupling(CouplingSpec {
                cond: (0..n_cond).collect(),
                transformed: (n_cond..dim).collect(),
                hidden: vec![width, width],
                activation: Activation::Relu,
                scale_map: ScaleMap::Exp,
                head_layout: HeadLayout::InterleavedShiftScale,
                affine_direction: Direction::Sampling,
            }));
            layers.push(LayerSpec::LuLinear);
        }
        FlowSpec { dim, layers, base: BaseSpec::DiagGaussian, math: Math::Libm }
    }

    /// fab-jax's spline flow (`transform_type: spline`): `n_layers × [spline coupling (first ⌊D/2⌋ coordinates
    /// condition the rest), spline coupling (the rest condition the first ⌊D/2⌋), ActNorm]` in sampling order,
    /// with ReLU MLPs of widths `hidden`, `n_bins` bins on `[−bound, bound]`, minimum bin size `10⁻⁴·2·bound` and
    /// minimum knot derivative `10⁻⁴` (distrax's defaults as fab-jax sets them), the spline applied in the sampling
    /// direction, and a fixed `N(0, I)` base. Needs `dim ≥ 2`.
    pub fn spline_fab_jax(dim: usize, n_layers: usize, hidden: Vec<usize>, bound: f64, n_bins: usize) -> FlowSpec {
        let split = dim / 2;
        let spline = |cond: Vec<usize>, transformed: Vec<usize>| {
            LayerSpec::SplineCoupling(SplineCouplingSpec {
                cond,
                transformed,
                hidden: hidden.clone(),
                activation: Activation::Relu,
                n_bins,
                bound,
                min_bin_width: 1e-4 * 2.0 * bound,
                min_bin_height: 1e-4 * 2.0 * bound,
                min_derivative: 1e-4,
                spline_direction: Direction::Sampling,
            })
        };
        let mut layers = Vec::with_capacity(3 * n_layers);
        for _ in 0..n_layers {
            layers.push(spline((0..split).collect(), (split..dim).collect()));
            layers.push(spline((split..dim).collect(), (0..split).collect()));
            layers.push(LayerSpec::ActNorm);
        }
        FlowSpec { dim, layers, base: BaseSpec::StandardNormal, math: Math::Libm }
    }

    /// fab-jax's RealNVP (`transform_type: real_nvp` with its default `restrict_scale_rnvp`): `n_layers ×
    /// [affine coupling (first ⌊D/2⌋ coordinates condition the rest), affine coupling (the rest condition the first
    /// ⌊D/2⌋), ActNorm if `act_norm`]` in sampling order, ReLU MLPs of widths `hidden` whose output splits into
    /// scale logits then shifts, the scale bounded in (0.1, 10) by a sigmoid that is 1 at logit 0, and a fixed
    /// `N(0, I)` base. Needs `dim ≥ 2`.
    pub fn realnvp_fab_jax(dim: usize, n_layers: usize, hidden: Vec<usize>, act_norm: bool) -> FlowSpec {
        let split = dim / 2;
        let coupling = |cond: Vec<usize>, transformed: Vec<usize>| {
            LayerSpec::Coupling(CouplingSpec {
                cond,
                transformed,
                hidden: hidden.clone(),
                activation: Activation::Relu,
                scale_map: ScaleMap::BoundedSigmoid { low: 0.1, high: 10.0 },
                head_layout: HeadLayout::ScaleThenShift,
                affine_direction: Direction::Sampling,
            })
        };
        let mut layers = Vec::with_capacity(3 * n_layers);
        for _ in 0..n_layers {
            layers.push(coupling((0..split).collect(), (split..dim).collect()));
            layers.push(coupling((split..dim).collect(), (0..split).collect()));
            if act_norm {
                layers.push(LayerSpec::ActNorm);
            }
        }
        FlowSpec { dim, layers, base: BaseSpec::StandardNormal, math: Math::Libm }
    }

    /// fab-jax's GMM flow (`experiments/config/gmm_v1.yaml`): spline flow in 2-D, 8 layers, MLP [128, 128],
    /// range ±10, 8 bins (its default `spline_num_bins`), ActNorm.
    pub fn gmm_fab_jax() -> FlowSpec {
        Self::spline_fab_jax(2, 8, vec![128, 128], 10.0, 8)
    }

    /// 2021 flow for the 2-D mixture of Gaussians: 10 blocks, width 40, widen init 1.0.
    pub fn mog_2021() -> FlowSpec {
        Self::realnvp_2021(2, 10, 40, 1.0)
    }

    /// 2021 flow for the 16-D Many Well: 20 blocks, width 160, widen init 2.0.
    pub fn many_well_2021() -> FlowSpec {
        Self::realnvp_2021(16, 20, 160, 2.0)
    }

    /// ICLR flow for the 40-mode GMM: 15 layers, width 80.
    pub fn gmm_iclr() -> FlowSpec {
        Self::realnvp_iclr(2, 15, 80)
    }

    /// ICLR flow for the Many Well in `dim` dimensions: 10 layers, width `10·dim` (320 for the paper's D = 32).
    pub fn many_well_iclr(dim: usize) -> FlowSpec {
        Self::realnvp_iclr(dim, 10, 10 * dim)
    }
}
