//! Presence queries (dispatcher → every edge) and private deliveries (dispatcher → one
//! edge), in domain form.

use bytes::Bytes;
use prost::Message as _;

use arqon_protocol::{ChannelName, ClientId, EdgeId, RoomName, TenantId, Topic};

use super::{ModelError, invalid};
use crate::envelope::v1 as pb;

/// Which memberships an edge reports. `None` filters match anything; a bound of 0 means
/// the edge's own (an edge never lists more than its own caps, whatever is asked).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceQuery {
    pub tenant: Option<TenantId>,
    pub room: Option<RoomName>,
    pub channel: Option<ChannelName>,
    pub with_members: bool,
    /// Member entries wanted at most, over the whole reply.
    pub max_members: u32,
    /// Channel entries wanted at most.
    pub max_channels: u32,
    /// Only channels named after this one: a page of a room's channels.
    pub channels_after: Option<ChannelName>,
    /// Only the connections per tenant, no channels.
    pub without_channels: bool,
    /// Tenants in the connection counts wanted at most.
    pub max_tenants: u32,
}

/// One member of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub client_id: ClientId,
    pub subject: Option<String>,
}

/// The members one edge has in one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPresence {
    pub tenant: TenantId,
    pub topic: Topic,
    pub members: u64,
    /// Filled when the query asked for members.
    pub member_list: Vec<Member>,
}

impl ChannelPresence {
    /// Whether `member_list` leaves members out (when members were asked for).
    pub fn members_cut(&self) -> bool {
        (self.member_list.len() as u64) < self.members
    }
}

/// One edge's answer to a [`PresenceQuery`]. Its lists are sorted (channels by tenant
/// and topic, members by client id, connections by tenant) and a cut list holds the
/// first entries in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceReply {
    pub edge_id: EdgeId,
    pub channels: Vec<ChannelPresence>,
    /// Open connections per tenant.
    pub connections: Vec<(TenantId, u64)>,
    /// More channels matched than `channels` lists.
    pub channels_cut: bool,
    /// More tenants have connections than `connections` lists.
    pub connections_cut: bool,
}

/// Encoded sizes of the parts of a [`PresenceReply`], so an edge can keep its reply
/// under a byte budget while building it.
pub mod wire_len {
    use prost::encoding::encoded_len_varint;

    use super::{ChannelPresence, Member, TenantId};

    /// A length-delimited field (string or message) of `len` bytes, with its key (every
    /// field number here is below 16: a one-byte key).
    fn delimited(len: usize) -> usize {
        1 + encoded_len_varint(len as u64) + len
    }

    fn text(s: &str) -> usize {
        if s.is_empty() { 0 } else { delimited(s.len()) }
    }

    fn number(n: u64) -> usize {
        if n == 0 { 0 } else { 1 + encoded_len_varint(n) }
    }

    /// One entry of `member_list`, as it adds to its channel.
    pub fn member(member: &Member) -> usize {
        delimited(text(member.client_id.as_str()) + member.subject.as_deref().map_or(0, text))
    }

    /// One entry of `channels` without its members (the members count included), and
    /// the most its `member_list` entries can add around themselves.
    pub fn channel(channel: &ChannelPresence) -> usize {
        // The entry's own length prefix grows with its members: count the longest.
        1 + 5
            + text(channel.tenant.as_str())
            + text(channel.topic.room.as_str())
            + text(channel.topic.channel.as_str())
            + number(channel.members)
    }

    /// One entry of `connections`.
    pub fn connections(tenant: &TenantId, n: u64) -> usize {
        delimited(text(tenant.as_str()) + number(n))
    }

    /// The reply's own fields: the edge id and the two flags.
    pub fn envelope(edge_id: &str) -> usize {
        text(edge_id) + 2 * 2
    }
}

/// A private message for one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectDelivery {
    /// The sender's tenant; the target must belong to it.
    pub tenant: TenantId,
    pub client_id: ClientId,
    pub frame: Bytes,
}

/// Whether the edge wrote a [`DirectDelivery`] to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectAck {
    pub delivered: bool,
}

fn optional<T>(
    text: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    field: &'static str,
) -> Result<Option<T>, ModelError> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse(text).map(Some).ok_or_else(|| invalid(field, text))
    }
}

fn tenant(text: &str) -> Result<TenantId, ModelError> {
    TenantId::parse(text).map_err(|e| invalid("tenant", e))
}

fn client(text: &str) -> Result<ClientId, ModelError> {
    ClientId::parse(text).ok_or_else(|| invalid("client_id", text))
}

impl PresenceQuery {
    pub fn encode(&self) -> Bytes {
        let message = pb::PresenceQuery {
            tenant: self
                .tenant
                .as_ref()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            room: self
                .room
                .as_ref()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            channel: self
                .channel
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            with_members: self.with_members,
            max_members: self.max_members,
            max_channels: self.max_channels,
            channels_after: self
                .channels_after
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            without_channels: self.without_channels,
            max_tenants: self.max_tenants,
        };
        Bytes::from(message.encode_to_vec())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ModelError> {
        let message = pb::PresenceQuery::decode(bytes)?;
        Ok(Self {
            tenant: optional(&message.tenant, |t| TenantId::parse(t).ok(), "tenant")?,
            room: optional(&message.room, |r| RoomName::parse(r).ok(), "room")?,
            channel: optional(&message.channel, |c| ChannelName::parse(c).ok(), "channel")?,
            with_members: message.with_members,
            max_members: message.max_members,
            max_channels: message.max_channels,
            channels_after: optional(
                &message.channels_after,
                |c| ChannelName::parse(c).ok(),
                "channels_after",
            )?,
            without_channels: message.without_channels,
            max_tenants: message.max_tenants,
        })
    }

    /// Whether a membership of `tenant` in `topic` is asked for.
    pub fn matches(&self, tenant: &TenantId, topic: &Topic) -> bool {
        !self.without_channels
            && self.tenant.as_ref().is_none_or(|t| t == tenant)
            && self.room.as_ref().is_none_or(|r| *r == topic.room)
            && self.channel.as_ref().is_none_or(|c| *c == topic.channel)
            && self
                .channels_after
                .as_ref()
                .is_none_or(|after| topic.channel > *after)
    }
}

impl PresenceReply {
    pub fn encode(&self) -> Bytes {
        let message = pb::PresenceReply {
            edge_id: self.edge_id.as_str().to_owned(),
            channels: self
                .channels
                .iter()
                .map(|c| pb::ChannelPresence {
                    tenant: c.tenant.as_str().to_owned(),
                    room: c.topic.room.as_str().to_owned(),
                    channel: c.topic.channel.as_str().to_owned(),
                    members: c.members,
                    member_list: c
                        .member_list
                        .iter()
                        .map(|m| pb::Member {
                            client_id: m.client_id.as_str().to_owned(),
                            subject: m.subject.clone().unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
            connections: self
                .connections
                .iter()
                .map(|(tenant, n)| pb::TenantConnections {
                    tenant: tenant.as_str().to_owned(),
                    connections: *n,
                })
                .collect(),
            channels_cut: self.channels_cut,
            connections_cut: self.connections_cut,
        };
        Bytes::from(message.encode_to_vec())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ModelError> {
        let message = pb::PresenceReply::decode(bytes)?;
        let channels = message
            .channels
            .into_iter()
            .map(|c| {
                Ok(ChannelPresence {
                    tenant: tenant(&c.tenant)?,
                    topic: Topic::parse(&c.room, &c.channel)
                        .map_err(|e| invalid("topic", format!("{e:?}")))?,
                    members: c.members,
                    member_list: c
                        .member_list
                        .into_iter()
                        .map(|m| {
                            Ok(Member {
                                client_id: client(&m.client_id)?,
                                subject: Some(m.subject).filter(|s| !s.is_empty()),
                            })
                        })
                        .collect::<Result<_, ModelError>>()?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let connections = message
            .connections
            .into_iter()
            .map(|c| Ok((tenant(&c.tenant)?, c.connections)))
            .collect::<Result<_, ModelError>>()?;
        Ok(Self {
            edge_id: EdgeId::parse(&message.edge_id)
                .ok_or_else(|| invalid("edge_id", &message.edge_id))?,
            channels,
            connections,
            channels_cut: message.channels_cut,
            connections_cut: message.connections_cut,
        })
    }
}

impl DirectDelivery {
    pub fn encode(&self) -> Bytes {
        let message = pb::DirectDelivery {
            tenant: self.tenant.as_str().to_owned(),
            client_id: self.client_id.as_str().to_owned(),
            frame: self.frame.clone(),
        };
        Bytes::from(message.encode_to_vec())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ModelError> {
        let message = pb::DirectDelivery::decode(bytes)?;
        Ok(Self {
            tenant: tenant(&message.tenant)?,
            client_id: client(&message.client_id)?,
            frame: message.frame,
        })
    }
}

impl DirectAck {
    pub fn encode(&self) -> Bytes {
        Bytes::from(
            pb::DirectAck {
                delivered: self.delivered,
            }
            .encode_to_vec(),
        )
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ModelError> {
        Ok(Self {
            delivered: pb::DirectAck::decode(bytes)?.delivered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_round_trips_and_filters() {
        let tenant = TenantId::parse("t-a").unwrap();
        let topic = Topic::parse("science", "general").unwrap();
        let query = PresenceQuery {
            tenant: Some(tenant.clone()),
            room: Some(topic.room.clone()),
            with_members: true,
            max_members: 7,
            max_channels: 3,
            channels_after: Some(ChannelName::parse("alpha").unwrap()),
            max_tenants: 2,
            ..PresenceQuery::default()
        };
        assert_eq!(PresenceQuery::decode(query.encode()).unwrap(), query);
        assert!(query.matches(&tenant, &topic));
        assert!(!query.matches(&TenantId::parse("t-b").unwrap(), &topic));
        assert!(!query.matches(&tenant, &Topic::parse("other", "general").unwrap()));
        assert!(!query.matches(&tenant, &Topic::parse("science", "alpha").unwrap()));
        assert!(PresenceQuery::default().matches(&tenant, &topic));
        let connections_only = PresenceQuery {
            without_channels: true,
            ..PresenceQuery::default()
        };
        assert!(!connections_only.matches(&tenant, &topic));
        assert_eq!(
            PresenceQuery::decode(connections_only.encode()).unwrap(),
            connections_only
        );

        let edge = EdgeId::generate();
        let reply = PresenceReply {
            edge_id: edge.clone(),
            channels: vec![ChannelPresence {
                tenant: tenant.clone(),
                topic,
                members: 2,
                member_list: vec![
                    Member {
                        client_id: ClientId::generate_on(&edge),
                        subject: Some("alice".into()),
                    },
                    Member {
                        client_id: ClientId::generate_on(&edge),
                        subject: None,
                    },
                ],
            }],
            connections: vec![(tenant, 5)],
            channels_cut: true,
            connections_cut: false,
        };
        assert_eq!(PresenceReply::decode(reply.encode()).unwrap(), reply);
    }

    /// The sizes an edge budgets with are never below what is encoded.
    #[test]
    fn wire_lengths_bound_the_encoding() {
        let edge = EdgeId::generate();
        let tenant = TenantId::parse(&"t".repeat(TenantId::MAX_LEN)).unwrap();
        let member = |subject: Option<String>| Member {
            client_id: ClientId::generate_on(&edge),
            subject,
        };
        let channel = ChannelPresence {
            tenant: tenant.clone(),
            topic: Topic::parse(&"r".repeat(128), &"c".repeat(128)).unwrap(),
            members: 300_000,
            member_list: vec![
                member(None),
                member(Some("s".repeat(200))),
                member(Some("long".repeat(50_000))),
            ],
        };
        let reply = PresenceReply {
            edge_id: edge.clone(),
            channels: vec![channel.clone(), channel.clone()],
            connections: vec![(tenant.clone(), 1), (tenant.clone(), 300_000)],
            channels_cut: true,
            connections_cut: true,
        };
        let estimate = wire_len::envelope(edge.as_str())
            + reply
                .channels
                .iter()
                .map(|c| {
                    wire_len::channel(c) + c.member_list.iter().map(wire_len::member).sum::<usize>()
                })
                .sum::<usize>()
            + reply
                .connections
                .iter()
                .map(|(t, n)| wire_len::connections(t, *n))
                .sum::<usize>();
        let encoded = reply.encode().len();
        assert!(estimate >= encoded, "{estimate} < {encoded}");
        assert!(
            estimate <= encoded + 32,
            "{estimate} is far above {encoded}"
        );
    }

    #[test]
    fn direct_deliveries_round_trip() {
        let delivery = DirectDelivery {
            tenant: TenantId::parse("t-a").unwrap(),
            client_id: ClientId::generate_on(&EdgeId::generate()),
            frame: Bytes::from_static(b"{}"),
        };
        assert_eq!(DirectDelivery::decode(delivery.encode()).unwrap(), delivery);
        for delivered in [true, false] {
            assert_eq!(
                DirectAck::decode(DirectAck { delivered }.encode())
                    .unwrap()
                    .delivered,
                delivered
            );
        }
    }
}
