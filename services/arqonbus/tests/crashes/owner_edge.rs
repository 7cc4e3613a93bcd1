//! An owner whose edge is killed: nobody announces its disconnect
//! (`arqon.clients.gone.<tenant>`), so the operators find out from the edge's key in
//! `arqon_edges`, which expires [`EDGE_TTL`] after its last renewal.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use arqon_protocol::subject::{EDGE_HEARTBEAT, EDGE_TTL};

use super::Rig;
use crate::{Socket, command, next_json};

/// How often the webhook sweep runs in this test (`ARQONBUS_WEBHOOK_SWEEP_SECONDS`).
const WEBHOOK_SWEEP: Duration = Duration::from_secs(1);

/// The owner's connection is on an edge process killed with SIGKILL. Its webhook rule
/// and cron job that are not `persistent` are removed within the documented time: the
/// edge key's TTL plus one webhook sweep for the rule, plus two cron sweeps for the job
/// (docs/operators-webhook.md, docs/operators-cron.md); the persistent ones stay. An
/// admin on the other edge watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleeting_rules_and_jobs_go_when_their_owners_edge_is_killed() {
    let sweep = WEBHOOK_SWEEP.as_secs().to_string();
    let mut rig = Rig::start(
        1,
        2,
        &[
            ("ARQONBUS_WEBHOOK_SWEEP_SECONDS", sweep.as_str()),
            ("ARQONBUS_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ],
    );
    let mut owner = connect(&rig.url(0, "user")).await;
    let mut admin = connect(&rig.url(1, "admin")).await;
    // Never called: no message is published.
    let url = "http://127.0.0.1:9/hook";
    let mut rules = Vec::new();
    let mut jobs = Vec::new();
    for persistent in [false, true] {
        let rule = command(
            &mut owner,
            "op.webhook.register",
            json!({"url": url, "persistent": persistent}),
        )
        .await;
        rules.push(rule["rule_id"].as_str().expect("rule_id").to_owned());
        let job = command(
            &mut owner,
            "op.cron.schedule",
            json!({"room": "r0", "channel": "c", "payload": {"kind": "later"},
                   "delay_seconds": 3600, "persistent": persistent}),
        )
        .await;
        jobs.push(job["job_id"].as_str().expect("job_id").to_owned());
    }
    assert_eq!(listed(&mut admin).await, (rules.clone(), jobs.clone()));

    drop(rig.edges.remove(0)); // SIGKILL the owner's edge: no disconnect notice
    let killed = Instant::now();
    // The key was renewed at most a heartbeat before the kill. Then the webhook sweep
    // removes a rule at its next run; the cron holder a job at its second sweep in a row
    // (every heartbeat) that misses the edge.
    let rule_bound = EDGE_TTL + WEBHOOK_SWEEP;
    let job_bound = EDGE_TTL + 2 * EDGE_HEARTBEAT;
    let slack = Duration::from_secs(5);
    let (mut rule_gone, mut job_gone) = (None, None);
    while rule_gone.is_none() || job_gone.is_none() {
        let (now_rules, now_jobs) = listed(&mut admin).await;
        if rule_gone.is_none() && now_rules == rules[1..] {
            rule_gone = Some(killed.elapsed());
        }
        if job_gone.is_none() && now_jobs == jobs[1..] {
            job_gone = Some(killed.elapsed());
        }
        // Only the fleeting ones go, and only once.
        assert!(
            now_rules.ends_with(&rules[1..]) && now_jobs.ends_with(&jobs[1..]),
            "{now_rules:?} {now_jobs:?}"
        );
        assert!(
            rule_gone.is_some() || killed.elapsed() < rule_bound + slack,
            "the rule is still there {:?} after the kill",
            killed.elapsed()
        );
        assert!(
            job_gone.is_some() || killed.elapsed() < job_bound + slack,
            "the job is still there {:?} after the kill",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("after the kill: rule removed in {rule_gone:?}, job in {job_gone:?}");
    // Nothing was removed before the edge's key could have expired.
    let earliest = EDGE_TTL - EDGE_HEARTBEAT;
    assert!(rule_gone.is_some_and(|t| t >= earliest), "{rule_gone:?}");
    assert!(job_gone.is_some_and(|t| t >= earliest), "{job_gone:?}");
}

async fn connect(url: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    next_json(&mut socket).await; // welcome
    socket
}

/// The tenant's rule ids and job ids, oldest first, as an admin lists them.
async fn listed(admin: &mut Socket) -> (Vec<String>, Vec<String>) {
    let ids = |data: Value, list: &str, id: &str| -> Vec<String> {
        data[list]
            .as_array()
            .expect("a list")
            .iter()
            .map(|entry| entry[id].as_str().expect("an id").to_owned())
            .collect()
    };
    let rules = command(admin, "op.webhook.list", json!({})).await;
    let jobs = command(admin, "op.cron.list", json!({})).await;
    (ids(rules, "rules", "rule_id"), ids(jobs, "jobs", "job_id"))
}
