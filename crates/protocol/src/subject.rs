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

use crate::{ChannelName, EdgeId, RoomName, TenantId, Topic};

/// Every ingress subject, for the policy service's queue subscription.
pub const INGRESS_ALL: &str = "arqon.ingress.*";
/// Every dispatch subject, for the dispatcher's queue subscription.
pub const DISPATCH_ALL: &str = "arqon.dispatch.*";

/// The queue group of policy replicas: each envelope is inspected once.
pub const POLICY_QUEUE: &str = "arqon-policy";
/// The queue group of dispatcher replicas: each envelope is routed once.
pub const DISPATCHER_QUEUE: &str = "arqon-dispatcher";

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
}
