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
        assert!(
            registered.contains(family(&name)),
            "the dashboard charts {name}, which no service registers"
        );
    }
}

/// Every metric the dashboard charts is in the metrics list of docs/operations.md, so an
/// operator reading a panel can look up what it counts.
#[test]
fn the_dashboard_charts_only_documented_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let documented = documented_metrics(&operations);
    let dashboard =
        std::fs::read_to_string(root.join("deploy/compose/grafana/dashboards/arqonbus.json"))
            .unwrap();
    let charted = metric_names(&dashboard);
    assert!(charted.len() > 10, "{charted:?}");
    let missing = undocumented(&charted, &documented);
    assert!(
        missing.is_empty(),
        "the dashboard charts {missing:?}, which docs/operations.md#metrics does not list"
    );
}

/// The check itself: a misspelt name is caught, and the list's `…_` shorthand (the
/// prefix of the row's last full name) and label sets are read.
#[test]
fn a_misspelt_dashboard_metric_is_caught() {
    let documented = documented_metrics(
        "## Metrics\n\n| metric | |\n|---|---|\n\
         | `arqonbus_cron_firings_total`, `…_blocked_firings_total` | cron |\n\
         | `arqonbus_webhook_dropped_total{reason}` | dropped |\n\
         | `arqonbus_edge_pipeline_latency_seconds` | histogram |\n\n## Traces\n\n\
         | `arqonbus_trace_spans_total` | not in the metrics list |\n",
    );
    let charted = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        undocumented(
            &charted(&[
                "arqonbus_cron_blocked_firings_total",
                "arqonbus_webhook_dropped_total",
                "arqonbus_edge_pipeline_latency_seconds_bucket",
            ]),
            &documented
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        undocumented(
            &charted(&[
                "arqonbus_cron_blocked_firing_total",
                "arqonbus_trace_spans_total"
            ]),
            &documented
        ),
        [
            "arqonbus_cron_blocked_firing_total",
            "arqonbus_trace_spans_total"
        ]
    );
}

/// Counters are exposed with `_total`, histograms as `_bucket`, `_sum`, `_count`: the
/// family's name without them.
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The charted names whose family the documented set lacks.
fn undocumented(
    charted: &std::collections::BTreeSet<String>,
    documented: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    charted
        .iter()
        .filter(|name| !documented.contains(family(name)))
        .cloned()
        .collect()
}

/// The metric families named in the `## Metrics` section of docs/operations.md: each
/// `arqonbus_…` in backquotes, without its labels, and each `…_x` shorthand as the
/// prefix (`arqonbus_<part>_`) of the last full name before it on the row.
fn documented_metrics(operations: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut in_section = false;
    for line in operations.lines() {
        if line.starts_with("## ") {
            in_section = line == "## Metrics";
        }
        if !in_section || !line.starts_with('|') {
            continue;
        }
        let mut prefix = None;
        for code in line.split('`').skip(1).step_by(2) {
            let name = code.split('{').next().unwrap_or(code);
            let full = if let Some(rest) = name.strip_prefix("…_") {
                // `…_MAX_…` shortens a setting's name, not a metric's.
                match &prefix {
                    Some(prefix) if !rest.bytes().any(|b| b.is_ascii_uppercase()) => {
                        format!("{prefix}{rest}")
                    }
                    _ => continue,
                }
            } else if name.starts_with("arqonbus_") {
                let mut parts = name.splitn(3, '_');
                if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
                    prefix = Some(format!("{a}_{b}_"));
                }
                name.to_owned()
            } else {
                continue;
            };
            names.insert(family(&full).to_owned());
        }
    }
    names
}
