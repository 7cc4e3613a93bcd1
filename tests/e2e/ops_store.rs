//! `op.store.*` over the wire (the original's `op.store` and its acceptance scenarios 37-38): every reply and refusal, namespaces that
//! never leave their tenant (the original's hole), admins crossing tenants, the limits,
//! compare-and-set and expiry.

use serde_json::{Value, json};

use crate::each_mode;
use arqon_bus::KvConfig;
use arqon_e2e::reply::{ok, refused, run};
use arqon_e2e::{Cluster, Mode, Topology, eventually};
use arqon_operators::{OperatorsConfig, StoreSettings};
use arqon_protocol::{ErrorCode, Status, subject};
use arqon_sdk::Client;

each_mode!(
    the_store_round_trips,
    the_default_namespace_is_per_tenant,
    an_explicit_namespace_never_leaves_the_tenant,
    only_the_system_authority_may_use_another_tenants_store,
    arguments_are_checked,
    limits_are_enforced,
    writes_may_compare_and_set,
    values_expire,
    the_key_limit_is_exact,
    long_listings_come_in_pages,
);

async fn launch(mode: Mode, store: StoreSettings) -> Cluster {
    Cluster::launch(Topology {
        operator: OperatorsConfig {
            store,
            ..OperatorsConfig::default()
        },
        ..Topology::new(mode)
    })
    .await
}

async fn set(client: &Client, args: Value) -> Value {
    ok(
        &run(client, "op.store.set", args).await,
        "Store value written",
    )
}

async fn get(client: &Client, args: Value) -> Value {
    ok(
        &run(client, "op.store.get", args).await,
        "Store value retrieved",
    )
}

async fn list(client: &Client, args: Value) -> Value {
    ok(
        &run(client, "op.store.list", args).await,
        "Store keys listed",
    )
}

/// The original's acceptance scenario 37, and every data field of its `op.store` replies.
async fn the_store_round_trips(mode: Mode) {
    let cluster = launch(mode, StoreSettings::default()).await;
    let client = cluster.client("t-a").await;

    let value = json!({"n": 1, "tags": ["x", "y"], "nested": {"ok": true}});
    let written = set(&client, json!({"key": "alpha", "value": value})).await;
    assert_eq!(written["namespace"], "tenant:t-a");
    assert_eq!(written["key"], "alpha");
    assert_eq!(written["updated"], false);
    assert_eq!(written["expires_at"], Value::Null);
    let first = written["revision"].as_u64().unwrap();
    assert!(first > 0);

    let read = get(&client, json!({"key": "alpha"})).await;
    assert_eq!(
        read,
        json!({"namespace": "tenant:t-a", "key": "alpha", "found": true, "value": value,
               "revision": first, "expires_at": null})
    );
    let listed = list(&client, json!({})).await;
    assert_eq!(
        listed,
        json!({"namespace": "tenant:t-a", "count": 1, "total": 1, "complete": true,
               "keys": ["alpha"]})
    );
    let deleted = ok(
        &run(&client, "op.store.delete", json!({"key": "alpha"})).await,
        "Store value deleted",
    );
    assert_eq!(
        deleted,
        json!({"namespace": "tenant:t-a", "key": "alpha", "deleted": true})
    );

    // Not found is a success; so is deleting what is not there.
    let read = get(&client, json!({"key": "alpha"})).await;
    assert_eq!(
        (read["found"].clone(), read["value"].clone()),
        (json!(false), Value::Null)
    );
    let deleted = ok(
        &run(&client, "op.store.delete", json!({"key": "alpha"})).await,
        "Store value deleted",
    );
    assert_eq!(deleted["deleted"], false);

    // Any JSON value but null, falsy ones included; updates say so; keys are trimmed
    // and listed in order.
    for (key, value) in [
        ("gamma", json!(0)),
        (" beta ", json!("")),
        ("Alpha", json!([])),
    ] {
        let written = set(&client, json!({"key": key, "value": value})).await;
        assert_eq!(written["key"], key.trim());
        assert_eq!(written["updated"], false);
        assert_eq!(get(&client, json!({"key": key})).await["value"], value);
    }
    let again = set(&client, json!({"key": "gamma", "value": false})).await;
    assert_eq!(again["updated"], true);
    assert_eq!(get(&client, json!({"key": "gamma"})).await["value"], false);
    let listed = list(&client, json!({})).await;
    assert_eq!(listed["keys"], json!(["Alpha", "beta", "gamma"]));
    assert_eq!(listed["count"], 3);
    cluster.stop().await;
}

/// The original's acceptance scenario 38.
async fn the_default_namespace_is_per_tenant(mode: Mode) {
    let cluster = launch(mode, StoreSettings::default()).await;
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-b").await;
    let other_a = cluster.client("t-a").await;
    set(&a, json!({"key": "shared", "value": "from-a"})).await;
    let read = get(&b, json!({"key": "shared"})).await;
    assert_eq!(
        (read["namespace"].clone(), read["found"].clone()),
        (json!("tenant:t-b"), json!(false))
    );
    assert_eq!(list(&b, json!({})).await["count"], 0);
    assert_eq!(
        get(&other_a, json!({"key": "shared"})).await["value"],
        "from-a"
    );
    // A tenant whose name extends another's sees nothing of it either.
    let ab = cluster.client("t-ab").await;
    assert_eq!(list(&ab, json!({})).await["count"], 0);
    cluster.stop().await;
}

/// The regression of the original `op.store`'s hole: an explicit namespace is a sub-namespace of the
/// caller's tenant, whatever it is called.
async fn an_explicit_namespace_never_leaves_the_tenant(mode: Mode) {
    let cluster = launch(mode, StoreSettings::default()).await;
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-b").await;
    set(&b, json!({"key": "secret", "value": "b's"})).await;

    let written = set(
        &a,
        json!({"namespace": "tenant:t-b", "key": "secret", "value": "a's"}),
    )
    .await;
    assert_eq!(written["namespace"], "tenant:t-a/tenant:t-b");
    assert_eq!(written["updated"], false, "t-b's key was not touched");
    let read = get(&a, json!({"namespace": "tenant:t-b", "key": "secret"})).await;
    assert_eq!(read["value"], "a's");
    assert_eq!(get(&b, json!({"key": "secret"})).await["value"], "b's");
    let read = get(&b, json!({"namespace": "tenant:t-b", "key": "secret"})).await;
    assert_eq!(read["namespace"], "tenant:t-b/tenant:t-b");
    assert_eq!(read["found"], false);

    // Namespaces are apart from each other and from the root.
    set(&a, json!({"namespace": "cache", "key": "k", "value": 1})).await;
    set(&a, json!({"namespace": "cache.x", "key": "k", "value": 2})).await;
    set(&a, json!({"namespace": "cach", "key": "k.1", "value": 3})).await;
    let cache = list(&a, json!({"namespace": "cache"})).await;
    assert_eq!(
        cache,
        json!({"namespace": "tenant:t-a/cache", "count": 1, "total": 1, "complete": true,
               "keys": ["k"]})
    );
    assert_eq!(
        list(&a, json!({"namespace": "cach"})).await["keys"],
        json!(["k.1"])
    );
    assert_eq!(
        get(&a, json!({"namespace": "cache.x", "key": "k"})).await["value"],
        2
    );
    assert_eq!(list(&a, json!({})).await["count"], 0);
    assert_eq!(list(&b, json!({"namespace": "cache"})).await["count"], 0);
    cluster.stop().await;
}

/// A tenant's admin is the admin of its tenant only (ADR 015): another tenant's store
/// takes the fleet-wide authority.
async fn only_the_system_authority_may_use_another_tenants_store(mode: Mode) {
    let cluster = launch(mode, StoreSettings::default()).await;
    let b = cluster.client("t-b").await;
    let admin = cluster.client_on(0, &cluster.system_token("t-a")).await;
    let user = cluster.client("t-a").await;
    let tenant_admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    set(&b, json!({"key": "k", "value": "b's"})).await;

    let read = get(&admin, json!({"tenant": "t-b", "key": "k"})).await;
    assert_eq!(
        (read["namespace"].clone(), read["value"].clone()),
        (json!("tenant:t-b"), json!("b's"))
    );
    let written = set(
        &admin,
        json!({"tenant": "t-b", "namespace": "ops", "key": "note", "value": "from the admin"}),
    )
    .await;
    assert_eq!(written["namespace"], "tenant:t-b/ops");
    assert_eq!(
        get(&b, json!({"namespace": "ops", "key": "note"})).await["value"],
        "from the admin"
    );
    assert_eq!(
        list(&admin, json!({"tenant": "t-b"})).await["keys"],
        json!(["k"])
    );
    // Without `tenant`, an admin is in its own tenant like anyone.
    assert_eq!(get(&admin, json!({"key": "k"})).await["found"], false);

    for (command, args) in [
        ("op.store.get", json!({"tenant": "t-b", "key": "k"})),
        (
            "op.store.set",
            json!({"tenant": "t-b", "key": "k", "value": 1}),
        ),
        ("op.store.delete", json!({"tenant": "t-b", "key": "k"})),
        ("op.store.list", json!({"tenant": "t-b"})),
    ] {
        for caller in [&user, &tenant_admin] {
            let (message, _) = refused(
                &run(caller, command, args.clone()).await,
                ErrorCode::AuthorizationError,
            );
            assert_eq!(
                message,
                "Only the system authority can use another tenant's store (a tenant's admin uses its own)",
                "{command}"
            );
        }
    }
    assert_eq!(get(&b, json!({"key": "k"})).await["value"], "b's");
    // Naming one's own tenant is fine.
    assert_eq!(
        list(&user, json!({"tenant": "t-a"})).await["namespace"],
        "tenant:t-a"
    );
    let (message, _) = refused(
        &run(&admin, "op.store.list", json!({"tenant": "t.b"})).await,
        ErrorCode::ValidationError,
    );
    assert!(
        message.starts_with("Invalid tenant name 't.b'"),
        "{message}"
    );
    cluster.stop().await;
}

async fn arguments_are_checked(mode: Mode) {
    let cluster = launch(mode, StoreSettings::default()).await;
    let client = cluster.client("t-a").await;
    let cases = [
        ("op.store.set", json!({"value": 1}), "'key' is required"),
        (
            "op.store.set",
            json!({"key": "  ", "value": 1}),
            "'key' is required",
        ),
        ("op.store.get", json!({}), "'key' is required"),
        ("op.store.delete", json!({"key": null}), "'key' is required"),
        ("op.store.set", json!({"key": "k"}), "'value' is required"),
        (
            "op.store.set",
            json!({"key": "k", "value": null}),
            "'value' is required",
        ),
        (
            "op.store.get",
            json!({"key": {"a": 1}}),
            "'key' must be a string",
        ),
        (
            "op.store.set",
            json!({"key": "k", "value": 1, "expected_revision": -1}),
            "'expected_revision' must be a non-negative integer",
        ),
        (
            "op.store.set",
            json!({"key": "k", "value": 1, "ttl_seconds": "soon"}),
            "'ttl_seconds' must be a number, not 'soon'",
        ),
        (
            "op.store.set",
            json!({"key": "k", "value": 1, "ttl_seconds": 0}),
            "'ttl_seconds' must be > 0",
        ),
        (
            "op.store.list",
            json!({"namespace": ["x"]}),
            "'namespace' must be a string",
        ),
    ];
    for (command, args, expected) in cases {
        let (message, _) = refused(
            &run(&client, command, args.clone()).await,
            ErrorCode::ValidationError,
        );
        assert_eq!(message, expected, "{command} {args}");
    }
    let long = "n".repeat(65);
    for namespace in [long.as_str(), "bell\u{7}"] {
        let (message, _) = refused(
            &run(&client, "op.store.list", json!({"namespace": namespace})).await,
            ErrorCode::ValidationError,
        );
        assert!(message.starts_with("Invalid namespace '"), "{message}");
        assert!(
            message.contains("1-64 bytes without control characters"),
            "{message}"
        );
    }
    assert_eq!(
        list(&client, json!({})).await["count"],
        0,
        "nothing was written"
    );
    cluster.stop().await;
}

async fn limits_are_enforced(mode: Mode) {
    let store = StoreSettings {
        max_key_bytes: 8,
        max_value_bytes: 32,
        max_keys_per_tenant: 2,
        ..StoreSettings::default()
    };
    let cluster = launch(mode, store).await;
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-b").await;

    let (message, _) = refused(
        &run(&a, "op.store.set", json!({"key": "123456789", "value": 1})).await,
        ErrorCode::ValidationError,
    );
    assert_eq!(message, "'key' is too long: 9 bytes, the limit is 8");
    let (message, _) = refused(
        &run(&a, "op.store.get", json!({"key": "ééééé"})).await,
        ErrorCode::ValidationError,
    );
    assert_eq!(message, "'key' is too long: 10 bytes, the limit is 8");
    let big = "x".repeat(31); // 33 bytes of JSON text
    let (message, _) = refused(
        &run(&a, "op.store.set", json!({"key": "k", "value": big})).await,
        ErrorCode::ValidationError,
    );
    assert_eq!(message, "'value' is too large: 33 bytes, the limit is 32");
    set(&a, json!({"key": "12345678", "value": "x".repeat(30)})).await;

    set(&a, json!({"key": "k2", "value": 2})).await;
    let full = "Store key limit reached: tenant 't-a' has 2 keys, the limit is 2";
    let (message, _) = refused(
        &run(&a, "op.store.set", json!({"key": "k3", "value": 3})).await,
        ErrorCode::ValidationError,
    );
    assert_eq!(message, full);
    // Every namespace of the tenant counts; other tenants have their own.
    let (message, _) = refused(
        &run(
            &a,
            "op.store.set",
            json!({"namespace": "other", "key": "k3", "value": 3}),
        )
        .await,
        ErrorCode::ValidationError,
    );
    assert_eq!(message, full);
    set(&b, json!({"key": "k3", "value": 3})).await;
    // Updates are not new keys; a deleted key makes room.
    assert_eq!(
        set(&a, json!({"key": "k2", "value": 4})).await["updated"],
        true
    );
    run(&a, "op.store.delete", json!({"key": "k2"})).await;
    set(&a, json!({"key": "k3", "value": 3})).await;
    cluster.stop().await;
}

async fn writes_may_compare_and_set(mode: Mode) {
    let cluster = launch(mode, StoreSettings::default()).await;
    let a = cluster.client("t-a").await;
    let other = cluster.client("t-a").await;

    let created = set(&a, json!({"key": "k", "value": 1, "expected_revision": 0})).await;
    let first = created["revision"].as_u64().unwrap();
    let (message, _) = refused(
        &run(
            &other,
            "op.store.set",
            json!({"key": "k", "value": 2, "expected_revision": 0}),
        )
        .await,
        ErrorCode::Conflict,
    );
    assert_eq!(
        message,
        format!("Store key 'k' already has a value (revision {first})")
    );

    let second = set(
        &a,
        json!({"key": "k", "value": 2, "expected_revision": first}),
    )
    .await;
    assert_eq!(second["updated"], true);
    let second = second["revision"].as_u64().unwrap();
    assert!(second > first);
    let (message, _) = refused(
        &run(
            &other,
            "op.store.set",
            json!({"key": "k", "value": 3, "expected_revision": first}),
        )
        .await,
        ErrorCode::Conflict,
    );
    assert_eq!(
        message,
        format!("Store key 'k' is at revision {second}, not {first}")
    );
    let read = get(&other, json!({"key": "k"})).await;
    assert_eq!(
        (read["value"].clone(), read["revision"].clone()),
        (json!(2), json!(second))
    );

    run(&a, "op.store.delete", json!({"key": "k"})).await;
    let (message, _) = refused(
        &run(
            &a,
            "op.store.set",
            json!({"key": "k", "value": 4, "expected_revision": second}),
        )
        .await,
        ErrorCode::Conflict,
    );
    assert_eq!(
        message,
        format!("Store key 'k' has no value (expected revision {second})")
    );
    set(&a, json!({"key": "k", "value": 4, "expected_revision": 0})).await;
    cluster.stop().await;
}

async fn values_expire(mode: Mode) {
    let store = StoreSettings {
        sweep_interval_ms: 50,
        max_keys_per_tenant: 2,
        ..StoreSettings::default()
    };
    let cluster = launch(mode, store).await;
    let a = cluster.client("t-a").await;

    let later = set(&a, json!({"key": "later", "value": 1, "ttl_seconds": 3600})).await;
    assert!(
        later["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+00:00")),
        "{later}"
    );
    let read = get(&a, json!({"key": "later"})).await;
    assert_eq!(read["expires_at"], later["expires_at"]);
    let soon = set(&a, json!({"key": "soon", "value": 2, "ttl_seconds": 0.2})).await;
    assert!(soon["expires_at"].is_string());

    let a = &a;
    eventually("the value expires", || async move {
        get(a, json!({"key": "soon"})).await["found"] == false
    })
    .await;
    assert_eq!(list(a, json!({})).await["keys"], json!(["later"]));
    // Expired keys do not count against the limit.
    set(a, json!({"key": "next", "value": 3})).await;

    // The sweep deletes the expired value and its marker from the bucket.
    let bus = cluster.bus().await;
    let bucket = bus
        .key_value(KvConfig {
            storage: bus.durable_storage(),
            ..KvConfig::new(subject::STORE_BUCKET)
        })
        .await
        .unwrap();
    let bucket = &bucket;
    eventually("the sweep deletes the expired value", || async move {
        let keys = bucket.keys().await.unwrap();
        !keys.iter().any(|k| k.contains(".soon"))
    })
    .await;
    let keys = bucket.keys().await.unwrap();
    assert!(keys.contains(&"d.t-a.=.later".to_owned()), "{keys:?}");
    assert!(keys.contains(&"x.t-a.=.later".to_owned()), "{keys:?}");
    assert_eq!(get(a, json!({"key": "later"})).await["value"], 1);

    // Rewriting a key with a TTL keeps one marker; deleting it leaves nothing.
    for value in 0..20 {
        set(
            a,
            json!({"key": "later", "value": value, "ttl_seconds": 3600}),
        )
        .await;
    }
    let of_later = || async move {
        let keys = bucket.keys().await.unwrap();
        keys.into_iter()
            .filter(|k| k.contains(".later"))
            .collect::<Vec<_>>()
    };
    assert_eq!(of_later().await, ["d.t-a.=.later", "x.t-a.=.later"]);
    let deleted = run(a, "op.store.delete", json!({"key": "later"})).await;
    ok(&deleted, "Store value deleted");
    assert_eq!(of_later().await, Vec::<String>::new());
    cluster.stop().await;
}

/// New keys written at once by several clients take exactly the tenant's places; a
/// delete frees one, and so does an expiry. On nats-server two operators replicas sweep,
/// but the harness's dispatcher calls the first alone: writes through two replicas at
/// once are `services/operators/tests/store_places.rs`.
async fn the_key_limit_is_exact(mode: Mode) {
    const LIMIT: usize = 3;
    let store = StoreSettings {
        max_keys_per_tenant: LIMIT,
        sweep_interval_ms: 50,
        ..StoreSettings::default()
    };
    let cluster = Cluster::launch(Topology {
        operators: 2,
        operator: OperatorsConfig {
            store,
            ..OperatorsConfig::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(cluster.client("t-a").await);
    }
    let full = "Store key limit reached: tenant 't-a' has 3 keys, the limit is 3";
    // The keys `<prefix><n>`, n < count, written at once; those accepted.
    let write_at_once = async |prefix: &str, count: usize| {
        let writes = (0..count).map(|n| {
            let (client, key) = (&clients[n % clients.len()], format!("{prefix}{n}"));
            async move {
                let response = run(client, "op.store.set", json!({"key": key, "value": n})).await;
                if response.status == Some(Status::Success) {
                    return Some(key);
                }
                let (message, _) = refused(&response, ErrorCode::ValidationError);
                assert_eq!(message, full);
                None
            }
        });
        let written: Vec<String> = futures_util::future::join_all(writes)
            .await
            .into_iter()
            .flatten()
            .collect();
        written
    };
    let a = &clients[0];

    let written = write_at_once("k", 12).await;
    assert_eq!(written.len(), LIMIT, "{written:?}");
    assert_eq!(list(a, json!({})).await["total"], LIMIT);
    // Rewriting one is no new key; one more new key is refused.
    set(a, json!({"key": written[0], "value": "again"})).await;
    assert!(write_at_once("more", 1).await.is_empty());

    // A delete frees one place.
    let deleted = run(a, "op.store.delete", json!({"key": written[0]})).await;
    assert_eq!(ok(&deleted, "Store value deleted")["deleted"], true);
    assert_eq!(write_at_once("after-delete-", 8).await.len(), 1);

    // So does an expiry.
    set(
        a,
        json!({"key": written[1], "value": 1, "ttl_seconds": 0.2}),
    )
    .await;
    let expiring = &written[1];
    eventually("the value expires", || async move {
        get(a, json!({"key": expiring})).await["found"] == false
    })
    .await;
    assert_eq!(write_at_once("after-expiry-", 8).await.len(), 1);
    assert_eq!(list(a, json!({})).await["total"], LIMIT);
    cluster.stop().await;
}

/// The operators service gone (distributed): an `op.*` command is answered with
/// `UNAVAILABLE` and a message saying so, and the connection goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_operators_service_commands_are_answered_unavailable() {
    let mut cluster = launch(Mode::Distributed, StoreSettings::default()).await;
    let client = cluster.client("t-a").await;
    ok(
        &run(&client, "op.store.set", json!({"key": "k", "value": 1})).await,
        "Store value written",
    );
    cluster.stop_operators(0).await;
    let response = run(&client, "op.store.get", json!({"key": "k"})).await;
    assert_eq!(
        refused(&response, ErrorCode::Unavailable).0,
        "Failed to read the store value: the operators service is unavailable"
    );
    let pong = run(&client, "ping", json!({})).await;
    assert_eq!(pong.status, Some(Status::Success), "{}", pong.to_json());
    cluster.stop().await;
}

/// A namespace whose key names alone are over the bus's message size (1 MiB) lists in
/// pages, each key exactly once, instead of a reply that never arrives (`TIMEOUT`).
async fn long_listings_come_in_pages(mode: Mode) {
    const KEYS: usize = 2700;
    let store = StoreSettings {
        max_key_bytes: 400,
        ..StoreSettings::default()
    };
    let cluster = launch(mode, store).await;
    let key = |i: usize| format!("{i:04}{}", "k".repeat(396));
    let writers = 6;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = cluster.client("t-a").await;
        tasks.push(tokio::spawn(async move {
            for i in (w..KEYS).step_by(writers) {
                set(&client, json!({"key": key(i), "value": i})).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let a = cluster.client("t-a").await;
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page = list(&a, json!({"after": after})).await;
        pages += 1;
        assert_eq!(page["total"], KEYS, "{}", page["total"]);
        let keys = page["keys"].as_array().unwrap();
        assert_eq!(page["count"], keys.len());
        assert!(!keys.is_empty());
        seen.extend(keys.iter().map(|k| k.as_str().unwrap().to_owned()));
        if page["complete"] == true {
            assert!(page.get("next_after").is_none(), "{}", page["next_after"]);
            break;
        }
        assert_eq!(page["next_after"], *keys.last().unwrap());
        after = page["next_after"].clone();
        assert!(pages < 10, "the listing does not end");
    }
    assert_eq!(seen, (0..KEYS).map(key).collect::<Vec<_>>());
    assert!(pages >= 3, "1000 keys a page at most: {pages}");
    // A small page, and a bad limit.
    let page = list(&a, json!({"limit": 2})).await;
    assert_eq!(page["keys"], json!([key(0), key(1)]));
    assert_eq!(page["next_after"], key(1));
    let (message, _) = refused(
        &run(&a, "op.store.list", json!({"limit": 0})).await,
        ErrorCode::ValidationError,
    );
    assert_eq!(message, "'limit' must be an integer from 1 to 1000");
    cluster.stop().await;
}
