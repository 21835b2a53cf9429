//! ActNorm (2021): density direction `z = x·softplus(scale) + loc`, with the data-dependent initialisation.

use super::scalar::{AffineKind, affine_kind, inverse_softplus, sigmoid, softplus};
use super::{BackPass, FlowLayer, InputOutputTape, Pass};
use crate::scratch::assign_copy;
use crate::spec::{BaseSpec, Direction, FlowSpec, LayerSpec, Math};

/// ActNorm: density direction `z = x·softplus(scale) + loc`; parameters `[loc (D), scale (D)]`.
#[derive(Debug, Clone)]
pub(crate) struct ActNorm {
    dim: usize,
}

impl ActNorm {
    /// An ActNorm layer that starts as the identity: `loc = 0`, `softplus(scale) = 1`.
    pub(crate) fn identity(dim: usize, p: &mut [f64]) -> Self {
        p[..dim].fill(0.0);
        p[dim..].fill(inverse_softplus(1.0));
        ActNorm { dim }
    }

    /// Data-dependent initialisation on a batch of sampling-direction inputs: `loc` = batch mean,
    /// `softplus(scale)` = batch standard deviation (unbiased, as `torch.std`), so the output has zero mean and
    /// unit variance. Columns with fewer than two rows or a zero/non-finite spread keep their values.
    pub(crate) fn initialize_from_batch(&self, p: &mut [f64], n: usize, input: &[f64]) {
        let dim = self.dim;
        if n < 2 {
            return;
        }
        for j in 0..dim {
            let mean = (0..n).map(|i| input[i * dim + j]).sum::<f64>() / n as f64;
            let var = (0..n).map(|i| (input[i * dim + j] - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let std = var.sqrt();
            if mean.is_finite() && std.is_finite() && std > 0.0 {
                p[j] = mean;
                p[dim + j] = inverse_softplus(std);
            }
        }
    }
}

impl FlowLayer for ActNorm {
    type Tape = InputOutputTape;

    fn apply(&self, pass: Pass<'_>) {
        let Pass { p, dir, n, input, output, log_det } = pass;
        let dim = self.dim;
        let (loc, scale) = p.split_at(dim);
        let sigma: Vec<f64> = scale.iter().map(|&s| softplus(s)).collect();
        let inv_sigma: Vec<f64> = sigma.iter().map(|s| 1.0 / s).collect();
        let sum_log_sigma: f64 = sigma.iter().map(|s| s.ln()).sum();
        let kind = affine_kind(dir, Direction::Density);
        for i in 0..n {
            let (row_in, row_out) = (&input[i * dim..(i + 1) * dim], &mut output[i * dim..(i + 1) * dim]);
            match kind {
                AffineKind::ScaleShift => {
                    for j in 0..dim {
                        row_out[j] = row_in[j] * sigma[j] + loc[j];
                    }
                }
                AffineKind::UnshiftUnscale => {
                    for j in 0..dim {
                        row_out[j] = (row_in[j] - loc[j]) * inv_sigma[j];
                    }
                }
            }
            log_det[i] += if kind == AffineKind::ScaleShift { sum_log_sigma } else { -sum_log_sigma };
        }
    }

    fn apply_recording(&self, pass: Pass<'_>, tape: &mut InputOutputTape) {
        let Pass { p, dir, n, input, output, log_det } = pass;
        self.apply(Pass { p, dir, n, input, output: &mut *output, log_det });
        assign_copy(&mut tape.input, input);
        assign_copy(&mut tape.output, output);
    }

    fn backward(&self, back: BackPass<'_>, tape: &InputOutputTape) {
        let BackPass { p, dir, n, g_out, g_ld, g_in, g_params } = back;
        let dim = self.dim;
        let scale = &p[dim..];
        let kind = affine_kind(dir, Direction::Density);
        let sigma: Vec<f64> = scale.iter().map(|&s| softplus(s)).collect();
        let mut g_loc = vec![0.0; dim];
        let mut g_log_sigma = vec![0.0; dim];
        for i in 0..n {
            for j in 0..dim {
                let gw = g_out[i * dim + j];
                let idx = i * dim + j;
                match kind {
                    AffineKind::ScaleShift => {
                        g_in[idx] = gw * sigma[j];
                        g_loc[j] += gw;
                        g_log_sigma[j] += gw * tape.input[idx] * sigma[j] + g_ld[i];
                    }
                    AffineKind::UnshiftUnscale => {
                        g_in[idx] = gw / sigma[j];
                        g_loc[j] -= gw / sigma[j];
                        g_log_sigma[j] += -gw * tape.output[idx] - g_ld[i];
                    }
                }
            }
        }
        if let Some(gp) = g_params {
            for j in 0..dim {
                gp[j] += g_loc[j];
                // dℓ/dscale = sigmoid(scale)/softplus(scale).
                gp[dim + j] += g_log_sigma[j] * sigmoid(scale[j]) / sigma[j];
            }
        }
    }

    fn param_tensors(&self) -> Vec<(String, Vec<usize>, usize)> {
        vec![("loc".into(), vec![self.dim], 0), ("scale".into(), vec![self.dim], self.dim)]
    }

    fn examples() -> Vec<(&'static str, FlowSpec)> {
        vec![(
            "actnorm",
            FlowSpec { dim: 3, layers: vec![LayerSpec::ActNorm], base: BaseSpec::StandardNormal, math: Math::Libm },
        )]
    }
}
