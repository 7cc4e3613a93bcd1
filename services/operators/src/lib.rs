//! The operators service: webhooks, cron jobs, the tenant key-value store and the
//! Tier-Omega lane (`op.webhook.*`, `op.cron.*`, `op.store.*`, `op.omega.*`).
//!
//! The operators are not implemented yet: the service runs, reports ready while its bus
//! is connected, and serves nothing. Until they land, the dispatcher answers `op.*`
//! commands with `UNKNOWN_COMMAND`. All operator state will live in JetStream, so any
//! replica can answer any call.

use tokio_util::sync::CancellationToken;
use tracing::info;

use arqon_bus::Bus;

/// Runs until `shutdown`.
pub async fn run(bus: Bus, shutdown: CancellationToken) {
    info!(
        connected = bus.is_connected(),
        "operators service started (no operators yet)"
    );
    shutdown.cancelled().await;
    info!("operators service stopped");
}
