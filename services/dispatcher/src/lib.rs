//! The dispatcher: routes every accepted envelope and answers commands.
//!
//! Dispatcher replicas share one queue group on the dispatch subjects, so each envelope
//! is routed once. A `message` goes to its room's subject (every edge with members fans
//! it out); a `command` is answered with a `response`; and every inbound envelope gets
//! exactly one answer to the edge that sent it (frames, or an empty completion), which
//! the edge waits for before reading that client's next frame. Joins and leaves are
//! decided here and applied by the edge.

mod commands;
mod route;

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use arqon_bus::{Bus, BusError};
use arqon_protocol::subject;

/// Settings of the dispatcher.
#[derive(Debug, Clone, clap::Args)]
pub struct DispatcherConfig {
    /// Concurrent consumers in this replica (each a member of the dispatcher queue group).
    #[arg(
        id = "dispatcher_workers",
        long = "dispatcher-workers",
        env = "ARQONBUS_DISPATCHER_WORKERS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=256),
    )]
    pub workers: u16,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self { workers: 2 }
    }
}

/// Why the dispatcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

/// Counters of this replica.
#[derive(Debug, Clone, Default)]
pub struct DispatcherMetrics {
    routed: Counter,
    commands: Counter,
    rejected: Counter,
    publish_errors: Counter,
}

impl DispatcherMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "arqonbus_dispatcher_routed",
            "Messages published to a room",
            metrics.routed.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_commands",
            "Commands answered",
            metrics.commands.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_rejected",
            "Internal messages dropped as undecodable or with a tenant that does not match their subject",
            metrics.rejected.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_publish_errors",
            "Publishes the bus did not accept",
            metrics.publish_errors.clone(),
        );
        metrics
    }
}

pub(crate) struct Context {
    bus: Bus,
    metrics: DispatcherMetrics,
    started: Instant,
}

/// A running dispatcher.
#[derive(Debug)]
pub struct Dispatcher {
    tasks: TaskTracker,
}

impl Dispatcher {
    /// Waits until the dispatcher has stopped (after `shutdown`).
    pub async fn wait(self) {
        self.tasks.wait().await;
        info!("dispatcher stopped");
    }
}

/// Joins the dispatcher queue group; returns once the subscriptions are registered with
/// the bus. Runs until `shutdown`.
pub async fn start(
    config: DispatcherConfig,
    bus: Bus,
    metrics: DispatcherMetrics,
    shutdown: CancellationToken,
) -> Result<Dispatcher, DispatcherError> {
    let context = Arc::new(Context {
        bus: bus.clone(),
        metrics,
        started: Instant::now(),
    });
    let tasks = TaskTracker::new();
    for _ in 0..config.workers {
        let mut subscription = bus
            .queue_subscribe(subject::DISPATCH_ALL, subject::DISPATCHER_QUEUE)
            .await?;
        let (context, shutdown) = (Arc::clone(&context), shutdown.clone());
        tasks.spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = subscription.next() => message,
                };
                let Some(message) = message else { break };
                route::handle(&context, message).await;
            }
        });
    }
    bus.flush().await?;
    tasks.close();
    info!(workers = config.workers, "dispatcher started");
    Ok(Dispatcher { tasks })
}
