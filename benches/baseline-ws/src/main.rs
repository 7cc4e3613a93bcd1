//! The baseline ArqonBus's WebSocket figures are compared with: a bare tokio-tungstenite
//! server that broadcasts every message to every other connection. No authentication,
//! no validation, no rooms, no bus: the cost of WebSockets alone on this machine.
//!
//! It answers just enough of the ArqonBus protocol for `arqon bench` to drive it: a
//! welcome frame, a success `response` and `command_response` to every command (joins
//! included; rooms are ignored, everyone is in one room), and a `message_response` to the
//! sender of every message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9200")]
    listen: String,
    /// Read buffer per connection (ArqonBus's edge uses the same); 0 keeps
    /// tungstenite's default (128 KiB).
    #[arg(long, default_value_t = 2048)]
    read_buffer: usize,
    /// Bytes gathered before a write (as ArqonBus's edge); 0 keeps tungstenite's default.
    #[arg(long, default_value_t = 4096)]
    write_buffer: usize,
    /// Frames queued per connection before a frame is dropped for it.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
}

type Peers = Arc<RwLock<HashMap<u64, mpsc::Sender<Utf8Bytes>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The same accept backlog as arqonbus, so bursts of connections compare fairly.
    let address: std::net::SocketAddr = args.listen.parse()?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    let listener = socket.listen(4096)?;
    eprintln!("baseline-ws listening on ws://{}", listener.local_addr()?);
    let peers: Peers = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    let mut config = WebSocketConfig::default();
    if args.read_buffer > 0 {
        config = config.read_buffer_size(args.read_buffer);
    }
    if args.write_buffer > 0 {
        config = config.write_buffer_size(args.write_buffer);
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, id, config, args.queue, Arc::clone(&peers)));
    }
}

async fn serve(stream: TcpStream, id: u64, config: WebSocketConfig, queue: usize, peers: Peers) {
    let Ok(mut socket) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
    else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(queue);
    peers
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, tx);
    let welcome = json!({"type": "message", "payload": {"welcome": "baseline", "client_id": format!("c{id}")}});
    if socket
        .send(Message::text(welcome.to_string()))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                Some(frame) = rx.recv() => {
                    if socket.feed(Message::Text(frame)).await.is_err() {
                        break;
                    }
                    while let Ok(frame) = rx.try_recv() {
                        if socket.feed(Message::Text(frame)).await.is_err() {
                            break;
                        }
                    }
                    if socket.flush().await.is_err() {
                        break;
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        for reply in handle(id, text, &peers) {
                            if socket.feed(Message::text(reply)).await.is_err() {
                                break;
                            }
                        }
                        if socket.flush().await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
    }
    peers
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
}

/// Broadcasts a message to every other connection, or answers a command; returns the
/// frames for the sender.
fn handle(id: u64, text: Utf8Bytes, peers: &Peers) -> Vec<String> {
    if text.as_str().contains(r#""type":"command""#) {
        let command: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let request = command["id"].as_str().unwrap_or_default();
        return vec![
            json!({"type": "response", "request_id": request, "status": "success", "payload": {}})
                .to_string(),
            json!({"type": "command_response", "id": request, "payload": {"result": "ok"}})
                .to_string(),
        ];
    }
    for (peer, queue) in peers.read().unwrap_or_else(PoisonError::into_inner).iter() {
        if *peer != id {
            // A full queue drops the frame, as a bare broadcast server does.
            let _ = queue.try_send(text.clone());
        }
    }
    vec![r#"{"type":"message_response"}"#.to_owned()]
}
