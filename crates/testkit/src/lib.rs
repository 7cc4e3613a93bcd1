//! Test support for ArqonBus: a real `nats-server` (with JetStream) per test, on a free
//! port of 127.0.0.1, in its own temporary directory, killed when dropped; a real OTLP
//! trace receiver ([`otlp`]); and ports where nothing listens ([`ClosedPort`]).
//!
//! This crate owns starting, stopping and restarting that process and finding its binary.
//! It must not be used by production code, must never assume a fixed port (other servers
//! listen on 4222), and must never skip a test: when the binary is missing or does not
//! start, it panics with a message that says how to install it.

mod binary;
pub mod http;
pub mod keys;
pub mod otlp;
mod port;
mod server;

pub use binary::{NATS_SERVER_ENV, nats_server_binary};
pub use port::ClosedPort;
pub use server::{NatsServer, ServerFile};
