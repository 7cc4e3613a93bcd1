//! The results: a table for people, JSON for machines.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) target: String,
    pub(crate) pattern: super::plan::Pattern,
    pub(crate) connections: Phase,
    pub(crate) joins: Phase,
    pub(crate) memory: Option<Memory>,
    pub(crate) traffic: Option<Traffic>,
    pub(crate) client_cpu: Cpu,
}

#[derive(Debug, Serialize)]
pub(crate) struct Phase {
    pub(crate) done: u64,
    pub(crate) failed: u64,
    pub(crate) seconds: f64,
    pub(crate) per_second: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Memory {
    pub(crate) server_rss_before_kib: u64,
    pub(crate) server_rss_after_kib: u64,
    pub(crate) per_connection_kib: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Traffic {
    pub(crate) via: String,
    pub(crate) publishers: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) seconds: f64,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) errors: u64,
    pub(crate) expected_deliveries: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) messages_per_second: f64,
    pub(crate) deliveries_per_second: f64,
    pub(crate) latency_us: Latency,
}

#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Cpu {
    pub(crate) seconds: f64,
    /// CPU seconds per wall second over the whole run: near the number of cores means
    /// the client, not the server, was the limit.
    pub(crate) cores: f64,
}

impl Report {
    pub(crate) fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("target".into(), self.target.clone()),
            ("pattern".into(), format!("{:?}", self.pattern)),
            (
                "connections".into(),
                format!(
                    "{} established, {} failed, {:.0}/s ({:.2} s)",
                    self.connections.done,
                    self.connections.failed,
                    self.connections.per_second,
                    self.connections.seconds
                ),
            ),
            (
                "joins".into(),
                format!(
                    "{} in {:.2} s, {:.0}/s",
                    self.joins.done, self.joins.seconds, self.joins.per_second
                ),
            ),
        ];
        if let Some(m) = &self.memory {
            rows.push((
                "server memory".into(),
                format!(
                    "{} KiB -> {} KiB: {:.2} KiB per connection",
                    m.server_rss_before_kib, m.server_rss_after_kib, m.per_connection_kib
                ),
            ));
        }
        if let Some(t) = &self.traffic {
            rows.push((
                "published".into(),
                format!(
                    "{} sent, {} acknowledged, {} errors, via {}, {} publishers, {} B payloads",
                    t.sent, t.acked, t.errors, t.via, t.publishers, t.payload_bytes
                ),
            ));
            rows.push((
                "delivered".into(),
                format!(
                    "{} of {} expected ({} lost)",
                    t.delivered, t.expected_deliveries, t.lost
                ),
            ));
            rows.push((
                "throughput".into(),
                format!(
                    "{:.0} messages/s, {:.0} deliveries/s over {:.2} s",
                    t.messages_per_second, t.deliveries_per_second, t.seconds
                ),
            ));
            let l = &t.latency_us;
            rows.push((
                "latency".into(),
                format!(
                    "p50 {} µs, p90 {} µs, p99 {} µs, max {} µs, mean {:.0} µs",
                    l.p50, l.p90, l.p99, l.max, l.mean
                ),
            ));
        }
        rows.push((
            "client CPU".into(),
            format!(
                "{:.2} s, {:.2} cores on average",
                self.client_cpu.seconds, self.client_cpu.cores
            ),
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:width$}  {v}\n"))
            .collect()
    }
}
