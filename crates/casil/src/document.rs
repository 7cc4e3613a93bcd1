//! The policy document: what an operator writes (YAML or JSON) and what the engine is
//! compiled from.
//!
//! Every struct refuses unknown fields (a misspelt `block_on_probable_secrets` must not
//! silently leave secrets unblocked) and every field has a default, so a document only
//! states what differs from the original's environment defaults.

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// A CASIL policy. `Default` is the original's environment defaults: disabled, monitor
/// mode, allow on internal errors, everything in scope.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub enabled: bool,
    pub mode: Mode,
    /// What an internal error decides.
    pub default_decision: DefaultDecision,
    pub scope: Scope,
    pub limits: Limits,
    pub policies: Rules,
    pub metadata: MetadataTargets,
}

/// `monitor` reports what it would do and never blocks or alters transport; `enforce`
/// acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Monitor,
    Enforce,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

/// The decision when inspection itself fails (`CASIL_INTERNAL_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultDecision {
    /// Fail closed in enforce mode, open in monitor mode (which never blocks).
    #[default]
    Auto,
    Allow,
    Block,
}

impl DefaultDecision {
    pub const fn as_str(self) -> &'static str {
        match self {
            DefaultDecision::Auto => "auto",
            DefaultDecision::Allow => "allow",
            DefaultDecision::Block => "block",
        }
    }

    /// Whether a failed inspection blocks in `mode`.
    pub const fn blocks(self, mode: Mode) -> bool {
        match self {
            DefaultDecision::Auto => matches!(mode, Mode::Enforce),
            DefaultDecision::Allow => false,
            DefaultDecision::Block => true,
        }
    }
}

/// What enforce mode does with a payload longer than `max_inspect_bytes`, whose end was
/// never searched for secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uninspected {
    /// Block it (`CASIL_POLICY_OVERSIZE`): nothing passes unread.
    #[default]
    Block,
    /// Let it through, flagged `oversize_payload` (the original's behaviour).
    Allow,
}

impl Uninspected {
    pub const fn as_str(self) -> &'static str {
        match self {
            Uninspected::Block => "block",
            Uninspected::Allow => "allow",
        }
    }
}

/// Which targets (`room:channel`, `room`, `channel` or empty) are inspected. A pattern
/// ending in `*` is a prefix; any other is a shell glob on the whole target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    /// When not empty, a target must match one of these.
    pub include: Vec<String>,
    /// A target matching one of these is out of scope, whatever `include` says.
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Secret detection reads at most this many bytes of each inspected part (at least 1).
    pub max_inspect_bytes: u64,
    /// What enforce mode does with a part longer than `max_inspect_bytes`.
    pub uninspected_bytes: Uninspected,
    /// The most custom `redaction.patterns` a policy may have.
    pub max_patterns: u64,
}

/// Default of `limits.max_inspect_bytes`: as large as the largest payload the rules allow,
/// so everything that may pass is read.
pub const MAX_INSPECT_BYTES: u64 = MAX_PAYLOAD_BYTES;
/// Default of `limits.max_patterns`.
pub const MAX_PATTERNS: u64 = 32;
/// Default of `policies.max_payload_bytes`: 256 KiB.
pub const MAX_PAYLOAD_BYTES: u64 = 256 * 1024;
/// Default of `policies.redaction.paths`.
pub const REDACTION_PATHS: [&str; 3] = ["password", "token", "secret"];

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inspect_bytes: MAX_INSPECT_BYTES,
            uninspected_bytes: Uninspected::default(),
            max_patterns: MAX_PATTERNS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// A payload text longer than this (in bytes) would be blocked; 0 means no limit.
    pub max_payload_bytes: u64,
    /// Block (in enforce mode) when a secret pattern matches.
    pub block_on_probable_secret: bool,
    pub redaction: Redaction,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            block_on_probable_secret: false,
            redaction: Redaction::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redaction {
    /// Object keys (exact names, at any depth up to 10) whose values are redacted.
    pub paths: Vec<String>,
    /// Custom regexes: each both detects a probable secret and is redacted where found.
    pub patterns: Vec<String>,
    /// `false`: `patterns` are added to the built-in list; `true`: they replace it.
    pub replace_builtin_patterns: bool,
    /// In enforce mode, route the redacted copy instead of the original.
    pub transport_redaction: bool,
    /// Targets (same pattern rules as the scope) whose payloads logs and telemetry must
    /// never carry, not even redacted.
    pub never_log_payload_for: Vec<String>,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            paths: REDACTION_PATHS.map(String::from).to_vec(),
            patterns: Vec::new(),
            replace_builtin_patterns: false,
            transport_redaction: false,
            never_log_payload_for: Vec::new(),
        }
    }
}

/// Where the classification and decision are reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataTargets {
    pub to_logs: bool,
    pub to_telemetry: bool,
    /// Add `metadata.casil` to the routed envelope.
    pub to_envelope: bool,
}

impl Default for MetadataTargets {
    fn default() -> Self {
        MetadataTargets {
            to_logs: true,
            to_telemetry: true,
            to_envelope: false,
        }
    }
}

impl Policy {
    /// Reads a YAML document (JSON is YAML, so JSON works too). An empty document, or one
    /// with only comments, is the default policy.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        serde_yaml_ng::from_str(text)
            .map_err(|err| PolicyError::one(format!("invalid CASIL policy document: {err}")))
    }

    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        serde_json::from_str(text)
            .map_err(|err| PolicyError::one(format!("invalid CASIL policy document: {err}")))
    }

    /// The whole document as pretty JSON (every field, defaults included).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("a Policy has only string keys, strings, integers and booleans")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_original_env_defaults_where_they_are_safe() {
        let p = Policy::default();
        assert!(!p.enabled);
        assert_eq!(p.mode, Mode::Monitor);
        // Where the original let unread or uninspectable payloads through in enforce
        // mode, the defaults block them (docs/casil.md, "Differences").
        assert_eq!(p.default_decision, DefaultDecision::Auto);
        assert!(p.default_decision.blocks(Mode::Enforce));
        assert!(!p.default_decision.blocks(Mode::Monitor));
        assert_eq!(p.limits.uninspected_bytes, Uninspected::Block);
        assert!(p.scope.include.is_empty() && p.scope.exclude.is_empty());
        assert_eq!(p.limits.max_inspect_bytes, 262_144);
        assert_eq!(p.limits.max_patterns, 32);
        assert_eq!(p.policies.max_payload_bytes, 262_144);
        assert!(!p.policies.block_on_probable_secret);
        let r = &p.policies.redaction;
        assert_eq!(r.paths, ["password", "token", "secret"]);
        assert!(r.patterns.is_empty() && r.never_log_payload_for.is_empty());
        assert!(!r.replace_builtin_patterns && !r.transport_redaction);
        assert!(p.metadata.to_logs && p.metadata.to_telemetry && !p.metadata.to_envelope);
    }

    #[test]
    fn a_partial_yaml_document_fills_in_defaults() {
        let p = Policy::from_yaml(
            "enabled: true\nmode: enforce\npolicies:\n  redaction:\n    transport_redaction: true\n",
        )
        .unwrap();
        assert!(p.enabled);
        assert_eq!(p.mode, Mode::Enforce);
        assert!(p.policies.redaction.transport_redaction);
        assert_eq!(p.policies.redaction.paths, ["password", "token", "secret"]);
        assert_eq!(p.policies.max_payload_bytes, 262_144);
        assert_eq!(p.limits, Limits::default());
    }

    #[test]
    fn json_loads_through_both_readers() {
        let text =
            r#"{"enabled": true, "default_decision": "block", "scope": {"include": ["a-*"]}}"#;
        let from_json = Policy::from_json(text).unwrap();
        assert_eq!(Policy::from_yaml(text).unwrap(), from_json);
        assert_eq!(from_json.default_decision, DefaultDecision::Block);
        assert_eq!(from_json.scope.include, ["a-*"]);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name_at_every_level() {
        for (text, field) in [
            ("enabeld: true", "enabeld"),
            (
                "policies:\n  block_on_probable_secrets: true",
                "block_on_probable_secrets",
            ),
            ("policies:\n  redaction:\n    path: [x]", "path"),
            ("scope:\n  includes: [x]", "includes"),
            ("limits:\n  max_bytes: 1", "max_bytes"),
            ("metadata:\n  to_log: true", "to_log"),
        ] {
            let err = Policy::from_yaml(text).unwrap_err();
            assert!(err.to_string().contains(field), "{text}: {err}");
        }
        let err = Policy::from_json(r#"{"mode": "monitor", "extra": 1}"#).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        for text in [
            "mode: Enforce",
            "mode: block",
            "default_decision: deny",
            "limits:\n  max_patterns: -1",
            "enabled: maybe",
            "scope:\n  include: a-*",
        ] {
            assert!(Policy::from_yaml(text).is_err(), "{text}");
        }
    }

    #[test]
    fn blank_documents_are_the_default() {
        for text in ["", "\n", "# nothing yet\n", "---\n# still nothing\n"] {
            assert_eq!(Policy::from_yaml(text).unwrap(), Policy::default());
        }
    }

    #[test]
    fn to_json_round_trips() {
        let mut p = Policy {
            enabled: true,
            mode: Mode::Enforce,
            ..Policy::default()
        };
        p.policies.redaction.patterns = vec![r"\d{3}-\d{2}-\d{4}".into()];
        p.policies.redaction.never_log_payload_for = vec!["pii-*".into()];
        let text = p.to_json();
        assert_eq!(Policy::from_json(&text).unwrap(), p);
        assert_eq!(Policy::from_yaml(&text).unwrap(), p);
        assert!(text.contains("\"mode\": \"enforce\""), "{text}");
    }
}
