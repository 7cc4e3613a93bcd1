//! End-to-end tests: every scenario runs against the standalone bus (embedded) and against
//! the four services on a real nats-server, driven by real WebSocket clients.

// Scenario helpers are plain async functions; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod auth;
mod authority;
mod casil;
mod channel_limits;
mod channels;
mod closes;
mod disabled;
mod fairness;
mod fleet_quota;
mod grpc;
mod handshake;
mod history_load;
mod lifecycle;
mod limits;
mod observability;
mod ops_cron;
mod ops_omega;
mod ops_store;
mod ops_webhook;
mod presence_limits;
mod recovery_live;
mod replicas;
mod routing;
mod sdk;
mod validation;

/// Defines `<name>::standalone` and `<name>::distributed` for a scenario written once as
/// `async fn <name>(cluster: &Cluster)`.
/// `$name: $config` starts the clusters with the edge settings `$config()`.
macro_rules! both_modes {
    ($($name:ident $(: $config:expr)?),* $(,)?) => {$(
        mod $name {
            use arqon_e2e::{Cluster, Mode};
            #[allow(unused_imports)]
            use arqon_edge::EdgeConfig;

            #[allow(unused_variables)]
            fn config() -> arqon_edge::EdgeConfig {
                let config = arqon_e2e::edge_config();
                $(let config = $config(config);)?
                config
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let cluster = Cluster::start(Mode::Standalone, config()).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                let cluster = Cluster::start(Mode::Distributed, config()).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }
        }
    )*};
}
pub(crate) use both_modes;

/// Defines `<name>::standalone` and `<name>::distributed` for a scenario that starts its
/// own cluster: `async fn <name>(mode: Mode)`.
macro_rules! each_mode {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                super::$name(arqon_e2e::Mode::Standalone).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                super::$name(arqon_e2e::Mode::Distributed).await;
            }
        }
    )*};
}
pub(crate) use each_mode;
