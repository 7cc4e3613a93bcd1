//! Presence replies stay bounded however crowded a channel is: every edge lists at most
//! what the dispatcher asks for (and its own byte budget), and always reports the true
//! counts, so `channel_info`, gRPC `ChannelInfo` and `Presence`, `list_channels`,
//! `delete_channel` and `status` answer at once with the whole counts.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use arqon_dispatcher::DispatcherConfig;
use arqon_e2e::reply::{data, refused, run};
use arqon_e2e::{Cluster, Mode, SERVICE_TOKEN, Topology, metric_value};
use arqon_proto::dispatcher::v1 as pb;
use arqon_protocol::{ErrorCode, Status};
use arqon_sdk::Client;

use crate::each_mode;

each_mode!(a_crowded_channel_answers_at_once_with_its_first_members);

/// Members of the crowded channel, all on one edge.
const MEMBERS: usize = 150;
/// Their subjects (the token's `sub`, which presence carries): 150 of them are 1.2 MiB,
/// over the bus's message size (1 MiB).
const SUBJECT_BYTES: usize = 8 * 1024;
/// `ARQONBUS_CHANNEL_INFO_MAX_MEMBERS` for the test.
const LISTED: usize = 5;

fn success(reply: &arqon_protocol::Envelope) -> Value {
    assert_eq!(reply.status, Some(Status::Success), "{}", reply.to_json());
    data(reply)
}

async fn member(cluster: &Cluster, i: usize) -> Client {
    let subject = format!("{i:03}-{}", "s".repeat(SUBJECT_BYTES));
    let token = cluster.token_with(json!({"sub": subject, "tenant_id": "t-a"}));
    let client = cluster.client_on(0, &token).await;
    client.join("crowd", "hall").await.unwrap();
    client
}

/// 150 members with 8 KiB subjects on one edge, `ARQONBUS_CHANNEL_INFO_MAX_MEMBERS=5`.
/// The edge used to answer the presence query with every member: a reply over the bus's
/// message size, which the bus dropped, so `channel_info` waited the dispatcher's 1 s
/// query timeout and answered `member_count: 0` with `members_complete: true` (both
/// modes). Now the edge lists the first five by id and the true count.
async fn a_crowded_channel_answers_at_once_with_its_first_members(mode: Mode) {
    let cluster = Cluster::launch(Topology {
        dispatcher: DispatcherConfig {
            channel_info_max_members: LISTED as u32,
            status_max_tenants: 1,
            ..Default::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let mut members: Vec<Client> = Vec::with_capacity(MEMBERS);
    for batch in (0..MEMBERS).collect::<Vec<_>>().chunks(25) {
        members.extend(join_all(batch.iter().map(|&i| member(&cluster, i))).await);
    }
    let mut ids: Vec<&str> = members.iter().map(Client::client_id).collect();
    ids.sort_unstable();
    let viewer = cluster.client_on(0, &cluster.token("t-a", "admin")).await;

    let started = Instant::now();
    let reply = run(
        &viewer,
        "channel_info",
        json!({"room": "crowd", "channel": "hall"}),
    )
    .await;
    let took = started.elapsed();
    let info = success(&reply);
    assert_eq!(info["member_count"], MEMBERS, "{info}");
    assert_eq!(info["statistics"]["member_count"], MEMBERS);
    assert_eq!(info["members"], json!(ids[..LISTED]));
    assert_eq!(info["members_complete"], false);
    assert!(
        took < Duration::from_secs(1),
        "channel_info took {took:?}: an edge did not answer the presence query"
    );
    let by_count = r#"arqonbus_edge_presence_truncated_total{by="count"}"#;
    assert!(
        metric_value(&cluster.metrics().await, by_count) >= Some(1.0),
        "the edge counts the cut list"
    );

    // The other readers of presence: counts whole, lists as short.
    let listed = success(&run(&viewer, "list_channels", json!({"room": "crowd"})).await);
    assert_eq!(listed["channels"][0]["member_count"], MEMBERS);
    let (text, _) = refused(
        &run(
            &viewer,
            "delete_channel",
            json!({"room": "crowd", "channel": "hall"}),
        )
        .await,
        ErrorCode::DeleteChannelError,
    );
    assert!(
        text.contains(&format!("it has {MEMBERS} members")),
        "{text}"
    );
    let status = success(&run(&viewer, "status", json!({})).await);
    assert_eq!(status["clients"], json!({"t-a": MEMBERS + 1}));
    assert_eq!(status["clients_complete"], true);
    // The system authority sees every tenant: the first by name, at most
    // ARQONBUS_STATUS_MAX_TENANTS (1).
    let operator = cluster.client_on(0, &cluster.system_token("a-ops")).await;
    let status = success(&run(&operator, "status", json!({})).await);
    assert_eq!(status["clients"], json!({"a-ops": 1}));
    assert_eq!(status["clients_complete"], false);

    let mut service = crate::grpc::client(&cluster, SERVICE_TOKEN).await;
    let info = service
        .channel_info(pb::ChannelInfoRequest {
            tenant: "t-a".into(),
            room: "crowd".into(),
            channel: "hall".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.channel.unwrap().member_count, MEMBERS as u64);
    assert!(!info.members_complete);
    let listed: Vec<&str> = info.members.iter().map(|m| m.client_id.as_str()).collect();
    assert_eq!(listed, ids[..LISTED]);
    assert!(info.members[0].subject.as_ref().unwrap().len() > SUBJECT_BYTES);
    let presence = service
        .presence(pb::PresenceRequest {
            tenant: "t-a".into(),
            room: "crowd".into(),
            channel: "hall".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(presence.member_count, MEMBERS as u64);
    assert!(!presence.members_complete);
    let listed: Vec<&str> = presence
        .members
        .iter()
        .map(|m| m.client_id.as_str())
        .collect();
    assert_eq!(listed, ids[..LISTED]);
    cluster.stop().await;
}
