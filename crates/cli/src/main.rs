//! `arqon`: the ArqonBus command line.

// A command-line tool writes its results to stdout.
#![allow(clippy::print_stdout)]

mod bench;
mod policy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Talk to an ArqonBus, and measure it.
#[derive(Debug, Parser)]
#[command(name = "arqon", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Opens many WebSocket connections, joins them to rooms, publishes, and reports
    /// connection rate, deliveries per second, loss and latency.
    Bench(bench::BenchArgs),
    /// Reads, checks and reloads the live CASIL policy (the policy service's gRPC API).
    Policy(policy::PolicyArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args).await,
        Command::Policy(args) => policy::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arqon: {e:#}");
            ExitCode::FAILURE
        }
    }
}
