//! The bus over its WebSocket, the way any client uses it: connect with a token, join
//! with `join_channel`, publish `message` frames (each acknowledged), read deliveries.
//! With `--via nats` the messages go straight to the rooms' NATS subjects instead, as a
//! dispatcher publishes them: the edge's fan-out alone.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use arqon_protocol::{
    ChannelName, Envelope, JsonObject, MessageId, MessageType, RoomName, TenantId, Topic, subject,
};

use super::phases::{Sender, Transport};
use super::plan::{Plan, TRAFFIC_CHANNEL};
use super::traffic::{self, Job, Outlet, Reader};
use super::{BenchArgs, Via};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bounds each step of setting a connection up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a publisher waits for an acknowledgement before looking at its pace again.
const ACK_WAIT: Duration = Duration::from_millis(100);
/// Over `--via nats`, nothing acknowledges a core publish: flushing every so many
/// messages bounds the client's buffer.
const FLUSH_EVERY: usize = 64;
/// How much of a refusal the error summary shows.
const ERROR_EXCERPT: usize = 300;

/// The bus's WebSocket (`--transport ws`).
#[derive(Debug)]
pub(crate) struct Ws {
    url: String,
    /// Per connection, the token it presents.
    tokens: Vec<Option<String>>,
    in_flight: usize,
    via: Via,
    /// With `--via nats`: where the room subjects are, and whose.
    nats_url: Option<String>,
    tenant: String,
}

impl Ws {
    pub(crate) fn new(args: &BenchArgs) -> anyhow::Result<Self> {
        let nats_url = match args.via {
            Via::Ws => None,
            Via::Nats => Some(
                args.nats_url
                    .clone()
                    .context("--via nats needs --nats-url")?,
            ),
        };
        Ok(Self {
            url: args.ws_url.clone(),
            tokens: (0..args.connections)
                .map(|n| args.token(n))
                .collect::<Result<_, _>>()?,
            in_flight: args.in_flight.max(1),
            via: args.via,
            nats_url,
            tenant: args.tenant.clone(),
        })
    }
}

impl Transport for Ws {
    type Conn = Socket;
    type Outlet = WsOutlet;

    fn target(&self) -> String {
        self.url.clone()
    }

    fn via(&self) -> &'static str {
        match self.via {
            Via::Ws => "ws",
            Via::Nats => "nats",
        }
    }

    async fn connect(&self, index: usize) -> anyhow::Result<Socket> {
        let token = self.tokens.get(index).and_then(Option::as_deref);
        connect(&self.url, token).await
    }

    async fn join(&self, socket: &mut Socket, room: &str, channel: &str) -> anyhow::Result<()> {
        join(socket, room, channel).await
    }

    fn senders(&self, plan: &Plan) -> Vec<Sender> {
        match self.via {
            Via::Ws => plan.publishers.iter().map(|&i| Sender::Member(i)).collect(),
            Via::Nats => plan
                .nats_targets
                .iter()
                .cloned()
                .map(Sender::Room)
                .collect(),
        }
    }

    fn start(
        &self,
        socket: Socket,
        room: &str,
        reader: Reader,
        recipients: Option<u64>,
        readers: &mut JoinSet<anyhow::Result<()>>,
    ) -> Option<WsOutlet> {
        let Some(recipients) = recipients else {
            readers.spawn(read(socket, reader, 0, None));
            return None;
        };
        let (sink, stream) = socket.split();
        let permits = Arc::new(Semaphore::new(self.in_flight));
        readers.spawn(read(stream, reader, recipients, Some(Arc::clone(&permits))));
        Some(WsOutlet {
            sink,
            permits,
            room: room.to_owned(),
        })
    }

    async fn start_room_publishers(
        &self,
        jobs: Vec<(String, Job)>,
        publishers: &mut JoinSet<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let Some(url) = self.nats_url.as_deref() else {
            return Ok(());
        };
        let bus = arqon_bus::Bus::connect_nats(url, arqon_bus::NatsOptions::default()).await?;
        let tenant = TenantId::parse(&self.tenant).map_err(|e| anyhow::anyhow!("{e}"))?;
        let channel = ChannelName::parse(TRAFFIC_CHANNEL).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (room, job) in jobs {
            let topic = Topic::new(
                RoomName::parse(&room).map_err(|e| anyhow::anyhow!("{e}"))?,
                channel.clone(),
            );
            let outlet = BusOutlet {
                bus: bus.clone(),
                subject: subject::room(&tenant, &topic),
                room,
                since_flush: 0,
            };
            publishers.spawn(traffic::publish(outlet, job));
        }
        Ok(())
    }
}

/// Connects with `token` (if any) and reads the welcome frame.
pub(crate) async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request().context("the WebSocket URL")?;
    if let Some(token) = token {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).context("the token")?,
        );
    }
    let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
    let (mut socket, _) = tokio::time::timeout(STEP_TIMEOUT, connecting)
        .await
        .context("connect timed out")??;
    let welcome = next_json(&mut socket).await?;
    if welcome["payload"]["welcome"].is_null() {
        bail!("the first frame is not a welcome: {welcome}");
    }
    Ok(socket)
}

/// Joins `room:channel` and reads the response and its acknowledgement.
pub(crate) async fn join(socket: &mut Socket, room: &str, channel: &str) -> anyhow::Result<()> {
    let id = MessageId::generate();
    let command = json!({
        "id": id.as_str(), "type": "command", "command": "join_channel",
        "args": {"room": room, "channel": channel},
    });
    socket.send(Message::text(command.to_string())).await?;
    let mut answered = false;
    while !answered {
        let frame = next_json(socket).await?;
        match frame["type"].as_str() {
            Some("response")
                if frame["request_id"] == id.as_str() && frame["status"] != "success" =>
            {
                bail!("join {room}:{channel} refused: {frame}");
            }
            Some("error") if frame["request_id"] == id.as_str() => {
                bail!("join {room}:{channel} failed: {frame}")
            }
            Some("command_response") if frame["id"] == id.as_str() => answered = true,
            _ => {}
        }
    }
    Ok(())
}

async fn next_json(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(STEP_TIMEOUT, socket.next())
            .await
            .context("no answer in time")?
            .context("the connection closed")??;
        match frame {
            Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
            Message::Close(frame) => bail!("closed by the server: {frame:?}"),
            _ => {}
        }
    }
}

/// The type of a server frame, without parsing it.
fn kind(text: &str) -> Option<&str> {
    text.find(r#""type":""#)
        .and_then(|i| text[i + 8..].split('"').next())
}

/// Reads until `reader.stop`, counting deliveries, and the acknowledgements and
/// refusals of this connection's messages (`recipients` receive each; `permits` go back
/// to its publisher).
async fn read<S>(
    mut stream: S,
    reader: Reader,
    recipients: u64,
    permits: Option<Arc<Semaphore>>,
) -> anyhow::Result<()>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut tally = reader.tally();
    let counters = &reader.counters;
    let mut stop = reader.stop.clone();
    // Created once: re-arming a wait on a shared channel per frame costs more than the
    // frame.
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    loop {
        let frame = tokio::select! {
            _ = &mut stopped => break,
            frame = stream.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        };
        let text = text.as_str();
        match kind(text) {
            Some("message") => tally.message(text),
            Some("message_response") => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                counters.expected.fetch_add(recipients, Ordering::Relaxed);
                if let Some(permits) = &permits {
                    permits.add_permits(1);
                }
            }
            Some("error") => {
                counters.error(|| text.chars().take(ERROR_EXCERPT).collect());
                counters.refused.fetch_add(recipients, Ordering::Relaxed);
                if let Some(permits) = &permits {
                    permits.add_permits(1);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A WebSocket publisher: at most `--in-flight` messages unacknowledged (`permits` come
/// back as its reader sees acknowledgements).
pub(crate) struct WsOutlet {
    sink: SplitSink<Socket, Message>,
    permits: Arc<Semaphore>,
    room: String,
}

impl Outlet for WsOutlet {
    const UNACKNOWLEDGED: bool = false;

    async fn ready(&mut self) -> bool {
        match tokio::time::timeout(ACK_WAIT, self.permits.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                true
            }
            Ok(Err(_)) | Err(_) => false,
        }
    }

    async fn send(&mut self, payload: String) -> anyhow::Result<()> {
        let frame = format!(
            r#"{{"type":"message","room":"{}","channel":"{TRAFFIC_CHANNEL}","payload":{payload}}}"#,
            self.room
        );
        self.sink
            .send(Message::text(frame))
            .await
            .context("sending over the WebSocket")
    }
}

/// A `--via nats` publisher: room deliveries straight to the room's NATS subject.
pub(crate) struct BusOutlet {
    bus: arqon_bus::Bus,
    subject: String,
    room: String,
    since_flush: usize,
}

impl Outlet for BusOutlet {
    const UNACKNOWLEDGED: bool = true;

    async fn send(&mut self, payload: String) -> anyhow::Result<()> {
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some(self.room.clone());
        envelope.channel = Some(TRAFFIC_CHANNEL.to_owned());
        envelope.sender = Some("arqon-bench".to_owned());
        envelope.payload = JsonObject::parse(&payload)?;
        let delivery = arqon_proto::model::RoomDelivery::of(&envelope);
        self.bus
            .publish(self.subject.clone(), delivery.encode())
            .await?;
        self.since_flush += 1;
        if self.since_flush >= FLUSH_EVERY {
            self.bus.flush().await?;
            self.since_flush = 0;
        }
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        Ok(self.bus.flush().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_classified_without_parsing() {
        assert_eq!(
            kind(r#"{"id":"x","type":"message","payload":{}}"#),
            Some("message")
        );
        assert_eq!(
            kind(r#"{"type":"message_response"}"#),
            Some("message_response")
        );
        assert_eq!(kind(r#"{"payload":{}}"#), None);
    }
}
