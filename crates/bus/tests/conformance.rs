//! The bus conformance suite: every test is one `async fn name(bus: Bus)` and runs
//! against both backends, the embedded bus and NATS (a fresh `nats-server` per test), so
//! services cannot tell them apart. Tests that only make sense on NATS (outages) live in
//! `nats_only`.

#![allow(clippy::unwrap_used)]

/// Instantiates each listed test for both backends:
/// `conformance!(name, other(capacity = 8))` makes `name::embedded`, `name::nats`, ...
/// `capacity` sets the per-subscription buffer of both buses.
macro_rules! conformance {
    ($($name:ident $(( capacity = $capacity:expr ))?),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn embedded() {
                    let bus = crate::support::embedded_bus(conformance!(@capacity $($capacity)?));
                    super::$name(bus).await;
                }

                #[tokio::test]
                async fn nats() {
                    let server = arqon_testkit::NatsServer::start();
                    let bus =
                        crate::support::nats_bus(&server, conformance!(@capacity $($capacity)?))
                            .await;
                    super::$name(bus).await;
                    drop(server);
                }
            }
        )*
    };
    (@capacity) => { arqon_bus::DEFAULT_SUBSCRIPTION_CAPACITY };
    (@capacity $capacity:expr) => { $capacity };
}

// The crate root of a test file looks for modules beside it; ours live in a folder.
#[path = "conformance/support.rs"]
mod support;

#[path = "conformance/history.rs"]
mod history;
#[path = "conformance/history_queries.rs"]
mod history_queries;
#[path = "conformance/kv.rs"]
mod kv;
#[path = "conformance/nats_only.rs"]
mod nats_only;
#[path = "conformance/pubsub.rs"]
mod pubsub;
#[path = "conformance/request.rs"]
mod request;
#[path = "conformance/workqueue.rs"]
mod workqueue;
