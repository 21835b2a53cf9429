//! Project automation for fab: `cargo xtask ci`, `cargo xtask reproduce`, `cargo xtask bench`.
//!
//! xtask knows no fab crate: it drives `cargo` and the `fab` binary as a user would, so what it checks is what
//! a user gets.

mod bench;
mod ci;
mod fabjax;
mod long_runs;
mod reproduce;
mod sections;
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
    /// Re-run the papers' experiments and write results/RESULTS.md with tables and figures.
    Reproduce {
        /// CI-sized budgets (a few hundred iterations); output goes to target/reproduce-quick.
        #[arg(long)]
        quick: bool,
        /// Run only this experiment (e.g. mog_fab_2021), or `fabjax` (or one of `fabjax_gmm9`, `fabjax_funnel`,
        /// `fabjax_many_well32`, or a comma-separated list of them) for fab-jax's log Z benchmark.
        #[arg(long)]
        only: Option<String>,
        /// Threads for the fab binary.
        #[arg(long)]
        threads: Option<usize>,
        /// Train again experiments that already finished (default: reuse their reports, resume unfinished runs).
        #[arg(long)]
        rerun: bool,
    },
    /// Criterion figures (brief, not gated) and gungraun instruction counts gated against bench-baselines/.
    Bench {
        /// Record the gungraun baseline in bench-baselines/ instead of comparing with it.
        #[arg(long)]
        save_baseline: bool,
        /// Skip the criterion (wall-clock) runs.
        #[arg(long)]
        skip_criterion: bool,
        /// Install gungraun-runner with `cargo install` if it is missing.
        #[arg(long)]
        install_runner: bool,
        /// Only draw bench-baselines/history.png from bench-baselines/history.jsonl (runs no benchmark).
        #[arg(long)]
        plot: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Ci => ci::run(),
        Task::Reproduce { quick, only, threads, rerun } => {
            reproduce::run(reproduce::Options { quick, only, threads, rerun })
        }
        Task::Bench { save_baseline, skip_criterion, install_runner, plot } => {
            bench::run(bench::Options { save_baseline, skip_criterion, install_runner, plot })
        }
    }
}
