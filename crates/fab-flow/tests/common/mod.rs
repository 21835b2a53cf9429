//! Shared test fixtures: the registry of every layer (as one-layer flows) and every assembled builder.
#![allow(dead_code)]

use fab_core::{Batch, Proposal, stream_rng};
use fab_flow::{BaseSpec, Flow, FlowSpec, LayerSpec, Math};
use rand_distr::{Distribution, StandardNormal};

/// One registry entry.
pub struct Case {
    pub name: &'static str,
    pub flow: Flow,
}

/// A flow from `spec` with ActNorm initialised and every parameter moved off its (often degenerate) initial value,
/// so that zero-initialised heads do not make gradients trivially zero.
pub fn perturbed(spec: &FlowSpec, seed: u64, scale: f64) -> Flow {
    let mut flow = Flow::new(spec, seed).expect("valid spec");
    if !flow.actnorm_initialized() {
        flow.initialize_data_dependent(&mut stream_rng(seed, 99), 256);
    }
    let mut rng = stream_rng(seed, 7);
    for p in flow.params_mut() {
        let e: f64 = StandardNormal.sample(&mut rng);
        *p += scale * e;
    }
    flow
}

/// Every layer kind, each as a one-layer flow in a small dimension (≤ 6, so Jacobians can be differenced): the
/// crate's own [`LayerSpec::examples`] (so a new layer is covered without a line here), plus the trainable base.
pub fn layer_registry() -> Vec<Case> {
    let mut cases: Vec<Case> = LayerSpec::examples()
        .into_iter()
        .enumerate()
        .map(|(i, (name, spec))| Case { name, flow: perturbed(&spec, 100 + i as u64, 0.3) })
        .collect();
    // Seed 107 (its place after the seven layer examples), fixed so the base keeps its recorded bits as layers join.
    let base = FlowSpec { dim: 3, layers: vec![], base: BaseSpec::DiagGaussian, math: Math::Libm };
    cases.push(Case { name: "trainable diagonal Gaussian base", flow: perturbed(&base, 107, 0.3) });
    cases
}

/// The papers' assembled flows plus small odd-dimensional variants of both builders.
pub fn builder_registry() -> Vec<Case> {
    builder_specs()
        .into_iter()
        .enumerate()
        .map(|(i, (name, spec, s))| Case { name, flow: perturbed(&spec, 200 + i as u64, s) })
        .collect()
}

/// The builders of [`builder_registry`] with the scale of their parameter perturbation.
fn builder_specs() -> Vec<(&'static str, FlowSpec, f64)> {
    vec![
        ("2021 MoG flow", FlowSpec::mog_2021(), 0.05),
        ("2021 Many Well flow", FlowSpec::many_well_2021(), 0.01),
        ("ICLR GMM flow", FlowSpec::gmm_iclr(), 0.02),
        ("ICLR Many Well flow (D = 16)", FlowSpec::many_well_iclr(16), 0.01),
        ("2021 builder, D = 5", FlowSpec::realnvp_2021(5, 3, 7, 1.5), 0.1),
        ("ICLR builder, D = 3", FlowSpec::realnvp_iclr(3, 2, 6), 0.1),
        ("fab-jax GMM spline flow", FlowSpec::gmm_fab_jax(), 0.02),
        ("fab-jax spline builder, D = 3", FlowSpec::spline_fab_jax(3, 2, vec![6, 5], 3.0, 5), 0.1),
    ]
}

/// Layers and builders together: "every test runs over every layer and over the assembled builders".
pub fn all_cases() -> Vec<Case> {
    let mut v = layer_registry();
    v.extend(builder_registry());
    v
}

/// Every case of [`all_cases`] holding an affine coupling, again with [`Math::Vector`] (same seeds, so the same
/// weights up to the ActNorm initialisation); kept out of [`all_cases`], whose cases have recorded fingerprints.
pub fn vector_math_cases() -> Vec<Case> {
    let has_coupling = |spec: &FlowSpec| spec.layers.iter().any(|l| matches!(l, LayerSpec::Coupling(_)));
    let layers =
        LayerSpec::examples().into_iter().enumerate().map(|(i, (name, spec))| (name, spec, 100 + i as u64, 0.3));
    let builders = builder_specs().into_iter().enumerate().map(|(i, (name, spec, s))| (name, spec, 200 + i as u64, s));
    layers
        .chain(builders)
        .filter(|(_, spec, _, _)| has_coupling(spec))
        .map(|(name, spec, seed, s)| {
            let name: &'static str = Box::leak(format!("{name} [Math::Vector]").into_boxed_str());
            Case { name, flow: perturbed(&spec.with_math(Math::Vector), seed, s) }
        })
        .collect()
}

/// What the property tests run over: [`all_cases`] and [`vector_math_cases`].
pub fn property_cases() -> Vec<Case> {
    let mut v = all_cases();
    v.extend(vector_math_cases());
    v
}

/// Test points: draws from the flow itself (its typical region) plus Gaussian points.
pub fn test_points(flow: &Flow, n_flow: usize, n_gauss: usize, seed: u64) -> Batch {
    let mut rng = stream_rng(seed, 3);
    let (mut xs, _) = flow.sample(&mut rng, n_flow);
    for _ in 0..n_gauss {
        let row: Vec<f64> = (0..flow.dim())
            .map(|_| {
                let e: f64 = StandardNormal.sample(&mut rng);
                1.3 * e
            })
            .collect::<Vec<f64>>();
        xs.push_row(&row);
    }
    xs
}

/// `log |det A|` of a small dense matrix by partial-pivoting elimination.
pub fn log_abs_det(a: &[f64], d: usize) -> f64 {
    let mut m = a.to_vec();
    let mut acc = 0.0;
    for k in 0..d {
        let p = (k..d).max_by(|&x, &y| m[x * d + k].abs().total_cmp(&m[y * d + k].abs())).unwrap();
        for j in 0..d {
            m.swap(k * d + j, p * d + j);
        }
        let piv = m[k * d + k];
        acc += piv.abs().ln();
        for i in k + 1..d {
            let f = m[i * d + k] / piv;
            for j in k..d {
                m[i * d + j] -= f * m[k * d + j];
            }
        }
    }
    acc
}
