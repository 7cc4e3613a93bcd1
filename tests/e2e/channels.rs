//! Channel commands over the wire: every success and every error code, per tenant.

use serde_json::{Value, json};

use arqon_e2e::reply::{args, data, refused as assert_error, run};
use arqon_e2e::{Cluster, QUIET, WAIT};
use arqon_protocol::{ErrorCode, MessageType, Status};
use arqon_sdk::{Client, SdkError};

use crate::{both_modes, each_mode};

each_mode!(a_tenant_has_a_bounded_number_of_channels);

/// A tenant has at most `ARQONBUS_MAX_CHANNELS_PER_TENANT` channels, whether created or
/// joined into being: one more gets `QUOTA_EXCEEDED`; joining an existing one, and other
/// tenants, are not affected; deleting one frees a place.
async fn a_tenant_has_a_bounded_number_of_channels(mode: arqon_e2e::Mode) {
    let cluster = Cluster::launch(arqon_e2e::Topology {
        dispatcher: arqon_dispatcher::DispatcherConfig {
            max_channels_per_tenant: 2,
            ..Default::default()
        },
        ..arqon_e2e::Topology::new(mode)
    })
    .await;
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let other = cluster.client("t-b").await;
    admin.join("lab", "one").await.unwrap();
    let created = run(
        &admin,
        "create_channel",
        json!({"room": "lab", "channel": "two"}),
    )
    .await;
    assert_eq!(
        created.status,
        Some(Status::Success),
        "{}",
        created.to_json()
    );
    assert_error(
        &run(
            &admin,
            "create_channel",
            json!({"room": "lab", "channel": "three"}),
        )
        .await,
        ErrorCode::QuotaExceeded,
    );
    assert_error(
        &run(
            &admin,
            "join_channel",
            json!({"room": "lab", "channel": "three"}),
        )
        .await,
        ErrorCode::QuotaExceeded,
    );
    admin.join("lab", "two").await.unwrap();
    other.join("lab", "three").await.unwrap();
    let deleted = run(
        &admin,
        "delete_channel",
        json!({"room": "lab", "channel": "two", "force": true}),
    )
    .await;
    assert_eq!(
        deleted.status,
        Some(Status::Success),
        "{}",
        deleted.to_json()
    );
    admin.join("lab", "three").await.unwrap();
    cluster.stop().await;
}

both_modes!(
    channels_are_created_listed_described_and_deleted,
    permissions_follow_the_token,
    tenants_never_see_each_other,
    system_commands_answer,
    private_messages_reach_exactly_their_target,
    presence_events_tell_members_who_comes_and_goes: |c| EdgeConfig { presence_events: true, ..c },
    a_large_history_comes_in_pages_that_fit,
    deleting_a_channel_purges_its_history,
);

/// The `n` of every message `history` has for `room:channel`, oldest first, and the
/// `total_messages` it reports.
async fn stored(client: &Client, room: &str, channel: &str) -> (Vec<i64>, u64) {
    let reply = run(client, "history", json!({"room": room, "channel": channel})).await;
    let data = data(&reply);
    let ns = data["history"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.to_json()))
        .iter()
        .map(|m| m["payload"]["n"].as_i64().unwrap())
        .collect();
    (ns, data["total_messages"].as_u64().unwrap())
}

/// `delete_channel` purges what its channel stored: once recreated, `history` finds
/// nothing of before, nor does a join from a position of before; the tenant's other
/// channels and another tenant's channel of the same name keep theirs.
async fn deleting_a_channel_purges_its_history(cluster: &Cluster) {
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let other = cluster.client_on(0, &cluster.token("t-b", "admin")).await;
    for (client, channel) in [(&admin, "notes"), (&admin, "kept"), (&other, "notes")] {
        let created = run(
            client,
            "create_channel",
            json!({"room": "lab", "channel": channel}),
        )
        .await;
        assert_eq!(
            created.status,
            Some(Status::Success),
            "{}",
            created.to_json()
        );
    }
    let mut last_id = String::new();
    for n in 0..3 {
        last_id = admin
            .publish("lab", "notes", json!({"n": n}))
            .await
            .unwrap();
    }
    admin
        .publish("lab", "kept", json!({"n": 10}))
        .await
        .unwrap();
    other
        .publish("lab", "notes", json!({"n": 20}))
        .await
        .unwrap();
    let before = data(
        &run(
            &admin,
            "history",
            json!({"room": "lab", "channel": "notes"}),
        )
        .await,
    );
    assert_eq!(before["total_messages"], 3, "{before}");
    let (epoch, first_offset) = (
        before["epoch"].clone(),
        before["history"][0]["offset"].clone(),
    );

    let deleted = run(
        &admin,
        "delete_channel",
        json!({"room": "lab", "channel": "notes"}),
    )
    .await;
    assert_eq!(
        deleted.status,
        Some(Status::Success),
        "{}",
        deleted.to_json()
    );
    let created = run(
        &admin,
        "create_channel",
        json!({"room": "lab", "channel": "notes"}),
    )
    .await;
    assert_eq!(
        created.status,
        Some(Status::Success),
        "{}",
        created.to_json()
    );
    assert_eq!(stored(&admin, "lab", "notes").await, (vec![], 0));
    let info = data(
        &run(
            &admin,
            "channel_info",
            json!({"room": "lab", "channel": "notes"}),
        )
        .await,
    );
    assert_eq!(info["statistics"]["message_count"], 0, "{info}");
    for position in [
        json!({"since_offset": first_offset, "epoch": epoch}),
        json!({"since_id": last_id}),
    ] {
        let mut join = json!({"room": "lab", "channel": "notes"});
        join.as_object_mut()
            .unwrap()
            .extend(position.as_object().unwrap().clone());
        let joined = data(&run(&admin, "join_channel", join).await);
        assert_eq!(joined["recovered"], false, "{position}: {joined}");
        assert_eq!(admin.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
        admin.leave("lab", "notes").await.unwrap();
    }

    // The recreated channel stores again; the others kept theirs.
    admin
        .publish("lab", "notes", json!({"n": 3}))
        .await
        .unwrap();
    assert_eq!(stored(&admin, "lab", "notes").await, (vec![3], 1));
    assert_eq!(stored(&admin, "lab", "kept").await, (vec![10], 1));
    assert_eq!(stored(&other, "lab", "notes").await, (vec![20], 1));
}

/// Three messages of 400 KB: together over the bus's message size. `history` answers
/// in pages that fit, newest first, each saying where the next one ends, instead of a
/// reply the bus would drop (the client then waited for `TIMEOUT`).
async fn a_large_history_comes_in_pages_that_fit(cluster: &Cluster) {
    let client = cluster.client("t-a").await;
    client.join("big", "c").await.unwrap();
    let data_text = "x".repeat(400_000);
    for n in 0..3 {
        client
            .publish("big", "c", json!({"n": n, "data": data_text}))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut until: Option<Value> = None;
    for _ in 0..3 {
        let mut args = json!({"room": "big", "channel": "c"});
        if let Some(until) = &until {
            args["until"] = until.clone();
        }
        let reply = run(&client, "history", args).await;
        assert_eq!(
            reply.status,
            Some(Status::Success),
            "{}",
            reply.to_json().len()
        );
        let page = data(&reply);
        let messages = page["history"].as_array().unwrap();
        assert_eq!(messages.len(), 1);
        seen.push(messages[0]["payload"]["n"].clone());
        until = page.get("next_until").cloned();
        assert_eq!(page["complete"], until.is_none());
    }
    assert_eq!(seen, vec![json!(2), json!(1), json!(0)]);
    assert!(until.is_none(), "the last page is complete");
}

async fn connect(cluster: &Cluster, claims: Value) -> Client {
    cluster.client_on(0, &cluster.token_with(claims)).await
}

async fn channels_are_created_listed_described_and_deleted(cluster: &Cluster) {
    let admin = connect(
        cluster,
        json!({"sub": "root", "tenant_id": "t-a", "role": "admin"}),
    )
    .await;
    let manager = connect(
        cluster,
        json!({"sub": "m", "tenant_id": "t-a", "permissions": ["channel_management", "channel_access", "channel_view"]}),
    )
    .await;
    let member = cluster.client("t-a").await;

    let created = run(
        &manager,
        "create_channel",
        json!({"room": "lab", "name": "notes", "description": "lab notes"}),
    )
    .await;
    assert_eq!(
        created.status,
        Some(Status::Success),
        "{}",
        created.to_json()
    );
    let d = data(&created);
    assert_eq!(
        (d["room_id"].as_str(), d["channel_name"].as_str()),
        (Some("lab"), Some("notes"))
    );
    assert_eq!(d["description"], "lab notes");
    assert_eq!(d["created_by"], manager.client_id());
    assert_error(
        &run(
            &manager,
            "create_channel",
            json!({"room": "lab", "channel": "notes"}),
        )
        .await,
        ErrorCode::ChannelExists,
    );
    assert_error(
        &run(&manager, "create_channel", json!({"room": "lab"})).await,
        ErrorCode::ValidationError,
    );

    // Joining creates a channel on demand.
    let joined = member.join("lab", "chat").await.unwrap();
    assert_eq!(data(&joined)["created"], true);
    member.join("lab", "notes").await.unwrap();

    let listed = run(&member, "list_channels", json!({"room": "lab"})).await;
    assert_eq!(listed.status, Some(Status::Success));
    let d = data(&listed);
    assert_eq!(d["total_channels"], 2);
    assert_eq!(
        listed.payload.get("message"),
        Some(json!("Found 2 channels in room 'lab'"))
    );
    let notes = d["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notes")
        .unwrap()
        .clone();
    assert_eq!(notes["member_count"], 1);
    assert_eq!(notes["description"], "lab notes");
    assert_eq!(d["queried_by"], member.client_id());

    let info = run(
        &member,
        "channel_info",
        json!({"room": "lab", "channel": "notes"}),
    )
    .await;
    let d = data(&info);
    assert_eq!(d["member_count"], 1);
    assert_eq!(d["members"], json!([member.client_id()]));
    assert_eq!(d["created_by"], manager.client_id());

    assert_error(
        &run(&member, "list_channels", json!({"room": "nowhere"})).await,
        ErrorCode::RoomNotFound,
    );
    assert_error(
        &run(
            &member,
            "channel_info",
            json!({"room": "nowhere", "channel": "x"}),
        )
        .await,
        ErrorCode::RoomNotFound,
    );
    assert_error(
        &run(
            &member,
            "channel_info",
            json!({"room": "lab", "channel": "none"}),
        )
        .await,
        ErrorCode::ChannelNotFound,
    );
    assert_error(
        &run(
            &member,
            "leave_channel",
            json!({"room": "lab", "channel": "none"}),
        )
        .await,
        ErrorCode::ChannelNotFound,
    );

    // A channel with members is kept, unless an admin forces the delete.
    let refused = run(
        &manager,
        "delete_channel",
        json!({"room": "lab", "channel": "notes"}),
    )
    .await;
    assert_error(&refused, ErrorCode::DeleteChannelError);
    assert_error(
        &run(
            &manager,
            "delete_channel",
            json!({"room": "lab", "channel": "notes", "force": true}),
        )
        .await,
        ErrorCode::AuthorizationError,
    );
    let deleted = run(
        &admin,
        "delete_channel",
        json!({"room": "lab", "channel": "notes", "force": true}),
    )
    .await;
    assert_eq!(
        deleted.status,
        Some(Status::Success),
        "{}",
        deleted.to_json()
    );
    assert_eq!(data(&deleted)["removed_members"], 1);
    // The member is told and removed: nothing published there reaches it any more.
    let notice = member.recv(WAIT).await.unwrap();
    assert_eq!(notice.kind, MessageType::Telemetry);
    assert_eq!(notice.payload.get("event"), Some(json!("channel_deleted")));
    assert_error(
        &run(
            &member,
            "channel_info",
            json!({"room": "lab", "channel": "notes"}),
        )
        .await,
        ErrorCode::ChannelNotFound,
    );
    admin
        .publish("lab", "notes", json!({"after": "delete"}))
        .await
        .unwrap();
    assert_eq!(member.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    // An empty channel goes without force; the room goes with its last channel.
    member.leave("lab", "chat").await.unwrap();
    let removed = run(
        &manager,
        "delete_channel",
        json!({"room": "lab", "channel": "chat"}),
    )
    .await;
    assert_eq!(
        removed.status,
        Some(Status::Success),
        "{}",
        removed.to_json()
    );
    let gone = run(
        &member,
        "delete_channel",
        json!({"room": "lab", "channel": "chat"}),
    )
    .await;
    assert_error(&gone, ErrorCode::AuthorizationError);
    assert_error(
        &run(
            &manager,
            "delete_channel",
            json!({"room": "lab", "channel": "chat"}),
        )
        .await,
        ErrorCode::RoomNotFound,
    );
}

async fn permissions_follow_the_token(cluster: &Cluster) {
    // No permissions claim: everything but channel management.
    let plain = cluster.client("t-a").await;
    let refused = run(
        &plain,
        "create_channel",
        json!({"room": "r", "channel": "c"}),
    )
    .await;
    assert_error(&refused, ErrorCode::AuthorizationError);
    assert!(
        refused
            .payload
            .get("message")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("channel_management")
    );
    plain.join("r", "c").await.unwrap();

    // A permissions claim grants exactly what it lists.
    let viewer = connect(
        cluster,
        json!({"sub": "v", "tenant_id": "t-a", "permissions": ["channel_view"]}),
    )
    .await;
    assert_error(
        &run(
            &viewer,
            "join_channel",
            json!({"room": "r", "channel": "c"}),
        )
        .await,
        ErrorCode::AuthorizationError,
    );
    assert_eq!(
        run(&viewer, "list_channels", json!({"room": "r"}))
            .await
            .status,
        Some(Status::Success)
    );
    // Publishing into a channel takes the right to join it (joining is not required:
    // the protocol lets any client of the tenant publish to a channel).
    let refused = viewer
        .publish("r", "c", json!({"content": "from a viewer"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, arqon_sdk::SdkError::Rejected { code, .. } if code == "AUTHORIZATION_ERROR"),
        "{refused:?}"
    );
    let history = run(&plain, "history", json!({"room": "r", "channel": "c"})).await;
    assert_eq!(data(&history)["history"], json!([]), "nothing was stored");
    let outsider = connect(
        cluster,
        json!({"sub": "o", "tenant_id": "t-a", "permissions": ["channel_access"]}),
    )
    .await;
    outsider
        .publish("r", "c", json!({"content": "not joined, but allowed"}))
        .await
        .unwrap();
    let nothing = connect(
        cluster,
        json!({"sub": "n", "tenant_id": "t-a", "permissions": []}),
    )
    .await;
    assert_error(
        &run(&nothing, "history", json!({"room": "r", "channel": "c"})).await,
        ErrorCode::AuthorizationError,
    );
    // Commands without a permission need none.
    assert_eq!(
        run(&nothing, "ping", json!({})).await.status,
        Some(Status::Success)
    );
}

async fn tenants_never_see_each_other(cluster: &Cluster) {
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-b").await;
    let b_admin = connect(
        cluster,
        json!({"sub": "b", "tenant_id": "t-b", "role": "admin"}),
    )
    .await;
    a.join("secret-room", "plans").await.unwrap();
    a.publish("secret-room", "plans", json!({"plan": "A"}))
        .await
        .unwrap();

    assert_error(
        &run(&b, "list_channels", json!({"room": "secret-room"})).await,
        ErrorCode::RoomNotFound,
    );
    assert_error(
        &run(
            &b,
            "channel_info",
            json!({"room": "secret-room", "channel": "plans"}),
        )
        .await,
        ErrorCode::RoomNotFound,
    );
    assert_error(
        &run(
            &b,
            "history",
            json!({"room": "secret-room", "channel": "plans"}),
        )
        .await,
        ErrorCode::ChannelNotFound,
    );
    assert_error(
        &run(
            &b_admin,
            "delete_channel",
            json!({"room": "secret-room", "channel": "plans", "force": true}),
        )
        .await,
        ErrorCode::RoomNotFound,
    );
    assert_error(
        &run(
            &b,
            "leave_channel",
            json!({"room": "secret-room", "channel": "plans"}),
        )
        .await,
        ErrorCode::RoomNotFound,
    );
    // The same names are a different channel for tenant B, empty and separate.
    let created = run(
        &b_admin,
        "create_channel",
        json!({"room": "secret-room", "channel": "plans"}),
    )
    .await;
    assert_eq!(
        created.status,
        Some(Status::Success),
        "{}",
        created.to_json()
    );
    let b_history = run(
        &b_admin,
        "history",
        json!({"room": "secret-room", "channel": "plans"}),
    )
    .await;
    assert_eq!(data(&b_history)["history"], json!([]));
    let b_info = run(
        &b_admin,
        "channel_info",
        json!({"room": "secret-room", "channel": "plans"}),
    )
    .await;
    assert_eq!(data(&b_info)["member_count"], 0);
    // Status counts are the caller's own.
    let a_status = data(&run(&a, "status", json!({})).await);
    let b_status = data(&run(&b, "status", json!({})).await);
    assert!(a_status["clients"].get("t-b").is_none(), "{a_status}");
    assert!(b_status["clients"].get("t-a").is_none(), "{b_status}");
    // A tenant's admin sees its own tenant too; only the fleet-wide authority sees every
    // tenant (ADR 015).
    let b_admin_status = data(&run(&b_admin, "status", json!({})).await);
    assert!(
        b_admin_status["clients"].get("t-a").is_none(),
        "{b_admin_status}"
    );
    let operator = cluster.client_on(0, &cluster.system_token("ops")).await;
    let fleet = data(&run(&operator, "status", json!({})).await);
    assert!(fleet["clients"]["t-a"].as_u64() >= Some(1), "{fleet}");
    assert!(fleet["clients"]["t-b"].as_u64() >= Some(2), "{fleet}");
    assert_eq!(a_status["rooms"], 1);
    // A's channel is untouched.
    let a_history = run(
        &a,
        "history",
        json!({"room": "secret-room", "channel": "plans"}),
    )
    .await;
    assert_eq!(
        data(&a_history)["history"][0]["payload"],
        json!({"plan": "A"})
    );
}

async fn system_commands_answer(cluster: &Cluster) {
    let client = cluster.client("t-a").await;
    client.join("sys", "c").await.unwrap();
    let status = run(&client, "status", json!({})).await;
    assert_eq!(status.status, Some(Status::Success), "{}", status.to_json());
    let d = data(&status);
    assert_eq!(d["server"]["status"], "running");
    assert!(d["server"]["uptime_seconds"].is_u64());
    assert_eq!(d["clients"]["t-a"], 1);
    assert_eq!(
        (d["rooms"].as_u64(), d["channels"].as_u64()),
        (Some(1), Some(1))
    );

    let help = run(&client, "help", json!({})).await;
    let d = data(&help);
    for name in [
        "ping",
        "status",
        "help",
        "join_channel",
        "history",
        "refresh",
        "delete_channel",
    ] {
        assert!(
            d["available_commands"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == name),
            "{name}"
        );
    }
    let one = data(&run(&client, "help", json!({"command": "create_channel"})).await);
    assert_eq!(one["permissions"], json!(["channel_management"]));
    assert_eq!(one["arguments"][0]["name"], "room");
    assert_error(
        &run(&client, "help", json!({"command": "fly"})).await,
        ErrorCode::CommandNotFound,
    );

    assert_error(
        &run(&client, "   ", json!({})).await,
        ErrorCode::MissingCommand,
    );
    assert_error(
        &run(&client, "fly", json!({})).await,
        ErrorCode::UnknownCommand,
    );
    let bad_since = run(
        &client,
        "history",
        json!({"room": "sys", "channel": "c", "since": "last tuesday"}),
    )
    .await;
    assert_error(&bad_since, ErrorCode::InvalidTimestamp);
    assert_error(
        &run(
            &client,
            "history",
            json!({"room": "sys", "channel": "c", "limit": 5000}),
        )
        .await,
        ErrorCode::ValidationError,
    );
}

async fn private_messages_reach_exactly_their_target(cluster: &Cluster) {
    let alice = cluster.client("t-a").await;
    let bob = cluster.client("t-a").await;
    let carol = cluster.client("t-a").await;
    let mallory = cluster.client("t-b").await;

    let mut private = arqon_protocol::Envelope::new(MessageType::Message);
    private.to_client = Some(bob.client_id().to_owned());
    private.payload = arqon_protocol::JsonObject::from_map(&args(json!({"secret": "for bob"})));
    alice.send(&private).await.unwrap();
    let received = bob.recv(WAIT).await.unwrap();
    assert_eq!(received.payload.get("secret"), Some(json!("for bob")));
    assert_eq!(received.sender.as_deref(), Some(alice.client_id()));
    assert_eq!(
        alice.recv(WAIT).await.unwrap().kind,
        MessageType::MessageResponse
    );
    assert_eq!(carol.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    // Another tenant's client is answered exactly like one that does not exist.
    for target in [
        bob.client_id().to_owned(),
        "arq_client_0123456789abcdef0123456789abcdef".to_owned(),
        "nobody".to_owned(),
    ] {
        let mut attempt = arqon_protocol::Envelope::new(MessageType::Message);
        attempt.to_client = Some(target.clone());
        attempt.payload = arqon_protocol::JsonObject::from_map(&args(json!({"x": 1})));
        mallory.send(&attempt).await.unwrap();
        let error = mallory.recv(WAIT).await.unwrap();
        assert!(
            error.has_error_code(ErrorCode::TargetNotFound),
            "{target}: {}",
            error.to_json()
        );
        assert_eq!(error.request_id.as_deref(), Some(attempt.id.as_str()));
    }
    assert_eq!(bob.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
}

async fn presence_events_tell_members_who_comes_and_goes(cluster: &Cluster) {
    let watcher = cluster.client("t-a").await;
    watcher.join("hall", "main").await.unwrap();
    let event = |envelope: arqon_protocol::Envelope| {
        assert_eq!(
            envelope.kind,
            MessageType::Telemetry,
            "{}",
            envelope.to_json()
        );
        let presence = envelope.payload.get("presence").unwrap();
        (
            presence["action"].as_str().unwrap().to_owned(),
            presence["client_id"].as_str().unwrap().to_owned(),
        )
    };
    let visitor = cluster.client("t-a").await;
    visitor.join("hall", "main").await.unwrap();
    assert_eq!(
        event(watcher.recv(WAIT).await.unwrap()),
        ("join".to_owned(), visitor.client_id().to_owned())
    );
    // No event about oneself. (The watcher's own join may still be on its way to the
    // room's members when the visitor joins: an event about someone else is fine.)
    while let Ok(envelope) = visitor.recv(QUIET).await {
        let (_, about) = event(envelope);
        assert_ne!(about, visitor.client_id(), "no event about oneself");
    }
    visitor.leave("hall", "main").await.unwrap();
    assert_eq!(
        event(watcher.recv(WAIT).await.unwrap()),
        ("leave".to_owned(), visitor.client_id().to_owned())
    );

    let passer = cluster.client("t-a").await;
    passer.join("hall", "main").await.unwrap();
    assert_eq!(event(watcher.recv(WAIT).await.unwrap()).0, "join");
    passer.close().await.unwrap();
    assert_eq!(
        event(watcher.recv(WAIT).await.unwrap()),
        ("leave".to_owned(), passer.client_id().to_owned())
    );
    // Nothing leaks to other tenants' channels of the same name.
    let other = cluster.client("t-b").await;
    other.join("hall", "main").await.unwrap();
    assert_eq!(watcher.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
}
