//! The coupling conditioner: a fully connected `Linear → act → … → Linear` network with its backward pass.

use crate::gemm::{Op, gemm, with_best_simd, zip_map4};
use crate::scratch::{give, take_for_overwrite};
use crate::spec::Activation;
use rand::RngCore;
use rand_distr::{Distribution, Uniform};

/// `a[i, :] += b` for every row.
fn add_bias(a: &mut [f64], b: &[f64]) {
    add_bias_then(a, b, |v| v);
}

/// `a[i, j] = act(a[i, j] + b[j])`. The activations are written as selects (not branches) so the loop
/// vectorises: the sign of a hidden unit is unpredictable.
#[inline(always)]
fn add_bias_then(a: &mut [f64], b: &[f64], act: impl Fn(f64) -> f64) {
    with_best_simd(
        #[inline(always)]
        move || {
            for row in a.chunks_exact_mut(b.len()) {
                zip_map4(row, b, |v, bj| act(v + bj));
            }
        },
    );
}

/// A fully connected conditioner: `Linear → act → … → Linear`, torch layout (weight `out × in`, then bias).
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub(crate) sizes: Vec<usize>,
    pub(crate) activation: Activation,
}

impl Mlp {
    pub(crate) fn n_linear(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Offset of linear layer `l`'s weight in the MLP's parameter slice.
    pub(crate) fn offset(&self, l: usize) -> usize {
        self.sizes.windows(2).take(l).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// Multiplies `g` by the activation's derivative, read off the post-activation values `h`
    /// (the slope is positive, so `h > 0 ⇔ a > 0`; at `a = 0` the derivative is the negative-side one, as in torch).
    fn activation_backward(&self, h: &[f64], g: &mut [f64]) {
        let slope = match self.activation {
            Activation::Relu => 0.0,
            Activation::LeakyRelu { slope } => slope,
        };
        with_best_simd(
            #[inline(always)]
            move || {
                zip_map4(g, h, move |gv, hv| gv * if hv > 0.0 { 1.0 } else { slope });
            },
        );
    }

    /// Forward pass on `n` rows (the input buffer is consumed and recycled).
    pub(crate) fn forward(&self, p: &[f64], n: usize, input: Vec<f64>) -> Vec<f64> {
        self.forward_keeping(p, n, input, give)
    }

    /// Forward pass on `n` rows that saves the input of every linear layer in `hidden` (`hidden[0]` = MLP input).
    pub(crate) fn forward_recording(
        &self,
        p: &[f64],
        n: usize,
        input: Vec<f64>,
        hidden: &mut Vec<Vec<f64>>,
    ) -> Vec<f64> {
        hidden.drain(..).for_each(give);
        self.forward_keeping(p, n, input, |h| hidden.push(h))
    }

    /// The forward pass; `keep` receives the input of each linear layer once it has been used.
    fn forward_keeping(&self, p: &[f64], n: usize, input: Vec<f64>, mut keep: impl FnMut(Vec<f64>)) -> Vec<f64> {
        let mut cur = input;
        let n_lin = self.n_linear();
        for l in 0..n_lin {
            let (inn, out) = (self.sizes[l], self.sizes[l + 1]);
            let off = self.offset(l);
            let (w, b) = (&p[off..off + out * inn], &p[off + out * inn..off + out * inn + out]);
            let mut next = take_for_overwrite(n * out);
            gemm(&mut next, n, out, inn, &cur, Op::N, w, Op::T, false);
            // Bias and activation in one sweep over the output (same operations, one pass over memory).
            match (l + 1 < n_lin, self.activation) {
                (false, _) => add_bias(&mut next, b),
                (true, Activation::Relu) => add_bias_then(&mut next, b, move |v| v.max(0.0)),
                (true, Activation::LeakyRelu { slope }) => {
                    add_bias_then(&mut next, b, move |v| v * if v > 0.0 { 1.0 } else { slope })
                }
            }
            keep(std::mem::replace(&mut cur, next));
        }
        cur
    }

    /// Backward pass: given ∂L/∂out, returns ∂L/∂input and accumulates weight/bias gradients when asked.
    pub(crate) fn backward(
        &self,
        p: &[f64],
        n: usize,
        hidden: &[Vec<f64>],
        g_out: Vec<f64>,
        mut g_params: Option<&mut [f64]>,
    ) -> Vec<f64> {
        let mut g = g_out;
        for l in (0..self.n_linear()).rev() {
            let (inn, out) = (self.sizes[l], self.sizes[l + 1]);
            let off = self.offset(l);
            let h = &hidden[l];
            if let Some(gp) = g_params.as_deref_mut() {
                let (gw, gb) = gp[off..off + out * inn + out].split_at_mut(out * inn);
                // ∂W = gᵀ·h (out × in), ∂b = column sums of g.
                gemm(gw, out, inn, n, &g, Op::T, h, Op::N, true);
                for row in g.chunks_exact(out) {
                    gb.iter_mut().zip(row).for_each(|(b, v)| *b += v);
                }
            }
            let w = &p[off..off + out * inn];
            let mut g_prev = take_for_overwrite(n * inn);
            gemm(&mut g_prev, n, inn, out, &g, Op::N, w, Op::N, false);
            if l > 0 {
                self.activation_backward(h, &mut g_prev);
            }
            give(std::mem::replace(&mut g, g_prev));
        }
        g
    }

    /// Torch's default `nn.Linear` initialisation U(−1/√fan_in, 1/√fan_in) for weights and biases,
    /// except the last layer, which starts at zero so the coupling starts as the identity.
    pub(crate) fn init(&self, p: &mut [f64], rng: &mut dyn RngCore) {
        let n_lin = self.n_linear();
        for l in 0..n_lin {
            let (inn, out) = (self.sizes[l], self.sizes[l + 1]);
            let off = self.offset(l);
            let block = &mut p[off..off + out * inn + out];
            if l + 1 == n_lin {
                block.fill(0.0);
            } else {
                let bound = 1.0 / (inn as f64).sqrt();
                let u = Uniform::new(-bound, bound).expect("a positive fan-in gives a valid range");
                block.iter_mut().for_each(|v| *v = u.sample(rng));
            }
        }
    }

    /// Tensor names (`mlp.{l}.weight`, `mlp.{l}.bias`), shapes and offsets of the parameters.
    pub(crate) fn param_tensors(&self) -> Vec<(String, Vec<usize>, usize)> {
        let mut out = Vec::new();
        for l in 0..self.n_linear() {
            let (inn, o) = (self.sizes[l], self.sizes[l + 1]);
            let off = self.offset(l);
            out.push((format!("mlp.{l}.weight"), vec![o, inn], off));
            out.push((format!("mlp.{l}.bias"), vec![o], off + o * inn));
        }
        out
    }
}
