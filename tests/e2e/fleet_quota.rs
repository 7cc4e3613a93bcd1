//! `ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT`: a tenant's connections are capped across
//! every edge (429 beyond), other tenants still get in, and a closed connection frees a
//! place.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use arqon_bus::{KvConfig, Storage};
use arqon_e2e::{Cluster, Mode, RawSocket, Topology, WAIT, edge_config, eventually, metric_value};
use arqon_edge::EdgeConfig;
use arqon_protocol::subject;

use crate::both_modes;

const FLEET_SERIES: &str =
    r#"arqonbus_edge_quota_refusals_total{quota="fleet_connections_per_tenant"}"#;

both_modes!(
    one_edge_holds_a_tenant_to_the_fleet_cap: |c| EdgeConfig {
        max_fleet_connections_per_tenant: 2,
        ..c
    },
);

/// Upgrades on `ws_url` as `tenant`: the socket, or the refusal's status and body.
async fn upgrade_at(
    cluster: &Cluster,
    ws_url: &str,
    tenant: &str,
) -> Result<RawSocket, (u16, String)> {
    let url = format!("{ws_url}?token={}", cluster.token(tenant, "user"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

fn refused_by_the_fleet_cap(refusal: Option<(u16, String)>) {
    let (status, body) = refusal.expect("a refusal");
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT"),
        "{body}"
    );
}

async fn metrics_of(addr: SocketAddr) -> String {
    let (status, body) =
        tokio::task::spawn_blocking(move || arqon_testkit::http::get(addr, "/metrics", WAIT))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 200);
    body
}

/// Upgrades `tenant` on `ws_url` until one is admitted (bounded); returns how many were
/// refused by the fleet cap meanwhile.
async fn until_admitted(cluster: &Cluster, ws_url: &str, tenant: &str) -> usize {
    let refused = AtomicUsize::new(0);
    eventually("a closed connection frees a place in the fleet", || async {
        match upgrade_at(cluster, ws_url, tenant).await {
            Ok(_) => true,
            Err(refusal) => {
                refused_by_the_fleet_cap(Some(refusal));
                refused.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    })
    .await;
    refused.into_inner()
}

/// With one edge the fleet cap is the tighter of the two per-tenant caps.
async fn one_edge_holds_a_tenant_to_the_fleet_cap(cluster: &Cluster) {
    let url = cluster.ws_url.clone();
    let mut first = upgrade_at(cluster, &url, "t-a").await.expect("first");
    let _second = upgrade_at(cluster, &url, "t-a").await.expect("second");
    refused_by_the_fleet_cap(upgrade_at(cluster, &url, "t-a").await.err());
    let _other = upgrade_at(cluster, &url, "t-b")
        .await
        .expect("another tenant gets in");
    first.close(None).await.unwrap();
    let refused = 1 + until_admitted(cluster, &url, "t-a").await;
    assert_eq!(
        metric_value(&cluster.metrics().await, FLEET_SERIES),
        Some(refused as f64)
    );
}

/// Two edges: the second admits what the tenant has left of the cap once it sees the
/// first's count, then refuses; another tenant still gets in; a close on the first edge
/// frees a place on the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_capped_across_edges() {
    let cluster = Cluster::launch(Topology {
        edges: 2,
        edge: EdgeConfig {
            max_fleet_connections_per_tenant: 3,
            ..edge_config()
        },
        ..Topology::new(Mode::Distributed)
    })
    .await;
    let [first, second] = [0, 1].map(|i| cluster.edges()[i].clone());
    let mut on_first = upgrade_at(&cluster, &first.ws_url, "t-a")
        .await
        .expect("first");
    let _also_on_first = upgrade_at(&cluster, &first.ws_url, "t-a")
        .await
        .expect("second");

    // The second edge learns the first's count from the bucket: wait until it is there.
    let bus = cluster.bus().await;
    let bucket = bus
        .key_value(KvConfig {
            max_age: Some(subject::FLEET_CONNECTIONS_TTL),
            storage: Storage::Memory,
            ..KvConfig::new(subject::FLEET_CONNECTIONS_BUCKET)
        })
        .await
        .unwrap();
    let published = |expected: u64| {
        let bucket = &bucket;
        async move {
            let entries = bucket.entries_matching("t-a.*").await.unwrap();
            let total: u64 = entries
                .iter()
                .map(|e| {
                    std::str::from_utf8(&e.value)
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
                .sum();
            total == expected
        }
    };
    eventually("the first edge publishes its two connections", || {
        published(2)
    })
    .await;

    let _on_second = upgrade_at(&cluster, &second.ws_url, "t-a")
        .await
        .expect("the third, on the second edge");
    refused_by_the_fleet_cap(upgrade_at(&cluster, &second.ws_url, "t-a").await.err());
    let _other = upgrade_at(&cluster, &second.ws_url, "t-b")
        .await
        .expect("another tenant gets in");

    on_first.close(None).await.unwrap();
    let refused = 1 + until_admitted(&cluster, &second.ws_url, "t-a").await;
    let metrics = metrics_of(second.http_addr).await;
    assert_eq!(
        metric_value(&metrics, FLEET_SERIES),
        Some(refused as f64),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "arqonbus_edge_fleet_quota_unchecked_total"),
        Some(0.0),
        "{metrics}"
    );
    cluster.stop().await;
}

/// While NATS is away the other edges' counts cannot be read: upgrades are admitted on
/// the per-edge cap alone, and counted, rather than refused for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bus_upgrades_are_admitted_on_the_edge_cap_and_counted() {
    let mut cluster = Cluster::launch(Topology {
        edge: EdgeConfig {
            max_fleet_connections_per_tenant: 3,
            max_connections_per_tenant: 2,
            ..edge_config()
        },
        ..Topology::new(Mode::Distributed)
    })
    .await;
    cluster.nats().stop();
    eventually("the edge sees the bus gone", || async {
        cluster.http_get("/ready").await.0 == 503
    })
    .await;
    let url = cluster.ws_url.clone();
    let _first = upgrade_at(&cluster, &url, "t-a").await.expect("first");
    let _second = upgrade_at(&cluster, &url, "t-a").await.expect("second");
    let Err((status, body)) = upgrade_at(&cluster, &url, "t-a").await else {
        panic!("a third connection of t-a is admitted");
    };
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("ARQONBUS_MAX_CONNECTIONS_PER_TENANT"),
        "{body}"
    );
    let metrics = cluster.metrics().await;
    assert_eq!(
        metric_value(&metrics, "arqonbus_edge_fleet_quota_unchecked_total"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(metric_value(&metrics, FLEET_SERIES), None, "{metrics}");
    cluster.nats().restart();
    cluster.stop().await;
}
