//! End-to-end tests: every scenario runs against the standalone bus (embedded) and against
//! the four services on a real nats-server, driven by real WebSocket clients.

// Scenario helpers are plain async functions; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod handshake;
mod routing;
mod validation;

/// Defines `<name>::standalone` and `<name>::distributed` for a scenario written once as
/// `async fn <name>(cluster: &Cluster)`.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use arqon_e2e::Cluster;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let cluster = Cluster::standalone().await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                let cluster = Cluster::distributed().await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }
        }
    )*};
}
pub(crate) use both_modes;
