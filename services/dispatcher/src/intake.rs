//! The receive loops and the admission of envelopes: how many this replica handles at
//! once, and how one tenant's commands wait for their turn (ADR 016).
//!
//! Each received envelope is handled in its own task on the dispatcher's tracker, so a
//! slow one holds only itself. Two lanes bound them:
//!
//! - **Messages** (every envelope that is not a command: room and private messages,
//!   telemetry, client responses) take a permit of the message lane. When every permit
//!   is taken the receive loop waits for one: routing a message is short (a publish;
//!   the wait for the history's confirmation is off its permit), so this is the
//!   replica's back-pressure, the same for every tenant.
//! - **Commands** first take a slot of their tenant, then a permit of the command lane.
//!   A tenant runs at most `per_tenant` commands at once in this replica; its next
//!   `queued_per_tenant` wait for a slot, in order; one more is refused at once
//!   (`RATE_LIMITED`). The receive loop never waits for a command: one tenant's slow
//!   commands (history, operators calls) occupy its own slots and a bounded share of the
//!   command lane, never the message lane nor another tenant's slots.
//!
//! Order: ADR 004 keeps one envelope of a connection in flight, so handling envelopes
//! concurrently never reorders one connection's envelopes; nothing else arrives on the
//! dispatch subjects (the edges keep memberships and disconnects to themselves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use arqon_bus::Subscription;
use arqon_protocol::{ErrorCode, TenantId};

use crate::route::{self, Received};
use crate::{Context, Lane, Refusal};

/// How long a command may wait for its turn before it is answered `UNAVAILABLE`
/// without running: under the edges' default pipeline timeout (5 s), so its client
/// learns that it was not run instead of a `TIMEOUT` that leaves it unknown.
pub(crate) const COMMAND_WAIT: Duration = Duration::from_secs(4);

/// The bounds of one replica.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) messages: usize,
    pub(crate) commands: usize,
    pub(crate) per_tenant: usize,
    pub(crate) queued_per_tenant: usize,
}

/// The lanes of one replica and the tenants' command slots.
pub(crate) struct Admission {
    messages: Arc<Semaphore>,
    commands: Arc<Semaphore>,
    tenants: Mutex<HashMap<TenantId, TenantSlots>>,
    per_tenant: usize,
    /// Running and waiting commands one tenant may have.
    admitted_per_tenant: usize,
}

/// A tenant's command slots; present only while it has commands admitted, so the map
/// holds the tenants with work in this replica, not every tenant ever seen.
struct TenantSlots {
    running: Arc<Semaphore>,
    admitted: usize,
}

impl Admission {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Self {
            messages: Arc::new(Semaphore::new(bounds.messages)),
            commands: Arc::new(Semaphore::new(bounds.commands)),
            tenants: Mutex::new(HashMap::new()),
            per_tenant: bounds.per_tenant,
            admitted_per_tenant: bounds.per_tenant + bounds.queued_per_tenant,
        }
    }

    /// Admits a command of `tenant`, or `None` when the tenant has as many running and
    /// waiting as it may.
    fn admit_command(self: &Arc<Self>, tenant: &TenantId) -> Option<Ticket> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = tenants
            .entry(tenant.clone())
            .or_insert_with(|| TenantSlots {
                running: Arc::new(Semaphore::new(self.per_tenant)),
                admitted: 0,
            });
        if slots.admitted >= self.admitted_per_tenant {
            return None;
        }
        slots.admitted += 1;
        Some(Ticket {
            admission: Arc::clone(self),
            tenant: tenant.clone(),
            running: Arc::clone(&slots.running),
        })
    }

    fn release(&self, tenant: &TenantId) {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slots) = tenants.get_mut(tenant) {
            slots.admitted = slots.admitted.saturating_sub(1);
            if slots.admitted == 0 {
                tenants.remove(tenant);
            }
        }
    }
}

/// An admitted command: its place in its tenant's count until dropped.
struct Ticket {
    admission: Arc<Admission>,
    tenant: TenantId,
    running: Arc<Semaphore>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(&self.tenant);
    }
}

/// The permits of a running envelope, counted in its lane's gauge while held.
struct Turn {
    _permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    gauge: Gauge,
}

impl Turn {
    fn new(permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>), gauge: Gauge) -> Self {
        gauge.inc();
        Self {
            _permits: permits,
            gauge,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Counts a waiting command in the queued gauge while it waits.
struct Waiting(Gauge);

impl Waiting {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One receive loop: reads the dispatcher's queue subscription until `shutdown` and
/// hands every envelope to a task of its own.
pub(crate) async fn run(
    context: Arc<Context>,
    mut subscription: Subscription,
    shutdown: CancellationToken,
) {
    while let Some(message) = subscription.next_until(&shutdown).await {
        let Some(received) = route::receive(&context, message) else {
            continue;
        };
        if received.is_command() {
            admit_command(&context, received).await;
            continue;
        }
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&context.admission.messages).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break }; // closed: never, the lane lives in `context`
        let turn = Turn::new((permit, None), context.metrics.in_flight(Lane::Messages));
        let task_context = Arc::clone(&context);
        context.tasks.spawn(async move {
            route::handle(&task_context, received).await;
            drop(turn);
        });
    }
}

/// Starts a task that waits for the command's turn and runs it, or answers a command its
/// tenant has no room for at once; never waits for another envelope.
async fn admit_command(context: &Arc<Context>, received: Received) {
    let Some(ticket) = context.admission.admit_command(received.tenant()) else {
        context.metrics.refused(Refusal::TenantQueueFull);
        route::refuse(
            context,
            received,
            ErrorCode::RateLimited,
            "Too many commands of this tenant are in progress; this one was not run. Retry later.",
        )
        .await;
        return;
    };
    let task_context = Arc::clone(context);
    context.tasks.spawn(async move {
        let context = task_context;
        let waiting = Waiting::new(context.metrics.queued_commands.clone());
        let turn = tokio::time::timeout(COMMAND_WAIT, async {
            let tenant = Arc::clone(&ticket.running).acquire_owned().await?;
            let lane = Arc::clone(&context.admission.commands)
                .acquire_owned()
                .await?;
            Ok::<_, tokio::sync::AcquireError>((tenant, lane))
        })
        .await;
        drop(waiting);
        match turn {
            Ok(Ok((tenant, lane))) => {
                let turn = Turn::new(
                    (lane, Some(tenant)),
                    context.metrics.in_flight(Lane::Commands),
                );
                route::handle(&context, received).await;
                drop(turn);
            }
            Ok(Err(_closed)) => {} // never: the semaphores are never closed
            Err(_elapsed) => {
                context.metrics.refused(Refusal::WaitExpired);
                warn!(tenant = %received.tenant(), "a command waited too long for its turn");
                route::refuse(
                    &context,
                    received,
                    ErrorCode::Unavailable,
                    "The bus is busy; the command was not run. Retry later.",
                )
                .await;
            }
        }
        drop(ticket);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn admission(per_tenant: usize, queued_per_tenant: usize) -> Arc<Admission> {
        Arc::new(Admission::new(Bounds {
            messages: 4,
            commands: 8,
            per_tenant,
            queued_per_tenant,
        }))
    }

    #[test]
    fn a_tenant_is_admitted_up_to_its_running_and_waiting_commands() {
        let admission = admission(2, 1);
        let a = tenant("t-a");
        let tickets: Vec<Ticket> = (0..3)
            .map(|_| admission.admit_command(&a).unwrap())
            .collect();
        assert!(admission.admit_command(&a).is_none());
        // Another tenant is not affected.
        let b = admission.admit_command(&tenant("t-b")).unwrap();
        drop(b);
        drop(tickets);
        assert!(admission.admit_command(&a).is_some());
    }

    #[test]
    fn a_tenant_without_commands_leaves_nothing_behind() {
        let admission = admission(2, 0);
        for i in 0..100 {
            let ticket = admission.admit_command(&tenant(&format!("t-{i}")));
            drop(ticket);
        }
        assert!(admission.tenants.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_tenant_runs_at_most_its_share_of_the_command_lane() {
        let admission = admission(2, 5);
        let a = tenant("t-a");
        let tickets: Vec<Ticket> = (0..4)
            .map(|_| admission.admit_command(&a).unwrap())
            .collect();
        let mut running = Vec::new();
        for ticket in &tickets {
            if let Ok(permit) = Arc::clone(&ticket.running).try_acquire_owned() {
                running.push(permit);
            }
        }
        assert_eq!(running.len(), 2, "two of t-a's four run");
        // t-b still finds its own slots.
        let b = admission.admit_command(&tenant("t-b")).unwrap();
        assert!(Arc::clone(&b.running).try_acquire_owned().is_ok());
    }
}
