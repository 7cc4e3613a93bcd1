//! What an inspection returns: the decision, its reason code, the classification, and the
//! payload copies for transport and for observability.

use std::fmt;

use serde_json::{Value, json};

/// What happens to the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    AllowWithRedaction,
    Block,
}

impl Decision {
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "ALLOW",
            Decision::AllowWithRedaction => "ALLOW_WITH_REDACTION",
            Decision::Block => "BLOCK",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// Why: the reason code sent to a blocked sender and used as a metric label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, for metrics that report zeros too.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }
        }
    };
}

reasons! {
    /// CASIL is off.
    Disabled = "CASIL_DISABLED",
    /// The target is out of scope, or the envelope kind is not inspected.
    OutOfScope = "CASIL_OUT_OF_SCOPE",
    /// Inspected, nothing to do.
    Allowed = "CASIL_POLICY_ALLOWED",
    /// Inspected, something was redacted.
    Redacted = "CASIL_POLICY_REDACTED",
    /// Larger than `max_payload_bytes` (blocked in enforce mode).
    Oversize = "CASIL_POLICY_OVERSIZE",
    /// A probable secret with `block_on_probable_secret` (blocked in enforce mode).
    BlockedSecret = "CASIL_POLICY_BLOCKED_SECRET",
    /// Enforce mode would have blocked; monitor mode let it through.
    MonitorMode = "CASIL_MONITOR_MODE",
    /// The payload could not be inspected; `default_decision` applied.
    InternalError = "CASIL_INTERNAL_ERROR",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the payload is, from the kind of envelope it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentKind {
    Data,
    Control,
    Telemetry,
    Unknown,
}

impl ContentKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentKind::Data => "data",
            ContentKind::Control => "control",
            ContentKind::Telemetry => "telemetry",
            ContentKind::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

impl RiskLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

/// What inspection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    /// A secret pattern matched within the inspected bytes (risk high).
    pub contains_probable_secret: bool,
    /// The payload is longer than `max_inspect_bytes`, so only a prefix was searched
    /// (risk at least medium).
    pub oversize_payload: bool,
    /// A `redaction.paths` key was present and its value redacted.
    pub redacted_paths: bool,
}

impl Flags {
    /// All three flags, always present, so consumers see one fixed shape.
    pub fn to_json(&self) -> Value {
        json!({
            "contains_probable_secret": self.contains_probable_secret,
            "oversize_payload": self.oversize_payload,
            "redacted_paths": self.redacted_paths,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    pub kind: ContentKind,
    pub risk_level: RiskLevel,
    pub flags: Flags,
}

impl Classification {
    /// `{"kind", "risk_level", "flags"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "risk_level": self.risk_level.as_str(),
            "flags": self.flags.to_json(),
        })
    }

    /// `metadata.casil` of a routed envelope.
    pub(crate) fn envelope_metadata(&self, decision: Decision, reason: Reason) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "risk_level": self.risk_level.as_str(),
            "flags": self.flags.to_json(),
            "reason_code": reason.as_str(),
            "decision": decision.as_str(),
        })
    }
}

/// The result of one inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    pub reason: Reason,
    /// `false` when CASIL is disabled, the target is out of scope, or the kind is not
    /// inspected: then there is no classification and no telemetry.
    pub inspected: bool,
    pub classification: Option<Classification>,
    /// `Some(JSON object text)` when the routed payload must be replaced by it (enforce
    /// mode, `ALLOW_WITH_REDACTION`, `transport_redaction`).
    pub transport_payload: Option<String>,
    /// The copy logs and telemetry may carry: the bare token as a JSON string when the
    /// target is in `never_log_payload_for` (or inspection failed, or the payload is
    /// longer than the inspection window), the redacted JSON when something was
    /// redacted, `None` when the original may be shown.
    pub observed_payload: Option<String>,
    /// `Some({kind, risk_level, flags, reason_code, decision})` when `metadata.to_envelope`
    /// and the payload was inspected: the caller sets it as `metadata.casil`.
    pub envelope_metadata: Option<Value>,
}

impl Outcome {
    pub(crate) fn not_inspected(reason: Reason, observed_payload: Option<String>) -> Outcome {
        Outcome {
            decision: Decision::Allow,
            reason,
            inspected: false,
            classification: None,
            transport_payload: None,
            observed_payload,
            envelope_metadata: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_the_original() {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            all,
            [
                "CASIL_DISABLED",
                "CASIL_OUT_OF_SCOPE",
                "CASIL_POLICY_ALLOWED",
                "CASIL_POLICY_REDACTED",
                "CASIL_POLICY_OVERSIZE",
                "CASIL_POLICY_BLOCKED_SECRET",
                "CASIL_MONITOR_MODE",
                "CASIL_INTERNAL_ERROR",
            ]
        );
        assert_eq!(Reason::MonitorMode.to_string(), "CASIL_MONITOR_MODE");
        assert_eq!(
            Decision::AllowWithRedaction.to_string(),
            "ALLOW_WITH_REDACTION"
        );
        assert_eq!(Decision::Allow.as_str(), "ALLOW");
        assert_eq!(Decision::Block.as_str(), "BLOCK");
    }

    #[test]
    fn classification_json_has_a_fixed_shape() {
        let c = Classification {
            kind: ContentKind::Control,
            risk_level: RiskLevel::Medium,
            flags: Flags {
                oversize_payload: true,
                ..Flags::default()
            },
        };
        assert_eq!(
            c.to_json(),
            json!({"kind": "control", "risk_level": "medium", "flags": {
                "contains_probable_secret": false, "oversize_payload": true, "redacted_paths": false}})
        );
        assert!(RiskLevel::High > RiskLevel::Medium && RiskLevel::Medium > RiskLevel::Low);
        assert_eq!(ContentKind::Telemetry.as_str(), "telemetry");
        assert_eq!(ContentKind::Unknown.as_str(), "unknown");
        assert_eq!(ContentKind::Data.as_str(), "data");
    }
}
