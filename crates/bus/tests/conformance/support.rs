//! Helpers shared by the conformance tests. Every wait is bounded; bounds only limit
//! waiting and never assert speed.

use std::future::Future;
use std::time::Duration;

use arqon_bus::{Bus, EmbeddedOptions, Message, NatsOptions, Subscription};
use arqon_testkit::NatsServer;

/// Bound on waiting for something that must happen.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// Bound on retention/expiry, which NATS applies on a timer.
pub(crate) const EXPIRY_WAIT: Duration = Duration::from_secs(20);
/// How long a check that nothing (more) arrives listens.
pub(crate) const QUIET: Duration = Duration::from_millis(200);
const POLL: Duration = Duration::from_millis(20);

pub(crate) fn embedded_bus(capacity: usize) -> Bus {
    Bus::embedded(EmbeddedOptions {
        subscription_capacity: capacity,
        ..EmbeddedOptions::default()
    })
}

pub(crate) async fn nats_bus(server: &NatsServer, capacity: usize) -> Bus {
    Bus::connect_nats(&server.url(), nats_options(capacity))
        .await
        .expect("connect to the test nats-server")
}

pub(crate) fn nats_options(capacity: usize) -> NatsOptions {
    NatsOptions {
        name: "arqon-bus-conformance".into(),
        subscription_capacity: capacity,
        ..NatsOptions::default()
    }
}

/// The next message, or a panic naming the subscription after [`WAIT`].
pub(crate) async fn recv(sub: &mut Subscription) -> Message {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("subscription {} ended", sub.subject()),
        Err(_) => panic!("no message on {} within {WAIT:?}", sub.subject()),
    }
}

/// Payloads of the next `n` messages.
pub(crate) async fn recv_payloads(sub: &mut Subscription, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(text(&recv(sub).await.payload));
    }
    out
}

/// Asserts that nothing arrives for [`QUIET`].
pub(crate) async fn assert_quiet(sub: &mut Subscription) {
    if let Ok(message) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("unexpected message on {}: {message:?}", sub.subject());
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `bound`.
pub(crate) async fn eventually<T, F, Fut>(bound: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {bound:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}
