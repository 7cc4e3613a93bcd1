//! The bus's buckets as the services open them, and the keys that more than one module
//! reads or writes: the one definition, beside the subjects and names of
//! `arqon_protocol::subject`. A bucket opened by two services gets the same settings
//! from both, so neither changes it under the other.

use std::time::Duration;

use arqon_bus::{Bus, KvConfig, Storage};
use arqon_protocol::{TenantId, subject};
use serde::{Deserialize, Serialize};

/// Versions of the CASIL policy the bucket keeps, for operators to look back at.
const CASIL_HISTORY: u8 = 16;

/// `arqon_edges`: one key per live edge, gone [`subject::EDGE_TTL`] after its last
/// renewal (the edges write it; the dispatchers and operators read it).
pub fn edges() -> KvConfig {
    KvConfig {
        max_age: Some(subject::EDGE_TTL),
        storage: Storage::Memory,
        ..KvConfig::new(subject::EDGES_BUCKET)
    }
}

/// The value of a live edge's key in [`edges`] (the key is its edge id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeLiveness {
    /// Its open connections.
    #[serde(default)]
    pub connections: u64,
    /// Frames its clients sent, and frames it wrote to them, since it started (the
    /// console's `overview` turns them into rates).
    #[serde(default)]
    pub frames_in: u64,
    #[serde(default)]
    pub frames_out: u64,
    /// Whether its bus connection is up.
    #[serde(default)]
    pub bus_connected: bool,
    #[serde(default)]
    pub uptime_seconds: u64,
    /// The CASIL policy version by which the edge lets envelopes skip the policy stage;
    /// absent while it sends every envelope through the stage. A reload is answered once
    /// no edge reports an older version (or after a bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub casil_version: Option<u64>,
}

impl EdgeLiveness {
    pub fn encode(&self) -> bytes::Bytes {
        // Plain data: serializing it cannot fail.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a value; one that cannot be read counts as an edge that reports nothing.
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// `arqon_services`: one key per live policy, dispatcher and operators replica
/// (`<service>.<replica>`), gone [`subject::EDGE_TTL`] after its last renewal, like an
/// edge's in [`edges`] (`crate::liveness` writes them; the dispatchers read them).
pub fn services() -> KvConfig {
    KvConfig {
        max_age: Some(subject::EDGE_TTL),
        storage: Storage::Memory,
        ..KvConfig::new(subject::SERVICES_BUCKET)
    }
}

/// `arqon_fleet_connections`: each edge's open connections per tenant.
pub fn fleet_connections() -> KvConfig {
    KvConfig {
        max_age: Some(subject::FLEET_CONNECTIONS_TTL),
        storage: Storage::Memory,
        ..KvConfig::new(subject::FLEET_CONNECTIONS_BUCKET)
    }
}

/// `arqon_channels`: the channel registry.
pub fn channels(bus: &Bus) -> KvConfig {
    durable(bus, subject::CHANNELS_BUCKET)
}

/// `arqon_casil`: the live CASIL policy, with its last versions.
pub fn casil(bus: &Bus) -> KvConfig {
    KvConfig {
        history: CASIL_HISTORY,
        ..durable(bus, subject::CASIL_BUCKET)
    }
}

/// `arqon_webhooks`: the webhook rules, keyed with [`tenant_key`] (the operators write
/// them; the dispatchers follow which tenants have any).
pub fn webhooks(bus: &Bus) -> KvConfig {
    durable(bus, subject::WEBHOOKS_BUCKET)
}

/// `arqon_webhook_outcomes`: what each rule's deliveries came to, keyed with
/// [`tenant_key`] (the operators add to them and read them).
pub fn webhook_outcomes(bus: &Bus) -> KvConfig {
    durable(bus, subject::WEBHOOK_OUTCOMES_BUCKET)
}

/// `arqon_cron`: the cron jobs, keyed with [`tenant_key`].
pub fn cron(bus: &Bus) -> KvConfig {
    durable(bus, subject::CRON_BUCKET)
}

/// `arqon_store`: the store operator's values, markers and counters.
pub fn store(bus: &Bus) -> KvConfig {
    durable(bus, subject::STORE_BUCKET)
}

/// A lease bucket: the holder's key lasts `ttl` unless renewed.
pub fn lease(bucket: &str, ttl: Duration) -> KvConfig {
    KvConfig {
        max_age: Some(ttl),
        storage: Storage::Memory,
        ..KvConfig::new(bucket)
    }
}

/// A bucket kept on the bus's durable storage.
fn durable(bus: &Bus, bucket: &str) -> KvConfig {
    KvConfig {
        storage: bus.durable_storage(),
        ..KvConfig::new(bucket)
    }
}

/// The key of `id` of `tenant` in a bucket keyed per tenant (webhook rules, cron jobs):
/// `<tenant>.<id>`.
pub fn tenant_key(tenant: impl AsRef<str>, id: impl AsRef<str>) -> String {
    format!("{}.{}", tenant.as_ref(), id.as_ref())
}

/// Every key of `tenant` in a bucket keyed per tenant.
pub fn tenant_keys(tenant: &TenantId) -> String {
    format!("{tenant}.*")
}

/// The tenant and id of a key made by [`tenant_key`].
pub fn split_tenant_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_keys_round_trip() {
        let tenant = TenantId::parse("t-a").unwrap();
        let key = tenant_key(&tenant, "wh_000000000001");
        assert_eq!(tenant_key("t-a", "wh_000000000001"), key);
        assert_eq!(key, "t-a.wh_000000000001");
        assert_eq!(split_tenant_key(&key), Some(("t-a", "wh_000000000001")));
        assert_eq!(tenant_keys(&tenant), "t-a.*");
        assert_eq!(split_tenant_key("no-dot"), None);
    }

    #[test]
    fn an_edge_liveness_value_round_trips_and_older_values_read() {
        let value = EdgeLiveness {
            connections: 3,
            frames_in: 10,
            frames_out: 12,
            bus_connected: true,
            uptime_seconds: 60,
            casil_version: Some(7),
        };
        assert_eq!(EdgeLiveness::decode(&value.encode()), value);
        let older = EdgeLiveness::decode(br#"{"connections": 2}"#);
        assert_eq!((older.connections, older.casil_version), (2, None));
        assert_eq!(EdgeLiveness::decode(b"garbage"), EdgeLiveness::default());
        let none = EdgeLiveness::default().encode();
        assert!(!String::from_utf8_lossy(&none).contains("casil_version"));
    }

    #[test]
    fn readers_and_writers_open_a_bucket_alike() {
        let bus = Bus::embedded(Default::default());
        assert_eq!(edges().max_age, Some(subject::EDGE_TTL));
        assert_eq!(casil(&bus).history, CASIL_HISTORY);
        assert_eq!(webhooks(&bus).storage, bus.durable_storage());
        assert_eq!(
            lease("l", Duration::from_secs(3)).max_age,
            Some(Duration::from_secs(3))
        );
    }
}
