//! Properties of the engine over generated payloads: it never panics, the inspection
//! bound is exact, and the redacted copy never leaks a configured key's value and is
//! always a JSON object.

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::test_support::message;
use crate::{Decision, Engine, Mode, Policy};

const SECRETS: &[&str] = &[
    "password",
    "Bearer abc.def",
    "sk_live_0123456789abcdefXYZ",
    "AKIAIOSFODNN7EXAMPLE",
    "-----BEGIN RSA PRIVATE KEY-----",
    "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "github_pat_11ABCDEFG0123456789_abcdef",
    "xoxb-1234567890-abcdef",
    "rk_test_0123456789abcdefXYZ",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,10}",
        1 => prop::sample::select(vec!["password", "token", "secret", "api_key", "pin", "\u{e9}"])
            .prop_map(String::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,24}",
        1 => prop::sample::select(SECRETS).prop_map(String::from),
        1 => "[\"\\\\/\u{0}-\u{1f}]{0,6}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(12, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), json_value()), 0..8).prop_map(|e| e.into_iter().collect())
}

#[derive(Debug, Clone)]
struct Knobs {
    enforce: bool,
    max_inspect_bytes: u64,
    max_payload_bytes: u64,
    block: bool,
    transport: bool,
    replace_builtin: bool,
    custom: Vec<&'static str>,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        any::<bool>(),
        1..400_u64,
        prop_oneof![Just(0_u64), 1..2_000_u64],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::subsequence(
            vec![r"\d{4,}", "(?i)é+", r"[\x00-\x1f]", "\"", "\\\\", "a|b"],
            0..6,
        ),
    )
        .prop_map(
            |(enforce, inspect, payload, block, transport, replace, custom)| Knobs {
                enforce,
                max_inspect_bytes: inspect,
                max_payload_bytes: payload,
                block,
                transport,
                replace_builtin: replace,
                custom,
            },
        )
}

fn engine_from(k: &Knobs) -> Engine {
    let mut p = Policy {
        enabled: true,
        ..Policy::default()
    };
    p.mode = if k.enforce {
        Mode::Enforce
    } else {
        Mode::Monitor
    };
    p.limits.max_inspect_bytes = k.max_inspect_bytes;
    p.policies.max_payload_bytes = k.max_payload_bytes;
    p.policies.block_on_probable_secret = k.block;
    p.policies.redaction.transport_redaction = k.transport;
    p.policies.redaction.replace_builtin_patterns = k.replace_builtin;
    p.policies.redaction.patterns = k.custom.iter().map(|s| s.to_string()).collect();
    p.metadata.to_envelope = true;
    Engine::compile(p).expect("the generated policies are valid")
}

fn is_object(text: &str) -> bool {
    matches!(serde_json::from_str::<Value>(text), Ok(Value::Object(_)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_json_object_is_inspected_without_panic(object in json_object(), k in knobs(), pretty in any::<bool>()) {
        let engine = engine_from(&k);
        let value = Value::Object(object);
        let payload = if pretty {
            serde_json::to_string_pretty(&value)
        } else {
            serde_json::to_string(&value)
        }
        .expect("a Value serializes");
        let out = engine.inspect(&message(Some("room"), Some("chan"), &payload));
        prop_assert!(out.inspected);
        prop_assert!(k.enforce || out.decision != Decision::Block);
        if let Some(routed) = &out.transport_payload {
            prop_assert!(is_object(routed), "{routed}");
        }
        if let Some(observed) = &out.observed_payload {
            // What was not read whole is shown as the bare token, anything else as an
            // object.
            if payload.len() as u64 > k.max_inspect_bytes {
                prop_assert_eq!(observed, "\"***REDACTED***\"");
            } else {
                prop_assert!(is_object(observed), "{observed}");
            }
        }
        prop_assert!(out.envelope_metadata.is_some());
    }

    #[test]
    fn any_text_is_inspected_without_panic(payload in "\\PC{0,200}", k in knobs()) {
        let out = engine_from(&k).inspect(&message(None, None, &payload));
        prop_assert!(out.inspected);
    }

    #[test]
    fn the_inspection_bound_is_exact(
        filler in "[0-9 é\u{1F600}]{0,120}",
        secret in prop::sample::select(SECRETS),
        bound in 1..200_usize,
    ) {
        let payload = format!(r#"{{"a":"{filler}","b":"{secret}"}}"#);
        let start = payload.find(secret).expect("the secret is in the payload");
        let detects = |max: usize| {
            let mut p = Policy {
                enabled: true,
                ..Policy::default()
            };
            p.policies.redaction.paths.clear();
            p.limits.max_inspect_bytes = max as u64;
            let out = Engine::compile(p).expect("valid").inspect(&message(None, None, &payload));
            out.classification.expect("inspected").flags.contains_probable_secret
        };
        if bound <= start {
            prop_assert!(!detects(bound), "found a secret starting at {start} with bound {bound}");
        }
        prop_assert!(detects(start + secret.len()), "missed a secret inside the bound");
    }

    #[test]
    fn configured_paths_never_leak(
        base in json_object(),
        path_keys in prop::collection::vec("[a-z]{1,6}", 1..4),
        depth in 0..=9_usize,
        wraps in prop::collection::vec((any::<bool>(), "[a-z]{1,6}", json_value()), 9),
        pick in any::<prop::sample::Index>(),
        nested_value in any::<bool>(),
        transport in any::<bool>(),
    ) {
        const MARKER: &str = "\u{2691}VALUE\u{2691}";
        let path_key = pick.get(&path_keys).clone();
        let hidden = if nested_value {
            serde_json::json!({"inner": [MARKER, {"deeper": MARKER}]})
        } else {
            Value::from(MARKER)
        };
        // {path_key: hidden} wrapped `depth` times in arrays or objects (with a random
        // sibling), then put in `base`: the object holding path_key is at depth + 1 <= 10.
        let mut inner = Value::Object(Map::from_iter([(path_key, hidden)]));
        for (as_array, wrap_key, sibling) in wraps.into_iter().take(depth) {
            inner = if as_array {
                Value::Array(vec![sibling, inner])
            } else {
                Value::Object(Map::from_iter([(wrap_key, inner), ("sib".to_owned(), sibling)]))
            };
        }
        let mut object = base;
        object.insert("w".to_owned(), inner);
        let payload = serde_json::to_string(&Value::Object(object)).expect("serializes");

        let mut p = Policy {
            enabled: true,
            mode: Mode::Enforce,
            ..Policy::default()
        };
        p.policies.max_payload_bytes = 0;
        p.policies.redaction.paths = path_keys;
        p.policies.redaction.transport_redaction = transport;
        let out = Engine::compile(p).expect("valid").inspect(&message(None, None, &payload));

        let observed = out.observed_payload.expect("a path was redacted");
        prop_assert!(!observed.contains(MARKER), "{observed}");
        prop_assert!(is_object(&observed), "{observed}");
        if transport {
            prop_assert_eq!(out.transport_payload.as_deref(), Some(observed.as_str()));
        }
        prop_assert!(out.classification.expect("inspected").flags.redacted_paths);
    }
}
