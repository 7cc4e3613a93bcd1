//! End-to-end tests against the standalone bus (embedded) and against the four services
//! on a real nats-server, driven by real WebSocket clients. 130 scenarios run in both
//! modes (`both_modes!`, `each_mode!`, a module's own macro, or a loop over the two; two
//! on several replicas when distributed:
//! `recovery_live::a_rejoin_while_publishing_gets_every_message_once_in_order` on two
//! edges and two dispatchers, `window::a_full_window_keeps_one_senders_order` on two
//! edges, two policy replicas and two dispatchers); 26 run in one, for what they need:
//!
//! - several replicas of a service, so nats-server:
//!   `casil::a_reload_to_enforce_reaches_every_policy_replica` (two policy replicas),
//!   `ops_cron::two_replicas_fire_each_iteration_exactly_once`,
//!   `ops_omega::two_replicas_emitting_at_once_keep_exactly_the_newest`,
//!   `ops_webhook::two_operators_replicas_post_each_message_once`,
//!   `ops_webhook::a_delivery_outlives_the_replica_that_started_it` (two operators
//!   replicas, one stopped), `replicas::history_survives_the_loss_of_a_dispatcher_replica`
//!   and `replicas::clients_on_two_edges_share_a_channel_and_every_replica_agrees` (two
//!   edges and two dispatchers).
//! - two edges: `fleet_quota::a_tenant_is_capped_across_edges`,
//!   `sdk::a_session_survives_the_loss_of_its_edge_and_recovers_what_it_missed`.
//! - stops nats-server:
//!   `fleet_quota::without_the_bus_upgrades_are_admitted_on_the_edge_cap_and_counted`,
//!   `lifecycle::a_nats_outage_keeps_sockets_tells_senders_and_recovers`,
//!   `bypass::an_edge_that_cannot_follow_the_policy_sends_through_the_stage` (and removes
//!   the policy's stream from the stopped server's store).
//! - JetStream reached from outside the bus:
//!   `replicas::a_message_the_history_did_not_store_is_not_acknowledged` (deletes the
//!   history stream), `replicas::the_history_of_every_tenant_moves_to_a_stream_per_tenant`
//!   (a stream copied by a JetStream source, which the embedded bus refuses).
//! - stops a service, starts one later, or runs the dispatcher without the URL of one,
//!   which standalone cannot (its services are one process):
//!   `bypass::an_edge_started_before_the_policy_sends_through_the_stage_until_it_reads_it`,
//!   `ops_store::without_the_operators_service_commands_are_answered_unavailable`,
//!   `lifecycle::an_envelope_nobody_answers_times_out_and_the_connection_goes_on` (stops
//!   the dispatcher), `disabled::without_the_operators_url_operators_commands_are_disabled`,
//!   `disabled::without_the_policy_url_casil_control_and_grpc_publish_are_disabled`.
//! - checks that do not depend on the bus, standalone only:
//!   `ops_webhook::a_loopback_url_is_refused_by_default`,
//!   `ops_webhook::the_grpc_api_checks_its_callers`; without a cluster:
//!   `ops_omega::bad_settings_stop_the_operators_service` (the service alone on an
//!   embedded bus) and the three `observability::*` checks of the dashboards against the
//!   docs and the metrics registry.
//! - nats-server only for no reason found: `ops_webhook::a_blocked_message_is_never_posted`
//!   (CASIL blocking and webhook posting are each tested in both modes elsewhere).

// Scenario helpers are plain async functions; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod auth;
mod authority;
mod bypass;
mod casil;
mod channel_limits;
mod channels;
mod closes;
mod console;
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
mod window;

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
