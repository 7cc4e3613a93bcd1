//! Options of the two backends and configurations of KV buckets and history streams.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::BusError;
use crate::subject;

/// Default buffer of one subscription, in messages (async-nats's default).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 65_536;
/// Default maximum message size (headers + payload), the NATS server's default.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Most messages one [`crate::HistoryStore::read`] returns; page on with the sequence.
pub const MAX_READ_LIMIT: usize = 1000;
/// Room kept for the headers of a KV compare-and-set write
/// (`Nats-Expected-Last-Subject-Sequence`), which count against message size limits.
pub(crate) const KV_HEADER_ALLOWANCE: usize = 256;

/// How to connect to NATS.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Connection name shown by the server (`nats server report connections`).
    pub name: String,
    /// Bound on the first connection; [`crate::Bus::connect_nats`] fails after it.
    pub connect_timeout: Duration,
    /// Bound on every other operation that waits for the server (flush, JetStream
    /// requests and acknowledgements, KV and history calls).
    pub request_timeout: Duration,
    /// Bound on creating or updating a KV bucket, stream or work queue when a service
    /// opens it (at least `request_timeout`): a JetStream cluster that is still forming or
    /// electing leaders can take this long, and a service waits rather than failing.
    pub setup_timeout: Duration,
    /// Messages buffered per subscription before further ones are dropped (slow
    /// consumer).
    pub subscription_capacity: usize,
    /// Replicas of every KV bucket, history stream and work queue this bus creates or
    /// opens (1 to 5): 1 on a single server, 3 on a three-node JetStream cluster so that
    /// losing one node loses nothing. Opening updates an existing stream to this count.
    pub jetstream_replicas: usize,
    /// Who the services are to NATS, and how the connection is secured.
    pub auth: NatsAuth,
}

/// How a service proves itself to NATS: at most one of user and password, a token, an
/// NKey seed or a credentials file (JWT and seed); and TLS, with a CA of its own and a
/// client certificate when the server asks for one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An NKey user seed (`SU…`).
    pub nkey_seed: Option<String>,
    /// A `.creds` file (decentralized JWT auth).
    pub credentials_file: Option<PathBuf>,
    /// PEM CA certificates the server's certificate must chain to.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub tls_required: bool,
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed, only whether they are set.
        f.debug_struct("NatsAuth")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| "***"))
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_required", &self.tls_required)
            .finish()
    }
}

impl NatsAuth {
    /// Refuses contradictory settings, naming them.
    pub fn validate(&self) -> Result<(), BusError> {
        let methods = [
            ("ARQONBUS_NATS_USER", self.user.is_some()),
            ("ARQONBUS_NATS_TOKEN", self.token.is_some()),
            ("ARQONBUS_NATS_NKEY_SEED", self.nkey_seed.is_some()),
            ("ARQONBUS_NATS_CREDS_FILE", self.credentials_file.is_some()),
        ];
        let chosen: Vec<&str> = methods
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| *name)
            .collect();
        let invalid = |message: String| Err(BusError::InvalidConfig(message));
        if chosen.len() > 1 {
            return invalid(format!(
                "NATS authentication: set one of {}, not several",
                chosen.join(", ")
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return invalid(
                "NATS authentication: ARQONBUS_NATS_USER and ARQONBUS_NATS_PASSWORD go together"
                    .to_owned(),
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return invalid(
                "NATS TLS: ARQONBUS_NATS_TLS_CERT_FILE and ARQONBUS_NATS_TLS_KEY_FILE go together"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            name: "arqonbus".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            setup_timeout: Duration::from_secs(30),
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            jetstream_replicas: 1,
            auth: NatsAuth::default(),
        }
    }
}

impl NatsOptions {
    /// The defaults, with the connection name `name`.
    pub fn named(name: impl Into<String>) -> NatsOptions {
        NatsOptions {
            name: name.into(),
            ..NatsOptions::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), BusError> {
        self.auth.validate()?;
        if (1..=MAX_REPLICAS).contains(&self.jetstream_replicas) {
            Ok(())
        } else {
            Err(BusError::InvalidConfig(format!(
                "JetStream replicas must be 1 to {MAX_REPLICAS}, not {}",
                self.jetstream_replicas
            )))
        }
    }
}

/// The most replicas JetStream allows a stream.
const MAX_REPLICAS: usize = 5;

/// Options of the embedded in-process bus.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Messages buffered per subscription before further ones are dropped (slow
    /// consumer), as on NATS.
    pub subscription_capacity: usize,
    /// Largest message (headers + payload) accepted, like the server's `max_payload`.
    pub max_payload: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// Where a bucket or stream keeps its data. The embedded bus keeps everything in memory
/// either way (it lives and dies with the process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Storage {
    /// On disk (JetStream file storage): survives a server restart.
    #[default]
    File,
    /// In the server's memory.
    Memory,
}

/// A KV bucket (a JetStream stream `KV_<bucket>` on NATS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvConfig {
    /// Bucket name, `[a-zA-Z0-9_-]+`.
    pub bucket: String,
    /// Values kept per key, 1 to 64 (older ones are discarded).
    pub history: u8,
    /// Values older than this disappear (`None`: kept forever).
    pub max_age: Option<Duration>,
    /// Largest value in bytes (`None`: only the bus's max payload applies).
    pub max_value_size: Option<i32>,
    /// Where the bucket lives.
    pub storage: Storage,
}

impl KvConfig {
    /// A bucket with one value per key, no expiry, file storage.
    pub fn new(bucket: impl Into<String>) -> KvConfig {
        KvConfig {
            bucket: bucket.into(),
            history: 1,
            max_age: None,
            max_value_size: None,
            storage: Storage::File,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), BusError> {
        subject::validate_name("bucket", &self.bucket)?;
        if !(1..=64).contains(&self.history) {
            return Err(BusError::InvalidConfig(format!(
                "bucket {}: history must be 1 to 64",
                self.bucket
            )));
        }
        if self.max_value_size.is_some_and(|size| size < 1) {
            return Err(BusError::InvalidConfig(format!(
                "bucket {}: max_value_size must be positive",
                self.bucket
            )));
        }
        if self
            .max_age
            .is_some_and(|age| age < Duration::from_millis(100))
        {
            return Err(BusError::InvalidConfig(format!(
                "bucket {}: max_age must be at least 100ms",
                self.bucket
            )));
        }
        Ok(())
    }
}

/// A history stream (a JetStream stream on NATS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Stream name, `[a-zA-Z0-9_-]+`.
    pub stream: String,
    /// Subjects it stores, wildcards allowed (e.g. `hist.>`). They must not overlap
    /// another stream's, and core publishes on them are stored too (as in JetStream).
    pub subjects: Vec<String>,
    /// Messages kept per subject, the oldest discarded first (`<= 0`: unlimited).
    pub max_msgs_per_subject: i64,
    /// Messages older than this are discarded (`Duration::ZERO`: kept forever).
    pub max_age: Duration,
    /// Bytes the stream keeps in all (subjects, headers and payloads), the oldest
    /// messages discarded first (`<= 0`: unlimited).
    pub max_bytes: i64,
    /// Where the stream lives.
    pub storage: Storage,
    /// Other streams whose messages (those matching each filter) the stream copies in,
    /// keeping their subjects, without publishing them again (JetStream sources: the
    /// server copies in the background, and the copies are stored at the time they are
    /// copied). NATS only: the embedded bus refuses a stream with sources.
    pub sources: Vec<HistorySource>,
}

/// A stream that a history stream copies messages from (see [`HistoryConfig::sources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySource {
    /// The stream copied from.
    pub stream: String,
    /// Only the messages on subjects matching this (wildcards allowed) are copied.
    pub filter: String,
}

impl HistoryConfig {
    /// A stream with no limits, file storage and no sources.
    pub fn new(stream: impl Into<String>, subjects: Vec<String>) -> HistoryConfig {
        HistoryConfig {
            stream: stream.into(),
            subjects,
            max_msgs_per_subject: -1,
            max_age: Duration::ZERO,
            max_bytes: -1,
            storage: Storage::File,
            sources: Vec::new(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), BusError> {
        subject::validate_name("stream", &self.stream)?;
        if self.subjects.is_empty() {
            return Err(BusError::InvalidConfig(format!(
                "stream {}: at least one subject is needed",
                self.stream
            )));
        }
        for (i, s) in self.subjects.iter().enumerate() {
            subject::validate_subscribe(s)?;
            // A leading wildcard would also cover the server's `$JS.`/`$KV.` subjects.
            if matches!(s.split('.').next(), Some("*" | ">")) {
                return Err(BusError::InvalidConfig(format!(
                    "stream {}: subject {s} must start with a literal token",
                    self.stream
                )));
            }
            if self.subjects[..i].iter().any(|t| subject::overlaps(s, t)) {
                return Err(BusError::InvalidConfig(format!(
                    "stream {}: subjects overlap ({s})",
                    self.stream
                )));
            }
        }
        if !self.max_age.is_zero() && self.max_age < Duration::from_millis(100) {
            return Err(BusError::InvalidConfig(format!(
                "stream {}: max_age must be zero or at least 100ms",
                self.stream
            )));
        }
        for source in &self.sources {
            subject::validate_name("stream", &source.stream)?;
            subject::validate_subscribe(&source.filter)?;
            if source.stream == self.stream {
                return Err(BusError::InvalidConfig(format!(
                    "stream {}: cannot copy from itself",
                    self.stream
                )));
            }
        }
        Ok(())
    }

    /// Whether `subject` (literal) belongs to this stream.
    pub(crate) fn covers(&self, subject: &str) -> bool {
        self.subjects.iter().any(|p| subject::matches(p, subject))
    }
}

/// A durable work queue (a JetStream stream with work-queue retention and one durable
/// pull consumer on NATS): each job is handed to one [`crate::WorkQueue`] handle at a time
/// and stays queued until a handle acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueueConfig {
    /// Stream name, `[a-zA-Z0-9_-]+`.
    pub stream: String,
    /// Subjects it captures, wildcards allowed (e.g. `jobs.>`). They must not overlap
    /// another stream's; core publishes on them are queued too (as in JetStream).
    pub subjects: Vec<String>,
    /// The consumer every handle of this queue shares, `[a-zA-Z0-9_-]+`: handles with the
    /// same consumer split the jobs between them.
    pub consumer: String,
    /// Jobs older than this are dropped, handled or not (at least 100 ms).
    pub max_age: Duration,
    /// Jobs queued at most; beyond it new jobs are refused (`<= 0`: unlimited).
    pub max_jobs: i64,
    /// Bytes queued at most (subjects and payloads); beyond it new jobs are refused
    /// (`<= 0`: unlimited).
    pub max_bytes: i64,
    /// A job pushed with the id of one pushed less than this long ago is dropped as a
    /// duplicate (JetStream's duplicate window).
    pub duplicate_window: Duration,
    /// A job handed out and neither acknowledged nor refused within this long is handed
    /// out again (at least 100 ms).
    pub ack_wait: Duration,
    /// Times a job is handed out at most; after that it is no longer handed out and stays
    /// until `max_age` (`<= 0`: unlimited).
    pub max_deliver: i64,
    /// How long [`crate::WorkQueue::next`] waits for a job before returning `None`
    /// (10 ms to 5 minutes).
    pub poll_wait: Duration,
    /// Where the queue lives.
    pub storage: Storage,
}

impl WorkQueueConfig {
    /// A queue of `stream` over `subjects`, consumed as `consumer`: a day of retention, no
    /// size limits, a 2-minute duplicate window, 30 s to acknowledge, unlimited
    /// deliveries, file storage.
    pub fn new(
        stream: impl Into<String>,
        subjects: Vec<String>,
        consumer: impl Into<String>,
    ) -> WorkQueueConfig {
        WorkQueueConfig {
            stream: stream.into(),
            subjects,
            consumer: consumer.into(),
            max_age: Duration::from_secs(24 * 3600),
            max_jobs: -1,
            max_bytes: -1,
            duplicate_window: Duration::from_secs(120),
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            poll_wait: Duration::from_secs(5),
            storage: Storage::File,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), BusError> {
        let as_stream = HistoryConfig {
            max_age: self.max_age,
            storage: self.storage,
            ..HistoryConfig::new(self.stream.clone(), self.subjects.clone())
        };
        as_stream.validate()?;
        subject::validate_name("consumer", &self.consumer)?;
        let invalid = |why: &str| {
            Err(BusError::InvalidConfig(format!(
                "work queue {}: {why}",
                self.stream
            )))
        };
        if self.max_age < Duration::from_millis(100) {
            return invalid("max_age must be at least 100ms");
        }
        if self.ack_wait < Duration::from_millis(100) {
            return invalid("ack_wait must be at least 100ms");
        }
        if self.duplicate_window > self.max_age {
            return invalid("duplicate_window must not exceed max_age");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(300)).contains(&self.poll_wait) {
            return invalid("poll_wait must be 10ms to 5 minutes");
        }
        Ok(())
    }

    /// Whether `subject` (literal) belongs to this queue.
    pub(crate) fn covers(&self, subject: &str) -> bool {
        self.subjects.iter().any(|p| subject::matches(p, subject))
    }
}

/// Where a [`crate::HistoryStore::read`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// At this stream sequence, inclusive (0 and 1 both mean the beginning).
    Sequence(u64),
    /// At the first message stored at or after this time.
    Time(DateTime<Utc>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_one_to_five() {
        for replicas in [1, 3, 5] {
            let options = NatsOptions {
                jetstream_replicas: replicas,
                ..NatsOptions::default()
            };
            assert!(options.validate().is_ok(), "{replicas}");
        }
        for replicas in [0, 6] {
            let options = NatsOptions {
                jetstream_replicas: replicas,
                ..NatsOptions::default()
            };
            let err = options.validate().unwrap_err().to_string();
            assert!(err.contains("replicas must be 1 to 5"), "{err}");
        }
    }

    #[test]
    fn validates_configs() {
        assert!(KvConfig::new("policy").validate().is_ok());
        assert!(KvConfig::new("bad.name").validate().is_err());
        let mut kv = KvConfig::new("b");
        kv.history = 0;
        assert!(kv.validate().is_err());
        kv.history = 65;
        assert!(kv.validate().is_err());

        let hist = HistoryConfig::new("HIST", vec!["hist.>".into()]);
        assert!(hist.validate().is_ok());
        assert!(hist.covers("hist.a.b"));
        assert!(!hist.covers("live.a"));
        let overlapping = HistoryConfig::new("H", vec!["a.>".into(), "a.b".into()]);
        assert!(matches!(
            overlapping.validate(),
            Err(BusError::InvalidConfig(_))
        ));
        assert!(HistoryConfig::new("H", vec![]).validate().is_err());
        assert!(
            HistoryConfig::new("H", vec!["a..b".into()])
                .validate()
                .is_err()
        );
        assert!(
            HistoryConfig::new("H", vec!["*.b".into()])
                .validate()
                .is_err()
        );
        assert!(
            HistoryConfig::new("H", vec![">".into()])
                .validate()
                .is_err()
        );
    }
}
