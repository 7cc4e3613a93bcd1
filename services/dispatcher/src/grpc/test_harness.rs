//! What the gRPC tests share: the real dispatcher on the embedded bus, served on a
//! loopback port, called by the generated client; and the calls and checks they repeat.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
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
use arqon_protocol::{Envelope, ErrorCode};

use crate::{Dispatcher, DispatcherConfig, DispatcherMetrics, ServiceToken};
use arqon_proto::grpc::ERROR_CODE_METADATA;

/// Serves what `dispatcher` adds to a gRPC router on `listener`, until `shutdown`.
pub(super) fn serve(
    dispatcher: &Dispatcher,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + use<> {
    let mut routes = tonic::service::RoutesBuilder::default();
    dispatcher.add_grpc(&mut routes);
    arqon_proto::grpc::serve(routes.routes(), listener, shutdown.cancelled_owned())
}

pub(super) const TOKEN: &str = "test-service-token-0123456789";
pub(super) const WAIT: Duration = Duration::from_secs(5);

/// Adds `authorization` metadata (or none).
#[derive(Clone)]
pub(super) struct Bearer(Option<String>);

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

pub(super) type Client = BusClient<InterceptedService<Channel, Bearer>>;

pub(super) struct Harness {
    pub(super) bus: Bus,
    pub(super) metrics: DispatcherMetrics,
    channel: Channel,
    shutdown: CancellationToken,
    served: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Harness {
    pub(super) async fn start() -> Self {
        Self::with(DispatcherConfig::default(), EmbeddedOptions::default()).await
    }

    pub(super) async fn with(config: DispatcherConfig, options: EmbeddedOptions) -> Self {
        let config = DispatcherConfig {
            service_token: Some(ServiceToken::new(TOKEN)),
            policy_control: config
                .policy_control
                .or_else(|| Some(arqon_proto::policy_control::allow_all())),
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
        let served = tokio::spawn(serve(&dispatcher, listener, shutdown.clone()));
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

    pub(super) fn client_with(&self, authorization: Option<&str>) -> Client {
        BusClient::with_interceptor(self.channel.clone(), Bearer(authorization.map(Into::into)))
    }

    pub(super) fn client(&self) -> Client {
        self.client_with(Some(&format!("Bearer {TOKEN}")))
    }

    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        drop(self.channel);
        let served = tokio::time::timeout(WAIT, self.served)
            .await
            .unwrap()
            .unwrap();
        served.unwrap();
    }
}

pub(super) fn publish_request(
    tenant: &str,
    room: &str,
    channel: &str,
    payload: Value,
) -> pb::PublishRequest {
    pb::PublishRequest {
        tenant: tenant.into(),
        room: room.into(),
        channel: channel.into(),
        payload_json: Bytes::from(payload.to_string()),
        metadata_json: None,
    }
}

/// A channel of room `science` of tenant `t1`.
pub(super) fn history_request(channel: &str, limit: u32) -> pb::HistoryRequest {
    pb::HistoryRequest {
        tenant: "t1".into(),
        room: "science".into(),
        channel: channel.into(),
        limit,
        since: None,
        until: None,
    }
}

/// Publishes `payload` as tenant `t1` and returns the message id.
pub(super) async fn publish(
    client: &mut Client,
    room: &str,
    channel: &str,
    payload: Value,
) -> String {
    let request = publish_request("t1", room, channel, payload);
    client
        .publish(request)
        .await
        .unwrap()
        .into_inner()
        .message_id
}

pub(super) async fn list_channels(
    client: &mut Client,
    tenant: &str,
    room: &str,
) -> Result<pb::ListChannelsResponse, Status> {
    list_page(client, tenant, room, None, 0).await
}

/// One page of `list_channels`: after `after`, at most `limit` (0: the default).
pub(super) async fn list_page(
    client: &mut Client,
    tenant: &str,
    room: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<pb::ListChannelsResponse, Status> {
    let request = pb::ListChannelsRequest {
        tenant: tenant.into(),
        room: room.into(),
        after: after.map(str::to_owned),
        limit,
    };
    Ok(client.list_channels(request).await?.into_inner())
}

/// A channel of room `science`.
pub(super) async fn channel_info(
    client: &mut Client,
    tenant: &str,
    channel: &str,
) -> Result<pb::ChannelInfoResponse, Status> {
    let request = pb::ChannelInfoRequest {
        tenant: tenant.into(),
        room: "science".into(),
        channel: channel.into(),
    };
    Ok(client.channel_info(request).await?.into_inner())
}

/// A channel of room `science` of tenant `t1`.
pub(super) async fn presence(
    client: &mut Client,
    channel: &str,
) -> Result<pb::PresenceResponse, Status> {
    let request = pb::PresenceRequest {
        tenant: "t1".into(),
        room: "science".into(),
        channel: channel.into(),
    };
    Ok(client.presence(request).await?.into_inner())
}

/// A channel of room `science` of tenant `t1`.
pub(super) async fn read_history(
    client: &mut Client,
    channel: &str,
    limit: u32,
) -> Result<pb::HistoryResponse, Status> {
    Ok(client
        .history(history_request(channel, limit))
        .await?
        .into_inner())
}

pub(super) fn error_code(status: &Status) -> &str {
    status
        .metadata()
        .get(ERROR_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The gRPC code, the bus's error code, and the beginning of the text a client sees.
pub(super) fn assert_refused(status: &Status, code: Code, error: ErrorCode, message: &str) {
    let seen = (status.code(), error_code(status));
    assert_eq!(seen, (code, error.as_str()), "{}", status.message());
    assert!(
        status.message().starts_with(message),
        "{}",
        status.message()
    );
}

/// NOT_FOUND, with the bus's error code and the text a client sees.
fn assert_not_found(status: &Status, error: ErrorCode, message: &str) {
    assert_eq!(
        (status.code(), status.message(), error_code(status)),
        (Code::NotFound, message, error.as_str())
    );
}

pub(super) fn assert_room_not_found(status: &Status, room: &str) {
    assert_not_found(
        status,
        ErrorCode::RoomNotFound,
        &format!("Room '{room}' not found"),
    );
}

/// A channel of room `science`.
pub(super) fn assert_channel_not_found(status: &Status, channel: &str) {
    assert_not_found(
        status,
        ErrorCode::ChannelNotFound,
        &format!("Channel '{channel}' not found in room 'science'"),
    );
}

/// The envelopes of stored messages, oldest first.
pub(super) fn envelopes(history: &pb::HistoryResponse) -> Vec<Envelope> {
    history
        .messages
        .iter()
        .map(|m| envelope(&m.envelope_json))
        .collect()
}

pub(super) fn envelope(json: &[u8]) -> Envelope {
    Envelope::from_server_json(std::str::from_utf8(json).unwrap()).unwrap()
}
