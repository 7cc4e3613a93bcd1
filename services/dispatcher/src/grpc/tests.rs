//! The gRPC API end to end inside one process: the real dispatcher on the embedded bus,
//! served on a loopback port, called by the generated client.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use arqon_bus::{Bus, EmbeddedOptions};
use arqon_proto::dispatcher::v1 as pb;
use arqon_proto::dispatcher::v1::bus_client::BusClient;
use arqon_proto::model::RoomDelivery;
use arqon_protocol::{Envelope, ErrorCode, MessageType, SERVER_SENDER, TenantId, Topic, subject};

use super::status::ERROR_CODE_METADATA;
use crate::{DispatcherConfig, DispatcherError, DispatcherMetrics, HistoryConfig, ServiceToken};

const TOKEN: &str = "test-service-token-0123456789";
const WAIT: Duration = Duration::from_secs(5);

/// Adds `authorization` metadata (or none).
#[derive(Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            let value = value
                .parse()
                .map_err(|_| Status::internal("bad test metadata"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

type Client = BusClient<InterceptedService<Channel, Bearer>>;

struct Harness {
    bus: Bus,
    metrics: DispatcherMetrics,
    channel: Channel,
    shutdown: CancellationToken,
    served: JoinHandle<Result<(), DispatcherError>>,
}

impl Harness {
    async fn start() -> Self {
        Self::with(DispatcherConfig::default(), EmbeddedOptions::default()).await
    }

    async fn with(config: DispatcherConfig, options: EmbeddedOptions) -> Self {
        let config = DispatcherConfig {
            service_token: Some(ServiceToken::new(TOKEN)),
            ..config
        };
        let bus = Bus::embedded(options);
        let metrics = DispatcherMetrics::default();
        let shutdown = CancellationToken::new();
        let dispatcher = crate::start(config, bus.clone(), metrics.clone(), shutdown.clone())
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let served = tokio::spawn(dispatcher.serve_grpc(listener, shutdown.clone()));
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_timeout(WAIT)
            .timeout(WAIT)
            .connect()
            .await
            .unwrap();
        Self {
            bus,
            metrics,
            channel,
            shutdown,
            served,
        }
    }

    fn client_with(&self, authorization: Option<&str>) -> Client {
        BusClient::with_interceptor(self.channel.clone(), Bearer(authorization.map(Into::into)))
    }

    fn client(&self) -> Client {
        self.client_with(Some(&format!("Bearer {TOKEN}")))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        drop(self.channel);
        let served = tokio::time::timeout(WAIT, self.served)
            .await
            .unwrap()
            .unwrap();
        served.unwrap();
    }
}

fn publish_request(tenant: &str, room: &str, channel: &str, payload: Value) -> pb::PublishRequest {
    pb::PublishRequest {
        tenant: tenant.into(),
        room: room.into(),
        channel: channel.into(),
        payload_json: Bytes::from(payload.to_string()),
        metadata_json: None,
    }
}

fn error_code(status: &Status) -> &str {
    status
        .metadata()
        .get(ERROR_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn history_request(tenant: &str, room: &str, channel: &str, limit: u32) -> pb::HistoryRequest {
    pb::HistoryRequest {
        tenant: tenant.into(),
        room: room.into(),
        channel: channel.into(),
        limit,
        since: None,
        until: None,
    }
}

#[tokio::test]
async fn calls_without_the_service_token_are_refused() {
    let harness = Harness::start().await;
    let request = || publish_request("t1", "science", "general", json!({"n": 1}));
    let cases = [
        (None, "Missing service token"),
        (Some("Bearer wrong-token"), "Invalid service token"),
        (
            Some(&format!("Bearer {TOKEN}x")[..]),
            "Invalid service token",
        ),
        (
            Some(&format!("Basic {TOKEN}")[..]),
            "Malformed authorization",
        ),
    ];
    for (authorization, expected) in cases {
        let status = harness
            .client_with(authorization)
            .publish(request())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{authorization:?}");
        assert!(
            status.message().starts_with(expected),
            "{}",
            status.message()
        );
        assert!(!status.message().contains(TOKEN), "{}", status.message());
        assert_eq!(
            error_code(&status),
            ErrorCode::AuthenticationFailed.as_str()
        );
    }
    // Refused before anything happened.
    assert_eq!(harness.metrics.routed(), 0);
    let status = harness
        .client_with(None)
        .list_channels(pb::ListChannelsRequest {
            tenant: "t1".into(),
            room: "science".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    harness.stop().await;
}

#[tokio::test]
async fn publish_refuses_invalid_names_and_payloads() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let cases = [
        (
            publish_request("a.b", "science", "general", json!({})),
            "Invalid tenant name 'a.b'",
        ),
        (
            publish_request("t1", "sci ence", "general", json!({})),
            "Invalid room name 'sci ence'",
        ),
        (
            publish_request("t1", "science", "*", json!({})),
            "Invalid channel name '*'",
        ),
        (
            publish_request("t1", "science", "general", json!([1, 2])),
            "'payload_json' must be a JSON object",
        ),
        (
            publish_request("t1", "science", "general", json!("text")),
            "'payload_json' must be a JSON object",
        ),
    ];
    for (request, expected) in cases {
        let status = client.publish(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().starts_with(expected),
            "{}",
            status.message()
        );
        assert_eq!(error_code(&status), ErrorCode::ValidationError.as_str());
    }
    let mut request = publish_request("t1", "science", "general", json!({}));
    request.payload_json = Bytes::new();
    let status = client.publish(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(harness.metrics.routed(), 0);
    // Nothing was created for the refused messages.
    let status = client
        .list_channels(pb::ListChannelsRequest {
            tenant: "t1".into(),
            room: "science".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn publish_creates_the_channel_and_reaches_the_room_subject() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let tenant = TenantId::parse("t1").unwrap();
    let topic = Topic::parse("science", "general").unwrap();
    let mut room = harness
        .bus
        .subscribe(subject::room(&tenant, &topic))
        .await
        .unwrap();
    // Another tenant's room with the same name hears nothing.
    let other = TenantId::parse("t2").unwrap();
    let mut elsewhere = harness
        .bus
        .subscribe(subject::room(&other, &topic))
        .await
        .unwrap();

    let mut request = publish_request("t1", "science", "general", json!({"text": "hello", "n": 1}));
    request.metadata_json = Some(Bytes::from_static(br#"{"source":"billing"}"#));
    let published = client.publish(request).await.unwrap().into_inner();

    let message = tokio::time::timeout(WAIT, room.next())
        .await
        .unwrap()
        .unwrap();
    let delivery = RoomDelivery::decode(message.payload).unwrap();
    assert_eq!(delivery.exclude, None);
    assert!(!delivery.close_room);
    let envelope =
        Envelope::from_server_json(std::str::from_utf8(&delivery.frame).unwrap()).unwrap();
    assert_eq!(envelope.kind, MessageType::Message);
    assert_eq!(envelope.id.as_str(), published.message_id);
    assert_eq!(envelope.sender.as_deref(), Some(SERVER_SENDER));
    assert_eq!(envelope.sender.as_deref(), Some("arqonbus"));
    assert_eq!(envelope.room.as_deref(), Some("science"));
    assert_eq!(envelope.channel.as_deref(), Some("general"));
    assert_eq!(envelope.payload.get("text"), Some(json!("hello")));
    assert_eq!(envelope.metadata.get("source"), Some(json!("billing")));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), elsewhere.next())
            .await
            .is_err(),
        "another tenant's room received the message"
    );
    assert_eq!(harness.metrics.routed(), 1);

    let listed = client
        .list_channels(pb::ListChannelsRequest {
            tenant: "t1".into(),
            room: "science".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.channels.len(), 1);
    let channel = &listed.channels[0];
    assert_eq!(
        (
            channel.name.as_str(),
            channel.created_by.as_str(),
            channel.member_count
        ),
        ("general", "server", 0)
    );
    assert!(channel.last_activity.is_some());

    let info = client
        .channel_info(pb::ChannelInfoRequest {
            tenant: "t1".into(),
            room: "science".into(),
            channel: "general".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.channel.unwrap().created_by, "server");
    assert_eq!(info.message_count, 1);
    assert!(info.members.is_empty());
    // The channel exists only in t1.
    let status = client
        .channel_info(pb::ChannelInfoRequest {
            tenant: "t2".into(),
            room: "science".into(),
            channel: "general".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn history_returns_published_messages_oldest_first() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let mut ids = Vec::new();
    for n in 0..5 {
        let request = publish_request("t1", "science", "general", json!({ "n": n }));
        ids.push(
            client
                .publish(request)
                .await
                .unwrap()
                .into_inner()
                .message_id,
        );
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let history = loop {
        let history = client
            .history(history_request("t1", "science", "general", 0))
            .await
            .unwrap()
            .into_inner();
        if history.messages.len() == ids.len() || tokio::time::Instant::now() > deadline {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!history.epoch.is_empty());
    let envelopes: Vec<Envelope> = history
        .messages
        .iter()
        .map(|m| {
            Envelope::from_server_json(std::str::from_utf8(&m.envelope_json).unwrap()).unwrap()
        })
        .collect();
    let got: Vec<&str> = envelopes.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids);
    assert!(
        envelopes
            .iter()
            .all(|e| e.sender.as_deref() == Some(SERVER_SENDER))
    );
    assert!(
        history
            .messages
            .windows(2)
            .all(|w| w[0].offset < w[1].offset)
    );
    assert!(history.messages.iter().all(|m| m.stored_at.contains('T')));

    // Without `since`, the last ones; with it, the first ones from there.
    let last = client
        .history(history_request("t1", "science", "general", 2))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<String> = last
        .messages
        .iter()
        .map(|m| {
            let text = std::str::from_utf8(&m.envelope_json).unwrap();
            Envelope::from_server_json(text)
                .unwrap()
                .id
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(got, ids[3..]);
    let mut from_start = history_request("t1", "science", "general", 1);
    from_start.since = Some("2000-01-01T00:00:00Z".into());
    let first = client.history(from_start).await.unwrap().into_inner();
    assert_eq!(first.messages.len(), 1);
    assert_eq!(first.messages[0].offset, history.messages[0].offset);

    let mut bad = history_request("t1", "science", "general", 1001);
    assert_eq!(
        client.history(bad.clone()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    bad.limit = 10;
    bad.until = Some("not a time".into());
    let status = client.history(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(error_code(&status), ErrorCode::InvalidTimestamp.as_str());

    let status = client
        .history(history_request("t1", "science", "random", 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        "Channel 'random' not found in room 'science'"
    );
    assert_eq!(error_code(&status), ErrorCode::ChannelNotFound.as_str());
    harness.stop().await;
}

#[tokio::test]
async fn reads_of_missing_rooms_and_channels_are_not_found() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let status = client
        .list_channels(pb::ListChannelsRequest {
            tenant: "t1".into(),
            room: "empty".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Room 'empty' not found");
    assert_eq!(error_code(&status), ErrorCode::RoomNotFound.as_str());

    let info = |channel: &str| pb::ChannelInfoRequest {
        tenant: "t1".into(),
        room: "science".into(),
        channel: channel.into(),
    };
    let status = client.channel_info(info("general")).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "Room 'science' not found")
    );
    client
        .publish(publish_request("t1", "science", "general", json!({})))
        .await
        .unwrap();
    let status = client.channel_info(info("random")).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::NotFound,
            "Channel 'random' not found in room 'science'"
        )
    );

    // No edge is connected: the channel exists and has no members.
    let presence = client
        .presence(pb::PresenceRequest {
            tenant: "t1".into(),
            room: "science".into(),
            channel: "general".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(presence.members.is_empty());
    let status = client
        .presence(pb::PresenceRequest {
            tenant: "t1".into(),
            room: "science".into(),
            channel: "random".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn history_off_is_a_failed_precondition() {
    let config = DispatcherConfig {
        history: HistoryConfig {
            enabled: false,
            ..HistoryConfig::default()
        },
        ..DispatcherConfig::default()
    };
    let harness = Harness::with(config, EmbeddedOptions::default()).await;
    let mut client = harness.client();
    client
        .publish(publish_request("t1", "science", "general", json!({})))
        .await
        .unwrap();
    let status = client
        .history(history_request("t1", "science", "general", 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_code(&status), ErrorCode::FeatureDisabled.as_str());
    harness.stop().await;
}

#[tokio::test]
async fn a_message_larger_than_the_bus_accepts_is_refused_before_anything_happens() {
    let options = EmbeddedOptions {
        max_payload: 1024,
        ..EmbeddedOptions::default()
    };
    let harness = Harness::with(DispatcherConfig::default(), options).await;
    let mut client = harness.client();
    let big = json!({ "text": "x".repeat(2000) });
    let status = client
        .publish(publish_request("t1", "science", "general", big))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("the bus accepts at most 1024"),
        "{}",
        status.message()
    );
    let status = client
        .list_channels(pb::ListChannelsRequest {
            tenant: "t1".into(),
            room: "science".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn the_api_needs_a_valid_service_token() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let shutdown = CancellationToken::new();
    let dispatcher = crate::start(
        DispatcherConfig::default(),
        bus.clone(),
        DispatcherMetrics::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = dispatcher.serve_grpc(listener, shutdown.clone()).await;
    assert!(
        matches!(served, Err(DispatcherError::NoServiceToken)),
        "{served:?}"
    );

    let config = DispatcherConfig {
        service_token: Some(ServiceToken::new("two words")),
        ..DispatcherConfig::default()
    };
    let refused = crate::start(config, bus, DispatcherMetrics::default(), shutdown.clone()).await;
    let error = refused.unwrap_err().to_string();
    assert!(error.starts_with("ARQONBUS_SERVICE_TOKEN"), "{error}");
    assert!(!error.contains("two words"), "{error}");
    shutdown.cancel();
    dispatcher.wait().await;
}

#[test]
fn the_service_token_is_a_flag_and_is_never_printed() {
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        dispatcher: DispatcherConfig,
    }
    use clap::Parser as _;
    let cli = Cli::try_parse_from(["arqonbus", "--service-token", "s3cret-token"]).unwrap();
    let token = cli.dispatcher.service_token.as_ref().unwrap();
    assert_eq!(token.expose(), "s3cret-token");
    assert!(!format!("{cli:?}").contains("s3cret"));
    let cli = Cli::try_parse_from(["arqonbus"]).unwrap();
    assert!(cli.dispatcher.service_token.is_none());
}
