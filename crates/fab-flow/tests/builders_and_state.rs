//! Builders (parameter counts, initial state), ActNorm initialisation, robustness to bad rows, thread-count
//! determinism, and safetensors persistence.

mod common;

use common::{all_cases, builder_registry, perturbed, test_points};
use fab_core::{Batch, LogDensity, Proposal, stream_rng};
use fab_flow::{BaseSpec, Flow, FlowError, FlowSpec, LayerSpec, Math};

/// Parameters of an MLP `[in, hidden…, out]` with biases.
fn mlp_params(sizes: &[usize]) -> usize {
    sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

#[test]
fn parameter_counts_match_the_architectures_in_spec_and_peers() {
    // 2021 (SPEC §2a): per block an MLP [⌊D/2⌋, W, 2⌈D/2⌉] and an ActNorm (2D); plus the global scale.
    let mog = 10 * (mlp_params(&[1, 40, 2]) + 2 * 2) + 1;
    let mw = 20 * (mlp_params(&[8, 160, 16]) + 2 * 16) + 1;
    // ICLR (SPEC §2b): per layer an MLP [⌈D/2⌉, W, W, 2⌊D/2⌋] and an LU layer counted as torch does (L, U full
    // D×D, log_S D); plus the trainable base (2D).
    let gmm = 15 * (mlp_params(&[1, 80, 80, 2]) + 2 * 4 + 2) + 2 * 2;
    let mw16 = 10 * (mlp_params(&[8, 160, 160, 16]) + 2 * 256 + 16) + 2 * 16;
    // PEERS.md: measured torch parameter counts of the same flows.
    assert_eq!((mog, mw, gmm, mw16), (1_661, 80_961, 102_184, 303_072));
    assert_eq!(Flow::new(&FlowSpec::mog_2021(), 0).unwrap().n_params(), mog);
    assert_eq!(Flow::new(&FlowSpec::many_well_2021(), 0).unwrap().n_params(), mw);
    assert_eq!(Flow::new(&FlowSpec::gmm_iclr(), 0).unwrap().n_params(), gmm);
    assert_eq!(Flow::new(&FlowSpec::many_well_iclr(16), 0).unwrap().n_params(), mw16);
    assert_eq!(FlowSpec::many_well_iclr(32).n_params(), 10 * (mlp_params(&[16, 320, 320, 32]) + 2 * 1024 + 32) + 64);
}

#[test]
fn builders_follow_the_papers_conventions() {
    let s = FlowSpec::many_well_2021();
    assert_eq!(s.layers.len(), 41);
    let LayerSpec::Coupling(c0) = &s.layers[0] else { panic!("block 0 starts with a coupling") };
    // Block 0 is reversed: the flipped vector's first half conditions.
    assert_eq!(c0.cond, (8..16).rev().collect::<Vec<_>>());
    assert_eq!(c0.transformed, (0..8).rev().collect::<Vec<_>>());
    let LayerSpec::Coupling(c1) = &s.layers[2] else { panic!("block 1 starts with a coupling") };
    assert_eq!(c1.cond, (0..8).collect::<Vec<_>>());
    assert_eq!(s.layers[1], LayerSpec::ActNorm);
    assert_eq!(s.layers[40], LayerSpec::GlobalScale { init: 2.0 });
    assert_eq!(s.base, BaseSpec::StandardNormal);
    let i = FlowSpec::realnvp_iclr(5, 10, 50);
    let LayerSpec::Coupling(c) = &i.layers[0] else { panic!("ICLR layer starts with a coupling") };
    assert_eq!((c.cond.len(), c.transformed.len(), c.hidden.clone()), (3, 2, vec![50, 50]));
    assert_eq!(i.layers[1], LayerSpec::LuLinear);
    assert_eq!(i.base, BaseSpec::DiagGaussian);
}

#[test]
fn spec_round_trips_through_serde_and_invalid_specs_are_refused() {
    let s = FlowSpec::realnvp_iclr(5, 2, 8);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<FlowSpec>(&json).unwrap(), s);
    let mut bad = FlowSpec::realnvp_2021(4, 1, 8, 1.0);
    if let LayerSpec::Coupling(c) = &mut bad.layers[0] {
        c.cond = vec![0, 0];
    }
    assert!(matches!(Flow::new(&bad, 0), Err(FlowError::InvalidSpec(_))));
    let neg = FlowSpec {
        dim: 2,
        layers: vec![LayerSpec::GlobalScale { init: -1.0 }],
        base: BaseSpec::StandardNormal,
        math: Math::Libm,
    };
    assert!(matches!(Flow::new(&neg, 0), Err(FlowError::InvalidSpec(_))));
}

/// At initialisation the ICLR flow is a rotation of N(0, I) (zero-initialised couplings, orthogonal LU, standard
/// base), so `log q` is exactly the standard-normal log density.
#[test]
fn iclr_flows_start_as_a_standard_normal() {
    for spec in [FlowSpec::gmm_iclr(), FlowSpec::many_well_iclr(16), FlowSpec::realnvp_iclr(5, 3, 9)] {
        let f = Flow::new(&spec, 3).unwrap();
        let xs = test_points(&f, 4, 4, 1);
        let d = f.dim() as f64;
        for (x, lq) in xs.rows().zip(f.log_q(xs.view())) {
            let want = -0.5 * x.iter().map(|v| v * v).sum::<f64>() - 0.5 * d * (2.0 * std::f64::consts::PI).ln();
            assert!((lq - want).abs() < 1e-10, "log q {lq} vs N(0, I) {want}");
        }
    }
}

#[test]
fn actnorm_initialisation_gives_zero_mean_and_unit_variance_on_its_batch() {
    // mog_2021 ends with an ActNorm followed by the global scale (init 1.0): the samples drawn with the same noise
    // as the initialisation batch are exactly the ActNorm output.
    for (spec, widen) in [(FlowSpec::mog_2021(), 1.0), (FlowSpec::realnvp_2021(5, 3, 7, 2.0), 2.0)] {
        let mut f = Flow::new(&spec, 1).unwrap();
        assert!(!f.actnorm_initialized());
        let n = 500;
        f.initialize_data_dependent(&mut stream_rng(5, 0), n);
        assert!(f.actnorm_initialized());
        let (xs, _) = f.sample(&mut stream_rng(5, 0), n);
        for j in 0..f.dim() {
            let col: Vec<f64> = xs.rows().map(|r| r[j] / widen).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!(mean.abs() < 1e-12, "column {j}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-12, "column {j}: variance {var}");
        }
    }
}

#[test]
fn non_finite_and_zero_weight_rows_do_not_poison_the_parameter_gradient() {
    for case in builder_registry() {
        let f = &case.flow;
        let clean = test_points(f, 4, 0, 12);
        let coeffs = [0.7, -1.3, 0.4, 2.0];
        let mut want = vec![0.0; f.n_params()];
        f.log_q_grad_params(clean.view(), &coeffs, &mut want);
        let mut dirty = Batch::zeros(0, f.dim());
        let mut dirty_c = Vec::new();
        for (i, row) in clean.rows().enumerate() {
            dirty.push_row(row);
            dirty_c.push(coeffs[i]);
            if i == 1 {
                dirty.push_row(&vec![f64::NAN; f.dim()]);
                dirty_c.push(1.0);
                dirty.push_row(&vec![1e300; f.dim()]);
                dirty_c.push(1.0);
                dirty.push_row(row);
                dirty_c.push(0.0);
            }
        }
        let mut got = vec![0.0; f.n_params()];
        let lq = f.log_q_grad_params(dirty.view(), &dirty_c, &mut got);
        assert!(lq[2].is_nan(), "{}: the NaN row keeps its NaN log q", case.name);
        assert!(!lq[3].is_finite(), "{}: the far-away row has a non-finite log q", case.name);
        for (a, b) in got.iter().zip(&want) {
            assert!(a.is_finite() && (a - b).abs() <= 1e-10 * b.abs().max(1.0), "{}: {a} vs {b}", case.name);
        }
    }
}

#[test]
fn results_are_bitwise_identical_for_one_and_two_threads() {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for case in builder_registry().into_iter().filter(|c| c.name.contains("Many Well") || c.name.contains("D = 3")) {
        let f = &case.flow;
        let run = || {
            let (xs, lq_s) = f.sample(&mut stream_rng(13, 0), 3 * fab_flow::CHUNK_ROWS + 17);
            let c: Vec<f64> = (0..xs.n_rows()).map(|i| (i as f64 * 0.37).sin()).collect();
            let mut gp = vec![0.0; f.n_params()];
            let mut gx = Batch::zeros(xs.n_rows(), f.dim());
            let lq = f.log_q_grad_params_and_x(xs.view(), &c, &mut gp, gx.view_mut());
            let mut gs = vec![0.0; f.n_params()];
            f.sample_grad_params(xs.view(), gx.view(), &c, &mut gs);
            let mut lp = vec![0.0; xs.n_rows()];
            let mut gxx = Batch::zeros(xs.n_rows(), f.dim());
            f.log_prob_and_grad_batch(xs.view(), &mut lp, gxx.view_mut());
            (xs, lq_s, lq, gp, gx, gs, lp, gxx)
        };
        let a = one.install(run);
        let b = two.install(run);
        assert!(a == b, "{}: results differ between 1 and 2 threads", case.name);
    }
}

#[test]
fn save_and_load_round_trip_is_bit_identical() {
    let dir = std::env::temp_dir().join(format!("fab-flow-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in all_cases().into_iter().enumerate() {
        let f = &case.flow;
        let path = dir.join(format!("flow{i}.safetensors"));
        f.save_safetensors(&path).unwrap();
        let g = Flow::load_safetensors(&path).unwrap();
        assert_eq!(g.spec(), f.spec(), "{}", case.name);
        assert_eq!(g.params(), f.params(), "{}", case.name);
        assert_eq!(g.actnorm_initialized(), f.actnorm_initialized());
        let xs = test_points(f, 5, 2, 14);
        let (a, b) = (f.log_q(xs.view()), g.log_q(xs.view()));
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{}: log q changed on reload", case.name);
        // Loading weights into a freshly built flow of the same architecture (other seed) also restores it.
        let mut h = Flow::new(f.spec(), 999).unwrap();
        h.load_weights_safetensors(&path).unwrap();
        assert_eq!(h.log_q(xs.view()), a, "{}", case.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn saved_files_carry_torch_style_tensors_and_the_architecture() {
    let f = perturbed(&FlowSpec::realnvp_iclr(3, 2, 6), 1, 0.1);
    let bytes = f.to_safetensors_bytes().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let w = st.tensor("layers.0.mlp.1.weight").unwrap();
    assert_eq!(w.shape(), &[6, 6]);
    assert_eq!(st.tensor("layers.0.mlp.0.weight").unwrap().shape(), &[6, 2]);
    assert_eq!(st.tensor("layers.1.L").unwrap().shape(), &[3, 3]);
    assert_eq!(st.tensor("layers.1.P").unwrap().shape(), &[3, 3]);
    assert_eq!(st.tensor("base.log_scale").unwrap().shape(), &[3]);
    let first = f64::from_le_bytes(w.data()[..8].try_into().unwrap());
    let range = f.layer_param_range(0);
    assert_eq!(
        first,
        f.params()[range.start + 6 * 2 + 6],
        "weight of linear layer 1 follows layer 0's weight and bias"
    );
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let spec_json = meta.metadata().as_ref().unwrap().get(fab_flow::META_SPEC).unwrap();
    assert_eq!(serde_json::from_str::<FlowSpec>(spec_json).unwrap(), *f.spec());
}

#[test]
fn mismatched_or_corrupt_files_are_refused_with_typed_errors() {
    let dir = std::env::temp_dir().join(format!("fab-flow-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = Flow::new(&FlowSpec::realnvp_iclr(3, 2, 6), 0).unwrap();
    let path = dir.join("good.safetensors");
    f.save_safetensors(&path).unwrap();

    let mut other = Flow::new(&FlowSpec::realnvp_iclr(3, 2, 7), 0).unwrap();
    let before = other.params().to_vec();
    assert!(matches!(other.load_weights_safetensors(&path), Err(FlowError::ArchitectureMismatch(_))));
    assert_eq!(other.params(), before.as_slice(), "a refused load leaves the flow untouched");

    let bytes = std::fs::read(&path).unwrap();
    assert!(matches!(Flow::from_safetensors_bytes(&bytes[..bytes.len() / 2]), Err(FlowError::Format(_))));
    assert!(matches!(Flow::load_safetensors(dir.join("absent.safetensors")), Err(FlowError::Io { .. })));

    // Same architecture in the metadata but a tensor of the wrong shape, or a missing one.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone();
    let rebuild = |skip: &str, reshape: &str| {
        let owned: Vec<(String, Vec<usize>, Vec<u8>)> = st
            .iter()
            .filter(|(n, _)| *n != skip)
            .map(|(n, v)| {
                let mut shape = v.shape().to_vec();
                if n == reshape {
                    shape = vec![shape.iter().product()];
                }
                (n.to_string(), shape, v.data().to_vec())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, s, d)| {
                (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F64, s.clone(), d).unwrap())
            })
            .collect();
        safetensors::serialize(views, meta.clone()).unwrap()
    };
    let wrong_shape = rebuild("", "layers.1.L");
    assert!(matches!(Flow::from_safetensors_bytes(&wrong_shape), Err(FlowError::TensorMismatch { .. })));
    let missing = rebuild("layers.0.mlp.2.bias", "");
    assert!(matches!(Flow::from_safetensors_bytes(&missing), Err(FlowError::MissingTensor(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fab_jax_spline_flow_follows_its_config_and_starts_as_the_identity() {
    let s = FlowSpec::gmm_fab_jax();
    // 8 layers × [spline (x₀ conditions x₁), spline (x₁ conditions x₀), ActNorm]; each MLP [1, 128, 128, 3K + 1].
    assert_eq!(s.layers.len(), 24);
    let LayerSpec::SplineCoupling(a) = &s.layers[0] else { panic!("a layer starts with a spline coupling") };
    let LayerSpec::SplineCoupling(b) = &s.layers[1] else { panic!("then the swapped spline coupling") };
    assert_eq!(
        (a.cond.clone(), a.transformed.clone(), b.cond.clone(), b.transformed.clone()),
        (vec![0], vec![1], vec![1], vec![0])
    );
    assert_eq!((a.n_bins, a.bound, a.hidden.clone()), (8, 10.0, vec![128, 128]));
    assert_eq!(s.layers[2], LayerSpec::ActNorm);
    let want = 8 * (2 * mlp_params(&[1, 128, 128, 25]) + 2 * 2);
    assert_eq!((want, Flow::new(&s, 0).unwrap().n_params()), (319_920, 319_920));
    // Zero last layers and identity ActNorms: log q is the standard normal's, inside and outside ±10.
    let f = Flow::new(&s, 5).unwrap();
    let xs = Batch::from_vec(vec![0.3, -1.2, 9.99, -9.99, 12.0, -0.5, -30.0, 31.0, 4.4, 7.7], 2).unwrap();
    for (x, lq) in xs.rows().zip(f.log_q(xs.view())) {
        let want = -0.5 * x.iter().map(|v| v * v).sum::<f64>() - (2.0 * std::f64::consts::PI).ln();
        assert!((lq - want).abs() < 1e-9, "{x:?}: log q {lq} vs N(0, I) {want}");
    }
}

#[test]
fn fab_jax_realnvp_has_fab_jaxs_parameter_counts_and_starts_as_the_identity() {
    // PEERS.md counted fab-jax's flows: Many Well 32 365,056 parameters, funnel (10-D) 297,120, both without ActNorm.
    let n =
        |dim, act_norm| Flow::new(&FlowSpec::realnvp_fab_jax(dim, 8, vec![128, 128], act_norm), 0).unwrap().n_params();
    assert_eq!((n(32, false), n(10, false)), (365_056, 297_120));
    assert_eq!(n(10, true), 297_120 + 8 * 2 * 10, "an ActNorm adds a scale and a shift per coordinate");
    let s = FlowSpec::realnvp_fab_jax(4, 2, vec![8], false);
    let LayerSpec::Coupling(a) = &s.layers[0] else { panic!("a layer starts with a coupling") };
    let LayerSpec::Coupling(b) = &s.layers[1] else { panic!("then the swapped coupling") };
    assert_eq!((a.cond.clone(), b.cond.clone()), (vec![0, 1], vec![2, 3]));
    assert_eq!(a.scale_map, fab_flow::ScaleMap::BoundedSigmoid { low: 0.1, high: 10.0 });
    let f = Flow::new(&s, 3).unwrap();
    let xs = Batch::from_vec(vec![0.3, -1.2, 2.0, -0.5, 5.0, 4.0, -3.0, 0.1], 4).unwrap();
    for (x, lq) in xs.rows().zip(f.log_q(xs.view())) {
        let want = -0.5 * x.iter().map(|v| v * v).sum::<f64>() - 2.0 * (2.0 * std::f64::consts::PI).ln();
        assert!((lq - want).abs() < 1e-9, "{x:?}: log q {lq} vs N(0, I) {want}");
    }
}

#[test]
fn spline_specs_round_trip_through_serde_and_invalid_ones_are_refused() {
    let s = FlowSpec::spline_fab_jax(3, 2, vec![6], 4.0, 5);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<FlowSpec>(&json).unwrap(), s);
    let broken = |edit: &dyn Fn(&mut fab_flow::SplineCouplingSpec)| {
        let mut bad = s.clone();
        if let LayerSpec::SplineCoupling(c) = &mut bad.layers[0] {
            edit(c);
        }
        matches!(Flow::new(&bad, 0), Err(FlowError::InvalidSpec(_)))
    };
    assert!(broken(&|c| c.n_bins = 0), "zero bins");
    assert!(broken(&|c| c.n_bins = 65), "more bins than the stack arrays hold");
    assert!(broken(&|c| c.bound = -1.0), "negative bound");
    assert!(broken(&|c| c.min_bin_width = 2.0), "bins cannot all be that wide");
    assert!(broken(&|c| c.min_derivative = 1.0), "minimum derivative must be below 1");
    assert!(broken(&|c| c.transformed = vec![0]), "cond ∪ transformed must be a partition");
    assert!(!broken(&|_| {}), "the unedited spec is valid");
}
