//! The admin console in a real browser: a headless Chromium driven over WebDriver
//! (`browser.rs`), against a real bus (`Cluster::standalone`), with real WebSocket
//! clients joining and publishing beside it.
//!
//! Screenshots of the main views are written to `docs/images/` when
//! `ARQONBUS_UPDATE_SCREENSHOTS=1`, otherwise to a temporary directory (a normal run
//! changes nothing in the repository).

// Scenario helpers are plain async functions; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod browser;

use std::path::PathBuf;

use serde_json::{Value, json};

use arqon_e2e::reply::run;
use arqon_e2e::{Cluster, Mode, SERVICE_TOKEN, Topology, eventually};
use arqon_edge::EdgeConfig;
use arqon_operators::{OperatorsConfig, WebhookSettings};
use arqon_protocol::{MessageType, Status};
use arqon_sdk::{Client, SdkError};

use browser::{Browser, LAPTOP, PHONE, WAIT};

/// One browser at a time: the machine running the suite may have two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SECRET_CONTENT: &str = "the key is AKIAIOSFODNN7EXAMPLE";

/// Where screenshots go: `docs/images/` with `ARQONBUS_UPDATE_SCREENSHOTS=1`, else a
/// temporary directory.
fn screenshot_dir() -> PathBuf {
    if std::env::var("ARQONBUS_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/images")
    } else {
        std::env::temp_dir().join("arqonbus-console-screenshots")
    }
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

/// The console's address on the cluster's edge.
fn console(cluster: &Cluster) -> String {
    cluster
        .ws_url
        .replace("ws://", "http://")
        .replace("/ws", "/console/")
}

async fn sign_in_with_token(browser: &Browser, cluster: &Cluster, token: &str) {
    browser.goto(&console(cluster)).await;
    browser.fill("#login-token", token).await;
    browser.click("#login-submit").await;
    browser.wait_for("#link.up").await;
}

async fn sign_in_as_operator(browser: &Browser, cluster: &Cluster, tenant: &str) {
    browser.goto(&console(cluster)).await;
    browser.click("#tab-operator").await;
    browser.fill("#login-service-token", SERVICE_TOKEN).await;
    browser.fill("#login-tenant", tenant).await;
    browser.click("#login-submit").await;
    browser.wait_for("#link.up").await;
}

async fn show(browser: &Browser, cluster: &Cluster, hash: &str) {
    browser.goto(&format!("{}{hash}", console(cluster))).await;
    browser.wait_for("#link.up").await;
}

/// The next room message `client` receives with `content`, others skipped.
async fn received(client: &Client, content: &str) {
    loop {
        let frame = client.recv(WAIT).await.expect("a frame in time");
        if frame.kind == MessageType::Message
            && frame.payload.get("content") == Some(Value::from(content))
        {
            return;
        }
    }
}

async fn blocked(client: &Client, room: &str, channel: &str) {
    let answer = client
        .publish(room, channel, json!({"content": SECRET_CONTENT}))
        .await;
    assert!(
        matches!(&answer, Err(SdkError::Rejected { code, .. }) if code == "CASIL_POLICY_BLOCKED_SECRET"),
        "{answer:?}"
    );
}

/// A tenant admin signs in with a JWT, creates a channel, sees a client join it, tails
/// it and sees a client's message arrive, publishes into it and the client receives
/// that, and finds both in its history. Credentials stay in session storage, never in a
/// cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_watches_and_steers_a_channel_live() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::standalone().await;
    let browser = Browser::start().await;
    browser.goto(&console(&cluster)).await;
    browser.wait_for("#login-token").await;
    screenshot(&browser, "login").await;
    sign_in_with_token(&browser, &cluster, &cluster.token("acme", "admin")).await;
    browser.wait_for_text("#identity", "acme").await;
    let (storage, cookies) = browser.storage().await;
    assert!(
        storage.get("arqonbus.console.credential").is_some(),
        "{storage}"
    );
    assert_eq!(cookies, "");

    show(&browser, &cluster, "#/channels").await;
    browser.fill("#create-room", "science").await;
    browser.fill("#create-channel", "general").await;
    browser
        .fill("#create-description", "Where the lab talks")
        .await;
    browser.click("#create-submit").await;
    browser.wait_for("#members").await;

    let member = cluster.client("acme").await;
    member.join("science", "general").await.unwrap();
    browser
        .wait_for_text("#members li", member.client_id())
        .await;

    browser.click("#tail-toggle").await;
    browser.wait_for_text("#tail-state", "tailing").await;
    member
        .publish(
            "science",
            "general",
            json!({"content": "hello from a client"}),
        )
        .await
        .unwrap();
    let shown = browser
        .wait_for_text("#tail li", "hello from a client")
        .await;
    assert!(shown.contains(member.client_id()), "{shown}");

    browser
        .fill(
            "#publish-payload",
            r#"{"content": "hello from the console"}"#,
        )
        .await;
    browser.click("#publish-submit").await;
    browser.wait_for_text("#publish-result", "Published").await;
    received(&member, "hello from the console").await;
    // The console is a member while it tails.
    browser.wait_for_text("#members li", "this console").await;
    screenshot(&browser, "channel").await;

    // Again, as a new visit: the history has both, oldest first.
    show(&browser, &cluster, "#/channels/science").await;
    browser.click("a.channel-link").await;
    browser
        .wait_for_text("#history li", "hello from the console")
        .await;
    let history = browser.texts("#history li").await;
    let first = history
        .iter()
        .position(|t| t.contains("hello from a client"));
    let second = history
        .iter()
        .position(|t| t.contains("hello from the console"));
    assert!(first.is_some() && first < second, "{history:?}");

    show(&browser, &cluster, "#/channels").await;
    browser.wait_for_text("#rooms a", "science").await;
    show(&browser, &cluster, "#/overview").await;
    browser.wait_for_text("#stat-connections", "2").await;
    browser.wait_for_text("#stat-casil", "version 1").await;
    screenshot(&browser, "overview").await;
    let mut browser = browser;
    browser.resize(PHONE).await;
    browser.wait_for("#stat-connections").await;
    screenshot(&browser, "overview-phone").await;
    browser.resize(LAPTOP).await;
    browser.close().await;
    cluster.stop().await;
}

/// A tenant admin sees its own tenant and nothing of another's: not its rooms, not its
/// channels, not its CASIL decisions; and it has no tenant picker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_see_another_tenant() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::standalone().await;
    let operator = cluster.client_on(0, &cluster.system_token("ops")).await;
    let reload = run(
        &operator,
        "op.casil.reload",
        json!({"enabled": true, "mode": "enforce", "block_on_probable_secret": true, "metadata_to_telemetry": true}),
    )
    .await;
    assert_eq!(reload.status, Some(Status::Success), "{}", reload.to_json());
    let theirs = cluster.client_on(0, &cluster.token("beta", "admin")).await;
    run(
        &theirs,
        "create_channel",
        json!({"room": "hidden-room", "channel": "plans"}),
    )
    .await;
    let ours = cluster.client_on(0, &cluster.token("acme", "admin")).await;
    run(
        &ours,
        "create_channel",
        json!({"room": "science", "channel": "general"}),
    )
    .await;

    let browser = Browser::start().await;
    sign_in_with_token(&browser, &cluster, &cluster.token("acme", "admin")).await;
    let switch = browser.wait_for("#tenant-switch").await;
    assert!(
        switch.attr("hidden").await.unwrap().is_some(),
        "no tenant picker for a tenant admin"
    );

    show(&browser, &cluster, "#/channels").await;
    browser.wait_for_text("#rooms a", "science").await;
    let rooms = browser.texts("#rooms").await.concat();
    assert!(!rooms.contains("hidden-room"), "{rooms}");
    show(&browser, &cluster, "#/channels/hidden-room/plans").await;
    let refused = browser.wait_for_text("#members .error", "not").await;
    assert!(refused.to_lowercase().contains("not found"), "{refused}");

    show(&browser, &cluster, "#/overview").await;
    browser.wait_for("#stat-connections").await;
    let page = browser.texts("#view").await.concat().to_lowercase();
    assert!(page.contains("this tenant"), "{page}");
    assert!(!page.contains("beta"), "{page}");

    show(&browser, &cluster, "#/casil").await;
    browser
        .wait_for_text("#casil-feed-state", "tenant acme")
        .await;
    blocked(&theirs, "hidden-room", "plans").await;
    blocked(&ours, "science", "general").await;
    browser
        .wait_for_text("#casil-decisions li", ours.client_id())
        .await;
    let decisions = browser.texts("#casil-decisions li").await.concat();
    assert!(!decisions.contains(theirs.client_id()), "{decisions}");
    assert!(!decisions.contains("beta"), "{decisions}");
    assert!(!decisions.contains("AKIAIOSFODNN7EXAMPLE"), "{decisions}");
    browser.close().await;
    cluster.stop().await;
}

/// The operator signs in with the service token (the edge allows it), sees a bad draft's
/// problems inline without anything changing, reloads a good one, and watches the
/// decisions of the new policy arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_checks_and_reloads_the_policy() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::launch(Topology {
        edge: EdgeConfig {
            console_operator_login: true,
            ..arqon_e2e::edge_config()
        },
        ..Topology::new(Mode::Standalone)
    })
    .await;
    let browser = Browser::start().await;
    sign_in_as_operator(&browser, &cluster, "acme").await;
    browser.wait_for_text("#identity", "operator").await;

    show(&browser, &cluster, "#/casil").await;
    browser.wait_for_text("#casil-live", "version 1").await;
    browser
        .wait_for_text("#casil-feed-state", "every tenant")
        .await;

    // A bad draft: validated, every problem shown inline, nothing changed.
    browser
        .fill(
            "#casil-draft",
            r#"{"mode": "strict", "redaction_patterns": ["("]}"#,
        )
        .await;
    browser.click("#casil-validate").await;
    browser.wait_for_text("#casil-problems li", "strict").await;
    screenshot(&browser, "casil-invalid").await;
    // Reloading it is refused with the same problems.
    browser.click("#casil-reload").await;
    browser.wait_for_text("#casil-problems li", "strict").await;
    browser.wait_for_text("#casil-live", "version 1").await;
    browser.wait_for_text("#casil-versions", "settings").await;

    browser
        .fill(
            "#casil-draft",
            r#"{"enabled": true, "mode": "enforce", "block_on_probable_secret": true, "metadata_to_telemetry": true}"#,
        )
        .await;
    browser.click("#casil-validate").await;
    browser.wait_for_text("#casil-result", "Valid").await;
    assert!(browser.texts("#casil-problems li").await.is_empty());
    browser.wait_for_text("#casil-live", "version 1").await;
    browser.click("#casil-reload").await;
    browser
        .wait_for_text("#casil-result", "version 2 is live")
        .await;
    browser.wait_for_text("#casil-live", "\"enforce\"").await;
    assert!(browser.texts("#casil-problems li").await.is_empty());
    let versions = browser.wait_for_text("#casil-versions", "enforce").await;
    assert!(versions.contains("operator"), "{versions}");

    let sender = cluster.client("acme").await;
    blocked(&sender, "science", "general").await;
    let decision = browser
        .wait_for_text("#casil-decisions li", "CASIL_POLICY_BLOCKED_SECRET")
        .await;
    assert!(decision.contains("BLOCK"), "{decision}");
    assert!(decision.contains("acme"), "{decision}");
    assert!(!decision.contains("AKIAIOSFODNN7EXAMPLE"), "{decision}");
    screenshot(&browser, "casil").await;
    browser.close().await;
    cluster.stop().await;
}

/// Two webhook receivers on 127.0.0.1: `/ok` answers 200, `/gone` 404. The server stops
/// when the returned handle is dropped.
async fn receivers() -> (String, AbortOnDrop) {
    let app = axum::Router::new()
        .route(
            "/ok",
            axum::routing::post(|| async { axum::http::StatusCode::OK }),
        )
        .route(
            "/gone",
            axum::routing::post(|| async { axum::http::StatusCode::NOT_FOUND }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, AbortOnDrop(server))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn id_of(response: &arqon_protocol::Envelope, field: &str) -> String {
    assert_eq!(
        response.status,
        Some(Status::Success),
        "{}",
        response.to_json()
    );
    response.payload.get("data").unwrap()[field]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The operators' view lists the tenant's webhook rules with each one's delivery
/// outcomes, cron jobs with their next firing, and store keys, as the operators' own
/// commands return them; a rule is removed and a job cancelled from it, through
/// `op.webhook.unregister` and `op.cron.cancel`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_view_shows_outcomes_and_removes_rules_and_jobs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::launch(Topology {
        operator: OperatorsConfig {
            webhook: WebhookSettings {
                // The receivers listen on 127.0.0.1.
                allow_private_targets: true,
                outcomes_flush_ms: 200,
                ..WebhookSettings::default()
            },
            ..OperatorsConfig::default()
        },
        ..Topology::new(Mode::Standalone)
    })
    .await;
    let (hooks, _server) = receivers().await;
    let admin = cluster.client_on(0, &cluster.token("acme", "admin")).await;
    let delivered = id_of(
        &run(
            &admin,
            "op.webhook.register",
            json!({"url": format!("{hooks}/ok"), "room": "science", "channel": "general", "persistent": true}),
        )
        .await,
        "rule_id",
    );
    let refused = id_of(
        &run(
            &admin,
            "op.webhook.register",
            json!({"url": format!("{hooks}/gone"), "room": "science", "persistent": true}),
        )
        .await,
        "rule_id",
    );
    let job_id = id_of(
        &run(
            &admin,
            "op.cron.schedule",
            json!({"room": "science", "channel": "general", "payload": {"content": "tick"},
                   "delay_seconds": 3600, "interval_seconds": 3600, "repeat_count": 24, "persistent": true}),
        )
        .await,
        "job_id",
    );
    let stored = run(
        &admin,
        "op.store.set",
        json!({"key": "greeting", "value": {"text": "hi"}}),
    )
    .await;
    assert_eq!(stored.status, Some(Status::Success), "{}", stored.to_json());
    admin
        .publish("science", "general", json!({"content": "to the hooks"}))
        .await
        .unwrap();
    eventually("both rules' outcomes are counted", || async {
        let outcomes = run(&admin, "op.webhook.outcomes", json!({})).await;
        let rules = outcomes.payload.get("data").unwrap()["rules"].clone();
        let of = |id: &str| {
            rules
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["rule_id"] == id)
                .cloned()
                .unwrap_or_default()
        };
        of(&delivered)["delivered"] == 1 && of(&refused)["failed"] == 1
    })
    .await;

    let browser = Browser::start().await;
    sign_in_with_token(&browser, &cluster, &cluster.token("acme", "admin")).await;
    show(&browser, &cluster, "#/operators").await;
    browser.wait_for_text("#webhooks", &delivered).await;
    browser
        .wait_for_text("#webhooks .outcome-last-error", "HTTP 404")
        .await;
    let delivered_counts = browser.texts("#webhooks .outcome-delivered").await;
    assert!(
        delivered_counts.iter().any(|n| n == "1"),
        "{delivered_counts:?}"
    );
    let failed_counts = browser.texts("#webhooks .outcome-failed").await;
    assert!(failed_counts.iter().any(|n| n == "1"), "{failed_counts:?}");
    browser.wait_for_text("#cron", &job_id).await;
    browser.wait_for_text("#store-keys", "greeting").await;
    browser.click("#store-keys a").await;
    browser.wait_for_text("#store-value", "hi").await;
    browser.wait_for_text("#omega", "off").await;
    screenshot(&browser, "operators").await;

    // Removing a rule and cancelling a job are the operators' own commands.
    browser.click(&format!("#remove-{refused}")).await;
    browser.wait_without_text("#webhooks", &refused).await;
    browser
        .wait_for_text("#operators-notice", "Webhook rule removed")
        .await;
    browser.wait_for_text("#webhooks", &delivered).await;
    let rules = run(&admin, "op.webhook.list", json!({})).await;
    let listed = rules.payload.get("data").unwrap()["rules"].to_string();
    assert!(
        !listed.contains(&refused) && listed.contains(&delivered),
        "{listed}"
    );
    browser.click(&format!("#cancel-{job_id}")).await;
    browser.wait_without_text("#cron", &job_id).await;
    let jobs = run(&admin, "op.cron.list", json!({})).await;
    assert_eq!(
        jobs.payload.get("data").unwrap()["count"],
        0,
        "{}",
        jobs.to_json()
    );
    browser.close().await;
    cluster.stop().await;
}

/// The operator (signed in with the service token) sees every service replica and every
/// tenant with state, not only those with connections, and opens one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_every_replica_and_every_tenant_with_state() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::launch(Topology {
        edge: EdgeConfig {
            console_operator_login: true,
            ..arqon_e2e::edge_config()
        },
        ..Topology::new(Mode::Standalone)
    })
    .await;
    {
        // Tenants with state and no connection once these clients are gone.
        let beta = cluster.client_on(0, &cluster.token("beta", "admin")).await;
        id_of(
            &run(
                &beta,
                "create_channel",
                json!({"room": "hidden-room", "channel": "plans"}),
            )
            .await,
            "channel_id",
        );
        let gamma = cluster.client_on(0, &cluster.token("gamma", "admin")).await;
        id_of(
            &run(
                &gamma,
                "op.webhook.register",
                json!({"url": "https://93.184.215.14/arqon", "room": "nowhere", "persistent": true}),
            )
            .await,
            "rule_id",
        );
    }
    let browser = Browser::start().await;
    sign_in_as_operator(&browser, &cluster, "acme").await;
    browser.wait_for_text("#identity", "operator").await;
    for replica in ["policy_", "dispatcher_", "operators_"] {
        browser.wait_for_text("#service-replicas", replica).await;
    }
    browser.wait_for_text("#tenants", "beta").await;
    browser.wait_for_text("#tenants", "gamma").await;
    // The fleet's part of the overview: the tenants and the replicas.
    browser
        .client
        .execute(
            "document.getElementById('tenants').closest('.card').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "overview-operator").await;
    browser.click("#tenant-beta").await;
    browser.wait_for_text("#identity", "beta").await;
    show(&browser, &cluster, "#/channels").await;
    browser.wait_for_text("#rooms a", "hidden-room").await;
    browser.close().await;
    cluster.stop().await;
}
