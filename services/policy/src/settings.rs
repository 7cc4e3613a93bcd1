//! The `ARQONBUS_CASIL_*` settings (the original's names and defaults), or a policy
//! document file: what a bus with no stored policy starts with.

use std::path::PathBuf;

use arqon_casil::{DefaultDecision, Mode, Policy, Uninspected, defaults};

/// The seed policy. Once a policy is stored on the bus, the stored one wins: these
/// settings only seed a bus that has none (a standalone process, on every start).
#[derive(Debug, Clone, clap::Args)]
pub struct CasilSettings {
    /// A policy document (YAML or JSON); when set, the other `ARQONBUS_CASIL_*` settings
    /// are not used.
    #[arg(long = "casil-policy-file", env = "ARQONBUS_CASIL_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// Inspect traffic at all.
    #[arg(long = "casil-enabled", env = "ARQONBUS_CASIL_ENABLED", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub enabled: bool,

    /// `monitor` (observe, never alter or block) or `enforce`.
    #[arg(long = "casil-mode", env = "ARQONBUS_CASIL_MODE", default_value = Mode::default().as_str(),
          value_parser = parse::<Mode>)]
    pub mode: Mode,

    /// What an inspection that fails decides: `auto` (block in enforce mode, allow in
    /// monitor mode), `allow` or `block`.
    #[arg(
        long = "casil-default-decision",
        env = "ARQONBUS_CASIL_DEFAULT_DECISION",
        default_value = DefaultDecision::default().as_str(),
        value_parser = parse::<DefaultDecision>
    )]
    pub default_decision: DefaultDecision,

    /// `room:channel` globs to inspect (empty: everything).
    #[arg(
        long = "casil-scope-include",
        env = "ARQONBUS_CASIL_SCOPE_INCLUDE",
        value_delimiter = ',',
        default_value = ""
    )]
    pub scope_include: Vec<String>,

    /// `room:channel` globs never to inspect (wins over include).
    #[arg(
        long = "casil-scope-exclude",
        env = "ARQONBUS_CASIL_SCOPE_EXCLUDE",
        value_delimiter = ',',
        default_value = ""
    )]
    pub scope_exclude: Vec<String>,

    /// Bytes of each payload searched for secrets.
    #[arg(
        long = "casil-max-inspect-bytes",
        env = "ARQONBUS_CASIL_MAX_INSPECT_BYTES",
        default_value_t = defaults::MAX_INSPECT_BYTES
    )]
    pub max_inspect_bytes: u64,

    /// What enforce mode does with a payload longer than the inspection window: `block`
    /// (nothing passes unread) or `allow` (flagged only, the original's behaviour).
    #[arg(
        long = "casil-uninspected-bytes",
        env = "ARQONBUS_CASIL_UNINSPECTED_BYTES",
        default_value = Uninspected::default().as_str(),
        value_parser = parse::<Uninspected>
    )]
    pub uninspected_bytes: Uninspected,

    /// Most custom patterns a policy may have.
    #[arg(
        long = "casil-max-patterns",
        env = "ARQONBUS_CASIL_MAX_PATTERNS",
        default_value_t = defaults::MAX_PATTERNS
    )]
    pub max_patterns: u64,

    /// Largest payload in bytes (0: no limit).
    #[arg(
        long = "casil-max-payload-bytes",
        env = "ARQONBUS_CASIL_MAX_PAYLOAD_BYTES",
        default_value_t = defaults::MAX_PAYLOAD_BYTES
    )]
    pub max_payload_bytes: u64,

    /// Block (in enforce mode) a payload with a probable secret.
    #[arg(long = "casil-block-on-probable-secret", env = "ARQONBUS_CASIL_BLOCK_ON_PROBABLE_SECRET",
          default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub block_on_probable_secret: bool,

    /// Object keys whose values are redacted, at any depth.
    #[arg(
        long = "casil-redaction-paths",
        env = "ARQONBUS_CASIL_REDACTION_PATHS",
        value_delimiter = ',',
        default_values_t = defaults::REDACTION_PATHS.map(String::from)
    )]
    pub redaction_paths: Vec<String>,

    /// Secret patterns (regexes), comma-separated; added to the built-in ones.
    #[arg(
        long = "casil-redaction-patterns",
        env = "ARQONBUS_CASIL_REDACTION_PATTERNS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub redaction_patterns: Vec<String>,

    /// Use only the custom patterns, not the built-in ones.
    #[arg(long = "casil-replace-builtin-patterns", env = "ARQONBUS_CASIL_REPLACE_BUILTIN_PATTERNS",
          default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub replace_builtin_patterns: bool,

    /// Deliver the redacted payload (enforce mode) instead of the original.
    #[arg(long = "casil-transport-redaction", env = "ARQONBUS_CASIL_TRANSPORT_REDACTION",
          default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub transport_redaction: bool,

    /// `room:channel` globs whose payloads never appear in logs or telemetry.
    #[arg(
        long = "casil-never-log-payload-for",
        env = "ARQONBUS_CASIL_NEVER_LOG_PAYLOAD_FOR",
        value_delimiter = ',',
        default_value = ""
    )]
    pub never_log_payload_for: Vec<String>,

    /// Log blocks and redactions (without payloads).
    #[arg(long = "casil-metadata-to-logs", env = "ARQONBUS_CASIL_METADATA_TO_LOGS",
          default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub metadata_to_logs: bool,

    /// Publish a decision event for every inspected envelope.
    #[arg(long = "casil-metadata-to-telemetry", env = "ARQONBUS_CASIL_METADATA_TO_TELEMETRY",
          default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub metadata_to_telemetry: bool,

    /// Add `metadata.casil` to routed envelopes.
    #[arg(long = "casil-metadata-to-envelope", env = "ARQONBUS_CASIL_METADATA_TO_ENVELOPE",
          default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub metadata_to_envelope: bool,
}

impl Default for CasilSettings {
    fn default() -> Self {
        Self::from_policy(&Policy::default())
    }
}

/// A lower-case document value (`enforce`, `block`, ...), read as the document reads it.
fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_lowercase()))
        .map_err(|_| format!("'{text}' is not one of the accepted values"))
}

/// Empty entries of a comma list ("a,,b", or the empty default) are dropped.
fn list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl CasilSettings {
    /// The settings that build `policy` (for tests and defaults).
    pub fn from_policy(policy: &Policy) -> Self {
        Self {
            policy_file: None,
            enabled: policy.enabled,
            mode: policy.mode,
            default_decision: policy.default_decision,
            scope_include: policy.scope.include.clone(),
            scope_exclude: policy.scope.exclude.clone(),
            max_inspect_bytes: policy.limits.max_inspect_bytes,
            uninspected_bytes: policy.limits.uninspected_bytes,
            max_patterns: policy.limits.max_patterns,
            max_payload_bytes: policy.policies.max_payload_bytes,
            block_on_probable_secret: policy.policies.block_on_probable_secret,
            redaction_paths: policy.policies.redaction.paths.clone(),
            redaction_patterns: policy.policies.redaction.patterns.clone(),
            replace_builtin_patterns: policy.policies.redaction.replace_builtin_patterns,
            transport_redaction: policy.policies.redaction.transport_redaction,
            never_log_payload_for: policy.policies.redaction.never_log_payload_for.clone(),
            metadata_to_logs: policy.metadata.to_logs,
            metadata_to_telemetry: policy.metadata.to_telemetry,
            metadata_to_envelope: policy.metadata.to_envelope,
        }
    }

    /// The seed policy document: the file's, or the one the settings describe.
    pub fn policy(&self) -> Result<Policy, SettingsError> {
        if let Some(path) = &self.policy_file {
            let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
                path: path.clone(),
                error: e.to_string(),
            })?;
            return Policy::from_yaml(&text).map_err(|e| SettingsError::Invalid {
                origin: path.display().to_string(),
                problems: e.to_string(),
            });
        }
        let mut policy = Policy {
            enabled: self.enabled,
            mode: self.mode,
            default_decision: self.default_decision,
            ..Policy::default()
        };
        policy.scope.include = list(&self.scope_include);
        policy.scope.exclude = list(&self.scope_exclude);
        policy.limits.max_inspect_bytes = self.max_inspect_bytes;
        policy.limits.uninspected_bytes = self.uninspected_bytes;
        policy.limits.max_patterns = self.max_patterns;
        let rules = &mut policy.policies;
        rules.max_payload_bytes = self.max_payload_bytes;
        rules.block_on_probable_secret = self.block_on_probable_secret;
        rules.redaction.paths = list(&self.redaction_paths);
        rules.redaction.patterns = list(&self.redaction_patterns);
        rules.redaction.replace_builtin_patterns = self.replace_builtin_patterns;
        rules.redaction.transport_redaction = self.transport_redaction;
        rules.redaction.never_log_payload_for = list(&self.never_log_payload_for);
        policy.metadata.to_logs = self.metadata_to_logs;
        policy.metadata.to_telemetry = self.metadata_to_telemetry;
        policy.metadata.to_envelope = self.metadata_to_envelope;
        Ok(policy)
    }
}

/// Why the seed policy cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the CASIL policy file {path:?} (ARQONBUS_CASIL_POLICY_FILE): {error}")]
    Read { path: PathBuf, error: String },
    #[error("invalid CASIL policy in {origin}: {problems}")]
    Invalid { origin: String, problems: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: CasilSettings,
    }

    #[test]
    fn defaults_are_the_documents_defaults() {
        let parsed = Cli::parse_from(["t"]).settings.policy().unwrap();
        assert_eq!(parsed, Policy::default());
        assert_eq!(
            CasilSettings::default().policy().unwrap(),
            Policy::default()
        );
    }

    #[test]
    fn lists_are_comma_separated_and_trimmed() {
        let cli = Cli::parse_from([
            "t",
            "--casil-enabled",
            "true",
            "--casil-mode",
            "enforce",
            "--casil-scope-include",
            "secure-*, ops:*,,",
            "--casil-redaction-paths",
            "",
        ]);
        let policy = cli.settings.policy().unwrap();
        assert!(policy.enabled);
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.scope.include, ["secure-*", "ops:*"]);
        assert!(policy.policies.redaction.paths.is_empty());
    }

    #[test]
    fn a_bad_mode_is_refused_by_name() {
        let error = Cli::try_parse_from(["t", "--casil-mode", "audit"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("audit"), "{error}");
    }

    #[test]
    fn a_policy_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(&good, "enabled: true\nmode: enforce\n").unwrap();
        let settings = CasilSettings {
            policy_file: Some(good),
            ..CasilSettings::default()
        };
        assert_eq!(settings.policy().unwrap().mode, Mode::Enforce);

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "enabled: true\nmood: enforce\n").unwrap();
        let settings = CasilSettings {
            policy_file: Some(bad),
            ..CasilSettings::default()
        };
        let error = settings.policy().unwrap_err().to_string();
        assert!(error.contains("mood"), "{error}");
        let missing = CasilSettings {
            policy_file: Some(dir.path().join("none.yaml")),
            ..CasilSettings::default()
        };
        assert!(matches!(missing.policy(), Err(SettingsError::Read { .. })));
    }
}
