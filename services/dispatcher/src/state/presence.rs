//! Presence, asked of the edges themselves: every live edge answers a query with its
//! local memberships, so the answer is right whichever dispatcher replica asks, stays
//! right when a client disconnects, and drops a crashed edge's clients at once (they do
//! not answer).

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::warn;

use arqon_bus::{Bus, BusError, KvConfig, KvStore, Storage};
use arqon_proto::model::{Member, PresenceQuery, PresenceReply};
use arqon_protocol::{ChannelName, RoomName, TenantId, Topic, subject};

/// How long a query waits for the edges. An edge that crashed is waited for until its
/// liveness key expires (`subject::EDGE_TTL`).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Presence {
    bus: Bus,
    edges: KvStore,
}

impl Presence {
    pub(crate) async fn open(bus: &Bus) -> Result<Self, BusError> {
        // The same bucket settings as the edges use (`arqon_edge::cluster`).
        let config = KvConfig {
            max_age: Some(subject::EDGE_TTL),
            storage: Storage::Memory,
            ..KvConfig::new(subject::EDGES_BUCKET)
        };
        Ok(Self {
            bus: bus.clone(),
            edges: bus.key_value(config).await?,
        })
    }

    /// The live edges.
    pub(crate) async fn edges(&self) -> Result<usize, BusError> {
        Ok(self.edges.keys().await?.len())
    }

    async fn ask(&self, query: PresenceQuery) -> Result<Vec<PresenceReply>, BusError> {
        Ok(self.ask_all(query).await?.0)
    }

    /// The edges' replies, and whether every live edge answered.
    async fn ask_all(&self, query: PresenceQuery) -> Result<(Vec<PresenceReply>, bool), BusError> {
        let expected = self.edges().await?;
        if expected == 0 {
            return Ok((Vec::new(), true));
        }
        let replies = self
            .bus
            .request_many(
                subject::PRESENCE_QUERY,
                query.encode(),
                expected,
                QUERY_TIMEOUT,
            )
            .await?;
        let decoded: Vec<PresenceReply> = replies
            .into_iter()
            .filter_map(|m| match PresenceReply::decode(m.payload) {
                Ok(reply) => Some(reply),
                Err(e) => {
                    warn!(error = %e, "undecodable presence reply");
                    None
                }
            })
            .collect();
        let complete = decoded.len() >= expected;
        Ok((decoded, complete))
    }

    /// The members of one channel, over all edges.
    pub(crate) async fn members(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Vec<Member>, BusError> {
        let query = PresenceQuery {
            tenant: Some(tenant.clone()),
            room: Some(topic.room.clone()),
            channel: Some(topic.channel.clone()),
            with_members: true,
        };
        let mut members: Vec<Member> = self
            .ask(query)
            .await?
            .into_iter()
            .flat_map(|r| r.channels)
            .flat_map(|c| c.member_list)
            .collect();
        members.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(members)
    }

    /// Members per channel of a room, over all edges.
    pub(crate) async fn counts(
        &self,
        tenant: &TenantId,
        room: &RoomName,
    ) -> Result<BTreeMap<ChannelName, u64>, BusError> {
        Ok(self.room_counts(tenant, room).await?.0)
    }

    /// Members per channel of a room, only if every live edge answered: what the expiry
    /// sweep acts on, since a silent edge may hold members.
    pub(crate) async fn complete_counts(
        &self,
        tenant: &TenantId,
        room: &RoomName,
    ) -> Result<Option<BTreeMap<ChannelName, u64>>, BusError> {
        let (counts, complete) = self.room_counts(tenant, room).await?;
        Ok(complete.then_some(counts))
    }

    async fn room_counts(
        &self,
        tenant: &TenantId,
        room: &RoomName,
    ) -> Result<(BTreeMap<ChannelName, u64>, bool), BusError> {
        let query = PresenceQuery {
            tenant: Some(tenant.clone()),
            room: Some(room.clone()),
            channel: None,
            with_members: false,
        };
        let (replies, complete) = self.ask_all(query).await?;
        let mut counts = BTreeMap::new();
        for channel in replies.into_iter().flat_map(|r| r.channels) {
            *counts.entry(channel.topic.channel).or_default() += channel.members;
        }
        Ok((counts, complete))
    }

    /// Open connections per tenant (only `tenant`'s when given).
    pub(crate) async fn connections(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<BTreeMap<TenantId, u64>, BusError> {
        let query = PresenceQuery {
            tenant: tenant.cloned(),
            room: None,
            channel: None,
            with_members: false,
        };
        let mut totals = BTreeMap::new();
        for (tenant, n) in self
            .ask(query)
            .await?
            .into_iter()
            .flat_map(|r| r.connections)
        {
            *totals.entry(tenant).or_default() += n;
        }
        Ok(totals)
    }
}
