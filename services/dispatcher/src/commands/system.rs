//! `ping`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, json};

use arqon_proto::model::Inbound;
use arqon_protocol::{CommandReply, Timestamp};

use crate::Context;

/// Answers with the time the envelope spent between the edge and here.
pub(crate) fn ping(context: &Context, inbound: &Inbound) -> CommandReply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as f64)
        .unwrap_or_default();
    let latency_ms = ((now - inbound.received_at_unix_micros as f64) / 1000.0).max(0.0);
    let latency_ms = (latency_ms * 100.0).round() / 100.0;
    let mut data = Map::new();
    data.insert("latency_ms".into(), json!(latency_ms));
    data.insert(
        "client_id".into(),
        json!(inbound.identity.client_id.as_str()),
    );
    data.insert("timestamp".into(), json!(Timestamp::now().to_rfc3339()));
    data.insert(
        "uptime_seconds".into(),
        json!(context.started.elapsed().as_secs()),
    );
    CommandReply::success(format!("Pong! Latency: {latency_ms}ms"), data)
}
