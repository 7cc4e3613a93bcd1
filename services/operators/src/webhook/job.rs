//! The two kinds of job in the webhook queue.
//!
//! - A **message** (`arqon.webhook.queue.<tenant>`): the `RoomDelivery` the dispatcher
//!   (or the cron scheduler) published to a room, as published. A replica fans it out
//!   into one delivery per matching rule.
//! - A **delivery** (`arqon.webhook.queue.<tenant>.<rule_id>`): one message for one rule,
//!   as JSON, with the failed attempts so far and when the next one may start. A failed
//!   attempt queues the next one as a new job (with one more failure), so the count
//!   survives any replica dying.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use arqon_proto::model::RoomDelivery;

/// One message for one rule.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Delivery {
    pub(crate) rule_id: String,
    /// The same for every attempt: `<message job sequence>-<rule_id>`.
    pub(crate) delivery_id: String,
    /// Failed attempts so far.
    pub(crate) failures: u32,
    /// Not before this time (milliseconds since the Unix epoch): the backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) not_before_ms: Option<u64>,
    /// The message's sender: a client id, or `op-cron`.
    pub(crate) sender: String,
    /// The envelope as the room's members received it.
    pub(crate) envelope: Box<RawValue>,
}

impl Delivery {
    pub(crate) fn encode(&self) -> Bytes {
        // Serialising strings, numbers and already-valid raw JSON cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// How long until it may be attempted; `None` when it may be now.
    pub(crate) fn wait_left(&self) -> Option<Duration> {
        let now = now_ms();
        self.not_before_ms
            .filter(|not_before| *not_before > now)
            .map(|not_before| Duration::from_millis(not_before - now))
    }

    /// The id the job of attempt `failures + 1` is pushed with, so a repeated push (after
    /// a replica died between pushing and acknowledging) queues it once.
    pub(crate) fn job_id(&self) -> String {
        format!("{}.{}", self.delivery_id, self.failures)
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What fanning out needs of a queued message.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) room: String,
    pub(crate) channel: String,
    pub(crate) sender: String,
    pub(crate) envelope: Box<RawValue>,
}

/// Why a queued message cannot be delivered (it is dropped).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("not a room delivery: {0}")]
    Undecodable(String),
    #[error("the envelope is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("not a message with a room and a channel")]
    NotAMessage,
}

impl Message {
    /// Reads a message job: a `RoomDelivery` whose frame is a `message` envelope with a
    /// room and a channel.
    pub(crate) fn decode(payload: Bytes) -> Result<Self, Unusable> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "type")]
            kind: String,
            room: Option<String>,
            channel: Option<String>,
            #[serde(default)]
            sender: Option<String>,
        }
        let delivery =
            RoomDelivery::decode(payload).map_err(|e| Unusable::Undecodable(e.to_string()))?;
        let head: Head = serde_json::from_slice(&delivery.frame)?;
        let envelope: Box<RawValue> = serde_json::from_slice(&delivery.frame)?;
        match (head.kind.as_str(), head.room, head.channel) {
            ("message", Some(room), Some(channel)) => Ok(Self {
                room,
                channel,
                // The routed envelope names its sender; the excluded client is the same.
                sender: head
                    .sender
                    .or_else(|| delivery.exclude.map(|c| c.to_string()))
                    .unwrap_or_default(),
                envelope,
            }),
            _ => Err(Unusable::NotAMessage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::{ClientId, EdgeId, Envelope, MessageType};

    fn queued(envelope: &Envelope, exclude: Option<ClientId>) -> Bytes {
        RoomDelivery {
            frame: Bytes::from(envelope.to_json()),
            exclude,
            close_room: false,
            received_at_unix_micros: None,
        }
        .encode()
    }

    #[test]
    fn messages_are_read_from_room_deliveries() {
        let sender = ClientId::generate_on(&EdgeId::generate());
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some("science".into());
        envelope.channel = Some("general".into());
        envelope.sender = Some(sender.to_string());
        let message = Message::decode(queued(&envelope, Some(sender.clone()))).unwrap();
        assert_eq!(
            (message.room.as_str(), message.channel.as_str()),
            ("science", "general")
        );
        assert_eq!(message.sender, sender.to_string());
        assert_eq!(message.envelope.get(), envelope.to_json());

        envelope.sender = Some("op-cron".into());
        let message = Message::decode(queued(&envelope, None)).unwrap();
        assert_eq!(message.sender, "op-cron");

        envelope.channel = None;
        assert!(matches!(
            Message::decode(queued(&envelope, None)),
            Err(Unusable::NotAMessage)
        ));
        assert!(Message::decode(Bytes::from_static(b"\xff\xff")).is_err());
    }

    #[test]
    fn deliveries_round_trip_and_know_when_they_are_due() {
        let envelope = RawValue::from_string(r#"{"id":"x"}"#.into()).unwrap();
        let mut delivery = Delivery {
            rule_id: "wh_0123456789ab".into(),
            delivery_id: "7-wh_0123456789ab".into(),
            failures: 0,
            not_before_ms: None,
            sender: "arq_client_x".into(),
            envelope,
        };
        assert_eq!(delivery.wait_left(), None);
        assert_eq!(delivery.job_id(), "7-wh_0123456789ab.0");
        delivery.not_before_ms = Some(now_ms() + 60_000);
        delivery.failures = 2;
        let wait = delivery.wait_left().unwrap();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        let back = Delivery::decode(&delivery.encode()).unwrap();
        assert_eq!(back.envelope.get(), r#"{"id":"x"}"#);
        assert_eq!(
            (back.failures, back.not_before_ms),
            (2, delivery.not_before_ms)
        );
        delivery.not_before_ms = Some(now_ms().saturating_sub(1));
        assert_eq!(delivery.wait_left(), None);
    }
}

/// Instructions per message of the webhook fan-out and delivery, counted under callgrind
/// (see `scripts/pipeline-cpu.sh`).
#[cfg(test)]
mod cpu {
    use std::hint::black_box;

    use super::*;
    use crate::webhook::signature;
    use arqon_protocol::{ClientId, EdgeId, Envelope};

    const MESSAGES: usize = 1000;

    /// Messages as the dispatcher queues them for webhooks.
    fn queued(text_len: usize) -> Vec<Bytes> {
        let sender = ClientId::generate_on(&EdgeId::generate());
        let text = "lorem ipsum ".repeat(text_len / 12 + 1);
        (0..MESSAGES)
            .map(|i| {
                let frame = format!(
                    r#"{{"type":"message","room":"science","channel":"general","payload":{{"text":"{}","n":{i}}},"metadata":{{"trace":"x"}}}}"#,
                    &text[..text_len]
                );
                let mut envelope = Envelope::from_client_json(&frame).unwrap();
                envelope.sender = Some(sender.to_string());
                envelope.from_client = envelope.sender.clone();
                RoomDelivery {
                    frame: Bytes::from(envelope.to_json()),
                    exclude: Some(sender.clone()),
                    close_room: false,
                    received_at_unix_micros: Some(1),
                }
                .encode()
            })
            .collect()
    }

    #[test]
    #[ignore = "counts instructions under callgrind: scripts/pipeline-cpu.sh"]
    fn cpu_webhook() {
        let text_len = std::env::var("ARQON_CPU_TEXT_BYTES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64);
        for job in queued(text_len) {
            let delivery = stage_fan_out(job);
            assert!(!black_box(stage_attempt(&delivery)).is_empty());
        }
    }

    /// A message job read and made into one rule's delivery job.
    #[inline(never)]
    fn stage_fan_out(job: Bytes) -> Bytes {
        let message = Message::decode(job).unwrap();
        Delivery {
            rule_id: "wh_0123456789ab".into(),
            delivery_id: "7-wh_0123456789ab".into(),
            failures: 0,
            not_before_ms: None,
            sender: message.sender.clone(),
            envelope: message.envelope.clone(),
        }
        .encode()
    }

    /// A delivery job read and made into the POST's body.
    #[inline(never)]
    fn stage_attempt(job: &[u8]) -> Vec<u8> {
        let delivery = Delivery::decode(job).unwrap();
        signature::body(&delivery.sender, &delivery.envelope)
    }
}
