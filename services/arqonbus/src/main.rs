//! `arqonbus`: parse the command line, build the plan of the command, run it until
//! SIGTERM/SIGINT, drain.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use arqon_telemetry::ServiceInfo;
use arqonbus::Plan;
use arqonbus::cli::{Cli, Command, HealthcheckArgs};

/// The global allocator. The bus allocates small, short-lived buffers on every worker
/// thread; with mimalloc pair echo measured about 20 % faster than with glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Run(service) => run(Plan::from(*service)).await,
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::Config(_) => print_config(&matches),
    }
}

async fn run(plan: Plan) -> ExitCode {
    // The exporter's TLS (an https collector) needs the process's provider first.
    arqon_edge::install_crypto_provider();
    let info = ServiceInfo {
        component: plan.component,
        version: arqonbus::VERSION,
        instance_id: format!("{}-{:016x}", plan.component, rand::random::<u64>()),
    };
    let common = &plan.common;
    let tracing = match arqon_telemetry::init(common.log_format, &common.log_level, &info) {
        Ok(tracing) => tracing,
        Err(e) => {
            eprintln!("arqonbus: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let code = match Box::pin(plan.run(shutdown)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "arqonbus stopped with an error");
            eprintln!("arqonbus: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The last spans: exported (bounded) before the process exits.
    let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    code
}

/// Prints what `arqonbus config <command>` shows.
#[allow(clippy::print_stdout)]
fn print_config(matches: &clap::ArgMatches) -> ExitCode {
    match arqonbus::effective::render(matches) {
        Some(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// Prints the service's answer; exit status 1 unless it is ready.
#[allow(clippy::print_stdout)]
async fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    match arqonbus::healthcheck::check(args).await {
        Ok(body) => {
            println!("{}", body.trim());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("arqonbus healthcheck: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => info!("SIGTERM received"),
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => info!("SIGINT received"),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGINT");
                return;
            }
        },
    }
    shutdown.cancel();
}
