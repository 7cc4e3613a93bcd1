//! `history`: a channel's stored messages, oldest first, with their positions.

use serde_json::{Value, json};

use arqon_protocol::{CommandReply, ErrorCode, Timestamp};

use super::args::validation;
use super::{Call, failed, lookup_failed, object};
use crate::state::LookupError;
use crate::state::history::{DEFAULT_LIMIT, HISTORY_OFF, MAX_LIMIT, PAGE_BYTES};

pub(crate) async fn history(call: &Call<'_>) -> CommandReply {
    let parsed = (|| {
        Ok::<_, CommandReply>((
            call.args.topic(&[])?,
            call.args.limit(DEFAULT_LIMIT, MAX_LIMIT)?,
            call.args.timestamp("since")?,
            call.args.timestamp("until")?,
        ))
    })();
    let (topic, limit, since, until) = match parsed {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    if let (Some(since), Some(until)) = (since, until)
        && until < since
    {
        return validation("'until' must not be before 'since'");
    }
    let context = call.context;
    if !context.history.enabled() {
        return CommandReply::error(ErrorCode::HistoryError, HISTORY_OFF);
    }
    let tenant = &call.inbound.identity.tenant;
    // Not `Registry::existing`: here the original reports a missing room as a missing
    // channel.
    match context.registry.get(tenant, &topic).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let missing = LookupError::ChannelNotFound(topic);
            return lookup_failed(ErrorCode::HistoryError, "read history", &missing);
        }
        Err(e) => return failed(ErrorCode::HistoryError, "read history", &e),
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
            return failed(ErrorCode::HistoryError, "read history", &e);
        }
    };
    // A page never outgrows a bus message: the newest messages (or, with `since`, the
    // oldest) that fit in the byte budget, and where the next page starts.
    let sizes: Vec<usize> = stored
        .iter()
        .map(|s| s.envelope.payload.as_str().len() + s.envelope.metadata.as_str().len() + 256)
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
        let next = stored.get(end).map(|s| ("next_since", s.stored_at));
        (&stored[..end], next)
    } else {
        let start = (0..stored.len())
            .rev()
            .find(|&i| !keep(i, &mut budget))
            .map_or(0, |i| i + 1)
            .min(stored.len().saturating_sub(1));
        let next = (start > 0).then(|| ("next_until", stored[start].stored_at));
        (&stored[start..], next)
    };
    let entries: Vec<Value> = page
        .iter()
        .map(|s| {
            let e = &s.envelope;
            json!({
                "message_id": e.id.as_str(),
                "type": e.kind.as_str(),
                "sender": e.sender,
                "payload": serde_json::to_value(&e.payload).unwrap_or(Value::Null),
                "metadata": serde_json::to_value(&e.metadata).unwrap_or(Value::Null),
                "timestamp": e.timestamp.to_rfc3339(),
                "stored_at": Timestamp::from(s.stored_at).to_rfc3339(),
                "offset": s.offset,
            })
        })
        .collect();
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
    CommandReply::success(
        format!("Found {} messages in '{}'", page.len(), topic),
        data,
    )
}
