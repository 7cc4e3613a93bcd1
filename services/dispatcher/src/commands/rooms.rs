//! `list_rooms`: the caller's tenant's rooms by name, each with its channel count, a page
//! at a time (a room exists while it has a channel). Read from the channel registry, as
//! `status` counts rooms.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use arqon_protocol::{CommandReply, ErrorCode, RoomName};

use super::args::{Arg, Parse, Reader, arg};
use super::{Call, Reply, failed, object};

pub(crate) const AFTER_ROOM: Arg = arg(
    "after",
    false,
    "the `next_after` of the previous page: list the rooms after this name",
);
pub(crate) const ROOMS_LIMIT: Arg = arg(
    "limit",
    false,
    "at most this many (default 100, at most 1000)",
);

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `list_rooms`' request: the page.
pub(crate) struct ListRooms {
    after: Option<RoomName>,
    limit: usize,
}

impl Parse for ListRooms {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let after = match args.string(&AFTER_ROOM)? {
            Some(after) => Some(RoomName::parse(after).map_err(|e| {
                args.refuse(format!(
                    "'after' must be a room name from a previous page ({e})"
                ))
            })?),
            None => None,
        };
        let limit = args.limit(&ROOMS_LIMIT, DEFAULT_LIMIT, MAX_LIMIT)?;
        Ok(Self { after, limit })
    }
}

pub(crate) async fn list_rooms(call: &Call<'_>, request: ListRooms) -> Reply {
    let ListRooms { after, limit } = request;
    let tenant = &call.inbound.identity.tenant;
    let channels = call
        .context
        .registry
        .all(tenant)
        .await
        .map_err(|e| failed(ErrorCode::ListChannelsError, "list rooms", &e))?;
    let mut rooms: BTreeMap<&str, u64> = BTreeMap::new();
    for topic in &channels {
        *rooms.entry(topic.room.as_str()).or_default() += 1;
    }
    let total = rooms.len();
    let mut following = rooms
        .iter()
        .filter(|(room, _)| after.as_ref().is_none_or(|after| **room > after.as_str()));
    let page: Vec<(&&str, &u64)> = following.by_ref().take(limit).collect();
    let more = following.next().is_some();
    let listed: Vec<Value> = page
        .iter()
        .map(|(room, channels)| json!({"room": room, "channels": channels}))
        .collect();
    let mut data = object(json!({
        "rooms": listed,
        "total_rooms": total,
        "limit": limit,
        "complete": !more,
    }));
    if more && let Some((last, _)) = page.last() {
        data.insert("next_after".to_owned(), Value::from(**last));
    }
    call.queried(&mut data);
    Ok(CommandReply::success(format!("Found {total} rooms"), data))
}
