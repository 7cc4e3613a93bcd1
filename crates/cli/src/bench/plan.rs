//! Who joins which rooms and who publishes where: a pure function of the arguments.

use clap::ValueEnum;

/// How connections are grouped into rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Pattern {
    /// Every connection in one room: fan-out.
    OneRoom,
    /// Rooms of `--room-size` connections, the first of each publishing.
    Rooms,
    /// Rooms of two, both publishing to the other.
    Pairs,
}

/// The channel that carries the benchmark's traffic in every room.
pub(crate) const TRAFFIC_CHANNEL: &str = "c0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Per connection: the room it joins (on the traffic channel and the extra ones).
    pub(crate) room_of: Vec<String>,
    /// Whether connections join at all (`--channels 0` measures bare connections).
    pub(crate) joins: bool,
    /// Extra channels every connection also joins (idle memberships).
    pub(crate) extra_channels: Vec<String>,
    /// Connections that publish, when publishing over WebSocket.
    pub(crate) publishers: Vec<usize>,
    /// Rooms the publishers target when publishing over NATS (one task each).
    pub(crate) nats_targets: Vec<String>,
    /// Members per room.
    room_size: Vec<(String, usize)>,
}

impl Plan {
    pub(crate) fn new(
        pattern: Pattern,
        connections: usize,
        room_size: usize,
        publishers: usize,
        channels: usize,
    ) -> Self {
        let room_size = room_size.max(1);
        let publisher_count = publishers.min(connections).max(1);
        let room_of: Vec<String> = (0..connections)
            .map(|i| match pattern {
                Pattern::OneRoom => "bench".to_owned(),
                Pattern::Rooms => format!("room-{}", i / room_size),
                Pattern::Pairs => format!("pair-{}", i / 2),
            })
            .collect();
        let publishers: Vec<usize> = match pattern {
            Pattern::OneRoom => (0..publishers.min(connections)).collect(),
            Pattern::Rooms => (0..connections).step_by(room_size).collect(),
            Pattern::Pairs => (0..connections).collect(),
        };
        let mut sizes: Vec<(String, usize)> = Vec::new();
        for room in &room_of {
            match sizes.last_mut() {
                Some((last, n)) if last == room => *n += 1,
                _ => sizes.push((room.clone(), 1)),
            }
        }
        let nats_targets = match pattern {
            Pattern::OneRoom => vec!["bench".to_owned(); publisher_count],
            _ => sizes.iter().map(|(room, _)| room.clone()).collect(),
        };
        Self {
            room_of,
            joins: channels > 0,
            extra_channels: (1..channels.max(1)).map(|n| format!("c{n}")).collect(),
            publishers,
            nats_targets,
            room_size: sizes,
        }
    }

    /// How many connections receive one message published to `room`: every member but
    /// the sender when it is a member.
    pub(crate) fn recipients(&self, room: &str, sender_is_member: bool) -> u64 {
        let members = self
            .room_size
            .iter()
            .find(|(r, _)| r == room)
            .map_or(0, |(_, n)| *n as u64);
        members.saturating_sub(u64::from(sender_is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_room_fans_out_to_everyone_but_the_sender() {
        let plan = Plan::new(Pattern::OneRoom, 1000, 10, 1, 2);
        assert_eq!(plan.publishers, vec![0]);
        assert_eq!(plan.recipients("bench", true), 999);
        assert_eq!(plan.recipients("bench", false), 1000);
        assert_eq!(plan.extra_channels, vec!["c1"]);
    }

    #[test]
    fn rooms_and_pairs() {
        let rooms = Plan::new(Pattern::Rooms, 25, 10, 1, 1);
        assert_eq!(rooms.publishers, vec![0, 10, 20]);
        assert_eq!(rooms.recipients("room-2", true), 4);
        assert_eq!(rooms.nats_targets.len(), 3);
        let pairs = Plan::new(Pattern::Pairs, 6, 10, 1, 1);
        assert_eq!(pairs.publishers.len(), 6);
        assert_eq!(pairs.room_of[5], "pair-2");
        assert_eq!(pairs.recipients("pair-2", true), 1);
        assert!(pairs.extra_channels.is_empty());
    }
}
