//! Rules that are not `persistent` end with their owner's connection: when its edge says
//! the owner disconnected, or when a periodic sweep finds its edge no longer alive (the
//! edge crashed and said nothing).
//!
//! Every replica does this; deletes are idempotent, so several replicas deleting the same
//! rule is harmless. A disconnect can overtake the rule's registration in this replica's
//! copy of the bucket, so the owners that left are remembered for a while and checked
//! again every second.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use arqon_protocol::ClientId;

use super::rules::Rules;
use crate::owners::{self, Owners};

/// How long an owner that left is remembered.
const REMEMBER: Duration = Duration::from_secs(30);
/// Owners remembered at most (the sweep covers any forgotten early).
const REMEMBER_AT_MOST: usize = 4096;
/// How often remembered owners are checked again.
const RECHECK: Duration = Duration::from_secs(1);

/// Removes the rules of owners that are gone, until `shutdown`.
pub(crate) fn start(
    rules: Rules,
    owners: Owners,
    sweep_every: Duration,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let mut notices = owners.subscribe();
    tasks.spawn(async move {
        let mut recent: VecDeque<(Instant, ClientId)> = VecDeque::new();
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first sweep waits a whole period: edges starting with this service have
        // not announced themselves yet.
        let mut sweep = tokio::time::interval_at(Instant::now() + sweep_every, sweep_every);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                notice = notices.recv() => match notice {
                    Ok(client) => {
                        remove_owned_by(&rules, std::slice::from_ref(&client)).await;
                        if recent.len() == REMEMBER_AT_MOST {
                            recent.pop_front();
                        }
                        recent.push_back((Instant::now(), client));
                    }
                    // Missed notices: the sweep finds those owners' rules.
                    Err(RecvError::Lagged(missed)) => debug!(missed, "disconnect notices missed"),
                    Err(RecvError::Closed) => break,
                },
                _ = recheck.tick(), if !recent.is_empty() => {
                    while recent.front().is_some_and(|(at, _)| at.elapsed() > REMEMBER) {
                        recent.pop_front();
                    }
                    let clients: Vec<ClientId> = recent.iter().map(|(_, c)| c.clone()).collect();
                    remove_owned_by(&rules, &clients).await;
                }
                _ = sweep.tick() => sweep_dead_edges(&rules, &owners).await,
            }
        }
    });
}

/// Removes the rules (not persistent) whose owner is one of `clients`.
async fn remove_owned_by(rules: &Rules, clients: &[ClientId]) {
    let clients: HashSet<&str> = clients.iter().map(ClientId::as_str).collect();
    let owned = rules.not_persistent(|rule| clients.contains(rule.owner_client_id.as_str()));
    for rule in owned {
        match rules.delete(&rule.tenant, &rule.rule_id).await {
            Ok(()) => {
                info!(rule_id = %rule.rule_id, tenant = %rule.tenant, "webhook rule removed: its owner disconnected")
            }
            Err(error) => {
                warn!(%error, rule_id = %rule.rule_id, "cannot remove a disconnected owner's webhook rule; retried by the sweep")
            }
        }
    }
}

/// Removes the rules (not persistent) whose owner's edge is not alive.
async fn sweep_dead_edges(rules: &Rules, owners: &Owners) {
    let live = match owners.live_edges().await {
        Ok(live) => live,
        Err(error) => return owners::sweep_failed(&error),
    };
    let orphaned = rules.not_persistent(|rule| {
        // An owner id that does not parse cannot be judged; it is left alone.
        ClientId::parse(&rule.owner_client_id)
            .is_some_and(|owner| !Owners::is_connected_somewhere(&live, &owner))
    });
    for rule in orphaned {
        match rules.delete(&rule.tenant, &rule.rule_id).await {
            Ok(()) => {
                info!(rule_id = %rule.rule_id, tenant = %rule.tenant, "webhook rule removed: its owner's edge is gone")
            }
            Err(error) => {
                warn!(%error, rule_id = %rule.rule_id, "cannot remove an orphaned webhook rule; retried next sweep")
            }
        }
    }
}
