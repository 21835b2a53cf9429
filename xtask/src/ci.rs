//! `cargo xtask ci`: the one test command of the README, run by `.ci/run` on a clean checkout.

use crate::util::{cargo, run_checked};

/// Formatting check, clippy with warnings as errors, every test of every crate (xtask's own included), then the
/// Python package built and tested as a user would (`crates/fab-py/ci.sh`: a fresh venv, maturin, numpy and pytest
/// from PyPI, `pip install`, pytest).
pub fn run_all() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run_checked(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run_checked(clippy)?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    run_checked(test)?;
    let mut python = std::process::Command::new("bash");
    python.arg(crate::util::project_root().join("crates/fab-py/ci.sh"));
    run_checked(python)?;
    Ok(())
}

/// Entry point of the `ci` task.
pub fn run() -> anyhow::Result<()> {
    run_all()
}
