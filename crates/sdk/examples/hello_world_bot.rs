//! The hello-world bot: connects, prints the welcome, says hello in `science:general`,
//! and prints what comes back (normally the bus's acknowledgement).
//!
//! ```sh
//! ARQONBUS_AUTH_JWT=$(arqon token --secret "$ARQONBUS_AUTH_JWT_SECRET") \
//!   cargo run -p arqon-sdk --example hello_world_bot
//! ```
//!
//! Settings: `ARQONBUS_WS_URL` (`ws://127.0.0.1:9100`), `ARQONBUS_AUTH_JWT`,
//! `ARQONBUS_HELLO_ROOM` (`science`), `ARQONBUS_HELLO_CHANNEL` (`general`).

// An example prints what it does.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use serde_json::json;

use arqon_protocol::{Envelope, JsonObject, MessageType};
use arqon_sdk::{Client, ConnectOptions, SdkError};

/// What the bot says.
pub const HELLO: &str = "Hello World from ArqonBus SDK bot";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), SdkError> {
    let token = std::env::var("ARQONBUS_AUTH_JWT").ok();
    run(
        &setting("ARQONBUS_WS_URL", "ws://127.0.0.1:9100"),
        token,
        &setting("ARQONBUS_HELLO_ROOM", "science"),
        &setting("ARQONBUS_HELLO_CHANNEL", "general"),
    )
    .await
}

/// Connects, says hello once in `room:channel`, and returns after printing the answer
/// (or after a second without one).
pub async fn run(
    url: &str,
    token: Option<String>,
    room: &str,
    channel: &str,
) -> Result<(), SdkError> {
    let options = ConnectOptions {
        token,
        connect_timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    };
    let client = Client::connect(url, options).await?;
    println!("connected: {}", client.welcome().payload.as_str());

    let mut hello = Envelope::new(MessageType::Message);
    hello.room = Some(room.to_owned());
    hello.channel = Some(channel.to_owned());
    hello.payload = JsonObject::from_value(&json!({ "content": HELLO }))
        .map_err(|_| SdkError::Invalid("the payload is not an object".to_owned()))?;
    client.send(&hello).await?;
    println!("sent: {}", hello.payload.as_str());

    match client.recv(Duration::from_secs(1)).await {
        Ok(frame) => println!("recv: {}", frame.to_json()),
        Err(SdkError::Timeout) => {}
        Err(e) => return Err(e),
    }
    client.close().await
}
