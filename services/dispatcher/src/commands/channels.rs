//! Channel commands: create, delete, join, leave, list, info.
//!
//! Rooms and channels are names. A room exists while it has a channel. `join_channel`
//! creates the channel on demand; the edge applies the membership when it relays the
//! successful response, so a client never subscribes itself.

use bytes::Bytes;
use serde_json::{Value, json};

use arqon_proto::model::{MembershipChange, RoomDelivery};
use arqon_protocol::{
    ChannelName, CommandReply, Envelope, ErrorCode, JsonObject, MessageType, SERVER_SENDER,
    Timestamp, Topic, subject,
};

use super::args::validation;
use super::{Call, Outcome, failed, lookup_failed, object};
use crate::state::history::PAGE_BYTES;
use crate::state::registry::MAX_DESCRIPTION_BYTES;
use crate::state::{Created, Origin, Views};

/// Channels a `list_channels` page lists when the caller names no limit.
pub(crate) const LIST_DEFAULT_LIMIT: usize = 100;
/// Most channels a `list_channels` page lists (a page also ends at `PAGE_BYTES`).
pub(crate) const LIST_MAX_LIMIT: usize = 1000;

/// The refusal of a channel beyond the tenant's quota (counted).
fn over_quota(call: &Call<'_>, limit: usize) -> CommandReply {
    call.context.metrics.channel_quota_refusals.inc();
    CommandReply::error(
        ErrorCode::QuotaExceeded,
        format!(
            "This tenant has {limit} channels, as many as it may (ARQONBUS_MAX_CHANNELS_PER_TENANT): delete one first"
        ),
    )
}

pub(crate) async fn create(call: &Call<'_>) -> CommandReply {
    let topic = match call.args.topic(&["name"]) {
        Ok(topic) => topic,
        Err(reply) => return reply,
    };
    let description = match call.args.text("description") {
        Ok(d) => d.unwrap_or_default().to_owned(),
        Err(reply) => return reply,
    };
    if description.len() > MAX_DESCRIPTION_BYTES {
        return validation(format!(
            "'description' is {} bytes; at most {MAX_DESCRIPTION_BYTES} are accepted",
            description.len()
        ));
    }
    let tenant = &call.inbound.identity.tenant;
    match call
        .context
        .registry
        .create(
            tenant,
            &topic,
            call.client(),
            &description,
            Origin::Explicit,
        )
        .await
    {
        Ok(Created::OverQuota { limit }) => over_quota(call, limit),
        Ok(Created::New(record)) => CommandReply::success(
            format!(
                "Channel '{}' created in room '{}'",
                topic.channel, topic.room
            ),
            object(json!({
                "room_id": topic.room.as_str(),
                "channel_id": topic.channel.as_str(),
                "channel_name": topic.channel.as_str(),
                "description": record.description,
                "created_by": record.created_by,
                "created_at": record.created_at,
            })),
        ),
        Ok(Created::Exists) => CommandReply::error(
            ErrorCode::ChannelExists,
            format!(
                "Channel '{}' already exists in room '{}'",
                topic.channel, topic.room
            ),
        ),
        Err(e) => failed(ErrorCode::CreateChannelError, "create channel", &e),
    }
}

pub(crate) async fn delete(call: &Call<'_>) -> CommandReply {
    let (topic, force) = match (call.args.topic(&[]), call.args.flag("force")) {
        (Ok(topic), Ok(force)) => (topic, force),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    let identity = &call.inbound.identity;
    if force && !identity.role.is_admin() {
        return CommandReply::error(
            ErrorCode::AuthorizationError,
            "Only admin clients can force a channel delete",
        );
    }
    let context = call.context;
    if let Err(e) = context.registry.existing(&identity.tenant, &topic).await {
        return lookup_failed(ErrorCode::DeleteChannelError, "delete channel", &e);
    }
    let members = match context
        .presence
        .member_count(&identity.tenant, &topic)
        .await
    {
        Ok(members) => members,
        Err(e) => return failed(ErrorCode::DeleteChannelError, "delete channel", &e),
    };
    if members > 0 && !force {
        return CommandReply::error(
            ErrorCode::DeleteChannelError,
            format!(
                "Failed to delete channel: it has {members} members (an admin may force the delete)"
            ),
        );
    }
    if let Err(e) = context.registry.delete(&identity.tenant, &topic).await {
        return failed(ErrorCode::DeleteChannelError, "delete channel", &e);
    }
    if members > 0
        && let Err(e) = close_room(call, &topic).await
    {
        return failed(ErrorCode::DeleteChannelError, "delete channel", &e);
    }
    if let Err(e) = context.history.purge(&identity.tenant, &topic).await {
        return failed(ErrorCode::DeleteChannelError, "delete channel", &e);
    }
    CommandReply::success(
        format!(
            "Channel '{}' deleted from room '{}'",
            topic.channel, topic.room
        ),
        object(json!({
            "room_id": topic.room.as_str(),
            "channel_id": topic.channel.as_str(),
            "channel_name": topic.channel.as_str(),
            "deleted_by": call.client(),
            "deleted_at": Timestamp::now().to_rfc3339(),
            "removed_members": members,
        })),
    )
}

/// Tells every edge with members that the channel is gone; they remove the members.
async fn close_room(call: &Call<'_>, topic: &Topic) -> Result<(), arqon_bus::BusError> {
    let mut notice = Envelope::new(MessageType::Telemetry);
    notice.room = Some(topic.room.to_string());
    notice.channel = Some(topic.channel.to_string());
    notice.sender = Some(SERVER_SENDER.to_owned());
    notice.payload = JsonObject::from_map(&object(json!({
        "event": "channel_deleted",
        "room": topic.room.as_str(),
        "channel": topic.channel.as_str(),
        "deleted_by": call.client(),
    })));
    let delivery = RoomDelivery {
        frame: Bytes::from(notice.to_json()),
        exclude: None,
        close_room: true,
        received_at_unix_micros: None,
    };
    let bus = &call.context.bus;
    bus.publish(
        subject::room(&call.inbound.identity.tenant, topic),
        delivery.encode(),
    )
    .await?;
    // Reached the server (and the history stream) before the purge that follows.
    bus.flush().await
}

pub(crate) async fn join(call: &Call<'_>) -> Outcome {
    let (topic, recover) = match (call.args.topic(&[]), call.args.recovery()) {
        (Ok(topic), Ok(recover)) => (topic, recover),
        (Err(reply), _) | (_, Err(reply)) => return reply.into(),
    };
    let tenant = &call.inbound.identity.tenant;
    let created = match call
        .context
        .registry
        .claim(tenant, &topic, call.client())
        .await
    {
        Ok(Created::New(_)) => true,
        Ok(Created::Exists) => false,
        Ok(Created::OverQuota { limit }) => return over_quota(call, limit).into(),
        Err(e) => return failed(ErrorCode::JoinChannelError, "join channel", &e).into(),
    };
    let reply = CommandReply::success(
        format!(
            "Joined channel '{}' in room '{}'",
            topic.channel, topic.room
        ),
        object(json!({
            "room_id": topic.room.as_str(),
            "channel_id": topic.channel.as_str(),
            "channel_name": topic.channel.as_str(),
            "joined_by": call.client(),
            "joined_at": Timestamp::now().to_rfc3339(),
            "room_joined": topic.room.as_str(),
            "created": created,
        })),
    );
    Outcome {
        reply,
        membership: Some(MembershipChange::Join { topic, recover }),
    }
}

pub(crate) async fn leave(call: &Call<'_>) -> Outcome {
    let topic = match call.args.topic(&[]) {
        Ok(topic) => topic,
        Err(reply) => return reply.into(),
    };
    let tenant = &call.inbound.identity.tenant;
    if let Err(e) = call.context.registry.existing(tenant, &topic).await {
        return lookup_failed(ErrorCode::LeaveChannelError, "leave channel", &e).into();
    }
    let reply = CommandReply::success(
        format!("Left channel '{}' in room '{}'", topic.channel, topic.room),
        object(json!({
            "room_id": topic.room.as_str(),
            "channel_id": topic.channel.as_str(),
            "channel_name": topic.channel.as_str(),
            "left_by": call.client(),
            "left_at": Timestamp::now().to_rfc3339(),
            "room_left": topic.room.as_str(),
        })),
    );
    Outcome {
        reply,
        membership: Some(MembershipChange::Leave(topic)),
    }
}

/// A description as replies show it: one written before descriptions were bounded is
/// cut to the bound (at a character boundary), so a page's size stays predictable.
fn bounded(description: &str) -> &str {
    let mut end = description.len().min(MAX_DESCRIPTION_BYTES);
    while !description.is_char_boundary(end) {
        end -= 1;
    }
    &description[..end]
}

/// `list_channels`: one page of a room's channels by name, at most `limit` and at most
/// `PAGE_BYTES` of entries (always at least one), and where the next page starts.
pub(crate) async fn list(call: &Call<'_>) -> CommandReply {
    let parsed = (|| {
        let room = call.args.room()?;
        let after = match call.args.text("after")? {
            Some(after) => Some(ChannelName::parse(after).map_err(|e| {
                validation(format!(
                    "'after' must be a channel name from a previous page ({e})"
                ))
            })?),
            None => None,
        };
        Ok::<_, CommandReply>((
            room,
            after,
            call.args.limit(LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?,
        ))
    })();
    let (room, after, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let tenant = &call.inbound.identity.tenant;
    let page = match Views::from(call.context)
        .room_page(tenant, &room, after.as_ref(), limit)
        .await
    {
        Ok(page) => page,
        Err(e) => return lookup_failed(ErrorCode::ListChannelsError, "list channels", &e),
    };
    let mut budget = PAGE_BYTES;
    let mut listed: Vec<Value> = Vec::with_capacity(page.channels.len());
    let mut next_after = page.more_after.as_ref().map(ChannelName::as_str);
    for (i, c) in page.channels.iter().enumerate() {
        let entry = json!({
            "channel_id": c.topic.channel.as_str(),
            "name": c.topic.channel.as_str(),
            "description": bounded(&c.record.description),
            "member_count": c.member_count,
            "created_at": c.record.created_at,
            "created_by": c.record.created_by,
            "last_activity": c.last_activity.map(|t| Timestamp::from(t).to_rfc3339()),
        });
        let size = entry.to_string().len() + 1;
        if size > budget && !listed.is_empty() {
            next_after = page
                .channels
                .get(i.wrapping_sub(1))
                .map(|c| c.topic.channel.as_str());
            break;
        }
        budget = budget.saturating_sub(size);
        listed.push(entry);
    }
    let mut reply = object(json!({
        "room_id": room.as_str(),
        "room_name": room.as_str(),
        "total_channels": page.total,
        "channels": listed,
        "limit": limit,
        "complete": next_after.is_none(),
    }));
    if let Some(next) = next_after {
        reply.insert("next_after".to_owned(), Value::from(next));
    }
    call.queried(&mut reply);
    CommandReply::success(
        format!("Found {} channels in room '{room}'", page.total),
        reply,
    )
}

pub(crate) async fn info(call: &Call<'_>) -> CommandReply {
    let topic = match call.args.topic(&[]) {
        Ok(topic) => topic,
        Err(reply) => return reply,
    };
    let tenant = &call.inbound.identity.tenant;
    let channel = match Views::from(call.context)
        .channel(tenant, &topic, call.context.max_members_listed)
        .await
    {
        Ok(channel) => channel,
        Err(e) => return lookup_failed(ErrorCode::ChannelInfoError, "read channel info", &e),
    };
    // Sorted by client id; the first ones only (each edge lists no more), so the reply
    // stays far under the bus's message size however crowded the channel.
    let members = &channel.members;
    let member_ids: Vec<&str> = members
        .members
        .iter()
        .map(|m| m.client_id.as_str())
        .collect();
    let mut reply = object(json!({
        "room_id": topic.room.as_str(),
        "room_name": topic.room.as_str(),
        "channel_id": topic.channel.as_str(),
        "name": topic.channel.as_str(),
        "description": bounded(&channel.record.description),
        "member_count": members.total,
        "members": member_ids,
        "members_complete": members.complete,
        "created_at": channel.record.created_at,
        "created_by": channel.record.created_by,
        "last_activity": channel.last_activity.map(|t| Timestamp::from(t).to_rfc3339()),
        "statistics": {
            "message_count": channel.message_count,
            "member_count": members.total,
            "history": call.context.history.enabled(),
        },
    }));
    call.queried(&mut reply);
    CommandReply::success(
        format!("Channel '{}' in room '{}'", topic.channel, topic.room),
        reply,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_description_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("lab notes"), "lab notes");
        let long = "é".repeat(MAX_DESCRIPTION_BYTES);
        let cut = bounded(&long);
        assert_eq!(cut.len(), MAX_DESCRIPTION_BYTES);
        let odd = format!("x{long}");
        assert_eq!(bounded(&odd).len(), MAX_DESCRIPTION_BYTES - 1);
    }
}
