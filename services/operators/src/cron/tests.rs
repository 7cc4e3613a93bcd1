//! Component tests: the API and the schedulers of replicas on one embedded bus (the
//! same code paths as on NATS; `tests/e2e/ops_cron.rs` runs them over WebSocket and on a
//! real nats-server).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arqon_bus::{Bus, HistoryConfig, KvConfig, Subscription};
use arqon_proto::model::RoomDelivery;
use arqon_proto::operators::v1 as pb;
use arqon_proto::operators::v1::cron_server::Cron;
use arqon_protocol::{ClientId, EdgeId, TenantId, Timestamp, Topic, subject};
use tonic::Request;

use super::job::Job;
use super::{CronApi, CronMetrics, CronSettings, start};
use crate::{OperatorsMetrics, Owners, Shared};

const WAIT: Duration = Duration::from_secs(10);

struct Replica {
    api: CronApi,
    metrics: CronMetrics,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Replica {
    async fn start(bus: &Bus) -> Self {
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let owners = Owners::start(bus, &tasks, stop.clone()).await.unwrap();
        let metrics = OperatorsMetrics::default();
        let shared = Shared {
            bus: bus.clone(),
            policy: arqon_proto::policy_control::allow_all(),
            owners,
            metrics: metrics.clone(),
        };
        let api = start(&shared, &settings(), &tasks, stop.clone())
            .await
            .unwrap();
        tasks.close();
        Self {
            api,
            metrics: metrics.cron,
            stop,
            tasks,
        }
    }

    fn leads(&self) -> bool {
        self.metrics.leader.get() == 1
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.tasks.wait())
            .await
            .expect("the replica stops in time");
    }
}

fn settings() -> CronSettings {
    CronSettings {
        lease_seconds: 0.5,
        min_interval_seconds: 0.02,
        ..CronSettings::default()
    }
}

fn caller() -> pb::Caller {
    pb::Caller {
        tenant: "t-a".into(),
        client_id: ClientId::generate_on(&EdgeId::generate()).to_string(),
        admin: false,
        subject: None,
        system: false,
    }
}

fn room(name: &str) -> String {
    let tenant = TenantId::parse("t-a").unwrap();
    subject::room(&tenant, &Topic::parse(name, "c").unwrap())
}

async fn schedule(api: &CronApi, room: &str, interval: f64, repeat: i64) -> pb::CronJob {
    let request = pb::ScheduleRequest {
        caller: Some(caller()),
        room: room.into(),
        channel: "c".into(),
        payload_json: r#"{"n":1}"#.into(),
        delay_seconds: Some(interval),
        interval_seconds: Some(interval),
        repeat_count: Some(repeat),
        persistent: true,
        ..Default::default()
    };
    api.schedule(Request::new(request))
        .await
        .unwrap()
        .into_inner()
}

/// The iteration of the next cron message on `room`, or `None` after `wait` without one.
async fn next_iteration(room: &mut Subscription, wait: Duration) -> Option<u64> {
    let message = tokio::time::timeout(wait, room.next()).await.ok()??;
    let delivery = RoomDelivery::decode(message.payload).unwrap();
    let frame: Value = serde_json::from_slice(&delivery.frame).unwrap();
    assert_eq!(frame["sender"], "op-cron");
    frame["metadata"]["iteration"].as_u64()
}

async fn iterations(room: &mut Subscription, count: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        match next_iteration(room, WAIT).await {
            Some(iteration) => seen.push(iteration),
            None => panic!("only {seen:?} arrived"),
        }
    }
    // Nothing more comes.
    assert_eq!(next_iteration(room, Duration::from_millis(300)).await, None);
    seen
}

/// Two replicas: one fires; when it stops mid-job, the other goes on; every iteration is
/// published once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_publish_each_iteration_once_across_a_handover() {
    let bus = Bus::embedded(Default::default());
    let mut replicas = vec![Replica::start(&bus).await, Replica::start(&bus).await];
    let mut room = bus.subscribe(room("r")).await.unwrap();
    let job = schedule(&replicas[1].api, "r", 0.05, 30).await;
    assert!(job.job_id.starts_with("cron_"));
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(next_iteration(&mut room, WAIT).await.unwrap());
    }
    let leader = replicas.iter().position(Replica::leads).expect("a leader");
    assert!(!replicas[1 - leader].leads(), "one leader at a time");
    replicas.remove(leader).stop().await;
    seen.extend(iterations(&mut room, 20).await);
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
    let survivor = replicas.pop().unwrap();
    assert!(survivor.leads());
    survivor.stop().await;
}

/// Every replica stops mid-job (a full restart); a replica started later goes on where
/// they stopped: the overdue iteration at once, then the rest, each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_goes_on_where_the_job_stopped() {
    let bus = Bus::embedded(Default::default());
    let first = Replica::start(&bus).await;
    let mut room = bus.subscribe(room("r")).await.unwrap();
    let job = schedule(&first.api, "r", 0.05, 20).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_iteration(&mut room, WAIT).await.unwrap());
    }
    first.stop().await;
    // Whatever was in flight when it stopped arrives now; then nothing while none runs.
    while let Some(iteration) = next_iteration(&mut room, Duration::from_millis(200)).await {
        seen.push(iteration);
    }
    assert_eq!(
        next_iteration(&mut room, Duration::from_millis(500)).await,
        None
    );
    let fired = seen.len();
    assert!(fired < 20, "the job was stopped mid-way: {seen:?}");

    let second = Replica::start(&bus).await;
    seen.extend(iterations(&mut room, 20 - fired).await);
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    // An admin of the tenant sees every job of it: the finished one is gone.
    let admin = pb::Caller {
        admin: true,
        ..caller()
    };
    let listed = second
        .api
        .list(Request::new(pb::ListJobsRequest {
            caller: Some(admin),
        }))
        .await
        .unwrap();
    let ids: Vec<String> = listed
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    assert!(!ids.contains(&job.job_id), "{ids:?}");
    second.stop().await;
}

/// The stored job as a replica leaves it when it dies right after claiming iteration 1
/// (its second iteration due at once).
fn claim_first(stored: &[u8]) -> Job {
    let mut claimed = Job::decode(stored).unwrap().claimed(1, Utc::now(), 1);
    claimed.next_fire_at = Some(Utc::now());
    claimed
}

/// What a replica that died between claim and publish leaves: the next holder publishes
/// the claimed iteration when the history does not have it, and does not when it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_dead_replica_is_published_once() {
    let bus = Bus::embedded(Default::default());
    let tenant = TenantId::parse("t-a").unwrap();
    bus.history(HistoryConfig::new(
        subject::history_stream(&tenant),
        vec![subject::tenant_rooms(&tenant)],
    ))
    .await
    .unwrap();
    let first = Replica::start(&bus).await;
    let lost = schedule(&first.api, "lost", 3600.0, 2).await;
    let delivered = schedule(&first.api, "delivered", 3600.0, 2).await;
    first.stop().await;

    let mut lost_room = bus.subscribe(room("lost")).await.unwrap();
    let mut delivered_room = bus.subscribe(room("delivered")).await.unwrap();
    let jobs = bus
        .key_value(KvConfig::new(subject::CRON_BUCKET))
        .await
        .unwrap();
    for (job, published) in [(&lost, false), (&delivered, true)] {
        let key = format!("t-a.{}", job.job_id);
        let entry = jobs.get(&key).await.unwrap().unwrap();
        let claimed = claim_first(&entry.value);
        jobs.update(&key, claimed.encode(), entry.revision)
            .await
            .unwrap();
        if published {
            let subject = subject::room(&claimed.tenant, &claimed.topic);
            let envelope = claimed.envelope(1, Timestamp::now());
            bus.publish(subject, super::fire::delivery(&envelope))
                .await
                .unwrap();
        }
    }

    let second = Replica::start(&bus).await;
    assert_eq!(iterations(&mut lost_room, 2).await, [1, 2]);
    assert_eq!(iterations(&mut delivered_room, 2).await, [1, 2]);
    let recoveries = |outcome| {
        second
            .metrics
            .recoveries
            .get_or_create(&super::metrics::RecoveryLabels { outcome })
            .get()
    };
    assert_eq!(recoveries("published"), 1);
    assert_eq!(recoveries("already_delivered"), 1);
    assert_eq!(second.metrics.firings.get(), 3);
    second.stop().await;
}

/// Without a history nobody can tell whether a claimed message got out: it is not
/// published again (never twice), and counted as missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_an_unconfirmed_claim_is_dropped_not_repeated() {
    let bus = Bus::embedded(Default::default());
    let first = Replica::start(&bus).await;
    let job = schedule(&first.api, "r", 3600.0, 2).await;
    first.stop().await;
    let jobs = bus
        .key_value(KvConfig::new(subject::CRON_BUCKET))
        .await
        .unwrap();
    let key = format!("t-a.{}", job.job_id);
    let entry = jobs.get(&key).await.unwrap().unwrap();
    let claimed = claim_first(&entry.value);
    jobs.update(&key, claimed.encode(), entry.revision)
        .await
        .unwrap();

    let mut room = bus.subscribe(room("r")).await.unwrap();
    let second = Replica::start(&bus).await;
    assert_eq!(iterations(&mut room, 1).await, [2]);
    assert_eq!(second.metrics.missed.get(), 1);
    second.stop().await;
}

/// Jobs of an owner that disconnects go, unless persistent; so does a job that reaches
/// the bucket after its owner's notice (created while the owner was leaving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_disconnect_removes_its_jobs_unless_persistent() {
    let bus = Bus::embedded(Default::default());
    let replica = Replica::start(&bus).await;
    let owner = caller();
    let request = |persistent| pb::ScheduleRequest {
        caller: Some(owner.clone()),
        room: "r".into(),
        channel: "c".into(),
        payload_json: "{}".into(),
        delay_seconds: Some(3600.0),
        persistent,
        ..Default::default()
    };
    for persistent in [false, true] {
        replica
            .api
            .schedule(Request::new(request(persistent)))
            .await
            .unwrap();
    }
    let tenant = TenantId::parse("t-a").unwrap();
    bus.publish(
        subject::client_gone(&tenant),
        owner.client_id.clone().into(),
    )
    .await
    .unwrap();
    let list = || async {
        let request = pb::ListJobsRequest {
            caller: Some(owner.clone()),
        };
        let jobs = replica.api.list(Request::new(request)).await.unwrap();
        jobs.into_inner()
            .jobs
            .iter()
            .map(|job| job.persistent)
            .collect::<Vec<_>>()
    };
    eventually(QUICK, || async { list().await == [true] }).await;
    // A job created after the notice (the schedule raced with the disconnect).
    replica
        .api
        .schedule(Request::new(request(false)))
        .await
        .unwrap();
    eventually(QUICK, || async { list().await == [true] }).await;
    replica.stop().await;
}

/// Sooner than the holder's sweep of owners whose edge is gone (two sweeps 5 s apart),
/// so the notice is what removed the job.
const QUICK: Duration = Duration::from_secs(3);

async fn eventually<F, Fut>(bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn recoveries_are_labelled_by_outcome_only() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = CronMetrics::register(&mut registry);
    metrics.recovered("dropped");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let series: BTreeMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(
        series["arqonbus_cron_recoveries_total{outcome=\"dropped\"}"],
        "1"
    );
    assert_eq!(series["arqonbus_cron_leader"], "0");
}
