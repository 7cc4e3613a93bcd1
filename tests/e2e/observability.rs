//! `/metrics` and `/status` tell an operator what the edge is doing.

use serde_json::{Value, json};

use arqon_e2e::{Cluster, WAIT, eventually, metric_value};

use crate::both_modes;

both_modes!(metrics_and_status_describe_the_edge);

async fn metrics_and_status_describe_the_edge(cluster: &Cluster) {
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-a").await;
    a.join("science", "general").await.unwrap();
    b.join("science", "general").await.unwrap();
    a.publish("science", "general", json!({"content": "HELLO"}))
        .await
        .unwrap();
    b.recv(WAIT).await.unwrap();
    // One refused upgrade.
    assert!(
        tokio_tungstenite::connect_async(cluster.ws_url.as_str())
            .await
            .is_err()
    );

    let (status, body) = cluster.http_get("/status").await;
    assert_eq!(status, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["component"], "edge");
    assert_eq!(status["status"], "healthy");
    assert_eq!(status["connections"]["open"], 2);
    assert_eq!(status["rooms"], 1);
    assert!(status["messages"]["frames_in"].as_u64() >= Some(3));
    assert!(status["uptime_seconds"].is_u64());

    eventually("the metrics show both connections", || async {
        metric_value(&cluster.metrics().await, "arqonbus_edge_connections") == Some(2.0)
    })
    .await;
    let text = cluster.metrics().await;
    for family in [
        "arqonbus_edge_connections gauge",
        "arqonbus_edge_upgrades counter",
        "arqonbus_edge_auth_failures counter",
        "arqonbus_edge_frames_in counter",
        "arqonbus_edge_frames_out counter",
        "arqonbus_edge_queue_drops counter",
        "arqonbus_edge_rate_limited counter",
        "arqonbus_edge_publish_errors counter",
        "arqonbus_edge_pipeline_latency_seconds histogram",
        "arqonbus_http_requests counter",
        "arqonbus_http_request_duration_seconds histogram",
        "arqonbus_bus_connected gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "missing {family}:\n{text}"
        );
    }
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(value("arqonbus_edge_rooms"), Some(1.0));
    assert_eq!(
        value(r#"arqonbus_edge_auth_failures_total{reason="missing"}"#),
        Some(1.0)
    );
    assert!(value(r#"arqonbus_edge_upgrades_total{outcome="accepted"}"#) >= Some(3.0));
    assert_eq!(
        value(r#"arqonbus_edge_upgrades_total{outcome="unauthorized"}"#),
        Some(1.0)
    );
    assert_eq!(value("arqonbus_edge_fanout_deliveries_total"), Some(1.0));
    assert!(value("arqonbus_edge_pipeline_latency_seconds_count") >= Some(3.0));
    assert_eq!(value("arqonbus_bus_connected"), Some(1.0));
    assert!(
        value(r#"arqonbus_http_requests_total{route="/ws",status="101"}"#) >= Some(3.0),
        "{text}"
    );
    assert!(value(r#"arqonbus_http_requests_total{route="/ws",status="401"}"#) == Some(1.0));
    // No client ids or room names become labels.
    assert!(!text.contains(a.client_id()) && !text.contains("science"));
}
