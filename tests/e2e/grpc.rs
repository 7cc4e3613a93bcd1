//! The dispatcher's gRPC API against a whole bus: a service publishes and WebSocket members
//! receive; it sees the members and the history WebSocket clients made.

use serde_json::{Value, json};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use arqon_e2e::{Cluster, Mode, SERVICE_TOKEN as TOKEN, Topology, WAIT};
use arqon_proto::dispatcher::v1 as pb;
use arqon_proto::dispatcher::v1::bus_client::BusClient;
use arqon_protocol::{Envelope, MessageType};

#[derive(Clone)]
pub(crate) struct Bearer(&'static str);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| Status::internal("bad test metadata"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

pub(crate) type Client = BusClient<InterceptedService<Channel, Bearer>>;

async fn launch(mode: Mode) -> Cluster {
    Cluster::launch(Topology::new(mode)).await
}

pub(crate) async fn client(cluster: &Cluster, token: &'static str) -> Client {
    let channel = tokio::time::timeout(
        WAIT,
        Channel::from_shared(cluster.grpc_endpoint())
            .unwrap()
            .connect(),
    )
    .await
    .expect("gRPC connect timed out")
    .expect("gRPC connect");
    BusClient::with_interceptor(channel, Bearer(token))
}

fn publish(room: &str, channel: &str, payload: Value) -> pb::PublishRequest {
    pb::PublishRequest {
        tenant: "t-a".into(),
        room: room.into(),
        channel: channel.into(),
        payload_json: serde_json::to_vec(&payload).unwrap().into(),
        metadata_json: None,
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let cluster = super::launch(arqon_e2e::Mode::Standalone).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                let cluster = super::launch(arqon_e2e::Mode::Distributed).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }
        }
    )*};
}

both!(
    a_service_publishes_to_websocket_members,
    a_service_sees_members_and_history,
    a_wrong_token_is_refused_and_nothing_is_delivered,
);

/// A bus whose CASIL policy enforces: blocks probable secrets in `lab:*`.
async fn launch_enforcing(mode: Mode) -> Cluster {
    let mut policy = arqon_casil::Policy {
        enabled: true,
        mode: arqon_casil::Mode::Enforce,
        ..arqon_casil::Policy::default()
    };
    policy.policies.block_on_probable_secret = true;
    Cluster::launch(Topology {
        policy: arqon_policy::PolicyConfig {
            casil: arqon_policy::CasilSettings::from_policy(&policy),
            ..arqon_policy::PolicyConfig::default()
        },
        ..Topology::new(mode)
    })
    .await
}

/// A service's `Publish` passes CASIL as a client's message does: a secret is refused
/// with CASIL's reason and reaches nobody; a clean message goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_secret_is_blocked_by_casil() {
    for mode in [Mode::Standalone, Mode::Distributed] {
        let cluster = launch_enforcing(mode).await;
        let member = cluster.client("t-a").await;
        member.join("lab", "notes").await.unwrap();
        let mut service = client(&cluster, TOKEN).await;
        let refused = service
            .publish(publish(
                "lab",
                "notes",
                json!({"content": "the key is AKIAIOSFODNN7EXAMPLE"}),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{mode:?}: {refused:?}"
        );
        assert_eq!(
            refused
                .metadata()
                .get("arqon-error-code")
                .and_then(|v| v.to_str().ok()),
            Some("CASIL_POLICY_BLOCKED_SECRET"),
            "{mode:?}: {refused:?}"
        );
        service
            .publish(publish("lab", "notes", json!({"content": "hello"})))
            .await
            .unwrap();
        let delivered = member.recv(WAIT).await.unwrap();
        assert_eq!(
            delivered.payload.get("content"),
            Some(json!("hello")),
            "{mode:?}: only the clean message arrives"
        );
        cluster.stop().await;
    }
}

async fn a_service_publishes_to_websocket_members(cluster: &Cluster) {
    let member = cluster.client("t-a").await;
    member.join("science", "general").await.unwrap();
    let other_tenant = cluster.client("t-b").await;
    other_tenant.join("science", "general").await.unwrap();

    let mut service = client(cluster, TOKEN).await;
    let reply = service
        .publish(publish(
            "science",
            "general",
            json!({"alert": "reactor ok"}),
        ))
        .await
        .unwrap()
        .into_inner();

    let delivered: Envelope = member.recv(WAIT).await.unwrap();
    assert_eq!(delivered.kind, MessageType::Message);
    assert_eq!(delivered.id.as_str(), reply.message_id);
    assert_eq!(delivered.payload.get("alert"), Some(json!("reactor ok")));
    assert!(
        other_tenant.recv(arqon_e2e::QUIET).await.is_err(),
        "a publish for t-a reached t-b"
    );
}

async fn a_service_sees_members_and_history(cluster: &Cluster) {
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    member
        .publish("lab", "notes", json!({"n": 1}))
        .await
        .unwrap();

    let mut service = client(cluster, TOKEN).await;
    let presence = service
        .presence(pb::PresenceRequest {
            tenant: "t-a".into(),
            room: "lab".into(),
            channel: "notes".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = presence
        .members
        .iter()
        .map(|m| m.client_id.as_str())
        .collect();
    assert_eq!(ids, [member.client_id()]);
    assert_eq!(presence.member_count, 1);
    assert!(presence.members_complete);

    // The acknowledgement waited for the stream to store it (ADR 011): it is there now.
    let history = service
        .history(pb::HistoryRequest {
            tenant: "t-a".into(),
            room: "lab".into(),
            channel: "notes".into(),
            limit: 10,
            since: None,
            until: None,
        })
        .await
        .unwrap()
        .into_inner();
    let stored: Vec<Value> = history
        .messages
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.envelope_json).unwrap()["payload"].clone())
        .collect();
    assert_eq!(stored, [json!({"n": 1})]);
}

async fn a_wrong_token_is_refused_and_nothing_is_delivered(cluster: &Cluster) {
    let member = cluster.client("t-a").await;
    member.join("science", "general").await.unwrap();

    let mut intruder = client(cluster, "not-the-token").await;
    let refused = intruder
        .publish(publish("science", "general", json!({"x": 1})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(!refused.message().contains(TOKEN));
    assert!(
        member.recv(arqon_e2e::QUIET).await.is_err(),
        "a refused publish was delivered"
    );
}
