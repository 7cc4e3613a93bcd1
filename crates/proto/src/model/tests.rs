use proptest::prelude::*;
use prost::Message as _;
use serde_json::json;

use super::*;

fn identity() -> Identity {
    Identity {
        tenant: TenantId::parse("t-a").unwrap(),
        client_id: ClientId::generate_on(&EdgeId::generate()),
        subject: Some("alice".into()),
        role: Role::user(),
        edge_id: EdgeId::generate(),
        permissions: None,
        system: false,
    }
}

#[test]
fn inbound_round_trips() {
    let envelope = Envelope::from_client_json(
        &json!({
            "type": "message", "room": "science", "channel": "general",
            "timestamp": "2026-02-18T12:00:00.5+02:00",
            "payload": {"content": "HELLO", "n": [1, 2.5, null]},
            "metadata": {"k": "v"}
        })
        .to_string(),
    )
    .unwrap();
    let inbound = Inbound {
        identity: identity(),
        envelope,
        received_at_unix_micros: 1_700_000_000_000_000,
        sequence: 7,
        edge_publishes: true,
        payload_rewritten: false,
    };
    let back = Inbound::decode(inbound.encode()).unwrap();
    assert_eq!(back, inbound);
    assert_eq!(back.envelope.to_json(), inbound.envelope.to_json());
}

#[test]
fn the_system_authority_survives_the_round_trip() {
    for system in [false, true] {
        let inbound = Inbound {
            identity: Identity {
                system,
                ..identity()
            },
            envelope: Envelope::new(MessageType::Telemetry),
            received_at_unix_micros: 0,
            sequence: 1,
            edge_publishes: system,
            payload_rewritten: false,
        };
        assert_eq!(
            Inbound::decode(inbound.encode()).unwrap().edge_publishes,
            system
        );
        assert_eq!(
            Inbound::decode(inbound.encode()).unwrap().identity.system,
            system
        );
    }
}

#[test]
fn permissions_survive_the_round_trip_including_an_empty_list() {
    for permissions in [None, Some(vec![]), Some(vec!["channel_view".to_owned()])] {
        let mut id = identity();
        id.permissions = permissions.clone();
        let inbound = Inbound {
            identity: id,
            envelope: Envelope::new(MessageType::Telemetry),
            received_at_unix_micros: 0,
            sequence: 1,
            edge_publishes: true,
            payload_rewritten: false,
        };
        assert_eq!(
            Inbound::decode(inbound.encode())
                .unwrap()
                .identity
                .permissions,
            permissions
        );
    }
}

#[test]
fn an_identity_without_subject_keeps_none() {
    let mut id = identity();
    id.subject = None;
    let inbound = Inbound {
        identity: id,
        envelope: Envelope::new(MessageType::Telemetry),
        received_at_unix_micros: 0,
        sequence: 1,
        edge_publishes: true,
        payload_rewritten: false,
    };
    assert_eq!(
        Inbound::decode(inbound.encode()).unwrap().identity.subject,
        None
    );
}

#[test]
fn garbage_and_incomplete_messages_are_refused() {
    assert!(matches!(
        Inbound::decode(Bytes::from_static(b"\xff\xff\xff")),
        Err(ModelError::Decode(_))
    ));
    assert!(matches!(
        Inbound::decode(Bytes::new()),
        Err(ModelError::Missing("identity"))
    ));
    let mut message = pb::Inbound {
        identity: Some(identity_to_pb(&identity())),
        envelope: Some(envelope_to_pb(&Envelope::new(MessageType::Message))),
        received_at_unix_micros: 0,
        sequence: 1,
        edge_publishes: true,
        payload_rewritten: false,
    };
    message.identity.as_mut().unwrap().tenant = "a.b".into();
    assert!(matches!(
        Inbound::try_from(message.clone()),
        Err(ModelError::Invalid {
            field: "tenant",
            ..
        })
    ));
    message.identity = Some(identity_to_pb(&identity()));
    message.envelope.as_mut().unwrap().payload = Bytes::from_static(b"[1]");
    assert!(matches!(
        Inbound::try_from(message),
        Err(ModelError::Invalid {
            field: "payload",
            ..
        })
    ));
}

#[test]
fn deliveries_round_trip() {
    let room = RoomDelivery {
        frame: Bytes::from_static(b"{\"type\":\"message\"}"),
        exclude: Some(ClientId::generate_on(&EdgeId::generate())),
        close_room: false,
        received_at_unix_micros: None,
        head: None,
    };
    assert_eq!(RoomDelivery::decode(room.encode()).unwrap(), room);
    let server = RoomDelivery {
        frame: Bytes::from_static(b"{}"),
        exclude: None,
        close_room: true,
        received_at_unix_micros: None,
        head: None,
    };
    assert_eq!(RoomDelivery::decode(server.encode()).unwrap(), server);

    let topic = Topic::parse("science", "general").unwrap();
    for (membership, completes) in [
        (None, None),
        (
            Some(MembershipChange::Join {
                topic: topic.clone(),
                recover: None,
                recovery_slot: None,
            }),
            Some(3),
        ),
        (
            Some(MembershipChange::Join {
                topic: topic.clone(),
                recover: Some(Recovery::AfterId("arq_1_2_abcdef".into())),
                recovery_slot: Some(180),
            }),
            Some(4),
        ),
        (
            Some(MembershipChange::Join {
                topic: topic.clone(),
                recover: Some(Recovery::AfterOffset {
                    epoch: "e1".into(),
                    offset: 42,
                }),
                recovery_slot: None,
            }),
            None,
        ),
        (Some(MembershipChange::Leave(topic)), Some(u64::MAX)),
    ] {
        let edge = EdgeDelivery {
            client_id: ClientId::generate_on(&EdgeId::generate()),
            membership,
            frames: vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{}")],
            completes,
            publish: completes.map(|_| publication()),
        };
        assert_eq!(EdgeDelivery::decode(edge.encode()).unwrap(), edge);
    }
}

/// A room delivery with the trace context, and its copy for the webhook queue.
fn publication() -> Publication {
    let mut traced = Headers::new();
    traced
        .insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
    Publication {
        subject: "arqon.room.acme.science.general".into(),
        payload: Bytes::from_static(b"delivery"),
        stored: true,
        headers: traced,
        copies: vec!["arqon.webhooks.acme".into()],
    }
}

fn routed(sender: &ClientId) -> Envelope {
    let mut envelope = Envelope::from_client_json(
        &json!({
            "type": "message", "room": "science", "channel": "general",
            "payload": {"content": "HELLO"}
        })
        .to_string(),
    )
    .unwrap();
    envelope.sender = Some(sender.to_string());
    envelope
}

#[test]
fn a_room_delivery_carries_its_frames_head() {
    let sender = ClientId::generate_on(&EdgeId::generate());
    let edge_id = EdgeId::generate();
    let inbound = Inbound {
        identity: Identity {
            client_id: sender.clone(),
            edge_id,
            ..identity()
        },
        envelope: routed(&sender),
        received_at_unix_micros: 5,
        sequence: 9,
        edge_publishes: true,
        payload_rewritten: false,
    };
    let delivery = RoomDelivery::routed(&inbound);
    assert_eq!(delivery.frame, inbound.envelope.to_json());
    assert_eq!(delivery.exclude.as_ref(), Some(&sender));
    assert_eq!(delivery.received_at_unix_micros, Some(5));
    let back = RoomDelivery::decode(delivery.encode()).unwrap();
    assert_eq!(back, delivery);
    let head = back.frame_head().unwrap();
    assert_eq!(head, back.head.as_ref().unwrap().decode().unwrap());
    assert_eq!(
        back.message_id().as_deref(),
        Some(inbound.envelope.id.as_str())
    );
    assert_eq!(
        head,
        FrameHead {
            id: inbound.envelope.id.as_str().to_owned(),
            kind: MessageType::Message,
            room: Some("science".into()),
            channel: Some("general".into()),
            sender: Some(sender.to_string()),
            sequence: Some(9),
        }
    );
    // A server's envelope here names no room, and has no sequence.
    let mut notice = Envelope::new(MessageType::Telemetry);
    notice.sender = Some("arqonbus".into());
    let head = RoomDelivery::of(&notice).frame_head().unwrap();
    assert_eq!((head.room, head.channel, head.sequence), (None, None, None));
    assert_eq!(head.kind, MessageType::Telemetry);
}

/// `RoomDelivery` as versions before the frame's head wrote and read it.
#[derive(Clone, PartialEq, prost::Message)]
struct HeadlessRoomDelivery {
    #[prost(bytes = "bytes", tag = "1")]
    frame: Bytes,
    #[prost(string, tag = "2")]
    exclude_client_id: String,
    #[prost(bool, tag = "3")]
    close_room: bool,
    #[prost(int64, tag = "4")]
    received_at_unix_micros: i64,
}

#[test]
fn deliveries_without_a_head_still_read_and_old_readers_ignore_it() {
    let sender = ClientId::generate_on(&EdgeId::generate());
    let envelope = routed(&sender);
    // Stored by an older version: its readers fall back to the frame.
    let old = HeadlessRoomDelivery {
        frame: Bytes::from(envelope.to_json()),
        exclude_client_id: sender.to_string(),
        close_room: false,
        received_at_unix_micros: 5,
    };
    let read = RoomDelivery::decode(Bytes::from(old.encode_to_vec())).unwrap();
    assert_eq!(read.head, None);
    assert_eq!(read.exclude.as_ref(), Some(&sender));
    assert_eq!(read.frame_head(), Some(FrameHead::of(&envelope)));
    assert_eq!(read.message_id().as_deref(), Some(envelope.id.as_str()));
    for frame in [&b"{}"[..], b"\xff", b"[1]"] {
        let delivery = RoomDelivery {
            frame: Bytes::copy_from_slice(frame),
            ..read.clone()
        };
        assert_eq!(delivery.frame_head(), None);
        assert_eq!(delivery.message_id(), None);
    }
    // Written now, read by an older version: the head is skipped.
    let new = RoomDelivery {
        exclude: Some(sender.clone()),
        received_at_unix_micros: Some(5),
        ..RoomDelivery::of(&envelope)
    };
    let read_by_old = HeadlessRoomDelivery::decode(new.encode()).unwrap();
    assert_eq!(read_by_old, old);
}

#[test]
fn room_deliveries_are_the_generated_messages_on_the_wire() {
    let sender = ClientId::generate_on(&EdgeId::generate());
    let envelope = routed(&sender);
    let delivery = RoomDelivery {
        exclude: Some(sender.clone()),
        received_at_unix_micros: Some(5),
        head: Some(FrameHead::of(&envelope).with_sequence(3).encode()),
        ..RoomDelivery::of(&envelope)
    };
    let generated = pb::RoomDelivery::decode(delivery.encode()).unwrap();
    let head = generated.head.clone().unwrap();
    assert_eq!(
        (head.id.as_str(), head.sequence, head.sender.as_deref()),
        (envelope.id.as_str(), 3, Some(sender.as_str()))
    );
    assert_eq!(generated.frame, delivery.frame);
    assert_eq!(
        RoomDelivery::decode(Bytes::from(generated.encode_to_vec())).unwrap(),
        delivery
    );
    // A head that does not decode reads as absent: the frame says instead.
    let broken = RoomDelivery {
        head: Some(pb_head_bytes(b"\xff")),
        ..delivery.clone()
    };
    assert_eq!(broken.frame_head(), Some(FrameHead::of(&envelope)));
    assert_eq!(broken.message_id().as_deref(), Some(envelope.id.as_str()));
}

/// An `EncodedHead` of any bytes, as a misbehaving writer could send.
fn pb_head_bytes(bytes: &'static [u8]) -> EncodedHead {
    let wire = pb::RoomDelivery {
        head: None,
        ..Default::default()
    };
    let mut encoded = wire.encode_to_vec();
    // Field 5, length-delimited.
    encoded.push(5 << 3 | 2);
    encoded.push(bytes.len() as u8);
    encoded.extend_from_slice(bytes);
    RoomDelivery::decode(Bytes::from(encoded))
        .unwrap()
        .head
        .unwrap()
}

#[test]
fn objects_between_services_are_taken_as_written() {
    // What a service wrote is taken back as it is (the edge validated the client's
    // text); only its first byte is looked at.
    let mut message = pb::Inbound {
        identity: Some(identity_to_pb(&identity())),
        envelope: Some(envelope_to_pb(&Envelope::new(MessageType::Message))),
        received_at_unix_micros: 0,
        sequence: 1,
        edge_publishes: true,
        payload_rewritten: false,
    };
    message.envelope.as_mut().unwrap().payload = Bytes::from_static(b"{\"a\": [1, 2]}");
    let inbound = Inbound::try_from(message).unwrap();
    assert_eq!(inbound.envelope.payload.as_str(), "{\"a\": [1, 2]}");
    assert!(
        inbound
            .envelope
            .to_json()
            .contains(r#""payload":{"a": [1, 2]}"#)
    );
}

proptest! {
    #[test]
    fn frame_heads_say_what_their_frames_say(
        room in prop::option::of("[a-z0-9_-]{1,12}"),
        channel in prop::option::of("[a-z0-9_-]{1,12}"),
        sender in prop::option::of(".{0,20}"),
        kind in prop::sample::select(MessageType::ALL.to_vec()),
        sequence in any::<u64>(),
    ) {
        let mut envelope = Envelope::new(kind);
        envelope.room = room;
        envelope.channel = channel;
        envelope.sender = sender;
        // What every type requires, so that the frame reads back as an envelope.
        envelope.command = Some("ping".into());
        envelope.request_id = Some("r".into());
        envelope.status = Some(Status::Success);
        envelope.error = Some("e".into());
        let head = FrameHead::of(&envelope).with_sequence(sequence);
        let delivery = RoomDelivery {
            head: Some(head.clone().encode()),
            ..RoomDelivery::of(&envelope)
        };
        let back = RoomDelivery::decode(delivery.encode()).unwrap();
        prop_assert_eq!(&back, &delivery);
        prop_assert_eq!(back.frame_head(), Some(head.clone()));
        prop_assert_eq!(head.sequence, Some(sequence).filter(|s| *s != 0));
        // Without the head, the frame says the same (but for the sequence).
        let headless = RoomDelivery { head: None, ..back };
        prop_assert_eq!(headless.frame_head(), Some(FrameHead { sequence: None, ..head }));
    }

    #[test]
    fn inbound_round_trips_for_any_fields(
        room in "[a-z0-9_-]{1,12}",
        text in ".{0,40}",
        micros in -10_000_000_000_000_000i64..10_000_000_000_000_000i64,
        offset_minutes in -840i32..840,
    ) {
        let mut envelope = Envelope::new(MessageType::Command);
        envelope.room = Some(room);
        envelope.command = Some(text.clone());
        envelope.error = Some(text.clone());
        envelope.payload = JsonObject::from_value(&json!({ "t": text })).unwrap();
        envelope.timestamp = Timestamp::from_unix_micros(micros, offset_minutes * 60).unwrap();
        let inbound = Inbound {
            identity: identity(),
            envelope,
            received_at_unix_micros: micros,
            sequence: micros.unsigned_abs(),
            edge_publishes: true,
            payload_rewritten: false,
        };
        prop_assert_eq!(Inbound::decode(inbound.encode()).unwrap(), inbound);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let bytes = Bytes::from(bytes);
        let _ = Inbound::decode(bytes.clone());
        let _ = RoomDelivery::decode(bytes.clone());
        let _ = EdgeDelivery::decode(bytes);
    }
}
