//! Inspecting one payload: scope, size, secret detection, redaction, and the decision
//! with what each party may see.

#[cfg(test)]
mod original_tests;
mod outcome;
#[cfg(test)]
mod tests;

pub use outcome::{Classification, ContentKind, Decision, Flags, Outcome, Reason, RiskLevel};

use serde_json::{Map, Value};

use crate::compile::Engine;
use crate::document::{Mode, Uninspected};
use crate::{detect, redact, scope};

/// What kind of envelope the payload came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Message,
    /// A command; the payload is its `args` object.
    Command,
    /// Client telemetry, which is delivered to room members like a message.
    Telemetry,
    /// Anything else (responses, errors, ...): never inspected.
    Other,
}

impl Kind {
    fn content_kind(self) -> ContentKind {
        match self {
            Kind::Message => ContentKind::Data,
            Kind::Command => ContentKind::Control,
            Kind::Telemetry => ContentKind::Telemetry,
            Kind::Other => ContentKind::Unknown,
        }
    }
}

/// One payload to inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input<'a> {
    pub kind: Kind,
    pub room: Option<&'a str>,
    pub channel: Option<&'a str>,
    /// The raw JSON text of a JSON object (for a command, its `args`), already validated
    /// by the caller. Sizes are this text's bytes.
    pub payload: &'a str,
}

/// `REDACTED` as a JSON string: the whole payload, for logs that must not carry it.
const REDACTED_JSON: &str = "\"***REDACTED***\"";

impl Engine {
    /// Inspects one payload. Never fails and never panics: a payload that cannot be
    /// inspected gets `CASIL_INTERNAL_ERROR` and the policy's `default_decision`.
    pub fn inspect(&self, input: &Input<'_>) -> Outcome {
        if !self.policy.enabled {
            return Outcome::not_inspected(Reason::Disabled, None);
        }
        let needs_target =
            !(self.include.is_empty() && self.exclude.is_empty() && self.never_log.is_empty());
        let target = if needs_target {
            scope::target(input.room, input.channel)
        } else {
            "".into()
        };
        // A logging rule, not an inspection rule: it holds for payloads out of scope too.
        let never_log = self.never_log.matches(&target);
        if input.kind == Kind::Other || !self.in_scope(&target) {
            let observed = never_log.then(|| REDACTED_JSON.to_owned());
            return Outcome::not_inspected(Reason::OutOfScope, observed);
        }
        self.evaluate(input, never_log)
    }

    pub(crate) fn in_scope(&self, target: &str) -> bool {
        !self.exclude.matches(target) && (self.include.is_empty() || self.include.matches(target))
    }

    fn evaluate(&self, input: &Input<'_>, never_log: bool) -> Outcome {
        let rules = &self.policy.policies;
        let payload = input.payload;
        let size = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        let over_limit = rules.max_payload_bytes > 0 && size > rules.max_payload_bytes;
        let hits = self
            .detector
            .scan(detect::window(payload, self.max_inspect));
        let secret = !hits.is_empty();
        let mut flags = Flags {
            contains_probable_secret: secret,
            oversize_payload: payload.len() > self.max_inspect,
            redacted_paths: false,
        };

        // The parse is the expensive part: only when a pattern matched or a configured
        // key may be present.
        let mut redacted_copy = None;
        if secret || self.paths.may_appear_in(payload) {
            match self.redacted_copy(payload, &hits) {
                Some((copy, path_hit)) => {
                    flags.redacted_paths = path_hit;
                    if secret || path_hit {
                        redacted_copy = Some(copy);
                    }
                }
                None => return self.internal_error(input.kind, flags),
            }
        }
        let redacted = redacted_copy.is_some();

        // Bytes past the inspection window were never searched: unless the policy says
        // to let them through, they count as too large.
        let unread =
            flags.oversize_payload && self.policy.limits.uninspected_bytes == Uninspected::Block;
        let would_block = if secret && rules.block_on_probable_secret {
            Some(Reason::BlockedSecret)
        } else if over_limit || unread {
            Some(Reason::Oversize)
        } else {
            None
        };
        let with_redaction = if redacted {
            Decision::AllowWithRedaction
        } else {
            Decision::Allow
        };
        let (decision, reason) = match (self.policy.mode, would_block) {
            (Mode::Enforce, Some(reason)) => (Decision::Block, reason),
            (Mode::Monitor, Some(_)) => (with_redaction, Reason::MonitorMode),
            (_, None) if redacted => (with_redaction, Reason::Redacted),
            (_, None) => (with_redaction, Reason::Allowed),
        };

        // Only enforce mode alters what is routed; monitor mode only reports.
        let transport_payload = (self.policy.mode == Mode::Enforce
            && decision == Decision::AllowWithRedaction
            && rules.redaction.transport_redaction)
            .then(|| redacted_copy.clone())
            .flatten();
        // What was not read is not shown: a copy of a payload longer than the window
        // would carry bytes no pattern searched (a credential past the window, verbatim).
        let observed_payload = if never_log || flags.oversize_payload {
            Some(REDACTED_JSON.to_owned())
        } else {
            redacted_copy
        };
        self.inspected(
            input.kind,
            flags,
            decision,
            reason,
            transport_payload,
            observed_payload,
        )
    }

    /// The payload parsed, redacted and serialized again, and whether a path was
    /// redacted; `None` when the payload is not a JSON object.
    fn redacted_copy(&self, payload: &str, hits: &[usize]) -> Option<(String, bool)> {
        let object: Map<String, Value> = serde_json::from_str(payload).ok()?;
        let mut value = Value::Object(object);
        let patterns: Vec<_> = hits
            .iter()
            .filter_map(|&i| self.detector.pattern(i))
            .collect();
        let path_hit = redact::redact(&mut value, &self.paths, &patterns);
        let text = serde_json::to_string(&value).ok()?;
        Some((text, path_hit))
    }

    /// What could not be inspected is never shown: the observed copy is the bare token.
    fn internal_error(&self, kind: Kind, flags: Flags) -> Outcome {
        let decision = if self.policy.default_decision.blocks(self.policy.mode) {
            Decision::Block
        } else {
            Decision::Allow
        };
        let observed = Some(REDACTED_JSON.to_owned());
        self.inspected(kind, flags, decision, Reason::InternalError, None, observed)
    }

    fn inspected(
        &self,
        kind: Kind,
        flags: Flags,
        decision: Decision,
        reason: Reason,
        transport_payload: Option<String>,
        observed_payload: Option<String>,
    ) -> Outcome {
        let risk_level = if flags.contains_probable_secret {
            RiskLevel::High
        } else if flags.oversize_payload {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        };
        let classification = Classification {
            kind: kind.content_kind(),
            risk_level,
            flags,
        };
        let envelope_metadata = self
            .policy
            .metadata
            .to_envelope
            .then(|| classification.envelope_metadata(decision, reason));
        Outcome {
            decision,
            reason,
            inspected: true,
            classification: Some(classification),
            transport_payload,
            observed_payload,
            envelope_metadata,
        }
    }
}
