//! Two edges and two dispatcher replicas on one nats-server; history and recovery.

use std::time::Duration;

use serde_json::{Map, Value, json};

use arqon_dispatcher::{DispatcherConfig, HistoryConfig};
use arqon_e2e::{Cluster, Mode, QUIET, Topology, WAIT, metric_value};
use arqon_proto::model::RoomDelivery;
use arqon_protocol::{Envelope, Status};
use arqon_sdk::{Client, SdkError};

use crate::both_modes;

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

async fn command(client: &Client, name: &str, value: Value) -> Envelope {
    let response = client.command(name, args(value)).await.unwrap();
    assert_eq!(
        response.status,
        Some(Status::Success),
        "{}",
        response.to_json()
    );
    response
}

fn data(response: &Envelope) -> Value {
    response.payload.get("data").unwrap_or(Value::Null)
}

async fn two_by_two() -> Cluster {
    Cluster::launch(Topology {
        edges: 2,
        dispatchers: 2,
        ..Topology::new(Mode::Distributed)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_edges_share_a_channel_and_every_replica_agrees() {
    let cluster = two_by_two().await;
    let token = |n: &str| cluster.token_with(json!({"sub": n, "tenant_id": "t-a"}));
    let on_first = cluster.client_on(0, &token("one")).await;
    let on_second = cluster.client_on(1, &token("two")).await;
    let also_second = cluster.client_on(1, &token("three")).await;
    for client in [&on_first, &on_second, &also_second] {
        client.join("science", "general").await.unwrap();
    }
    on_first
        .publish("science", "general", json!({"from": "edge 1"}))
        .await
        .unwrap();
    for client in [&on_second, &also_second] {
        assert_eq!(
            client.recv(WAIT).await.unwrap().payload.get("from"),
            Some(json!("edge 1"))
        );
    }
    on_second
        .publish("science", "general", json!({"from": "edge 2"}))
        .await
        .unwrap();
    assert_eq!(
        on_first.recv(WAIT).await.unwrap().payload.get("from"),
        Some(json!("edge 2"))
    );
    assert_eq!(
        also_second.recv(WAIT).await.unwrap().payload.get("from"),
        Some(json!("edge 2"))
    );

    // The queue group spreads these over both replicas; every answer is the same.
    let mut expected: Vec<&str> = vec![
        on_first.client_id(),
        on_second.client_id(),
        also_second.client_id(),
    ];
    expected.sort_unstable();
    for _ in 0..8 {
        let info = data(
            &command(
                &on_first,
                "channel_info",
                json!({"room": "science", "channel": "general"}),
            )
            .await,
        );
        assert_eq!(info["member_count"], 3);
        assert_eq!(info["members"], json!(expected));
        let listed = data(&command(&on_second, "list_channels", json!({"room": "science"})).await);
        assert_eq!(listed["channels"][0]["member_count"], 3);
        let status = data(&command(&also_second, "status", json!({})).await);
        assert_eq!(status["clients"]["t-a"], 3);
        assert_eq!(status["server"]["edges"], 2);
    }

    // A client that leaves (or disconnects) is out of every answer at once.
    also_second.close().await.unwrap();
    on_second.leave("science", "general").await.unwrap();
    arqon_e2e::eventually("presence drops the closed connection", || async {
        let info = data(
            &command(
                &on_first,
                "channel_info",
                json!({"room": "science", "channel": "general"}),
            )
            .await,
        );
        info["members"] == json!([on_first.client_id()])
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_the_loss_of_a_dispatcher_replica() {
    let mut cluster = two_by_two().await;
    let writer = cluster.client("t-a").await;
    writer.join("log", "events").await.unwrap();
    for n in 0..10 {
        writer
            .publish("log", "events", json!({ "n": n }))
            .await
            .unwrap();
    }
    cluster.stop_dispatcher(0).await;
    let reader = cluster.client_on(1, &cluster.token("t-a", "user")).await;
    let history = data(
        &command(
            &reader,
            "history",
            json!({"room": "log", "channel": "events"}),
        )
        .await,
    );
    let ns: Vec<Value> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["n"].clone())
        .collect();
    assert_eq!(ns, (0..10).map(Value::from).collect::<Vec<_>>());
    let offsets: Vec<u64> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert!(history["epoch"].is_string());
    assert_eq!(history["total_messages"], 10);
    // Still answering and routing with one replica.
    writer
        .publish("log", "events", json!({"n": 10}))
        .await
        .unwrap();
    let last = data(
        &command(
            &reader,
            "history",
            json!({"room": "log", "channel": "events", "limit": 1}),
        )
        .await,
    );
    assert_eq!(last["history"][0]["payload"]["n"], 10);
    cluster.stop().await;
}

both_modes!(
    history_filters_by_time_and_limit,
    a_returning_client_recovers_exactly_what_it_missed
);

async fn history_filters_by_time_and_limit(cluster: &Cluster) {
    let writer = cluster.client("t-a").await;
    writer.join("log", "t").await.unwrap();
    for n in 0..5 {
        writer.publish("log", "t", json!({ "n": n })).await.unwrap();
    }
    let all = data(&command(&writer, "history", json!({"room": "log", "channel": "t"})).await);
    let entries = all["history"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["sender"], writer.client_id());
    assert_eq!(entries[0]["type"], "message");
    let third = entries[2]["stored_at"].as_str().unwrap().to_owned();
    let since = data(
        &command(
            &writer,
            "history",
            json!({"room": "log", "channel": "t", "since": third}),
        )
        .await,
    );
    assert_eq!(since["history"][0]["payload"]["n"], 2);
    let until = data(
        &command(
            &writer,
            "history",
            json!({"room": "log", "channel": "t", "until": third}),
        )
        .await,
    );
    assert_eq!(until["history"].as_array().unwrap().len(), 2);
    let last_two = data(
        &command(
            &writer,
            "history",
            json!({"room": "log", "channel": "t", "limit": 2}),
        )
        .await,
    );
    let ns: Vec<Value> = last_two["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(3), json!(4)]);
}

async fn a_returning_client_recovers_exactly_what_it_missed(cluster: &Cluster) {
    let writer = cluster.client("t-a").await;
    writer.join("feed", "news").await.unwrap();
    let reader = cluster.client("t-a").await;
    reader.join("feed", "news").await.unwrap();
    writer
        .publish("feed", "news", json!({"n": -1}))
        .await
        .unwrap();
    let last_seen = reader.recv(WAIT).await.unwrap();
    reader.close().await.unwrap();
    drop(reader);

    for n in 0..50 {
        writer
            .publish("feed", "news", json!({ "n": n }))
            .await
            .unwrap();
    }
    let back = cluster.client("t-a").await;
    let joined = command(
        &back,
        "join_channel",
        json!({"room": "feed", "channel": "news", "since_id": last_seen.id.as_str()}),
    )
    .await;
    assert_eq!(data(&joined)["recovered"], true, "{}", joined.to_json());
    assert_eq!(data(&joined)["recovered_count"], 50);
    for n in 0..50 {
        let message = back.recv(WAIT).await.unwrap();
        assert_eq!(message.payload.get("n"), Some(json!(n)));
    }
    // Then live delivery goes on, with nothing twice.
    writer
        .publish("feed", "news", json!({"n": 50}))
        .await
        .unwrap();
    assert_eq!(
        back.recv(WAIT).await.unwrap().payload.get("n"),
        Some(json!(50))
    );
    assert_eq!(back.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    // Positions from `history` work too.
    let history = data(
        &command(
            &back,
            "history",
            json!({"room": "feed", "channel": "news", "limit": 3}),
        )
        .await,
    );
    let third_last = &history["history"][0];
    let again = cluster.client("t-a").await;
    let joined = command(
        &again,
        "join_channel",
        json!({"room": "feed", "channel": "news", "since_offset": third_last["offset"], "epoch": history["epoch"]}),
    )
    .await;
    assert_eq!(data(&joined)["recovered"], true, "{}", joined.to_json());
    let ns = [
        again.recv(WAIT).await.unwrap(),
        again.recv(WAIT).await.unwrap(),
    ];
    assert_eq!(
        ns.map(|m| m.payload.get("n")),
        [Some(json!(49)), Some(json!(50))]
    );
    // A position from another epoch, or an id that is not there, is not recovered.
    for recover in [
        json!({"since_offset": 1, "epoch": "another-epoch"}),
        json!({"since_id": "arq_1_1_abcdef"}),
    ] {
        let mut join = json!({"room": "feed", "channel": "news"});
        join.as_object_mut().unwrap().extend(args(recover));
        let late = cluster.client("t-a").await;
        let joined = command(&late, "join_channel", join).await;
        assert_eq!(data(&joined)["recovered"], false, "{}", joined.to_json());
        assert_eq!(late.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
    }
}

/// An id a client sent again can never make a recovery by id skip messages: a position
/// that names two stored messages is not recovered (the client reloads), in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_not_a_recovery_position() {
    for mode in [Mode::Standalone, Mode::Distributed] {
        let cluster = Cluster::launch(Topology::new(mode)).await;
        let writer = cluster.client("t-a").await;
        writer.join("feed", "dup").await.unwrap();
        let first = writer
            .publish("feed", "dup", json!({"n": 0}))
            .await
            .unwrap();
        for n in 1..=3 {
            writer
                .publish("feed", "dup", json!({ "n": n }))
                .await
                .unwrap();
        }
        // A member sends a message under the first one's id.
        let mut member = cluster.raw_client("t-a").await;
        arqon_e2e::send_json(
            &mut member,
            &json!({"type": "command", "command": "join_channel",
                    "args": {"room": "feed", "channel": "dup"}}),
        )
        .await;
        arqon_e2e::send_json(
            &mut member,
            &json!({"id": first, "type": "message", "room": "feed", "channel": "dup",
                    "payload": {"n": "again"}}),
        )
        .await;
        let acknowledged = loop {
            let frame = arqon_e2e::next_json(&mut member).await;
            if frame["type"] == "message_response" || frame["type"] == "error" {
                break frame;
            }
        };
        assert_eq!(acknowledged["type"], "message_response", "{acknowledged}");
        writer
            .publish("feed", "dup", json!({"n": 4}))
            .await
            .unwrap();
        let late = cluster.client("t-a").await;
        let joined = command(
            &late,
            "join_channel",
            json!({"room": "feed", "channel": "dup", "since_id": first}),
        )
        .await;
        assert_eq!(
            data(&joined)["recovered"],
            false,
            "{mode:?}: {}",
            joined.to_json()
        );
        assert_eq!(
            late.recv(QUIET).await.unwrap_err(),
            SdkError::Timeout,
            "{mode:?}: nothing replayed from a position that is not one"
        );
        cluster.stop().await;
    }
}

/// Each tenant's history is bounded in bytes on its own: a tenant's flood of large
/// messages keeps only its newest that fit, and pushes out nothing of another tenant's.
/// (With one bound for all tenants, as before ADR 018, the same flood pushed the other
/// tenant's message out: the oldest went first, whichever tenant it was of.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_flood_pushes_out_only_its_own_history() {
    for mode in [Mode::Standalone, Mode::Distributed] {
        let cluster = Cluster::launch(Topology {
            dispatcher: DispatcherConfig {
                history: HistoryConfig {
                    max_bytes_per_tenant: 100_000,
                    max_bytes: 1_000_000,
                    ..HistoryConfig::default()
                },
                ..DispatcherConfig::default()
            },
            ..Topology::new(mode)
        })
        .await;
        let other = cluster.client("t-b").await;
        other.join("quiet", "log").await.unwrap();
        other
            .publish("quiet", "log", json!({"n": "first"}))
            .await
            .unwrap();
        let writer = cluster.client("t-a").await;
        writer.join("bulk", "files").await.unwrap();
        writer.join("bulk", "notes").await.unwrap();
        writer
            .publish("bulk", "notes", json!({"n": "own"}))
            .await
            .unwrap();
        let padding = "x".repeat(10_000);
        for n in 0..40 {
            writer
                .publish("bulk", "files", json!({ "n": n, "padding": padding }))
                .await
                .unwrap();
        }
        let read = |client: &'static str, room: &'static str, channel: &'static str| {
            let cluster = &cluster;
            async move {
                let reader = cluster.client(client).await;
                let reply = command(
                    &reader,
                    "history",
                    json!({"room": room, "channel": channel, "limit": 1000}),
                )
                .await;
                data(&reply)["history"].as_array().unwrap().clone()
            }
        };
        let kept = read("t-a", "bulk", "files").await;
        // About 10 KB each: no more than 100 KB of them, the newest.
        assert!((5..=9).contains(&kept.len()), "{mode:?}: {}", kept.len());
        assert_eq!(kept.last().unwrap()["payload"]["n"], 39, "{mode:?}");
        assert!(
            read("t-a", "bulk", "notes").await.is_empty(),
            "{mode:?}: the tenant's own oldest went first, whichever channel it was in"
        );
        let untouched = read("t-b", "quiet", "log").await;
        assert_eq!(
            untouched.len(),
            1,
            "{mode:?}: the other tenant keeps its own"
        );
        assert_eq!(untouched[0]["payload"]["n"], "first", "{mode:?}");
        cluster.stop().await;
    }
}

/// A channel's history is bounded in bytes as well: a flood into one channel keeps only
/// its newest messages that fit, and the tenant's other channels keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_flood_pushes_out_only_its_own_history() {
    for mode in [Mode::Standalone, Mode::Distributed] {
        let cluster = Cluster::launch(Topology {
            dispatcher: DispatcherConfig {
                history: HistoryConfig {
                    max_bytes_per_channel: 40_000,
                    ..HistoryConfig::default()
                },
                ..DispatcherConfig::default()
            },
            ..Topology::new(mode)
        })
        .await;
        let writer = cluster.client("t-a").await;
        writer.join("bulk", "files").await.unwrap();
        writer.join("bulk", "notes").await.unwrap();
        writer
            .publish("bulk", "notes", json!({"n": "own"}))
            .await
            .unwrap();
        let padding = "x".repeat(5_000);
        for n in 0..40 {
            writer
                .publish("bulk", "files", json!({ "n": n, "padding": padding }))
                .await
                .unwrap();
        }
        let reader = cluster.client("t-a").await;
        let read = |channel: &'static str| {
            let reader = &reader;
            async move {
                let reply = command(
                    reader,
                    "history",
                    json!({"room": "bulk", "channel": channel, "limit": 1000}),
                )
                .await;
                data(&reply)["history"].as_array().unwrap().clone()
            }
        };
        // The bound is checked after each quarter of it, in the background.
        let mut kept = read("files").await;
        for _ in 0..50 {
            if kept.len() <= 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            kept = read("files").await;
        }
        // About 5 KB each: 40 KB, and at most a quarter more, of the newest.
        assert!((6..=10).contains(&kept.len()), "{mode:?}: {}", kept.len());
        assert_eq!(kept.last().unwrap()["payload"]["n"], 39, "{mode:?}");
        assert_eq!(
            read("notes").await.len(),
            1,
            "{mode:?}: the other channel keeps its own"
        );
        let trimmed = metric_value(
            &cluster.dispatcher_metrics(0).await,
            "arqonbus_dispatcher_history_trimmed_total",
        );
        assert!(trimmed.is_some_and(|n| n >= 30.0), "{mode:?}: {trimmed:?}");
        cluster.stop().await;
    }
}

/// The history's total holds so many tenants' bounds: a tenant for which no room is left
/// has its messages refused with `QUOTA_EXCEEDED` (not delivered, not acknowledged as
/// stored), counted, while the tenants that have room go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_room_in_the_history_is_told() {
    for mode in [Mode::Standalone, Mode::Distributed] {
        let cluster = Cluster::launch(Topology {
            dispatcher: DispatcherConfig {
                history: HistoryConfig {
                    max_bytes_per_tenant: 100_000,
                    max_bytes: 250_000,
                    ..HistoryConfig::default()
                },
                ..DispatcherConfig::default()
            },
            ..Topology::new(mode)
        })
        .await;
        for tenant in ["t-a", "t-b"] {
            let client = cluster.client(tenant).await;
            client.join("room", "chat").await.unwrap();
            client
                .publish("room", "chat", json!({"n": 1}))
                .await
                .unwrap();
        }
        let late = cluster.client("t-c").await;
        late.join("room", "chat").await.unwrap();
        let member = cluster.client("t-c").await;
        member.join("room", "chat").await.unwrap();
        match late.publish("room", "chat", json!({"n": 1})).await {
            Err(SdkError::Rejected { code, message }) => {
                assert_eq!(code, "QUOTA_EXCEEDED", "{mode:?}: {message}");
                assert!(message.contains("ARQONBUS_HISTORY_MAX_BYTES"), "{message}");
            }
            other => panic!("{mode:?}: stored without room: {other:?}"),
        }
        assert_eq!(
            member.recv(QUIET).await.unwrap_err(),
            SdkError::Timeout,
            "{mode:?}: a refused message is not delivered"
        );
        assert_eq!(
            metric_value(
                &cluster.dispatcher_metrics(0).await,
                "arqonbus_dispatcher_history_full_total"
            ),
            Some(1.0),
            "{mode:?}"
        );
        // The tenants with a history go on.
        let first = cluster.client("t-a").await;
        first.join("room", "chat").await.unwrap();
        first
            .publish("room", "chat", json!({"n": 2}))
            .await
            .unwrap();
        cluster.stop().await;
    }
}

/// Upgrading from the one history stream of every tenant (before ADR 018): a dispatcher
/// that starts retires it, and every tenant's new stream copies the tenant's messages
/// from it, in order, without sending them to anyone again; the retired stream is
/// deleted once it holds nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_of_every_tenant_moves_to_a_stream_per_tenant() {
    let mut cluster = Cluster::launch(Topology {
        dispatcher: DispatcherConfig {
            // Sweeps (which delete the retired stream once empty) every 250 ms.
            empty_channel_ttl_seconds: 1,
            ..DispatcherConfig::default()
        },
        ..Topology::new(Mode::Distributed)
    })
    .await;
    let members = [cluster.client("t-a").await, cluster.client("t-b").await];
    for member in &members {
        member.join("old", "news").await.unwrap();
    }
    // What the previous version left: one stream over every room subject.
    let bus = cluster.bus().await;
    let legacy = bus
        .history(arqon_bus::HistoryConfig::new(
            "ARQON_HISTORY",
            vec!["arqon.room.>".into()],
        ))
        .await
        .unwrap();
    // The running dispatcher's sweeps leave it alone while it still captures room
    // subjects, empty as it is: only a restart retires it. (They deleted it, and the
    // writes below went unacknowledged.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        bus.history_names("ARQON_HISTORY")
            .await
            .unwrap()
            .iter()
            .any(|name| name == "ARQON_HISTORY"),
        "the sweep deleted a stream that is not retired"
    );
    let stored = |tenant: &str, n: u64| {
        let mut envelope = Envelope::new(arqon_protocol::MessageType::Message);
        envelope.room = Some("old".into());
        envelope.channel = Some("news".into());
        envelope.payload = arqon_protocol::JsonObject::from_map(
            json!({ "tenant": tenant, "n": n }).as_object().unwrap(),
        );
        // As an older version stored it: without the frame's head.
        RoomDelivery {
            frame: envelope.to_json().into(),
            exclude: None,
            close_room: false,
            received_at_unix_micros: None,
            head: None,
        }
        .encode()
    };
    for n in 0..3 {
        for tenant in ["t-a", "t-b"] {
            legacy
                .append(
                    &format!("arqon.room.{tenant}.old.news"),
                    arqon_bus::Headers::new(),
                    stored(tenant, n),
                )
                .await
                .unwrap();
        }
    }
    // Writing them went to the members too (a stream stores what is published).
    for member in &members {
        for n in 0..3 {
            let live = member.recv(WAIT).await.unwrap();
            assert_eq!(live.payload.get("n"), Some(json!(n)));
        }
    }
    cluster.restart_dispatcher(0).await;

    let reader = cluster.client("t-a").await;
    let history = || async {
        let reply = command(
            &reader,
            "history",
            json!({"room": "old", "channel": "news", "limit": 100}),
        )
        .await;
        data(&reply)["history"].as_array().unwrap().clone()
    };
    let mut copied = Vec::new();
    for _ in 0..100 {
        copied = history().await;
        if copied.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let numbers: Vec<_> = copied.iter().map(|m| m["payload"]["n"].clone()).collect();
    assert_eq!(numbers, [json!(0), json!(1), json!(2)], "{copied:?}");
    assert!(copied.iter().all(|m| m["payload"]["tenant"] == "t-a"));
    for member in &members {
        assert_eq!(
            member.recv(QUIET).await.unwrap_err(),
            SdkError::Timeout,
            "a copy is not sent again"
        );
    }
    // New messages land after the copied ones.
    members[0]
        .publish("old", "news", json!({"tenant": "t-a", "n": 3}))
        .await
        .unwrap();
    let numbers: Vec<_> = history()
        .await
        .iter()
        .map(|m| m["payload"]["n"].clone())
        .collect();
    assert_eq!(numbers, [json!(0), json!(1), json!(2), json!(3)]);
    let other = cluster.client("t-b").await;
    let reply = command(
        &other,
        "history",
        json!({"room": "old", "channel": "news", "limit": 100}),
    )
    .await;
    assert_eq!(data(&reply)["history"].as_array().unwrap().len(), 3);

    // Once the retired stream's messages are gone (aged out; purged here), it goes.
    legacy.purge(">").await.unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if bus.open_history("ARQON_HISTORY").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the empty retired stream is deleted");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_older_than_the_retention_is_not_recovered() {
    for mode in [Mode::Standalone, Mode::Distributed] {
        let cluster = Cluster::launch(Topology {
            dispatcher: DispatcherConfig {
                history: HistoryConfig {
                    max_per_channel: 10,
                    ..HistoryConfig::default()
                },
                ..DispatcherConfig::default()
            },
            ..Topology::new(mode)
        })
        .await;
        let writer = cluster.client("t-a").await;
        writer.join("short", "memory").await.unwrap();
        let first = writer
            .publish("short", "memory", json!({"n": 0}))
            .await
            .unwrap();
        for n in 1..=30 {
            writer
                .publish("short", "memory", json!({ "n": n }))
                .await
                .unwrap();
        }
        let late = cluster.client("t-a").await;
        let joined = command(
            &late,
            "join_channel",
            json!({"room": "short", "channel": "memory", "since_id": first}),
        )
        .await;
        assert_eq!(
            data(&joined)["recovered"],
            false,
            "{mode:?}: {}",
            joined.to_json()
        );
        assert_eq!(
            late.recv(QUIET).await.unwrap_err(),
            SdkError::Timeout,
            "{mode:?}: no partial gap"
        );
        let history = data(
            &command(
                &late,
                "history",
                json!({"room": "short", "channel": "memory", "limit": 1000}),
            )
            .await,
        );
        assert_eq!(history["history"].as_array().unwrap().len(), 10, "{mode:?}");
        assert_eq!(history["history"][0]["payload"]["n"], 21, "{mode:?}");
        cluster.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_off_history_is_refused_and_joins_recover_nothing() {
    for mode in [Mode::Standalone, Mode::Distributed] {
        let cluster = Cluster::launch(Topology {
            dispatcher: DispatcherConfig {
                history: HistoryConfig {
                    enabled: false,
                    ..HistoryConfig::default()
                },
                ..DispatcherConfig::default()
            },
            ..Topology::new(mode)
        })
        .await;
        let writer = cluster.client("t-a").await;
        writer.join("quiet", "room").await.unwrap();
        let first = writer
            .publish("quiet", "room", json!({"n": 0}))
            .await
            .unwrap();
        writer
            .publish("quiet", "room", json!({"n": 1}))
            .await
            .unwrap();

        let refused = writer
            .command("history", args(json!({"room": "quiet", "channel": "room"})))
            .await
            .unwrap();
        assert!(
            refused.has_error_code(arqon_protocol::ErrorCode::HistoryError),
            "{mode:?}: {}",
            refused.to_json()
        );

        let late = cluster.client("t-a").await;
        let joined = command(
            &late,
            "join_channel",
            json!({"room": "quiet", "channel": "room", "since_id": first}),
        )
        .await;
        assert_eq!(
            data(&joined)["recovered"],
            false,
            "{mode:?}: {}",
            joined.to_json()
        );
        assert_eq!(late.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
        // Live delivery does not need history.
        writer
            .publish("quiet", "room", json!({"n": 2}))
            .await
            .unwrap();
        assert_eq!(
            late.recv(WAIT).await.unwrap().payload.get("n"),
            Some(json!(2)),
            "{mode:?}"
        );
        cluster.stop().await;
    }
}

/// An acknowledgement means the message is stored: when the history cannot store it (its
/// stream deleted behind the bus's back, as a lost JetStream leader would leave it), the
/// sender gets `TIMEOUT` instead of an acknowledgement, although members may have
/// received it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_history_did_not_store_is_not_acknowledged() {
    let mut cluster = Cluster::distributed().await;
    // Waits longer than the edge's pipeline timeout (5 s), so the bus's answer arrives.
    let options = arqon_sdk::ConnectOptions {
        request_timeout: 3 * WAIT,
        ..arqon_sdk::ConnectOptions::with_token(cluster.token("t-a", "user"))
    };
    let sender = Client::connect(&cluster.edges()[0].ws_url, options)
        .await
        .unwrap();
    sender.join("log", "events").await.unwrap();
    sender
        .publish("log", "events", json!({"n": 0}))
        .await
        .unwrap();
    let nats = async_nats::connect(cluster.nats().url()).await.unwrap();
    async_nats::jetstream::new(nats)
        .delete_stream("ARQON_HISTORY_t-a")
        .await
        .unwrap();
    match sender.publish("log", "events", json!({"n": 1})).await {
        Err(SdkError::Rejected { code, .. }) => assert_eq!(code, "TIMEOUT"),
        other => panic!("acknowledged although not stored: {other:?}"),
    }
    cluster.stop().await;
}
