//! The gRPC API end to end inside one process (see [`super::test_harness`]).

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use arqon_bus::{Bus, EmbeddedOptions};
use arqon_proto::model::RoomDelivery;
use arqon_protocol::{ErrorCode, MessageType, SERVER_SENDER, TenantId, Topic, subject};

use super::test_harness::{
    Harness, TOKEN, WAIT, assert_channel_not_found, assert_refused, assert_room_not_found,
    channel_info, envelope, envelopes, error_code, history_request, list_channels, list_page,
    presence, publish, publish_request, read_history,
};
use crate::state::history::HISTORY_OFF;
use arqon_proto::dispatcher::v1 as pb;
use arqon_proto::dispatcher::v1::bus_client::BusClient;

use crate::{DispatcherConfig, DispatcherMetrics, HistoryConfig, ServiceToken};

#[tokio::test]
async fn calls_without_the_service_token_are_refused() {
    let harness = Harness::start().await;
    let request = || publish_request("t1", "science", "general", json!({"n": 1}));
    let (longer, basic) = (format!("Bearer {TOKEN}x"), format!("Basic {TOKEN}"));
    let cases = [
        (None, "Missing service token"),
        (Some("Bearer wrong-token"), "Invalid service token"),
        (Some(longer.as_str()), "Invalid service token"),
        (Some(basic.as_str()), "Malformed authorization"),
    ];
    for (authorization, expected) in cases {
        let status = harness
            .client_with(authorization)
            .publish(request())
            .await
            .unwrap_err();
        let code = ErrorCode::AuthenticationFailed;
        assert_refused(&status, Code::Unauthenticated, code, expected);
        assert!(!status.message().contains(TOKEN), "{}", status.message());
    }
    // Refused before anything happened.
    assert_eq!(harness.metrics.routed(), 0);
    let mut anonymous = harness.client_with(None);
    let status = list_channels(&mut anonymous, "t1", "science")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    harness.stop().await;
}

#[tokio::test]
async fn publish_refuses_invalid_names_and_payloads() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let cases = [
        (
            publish_request("a.b", "science", "general", json!({})),
            "Invalid tenant name 'a.b'",
        ),
        (
            publish_request("t1", "sci ence", "general", json!({})),
            "Invalid room name 'sci ence'",
        ),
        (
            publish_request("t1", "science", "*", json!({})),
            "Invalid channel name '*'",
        ),
        (
            publish_request("t1", "science", "general", json!([1, 2])),
            "'payload_json' must be a JSON object",
        ),
        (
            publish_request("t1", "science", "general", json!("text")),
            "'payload_json' must be a JSON object",
        ),
    ];
    for (request, expected) in cases {
        let status = client.publish(request).await.unwrap_err();
        let code = ErrorCode::ValidationError;
        assert_refused(&status, Code::InvalidArgument, code, expected);
    }
    let mut request = publish_request("t1", "science", "general", json!({}));
    request.payload_json = Bytes::new();
    let status = client.publish(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(harness.metrics.routed(), 0);
    // Nothing was created for the refused messages.
    let status = list_channels(&mut client, "t1", "science")
        .await
        .unwrap_err();
    assert_room_not_found(&status, "science");
    harness.stop().await;
}

#[tokio::test]
async fn publish_creates_the_channel_and_reaches_the_room_subject() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let tenant = TenantId::parse("t1").unwrap();
    let topic = Topic::parse("science", "general").unwrap();
    let mut room = harness
        .bus
        .subscribe(subject::room(&tenant, &topic))
        .await
        .unwrap();
    // Another tenant's room with the same name hears nothing.
    let other = TenantId::parse("t2").unwrap();
    let mut elsewhere = harness
        .bus
        .subscribe(subject::room(&other, &topic))
        .await
        .unwrap();

    let mut request = publish_request("t1", "science", "general", json!({"text": "hello", "n": 1}));
    request.metadata_json = Some(Bytes::from_static(br#"{"source":"billing"}"#));
    let published = client.publish(request).await.unwrap().into_inner();

    let message = tokio::time::timeout(WAIT, room.next())
        .await
        .unwrap()
        .unwrap();
    let delivery = RoomDelivery::decode(message.payload).unwrap();
    assert_eq!(delivery.exclude, None);
    assert!(!delivery.close_room);
    let envelope = envelope(&delivery.frame);
    assert_eq!(envelope.kind, MessageType::Message);
    assert_eq!(envelope.id.as_str(), published.message_id);
    assert_eq!(envelope.sender.as_deref(), Some(SERVER_SENDER));
    assert_eq!(envelope.sender.as_deref(), Some("arqonbus"));
    assert_eq!(envelope.room.as_deref(), Some("science"));
    assert_eq!(envelope.channel.as_deref(), Some("general"));
    assert_eq!(envelope.payload.get("text"), Some(json!("hello")));
    assert_eq!(envelope.metadata.get("source"), Some(json!("billing")));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), elsewhere.next())
            .await
            .is_err(),
        "another tenant's room received the message"
    );
    assert_eq!(harness.metrics.routed(), 1);

    let listed = list_channels(&mut client, "t1", "science").await.unwrap();
    assert_eq!(listed.channels.len(), 1);
    let channel = &listed.channels[0];
    assert_eq!(
        (
            channel.name.as_str(),
            channel.created_by.as_str(),
            channel.member_count
        ),
        ("general", "server", 0)
    );
    assert!(channel.last_activity.is_some());

    let info = channel_info(&mut client, "t1", "general").await.unwrap();
    assert_eq!(info.channel.unwrap().created_by, "server");
    assert_eq!(info.message_count, 1);
    assert!(info.members.is_empty());
    // The channel exists only in t1.
    let status = channel_info(&mut client, "t2", "general")
        .await
        .unwrap_err();
    assert_room_not_found(&status, "science");
    harness.stop().await;
}

#[tokio::test]
async fn history_returns_published_messages_oldest_first() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&mut client, "science", "general", json!({ "n": n })).await);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let history = loop {
        let history = read_history(&mut client, "general", 0).await.unwrap();
        if history.messages.len() == ids.len() || tokio::time::Instant::now() > deadline {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!history.epoch.is_empty());
    let stored = envelopes(&history);
    let got: Vec<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids);
    assert!(
        stored
            .iter()
            .all(|e| e.sender.as_deref() == Some(SERVER_SENDER))
    );
    assert!(
        history
            .messages
            .windows(2)
            .all(|w| w[0].offset < w[1].offset)
    );
    assert!(history.messages.iter().all(|m| m.stored_at.contains('T')));

    // Without `since`, the last ones; with it, the first ones from there.
    let last = envelopes(&read_history(&mut client, "general", 2).await.unwrap());
    let got: Vec<&str> = last.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids[3..]);
    let mut from_start = history_request("general", 1);
    from_start.since = Some("2000-01-01T00:00:00Z".into());
    let first = client.history(from_start).await.unwrap().into_inner();
    assert_eq!(first.messages.len(), 1);
    assert_eq!(first.messages[0].offset, history.messages[0].offset);

    let mut bad = history_request("general", 1001);
    assert_eq!(
        client.history(bad.clone()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    bad.limit = 10;
    bad.until = Some("not a time".into());
    let status = client.history(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(error_code(&status), ErrorCode::InvalidTimestamp.as_str());

    let status = read_history(&mut client, "random", 0).await.unwrap_err();
    assert_channel_not_found(&status, "random");
    harness.stop().await;
}

#[tokio::test]
async fn reads_of_missing_rooms_and_channels_are_not_found() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    let status = list_channels(&mut client, "t1", "empty").await.unwrap_err();
    assert_room_not_found(&status, "empty");

    let status = channel_info(&mut client, "t1", "general")
        .await
        .unwrap_err();
    assert_room_not_found(&status, "science");
    publish(&mut client, "science", "general", json!({})).await;
    let status = channel_info(&mut client, "t1", "random").await.unwrap_err();
    assert_channel_not_found(&status, "random");

    // No edge is connected: the channel exists and has no members.
    let found = presence(&mut client, "general").await.unwrap();
    assert!(found.members.is_empty());
    let status = presence(&mut client, "random").await.unwrap_err();
    assert_channel_not_found(&status, "random");
    harness.stop().await;
}

#[tokio::test]
async fn history_off_is_a_failed_precondition() {
    let config = DispatcherConfig {
        history: HistoryConfig {
            enabled: false,
            ..HistoryConfig::default()
        },
        ..DispatcherConfig::default()
    };
    let harness = Harness::with(config, EmbeddedOptions::default()).await;
    let mut client = harness.client();
    publish(&mut client, "science", "general", json!({})).await;
    let status = read_history(&mut client, "general", 0).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message(), error_code(&status)),
        (
            Code::FailedPrecondition,
            HISTORY_OFF,
            ErrorCode::FeatureDisabled.as_str()
        )
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_message_larger_than_the_bus_accepts_is_refused_before_anything_happens() {
    let options = EmbeddedOptions {
        max_payload: 1024,
        ..EmbeddedOptions::default()
    };
    let harness = Harness::with(DispatcherConfig::default(), options).await;
    let mut client = harness.client();
    let big = json!({ "text": "x".repeat(2000) });
    let status = client
        .publish(publish_request("t1", "science", "general", big))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("the bus accepts at most 1024"),
        "{}",
        status.message()
    );
    let status = list_channels(&mut client, "t1", "science")
        .await
        .unwrap_err();
    assert_room_not_found(&status, "science");
    harness.stop().await;
}

#[tokio::test]
async fn the_api_needs_a_valid_service_token() {
    let bus = Bus::embedded(EmbeddedOptions::default());
    let shutdown = CancellationToken::new();
    let dispatcher = crate::start(
        DispatcherConfig::default(),
        bus.clone(),
        DispatcherMetrics::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    // Without a token the API is not there at all.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = tokio::spawn(super::test_harness::serve(
        &dispatcher,
        listener,
        shutdown.clone(),
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = BusClient::new(channel);
    let missing = client
        .list_channels(pb::ListChannelsRequest {
            tenant: "t1".into(),
            room: "science".into(),
            ..pb::ListChannelsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented);

    let config = DispatcherConfig {
        service_token: Some(ServiceToken::new("two words")),
        ..DispatcherConfig::default()
    };
    let refused = crate::start(config, bus, DispatcherMetrics::default(), shutdown.clone()).await;
    let error = refused.unwrap_err().to_string();
    assert!(error.starts_with("ARQONBUS_SERVICE_TOKEN"), "{error}");
    assert!(!error.contains("two words"), "{error}");
    shutdown.cancel();
    served.await.unwrap().unwrap();
    dispatcher.wait().await;
}

/// A room's channels come a page at a time, by name, each once; `total` is the room's.
#[tokio::test]
async fn channels_are_listed_a_page_at_a_time() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    for channel in ["c1", "c2", "c3", "c4", "c5"] {
        publish(&mut client, "paged", channel, json!({})).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list_page(&mut client, "t1", "paged", after.as_deref(), 2)
            .await
            .unwrap();
        assert_eq!(page.total, 5);
        assert!(page.channels.len() <= 2);
        seen.extend(page.channels.iter().map(|c| c.name.clone()));
        if page.complete {
            assert_eq!(page.next_after, "");
            break;
        }
        assert_eq!(Some(&page.next_after), seen.last());
        after = Some(page.next_after);
    }
    assert_eq!(seen, ["c1", "c2", "c3", "c4", "c5"]);
    let all = list_channels(&mut client, "t1", "paged").await.unwrap();
    assert!(all.complete && all.channels.len() == 5);
    for (after, limit) in [(None, 1001), (Some("bad name!"), 1)] {
        let refused = list_page(&mut client, "t1", "paged", after, limit)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(error_code(&refused), "VALIDATION_ERROR");
    }
    harness.stop().await;
}
