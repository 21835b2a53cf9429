//! Project automation for fab: `cargo xtask ci`, `cargo xtask reproduce`, `cargo xtask bench`.
//!
//! xtask knows no fab crate: it drives `cargo` and the `fab` binary as a user would, so what it checks is what
//! a user gets.

mod ci;
mod util;

use clap::{Parser, Subcommand};

/// Command-line interface of the xtask binary.
#[derive(Parser)]
#[command(name = "xtask", about = "fab project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The full check CI runs: formatting, clippy with warnings as errors, every test.
    Ci,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Ci => ci::run(),
    }
}
