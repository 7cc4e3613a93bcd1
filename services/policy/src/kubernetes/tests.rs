//! The `CasilPolicy` watcher against a test-only Kubernetes API server on loopback: the
//! list, watch (newline-delimited events, a `410 Gone` to force a re-list) and status
//! endpoints of one custom resource, served by axum. No real API server can run here;
//! this one speaks the same HTTP and JSON, so kube's own client and watcher run
//! unchanged against it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::routing::{get, patch};
use kube::CustomResourceExt as _;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request};

use arqon_bus::{Bus, EmbeddedOptions};
use arqon_proto::policy::v1 as pb;
use arqon_proto::policy::v1::policy_server::Policy as _;

use super::CasilPolicy;
use crate::{PolicyApi, PolicyConfig, PolicyMetrics, SourceKind};

const WAIT: Duration = Duration::from_secs(10);
const NAMESPACE: &str = "bus";
const NAME: &str = "arqonbus";

/// One custom resource collection, with the history of its changes.
#[derive(Default)]
struct Inner {
    object: Option<Value>,
    resource_version: u64,
    generation: i64,
    /// `(resourceVersion, type, object)` of every change.
    events: Vec<(u64, &'static str, Value)>,
    /// Watches started before this count end.
    epoch: u64,
    /// A watch from this version or an older one is `410 Gone`.
    expired_through: Option<u64>,
    status_patches: usize,
    lists: usize,
}

#[derive(Clone, Default)]
struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

impl FakeApi {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, inner: &mut Inner, kind: &'static str, object: Value) {
        inner.resource_version += 1;
        let rv = inner.resource_version;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.events.push((rv, kind, object.clone()));
        inner.object = (kind != "DELETED").then_some(object);
        self.changed.notify_waiters();
    }

    /// `kubectl apply` of a resource whose spec is `policy`.
    fn apply(&self, policy: Value) {
        let mut inner = self.lock();
        inner.generation += 1;
        let (kind, status) = match &inner.object {
            Some(old) => ("MODIFIED", old.get("status").cloned()),
            None => ("ADDED", None),
        };
        let mut object = json!({
            "apiVersion": "arqonbus.io/v1alpha1",
            "kind": "CasilPolicy",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": inner.generation,
                         "uid": "0b6e1c1e-0000-4000-8000-000000000001"},
            "spec": {"policy": policy},
        });
        if let Some(status) = status {
            object["status"] = status;
        }
        self.record(&mut inner, kind, object);
    }

    fn delete(&self) {
        let mut inner = self.lock();
        if let Some(object) = inner.object.clone() {
            self.record(&mut inner, "DELETED", object);
        }
    }

    /// Ends every watch, and makes every version so far too old to watch from (as a
    /// compaction does, while other objects move the version on): the watcher must
    /// list again.
    fn expire_watches(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.expired_through = Some(inner.resource_version);
        inner.resource_version += 1;
        self.changed.notify_waiters();
    }

    fn status(&self) -> Value {
        self.lock()
            .object
            .as_ref()
            .and_then(|o| o.get("status").cloned())
            .unwrap_or(Value::Null)
    }

    /// Serves on a free port of 127.0.0.1; returns the client that talks to it.
    async fn serve(&self, shutdown: CancellationToken) -> kube::Client {
        let collection = "/apis/arqonbus.io/v1alpha1/namespaces/{ns}/casilpolicies";
        let app = Router::new()
            .route(collection, get(list_or_watch))
            .route(
                &format!("{collection}/{{name}}/status"),
                patch(patch_status),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        config.default_namespace = NAMESPACE.to_owned();
        kube::Client::try_from(config).unwrap()
    }
}

async fn list_or_watch(
    State(api): State<FakeApi>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    assert_eq!(ns, NAMESPACE);
    assert_eq!(
        query.get("fieldSelector").map(String::as_str),
        Some("metadata.name=arqonbus")
    );
    if query.get("watch").map(String::as_str) != Some("true") {
        let mut inner = api.lock();
        inner.lists += 1;
        return axum::Json(json!({
            "apiVersion": "arqonbus.io/v1alpha1",
            "kind": "CasilPolicyList",
            "metadata": {"resourceVersion": inner.resource_version.to_string()},
            "items": inner.object.iter().collect::<Vec<_>>(),
        }))
        .into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (epoch, gone) = {
        let inner = api.lock();
        (
            inner.epoch,
            inner.expired_through.is_some_and(|rv| from <= rv),
        )
    };
    if gone {
        let expired = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410}});
        return Body::from(format!("{expired}\n")).into_response();
    }
    let stream = futures_util::stream::unfold((api, from), move |(api, mut sent)| async move {
        loop {
            let notified = api.changed.notified();
            {
                let inner = api.lock();
                if inner.epoch != epoch {
                    return None;
                }
                if let Some((rv, kind, object)) =
                    inner.events.iter().find(|(rv, _, _)| *rv > sent).cloned()
                {
                    sent = rv;
                    let line = format!("{}\n", json!({"type": kind, "object": object}));
                    return Some((Ok::<_, std::io::Error>(line), (api.clone(), sent)));
                }
            }
            notified.await;
        }
    });
    Body::from_stream(stream).into_response()
}

async fn patch_status(
    State(api): State<FakeApi>,
    Path((ns, name)): Path<(String, String)>,
    axum::Json(patch): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    assert_eq!((ns.as_str(), name.as_str()), (NAMESPACE, NAME));
    let mut inner = api.lock();
    let Some(mut object) = inner.object.clone() else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    inner.status_patches += 1;
    object["status"] = patch["status"].clone();
    api.record(&mut inner, "MODIFIED", object.clone());
    axum::Json(inner.object.clone()).into_response()
}

/// A policy replica following the fake API's resource, on an embedded bus.
async fn replica(
    bus: &Bus,
    client: kube::Client,
    shutdown: &CancellationToken,
) -> (PolicyApi, PolicyMetrics) {
    let config = PolicyConfig {
        source: SourceKind::Kubernetes,
        ..PolicyConfig::default()
    };
    let metrics = PolicyMetrics::default();
    let policy = crate::start_with(
        config,
        bus.clone(),
        metrics.clone(),
        Some(client),
        shutdown.clone(),
    )
    .await
    .unwrap();
    (policy.api(), metrics)
}

/// Looks at the resource this replica made.
fn syncs(metrics: &PolicyMetrics) -> u64 {
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("s", "", metrics.kubernetes_syncs.clone());
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with("s_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn live(api: &PolicyApi) -> (u64, Value, String) {
    let snapshot = api
        .get_policy(Request::new(pb::GetPolicyRequest {}))
        .await
        .unwrap()
        .into_inner();
    (
        snapshot.version,
        serde_json::from_str(&snapshot.document_json).unwrap(),
        snapshot.updated_by,
    )
}

/// Waits until `check` holds for the resource's status.
async fn status_until(fake: &FakeApi, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = fake.status();
        if check(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never matched; last: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn applied(status: &Value, generation: i64) -> bool {
    status["observedGeneration"] == generation && status["conditions"][0]["status"] == "True"
}

#[tokio::test]
async fn the_resource_is_the_live_policy_and_its_status_says_so() {
    let fake = FakeApi::default();
    let shutdown = CancellationToken::new();
    let client = fake.serve(shutdown.clone()).await;
    let bus = Bus::embedded(EmbeddedOptions::default());

    // Apply: the resource becomes the next version.
    fake.apply(json!({"enabled": true, "mode": "enforce"}));
    let (api, _) = replica(&bus, client, &shutdown).await;
    let status = status_until(&fake, |s| applied(s, 1)).await;
    assert_eq!(status["appliedVersion"], 2);
    assert_eq!(status["problems"], json!([]));
    assert_eq!(status["conditions"][0]["type"], "Applied");
    assert_eq!(status["conditions"][0]["reason"], "Applied");
    let (version, document, by) = live(&api).await;
    assert_eq!(version, 2);
    assert_eq!(document["mode"], "enforce");
    assert_eq!(by, "kubernetes:bus/arqonbus");

    // Update.
    fake.apply(json!({"enabled": true, "mode": "monitor"}));
    let status = status_until(&fake, |s| applied(s, 2)).await;
    assert_eq!(status["appliedVersion"], 3);
    assert_eq!(live(&api).await.1["mode"], "monitor");

    // An invalid update: refused in the status, the live policy untouched.
    fake.apply(json!({"enabled": true, "mode": "audit"}));
    let status = status_until(&fake, |s| s["observedGeneration"] == 3).await;
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["reason"], "Invalid");
    assert_eq!(
        status["appliedVersion"], 3,
        "still the last applied version"
    );
    let problems = status["problems"].to_string();
    assert!(problems.contains("audit"), "{problems}");
    assert_eq!(live(&api).await.0, 3);
    let bad_regex = json!({"enabled": true, "policies": {"redaction": {"patterns": ["("]}}});
    fake.apply(bad_regex);
    let status = status_until(&fake, |s| s["observedGeneration"] == 4).await;
    assert_eq!(status["conditions"][0]["reason"], "Invalid", "{status:#}");
    assert_eq!(live(&api).await.0, 3);

    // Fixed again: applied; a reload over the API is refused while the resource rules.
    fake.apply(json!({"enabled": false}));
    status_until(&fake, |s| applied(s, 5)).await;
    let (version, document, _) = live(&api).await;
    assert_eq!((version, document["enabled"].clone()), (4, json!(false)));
    let refused = api
        .reload_policy(Request::new(pb::ReloadPolicyRequest {
            candidate: Some(pb::Candidate {
                source: Some(pb::candidate::Source::Document("enabled: true".to_owned())),
            }),
            expected_version: None,
            actor: "ada".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("CasilPolicy bus/arqonbus"),
        "{refused:?}"
    );

    // Delete: the last policy stays live.
    fake.delete();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(live(&api).await.0, 4);
    shutdown.cancel();
}

#[tokio::test]
async fn a_restarted_watch_relists_and_one_replica_at_a_time_follows() {
    let fake = FakeApi::default();
    let server = CancellationToken::new();
    let client = fake.serve(server.clone()).await;
    let bus = Bus::embedded(EmbeddedOptions::default());
    fake.apply(json!({"enabled": true}));
    let first_shutdown = CancellationToken::new();
    let (first, first_metrics) = replica(&bus, client.clone(), &first_shutdown).await;
    status_until(&fake, |s| applied(s, 1)).await;
    let patches = fake.lock().status_patches;

    // The API server ends the watch and forgets the versions it was at (as after a
    // compaction); a change made meanwhile is found by the re-list.
    let lists = fake.lock().lists;
    fake.expire_watches();
    fake.apply(json!({"enabled": true, "mode": "enforce"}));
    let status = status_until(&fake, |s| applied(s, 2)).await;
    assert_eq!(status["appliedVersion"], 3);
    assert_eq!(live(&first).await.1["mode"], "enforce");
    assert!(fake.lock().lists > lists, "listed again");
    assert_eq!(first_metrics.kubernetes_leader.get(), 1);

    // A re-list of an unchanged resource writes neither a version nor a status; a second
    // replica does not follow the resource while the first holds the lease.
    let second_shutdown = CancellationToken::new();
    let (second, second_metrics) = replica(&bus, client, &second_shutdown).await;
    let (patches_before, looks_before) = (fake.lock().status_patches, syncs(&first_metrics));
    fake.expire_watches();
    let deadline = tokio::time::Instant::now() + WAIT;
    while syncs(&first_metrics) == looks_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first never listed again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live(&second).await.0, 3);
    assert_eq!(fake.lock().status_patches, patches_before);
    assert!(patches_before > patches);
    assert_eq!(second_metrics.kubernetes_leader.get(), 0);
    assert_eq!(syncs(&second_metrics), 0);

    // The first stops (releasing its lease): the second takes over.
    first_shutdown.cancel();
    fake.apply(json!({"enabled": true, "mode": "monitor"}));
    let status = status_until(&fake, |s| applied(s, 3)).await;
    assert_eq!(status["appliedVersion"], 4);
    assert_eq!(live(&second).await.1["mode"], "monitor");
    assert_eq!(second_metrics.kubernetes_leader.get(), 1);
    second_shutdown.cancel();
    server.cancel();
}

/// The CRD in the chart is the one the type describes. `ARQONBUS_UPDATE_CRD=1` rewrites
/// it after a change to the type.
#[test]
fn the_chart_ships_the_crd_of_the_type() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../helm/arqonbus/crds/casilpolicies.arqonbus.io.yaml"
    );
    let generated = format!(
        "# Generated from services/policy/src/kubernetes.rs: ARQONBUS_UPDATE_CRD=1 cargo test -p arqon-policy crd\n{}",
        serde_yaml_ng::to_string(&CasilPolicy::crd()).unwrap()
    );
    if std::env::var_os("ARQONBUS_UPDATE_CRD").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let shipped = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        shipped == generated,
        "{path} is not the CRD of CasilPolicy: run ARQONBUS_UPDATE_CRD=1 cargo test -p arqon-policy crd"
    );
}
