//! What a webhook POST carries: its exact body and the headers that let the receiver
//! check it came from this bus (`X-Arqon-Signature`) and recognise a repeated delivery
//! (`X-Arqon-Delivery-Id`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use arqon_protocol::{JsonObject, ObjectWriter};

/// `sha256=<hex HMAC-SHA256 of the body, keyed with the rule's secret>`.
pub(crate) const SIGNATURE_HEADER: &str = "x-arqon-signature";
/// The rule the POST is for.
pub(crate) const RULE_ID_HEADER: &str = "x-arqon-rule-id";
/// The same on every attempt of one delivery (one message to one rule).
pub(crate) const DELIVERY_ID_HEADER: &str = "x-arqon-delivery-id";
/// Which attempt this is (1 the first time).
pub(crate) const ATTEMPT_HEADER: &str = "x-arqon-attempt";
/// The `rule_version` of every body.
const RULE_VERSION: &str = "v1";

/// The body: `{"rule_version":"v1","sender_client_id":…,"envelope":…}`, the envelope
/// exactly as the room's members received it.
pub(crate) fn body(sender: &str, envelope: &JsonObject) -> JsonObject {
    let mut body = ObjectWriter::with_capacity(96 + sender.len() + envelope.as_str().len());
    body.text("rule_version", RULE_VERSION)
        .text("sender_client_id", sender)
        .object("envelope", envelope);
    body.into_object()
}

/// The `X-Arqon-Signature` value of `body` under `secret`.
pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_embeds_the_envelope_as_it_was() {
        let envelope =
            JsonObject::parse(r#"{"id":"arq_1_1_abcdef", "payload":{"b":1,"a":2}}"#).unwrap();
        let body = body("arq_client_x", &envelope);
        assert_eq!(
            body.as_str(),
            r#"{"rule_version":"v1","sender_client_id":"arq_client_x","envelope":{"id":"arq_1_1_abcdef", "payload":{"b":1,"a":2}}}"#
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            sign("other", b"what do ya want for nothing?"),
            sign("Jefe", b"what do ya want for nothing?")
        );
    }
}
