//! The inputs a client, a token issuer or another process controls, each run through
//! the code that reads it. Every function must neither panic nor break its invariant
//! for any bytes: `fuzz/` runs them under libFuzzer (`cargo fuzz`), and
//! `tests/corpus.rs` replays the kept corpora and every crash found, on stable, in CI.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;

use arqon_casil::{Engine, Input, Kind, Policy};
use arqon_edge::{Authenticator, EdgeConfig};
use arqon_proto::model::{EdgeDelivery, Inbound, RoomDelivery};
use arqon_protocol::{ChannelName, Envelope, JsonObject, RoomName, TenantId, Topic, subject};

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("names", names),
    ("jwt", jwt),
    ("casil_document", casil_document),
    ("casil_inspect", casil_inspect),
    ("protobuf", protobuf),
];

/// A client's frame: refused with an error, or an envelope that writes itself out as
/// JSON again.
pub fn envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Envelope::from_client_json(text) {
        Ok(mut envelope) => {
            let json = envelope.to_json();
            assert!(
                serde_json::from_str::<Value>(&json).is_ok(),
                "an accepted envelope writes invalid JSON: {json}"
            );
            envelope
                .metadata
                .remove_keys(arqon_protocol::SERVER_OWNED_METADATA);
            let _ = envelope.payload.depth();
        }
        Err(e) => {
            let _ = e.to_envelope().to_json();
        }
    }
}

/// Tenant, room and channel names: what they accept is one subject token.
pub fn names(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (left, right) = text.split_once('\n').unwrap_or((text, text));
    let token_safe = |token: &str| {
        !token.is_empty()
            && !token
                .chars()
                .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
    };
    if let Ok(tenant) = TenantId::parse(left) {
        assert!(token_safe(tenant.as_str()), "tenant {tenant:?}");
        let ingress = subject::ingress(&tenant);
        assert_eq!(
            subject::tenant_of(&ingress).as_ref(),
            Some(&tenant),
            "{ingress}"
        );
        if let Ok(topic) = Topic::parse(left, right) {
            let room = subject::room(&tenant, &topic);
            assert_eq!(
                subject::parse_room(&room),
                Some((tenant.clone(), topic.clone())),
                "{room}"
            );
            let key = subject::channel_key(&tenant, &topic);
            assert_eq!(
                subject::parse_channel_key(&tenant, &key).as_ref(),
                Some(&topic)
            );
        }
    }
    if let Ok(room) = RoomName::parse(left) {
        assert!(token_safe(room.as_str()), "room {room:?}");
    }
    if let Ok(channel) = ChannelName::parse(right) {
        assert!(token_safe(channel.as_str()), "channel {channel:?}");
    }
}

const JWT_SECRET: &[u8] = b"fuzz-secret";

fn authenticator() -> &'static (tokio::runtime::Runtime, Authenticator) {
    static AUTH: OnceLock<(tokio::runtime::Runtime, Authenticator)> = OnceLock::new();
    AUTH.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let config = EdgeConfig {
            system_scope: true,
            ..EdgeConfig::with_secret("fuzz-secret")
        };
        let auth = runtime
            .block_on(Authenticator::from_config(&config))
            .expect("a valid configuration")
            .expect("authentication on");
        (runtime, auth)
    })
}

/// A token: any text, or (first byte odd) any claims JSON correctly signed, so the
/// claims' handling is reached, not only the signature check.
pub fn jwt(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let token = if first % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let message = format!("{header}.{}", base64url(rest));
        let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET);
        match jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256) {
            Ok(signature) => format!("{message}.{signature}"),
            Err(_) => return,
        }
    };
    let (runtime, auth) = authenticator();
    if let Ok(grant) = runtime.block_on(auth.verify(&token)) {
        assert!(TenantId::parse(grant.tenant.as_str()).is_ok());
    }
}

/// URL-safe base64 without padding (RFC 4648 §5), as JWTs use.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A policy document: refused with problems, or compiled into an engine that inspects.
pub fn casil_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::from_yaml(text) else {
        return;
    };
    if let Ok(engine) = Engine::compile(policy) {
        let _ = engine.inspect(&Input {
            kind: Kind::Message,
            room: Some("lab"),
            channel: Some("notes"),
            payload: r#"{"password":"hunter2","note":"AKIAIOSFODNN7EXAMPLE"}"#,
        });
    }
}

fn enforcing() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let policy = Policy::from_yaml(
            "enabled: true\nmode: enforce\nlimits: {max_inspect_bytes: 4096}\n\
             policies: {block_on_probable_secret: false, redaction: {transport_redaction: true, \
             patterns: ['sk-[a-z0-9]{8}'], paths: [password, token]}}\nmetadata: {to_envelope: true}",
        )
        .expect("a valid policy");
        Engine::compile(policy).expect("a policy that compiles")
    })
}

/// A payload through an enforcing, redacting engine: never a panic, and a redacted copy
/// is always a JSON object.
pub fn casil_inspect(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The caller (the edge) promises a JSON object.
    let Ok(payload) = JsonObject::parse(text) else {
        return;
    };
    let outcome = enforcing().inspect(&Input {
        kind: Kind::Message,
        room: Some("lab"),
        channel: Some("notes"),
        payload: payload.as_str(),
    });
    if let Some(copy) = &outcome.transport_payload {
        assert!(JsonObject::parse(copy).is_ok(), "redacted copy: {copy}");
    }
}

/// The internal messages between services: refused, or decoded.
pub fn protobuf(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(inbound) = Inbound::decode(bytes.clone()) {
        let _ = Inbound::decode(inbound.encode());
    }
    let _ = RoomDelivery::decode(bytes.clone());
    let _ = EdgeDelivery::decode(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signed mode reaches the claims: a valid claims text is granted.
    #[test]
    fn signed_claims_are_verified_for_real() {
        let claims = format!(
            r#"{{"tenant_id":"acme","exp":{}}}"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() + 600)
                .unwrap_or_default()
        );
        let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let message = format!("{header}.{}", base64url(claims.as_bytes()));
        let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET);
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .unwrap();
        let (runtime, auth) = authenticator();
        let grant = runtime
            .block_on(auth.verify(&format!("{message}.{signature}")))
            .unwrap();
        assert_eq!(grant.tenant.as_str(), "acme");
    }
}
