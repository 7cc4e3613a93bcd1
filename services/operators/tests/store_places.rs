//! The store's key limit with two operators replicas writing at once, on a real
//! nats-server and on the embedded bus: new keys never pass the limit, a delete frees
//! exactly one place (even two deletes of one key at once), and so does an expiry.

// Scenario helpers are plain async functions; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use arqon_bus::{Bus, EmbeddedOptions, KvConfig, KvStore, NatsOptions};
use arqon_operators::{OperatorsConfig, OperatorsMetrics, StoreApi, StoreSettings};
use arqon_proto::operators::v1::{self as pb, store_server::Store};
use arqon_protocol::{ClientId, EdgeId, subject};
use arqon_testkit::NatsServer;
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use tonic::Request;

const LIMIT: usize = 5;
const FULL: &str = "Store key limit reached: tenant 't-a' has 5 keys, the limit is 5";

/// One operators replica on `bus`, its store's API.
async fn replica(bus: Bus, shutdown: &CancellationToken) -> StoreApi {
    // The webhooks' HTTP client needs one, as the binary installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = OperatorsConfig {
        store: StoreSettings {
            max_keys_per_tenant: LIMIT,
            sweep_interval_ms: 50,
            ..StoreSettings::default()
        },
        policy_control: Some(arqon_proto::policy_control::allow_all()),
        ..OperatorsConfig::default()
    };
    let started = Box::pin(arqon_operators::start(
        config,
        bus,
        OperatorsMetrics::default(),
        shutdown.clone(),
    ));
    started.await.unwrap().apis().store
}

fn caller() -> Option<pb::Caller> {
    Some(pb::Caller {
        tenant: "t-a".to_owned(),
        client_id: ClientId::generate_on(&EdgeId::generate()).to_string(),
        ..pb::Caller::default()
    })
}

async fn set(api: &StoreApi, key: &str, ttl_seconds: Option<f64>) -> Result<(), tonic::Status> {
    let request = pb::SetRequest {
        caller: caller(),
        key: key.to_owned(),
        value_json: "1".to_owned(),
        ttl_seconds,
        ..pb::SetRequest::default()
    };
    api.set(Request::new(request)).await.map(drop)
}

async fn delete(api: &StoreApi, key: &str) -> bool {
    let request = pb::DeleteRequest {
        caller: caller(),
        key: key.to_owned(),
        ..pb::DeleteRequest::default()
    };
    api.delete(Request::new(request))
        .await
        .unwrap()
        .into_inner()
        .deleted
}

/// Writes the new keys `<prefix><n>` for n in 0..count at once, alternating the
/// replicas; the keys written. Every refusal is the limit's.
async fn write_at_once(replicas: &[StoreApi; 2], prefix: &str, count: usize) -> Vec<String> {
    let writes = (0..count).map(|n| async move {
        let key = format!("{prefix}{n}");
        match set(&replicas[n % 2], &key, None).await {
            Ok(()) => Some(key),
            Err(refused) => {
                assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
                assert_eq!(refused.message(), FULL);
                None
            }
        }
    });
    join_all(writes).await.into_iter().flatten().collect()
}

/// The tenant's values in the bucket, and what its counter says.
async fn in_the_bucket(bucket: &KvStore) -> (usize, String) {
    let values = bucket.keys_matching("d.t-a.>").await.unwrap().len();
    let counter = bucket.get("c.t-a").await.unwrap().unwrap();
    (values, String::from_utf8(counter.value.to_vec()).unwrap())
}

async fn the_limit_holds_across_replicas(replicas: [StoreApi; 2], bucket: KvStore) {
    let written = write_at_once(&replicas, "k", 40).await;
    assert_eq!(written.len(), LIMIT, "{written:?}");
    assert_eq!(in_the_bucket(&bucket).await, (LIMIT, LIMIT.to_string()));
    // Rewriting a key at the limit is no new key.
    set(&replicas[1], &written[0], None).await.unwrap();

    // Two deletes of one key at once free one place.
    let (first, second) = tokio::join!(
        delete(&replicas[0], &written[0]),
        delete(&replicas[1], &written[0])
    );
    assert!(first ^ second, "one of them deleted it: {first} {second}");
    assert_eq!(write_at_once(&replicas, "after-delete-", 20).await.len(), 1);

    // An expired key frees its place (swept by a replica, or by the refused writes).
    set(&replicas[0], &written[1], Some(0.2)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bucket
        .get(&format!("d.t-a.=.{}", written[1]))
        .await
        .unwrap()
        .is_some()
    {
        assert!(tokio::time::Instant::now() < deadline, "not swept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(write_at_once(&replicas, "after-expiry-", 20).await.len(), 1);
    assert_eq!(in_the_bucket(&bucket).await, (LIMIT, LIMIT.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_server() {
    let server = NatsServer::start();
    let shutdown = CancellationToken::new();
    let connect = || async {
        Bus::connect_nats(&server.url(), NatsOptions::named("store-places"))
            .await
            .unwrap()
    };
    let replicas = [
        replica(connect().await, &shutdown).await,
        replica(connect().await, &shutdown).await,
    ];
    let observer = connect().await;
    let bucket = observer
        .key_value(KvConfig {
            storage: observer.durable_storage(),
            ..KvConfig::new(subject::STORE_BUCKET)
        })
        .await
        .unwrap();
    the_limit_holds_across_replicas(replicas, bucket).await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_bus() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let shutdown = CancellationToken::new();
    let replicas = [
        replica(bus.clone(), &shutdown).await,
        replica(bus.clone(), &shutdown).await,
    ];
    let bucket = bus
        .key_value(KvConfig {
            storage: bus.durable_storage(),
            ..KvConfig::new(subject::STORE_BUCKET)
        })
        .await
        .unwrap();
    the_limit_holds_across_replicas(replicas, bucket).await;
    shutdown.cancel();
}
