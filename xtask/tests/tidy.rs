//! Tidy checks over the source tree: no skipped or panic-expecting tests, a `//!` purpose line atop every file.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && !name.starts_with("target-") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 30, "found only {} Rust files: is the tree walk broken?", files.len());
    files
}

#[test]
fn no_test_is_skipped_or_expects_a_panic() {
    // Built from pieces so this file does not trip its own check.
    let banned = [format!("#[{}", "ignore"), format!("#[{}", "should_panic")];
    for file in workspace_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for b in &banned {
            assert!(
                !text.contains(b.as_str()),
                "{}: contains {b}: tests must run and must not expect panics",
                file.display()
            );
        }
    }
}

#[test]
fn every_source_file_starts_with_a_purpose_line() {
    for file in workspace_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(
            first.starts_with("//!"),
            "{}: the first line must be a `//!` purpose line, found {first:?}",
            file.display()
        );
    }
}
