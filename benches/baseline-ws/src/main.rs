//! The baseline ArqonBus's WebSocket figures are compared with: a bare tokio-tungstenite
//! server that broadcasts every message to every other connection. No authentication,
//! no validation, no bus: the cost of WebSockets alone on this machine.
//!
//! It answers just enough of the ArqonBus protocol for `arqon bench` to drive it: a
//! welcome frame, a success `response` and `command_response` to every command, and a
//! `message_response` to the sender of every message. Rooms are ignored (everyone is in
//! one room) unless `--rooms`: then a message goes to the other connections that joined
//! its `room` and `channel`, as a minimal in-process room relay would.

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
    /// Route messages to the members of their room and channel instead of to everyone.
    #[arg(long)]
    rooms: bool,
    /// Set `TCP_NODELAY` on every connection, as the edge does: small frames leave at
    /// once instead of waiting up to 40 ms (Nagle's algorithm with delayed ACKs).
    #[arg(long)]
    nodelay: bool,
}

type Peers = Arc<RwLock<HashMap<u64, mpsc::Sender<Utf8Bytes>>>>;

/// With `--rooms`: the members of each `room:channel`.
type Rooms = Arc<RwLock<HashMap<String, Vec<u64>>>>;

#[derive(Clone)]
struct Shared {
    peers: Peers,
    rooms: Option<Rooms>,
}

/// The global allocator: the one `arqonbus` uses, so a comparison is of the servers, not
/// of their allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let shared = Shared {
        peers: Arc::default(),
        rooms: args.rooms.then(Rooms::default),
    };
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
        if args.nodelay {
            stream.set_nodelay(true)?;
        }
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, id, config, args.queue, shared.clone()));
    }
}

async fn serve(stream: TcpStream, id: u64, config: WebSocketConfig, queue: usize, shared: Shared) {
    let Ok(mut socket) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
    else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(queue);
    let mut joined = Vec::new();
    shared
        .peers
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
                        for reply in handle(id, text, &shared, &mut joined) {
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
    shared
        .peers
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    if let Some(rooms) = &shared.rooms {
        let mut rooms = rooms.write().unwrap_or_else(PoisonError::into_inner);
        for key in joined {
            if let Some(members) = rooms.get_mut(&key) {
                members.retain(|m| *m != id);
            }
        }
    }
}

/// `room:channel` of a frame, when it names both.
fn room_key(frame: &Value) -> Option<String> {
    let (room, channel) = (frame["room"].as_str()?, frame["channel"].as_str()?);
    Some(format!("{room}:{channel}"))
}

/// Sends a message to the other connections (of its room with `--rooms`), or answers a
/// command; returns the frames for the sender.
fn handle(id: u64, text: Utf8Bytes, shared: &Shared, joined: &mut Vec<String>) -> Vec<String> {
    if text.as_str().contains(r#""type":"command""#) {
        let command: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let request = command["id"].as_str().unwrap_or_default();
        if let (Some(rooms), Some("join_channel"), Some(key)) = (
            &shared.rooms,
            command["command"].as_str(),
            room_key(&command["args"]),
        ) {
            let mut rooms = rooms.write().unwrap_or_else(PoisonError::into_inner);
            rooms.entry(key.clone()).or_default().push(id);
            joined.push(key);
        }
        return vec![
            json!({"type": "response", "request_id": request, "status": "success", "payload": {}})
                .to_string(),
            json!({"type": "command_response", "id": request, "payload": {"result": "ok"}})
                .to_string(),
        ];
    }
    let peers = shared.peers.read().unwrap_or_else(PoisonError::into_inner);
    // A full queue drops the frame, as a bare broadcast server does.
    match &shared.rooms {
        Some(rooms) => {
            let message: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            let rooms = rooms.read().unwrap_or_else(PoisonError::into_inner);
            let members = room_key(&message).and_then(|key| rooms.get(&key));
            for peer in members.into_iter().flatten().filter(|p| **p != id) {
                if let Some(queue) = peers.get(peer) {
                    let _ = queue.try_send(text.clone());
                }
            }
        }
        None => {
            for (peer, queue) in peers.iter() {
                if *peer != id {
                    let _ = queue.try_send(text.clone());
                }
            }
        }
    }
    vec![r#"{"type":"message_response"}"#.to_owned()]
}
