//! The flow layers behind one contract, [`FlowLayer`]: one file per layer, dispatched by the closed [`Layer`] set.
//!
//! Convention: every layer is a bijection between its *density-side* input `x` and its *base-side* output `z`.
//! `apply` in [`Direction::Density`] maps `x → z`, in [`Direction::Sampling`] maps `z → x`; each adds the log|det|
//! of the map it applied to `log_det`. `backward` receives ∂L/∂(output) and ∂L/∂(log_det) per row, writes
//! ∂L/∂(input) and, if asked, ACCUMULATES ∂L/∂θ into the layer's slice of the flat gradient.
//!
//! Adding a layer: a file with a type implementing [`FlowLayer`] (its `examples()` feed every property test), a
//! [`LayerSpec`] variant, its arm in [`Layer::build`] and its line in the `layer_set!` list below. The exhaustive
//! matches make the compiler name each missing piece; the test registry reads [`LayerSpec::examples`], so a layer
//! in the set is tested without a further line. We chose a closed enum over `Box<dyn FlowLayer>` because the
//! tapes stay typed per layer and the dispatch is a `match`, without an allocation per layer.

mod actnorm;
mod coupling;
mod global_scale;
mod lu_linear;
mod mlp;
pub(crate) mod scalar;
mod spline;

pub(crate) use actnorm::ActNorm;
use coupling::Coupling;
use global_scale::GlobalScale;
pub(crate) use lu_linear::LuLinear;
pub(crate) use spline::MAX_BINS as MAX_SPLINE_BINS;
use spline::SplineCoupling;

use crate::scratch::give;
use crate::spec::{Direction, FlowSpec, LayerSpec, Math};
use rand::RngCore;
use std::fmt::Debug;

/// The arguments of one forward application of a layer to `n` rows.
pub(crate) struct Pass<'a> {
    /// The layer's slice of the flat parameter vector.
    pub p: &'a [f64],
    /// Which way the layer is applied.
    pub dir: Direction,
    /// Number of rows.
    pub n: usize,
    /// `n × D` input, row-major.
    pub input: &'a [f64],
    /// `n × D` output, written in full.
    pub output: &'a mut [f64],
    /// Per-row log|det| accumulator: the layer ADDS its log-determinant.
    pub log_det: &'a mut [f64],
}

/// The arguments of the backward pass of a recorded application.
pub(crate) struct BackPass<'a> {
    /// The layer's slice of the flat parameter vector.
    pub p: &'a [f64],
    /// The direction the recorded pass was applied in.
    pub dir: Direction,
    /// Number of rows.
    pub n: usize,
    /// ∂L/∂output (`n × D`).
    pub g_out: &'a [f64],
    /// ∂L/∂(log_det) per row.
    pub g_ld: &'a [f64],
    /// ∂L/∂input (`n × D`), written in full.
    pub g_in: &'a mut [f64],
    /// The layer's slice of the flat gradient, ACCUMULATED into when given (the input-only path skips it).
    pub g_params: Option<&'a mut [f64]>,
}

/// Buffers a recorded pass saves; handed back to the scratch pool when the tape is dropped or reused.
pub(crate) trait TapeBuffers: Debug + Clone + Default + Send {
    /// Returns every buffer to the thread's scratch pool.
    fn recycle(&mut self);
}

/// The contract every flow layer implements.
pub(crate) trait FlowLayer {
    /// What [`FlowLayer::apply_recording`] saves for [`FlowLayer::backward`].
    type Tape: TapeBuffers;
    /// Applies the layer (no tape).
    fn apply(&self, pass: Pass<'_>);
    /// Applies the layer with the same arithmetic as [`FlowLayer::apply`] and saves what the backward pass needs.
    fn apply_recording(&self, pass: Pass<'_>, tape: &mut Self::Tape);
    /// Backward of a recorded application.
    fn backward(&self, back: BackPass<'_>, tape: &Self::Tape);
    /// Tensor names, shapes and offsets (within the layer's parameter slice) of its trainable parameters.
    fn param_tensors(&self) -> Vec<(String, Vec<usize>, usize)>;
    /// Small flows holding this layer in its variants (dimension ≤ 6, so Jacobians can be differenced): the test
    /// registry runs every property test over them.
    fn examples() -> Vec<(&'static str, FlowSpec)>
    where
        Self: Sized;
}

/// A tape holding the layer input only.
#[derive(Debug, Clone, Default)]
pub(crate) struct InputTape {
    pub(crate) input: Vec<f64>,
}

impl TapeBuffers for InputTape {
    fn recycle(&mut self) {
        give(std::mem::take(&mut self.input));
    }
}

/// A tape holding the layer input and output (affine maps: ∂/∂scale reads one or the other).
#[derive(Debug, Clone, Default)]
pub(crate) struct InputOutputTape {
    pub(crate) input: Vec<f64>,
    pub(crate) output: Vec<f64>,
}

impl TapeBuffers for InputOutputTape {
    fn recycle(&mut self) {
        give(std::mem::take(&mut self.input));
        give(std::mem::take(&mut self.output));
    }
}

/// Generates the closed layer set, its typed tapes and the dispatch from one list of `Variant(Type)`.
macro_rules! layer_set {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// One flow layer (closed set, dispatched by `match`).
        #[derive(Debug, Clone)]
        pub(crate) enum Layer {
            $(
                #[doc = concat!("A [`", stringify!($ty), "`] layer.")]
                $variant($ty),
            )+
        }

        /// The saved activations of one layer, typed by the layer's kind.
        #[derive(Debug, Clone, Default)]
        enum TapeKind {
            /// Nothing recorded yet.
            #[default]
            Empty,
            $(
                #[doc = concat!("Recorded by a [`", stringify!($ty), "`] layer.")]
                $variant(<$ty as FlowLayer>::Tape),
            )+
        }

        impl TapeKind {
            fn recycle(&mut self) {
                match self {
                    TapeKind::Empty => {}
                    $(TapeKind::$variant(t) => t.recycle(),)+
                }
            }
        }

        impl Layer {
            /// Applies the layer to `pass.n` rows, adding its log|det| per row.
            pub(crate) fn apply(&self, pass: Pass<'_>) {
                match self {
                    $(Layer::$variant(l) => l.apply(pass),)+
                }
            }

            /// As [`Layer::apply`], saving what [`Layer::backward`] needs into `tape` (reusing its buffers when
            /// it was recorded by a layer of the same kind).
            pub(crate) fn apply_recording(&self, pass: Pass<'_>, tape: &mut LayerTape) {
                match self {
                    $(Layer::$variant(l) => {
                        let mut t = match std::mem::take(&mut tape.0) {
                            TapeKind::$variant(t) => t,
                            mut other => {
                                other.recycle();
                                Default::default()
                            }
                        };
                        l.apply_recording(pass, &mut t);
                        tape.0 = TapeKind::$variant(t);
                    })+
                }
            }

            /// Backward of a recorded application: writes ∂L/∂input, accumulates ∂L/∂θ.
            ///
            /// # Panics
            /// If `tape` was not recorded by this layer (a tape from another flow was passed in).
            pub(crate) fn backward(&self, back: BackPass<'_>, tape: &LayerTape) {
                match (self, &tape.0) {
                    $((Layer::$variant(l), TapeKind::$variant(t)) => l.backward(back, t),)+
                    _ => panic!("backward: the tape was not recorded by this flow's layers"),
                }
            }

            /// Tensor names, shapes and offsets (within the layer's parameter slice) of its parameters.
            pub(crate) fn param_tensors(&self, _dim: usize) -> Vec<(String, Vec<usize>, usize)> {
                match self {
                    $(Layer::$variant(l) => l.param_tensors(),)+
                }
            }
        }

        impl LayerSpec {
            /// Small one-layer flows covering every layer kind and its variants (dimension ≤ 6): the registry that
            /// every property test of fab-flow runs over. A layer in the set contributes its examples without a
            /// further line.
            pub fn examples() -> Vec<(&'static str, FlowSpec)> {
                let mut all = Vec::new();
                $(all.extend(<$ty as FlowLayer>::examples());)+
                all
            }
        }
    };
}

layer_set! {
    Coupling(Coupling),
    ActNorm(ActNorm),
    Lu(LuLinear),
    GlobalScale(GlobalScale),
    SplineCoupling(SplineCoupling),
}

/// Activations one layer saved during a recorded pass (owned by the caller's [`crate::FlowTape`]).
#[derive(Debug, Clone, Default)]
pub struct LayerTape(TapeKind);

impl LayerTape {
    /// Hands the activation buffers back to the thread's scratch pool.
    pub(crate) fn recycle(&mut self) {
        self.0.recycle();
        self.0 = TapeKind::Empty;
    }
}

impl Layer {
    /// Builds the layer and writes its initial parameters into `p` (its slice of the flat vector); `math` is the
    /// flow's choice of numerics for the affine couplings' scale maps.
    pub(crate) fn build(dim: usize, spec: &LayerSpec, math: Math, p: &mut [f64], rng: &mut dyn RngCore) -> Layer {
        match spec {
            LayerSpec::Coupling(c) => {
                let layer = Coupling::new(dim, c, math);
                layer.mlp.init(p, rng);
                Layer::Coupling(layer)
            }
            // Identity until the data-dependent initialisation.
            LayerSpec::ActNorm => Layer::ActNorm(ActNorm::identity(dim, p)),
            LayerSpec::LuLinear => Layer::Lu(LuLinear::random_orthogonal(dim, p, rng)),
            LayerSpec::GlobalScale { init } => Layer::GlobalScale(GlobalScale::new(dim, *init, p)),
            LayerSpec::SplineCoupling(c) => {
                let layer = SplineCoupling::new(dim, c);
                layer.mlp.init(p, rng);
                Layer::SplineCoupling(layer)
            }
        }
    }
}

impl Layer {
    /// Switches the numerics of an affine coupling's scale map (the other layers have no choice to make).
    pub(crate) fn set_math(&mut self, math: Math) {
        if let Layer::Coupling(c) = self {
            c.math = math;
        }
    }
}

/// The conditioning columns `cols` of the `n` rows of `input` (row length `dim`), row-major `n × cols.len()`: the
/// conditioner input of both coupling layers.
fn gather_columns(n: usize, dim: usize, cols: &[usize], input: &[f64]) -> Vec<f64> {
    let d = cols.len();
    let mut hc = crate::scratch::take_for_overwrite(n * d);
    for (row_in, row_c) in input.chunks_exact(dim).zip(hc.chunks_exact_mut(d)) {
        for (c, &j) in row_c.iter_mut().zip(cols) {
            *c = row_in[j];
        }
    }
    hc
}

/// Adds the conditioner's input gradient `g_cond` (`n × cols.len()`) into columns `cols` of `g_in` (row length
/// `dim`), then returns `g_cond` to the scratch pool: the inverse of [`gather_columns`] in the backward pass.
fn add_column_gradient(n: usize, dim: usize, cols: &[usize], g_cond: Vec<f64>, g_in: &mut [f64]) {
    let d = cols.len();
    for i in 0..n {
        for (c, &col) in cols.iter().enumerate() {
            g_in[i * dim + col] += g_cond[i * d + c];
        }
    }
    give(g_cond);
}
