//! `history`: a channel's stored messages, oldest first, with their positions.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use arqon_protocol::{CommandReply, Envelope, ErrorCode, Timestamp, Topic};

use super::args::{Parse, Reader};
use super::catalog::{CHANNEL, HISTORY_LIMIT, ROOM, SINCE, UNTIL};
use super::{Call, Reply, failed, lookup_failed, object};
use crate::state::LookupError;
use crate::state::history::{DEFAULT_LIMIT, HISTORY_OFF, MAX_LIMIT, PAGE_BYTES, Stored};

/// `history`'s request: a channel, and which of its messages.
pub(crate) struct Query {
    topic: Topic,
    limit: usize,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Parse for Query {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let query = Self {
            topic: args.topic(&ROOM, &[&CHANNEL])?,
            limit: args.limit(&HISTORY_LIMIT, DEFAULT_LIMIT, MAX_LIMIT)?,
            since: args.timestamp(&SINCE)?,
            until: args.timestamp(&UNTIL)?,
        };
        if let (Some(since), Some(until)) = (query.since, query.until)
            && until < since
        {
            return Err(args.refuse("'until' must not be before 'since'"));
        }
        Ok(query)
    }
}

pub(crate) async fn history(call: &Call<'_>, query: Query) -> Reply {
    let Query {
        topic,
        limit,
        since,
        until,
    } = query;
    let context = call.context;
    if !context.history.enabled() {
        return Err(CommandReply::error(ErrorCode::HistoryError, HISTORY_OFF));
    }
    let tenant = &call.inbound.identity.tenant;
    // Not `Registry::existing`: here the original reports a missing room as a missing
    // channel.
    match context.registry.get(tenant, &topic).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let missing = LookupError::ChannelNotFound(topic);
            return Err(lookup_failed(
                ErrorCode::HistoryError,
                "read history",
                &missing,
            ));
        }
        Err(e) => return Err(failed(ErrorCode::HistoryError, "read history", &e)),
    }
    let (stored, total, epoch) = match (
        context
            .history
            .read(tenant, &topic, since, until, limit)
            .await,
        context.history.count(tenant, &topic).await,
        context.history.epoch(tenant).await,
    ) {
        (Ok(stored), Ok(total), Ok(epoch)) => (stored, total, epoch),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return Err(failed(ErrorCode::HistoryError, "read history", &e));
        }
    };
    let stored: Vec<(Stored, Envelope)> = stored
        .into_iter()
        .filter_map(|s| s.envelope().map(|envelope| (s, envelope)))
        .collect();
    // A page never outgrows a bus message: the newest messages (or, with `since`, the
    // oldest) that fit in the byte budget, and where the next page starts.
    let sizes: Vec<usize> = stored
        .iter()
        .map(|(_, e)| e.payload.as_str().len() + e.metadata.as_str().len() + 256)
        .collect();
    let mut budget = PAGE_BYTES;
    let keep = |i: usize, budget: &mut usize| {
        let fits = sizes[i] <= *budget;
        *budget = budget.saturating_sub(sizes[i]);
        fits
    };
    // A page holds at least one message, whatever its size, so paging always advances.
    let (page, next) = if since.is_some() {
        let end = (0..stored.len())
            .find(|&i| !keep(i, &mut budget))
            .unwrap_or(stored.len())
            .max(1)
            .min(stored.len());
        let next = stored.get(end).map(|(s, _)| ("next_since", s.stored_at));
        (&stored[..end], next)
    } else {
        let start = (0..stored.len())
            .rev()
            .find(|&i| !keep(i, &mut budget))
            .map_or(0, |i| i + 1)
            .min(stored.len().saturating_sub(1));
        let next = (start > 0).then(|| ("next_until", stored[start].0.stored_at));
        (&stored[start..], next)
    };
    let entries: Vec<Value> = page.iter().map(|(s, e)| entry(s, e)).collect();
    let mut data = object(json!({
        "room_id": topic.room.as_str(),
        "room_name": topic.room.as_str(),
        "channel_id": topic.channel.as_str(),
        "channel_name": topic.channel.as_str(),
        "epoch": epoch,
        "total_messages": total,
        "limit": limit,
        "since": since.map(|t| Timestamp::from(t).to_rfc3339()),
        "until": until.map(|t| Timestamp::from(t).to_rfc3339()),
        "history": entries,
        "complete": next.is_none(),
    }));
    if let Some((key, at)) = next {
        data.insert(
            key.to_owned(),
            Value::from(Timestamp::from(at).to_rfc3339()),
        );
    }
    call.queried(&mut data);
    Ok(CommandReply::success(
        format!("Found {} messages in '{}'", page.len(), topic),
        data,
    ))
}

/// One stored message as the reply lists it.
pub(crate) fn entry(stored: &Stored, e: &Envelope) -> Value {
    json!({
        "message_id": e.id.as_str(),
        "type": e.kind.as_str(),
        "sender": e.sender,
        "payload": e.payload.to_value(),
        "metadata": e.metadata.to_value(),
        "timestamp": e.timestamp.to_rfc3339(),
        "stored_at": Timestamp::from(stored.stored_at).to_rfc3339(),
        "offset": stored.offset,
    })
}

/// Instructions per stored message of a `history` page and of the gRPC `History`,
/// counted under callgrind (see `scripts/pipeline-cpu.sh`).
#[cfg(test)]
mod cpu {
    use std::hint::black_box;

    use arqon_bus::StoredMessage;
    use arqon_proto::model::{FrameHead, RoomDelivery};
    use arqon_protocol::{ClientId, EdgeId};
    use bytes::Bytes;

    use super::*;

    const MESSAGES: usize = 1000;

    /// The history of a channel: messages as `route` publishes them.
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
                    time: Utc::now(),
                }
            })
            .collect()
    }

    #[test]
    #[ignore = "counts instructions under callgrind: scripts/pipeline-cpu.sh"]
    fn cpu_history() {
        let text_len = std::env::var("ARQON_CPU_TEXT_BYTES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64);
        let stored = stored(text_len);
        assert_eq!(black_box(stage_command(stored.clone())).len(), MESSAGES);
        assert_eq!(black_box(stage_grpc(stored)).len(), MESSAGES);
    }

    /// The entries of a `history` reply.
    #[inline(never)]
    fn stage_command(stored: Vec<StoredMessage>) -> Vec<Value> {
        stored
            .into_iter()
            .filter_map(Stored::read)
            .filter_map(|s| s.envelope().map(|e| entry(&s, &e)))
            .collect()
    }

    /// The messages of a gRPC `History` response.
    #[inline(never)]
    fn stage_grpc(stored: Vec<StoredMessage>) -> Vec<Bytes> {
        stored
            .into_iter()
            .filter_map(Stored::read)
            .map(|s| s.frame)
            .collect()
    }
}
