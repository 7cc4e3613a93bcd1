//! What a reader sees of a room or a channel, gathered from the registry, presence and
//! history. One place for it, so the WebSocket commands and the gRPC API agree.

use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;

use arqon_protocol::{ChannelName, RoomName, TenantId, Topic};

use super::presence::MemberList;
use super::{ChannelRecord, History, LookupError, Presence, Registry};
use crate::Context;

/// One channel of a room.
#[derive(Debug)]
pub(crate) struct ChannelSummary {
    pub(crate) topic: Topic,
    pub(crate) record: ChannelRecord,
    /// Members over every edge.
    pub(crate) member_count: u64,
    /// When its last stored message was stored.
    pub(crate) last_activity: Option<DateTime<Utc>>,
}

/// One channel, with who is in it.
#[derive(Debug)]
pub(crate) struct ChannelDetail {
    pub(crate) record: ChannelRecord,
    /// The first members by client id, their true count, and whether all are listed.
    pub(crate) members: MemberList,
    /// Messages in the history.
    pub(crate) message_count: u64,
    pub(crate) last_activity: Option<DateTime<Utc>>,
}

/// One page of a room's channels.
#[derive(Debug)]
pub(crate) struct RoomPage {
    /// Channels in the room.
    pub(crate) total: usize,
    /// The page's channels, by name (those deleted while it was read are left out).
    pub(crate) channels: Vec<ChannelSummary>,
    /// The last name the page went through, when channels follow it. The page ends
    /// early where an edge's presence reply was cut, so every count it shows is whole.
    pub(crate) more_after: Option<ChannelName>,
}

/// The stores a view reads.
#[derive(Clone, Copy)]
pub(crate) struct Views<'a> {
    registry: &'a Registry,
    presence: &'a Presence,
    history: &'a History,
}

impl<'a> From<&'a Context> for Views<'a> {
    fn from(context: &'a Context) -> Self {
        Self {
            registry: &context.registry,
            presence: &context.presence,
            history: &context.history,
        }
    }
}

impl Views<'_> {
    /// At most `limit` channels of a room whose names follow `after`, by name;
    /// `RoomNotFound` when the room has none. Only the page's channels are read.
    pub(crate) async fn room_page(
        self,
        tenant: &TenantId,
        room: &RoomName,
        after: Option<&ChannelName>,
        limit: usize,
    ) -> Result<RoomPage, LookupError> {
        let mut topics = self.registry.channels(tenant, room).await?;
        if topics.is_empty() {
            return Err(LookupError::RoomNotFound(room.clone()));
        }
        topics.sort_by(|a, b| a.channel.cmp(&b.channel));
        let total = topics.len();
        let first = after.map_or(0, |after| topics.partition_point(|t| &t.channel <= after));
        let end = first.saturating_add(limit).min(total);
        let mut more_after = (end < total)
            .then(|| topics.get(end.wrapping_sub(1)).map(|t| t.channel.clone()))
            .flatten();
        let mut page: Vec<Topic> = topics.drain(first.min(end)..end).collect();
        let counts = self.presence.counts(tenant, room, after, limit).await?;
        if let Some(through) = counts.through
            && page.last().is_some_and(|t| t.channel > through)
        {
            page.retain(|t| t.channel <= through);
            more_after = Some(through);
        }
        let counts = &counts.counts;
        let described = try_join_all(page.into_iter().map(|topic| async move {
            let (record, last_activity) = tokio::try_join!(
                self.registry.get(tenant, &topic),
                self.history.last_activity(tenant, &topic),
            )?;
            Ok::<_, LookupError>(record.map(|record| ChannelSummary {
                member_count: counts.get(&topic.channel).copied().unwrap_or(0),
                topic,
                record,
                last_activity,
            }))
        }))
        .await?;
        Ok(RoomPage {
            total,
            channels: described.into_iter().flatten().collect(),
            more_after,
        })
    }

    /// One channel with its first `max_members` members; `RoomNotFound` or
    /// `ChannelNotFound` when it does not exist.
    pub(crate) async fn channel(
        self,
        tenant: &TenantId,
        topic: &Topic,
        max_members: usize,
    ) -> Result<ChannelDetail, LookupError> {
        let record = self.registry.existing(tenant, topic).await?;
        let (members, message_count, last_activity) = tokio::try_join!(
            self.presence.members(tenant, topic, max_members),
            self.history.count(tenant, topic),
            self.history.last_activity(tenant, topic),
        )?;
        Ok(ChannelDetail {
            record,
            members,
            message_count,
            last_activity,
        })
    }
}
