//! The flat view of a policy used by `op.casil.get` (the snapshot) and `op.casil.reload`
//! (the changes), with the original's names and argument coercions for `op.casil.reload`.
//!
//! One table of names serves both directions, so every setting that can be read can be
//! changed and a snapshot fed back as changes gives the same policy.

use serde_json::{Map, Value};

use crate::PolicyError;
use crate::document::{DefaultDecision, Mode, Policy, Uninspected};

/// Where a flat setting lives in the document, so reading and writing share one table.
enum Field {
    Bool(fn(&mut Policy) -> &mut bool),
    List(fn(&mut Policy) -> &mut Vec<String>),
    /// The smallest accepted value, then the place.
    Count(u64, fn(&mut Policy) -> &mut u64),
    Mode,
    DefaultDecision,
    Uninspected,
}

const FIELDS: &[(&str, Field)] = &[
    ("enabled", Field::Bool(|p| &mut p.enabled)),
    ("mode", Field::Mode),
    ("default_decision", Field::DefaultDecision),
    ("scope_include", Field::List(|p| &mut p.scope.include)),
    ("scope_exclude", Field::List(|p| &mut p.scope.exclude)),
    (
        "max_payload_bytes",
        Field::Count(0, |p| &mut p.policies.max_payload_bytes),
    ),
    (
        "max_inspect_bytes",
        Field::Count(1, |p| &mut p.limits.max_inspect_bytes),
    ),
    ("uninspected_bytes", Field::Uninspected),
    (
        "max_patterns",
        Field::Count(0, |p| &mut p.limits.max_patterns),
    ),
    (
        "block_on_probable_secret",
        Field::Bool(|p| &mut p.policies.block_on_probable_secret),
    ),
    (
        "redaction_paths",
        Field::List(|p| &mut p.policies.redaction.paths),
    ),
    (
        "redaction_patterns",
        Field::List(|p| &mut p.policies.redaction.patterns),
    ),
    (
        "replace_builtin_patterns",
        Field::Bool(|p| &mut p.policies.redaction.replace_builtin_patterns),
    ),
    (
        "transport_redaction",
        Field::Bool(|p| &mut p.policies.redaction.transport_redaction),
    ),
    (
        "never_log_payload_for",
        Field::List(|p| &mut p.policies.redaction.never_log_payload_for),
    ),
    ("metadata_to_logs", Field::Bool(|p| &mut p.metadata.to_logs)),
    (
        "metadata_to_telemetry",
        Field::Bool(|p| &mut p.metadata.to_telemetry),
    ),
    (
        "metadata_to_envelope",
        Field::Bool(|p| &mut p.metadata.to_envelope),
    ),
];

impl Policy {
    /// The `op.casil.get` data: every setting under its flat name.
    pub fn snapshot(&self) -> Map<String, Value> {
        // The accessors take `&mut`, so read from a copy; a snapshot is rare and small.
        let mut copy = self.clone();
        let mut out = Map::new();
        for (name, field) in FIELDS {
            let value = match field {
                Field::Bool(at) => Value::Bool(*at(&mut copy)),
                Field::List(at) => Value::from(at(&mut copy).clone()),
                Field::Count(_, at) => Value::from(*at(&mut copy)),
                Field::Mode => Value::from(copy.mode.as_str()),
                Field::DefaultDecision => Value::from(copy.default_decision.as_str()),
                Field::Uninspected => Value::from(copy.limits.uninspected_bytes.as_str()),
            };
            out.insert((*name).to_owned(), value);
        }
        out
    }

    /// Applies `op.casil.reload` arguments to a copy. Absent arguments keep their value;
    /// unknown ones are refused; every problem is reported at once. The result still has
    /// to pass [`crate::Engine::compile`] (regexes, globs, pattern count).
    pub fn with_changes(&self, args: &Map<String, Value>) -> Result<Policy, PolicyError> {
        let mut next = self.clone();
        let mut problems = Vec::new();
        // Walk the table, not the map, so problems come in one stable order.
        for (name, field) in FIELDS {
            let Some(value) = args.get(*name) else {
                continue;
            };
            let applied = match field {
                Field::Bool(at) => to_bool(name, value).map(|v| *at(&mut next) = v),
                Field::List(at) => to_list(name, value).map(|v| *at(&mut next) = v),
                Field::Count(min, at) => to_count(name, value, *min).map(|v| *at(&mut next) = v),
                Field::Mode => to_mode(value).map(|v| next.mode = v),
                Field::DefaultDecision => {
                    to_default_decision(value).map(|v| next.default_decision = v)
                }
                Field::Uninspected => {
                    to_uninspected(value).map(|v| next.limits.uninspected_bytes = v)
                }
            };
            if let Err(problem) = applied {
                problems.push(problem);
            }
        }
        let mut unknown: Vec<&String> = args
            .keys()
            .filter(|name| FIELDS.iter().all(|(known, _)| known != name))
            .collect();
        unknown.sort();
        problems.extend(
            unknown
                .into_iter()
                .map(|name| format!("Unknown CASIL setting: '{name}'")),
        );
        PolicyError::check(problems).map(|()| next)
    }
}

fn to_mode(value: &Value) -> Result<Mode, String> {
    match lowered(value).as_str() {
        "monitor" => Ok(Mode::Monitor),
        "enforce" => Ok(Mode::Enforce),
        other => Err(format!("Invalid CASIL mode: {other}")),
    }
}

fn to_default_decision(value: &Value) -> Result<DefaultDecision, String> {
    match lowered(value).as_str() {
        "auto" => Ok(DefaultDecision::Auto),
        "allow" => Ok(DefaultDecision::Allow),
        "block" => Ok(DefaultDecision::Block),
        other => Err(format!("Invalid CASIL default_decision: {other}")),
    }
}

fn to_uninspected(value: &Value) -> Result<Uninspected, String> {
    match lowered(value).as_str() {
        "block" => Ok(Uninspected::Block),
        "allow" => Ok(Uninspected::Allow),
        other => Err(format!("Invalid CASIL uninspected_bytes: {other}")),
    }
}

/// A string trimmed and lower-cased; any other JSON value as its JSON text, so the error
/// message shows what was sent.
fn lowered(value: &Value) -> String {
    match value {
        Value::String(s) => s.trim().to_lowercase(),
        other => other.to_string(),
    }
}

fn to_bool(name: &str, value: &Value) -> Result<bool, String> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n
            .as_i64()
            .map(|i| i != 0)
            .or_else(|| n.as_u64().map(|u| u != 0)),
        Value::String(s) => match s.trim().to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| format!("'{name}' must be a boolean"))
}

fn to_list(name: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        // One string is one item: a regex may contain a comma, so nothing is split.
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(format!("'{name}' items must be scalar values")),
            })
            .collect(),
        _ => Err(format!("'{name}' must be a string or list")),
    }
}

/// A non-negative integer: a JSON integer, a float without a fraction, or a string
/// holding an integer. Booleans are refused (the original's `int(True)` was an accident).
fn to_count(name: &str, value: &Value, min: u64) -> Result<u64, String> {
    let not_integer = || format!("'{name}' must be an integer");
    let signed: i128 = match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                i128::from(u)
            } else if let Some(i) = n.as_i64() {
                i128::from(i)
            } else {
                let f = n.as_f64().ok_or_else(not_integer)?;
                if f.fract() != 0.0 || f.abs() > u64::MAX as f64 {
                    return Err(not_integer());
                }
                f as i128
            }
        }
        Value::String(s) => s.trim().parse::<i128>().map_err(|_| not_integer())?,
        _ => return Err(not_integer()),
    };
    if signed < i128::from(min) {
        return Err(format!("'{name}' must be >= {min}"));
    }
    u64::try_from(signed).map_err(|_| not_integer())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn change(value: Value) -> Result<Policy, PolicyError> {
        Policy::default().with_changes(&args(value))
    }

    #[test]
    fn snapshot_has_the_original_names_plus_the_new_ones() {
        let snap = Policy::default().snapshot();
        let original = [
            "enabled",
            "mode",
            "default_decision",
            "scope_include",
            "scope_exclude",
            "max_payload_bytes",
            "max_inspect_bytes",
            "max_patterns",
            "block_on_probable_secret",
            "redaction_paths",
            "redaction_patterns",
            "transport_redaction",
            "metadata_to_logs",
            "metadata_to_telemetry",
            "metadata_to_envelope",
        ];
        for name in original.iter().chain(&[
            "replace_builtin_patterns",
            "never_log_payload_for",
            "uninspected_bytes",
        ]) {
            assert!(snap.contains_key(*name), "{name}");
        }
        assert_eq!(snap.len(), original.len() + 3);
        assert_eq!(snap["mode"], "monitor");
        // Safer than the original's `allow`: a failed inspection blocks in enforce mode.
        assert_eq!(snap["default_decision"], "auto");
        assert_eq!(snap["uninspected_bytes"], "block");
        assert_eq!(
            snap["redaction_paths"],
            json!(["password", "token", "secret"])
        );
        assert_eq!(snap["max_inspect_bytes"], 262_144);
        assert_eq!(snap["metadata_to_logs"], true);
    }

    #[test]
    fn a_snapshot_fed_back_gives_the_same_policy() {
        let mut p = Policy {
            enabled: true,
            mode: Mode::Enforce,
            ..Policy::default()
        };
        p.scope.exclude = vec!["x*".into()];
        p.limits.max_patterns = 0;
        p.policies.redaction.never_log_payload_for = vec!["pii-*".into()];
        assert_eq!(Policy::default().with_changes(&p.snapshot()).unwrap(), p);
    }

    #[test]
    fn absent_args_keep_their_values() {
        let mut base = Policy::default();
        base.policies.redaction.paths = vec!["pin".into()];
        let next = base
            .with_changes(&args(json!({"mode": "enforce"})))
            .unwrap();
        assert_eq!(next.mode, Mode::Enforce);
        assert_eq!(next.policies.redaction.paths, ["pin"]);
        assert_eq!(base.mode, Mode::Monitor, "the original policy is untouched");
    }

    #[test]
    fn booleans_are_coerced_like_the_original() {
        for (value, expected) in [
            (json!(true), true),
            (json!(false), false),
            (json!(1), true),
            (json!(-3), true),
            (json!(0), false),
            (json!("TRUE"), true),
            (json!(" yes "), true),
            (json!("On"), true),
            (json!("1"), true),
            (json!("false"), false),
            (json!("No"), false),
            (json!("off"), false),
            (json!("0"), false),
        ] {
            let p = change(json!({"transport_redaction": value.clone()})).unwrap();
            assert_eq!(
                p.policies.redaction.transport_redaction, expected,
                "{value}"
            );
        }
        for value in [
            json!("maybe"),
            json!(1.5),
            json!(null),
            json!([true]),
            json!({}),
        ] {
            let err = change(json!({"enabled": value})).unwrap_err();
            assert_eq!(err.to_string(), "'enabled' must be a boolean");
        }
    }

    #[test]
    fn every_boolean_setting_is_reachable() {
        let p = change(json!({
            "enabled": true, "block_on_probable_secret": true, "replace_builtin_patterns": true,
            "transport_redaction": true, "metadata_to_logs": false,
            "metadata_to_telemetry": false, "metadata_to_envelope": true,
        }))
        .unwrap();
        let r = &p.policies.redaction;
        assert!(p.enabled && p.policies.block_on_probable_secret);
        assert!(r.replace_builtin_patterns && r.transport_redaction);
        assert!(!p.metadata.to_logs && !p.metadata.to_telemetry && p.metadata.to_envelope);
    }

    #[test]
    fn mode_and_default_decision_are_trimmed_and_lowered() {
        let p = change(json!({"mode": " ENFORCE ", "default_decision": "Block"})).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.default_decision, DefaultDecision::Block);
        let err = change(json!({"mode": "Audit", "default_decision": 3})).unwrap_err();
        assert_eq!(
            err.problems(),
            [
                "Invalid CASIL mode: audit",
                "Invalid CASIL default_decision: 3"
            ]
        );
    }

    #[test]
    fn lists_take_a_string_or_a_list_of_scalars() {
        let p = change(json!({
            "scope_include": "secure-*,other",
            "scope_exclude": ["a", 1, 2.5, true],
            "redaction_paths": [],
            "redaction_patterns": [r"\d{3},\d{2}"],
            "never_log_payload_for": "pii-*",
        }))
        .unwrap();
        assert_eq!(p.scope.include, ["secure-*,other"], "not split on commas");
        assert_eq!(p.scope.exclude, ["a", "1", "2.5", "true"]);
        assert!(p.policies.redaction.paths.is_empty());
        assert_eq!(p.policies.redaction.patterns, [r"\d{3},\d{2}"]);
        assert_eq!(p.policies.redaction.never_log_payload_for, ["pii-*"]);

        let err = change(json!({"scope_include": 5})).unwrap_err();
        assert_eq!(err.to_string(), "'scope_include' must be a string or list");
        let err = change(json!({"redaction_paths": ["a", {"b": 1}]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "'redaction_paths' items must be scalar values"
        );
        let err = change(json!({"redaction_patterns": [null]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "'redaction_patterns' items must be scalar values"
        );
    }

    #[test]
    fn integers_follow_the_document_rules() {
        let p =
            change(json!({"max_payload_bytes": 0, "max_inspect_bytes": "1", "max_patterns": 0}))
                .unwrap();
        assert_eq!(p.policies.max_payload_bytes, 0, "0 disables the size limit");
        assert_eq!(p.limits.max_inspect_bytes, 1);
        assert_eq!(p.limits.max_patterns, 0);
        let p = change(json!({"max_payload_bytes": 1e3})).unwrap();
        assert_eq!(p.policies.max_payload_bytes, 1000);

        for (value, message) in [
            (json!(-1), "'max_payload_bytes' must be >= 0"),
            (json!("-5"), "'max_payload_bytes' must be >= 0"),
            (json!(1.5), "'max_payload_bytes' must be an integer"),
            (json!("ten"), "'max_payload_bytes' must be an integer"),
            (json!(true), "'max_payload_bytes' must be an integer"),
            (json!(null), "'max_payload_bytes' must be an integer"),
            (
                json!("99999999999999999999999"),
                "'max_payload_bytes' must be an integer",
            ),
        ] {
            let err = change(json!({ "max_payload_bytes": value })).unwrap_err();
            assert_eq!(err.to_string(), message, "{value}");
        }
        let err = change(json!({"max_inspect_bytes": 0})).unwrap_err();
        assert_eq!(err.to_string(), "'max_inspect_bytes' must be >= 1");
        let err = change(json!({"max_patterns": -2})).unwrap_err();
        assert_eq!(err.to_string(), "'max_patterns' must be >= 0");
    }

    #[test]
    fn unknown_args_are_refused_and_all_problems_reported() {
        let err = change(json!({
            "mode": "loud", "enabled": "perhaps", "max_inspect_bytes": 0, "colour": "red",
        }))
        .unwrap_err();
        // Settings in table order, then unknown names sorted.
        assert_eq!(
            err.problems(),
            [
                "'enabled' must be a boolean",
                "Invalid CASIL mode: loud",
                "'max_inspect_bytes' must be >= 1",
                "Unknown CASIL setting: 'colour'",
            ]
        );
    }
}
