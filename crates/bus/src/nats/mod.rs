//! The NATS backend: async-nats core for messages, JetStream for KV and history.
//!
//! Every call that waits on the server is bounded by `NatsOptions::request_timeout`, and
//! calls fail fast with `Unavailable` while the client is disconnected instead of
//! queueing behind a reconnect.

mod consumer;
mod history;
mod kv;
mod setup;
mod workqueue;

use std::future::{Future, IntoFuture as _};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{ConnectOptions, Event, ServerAddr, StatusCode, jetstream};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::config::{HistoryConfig, KvConfig, NatsOptions, WorkQueueConfig};
use crate::error::BusError;
use crate::headers::Headers;
use crate::message::Message;
use crate::stats::BusStats;

pub(crate) use history::NatsHistory;
pub(crate) use kv::NatsKv;
use setup::Setup;
pub(crate) use workqueue::{NatsAcker, NatsWorkQueue};

/// The NATS backend; clones share one client.
#[derive(Clone)]
pub(crate) struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Bound on creating or updating a stream, bucket or consumer, retries included.
    setup_timeout: Duration,
    stats: Arc<BusStats>,
    timeout: Duration,
    /// Replicas of every stream and bucket this bus opens.
    replicas: usize,
}

/// Adds the credentials and TLS settings of `auth` (checked by `NatsAuth::validate`).
async fn authenticate(
    connect: ConnectOptions,
    auth: &crate::config::NatsAuth,
) -> Result<ConnectOptions, BusError> {
    let mut connect = match (&auth.user, &auth.password) {
        (Some(user), Some(password)) => connect.user_and_password(user.clone(), password.clone()),
        _ => connect,
    };
    if let Some(token) = &auth.token {
        connect = connect.token(token.clone());
    }
    if let Some(seed) = &auth.nkey_seed {
        connect = connect.nkey(seed.clone());
    }
    if let Some(path) = &auth.credentials_file {
        connect = connect.credentials_file(path).await.map_err(|e| {
            BusError::InvalidConfig(format!(
                "cannot read the NATS credentials file {}: {e}",
                path.display()
            ))
        })?;
    }
    if let Some(ca) = &auth.tls_ca_file {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&auth.tls_cert_file, &auth.tls_key_file) {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(connect.require_tls(auth.tls_required))
}

impl NatsBus {
    pub(crate) async fn connect(url: &str, options: NatsOptions) -> Result<NatsBus, BusError> {
        options.validate()?;
        let servers = server_addrs(url)?;
        let stats = Arc::new(BusStats::default());
        let events = Arc::clone(&stats);
        let where_to = redact(url);
        let connect = authenticate(ConnectOptions::new(), &options.auth)
            .await?
            .name(&options.name)
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.request_timeout))
            .subscription_capacity(options.subscription_capacity.max(1))
            .max_reconnects(None)
            .event_callback(move |event| {
                let stats = Arc::clone(&events);
                async move { on_event(&stats, event) }
            })
            .connect(servers);
        let client = match tokio::time::timeout(options.connect_timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => {
                return Err(BusError::Unavailable(format!(
                    "cannot connect to NATS at {where_to}: {err}"
                )));
            }
            Err(_) => {
                return Err(BusError::Unavailable(format!(
                    "no NATS server answered at {where_to} within {:?}",
                    options.connect_timeout
                )));
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());
        let setup_timeout = options.setup_timeout.max(options.request_timeout);
        tracing::info!(server = %where_to, "connected to NATS");
        Ok(NatsBus {
            client,
            js,
            setup_timeout,
            stats,
            timeout: options.request_timeout,
            replicas: options.jetstream_replicas,
        })
    }

    pub(crate) fn stats(&self) -> Arc<BusStats> {
        Arc::clone(&self.stats)
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    pub(crate) async fn publish(
        &self,
        subject: String,
        reply: Option<String>,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError> {
        ensure_connected(&self.client)?;
        let client = &self.client;
        bounded(self.timeout, async move {
            match (reply, headers.is_empty()) {
                (None, true) => client.publish(subject, payload).await,
                (None, false) => {
                    client
                        .publish_with_headers(subject, headers.to_nats(), payload)
                        .await
                }
                (Some(reply), true) => client.publish_with_reply(subject, reply, payload).await,
                (Some(reply), false) => {
                    client
                        .publish_with_reply_and_headers(subject, reply, headers.to_nats(), payload)
                        .await
                }
            }
            .map_err(|err| publish_error(&err))
        })
        .await
    }

    /// A JetStream publish: sent when this returns; the future resolves with the
    /// stream's acknowledgement (bounded by the request timeout).
    pub(crate) async fn publish_stored(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
    ) -> Result<impl Future<Output = Result<u64, BusError>> + Send + 'static, BusError> {
        ensure_connected(&self.client)?;
        let js = &self.js;
        let ack = bounded(self.timeout, async move {
            if headers.is_empty() {
                js.publish(subject, payload).await
            } else {
                js.publish_with_headers(subject, headers.to_nats(), payload)
                    .await
            }
            .map_err(|err| BusError::Unavailable(format!("publish failed: {err}")))
        })
        .await?;
        let timeout = self.timeout;
        Ok(async move {
            match tokio::time::timeout(timeout, ack.into_future()).await {
                Ok(Ok(ack)) => Ok(ack.sequence),
                Ok(Err(err)) => Err(match err.kind() {
                    jetstream::context::PublishErrorKind::StreamNotFound => BusError::NoResponders,
                    jetstream::context::PublishErrorKind::TimedOut => BusError::Timeout,
                    _ => BusError::Backend(format!("not stored: {err}")),
                }),
                Err(_) => Err(BusError::Timeout),
            }
        })
    }

    pub(crate) async fn subscribe(
        &self,
        subject: String,
        group: Option<String>,
    ) -> Result<async_nats::Subscriber, BusError> {
        // A subscription made while disconnected is sent on reconnect, as NATS does; the
        // bound only matters when the client's command queue is full.
        let client = &self.client;
        bounded(self.timeout, async move {
            match group {
                None => client.subscribe(subject).await,
                Some(group) => client.queue_subscribe(subject, group).await,
            }
            .map_err(|err| BusError::Backend(format!("subscribe failed: {err}")))
        })
        .await
    }

    pub(crate) async fn request(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        ensure_connected(&self.client)?;
        let mut request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        if !headers.is_empty() {
            request = request.headers(headers.to_nats());
        }
        // The client enforces `timeout`; the outer bound only guards against a stuck
        // command queue.
        let client = &self.client;
        bounded(timeout + self.timeout, async move {
            client
                .send_request(subject, request)
                .await
                .map(convert_message)
                .map_err(|err| match err.kind() {
                    async_nats::RequestErrorKind::TimedOut => BusError::Timeout,
                    async_nats::RequestErrorKind::NoResponders => BusError::NoResponders,
                    async_nats::RequestErrorKind::InvalidSubject => {
                        BusError::InvalidSubject(err.to_string())
                    }
                    _ => BusError::Backend(format!("request failed: {err}")),
                })
        })
        .await
    }

    /// Sends one request from a fresh inbox and gathers replies until `max_replies` (0:
    /// no limit) arrived or `deadline` passed. The inbox is subscribed before the request
    /// goes out (same connection, so the server sees the SUB first); dropping the
    /// subscriber at the end unsubscribes it.
    pub(crate) async fn request_many(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        max_replies: usize,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Message>, BusError> {
        ensure_connected(&self.client)?;
        let inbox = self.client.new_inbox();
        let mut replies = self.subscribe(inbox.clone(), None).await?;
        self.publish(subject, Some(inbox), headers, payload).await?;
        let mut gathered = Vec::new();
        while max_replies == 0 || gathered.len() < max_replies {
            match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(message)) => match message.status {
                    None => gathered.push(convert_message(message)),
                    // The server answers a request nobody received with a 503 status:
                    // no reply can come.
                    Some(StatusCode::NO_RESPONDERS) => break,
                    Some(_) => {}
                },
                Ok(None) | Err(_) => break,
            }
        }
        Ok(gathered)
    }

    pub(crate) async fn flush(&self) -> Result<(), BusError> {
        ensure_connected(&self.client)?;
        let client = &self.client;
        bounded(self.timeout, async move {
            client
                .flush()
                .await
                .map_err(|err| BusError::Unavailable(format!("flush failed: {err}")))
        })
        .await
    }

    fn setup(&self) -> Setup<'_> {
        Setup {
            js: &self.js,
            attempt: self.timeout,
            budget: self.setup_timeout,
            replicas: self.replicas,
        }
    }

    pub(crate) async fn key_value(&self, config: &KvConfig) -> Result<NatsKv, BusError> {
        ensure_connected(&self.client)?;
        NatsKv::open(self.client.clone(), self.setup(), config, self.timeout).await
    }

    pub(crate) async fn existing_key_value(
        &self,
        bucket: &str,
    ) -> Result<Option<NatsKv>, BusError> {
        ensure_connected(&self.client)?;
        NatsKv::open_existing(self.client.clone(), &self.js, bucket, self.timeout).await
    }

    pub(crate) async fn history(&self, config: &HistoryConfig) -> Result<NatsHistory, BusError> {
        ensure_connected(&self.client)?;
        NatsHistory::open(self.client.clone(), self.setup(), config, self.timeout).await
    }

    pub(crate) async fn work_queue(
        &self,
        config: &WorkQueueConfig,
    ) -> Result<NatsWorkQueue, BusError> {
        ensure_connected(&self.client)?;
        NatsWorkQueue::open(self.client.clone(), self.setup(), config, self.timeout).await
    }

    /// The names of the streams that start with `prefix` (every kind of stream: the
    /// server lists them all), paged through.
    pub(crate) async fn stream_names(&self, prefix: &str) -> Result<Vec<String>, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            let mut names = self.js.stream_names();
            let mut found = Vec::new();
            while let Some(name) = names
                .try_next()
                .await
                .map_err(|err| BusError::Backend(format!("cannot list streams: {err}")))?
            {
                if name.starts_with(prefix) {
                    found.push(name);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Deletes the stream `name`; whether there was one.
    pub(crate) async fn delete_stream(&self, name: &str) -> Result<bool, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            match self.js.delete_stream(name).await {
                Ok(_) => Ok(true),
                Err(err) => match err.kind() {
                    jetstream::context::DeleteStreamErrorKind::JetStream(js_err)
                        if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(false)
                    }
                    _ => Err(BusError::Backend(format!(
                        "cannot delete stream {name}: {err}"
                    ))),
                },
            }
        })
        .await
    }

    pub(crate) async fn open_history(
        &self,
        name: &str,
    ) -> Result<Option<(NatsHistory, HistoryConfig)>, BusError> {
        ensure_connected(&self.client)?;
        NatsHistory::open_existing(self.client.clone(), &self.js, name, self.timeout).await
    }
}

/// Counts slow-consumer drops and logs connection changes. Must stay quick: async-nats
/// runs these one at a time and drops events when they queue up.
fn on_event(stats: &BusStats, event: Event) {
    match event {
        Event::SlowConsumer(sid) => stats.record_slow_consumer(&format!("sid {sid}")),
        Event::Disconnected => {
            stats.record_disconnect();
            tracing::warn!("NATS connection lost; reconnecting in the background");
        }
        Event::Connected => tracing::info!("NATS connection (re)established"),
        Event::LameDuckMode => tracing::warn!("NATS server entered lame duck mode"),
        Event::Closed => tracing::info!("NATS connection closed"),
        Event::Draining => tracing::info!("NATS connection draining"),
        Event::ServerError(err) => tracing::warn!(error = %err, "NATS server error"),
        Event::ClientError(err) => tracing::warn!(error = %err, "NATS client error"),
    }
}

/// Messages held on the subjects of `stream` that match `filter`: the stream's
/// per-subject counts, summed (one request, no consumer). `what` names the call in errors.
pub(crate) async fn count_on_subjects<I>(
    stream: &jetstream::stream::Stream<I>,
    filter: &str,
    what: &str,
) -> Result<u64, BusError> {
    let subjects = subjects_on(stream, filter, what).await?;
    Ok(subjects
        .iter()
        .fold(0u64, |total, (_, count)| total.saturating_add(*count)))
}

/// The subjects of `stream` that match `filter`, each with the messages it holds (the
/// stream's per-subject counts, paged through). `what` names the call in errors.
pub(crate) async fn subjects_on<I>(
    stream: &jetstream::stream::Stream<I>,
    filter: &str,
    what: &str,
) -> Result<Vec<(String, u64)>, BusError> {
    let failed = |err: &dyn std::fmt::Display| BusError::Backend(format!("{what} failed: {err}"));
    let mut subjects = stream
        .info_with_subjects(filter)
        .await
        .map_err(|err| failed(&err))?;
    let mut found = Vec::new();
    while let Some(subject) = subjects.next().await {
        let (subject, count) = subject.map_err(|err| failed(&err))?;
        found.push((subject, count as u64));
    }
    Ok(found)
}

pub(crate) fn ensure_connected(client: &async_nats::Client) -> Result<(), BusError> {
    match client.connection_state() {
        State::Connected => Ok(()),
        State::Disconnected => Err(BusError::Unavailable(
            "not connected to NATS (reconnecting)".into(),
        )),
        State::Pending => Err(BusError::Unavailable("not connected to NATS yet".into())),
    }
}

/// Runs `operation`, failing with [`BusError::Timeout`] after `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    operation: impl Future<Output = Result<T, BusError>>,
) -> Result<T, BusError> {
    tokio::time::timeout(timeout, operation)
        .await
        .unwrap_or(Err(BusError::Timeout))
}

fn publish_error(err: &async_nats::PublishError) -> BusError {
    match err.kind() {
        async_nats::PublishErrorKind::InvalidSubject => BusError::InvalidSubject(err.to_string()),
        async_nats::PublishErrorKind::MaxPayloadExceeded => {
            BusError::Backend(format!("publish refused: {err}"))
        }
        _ => BusError::Unavailable(format!("publish failed: {err}")),
    }
}

/// Converts a received async-nats message (only at this boundary).
pub(crate) fn convert_message(message: async_nats::Message) -> Message {
    Message {
        subject: message.subject.to_string(),
        reply: message.reply.map(|reply| reply.to_string()),
        headers: message
            .headers
            .as_ref()
            .map(Headers::from_nats)
            .unwrap_or_default(),
        payload: message.payload,
    }
}

/// The servers of `url`: one URL, or a seed list separated by commas
/// (`nats://nats-1:4222,nats://nats-2:4222`). The client connects to one of them and, when
/// it is lost, to another (and to the servers the cluster announces).
fn server_addrs(url: &str) -> Result<Vec<ServerAddr>, BusError> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .map(|one| {
            one.parse::<ServerAddr>().map_err(|err| {
                BusError::InvalidConfig(format!("bad NATS URL {}: {err}", redact(one)))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(BusError::InvalidConfig("no NATS URL given".to_owned()));
    }
    Ok(servers)
}

/// The server address without credentials, for messages and logs.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://{}", &one[..scheme], &one[at + 1..])
            }
            (None, Some(at)) => one[at + 1..].to_owned(),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// async-nats datetimes (the `time` backend) to chrono.
pub(crate) fn to_chrono(time: async_nats::datetime::DateTime) -> chrono::DateTime<chrono::Utc> {
    let nanos = i64::try_from(time.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_are_split_on_commas() {
        let servers = server_addrs("nats://a:4222, nats://u:p@b:4223,").unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].host(), "b");
        assert_eq!(servers[1].port(), 4223);
        let err = server_addrs(" , ").unwrap_err().to_string();
        assert!(err.contains("no NATS URL"), "{err}");
        let err = server_addrs("nats://a:4222,nats://u:secret@b:notaport")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad NATS URL nats://b:notaport"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("nats://u:p@h:4222"), "nats://h:4222");
        assert_eq!(redact("nats://h:1,nats://t@k:2"), "nats://h:1,nats://k:2");
        assert_eq!(redact("h:4222"), "h:4222");
        assert_eq!(redact("tok@h:4222"), "h:4222");
    }
}
