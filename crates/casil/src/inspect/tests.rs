//! The engine's behaviour beyond the original's tables: each fix, kinds, scope, limits,
//! and what transport and observers get.

use serde_json::{Value, json};

use crate::test_support::{engine, input, message};
use crate::{ContentKind, Decision, Kind, Outcome, REDACTED, Reason, RiskLevel};

fn parsed(text: Option<&str>) -> Value {
    serde_json::from_str(text.expect("a payload copy")).expect("valid JSON")
}

fn flags(out: &Outcome) -> crate::Flags {
    out.classification.expect("inspected").flags
}

#[test]
fn disabled_inspects_nothing() {
    let e = engine("enabled: false\npolicies: {redaction: {never_log_payload_for: ['*']}}");
    let out = e.inspect(&message(Some("r"), None, r#"{"password":"x"}"#));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::Disabled)
    );
    assert!(!out.inspected && out.classification.is_none());
    assert_eq!((out.observed_payload, out.envelope_metadata), (None, None));
}

#[test]
fn commands_and_telemetry_are_inspected_other_kinds_are_not() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {block_on_probable_secret: true}");
    let secret = r#"{"text":"sk_live_0123456789abcdefXYZ"}"#;
    // Original: commands (no room) and client telemetry were never inspected.
    for (kind, content) in [
        (Kind::Message, ContentKind::Data),
        (Kind::Command, ContentKind::Control),
        (Kind::Telemetry, ContentKind::Telemetry),
    ] {
        let out = e.inspect(&input(kind, None, None, secret));
        assert_eq!(
            (out.decision, out.reason),
            (Decision::Block, Reason::BlockedSecret)
        );
        assert_eq!(out.classification.unwrap().kind, content);
    }
    let out = e.inspect(&input(Kind::Other, None, None, secret));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::OutOfScope)
    );
    assert!(!out.inspected);
}

#[test]
fn an_include_list_leaves_room_less_envelopes_out() {
    let e = engine("enabled: true\nscope: {include: [secure-*]}");
    let out = e.inspect(&input(Kind::Command, None, None, "{}"));
    assert_eq!((out.inspected, out.reason), (false, Reason::OutOfScope));
    let e = engine("enabled: true\nscope: {include: ['*']}");
    assert!(e.inspect(&input(Kind::Command, None, None, "{}")).inspected);
}

#[test]
fn scope_globs_cross_the_colon() {
    let e = engine("enabled: true\nscope: {include: ['*:audit'], exclude: ['test-?:audit']}");
    assert!(
        e.inspect(&message(Some("billing"), Some("audit"), "{}"))
            .inspected
    );
    assert!(
        !e.inspect(&message(Some("test-1"), Some("audit"), "{}"))
            .inspected
    );
    assert!(
        e.inspect(&message(Some("test-12"), Some("audit"), "{}"))
            .inspected
    );
    assert!(
        !e.inspect(&message(Some("billing"), Some("chat"), "{}"))
            .inspected
    );
    assert!(!e.inspect(&message(Some("audit"), None, "{}")).inspected);
}

#[test]
fn detection_runs_in_monitor_mode_too() {
    // Original: the policy scan ran only in enforce mode or with block_on_probable_secret.
    let e = engine("enabled: true\npolicies: {redaction: {paths: []}}");
    let out = e.inspect(&message(
        None,
        None,
        r#"{"note":"key AKIAIOSFODNN7EXAMPLE"}"#,
    ));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::AllowWithRedaction, Reason::Redacted)
    );
    let c = out.classification.unwrap();
    assert!(c.flags.contains_probable_secret);
    assert_eq!(c.risk_level, RiskLevel::High);
    assert_eq!(
        parsed(out.observed_payload.as_deref()),
        json!({"note": format!("key {REDACTED}")})
    );
}

#[test]
fn a_path_alone_redacts_without_raising_the_risk() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {redaction: {paths: [pin]}}");
    let out = e.inspect(&message(None, None, r#"{"pin":"1234","to":"bob"}"#));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::AllowWithRedaction, Reason::Redacted)
    );
    let f = flags(&out);
    assert!(f.redacted_paths && !f.contains_probable_secret);
    assert_eq!(out.classification.unwrap().risk_level, RiskLevel::Low);
    assert_eq!(
        parsed(out.observed_payload.as_deref()),
        json!({"pin": REDACTED, "to": "bob"})
    );
}

#[test]
fn a_path_name_that_is_only_a_value_changes_nothing() {
    let e = engine("enabled: true\nmode: enforce\npolicies: {redaction: {paths: [pin]}}");
    let out = e.inspect(&message(None, None, r#"{"field":"pin"}"#));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::Allowed)
    );
    assert!(!flags(&out).redacted_paths);
    assert_eq!(out.observed_payload, None);
}

#[test]
fn a_key_written_with_escapes_is_still_redacted() {
    let e = engine(
        "enabled: true\nmode: enforce\n\
         policies: {redaction: {replace_builtin_patterns: true, transport_redaction: true}}",
    );
    let out = e.inspect(&message(None, None, r#"{"pass\u0077ord":"hunter2"}"#));
    assert_eq!(out.decision, Decision::AllowWithRedaction);
    assert_eq!(
        parsed(out.transport_payload.as_deref()),
        json!({"password": REDACTED})
    );
}

#[test]
fn the_clean_path_does_not_parse() {
    // Not JSON at all, but nothing suggests a secret or a path: no parse, no error.
    let e = engine("enabled: true\nmode: enforce\ndefault_decision: block");
    let out = e.inspect(&message(None, None, "{not json"));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::Allowed)
    );
}

#[test]
fn an_internal_error_hides_the_payload_and_still_classifies() {
    let e = engine(
        "enabled: true\nmode: enforce\ndefault_decision: allow\nmetadata: {to_envelope: true}",
    );
    let out = e.inspect(&message(None, None, r#"{"password": "#));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::InternalError)
    );
    assert_eq!(out.observed_payload.as_deref(), Some("\"***REDACTED***\""));
    assert_eq!(out.transport_payload, None);
    assert!(flags(&out).contains_probable_secret);
    assert_eq!(
        out.envelope_metadata.unwrap()["reason_code"],
        "CASIL_INTERNAL_ERROR"
    );
}

#[test]
fn size_limits() {
    let payload = r#"{"data":"0123456789"}"#; // 21 bytes
    let at = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 21}");
    assert_eq!(
        at.inspect(&message(None, None, payload)).decision,
        Decision::Allow
    );
    let over = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 20}");
    assert_eq!(
        over.inspect(&message(None, None, payload)).reason,
        Reason::Oversize
    );
    let off = engine(
        "enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 0}\nlimits: {max_inspect_bytes: 2000000}",
    );
    let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(1_000_000));
    assert_eq!(
        off.inspect(&message(None, None, &big)).reason,
        Reason::Allowed
    );
    // Bytes, not characters: 10 two-byte characters are 20 bytes.
    let wide = format!(r#"{{"d":"{}"}}"#, "é".repeat(10)); // 28 bytes
    let e = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 27}");
    assert_eq!(
        e.inspect(&message(None, None, &wide)).reason,
        Reason::Oversize
    );
}

#[test]
fn bytes_past_the_inspection_window_are_blocked_in_enforce_mode_unless_allowed() {
    let payload = r#"{"content":"a longer message"}"#;
    let e = engine("enabled: true\nmode: enforce\nlimits: {max_inspect_bytes: 16}");
    let out = e.inspect(&message(None, None, payload));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Block, Reason::Oversize)
    );
    let c = out.classification.unwrap();
    assert!(c.flags.oversize_payload);
    assert_eq!(c.risk_level, RiskLevel::Medium);
    // Monitor mode reports it; `uninspected_bytes: allow` is the original's flag only.
    let monitor = engine("enabled: true\nlimits: {max_inspect_bytes: 16}");
    assert_eq!(
        monitor.inspect(&message(None, None, payload)).reason,
        Reason::MonitorMode
    );
    let allowed = engine(
        "enabled: true\nmode: enforce\nlimits: {max_inspect_bytes: 16, uninspected_bytes: allow}",
    );
    let out = allowed.inspect(&message(None, None, payload));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Allow, Reason::Allowed)
    );
    assert!(out.classification.unwrap().flags.oversize_payload);
    // A secret padded past the window: never delivered in enforce mode.
    let padded = format!(
        r#"{{"a":"{}","b":"AKIAIOSFODNN7EXAMPLE"}}"#,
        "x".repeat(300_000)
    );
    let defaults = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 0}");
    assert_eq!(
        defaults.inspect(&message(None, None, &padded)).decision,
        Decision::Block
    );
}

#[test]
fn only_the_inspected_prefix_is_searched_but_redaction_covers_the_whole_payload() {
    let e = engine(
        "enabled: true\nmode: enforce\nlimits: {max_inspect_bytes: 50, uninspected_bytes: allow}",
    );
    let late = format!(
        r#"{{"a":"{}","b":"ghp_{}"}}"#,
        "x".repeat(50),
        "A".repeat(36)
    );
    let out = e.inspect(&message(None, None, &late));
    assert_eq!(
        out.reason,
        Reason::Allowed,
        "the token starts after byte 50"
    );
    assert!(!flags(&out).contains_probable_secret);

    // Bytes 6..46.
    let early = format!(
        r#"{{"b":"ghp_{}","a":"{}"}}"#,
        "A".repeat(36),
        "x".repeat(50)
    );
    let out = e.inspect(&message(None, None, &early));
    assert!(flags(&out).contains_probable_secret);
    // Paths are redacted beyond the bound.
    let path_late = format!(r#"{{"a":"{}","password":"hunter2"}}"#, "x".repeat(60));
    let out = e.inspect(&message(None, None, &path_late));
    assert!(flags(&out).redacted_paths);
    assert!(!out.observed_payload.unwrap().contains("hunter2"));
}

#[test]
fn what_lies_past_the_inspection_window_is_never_shown() {
    // The window finds a password word to redact; the token after it was never searched.
    let late = format!(
        r#"{{"a":"my password","b":"{}","c":"ghp_{}"}}"#,
        "x".repeat(50),
        "A".repeat(36)
    );
    for policy in [
        "enabled: true\nmode: enforce\nlimits: {max_inspect_bytes: 50}",
        "enabled: true\nmode: enforce\nlimits: {max_inspect_bytes: 50, uninspected_bytes: allow}",
        "enabled: true\nlimits: {max_inspect_bytes: 50}",
    ] {
        let out = engine(policy).inspect(&message(None, None, &late));
        assert!(flags(&out).oversize_payload, "{policy}");
        assert_eq!(
            out.observed_payload.as_deref(),
            Some("\"***REDACTED***\""),
            "{policy}"
        );
    }
    // Read whole, the same payload's copy is shown redacted.
    let out = engine("enabled: true\nmode: enforce").inspect(&message(None, None, &late));
    let observed = out.observed_payload.unwrap();
    assert!(observed.contains("my ***REDACTED***"), "{observed}");
    assert!(!observed.contains("ghp_"), "{observed}");
}

#[test]
fn blocked_secret_overrides_oversize_and_monitor_reports_either() {
    let policy = "policies: {max_payload_bytes: 10, block_on_probable_secret: true}";
    let payload = r#"{"content":"my password is long"}"#;
    let enforce = engine(&format!("enabled: true\nmode: enforce\n{policy}"));
    let out = enforce.inspect(&message(None, None, payload));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Block, Reason::BlockedSecret)
    );
    let monitor = engine(&format!("enabled: true\n{policy}"));
    let out = monitor.inspect(&message(None, None, payload));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::AllowWithRedaction, Reason::MonitorMode)
    );
    // A secret without block_on_probable_secret: oversize decides.
    let e = engine("enabled: true\nmode: enforce\npolicies: {max_payload_bytes: 10}");
    let out = e.inspect(&message(None, None, payload));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Block, Reason::Oversize)
    );
}

#[test]
fn transport_and_observers_get_different_copies() {
    let payload = r#"{"token":"abc","text":"hi"}"#;
    let redacted = json!({"token": REDACTED, "text": "hi"});

    let no_transport = engine("enabled: true\nmode: enforce");
    let out = no_transport.inspect(&message(Some("r"), None, payload));
    assert_eq!(out.decision, Decision::AllowWithRedaction);
    assert_eq!(out.transport_payload, None, "receivers get the original");
    assert_eq!(
        parsed(out.observed_payload.as_deref()),
        redacted,
        "logs never do"
    );

    let transport =
        engine("enabled: true\nmode: enforce\npolicies: {redaction: {transport_redaction: true}}");
    let out = transport.inspect(&message(Some("r"), None, payload));
    assert_eq!(parsed(out.transport_payload.as_deref()), redacted);
    assert_eq!(out.transport_payload, out.observed_payload);

    let blocking = engine(
        "enabled: true\nmode: enforce\n\
         policies: {block_on_probable_secret: true, redaction: {transport_redaction: true}}",
    );
    let out = blocking.inspect(&message(Some("r"), None, payload));
    assert_eq!(out.decision, Decision::Block);
    assert_eq!(out.transport_payload, None, "nothing is routed");
    assert_eq!(parsed(out.observed_payload.as_deref()), redacted);
}

#[test]
fn never_log_wins_over_the_redacted_copy_and_leaves_transport_alone() {
    let e = engine(
        "enabled: true\nmode: enforce\nscope: {exclude: [public*]}\n\
         policies: {redaction: {transport_redaction: true, never_log_payload_for: ['pii-*', 'public:?']}}",
    );
    let out = e.inspect(&message(Some("pii-hr"), Some("x"), r#"{"token":"abc"}"#));
    assert_eq!(out.observed_payload.as_deref(), Some("\"***REDACTED***\""));
    assert_eq!(
        parsed(out.transport_payload.as_deref()),
        json!({"token": REDACTED})
    );
    // Clean payloads are hidden from logs too.
    let out = e.inspect(&message(Some("pii-hr"), None, r#"{"salary":1}"#));
    assert_eq!(
        (out.decision, out.transport_payload),
        (Decision::Allow, None)
    );
    assert_eq!(out.observed_payload.as_deref(), Some("\"***REDACTED***\""));
    // Out of scope, still never logged.
    let out = e.inspect(&message(Some("public"), Some("a"), r#"{"salary":1}"#));
    assert_eq!(
        (out.inspected, out.observed_payload.as_deref()),
        (false, Some("\"***REDACTED***\""))
    );
    let out = e.inspect(&message(Some("public"), Some("ab"), r#"{"salary":1}"#));
    assert_eq!(out.observed_payload, None);
}

#[test]
fn envelope_metadata_only_when_asked_and_inspected() {
    let e = engine(
        "enabled: true\nmode: enforce\nmetadata: {to_envelope: true}\nscope: {exclude: [x]}",
    );
    let out = e.inspect(&message(Some("r"), None, r#"{"token":"abc"}"#));
    assert_eq!(
        out.envelope_metadata.unwrap(),
        json!({"kind": "data", "risk_level": "high", "reason_code": "CASIL_POLICY_REDACTED",
               "decision": "ALLOW_WITH_REDACTION",
               "flags": {"contains_probable_secret": true, "oversize_payload": false,
                         "redacted_paths": true}})
    );
    assert_eq!(
        e.inspect(&message(Some("x"), None, "{}")).envelope_metadata,
        None
    );
    let off = engine("enabled: true");
    assert_eq!(
        off.inspect(&message(Some("r"), None, "{}"))
            .envelope_metadata,
        None
    );
}

#[test]
fn custom_patterns_redact_strings_and_numbers_keep_keys_and_stay_json() {
    let e = engine(
        r#"
enabled: true
mode: enforce
policies:
  redaction:
    paths: []
    patterns: ['\b\d{16}\b', '"']
    transport_redaction: true
"#,
    );
    let out = e.inspect(&message(
        None,
        None,
        r#"{"card":4111111111111111,"q\"k":"say \"hi\""}"#,
    ));
    assert_eq!(out.decision, Decision::AllowWithRedaction);
    assert_eq!(
        parsed(out.transport_payload.as_deref()),
        json!({"card": REDACTED, "q\"k": "say ***REDACTED***hi***REDACTED***"})
    );
}

#[test]
fn the_documented_redaction_example() {
    // docs/casil.md, "Redaction".
    let e = engine("enabled: true");
    let out = e.inspect(&message(
        None,
        None,
        r#"{"password": "hunter2", "note": "token-123"}"#,
    ));
    assert_eq!(
        parsed(out.observed_payload.as_deref()),
        json!({"password": "***REDACTED***", "note": "***REDACTED***-123"})
    );
}
