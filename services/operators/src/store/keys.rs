//! Where a store key lives in the bucket.
//!
//! A value is at `d.<tenant>.<namespace>.<key>`; a value with a TTL also has one expiry
//! marker at `x.<tenant>.<namespace>.<key>` whose value is a time (milliseconds since the
//! epoch) at or before the value's expiry, which the sweep reads to find what to delete
//! without reading every value (`data.rs` keeps it so). One key, one marker: rewriting a
//! key moves its marker instead of adding one. Each tenant has one counter of its values,
//! `c.<tenant>` (`places.rs`), which no value or marker filter matches. Each part is exactly one token, so a
//! filter on a tenant or a namespace matches whole tokens and never a neighbour that
//! shares a prefix (`t-a` is not `t-ab`, namespace `a` is not `a.b`).
//!
//! Tokens: a tenant is already a safe token (`[A-Za-z0-9_-]`). A namespace name or a key
//! that is only made of `[A-Za-z0-9_-]` is its own token, readable in `nats kv ls`;
//! anything else is `=` followed by the hex digits of its UTF-8 bytes. The two forms never
//! meet (plain tokens have no `=`), and the root namespace of a tenant is the token `=`
//! alone, which no name encodes to (names are never empty).

use std::fmt;

use arqon_protocol::TenantId;
use bytes::Bytes;

/// Longest namespace name, in bytes.
pub(crate) const MAX_NAMESPACE_BYTES: usize = 64;

/// Longest key the bus accepts (`arqon_bus`: half of NATS's longest subject).
const BUS_MAX_KEY: usize = 1024;

/// Longest key of a store key, in bytes, such that every bucket key fits the bus.
pub(crate) const LONGEST_KEY_BYTES: usize = {
    // `x.<tenant>.=<hex namespace>.=<hex key>` (and `d.` alike), at their longest.
    let rest = 2 + TenantId::MAX_LEN + 1 + (1 + 2 * MAX_NAMESPACE_BYTES) + 1 + 1;
    (BUS_MAX_KEY - rest) / 2
};

/// Every expiry marker, for the sweep.
pub(crate) const ALL_EXPIRIES: &str = "x.>";
/// Every tenant's key counter.
pub(crate) const ALL_COUNTERS: &str = "c.*";

const DATA: &str = "d";
const EXPIRY: &str = "x";
const COUNTER: &str = "c";
const ROOT: &str = "=";

/// A namespace, resolved: a tenant's root namespace or one of its sub-namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespace {
    tenant: TenantId,
    sub: Option<String>,
}

/// Why a namespace name was refused; safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Invalid namespace '{shown}': use 1-{MAX_NAMESPACE_BYTES} bytes without control characters"
)]
pub(crate) struct NamespaceError {
    shown: String,
}

impl Namespace {
    /// The tenant's own namespace, `tenant:<tenant>`.
    pub(crate) fn root(tenant: TenantId) -> Self {
        Self { tenant, sub: None }
    }

    /// The sub-namespace `tenant:<tenant>/<name>` (`name` already trimmed).
    pub(crate) fn sub(tenant: TenantId, name: &str) -> Result<Self, NamespaceError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAMESPACE_BYTES
            && !name.chars().any(char::is_control);
        if !valid {
            let shown = name
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAMESPACE_BYTES)
                .collect();
            return Err(NamespaceError { shown });
        }
        Ok(Self {
            tenant,
            sub: Some(name.to_owned()),
        })
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn token(&self) -> String {
        self.sub.as_deref().map_or_else(|| ROOT.to_owned(), encode)
    }

    /// The bucket key of `key`'s value.
    pub(crate) fn value_key(&self, key: &str) -> String {
        format!("{DATA}.{}.{}.{}", self.tenant, self.token(), encode(key))
    }

    /// The bucket key of `key`'s expiry marker.
    pub(crate) fn expiry_key(&self, key: &str) -> String {
        format!("{EXPIRY}.{}.{}.{}", self.tenant, self.token(), encode(key))
    }

    /// Every value of this namespace (not of its sub-namespaces).
    pub(crate) fn values(&self) -> String {
        format!("{DATA}.{}.{}.*", self.tenant, self.token())
    }

    /// Every expiry marker of this namespace.
    pub(crate) fn expiries(&self) -> String {
        format!("{EXPIRY}.{}.{}.*", self.tenant, self.token())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sub {
            None => write!(f, "tenant:{}", self.tenant),
            Some(sub) => write!(f, "tenant:{}/{sub}", self.tenant),
        }
    }
}

/// Every value of `tenant`, in all its namespaces.
pub(crate) fn tenant_values(tenant: &TenantId) -> String {
    format!("{DATA}.{tenant}.>")
}

/// Every expiry marker of `tenant`.
pub(crate) fn tenant_expiries(tenant: &TenantId) -> String {
    format!("{EXPIRY}.{tenant}.>")
}

/// The bucket key of `tenant`'s key counter.
pub(crate) fn counter_key(tenant: &TenantId) -> String {
    format!("{COUNTER}.{tenant}")
}

/// The tenant of a counter's bucket key (`c.<tenant>`).
pub(crate) fn tenant_of_counter(counter_key: &str) -> Option<TenantId> {
    let tenant = counter_key.strip_prefix(COUNTER)?.strip_prefix('.')?;
    TenantId::parse(tenant).ok()
}

/// The tenant of a value's bucket key (`d.<tenant>.<namespace>.<key>`).
pub(crate) fn tenant_of_value(value_key: &str) -> Option<TenantId> {
    key_of_value(value_key)?;
    let tenant = value_key.split('.').nth(1)?;
    TenantId::parse(tenant).ok()
}

/// The user's key of a value's bucket key (`d.<tenant>.<namespace>.<key>`).
pub(crate) fn key_of_value(value_key: &str) -> Option<String> {
    let mut tokens = value_key.split('.');
    let (Some(DATA), Some(_), Some(_), Some(key), None) = (
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
    ) else {
        return None;
    };
    decode(key)
}

/// The bucket key of the value an expiry marker (`x.<tenant>.<namespace>.<key>`) is
/// about.
pub(crate) fn value_of_expiry(expiry_key: &str) -> Option<String> {
    let mut tokens = expiry_key.split('.');
    let (Some(EXPIRY), Some(tenant), Some(namespace), Some(key), None) = (
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
    ) else {
        return None;
    };
    Some(format!("{DATA}.{tenant}.{namespace}.{key}"))
}

/// The bucket key of the expiry marker of a value (`d.<tenant>.<namespace>.<key>`).
pub(crate) fn expiry_of_value(value_key: &str) -> Option<String> {
    let rest = value_key.strip_prefix(DATA)?.strip_prefix('.')?;
    key_of_value(value_key).map(|_| format!("{EXPIRY}.{rest}"))
}

/// An expiry marker's value: the time it comes due.
pub(crate) fn expiry_value(at_ms: i64) -> Bytes {
    Bytes::from(at_ms.to_string())
}

/// The time an expiry marker's value says; `None` for anything [`expiry_value`] does not
/// write.
pub(crate) fn parse_expiry_value(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A marker of the earlier layout, one per write:
/// `x.<tenant>.<namespace>.<key>.<expires_at_ms>_<nonce>`; the bucket key of its value
/// and the time. The sweep moves each to the one marker of its key.
pub(crate) fn parse_legacy_expiry(expiry_key: &str) -> Option<(String, i64)> {
    let (marker, at) = expiry_key.rsplit_once('.')?;
    let value_key = value_of_expiry(marker)?;
    let (at, nonce) = at.split_once('_')?;
    if nonce.len() != 8 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((value_key, at.parse().ok()?))
}

fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One bucket-key token for any non-empty text.
pub(crate) fn encode(text: &str) -> String {
    if is_plain(text) {
        text.to_owned()
    } else {
        format!("={}", hex::encode(text.as_bytes()))
    }
}

/// The text a token encodes; `None` for anything [`encode`] does not produce.
pub(crate) fn decode(token: &str) -> Option<String> {
    match token.strip_prefix('=') {
        None => is_plain(token).then(|| token.to_owned()),
        Some(digits) => {
            let text = String::from_utf8(hex::decode(digits).ok()?).ok()?;
            // Only the canonical form: a plain text is never hex-encoded.
            (!text.is_empty() && !is_plain(&text)).then_some(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    /// What the bus accepts as a key (`arqon_bus::subject::validate_key`).
    fn is_bus_key(key: &str) -> bool {
        !key.is_empty()
            && key.len() <= 1024
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
            && key.split('.').all(|t| !t.is_empty())
    }

    #[test]
    fn plain_names_stay_readable_and_others_are_hex() {
        assert_eq!(encode("alpha"), "alpha");
        assert_eq!(encode("user_42-x"), "user_42-x");
        assert_eq!(encode("user:42"), "=757365723a3432");
        assert_eq!(encode("a.b"), "=612e62");
        assert_eq!(encode("=61"), "=3d3631");
        assert_eq!(encode("é"), "=c3a9");
        for text in ["alpha", "user:42", "a.b", "=61", "é", " spaced ", "*", ">"] {
            assert_eq!(decode(&encode(text)).as_deref(), Some(text));
        }
        // Nothing but the canonical form decodes.
        for bad in ["", "=", "=61", "=zz", "a.b", "=ff", "a b"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn namespaces_resolve_inside_their_tenant() {
        let root = Namespace::root(tenant("t-a"));
        assert_eq!(root.to_string(), "tenant:t-a");
        assert_eq!(root.value_key("alpha"), "d.t-a.=.alpha");
        assert_eq!(root.values(), "d.t-a.=.*");
        // The original's hole: an explicit `tenant:t-b` is a sub-namespace of t-a.
        let sneaky = Namespace::sub(tenant("t-a"), "tenant:t-b").unwrap();
        assert_eq!(sneaky.to_string(), "tenant:t-a/tenant:t-b");
        assert!(sneaky.value_key("k").starts_with("d.t-a."));
        assert_ne!(
            sneaky.value_key("k"),
            Namespace::root(tenant("t-b")).value_key("k")
        );
        let cache = Namespace::sub(tenant("t-a"), "cache").unwrap();
        assert_eq!(cache.value_key("k"), "d.t-a.cache.k");
        assert_eq!(cache.expiry_key("k"), "x.t-a.cache.k");
        assert_eq!(cache.expiries(), "x.t-a.cache.*");
        assert_eq!(tenant_values(&tenant("t-a")), "d.t-a.>");
        assert_eq!(tenant_expiries(&tenant("t-a")), "x.t-a.>");
    }

    #[test]
    fn counters_name_their_tenant_and_match_no_value_or_marker() {
        let counter = counter_key(&tenant("t-a"));
        assert_eq!(counter, "c.t-a");
        assert_eq!(tenant_of_counter(&counter), Some(tenant("t-a")));
        assert_eq!(tenant_of_counter("c.t.a"), None);
        assert_eq!(tenant_of_counter("d.t-a"), None);
        assert!(matches(ALL_COUNTERS, &counter));
        assert!(!matches(ALL_EXPIRIES, &counter));
        assert!(!matches(&tenant_values(&tenant("t-a")), &counter));
        let ns = Namespace::sub(tenant("t-a"), "a.b").unwrap();
        assert_eq!(tenant_of_value(&ns.value_key("k")), Some(tenant("t-a")));
        assert!(!matches(ALL_COUNTERS, &ns.value_key("k")));
        assert!(!matches(ALL_COUNTERS, &ns.expiry_key("k")));
        assert_eq!(tenant_of_value(&ns.expiry_key("k")), None);
        assert_eq!(tenant_of_value("d.t-a.=.k.extra"), None);
    }

    #[test]
    fn namespace_names_are_checked() {
        let t = tenant("t-a");
        assert!(Namespace::sub(t.clone(), &"n".repeat(MAX_NAMESPACE_BYTES)).is_ok());
        for bad in [
            String::new(),
            "n".repeat(MAX_NAMESPACE_BYTES + 1),
            "a\nb".to_owned(),
        ] {
            let error = Namespace::sub(t.clone(), &bad).unwrap_err();
            assert!(
                error.to_string().starts_with("Invalid namespace '"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_longest_keys_fit_the_bus() {
        let ns = Namespace::sub(
            tenant(&"t".repeat(TenantId::MAX_LEN)),
            &"é".repeat(MAX_NAMESPACE_BYTES / 2),
        )
        .unwrap();
        let key = ":".repeat(LONGEST_KEY_BYTES);
        assert!(is_bus_key(&ns.expiry_key(&key)));
        assert!(is_bus_key(&ns.value_key(&key)));
        let longer = ":".repeat(LONGEST_KEY_BYTES + 1);
        assert!(!is_bus_key(&ns.expiry_key(&longer)));
        assert!(!is_bus_key(&ns.value_key(&longer)));
    }

    #[test]
    fn markers_name_their_value() {
        let ns = Namespace::sub(tenant("t-a"), "a b").unwrap();
        let marker = ns.expiry_key("k.1");
        assert_eq!(value_of_expiry(&marker), Some(ns.value_key("k.1")));
        assert_eq!(expiry_of_value(&ns.value_key("k.1")), Some(marker));
        assert_eq!(expiry_of_value("x.t-a.=.k"), None);
        assert_eq!(key_of_value(&ns.value_key("k.1")).as_deref(), Some("k.1"));
        assert_eq!(value_of_expiry("x.t-a.=.k.1"), None);
        assert_eq!(value_of_expiry("d.t-a.=.k"), None);
        assert_eq!(key_of_value("x.t-a.=.k"), None);
        assert_eq!(key_of_value("d.t-a.=.k.extra"), None);
        assert_eq!(parse_expiry_value(&expiry_value(-5)), Some(-5));
        assert_eq!(
            parse_expiry_value(&expiry_value(1_700_000_000_000)),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_expiry_value(b"soon"), None);
    }

    #[test]
    fn markers_of_the_earlier_layout_are_read() {
        assert_eq!(
            parse_legacy_expiry("x.t-a.=.k.1700000000000_000000ab"),
            Some(("d.t-a.=.k".to_owned(), 1_700_000_000_000))
        );
        for bad in [
            "x.t-a.=.k",
            "x.t-a.=.k.soon_00000000",
            "x.t-a.=.k.5",
            "x.t-a.=.k.5_0",
            "x.t-a.=.k.5_0000000g",
            "d.t-a.=.k.1_00000000",
        ] {
            assert_eq!(parse_legacy_expiry(bad), None, "{bad}");
        }
    }

    /// Whether `key` matches the NATS-style `filter` (`*` one token, final `>` the rest).
    fn matches(filter: &str, key: &str) -> bool {
        let (mut f, mut k) = (filter.split('.'), key.split('.'));
        loop {
            match (f.next(), k.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_round_trips_into_one_bus_token(text in "\\PC{1,64}|[a-z.:=/ ]{1,16}") {
            let token = encode(&text);
            prop_assert!(is_bus_key(&token));
            prop_assert!(!token.contains('.'));
            prop_assert_eq!(decode(&token), Some(text));
        }

        #[test]
        fn a_namespace_lists_only_its_own_keys(
            a in "[a-z.:]{1,8}", b in "[a-z.:]{1,8}", key in "[a-z.:/]{1,8}",
        ) {
            prop_assume!(a != b);
            let t = tenant("t-a");
            let (na, nb) = (Namespace::sub(t.clone(), &a).unwrap(), Namespace::sub(t.clone(), &b).unwrap());
            let root = Namespace::root(t.clone());
            prop_assert!(is_bus_key(&na.value_key(&key)));
            prop_assert!(is_bus_key(&na.expiry_key(&key)));
            prop_assert!(matches(&na.values(), &na.value_key(&key)));
            prop_assert!(!matches(&na.values(), &nb.value_key(&key)));
            prop_assert!(!matches(&root.values(), &na.value_key(&key)));
            prop_assert!(!matches(&na.values(), &root.value_key(&key)));
            prop_assert!(matches(&na.expiries(), &na.expiry_key(&key)));
            prop_assert!(!matches(&na.expiries(), &nb.expiry_key(&key)));
            prop_assert!(matches(&tenant_values(&t), &na.value_key(&key)));
            prop_assert!(!matches(&tenant_values(&tenant("t-ab")), &na.value_key(&key)));
            prop_assert!(!matches(&tenant_values(&tenant("t")), &na.value_key(&key)));
        }
    }
}
