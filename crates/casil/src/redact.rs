//! The redacted copy: configured keys' values replaced, then every matched pattern
//! replaced in every string (and number) of the parsed payload, so the copy is always
//! JSON with the shape of the original: keys are never rewritten.

use std::borrow::Cow;

use regex::{NoExpand, Regex};
use serde_json::Value;

use crate::REDACTED;

/// Keys are looked up in objects nested at most this deep (the top-level object is depth
/// 0; every object or array level adds one), as in the original.
pub(crate) const MAX_PATH_DEPTH: usize = 10;

/// The `redaction.paths` keys (matched regardless of case: `Password` is a password),
/// with what a cheap look at the raw text needs to rule them out before a parse.
#[derive(Debug, Clone)]
pub(crate) struct PathKeys {
    keys: Vec<String>,
    /// Every key as a JSON string (`"password"`), case-insensitive, in one matcher.
    needles: Option<Regex>,
    /// Some key holds a `/`, which JSON may also write as `\/`.
    has_slash: bool,
}

impl PathKeys {
    pub(crate) fn new(paths: &[String]) -> PathKeys {
        let alternatives: Vec<String> = paths
            .iter()
            .map(|p| regex::escape(&Value::from(p.as_str()).to_string()))
            .collect();
        PathKeys {
            keys: paths.to_vec(),
            // Escaped literals always compile.
            needles: (!paths.is_empty())
                .then(|| Regex::new(&format!("(?i){}", alternatives.join("|"))).ok())
                .flatten(),
            has_slash: paths.iter().any(|p| p.contains('/')),
        }
    }

    /// `false` only when no key can be in `payload`. A key written with escapes
    /// (`"pass\u0077ord"`) is a key all the same, so escapes make the answer `true`.
    pub(crate) fn may_appear_in(&self, payload: &str) -> bool {
        self.needles.as_ref().is_some_and(|needles| {
            needles.is_match(payload)
                || payload.contains("\\u")
                || (self.has_slash && payload.contains("\\/"))
        })
    }

    fn contains(&self, key: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.to_lowercase() == key.to_lowercase())
    }
}

/// Redacts `value` in place: values under a key in `paths`, then every match of
/// `patterns` in strings and numbers. Returns whether a path was redacted.
pub(crate) fn redact(value: &mut Value, paths: &PathKeys, patterns: &[&Regex]) -> bool {
    let mut path_hit = false;
    walk(value, 0, paths, patterns, &mut path_hit);
    path_hit
}

fn walk(value: &mut Value, depth: usize, paths: &PathKeys, patterns: &[&Regex], hit: &mut bool) {
    match value {
        Value::Object(map) => {
            let check_keys = depth <= MAX_PATH_DEPTH && !paths.keys.is_empty();
            for (key, child) in map.iter_mut() {
                if check_keys && paths.contains(key) {
                    *child = Value::from(REDACTED);
                    *hit = true;
                } else {
                    walk(child, depth + 1, paths, patterns, hit);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, depth + 1, paths, patterns, hit);
            }
        }
        Value::String(text) => {
            if let Cow::Owned(changed) = replace_all(text, patterns) {
                *text = changed;
            }
        }
        // Detection reads the raw text, where a number is just digits: a pattern for card
        // numbers must redact `4111111111111111` too. The result becomes a string.
        Value::Number(number) if !patterns.is_empty() => {
            if let Cow::Owned(changed) = replace_all(&number.to_string(), patterns) {
                *value = Value::String(changed);
            }
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
    }
}

/// Every pattern applied in turn; borrowed when nothing matched.
fn replace_all<'t>(text: &'t str, patterns: &[&Regex]) -> Cow<'t, str> {
    let mut current = Cow::Borrowed(text);
    for pattern in patterns {
        if let Cow::Owned(changed) = pattern.replace_all(&current, NoExpand(REDACTED)) {
            current = Cow::Owned(changed);
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys(list: &[&str]) -> PathKeys {
        PathKeys::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn regexes(list: &[&str]) -> Vec<Regex> {
        list.iter().map(|p| Regex::new(p).unwrap()).collect()
    }

    fn run(mut value: Value, paths: &[&str], patterns: &[&str]) -> (Value, bool) {
        let compiled = regexes(patterns);
        let refs: Vec<&Regex> = compiled.iter().collect();
        let hit = redact(&mut value, &keys(paths), &refs);
        (value, hit)
    }

    #[test]
    fn path_values_are_redacted_at_any_depth_and_in_arrays() {
        let (out, hit) = run(
            json!({"password": "p1", "user": {"name": "ann", "password": {"old": "p2"}},
                   "list": [{"token": "t1"}, [{"token": ["t2"]}]], "keep": "token"}),
            &["password", "token"],
            &[],
        );
        assert!(hit);
        assert_eq!(
            out,
            json!({"password": REDACTED, "user": {"name": "ann", "password": REDACTED},
                   "list": [{"token": REDACTED}, [{"token": REDACTED}]], "keep": "token"})
        );
    }

    #[test]
    fn keys_match_whole_but_regardless_of_case() {
        let (out, hit) = run(
            json!({"Password": "x", "password_hint": "y"}),
            &["password"],
            &[],
        );
        assert!(hit);
        assert_eq!(out, json!({"Password": REDACTED, "password_hint": "y"}));
        assert!(keys(&["password"]).may_appear_in(r#"{"PASSWORD":"x"}"#));
    }

    #[test]
    fn the_path_depth_bound_is_ten_levels() {
        // Wrap {"password": "deep"} in `levels` arrays: the object sits at depth `levels`.
        let nested = |levels: usize| {
            let mut v = json!({"password": "deep"});
            for _ in 0..levels {
                v = json!([v]);
            }
            json!({ "wrap": v })
        };
        // {"wrap": [..[{password}]..]}: the inner object is at depth levels + 1.
        let (out, hit) = run(nested(9), &["password"], &[]);
        assert!(hit, "depth 10 is still looked at");
        assert!(!out.to_string().contains("deep"));
        let (out, hit) = run(nested(10), &["password"], &[]);
        assert!(!hit, "depth 11 is not");
        assert!(out.to_string().contains("deep"));
    }

    #[test]
    fn patterns_apply_to_strings_and_numbers_never_to_keys() {
        let (out, hit) = run(
            json!({"api_key": "x", "note": "a \"secret\" here", "card": 4111111111111111_u64,
                   "n": 42, "ok": true, "nested": [{"SECRET": null}]}),
            &[],
            &["(?i)secret", r"(?i)api[_-]?key", r"\d{16}"],
        );
        assert!(!hit, "no path configured");
        assert_eq!(
            out,
            json!({"api_key": "x", "note": "a \"***REDACTED***\" here", "card": REDACTED,
                   "n": 42, "ok": true, "nested": [{"SECRET": null}]})
        );
    }

    #[test]
    fn paths_and_patterns_combine() {
        let (out, hit) = run(
            json!({"token": "abc", "msg": "token-123"}),
            &["token"],
            &["(?i)token"],
        );
        assert!(hit);
        assert_eq!(out, json!({"token": REDACTED, "msg": "***REDACTED***-123"}));
    }

    #[test]
    fn the_cheap_check_only_rules_out_what_cannot_be_there() {
        let k = keys(&["password", "a/b"]);
        assert!(k.may_appear_in(r#"{"password":"x"}"#));
        assert!(k.may_appear_in(r#"{"pass\u0077ord":"x"}"#));
        assert!(k.may_appear_in(r#"{"a\/b":1}"#));
        assert!(!k.may_appear_in(r#"{"content":"hello\nworld"}"#));
        assert!(!k.may_appear_in(r#"{"passwords":"x"}"#));
        assert!(!keys(&[]).may_appear_in(r#"{"password":"x"}"#));
    }

    #[test]
    fn a_disguised_key_is_still_redacted() {
        let value: Value = serde_json::from_str(r#"{"pass\u0077ord":"hunter2"}"#).unwrap();
        let (out, hit) = run(value, &["password"], &[]);
        assert!(hit);
        assert_eq!(out, json!({"password": REDACTED}));
    }
}
