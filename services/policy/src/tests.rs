//! The stored policy and its gRPC API, on the embedded bus and over loopback gRPC.

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use arqon_bus::{Bus, EmbeddedOptions};
use arqon_casil::{Mode, Policy};
use arqon_proto::grpc::{Bearer, ServiceToken, error_code};
use arqon_proto::policy::v1 as pb;
use arqon_proto::policy::v1::policy_client::PolicyClient;
use arqon_protocol::ErrorCode;

use crate::live::{ReloadError, Store};
use crate::{CasilSettings, PolicyConfig, PolicyMetrics};

const WAIT: Duration = Duration::from_secs(5);
const TOKEN: &str = "policy-test-token-0123456789";

fn enabled() -> Policy {
    Policy {
        enabled: true,
        ..Policy::default()
    }
}

async fn open(bus: &Bus, seed: Policy) -> Store {
    let (store, watch) = Store::open(bus, seed, PolicyMetrics::default())
        .await
        .unwrap();
    tokio::spawn(store.clone().follow(watch, CancellationToken::new()));
    store
}

fn to_enforce(policy: &Policy) -> Result<Policy, arqon_casil::PolicyError> {
    policy.with_changes(json!({"mode": "enforce"}).as_object().unwrap())
}

#[tokio::test]
async fn versions_increase_and_every_store_follows() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let first = open(&bus, enabled()).await;
    assert_eq!(first.current().record.version, 1);
    assert_eq!(first.current().record.updated_by, "settings");

    // A replica that starts later takes the stored policy, not its own settings.
    let second = open(&bus, Policy::default()).await;
    assert!(second.current().engine.policy().enabled);

    let live = first.reload(None, "ada", to_enforce).await.unwrap();
    assert_eq!(live.record.version, 2);
    assert_eq!(live.record.updated_by, "ada");
    let deadline = tokio::time::Instant::now() + WAIT;
    while second.current().record.version < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not followed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(second.current().engine.policy().mode, Mode::Enforce);
}

#[tokio::test]
async fn invalid_and_stale_reloads_leave_the_live_policy_alone() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let store = open(&bus, enabled()).await;
    let bad_regex =
        |p: &Policy| p.with_changes(json!({"redaction_patterns": ["("]}).as_object().unwrap());
    let refused = store.reload(None, "ada", bad_regex).await.unwrap_err();
    assert!(matches!(refused, ReloadError::Invalid(_)), "{refused:?}");
    let bad_mode = |p: &Policy| p.with_changes(json!({"mode": "audit"}).as_object().unwrap());
    let refused = store.reload(None, "ada", bad_mode).await.unwrap_err();
    assert!(
        refused.to_string().contains("Invalid CASIL mode: audit"),
        "{refused}"
    );
    assert_eq!(store.current().record.version, 1);

    let stale = store.reload(Some(7), "ada", to_enforce).await.unwrap_err();
    assert!(
        matches!(
            stale,
            ReloadError::Conflict {
                expected: 7,
                live: 1
            }
        ),
        "{stale:?}"
    );
    assert_eq!(store.current().engine.policy().mode, Mode::Monitor);
    let applied = store.reload(Some(1), "ada", to_enforce).await.unwrap();
    assert_eq!(applied.record.version, 2);
}

#[tokio::test]
async fn a_bad_seed_refuses_to_start() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let mut seed = enabled();
    seed.policies.redaction.patterns = vec!["(".into()];
    let config = PolicyConfig {
        casil: CasilSettings::from_policy(&seed),
        ..PolicyConfig::default()
    };
    let error = crate::start(
        config,
        bus,
        PolicyMetrics::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("invalid"), "{error}");
}

/// The API served on a loopback port, as the binary serves it.
async fn serve(bus: &Bus, shutdown: &CancellationToken) -> String {
    let config = PolicyConfig {
        casil: CasilSettings::from_policy(&enabled()),
        service_token: Some(ServiceToken::new(TOKEN)),
        ..PolicyConfig::default()
    };
    let policy = crate::start(
        config,
        bus.clone(),
        PolicyMetrics::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let mut routes = tonic::service::RoutesBuilder::default();
    policy.add_grpc(&mut routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(arqon_proto::grpc::serve(
        routes.routes(),
        listener,
        shutdown.clone().cancelled_owned(),
    ));
    format!("http://{address}")
}

fn changes(value: serde_json::Value) -> Option<pb::Candidate> {
    Some(pb::Candidate {
        source: Some(pb::candidate::Source::ChangesJson(value.to_string())),
    })
}

#[tokio::test]
async fn the_grpc_api_reads_checks_and_reloads_behind_the_token() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let shutdown = CancellationToken::new();
    let url = serve(&bus, &shutdown).await;
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let bearer = Bearer::new(&ServiceToken::new(TOKEN)).unwrap();
    let mut client = PolicyClient::with_interceptor(channel.clone(), bearer);

    let live = client
        .get_policy(pb::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.version, 1);
    assert!(Policy::from_json(&live.document_json).unwrap().enabled);

    let checked = client
        .validate_policy(pb::ValidatePolicyRequest {
            candidate: Some(pb::Candidate {
                source: Some(pb::candidate::Source::Document(
                    "enabled: true\nmode: enforce\nmood: x\n".into(),
                )),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!checked.valid);
    assert!(
        checked.problems.iter().any(|p| p.contains("mood")),
        "{checked:?}"
    );

    let refused = client
        .reload_policy(pb::ReloadPolicyRequest {
            candidate: changes(json!({"max_inspect_bytes": 0})),
            expected_version: None,
            actor: "test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(error_code(&refused), Some(ErrorCode::ValidationError));
    assert!(
        refused.message().starts_with("Validation error:"),
        "{refused:?}"
    );

    let stale = client
        .reload_policy(pb::ReloadPolicyRequest {
            candidate: changes(json!({"mode": "enforce"})),
            expected_version: Some(5),
            actor: "test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&stale), Some(ErrorCode::Conflict));

    let reloaded = client
        .reload_policy(pb::ReloadPolicyRequest {
            candidate: changes(json!({"mode": "enforce"})),
            expected_version: Some(1),
            actor: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reloaded.version, reloaded.updated_by.as_str()),
        (2, "test")
    );
    assert_eq!(
        Policy::from_json(&reloaded.document_json).unwrap().mode,
        Mode::Enforce
    );

    let mut anonymous = PolicyClient::new(channel);
    let refused = anonymous
        .get_policy(pb::GetPolicyRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    shutdown.cancel();
}

/// An edge's report in the bucket of live edges, as the edge writes it.
async fn report(bus: &Bus, edge: &str, casil_version: Option<u64>) {
    let edges = bus.key_value(arqon_proto::layout::edges()).await.unwrap();
    let value = arqon_proto::layout::EdgeLiveness {
        casil_version,
        ..Default::default()
    };
    edges.put(edge, value.encode()).await.unwrap();
}

fn edge_waits(metrics: &PolicyMetrics, outcome: &'static str) -> u64 {
    metrics
        .edge_waits
        .get_or_create(&crate::metrics::ReloadLabels { outcome })
        .get()
}

#[tokio::test]
async fn a_reload_is_answered_once_every_edge_routing_by_an_older_version_applied_it() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let metrics = PolicyMetrics::default();
    let (store, watch) = Store::open(&bus, enabled(), metrics.clone()).await.unwrap();
    tokio::spawn(store.clone().follow(watch, CancellationToken::new()));
    // One edge routes by version 1; one sends everything through the stage; one is of
    // an older release that reports nothing.
    report(&bus, "edge-a", Some(1)).await;
    report(&bus, "edge-b", None).await;
    let edges = bus.key_value(arqon_proto::layout::edges()).await.unwrap();
    edges
        .put("edge-c", bytes::Bytes::from_static(br#"{"connections":1}"#))
        .await
        .unwrap();

    let reload = tokio::spawn({
        let store = store.clone();
        async move { store.reload(None, "ada", to_enforce).await }
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.current().record.version < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not applied here");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Applied here and stored, but edge-a still routes by version 1: no answer yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reload.is_finished(), "answered before edge-a applied it");
    report(&bus, "edge-a", Some(2)).await;
    let live = tokio::time::timeout(WAIT, reload)
        .await
        .expect("answered once edge-a applied it")
        .unwrap()
        .unwrap();
    assert_eq!(live.record.version, 2);
    assert_eq!(edge_waits(&metrics, "confirmed"), 1);
    assert_eq!(edge_waits(&metrics, "timeout"), 0);
}

#[tokio::test]
async fn a_reload_is_answered_after_a_bound_when_an_edge_never_applies_it() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let metrics = PolicyMetrics::default();
    let (store, watch) = Store::open(&bus, enabled(), metrics.clone()).await.unwrap();
    tokio::spawn(store.clone().follow(watch, CancellationToken::new()));
    report(&bus, "edge-gone", Some(1)).await;
    let live = store.reload(None, "ada", to_enforce).await.unwrap();
    assert_eq!(live.record.version, 2);
    assert_eq!(edge_waits(&metrics, "timeout"), 1);
    assert_eq!(edge_waits(&metrics, "confirmed"), 0);
}
