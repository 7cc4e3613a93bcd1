//! `join_channel` and `leave_channel`.
//!
//! Joining creates the channel on demand: a room exists while it has a channel, and a
//! channel while anyone uses it. The edge applies the membership when it relays the
//! successful response, so a client never subscribes itself.

use serde_json::{Map, Value, json};

use arqon_proto::model::{Inbound, MembershipChange};
use arqon_protocol::{CommandReply, Timestamp, Topic};

use super::{Outcome, args};

pub(crate) fn join(inbound: &Inbound) -> Outcome {
    let topic = match args::topic(&inbound.envelope.args.to_map()) {
        Ok(topic) => topic,
        Err(reply) => return reply.into(),
    };
    let data = record(&topic, inbound, ["joined_by", "joined_at", "room_joined"]);
    Outcome {
        reply: CommandReply::success(format!("Joined channel '{topic}'"), data),
        membership: Some(MembershipChange::Join(topic)),
    }
}

pub(crate) fn leave(inbound: &Inbound) -> Outcome {
    let topic = match args::topic(&inbound.envelope.args.to_map()) {
        Ok(topic) => topic,
        Err(reply) => return reply.into(),
    };
    let data = record(&topic, inbound, ["left_by", "left_at", "room_left"]);
    Outcome {
        reply: CommandReply::success(format!("Left channel '{topic}'"), data),
        membership: Some(MembershipChange::Leave(topic)),
    }
}

/// The original's response fields, with names where it had internal ids.
/// `keys` names who acted, when, and the room, for this command.
fn record(topic: &Topic, inbound: &Inbound, [by, at, room]: [&str; 3]) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("room_id".into(), json!(topic.room.as_str()));
    data.insert("channel_id".into(), json!(topic.channel.as_str()));
    data.insert("channel_name".into(), json!(topic.channel.as_str()));
    data.insert(by.into(), json!(inbound.identity.client_id.as_str()));
    data.insert(at.into(), json!(Timestamp::now().to_rfc3339()));
    data.insert(room.into(), json!(topic.room.as_str()));
    data
}
