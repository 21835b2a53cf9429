//! The crate layering of ARCHITECTURE.md, checked against `cargo metadata`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Level of each workspace crate: a crate may depend (normally) only on crates of a lower level that its rule
/// allows, and dev-depend on crates of its own level or below.
fn level(name: &str) -> Option<u8> {
    match name {
        "fab-core" => Some(0),
        "fab-targets" | "fab-flow" | "fab-mcmc" => Some(1),
        "fab-ais" => Some(2),
        "fab-train" => Some(3),
        "fab-cli" => Some(4),
        "xtask" => Some(5),
        _ => None,
    }
}

/// The normal (non-dev) fab dependencies each crate is allowed to have.
fn allowed_normal(name: &str) -> BTreeSet<&'static str> {
    let set: &[&'static str] = match name {
        "fab-core" => &[],
        "fab-targets" | "fab-flow" | "fab-mcmc" => &["fab-core"],
        "fab-ais" => &["fab-core", "fab-mcmc"],
        "fab-train" => &["fab-core", "fab-targets", "fab-flow", "fab-mcmc", "fab-ais"],
        "fab-cli" => &["fab-core", "fab-targets", "fab-flow", "fab-mcmc", "fab-ais", "fab-train"],
        "xtask" => &[],
        other => panic!("unknown workspace crate {other}: add it to the layering rules"),
    };
    set.iter().copied().collect()
}

fn workspace_deps() -> BTreeMap<String, Vec<(String, bool)>> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let mut res = BTreeMap::new();
    for pkg in meta["packages"].as_array().expect("packages array") {
        let name = pkg["name"].as_str().expect("package name").to_string();
        let deps = pkg["dependencies"]
            .as_array()
            .expect("dependencies array")
            .iter()
            .filter(|d| d["name"].as_str().is_some_and(|n| level(n).is_some()))
            .map(|d| (d["name"].as_str().unwrap().to_string(), d["kind"].as_str() == Some("dev")))
            .collect();
        res.insert(name, deps);
    }
    res
}

#[test]
fn every_crate_depends_only_downward() {
    let deps = workspace_deps();
    for expected in ["fab-core", "fab-targets", "fab-flow", "fab-mcmc", "fab-ais", "fab-train", "fab-cli", "xtask"] {
        assert!(deps.contains_key(expected), "workspace crate {expected} is missing");
    }
    for (name, list) in &deps {
        let allowed = allowed_normal(name);
        let own = level(name).unwrap_or_else(|| panic!("unknown workspace crate {name}"));
        for (dep, is_dev) in list {
            if *is_dev {
                let dep_level = level(dep).unwrap();
                assert!(
                    dep != name && dep_level <= own && name != "fab-core" && name != "xtask",
                    "{name} may not dev-depend on {dep}: tests may use crates of their own level or below only"
                );
            } else {
                assert!(allowed.contains(dep.as_str()), "{name} may not depend on {dep} (allowed: {allowed:?})");
            }
        }
    }
}
