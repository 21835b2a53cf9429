//! Learnable global scale (2021 `widen`): sampling direction `x = z·s`, one parameter `s`.

use super::{BackPass, FlowLayer, InputOutputTape, Pass};
use crate::scratch::assign_copy;
use crate::spec::{BaseSpec, Direction, FlowSpec, LayerSpec, Math};

/// Learnable global scale (2021 `widen`): sampling direction `x = z·s`, parameter `[s]`.
#[derive(Debug, Clone)]
pub(crate) struct GlobalScale {
    dim: usize,
}

impl GlobalScale {
    /// A global scale starting at `s = init`.
    pub(crate) fn new(dim: usize, init: f64, p: &mut [f64]) -> Self {
        p[0] = init;
        GlobalScale { dim }
    }
}

impl FlowLayer for GlobalScale {
    type Tape = InputOutputTape;

    fn apply(&self, pass: Pass<'_>) {
        let Pass { p, dir, n, input, output, log_det } = pass;
        let s = p[0];
        let ld = self.dim as f64 * s.ln();
        match dir {
            Direction::Sampling => output.iter_mut().zip(input).for_each(|(o, v)| *o = v * s),
            Direction::Density => output.iter_mut().zip(input).for_each(|(o, v)| *o = v / s),
        }
        let ld = if dir == Direction::Sampling { ld } else { -ld };
        log_det[..n].iter_mut().for_each(|v| *v += ld);
    }

    fn apply_recording(&self, pass: Pass<'_>, tape: &mut InputOutputTape) {
        let Pass { p, dir, n, input, output, log_det } = pass;
        self.apply(Pass { p, dir, n, input, output: &mut *output, log_det });
        assign_copy(&mut tape.input, input);
        assign_copy(&mut tape.output, output);
    }

    fn backward(&self, back: BackPass<'_>, tape: &InputOutputTape) {
        let BackPass { p, dir, n, g_out, g_ld, g_in, g_params } = back;
        let s = p[0];
        let dim = self.dim as f64;
        let sum_g_ld: f64 = g_ld[..n].iter().sum();
        let g_s = match dir {
            // x = z·s: ∂x/∂z = s, ∂x/∂s = z, ∂ld/∂s = D/s.
            Direction::Sampling => {
                g_in.iter_mut().zip(g_out).for_each(|(gi, go)| *gi = go * s);
                g_out.iter().zip(&tape.input).map(|(g, z)| g * z).sum::<f64>() + dim * sum_g_ld / s
            }
            // z = x/s: ∂z/∂x = 1/s, ∂z/∂s = −z/s, ∂ld/∂s = −D/s.
            Direction::Density => {
                g_in.iter_mut().zip(g_out).for_each(|(gi, go)| *gi = go / s);
                -g_out.iter().zip(&tape.output).map(|(g, z)| g * z).sum::<f64>() / s - dim * sum_g_ld / s
            }
        };
        if let Some(gp) = g_params {
            gp[0] += g_s;
        }
    }

    fn param_tensors(&self) -> Vec<(String, Vec<usize>, usize)> {
        vec![("scaling_factor".into(), vec![1], 0)]
    }

    fn examples() -> Vec<(&'static str, FlowSpec)> {
        let layers = vec![LayerSpec::GlobalScale { init: 1.7 }];
        vec![("global scale", FlowSpec { dim: 3, layers, base: BaseSpec::StandardNormal, math: Math::Libm })]
    }
}
