//! Who may do what (ADR 015): the system scope only where the operator honours it, a
//! refresh that applies every claim of the new token, the fields only the server writes,
//! tokens without a tenant, and claims that cannot break a connection.

use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use arqon_e2e::{Cluster, RawSocket, next_json, send_json};
use arqon_protocol::ErrorCode;

use crate::both_modes;

async fn connect(cluster: &Cluster, token: &str) -> RawSocket {
    let (mut socket, _) = tokio_tungstenite::connect_async(cluster.url_with_token(token))
        .await
        .expect("connect");
    let welcome = next_json(&mut socket).await;
    assert_eq!(welcome["payload"]["welcome"], "Connected to ArqonBus");
    socket
}

/// Sends a command and returns its reply (the acknowledgement that follows is read).
async fn command(socket: &mut RawSocket, command: &str, args: Value) -> Value {
    send_json(
        socket,
        &json!({"type": "command", "command": command, "args": args}),
    )
    .await;
    let reply = next_json(socket).await;
    assert_eq!(next_json(socket).await["type"], "command_response");
    reply
}

/// A token with `claims` (and an `exp` an hour away unless given).
fn token(cluster: &Cluster, claims: Value) -> String {
    cluster.token_with(claims)
}

/// The scope means nothing on an edge that does not honour it (the default): an
/// operator must opt in before a token can reach across tenants.
async fn the_system_scope_needs_the_operators_consent(cluster: &Cluster) {
    let claims = json!({"sub": "ops", "tenant_id": "t-a", "scope": "arqonbus:system"});
    let mut socket = connect(cluster, &token(cluster, claims)).await;
    let reload = command(&mut socket, "op.casil.reload", json!({"mode": "monitor"})).await;
    assert_eq!(
        reload["error_code"],
        ErrorCode::AuthorizationError.as_str(),
        "{reload}"
    );
    let status = command(&mut socket, "status", json!({})).await;
    let clients = status["payload"]["data"]["clients"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(clients.keys().all(|tenant| tenant == "t-a"), "{status}");
}

/// A refreshed token replaces role and permissions: a narrower one narrows the
/// connection at once, a wider one widens it.
async fn a_refresh_applies_every_claim_of_the_new_token(cluster: &Cluster) {
    let wide = json!({"sub": "bob", "tenant_id": "t-a", "role": "user",
                      "permissions": ["channel_access", "channel_view", "channel_management"]});
    let narrow = json!({"sub": "bob", "tenant_id": "t-a", "role": "user",
                        "permissions": ["channel_view"]});
    let mut socket = connect(cluster, &token(cluster, wide.clone())).await;
    let join = json!({"room": "lab", "channel": "a"});
    assert_eq!(
        command(&mut socket, "join_channel", join.clone()).await["status"],
        "success"
    );
    let refreshed = command(
        &mut socket,
        "refresh",
        json!({"token": token(cluster, narrow)}),
    )
    .await;
    assert_eq!(refreshed["status"], "success", "{refreshed}");
    let refused = command(
        &mut socket,
        "join_channel",
        json!({"room": "lab", "channel": "b"}),
    )
    .await;
    assert_eq!(
        refused["error_code"],
        ErrorCode::AuthorizationError.as_str(),
        "{refused}"
    );
    let create = json!({"room": "lab", "channel": "c"});
    assert_eq!(
        command(&mut socket, "create_channel", create.clone()).await["error_code"],
        ErrorCode::AuthorizationError.as_str()
    );
    // Viewing is still granted; and a wider token widens again.
    assert_eq!(
        command(&mut socket, "channel_info", join).await["status"],
        "success"
    );
    command(
        &mut socket,
        "refresh",
        json!({"token": token(cluster, wide)}),
    )
    .await;
    assert_eq!(
        command(&mut socket, "create_channel", create).await["status"],
        "success"
    );
}

/// `from_client`, `metadata.casil`, `metadata.cron_job_id` and `metadata.iteration` are
/// the server's: what a client writes there never reaches anyone.
async fn fields_the_server_owns_cannot_be_forged(cluster: &Cluster) {
    let mut alice = cluster.raw_client("t-a").await;
    let mut bob = cluster.raw_client("t-a").await;
    for socket in [&mut alice, &mut bob] {
        command(
            socket,
            "join_channel",
            json!({"room": "lab", "channel": "forge"}),
        )
        .await;
    }
    let whoami = command(&mut bob, "ping", json!({})).await;
    let bob_id = whoami["payload"]["data"]["client_id"]
        .as_str()
        .expect("ping names the client")
        .to_owned();
    // The frame as text: one key is spelt with a JSON escape (`cas\u0069l` is `casil`).
    let forged = format!(
        r#"{{"type": "message", "room": "lab", "channel": "forge",
            "from_client": "{bob_id}", "sender": "{bob_id}",
            "payload": {{"content": "trust me"}},
            "metadata": {{"casil": {{"decision": "ALLOW", "flags": []}}, "cron_job_id": "cron_x",
                         "iteration": 7, "mine": "kept", "cas\u0069l": "escaped"}}}}"#
    );
    alice
        .send(Message::text(forged))
        .await
        .expect("send a frame");
    assert_eq!(next_json(&mut alice).await["type"], "message_response");
    let delivered = next_json(&mut bob).await;
    assert_eq!(delivered["payload"]["content"], "trust me", "{delivered}");
    let alice_id = delivered["sender"].as_str().expect("a sender").to_owned();
    assert_ne!(alice_id, bob_id, "{delivered}");
    assert_eq!(delivered["from_client"], alice_id.as_str(), "{delivered}");
    let metadata = delivered["metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        metadata.keys().collect::<Vec<_>>(),
        vec!["mine"],
        "{delivered}"
    );

    // A client's telemetry shaped like a server notice still says who sent it.
    let notice = json!({"type": "telemetry", "room": "lab", "channel": "forge",
                        "sender": "arqonbus",
                        "payload": {"event": "channel_deleted", "room": "lab", "channel": "forge"}});
    send_json(&mut alice, &notice).await;
    let delivered = next_json(&mut bob).await;
    assert_eq!(delivered["type"], "telemetry", "{delivered}");
    assert_eq!(delivered["sender"], alice_id.as_str(), "{delivered}");
    assert_eq!(delivered["from_client"], alice_id.as_str(), "{delivered}");
    // Bob is still a member: a client's notice closes nothing.
    let info = command(
        &mut bob,
        "channel_info",
        json!({"room": "lab", "channel": "forge"}),
    )
    .await;
    assert_eq!(info["payload"]["data"]["member_count"], 2, "{info}");
}

/// An `exp` no clock reaches is a long token, not a crash: the connection serves, and so
/// does a refresh to one.
async fn an_exp_beyond_any_clock_breaks_nothing(cluster: &Cluster) {
    let far = json!({"sub": "eve", "tenant_id": "t-a", "exp": 18_446_744_073_709_551_615_u64});
    let mut socket = connect(cluster, &token(cluster, far.clone())).await;
    assert_eq!(
        command(&mut socket, "ping", json!({})).await["status"],
        "success"
    );
    let refreshed = command(
        &mut socket,
        "refresh",
        json!({"token": token(cluster, far)}),
    )
    .await;
    assert_eq!(refreshed["status"], "success", "{refreshed}");
    assert_eq!(
        command(&mut socket, "ping", json!({})).await["status"],
        "success"
    );
}

/// Without a tenant claim a token is refused, unless the operator names a fallback.
async fn a_token_without_a_tenant_is_refused(cluster: &Cluster) {
    let bare = token(cluster, json!({"sub": "nobody"}));
    let refused = tokio_tungstenite::connect_async(cluster.url_with_token(&bare)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

async fn a_fallback_tenant_is_explicit(cluster: &Cluster) {
    let bare = token(cluster, json!({"sub": "nobody"}));
    let mut socket = connect(cluster, &bare).await;
    let status = command(&mut socket, "status", json!({})).await;
    assert_eq!(
        status["payload"]["data"]["clients"]["legacy"], 1,
        "{status}"
    );
}

/// A refresh to another subject is refused and changes nothing: not the role, not the
/// expiry. One to another role of the same subject applies it: an admin refreshed to a
/// user loses what only admins may do, and gets it back with an admin token.
async fn a_refresh_keeps_its_subject_and_takes_the_new_role(cluster: &Cluster) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let carol = |role: &str| json!({"sub": "carol", "tenant_id": "t-a", "role": role});
    let mallory = json!({"sub": "mallory", "tenant_id": "t-a", "role": "admin"});
    let mut short = carol("user");
    short["exp"] = json!(now + 3);
    let mut user = connect(cluster, &token(cluster, short)).await;
    let refused = command(
        &mut user,
        "refresh",
        json!({"token": token(cluster, mallory)}),
    )
    .await;
    assert_eq!(
        refused["error_code"],
        ErrorCode::AuthorizationError.as_str(),
        "{refused}"
    );
    assert!(
        refused["payload"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("same tenant and subject")),
        "{refused}"
    );
    // Still carol the user: mallory's admin role was not taken.
    let create = |channel: &str| json!({"room": "roles", "channel": channel});
    assert_eq!(
        command(&mut user, "create_channel", create("by-user")).await["error_code"],
        ErrorCode::AuthorizationError.as_str()
    );

    let mut admin = connect(cluster, &token(cluster, carol("admin"))).await;
    assert_eq!(
        command(&mut admin, "create_channel", create("first")).await["status"],
        "success"
    );
    let refreshed = command(
        &mut admin,
        "refresh",
        json!({"token": token(cluster, carol("user"))}),
    )
    .await;
    assert_eq!(refreshed["status"], "success", "{refreshed}");
    assert_eq!(
        command(&mut admin, "create_channel", create("second")).await["error_code"],
        ErrorCode::AuthorizationError.as_str()
    );
    let force = json!({"room": "roles", "channel": "first", "force": true});
    let forced = command(&mut admin, "delete_channel", force.clone()).await;
    assert_eq!(
        forced["error_code"],
        ErrorCode::AuthorizationError.as_str(),
        "{forced}"
    );
    command(
        &mut admin,
        "refresh",
        json!({"token": token(cluster, carol("admin"))}),
    )
    .await;
    assert_eq!(
        command(&mut admin, "create_channel", create("second")).await["status"],
        "success"
    );
    assert_eq!(
        command(&mut admin, "delete_channel", force).await["status"],
        "success"
    );

    // The refused refresh left the first connection its own expiry.
    assert_eq!(
        arqon_e2e::close_code(&mut user).await,
        Some(arqon_edge::close_code::TOKEN_EXPIRED)
    );
}

fn no_leeway(config: arqon_edge::EdgeConfig) -> arqon_edge::EdgeConfig {
    arqon_edge::EdgeConfig {
        jwt_leeway_seconds: 0,
        ..config
    }
}

fn not_honoured(config: arqon_edge::EdgeConfig) -> arqon_edge::EdgeConfig {
    arqon_edge::EdgeConfig {
        system_scope: false,
        ..config
    }
}

fn with_fallback(config: arqon_edge::EdgeConfig) -> arqon_edge::EdgeConfig {
    arqon_edge::EdgeConfig {
        default_tenant: Some("legacy".to_owned()),
        ..config
    }
}

both_modes!(
    the_system_scope_needs_the_operators_consent: super::not_honoured,
    a_refresh_applies_every_claim_of_the_new_token,
    a_refresh_keeps_its_subject_and_takes_the_new_role: super::no_leeway,
    fields_the_server_owns_cannot_be_forged,
    an_exp_beyond_any_clock_breaks_nothing,
    a_token_without_a_tenant_is_refused,
    a_fallback_tenant_is_explicit: super::with_fallback,
);
