//! The policy as a Kubernetes resource: a `CasilPolicy` (group `arqonbus.io`) that
//! `kubectl apply` changes, made live across the fleet (ADR 014).
//!
//! With `ARQONBUS_POLICY_SOURCE=kubernetes`, one policy replica at a time (the holder of
//! a lease on the bus) watches the one resource named by the settings. Each version of
//! it is checked exactly as a reload is (the document, then the compiled engine) and
//! written through the same versioned compare-and-set ([`Store::ensure`]); a resource
//! that says what is live already writes nothing. The outcome goes back to the
//! resource's `status`, so `kubectl get casilpolicy` shows whether it took. An invalid
//! resource never replaces the live policy, and nor does a deleted one: deleting the
//! resource leaves the last policy live (to turn CASIL off, apply `enabled: false`).
//! While the resource is the source, reloads over the API are refused, so the two never
//! disagree silently.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use futures_util::StreamExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, watcher as watch_resource};
use kube::{Client, CustomResource, ResourceExt as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use arqon_bus::lease::{self, Leadership, LeaseTimings};
use arqon_bus::{Bus, BusError};
use arqon_casil::{Engine, Policy};
use arqon_proto::layout;
use arqon_protocol::subject;

use crate::live::Store;
use crate::metrics::{PolicyMetrics, SyncLabels};

/// How long the watcher's lease lasts: a replica that dies is replaced within this.
const LEASE: Duration = Duration::from_secs(10);
/// The condition `kubectl` and operators read: whether the resource's spec is live.
const APPLIED: &str = "Applied";

/// The spec of a `CasilPolicy`: the policy document, as `op.casil.reload` and
/// `arqon policy reload` take it (see docs/casil.md).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "arqonbus.io",
    version = "v1alpha1",
    kind = "CasilPolicy",
    namespaced,
    status = "CasilPolicyStatus",
    shortname = "casil",
    printcolumn = r#"{"name":"Applied","type":"string","jsonPath":".status.conditions[?(@.type==\"Applied\")].status"}"#,
    printcolumn = r#"{"name":"Version","type":"integer","jsonPath":".status.appliedVersion"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Applied\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CasilPolicySpec {
    /// The CASIL policy document (enabled, mode, default_decision, scope, limits,
    /// policies, metadata). Checked by the policy service, which reports problems in
    /// `status`: the API server accepts any object here.
    #[schemars(schema_with = "free_form")]
    pub policy: Value,
}

/// What the policy service made of the resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CasilPolicyStatus {
    /// The `metadata.generation` this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The live policy version made from the resource (the bus's version number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<u64>,
    /// Why the observed generation was refused; empty when it is live.
    #[serde(default)]
    pub problems: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A condition in the Kubernetes convention.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `Applied`, `Invalid` or `Unavailable`.
    pub reason: String,
    pub message: String,
    /// RFC 3339: when `status` last changed.
    pub last_transition_time: String,
    pub observed_generation: Option<i64>,
}

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Where the live policy comes from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The namespace of the resource; the client's default (the pod's) when `None`.
    pub namespace: Option<String>,
    /// The name of the `CasilPolicy`.
    pub name: String,
}

/// The resource a replica follows, as `namespace/name`.
pub(crate) fn describe(client: &Client, source: &Source) -> (String, String) {
    let namespace = source
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    (namespace, source.name.clone())
}

/// Holds the watcher's lease and, while this replica holds it, follows the resource.
/// Runs until `shutdown`.
pub(crate) async fn run(
    client: Client,
    source: Source,
    bus: Bus,
    store: Store,
    metrics: PolicyMetrics,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let bucket = bus
        .key_value(layout::lease(subject::POLICY_LEASE_BUCKET, LEASE))
        .await?;
    let (terms, mut leadership) = watch::channel(None);
    let release = CancellationToken::new();
    let leader = metrics.kubernetes_leader.clone();
    let holder = tokio::spawn(lease::hold(
        bucket,
        ("policy watcher lease", "follows the CasilPolicy resource"),
        LeaseTimings::for_ttl(LEASE),
        terms,
        move |leading| {
            leader.set(i64::from(leading));
        },
        release.clone(),
    ));
    let (namespace, name) = describe(&client, &source);
    let follower = Follower {
        api: Api::namespaced(client, &namespace),
        name,
        store,
        metrics,
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = lead(&mut leadership) => {}
        }
        info!(resource = %format!("{namespace}/{}", follower.name), "following the CasilPolicy resource");
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = follow_while_leading(&follower, &mut leadership) => {}
        }
    }
    release.cancel();
    let _ = holder.await;
    Ok(())
}

/// Returns once this replica holds the lease.
async fn lead(leadership: &mut Leadership) {
    loop {
        if lease::current(leadership).is_some() {
            return;
        }
        if leadership.changed().await.is_err() {
            // The holder stopped: only at shutdown, which the caller waits for.
            std::future::pending::<()>().await;
        }
    }
}

/// Follows the resource until the lease is lost.
async fn follow_while_leading(follower: &Follower, leadership: &mut Leadership) {
    let lost = async {
        while lease::current(leadership).is_some() {
            // A term ends at its deadline even with no message on the channel.
            let until = leadership.borrow().map(|t| t.until);
            let Some(until) = until else { break };
            tokio::select! {
                changed = leadership.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(until) => {}
            }
        }
    };
    tokio::select! {
        () = lost => warn!("lost the policy watcher lease: another replica follows the resource"),
        () = follower.follow() => {}
    }
}

/// Follows one resource into the store.
struct Follower {
    api: Api<CasilPolicy>,
    name: String,
    store: Store,
    metrics: PolicyMetrics,
}

impl Follower {
    /// Applies every version of the resource the watch shows; never returns.
    async fn follow(&self) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut events = watch_resource(self.api.clone(), config)
            .default_backoff()
            .boxed();
        let mut seen = false;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => seen = false,
                Ok(Event::Apply(resource) | Event::InitApply(resource)) => {
                    seen = true;
                    self.sync(&resource).await;
                }
                Ok(Event::InitDone) if !seen => {
                    self.count("absent");
                    warn!(
                        resource = %self.name,
                        "no CasilPolicy resource of that name: the live policy stays"
                    );
                }
                Ok(Event::InitDone) => {}
                Ok(Event::Delete(_)) => {
                    self.count("deleted");
                    warn!(
                        resource = %self.name,
                        "the CasilPolicy resource was deleted: the last policy stays live"
                    );
                }
                Err(e) => {
                    self.count("watch_error");
                    warn!(error = %e, "watching the CasilPolicy resource failed; retrying");
                }
            }
        }
    }

    /// Makes the resource's spec live (or says why not) and writes the outcome back.
    async fn sync(&self, resource: &CasilPolicy) {
        let generation = resource.metadata.generation;
        let actor = format!(
            "kubernetes:{}/{}",
            resource.namespace().unwrap_or_default(),
            resource.name_any()
        );
        let checked = Policy::from_json(&resource.spec.policy.to_string())
            .and_then(|policy| Engine::compile(policy.clone()).map(|_| policy));
        let previous = resource.status.clone().unwrap_or_default();
        let status = match checked {
            Err(e) => {
                self.count("invalid");
                warn!(%actor, generation, error = %e, "the CasilPolicy resource is invalid; the live policy stays");
                CasilPolicyStatus {
                    observed_generation: generation,
                    applied_version: previous.applied_version,
                    problems: e.problems().to_vec(),
                    conditions: vec![condition(
                        &previous,
                        generation,
                        "False",
                        "Invalid",
                        format!("not applied: {e}"),
                    )],
                }
            }
            Ok(policy) => match self.store.ensure(&actor, policy).await {
                Ok((version, written)) => {
                    self.count(if written { "applied" } else { "unchanged" });
                    CasilPolicyStatus {
                        observed_generation: generation,
                        applied_version: Some(version),
                        problems: Vec::new(),
                        conditions: vec![condition(
                            &previous,
                            generation,
                            "True",
                            "Applied",
                            format!("CASIL policy version {version} is live"),
                        )],
                    }
                }
                Err(e) => {
                    self.count("unavailable");
                    warn!(%actor, generation, error = %e, "the CasilPolicy resource could not be stored; retrying at the next change or resync");
                    CasilPolicyStatus {
                        observed_generation: generation,
                        applied_version: previous.applied_version,
                        problems: vec![e.to_string()],
                        conditions: vec![condition(
                            &previous,
                            generation,
                            "Unknown",
                            "Unavailable",
                            format!("not stored yet: {e}"),
                        )],
                    }
                }
            },
        };
        if status == previous {
            return;
        }
        let patch = Patch::Merge(json!({ "status": status }));
        if let Err(e) = self
            .api
            .patch_status(&resource.name_any(), &PatchParams::default(), &patch)
            .await
        {
            self.count("status_error");
            warn!(%actor, error = %e, "cannot write the CasilPolicy status");
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .kubernetes_syncs
            .get_or_create(&SyncLabels { outcome })
            .inc();
    }
}

/// The `Applied` condition, keeping its transition time while its status stays.
fn condition(
    previous: &CasilPolicyStatus,
    generation: Option<i64>,
    status: &str,
    reason: &str,
    message: String,
) -> Condition {
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == APPLIED && c.status == status)
        .map_or_else(
            || Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: APPLIED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests;
