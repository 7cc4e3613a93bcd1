//! A policy, dispatcher or operators replica's key in the bucket of live replicas
//! ([`layout::services`], key `<service>.<replica>`): renewed every
//! [`subject::EDGE_HEARTBEAT`] with its version and uptime, gone [`subject::EDGE_TTL`]
//! after a replica dies, and removed when one stops. The edges keep theirs in
//! `arqon_edges` ([`layout::EdgeLiveness`]), which presence and the operators' sweeps
//! read as well; the console's `overview` lists both.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use arqon_bus::{Bus, BusError, KvStore};
use arqon_protocol::subject;

use crate::layout;

/// The services that keep a key (the edges keep theirs elsewhere).
pub const SERVICES: [&str; 3] = ["policy", "dispatcher", "operators"];

/// The value of a replica's key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLiveness {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub replica: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub uptime_seconds: u64,
    /// Whether its bus connection is up.
    #[serde(default)]
    pub bus_connected: bool,
}

impl ServiceLiveness {
    pub fn encode(&self) -> bytes::Bytes {
        // Plain data: serializing it cannot fail.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a value; one that cannot be read counts as a replica that reports nothing.
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// A new replica id of `service`: `<service>_` and 16 hex digits.
pub fn replica_id(service: &str) -> String {
    format!("{service}_{:016x}", rand::random::<u64>())
}

/// The key of `replica` of `service`.
pub fn key(service: &str, replica: &str) -> String {
    format!("{service}.{replica}")
}

/// Renews this replica's key until `shutdown`, then removes it; a tracked task.
pub fn keep_alive(
    bus: Bus,
    service: &'static str,
    replica: String,
    version: &'static str,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    tasks.spawn(async move {
        let key = key(service, &replica);
        let mut bucket: Option<KvStore> = None;
        let mut failing = false;
        loop {
            let value = ServiceLiveness {
                service: service.to_owned(),
                replica: replica.clone(),
                version: version.to_owned(),
                uptime_seconds: started.elapsed().as_secs(),
                bus_connected: bus.is_connected(),
            };
            match renew(&bus, &mut bucket, &key, value).await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    warn!(%error, service, "cannot renew this replica's liveness key");
                    failing = true;
                }
                Err(error) => debug!(%error, service, "cannot renew this replica's liveness key"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(subject::EDGE_HEARTBEAT) => {}
            }
        }
        if let Some(bucket) = bucket
            && let Err(error) = bucket.delete(&key).await
        {
            debug!(%error, service, "cannot remove this replica's liveness key");
        }
    });
}

/// Writes the key; the bucket is opened again after a failure (a NATS server restarted
/// without its memory buckets has lost it).
async fn renew(
    bus: &Bus,
    bucket: &mut Option<KvStore>,
    key: &str,
    value: ServiceLiveness,
) -> Result<(), BusError> {
    if let Some(open) = bucket.as_ref()
        && open.put(key, value.encode()).await.is_ok()
    {
        return Ok(());
    }
    let open = bucket.insert(bus.key_value(layout::services()).await?);
    open.put(key, value.encode()).await.map(|_| ())
}

/// The live replicas in `bucket` (opened with [`layout::services`]), sorted by service
/// then replica; the key names each one, whatever its value says.
pub async fn live(bucket: &KvStore) -> Result<Vec<ServiceLiveness>, BusError> {
    Ok(bucket
        .entries_matching(">")
        .await?
        .into_iter()
        .map(|entry| {
            let mut report = ServiceLiveness::decode(&entry.value);
            if let Some((service, replica)) = entry.key.split_once('.') {
                service.clone_into(&mut report.service);
                replica.clone_into(&mut report.replica);
            }
            report
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_value_round_trips_and_garbage_reads_as_nothing() {
        let value = ServiceLiveness {
            service: "policy".into(),
            replica: replica_id("policy"),
            version: "0.1.0".into(),
            uptime_seconds: 3,
            bus_connected: true,
        };
        assert!(value.replica.starts_with("policy_"));
        assert_eq!(value.replica.len(), "policy_".len() + 16);
        assert_eq!(ServiceLiveness::decode(&value.encode()), value);
        assert_eq!(ServiceLiveness::decode(b"x"), ServiceLiveness::default());
    }

    #[tokio::test]
    async fn a_replica_is_listed_while_it_runs_and_not_after() {
        let bus = Bus::embedded(Default::default());
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        keep_alive(
            bus.clone(),
            "operators",
            "operators_1".into(),
            "9.9.9",
            &tasks,
            shutdown.clone(),
        );
        let bucket = bus.key_value(layout::services()).await.unwrap();
        let listed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let live = live(&bucket).await.unwrap();
                if !live.is_empty() {
                    return live;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the key is written at once");
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].service.as_str(), listed[0].replica.as_str()),
            ("operators", "operators_1")
        );
        assert_eq!(listed[0].version, "9.9.9");
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        assert!(live(&bucket).await.unwrap().is_empty());
    }
}
