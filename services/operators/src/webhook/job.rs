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
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use arqon_proto::model::RoomDelivery;
use arqon_protocol::{JsonObject, MessageType, ObjectWriter};

/// One message for one rule.
#[derive(Debug, Deserialize)]
pub(crate) struct Delivery {
    pub(crate) rule_id: String,
    /// The same for every attempt: `<message job sequence>-<rule_id>`.
    pub(crate) delivery_id: String,
    /// Failed attempts so far.
    pub(crate) failures: u32,
    /// Not before this time (milliseconds since the Unix epoch): the backoff.
    #[serde(default)]
    pub(crate) not_before_ms: Option<u64>,
    /// The message's sender: a client id, or `op-cron`.
    pub(crate) sender: String,
    /// The envelope as the room's members received it.
    #[serde(deserialize_with = "object")]
    pub(crate) envelope: JsonObject,
}

impl Delivery {
    /// `{"rule_id","delivery_id","failures",["not_before_ms",]"sender","envelope"}`, the
    /// envelope copied in as it is.
    pub(crate) fn encode(&self) -> Bytes {
        let mut job = ObjectWriter::with_capacity(160 + self.envelope.as_str().len());
        job.text("rule_id", &self.rule_id)
            .text("delivery_id", &self.delivery_id)
            .field("failures", &self.failures);
        if let Some(not_before_ms) = self.not_before_ms {
            job.field("not_before_ms", &not_before_ms);
        }
        job.text("sender", &self.sender)
            .object("envelope", &self.envelope);
        Bytes::from(job.finish())
    }

    /// Reads a delivery job: one parse, which validates the envelope in it.
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

/// An object its deserializer has just parsed, kept as its text.
fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<JsonObject, D::Error> {
    let raw = <&RawValue>::deserialize(deserializer)?;
    JsonObject::from_raw(raw).map_err(serde::de::Error::custom)
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
    /// The frame the room's members received.
    pub(crate) envelope: JsonObject,
}

/// Why a queued message cannot be delivered (it is dropped).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("not a room delivery: {0}")]
    Undecodable(String),
    #[error("the frame is not an envelope")]
    NotAnEnvelope,
    #[error("not a message with a room and a channel")]
    NotAMessage,
}

impl Message {
    /// Reads a message job: a `RoomDelivery` whose frame is a `message` envelope with a
    /// room and a channel. What it needs of the frame comes from the delivery's head (a
    /// delivery queued by a version that wrote none is parsed instead).
    pub(crate) fn decode(payload: Bytes) -> Result<Self, Unusable> {
        let delivery =
            RoomDelivery::decode(payload).map_err(|e| Unusable::Undecodable(e.to_string()))?;
        let head = delivery.frame_head().ok_or(Unusable::NotAnEnvelope)?;
        let (MessageType::Message, Some(room), Some(channel)) =
            (head.kind, head.room, head.channel)
        else {
            return Err(Unusable::NotAMessage);
        };
        // The routed envelope names its sender; the excluded client is the same.
        let sender = head
            .sender
            .or_else(|| delivery.exclude.as_ref().map(ToString::to_string))
            .unwrap_or_default();
        let frame = std::str::from_utf8(&delivery.frame).map_err(|_| Unusable::NotAnEnvelope)?;
        #[allow(
            clippy::disallowed_methods,
            reason = "the frame the dispatcher or the cron scheduler encoded"
        )]
        let envelope = JsonObject::from_trusted_text(frame);
        Ok(Self {
            room,
            channel,
            sender,
            envelope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::{ClientId, EdgeId, Envelope};

    fn queued(envelope: &Envelope, exclude: Option<ClientId>) -> Bytes {
        RoomDelivery {
            exclude,
            ..RoomDelivery::of(envelope)
        }
        .encode()
    }

    #[test]
    fn messages_are_read_from_room_deliveries_with_or_without_a_head() {
        let sender = ClientId::generate_on(&EdgeId::generate());
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some("science".into());
        envelope.channel = Some("general".into());
        envelope.sender = Some(sender.to_string());
        // Queued by a version that wrote no head: the frame is read instead.
        let headless = |envelope: &Envelope, exclude: Option<ClientId>| {
            RoomDelivery {
                exclude,
                head: None,
                ..RoomDelivery::of(envelope)
            }
            .encode()
        };
        for queued in [queued, headless] {
            let message = Message::decode(queued(&envelope, Some(sender.clone()))).unwrap();
            assert_eq!(
                (message.room.as_str(), message.channel.as_str()),
                ("science", "general")
            );
            assert_eq!(message.sender, sender.to_string());
            assert_eq!(message.envelope.as_str(), envelope.to_json());

            let mut cron = envelope.clone();
            cron.sender = Some("op-cron".into());
            let message = Message::decode(queued(&cron, None)).unwrap();
            assert_eq!(message.sender, "op-cron");
            cron.sender = None;
            let message = Message::decode(queued(&cron, Some(sender.clone()))).unwrap();
            assert_eq!(message.sender, sender.to_string());

            let mut no_channel = envelope.clone();
            no_channel.channel = None;
            assert!(matches!(
                Message::decode(queued(&no_channel, None)),
                Err(Unusable::NotAMessage)
            ));
            let mut telemetry = envelope.clone();
            telemetry.kind = MessageType::Telemetry;
            assert!(matches!(
                Message::decode(queued(&telemetry, None)),
                Err(Unusable::NotAMessage)
            ));
        }
        assert!(Message::decode(Bytes::from_static(b"\xff\xff")).is_err());
        let not_an_envelope = RoomDelivery {
            frame: Bytes::from_static(b"{}"),
            head: None,
            ..RoomDelivery::of(&envelope)
        };
        assert!(matches!(
            Message::decode(not_an_envelope.encode()),
            Err(Unusable::NotAnEnvelope)
        ));
    }

    /// The delivery job as versions before this one wrote it (and read it).
    #[derive(serde::Serialize, Deserialize)]
    struct Written {
        rule_id: String,
        delivery_id: String,
        failures: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before_ms: Option<u64>,
        sender: String,
        envelope: Box<RawValue>,
    }

    #[test]
    fn deliveries_round_trip_and_know_when_they_are_due() {
        let envelope = JsonObject::parse(r#"{"id":"x", "n":[1]}"#).unwrap();
        let mut delivery = Delivery {
            rule_id: "wh_0123456789ab".into(),
            delivery_id: "7-wh_0123456789ab".into(),
            failures: 0,
            not_before_ms: None,
            sender: "arq_client_\"x".into(),
            envelope,
        };
        assert_eq!(delivery.wait_left(), None);
        assert_eq!(delivery.job_id(), "7-wh_0123456789ab.0");
        delivery.not_before_ms = Some(now_ms() + 60_000);
        delivery.failures = 2;
        let wait = delivery.wait_left().unwrap();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        let back = Delivery::decode(&delivery.encode()).unwrap();
        assert_eq!(back.envelope.as_str(), r#"{"id":"x", "n":[1]}"#);
        assert_eq!(
            (back.failures, back.not_before_ms),
            (2, delivery.not_before_ms)
        );
        delivery.not_before_ms = Some(now_ms().saturating_sub(1));
        assert_eq!(delivery.wait_left(), None);

        // The same bytes as before, both ways, with and without a backoff.
        for not_before_ms in [None, Some(7)] {
            delivery.not_before_ms = not_before_ms;
            let written = Written {
                rule_id: delivery.rule_id.clone(),
                delivery_id: delivery.delivery_id.clone(),
                failures: delivery.failures,
                not_before_ms,
                sender: delivery.sender.clone(),
                envelope: RawValue::from_string(delivery.envelope.as_str().into()).unwrap(),
            };
            let before = serde_json::to_vec(&written).unwrap();
            assert_eq!(delivery.encode(), before);
            let read = Delivery::decode(&before).unwrap();
            assert_eq!(read.envelope.as_str(), delivery.envelope.as_str());
            assert_eq!(read.not_before_ms, not_before_ms);
        }
        assert!(
            Delivery::decode(
                br#"{"rule_id":"r","delivery_id":"d","failures":0,"sender":"s","envelope":[1]}"#
            )
            .is_err()
        );
    }
}

/// Instructions per message of the webhook fan-out and delivery, counted under callgrind
/// (see `scripts/pipeline-cpu.sh`).
#[cfg(test)]
mod cpu {
    use std::hint::black_box;

    use super::*;
    use crate::webhook::signature;
    use arqon_proto::model::FrameHead;
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
                    exclude: Some(sender.clone()),
                    received_at_unix_micros: Some(1),
                    head: Some(FrameHead::of(&envelope).with_sequence(i as u64 + 1).encode()),
                    ..RoomDelivery::of(&envelope)
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
            .as_bytes()
            .to_vec()
    }
}
