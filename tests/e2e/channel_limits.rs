//! Bounded channel replies and the expiry of empty channels: `list_channels` pages a room
//! too large for one bus message, `channel_info` lists a bounded number of members, and a
//! channel made by a join goes away once empty, freeing its place in the tenant's quota.

use futures_util::future::join_all;
use serde_json::{Value, json};

use arqon_dispatcher::DispatcherConfig;
use arqon_e2e::reply::{assert_refused, data, refused, run};
use arqon_e2e::{Cluster, Mode, Topology, eventually, metric_value};
use arqon_protocol::{ErrorCode, Status};
use arqon_sdk::Client;

use crate::{both_modes, each_mode};

both_modes!(a_room_too_large_for_one_reply_is_listed_in_pages);
each_mode!(
    channel_info_lists_a_bounded_number_of_members,
    empty_joined_channels_expire_and_free_their_place,
    concurrent_creations_never_pass_the_tenant_quota,
);

/// Channels in the large room.
const CHANNELS: usize = 800;
/// Connections creating them, concurrently.
const CREATORS: usize = 8;

fn long_name(i: usize) -> String {
    format!("c{i:04}-{}", "x".repeat(120))
}

fn success(reply: &arqon_protocol::Envelope) -> Value {
    assert_eq!(reply.status, Some(Status::Success), "{}", reply.to_json());
    data(reply)
}

fn names(page: &Value) -> Vec<String> {
    page["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// 800 channels with long names and 1 KiB descriptions: listed at once, well over the
/// bus's message size (1 MiB). The original answer was dropped and the client waited
/// for `TIMEOUT`; now every page fits, and paging with `after` sees each channel once.
async fn a_room_too_large_for_one_reply_is_listed_in_pages(cluster: &Cluster) {
    let token = cluster.token("t-a", "admin");
    let creators: Vec<Client> = join_all((0..CREATORS).map(|_| cluster.client_on(0, &token))).await;
    let description = "d".repeat(1024);
    join_all(creators.iter().enumerate().map(|(k, creator)| {
        let description = &description;
        async move {
            for i in (k..CHANNELS).step_by(CREATORS) {
                let reply = run(
                    creator,
                    "create_channel",
                    json!({"room": "big", "channel": long_name(i), "description": description}),
                )
                .await;
                success(&reply);
            }
        }
    }))
    .await;
    let reader = &creators[0];
    let expected: Vec<String> = (0..CHANNELS).map(long_name).collect();

    // No paging arguments: the first page (100), with the fields of before.
    let first = success(&run(reader, "list_channels", json!({"room": "big"})).await);
    assert_eq!(first["total_channels"], CHANNELS);
    assert_eq!(first["complete"], false);
    assert_eq!(names(&first), expected[..100]);
    assert_eq!(first["next_after"], expected[99]);
    let entry = first["channels"][0].as_object().unwrap();
    let mut keys: Vec<&str> = entry.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channel_id",
            "created_at",
            "created_by",
            "description",
            "last_activity",
            "member_count",
            "name"
        ]
    );
    assert_eq!(entry["description"], description);

    // The largest limit: pages end at the byte budget; every channel is seen once.
    let mut seen = Vec::new();
    let mut listed_bytes = 0;
    let mut after: Option<Value> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "paging ends");
        let mut args = json!({"room": "big", "limit": 1000});
        if let Some(after) = &after {
            args["after"] = after.clone();
        }
        let reply = run(reader, "list_channels", args).await;
        assert!(reply.to_json().len() < 600 * 1024, "a page fits the budget");
        let page = success(&reply);
        assert_eq!(page["total_channels"], CHANNELS);
        assert_eq!(page["limit"], 1000);
        listed_bytes += page["channels"].to_string().len();
        let page_names = names(&page);
        assert!(!page_names.is_empty());
        after = page.get("next_after").cloned();
        assert_eq!(page["complete"], after.is_none(), "{page_names:?}");
        if let Some(next) = &after {
            assert_eq!(next, page_names.last().unwrap());
        }
        seen.extend(page_names);
        if after.is_none() {
            break;
        }
    }
    assert!(
        listed_bytes > 1024 * 1024,
        "the room in one reply would be over the bus's message size: {listed_bytes} bytes"
    );
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // A smaller limit pages by count.
    let page = success(
        &run(
            reader,
            "list_channels",
            json!({"room": "big", "limit": 2, "after": expected[797]}),
        )
        .await,
    );
    assert_eq!(names(&page), expected[798..]);
    assert_eq!(page["complete"], true);
    assert_eq!(page.get("next_after"), None);
    // After the last name: an empty, complete page.
    let page = success(
        &run(
            reader,
            "list_channels",
            json!({"room": "big", "after": expected[799]}),
        )
        .await,
    );
    assert_eq!(names(&page), Vec::<String>::new());
    assert_eq!(page["complete"], true);

    // Invalid paging arguments.
    let limit_text = "Validation error: 'limit' must be an integer from 1 to 1000";
    for limit in [json!(0), json!(1001), json!("5"), json!(-1), json!(2.5)] {
        let reply = run(
            reader,
            "list_channels",
            json!({"room": "big", "limit": limit}),
        )
        .await;
        assert_refused(&reply, ErrorCode::ValidationError, limit_text);
    }
    let reply = run(reader, "list_channels", json!({"room": "big", "after": 5})).await;
    assert_refused(
        &reply,
        ErrorCode::ValidationError,
        "Validation error: 'after' must be a string",
    );
    let reply = run(
        reader,
        "list_channels",
        json!({"room": "big", "after": "a.b"}),
    )
    .await;
    let (text, _) = refused(&reply, ErrorCode::ValidationError);
    assert!(
        text.starts_with("Validation error: 'after' must be a channel name from a previous page ("),
        "{text}"
    );
    // A description over the bound is refused.
    let reply = run(
        reader,
        "create_channel",
        json!({"room": "big", "channel": "long", "description": "d".repeat(1025)}),
    )
    .await;
    assert_refused(
        &reply,
        ErrorCode::ValidationError,
        "Validation error: 'description' is 1025 bytes; at most 1024 are accepted",
    );
}

/// `channel_info` lists at most `ARQONBUS_CHANNEL_INFO_MAX_MEMBERS` member ids (the
/// first by id); `member_count` is the true count and `members_complete` says so.
async fn channel_info_lists_a_bounded_number_of_members(mode: Mode) {
    let cluster = Cluster::launch(Topology {
        dispatcher: DispatcherConfig {
            channel_info_max_members: 2,
            ..Default::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let members = join_all((0..3).map(|_| cluster.client("t-a"))).await;
    for member in &members {
        member.join("lab", "crowd").await.unwrap();
    }
    let mut ids: Vec<&str> = members.iter().map(Client::client_id).collect();
    ids.sort_unstable();
    let info = success(
        &run(
            &members[0],
            "channel_info",
            json!({"room": "lab", "channel": "crowd"}),
        )
        .await,
    );
    assert_eq!(info["member_count"], 3);
    assert_eq!(info["statistics"]["member_count"], 3);
    assert_eq!(info["members"], json!(ids[..2]));
    assert_eq!(info["members_complete"], false);
    members[2].leave("lab", "crowd").await.unwrap();
    let info = success(
        &run(
            &members[0],
            "channel_info",
            json!({"room": "lab", "channel": "crowd"}),
        )
        .await,
    );
    assert_eq!(info["member_count"], 2);
    assert_eq!(info["members_complete"], true);
    cluster.stop().await;
}

async fn channel_names(client: &Client, room: &str) -> Vec<String> {
    names(&success(
        &run(client, "list_channels", json!({"room": room})).await,
    ))
}

/// With `ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS=1`, a channel made by a join, left by its
/// last member and without history, is removed, and its place in the tenant's quota is
/// free again. A channel with history, one with a member and one made by
/// `create_channel` stay.
async fn empty_joined_channels_expire_and_free_their_place(mode: Mode) {
    let cluster = Cluster::launch(Topology {
        dispatcher: DispatcherConfig {
            max_channels_per_tenant: 4,
            empty_channel_ttl_seconds: 1,
            ..Default::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let member = cluster.client("t-a").await;
    success(
        &run(
            &admin,
            "create_channel",
            json!({"room": "lab", "channel": "explicit"}),
        )
        .await,
    );
    member.join("lab", "member").await.unwrap();
    admin.join("lab", "history").await.unwrap();
    admin
        .publish("lab", "history", json!({"kept": true}))
        .await
        .unwrap();
    admin.leave("lab", "history").await.unwrap();
    admin.join("lab", "auto").await.unwrap();
    admin.leave("lab", "auto").await.unwrap();
    let (text, _) = refused(
        &run(
            &admin,
            "join_channel",
            json!({"room": "lab", "channel": "new"}),
        )
        .await,
        ErrorCode::QuotaExceeded,
    );
    assert!(text.contains("4 channels"), "{text}");

    eventually("the empty joined channel expires", || async {
        channel_names(&admin, "lab").await == ["explicit", "history", "member"]
    })
    .await;
    let joined = admin.join("lab", "new").await.unwrap();
    assert_eq!(data(&joined)["created"], true, "the place is free again");
    let expired = "arqonbus_dispatcher_channels_expired_total";
    assert_eq!(
        metric_value(&cluster.dispatcher_metrics(0).await, expired),
        Some(1.0)
    );
    let refusals = "arqonbus_dispatcher_channel_quota_refusals_total";
    assert_eq!(
        metric_value(&cluster.dispatcher_metrics(0).await, refusals),
        Some(1.0)
    );

    // Another full cycle: the new one, left, expires too; the three others were swept
    // all along and stay.
    admin.leave("lab", "new").await.unwrap();
    eventually("the second empty channel expires", || async {
        channel_names(&admin, "lab").await == ["explicit", "history", "member"]
    })
    .await;
    assert_eq!(
        metric_value(&cluster.dispatcher_metrics(0).await, expired),
        Some(2.0)
    );
    cluster.stop().await;
}

/// Clients joining new channels all at once, through several dispatcher workers (and, on
/// NATS, two replicas): exactly `ARQONBUS_MAX_CHANNELS_PER_TENANT` are created, every
/// other join gets `QUOTA_EXCEEDED`. The quota is one counter reserved with a
/// compare-and-set, where it was a count of the channels read before creating one
/// (concurrent creations all saw room for one more).
async fn concurrent_creations_never_pass_the_tenant_quota(mode: Mode) {
    const QUOTA: usize = 10;
    const CLIENTS: usize = 24;
    let cluster = Cluster::launch(Topology {
        dispatchers: 2,
        dispatcher: DispatcherConfig {
            workers: 4,
            max_channels_per_tenant: QUOTA as u32,
            ..Default::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let clients = join_all((0..CLIENTS).map(|_| cluster.client("t-a"))).await;
    let replies = join_all(clients.iter().enumerate().map(|(i, client)| {
        run(
            client,
            "join_channel",
            json!({"room": "rush", "channel": format!("c{i:02}")}),
        )
    }))
    .await;
    let joined = replies
        .iter()
        .filter(|r| r.status == Some(Status::Success))
        .count();
    for reply in replies.iter().filter(|r| r.status != Some(Status::Success)) {
        refused(reply, ErrorCode::QuotaExceeded);
    }
    assert_eq!(joined, QUOTA);
    let listed = success(&run(&clients[0], "list_channels", json!({"room": "rush"})).await);
    assert_eq!(listed["total_channels"], QUOTA);
    cluster.stop().await;
}
