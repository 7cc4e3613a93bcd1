//! The connection: writes envelopes, and one reader task that hands answers to whoever
//! waits for them and everything else to [`Client::recv`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::warn;

use arqon_protocol::{Envelope, JsonObject, MessageType, Status};

use crate::SdkError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames received but not yet read with [`Client::recv`]. When full, the reader stops
/// reading the socket until the application catches up.
const INCOMING_CAPACITY: usize = 4096;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Bounds the TCP connect, the upgrade and the welcome frame.
    pub connect_timeout: Duration,
    /// Bounds each [`Client::publish`] and [`Client::command`].
    pub request_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            token: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectOptions {
    pub fn with_token(token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..Self::default()
        }
    }
}

#[derive(Default)]
struct Pending {
    /// Answers awaited, by the id they answer.
    waiters: HashMap<String, oneshot::Sender<Envelope>>,
    /// `command_response` acks of commands whose answer was already taken.
    swallow: HashSet<String>,
}

/// One connection to the bus.
pub struct Client {
    client_id: String,
    welcome: Envelope,
    writer: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Envelope>>,
    pending: Arc<Mutex<Pending>>,
    reader: JoinHandle<()>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connects, and reads the welcome frame.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, SdkError> {
        let connect_error = |reason: String| SdkError::Connect {
            url: url.to_owned(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| connect_error(e.to_string()))?;
        if let Some(token) = &options.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| connect_error(format!("token is not a valid header value: {e}")))?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| connect_error(format!("header {name}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| connect_error(format!("header {name}: {e}")))?;
            request.headers_mut().insert(name, value);
        }
        let opened = tokio::time::timeout(
            options.connect_timeout,
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(|_| connect_error("timed out".to_owned()))?;
        let (socket, _) = opened.map_err(|e| connect_error(e.to_string()))?;
        let (writer, mut stream) = socket.split();
        let welcome = tokio::time::timeout(options.connect_timeout, next_envelope(&mut stream))
            .await
            .map_err(|_| connect_error("no welcome frame".to_owned()))??;
        let client_id = welcome
            .payload
            .get("client_id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| SdkError::Protocol("the welcome frame has no client_id".to_owned()))?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_CAPACITY);
        let reader = tokio::spawn(read(stream, Arc::clone(&pending), incoming_tx));
        Ok(Self {
            client_id,
            welcome,
            writer: tokio::sync::Mutex::new(writer),
            incoming: tokio::sync::Mutex::new(incoming),
            pending,
            reader,
            request_timeout: options.request_timeout,
        })
    }

    /// This connection's id, from the welcome frame.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The welcome frame.
    pub fn welcome(&self) -> &Envelope {
        &self.welcome
    }

    /// Sends an envelope as it is. Its answers (if any) arrive through [`Client::recv`].
    pub async fn send(&self, envelope: &Envelope) -> Result<(), SdkError> {
        self.send_text(envelope.to_json()).await
    }

    /// Sends any text frame, valid or not (for tests of the server's validation).
    pub async fn send_text(&self, text: String) -> Result<(), SdkError> {
        self.writer
            .lock()
            .await
            .send(Message::text(text))
            .await
            .map_err(|_| SdkError::Closed)
    }

    /// The next frame that is not an answer to a [`Client::publish`] or
    /// [`Client::command`] of this client.
    pub async fn recv(&self, timeout: Duration) -> Result<Envelope, SdkError> {
        let mut incoming = self.incoming.lock().await;
        match tokio::time::timeout(timeout, incoming.recv()).await {
            Err(_) => Err(SdkError::Timeout),
            Ok(None) => Err(SdkError::Closed),
            Ok(Some(envelope)) => Ok(envelope),
        }
    }

    /// Publishes `payload` (a JSON object) to `room:channel` and waits until the bus
    /// confirms it was routed. Returns the message's id.
    pub async fn publish(
        &self,
        room: &str,
        channel: &str,
        payload: Value,
    ) -> Result<String, SdkError> {
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some(room.to_owned());
        envelope.channel = Some(channel.to_owned());
        envelope.payload = JsonObject::from_value(&payload)
            .map_err(|_| SdkError::Invalid("the payload must be a JSON object".to_owned()))?;
        let answer = self.request(&envelope, false).await?;
        match answer.kind {
            MessageType::MessageResponse => Ok(envelope.id.to_string()),
            _ => Err(rejection(&answer)),
        }
    }

    /// Sends `payload` (a JSON object) to one client of this tenant, wherever it is
    /// connected, and waits until the bus confirms it. Returns the message's id; a client
    /// that is not connected is `Rejected` with `TARGET_NOT_FOUND`.
    pub async fn send_private(&self, to_client: &str, payload: Value) -> Result<String, SdkError> {
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.to_client = Some(to_client.to_owned());
        envelope.payload = JsonObject::from_value(&payload)
            .map_err(|_| SdkError::Invalid("the payload must be a JSON object".to_owned()))?;
        let answer = self.request(&envelope, false).await?;
        match answer.kind {
            MessageType::MessageResponse => Ok(envelope.id.to_string()),
            _ => Err(rejection(&answer)),
        }
    }

    /// Replaces this connection's token before it expires (`refresh`); returns the new
    /// expiry (Unix seconds).
    pub async fn refresh(&self, token: &str) -> Result<u64, SdkError> {
        let mut args = Map::new();
        args.insert("token".to_owned(), Value::from(token));
        let response = self.command("refresh", args).await?;
        match response.status {
            Some(Status::Success) => Ok(response
                .payload
                .get("data")
                .and_then(|d| d.get("expires_at").and_then(Value::as_u64))
                .unwrap_or_default()),
            _ => Err(rejection(&response)),
        }
    }

    /// Joins `room:channel` and asks for the messages after `since_id` (the last one
    /// seen) first; returns the join response (`data.recovered`, `data.recovered_count`).
    pub async fn join_since(
        &self,
        room: &str,
        channel: &str,
        since_id: &str,
    ) -> Result<Envelope, SdkError> {
        let mut args = Map::new();
        args.insert("room".to_owned(), Value::from(room));
        args.insert("channel".to_owned(), Value::from(channel));
        args.insert("since_id".to_owned(), Value::from(since_id));
        let response = self.command("join_channel", args).await?;
        match response.status {
            Some(Status::Success) => Ok(response),
            _ => Err(rejection(&response)),
        }
    }

    /// Runs a command and returns its `response` envelope, whatever its status. An
    /// `error` envelope (the command could not be run) is an `Err`.
    pub async fn command(
        &self,
        name: &str,
        args: Map<String, Value>,
    ) -> Result<Envelope, SdkError> {
        let mut envelope = Envelope::new(MessageType::Command);
        envelope.command = Some(name.to_owned());
        envelope.args = JsonObject::from_map(&args);
        let answer = self.request(&envelope, true).await?;
        match answer.kind {
            MessageType::Response => Ok(answer),
            _ => Err(rejection(&answer)),
        }
    }

    /// Joins `room:channel`; messages published there from now on arrive in
    /// [`Client::recv`].
    pub async fn join(&self, room: &str, channel: &str) -> Result<Envelope, SdkError> {
        self.membership("join_channel", room, channel).await
    }

    pub async fn leave(&self, room: &str, channel: &str) -> Result<Envelope, SdkError> {
        self.membership("leave_channel", room, channel).await
    }

    /// Closes the connection.
    pub async fn close(&self) -> Result<(), SdkError> {
        self.writer
            .lock()
            .await
            .close()
            .await
            .map_err(|_| SdkError::Closed)
    }

    async fn membership(
        &self,
        command: &str,
        room: &str,
        channel: &str,
    ) -> Result<Envelope, SdkError> {
        let mut args = Map::new();
        args.insert("room".to_owned(), Value::from(room));
        args.insert("channel".to_owned(), Value::from(channel));
        let response = self.command(command, args).await?;
        match response.status {
            Some(Status::Success) => Ok(response),
            _ => Err(rejection(&response)),
        }
    }

    async fn request(&self, envelope: &Envelope, is_command: bool) -> Result<Envelope, SdkError> {
        let id = envelope.id.to_string();
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            pending.waiters.insert(id.clone(), tx);
            if is_command {
                pending.swallow.insert(id.clone());
            }
        }
        let outcome = async {
            self.send(envelope).await?;
            match tokio::time::timeout(self.request_timeout, rx).await {
                Err(_) => Err(SdkError::Timeout),
                Ok(Err(_)) => Err(SdkError::Closed),
                Ok(Ok(answer)) => Ok(answer),
            }
        }
        .await;
        let mut pending = lock(&self.pending);
        pending.waiters.remove(&id);
        // No `command_response` follows an error or a failure.
        if !matches!(&outcome, Ok(answer) if answer.kind == MessageType::Response) {
            pending.swallow.remove(&id);
        }
        outcome
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rejection(answer: &Envelope) -> SdkError {
    let message = answer
        .error
        .clone()
        .or_else(|| {
            answer
                .payload
                .get("message")
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| answer.to_json());
    SdkError::Rejected {
        code: answer.error_code.clone().unwrap_or_default(),
        message,
    }
}

async fn next_envelope(stream: &mut SplitStream<Socket>) -> Result<Envelope, SdkError> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                return Envelope::from_server_json(text.as_str())
                    .map_err(|e| SdkError::Protocol(e.to_string()));
            }
            Some(Ok(Message::Close(_))) | None => return Err(SdkError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(SdkError::Protocol(e.to_string())),
        }
    }
}

async fn read(
    mut stream: SplitStream<Socket>,
    pending: Arc<Mutex<Pending>>,
    incoming: mpsc::Sender<Envelope>,
) {
    loop {
        let envelope = match next_envelope(&mut stream).await {
            Ok(envelope) => envelope,
            Err(SdkError::Protocol(e)) => {
                warn!(error = %e, "ignoring a frame that is not an envelope");
                continue;
            }
            Err(_) => return,
        };
        let key = match envelope.kind {
            MessageType::Response | MessageType::Error => envelope.request_id.clone(),
            MessageType::MessageResponse => Some(envelope.id.to_string()),
            MessageType::CommandResponse => {
                if lock(&pending).swallow.remove(envelope.id.as_str()) {
                    continue;
                }
                None
            }
            _ => None,
        };
        let waiter = key.and_then(|key| lock(&pending).waiters.remove(&key));
        let undelivered = match waiter {
            Some(waiter) => waiter.send(envelope).err(),
            None => Some(envelope),
        };
        if let Some(envelope) = undelivered
            && incoming.send(envelope).await.is_err()
        {
            return;
        }
    }
}
