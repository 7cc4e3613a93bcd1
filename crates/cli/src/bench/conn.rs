//! Opening connections and joining rooms, the way any client does.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use arqon_protocol::MessageId;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bounds each step of setting a connection up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

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
