//! The `fab` command-line interface: train, evaluate, sample and plot FAB flows from RON configs.

mod commands;
mod config_file;
mod plot;
mod run_dir;
mod signals;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flow Annealed importance sampling Bootstrap: train a normalizing flow on an unnormalised density.
#[derive(Parser)]
#[command(name = "fab", version, about)]
struct Cli {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a flow. Without CONFIG: FAB on the 2021 mixture of Gaussians (configs/mog_fab_2021.ron).
    Train(commands::TrainArgs),
    /// Evaluate a trained flow (every metric, with and without AIS).
    Eval(commands::EvalArgs),
    /// Draw samples with their log weights into a NumPy .npy file.
    Sample(commands::SampleArgs),
    /// Figures: target contours with samples (2-D targets) or pair marginals (Many Well).
    Plot(commands::PlotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // `fab` is the target of the plain progress and evaluation lines shown when there is no terminal.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fab=info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a redirected log (nohup, CI) stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global()
    {
        eprintln!("error: could not start {n} threads: {e}");
        return ExitCode::FAILURE;
    }
    let res = match cli.command {
        Command::Train(a) => commands::train(a),
        Command::Eval(a) => commands::eval(a),
        Command::Sample(a) => commands::sample(a),
        Command::Plot(a) => commands::plot(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            match e.downcast_ref::<signals::Interrupted>() {
                Some(_) => ExitCode::from(signals::INTERRUPTED_EXIT),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message already contains (library
/// errors often include their source's text, which `{:#}` would print a second time).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Where run directories go unless `--out` says otherwise.
fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}
