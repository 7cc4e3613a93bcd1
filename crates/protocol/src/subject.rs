//! NATS subject names and queue groups: the only place they are built.
//!
//! Every subject carries the tenant as its own token, and every variable token is a
//! validated name ([`TenantId`], [`Topic`], [`EdgeId`]), so a subject can never contain a
//! wildcard or an extra token and two different inputs never share a subject. The scheme
//! is recorded in `docs/adr/002-subjects.md`.
//!
//! | subject | from → to | carries |
//! |---|---|---|
//! | `arqon.ingress.<tenant>` | edge → policy (queue group) | `Inbound` |
//! | `arqon.dispatch.<tenant>` | policy → dispatcher (queue group) | `Inbound` |
//! | `arqon.room.<tenant>.<room>.<channel>` | dispatcher → every edge with members | `RoomDelivery` |
//! | `arqon.edge.<edge_id>` | dispatcher → the edge holding a connection | `EdgeDelivery` |
//! | `arqon.edge.<edge_id>.direct` | dispatcher → an edge, request/reply: a private message | `DirectDelivery` |
//! | `arqon.presence.query` | dispatcher → every edge, scatter-gather | `PresenceQuery` |
//! | `arqon.presence.events.<tenant>.<room>.<channel>` | an edge → every edge (join/leave events) | `RoomDelivery` |
//!
//! Each tenant's history is a stream of its own, `ARQON_HISTORY_<tenant>`, capturing the
//! tenant's room subjects themselves (`arqon.room.<tenant>.>`): a message is stored by
//! publishing it to its room, at no cost to the dispatcher, and JetStream bounds each
//! tenant's bytes on its own (ADR 018).
//!
//! KV buckets: `arqon_channels` (the channel registry, keys `<tenant>.<room>.<channel>`)
//! and `arqon_edges` (edges alive, keys `<edge_id>`, expiring unless renewed).

use crate::{ChannelName, EdgeId, RoomName, TenantId, Topic};

/// Every ingress subject, for the policy service's queue subscription.
pub const INGRESS_ALL: &str = "arqon.ingress.*";
/// Every dispatch subject, for the dispatcher's queue subscription.
pub const DISPATCH_ALL: &str = "arqon.dispatch.*";

/// The queue group of policy replicas: each envelope is inspected once.
pub const POLICY_QUEUE: &str = "arqon-policy";
/// The queue group of dispatcher replicas: each envelope is routed once.
pub const DISPATCHER_QUEUE: &str = "arqon-dispatcher";

/// Every room subject, captured by the history stream.
pub const ROOM_ALL: &str = "arqon.room.>";
/// Where the dispatcher asks every edge who is connected and joined where.
pub const PRESENCE_QUERY: &str = "arqon.presence.query";
/// Every presence event subject, which every edge subscribes to.
pub const PRESENCE_EVENTS_ALL: &str = "arqon.presence.events.>";
const PRESENCE_EVENTS_PREFIX: &str = "arqon.presence.events.";
/// What every tenant's history stream is named with: [`history_stream`].
pub const HISTORY_STREAM_PREFIX: &str = "ARQON_HISTORY_";
/// The one history stream of every tenant before ADR 018, capturing `arqon.room.>`. A
/// dispatcher that finds it moves its capture to [`RETIRED_HISTORY_SUBJECT`], and each
/// tenant's stream copies the tenant's messages from it.
pub const LEGACY_HISTORY_STREAM: &str = "ARQON_HISTORY";
/// What the retired [`LEGACY_HISTORY_STREAM`] captures: nothing is published there.
pub const RETIRED_HISTORY_SUBJECT: &str = "arqon.history.retired";
/// The channel registry bucket.
pub const CHANNELS_BUCKET: &str = "arqon_channels";
/// The bucket of live edges: each edge renews its key every [`EDGE_HEARTBEAT`]; a key
/// not renewed for [`EDGE_TTL`] disappears.
pub const EDGES_BUCKET: &str = "arqon_edges";
/// How often an edge renews its key in [`EDGES_BUCKET`].
pub const EDGE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an edge that stopped renewing counts as alive.
pub const EDGE_TTL: std::time::Duration = std::time::Duration::from_secs(15);
/// The bucket of live policy, dispatcher and operators replicas (keys
/// `<service>.<replica>`): each renews its key every [`EDGE_HEARTBEAT`], as the edges do
/// theirs in [`EDGES_BUCKET`], and a key not renewed for [`EDGE_TTL`] disappears.
pub const SERVICES_BUCKET: &str = "arqon_services";
/// Each edge's open connections per tenant (`<tenant>.<edge_id>` = the count), for the
/// fleet-wide quota of a tenant: an edge renews its keys every [`FLEET_CONNECTIONS_REFRESH`]
/// and a key not renewed for [`FLEET_CONNECTIONS_TTL`] (its edge died) disappears.
pub const FLEET_CONNECTIONS_BUCKET: &str = "arqon_fleet_connections";
/// How often an edge rewrites its unchanged counts in [`FLEET_CONNECTIONS_BUCKET`].
pub const FLEET_CONNECTIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a count in [`FLEET_CONNECTIONS_BUCKET`] lasts without being rewritten.
pub const FLEET_CONNECTIONS_TTL: std::time::Duration = std::time::Duration::from_secs(15);
/// The bucket of the CASIL policy: one key, [`CASIL_POLICY_KEY`], one version per value.
pub const CASIL_BUCKET: &str = "arqon_casil";
/// The key of the live CASIL policy in [`CASIL_BUCKET`].
pub const CASIL_POLICY_KEY: &str = "policy";
/// The lease of the policy replica that follows the `CasilPolicy` Kubernetes resource.
pub const POLICY_LEASE_BUCKET: &str = "arqon_policy_lease";
/// The lease of the dispatcher replica that sweeps empty channels away.
pub const CHANNEL_SWEEP_LEASE_BUCKET: &str = "arqon_channel_sweep_lease";
/// The webhook rules: keys `<tenant>.<rule_id>`.
pub const WEBHOOKS_BUCKET: &str = "arqon_webhooks";
/// What each webhook rule's deliveries came to: keys `<tenant>.<rule_id>`, added to by
/// every operators replica.
pub const WEBHOOK_OUTCOMES_BUCKET: &str = "arqon_webhook_outcomes";
/// The work-queue stream of messages waiting for webhook delivery.
pub const WEBHOOK_QUEUE_STREAM: &str = "ARQON_WEBHOOK_QUEUE";
/// Every subject [`WEBHOOK_QUEUE_STREAM`] captures.
pub const WEBHOOK_QUEUE_ALL: &str = "arqon.webhook.queue.>";
const WEBHOOK_QUEUE_PREFIX: &str = "arqon.webhook.queue.";
/// Every dead letter (a webhook delivery that ran out of attempts), of every tenant.
pub const WEBHOOK_DEAD_ALL: &str = "arqon.webhook.dead.>";
const WEBHOOK_DEAD_PREFIX: &str = "arqon.webhook.dead.";
/// The durable consumer every operators replica shares on [`WEBHOOK_QUEUE_STREAM`].
pub const WEBHOOK_QUEUE_CONSUMER: &str = "arqon-webhooks";
/// The cron jobs: keys `<tenant>.<job_id>`.
pub const CRON_BUCKET: &str = "arqon_cron";
/// The cron scheduler's lease: one key, held by the replica that fires.
pub const CRON_LEASE_BUCKET: &str = "arqon_cron_lease";
/// The tenant key-value store (`op.store.*`).
pub const STORE_BUCKET: &str = "arqon_store";
/// Tier-Omega substrates.
pub const OMEGA_SUBSTRATES_BUCKET: &str = "arqon_omega_substrates";
/// Tier-Omega events.
pub const OMEGA_EVENTS_BUCKET: &str = "arqon_omega_events";
/// Every "a client disconnected" notice (payload: its client id), of every tenant.
pub const CLIENTS_GONE_ALL: &str = "arqon.clients.gone.*";
const CLIENTS_GONE_PREFIX: &str = "arqon.clients.gone.";
/// Every CASIL decision event, of every tenant.
pub const CASIL_EVENTS_ALL: &str = "arqon.telemetry.casil.>";
const CASIL_EVENTS_PREFIX: &str = "arqon.telemetry.casil.";

const INGRESS_PREFIX: &str = "arqon.ingress.";
const DISPATCH_PREFIX: &str = "arqon.dispatch.";
const ROOM_PREFIX: &str = "arqon.room.";
const EDGE_PREFIX: &str = "arqon.edge.";

/// Where the edge publishes a tenant's inbound envelopes.
pub fn ingress(tenant: &TenantId) -> String {
    format!("{INGRESS_PREFIX}{tenant}")
}

/// Where the policy service forwards a tenant's accepted envelopes.
pub fn dispatch(tenant: &TenantId) -> String {
    format!("{DISPATCH_PREFIX}{tenant}")
}

/// Where messages for one `room:channel` of one tenant are fanned out.
pub fn room(tenant: &TenantId, topic: &Topic) -> String {
    format!("{ROOM_PREFIX}{tenant}.{}.{}", topic.room, topic.channel)
}

/// Where replies and private deliveries for connections held by one edge go.
pub fn edge(edge: &EdgeId) -> String {
    format!("{EDGE_PREFIX}{edge}")
}

/// Where one edge takes private messages for its connections (request/reply).
pub fn edge_direct(edge: &EdgeId) -> String {
    format!("{EDGE_PREFIX}{edge}.direct")
}

/// Where join and leave events of one channel go (not the room subject, so they are not
/// stored in history).
pub fn presence_events(tenant: &TenantId, topic: &Topic) -> String {
    format!(
        "{PRESENCE_EVENTS_PREFIX}{tenant}.{}.{}",
        topic.room, topic.channel
    )
}

/// Where a tenant's routed messages wait for webhook delivery (the dispatcher and the
/// cron scheduler publish a copy here when the tenant has rules).
pub fn webhook_queue(tenant: &TenantId) -> String {
    format!("{WEBHOOK_QUEUE_PREFIX}{tenant}")
}

/// Where one delivery (one message to one webhook rule of a tenant) waits for its next
/// attempt. `rule_id` is a rule id (`wh_` and hex digits, checked by the operators
/// service), so it is one safe token.
pub fn webhook_delivery(tenant: &TenantId, rule_id: &str) -> String {
    format!("{WEBHOOK_QUEUE_PREFIX}{tenant}.{rule_id}")
}

/// The tenant of a webhook queue subject, and the rule id when it is a delivery's
/// ([`webhook_delivery`]) rather than a message's ([`webhook_queue`]).
pub fn parse_webhook_queue(subject: &str) -> Option<(TenantId, Option<&str>)> {
    let rest = subject.strip_prefix(WEBHOOK_QUEUE_PREFIX)?;
    match rest.split_once('.') {
        None => Some((TenantId::parse(rest).ok()?, None)),
        Some((tenant, rule)) if !rule.is_empty() && !rule.contains('.') => {
            Some((TenantId::parse(tenant).ok()?, Some(rule)))
        }
        Some(_) => None,
    }
}

/// Where a tenant's dead letters go: deliveries that ran out of attempts.
pub fn webhook_dead(tenant: &TenantId) -> String {
    format!("{WEBHOOK_DEAD_PREFIX}{tenant}")
}

/// Where an edge says that one of a tenant's clients disconnected, so what it owned
/// (webhook rules, cron jobs) can go.
pub fn client_gone(tenant: &TenantId) -> String {
    format!("{CLIENTS_GONE_PREFIX}{tenant}")
}

/// Where the policy stage publishes a tenant's CASIL decision events (JSON), for
/// operators and dashboards to subscribe to.
pub fn casil_events(tenant: &TenantId) -> String {
    format!("{CASIL_EVENTS_PREFIX}{tenant}")
}

/// The tenant and topic of a presence event subject.
pub fn parse_presence_events(subject: &str) -> Option<(TenantId, Topic)> {
    let rest = subject.strip_prefix(PRESENCE_EVENTS_PREFIX)?;
    parse_room(&format!("{ROOM_PREFIX}{rest}"))
}

/// Every room subject of one room of one tenant (all its channels).
pub fn room_channels(tenant: &TenantId, room: &RoomName) -> String {
    format!("{ROOM_PREFIX}{tenant}.{room}.*")
}

/// Every room subject of one tenant.
pub fn tenant_rooms(tenant: &TenantId) -> String {
    format!("{ROOM_PREFIX}{tenant}.>")
}

/// The tenant's history stream: it captures [`tenant_rooms`]. Tenant names are valid
/// stream names, and the fixed prefix keeps two tenants' streams apart.
pub fn history_stream(tenant: &TenantId) -> String {
    format!("{HISTORY_STREAM_PREFIX}{tenant}")
}

/// The registry key of a channel: `<tenant>.<room>.<channel>`.
pub fn channel_key(tenant: &TenantId, topic: &Topic) -> String {
    format!("{tenant}.{}.{}", topic.room, topic.channel)
}

/// The registry keys of every channel of a room.
pub fn room_keys(tenant: &TenantId, room: &RoomName) -> String {
    format!("{tenant}.{room}.*")
}

/// The registry keys of every channel of a tenant.
pub fn tenant_keys(tenant: &TenantId) -> String {
    format!("{tenant}.*.*")
}

/// The topic of a registry key of `tenant`.
pub fn parse_channel_key(tenant: &TenantId, key: &str) -> Option<Topic> {
    let rest = key.strip_prefix(tenant.as_str())?.strip_prefix('.')?;
    let (room, channel) = rest.split_once('.')?;
    Topic::parse(room, channel).ok()
}

/// The tenant of an ingress or dispatch subject.
pub fn tenant_of(subject: &str) -> Option<TenantId> {
    let rest = subject
        .strip_prefix(INGRESS_PREFIX)
        .or_else(|| subject.strip_prefix(DISPATCH_PREFIX))?;
    TenantId::parse(rest).ok()
}

/// The tenant and topic of a room subject.
pub fn parse_room(subject: &str) -> Option<(TenantId, Topic)> {
    let mut tokens = subject.strip_prefix(ROOM_PREFIX)?.split('.');
    let tenant = TenantId::parse(tokens.next()?).ok()?;
    let room = RoomName::parse(tokens.next()?).ok()?;
    let channel = ChannelName::parse(tokens.next()?).ok()?;
    tokens
        .next()
        .is_none()
        .then(|| (tenant, Topic::new(room, channel)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn subjects_have_the_documented_shape() {
        let topic = Topic::parse("science", "general").unwrap();
        assert_eq!(ingress(&tenant("t-a")), "arqon.ingress.t-a");
        assert_eq!(dispatch(&tenant("t-a")), "arqon.dispatch.t-a");
        assert_eq!(
            room(&tenant("t-a"), &topic),
            "arqon.room.t-a.science.general"
        );
        assert_eq!(tenant_of("arqon.dispatch.t-a"), Some(tenant("t-a")));
        assert_eq!(tenant_of("arqon.dispatch.t.a"), None);
        assert_eq!(tenant_of("arqon.other.t-a"), None);
        let e = EdgeId::generate();
        assert_eq!(edge(&e), format!("arqon.edge.{e}"));
        assert_eq!(edge_direct(&e), format!("arqon.edge.{e}.direct"));
        let room_name = RoomName::parse("science").unwrap();
        assert_eq!(
            room_channels(&tenant("t-a"), &room_name),
            "arqon.room.t-a.science.*"
        );
        assert_eq!(tenant_rooms(&tenant("t-a")), "arqon.room.t-a.>");
        let key = channel_key(&tenant("t-a"), &topic);
        assert_eq!(key, "t-a.science.general");
        assert_eq!(parse_channel_key(&tenant("t-a"), &key), Some(topic.clone()));
        assert_eq!(parse_channel_key(&tenant("t-b"), &key), None);
        assert_eq!(room_keys(&tenant("t-a"), &room_name), "t-a.science.*");
        assert_eq!(tenant_keys(&tenant("t-a")), "t-a.*.*");
        let events = presence_events(&tenant("t-a"), &topic);
        assert_eq!(events, "arqon.presence.events.t-a.science.general");
        assert_eq!(
            parse_presence_events(&events),
            Some((tenant("t-a"), topic.clone()))
        );
        assert_eq!(parse_presence_events("arqon.presence.events.t-a.x"), None);
        assert_eq!(casil_events(&tenant("t-a")), "arqon.telemetry.casil.t-a");
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,24}"
    }

    proptest! {
        #[test]
        fn room_subjects_round_trip(t in token(), r in token(), c in token()) {
            let topic = Topic::parse(&r, &c).unwrap();
            let subject = room(&tenant(&t), &topic);
            prop_assert_eq!(subject.split('.').count(), 5);
            prop_assert!(!subject.contains('*') && !subject.contains('>') && !subject.contains(' '));
            prop_assert_eq!(parse_room(&subject), Some((tenant(&t), topic)));
        }

        #[test]
        fn different_names_never_share_a_subject(
            a in (token(), token(), token()),
            b in (token(), token(), token()),
        ) {
            let sa = room(&tenant(&a.0), &Topic::parse(&a.1, &a.2).unwrap());
            let sb = room(&tenant(&b.0), &Topic::parse(&b.1, &b.2).unwrap());
            prop_assert_eq!(sa == sb, a == b);
            prop_assert_eq!(ingress(&tenant(&a.0)) == ingress(&tenant(&b.0)), a.0 == b.0);
        }

        #[test]
        fn names_that_could_break_out_of_a_token_are_refused(
            prefix in token(),
            bad in prop::sample::select(vec!['.', '*', '>', ' ', ':', '\t', '/', '\u{e9}']),
            suffix in "[A-Za-z0-9_-]{0,8}",
        ) {
            let name = format!("{prefix}{bad}{suffix}");
            prop_assert!(TenantId::parse(&name).is_err());
            prop_assert!(RoomName::parse(&name).is_err());
            prop_assert!(ChannelName::parse(&name).is_err());
        }
    }

    #[test]
    fn webhook_queue_subjects_name_the_tenant_and_the_rule() {
        let queue = webhook_queue(&tenant("t-a"));
        assert_eq!(parse_webhook_queue(&queue), Some((tenant("t-a"), None)));
        let delivery = webhook_delivery(&tenant("t-a"), "wh_0123456789ab");
        assert_eq!(delivery, "arqon.webhook.queue.t-a.wh_0123456789ab");
        assert_eq!(
            parse_webhook_queue(&delivery),
            Some((tenant("t-a"), Some("wh_0123456789ab")))
        );
        assert_eq!(parse_webhook_queue("arqon.webhook.queue.t-a.x.y"), None);
        assert_eq!(parse_webhook_queue("arqon.webhook.queue.t-a."), None);
        assert_eq!(parse_webhook_queue("arqon.room.t-a"), None);
        assert!(delivery.starts_with(WEBHOOK_QUEUE_ALL.trim_end_matches('>')));
    }
}
