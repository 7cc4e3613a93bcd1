//! Presence queries (dispatcher → every edge) and private deliveries (dispatcher → one
//! edge), in domain form.

use bytes::Bytes;
use prost::Message as _;

use arqon_protocol::{ChannelName, ClientId, EdgeId, RoomName, TenantId, Topic};

use super::{ModelError, invalid};
use crate::envelope::v1 as pb;

/// Which memberships an edge reports. `None` filters match anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceQuery {
    pub tenant: Option<TenantId>,
    pub room: Option<RoomName>,
    pub channel: Option<ChannelName>,
    pub with_members: bool,
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

/// One edge's answer to a [`PresenceQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceReply {
    pub edge_id: EdgeId,
    pub channels: Vec<ChannelPresence>,
    /// Open connections per tenant.
    pub connections: Vec<(TenantId, u64)>,
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
        })
    }

    /// Whether a membership of `tenant` in `topic` is asked for.
    pub fn matches(&self, tenant: &TenantId, topic: &Topic) -> bool {
        self.tenant.as_ref().is_none_or(|t| t == tenant)
            && self.room.as_ref().is_none_or(|r| *r == topic.room)
            && self.channel.as_ref().is_none_or(|c| *c == topic.channel)
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
            channel: None,
            with_members: true,
        };
        assert_eq!(PresenceQuery::decode(query.encode()).unwrap(), query);
        assert!(query.matches(&tenant, &topic));
        assert!(!query.matches(&TenantId::parse("t-b").unwrap(), &topic));
        assert!(!query.matches(&tenant, &Topic::parse("other", "general").unwrap()));
        assert!(PresenceQuery::default().matches(&tenant, &topic));

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
        };
        assert_eq!(PresenceReply::decode(reply.encode()).unwrap(), reply);
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
