//! Where an envelope goes first: the policy stage, or straight to the dispatcher when the
//! live CASIL policy does not apply to it (ADR 019).
//!
//! The edge follows the stored policy (the `policy` key of `arqon_casil`) as policy
//! replicas do, and swaps its compiled engine atomically for each newer version; each
//! envelope is routed under the version loaded when it arrived. Whether the policy
//! applies is `arqon_casil`'s `Engine::applies`, the rule the policy stage inspects by.
//!
//! It fails closed: an envelope skips the stage only while the edge holds a version read
//! from a watch that has not ended, failed or outlived a disconnection of the bus, and
//! while the bus is connected. Before the first version (the bucket may not exist yet:
//! the policy service creates it), after a watch error, or for a version this edge
//! cannot read or compile, every envelope goes through the stage.
//!
//! The edge reports the version it routes by in its liveness key (`cluster::Liveness`),
//! and a reload is answered once no live edge reports an older one. So that a report
//! never lags behind what the edge does, the edge reports a version before it starts
//! skipping the stage by it, and a newer version after it applied it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use arqon_bus::{Bus, BusError, BusStats, KvStore, KvWatch};
use arqon_casil::{Engine, Record};
use arqon_proto::layout;
use arqon_protocol::Envelope;
use arqon_protocol::subject::CASIL_POLICY_KEY;

use crate::Shared;
use crate::metrics::EdgeMetrics;

/// How long the edge waits before looking for the policy again: the bucket was absent,
/// or the watch ended or failed.
const RETRY: Duration = Duration::from_secs(1);
/// How often a watch is checked for having outlived a disconnection of the bus (the
/// check on each envelope sends it through the stage at once; this starts a new watch).
const STALE_CHECK: Duration = Duration::from_millis(250);

/// A version of the policy this edge routes by.
struct Followed {
    version: u64,
    engine: Engine,
    /// The bus's disconnections when its watch started: one more, and it may be stale.
    disconnects: u64,
}

/// The edge's view of the live policy, for routing.
pub(crate) struct PolicyRoute {
    /// `ARQONBUS_POLICY_BYPASS`.
    enabled: bool,
    bus: Bus,
    stats: Arc<BusStats>,
    live: ArcSwapOption<Followed>,
    /// The version this edge reports in its liveness key; 0: none.
    reported: AtomicU64,
    metrics: EdgeMetrics,
}

impl PolicyRoute {
    pub(crate) fn new(enabled: bool, bus: Bus, metrics: EdgeMetrics) -> Self {
        Self {
            enabled,
            stats: bus.stats(),
            bus,
            live: ArcSwapOption::empty(),
            reported: AtomicU64::new(0),
            metrics,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `envelope` goes straight to the dispatcher: the edge holds a fresh
    /// version of the policy and it does not apply to the envelope.
    pub(crate) fn skips_policy(&self, envelope: &Envelope) -> bool {
        let live = self.live.load();
        let Some(live) = live.as_deref() else {
            return false;
        };
        fresh(
            live.disconnects,
            self.bus.is_connected(),
            self.stats.disconnects(),
        ) && !live.engine.applies(envelope)
    }

    /// The version this edge reports; `None` while it sends every envelope through the
    /// policy stage.
    pub(crate) fn reported(&self) -> Option<u64> {
        match self.reported.load(Ordering::Acquire) {
            0 => None,
            version => Some(version),
        }
    }

    fn version(&self) -> Option<u64> {
        self.live.load().as_ref().map(|live| live.version)
    }
}

/// Whether a version read by a watch started at `disconnects` may still be routed by.
fn fresh(disconnects: u64, connected: bool, disconnects_now: u64) -> bool {
    connected && disconnects_now == disconnects
}

/// Follows the stored policy until `stop`, routing by it while it can.
pub(crate) async fn follow(shared: Arc<Shared>, stop: CancellationToken) {
    let route = &shared.route;
    let mut absent_logged = false;
    loop {
        // Counted before the watch starts: a disconnection from here on makes what it
        // reads suspect.
        let disconnects = route.stats.disconnects();
        match open(&shared.bus).await {
            Ok(Some((kv, watch))) => {
                absent_logged = false;
                read(&shared, &kv, watch, disconnects, &stop).await;
            }
            Ok(None) if !absent_logged => {
                absent_logged = true;
                info!(
                    "no CASIL policy bucket on the bus yet (the policy service creates it); every envelope goes through the policy stage until it is read"
                );
            }
            Ok(None) => {}
            Err(e) => debug!(error = %e, "cannot watch the CASIL policy; retrying"),
        }
        stop_skipping(&shared, "the CASIL policy is not followed").await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// The policy bucket, if the policy service made it, and a watch of it from its current
/// value on.
async fn open(bus: &Bus) -> Result<Option<(KvStore, KvWatch)>, BusError> {
    let Some(kv) = bus.existing_key_value(layout::casil(bus)).await? else {
        return Ok(None);
    };
    let watch = kv.watch_all_with_history().await?;
    Ok(Some((kv, watch)))
}

/// Applies what `watch` shows until it ends, fails, goes stale or `stop`.
async fn read(
    shared: &Shared,
    kv: &KvStore,
    mut watch: KvWatch,
    disconnects: u64,
    stop: &CancellationToken,
) {
    let route = &shared.route;
    let mut check = tokio::time::interval(STALE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            _ = check.tick() => {
                if !fresh(disconnects, shared.bus.is_connected(), route.stats.disconnects()) {
                    info!("the bus was disconnected: reading the CASIL policy again");
                    return;
                }
                continue;
            }
            event = watch.next() => event,
        };
        match event {
            Some(Ok(event)) if event.key == CASIL_POLICY_KEY => {
                if !apply(shared, kv, event.value, disconnects).await {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                warn!(error = %e, "the CASIL policy watch failed; every envelope goes through the policy stage until it is read again");
                return;
            }
            None => {
                warn!(
                    "the CASIL policy watch ended; every envelope goes through the policy stage until it is read again"
                );
                return;
            }
        }
    }
}

/// Routes by the stored `value` if it is newer than the version held. False when the
/// edge must stop routing by any version and read the policy again.
async fn apply(shared: &Shared, kv: &KvStore, value: Option<Bytes>, disconnects: u64) -> bool {
    let route = &shared.route;
    let Some(value) = value else {
        warn!("the CASIL policy was deleted from the bus");
        return false;
    };
    let record = match Record::decode(&value) {
        Ok(record) => record,
        Err(e) => {
            warn!(error = %e, "a stored CASIL policy cannot be read here; every envelope goes through the policy stage");
            return false;
        }
    };
    let held = route.version();
    if held.is_some_and(|held| record.version <= held) {
        return true;
    }
    let version = record.version;
    let engine = match Engine::compile(record.policy) {
        Ok(engine) => engine,
        Err(e) => {
            warn!(version, error = %e, "a stored CASIL policy does not compile here; every envelope goes through the policy stage");
            return false;
        }
    };
    let followed = Arc::new(Followed {
        version,
        engine,
        disconnects,
    });
    if held.is_none() {
        // Reported before it is used, and used only if it is still the stored version: a
        // reload stored meanwhile either sees this report and waits for the next, or was
        // stored before the check and is applied from the watch first.
        route.reported.store(version, Ordering::Release);
        if let Err(e) = shared.liveness.write(shared).await {
            debug!(error = %e, "cannot report the CASIL version; not skipping the policy stage");
            return false;
        }
        match kv.get(CASIL_POLICY_KEY).await {
            Ok(Some(entry)) if Record::decode(&entry.value).is_ok_and(|r| r.version == version) => {
            }
            Ok(_) => return true,
            Err(e) => {
                debug!(error = %e, "cannot check the stored CASIL version");
                return false;
            }
        }
        route.live.store(Some(followed));
        route.metrics.casil_version.set(gauge(version));
        info!(
            version,
            "routing by the CASIL policy: envelopes it does not apply to skip the policy stage"
        );
    } else {
        route.live.store(Some(followed));
        route.metrics.casil_version.set(gauge(version));
        route.reported.store(version, Ordering::Release);
        if let Err(e) = shared.liveness.write(shared).await {
            // The heartbeat reports it later; a reload waits for it until then.
            debug!(error = %e, "cannot report the CASIL version yet");
        }
        info!(version, "routing by a new CASIL policy version");
    }
    true
}

fn gauge(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// Sends every envelope through the policy stage from now on, and reports so.
async fn stop_skipping(shared: &Shared, why: &str) {
    let route = &shared.route;
    let was = route.live.swap(None);
    if was.is_none() && route.reported().is_none() {
        return;
    }
    route.reported.store(0, Ordering::Release);
    route.metrics.casil_version.set(0);
    if was.is_some() {
        info!(why, "every envelope goes through the policy stage");
    }
    if let Err(e) = shared.liveness.write(shared).await {
        debug!(error = %e, "cannot report that no CASIL version is routed by");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arqon_bus::EmbeddedOptions;
    use arqon_casil::Policy;
    use arqon_proto::layout::EdgeLiveness;

    use crate::{Edge, EdgeConfig, EdgeMetrics};

    const WAIT: Duration = Duration::from_secs(5);

    fn record(version: u64, policy: Policy) -> Bytes {
        let record = Record {
            version,
            updated_at: "2026-01-01T00:00:00Z".to_owned(),
            updated_by: "test".to_owned(),
            policy,
        };
        Bytes::from(record.encode())
    }

    /// Waits until the edge routes by `version` (`None`: by none) and reports it.
    async fn routes_by(bus: &Bus, edge: &Edge, version: Option<u64>) {
        let edges = bus.key_value(layout::edges()).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reported = edges
                .get(edge.edge_id().as_str())
                .await
                .unwrap()
                .map(|entry| EdgeLiveness::decode(&entry.value).casil_version);
            if edge.shared.route.version() == version && reported == Some(version) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "routes by {:?} and reports {reported:?}, not {version:?}",
                edge.shared.route.version()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_edge_routes_by_each_version_it_can_compile_and_by_none_otherwise() {
        let bus = Bus::embedded(EmbeddedOptions::default());
        let shutdown = CancellationToken::new();
        let metrics = EdgeMetrics::register(&mut Default::default());
        let edge = Edge::start(
            EdgeConfig::with_secret("route-test-secret"),
            bus.clone(),
            metrics,
            shutdown.clone(),
        )
        .await
        .unwrap();
        // No bucket yet: nothing skips the stage, and the edge does not create it.
        routes_by(&bus, &edge, None).await;
        assert!(
            bus.existing_key_value(layout::casil(&bus))
                .await
                .unwrap()
                .is_none()
        );

        let kv = bus.key_value(layout::casil(&bus)).await.unwrap();
        kv.put(CASIL_POLICY_KEY, record(1, Policy::default()))
            .await
            .unwrap();
        routes_by(&bus, &edge, Some(1)).await;

        // A version that does not compile here: every envelope goes through the stage.
        let mut invalid = Policy::default();
        invalid.policies.redaction.patterns = vec!["(".to_owned()];
        kv.put(CASIL_POLICY_KEY, record(2, invalid)).await.unwrap();
        routes_by(&bus, &edge, None).await;

        kv.put(CASIL_POLICY_KEY, record(3, Policy::default()))
            .await
            .unwrap();
        routes_by(&bus, &edge, Some(3)).await;
        kv.put(CASIL_POLICY_KEY, Bytes::from_static(b"not a record"))
            .await
            .unwrap();
        routes_by(&bus, &edge, None).await;
        kv.put(CASIL_POLICY_KEY, record(4, Policy::default()))
            .await
            .unwrap();
        routes_by(&bus, &edge, Some(4)).await;
        kv.delete(CASIL_POLICY_KEY).await.unwrap();
        routes_by(&bus, &edge, None).await;
        shutdown.cancel();
    }

    #[test]
    fn a_version_is_fresh_only_while_connected_and_never_disconnected_since() {
        assert!(fresh(2, true, 2));
        assert!(!fresh(2, false, 2), "disconnected now");
        assert!(
            !fresh(2, true, 3),
            "reconnected since the watch started: a reload may have been missed"
        );
    }
}
