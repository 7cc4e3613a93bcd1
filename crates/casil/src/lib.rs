//! CASIL, the content-aware safety and inspection layer: the policy document and the
//! engine that applies it to one payload at a time.
//!
//! This crate owns the policy format (YAML or JSON, and the flat names `op.casil.get` and
//! `op.casil.reload` use), its validation, the stored record of a version ([`Record`]),
//! and the decision for a payload: allow, allow with redaction, or block, with the reason
//! code, the classification, the redacted copy for transport and the copy that logs and
//! telemetry may carry. For a whole envelope it says which parts and targets are
//! inspected and whether the policy applies at all ([`Engine::applies`]): the edge and
//! the policy stage ask the same function.
//!
//! It must stay a pure library: no I/O, no runtime, no logging, no environment. The
//! policy service reads files and variables, swaps engines, logs and emits telemetry; the
//! engine only computes. An [`Engine`] is compiled once (every regex and glob checked
//! then), immutable, and shared between threads in an `Arc`.
//!
//! `docs/casil.md` describes the behaviour and every difference from the original.

mod changes;
mod compile;
mod detect;
mod document;
mod envelope;
mod error;
mod event;
mod inspect;
mod record;
mod redact;
mod scope;
mod word_boundary;

#[cfg(test)]
mod examples_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;

pub use compile::Engine;
pub use detect::BUILTIN_PATTERNS;
pub use document::{
    DefaultDecision, Limits, MetadataTargets, Mode, Policy, Redaction, Rules, Scope, Uninspected,
};
pub use envelope::{EXEMPT_COMMAND_PREFIX, Inspection, Part};
pub use error::PolicyError;
pub use record::Record;

/// The document's defaults, which the `ARQONBUS_CASIL_*` settings' defaults are.
pub mod defaults {
    pub use crate::document::{
        MAX_INSPECT_BYTES, MAX_PATTERNS, MAX_PAYLOAD_BYTES, REDACTION_PATHS,
    };
}
pub use event::{DECISION_EVENT, decision_event};
pub use inspect::{
    Classification, ContentKind, Decision, Flags, Input, Kind, Outcome, Reason, RiskLevel,
};

/// What replaces a redacted value, and the whole payload where it must never be logged.
pub const REDACTED: &str = "***REDACTED***";
