//! Bitwise fingerprints (FNV-1a over f64 bits) of every registered flow's parameters, passes and gradients.
//!
//! Recorded from the code before the layer refactor (issue 13 item 2), so any change that alters a single bit of
//! any result of any layer or builder fails here. The floating-point results depend on the SIMD level faer and
//! the hand loops run at (FMA contraction, vector widths), so the table is keyed by that level; on a level with
//! no recorded table the test fails and prints the table to record.

mod common;

use common::{all_cases, test_points};
use fab_core::{Batch, BatchRef, LogDensity, stream_rng};
use fab_flow::{CHUNK_ROWS, Flow, FlowTape};
use rand_distr::{Distribution, StandardNormal};

/// FNV-1a, 64 bit, over the bit patterns of the values (NaN payloads included: none are expected).
fn fnv1a(values: &[f64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for byte in v.to_bits().to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The SIMD level the results were computed at (what faer's and pulp's runtime dispatch picks).
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "x86_64-avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "x86_64-avx2-fma";
        }
    }
    std::env::consts::ARCH
}

/// What is fingerprinted, in this order.
const QUANTITIES: [&str; 9] = [
    "params",
    "log q",
    "∇ₓ log q",
    "samples x and log q",
    "Σ cᵢ∇θ log q",
    "pathwise ∇θ",
    "to_base z and log-det",
    "serial tape ∇θ and ∇ₓ",
    "record-once ∇θ",
];

fn coeffs(n: usize) -> Vec<f64> {
    (0..n).map(|i| (i as f64 * 0.37).sin() + 0.1).collect()
}

/// The fingerprints of one flow: several chunks of rows, fixed inputs, noise and coefficients.
fn fingerprints(f: &Flow) -> [u64; 9] {
    let d = f.dim();
    let xs = test_points(f, CHUNK_ROWS + 5, 12, 41);
    let n = xs.n_rows();
    let c = coeffs(n);
    let mut rng = stream_rng(42, 0);
    let eps: Vec<f64> = (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect();
    let eps = Batch::from_vec(eps, d).unwrap();
    let a: Vec<f64> = (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect();

    let log_q = f.log_q(xs.view());
    let mut gx = Batch::zeros(n, d);
    let mut lq_x = vec![0.0; n];
    f.log_prob_and_grad_batch(xs.view(), &mut lq_x, gx.view_mut());
    let (x_s, lq_s) = f.sample_from_noise(eps.view());
    let mut g_params = vec![0.0; f.n_params()];
    let lq_p = f.log_q_grad_params(xs.view(), &c, &mut g_params);
    let mut g_path = vec![0.0; f.n_params()];
    f.sample_grad_params(eps.view(), BatchRef::new(&a, d), &c, &mut g_path);
    let (z, ld) = f.to_base(xs.view());
    let (back, ld_back) = f.from_base(z.view());
    let small = xs.view().slice_rows(0, 7);
    let mut tape = FlowTape::new();
    let lq_t = f.log_q_recorded(small, &mut tape);
    let mut g_tape = vec![0.0; f.n_params()];
    let mut gx_tape = Batch::zeros(7, d);
    f.backward_log_q(&tape, &c[..7], Some(gx_tape.view_mut()), Some(&mut g_tape));
    let mut g_once = vec![0.0; f.n_params()];
    f.log_q_then_grad_params(xs.view(), |_| c.clone(), &mut g_once);

    [
        fnv1a(f.params()),
        fnv1a(&log_q),
        fnv1a(&[gx.as_slice(), &lq_x].concat()),
        fnv1a(&[x_s.as_slice(), &lq_s].concat()),
        fnv1a(&[&g_params[..], &lq_p].concat()),
        fnv1a(&g_path),
        fnv1a(&[z.as_slice(), &ld, back.as_slice(), &ld_back].concat()),
        fnv1a(&[&lq_t[..], &g_tape, gx_tape.as_slice()].concat()),
        fnv1a(&g_once),
    ]
}

/// A registry case's name and its fingerprints (in the order of [`QUANTITIES`]).
type Fingerprints = (&'static str, [u64; 9]);

/// The fingerprints of every registry case: the RealNVP layers and builders recorded at commit 486242c (before the
/// layer refactor, which kept every bit), the spline coupling examples and builders when they were added.
#[rustfmt::skip]
const TABLE: &[Fingerprints] = &[
    ("coupling 2021 (flipped halves, 2·sigmoid, leaky ReLU)", [0xbd4010ab8701a3ab, 0x6479a02afc8de93c, 0x198a6a96a30b51c2, 0x0079dff62c126cf5, 0x13152100e51ba20a, 0x873dd2e936d5b29f, 0x54a48e366406a6f5, 0xf9654d343e809c4b, 0xa5d762c4dfccf657]),
    ("coupling ICLR (odd D, interleaved heads, exp, ReLU ×2)", [0x81b43a7636bbb707, 0x39777a091ed963bb, 0x7cde358944e64b65, 0x72350c08748155bb, 0x3658347f825a964c, 0xe2a556b34d850b16, 0x7879f63ce608d349, 0xd9f8c97c264c525b, 0xb8d58630bfe8eeda]),
    ("coupling bounded sigmoid, permutation split", [0xd12f95a62a7d0eb3, 0x06efee7b6b5ef4a5, 0x2809d32c68ae6331, 0x0b2296de994e43f5, 0xeed27422f96fec98, 0x97a93c5d8ba372c2, 0xed88efea37b01b66, 0x34f21e899a505a7d, 0xbab270b6548f36dc]),
    ("coupling exp with density-side affine, 3 hidden", [0xb6b99643901e3ab5, 0xa274b4cc1b192ab4, 0x1abba7827fdf4ed3, 0xc3d5898f5e0c5868, 0x56ecd84c0a29e0d9, 0xb7aeccbe22e97c74, 0xbcccd813a66d327e, 0xd38c565bed0b818f, 0x09a5391b4316e9e8]),
    ("actnorm", [0xacdd5d93c09d97c9, 0x51d05df736204f49, 0x72b04d1f4613e04f, 0xc8ba2166e60bd372, 0x9d99c233ff546a4d, 0x164edbea19f3a094, 0xf46b9eacc6f91925, 0xe7a6330fe022f3a1, 0x1a8a842c07cc6bb9]),
    ("lu linear", [0x92b29022ad8c7d1b, 0xb5f2a9e035d73d44, 0x6b11e4b744c8ff13, 0xa511713ea1c15589, 0xfe24f2b09dafb518, 0x54f8e5c0830d22fb, 0x10bd5bb3b09168da, 0x55086f0189c6cc4a, 0xe62325bf2c72d521]),
    ("global scale", [0x6ab2ca68e5286b5f, 0x2f1dafec633ba65e, 0xe3496ba8eb692fa8, 0x0dfee719fe11050a, 0xcbdbcfabb0db3986, 0x6f2fc8bf062fb0b7, 0xb0e545d0730967f1, 0xa653043cab15e28b, 0xf598aec167b2330d]),
    ("trainable diagonal Gaussian base", [0x961d5d30f9e1a205, 0x2e816ad0fcb60f03, 0x6766ace39bfad3c1, 0x68adc890bc4889c9, 0xdc845b8d03492738, 0xef678f4610f797eb, 0x3d45a577a1857731, 0xac59773b8f4c2225, 0x20716ff6773f7dae]),
    ("2021 MoG flow", [0x729b56ad58590097, 0xe19b85117f5fc74b, 0x931ab3f7e03039ef, 0x195f7321c55c4c7e, 0xb45bd80c35c4a746, 0xbd54c2a06db3da17, 0xc1b2287b2ed9816a, 0xb51bc397faa9ac58, 0x6f33e1ed42ac2bb4]),
    ("2021 Many Well flow", [0x772b8e89ce8a3f24, 0x9c2813611e520d20, 0xe44ca43b25958512, 0x1bcb1f5453e07d5d, 0xe1d39ff60913c9d0, 0x8905655f0cef54f8, 0x3ac85b1273325b1d, 0x9d232177fdd5643a, 0x5392c510cedf5f55]),
    ("ICLR GMM flow", [0x4a85051cff4c5930, 0xcc522d4adc2b9ebe, 0xe3e62f97ab66f3f9, 0x78816fe138ed5ed4, 0xde2e8626e25304e4, 0x7c240f6fe8d97075, 0xd2a153167f711202, 0xfd7d0b97302fcf05, 0x2df6fc1d1d94796f]),
    ("ICLR Many Well flow (D = 16)", [0x3331378bc883a488, 0x7443852b3ccec8be, 0xf20635bb9bad303a, 0xb16d8b22b61a4e75, 0x8d36598cd7989d0b, 0xd4daaa86e57bb7ce, 0x3472013364d0e64d, 0x1fa4c8637dcf1f28, 0xbe7a789280dfb99c]),
    ("2021 builder, D = 5", [0x745df3fe9ac32ce3, 0xcbfc1144f160e500, 0x1eb9fba32f4fcdbc, 0x6289d4efbf6008de, 0x0c95be4948140428, 0xf08b7c3ac46c8750, 0xf98e11c3f8831b5f, 0x694075ea6dc4445f, 0x4afa59452f95765d]),
    ("ICLR builder, D = 3", [0x7674c990aa93693f, 0x50ab971cd5e2c308, 0x12f8d3bf9c0bcd1c, 0x7f19e002facb6096, 0x5578f77ec6209778, 0x21a8001cc2e8b839, 0xbcb813c3ba42524e, 0xb332f591d3cda7e8, 0x37794ce3699ef9f5]),
    ("spline coupling, sampling-side spline, 5 bins on ±2 (points in the tails too)", [0x965b60131cfddc73, 0x2e37f8d850e7f94d, 0x50649311e8d20bbe, 0x85f9a774b32bc6de, 0x2113e440d7ad7b0e, 0x2042c2047c84836a, 0x28e9aa1c778ae919, 0xc9e2b56d2fc71d16, 0x124a2698d55a036e]),
    ("spline coupling, density-side spline, 8 bins on ±3, 2 hidden", [0x9957ec2b4cbf7ee6, 0xe8d1511571f0d7f0, 0xc1e9a398f41184a4, 0xea3a6082994c81e6, 0x560a997111c02d94, 0x1a46a658f938a5ed, 0x189af865b06317d7, 0x7b56d8d188c2c7c7, 0xdb1e3ac694d61c49]),
    ("fab-jax GMM spline flow", [0x63604ca7223d79f2, 0x2ae6bce953a4a6ae, 0xcff565ec29478c05, 0x2f1671e063eec8d3, 0x9ccae2859b4530af, 0x0b1c621fbf011f0c, 0x16b3b02f8ff48f10, 0x27e3c9f9b5aae036, 0x30d62775aaa22d84]),
    ("fab-jax spline builder, D = 3", [0xcebd26b529e7fdc2, 0xc9ec8a3e7c07ba27, 0xa84b83e96e01fc7e, 0xd1931fe6acc99356, 0xf4e4607e3538f24e, 0xb51f82f95171f20c, 0xac50f32e4816b3b3, 0xb6a867ba1820f68b, 0x0b0ae5117d0483d8]),
];

/// `(SIMD level, [(case name, fingerprints)])`. Recorded on AVX-512F; on an AVX2 + FMA machine (no AVX-512) the
/// code at 58103a1 printed exactly the same table, so both levels share it.
const RECORDED: &[(&str, &[Fingerprints])] = &[("x86_64-avx512f", TABLE), ("x86_64-avx2-fma", TABLE)];

#[test]
fn every_flow_gives_the_recorded_bits() {
    let level = simd_level();
    let got: Vec<(&'static str, [u64; 9])> = all_cases().iter().map(|c| (c.name, fingerprints(&c.flow))).collect();
    let hex = |h: &[u64; 9]| h.iter().map(|v| format!("{v:#018x}")).collect::<Vec<_>>().join(", ");
    let table: String = got.iter().map(|(name, h)| format!("        ({name:?}, [{}]),\n", hex(h))).collect();
    let Some((_, want)) = RECORDED.iter().find(|(l, _)| *l == level) else {
        panic!("no fingerprints recorded for SIMD level {level}; record these:\n    ({level:?}, &[\n{table}    ]),");
    };
    for (want_name, _) in want.iter() {
        assert!(got.iter().any(|(n, _)| n == want_name), "{want_name} left the registry; the table:\n{table}");
    }
    for (name, h) in &got {
        let Some((_, want_h)) = want.iter().find(|(n, _)| n == name) else {
            panic!("{name} has no recorded fingerprints; the table:\n{table}");
        };
        for (q, (a, b)) in QUANTITIES.iter().zip(want_h.iter().zip(h)) {
            assert_eq!(a, b, "{name}: {q} changed bits");
        }
    }
}
