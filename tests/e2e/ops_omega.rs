//! `op.omega.*` over the wire (the original's `op.omega` and its acceptance scenarios 46-56): the gates in their order, every reply
//! and refusal, retention, filters, the lab broadcast, and two replicas emitting at once.

use std::collections::HashSet;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic::Request;

use crate::each_mode;
use arqon_bus::KvConfig;
use arqon_e2e::reply::{ok, refused, run};
use arqon_e2e::{Cluster, Mode, QUIET, Topology, WAIT};
use arqon_operators::{OmegaSettings, OperatorsConfig, OperatorsMetrics};
use arqon_proto::operators::v1 as pb;
use arqon_proto::operators::v1::omega_server::Omega;
use arqon_protocol::{ClientId, EdgeId, ErrorCode, MessageType, Timestamp, subject};
use arqon_sdk::{Client, SdkError};

each_mode!(
    status_answers_while_disabled,
    everything_else_is_refused_while_disabled,
    admins_register_and_emit_and_the_lab_hears_it,
    users_may_read_but_not_change_the_lane,
    the_substrate_limit_holds,
    unregistering_removes_the_substrates_events,
    only_the_newest_events_are_kept,
    events_are_filtered_then_limited,
    arguments_are_checked_after_the_gates,
);

const DISABLED: &str = "Tier-Omega experimental lane is disabled";

fn enabled() -> OmegaSettings {
    OmegaSettings {
        enabled: true,
        ..OmegaSettings::default()
    }
}

async fn launch(mode: Mode, omega: OmegaSettings) -> Cluster {
    Cluster::launch(Topology {
        operator: OperatorsConfig {
            omega,
            ..OperatorsConfig::default()
        },
        ..Topology::new(mode)
    })
    .await
}

async fn admin(cluster: &Cluster, tenant: &str) -> Client {
    cluster.client_on(0, &cluster.token(tenant, "admin")).await
}

async fn register(client: &Client, name: &str) -> String {
    let data = ok(
        &run(
            client,
            "op.omega.register_substrate",
            json!({"name": name, "kind": "sim"}),
        )
        .await,
        "Tier-Omega substrate registered",
    );
    data["substrate_id"].as_str().unwrap().to_owned()
}

async fn emit(client: &Client, substrate_id: &str, signal: &str) -> Value {
    ok(
        &run(
            client,
            "op.omega.emit_event",
            json!({"substrate_id": substrate_id, "signal": signal}),
        )
        .await,
        "Tier-Omega event emitted",
    )
}

async fn events(client: &Client, args: Value) -> Value {
    ok(
        &run(client, "op.omega.list_events", args).await,
        "Tier-Omega events listed",
    )
}

fn signals(listed: &Value) -> Vec<String> {
    listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["signal"].as_str().unwrap().to_owned())
        .collect()
}

fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The original's acceptance scenario 46, and the five settings exported (scenario 45).
async fn status_answers_while_disabled(mode: Mode) {
    let cluster = launch(mode, OmegaSettings::default()).await;
    for client in [cluster.client("t-a").await, admin(&cluster, "t-a").await] {
        let status = ok(
            &run(&client, "op.omega.status", json!({})).await,
            "Tier-Omega lane status",
        );
        assert_eq!(
            status,
            json!({"enabled": false, "lab_room": "omega-lab", "lab_channel": "signals",
                   "max_events": 1000, "max_substrates": 128,
                   "substrate_count": 0, "event_count": 0})
        );
    }
    cluster.stop().await;
}

/// The original's acceptance scenario 47: the flag comes first, before the admin check and the arguments.
async fn everything_else_is_refused_while_disabled(mode: Mode) {
    let cluster = launch(mode, OmegaSettings::default()).await;
    let admin = admin(&cluster, "t-a").await;
    let user = cluster.client("t-a").await;
    let calls = [
        (
            "op.omega.register_substrate",
            json!({"name": "s", "kind": "k"}),
        ),
        ("op.omega.register_substrate", json!({"metadata": [1]})),
        ("op.omega.list_substrates", json!({})),
        (
            "op.omega.unregister_substrate",
            json!({"substrate_id": "omega_sub_0123456789ab"}),
        ),
        (
            "op.omega.emit_event",
            json!({"substrate_id": "x", "signal": "s", "payload": 5}),
        ),
        ("op.omega.list_events", json!({"limit": 0})),
        ("op.omega.list_events", json!({"limit": "ten"})),
        ("op.omega.clear_events", json!({})),
    ];
    for client in [&admin, &user] {
        for (command, args) in &calls {
            let (message, _) = refused(
                &run(client, command, args.clone()).await,
                ErrorCode::FeatureDisabled,
            );
            assert_eq!(message, DISABLED, "{command} {args}");
        }
    }
    cluster.stop().await;
}

/// The original's acceptance scenarios 48 and 55: register, emit, and the lab room of the emitter's tenant hears it,
/// the emitter included.
async fn admins_register_and_emit_and_the_lab_hears_it(mode: Mode) {
    let cluster = launch(mode, enabled()).await;
    let admin = admin(&cluster, "t-a").await;
    let observer = cluster.client("t-a").await;
    let elsewhere = cluster.client("t-b").await;
    for client in [&admin, &observer, &elsewhere] {
        client.join("omega-lab", "signals").await.unwrap();
    }

    let registered = ok(
        &run(
            &admin,
            "op.omega.register_substrate",
            json!({"name": " s1 ", "kind": "sim", "metadata": {"v": 1}}),
        )
        .await,
        "Tier-Omega substrate registered",
    );
    let id = registered["substrate_id"].as_str().unwrap().to_owned();
    assert!(is_id(&id, "omega_sub_"), "{id}");
    assert_eq!(
        (registered["name"].clone(), registered["kind"].clone()),
        (json!("s1"), json!("sim"))
    );
    assert!(Timestamp::parse(registered["created_at"].as_str().unwrap()).is_ok());
    assert_eq!(registered.as_object().unwrap().len(), 4, "{registered}");

    let listed = ok(
        &run(&observer, "op.omega.list_substrates", json!({})).await,
        "Tier-Omega substrates listed",
    );
    assert_eq!(
        listed,
        json!({"count": 1, "substrates": [{"substrate_id": id, "name": "s1", "kind": "sim",
               "owner_client_id": admin.client_id(), "metadata": {"v": 1},
               "created_at": registered["created_at"]}]})
    );

    let event = ok(
        &run(
            &admin,
            "op.omega.emit_event",
            json!({"substrate_id": id, "signal": "pulse", "payload": {"x": 1}}),
        )
        .await,
        "Tier-Omega event emitted",
    );
    assert!(
        is_id(event["event_id"].as_str().unwrap(), "omega_evt_"),
        "{event}"
    );
    assert_eq!(event["substrate_id"], id.as_str());
    assert_eq!(event["signal"], "pulse");
    assert_eq!(event["payload"], json!({"x": 1}));
    assert_eq!(event["emitted_by"], admin.client_id());
    let timestamp = Timestamp::parse(event["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(timestamp.offset_seconds(), 0, "aware UTC");

    for client in [&observer, &admin] {
        let heard = client.recv(WAIT).await.unwrap();
        assert_eq!(heard.kind, MessageType::Telemetry, "{}", heard.to_json());
        assert_eq!(heard.room.as_deref(), Some("omega-lab"));
        assert_eq!(heard.channel.as_deref(), Some("signals"));
        assert_eq!(heard.sender.as_deref(), Some("op-omega"));
        assert_eq!(heard.payload.get("omega_event"), Some(event.clone()));
    }
    assert_eq!(elsewhere.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    let status = ok(
        &run(&observer, "op.omega.status", json!({})).await,
        "Tier-Omega lane status",
    );
    assert_eq!(
        (
            status["enabled"].clone(),
            status["substrate_count"].clone(),
            status["event_count"].clone()
        ),
        (json!(true), json!(1), json!(1))
    );
    cluster.stop().await;
}

/// The original's acceptance scenarios 49 and 52: the admin check comes before the arguments.
async fn users_may_read_but_not_change_the_lane(mode: Mode) {
    let cluster = launch(mode, enabled()).await;
    let user = cluster.client("t-a").await;
    let admin = admin(&cluster, "t-a").await;
    let id = register(&admin, "s1").await;
    for (command, args, expected) in [
        (
            "op.omega.register_substrate",
            json!({"name": "s", "kind": "k"}),
            "Only admin clients can register Tier-Omega substrates",
        ),
        (
            "op.omega.register_substrate",
            json!({}),
            "Only admin clients can register Tier-Omega substrates",
        ),
        (
            "op.omega.unregister_substrate",
            json!({"substrate_id": id}),
            "Only admin clients can unregister Tier-Omega substrates",
        ),
        (
            "op.omega.emit_event",
            json!({"substrate_id": id, "signal": "s"}),
            "Only admin clients can emit Tier-Omega events",
        ),
        (
            "op.omega.emit_event",
            json!({"payload": 5}),
            "Only admin clients can emit Tier-Omega events",
        ),
        (
            "op.omega.clear_events",
            json!({}),
            "Only admin clients can clear Tier-Omega events",
        ),
    ] {
        let (message, _) = refused(
            &run(&user, command, args.clone()).await,
            ErrorCode::AuthorizationError,
        );
        assert_eq!(message, expected, "{command} {args}");
    }
    let listed = ok(
        &run(&user, "op.omega.list_substrates", json!({})).await,
        "Tier-Omega substrates listed",
    );
    assert_eq!(listed["count"], 1, "nothing changed");
    assert_eq!(events(&user, json!({})).await["count"], 0);
    cluster.stop().await;
}

/// The original's acceptance scenarios 50 and 56.
async fn the_substrate_limit_holds(mode: Mode) {
    let omega = OmegaSettings {
        max_substrates: 1,
        ..enabled()
    };
    let cluster = launch(mode, omega).await;
    let admin = admin(&cluster, "t-a").await;
    let id = register(&admin, "first").await;
    let (message, _) = refused(
        &run(
            &admin,
            "op.omega.register_substrate",
            json!({"name": "second", "kind": "sim"}),
        )
        .await,
        ErrorCode::ValidationError,
    );
    assert!(
        message.contains("Tier-Omega substrate limit reached"),
        "{message}"
    );

    emit(&admin, &id, "pulse").await;
    let cleared = ok(
        &run(&admin, "op.omega.clear_events", json!({})).await,
        "Tier-Omega events cleared",
    );
    assert_eq!(
        cleared,
        json!({"removed_count": 1, "remaining_count": 0, "substrate_id": null, "signal": null})
    );
    let removed = ok(
        &run(
            &admin,
            "op.omega.unregister_substrate",
            json!({"substrate_id": id}),
        )
        .await,
        "Tier-Omega substrate removed",
    );
    assert_eq!(
        removed,
        json!({"removed": true, "substrate_id": id, "name": "first", "kind": "sim", "removed_events": 0})
    );
    // The place is free again.
    register(&admin, "second").await;
    cluster.stop().await;
}

/// The original's acceptance scenario 51, and the refusals of unregister.
async fn unregistering_removes_the_substrates_events(mode: Mode) {
    let cluster = launch(mode, enabled()).await;
    let admin = admin(&cluster, "t-a").await;
    let (s1, s2) = (register(&admin, "s1").await, register(&admin, "s2").await);
    emit(&admin, &s1, "pulse").await;
    emit(&admin, &s2, "pulse").await;

    let removed = ok(
        &run(
            &admin,
            "op.omega.unregister_substrate",
            json!({"substrate_id": s1}),
        )
        .await,
        "Tier-Omega substrate removed",
    );
    assert_eq!(removed["removed_events"], 1);
    assert_eq!(
        events(&admin, json!({"substrate_id": s1})).await["count"],
        0
    );
    let rest = events(&admin, json!({})).await;
    assert_eq!(rest["count"], 1);
    assert_eq!(rest["events"][0]["substrate_id"], s2.as_str());

    let (message, data) = refused(
        &run(
            &admin,
            "op.omega.unregister_substrate",
            json!({"substrate_id": s1}),
        )
        .await,
        ErrorCode::NotFound,
    );
    assert_eq!(message, format!("Tier-Omega substrate '{s1}' not found"));
    assert_eq!(data, json!({"substrate_id": s1}));
    let (message, data) = refused(
        &run(
            &admin,
            "op.omega.unregister_substrate",
            json!({"substrate_id": "no.such"}),
        )
        .await,
        ErrorCode::NotFound,
    );
    assert_eq!(
        (message.as_str(), data),
        (
            "Tier-Omega substrate 'no.such' not found",
            json!({"substrate_id": "no.such"})
        )
    );
    let (message, _) = refused(
        &run(&admin, "op.omega.unregister_substrate", json!({})).await,
        ErrorCode::ValidationError,
    );
    assert_eq!(message, "'substrate_id' is required");
    cluster.stop().await;
}

/// The original's acceptance scenario 53.
async fn only_the_newest_events_are_kept(mode: Mode) {
    let omega = OmegaSettings {
        max_events: 2,
        ..enabled()
    };
    let cluster = launch(mode, omega).await;
    let admin = admin(&cluster, "t-a").await;
    let id = register(&admin, "s1").await;
    for i in 0..3 {
        emit(&admin, &id, &format!("pulse-{i}")).await;
    }
    let listed = events(&admin, json!({})).await;
    assert_eq!(signals(&listed), ["pulse-1", "pulse-2"]);
    let status = ok(
        &run(&admin, "op.omega.status", json!({})).await,
        "Tier-Omega lane status",
    );
    assert_eq!(status["event_count"], 2);
    // The bucket itself keeps no more.
    let bus = cluster.bus().await;
    let bucket = bus
        .key_value(KvConfig {
            storage: bus.durable_storage(),
            ..KvConfig::new(subject::OMEGA_EVENTS_BUCKET)
        })
        .await
        .unwrap();
    assert_eq!(bucket.keys_matching("e.*").await.unwrap().len(), 2);
    cluster.stop().await;
}

/// The original's acceptance scenario 54: filters first, then the last `limit`, oldest first.
async fn events_are_filtered_then_limited(mode: Mode) {
    let cluster = launch(mode, enabled()).await;
    let admin = admin(&cluster, "t-a").await;
    let user = cluster.client("t-a").await;
    let (s1, s2) = (register(&admin, "s1").await, register(&admin, "s2").await);
    for (id, signal) in [(&s1, "a1"), (&s2, "b1"), (&s1, "a2"), (&s1, "a3")] {
        emit(&admin, id, signal).await;
    }
    let all = events(&user, json!({})).await;
    assert_eq!(signals(&all), ["a1", "b1", "a2", "a3"]);
    assert_eq!(
        (all["count"].clone(), all["limit"].clone()),
        (json!(4), json!(50))
    );
    assert_eq!(
        (all["substrate_id"].clone(), all["signal"].clone()),
        (Value::Null, Value::Null)
    );

    let of_s1 = events(&user, json!({"substrate_id": s1})).await;
    assert_eq!(signals(&of_s1), ["a1", "a2", "a3"]);
    assert_eq!(of_s1["substrate_id"], s1.as_str());
    let last = events(&user, json!({"substrate_id": s1, "limit": 2})).await;
    assert_eq!(signals(&last), ["a2", "a3"]);
    assert_eq!(
        (last["count"].clone(), last["limit"].clone()),
        (json!(2), json!(2))
    );
    let by_signal = events(&user, json!({"signal": "b1"})).await;
    assert_eq!(signals(&by_signal), ["b1"]);
    assert_eq!(by_signal["signal"], "b1");
    let both = events(&user, json!({"substrate_id": s2, "signal": "a1"})).await;
    assert_eq!(both["count"], 0);
    assert_eq!(signals(&events(&user, json!({"limit": "1"})).await), ["a3"]);

    for (limit, expected) in [
        (json!(0), "'limit' must be >= 1"),
        (json!(-3), "'limit' must be >= 1"),
        (json!("ten"), "'limit' must be an integer, not 'ten'"),
    ] {
        let (message, _) = refused(
            &run(&user, "op.omega.list_events", json!({ "limit": limit })).await,
            ErrorCode::ValidationError,
        );
        assert_eq!(message, expected);
    }

    let cleared = ok(
        &run(
            &admin,
            "op.omega.clear_events",
            json!({"substrate_id": s1, "signal": "a2"}),
        )
        .await,
        "Tier-Omega events cleared",
    );
    assert_eq!(
        cleared,
        json!({"removed_count": 1, "remaining_count": 3, "substrate_id": s1, "signal": "a2"})
    );
    assert_eq!(signals(&events(&user, json!({})).await), ["a1", "b1", "a3"]);
    cluster.stop().await;
}

async fn arguments_are_checked_after_the_gates(mode: Mode) {
    let cluster = launch(mode, enabled()).await;
    let admin = admin(&cluster, "t-a").await;
    let id = register(&admin, "s1").await;
    for (command, args, expected) in [
        (
            "op.omega.register_substrate",
            json!({"kind": "sim"}),
            "'name' is required".to_owned(),
        ),
        (
            "op.omega.register_substrate",
            json!({"name": " ", "kind": "sim"}),
            "'name' is required".to_owned(),
        ),
        (
            "op.omega.register_substrate",
            json!({"name": "s"}),
            "'kind' is required".to_owned(),
        ),
        (
            "op.omega.register_substrate",
            json!({"name": "s", "kind": "k", "metadata": [1]}),
            "'metadata' must be an object".to_owned(),
        ),
        (
            "op.omega.emit_event",
            json!({"signal": "s"}),
            "'substrate_id' is required".to_owned(),
        ),
        (
            "op.omega.emit_event",
            json!({"substrate_id": id}),
            "'signal' is required".to_owned(),
        ),
        (
            "op.omega.emit_event",
            json!({"substrate_id": id, "signal": "s", "payload": "x"}),
            "'payload' must be an object".to_owned(),
        ),
        (
            "op.omega.emit_event",
            json!({"substrate_id": "omega_sub_000000000000", "signal": "s"}),
            "Unknown substrate_id: omega_sub_000000000000".to_owned(),
        ),
    ] {
        let (message, _) = refused(
            &run(&admin, command, args.clone()).await,
            ErrorCode::ValidationError,
        );
        assert_eq!(message, expected, "{command} {args}");
    }
    let status = ok(
        &run(&admin, "op.omega.status", json!({})).await,
        "Tier-Omega lane status",
    );
    assert_eq!(
        (
            status["substrate_count"].clone(),
            status["event_count"].clone()
        ),
        (json!(1), json!(0))
    );
    cluster.stop().await;
}

/// A bad setting stops the operators service before it starts: its flag (or variable)
/// refuses it, naming itself.
#[test]
fn bad_settings_stop_the_operators_service() {
    use clap::Parser as _;
    for (flag, value) in [("--omega-lab-channel", " "), ("--omega-max-events", "0")] {
        let error = arqonbus::cli::Cli::try_parse_from(["arqonbus", "operators", flag, value])
            .unwrap_err()
            .to_string();
        assert!(error.contains(flag), "{error}");
    }
}

fn admin_caller() -> pb::Caller {
    pb::Caller {
        tenant: "t-a".to_owned(),
        client_id: ClientId::generate_on(&EdgeId::generate()).to_string(),
        admin: true,
        subject: None,
        system: false,
    }
}

/// Two replicas on one nats-server, each emitting as fast as it can: no event is lost
/// but to retention, and once they are done exactly the newest `max_events` remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_emitting_at_once_keep_exactly_the_newest() {
    const MAX: usize = 20;
    const EACH: usize = 30;
    arqon_edge::install_crypto_provider();
    let nats = arqon_testkit::NatsServer::start();
    let shutdown = CancellationToken::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let bus = arqonbus::connect_bus(
            Some(&nats.url()),
            arqon_bus::NatsOptions::named("operators"),
            false,
        )
        .await
        .unwrap();
        let config = OperatorsConfig {
            omega: OmegaSettings {
                max_events: MAX as u32,
                ..enabled()
            },
            // No cron job in this test: nothing to inspect.
            policy_control: Some(arqon_proto::policy_control::allow_all()),
            ..OperatorsConfig::default()
        };
        let operators =
            arqon_operators::start(config, bus, OperatorsMetrics::default(), shutdown.clone())
                .await
                .unwrap();
        replicas.push(operators);
    }
    let apis: Vec<_> = replicas.iter().map(|r| r.apis().omega).collect();
    let caller = admin_caller();
    let substrate = apis[0]
        .register_substrate(Request::new(pb::RegisterSubstrateRequest {
            caller: Some(caller.clone()),
            name: "s".to_owned(),
            kind: "k".to_owned(),
            metadata_json: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();

    let emitters = apis.iter().enumerate().map(|(replica, api)| {
        let (api, caller, id) = (api.clone(), caller.clone(), substrate.substrate_id.clone());
        tokio::spawn(async move {
            for i in 0..EACH {
                let request = pb::EmitEventRequest {
                    caller: Some(caller.clone()),
                    substrate_id: id.clone(),
                    signal: format!("r{replica}"),
                    payload_json: json!({ "i": i }).to_string(),
                };
                api.emit_event(Request::new(request)).await.unwrap();
            }
        })
    });
    let emitters: Vec<_> = emitters.collect();
    for emitter in emitters {
        tokio::time::timeout(4 * WAIT, emitter)
            .await
            .unwrap()
            .unwrap();
    }

    for api in &apis {
        let listed = api
            .list_events(Request::new(pb::ListEventsRequest {
                caller: Some(caller.clone()),
                limit: Some(1000),
                substrate_id: None,
                signal: None,
            }))
            .await
            .unwrap()
            .into_inner()
            .events;
        assert_eq!(listed.len(), MAX);
        let ids: HashSet<_> = listed.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids.len(), MAX, "each event once");
        // Each replica emitted in order, so what is kept of each is the end of its
        // sequence, in order.
        let mut kept = 0;
        for replica in ["r0", "r1"] {
            let sequence: Vec<u64> = listed
                .iter()
                .filter(|e| e.signal == replica)
                .map(|e| {
                    serde_json::from_str::<Value>(&e.payload_json).unwrap()["i"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            let first = EACH as u64 - sequence.len() as u64;
            assert_eq!(
                sequence,
                (first..EACH as u64).collect::<Vec<_>>(),
                "{replica}"
            );
            kept += sequence.len();
        }
        assert_eq!(kept, MAX);
    }
    let status = apis[1]
        .status(Request::new(pb::OmegaStatusRequest {
            caller: Some(caller.clone()),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.event_count, MAX as u64);
    // Not just what readers see: the bucket itself holds exactly that many.
    let bus = arqonbus::connect_bus(
        Some(&nats.url()),
        arqon_bus::NatsOptions::named("observer"),
        false,
    )
    .await
    .unwrap();
    let bucket = bus
        .key_value(KvConfig {
            storage: bus.durable_storage(),
            ..KvConfig::new(subject::OMEGA_EVENTS_BUCKET)
        })
        .await
        .unwrap();
    assert_eq!(bucket.keys_matching("e.*").await.unwrap().len(), MAX);

    shutdown.cancel();
    for replica in replicas {
        tokio::time::timeout(WAIT, replica.wait()).await.unwrap();
    }
}
