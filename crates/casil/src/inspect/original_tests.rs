//! The original's observed outcomes (its table of inputs and decisions) and CASIL acceptance scenarios (the original's acceptance list,
//! items 15-31), with today's expectation. Where a fix changes the result, the original's
//! is given in a comment beside it.

use serde_json::{Value, json};

use crate::test_support::{engine, message};
use crate::{Decision, Engine, REDACTED, Reason, decision_event};

const CLEAN: &str = r#"{"content":"hello"}"#;
const PASSWORD_TEXT: &str = r#"{"content":"my password"}"#;
/// `data` holds 50 characters.
const FIFTY: &str = r#"{"data":"01234567890123456789012345678901234567890123456789"}"#;

fn decide(e: &Engine, payload: &str) -> (Decision, Reason) {
    let outcome = e.inspect(&message(Some("science"), Some("general"), payload));
    (outcome.decision, outcome.reason)
}

// The original's table of outcomes, row by row.

#[test]
fn row_monitor_defaults_clean() {
    let e = engine("enabled: true");
    // Original: ALLOW_WITH_REDACTION / CASIL_POLICY_ALLOWED (any configured path counted as
    // "redaction needed").
    assert_eq!(decide(&e, CLEAN), (Decision::Allow, Reason::Allowed));
}

#[test]
fn row_monitor_no_paths_clean() {
    let e = engine("enabled: true\npolicies: {redaction: {paths: []}}");
    assert_eq!(decide(&e, CLEAN), (Decision::Allow, Reason::Allowed));
}

#[test]
fn row_monitor_oversize() {
    let e = engine("enabled: true\npolicies: {max_payload_bytes: 10, redaction: {paths: []}}");
    // Original: ALLOW / CASIL_POLICY_OVERSIZE (CASIL_MONITOR_MODE was unreachable).
    assert_eq!(decide(&e, FIFTY), (Decision::Allow, Reason::MonitorMode));
}

#[test]
fn row_enforce_oversize() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 10}");
    assert_eq!(decide(&e, FIFTY), (Decision::Block, Reason::Oversize));
}

#[test]
fn row_enforce_secret_without_block() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {redaction: {paths: []}}");
    assert_eq!(
        decide(&e, PASSWORD_TEXT),
        (Decision::AllowWithRedaction, Reason::Redacted)
    );
}

#[test]
fn row_enforce_block_on_secret() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {block_on_probable_secret: true}");
    assert_eq!(
        decide(&e, PASSWORD_TEXT),
        (Decision::Block, Reason::BlockedSecret)
    );
}

#[test]
fn row_monitor_block_on_secret() {
    let e = engine("enabled: true\npolicies: {block_on_probable_secret: true}");
    // Original: ALLOW_WITH_REDACTION / CASIL_POLICY_BLOCKED_SECRET.
    assert_eq!(
        decide(&e, PASSWORD_TEXT),
        (Decision::AllowWithRedaction, Reason::MonitorMode)
    );
}

const BLOCK_MALWARE: &str = "enabled: true\nmode: enforce\n\
    policies: {block_on_probable_secret: true, redaction: {patterns: [malware]}}";

#[test]
fn row_enforce_custom_pattern_hit() {
    let e = engine(BLOCK_MALWARE);
    let payload = r#"{"content":"malware here"}"#;
    assert_eq!(
        decide(&e, payload),
        (Decision::Block, Reason::BlockedSecret)
    );
}

#[test]
fn row_enforce_custom_pattern_and_a_builtin_secret() {
    let payload = r#"{"content":"password here"}"#;
    // Original: not a secret, the custom list replaced the defaults. Now custom patterns
    // add to the built-ins...
    assert_eq!(
        decide(&engine(BLOCK_MALWARE), payload),
        (Decision::Block, Reason::BlockedSecret)
    );
    // ...and replacing them is explicit.
    let e = engine(
        "enabled: true\nmode: enforce\npolicies: {block_on_probable_secret: true, \
         redaction: {patterns: [malware], replace_builtin_patterns: true}}",
    );
    assert_eq!(decide(&e, payload), (Decision::Allow, Reason::Allowed));
}

#[test]
fn row_invalid_regex() {
    let policy = crate::Policy::from_yaml(
        "enabled: true\nmode: enforce\ndefault_decision: block\npolicies: {redaction: {patterns: ['(']}}",
    )
    .unwrap();
    // Original: BLOCK / CASIL_INTERNAL_ERROR on every message. Now the policy is refused.
    let err = Engine::compile(policy).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid redaction pattern '(': unclosed group"
    );
}

#[test]
fn row_internal_error_follows_default_decision() {
    // What still reaches CASIL_INTERNAL_ERROR: a payload that must be parsed and is not a
    // JSON object (the caller promised one).
    let block = engine("enabled: true\nmode: enforce\ndefault_decision: block");
    let allow = engine("enabled: true\nmode: enforce\ndefault_decision: allow");
    // The default (`auto`) fails closed in enforce mode, open in monitor mode.
    let auto = engine("enabled: true\nmode: enforce");
    let monitor = engine("enabled: true\nmode: monitor");
    for payload in [r#"{"password": oops"#, r#"["password"]"#] {
        assert_eq!(
            decide(&block, payload),
            (Decision::Block, Reason::InternalError)
        );
        assert_eq!(
            decide(&allow, payload),
            (Decision::Allow, Reason::InternalError)
        );
        assert_eq!(
            decide(&auto, payload),
            (Decision::Block, Reason::InternalError)
        );
        assert_eq!(
            decide(&monitor, payload),
            (Decision::Allow, Reason::InternalError)
        );
    }
}

// The original's acceptance scenarios 15-31.

fn scoped(include: &str, exclude: &str) -> Engine {
    engine(&format!(
        "enabled: true\nscope: {{include: [{include}], exclude: [{exclude}]}}"
    ))
}

#[test]
fn item_15_include_prefix() {
    let e = scoped("secure-*", "");
    assert!(
        e.inspect(&message(Some("secure-room"), Some("updates"), CLEAN))
            .inspected
    );
    let out = e.inspect(&message(Some("public"), Some("chat"), CLEAN));
    assert_eq!((out.inspected, out.reason), (false, Reason::OutOfScope));
}

#[test]
fn item_16_exclude_wins() {
    let e = scoped("secure-*", "secure-banned*");
    let out = e.inspect(&message(Some("secure-banned"), Some("updates"), CLEAN));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::OutOfScope)
    );
    assert!(
        e.inspect(&message(Some("secure-ok"), Some("updates"), CLEAN))
            .inspected
    );
}

#[test]
fn item_17_no_include_means_everything() {
    let e = engine("enabled: true");
    for (room, channel) in [(Some("a"), Some("b")), (Some("a"), None), (None, Some("b"))] {
        assert!(e.inspect(&message(room, channel, CLEAN)).inspected);
    }
    // Original: an empty target was out of scope. Now it is inspected too.
    assert!(e.inspect(&message(None, None, CLEAN)).inspected);
}

#[test]
fn item_18_oversize_would_block() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 5}");
    assert_eq!(
        decide(&e, r#"{"data":"123456"}"#),
        (Decision::Block, Reason::Oversize)
    );
}

#[test]
fn item_19_custom_secret_blocks() {
    let e = engine(
        "enabled: true\nmode: enforce\n\
         policies: {block_on_probable_secret: true, redaction: {patterns: [secret]}}",
    );
    let payload = r#"{"content":"super secret token"}"#;
    assert_eq!(
        decide(&e, payload),
        (Decision::Block, Reason::BlockedSecret)
    );
}

#[test]
fn item_20_path_redaction() {
    let e = engine("enabled: true\npolicies: {redaction: {paths: [password]}}");
    let out = e.inspect(&message(
        None,
        None,
        r#"{"user":"ann","password":"hunter2"}"#,
    ));
    let observed: Value = serde_json::from_str(out.observed_payload.as_deref().unwrap()).unwrap();
    // The original also rewrote the key (it substituted patterns in the serialized
    // text); keys are kept here, so the copy keeps its shape.
    assert_eq!(observed, json!({"user": "ann", "password": REDACTED}));
    assert!(out.classification.unwrap().flags.redacted_paths);
}

#[test]
fn item_21_pattern_redaction() {
    let e = engine(
        "enabled: true\npolicies: {redaction: {paths: [], patterns: [secret], \
         replace_builtin_patterns: true}}",
    );
    let out = e.inspect(&message(None, None, r#"{"content":"a secret plan"}"#));
    let observed = out.observed_payload.unwrap();
    assert!(!observed.contains("secret"), "{observed}");
    assert_eq!(observed, r#"{"content":"a ***REDACTED*** plan"}"#);
}

#[test]
fn item_22_never_log() {
    let e = engine("enabled: true\npolicies: {redaction: {never_log_payload_for: [pii-*]}}");
    let out = e.inspect(&message(
        Some("pii-payroll"),
        Some("updates"),
        r#"{"salary":1}"#,
    ));
    assert_eq!(out.observed_payload.as_deref(), Some("\"***REDACTED***\""));
    assert_eq!(out.transport_payload, None, "transport is unaffected");
}

#[test]
fn item_23_telemetry_event() {
    let e = engine("enabled: true\nmode: enforce");
    let out = e.inspect(&message(Some("r"), None, PASSWORD_TEXT));
    let event = decision_event(&out, "c", "m", Some("r"), None);
    assert_eq!(event["metadata"]["decision"], "ALLOW_WITH_REDACTION");
    assert_eq!(event["metadata"]["reason_code"], "CASIL_POLICY_REDACTED");
    assert_eq!(event["metadata"]["flags"]["contains_probable_secret"], true);
}

#[test]
fn item_24_monitor_in_scope_never_blocks() {
    let e =
        engine("enabled: true\npolicies: {block_on_probable_secret: true, max_payload_bytes: 10}");
    for payload in [CLEAN, PASSWORD_TEXT, FIFTY] {
        assert_ne!(decide(&e, payload).0, Decision::Block, "{payload}");
    }
}

#[test]
fn item_25_enforce_out_of_scope_allows() {
    let e = engine(
        "enabled: true\nmode: enforce\npolicies: {block_on_probable_secret: true}\n\
         scope: {include: [secure-*]}",
    );
    let out = e.inspect(&message(Some("public"), Some("chat"), PASSWORD_TEXT));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::OutOfScope)
    );
}

#[test]
fn item_26_enforce_oversize_blocks() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 10}");
    assert_eq!(decide(&e, FIFTY).0, Decision::Block);
}

const BLOCK_TOKEN: &str =
    "policies: {block_on_probable_secret: true, redaction: {patterns: [token]}}";

#[test]
fn item_27_enforce_token_blocks() {
    let e = engine(&format!("enabled: true\nmode: enforce\n{BLOCK_TOKEN}"));
    let payload = r#"{"content":"token-123"}"#;
    assert_eq!(
        decide(&e, payload),
        (Decision::Block, Reason::BlockedSecret)
    );
}

#[test]
fn item_28_monitor_token_never_blocks() {
    let e = engine(&format!("enabled: true\nmode: monitor\n{BLOCK_TOKEN}"));
    let payload = r#"{"content":"token-123"}"#;
    assert_eq!(
        decide(&e, payload),
        (Decision::AllowWithRedaction, Reason::MonitorMode)
    );
}

#[test]
fn item_29_same_envelope_both_modes() {
    let payload = r#"{"content":"token-value-123"}"#;
    let monitor = engine(&format!("enabled: true\nmode: monitor\n{BLOCK_TOKEN}"));
    let enforce = engine(&format!("enabled: true\nmode: enforce\n{BLOCK_TOKEN}"));
    assert_ne!(decide(&monitor, payload).0, Decision::Block);
    assert_eq!(decide(&enforce, payload).0, Decision::Block);
}

#[test]
fn item_30_monitor_keeps_the_transport_payload() {
    let e = engine("enabled: true\npolicies: {redaction: {paths: [token]}}");
    let out = e.inspect(&message(Some("r"), Some("c"), r#"{"token":"abc"}"#));
    assert_eq!(out.decision, Decision::AllowWithRedaction);
    assert_eq!(out.transport_payload, None, "receivers get the original");
}

#[test]
fn item_30_monitor_keeps_transport_even_with_transport_redaction() {
    let e =
        engine("enabled: true\npolicies: {redaction: {paths: [token], transport_redaction: true}}");
    let out = e.inspect(&message(Some("r"), Some("c"), r#"{"token":"abc"}"#));
    // Original: monitor mode replaced the routed payload here.
    assert_eq!(out.transport_payload, None);
}

#[test]
fn item_31_enforce_with_transport_redaction_replaces_it() {
    let e = engine(
        "enabled: true\nmode: enforce\npolicies: {redaction: {paths: [token], transport_redaction: true}}",
    );
    let out = e.inspect(&message(Some("r"), Some("c"), r#"{"token":"abc","n":1}"#));
    assert_eq!(out.decision, Decision::AllowWithRedaction);
    let routed: Value = serde_json::from_str(out.transport_payload.as_deref().unwrap()).unwrap();
    assert_eq!(routed, json!({"token": REDACTED, "n": 1}));
    assert!(!out.transport_payload.unwrap().contains("abc"));
}
