//! A Rust client for ArqonBus.
//!
//! [`Client`] holds one WebSocket connection: it reads the welcome frame, then lets you
//! join channels, publish (confirmed by the bus), run commands (answers correlated by
//! `request_id`) and receive everything else in order with [`Client::recv`]. [`token`]
//! mints development tokens.
//!
//! ```no_run
//! # async fn demo() -> Result<(), arqon_sdk::SdkError> {
//! use arqon_sdk::{Client, ConnectOptions};
//! let client = Client::connect("ws://127.0.0.1:9100/ws", ConnectOptions::with_token("<jwt>")).await?;
//! client.join("science", "general").await?;
//! client.publish("science", "general", serde_json::json!({"content": "hello"})).await?;
//! let next = client.recv(std::time::Duration::from_secs(5)).await?;
//! println!("{}", next.to_json());
//! # Ok(()) }
//! ```
//!
//! It must not depend on any service crate: it speaks only the wire protocol.

mod client;
mod error;
pub mod token;

pub use client::{Client, ConnectOptions};
pub use error::SdkError;
