//! Channel commands: create, delete, join, leave, list, info.
//!
//! Rooms and channels are names. A room exists while it has a channel. `join_channel`
//! creates the channel on demand; the edge applies the membership when it relays the
//! successful response, so a client never subscribes itself.

use bytes::Bytes;
use serde_json::{Value, json};

use arqon_proto::model::{MembershipChange, RoomDelivery};
use arqon_protocol::{
    CommandReply, Envelope, ErrorCode, JsonObject, MessageType, SERVER_SENDER, Timestamp, Topic,
    subject,
};

use super::{Call, Outcome, failed, lookup_failed, object};
use crate::state::Created;
use crate::state::Views;

/// The refusal of a channel beyond the tenant's quota.
fn over_quota(limit: usize) -> CommandReply {
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
    let tenant = &call.inbound.identity.tenant;
    match call
        .context
        .registry
        .create(tenant, &topic, call.client(), &description)
        .await
    {
        Ok(Created::OverQuota { limit }) => over_quota(limit),
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
    let members = match context.presence.members(&identity.tenant, &topic).await {
        Ok(members) => members,
        Err(e) => return failed(ErrorCode::DeleteChannelError, "delete channel", &e),
    };
    if !members.is_empty() && !force {
        return CommandReply::error(
            ErrorCode::DeleteChannelError,
            format!(
                "Failed to delete channel: it has {} members (an admin may force the delete)",
                members.len()
            ),
        );
    }
    if let Err(e) = context.registry.delete(&identity.tenant, &topic).await {
        return failed(ErrorCode::DeleteChannelError, "delete channel", &e);
    }
    if !members.is_empty()
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
            "removed_members": members.len(),
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
        .create(tenant, &topic, call.client(), "")
        .await
    {
        Ok(Created::New(_)) => true,
        Ok(Created::Exists) => false,
        Ok(Created::OverQuota { limit }) => return over_quota(limit).into(),
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

pub(crate) async fn list(call: &Call<'_>) -> CommandReply {
    let room = match call.args.room() {
        Ok(room) => room,
        Err(reply) => return reply,
    };
    let tenant = &call.inbound.identity.tenant;
    let channels = match Views::from(call.context).room(tenant, &room).await {
        Ok(channels) => channels,
        Err(e) => return lookup_failed(ErrorCode::ListChannelsError, "list channels", &e),
    };
    let listed: Vec<Value> = channels
        .iter()
        .map(|c| {
            json!({
                "channel_id": c.topic.channel.as_str(),
                "name": c.topic.channel.as_str(),
                "description": c.record.description,
                "member_count": c.member_count,
                "created_at": c.record.created_at,
                "created_by": c.record.created_by,
                "last_activity": c.last_activity.map(|t| Timestamp::from(t).to_rfc3339()),
            })
        })
        .collect();
    let mut reply = object(json!({
        "room_id": room.as_str(),
        "room_name": room.as_str(),
        "total_channels": listed.len(),
        "channels": listed,
    }));
    call.queried(&mut reply);
    CommandReply::success(
        format!("Found {} channels in room '{room}'", channels.len()),
        reply,
    )
}

pub(crate) async fn info(call: &Call<'_>) -> CommandReply {
    let topic = match call.args.topic(&[]) {
        Ok(topic) => topic,
        Err(reply) => return reply,
    };
    let tenant = &call.inbound.identity.tenant;
    let channel = match Views::from(call.context).channel(tenant, &topic).await {
        Ok(channel) => channel,
        Err(e) => return lookup_failed(ErrorCode::ChannelInfoError, "read channel info", &e),
    };
    let member_ids: Vec<&str> = channel
        .members
        .iter()
        .map(|m| m.client_id.as_str())
        .collect();
    let mut reply = object(json!({
        "room_id": topic.room.as_str(),
        "room_name": topic.room.as_str(),
        "channel_id": topic.channel.as_str(),
        "name": topic.channel.as_str(),
        "description": channel.record.description,
        "member_count": channel.members.len(),
        "members": member_ids,
        "created_at": channel.record.created_at,
        "created_by": channel.record.created_by,
        "last_activity": channel.last_activity.map(|t| Timestamp::from(t).to_rfc3339()),
        "statistics": {
            "message_count": channel.message_count,
            "member_count": channel.members.len(),
            "history": call.context.history.enabled(),
        },
    }));
    call.queried(&mut reply);
    CommandReply::success(
        format!("Channel '{}' in room '{}'", topic.channel, topic.room),
        reply,
    )
}
