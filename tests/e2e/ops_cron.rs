//! `op.cron` over the wire: scheduled messages reaching every member of the room (the
//! owner too) in order, cancels that stop them at once, cron expressions, ownership,
//! every message of the original's `op.cron` and every limit, disconnects, and two operators replicas firing
//! each iteration exactly once.

use std::time::Duration;

use serde_json::{Value, json};

use arqon_e2e::reply::{assert_refused, data, message, ok, run};
use arqon_e2e::{Cluster, Mode, QUIET, RawSocket, Topology, WAIT, eventually, metric_value};
use arqon_e2e::{next_json, send_json};
use arqon_operators::{CronSettings, OperatorsConfig};
use arqon_protocol::{ErrorCode, MessageType};
use arqon_sdk::Client;

/// Lower than the defaults so tests run fast, and small enough to reach.
fn settings() -> CronSettings {
    CronSettings {
        max_jobs_per_tenant: 3,
        min_interval_seconds: 0.05,
        max_repeat_count: 100,
        max_payload_bytes: 256,
        lease_seconds: 1.0,
    }
}

async fn launch(mode: Mode, operators: usize) -> Cluster {
    Cluster::launch(Topology {
        operators,
        operator: OperatorsConfig {
            cron: settings(),
            ..OperatorsConfig::default()
        },
        ..Topology::new(mode)
    })
    .await
}

/// `<name>::standalone` and `<name>::distributed`, each on a cluster with [`settings`].
macro_rules! cron_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use arqon_e2e::Mode;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let cluster = super::launch(Mode::Standalone, 1).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                let cluster = super::launch(Mode::Distributed, 1).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }
        }
    )*};
}

cron_modes!(
    a_scheduled_job_reaches_every_member_in_order,
    a_cancel_stops_the_job_before_its_answer,
    a_cron_expression_fires_at_its_times,
    only_owners_and_admins_see_and_cancel_jobs,
    every_refusal_names_its_rule,
    a_disconnect_cancels_jobs_that_are_not_persistent,
);

async fn admin(cluster: &Cluster, tenant: &str) -> Client {
    cluster.client_on(0, &cluster.token(tenant, "admin")).await
}

/// Schedules and returns the job id.
async fn schedule(client: &Client, job: Value) -> String {
    let response = run(client, "op.cron.schedule", job).await;
    ok(&response, "Cron job scheduled");
    data(&response)["job_id"].as_str().unwrap().to_owned()
}

/// The next scheduled message `client` receives: (job id, iteration).
async fn next_firing(client: &Client, wait: Duration) -> Option<(String, u64)> {
    let envelope = client.recv(wait).await.ok()?;
    assert_eq!(
        envelope.kind,
        MessageType::Message,
        "{}",
        envelope.to_json()
    );
    assert_eq!(envelope.sender.as_deref(), Some("op-cron"));
    let metadata = envelope.metadata.to_map();
    Some((
        metadata["cron_job_id"].as_str()?.to_owned(),
        metadata["iteration"].as_u64()?,
    ))
}

async fn listed(client: &Client) -> Vec<Value> {
    let response = run(client, "op.cron.list", json!({})).await;
    ok(&response, "Cron jobs retrieved");
    let data = data(&response);
    let jobs = data["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(data["count"], jobs.len());
    jobs
}

/// The original's acceptance scenario 42, with repeats: the owner and another member get each firing, in order, with
/// `metadata.cron_job_id` and `iteration`; another tenant's member of a room with the
/// same name gets nothing; the finished job disappears from the list.
async fn a_scheduled_job_reaches_every_member_in_order(cluster: &Cluster) {
    let owner = cluster.client("t-a").await;
    let member = cluster.client("t-a").await;
    let stranger = cluster.client("t-b").await;
    for client in [&owner, &member, &stranger] {
        client.join("science", "general").await.unwrap();
    }
    let response = run(
        &owner,
        "op.cron.schedule",
        json!({"room": "science", "channel": "general", "payload": {"content": "tick"},
               "delay_seconds": 0.05, "interval_seconds": 0.05, "repeat_count": 3}),
    )
    .await;
    ok(&response, "Cron job scheduled");
    let job = data(&response);
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    assert!(job_id.starts_with("cron_"), "{job_id}");
    assert_eq!(job["room"], "science");
    assert_eq!(job["channel"], "general");
    assert_eq!(job["delay_seconds"], 0.05);
    assert_eq!(job["interval_seconds"], 0.05);
    assert_eq!(job["repeat_count"], 3);
    assert_eq!(job["owner_client_id"], owner.client_id());
    assert_eq!(job["persistent"], false);
    assert!(job["created_at"].as_str().is_some_and(|t| !t.is_empty()));

    for client in [&member, &owner] {
        let mut firings = Vec::new();
        for _ in 0..3 {
            firings.push(next_firing(client, WAIT).await.expect("a firing"));
        }
        let expected: Vec<(String, u64)> = (1..=3).map(|i| (job_id.clone(), i)).collect();
        assert_eq!(firings, expected);
    }
    let last = member.recv(QUIET).await;
    assert!(last.is_err(), "a fourth firing: {last:?}");
    assert!(stranger.recv(QUIET).await.is_err(), "another tenant");
    eventually("the finished job leaves the list", || async {
        listed(&owner).await.is_empty()
    })
    .await;
    let metrics = cluster.operators_metrics(0).await;
    assert_eq!(
        metric_value(&metrics, "arqonbus_cron_firings_total"),
        Some(3.0)
    );
    assert_eq!(metric_value(&metrics, "arqonbus_cron_leader"), Some(1.0));
}

async fn raw_command(socket: &mut RawSocket, name: &str, args: Value) {
    send_json(
        socket,
        &json!({"type": "command", "command": name, "args": args}),
    )
    .await;
}

/// Reads frames until the `response`; returns it and the cron iterations read before.
async fn read_until_response(socket: &mut RawSocket) -> (Value, Vec<u64>) {
    let mut before = Vec::new();
    loop {
        let frame = next_json(socket).await;
        match frame["type"].as_str() {
            Some("response") => {
                // Its `command_response` follows.
                assert_eq!(next_json(socket).await["type"], "command_response");
                return (frame, before);
            }
            Some("message") => before.push(frame["metadata"]["iteration"].as_u64().unwrap()),
            other => panic!("unexpected {other:?}: {frame}"),
        }
    }
}

/// The frames arrive in order on one connection: once the cancel's answer is there, no
/// firing follows it. A second cancel finds nothing.
async fn a_cancel_stops_the_job_before_its_answer(cluster: &Cluster) {
    let mut socket = cluster.raw_client("t-a").await;
    raw_command(
        &mut socket,
        "join_channel",
        json!({"room": "lab", "channel": "ticks"}),
    )
    .await;
    assert_eq!(
        read_until_response(&mut socket).await.0["status"],
        "success"
    );
    raw_command(
        &mut socket,
        "op.cron.schedule",
        json!({"room": "lab", "channel": "ticks", "payload": {}, "delay_seconds": 0.05,
               "interval_seconds": 0.05, "repeat_count": 100}),
    )
    .await;
    let (scheduled, mut seen) = read_until_response(&mut socket).await;
    assert_eq!(scheduled["status"], "success", "{scheduled}");
    let job_id = scheduled["payload"]["data"]["job_id"].as_str().unwrap();
    while seen.len() < 3 {
        let frame = next_json(&mut socket).await;
        seen.push(frame["metadata"]["iteration"].as_u64().unwrap());
    }

    raw_command(&mut socket, "op.cron.cancel", json!({"job_id": job_id})).await;
    let (cancelled, before) = read_until_response(&mut socket).await;
    seen.extend(before);
    assert_eq!(cancelled["status"], "success", "{cancelled}");
    assert_eq!(cancelled["payload"]["message"], "Cron job cancelled");
    assert_eq!(cancelled["payload"]["data"]["job_id"], job_id);
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, expected, "in order, none twice");
    // Ten intervals without a frame.
    let after = tokio::time::timeout(Duration::from_millis(500), next_json(&mut socket)).await;
    assert!(after.is_err(), "a firing after the cancel: {after:?}");

    raw_command(&mut socket, "op.cron.cancel", json!({"job_id": job_id})).await;
    let (again, _) = read_until_response(&mut socket).await;
    assert_eq!(again["error_code"], "NOT_FOUND", "{again}");
    assert_eq!(
        again["payload"]["message"],
        format!("Cron job '{job_id}' not found")
    );
    assert_eq!(again["payload"]["data"]["job_id"], job_id);
}

/// Every second, in a named zone, twice; then an unlimited expression until cancelled.
async fn a_cron_expression_fires_at_its_times(cluster: &Cluster) {
    let owner = cluster.client("t-a").await;
    let member = cluster.client("t-a").await;
    member.join("clock", "seconds").await.unwrap();
    let response = run(
        &owner,
        "op.cron.schedule",
        json!({"room": "clock", "channel": "seconds", "payload": {"tick": true},
               "schedule": "* * * * * *", "timezone": "Europe/Paris", "repeat_count": 2}),
    )
    .await;
    ok(&response, "Cron job scheduled");
    let job = data(&response);
    assert_eq!(job["schedule"], "* * * * * *");
    assert_eq!(job["timezone"], "Europe/Paris");
    assert_eq!(job["delay_seconds"], Value::Null);
    assert_eq!(job["repeat_count"], 2);
    assert!(job["next_fire_at"].as_str().is_some());
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    for iteration in 1..=2 {
        assert_eq!(
            next_firing(&member, WAIT).await,
            Some((job_id.clone(), iteration))
        );
    }
    // A third would come a second after the second.
    assert_eq!(
        next_firing(&member, Duration::from_millis(1500)).await,
        None
    );

    let unlimited = schedule(
        &owner,
        json!({"room": "clock", "channel": "seconds", "payload": {}, "schedule": "*/1 * * * * *"}),
    )
    .await;
    let jobs = listed(&owner).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["repeat_count"], Value::Null);
    assert_eq!(jobs[0]["timezone"], "UTC");
    assert_eq!(
        next_firing(&member, WAIT).await,
        Some((unlimited.clone(), 1))
    );
    let cancelled = run(&owner, "op.cron.cancel", json!({"job_id": unlimited})).await;
    ok(&cancelled, "Cron job cancelled");
    assert!(listed(&owner).await.is_empty());
}

/// Users see and cancel their own jobs; an admin sees and cancels any of its tenant's,
/// and nothing of another tenant's.
async fn only_owners_and_admins_see_and_cancel_jobs(cluster: &Cluster) {
    let alice = cluster.client("t-a").await;
    let bob = cluster.client("t-a").await;
    let admin_a = admin(cluster, "t-a").await;
    let admin_b = admin(cluster, "t-b").await;
    let later = |room: &str| json!({"room": room, "channel": "c", "payload": {"n": 1}, "delay_seconds": 600});
    let alices = schedule(&alice, later("a")).await;
    let bobs = schedule(&bob, later("b")).await;

    let mine = listed(&alice).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["job_id"], alices.as_str());
    assert_eq!(mine[0]["owner_client_id"], alice.client_id());
    assert_eq!(mine[0]["fired"], 0);
    assert_eq!(listed(&bob).await[0]["job_id"], bobs.as_str());
    let all: Vec<Value> = listed(&admin_a)
        .await
        .iter()
        .map(|job| job["job_id"].clone())
        .collect();
    assert_eq!(all, [json!(alices), json!(bobs)]);
    assert!(listed(&admin_b).await.is_empty());

    let refused = run(&bob, "op.cron.cancel", json!({"job_id": alices})).await;
    assert_refused(
        &refused,
        ErrorCode::AuthorizationError,
        "Cannot cancel cron job owned by another client",
    );
    let elsewhere = run(&admin_b, "op.cron.cancel", json!({"job_id": alices})).await;
    assert_refused(
        &elsewhere,
        ErrorCode::NotFound,
        &format!("Cron job '{alices}' not found"),
    );
    let unknown = run(&alice, "op.cron.cancel", json!({"job_id": "cron_nope"})).await;
    assert_refused(
        &unknown,
        ErrorCode::NotFound,
        "Cron job 'cron_nope' not found",
    );
    assert_eq!(data(&unknown), json!({"job_id": "cron_nope"}));
    let missing = run(&alice, "op.cron.cancel", json!({})).await;
    assert_refused(&missing, ErrorCode::ValidationError, "'job_id' is required");

    let cancelled = run(&admin_a, "op.cron.cancel", json!({"job_id": alices})).await;
    ok(&cancelled, "Cron job cancelled");
    assert_eq!(data(&cancelled), json!({"job_id": alices}));
    assert!(listed(&alice).await.is_empty());
    let own = run(&bob, "op.cron.cancel", json!({"job_id": bobs})).await;
    ok(&own, "Cron job cancelled");
}

/// The original `op.cron`'s messages, the type conversions, the cron extensions and every limit.
async fn every_refusal_names_its_rule(cluster: &Cluster) {
    let client = cluster.client("t-a").await;
    let base = json!({"room": "r", "channel": "c", "payload": {"n": 1}});
    let with = |changes: Value| {
        let mut job = base.clone();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                job.as_object_mut().unwrap().remove(key);
            } else {
                job[key] = value.clone();
            }
        }
        job
    };
    let cases = [
        (
            with(json!({"room": null})),
            "'room' and 'channel' are required",
        ),
        (
            with(json!({"channel": "  "})),
            "'room' and 'channel' are required",
        ),
        (json!({}), "'room' and 'channel' are required"),
        (
            with(json!({"payload": null})),
            "'payload' must be an object",
        ),
        (
            with(json!({"payload": "text"})),
            "'payload' must be an object",
        ),
        (
            with(json!({"delay_seconds": 0})),
            "'delay_seconds' must be > 0",
        ),
        (
            with(json!({"delay_seconds": "-1"})),
            "'delay_seconds' must be > 0",
        ),
        (
            with(json!({"delay_seconds": "soon"})),
            "'delay_seconds' must be a number, not 'soon'",
        ),
        (
            with(json!({"interval_seconds": -2})),
            "'interval_seconds' must be > 0",
        ),
        (
            with(json!({"repeat_count": 0})),
            "'repeat_count' must be > 0",
        ),
        (
            with(json!({"repeat_count": "many"})),
            "'repeat_count' must be an integer, not 'many'",
        ),
        (
            with(json!({"repeat_count": 2})),
            "'interval_seconds' is required when repeat_count > 1",
        ),
        // The limits of this cluster (`settings`).
        (
            with(json!({"interval_seconds": 0.01, "repeat_count": 2})),
            "'interval_seconds' must be at least 0.05",
        ),
        (
            with(json!({"interval_seconds": 1, "repeat_count": 101})),
            "'repeat_count' must be at most 100",
        ),
        (
            with(json!({"payload": {"text": "x".repeat(300)}})),
            "'payload' is too large: 311 bytes (at most 256)",
        ),
        (
            with(json!({"delay_seconds": 31_536_001})),
            "'delay_seconds' must be at most 31536000",
        ),
        // Cron expressions and zones.
        (
            with(json!({"schedule": "* * * * * *", "delay_seconds": 1})),
            "'schedule' cannot be combined with 'delay_seconds' or 'interval_seconds'",
        ),
        (
            with(json!({"timezone": "Europe/Paris"})),
            "'timezone' needs 'schedule'",
        ),
        (
            with(json!({"schedule": "* * * * * *", "timezone": "Mars/Olympus"})),
            "Unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Paris'",
        ),
        (
            with(json!({"schedule": "0 0 0 30 2 *"})),
            "Cron expression '0 0 0 30 2 *' never fires",
        ),
    ];
    for (job, text) in cases {
        let response = run(&client, "op.cron.schedule", job.clone()).await;
        assert_refused(&response, ErrorCode::ValidationError, text);
    }
    let bad_expression = run(
        &client,
        "op.cron.schedule",
        with(json!({"schedule": "every minute"})),
    )
    .await;
    assert!(
        message(&bad_expression).starts_with("Invalid cron expression 'every minute'"),
        "{}",
        bad_expression.to_json()
    );
    let bad_room = run(&client, "op.cron.schedule", with(json!({"room": "a.b"}))).await;
    assert!(
        message(&bad_room).starts_with("Invalid room name 'a.b'"),
        "{}",
        bad_room.to_json()
    );

    // At most three jobs per tenant; another tenant has its own three.
    for _ in 0..3 {
        schedule(&client, with(json!({"delay_seconds": 600}))).await;
    }
    let fourth = run(
        &client,
        "op.cron.schedule",
        with(json!({"delay_seconds": 600})),
    )
    .await;
    assert_refused(
        &fourth,
        ErrorCode::ValidationError,
        "Cron job limit reached: at most 3 jobs per tenant",
    );
    let other = cluster.client("t-b").await;
    schedule(&other, with(json!({"delay_seconds": 600}))).await;
}

/// Closing the connection cancels the owner's jobs, except persistent ones.
async fn a_disconnect_cancels_jobs_that_are_not_persistent(cluster: &Cluster) {
    let owner = cluster.client("t-a").await;
    let admin = admin(cluster, "t-a").await;
    let later = json!({"room": "r", "channel": "c", "payload": {}, "delay_seconds": 600});
    let transient = schedule(&owner, later.clone()).await;
    let mut persistent = later;
    persistent["persistent"] = json!(true);
    let kept = schedule(&owner, persistent).await;
    assert_eq!(listed(&admin).await.len(), 2, "{transient} and {kept}");
    owner.close().await.unwrap();
    drop(owner);
    eventually("the job that is not persistent goes", || async {
        let jobs = listed(&admin).await;
        jobs.len() == 1 && jobs[0]["job_id"] == kept.as_str()
    })
    .await;
    assert_eq!(listed(&admin).await[0]["persistent"], true);
}

/// Two operators replicas on nats-server: one holds the lease and fires; each iteration
/// reaches the room exactly once; when the holder stops mid-job, the other takes over
/// and still no iteration is missing or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_each_iteration_exactly_once() {
    let mut cluster = launch(Mode::Distributed, 2).await;
    let owner = cluster.client("t-a").await;
    let member = cluster.client("t-a").await;
    member.join("r", "c").await.unwrap();
    let every = |repeat: u64| {
        json!({"room": "r", "channel": "c", "payload": {}, "delay_seconds": 0.05,
               "interval_seconds": 0.05, "repeat_count": repeat, "persistent": true})
    };
    let first = schedule(&owner, every(40)).await;
    let mut seen = Vec::new();
    while let Some(firing) = next_firing(&member, WAIT).await {
        seen.push(firing);
        if seen.len() == 40 {
            break;
        }
    }
    let expected: Vec<(String, u64)> = (1..=40).map(|i| (first.clone(), i)).collect();
    assert_eq!(seen, expected);
    assert_eq!(next_firing(&member, QUIET).await, None);

    let mut leaders = Vec::new();
    let mut fired = 0.0;
    for i in 0..2 {
        let metrics = cluster.operators_metrics(i).await;
        if metric_value(&metrics, "arqonbus_cron_leader") == Some(1.0) {
            leaders.push(i);
        }
        fired += metric_value(&metrics, "arqonbus_cron_firings_total").unwrap_or(0.0);
    }
    assert_eq!(leaders.len(), 1, "exactly one replica fires");
    assert_eq!(fired, 40.0);

    let second = schedule(&owner, every(60)).await;
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.push(next_firing(&member, WAIT).await.expect("a firing"));
    }
    cluster.stop_operators(leaders[0]).await;
    while let Some(firing) = next_firing(&member, WAIT).await {
        seen.push(firing);
        if seen.len() == 60 {
            break;
        }
    }
    let expected: Vec<(String, u64)> = (1..=60).map(|i| (second.clone(), i)).collect();
    assert_eq!(seen, expected);
    assert_eq!(next_firing(&member, QUIET).await, None);
    let survivor = cluster.operators_metrics(1 - leaders[0]).await;
    assert_eq!(metric_value(&survivor, "arqonbus_cron_leader"), Some(1.0));
    cluster.stop().await;
}
