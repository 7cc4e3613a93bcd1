//! A webhook delivery in progress when its operators replica is killed: the queue hands
//! the job to the other replica once its ack wait has run out, so the delivery happens
//! (at least once; a duplicate is allowed and counted, a loss is not).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Rig;
use crate::support::WAIT;
use crate::{command, joined_client, send_message};

/// `ARQONBUS_WEBHOOK_MAX_TIMEOUT_SECONDS` here, and the rule's timeout.
const TIMEOUT_SECONDS: u64 = 2;
/// The queue's ack wait: the longest timeout plus a fixed 30 s
/// (`services/operators/src/webhook/mod.rs`, `ACK_MARGIN`). A job taken by a replica
/// that died is handed out again after it.
const ACK_WAIT: Duration = Duration::from_secs(TIMEOUT_SECONDS + 30);
const MESSAGES: i64 = 4;

/// Two operators processes share the webhook queue. The receiver holds the first POST
/// open; the process making it is found by the connection it came on and killed with
/// SIGKILL before the POST's timeout. The other process delivers it (the same delivery,
/// attempt 1 again: the queue handed the job out again, nobody counted a failure), and
/// every message published meanwhile is delivered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_survives_kill_9_of_the_replica_posting_it() {
    let mut hooks = HoldingReceiver::start().await;
    let timeout = TIMEOUT_SECONDS.to_string();
    let mut rig = Rig::start(
        2,
        1,
        &[
            ("ARQONBUS_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
            ("ARQONBUS_WEBHOOK_MAX_TIMEOUT_SECONDS", timeout.as_str()),
        ],
    );
    let mut client = joined_client(rig.url(0, "user"), 0).await;
    command(
        &mut client,
        "op.webhook.register",
        json!({"url": hooks.url, "room": "r0", "channel": "c",
               "timeout_seconds": TIMEOUT_SECONDS, "persistent": true}),
    )
    .await;
    for n in 0..MESSAGES {
        assert!(
            send_message(&mut client, n).await,
            "message {n} acknowledged"
        );
    }

    let held = hooks.next(WAIT).await;
    assert!(held.held, "the first POST is held");
    let pids: Vec<u32> = rig.operators.iter().map(|p| p.pid()).collect();
    let poster = owner_of_connection(&pids, held.peer, hooks.addr)
        .expect("the held POST comes from an operators process");
    let killed = pids.iter().position(|&p| p == poster).expect("a rig pid");
    let survivor = pids[1 - killed];
    drop(rig.operators.remove(killed)); // SIGKILL the process making the POST, then reap it

    // Every message is answered 200 once at least; the held one only after the ack wait.
    let mut answered: BTreeMap<i64, Vec<Post>> = BTreeMap::new();
    while answered.len() < MESSAGES as usize {
        let post = hooks.next(ACK_WAIT + WAIT).await;
        assert!(!post.held);
        answered.entry(post.n).or_default().push(post);
    }
    let redelivered = answered[&held.n]
        .iter()
        .find(|p| p.delivery_id == held.delivery_id)
        .expect("the held delivery, delivered again");
    assert_eq!(redelivered.attempt, "1", "handed out again, not retried");
    let from = owner_of_connection(&[survivor], redelivered.peer, hooks.addr);
    assert_eq!(from, Some(survivor), "delivered by the surviving process");
    // At least once: duplicates (of POSTs the killed process made and never settled) are
    // allowed; each is a POST of the same delivery.
    while let Some(post) = hooks.try_next(Duration::from_secs(1)).await {
        answered.entry(post.n).or_default().push(post);
    }
    let duplicates: usize = answered.values().map(|posts| posts.len() - 1).sum();
    for (n, posts) in &answered {
        let ids: Vec<&str> = posts.iter().map(|p| p.delivery_id.as_str()).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "message {n}: {ids:?}");
    }
    println!("{MESSAGES} messages delivered; {duplicates} duplicate POST(s) after the kill");
}

/// One POST as the receiver got it.
#[derive(Debug)]
struct Post {
    /// The connection it came on (its client side).
    peer: SocketAddr,
    delivery_id: String,
    attempt: String,
    /// The message's `n`.
    n: i64,
    /// Whether it was the one held open.
    held: bool,
}

/// An HTTP receiver on 127.0.0.1 that leaves the first POST unanswered for good and
/// answers every other one 200.
struct HoldingReceiver {
    url: String,
    addr: SocketAddr,
    posts: mpsc::Receiver<Post>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Hook {
    posts: mpsc::Sender<Post>,
    holding: Arc<AtomicBool>,
}

impl HoldingReceiver {
    async fn start() -> Self {
        async fn hook(
            State(hook): State<Hook>,
            ConnectInfo(peer): ConnectInfo<SocketAddr>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let body: Value = serde_json::from_slice(&body).expect("a JSON body");
            let held = !hook.holding.swap(true, Ordering::SeqCst);
            let post = Post {
                peer,
                delivery_id: header("x-arqon-delivery-id"),
                attempt: header("x-arqon-attempt"),
                n: body["envelope"]["payload"]["n"].as_i64().expect("n"),
                held,
            };
            hook.posts.try_send(post).expect("room for the POST");
            if held {
                std::future::pending::<()>().await;
            }
            StatusCode::OK
        }
        let (sender, posts) = mpsc::channel(1024);
        let state = Hook {
            posts: sender,
            holding: Arc::new(AtomicBool::new(false)),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.expect("the receiver runs");
        });
        HoldingReceiver {
            url: format!("http://{addr}/hook"),
            addr,
            posts,
            server,
        }
    }

    /// The next POST, within `bound`.
    async fn next(&mut self, bound: Duration) -> Post {
        self.try_next(bound)
            .await
            .unwrap_or_else(|| panic!("no POST within {bound:?}"))
    }

    async fn try_next(&mut self, bound: Duration) -> Option<Post> {
        tokio::time::timeout(bound, self.posts.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for HoldingReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Which of `pids` holds the client side of the TCP connection from `peer` to `server`
/// (both on 127.0.0.1), from `/proc/net/tcp` and each process's open files.
fn owner_of_connection(pids: &[u32], peer: SocketAddr, server: SocketAddr) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{:04X}", peer.port());
    let remote = format!("0100007F:{:04X}", server.port());
    let inode = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| fields.get(9).map(|inode| (*inode).to_owned()))
            .flatten()
    })?;
    let socket = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == socket.as_str())
            })
    })
}
