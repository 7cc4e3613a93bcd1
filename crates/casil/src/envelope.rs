//! A whole envelope as CASIL sees it: the kind it is inspected as, the parts a client
//! writes, the places it may go, and whether the policy applies to it at all.
//!
//! [`Engine::applies`] is what the edge asks to let an envelope skip the policy stage;
//! [`Engine::inspect_envelope`] is what the policy stage runs. Both go by one rule
//! ([`Engine::applies_to`]), so an envelope skips the stage only when the stage would
//! have inspected nothing of it.

use std::cell::OnceCell;

use serde_json::Value;

use arqon_protocol::{Envelope, JsonObject, MessageType};

use crate::compile::Engine;
use crate::inspect::{Decision, Input, Kind, Outcome};
use crate::scope;

/// The commands CASIL never inspects: the ones that read and repair the policy, so a
/// policy that would block its own reload can always be fixed (reload needs the
/// fleet-wide authority).
pub const EXEMPT_COMMAND_PREFIX: &str = "op.casil.";

/// A part of an envelope that a client writes and that is delivered or acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Payload,
    Args,
    Metadata,
}

/// What the policy decided for a whole envelope, and the redacted copies of its parts
/// that go on in place of the originals.
#[derive(Debug)]
pub struct Inspection {
    pub outcome: Outcome,
    pub redacted: Vec<(Part, String)>,
}

/// A place an envelope may go: a room and a channel, either possibly absent.
type Target = (Option<String>, Option<String>);

/// An envelope with the kind CASIL inspects it as; its targets are worked out when asked.
struct View<'a> {
    envelope: &'a Envelope,
    kind: Kind,
    /// The part that is its content: the payload, or a command's arguments.
    main: Part,
    targets: OnceCell<Vec<Target>>,
}

impl<'a> View<'a> {
    fn of(envelope: &'a Envelope) -> Self {
        let (kind, main) = match envelope.kind {
            MessageType::Message => (Kind::Message, Part::Payload),
            MessageType::Telemetry => (Kind::Telemetry, Part::Payload),
            MessageType::Command => (Kind::Command, Part::Args),
            _ => (Kind::Other, Part::Payload),
        };
        // Exempt commands are a kind the engine does not inspect, so they are counted
        // alike.
        let exempt = kind == Kind::Command
            && envelope
                .command
                .as_deref()
                .is_some_and(|c| c.starts_with(EXEMPT_COMMAND_PREFIX));
        View {
            envelope,
            kind: if exempt { Kind::Other } else { kind },
            main,
            targets: OnceCell::new(),
        }
    }

    fn part(&self, part: Part) -> &'a JsonObject {
        match part {
            Part::Payload => &self.envelope.payload,
            Part::Args => &self.envelope.args,
            Part::Metadata => &self.envelope.metadata,
        }
    }

    /// The envelope's own target (a command's `room` and `channel` arguments filling
    /// what it lacks), then, when its arguments name a room or a channel, the target they
    /// name: an out-of-scope `room` cannot carry a command into a protected one.
    fn targets(&self) -> &[Target] {
        self.targets.get_or_init(|| {
            let envelope = self.envelope;
            let named = if self.kind == Kind::Command {
                let args = envelope.args.to_map();
                let text = |name: &str| match args.get(name) {
                    Some(Value::String(text)) => Some(text.clone()),
                    _ => None,
                };
                (text("room"), text("channel"))
            } else {
                (None, None)
            };
            let own = (envelope.room.clone(), envelope.channel.clone());
            let mut targets = vec![(
                own.0.clone().or_else(|| named.0.clone()),
                own.1.clone().or_else(|| named.1.clone()),
            )];
            if named.0.is_some() || named.1.is_some() {
                let from_args = (named.0.or(own.0), named.1.or(own.1));
                if !targets.contains(&from_args) {
                    targets.push(from_args);
                }
            }
            targets
        })
    }
}

impl Engine {
    /// Whether this policy inspects anything of `envelope`: it is enabled, the envelope is
    /// of a kind CASIL inspects (a message, a command that is not `op.casil.*`, client
    /// telemetry), and one of its targets is in scope. Monitor mode applies too: it
    /// observes and reports. When it does not apply, the policy stage would forward the
    /// envelope unchanged, with no decision event.
    pub fn applies(&self, envelope: &Envelope) -> bool {
        self.applies_to(&View::of(envelope))
    }

    /// The one rule behind [`Engine::applies`] and [`Engine::inspect_envelope`].
    fn applies_to(&self, view: &View<'_>) -> bool {
        if !self.policy.enabled || view.kind == Kind::Other {
            return false;
        }
        if self.include.is_empty() && self.exclude.is_empty() {
            return true;
        }
        view.targets().iter().any(|(room, channel)| {
            self.in_scope(&scope::target(room.as_deref(), channel.as_deref()))
        })
    }

    /// What the policy decides for `envelope`: every part a client controls is inspected
    /// (the payload, or a command's arguments, first; then the others that are not
    /// empty), for every place it may go, and the most severe outcome stands. When the
    /// policy does not apply ([`Engine::applies`]), nothing is inspected and the outcome
    /// says why (`CASIL_DISABLED`, `CASIL_OUT_OF_SCOPE`).
    pub fn inspect_envelope(&self, envelope: &Envelope) -> Inspection {
        let view = View::of(envelope);
        let kind = view.kind;
        let check = |part: Part, (room, channel): &Target| {
            self.inspect(&Input {
                kind,
                room: room.as_deref(),
                channel: channel.as_deref(),
                payload: view.part(part).as_str(),
            })
        };
        if !self.applies_to(&view) {
            return Inspection {
                outcome: check(view.main, &view.targets()[0]),
                redacted: Vec::new(),
            };
        }
        let targets = view.targets();
        let others: Vec<Part> = [Part::Payload, Part::Args, Part::Metadata]
            .into_iter()
            .filter(|part| *part != view.main && !view.part(*part).is_empty())
            .collect();
        let mut redacted: Vec<(Part, String)> = Vec::new();
        let mut keep = |part: Part, outcome: &Outcome| {
            if let Some(copy) = &outcome.transport_payload
                && !redacted.iter().any(|(p, _)| *p == part)
            {
                redacted.push((part, copy.clone()));
            }
        };
        let mut decided = check(view.main, &targets[0]);
        keep(view.main, &decided);
        let rest = targets[1..].iter().map(|target| (view.main, target)).chain(
            others
                .iter()
                .flat_map(|part| targets.iter().map(|t| (*part, t))),
        );
        for (part, target) in rest {
            let outcome = check(part, target);
            keep(part, &outcome);
            if severity(&outcome) > severity(&decided) {
                decided = outcome;
            }
        }
        Inspection {
            outcome: decided,
            redacted,
        }
    }
}

/// Block over redaction over allow; an inspected outcome over one that was not.
fn severity(outcome: &Outcome) -> (u8, bool) {
    let rank = match outcome.decision {
        Decision::Block => 2,
        Decision::AllowWithRedaction => 1,
        Decision::Allow => 0,
    };
    (rank, outcome.inspected)
}

#[cfg(test)]
mod tests;
