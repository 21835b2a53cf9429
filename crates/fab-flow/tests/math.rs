//! `Math::Vector` against `Math::Libm` on the shipped affine architectures, and the choice's persistence.

mod common;

use common::{perturbed, test_points};
use fab_core::{Batch, BatchRef, LogDensity, stream_rng};
use fab_flow::{Flow, FlowSpec, META_SPEC, Math};
use rand_distr::{Distribution, StandardNormal};

/// Relative tolerance of the agreement: every entry of log q, of ∇ₓ log q, of the weighted parameter gradient and
/// of the samples agrees to this relative to the largest magnitude of its vector (entries near zero are sums
/// whose rounding is relative to their terms, not to the sum). Measured: see the test's output.
const REL_TOL: f64 = 1e-13;

/// The largest `|a − b|` over the vectors, relative to the largest `|b|`.
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// The shipped affine-coupling flows: the 2021 Many Well flow, the ICLR Many Well 32 flow and fab-jax's Many Well
/// 32 RealNVP (`configs/fabjax_many_well32.ron`).
fn shipped() -> Vec<(&'static str, FlowSpec)> {
    vec![
        ("2021 Many Well (realnvp_2021(16, 20, 160, 2.0))", FlowSpec::realnvp_2021(16, 20, 160, 2.0)),
        ("ICLR Many Well 32 (realnvp_iclr(32, 10, 320))", FlowSpec::realnvp_iclr(32, 10, 320)),
        (
            "fab-jax Many Well 32 (realnvp_fab_jax(32, 8, [128, 128], false))",
            FlowSpec::realnvp_fab_jax(32, 8, vec![128, 128], false),
        ),
    ]
}

/// Everything a FAB iteration asks of the flow, for one flow.
fn outputs(f: &Flow, xs: &Batch, eps: &Batch, c: &[f64]) -> [Vec<f64>; 5] {
    let n = xs.n_rows();
    let log_q = f.log_q(xs.view());
    let mut gx = Batch::zeros(n, f.dim());
    let mut lq_x = vec![0.0; n];
    f.log_prob_and_grad_batch(xs.view(), &mut lq_x, gx.view_mut());
    let mut g_params = vec![0.0; f.n_params()];
    f.log_q_grad_params(xs.view(), c, &mut g_params);
    let (x_s, lq_s) = f.sample_from_noise(eps.view());
    let mut g_path = vec![0.0; f.n_params()];
    f.sample_grad_params(eps.view(), BatchRef::new(x_s.as_slice(), f.dim()), c, &mut g_path);
    [log_q, gx.as_slice().to_vec(), g_params, [x_s.as_slice(), &lq_s].concat(), g_path]
}

#[test]
fn vector_and_libm_flows_agree_on_log_q_samples_and_gradients() {
    let names = ["log q", "∇ₓ log q", "Σ cᵢ∇θ log q", "samples and their log q", "pathwise ∇θ"];
    for (i, (name, spec)) in shipped().into_iter().enumerate() {
        let libm = perturbed(&spec, 300 + i as u64, 0.02);
        let vector = libm.clone().with_math(Math::Vector);
        assert_eq!(vector.spec().math, Math::Vector);
        let xs = test_points(&libm, 300, 20, 31);
        let c: Vec<f64> = (0..xs.n_rows()).map(|r| (r as f64 * 0.37).sin() + 0.1).collect();
        let mut rng = stream_rng(32, 0);
        let d = libm.dim();
        let eps = Batch::from_vec((0..xs.n_rows() * d).map(|_| StandardNormal.sample(&mut rng)).collect(), d).unwrap();
        let want = outputs(&libm, &xs, &eps, &c);
        let got = outputs(&vector, &xs, &eps, &c);
        for (q, (g, w)) in names.iter().zip(got.iter().zip(&want)) {
            let r = rel_diff(g, w);
            eprintln!("{name}: {q}: max relative difference {r:.2e}");
            assert!(r <= REL_TOL, "{name}: {q} differs by {r:e} relative");
            assert!(g.iter().all(|v| v.is_finite()), "{name}: {q} not finite");
        }
    }
}

#[test]
fn a_flow_saved_with_vector_math_loads_with_vector_math() {
    let spec = FlowSpec::realnvp_2021(5, 3, 7, 1.5).with_math(Math::Vector);
    let flow = perturbed(&spec, 11, 0.1);
    let bytes = flow.to_safetensors_bytes().unwrap();
    let back = Flow::from_safetensors_bytes(&bytes).unwrap();
    assert_eq!(back.spec(), flow.spec());
    assert_eq!(back.spec().math, Math::Vector);
    let xs = test_points(&flow, 5, 2, 12);
    assert_eq!(back.log_q(xs.view()), flow.log_q(xs.view()), "a loaded flow gives the same bits");
    assert_eq!(back.to_safetensors_bytes().unwrap(), bytes);

    // Through a file, and the weights load across the numerics choice (the architecture is the same).
    let dir = std::env::temp_dir().join(format!("fab-flow-math-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vector.safetensors");
    flow.save_safetensors(&path).unwrap();
    assert_eq!(Flow::load_safetensors(&path).unwrap().spec().math, Math::Vector);
    let mut libm = Flow::new(&spec.clone().with_math(Math::Libm), 0).unwrap();
    libm.load_weights_safetensors(&path).unwrap();
    assert_eq!(libm.spec().math, Math::Libm, "loading weights keeps the flow's own numerics");
    assert_eq!(libm.params(), flow.params());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `Math::Libm` is not written, so files and configs from before the field keep their bytes and read as `Libm`.
#[test]
fn libm_math_is_the_default_and_is_not_serialised() {
    let spec = FlowSpec::mog_2021();
    assert_eq!(spec.math, Math::Libm);
    let json = serde_json::to_string(&spec).unwrap();
    assert!(!json.contains("math"), "{json}");
    let read: FlowSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(read, spec);
    let vector = serde_json::to_string(&spec.clone().with_math(Math::Vector)).unwrap();
    assert!(vector.contains(r#""math":"Vector""#), "{vector}");
    assert_eq!(serde_json::from_str::<FlowSpec>(&vector).unwrap().math, Math::Vector);

    let flow = Flow::new(&spec, 3).unwrap();
    let bytes = flow.to_safetensors_bytes().unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.contains(META_SPEC) && !header.contains("math"), "{header}");
}
