//! KV buckets: operations, compare-and-set, keys, watches, expiry, configuration.

use std::time::Duration;

use arqon_bus::{Bus, BusError, Bytes, KvConfig, KvEvent, KvStore, KvWatch, Storage};

use crate::support::{EXPIRY_WAIT, QUIET, WAIT, eventually};

conformance!(
    kv_operations,
    kv_compare_and_set,
    kv_create_conflicts_only_with_a_live_value,
    kv_keys_are_sorted_and_skip_deleted,
    kv_keys_matching_filters_on_tokens,
    kv_keys_matching_reads_past_one_batch,
    kv_entries_matching_gives_the_latest_values_and_revisions,
    kv_history_gives_the_kept_values_of_a_key_oldest_first,
    kv_delete_expecting_removes_only_what_was_read,
    kv_invalid_keys_are_refused,
    kv_watch_sees_changes_after_the_call,
    kv_watch_with_history_starts_from_the_latest_values,
    kv_follow_applies_the_state_then_changes_until_shutdown,
    kv_values_expire_with_max_age,
    kv_reopen_keeps_data_and_updates_config,
    kv_existing_opens_a_bucket_only_once_it_exists,
    kv_max_value_size_is_enforced,
    kv_invalid_config_is_refused,
);

async fn bucket(bus: &Bus, name: &str) -> KvStore {
    let mut config = KvConfig::new(name);
    config.storage = Storage::Memory;
    bus.key_value(config).await.unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

async fn next_event(watch: &mut KvWatch) -> KvEvent {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("no watch event within {WAIT:?}: {other:?}"),
    }
}

async fn assert_no_event(watch: &mut KvWatch) {
    if let Ok(event) = tokio::time::timeout(QUIET, watch.next()).await {
        panic!("unexpected watch event: {event:?}");
    }
}

fn put_event(key: &str, value: &str, revision: u64) -> KvEvent {
    KvEvent {
        key: key.into(),
        value: Some(b(value)),
        revision,
    }
}

fn delete_event(key: &str, revision: u64) -> KvEvent {
    KvEvent {
        key: key.into(),
        value: None,
        revision,
    }
}

async fn kv_operations(bus: Bus) {
    let kv = bucket(&bus, "ops").await;
    assert_eq!(kv.bucket(), "ops");
    assert_eq!(kv.get("missing").await.unwrap(), None);
    let r1 = kv.put("a", b("1")).await.unwrap();
    let r2 = kv.put("b.c", b("2")).await.unwrap();
    let r3 = kv.put("a", b("3")).await.unwrap();
    assert_eq!(r1, 1, "revisions start at 1");
    assert!(
        r1 < r2 && r2 < r3,
        "revisions increase across keys: {r1} {r2} {r3}"
    );
    let entry = kv.get("a").await.unwrap().unwrap();
    assert_eq!(
        (entry.key.as_str(), entry.value, entry.revision),
        ("a", b("3"), r3)
    );
    kv.delete("a").await.unwrap();
    assert_eq!(kv.get("a").await.unwrap(), None);
    // Deleting consumes a revision too.
    let r5 = kv.put("c", b("x")).await.unwrap();
    assert_eq!(r5, r3 + 2);
    // Deleting an absent key is not an error.
    kv.delete("never").await.unwrap();
    // Empty values are values.
    kv.put("empty", Bytes::new()).await.unwrap();
    assert_eq!(kv.get("empty").await.unwrap().unwrap().value, Bytes::new());
}

async fn kv_compare_and_set(bus: Bus) {
    let kv = bucket(&bus, "cas").await;
    // 0 means "never written".
    let r1 = kv.update("k", b("first"), 0).await.unwrap();
    assert_eq!(
        kv.update("k", b("again"), 0).await,
        Err(BusError::WrongRevision)
    );
    let r2 = kv.update("k", b("second"), r1).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(
        kv.update("k", b("stale"), r1).await,
        Err(BusError::WrongRevision)
    );
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, b("second"));
    // Two writers racing with the same expected revision: exactly one wins.
    let (x, y) = tokio::join!(kv.update("k", b("x"), r2), kv.update("k", b("y"), r2));
    assert!(x.is_ok() ^ y.is_ok(), "{x:?} {y:?}");
    let loser = if x.is_ok() { y } else { x };
    assert_eq!(loser, Err(BusError::WrongRevision));
    // After a delete, the marker's revision is the one to expect.
    let current = kv.get("k").await.unwrap().unwrap().revision;
    kv.delete("k").await.unwrap();
    assert_eq!(
        kv.update("k", b("z"), current).await,
        Err(BusError::WrongRevision)
    );
    let marker = current + 1;
    kv.update("k", b("z"), marker).await.unwrap();
}

async fn kv_create_conflicts_only_with_a_live_value(bus: Bus) {
    let kv = bucket(&bus, "create").await;
    let r1 = kv.create("k", b("1")).await.unwrap();
    assert_eq!(kv.create("k", b("2")).await, Err(BusError::AlreadyExists));
    assert_eq!(kv.get("k").await.unwrap().unwrap().revision, r1);
    kv.delete("k").await.unwrap();
    let r3 = kv.create("k", b("3")).await.unwrap();
    assert!(r3 > r1);
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, b("3"));
}

async fn kv_keys_are_sorted_and_skip_deleted(bus: Bus) {
    let kv = bucket(&bus, "keys").await;
    assert!(kv.keys().await.unwrap().is_empty());
    for key in ["zeta", "alpha", "m.x", "beta", "m.a"] {
        kv.put(key, b("v")).await.unwrap();
    }
    kv.put("alpha", b("again")).await.unwrap();
    kv.delete("beta").await.unwrap();
    assert_eq!(kv.keys().await.unwrap(), ["alpha", "m.a", "m.x", "zeta"]);
}

async fn kv_keys_matching_filters_on_tokens(bus: Bus) {
    let mut config = KvConfig::new("presence");
    config.storage = Storage::Memory;
    // Several revisions per key: each key is listed once, by its latest record.
    config.history = 5;
    let kv = bus.key_value(config).await.unwrap();
    assert!(kv.keys_matching(">").await.unwrap().is_empty());
    for key in [
        "rooms.b.members",
        "rooms.a.members",
        "rooms.a.topic",
        "rooms.c.members",
        "rooms.a.members.extra",
        "rooms",
        "solo",
        "other.a.members",
    ] {
        kv.put(key, b("v1")).await.unwrap();
    }
    kv.put("rooms.a.members", b("v2")).await.unwrap();
    kv.delete("rooms.c.members").await.unwrap();
    kv.put("gone", b("x")).await.unwrap();
    kv.delete("gone").await.unwrap();

    let matching = |filter: &'static str| {
        let kv = kv.clone();
        async move { kv.keys_matching(filter).await.unwrap() }
    };
    assert_eq!(
        matching("rooms.*.members").await,
        ["rooms.a.members", "rooms.b.members"],
        "`*` is one token; deleted keys are left out"
    );
    assert_eq!(
        matching("rooms.>").await,
        [
            "rooms.a.members",
            "rooms.a.members.extra",
            "rooms.a.topic",
            "rooms.b.members"
        ],
        "`>` is one or more tokens"
    );
    assert_eq!(matching("rooms.a.>").await.len(), 3);
    assert_eq!(matching("*").await, ["rooms", "solo"]);
    assert_eq!(
        matching("*.a.members").await,
        ["other.a.members", "rooms.a.members"]
    );
    assert_eq!(matching("rooms").await, ["rooms"]);
    assert_eq!(matching("rooms.a.topic").await, ["rooms.a.topic"]);
    assert!(matching("rooms.c.members").await.is_empty());
    assert!(matching("gone").await.is_empty());
    assert!(matching("nothing.>").await.is_empty());
    assert_eq!(matching(">").await, kv.keys().await.unwrap());

    // A deleted key written again is live again.
    kv.put("rooms.c.members", b("back")).await.unwrap();
    assert_eq!(matching("rooms.*.members").await.len(), 3);

    for filter in [
        "", ".a", "a.", "a..b", "a.>.b", ">.a", "a*", "a>", "a b", "$KV.x", "ü",
    ] {
        let err = kv.keys_matching(filter).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidKey(_)),
            "{filter:?}: {err:?}"
        );
    }
}

async fn kv_keys_matching_reads_past_one_batch(bus: Bus) {
    let kv = bucket(&bus, "many").await;
    for i in 0..1100 {
        kv.put(&format!("bulk.{i:04}"), Bytes::new()).await.unwrap();
    }
    kv.put("bulk.0007.deeper", Bytes::new()).await.unwrap();
    kv.put("else", Bytes::new()).await.unwrap();
    let keys = kv.keys_matching("bulk.*").await.unwrap();
    assert_eq!(keys.len(), 1100);
    assert_eq!(
        (keys[0].as_str(), keys[1099].as_str()),
        ("bulk.0000", "bulk.1099")
    );
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted");
    assert_eq!(kv.keys_matching("bulk.>").await.unwrap().len(), 1101);
}

async fn kv_entries_matching_gives_the_latest_values_and_revisions(bus: Bus) {
    let mut config = KvConfig::new("entries");
    config.storage = Storage::Memory;
    config.history = 3;
    let kv = bus.key_value(config).await.unwrap();
    kv.put("x.b", b("b1")).await.unwrap();
    kv.put("x.a", b("a1")).await.unwrap();
    let a2 = kv.put("x.a", b("a2")).await.unwrap();
    kv.put("x.gone", b("g")).await.unwrap();
    kv.delete("x.gone").await.unwrap();
    kv.put("y.a", b("other")).await.unwrap();
    let b1 = kv.get("x.b").await.unwrap().unwrap().revision;
    let entries = kv.entries_matching("x.*").await.unwrap();
    let seen: Vec<(&str, Bytes, u64)> = entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.clone(), e.revision))
        .collect();
    assert_eq!(seen, [("x.a", b("a2"), a2), ("x.b", b("b1"), b1)]);
    // As many as one batch holds and more.
    for i in 0..1100 {
        kv.put(&format!("bulk.{i:04}"), b("v")).await.unwrap();
    }
    let bulk = kv.entries_matching("bulk.*").await.unwrap();
    assert_eq!(bulk.len(), 1100);
    assert!(bulk.iter().all(|e| e.value == b("v")));
    assert!(matches!(
        kv.entries_matching("a..b").await,
        Err(BusError::InvalidKey(_))
    ));
}

async fn kv_history_gives_the_kept_values_of_a_key_oldest_first(bus: Bus) {
    let mut config = KvConfig::new("versions");
    config.storage = Storage::Memory;
    config.history = 3;
    let kv = bus.key_value(config).await.unwrap();
    assert!(kv.history("policy").await.unwrap().is_empty());
    let mut revisions = Vec::new();
    for value in ["v1", "v2", "v3", "v4"] {
        revisions.push(kv.put("policy", b(value)).await.unwrap());
        kv.put("other", b(value)).await.unwrap();
    }
    let kept: Vec<(String, Bytes, u64)> = kv
        .history("policy")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value, e.revision))
        .collect();
    // The bucket keeps three values per key: the oldest went.
    let expected: Vec<(String, Bytes, u64)> = [("v2", 1), ("v3", 2), ("v4", 3)]
        .into_iter()
        .map(|(value, i)| ("policy".to_owned(), b(value), revisions[i]))
        .collect();
    assert_eq!(kept, expected);
    // A deletion is not a value.
    kv.delete("other").await.unwrap();
    let other = kv.history("other").await.unwrap();
    assert!(other.iter().all(|e| !e.value.is_empty()), "{other:?}");
    assert!(matches!(
        kv.history("a..b").await,
        Err(BusError::InvalidKey(_))
    ));
}

async fn kv_delete_expecting_removes_only_what_was_read(bus: Bus) {
    let kv = bucket(&bus, "delete-expecting").await;
    let r1 = kv.put("k", b("1")).await.unwrap();
    let r2 = kv.put("k", b("2")).await.unwrap();
    assert_eq!(
        kv.delete_expecting("k", r1).await,
        Err(BusError::WrongRevision),
        "written since it was read"
    );
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, b("2"));
    kv.delete_expecting("k", r2).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap(), None);
    assert_eq!(
        kv.delete_expecting("never", 5).await,
        Err(BusError::WrongRevision)
    );
}

async fn kv_invalid_keys_are_refused(bus: Bus) {
    let kv = bucket(&bus, "badkeys").await;
    for key in [
        "", ".a", "a.", "a..b", "a b", "a*", "a>", "ü", "a:b", "a\tb",
    ] {
        let invalid = |r: Result<(), BusError>| matches!(r, Err(BusError::InvalidKey(_)));
        assert!(invalid(kv.get(key).await.map(drop)), "get {key:?}");
        assert!(invalid(kv.put(key, b("v")).await.map(drop)), "put {key:?}");
        assert!(
            invalid(kv.create(key, b("v")).await.map(drop)),
            "create {key:?}"
        );
        assert!(
            invalid(kv.update(key, b("v"), 0).await.map(drop)),
            "update {key:?}"
        );
        assert!(invalid(kv.delete(key).await), "delete {key:?}");
    }
    assert!(kv.keys().await.unwrap().is_empty());
}

async fn kv_watch_sees_changes_after_the_call(bus: Bus) {
    let kv = bucket(&bus, "watch").await;
    let before = kv.put("old", b("0")).await.unwrap();
    let mut watch = kv.watch_all().await.unwrap();
    let ra = kv.put("a", b("1")).await.unwrap();
    let rb = kv.put("b", b("2")).await.unwrap();
    kv.delete("a").await.unwrap();
    let rc = kv.create("c", b("3")).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put_event("a", "1", ra));
    assert_eq!(next_event(&mut watch).await, put_event("b", "2", rb));
    assert_eq!(next_event(&mut watch).await, delete_event("a", rb + 1));
    assert_eq!(next_event(&mut watch).await, put_event("c", "3", rc));
    assert!(before < ra);
    assert_no_event(&mut watch).await;

    // Two watchers see the same changes.
    let mut second = kv.watch_all().await.unwrap();
    let rd = kv.put("d", b("4")).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put_event("d", "4", rd));
    assert_eq!(next_event(&mut second).await, put_event("d", "4", rd));
}

async fn kv_watch_with_history_starts_from_the_latest_values(bus: Bus) {
    let kv = bucket(&bus, "policy").await;
    kv.put("a", b("a1")).await.unwrap();
    kv.put("b", b("b1")).await.unwrap();
    let ra = kv.put("a", b("a2")).await.unwrap();
    kv.put("gone", b("x")).await.unwrap();
    kv.delete("gone").await.unwrap();
    let rgone = ra + 2;
    let rc = kv.put("c", b("c1")).await.unwrap();
    let mut watch = kv.watch_all_with_history().await.unwrap();
    // Latest record of every key, by revision: b (2), a (3), gone's marker, c.
    assert_eq!(next_event(&mut watch).await, put_event("b", "b1", 2));
    assert_eq!(next_event(&mut watch).await, put_event("a", "a2", ra));
    assert_eq!(next_event(&mut watch).await, delete_event("gone", rgone));
    assert_eq!(next_event(&mut watch).await, put_event("c", "c1", rc));
    assert_no_event(&mut watch).await;
    // Then live changes, without a gap.
    let rd = kv.put("a", b("a3")).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put_event("a", "a3", rd));

    // On an empty bucket it simply waits for changes.
    let empty = bucket(&bus, "empty").await;
    let mut watch = empty.watch_all_with_history().await.unwrap();
    assert_no_event(&mut watch).await;
    let r = empty.put("first", b("1")).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put_event("first", "1", r));
}

async fn kv_values_expire_with_max_age(bus: Bus) {
    let mut config = KvConfig::new("ttl");
    config.storage = Storage::Memory;
    config.max_age = Some(Duration::from_secs(1));
    let kv = bus.key_value(config).await.unwrap();
    let revision = kv.put("k", b("v")).await.unwrap();
    assert_eq!(kv.keys().await.unwrap(), ["k"]);
    eventually(EXPIRY_WAIT, "value expired", || async {
        kv.get("k").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(kv.keys().await.unwrap().is_empty());
    assert!(kv.keys_matching(">").await.unwrap().is_empty());
    // Once expired, the key counts as never written for compare-and-set.
    assert_eq!(
        kv.update("k", b("late"), revision).await,
        Err(BusError::WrongRevision)
    );
    let again = kv.update("k", b("fresh"), 0).await.unwrap();
    assert!(again > revision, "revisions keep increasing after expiry");
}

async fn kv_existing_opens_a_bucket_only_once_it_exists(bus: Bus) {
    let mut config = KvConfig::new("owned");
    config.storage = Storage::Memory;
    config.history = 3;
    for _ in 0..2 {
        let absent = bus.existing_key_value(config.clone()).await.unwrap();
        assert!(
            absent.is_none(),
            "opening an absent bucket must not create it"
        );
    }
    let owner = bus.key_value(config.clone()).await.unwrap();
    owner.put("k", b("v")).await.unwrap();
    let reader = bus
        .existing_key_value(KvConfig::new("owned"))
        .await
        .unwrap();
    let reader = reader.expect("the bucket exists now");
    assert_eq!(reader.get("k").await.unwrap().unwrap().value, b("v"));
    let mut watch = reader.watch_all_with_history().await.unwrap();
    assert_eq!(next_event(&mut watch).await.value, Some(b("v")));
    owner.put("k", b("w")).await.unwrap();
    assert_eq!(next_event(&mut watch).await.value, Some(b("w")));
}

async fn kv_reopen_keeps_data_and_updates_config(bus: Bus) {
    let kv = bucket(&bus, "reopen").await;
    kv.put("k", b("v")).await.unwrap();
    let mut config = KvConfig::new("reopen");
    config.storage = Storage::Memory;
    config.history = 5;
    let again = bus.key_value(config).await.unwrap();
    assert_eq!(again.get("k").await.unwrap().unwrap().value, b("v"));
    // Both handles are the same bucket.
    again.put("k", b("w")).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, b("w"));
}

async fn kv_max_value_size_is_enforced(bus: Bus) {
    let mut config = KvConfig::new("small");
    config.storage = Storage::Memory;
    config.max_value_size = Some(16);
    let kv = bus.key_value(config).await.unwrap();
    let r = kv.put("k", Bytes::from(vec![1u8; 16])).await.unwrap();
    assert_eq!(
        kv.put("k", Bytes::from(vec![1u8; 17])).await,
        Err(BusError::PayloadTooLarge { size: 17, max: 16 })
    );
    // A compare-and-set write of the largest value fits (its header is allowed for).
    kv.update("k", Bytes::from(vec![2u8; 16]), r).await.unwrap();
    assert_eq!(kv.max_value_size(), 16);

    // Without a bucket limit, the bus's max payload (less header room) applies.
    let open = bucket(&bus, "open").await;
    let max = open.max_value_size();
    assert!(max < bus.max_payload() && max > bus.max_payload() / 2);
    let too_big = Bytes::from(vec![0u8; bus.max_payload()]);
    let err = open.put("k", too_big).await.unwrap_err();
    assert!(matches!(err, BusError::PayloadTooLarge { .. }), "{err:?}");
    let r = open.put("k", Bytes::from(vec![1u8; max])).await.unwrap();
    open.update("k", Bytes::from(vec![2u8; max]), r)
        .await
        .unwrap();
    assert_eq!(open.get("k").await.unwrap().unwrap().value.len(), max);
}

async fn kv_invalid_config_is_refused(bus: Bus) {
    for name in ["", "a.b", "a b", "a*"] {
        let err = bus.key_value(KvConfig::new(name)).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidConfig(_)),
            "{name:?}: {err:?}"
        );
    }
    let mut config = KvConfig::new("ok");
    config.history = 0;
    assert!(matches!(
        bus.key_value(config).await,
        Err(BusError::InvalidConfig(_))
    ));
}

/// `follow` hands over the latest value of every key, then each change, and returns
/// when told to stop.
async fn kv_follow_applies_the_state_then_changes_until_shutdown(bus: Bus) {
    let kv = bucket(&bus, "follow").await;
    kv.put("a", b("1")).await.unwrap();
    kv.put("a", b("2")).await.unwrap();
    kv.put("b", b("1")).await.unwrap();
    let (seen, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = kv.clone();
    let following = tokio::spawn(async move {
        follower
            .follow("test", async { stopped.await.unwrap_or(()) }, |event| {
                let value = event
                    .value
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                seen.send((event.key, value)).unwrap();
            })
            .await;
    });
    let mut next = async || {
        tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("following")
    };
    assert_eq!(next().await, ("a".to_owned(), Some("2".to_owned())));
    assert_eq!(next().await, ("b".to_owned(), Some("1".to_owned())));
    kv.delete("b").await.unwrap();
    assert_eq!(next().await, ("b".to_owned(), None));
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, following)
        .await
        .expect("follow returns once told to stop")
        .unwrap();
}
