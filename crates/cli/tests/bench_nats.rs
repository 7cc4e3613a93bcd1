//! `arqon bench --transport nats` (NATS alone, the baseline) against a real nats-server:
//! every message published reaches every other member of its room, none is lost, and
//! the JSON report has the shape of the WebSocket one.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

use arqon_testkit::NatsServer;

/// Runs `arqon bench --transport nats --json` with `args` and parses its report.
fn bench(nats: &NatsServer, args: &[&str]) -> Value {
    let url = nats.url();
    let mut command = Command::new(env!("CARGO_BIN_EXE_arqon"));
    command
        .args(["bench", "--transport", "nats", "--nats-url", &url, "--json"])
        .args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("ARQONBUS_") {
            command.env_remove(key);
        }
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "arqon bench failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}); stderr: {stderr}"))
}

/// What every run must show: all connections and memberships, messages sent, every
/// expected delivery made, no error.
fn assert_complete(report: &Value, connections: u64, memberships: u64) {
    assert_eq!(report["connections"]["done"], connections, "{report:#}");
    assert_eq!(report["connections"]["failed"], 0, "{report:#}");
    assert_eq!(report["joins"]["done"], memberships, "{report:#}");
    assert!(
        report["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("nats://") && t.ends_with("(NATS alone)")),
        "{report:#}"
    );
    let traffic = &report["traffic"];
    assert_eq!(traffic["via"], "nats", "{report:#}");
    let sent = traffic["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report:#}");
    // Nothing acknowledges a core publish: each counts once sent.
    assert_eq!(traffic["acked"], sent, "{report:#}");
    assert_eq!(traffic["errors"], 0, "{report:#}");
    let expected = traffic["expected_deliveries"].as_u64().unwrap();
    assert!(expected > 0, "{report:#}");
    // Exactly: a member receiving its own messages (no `no_echo`) would exceed it.
    assert_eq!(traffic["delivered"], expected, "{report:#}");
    assert_eq!(traffic["lost"], 0, "{report:#}");
    assert!(traffic["messages_per_second"].as_f64().unwrap() > 0.0);
    assert!(traffic["latency_us"]["p50"].as_u64().unwrap() > 0);
    assert!(report["client_cpu"]["seconds"].as_f64().is_some());
}

#[test]
fn pairs_deliver_every_message_to_the_other_member() {
    let nats = NatsServer::start();
    let report = bench(
        &nats,
        &["--pattern", "pairs", "-n", "10", "--duration", "1"],
    );
    assert_complete(&report, 10, 10);
    assert_eq!(report["pattern"], "pairs");
    let traffic = &report["traffic"];
    assert_eq!(traffic["publishers"], 10);
    // One recipient per message: the other member of the pair.
    assert_eq!(
        traffic["expected_deliveries"], traffic["sent"],
        "{report:#}"
    );
}

#[test]
fn one_room_fans_out_to_everyone_but_the_sender() {
    let nats = NatsServer::start();
    // Two channels: the traffic one and an idle one, one subscription each.
    let report = bench(
        &nats,
        &[
            "--pattern",
            "one-room",
            "-n",
            "20",
            "--publishers",
            "2",
            "--channels",
            "2",
            "--duration",
            "1",
        ],
    );
    assert_complete(&report, 20, 40);
    let traffic = &report["traffic"];
    assert_eq!(traffic["publishers"], 2);
    let sent = traffic["sent"].as_u64().unwrap();
    assert_eq!(traffic["expected_deliveries"], sent * 19, "{report:#}");
}

#[test]
fn a_fixed_rate_is_paced_and_delivered() {
    let nats = NatsServer::start();
    let report = bench(
        &nats,
        &[
            "--pattern",
            "rooms",
            "-n",
            "12",
            "--room-size",
            "4",
            "--rate",
            "300",
            "--duration",
            "1",
        ],
    );
    assert_complete(&report, 12, 12);
    let traffic = &report["traffic"];
    assert_eq!(traffic["publishers"], 3);
    let sent = traffic["sent"].as_u64().unwrap();
    assert_eq!(traffic["expected_deliveries"], sent * 3, "{report:#}");
}

#[test]
fn without_a_nats_url_it_says_so() {
    let output = Command::new(env!("CARGO_BIN_EXE_arqon"))
        .args(["bench", "--transport", "nats", "--duration", "0"])
        .env_remove("ARQONBUS_NATS_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--nats-url"), "{stderr}");
}
