//! `history`: a channel's stored messages, oldest first, with their positions.

use serde_json::{Value, json};

use arqon_protocol::{CommandReply, ErrorCode, Timestamp};

use super::{Call, failed};

/// Most messages one `history` call returns.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;

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
        return CommandReply::error(
            ErrorCode::ValidationError,
            "Validation error: 'until' must not be before 'since'",
        );
    }
    let context = call.context;
    if !context.history.enabled() {
        return CommandReply::error(
            ErrorCode::HistoryError,
            "History is off on this bus (ARQONBUS_ENABLE_PERSISTENCE=false)",
        );
    }
    let tenant = &call.inbound.identity.tenant;
    match context.registry.get(tenant, &topic).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return CommandReply::error(
                ErrorCode::ChannelNotFound,
                format!(
                    "Channel '{}' not found in room '{}'",
                    topic.channel, topic.room
                ),
            );
        }
        Err(e) => return failed(ErrorCode::HistoryError, "read history", &e),
    }
    let (stored, total) = match (
        context
            .history
            .read(tenant, &topic, since, until, limit)
            .await,
        context.history.count(tenant, &topic).await,
    ) {
        (Ok(stored), Ok(total)) => (stored, total),
        (Err(e), _) | (_, Err(e)) => return failed(ErrorCode::HistoryError, "read history", &e),
    };
    let entries: Vec<Value> = stored
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
    let mut data = match json!({
        "room_id": topic.room.as_str(),
        "room_name": topic.room.as_str(),
        "channel_id": topic.channel.as_str(),
        "channel_name": topic.channel.as_str(),
        "epoch": context.history.epoch(),
        "total_messages": total,
        "limit": limit,
        "since": since.map(|t| Timestamp::from(t).to_rfc3339()),
        "until": until.map(|t| Timestamp::from(t).to_rfc3339()),
        "history": entries,
    }) {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    call.queried(&mut data);
    CommandReply::success(
        format!("Found {} messages in '{}'", stored.len(), topic),
        data,
    )
}
