//! Presence, asked of the edges themselves: every live edge answers a query with its
//! local memberships, so the answer is right whichever dispatcher replica asks, stays
//! right when a client disconnects, and drops a crashed edge's clients at once (they do
//! not answer).
//!
//! Every query is bounded (members, channels and tenants wanted at most), and an edge cuts
//! its reply further to stay under the bus's message size; a cut list holds the first
//! entries in order, so what is merged here is whole up to the smallest cut point.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::warn;

use arqon_bus::{Bus, BusError, KvStore};
use arqon_proto::layout;
use arqon_proto::model::{Member, PresenceQuery, PresenceReply};
use arqon_protocol::{ChannelName, ClientId, RoomName, TenantId, Topic, subject};

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
        Ok(Self {
            bus: bus.clone(),
            edges: bus.key_value(layout::edges()).await?,
        })
    }

    /// What each live edge last reported of itself with its liveness key (open
    /// connections, frames in and out, whether it reaches the bus: `cluster.rs` of the
    /// edge), by edge id; `null` for a report this replica cannot read.
    pub(crate) async fn edge_reports(&self) -> Result<Vec<(String, serde_json::Value)>, BusError> {
        Ok(self
            .edges
            .entries_matching(">")
            .await?
            .into_iter()
            .map(|entry| {
                let report = serde_json::from_slice(&entry.value).unwrap_or_default();
                (entry.key, report)
            })
            .collect())
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

    /// The members of one channel over all edges: the first `max` by client id, the true
    /// count, and whether every member is listed. Each edge lists its first ones (at most
    /// `max`, and fewer when its reply would be too large); when one cut its list, only
    /// ids up to its last listed one are kept, so the list is the channel's first ones.
    pub(crate) async fn members(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        max: usize,
    ) -> Result<MemberList, BusError> {
        let query = PresenceQuery {
            tenant: Some(tenant.clone()),
            room: Some(topic.room.clone()),
            channel: Some(topic.channel.clone()),
            with_members: true,
            max_members: bound(max),
            ..PresenceQuery::default()
        };
        Ok(merge_members(self.ask(query).await?, max))
    }

    /// Members of one channel over all edges.
    pub(crate) async fn member_count(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<u64, BusError> {
        let query = PresenceQuery {
            tenant: Some(tenant.clone()),
            room: Some(topic.room.clone()),
            channel: Some(topic.channel.clone()),
            ..PresenceQuery::default()
        };
        Ok(self
            .ask(query)
            .await?
            .into_iter()
            .flat_map(|r| r.channels)
            .map(|c| c.members)
            .sum())
    }

    /// Members per channel of a room, over all edges, for at most `limit` channels named
    /// after `after` (0: as many as the edges' replies hold).
    pub(crate) async fn counts(
        &self,
        tenant: &TenantId,
        room: &RoomName,
        after: Option<&ChannelName>,
        limit: usize,
    ) -> Result<RoomCounts, BusError> {
        let query = PresenceQuery {
            tenant: Some(tenant.clone()),
            room: Some(room.clone()),
            channels_after: after.cloned(),
            max_channels: bound(limit),
            ..PresenceQuery::default()
        };
        let (replies, answered) = self.ask_all(query).await?;
        let (counts, through) = merge_counts(replies);
        Ok(RoomCounts {
            counts,
            through,
            answered,
        })
    }

    /// Members per channel of a room, only if every live edge answered: what the expiry
    /// sweep acts on, since a silent edge may hold members. Read in pages when an edge's
    /// reply cannot hold all of its channels.
    pub(crate) async fn complete_counts(
        &self,
        tenant: &TenantId,
        room: &RoomName,
    ) -> Result<Option<BTreeMap<ChannelName, u64>>, BusError> {
        let mut all = BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.counts(tenant, room, after.as_ref(), 0).await?;
            if !page.answered {
                return Ok(None);
            }
            all.extend(page.counts);
            match page.through {
                None => return Ok(Some(all)),
                // Each page ends after the last: the loop ends with the room.
                Some(through) => after = Some(through),
            }
        }
    }

    /// Open connections per tenant (only `tenant`'s when given): the first `max` tenants
    /// by name.
    pub(crate) async fn connections(
        &self,
        tenant: Option<&TenantId>,
        max: usize,
    ) -> Result<Connections, BusError> {
        let query = PresenceQuery {
            tenant: tenant.cloned(),
            without_channels: true,
            max_tenants: bound(max),
            ..PresenceQuery::default()
        };
        Ok(merge_connections(self.ask(query).await?, max))
    }
}

/// A channel's members over every edge.
#[derive(Debug)]
pub(crate) struct MemberList {
    /// The first ones by client id.
    pub(crate) members: Vec<Member>,
    /// Members over every edge, listed or not.
    pub(crate) total: u64,
    /// Every member is in `members`.
    pub(crate) complete: bool,
}

/// Members per channel of (a page of) a room.
#[derive(Debug)]
pub(crate) struct RoomCounts {
    pub(crate) counts: BTreeMap<ChannelName, u64>,
    /// When an edge's reply was cut: the counts are whole up to this name only (those
    /// after it are left out). `None`: whole.
    pub(crate) through: Option<ChannelName>,
    /// Every live edge answered.
    pub(crate) answered: bool,
}

/// Open connections per tenant.
#[derive(Debug)]
pub(crate) struct Connections {
    /// The first tenants by name.
    pub(crate) per_tenant: BTreeMap<TenantId, u64>,
    /// Every tenant with connections is in `per_tenant`.
    pub(crate) complete: bool,
}

/// A bound as a query carries it (0 is "the edge's own").
fn bound(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The smaller of two cut points (`None` is no cut).
fn lower<T: Ord>(a: Option<T>, b: T) -> Option<T> {
    Some(match a {
        Some(a) if a <= b => a,
        _ => b,
    })
}

fn merge_members(replies: Vec<PresenceReply>, max: usize) -> MemberList {
    let mut total = 0;
    // The last id a cut list holds (`Some(None)`: a cut list that holds none).
    let mut through: Option<Option<ClientId>> = None;
    let mut members = Vec::new();
    for channel in replies.into_iter().flat_map(|r| r.channels) {
        total += channel.members;
        if channel.members_cut() {
            let last = channel.member_list.last().map(|m| m.client_id.clone());
            through = lower(through, last);
        }
        members.extend(channel.member_list);
    }
    members.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    if let Some(through) = through {
        members.retain(|m| through.as_ref().is_some_and(|last| m.client_id <= *last));
    }
    members.truncate(max);
    let complete = members.len() as u64 >= total;
    MemberList {
        members,
        total,
        complete,
    }
}

fn merge_counts(replies: Vec<PresenceReply>) -> (BTreeMap<ChannelName, u64>, Option<ChannelName>) {
    let mut through = None;
    let mut counts = BTreeMap::new();
    for reply in replies {
        // A cut reply lists at least one channel: the page moves on.
        if reply.channels_cut
            && let Some(last) = reply.channels.last()
        {
            through = lower(through, last.topic.channel.clone());
        }
        for channel in reply.channels {
            *counts.entry(channel.topic.channel).or_default() += channel.members;
        }
    }
    if let Some(through) = &through {
        counts.retain(|name, _| name <= through);
    }
    (counts, through)
}

fn merge_connections(replies: Vec<PresenceReply>, max: usize) -> Connections {
    // The last tenant a cut list holds (`Some(None)`: one that holds none).
    let mut through: Option<Option<TenantId>> = None;
    let mut per_tenant: BTreeMap<TenantId, u64> = BTreeMap::new();
    for reply in replies {
        if reply.connections_cut {
            let last = reply.connections.last().map(|(t, _)| t.clone());
            through = lower(through, last);
        }
        for (tenant, n) in reply.connections {
            *per_tenant.entry(tenant).or_default() += n;
        }
    }
    let mut complete = true;
    if let Some(through) = through {
        complete = false;
        per_tenant.retain(|t, _| through.as_ref().is_some_and(|last| t <= last));
    }
    if per_tenant.len() > max {
        complete = false;
        per_tenant = per_tenant.into_iter().take(max).collect();
    }
    Connections {
        per_tenant,
        complete,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arqon_proto::model::ChannelPresence;
    use arqon_protocol::EdgeId;

    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn member(edge: &EdgeId) -> Member {
        Member {
            client_id: ClientId::generate_on(edge),
            subject: None,
        }
    }

    fn reply(edge: &EdgeId, channels: Vec<ChannelPresence>, channels_cut: bool) -> PresenceReply {
        PresenceReply {
            edge_id: edge.clone(),
            channels,
            connections: Vec::new(),
            channels_cut,
            connections_cut: false,
        }
    }

    fn crowd(members: &[Member], count: u64) -> ChannelPresence {
        ChannelPresence {
            tenant: tenant("t-a"),
            topic: Topic::parse("lab", "crowd").unwrap(),
            members: count,
            member_list: members.to_vec(),
        }
    }

    /// Two edges: one listed all of its 3, the other its first 2 of 10 (by id). The
    /// merged list keeps only ids up to the cut edge's last, whatever `max` allows: an id
    /// after it could come after the cut edge's unlisted members.
    #[test]
    fn members_are_whole_up_to_the_smallest_cut() {
        let (a, b) = (EdgeId::generate(), EdgeId::generate());
        let mut whole: Vec<Member> = (0..3).map(|_| member(&a)).collect();
        let mut cut: Vec<Member> = (0..10).map(|_| member(&b)).collect();
        whole.sort_by(|x, y| x.client_id.cmp(&y.client_id));
        cut.sort_by(|x, y| x.client_id.cmp(&y.client_id));
        let last = cut[1].client_id.clone();
        let replies = vec![
            reply(&a, vec![crowd(&whole, 3)], false),
            reply(&b, vec![crowd(&cut[..2], 10)], false),
        ];
        let merged = merge_members(replies.clone(), 100);
        assert_eq!(merged.total, 13);
        assert!(!merged.complete);
        let mut expected: Vec<ClientId> = whole
            .iter()
            .chain(&cut[..2])
            .map(|m| m.client_id.clone())
            .filter(|id| *id <= last)
            .collect();
        expected.sort();
        let ids: Vec<ClientId> = merged.members.iter().map(|m| m.client_id.clone()).collect();
        assert_eq!(ids, expected);
        assert_eq!(merge_members(replies, 1).members.len(), 1);

        // Nothing cut: every member, and complete while within `max`.
        let merged = merge_members(vec![reply(&a, vec![crowd(&whole, 3)], false)], 3);
        assert!(merged.complete);
        assert_eq!(merged.members.len(), 3);
        let merged = merge_members(vec![reply(&a, vec![crowd(&whole, 3)], false)], 2);
        assert!(!merged.complete);
        assert_eq!(merged.total, 3);
    }

    /// A page of counts from two edges, one cut after "c": counts after "c" are left out
    /// and the page says where it ends.
    #[test]
    fn counts_are_whole_up_to_the_smallest_cut() {
        let (a, b) = (EdgeId::generate(), EdgeId::generate());
        let channel = |name: &str, members: u64| ChannelPresence {
            tenant: tenant("t-a"),
            topic: Topic::parse("lab", name).unwrap(),
            members,
            member_list: Vec::new(),
        };
        let replies = vec![
            reply(&a, vec![channel("a", 1), channel("d", 4)], false),
            reply(&b, vec![channel("a", 2), channel("c", 3)], true),
        ];
        let (counts, through) = merge_counts(replies);
        assert_eq!(through, Some(ChannelName::parse("c").unwrap()));
        let counts: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(counts, [("a", 3), ("c", 3)]);
    }

    #[test]
    fn connections_are_capped_by_tenant_name() {
        let edge = EdgeId::generate();
        let replies = |cut: bool| {
            vec![
                PresenceReply {
                    connections: vec![(tenant("t-a"), 1), (tenant("t-b"), 2)],
                    connections_cut: cut,
                    ..reply(&edge, Vec::new(), false)
                },
                PresenceReply {
                    connections: vec![(tenant("t-b"), 1), (tenant("t-c"), 5)],
                    ..reply(&edge, Vec::new(), false)
                },
            ]
        };
        let merged = merge_connections(replies(false), 10);
        assert!(merged.complete);
        assert_eq!(merged.per_tenant.len(), 3);
        assert_eq!(merged.per_tenant[&tenant("t-b")], 3);
        let merged = merge_connections(replies(false), 2);
        assert!(!merged.complete);
        assert_eq!(
            merged.per_tenant.keys().collect::<Vec<_>>(),
            [&tenant("t-a"), &tenant("t-b")]
        );
        let merged = merge_connections(replies(true), 10);
        assert!(!merged.complete, "t-c may have more on the cut edge");
        assert_eq!(merged.per_tenant.len(), 2);
    }
}
