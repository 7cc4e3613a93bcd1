//! Work queues: each job to one handle, acknowledgements, refusals with a delay,
//! redelivery after the acknowledgement wait, handles that go away, delivery limits,
//! duplicate ids, size limits, capture of core publishes, configuration.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arqon_bus::{
    Bus, BusError, Bytes, Headers, HistoryConfig, Job, Storage, WorkQueue, WorkQueueConfig,
};

use crate::support::{QUIET, WAIT, text};

conformance!(
    work_queue_hands_each_job_to_one_of_two_handles,
    work_queue_nak_hands_the_job_out_again_after_the_delay,
    work_queue_unacknowledged_jobs_come_back_after_ack_wait,
    work_queue_jobs_survive_a_handle_that_is_dropped,
    work_queue_a_closed_handle_hands_back_what_it_was_fetching,
    work_queue_ack_and_term_remove_jobs,
    work_queue_max_deliver_stops_redelivery,
    work_queue_duplicate_ids_are_queued_once,
    work_queue_full_queue_refuses_new_jobs,
    work_queue_captures_core_publishes,
    work_queue_refuses_bad_configs_and_subjects,
    work_queue_reopen_keeps_queued_jobs,
    work_queue_more_than_a_thousand_jobs_may_be_in_flight,
    work_queue_depth_counts_what_is_not_yet_acknowledged,
    work_queue_count_counts_the_jobs_on_matching_subjects,
    work_queue_jobs_keep_their_headers,
);

/// A short poll wait keeps "nothing comes" checks quick; `ack_wait` is set per test.
fn config(name: &str, ack_wait: Duration) -> WorkQueueConfig {
    WorkQueueConfig {
        ack_wait,
        poll_wait: QUIET,
        storage: Storage::Memory,
        ..WorkQueueConfig::new(name, vec![format!("{}.>", name.to_lowercase())], "workers")
    }
}

async fn open(bus: &Bus, config: WorkQueueConfig) -> WorkQueue {
    bus.work_queue(config).await.unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

/// The next job, waiting up to [`WAIT`] across empty polls.
async fn next_job(queue: &mut WorkQueue) -> Job {
    let deadline = Instant::now() + WAIT;
    loop {
        match queue.next().await {
            Some(Ok(job)) => return job,
            Some(Err(err)) => panic!("work queue failed: {err}"),
            None => assert!(Instant::now() < deadline, "no job within {WAIT:?}"),
        }
    }
}

/// Asserts that no job is handed out for one poll wait.
async fn assert_empty(queue: &mut WorkQueue) {
    match queue.next().await {
        None => {}
        Some(Ok(job)) => panic!("unexpected job: {job:?} {}", text(&job.payload)),
        Some(Err(err)) => panic!("work queue failed: {err}"),
    }
}

async fn work_queue_hands_each_job_to_one_of_two_handles(bus: Bus) {
    let mut first = open(&bus, config("SPLIT", Duration::from_secs(30))).await;
    let mut second = open(&bus, config("SPLIT", Duration::from_secs(30))).await;
    let mut third = first.clone();
    assert_eq!(first.name(), "SPLIT");
    let pushed: BTreeSet<String> = (0..30).map(|i| format!("job-{i}")).collect();
    let mut sequences = Vec::new();
    for payload in &pushed {
        sequences.push(first.push("split.a", b(payload), None).await.unwrap());
    }
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");

    // The three handles take jobs concurrently; each job reaches exactly one of them.
    let take = |queue: &mut WorkQueue| {
        let mut queue = queue.clone();
        async move {
            let mut got = Vec::new();
            while let Some(job) = queue.next().await {
                let job = job.unwrap();
                assert_eq!((job.subject.as_str(), job.delivered), ("split.a", 1));
                got.push(text(&job.payload));
                job.ack().await.unwrap();
            }
            got
        }
    };
    let (x, y, z) = tokio::join!(take(&mut first), take(&mut second), take(&mut third));
    let all: Vec<String> = x.into_iter().chain(y).chain(z).collect();
    assert_eq!(all.len(), pushed.len(), "each job once: {all:?}");
    assert_eq!(all.into_iter().collect::<BTreeSet<_>>(), pushed);
    assert_empty(&mut first).await;
    assert_empty(&mut second).await;
}

async fn work_queue_nak_hands_the_job_out_again_after_the_delay(bus: Bus) {
    let mut queue = open(&bus, config("NAK", Duration::from_secs(30))).await;
    let sequence = queue.push("nak.a", b("later"), None).await.unwrap();
    let job = next_job(&mut queue).await;
    assert_eq!((job.sequence, job.delivered), (sequence, 1));
    let delay = Duration::from_secs(1);
    let refused_at = Instant::now();
    job.nak(delay).await.unwrap();
    let again = next_job(&mut queue).await;
    // A lower bound only: the job must not come back before its delay (the server's
    // timer may fire a little early, hence the margin).
    assert!(
        refused_at.elapsed() >= delay - Duration::from_millis(100),
        "back after {:?}",
        refused_at.elapsed()
    );
    assert_eq!(
        (
            again.sequence,
            again.delivered,
            text(&again.payload).as_str()
        ),
        (sequence, 2, "later")
    );
    // A refusal without delay hands it out again at once (well within the ack wait).
    again.nak(Duration::ZERO).await.unwrap();
    let third = next_job(&mut queue).await;
    assert_eq!((third.sequence, third.delivered), (sequence, 3));
    third.ack().await.unwrap();
    assert_empty(&mut queue).await;
}

async fn work_queue_unacknowledged_jobs_come_back_after_ack_wait(bus: Bus) {
    let ack_wait = Duration::from_secs(1);
    let mut queue = open(&bus, config("AGAIN", ack_wait)).await;
    let sequence = queue.push("again.a", b("x"), None).await.unwrap();
    let job = next_job(&mut queue).await;
    let taken_at = Instant::now();
    drop(job);
    let again = next_job(&mut queue).await;
    assert!(taken_at.elapsed() >= ack_wait - Duration::from_millis(100));
    assert_eq!((again.sequence, again.delivered), (sequence, 2));
    again.ack().await.unwrap();
    assert_empty(&mut queue).await;
}

async fn work_queue_jobs_survive_a_handle_that_is_dropped(bus: Bus) {
    let ack_wait = Duration::from_secs(1);
    let mut gone = open(&bus, config("SURVIVE", ack_wait)).await;
    gone.push("survive.a", b("kept"), None).await.unwrap();
    let job = next_job(&mut gone).await;
    // The handle dies while working on the job: neither is settled.
    drop(gone);
    drop(job);
    let mut survivor = open(&bus, config("SURVIVE", ack_wait)).await;
    let again = next_job(&mut survivor).await;
    assert_eq!(
        (text(&again.payload).as_str(), again.delivered),
        ("kept", 2)
    );
    again.ack().await.unwrap();
    assert_empty(&mut survivor).await;
}

async fn work_queue_a_closed_handle_hands_back_what_it_was_fetching(bus: Bus) {
    // A long ack wait: a job lost to the closed handle would not come back in time.
    let ack_wait = Duration::from_secs(60);
    let mut closing = open(
        &bus,
        WorkQueueConfig {
            poll_wait: Duration::from_secs(2),
            ..config("CLOSE", ack_wait)
        },
    )
    .await;
    let mut survivor = open(&bus, config("CLOSE", ack_wait)).await;
    // A fetch given up half-way (as when a worker shuts down) leaves its request open.
    let given_up = tokio::time::timeout(Duration::from_millis(300), closing.next()).await;
    assert!(given_up.is_err(), "nothing to fetch yet: {given_up:?}");
    closing
        .push("close.a", b("handed back"), None)
        .await
        .unwrap();
    closing.close().await;
    let job = next_job(&mut survivor).await;
    assert_eq!(text(&job.payload), "handed back");
    job.ack().await.unwrap();
    assert_empty(&mut survivor).await;
}

async fn work_queue_ack_and_term_remove_jobs(bus: Bus) {
    let ack_wait = Duration::from_millis(500);
    let mut queue = open(&bus, config("SETTLE", ack_wait)).await;
    queue.push("settle.a", b("acked"), None).await.unwrap();
    queue.push("settle.a", b("termed"), None).await.unwrap();
    let first = next_job(&mut queue).await;
    let second = next_job(&mut queue).await;
    assert_eq!(text(&first.payload), "acked");
    assert_eq!(text(&second.payload), "termed");
    first.ack().await.unwrap();
    second.term().await.unwrap();
    // Well past the ack wait, neither comes back.
    tokio::time::sleep(ack_wait * 2).await;
    assert_empty(&mut queue).await;
}

async fn work_queue_max_deliver_stops_redelivery(bus: Bus) {
    let mut queue = open(
        &bus,
        WorkQueueConfig {
            max_deliver: 2,
            ..config("LIMITED", Duration::from_secs(30))
        },
    )
    .await;
    queue.push("limited.a", b("twice"), None).await.unwrap();
    let first = next_job(&mut queue).await;
    first.nak(Duration::ZERO).await.unwrap();
    let second = next_job(&mut queue).await;
    assert_eq!(second.delivered, 2);
    second.nak(Duration::ZERO).await.unwrap();
    assert_empty(&mut queue).await;
}

async fn work_queue_duplicate_ids_are_queued_once(bus: Bus) {
    let mut queue = open(&bus, config("DEDUP", Duration::from_secs(30))).await;
    let first = queue
        .push("dedup.a", b("once"), Some("job-1"))
        .await
        .unwrap();
    let again = queue
        .push("dedup.a", b("once"), Some("job-1"))
        .await
        .unwrap();
    let other = queue
        .push("dedup.a", b("other"), Some("job-2"))
        .await
        .unwrap();
    assert_eq!(again, first, "a duplicate answers with the first sequence");
    assert!(other > first);
    let jobs = [next_job(&mut queue).await, next_job(&mut queue).await];
    let payloads: Vec<String> = jobs.iter().map(|j| text(&j.payload)).collect();
    assert_eq!(payloads, ["once", "other"]);
    for job in jobs {
        job.ack().await.unwrap();
    }
    assert_empty(&mut queue).await;
    // Settled or not, the id is remembered for the duplicate window.
    assert_eq!(
        queue
            .push("dedup.a", b("once"), Some("job-1"))
            .await
            .unwrap(),
        first
    );
    assert_empty(&mut queue).await;
    let bad = queue.push("dedup.a", b("x"), Some("has space")).await;
    assert!(matches!(bad, Err(BusError::InvalidConfig(_))), "{bad:?}");
}

async fn work_queue_full_queue_refuses_new_jobs(bus: Bus) {
    let mut queue = open(
        &bus,
        WorkQueueConfig {
            max_jobs: 2,
            ..config("FULL", Duration::from_secs(30))
        },
    )
    .await;
    queue.push("full.a", b("1"), None).await.unwrap();
    queue.push("full.a", b("2"), None).await.unwrap();
    let refused = queue.push("full.a", b("3"), None).await;
    assert!(matches!(refused, Err(BusError::Backend(_))), "{refused:?}");
    next_job(&mut queue).await.ack().await.unwrap();
    queue.push("full.a", b("4"), None).await.unwrap();
    let mut left = Vec::new();
    for _ in 0..2 {
        let job = next_job(&mut queue).await;
        left.push(text(&job.payload));
        job.ack().await.unwrap();
    }
    assert_eq!(left, ["2", "4"]);
}

async fn work_queue_captures_core_publishes(bus: Bus) {
    let mut queue = open(&bus, config("CORE", Duration::from_secs(30))).await;
    bus.publish("core.tenant-a", b("published")).await.unwrap();
    let job = next_job(&mut queue).await;
    assert_eq!(
        (job.subject.as_str(), text(&job.payload).as_str()),
        ("core.tenant-a", "published")
    );
    job.ack().await.unwrap();
    bus.publish("elsewhere.a", b("not queued")).await.unwrap();
    assert_empty(&mut queue).await;
    // A publish with a `Nats-Msg-Id` is queued once within the duplicate window.
    let mut headers = Headers::new();
    headers.insert("Nats-Msg-Id", "firing-1").unwrap();
    for _ in 0..2 {
        bus.publish_with_headers("core.tenant-a", headers.clone(), b("once"))
            .await
            .unwrap();
    }
    let job = next_job(&mut queue).await;
    assert_eq!(text(&job.payload), "once");
    job.ack().await.unwrap();
    assert_empty(&mut queue).await;
}

async fn work_queue_refuses_bad_configs_and_subjects(bus: Bus) {
    let mut history = HistoryConfig::new("HIST", vec!["shared.>".into()]);
    history.storage = Storage::Memory;
    bus.history(history).await.unwrap();
    let overlapping = WorkQueueConfig {
        subjects: vec!["shared.jobs.>".into()],
        ..config("OVERLAP", Duration::from_secs(30))
    };
    let refused = bus.work_queue(overlapping).await;
    assert!(
        matches!(refused, Err(BusError::InvalidConfig(_))),
        "{refused:?}"
    );
    let queue = open(&bus, config("OWN", Duration::from_secs(30))).await;
    let mut history = HistoryConfig::new("LATER", vec!["own.>".into()]);
    history.storage = Storage::Memory;
    let later = bus.history(history).await;
    assert!(
        matches!(later, Err(BusError::InvalidConfig(_))),
        "{later:?}"
    );

    for bad in [
        WorkQueueConfig {
            consumer: "has.dot".into(),
            ..config("BAD", Duration::from_secs(1))
        },
        config("BAD", Duration::from_millis(10)),
        WorkQueueConfig {
            poll_wait: Duration::ZERO,
            ..config("BAD", Duration::from_secs(1))
        },
        WorkQueueConfig {
            duplicate_window: Duration::from_secs(3600),
            max_age: Duration::from_secs(60),
            ..config("BAD", Duration::from_secs(1))
        },
        WorkQueueConfig {
            subjects: vec![],
            ..config("BAD", Duration::from_secs(1))
        },
    ] {
        let refused = bus.work_queue(bad.clone()).await;
        assert!(
            matches!(refused, Err(BusError::InvalidConfig(_))),
            "{bad:?}: {refused:?}"
        );
    }
    let foreign = queue.push("other.a", b("x"), None).await;
    assert!(
        matches!(foreign, Err(BusError::InvalidSubject(_))),
        "{foreign:?}"
    );
    let wildcard = queue.push("own.*", b("x"), None).await;
    assert!(
        matches!(wildcard, Err(BusError::InvalidSubject(_))),
        "{wildcard:?}"
    );
}

async fn work_queue_reopen_keeps_queued_jobs(bus: Bus) {
    let queue = open(&bus, config("REOPEN", Duration::from_secs(30))).await;
    queue.push("reopen.a", b("kept"), None).await.unwrap();
    drop(queue);
    let mut reopened = open(
        &bus,
        WorkQueueConfig {
            max_jobs: 100,
            ..config("REOPEN", Duration::from_secs(30))
        },
    )
    .await;
    assert_eq!(reopened.config().max_jobs, 100);
    let job = next_job(&mut reopened).await;
    assert_eq!(text(&job.payload), "kept");
    job.ack().await.unwrap();
}

/// Many handles working on jobs at once are not stalled by a cap on jobs in flight
/// (JetStream's default `max_ack_pending` is 1,000).
async fn work_queue_more_than_a_thousand_jobs_may_be_in_flight(bus: Bus) {
    const JOBS: usize = 1100;
    let mut queue = open(&bus, config("INFLIGHT", Duration::from_secs(60))).await;
    for n in 0..JOBS {
        queue
            .push("inflight.a", b(&n.to_string()), None)
            .await
            .unwrap();
    }
    let mut held = Vec::with_capacity(JOBS);
    while held.len() < JOBS {
        held.push(next_job(&mut queue).await);
    }
    let numbers: BTreeSet<usize> = held
        .iter()
        .map(|job| text(&job.payload).parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), JOBS);
    for job in held {
        job.ack().await.unwrap();
    }
    assert_empty(&mut queue).await;
}

/// The depth counts queued, in-flight and refused jobs, until they are acknowledged.
async fn work_queue_depth_counts_what_is_not_yet_acknowledged(bus: Bus) {
    let mut queue = open(&bus, config("DEPTH", Duration::from_secs(60))).await;
    assert_eq!(queue.depth().await.unwrap().jobs, 0);
    for n in 0..3 {
        queue
            .push("depth.a", b(&format!("job {n}")), None)
            .await
            .unwrap();
    }
    let full = queue.depth().await.unwrap();
    assert_eq!(full.jobs, 3);
    assert!(full.bytes >= 3 * "depth.a".len() as u64 + 15, "{full:?}");
    let first = next_job(&mut queue).await;
    let second = next_job(&mut queue).await;
    second.nak(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap().jobs,
        3,
        "in flight and refused still count"
    );
    first.ack().await.unwrap();
    let left = queue.depth().await.unwrap();
    assert_eq!(left.jobs, 2);
    assert!(left.bytes < full.bytes);
}

/// `count` is the depth of the subjects a filter matches: queued, in-flight and refused
/// jobs, pushed or captured, until they are acknowledged.
async fn work_queue_count_counts_the_jobs_on_matching_subjects(bus: Bus) {
    let mut queue = open(&bus, config("COUNT", Duration::from_secs(60))).await;
    assert_eq!(queue.count("count.a.>").await.unwrap(), 0);
    for (subject, n) in [("count.a.x", 3), ("count.a.y", 2), ("count.b.x", 4)] {
        for i in 0..n {
            queue
                .push(subject, b(&format!("{subject} {i}")), None)
                .await
                .unwrap();
        }
    }
    bus.publish("count.a", b("captured")).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while queue.count("count.a").await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the core publish is captured");
    assert_eq!(queue.count("count.a.>").await.unwrap(), 5);
    assert_eq!(queue.count("count.a.x").await.unwrap(), 3);
    assert_eq!(queue.count("count.*.x").await.unwrap(), 7);
    assert_eq!(queue.count("count.>").await.unwrap(), 10);
    assert_eq!(queue.count("count.c.>").await.unwrap(), 0);
    assert!(matches!(
        queue.count("count..a").await,
        Err(BusError::InvalidSubject(_))
    ));
    // In flight and refused still count; acknowledged and dropped do not.
    let mut settled = BTreeSet::new();
    let mut held = Vec::new();
    while settled.len() < 10 {
        let job = next_job(&mut queue).await;
        let subject = job.subject.clone();
        match subject.as_str() {
            "count.a.x" if !settled.contains("nak") => {
                settled.insert("nak".to_owned());
                job.nak(Duration::from_secs(60)).await.unwrap();
            }
            "count.a.y" => {
                settled.insert(format!("ack {}", job.sequence));
                job.ack().await.unwrap();
            }
            "count.b.x" => {
                settled.insert(format!("term {}", job.sequence));
                job.term().await.unwrap();
            }
            _ => {
                settled.insert(format!("held {}", job.sequence));
                held.push(job);
            }
        }
    }
    assert_eq!(queue.count("count.a.y").await.unwrap(), 0);
    assert_eq!(queue.count("count.b.>").await.unwrap(), 0);
    assert_eq!(queue.count("count.a.x").await.unwrap(), 3);
    assert_eq!(queue.count("count.>").await.unwrap(), 4);
    drop(held);
}

/// Headers travel with a job (pushed, or captured from a core publish), without the
/// server's own: the trace context of the message that made the job.
async fn work_queue_jobs_keep_their_headers(bus: Bus) {
    let mut queue = open(&bus, config("HDR", Duration::from_secs(5))).await;
    let mut headers = Headers::new();
    headers
        .insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
    queue
        .push_with_headers("hdr.pushed", headers.clone(), b("pushed"), Some("job-1"))
        .await
        .unwrap();
    let job = next_job(&mut queue).await;
    assert_eq!(text(&job.payload), "pushed");
    assert_eq!(
        job.headers, headers,
        "the id header is the server's, not the job's"
    );
    job.ack().await.unwrap();

    bus.publish_with_headers("hdr.published", headers.clone(), b("published"))
        .await
        .unwrap();
    let job = next_job(&mut queue).await;
    assert_eq!(text(&job.payload), "published");
    assert_eq!(job.headers, headers);
    job.ack().await.unwrap();

    queue.push("hdr.plain", b("plain"), None).await.unwrap();
    let job = next_job(&mut queue).await;
    assert!(job.headers.is_empty(), "{:?}", job.headers);
    job.ack().await.unwrap();
}
