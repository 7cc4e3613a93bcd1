//! The message bus every ArqonBus service talks through: publish/subscribe with queue
//! groups, request/reply, KV buckets, history streams and work queues, on one interface ([`Bus`]) with
//! two backends: NATS (core + JetStream, via async-nats) and an embedded in-process bus
//! for `arqonbus standalone` without a NATS server.
//!
//! This crate owns the semantics services may rely on (those of NATS, see
//! `docs/adr/003-bus-interface.md`), subject/key validation at the boundary, and the
//! conversion of async-nats types into its own. It must not know about envelopes,
//! tenants, rooms or any service: subjects and payloads are opaque to it. It must not
//! leak async-nats types through its API, and it must not let the two backends drift
//! apart: every behaviour is pinned by the conformance suite in `tests/conformance`,
//! which runs against both.

// Unit tests may unwrap; the library may not (workspace lint `unwrap_used`).

mod bus;
mod config;
mod embedded;
mod error;
mod headers;
mod history;
mod kv;
pub mod lease;
mod message;
mod nats;
mod stats;
mod subject;
mod workers;
mod workqueue;

pub use bus::{Bus, Subscription};
pub use config::{
    DEFAULT_MAX_PAYLOAD, DEFAULT_SUBSCRIPTION_CAPACITY, EmbeddedOptions, HistoryConfig,
    HistorySource, KvConfig, MAX_READ_LIMIT, NatsAuth, NatsOptions, ReadFrom, Storage,
    WorkQueueConfig,
};
pub use error::BusError;
pub use headers::{Headers, Iter as HeaderIter};
pub use history::{HistoryStore, StoreConfirmation, StoredMessage, Usage};
pub use kv::{KvEntry, KvEvent, KvStore, KvWatch};
pub use message::Message;
pub use stats::BusStats;
pub use workqueue::{Depth, Job, WorkQueue};

/// Bytes, re-exported so services need not depend on the `bytes` crate to build payloads.
pub use bytes::Bytes;
