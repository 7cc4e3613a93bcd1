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

/// `arqonbus_…` names in a text.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("arqonbus_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric names registered in the sources of `dir` (string literals passed to
/// `register`), recursively.
fn registered_in(dir: &std::path::Path, names: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            registered_in(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for literal in text.split("\"arqonbus_").skip(1) {
                if let Some(name) = literal.split('"').next() {
                    names.insert(format!("arqonbus_{name}"));
                }
            }
        }
    }
}

/// The Grafana dashboard of the compose setup charts only metrics that a service
/// registers (a renamed metric must not leave an empty panel behind).
#[test]
fn the_dashboard_charts_only_registered_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut registered = std::collections::BTreeSet::new();
    for dir in ["services", "crates"] {
        registered_in(&root.join(dir), &mut registered);
    }
    assert!(
        registered.contains("arqonbus_edge_connections"),
        "{registered:?}"
    );
    let dashboard =
        std::fs::read_to_string(root.join("deploy/compose/grafana/dashboards/arqonbus.json"))
            .unwrap();
    serde_json::from_str::<Value>(&dashboard).expect("the dashboard is JSON");
    let charted = metric_names(&dashboard);
    assert!(charted.len() > 10, "{charted:?}");
    for name in charted {
        // Counters are exposed with `_total`, histograms as `_bucket`, `_sum`, `_count`.
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        assert!(
            registered.contains(family),
            "the dashboard charts {name}, which no service registers"
        );
    }
}
