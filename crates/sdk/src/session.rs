//! A connection that stays up: [`Session`] reconnects with backoff when the connection
//! drops (to the next URL it was given, e.g. another edge), rejoins its channels and
//! asks for what it missed while away, saying when that could not be recovered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use arqon_protocol::{Envelope, MessageType};

use crate::{Client, ConnectOptions, SdkError};

/// Events a session delivers, in order, through [`Session::next`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Anything the bus sent that is not an answer to this session's own requests:
    /// messages of joined channels, private messages, telemetry.
    Message(Box<Envelope>),
    /// The connection dropped; the session is reconnecting.
    Disconnected { reason: String },
    /// Connected again (a new `client_id`).
    Reconnected { client_id: String },
    /// A channel joined again after a reconnect. `recovered` is `true` when every
    /// message missed while away is delivered (`recovered_count` of them, right after
    /// this event and before anything newer); `false` when they could not be (no longer
    /// in history): reload with `history`.
    Rejoined {
        room: String,
        channel: String,
        recovered: bool,
        recovered_count: u64,
    },
}

/// How a session connects and reconnects.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The edges to use, tried in turn (one is enough).
    pub urls: Vec<String>,
    pub connect: ConnectOptions,
    /// The first wait before reconnecting; doubled after each failure up to
    /// `backoff_max`, with jitter.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Events buffered for [`Session::next`]; when full, reading from the bus pauses.
    pub buffer: usize,
}

impl SessionOptions {
    pub fn new(url: impl Into<String>, connect: ConnectOptions) -> Self {
        Self {
            urls: vec![url.into()],
            connect,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            buffer: 4096,
        }
    }
}

/// What the session remembers to rejoin: each channel and the id of the last message
/// seen in it.
type Joined = BTreeMap<(String, String), Option<String>>;

struct Shared {
    joined: Mutex<Joined>,
    token: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A reconnecting connection. Requests made while it reconnects wait for it (up to the
/// request timeout).
pub struct Session {
    shared: Arc<Shared>,
    current: watch::Receiver<Option<Arc<Client>>>,
    events: mpsc::Receiver<Event>,
    supervisor: JoinHandle<()>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl Session {
    /// Connects to the first URL that answers; fails if none does.
    pub async fn connect(options: SessionOptions) -> Result<Self, SdkError> {
        if options.urls.is_empty() {
            return Err(SdkError::Invalid(
                "a session needs at least one URL".to_owned(),
            ));
        }
        let shared = Arc::new(Shared {
            joined: Mutex::new(Joined::new()),
            token: Mutex::new(options.connect.token.clone()),
        });
        let mut last_error = None;
        let mut first = None;
        for (i, url) in options.urls.iter().enumerate() {
            match Client::connect(url, options.connect.clone()).await {
                Ok(client) => {
                    first = Some((i, Arc::new(client)));
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some((index, client)) = first else {
            return Err(last_error.unwrap_or(SdkError::Closed));
        };
        let (current_tx, current) = watch::channel(Some(Arc::clone(&client)));
        let (events_tx, events) = mpsc::channel(options.buffer.max(1));
        let request_timeout = options.connect.request_timeout;
        let supervisor = tokio::spawn(supervise(
            options,
            index,
            client,
            Arc::clone(&shared),
            current_tx,
            events_tx,
        ));
        Ok(Self {
            shared,
            current,
            events,
            supervisor,
            request_timeout,
        })
    }

    /// The next event; `None` once the session has ended (it was dropped).
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event within `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Event, SdkError> {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Err(_) => Err(SdkError::Timeout),
            Ok(None) => Err(SdkError::Closed),
            Ok(Some(event)) => Ok(event),
        }
    }

    /// The connection now, waiting (up to the request timeout) while reconnecting.
    async fn client(&self) -> Result<Arc<Client>, SdkError> {
        let mut current = self.current.clone();
        let ready = tokio::time::timeout(self.request_timeout, current.wait_for(Option::is_some));
        match ready.await {
            Ok(Ok(client)) => client.clone().ok_or(SdkError::Closed),
            Ok(Err(_)) => Err(SdkError::Closed),
            Err(_) => Err(SdkError::Timeout),
        }
    }

    /// The current connection's `client_id` (it changes when the session reconnects).
    pub async fn client_id(&self) -> Result<String, SdkError> {
        Ok(self.client().await?.client_id().to_owned())
    }

    /// Joins `room:channel`; it is joined again, with what was missed, after every
    /// reconnect until [`Session::leave`].
    pub async fn join(&self, room: &str, channel: &str) -> Result<Envelope, SdkError> {
        let response = self.client().await?.join(room, channel).await?;
        lock(&self.shared.joined)
            .entry((room.to_owned(), channel.to_owned()))
            .or_insert(None);
        Ok(response)
    }

    pub async fn leave(&self, room: &str, channel: &str) -> Result<Envelope, SdkError> {
        lock(&self.shared.joined).remove(&(room.to_owned(), channel.to_owned()));
        self.client().await?.leave(room, channel).await
    }

    /// Publishes and waits for the bus's confirmation; returns the message id.
    pub async fn publish(
        &self,
        room: &str,
        channel: &str,
        payload: Value,
    ) -> Result<String, SdkError> {
        self.client().await?.publish(room, channel, payload).await
    }

    /// Sends a private message to one client of this tenant.
    pub async fn send_private(&self, to_client: &str, payload: Value) -> Result<String, SdkError> {
        self.client().await?.send_private(to_client, payload).await
    }

    /// Runs a command; its `response` whatever its status.
    pub async fn command(
        &self,
        name: &str,
        args: Map<String, Value>,
    ) -> Result<Envelope, SdkError> {
        self.client().await?.command(name, args).await
    }

    /// Replaces the token on the live connection and for every reconnect after it.
    pub async fn refresh(&self, token: &str) -> Result<u64, SdkError> {
        let expires = self.client().await?.refresh(token).await?;
        *lock(&self.shared.token) = Some(token.to_owned());
        Ok(expires)
    }
}

/// Reads the connection; on its end, reconnects with backoff and rejoins.
async fn supervise(
    options: SessionOptions,
    mut index: usize,
    mut client: Arc<Client>,
    shared: Arc<Shared>,
    current: watch::Sender<Option<Arc<Client>>>,
    events: mpsc::Sender<Event>,
) {
    loop {
        let reason = loop {
            match client.recv(Duration::from_secs(3600)).await {
                Ok(envelope) => {
                    remember(&shared, &envelope);
                    if events
                        .send(Event::Message(Box::new(envelope)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(SdkError::Timeout) => {}
                Err(e) => break e.to_string(),
            }
        };
        current.send_replace(None);
        info!(%reason, "connection lost; reconnecting");
        if events.send(Event::Disconnected { reason }).await.is_err() {
            return;
        }
        let mut backoff = options.backoff_min;
        client = loop {
            index = (index + 1) % options.urls.len();
            let url = &options.urls[index];
            let connect = ConnectOptions {
                token: lock(&shared.token).clone(),
                ..options.connect.clone()
            };
            match Client::connect(url, connect).await {
                Ok(client) => break Arc::new(client),
                Err(e) => {
                    debug!(%url, error = %e, "reconnect failed");
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(options.backoff_max);
                }
            }
        };
        let client_id = client.client_id().to_owned();
        if events.send(Event::Reconnected { client_id }).await.is_err() {
            return;
        }
        if !rejoin(&client, &shared, &events).await {
            return;
        }
        current.send_replace(Some(Arc::clone(&client)));
    }
}

/// Joins every remembered channel again, from the last message seen. The recovered
/// messages follow each join response on the connection, before anything newer.
async fn rejoin(client: &Client, shared: &Shared, events: &mpsc::Sender<Event>) -> bool {
    let joined = lock(&shared.joined).clone();
    for ((room, channel), last) in joined {
        let response = match &last {
            Some(id) => client.join_since(&room, &channel, id).await,
            None => client.join(&room, &channel).await,
        };
        let (recovered, recovered_count) = match &response {
            Ok(response) => {
                let data = response.payload.get("data").unwrap_or(Value::Null);
                (
                    // Nothing to recover (never saw a message) counts as recovered.
                    last.is_none() || data["recovered"].as_bool().unwrap_or(false),
                    data["recovered_count"].as_u64().unwrap_or(0),
                )
            }
            Err(e) => {
                debug!(%room, %channel, error = %e, "rejoin failed");
                (false, 0)
            }
        };
        let event = Event::Rejoined {
            room,
            channel,
            recovered,
            recovered_count,
        };
        if events.send(event).await.is_err() {
            return false;
        }
    }
    true
}

/// Remembers the last message seen in each joined channel, to recover from it.
fn remember(shared: &Shared, envelope: &Envelope) {
    if !matches!(envelope.kind, MessageType::Message | MessageType::Telemetry) {
        return;
    }
    if let (Some(room), Some(channel)) = (&envelope.room, &envelope.channel)
        && let Some(last) = lock(&shared.joined).get_mut(&(room.clone(), channel.clone()))
    {
        *last = Some(envelope.id.to_string());
    }
}

/// `base` plus up to half of it again, so clients that lost the same edge do not all
/// come back at once.
fn jittered(base: Duration) -> Duration {
    let extra = u64::try_from(base.as_millis() / 2)
        .unwrap_or(u64::MAX)
        .max(1);
    base + Duration::from_millis(rand::random_range(0..extra))
}
