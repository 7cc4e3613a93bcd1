use proptest::prelude::*;
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
        };
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
    };
    assert_eq!(RoomDelivery::decode(room.encode()).unwrap(), room);
    let server = RoomDelivery {
        frame: Bytes::from_static(b"{}"),
        exclude: None,
        close_room: true,
        received_at_unix_micros: None,
    };
    assert_eq!(RoomDelivery::decode(server.encode()).unwrap(), server);

    let topic = Topic::parse("science", "general").unwrap();
    for (membership, completes) in [
        (None, None),
        (
            Some(MembershipChange::Join {
                topic: topic.clone(),
                recover: None,
            }),
            Some(3),
        ),
        (
            Some(MembershipChange::Join {
                topic: topic.clone(),
                recover: Some(Recovery::AfterId("arq_1_2_abcdef".into())),
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
        };
        assert_eq!(EdgeDelivery::decode(edge.encode()).unwrap(), edge);
    }
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
