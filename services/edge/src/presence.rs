//! This edge's answer to a presence query, bounded.
//!
//! A crowded room on one edge (tens of thousands of members) would make a reply larger
//! than the bus's message size, which the bus drops: the asker then waited for its
//! timeout and counted none of this edge's members. So each list is sorted and cut at the
//! count the asker wants, at this edge's own member cap and at its byte budget, whichever
//! binds first, while the counts stay whole: the asker sees what it misses.

use std::cmp::Ordering;

use arqon_proto::model::{ChannelPresence, Member, PresenceQuery, PresenceReply, wire_len};
use arqon_protocol::{ClientId, EdgeId, TenantId, Topic};

use crate::metrics::PresenceCut;
use crate::peer::Peer;

/// What a reply may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    members: usize,
    channels: usize,
    tenants: usize,
    bytes: usize,
}

impl Bounds {
    /// The query's bounds within this edge's own: `own_members` member entries and
    /// `own_bytes` bytes, never more than half of `max_payload` (the bus's message size).
    pub(crate) fn new(
        query: &PresenceQuery,
        own_members: u32,
        own_bytes: u32,
        max_payload: usize,
    ) -> Self {
        let asked = |n: u32| if n == 0 { usize::MAX } else { n as usize };
        Self {
            members: asked(query.max_members).min(own_members as usize),
            channels: asked(query.max_channels),
            tenants: asked(query.max_tenants),
            bytes: (own_bytes as usize).min(max_payload / 2),
        }
    }
}

/// A member as this edge holds it.
pub(crate) trait Listed {
    fn client_id(&self) -> &ClientId;
    fn subject(&self) -> Option<&str>;
}

impl Listed for Peer {
    fn client_id(&self) -> &ClientId {
        Peer::client_id(self)
    }

    fn subject(&self) -> Option<&str> {
        Peer::subject(self)
    }
}

/// One channel matching a query, with its members when they were asked for.
pub(crate) struct Matched<P> {
    pub(crate) tenant: TenantId,
    pub(crate) topic: Topic,
    pub(crate) count: u64,
    /// Empty unless the query asked for members.
    pub(crate) members: Vec<P>,
}

/// The cuts made while building a reply; `Bytes` wins over `Count`.
#[derive(Default)]
struct Cuts(Option<PresenceCut>);

impl Cuts {
    fn note(&mut self, by: PresenceCut) {
        if self.0 != Some(PresenceCut::Bytes) {
            self.0 = Some(by);
        }
    }
}

fn by_id<P: Listed>(a: &P, b: &P) -> Ordering {
    a.client_id().cmp(b.client_id())
}

/// The first members by client id, at most `n`, sorted.
fn first<P: Listed>(mut members: Vec<P>, n: usize) -> Vec<P> {
    if n < members.len() {
        if n == 0 {
            return Vec::new();
        }
        members.select_nth_unstable_by(n - 1, by_id);
        members.truncate(n);
    }
    members.sort_unstable_by(by_id);
    members
}

/// The reply to `query`, within `bounds`, and which bound cut it first (if one did).
/// The connection counts go first (they are small), then the channels in order, each with
/// its first members.
pub(crate) fn reply<P: Listed>(
    edge_id: EdgeId,
    query: &PresenceQuery,
    bounds: Bounds,
    mut channels: Vec<Matched<P>>,
    mut connections: Vec<(TenantId, u64)>,
) -> (PresenceReply, Option<PresenceCut>) {
    let mut cuts = Cuts::default();
    let mut budget = bounds
        .bytes
        .saturating_sub(wire_len::envelope(edge_id.as_str()));

    connections.sort_unstable();
    let mut listed_connections = Vec::with_capacity(connections.len().min(bounds.tenants));
    let mut connections_cut = false;
    for (tenant, n) in connections {
        if listed_connections.len() >= bounds.tenants {
            connections_cut = true;
            cuts.note(PresenceCut::Count);
            break;
        }
        let size = wire_len::connections(&tenant, n);
        if size > budget {
            connections_cut = true;
            cuts.note(PresenceCut::Bytes);
            break;
        }
        budget -= size;
        listed_connections.push((tenant, n));
    }

    channels.sort_unstable_by(|a, b| (&a.tenant, &a.topic).cmp(&(&b.tenant, &b.topic)));
    let matched = channels.len();
    let mut members_left = bounds.members;
    let mut listed = Vec::with_capacity(matched.min(bounds.channels));
    let mut channels_cut = false;
    for channel in channels {
        if listed.len() >= bounds.channels {
            channels_cut = true;
            cuts.note(PresenceCut::Count);
            break;
        }
        let mut entry = ChannelPresence {
            tenant: channel.tenant,
            topic: channel.topic,
            members: channel.count,
            member_list: Vec::new(),
        };
        let size = wire_len::channel(&entry);
        // Always one channel, so a page of a room's channels moves on.
        if size > budget && !listed.is_empty() {
            channels_cut = true;
            cuts.note(PresenceCut::Bytes);
            break;
        }
        budget = budget.saturating_sub(size);
        let mut exhausted = false;
        if query.with_members {
            let held = channel.members.len();
            let taken = first(channel.members, members_left);
            if taken.len() < held {
                cuts.note(PresenceCut::Count);
            }
            for peer in taken {
                let member = Member {
                    client_id: peer.client_id().clone(),
                    subject: peer.subject().map(str::to_owned),
                };
                let size = wire_len::member(&member);
                if size > budget {
                    cuts.note(PresenceCut::Bytes);
                    exhausted = true;
                    break;
                }
                budget -= size;
                members_left -= 1;
                entry.member_list.push(member);
            }
        }
        listed.push(entry);
        if exhausted {
            channels_cut = listed.len() < matched;
            break;
        }
    }
    let reply = PresenceReply {
        edge_id,
        channels: listed,
        connections: listed_connections,
        channels_cut,
        connections_cut,
    };
    (reply, cuts.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, Clone)]
    struct Held(Member);

    impl Listed for Held {
        fn client_id(&self) -> &ClientId {
            &self.0.client_id
        }

        fn subject(&self) -> Option<&str> {
            self.0.subject.as_deref()
        }
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn held(edge: &EdgeId, n: usize, subject: &str) -> Vec<Held> {
        (0..n)
            .map(|_| {
                Held(Member {
                    client_id: ClientId::generate_on(edge),
                    subject: Some(subject.to_owned()),
                })
            })
            .collect()
    }

    fn channel(name: &str, members: Vec<Held>) -> Matched<Held> {
        Matched {
            tenant: tenant("t-a"),
            topic: Topic::parse("lab", name).unwrap(),
            count: members.len() as u64,
            members,
        }
    }

    fn members_query(max_members: u32) -> PresenceQuery {
        PresenceQuery {
            with_members: true,
            max_members,
            ..PresenceQuery::default()
        }
    }

    fn sorted_ids(members: &[Held]) -> Vec<ClientId> {
        let mut ids: Vec<ClientId> = members.iter().map(|m| m.0.client_id.clone()).collect();
        ids.sort();
        ids
    }

    fn listed_ids(reply: &PresenceReply) -> Vec<ClientId> {
        reply.channels[0]
            .member_list
            .iter()
            .map(|m| m.client_id.clone())
            .collect()
    }

    /// Members with 10 KiB subjects: a 64 KiB budget holds six of the 1000 asked for,
    /// the first by id; the count stays whole, the reply fits the budget, and the cut is
    /// counted as a byte cut.
    #[test]
    fn the_byte_budget_binds_before_the_count() {
        let edge = EdgeId::generate();
        let crowd = held(&edge, 200, &"s".repeat(10 * 1024));
        let expected = sorted_ids(&crowd);
        let query = members_query(1000);
        let bounds = Bounds::new(&query, 10_000, 64 * 1024, 1024 * 1024);
        let (reply, cut) = reply(
            edge.clone(),
            &query,
            bounds,
            vec![channel("crowd", crowd)],
            vec![(tenant("t-a"), 200)],
        );
        assert_eq!(cut, Some(PresenceCut::Bytes));
        let listed = listed_ids(&reply);
        assert_eq!(listed.len(), 6, "64 KiB holds six 10 KiB members");
        assert_eq!(listed, expected[..6]);
        assert_eq!(reply.channels[0].members, 200);
        assert!(reply.channels[0].members_cut());
        assert!(!reply.channels_cut, "the one channel is listed");
        assert_eq!(reply.connections, vec![(tenant("t-a"), 200)]);
        let size = reply.encode().len();
        assert!(size <= 64 * 1024, "{size} bytes");
    }

    /// Half the bus's message size bounds the budget, whatever the setting says.
    #[test]
    fn the_budget_stays_under_half_the_bus_message_size() {
        let edge = EdgeId::generate();
        let crowd = held(&edge, 100, &"s".repeat(4 * 1024));
        let query = members_query(0);
        let bounds = Bounds::new(&query, 10_000, 8 * 1024 * 1024, 128 * 1024);
        let (reply, cut) = reply(edge, &query, bounds, vec![channel("crowd", crowd)], vec![]);
        assert_eq!(cut, Some(PresenceCut::Bytes));
        assert!(reply.encode().len() <= 64 * 1024);
        assert_eq!(reply.channels[0].member_list.len(), 15);
    }

    /// The asked count binds: the first by id; 0 asks for the edge's own cap, and more
    /// than the edge's cap gets the edge's cap.
    #[test]
    fn the_count_is_the_smaller_of_the_ask_and_the_own_cap() {
        let edge = EdgeId::generate();
        let crowd = held(&edge, 50, "alice");
        let expected = sorted_ids(&crowd);
        for (asked, own, listed) in [(5, 10_000, 5), (0, 20, 20), (40, 20, 20), (80, 10_000, 50)] {
            let query = members_query(asked);
            let bounds = Bounds::new(&query, own, 256 * 1024, 1024 * 1024);
            let (reply, cut) = reply(
                edge.clone(),
                &query,
                bounds,
                vec![channel("crowd", crowd.clone())],
                vec![],
            );
            assert_eq!(
                listed_ids(&reply),
                expected[..listed],
                "asked {asked}, own {own}"
            );
            assert_eq!(reply.channels[0].members, 50);
            let want = (listed < 50).then_some(PresenceCut::Count);
            assert_eq!(cut, want, "asked {asked}, own {own}");
        }
    }

    /// Channels come sorted and are cut at the asked number, after `channels_after`.
    #[test]
    fn channels_are_the_first_by_name() {
        let edge = EdgeId::generate();
        let names = ["d", "a", "c", "b", "e"];
        let channels: Vec<Matched<Held>> = names.iter().map(|n| channel(n, vec![])).collect();
        let query = PresenceQuery {
            max_channels: 3,
            ..PresenceQuery::default()
        };
        let bounds = Bounds::new(&query, 10_000, 256 * 1024, 1024 * 1024);
        let (reply, cut) = reply(edge, &query, bounds, channels, vec![]);
        let listed: Vec<&str> = reply
            .channels
            .iter()
            .map(|c| c.topic.channel.as_str())
            .collect();
        assert_eq!(listed, ["a", "b", "c"]);
        assert!(reply.channels_cut);
        assert_eq!(cut, Some(PresenceCut::Count));
    }

    /// Connection counts per tenant are sorted and cut at the asked number of tenants.
    #[test]
    fn connections_are_the_first_by_tenant() {
        let edge = EdgeId::generate();
        let query = PresenceQuery {
            without_channels: true,
            max_tenants: 2,
            ..PresenceQuery::default()
        };
        let bounds = Bounds::new(&query, 10_000, 256 * 1024, 1024 * 1024);
        let connections = vec![(tenant("t-c"), 3), (tenant("t-a"), 1), (tenant("t-b"), 2)];
        let (reply, cut) = reply::<Held>(edge, &query, bounds, vec![], connections);
        assert_eq!(
            reply.connections,
            vec![(tenant("t-a"), 1), (tenant("t-b"), 2)]
        );
        assert!(reply.connections_cut);
        assert_eq!(cut, Some(PresenceCut::Count));
    }

    /// Nothing to cut: nothing counted.
    #[test]
    fn a_small_reply_is_whole() {
        let edge = EdgeId::generate();
        let crowd = held(&edge, 3, "bob");
        let query = members_query(0);
        let bounds = Bounds::new(&query, 10_000, 256 * 1024, 1024 * 1024);
        let (reply, cut) = reply(
            edge,
            &query,
            bounds,
            vec![channel("crowd", crowd)],
            vec![(tenant("t-a"), 3)],
        );
        assert_eq!(cut, None);
        assert!(!reply.channels[0].members_cut());
        assert!(!reply.channels_cut && !reply.connections_cut);
    }
}
