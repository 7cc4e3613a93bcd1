//! Recovery on join: after subscribing to a room, the edge reads what the client missed
//! from its tenant's history stream (which captures the tenant's room subjects), so
//! nothing published between the client's last message and its new subscription is lost
//! or duplicated.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use serde_json::Value;
use tracing::warn;

use arqon_bus::{Bus, HistoryStore, MAX_READ_LIMIT, ReadFrom, StoredMessage};
use arqon_proto::model::{Recovery, RoomDelivery};
use arqon_protocol::{Envelope, JsonObject, TenantId, Topic, fill_recovery_slot, subject};

/// What a recovery found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Whether every missed message is in `frames`: `false` when the position is no
    /// longer in history (or history is off), and then `frames` is empty.
    pub(crate) complete: bool,
    pub(crate) frames: Vec<Bytes>,
    /// The ids of `frames`, to drop their duplicates among the live frames queued
    /// meanwhile.
    pub(crate) ids: HashSet<String>,
}

/// The tenants' history streams this edge has opened, at most this many (then it starts
/// over).
const OPEN_STREAMS: usize = 4096;

/// The tenants' history streams, each opened on first use (the dispatcher owns and
/// creates them).
pub(crate) struct History {
    bus: Bus,
    open: Mutex<HashMap<TenantId, HistoryStore>>,
}

impl History {
    pub(crate) fn new(bus: Bus) -> Self {
        Self {
            bus,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's stream; `None` while it has none (it has stored nothing yet).
    async fn store(&self, tenant: &TenantId) -> Option<HistoryStore> {
        let cached = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned();
        if cached.is_some() {
            return cached;
        }
        match self
            .bus
            .open_history(&subject::history_stream(tenant))
            .await
        {
            Ok(Some(store)) => {
                let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
                if open.len() >= OPEN_STREAMS {
                    open.clear();
                }
                open.insert(tenant.clone(), store.clone());
                Some(store)
            }
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, %tenant, "cannot open the tenant's history stream");
                None
            }
        }
    }

    /// The messages of `topic` after `from`, in order, if they are all still stored.
    pub(crate) async fn recover(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        from: &Recovery,
    ) -> Recovered {
        let Some(store) = self.store(tenant).await else {
            return Recovered::default();
        };
        let room = subject::room(tenant, topic);
        let after = match self.after(&store, &room, from).await {
            Ok(Some(after)) => after,
            Ok(None) => return Recovered::default(),
            Err(e) => {
                warn!(error = %e, subject = %room, "history read failed during recovery");
                return Recovered::default();
            }
        };
        recovered(after)
    }

    /// The stored messages after the position, or `None` when the position is no
    /// longer in history (so what follows it may be incomplete).
    async fn after(
        &self,
        store: &HistoryStore,
        room: &str,
        from: &Recovery,
    ) -> Result<Option<Vec<StoredMessage>>, arqon_bus::BusError> {
        match from {
            Recovery::AfterOffset { epoch, offset } => {
                if epoch != store.epoch() {
                    return Ok(None);
                }
                // Retention drops a subject's oldest messages first: if the last one the
                // client saw is still stored, everything after it is too.
                match store.get(*offset).await? {
                    Some(seen) if seen.subject == room => {}
                    _ => return Ok(None),
                }
                let after = store
                    .read(room, ReadFrom::Sequence(offset + 1), MAX_READ_LIMIT)
                    .await?;
                // More than one read's worth is not recovered here: the client reloads.
                Ok((after.len() < MAX_READ_LIMIT).then_some(after))
            }
            Recovery::AfterId(id) => {
                // Clients choose ids, and nothing stops one from sending an id again: a
                // position by id is trusted only when it names exactly one message among
                // all the channel's stored ones (else resuming after the wrong copy would
                // skip messages). `since_offset` with `epoch` is the server's own.
                let tail = store.tail(room, MAX_READ_LIMIT).await?;
                // A shorter tail is the whole channel as it was read; a full one is only
                // when the channel keeps no more (messages published after the read are
                // counted too: on the safe side).
                if tail.len() == MAX_READ_LIMIT && store.count(room).await? > MAX_READ_LIMIT as u64
                {
                    return Ok(None);
                }
                Ok(only_position(&tail, id).map(|i| tail[i + 1..].to_vec()))
            }
        }
    }
}

/// The frames of the stored messages after the position, and their ids: all of them.
fn recovered(after: Vec<StoredMessage>) -> Recovered {
    let mut recovered = Recovered {
        complete: true,
        ..Recovered::default()
    };
    for message in after {
        match RoomDelivery::decode(message.payload) {
            Ok(delivery) => {
                if let Some(id) = delivery.message_id() {
                    recovered.ids.insert(id);
                }
                recovered.frames.push(delivery.frame);
            }
            Err(e) => warn!(error = %e, seq = message.seq, "undecodable stored message"),
        }
    }
    recovered
}

/// Where the one stored message with this id is; `None` when none or several have it.
fn only_position(tail: &[StoredMessage], id: &str) -> Option<usize> {
    let mut matches = tail.iter().enumerate().filter(|(_, m)| {
        RoomDelivery::decode(m.payload.clone())
            .ok()
            .is_some_and(|d| d.message_id().as_deref() == Some(id))
    });
    match (matches.next(), matches.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// Writes `recovered` and `recovered_count` into the `data` of a join response frame:
/// at the place the dispatcher said (`slot`), or, from a dispatcher that said none, by
/// parsing the frame and adding them.
pub(crate) fn annotate_response(
    frame: &Bytes,
    slot: Option<u32>,
    recovered: &Recovered,
) -> Option<Bytes> {
    let (complete, count) = (recovered.complete, recovered.frames.len());
    if let Some(filled) =
        slot.and_then(|at| fill_recovery_slot(frame, at as usize, complete, count))
    {
        return Some(Bytes::from(filled));
    }
    let text = std::str::from_utf8(frame).ok()?;
    let mut envelope = Envelope::from_server_json(text).ok()?;
    let mut payload = envelope.payload.to_map();
    let data = payload.get_mut("data")?.as_object_mut()?;
    data.insert("recovered".into(), Value::Bool(recovered.complete));
    data.insert(
        "recovered_count".into(),
        Value::from(recovered.frames.len()),
    );
    envelope.payload = JsonObject::from_map(&payload);
    Some(Bytes::from(envelope.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::{CommandReply, MessageType};

    fn stored(seq: u64, delivery: &RoomDelivery) -> StoredMessage {
        StoredMessage {
            seq,
            subject: "arqon.room.acme.science.general".into(),
            headers: Default::default(),
            payload: delivery.encode(),
            time: Default::default(),
        }
    }

    #[test]
    fn recovered_ids_come_from_heads_and_from_frames_stored_without_one() {
        let envelopes: Vec<Envelope> = (0..3)
            .map(|_| {
                let mut envelope = Envelope::new(MessageType::Message);
                envelope.room = Some("science".into());
                envelope.channel = Some("general".into());
                envelope
            })
            .collect();
        let with_head = RoomDelivery::of(&envelopes[0]);
        // Stored by a version that wrote no head; and one whose frame's id is not first.
        let without_head = RoomDelivery {
            head: None,
            ..RoomDelivery::of(&envelopes[1])
        };
        let mut reordered: serde_json::Map<String, Value> =
            serde_json::from_str(&envelopes[2].to_json()).unwrap();
        let id = reordered.remove("id").unwrap();
        reordered.insert("id".into(), id);
        let reordered = RoomDelivery {
            frame: Bytes::from(serde_json::to_string(&reordered).unwrap()),
            head: None,
            ..RoomDelivery::of(&envelopes[2])
        };
        let tail: Vec<StoredMessage> = [&with_head, &without_head, &reordered]
            .into_iter()
            .enumerate()
            .map(|(i, d)| stored(i as u64 + 1, d))
            .collect();
        let recovered = recovered(tail.clone());
        assert_eq!(recovered.frames.len(), 3);
        for (i, envelope) in envelopes.iter().enumerate() {
            assert!(recovered.ids.contains(envelope.id.as_str()), "{i}");
            assert_eq!(only_position(&tail, envelope.id.as_str()), Some(i));
        }
        // An id stored twice is no position.
        let twice = [stored(1, &with_head), stored(2, &with_head)];
        assert_eq!(only_position(&twice, envelopes[0].id.as_str()), None);
    }

    /// A join's response as the dispatcher writes it; `reserved` by one that says where
    /// the recovery's fields go, and then with that place.
    pub(super) fn join_response(reserved: bool) -> (Bytes, Option<u32>) {
        let mut data = serde_json::Map::new();
        for (key, value) in [
            ("room_id", "science"),
            ("channel_id", "general"),
            ("channel_name", "general"),
            ("joined_by", "arq_client_0123456789abcdef0123456789abcdef"),
            ("joined_at", "2026-02-18T12:00:00.500000+00:00"),
            ("room_joined", "science"),
        ] {
            data.insert(key.into(), Value::from(value));
        }
        data.insert("created".into(), Value::Bool(false));
        let mut reply = CommandReply::success("Joined channel 'general' in room 'science'", data);
        if reserved {
            reply.reserve_recovery();
        }
        let frame = Bytes::from(reply.into_envelope("arq_1_1_abcdef").to_json());
        let slot = reserved.then(|| arqon_protocol::recovery_slot(&frame).unwrap() as u32);
        (frame, slot)
    }

    #[test]
    fn join_responses_are_annotated_alike_with_or_without_a_slot() {
        for (complete, count) in [(true, 2), (false, 0), (true, 120)] {
            let recovered = Recovered {
                complete,
                frames: vec![Bytes::from_static(b"{}"); count],
                ids: HashSet::new(),
            };
            // Today's dispatcher: a slot, filled in.
            let (reserved, slot) = join_response(true);
            let filled = annotate_response(&reserved, slot, &recovered).unwrap();
            // A dispatcher before slots: the response is parsed and the fields added.
            let (legacy, _) = join_response(false);
            let parsed = annotate_response(&legacy, None, &recovered).unwrap();
            // An edge before slots, given today's response, parses it likewise.
            let overwritten = annotate_response(&reserved, None, &recovered).unwrap();
            let ids = |frame: &Bytes| -> (Value, Value) {
                let value: Value = serde_json::from_slice(frame).unwrap();
                (value["id"].clone(), value["timestamp"].clone())
            };
            // The same bytes a client read before, but for each envelope's own id and time.
            let same_envelope = |frame: &Bytes, like: &Bytes| {
                let (id, at) = ids(like);
                let (own_id, own_at) = ids(frame);
                String::from_utf8(frame.to_vec())
                    .unwrap()
                    .replace(own_id.as_str().unwrap(), id.as_str().unwrap())
                    .replace(own_at.as_str().unwrap(), at.as_str().unwrap())
            };
            assert_eq!(
                same_envelope(&parsed, &filled),
                String::from_utf8(filled.to_vec()).unwrap()
            );
            assert_eq!(overwritten, filled);
            let value: Value = serde_json::from_slice(&filled).unwrap();
            assert_eq!(value["payload"]["data"]["recovered"], complete);
            assert_eq!(value["payload"]["data"]["recovered_count"], count);
            assert_eq!(value["payload"]["data"]["room_id"], "science");
            assert_eq!(value["request_id"], "arq_1_1_abcdef");
        }
        // A slot that does not hold the placeholder: the frame is parsed instead.
        let (reserved, slot) = join_response(true);
        let recovered = Recovered::default();
        assert_eq!(
            annotate_response(&reserved, slot.map(|at| at + 1), &recovered),
            annotate_response(&reserved, None, &recovered)
        );
    }
}

/// Instructions per message of recovery, counted under callgrind (see
/// `scripts/pipeline-cpu.sh`): each `stage_` function handles `MESSAGES` stored
/// messages or joins.
#[cfg(test)]
mod cpu {
    use std::hint::black_box;

    use super::*;
    use arqon_proto::model::FrameHead;
    use arqon_protocol::{ClientId, EdgeId};

    const MESSAGES: usize = 1000;

    /// The history of a channel: messages as the dispatcher publishes them.
    fn stored(text_len: usize) -> Vec<StoredMessage> {
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
                let delivery = RoomDelivery {
                    exclude: Some(sender.clone()),
                    received_at_unix_micros: Some(1),
                    head: Some(FrameHead::of(&envelope).with_sequence(i as u64 + 1).encode()),
                    ..RoomDelivery::of(&envelope)
                };
                StoredMessage {
                    seq: i as u64 + 1,
                    subject: "arqon.room.acme.science.general".into(),
                    headers: Default::default(),
                    payload: delivery.encode(),
                    time: Default::default(),
                }
            })
            .collect()
    }

    #[test]
    #[ignore = "counts instructions under callgrind: scripts/pipeline-cpu.sh"]
    fn cpu_recovery() {
        let text_len = std::env::var("ARQON_CPU_TEXT_BYTES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64);
        let stored = stored(text_len);
        let ids = black_box(stage_recover(stored.clone())).ids;
        assert_eq!(ids.len(), MESSAGES);
        let last = RoomDelivery::decode(stored[MESSAGES - 1].payload.clone()).unwrap();
        let last_id = last.frame_head().unwrap().id;
        assert_eq!(stage_find(&stored, &last_id), Some(MESSAGES - 1));
        let (response, slot) = super::tests::join_response(true);
        let recovered = Recovered {
            complete: true,
            ..Recovered::default()
        };
        assert!(stage_annotate(&response, slot, &recovered));
    }

    /// Reads each stored message's frame and id.
    #[inline(never)]
    fn stage_recover(stored: Vec<StoredMessage>) -> Recovered {
        recovered(stored)
    }

    /// Looks for a position by id among every stored message.
    #[inline(never)]
    fn stage_find(stored: &[StoredMessage], id: &str) -> Option<usize> {
        only_position(stored, id)
    }

    /// Answers `MESSAGES` joins with what their recovery found.
    #[inline(never)]
    fn stage_annotate(response: &Bytes, slot: Option<u32>, recovered: &Recovered) -> bool {
        (0..MESSAGES).all(|_| black_box(annotate_response(response, slot, recovered)).is_some())
    }
}
