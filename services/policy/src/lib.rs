//! The policy stage: every inbound envelope passes here between the edge and the
//! dispatcher.
//!
//! Policy replicas share one queue group on the ingress subjects, so each envelope is
//! inspected by exactly one of them, and forward what they accept to the tenant's dispatch
//! subject. This stage will run CASIL; today it checks that an envelope is well formed
//! and that its tenant matches the subject it arrived on, and forwards it unchanged.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use arqon_bus::{Bus, BusError, Message};
use arqon_proto::model::Inbound;
use arqon_protocol::subject;

/// Settings of the policy service.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyConfig {
    /// Concurrent consumers in this replica (each a member of the policy queue group).
    #[arg(
        id = "policy_workers",
        long = "policy-workers",
        env = "ARQONBUS_POLICY_WORKERS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=256),
    )]
    pub workers: u16,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { workers: 2 }
    }
}

/// Why the policy service stopped.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

/// Counters of this replica.
#[derive(Debug, Clone, Default)]
pub struct PolicyMetrics {
    forwarded: Counter,
    rejected: Counter,
    publish_errors: Counter,
}

impl PolicyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "arqonbus_policy_forwarded",
            "Envelopes forwarded to the dispatcher",
            metrics.forwarded.clone(),
        );
        registry.register(
            "arqonbus_policy_rejected",
            "Internal messages dropped as undecodable or with a tenant that does not match their subject",
            metrics.rejected.clone(),
        );
        registry.register(
            "arqonbus_policy_publish_errors",
            "Forwards the bus did not accept",
            metrics.publish_errors.clone(),
        );
        metrics
    }
}

/// A running policy stage.
#[derive(Debug)]
pub struct Policy {
    tasks: TaskTracker,
}

impl Policy {
    /// Waits until the stage has stopped (after `shutdown`).
    pub async fn wait(self) {
        self.tasks.wait().await;
        info!("policy stage stopped");
    }
}

/// Joins the policy queue group; returns once the subscriptions are registered with the
/// bus, so envelopes published from then on are inspected. Runs until `shutdown`.
pub async fn start(
    config: PolicyConfig,
    bus: Bus,
    metrics: PolicyMetrics,
    shutdown: CancellationToken,
) -> Result<Policy, PolicyError> {
    let tasks = TaskTracker::new();
    for _ in 0..config.workers {
        let subscription = bus
            .queue_subscribe(subject::INGRESS_ALL, subject::POLICY_QUEUE)
            .await?;
        let (bus, metrics, shutdown) = (bus.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut subscription = subscription;
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = subscription.next() => message,
                };
                let Some(message) = message else { break };
                inspect(&bus, &metrics, message).await;
            }
        });
    }
    bus.flush().await?;
    tasks.close();
    info!(workers = config.workers, "policy stage started");
    Ok(Policy { tasks })
}

async fn inspect(bus: &Bus, metrics: &PolicyMetrics, message: Message) {
    let inbound = match Inbound::decode(message.payload.clone()) {
        Ok(inbound) => inbound,
        Err(e) => {
            metrics.rejected.inc();
            warn!(subject = %message.subject, error = %e, "undecodable inbound envelope");
            return;
        }
    };
    if subject::tenant_of(&message.subject).as_ref() != Some(&inbound.identity.tenant) {
        metrics.rejected.inc();
        warn!(subject = %message.subject, tenant = %inbound.identity.tenant, "tenant does not match the subject");
        return;
    }
    // Accepted envelopes go on unchanged: the bytes are forwarded, not re-encoded.
    let target = subject::dispatch(&inbound.identity.tenant);
    match bus.publish(target, message.payload).await {
        Ok(()) => {
            metrics.forwarded.inc();
        }
        Err(e) => {
            metrics.publish_errors.inc();
            warn!(client_id = %inbound.identity.client_id, error = %e, "forward to dispatcher failed");
        }
    }
}
