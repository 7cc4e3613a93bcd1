//! `arqon`: the ArqonBus command line.

// A command-line tool writes its results to stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod http;
mod output;
mod policy;
mod session;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Talk to an ArqonBus, and measure it.
#[derive(Debug, Parser)]
#[command(name = "arqon", version, about)]
struct Cli {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Prints the bus's `/status` (HTTP).
    Status(http::HttpArgs),
    /// Prints the bus's `/version` (HTTP).
    Version(http::HttpArgs),
    /// Connects, optionally sends one frame, and prints what arrives.
    Tail(session::TailArgs),
    /// Mints a development token from the bus's secret.
    Token(token::TokenArgs),
    /// Publishes one message to room:channel.
    Publish(session::PublishArgs),
    /// Joins room:channel and prints its messages as they arrive.
    Join(session::JoinArgs),
    /// Runs any command and prints its response.
    Command(session::CommandArgs),
    /// Prints a channel's stored messages.
    History(session::HistoryArgs),
    /// Lists a room's channels.
    Channels(session::ChannelsArgs),
    /// Opens many WebSocket connections, joins them to rooms, publishes, and reports
    /// connection rate, deliveries per second, loss and latency.
    Bench(bench::BenchArgs),
    /// Reads, checks and reloads the live CASIL policy (the policy service's gRPC API).
    Policy(policy::PolicyArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS provider for https and wss URLs, chosen on purpose (ring, as the bus).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.action {
        Action::Status(args) => http::get(&args, "/status").await,
        Action::Version(args) => http::get(&args, "/version").await,
        Action::Tail(args) => session::tail(args).await,
        Action::Token(args) => token::run(args),
        Action::Publish(args) => session::publish(args).await,
        Action::Join(args) => session::join(args).await,
        Action::Command(args) => session::command(args).await,
        Action::History(args) => session::history(args).await,
        Action::Channels(args) => session::channels(args).await,
        Action::Bench(args) => bench::run(args).await,
        Action::Policy(args) => policy::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arqon: {e:#}");
            if let Some(hint) = session::hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
