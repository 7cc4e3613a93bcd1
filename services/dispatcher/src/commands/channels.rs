//! Channel commands: create, delete, join, leave, list, info.
//!
//! Rooms and channels are names. A room exists while it has a channel. `join_channel`
//! creates the channel on demand; the edge applies the membership when it relays the
//! successful response, so a client never subscribes itself.

use serde_json::{Value, json};

use arqon_bus::BusError;
use arqon_proto::model::{MembershipChange, Recovery, RoomDelivery};
use arqon_protocol::{
    ChannelName, CommandReply, Envelope, ErrorCode, JsonObject, MessageType, RoomName,
    SERVER_SENDER, Timestamp, Topic, subject,
};

use super::args::{Parse, Reader};
use super::catalog::{
    AFTER, CHANNEL, CREATE_CHANNEL, DESCRIPTION, EPOCH, FORCE, LIST_LIMIT, NAME, ROOM, SINCE_ID,
    SINCE_OFFSET,
};
use super::{Call, Outcome, Reply, failed, lookup_failed, object};
use crate::state::history::PAGE_BYTES;
use crate::state::registry::MAX_DESCRIPTION_BYTES;
use crate::state::{Created, Origin, Views};

/// Channels a `list_channels` page lists when the caller names no limit.
pub(crate) const LIST_DEFAULT_LIMIT: usize = 100;
/// Most channels a `list_channels` page lists (a page also ends at `PAGE_BYTES`).
pub(crate) const LIST_MAX_LIMIT: usize = 1000;

/// `create_channel`'s request.
pub(crate) struct Create {
    topic: Topic,
    description: String,
}

impl Parse for Create {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let topic = args.topic(&ROOM, &[&CREATE_CHANNEL, &NAME])?;
        let description = args.string(&DESCRIPTION)?.unwrap_or_default();
        if description.len() > MAX_DESCRIPTION_BYTES {
            return Err(args.refuse(format!(
                "'description' is {} bytes; at most {MAX_DESCRIPTION_BYTES} are accepted",
                description.len()
            )));
        }
        Ok(Self {
            topic,
            description: description.to_owned(),
        })
    }
}

/// `delete_channel`'s request.
pub(crate) struct Delete {
    topic: Topic,
    force: bool,
}

impl Parse for Delete {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            topic: args.topic(&ROOM, &[&CHANNEL])?,
            force: args.flag(&FORCE)?,
        })
    }
}

/// `join_channel`'s request: the channel, and where the client left off.
pub(crate) struct Join {
    topic: Topic,
    recover: Option<Recovery>,
}

impl Parse for Join {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let topic = args.topic(&ROOM, &[&CHANNEL])?;
        if let Some(id) = args.string(&SINCE_ID)? {
            let recover = Some(Recovery::AfterId(id.to_owned()));
            return Ok(Self { topic, recover });
        }
        let offset = args.count(&SINCE_OFFSET);
        let recover = match (offset, args.string(&EPOCH)?) {
            (Ok(None), None) => None,
            (Ok(None), Some(_)) => return Err(args.missing(&[&SINCE_OFFSET])),
            (_, None) => return Err(args.missing(&[&EPOCH])),
            (Err(refusal), Some(_)) => return Err(refusal),
            (Ok(Some(offset)), Some(epoch)) => Some(Recovery::AfterOffset {
                epoch: epoch.to_owned(),
                offset,
            }),
        };
        Ok(Self { topic, recover })
    }
}

/// The request of the commands that name one channel and nothing else.
pub(crate) struct OneChannel {
    topic: Topic,
}

impl Parse for OneChannel {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            topic: args.topic(&ROOM, &[&CHANNEL])?,
        })
    }
}

/// `list_channels`' request: a room, and the page.
pub(crate) struct List {
    room: RoomName,
    after: Option<ChannelName>,
    limit: usize,
}

impl Parse for List {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let room = args.room(&ROOM)?;
        let after = match args.string(&AFTER)? {
            Some(after) => Some(ChannelName::parse(after).map_err(|e| {
                args.refuse(format!(
                    "'after' must be a channel name from a previous page ({e})"
                ))
            })?),
            None => None,
        };
        let limit = args.limit(&LIST_LIMIT, LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?;
        Ok(Self { room, after, limit })
    }
}

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

pub(crate) async fn create(call: &Call<'_>, request: Create) -> Reply {
    let Create { topic, description } = request;
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
        Ok(Created::OverQuota { limit }) => Err(over_quota(call, limit)),
        Ok(Created::New(record)) => Ok(CommandReply::success(
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
        )),
        Ok(Created::Exists) => Err(CommandReply::error(
            ErrorCode::ChannelExists,
            format!(
                "Channel '{}' already exists in room '{}'",
                topic.channel, topic.room
            ),
        )),
        Err(e) => Err(failed(ErrorCode::CreateChannelError, "create channel", &e)),
    }
}

pub(crate) async fn delete(call: &Call<'_>, request: Delete) -> Reply {
    let Delete { topic, force } = request;
    let identity = &call.inbound.identity;
    if force && !identity.role.is_admin() {
        return Err(CommandReply::error(
            ErrorCode::AuthorizationError,
            "Only admin clients can force a channel delete",
        ));
    }
    let context = call.context;
    let bus_failed = |e: &BusError| failed(ErrorCode::DeleteChannelError, "delete channel", e);
    context
        .registry
        .existing(&identity.tenant, &topic)
        .await
        .map_err(|e| lookup_failed(ErrorCode::DeleteChannelError, "delete channel", &e))?;
    let members = context
        .presence
        .member_count(&identity.tenant, &topic)
        .await
        .map_err(|e| bus_failed(&e))?;
    if members > 0 && !force {
        return Err(CommandReply::error(
            ErrorCode::DeleteChannelError,
            format!(
                "Failed to delete channel: it has {members} members (an admin may force the delete)"
            ),
        ));
    }
    context
        .registry
        .delete(&identity.tenant, &topic)
        .await
        .map_err(|e| bus_failed(&e))?;
    if members > 0 {
        close_room(call, &topic).await.map_err(|e| bus_failed(&e))?;
    }
    context
        .history
        .purge(&identity.tenant, &topic)
        .await
        .map_err(|e| bus_failed(&e))?;
    Ok(CommandReply::success(
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
    ))
}

/// Tells every edge with members that the channel is gone; they remove the members.
async fn close_room(call: &Call<'_>, topic: &Topic) -> Result<(), BusError> {
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
        close_room: true,
        ..RoomDelivery::of(&notice)
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

pub(crate) async fn join(call: &Call<'_>, request: Join) -> Reply<Outcome> {
    let Join { topic, recover } = request;
    let tenant = &call.inbound.identity.tenant;
    let created = match call
        .context
        .registry
        .claim(tenant, &topic, call.client())
        .await
    {
        Ok(Created::New(_)) => true,
        Ok(Created::Exists) => false,
        Ok(Created::OverQuota { limit }) => return Err(over_quota(call, limit)),
        Err(e) => return Err(failed(ErrorCode::JoinChannelError, "join channel", &e)),
    };
    let mut reply = CommandReply::success(
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
    if recover.is_some() {
        // Filled in by the edge, which recovers (`route::answer_edge` says where).
        reply.reserve_recovery();
    }
    Ok(Outcome {
        reply,
        membership: Some(MembershipChange::Join {
            topic,
            recover,
            recovery_slot: None,
        }),
    })
}

pub(crate) async fn leave(call: &Call<'_>, request: OneChannel) -> Reply<Outcome> {
    let OneChannel { topic } = request;
    let tenant = &call.inbound.identity.tenant;
    call.context
        .registry
        .existing(tenant, &topic)
        .await
        .map_err(|e| lookup_failed(ErrorCode::LeaveChannelError, "leave channel", &e))?;
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
    Ok(Outcome {
        reply,
        membership: Some(MembershipChange::Leave(topic)),
    })
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
pub(crate) async fn list(call: &Call<'_>, request: List) -> Reply {
    let List { room, after, limit } = request;
    let tenant = &call.inbound.identity.tenant;
    let page = Views::from(call.context)
        .room_page(tenant, &room, after.as_ref(), limit)
        .await
        .map_err(|e| lookup_failed(ErrorCode::ListChannelsError, "list channels", &e))?;
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
    Ok(CommandReply::success(
        format!("Found {} channels in room '{room}'", page.total),
        reply,
    ))
}

pub(crate) async fn info(call: &Call<'_>, request: OneChannel) -> Reply {
    let OneChannel { topic } = request;
    let tenant = &call.inbound.identity.tenant;
    let channel = Views::from(call.context)
        .channel(tenant, &topic, call.context.max_members_listed)
        .await
        .map_err(|e| lookup_failed(ErrorCode::ChannelInfoError, "read channel info", &e))?;
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
    Ok(CommandReply::success(
        format!("Channel '{}' in room '{}'", topic.channel, topic.room),
        reply,
    ))
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
