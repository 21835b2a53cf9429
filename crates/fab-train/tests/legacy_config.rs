//! Configs in the format written before 2026-12-02 (fab-train's short AIS vocabulary) are still read, as exactly the
//! config their rewrite in the current format (fab-ais's `AisConfig`) gives; checkpoints holding an old config resume.

use fab_train::config::{Method, TrainConfig};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every shipped FAB config was rewritten from the old format; the old text is kept in tests/data/legacy_configs.
#[test]
fn every_old_shipped_config_reads_as_its_rewrite() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = format!("{root}/tests/data/legacy_configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let old_path = entry.unwrap().path();
        let file = old_path.file_name().unwrap().to_str().unwrap().to_string();
        let new_path = if file == "own_density.ron" {
            format!("{root}/examples/{file}")
        } else {
            format!("{root}/../../configs/{file}")
        };
        let old_text = read(old_path.to_str().unwrap());
        assert!(
            ron::from_str::<TrainConfig>(&old_text).is_err(),
            "{file}: the old text should not parse in the current format"
        );
        let old = TrainConfig::from_ron(&old_text).unwrap_or_else(|e| panic!("{file} (old format): {e}"));
        let new = TrainConfig::from_ron(&read(&new_path)).unwrap_or_else(|e| panic!("{new_path}: {e}"));
        assert_eq!(old, new, "{file}: the old and the current text differ");
        n += 1;
    }
    assert!(n >= 7, "expected the old FAB configs, found {n}");
}

/// The committed run directories keep their old `config.ron`: each still reads, checks and round-trips through
/// the current format.
#[test]
fn committed_run_directories_still_read() {
    let runs = format!("{}/../../results/runs", env!("CARGO_MANIFEST_DIR"));
    let mut n_fab = 0;
    for entry in std::fs::read_dir(&runs).unwrap() {
        let path = entry.unwrap().path().join("config.ron");
        let config =
            TrainConfig::from_ron(&read(path.to_str().unwrap())).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config.clone().check().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let again = TrainConfig::from_ron(&config.to_ron().unwrap()).unwrap();
        assert_eq!(again, config, "{}", path.display());
        n_fab += usize::from(config.method.ais().is_some());
    }
    assert!(n_fab >= 4, "expected the FAB runs in results/runs, found {n_fab}");
}

/// The committed fab-jax runs (GMM-9's written by the config as it stood when they ran, in the old AIS form) read
/// as the shipped `configs/<name>.ron` with their seed and budget: the shipped configs are the ones the table was
/// measured with.
#[test]
fn the_committed_fabjax_runs_read_as_the_shipped_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let runs = format!("{root}/../../results/fabjax-runs");
    let mut per_target = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(&runs).unwrap() {
        let path = entry.unwrap().path().join("config.ron");
        let run =
            TrainConfig::from_ron(&read(path.to_str().unwrap())).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let shipped = TrainConfig::from_ron(&read(&format!("{root}/../../configs/{}.ron", run.name))).unwrap();
        let expected = TrainConfig { seed: run.seed, budget: run.budget, ..shipped };
        assert_eq!(run, expected, "{}", path.display());
        *per_target.entry(run.name).or_default() += 1;
    }
    assert!(per_target.get("fabjax_gmm9").copied().unwrap_or(0) >= 5, "expected GMM-9's five seeds: {per_target:?}");
}

/// A typo in an old-format file is reported as the typo (the old format read further than the current one), and a
/// typo in a current-format file as its own.
#[test]
fn a_typo_is_reported_in_the_format_of_the_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let old = read(&format!("{root}/tests/data/legacy_configs/mog_fab_2021.ron")).replace("batch_size:", "bach_size:");
    let e = TrainConfig::from_ron(&old).unwrap_err().to_string();
    assert!(e.contains("bach_size"), "{e}");
    let new = read(&format!("{root}/../../configs/mog_fab_2021.ron")).replace("n_leapfrog:", "n_leapfrogs:");
    let e = TrainConfig::from_ron(&new).unwrap_err().to_string();
    assert!(e.contains("n_leapfrogs"), "{e}");
}

/// The α of `method.ais` must be the one the method's loss is derived for, and the error says so.
#[test]
fn an_alpha_the_method_does_not_use_is_refused_by_name() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = read(&format!("{root}/../../configs/mog_fab_2021.ron")).replace("alpha: 1.0", "alpha: 2.0");
    let e = TrainConfig::from_ron(&text).unwrap().check().unwrap_err();
    assert_eq!(e.field, "method.ais.alpha");
    assert!(e.reason.contains("FAB (2021) anneals to p"), "{}", e.reason);
}

/// A checkpoint written by the old code (the committed 2021 Many Well run) holds its config in the old format: it
/// reads as the run directory's `config.ron` does, and the run resumes from it.
#[test]
fn an_old_checkpoint_resumes() {
    let dir = format!("{}/../../results/runs/many_well16_fab_2021-seed0", env!("CARGO_MANIFEST_DIR"));
    let ckpt = std::path::PathBuf::from(format!("{dir}/checkpoint.fab"));
    let data = fab_train::checkpoint::load(&ckpt).unwrap();
    assert_eq!(data.meta["config"]["method"]["Fab2021"]["ais"]["transition"]["Hmc"]["adapt"], "Fab2021");
    let stored = TrainConfig::from_json(&data.meta["config"]).unwrap();
    let config = TrainConfig::from_ron(&read(&format!("{dir}/config.ron"))).unwrap();
    assert_eq!(stored, config);
    let Method::Fab2021 { ais } = &config.method else { panic!("a FAB 2021 run") };
    assert_eq!(ais.alpha, 1.0);
    let run = fab_train::Run::from_checkpoint(config, &data, &ckpt).unwrap();
    assert_eq!(run.iteration(), 10_000);
}
