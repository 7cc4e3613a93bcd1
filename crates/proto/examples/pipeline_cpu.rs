//! The CPU one message costs on its way edge → policy → dispatcher → edges, stage by
//! stage, for counting instructions under callgrind (wall-clock time means nothing on a
//! loaded machine; instruction counts repeat whatever the load).
//!
//! ```text
//! cargo build -p arqon-proto --example pipeline_cpu
//! valgrind --tool=callgrind --callgrind-out-file=pipeline.out \
//!     $CARGO_TARGET_DIR/debug/examples/pipeline_cpu 1000 64
//! callgrind_annotate --inclusive=yes pipeline.out | grep 'pipeline_cpu::'
//! ```
//!
//! Each stage is one function, called once per message: its inclusive count divided by
//! the number of messages is the stage's cost per message. The stages do what the
//! services do with a message (`services/edge/src/connection.rs` `accept`, the policy's
//! and the dispatcher's `Inbound::decode`, `route.rs` `route_message`,
//! `services/edge/src/rooms.rs` `fan_out`); CASIL's inspection is not counted (it parses
//! the payload because it looks inside it).
//!
//! Arguments: the number of messages (default 1000) and the size in bytes of the text in
//! each message's payload (default 64).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;

use arqon_bus::Headers;
use arqon_proto::model::{EdgeDelivery, EncodedHead, Inbound, Publication, RoomDelivery};
use arqon_protocol::{ClientId, EdgeId, Envelope, Identity, Role, SERVER_OWNED_METADATA, TenantId};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let text_len: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let edge_id = EdgeId::generate();
    let identity = Identity {
        tenant: TenantId::parse("acme").expect("a valid tenant"),
        client_id: ClientId::generate_on(&edge_id),
        subject: Some("alice".into()),
        role: Role::user(),
        edge_id,
        permissions: None,
        system: false,
    };
    let frame = client_frame(text_len);
    for sequence in 1..=count as u64 {
        let ingress = edge_ingress(&identity, &frame, sequence);
        black_box(policy_decode(ingress.clone()));
        let answer = dispatcher_route(ingress);
        let room = edge_publish(answer);
        black_box(edge_fan_out(room));
    }
}

/// A client's `message`, as an SDK writes it, with `text_len` bytes of text.
fn client_frame(text_len: usize) -> String {
    let text = "lorem ipsum ".repeat(text_len / 12 + 1);
    format!(
        r#"{{"id":"arq_01HZX8J6Q4V1N2B3C4D5E6F7G8","timestamp":"2026-02-18T12:00:00.500+02:00","type":"message","version":"1.0","room":"science","channel":"general","payload":{{"text":"{}","n":42,"tags":["a","b"]}},"metadata":{{"trace":"x"}}}}"#,
        &text[..text_len]
    )
}

/// The edge reads a client's frame: decoded and validated, stamped, encoded as an
/// `Inbound` for the ingress subject.
#[inline(never)]
fn edge_ingress(identity: &Identity, text: &str, sequence: u64) -> Bytes {
    let mut envelope = Envelope::from_client_json(text).expect("a valid frame");
    envelope.sender = Some(identity.client_id.as_str().to_owned());
    envelope.from_client = envelope.sender.clone();
    envelope.metadata.remove_keys(SERVER_OWNED_METADATA);
    // The acknowledgement the edge writes once the message is published (ADR 022).
    black_box(envelope.message_ack().to_json());
    Inbound {
        identity: identity.clone(),
        envelope,
        received_at_unix_micros: 1_771_408_800_000_000,
        sequence,
        edge_publishes: true,
        payload_rewritten: false,
    }
    .encode()
}

/// The policy stage decodes what it inspects (and forwards the same bytes).
#[inline(never)]
fn policy_decode(ingress: Bytes) -> Inbound {
    Inbound::decode(ingress).expect("a valid inbound")
}

/// The dispatcher decodes the envelope, encodes the frame once into a `RoomDelivery`,
/// and answers the sender's edge with it to publish (ADR 022).
#[inline(never)]
fn dispatcher_route(dispatch: Bytes) -> Bytes {
    let inbound = Inbound::decode(dispatch).expect("a valid inbound");
    let room = RoomDelivery::routed(&inbound).encode();
    EdgeDelivery {
        client_id: inbound.identity.client_id.clone(),
        membership: None,
        frames: Vec::new(),
        completes: Some(inbound.sequence),
        publish: Some(Publication {
            subject: "arqon.room.acme.science.general".into(),
            payload: room,
            stored: true,
            headers: Headers::new(),
            copies: Vec::new(),
        }),
    }
    .encode()
}

/// The sender's edge decodes the answer; what it publishes is the room delivery. (It
/// wrote its acknowledgement when it read the message: `edge_ingress`.)
#[inline(never)]
fn edge_publish(answer: Bytes) -> Bytes {
    let answer = EdgeDelivery::decode(answer).expect("a valid answer");
    answer.publish.expect("a publication").payload
}

/// An edge with members in the room decodes the delivery, checks its frame is text, and
/// shares it with the frame's head among the members.
#[inline(never)]
fn edge_fan_out(room: Bytes) -> Option<Arc<(Bytes, Option<EncodedHead>)>> {
    let delivery = RoomDelivery::decode(room).expect("a valid delivery");
    std::str::from_utf8(&delivery.frame).ok()?;
    Some(Arc::new((delivery.frame, delivery.head)))
}
