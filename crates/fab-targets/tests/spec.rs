//! `TargetSpec`: RON round trips, building every variant, and typed errors that name the offending field.

use fab_targets::{TargetError, TargetSpec};

fn build_err(spec: TargetSpec) -> TargetError {
    match spec.build() {
        Ok(t) => panic!("{spec:?} built {} instead of failing", t.name()),
        Err(e) => e,
    }
}

#[test]
fn every_variant_round_trips_through_ron_and_builds() {
    let specs = [
        (TargetSpec::Mog5_2021, "mog5_2021", 2),
        (TargetSpec::Gmm40Iclr, "gmm40_iclr", 2),
        (
            TargetSpec::Gmm {
                means: vec![vec![0.0, 1.0], vec![2.0, -1.0]],
                stds: vec![vec![1.0; 2]; 2],
                weights: vec![1.0, 3.0],
            },
            "gmm",
            2,
        ),
        (TargetSpec::DoubleWell, "double_well", 2),
        (TargetSpec::ManyWell { dim: 32 }, "many_well_32", 32),
        (TargetSpec::DiagGaussian { means: vec![0.0, 1.0, 2.0], stds: vec![1.0, 0.5, 2.0] }, "diag_gaussian", 3),
        (TargetSpec::Funnel { dim: 10 }, "funnel_10", 10),
    ];
    for (spec, name, dim) in specs {
        let text = ron::to_string(&spec).unwrap();
        let back: TargetSpec = ron::from_str(&text).unwrap();
        assert_eq!(back, spec, "RON round trip of {text}");
        let target = spec.build().unwrap();
        assert_eq!((target.name(), target.dim()), (name, dim));
    }
}

#[test]
fn hand_written_ron_parses() {
    let spec: TargetSpec = ron::from_str("ManyWell(dim: 16)").unwrap();
    assert_eq!(spec, TargetSpec::ManyWell { dim: 16 });
    let spec: TargetSpec =
        ron::from_str("Gmm(means: [[0.0], [3.0]], stds: [[1.0], [0.5]], weights: [1.0, 1.0])").unwrap();
    assert_eq!(spec.build().unwrap().dim(), 1);
}

#[test]
fn invalid_mixtures_are_rejected_with_the_field_named() {
    let gmm = |means: Vec<Vec<f64>>, stds: Vec<Vec<f64>>, weights: Vec<f64>| TargetSpec::Gmm { means, stds, weights };
    let cases = [
        (gmm(vec![], vec![], vec![]), "`means`"),
        (gmm(vec![vec![0.0, 0.0]], vec![vec![1.0, 1.0]; 2], vec![1.0]), "`stds`"),
        (gmm(vec![vec![0.0, 0.0]], vec![vec![1.0, 1.0]], vec![1.0, 1.0]), "`weights`"),
        (gmm(vec![vec![0.0, 0.0], vec![1.0]], vec![vec![1.0, 1.0]; 2], vec![1.0, 1.0]), "`means[1]`"),
        (gmm(vec![vec![0.0, 0.0]; 2], vec![vec![1.0, 1.0], vec![1.0]], vec![1.0, 1.0]), "`stds[1]`"),
        (gmm(vec![vec![0.0, 0.0]; 2], vec![vec![1.0, 1.0], vec![1.0, -0.5]], vec![1.0, 1.0]), "`stds[1][1]`"),
        (gmm(vec![vec![0.0, 0.0]; 2], vec![vec![1.0, 0.0], vec![1.0, 1.0]], vec![1.0, 1.0]), "`stds[0][1]`"),
        (gmm(vec![vec![0.0, f64::NAN]; 2], vec![vec![1.0, 1.0]; 2], vec![1.0, 1.0]), "`means[0][1]`"),
        (gmm(vec![vec![0.0, 0.0]; 2], vec![vec![1.0, 1.0]; 2], vec![1.0, 0.0]), "`weights[1]`"),
        (gmm(vec![vec![0.0, 0.0]; 2], vec![vec![1.0, 1.0]; 2], vec![f64::INFINITY, 1.0]), "`weights[0]`"),
        (gmm(vec![vec![]; 1], vec![vec![]; 1], vec![1.0]), "`dim`"),
    ];
    for (spec, field) in cases {
        let message = build_err(spec.clone()).to_string();
        assert!(message.contains(field), "{spec:?}: message {message:?} does not name {field}");
    }
}

#[test]
fn invalid_dimensions_and_gaussians_are_rejected_with_the_field_named() {
    for dim in [0, 1, 3, 17] {
        let err = build_err(TargetSpec::ManyWell { dim });
        assert!(matches!(err, TargetError::InvalidDimension { target: "ManyWell", dim: d, .. } if d == dim), "{err}");
        assert!(err.to_string().contains("even"), "{err}");
    }
    for dim in [0, 1] {
        assert!(matches!(
            build_err(TargetSpec::Funnel { dim }),
            TargetError::InvalidDimension { target: "Funnel", .. }
        ));
    }
    let cases = [
        (TargetSpec::DiagGaussian { means: vec![], stds: vec![] }, "`dim`"),
        (TargetSpec::DiagGaussian { means: vec![0.0, 0.0], stds: vec![1.0] }, "`stds`"),
        (TargetSpec::DiagGaussian { means: vec![0.0, 0.0], stds: vec![1.0, -1.0] }, "`stds[1]`"),
        (TargetSpec::DiagGaussian { means: vec![f64::NEG_INFINITY, 0.0], stds: vec![1.0, 1.0] }, "`means[0]`"),
    ];
    for (spec, field) in cases {
        let message = build_err(spec.clone()).to_string();
        assert!(message.contains(field), "{spec:?}: message {message:?} does not name {field}");
    }
}
