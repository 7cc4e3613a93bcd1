//! The lane's state, shared by every replica: substrates in
//! [`subject::OMEGA_SUBSTRATES_BUCKET`] (one key per substrate id), events in
//! [`subject::OMEGA_EVENTS_BUCKET`].
//!
//! Events are ordered by a ticket: before writing an event, an emitter writes the
//! bucket's `clock` key, and the revision that write gets (the bucket's sequence, unique
//! and increasing across every replica) names the event, `e.<ticket, 20 digits>`, so the
//! keys sort chronologically without trusting any clock. After each write the emitter
//! deletes all but the newest `max_events` keys it sees. Every event is written once
//! under its own key and only ever deleted as one of the oldest, so none is lost to a
//! concurrent emit; while emits are in flight the bucket may hold up to one more event
//! per concurrent emit, readers only ever look at the newest `max_events`, and once the
//! emits have returned exactly the newest `max_events` remain.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use arqon_bus::{Bus, BusError, KvConfig, KvStore};
use arqon_protocol::subject;

/// The key whose writes hand out tickets.
const CLOCK: &str = "clock";
/// Every event key.
const EVENTS: &str = "e.*";
/// Reads in flight at once when listing.
const READS: usize = 16;

fn event_key(ticket: u64) -> String {
    format!("e.{ticket:020}")
}

/// A registered substrate, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Substrate {
    pub(crate) substrate_id: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) owner_client_id: String,
    pub(crate) metadata: Box<RawValue>,
    pub(crate) created_at: String,
}

/// An emitted event, as stored and as broadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Event {
    pub(crate) event_id: String,
    pub(crate) substrate_id: String,
    pub(crate) signal: String,
    pub(crate) payload: Box<RawValue>,
    pub(crate) emitted_by: String,
    pub(crate) timestamp: String,
}

/// Exact-match filters on events; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) substrate_id: Option<String>,
    pub(crate) signal: Option<String>,
}

impl Filter {
    fn matches(&self, event: &Event) -> bool {
        self.substrate_id
            .as_ref()
            .is_none_or(|id| *id == event.substrate_id)
            && self.signal.as_ref().is_none_or(|s| *s == event.signal)
    }
}

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegisterError {
    #[error("the substrate limit is reached")]
    Full,
    #[error(transparent)]
    Bus(#[from] BusError),
}

fn encode(record: &impl Serialize) -> Bytes {
    // Strings and raw JSON always serialize.
    Bytes::from(serde_json::to_vec(record).unwrap_or_default())
}

/// The lane's buckets.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    substrates: KvStore,
    events: KvStore,
    max_events: usize,
    max_substrates: usize,
}

impl Lane {
    pub(crate) async fn open(
        bus: &Bus,
        max_events: usize,
        max_substrates: usize,
    ) -> Result<Self, BusError> {
        let open = |bucket: &str| {
            bus.key_value(KvConfig {
                storage: bus.durable_storage(),
                ..KvConfig::new(bucket)
            })
        };
        Ok(Self {
            substrates: open(subject::OMEGA_SUBSTRATES_BUCKET).await?,
            events: open(subject::OMEGA_EVENTS_BUCKET).await?,
            max_events,
            max_substrates,
        })
    }

    pub(crate) async fn substrate_count(&self) -> Result<usize, BusError> {
        Ok(self.substrates.keys().await?.len())
    }

    pub(crate) async fn event_count(&self) -> Result<usize, BusError> {
        Ok(self
            .events
            .keys_matching(EVENTS)
            .await?
            .len()
            .min(self.max_events))
    }

    /// Registers `substrate` unless the lane already has `max_substrates`. Two
    /// registrations racing for the last place may both be refused; the limit is never
    /// exceeded once a registration has returned.
    pub(crate) async fn register(&self, substrate: &Substrate) -> Result<(), RegisterError> {
        if self.substrate_count().await? >= self.max_substrates {
            return Err(RegisterError::Full);
        }
        let id = &substrate.substrate_id;
        self.substrates.create(id, encode(substrate)).await?;
        if self.substrate_count().await? > self.max_substrates {
            self.substrates.delete(id).await?;
            return Err(RegisterError::Full);
        }
        Ok(())
    }

    pub(crate) async fn substrate(&self, id: &str) -> Result<Option<Substrate>, BusError> {
        // Ids are generated, but callers may send anything: no such key, no substrate.
        if !is_id(id) {
            return Ok(None);
        }
        Ok(self
            .substrates
            .get(id)
            .await?
            .and_then(|entry| serde_json::from_slice(&entry.value).ok()))
    }

    /// Every substrate, oldest first.
    pub(crate) async fn substrates(&self) -> Result<Vec<Substrate>, BusError> {
        let keys = self.substrates.keys().await?;
        let mut substrates: Vec<Substrate> = stream::iter(keys)
            .map(|key| async move { self.substrates.get(&key).await })
            .buffered(READS)
            .try_filter_map(|entry| async move {
                Ok(entry.and_then(|e| serde_json::from_slice(&e.value).ok()))
            })
            .try_collect()
            .await?;
        substrates.sort_by(|a, b| {
            (&a.created_at, &a.substrate_id).cmp(&(&b.created_at, &b.substrate_id))
        });
        Ok(substrates)
    }

    /// Removes a substrate and its events; the substrate and how many events went, or
    /// `None` if there was no such substrate.
    pub(crate) async fn unregister(
        &self,
        id: &str,
    ) -> Result<Option<(Substrate, usize)>, BusError> {
        let Some(substrate) = self.substrate(id).await? else {
            return Ok(None);
        };
        self.substrates.delete(id).await?;
        let only_its_own = Filter {
            substrate_id: Some(id.to_owned()),
            signal: None,
        };
        let (removed, _) = self.clear(&only_its_own).await?;
        Ok(Some((substrate, removed)))
    }

    /// Appends `event`, then drops the oldest beyond `max_events`.
    pub(crate) async fn emit(&self, event: &Event) -> Result<(), BusError> {
        let ticket = self.events.put(CLOCK, Bytes::from_static(b"0")).await?;
        self.events
            .create(&event_key(ticket), encode(event))
            .await?;
        let keys = self.events.keys_matching(EVENTS).await?;
        let excess = keys.len().saturating_sub(self.max_events);
        for key in &keys[..excess] {
            self.events.delete(key).await?;
        }
        Ok(())
    }

    /// The newest `max_events` events, oldest first, with their keys.
    async fn all_events(&self) -> Result<Vec<(String, Event)>, BusError> {
        let mut keys = self.events.keys_matching(EVENTS).await?;
        let excess = keys.len().saturating_sub(self.max_events);
        keys.drain(..excess);
        stream::iter(keys)
            .map(|key| async move {
                let entry = self.events.get(&key).await?;
                Ok::<_, BusError>((key, entry))
            })
            .buffered(READS)
            .try_filter_map(|(key, entry)| async move {
                // Gone since the listing: trimmed or cleared meanwhile.
                Ok(entry
                    .and_then(|e| serde_json::from_slice(&e.value).ok())
                    .map(|event| (key, event)))
            })
            .try_collect()
            .await
    }

    /// The last `limit` events matching `filter`, oldest first.
    pub(crate) async fn events(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Event>, BusError> {
        let mut matching: Vec<Event> = self
            .all_events()
            .await?
            .into_iter()
            .filter(|(_, event)| filter.matches(event))
            .map(|(_, event)| event)
            .collect();
        let excess = matching.len().saturating_sub(limit);
        matching.drain(..excess);
        Ok(matching)
    }

    /// Removes the events matching `filter`; how many went, and how many remain.
    pub(crate) async fn clear(&self, filter: &Filter) -> Result<(usize, usize), BusError> {
        let (matching, rest): (Vec<_>, Vec<_>) = self
            .all_events()
            .await?
            .into_iter()
            .partition(|(_, event)| filter.matches(event));
        for (key, _) in &matching {
            self.events.delete(key).await?;
        }
        Ok((matching.len(), rest.len()))
    }
}

/// Whether `id` could be a bucket key (ids this lane generates always are).
fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_ticket() {
        let mut keys: Vec<String> = [10, 9, 100, 1, u64::MAX].map(event_key).into();
        keys.sort();
        assert_eq!(
            keys,
            [1, 9, 10, 100, u64::MAX].map(event_key).to_vec(),
            "zero-padded tickets sort as numbers"
        );
        assert_eq!(event_key(42), "e.00000000000000000042");
    }

    #[test]
    fn filters_match_exactly() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "event_id": "omega_evt_000000000000", "substrate_id": "s1", "signal": "pulse",
            "payload": {}, "emitted_by": "c", "timestamp": "t",
        }))
        .unwrap();
        let filter = |substrate_id: Option<&str>, signal: Option<&str>| Filter {
            substrate_id: substrate_id.map(str::to_owned),
            signal: signal.map(str::to_owned),
        };
        assert!(filter(None, None).matches(&event));
        assert!(filter(Some("s1"), Some("pulse")).matches(&event));
        assert!(!filter(Some("s1"), Some("puls")).matches(&event));
        assert!(!filter(Some("s"), None).matches(&event));
        assert!(is_id("omega_sub_0123456789ab"));
        assert!(!is_id("a.b"));
        assert!(!is_id(""));
    }
}
