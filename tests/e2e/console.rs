//! What the admin console relies on, over the wire without a browser (the browser's own
//! tests are `tests/console`): credentials in a WebSocket subprotocol, the operator login,
//! `overview`, `list_rooms`, and the feeds of `/console/feed`.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use arqon_e2e::reply::{data, refused, run};
use arqon_e2e::{Cluster, Mode, RawSocket, SERVICE_TOKEN, Topology, WAIT, eventually, next_json};
use arqon_edge::EdgeConfig;
use arqon_protocol::ErrorCode;
use arqon_sdk::{Client, SdkError};

use crate::{both_modes, each_mode};

both_modes!(
    a_browser_connects_with_its_token_in_a_subprotocol,
    the_overview_is_the_tenants_and_the_fleets_for_the_system_authority,
    rooms_are_listed_per_tenant_a_page_at_a_time,
    casil_drafts_are_checked_without_applying_them_and_versions_are_kept,
    every_tenant_with_state_is_listed_a_page_at_a_time,
);
each_mode!(
    the_service_token_opens_a_connection_only_when_the_operator_login_is_on,
    feeds_show_admins_their_tenants_decisions_and_the_operator_every_tenants,
    the_overview_counts_queued_deliveries_and_the_feed_shows_dead_letters,
    the_overview_lists_the_replicas_of_every_service,
);

/// `url` (`ws://…/ws` or `/console/feed?…`) offered `protocols`: the socket and the
/// protocol the edge selected, or the HTTP status of the refusal.
async fn connect(url: &str, protocols: &[String]) -> Result<(RawSocket, Option<String>), u16> {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocols.join(", ")).unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            let selected = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((socket, selected))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("connect {url}: {e}"),
    }
}

fn bearer(token: &str) -> Vec<String> {
    vec!["arqonbus.v1".to_owned(), format!("arqonbus.bearer.{token}")]
}

fn service(token: &str, tenant: &str) -> Vec<String> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    vec![
        "arqonbus.v1".to_owned(),
        format!("arqonbus.service.{encoded}"),
        format!("arqonbus.tenant.{tenant}"),
    ]
}

/// Runs `command` on a raw socket; its response.
async fn command(socket: &mut RawSocket, name: &str, args: Value) -> Value {
    let id = arqon_protocol::MessageId::generate().to_string();
    let frame = json!({"id": id, "type": "command", "command": name, "args": args});
    arqon_e2e::send_json(socket, &frame).await;
    loop {
        let answer = next_json(socket).await;
        if answer["request_id"] == id.as_str() && answer["type"] == "response" {
            return answer;
        }
    }
}

/// A browser's connection: the JWT rides in a subprotocol, the edge selects
/// `arqonbus.v1` (a browser fails a connection whose server selects none) and never
/// echoes the token; without credentials the upgrade is refused as ever.
async fn a_browser_connects_with_its_token_in_a_subprotocol(cluster: &Cluster) {
    let token = cluster.token("t-a", "admin");
    let (mut socket, selected) = connect(&cluster.ws_url, &bearer(&token)).await.unwrap();
    assert_eq!(selected.as_deref(), Some("arqonbus.v1"));
    assert_eq!(
        next_json(&mut socket).await["payload"]["welcome"],
        "Connected to ArqonBus"
    );
    let status = command(&mut socket, "status", json!({})).await;
    assert_eq!(status["status"], "success", "{status}");
    assert_eq!(status["payload"]["data"]["clients"]["t-a"], 1, "{status}");
    assert_eq!(
        connect(&cluster.ws_url, &["arqonbus.v1".to_owned()])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        connect(&cluster.ws_url, &bearer("not-a-token")).await.err(),
        Some(401)
    );
}

/// `overview` answers a tenant with its own figures and the number of edges; the system
/// authority with every tenant's connections and each edge's report.
async fn the_overview_is_the_tenants_and_the_fleets_for_the_system_authority(cluster: &Cluster) {
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let other = cluster.client("t-b").await;
    admin.join("lab", "notes").await.unwrap();
    other.join("zoo", "cats").await.unwrap();
    admin
        .publish("lab", "notes", json!({"content": "one"}))
        .await
        .unwrap();
    let tenant = data(&run(&admin, "overview", json!({})).await);
    assert_eq!(tenant["scope"], "tenant", "{tenant}");
    assert_eq!(tenant["tenant"], "t-a");
    assert_eq!(tenant["connections"], 1, "{tenant}");
    assert_eq!(tenant["rooms"], 1);
    assert_eq!(tenant["channels"], 1);
    assert_eq!(tenant["stored_messages"], 1);
    assert_eq!(tenant["edges"]["alive"], 1);
    assert!(tenant["edges"].get("list").is_none(), "{tenant}");
    assert!(tenant.get("clients").is_none(), "{tenant}");
    assert_eq!(tenant["casil"]["version"], 1, "{tenant}");
    assert!(tenant["bus"]["connected"].as_bool().unwrap());

    let operator = cluster.client_on(0, &cluster.system_token("t-a")).await;
    eventually("each edge reports its traffic", || async {
        let fleet = data(&run(&operator, "overview", json!({})).await);
        fleet["edges"]["frames_in"].as_u64().unwrap_or_default() > 0
    })
    .await;
    let fleet = data(&run(&operator, "overview", json!({})).await);
    assert_eq!(fleet["scope"], "fleet", "{fleet}");
    assert_eq!(fleet["clients"]["t-b"], 1, "{fleet}");
    assert_eq!(fleet["clients"]["t-a"], 2, "{fleet}");
    let every_tenant: u64 = fleet["clients"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(fleet["connections"], every_tenant, "{fleet}");
    let edges = fleet["edges"]["list"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{fleet}");
    assert!(!edges[0]["edge_id"].as_str().unwrap().is_empty(), "{fleet}");
    assert!(edges[0]["connections"].as_u64().is_some(), "{fleet}");
    assert_eq!(edges[0]["bus_connected"], true, "{fleet}");
}

/// `list_tenants`: every tenant with channels, a history stream, webhook rules, cron
/// jobs or connections, with what it has, by name, a page at a time; for the system
/// authority only.
async fn every_tenant_with_state_is_listed_a_page_at_a_time(cluster: &Cluster) {
    // t-ch: a channel and its history (then gone); t-wh: a webhook rule; t-cr: a cron
    // job; t-conn: only a connection.
    {
        let admin = cluster.client_on(0, &cluster.token("t-ch", "admin")).await;
        admin.join("lab", "notes").await.unwrap();
        admin
            .publish("lab", "notes", json!({"content": "kept"}))
            .await
            .unwrap();
        let wh = cluster.client_on(0, &cluster.token("t-wh", "admin")).await;
        let rule = run(
            &wh,
            "op.webhook.register",
            json!({"url": "https://93.184.215.14/hook", "room": "nowhere", "persistent": true}),
        )
        .await;
        data(&rule)["rule_id"].as_str().expect("a rule");
        let cr = cluster.client_on(0, &cluster.token("t-cr", "admin")).await;
        let job = run(
            &cr,
            "op.cron.schedule",
            json!({"room": "lab", "channel": "ticks", "payload": {"content": "tick"},
                   "delay_seconds": 3600, "persistent": true}),
        )
        .await;
        data(&job)["job_id"].as_str().expect("a job");
    }
    let _connected = cluster.client("t-conn").await;
    let operator = cluster.client_on(0, &cluster.system_token("ops")).await;

    let page = |args: Value| {
        let operator = &operator;
        async move { data(&run(operator, "list_tenants", args).await) }
    };
    let listed = |answer: &Value| -> Vec<String> {
        answer["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant"].as_str().unwrap().to_owned())
            .collect()
    };
    // The clients of the block above are gone: t-ch, t-wh and t-cr are listed for
    // their state, once their edge no longer counts their connections.
    eventually("every tenant with state is listed", || async {
        let answer = page(json!({})).await;
        let tenants = listed(&answer);
        answer["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["tenant"] == "t-conn" || t["tenant"] == "ops" || t["connections"] == 0)
            && ["ops", "t-ch", "t-conn", "t-cr", "t-wh"]
                .iter()
                .all(|t| tenants.iter().any(|listed| listed == t))
    })
    .await;
    let all = page(json!({})).await;
    assert_eq!(
        listed(&all),
        ["ops", "t-ch", "t-conn", "t-cr", "t-wh"],
        "{all}"
    );
    assert_eq!(all["complete"], true, "{all}");
    assert_eq!(all["total_tenants"], 5, "{all}");
    let of = |tenant: &str| -> Value {
        all["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == tenant)
            .cloned()
            .unwrap()
    };
    assert_eq!(of("t-ch")["channels"], true, "{all}");
    assert_eq!(of("t-ch")["history"], true, "{all}");
    assert_eq!(of("t-wh")["webhook_rules"], true, "{all}");
    assert_eq!(of("t-wh")["channels"], false, "{all}");
    assert_eq!(of("t-cr")["cron_jobs"], true, "{all}");
    assert_eq!(of("t-conn")["connections"], 1, "{all}");
    assert_eq!(of("t-conn")["history"], false, "{all}");

    // Two at a time: three pages, each after the last of the previous.
    let first = page(json!({"limit": 2})).await;
    assert_eq!(listed(&first), ["ops", "t-ch"], "{first}");
    assert_eq!(first["complete"], false);
    assert_eq!(first["next_after"], "t-ch");
    let second = page(json!({"limit": 2, "after": "t-ch"})).await;
    assert_eq!(listed(&second), ["t-conn", "t-cr"], "{second}");
    let third = page(json!({"limit": 2, "after": second["next_after"]})).await;
    assert_eq!(listed(&third), ["t-wh"], "{third}");
    assert_eq!(third["complete"], true);
    assert!(third.get("next_after").is_none(), "{third}");

    // The page is bounded by ARQONBUS_STATUS_MAX_TENANTS (1000 by default).
    let (message, _) = refused(
        &run(&operator, "list_tenants", json!({"limit": 1001})).await,
        ErrorCode::ValidationError,
    );
    assert!(message.contains("ARQONBUS_STATUS_MAX_TENANTS"), "{message}");
    // A tenant admin lists nothing.
    let admin = cluster.client_on(0, &cluster.token("t-ch", "admin")).await;
    refused(
        &run(&admin, "list_tenants", json!({})).await,
        ErrorCode::AuthorizationError,
    );
}

/// The replicas of each service (`arqon_services`): a tenant admin sees how many, the
/// system authority each one with its version and uptime; a replica that stops is gone
/// from the next answer. Distributed: two dispatchers, one stopped; standalone: one of
/// each, in one process.
async fn the_overview_lists_the_replicas_of_every_service(mode: Mode) {
    let dispatchers = match mode {
        Mode::Standalone => 1,
        Mode::Distributed => 2,
    };
    let mut cluster = Cluster::launch(Topology {
        dispatchers,
        ..Topology::new(mode)
    })
    .await;
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let operator = cluster.client_on(0, &cluster.system_token("t-a")).await;
    let alive = |overview: &Value, service: &str| overview["services"][service]["alive"].clone();
    eventually("every replica has written its key", || async {
        let fleet = data(&run(&operator, "overview", json!({})).await);
        alive(&fleet, "dispatcher") == dispatchers
            && alive(&fleet, "policy") == 1
            && alive(&fleet, "operators") == 1
    })
    .await;
    let fleet = data(&run(&operator, "overview", json!({})).await);
    for service in ["policy", "dispatcher", "operators"] {
        let entry = &fleet["services"][service];
        assert_eq!(entry["list_complete"], true, "{fleet}");
        for replica in entry["list"].as_array().unwrap() {
            let id = replica["replica"].as_str().unwrap();
            assert!(id.starts_with(&format!("{service}_")), "{fleet}");
            assert_eq!(replica["version"], env!("CARGO_PKG_VERSION"), "{fleet}");
            assert!(replica["uptime_seconds"].as_u64().is_some(), "{fleet}");
            assert_eq!(replica["bus_connected"], true, "{fleet}");
        }
    }
    // The replica that answered is among those listed.
    let answered = fleet["dispatcher"]["replica"].clone();
    assert!(
        fleet["services"]["dispatcher"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["replica"] == answered),
        "{fleet}"
    );
    let tenant = data(&run(&admin, "overview", json!({})).await);
    assert_eq!(alive(&tenant, "dispatcher"), dispatchers, "{tenant}");
    assert!(
        tenant["services"]["dispatcher"].get("list").is_none(),
        "{tenant}"
    );

    if mode == Mode::Distributed {
        cluster.stop_dispatcher(1).await;
        eventually("a stopped replica removes its key", || async {
            let fleet = data(&run(&operator, "overview", json!({})).await);
            alive(&fleet, "dispatcher") == 1
        })
        .await;
    }
    drop((admin, operator));
    cluster.stop().await;
}

/// `list_rooms` lists the caller's tenant's rooms only, by name, with their channel
/// counts, a page at a time.
async fn rooms_are_listed_per_tenant_a_page_at_a_time(cluster: &Cluster) {
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let other = cluster.client_on(0, &cluster.token("t-b", "admin")).await;
    for (room, channel) in [("lab", "x"), ("lab", "y"), ("zoo", "z")] {
        run(
            &admin,
            "create_channel",
            json!({"room": room, "channel": channel}),
        )
        .await;
    }
    run(
        &other,
        "create_channel",
        json!({"room": "secret", "channel": "s"}),
    )
    .await;
    let first = data(&run(&admin, "list_rooms", json!({"limit": 1})).await);
    assert_eq!(
        first["rooms"],
        json!([{"room": "lab", "channels": 2}]),
        "{first}"
    );
    assert_eq!(first["total_rooms"], 2);
    assert_eq!(first["complete"], false);
    assert_eq!(first["next_after"], "lab");
    let second = data(&run(&admin, "list_rooms", json!({"after": "lab", "limit": 1})).await);
    assert_eq!(
        second["rooms"],
        json!([{"room": "zoo", "channels": 1}]),
        "{second}"
    );
    assert_eq!(second["complete"], true);
    assert!(second.get("next_after").is_none());
    let theirs = data(&run(&other, "list_rooms", json!({})).await);
    assert_eq!(
        theirs["rooms"],
        json!([{"room": "secret", "channels": 1}]),
        "{theirs}"
    );
    refused(
        &run(&admin, "list_rooms", json!({"after": "a.b"})).await,
        ErrorCode::ValidationError,
    );
    refused(
        &run(&admin, "list_rooms", json!({"limit": 0})).await,
        ErrorCode::ValidationError,
    );
}

fn operator_login(config: EdgeConfig) -> EdgeConfig {
    EdgeConfig {
        console_operator_login: true,
        ..config
    }
}

/// The service token opens a WebSocket with the system authority in the tenant it names,
/// only on an edge with the operator login on; a wrong one never.
async fn the_service_token_opens_a_connection_only_when_the_operator_login_is_on(mode: Mode) {
    let closed = Cluster::start(mode, arqon_e2e::edge_config()).await;
    assert_eq!(
        connect(&closed.ws_url, &service(SERVICE_TOKEN, "t-a"))
            .await
            .err(),
        Some(401)
    );
    closed.stop().await;

    let cluster = Cluster::start(mode, operator_login(arqon_e2e::edge_config())).await;
    let user = cluster.client("t-b").await;
    let (mut socket, selected) = connect(&cluster.ws_url, &service(SERVICE_TOKEN, "t-a"))
        .await
        .unwrap();
    assert_eq!(selected.as_deref(), Some("arqonbus.v1"));
    next_json(&mut socket).await;
    let status = command(&mut socket, "status", json!({})).await;
    // The system authority: every tenant's clients.
    assert_eq!(status["payload"]["data"]["clients"]["t-b"], 1, "{status}");
    assert_eq!(
        connect(
            &cluster.ws_url,
            &service("a-wrong-service-token-0123456789", "t-a")
        )
        .await
        .err(),
        Some(401)
    );
    assert_eq!(
        connect(&cluster.ws_url, &service(SERVICE_TOKEN, "a.b"))
            .await
            .err(),
        Some(401)
    );
    drop(user);
    cluster.stop().await;
}

/// The next event frame of a feed (its greeting and drop notices skipped).
async fn next_event(feed: &mut RawSocket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("a feed frame in time")
            .expect("the feed is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if frame.get("event").is_some() {
                return frame;
            }
        }
    }
}

async fn blocked(client: &Client) -> String {
    match client
        .publish(
            "lab",
            "notes",
            json!({"content": "the key is AKIAIOSFODNN7EXAMPLE"}),
        )
        .await
    {
        Err(SdkError::Rejected { code, .. }) => code,
        other => panic!("expected a block, got {other:?}"),
    }
}

/// `/console/feed?feed=casil`: a tenant admin follows its tenant's decisions, the system
/// authority every tenant's; users are refused, and the feeds per edge are bounded.
async fn feeds_show_admins_their_tenants_decisions_and_the_operator_every_tenants(mode: Mode) {
    let cluster = Cluster::launch(Topology {
        edge: EdgeConfig {
            console_max_feeds: 2,
            ..operator_login(arqon_e2e::edge_config())
        },
        ..Topology::new(mode)
    })
    .await;
    let operator = cluster.client_on(0, &cluster.system_token("t-a")).await;
    let reload = run(
        &operator,
        "op.casil.reload",
        json!({"enabled": true, "mode": "enforce", "block_on_probable_secret": true, "metadata_to_telemetry": true}),
    )
    .await;
    assert_eq!(
        reload.status,
        Some(arqon_protocol::Status::Success),
        "{}",
        reload.to_json()
    );
    let feed_url = cluster.ws_url.replace("/ws", "/console/feed?feed=casil");
    assert_eq!(
        connect(&feed_url, &bearer(&cluster.token("t-a", "user")))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        connect(&feed_url, &["arqonbus.v1".to_owned()]).await.err(),
        Some(401)
    );
    let unknown = cluster.ws_url.replace("/ws", "/console/feed?feed=rooms");
    assert_eq!(
        connect(&unknown, &bearer(&cluster.token("t-a", "admin")))
            .await
            .err(),
        Some(400)
    );

    let (mut tenant_feed, selected) = connect(&feed_url, &bearer(&cluster.token("t-a", "admin")))
        .await
        .unwrap();
    assert_eq!(selected.as_deref(), Some("arqonbus.v1"));
    let (mut fleet_feed, _) = connect(&feed_url, &service(SERVICE_TOKEN, "t-a"))
        .await
        .unwrap();
    // Two feeds on this edge: a third waits for one to close.
    assert_eq!(
        connect(&feed_url, &bearer(&cluster.token("t-a", "admin")))
            .await
            .err(),
        Some(503)
    );
    // The greetings say what each follows; once read, the subscriptions exist.
    let greeting =
        |frame: Message| -> Value { serde_json::from_str(frame.to_text().unwrap()).unwrap() };
    let hello = greeting(tenant_feed.next().await.unwrap().unwrap());
    assert_eq!(hello["scope"], "t-a", "{hello}");
    let hello = greeting(fleet_feed.next().await.unwrap().unwrap());
    assert_eq!(hello["scope"], "fleet", "{hello}");

    let theirs = cluster.client("t-b").await;
    let ours = cluster.client("t-a").await;
    assert_eq!(blocked(&theirs).await, "CASIL_POLICY_BLOCKED_SECRET");
    assert_eq!(blocked(&ours).await, "CASIL_POLICY_BLOCKED_SECRET");
    // The tenant's admin sees its own tenant's block first: the other tenant's, published
    // before it, never reaches it.
    let event = next_event(&mut tenant_feed).await;
    assert_eq!(event["tenant"], "t-a", "{event}");
    assert_eq!(event["event"]["client_id"], ours.client_id(), "{event}");
    assert_eq!(event["event"]["metadata"]["decision"], "BLOCK");
    assert!(
        !event.to_string().contains("AKIAIOSFODNN7EXAMPLE"),
        "{event}"
    );
    // The operator sees both tenants'.
    let mut tenants = vec![
        next_event(&mut fleet_feed).await["tenant"]
            .as_str()
            .unwrap()
            .to_owned(),
        next_event(&mut fleet_feed).await["tenant"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    tenants.sort();
    assert_eq!(tenants, ["t-a", "t-b"]);
    drop(tenant_feed);
    eventually("a closed feed frees its place", || async {
        match connect(&feed_url, &bearer(&cluster.token("t-a", "admin"))).await {
            Ok(_) => true,
            Err(status) => {
                assert_eq!(status, 503);
                false
            }
        }
    })
    .await;
    cluster.stop().await;
}

/// `op.casil.validate` checks a draft as a reload would and changes nothing; only the
/// system authority may. `op.casil.history` lists the kept versions, newest first.
async fn casil_drafts_are_checked_without_applying_them_and_versions_are_kept(cluster: &Cluster) {
    let operator = cluster.client_on(0, &cluster.system_token("t-a")).await;
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let (message, _) = refused(
        &run(&admin, "op.casil.validate", json!({"mode": "enforce"})).await,
        ErrorCode::AuthorizationError,
    );
    assert!(message.contains("Only the system authority"), "{message}");

    let bad = data(
        &run(
            &operator,
            "op.casil.validate",
            json!({"mode": "strict", "redaction_patterns": ["("]}),
        )
        .await,
    );
    assert_eq!(bad["valid"], false, "{bad}");
    let problems: Vec<&str> = bad["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("strict")),
        "{problems:?}"
    );
    assert!(bad.get("policy").is_none(), "{bad}");
    let good = data(&run(&operator, "op.casil.validate", json!({"mode": "enforce"})).await);
    assert_eq!(good["valid"], true, "{good}");
    assert_eq!(good["problems"], json!([]));
    assert_eq!(good["policy"]["mode"], "enforce");
    // Validated, not applied.
    let live = data(&run(&admin, "op.casil.get", json!({})).await);
    assert_eq!(live["version"], 1, "{live}");
    assert_eq!(live["mode"], "monitor", "{live}");

    let first = data(&run(&admin, "op.casil.history", json!({})).await);
    assert_eq!(first["count"], 1, "{first}");
    assert_eq!(first["complete"], true);
    assert_eq!(first["versions"][0]["version"], 1);
    assert_eq!(first["versions"][0]["updated_by"], "settings");
    let reloaded = run(&operator, "op.casil.reload", json!({"mode": "enforce"})).await;
    assert_eq!(
        reloaded.status,
        Some(arqon_protocol::Status::Success),
        "{}",
        reloaded.to_json()
    );
    let kept = data(&run(&admin, "op.casil.history", json!({})).await);
    assert_eq!(kept["count"], 2, "{kept}");
    let versions = kept["versions"].as_array().unwrap();
    assert_eq!(versions[0]["version"], 2, "newest first: {kept}");
    assert_eq!(versions[0]["policy"]["mode"], "enforce");
    assert!(
        versions[0]["updated_by"]
            .as_str()
            .unwrap()
            .contains("operator"),
        "{kept}"
    );
    assert_eq!(versions[1]["version"], 1);
    assert_eq!(versions[1]["policy"]["mode"], "monitor");
}

/// A webhook target that accepts connections and answers nothing until released: the
/// delivery stays in the queue meanwhile; released, the attempt fails.
async fn holding_target() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut released = std::pin::pin!(released);
        loop {
            tokio::select! {
                _ = &mut released => return,
                accepted = listener.accept() => {
                    if let Ok((socket, _)) = accepted {
                        held.push(socket);
                    }
                }
            }
        }
    });
    (addr, release)
}

/// `overview` counts a tenant's deliveries waiting in the webhook queue (the fleet's
/// for the system authority), and a delivery that runs out of attempts reaches the
/// tenant admin's `dead_letters` feed without its body.
async fn the_overview_counts_queued_deliveries_and_the_feed_shows_dead_letters(mode: Mode) {
    let cluster = Cluster::launch(Topology {
        operator: arqon_operators::OperatorsConfig {
            webhook: arqon_operators::WebhookSettings {
                allow_private_targets: true,
                max_attempts: 1,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let admin_token = cluster.token("t-a", "admin");
    let admin = cluster.client_on(0, &admin_token).await;
    let other = cluster.client_on(0, &cluster.token("t-b", "admin")).await;
    let operator = cluster.client_on(0, &cluster.system_token("t-a")).await;
    let feed_url = cluster
        .ws_url
        .replace("/ws", "/console/feed?feed=dead_letters");
    let (mut feed, _) = connect(&feed_url, &bearer(&admin_token)).await.unwrap();
    let hello = next_frame(&mut feed).await;
    assert_eq!(hello["scope"], "t-a", "{hello}");

    let (target, release) = holding_target().await;
    let rule = run(
        &admin,
        "op.webhook.register",
        json!({"url": format!("http://{target}/hook"), "room": "lab", "channel": "notes", "timeout_seconds": 30}),
    )
    .await;
    let rule_id = data(&rule)["rule_id"].as_str().unwrap().to_owned();
    assert_eq!(webhook_queue(&admin).await["queued"], 0);
    admin
        .publish("lab", "notes", json!({"content": "to the hook"}))
        .await
        .unwrap();
    eventually("the delivery is counted in the tenant's queue", || async {
        webhook_queue(&admin).await["queued"]
            .as_u64()
            .unwrap_or_default()
            >= 1
    })
    .await;
    let fleet = webhook_queue(&operator).await;
    assert!(fleet["queued"].as_u64().unwrap() >= 1, "{fleet}");
    assert!(fleet["tenant_queued"].as_u64().unwrap() >= 1, "{fleet}");
    assert!(fleet["bytes"].as_u64().unwrap() > 0, "{fleet}");
    assert_eq!(
        webhook_queue(&other).await["queued"],
        0,
        "another tenant's queue is its own"
    );

    drop(release);
    let letter = next_event(&mut feed).await;
    assert_eq!(letter["feed"], "dead_letters", "{letter}");
    assert_eq!(letter["tenant"], "t-a", "{letter}");
    assert_eq!(letter["event"]["rule_id"], rule_id.as_str(), "{letter}");
    assert_eq!(letter["event"]["attempts"], 1, "{letter}");
    assert!(letter["event"].get("body").is_none(), "{letter}");
    assert!(
        letter["event"]["body_bytes"].as_u64().unwrap() > 0,
        "{letter}"
    );
    assert!(!letter.to_string().contains("to the hook"), "{letter}");
    eventually("the queue is empty again", || async {
        webhook_queue(&admin).await["queued"] == 0
    })
    .await;
    cluster.stop().await;
}

/// `overview`'s `webhooks` for `client`.
async fn webhook_queue(client: &Client) -> Value {
    data(&run(client, "overview", json!({})).await)["webhooks"].clone()
}

/// The next text frame of a feed, as JSON.
async fn next_frame(feed: &mut RawSocket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("a feed frame in time")
            .expect("the feed is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}
